"""Small hand-built tables of every kind in the format, with nulls, unicode and an extra column."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from distillguard.traffic import TABLES

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _column(name: str, t: pa.DataType, n: int, rng: np.random.Generator) -> pa.Array:
    if pa.types.is_timestamp(t):
        micros = rng.integers(0, 7 * 86_400 * 10**6, n)
        values = [T0 + timedelta(microseconds=int(m)) for m in micros]
    elif pa.types.is_string(t):
        values = [f'{name}-{i} «ünï» "q"\n' if i % 3 else f"{name}-{i}" for i in range(n)]
    elif pa.types.is_integer(t):
        values = [int(v) for v in rng.integers(0, 1000, n)]
    elif pa.types.is_floating(t):
        values = [float(np.float32(v)) for v in rng.random(n)]
    elif pa.types.is_boolean(t):
        values = [bool(v) for v in rng.integers(0, 2, n)]
    else:  # pragma: no cover - the format has no other types
        raise AssertionError(t)
    return pa.array(values, type=t)


def make_table(name: str, n: int = 50, seed: int = 0) -> pa.Table:
    """Table `name` with every format column (optional ones partly null) and an extra column."""
    rng = np.random.default_rng(seed)
    spec = TABLES[name]
    cols: dict[str, pa.Array] = {}
    for field in spec.schema:
        arr = _column(field.name, field.type, n, rng)
        if field.name not in spec.required:
            mask = pa.array([i % 3 == 2 for i in range(n)])
            arr = pc.if_else(mask, pa.nulls(n, field.type), arr)
        cols[field.name] = arr
    if spec.key:
        cols[spec.key] = pa.array([f"{spec.key}-{i:05d}" for i in range(n)])
    if name == "events":
        cols["account_id"] = pa.array([f"account_id-{i % 7:05d}" for i in range(n)])
        cols["model"] = pa.array(["model-a" if i % 2 else "model-b" for i in range(n)])
    if name == "labels":
        cols["label"] = pa.array(["distill" if i % 4 == 0 else "benign" for i in range(n)])
    if name == "overrides":
        cols["action"] = pa.array([["allow", "benign", "block"][i % 3] for i in range(n)])
    if name == "verdicts":
        cols["action"] = pa.array(
            [["allow", "monitor", "throttle", "block"][i % 4] for i in range(n)]
        )
    cols["extra_note"] = pa.array([f"x{i}" for i in range(n)])
    return pa.table(cols)


@pytest.fixture
def make() -> Callable[..., pa.Table]:
    """`make(name, n=50, seed=0)` builds a sample table (see `make_table`)."""
    return make_table
