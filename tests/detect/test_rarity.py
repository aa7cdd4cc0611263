"""Rarity evidence: weighed against the log's own established accounts, on hand-built scenes."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from distillguard.detect._config import DetectConfig, load_config
from distillguard.detect._rarity import EVIDENCE, cauchy_combination, empirical_tail, share_tail

from .builders import BROWSER, HUMAN_PROMPTS, SDK, T0, account, events
from .decide import Scene, decide

STEP_BY_STEP = [
    "Solve step by step and show your work: a train covers {i} km in {j} hours. What is its "
    "average speed?",
    "Explain your reasoning step by step: how many minutes are there in {i} hours and {j} "
    "minutes?",
]


def _population(n: int = 300, families: int = 15) -> Scene:
    """Established people chatting in a browser; `families` pairs share a card."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for k in range(n):
        aid = f"person-{k:03d}"
        card = f"family-{k // 2}" if k < 2 * families else None
        accts.append(account(aid, payment=card))
        rows += events(aid, 6, start=T0 + timedelta(minutes=k), every=timedelta(hours=3),
                       prompt=HUMAN_PROMPTS[k % 7:] + HUMAN_PROMPTS[:k % 7], ua=BROWSER,
                       ip=f"203.0.113.{k % 250}")
    return rows, accts


def _farm(n: int = 40, requests: int = 6, prefix: str = "farm") -> Scene:
    """New self-serve accounts behind one card, each otherwise an ordinary chatting person."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for k in range(n):
        aid = f"{prefix}-{k:02d}"
        accts.append(account(aid, payment="batch-card-1", created=T0 - timedelta(days=2 + k / 10),
                             email=f"user{k}.example.org"))
        rows += events(aid, requests, start=T0 + timedelta(minutes=7 * k), every=timedelta(hours=2),
                       prompt=HUMAN_PROMPTS[k % 5:] + HUMAN_PROMPTS[:k % 5], ua=BROWSER,
                       ip=f"198.51.100.{k}")
    return rows, accts


def _burst(prefix: str, n: int, *, harvest: bool, channel: str = "self_serve") -> Scene:
    """`n` accounts opened within one hour three days ago, each its own address, card and
    e-mail; `harvest`: scripted step-by-step traffic with answers cut at max_tokens, else a
    class chatting in a browser."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for k in range(n):
        aid = f"{prefix}-{k:02d}"
        accts.append(account(aid, created=T0 - timedelta(days=3) + timedelta(minutes=k),
                             channel=channel, email=f"{aid}.example.org", verified=False))
        if harvest:
            rows += events(aid, 30, start=T0 + timedelta(minutes=3 * k),
                           every=timedelta(minutes=20), prompt=STEP_BY_STEP, ua=SDK,
                           ip=f"198.18.{k}.1", completion_tokens=1024, max_tokens=1024)
        else:
            rows += events(aid, 4, start=T0 + timedelta(minutes=3 * k), every=timedelta(hours=2),
                           prompt=HUMAN_PROMPTS[k % 7:] + HUMAN_PROMPTS[:k % 7], ua=BROWSER,
                           ip="192.0.2.200", completion_tokens=300)
    return rows, accts


def test_a_harvest_like_sign_up_burst_is_enough_on_its_own() -> None:
    det, action, reasons = decide(_population(), _burst("burst", 30, harvest=True))
    assert all(action[f"burst-{k:02d}"] in ("throttle", "block") for k in range(30))
    assert "30 accounts opened in its sign-up hour" in " ".join(reasons["burst-04"])
    t = det.assess().evidence["rarity"]
    i = det.state.index["burst-04"]
    assert t["shared_signup"][i] == 30 and t["shared_signup_p"][i] < 1e-20
    assert t["throttles"][i] and t["combined_p"][i] <= load_config().evidence.rarity.max_p


def _stranger(aid: str, created: datetime) -> Scene:
    """A person who chats a few times in a browser, in their (US) afternoon, from an address
    of their own."""
    return (events(aid, 6, start=T0 + timedelta(hours=17), every=timedelta(hours=1),
                   prompt=HUMAN_PROMPTS, ua=BROWSER, ip="192.0.2.77", completion_tokens=300),
            [account(aid, created=created, email=f"{aid}.example.net")])


def _key_gate(min_share: float) -> DetectConfig:
    base = load_config()
    rarity = base.evidence.rarity.model_copy(update={"key_min_share": min_share})
    return base.model_copy(update={"evidence": base.evidence.model_copy(update={"rarity": rarity})})


def test_a_stranger_who_signed_up_in_a_burst_hour_is_not_flagged_by_it() -> None:
    # A casual user opened an account in the same hour as a harvesting burst: it shares the
    # burst's sign-up key, not what makes the key suspicious (what its accounts ask for).
    scene = (_population(), _burst("burst", 30, harvest=True),
             _stranger("stranger", T0 - timedelta(days=3) + timedelta(minutes=45)))
    det, action, reasons = decide(*scene)
    assert action["stranger"] in ("allow", "monitor")
    assert action["burst-04"] in ("throttle", "block")
    t = det.assess().evidence["rarity"]
    i, j = det.state.index["stranger"], det.state.index["burst-04"]
    asks = np.maximum(t["elicitation"], t["content"])
    assert asks[i] < load_config().evidence.rarity.key_min_share <= asks[j]
    assert t["shared_signup_p"][i] == 1.0 and not t["throttles"][i]
    assert t["shared_signup"][j] == 31 and t["throttles"][j]
    assert not any("sign-up hour" in why for why in reasons["stranger"])
    # The gate is what keeps it out: counted for every account, the burst's key flags it too.
    _, ungated, _ = decide(*scene, cfg=_key_gate(0.0))
    assert ungated["stranger"] == "throttle"


def test_a_class_that_signed_up_together_behind_one_nat_is_not_rare() -> None:
    # One sign-up hour, one address, the education channel: as shared as the burst above,
    # but what the class asks together looks like people, so its keys are not suspicious.
    det, action, _ = decide(_population(), _burst("class", 32, harvest=False,
                                                   channel="education"))
    assert not any(action[f"class-{k:02d}"] in ("throttle", "block") for k in range(32))
    t = det.assess().evidence["rarity"]
    i = det.state.index["class-05"]
    assert t["shared_signup"][i] == 1 and t["shared_address"][i] == 1
    assert t["shared_signup_p"][i] == 1.0 and not t["throttles"][i]


def test_one_card_behind_forty_new_accounts_is_enough_on_its_own() -> None:
    det, action, reasons = decide(_population(), _farm())
    assert all(action[f"farm-{k:02d}"] == "throttle" for k in range(40))
    why = " ".join(reasons["farm-07"])
    assert "40 accounts on its payment card" in why and "bits" in why
    r = det.assess().rarity
    i = det.state.index["farm-07"]
    assert r.combined[i] < load_config().evidence.rarity.max_p
    table = r.table(det.state.ids).to_pylist()
    card = [row for row in table
            if row["account_id"] == "farm-07" and row["evidence"] == "shared_card"]
    assert card[0]["statistic"] == 40 and card[0]["flagged"]
    assert card[0]["bits"] == pytest.approx(-np.log2(card[0]["p_value"]))
    assert card[0]["p_value"] < 1e-20
    # A family of two on one card is common among established accounts: no flag.
    assert action["person-000"] == "allow"
    assert sum(a in ("throttle", "block") for aid, a in action.items()
               if aid.startswith("person-")) == 0


def test_a_team_of_four_on_one_card_is_not_rare() -> None:
    # The same new self-serve accounts as the farm, four of them: a small team paying together.
    det, action, reasons = decide(_population(), _farm(n=4, prefix="team"))
    assert all(action[f"team-{k:02d}"] == "allow" for k in range(4))
    r = det.assess().rarity
    i = det.state.index["team-02"]
    assert r.stat[i, EVIDENCE.index("shared_card")] == 4
    assert r.p[i, EVIDENCE.index("shared_card")] == 1.0
    assert not any("payment card" in " ".join(why) for why in reasons.values())


def test_a_card_counts_from_the_first_request() -> None:
    # Thin accounts (one request each, under rarity.min_events): the card is known at sign-up.
    det, action, reasons = decide(_population(), _farm(requests=1))
    assert all(action[f"farm-{k:02d}"] == "throttle" for k in range(40))
    assert "40 accounts on its payment card" in " ".join(reasons["farm-03"])
    r = det.assess().rarity
    # The other keys are its own, and the shares wait for min_events.
    assert (r.p[det.state.index["farm-03"], 1:] == 1.0).all()


def test_a_student_asking_for_steps_is_not_rare_enough() -> None:
    rows, accts = _population()
    accts.append(account("student"))
    rows += events("student", 8, start=T0, every=timedelta(hours=1), prompt=STEP_BY_STEP,
                   ua=BROWSER, ip="192.0.2.9")
    det, action, _ = decide((rows, accts))
    assert action["student"] in ("allow", "monitor")
    r = det.assess().rarity
    i = det.state.index["student"]
    # It asks for steps more than any other established account (it is one of them itself), and
    # that is still bounded by how many there are.
    assert r.p[i, EVIDENCE.index("elicitation")] == pytest.approx(2 / (r.null_accounts + 1))
    assert r.combined[i] > load_config().evidence.rarity.max_p


def test_too_few_established_accounts_say_nothing() -> None:
    det, action, _ = decide(_population(n=50, families=0), _farm())
    assert all(action[f"farm-{k:02d}"] == "allow" for k in range(40))
    assert (det.assess().rarity.p == 1.0).all()


def test_tails_and_combination() -> None:
    null = np.array([0.0, 0.1, 0.1, 0.5, 1.0])
    assert empirical_tail(null, np.array([0.1, 2.0])) == pytest.approx([5 / 6, 1 / 6])
    # 2 of 10 established accounts share their card: rho = 3/12.
    shares = np.array([False] * 8 + [True, True])
    assert share_tail(shares, np.array([1, 2, 4])) == pytest.approx([1.0, 0.25, 0.25**3])
    # From five accounts on (a card): four are ordinary, each one beyond costs rho.
    assert share_tail(shares, np.array([4, 5, 7]), 5) == pytest.approx([1.0, 0.25, 0.25**3])
    # One strong p-value carries the Cauchy combination (about G * p); uniform ones do not.
    strong = cauchy_combination(np.array([[1e-20, 0.9, 0.5]]))
    assert strong[0] == pytest.approx(3e-20, rel=0.01)
    rng = np.random.default_rng(14)
    u = cauchy_combination(rng.uniform(size=(20000, 3)))
    assert abs((u <= 0.05).mean() - 0.05) < 0.01  # calibrated when the evidence is null


def test_an_answer_reused_between_looks_covers_new_accounts() -> None:
    from distillguard.detect._rarity import Rarity

    r = Rarity.none(2)
    r.flag[1] = True
    r.p[1, 0] = 1e-9
    g = r.grown(5)
    assert g.p.shape == (5, len(EVIDENCE)) and g.stat.shape == (5, len(EVIDENCE))
    assert g.flag.tolist() == [False, True, False, False, False]
    assert (g.p[2:] == 1.0).all() and g.combined[4] == 1.0
    assert r.grown(1) is r


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_key_sizes_kept_between_looks_are_those_computed_afresh(seed: int) -> None:
    """Batches of accounts on shared cards, e-mail domains, sign-up hours and addresses; at each
    look a random set of keys is suspicious (keys join and leave it): the sizes `KeySizes`
    keeps equal `key_sizes` over all the pairs."""
    import pickle

    import polars as pl

    from distillguard.detect._links import PairIndex
    from distillguard.detect._rarity import KeySizes, key_sizes
    from distillguard.detect._signatures import event_signals
    from distillguard.detect._state import PAIR_ACCOUNT, PAIR_KEY, DetectorState

    from .builders import account_table, event_table, events

    rng = np.random.default_rng(seed)
    accts = [account(f"a{k:03d}", payment=f"card-{rng.integers(12)}",
                     email=f"org{rng.integers(40)}.example",  # a few accounts each
                     created=T0 - timedelta(days=3, hours=int(rng.integers(6))))
             for k in range(120)]
    accounts = pl.from_arrow(account_table(accts))
    assert isinstance(accounts, pl.DataFrame)
    state = DetectorState(accounts)
    by_key = PairIndex(PAIR_KEY)
    kept = KeySizes()
    looks_with_drops = 0
    for batch in range(10):
        rows: list[dict[str, object]] = []
        for k in rng.choice(120, size=15, replace=False).tolist():
            rows += events(f"a{k:03d}", 2, start=T0 + timedelta(hours=batch, minutes=k % 50),
                           prompt=HUMAN_PROMPTS, ua=BROWSER,
                           ip=f"198.51.100.{rng.integers(20)}")
        frame = pl.from_arrow(event_table(rows))
        assert isinstance(frame, pl.DataFrame)
        state.update(event_signals(frame))
        if batch == 4:  # a checkpoint restored: the pairs kept travel with it
            kept = pickle.loads(pickle.dumps(kept))
        if batch == 7:  # one written before the pairs were kept: the next look starts afresh
            kept = KeySizes.__new__(KeySizes)
            kept.__setstate__({"k": np.ones((1, 4)), "n": 5, "counted": np.zeros(1, bool)})
            assert kept.n == 0 and not len(kept.rows)
        for _ in range(2):  # two looks per batch: the second with no new pair
            suspicious = rng.random(state.shared_keys) < 0.4
            looks_with_drops += bool((kept.counted & ~suspicious[: len(kept.counted)]).any())
            got = kept.update(state, suspicious, by_key).copy()
            want = key_sizes(state, suspicious, by_key)
            assert np.array_equal(got, want), f"look after batch {batch}"
    pairs = state.shared_pairs()
    assert looks_with_drops and len(np.unique(pairs[:, PAIR_KEY])) > 20
    assert len(np.unique(pairs[:, PAIR_ACCOUNT])) > 50
    assert (want[:, 0] > 1).any() and (want[:, 1:] > 1).any(axis=0).all()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tails_kept_between_looks_are_those_computed_afresh(seed: int) -> None:
    """Accounts arrive, change their shares (ties included), join and leave the tested set:
    the p-values `KeptTail` keeps equal `empirical_tail` over the null at every look, to the
    last bit."""
    from distillguard.detect._tails import KeptTail

    rng = np.random.default_rng(seed)
    kept = KeptTail()
    values, null, on = np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
    for _ in range(30):
        add = int(rng.integers(0, 20))
        values = np.r_[values, rng.integers(0, 6, add) / 5.0]
        null, on = np.r_[null, rng.random(add) < 0.5], np.r_[on, rng.random(add) < 0.5]
        moved = rng.random(len(values)) < 0.2
        values[moved] = rng.integers(0, 6, int(moved.sum())) / 5.0
        on = (on | (rng.random(len(values)) < 0.1)) & (rng.random(len(values)) < 0.95)
        got = kept.update(values.copy(), null & on, on)
        want = np.where(on, empirical_tail(values[null & on], values), 1.0)
        assert np.array_equal(got, want)
    assert on.sum() > 50


def test_combination_column_by_column_is_the_row_combination() -> None:
    """The combination the rarity evidence takes column by column (`_combined`) is
    `cauchy_combination` over the counted evidence to the last bit; a gated kind of p = 1 is
    left out, every other kind counts."""
    from distillguard.detect._rarity import _GATED, KEY_EVIDENCE, _combined

    rng = np.random.default_rng(5)
    p = np.ones((5000, len(EVIDENCE)))
    some = rng.random(p.shape) < 0.3
    p[some] = rng.choice([1e-20, 1e-13, 1e-4, 0.3, 0.5, 0.999], int(some.sum()))
    counted = np.ones(p.shape, bool)
    counted[:, : len(KEY_EVIDENCE)] = ~_GATED | (p[:, : len(KEY_EVIDENCE)] < 1.0)
    assert np.array_equal(_combined(p), cauchy_combination(p, counted))
    # Benign look-alike: no evidence at all is the same combination for every account.
    none = _combined(np.ones((3, len(EVIDENCE))))
    assert none[0] == none[2] and none[0] > 0.5
