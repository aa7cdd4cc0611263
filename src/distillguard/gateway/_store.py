"""The gateway's store: captured events, accounts, keys, overrides, limits and models, in SQLite or
PostgreSQL through SQLAlchemy Core. Calls are blocking; the gateway runs them in a thread."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from distillguard._errors import ConfigError
from distillguard._private import create_private, mask_url
from distillguard.gateway._protocol import END_USER_MAX_CHARS

log = logging.getLogger("distillguard.gateway")

#: longest event id the events table holds
EVENT_ID_CHARS = 64

EVENT_COLUMNS: list[tuple[str, Any]] = [
    ("event_id", sa.String(EVENT_ID_CHARS)),
    ("ts_us", sa.BigInteger()),
    ("account_id", sa.String(200)),
    ("key_id", sa.String(64)),
    ("ip", sa.String(64)),
    ("user_agent", sa.Text()),
    ("endpoint", sa.String(64)),
    ("model", sa.String(200)),
    ("system", sa.Text()),
    ("prompt", sa.Text()),
    ("turns", sa.Integer()),
    ("tools", sa.Integer()),
    ("response", sa.Text()),
    ("prompt_tokens", sa.Integer()),
    ("completion_tokens", sa.Integer()),
    ("max_tokens", sa.Integer()),
    ("temperature", sa.Float()),
    ("status", sa.Integer()),
    ("latency_ms", sa.Float()),
    # v1.1: the end user the client declared; any key holder picks it, so it is cut to a bound
    ("end_user", sa.String(END_USER_MAX_CHARS)),
    # v1.1: the batch a request was submitted in (OpenAI Batch, Anthropic Message Batches)
    ("batch_id", sa.String(64)),
]
EVENT_FIELDS = [c for c, _ in EVENT_COLUMNS]

#: appended to a string cut to fit its column (the stored value says it is not whole)
TRUNCATION_MARKER = "…[truncated]"
#: what stands in for a character no database stores in text (NUL, a lone surrogate)
REPLACEMENT_CHAR = "\ufffd"
#: PostgreSQL INTEGER's range: a larger count would fail the whole batch insert
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# NUL fails PostgreSQL text; lone surrogates fail UTF-8 encoding in both drivers
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _bound_plan() -> tuple[list[tuple[int, int | None]], list[int]]:
    """(index, most characters or None) of the text columns, and the indices of INTEGER ones."""
    texts: list[tuple[int, int | None]] = []
    ints: list[int] = []
    for i, (_, t) in enumerate(EVENT_COLUMNS):
        if isinstance(t, sa.String):  # Text is a String without a length
            texts.append((i, t.length))
        elif isinstance(t, sa.Integer) and not isinstance(t, sa.BigInteger):
            ints.append(i)
    return texts, ints


_TEXT_COLUMNS, _INT_COLUMNS = _bound_plan()


def _storable(value: str) -> bool:
    # The usual text is checked in C without a regex pass: a NUL search, CPython's cached
    # ASCII flag, and only for other text a UTF-8 encode (which fails on lone surrogates).
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def bound_text(value: str, length: int | None) -> str:
    """`value` with unstorable characters replaced and cut (with TRUNCATION_MARKER) to `length`."""
    if not _storable(value):
        value = _UNSTORABLE.sub(REPLACEMENT_CHAR, value)
    if length is not None and len(value) > length:
        value = value[: length - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER
    return value


def bound_event(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """An EVENT_FIELDS tuple that fits the events table: a client controls most of its text
    (prompt, model, user agent), and one row the database refuses fails its whole batch."""
    fixed: list[Any] | None = None
    for i, length in _TEXT_COLUMNS:
        v = row[i]
        # the usual ASCII text within its length is settled here, without a call
        if v.__class__ is str and ("\x00" in v or not v.isascii() or (length is not None and len(v) > length)):
            b = bound_text(v, length)
            if b != v:
                fixed = fixed or list(row)
                fixed[i] = b
    for i in _INT_COLUMNS:
        v = row[i]
        if v.__class__ is int and not INT32_MIN <= v <= INT32_MAX:
            fixed = fixed or list(row)
            fixed[i] = min(max(v, INT32_MIN), INT32_MAX)
    return row if fixed is None else tuple(fixed)


def event_tuples(rows: Sequence[Mapping[str, Any] | tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows as tuples in EVENT_FIELDS order (capture's rows already are)."""
    return [r if isinstance(r, tuple) else tuple(r.get(c) for c in EVENT_FIELDS) for r in rows]


def _dead_row_json(row: tuple[Any, ...]) -> str:
    # ASCII JSON escapes NUL and surrogates, so the dead-letter row itself always stores
    return json.dumps(dict(zip(EVENT_FIELDS, row, strict=False)), ensure_ascii=True, default=repr)


def now_us() -> int:
    return time.time_ns() // 1000


def us_to_dt(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=UTC)


def normalize_url(url: str) -> str:
    """Accept `sqlite:///file.db`, a bare file path, or `postgresql://…` (psycopg 3 driver)."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite:", "postgresql+")):
        return url
    raise ConfigError(f"Unsupported database URL {url!r}; use sqlite:///PATH or postgresql://USER@HOST:PORT/DB.")


def create_tables(md: sa.MetaData, engine: sa.Engine, then: Any = None, tries: int = 3) -> None:
    """Create the tables missing (and run `then`, a migration). Replicas starting together race
    to create them, and the loser's CREATE fails on a table the other just made: looked at
    again, it is there."""
    for attempt in range(tries):
        try:
            md.create_all(engine)
            if then is not None:
                then()
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
            if attempt == tries - 1:
                raise
            log.info("creating tables raced another process; looking again")
            time.sleep(0.1 * (attempt + 1))


def add_missing_columns(engine: sa.Engine, table: sa.Table, columns: Iterable[tuple[str, Any]], what: str) -> None:
    """Add to `table` in the database each of `columns` (name, SQLAlchemy type) it lacks: a
    table made by an older version gains the columns newer versions write. `what` names the
    table in the log line."""
    have = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    q = engine.dialect.identifier_preparer.quote
    for name, typ in columns:
        if name not in have:
            ddl = f"ALTER TABLE {q(table.name)} ADD COLUMN {q(name)} {typ.compile(dialect=engine.dialect)}"
            log.info("%s: %s", what, ddl)
            with engine.begin() as con:
                con.exec_driver_sql(ddl)


def on_conflict_insert(engine: sa.Engine, table: sa.Table) -> Any:
    """An INSERT into `table` in the engine's dialect (PostgreSQL or SQLite), so it takes the
    dialect's ON CONFLICT clauses."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


class Store:
    """Tables `<prefix>events`, `accounts`, `keys`, `overrides`, `limits`, `models` in one database.

    Args:
        url: database URL (see `normalize_url`).
        prefix: table-name prefix, so several gateways or tests can share one database.
    """

    def __init__(self, url: str, prefix: str = "dg_") -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,30}", prefix):
            raise ConfigError(f"Table prefix {prefix!r} must be letters, digits and underscores.")
        self.url = normalize_url(url)
        self.prefix = prefix
        try:
            if self.url.startswith("sqlite"):
                _private_sqlite_file(self.url)
                self.engine = sa.create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        except Exception as exc:
            raise ConfigError(f"Cannot open database {mask_url(url)!r}: {exc}") from exc
        md = sa.MetaData()
        p = prefix
        self.events = sa.Table(
            f"{p}events", md,
            sa.Column("seq", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), primary_key=True, autoincrement=True),
            *[sa.Column(n, t, unique=(n == "event_id"), nullable=n not in ("event_id", "ts_us", "account_id", "model")) for n, t in EVENT_COLUMNS],
        )
        self.accounts = sa.Table(
            f"{p}accounts", md,
            sa.Column("account_id", sa.String(200), primary_key=True),
            sa.Column("created_us", sa.BigInteger()),
            sa.Column("signup_channel", sa.String(64)),
            sa.Column("email_domain", sa.String(200)),
            sa.Column("payment_fingerprint", sa.String(200)),
            sa.Column("country", sa.String(8)),
            sa.Column("verified", sa.Boolean()),
        )
        self.keys = sa.Table(
            f"{p}keys", md,
            sa.Column("key_id", sa.String(64), primary_key=True),
            sa.Column("account_id", sa.String(200), nullable=False, index=True),
            sa.Column("key_hash", sa.String(128), nullable=False),
            sa.Column("name", sa.String(200)),
            sa.Column("created_us", sa.BigInteger(), nullable=False),
            sa.Column("revoked_us", sa.BigInteger()),
            sa.Column("updated_us", sa.BigInteger(), nullable=False, index=True),
        )
        self.overrides = sa.Table(
            f"{p}overrides", md,
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("account_id", sa.String(200), nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("ts_us", sa.BigInteger(), nullable=False),
            sa.Column("by", sa.String(200)),
            sa.Column("note", sa.Text()),
        )
        self.limits = sa.Table(
            f"{p}limits", md,
            sa.Column("subject", sa.String(200), primary_key=True),
            sa.Column("config", sa.Text(), nullable=False),
            sa.Column("updated_us", sa.BigInteger(), nullable=False),
        )
        # the format's `models` table (release times), which the capture's events do not hold
        self.models = sa.Table(
            f"{p}models", md,
            sa.Column("model", sa.String(200), primary_key=True),
            sa.Column("released_us", sa.BigInteger()),
            sa.Column("updated_us", sa.BigInteger(), nullable=False),
        )
        # events the events table refused even after bound_event: kept whole (as JSON) for an
        # operator to look at, instead of blocking every event behind them
        self.dead_events = sa.Table(
            f"{p}dead_events", md,
            sa.Column("id", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), primary_key=True, autoincrement=True),
            sa.Column("set_aside_us", sa.BigInteger(), nullable=False),
            sa.Column("event_id", sa.String(EVENT_ID_CHARS)),
            sa.Column("error", sa.Text(), nullable=False),
            sa.Column("row_json", sa.Text(), nullable=False),
        )
        self.metadata = md
        q = self.engine.dialect.identifier_preparer.quote
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_sql = (
            f"INSERT INTO {q(self.events.name)} ({', '.join(q(c) for c in EVENT_FIELDS)}) "
            f"VALUES ({', '.join([mark] * len(EVENT_FIELDS))}) ON CONFLICT (event_id) DO NOTHING"
        )
        log.debug("capture insert: %s", self._insert_sql)
        try:
            create_tables(md, self.engine, self._add_missing_event_columns)
        except sa.exc.OperationalError as exc:
            raise ConfigError(f"Cannot open database {mask_url(url)!r}: {exc.orig}") from exc

    def _add_missing_event_columns(self) -> None:
        """Add columns that newer versions capture (end_user, batch_id) to an events table made before them."""
        add_missing_columns(self.engine, self.events, EVENT_COLUMNS, "store")

    # ------------------------------------------------------------ events

    def insert_events(self, rows: Sequence[Mapping[str, Any] | tuple[Any, ...]], bounded: bool = False) -> int:
        """Insert events (mappings, or tuples in EVENT_FIELDS order as capture makes them); an
        event_id already stored is skipped, so retries never duplicate. Each row first goes
        through `bound_event` unless the caller says it did that (`bounded`).

        Returns the number of rows inserted where the driver reports it (SQLite), else -1.
        """
        if not rows:
            return 0
        # Straight to the driver's executemany: SQLAlchemy's per-row statement building cost
        # several times the insert itself on the capture thread.
        values = event_tuples(rows) if bounded else [bound_event(r) for r in event_tuples(rows)]
        with self.engine.begin() as con:
            res = con.exec_driver_sql(self._insert_sql, values)
        return -1 if res.rowcount is None else int(res.rowcount)

    def set_aside_events(self, rows: Sequence[Mapping[str, Any] | tuple[Any, ...]], error: str) -> None:
        """Keep events the events table refused in the dead-letter table (`<prefix>dead_events`)."""
        t = now_us()
        values = []
        for r in event_tuples(rows):
            eid = r[0] if isinstance(r[0], str) else None
            values.append({"set_aside_us": t, "event_id": None if eid is None else bound_text(eid, EVENT_ID_CHARS),
                           "error": bound_text(error, None), "row_json": _dead_row_json(r)})
        with self.engine.begin() as con:
            con.execute(sa.insert(self.dead_events), values)

    def dead_events_list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(sa.select(self.dead_events).order_by(self.dead_events.c.id))]

    def ping(self) -> None:
        """Raise if the database cannot be reached (capture tells an outage from a bad row)."""
        with self.engine.connect() as con:
            con.exec_driver_sql("SELECT 1")

    def count_events(self) -> int:
        with self.engine.connect() as con:
            return int(con.execute(sa.select(sa.func.count()).select_from(self.events)).scalar_one())

    def events_page(self, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        q = sa.select(self.events).where(self.events.c.seq > after_seq).order_by(self.events.c.seq).limit(limit)
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(q)]

    def iter_events(self, after_seq: int = 0, batch: int = 50_000) -> Iterator[list[dict[str, Any]]]:
        """Events in capture order, in batches of dicts (with `seq`)."""
        last = after_seq
        while True:
            q = sa.select(self.events).where(self.events.c.seq > last).order_by(self.events.c.seq).limit(batch)
            with self.engine.connect() as con:
                rows = [dict(r._mapping) for r in con.execute(q)]
            if not rows:
                return
            last = rows[-1]["seq"]
            yield rows

    def event_tuples_since(self, after_seq: int = 0, batch: int = 50_000) -> Iterator[tuple[list[tuple[Any, ...]], int]]:
        """Events in capture order as (rows, last seq) batches, rows as EVENT_FIELDS tuples
        straight from the driver (export and console snapshots; no dict per row)."""
        q = self.engine.dialect.identifier_preparer.quote
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        sql = (f"SELECT {', '.join(q(c) for c in EVENT_FIELDS)}, {q('seq')} FROM {q(self.events.name)} "
               f"WHERE {q('seq')} > {mark} ORDER BY {q('seq')} LIMIT {int(batch)}")
        last = after_seq
        while True:
            with self.engine.connect() as con:
                rows = con.exec_driver_sql(sql, (last,)).fetchall()
            if not rows:
                return
            last = int(rows[-1][-1])
            yield [tuple(r[:-1]) for r in rows], last

    # ------------------------------------------------------------ accounts and keys

    def upsert_account(self, account_id: str, **fields: Any) -> None:
        row = {"account_id": account_id, "created_us": fields.pop("created_us", None) or now_us(), **fields}
        stmt = on_conflict_insert(self.engine, self.accounts)
        upd = {k: stmt.excluded[k] for k in fields}
        stmt = stmt.on_conflict_do_update(index_elements=["account_id"], set_=upd) if upd else stmt.on_conflict_do_nothing(index_elements=["account_id"])
        with self.engine.begin() as con:
            con.execute(stmt, row)

    def list_accounts(self) -> list[dict[str, Any]]:
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(sa.select(self.accounts).order_by(self.accounts.c.account_id))]

    def db_now_us(self) -> Any:
        """The database's clock in µs, as an SQL expression: replicas order changes by it, as
        the writing hosts' clocks may disagree (see `_replica.py`)."""
        if self.engine.dialect.name == "postgresql":
            return sa.literal_column("CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)")
        return sa.literal_column("CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)")

    def add_key(self, key_id: str, account_id: str, key_hash: str, name: str | None = None) -> None:
        t = self.db_now_us()
        with self.engine.begin() as con:
            con.execute(sa.insert(self.keys).values(key_id=key_id, account_id=account_id, key_hash=key_hash, name=name, created_us=t, updated_us=t))

    def revoke_key(self, key_id: str) -> bool:
        t = self.db_now_us()
        with self.engine.begin() as con:
            res = con.execute(sa.update(self.keys).where(self.keys.c.key_id == key_id, self.keys.c.revoked_us.is_(None)).values(revoked_us=t, updated_us=t))
        return bool(res.rowcount)

    def get_key(self, key_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as con:
            r = con.execute(sa.select(self.keys).where(self.keys.c.key_id == key_id)).first()
        return dict(r._mapping) if r else None

    def keys_since(self, updated_us: int) -> list[dict[str, Any]]:
        with self.engine.connect() as con:
            q = sa.select(self.keys).where(self.keys.c.updated_us > updated_us).order_by(self.keys.c.updated_us)
            return [dict(r._mapping) for r in con.execute(q)]

    # ------------------------------------------------------------ overrides and limits

    def add_override(self, account_id: str, action: str, by: str = "", note: str = "", ts_us: int | None = None) -> int:
        with self.engine.begin() as con:
            res = con.execute(sa.insert(self.overrides).values(account_id=account_id, action=action, ts_us=ts_us or self.db_now_us(), by=by, note=note))
        return int(res.inserted_primary_key[0])  # type: ignore[index]

    def add_overrides(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """Several (account_id, action, by, note) overrides in one transaction."""
        if not rows:
            return
        ts = self._db_time()
        with self.engine.begin() as con:
            con.execute(sa.insert(self.overrides), [{"account_id": a, "action": act, "ts_us": ts, "by": by, "note": note} for a, act, by, note in rows])

    def overrides_since(self, last_id: int, also: Sequence[int] = ()) -> list[dict[str, Any]]:
        """Overrides with an id above `last_id` or in `also` (ids a replica saw skipped)."""
        cond = self.overrides.c.id > last_id
        if also:
            cond = sa.or_(cond, self.overrides.c.id.in_(list(also)))
        with self.engine.connect() as con:
            q = sa.select(self.overrides).where(cond).order_by(self.overrides.c.id)
            return [dict(r._mapping) for r in con.execute(q)]

    def _db_time(self) -> int:
        with self.engine.connect() as con:
            return int(con.execute(sa.select(self.db_now_us())).scalar_one())

    def set_limits(self, subject: str, config_json: str) -> None:
        stmt = on_conflict_insert(self.engine, self.limits).values(subject=subject, config=config_json, updated_us=self.db_now_us())
        stmt = stmt.on_conflict_do_update(index_elements=["subject"], set_={"config": stmt.excluded.config, "updated_us": stmt.excluded.updated_us})
        with self.engine.begin() as con:
            con.execute(stmt)

    def limits_since(self, updated_us: int) -> list[dict[str, Any]]:
        with self.engine.connect() as con:
            q = sa.select(self.limits).where(self.limits.c.updated_us > updated_us).order_by(self.limits.c.updated_us)
            return [dict(r._mapping) for r in con.execute(q)]

    # ------------------------------------------------------------ models

    def set_models(self, rows: Sequence[tuple[str, int | None]], replace: bool = False) -> None:
        """Store (model, released µs or None) rows in one transaction; with `replace`, the
        models not given are deleted. Every row written gets the database's time, which
        `models_version` reads to tell a change."""
        t = self._db_time()
        with self.engine.begin() as con:
            if replace:
                con.execute(sa.delete(self.models).where(self.models.c.model.not_in([m for m, _ in rows])))
            if rows:
                stmt = on_conflict_insert(self.engine, self.models)
                stmt = stmt.on_conflict_do_update(index_elements=["model"], set_={
                    "released_us": stmt.excluded.released_us, "updated_us": stmt.excluded.updated_us})
                con.execute(stmt, [{"model": m, "released_us": r, "updated_us": t} for m, r in rows])

    def list_models(self) -> list[dict[str, Any]]:
        """The models table's rows (model, released_us, updated_us), by model."""
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(sa.select(self.models).order_by(self.models.c.model))]

    def models_version(self) -> tuple[int, int]:
        """(rows, newest write) of the models table: any write or deletion changes it."""
        q = sa.select(sa.func.count(), sa.func.max(self.models.c.updated_us)).select_from(self.models)
        with self.engine.connect() as con:
            n, newest = con.execute(q).one()
        return int(n), int(newest or 0)

    # ------------------------------------------------------------ housekeeping

    def drop_all(self) -> None:
        """Drop this store's tables (tests)."""
        self.metadata.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()


def _private_sqlite_file(url: str) -> None:
    """Create a new SQLite database file readable by its owner only (it holds every prompt and
    answer; SQLite gives its -wal and -shm files the same mode), and warn about an existing
    one that others can read."""
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if not create_private(p):
        mode = p.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("database file %s can be read by others (mode %o); chmod 600 it and its -wal and -shm files", p, mode)


def _sqlite_pragmas(dbapi_con: Any, _record: Any) -> None:
    cur = dbapi_con.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
