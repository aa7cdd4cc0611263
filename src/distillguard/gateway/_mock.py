"""A mock model server speaking the OpenAI and Anthropic APIs, for tests and benchmarks.

Model names choose misbehaviour: `mock-slow` answers after `slow_s` seconds, `mock-500`
fails with HTTP 500, `mock-break` breaks its stream (or body) half way. Anything else gets
a short fixed answer, streamed in `chunks` pieces when asked.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

ANSWER = "Hello from the mock upstream: the answer is 42."


def mock_upstream_app(slow_s: float = 30.0, chunks: int = 8, reasoning: bool = False) -> Any:
    """An `aiohttp.web.Application` serving `/v1/chat/completions`, `/v1/completions`,
    `/v1/messages` and `/v1/models`."""
    from aiohttp import web

    words = ANSWER.split(" ")
    per = max(1, len(words) // chunks)
    pieces = [" ".join(words[i:i + per]) + (" " if i + per < len(words) else "") for i in range(0, len(words), per)]

    async def misbehave(model: str) -> web.Response | None:
        if model == "mock-slow":
            await asyncio.sleep(slow_s)
        if model == "mock-500":
            return web.json_response({"error": {"message": "mock failure", "type": "server_error"}}, status=500)
        return None

    def break_now(request: web.Request) -> None:
        assert request.transport is not None
        request.transport.abort()

    async def openai(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        bad = await misbehave(model)
        if bad is not None:
            return bad
        chat = request.path.endswith("/chat/completions")
        now = int(time.time())
        if not body.get("stream"):
            if model == "mock-break":
                resp = web.StreamResponse(headers={"content-type": "application/json", "content-length": "400"})
                await resp.prepare(request)
                await resp.write(b'{"id": "x", "choices": [')
                break_now(request)
                return resp
            if chat:
                msg: dict[str, Any] = {"role": "assistant", "content": ANSWER}
                if reasoning:
                    msg["reasoning_content"] = "Mock reasoning: think step by step. Then answer."
                choice: dict[str, Any] = {"index": 0, "message": msg, "finish_reason": "stop"}
            else:
                choice = {"index": 0, "text": ANSWER, "finish_reason": "stop"}
            return web.json_response({
                "id": "mock-1", "object": "chat.completion" if chat else "text_completion", "created": now, "model": model,
                "choices": [choice], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
            })
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for i, p in enumerate(pieces):
            if model == "mock-break" and i == 2:
                break_now(request)
                return resp
            ch = {"index": 0, "delta": {"content": p}, "finish_reason": None} if chat else {"index": 0, "text": p, "finish_reason": None}
            await resp.write(b"data: " + json.dumps({"id": "mock-1", "object": "chunk", "created": now, "model": model, "choices": [ch]}).encode() + b"\n\n")
        end = {"index": 0, "delta": {}, "finish_reason": "stop"} if chat else {"index": 0, "text": "", "finish_reason": "stop"}
        await resp.write(b"data: " + json.dumps({"id": "mock-1", "choices": [end]}).encode() + b"\n\n")
        await resp.write(b"data: " + json.dumps({"id": "mock-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def anthropic(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        bad = await misbehave(model)
        if bad is not None:
            return bad
        if not body.get("stream"):
            return web.json_response({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 9, "output_tokens": 12},
            })
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)

        async def ev(name: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        await ev("message_start", {"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": 9, "output_tokens": 1}}})
        await ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        for i, p in enumerate(pieces):
            if model == "mock-break" and i == 2:
                break_now(request)
                return resp
            await ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
        await ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        await ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 12}})
        await ev("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "mock", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", openai)
    app.router.add_post("/v1/completions", openai)
    app.router.add_post("/v1/messages", anthropic)
    app.router.add_get("/v1/models", models)
    return app


def run_mock_upstream(host: str = "127.0.0.1", port: int = 8001, **kw: Any) -> None:
    """Serve `mock_upstream_app` until interrupted (uses uvloop when installed)."""
    from aiohttp import web

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(mock_upstream_app(**kw), host=host, port=port, print=None, access_log=None)
