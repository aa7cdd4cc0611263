"""Contrasting carriers of a carried key: how much of a reseller's traffic an operator is, is
the operator's choice, so the share of the carrier's traffic a key is cannot tell a reseller
from a company running a job of its own (a company's batch templates are 17-36% of its traffic
on the simulator). What tells them apart is what the rest of the account's traffic is: a
reseller's requests on the key are far more distillation-like than its customers' chats,
while a company's template looks like its other jobs."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from distillguard.detect._cells import _content_contrast

from . import scenes
from .builders import HUMAN_PROMPTS, T0, account, events
from .decide import Scene, cells_config, decide

QUIET = ("allow", "monitor")
# The operator's two templates: task items under a step-by-step wrapper (what harvesting asks).
ITEMS = [
    "Solve problem {i} below and show all your reasoning step by step. A baker sells 48 muffins "
    "in the morning and half as many in the afternoon. How many muffins does she sell?",
    "Work through exercise {i} carefully, explaining each step. Tom has 3 times as many marbles "
    "as Jerry. Together they have 64 marbles. How many marbles does Jerry have?",
]
# A company's own jobs: as task-like as the templates (maths items under its own wrappers).
JOBS = [
    "Check worksheet answer {i} for the school app. Janet buys 3 boxes of pencils with 12 "
    "pencils in each box. She gives away 15 pencils. How many pencils does she have left?",
    "Generate hint {i} for the tutoring app. A train travels 60 miles per hour for 3 hours and "
    "then 40 miles per hour for 2 hours. How far does it travel in total?",
]


def _carried(own_jobs: bool) -> Scene:
    """One operator account that sends 60 requests on two templates, and an account that sends
    1,200 more of them (600 each: 95% of each template, 24% of its traffic) beside 1,300
    requests: its customers' chats, or jobs of its own as task-like as the templates."""
    rows, accts = scenes.cell(n_direct=1, each=60, carried=0, chats=1, prompts=ITEMS)
    rows = [r for r in rows if r["account_id"] == "op0"]
    accts = [a for a in accts if a["account_id"] == "op0"]
    if own_jobs:
        rows += events("carrier", 1300, every=timedelta(minutes=900 / 1300), prompt=JOBS,
                       ip="198.51.100.19", completion_tokens=1024, max_tokens=1024)
    else:
        rows += events("carrier", 1300, every=timedelta(minutes=900 / 1300), prompt=HUMAN_PROMPTS,
                       ip="198.51.100.19", turns=3, completion_tokens=250)
    rows += events("carrier", 1200, start=T0 + timedelta(seconds=30),
                   every=timedelta(minutes=900 / 1200), prompt=ITEMS,
                   ip="198.51.100.19", completion_tokens=1024, max_tokens=1024)
    accts.append(account("carrier", channel="reseller", verified=True, email="carrier.example"))
    return rows, accts


def test_a_reseller_whose_traffic_is_a_quarter_the_operators_is_a_carrier() -> None:
    _, action, reasons = decide(_carried(own_jobs=False), cfg=cells_config())
    assert action["op0"] == action["carrier"] == "throttle", reasons["carrier"]
    assert any("carries the traffic of small campaign" in r for r in reasons["carrier"])
    # Without the contrast (a bar no key reaches), 24% of its traffic is more than any carrier may send.
    _, without, _ = decide(_carried(own_jobs=False), cfg=cells_config(solo_min_content_contrast=1.0))
    assert {without["op0"], without["carrier"]} <= set(QUIET)


def test_a_company_whose_templates_are_a_quarter_of_its_own_jobs_is_no_carrier() -> None:
    _, action, reasons = decide(_carried(own_jobs=True), cfg=cells_config())
    assert {action["op0"], action["carrier"]} <= set(QUIET), reasons["carrier"]
    # Its templates are a few points more task-like than its jobs at times: a bar near 0 (any
    # contrast) would make it a carrier.
    _, any_contrast, _ = decide(_carried(own_jobs=True), cfg=cells_config(solo_min_content_contrast=0.01))
    assert any_contrast["carrier"] == "throttle"


def test_content_contrast_takes_the_key_out_of_the_account() -> None:
    # Key: 100 requests at 0.8 on average; the account sent 40 of them and 160 others at 0.1.
    got = _content_contrast(np.array([80.0]), np.array([100.0]), np.array([40 * 0.8 + 160 * 0.1]),
                            np.array([200.0]), np.array([40.0]))
    assert np.allclose(got, [0.7])
    # An account that is all the key has no other traffic to contrast: its rest counts as 0.
    got = _content_contrast(np.array([80.0]), np.array([100.0]), np.array([32.0]),
                            np.array([40.0]), np.array([40.0]))
    assert np.allclose(got, [0.8])
