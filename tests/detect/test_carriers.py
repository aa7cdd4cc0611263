"""The carrier rule kept incrementally gives what a fresh computation gives, window by window."""

from __future__ import annotations

import numpy as np

from distillguard.detect import OnlineDetector
from distillguard.detect._config import load_config
from distillguard.detect._core import DecisionCore

from . import scenes
from .builders import account_table, event_table


def test_incremental_carriers_match_a_fresh_computation_at_every_step() -> None:
    parts = [scenes.hydra(prompts=scenes.REPERTOIRE), scenes.reseller("carrier", 0.3),
             scenes.reseller("slice", 0.1), scenes.eval_runner()]
    rows = sorted((r for p in parts for r in p[0]), key=lambda r: r["ts"])  # type: ignore[arg-type,return-value]
    base = load_config()
    ev = base.evidence
    cfg = base.model_copy(update={"evidence": ev.model_copy(
        update={"carriers": ev.carriers.model_copy(update={"every_minutes": 0.0})})})
    det = OnlineDetector(cfg, accounts=account_table([a for p in parts for a in p[1]]))
    seen_carrier = False
    for chunk in np.array_split(np.arange(len(rows)), 12):
        det.update(event_table([rows[i] for i in chunk]))
        kept = det.assess().carriers
        fresh = DecisionCore(det.config).decide(det.state).carriers
        assert np.array_equal(kept.peer, fresh.peer)
        assert np.allclose(kept.coverage, fresh.coverage)
        seen_carrier |= bool((kept.peer >= 0).any())
    assert seen_carrier


def test_overlaps_match_a_row_by_row_reading() -> None:
    """The vectorised medians and best members equal np.median and np.argmax per row."""
    import numpy as np
    from scipy.sparse import random as sparse_random

    from distillguard.detect._carriers import CAMPAIGN_KEY_MEMBERS, _overlaps

    rng = np.random.default_rng(5)
    for _ in range(50):
        m = sparse_random(40, 30, density=0.2, format="csr", random_state=rng)
        m.data = np.round(m.data * 6) + 1  # small integer counts, with ties
        size = rng.integers(3, 12, 30).astype(np.float64)
        rows, n, med, best = _overlaps(m, size)
        want = [r for r in range(40) if m.indptr[r + 1] - m.indptr[r] >= CAMPAIGN_KEY_MEMBERS]
        assert rows.tolist() == want
        for j, r in enumerate(want):
            lo, hi = m.indptr[r], m.indptr[r + 1]
            assert n[j] == hi - lo
            assert med[j] == float(np.median(m.data[lo:hi] / size[m.indices[lo:hi]]))
            assert best[j] == m.indices[lo:hi][int(np.argmax(m.data[lo:hi]))]


def test_rows_that_may_reach_the_bar_hold_every_median_that_does() -> None:
    """`_may_reach` keeps every row whose median share reaches the bar, even-sized included."""
    from scipy.sparse import random as sparse_random

    from distillguard.detect._carriers import CAMPAIGN_KEY_MEMBERS, _may_reach

    rng = np.random.default_rng(7)
    for _ in range(50):
        m = sparse_random(40, 30, density=0.2, format="csr", random_state=rng)
        m.data = np.round(m.data * 6) + 1
        size = rng.integers(3, 12, 30).astype(np.float64)
        bar = float(rng.choice([0.25, 0.5, 1 / 3]))
        kept = set(_may_reach(m, size, bar).tolist())
        for r in range(40):
            lo, hi = m.indptr[r], m.indptr[r + 1]
            if hi - lo < CAMPAIGN_KEY_MEMBERS:
                assert r not in kept
            elif np.median(m.data[lo:hi] / size[m.indices[lo:hi]]) >= bar:
                assert r in kept


def test_candidates_dropped_before_the_product_could_not_reach_the_bar() -> None:
    """`_may_carry`'s bounds keep every candidate that `_may_reach` keeps on the full product,
    and drop the ones whose templates are too few for the members they overlap."""
    from scipy.sparse import csr_matrix

    from distillguard.detect._carriers import _may_carry, _may_reach

    rng = np.random.default_rng(11)
    dropped = 0
    for _ in range(60):
        keys = 40
        cand = (rng.random((30, keys)) < rng.uniform(0.05, 0.5)).astype(np.float64)
        peers = (rng.random((25, keys)) < rng.uniform(0.05, 0.6, (25, 1))).astype(np.float64)
        peers[peers.sum(axis=1) == 0, 0] = 1.0
        size = peers.sum(axis=1)
        overlap = csr_matrix(cand @ peers.T)
        bar = float(rng.choice([0.25, 0.5, 1 / 3]))
        on_key = peers.sum(axis=0)
        busiest = np.array([on_key[row > 0].max(initial=0) for row in cand], np.int64)
        kept = _may_carry(cand.sum(axis=1), busiest, size, bar)
        assert kept[_may_reach(overlap, size, bar)].all()
        dropped += int((~kept).sum())
    assert dropped > 0
