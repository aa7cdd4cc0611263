"""The detector's follow step (`DetectorService.fold`: read the events captured since the last
step, fold them in) and its `changed()` diff, this tree's against another checkout's, on the
same capture in the same process.

    python benchmarks/bench_follow_step.py --against ../main-checkout [--batch 9000] [--steps 8] [--accounts 20]

Both versions follow one SQLite capture, each with its own cursor. Each step inserts `--batch`
events shaped as `bench_gateway.py`'s requests captured through the mock upstream (about two
seconds of one gateway at 16 clients, what a child detector folds per step), then runs both
versions' step in turn (`_against.in_turn`: the order alternates) and checks that their
verdicts agree. Prints the CPU microseconds per event of each version and the median of the
per-step ratios (CPU time, steadier than wall time on a shared machine).

    python benchmarks/bench_follow_step.py --changed [--followed 15000] [--active 20] [--batch 9000] [--steps 8]

`--changed` measures the step's diff alone, this tree's two ways in one process: a detector
following `--followed` accounts (each sent a few requests first), then steps of `--batch`
events from `--active` of them (others each step, so that their scores move). At each step, after the assessment both share, the whole
verdicts table compared with the published (`changed_in_table`: every account's reasons built,
the path before) and `changed` (cheap columns compared as arrays, reasons built for the
accounts that changed) run in turn; prints the CPU milliseconds per step of each, the
assessment's, and the median per-step ratio.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _against import StepClock, load_checkout  # noqa: E402
from _docs import markdown_table, write_section  # noqa: E402

from distillguard.gateway import DetectorService, Store  # noqa: E402
from distillguard.gateway._store import EVENT_FIELDS  # noqa: E402

#: what the mock upstream answers `bench_gateway.py`'s request with, about
RESPONSE = "This is a mock answer to your request about the benchmark. " * 3


def batch(n: int, t0_us: int, accounts: int, first: int = 0) -> list[tuple[Any, ...]]:
    """`n` captured events, 200 us apart from `t0_us`, spread over `accounts` accounts (from
    account number `first` on)."""
    rows = []
    for i in range(n):
        e = {"event_id": uuid.uuid4().hex, "ts_us": t0_us + i * 200, "account_id": f"acct-{first + i % accounts}",
             "key_id": f"key-{first + i % accounts}", "ip": "127.0.0.1", "user_agent": "wrk", "endpoint": "chat.completions",
             "model": "gpt-bench", "system": None, "prompt": "Say hello to the benchmark.", "turns": 1, "tools": 0,
             "response": RESPONSE, "prompt_tokens": 7, "completion_tokens": 40, "max_tokens": None,
             "temperature": None, "status": 200, "latency_ms": 1.0, "end_user": None, "batch_id": None}
        rows.append(tuple(e.get(c) for c in EVENT_FIELDS))
    return rows


def actions(svc: Any) -> dict[str, str]:
    v = svc.detector.verdicts()
    return dict(zip(v.column("account_id").to_pylist(), v.column("action").to_pylist(), strict=True))


#: requests each followed account sends before the timed steps
FOLLOWED_REQUESTS = 6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", type=Path, help="another checkout (required without --changed)")
    ap.add_argument("--batch", type=int, default=9000, help="events captured per step")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--changed", action="store_true", help="time the step's diff, whole table against changed accounts")
    ap.add_argument("--followed", type=int, default=15_000, help="with --changed: accounts the detector follows")
    ap.add_argument("--active", type=int, default=20, help="with --changed: accounts sending each step's events")
    args = ap.parse_args()
    if args.changed:
        changed_only(args)
        return
    if args.against is None:
        ap.error("--against is required without --changed")
    tmp = Path(tempfile.mkdtemp(prefix="dg-follow-"))
    load_checkout(args.against, tmp / "other", "dg_other", "gateway/_detector.py")
    other_gw = importlib.import_module("dg_other.gateway")
    store = Store(f"sqlite:///{tmp / 'capture.db'}")
    t0 = time.time_ns() // 1000 - 10**9
    # the same clock for both: rates measured at the same "now"
    clock_now = [t0]
    this = DetectorService(store, clock=lambda: clock_now[0])
    other = other_gw.DetectorService(other_gw.Store(store.url), clock=lambda: clock_now[0])
    for svc in (other, this):
        svc.warm()
        svc.restore()
    clock = StepClock()
    for step in range(args.steps):
        start = t0 + step * args.batch * 200
        store.insert_events(batch(args.batch, start, args.accounts))
        clock_now[0] = start + args.batch * 200
        clock.both("fold", other.fold, this.fold)
        clock.both("changed", other.changed, this.changed)
        assert this.events_seen == other.events_seen == (step + 1) * args.batch
        got, want = actions(this), actions(other)
        if got != want:
            raise SystemExit(f"step {step}: the versions' verdicts differ: {got} != {want}")
    per_event = {(s, v): statistics.median(clock.per_call[(s, v)][1:]) / args.batch * 1e6
                 for s in clock.steps() for v in ("other", "this")}
    rows = []
    for s in clock.steps():
        ratio = clock.median_ratio(s)
        print(f"{s:8s} other {per_event[(s, 'other')]:6.2f} us/event  this {per_event[(s, 'this')]:6.2f} us/event  "
              f"this/other {ratio:.2f}x (median of {args.steps} steps, CPU)")
        rows.append([s, f"{per_event[(s, 'other')]:.2f} µs", f"{per_event[(s, 'this')]:.2f} µs", f"{ratio:.2f}x"])
    write_section(__file__, "The detector's follow step: CPU per event",
                  f"{args.steps} steps of {args.batch:,} captured events each ({args.accounts} accounts, shaped as "
                  f"`bench_gateway.py`'s requests), SQLite, this tree against `{args.against}` in the same process, "
                  "the order alternating; medians per event over the steps after the first, and the median "
                  "per-step ratio of CPU time. Both versions' verdicts agree at every step.\n\n"
                  + markdown_table(["step", "other", "this", "this/other"], rows))


def changed_only(args: argparse.Namespace) -> None:
    """`--changed`: the step's diff, the whole table's against the changed accounts'."""
    tmp = Path(tempfile.mkdtemp(prefix="dg-changed-"))
    store = Store(f"sqlite:///{tmp / 'capture.db'}")
    t0 = time.time_ns() // 1000 - 10**9
    clock_now = [t0]
    svc = DetectorService(store, clock=lambda: clock_now[0])
    svc.warm()
    svc.restore()
    start = t0
    for _ in range(FOLLOWED_REQUESTS):
        store.insert_events(batch(args.followed, start, args.followed))
        start += args.followed * 200
    clock_now[0] = start
    svc.fold()
    svc.mark_published(svc.changed())
    main = getattr(svc.detector, "main", svc.detector)
    explained = int(main.verdict_columns().explained().sum())
    clock = StepClock()
    changed = []
    for step in range(args.steps):
        # other accounts each step: their scores move from the few requests they sent
        store.insert_events(batch(args.batch, start, args.active, (step * args.active) % args.followed))
        start += args.batch * 200
        clock_now[0] = start
        svc.fold()
        clock.time("assess", "this", main.refined)
        whole, rows = clock.both("changed", svc.changed_in_table, svc.changed)
        # the whole table republishes, besides, accounts whose reasons alone changed
        assert {r["account_id"] for r in rows} <= {r["account_id"] for r in whole}
        svc.mark_published(rows)
        changed.append((len(whole), len(rows)))
    ms = {k: statistics.median(v[1:]) * 1e3 for k, v in clock.per_call.items()}
    ratio = clock.median_ratio("changed")
    whole_n = statistics.median(w for w, _ in changed[1:])
    rows_n = statistics.median(r for _, r in changed[1:])
    print(f"{args.followed} accounts followed ({explained} with reasons), {args.active} active per step")
    print(f"assessment {ms[('assess', 'this')]:.1f} ms/step (both)")
    print(f"diff: whole table {ms[('changed', 'other')]:.1f} ms/step ({whole_n:.0f} rows)  "
          f"changed accounts {ms[('changed', 'this')]:.1f} ms/step ({rows_n:.0f} rows)  "
          f"changed/whole {ratio:.3f}x (median of {args.steps} steps, CPU)")
    rows_md = [["assessment (both)", f"{ms[('assess', 'this')]:.1f} ms", "", ""],
               ["diff: whole table", f"{ms[('changed', 'other')]:.1f} ms", f"{whole_n:.0f}", ""],
               ["diff: changed accounts", f"{ms[('changed', 'this')]:.1f} ms", f"{rows_n:.0f}", f"{ratio:.3f}x"]]
    write_section(__file__, "The detector's step: the verdicts' diff", (
        f"A detector following {args.followed:,} accounts ({explained:,} of them with reasons), SQLite, then "
        f"{args.steps} steps of {args.batch:,} events from {args.active} of them. At each step, after the "
        "assessment both share, the whole verdicts table compared with the published (every account's reasons "
        "built) and `DetectorService.changed` (cheap columns compared as arrays, reasons built for the accounts "
        "that changed) in turn, in one process; CPU per step, medians over the steps after the first, and the "
        "median per-step ratio.\n\n"
        + markdown_table(["step", "CPU per step", "rows", "changed/whole"], rows_md)), part="changed")


if __name__ == "__main__":
    main()
