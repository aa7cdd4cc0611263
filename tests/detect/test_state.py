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


def test_edge_tops_count_each_accounts_most_used_first_and_last_word() -> None:
    import pickle

    import polars as pl

    from distillguard.detect._signatures import event_signals
    from distillguard.detect._state import DetectorState

    from .builders import event_table, events

    rows = events("a", 4, prompt=["Task: add {i} and {j}", "Task: what is {i} times {j}?"])
    rows += events("b", 3, prompt=["add {i} and {j} please", "what is {i} minus {j} please"])
    frame = pl.from_arrow(event_table(rows))
    assert isinstance(frame, pl.DataFrame)
    state = DetectorState()
    state.update(event_signals(frame))
    a, b = state.index["a"], state.index["b"]
    assert state.edge_top[a].tolist() == [4, 2] and state.edge_top[b].tolist() == [2, 3]
    # A checkpoint written before the edge kinds restores with no edge key for anyone.
    old = {k: v for k, v in vars(state).items() if not k.startswith("edge_top")}
    restored = DetectorState.__new__(DetectorState)
    restored.__setstate__(old)
    assert (restored.edge_top == 0).all() and (restored.edge_top_key == -1).all()
    assert pickle.loads(pickle.dumps(state)).edge_top[a].tolist() == [4, 2]
