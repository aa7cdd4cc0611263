"""Batches run by the upstream's own batch API (`batch_via="upstream"`), with the official SDKs
against a real uvicorn server and the mock upstream's OpenAI Batch and Anthropic Message
Batches: forwarded once under the gateway's own ids, degrade and the watermark applied to the
answers returned, capture once per request, cancel passed on, a restart while the upstream
runs the batch, and the fallbacks to the request API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from distillguard.gateway import (
    FakeUpstream,
    create_app,
    issue_key,
    mock_upstream_app,
)
from distillguard.gateway._mock import REASONING
from distillguard.gateway._mock_batches import BATCHES

from .support import (
    LoopThread,
    Running,
    ServerThread,
    batch_jsonl,
    free_port,
    make_gateway,
    submit_batch,
    wait_for,
)

PROMPT = "please explain in simple words how the big old house was built and why people liked the quick answer"
#: seconds the mock upstream takes to run a batch: long enough to cancel or restart meanwhile
UPSTREAM_BATCH_S = 1.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, dict[str, Any]]]:
    """(base URL …/v1, the batches it was sent) of a mock upstream of its own."""
    app = mock_upstream_app(slow_s=3.0, batch_s=UPSTREAM_BATCH_S)
    t = LoopThread(app, free_port())
    t.start()
    yield f"http://127.0.0.1:{t.port}/v1", app[BATCHES]
    t.stop()


@pytest.fixture(scope="module")
def wm_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A watermark key that changes the echoed PROMPT for account acme (a random key may keep it)."""
    from distillguard.watermark import WatermarkKey

    key = next(k for k in (WatermarkKey.generate() for _ in range(50)) if k.text_watermarker("acme").apply(PROMPT) != PROMPT)
    return key, key.save(tmp_path_factory.mktemp("wm") / "wm.key")


def _start(db: str, url: str, key_file: Path, prefix: str = "dg_") -> tuple[Any, ServerThread]:
    gw = make_gateway(db, url, prefix=prefix, batch_via="upstream", batch_poll=0.05, batch_rate=200.0, watermark_key_file=key_file)
    gw.router.add("slow-*", FakeUpstream(delay=0.05))
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    return gw, srv


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, upstream: tuple[str, dict[str, Any]], wm_key: tuple[Any, Path]) -> Iterator[Running]:
    gw, srv = _start(f"sqlite:///{tmp_path_factory.mktemp('upbatch') / 'gw.db'}", upstream[0], wm_key[1])
    issued = issue_key(gw.store, "acme")
    yield Running(f"http://127.0.0.1:{srv.server.config.port}", gw, issued.key, issued.key_id, "acme")
    srv.stop()


def _openai(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10)


def _sent(batches: dict[str, Any], prompt_prefix: str) -> list[dict[str, Any]]:
    """The upstream batches whose requests' prompts start with `prompt_prefix`."""
    def first(b: dict[str, Any]) -> str:
        msgs = b["requests"][0][2]["messages"]
        return str(msgs[-1]["content"])
    return [b for b in list(batches.values()) if first(b).startswith(prompt_prefix)]


def test_openai_batch_runs_upstream_once_watermarked_and_captured_once(up: Running, upstream: tuple[str, dict[str, Any]],
                                                                        wm_key: tuple[Any, Path]) -> None:
    c = _openai(up.url, up.key)
    prompts = [f"{PROMPT} {i}" for i in range(3)]
    b = submit_batch(c, batch_jsonl("mock-echo", prompts, "client id {}"))
    done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")
    assert done.request_counts.completed == 3  # type: ignore[union-attr]
    sent = _sent(upstream[1], f"{PROMPT} ")
    assert len(sent) == 1 and [r[0] for r in sent[0]["requests"]] == ["dg0", "dg1", "dg2"]  # forwarded once, the gateway's ids
    out = {o["custom_id"]: o for o in map(json.loads, c.files.content(done.output_file_id).text.splitlines())}  # type: ignore[arg-type]
    marker = wm_key[0].text_watermarker("acme")
    for i, p in enumerate(prompts):
        assert out[f"client id {i}"]["response"]["body"]["choices"][0]["message"]["content"] == marker.apply(p)
    ev = [e for e in up.events() if e["batch_id"] == b.id]
    assert sorted(e["prompt"] for e in ev) == sorted(prompts)  # each request exactly once
    assert {e["status"] for e in ev} == {200} and all(e["response"] == marker.apply(e["prompt"]) for e in ev)
    assert all(e["prompt_tokens"] == 9 and e["completion_tokens"] == 12 for e in ev)  # the upstream's usage


def test_anthropic_batch_runs_upstream(up: Running, upstream: tuple[str, dict[str, Any]]) -> None:
    c = anthropic.Anthropic(base_url=up.url, api_key=up.key, max_retries=0, timeout=10)
    reqs: Any = [{"custom_id": f"m{i}", "params": {"model": "claude-test", "max_tokens": 64,
                                                    "messages": [{"role": "user", "content": f"upstream claude {i}"}]}} for i in range(2)]
    b = c.messages.batches.create(requests=reqs)
    wait_for(lambda: c.messages.batches.retrieve(b.id), lambda x: x.processing_status == "ended")
    results = {r.custom_id: r.result for r in c.messages.batches.results(b.id)}
    assert sorted(results) == ["m0", "m1"] and all(r.type == "succeeded" for r in results.values())
    assert len(_sent(upstream[1], "upstream claude")) == 1
    ev = [e for e in up.events() if e["batch_id"] == b.id]
    assert len(ev) == 2 and {(e["status"], e["endpoint"]) for e in ev} == {(200, "messages")}


def test_degraded_account_is_capped_upstream_and_loses_reasoning(up: Running, upstream: tuple[str, dict[str, Any]]) -> None:
    key = up.new_key("degraded-up")
    up.gateway.store.add_override("degraded-up", "degrade", "test", "")
    up.gateway.refresh()
    c = _openai(up.url, key)
    b = submit_batch(c, batch_jsonl("mock-reason", ["degraded upstream"], max_tokens=5000))
    done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")
    sent = _sent(upstream[1], "degraded upstream")
    cap = up.gateway.policy.degrade.max_tokens_cap
    assert len(sent) == 1 and sent[0]["requests"][0][2]["max_tokens"] == cap < 5000
    out = c.files.content(done.output_file_id).text  # type: ignore[arg-type]
    assert REASONING not in out and "reasoning_content" not in out


def test_cancel_is_passed_to_the_upstream(up: Running, upstream: tuple[str, dict[str, Any]]) -> None:
    c = _openai(up.url, up.key)
    b = submit_batch(c, batch_jsonl("gpt-test", [f"cancel upstream {i}" for i in range(4)]))
    wait_for(lambda: up.gateway.ledger.upstream_batch(b.id), lambda x: x is not None)
    c.batches.cancel(b.id)
    done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "cancelled")
    assert done.request_counts.failed == 4  # type: ignore[union-attr]
    assert _sent(upstream[1], "cancel upstream")[0]["cancel"]
    errors = [json.loads(x) for x in c.files.content(done.error_file_id).text.splitlines()]  # type: ignore[arg-type]
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert sorted(e["status"] for e in up.events() if e["batch_id"] == b.id) == [499] * 4


def test_a_batch_for_several_upstreams_runs_through_the_request_api(up: Running, upstream: tuple[str, dict[str, Any]]) -> None:
    c = anthropic.Anthropic(base_url=up.url, api_key=up.key, max_retries=0, timeout=10)
    reqs: Any = [{"custom_id": "a", "params": {"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "mixed one"}]}},
                 {"custom_id": "b", "params": {"model": "slow-model", "max_tokens": 8, "messages": [{"role": "user", "content": "mixed two"}]}}]
    b = c.messages.batches.create(requests=reqs)
    wait_for(lambda: c.messages.batches.retrieve(b.id), lambda x: x.processing_status == "ended")
    assert {r.result.type for r in c.messages.batches.results(b.id)} == {"succeeded"}
    assert not _sent(upstream[1], "mixed")


def test_restart_while_the_upstream_runs_the_batch(store_db: tuple[str, str], upstream: tuple[str, dict[str, Any]], wm_key: tuple[Any, Path]) -> None:
    db, prefix = store_db
    tag = f"restart upstream {prefix}"
    gw, srv = _start(db, upstream[0], wm_key[1], prefix)
    key = issue_key(gw.store, "acme").key
    c = _openai(f"http://127.0.0.1:{srv.server.config.port}", key)
    b = submit_batch(c, batch_jsonl("gpt-test", [f"{tag} {i}" for i in range(20)]))
    wait_for(lambda: gw.ledger.upstream_batch(b.id), lambda x: x is not None)
    srv.stop()  # the upstream is still running it
    assert gw.ledger.get(b.id)["status"] == "in_progress"  # type: ignore[index]
    gw2, srv2 = _start(db, upstream[0], wm_key[1], prefix)
    try:
        c = _openai(f"http://127.0.0.1:{srv2.server.config.port}", key)
        done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")
        assert done.request_counts.completed == 20  # type: ignore[union-attr]
    finally:
        srv2.stop()
    assert len(_sent(upstream[1], tag)) == 1  # not forwarded again
    ev = [e for rows in gw2.store.iter_events() for e in rows]
    assert len(ev) == 20 and {e["status"] for e in ev} == {200} and {e["batch_id"] for e in ev} == {b.id}


def test_answers_of_an_account_blocked_while_the_upstream_ran_are_withheld(up: Running) -> None:
    key = up.new_key("blocked-later")
    c = _openai(up.url, key)
    b = submit_batch(c, batch_jsonl("gpt-test", ["blocked later 1", "blocked later 2"]))
    wait_for(lambda: up.gateway.ledger.upstream_batch(b.id), lambda x: x is not None)
    up.gateway.store.add_override("blocked-later", "block", "test", "")
    up.gateway.refresh()
    done = wait_for(lambda: up.gateway.ledger.get(b.id), lambda x: x["status"] == "completed")
    assert up.gateway.ledger.counts(done["batch_id"])["errored"] == 2
    rows = up.gateway.ledger.results(b.id, ("errored",))
    assert {r["status_code"] for r in rows} == {403} and all("blocked" in r["result"] for r in rows)
    ev = [e for e in up.events() if e["batch_id"] == b.id]
    assert sorted(e["status"] for e in ev) == [403, 403] and {e["response"] for e in ev} == {None}


def test_an_upstream_without_a_batch_api_runs_the_batch_through_its_request_api(tmp_path: Path, wm_key: tuple[Any, Path]) -> None:
    from aiohttp import web

    @web.middleware
    async def no_batch_api(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(("/v1/files", "/v1/batches")):  # as vLLM: chat only
            raise web.HTTPNotFound()
        return await handler(request)  # type: ignore[no-any-return]

    app = mock_upstream_app(batch_s=0.0)
    app.middlewares.append(no_batch_api)
    t = LoopThread(app, free_port())
    t.start()
    gw, srv = _start(f"sqlite:///{tmp_path / 'nobatch.db'}", f"http://127.0.0.1:{t.port}/v1", wm_key[1])
    try:
        c = _openai(f"http://127.0.0.1:{srv.server.config.port}", issue_key(gw.store, "acme").key)
        for _ in range(2):  # the second batch goes straight to the request API
            b = submit_batch(c, batch_jsonl("gpt-test", ["no batch api 1", "no batch api 2"]))
            done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")  # noqa: B023
            assert done.request_counts.completed == 2  # type: ignore[union-attr]
        assert gw.ledger.upstream_batch(b.id) is None and not app[BATCHES]
    finally:
        srv.stop()
        t.stop()
