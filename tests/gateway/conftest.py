"""Gateway fixtures: a mock upstream and a real uvicorn server on free localhost ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillguard.gateway import (
    BatchStore,
    Store,
    VerdictTables,
    mock_upstream_app,
)

from .support import LoopThread, Running, free_port, make_gateway, serving_account


@pytest.fixture(scope="session")
def mock_upstream() -> Iterator[str]:
    """Base URL (…/v1) of a mock OpenAI/Anthropic server; `mock-slow` waits 3 s."""
    port = free_port()
    t = LoopThread(mock_upstream_app(slow_s=3.0), port)
    t.start()
    yield f"http://127.0.0.1:{port}/v1"
    t.stop()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, mock_upstream: str) -> Iterator[Running]:
    """A gateway on SQLite in front of the mock upstream, with one key for account `acme`."""
    db = f"sqlite:///{tmp_path_factory.mktemp('gw') / 'gw.db'}"
    with serving_account(make_gateway(db, mock_upstream)) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(database URL, table prefix): a SQLite file, or the real PostgreSQL under a prefix of its
    own, whose store, batch and fleet tables are dropped afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}", prefix
        return
    url = request.getfixturevalue("postgres_url")
    yield url, prefix
    store = Store(url, prefix)
    VerdictTables(store).drop_all()
    BatchStore(store).drop_all()
    store.drop_all()
