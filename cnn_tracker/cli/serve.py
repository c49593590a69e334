"""``cnn-tracker serve``: a checkpoint, W&B artifact or sweep's best behind an HTTP API."""

from __future__ import annotations

import importlib
import re

import click

from cnn_tracker.cli.common import STORE_OPTION
from cnn_tracker.errors import UserError
from cnn_tracker.inputs import printable


@click.command()
@click.argument("source")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback is reachable from other machines "
                   "(there is no authentication).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port (0: any free port, printed).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--max-batch", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Images per forward pass: concurrent requests are batched up to this.")
@click.option("--max-wait-ms", type=click.FloatRange(0, 1000), default=3.0, show_default=True,
              help="How long a batch waits for more requests (ms).")
@click.option("--batching/--no-batching", default=True, show_default=True,
              help="--no-batching runs each request alone (a baseline for benchmarks).")
@click.option("--max-image-bytes", type=click.IntRange(1024, 256 * 1024 * 1024),
              default=4 * 1024 * 1024, show_default=True, help="Largest accepted image file (bytes).")
@click.option("--threads", type=click.IntRange(1, 256),
              help="CPU threads for torch [default: torch's own, one per core].")
@click.option("--sha256", "expect_sha256", metavar="HEX",
              help="Serve only if the checkpoint file has this sha256.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="warning", show_default=True, help="uvicorn's log level (info: every request).")
@click.option("--follow-best", "follow_seconds", type=click.FloatRange(1, 86400), metavar="SECONDS",
              help="For a sweep or project SOURCE: look for its best run every SECONDS and swap "
                   "a better model in without dropping requests (/v1/model shows the live one).")
@STORE_OPTION
def serve(source, host, port, device, max_batch, max_wait_ms, batching, max_image_bytes, threads,
          expect_sha256, log_level, follow_seconds, store_dir) -> None:
    """Serve SOURCE over HTTP: POST /v1/predict, GET /v1/model, /healthz, /readyz, /docs and a
    draw-a-digit page at /.

    SOURCE is a checkpoint file (.pt), a W&B artifact reference (entity/project/model-<id>:best)
    or a sweep id / project whose best run's checkpoint is served (the local run store first,
    then W&B, as `cnn-tracker best` looks it up). Images get the preprocessing of
    `cnn-tracker predict`. Needs the serve extra: pip install 'cnn-tracker[serve]'.
    """
    require_serve_extra()
    from cnn_tracker.serve.app import Settings, create_app
    from cnn_tracker.serve.model import best_follower, is_search_target, load_served
    from cnn_tracker.serve.server import bind, is_loopback, make_server, url_of

    if expect_sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", expect_sha256.strip()):
        raise UserError(f"--sha256 {expect_sha256!r} is not a sha256: give all 64 hex digits "
                        "(as sha256sum prints them).")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if follow_seconds and not is_search_target(source):
        raise UserError(f"--follow-best needs a sweep id or project as SOURCE, not {source!r} (a "
                        "checkpoint file or artifact reference has no best run to follow).")
    if follow_seconds and expect_sha256:
        raise UserError("--follow-best and --sha256 exclude each other: a followed best changes.")
    served = load_served(source, device=device, store_dir=store_dir, expect_sha256=expect_sha256)
    sock = bind(host, port)
    settings = Settings(max_batch=max_batch, max_wait_s=max_wait_ms / 1000, batching=batching,
                        max_image_bytes=max_image_bytes, follow_seconds=follow_seconds)
    refresh = best_follower(source, device=device, store_dir=store_dir) if follow_seconds else None
    server = make_server(create_app(lambda: served, settings, refresh), sock, log_level)
    info = served.describe()
    url = url_of(sock)
    click.echo(printable(f"serving {info['model']} ({info['dataset']}, {len(info['classes'])} "
                         f"classes) from {served.path} (sha256 {served.sha256[:12]}) on "
                         f"{info['device']}"))
    click.echo(f"listening on {url}  (page: {url}/, API docs: {url}/docs)")
    if is_loopback(sock.getsockname()[0]):
        click.echo("loopback only: reachable from this machine alone (pass --host 0.0.0.0 to "
                   "accept other machines)")
    else:
        click.echo(f"WARNING: listening on {host}, reachable from other machines, with no "
                   "authentication", err=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def require_serve_extra() -> None:
    """A UserError naming what the serve extra lacks. Imported only here, never at startup:
    every other command (and ``--help``) works without FastAPI."""
    missing = [package for package, modules in SERVE_EXTRA if not _importable(modules)]
    if missing:
        raise UserError(f"cnn-tracker serve needs {' and '.join(missing)} (not installed): "
                        "pip install 'cnn-tracker[serve]'")


def _importable(modules: tuple[str, ...]) -> bool:
    for name in modules:
        try:
            importlib.import_module(name)
            return True
        except ImportError:
            pass
    return False


# (package, the modules that provide it): python-multipart is python_multipart from 0.0.13
SERVE_EXTRA = (("fastapi", ("fastapi",)), ("uvicorn", ("uvicorn",)),
               ("python-multipart", ("python_multipart", "multipart")))

COMMANDS = (serve,)
