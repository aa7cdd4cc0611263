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


def test_pair_running_totals_match_a_plain_count_over_batches() -> None:
    """The sorted pair codebook (compact totals, grown in place batch by batch) gives every
    (account, key) row the running count a plain dictionary gives."""
    import polars as pl

    from distillguard.detect._state import _EDGE_IDS, DetectorState

    rng = np.random.default_rng(11)
    n = 3000
    rows = pl.DataFrame({
        "w": np.sort(rng.integers(0, 40, n)),
        "kind": rng.choice(np.array(_EDGE_IDS, np.int8), n),
        "code": rng.integers(0, 60, n),  # few keys and accounts: many repeats
        "acct": rng.integers(0, 25, n),
        "c": rng.integers(1, 5, n).astype(np.uint32),
        "first_ts": np.arange(n, dtype=np.int64),
    })
    state = DetectorState()
    seen: dict[tuple[int, int], int] = {}
    for lo, hi in [(0, 700), (700, 701), (701, 2200), (2200, n)]:
        batch = rows.slice(lo, hi - lo)
        new_pairs, _, _, edges = state._running_totals(batch)
        want_cum, want_new = [], []
        for code, acct, c in batch.select("code", "acct", "c").iter_rows():
            want_new.append((code, acct) not in seen)
            seen[(code, acct)] = seen.get((code, acct), 0) + c
            want_cum.append(seen[(code, acct)])
        assert edges["cum"].to_list() == want_cum
        assert new_pairs.height == sum(want_new)
    ids = (np.array([k[0] for k in seen], np.uint64) << np.uint64(24)) | np.array(
        [k[1] for k in seen], np.uint64)
    order = np.argsort(ids)
    assert np.array_equal(state._pair_totals.ids(), ids[order])
    assert np.array_equal(state._pair_totals.values(), np.array(list(seen.values()))[order])


def test_a_checkpoint_with_sorted_arrays_restores_into_sorted_runs() -> None:
    """A state pickled when the pair and item codebooks were single sorted arrays (and the
    key codebook a table) resumes with the same totals, keys and items."""
    import polars as pl

    from distillguard.detect._items import ItemBook
    from distillguard.detect._signatures import event_signals
    from distillguard.detect._state import DetectorState

    from .builders import event_table, events

    rows = events("a", 30, prompt=["Task: add {i} and {j}"])
    rows += events("b", 25, prompt=["Task: add {i} and {j}"])
    frame = pl.from_arrow(event_table(rows))
    assert isinstance(frame, pl.DataFrame)
    state = DetectorState()
    state.update(event_signals(frame))
    old = dict(vars(state))
    totals = old.pop("_pair_totals")
    keys, kind, key_hash = old.pop("_key_books"), old["key_kind"], old.pop("key_hash")
    old.update(_pair_ids=totals.ids(), _pair_totals=totals.values(),
               _keys=pl.DataFrame({"kind": kind, "key": key_hash,
                                   "code": np.arange(len(kind), dtype=np.int64)}).reverse())
    book = dict(vars(state.items))
    codes, pairs, n = book.pop("_codes"), book.pop("_pairs"), book.pop("_n")
    book.update(_ids=codes.ids(), _codes=codes.values(), _pairs=pairs.ids())
    old["items"] = ItemBook.__new__(ItemBook)
    old["items"].__setstate__(book)
    restored = DetectorState.__new__(DetectorState)
    restored.__setstate__(old)
    assert np.array_equal(restored._pair_totals.ids(), totals.ids())
    assert np.array_equal(restored._pair_totals.values(), totals.values())
    assert np.array_equal(restored.key_hash, key_hash)
    assert restored.key_values(np.arange(len(kind))) == state.key_values(np.arange(len(kind)))
    for k, book in enumerate(keys):
        assert np.array_equal(restored._key_books[k].get(book.ids()), book.values())
    assert restored.items._n == n and np.array_equal(restored.items._pairs.ids(), pairs.ids())
    assert np.array_equal(restored.items._codes.get(codes.ids()), codes.values())


def test_extend_matches_concatenate_and_grows_in_place() -> None:
    from distillguard.detect._state import extend

    rng = np.random.default_rng(5)
    got, want = np.zeros((0, 3)), np.zeros((0, 3))
    copies = 0
    for _ in range(200):
        rows = rng.random((int(rng.integers(0, 40)), 3))
        before = got.ctypes.data
        got = extend(got, rows)
        copies += got.ctypes.data != before and len(got) > len(rows)
        want = np.concatenate([want, rows])
        assert np.array_equal(got, want) and got.shape == want.shape
    assert copies < 20  # geometric growth, not a copy per call
    # A plain array (a fresh state's, or one restored from a checkpoint) is copied once.
    plain = np.arange(4)
    grown = extend(plain, np.array([9]))
    assert grown.tolist() == [0, 1, 2, 3, 9] and plain.tolist() == [0, 1, 2, 3]
