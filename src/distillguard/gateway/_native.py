"""Pass-through for an upstream that speaks the client's own API.

When an OpenAI client reaches an OpenAI-compatible upstream (or an Anthropic client an
Anthropic upstream), the gateway forwards the client's request bytes and returns the upstream's
answer bytes as they are: nothing is re-serialised, and everything the gateway does not model
(tools and tool calls, `response_format`, logprobs, citations, cache usage) passes through
unchanged. The answer is still read, once, for what capture and limits need: the answer text,
the finish reason and the upstream's token usage. It is rewritten only where policy requires:
a degraded account's reasoning traces get its reasoning defence (withheld, summarised or
rewritten; `distillguard.enforce.served_reasoning`) and, where configured, its code blocks an
equivalent form (`distillguard.enforce.ProgramFilter`), the post-hoc
watermark marks the answer text, and a usage chunk the gateway asked for on the client's behalf
is removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from distillguard.enforce import (
    Decision,
    DegradeConfig,
    ProgramFilter,
    TextDefence,
    ThinkFilter,
    equivalent_programs,
    served_reasoning,
    strip_think,
)
from distillguard.gateway._protocol import Api, ApiError, ChatRequest, Reply
from distillguard.gateway._toolcalls import StreamedCalls, with_tool_calls

_REASONING_KEYS = ("reasoning_content", "reasoning")
#: request fields that would put answer text beside the rewritten one, dropped when the watermark
#: or degrade applies: more choices (the gateway rewrites one), token logprobs (the original
#: tokens), audio output (a second rendering of the answer)
UNREWRITABLE_FIELDS = ("n", "best_of", "logprobs", "top_logprobs", "audio", "modalities")
#: `include` entries of the Responses API dropped for the same reason
UNREWRITABLE_INCLUDES = ("message.output_text.logprobs",)
#: answer fields dropped from a choice when the watermark or degrade applies
_CHOICE_LEAKS = ("logprobs", "audio")
_THINKING_BLOCKS = ("thinking", "redacted_thinking")
#: Anthropic blocks that call a tool (the client's, or one the provider runs)
_TOOL_BLOCKS = ("tool_use", "server_tool_use")


def complete_sse_events(buf: bytes) -> tuple[bytes, bytes]:
    """A server-sent-event buffer (CRLF line ends made LF) split into its complete events, up to
    and with the last blank line (empty when there is none yet), and the rest, which waits for
    more bytes (a CR at its end waits for its LF)."""
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    end = buf.rfind(b"\n\n")
    if end < 0:
        return b"", buf
    return buf[: end + 2], buf[end + 2:]


def _loads_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _finish(reason: Any) -> Any:
    return "length" if reason in ("length", "max_tokens") else "stop"


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def native_request(api: Api, raw: bytes, body: dict[str, Any], req: ChatRequest, cap: int | None, add_usage: bool,
                   rewrite: bool = False) -> bytes:
    """The bytes to send upstream: the client's own, unless max_tokens must be capped, usage
    requested in an OpenAI stream (for the token counts capture and limits need), or the answer
    is rewritten (`rewrite`: watermark or degrade), which drops UNREWRITABLE_FIELDS."""
    leaks = [f for f in UNREWRITABLE_FIELDS if f in body] if rewrite and api != "messages" else []
    # the Responses API asks for token logprobs in `include`
    include = body.get("include") if rewrite and api == "responses" else None
    kept = [i for i in include if i not in UNREWRITABLE_INCLUDES] if isinstance(include, list) else include
    if cap is None and not add_usage and not leaks and kept == include:
        return raw
    out = dict(body)
    for f in leaks:
        del out[f]
    if kept != include:
        out["include"] = kept
    if cap is not None:
        name = "max_output_tokens" if api == "responses" else "max_completion_tokens" if "max_completion_tokens" in out else "max_tokens"
        out[name] = min(req.max_tokens or cap, cap)
        if name == "max_completion_tokens":
            out.pop("max_tokens", None)
    if add_usage:
        so = out.get("stream_options")
        out["stream_options"] = {**(so if isinstance(so, dict) else {}), "include_usage": True}
    return orjson.dumps(out)


@dataclass
class Rewrite:
    """What policy changes in an answer: its reasoning defence, its programs, the text watermarked."""

    degrade: bool = False
    reasoning: TextDefence = "withhold"  # what a degraded answer's reasoning trace becomes
    watermarker: Any = None  # a TextWatermarker (apply(), stream())
    programs: bool = False  # a degraded answer's code blocks in an equivalent form

    @classmethod
    def of(cls, degrade: DegradeConfig, decision: Decision, watermarker: Any = None) -> Rewrite:
        """The changes `decision` calls for under the policy's `degrade` settings."""
        text = degrade.text_defence(decision.defence) if decision.defence is not None else "withhold"
        return cls(decision.degraded, text, watermarker, degrade.programs_for(decision))

    def think_filter(self) -> ThinkFilter | None:
        """A degraded stream's answer-text filter (None when not degraded)."""
        return ThinkFilter(ProgramFilter() if self.programs else None) if self.degrade else None

    @property
    def active(self) -> bool:
        return self.degrade or self.watermarker is not None

    def text(self, text: str) -> tuple[str, str]:
        """(served text, withheld inline reasoning)."""
        inline = ""
        if self.degrade:
            text, inline = strip_think(text)
        if self.programs:
            text = equivalent_programs(text)
        if self.watermarker is not None and text:
            text = self.watermarker.apply(text)
        return text, inline

    def summary(self, reasoning: str) -> str | None:
        """What a degraded answer serves in place of `reasoning` (None: nothing)."""
        return served_reasoning(self.reasoning, reasoning)


class HeldReasoning:
    """A degraded stream's reasoning under a defence that needs the whole trace (summarise,
    rewrite): held back, then served once, just before the answer's first text (or at its end).

    Args:
        defence: the text defence.
        think: the stream's `ThinkFilter`, whose `reasoning` collects inline `<think>` parts.
    """

    def __init__(self, defence: TextDefence, think: ThinkFilter) -> None:
        self.defence = defence
        self.think = think
        self._held: list[str] = []
        self._served = False

    def feed(self, reasoning: str, text: str) -> str:
        """Hold `reasoning`; with the answer's first `text`, the served trace (else "")."""
        if reasoning:
            self._held.append(reasoning)
        return self.finish() if text else ""

    def finish(self) -> str:
        """The served trace, once ("" after that, or when there is none)."""
        if self._served:
            return ""
        self._served = True
        trace = "\n".join(p for p in (*self._held, *self.think.reasoning) if p)
        return served_reasoning(self.defence, trace) or ""


def _bad_answer(upstream: str, why: str) -> ApiError:
    return ApiError(502, "api_error", f"The upstream model server {upstream} sent an unreadable answer ({why}).")


def read_answer(api: Api, raw: bytes, req: ChatRequest, rewrite: Rewrite, upstream: str) -> tuple[bytes, Reply]:
    """Read a JSON answer for capture and limits; rewrite it only where `rewrite` says so.

    Returns the bytes to send to the client and the served answer (text, usage).
    """
    if api == "responses":
        from distillguard.gateway._responses_native import read_response  # it imports this module

        return read_response(raw, req, rewrite, upstream)[:2]
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad_answer(upstream, "not JSON") from exc
    if not isinstance(data, dict):
        raise _bad_answer(upstream, "not a JSON object")
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    if api == "messages":
        content = data.get("content")
        if not isinstance(content, list):
            raise _bad_answer(upstream, "no content")
        texts, reasoning = _anthropic_blocks(content, rewrite)
        text = with_tool_calls("".join(texts), [(b.get("name"), b.get("input")) for b in content
                                                if isinstance(b, dict) and b.get("type") in _TOOL_BLOCKS])
        pt, ct = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        finish = _finish(data.get("stop_reason"))
    else:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ApiError(502, "api_error", f"The upstream model server {upstream} answered without choices.")
        if rewrite.active and len(choices) > 1:
            # the request asked for one choice (native_request); an upstream that sent more
            # anyway must not hand out unrewritten ones
            del choices[1:]
        # every choice is served, so every choice is captured
        text = "\n".join(_openai_choice(api, c, rewrite) for c in choices if isinstance(c, dict))
        pt, ct = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        finish = _finish(choices[0].get("finish_reason"))
        reasoning = ""
    if rewrite.active:
        raw = orjson.dumps(data)
    if pt is None:
        pt = max(1, len(req.prompt) // 4)
    if ct is None:
        ct = max(1, (len(text) + 3) // 4) if text else 0
    return raw, Reply(text, reasoning, finish, pt, ct)


def _openai_choice(api: Api, choice: dict[str, Any], rewrite: Rewrite) -> str:
    """The choice's answer text (rewritten in place when policy says so)."""
    if rewrite.active:
        for k in _CHOICE_LEAKS:
            choice.pop(k, None)
    if api == "completions":
        text = choice.get("text")
        if not isinstance(text, str):
            return ""
        if rewrite.active:
            text, _ = rewrite.text(text)
            choice["text"] = text
        return text
    msg = choice.get("message")
    if not isinstance(msg, dict):
        return ""
    text = msg.get("content")
    text = text if isinstance(text, str) else ""
    if rewrite.active:
        text, inline = rewrite.text(text)
        if isinstance(msg.get("content"), str):
            msg["content"] = text
        if rewrite.degrade:
            withheld = [r for r in (*(msg.pop(k, None) for k in _REASONING_KEYS), inline) if isinstance(r, str) and r]
            summary = rewrite.summary("\n".join(withheld))
            if summary is not None:
                msg["reasoning_content"] = summary
    return with_tool_calls(text, _openai_calls(msg))


def _openai_calls(msg: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(name, arguments) of a chat message's tool calls (and the legacy `function_call`)."""
    calls = msg.get("tool_calls")
    fns = [c.get("function") for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    fns.append(msg.get("function_call"))
    return [(f.get("name"), f.get("arguments")) for f in fns if isinstance(f, dict)]


def _anthropic_blocks(content: list[Any], rewrite: Rewrite) -> tuple[list[str], str]:
    """Text of the answer's text blocks and of its thinking blocks; rewrites `content` in place."""
    texts: list[str] = []
    thinking: list[str] = []
    kept: list[Any] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            if rewrite.active:
                block["text"], inline = rewrite.text(block["text"])
                if inline:
                    thinking.append(inline)
            texts.append(block["text"])
        elif kind in _THINKING_BLOCKS:
            if isinstance(block.get("thinking"), str):
                thinking.append(block["thinking"])
            if rewrite.degrade:
                continue
        kept.append(block)
    if rewrite.degrade:
        summary = rewrite.summary("\n".join(thinking))
        content[:] = ([{"type": "thinking", "thinking": summary, "signature": ""}] if summary else []) + kept
        return texts, summary or ""
    return texts, "\n".join(thinking)


_DATA = re.compile(rb"^data:[ ]?(.+)$", re.MULTILINE)


class _Events:
    """Complete SSE events that passed unchanged, kept to be read in `settle`."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class NativeStream:
    """Reads an upstream SSE stream in the client's own API as it passes through.

    `feed(chunk)` returns the bytes to send on: whole events, as the upstream wrote them
    unless they must change. It notes the end (`[DONE]`, `message_stop`) or an upstream error
    event (forwarded as is); `settle()` then gives the answer text (`parts`), the finish
    reason and the usage. Events that pass unchanged are parsed once, all together, when the
    stream has ended (one JSON call instead of one per event); events that policy rewrites
    are parsed as they pass.

    Args:
        api: the API of both ends.
        rewrite: policy's changes to the answer.
        drop_usage: the client did not ask for usage; the gateway did (OpenAI), so usage
            chunks are removed.
    """

    def __init__(self, api: Api, rewrite: Rewrite, drop_usage: bool = False) -> None:
        self.api = api
        self.rewrite = rewrite
        self.drop_usage = drop_usage
        self.parts: list[str] = []
        self.calls = StreamedCalls()
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.finish = "stop"
        self.done = False
        self.error: str | None = None
        self._buf = b""
        self._edit = rewrite.active or drop_usage
        # per text block (Anthropic) or per stream (OpenAI): think filter and watermark stream
        self._think: ThinkFilter | None = None
        self._wm: Any = None
        self._tail_sent = False
        self._dropped: set[int] = set()
        self._shift = 0
        self._template: dict[str, Any] | None = None
        self._deferred: list[_Events | bytes | dict[str, Any]] = []
        marks = [b"message_stop"] if api == "messages" else [b"[DONE]"]
        self._marks = (*marks, b'"error"', *((b'"usage"',) if drop_usage else ()))
        self._new_text_state()

    def settle(self) -> None:
        """Read the events kept for later: text, finish reason, usage (idempotent)."""
        items, self._deferred = self._deferred, []
        if not items:
            return
        raws: list[bytes] = []
        given: list[tuple[int, dict[str, Any]]] = []  # events already parsed, and where
        for item in items:
            if isinstance(item, _Events):
                raws += _DATA.findall(item.data)
            elif isinstance(item, bytes):
                raws.append(item)
            else:
                given.append((len(raws), item))
                raws.append(b"null")
        try:
            objs: list[Any] = orjson.loads(b"[" + b",".join(raws) + b"]")
        except orjson.JSONDecodeError:  # one bad event: read the others one by one
            objs = [_loads_or_none(p) for p in raws]
        for i, obj in given:
            objs[i] = obj
        if self.api == "messages":
            for obj in objs:
                if isinstance(obj, dict):
                    self._collect_anthropic(obj)
            return
        # OpenAI: the usual chunk read inline (one choice, a delta or a text); others in full
        parts = self.parts
        chat = self.api == "chat.completions"
        for obj in objs:
            try:
                choice = obj["choices"][0]
                text = choice["delta"].get("content") if chat else choice.get("text")
                if choice.get("finish_reason") or "usage" in obj or len(obj["choices"]) > 1 or (chat and "tool_calls" in choice["delta"]):
                    raise LookupError
            except (LookupError, TypeError, AttributeError):
                if isinstance(obj, dict):
                    self._collect_openai(obj)
                continue
            if text and isinstance(text, str):
                parts.append(text)

    def text(self) -> str:
        """The answer as captured: its text, then its tool calls (`_toolcalls.py`)."""
        return with_tool_calls("".join(self.parts), self.calls.calls())

    def _openai_calls(self, delta: Any) -> None:
        """Note the pieces of the tool calls a chat delta carries (they pass untouched)."""
        calls = delta.get("tool_calls") if isinstance(delta, dict) else None
        for tc in calls if isinstance(calls, list) else ():
            if isinstance(tc, dict):
                fn = tc.get("function")
                fn = fn if isinstance(fn, dict) else {}
                self.calls.start(tc.get("index", 0), fn.get("name"))
                self.calls.add(tc.get("index", 0), fn.get("arguments"))

    def _anthropic_call(self, obj: dict[str, Any]) -> None:
        """Note a tool_use block's name and argument pieces (they pass untouched)."""
        kind, index = obj.get("type"), obj.get("index")
        block = obj.get("content_block")
        if kind == "content_block_start" and isinstance(block, dict) and block.get("type") in _TOOL_BLOCKS:
            self.calls.start(index, block.get("name"))
            if block.get("input"):
                self.calls.complete(index, block.get("name"), block["input"])
        delta = obj.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict) and delta.get("type") == "input_json_delta":
            self.calls.add(index, delta.get("partial_json"))

    def _new_text_state(self) -> None:
        self._think = self.rewrite.think_filter()
        self._wm = self.rewrite.watermarker.stream() if self.rewrite.watermarker is not None else None

    def _text(self, text: str) -> str:
        if self._think is not None:
            text = self._think.feed(text)
        if self._wm is not None and text:
            text = self._wm.feed(text)
        return text

    def _tail(self) -> str:
        tail = self._think.finish() if self._think is not None else ""
        if self._wm is not None:
            tail = self._wm.feed(tail) + self._wm.finish() if tail else self._wm.finish()
        self._new_text_state()
        return tail

    def feed(self, chunk: bytes) -> bytes:
        whole, self._buf = complete_sse_events(self._buf + chunk if self._buf else chunk)
        if not whole or self.done:
            return b""
        if self.rewrite.active:
            return self._events(whole)
        # Unchanged events pass as they are and are read in settle(); only the events from the
        # first one that may end the stream, carry an error or a usage to drop are read now.
        cut = len(whole)
        for mark in self._marks:
            i = whole.find(mark)
            if 0 <= i < cut:
                cut = i
        if cut == len(whole):
            self._deferred.append(_Events(whole))
            return whole
        cut = whole.rfind(b"\n\n", 0, cut) + 2 if cut else 0
        cut = 0 if cut == 1 else cut  # no separator before the mark
        if cut:
            self._deferred.append(_Events(whole[:cut]))
        return whole[:cut] + self._events(whole[cut:])

    def _events(self, whole: bytes) -> bytes:
        """Read complete events one by one; the bytes to send for them."""
        out: list[bytes] | None = None  # built only once an event changes
        sent_upto = 0
        for block in whole[:-2].split(b"\n\n"):
            new = self._event(block)
            if new is not None and out is None:
                out = [whole[:sent_upto]]
            if out is not None:
                out.append(block + b"\n\n" if new is None else new)
            sent_upto += len(block) + 2
            if self.done:  # anything after the end is not the client's business
                break
        if out is None:
            return whole if sent_upto >= len(whole) else whole[:sent_upto]
        return b"".join(out)

    def _event(self, block: bytes) -> bytes | None:
        """Read one event; None to send it as it came, else the bytes to send instead."""
        name = b""
        if block.startswith(b"event: "):
            nl = block.find(b"\n")
            name, rest = (block[7:nl], block[nl + 1:]) if nl > 0 else (block[7:], b"")
        else:
            rest = block
        if rest.startswith(b"data: ") and b"\n" not in rest:  # the usual one-line data
            payload = rest[6:]
        else:
            data: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].strip())
                elif line.startswith(b"event:"):
                    name = line[6:].strip()
            if not data:
                return None
            payload = b"\n".join(data)
        if payload == b"[DONE]":
            self.done = True
            tail = self._openai_tail() if self.rewrite.active else b""
            return tail + block + b"\n\n" if tail else None
        if not self.rewrite.active:
            if self.api == "messages":
                if name == b"message_stop":
                    self.done = True
                    return None
                if name not in (b"error", b"") and b'"error"' not in payload[:40]:
                    self._deferred.append(payload)
                    return None
            elif b'"error"' not in payload and not (self.drop_usage and b'"usage"' in payload):
                self._deferred.append(payload)
                return None
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ApiError(502, "api_error", "The upstream model server sent a malformed stream event.") from exc
        if not isinstance(obj, dict):
            return None
        if self.api == "messages":
            return self._anthropic(name.decode(), obj, block)
        return self._openai(obj)

    # ------------------------------------------------------------ OpenAI

    def _openai_tail(self) -> bytes:
        """A last chunk with the held-back text, for a stream that ended without finishing."""
        if self._tail_sent or self._template is None or not self.rewrite.active:
            return b""
        self._tail_sent = True
        tail = self._tail()
        if not tail:
            return b""
        self.parts.append(tail)
        choice: dict[str, Any] = (
            {"index": 0, "text": tail, "finish_reason": None} if self.api == "completions"
            else {"index": 0, "delta": {"content": tail}, "finish_reason": None}
        )
        return b"data: " + orjson.dumps({**self._template, "choices": [choice]}) + b"\n\n"

    def _openai(self, obj: dict[str, Any]) -> bytes | None:
        if "error" in obj and "choices" not in obj:
            self.error = str(obj["error"])[:200]
            self.done = True
            return None
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _int(usage.get("prompt_tokens"))
            self.completion_tokens = _int(usage.get("completion_tokens"))
        choices = obj.get("choices")
        changed = False
        if not self.rewrite.active:
            self._deferred.append(obj)  # its text is read in settle(), in order
        else:
            if self._template is None:
                self._template = {k: v for k, v in obj.items() if k not in ("choices", "usage")}
            if isinstance(choices, list):
                # one choice was asked for (native_request): others are not the client's
                kept = [c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0]
                if len(kept) != len(choices):
                    obj["choices"] = choices = kept
                    changed = True
                for choice in choices:
                    for k in _CHOICE_LEAKS:
                        if choice.pop(k, None) is not None:
                            changed = True
                    changed |= self._openai_choice(choice)
        if self.drop_usage and isinstance(usage, dict):
            if not choices:
                return b""
            del obj["usage"]
            changed = True
        return b"data: " + orjson.dumps(obj) + b"\n\n" if changed else None

    def _collect_openai(self, obj: dict[str, Any]) -> None:
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _int(usage.get("prompt_tokens"))
            self.completion_tokens = _int(usage.get("completion_tokens"))
        choices = obj.get("choices")
        if not choices or not isinstance(choices, list):
            return
        chat = self.api != "completions"
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self.finish = _finish(choice["finish_reason"])
            holder = choice.get("delta") if chat else choice
            if chat and choice.get("index", 0) == 0:
                self._openai_calls(holder)
            text = holder.get("content" if chat else "text") if isinstance(holder, dict) else None
            if text and isinstance(text, str):
                self.parts.append(text)

    def _openai_choice(self, choice: dict[str, Any]) -> bool:
        """Collect (and rewrite) a choice's text; True if it changed. The text held back by
        the think filter or the watermark goes out with the chunk that finishes the choice."""
        finish = choice.get("finish_reason")
        if finish:
            self.finish = _finish(finish)
        if self.api == "completions":
            holder, key = choice, "text"
        else:
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                return False
            self._openai_calls(delta)
            holder, key = delta, "content"
        text = holder.get(key)
        text = text if isinstance(text, str) else ""
        if not self.rewrite.active:
            if text:
                self.parts.append(text)
            return False
        changed = False
        if self.rewrite.degrade and holder is not choice:
            for k in _REASONING_KEYS:
                if holder.pop(k, None) is not None:
                    changed = True
        new = self._text(text) if text else ""
        if finish and not self._tail_sent:
            self._tail_sent = True
            new += self._tail()
        if new != text:
            holder[key] = new
            changed = True
        if new:
            self.parts.append(new)
        return changed

    # ------------------------------------------------------------ Anthropic

    def _collect_anthropic(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "message_start":
            msg = obj.get("message")
            usage = msg.get("usage") if isinstance(msg, dict) else None
            if isinstance(usage, dict):
                self.prompt_tokens = _int(usage.get("input_tokens"))
        elif kind == "message_delta":
            usage = obj.get("usage")
            if isinstance(usage, dict) and _int(usage.get("output_tokens")) is not None:
                self.completion_tokens = usage["output_tokens"]
            delta = obj.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.finish = _finish(delta["stop_reason"])
        elif kind == "content_block_start":
            self._anthropic_call(obj)
        elif kind == "content_block_delta":
            self._anthropic_call(obj)
            delta = obj.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if text and isinstance(text, str):
                    self.parts.append(text)

    def _anthropic(self, name: str, obj: dict[str, Any], block: bytes) -> bytes | None:
        kind = obj.get("type", name)
        if not self.rewrite.active and kind not in ("message_stop", "error"):
            self._deferred.append(obj)  # read in settle(), in order
            return None
        if kind in ("message_start", "message_delta"):
            self._collect_anthropic(obj)
            return None
        if kind == "message_stop":
            self.done = True
            return None
        if kind == "error":
            self.error = str(obj.get("error"))[:200]
            self.done = True
            return None
        index = obj.get("index")
        if not isinstance(index, int) or kind not in ("content_block_start", "content_block_delta", "content_block_stop"):
            return None
        if kind == "content_block_start":
            started = obj.get("content_block")
            if self.rewrite.degrade and isinstance(started, dict) and started.get("type") in _THINKING_BLOCKS:
                self._dropped.add(index)
                self._shift += 1
                return b""
            if self._edit:
                self._new_text_state()
        if index in self._dropped:
            return b""
        self._anthropic_call(obj)
        head = b""
        changed = False
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                text = delta["text"]
                if self.rewrite.active:
                    new = self._text(text)
                    changed = new != text
                    delta["text"] = text = new
                if text:
                    self.parts.append(text)
        elif kind == "content_block_stop" and self.rewrite.active:
            tail = self._tail()
            if tail:
                self.parts.append(tail)
                delta_ev = {"type": "content_block_delta", "index": index - self._shift, "delta": {"type": "text_delta", "text": tail}}
                head = b"event: content_block_delta\ndata: " + orjson.dumps(delta_ev) + b"\n\n"
        if self._shift:
            obj["index"] = index - self._shift
            changed = True
        if not changed:
            return head + block + b"\n\n" if head else None
        return head + b"event: " + str(kind).encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"
