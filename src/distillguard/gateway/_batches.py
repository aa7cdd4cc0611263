"""Batch APIs: OpenAI Files + Batch and Anthropic Message Batches, run through the gateway.

A submitted batch is read request by request at submission: each is parsed as its API's own
request, routed, and checked against policy (a blocked account's batch is refused with the
API's own 403) and limits (all of the batch's requests are counted at once; a batch larger than
what is left of a budget is refused, saying how many are left). Every request is captured then,
once, as an event with the batch's id and the submission time as `ts`, which the online
detector reads from the capture, so a harvesting batch is judged before it runs. Runners (one per gateway replica) take
open batches under a lease, send their requests to the upstream's request API at a bounded rate
(`batch_rate`, `batch_concurrency`) or, with `batch_via = "upstream"`, the whole batch to the
upstream's own batch API (`_batchupstream.py`), apply degrade and watermark to each answer as
for a live request, and complete each request's event with its answer. Batch state lives in the gateway's
database (`_batchstore.py`), so a batch survives a restart and is picked up where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from distillguard.gateway._batchstore import CANCELED, ERRORED, PENDING, SUCCEEDED, BatchStore
from distillguard.gateway._keys import KeyRecord
from distillguard.gateway._native import Rewrite, native_request, read_answer
from distillguard.gateway._protocol import (
    PARSERS,
    Api,
    ApiError,
    ChatRequest,
    dumps,
    error_body,
    invalid,
    render,
)
from distillguard.gateway._store import EVENT_FIELDS, bound_event, bound_text, now_us

if TYPE_CHECKING:
    from distillguard.gateway._gateway import Gateway

log = logging.getLogger("distillguard.gateway")

_JSON = "application/json"
#: status of a batch request's event while it waits to run (accepted, not yet answered)
QUEUED_STATUS = 202
#: status of the event of a request cancelled before it ran (as a client that hung up)
CANCELLED_STATUS = 499
#: how long a batch may take, as both APIs state it
WINDOW_S = 24 * 3600
#: the request budgets a batch is counted against at submission: its requests run over hours at
#: the runner's own bounded rate, so per-minute budgets (burst control) would refuse any batch
#: larger than one minute's worth
BATCH_PERIODS = ("day",)
#: longest custom_id and model name stored (the tables' column width)
MAX_NAME = 200
#: groups of `batch_concurrency` requests a runner sends for one batch before the next open
#: batch takes its turn (a batch of 50,000 must not hold the others back for hours)
TURN_GROUPS = 4
#: most detection intervals a batch waits for this replica's online detector to judge it
JUDGE_WAIT_ROUNDS = 20
#: seconds between looks for open batches when there is none
POLL_S = 0.2
OPENAI_ENDPOINTS: dict[str, Api] = {"/v1/chat/completions": "chat.completions", "/v1/completions": "completions", "/v1/responses": "responses"}
_ENDPOINT_PATH = {v: k for k, v in OPENAI_ENDPOINTS.items()}


def epoch_s(us: int | None) -> int | None:
    return None if us is None else us // 1_000_000


def _rfc3339(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")


class BatchService:
    """The batch routes and the runner of one gateway.

    Args:
        gw: the gateway (store, router, policy, limits, capture, watermark).
        owner: this runner's name in batch leases (unique per process by default).
    """

    def __init__(self, gw: Gateway, owner: str | None = None) -> None:
        from distillguard.gateway._gateway import new_id

        self.gw = gw
        self.store: BatchStore = gw.ledger
        self.owner = owner or f"runner-{new_id()}"
        self._new_id = new_id
        self._task: asyncio.Task[None] | None = None
        self._claiming: asyncio.Future[dict[str, Any] | None] | None = None
        # batch id -> (the online detector's step count that judges it, when it was submitted)
        self._judge: dict[str, tuple[int, int]] = {}
        self._next_start = 0.0
        self._pace = asyncio.Lock()
        self.ran = 0
        from distillguard.gateway._batchupstream import UpstreamBatchRunner

        self.upstream = UpstreamBatchRunner(self)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="distillguard-batches")

    async def stop(self) -> None:
        """Stop running; a batch in hand is released for the next runner (its finished requests
        are stored, the others stay pending)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            # a claim whose thread was still running when the task was cancelled may have taken
            # a lease that nothing here will release: wait for it, then release all of ours
            claiming, self._claiming = self._claiming, None
            if claiming is not None:
                with contextlib.suppress(Exception):
                    await claiming
            await asyncio.to_thread(self.store.release_owner, self.owner)

    def _unjudged(self, batch: dict[str, Any]) -> bool:
        """Whether this replica's online detector has yet to judge the batch's requests: it was
        fed them at submission, and a detection step that began after that has not finished.
        Waited for at most `JUDGE_WAIT_ROUNDS` detection intervals (a detector far behind skips
        events)."""
        judge = self._judge.get(batch["batch_id"])
        online = self.gw.online
        if judge is None or online is None:
            return False
        if online.updates < judge[0] and now_us() - judge[1] < self._judge_wait_us():
            return True
        del self._judge[batch["batch_id"]]
        return False

    def _judge_wait_us(self) -> int:
        return int(JUDGE_WAIT_ROUNDS * self.gw.config.detect_interval * 1e6)

    async def _run(self) -> None:
        cfg = self.gw.config
        # With detection on, a batch waits at least one detection interval before any replica
        # runs it, so a detector following the capture judges its requests first; the replica
        # it was submitted to also waits for its own detector's step (`_unjudged`).
        hold_us = int(cfg.detect_interval * 1e6) if cfg.detect else 0
        while True:
            try:
                self._claiming = asyncio.ensure_future(asyncio.to_thread(self.store.claim, self.owner, int(cfg.batch_lease * 1e6), hold_us))
                batch = await asyncio.shield(self._claiming)
                if batch is None:
                    await asyncio.sleep(POLL_S)
                    continue
                try:
                    if self._unjudged(batch):  # back at the end of the turns
                        await asyncio.sleep(POLL_S)
                        continue
                    await self._work(batch)
                finally:
                    await asyncio.shield(asyncio.to_thread(self.store.release, batch["batch_id"], self.owner))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the store may be briefly unavailable
                log.warning("running batches failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)

    async def _work(self, batch: dict[str, Any]) -> None:
        batch_id = batch["batch_id"]
        cfg = self.gw.config
        if cfg.batch_via == "upstream" and await self.upstream.work(batch):
            return
        for _turn in range(TURN_GROUPS):
            now = await asyncio.to_thread(self.store.get, batch_id)
            if now is None:
                return
            if now["status"] == "cancelling":
                n = await asyncio.to_thread(self.store.cancel_pending, batch_id, CANCELLED_STATUS)
                await asyncio.to_thread(self.store.end, batch_id, "cancelled")
                self.upstream.ended(batch_id)
                log.info("batch %s cancelled: %d requests not run", batch_id, n)
                return
            rows = await asyncio.to_thread(self.store.pending, batch_id, cfg.batch_concurrency)
            if not rows:
                await asyncio.to_thread(self.store.end, batch_id, "completed")
                self.upstream.ended(batch_id)
                log.info("batch %s completed", batch_id)
                return
            done = await asyncio.gather(*(self._one(batch, r) for r in rows))
            await asyncio.to_thread(self.store.finish_requests, batch_id, [d[0] for d in done], [d[1] for d in done])
            self.ran += len(done)
            if not await asyncio.to_thread(self.store.renew, batch_id, self.owner, int(cfg.batch_lease * 1e6)):
                log.warning("batch %s: lease lost to another runner", batch_id)
                return

    async def _paced(self) -> None:
        """Wait for this request's turn under `batch_rate` (across every batch this runner runs)."""
        async with self._pace:
            loop = asyncio.get_running_loop()
            now = loop.time()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / self.gw.config.batch_rate
        if start > now:
            await asyncio.sleep(start - now)

    async def _one(self, batch: dict[str, Any], row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run one request: (its stored result, its event's completion)."""
        gw = self.gw
        api: Api = row["endpoint"]
        account = batch["account_id"]
        await self._paced()
        t0 = time.perf_counter()
        req: ChatRequest | None = None
        text: str | None = None
        pt = ct = None
        try:
            body = orjson.loads(row["body"])
            req = PARSERS[api](body)
            upstream = gw.router.resolve(req.model)
            if upstream is None:
                raise ApiError(404, "not_found_error", f"The model {req.model!r} does not exist on this gateway.", param="model", code="model_not_found")
            decision = gw.policy.decide(account)
            if decision.blocked:
                raise ApiError(403, "permission_error", decision.block_message(account), code="account_blocked")
            if decision.degraded:
                cap = gw.policy.degrade.max_tokens_cap
                req.max_tokens = min(req.max_tokens or cap, cap)
            watermark = gw.watermark_key is not None and not upstream.watermarks_itself
            if api in getattr(upstream, "native_apis", ()):
                cap_n = gw.policy.degrade.max_tokens_cap if decision.degraded else None
                rewrite = Rewrite.of(gw.policy.degrade, decision, gw.watermark_key.text_watermarker(account) if watermark else None)
                payload = native_request(api, row["body"].encode(), body, req, cap_n, False, rewrite.active)
                out, reply = read_answer(api, await upstream.forward(api, payload), req, rewrite, upstream.name)  # type: ignore[attr-defined]
                answer = orjson.loads(out)
                if api == "responses" and isinstance(answer.get("id"), str):  # its owner may GET it
                    await asyncio.to_thread(self.store.own_response, answer["id"][:200], account, req.model)
            else:
                reply = gw._post(await upstream.complete(req, account), decision, account, watermark)
                answer = render(req, reply, row["event_id"], req.model)
            text, pt, ct = reply.text, reply.prompt_tokens, reply.completion_tokens
            subjects: list[tuple[Any, str]] = [("key", batch["key_id"] or ""), ("account", account)]
            camp = decision.campaign_id or gw.policy.campaign_of(account)
            if camp:
                subjects.append(("campaign", camp))
            await gw.limiter.charge_tokens(subjects, pt + ct)
            status, state, result = 200, SUCCEEDED, answer
        except ApiError as err:
            status, state, result = err.status, ERRORED, error_body(api, err)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop its batch
            log.error("batch %s request %s failed", batch["batch_id"], row["custom_id"], exc_info=exc)
            status, state = 500, ERRORED
            result = error_body(api, ApiError(500, "api_error", "The gateway hit an internal error running this request; it has been logged."))
        stored = {"idx": row["idx"], "state": state, "status_code": status, "result": dumps(result).decode()}
        event = {"event_id": row["event_id"], "status": status, "latency_ms": (time.perf_counter() - t0) * 1000.0,
                 "response": bound_text(text, None) if text is not None and gw.config.keep_responses else None,
                 "prompt_tokens": pt, "completion_tokens": ct}
        return stored, event

    # ---------------------------------------------------------------- submission

    async def _auth(self, api: Api, request: Request) -> KeyRecord | Response:
        return await self.gw.authenticate(api, request)

    async def _read(self, request: Request) -> bytes:
        limit = self.gw.config.batch_max_bytes
        cl = request.headers.get("content-length")
        if cl is not None and cl.isdigit() and int(cl) > limit:
            raise ApiError(413, "request_too_large", f"The batch is larger than the gateway's limit of {limit} bytes; split it into smaller batches.")
        try:
            async with asyncio.timeout(self.gw.config.body_timeout):
                raw = await request.body()
        except TimeoutError as exc:
            raise body_too_slow(self.gw.config.body_timeout) from exc
        if len(raw) > limit:
            raise ApiError(413, "request_too_large", f"The batch is larger than the gateway's limit of {limit} bytes; split it into smaller batches.")
        return raw

    async def submit(self, kind: str, rec: KeyRecord, request: Request, items: list[tuple[str, Api, dict[str, Any], bytes]],
                     extra: dict[str, Any], labels: list[str] | None = None, problems: list[str] | None = None) -> dict[str, Any]:
        """Check and store a batch of (custom_id, api, body, raw body) requests; the batch row.

        `labels` name each request in messages (default: its position); `problems` are those
        already found in the batch's form, reported with the ones found here."""
        gw = self.gw
        problems = list(problems or [])
        if not items and not problems:
            raise invalid("The batch has no requests.", "requests")
        cap = gw.config.batch_max_requests
        if len(items) > cap:
            raise invalid(f"The batch has {len(items)} requests; this gateway takes at most {cap} per batch. Split it.", "requests")
        # parsing tens of thousands of requests is CPU work: off the event loop, as the inserts are
        parsed = await asyncio.to_thread(self._parse_all, rec.account_id, items, labels, problems)
        decision = gw.policy.decide(rec.account_id)
        if decision.blocked:
            raise ApiError(403, "permission_error", decision.block_message(rec.account_id), code="account_blocked")
        subjects: list[tuple[Any, str]] = [("key", rec.key_id), ("account", rec.account_id)]
        camp = decision.campaign_id or gw.policy.campaign_of(rec.account_id)
        if camp:
            subjects.append(("campaign", camp))
        verdict = await gw.limits_or_open(
            gw.limiter.reserve(subjects, len(items), throttled=decision.throttled, periods=BATCH_PERIODS), rec.account_id)
        if not verdict.allowed:
            left = verdict.remaining if verdict.remaining is not None else 0
            budget = (verdict.budget or "").replace("_", " ")
            raise ApiError(429, "rate_limit_error",
                           f"The batch has {len(items)} requests, more than the {left} left of {verdict.scope} {verdict.subject}'s "
                           f"limit of {verdict.limit} {budget}{' (throttled)' if decision.throttled else ''}. "
                           f"Submit at most {left} requests, or retry after {verdict.retry_after} s.",
                           code="rate_limit_exceeded", retry_after=verdict.retry_after)
        ts = now_us()
        batch_id = ("msgbatch_" if kind == "anthropic" else "batch_") + self._new_id()
        client = request.client
        common = {"ts_us": ts, "account_id": rec.account_id, "key_id": rec.key_id, "ip": client.host if client else None,
                  "user_agent": request.headers.get("user-agent"), "status": QUEUED_STATUS, "batch_id": batch_id}
        requests, events = await asyncio.to_thread(self._rows, batch_id, common, items, parsed)
        batch = {**{c.name: None for c in self.store.batches.c}, "batch_id": batch_id, "api": kind, "account_id": rec.account_id, "key_id": rec.key_id,
                 "endpoint": items[0][1], "status": "in_progress", "total": len(items), "created_us": ts, "in_progress_us": ts, **extra}
        if gw.online is not None:
            # the step count by which the detector has read these rows (committed below)
            self._judge[batch_id] = (gw.online.judged_after(), ts)
            for old in [b for b, (_, t) in self._judge.items() if ts - t > self._judge_wait_us()]:
                del self._judge[old]  # run by another replica, or long judged
        try:
            await asyncio.to_thread(self.store.create, batch, requests, events)
        except BaseException:
            self._judge.pop(batch_id, None)
            raise
        for fn in gw.capture.listeners:  # the online detector sees the batch now, before it runs
            try:
                fn(events)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - a listener never refuses a batch
                log.warning("capture listener failed on batch %s", batch_id, exc_info=True)
        log.info("batch %s: %d requests from account %s accepted", batch_id, len(items), rec.account_id)
        return batch

    def _parse_all(self, account_id: str, items: list[tuple[str, Api, dict[str, Any], bytes]], labels: list[str] | None,
                   problems: list[str]) -> list[ChatRequest]:
        """Every request parsed and routed (blocking); `invalid` with every problem found."""
        parsed: list[ChatRequest] = []
        for i, (custom_id, api, body, _raw) in enumerate(items):
            where = labels[i] if labels else f"requests.{i} ({custom_id})"
            try:
                req = PARSERS[api](body)
                if req.stream:
                    raise invalid("'stream' cannot be true in a batch request.", "stream")
                if len(req.model) > MAX_NAME:
                    raise invalid(f"'model' is longer than {MAX_NAME} characters.", "model")
                upstream = self.gw.router.resolve(req.model)
                if upstream is None:
                    raise invalid(f"The model {req.model!r} does not exist on this gateway; list models with GET /v1/models.", "model")
                prev = req.previous_response_id
                if prev is not None and ("responses" not in getattr(upstream, "native_apis", ())
                                         or self.store.response_model(prev, account_id) is None):
                    raise invalid(f"No stored response {prev!r} of this account's to continue.", "previous_response_id")
                parsed.append(req)
            except ApiError as err:
                problems.append(f"{where}: {err.message}")
                if len(problems) >= 10:
                    break
        if problems:
            raise invalid("The batch has invalid requests; fix them and submit again. " + " ".join(sorted(problems, key=_line_no)[:10]))
        return parsed

    def _rows(self, batch_id: str, common: dict[str, Any], items: list[tuple[str, Api, dict[str, Any], bytes]],
              parsed: list[ChatRequest]) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
        """The batch's request rows and their events (`common`: the fields all events share)."""
        requests, events = [], []
        for i, ((custom_id, api, _body, raw), req) in enumerate(zip(items, parsed, strict=True)):
            event_id = self._new_id()
            requests.append({"batch_id": batch_id, "idx": i, "custom_id": custom_id, "event_id": event_id, "endpoint": api,
                             "body": raw.decode(), "state": PENDING, "status_code": None, "result": None, "done_us": None})
            row = {**common, "event_id": event_id, "endpoint": api, "model": req.model, "system": req.system, "prompt": req.prompt,
                   "turns": len(req.messages), "tools": req.tools, "max_tokens": req.max_tokens,
                   "temperature": req.temperature, "end_user": req.end_user}
            events.append(bound_event(tuple(row.get(c) for c in EVENT_FIELDS)))  # as capture bounds its rows
        return requests, events

    # ---------------------------------------------------------------- shapes

    async def openai_batch(self, b: dict[str, Any]) -> dict[str, Any]:
        n = await asyncio.to_thread(self.store.counts, b["batch_id"])
        ended = b["ended_us"] if b["status"] in ("completed", "cancelled") else None
        return {
            "id": b["batch_id"], "object": "batch", "endpoint": _ENDPOINT_PATH.get(b["endpoint"], b["endpoint"]), "errors": None,
            "input_file_id": b["input_file_id"], "completion_window": b["completion_window"] or "24h", "status": b["status"],
            "output_file_id": f"file-{b['batch_id']}-output" if ended and n[SUCCEEDED] else None,
            "error_file_id": f"file-{b['batch_id']}-errors" if ended and (n[ERRORED] or n[CANCELED]) else None,
            "created_at": epoch_s(b["created_us"]), "in_progress_at": epoch_s(b["in_progress_us"]),
            "expires_at": epoch_s(b["created_us"] + WINDOW_S * 1_000_000), "finalizing_at": None,
            "completed_at": epoch_s(ended) if b["status"] == "completed" else None, "failed_at": None, "expired_at": None,
            "cancelling_at": epoch_s(b["cancel_us"]), "cancelled_at": epoch_s(ended) if b["status"] == "cancelled" else None,
            "request_counts": {"total": b["total"], "completed": n[SUCCEEDED], "failed": n[ERRORED] + n[CANCELED]},
            "metadata": orjson.loads(b["metadata"]) if b["metadata"] else None,
        }

    async def anthropic_batch(self, b: dict[str, Any], base_url: str) -> dict[str, Any]:
        n = await asyncio.to_thread(self.store.counts, b["batch_id"])
        ended = b["status"] in ("completed", "cancelled")
        status = "ended" if ended else "canceling" if b["status"] == "cancelling" else "in_progress"
        # as the API reports it: requests count as processing until the whole batch has ended
        processing = b["total"] - (n[SUCCEEDED] + n[ERRORED] + n[CANCELED]) if ended else b["total"]
        return {
            "id": b["batch_id"], "type": "message_batch", "processing_status": status,
            "request_counts": {"processing": processing, "succeeded": n[SUCCEEDED] if ended else 0,
                               "errored": n[ERRORED] if ended else 0, "canceled": n[CANCELED] if ended else 0, "expired": 0},
            "ended_at": _rfc3339(b["ended_us"]) if ended else None, "created_at": _rfc3339(b["created_us"]),
            "expires_at": _rfc3339(b["created_us"] + WINDOW_S * 1_000_000), "archived_at": None,
            "cancel_initiated_at": _rfc3339(b["cancel_us"]),
            "results_url": f"{base_url}v1/messages/batches/{b['batch_id']}/results" if ended else None,
        }

    async def openai_output(self, b: dict[str, Any], errors: bool) -> bytes:
        states = (ERRORED, CANCELED) if errors else (SUCCEEDED,)
        rows = await asyncio.to_thread(self.store.results, b["batch_id"], states)
        lines = []
        for r in rows:
            line: dict[str, Any] = {"id": f"batch_req_{r['event_id']}", "custom_id": r["custom_id"]}
            if r["state"] == CANCELED:
                line |= {"response": None, "error": {"code": "batch_cancelled", "message": "The batch was cancelled before this request ran."}}
            else:
                line |= {"response": {"status_code": r["status_code"], "request_id": f"req_{r['event_id']}", "body": orjson.loads(r["result"])}, "error": None}
            lines.append(dumps(line))
        return b"\n".join(lines) + (b"\n" if lines else b"")

    async def anthropic_results(self, b: dict[str, Any]) -> bytes:
        rows = await asyncio.to_thread(self.store.results, b["batch_id"], (SUCCEEDED, ERRORED, CANCELED))
        lines = []
        for r in rows:
            if r["state"] == SUCCEEDED:
                result: dict[str, Any] = {"type": "succeeded", "message": orjson.loads(r["result"])}
            elif r["state"] == ERRORED:
                result = {"type": "errored", "error": orjson.loads(r["result"])}
            else:
                result = {"type": "canceled"}
            lines.append(dumps({"custom_id": r["custom_id"], "result": result}))
        return b"\n".join(lines) + (b"\n" if lines else b"")


def body_too_slow(seconds: float) -> ApiError:
    return ApiError(408, "invalid_request_error", f"The request body did not arrive within {seconds:g} s; send it at once.")


def _line_no(problem: str) -> int:
    m = re.match(r"(?:line |requests\.)(\d+)", problem)
    return int(m.group(1)) if m else 0
