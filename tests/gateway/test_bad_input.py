"""Bad input and abuse: each gets the API's own error shape, a clear message, and is logged."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from distillguard.enforce import LimitSet
from distillguard.gateway import issue_key

from .support import Running

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
MSG = {"model": "claude-test", "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]}


def _post(r: Running, path: str, body: Any, key: str | None = None, raw: bytes | None = None, **headers: str) -> httpx.Response:
    hdrs = {"authorization": f"Bearer {key or r.key}", "content-type": "application/json", **headers}
    data = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(r.url + path, content=data, headers=hdrs, timeout=10)


def _openai_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"].endswith(".")
    return dict(err)


def _anthropic_error(resp: httpx.Response, status: int, kind: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    return str(body["error"]["message"])


@pytest.mark.parametrize(
    ("body", "raw", "needle", "param"),
    [
        (None, b"{not json", "not valid JSON", None),
        (None, b"[1, 2]", "must be a JSON object", None),
        ({"messages": [{"role": "user", "content": "x"}]}, None, "'model' is required", "model"),
        ({"model": "gpt-test"}, None, "'messages' is required", "messages"),
        ({"model": "gpt-test", "messages": [{"role": "wizard", "content": "x"}]}, None, "role must be one of", "messages[0].role"),
        ({**CHAT, "max_tokens": "ten"}, None, "must be an integer", "max_tokens"),
        ({**CHAT, "temperature": 9}, None, "between 0.0 and 2.0", "temperature"),
        ({**CHAT, "stream": "yes"}, None, "'stream' must be true or false", "stream"),
        ({"model": 5, "messages": []}, None, "'model' is required", "model"),
    ],
)
def test_malformed_openai_requests(running: Running, body: Any, raw: bytes | None, needle: str, param: str | None) -> None:
    err = _openai_error(_post(running, "/v1/chat/completions", body, raw=raw), 400)
    assert needle in err["message"] and err["type"] == "invalid_request_error" and err["param"] == param


def test_malformed_anthropic_requests(running: Running) -> None:
    msg = _anthropic_error(_post(running, "/v1/messages", {k: v for k, v in MSG.items() if k != "max_tokens"}), 400, "invalid_request_error")
    assert "max_tokens" in msg
    msg = _anthropic_error(_post(running, "/v1/messages", {**MSG, "messages": [{"role": "system", "content": "x"}]}), 400, "invalid_request_error")
    assert "messages.0.role" in msg
    msg = _anthropic_error(_post(running, "/v1/messages", None, raw=b"\xff\xfe"), 400, "invalid_request_error")
    assert "JSON" in msg


def test_body_over_the_size_limit(running: Running) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (running.gateway.config.max_body_bytes + 10)}]}
    err = _openai_error(_post(running, "/v1/chat/completions", big), 413)
    assert "larger than the gateway's limit" in err["message"]
    _anthropic_error(_post(running, "/v1/messages", {**MSG, "system": "y" * 2_000_000}), 413, "request_too_large")


def test_unknown_model_and_bad_keys(running: Running) -> None:
    err = _openai_error(_post(running, "/v1/chat/completions", {**CHAT, "model": "nonexistent"}), 404)
    assert "does not exist" in err["message"] and err["code"] == "model_not_found"
    assert _openai_error(_post(running, "/v1/chat/completions", CHAT, key="garbage"), 401)["code"] == "invalid_api_key"
    resp = httpx.post(running.url + "/v1/chat/completions", json=CHAT)
    assert "No API key" in _openai_error(resp, 401)["message"]
    # a well-formed key with a wrong secret, and a revoked key
    forged = running.key[:-4] + "AAAA"
    assert "invalid or has been revoked" in _openai_error(_post(running, "/v1/chat/completions", CHAT, key=forged), 401)["message"]
    issued = issue_key(running.gateway.store, "acme")
    assert _post(running, "/v1/chat/completions", CHAT, key=issued.key).status_code == 200
    assert running.gateway.store.revoke_key(issued.key_id)
    deadline = time.monotonic() + 5
    while _post(running, "/v1/chat/completions", CHAT, key=issued.key).status_code == 200:
        assert time.monotonic() < deadline, "revoked key still accepted after 5 s"
        time.sleep(0.1)
    _anthropic_error(_post(running, "/v1/messages", MSG, key=issued.key), 401, "authentication_error")


def test_upstream_timeout_5xx_and_broken_streams(running: Running) -> None:
    err = _openai_error(_post(running, "/v1/chat/completions", {**CHAT, "model": "mock-slow"}), 504)
    assert "did not answer within 1 s" in err["message"]
    err = _openai_error(_post(running, "/v1/chat/completions", {**CHAT, "model": "mock-500"}), 502)
    assert "HTTP 500" in err["message"]
    _openai_error(_post(running, "/v1/chat/completions", {**CHAT, "model": "mock-break"}), 502)
    resp = _post(running, "/v1/chat/completions", {**CHAT, "model": "mock-break", "stream": True})
    assert resp.status_code == 200  # headers were sent before the upstream broke
    events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
    assert "error" in events[-1] and "broke the stream" in events[-1]["error"]["message"]
    assert "data: [DONE]" not in resp.text
    statuses = [e["status"] for e in running.events() if e["model"].startswith("mock-")]
    assert sorted(statuses) == [502, 502, 502, 504]
    # the worker is alive and well
    assert _post(running, "/v1/chat/completions", CHAT).status_code == 200


def test_block_throttle_and_rate_limits(running: Running) -> None:
    gw = running.gateway
    blocked = issue_key(gw.store, "blocked-acc").key
    gw.store.add_override("blocked-acc", "block", by="analyst", note="hydra campaign C7")
    gw.refresh()
    err = _openai_error(_post(running, "/v1/chat/completions", CHAT, key=blocked), 403)
    assert "blocked" in err["message"] and "contact the provider" in err["message"] and "hydra campaign C7" in err["message"]
    assert "blocked" in _anthropic_error(_post(running, "/v1/messages", MSG, key=blocked), 403, "permission_error")

    limited = issue_key(gw.store, "small-acc").key
    gw.limiter.account_overrides["small-acc"] = LimitSet(3, 1000, None, None)
    codes = [_post(running, "/v1/chat/completions", CHAT, key=limited).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    resp = _post(running, "/v1/chat/completions", CHAT, key=limited)
    err = _openai_error(resp, 429)
    assert 1 <= int(resp.headers["retry-after"]) <= 60 and "account small-acc" in err["message"]
    resp = _post(running, "/v1/messages", MSG, key=limited)
    _anthropic_error(resp, 429, "rate_limit_error")
    assert "retry-after" in resp.headers

    # degrade: reasoning withheld and output capped for a throttled account
    degraded = issue_key(gw.store, "degraded-acc").key
    gw.store.add_override("degraded-acc", "degrade")
    gw.refresh()
    out = _post(running, "/v1/chat/completions", {**CHAT, "model": "fake-model", "max_tokens": 5000}, key=degraded).json()
    assert "reasoning_content" not in out["choices"][0]["message"]
    normal = _post(running, "/v1/chat/completions", {**CHAT, "model": "fake-model"}).json()
    assert normal["choices"][0]["message"]["reasoning_content"].startswith("Let me think")
    ev = [e for e in running.events() if e["account_id"] == "degraded-acc"]
    assert ev[-1]["max_tokens"] == gw.policy.degrade.max_tokens_cap
    logged = {(e["account_id"], e["status"]) for e in running.events()}
    assert ("blocked-acc", 403) in logged and ("small-acc", 429) in logged
