"""The sorted-runs codebook (detect/_codebook.py) against a plain dictionary, over random
sequences of lookups, updates and additions."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from distillguard.detect._codebook import MERGE_RATIO, SortedRuns


def test_sorted_runs_match_a_dictionary_over_random_batches() -> None:
    rng = np.random.default_rng(3)
    book = SortedRuns(np.int32)
    want: dict[int, int] = {}
    for size in rng.integers(0, 400, 60).tolist():
        # Ids from a small range so that batches hit ids added earlier, in any run.
        ids = np.unique(rng.integers(0, 5000, size).astype(np.uint64))
        rng.shuffle(ids)
        run, pos = book.locate(ids)
        held = np.array([int(i) in want for i in ids.tolist()], bool)
        assert np.array_equal(run >= 0, held)
        assert book.get(ids, default=-7).tolist() == [want.get(int(i), -7) for i in ids.tolist()]
        new_values = rng.integers(0, 1000, len(ids)).astype(np.int32)
        book.assign(run[held], pos[held], new_values[held])
        book.add(ids[~held], new_values[~held])
        want.update(zip(ids.tolist(), new_values.tolist(), strict=True))
        # Each run is more than MERGE_RATIO times longer than the next newer one.
        lengths = [len(r) for r in book._ids]
        assert all(a > MERGE_RATIO * b for a, b in zip(lengths, lengths[1:], strict=False))
        assert len(book) == len(want)
    keys = np.array(sorted(want), np.uint64)
    assert np.array_equal(book.ids(), keys)
    assert book.values().tolist() == [want[int(k)] for k in keys.tolist()]
    assert book.runs <= int(np.log2(len(want))) + 1
    back = pickle.loads(pickle.dumps(book, protocol=5))
    assert np.array_equal(back.get(keys), book.get(keys))


def test_a_set_of_ids_keeps_no_values() -> None:
    book = SortedRuns(None)
    book.add(np.array([5, 1, 9], np.uint64))
    book.add(np.array([3], np.uint64))
    assert book.contains(np.array([1, 2, 3, 9], np.uint64)).tolist() == [True, False, True, True]
    assert book.ids().tolist() == [1, 3, 5, 9]
    with pytest.raises(ValueError, match="keeps no values"):
        book.get(np.array([1], np.uint64))
    with pytest.raises(ValueError, match="value per id"):
        SortedRuns(np.int64).add(np.array([1], np.uint64))
