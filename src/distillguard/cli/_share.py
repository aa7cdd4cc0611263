"""`distillguard share export|import`: STIX 2.1 indicator sharing between providers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_STORE = Path(os.environ.get("DISTILLGUARD_INDICATORS", "indicators"))


def register(app: typer.Typer) -> None:
    """Add the `share` command group to the `distillguard` app."""
    share = typer.Typer(
        help="Share campaign indicators with other providers (STIX 2.1).", no_args_is_help=True
    )

    @share.command("export")
    def export(
        log_dir: Annotated[Path, typer.Argument(help="The traffic log directory.")],
        verdicts_dir: Annotated[
            Path, typer.Argument(help="The scan output (verdicts, campaigns).")
        ],
        campaign: Annotated[str, typer.Option("--campaign", help="The campaign id to share.")],
        out: Annotated[Path, typer.Option("--out", help="The bundle file to write.")],
        producer: Annotated[str, typer.Option(help="Your organisation's name.")] = "distillguard",
        min_specificity: Annotated[
            float,
            typer.Option(help="Least share of a value's accounts that must be campaign members."),
        ] = 0.9,
        max_outside: Annotated[
            int, typer.Option(help="Most accounts outside the campaign that may use a value.")
        ] = 2,
    ) -> None:
        """Export a campaign's indicators (templates, addresses, hashed payment/e-mail, agents)."""
        from collections import Counter

        from rich.console import Console

        from distillguard.cases import CaseStore, export_bundle, write_bundle

        bundle = export_bundle(
            CaseStore(log_dir, verdicts_dir),
            campaign,
            producer=producer,
            min_specificity=min_specificity,
            max_outside=max_outside,
        )
        path = write_bundle(bundle, out)
        kinds = Counter(
            str(o.get("x_distillguard_kind")) for o in bundle.objects if o["type"] == "indicator"
        )
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no indicators"
        Console().print(f"wrote {path}: {sum(kinds.values())} indicators ({summary})")

    @share.command("import")
    def import_(
        file: Annotated[Path, typer.Argument(help="A partner's STIX 2.1 bundle (JSON).")],
        store: Annotated[
            Path, typer.Option(help="The local indicator store (env DISTILLGUARD_INDICATORS).")
        ] = DEFAULT_STORE,
        log: Annotated[
            Path | None,
            typer.Option(help="A traffic log to pre-flag: list its accounts that match."),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                help="Write the matches (account_id, kind, value, events, indicator_ids) here "
                "(.parquet or .csv)."
            ),
        ] = None,
    ) -> None:
        """Import a partner's bundle into the indicator store; optionally match a log against it."""
        from rich.console import Console
        from rich.table import Table

        from distillguard.share import import_bundle, load_indicators, summarize_matches

        console = Console()
        report = import_bundle(file, store)
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.per_kind.items())) or "none usable"
        console.print(
            f"imported {report.indicators} indicators into {report.store} "
            f"({report.added} new objects; values: {kinds}; {report.skipped} skipped)"
        )
        if log is None:
            return
        matches = load_indicators(store).match_accounts(log)
        accounts = sorted(set(matches.column("account_id").to_pylist()))
        per_kind = summarize_matches(matches)
        console.print(
            f"{len(accounts)} accounts of {log} match: "
            + (", ".join(f"{n} by {k}" for k, n in per_kind.items()) or "none")
        )
        table = Table("account", "matched by")
        by_account: dict[str, set[str]] = {}
        for a, k in zip(
            matches.column("account_id").to_pylist(),
            matches.column("kind").to_pylist(),
            strict=True,
        ):
            by_account.setdefault(str(a), set()).add(str(k))
        for a in accounts[:30]:
            table.add_row(a, ", ".join(sorted(by_account[a])))
        if accounts:
            console.print(table)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.suffix == ".csv":
                import pyarrow.csv as pcsv

                flat = matches.set_column(
                    matches.schema.get_field_index("indicator_ids"),
                    "indicator_ids",
                    [[";".join(x) for x in matches.column("indicator_ids").to_pylist()]],
                )
                pcsv.write_csv(flat, out)
            else:
                import pyarrow.parquet as pq

                pq.write_table(matches, out)
            console.print(f"wrote {out}")

    app.add_typer(share, name="share")
