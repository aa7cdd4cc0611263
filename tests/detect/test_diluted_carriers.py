"""Diluted carriers of a carried key: an operator may send a good part of a template itself
(the reseller then carries well under 80% of it), or be a good part of a small reseller's
traffic (the template is then more than 15% of the reseller's). A carrier whose own profile
is under the template's (its customers' chats dilute it) may do either; an account whose
other traffic looks like the template (a job of its own) may not. And an account that sends
a flagged campaign's template a few times is not its direct account."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from distillguard.detect._config import DetectConfig

from . import scenes
from .builders import HUMAN_PROMPTS, T0, account, events
from .decide import Scene, cells_config, decide

QUIET = ("allow", "monitor")
BATCH = ["Summarise report {i} in {j} numbered steps for the archive, one line per step.",
         "Classify support ticket {i} into one of {j} categories and justify it step by step."]


def _cfg(**cells: Any) -> DetectConfig:
    return cells_config(**cells)


def _carried(direct: int, carried: int, other: int, diluted: bool) -> Scene:
    """One operator account that sends `direct` requests on two templates, and an account that
    sends `carried` more of them beside `other` requests: its customers' chats (`diluted`) or
    batch requests of its own that look like the templates."""
    rows, accts = scenes.cell(n_direct=1, each=direct, carried=0, chats=1)
    rows = [r for r in rows if r["account_id"] == "op0"]
    accts = [a for a in accts if a["account_id"] == "op0"]
    if diluted:
        rows += events("carrier", other, every=timedelta(minutes=900 / other), prompt=HUMAN_PROMPTS,
                       ip="198.51.100.19", turns=3, completion_tokens=250)
    else:
        rows += events("carrier", other, every=timedelta(minutes=900 / other), prompt=BATCH,
                       ip="198.51.100.19", completion_tokens=1024, max_tokens=1024)
    rows += events("carrier", carried, start=T0 + timedelta(seconds=30),
                   every=timedelta(minutes=900 / carried), prompt=scenes.CELL_PROMPTS,
                   ip="198.51.100.19", completion_tokens=1024, max_tokens=1024)
    accts.append(account("carrier", channel="reseller", verified=True, email="carrier.example"))
    return rows, accts


def test_a_diluted_reseller_that_carries_two_thirds_of_a_template_is_a_carrier() -> None:
    # 300 carried against 150 direct: 67% of each template, among 4,000 chats (7%).
    det, action, reasons = decide(_carried(150, 300, 4000, diluted=True), cfg=_cfg())
    assert action["op0"] == action["carrier"] == "throttle"
    assert any("carries the traffic of small campaign" in r for r in reasons["carrier"])
    # With 80% asked of every carrier (the rule before 2026.12.7), nobody is flagged.
    _, strict, _ = decide(_carried(150, 300, 4000, diluted=True), cfg=_cfg(solo_min_diluted_share=0.8))
    assert {strict["op0"], strict["carrier"]} <= set(QUIET)


def test_an_account_whose_other_traffic_looks_like_the_template_carries_no_two_thirds() -> None:
    # The same 67%, beside batch requests of its own: its profile is the template's.
    _, action, _ = decide(_carried(150, 300, 600, diluted=False), cfg=_cfg())
    assert {action["op0"], action["carrier"]} <= set(QUIET)


def test_a_diluted_reseller_whose_traffic_is_a_fifth_the_operators_is_a_carrier() -> None:
    # 560 carried (280 per template: 18% of its 1,560 requests) against 30 direct on each.
    det, action, _ = decide(_carried(60, 560, 1000, diluted=True), cfg=_cfg())
    assert action["op0"] == action["carrier"] == "throttle"
    # Held to the 15% of an undiluted carrier, it is not one.
    _, strict, _ = decide(_carried(60, 560, 1000, diluted=True), cfg=_cfg(solo_max_diluted_focus=0.15))
    assert {strict["op0"], strict["carrier"]} <= set(QUIET)


def test_an_account_running_the_template_as_a_fifth_of_its_own_jobs_is_no_carrier() -> None:
    _, action, _ = decide(_carried(60, 560, 1000, diluted=False), cfg=_cfg())
    assert {action["op0"], action["carrier"]} <= set(QUIET)


PRIVATE = ["Audit solution {i} for hidden edge cases, then grade it with rubric {j} step by step.",
           "Produce ten training pairs from problem {i}, each with reasoning steps and score {j}."]


def _flagged_key_and_a_developer(dev_sends: int) -> Scene:
    """A blocked hydra one of whose members sends two private templates 60 times, a reseller
    that carries 200 more among 4,000 chats (63-77% of each), and a harvest-like developer that sends them
    `dev_sends` times among 600 requests of its own."""
    rows, accts = scenes.hydra()
    rows += events("h0", 60, start=T0 + timedelta(minutes=5), every=timedelta(minutes=15),
                   ip="203.0.113.0", system=scenes.HYDRA_SYSTEM, prompt=PRIVATE)
    rows += events("carrier", 4000, every=timedelta(seconds=13), prompt=HUMAN_PROMPTS,
                   ip="198.51.100.19", turns=3, completion_tokens=250)
    rows += events("carrier", 200, start=T0 + timedelta(seconds=30), every=timedelta(minutes=4),
                   prompt=PRIVATE, ip="198.51.100.19", completion_tokens=1024, max_tokens=1024)
    rows += events("dev", 600, start=T0 + timedelta(minutes=1), every=timedelta(minutes=1.5),
                   prompt=BATCH, ip="192.0.2.80", completion_tokens=1024, max_tokens=1024)
    rows += events("dev", dev_sends, start=T0 + timedelta(minutes=2), every=timedelta(minutes=13),
                   prompt=PRIVATE, ip="192.0.2.80", completion_tokens=1024, max_tokens=1024)
    accts += [account("carrier", channel="reseller", verified=True, email="carrier.example"),
              account("dev", channel="research", verified=True, email="dev.example",
                      created=T0 - timedelta(days=200))]
    return rows, accts


def test_an_account_that_sends_a_flagged_template_a_few_times_is_not_its_direct_account() -> None:
    _, action, _ = decide(_flagged_key_and_a_developer(dev_sends=6), cfg=_cfg())
    assert action["h0"] == "block"
    assert action["dev"] in QUIET
    # Sent 60 times (a tenth of its traffic), the template is its own.
    _, often, reasons = decide(_flagged_key_and_a_developer(dev_sends=60), cfg=_cfg())
    assert often["dev"] == "throttle", reasons["dev"]
