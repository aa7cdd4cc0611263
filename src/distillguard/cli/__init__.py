"""The `distillguard` command: thin typer commands over the public API.

Each area registers its commands from its own module (`_simulate.py`, ...),
listed once in `_COMMAND_MODULES`; modules import their heavy dependencies
inside the command so that `distillguard --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from distillguard._errors import DistillguardError

app = typer.Typer(
    name="distillguard",
    help="Defend an LLM API against distillation attacks: capture, detect, enforce, watermark, trace.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# One line per area; each module defines `register(app)`.
_COMMAND_MODULES = [
    "distillguard.cli._validate",
    "distillguard.cli._ingest",
    "distillguard.cli._simulate",
    "distillguard.cli._scan",
    "distillguard.cli._evaluate",
    "distillguard.cli._demo",
    "distillguard.cli._ui",
    "distillguard.cli._share",
    "distillguard.cli._serve",
    "distillguard.cli._trace",
]

err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Defend an LLM API against distillation attacks: capture, detect, enforce, watermark, trace."""


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main() -> None:
    """Entry point: run the app, turning our own errors into one clear line and exit code 2."""
    try:
        # Outside standalone mode click returns typer.Exit's code instead of raising it.
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and not isinstance(rc, bool) and rc:
            sys.exit(rc)
    except DistillguardError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
