"""`predict` accuracy on photo-like digits: real MNIST test digits drawn as a phone would see them.

    CNN_TRACKER_DATA_MIRROR=/work/shared/datasets python benchmarks/photo_set.py CKPT \
        [--n 60] [--seed 0] [--out DIR] [--baseline OLD_INFERENCE.py]

Each image: one MNIST test digit (not seen in training), drawn dark on a light uneven background
(a linear gradient of up to 100 grey levels, a colour tint, pixel noise), 120-640 px a side, the
digit 35-80% of the shorter side and off-centre, RGB, saved as JPEG (quality 70-92). Prints the
accuracy of ``cnn-tracker predict``'s preprocessing on them; with ``--baseline`` (another version
of cnn_tracker/tools/inference.py, e.g. ``git show HEAD~1:cnn_tracker/tools/inference.py``) also
the accuracy of that file's ``load_image`` on the same images.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import numpy as np


def make_photo(digit: np.ndarray, rng: np.random.Generator):
    """A PIL RGB image of ``digit`` (uint8 28x28, light on black) as a photo of ink on paper."""
    from PIL import Image

    ys, xs = np.nonzero(digit > 30)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    w, h = (int(v) for v in rng.integers(120, 641, size=2))
    side = rng.uniform(0.35, 0.8) * min(w, h)
    scale = side / max(crop.shape)
    dw, dh = max(2, round(crop.shape[1] * scale)), max(2, round(crop.shape[0] * scale))
    alpha = np.asarray(Image.fromarray(crop).resize((dw, dh), Image.BICUBIC), np.float32) / 255
    left, top = int(rng.integers(0, w - dw + 1)), int(rng.integers(0, h - dh + 1))

    yy, xx = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)  # about -1.4 .. 1.4
    paper = rng.uniform(175, 225) + rng.uniform(15, 35) * ramp
    tint = rng.uniform(-12, 12, size=3)
    bg = paper[..., None] + tint + rng.normal(0, rng.uniform(3, 9), size=(h, w, 3))
    ink = rng.uniform(15, 80) + tint
    a = np.zeros((h, w, 1), np.float32)
    a[top : top + dh, left : left + dw, 0] = alpha.clip(0, 1)
    img = bg * (1 - a) + ink * a
    return Image.fromarray(img.clip(0, 255).astype(np.uint8), "RGB")


def make_photo_set(out_dir: Path, n: int, seed: int = 0) -> list[tuple[Path, int]]:
    """``n`` JPEG photos of MNIST test digits in ``out_dir``: (path, true label) each.

    Reads the real test split (CNN_TRACKER_DATA_MIRROR or the data folder).
    """
    from cnn_tracker import env
    from cnn_tracker.training.data import get_spec, load_split

    images, labels = load_split(get_spec("mnist"), env.data_dir(), train=False)
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for i in rng.choice(len(labels), size=n, replace=False):
        path = out_dir / f"photo-{int(i):05d}-{int(labels[i])}.jpg"
        make_photo(images[i, 0].numpy(), rng).save(path, quality=int(rng.integers(70, 93)))
        made.append((path, int(labels[i])))
    return made


def accuracy(ckpt: Path, photos: list[tuple[Path, int]], loader=None) -> float:
    """Share of ``photos`` that ``predict`` gets right (with ``loader`` as load_image if given)."""
    from cnn_tracker.tools import inference

    original = inference.load_image
    if loader is not None:
        inference.load_image = loader
    try:
        results = inference.predict_files(ckpt, [p for p, _ in photos], top_k=1, device="cpu")
    finally:
        inference.load_image = original
    return sum(r["predicted"] == str(label) for r, (_, label) in zip(results, photos)) / len(photos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="an MNIST checkpoint (best.pt)")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="keep the photos here [default: a temp folder]")
    parser.add_argument("--baseline", type=Path, help="an older tools/inference.py to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photo_set(args.out or Path(tmp), args.n, args.seed)
        if args.baseline:
            spec = importlib.util.spec_from_file_location("baseline_inference", args.baseline)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            print(f"before ({args.baseline}): {accuracy(args.checkpoint, photos, module.load_image):.2%}"
                  f" of {len(photos)} photos")
        print(f"after (this checkout):  {accuracy(args.checkpoint, photos):.2%} of {len(photos)} photos")


if __name__ == "__main__":
    main()
