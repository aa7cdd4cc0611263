"""Small campaigns tied by one harvest-like template, and the resellers that carry them."""

from __future__ import annotations

import numpy as np

from distillguard.detect import OnlineDetector
from distillguard.detect._decision import ACTION_NAMES, BLOCK, THROTTLE

from . import scenes
from .builders import account_table, event_table
from .decide import Scene, cells_config, decide


def _run(*parts: Scene, enabled: bool = True,
         ) -> tuple[OnlineDetector, dict[str, str], dict[str, list[str]]]:
    return decide(*parts, cfg=cells_config(enabled=enabled))


def test_two_operator_accounts_and_their_reseller_are_throttled_never_blocked() -> None:
    det, action, reasons = _run(scenes.cell())
    assert action["op0"] == action["op1"] == "throttle"
    assert action["op-reseller"] == "throttle"
    assert not (det.assess().action == BLOCK).any()
    _, campaigns = det.tables()
    small = campaigns.to_pylist()[0]
    assert small["accounts"] == 2 and "linked by shared" in small["reasons"]
    assert "payment fingerprint" in small["reasons"] and "1 other account carries" in small["reasons"]
    assert any("member of small campaign" in r and "payment fingerprint" in r
               for r in reasons["op0"])
    carrier = [r for r in reasons["op-reseller"] if "carries the traffic of small campaign" in r]
    # 600 carried requests over two templates, beside 2 x 30 of each from the operator
    assert carrier and "sends 300 of the 360 requests (83%)" in carrier[0]
    # Without the rule, the same traffic is at most watched.
    _, off, _ = _run(scenes.cell(), enabled=False)
    assert {off["op0"], off["op1"], off["op-reseller"]} <= {"allow", "monitor"}


def test_a_shared_template_without_a_tie_is_not_a_cell() -> None:
    # Two harvest-like accounts on the same public prompts but nothing else in common. (The
    # carried-key rule judges the same traffic by its carrier, not by ties: the scene's
    # reseller sends 20% of its traffic on each template with a diluted profile, which a
    # diluted carrier may; see test_solo_cells.)
    _, action, reasons = decide(scenes.cell(tie=False), cfg=cells_config(solo_enabled=False))
    assert {action["op0"], action["op1"], action["op-reseller"]} <= {"allow", "monitor"}
    _, tied, _ = decide(scenes.cell(tie=True), cfg=cells_config(solo_enabled=False))
    assert tied["op0"] == tied["op1"] == "throttle"


def test_a_team_and_a_batch_job_are_not_cells() -> None:
    ent_rows, ent_accts = scenes.enterprise()
    ent2 = [{**r, "account_id": "ent2", "event_id": f"{r['event_id']}b"} for r in ent_rows]
    ent2_acct = {**ent_accts[0], "account_id": "ent2"}
    ent_accts = [{**ent_accts[0], "payment_fingerprint": "card-corp"},
                 {**ent2_acct, "payment_fingerprint": "card-corp"}]
    det, action, _ = _run(scenes.team(), (ent_rows + ent2, ent_accts))
    assert all(action[a] in ("allow", "monitor") for a in ("dev0", "dev1", "dev2", "ent", "ent2"))
    assert (det.assess().cells.member < 0).all()


def test_a_reseller_with_a_slice_of_the_template_is_not_a_carrier() -> None:
    det, action, _ = _run(scenes.cell(each=120, carried=15))
    assert action["op0"] == "throttle"
    assert action["op-reseller"] in ("allow", "monitor")
    i = det.state.index["op-reseller"]
    assert det.assess().cells.carries[i] < 0


def test_cells_are_found_as_the_traffic_arrives() -> None:
    """Replayed in windows, the cell is throttled before most of its requests were served."""
    rows, accts = scenes.cell()
    rows = sorted(rows, key=lambda r: r["ts"])  # type: ignore[arg-type,return-value]
    det = OnlineDetector(accounts=account_table(accts))
    flagged_at: dict[str, int] = {}
    for k, chunk in enumerate(np.array_split(np.arange(len(rows)), 20)):
        det.update(event_table([rows[i] for i in chunk]))
        a = det.assess()
        for aid in ("op0", "op1", "op-reseller"):
            i = det.state.index.get(aid)
            if i is not None and a.action[i] >= THROTTLE:
                flagged_at.setdefault(aid, k)
    assert set(flagged_at) == {"op0", "op1", "op-reseller"}
    assert max(flagged_at.values()) < 10, flagged_at
    assert ACTION_NAMES[THROTTLE] == "throttle"


def test_what_the_cell_looks_keep_is_what_they_would_read_afresh() -> None:
    """Batches of accounts that send a few prompt sets (five accounts on each, ten on a last
    one: too many) from a few addresses; at each look a random set of candidate accounts
    (joining and leaving). The candidates' pairs
    (`CandidatePairs`) are all their shared pairs, each once; the small busy template keys
    kept (`SmallTemplateKeys`) are those computed over every key."""
    from datetime import timedelta

    import polars as pl

    from distillguard.detect._cells import CandidatePairs, SmallTemplateKeys, small_template_keys
    from distillguard.detect._config import load_config
    from distillguard.detect._links import PairIndex
    from distillguard.detect._signatures import event_signals
    from distillguard.detect._state import PAIR_ACCOUNT, DetectorState

    from .builders import SDK, T0, account, events

    rng = np.random.default_rng(7)
    cfg = load_config().cells
    sets = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
            "juliett", "kilo", "lima"]
    accounts = pl.from_arrow(account_table([account(f"a{k:02d}") for k in range(60)]))
    assert isinstance(accounts, pl.DataFrame)
    state = DetectorState(accounts)
    by_acct = PairIndex(PAIR_ACCOUNT)
    kept, small = CandidatePairs(), SmallTemplateKeys()
    sizes = []
    for batch in range(8):
        rows: list[dict[str, object]] = []
        for k in rng.choice(60, size=20, replace=False).tolist():
            rows += events(f"a{k:02d}", int(rng.integers(2, 12)), ua=SDK,
                           start=T0 + timedelta(hours=batch, minutes=k % 50),
                           prompt=f"Task set {sets[k % 12] if k < 50 else 'common'}: answer {{i}}",
                           ip=f"198.51.100.{rng.integers(8)}")
        frame = pl.from_arrow(event_table(rows))
        assert isinstance(frame, pl.DataFrame)
        state.update(event_signals(frame))
        pairs = state.shared_pairs()
        cand = rng.random(state.size) < 0.3
        got = kept.update(pairs, cand, by_acct)
        want = pairs[cand[pairs[:, PAIR_ACCOUNT]]]
        assert np.array_equal(np.unique(got, axis=0), np.unique(want, axis=0))
        assert len(got) == len(want)  # each pair once
        every = small_template_keys(state, np.arange(state.shared_keys), cfg)
        assert np.array_equal(small.update(state, cfg), every)
        sizes.append(int(every.sum()))
    assert 0 < sizes[-1] < state.shared_keys and len(kept.rows) > 0
