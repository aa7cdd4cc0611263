"""`POST /v1/embeddings` through the gateway with the official openai SDK: passed through to the
mock upstream, captured as one `embeddings` event in the traffic log's columns, limited, and
refused to a blocked account."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from distillguard.enforce import LimitSet

from .support import Running


def _client(r: Running, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=r.url + "/v1", api_key=key or r.key, max_retries=0, timeout=10)


def _events(r: Running, account: str) -> list[dict[str, object]]:
    return [e for e in r.events() if e["account_id"] == account]


def test_embeddings_pass_through_and_capture(running: Running) -> None:
    key = running.new_key("emb-acc")
    got = _client(running, key).embeddings.create(model="gpt-test", input=["first text to embed", "second"], user="end-3")
    assert [d.index for d in got.data] == [0, 1] and len(got.data[0].embedding) == 3
    ids = _client(running, key).embeddings.create(model="gpt-test", input=[[101, 2023, 102]])
    assert len(ids.data) == 1
    ev = _events(running, "emb-acc")
    assert [(e["endpoint"], e["model"], e["prompt"], e["response"], e["status"], e["end_user"]) for e in ev] == [
        ("embeddings", "gpt-test", "first text to embed\nsecond", None, 200, "end-3"),
        ("embeddings", "gpt-test", "101 2023 102", None, 200, None)]
    assert [(e["prompt_tokens"], e["completion_tokens"], e["turns"]) for e in ev] == [(5, 0, 1), (3, 0, 1)]  # the upstream's usage


def test_embeddings_blocked_limited_and_bad_input(running: Running) -> None:
    key = running.new_key("emb-blocked")
    running.gateway.store.add_override("emb-blocked", "block", "test", "")
    running.gateway.refresh()
    with pytest.raises(openai.PermissionDeniedError, match="blocked"):
        _client(running, key).embeddings.create(model="gpt-test", input="harvest")
    assert [e["status"] for e in _events(running, "emb-blocked")] == [403]

    key = running.new_key("emb-limited")
    running.gateway.limiter.account_overrides["emb-limited"] = LimitSet(requests_per_minute=1)
    _client(running, key).embeddings.create(model="gpt-test", input="one")
    with pytest.raises(openai.RateLimitError):
        _client(running, key).embeddings.create(model="gpt-test", input="two")

    url, auth = running.url + "/v1/embeddings", {"authorization": f"Bearer {running.key}"}
    bad = httpx.post(url, json={"model": "gpt-test", "input": ["ok", {"no": 1}]}, headers=auth, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input.1"
    many = httpx.post(url, json={"model": "gpt-test", "input": ["x"] * 2049}, headers=auth, timeout=10)
    assert many.status_code == 400 and "2049" in many.json()["error"]["message"]
    fake = httpx.post(url, json={"model": "fake-model", "input": "x"}, headers=auth, timeout=10)
    assert fake.status_code == 404 and "embeddings" in fake.json()["error"]["message"]


def test_an_embeddings_event_exports_as_a_valid_traffic_log(running: Running, tmp_path: Path) -> None:
    from distillguard.gateway import export_log
    from distillguard.traffic import TrafficLog, validate_log

    key = running.new_key("emb-export")
    _client(running, key).embeddings.create(model="gpt-test", input="export me")
    running.events()
    export_log(running.gateway.store, tmp_path / "log")
    report = validate_log(tmp_path / "log")
    assert report.ok, report
    rows = [r for r in TrafficLog(tmp_path / "log").read("events").to_pylist() if r["account_id"] == "emb-export"]
    assert [(r["endpoint"], r["prompt"], r["response"], r["completion_tokens"]) for r in rows] == [("embeddings", "export me", None, 0)]
