"""Test support for limits."""

from __future__ import annotations

import uuid


def fresh_prefix() -> str:
    """A fresh Redis namespace for one limiter (unused in memory); the `storage` fixture
    deletes its keys afterwards."""
    return f"dgtest-budget-{uuid.uuid4().hex[:8]}"
