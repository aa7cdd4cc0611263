"""The fleet's detector following the capture: sustained events/s, lag, checkpoint cost.

    python benchmarks/bench_follower.py                          # 50k events, SQLite
    python benchmarks/bench_follower.py --events 300000 --db postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/bench_follower.py --log /tmp/dg-bench/log-300000 --rate 3000 --seconds 30

Simulates the default scenario once (kept in --workdir), writes its events into the capture
tables of --db (a fresh table prefix, dropped afterwards) and measures, in this process:

1. baseline: the same `OnlineDetector` fed the log's events straight from Parquet, in
   capture-sized batches, with a verdicts call per step (no database);
2. catch-up: `DetectorService.step()` folding the whole capture from the database, steps
   as large as it reads them: the most events/s one detector sustains here, and its ratio to
   the baseline (what following the database costs);
3. live: events inserted at --rate events/s for --seconds (the log's events again, under new
   ids and times, as replicas would write them) while the service steps every --interval
   seconds: its lag behind the capture (newest event inserted vs newest folded in) at each
   step, median and maximum;
4. the checkpoint: its size and the time to save and restore it.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from distillguard.detect import OnlineDetector
from distillguard.gateway import DetectorService, Store, VerdictTables
from distillguard.simulate import simulate
from distillguard.traffic import TrafficLog


def store_rows(log_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    log = TrafficLog(log_dir)
    rows = []
    for e in log.read("events").sort_by("ts").to_pylist():
        ts = e.pop("ts")
        e.pop("end_user", None)
        e.pop("batch_id", None)
        rows.append({**e, "ts_us": int(ts.timestamp() * 1_000_000)})
    return rows, log.read("accounts").to_pylist()


def baseline(log_dir: Path) -> float:
    log = TrafficLog(log_dir)
    events = log.read("events").sort_by("ts")
    det = OnlineDetector(accounts=log.read("accounts"))
    start = time.perf_counter()
    for i in range(0, events.num_rows, 50_000):  # the service reads 50k per query
        det.update(events.slice(i, 50_000))
        det.verdicts()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--log", type=Path, help="an existing simulated log (else one is simulated in --workdir)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dg-bench"))
    ap.add_argument("--db", default=None, help="capture database (default: SQLite in --workdir)")
    ap.add_argument("--rate", type=float, default=2000.0, help="events/s inserted during the live phase")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the live phase")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between the service's steps")
    a = ap.parse_args()
    log_dir = a.log or a.workdir / f"log-{a.events}"
    if not (log_dir / "labels.parquet").exists():
        simulate(log_dir, seed=0, events=a.events)
    rows, accounts = store_rows(log_dir)
    db = a.db or f"sqlite:///{a.workdir / 'follower.db'}"
    store = Store(db, f"b{uuid.uuid4().hex[:8]}_")
    try:
        for acc in accounts:
            created = acc.pop("created_at")
            store.upsert_account(acc.pop("account_id"), created_us=int(created.timestamp() * 1e6), **acc)
        for i in range(0, len(rows), 20_000):
            store.insert_events(rows[i : i + 20_000])
        base = baseline(log_dir)
        end_us = rows[-1]["ts_us"] + 1
        svc = DetectorService(store, clock=lambda: end_us)
        svc.restore()
        svc.step()  # the first step notes the capture's top
        start = time.perf_counter()
        svc.step()
        catch = time.perf_counter() - start
        assert svc.events_seen == len(rows), (svc.events_seen, len(rows))
        print(f"events: {len(rows):,} on {store.engine.dialect.name}")
        print(f"baseline (OnlineDetector from Parquet): {len(rows) / base:,.0f} events/s ({base:.1f} s)")
        print(f"follower catch-up (from the database):  {len(rows) / catch:,.0f} events/s ({catch:.1f} s), "
              f"{base / catch:.2f}x the baseline's speed")
        t = time.perf_counter()
        data = pickle.dumps(svc._state(), protocol=pickle.HIGHEST_PROTOCOL)
        svc.checkpoint()
        saved = time.perf_counter() - t
        t = time.perf_counter()
        svc.restore()
        restored = time.perf_counter() - t
        print(f"checkpoint: {len(data) / 1e6:.1f} MB ({len(data) / max(1, len(accounts)):,.0f} bytes per account), "
              f"save {saved:.2f} s, restore {restored:.2f} s")
        live(store, svc, rows, a.rate, a.seconds, a.interval)
    finally:
        tables = VerdictTables(store)
        tables.verdicts.drop(store.engine)
        tables.state.drop(store.engine)
        store.drop_all()


def live(store: Store, svc: DetectorService, rows: list[dict[str, Any]], rate: float, seconds: float, interval: float) -> None:
    """Insert at `rate` events/s (batches every 0.1 s) while the service steps; report its lag."""
    svc.clock = lambda: time.time_ns() // 1000
    stop = threading.Event()
    inserted: list[tuple[float, int]] = []  # (wall time, events inserted so far)

    def writer() -> None:
        n, start = 0, time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate)
            if due > n:
                now = time.time_ns() // 1000
                batch = [{**rows[(n + i) % len(rows)], "event_id": f"live-{n + i}", "ts_us": now} for i in range(due - n)]
                store.insert_events(batch)
                n = due
                inserted.append((time.monotonic(), n))
            time.sleep(0.1)

    base_seen = svc.events_seen
    w = threading.Thread(target=writer, daemon=True)
    w.start()
    lags, step_s = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        svc.step()
        step_s.append(time.perf_counter() - t)
        folded = svc.events_seen - base_seen
        now = time.monotonic()
        # lag: how long ago the capture held as many events as the detector has folded in
        when = next((ts for ts, n in inserted if n >= folded), now)
        lags.append(now - when)
        time.sleep(max(0.0, interval - (time.perf_counter() - t)))
    stop.set()
    w.join()
    total = inserted[-1][1] if inserted else 0
    print(f"live: {total:,} events inserted at {rate:,.0f}/s for {seconds:.0f} s, steps every {interval:.1f} s: "
          f"folded {svc.events_seen - base_seen:,}; lag median {statistics.median(lags):.1f} s, max {max(lags):.1f} s; "
          f"step median {statistics.median(step_s):.2f} s, max {max(step_s):.2f} s")


if __name__ == "__main__":
    main()
