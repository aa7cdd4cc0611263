"""A mock model server speaking the OpenAI and Anthropic APIs, for tests and benchmarks.

Model names choose misbehaviour: `mock-slow` answers after `slow_s` seconds, `mock-500`
fails with HTTP 500, `mock-break` breaks its stream (or body) half way. `mock-echo` answers
with the last user message, `mock-reason` (any name ending in `-reason`) adds a reasoning trace (OpenAI
`reasoning_content`, Anthropic `thinking` block). Anything else gets a short fixed answer,
streamed in `chunks` pieces when asked.

Tools: a request that offers `tools` gets a call of the first one (OpenAI `tool_calls`,
Anthropic `tool_use`, Responses `function_call`, streamed as the APIs stream them); a request
whose last turn carries a tool's result gets "The tool said: RESULT".

The Responses API (`POST /v1/responses`, JSON or typed stream events) keeps each response in
memory for `GET /v1/responses/{id}`, its `input_items` and `previous_response_id` (an unknown
one gets 404). `POST /v1/embeddings` answers a fixed vector per input.

Batch APIs (`_mock_batches.py`): OpenAI Files + Batch and Anthropic Message Batches, each
request answered by this server's own request API after `batch_s` seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

ANSWER = "Hello from the mock upstream: the answer is 42."
REASONING = "Mock reasoning: think step by step. Then answer."
TOOL_ARGS = {"city": "Paris"}
_NO_RESPONSE = {"error": {"message": "No response with that id.", "type": "invalid_request_error", "param": None, "code": None}}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(p.get("content")) if p.get("type") == "tool_result" else str(p.get("text", ""))
                       for p in content if isinstance(p, dict))
    return ""


def _tool_result(body: dict[str, Any]) -> str | None:
    """The tool result the last turn carries, if any."""
    msgs = body.get("messages") or []
    last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
    if last.get("role") == "tool":
        return _text(last.get("content"))
    content = last.get("content")
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "tool_result":
                return _text(part.get("content"))
    return None


def _answer(body: dict[str, Any], model: str) -> str:
    result = _tool_result(body)
    if result is not None:
        return f"The tool said: {result}"
    if model == "mock-echo" or model.endswith("-echo"):
        msgs = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
        return _text(msgs[-1].get("content")) if msgs else str(body.get("prompt", ""))
    return ANSWER


def _pieces(text: str, chunks: int) -> list[str]:
    words = text.split(" ")
    per = max(1, len(words) // chunks)
    return [" ".join(words[i:i + per]) + (" " if i + per < len(words) else "") for i in range(0, len(words), per)]


def _tool(body: dict[str, Any]) -> str | None:
    """The name of the tool to call: the first one offered, unless the tool already answered."""
    tools = body.get("tools")
    if not tools or _tool_result(body) is not None:
        return None
    first = tools[0] if isinstance(tools[0], dict) else {}
    fn = first.get("function")
    return str((fn if isinstance(fn, dict) else first).get("name", "tool"))


def mock_upstream_app(slow_s: float = 30.0, chunks: int = 8, reasoning: bool = False, batch_s: float = 0.2) -> Any:
    """An `aiohttp.web.Application` serving `/v1/chat/completions`, `/v1/completions`,
    `/v1/messages`, `/v1/responses` (and GET by id), `/v1/embeddings`, `/v1/models` and the
    batch APIs (see `_mock_batches.py`; `app[BATCHES]` holds the batches it was sent)."""
    from aiohttp import web

    from distillguard.gateway._mock_batches import add_batch_routes

    async def misbehave(model: str) -> web.Response | None:
        if model == "mock-slow":
            await asyncio.sleep(slow_s)
        if model == "mock-500":
            return web.json_response({"error": {"message": "mock failure", "type": "server_error"}}, status=500)
        return None

    def break_now(request: web.Request) -> None:
        assert request.transport is not None
        request.transport.abort()

    async def read_request(request: web.Request) -> tuple[dict[str, Any], str, web.Response | None]:
        """The request's JSON body, its model, and the misbehaviour the model names (None: answer)."""
        body = await request.json()
        model = str(body.get("model", ""))
        return body, model, await misbehave(model)

    async def openai(request: web.Request) -> web.StreamResponse:
        body, model, bad = await read_request(request)
        if bad is not None:
            return bad
        chat = request.path.endswith("/chat/completions")
        now = int(time.time())
        text = _answer(body, model)
        think = reasoning or model.endswith("-reason")
        n = body.get("n") or body.get("best_of") or 1
        n_choices = n if isinstance(n, int) and 1 <= n <= 8 else 1
        tool = _tool(body) if chat else None
        call = {"id": "call_mock", "type": "function", "function": {"name": tool, "arguments": json.dumps(TOOL_ARGS)}}
        finish = "tool_calls" if tool else "stop"
        if not body.get("stream"):
            if model == "mock-break":
                resp = web.StreamResponse(headers={"content-type": "application/json", "content-length": "400"})
                await resp.prepare(request)
                await resp.write(b'{"id": "x", "choices": [')
                break_now(request)
                return resp
            choices: list[dict[str, Any]] = []
            for i in range(n_choices):
                # as OpenAI: `n` answers, and with logprobs the tokens of each (the raw text)
                text_i = text if i == 0 else f"{text} (choice {i})"
                if chat:
                    msg: dict[str, Any] = {"role": "assistant", "content": None if tool else text_i}
                    if tool:
                        msg["tool_calls"] = [call]
                    if think:
                        msg["reasoning_content"] = REASONING
                    choice: dict[str, Any] = {"index": i, "message": msg, "finish_reason": finish}
                    if body.get("logprobs"):
                        choice["logprobs"] = {"content": [{"token": t, "logprob": -0.5} for t in text_i.split(" ")]}
                else:
                    choice = {"index": i, "text": text_i, "finish_reason": "stop"}
                    if body.get("logprobs"):
                        choice["logprobs"] = {"tokens": text_i.split(" "), "token_logprobs": [-0.5] * len(text_i.split(" "))}
                choices.append(choice)
            return web.json_response({
                "id": "mock-1", "object": "chat.completion" if chat else "text_completion", "created": now, "model": model,
                "choices": choices, "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
            })
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)

        async def chunk(ch: dict[str, Any]) -> None:
            await resp.write(b"data: " + json.dumps({"id": "mock-1", "object": "chunk", "created": now, "model": model, "choices": [ch]}).encode() + b"\n\n")

        if think and chat:
            await chunk({"index": 0, "delta": {"role": "assistant", "reasoning_content": REASONING}, "finish_reason": None})
        if tool:
            head = {**call, "index": 0, "function": {"name": tool, "arguments": ""}}
            await chunk({"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [head]}, "finish_reason": None})
            args = json.dumps(TOOL_ARGS)
            for part in (args[: len(args) // 2], args[len(args) // 2:]):
                await chunk({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}, "finish_reason": None})
        else:
            for i, p in enumerate(_pieces(text, chunks)):
                if model == "mock-break" and i == 2:
                    break_now(request)
                    return resp
                for c in range(n_choices):
                    ch = {"index": c, "delta": {"content": p}, "finish_reason": None} if chat else {"index": c, "text": p, "finish_reason": None}
                    if body.get("logprobs"):
                        ch["logprobs"] = {"content": [{"token": p, "logprob": -0.5}]} if chat else {"tokens": [p]}
                    await chunk(ch)
        end = {"index": 0, "delta": {}, "finish_reason": finish} if chat else {"index": 0, "text": "", "finish_reason": "stop"}
        await resp.write(b"data: " + json.dumps({"id": "mock-1", "choices": [end]}).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(b"data: " + json.dumps({"id": "mock-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def anthropic(request: web.Request) -> web.StreamResponse:
        body, model, bad = await read_request(request)
        if bad is not None:
            return bad
        text = _answer(body, model)
        think = reasoning or model.endswith("-reason")
        tool = _tool(body)
        stop = "tool_use" if tool else "end_turn"
        blocks: list[dict[str, Any]] = []
        if think:
            blocks.append({"type": "thinking", "thinking": REASONING, "signature": "sig"})
        blocks.append({"type": "text", "text": "Let me look that up." if tool else text})
        if tool:
            blocks.append({"type": "tool_use", "id": "toolu_mock", "name": tool, "input": TOOL_ARGS})
        if not body.get("stream"):
            return web.json_response({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": blocks, "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": 9, "output_tokens": 12},
            })
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)

        async def ev(name: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        await ev("message_start", {"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": 9, "output_tokens": 1}}})
        for index, block in enumerate(blocks):
            kind = block["type"]
            start = {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": ""} if kind == "thinking" else {**block, "input": {}}
            await ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            if kind == "thinking":
                await ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": REASONING}})
                await ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "sig"}})
            elif kind == "tool_use":
                args = json.dumps(TOOL_ARGS)
                for part in (args[: len(args) // 2], args[len(args) // 2:]):
                    await ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}})
            else:
                for i, p in enumerate(_pieces(block["text"], chunks)):
                    if model == "mock-break" and i == 2:
                        break_now(request)
                        return resp
                    await ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}})
            await ev("content_block_stop", {"type": "content_block_stop", "index": index})
        await ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 12}})
        await ev("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp

    stored: dict[str, dict[str, Any]] = {}
    inputs: dict[str, list[dict[str, Any]]] = {}

    def as_chat(body: dict[str, Any]) -> dict[str, Any]:
        """A Responses request seen as a chat request (for the shared answer and tool logic)."""
        items = body.get("input")
        msgs: list[dict[str, Any]] = []
        given: list[dict[str, Any]] = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
        for item in given:
            if item.get("type") == "function_call_output":
                msgs.append({"role": "tool", "content": item.get("output")})
            elif item.get("type", "message") == "message":
                msgs.append({"role": item.get("role"), "content": [{"type": "text", "text": p.get("text", "")} for p in item["content"]]
                             if isinstance(item.get("content"), list) else item.get("content")})
        return {"messages": msgs, "tools": body.get("tools")}

    async def responses(request: web.Request) -> web.StreamResponse:
        body, model, bad = await read_request(request)
        if bad is not None:
            return bad
        prev = body.get("previous_response_id")
        if prev is not None and prev not in stored:
            return web.json_response({"error": {"message": f"Previous response with id '{prev}' not found.", "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}}, status=404)
        chat = as_chat(body)
        text, tool = _answer(chat, model), _tool(chat)
        rid = f"resp_mock{len(stored) + 1}"
        output: list[dict[str, Any]] = []
        if reasoning or model.endswith("-reason"):
            output.append({"id": f"rs_{rid}", "type": "reasoning", "summary": [{"type": "summary_text", "text": REASONING}]})
        if tool:
            output.append({"id": f"fc_{rid}", "type": "function_call", "call_id": "call_mock", "name": tool, "arguments": json.dumps(TOOL_ARGS), "status": "completed"})
        else:
            output.append({"id": f"msg_{rid}", "type": "message", "role": "assistant", "status": "completed",
                           "content": [{"type": "output_text", "text": text, "annotations": []}]})
        resp = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed", "model": model,
                "output": output, "previous_response_id": prev, "parallel_tool_calls": True, "tool_choice": "auto",
                "tools": body.get("tools") or [], "usage": {"input_tokens": 9, "output_tokens": 12, "total_tokens": 21}}
        if body.get("store", True):
            stored[rid] = resp
            inputs[rid] = [{"id": f"msg_in{i}_{rid}", "type": "message", "role": m.get("role"), "status": "completed",
                            "content": [{"type": "input_text", "text": _text(m.get("content"))}]} for i, m in enumerate(chat["messages"])]
        if not body.get("stream"):
            return web.json_response(resp)
        out = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await out.prepare(request)
        seq = 0

        async def ev(data: dict[str, Any]) -> None:
            nonlocal seq
            await out.write(f"event: {data['type']}\ndata: {json.dumps({**data, 'sequence_number': seq})}\n\n".encode())
            seq += 1

        await ev({"type": "response.created", "response": {**resp, "status": "in_progress", "output": [], "usage": None}})
        for index, item in enumerate(output):
            iid = item["id"]
            if item["type"] == "reasoning":
                await ev({"type": "response.output_item.added", "output_index": index, "item": {**item, "summary": []}})
                await ev({"type": "response.reasoning_summary_part.added", "item_id": iid, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}})
                await ev({"type": "response.reasoning_summary_text.delta", "item_id": iid, "output_index": index, "summary_index": 0, "delta": REASONING})
                await ev({"type": "response.reasoning_summary_text.done", "item_id": iid, "output_index": index, "summary_index": 0, "text": REASONING})
                await ev({"type": "response.reasoning_summary_part.done", "item_id": iid, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": REASONING}})
            elif item["type"] == "function_call":
                await ev({"type": "response.output_item.added", "output_index": index, "item": {**item, "arguments": "", "status": "in_progress"}})
                await ev({"type": "response.function_call_arguments.delta", "item_id": iid, "output_index": index, "delta": item["arguments"]})
                await ev({"type": "response.function_call_arguments.done", "item_id": iid, "output_index": index, "arguments": item["arguments"]})
            else:
                await ev({"type": "response.output_item.added", "output_index": index, "item": {**item, "status": "in_progress", "content": []}})
                await ev({"type": "response.content_part.added", "item_id": iid, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})
                for i, p in enumerate(_pieces(text, chunks)):
                    if model == "mock-break" and i == 2:
                        break_now(request)
                        return out
                    await ev({"type": "response.output_text.delta", "item_id": iid, "output_index": index, "content_index": 0, "delta": p, "logprobs": []})
                await ev({"type": "response.output_text.done", "item_id": iid, "output_index": index, "content_index": 0, "text": text, "logprobs": []})
                await ev({"type": "response.content_part.done", "item_id": iid, "output_index": index, "content_index": 0, "part": item["content"][0]})
            await ev({"type": "response.output_item.done", "output_index": index, "item": item})
        await ev({"type": "response.completed", "response": resp})
        await out.write_eof()
        return out

    async def get_response(request: web.Request) -> web.Response:
        resp = stored.get(request.match_info["rid"])
        if resp is None:
            return web.json_response(_NO_RESPONSE, status=404)
        return web.json_response(resp)

    async def input_items(request: web.Request) -> web.Response:
        items = inputs.get(request.match_info["rid"])
        if items is None:
            return web.json_response(_NO_RESPONSE, status=404)
        return web.json_response({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                                  "last_id": items[-1]["id"] if items else None, "has_more": False})

    async def embeddings(request: web.Request) -> web.Response:
        body, model, bad = await read_request(request)
        if bad is not None:
            return bad
        given = body.get("input")
        texts = [given] if isinstance(given, str) or (isinstance(given, list) and given and isinstance(given[0], int)) else given or []
        data = [{"object": "embedding", "index": i, "embedding": [0.25, -0.5, float(len(str(t)) % 7)]} for i, t in enumerate(texts)]
        n = sum(len(str(t).split()) for t in texts)
        return web.json_response({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": n, "total_tokens": n}})

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "mock", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", openai)
    app.router.add_post("/v1/completions", openai)
    app.router.add_post("/v1/messages", anthropic)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/responses/{rid}", get_response)
    app.router.add_get("/v1/responses/{rid}/input_items", input_items)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    add_batch_routes(app, batch_s)
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
