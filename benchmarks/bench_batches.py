"""Batch throughput through the gateway, against the same requests sent live.

    python benchmarks/bench_batches.py [--requests 2000] [--concurrency 8]

One gateway (SQLite, a temporary file) in front of the mock upstream, both in this process's
threads. Times: submitting an OpenAI batch of N chat requests (upload + create: every request
parsed, checked and captured), running it to `completed` with `batch_concurrency` C and no
rate bound, the same batch run by the mock's own batch API (`batch_via="upstream"`: forwarded
whole, polled every 50 ms, its N outcomes read back, checked and stored; the mock answers the
requests one by one itself), and, as the baseline in the same run, the same N requests sent
live by C client threads through the same gateway. Prints each and the ratio of each batch's
total time to the live requests' time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from _docs import markdown_table, write_section

from distillguard.enforce import LimitsConfig, LimitSet
from distillguard.gateway import (
    Gateway,
    GatewayConfig,
    OpenAIUpstream,
    Router,
    create_app,
    issue_key,
    mock_upstream_app,
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mock(port: int) -> None:
    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(mock_upstream_app(chunks=4, batch_s=0.0), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    threading.Thread(target=loop.run_forever, daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    n, c = a.requests, a.concurrency
    up_port = _port()
    _mock(up_port)
    free = LimitSet(None, None, None, None)  # limits are not what is measured

    def body(i: int, kind: str) -> dict[str, Any]:
        return {"model": "gpt-bench", "max_tokens": 32, "messages": [{"role": "user", "content": f"{kind} request {i}"}]}

    def gateway(tmp: str, via: str) -> tuple[uvicorn.Server, str, dict[str, str]]:
        cfg = GatewayConfig(db=f"sqlite:///{Path(tmp) / f'{via}.db'}", detect=False, limits=LimitsConfig(key=free, account=free, campaign=free),
                            batch_rate=1e9, batch_concurrency=c, capture_interval=0.05, batch_via=via, batch_poll=0.05)  # type: ignore[arg-type]
        router = Router()
        router.add("*", OpenAIUpstream(f"http://127.0.0.1:{up_port}/v1", timeout=30))
        gw = Gateway(cfg, router=router)
        key = issue_key(gw.store, "bench").key
        port = _port()
        server = uvicorn.Server(uvicorn.Config(create_app(gateway=gw), "127.0.0.1", port, log_level="warning", lifespan="on"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.02)
        return server, f"http://127.0.0.1:{port}/v1", {"authorization": f"Bearer {key}"}

    def batch(base: str, headers: dict[str, str], kind: str) -> tuple[float, float]:
        lines = "\n".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body(i, kind)}) for i in range(n))
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            t0 = time.perf_counter()
            f = client.post("/files", files={"file": ("b.jsonl", lines.encode())}, data={"purpose": "batch"}).json()
            b = client.post("/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}).json()
            submitted = time.perf_counter() - t0
            while (st := client.get(f"/batches/{b['id']}").json())["status"] != "completed":
                time.sleep(0.05)
            ran = time.perf_counter() - t0 - submitted
            assert st["request_counts"]["completed"] == n, st
        return submitted, ran

    with tempfile.TemporaryDirectory() as tmp:
        server, base, headers = gateway(tmp, "requests")
        submitted, ran = batch(base, headers, "batch")

        def live(chunk: range) -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=60) as cl:
                for i in chunk:
                    assert cl.post("/chat/completions", json=body(i, "live")).status_code == 200

        t0 = time.perf_counter()
        with ThreadPoolExecutor(c) as pool:
            list(pool.map(live, [range(k, n, c) for k in range(c)]))
        live_s = time.perf_counter() - t0
        server.should_exit = True
        up_server, up_base, up_headers = gateway(tmp, "upstream")
        up_submitted, up_ran = batch(up_base, up_headers, "upstream")
        up_server.should_exit = True
        time.sleep(0.5)
    rows = [["batch submit (upload + create: every request checked and captured)", f"{submitted:.2f}", f"{submitted / n * 1e6:.0f} us a request"],
            ["batch run to completed", f"{ran:.2f}", f"{n / ran:.0f} requests/s"],
            ["batch by the upstream's batch API: submit", f"{up_submitted:.2f}", f"{up_submitted / n * 1e6:.0f} us a request"],
            ["batch by the upstream's batch API: forwarded, run by the mock, collected", f"{up_ran:.2f}", f"{n / up_ran:.0f} requests/s"],
            [f"live requests (baseline, {c} client threads)", f"{live_s:.2f}", f"{n / live_s:.0f} requests/s"]]
    table = markdown_table(["step", "seconds", "rate"], rows, "lrr")
    ratio = (f"Batch total / live: {(submitted + ran) / live_s:.2f}x through the request API, "
             f"{(up_submitted + up_ran) / live_s:.2f}x through the upstream's batch API ({n} requests, concurrency {c}).")
    print(table + "\n\n" + ratio)
    write_section(__file__, "Batches through the gateway", table + "\n\n" + ratio)


if __name__ == "__main__":
    main()
