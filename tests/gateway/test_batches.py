"""OpenAI Files + Batch and Anthropic Message Batches through the gateway, with the official
SDKs against a real uvicorn server and the mock upstream: checks at submission, capture once per
request with the batch id, degrade, cancel midway, and a restart while a batch runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from distillguard.enforce import LimitSet
from distillguard.gateway import BatchStore, FakeUpstream, Store, create_app, issue_key
from distillguard.gateway._mock import ANSWER, REASONING
from distillguard.gateway._protocol import ApiError

from .support import (
    Running,
    ServerThread,
    batch_jsonl,
    free_port,
    make_gateway,
    serving_account,
    submit_batch,
    wait_for,
)

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def bat(tmp_path_factory: pytest.TempPathFactory, mock_upstream: str) -> Iterator[Running]:
    """A gateway whose batches run fast, with a slow fake model (`slow-*`, 0.1 s an answer)."""
    db = f"sqlite:///{tmp_path_factory.mktemp('batch') / 'gw.db'}"
    gw = make_gateway(db, mock_upstream, batch_rate=200.0, batch_concurrency=2)
    gw.router.add("slow-*", FakeUpstream(delay=0.1))
    with serving_account(gw) as running:
        yield running


def _openai(r: Running, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=r.url + "/v1", api_key=key or r.key, max_retries=0, timeout=10)


def _anthropic(r: Running, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=r.url, api_key=key or r.key, max_retries=0, timeout=10)


def _override(r: Running, account: str, action: str) -> None:
    r.gateway.store.add_override(account, action, "test", "")
    r.gateway.refresh()


def _batch_events(r: Running, batch_id: str) -> list[dict[str, Any]]:
    return [e for e in r.events() if e["batch_id"] == batch_id]


def test_openai_batch_end_to_end_captured_once(bat: Running) -> None:
    c = _openai(bat)
    seen: list[Any] = []
    bat.gateway.capture.listeners.append(seen.extend)  # what the online detector is fed
    try:
        prompts = ["batch one", "batch two", "batch three"]
        lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "gpt-test", "messages": [{"role": "user", "content": p}], "user": "end-7",
                           **({"tools": [WEATHER]} if i == 2 else {})}} for i, p in enumerate(prompts)]
        b = submit_batch(c, "\n".join(json.dumps(x) for x in lines).encode())
    finally:
        bat.gateway.capture.listeners.remove(seen.extend)
    assert b.status == "in_progress" and b.request_counts and b.request_counts.total == 3
    # fed to detection at submission: one row per request, queued, with the batch id
    from distillguard.gateway._store import EVENT_FIELDS

    fed = [dict(zip(EVENT_FIELDS, row, strict=True)) for row in seen]
    assert sorted(f["prompt"] for f in fed) == sorted(prompts)
    assert {(f["batch_id"], f["status"], f["end_user"]) for f in fed} == {(b.id, 202, "end-7")}
    done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")
    assert done.request_counts.completed == 3 and done.output_file_id and done.error_file_id is None  # type: ignore[union-attr]
    out = [json.loads(line) for line in c.files.content(done.output_file_id).text.splitlines()]  # type: ignore[arg-type]
    by_id = {o["custom_id"]: o for o in out}
    assert sorted(by_id) == ["r0", "r1", "r2"]
    assert by_id["r0"]["response"]["status_code"] == 200
    assert by_id["r0"]["response"]["body"]["choices"][0]["message"]["content"] == ANSWER
    assert by_id["r2"]["response"]["body"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert b.id in [x.id for x in c.batches.list()]
    ev = _batch_events(bat, b.id)
    assert sorted(e["prompt"] for e in ev) == sorted(prompts)  # each request exactly once
    assert {(e["status"], e["account_id"], e["endpoint"]) for e in ev} == {(200, "acme", "chat.completions")}
    assert {e["ts_us"] for e in ev} == {b.created_at * 1_000_000 + ev[0]["ts_us"] % 1_000_000}  # the submission time
    assert next(e for e in ev if e["prompt"] == "batch one")["response"] == ANSWER
    assert next(e for e in ev if e["prompt"] == "batch three")["tools"] == 1


def test_anthropic_message_batch_end_to_end(bat: Running) -> None:
    c = _anthropic(bat)
    reqs: Any = [{"custom_id": f"m{i}", "params": {"model": "claude-test", "max_tokens": 64, "system": "terse",
                                                    "messages": [{"role": "user", "content": f"claude batch {i}"}]}} for i in range(3)]
    reqs.append({"custom_id": "cross", "params": {"model": "fake-model", "max_tokens": 64, "messages": [{"role": "user", "content": "translated"}]}})
    b = c.messages.batches.create(requests=reqs)
    assert b.processing_status == "in_progress" and b.request_counts.processing == 4
    wait_for(lambda: c.messages.batches.retrieve(b.id), lambda x: x.processing_status == "ended")
    results = {r.custom_id: r.result for r in c.messages.batches.results(b.id)}
    assert sorted(results) == ["cross", "m0", "m1", "m2"]
    first = results["m0"]
    assert first.type == "succeeded" and first.message.content[0].text == ANSWER  # type: ignore[union-attr]
    cross = results["cross"]
    assert cross.type == "succeeded" and cross.message.content[-1].text == "You asked: translated"  # type: ignore[union-attr]
    ev = _batch_events(bat, b.id)
    assert len(ev) == 4 and {e["endpoint"] for e in ev} == {"messages"}
    assert {e["system"] for e in ev if e["model"] == "claude-test"} == {"terse"}
    assert all(e["status"] == 200 and e["completion_tokens"] for e in ev)


def test_blocked_account_batch_is_refused_before_anything_runs(bat: Running) -> None:
    key = bat.new_key("blocked-acc")
    _override(bat, "blocked-acc", "block")
    with pytest.raises(openai.PermissionDeniedError, match="blocked"):
        submit_batch(_openai(bat, key), batch_jsonl("gpt-test", ["harvest 1", "harvest 2"]))
    with pytest.raises(anthropic.PermissionDeniedError):
        _anthropic(bat, key).messages.batches.create(requests=[{"custom_id": "x", "params": {
            "model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "harvest 3"}]}}])
    assert not [e for e in bat.events() if e["account_id"] == "blocked-acc"]
    assert not _openai(bat, key).batches.list().data


def test_throttled_budget_refuses_a_batch_larger_than_what_is_left(bat: Running) -> None:
    key = bat.new_key("budget-acc")
    bat.gateway.limiter.account_overrides["budget-acc"] = LimitSet(requests_per_day=5)
    c = _openai(bat, key)
    with pytest.raises(openai.RateLimitError, match="8 requests, more than the 5 left"):
        submit_batch(c, batch_jsonl("gpt-test", [f"p{i}" for i in range(8)]))
    b = submit_batch(c, batch_jsonl("gpt-test", ["a", "b", "c"]))
    with pytest.raises(openai.RateLimitError, match="3 requests, more than the 2 left"):
        submit_batch(c, batch_jsonl("gpt-test", ["d", "e", "f"]))
    wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")
    assert len([e for e in bat.events() if e["account_id"] == "budget-acc"]) == 3


def test_invalid_lines_and_other_accounts(bat: Running) -> None:
    c = _openai(bat)
    bad = batch_jsonl("gpt-test", ["ok"]) + b"\n{not json}\n" + json.dumps({"custom_id": "s", "url": "/v1/chat/completions", "body": {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "x"}]}}).encode()
    with pytest.raises(openai.BadRequestError, match=r"line 2: not valid JSON.*line 3 \(s\): 'stream' cannot be true"):
        submit_batch(c, bad)
    b = submit_batch(c, batch_jsonl("gpt-test", ["mine"]))
    other = _openai(bat, bat.new_key("someone-else"))
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(b.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(b.input_file_id)


def test_degraded_account_batch_answers_lose_reasoning(bat: Running) -> None:
    key = bat.new_key("degraded-acc")
    _override(bat, "degraded-acc", "degrade")
    c = _openai(bat, key)
    b = submit_batch(c, batch_jsonl("mock-reason", ["think hard"], max_tokens=5000))
    done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")
    out = json.loads(c.files.content(done.output_file_id).text)  # type: ignore[arg-type]
    msg = out["response"]["body"]["choices"][0]["message"]
    assert "reasoning_content" not in msg and REASONING not in json.dumps(out)
    ev = _batch_events(bat, b.id)
    assert len(ev) == 1 and ev[0]["max_tokens"] == 5000  # captured as asked; capped upstream


def test_batches_take_turns(bat: Running) -> None:
    big = _openai(bat)
    small = _openai(bat, bat.new_key("small-acc"))
    b1 = submit_batch(big, batch_jsonl("slow-model", [f"big {i}" for i in range(40)]))
    b2 = submit_batch(small, batch_jsonl("slow-model", ["small 1", "small 2"]))
    wait_for(lambda: small.batches.retrieve(b2.id), lambda x: x.status == "completed")
    assert big.batches.retrieve(b1.id).status == "in_progress"  # the big one did not hold it back
    wait_for(lambda: big.batches.retrieve(b1.id), lambda x: x.status == "completed")


def test_cancel_midway(bat: Running) -> None:
    c = _openai(bat)
    b = submit_batch(c, batch_jsonl("slow-model", [f"slow {i}" for i in range(40)]))
    wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.request_counts.completed >= 2)
    assert c.batches.cancel(b.id).status in ("cancelling", "cancelled")
    done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "cancelled")
    n = done.request_counts
    assert n is not None and 2 <= n.completed < 40 and n.completed + n.failed == 40
    errors = [json.loads(x) for x in c.files.content(done.error_file_id).text.splitlines()]  # type: ignore[arg-type]
    assert len(errors) == n.failed and {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    ev = _batch_events(bat, b.id)
    assert len(ev) == 40 and len({e["prompt"] for e in ev}) == 40
    assert sorted(e["status"] for e in ev) == [200] * n.completed + [499] * n.failed


def test_anthropic_cancel_midway(bat: Running) -> None:
    c = _anthropic(bat)
    reqs: Any = [{"custom_id": f"s{i}", "params": {"model": "slow-model", "max_tokens": 16, "messages": [{"role": "user", "content": f"a-slow {i}"}]}}
                 for i in range(40)]
    b = c.messages.batches.create(requests=reqs)
    wait_for(lambda: bat.gateway.ledger.counts(b.id)["succeeded"], lambda n: n >= 2)
    assert c.messages.batches.cancel(b.id).processing_status in ("canceling", "ended")
    done = wait_for(lambda: c.messages.batches.retrieve(b.id), lambda x: x.processing_status == "ended")
    n = done.request_counts
    assert n.succeeded >= 2 and n.canceled >= 1 and n.succeeded + n.canceled == 40 and n.processing == 0
    kinds = [r.result.type for r in c.messages.batches.results(b.id)]
    assert kinds.count("succeeded") == n.succeeded and kinds.count("canceled") == n.canceled
    assert len(_batch_events(bat, b.id)) == 40


def test_restart_while_a_batch_runs(store_db: tuple[str, str], mock_upstream: str) -> None:
    db, prefix = store_db

    def start() -> tuple[Any, ServerThread]:
        gw = make_gateway(db, mock_upstream, prefix=prefix, batch_rate=40.0, batch_concurrency=2)
        gw.router.add("slow-*", FakeUpstream(delay=0.05))
        srv = ServerThread(create_app(gateway=gw), free_port())
        srv.start()
        return gw, srv

    gw, srv = start()
    key = issue_key(gw.store, "acme").key
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.server.config.port}/v1", api_key=key, max_retries=0, timeout=10)
    b = submit_batch(client, batch_jsonl("slow-model", [f"restart {i}" for i in range(30)]))
    wait_for(lambda: client.batches.retrieve(b.id), lambda x: x.request_counts.completed >= 3)
    srv.stop()  # mid-batch
    assert 3 <= gw.store.count_events() == 30
    stopped = gw.ledger.get(b.id)
    assert stopped is not None and stopped["status"] == "in_progress" and stopped["lease_owner"] is None  # released at shutdown
    gw2, srv2 = start()
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{srv2.server.config.port}/v1", api_key=key, max_retries=0, timeout=10)
        done = wait_for(lambda: client.batches.retrieve(b.id), lambda x: x.status == "completed")
        assert done.request_counts.completed == 30  # type: ignore[union-attr]
        out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]  # type: ignore[arg-type]
        assert sorted(o["custom_id"] for o in out) == sorted(f"r{i}" for i in range(30))
    finally:
        srv2.stop()
    ev = [e for rows in gw2.store.iter_events() for e in rows]
    assert len(ev) == 30 and {e["batch_id"] for e in ev} == {b.id} and {e["status"] for e in ev} == {200}
    assert sorted(e["prompt"] for e in ev) == sorted(f"restart {i}" for i in range(30))


def test_runner_holds_a_new_batch_for_one_detection_round(tmp_path: Path) -> None:
    """With online detection on, a batch is not taken until its requests had a detection round;
    a lease keeps a batch with one runner until it runs out."""
    store = BatchStore(Store(f"sqlite:///{tmp_path / 'hold.db'}"))
    now = time.time_ns() // 1000
    row = {c.name: None for c in store.batches.c} | {"batch_id": "batch_1", "api": "openai", "account_id": "a",
                                                     "endpoint": "chat.completions", "status": "in_progress", "total": 0, "created_us": now}
    store.create(row, [], [])
    assert store.claim("r1", 60_000_000, hold_us=5_000_000) is None  # submitted just now
    assert store.claim("r1", 60_000_000, hold_us=0)["batch_id"] == "batch_1"  # type: ignore[index]
    assert store.claim("r2", 60_000_000) is None  # r1 holds the lease
    assert store.renew("batch_1", "r1", 0) and not store.renew("batch_1", "r2", 0)
    time.sleep(0.01)
    assert store.claim("r2", 60_000_000)["batch_id"] == "batch_1"  # type: ignore[index]  # r1's lease ran out


def test_hostile_text_in_a_batch_is_captured_bounded(store_db: tuple[str, str], mock_upstream: str) -> None:
    """A NUL (which PostgreSQL refuses in text) in a batch's prompt and in its echoed answer:
    the batch is accepted, runs, and its event holds the text as capture bounds it."""
    db, prefix = store_db
    gw = make_gateway(db, mock_upstream, prefix=prefix, batch_rate=200.0)
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.server.config.port}/v1", api_key=issue_key(gw.store, "acme").key, max_retries=0, timeout=10)
        b = submit_batch(c, batch_jsonl("mock-echo", ["nul\x00here"]))
        done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")
        out = json.loads(c.files.content(done.output_file_id).text)  # type: ignore[arg-type]
        assert out["response"]["body"]["choices"][0]["message"]["content"] == "nul\x00here"  # served as the upstream said
    finally:
        srv.stop()
    ev = [e for rows in gw.store.iter_events() for e in rows]
    assert [(e["prompt"], e["response"], e["status"]) for e in ev] == [("nul\ufffdhere", "nul\ufffdhere", 200)]


def test_a_slow_batch_body_gets_408(tmp_path: Path, mock_upstream: str) -> None:
    import socket

    gw = make_gateway(f"sqlite:///{tmp_path / 'slow.db'}", mock_upstream, body_timeout=0.5)
    key = issue_key(gw.store, "acme").key
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        for path, ctype, start in (("/v1/messages/batches", "application/json", '{"requests": ['),
                                   ("/v1/files", "multipart/form-data; boundary=x", '--x\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbat')):
            with socket.create_connection(("127.0.0.1", srv.server.config.port), timeout=10) as s:
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Type: {ctype}\r\n"
                          f"Content-Length: 1000\r\n\r\n{start}".encode())
                assert s.recv(4096).split(b"\r\n", 1)[0] == b"HTTP/1.1 408 Request Timeout", path
    finally:
        srv.stop()


def test_hostile_batch_files_are_bounded_with_the_line_named(bat: Running) -> None:
    """A batch file is the client's: millions of lines are refused at the first line past the
    cap, a line larger than a live request may be is refused by number, and every problem of
    the form is reported at once; nothing of a refused batch is stored or captured."""
    from distillguard.gateway._batchroutes import _anthropic_items, _openai_lines

    million = b"\n".join(b'{"custom_id":"r%d","url":"/v1/chat/completions","body":{}}' % i for i in range(1_000_000))
    with pytest.raises(ApiError, match=r"more than 50000 requests \(line 50001 is request 50001\)"):
        _openai_lines(million, "/v1/chat/completions", 50_000, 1_000_000)
    with pytest.raises(ApiError, match=r"requests\.3 is request 4"):
        _anthropic_items([{}] * 4, 3, 1000)
    items, problems = _anthropic_items([{"custom_id": "a", "params": {"p": "x" * 2000}}, {"custom_id": "b c", "params": {}},
                                        {"custom_id": "ok", "params": {}}, "junk"], 10, 1000)
    assert [i[0] for i in items] == ["ok"]
    assert [p.split(" ", 1)[0] for p in problems] == ["requests.0.params", "requests.1.custom_id", "requests.3"]

    c = _openai(bat)
    before = len(bat.events())
    big = json.dumps({"custom_id": "big", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "gpt-test", "messages": [{"role": "user", "content": "y" * 1_100_000}]}}).encode()
    data = batch_jsonl("gpt-test", ["fine"]) + b"\n" + big + b"\n{broken\n"
    with pytest.raises(openai.BadRequestError, match=r"line 2: 1100\d\d\d bytes, more than the gateway's limit of 1000000 bytes a request.*line 3: not valid JSON"):
        submit_batch(c, data)
    with pytest.raises(anthropic.BadRequestError, match=r"requests\.0\.params is \d+ bytes.*requests\.1\.custom_id"):
        _anthropic(bat).messages.batches.create(requests=[
            {"custom_id": "huge", "params": {"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "z" * 1_100_000}]}},
            {"custom_id": "bad id!", "params": {"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "z"}]}}])
    assert len(bat.events()) == before


def test_delete_an_uploaded_file(bat: Running) -> None:
    c = _openai(bat)
    f = c.files.create(file=("batch.jsonl", batch_jsonl("gpt-test", ["keep me"])), purpose="batch")
    b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        _openai(bat, bat.new_key("not-the-owner")).files.delete(f.id)
    assert c.files.delete(f.id).deleted
    assert f.id not in [x.id for x in c.files.list()]
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve(f.id)
    done = wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")  # its requests were copied
    assert done.request_counts.completed == 1  # type: ignore[union-attr]


def test_a_batch_counts_against_daily_request_budgets_and_its_tokens_against_every_token_budget(bat: Running) -> None:
    """Throttled at a tenth (2 requests a minute, 10 a day): a batch is counted whole against
    the day's request budget at submission and refused past it with both counts; per-minute
    request budgets (burst control for live traffic) do not count a batch, which runs at the
    runner's own rate, so a 6-request batch is accepted and a live request still passes; the
    batch's answers are charged to the minute's and day's token budgets as they come back."""
    key = bat.new_key("throttled-acc")
    bat.gateway.limiter.account_overrides["throttled-acc"] = LimitSet(20, 100, 1_000_000, 10_000_000)
    _override(bat, "throttled-acc", "throttle")
    c = _openai(bat, key)
    with pytest.raises(openai.RateLimitError, match=r"11 requests, more than the 10 left of account throttled-acc's limit of 10 requests per day \(throttled\)"):
        submit_batch(c, batch_jsonl("gpt-test", [f"t{i}" for i in range(11)]))
    b = submit_batch(c, batch_jsonl("gpt-test", [f"t{i}" for i in range(6)]))  # more than the minute's 2
    wait_for(lambda: c.batches.retrieve(b.id), lambda x: x.status == "completed")
    assert c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "live"}]).choices
    import asyncio

    used = asyncio.run(bat.gateway.limiter.tokens_used("account", "throttled-acc"))
    assert used["tokens_per_minute"] >= 6 * 21 and used["tokens_per_day"] >= 6 * 21  # the mock's usage: 9 + 12 an answer
    with pytest.raises(openai.RateLimitError, match="4 requests, more than the 3 left"):
        submit_batch(c, batch_jsonl("gpt-test", [f"u{i}" for i in range(4)]))
