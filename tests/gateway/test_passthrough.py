"""Pass-through to an upstream of the client's own API: tools and tool calls, reasoning, usage,
degrade and watermarking on the upstream's own bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from distillguard.gateway import (
    Gateway,
    GatewayConfig,
    OpenAIUpstream,
    Router,
    create_app,
    issue_key,
)
from distillguard.gateway._mock import ANSWER, REASONING, TOOL_ARGS
from distillguard.gateway._native import NativeStream, Rewrite, native_request
from distillguard.gateway._protocol import parse_openai_chat

from .support import Running, ServerThread, free_port

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
WEATHER_ANTHROPIC = {"name": "get_weather", "description": "Weather in a city",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def _openai(r: Running, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=r.url + "/v1", api_key=key or r.key, max_retries=0, timeout=10)


def _anthropic(r: Running, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=r.url, api_key=key or r.key, max_retries=0, timeout=10)


def test_openai_tool_calls_round_trip(running: Running) -> None:
    c = _openai(running)
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    out = c.chat.completions.create(model="gpt-test", messages=ask, tools=[WEATHER])  # type: ignore[list-item]
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == TOOL_ARGS  # type: ignore[union-attr]
    # the tool's answer goes back up, and the model's reply comes down
    follow = [*ask, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
              {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}]
    again = c.chat.completions.create(model="gpt-test", messages=follow, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    assert again.choices[0].message.content == "The tool said: 18 C and sunny"
    # streamed: the tool call arrives in pieces, as OpenAI streams it
    name, args = "", ""
    for chunk in c.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "Stream a tool call"}],
                                           tools=[WEATHER], stream=True):  # type: ignore[list-item]
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += tc.function.name or "" if tc.function else ""
            args += tc.function.arguments or "" if tc.function else ""
    assert name == "get_weather" and json.loads(args) == TOOL_ARGS
    ev = {e["prompt"]: e for e in running.events()}
    assert ev["Weather in Paris?"]["tools"] == 1 and ev["Stream a tool call"]["status"] == 200
    assert ev["Stream a tool call"]["completion_tokens"] == 12  # usage asked upstream for the count


def test_anthropic_tool_use_round_trip(running: Running) -> None:
    c = _anthropic(running)
    ask: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    msg = c.messages.create(model="claude-test", max_tokens=100, messages=ask, tools=[WEATHER_ANTHROPIC])  # type: ignore[list-item]
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == TOOL_ARGS  # type: ignore[union-attr]
    follow = [*ask, {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C and sunny"}]}]  # type: ignore[union-attr]
    again = c.messages.create(model="claude-test", max_tokens=100, messages=follow, tools=[WEATHER_ANTHROPIC])  # type: ignore[arg-type,list-item]
    assert again.content[0].text == "The tool said: 18 C and sunny"  # type: ignore[union-attr]
    with c.messages.stream(model="claude-test", max_tokens=100, tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
                           messages=[{"role": "user", "content": "Stream a tool use"}]) as s:
        final = s.get_final_message()
    streamed = next(b for b in final.content if b.type == "tool_use")
    assert streamed.input == TOOL_ARGS and final.stop_reason == "tool_use"  # type: ignore[union-attr]


def test_stream_without_usage_request_gets_none_but_capture_counts_tokens(running: Running) -> None:
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "no usage for me"}]}
    r = httpx.post(running.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {running.key}"}, timeout=10)
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert r.text.rstrip().endswith("data: [DONE]") and all("usage" not in e for e in events)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == ANSWER
    e = next(e for e in running.events() if e["prompt"] == "no usage for me")
    assert (e["prompt_tokens"], e["completion_tokens"], e["response"]) == (9, 12, ANSWER)


def test_reasoning_passes_and_a_degraded_account_loses_it(running: Running) -> None:
    gw = running.gateway
    key = issue_key(gw.store, "native-degraded").key
    gw.store.add_override("native-degraded", "degrade")
    gw.refresh()
    ask = [{"role": "user", "content": "Think about it"}]
    for k, kept in ((running.key, True), (key, False)):
        out = _openai(running, k).chat.completions.create(model="mock-reason", messages=ask, max_tokens=5000)  # type: ignore[arg-type]
        assert (out.choices[0].message.model_dump().get("reasoning_content") == REASONING) is kept
        assert out.choices[0].message.content == ANSWER
        chunks = list(_openai(running, k).chat.completions.create(model="mock-reason", messages=ask, stream=True))  # type: ignore[arg-type]
        streamed = [ch.choices[0].delta.model_dump().get("reasoning_content") for ch in chunks if ch.choices]
        assert (REASONING in streamed) is kept
        msg = _anthropic(running, k).messages.create(model="claude-reason", max_tokens=5000, messages=ask)  # type: ignore[arg-type]
        assert [b.type for b in msg.content] == (["thinking", "text"] if kept else ["text"])
        with _anthropic(running, k).messages.stream(model="claude-reason", max_tokens=64, messages=ask) as s:  # type: ignore[arg-type]
            final = s.get_final_message()  # the SDK checks block indices: dropped blocks are renumbered
        assert [b.type for b in final.content] == (["thinking", "text"] if kept else ["text"])
        assert final.content[-1].text == ANSWER  # type: ignore[union-attr]
    ev = [e for e in running.events() if e["account_id"] == "native-degraded"]
    assert {e["max_tokens"] for e in ev} == {64, gw.policy.degrade.max_tokens_cap}  # capped, not raised


def test_native_request_caps_and_asks_for_usage() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 9000, "tools": [WEATHER], "stream": True}
    raw = json.dumps(body).encode()
    req = parse_openai_chat(body)
    assert native_request("chat.completions", raw, body, req, None, False) is raw
    sent = json.loads(native_request("chat.completions", raw, body, req, 256, True))
    assert sent["max_completion_tokens"] == 256 and "max_tokens" not in sent
    assert sent["stream_options"] == {"include_usage": True} and sent["tools"] == [WEATHER]


STREAM = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"lo"}}]}\r\n\r\n'
    b': a comment\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
    b'data: {"after": "the end"}\n\n'
)


@pytest.mark.parametrize("size", [1, 7, len(STREAM)])
def test_stream_reader_is_indifferent_to_how_the_bytes_arrive(size: int) -> None:
    reader = NativeStream("chat.completions", Rewrite())
    out = b"".join(reader.feed(STREAM[i:i + size]) for i in range(0, len(STREAM), size))
    reader.settle()
    assert out == STREAM.replace(b"\r\n", b"\n").split(b'data: {"after"')[0]
    assert (reader.done, "".join(reader.parts), reader.finish, reader.prompt_tokens, reader.completion_tokens) == (True, "Hello", "length", 3, 2)
    dropping = NativeStream("chat.completions", Rewrite(), drop_usage=True)
    out = b"".join(dropping.feed(STREAM[i:i + size]) for i in range(0, len(STREAM), size))
    assert b"usage" not in out and out.endswith(b"data: [DONE]\n\n") and dropping.completion_tokens == 2


def test_pass_through_is_watermarked_per_account(tmp_path: Path, mock_upstream: str) -> None:
    from distillguard.watermark import WatermarkKey

    prompt = "please explain in simple words how the big old house was built and why people liked the quick answer"
    key = next(k for k in (WatermarkKey.generate() for _ in range(50)) if k.text_watermarker("acc-1").apply(prompt) != prompt)
    cfg = GatewayConfig(db=f"sqlite:///{tmp_path / 'wm.db'}", watermark_key_file=key.save(tmp_path / "wm.key"),
                        detect=False, capture_interval=0.02)
    router = Router()
    router.add("*", OpenAIUpstream(mock_upstream, timeout=5.0))
    gw = Gateway(cfg, router=router)
    k1 = issue_key(gw.store, "acc-1").key
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.server.config.port}/v1", api_key=k1, max_retries=0, timeout=10)
        ask = [{"role": "user", "content": prompt}]
        one = c.chat.completions.create(model="mock-echo", messages=ask).choices[0].message.content  # type: ignore[arg-type]
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(model="mock-echo", messages=ask, stream=True) if ch.choices)  # type: ignore[arg-type]
    finally:
        srv.stop()
    assert one == key.text_watermarker("acc-1").apply(prompt) != prompt
    assert streamed == one
    logged = [e["response"] for rows in gw.store.iter_events() for e in rows]
    assert logged == [one, one]


def test_complete_sse_events_splits_at_the_last_blank_line_and_folds_crlf() -> None:
    from distillguard.gateway._native import complete_sse_events

    whole, rest = complete_sse_events(b"data: 1\r\n\r\ndata: 2\r\n\r\ndata: 3\r")
    assert (whole, rest) == (b"data: 1\n\ndata: 2\n\n", b"data: 3\r")
    assert complete_sse_events(b"data: 1\n") == (b"", b"data: 1\n")  # no event is complete yet
