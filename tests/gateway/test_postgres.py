"""Capture into the real PostgreSQL on 127.0.0.1:5432 (own table prefix, dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from distillguard.gateway import BatchStore, Store, create_app, export_log, issue_key
from distillguard.traffic import TrafficLog

from .support import ServerThread, free_port, make_gateway


@pytest.fixture
def pg_prefix(postgres_url: str) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield prefix
    store = Store(postgres_url, prefix)
    BatchStore(store).drop_all()  # the gateway made its batch tables too
    store.drop_all()


def test_gateway_captures_into_postgres(postgres_url: str, pg_prefix: str, mock_upstream: str, tmp_path: Path) -> None:
    gw = make_gateway(postgres_url, mock_upstream, prefix=pg_prefix)
    assert gw.store.engine.dialect.name == "postgresql"
    key = issue_key(gw.store, "pg-acc").key
    srv = ServerThread(create_app(gateway=gw), free_port())
    port = srv.server.config.port
    srv.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"Bearer {key}"}) as c:
            for i in range(10):
                body = {"model": "gpt-pg", "messages": [{"role": "user", "content": f"pg {i}"}], "stream": i % 2 == 0}
                assert c.post("/v1/chat/completions", json=body).status_code == 200
    finally:
        srv.stop()  # lifespan shutdown flushes capture
    store = Store(postgres_url, pg_prefix)
    assert store.count_events() == 10
    rows = [r for b in store.iter_events() for r in b]
    # replaying a batch (a retry after a crash) writes nothing twice
    store.insert_events([{k: v for k, v in r.items() if k != "seq"} for r in rows])
    assert store.count_events() == 10
    res = export_log(postgres_url, tmp_path / "log", prefix=pg_prefix)
    assert res.events == 10 and res.accounts == 1
    ev = TrafficLog(tmp_path / "log").read("events").to_pylist()
    assert sorted(e["prompt"] for e in ev) == sorted(f"pg {i}" for i in range(10))
    assert {e["completion_tokens"] for e in ev} == {12}
