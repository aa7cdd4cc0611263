"""The OpenAI Responses API through the gateway with the official openai SDK: pass-through to an
upstream that speaks it (JSON, typed stream events, tools, GET by id, previous_response_id) and
translation to chat for one that does not; capture, degrade and the post-hoc watermark."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from distillguard.enforce import LimitsConfig, LimitSet
from distillguard.gateway import (
    FakeUpstream,
    Gateway,
    GatewayConfig,
    OpenAIUpstream,
    Router,
    create_app,
    issue_key,
)
from distillguard.gateway._mock import ANSWER, REASONING, TOOL_ARGS

from .support import ADMIN, Running, ServerThread, free_port, serving_account

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
PROMPT = "please explain in simple words how the big old house was built and why people liked the quick answer"


def _gateway(db: str, mock_url: str, **kw: Any) -> Gateway:
    lim = LimitSet(100_000, 1_000_000, None, None)
    cfg = GatewayConfig(db=db, admin_token=ADMIN, capture_interval=0.02, refresh_interval=0.2, upstream_timeout=2.0,
                        detect=False, limits=LimitsConfig(key=lim, account=lim), batch_rate=200.0, **kw)
    router = Router()
    router.add("resp-*", OpenAIUpstream(mock_url, timeout=2.0, responses=True))  # speaks Responses
    router.add("mock-*", OpenAIUpstream(mock_url, timeout=2.0, responses=True))
    router.add("gpt-*", OpenAIUpstream(mock_url, timeout=2.0))  # chat only: translated
    router.add("fake-*", FakeUpstream(reasoning=True))
    return Gateway(cfg, router=router)


@pytest.fixture(scope="module")
def resp(tmp_path_factory: pytest.TempPathFactory, mock_upstream: str) -> Iterator[Running]:
    with serving_account(_gateway(f"sqlite:///{tmp_path_factory.mktemp('resp') / 'gw.db'}",
                                  mock_upstream)) as running:
        yield running


def _client(r: Running, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=r.url + "/v1", api_key=key or r.key, max_retries=0, timeout=10)


def _event(r: Running, prompt: str) -> dict[str, Any]:
    got = [e for e in r.events() if e["prompt"] == prompt]
    assert len(got) == 1, got
    return got[0]


def _finished(c: openai.OpenAI, batch_id: str) -> Any:
    deadline = time.monotonic() + 20
    while (b := c.batches.retrieve(batch_id)).status != "completed":
        assert time.monotonic() < deadline, b
        time.sleep(0.05)
    return b


def _degraded_key(r: Running, account: str) -> str:
    key = r.new_key(account)
    r.gateway.store.add_override(account, "degrade", "test", "")
    r.gateway.refresh()
    return key


@pytest.mark.parametrize("model", ["resp-test", "gpt-test"])  # passed through, translated
def test_json_and_capture(resp: Running, model: str) -> None:
    prompt = f"What is 6*7? ({model})"
    out = _client(resp).responses.create(model=model, input=[{"role": "user", "content": prompt}], instructions="Be brief.",
                                         max_output_tokens=50, temperature=0.2, reasoning={"effort": "low"})
    assert out.output_text == ANSWER and out.status == "completed"
    assert out.usage is not None and (out.usage.input_tokens, out.usage.output_tokens) == (9, 12)
    e = _event(resp, prompt)
    assert (e["endpoint"], e["model"], e["system"], e["max_tokens"], e["status"]) == ("responses", model, "Be brief.", 50, 200)
    assert (e["response"], e["prompt_tokens"], e["completion_tokens"], e["turns"]) == (ANSWER, 9, 12, 1)


@pytest.mark.parametrize("model", ["resp-test", "gpt-test", "fake-model"])
def test_stream_typed_events(resp: Running, model: str) -> None:
    prompt = f"stream it ({model})"
    with _client(resp).responses.stream(model=model, input=prompt) as stream:
        kinds, deltas = [], []
        for ev in stream:
            kinds.append(ev.type)
            if ev.type == "response.output_text.delta":
                deltas.append(ev.delta)
        final = stream.get_final_response()
    expected = f"You asked: {prompt}" if model == "fake-model" else ANSWER
    assert "".join(deltas) == final.output_text == expected
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    if model == "fake-model":  # the fake model reasons: a reasoning item first
        assert final.output[0].type == "reasoning"
    e = _event(resp, prompt)
    assert (e["status"], e["response"], e["endpoint"]) == (200, expected, "responses")


def test_tools_get_by_id_and_previous_response(resp: Running) -> None:
    c = _client(resp)
    first = c.responses.create(model="resp-test", input="Weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == TOOL_ARGS  # type: ignore[union-attr]
    # the tool's answer goes back with previous_response_id: the upstream keeps the context
    again = c.responses.create(model="resp-test", previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
                               input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C and sunny"}])  # type: ignore[union-attr]
    assert again.output_text == "The tool said: 18 C and sunny"
    assert c.responses.retrieve(first.id).output[0].type == "function_call"
    # streamed tool call: arguments arrive as deltas
    with c.responses.stream(model="resp-test", input="Stream a tool call", tools=[WEATHER]) as s:  # type: ignore[list-item]
        args = "".join(ev.delta for ev in s if ev.type == "response.function_call_arguments.delta")
        streamed = s.get_final_response()
    assert json.loads(args) == TOOL_ARGS
    assert c.responses.retrieve(streamed.id).id == streamed.id  # owned as soon as the stream began
    assert _event(resp, "Weather in Paris?")["tools"] == 1
    assert _event(resp, "18 C and sunny")["status"] == 200  # the final input is the tool's output
    # another account can neither read it nor continue from it
    other = _client(resp, resp.new_key("other-acc"))
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError, match="No response"):
        other.responses.create(model="resp-test", previous_response_id=first.id, input="and now?")
    # a translated upstream keeps no state
    with pytest.raises(openai.NotFoundError, match="keeps no responses"):
        c.responses.create(model="gpt-test", previous_response_id=first.id, input="and now?")


def test_degrade_withholds_reasoning_items(resp: Running) -> None:
    c = _client(resp, _degraded_key(resp, "degraded-resp"))
    plain = _client(resp).responses.create(model="resp-reason", input="reason for me")
    assert plain.output[0].type == "reasoning"  # as served to an account in good standing
    out = c.responses.create(model="resp-reason", input="reason, degraded", max_output_tokens=5000)
    assert [o.type for o in out.output] == ["message"] and out.output_text == ANSWER
    assert REASONING not in out.model_dump_json()
    assert REASONING not in c.responses.retrieve(out.id).model_dump_json()
    with c.responses.stream(model="resp-reason", input="reason, degraded, streamed") as s:
        events = list(s)
        final = s.get_final_response()
    assert not [e for e in events if "reasoning" in e.type] and REASONING not in final.model_dump_json()
    assert final.output_text == ANSWER and final.output[0].type == "message"
    assert _event(resp, "reason, degraded")["max_tokens"] == resp.gateway.policy.degrade.max_tokens_cap
    fake = c.responses.create(model="fake-model", input="translated, degraded")  # translated path too
    assert [o.type for o in fake.output] == ["message"]


def test_responses_in_a_batch(resp: Running) -> None:
    c = _client(resp)
    lines = [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/responses", "body": {"model": m, "input": f"batched {m}"}}
             for i, m in enumerate(["resp-test", "gpt-test"])]
    f = c.files.create(file=("b.jsonl", "\n".join(json.dumps(x) for x in lines).encode()), purpose="batch")
    b = _finished(c, c.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="24h").id)
    out = {o["custom_id"]: o["response"]["body"] for o in map(json.loads, c.files.content(b.output_file_id).text.splitlines())}  # type: ignore[arg-type]
    for body in out.values():
        assert body["object"] == "response" and body["output"][-1]["content"][0]["text"] == ANSWER
    assert {e["batch_id"] for e in resp.events() if e["prompt"].startswith("batched ")} == {b.id}


def test_requests_that_would_reach_others_state_are_refused(resp: Running) -> None:
    c = _client(resp)
    mine = c.responses.create(model="resp-test", input="keep this")
    for extra in ({"conversation": "conv_123"}, {"background": True},
                  {"input": [{"type": "item_reference", "id": "msg_someone_elses"}]}):
        with pytest.raises(openai.BadRequestError, match="not accepted|item references"):
            c.responses.create(model="resp-test", **{"input": "hi", **extra})  # type: ignore[call-overload]
    # in a batch, previous_response_id must name a response of the submitting account's too
    other = _client(resp, resp.new_key("batch-thief"))

    def line(prev: str) -> bytes:
        return json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/responses",
                           "body": {"model": "resp-test", "previous_response_id": prev, "input": "go on"}}).encode()

    f = other.files.create(file=("b.jsonl", line(mine.id)), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="No stored response"):
        other.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="24h")
    f = c.files.create(file=("b.jsonl", line(mine.id)), purpose="batch")
    b = _finished(c, c.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="24h").id)
    body = json.loads(c.files.content(b.output_file_id).text)["response"]["body"]  # type: ignore[arg-type]
    assert body["previous_response_id"] == mine.id
    assert c.responses.retrieve(body["id"]).id == body["id"]  # a batch's responses are the account's own
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(body["id"])


def test_watermark_on_output_text(tmp_path: Path, mock_upstream: str) -> None:
    from distillguard.watermark import WatermarkKey

    key = next(k for k in (WatermarkKey.generate() for _ in range(50)) if k.text_watermarker("wm-acc").apply(PROMPT) != PROMPT)
    gw = _gateway(f"sqlite:///{tmp_path / 'wm.db'}", mock_upstream, watermark_key_file=key.save(tmp_path / "wm.key"))
    k = issue_key(gw.store, "wm-acc").key
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.server.config.port}/v1", api_key=k, max_retries=0, timeout=10)
        want = key.text_watermarker("wm-acc").apply(PROMPT)
        out = c.responses.create(model="mock-echo", input=PROMPT)
        assert out.output_text == want != PROMPT
        with c.responses.stream(model="mock-echo", input=PROMPT) as s:
            deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
            final = s.get_final_response()
        assert deltas.strip() == final.output_text.strip() == want.strip()
        assert c.responses.retrieve(out.id).output_text == want  # stored upstream unmarked, served marked
        translated = c.responses.create(model="fake-x", input=PROMPT)
        assert translated.output_text == key.text_watermarker("wm-acc").apply(f"You asked: {PROMPT}")
        r = httpx.get(f"http://127.0.0.1:{srv.server.config.port}/v1/responses/{out.id}", headers={"authorization": "Bearer nope"})
        assert r.status_code == 401
        # a batch's answers are watermarked as a live request's are
        lines = [{"custom_id": m, "method": "POST", "url": "/v1/responses", "body": {"model": m, "input": PROMPT}} for m in ("mock-echo", "fake-x")]
        f = c.files.create(file=("b.jsonl", "\n".join(json.dumps(x) for x in lines).encode()), purpose="batch")
        b = _finished(c, c.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="24h").id)
        got = {o["custom_id"]: o["response"]["body"]["output"][-1]["content"][0]["text"]
               for o in map(json.loads, c.files.content(b.output_file_id).text.splitlines())}  # type: ignore[arg-type]
        assert got == {"mock-echo": want, "fake-x": translated.output_text}
    finally:
        srv.stop()


def test_token_logprobs_are_dropped_where_the_answer_is_rewritten() -> None:
    """Logprobs carry the upstream's own tokens: beside a watermarked or degraded text they would
    give the original back."""
    from distillguard.gateway._native import Rewrite, native_request
    from distillguard.gateway._responses import parse_responses
    from distillguard.gateway._responses_native import ResponsesStream, read_response

    body = {"model": "m", "input": "hi", "include": ["message.output_text.logprobs", "reasoning.encrypted_content"], "top_logprobs": 3}
    req = parse_responses(body)
    raw = json.dumps(body).encode()
    assert native_request("responses", raw, body, req, None, False, rewrite=False) == raw
    sent = json.loads(native_request("responses", raw, body, req, None, False, rewrite=True))
    assert sent["include"] == ["reasoning.encrypted_content"] and "top_logprobs" not in sent
    part = {"type": "output_text", "text": "the answer", "annotations": [], "logprobs": [{"token": "the", "logprob": -0.1}]}
    answer = {"id": "resp_1", "output": [{"id": "msg_1", "type": "message", "role": "assistant", "content": [dict(part)]}],
              "usage": {"input_tokens": 1, "output_tokens": 2}}
    kept, _reply, _ = read_response(json.dumps(answer).encode(), req, Rewrite(), "up")
    assert "logprobs" in kept.decode()
    out, reply, _ = read_response(json.dumps(answer).encode(), req, Rewrite(degrade=True), "up")
    assert "logprobs" not in out.decode() and reply.text == "the answer"
    stream = ResponsesStream(Rewrite(degrade=True))
    ev = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "the", "logprobs": [{"token": "the"}]}
    sent_ev = stream.feed(f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n".encode())
    assert b'"logprobs":[]' in sent_ev and b'"token"' not in sent_ev


def test_input_items_of_own_responses_only(resp: Running) -> None:
    c = _client(resp)
    r = c.responses.create(model="resp-model", input="items of mine")
    items = c.responses.input_items.list(r.id, limit=5)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]
    assert items.data[0].content[0].text == "items of mine"  # type: ignore[union-attr]
    other = _client(resp, resp.new_key("other-items"))
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.input_items.list("resp_not_mine")
