"""`distillguard validate LOG_DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from distillguard.traffic import ValidationReport


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(
        log_dir: Annotated[Path, typer.Argument(help="Traffic log directory to check.")],
        examples: Annotated[int, typer.Option(help="Locations to show per problem.")] = 3,
    ) -> None:
        """Check a traffic log against the format and print a summary.

        Exit code 0: clean; 1: warnings only (rows that can be skipped, such as a
        repeated event_id or an event of an unknown account); 2: errors (a file or
        value breaks the format).
        """
        from rich.console import Console

        from distillguard._errors import DistillguardError
        from distillguard.traffic import validate_log

        console = Console()
        try:
            report = validate_log(log_dir, progress=console.is_terminal)
        except DistillguardError as exc:
            Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        _print(console, report, examples)
        raise typer.Exit(report.exit_code)


def _print(console: Console, report: ValidationReport, examples: int) -> None:
    from rich.table import Table

    tables = Table(title=f"traffic log {report.directory}", title_justify="left")
    tables.add_column("table")
    tables.add_column("stored as")
    tables.add_column("rows", justify="right")
    for t in report.tables:
        tables.add_row(t.name, t.encoding, f"{t.rows:,}")
    console.print(tables)
    if report.events:
        span = f"{report.first_ts:%Y-%m-%d %H:%M:%S} .. {report.last_ts:%Y-%m-%d %H:%M:%S} UTC"
        days = (
            (report.last_ts - report.first_ts).total_seconds() / 86400
            if report.first_ts and report.last_ts
            else 0.0
        )
        console.print(f"events: {report.events:,}   span: {span} ({days:.1f} days)")
        models = ", ".join(f"{m} ({n:,})" for m, n in list(report.models.items())[:8])
        more = f", +{len(report.models) - 8} more" if len(report.models) > 8 else ""
        console.print(
            f"accounts: {report.accounts:,}   models: {len(report.models)}: {models}{more}",
            highlight=False,
        )
    if not report.problems:
        console.print("[green]ok:[/] no problems found")
        return
    problems = Table(title="problems", title_justify="left")
    problems.add_column("level")
    problems.add_column("count", justify="right")
    problems.add_column("problem", overflow="fold")
    problems.add_column("where (first)", overflow="fold")
    for p in report.problems:
        style = "red" if p.level == "error" else "yellow"
        where = "\n".join(str(e) for e in p.examples[:examples])
        problems.add_row(f"[{style}]{p.level}[/]", f"{p.count:,}", p.message, where)
    console.print(problems)
    n_err, n_warn = len(report.errors), len(report.warnings)
    console.print(f"{n_err} error(s), {n_warn} warning(s)", highlight=False)
