"""Train-step images/s of each model under the engine's speed options, on synthetic batches.

    python benchmarks/step_throughput.py [--models lenet,fashioncnn,tinyvgg] [--batch-size 128]
                                         [--repeats 3] [--compile]

For each model: plain NCHW fp32, channels_last, and channels_last + BatchNorm (and
channels_last + torch.compile with --compile, whose compile time is reported separately). Each
variant runs warm-up steps, then a timed window; the variants alternate within every repeat and
the median is printed (for compile, also the first warm-up, which compiles), so drifts in machine load hit all of them. Only the model's own step is
timed (forward, loss, backward, AdamW): no data loading. ``cnn-tracker bench`` measures whole
training runs; this isolates what the memory format, BatchNorm and compile cost or save.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from cnn_tracker.training.models import build_model, model_args


def step_rate(name: str, batch: int, *, channels_last: bool, batch_norm: bool, compiled: bool,
              images: int) -> tuple[float, float]:
    """(images/s over ``images`` training images, seconds of warm-up incl. compile)."""
    torch.manual_seed(0)
    model = build_model(name, model_args(name, None, None, batch_norm))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if compiled else model
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def step() -> None:
        loss = nn.functional.cross_entropy(run(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    start = time.perf_counter()
    for _ in range(3):
        step()
    warmup = time.perf_counter() - start
    steps = max(4, images // batch)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start), warmup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet,fashioncnn,tinyvgg")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=6400, help="timed images per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    variants = {"nchw": dict(channels_last=False, batch_norm=False, compiled=False),
                "channels_last": dict(channels_last=True, batch_norm=False, compiled=False),
                "channels_last+bn": dict(channels_last=True, batch_norm=True, compiled=False)}
    if args.compile:
        variants["channels_last+compile"] = dict(channels_last=True, batch_norm=False, compiled=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"median of {args.repeats}")
    for name in args.models.split(","):
        rates: dict[str, list[float]] = {v: [] for v in variants}
        warmups: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for variant, kw in variants.items():
                rate, warm = step_rate(name, args.batch_size, images=args.images, **kw)
                rates[variant].append(rate)
                warmups[variant].append(warm)
        base = statistics.median(rates["nchw"])
        cells = []
        for variant in variants:
            med = statistics.median(rates[variant])
            extra = (f", first compile {max(warmups[variant]):.0f} s"
                     if "compile" in variant else "")
            cells.append(f"{variant} {med:,.0f} img/s ({med / base:.2f}x{extra})")
        print(f"{name:<11} " + "  ".join(cells))


if __name__ == "__main__":
    main()
