"""The fleet's detector following the capture: sustained events/s, lag, checkpoint cost.

    python benchmarks/bench_follower.py                          # 50k events, SQLite
    python benchmarks/bench_follower.py --events 200000 --db postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/bench_follower.py --log /tmp/dg-bench/log-200000 --rate 3000 --seconds 30

Simulates the default scenario once (kept in --workdir), writes its events into the capture
tables of --db (a fresh table prefix, dropped afterwards) and measures, in this process:

1. baseline: the same `OnlineDetector` fed the log's events straight from Parquet, in
   capture-sized batches, with a verdicts call per step (no database);
2. catch-up: `DetectorService.step()` folding the whole capture from the database, steps
   as large as it reads them: the most events/s one detector sustains here, and its ratio to
   the baseline (what following the database costs);
3. the checkpoint of that state, the current way (`gateway._checkpoint`: the arrays out of
   band, compressed in a thread) against the earlier one (the whole state pickled and written
   as it is), interleaved --checkpoints times: the detector's pause (the pickle, or the copy
   of the arrays), the whole save, the restore, the bytes written, and the ratios;
4. live: events inserted at --rate events/s for --seconds by another process (the log's
   events again, under new ids and times, as replicas would write them; the default rate is about what one gateway
   serves at 16 clients in `bench_gateway.py` on this machine) while the service runs as
   deployed (`run`: steps every --interval seconds, checkpoints every --checkpoint-interval
   in the background): the events/s it folds, and its lag behind the capture (how long ago
   the capture held as many events as it has folded), sampled every 0.1 s;
5. resume (own table prefix): the log's events inserted in --parts parts, three services
   stepping after each on the capture's clock: one uninterrupted; one stopped cleanly half-way
   (its stop checkpoints) and restarted from that checkpoint; one killed half-way (nothing
   saved at the kill) and restarted from the checkpoint it took a quarter of the way in, so
   it re-reads the events after it. The stopped one must end with the uninterrupted one's
   verdicts (asserted); the killed one's differences are reported.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _docs import markdown_table, write_section

from distillguard.detect import OnlineDetector
from distillguard.detect._checkpoint import decode, encode, snapshot
from distillguard.gateway import DetectorService, Store, VerdictTables
from distillguard.simulate import simulate
from distillguard.traffic import TrafficLog

#: events/s one `serve` answers at 16 clients on this machine (bench_gateway.py, 2 cores)
GATEWAY_RATE = 3000.0


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


def checkpoint_costs(svc: DetectorService, rounds: int) -> dict[str, dict[str, float]]:
    """The earlier whole pickle against the current checkpoint, interleaved; medians."""
    tables, state = svc.tables, svc._state()
    runs: dict[str, list[dict[str, float]]] = {"pickle": [], "arrays": []}
    for _ in range(rounds):
        t0 = time.perf_counter()
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        t1 = time.perf_counter()
        tables.save_state("bench-pickle", svc.cursor, data)
        t2 = time.perf_counter()
        pickle.loads(tables.load_state("bench-pickle")[1])  # type: ignore[index]
        t3 = time.perf_counter()
        runs["pickle"].append({"pause": t1 - t0, "save": t2 - t0, "restore": t3 - t2, "bytes": len(data)})
        t0 = time.perf_counter()
        snap = snapshot(state)
        t1 = time.perf_counter()
        data = encode(snap)
        tables.save_state("bench-arrays", svc.cursor, data)
        t2 = time.perf_counter()
        decode(tables.load_state("bench-arrays")[1])  # type: ignore[index]
        t3 = time.perf_counter()
        runs["arrays"].append({"pause": t1 - t0, "save": t2 - t0, "restore": t3 - t2, "bytes": len(data)})
    return {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in runs.items()}


def writer(db: str, prefix: str, log_dir: Path, rate: float, count: Any, done: Any) -> None:
    """Insert the log's events again at `rate` events/s (batches every 0.1 s), as replicas
    would: its own process, like a replica; `count` says how many so far."""
    store = Store(db, prefix)
    rows, _ = store_rows(log_dir)
    n, start = 0, time.monotonic()
    while not done.is_set():
        due = int((time.monotonic() - start) * rate)
        if due > n:
            now = time.time_ns() // 1000
            store.insert_events([{**rows[(n + i) % len(rows)], "event_id": f"live-{n + i}", "ts_us": now} for i in range(due - n)])
            n = due
            count.value = n
        time.sleep(0.1)


def live(store: Store, svc: DetectorService, log_dir: Path, rate: float, seconds: float) -> dict[str, float]:
    """Insert at `rate` events/s from another process while the service runs; its lag."""
    import multiprocessing as mp

    svc.clock = lambda: time.time_ns() // 1000
    stop = threading.Event()
    ctx = mp.get_context("spawn")
    count, done = ctx.Value("q", -1), ctx.Event()  # -1: the writer has not inserted yet
    base_seen = svc.events_seen
    runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    runner.start()
    proc = ctx.Process(target=writer, args=(store.url, store.prefix, log_dir, rate, count, done), daemon=True)
    proc.start()
    while not svc.leading or count.value < 0:
        time.sleep(0.05)
    start, checkpoints = time.monotonic(), svc.checkpoints_written
    inserted: list[tuple[float, int]] = [(start, 0)]  # (wall time, events inserted so far)
    lags = []
    while time.monotonic() - start < seconds:
        time.sleep(0.1)
        now, n = time.monotonic(), count.value
        if n > inserted[-1][1]:
            inserted.append((now, n))
        folded = svc.events_seen - base_seen
        when = next((ts for ts, k in inserted if k >= folded), now)
        lags.append(now - when)
    elapsed = time.monotonic() - start
    total, folded = count.value, svc.events_seen - base_seen
    checkpoints = svc.checkpoints_written - checkpoints
    done.set()
    proc.join(30)
    stop.set()
    runner.join()
    return {"inserted": total, "folded": folded, "rate": total / elapsed, "folded_rate": folded / elapsed,
            "lag_median": statistics.median(lags), "lag_p99": sorted(lags)[int(0.99 * (len(lags) - 1))], "lag_max": max(lags),
            "checkpoints": checkpoints}


class Quiet(DetectorService):
    """A service that keeps its verdicts to itself: several follow one capture in `resume`."""

    def publish(self, changed: list[dict[str, Any]], end_users: list[dict[str, Any]] | None = None,
                keys: Any = None) -> None:
        self.version += 1


def verdict_rows(svc: DetectorService) -> dict[str, tuple[Any, ...]]:
    """Account id -> (action, score, campaign)."""
    cols = ["account_id", "action", "score", "campaign_id"]
    return {r["account_id"]: tuple(r[c] for c in cols[1:]) for r in svc.detector.verdicts().select(cols).to_pylist()}


def resume(db: str, log_dir: Path, parts: int) -> dict[str, Any]:
    """Stop or kill a service half-way through the log and restart it from its checkpoint."""
    rows, accounts = store_rows(log_dir)
    log = TrafficLog(log_dir)
    models = log.read("models") if log.has("models") else None
    store = Store(db, f"b{uuid.uuid4().hex[:8]}_")
    clock = [rows[0]["ts_us"]]

    def started(name: str) -> tuple[Quiet, float]:
        svc = Quiet(store, name=name, checkpoint_interval=3600, clock=lambda: clock[0], models=models)
        t = time.perf_counter()
        svc.restore()
        return svc, time.perf_counter() - t

    try:
        for acc in accounts:
            created = acc.pop("created_at")
            store.upsert_account(acc.pop("account_id"), created_us=int(created.timestamp() * 1_000_000), **acc)
        services = {name: started(name)[0] for name in ("whole", "stopped", "killed")}
        for svc in services.values():
            svc.detector.verdicts()  # each decides once before the traffic, like a service started early
        size = math.ceil(len(rows) / parts)
        out: dict[str, Any] = {"events": len(rows), "parts": parts}
        for i in range(parts):
            chunk = rows[i * size : (i + 1) * size]
            store.insert_events(chunk)
            clock[0] = chunk[-1]["ts_us"]
            for svc in services.values():
                svc.step()
                svc.step()  # on PostgreSQL a step reads up to the capture's top seen one step earlier
            if i == parts // 4 - 1:
                services["killed"].checkpoint()
            if i == parts // 2 - 1:
                t = time.perf_counter()
                services["stopped"].checkpoint()  # what a clean stop does
                out["stop_s"] = time.perf_counter() - t
                services["stopped"], out["restore_s"] = started("stopped")
                killed_at = services["killed"].events_seen
                services["killed"], _ = started("killed")
                out["reread"] = killed_at - services["killed"].events_seen
                t = time.perf_counter()
                services["killed"].step()
                services["killed"].step()
                out["catch_up_s"] = time.perf_counter() - t
        clock[0] = rows[-1]["ts_us"] + 1
        for svc in services.values():
            svc.step()
            assert svc.events_seen == len(rows), (svc.name, svc.events_seen, len(rows))
        got = {name: verdict_rows(svc) for name, svc in services.items()}
        whole = got["whole"]
        for name in ("stopped", "killed"):
            out[name] = sum(1 for k in whole.keys() | got[name].keys() if whole.get(k) != got[name].get(k))
        out["accounts"] = len(whole)
        out["flagged"] = sum(1 for v in whole.values() if v[0] in ("throttle", "block"))
        assert out["stopped"] == 0, f"{out['stopped']} accounts differ after a clean stop and restart"
        return out
    finally:
        VerdictTables(store).drop_all()
        store.drop_all()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--log", type=Path, help="an existing simulated log (else one is simulated in --workdir)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dg-bench"))
    ap.add_argument("--db", default=None, help="capture database (default: SQLite in --workdir)")
    ap.add_argument("--rate", type=float, default=GATEWAY_RATE, help="events/s inserted during the live phase")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the live phase")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between the service's steps")
    ap.add_argument("--checkpoint-interval", type=float, default=10.0, help="seconds between checkpoints in the live phase")
    ap.add_argument("--checkpoints", type=int, default=3, help="rounds of the checkpoint comparison")
    ap.add_argument("--parts", type=int, default=20, help="parts the log is inserted in for the resume phase")
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
            store.upsert_account(acc.pop("account_id"), created_us=int(created.timestamp() * 1_000_000), **acc)
        for i in range(0, len(rows), 20_000):
            store.insert_events(rows[i : i + 20_000])
        base = baseline(log_dir)
        end_us = rows[-1]["ts_us"] + 1
        svc = DetectorService(store, clock=lambda: end_us, interval=a.interval, checkpoint_interval=a.checkpoint_interval)
        svc.restore()
        start = time.perf_counter()
        svc.step()
        svc.step()  # on PostgreSQL a step reads up to the capture's top seen one step earlier
        catch = time.perf_counter() - start
        assert svc.events_seen == len(rows), (svc.events_seen, len(rows))
        print(f"events: {len(rows):,} ({len(accounts):,} accounts) on {store.engine.dialect.name}; load average {os.getloadavg()[0]:.1f}")
        print(f"baseline (OnlineDetector from Parquet): {len(rows) / base:,.0f} events/s ({base:.1f} s)")
        print(f"follower catch-up (from the database):  {len(rows) / catch:,.0f} events/s ({catch:.1f} s), "
              f"{base / catch:.2f}x the baseline's speed")
        ck = checkpoint_costs(svc, a.checkpoints)
        old, new = ck["pickle"], ck["arrays"]
        for name, c in ck.items():
            print(f"checkpoint, {name:6s}: {c['bytes'] / 1e6:6.1f} MB written; detector paused {c['pause']:.3f} s; "
                  f"save {c['save']:.2f} s; restore {c['restore']:.2f} s")
        print(f"ratios (earlier / current): pause {old['pause'] / new['pause']:.1f}x, save {old['save'] / new['save']:.1f}x, "
              f"restore {old['restore'] / new['restore']:.1f}x, bytes {old['bytes'] / new['bytes']:.1f}x")
        svc.checkpoint()
        lv = live(store, svc, log_dir, a.rate, a.seconds)
        print(f"live: {lv['inserted']:,} events inserted at {lv['rate']:,.0f}/s for {a.seconds:.0f} s, steps every {a.interval:g} s, "
              f"checkpoints every {a.checkpoint_interval:g} s ({lv['checkpoints']} written): folded {lv['folded']:,} "
              f"({lv['folded_rate']:,.0f} events/s); lag median {lv['lag_median']:.1f} s, p99 {lv['lag_p99']:.1f} s, max {lv['lag_max']:.1f} s")
        rs = resume(db, log_dir, a.parts)
        print(f"resume ({rs['events']:,} events in {rs['parts']} parts, {rs['accounts']:,} accounts, {rs['flagged']:,} flagged): "
              f"stopped half-way (checkpoint {rs['stop_s']:.2f} s, restore {rs['restore_s']:.2f} s) and restarted: "
              f"{rs['stopped']} accounts differ from the uninterrupted run; killed half-way and restarted from the "
              f"checkpoint a quarter in ({rs['reread']:,} events re-read in {rs['catch_up_s']:.1f} s): {rs['killed']} differ")
        write_section(__file__, "The fleet's detector: following the capture, checkpoints", (
            f"{len(rows):,} events of the default scenario ({len(accounts):,} accounts) in the capture tables of "
            f"{store.engine.dialect.name}.\n\n"
            + markdown_table(["measure", "value"], [
                ["baseline: `OnlineDetector` fed from Parquet", f"{len(rows) / base:,.0f} events/s"],
                ["catch-up: the service folding the capture", f"{len(rows) / catch:,.0f} events/s ({base / catch:.2f}x the baseline)"],
                [f"live: events inserted for {a.seconds:g} s (asked {a.rate:,.0f}/s, reached {lv['rate']:,.0f}/s)", f"folded {lv['folded_rate']:,.0f} events/s "
                 f"({lv['folded']:,} of {lv['inserted']:,}; {lv['checkpoints']} checkpoints meanwhile)"],
                ["live: lag behind the capture", f"median {lv['lag_median']:.1f} s, p99 {lv['lag_p99']:.1f} s, max {lv['lag_max']:.1f} s"],
                ["checkpoint written, earlier (whole pickle) / current (arrays, zstd)", f"{old['bytes'] / 1e6:.1f} MB / {new['bytes'] / 1e6:.1f} MB ({old['bytes'] / new['bytes']:.1f}x)"],
                ["detector paused by a checkpoint, earlier / current", f"{old['pause']:.3f} s / {new['pause']:.3f} s ({old['pause'] / new['pause']:.1f}x)"],
                ["checkpoint save, earlier / current", f"{old['save']:.2f} s / {new['save']:.2f} s ({old['save'] / new['save']:.1f}x)"],
                ["checkpoint restore, earlier / current", f"{old['restore']:.2f} s / {new['restore']:.2f} s ({old['restore'] / new['restore']:.1f}x)"],
                [f"resume: stopped half-way through {rs['parts']} parts, restarted from its checkpoint",
                 f"{rs['stopped']} of {rs['accounts']:,} accounts differ from the uninterrupted run ({rs['flagged']:,} flagged); "
                 f"checkpoint {rs['stop_s']:.2f} s, restore {rs['restore_s']:.2f} s"],
                ["resume: killed half-way, restarted from the checkpoint a quarter in",
                 f"{rs['killed']} of {rs['accounts']:,} accounts differ; {rs['reread']:,} events re-read in {rs['catch_up_s']:.1f} s"],
            ], align="lr")
            + f"\n\nCheckpoint figures are medians of {a.checkpoints} interleaved rounds on the same state; the save "
            "includes the database write (it compresses and writes in a thread; the detector pauses only for the "
            "copy of its arrays). Live figures are what one detector folded while another process inserted; where "
            "the inserting process falls short of --rate, the inserted rate is what it reached. Resume: a verdict differs when its action, score or "
            "campaign does; the killed service decides the events it re-reads in one step where the others decided "
            "after each part."))
    finally:
        tables = VerdictTables(store)
        tables.verdicts.drop(store.engine)
        tables.state.drop(store.engine)
        store.drop_all()


if __name__ == "__main__":
    main()
