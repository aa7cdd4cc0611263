"""The ASGI app: the OpenAI/Anthropic-compatible routes, the admin API, the OpenAPI spec."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from distillguard._errors import ConfigError
from distillguard.enforce import LimitsConfig, LimitSet
from distillguard.gateway._config import GatewayConfig
from distillguard.gateway._gateway import Gateway
from distillguard.gateway._guard import AdminGuard
from distillguard.gateway._keys import issue_key
from distillguard.gateway._protocol import MAX_MODEL_CHARS, Api, ApiError, dumps
from distillguard.gateway._store import EVENT_FIELDS, us_to_dt

_MESSAGE = {
    "type": "object",
    # As in OpenAI's API, an assistant turn that made tool calls may omit its content; every
    # other role must carry it.
    "required": ["role"],
    "anyOf": [{"properties": {"role": {"const": "assistant"}}}, {"required": ["content"]}],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}, "text": {"type": "string"}}}}]},
    },
}
_SCHEMAS: dict[str, dict[str, Any]] = {
    "responses": {
        "type": "object",
        # `input` may be left out with previous_response_id; the spec asks for it always
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {
                "type": "object", "required": ["role", "content"],
                "properties": {"type": {"const": "message"}, "role": {"type": "string", "enum": ["user", "assistant", "system", "developer"]},
                               "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "required": ["type", "text"], "properties": {"type": {"type": "string"}, "text": {"type": "string"}}}}]}},
            }}]},
            "instructions": {"type": "string"},
            "max_output_tokens": {"type": "integer", "minimum": 1, "maximum": 1000000},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "previous_response_id": {"type": "string"},
            "reasoning": {"type": "object", "properties": {"effort": {"type": "string"}}},
            "tools": {"type": "array", "items": {"type": "object"}},
            "stream": {"type": "boolean"},
        },
    },
    "chat.completions": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_CHARS},
            "messages": {"type": "array", "items": _MESSAGE, "minItems": 1},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1000000},
            "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": 1000000},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "stream": {"type": "boolean"},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
            "tools": {"type": "array", "items": {"type": "object"}},
        },
    },
    "completions": {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_CHARS},
            "prompt": {"type": "string"},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1000000},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "stream": {"type": "boolean"},
        },
    },
    "messages": {
        "type": "object",
        "required": ["model", "messages", "max_tokens"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_CHARS},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1000000},
            "system": {"type": "string"},
            "messages": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role", "content"], "properties": {"role": {"type": "string", "enum": ["user", "assistant"]}, "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}, "text": {"type": "string"}}}}]}}}},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "stop_sequences": {"type": "array", "items": {"type": "string"}},
            "stream": {"type": "boolean"},
        },
    },
}


def _error_schema(api: Api) -> dict[str, Any]:
    if api == "messages":
        return {"type": "object", "required": ["type", "error"], "properties": {"type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"], "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}
    return {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}


def _openapi_extra(api: Api) -> dict[str, Any]:
    err = {"content": {"application/json": {"schema": _error_schema(api)}}}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": _SCHEMAS[api]}}},
        "responses": {
            "200": {"description": "The completion (JSON), or a text/event-stream when stream is true.", "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"description": "Server-sent events in the API's own stream format."}}}},
            **{str(s): {"description": d, **err} for s, d in (
                (400, "Invalid request"), (401, "Missing, invalid or revoked key"), (403, "Account blocked"),
                (404, "Unknown model"), (408, "Body not sent in time"), (413, "Body too large"),
                (429, "Rate limited, or too many failed logins (see Retry-After)"), (502, "Upstream failed"),
                (503, "Too many requests in flight for the key, or no upstream connection free (see Retry-After)"),
                (504, "Upstream timed out"))},
        },
        "security": [{"bearer": []}, {"x-api-key": []}],
    }


# ---------------------------------------------------------------- admin models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountIn(_Model):
    account_id: str = Field(min_length=1, max_length=200)
    signup_channel: str | None = None
    email_domain: str | None = None
    payment_fingerprint: str | None = None
    country: str | None = Field(None, max_length=8)
    verified: bool | None = None


class KeyIn(_Model):
    account_id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(None, max_length=200)


class KeyOut(BaseModel):
    key_id: str
    account_id: str
    key: str = Field(description="The API key. Shown once: only its hash is stored.")


class OverrideIn(_Model):
    account_id: str = Field(min_length=1, max_length=200)
    action: Literal["allow", "monitor", "throttle", "degrade", "block", "benign"]
    by: str = Field("", max_length=200)
    note: str = Field("", max_length=2000)


class ModelIn(_Model):
    """One row of the format's `models` table."""

    model: str = Field(min_length=1, max_length=MAX_MODEL_CHARS)
    released_at: datetime | None = Field(None, description="When the model became available (ISO-8601; UTC when no offset is given).")


class LimitSetIn(_Model):
    requests_per_minute: int | None = Field(None, ge=1)
    requests_per_day: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)


def _iso(us: int | None) -> str | None:
    dt = us_to_dt(us)
    return dt.isoformat() if dt else None


def _to_us(dt: datetime) -> int:
    """Microseconds since the epoch; a time without an offset is UTC (the format's)."""
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_BEARER = HTTPBearer(auto_error=False)


def _admin_router(gw: Gateway) -> APIRouter:
    def check(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        token = gw.config.admin_token
        if token is None:
            raise HTTPException(403, "The admin API is disabled; start the gateway with --admin-token (or DISTILLGUARD_ADMIN_TOKEN).")
        given = cred.credentials if cred else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "Missing or wrong admin token; send 'Authorization: Bearer ADMIN_TOKEN'.")

    r = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(check)])

    async def run(fn: Any, *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kw)

    @r.get("/accounts")
    async def list_accounts() -> list[dict[str, Any]]:
        """All accounts."""
        rows = await run(gw.store.list_accounts)
        return [{**{k: v for k, v in a.items() if k != "created_us"}, "created_at": _iso(a["created_us"])} for a in rows]

    @r.post("/accounts", status_code=201)
    async def create_account(body: AccountIn) -> dict[str, str]:
        """Create or update an account."""
        await run(gw.store.upsert_account, body.account_id, **body.model_dump(exclude={"account_id"}, exclude_none=True))
        return {"account_id": body.account_id}

    @r.post("/keys", status_code=201)
    async def create_key(body: KeyIn) -> KeyOut:
        """Issue a key for an account (created if new). The key is in this answer only."""
        issued = await run(issue_key, gw.store, body.account_id, body.name)
        await run(gw.keys.refresh)
        return KeyOut(key_id=issued.key_id, account_id=issued.account_id, key=issued.key)

    @r.get("/keys")
    async def list_keys(account_id: str | None = None) -> list[dict[str, Any]]:
        """Keys (ids, owners, dates; never the key or its hash)."""
        rows = await run(gw.store.keys_since, -1)
        return [
            {"key_id": k["key_id"], "account_id": k["account_id"], "name": k["name"], "created_at": _iso(k["created_us"]), "revoked_at": _iso(k["revoked_us"])}
            for k in rows if account_id is None or k["account_id"] == account_id
        ]

    @r.delete("/keys/{key_id}")
    async def revoke_key(key_id: str) -> dict[str, Any]:
        """Revoke a key; it stops working at once on this replica, within seconds on others."""
        if not await run(gw.store.revoke_key, key_id):
            raise HTTPException(404, f"No active key {key_id!r}; list keys with GET /admin/keys.")
        gw.keys.revoke_local(key_id)
        return {"key_id": key_id, "revoked": True}

    @r.get("/limits")
    async def get_limits() -> dict[str, Any]:
        """Default limits and per-account limits."""
        return {"default": gw.limiter.config.to_dict(), "accounts": {a: s.to_dict() for a, s in gw.limiter.account_overrides.items()}}

    @r.put("/limits")
    async def set_limits(body: dict[str, Any]) -> dict[str, Any]:
        """Replace default limits (fields not given keep their current values)."""
        try:
            merged = {**gw.limiter.config.to_dict(), **body}
            for scope in ("key", "account", "campaign"):
                if scope in body:
                    merged[scope] = {**gw.limiter.config.to_dict()[scope], **body[scope]}
            cfg = LimitsConfig.from_dict(merged)
            gw.limiter.set_config(cfg)
        except (ConfigError, TypeError, AttributeError) as exc:
            raise HTTPException(422, str(exc)) from exc
        await run(gw.store.set_limits, "*", json.dumps(cfg.to_dict()))
        return cfg.to_dict()

    @r.put("/limits/{account_id}")
    async def set_account_limits(account_id: str, body: LimitSetIn) -> dict[str, Any]:
        """Give one account its own limits (null = unlimited)."""
        ls = LimitSet(**body.model_dump())
        gw.limiter.account_overrides[account_id] = ls
        await run(gw.store.set_limits, account_id, json.dumps(ls.to_dict()))
        return ls.to_dict()

    @r.get("/models")
    async def list_models() -> list[dict[str, Any]]:
        """The models table (release times) the fleet's detector weighs."""
        rows = await run(gw.store.list_models)
        return [{"model": m["model"], "released_at": _iso(m["released_us"])} for m in rows]

    @r.put("/models")
    async def set_models(body: list[ModelIn]) -> dict[str, int]:
        """Replace the models table (release times); the fleet's detector reads it on change."""
        names = [m.model for m in body]
        if len(set(names)) != len(names):
            raise HTTPException(422, "Each model may appear once.")
        rows = [(m.model, None if m.released_at is None else _to_us(m.released_at)) for m in body]
        await run(gw.store.set_models, rows, replace=True)
        return {"models": len(rows)}

    @r.post("/overrides", status_code=201)
    async def add_override(body: OverrideIn) -> dict[str, Any]:
        """Record an analyst decision; it wins over verdicts at once."""
        await run(gw.store.add_override, body.account_id, body.action, body.by, body.note)
        await run(gw.refresh)
        if gw.online is not None:
            gw.online.set_override(body.account_id, body.action)
        return {**body.model_dump(), "effective": gw.policy.decide(body.account_id).action}

    @r.get("/overrides")
    async def list_overrides() -> list[dict[str, Any]]:
        """Every override, oldest first."""
        rows = await run(gw.store.overrides_since, 0)
        return [{"account_id": o["account_id"], "action": o["action"], "ts": _iso(o["ts_us"]), "by": o["by"], "note": o["note"]} for o in rows]

    @r.get("/verdicts")
    async def verdicts() -> dict[str, Any]:
        """Current policy per account (from verdicts and overrides) and online detection status."""
        on = gw.online
        return {
            "accounts": gw.policy.snapshot(),
            "online": None if on is None else {"updates": on.updates, "events_seen": on.events_seen, "last_error": on.last_error},
        }

    @r.get("/events")
    async def events(after: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
        """Captured events in the traffic log format, in capture order; page with `after=next`."""
        await gw.capture.flush()
        batch = await run(gw.store.events_page, after, limit)
        out = []
        for e in batch:
            row = {k: e[k] for k in EVENT_FIELDS if k != "ts_us"}
            row["ts"] = _iso(e["ts_us"])
            out.append(row)
        return {"events": out, "next": batch[-1]["seq"] if batch else after}

    @r.post("/console-link", status_code=201)
    async def console_link() -> dict[str, Any]:
        """A one-time link that logs a browser into the console (single use, 5 minutes)."""
        guard = getattr(gw, "console_guard", None)
        if guard is None:
            raise HTTPException(404, "The console is not mounted in this gateway.")
        return {"url": guard.one_time_link("/console")}

    @r.get("/stats")
    async def stats() -> dict[str, Any]:
        """Capture counters."""
        c = gw.capture
        return {"queued": c.queue.qsize(), "written": c.written, "dropped": c.dropped, "time": datetime.now(UTC).isoformat()}

    return r


_FAST_PATHS: dict[str, Api] = {
    "/v1/chat/completions": "chat.completions",
    "/v1/completions": "completions",
    "/v1/messages": "messages",
    "/v1/responses": "responses",
}


class _Releasing(Response):
    """A proxy route's answer that gives back the key's in-flight slot once it is sent."""

    def __init__(self, inner: Response, gw: Gateway) -> None:  # noqa: D107 - wraps, nothing to set up
        self.inner = inner
        self.gw = gw
        self.status_code = inner.status_code
        self.background = None
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.gw.release(scope)


def _is_admin(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


class GatewayApp(FastAPI):
    """FastAPI for the spec, the admin API and everything else; the three proxy routes are
    dispatched before FastAPI's routing and middleware, which cost more per request than the
    whole of auth, limits, policy and capture (measured in benchmarks/bench_gateway.py)."""

    gateway: Gateway
    fast_path: bool = True
    admin_guard: AdminGuard | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.admin_guard is not None and scope["type"] == "http" and _is_admin(scope["path"]):
            # the token and the body size are checked before FastAPI reads the body
            await self.admin_guard(scope, receive, send)
            return
        if self.fast_path and scope["type"] == "http" and scope["method"] == "POST":
            api = _FAST_PATHS.get(scope["path"])
            if api is not None:
                request = Request(scope, receive)
                try:
                    try:
                        response = await self.gateway.handle(api, request)
                    except Exception as exc:  # noqa: BLE001 - never let a request kill the worker
                        logging.getLogger("distillguard.gateway").error("unexpected error on %s", scope["path"], exc_info=exc)
                        response = self.gateway.error_response(api, ApiError(500, "api_error", "The gateway hit an internal error; it has been logged. Retry the request."))
                    await response(scope, receive, send)
                finally:
                    self.gateway.release(scope)  # after the answer, streams included
                return
        await super().__call__(scope, receive, send)


def create_app(config: GatewayConfig | None = None, gateway: Gateway | None = None, fast_path: bool = True) -> GatewayApp:
    """The gateway as an ASGI app (FastAPI for the spec and admin; the proxy routes stay thin).

    Args:
        config: settings; defaults to `GatewayConfig()`.
        gateway: a prepared `Gateway` (tests inject upstreams this way).
        fast_path: dispatch the proxy routes before FastAPI's router (same behaviour, faster).
    """
    gw = gateway or Gateway(config or GatewayConfig())
    from distillguard.gateway._console import LiveConsole

    console = LiveConsole(gw)
    gw.console_guard = console.guard
    from distillguard.gateway._batches import BatchService
    from distillguard.gateway._batchroutes import batch_router

    batches = BatchService(gw)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        batches.start()
        try:
            yield
        finally:
            await batches.stop()
            await gw.stop()
            console.close()

    app = GatewayApp(
        title="distillguard gateway",
        version="1",
        description="OpenAI- and Anthropic-compatible gateway with accounts, keys, limits, enforcement and capture.",
        lifespan=lifespan,
    )
    app.state.gateway = gw
    app.gateway = gw
    app.fast_path = fast_path

    async def fastapi(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    app.admin_guard = AdminGuard(fastapi, gw.config.admin_token)
    app.openapi_components = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"}}}  # type: ignore[attr-defined]

    def proxy(api: Api, path: str, summary: str) -> None:
        async def endpoint(request: Request) -> Response:
            try:
                response = await gw.handle(api, request)
            except BaseException:
                gw.release(request.scope)
                raise
            return _Releasing(response, gw)

        app.add_api_route(path, endpoint, methods=["POST"], summary=summary, operation_id=api.replace(".", "_"),
                          openapi_extra=_openapi_extra(api), tags=["api"], response_class=Response)

    proxy("chat.completions", "/v1/chat/completions", "OpenAI chat completions (streamed as SSE when stream is true)")
    proxy("completions", "/v1/completions", "OpenAI text completions")
    proxy("messages", "/v1/messages", "Anthropic messages (streamed as SSE when stream is true)")
    proxy("responses", "/v1/responses", "OpenAI Responses (typed stream events when stream is true)")
    from distillguard.gateway._responses_native import responses_router

    app.include_router(responses_router(gw))
    from distillguard.gateway._embeddings import embeddings_router

    app.include_router(embeddings_router(gw))

    @app.get("/v1/models", tags=["api"], response_class=Response, openapi_extra={"security": [{"bearer": []}, {"x-api-key": []}], "responses": {"200": {"description": "Models", "content": {"application/json": {"schema": {"type": "object", "required": ["object", "data"]}}}}, "401": {"description": "Missing or invalid key", "content": {"application/json": {"schema": _error_schema("chat.completions")}}}}})
    async def models(request: Request) -> Response:
        """The models this gateway routes (OpenAI list shape)."""
        auth = await gw.authenticate("chat.completions", request)
        if isinstance(auth, Response):
            return auth
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "distillguard"} for m in gw.router.models()]
        return Response(dumps({"object": "list", "data": data}), 200, None, "application/json")

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        """Liveness and capture backlog."""
        return {"ok": True, "queued": gw.capture.queue.qsize()}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics: requests, latency, capture and spool, limit refusals, verdicts."""
        from distillguard.gateway._metrics import CONTENT_TYPE

        return Response(gw.metrics.render(), 200, None, CONTENT_TYPE)

    app.include_router(_admin_router(gw))
    app.include_router(batch_router(batches))
    app.state.batches = batches
    # The analyst console over this gateway's own capture, behind the admin token.
    app.state.console = console
    app.mount("/console", console)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        api: Api = "messages" if request.url.path.endswith("/messages") else "chat.completions"
        return gw.error_response(api, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logging.getLogger("distillguard.gateway").error("unexpected error on %s", request.url.path, exc_info=exc)
        err = ApiError(500, "api_error", "The gateway hit an internal error; it has been logged. Retry the request.")
        if request.url.path.startswith("/v1/"):
            api: Api = "messages" if request.url.path.endswith("/messages") else "chat.completions"
            return gw.error_response(api, err)
        return JSONResponse({"detail": err.message}, 500)

    return app
