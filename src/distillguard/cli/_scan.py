"""`distillguard scan LOG_DIR --out VERDICTS_DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def scan(
        log_dir: Annotated[Path, typer.Argument(help="Traffic log directory to scan.")],
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Directory for verdicts and campaigns.")
        ],
        detector: Annotated[
            str | None,
            typer.Option(help="Detector to run (default: the best the project has)."),
        ] = None,
        config: Annotated[
            Path | None, typer.Option(help="Detector configuration file (TOML).")
        ] = None,
        engine: Annotated[
            str, typer.Option(help="Where the scan runs: duckdb (embedded), spark, or spark-streaming (the log's event parts as a stream, one part per micro-batch).")
        ] = "duckdb",
        indicators: Annotated[
            Path | None,
            typer.Option(help="Partners' STIX indicators (a bundle or a `share import` store)."),
        ] = None,
        checkpoint: Annotated[
            Path | None,
            typer.Option(help="spark-streaming: the query's checkpoint folder; a scan started again on it resumes."),
        ] = None,
    ) -> None:
        """Scan a traffic log and write per-account verdicts and detected campaigns."""
        import time

        from rich.console import Console

        from distillguard._errors import ConfigError
        from distillguard.detect import DEFAULT_DETECTOR, ENGINES, Engine
        from distillguard.detect import scan as run_scan

        if engine not in ENGINES:
            raise ConfigError(f"Unknown engine {engine!r}; use one of {', '.join(ENGINES)}.")
        eng: Engine = engine  # narrowed by the check against ENGINES above
        name = detector or DEFAULT_DETECTOR
        console = Console()
        start = time.perf_counter()
        with console.status(f"scanning {log_dir} with {name} on {eng}"):
            result = run_scan(log_dir, out, detector=name, config=config, engine=eng,
                              indicators=indicators, checkpoint=checkpoint)
        took = time.perf_counter() - start
        actions = result.verdicts.column("action").to_pylist()
        counts = {a: actions.count(a) for a in ("allow", "monitor", "throttle", "block")}
        console.print(
            f"{name}: {result.verdicts.num_rows} accounts "
            f"({', '.join(f'{n} {a}' for a, n in counts.items())}), "
            f"{result.campaigns.num_rows} campaigns in {took:.1f}s; wrote {out}"
        )
