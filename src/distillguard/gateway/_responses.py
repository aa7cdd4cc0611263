"""The OpenAI Responses API (`POST /v1/responses`): requests and translated answers.

A request is parsed into the gateway's internal shape for capture, limits and policy: the
final user input is the prompt, `instructions` (and system or developer items) the system
prompt, `tools` counted, `max_output_tokens` the token cap, `reasoning.effort` kept. An
upstream that speaks the Responses API gets the client's bytes and its answer passes through
(`_responses_native.py`); any other upstream is asked through its chat API and the answer
rendered here as a Response (`render_response`, `ResponsesRenderer`), text only.
"""

from __future__ import annotations

import time
from typing import Any

from distillguard.gateway._protocol import (
    ApiError,
    ChatRequest,
    Message,
    Reply,
    _end_user,
    dumps,
    invalid,
    sse_error,
)

_ROLES = ("user", "assistant", "system", "developer")
#: request fields refused: each would let a client reach upstream state (kept under the
#: provider's one key, so any account's) or get answers past the gateway's policy
_REFUSED = {
    "conversation": "a stored conversation is read with the provider's key, so any account's could be; "
                    "continue with previous_response_id or send the conversation in 'input'",
    "background": "a background response is collected later, past the gateway's policy and capture; "
                  "send the request without it (or with stream)",
}


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
    for name, why in _REFUSED.items():
        if body.get(name) not in (None, False):
            raise invalid(f"'{name}' is not accepted by this gateway: {why}.", name)
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
            elif kind == "item_reference":
                raise invalid(f"{where}: item references read stored items with the provider's key, so any account's could be; "
                              "send the item itself.", where)
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
        end_user=_end_user(body, "safety_identifier", "user"),
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
