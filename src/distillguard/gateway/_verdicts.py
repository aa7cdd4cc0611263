"""The fleet's shared verdicts: a table the detector service writes and every replica follows.

`<prefix>fleet_verdicts` holds one row per account with the detector's current action; each
detector step that changes verdicts writes its rows in one transaction under a new `version`,
so a replica that has applied everything up to version `v` asks only for `version > v`.
`<prefix>detector_state` holds the detector's checkpoint (see `_detector.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import sqlalchemy as sa

from distillguard.enforce import Policy
from distillguard.gateway._store import Store, now_us

log = logging.getLogger("distillguard.gateway")

#: seconds between a follower's polls of the verdicts table (a Redis message wakes it sooner)
FOLLOW_INTERVAL_S = 1.0


def channel(prefix: str) -> str:
    """The Redis channel on which the detector announces new verdict versions."""
    return f"{prefix}:verdicts"


class VerdictTables:
    """The verdicts and checkpoint tables, next to a `Store`'s tables in its database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        md = sa.MetaData()
        p = store.prefix
        self.verdicts = sa.Table(
            f"{p}fleet_verdicts", md,
            sa.Column("account_id", sa.String(200), primary_key=True),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("campaign_id", sa.String(200)),
            sa.Column("reasons", sa.Text()),
            sa.Column("score", sa.Float()),
            sa.Column("version", sa.BigInteger(), nullable=False, index=True),
            sa.Column("updated_us", sa.BigInteger(), nullable=False),
        )
        self.state = sa.Table(
            f"{p}detector_state", md,
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.Column("saved_us", sa.BigInteger(), nullable=False),
            sa.Column("data", sa.LargeBinary(), nullable=False),
        )
        try:
            md.create_all(store.engine)
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
            # Replicas and detectors starting together race to create the tables (PostgreSQL
            # checks, then creates): the loser finds them made by the winner.
            md.create_all(store.engine)

    def _upsert(self, table: sa.Table, rows: list[dict[str, Any]], key: str) -> Any:
        if self.store.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table)
        cols = {c.name: stmt.excluded[c.name] for c in table.columns if c.name != key}
        return stmt.on_conflict_do_update(index_elements=[key], set_=cols)

    def publish(self, rows: list[dict[str, Any]], version: int) -> None:
        """Write changed verdicts (account_id, action, campaign_id, reasons, score) as `version`."""
        if not rows:
            return
        ts = now_us()
        values = [{**r, "version": version, "updated_us": ts} for r in rows]
        with self.store.engine.begin() as con:
            con.execute(self._upsert(self.verdicts, values, "account_id"), values)

    def max_version(self) -> int:
        with self.store.engine.connect() as con:
            return int(con.execute(sa.select(sa.func.max(self.verdicts.c.version))).scalar() or 0)

    def since(self, version: int) -> list[dict[str, Any]]:
        """Verdicts written after `version`, oldest version first."""
        q = sa.select(self.verdicts).where(self.verdicts.c.version > version).order_by(self.verdicts.c.version)
        with self.store.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(q)]

    def save_state(self, name: str, seq: int, data: bytes) -> None:
        row = [{"name": name, "seq": seq, "saved_us": now_us(), "data": data}]
        with self.store.engine.begin() as con:
            con.execute(self._upsert(self.state, row, "name"), row)

    def load_state(self, name: str) -> tuple[int, bytes] | None:
        q = sa.select(self.state.c.seq, self.state.c.data).where(self.state.c.name == name)
        with self.store.engine.connect() as con:
            r = con.execute(q).first()
        return None if r is None else (int(r.seq), bytes(r.data))


class VerdictFollower:
    """Applies the fleet's verdicts to one replica's policy: polls the table every
    `interval` seconds, sooner when the detector announces a version on Redis."""

    def __init__(self, tables: VerdictTables, policy: Policy, interval: float = FOLLOW_INTERVAL_S,
                 redis_url: str | None = None, redis_prefix: str = "distillguard") -> None:
        self.tables = tables
        self.policy = policy
        self.interval = interval
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.version = 0
        self.applied = 0
        self.polls = 0
        self.last_error: str | None = None
        self._wake = asyncio.Event()

    def poll(self) -> int:
        """Apply the verdicts written since the last poll (blocking); returns how many changed."""
        rows = self.tables.since(self.version)
        self.polls += 1
        if not rows:
            return 0
        changed = self.policy.apply_verdicts(rows)
        self.version = max(int(r["version"]) for r in rows)
        self.applied += len(rows)
        if changed:
            log.info("fleet verdicts: %d accounts changed action (version %d)", changed, self.version)
        return changed

    async def run(self) -> None:
        tasks = []
        if self.redis_url is not None:
            tasks.append(asyncio.get_running_loop().create_task(self._listen(), name="distillguard-verdict-channel"))
        try:
            while True:
                try:
                    await asyncio.to_thread(self.poll)
                    self.last_error = None
                except Exception as exc:  # noqa: BLE001 - the database may be briefly unavailable
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("following the fleet's verdicts failed", exc_info=True)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
        finally:
            for t in tasks:
                t.cancel()

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        while True:
            try:
                client: Any = aioredis.from_url(self.redis_url)  # type: ignore[arg-type]
                async with client.pubsub() as ps:
                    await ps.subscribe(channel(self.redis_prefix))
                    async for msg in ps.listen():
                        if msg.get("type") == "message":
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - without Redis the follower still polls
                log.warning("verdict channel on Redis unavailable; polling only", exc_info=True)
                await asyncio.sleep(5)
