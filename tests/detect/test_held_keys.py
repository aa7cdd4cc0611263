"""A thin account whose links lead into keys a flagged campaign holds joins it at once
(detect/_evidence/_thin.py); one whose links are on keys that people use too still needs the
thin account's full evidence."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import polars as pl

from distillguard.detect import OnlineDetector
from distillguard.detect._config import DetectConfig, load_config
from distillguard.detect._core import Assessment
from distillguard.detect._decision import THROTTLE

from . import scenes
from .builders import BROWSER, HUMAN_PROMPTS, T0, account, account_table, event_table, events

Scene = tuple[list[dict[str, object]], list[dict[str, object]]]
# The hydra's second day: it was flagged on its first.
LATER = T0 + timedelta(days=1)
# A public system prompt (an app's, many people's) that asks for nothing in particular.
POPULAR = "You are a helpful coding assistant for the Acme editor."


def newcomer(aid: str = "new", n: int = 3, system: str = scenes.HYDRA_SYSTEM,
             prompt: list[str] = scenes.REPERTOIRE) -> Scene:
    """An aged, verified account (no `fresh`, no shared card or e-mail domain) that sends
    `prompt` (coding tasks of its own) under `system` from two of the hydra's proxies: thin,
    linked by an address and a template (the system prompt) only."""
    rows = events(aid, n, start=LATER, every=timedelta(minutes=20),
                  ip=["203.0.113.3", "203.0.113.5"], system=system, prompt=prompt)
    return rows, [account(aid, created=T0 - timedelta(days=300), verified=True)]


def developers(n: int = 60) -> Scene:
    """People whose app sends a popular public system prompt with their own questions, through
    the VPN whose exits the hydra rents too."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for a in range(n):
        aid = f"dev{a}"
        accts.append(account(aid, created=T0 - timedelta(days=200)))
        rows += events(aid, 6, start=T0 + timedelta(hours=2, minutes=a), every=timedelta(hours=3),
                       ip=f"203.0.113.{a % 8}", system=POPULAR, prompt=HUMAN_PROMPTS, ua=BROWSER, turns=3, completion_tokens=200)
    return rows, accts


def _decided(first: list[Scene], then: Scene, cfg: DetectConfig | None = None,
             ) -> tuple[OnlineDetector, Assessment]:
    """The detector after the scenes of `first` were decided on, then `then`'s events."""
    det = OnlineDetector(cfg, accounts=account_table([a for p in [*first, then] for a in p[1]]))
    det.update(event_table([r for p in first for r in p[0]]))
    det.assess(with_pairs=False)
    det.update(event_table(then[0]))
    return det, det.assess(with_pairs=False)


def test_a_thin_account_linked_into_a_flagged_campaigns_keys_joins_it() -> None:
    # Three requests: too few for a profile (harvest.min_events), and an address and a
    # template are two kinds of link where a thin account needs three. But the proxy and the
    # template are the flagged hydra's own: it joins at its third request, not its fifth.
    det, _ = _decided([scenes.hydra(), scenes.classroom()], newcomer())
    v = pl.from_arrow(det.verdicts())
    assert isinstance(v, pl.DataFrame)
    act = dict(zip(v["account_id"].to_list(), v["action"].to_list(), strict=True))
    assert act["h0"] in ("throttle", "block")
    assert act["new"] in ("throttle", "block")
    assert not any(act[f"s{i}"] in ("throttle", "block") for i in range(30))
    # Its reasons say why two kinds of link were enough.
    reasons = json.loads(v.filter(pl.col("account_id") == "new")["reasons"][0])
    weighed = next(r for r in reasons if r.startswith("evidence weighed:"))
    assert "2.0 needed (too few requests for a profile, but linked into keys a flagged" in weighed


def test_a_thin_account_on_keys_people_share_needs_full_evidence() -> None:
    # A hydra whose system prompt is a public app's and whose proxies are a VPN's exits, both
    # used by 60 developers too; the newcomer sends that prompt from those exits. No key is
    # the campaign's own (its flagged accounts are 12 of the 72 with a profile), so the thin
    # account still needs three, though its address and template weigh two.
    rows, accts = scenes.hydra()
    for r in rows:
        r["system"] = POPULAR
    det, a = _decided([(rows, accts), developers()], newcomer(system=POPULAR))
    i = det.state.index["new"]
    assert a.join.weight[i] >= 2.0 and not a.evidence["thin"]["held"][i]
    assert not a.join.joined[i] and a.action[i] < THROTTLE
    assert (a.action[[det.state.index["h0"], det.state.index["h5"]]] >= THROTTLE).all()
    assert not (a.action[[det.state.index[f"dev{k}"] for k in range(60)]] >= THROTTLE).any()


def test_a_thin_person_on_a_campaigns_keys_needs_full_evidence() -> None:
    # A hydra whose system prompt is an app's (it asks for nothing in particular) is flagged;
    # a person then sends three everyday questions under that prompt from the hydra's proxies
    # (a VPN's exits). Both keys are the campaign's own, but what the person asks is not what
    # a harvester asks: the thin account still needs three, though its links weigh two.
    rows, accts = scenes.hydra()
    for r in rows:
        r["system"] = POPULAR
    person = events("person", 3, start=LATER, every=timedelta(minutes=20),
                    ip=["203.0.113.3", "203.0.113.5"], system=POPULAR, prompt=HUMAN_PROMPTS,
                    ua=BROWSER, turns=2, completion_tokens=200)
    det, a = _decided([(rows, accts)], (person, [account("person", created=T0 - timedelta(days=300))]))
    i = det.state.index["person"]
    assert a.join.weight[i] >= 2.0 and not a.evidence["thin"]["held"][i]
    assert not a.join.joined[i] and a.action[i] < THROTTLE
    assert a.action[det.state.index["h0"]] >= THROTTLE
    # A newcomer asking for step-by-step answers under that prompt joins.
    det, a = _decided([(rows, accts)], newcomer(system=POPULAR, prompt=scenes.HYDRA_PROMPT))
    assert a.join.joined[det.state.index["new"]]


def test_held_keys_can_be_turned_off() -> None:
    cfg = load_config()
    off = cfg.model_copy(update={"evidence": cfg.evidence.model_copy(update={
        "thin": cfg.evidence.thin.model_copy(update={"held_min_kinds": 0})})})
    det, a = _decided([scenes.hydra()], newcomer(), off)
    i = det.state.index["new"]
    assert not a.evidence["thin"]["held"][i] and a.evidence["thin"]["need"][i] == 3.0
    assert np.isclose(a.join.weight[i], 2.0) and not a.join.joined[i]
