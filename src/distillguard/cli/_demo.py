"""`distillguard demo`: simulate, scan, evaluate, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Where the log, verdicts and report go.")
        ] = Path("distillguard-demo"),
        seed: Annotated[int, typer.Option(help="Simulator seed.")] = 0,
        events: Annotated[
            int | None, typer.Option(help="Events to simulate (default: the scenario's size).")
        ] = None,
    ) -> None:
        """Simulate the default scenario, scan it, score it against the volume baseline."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from distillguard.demo import run_demo
        from distillguard.report import campaign_rows, persona_rows, rich_table, summary_rows

        console = Console()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("starting", total=1)

            def progress(what: str, done: int, total: int) -> None:
                bar.update(task, description=what, completed=done, total=total)

            result = run_demo(out, seed=seed, events=events, progress=progress)
        for rows in (summary_rows, persona_rows, campaign_rows):
            console.print(rich_table(rows(result.evaluations)))
        console.print(f"log: {result.log_dir}")
        console.print(f"report: {result.report}")
