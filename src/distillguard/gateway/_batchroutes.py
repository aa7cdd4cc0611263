"""HTTP routes of the batch APIs: OpenAI Files and Batch, Anthropic Message Batches (the
service behind them is `_batches.BatchService`)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from distillguard.gateway._batches import (
    MAX_NAME,
    OPENAI_ENDPOINTS,
    BatchService,
    body_too_slow,
    epoch_s,
)
from distillguard.gateway._keys import KeyRecord
from distillguard.gateway._protocol import Api, ApiError, dumps, invalid, load_body
from distillguard.gateway._store import bound_text, now_us

log = logging.getLogger("distillguard.gateway")

_JSON = "application/json"
_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: problems in a batch's form reported at once (the first ones, by line)
MAX_PROBLEMS = 10


def _json(obj: Any, status: int = 200) -> Response:
    return Response(dumps(obj), status, None, _JSON)


def batch_router(svc: BatchService) -> APIRouter:
    """The OpenAI Files/Batch and Anthropic Message Batches routes."""
    gw = svc.gw
    r = APIRouter(tags=["batches"])

    async def guarded(api: Api, request: Request, fn: Callable[[KeyRecord], Awaitable[Response]]) -> Response:
        auth = await svc._auth(api, request)
        if isinstance(auth, Response):
            return auth
        try:
            return await fn(auth)
        except ApiError as err:
            log.info("%d %s account=%s: %s", err.status, request.url.path, auth.account_id, err.message)
            return gw.error_response(api, err)

    def not_found(what: str, ident: str) -> ApiError:
        return ApiError(404, "not_found_error", f"No {what} {ident!r} for this account.", code="not_found")

    async def account_batch(rec: KeyRecord, batch_id: str, api: str, what: str) -> dict[str, Any]:
        """The account's batch `batch_id` made through `api` ("openai" or "anthropic"); a 404
        naming it `what` when there is none (another account's batch is not revealed)."""
        b = await asyncio.to_thread(svc.store.get, batch_id, rec.account_id)
        if b is None or b["api"] != api:
            raise not_found(what, batch_id)
        return b

    # ------------------------------------------------------------ OpenAI files

    @r.post("/v1/files")
    async def create_file(request: Request) -> Response:
        """Upload a batch input file (multipart: `file`, `purpose=batch`)."""
        async def go(rec: KeyRecord) -> Response:
            limit = gw.config.batch_max_bytes
            cl = request.headers.get("content-length")
            if cl is not None and cl.isdigit() and int(cl) > limit:
                raise ApiError(413, "request_too_large", f"The file is larger than the gateway's limit of {limit} bytes; split it.")
            try:
                async with asyncio.timeout(gw.config.body_timeout):  # a slow upload holds a connection
                    form = await request.form(max_files=1, max_fields=8)
            except TimeoutError as exc:
                raise body_too_slow(gw.config.body_timeout) from exc
            except Exception as exc:  # starlette raises its own errors for malformed multipart
                raise invalid(f"The upload is not a valid multipart form ({exc}); send 'file' and 'purpose'.") from exc
            purpose, upload = form.get("purpose"), form.get("file")
            if purpose != "batch":
                raise invalid(f"This gateway takes files for purpose 'batch' only, got {purpose!r}.", "purpose")
            if upload is None or isinstance(upload, str):
                raise invalid("The form has no 'file' part.", "file")
            content = await upload.read(limit + 1)
            if len(content) > limit:
                raise ApiError(413, "request_too_large", f"The file is larger than the gateway's limit of {limit} bytes; split it.")
            row = {"file_id": "file-" + svc._new_id(), "account_id": rec.account_id, "purpose": "batch",
                   "filename": bound_text(upload.filename or "batch.jsonl", 300), "bytes": len(content), "created_us": now_us(), "content": content}
            await asyncio.to_thread(svc.store.add_file, row)
            return _json(_file_obj(row))
        return await guarded("chat.completions", request, go)

    @r.get("/v1/files")
    async def list_files(request: Request, limit: int = 100) -> Response:
        """The account's uploaded files."""
        async def go(rec: KeyRecord) -> Response:
            rows = await asyncio.to_thread(svc.store.list_files, rec.account_id, max(1, min(limit, 10_000)))
            return _json({"object": "list", "data": [_file_obj(f) for f in rows], "has_more": False})
        return await guarded("chat.completions", request, go)

    async def output_file(rec: KeyRecord, file_id: str) -> tuple[dict[str, Any], bool] | None:
        m = re.fullmatch(r"file-(batch_[0-9a-f]+)-(output|errors)", file_id)
        if m is None:
            return None
        b = await asyncio.to_thread(svc.store.get, m.group(1), rec.account_id)
        if b is None or b["status"] not in ("completed", "cancelled"):
            return None
        return b, m.group(2) == "errors"

    @r.get("/v1/files/{file_id}")
    async def get_file(file_id: str, request: Request) -> Response:
        """A file's metadata (uploaded, or a finished batch's output or errors)."""
        async def go(rec: KeyRecord) -> Response:
            out = await output_file(rec, file_id)
            if out is not None:
                data = await svc.openai_output(*out)
                return _json(_file_obj({"file_id": file_id, "bytes": len(data), "created_us": out[0]["ended_us"],
                                        "filename": f"{file_id}.jsonl", "purpose": "batch_output"}))
            f = await asyncio.to_thread(svc.store.get_file, file_id, rec.account_id)
            if f is None:
                raise not_found("file", file_id)
            return _json(_file_obj(f))
        return await guarded("chat.completions", request, go)

    @r.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str, request: Request) -> Response:
        """Delete an uploaded file (a batch made from it keeps its requests)."""
        async def go(rec: KeyRecord) -> Response:
            if not await asyncio.to_thread(svc.store.delete_file, file_id, rec.account_id):
                raise not_found("uploaded file", file_id)
            return _json({"id": file_id, "object": "file", "deleted": True})
        return await guarded("chat.completions", request, go)

    @r.get("/v1/files/{file_id}/content")
    async def file_content(file_id: str, request: Request) -> Response:
        """A file's bytes: an uploaded file, or a finished batch's output or errors (JSONL)."""
        async def go(rec: KeyRecord) -> Response:
            out = await output_file(rec, file_id)
            if out is not None:
                return Response(await svc.openai_output(*out), 200, None, "application/jsonl")
            f = await asyncio.to_thread(svc.store.get_file, file_id, rec.account_id, True)
            if f is None:
                raise not_found("file", file_id)
            return Response(bytes(f["content"]), 200, None, "application/jsonl")
        return await guarded("chat.completions", request, go)

    # ------------------------------------------------------------ OpenAI batches

    @r.post("/v1/batches")
    async def create_batch(request: Request) -> Response:
        """Create a batch from an uploaded file; its requests are checked and captured now."""
        async def go(rec: KeyRecord) -> Response:
            body = load_body(await svc._read(request))
            file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
            if not isinstance(file_id, str):
                raise invalid("'input_file_id' is required.", "input_file_id")
            if endpoint not in OPENAI_ENDPOINTS:
                raise invalid(f"'endpoint' must be one of {', '.join(OPENAI_ENDPOINTS)}; got {endpoint!r}.", "endpoint")
            if body.get("completion_window", "24h") != "24h":
                raise invalid("'completion_window' must be '24h'.", "completion_window")
            meta = body.get("metadata")
            if meta is not None and not isinstance(meta, dict):
                raise invalid("'metadata' must be an object.", "metadata")
            f = await asyncio.to_thread(svc.store.get_file, file_id, rec.account_id, True)
            if f is None:
                raise not_found("file", file_id)
            items, labels, problems = await asyncio.to_thread(_openai_lines, bytes(f["content"]), str(endpoint),
                                                              gw.config.batch_max_requests, gw.config.max_body_bytes)
            b = await svc.submit("openai", rec, request, items, {"input_file_id": file_id, "completion_window": "24h",
                                                                 "metadata": dumps(meta).decode() if meta else None}, labels, problems)
            return _json(await svc.openai_batch(b))
        return await guarded("chat.completions", request, go)

    @r.get("/v1/batches")
    async def list_batches(request: Request, limit: int = 20, after: str | None = None) -> Response:
        """The account's batches, newest first (`after` pages)."""
        async def go(rec: KeyRecord) -> Response:
            n = max(1, min(limit, 100))
            rows = await asyncio.to_thread(svc.store.list_batches, rec.account_id, "openai", n + 1, after)
            data = [await svc.openai_batch(b) for b in rows[:n]]
            return _json({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": len(rows) > n})
        return await guarded("chat.completions", request, go)

    @r.get("/v1/batches/{batch_id}")
    async def get_batch(batch_id: str, request: Request) -> Response:
        """A batch and its request counts."""
        async def go(rec: KeyRecord) -> Response:
            return _json(await svc.openai_batch(await account_batch(rec, batch_id, "openai", "batch")))
        return await guarded("chat.completions", request, go)

    @r.post("/v1/batches/{batch_id}/cancel")
    async def cancel_batch(batch_id: str, request: Request) -> Response:
        """Cancel a batch: requests not yet run are not run."""
        async def go(rec: KeyRecord) -> Response:
            await account_batch(rec, batch_id, "openai", "batch")
            await asyncio.to_thread(svc.store.request_cancel, batch_id)
            return _json(await svc.openai_batch(await account_batch(rec, batch_id, "openai", "batch")))
        return await guarded("chat.completions", request, go)

    # ------------------------------------------------------------ Anthropic message batches

    @r.post("/v1/messages/batches")
    async def create_message_batch(request: Request) -> Response:
        """Create a Message Batch; its requests are checked and captured now."""
        async def go(rec: KeyRecord) -> Response:
            body = load_body(await svc._read(request))
            items, problems = await asyncio.to_thread(_anthropic_items, body.get("requests"), gw.config.batch_max_requests, gw.config.max_body_bytes)
            b = await svc.submit("anthropic", rec, request, items, {}, problems=problems)
            return _json(await svc.anthropic_batch(b, str(request.base_url)))
        return await guarded("messages", request, go)

    @r.get("/v1/messages/batches")
    async def list_message_batches(request: Request, limit: int = 20, after_id: str | None = None) -> Response:
        """The account's Message Batches, newest first."""
        async def go(rec: KeyRecord) -> Response:
            n = max(1, min(limit, 1000))
            rows = await asyncio.to_thread(svc.store.list_batches, rec.account_id, "anthropic", n + 1, after_id)
            data = [await svc.anthropic_batch(b, str(request.base_url)) for b in rows[:n]]
            return _json({"data": data, "has_more": len(rows) > n, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None})
        return await guarded("messages", request, go)

    @r.get("/v1/messages/batches/{batch_id}")
    async def get_message_batch(batch_id: str, request: Request) -> Response:
        """A Message Batch and its request counts."""
        async def go(rec: KeyRecord) -> Response:
            return _json(await svc.anthropic_batch(await account_batch(rec, batch_id, "anthropic", "message batch"), str(request.base_url)))
        return await guarded("messages", request, go)

    @r.get("/v1/messages/batches/{batch_id}/results")
    async def message_batch_results(batch_id: str, request: Request) -> Response:
        """An ended Message Batch's results (JSONL)."""
        async def go(rec: KeyRecord) -> Response:
            b = await account_batch(rec, batch_id, "anthropic", "message batch")
            if b["status"] not in ("completed", "cancelled"):
                raise ApiError(404, "not_found_error", f"Message batch {batch_id!r} has not ended yet; its results are not available.")
            return Response(await svc.anthropic_results(b), 200, None, "application/binary")
        return await guarded("messages", request, go)

    @r.post("/v1/messages/batches/{batch_id}/cancel")
    async def cancel_message_batch(batch_id: str, request: Request) -> Response:
        """Cancel a Message Batch: requests not yet run are not run."""
        async def go(rec: KeyRecord) -> Response:
            await account_batch(rec, batch_id, "anthropic", "message batch")
            await asyncio.to_thread(svc.store.request_cancel, batch_id)
            return _json(await svc.anthropic_batch(await account_batch(rec, batch_id, "anthropic", "message batch"), str(request.base_url)))
        return await guarded("messages", request, go)

    return r


def _too_many(cap: int, where: str) -> ApiError:
    return invalid(f"The batch has more than {cap} requests ({where} is request {cap + 1}); this gateway takes at most {cap} per batch. Split it.",
                   "requests")


def _anthropic_items(reqs: Any, cap: int, max_request: int) -> tuple[list[tuple[str, Api, dict[str, Any], bytes]], list[str]]:
    """The requests of a Message Batches body and the problems found in its form (blocking:
    there may be 100,000); at most `cap` requests of at most `max_request` bytes each."""
    if not isinstance(reqs, list):
        raise invalid("'requests' is required and must be a list.", "requests")
    if len(reqs) > cap:
        raise _too_many(cap, f"requests.{cap}")
    items: list[tuple[str, Api, dict[str, Any], bytes]] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(reqs):
        cid = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
            problems.append(f"requests.{i} must be an object with 'custom_id' and 'params'.")
        elif not isinstance(cid, str) or not _CUSTOM_ID.fullmatch(cid):
            problems.append(f"requests.{i}.custom_id must be 1-64 letters, digits, '-' or '_'; got {str(cid)[:80]!r}.")
        elif cid in seen:
            problems.append(f"requests.{i}.custom_id {cid!r} is used twice; custom ids must be unique.")
        elif len(raw := dumps(item["params"])) > max_request:
            problems.append(f"requests.{i}.params is {len(raw)} bytes, more than the gateway's limit of {max_request} bytes a request.")
        else:
            seen.add(cid)
            items.append((cid, "messages", item["params"], raw))
        if len(problems) >= MAX_PROBLEMS:
            break
    return items, problems


def _file_obj(f: dict[str, Any]) -> dict[str, Any]:
    return {"id": f["file_id"], "object": "file", "bytes": f["bytes"], "created_at": epoch_s(f["created_us"]),
            "filename": f["filename"], "purpose": f["purpose"], "status": "processed", "expires_at": None, "status_details": None}


def _openai_lines(content: bytes, endpoint: str, cap: int, max_request: int) -> tuple[list[tuple[str, Api, dict[str, Any], bytes]], list[str], list[str]]:
    """The requests of an OpenAI batch input file (JSONL), their labels, and the lines' problems
    (the first `MAX_PROBLEMS`); at most `cap` requests of at most `max_request` bytes each.
    Lines are read one at a time: a file of millions of lines is refused at line `cap + 1`."""
    api = OPENAI_ENDPOINTS[endpoint]
    items: list[tuple[str, Api, dict[str, Any], bytes]] = []
    labels: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()
    n_requests = 0
    for n, line in enumerate(io.BytesIO(content), 1):
        if not line.strip():
            continue
        n_requests += 1
        if n_requests > cap:
            raise _too_many(cap, f"line {n}")
        if len(line) > max_request:
            problems.append(f"line {n}: {len(line)} bytes, more than the gateway's limit of {max_request} bytes a request.")
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(f"line {n}: not valid JSON.")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {n}: must be a JSON object.")
            continue
        cid, url, body = obj.get("custom_id"), obj.get("url"), obj.get("body")
        if not isinstance(cid, str) or not cid or len(cid) > MAX_NAME or "\x00" in cid:
            problems.append(f"line {n}: 'custom_id' is required, at most {MAX_NAME} characters, without NUL.")
        elif cid in seen:
            problems.append(f"line {n}: custom_id {cid!r} is used twice; custom ids must be unique.")
        elif obj.get("method", "POST") != "POST" or url != endpoint:
            problems.append(f"line {n}: method must be POST and url {endpoint!r} (the batch's endpoint), got {str(obj.get('method'))[:20]!r} {str(url)[:80]!r}.")
        elif not isinstance(body, dict):
            problems.append(f"line {n}: 'body' must be an object.")
        else:
            seen.add(cid)
            items.append((cid, api, body, dumps(body)))
            labels.append(f"line {n} ({cid})")
        if len(problems) >= MAX_PROBLEMS:
            break
    return items, labels, problems
