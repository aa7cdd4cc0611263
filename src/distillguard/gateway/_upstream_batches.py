"""Clients of an upstream's own batch API: OpenAI Files + Batch, Anthropic Message Batches.

The gateway forwards an accepted batch here when `batch_via` is `upstream` (see
`_batchupstream.py`): it submits the requests under its own custom ids, looks at the batch
every `batch_poll` seconds, and reads each request's outcome once the upstream has ended it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
import orjson

from distillguard.gateway._protocol import Api, ApiError

#: the `url` of each request line in an OpenAI batch input file, by API
OPENAI_URLS: dict[str, str] = {"chat.completions": "/v1/chat/completions", "completions": "/v1/completions", "responses": "/v1/responses"}
#: OpenAI batch statuses after which nothing more happens
OPENAI_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class Outcome:
    """One request's outcome in an upstream batch: its answer's bytes (`succeeded`), or the
    upstream's error message (`errored`), or nothing (`canceled`, also for expired)."""

    state: Literal["succeeded", "errored", "canceled"]
    status: int
    body: bytes


class UpstreamBatches(Protocol):
    """An upstream's batch API."""

    async def submit(self, api: Api, lines: list[tuple[str, bytes]]) -> str:
        """Submit (custom_id, request body) pairs; the upstream's batch id."""
        ...

    async def ended(self, upstream_id: str) -> bool:
        """Whether the upstream has ended the batch (its results are final)."""
        ...

    async def cancel(self, upstream_id: str) -> None:
        """Ask the upstream to cancel the batch."""
        ...

    async def results(self, upstream_id: str) -> dict[str, Outcome]:
        """Each request's outcome by custom_id (an ended batch)."""
        ...


class _HttpBatches:
    def __init__(self, upstream: Any, timeout: float) -> None:
        self.name: str = upstream.name
        self.base_url: str = upstream.base_url
        # the upstream's own headers (its key), less the JSON content type a multipart upload replaces
        self.headers = {k: v for k, v in upstream._headers().items() if k.lower() != "content-type"}
        self.timeout = timeout

    async def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                got = await client.request(method, self.base_url + path, headers={**self.headers, **kw.pop("headers", {})}, **kw)
        except httpx.HTTPError as exc:
            raise ApiError(502, "api_error", f"The upstream batch API of {self.name} could not be reached ({type(exc).__name__}); retry later.") from exc
        if got.status_code >= 400:
            status = 502 if got.status_code >= 500 else got.status_code
            raise ApiError(status, "api_error", f"The upstream batch API of {self.name} answered HTTP {got.status_code} to {method} {path} "
                           f"({got.text[:200]}).")
        return got

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        got = await self._call(method, path, **kw)
        try:
            data = orjson.loads(got.content)
        except orjson.JSONDecodeError as exc:
            raise ApiError(502, "api_error", f"The upstream batch API of {self.name} sent a non-JSON answer to {method} {path}.") from exc
        if not isinstance(data, dict):
            raise ApiError(502, "api_error", f"The upstream batch API of {self.name} sent a non-object answer to {method} {path}.")
        return data

    def _id(self, data: dict[str, Any], what: str) -> str:
        got = data.get("id")
        if not isinstance(got, str) or not got or len(got) > 200:
            raise ApiError(502, "api_error", f"The upstream batch API of {self.name} gave the {what} no usable id.")
        return got


def _error_message(body: Any) -> bytes:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("error"), dict):  # Anthropic's {"type": "error", "error": {...}}
        err = err["error"]
    msg = err.get("message") if isinstance(err, dict) else None
    return str(msg if msg is not None else body)[:500].encode()


class OpenAIBatches(_HttpBatches):
    """OpenAI Files + Batch at an OpenAI upstream's base URL (…/v1)."""

    async def submit(self, api: Api, lines: list[tuple[str, bytes]]) -> str:
        url = OPENAI_URLS[api]
        data = b"\n".join(b'{"custom_id":%s,"method":"POST","url":"%s","body":%s}' % (orjson.dumps(cid), url.encode(), body) for cid, body in lines)
        f = await self._json("POST", "/files", files={"file": ("batch.jsonl", data, "application/jsonl")}, data={"purpose": "batch"})
        b = await self._json("POST", "/batches", json={"input_file_id": self._id(f, "uploaded file"), "endpoint": url, "completion_window": "24h"})
        return self._id(b, "batch")

    async def ended(self, upstream_id: str) -> bool:
        return (await self._json("GET", f"/batches/{upstream_id}")).get("status") in OPENAI_ENDED

    async def cancel(self, upstream_id: str) -> None:
        await self._call("POST", f"/batches/{upstream_id}/cancel")

    async def results(self, upstream_id: str) -> dict[str, Outcome]:
        b = await self._json("GET", f"/batches/{upstream_id}")
        out: dict[str, Outcome] = {}
        for key in ("output_file_id", "error_file_id"):
            fid = b.get(key)
            if not isinstance(fid, str) or not fid:
                continue
            for line in (await self._call("GET", f"/files/{fid}/content")).content.splitlines():
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a line the upstream garbled: its request reads as without result
                if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str):
                    continue
                resp = obj.get("response")
                if isinstance(resp, dict) and resp.get("status_code") == 200:
                    out[obj["custom_id"]] = Outcome("succeeded", 200, orjson.dumps(resp.get("body")))
                elif isinstance(resp, dict):
                    status = resp.get("status_code")
                    out[obj["custom_id"]] = Outcome("errored", status if isinstance(status, int) and 400 <= status < 600 else 502,
                                                    _error_message(resp.get("body")))
                else:
                    out[obj["custom_id"]] = Outcome("canceled", 499, b"")
        return out


class AnthropicBatches(_HttpBatches):
    """Anthropic Message Batches at an Anthropic upstream's base URL."""

    async def submit(self, api: Api, lines: list[tuple[str, bytes]]) -> str:
        data = b'{"requests":[%s]}' % b",".join(b'{"custom_id":%s,"params":%s}' % (orjson.dumps(cid), body) for cid, body in lines)
        got = await self._call("POST", "/v1/messages/batches", content=data, headers={"content-type": "application/json"})
        try:
            return self._id(orjson.loads(got.content), "message batch")
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise ApiError(502, "api_error", f"The upstream batch API of {self.name} sent an unreadable answer to the new batch.") from exc

    async def ended(self, upstream_id: str) -> bool:
        return (await self._json("GET", f"/v1/messages/batches/{upstream_id}")).get("processing_status") == "ended"

    async def cancel(self, upstream_id: str) -> None:
        await self._call("POST", f"/v1/messages/batches/{upstream_id}/cancel")

    async def results(self, upstream_id: str) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        for line in (await self._call("GET", f"/v1/messages/batches/{upstream_id}/results")).content.splitlines():
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            result = obj.get("result") if isinstance(obj, dict) else None
            if not isinstance(result, dict) or not isinstance(obj.get("custom_id"), str):
                continue
            kind = result.get("type")
            if kind == "succeeded":
                out[obj["custom_id"]] = Outcome("succeeded", 200, orjson.dumps(result.get("message")))
            elif kind == "errored":
                out[obj["custom_id"]] = Outcome("errored", 502, _error_message(result.get("error")))
            else:  # canceled, expired
                out[obj["custom_id"]] = Outcome("canceled", 499, b"")
        return out


def batch_api_for(upstream: Any, timeout: float) -> UpstreamBatches | None:
    """The batch API of an HTTP upstream (OpenAI-compatible or Anthropic); None for others."""
    from distillguard.gateway._upstream import AnthropicUpstream, OpenAIUpstream

    if isinstance(upstream, OpenAIUpstream):
        return OpenAIBatches(upstream, timeout)
    if isinstance(upstream, AnthropicUpstream):
        return AnthropicBatches(upstream, timeout)
    return None
