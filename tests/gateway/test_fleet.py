"""A fleet: three `distillguard serve` replicas on one PostgreSQL and one Redis, each starting a
child detector (one leads). A hydra whose requests the balancer spreads over the replicas is
throttled, then blocked, on every replica; benign users are served throughout."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from distillguard.gateway import Store, VerdictTables

from .support import detect_config_file, free_port, wait_until_healthy
from .test_online import BROWSER, HUMAN, HYDRA_SYSTEM, TEMPLATES, signed_up

SEED = 5
REPLICAS = 3
ROUNDS = 40  # at most; the loop ends once every hydra account is refused 403
ADMIN_TOKEN = "fleet-admin-token-0123456"


@contextmanager
def fleet(db: str, args: tuple[str, ...], tmp: Path) -> Iterator[list[str]]:
    """`REPLICAS` gateway processes (each with its own spool and a child detector); their URLs."""
    env = {**os.environ, "DISTILLGUARD_ADMIN_TOKEN": ADMIN_TOKEN}
    procs = []
    for i in range(REPLICAS):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "distillguard", "serve", "--upstream", "fake", "--port", str(port), "--db", db,
             "--log-level", "warning", *args, "--spool", str(tmp / f"spool-{i}")],
            env=env, stdout=subprocess.DEVNULL, stderr=(tmp / f"replica-{i}.log").open("wb"))
        procs.append((proc, f"http://127.0.0.1:{port}"))
    try:
        deadline = time.monotonic() + 60
        def failure() -> str:
            logs = "".join((tmp / f"replica-{j}.log").read_text()[-2000:] for j in range(REPLICAS))
            return f"a replica did not start:\n{logs}"

        for proc, url in procs:
            wait_until_healthy(proc, url, deadline, failure)
        yield [url for _, url in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()  # each stops its child detector too
        for proc, _ in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_hydra_spread_over_three_replicas_is_throttled_then_blocked_everywhere(
        tmp_path: Path, postgres_url: str, redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    store = Store(postgres_url, prefix)
    detect_config = detect_config_file(tmp_path)
    limits = tmp_path / "limits.json"  # throttled accounts get one request a minute
    limits.write_text(json.dumps({"account": {"requests_per_minute": 300}, "throttle_factor": 1 / 300}))
    rng = random.Random(SEED)
    hydra, benign = [f"h{i}" for i in range(8)], [f"b{i}" for i in range(4)]
    keys = signed_up(store, hydra, benign)
    redis_prefix = f"dgtest-fleet-{uuid.uuid4().hex[:8]}"
    args = ("--table-prefix", prefix, "--redis", redis_url, "--redis-prefix", redis_prefix, "--limits", str(limits),
            "--detect-interval", "0.3", "--capture-interval", "0.05", "--detect-config", str(detect_config))
    history: dict[str, list[int]] = {a: [] for a in hydra + benign}
    try:
        with fleet(postgres_url, args, tmp_path) as urls:
            n = 0
            with httpx.Client(timeout=10) as c:
                for _round in range(ROUNDS):
                    for _ in range(6):
                        for acc in hydra:
                            prompt = rng.choice(TEMPLATES).format(i=rng.randint(1, 99), j=rng.randint(1, 99))
                            r = c.post(urls[n % REPLICAS] + "/v1/chat/completions", headers={"authorization": f"Bearer {keys[acc]}"},
                                       json={"model": "m", "max_tokens": 1024, "messages": [
                                           {"role": "system", "content": HYDRA_SYSTEM}, {"role": "user", "content": prompt}]})
                            history[acc].append(r.status_code)
                            n += 1
                    for acc in benign:
                        convo = [{"role": "user", "content": rng.choice(HUMAN)}, {"role": "assistant", "content": "Sure."},
                                 {"role": "user", "content": rng.choice(HUMAN)}]
                        r = c.post(urls[n % REPLICAS] + "/v1/chat/completions", json={"model": "m", "messages": convo},
                                   headers={"authorization": f"Bearer {keys[acc]}", "user-agent": BROWSER})
                        history[acc].append(r.status_code)
                        n += 1
                    if all(history[h][-1] == 403 for h in hydra):
                        break
                    time.sleep(0.5)  # the detector's step and the followers' poll
                # every replica applies the block: each refuses every hydra account
                for url in urls:
                    for h in hydra:
                        r = c.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {keys[h]}"},
                                   json={"model": "m", "messages": [{"role": "user", "content": "again"}]})
                        assert r.status_code == 403, (url, h, r.status_code)
        for h in hydra:
            assert 429 in history[h] or history[h].count(403) > 0, f"{h}: {history[h]}"
            assert history[h][-1] == 403, f"the block must reach {h}: {history[h]}"
        for b in benign:
            assert set(history[b]) == {200}, f"benign {b} was refused: {history[b]}"
        actions = {r["account_id"]: r["action"] for r in VerdictTables(store).since(0)}
        assert all(actions[h] == "block" for h in hydra)
        assert all(actions.get(b, "allow") in ("allow", "monitor") for b in benign)
    finally:
        VerdictTables(store).drop_all()
        store.drop_all()
        import redis

        r = redis.Redis.from_url(redis_url)
        for key in r.scan_iter(f"{redis_prefix}*"):
            r.delete(key)
