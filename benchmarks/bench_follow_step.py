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


def batch(n: int, t0_us: int, accounts: int) -> list[tuple[Any, ...]]:
    """`n` captured events, 200 us apart from `t0_us`, spread over `accounts` accounts."""
    rows = []
    for i in range(n):
        e = {"event_id": uuid.uuid4().hex, "ts_us": t0_us + i * 200, "account_id": f"acct-{i % accounts}",
             "key_id": f"key-{i % accounts}", "ip": "127.0.0.1", "user_agent": "wrk", "endpoint": "chat.completions",
             "model": "gpt-bench", "system": None, "prompt": "Say hello to the benchmark.", "turns": 1, "tools": 0,
             "response": RESPONSE, "prompt_tokens": 7, "completion_tokens": 40, "max_tokens": None,
             "temperature": None, "status": 200, "latency_ms": 1.0, "end_user": None, "batch_id": None}
        rows.append(tuple(e.get(c) for c in EVENT_FIELDS))
    return rows


def actions(svc: Any) -> dict[str, str]:
    v = svc.detector.verdicts()
    return dict(zip(v.column("account_id").to_pylist(), v.column("action").to_pylist(), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", type=Path, required=True, help="another checkout")
    ap.add_argument("--batch", type=int, default=9000, help="events captured per step")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--accounts", type=int, default=20)
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
