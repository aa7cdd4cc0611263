"""The state's array helpers do what the slow numpy calls they replace do."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.detect._state import add_cells, add_rows


def test_add_rows_and_cells_match_ufunc_at_with_repeated_indices() -> None:
    rng = np.random.default_rng(4)
    rows = rng.integers(0, 50, 400)  # many repeats: each must add, not overwrite
    cols = rng.integers(0, 6, 400)
    values = rng.random((400, 6))
    want = np.zeros((50, 6))
    np.add.at(want, rows, values)
    got = np.zeros((50, 6))
    add_rows(got, rows, values)
    assert np.allclose(got, want)
    want = np.zeros((50, 6), np.int64)
    np.add.at(want, (rows, cols), 3)
    got = np.zeros((50, 6), np.int64)
    add_cells(got, rows, cols, 3)
    assert np.array_equal(got, want)


def test_add_cells_refuses_a_view_it_would_not_write_through() -> None:
    with pytest.raises(ValueError, match="C-contiguous"):
        add_cells(np.zeros((6, 50)).T, np.array([1]), np.array([2]), 1)
