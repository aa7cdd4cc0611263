"""`distillguard detector`: one detector for the whole fleet, following the shared capture.

The service reads the events every replica captured (`<prefix>events`, in capture order)
incrementally, folds them into the same online detector the scan replays (`EndUserDetector`:
accounts, and declared end users judged apart), and publishes what changed (account verdicts,
end users' verdicts, the flagged campaigns' keys for the first-request check; see
`_verdicts.py`) as a new version (announced on Redis), which every replica follows
(`VerdictFollower`). So a hydra spread over N replicas is seen
whole, and a verdict reached once applies everywhere.

One service leads at a time: a PostgreSQL advisory lock (a standby on another host waits for
it and takes over when the leader's session ends), or a file lock next to a SQLite database.
The leader checkpoints its whole state (the detector, its cursor in the capture, what it
published) into `<prefix>detector_state` every `checkpoint_interval` seconds (pausing to copy
its arrays; compression and the write run in a thread); a restarted or
standby detector resumes from the checkpoint plus the events after it, never from zero.

The checkpoint (`_checkpoint`) is the state's arrays, compressed, beside a pickled skeleton of
its few plain objects: only the detector's own database rows are ever unpickled, and whoever
can write them already holds the gateway's keys and policy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distillguard._redis import RedisOptions
from distillguard.detect._checkpoint import decode, encode, snapshot
from distillguard.detect._decision import ACTION_NAMES
from distillguard.gateway._store import Store
from distillguard.gateway._verdicts import VerdictAnnouncer, VerdictTables

if TYPE_CHECKING:
    import pyarrow as pa

    from distillguard.detect._output import VerdictColumns

log = logging.getLogger("distillguard.gateway")

#: events read from the capture per query
READ_BATCH = 50_000
#: verdict columns published to the fleet
VERDICT_COLUMNS = ("account_id", "action", "campaign_id", "reasons", "score")
#: a verdict whose score alone moved by less than this is not republished: rates measured up
#: to "now" make every score older than a day drift by about 1e-6 a step, and the score is
#: informational (a replica enforces the action, campaign and `end_users_apart`)
SCORE_REPUBLISH_DELTA = 1e-3
#: end users' verdict columns published to the fleet
END_USER_COLUMNS = ("account_id", "end_user", "action", "campaign_id", "reasons", "score")


class Leadership:
    """The detector's lock: PostgreSQL advisory lock, or a file lock for SQLite."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._con: Any = None
        self._fd: int | None = None
        self._key = zlib.crc32(f"distillguard-detector:{store.prefix}".encode())

    def try_acquire(self) -> bool:
        if self.store.engine.dialect.name == "postgresql":
            con = self.store.engine.connect()
            try:
                got = bool(con.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (self._key,)).scalar())
                con.commit()
            except Exception:
                con.close()
                raise
            if got:
                self._con = con
            else:
                con.close()
            return got
        path = Path(self.store.engine.url.database or "distillguard.db").with_suffix(f".{self.store.prefix}detector.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        """Whether this process still leads (its PostgreSQL session is alive)."""
        if self._con is None:
            return self._fd is not None
        try:
            self._con.exec_driver_sql("SELECT 1")
            self._con.commit()
            return True
        except Exception:  # noqa: BLE001 - a lost session released the lock
            return False

    def release(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.close()  # ending the session releases the advisory lock
            self._con = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class DetectorService:
    """Follows the capture, runs the detector, publishes verdicts.

    Args:
        store: the fleet's database (the same URL and prefix as the replicas).
        config: detection config (TOML path), None for the shipped one.
        interval: seconds between steps.
        checkpoint_interval: seconds between checkpoints.
        redis_url: announce new verdict versions on this Redis (replicas poll otherwise).
        redis_prefix: the replicas' `--redis-prefix`.
        redis_options: how the announcing Redis client connects and retries.
        name: the checkpoint's name (one per detector deployment on a database).
        clock: microseconds since the epoch, "now" for the detector's rates (wall clock by
            default; a replay of old traffic passes its own).
        models: the format's `models` table (release times) to use instead of the store's
            (`Store.set_models`, written by `PUT /admin/models` and `serve --models`). Without
            it the service reads the store's at start and again whenever it changes; with
            neither, the detector never weighs a model's release (as a scan of a log without
            one does not).
    """

    #: verdict columns beyond VERDICT_COLUMNS that this service hands on: where a carrier's
    #: flag applies to its flagged end users only (see detect/_endusers)
    EXTRA_COLUMNS: tuple[str, ...] = ("end_users_apart",)

    def __init__(self, store: Store, config: Path | None = None, interval: float = 2.0,
                 checkpoint_interval: float = 30.0, redis_url: str | None = None,
                 redis_prefix: str = "distillguard", name: str = "detector",
                 clock: Callable[[], int] | None = None, models: pa.Table | None = None,
                 redis_options: RedisOptions | None = None) -> None:
        self.store = store
        self.models_override = models
        self.models = models
        self.models_version: tuple[int, int] | None = None  # the store's, as last read
        self.clock = clock or (lambda: time.time_ns() // 1000)
        self.config = config
        self.interval = interval
        self.checkpoint_interval = checkpoint_interval
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.name = name
        self.tables = VerdictTables(store)
        self.leadership = Leadership(store)
        self._announcer = None if redis_url is None else VerdictAnnouncer(redis_url, redis_prefix, redis_options)
        self._fresh()
        self.leading = False
        self.restored_from: int | None = None  # the checkpoint's cursor, when one was loaded
        self.steps = 0
        self.lag_s = 0.0  # how far the newest folded event is behind the wall clock
        self._checkpointed = time.monotonic()
        self._saving: threading.Thread | None = None
        self.last_checkpoint: tuple[int, float] | None = None  # (bytes, seconds) of the last one written
        self.checkpoints_written = 0
        #: `run` freezes the heap once warm (`distillguard._heap.freeze_heap`; a service
        #: process sets it, a test's thread need not)
        self.freeze_heap = False

    def _fresh(self) -> None:
        from distillguard import detect

        # Judges declared end users apart as well (see detect/_endusers); an older build has
        # only the account detector.
        factory = getattr(detect, "EndUserDetector", None) or detect.OnlineDetector
        self.detector: Any = factory(self.config, models=self.models)
        self.cursor = 0  # last capture seq folded in
        self.horizon = 0  # the capture's top seq at the previous step (see `fold`)
        self.published: dict[str, tuple[Any, ...]] = {}
        self._memo: _Published | None = None  # `published` as arrays (not checkpointed)
        self._memo_of: dict[str, tuple[Any, ...]] | None = None
        self.published_end_users: dict[tuple[str, str], tuple[Any, ...]] = {}
        # the campaign keys and first-request action last published (None: none yet)
        self.published_keys: tuple[dict[tuple[str, int], str], str] | None = None
        self.version = 0
        self.known: set[str] = set()
        self.override_cursor = 0
        self.events_seen = 0

    # ------------------------------------------------------------------ state

    def _state(self) -> dict[str, Any]:
        return {"detector": self.detector, "cursor": self.cursor, "horizon": self.horizon,
                "published": self.published, "published_end_users": self.published_end_users,
                "published_keys": self.published_keys, "version": self.version, "known": self.known,
                "override_cursor": self.override_cursor, "events_seen": self.events_seen}

    def sync_models(self) -> bool:
        """Read the store's models table when it changed since last read (unless `models`
        overrides it) and hand it to the detector: release times weigh the events folded in
        after, as a scan weighs every event with the log's table. Returns whether it changed."""
        if self.models_override is not None:
            return False
        version = self.store.models_version()
        if version == self.models_version:
            return False
        from distillguard.gateway._export import models_table

        first, self.models_version = self.models_version is None, version
        if first and not version[0]:
            return False  # none stored: the detector keeps the times it has (checkpointed)
        self.models = models_table(self.store) if version[0] else None
        self.detector.set_models(self.models)
        log.info("detector: %d models' release times from the store", version[0])
        return True

    def checkpoint(self, background: bool = False) -> None:
        """Save the whole state (see `_checkpoint`): taken apart here, in the caller's thread
        (the state must not change meanwhile; a memcpy of its arrays); compressed and written
        here too, or with `background` in a thread while the detector steps on. A checkpoint
        still being written makes this one a no-op."""
        if self._saving is not None and self._saving.is_alive():
            return
        snap = snapshot(self._state())
        cursor = self.cursor
        self._checkpointed = time.monotonic()

        def save() -> None:
            t = time.perf_counter()
            data = encode(snap)
            self.tables.save_state(self.name, cursor, data)
            self.last_checkpoint = (len(data), time.perf_counter() - t)
            self.checkpoints_written += 1
            log.info("detector checkpoint at capture seq %d (%d bytes, %d before compression, %.2f s)",
                     cursor, len(data), snap.nbytes, self.last_checkpoint[1])

        if not background:
            save()
            return

        def save_logged() -> None:
            try:
                save()
            except Exception:  # noqa: BLE001 - the next checkpoint tries again
                log.warning("detector checkpoint failed", exc_info=True)

        self._saving = threading.Thread(target=save_logged, name="distillguard-checkpoint", daemon=True)
        self._saving.start()

    def warm(self) -> None:
        """Pay the detector's first-use costs (imports, loading the content model: seconds)
        on a throwaway detector and one made-up event, so that the first real events are not
        judged late (blocking)."""
        from distillguard.detect import OnlineDetector
        from distillguard.gateway._online import events_table

        det = OnlineDetector(self.config)
        det.update(events_table([{"event_id": "warm-up", "ts_us": self.clock(), "account_id": "warm-up",
                                  "model": "warm-up", "prompt": "Explain step by step why the sky is blue."}]))
        det.verdicts()

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self._checkpointed >= self.checkpoint_interval

    def wait_saved(self) -> None:
        """Wait for a checkpoint being written in the background (blocking)."""
        if self._saving is not None:
            self._saving.join()

    def restore(self) -> None:
        """Load the last checkpoint, or start fresh when there is none."""
        saved = self.tables.load_state(self.name)
        self._fresh()
        if saved is not None:
            state = decode(saved[1])
            for k, v in state.items():
                setattr(self, k, v)
            self.restored_from = self.cursor
            log.info("detector resumed from its checkpoint at capture seq %d", self.cursor)
        # the models table as it is now, not as it was at the checkpoint
        self.models_version = None
        if self.models_override is not None:
            self.detector.set_models(self.models_override)
        self.sync_models()
        # a standby continues the version sequence even if the old leader published after
        # its last checkpoint
        self.version = max(self.version, self.tables.max_version())

    # ------------------------------------------------------------------ one step

    def _top_seq(self) -> int:
        import sqlalchemy as sa

        with self.store.engine.connect() as con:
            return int(con.execute(sa.select(sa.func.max(self.store.events.c.seq))).scalar() or 0)

    def _read(self, after: int, upto: int) -> tuple[dict[str, tuple[Any, ...]], int]:
        """Events with `after < seq <= upto` in capture order (one batch) as columns (only
        `detected_fields()`, the ones the scan's replay reads too), and the last seq.

        The driver's own cursor: its rows are plain tuples, so nothing is copied row by row."""
        fields = detected_fields()
        q = self.store.engine.dialect.identifier_preparer.quote
        mark = "?" if self.store.engine.dialect.paramstyle == "qmark" else "%s"
        sql = (f"SELECT {q('seq')}, {', '.join(q(c) for c in fields)} FROM {q(self.store.events.name)} "
               f"WHERE {q('seq')} > {mark} AND {q('seq')} <= {mark} ORDER BY {q('seq')} LIMIT {READ_BATCH}")
        log.debug("detector read: %s", sql)
        con = self.store.engine.raw_connection()
        try:
            cur = con.cursor()
            try:
                cur.execute(sql, (after, upto))
                got = cur.fetchall()
            finally:
                cur.close()
        finally:
            con.close()
        if not got:
            return {}, after
        seq, *columns = zip(*got, strict=True)
        return dict(zip(fields, columns, strict=True)), int(seq[-1])

    def step(self) -> int:
        """Fold new events in, publish changed verdicts, end users' verdicts and campaign keys
        (blocking); returns how many verdicts changed."""
        self.fold()
        changed = self.changed()
        end_users = self.changed_end_users()
        keys = self.changed_keys()
        if changed or end_users or keys is not None:
            self.publish(changed, end_users, keys)
            self.mark_published(changed)
            for r in end_users:
                self.published_end_users[(r["account_id"], r["end_user"])] = _end_user_value(r)
            if keys is not None:
                self.published_keys = keys
        self.steps += 1
        return len(changed) + len(end_users)

    def fold(self) -> None:
        """Fold the events captured since the last step, and new overrides, into the detector
        (with the models table as it is now)."""
        from distillguard.gateway._export import accounts_table
        from distillguard.gateway._online import columns_table

        # On PostgreSQL, read only up to the top seq seen one step ago: a sequence hands out
        # numbers before the inserting transactions commit, so a row with a lower seq can
        # become visible after a higher one; a step's wait lets those commits land. SQLite
        # has one writer at a time, so its rows become visible in seq order.
        self.sync_models()
        top = self._top_seq()
        limit, self.horizon = (self.horizon, top) if self.store.engine.dialect.name == "postgresql" else (top, top)
        newest = 0
        while True:
            columns, last = self._read(self.cursor, limit)
            if not columns:
                break
            new = set(columns["account_id"]) - self.known
            accounts = None
            if new:
                accounts = accounts_table(self.store)
                self.known |= new
            # the detector orders the events by time itself
            self.detector.update(columns_table(columns), accounts)
            self.events_seen += len(columns["ts_us"])
            newest = max(newest, max(columns["ts_us"]))
            self.cursor = last
        for r in self.store.overrides_since(self.override_cursor):
            self.override_cursor = r["id"]
            self.detector.set_override(r["account_id"], r["action"])
        now_us = self.clock()
        self.detector.advance(now_us)
        if newest:
            self.lag_s = max(0.0, (now_us - newest) / 1e6)

    def changed(self) -> list[dict[str, Any]]:
        """The verdicts (VERDICT_COLUMNS and EXTRA_COLUMNS; reasons as JSON text) whose action,
        campaign or `end_users_apart` differ from the published, whose score moved by
        SCORE_REPUBLISH_DELTA or more, or never published.

        The cheap columns of every account are compared as arrays (`_Published`); reasons are
        built only for the accounts that changed, exactly as the full table has them. A change
        in an account's reasons alone (its request count, a campaign it belongs to growing) is
        not republished: what a replica enforces is all in the compared columns, and the
        reasons published say why the account's current verdict was reached."""
        columns = getattr(self.detector, "verdict_columns", None)
        if columns is None:  # a detector without cheap columns: compare the whole table
            return self.changed_in_table()
        cols = columns()
        memo = self._published_memo(cols.ids)
        rows = np.flatnonzero(memo.differs(cols))
        reasons, _ = cols.reasons(rows)
        apart = cols.apart
        return [{"account_id": cols.ids[i], "action": ACTION_NAMES[int(cols.action[i])],
                 "campaign_id": cols.campaign[i], "reasons": r, "score": float(cols.score[i]),
                 "end_users_apart": None if apart is None else bool(apart[i])}
                for i, r in zip(rows.tolist(), reasons, strict=True)]

    def changed_in_table(self) -> list[dict[str, Any]]:
        """The verdicts that differ from the published in any column, reasons included, from
        the detector's whole verdicts table (a reason built for every account)."""
        verdicts = self.detector.verdicts()
        wanted = VERDICT_COLUMNS + self.EXTRA_COLUMNS
        n = verdicts.num_rows
        columns = [verdicts.column(c).to_pylist() if c in verdicts.column_names else [None] * n for c in wanted]
        reasons = wanted.index("reasons")
        columns[reasons] = [v if isinstance(v, str | None) else json.dumps(v) for v in columns[reasons]]
        published = self.published
        return [dict(zip(wanted, row, strict=True)) for row in zip(*columns, strict=True)
                if published.get(row[0]) != row[1:]]

    def _published_memo(self, ids: list[str]) -> _Published:
        """`published` as arrays in the detector's account order, made again from `published`
        whenever that was replaced (a restore, a fresh start)."""
        if self._memo is None or self._memo_of is not self.published:
            self._memo = _Published(self.published, ids, (VERDICT_COLUMNS + self.EXTRA_COLUMNS)[1:])
            self._memo_of = self.published
        return self._memo

    def mark_published(self, rows: list[dict[str, Any]]) -> None:
        """Record verdict rows (`changed`) as published."""
        memo = self._memo if self._memo_of is self.published else None
        for r in rows:
            value = self.published_value(r)
            self.published[r["account_id"]] = value
            if memo is not None:
                memo.set(r["account_id"], value)

    def changed_end_users(self) -> list[dict[str, Any]]:
        """End users' verdicts (END_USER_COLUMNS) that differ from the published; an end user
        published before and judged no more reads `allow` (the account decides again)."""
        verdicts = getattr(self.detector, "end_user_verdicts", None)
        if verdicts is None:
            return []
        current = {}
        for row in verdicts().to_pylist():
            r = {c: row.get(c) for c in END_USER_COLUMNS}
            if not isinstance(r["reasons"], str | None):
                r["reasons"] = json.dumps(r["reasons"])
            current[(r["account_id"], r["end_user"])] = r
        for key in self.published_end_users.keys() - current.keys():
            current[key] = {"account_id": key[0], "end_user": key[1], "action": "allow",
                            "campaign_id": None, "reasons": None, "score": None}
        return [r for key, r in current.items() if self.published_end_users.get(key) != _end_user_value(r)]

    def changed_keys(self) -> tuple[dict[tuple[str, int], str], str] | None:
        """The flagged campaigns' keys and the first-request action, when they differ from the
        published (None: unchanged, or the check is off)."""
        keys = getattr(self.detector, "campaign_keys", None)
        first = getattr(getattr(self.detector, "config", None), "first_request", None)
        if keys is None or first is None or not first.enabled:
            return None
        now = (dict(keys().keys), str(first.action))
        return None if now == self.published_keys else now

    def published_value(self, r: dict[str, Any]) -> tuple[Any, ...]:
        """What `published` keeps of a verdict row: everything but its account id."""
        return tuple(r.get(c) for c in (VERDICT_COLUMNS + self.EXTRA_COLUMNS)[1:])

    def publish(self, changed: list[dict[str, Any]], end_users: list[dict[str, Any]] | None = None,
                keys: tuple[dict[tuple[str, int], str], str] | None = None) -> None:
        """Write changed verdicts, end users' verdicts and campaign keys as the next version
        and announce it."""
        self.tables.publish(changed, self.version + 1, end_users, keys)
        self.version += 1
        self._announce()
        log.info("detector: %d verdicts and %d end users' verdicts changed%s (version %d, %d events seen)",
                 len(changed), len(end_users or ()), "" if keys is None else f", {len(keys[0])} campaign keys",
                 self.version, self.events_seen)

    def _announce(self) -> None:
        if self._announcer is not None:
            self._announcer.announce(self.version)

    # ------------------------------------------------------------------ the service

    def run(self, stop: threading.Event) -> None:
        """Wait to lead, then step until `stop` is set or the lead is lost (blocking)."""
        self.warm()  # a standby is as ready as the leader
        if self.freeze_heap:
            from distillguard._heap import freeze_heap

            log.info("detector: %d objects frozen out of the garbage collector's reach", freeze_heap())
        while not stop.is_set():
            try:
                got = self.leadership.try_acquire()
            except Exception:  # noqa: BLE001 - the database may be down; try again
                log.warning("detector: the database is unavailable; retrying", exc_info=True)
                got = False
            if not got:
                stop.wait(self.interval)
                continue
            self.leading = True
            log.info("detector: leading")
            try:
                self._lead(stop)
            finally:
                self.leading = False
                self.leadership.release()
                log.info("detector: no longer leading")

    def _lead(self, stop: threading.Event) -> None:
        try:
            self.restore()
        except Exception:  # noqa: BLE001 - the database went away before we could start
            log.warning("detector: restoring the checkpoint failed", exc_info=True)
            stop.wait(self.interval)
            return
        while not stop.is_set():
            if not self.leadership.held():
                log.warning("detector: lost the lock (the database session ended); standing by")
                return
            try:
                self.step()
                if self.checkpoint_due():
                    self.checkpoint(background=True)
            except Exception:  # noqa: BLE001 - the database may be briefly unavailable
                log.warning("detector step failed", exc_info=True)
            stop.wait(self.interval)
        self.wait_saved()
        with contextlib.suppress(Exception):
            self.checkpoint()  # a clean stop resumes exactly here


class _Published:
    """What `DetectorService.published` holds of each account's verdict, as arrays in the
    detector's account order (ids are only ever appended): action code (-1: never published),
    score, campaign id and `end_users_apart` (-1: None, 0, 1)."""

    def __init__(self, published: dict[str, tuple[Any, ...]], ids: list[str], fields: tuple[str, ...]) -> None:
        self.ids = ids
        self.fields = fields  # what a `published` value holds
        self.index: dict[str, int] = {}
        self.action = np.full(0, -1, np.int16)
        self.score = np.zeros(0)
        self.campaign = np.full(0, None, object)
        self.apart = np.full(0, -1, np.int8)
        self._grow()
        for aid, value in published.items():
            self.set(aid, value)

    def _grow(self) -> None:
        """Take in the accounts the detector added since (unpublished)."""
        old, m = len(self.action), len(self.ids)
        if m <= old:
            return
        self.index.update((self.ids[i], i) for i in range(old, m))
        self.action = np.concatenate([self.action, np.full(m - old, -1, np.int16)])
        self.score = np.concatenate([self.score, np.zeros(m - old)])
        self.campaign = np.concatenate([self.campaign, np.full(m - old, None, object)])
        self.apart = np.concatenate([self.apart, np.full(m - old, -1, np.int8)])

    def set(self, account_id: str, value: tuple[Any, ...]) -> None:
        self._grow()
        i = self.index.get(account_id)
        if i is None or len(value) != len(self.fields):
            # not the detector's, or published by a version with other columns (a checkpoint
            # of it): compared as never published
            return
        v = dict(zip(self.fields, value, strict=True))
        self.action[i] = ACTION_NAMES.index(v["action"]) if v["action"] in ACTION_NAMES else -1
        self.score[i] = np.nan if v["score"] is None else v["score"]
        self.campaign[i] = v["campaign_id"]
        apart = v.get("end_users_apart")
        self.apart[i] = -1 if apart is None else int(bool(apart))

    def differs(self, cols: VerdictColumns) -> np.ndarray:
        """Per account of `cols`: whether its cheap columns differ from the published (the
        score by SCORE_REPUBLISH_DELTA or more)."""
        self._grow()
        m = len(cols.ids)
        apart = np.full(m, -1, np.int8) if cols.apart is None else cols.apart.astype(np.int8)
        # a NaN score always differs, as the published tuples compared before
        moved = ~(np.abs(self.score[:m] - cols.score) < SCORE_REPUBLISH_DELTA)
        out: np.ndarray = ((self.action[:m] != cols.action) | moved
                           | (self.campaign[:m] != cols.campaign) | (self.apart[:m] != apart))
        return out


def detected_fields() -> list[str]:
    """The capture's columns the detector reads (store names): those the scan's replay reads
    from a traffic log (`ts` is stored as `ts_us`), and the declared end user."""
    from distillguard.detect._stream import SIGNAL_COLUMNS

    return ["ts_us" if c == "ts" else c for c in SIGNAL_COLUMNS] + ["end_user"]


def _end_user_value(r: dict[str, Any]) -> tuple[Any, ...]:
    """What `published_end_users` keeps of an end user's verdict row: all but its key."""
    return tuple(r.get(c) for c in END_USER_COLUMNS[2:])


def run_detector(service: DetectorService, parent_pid: int | None = None) -> None:
    """Run the service until SIGINT/SIGTERM (or until `parent_pid` exits: a gateway's child)."""
    import signal

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if parent_pid is not None:
        def watch() -> None:
            # A child detector must not outlive its gateway (kill -9 included).
            while not stop.wait(1.0):
                if os.getppid() != parent_pid:
                    log.warning("detector: the gateway %d is gone; stopping", parent_pid)
                    stop.set()

        threading.Thread(target=watch, name="distillguard-parent-watch", daemon=True).start()
    service.run(stop)
