"""Shared fixtures. Real servers only: a missing PostgreSQL or Redis fails the test, never skips it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPORA = Path(os.environ.get("DISTILLGUARD_CORPORA", SHARED / "corpora"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("DISTILLGUARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    if not _reachable("127.0.0.1", 5432):
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (run scripts/services)")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("DISTILLGUARD_TEST_REDIS", "redis://127.0.0.1:6379/0")
    if not _reachable("127.0.0.1", 6379):
        pytest.fail("Redis is not reachable on 127.0.0.1:6379 (run scripts/services)")
    return url


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    if not (CORPORA / "README.md").exists():
        pytest.fail(f"prompt corpora not found at {CORPORA}")
    return CORPORA
