"""Requests/s and latency of `cnn-tracker serve` at 1, 8 and 64 concurrent clients, batched vs not.

    python benchmarks/serve_throughput.py [--checkpoint best.pt | --model lenet] [--seconds 3]
                                          [--clients 1,8,64] [--threads 1] [--image 280]
                                          [--device cpu]

The server is the real command (`cnn-tracker serve CKPT --port 0`) in a child process, once with
batching (default --max-batch 64, --max-wait-ms 3) and once with --no-batching; the clients are
httpx.AsyncClient coroutines on loopback in this process, each posting one drawn digit (a
``--image`` px PNG, as the page sends it: decoded and preprocessed by the server like
`cnn-tracker predict`) as soon as its previous answer arrives. Each configuration runs a 0.5 s
warm-up, then ``--seconds`` timed; p50/p99 are over every timed request. Without --checkpoint an
untrained lenet is served (the weights do not change the speed). Client and server share the
machine's cores: on a small machine the client's own cost is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

POOL = 8  # connections per httpx.AsyncClient


def digit_png(side: int) -> bytes:
    """A 7 drawn in white on black, ``side`` px square: what the page posts."""
    img = Image.new("L", (side, side), 0)
    s = side / 280
    ImageDraw.Draw(img).line([(70 * s, 55 * s), (210 * s, 55 * s), (120 * s, 235 * s)],
                             fill=255, width=max(1, round(20 * s)))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def untrained_checkpoint(folder: Path, name: str) -> Path:
    from cnn_tracker.config import TrainConfig
    from cnn_tracker.training.checkpoint import atomic_save, make_checkpoint
    from cnn_tracker.training.data import SPECS
    from cnn_tracker.training.models import build_model, model_args

    args = model_args(name)
    ckpt = make_checkpoint(build_model(name, args), name, args, TrainConfig(model=name),
                           SPECS["mnist"], 0, {})
    return atomic_save(ckpt, folder / f"{name}.pt")


def start_server(ckpt: Path, threads: int, batching: bool, device: str
                 ) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "cnn_tracker", "serve", str(ckpt), "--port", "0", "--device",
           device, "--threads", str(threads), "--batching" if batching else "--no-batching"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    listening = proc.stdout.readline()  # "listening on URL ...", or "" after an Error: line
    if not listening.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"the server did not start: {' '.join(cmd)}")
    url = listening.split()[2]
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not become ready in 60 s")
        time.sleep(0.1)


async def load(url: str, clients: int, seconds: float, body: bytes) -> list[float]:
    """Latencies (s) of every request finished in the timed window after a 0.5 s warm-up."""
    files = [("files", ("digit.png", body, "image/png"))]
    latencies: list[float] = []
    start = time.monotonic()
    warm, end = start + 0.5, start + 0.5 + seconds

    async def client(http: httpx.AsyncClient) -> None:
        while (t0 := time.monotonic()) < end:
            r = await http.post("/v1/predict", files=files)
            r.raise_for_status()
            if t0 >= warm:
                latencies.append(time.monotonic() - t0)

    # one AsyncClient per POOL clients: httpx's pool costs grow with its connection count, and at
    # 64 connections in one pool the client, not the server, would be what is measured
    pools = [httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=POOL))
             for _ in range(-(-clients // POOL))]
    try:
        await asyncio.gather(*(client(pools[i // POOL]) for i in range(clients)))
    finally:
        for pool in pools:
            await pool.aclose()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--model", default="lenet", help="untrained model to serve without --checkpoint")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--image", type=int, default=280, help="side of the posted PNG (px)")
    args = parser.parse_args()
    body = digit_png(args.image)
    counts = [int(c) for c in args.clients.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or untrained_checkpoint(Path(tmp), args.model)
        for batching in (True, False):
            proc, url = start_server(ckpt, args.threads, batching, args.device)
            try:
                for clients in counts:
                    before = httpx.get(url + "/v1/model").json()["stats"]
                    lat = asyncio.run(load(url, clients, args.seconds, body))
                    after = httpx.get(url + "/v1/model").json()["stats"]
                    batches = after["batches"] - before["batches"]
                    mean_batch = (after["images"] - before["images"]) / batches if batches else 0
                    rows.append(("batched" if batching else "unbatched", clients,
                                 statistics.median(lat) * 1000,
                                 float(np.percentile(lat, 99)) * 1000,
                                 len(lat) / args.seconds, mean_batch))
                    print(f"# {rows[-1][0]:>9} {clients:>3} clients: {len(lat)} requests", file=sys.stderr)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    print("| mode | clients | p50 ms | p99 ms | requests/s | mean batch |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, clients, p50, p99, rps, mean_batch in rows:
        print(f"| {mode} | {clients} | {p50:.1f} | {p99:.1f} | {rps:.0f} | {mean_batch:.1f} |")


if __name__ == "__main__":
    main()
