"""Scan time of a log whose events name end users: end users judged in the account replay
against a second replay of their own.

    python benchmarks/bench_end_users.py LOG_DIR

Times, in this process and on the same log:

- `two replays` (before): the account replay alone, then the end users' own replay, which
  reads the log again, reduces its texts again and replays every event re-keyed by end user;
- `one replay` (now): `scan`, whose account replay feeds the sub-principal detector the same
  chunks of signals (`SubPrincipals`).

Checks that both give the same `end_user_verdicts`, and prints both times and their ratio.
Make a log with, e.g., `distillguard simulate --scenario scenarios/tune_reseller_end_users.toml
--seed 21 --events 40000 --out LOG_DIR`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
from _docs import markdown_table, write_section

from distillguard.detect import _endusers as endusers
from distillguard.detect import scan
from distillguard.detect._communities import refine_campaigns
from distillguard.detect._config import load_config
from distillguard.detect._output import verdict_table
from distillguard.detect._replay import replay
from distillguard.detect._signatures import event_signals
from distillguard.detect._stream import SIGNAL_COLUMNS
from distillguard.traffic import TrafficLog


def second_replay(log_dir: Path) -> pa.Table:
    """The end users' verdicts from a replay of their own (the log read and reduced again)."""
    cfg = load_config(None)
    book = endusers.EndUserBook(cfg.end_users.max_per_account, cfg.end_users.max_total)
    parts = []
    for batch in TrafficLog(log_dir).batches(
        "events", columns=[*SIGNAL_COLUMNS, "end_user"], batch_size=200_000
    ):
        frame = pl.from_arrow(pa.Table.from_batches([batch]))
        assert isinstance(frame, pl.DataFrame)
        users = frame["end_user"].replace("", None)
        parts.append(
            endusers.sub_principal_signals(event_signals(frame.drop("end_user")), users, book)
        )
    det, first_flag = replay(log_dir, cfg, pl.concat(parts).sort("ts_us", "event_id"))
    a = refine_campaigns(det.assess(), cfg.links.min_accounts)
    return endusers.end_user_table(verdict_table(det.state, a, cfg, first_flag))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log_dir", type=Path)
    args = ap.parse_args()
    events = sum(b.num_rows for b in TrafficLog(args.log_dir).batches("events", columns=["ts"]))
    with tempfile.TemporaryDirectory() as tmp:
        scan(args.log_dir, Path(tmp) / "warm")  # models and first calls loaded before timing
        t0 = time.perf_counter()
        folded = scan(args.log_dir, Path(tmp) / "one").tables["end_user_verdicts"]
        one = time.perf_counter() - t0
        of_log = endusers.SubPrincipals.of_log
        endusers.SubPrincipals.of_log = classmethod(lambda cls, *a: None)  # type: ignore[method-assign,assignment]
        try:
            t0 = time.perf_counter()
            scan(args.log_dir, Path(tmp) / "two")
            separate = second_replay(args.log_dir)
            two = time.perf_counter() - t0
        finally:
            endusers.SubPrincipals.of_log = of_log  # type: ignore[method-assign]
    assert folded.equals(separate), "the two ways judge end users differently"
    table = markdown_table(
        ["scan", "seconds", "two replays / this"],
        [
            ["two replays (before)", f"{two:.1f}", "1.00"],
            ["one replay (now)", f"{one:.1f}", f"{two / one:.2f}"],
        ],
    )
    print(table)
    body = (
        f"{events:,} events, {folded.num_rows:,} end users judged apart (identical "
        f"`end_user_verdicts` both ways); one timed scan each.\n\n{table}\n"
    )
    write_section(__file__, "End users judged in the account replay", body)


if __name__ == "__main__":
    main()
