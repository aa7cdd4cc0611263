"""Batch state in the gateway's database: uploaded files, batches, their requests and answers,
and which account owns which stored response. Blocking calls; the gateway runs them in a thread.

The tables sit next to the store's own (same engine, same prefix), so a batch survives a restart
and any replica can pick it up: a runner takes a batch under a lease that it renews while it
works, and another runner takes it over once the lease has run out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from distillguard.gateway._store import Store, create_tables, now_us, on_conflict_insert

log = logging.getLogger("distillguard.gateway")

#: batch statuses (OpenAI's names; Anthropic's processing_status is derived from them)
OPEN_STATUSES = ("in_progress", "cancelling")
#: request states
PENDING, SUCCEEDED, ERRORED, CANCELED = "pending", "succeeded", "errored", "canceled"


class BatchStore:
    """Tables `<prefix>files`, `batches`, `batch_requests`, `responses`, `upstream_batches` in the
    store's database.

    Args:
        store: the gateway's store (its engine, prefix and event insert are shared).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        md = sa.MetaData()
        p = store.prefix
        self.files = sa.Table(
            f"{p}files", md,
            sa.Column("file_id", sa.String(64), primary_key=True),
            sa.Column("account_id", sa.String(200), nullable=False, index=True),
            sa.Column("purpose", sa.String(32), nullable=False),
            sa.Column("filename", sa.String(300)),
            sa.Column("bytes", sa.BigInteger(), nullable=False),
            sa.Column("created_us", sa.BigInteger(), nullable=False),
            sa.Column("content", sa.LargeBinary(), nullable=False),
        )
        self.batches = sa.Table(
            f"{p}batches", md,
            sa.Column("batch_id", sa.String(64), primary_key=True),
            sa.Column("api", sa.String(16), nullable=False),  # openai | anthropic
            sa.Column("account_id", sa.String(200), nullable=False, index=True),
            sa.Column("key_id", sa.String(64)),
            sa.Column("endpoint", sa.String(64), nullable=False),
            sa.Column("status", sa.String(16), nullable=False, index=True),
            sa.Column("input_file_id", sa.String(64)),
            sa.Column("completion_window", sa.String(16)),
            sa.Column("metadata", sa.Text()),
            sa.Column("total", sa.Integer(), nullable=False),
            sa.Column("created_us", sa.BigInteger(), nullable=False),
            sa.Column("in_progress_us", sa.BigInteger()),
            sa.Column("cancel_us", sa.BigInteger()),
            sa.Column("ended_us", sa.BigInteger()),
            sa.Column("lease_owner", sa.String(64)),
            sa.Column("lease_until_us", sa.BigInteger()),
        )
        self.requests = sa.Table(
            f"{p}batch_requests", md,
            sa.Column("batch_id", sa.String(64), primary_key=True),
            sa.Column("idx", sa.Integer(), primary_key=True),
            sa.Column("custom_id", sa.String(200), nullable=False),
            sa.Column("event_id", sa.String(64), nullable=False),
            sa.Column("endpoint", sa.String(64), nullable=False),
            sa.Column("body", sa.Text(), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("status_code", sa.Integer()),
            sa.Column("result", sa.Text()),
            sa.Column("done_us", sa.BigInteger()),
            sa.Index(f"{p}batch_requests_state", "batch_id", "state"),
        )
        self.responses = sa.Table(
            f"{p}responses", md,
            sa.Column("response_id", sa.String(200), primary_key=True),
            sa.Column("account_id", sa.String(200), nullable=False),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("created_us", sa.BigInteger(), nullable=False),
        )
        # a batch run by the upstream's own batch API: its id there, when to look at it next
        self.upstream_batches = sa.Table(
            f"{p}upstream_batches", md,
            sa.Column("batch_id", sa.String(64), primary_key=True),
            sa.Column("upstream", sa.String(200), nullable=False),
            sa.Column("upstream_batch_id", sa.String(200), nullable=False),
            sa.Column("submitted_us", sa.BigInteger(), nullable=False),
            sa.Column("next_poll_us", sa.BigInteger(), nullable=False),
            sa.Column("cancel_sent", sa.Boolean(), nullable=False),
        )
        self.metadata = md
        create_tables(md, self.engine)

    # ------------------------------------------------------------ files

    def add_file(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as con:
            con.execute(sa.insert(self.files), row)

    def get_file(self, file_id: str, account_id: str, content: bool = False) -> dict[str, Any] | None:
        """The account's file (None for another account's: its existence is not revealed)."""
        cols = list(self.files.c) if content else [c for c in self.files.c if c.name != "content"]
        q = sa.select(*cols).where(self.files.c.file_id == file_id, self.files.c.account_id == account_id)
        with self.engine.connect() as con:
            r = con.execute(q).first()
        return dict(r._mapping) if r else None

    def delete_file(self, file_id: str, account_id: str) -> bool:
        """Delete the account's uploaded file; False when it has none by that id. A batch made
        from it keeps its requests (they were copied at submission)."""
        f = self.files
        with self.engine.begin() as con:
            res = con.execute(sa.delete(f).where(f.c.file_id == file_id, f.c.account_id == account_id))
        return bool(res.rowcount)

    def list_files(self, account_id: str, limit: int) -> list[dict[str, Any]]:
        cols = [c for c in self.files.c if c.name != "content"]
        q = sa.select(*cols).where(self.files.c.account_id == account_id).order_by(self.files.c.created_us.desc()).limit(limit)
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(q)]

    # ------------------------------------------------------------ batches

    def create(self, batch: dict[str, Any], requests: Sequence[dict[str, Any]], events: Sequence[tuple[Any, ...]]) -> None:
        """A batch, its requests and their capture events, in one transaction."""
        with self.engine.begin() as con:
            con.execute(sa.insert(self.batches), batch)
            if requests:
                con.execute(sa.insert(self.requests), list(requests))
            if events:
                con.exec_driver_sql(self.store._insert_sql, list(events))

    def get(self, batch_id: str, account_id: str | None = None) -> dict[str, Any] | None:
        q = sa.select(self.batches).where(self.batches.c.batch_id == batch_id)
        if account_id is not None:
            q = q.where(self.batches.c.account_id == account_id)
        with self.engine.connect() as con:
            r = con.execute(q).first()
        return dict(r._mapping) if r else None

    def list_batches(self, account_id: str, api: str, limit: int, after: str | None = None) -> list[dict[str, Any]]:
        """The account's batches, newest first; `after` a batch id to page past."""
        b = self.batches
        q = sa.select(b).where(b.c.account_id == account_id, b.c.api == api)
        if after is not None:
            ref = self.get(after, account_id)
            if ref is not None:
                q = q.where(sa.or_(b.c.created_us < ref["created_us"], sa.and_(b.c.created_us == ref["created_us"], b.c.batch_id < after)))
        q = q.order_by(b.c.created_us.desc(), b.c.batch_id.desc()).limit(limit)
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(q)]

    def counts(self, batch_id: str) -> dict[str, int]:
        """Requests per state."""
        r = self.requests
        q = sa.select(r.c.state, sa.func.count()).where(r.c.batch_id == batch_id).group_by(r.c.state)
        with self.engine.connect() as con:
            got = {str(s): int(n) for s, n in con.execute(q)}
        return {s: got.get(s, 0) for s in (PENDING, SUCCEEDED, ERRORED, CANCELED)}

    def request_cancel(self, batch_id: str) -> bool:
        """Mark an open batch as cancelling; False when it has already ended."""
        b = self.batches
        with self.engine.begin() as con:
            res = con.execute(sa.update(b).where(b.c.batch_id == batch_id, b.c.status == "in_progress").values(status="cancelling", cancel_us=now_us()))
        return bool(res.rowcount)

    def claim(self, owner: str, lease_us: int, hold_us: int = 0) -> dict[str, Any] | None:
        """Take (or keep) an open batch under a lease: one whose lease is this runner's or ran
        out, submitted at least `hold_us` ago; the one whose last turn is oldest (never run
        first), so batches take turns."""
        b, ub = self.batches, self.upstream_batches
        now = now_us()
        free = sa.or_(b.c.lease_owner.is_(None), b.c.lease_owner == owner, b.c.lease_until_us < now)
        # a batch the upstream runs waits for its next look, unless it is to be cancelled
        waiting = sa.exists().where(ub.c.batch_id == b.c.batch_id, ub.c.next_poll_us > now)
        ready = sa.or_(sa.and_(b.c.created_us <= now - hold_us, ~waiting), b.c.status == "cancelling")
        with self.engine.begin() as con:
            ids = [r[0] for r in con.execute(sa.select(b.c.batch_id).where(b.c.status.in_(OPEN_STATUSES), free, ready)
                                                  .order_by(sa.func.coalesce(b.c.lease_until_us, 0), b.c.created_us).limit(8))]
            for batch_id in ids:
                res = con.execute(sa.update(b).where(b.c.batch_id == batch_id, b.c.status.in_(OPEN_STATUSES), free)
                                  .values(lease_owner=owner, lease_until_us=now + lease_us))
                if res.rowcount:
                    r = con.execute(sa.select(b).where(b.c.batch_id == batch_id)).first()
                    return dict(r._mapping) if r else None
        return None

    def renew(self, batch_id: str, owner: str, lease_us: int) -> bool:
        """Extend this runner's lease; False when another runner has taken the batch."""
        b = self.batches
        with self.engine.begin() as con:
            res = con.execute(sa.update(b).where(b.c.batch_id == batch_id, b.c.lease_owner == owner).values(lease_until_us=now_us() + lease_us))
        return bool(res.rowcount)

    def release(self, batch_id: str, owner: str) -> None:
        b = self.batches
        with self.engine.begin() as con:
            # the lease's end stays as the time of the batch's last turn (claim's order)
            con.execute(sa.update(b).where(b.c.batch_id == batch_id, b.c.lease_owner == owner).values(lease_owner=None, lease_until_us=now_us()))

    def release_owner(self, owner: str) -> None:
        """Release every batch this runner holds (it stops)."""
        b = self.batches
        with self.engine.begin() as con:
            con.execute(sa.update(b).where(b.c.lease_owner == owner).values(lease_owner=None, lease_until_us=now_us()))

    def pending(self, batch_id: str, limit: int) -> list[dict[str, Any]]:
        r = self.requests
        q = sa.select(r).where(r.c.batch_id == batch_id, r.c.state == PENDING).order_by(r.c.idx).limit(limit)
        with self.engine.connect() as con:
            return [dict(x._mapping) for x in con.execute(q)]

    def finish_requests(self, batch_id: str, results: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> None:
        """Store answers (`idx`, `state`, `status_code`, `result`) and complete their events
        (`event_id`, `response`, `prompt_tokens`, `completion_tokens`, `status`, `latency_ms`)."""
        r = self.requests
        e = self.store.events
        now = now_us()
        with self.engine.begin() as con:
            for res in results:
                con.execute(sa.update(r).where(r.c.batch_id == batch_id, r.c.idx == res["idx"], r.c.state == PENDING)
                            .values(state=res["state"], status_code=res["status_code"], result=res["result"], done_us=now))
            for ev in events:
                con.execute(sa.update(e).where(e.c.event_id == ev["event_id"]).values(
                    {k: v for k, v in ev.items() if k != "event_id"}))

    def cancel_pending(self, batch_id: str, event_status: int) -> int:
        """Mark every pending request canceled (their events get `event_status`)."""
        r = self.requests
        e = self.store.events
        with self.engine.begin() as con:
            ids = sa.select(r.c.event_id).where(r.c.batch_id == batch_id, r.c.state == PENDING).scalar_subquery()
            con.execute(sa.update(e).where(e.c.event_id.in_(ids)).values(status=event_status))
            res = con.execute(sa.update(r).where(r.c.batch_id == batch_id, r.c.state == PENDING).values(state=CANCELED, done_us=now_us()))
        return int(res.rowcount or 0)

    def end(self, batch_id: str, status: str) -> None:
        b = self.batches
        with self.engine.begin() as con:
            con.execute(sa.update(b).where(b.c.batch_id == batch_id).values(status=status, ended_us=now_us(), lease_owner=None, lease_until_us=None))

    def results(self, batch_id: str, states: Sequence[str]) -> list[dict[str, Any]]:
        r = self.requests
        q = sa.select(r.c.idx, r.c.custom_id, r.c.event_id, r.c.state, r.c.status_code, r.c.result).where(
            r.c.batch_id == batch_id, r.c.state.in_(list(states))).order_by(r.c.idx)
        with self.engine.connect() as con:
            return [dict(x._mapping) for x in con.execute(q)]

    # ------------------------------------------------------------ batches the upstream runs

    def upstream_batch(self, batch_id: str) -> dict[str, Any] | None:
        ub = self.upstream_batches
        with self.engine.connect() as con:
            r = con.execute(sa.select(ub).where(ub.c.batch_id == batch_id)).first()
        return dict(r._mapping) if r else None

    def set_upstream_batch(self, batch_id: str, upstream: str, upstream_batch_id: str, next_poll_us: int) -> None:
        with self.engine.begin() as con:
            con.execute(sa.insert(self.upstream_batches), {
                "batch_id": batch_id, "upstream": upstream, "upstream_batch_id": upstream_batch_id,
                "submitted_us": now_us(), "next_poll_us": next_poll_us, "cancel_sent": False})

    def next_poll(self, batch_id: str, next_poll_us: int, cancel_sent: bool | None = None) -> None:
        ub = self.upstream_batches
        values: dict[str, Any] = {"next_poll_us": next_poll_us}
        if cancel_sent is not None:
            values["cancel_sent"] = cancel_sent
        with self.engine.begin() as con:
            con.execute(sa.update(ub).where(ub.c.batch_id == batch_id).values(values))

    # ------------------------------------------------------------ stored responses (Responses API)

    def own_response(self, response_id: str, account_id: str, model: str) -> None:
        stmt = on_conflict_insert(self.engine, self.responses).on_conflict_do_nothing(index_elements=["response_id"])
        with self.engine.begin() as con:
            con.execute(stmt, {"response_id": response_id, "account_id": account_id, "model": model, "created_us": now_us()})

    def response_model(self, response_id: str, account_id: str) -> str | None:
        """The model of the account's stored response (None for another account's)."""
        q = sa.select(self.responses.c.model).where(self.responses.c.response_id == response_id, self.responses.c.account_id == account_id)
        with self.engine.connect() as con:
            r = con.execute(q).first()
        return str(r[0]) if r else None

    def drop_all(self) -> None:
        self.metadata.drop_all(self.engine)
