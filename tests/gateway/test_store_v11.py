"""The store's events table carries format v1.1's end_user and batch_id, also when it was made
by an older version."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from distillguard.gateway import Store
from distillguard.gateway._store import EVENT_FIELDS
from distillguard.traffic import EVENTS


def test_event_columns_are_format_columns() -> None:
    names = set(EVENTS.schema.names)
    assert {f for f in EVENT_FIELDS if f != "ts_us"} <= names
    assert {"end_user", "batch_id"} <= set(EVENT_FIELDS)


def test_older_events_table_gets_the_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = [c for c in EVENT_FIELDS if c not in ("end_user", "batch_id")]
    eng = sa.create_engine(url)
    with eng.begin() as con:
        con.exec_driver_sql(f"CREATE TABLE dg_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, {', '.join(c + ' TEXT' for c in old)}, UNIQUE (event_id))")
        con.exec_driver_sql("INSERT INTO dg_events (event_id, ts_us, account_id, model) VALUES ('old1', 1, 'a', 'm')")
    eng.dispose()
    store = Store(url)
    store.insert_events([{"event_id": "new1", "ts_us": 2, "account_id": "a", "model": "m", "batch_id": "batch_x", "end_user": "u1"}])
    rows = {r["event_id"]: r for r in store.events_page()}
    assert rows["old1"]["batch_id"] is None
    assert (rows["new1"]["batch_id"], rows["new1"]["end_user"]) == ("batch_x", "u1")
    Store(url).close()  # opening again adds nothing twice
    store.close()


def test_replicas_starting_together_all_open_the_store(tmp_path: Path) -> None:
    """Processes that create the tables at the same moment all start (the loser of the race
    finds the table made); before, about one in five failed with 'table already exists'."""
    import subprocess
    import sys

    code = "import sys; from distillguard.gateway import BatchStore, Store; BatchStore(Store(sys.argv[1]))"
    for round_ in range(4):
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE) for _ in range(3)]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()[-500:]
