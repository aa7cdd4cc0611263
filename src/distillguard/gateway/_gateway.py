"""The request path: auth → parse → route → policy → limits → upstream → capture.

Kept lean on purpose: dictionary lookups for keys and policy, in-memory (or Redis) counters,
one pooled upstream call, and an enqueue for capture. Everything slow runs in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from distillguard.enforce import (
    ALLOWED,
    Decision,
    Limiter,
    LimitResult,
    LimitsConfig,
    LimitSet,
    Override,
    Policy,
    Reservation,
    Scope,
    served_reasoning,
    strip_think,
)
from distillguard.gateway._batchstore import BatchStore
from distillguard.gateway._capture import Capture
from distillguard.gateway._config import GatewayConfig, split_spec
from distillguard.gateway._guard import FailureLimiter
from distillguard.gateway._keys import KeyRecord, KeyRing
from distillguard.gateway._metrics import GatewayMetrics
from distillguard.gateway._native import (
    HeldReasoning,
    NativeStream,
    Rewrite,
    native_request,
    read_answer,
)
from distillguard.gateway._protocol import (
    PARSERS,
    Api,
    ApiError,
    ChatRequest,
    Delta,
    Reply,
    StreamRenderer,
    dumps,
    error_body,
    load_body,
    render,
    sse_error,
)
from distillguard.gateway._replica import ChangeFeed, OverrideFeed
from distillguard.gateway._responses import ResponsesRenderer
from distillguard.gateway._responses_native import (
    ResponsesStream,
    check_previous,
    own_response,
    read_response,
)
from distillguard.gateway._spool import Spool, SpoolFull
from distillguard.gateway._sse import SSEResponse, aclose_quietly
from distillguard.gateway._store import Store, now_us, us_to_dt
from distillguard.gateway._upstream import (
    AnthropicUpstream,
    FakeUpstream,
    OpenAIUpstream,
    Router,
    Upstream,
    estimate_tokens,
)

if TYPE_CHECKING:
    from distillguard.detect import RequestKeys

log = logging.getLogger("distillguard.gateway")

_JSON = "application/json"
CLIENT_CLOSED = 499  # nginx's code for "client closed request"
_SLOT = "distillguard.slot"  # scope key: the key id whose in-flight slot the request holds

# Ids: a random per-process prefix and a counter. Unique across replicas and restarts with
# overwhelming probability, and no urandom syscall per request (uuid4 makes one each time).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ids = itertools.count(1)


def _reseed_ids() -> None:  # a forked worker must not repeat its parent's ids
    global _ID_PREFIX, _ids
    _ID_PREFIX, _ids = uuid.uuid4().hex[:16], itertools.count(1)


os.register_at_fork(after_in_child=_reseed_ids)


def new_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):08x}"


def build_router(config: GatewayConfig, watermark_key: Any = None) -> Router:
    router = Router()
    specs = config.upstreams or ("local",)
    for spec in specs:
        pattern, kind, url = split_spec(spec)
        up: Upstream
        if kind in ("openai", "responses"):
            up = OpenAIUpstream(url, config.upstream_api_key, config.upstream_timeout, acquire_timeout=config.upstream_acquire_timeout,
                                responses=kind == "responses")
        elif kind == "anthropic":
            up = AnthropicUpstream(url, config.upstream_api_key, config.upstream_timeout, acquire_timeout=config.upstream_acquire_timeout)
        elif kind == "fake":
            up = FakeUpstream()
        else:
            up = _local_or_fake(watermark_key, explicit=bool(config.upstreams))
        router.add(pattern, up)
    return router


def _local_or_fake(watermark_key: Any, explicit: bool) -> Upstream:
    from distillguard._errors import ConfigError
    from distillguard.gateway._local import LocalUpstream

    procs = watermark_key.logits_processor if watermark_key is not None else None
    try:
        return LocalUpstream.default(procs)
    except ImportError as exc:
        if explicit:
            raise ConfigError(
                f"The local model is not available ({exc}); install the [watermark] extra or "
                "choose another --upstream."
            ) from exc
        log.warning("local model not available (%s); serving the fake echo model instead", exc)
        return FakeUpstream()


#: where a request's policy action is noted for the metrics (in its ASGI scope)
_ACTION = "distillguard.action"

#: seconds a client is told to wait when the capture spool refuses requests
SPOOL_RETRY_AFTER_S = 5


def _spool_error() -> ApiError:
    return ApiError(503, "overloaded_error", "The gateway cannot record exchanges right now (its capture spool is "
                    "full or its disk refused a write); retry later.", retry_after=SPOOL_RETRY_AFTER_S)


def _header(scope: Any, name: bytes) -> str | None:
    """One request header straight from the ASGI scope (names are lower-case there); cheaper
    than building Starlette's Headers for the two or three the request path reads."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _key_from(scope: Any) -> str | None:
    auth = _header(scope, b"authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return _header(scope, b"x-api-key") or None


class Gateway:
    """The gateway's state and request handling; `create_app` wraps it in an ASGI app."""

    def __init__(self, config: GatewayConfig, router: Router | None = None, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store(config.db, config.table_prefix)
        self.watermark_key = self._load_watermark_key()
        self.router = router or build_router(config, self.watermark_key)
        self.keys = KeyRing(self.store)
        self.ledger = BatchStore(self.store)  # batches, and which account owns a stored response
        # Key look-ups get their own threads: a flood of unknown keys must not queue behind (or
        # in front of) capture's writes in the default pool.
        self._key_pool = ThreadPoolExecutor(config.key_lookup_threads, thread_name_prefix="distillguard-keys")
        self.login_failures = FailureLimiter(config.login_failures_per_minute, 60.0)
        self._inflight: dict[str, int] = {}
        self.policy = Policy(config.degrade)
        self._request_keys: RequestKeys | None = None  # made at the first first-request check
        if "antidistill" in (config.degrade.reasoning, config.degrade.throttle_reasoning):
            for route in self.router.routes:  # upstreams that generate here tilt their own sampling
                if hasattr(route.upstream, "use_antidistill"):
                    route.upstream.use_antidistill(self._antidistilled, config.degrade.antidistill_lam)
        self.limiter = Limiter(config.limits, config.redis, config.redis_prefix, config.redis_options)
        spool = Spool(config.spool_dir, config.spool_max_bytes, sync=config.spool_sync) if config.spool_dir is not None else None
        self.capture = Capture(self.store, config.capture_queue, config.capture_batch, config.capture_interval, spool)
        self.metrics = GatewayMetrics(self)
        self.online: Any = None
        self.console_guard: Any = None  # the mounted console's ConsoleGuard (create_app sets it)
        self.follower: Any = None  # VerdictFollower, with a child or remote detector
        self._child: subprocess.Popen[bytes] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._overrides = OverrideFeed(self.store.overrides_since)
        self._limits = ChangeFeed(self.store.limits_since, "subject")
        self.started = False

    def _load_watermark_key(self) -> Any:
        if self.config.watermark_key_file is None:
            return None
        from distillguard.watermark import WatermarkKey  # type: ignore[attr-defined,unused-ignore]

        return WatermarkKey.load(self.config.watermark_key_file)

    # ---------------------------------------------------------------- lifecycle

    def refresh(self) -> None:
        """Reload keys, overrides and limits changed in the store (blocking)."""
        self.keys.refresh()
        for r in self._overrides.poll():
            try:
                self.policy.set_override(Override(r["account_id"], r["action"], us_to_dt(r["ts_us"]), r["by"] or "", r["note"] or ""))  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - a bad stored override must not stop the others
                log.warning("ignoring stored override %s", r["id"], exc_info=True)
        for r in self._limits.poll():
            try:
                data = json.loads(r["config"])
                if r["subject"] == "*":
                    self.limiter.set_config(LimitsConfig.from_dict(data))
                else:
                    self.limiter.account_overrides[r["subject"]] = LimitSet.from_dict(data, f"limits for {r['subject']}")
            except Exception:  # noqa: BLE001
                log.warning("ignoring stored limits for %s", r["subject"], exc_info=True)

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        await asyncio.to_thread(self.refresh)
        self.capture.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._refresh_loop(), name="distillguard-refresh"))
        self._tasks.append(loop.create_task(self._charge_loop(), name="distillguard-charge"))
        if self.config.detect and self.config.detector != "inprocess":
            await self._follow(loop)
        elif self.config.detect:
            from distillguard.gateway._online import OnlineLoop

            self.online = await asyncio.to_thread(
                OnlineLoop.create, self.policy, self.config.detect_interval, self.config.detect_config, self.store,
                self.config.detect_checkpoint_interval)
            if self.online is not None:
                await asyncio.to_thread(self.online.warm)  # its checkpoint, if there is one
                self._tasks.append(loop.create_task(self.online.run(), name="distillguard-detect"))

    async def _follow(self, loop: asyncio.AbstractEventLoop) -> None:
        """Follow the fleet's verdicts; with `detector="child"`, start the detector too."""
        from distillguard.gateway._verdicts import VerdictFollower, VerdictTables

        tables = await asyncio.to_thread(VerdictTables, self.store)
        self.follower = VerdictFollower(tables, self.policy, redis_url=self.config.redis, redis_prefix=self.config.redis_prefix,
                                        redis_options=self.config.redis_options)
        self._tasks.append(loop.create_task(self.follower.run(), name="distillguard-follow"))
        if self.config.detector == "child":
            cmd = [sys.executable, "-m", "distillguard", "detector", "--db", self.config.db,
                   "--table-prefix", self.config.table_prefix, "--interval", str(self.config.detect_interval),
                   "--checkpoint-interval", str(self.config.detect_checkpoint_interval),
                   "--nice", str(self.config.detector_nice),
                   "--freeze-heap" if self.config.freeze_heap else "--no-freeze-heap",
                   "--parent-pid", str(os.getpid())]
            if self.config.detect_config is not None:
                cmd += ["--config", str(self.config.detect_config)]
            if self.config.redis is not None:
                cmd += ["--redis", self.config.redis, "--redis-prefix", self.config.redis_prefix,
                        "--redis-health-check", str(self.config.redis_options.health_check_interval)]
            # Its own interpreter: detection never competes with the request loop for the GIL.
            # The gateway's session: where Linux shares CPU by session (autogroup), its nice then
            # ranks it below the gateway. In a session of its own with that session niced, the
            # gateway kept more CPU on a busy host but the detector starved (tests/gateway/
            # test_fleet.py's hydra went unblocked at load 12), and un-niced it would compete
            # with the gateway as an equal.
            self._child = subprocess.Popen(cmd)
            log.info("detector child process %d started", self._child.pid)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # noqa: BLE001 - the store may be briefly unavailable
                log.warning("refreshing keys and overrides failed", exc_info=True)

    async def stop(self) -> None:
        """Flush captured events and release connections (lifespan shutdown, SIGTERM)."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self.online is not None:
            try:
                await asyncio.to_thread(self.online.close)  # a clean restart resumes exactly here
            except Exception:  # noqa: BLE001 - the database may be down; the last checkpoint stands
                log.warning("checkpointing online detection at shutdown failed", exc_info=True)
        if self._child is not None:
            self._child.terminate()
            try:
                await asyncio.to_thread(self._child.wait, 15)
            except subprocess.TimeoutExpired:
                self._child.kill()
            self._child = None
        with contextlib.suppress(Exception):
            await self.limiter.flush_charges()
        await self.capture.close()
        with contextlib.suppress(Exception):
            await self.limiter.aclose()
        log.info("capture flushed: %d events written, %d dropped", self.capture.written, self.capture.dropped)
        await self.router.aclose()
        self._key_pool.shutdown(wait=False)
        self._key_pool = ThreadPoolExecutor(self.config.key_lookup_threads, thread_name_prefix="distillguard-keys")
        self.started = False

    # ---------------------------------------------------------------- helpers

    def _event(self, req: ChatRequest | None, rec: KeyRecord, request: Request, api: Api, ts: int, t0: float,
               status: int, reply_text: str | None = None, prompt_tokens: int | None = None,
               completion_tokens: int | None = None, model: str | None = None) -> asyncio.Future[None] | None:
        """Capture one exchange. With a spool, the returned future resolves once the event is
        on disk: an answer waits for it before its last byte. Refusals of a full spool are
        counted by capture (`refused`); their requests were answered 503 already."""
        scope = request.scope
        client = scope.get("client")
        # A row in EVENT_FIELDS order: the capture writer inserts it as it is.
        if req is None:
            row: tuple[Any, ...] = (new_id(), ts, rec.account_id, rec.key_id, client[0] if client else None,
                                    _header(scope, b"user-agent"), api, model or "", None, "", None, None,
                                    None, prompt_tokens, completion_tokens, None, None, status,
                                    (time.perf_counter() - t0) * 1000.0, None, None)
        else:
            row = (new_id(), ts, rec.account_id, rec.key_id, client[0] if client else None,
                   _header(scope, b"user-agent"), api, req.model, req.system, req.prompt,
                   len(req.messages), req.tools, reply_text if self.config.keep_responses else None,
                   prompt_tokens, completion_tokens, req.max_tokens, req.temperature, status,
                   (time.perf_counter() - t0) * 1000.0, req.end_user, None)
        try:
            return self.capture.record(row)
        except SpoolFull:
            return None

    async def _durable(self, event: asyncio.Future[None] | None) -> None:
        """Wait until a served exchange is on disk; a spool that failed turns the answer into 503."""
        if event is not None:
            try:
                await event
            except SpoolFull as exc:
                raise _spool_error() from exc

    @staticmethod
    def error_response(api: Api, err: ApiError) -> Response:
        headers = dict(err.headers)
        if err.retry_after is not None:
            headers["retry-after"] = str(err.retry_after)
        if api == "messages":
            headers["request-id"] = "req_" + new_id()
        return Response(dumps(error_body(api, err)), err.status, headers, _JSON)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        try:
            async with asyncio.timeout(self.config.body_timeout):
                return await self._read_body_inner(request, limit)
        except TimeoutError as exc:
            raise ApiError(408, "invalid_request_error", f"The request body did not arrive within {self.config.body_timeout:g} s; send it at once.") from exc
        except ClientDisconnect as exc:
            raise ApiError(400, "invalid_request_error", "The client closed the connection before sending the whole body.") from exc

    async def _read_body_inner(self, request: Request, limit: int) -> bytes:
        cl = _header(request.scope, b"content-length")
        too_big = ApiError(413, "request_too_large", f"The request body is larger than the gateway's limit of {limit} bytes; shorten the prompt or split the request.")
        if cl is not None:
            try:
                if int(cl) > limit:
                    raise too_big
            except ValueError as exc:
                raise ApiError(400, "invalid_request_error", "The Content-Length header is not a number.") from exc
        # Straight from ASGI receive: Starlette's body() and stream() cost more than the rest
        # of reading a small body.
        receive = request.receive
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_big
            if not msg.get("more_body", False):
                if not chunks:
                    return bytes(chunk)
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)

    def _subjects(self, rec: KeyRecord, decision: Decision) -> list[tuple[Scope, str]]:
        subjects: list[tuple[Scope, str]] = [("key", rec.key_id), ("account", rec.account_id)]
        camp = decision.campaign_id or self.policy.campaign_of(rec.account_id)
        if camp:
            subjects.append(("campaign", camp))
        return subjects

    async def limits_or_open(self, call: Awaitable[LimitResult], account_id: str) -> LimitResult:
        """The limits call's result; when it fails or runs past its deadline (a Redis outage),
        `ALLOWED` without a reservation: the request is served unchecked (limits fail open,
        docs/gateway.md), logged and counted. Nothing is settled for it: a reservation that
        reached Redis before the deadline stays charged in full."""
        try:
            return await call
        except Exception:  # noqa: BLE001 - a counter store outage never refuses requests
            self.metrics.limits_failed.inc()
            log.error("limits failed for account %s; serving the request unchecked", account_id, exc_info=True)
            return ALLOWED

    async def _charge_loop(self) -> None:
        # Settlements are batched (Redis): one script call every 50 ms instead of one per
        # request. Late settling only holds a reservation a little longer, never overspends.
        while True:
            await asyncio.sleep(0.05)
            try:
                await self.limiter.flush_charges()
            except Exception:  # noqa: BLE001 - counting failures never fail requests
                log.warning("charging tokens failed", exc_info=True)

    def _antidistilled(self, account_id: str) -> bool:
        """Whether policy serves `account_id` with antidistillation sampling (on the local model)."""
        return self.policy.decide(account_id).defence == "antidistill"

    def _post(self, reply: Reply, decision: Decision, account_id: str, watermark: bool) -> Reply:
        text, reasoning = reply.text, reply.reasoning
        if decision.degraded and decision.defence is not None:
            text, inline = strip_think(text)
            text = self.policy.degrade.served_text(decision, text)
            reasoning = "\n".join(p for p in (reasoning, inline) if p)
            reasoning = served_reasoning(self.policy.degrade.text_defence(decision.defence), reasoning) or ""
        if watermark and text:
            text = self.watermark_key.text_watermarker(account_id).apply(text)
        return Reply(text, reasoning, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens)

    # ---------------------------------------------------------------- the request path

    async def authenticate(self, api: Api, request: Request, hold: bool = False) -> KeyRecord | Response:
        """The key's record, or the error response. With `hold`, the request also takes one of
        the key's in-flight slots (503 when none is free), given back by `release`."""
        key = _key_from(request.scope)
        addr = request.client.host if request.client else "?"
        rec = self.keys.lookup_cached(key) if key is not None else None
        if not isinstance(rec, KeyRecord) and not (rec is False and key is not None and self.keys.is_cached(key)):
            # Only what is not a known key is limited per address: one that costs a store
            # look-up for an unknown id, or fails. A known key (valid in the cache, or cached
            # and due to be read again) from a busy address is never refused here.
            wait = self.login_failures.blocked(addr)
            if wait is not None:
                log.info("429 %s from %s: too many failed logins", api, addr)
                return self.error_response(api, ApiError(429, "rate_limit_error", "Too many requests with a missing, invalid or revoked API key from this address; wait and check the key.",
                                                         code="too_many_failed_logins", retry_after=max(1, int(wait + 0.999))))
        if key is None:
            self.login_failures.failed(addr)
            log.info("401 %s from %s: no API key", api, addr)
            return self.error_response(api, ApiError(401, "authentication_error", "No API key was sent; pass it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.", code="invalid_api_key"))
        if rec is False:
            rec = await asyncio.get_running_loop().run_in_executor(self._key_pool, self.keys.lookup_store, key)
        if not isinstance(rec, KeyRecord):
            self.login_failures.failed(addr)
            log.info("401 %s from %s: invalid or revoked key", api, addr)
            return self.error_response(api, ApiError(401, "authentication_error", "The API key is invalid or has been revoked; create a new key with 'distillguard keys create' or ask the provider.", code="invalid_api_key"))
        if hold:
            n = self._inflight.get(rec.key_id, 0)
            if n >= self.config.max_inflight_per_key:
                log.info("503 %s account=%s: key %s has %d requests in flight", api, rec.account_id, rec.key_id, n)
                return self.error_response(api, ApiError(503, "overloaded_error", f"This key already has {n} requests in flight; wait for some to finish.",
                                                         code="too_many_concurrent_requests", retry_after=1))
            self._inflight[rec.key_id] = n + 1
            request.scope[_SLOT] = rec.key_id
        return rec

    def release(self, scope: Any) -> None:
        """Give back the in-flight slot a request took in `authenticate` (after its answer)."""
        key_id = scope.pop(_SLOT, None)
        if key_id is None:
            return
        n = self._inflight.get(key_id, 1) - 1
        if n > 0:
            self._inflight[key_id] = n
        else:
            self._inflight.pop(key_id, None)

    async def handle(self, api: Api, request: Request) -> Response:
        """Answer one proxy request, and count it (`/metrics`)."""
        t0 = time.perf_counter()
        response = await self._handle(api, request)
        self.metrics.observe(api, response.status_code, request.scope.get(_ACTION, "none"), time.perf_counter() - t0)
        return response

    async def _handle(self, api: Api, request: Request) -> Response:
        t0 = time.perf_counter()
        ts = now_us()
        auth = await self.authenticate(api, request, hold=True)
        if isinstance(auth, Response):
            return auth
        rec = auth
        req: ChatRequest | None = None
        model = None
        try:
            if self.capture.refusing:
                raise _spool_error()
            raw = await self._read_body(request)
            body = load_body(raw)
            model = body.get("model") if isinstance(body.get("model"), str) else None
            req = PARSERS[api](body)
            upstream = self.router.resolve(req.model, remember=False)
            if upstream is None:
                raise ApiError(404, "not_found_error", f"The model {req.model!r} does not exist on this gateway; list the available models with GET /v1/models.", param="model", code="model_not_found")
            try:
                decision = self.policy.decide(rec.account_id, req.end_user)
                if decision.source == "default" and self.policy.checks_first_requests:
                    decision = self._first_request(rec, req, request) or decision
                if decision.blocked:
                    request.scope[_ACTION] = decision.action
                    raise ApiError(403, "permission_error", decision.block_message(rec.account_id),
                                   code="end_user_blocked" if decision.end_user else "account_blocked")
                if decision.degraded:
                    cap = self.policy.degrade.max_tokens_cap
                    req.max_tokens = min(req.max_tokens or cap, cap)
                subjects = self._subjects(rec, decision)
                verdict = await self.limits_or_open(
                    self.limiter.check(subjects, throttled=decision.throttled, tokens=self._reserve_for(req)), rec.account_id)
            except ApiError:
                raise
            except Exception:  # noqa: BLE001 - a policy failure never becomes a 500: fail open, loudly
                log.error("policy or limits failed for account %s; serving the request", rec.account_id, exc_info=True)
                decision, subjects = Decision("allow"), [("key", rec.key_id)]
                verdict = ALLOWED
            request.scope[_ACTION] = decision.action
            if not verdict.allowed:
                self.metrics.refusals.labels(verdict.scope or "", verdict.budget or "").inc()
                raise ApiError(429, "rate_limit_error", verdict.message(), code="rate_limit_exceeded", retry_after=verdict.retry_after)
            self.router.remember(req.model, upstream)
            held = verdict.reservation
            watermark = self.watermark_key is not None and not upstream.watermarks_itself
            try:
                if req.previous_response_id is not None:
                    await check_previous(self.ledger, req, rec.account_id, api in getattr(upstream, "native_apis", ()))
                if api in getattr(upstream, "native_apis", ()):
                    return await self._native(api, request, rec, req, raw, body, upstream, decision, held, watermark, ts, t0)
                if req.stream:
                    return await self._stream(api, request, rec, req, upstream, decision, held, watermark, ts, t0)
                reply = await upstream.complete(req, rec.account_id)
            except BaseException:
                # Nothing was served: the reservation goes back whole.
                self.limiter.settle_later(held, 0)
                raise
        except ApiError as err:
            log.info("%d %s account=%s: %s", err.status, api, rec.account_id, err.message)
            self._event(req, rec, request, api, ts, t0, err.status, model=model)
            return self.error_response(api, err)
        reply = self._post(reply, decision, rec.account_id, watermark)
        rid = new_id()
        event = self._event(req, rec, request, api, ts, t0, 200, reply.text, reply.prompt_tokens, reply.completion_tokens)
        self.limiter.settle_later(held, reply.prompt_tokens + reply.completion_tokens)
        try:
            await self._durable(event)
        except ApiError as err:
            return self.error_response(api, err)
        return Response(dumps(render(req, reply, rid, req.model)), 200, None, _JSON)

    def _first_request(self, rec: KeyRecord, req: ChatRequest, request: Request) -> Decision | None:
        """An account the detector has not judged yet: its request checked against flagged
        campaigns' keys before it is forwarded (see `distillguard.detect._firstrequest`); a
        match holds for the account's next requests until its first verdict."""
        held = self.policy.held_first_request(rec.account_id)
        if held is not None:
            return held
        if self._request_keys is None:
            from distillguard.detect import RequestKeys

            self._request_keys = RequestKeys()
        client = request.scope.get("client")
        keys = self._request_keys(client[0] if client else None, req.system, req.prompt)
        decision = self.policy.first_request(rec.account_id, self.policy.match_first_request(keys))
        if decision is not None:
            log.info("first request of account %s matches a flagged campaign: %s", rec.account_id, decision.action)
        return decision

    def _reserve_for(self, req: ChatRequest) -> int:
        """Tokens held while the request runs: its prompt (estimated) plus its completion's
        ceiling, `max_tokens` or the configured estimate when the request sets none."""
        prompt = estimate_tokens((req.system or "") + " ".join(m.content for m in req.messages))
        return prompt + (req.max_tokens or self.limiter.config.reserve_completion_tokens)

    async def _native(self, api: Api, request: Request, rec: KeyRecord, req: ChatRequest, raw: bytes, body: dict[str, Any],
                      upstream: Any, decision: Decision, held: Reservation | None, watermark: bool, ts: int, t0: float) -> Response:
        """The upstream speaks the client's API: bytes pass through (see `_native.py`)."""
        cap = self.policy.degrade.max_tokens_cap if decision.degraded else None
        drop_usage = req.stream and api in ("chat.completions", "completions") and not req.include_usage
        rewrite = Rewrite.of(self.policy.degrade, decision, self.watermark_key.text_watermarker(rec.account_id) if watermark else None)
        payload = native_request(api, raw, body, req, cap, drop_usage, rewrite.active)
        if req.stream:
            reader = ResponsesStream(rewrite) if api == "responses" else NativeStream(api, rewrite, drop_usage)
            return await self._native_stream(api, request, rec, req, upstream, payload, reader, held, ts, t0)
        if api == "responses":
            out, reply, data = read_response(await upstream.forward(api, payload), req, rewrite, upstream.name)
            await own_response(self.ledger, data.get("id"), rec.account_id, req.model)
        else:
            out, reply = read_answer(api, await upstream.forward(api, payload), req, rewrite, upstream.name)
        event = self._event(req, rec, request, api, ts, t0, 200, reply.text, reply.prompt_tokens, reply.completion_tokens)
        self.limiter.settle_later(held, reply.prompt_tokens + reply.completion_tokens)
        try:
            await self._durable(event)
        except ApiError as err:
            return self.error_response(api, err)
        return Response(out, 200, None, _JSON)

    async def _native_stream(self, api: Api, request: Request, rec: KeyRecord, req: ChatRequest, upstream: Any, payload: bytes,
                             reader: NativeStream | ResponsesStream, held: Reservation | None, ts: int, t0: float) -> Response:
        agen = upstream.forward_stream(api, payload).__aiter__()
        # As in `_stream`: an upstream that refuses or fails before answering gets an HTTP status.
        try:
            first: bytes = await agen.__anext__()
        except StopAsyncIteration:
            first = b""

        recorded = False

        def record(status: int) -> asyncio.Future[None] | None:
            nonlocal recorded
            recorded = True
            reader.settle()
            text = reader.text()
            pt = reader.prompt_tokens if reader.prompt_tokens is not None else estimate_tokens(req.prompt)
            ct = reader.completion_tokens if reader.completion_tokens is not None else estimate_tokens(text)
            self.limiter.settle_later(held, pt + ct)
            return self._event(req, rec, request, api, ts, t0, status, text, pt, ct)

        async def body() -> AsyncIterator[bytes]:
            status = CLIENT_CLOSED
            owned = False
            try:
                chunk = first
                while True:
                    out = reader.feed(chunk)
                    if isinstance(reader, ResponsesStream) and reader.response_id is not None and not owned:
                        owned = True  # known before the client sees the id, so it can GET it at once
                        await own_response(self.ledger, reader.response_id, rec.account_id, req.model)
                    if reader.done and reader.error is None:
                        # the answer's last bytes: sent once its event is on disk
                        await self._durable(record(200))
                    if out:
                        yield out
                    if reader.done:
                        break
                    try:
                        chunk = await agen.__anext__()
                    except StopAsyncIteration:
                        break
                if reader.error is not None:
                    status = 502
                    log.info("502 %s stream account=%s: the upstream sent an error event (%s)", api, rec.account_id, reader.error)
                elif not reader.done:
                    end = {"messages": "message_stop", "responses": "response.completed"}.get(api, "[DONE]")
                    raise ApiError(502, "api_error", f"The upstream model server {upstream.name} ended the stream without {end}.")
                else:
                    status = 200
            except ApiError as err:
                status = err.status
                log.info("%d %s stream account=%s: %s", err.status, api, rec.account_id, err.message)
                yield sse_error(api, err)
            finally:
                if status == CLIENT_CLOSED:
                    log.info("499 %s stream account=%s: client disconnected", api, rec.account_id)
                if not recorded:
                    record(status)
                if status == CLIENT_CLOSED:  # this task is being cancelled: close in another
                    asyncio.get_running_loop().create_task(aclose_quietly(agen))
                else:
                    await aclose_quietly(agen)

        return SSEResponse(body())

    async def _stream(self, api: Api, request: Request, rec: KeyRecord, req: ChatRequest, upstream: Upstream,
                      decision: Decision, held: Reservation | None, watermark: bool, ts: int, t0: float) -> Response:
        agen = upstream.stream(req, rec.account_id).__aiter__()
        # The first delta is awaited before answering, so an upstream that is down or slow
        # gets a proper HTTP error status rather than a 200 with an error event.
        first: Delta | None
        try:
            first = await agen.__anext__()
        except StopAsyncIteration:
            first = None
        renderer: StreamRenderer | ResponsesRenderer = (ResponsesRenderer if api == "responses" else StreamRenderer)(req, new_id(), req.model)
        think = self.policy.degrade.answer_filter(decision) if decision.degraded else None
        text_defence = self.policy.degrade.text_defence(decision.defence) if decision.defence is not None else "withhold"
        hold = HeldReasoning(text_defence, think) if think is not None and text_defence != "withhold" else None
        wm = self.watermark_key.text_watermarker(rec.account_id).stream() if watermark else None
        est_prompt = estimate_tokens((req.system or "") + " ".join(m.content for m in req.messages))

        async def body() -> AsyncIterator[bytes]:
            status = CLIENT_CLOSED
            recorded = False
            parts: list[str] = []
            pt: int | None = None
            ct: int | None = None
            finish = "stop"
            n_pieces = 0
            try:
                # Writes are coalesced: the stream's opening goes out with the first delta and
                # its closing events with the last; each send is a syscall on the hot path.
                head = renderer.start(est_prompt)
                d = first
                while d is not None:
                    text, reasoning = d.text, d.reasoning
                    if think is not None:
                        text = think.feed(text)
                        reasoning = hold.feed(reasoning, text) if hold is not None else ""
                    if wm is not None and text:
                        text = wm.feed(text)
                    if text:
                        parts.append(text)
                        n_pieces += 1
                    chunk = head + renderer.delta(text, reasoning)
                    if d.finish_reason is not None:
                        finish = d.finish_reason
                        pt, ct = d.prompt_tokens, d.completion_tokens
                        head = chunk
                        break
                    head = b""
                    if chunk:
                        yield chunk
                    try:
                        d = await agen.__anext__()
                    except StopAsyncIteration:
                        d = None
                tail = think.finish() if think is not None else ""
                late = hold.finish() if hold is not None else ""  # a trace with no answer text after it
                if wm is not None:
                    tail = wm.feed(tail) + wm.finish() if tail else wm.finish()
                if tail or late:
                    parts.append(tail)
                    head += renderer.delta(tail, late)
                pt = pt if pt is not None else est_prompt
                ct = ct if ct is not None else estimate_tokens("".join(parts))
                # the answer's last bytes: sent once its event is on disk
                recorded = True
                self.limiter.settle_later(held, pt + ct)
                await self._durable(self._event(req, rec, request, api, ts, t0, 200, "".join(parts), pt, ct))
                yield head + renderer.end(finish, pt, ct)
                status = 200
            except ApiError as err:
                status = err.status
                log.info("%d %s stream account=%s: %s", err.status, api, rec.account_id, err.message)
                yield renderer.error(err)
            finally:
                text = "".join(parts)
                if ct is None:
                    ct = estimate_tokens(text)
                if status == CLIENT_CLOSED:
                    log.info("499 %s stream account=%s: client disconnected after %d pieces", api, rec.account_id, n_pieces)
                if not recorded:
                    self._event(req, rec, request, api, ts, t0, status, text, pt if pt is not None else est_prompt, ct)
                    self.limiter.settle_later(held, (pt or est_prompt) + ct)
                # Not awaited here: after a disconnect this task is being cancelled.
                asyncio.get_running_loop().create_task(aclose_quietly(agen))

        return SSEResponse(body())
