"""`distillguard ui` (the analyst console) and `distillguard casefile`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the console commands to the `distillguard` app."""

    @app.command("ui")
    def ui(
        log_dir: Annotated[Path, typer.Argument(help="The traffic log directory.")],
        verdicts_dir: Annotated[
            Path, typer.Argument(help="The scan output (verdicts, campaigns).")
        ],
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8050,
        host: Annotated[
            str, typer.Option(help="Address to bind (loopback by default).")
        ] = "127.0.0.1",
        indicators: Annotated[
            list[Path] | None,
            typer.Option(help="Partner STIX bundles or indicator stores: list matching accounts."),
        ] = None,
    ) -> None:
        """Serve the analyst console: campaigns ranked by score, their graphs, actions."""
        import os
        import secrets

        import uvicorn
        from rich.console import Console

        from distillguard.ui import ConsoleGuard, create_app, csrf_value

        console = Console(stderr=True)
        # The console shows every prompt and can block accounts: it needs a token too. A
        # generated one is never printed; the browser gets a one-time link instead.
        token = os.environ.get("DISTILLGUARD_UI_TOKEN") or secrets.token_urlsafe(24)
        with console.status("Pre-aggregating the log and the verdicts…"):
            web = create_app(log_dir, verdicts_dir, indicators=indicators or None, csrf=csrf_value(token))
        guard = ConsoleGuard(web, token)
        later = "log in at /login with DISTILLGUARD_UI_TOKEN" if "DISTILLGUARD_UI_TOKEN" in os.environ else "restart for a new link"
        console.print(f"Console on [bold]http://{host}:{port}{guard.one_time_link()}[/] (one-time link, 5 minutes; then {later}; Ctrl-C to stop)")
        uvicorn.run(guard, host=host, port=port, log_level="warning")

    @app.command("casefile")
    def casefile(
        log_dir: Annotated[Path, typer.Argument(help="The traffic log directory.")],
        verdicts_dir: Annotated[
            Path, typer.Argument(help="The scan output (verdicts, campaigns).")
        ],
        campaign: Annotated[str, typer.Option("--campaign", help="The campaign id.")],
        out: Annotated[
            Path, typer.Option("--out", help="Directory to write the case file to.")
        ] = Path("."),
        pdf: Annotated[bool, typer.Option(help="Also write the PDF.")] = True,
    ) -> None:
        """Write a campaign's case file: self-contained HTML, and PDF, for legal and policy."""
        from rich.console import Console

        from distillguard.cases import write_casefile

        for path in write_casefile(log_dir, verdicts_dir, campaign, out, pdf=pdf):
            Console().print(f"wrote {path}")
