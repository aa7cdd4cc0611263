"""The admin API behind its own token, and the keys/export commands.

The admin API runs on both deployments: SQLite with limits in memory, and PostgreSQL with
limits on Redis (own table and key prefixes, removed afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.gateway import Store
from distillguard.traffic import TrafficLog

from .support import ADMIN, Running, make_gateway, serving_account


@pytest.fixture(scope="module", params=["sqlite-memory", "postgres-redis"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mock_upstream: str) -> Iterator[Running]:
    """A gateway for account `acme` (overrides the shared SQLite-only fixture)."""
    prefix, redis = "dg_", None
    if request.param == "sqlite-memory":
        db = f"sqlite:///{tmp_path_factory.mktemp('adm') / 'adm.db'}"
    else:
        db, redis, prefix = request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_url"), f"t{uuid.uuid4().hex[:10]}_"
    redis_prefix = f"dgtest-admin-{uuid.uuid4().hex[:8]}"
    gw = make_gateway(db, mock_upstream, prefix=prefix, redis=redis, redis_prefix=redis_prefix)
    with serving_account(gw) as running:
        yield running
    if redis is not None:
        import redis as redis_lib

        r = redis_lib.Redis.from_url(redis)
        for key in r.scan_iter(f"{redis_prefix}*"):
            r.delete(key)
        Store(db, prefix).drop_all()

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello admin"}]}


def _admin(r: Running, method: str, path: str, token: str = ADMIN, **kw: object) -> httpx.Response:
    return httpx.request(method, r.url + "/admin" + path, headers={"authorization": f"Bearer {token}"}, timeout=10, **kw)  # type: ignore[arg-type]


def test_admin_needs_its_token(running: Running) -> None:
    assert _admin(running, "GET", "/keys", token="wrong-token-000000").status_code == 401
    assert httpx.get(running.url + "/admin/keys").status_code == 401
    # an API key is not an admin token
    assert _admin(running, "GET", "/keys", token=running.key).status_code == 401


def test_admin_keys_overrides_limits_events(running: Running) -> None:
    assert _admin(running, "POST", "/accounts", json={"account_id": "adm-1", "country": "DE", "verified": True}).status_code == 201
    made = _admin(running, "POST", "/keys", json={"account_id": "adm-1", "name": "ci"}).json()
    key = made["key"]
    assert key.startswith("dg-") and made["account_id"] == "adm-1"
    listed = _admin(running, "GET", "/keys", params={"account_id": "adm-1"}).json()
    assert [k["key_id"] for k in listed] == [made["key_id"]]
    assert key not in str(listed) and "hash" not in str(listed)
    stored = Store(running.gateway.store.url, running.gateway.store.prefix).get_key(made["key_id"])
    assert stored is not None and key not in str(stored)

    headers = {"authorization": f"Bearer {key}"}
    assert httpx.post(running.url + "/v1/chat/completions", json=CHAT, headers=headers).status_code == 200

    ov = _admin(running, "POST", "/overrides", json={"account_id": "adm-1", "action": "block", "by": "alice", "note": "case 12"}).json()
    assert ov["effective"] == "block"
    assert httpx.post(running.url + "/v1/chat/completions", json=CHAT, headers=headers).status_code == 403
    assert _admin(running, "POST", "/overrides", json={"account_id": "adm-1", "action": "benign"}).json()["effective"] == "allow"
    assert httpx.post(running.url + "/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
    assert _admin(running, "POST", "/overrides", json={"account_id": "adm-1", "action": "nuke"}).status_code == 422
    assert [o["action"] for o in _admin(running, "GET", "/overrides").json() if o["account_id"] == "adm-1"] == ["block", "benign"]
    assert _admin(running, "GET", "/verdicts").json()["accounts"]["adm-1"]["source"] == "override"

    assert _admin(running, "PUT", "/limits/adm-1", json={"requests_per_minute": 1}).status_code == 200
    # The answers already sent in this minute's window count against the lowered limit.
    codes = [httpx.post(running.url + "/v1/chat/completions", json=CHAT, headers=headers).status_code for _ in range(2)]
    assert codes[-1] == 429
    assert _admin(running, "PUT", "/limits", json={"throttle_factor": 3}).status_code == 422
    assert _admin(running, "GET", "/limits").json()["accounts"]["adm-1"]["requests_per_minute"] == 1

    page = _admin(running, "GET", "/events", params={"limit": 10_000}).json()
    mine = [e for e in page["events"] if e["account_id"] == "adm-1"]
    assert [e["status"] for e in mine] == [200, 403, 200, *codes]
    assert page["next"] > 0 and mine[0]["ts"].endswith("+00:00")

    assert _admin(running, "DELETE", f"/keys/{made['key_id']}").json()["revoked"] is True
    assert httpx.post(running.url + "/v1/chat/completions", json=CHAT, headers=headers).status_code == 401
    assert _admin(running, "DELETE", f"/keys/{made['key_id']}").status_code == 404


def test_openapi_spec_is_served(running: Running) -> None:
    spec = httpx.get(running.url + "/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/models", "/admin/keys"):
        assert path in spec["paths"]
    body = spec["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"model", "messages", "max_tokens"}


def test_keys_and_export_commands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    res = runner.invoke(app, ["keys", "create", "cli-acc", "--db", db])
    assert res.exit_code == 0, res.output
    key = res.output.strip().splitlines()[-1]
    kid = key.split("-")[1]
    store = Store(db)
    rec = store.get_key(kid)
    assert key.startswith("dg-") and rec is not None and rec["account_id"] == "cli-acc" and key not in str(rec)
    assert runner.invoke(app, ["keys", "list", "--db", db]).output.count(kid) == 1
    res = runner.invoke(app, ["keys", "revoke", kid, "--db", db])
    assert res.exit_code == 0 and store.get_key(kid)["revoked_us"] is not None  # type: ignore[index]
    res = runner.invoke(app, ["keys", "revoke", kid, "--db", db])
    assert res.exit_code != 0 and "No active key" in str(res.exception)
    store.insert_events([{"event_id": "e1", "ts_us": 1_760_000_000_000_000, "account_id": "cli-acc", "model": "m", "prompt": "p", "status": 200}])
    res = runner.invoke(app, ["export", "--db", db, "--out", str(tmp_path / "log"), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    assert "wrote 1 events, 1 accounts, 0 overrides" in res.output
    assert TrafficLog(tmp_path / "log").read("events").column("prompt").to_pylist() == ["p"]
