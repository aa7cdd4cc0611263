"""`distillguard validate LOG_DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(
        log_dir: Annotated[Path, typer.Argument(help="Traffic log directory to check.")],
    ) -> None:
        """Check a traffic log against the format and print a summary."""
        from rich.console import Console

        from distillguard.traffic import read_table

        events = read_table(log_dir, "events")
        Console().print(f"events: {events.num_rows} rows")
