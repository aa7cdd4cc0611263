"""`distillguard ingest SOURCE --from FORMAT --out LOG_DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from distillguard.ingest import IngestReport


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        source: Annotated[
            str, typer.Argument(help="Log file, or for litellm a postgresql:// URL.")
        ],
        from_: Annotated[
            str,
            typer.Option(
                "--from",
                help="Source format: litellm, openai, openai-batch, anthropic-batch or mapped.",
            ),
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Traffic log directory to write.")],
        since: Annotated[
            str | None,
            typer.Option(
                help="Append only events from this time on (ISO-8601), or `last`: after the "
                "latest event already in --out. Without it --out's events are replaced."
            ),
        ] = None,
        requests: Annotated[
            Path | None, typer.Option(help="Batch formats: the batch's request file.")
        ] = None,
        batch: Annotated[
            Path | None, typer.Option(help="Batch formats: the batch object (JSON).")
        ] = None,
        account: Annotated[
            str | None, typer.Option(help="Account of rows whose source names none.")
        ] = None,
        map_: Annotated[
            Path | None, typer.Option("--map", help="mapped: the TOML column map.")
        ] = None,
        table: Annotated[
            str, typer.Option(help="litellm from PostgreSQL: the spend-log table.")
        ] = "LiteLLM_SpendLogs",
        rejects: Annotated[
            Path | None,
            typer.Option(help="Write every rejected row (file, row, column, why) to this JSONL."),
        ] = None,
        examples: Annotated[int, typer.Option(help="Rejected rows to show per problem.")] = 5,
    ) -> None:
        """Convert a provider's existing logs into a traffic log, streaming.

        Every good row is written; each bad one is named by file, row and column.
        Exit code 0: every row written; 1: some rows rejected; 2: nothing written
        or a usage problem.
        """
        from rich.console import Console

        from distillguard._errors import ConfigError
        from distillguard.ingest import ingest as run_ingest
        from distillguard.ingest import last_ingested, open_source
        from distillguard.ingest._convert import RowError, parse_ts

        when = None
        if since is not None and since != "last":
            try:
                when = parse_ts(since, "since")
            except RowError as exc:
                raise ConfigError(f"--since: {exc.message}; give ISO-8601 or `last`.") from None
        start = last_ingested(out)[0] if since == "last" else when
        src = open_source(
            from_, source, requests=requests, batch=batch, account=account, column_map=map_,
            table=table, since=start,
        )
        console = Console()
        report = run_ingest(
            src, out, since="last" if since == "last" else when, rejects=rejects,
            progress=console.is_terminal,
        )
        _print(console, report, examples)
        raise typer.Exit(report.exit_code)


def _print(console: Console, report: IngestReport, examples: int) -> None:
    from rich.table import Table

    span = (
        f", {report.first_ts:%Y-%m-%d %H:%M:%S} .. {report.last_ts:%Y-%m-%d %H:%M:%S} UTC"
        if report.first_ts and report.last_ts else ""
    )
    since = f", {report.skipped_since:,} before --since" if report.skipped_since else ""
    console.print(
        f"{report.source}: {report.read:,} rows read, {report.written:,} events written to "
        f"{report.out}{span}{since}, {report.rejected:,} rejected",
        highlight=False,
    )
    if not report.problems:
        return
    table = Table(title="rejected rows", title_justify="left")
    table.add_column("count", justify="right")
    table.add_column("problem", overflow="fold")
    table.add_column("where (first)", overflow="fold")
    for p in report.problems:
        where = "\n".join(str(e) for e in p.examples[:examples])
        table.add_row(f"{p.count:,}", p.message, where)
    console.print(table)
