"""The ``cnn-tracker`` command line (click): the group, its context object, and ``main``.

One module per command group (train, data, inference, sweeps, results, store, bench, serve); only this
package imports click. Business logic lives in the packages the commands call. A
:class:`~cnn_tracker.errors.UserError` raised anywhere becomes click's one-line ``Error: ...``
with exit code 2.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from cnn_tracker import __version__, env
from cnn_tracker.errors import UserError
from cnn_tracker.inputs import printable
from cnn_tracker.store.location import mask_urls


@dataclass
class AppContext:
    """``ctx.obj``: built once in the group callback and handed to every command."""

    debug: bool = False


class UserErrorToClick(click.ClickException):
    """A UserError, shown by click as one ``Error: ...`` line (also under ``CliRunner``)."""

    def __init__(self, error: UserError):
        super().__init__(printable(error.message, keep_newlines=True))  # text from files, escaped
        self.exit_code = error.exit_code


class Group(click.Group):
    """The click group whose commands report a UserError the click way."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise UserErrorToClick(exc) from exc


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnn-tracker")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Train, track, evaluate and compare small CNNs on MNIST and Fashion-MNIST with W&B."""
    env.load_dotenv_file()
    ctx.obj = AppContext(debug=debug)


from cnn_tracker.cli import (  # noqa: E402
    bench,
    dashboard,
    data,
    inference,
    results,
    serve,
    store,
    sweeps,
    train,
)

for _module in (train, data, inference, sweeps, results, store, bench, dashboard, serve):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Entry point: user errors print one line and exit 2; --debug shows the traceback."""
    debug = "--debug" in sys.argv[1:]
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # one line per epoch, also in agent logs
    try:
        code = cli.main(standalone_mode=False)
        if isinstance(code, int) and code:  # click returns the code of an Exit it caught
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except UserError as exc:  # raised outside a command (e.g. reading .env)
        if debug:
            raise
        click.echo(f"Error: {printable(mask_urls(exc.message), keep_newlines=True)}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if debug:
            raise exc.__cause__ or exc
        exc.message = printable(mask_urls(exc.message), keep_newlines=True)
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
