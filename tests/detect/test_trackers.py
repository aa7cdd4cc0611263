"""Decision-step trackers kept between calls give what computing afresh gives, call by call."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from distillguard.detect import OnlineDetector
from distillguard.detect._profile import KeyProfileTracker
from distillguard.detect._sync import account_clocks

from . import scenes
from .builders import T0, account_table, event_table


def _replayed(calls_per_day: int = 6) -> OnlineDetector:
    """A detector fed a hydra, a classroom, a reseller and a team in slices of log time,
    deciding after each (and once more with the clock moved on two days, no new events)."""
    parts = [scenes.hydra(n_accounts=10, n_events=150), scenes.classroom(12),
             scenes.reseller("rs", 0.4, own=120), scenes.team()]
    rows = sorted((r for p in parts for r in p[0]), key=lambda r: str(r["ts"]))
    det = OnlineDetector(accounts=account_table([a for p in parts for a in p[1]]))
    step = timedelta(days=1) / calls_per_day
    edge = T0 + step
    batch: list[dict[str, object]] = []
    for r in rows:
        if r["ts"] >= edge:  # type: ignore[operator]
            if batch:
                det.update(event_table(batch))
                det.assess(with_pairs=False)
            batch = []
            while r["ts"] >= edge:  # type: ignore[operator]
                edge += step
        batch.append(r)
    det.update(event_table(batch))
    det.assess(with_pairs=False)
    det.advance(det.state.now_us + 2 * 86_400_000_000)
    det.assess(with_pairs=False)
    return det


def test_key_profiles_kept_between_calls_equal_fresh_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call's profiles equal `key_profiles` over all the keys asked, bit for bit, though
    only keys that changed or whose volume can move are recomputed."""
    from distillguard.detect import _profile

    real = KeyProfileTracker.update
    fresh = _profile.key_profiles
    asked: list[int] = []
    recomputed: list[int] = []

    def counted(state, totals, cfg, sids=None, ip_churn=None):  # type: ignore[no-untyped-def]
        recomputed.append(len(sids))
        return fresh(state, totals, cfg, sids, ip_churn)

    def checked(self, state, totals, cfg, sids, ip_churn):  # type: ignore[no-untyped-def]
        got = real(self, state, totals, cfg, sids, ip_churn)
        assert np.array_equal(got, fresh(state, totals, cfg, sids, ip_churn))
        asked.append(len(sids))
        return got

    monkeypatch.setattr(_profile, "key_profiles", counted)
    monkeypatch.setattr(KeyProfileTracker, "update", checked)
    _replayed()
    assert len(asked) > 5 and max(asked) > 0
    assert sum(recomputed) < sum(asked)  # keys neither changed nor moving were kept


def test_account_clocks_are_the_mean_hour_on_the_circle() -> None:
    """Each account's clock is the resultant of its hours on the 24-hour circle, computed as
    complex numbers one account at a time."""
    det = _replayed(calls_per_day=2)
    st = det.state
    utc, local, concentration = account_clocks(st, 1)
    angle = np.exp(1j * np.arange(24) * (2 * np.pi / 24))
    for a in range(st.size):
        z = complex(sum(int(c) * w for c, w in zip(st.hours[a], angle, strict=True)))
        n = int(st.hours[a].sum())
        if n == 0 or abs(z) == 0:
            assert local[a] == 0 and concentration[a] == 0
            continue
        assert local[a] == pytest.approx(z / abs(z), abs=1e-12)
        assert concentration[a] == pytest.approx(abs(z) / n, abs=1e-12)
        turn = np.exp(-1j * st.offset_h[a] * (2 * np.pi / 24))
        assert utc[a] == pytest.approx(z / abs(z) * turn, abs=1e-12)
