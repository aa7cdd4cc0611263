"""The first request of a new account checked against flagged campaigns' keys
(`detect/_firstrequest`): a campaign's new accounts match at their first request, a benign new
account on other keys does not, and a key that many unflagged accounts share never counts."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from distillguard.detect import EndUserDetector, RequestKeys, request_keys, scan
from distillguard.detect._firstrequest import campaign_key_mask
from distillguard.traffic import write_table

from . import scenes
from .builders import BROWSER, HUMAN_PROMPTS, T0, account, account_table, event_table, events


def _late_recruits(n: int = 3) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """New accounts of the hydra arriving a day later, on its proxies and prompts."""
    rows, accts = scenes.hydra(n_accounts=n, n_events=20, start_hours=30.0, prefix="late")
    return rows, accts


def _benign_newcomer() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    rows = events("newbie", 10, start=T0 + timedelta(hours=30, minutes=1), prompt=HUMAN_PROMPTS,
                  ip="192.0.2.77", ua=BROWSER, turns=2, completion_tokens=200)
    return rows, [account("newbie", created=T0 + timedelta(hours=29))]


def _first_ts(rows: list[dict[str, object]], acct: str) -> object:
    return min(r["ts"] for r in rows if r["account_id"] == acct)  # type: ignore[type-var]


def test_a_campaigns_new_accounts_are_stopped_at_their_first_request(tmp_path: Path) -> None:
    parts = [scenes.hydra(), _late_recruits(), _benign_newcomer()]
    rows = [r for p in parts for r in p[0]]
    write_table(tmp_path / "log", "events", event_table(rows))
    write_table(tmp_path / "log", "accounts", account_table([a for p in parts for a in p[1]]))
    result = scan(tmp_path / "log", tmp_path / "out")
    flags = result.tables["first_request_flags"]
    got = dict(zip(flags.column("account_id").to_pylist(),
                   flags.column("first_request_ts").to_pylist(), strict=True))
    for a in ("late0", "late1", "late2"):
        assert got[a] == _first_ts(rows, a)
    assert "newbie" not in got
    # the hydra's first accounts come before any decision: served until their window ends
    assert "h0" not in got
    for a in (a for a in got if a.startswith("h")):
        assert got[a] == _first_ts(rows, a)


def test_a_key_shared_by_many_unflagged_accounts_is_never_a_campaign_key() -> None:
    flagged = np.array([12, 12, 2, 12, 12])
    accounts = np.array([12, 60, 2, 14, 13])
    established = np.array([0, 30, 0, 0, 1])  # the last: one established person uses it
    assert campaign_key_mask(flagged, accounts, established, 3, 0.8, 0).tolist() == [
        True, False, False, True, False]
    assert campaign_key_mask(flagged, accounts, established, 3, 0.8, None).tolist() == [
        True, False, False, True, True]


def test_an_address_stops_a_request_only_beside_its_content() -> None:
    from distillguard.detect._firstrequest import matches

    assert matches({"sys"}) and matches({"head0", "tail1"}) and matches({"ip", "tail0"})
    assert not matches({"ip"}) and not matches({"head0", "head1"}) and not matches(set())


def test_the_gateways_detector_publishes_keys_a_new_request_is_checked_against() -> None:
    """A popular system prompt shared with benign accounts is not published; the hydra's
    template is, and a new request carrying it matches while a benign one does not."""
    popular = "You are a helpful assistant."
    rows, accts = scenes.hydra()
    for a in range(30):  # established people on the popular system prompt, and the hydra too
        aid = f"p{a}"
        accts.append(account(aid))
        rows += events(aid, 8, start=T0 + timedelta(minutes=11 * a), prompt=HUMAN_PROMPTS,
                       system=popular, ip=f"192.0.2.{a}", ua=BROWSER, turns=2, completion_tokens=200)
    rows += events("h0", 5, start=T0 + timedelta(hours=1), system=popular, ip="203.0.113.1")
    rows = sorted(rows, key=lambda r: r["ts"])  # type: ignore[arg-type,return-value]
    det = EndUserDetector(accounts=account_table(accts))
    for chunk in np.array_split(np.arange(len(rows)), 5):
        det.update(event_table([rows[i] for i in chunk]))
    keys = det.campaign_keys()
    assert keys.keys

    def request(prompt: str, system: str | None, ip: str) -> list[tuple[str, int]]:
        frame = pl.from_arrow(event_table(events("fresh", 1, start=T0 + timedelta(days=3),
                                                 prompt=prompt, system=system, ip=ip)))
        assert isinstance(frame, pl.DataFrame)
        return request_keys(frame)

    assert keys.match(request(scenes.HYDRA_PROMPT[0], scenes.HYDRA_SYSTEM, "198.18.0.1")) is not None
    assert keys.match(request(HUMAN_PROMPTS[0], popular, "198.18.0.2")) is None


_WORDS = ["solve", "Step", "by", "STEP", "rubric", "grade", "the", "answer", "Explain", "x", "café",
          "naïve", "Straße", "İstanbul", "\u212aelvin", "ΣΟΦΙΑ", "日本語", "i18n", "3+4=7", "don't", "e-mail"]
_SEPARATORS = [" ", "  ", "\n", "\t", ", ", ". ", "!\n\n", "\u00a0", "\u3000", "—"]


def _text(rng: random.Random, n_words: int) -> str:
    return "".join(rng.choice(_WORDS) + rng.choice(_SEPARATORS) for _ in range(n_words)).strip(rng.choice([" ", ""]))


def _one_row(ip: str | None, system: str | None, prompt: str | None) -> pl.DataFrame:
    """A request as a one-row events frame (format columns), as the gateway once built it."""
    row = pl.DataFrame({
        "ts": [0], "event_id": [""], "account_id": ["a"], "ip": [ip], "user_agent": [None], "model": ["m"],
        "system": [system], "prompt": [prompt], "turns": [1], "tools": [0], "completion_tokens": [None],
        "max_tokens": [None],
    }, schema_overrides={"completion_tokens": pl.Int64, "max_tokens": pl.Int64, "system": pl.String,
                         "ip": pl.String, "user_agent": pl.String, "prompt": pl.String})
    return row.with_columns(pl.from_epoch("ts", time_unit="us").dt.replace_time_zone("UTC"))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_requests_keys_in_plain_python_are_the_vectorised_ones(seed: int) -> None:
    """`RequestKeys` (the gateway's) and `request_keys` (the detector's hashing) agree on
    generated requests: short and long prompts (the bands take a dozen words from the first and
    last 100 characters), non-ASCII letters and spaces, no words, no prompt, no system prompt,
    a blank one, no address. A small cache is emptied and refilled along the way."""
    rng = random.Random(seed)
    keys = RequestKeys(max_cached=64, max_system_prompts=3)
    systems = [None, "", "   ", "You are a careful grader.", "YOU  are a\tcareful grader. ", _text(rng, 30)]
    ips = [None, "", "203.0.113.7", "2001:db8::1", "127.0.0.1"]
    for i in range(300):
        prompt = rng.choice([None, "", "?!", _text(rng, rng.randint(1, 60))])
        system, ip = rng.choice(systems), rng.choice(ips)
        assert keys(ip, system, prompt) == request_keys(_one_row(ip, system, prompt)), (i, ip, system, prompt)


@pytest.mark.parametrize(("seed", "max_people"), [(1, None), (2, 0), (3, 2)])
def test_campaign_keys_kept_between_looks_are_those_of_every_pair(
        seed: int, max_people: int | None) -> None:
    """Random decisions over accounts sharing addresses and templates (accounts flagged and
    unflagged from one look to the next): the campaign keys the replay keeps through the pair
    indexes are those found from every shared pair."""
    from distillguard.detect._config import load_config
    from distillguard.detect._decision import ALLOW, BLOCK, MONITOR, THROTTLE
    from distillguard.detect._firstrequest import FirstRequestFlags, campaign_key_codes
    from distillguard.detect._links import PairIndex
    from distillguard.detect._signatures import event_signals
    from distillguard.detect._state import PAIR_ACCOUNT, PAIR_KEY, DetectorState

    rng = np.random.default_rng(seed)
    accts = [account(f"a{k:03d}", created=T0 - timedelta(days=int(rng.integers(1, 60))))
             for k in range(90)]
    frame = pl.from_arrow(account_table(accts))
    assert isinstance(frame, pl.DataFrame)
    state = DetectorState(frame)
    cfg = load_config().first_request.model_copy(update={
        "min_flagged_accounts": 2, "max_established_accounts": max_people})
    index = (PairIndex(PAIR_KEY), PairIndex(PAIR_ACCOUNT))
    kept = FirstRequestFlags(cfg)
    found = 0
    for batch in range(6):
        rows: list[dict[str, object]] = []
        for k in rng.choice(90, size=20, replace=False).tolist():
            rows += events(f"a{k:03d}", 2, start=T0 + timedelta(hours=batch, minutes=k % 50),
                           prompt=[f"Task {rng.integers(6)}: add {{i}} and {{j}}, then explain"],
                           ip=f"198.51.100.{rng.integers(15)}")
        events_frame = pl.from_arrow(event_table(rows))
        assert isinstance(events_frame, pl.DataFrame)
        state.update(event_signals(events_frame))
        for _ in range(3):
            m = state.size - int(rng.integers(0, 3))  # the decision may predate new accounts
            action = rng.choice([ALLOW, MONITOR, THROTTLE, BLOCK], size=m, p=[.3, .1, .4, .2])
            harvest = rng.random(m)
            want = campaign_key_codes(state, action, harvest, cfg)
            got = kept.look(state, action, harvest, index)
            assert np.array_equal(got, want), f"batch {batch}"
            found += len(want)
    assert found and len(np.unique(state.shared_pairs()[:, PAIR_ACCOUNT])) > 40


def test_replay_bookkeeping_from_a_checkpoint_without_kept_counts_looks_afresh() -> None:
    """A pickled `FirstRequestFlags` of before the kept counts (no `_on_keys`, a pending
    decision without the pair indexes) restores and still finds its campaign keys."""
    import pickle

    from distillguard.detect import OnlineDetector
    from distillguard.detect._config import load_config
    from distillguard.detect._firstrequest import FirstRequestFlags, campaign_key_codes

    parts = [scenes.hydra()]
    det = OnlineDetector(accounts=account_table([a for p in parts for a in p[1]]))
    det.update(event_table([r for p in parts for r in p[0]]))
    a = det.assess()
    flags = FirstRequestFlags(load_config().first_request)
    flags.decided(det.state, a.action, a.harvest)
    old = {k: v for k, v in vars(flags).items() if k != "_on_keys"}
    assert flags._pending is not None
    old["_pending"] = flags._pending[:3]
    restored = FirstRequestFlags.__new__(FirstRequestFlags)
    restored.__setstate__(pickle.loads(pickle.dumps(old)))
    want = campaign_key_codes(det.state, a.action, a.harvest, flags.cfg)
    assert len(want) and np.array_equal(restored._codes(), want)
