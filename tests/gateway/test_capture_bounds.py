"""A key holder cannot stop capture: rows the store would refuse are bounded, and a row it still
refuses is set aside on its own, on the real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from distillguard.gateway import Capture, Store, create_app, issue_key
from distillguard.gateway._store import EVENT_FIELDS, INT32_MAX, TRUNCATION_MARKER

from .support import ServerThread, free_port, make_gateway


def _event(i: int, **over: Any) -> dict[str, Any]:
    return {"event_id": f"ev{i}", "ts_us": 1_700_000_000_000_000 + i, "account_id": "acc", "model": "m",
            "prompt": f"p{i}", "status": 200, **over}


def test_nul_prompt_and_long_model_do_not_stop_capture(store_db: tuple[str, str], mock_upstream: str) -> None:
    url, prefix = store_db
    gw = make_gateway(url, mock_upstream, prefix=prefix)
    key = issue_key(gw.store, "hostile").key
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    long_model = "fake-" + "x" * 400
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.server.config.port}", headers={"authorization": f"Bearer {key}"}) as c:
            attacks = [
                {"model": "fake-a", "messages": [{"role": "user", "content": "before\x00after"}]},
                {"model": long_model, "messages": [{"role": "user", "content": "long model"}]},
                {"model": "fake-a", "messages": [{"role": "system", "content": "sys\x00"}, {"role": "user", "content": "nul in system"}]},
            ]
            for body in attacks:
                # a model name over its column's size is refused (400), and still captured
                want = 400 if body["model"] == long_model else 200
                assert c.post("/v1/chat/completions", json=body).status_code == want
            for i in range(5):
                body = {"model": "fake-a", "messages": [{"role": "user", "content": f"after the attack {i}"}]}
                assert c.post("/v1/chat/completions", json=body).status_code == 200
    finally:
        srv.stop()  # lifespan shutdown flushes capture
    assert gw.capture.set_aside == 0
    assert gw.capture.written == 8
    store = Store(url, prefix)
    events = [r for b in store.iter_events() for r in b]
    rows = {r["prompt"]: r for r in events}
    assert len(events) == 8
    assert "before\ufffdafter" in rows
    assert rows["nul in system"]["system"] == "sys\ufffd"
    (refused,) = [r for r in events if r["status"] == 400]
    model = refused["model"]
    assert len(model) == 200 and model.endswith(TRUNCATION_MARKER) and model.startswith("fake-xxx")
    assert all(f"after the attack {i}" in rows for i in range(5))


def test_a_refused_row_is_set_aside_and_capture_goes_on(store_db: tuple[str, str]) -> None:
    url, prefix = store_db
    store = Store(url, prefix)
    good = [_event(i) for i in range(7)]
    # what no bounding fixes: a missing required column
    bad = _event(99, account_id=None, prompt="bad\x00row")

    async def run() -> Capture:
        cap = Capture(store, batch_size=100, interval=0.0)
        for r in good[:3] + [bad] + good[3:]:
            cap.submit(r)
        await cap.flush()
        cap.submit(_event(100, model="m" * 1000, turns=2**40))
        await cap.flush()
        return cap

    cap = asyncio.run(run())
    assert cap.set_aside == 1
    assert cap.written == 8
    stored = {r["event_id"]: r for b in store.iter_events() for r in b}
    assert set(stored) == {f"ev{i}" for i in range(7)} | {"ev100"}
    assert stored["ev100"]["turns"] == INT32_MAX and len(stored["ev100"]["model"]) == 200
    dead = store.dead_events_list()
    assert [d["event_id"] for d in dead] == ["ev99"]
    kept = json.loads(dead[0]["row_json"])
    assert set(kept) == set(EVENT_FIELDS)
    assert kept["account_id"] is None and kept["prompt"] == "bad\ufffdrow"
    assert dead[0]["error"]


def test_an_outage_is_retried_not_set_aside(tmp_path: Path) -> None:
    """Store down (its file's directory missing): the batch waits, nothing goes to dead letters."""
    folder = tmp_path / "db"
    folder.mkdir()
    store = Store(f"sqlite:///{folder / 'x.db'}")
    store.engine.dispose()
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()

    async def run() -> Capture:
        cap = Capture(store, batch_size=10, interval=0.0)
        cap.submit(_event(1))
        task = asyncio.ensure_future(cap.flush())
        await asyncio.sleep(1.0)
        assert not task.done(), "the writer must keep the batch while the store is down"
        folder.mkdir()
        store.metadata.create_all(store.engine)
        await asyncio.wait_for(task, 10)
        return cap

    cap = asyncio.run(run())
    assert cap.set_aside == 0 and cap.written == 1
    assert store.count_events() == 1
