"""Capture: disconnects are logged, nothing is written twice, export gives a valid traffic log."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pyarrow as pa

from distillguard.gateway import Capture, FakeUpstream, Store, export_log, issue_key
from distillguard.traffic import TrafficLog, validate_log

from .support import Running


def test_client_disconnect_mid_stream_is_logged(running: Running) -> None:
    gw = running.gateway
    slow = FakeUpstream(name="slow", delay=0.0)

    async def dribble(req, account_id):  # type: ignore[no-untyped-def]
        from distillguard.gateway import Delta

        for i in range(200):
            yield Delta(text=f"w{i} ")
            await asyncio.sleep(0.01)

    slow.stream = dribble  # type: ignore[method-assign]
    gw.router.add("slowstream", slow)
    body = b'{"model":"slowstream","stream":true,"messages":[{"role":"user","content":"hang up on me"}]}'
    host, port = running.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {running.key}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
        )
        got = b""
        while got.count(b"data:") < 4:
            got += s.recv(65536)
    deadline = time.monotonic() + 5
    while True:
        ev = [e for e in running.events() if e["prompt"] == "hang up on me"]
        if ev or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(ev) == 1, "a disconnected stream must be logged once"
    e = ev[0]
    assert e["status"] == 499
    assert e["response"].startswith("w0 w1") and len(e["response"].split()) < 200
    assert e["completion_tokens"] > 0


def test_no_event_is_written_twice(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'dup.db'}")
    rows = [{"event_id": f"e{i}", "ts_us": 1_700_000_000_000_000 + i, "account_id": "a", "model": "m", "prompt": "p"} for i in range(5)]
    assert store.insert_events(rows) == 5
    assert store.insert_events(rows[2:] + [{**rows[0], "event_id": "e9"}]) == 1
    assert store.count_events() == 6

    async def crashy() -> int:
        cap = Capture(store, batch_size=3, interval=0.0)
        cap.start()
        for r in rows:
            cap.submit(dict(r))
        await asyncio.sleep(0)  # the writer takes a batch: then it is cancelled mid-write
        await cap.close()
        return cap.dropped

    assert asyncio.run(crashy()) == 0
    assert store.count_events() == 6


def test_export_writes_a_valid_traffic_log(running: Running, tmp_path: Path) -> None:
    import httpx

    k = issue_key(running.gateway.store, "export-acc").key
    for i in range(3):
        httpx.post(running.url + "/v1/chat/completions", headers={"authorization": f"Bearer {k}"}, json={"model": "gpt-x", "messages": [{"role": "user", "content": f"export {i}"}]}).raise_for_status()
    running.gateway.store.add_override("export-acc", "monitor", by="tester", note="just watching")
    n = len(running.events())
    res = export_log(running.gateway.store, tmp_path / "log")
    assert res.events == n and res.overrides >= 1
    report = validate_log(tmp_path / "log")
    assert report.ok, report
    log = TrafficLog(tmp_path / "log")
    events = log.read("events")
    assert events.num_rows == n
    assert events.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    mine = [r for r in events.to_pylist() if r["account_id"] == "export-acc"]
    assert sorted(r["prompt"] for r in mine) == ["export 0", "export 1", "export 2"]
    assert len({r["event_id"] for r in events.to_pylist()}) == n
    ov = log.read("overrides").to_pylist()
    assert {"account_id": "export-acc", "action": "monitor", "by": "tester", "note": "just watching"}.items() <= ov[-1].items()
    assert "export-acc" in log.read("accounts").column("account_id").to_pylist()
