"""`POST /v1/embeddings`: OpenAI embeddings passed through to an OpenAI-compatible upstream.

An embedding request is an exchange like any other: the key is checked, a blocked account is
refused with the 403, the request counts against the request and token budgets, and it is
captured as one event (`endpoint` `embeddings`; `prompt` the inputs, one per line, token-id
inputs written as their ids; `response` null, since a vector is no text; `prompt_tokens` the
upstream's usage, `completion_tokens` 0). Degrade and the watermark have nothing to act on in
a vector, so the upstream's answer passes as it is.
"""

from __future__ import annotations

import time
from typing import Any, cast

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from distillguard.gateway._protocol import Api, ApiError, ChatRequest, Message, invalid, load_body
from distillguard.gateway._store import now_us
from distillguard.gateway._upstream import OpenAIUpstream, estimate_tokens

#: the traffic log's `endpoint` of an embeddings exchange
ENDPOINT = cast(Api, "embeddings")
#: most inputs in one request (OpenAI's own limit)
MAX_INPUTS = 2048


_ERROR = {"content": {"application/json": {"schema": {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"], "properties": {"message": {"type": "string"}, "type": {"type": "string"}}}}}}}}
#: token ids are non-negative 32-bit integers (every tokenizer's vocabulary fits)
MAX_TOKEN_ID = 2**32 - 1
_TOKENS = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": MAX_TOKEN_ID}}
#: the route's spec: request body and documented answers
OPENAPI: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["model", "input"], "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": 200},
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": {"type": "string"}},
                                _TOKENS, {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": _TOKENS}]},
            "user": {"type": "string"}}}}}},
    "responses": {
        "200": {"description": "The embeddings (OpenAI list shape)", "content": {"application/json": {"schema": {"type": "object", "required": ["data"]}}}},
        **{str(code): {"description": what, **_ERROR} for code, what in (
            (400, "Invalid request"), (401, "Missing, invalid or revoked key"), (403, "Account blocked"),
            (404, "Unknown model, or one not served with embeddings"), (408, "Body not sent in time"), (413, "Body too large"),
            (429, "Rate limited, or too many failed logins (see Retry-After)"), (502, "Upstream failed"),
            (503, "Too many requests in flight for the key, or no upstream connection free (see Retry-After)"),
            (504, "Upstream timed out"))}},
    "security": [{"bearer": []}, {"x-api-key": []}],
}


def _token_ids(x: Any) -> bool:
    # JSON has one number type: 7.0 is the integer 7 as JSON Schema reads it
    return isinstance(x, list) and bool(x) and all(
        isinstance(t, int | float) and not isinstance(t, bool) and float(t).is_integer() and 0 <= t <= MAX_TOKEN_ID for t in x)


def parse_embeddings(body: dict[str, Any]) -> ChatRequest:
    """The request in the gateway's shape: its inputs as one user message, one input a line."""
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 200:
        raise invalid("'model' is required and must be a string of 1 to 200 characters.", "model")
    given = body.get("input")
    if isinstance(given, str) or _token_ids(given):
        inputs: list[Any] = [given]
    elif isinstance(given, list) and given:
        inputs = given
    else:
        raise invalid("'input' is required: a string, a list of strings, a list of token ids or a list of such lists.", "input")
    if len(inputs) > MAX_INPUTS:
        raise invalid(f"'input' has {len(inputs)} items; at most {MAX_INPUTS} per request.", "input")
    texts = []
    for i, x in enumerate(inputs):
        if isinstance(x, str):
            texts.append(x)
        elif _token_ids(x):
            texts.append(" ".join(str(int(t)) for t in x))  # token ids, kept as evidence: never dropped from capture
        else:
            raise invalid(f"input.{i} must be a string or a non-empty list of token ids (integers from 0 to {MAX_TOKEN_ID}).", f"input.{i}")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("'user' must be a string.", "user")
    return ChatRequest(ENDPOINT, model, [Message("user", "\n".join(texts))], end_user=user[:256] if user else None)


def embeddings_router(gw: Any) -> APIRouter:
    """The embeddings route of a gateway."""
    from distillguard.gateway._gateway import _ACTION

    r = APIRouter(tags=["api"])

    @r.post("/v1/embeddings", response_class=Response, openapi_extra=OPENAPI)
    async def embeddings(request: Request) -> Response:
        """OpenAI embeddings (pass-through to an OpenAI-compatible upstream), captured and limited."""
        t0 = time.perf_counter()
        ts = now_us()
        auth = await gw.authenticate("chat.completions", request, hold=True)
        if isinstance(auth, Response):
            return auth
        try:
            response = await _serve(gw, request, auth, ts, t0)
        finally:
            gw.release(request.scope)
        gw.metrics.observe(ENDPOINT, response.status_code, request.scope.get(_ACTION, "none"), time.perf_counter() - t0)
        return response

    return r


async def _serve(gw: Any, request: Request, rec: Any, ts: int, t0: float) -> Response:
    from distillguard.gateway._gateway import _ACTION

    req: ChatRequest | None = None
    model = None
    try:
        raw = await gw._read_body(request)
        body = load_body(raw)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        req = parse_embeddings(body)
        upstream = gw.router.resolve(req.model, remember=False)
        if not isinstance(upstream, OpenAIUpstream):
            raise ApiError(404, "not_found_error", f"The model {req.model!r} is not served with embeddings on this gateway.", param="model", code="model_not_found")
        decision = gw.policy.decide(rec.account_id)
        request.scope[_ACTION] = decision.action
        if decision.blocked:
            raise ApiError(403, "permission_error", decision.block_message(rec.account_id), code="account_blocked")
        verdict = await gw.limits_or_open(gw.limiter.check(gw._subjects(rec, decision), throttled=decision.throttled,
                                                           tokens=estimate_tokens(req.prompt)), rec.account_id)
        if not verdict.allowed:
            gw.metrics.refusals.labels(verdict.scope or "", verdict.budget or "").inc()
            raise ApiError(429, "rate_limit_error", verdict.message(), code="rate_limit_exceeded", retry_after=verdict.retry_after)
        try:
            out = await upstream.forward(ENDPOINT, raw)
            usage = _usage(out)
            if usage is None:
                usage = estimate_tokens(req.prompt)
        except BaseException:
            gw.limiter.settle_later(verdict.reservation, 0)
            raise
    except ApiError as err:
        gw._event(req, rec, request, ENDPOINT, ts, t0, err.status, model=model)
        return gw.error_response("chat.completions", err)  # type: ignore[no-any-return]
    gw.limiter.settle_later(verdict.reservation, usage)
    event = gw._event(req, rec, request, ENDPOINT, ts, t0, 200, None, usage, 0)
    try:
        await gw._durable(event)
    except ApiError as err:
        return gw.error_response("chat.completions", err)  # type: ignore[no-any-return]
    return Response(out, 200, None, "application/json")


def _usage(raw: bytes) -> int | None:
    """The answer's prompt tokens, None where it reports none (ApiError for an answer that is
    not an embeddings list)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(502, "api_error", "The upstream model server sent an unreadable embeddings answer (not JSON).") from exc
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ApiError(502, "api_error", "The upstream model server sent an embeddings answer without 'data'.")
    usage = data.get("usage")
    n = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None
