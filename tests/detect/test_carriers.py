"""The carrier rule kept incrementally gives what a fresh computation gives, window by window."""

from __future__ import annotations

import numpy as np

from distillguard.detect import OnlineDetector
from distillguard.detect._scoring import assess

from . import scenes
from .builders import account_table, event_table


def test_incremental_carriers_match_a_fresh_computation_at_every_step() -> None:
    parts = [scenes.hydra(prompts=scenes.REPERTOIRE), scenes.reseller("carrier", 0.3),
             scenes.reseller("slice", 0.1), scenes.eval_runner()]
    rows = sorted((r for p in parts for r in p[0]), key=lambda r: r["ts"])  # type: ignore[arg-type,return-value]
    det = OnlineDetector(accounts=account_table([a for p in parts for a in p[1]]))
    seen_carrier = False
    for chunk in np.array_split(np.arange(len(rows)), 12):
        det.update(event_table([rows[i] for i in chunk]))
        kept = det.assess().carriers
        fresh = assess(det.state, det.config).carriers
        assert np.array_equal(kept.peer, fresh.peer)
        assert np.allclose(kept.coverage, fresh.coverage)
        seen_carrier |= bool((kept.peer >= 0).any())
    assert seen_carrier
