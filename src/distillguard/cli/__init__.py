"""The `distillguard` command: thin typer commands over the public API.

Each area registers its commands from its own module (`_simulate.py`, ...),
listed once in `_COMMAND_MODULES`; modules import their heavy dependencies
inside the command so that `distillguard --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from distillguard import __version__
from distillguard._errors import DistillguardError
from distillguard._extras import extras_hint

app = typer.Typer(
    name="distillguard",
    help="Defend an LLM API against distillation attacks: capture, detect, enforce, watermark, trace.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: typer's rich panels tag every flag with `<bool>`.
    rich_markup_mode=None,
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


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"distillguard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Defend an LLM API against distillation attacks: capture, detect, enforce, watermark, trace."""


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; our own errors become one clear line and exit code 2.

    The app runs in click's standalone mode, so click itself prints usage errors with the
    command's usage line (exit 2), `--help` and `--version` (exit 0): whichever click typer
    carries (typer >= 0.29 vendors its own), its exceptions never reach us.
    """
    try:
        with extras_hint():
            app(args=argv, prog_name="distillguard")
    except DistillguardError as exc:
        # Escaped: messages quote `distillguard[extra]` and paths with brackets; one line, unwrapped.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
