"""Property-based tests (Hypothesis): every input is either accepted or a UserError, never
another exception.

Each property runs a fixed number of derandomized examples (200 for the config parser and checkpoint dicts, 120 for the rest) (the same ones on every run), so the
suite stays fast and deterministic; ``EXAMPLES`` records how many each ran and the test asserts
it. A failing example a property finds becomes a case in tests/test_catalogue.py, and is fixed.

- config: any mapping (as ``make_config`` and a ``--config`` YAML file see it) and any argv of
  ``train`` -> a TrainConfig or a UserError;
- checkpoints: a real checkpoint's dict with one field replaced or removed, and its bytes
  mutated -> a model loaded for inference or a UserError;
- sweep files: generated and mutated YAML documents -> a verdict (valid, or one UserError);
- images: image files of every mode PIL writes, their bytes mutated -> a prediction or a
  UserError.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnn_tracker.cli import cli
from cnn_tracker.config import KEYS, TrainConfig, make_config
from cnn_tracker.errors import UserError
from cnn_tracker.inputs import load_config_file
from cnn_tracker.search.draws import DISTRIBUTIONS
from cnn_tracker.search.spec import load_checked
from cnn_tracker.tools.inference import load_for_inference, predict_files
from cnn_tracker.training.checkpoint import atomic_save, make_checkpoint
from cnn_tracker.training.data import SPECS
from cnn_tracker.training.models import build_model, model_args

EXAMPLES: dict[str, int] = {}  # property -> examples it ran (asserted below, shown by -s)
FAST = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
CHEAP = settings(FAST, max_examples=200)  # the config parser: microseconds an example


def ran(name: str) -> None:
    EXAMPLES[name] = EXAMPLES.get(name, 0) + 1


def check_ran(name: str, at_least: int) -> None:
    print(f"{name}: {EXAMPLES.get(name, 0)} examples")
    assert EXAMPLES.get(name, 0) >= at_least


# -- values of every kind a YAML/JSON document or a checkpoint can hold ----------------------
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", "null", "none", "true", "no", "1e3", "2.5", "7", "-1", "nan", "inf",
                     "1_000", "0x10", " 3 ", "adam", "lenet", "mnist", "cuda", "fp16",
                     "9" * 400, "\x1b[2J", "1e400", 10**400, -10**400, 2**63, 2**53 + 1]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10))


# -- 1. the config parser ----------------------------------------------------------------------
def test_any_mapping_is_a_config_or_a_user_error():
    @CHEAP
    @given(st.dictionaries(keys, values, max_size=6))
    def prop(mapping):
        ran("config mapping")
        try:
            cfg = make_config(mapping, source="property")
        except UserError:
            return
        assert isinstance(cfg, TrainConfig)
        assert isinstance(cfg.epochs, int) and isinstance(cfg.lr, float) and cfg.lr > 0

    prop()
    check_ran("config mapping", 200)


def test_any_config_file_is_a_config_or_a_user_error(tmp_path):
    @CHEAP
    @given(st.one_of(st.dictionaries(keys, values, max_size=6), values),
           st.sampled_from(["", "dup", "cut", "tab", "alias"]))
    def prop(document, damage):
        ran("config file")
        text = yaml.safe_dump(document, allow_unicode=True)
        if damage == "dup":
            text += text
        elif damage == "cut":
            text = text[: len(text) // 2]
        elif damage == "tab":
            text = "\t" + text
        elif damage == "alias":
            text = "a: &x [1, 2]\nb: *x\n" + text
        path = tmp_path / "c.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            make_config(load_config_file(path), source="property")
        except UserError:
            pass

    prop()
    check_ran("config file", 200)


OPTIONS = [f"--{k}" for k in KEYS] + ["--config", "--preset", "--name", "--mode", "--resume",
                                     "--tags", "--lr=", "--epochs=", "--bogus"]
tokens = st.one_of(st.sampled_from(OPTIONS), st.text(max_size=8),
                   st.sampled_from(["0", "-1", "2.5", "1e9", "true", "null", "{", '{"lr": 0.1}',
                                    '{"lr": [[[[1]]]]}', "[1]", "lr=0.1", "x=y", "--", "-q"]))


def test_any_train_argv_is_a_config_or_a_user_error(monkeypatch):
    seen: list[TrainConfig] = []

    def fake_run_training(cfg, settings, **kwargs):
        seen.append(cfg)
        return {}

    monkeypatch.setattr("cnn_tracker.runs.runner.run_training", fake_run_training)

    @CHEAP
    @given(st.lists(tokens, max_size=6))
    def prop(argv):
        ran("train argv")
        if any(t in ("--help", "-h") for t in argv):
            return
        result = CliRunner().invoke(cli, ["train", *argv])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            argv, result.output, result.exception)
        assert result.exit_code in (0, 2), (argv, result.output)

    prop()
    check_ran("train argv", 200)
    assert seen and all(isinstance(c, TrainConfig) for c in seen)  # some were valid


# -- 2. checkpoints ----------------------------------------------------------------------------
def real_checkpoint() -> dict:
    args = model_args("lenet")
    model = build_model("lenet", args)
    return make_checkpoint(model, "lenet", args, TrainConfig(model="lenet"), SPECS["mnist"], 1,
                           {"val/accuracy": 0.1})


FIELDS = ["format", "model", "model_args", "state_dict", "config", "dataset", "class_names",
          "normalization", "epoch", "metrics", "model_args.in_shape", "model_args.num_classes",
          "model_args.hidden_units", "model_args.dropout", "model_args.batch_norm",
          "normalization.mean", "normalization.std", "config.eval_batch_size", "config.model",
          "state_dict.head.0.weight", "state_dict.features.0.bias", "class_names.0"]
replacements = st.one_of(
    values, st.just("<delete>"),
    st.sampled_from([-1, 0, 2**31, 10**6, 11, 9, [1, 28, 28], [3, 32, 32], [1, -28, 28], ["0"] * 11,
                     list("0123456789"), ["\x1b]0;pwned\x07"] * 10, 1e-300, float("nan")]),
    st.lists(st.integers(1, 4), min_size=0, max_size=3).map(lambda s: torch.zeros(s)),
    st.sampled_from([torch.zeros(120, 900), torch.zeros(6, dtype=torch.int64),
                     torch.zeros(6, dtype=torch.complex64), torch.zeros(6).to_sparse()]),
)


def mutate(ckpt: dict, field: str, value) -> dict:
    head, _, rest = field.partition(".")
    target = ckpt
    if rest:
        if not isinstance(ckpt[head], (dict, list)):
            return ckpt
        ckpt[head] = list(ckpt[head]) if isinstance(ckpt[head], list) else dict(ckpt[head])
        target, head = ckpt[head], int(rest) if isinstance(ckpt[head], list) else rest
    if isinstance(value, str) and value == "<delete>":
        if isinstance(target, dict):
            target.pop(head, None)
        return ckpt
    if isinstance(target, list) and not target:
        return ckpt
    target[head] = value
    return ckpt


def test_a_mutated_checkpoint_dict_loads_or_is_a_user_error(tmp_path):
    base = real_checkpoint()

    @CHEAP
    @given(st.lists(st.tuples(st.sampled_from(FIELDS), replacements), min_size=1, max_size=2))
    def prop(changes):
        ran("checkpoint dict")
        ckpt = dict(base)
        for field, value in changes:
            ckpt = mutate(ckpt, field, value)
        path = tmp_path / "m.pt"
        try:
            atomic_save(ckpt, path)
        except Exception:  # noqa: BLE001  (torch cannot save some values: not our input then)
            return
        try:
            _, model, spec = load_for_inference(path, "cpu")
        except UserError:
            return
        out = model(torch.zeros(2, 1, 28, 28))
        assert out.shape == (2, len(spec.class_names))

    prop()
    check_ran("checkpoint dict", 200)


def test_mutated_checkpoint_bytes_load_or_are_a_user_error(tmp_path):
    data = bytearray(atomic_save(real_checkpoint(), tmp_path / "real.pt").read_bytes())

    # the pickle and headers are at the start, the zip directory at the end: edits go there too
    where = st.one_of(st.integers(0, 1500), st.integers(len(data) - 1500, len(data) - 1),
                      st.integers(0, len(data) - 1))

    @FAST
    @given(st.lists(st.tuples(where, st.integers(0, 255)), max_size=8),
           st.one_of(st.none(), st.integers(0, len(data))))
    def prop(edits, cut):
        ran("checkpoint bytes")
        mutated = bytearray(data)
        for pos, byte in edits:
            mutated[pos] = byte
        path = tmp_path / "b.pt"
        path.write_bytes(bytes(mutated[:cut] if cut is not None else mutated))
        try:
            load_for_inference(path, "cpu")
        except UserError:
            pass

    prop()
    check_ran("checkpoint bytes", 120)


# -- 3. sweep files ----------------------------------------------------------------------------
param_specs = st.one_of(
    st.fixed_dictionaries({"values": st.lists(values, max_size=4)}),
    st.fixed_dictionaries({"value": values}),
    st.fixed_dictionaries({"distribution": st.sampled_from(DISTRIBUTIONS)},
                          optional={"min": scalars, "max": scalars, "q": scalars, "mu": scalars,
                                    "sigma": scalars, "a": scalars, "b": scalars,
                                    "values": st.lists(scalars, max_size=3),
                                    "probabilities": st.lists(scalars, max_size=3)}),
    st.fixed_dictionaries({"min": st.integers(-5, 10**9), "max": st.integers(-5, 10**9)}),
    values,
)
sweep_docs = st.fixed_dictionaries(
    {"method": st.one_of(st.sampled_from(["grid", "random", "bayes"]), scalars),
     "parameters": st.dictionaries(keys, param_specs, max_size=4)},
    optional={"metric": st.fixed_dictionaries(
                  {"name": st.one_of(st.sampled_from(["val/accuracy", "val/loss", "x"]), scalars)},
                  optional={"goal": st.one_of(st.sampled_from(["maximize", "minimize"]), scalars),
                            "target": scalars}),
              "program": st.one_of(st.just("cnn_tracker/__main__.py"), scalars),
              "command": st.lists(st.sampled_from(["${env}", "${interpreter}", "-m", "cnn_tracker",
                                                   "train", "${args}", "${program}", "${argz}"]),
                                  max_size=6),
              "run_cap": scalars,
              "early_terminate": st.fixed_dictionaries({"type": st.sampled_from(["hyperband", "x"])},
                                                       optional={"min_iter": scalars, "eta": scalars})})


def test_any_sweep_document_gets_a_verdict(tmp_path):
    @FAST
    @given(sweep_docs, st.lists(st.tuples(st.integers(0, 400), st.characters()), max_size=3))
    def prop(doc, edits):
        ran("sweep file")
        text = list(yaml.safe_dump(doc, allow_unicode=True))
        for pos, ch in edits:
            text.insert(min(pos, len(text)), ch)
        path = tmp_path / "s.yaml"
        path.write_text("".join(text), encoding="utf-8", errors="surrogatepass")
        try:
            load_checked(str(path), warn=lambda line: None)
        except UserError as exc:
            assert str(exc).startswith("sweep file")

    prop()
    check_ran("sweep file", 120)


# -- 4. image bytes ----------------------------------------------------------------------------
def image_files() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    gray = Image.fromarray((rng.random((40, 30)) * 255).astype(np.uint8), "L")
    out = []
    for mode, fmt in (("L", "PNG"), ("RGB", "JPEG"), ("RGBA", "PNG"), ("P", "GIF"), ("1", "BMP"),
                      ("CMYK", "TIFF"), ("F", "TIFF"), ("I", "TIFF"), ("LA", "PNG"), ("RGB", "WEBP")):
        buffer = io.BytesIO()
        gray.convert(mode).save(buffer, fmt)
        out.append(buffer.getvalue())
    return out


def test_any_image_bytes_give_a_prediction_or_a_user_error(tmp_path):
    ckpt = atomic_save(real_checkpoint(), tmp_path / "lenet.pt")
    files = image_files()

    @FAST
    @given(st.sampled_from(range(len(files))),
           st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
           st.one_of(st.none(), st.integers(0, 10**6)))
    def prop(which, edits, cut):
        ran("image bytes")
        data = bytearray(files[which])
        for pos, byte in edits:
            data[pos % len(data)] = byte
        path = tmp_path / "image.bin"
        path.write_bytes(bytes(data[: cut % (len(data) + 1)] if cut is not None else data))
        try:
            [result] = predict_files(ckpt, [path], 3, "cpu")
        except UserError:
            return
        assert result["predicted"] in SPECS["mnist"].class_names
        assert sum(t["probability"] for t in result["top"]) <= 1.0 + 1e-5

    prop()
    check_ran("image bytes", 120)


@pytest.mark.parametrize("size", [(40000, 40000), (8000, 7000)])
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, size):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, "PNG")
    path = tmp_path / "bomb.png"
    path.write_bytes(buffer.getvalue())
    assert path.stat().st_size < 300_000
    ckpt = atomic_save(real_checkpoint(), tmp_path / "lenet.pt")
    with pytest.raises(UserError, match="bomb.png.*pixels"):
        predict_files(ckpt, [Path(path)], 3, "cpu")
