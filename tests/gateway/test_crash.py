"""Capture survives a crash: kill -9 during a PostgreSQL outage loses nothing that was answered."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from distillguard.gateway import Store, issue_key

from .proxy import TcpProxy
from .test_processes import serve

ANSWERED = 300  # exchanges answered while the database is cut
STREAMED_EVERY = 3  # one request in three streams (its event is spooled before the last chunk)
DRAIN_WAIT_S = 30.0


@pytest.fixture
def pg(postgres_url: str) -> Iterator[tuple[str, str, TcpProxy]]:
    """The real PostgreSQL behind a proxy the test can cut, and a table prefix of its own."""
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    via_proxy = parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}").geturl()
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield via_proxy, prefix, proxy
    proxy.close()
    Store(postgres_url, prefix).drop_all()


def _ask(client: httpx.Client, i: int) -> None:
    body = {"model": "fake-1", "max_tokens": 16, "stream": i % STREAMED_EVERY == 0,
            "messages": [{"role": "user", "content": f"crash test {i}"}]}
    if body["stream"]:
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            assert b"[DONE]" in r.read()
    else:
        assert client.post("/v1/chat/completions", json=body).status_code == 200


def test_kill_9_during_a_database_outage_loses_nothing_answered(tmp_path: Path, postgres_url: str,
                                                                 pg: tuple[str, str, TcpProxy]) -> None:
    db, prefix, proxy = pg
    key = issue_key(Store(postgres_url, prefix), "crash-acc").key
    args = ("--table-prefix", prefix, "--spool", str(tmp_path / "spool"), "--capture-interval", "0.05")
    with serve(db, *args) as [(proc, url)]:
        proxy.cut()
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=10) as c:
            for i in range(ANSWERED):
                _ask(c, i)
        proc.kill()  # SIGKILL: no shutdown flush
        proc.wait(10)
    store = Store(postgres_url, prefix)
    assert store.count_events() == 0  # nothing got through the cut: all of it is in the spool
    proxy.restore()
    with serve(db, *args):
        deadline = time.monotonic() + DRAIN_WAIT_S
        while store.count_events() < ANSWERED and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # and nothing more arrives
        rows = [r for b in store.iter_events() for r in b]
    prompts = sorted(r["prompt"] for r in rows)
    assert prompts == sorted(f"crash test {i}" for i in range(ANSWERED)), f"{len(rows)} rows"
    assert len({r["event_id"] for r in rows}) == ANSWERED
    assert all(r["status"] == 200 for r in rows)
    # in order: the spool drains as it was written
    assert [r["prompt"] for r in sorted(rows, key=lambda r: r["seq"])] == [f"crash test {i}" for i in range(ANSWERED)]


def test_a_full_spool_refuses_with_503_and_drops_nothing(tmp_path: Path, postgres_url: str,
                                                         pg: tuple[str, str, TcpProxy]) -> None:
    """The database is cut and the spool's bound is small: requests are answered until it is
    full, then refused with 503 and Retry-After; every answered one reaches the database."""
    from distillguard.gateway import FakeUpstream, Gateway, GatewayConfig, Router, create_app

    from .support import ServerThread, free_port

    db, prefix, proxy = pg
    key = issue_key(Store(postgres_url, prefix), "full-acc").key
    cfg = GatewayConfig(db=db, table_prefix=prefix, detect=False, capture_interval=0.02,
                        spool_dir=tmp_path / "spool", spool_max_bytes=8000)
    router = Router()
    router.add("*", FakeUpstream())
    srv = ServerThread(create_app(gateway=Gateway(cfg, router=router)), free_port())
    srv.start()
    url = f"http://127.0.0.1:{srv.server.config.port}"
    store = Store(postgres_url, prefix)
    try:
        proxy.cut()
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=10) as c:
            answers = [c.post("/v1/chat/completions", json={"model": "fake-1", "messages": [{"role": "user", "content": f"full {i}"}]})
                       for i in range(60)]
            codes = [r.status_code for r in answers]
            first_refusal = codes.index(503)
            assert first_refusal > 5 and set(codes[first_refusal:]) == {503}, codes
            assert int(answers[-1].headers["retry-after"]) >= 1 and "capture spool" in answers[-1].json()["error"]["message"]
            proxy.restore()
            deadline = time.monotonic() + DRAIN_WAIT_S
            while store.count_events() < first_refusal and time.monotonic() < deadline:
                time.sleep(0.2)
            assert c.post("/v1/chat/completions", json={"model": "fake-1", "messages": [{"role": "user", "content": "after"}]}).status_code == 200
    finally:
        srv.stop()
    prompts = sorted(r["prompt"] for b in store.iter_events() for r in b)
    assert prompts == sorted([f"full {i}" for i in range(first_refusal)] + ["after"])
