"""One key holder cannot take the gateway's resources from everyone else: in-flight requests per
key, upstream connections, store look-ups for unknown keys, failed logins per address."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from distillguard.gateway import (
    FakeUpstream,
    Gateway,
    OpenAIUpstream,
    Router,
    create_app,
    issue_key,
)

from ..support import ServerThread, free_port, make_gateway


@contextmanager
def serving(gw: Gateway, fast_path: bool = True) -> Iterator[str]:
    srv = ServerThread(create_app(gateway=gw, fast_path=fast_path), free_port())
    srv.start()
    try:
        yield f"http://127.0.0.1:{srv.server.config.port}"
    finally:
        srv.stop()


def _chat(url: str, key: str, model: str, timeout: float = 10.0) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=timeout,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def _in_background(fn: Any, n: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=fn, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-routes"])
def test_one_key_cannot_hold_more_than_its_share(tmp_path: Path, mock_upstream: str, fast_path: bool) -> None:
    gw = make_gateway(f"sqlite:///{tmp_path / 'c.db'}", mock_upstream, max_inflight_per_key=2)
    gw.router.add("slowfake-*", FakeUpstream(delay=1.5))
    dribble = FakeUpstream(name="dribble")

    async def slow_stream(req: Any, account_id: str) -> Any:
        from distillguard.gateway import Delta

        for i in range(5):
            yield Delta(text=f"w{i} ")
            await asyncio.sleep(0.1)
        yield Delta(finish_reason="stop", prompt_tokens=1, completion_tokens=5)

    dribble.stream = slow_stream  # type: ignore[method-assign]
    gw.router.add("dribble-*", dribble)
    hog, other = issue_key(gw.store, "hog").key, issue_key(gw.store, "other").key
    with serving(gw, fast_path) as url:
        held = _in_background(lambda: _chat(url, hog, "slowfake-1"), 2)
        time.sleep(0.5)
        t = time.monotonic()
        r = _chat(url, hog, "fake-1")
        assert r.status_code == 503 and time.monotonic() - t < 1.0, r.text
        assert r.headers["retry-after"] == "1"
        assert _chat(url, other, "fake-1").status_code == 200
        for th in held:
            th.join(10)
        assert _chat(url, hog, "fake-1").status_code == 200, "slots come back when the answers are sent"
        with httpx.stream("POST", url + "/v1/chat/completions", headers={"authorization": f"Bearer {hog}"}, timeout=10,
                          json={"model": "dribble-1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status_code == 200
            assert gw._inflight == {gw.keys.lookup_cached(hog).key_id: 1}, "a stream holds its slot while it runs"  # type: ignore[union-attr]
            r.read()
        time.sleep(0.1)
        assert gw._inflight == {}


def test_waiting_for_an_upstream_connection_times_out(tmp_path: Path, mock_upstream: str) -> None:
    gw = make_gateway(f"sqlite:///{tmp_path / 'p.db'}", mock_upstream)
    gw.router = Router()
    gw.router.add("*", OpenAIUpstream(mock_upstream, timeout=10.0, connections=1, acquire_timeout=0.5))
    a, b = issue_key(gw.store, "a").key, issue_key(gw.store, "b").key
    with serving(gw) as url:
        held = _in_background(lambda: _chat(url, a, "mock-slow"), 1)  # the mock answers it after 3 s
        time.sleep(0.5)
        t = time.monotonic()
        r = _chat(url, b, "mock-fast")  # the upstream's only connection is busy
        assert r.status_code == 503 and time.monotonic() - t < 2.0, r.text
        held[0].join(10)
        assert _chat(url, b, "mock-fast").status_code == 200


def test_failed_logins_are_limited_per_address(tmp_path: Path, mock_upstream: str) -> None:
    gw = make_gateway(f"sqlite:///{tmp_path / 'f.db'}", mock_upstream, login_failures_per_minute=5)
    good = issue_key(gw.store, "good").key
    with serving(gw) as url:
        assert _chat(url, good, "fake-1").status_code == 200  # now cached
        codes = [_chat(url, f"dg-k{i:012x}-{'x' * 32}", "fake-1").status_code for i in range(8)]
        assert codes == [401] * 5 + [429] * 3
        assert _chat(url, good, "fake-1").status_code == 200, "a known key is not refused for its address"
        gw.keys._ttl = 0.0  # every cached key is due to be read again: still known, still served
        assert _chat(url, good, "fake-1").status_code == 200
        assert _chat(url, "dg-k000000000099-" + "z" * 32, "fake-1").status_code == 429
    # the look-ups ran on the gateway's own key threads, not the default pool capture uses
    assert gw._key_pool._thread_name_prefix == "distillguard-keys"  # type: ignore[attr-defined]


def test_model_names_cannot_fill_memory(tmp_path: Path, mock_upstream: str) -> None:
    """Long names are refused; names of refused requests (429 here) are never cached."""
    from distillguard.enforce import LimitsConfig, LimitSet

    tight = LimitsConfig(key=LimitSet(1, None, None, None), account=LimitSet(1, None, None, None))
    gw = make_gateway(f"sqlite:///{tmp_path / 'm.db'}", mock_upstream, limits=tight)
    key = issue_key(gw.store, "names").key
    with serving(gw) as url:
        r = _chat(url, key, "fake-" + "x" * 800_000)
        assert r.status_code == 400 and r.json()["error"]["param"] == "model"
        assert _chat(url, key, "fake-first").status_code == 200
        codes = {_chat(url, key, f"fake-{i}").status_code for i in range(20)}
        assert codes == {429}
    assert set(gw.router._cache) == {"fake-first"}


def test_a_flood_of_unknown_keys_does_not_starve_real_ones(tmp_path: Path, mock_upstream: str) -> None:
    """400 unknown keys from 8 threads: the store is asked at most the per-address budget of
    times, and a real key is answered promptly throughout."""
    from concurrent.futures import ThreadPoolExecutor

    gw = make_gateway(f"sqlite:///{tmp_path / 'u.db'}", mock_upstream, login_failures_per_minute=20)
    good = issue_key(gw.store, "real").key
    lookups = 0
    real_lookup = gw.keys.lookup_store

    def counting(key: str) -> Any:
        nonlocal lookups
        lookups += 1
        return real_lookup(key)

    gw.keys.lookup_store = counting  # type: ignore[method-assign]
    with serving(gw) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert _chat(url, good, "fake-1").status_code == 200

        def attempt(i: int) -> int:
            r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer dg-k{i:012x}-{'y' * 32}"},
                            json={"model": "fake-1", "messages": [{"role": "user", "content": "hi"}]})
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            flood = pool.map(attempt, range(400))
            t = time.monotonic()
            assert _chat(url, good, "fake-1").status_code == 200
            assert time.monotonic() - t < 2.0
            codes = list(flood)
    assert set(codes) == {401, 429} and codes.count(401) <= 20 + 8
    assert lookups <= 20 + 8, f"{lookups} store look-ups for unknown keys"
