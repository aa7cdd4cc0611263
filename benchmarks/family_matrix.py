"""Evaluation by families held out (issue 14 part 6): simulate every run of
scenarios/families.toml, scan each log with every row's detector, and score each campaign
family: harvest before detection and account recall, per row (a detector and the families it
was tuned on) and column (a family; tuning families first, then held-out, then sealed).

    python benchmarks/family_matrix.py                         # 150k events per run
    python benchmarks/family_matrix.py --events 300000 --rows graph
    python benchmarks/family_matrix.py --include-sealed         # once per release, when measuring it

Writes the matrix to docs/benchmarks-families.md (or --out) and prints it. Logs and verdicts
go to --work (default: a temporary folder); an existing log of the same scenario, seed and
size there is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from distillguard.detect import scan
from distillguard.report import HARD_NEGATIVE_PERSONAS, evaluate
from distillguard.simulate import CampaignSpec, campaign_family, load_corpora, simulate

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "scenarios" / "families.toml"
OUT = ROOT / "docs" / "benchmarks-families.md"
ROLES = ("tuning", "held_out", "sealed")
DEFAULT_EVENTS = 150_000


@dataclass
class Cell:
    """One family's campaigns under one row's detector, summed over the runs."""

    campaigns: int = 0
    caught: int = 0
    accounts: int = 0
    flagged: int = 0
    events: int = 0
    harvested: int = 0
    unheld: int = 0  # events served outside their account's held flags

    def text(self) -> str:
        if not self.campaigns:
            return "-"
        return (f"harvest {100 * self.harvested / max(1, self.events):.1f}% "
                f"(held {100 * self.unheld / max(1, self.events):.1f}%) / "
                f"recall {100 * self.flagged / max(1, self.accounts):.1f}%")


@dataclass
class RowTotals:
    benign: int = 0
    flagged_benign: int = 0
    hard_negatives_blocked: int = 0
    # hard-negative persona -> [accounts, flagged, blocked]
    personas: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))


def _registry(path: Path) -> dict[str, object]:
    try:
        reg = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        sys.exit(f"family_matrix: cannot read the family registry {path}: {exc}")
    bad = {f: r for f, r in reg.get("families", {}).items() if r not in ROLES}
    if bad:
        sys.exit(f"family_matrix: {path}: unknown roles {bad}; each family is one of {ROLES}")
    return reg


def _families_of(log: Path) -> dict[str, str]:
    """campaign_id -> family, from the scenario the log was simulated from."""
    manifest = json.loads((log / "simulation.json").read_text(encoding="utf-8"))
    return {c["id"]: campaign_family(CampaignSpec.model_validate(c)) for c in manifest["scenario"]["campaigns"]}


def _simulate(run: dict[str, object], events: int | None, work: Path, corpora: object) -> Path:
    """Simulate one run into work (events None: the scenario's own size), or reuse the log there."""
    name = str(run["scenario"])
    seed = int(run["seed"])  # type: ignore[call-overload]
    scenario = None if name == "default" else ROOT / "scenarios" / name
    log = work / f"{Path(name).stem}-s{seed}-e{events if events is not None else 'scenario'}"
    if (log / "simulation.json").exists():
        return log
    t = time.perf_counter()
    r = simulate(log, seed=seed, scenario=scenario, events=events, corpora=corpora)  # type: ignore[arg-type]
    print(f"  simulated {name} seed {seed}: {r.events:,} events in {time.perf_counter() - t:.0f} s", flush=True)
    return log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events per simulated run")
    ap.add_argument("--rows", nargs="*", help="row names of the registry to run (default: all)")
    ap.add_argument("--include-sealed", action="store_true", help="also run and show the sealed family")
    ap.add_argument("--registry", type=Path, default=REGISTRY)
    ap.add_argument("--work", type=Path, help="folder for logs and verdicts (default: temporary)")
    ap.add_argument("--out", type=Path, default=OUT, help="markdown file to write")
    args = ap.parse_args()

    reg = _registry(args.registry)
    roles: dict[str, str] = dict(reg["families"])  # type: ignore[call-overload]
    rows = [r for r in reg["rows"] if not args.rows or r["name"] in args.rows]  # type: ignore[attr-defined]
    if not rows:
        sys.exit(f"family_matrix: no row named {args.rows} in {args.registry}")
    work = args.work or Path(tempfile.mkdtemp(prefix="family-matrix-"))
    work.mkdir(parents=True, exist_ok=True)
    corpora = load_corpora()
    cells: dict[tuple[str, str], Cell] = defaultdict(Cell)
    totals: dict[str, RowTotals] = defaultdict(RowTotals)
    seen: set[str] = set()
    runs_done: list[str] = []
    for run in reg["runs"]:  # type: ignore[attr-defined]
        name = str(run["scenario"])
        path = None if name == "default" else ROOT / "scenarios" / name
        if path is not None:
            from distillguard.simulate import load_scenario

            fams = {campaign_family(c) for c in load_scenario(path).campaigns}
            if not args.include_sealed and any(roles.get(f) == "sealed" for f in fams):
                print(f"  skipped {name}: it holds a sealed family (--include-sealed to run it)")
                continue
        log = _simulate(run, args.events, work, corpora)
        runs_done.append(f"{name} (seed {run['seed']})")
        fam_of = _families_of(log)
        for row in rows:
            vdir = work / f"{log.name}-{row['name']}"
            t = time.perf_counter()
            how = "verdicts reused"
            if not (vdir / "verdicts.parquet").exists():
                scan(log, vdir, detector=row["detector"], config=row.get("config"))
                how = f"scanned in {time.perf_counter() - t:.0f} s"
            ev = evaluate(log, vdir, name=row["name"])
            print(f"  {log.name} with {row['name']} ({how}): recall "
                  f"{ev.account_recall:.3f}, FPR {ev.false_positive_rate:.4f}, harvest {ev.harvest_before_detection:.3f} (held {ev.harvest_outside_held_flags:.3f})",
                  flush=True)
            for c in ev.campaigns:
                fam = fam_of.get(c.campaign_id, "(unknown)")
                seen.add(fam)
                cell = cells[(row["name"], fam)]
                cell.campaigns += 1
                cell.caught += int(c.caught)
                cell.accounts += c.accounts
                cell.flagged += c.flagged
                cell.events += c.events
                cell.harvested += c.harvested
                cell.unheld += c.unheld
            tot = totals[row["name"]]
            tot.benign += ev.benign_accounts
            tot.flagged_benign += ev.flagged_benign
            for p in ev.personas:
                if p.label == "benign" and p.persona in HARD_NEGATIVE_PERSONAS:
                    tot.hard_negatives_blocked += p.blocked
                    acc = tot.personas[p.persona]
                    acc[0], acc[1], acc[2] = acc[0] + p.accounts, acc[1] + p.flagged, acc[2] + p.blocked

    order = {r: i for i, r in enumerate(ROLES)}
    fams = sorted(seen, key=lambda f: (order.get(roles.get(f, "held_out"), 1), f))
    if not args.include_sealed:
        fams = [f for f in fams if roles.get(f) != "sealed"]
    lines = [
        "# Detection by campaign family (held-out evaluation)",
        "",
        "Written by `benchmarks/family_matrix.py` (do not edit by hand). Rows: a detector and the",
        "families it was tuned on; columns: campaign families (scenarios/families.toml), tuning first,",
        "then held-out (nobody tunes on them). A cell is the family's campaigns over all runs: harvest",
        "before detection (share of their events served before their account was first flagged), in",
        "brackets harvest outside held flags (share served while their account was not held flagged,",
        "counting after a flag that was dropped; the scan's `flag_periods`, or from the first flag on",
        "for detectors without them) and account recall.",
        "",
        f"Command: `python benchmarks/family_matrix.py --events {args.events}"
        + (f" --rows {' '.join(args.rows)}" if args.rows else "")
        + (" --include-sealed" if args.include_sealed else "") + "`",
        "",
        f"Runs ({args.events:,} events each): " + ", ".join(runs_done) + ".",
        "",
        "| row (tuned on) | " + " | ".join(f"{f} ({roles.get(f, '?')})" for f in fams) + " |",
        "|---|" + "---|" * len(fams),
    ]
    for row in rows:
        tuned = ", ".join(row["tuned_on"]) or "nothing"
        lines.append(f"| {row['name']} ({tuned}) | " + " | ".join(cells[(row['name'], f)].text() for f in fams) + " |")
    lines += ["", "Benign accounts over the same runs:", "",
              "| row | benign accounts | false-positive rate | hard negatives blocked |", "|---|---:|---:|---:|"]
    for row in rows:
        tot = totals[row["name"]]
        fpr = tot.flagged_benign / max(1, tot.benign)
        lines.append(f"| {row['name']} | {tot.benign:,} | {100 * fpr:.3f}% | {tot.hard_negatives_blocked} |")
    lines += ["", "Campaigns per family (caught / all, a campaign is caught when half its accounts are flagged):", "",
              "| row | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for row in rows:
        lines.append(f"| {row['name']} | " + " | ".join(
            f"{cells[(row['name'], f)].caught}/{cells[(row['name'], f)].campaigns}" for f in fams) + " |")
    hard = sorted({p for row in rows for p in totals[row["name"]].personas})
    lines += ["", "Hard negatives (benign look-alikes): flagged / accounts (blocked), over the same runs:", "",
              "| row | " + " | ".join(hard) + " |", "|---|" + "---:|" * len(hard)]
    for row in rows:
        per = totals[row["name"]].personas
        lines.append(f"| {row['name']} | " + " | ".join(
            f"{per[p][1]}/{per[p][0]} ({per[p][2]})" for p in hard) + " |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print()
    print(text)
    print(f"written to {args.out}; logs and verdicts in {work}")


if __name__ == "__main__":
    main()
