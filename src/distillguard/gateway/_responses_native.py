"""The Responses API against an upstream that speaks it: answers read for capture and rewritten
under policy as they pass (`read_response`, `ResponsesStream`), and stored responses, which only
the account that made them may read (`GET /v1/responses/{id}`) or continue
(`previous_response_id`). Requests and translated answers are in `_responses.py`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from distillguard.enforce import ThinkFilter
from distillguard.gateway._native import Rewrite, complete_sse_events
from distillguard.gateway._protocol import ApiError, ChatRequest, Reply, dumps
from distillguard.gateway._responses import parse_responses
from distillguard.gateway._toolcalls import StreamedCalls, with_tool_calls

# ---------------------------------------------------------------- pass-through answers


#: output items that call a tool, and where each keeps its arguments
_CALL_ITEMS = {"function_call": "arguments", "custom_tool_call": "input"}


def _call(item: dict[str, Any]) -> tuple[Any, Any]:
    return item.get("name"), item.get(_CALL_ITEMS[item["type"]])


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
                        part.pop("logprobs", None)  # the original tokens', beside the rewritten text
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
    text = with_tool_calls("".join(texts), [_call(o) for o in data["output"] if isinstance(o, dict) and o.get("type") in _CALL_ITEMS])
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
        self.calls = StreamedCalls()
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
            st = self._texts[key] = _TextState(self.rewrite.think_filter(),
                                              self.rewrite.watermarker.stream() if self.rewrite.watermarker is not None else None)
        return st

    def feed(self, chunk: bytes) -> bytes:
        whole, self._buf = complete_sse_events(self._buf + chunk)
        if not whole or self.done:
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
        self._collect_call(kind, obj)
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
        if "logprobs" in obj:  # the original tokens', beside the rewritten text
            obj["logprobs"] = []
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
            obj["part"].pop("logprobs", None)
        if kind == "response.output_item.done" and item is not None and item.get("type") == "message":
            for i, part in enumerate(item.get("content") or []):
                if isinstance(part, dict) and (str(item.get("id", "")), i) in self._final:
                    part["text"] = self._final[(str(item.get("id", "")), i)]
                    part.pop("logprobs", None)
        return [obj]

    def _collect_call(self, kind: str, obj: dict[str, Any]) -> None:
        """Note a tool call's name and arguments for capture (they pass untouched)."""
        at = obj.get("output_index")
        item = obj.get("item")
        if kind in ("response.output_item.added", "response.output_item.done") and isinstance(item, dict) and item.get("type") in _CALL_ITEMS:
            if kind.endswith("added"):
                self.calls.start(at, item.get("name"))
            else:
                self.calls.complete(at, *_call(item))
        elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            self.calls.add(at, obj.get("delta"))

    def text(self) -> str:
        """The answer as captured: its text, then its tool calls (`_toolcalls.py`)."""
        return with_tool_calls("".join(self.parts), self.calls.calls())

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
                        part.pop("logprobs", None)


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


#: query parameters of `GET /v1/responses/{id}/input_items` passed upstream
FORWARDED_QUERY = frozenset({"limit", "order", "after", "include", "include[]"})


def responses_router(gw: Any) -> Any:
    """`GET /v1/responses/{id}`: a stored response of the caller's, read from the upstream that
    keeps it and served under policy as when it was made (degrade, watermark); and its
    `input_items` (the client's own input, passed through)."""
    r = APIRouter(tags=["api"])

    err = {"content": {"application/json": {"schema": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"], "properties": {"message": {"type": "string"}, "type": {"type": "string"}}}}}}}}
    extra: dict[str, Any] = {"security": [{"bearer": []}, {"x-api-key": []}], "responses": {
        "200": {"description": "The stored response", "content": {"application/json": {"schema": {"type": "object", "required": ["id", "output"]}}}},
        **{str(code): {"description": what, **err} for code, what in (
            (401, "Missing, invalid or revoked key"), (403, "Account blocked"), (404, "No such response of this account's"),
            (429, "Too many failed logins from this address"),
            (502, "Upstream failed"), (504, "Upstream timed out"))}}}

    async def fetch(response_id: str, request: Request, tail: str) -> tuple[Any, str, Any, httpx.Response, str] | Response:
        """(upstream, account, decision, its answer, the response's model) for the caller's own stored response, or
        the error response."""
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
            # the query (paging of input items) passes as the client sent it
            query = {k: v for k, v in request.query_params.multi_items() if k in FORWARDED_QUERY}
            try:
                async with httpx.AsyncClient(timeout=gw.config.upstream_timeout) as client:
                    got = await client.get(f"{upstream.base_url}/responses/{response_id}{tail}", headers=upstream._headers(), params=query)
            except httpx.HTTPError as exc:
                raise ApiError(502, "api_error", f"The upstream model server {upstream.name} could not be reached ({type(exc).__name__}); retry later.") from exc
            if got.status_code >= 400:
                status = 502 if got.status_code >= 500 else got.status_code
                raise ApiError(status, "not_found_error" if status == 404 else "api_error",
                               f"The upstream model server {upstream.name} answered HTTP {got.status_code} for response {response_id!r}{tail}.")
        except ApiError as err:
            return gw.error_response("responses", err)  # type: ignore[no-any-return]
        return upstream, account, decision, got, model

    @r.get("/v1/responses/{response_id}", response_class=Response, openapi_extra=extra)
    async def get_response(response_id: str, request: Request) -> Response:
        """A stored response (OpenAI Responses API), for its own account only."""
        got = await fetch(response_id, request, "")
        if isinstance(got, Response):
            return got
        upstream, account, decision, answer, model = got
        watermark = gw.watermark_key is not None and not upstream.watermarks_itself
        rewrite = Rewrite.of(gw.policy.degrade, decision, gw.watermark_key.text_watermarker(account) if watermark else None)
        try:
            out, _reply, _data = read_response(answer.content, parse_responses({"model": model, "input": ""}), rewrite, upstream.name)
        except ApiError as err:
            return gw.error_response("responses", err)  # type: ignore[no-any-return]
        return Response(out, 200, None, "application/json")

    items_extra = {**extra, "responses": {**extra["responses"], "200": {"description": "The response's input items (a list)", "content": {
        "application/json": {"schema": {"type": "object", "required": ["object", "data"]}}}}}}

    @r.get("/v1/responses/{response_id}/input_items", response_class=Response, openapi_extra=items_extra)
    async def input_items(response_id: str, request: Request) -> Response:
        """The input items of a stored response of the caller's (the client's own input, passed
        through; paging with `limit`, `order`, `after`, `include`)."""
        got = await fetch(response_id, request, "/input_items")
        if isinstance(got, Response):
            return got
        return Response(got[3].content, 200, None, "application/json")

    return r
