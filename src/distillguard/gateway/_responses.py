"""The OpenAI Responses API (`POST /v1/responses`, `GET /v1/responses/{id}`).

A request is parsed into the gateway's internal shape for capture, limits and policy: the
final user input is the prompt, `instructions` (and system or developer items) the system
prompt, `tools` counted, `max_output_tokens` the token cap, `reasoning.effort` kept. An
upstream that speaks the Responses API gets the client's bytes and its answer passes through
(`read_response` and `ResponsesStream` read it for capture and apply policy: degrade withholds
reasoning items and their summaries, the post-hoc watermark marks output text); any other
upstream is asked through its chat API and the answer rendered here as a Response
(`render_response`, `ResponsesRenderer`), text only. `previous_response_id` passes through to
an upstream that keeps state, and only for a response the same account made.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from distillguard.enforce import ThinkFilter
from distillguard.gateway._native import Rewrite
from distillguard.gateway._protocol import (
    ApiError,
    ChatRequest,
    Message,
    Reply,
    dumps,
    invalid,
    sse_error,
)

_ROLES = ("user", "assistant", "system", "developer")


def _opt_int(body: dict[str, Any], name: str, lo: int = 1, hi: int = 1_000_000) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise invalid(f"'{name}' must be an integer between {lo} and {hi}, got {v!r}.", name)
    return v


def _opt_float(body: dict[str, Any], name: str, hi: float) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= hi:
        raise invalid(f"'{name}' must be a number between 0 and {hi:g}, got {v!r}.", name)
    return float(v)


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{where} must be a string or a list of content parts.", where)
    parts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid(f"{where}[{i}] must be an object with a 'type'.", f"{where}[{i}]")
        if part["type"] in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"{where}[{i}].text must be a string.", f"{where}[{i}].text")
            parts.append(text)
    return "\n".join(parts)


def parse_responses(body: dict[str, Any]) -> ChatRequest:
    """A Responses API request in the gateway's internal shape."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required and must be a non-empty string.", "model")
    system: list[str] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid("'instructions' must be a string.", "instructions")
        system.append(instructions)
    items = body.get("input")
    messages: list[Message] = []
    if isinstance(items, str):
        messages.append(Message("user", items))
    elif isinstance(items, list):
        for i, item in enumerate(items):
            where = f"input[{i}]"
            if not isinstance(item, dict):
                raise invalid(f"{where} must be an object.", where)
            kind = item.get("type", "message")
            if kind == "message":
                role = item.get("role")
                if role not in _ROLES:
                    raise invalid(f"{where}.role must be one of {', '.join(_ROLES)}; got {role!r}.", f"{where}.role")
                text = _content_text(item.get("content"), f"{where}.content")
                if role in ("system", "developer"):
                    system.append(text)
                else:
                    messages.append(Message(str(role), text))
            elif kind == "function_call_output":
                out = item.get("output")
                messages.append(Message("tool", out if isinstance(out, str) else _content_text(out, f"{where}.output")))
            # function calls, reasoning items and the like are context the upstream reads
    elif items is not None or body.get("previous_response_id") is None:
        raise invalid("'input' is required and must be a string or a list of input items.", "input")
    if not messages:
        messages = [Message("user", "")]
    prev = body.get("previous_response_id")
    if prev is not None and not isinstance(prev, str):
        raise invalid("'previous_response_id' must be a string.", "previous_response_id")
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise invalid("'reasoning' must be an object.", "reasoning")
    effort = (reasoning or {}).get("effort")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid("'tools' must be a list.", "tools")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise invalid("'stream' must be true or false.", "stream")
    return ChatRequest(
        api="responses",
        model=model,
        messages=messages,
        system="\n".join(system) if system else None,
        max_tokens=_opt_int(body, "max_output_tokens"),
        temperature=_opt_float(body, "temperature", 2.0),
        top_p=_opt_float(body, "top_p", 1.0),
        stream=bool(stream),
        tools=len(tools or []),
        reasoning_effort=effort if isinstance(effort, str) else None,
        previous_response_id=prev,
    )


# ---------------------------------------------------------------- rendering (translated upstreams)


def _usage(pt: int, ct: int) -> dict[str, Any]:
    return {"input_tokens": pt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": ct,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": pt + ct}


def _message_item(rid: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": f"msg_{rid}", "type": "message", "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []}


def _reasoning_item(rid: str, summary: str) -> dict[str, Any]:
    return {"id": f"rs_{rid}", "type": "reasoning", "summary": [{"type": "summary_text", "text": summary}]}


def _response(req: ChatRequest, rid: str, model: str, created: int, status: str, output: list[dict[str, Any]],
              usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": f"resp_{rid}", "object": "response", "created_at": created, "status": status, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.system, "max_output_tokens": req.max_tokens, "model": model, "output": output,
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": req.reasoning_effort, "summary": None}, "store": False,
        "temperature": req.temperature, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": req.top_p, "truncation": "disabled", "usage": usage, "metadata": {},
    }


def render_response(req: ChatRequest, reply: Reply, rid: str, model: str) -> dict[str, Any]:
    """A finished answer as a Response object."""
    output = [_reasoning_item(rid, reply.reasoning)] if reply.reasoning else []
    output.append(_message_item(rid, reply.text))
    status = "incomplete" if reply.finish_reason == "length" else "completed"
    return _response(req, rid, model, int(time.time()), status, output, _usage(reply.prompt_tokens, reply.completion_tokens))


class ResponsesRenderer:
    """Internal deltas as the Responses API's typed stream events (same methods as
    `StreamRenderer`): a reasoning item first when there is reasoning, then one message."""

    def __init__(self, req: ChatRequest, rid: str, model: str) -> None:
        self.req, self.rid, self.model = req, rid, model
        self.created = int(time.time())
        self._seq = 0
        self._index = -1
        self._open = ""  # "reasoning" or "message"
        self._reasoning: list[str] = []
        self._text: list[str] = []
        self._output: list[dict[str, Any]] = []

    def _ev(self, kind: str, **data: Any) -> bytes:
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps({"type": kind, "sequence_number": self._seq - 1, **data}) + b"\n\n"

    def _resp(self, status: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
        return _response(self.req, self.rid, self.model, self.created, status, list(self._output), usage)

    def start(self, prompt_tokens: int) -> bytes:
        del prompt_tokens
        return self._ev("response.created", response=self._resp("in_progress")) + self._ev("response.in_progress", response=self._resp("in_progress"))

    def _close(self) -> bytes:
        if self._open == "reasoning":
            text = "".join(self._reasoning)
            item = _reasoning_item(self.rid, text)
            self._output.append(item)
            out = self._ev("response.reasoning_summary_text.done", item_id=item["id"], output_index=self._index, summary_index=0, text=text)
            out += self._ev("response.reasoning_summary_part.done", item_id=item["id"], output_index=self._index, summary_index=0, part={"type": "summary_text", "text": text})
            out += self._ev("response.output_item.done", output_index=self._index, item=item)
        elif self._open == "message":
            text = "".join(self._text)
            item = _message_item(self.rid, text)
            self._output.append(item)
            part = item["content"][0]
            out = self._ev("response.output_text.done", item_id=item["id"], output_index=self._index, content_index=0, text=text, logprobs=[])
            out += self._ev("response.content_part.done", item_id=item["id"], output_index=self._index, content_index=0, part=part)
            out += self._ev("response.output_item.done", output_index=self._index, item=item)
        else:
            out = b""
        self._open = ""
        return out

    def _switch(self, kind: str) -> bytes:
        if self._open == kind:
            return b""
        out = self._close()
        self._index += 1
        self._open = kind
        if kind == "reasoning":
            item: dict[str, Any] = {"id": f"rs_{self.rid}", "type": "reasoning", "summary": []}
            out += self._ev("response.output_item.added", output_index=self._index, item=item)
            return out + self._ev("response.reasoning_summary_part.added", item_id=item["id"], output_index=self._index, summary_index=0, part={"type": "summary_text", "text": ""})
        item = _message_item(self.rid, "", "in_progress")
        out += self._ev("response.output_item.added", output_index=self._index, item=item)
        return out + self._ev("response.content_part.added", item_id=item["id"], output_index=self._index, content_index=0, part={"type": "output_text", "text": "", "annotations": []})

    def delta(self, text: str, reasoning: str = "") -> bytes:
        out = b""
        if reasoning:
            out += self._switch("reasoning")
            self._reasoning.append(reasoning)
            out += self._ev("response.reasoning_summary_text.delta", item_id=f"rs_{self.rid}", output_index=self._index, summary_index=0, delta=reasoning)
        if text:
            out += self._switch("message")
            self._text.append(text)
            out += self._ev("response.output_text.delta", item_id=f"msg_{self.rid}", output_index=self._index, content_index=0, delta=text, logprobs=[])
        return out

    def end(self, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        out = self._switch("message") if self._open != "message" and not self._text else b""
        out += self._close()
        status = "incomplete" if finish_reason == "length" else "completed"
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        return out + self._ev(kind, response=self._resp(status, _usage(prompt_tokens, completion_tokens)))

    def error(self, err: ApiError) -> bytes:
        return sse_error("responses", err)


# ---------------------------------------------------------------- pass-through answers


def _bad(upstream: str, why: str) -> ApiError:
    return ApiError(502, "api_error", f"The upstream model server {upstream} sent an unreadable answer ({why}).")


def _rewrite_output(output: list[Any], rewrite: Rewrite) -> tuple[list[str], str]:
    """Text of the message items and of the reasoning summaries; `output` rewritten in place."""
    texts: list[str] = []
    reasoning: list[str] = []
    kept = []
    for item in output:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "reasoning":
            reasoning += [s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict)]
            if rewrite.degrade:
                continue
        elif kind == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    if rewrite.active:
                        part["text"], inline = rewrite.text(part["text"])
                        if inline:
                            reasoning.append(inline)
                    texts.append(part["text"])
        kept.append(item)
    if rewrite.degrade:
        summary = rewrite.summary("\n".join(reasoning))
        output[:] = ([{"id": "rs_summary", "type": "reasoning", "summary": [{"type": "summary_text", "text": summary}]}] if summary else []) + kept
        return texts, summary or ""
    return texts, "\n".join(reasoning)


def read_response(raw: bytes, req: ChatRequest, rewrite: Rewrite, upstream: str) -> tuple[bytes, Reply, dict[str, Any]]:
    """Read a Response object for capture and limits, rewritten where policy says; the bytes
    to send, the served answer and the object."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(upstream, "not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        raise _bad(upstream, "no output")
    texts, reasoning = _rewrite_output(data["output"], rewrite)
    text = "".join(texts)
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    pt, ct = usage.get("input_tokens"), usage.get("output_tokens")
    pt = pt if isinstance(pt, int) else max(1, len(req.prompt) // 4)
    ct = ct if isinstance(ct, int) else (max(1, (len(text) + 3) // 4) if text else 0)
    finish = "length" if (data.get("incomplete_details") or {}).get("reason") == "max_output_tokens" else "stop"
    if rewrite.active:
        raw = orjson.dumps(data)
    return raw, Reply(text, reasoning, finish, pt, ct), data  # type: ignore[arg-type]


@dataclass
class _TextState:
    think: ThinkFilter | None
    wm: Any
    text: list[str] = field(default_factory=list)


class ResponsesStream:
    """Reads a Responses API stream as it passes through (same surface as `NativeStream`:
    `feed`, `done`, `error`, `settle`, `parts`, token counts, plus `response_id`).

    Every event is read (these streams are not the gateway's hot path). Under degrade, reasoning
    items and their events are dropped and the later items' `output_index` renumbered; the
    watermark marks each output text delta, sends what it held back as one more delta before the
    text's `done` event, and puts the marked text into the `done` events and the final response.
    """

    _END = ("response.completed", "response.incomplete", "response.failed")

    def __init__(self, rewrite: Rewrite) -> None:
        self.rewrite = rewrite
        self.parts: list[str] = []
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.response_id: str | None = None
        self.done = False
        self.error: str | None = None
        self._buf = b""
        self._dropped: list[int] = []
        self._texts: dict[tuple[str, int], _TextState] = {}
        self._final: dict[tuple[str, int], str] = {}

    def settle(self) -> None:
        return None

    def _index(self, idx: Any) -> Any:
        return idx - sum(1 for d in self._dropped if d < idx) if isinstance(idx, int) else idx

    def _state(self, key: tuple[str, int]) -> _TextState:
        st = self._texts.get(key)
        if st is None:
            st = self._texts[key] = _TextState(ThinkFilter() if self.rewrite.degrade else None,
                                              self.rewrite.watermarker.stream() if self.rewrite.watermarker is not None else None)
        return st

    def feed(self, chunk: bytes) -> bytes:
        buf = (self._buf + chunk).replace(b"\r\n", b"\n")
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return b""
        whole, self._buf = buf[: end + 2], buf[end + 2:]
        if self.done:
            return b""
        out = [self._event(block) for block in whole[:-2].split(b"\n\n") if block.strip()]
        return b"".join(out)

    def _event(self, block: bytes) -> bytes:
        data = b"".join(line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:"))
        if not data or data == b"[DONE]":
            return block + b"\n\n"
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.error = "a malformed stream event"
            return block + b"\n\n"
        if not isinstance(obj, dict):
            return block + b"\n\n"
        kind = str(obj.get("type", ""))
        events = self._apply(kind, obj)
        if events is None:
            return block + b"\n\n"
        return b"".join(b"event: " + str(e.get("type", "")).encode() + b"\ndata: " + dumps(e) + b"\n\n" for e in events)

    def _apply(self, kind: str, obj: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The events to send for one upstream event (None: it passes as it came)."""
        rw = self.rewrite
        resp = obj.get("response") if isinstance(obj.get("response"), dict) else None
        if kind == "response.created" and resp is not None:
            self.response_id = resp.get("id")
        if kind == "error" or kind == "response.failed":
            self.error = str(obj.get("message") or (resp or {}).get("error") or kind)[:200]
        if kind in self._END:
            self.done = True
            usage = (resp or {}).get("usage") or {}
            self.prompt_tokens, self.completion_tokens = usage.get("input_tokens"), usage.get("output_tokens")
            if resp is not None:
                self._finish_response(resp)
            return [obj] if rw.active else None
        if not rw.active:
            if kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
                self.parts.append(obj["delta"])
            return None
        item = obj.get("item") if isinstance(obj.get("item"), dict) else None
        if rw.degrade and (kind.startswith("response.reasoning") or (item is not None and item.get("type") == "reasoning")):
            if kind == "response.output_item.added" and isinstance(obj.get("output_index"), int):
                self._dropped.append(obj["output_index"])
            return []
        if "output_index" in obj:
            obj["output_index"] = self._index(obj["output_index"])
        key = (str(obj.get("item_id", "")), int(obj.get("content_index") or 0))
        if kind == "response.output_text.delta" and isinstance(obj.get("delta"), str):
            st = self._state(key)
            text = obj["delta"]
            if st.think is not None:
                text = st.think.feed(text)
            if st.wm is not None and text:
                text = st.wm.feed(text)
            st.text.append(text)
            self.parts.append(text)
            obj["delta"] = text
            return [obj] if text else []
        if kind == "response.output_text.done":
            st = self._state(key)
            tail = st.think.finish() if st.think is not None else ""
            if st.wm is not None:
                tail = st.wm.feed(tail) + st.wm.finish() if tail else st.wm.finish()
            out = []
            if tail:
                st.text.append(tail)
                self.parts.append(tail)
                out.append({**obj, "type": "response.output_text.delta", "delta": tail, "logprobs": []})
            self._final[key] = obj["text"] = "".join(st.text)
            return [*out, obj]
        if kind == "response.content_part.done" and isinstance(obj.get("part"), dict) and key in self._final:
            obj["part"]["text"] = self._final[key]
        if kind == "response.output_item.done" and item is not None and item.get("type") == "message":
            for i, part in enumerate(item.get("content") or []):
                if isinstance(part, dict) and (str(item.get("id", "")), i) in self._final:
                    part["text"] = self._final[(str(item.get("id", "")), i)]
        return [obj]

    def _finish_response(self, resp: dict[str, Any]) -> None:
        """The final response object: reasoning withheld, texts as they were served."""
        output = resp.get("output")
        if not isinstance(output, list) or not self.rewrite.active:
            return
        if self.rewrite.degrade:
            output[:] = [o for o in output if not (isinstance(o, dict) and o.get("type") == "reasoning")]
        for item in output:
            if isinstance(item, dict) and item.get("type") == "message":
                for i, part in enumerate(item.get("content") or []):
                    key = (str(item.get("id", "")), i)
                    if isinstance(part, dict) and key in self._final:
                        part["text"] = self._final[key]


# ---------------------------------------------------------------- stored responses


async def own_response(ledger: Any, response_id: Any, account_id: str, model: str) -> None:
    """Note that the account made this response (only its owner may read or continue it)."""
    if isinstance(response_id, str) and response_id:
        await asyncio.to_thread(ledger.own_response, response_id[:200], account_id, model)


async def check_previous(ledger: Any, req: ChatRequest, account_id: str, native: bool) -> None:
    """`previous_response_id` needs an upstream that keeps responses, and a response of this
    account's: the upstream is reached with the provider's key, so it would serve anyone's."""
    prev = req.previous_response_id
    if not native:
        raise ApiError(404, "not_found_error", f"No stored response {prev!r}: the model {req.model!r} is served through chat "
                       "translation, which keeps no responses; send the whole conversation in 'input' instead.",
                       param="previous_response_id", code="not_found")
    if prev is None or await asyncio.to_thread(ledger.response_model, prev, account_id) is None:
        raise ApiError(404, "not_found_error", f"No response {prev!r} for this account.", param="previous_response_id", code="not_found")


def responses_router(gw: Any) -> Any:
    """`GET /v1/responses/{id}`: a stored response of the caller's, read from the upstream that
    keeps it and served under policy as when it was made (degrade, watermark)."""
    r = APIRouter(tags=["api"])

    err = {"content": {"application/json": {"schema": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"], "properties": {"message": {"type": "string"}, "type": {"type": "string"}}}}}}}}
    extra = {"security": [{"bearer": []}, {"x-api-key": []}], "responses": {
        "200": {"description": "The stored response", "content": {"application/json": {"schema": {"type": "object", "required": ["id", "output"]}}}},
        **{str(code): {"description": what, **err} for code, what in (
            (401, "Missing, invalid or revoked key"), (403, "Account blocked"), (404, "No such response of this account's"),
            (502, "Upstream failed"), (504, "Upstream timed out"))}}}

    @r.get("/v1/responses/{response_id}", response_class=Response, openapi_extra=extra)
    async def get_response(response_id: str, request: Request) -> Response:
        """A stored response (OpenAI Responses API), for its own account only."""
        auth = await gw.authenticate("responses", request)
        if isinstance(auth, Response):
            return auth
        account = auth.account_id
        try:
            model = await asyncio.to_thread(gw.ledger.response_model, response_id, account)
            upstream = gw.router.resolve(model) if model is not None else None
            if upstream is None or "responses" not in getattr(upstream, "native_apis", ()):
                raise ApiError(404, "not_found_error", f"No stored response {response_id!r} for this account.", code="not_found")
            decision = gw.policy.decide(account)
            if decision.blocked:
                raise ApiError(403, "permission_error", decision.block_message(account), code="account_blocked")
            try:
                async with httpx.AsyncClient(timeout=gw.config.upstream_timeout) as client:
                    got = await client.get(f"{upstream.base_url}/responses/{response_id}", headers=upstream._headers())
            except httpx.HTTPError as exc:
                raise ApiError(502, "api_error", f"The upstream model server {upstream.name} could not be reached ({type(exc).__name__}); retry later.") from exc
            if got.status_code >= 400:
                status = 502 if got.status_code >= 500 else got.status_code
                raise ApiError(status, "not_found_error" if status == 404 else "api_error",
                               f"The upstream model server {upstream.name} answered HTTP {got.status_code} for response {response_id!r}.")
            watermark = gw.watermark_key is not None and not upstream.watermarks_itself
            rewrite = Rewrite(decision.degraded, gw.policy.degrade.reasoning == "summarise",
                              gw.watermark_key.text_watermarker(account) if watermark else None)
            out, _reply, _data = read_response(got.content, parse_responses({"model": model, "input": ""}), rewrite, upstream.name)
        except ApiError as err:
            return gw.error_response("responses", err)  # type: ignore[no-any-return]
        return Response(out, 200, None, "application/json")

    return r
