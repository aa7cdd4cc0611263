"""`distillguard evaluate LOG_DIR VERDICTS_DIR [VERDICTS_DIR ...]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        log_dir: Annotated[Path, typer.Argument(help="Traffic log with labels.")],
        verdicts_dirs: Annotated[
            list[Path],
            typer.Argument(help="One or more verdict directories, scored side by side."),
        ],
        report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print the metrics as JSON instead of tables.")
        ] = False,
    ) -> None:
        """Score verdicts against the log's labels: recall, false positives, harvest."""
        import json

        from rich.console import Console

        from distillguard.report import (
            campaign_rows,
            evaluate,
            persona_rows,
            rich_table,
            summary_rows,
            write_report,
        )

        console = Console()
        names = _names(verdicts_dirs)
        with console.status("evaluating", spinner="dots") if not json_out else _nothing():
            evaluations = [
                evaluate(log_dir, vdir, name=name)
                for vdir, name in zip(verdicts_dirs, names, strict=True)
            ]
        written = None
        if report is not None:
            written = write_report(evaluations, report)
        if json_out:
            typer.echo(json.dumps([ev.to_dict() for ev in evaluations], indent=2))
            return
        for rows in (summary_rows, persona_rows, campaign_rows):
            console.print(rich_table(rows(evaluations)))
        for ev in evaluations:
            for note in ev.notes:
                console.print(f"[yellow]{ev.name}:[/] {note}")
        if written is not None:
            console.print(f"report: {written}")


def _names(dirs: list[Path]) -> list[str]:
    """Directory names, made unique (and stripped of a shared `verdicts-` prefix)."""
    names = [d.resolve().name for d in dirs]
    names = [n.removeprefix("verdicts-") or n for n in names]
    if len(set(names)) < len(names):
        names = [str(d) for d in dirs]
    return names


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None
