"""The fleet's shared verdicts: a table the detector service writes and every replica follows.

`<prefix>fleet_verdicts` holds one row per account with the detector's current action,
`<prefix>fleet_end_user_verdicts` one per (account, end user) judged apart, and
`<prefix>fleet_campaign_keys` one row: the flagged campaigns' keys a new account's first
request is checked against, compressed, with the action a match takes. Each detector step that
changes any of them writes its rows in one transaction under a new `version`, so a replica that
has applied everything up to version `v` asks only for `version > v`.
`<prefix>detector_state` holds the detector's checkpoint (see `_detector.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from typing import Any

import sqlalchemy as sa

from distillguard._redis import RedisOptions
from distillguard.enforce import Policy
from distillguard.gateway._protocol import END_USER_MAX_CHARS
from distillguard.gateway._store import (
    Store,
    add_missing_columns,
    create_tables,
    now_us,
    on_conflict_insert,
)

log = logging.getLogger("distillguard.gateway")

#: seconds between a follower's polls of the verdicts table (a Redis message wakes it sooner)
FOLLOW_INTERVAL_S = 1.0
#: seconds a follower waits before subscribing again after the verdict channel failed
CHANNEL_RETRY_S = 5.0
#: the campaign keys' one row in `fleet_campaign_keys`
CAMPAIGN_KEYS_ROW = "current"
#: verdict columns that newer versions publish, added to a `fleet_verdicts` made before them
VERDICT_COLUMNS_ADDED = (("end_users_apart", sa.Boolean()),)


def encode_campaign_keys(keys: dict[tuple[str, int], str]) -> bytes:
    """Campaign keys ((kind, key hash) -> the flagged account named) as compressed JSON."""
    return zlib.compress(json.dumps(sorted([k, h, a] for (k, h), a in keys.items())).encode())


def decode_campaign_keys(data: bytes) -> dict[tuple[str, int], str]:
    return {(str(k), int(h)): str(a) for k, h, a in json.loads(zlib.decompress(data))}


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
            sa.Column("end_users_apart", sa.Boolean()),
            sa.Column("version", sa.BigInteger(), nullable=False, index=True),
            sa.Column("updated_us", sa.BigInteger(), nullable=False),
        )
        self.end_users = sa.Table(
            f"{p}fleet_end_user_verdicts", md,
            sa.Column("account_id", sa.String(200), primary_key=True),
            sa.Column("end_user", sa.String(END_USER_MAX_CHARS), primary_key=True),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("campaign_id", sa.String(200)),
            sa.Column("reasons", sa.Text()),
            sa.Column("score", sa.Float()),
            sa.Column("version", sa.BigInteger(), nullable=False, index=True),
            sa.Column("updated_us", sa.BigInteger(), nullable=False),
        )
        self.campaign_keys = sa.Table(
            f"{p}fleet_campaign_keys", md,
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("data", sa.LargeBinary(), nullable=False),
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.Column("updated_us", sa.BigInteger(), nullable=False),
        )
        self.state = sa.Table(
            f"{p}detector_state", md,
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.Column("saved_us", sa.BigInteger(), nullable=False),
            sa.Column("data", sa.LargeBinary(), nullable=False),
        )
        self._tables = (self.verdicts, self.end_users, self.campaign_keys, self.state)
        # Replicas and detectors starting together race to create the tables: the loser finds
        # them made by the winner.
        create_tables(md, store.engine, self._add_missing_columns)

    def _add_missing_columns(self) -> None:
        """Add the columns newer versions publish to a `fleet_verdicts` made before them."""
        add_missing_columns(self.store.engine, self.verdicts, VERDICT_COLUMNS_ADDED, "fleet verdicts")

    def drop_all(self) -> None:
        """Drop these tables (tests on a shared database)."""
        for t in self._tables:
            t.drop(self.store.engine, checkfirst=True)

    def _upsert(self, table: sa.Table, rows: list[dict[str, Any]], key: str | list[str]) -> Any:
        stmt = on_conflict_insert(self.store.engine, table)
        keys = [key] if isinstance(key, str) else key
        cols = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=cols)

    def publish(self, rows: list[dict[str, Any]], version: int, end_users: list[dict[str, Any]] | None = None,
                campaign_keys: tuple[dict[tuple[str, int], str], str] | None = None) -> None:
        """Write, as `version` and in one transaction, changed verdicts (account_id, action,
        campaign_id, reasons, score, end_users_apart), changed end users' verdicts (the same
        plus end_user) and the campaign keys with their first-request action (when changed)."""
        ts = now_us()
        stamp = {"version": version, "updated_us": ts}
        with self.store.engine.begin() as con:
            if rows:
                values = [{**r, **stamp} for r in rows]
                con.execute(self._upsert(self.verdicts, values, "account_id"), values)
            if end_users:
                values = [{c.name: r.get(c.name) for c in self.end_users.columns} | stamp for r in end_users]
                con.execute(self._upsert(self.end_users, values, ["account_id", "end_user"]), values)
            if campaign_keys is not None:
                keys, action = campaign_keys
                row = [{"name": CAMPAIGN_KEYS_ROW, "action": action, "data": encode_campaign_keys(keys), **stamp}]
                con.execute(self._upsert(self.campaign_keys, row, "name"), row)

    def max_version(self) -> int:
        with self.store.engine.connect() as con:
            return max(int(con.execute(sa.select(sa.func.max(t.c.version))).scalar() or 0)
                       for t in (self.verdicts, self.end_users, self.campaign_keys))

    def since(self, version: int, upto: int | None = None) -> list[dict[str, Any]]:
        """Verdicts written after `version` (up to `upto`), oldest version first."""
        return self._since(self.verdicts, version, upto)

    def end_users_since(self, version: int, upto: int | None = None) -> list[dict[str, Any]]:
        """End users' verdicts written after `version` (up to `upto`), oldest version first."""
        return self._since(self.end_users, version, upto)

    def campaign_keys_since(self, version: int, upto: int | None = None) -> tuple[dict[tuple[str, int], str], str, int] | None:
        """The campaign keys, their first-request action and version, when written after
        `version` (up to `upto`)."""
        t = self.campaign_keys
        q = sa.select(t.c.data, t.c.action, t.c.version).where(t.c.name == CAMPAIGN_KEYS_ROW, t.c.version > version)
        if upto is not None:
            q = q.where(t.c.version <= upto)
        with self.store.engine.connect() as con:
            r = con.execute(q).first()
        return None if r is None else (decode_campaign_keys(bytes(r.data)), str(r.action), int(r.version))

    def _since(self, table: sa.Table, version: int, upto: int | None) -> list[dict[str, Any]]:
        q = sa.select(table).where(table.c.version > version).order_by(table.c.version)
        if upto is not None:
            q = q.where(table.c.version <= upto)
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


class VerdictAnnouncer:
    """The detector's side of the verdict channel: publishes each new version (blocking).

    A publish is retried on a new connection after a connection error or a timeout
    (`RedisOptions`); a duplicate announcement only wakes the followers twice.
    """

    def __init__(self, redis_url: str, redis_prefix: str = "distillguard", options: RedisOptions | None = None) -> None:
        self.redis_url = redis_url
        self.channel = channel(redis_prefix)
        self.options = options or RedisOptions()
        self._client: Any = None

    def announce(self, version: int) -> bool:
        """Publish `version`; False (logged) when Redis could not be reached: replicas still poll."""
        try:
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(self.redis_url, **self.options.client_kwargs(asyncio=False))
            self._client.publish(self.channel, str(version))
            return True
        except Exception:  # noqa: BLE001 - replicas still poll the table
            log.warning("announcing verdicts on Redis failed", exc_info=True)
            return False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class VerdictFollower:
    """Applies the fleet's verdicts to one replica's policy: polls the table every
    `interval` seconds, sooner when the detector announces a version on Redis."""

    def __init__(self, tables: VerdictTables, policy: Policy, interval: float = FOLLOW_INTERVAL_S,
                 redis_url: str | None = None, redis_prefix: str = "distillguard",
                 redis_options: RedisOptions | None = None) -> None:
        self.tables = tables
        self.policy = policy
        self.interval = interval
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.redis_options = redis_options or RedisOptions()
        self.version = 0
        self.applied = 0
        self.polls = 0
        self.last_error: str | None = None
        #: set by each announcement on the verdict channel; the poll loop waits on it
        self.wake = asyncio.Event()

    def poll(self) -> int:
        """Apply the verdicts, end users' verdicts and campaign keys written since the last
        poll (blocking); returns how many accounts and end users changed action."""
        # Each version is written in one transaction: read the newest committed first, then
        # the three tables up to it, so a version committed between the reads is left whole
        # for the next poll.
        top = self.tables.max_version()
        self.polls += 1
        if top <= self.version:
            return 0
        rows = self.tables.since(self.version, top)
        end_users = self.tables.end_users_since(self.version, top)
        keys = self.tables.campaign_keys_since(self.version, top)
        changed = self.policy.apply_verdicts(rows) + self.policy.apply_end_user_verdicts(end_users)
        if keys is not None:
            from distillguard.detect import CampaignKeys

            self.policy.set_campaign_keys(CampaignKeys(keys[0]), keys[1])
        self.version = top
        self.applied += len(rows) + len(end_users)
        if changed:
            log.info("fleet verdicts: %d accounts or end users changed action (version %d)", changed, self.version)
        return changed

    async def run(self) -> None:
        tasks = []
        if self.redis_url is not None:
            tasks.append(asyncio.get_running_loop().create_task(self.listen(), name="distillguard-verdict-channel"))
        try:
            while True:
                try:
                    await asyncio.to_thread(self.poll)
                    self.last_error = None
                except Exception as exc:  # noqa: BLE001 - the database may be briefly unavailable
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("following the fleet's verdicts failed", exc_info=True)
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.interval)
        finally:
            for t in tasks:
                t.cancel()

    async def listen(self) -> None:
        """Subscribe to the verdict channel and set `wake` on each announcement, until cancelled.

        A subscriber is silent while no verdict changes, which a middlebox takes for idle: it
        reads with a timeout of half the health-check interval, so redis-py pings the server
        (`check_health`) at least every 1.5 intervals, and a read that fails reconnects and
        subscribes again (`RedisOptions.retries`).
        """
        import redis.asyncio as aioredis

        opts = self.redis_options
        read_timeout = opts.health_check_interval / 2 if opts.health_check_interval else None
        while True:
            client: Any = aioredis.from_url(self.redis_url, **opts.client_kwargs())  # type: ignore[arg-type]
            try:
                async with client.pubsub() as ps:
                    await ps.subscribe(channel(self.redis_prefix))
                    while True:
                        msg = await ps.get_message(ignore_subscribe_messages=True, timeout=read_timeout)
                        if msg is not None and msg.get("type") == "message":
                            self.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - without Redis the follower still polls
                log.warning("verdict channel on Redis unavailable; polling only", exc_info=True)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(CHANNEL_RETRY_S)
