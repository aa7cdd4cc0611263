"""The incremental link bookkeeping gives what recomputing everything would, step by step."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from distillguard.detect._links import AddressChurn, LinkTracker, PairIndex
from distillguard.detect._state import LINK_KINDS


def _scratch(pairs: np.ndarray, sus: np.ndarray, on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs that count and the counts by account and kind, from all pairs."""
    m = len(on)
    keep = sus[pairs[:, 3]] & on[pairs[:, 2]]
    counts = np.zeros((m, len(LINK_KINDS)), np.int64)
    np.add.at(counts, (pairs[keep, 2], pairs[keep, 0]), 1)
    return keep, counts


def test_pair_index_selects_like_a_scan() -> None:
    rng = np.random.default_rng(3)
    index = PairIndex(3)
    pairs = np.zeros((0, 4), np.int64)
    for _ in range(40):
        add = rng.integers(0, 50_000)
        sid = rng.integers(0, 1 + len(pairs) // 20 + add // 10, add)
        pairs = np.concatenate([pairs, np.column_stack([sid % 9, sid, sid % 7, sid])])
        mask = rng.random(int(pairs[:, 3].max()) + 1) < 0.1
        want = np.flatnonzero(mask[pairs[:, 3]])
        assert (index.select(pairs, mask) == want).all()
        assert (np.sort(index.select(pairs, mask, ordered=False)) == want).all()
    assert index.n > 0  # merged indexes were taken along the way (not only the scan)


def test_pair_index_restored_from_a_checkpoint_selects_like_a_scan() -> None:
    """A pickled index (its merge under way kept, its tail's column read again) and masks
    that select nothing give what a scan of all pairs gives."""
    rng = np.random.default_rng(5)
    index = PairIndex(2)
    pairs = np.zeros((0, 4), np.int64)
    for step in range(30):
        acct = rng.integers(0, 2_000 + 100 * step, rng.integers(0, 40_000))
        pairs = np.concatenate([pairs, np.column_stack([acct % 9, acct, acct, acct % 11])])
        if step % 4 == 3:
            index = pickle.loads(pickle.dumps(index))
        mask = rng.random(int(pairs[:, 2].max()) + 1) < (0.05 if step % 3 else 0.0)
        want = np.flatnonzero(mask[pairs[:, 2]])
        assert np.array_equal(index.select(pairs, mask), want)
    assert index.n > 0


def test_address_churn_kept_from_step_to_step_matches_a_fresh_sum() -> None:
    """Each address key's summed churn equals summing its accounts' churn afresh, while pairs
    arrive and accounts use new addresses."""
    rng = np.random.default_rng(11)
    index, churn = PairIndex(2), AddressChurn()
    pairs = np.zeros((0, 4), np.int64)
    ip_count = np.zeros(0, np.int64)
    for step in range(60):
        acct = rng.integers(0, 50 + 5 * step, rng.integers(0, 300))
        sid = rng.integers(0, 200 + 10 * step, len(acct))
        kind = np.where(rng.random(len(acct)) < 0.6, 0, 1 + sid % 8)  # 0: an address
        pairs = np.concatenate([pairs, np.column_stack([kind, sid, acct, sid])])
        m, k = int(pairs[:, 2].max()) + 1, int(pairs[:, 3].max()) + 1
        ip_count = np.concatenate([ip_count, np.zeros(m - len(ip_count), np.int64)])
        ip_count[rng.integers(0, m, 20)] += 1
        got = churn.update(pairs, ip_count, k, index)
        ip = pairs[pairs[:, 0] == 0]
        want = np.bincount(ip[:, 3], weights=np.clip(ip_count[ip[:, 2]] - 1, 0, 4), minlength=k)
        assert (got == want).all(), step


@pytest.mark.parametrize("seed", [7, 31, 58])
def test_link_tracker_matches_recomputing_every_step(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tracker = LinkTracker()
    pairs = np.zeros((0, 4), np.int64)
    m = k = 0
    for step in range(120):
        # New accounts and keys; new pairs, mostly among a few busy keys so components form.
        m += int(rng.integers(0, 4))
        k += int(rng.integers(0, 6))
        if m == 0 or k == 0:
            continue
        n_new = int(rng.integers(0, 25))
        acct = rng.integers(0, m, n_new)
        sid = np.minimum(rng.geometric(0.15, n_new) - 1, k - 1)
        pairs = np.concatenate(
            [pairs, np.column_stack([rng.integers(0, len(LINK_KINDS), n_new), sid, acct, sid])]
        )
        # Masks that flip back and forth, as scores hover around their thresholds.
        sus = rng.random(k) < (0.5 if step % 7 else 0.9)
        elig = rng.random(m) < 0.85
        counts = tracker.counts(pairs, sus, elig)
        keep, want_counts = _scratch(pairs, sus, elig)
        assert (counts == want_counts).all()
        joined = (counts.sum(axis=1) > 0) & (rng.random(m) < 0.8)
        labels = tracker.components(joined, 1.0 / (1.0 + rng.integers(1, 9, k)))
        edges = pairs[keep & joined[pairs[:, 2]]]
        want = np.full(m, -1)
        if len(edges):
            graph = coo_matrix((np.ones(len(edges)), (edges[:, 2], m + edges[:, 3])),
                               shape=(m + k, m + k))
            _, lab = connected_components(graph, directed=False)
            inside = np.zeros(m, bool)
            inside[edges[:, 2]] = True
            want = np.where(inside, lab[:m], -1)
        assert (labels == want).all(), step
    assert tracker.rebuilds > 0  # components were split and recomputed, not only grown
