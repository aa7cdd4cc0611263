"""Upstreams: where the gateway sends a request, chosen by model name.

`Upstream` is the seam: an OpenAI-compatible HTTP server, an Anthropic HTTP server, the
in-process local model (`_local.py`), or `FakeUpstream` for tests.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from distillguard._errors import ConfigError
from distillguard.gateway._http import BadResponse, HttpPool, PoolBusy, Response, header_lines
from distillguard.gateway._protocol import Api, ApiError, ChatRequest, Delta, Reply

log = logging.getLogger("distillguard.gateway")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate, used only where an upstream reports no usage."""
    return max(1, (len(text) + 3) // 4) if text else 0


class Upstream(Protocol):
    """A model server the gateway forwards to."""

    name: str
    #: whether the upstream watermarks at generation time (then no post-hoc watermark).
    watermarks_itself: bool

    async def complete(self, req: ChatRequest, account_id: str) -> Reply: ...

    def stream(self, req: ChatRequest, account_id: str) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...


class FakeUpstream:
    """A deterministic in-process model for tests and demos: answers by echoing the prompt.

    Args:
        reasoning: also return a reasoning trace (to exercise degrade).
        delay: seconds to wait before answering.
    """

    watermarks_itself = False

    def __init__(self, name: str = "fake", reasoning: bool = False, delay: float = 0.0) -> None:
        self.name = name
        self.model_ids = (name,)
        self.reasoning = reasoning
        self.delay = delay

    def _answer(self, req: ChatRequest) -> tuple[str, str, str]:
        words = f"You asked: {req.prompt}".split()
        cap = req.max_tokens or 64
        finish = "length" if len(words) > cap else "stop"
        reasoning = f"Let me think about '{req.prompt[:40]}'. First, restate it. Then answer." if self.reasoning else ""
        return " ".join(words[:cap]), reasoning, finish

    async def complete(self, req: ChatRequest, account_id: str) -> Reply:
        if self.delay:
            await asyncio.sleep(self.delay)
        text, reasoning, finish = self._answer(req)
        prompt_tokens = estimate_tokens((req.system or "") + " ".join(m.content for m in req.messages))
        return Reply(text, reasoning, finish, prompt_tokens, len(text.split()))  # type: ignore[arg-type]

    async def stream(self, req: ChatRequest, account_id: str) -> AsyncIterator[Delta]:
        if self.delay:
            await asyncio.sleep(self.delay)
        text, reasoning, finish = self._answer(req)
        if reasoning:
            yield Delta(reasoning=reasoning)
        words = text.split(" ")
        for i, w in enumerate(words):
            yield Delta(text=w if i == 0 else " " + w)
        prompt_tokens = estimate_tokens((req.system or "") + " ".join(m.content for m in req.messages))
        yield Delta(finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=len(words))  # type: ignore[arg-type]

    async def aclose(self) -> None:
        return None


def _finish(reason: Any) -> Any:
    return "length" if reason in ("length", "max_tokens") else "stop"


class _HttpUpstream:
    watermarks_itself = False

    def __init__(self, name: str, base_url: str, api_key: str | None, timeout: float, connections: int,
                 acquire_timeout: float = 10.0) -> None:
        self.name = name
        self.acquire_timeout = acquire_timeout
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.connections = connections
        self._header_lines: bytes | None = None
        try:
            self._pool = self._new_pool()
        except ValueError as exc:
            raise ConfigError(f"The upstream URL {base_url!r} has no usable host or port; use http(s)://HOST[:PORT]/PATH.") from exc

    def _new_pool(self) -> HttpPool:
        return HttpPool(self.base_url, self.connections, connect_timeout=min(self.timeout, 10.0), read_timeout=self.timeout,
                        acquire_timeout=self.acquire_timeout)

    def _get_pool(self) -> HttpPool:
        if self._pool.closed:  # closed with the gateway; it may start again
            self._pool = self._new_pool()
        return self._pool

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _header_block(self) -> bytes:
        """The fixed request headers as ready-made lines (checked when the upstream is built)."""
        try:
            return header_lines(self._headers())
        except ValueError as exc:
            raise ConfigError(f"The headers for the upstream {self.name} are not valid HTTP ({exc}); check DISTILLGUARD_UPSTREAM_API_KEY for line breaks.") from exc

    async def _post(self, path: str, body: dict[str, Any] | bytes) -> Response:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        if self._header_lines is None:
            self._header_lines = self._header_block()
        try:
            resp = await self._get_pool().post(path, data, self._header_lines)
        except PoolBusy as exc:
            raise ApiError(503, "overloaded_error", f"Every connection to the upstream model server {self.name} stayed busy for {self.acquire_timeout:g} s; retry later.",
                           retry_after=1) from exc
        except TimeoutError as exc:
            raise ApiError(504, "timeout_error", f"The upstream model server {self.name} did not answer within {self.timeout:g} s; retry later.") from exc
        except BadResponse as exc:
            raise self._answer_error(exc) from exc
        except OSError as exc:
            raise ApiError(502, "api_error", f"The upstream model server {self.name} could not be reached ({type(exc).__name__}); retry later.") from exc
        if resp.status >= 400:
            try:
                detail = (await resp.read()).decode("utf-8", "replace")[:300]
            except (TimeoutError, OSError, BadResponse):
                detail = "the error's body could not be read"
            finally:
                resp.release()
            if resp.status >= 500:
                raise ApiError(502, "api_error", f"The upstream model server {self.name} failed with HTTP {resp.status} ({detail}); retry later.")
            raise ApiError(resp.status, "invalid_request_error", f"The upstream model server {self.name} refused the request with HTTP {resp.status} ({detail}); check the request against the upstream's API.")
        return resp

    def _answer_error(self, exc: Exception) -> ApiError:
        """The API error for an answer that timed out or could not be read."""
        if isinstance(exc, TimeoutError):
            return ApiError(504, "timeout_error", f"The upstream model server {self.name} did not finish its answer within {self.timeout:g} s.")
        return ApiError(502, "api_error", f"The upstream model server {self.name} sent an unreadable answer ({type(exc).__name__}).")

    def _stream_error(self, exc: Exception) -> ApiError:
        """The API error for a stream that stalled or broke."""
        if isinstance(exc, TimeoutError):
            return ApiError(504, "timeout_error", f"The upstream model server {self.name} stalled mid-stream for {self.timeout:g} s.")
        return ApiError(502, "api_error", f"The upstream model server {self.name} broke the stream ({type(exc).__name__}); retry the request.")

    async def _json(self, path: str, body: dict[str, Any]) -> Any:
        resp = await self._post(path, body)
        try:
            return orjson.loads(await resp.read())
        except (TimeoutError, ValueError, OSError, BadResponse) as exc:
            raise self._answer_error(exc) from exc
        finally:
            resp.release()

    async def _events(self, path: str, body: dict[str, Any]) -> AsyncIterator[list[tuple[str, Any]]]:
        """POST and yield the SSE answer's (event, data) pairs, one list per network read (so a
        fast upstream's many small events cost one downstream write); ("done", None) ends it.
        Raises ApiError if the stream breaks."""
        resp = await self._post(path, body)
        event = ""
        buf = b""
        try:
            while chunk := await resp.next_chunk():
                *lines, buf = (buf + chunk).split(b"\n")
                out: list[tuple[str, Any]] = []
                for raw in lines:
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = line[5:].strip()
                        if data == "[DONE]":
                            out.append(("done", None))
                            yield out
                            return
                        try:
                            out.append((event, orjson.loads(data)))
                        except ValueError as exc:
                            raise ApiError(502, "api_error", f"The upstream model server {self.name} sent a malformed stream event.") from exc
                        event = ""
                if out:
                    yield out
        except (TimeoutError, OSError, BadResponse) as exc:
            raise self._stream_error(exc) from exc
        finally:
            resp.release()

    # ------------------------------------------------------------ pass-through (see _native.py)

    #: the client APIs this upstream speaks itself: their requests and answers pass as bytes.
    native_apis: frozenset[str] = frozenset()

    def _native_path(self, api: Api) -> str:
        raise NotImplementedError

    async def forward(self, api: Api, payload: bytes) -> bytes:
        """POST the client's request bytes; the answer's bytes (ApiError on failure)."""
        resp = await self._post(self._native_path(api), payload)
        try:
            return await resp.read()
        except (TimeoutError, OSError, BadResponse) as exc:
            raise self._answer_error(exc) from exc
        finally:
            resp.release()

    async def forward_stream(self, api: Api, payload: bytes) -> AsyncIterator[bytes]:
        """POST the client's request bytes; yield the SSE answer's bytes as they arrive."""
        resp = await self._post(self._native_path(api), payload)
        try:
            while chunk := await resp.next_chunk():
                yield chunk
        except (TimeoutError, OSError, BadResponse) as exc:
            raise self._stream_error(exc) from exc
        finally:
            resp.release()

    async def aclose(self) -> None:
        await self._pool.aclose()


class OpenAIUpstream(_HttpUpstream):
    """Any OpenAI-compatible server (vLLM, Ollama, llama.cpp, a provider's own) at `base_url` (…/v1)."""

    native_apis = frozenset({"chat.completions", "completions"})

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0, connections: int = 256, name: str = "openai",
                 acquire_timeout: float = 10.0, responses: bool = False) -> None:
        super().__init__(name, base_url, api_key, timeout, connections, acquire_timeout)
        if responses:  # it speaks the Responses API too (and keeps responses by id)
            self.native_apis = frozenset({"chat.completions", "completions", "responses"})
        self._hdrs = {"content-type": "application/json"}
        if api_key:
            self._hdrs["authorization"] = f"Bearer {api_key}"
        self._header_lines = self._header_block()

    def _headers(self) -> dict[str, str]:
        return self._hdrs

    def _native_path(self, api: Api) -> str:
        return {"completions": "/completions", "responses": "/responses", "embeddings": "/embeddings"}.get(api, "/chat/completions")

    def _body(self, req: ChatRequest, stream: bool) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": req.model}
        if req.api == "completions":
            path = "/completions"
            body["prompt"] = req.prompt
        else:
            path = "/chat/completions"
            msgs = [{"role": "system", "content": req.system}] if req.system else []
            msgs += [{"role": m.role, "content": m.content} for m in req.messages]
            body["messages"] = msgs
        for k in ("max_tokens", "temperature", "top_p", "stop"):
            v = getattr(req, k)
            if v is not None:
                body[k] = v
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return path, body

    @staticmethod
    def _text(choice: dict[str, Any], api: str) -> tuple[str, str]:
        if api == "completions":
            return str(choice.get("text") or ""), ""
        m = choice.get("message") or choice.get("delta") or {}
        return str(m.get("content") or ""), str(m.get("reasoning_content") or m.get("reasoning") or "")

    async def complete(self, req: ChatRequest, account_id: str) -> Reply:
        path, body = self._body(req, False)
        data = await self._json(path, body)
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise ApiError(502, "api_error", f"The upstream model server {self.name} answered without choices.") from exc
        text, reasoning = self._text(choice, req.api)
        usage = data.get("usage") or {}
        return Reply(
            text, reasoning, _finish(choice.get("finish_reason")),
            int(usage.get("prompt_tokens") or estimate_tokens(req.prompt)),
            int(usage.get("completion_tokens") or estimate_tokens(text)),
        )

    async def stream(self, req: ChatRequest, account_id: str) -> AsyncIterator[Delta]:
        path, body = self._body(req, True)
        finish: Any = None
        usage: dict[str, Any] = {}
        n_text = 0
        async for batch in self._events(path, body):
            texts: list[str] = []
            reasonings: list[str] = []
            done = False
            for event, data in batch:
                if event == "done":
                    done = True
                    break
                if not isinstance(data, dict):
                    continue
                if "error" in data:
                    raise ApiError(502, "api_error", f"The upstream model server {self.name} failed mid-stream ({str(data['error'])[:200]}); retry the request.")
                if data.get("usage"):
                    usage = data["usage"]
                for choice in data.get("choices") or []:
                    text, reasoning = self._text(choice, req.api)
                    if choice.get("finish_reason"):
                        finish = _finish(choice["finish_reason"])
                    if text or reasoning:
                        n_text += 1
                        texts.append(text)
                        reasonings.append(reasoning)
            delta = Delta(text="".join(texts), reasoning="".join(reasonings))
            if done:
                delta.finish_reason = finish or "stop"
                delta.prompt_tokens = usage.get("prompt_tokens")
                delta.completion_tokens = usage.get("completion_tokens") or n_text
                yield delta
                return
            if delta.text or delta.reasoning:
                yield delta
        raise ApiError(502, "api_error", f"The upstream model server {self.name} ended the stream without [DONE].")


class AnthropicUpstream(_HttpUpstream):
    """An Anthropic Messages API server at `base_url` (e.g. https://api.anthropic.com)."""

    native_apis = frozenset({"messages"})

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0, connections: int = 256, name: str = "anthropic",
                 acquire_timeout: float = 10.0) -> None:
        super().__init__(name, base_url, api_key, timeout, connections, acquire_timeout)
        self._hdrs = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
        if api_key:
            self._hdrs["x-api-key"] = api_key
        self._header_lines = self._header_block()

    def _headers(self) -> dict[str, str]:
        return self._hdrs

    def _native_path(self, api: Api) -> str:
        return "/v1/messages"

    def _body(self, req: ChatRequest, stream: bool) -> dict[str, Any]:
        msgs = [{"role": "assistant" if m.role == "assistant" else "user", "content": m.content} for m in req.messages]
        body: dict[str, Any] = {"model": req.model, "messages": msgs, "max_tokens": req.max_tokens or 1024}
        if req.system:
            body["system"] = req.system
        if req.temperature is not None:
            body["temperature"] = min(req.temperature, 1.0)
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.stop:
            body["stop_sequences"] = req.stop
        if stream:
            body["stream"] = True
        return body

    async def complete(self, req: ChatRequest, account_id: str) -> Reply:
        data = await self._json("/v1/messages", self._body(req, False))
        text, reasoning = [], []
        for block in data.get("content") or []:
            if block.get("type") == "text":
                text.append(block.get("text") or "")
            elif block.get("type") == "thinking":
                reasoning.append(block.get("thinking") or "")
        usage = data.get("usage") or {}
        t = "".join(text)
        return Reply(t, "".join(reasoning), _finish(data.get("stop_reason")),
                     int(usage.get("input_tokens") or estimate_tokens(req.prompt)),
                     int(usage.get("output_tokens") or estimate_tokens(t)))

    async def stream(self, req: ChatRequest, account_id: str) -> AsyncIterator[Delta]:
        prompt_tokens: int | None = None
        out_tokens: int | None = None
        finish: Any = "stop"
        async for batch in self._events("/v1/messages", self._body(req, True)):
            texts: list[str] = []
            reasonings: list[str] = []
            stop = False
            for event, data in batch:
                kind = data.get("type", event) if isinstance(data, dict) else event
                if kind == "message_start":
                    prompt_tokens = ((data.get("message") or {}).get("usage") or {}).get("input_tokens")
                elif kind == "content_block_delta":
                    d = data.get("delta") or {}
                    if d.get("type") == "text_delta":
                        texts.append(d.get("text") or "")
                    elif d.get("type") == "thinking_delta":
                        reasonings.append(d.get("thinking") or "")
                elif kind == "message_delta":
                    out_tokens = (data.get("usage") or {}).get("output_tokens", out_tokens)
                    finish = _finish((data.get("delta") or {}).get("stop_reason"))
                elif kind == "message_stop":
                    stop = True
                    break
                elif kind == "error":
                    raise ApiError(502, "api_error", f"The upstream model server {self.name} failed mid-stream ({str(data.get('error'))[:200]}); retry the request.")
            delta = Delta(text="".join(texts), reasoning="".join(reasonings))
            if stop:
                delta.finish_reason, delta.prompt_tokens, delta.completion_tokens = finish, prompt_tokens, out_tokens
                yield delta
                return
            if delta.text or delta.reasoning:
                yield delta
        raise ApiError(502, "api_error", f"The upstream model server {self.name} ended the stream without message_stop.")


#: most model names the router remembers, and the longest it remembers (so at most ~2 MB)
ROUTE_CACHE_NAMES = 10_000
ROUTE_CACHE_NAME_CHARS = 200


@dataclass
class Route:
    pattern: str
    upstream: Upstream


class Router:
    """Chooses an upstream by model name; patterns are shell-style (`gpt-*`), first match wins."""

    def __init__(self, routes: list[Route] | None = None) -> None:
        self.routes: list[Route] = list(routes or [])
        self._cache: dict[str, Upstream | None] = {}

    def add(self, pattern: str, upstream: Upstream) -> None:
        """Add a route; catch-all `*` routes stay behind the more specific ones."""
        route = Route(pattern, upstream)
        if pattern == "*":
            self.routes.append(route)
        else:
            i = next((i for i, r in enumerate(self.routes) if r.pattern == "*"), len(self.routes))
            self.routes.insert(i, route)
        self._cache.clear()

    def resolve(self, model: str, remember: bool = True) -> Upstream | None:
        """The upstream for `model`. With `remember` False the answer is not cached: the
        gateway caches a name only once policy and limits let its request through
        (`remember`), so refused requests cannot fill the cache with names."""
        if model in self._cache:
            return self._cache[model]
        hit = next((r.upstream for r in self.routes if fnmatch.fnmatchcase(model, r.pattern)), None)
        if remember:
            self.remember(model, hit)
        return hit

    def remember(self, model: str, hit: Upstream | None) -> None:
        if len(self._cache) < ROUTE_CACHE_NAMES and len(model) <= ROUTE_CACHE_NAME_CHARS:
            self._cache[model] = hit

    def models(self) -> list[str]:
        """Model ids a client can send: each literal route, and for a pattern route (`*`,
        `gpt-*`) the ids its upstream names (`model_ids`), never the pattern itself."""
        out: list[str] = []
        for r in self.routes:
            if not any(ch in r.pattern for ch in "*?["):
                ids = [r.pattern]
            else:
                ids = [m for m in getattr(r.upstream, "model_ids", ()) if fnmatch.fnmatchcase(m, r.pattern)]
            out.extend(m for m in ids if m not in out)
        return out

    async def aclose(self) -> None:
        seen: set[int] = set()
        for r in self.routes:
            if id(r.upstream) not in seen:
                seen.add(id(r.upstream))
                try:
                    await r.upstream.aclose()
                except Exception:  # noqa: BLE001 - closing is best effort
                    log.warning("closing upstream %s failed", r.upstream.name, exc_info=True)
