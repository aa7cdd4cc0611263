"""Synchronised timing: one clock behind accounts that claim many countries."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from distillguard.detect import OnlineDetector
from distillguard.detect._decision import THROTTLE
from distillguard.detect._state import LINK_KINDS
from distillguard.detect._sync import key_sync

from .builders import T0, account, account_table, event_table, events

COUNTRIES = ["US", "IN", "JP", "DE", "BR", "AU", "GB", "VN", "MX", "KR"]
OFFSETS = {"US": -6, "IN": 5.5, "JP": 9, "DE": 1, "BR": -3, "AU": 10, "GB": 0, "VN": 7, "MX": -6,
           "KR": 9}
ELICIT = "You are a careful solver. Problem {i}: reason step by step about {j} and show your work."


def _group(prefix: str, system: str, *, synced: bool, countries: list[str],
           days: int = 2) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Accounts sharing a system prompt, each working 08:00-16:00: in UTC (one operator) or in
    its own country's time (people)."""
    rows: list[dict[str, object]] = []
    accts = []
    for a, country in enumerate(countries):
        aid = f"{prefix}{a}"
        accts.append(account(aid, country=country, email=f"{aid}.example", verified=True))
        shift = 0.0 if synced else -OFFSETS[country]
        for d in range(days):
            start = T0 + timedelta(days=d, hours=8 + shift, minutes=3 * a)
            rows += events(aid, 30, start=start, every=timedelta(minutes=16), system=system,
                           prompt=ELICIT, ip=f"198.51.{a}.{len(prefix)}",
                           completion_tokens=1024, max_tokens=1024)
    return rows, accts


def _detector(*groups: tuple[list[dict[str, object]], list[dict[str, object]]]) -> OnlineDetector:
    rows = [r for g in groups for r in g[0]]
    accts = [a for g in groups for a in g[1]]
    det = OnlineDetector(accounts=account_table(accts))
    det.update(event_table(rows))
    return det


def _sys_sids(det: OnlineDetector) -> dict[str, int]:
    st = det.state
    out = {}
    for sid in range(st.shared_keys):
        if st.sid_link[sid] == LINK_KINDS.index("sys"):
            # Which group's prompt: look at one account on the key.
            pairs = st.shared_pairs()
            acct = int(pairs[pairs[:, 3] == sid][0, 2])
            out[st.ids[acct].rstrip("0123456789")] = sid
    return out


def test_accounts_of_many_countries_on_one_clock_are_synchronised() -> None:
    det = _detector(
        _group("op", "You are the operator's solver.", synced=True, countries=COUNTRIES),
        _group("dev", "You are a helpful coding assistant.", synced=False, countries=COUNTRIES),
        _group("office", "You are our support bot.", synced=True, countries=["DE"] * 10),
    )
    det.assess()
    st = det.state
    keys = np.ones(st.shared_keys, bool)
    s = key_sync(st, st.shared_pairs(), keys, det.config, det.core.links.by_key)
    sid = _sys_sids(det)
    op, dev, office = sid["op"], sid["dev"], sid["office"]
    assert s.accounts[op] == 10
    # The operator's accounts line up in UTC and scatter in their claimed local times.
    assert s.r_utc[op] > 0.95 and s.r_local[op] < 0.5 and s.synced[op]
    # People keep their own hours: the reverse.
    assert s.r_local[dev] > 0.95 and s.r_utc[dev] < 0.5 and not s.synced[dev]
    # One country: UTC and local agree, so nothing contradicts the clock.
    assert abs(s.r_utc[office] - s.r_local[office]) < 1e-9 and not s.synced[office]
    # Only system-prompt and address keys are measured.
    for k in np.flatnonzero(s.synced):
        assert LINK_KINDS[st.sid_link[k]] in ("sys", "ip")


def test_synchronised_timing_is_a_kind_of_link_that_lets_established_accounts_join() -> None:
    """Ten aged, verified accounts share only a system prompt (their own addresses, e-mail
    domains, payment and sign-up times): on one clock they are a campaign, on their own
    countries' clocks they are watched at most."""
    synced = _detector(_group("op", "You are the operator's solver.", synced=True,
                              countries=COUNTRIES))
    people = _detector(_group("op", "You are the operator's solver.", synced=False,
                              countries=COUNTRIES))
    a, b = synced.assess(), people.assess()
    assert (a.action >= THROTTLE).all()
    assert (b.action < THROTTLE).all()
    reasons = synced.verdicts().column("reasons").to_pylist()
    assert any("clock" in r for r in reasons)
    # The `sync` evidence module's table: it fires (and quotes the key) on one clock only.
    t, u = a.evidence["sync"], b.evidence["sync"]
    assert t["fires"].all() and (t["key"] >= 0).all() and (t["weight"] == 1.0).all()
    assert (t["r_utc"] - t["r_local"] >= synced.config.evidence.sync.min_gap).all()
    assert not u["fires"].any() and (u["key"] < 0).all()


def test_a_synced_key_whose_accounts_each_work_around_the_clock_links_none() -> None:
    """Every account works three shifts (00:00 twice as long as 08:00 and 16:00 UTC): their
    mean hours agree, so the key is synchronised, but no account's own hours are steady, so
    none gets the link (and an empty selection is not an error)."""
    rows: list[dict[str, object]] = []
    accts = []
    for a, country in enumerate(COUNTRIES):
        aid = f"op{a}"
        accts.append(account(aid, country=country, email=f"{aid}.example", verified=True))
        for hour, n in ((0, 20), (8, 10), (16, 10)):
            rows += events(aid, n, start=T0 + timedelta(hours=hour, minutes=a),
                           every=timedelta(minutes=20), system="You are the operator's solver.",
                           prompt=ELICIT, ip=f"198.51.{a}.9", completion_tokens=1024,
                           max_tokens=1024)
    det = _detector((rows, accts))
    a = det.assess()
    st = det.state
    s = key_sync(st, st.shared_pairs(), np.ones(st.shared_keys, bool), det.config,
                 det.core.links.by_key)
    assert s.synced.any() and not s.steady.any()
    assert (a.sync_key < 0).all()
