"""Check that a change to the detector changes no verdict: scan a set of logs, compare tables.

A restructuring of the detector must leave every verdict and campaign as it was. This script
simulates a fixed set of logs once (cached in --logs), scans each with the graph detector of
the code on PYTHONPATH, writes the verdicts and campaigns under --out, and, given --against
(an earlier --out), compares both tables column by column and prints every difference.

    # before the change
    python benchmarks/verdict_diff.py --logs /tmp/dg-logs --out /tmp/dg-before
    # after it
    python benchmarks/verdict_diff.py --logs /tmp/dg-logs --out /tmp/dg-after --against /tmp/dg-before
    # logs made elsewhere (named by their directories)
    python benchmarks/verdict_diff.py --logs /tmp/dg-logs --out /tmp/dg-before --log /work/big-log
    # after a change that only adds reasons (here: the evidence modules' weights)
    python benchmarks/verdict_diff.py ... --new-reasons "evidence weighed:" \
        "evidence that throttles" --new-evidence evidence

Exit status 1 when anything differs. Scans run one after another (this machine is shared).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """One log: a scenario file (None: the default scenario), a seed and a size."""

    name: str
    scenario: str | None
    seed: int
    events: int
    path: Path | None = None  # a log made elsewhere (`--log`): scanned as it is


#: The logs compared: the default scenario and every shipped scenario at its tuning (or
#: measuring) seed, small enough to scan in a minute or two each.
CASES = (
    Case("default-7", None, 7, 200_000),
    Case("tune_stealth_hydra-1", "tune_stealth_hydra.toml", 1, 150_000),
    Case("tune_reseller_carried-21", "tune_reseller_carried.toml", 21, 150_000),
    Case("tune_carried_solo-31", "tune_carried_solo.toml", 31, 150_000),
    Case("tune_carried_variants-51", "tune_carried_variants.toml", 51, 150_000),
    Case("holdout_carried-41", "holdout_carried.toml", 41, 150_000),
    Case("holdout_slow_hydra-3", "holdout_slow_hydra.toml", 3, 150_000),
    Case("holdout_small_precise-5", "holdout_small_precise.toml", 5, 100_000),
    Case("family_content_only-61", "family_content_only.toml", 61, 100_000),
    Case("family_single_link_card-62", "family_single_link_card.toml", 62, 100_000),
    Case("family_single_link_email_signup-63", "family_single_link_email_signup.toml", 63,
         100_000),
)

#: Columns compared exactly; `score` within SCORE_TOLERANCE (written rounded to 6 places).
SCORE_TOLERANCE = 1e-6
TABLES = ("verdicts", "campaigns")


def simulate(case: Case, logs: Path) -> Path:
    """The case's log, simulated on first use."""
    from distillguard.simulate import simulate as run_simulation

    if case.path is not None:
        return case.path
    out = logs / case.name
    if (out / ".done").is_file():
        return out
    scenario = REPO / "scenarios" / case.scenario if case.scenario else None
    run_simulation(out, seed=case.seed, scenario=scenario, events=case.events)
    (out / ".done").write_text("ok\n")
    return out


def scan_case(case: Case, log: Path, out: Path) -> float:
    """Scan one log into `out/<case>`; the seconds it took."""
    from distillguard.detect import scan

    start = time.perf_counter()
    scan(log, out / case.name)
    return time.perf_counter() - start


def read(out: Path, case: Case, table: str) -> pa.Table:
    from distillguard.traffic import TrafficLog

    return TrafficLog(out / case.name).read(table)


def without_new(table: pa.Table, reasons: tuple[str, ...], evidence: tuple[str, ...]) -> pa.Table:
    """`table` (verdicts) without the reasons that start with `reasons` and the `evidence` keys
    given: what a change that only adds explanations must leave as it was."""
    if not reasons and not evidence:
        return table
    rs = [json.dumps([r for r in json.loads(x) if not r.startswith(reasons)])
          for x in table.column("reasons").to_pylist()]
    ev = []
    for x in table.column("evidence").to_pylist():
        d = json.loads(x)
        for k in evidence:
            d.pop(k, None)
        ev.append(json.dumps(d))
    table = table.set_column(table.column_names.index("reasons"), "reasons", pa.array(rs))
    return table.set_column(table.column_names.index("evidence"), "evidence", pa.array(ev))


def compare(before: pa.Table, after: pa.Table, key: str,
            ignore: frozenset[str] = frozenset()) -> list[str]:
    """Differences between two tables, by column (but `ignore`), rows matched on `key`."""
    problems: list[str] = []
    if before.column_names != after.column_names:
        problems.append(f"columns differ: {before.column_names} vs {after.column_names}")
    b = {r[key]: r for r in before.to_pylist()}
    a = {r[key]: r for r in after.to_pylist()}
    if set(a) != set(b):
        problems.append(f"rows differ: only before {sorted(set(b) - set(a))[:5]}, "
                        f"only after {sorted(set(a) - set(b))[:5]}")
    for col in before.column_names:
        if col not in after.column_names or col in ignore:
            continue
        bad = []
        for k in sorted(set(a) & set(b)):
            x, y = b[k][col], a[k][col]
            same = (abs(x - y) <= SCORE_TOLERANCE if isinstance(x, float)
                    and isinstance(y, float) else x == y)
            if not same:
                bad.append(k)
        if bad:
            k = bad[0]
            problems.append(f"{col}: {len(bad)} rows differ, e.g. {k}: "
                            f"{str(b[k][col])[:300]!r} -> {str(a[k][col])[:300]!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logs", type=Path, required=True, help="where simulated logs are cached")
    p.add_argument("--out", type=Path, required=True, help="where this run's scans go")
    p.add_argument("--against", type=Path, help="an earlier --out to compare with")
    p.add_argument("--only", nargs="*", help="case names to run (default: all)")
    p.add_argument("--log", nargs="*", type=Path, default=[],
                   help="existing logs to scan instead of the simulated cases (each named by "
                        "its directory; with --only, beside the cases named)")
    p.add_argument("--ignore", nargs="*", default=[],
                   help="verdict columns not compared (e.g. reasons evidence, when only the "
                        "wording of the reasons changed)")
    p.add_argument("--new-reasons", nargs="*", default=[],
                   help="reasons starting with these are new: dropped from this run's before "
                        "comparing (e.g. 'evidence weighed:')")
    p.add_argument("--new-evidence", nargs="*", default=[],
                   help="keys of the evidence JSON that are new: dropped likewise")
    args = p.parse_args(argv)
    cases = [c for c in CASES if (not args.only and not args.log)
             or (args.only and c.name in args.only)]
    cases += [Case(d.name, None, 0, 0, path=d) for d in args.log]
    failed = False
    for case in cases:
        log = simulate(case, args.logs)
        seconds = scan_case(case, log, args.out)
        line = f"{case.name}: scanned in {seconds:.0f} s"
        if args.against is not None:
            problems = []
            for table, key in (("verdicts", "account_id"), ("campaigns", "campaign_id")):
                after = read(args.out, case, table)
                if table == "verdicts":
                    after = without_new(after, tuple(args.new_reasons), tuple(args.new_evidence))
                problems += [f"{table}.{p}" for p in
                             compare(read(args.against, case, table), after,
                                     key, frozenset(args.ignore) if table == "verdicts"
                                     else frozenset())]
            line += ", identical" if not problems else ", DIFFERENT:\n  " + "\n  ".join(problems)
            failed |= bool(problems)
        print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
