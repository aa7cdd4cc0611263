"""A multi-million-event log replayed into the shared capture while the fleet's detector follows it.

    nice -n 10 python benchmarks/bench_fleet_replay.py                     # 1M events, PostgreSQL
    nice -n 10 python benchmarks/bench_fleet_replay.py --events 2000000 --speed 10

Simulates the default scenario once (kept in --workdir), then:

1. a writer process (as the replicas would) inserts the log's events into the capture tables
   of --db (a fresh table prefix, dropped afterwards) in time order, at --speed times the
   pace they were recorded at, or as fast as it can (--speed 0, the default; a week of traffic
   at 10x would take most of a day). Each batch is one transaction, as a replica's capture
   writes them;
2. in this process, `DetectorService.run` follows the capture as deployed (steps every
   --interval seconds, checkpoints every --checkpoint-interval in the background). Its clock is
   the replay's: the newest event time the capture holds, so rates are measured in the log's
   time as they would be live;
3. every 0.1 s: the follower's lag behind the capture (how long ago the capture held as many
   events as it has folded) and this process's resident memory;
4. once the follower has folded everything, its final verdicts (decided at the end of the
   log's last replay window, as the scan decides last) against a single-process
   `distillguard scan` of the same log: per account, the action; and the publication delay of
   each account the scan flags: from the moment the capture held the events up to the replay
   window the scan first flags it in, to the moment the follower published a throttle or block
   for it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from _docs import markdown_table, write_section

from distillguard.detect import load_config
from distillguard.gateway import DetectorService, Store, VerdictTables
from distillguard.gateway._export import model_rows
from distillguard.gateway._store import EVENT_FIELDS
from distillguard.simulate import simulate
from distillguard.traffic import TrafficLog

#: events per insert transaction (a replica's capture writes a few hundred to a few thousand)
INSERT_BATCH = 5_000
#: seconds between samples of the lag and the memory
SAMPLE_S = 0.1
#: actions that restrict an account
FLAGGED = ("throttle", "block")


def capture_rows(events: pa.Table) -> list[dict[str, Any]]:
    """Log events as capture rows (`ts_us` instead of `ts`)."""
    ts = pc.cast(events.column("ts"), pa.timestamp("us", "UTC")).cast(pa.int64())
    return events.drop(["ts"]).append_column("ts_us", ts).to_pylist()


def writer(db: str, prefix: str, log_dir: Path, speed: float, progress: Any, clock: Any, ready: Any) -> None:
    """Insert the log's events in time order, batch by batch; after each commit, put
    (wall time, events inserted, newest ts) on `progress` and the newest ts in `clock`."""
    store = Store(db, prefix)
    events = TrafficLog(log_dir).read("events")
    events = events.select([c for c in events.column_names if c == "ts" or c in EVENT_FIELDS])
    # 64-bit offsets: a million events' texts overflow a string column's 2 GB when sorted
    events = events.cast(pa.schema([f.with_type(pa.large_string()) if f.type == pa.string() else f for f in events.schema]))
    events = events.sort_by([("ts", "ascending"), ("event_id", "ascending")])
    first_us = int(pc.cast(events.column("ts"), pa.timestamp("us", "UTC")).cast(pa.int64())[0].as_py())
    ready.set()
    start, n = time.time(), 0
    for i in range(0, events.num_rows, INSERT_BATCH):
        rows = capture_rows(events.slice(i, INSERT_BATCH))
        newest = rows[-1]["ts_us"]
        if speed > 0:  # wait until the replay's clock reaches the batch's newest event
            due = start + (newest - first_us) / 1e6 / speed
            time.sleep(max(0.0, due - time.time()))
        store.insert_events(rows)
        n += len(rows)
        clock.value = newest
        progress.put((time.time(), n, newest))
    progress.put(None)


class Recorder(DetectorService):
    """The service as deployed, noting when it first published each account as flagged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flagged_at: dict[str, float] = {}

    def publish(self, changed: list[dict[str, Any]], end_users: list[dict[str, Any]] | None = None,
                keys: Any = None) -> None:
        super().publish(changed, end_users, keys)
        now = time.time()
        for r in changed:
            if r["action"] in FLAGGED:
                self.flagged_at.setdefault(r["account_id"], now)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024  # type: ignore[union-attr]


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """Median, p99 and max."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))], ordered[-1]


def last_window_end(log_dir: Path) -> int:
    """The end (us) of the log's last replay window: where the scan decides for the last time."""
    step = int(load_config(None).replay.cadence_minutes * 60_000_000)
    ts = pc.cast(TrafficLog(log_dir).read("events", columns=["ts"]).column("ts"), pa.timestamp("us", "UTC")).cast(pa.int64())
    first, last = pc.min(ts).as_py(), pc.max(ts).as_py()
    origin = (first // step) * step
    return origin + ((last - origin) // step + 1) * step


def run_scan(log_dir: Path, out: Path) -> tuple[pa.Table, float]:
    """`distillguard scan` in its own process: its verdicts and wall time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "distillguard", "scan", str(log_dir), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return TrafficLog(out).read("verdicts"), time.perf_counter() - start


def replay(store: Store, log_dir: Path, n_events: int, a: argparse.Namespace) -> dict[str, Any]:
    """Insert from another process while the service follows; what it measured."""
    ctx = mp.get_context("spawn")
    progress, clock, ready = ctx.Queue(), ctx.Value("q", 0), ctx.Event()
    log = TrafficLog(log_dir)
    # --models-from store: the detector reads `<prefix>models` (written below as `serve --models`
    # does); log: the table is handed to it (`distillguard detector --models`)
    models = log.read("models") if a.models_from == "log" and log.has("models") else None
    svc = Recorder(store, interval=a.interval, checkpoint_interval=a.checkpoint_interval,
                   clock=lambda: int(clock.value), models=models)
    stop = threading.Event()
    proc = ctx.Process(target=writer, args=(store.url, store.prefix, log_dir, a.speed, progress, clock, ready), daemon=True)
    proc.start()
    while not ready.wait(1.0):
        if not proc.is_alive():
            raise RuntimeError(f"the writer process ended early (exit code {proc.exitcode})")
    runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    runner.start()
    inserted: list[tuple[float, int, int]] = [(time.time(), 0, 0)]  # (wall, events inserted, newest ts)
    lags, memory, checkpoints = [], [], []
    writing, written = True, 0
    while svc.events_seen < n_events or writing:
        time.sleep(SAMPLE_S)
        if writing and not proc.is_alive() and progress.empty():
            raise RuntimeError(f"the writer process ended early (exit code {proc.exitcode})")
        while writing and not progress.empty():
            item = progress.get()
            if item is None:
                writing = False
            else:
                inserted.append(item)
        now = time.time()
        if svc.checkpoints_written > written and svc.last_checkpoint is not None:
            written = svc.checkpoints_written
            checkpoints.append(svc.last_checkpoint)
        memory.append(rss_mb())
        if len(inserted) > 1:
            folded = svc.events_seen
            lags.append(now - next((w for w, k, _ in inserted if k >= folded), now))
    caught_up = time.time()
    proc.join(60)
    stop.set()
    runner.join()  # a clean stop: the last step, then a checkpoint in this thread
    if svc.last_checkpoint is not None and svc.checkpoints_written > written:
        checkpoints.append(svc.last_checkpoint)
    return {"svc": svc, "inserted": inserted, "lags": lags, "memory": memory, "checkpoints": checkpoints,
            "insert_s": inserted[-1][0] - inserted[0][0], "follow_s": caught_up - inserted[0][0]}


def publication_delays(scan: pa.Table, svc: Recorder, inserted: list[tuple[float, int, int]]) -> list[float]:
    """Seconds from the capture holding an account's first flagged window to its publication."""
    delays = []
    for row in scan.select(["account_id", "first_flagged_ts"]).to_pylist():
        published = svc.flagged_at.get(row["account_id"])
        if row["first_flagged_ts"] is None or published is None:
            continue
        window_end = int(row["first_flagged_ts"].timestamp() * 1_000_000)
        held = next((w for w, _, newest in inserted if newest >= window_end), inserted[-1][0])
        delays.append(published - held)
    return delays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dg-bench"))
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test", help="the capture database")
    ap.add_argument("--speed", type=float, default=0.0, help="times the recorded pace (0: as fast as the writer inserts)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between the service's steps")
    ap.add_argument("--checkpoint-interval", type=float, default=30.0, help="seconds between checkpoints")
    ap.add_argument("--models-from", choices=("store", "log"), default="store",
                    help="where the detector gets the log's model release times: the database's models table "
                         "(as deployed, written here as `serve --models` does) or handed over (`detector --models`)")
    a = ap.parse_args()
    log_dir = a.workdir / f"log-{a.events}"
    if not (log_dir / "labels.parquet").exists():
        simulate(log_dir, seed=0, events=a.events)
    log = TrafficLog(log_dir)
    accounts = log.read("accounts").to_pylist()
    n_events = log.read("events", columns=["event_id"]).num_rows
    store = Store(a.db, f"r{uuid.uuid4().hex[:8]}_")
    try:
        for acc in accounts:
            created = acc.pop("created_at")
            store.upsert_account(acc.pop("account_id"), created_us=int(created.timestamp() * 1_000_000), **acc)
        if a.models_from == "store" and log.has("models"):
            store.set_models(model_rows(log.read("models")), replace=True)
        r = replay(store, log_dir, n_events, a)
        svc: Recorder = r["svc"]
        assert svc.events_seen == n_events, (svc.events_seen, n_events)
        svc.clock = lambda: last_window_end(log_dir)
        svc.step()  # the last decision, where the scan's last one is
        follower = {v["account_id"]: v["action"] for v in svc.detector.verdicts().select(["account_id", "action"]).to_pylist()}
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        scan, scan_s = run_scan(log_dir, a.workdir / f"scan-{a.events}")
        single = {v["account_id"]: v["action"] for v in scan.select(["account_id", "action"]).to_pylist()}
        differ = Counter((single.get(k), follower.get(k)) for k in single.keys() | follower.keys()
                         if single.get(k) != follower.get(k))
        flagged = sum(1 for x in single.values() if x in FLAGGED)
        ever = pc.sum(pc.is_valid(scan.column("first_flagged_ts"))).as_py()
        delays = publication_delays(scan, svc, r["inserted"])
    finally:
        VerdictTables(store).drop_all()
        store.drop_all()
    first = pc.min(log.read("events", columns=["ts"]).column("ts")).as_py()
    span_s = r["inserted"][-1][2] / 1e6 - first.timestamp()
    rate = n_events / r["insert_s"]
    lag = quantiles(r["lags"])
    delay = quantiles(delays) if delays else (float("nan"),) * 3
    ck_bytes = [b for b, _ in r["checkpoints"]]
    ck_s = [s for _, s in r["checkpoints"]]
    diff_text = ", ".join(f"{n} {s} -> {f}" for (s, f), n in differ.most_common()) or "none"
    print(f"events: {n_events:,} ({len(accounts):,} accounts), {span_s / 86400:.1f} days of traffic, on {store.engine.dialect.name}")
    print(f"inserted in {r['insert_s']:.0f} s: {rate:,.0f} events/s, {span_s / r['insert_s']:,.0f}x the recorded pace")
    print(f"follower: folded everything {r['follow_s']:.0f} s after the replay began ({n_events / r['follow_s']:,.0f} events/s); "
          f"lag median {lag[0]:.1f} s, p99 {lag[1]:.1f} s, max {lag[2]:.1f} s")
    print(f"publication delay ({len(delays)} of {ever} accounts the scan flags at some point): median {delay[0]:.1f} s, "
          f"p99 {delay[1]:.1f} s, max {delay[2]:.1f} s")
    print(f"checkpoints: {len(ck_bytes)}, up to {max(ck_bytes, default=0) / 1e6:.1f} MB, "
          f"{max(ck_s, default=0):.2f} s at most (compressed and written in a thread)")
    print(f"memory: follower process peak {peak_mb:,.0f} MB (median sampled {statistics.median(r['memory']):,.0f} MB)")
    print(f"scan ({scan_s:.0f} s): {len(single):,} accounts, {flagged:,} flagged; follower {len(follower):,} accounts; "
          f"actions differing: {sum(differ.values())} ({diff_text})")
    speed = "as fast as the writer inserts" if a.speed <= 0 else f"{a.speed:g}x the recorded pace"
    write_section(__file__, "The fleet's detector following a replayed multi-million-event log", (
        f"{n_events:,} events of the default scenario ({len(accounts):,} accounts, {span_s / 86400:.1f} days of traffic) "
        f"inserted into the capture tables of {store.engine.dialect.name} in time order, {INSERT_BATCH:,} per transaction, "
        f"{speed}, while `DetectorService.run` followed (steps every {a.interval:g} s, checkpoints every "
        f"{a.checkpoint_interval:g} s) on the replay's clock.\n\n"
        + markdown_table(["measure", "value"], [
            ["replay: inserted", f"{rate:,.0f} events/s for {r['insert_s']:.0f} s ({span_s / r['insert_s']:,.0f}x the recorded pace)"],
            ["follower: everything folded", f"{r['follow_s']:.0f} s after the replay began ({n_events / r['follow_s']:,.0f} events/s)"],
            ["follower: lag behind the capture", f"median {lag[0]:.1f} s, p99 {lag[1]:.1f} s, max {lag[2]:.1f} s"],
            [f"verdict publication delay ({len(delays):,} of the {ever:,} accounts the scan flags at some point)",
             f"median {delay[0]:.1f} s, p99 {delay[1]:.1f} s, max {delay[2]:.1f} s"],
            [f"checkpoints written ({len(ck_bytes)})", f"up to {max(ck_bytes, default=0) / 1e6:.1f} MB, "
             f"{max(ck_s, default=0):.2f} s at most"],
            ["follower process memory", f"peak {peak_mb:,.0f} MB"],
            ["single-process `scan` of the same log", f"{scan_s:.0f} s; {len(single):,} accounts, {flagged:,} flagged"],
            ["accounts whose final action differs (scan -> follower)", f"{sum(differ.values())} ({diff_text})"],
        ], align="lr")
        + "\n\nLag: how long ago the capture held as many events as the follower had folded, sampled every "
        f"{SAMPLE_S:g} s. Publication delay: from the commit that put the end of the replay window in which the "
        "scan first flags an account into the capture, to the follower's first publication of a throttle or "
        "block for it (negative: the follower flagged it earlier). Checkpoint time: compression and database "
        "write, in a thread while the detector steps on. The follower's final decision is taken at the end of "
        "the log's last replay window, where the scan decides last. "
        + ("The log's `models` table is written to the database's `<prefix>models` (as `serve --models` does), "
           "where the follower reads it at start, as deployed; the scan reads it from the log."
           if a.models_from == "store" else
           "The follower is given the log's `models` table (`distillguard detector --models`), as the scan reads "
           "it from the log.")))


if __name__ == "__main__":
    main()
