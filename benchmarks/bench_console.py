"""Console speed: start-up pre-aggregation and the time of every page, on a real log.

    python benchmarks/bench_console.py LOG_DIR VERDICTS_DIR [--campaigns 5] [--accounts 20]
        [--screenshot DIR]
    python benchmarks/bench_console.py LOG_DIR --mount [--campaigns 5] [--accounts 20]

`--mount` measures the console as the gateway serves it at /console/: the log's events and
accounts are loaded into a gateway database, the gateway's own online detector reads them
(its verdicts are what the console shows), then the snapshot is built in the background as a
visit triggers it, while a proxy request is timed every 20 ms to show what the rebuild costs
the API; then every page through the gateway app with the admin token, and an incremental
rebuild after 10,000 more events.

Prints the start-up time, then per page kind the median and worst time of a first
(uncached) and a repeat visit, through FastAPI's test client. The baseline, timed in the
same run, is what a page would cost without pre-aggregation: the campaign's traffic series
queried straight from the raw events with DuckDB. `--screenshot DIR` also saves the top
campaign's page as seen by headless Chromium (`DIR/campaign.png`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import duckdb
from _docs import markdown_table, write_section
from fastapi.testclient import TestClient

from distillguard._logsql import register_view
from distillguard.cases import CaseStore
from distillguard.ui import create_app


def _timed(client: TestClient, url: str) -> float:
    t0 = time.perf_counter()
    r = client.get(url)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        raise SystemExit(f"{url} answered {r.status_code}")
    return elapsed


def _baseline(log_dir: Path, verdicts_dir: Path, campaign_id: str) -> float:
    """One campaign's traffic series straight from the raw events (no pre-aggregation)."""
    con = duckdb.connect()
    register_view(con, log_dir, "events", "ev")
    register_view(con, verdicts_dir, "verdicts", "v")
    t0 = time.perf_counter()
    con.execute(
        "SELECT time_bucket(INTERVAL '1 hour', ts) AS b, count(*) FROM ev "
        "JOIN v USING (account_id) WHERE v.campaign_id = ? GROUP BY b ORDER BY b",
        [campaign_id],
    ).fetchall()
    return time.perf_counter() - t0


def _screenshot(app: object, out: Path, campaign_id: str) -> None:
    import socket
    import threading

    import uvicorn
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            page = browser.new_page(viewport={"width": 1360, "height": 1440})
            page.goto(f"http://127.0.0.1:{port}/campaigns/{campaign_id}")
            out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out / "campaign.png"))
            browser.close()
    finally:
        server.should_exit = True
        thread.join()


def _load_gateway(log_dir: Path, db: str) -> Any:
    """A gateway whose database holds the log's accounts and events, its detector fed."""
    import pyarrow as pa
    import sqlalchemy as sa

    from distillguard.enforce import LimitsConfig, LimitSet
    from distillguard.gateway import FakeUpstream, Gateway, GatewayConfig, Router, Store
    from distillguard.gateway._store import EVENT_FIELDS
    from distillguard.traffic import TrafficLog

    log = TrafficLog(log_dir)
    store = Store(db)
    acc = log.read("accounts").to_pylist()
    cols = {c.name for c in store.accounts.columns}
    with store.engine.begin() as con:
        con.execute(sa.insert(store.accounts), [
            {**{k: v for k, v in a.items() if k in cols}, "created_us": int(a["created_at"].timestamp() * 1e6)} for a in acc
        ])
    names = [("ts" if f == "ts_us" else f) for f in EVENT_FIELDS]
    n = 0
    for batch in log.batches("events"):
        t = pa.Table.from_batches([batch])
        ts = t.column("ts").cast(pa.int64()).to_pylist()
        columns = [ts if f == "ts" else (t.column(f).to_pylist() if f in t.column_names else [None] * t.num_rows) for f in names]
        store.insert_events(list(zip(*columns, strict=True)))
        n += t.num_rows
    router = Router()
    router.add("*", FakeUpstream())
    big = LimitSet(10**9, 10**10, None, None)
    cfg = GatewayConfig(db=db, admin_token="bench-admin-token-000000", detect=True, detect_interval=3600.0,
                        limits=LimitsConfig(key=big, account=big))
    return Gateway(cfg, router=router, store=store), n


def _mount(args: argparse.Namespace) -> None:
    import asyncio
    import tempfile

    import httpx

    from distillguard.gateway import create_app, issue_key

    tmp = Path(tempfile.mkdtemp(prefix="dg-console-mount-"))
    t0 = time.perf_counter()
    gw, n = _load_gateway(args.log_dir, f"sqlite:///{tmp / 'gw.db'}")
    print(f"loaded {n:,} events into the gateway database in {time.perf_counter() - t0:.1f} s")
    key = issue_key(gw.store, "bench-client").key
    app = create_app(gateway=gw)
    console = app.state.console
    auth = {"authorization": "Bearer bench-admin-token-000000"}
    body = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}

    async def run() -> None:
        await gw.start()
        t0 = time.perf_counter()
        fed = 0
        for rows, _seq in gw.store.event_tuples_since(0, 100_000):  # as capture hands them over
            gw.online.feed(rows)
            await asyncio.to_thread(gw.online.step)
            fed += len(rows)
        print(f"online detector over {fed:,} events: {time.perf_counter() - t0:.1f} s, "
              f"{sum(1 for d in gw.policy.snapshot().values() if d['action'] in ('throttle', 'block'))} accounts throttled or blocked")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=120) as client:

            async def api_latencies(stop: asyncio.Event) -> list[float]:
                out = []
                while not stop.is_set():
                    t = time.perf_counter()
                    r = await client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
                    assert r.status_code == 200, r.text
                    out.append(time.perf_counter() - t)
                    await asyncio.sleep(0.02)
                return out

            stop = asyncio.Event()
            idle = asyncio.create_task(api_latencies(stop))
            await asyncio.sleep(2)
            stop.set()
            before = await idle
            stop = asyncio.Event()
            during = asyncio.create_task(api_latencies(stop))
            t0 = time.perf_counter()
            first = await client.get("/console/", headers=auth)
            answered = time.perf_counter() - t0
            task = console._building
            if task is not None:
                await task
            build = time.perf_counter() - t0
            stop.set()
            lat = await during
            print(f"first visit answered in {answered * 1000:.0f} ms with {first.status_code} (preparing); "
                  f"snapshot built in the background in {build:.1f} s")
            for name, xs in (("before", before), ("during the build", lat)):
                print(f"  proxy request latency {name}: median {statistics.median(xs) * 1000:.1f} ms, "
                      f"worst {max(xs) * 1000:.1f} ms over {len(xs)} requests")
            cases = console._app.state.cases
            campaigns = [c.campaign_id for c in cases.campaigns()[: args.campaigns]]
            accounts = [a.account_id for cid in campaigns for a in cases.members(cid, limit=max(1, args.accounts // max(1, len(campaigns))))]
            accounts += [a.account_id for a in cases.flagged(limit=5)]
            pages = {"index": ["/console/"], "campaign": [f"/console/campaigns/{c}" for c in campaigns],
                     "account": [f"/console/accounts/{a}" for a in accounts]}
            worst = 0.0

            async def timed(url: str) -> float:
                t = time.perf_counter()
                r = await client.get(url, headers=auth)
                if r.status_code != 200:
                    raise SystemExit(f"{url} answered {r.status_code}")
                return time.perf_counter() - t

            for kind, urls in pages.items():
                if not urls:
                    continue
                firsts = [await timed(u) for u in urls]
                again = [await timed(u) for u in urls]
                worst = max(worst, *firsts, *again)
                print(f"{kind:<9} n={len(urls):<3} first visit median {statistics.median(firsts) * 1000:7.1f} ms"
                      f"  worst {max(firsts) * 1000:7.1f} ms | repeat median "
                      f"{statistics.median(again) * 1000:7.1f} ms  worst {max(again) * 1000:7.1f} ms")
            # 10,000 more events, then a rebuild: only they are exported (a new part)
            more = next(iter(gw.store.event_tuples_since(0, 10_000)))[0]
            gw.store.insert_events([("x" + str(r[0]), r[1] + 1, *r[2:]) for r in more])
            t0 = time.perf_counter()
            task = console.refresh(force=True)
            t_page = time.perf_counter()
            await timed("/console/")
            stale = time.perf_counter() - t_page
            if task is not None:
                await task
            print(f"incremental rebuild after 10,000 more events: {time.perf_counter() - t0:.1f} s "
                  f"(pages meanwhile from the old snapshot: index in {stale * 1000:.0f} ms)")
            print(f"slowest page: {worst * 1000:.0f} ms ({'within' if worst < 1 else 'OVER'} 1 s)")
        await gw.stop()
        console.close()

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log_dir", type=Path)
    ap.add_argument("verdicts_dir", type=Path, nargs="?")
    ap.add_argument("--mount", action="store_true", help="the console as the gateway serves it (no VERDICTS_DIR)")
    ap.add_argument("--campaigns", type=int, default=5)
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--screenshot", type=Path)
    args = ap.parse_args()
    if args.mount:
        _mount(args)
        return
    if args.verdicts_dir is None:
        ap.error("VERDICTS_DIR is required without --mount")

    t0 = time.perf_counter()
    store = CaseStore(args.log_dir, args.verdicts_dir)
    startup = time.perf_counter() - t0
    totals = store.totals()
    print(
        f"start-up pre-aggregation: {startup:.2f} s for {totals['events']:,} events, "
        f"{totals['accounts']:,} accounts, {totals['campaigns']:,} campaigns"
    )
    app = create_app(args.log_dir, args.verdicts_dir, store=store, warm_campaigns=0)
    client = TestClient(app)
    campaigns = [c.campaign_id for c in store.campaigns()[: args.campaigns]]
    accounts = [
        a.account_id
        for cid in campaigns
        for a in store.members(cid, limit=max(1, args.accounts // max(1, len(campaigns))))
    ]
    accounts += [a.account_id for a in store.flagged(limit=5)]
    pages = {
        "index": ["/"],
        "campaign": [f"/campaigns/{c}" for c in campaigns],
        "account": [f"/accounts/{a}" for a in accounts],
    }
    worst = 0.0
    for kind, urls in pages.items():
        if not urls:
            continue
        first = [_timed(client, u) for u in urls]
        again = [_timed(client, u) for u in urls]
        worst = max(worst, *first, *again)
        print(
            f"{kind:<9} n={len(urls):<3} first visit median {statistics.median(first) * 1000:7.1f} ms"
            f"  worst {max(first) * 1000:7.1f} ms | repeat median "
            f"{statistics.median(again) * 1000:7.1f} ms  worst {max(again) * 1000:7.1f} ms"
        )
    if campaigns:
        base = _baseline(args.log_dir, args.verdicts_dir, campaigns[0])
        t0 = time.perf_counter()
        store.traffic(campaign_id=campaigns[0])
        pre = time.perf_counter() - t0
        print(
            f"campaign traffic series: raw events {base * 1000:.1f} ms, pre-aggregated "
            f"{pre * 1000:.1f} ms ({base / max(pre, 1e-9):.0f}x)"
        )
    print(f"slowest page: {worst * 1000:.0f} ms ({'within' if worst < 1 else 'OVER'} 1 s)")
    write_section(__file__, "Analyst console",
                  markdown_table(["measure", "value"], [
                      ["events, accounts, campaigns", f"{totals['events']:,}, {totals['accounts']:,}, "
                       f"{totals['campaigns']:,}"],
                      ["start-up pre-aggregation", f"{startup:.1f} s"],
                      ["slowest page (first and repeat visits)", f"{worst * 1000:.0f} ms"],
                  ], align="lr"))
    if args.screenshot and campaigns:
        _screenshot(app, args.screenshot, campaigns[0])
        print(f"wrote {args.screenshot / 'campaign.png'}")


if __name__ == "__main__":
    main()
