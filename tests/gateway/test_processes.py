"""Real `distillguard serve` processes: SIGTERM flushes capture; two replicas share one Redis budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from distillguard.gateway import Store, issue_key

from .support import free_port, wait_until_healthy

CHAT = {"model": "fake-1", "messages": [{"role": "user", "content": "hello"}]}


@contextmanager
def serve(db: str, *args: str, replicas: int = 1) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    """Start `replicas` gateway processes at once and wait until all answer."""
    env = {**os.environ, "DISTILLGUARD_ADMIN_TOKEN": "process-admin-token-0123"}
    procs = []
    for _ in range(replicas):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "distillguard", "serve", "--upstream", "fake", "--port", str(port), "--db", db,
             "--no-detect", "--log-level", "warning", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        procs.append((proc, f"http://127.0.0.1:{port}"))
    try:
        deadline = time.monotonic() + 40
        for proc, url in procs:
            def failure(proc: subprocess.Popen[bytes] = proc) -> str:
                out = proc.stdout.read().decode() if proc.stdout and proc.poll() is not None else ""
                return f"gateway process did not start:\n{out}"

            wait_until_healthy(proc, url, deadline, failure)
        yield procs
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def test_sigterm_flushes_the_capture_queue(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'flush.db'}"
    store = Store(db)
    key = issue_key(store, "flush-acc").key
    # capture waits 60 s to fill a batch: only the shutdown flush can write these events
    with serve(db, "--capture-interval", "60") as [(proc, url)]:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}) as c:
            for i in range(25):
                assert c.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": f"q{i}"}]}).status_code == 200
        assert store.count_events() == 0
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises SIGTERM as its exit status
        assert proc.wait(20) in (0, -signal.SIGTERM)
    rows = [r for batch in store.iter_events() for r in batch]
    assert sorted(r["prompt"] for r in rows) == sorted(f"q{i}" for i in range(25))
    assert len({r["event_id"] for r in rows}) == 25


def test_two_replicas_share_one_redis_budget(tmp_path: Path, redis_url: str) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    key = issue_key(Store(db), "shared-acc").key
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({"account": {"requests_per_minute": 6}}))
    prefix = f"dgtest-{uuid.uuid4().hex[:8]}"
    common = ("--redis", redis_url, "--redis-prefix", prefix, "--limits", str(limits))
    with serve(db, *common, replicas=2) as [(_, url_a), (_, url_b)]:
        codes = []
        for _ in range(5):
            for url in (url_a, url_b):
                r = httpx.post(url + "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
                codes.append(r.status_code)
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) >= 1
        assert codes.count(200) == 6 and codes.count(429) == 4, codes
        assert codes[:6] == [200] * 6
    import redis

    r = redis.Redis.from_url(redis_url)
    stale = list(r.scan_iter(f"{prefix}*"))
    assert stale, "the limit counters must live in Redis"
    r.delete(*stale)
