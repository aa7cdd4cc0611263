"""An upstream whose answers are fixed bytes, so a test can say "byte-identical".

Every answer carries a reasoning trace, answer text and a tool call, in each API's own shape
(Chat Completions, Anthropic Messages, Responses; JSON and stream). The JSON is written with
`json.dumps`' spaced separators, which the gateway's own serialiser never writes: a
re-serialised answer cannot pass for the upstream's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

REASONING = ("Hmm, let me think. The user wants the weather in Paris. Wait, I should call the tool. "
             "The tool takes a city. So the call is get_weather with Paris.")
TEXT = "Let me check the weather in Paris for you."
ARGS = '{"city": "Paris", "unit": "celsius"}'
TOOL = "get_weather"
#: the answer of a model whose name has `code` in it: a Python block, a broken one, a shell one
CODE_TEXT = """Here is the function you asked for:

```python
def weighted_mean(xs, weights=None):
    # one weight per value; none: all equal
    total = 0.0
    count = 0
    for i, x in enumerate(xs):
        w = 1 if weights is None else weights[i]
        total += w * x
        count += w
    return total / count if count else 0.0


def top(xs, k=2):
    ranked = sorted(xs, reverse=True)
    label = 'top'
    return label, [v for v in ranked[:k] if v > 0]
```

This one does not parse:

```python
def broken(x:
    y = x +
```

```sh
total=0; for i in 1 2; do total=$((total + i)); done
```
"""


def answer_text(body: dict[str, Any]) -> str:
    return CODE_TEXT if "code" in str(body.get("model")) else TEXT


def pieces(text: str) -> list[str]:
    """The stream's text deltas (CODE_TEXT: 7 characters each, splitting fences and names)."""
    return [text[:20], text[20:]] if text == TEXT else [text[i:i + 7] for i in range(0, len(text), 7)]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def chat(body: dict[str, Any]) -> list[bytes]:
    """The Chat Completions answer to `body`: one JSON body, or the stream's events."""
    model, text = body.get("model"), answer_text(body)
    call = {"id": "call_1", "type": "function", "function": {"name": TOOL, "arguments": ARGS}}
    usage = {"prompt_tokens": 11, "completion_tokens": 40, "total_tokens": 51}
    if not body.get("stream"):
        msg = {"role": "assistant", "content": text, "reasoning_content": REASONING, "tool_calls": [call]}
        return [json.dumps({"id": "chatcmpl-canned", "object": "chat.completion", "created": 1700000000, "model": model,
                            "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls"}], "usage": usage}).encode()]
    head = {"id": "chatcmpl-canned", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "reasoning_content": REASONING[:40]},
        {"reasoning_content": REASONING[40:]},
        *({"content": piece} for piece in pieces(text)),
        {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": TOOL, "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ARGS[:10]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ARGS[10:]}}]},
    ]
    out = [_sse({**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}) for d in deltas]
    out.append(_sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        out.append(_sse({**head, "choices": [], "usage": usage}))
    return [*out, b"data: [DONE]\n\n"]


def messages(body: dict[str, Any]) -> list[bytes]:
    """The Anthropic Messages answer to `body`."""
    model, text = body.get("model"), answer_text(body)
    blocks: list[dict[str, Any]] = [
        {"type": "thinking", "thinking": REASONING, "signature": "sig-canned"},
        {"type": "text", "text": text},
        {"type": "tool_use", "id": "toolu_1", "name": TOOL, "input": json.loads(ARGS)},
    ]
    usage = {"input_tokens": 11, "output_tokens": 40}
    if not body.get("stream"):
        return [json.dumps({"id": "msg_canned", "type": "message", "role": "assistant", "model": model, "content": blocks,
                            "stop_reason": "tool_use", "stop_sequence": None, "usage": usage}).encode()]
    out = [_sse({"type": "message_start", "message": {"id": "msg_canned", "type": "message", "role": "assistant", "model": model,
                                                       "content": [], "stop_reason": None, "stop_sequence": None,
                                                       "usage": {"input_tokens": 11, "output_tokens": 1}}}, "message_start")]

    def block(index: int, start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        out.append(_sse({"type": "content_block_start", "index": index, "content_block": start}, "content_block_start"))
        out.extend(_sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta") for d in deltas)
        out.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))

    block(0, {"type": "thinking", "thinking": "", "signature": ""},
          [{"type": "thinking_delta", "thinking": REASONING[:40]}, {"type": "thinking_delta", "thinking": REASONING[40:]},
           {"type": "signature_delta", "signature": "sig-canned"}])
    block(1, {"type": "text", "text": ""}, [{"type": "text_delta", "text": piece} for piece in pieces(text)])
    block(2, {"type": "tool_use", "id": "toolu_1", "name": TOOL, "input": {}},
          [{"type": "input_json_delta", "partial_json": ARGS[:10]}, {"type": "input_json_delta", "partial_json": ARGS[10:]}])
    out.append(_sse({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                     "usage": {"output_tokens": 40}}, "message_delta"))
    out.append(_sse({"type": "message_stop"}, "message_stop"))
    return out


def responses(body: dict[str, Any]) -> list[bytes]:
    """The Responses answer to `body`."""
    text = answer_text(body)
    rs = {"id": "rs_canned", "type": "reasoning", "summary": [{"type": "summary_text", "text": REASONING}]}
    msg = {"id": "msg_canned", "type": "message", "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": text, "annotations": []}]}
    fc = {"id": "fc_canned", "type": "function_call", "call_id": "call_1", "name": TOOL, "arguments": ARGS, "status": "completed"}
    resp = {"id": "resp_canned", "object": "response", "created_at": 1700000000, "status": "completed", "model": body.get("model"),
            "output": [rs, msg, fc], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 11, "output_tokens": 40, "total_tokens": 51}}
    if not body.get("stream"):
        return [json.dumps(resp).encode()]
    seq = iter(range(1000))
    out: list[bytes] = []

    def ev(data: dict[str, Any]) -> None:
        out.append(_sse({**data, "sequence_number": next(seq)}, data["type"]))

    ev({"type": "response.created", "response": {**resp, "status": "in_progress", "output": [], "usage": None}})
    ev({"type": "response.output_item.added", "output_index": 0, "item": {**rs, "summary": []}})
    ev({"type": "response.reasoning_summary_part.added", "item_id": "rs_canned", "output_index": 0, "summary_index": 0,
        "part": {"type": "summary_text", "text": ""}})
    ev({"type": "response.reasoning_summary_text.delta", "item_id": "rs_canned", "output_index": 0, "summary_index": 0, "delta": REASONING})
    ev({"type": "response.reasoning_summary_text.done", "item_id": "rs_canned", "output_index": 0, "summary_index": 0, "text": REASONING})
    ev({"type": "response.reasoning_summary_part.done", "item_id": "rs_canned", "output_index": 0, "summary_index": 0,
        "part": {"type": "summary_text", "text": REASONING}})
    ev({"type": "response.output_item.done", "output_index": 0, "item": rs})
    ev({"type": "response.output_item.added", "output_index": 1, "item": {**msg, "status": "in_progress", "content": []}})
    ev({"type": "response.content_part.added", "item_id": "msg_canned", "output_index": 1, "content_index": 0,
        "part": {"type": "output_text", "text": "", "annotations": []}})
    for piece in pieces(text):
        ev({"type": "response.output_text.delta", "item_id": "msg_canned", "output_index": 1, "content_index": 0, "delta": piece})
    ev({"type": "response.output_text.done", "item_id": "msg_canned", "output_index": 1, "content_index": 0, "text": text})
    ev({"type": "response.content_part.done", "item_id": "msg_canned", "output_index": 1, "content_index": 0, "part": msg["content"][0]})  # type: ignore[index]
    ev({"type": "response.output_item.done", "output_index": 1, "item": msg})
    ev({"type": "response.output_item.added", "output_index": 2, "item": {**fc, "arguments": "", "status": "in_progress"}})
    for piece in (ARGS[:10], ARGS[10:]):
        ev({"type": "response.function_call_arguments.delta", "item_id": "fc_canned", "output_index": 2, "delta": piece})
    ev({"type": "response.function_call_arguments.done", "item_id": "fc_canned", "output_index": 2, "arguments": ARGS})
    ev({"type": "response.output_item.done", "output_index": 2, "item": fc})
    ev({"type": "response.completed", "response": resp})
    return out


ANSWERS = {"/v1/chat/completions": chat, "/v1/messages": messages, "/v1/responses": responses}


def canned_app() -> Any:
    """An aiohttp app answering the three APIs with `ANSWERS`' bytes."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        parts = ANSWERS[request.path](body)
        if not body.get("stream"):
            return web.Response(body=parts[0], content_type="application/json")
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for p in parts:
            await resp.write(p)
        await resp.write_eof()
        return resp

    app = web.Application()
    for path in ANSWERS:
        app.router.add_post(path, answer)
    return app


ROUTES = {"chat.completions": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}
PROMPT = "What is the weather in Paris?"


class Served:
    """A gateway in front of the canned upstream, with three accounts: `good`, `degraded`
    (its override is degrade) and `throttled`."""

    def __init__(self, url: str, gw: Any) -> None:
        from distillguard.gateway import issue_key

        self.url, self.gw = url, gw
        self.keys = {acc: issue_key(gw.store, acc).key for acc in ("good", "degraded", "throttled")}
        gw.store.add_override("degraded", "degrade", "test", "")
        gw.store.add_override("throttled", "throttle", "test", "")
        gw.refresh()

    def post(self, api: str, account: str, body: dict[str, Any]) -> Any:
        import httpx

        auth = {"x-api-key": self.keys[account]} if api == "messages" else {"authorization": f"Bearer {self.keys[account]}"}
        r = httpx.post(self.url + ROUTES[api], headers=auth, content=json.dumps(body), timeout=10)
        assert r.status_code == 200, r.text
        return r

    def events(self) -> list[dict[str, Any]]:
        """Everything captured so far (`support.captured_events`)."""
        from .support import captured_events

        return captured_events(self.gw)


def _code_upstream() -> Any:
    from distillguard.gateway import FakeUpstream

    class CodeUpstream(FakeUpstream):
        """The translated fake, answering CODE_TEXT (streamed a word at a time)."""

        def _answer(self, req: Any) -> tuple[str, str, str]:
            return CODE_TEXT, "Let me think. The user wants code.", "stop"

    return CodeUpstream


def serve(db: Any, degrade: Any) -> Iterator[Served]:
    """Run the canned upstream and a gateway in front of it (`claude-*` Anthropic, `canned-*`
    OpenAI with the Responses API, `fake-*` the translated fake, `code-*` a translated fake
    answering CODE_TEXT; a model name with `code` in it answers CODE_TEXT) for the length of a fixture."""
    from distillguard.enforce import LimitsConfig, LimitSet
    from distillguard.gateway import (
        AnthropicUpstream,
        FakeUpstream,
        Gateway,
        GatewayConfig,
        OpenAIUpstream,
        Router,
        create_app,
    )

    from .support import LoopThread, ServerThread, free_port

    CodeUpstream = _code_upstream()
    up_port = free_port()
    upstream = LoopThread(canned_app(), up_port)
    upstream.start()
    lim = LimitSet(100_000, 1_000_000, None, None)
    cfg = GatewayConfig(db=f"sqlite:///{db}", capture_interval=0.02, refresh_interval=0.2, upstream_timeout=2.0,
                        detect=False, limits=LimitsConfig(key=lim, account=lim), degrade=degrade)
    router = Router()
    router.add("claude-*", AnthropicUpstream(f"http://127.0.0.1:{up_port}", timeout=2.0))
    router.add("canned-*", OpenAIUpstream(f"http://127.0.0.1:{up_port}/v1", timeout=2.0, responses=True))
    router.add("fake-*", FakeUpstream(reasoning=True))
    router.add("code-*", CodeUpstream(reasoning=True))
    gw = Gateway(cfg, router=router)
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        yield Served(f"http://127.0.0.1:{srv.server.config.port}", gw)
    finally:
        srv.stop()
        upstream.stop()


def body(api: str, stream: bool, prompt: str = PROMPT, **extra: Any) -> dict[str, Any]:
    """A request for `api` that routes to the canned upstream."""
    out: dict[str, Any] = {"model": "claude-canned" if api == "messages" else "canned-model", "stream": stream, **extra}
    if api == "responses":
        out["input"] = prompt
    else:
        out["messages"] = [{"role": "user", "content": prompt}]
        out["max_tokens"] = 100
    return out
