"""The OpenAI and Anthropic wire formats: parse requests into one internal shape, render replies,
stream events and errors back in each API's own shape."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Api = Literal["chat.completions", "completions", "messages", "responses"]


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


@dataclass
class Message:
    role: str
    content: str


@dataclass
class ChatRequest:
    """A request in the gateway's internal shape, whichever API it came in on."""

    api: Api
    model: str
    messages: list[Message]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    stream: bool = False
    include_usage: bool = False
    tools: int = 0
    end_user: str | None = None
    reasoning_effort: str | None = None  # Responses API `reasoning.effort`
    previous_response_id: str | None = None  # Responses API, passed to an upstream keeping state

    @property
    def prompt(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return self.messages[-1].content if self.messages else ""


@dataclass
class Reply:
    text: str
    reasoning: str = ""
    finish_reason: Literal["stop", "length"] = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Delta:
    """One piece of a stream; the last one carries `finish_reason` and usage when known."""

    text: str = ""
    reasoning: str = ""
    finish_reason: Literal["stop", "length"] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


ErrorKind = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
]


@dataclass
class ApiError(Exception):
    """An error answered to the client in the API's own error shape."""

    status: int
    kind: ErrorKind
    message: str
    param: str | None = None
    code: str | None = None
    retry_after: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request_error", message, param=param)


def error_body(api: Api, err: ApiError) -> dict[str, Any]:
    if api == "messages":
        kind = "api_error" if err.kind == "timeout_error" else err.kind
        return {"type": "error", "error": {"type": kind, "message": err.message}}
    openai_type = {
        "rate_limit_error": "rate_limit_exceeded",
        "request_too_large": "invalid_request_error",
        "not_found_error": "invalid_request_error",
        "timeout_error": "api_error",
        "overloaded_error": "api_error",
    }.get(err.kind, err.kind)
    return {
        "error": {
            "message": err.message,
            "type": openai_type,
            "param": err.param,
            "code": err.code,
        }
    }


# ---------------------------------------------------------------- parsing


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                if part.get("type") == "text":
                    t = part.get("text", "")
                    if not isinstance(t, str):
                        raise invalid(f"{where}[{i}].text must be a string.", f"{where}[{i}].text")
                    parts.append(t)
                elif part.get("type") == "tool_result":
                    parts.append(_text_of(part.get("content"), f"{where}[{i}].content"))
                elif "type" not in part:
                    raise invalid(f"{where}[{i}] must have a 'type' field.", f"{where}[{i}]")
            else:
                raise invalid(f"{where}[{i}] must be an object or a string.", f"{where}[{i}]")
        return "\n".join(parts)
    raise invalid(f"{where} must be a string or a list of content parts.", where)


#: longest model name a request may give (the events table's `model` column holds 200)
MAX_MODEL_CHARS = 200


def _opt_int(body: dict[str, Any], name: str, lo: int = 1, hi: int = 1_000_000) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():  # JSON Schema counts 5.0 as an integer
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise invalid(f"'{name}' must be an integer, got {type(v).__name__}.", name)
    if not lo <= v <= hi:
        raise invalid(f"'{name}' must be between {lo} and {hi}, got {v}.", name)
    return v


def _opt_float(body: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise invalid(f"'{name}' must be a number, got {type(v).__name__}.", name)
    if not lo <= v <= hi:
        raise invalid(f"'{name}' must be between {lo} and {hi}, got {v}.", name)
    return float(v)


def _stop(body: dict[str, Any], name: str) -> list[str] | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(s, str) for s in v):
        return list(v)
    raise invalid(f"'{name}' must be a string or a list of strings.", name)


def _model(body: dict[str, Any]) -> str:
    m = body.get("model")
    if not isinstance(m, str) or not m:
        raise invalid("'model' is required and must be a non-empty string.", "model")
    if len(m) > MAX_MODEL_CHARS:
        raise invalid(f"'model' must be at most {MAX_MODEL_CHARS} characters, got {len(m)}.", "model")
    return m


def _stream(body: dict[str, Any]) -> bool:
    s = body.get("stream", False)
    if s is None:
        return False
    if not isinstance(s, bool):
        raise invalid("'stream' must be true or false.", "stream")
    return s


def load_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON ({exc}); send a JSON object.") from exc
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object, got {type(body).__name__}.")
    return body


def _tools(body: dict[str, Any]) -> int:
    t = body.get("tools")
    if t is None:
        return 0
    if not isinstance(t, list):
        raise invalid("'tools' must be a list.", "tools")
    return len(t)


# Longest declared end user kept (the store's column): any key holder picks the value, so it is
# bounded; longer ones are cut, not refused (OpenAI caps `safety_identifier` at 64 characters).
END_USER_MAX_CHARS = 256


def _end_user(body: dict[str, Any], *names: str) -> str | None:
    """The end user the client declared: the first of `names` (dotted: inside an object) set."""
    for name in names:
        obj: Any = body
        for part in name.split("."):
            obj = obj.get(part) if isinstance(obj, dict) else None
        if obj is None:
            continue
        if not isinstance(obj, str):
            raise invalid(f"'{name}' must be a string, got {type(obj).__name__}.", name)
        return obj[:END_USER_MAX_CHARS] or None
    return None


def parse_openai_chat(body: dict[str, Any]) -> ChatRequest:
    model = _model(body)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise invalid("'messages' is required and must be a non-empty list.", "messages")
    system: list[str] = []
    messages: list[Message] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise invalid(f"messages[{i}] must be an object.", f"messages[{i}]")
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise invalid(
                f"messages[{i}].role must be one of system, developer, user, assistant, tool; got {role!r}.",
                f"messages[{i}].role",
            )
        if m.get("content") is None and role != "assistant":
            # Only an assistant turn (one that made tool calls) may come without content.
            raise invalid(f"messages[{i}].content is required for a {role} message.",
                          f"messages[{i}].content")
        text = _text_of(m.get("content"), f"messages[{i}].content")
        if role in ("system", "developer"):
            system.append(text)
        else:
            messages.append(Message(str(role), text))
    if not messages:  # only system/developer messages: the instructions are the prompt
        messages, system = [Message("user", "\n".join(system))], []
    legacy_max = _opt_int(body, "max_tokens")
    max_tokens = _opt_int(body, "max_completion_tokens") or legacy_max
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise invalid("'stream_options' must be an object.", "stream_options")
    n = _opt_int(body, "n", 1, 1)
    del n
    return ChatRequest(
        api="chat.completions",
        model=model,
        messages=messages,
        system="\n".join(system) if system else None,
        max_tokens=max_tokens,
        temperature=_opt_float(body, "temperature", 0.0, 2.0),
        top_p=_opt_float(body, "top_p", 0.0, 1.0),
        stop=_stop(body, "stop"),
        stream=_stream(body),
        include_usage=bool(so and so.get("include_usage")),
        tools=_tools(body),
        end_user=_end_user(body, "safety_identifier", "user"),
    )


def parse_openai_completion(body: dict[str, Any]) -> ChatRequest:
    model = _model(body)
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
        p = p[0]
    if not isinstance(p, str):
        raise invalid("'prompt' is required and must be a string (one prompt per request).", "prompt")
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise invalid("'stream_options' must be an object.", "stream_options")
    # one answer per request, as for chat: the gateway watermarks, degrades and captures one
    for name in ("n", "best_of"):
        _opt_int(body, name, 1, 1)
    return ChatRequest(
        api="completions",
        model=model,
        messages=[Message("user", p)],
        max_tokens=_opt_int(body, "max_tokens"),
        temperature=_opt_float(body, "temperature", 0.0, 2.0),
        top_p=_opt_float(body, "top_p", 0.0, 1.0),
        stop=_stop(body, "stop"),
        stream=_stream(body),
        include_usage=bool(so and so.get("include_usage")),
        end_user=_end_user(body, "safety_identifier", "user"),
    )


def parse_anthropic(body: dict[str, Any]) -> ChatRequest:
    model = _model(body)
    max_tokens = _opt_int(body, "max_tokens")
    if max_tokens is None:
        raise invalid("'max_tokens' is required and must be a positive integer.", "max_tokens")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise invalid("'messages' is required and must be a non-empty list.", "messages")
    messages = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise invalid(f"messages.{i} must be an object.", f"messages.{i}")
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise invalid(f"messages.{i}.role must be 'user' or 'assistant', got {role!r}.", f"messages.{i}.role")
        if m.get("content") is None:
            raise invalid(f"messages.{i}.content is required.", f"messages.{i}.content")
        messages.append(Message(str(role), _text_of(m.get("content"), f"messages.{i}.content")))
    system = body.get("system")
    system_text = None if system is None else _text_of(system, "system")
    return ChatRequest(
        api="messages",
        model=model,
        messages=messages,
        system=system_text,
        max_tokens=max_tokens,
        temperature=_opt_float(body, "temperature", 0.0, 1.0),
        top_p=_opt_float(body, "top_p", 0.0, 1.0),
        stop=_stop(body, "stop_sequences"),
        stream=_stream(body),
        tools=_tools(body),
        end_user=_end_user(body, "metadata.user_id"),
    )


def _parse_responses(body: dict[str, Any]) -> ChatRequest:
    from distillguard.gateway._responses import parse_responses  # it imports this module

    return parse_responses(body)


PARSERS = {
    "chat.completions": parse_openai_chat,
    "completions": parse_openai_completion,
    "messages": parse_anthropic,
    "responses": _parse_responses,
}


# ---------------------------------------------------------------- rendering


def render(req: ChatRequest, reply: Reply, rid: str, model: str) -> dict[str, Any]:
    if req.api == "responses":
        from distillguard.gateway._responses import render_response  # it imports this module

        return render_response(req, reply, rid, model)
    created = int(time.time())
    if req.api == "messages":
        content: list[dict[str, Any]] = []
        if reply.reasoning:
            content.append({"type": "thinking", "thinking": reply.reasoning, "signature": ""})
        content.append({"type": "text", "text": reply.text})
        return {
            "id": f"msg_{rid}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "end_turn" if reply.finish_reason == "stop" else "max_tokens",
            "stop_sequence": None,
            "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
        }
    usage = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
    if req.api == "completions":
        return {
            "id": f"cmpl-{rid}",
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"text": reply.text, "index": 0, "logprobs": None, "finish_reason": reply.finish_reason}
            ],
            "usage": usage,
        }
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    return {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}
        ],
        "usage": usage,
    }


class StreamRenderer:
    """Turns internal deltas into the client's SSE events."""

    def __init__(self, req: ChatRequest, rid: str, model: str) -> None:
        self.req = req
        self.model = model
        self.created = int(time.time())
        self.rid = rid
        self._block = -1
        self._block_type = ""

    def _sse_openai(self, choice: dict[str, Any] | None, usage: dict[str, Any] | None = None) -> bytes:
        chunk: dict[str, Any]
        if self.req.api == "completions":
            chunk = {"id": f"cmpl-{self.rid}", "object": "text_completion", "created": self.created, "model": self.model, "choices": [choice] if choice else []}
        else:
            chunk = {"id": f"chatcmpl-{self.rid}", "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": [choice] if choice else []}
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + dumps(chunk) + b"\n\n"

    def _sse_anthropic(self, event: str, data: dict[str, Any]) -> bytes:
        return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"

    def start(self, prompt_tokens: int) -> bytes:
        if self.req.api == "messages":
            msg: dict[str, Any] = {
                "id": f"msg_{self.rid}", "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": 0},
            }
            return self._sse_anthropic("message_start", {"type": "message_start", "message": msg})
        if self.req.api == "completions":
            return b""
        return self._sse_openai({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None})

    def _switch(self, kind: str) -> bytes:
        if self._block_type == kind:
            return b""
        out = self._close_block()
        self._block += 1
        self._block_type = kind
        block: dict[str, Any] = {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": "", "signature": ""}
        return out + self._sse_anthropic("content_block_start", {"type": "content_block_start", "index": self._block, "content_block": block})

    def _close_block(self) -> bytes:
        if self._block < 0 or not self._block_type:
            return b""
        self._block_type = ""
        return self._sse_anthropic("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def delta(self, text: str, reasoning: str = "") -> bytes:
        out = b""
        if self.req.api == "messages":
            if reasoning:
                out += self._switch("thinking")
                out += self._sse_anthropic("content_block_delta", {"type": "content_block_delta", "index": self._block, "delta": {"type": "thinking_delta", "thinking": reasoning}})
            if text:
                out += self._switch("text")
                out += self._sse_anthropic("content_block_delta", {"type": "content_block_delta", "index": self._block, "delta": {"type": "text_delta", "text": text}})
            return out
        if self.req.api == "completions":
            return self._sse_openai({"text": text, "index": 0, "logprobs": None, "finish_reason": None}) if text else b""
        d: dict[str, Any] = {}
        if text:
            d["content"] = text
        if reasoning:
            d["reasoning_content"] = reasoning
        if not d:
            return b""
        return self._sse_openai({"index": 0, "delta": d, "finish_reason": None, "logprobs": None})

    def end(self, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        if self.req.api == "messages":
            out = self._switch("text") if self._block < 0 else b""
            out += self._close_block()
            out += self._sse_anthropic("message_delta", {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn" if finish_reason == "stop" else "max_tokens", "stop_sequence": None},
                "usage": {"output_tokens": completion_tokens},
            })
            return out + self._sse_anthropic("message_stop", {"type": "message_stop"})
        if self.req.api == "completions":
            out = self._sse_openai({"text": "", "index": 0, "logprobs": None, "finish_reason": finish_reason})
        else:
            out = self._sse_openai({"index": 0, "delta": {}, "finish_reason": finish_reason, "logprobs": None})
        if self.req.include_usage:
            out += self._sse_openai(None, {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens})
        return out + b"data: [DONE]\n\n"

    def error(self, err: ApiError) -> bytes:
        return sse_error(self.req.api, err)


def sse_error(api: Api, err: ApiError) -> bytes:
    """The error event that ends a broken stream, in the API's own shape."""
    if api == "responses":
        data = {"type": "error", "code": err.code or err.kind, "message": err.message, "param": err.param, "sequence_number": 0}
        return b"event: error\ndata: " + dumps(data) + b"\n\n"
    body = dumps(error_body(api, err))
    if api == "messages":
        return b"event: error\ndata: " + body + b"\n\n"
    return b"data: " + body + b"\n\n"
