"""`cnn-tracker serve`: a real uvicorn server on a free loopback port, driven by httpx.

The checkpoint is an untrained lenet made by the project's own ``make_checkpoint`` (its answers
are arbitrary but deterministic: what is tested is that the server gives *the same* answers as
`cnn-tracker predict`, alone or batched). W&B sources need a server: only their offline error is
tested here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (test extra) is not installed")

from cnn_tracker.cli import cli  # noqa: E402
from cnn_tracker.serve.app import Settings, create_app  # noqa: E402
from cnn_tracker.serve.model import load_served  # noqa: E402
from cnn_tracker.serve.server import bind, make_server, url_of  # noqa: E402


def make_ckpt(path: Path, model: str = "lenet", dataset: str = "mnist", seed: int = 0) -> Path:
    from cnn_tracker.config import TrainConfig
    from cnn_tracker.training.checkpoint import atomic_save, make_checkpoint
    from cnn_tracker.training.data import SPECS
    from cnn_tracker.training.models import build_model, model_args

    torch.manual_seed(seed)
    args = model_args(model)
    ckpt = make_checkpoint(build_model(model, args), model, args,
                           TrainConfig(model=model, dataset=dataset), SPECS[dataset], 1,
                           {"val/accuracy": 0.5})
    return atomic_save(ckpt, path)


class LiveServer:
    """The app on a free loopback port, in a thread: ``url``, ``stop()``."""

    def __init__(self, loader, settings: Settings | None = None, refresh=None):
        self.sock = bind("127.0.0.1", 0)
        self.url = url_of(self.sock)
        self.server = make_server(create_app(loader, settings or Settings(), refresh), self.sock)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while httpx.get(self.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.set_num_threads(1)  # the machine is shared: the server's forward passes on one core
    return make_ckpt(tmp_path_factory.mktemp("serve") / "best.pt")


@pytest.fixture(scope="module")
def live(ckpt):
    served = load_served(str(ckpt), device="cpu")
    server = LiveServer(lambda: served, Settings(max_image_bytes=200_000))
    server.wait_ready()
    yield server
    server.stop()


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def sample_images(n: int, seed: int = 0) -> list[bytes]:
    """Dark strokes on light paper and light strokes on black, of several sizes and formats."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        side = int(rng.integers(40, 200))
        img = np.full((side, side), 235 if i % 2 else 0, np.float32)
        ink = 20 if i % 2 else 255
        for _ in range(3):
            y, x = rng.integers(5, side - 25, 2)
            h, w = rng.integers(5, 20, 2)
            img[y:y + h, x:x + w] = ink
        if i % 3 == 2:
            out.append(png(np.stack([img] * 3, -1), "JPEG"))
        else:
            out.append(png(img))
    return out


def big_png_header(width: int, height: int) -> bytes:
    """A small PNG file whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4)  # 4 rows of the claimed width
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def files(*images: bytes, field: str = "files"):
    return [(field, (f"img{i}.png", data, "image/png")) for i, data in enumerate(images)]


def test_predict_gives_what_cli_predict_gives(live, ckpt, tmp_path):
    images = sample_images(6)
    paths = []
    for i, data in enumerate(images):
        paths.append(tmp_path / f"img{i}.png")
        paths[-1].write_bytes(data)
    cli_out = CliRunner().invoke(cli, ["predict", str(ckpt), *map(str, paths), "--json",
                                       "--top-k", "3", "--device", "cpu"])
    assert cli_out.exit_code == 0, cli_out.output
    import json

    expected = json.loads(cli_out.stdout)
    assert len(expected) == 6
    multipart = httpx.post(live.url + "/v1/predict", files=files(*images)).json()["predictions"]
    as_json = httpx.post(live.url + "/v1/predict", json={"images": [
        base64.b64encode(d).decode() for d in images]}).json()["predictions"]
    for want, got, got_json in zip(expected, multipart, as_json):
        for served in (got, got_json):
            assert served["predicted"] == want["predicted"]
            assert [t["class"] for t in served["top"]] == [t["class"] for t in want["top"]]
            assert np.allclose([t["probability"] for t in served["top"]],
                               [t["probability"] for t in want["top"]], atol=1e-6)
            assert abs(sum(served["probabilities"]) - 1) < 1e-4
    assert [g["image"] for g in multipart] == [f"img{i}.png" for i in range(6)]
    assert [g["image"] for g in as_json] == [f"images[{i}]" for i in range(6)]


def test_input_returned_is_what_predict_feeds_the_model(live, ckpt, tmp_path):
    from cnn_tracker.tools.inference import load_for_inference, load_image

    data = sample_images(2)[1]
    (tmp_path / "x.png").write_bytes(data)
    _, _, spec = load_for_inference(ckpt, "cpu")
    want = load_image(tmp_path / "x.png", spec)[0].numpy()
    url = "data:image/png;base64," + base64.b64encode(data).decode()  # the page's data URL form
    got = httpx.post(live.url + "/v1/predict?input=true&top_k=10", json={"images": [url]}).json()
    pred = got["predictions"][0]
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(pred["input_png"]))))
    assert shown.shape == (28, 28) and (shown == want).all()
    assert len(pred["top"]) == 10 and got["classes"] == [str(k) for k in range(10)]


def test_model_info_health_and_docs(live, ckpt):
    info = httpx.get(live.url + "/v1/model").json()
    assert info["model"] == "lenet" and info["dataset"] == "mnist"
    assert info["classes"] == [str(k) for k in range(10)]
    assert info["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert info["parameters"] > 10_000 and info["metrics"] == {"val/accuracy": 0.5}
    assert info["artifact"] is None and info["run"] is None and info["source"] == str(ckpt)
    assert info["batching"]["enabled"] and info["limits"]["max_image_bytes"] == 200_000
    assert httpx.get(live.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(live.url + "/readyz").json()["status"] == "ready"
    spec = httpx.get(live.url + "/openapi.json").json()
    predict = spec["paths"]["/v1/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/PredictResponse")
    assert {"400", "413", "415", "422", "503"} <= set(predict["responses"])
    assert "class" in spec["components"]["schemas"]["ClassProbability"]["properties"]
    assert spec["paths"]["/v1/model"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"]["$ref"].endswith("/ModelInfo")
    assert httpx.get(live.url + "/docs").status_code == 200
    page = httpx.get(live.url + "/")
    assert page.status_code == 200 and "<canvas" in page.text and "/v1/predict" in page.text


def test_concurrent_requests_are_batched_and_answer_as_sequential_ones(ckpt):
    """Each request (1 to 3 images) gets its own rows of a shared batch: the images' answers
    differ from one another, so a request handed another's rows would be caught."""
    served = load_served(str(ckpt), device="cpu")
    server = LiveServer(lambda: served, Settings(max_wait_s=0.05, max_batch=64))
    try:
        server.wait_ready()
        images = sample_images(36, seed=1)
        sequential = [httpx.post(server.url + "/v1/predict", files=files(d)).json()
                      ["predictions"][0]["probabilities"] for d in images]
        before = httpx.get(server.url + "/v1/model").json()["stats"]
        groups, i = [], 0
        while i < len(images):  # requests of 1, 2, 3, 1, 2, 3, ... images
            groups.append(list(range(i, min(i + len(groups) % 3 + 1, len(images)))))
            i = groups[-1][-1] + 1

        async def together():
            async with httpx.AsyncClient(base_url=server.url, timeout=30,
                                         limits=httpx.Limits(max_connections=64)) as client:
                return await asyncio.gather(*(client.post("/v1/predict", files=files(
                    *[images[k] for k in g])) for g in groups))

        answers = [r.json() for r in asyncio.run(together())]
        after = httpx.get(server.url + "/v1/model").json()["stats"]
    finally:
        server.stop()
    rounded = {tuple(np.round(p, 4)) for p in sequential}
    assert len(rounded) == len(images), "the test images must have distinct answers"
    for group, answer in zip(groups, answers, strict=True):
        got = [p["probabilities"] for p in answer["predictions"]]
        assert len(got) == len(group)
        for k, probs in zip(group, got):
            assert np.allclose(probs, sequential[k], atol=1e-6), (group, k)
    assert before["batches"] == before["requests"] == 36  # one at a time: alone in their batch
    assert after["requests"] - before["requests"] == len(groups)
    assert after["batches"] - before["batches"] < len(groups)  # some ran together
    assert after["largest_batch"] > 3


def test_batcher_failures_reach_only_their_callers_and_stop_never_hangs():
    """The real Batcher; its run function fails on one request's inputs (13) and holds the
    worker on another's (99) while the next requests queue up behind it."""
    from concurrent.futures import wait

    from cnn_tracker.serve.batcher import Batcher, Stopped

    gate = threading.Event()

    def run(model, x):
        if (x == 99).any():
            gate.wait(5)
        if (x == 13).any():
            raise ValueError("bad row")
        return x.float().flatten(1)[:, :1] + model

    def one(value: int) -> torch.Tensor:
        return torch.full((1, 1, 28, 28), value, dtype=torch.uint8)

    def queued_behind_a_held_batch(*jobs):
        gate.clear()
        held = batcher.submit(0, one(99))
        time.sleep(0.05)  # the worker has taken it and waits at the gate
        futures = [batcher.submit(model, one(v)) for model, v in jobs]
        return held, futures

    batcher = Batcher(run, max_wait_s=0.05).start()
    held, (cancelled, two, bad, four) = queued_behind_a_held_batch((100, 1), (100, 2), (100, 13),
                                                                   (100, 4))
    assert cancelled.cancel()
    gate.set()
    wait([held, two, bad, four], timeout=10)
    assert two.result().item() == 102 and four.result().item() == 104
    with pytest.raises(ValueError, match="bad row"):
        bad.result()
    assert batcher.stats()["largest_batch"] == 1  # the failed batch of 3 re-ran one by one
    # a hot swap: requests for another model are never in the same forward pass
    held, futures = queued_behind_a_held_batch((100, 6), (200, 5), (200, 7), (100, 8))
    gate.set()
    assert [f.result(timeout=10).item() for f in futures] == [106, 205, 207, 108]
    assert batcher.stats()["largest_batch"] == 2  # the two of model 200 ran together
    started = time.monotonic()
    batcher.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(Stopped):
        batcher.submit(100, one(7))


BAD = [  # (what, request, status, error code, words of the message)
    ("a non-image", dict(files=files(b"just some text, no image")), 415, "not_an_image",
     "not an image"),
    ("a truncated PNG", dict(files=files(png(np.full((64, 64), 200))[:60])), 400,
     "truncated_image", "truncated"),
    ("an image over --max-image-bytes", dict(files=files(b"\x89PNG" + b"\0" * 250_000)), 413,
     "image_too_large", "at most 200,000"),
    ("a body over the request limit", dict(content=b"x" * 500_000,
                                           headers={"content-type": "application/json"}),
     413, "request_too_large", "request body"),
    ("an empty body", dict(content=b""), 400, "empty_body", "empty"),
    ("an empty file", dict(files=files(b"")), 400, "empty_image", "empty"),
    ("a wrong multipart field", dict(files=files(png(np.zeros((28, 28))), field="image")), 422,
     "unknown_field", "'image'"),
    ("text in the files field", dict(files={"files": (None, b"hello")}), 422, "not_a_file", "text"),
    ("a wrong JSON key", dict(json={"imgs": ["aGk="]}), 422, "bad_field", "imgs"),
    ("JSON without images", dict(json={"images": []}), 422, "no_images", "empty"),
    ("bad base64", dict(json={"images": ["not base64!"]}), 400, "bad_base64", "base64"),
    ("a body that is not JSON", dict(content=b"{nope", headers={"content-type": "application/json"}),
     400, "bad_json", "not valid JSON"),
    ("a Content-Type that is neither", dict(content=b"hello", headers={"content-type": "text/plain"}),
     415, "unsupported_media_type", "text/plain"),
    ("10,000 x 10,000 pixels", dict(files=files(big_png_header(10_000, 10_000))), 413,
     "too_many_pixels", "10,000x10,000"),
    ("65 images in one request", dict(files=files(*[png(np.zeros((28, 28)))] * 65)), 413,
     "too_many_images", "at most 64"),
]


@pytest.mark.parametrize("what, request_kw, status, code, words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_json_error_and_the_server_keeps_serving(live, what, request_kw, status,
                                                                code, words):
    response = httpx.post(live.url + "/v1/predict", **request_kw)
    body = response.json()
    assert (response.status_code, body["error"]) == (status, code), body
    assert words in body["detail"], body["detail"]
    good = httpx.post(live.url + "/v1/predict", files=files(sample_images(1)[0]))
    assert good.status_code == 200 and len(good.json()["predictions"]) == 1


def test_bad_query_parameter_and_unknown_path(live):
    r = httpx.post(live.url + "/v1/predict?top_k=0", files=files(sample_images(1)[0]))
    assert r.status_code == 422 and r.json()["error"] == "bad_parameter" and "top_k" in r.json()["detail"]
    r = httpx.get(live.url + "/v2/nothing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_a_claimed_huge_image_is_refused_before_decoding(live, monkeypatch):
    """Memory stays bounded: 100 megapixels and more claimed never reach the decoder."""
    from cnn_tracker.tools import inference

    decoded, real = [], inference.grayscale
    monkeypatch.setattr(inference, "grayscale", lambda *a: decoded.append(1) or real(*a))
    started = time.monotonic()
    for side in (10_000, 30_000, 65_000):
        r = httpx.post(live.url + "/v1/predict", files=files(big_png_header(side, side)))
        assert r.status_code == 413 and r.json()["error"] == "too_many_pixels"
    assert time.monotonic() - started < 5 and decoded == []
    assert httpx.post(live.url + "/v1/predict", files=files(sample_images(1)[0])).status_code == 200
    assert decoded == [1]  # the patched decoder is the one in use


def test_not_ready_until_the_model_is_loaded(ckpt):
    release = threading.Event()

    def slow_loader():
        release.wait(20)
        return load_served(str(ckpt), device="cpu")

    server = LiveServer(slow_loader)
    try:
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "loading"
        assert httpx.get(server.url + "/healthz").status_code == 200
        r = httpx.post(server.url + "/v1/predict", files=files(sample_images(1)[0]))
        assert r.status_code == 503 and r.json()["error"] == "not_ready"
        assert httpx.get(server.url + "/v1/model").status_code == 503
        release.set()
        server.wait_ready()
        assert httpx.post(server.url + "/v1/predict", files=files(sample_images(1)[0])).status_code == 200
    finally:
        release.set()
        server.stop()


def test_a_failed_load_is_shown_by_readyz(tmp_path):
    def broken():
        raise RuntimeError("disk on fire")

    server = LiveServer(broken)
    try:
        deadline = time.monotonic() + 10
        while (body := httpx.get(server.url + "/readyz").json())["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert body["status"] == "failed" and "disk on fire" in body["detail"]
        r = httpx.post(server.url + "/v1/predict", files=files(sample_images(1)[0]))
        assert r.status_code == 503 and "disk on fire" in r.json()["detail"]
    finally:
        server.stop()


def add_run(store, tmp_path: Path, run_id: str, accuracy: float, seed: int) -> Path:
    """A finished run of project 'servep' with its best checkpoint in the store."""
    from cnn_tracker.runs import lifecycle

    lifecycle.start(store, run_id, sweep_id=None, project="servep", name=f"n-{run_id}",
                    config={}, output_dir="o", wandb_dir=None, params={})
    path = make_ckpt(tmp_path / f"{run_id}.pt", seed=seed)
    store.put_checkpoint(run_id, "best", path)
    lifecycle.finish(store, run_id, "finished", summary={"val/accuracy": accuracy})
    return path


def test_serve_the_best_checkpoint_of_a_local_project(tmp_path):
    from cnn_tracker.store.db import Store

    store = Store(str(tmp_path / "store"))
    best = add_run(store, tmp_path, "good1", 0.9, 1)
    add_run(store, tmp_path, "weak2", 0.4, 2)
    served = load_served("servep", device="cpu", store_dir=str(tmp_path / "store"))
    assert served.sha256 == hashlib.sha256(best.read_bytes()).hexdigest()
    info = served.describe()
    assert info["run"]["id"] == "good1" and info["run"]["source"] == "local"


def test_follow_best_swaps_in_a_better_model_without_dropping_requests(tmp_path):
    from cnn_tracker.serve.model import best_follower
    from cnn_tracker.store.db import Store

    where = str(tmp_path / "store")
    store = Store(where)
    add_run(store, tmp_path, "first1", 0.6, 1)
    served = load_served("servep", device="cpu", store_dir=where)
    server = LiveServer(lambda: served, Settings(follow_seconds=0.2),
                        best_follower("servep", device="cpu", store_dir=where))
    statuses, stop = [], threading.Event()

    def hammer():
        with httpx.Client(base_url=server.url) as client:
            while not stop.is_set():
                statuses.append(client.post("/v1/predict", files=files(sample_images(1)[0])).status_code)

    worker = threading.Thread(target=hammer)
    try:
        server.wait_ready()
        worker.start()
        time.sleep(0.5)
        assert httpx.get(server.url + "/v1/model").json()["follow"]["swaps"] == 0  # nothing new
        better = add_run(store, tmp_path, "better3", 0.95, 3)
        deadline = time.monotonic() + 15
        while (info := httpx.get(server.url + "/v1/model").json())["run"]["id"] != "better3":
            assert time.monotonic() < deadline, info["follow"]
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(timeout=10) if worker.is_alive() else None
        server.stop()
    assert info["checkpoint"]["sha256"] == hashlib.sha256(better.read_bytes()).hexdigest()
    assert info["follow"]["swaps"] == 1 and info["follow"]["last_error"] is None
    assert len(statuses) > 5 and set(statuses) == {200}


def cli_error(args: list[str]) -> str:
    result = CliRunner().invoke(cli, ["serve", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_bad_source_fails_at_start_with_one_error_line(ckpt, tmp_path):
    assert "does not exist" in cli_error([str(tmp_path / "missing.pt")])
    (tmp_path / "notes.pt").write_text("hello")
    assert "corrupted, truncated or not a PyTorch file" in cli_error([str(tmp_path / "notes.pt")])
    assert "sha256" in cli_error([str(ckpt), "--sha256", "0" * 64])
    assert "64 hex digits" in cli_error([str(ckpt), "--sha256", "abc123"])
    assert "not in the local run store" in cli_error(["no-such-sweep"])
    # a W&B artifact reference cannot be resolved offline (no API key): said before any network
    assert "no W&B API key" in cli_error(["me/proj/model-abc123:best"])
    assert "--follow-best needs a sweep id or project" in cli_error([str(ckpt), "--follow-best", "5"])
    holder = bind("127.0.0.1", 0)
    try:
        assert "is in use" in cli_error([str(ckpt), "--port", str(holder.getsockname()[1])])
    finally:
        holder.close()


WITHOUT_EXTRA = """
import json, sys
from click.testing import CliRunner
from cnn_tracker.cli import cli
out = {}
for args in (["--help"], ["serve", "--help"], ["models"], ["serve", sys.argv[1]]):
    r = CliRunner().invoke(cli, args)
    out[" ".join(args)] = (r.exit_code, r.output or repr(r.exception))
out["imported"] = sorted(m for m in sys.modules
                         if m.startswith(("fastapi", "uvicorn", "cnn_tracker.serve")))
print(json.dumps(out))
"""


def test_every_command_works_without_the_serve_extra(ckpt, tmp_path):
    """fastapi and uvicorn absent (stubs that fail to import, first on sys.path): --help and the
    other commands work, and serve says in one Error line what to install."""
    import json
    import os
    import subprocess
    import sys

    for name in ("fastapi", "uvicorn"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named {name!r}\", name={name!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path.cwd())])}
    proc = subprocess.run([sys.executable, "-c", WITHOUT_EXTRA, str(ckpt)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["--help"][0] == 0 and "serve" in out["--help"][1]
    assert out["serve --help"][0] == 0 and "cnn-tracker[serve]" in out["serve --help"][1]
    assert out["models"][0] == 0 and "lenet" in out["models"][1]
    code, text = out[f"serve {ckpt}"]
    assert code == 2 and text.strip().splitlines() == [(
        "Error: cnn-tracker serve needs fastapi and uvicorn (not installed): "
        "pip install 'cnn-tracker[serve]'")]
    assert out["imported"] == [], out["imported"]  # nothing of the extra, nor the app, loaded


@pytest.mark.slow
def test_the_command_serves_and_says_it_listens_on_loopback_only(ckpt, tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "cnn_tracker", "serve", str(ckpt), "--port", "0",
                             "--threads", "1", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("serving lenet (mnist, 10 classes)"), lines
        url = lines[1].split()[2]
        assert url.startswith("http://127.0.0.1:") and "loopback only" in lines[2]
        deadline = time.monotonic() + 20
        while httpx.get(url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = httpx.post(url + "/v1/predict", files=files(sample_images(1)[0]))
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode in (0, -15)
