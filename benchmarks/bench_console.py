"""Console speed: start-up pre-aggregation and the time of every page, on a real log.

    python benchmarks/bench_console.py LOG_DIR VERDICTS_DIR [--campaigns 5] [--accounts 20]
        [--screenshot DIR]

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

import duckdb
from fastapi.testclient import TestClient

from distillguard._logsql import register_view
from distillguard.report import CaseStore
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log_dir", type=Path)
    ap.add_argument("verdicts_dir", type=Path)
    ap.add_argument("--campaigns", type=int, default=5)
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--screenshot", type=Path)
    args = ap.parse_args()

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
    if args.screenshot and campaigns:
        _screenshot(app, args.screenshot, campaigns[0])
        print(f"wrote {args.screenshot / 'campaign.png'}")


if __name__ == "__main__":
    main()
