"""`distillguard simulate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        out: Annotated[Path | None, typer.Option("--out", help="Directory to write the traffic log to.")] = None,
        seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same log.")] = 0,
        scenario: Annotated[
            Path | None, typer.Option(help="Scenario TOML file (default: the shipped default scenario).")
        ] = None,
        events: Annotated[
            int | None, typer.Option(help="Scale the whole scenario to about this many events.")
        ] = None,
        corpora: Annotated[
            Path | None, typer.Option(help="Prompt corpora folder (default: $DISTILLGUARD_CORPORA or the copy shipped with distillguard).")
        ] = None,
        print_default_scenario: Annotated[
            bool, typer.Option("--print-default-scenario", help="Print the default scenario TOML and exit.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
        plot: Annotated[bool, typer.Option("--plot", help="Also write OUT/overview.png.")] = False,
    ) -> None:
        """Simulate a labelled traffic log: benign users, hard negatives and distillation campaigns."""
        from rich.console import Console

        from distillguard._errors import ScenarioError
        from distillguard.simulate import default_scenario_text, plot_overview
        from distillguard.simulate import simulate as run

        console = Console()
        if print_default_scenario:
            typer.echo(default_scenario_text(), nl=False)
            return
        if out is None:
            raise ScenarioError("Missing --out DIR: say where to write the traffic log.")
        r = run(out, seed=seed, scenario=scenario, events=events, corpora=corpora, progress=not quiet)
        console.print(
            f"wrote {r.events:,} events, {r.accounts:,} accounts ({r.distill_accounts:,} distill in "
            f"{r.campaigns} campaigns) to {r.out} in {r.seconds:.1f} s ({r.events / max(r.seconds, 1e-9):,.0f} events/s)"
        )
        if plot:
            console.print(f"overview plot: {plot_overview(r.out)}")
