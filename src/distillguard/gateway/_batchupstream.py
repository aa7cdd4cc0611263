"""Running a batch through the upstream's own batch API (`batch_via = "upstream"`).

A batch whose requests all go to one HTTP upstream that speaks the batch's API natively is
forwarded whole: each request as the client sent it (capped and stripped as a live pass-through
request is under the account's policy at forwarding time), under the gateway's own custom ids
(`dg{idx}`, so a client's custom ids never reach the upstream). The upstream's batch id is
stored in `upstream_batches` before the runner lets go of the batch, so any replica, after a
restart too, looks at it every `batch_poll` seconds and passes a cancel on. Once the upstream
has ended it, each outcome is read under the account's policy at that time (a blocked account's
answers are withheld as 403s; degrade and the watermark rewrite each answer as for a live
request), tokens are charged, and each request's stored row and event are completed in place:
still one event per request. A batch that cannot go (several upstreams, a translated API, an
upstream without a batch API) runs through the request API instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from distillguard.gateway._batchstore import CANCELED, ERRORED, SUCCEEDED
from distillguard.gateway._native import Rewrite, native_request, read_answer
from distillguard.gateway._protocol import PARSERS, Api, ApiError, dumps, error_body
from distillguard.gateway._store import bound_text, now_us
from distillguard.gateway._upstream_batches import Outcome, UpstreamBatches, batch_api_for

if TYPE_CHECKING:
    from distillguard.gateway._batches import BatchService

log = logging.getLogger("distillguard.gateway")

#: requests whose outcomes are read and stored per transaction (and between event-loop turns)
COLLECT_CHUNK = 500
#: upstream answers to the batch submission that mean it has no batch API
NO_BATCH_API = (404, 405, 501)


def upstream_custom_id(idx: int) -> str:
    return f"dg{idx}"


class UpstreamBatchRunner:
    """Forwards batches to their upstream's batch API and collects their outcomes."""

    def __init__(self, svc: BatchService) -> None:
        self.svc = svc
        self.gw = svc.gw
        self.store = svc.store
        self._apis: dict[int, UpstreamBatches | None] = {}
        # batches found to run through the request API, and upstreams found without a batch API
        self._via_requests: set[str] = set()
        self._no_batch_api: set[str] = set()

    def api_of(self, upstream: Any) -> UpstreamBatches | None:
        if id(upstream) not in self._apis:
            self._apis[id(upstream)] = batch_api_for(upstream, self.gw.config.upstream_timeout)
        return self._apis[id(upstream)]

    def _poll_at(self) -> int:
        return now_us() + int(self.gw.config.batch_poll * 1e6)

    async def work(self, batch: dict[str, Any]) -> bool:
        """One turn of a batch; False when it is to run through the request API instead."""
        batch_id = batch["batch_id"]
        if batch_id in self._via_requests:
            return False
        ub = await asyncio.to_thread(self.store.upstream_batch, batch_id)
        if ub is None:
            return await self._forward(batch)
        try:
            await self._follow(batch, ub)
        except ApiError as err:  # the upstream is down or refuses to say: look again later
            log.warning("batch %s: the upstream batch %s could not be read (%s); looking again in %g s",
                        batch_id, ub["upstream_batch_id"], err.message, self.gw.config.batch_poll)
            await asyncio.to_thread(self.store.next_poll, batch_id, self._poll_at())
        return True

    def ended(self, batch_id: str) -> None:
        """Forget a batch that ended through the request API."""
        self._via_requests.discard(batch_id)

    async def _forward(self, batch: dict[str, Any]) -> bool:
        gw, store = self.gw, self.store
        batch_id, account = batch["batch_id"], batch["account_id"]
        now = await asyncio.to_thread(store.get, batch_id)
        if now is None or now["status"] != "in_progress":
            return False  # cancelled before it went: the request path ends it
        rows = await asyncio.to_thread(store.pending, batch_id, now["total"])
        if not rows:
            return False
        api: Api = now["endpoint"]
        parsed = []
        targets = set()
        for row in rows:
            body = orjson.loads(row["body"])
            req = PARSERS[api](body)
            upstream = gw.router.resolve(req.model)
            targets.add(id(upstream))
            parsed.append((row, body, req))
        upstream = gw.router.resolve(parsed[0][2].model)
        client = self.api_of(upstream) if len(targets) == 1 else None
        if client is None or api not in getattr(upstream, "native_apis", ()) or upstream.name in self._no_batch_api:  # type: ignore[union-attr]
            self._via_requests.add(batch_id)
            log.info("batch %s runs through the request API (its requests do not all go to one upstream batch API)", batch_id)
            return False
        decision = gw.policy.decide(account)
        if decision.blocked:
            self._via_requests.add(batch_id)  # the request path fails each request with the 403
            return False
        cap = gw.policy.degrade.max_tokens_cap if decision.degraded else None
        rewrite = decision.degraded or (gw.watermark_key is not None and not upstream.watermarks_itself)  # type: ignore[union-attr]
        lines = [(upstream_custom_id(row["idx"]), native_request(api, row["body"].encode(), body, req, cap, False, rewrite))
                 for row, body, req in parsed]
        try:
            upstream_id = await client.submit(api, lines)
        except ApiError as err:
            if err.status not in NO_BATCH_API:
                raise
            self._no_batch_api.add(upstream.name)  # type: ignore[union-attr]
            self._via_requests.add(batch_id)
            log.warning("upstream %s has no batch API (%s); batches run through its request API", upstream.name, err.message)  # type: ignore[union-attr]
            return False
        await asyncio.to_thread(store.set_upstream_batch, batch_id, upstream.name, upstream_id, self._poll_at())  # type: ignore[union-attr]
        log.info("batch %s: %d requests forwarded to upstream %s as %s", batch_id, len(lines), upstream.name, upstream_id)  # type: ignore[union-attr]
        return True

    def _upstream_named(self, name: str) -> Any:
        return next((r.upstream for r in self.gw.router.routes if r.upstream.name == name and self.api_of(r.upstream) is not None), None)

    async def _follow(self, batch: dict[str, Any], ub: dict[str, Any]) -> None:
        store = self.store
        batch_id = batch["batch_id"]
        now = await asyncio.to_thread(store.get, batch_id)
        if now is None:
            return
        upstream = self._upstream_named(ub["upstream"])
        if upstream is None:
            await self._collect(now, None, {}, f"The upstream {ub['upstream']!r} that ran this batch is no longer configured on this gateway.")
            return
        client = self.api_of(upstream)
        assert client is not None
        if now["status"] == "cancelling" and not ub["cancel_sent"]:
            await client.cancel(ub["upstream_batch_id"])
            await asyncio.to_thread(store.next_poll, batch_id, self._poll_at(), True)
            log.info("batch %s: cancel passed to upstream %s", batch_id, upstream.name)
        if not await client.ended(ub["upstream_batch_id"]):
            await asyncio.to_thread(store.next_poll, batch_id, self._poll_at())
            return
        await self._collect(now, upstream, await client.results(ub["upstream_batch_id"]), None)

    async def _collect(self, batch: dict[str, Any], upstream: Any, outcomes: dict[str, Outcome], missing: str | None) -> None:
        """Store every pending request's outcome and end the batch."""
        gw, store = self.gw, self.store
        batch_id, account = batch["batch_id"], batch["account_id"]
        api: Api = batch["endpoint"]
        decision = gw.policy.decide(account)
        watermark = upstream is not None and gw.watermark_key is not None and not upstream.watermarks_itself
        rewrite = Rewrite.of(gw.policy.degrade, decision, gw.watermark_key.text_watermarker(account) if watermark else None)
        tokens = 0
        counts = {SUCCEEDED: 0, ERRORED: 0, CANCELED: 0}
        while rows := await asyncio.to_thread(store.pending, batch_id, COLLECT_CHUNK):
            results, events = [], []
            for row in rows:
                outcome = outcomes.get(upstream_custom_id(row["idx"]))
                state, status, result, reply = self._outcome(api, account, row, outcome, decision, rewrite, upstream, missing)
                if reply is not None:
                    tokens += reply.prompt_tokens + reply.completion_tokens
                    if api == "responses" and isinstance(result.get("id"), str):  # its owner may GET it
                        await asyncio.to_thread(store.own_response, result["id"][:200], account, orjson.loads(row["body"]).get("model", ""))
                counts[state] += 1
                results.append({"idx": row["idx"], "state": state, "status_code": status, "result": None if result is None else dumps(result).decode()})
                events.append({"event_id": row["event_id"], "status": status, "latency_ms": None,
                               "response": bound_text(reply.text, None) if reply is not None and gw.config.keep_responses else None,
                               "prompt_tokens": reply.prompt_tokens if reply else None, "completion_tokens": reply.completion_tokens if reply else None})
            await asyncio.to_thread(store.finish_requests, batch_id, results, events)
            self.svc.ran += len(rows)
        if tokens:
            subjects: list[tuple[Any, str]] = [("key", batch["key_id"] or ""), ("account", account)]
            camp = decision.campaign_id or gw.policy.campaign_of(account)
            if camp:
                subjects.append(("campaign", camp))
            await gw.limiter.charge_tokens(subjects, tokens)
        ended = "cancelled" if batch["status"] == "cancelling" else "completed"
        await asyncio.to_thread(store.end, batch_id, ended)
        log.info("batch %s %s by upstream: %s", batch_id, ended, counts)

    def _outcome(self, api: Api, account: str, row: dict[str, Any], outcome: Outcome | None, decision: Any, rewrite: Rewrite,
                 upstream: Any, missing: str | None) -> tuple[str, int, Any, Any]:
        """(state, status, stored result, served reply or None) of one request."""
        if outcome is not None and outcome.state == "canceled":
            return CANCELED, 499, None, None
        try:
            if outcome is None:
                raise ApiError(502, "api_error", missing or "The upstream batch ended without a result for this request.")
            if outcome.state == "errored":
                raise ApiError(outcome.status, "api_error", f"The upstream model server {upstream.name} failed this request: "
                               f"{outcome.body.decode('utf-8', 'replace')}")
            if decision.blocked:
                raise ApiError(403, "permission_error", decision.block_message(account), code="account_blocked")
            req = PARSERS[api](orjson.loads(row["body"]))
            out, reply = read_answer(api, outcome.body, req, rewrite, upstream.name)
            return SUCCEEDED, 200, orjson.loads(out), reply
        except ApiError as err:
            return ERRORED, err.status, error_body(api, err), None
