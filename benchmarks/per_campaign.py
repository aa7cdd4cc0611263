"""Harvest before detection per campaign (issue 14's target: <= 5% for every campaign):
simulate each run of RUNS (or reuse its log in --work), scan it with the current default
config and score each campaign: accounts flagged and harvest before detection.

    nice python benchmarks/per_campaign.py --work DIR --default-log /work/dg-bench/seed7-1m
    nice python benchmarks/per_campaign.py --work DIR --runs holdout_carried.toml

Writes docs/benchmarks-campaigns.md (or --out), which this script owns, and prints it.
Simulation and log reuse are family_matrix's (a log of the same scenario, seed and size in
--work is reused); verdicts in --work are reused only when --reuse-verdicts is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from family_matrix import _simulate

from distillguard.detect import load_config, scan
from distillguard.report import evaluate
from distillguard.simulate import load_corpora

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks-campaigns.md"
DEFAULT_EVENTS = 1_000_000
TARGET = 0.05


@dataclass(frozen=True)
class Run:
    scenario: str  # "default" or a file under scenarios/
    seed: int
    events: int | None  # None: the scenario's own size
    role: str  # "tuning" or "held out"


# The runs docs/results.md reports; tuning runs are marked so nobody tunes on the rest.
RUNS = (
    Run("default", 7, DEFAULT_EVENTS, "held out"),
    Run("holdout_small_precise.toml", 12, None, "held out"),
    Run("holdout_slow_hydra.toml", 11, None, "held out"),
    Run("holdout_carried.toml", 41, None, "held out"),
    Run("tune_reseller_carried.toml", 21, None, "tuning"),
    Run("tune_carried_solo.toml", 31, None, "tuning"),
    Run("tune_carried_solo.toml", 32, None, "tuning"),
    Run("tune_carried_variants.toml", 51, None, "tuning"),
    Run("tune_carried_variants.toml", 52, None, "tuning"),
)


def _log_of(run: Run, work: Path, default_log: Path | None, corpora: object) -> Path:
    if run.scenario == "default" and default_log is not None:
        return default_log
    return _simulate({"scenario": run.scenario, "seed": run.seed}, run.events, work, corpora)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / max(1, whole):.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for logs and verdicts")
    ap.add_argument("--default-log", type=Path, help="an existing log of the default scenario, seed 7, 1M events")
    ap.add_argument("--runs", nargs="*", help="scenario names of RUNS to run (default: all)")
    ap.add_argument("--reuse-verdicts", action="store_true", help="score verdicts already in --work")
    ap.add_argument("--out", type=Path, default=OUT, help="markdown file to write")
    args = ap.parse_args()

    runs = [r for r in RUNS if not args.runs or r.scenario in args.runs]
    if not runs:
        sys.exit(f"per_campaign: no run named {args.runs}; runs: {sorted({r.scenario for r in RUNS})}")
    args.work.mkdir(parents=True, exist_ok=True)
    corpora = load_corpora()
    rows: list[str] = []
    for run in runs:
        _write(args, rows, done=False)
        log = _log_of(run, args.work, args.default_log, corpora)
        vdir = args.work / f"{Path(run.scenario).stem}-s{run.seed}-verdicts"
        t = time.perf_counter()
        if not (args.reuse_verdicts and (vdir / "verdicts.parquet").exists()):
            scan(log, vdir)
        ev = evaluate(log, vdir, name="graph")
        print(f"  {run.scenario} seed {run.seed}: scanned and scored in {time.perf_counter() - t:.0f} s", flush=True)
        for c in ev.campaigns:
            share = c.harvested / max(1, c.events)
            mark = "" if share <= TARGET else " (over)"
            rows.append(f"| {Path(run.scenario).stem}, seed {run.seed} ({run.role}) | {c.campaign_id} | "
                        f"{c.flagged}/{c.accounts} ({_pct(c.flagged, c.accounts)}) | "
                        f"{_pct(c.harvested, c.events)}{mark} |")
    _write(args, rows, done=True)
    print(args.out.read_text(encoding="utf-8"))
    print(f"written to {args.out}; logs and verdicts in {args.work}")


def _write(args: argparse.Namespace, rows: list[str], done: bool) -> None:
    """Write the table so far (a partial run still leaves its rows, marked unfinished)."""
    lines = [
        "# Harvest before detection per campaign",
        "",
        "Written by `benchmarks/per_campaign.py` (do not edit by hand). Each run is simulated at its",
        "seed (the default scenario at 1M events, the others at their scenario's own size), scanned",
        f"with the default detector (`graph`, config {load_config().version}) and scored per campaign: accounts",
        "flagged, and harvest before detection (share of the campaign's events served before its",
        f"account was flagged; the target is <= {100 * TARGET:.0f}%, \"(over)\" marks a miss).",
        "",
        "Command: `python benchmarks/per_campaign.py --work DIR"
        + (f" --runs {' '.join(args.runs)}" if args.runs else "") + "`",
        "",
        "| log | campaign | accounts flagged | harvest before detection |",
        "| --- | --- | ---: | ---: |",
        *rows,
    ]
    if not done:
        lines += ["", "(unfinished: the script is still running or was stopped; rows above are complete runs)"]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
