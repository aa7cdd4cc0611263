"""A small campaign with ONE direct account, carried by a reseller ("solo" cells), and the
hard negatives that share a template the same way: two companies running one batch template,
and a reseller's customer template that a busy account sends in passing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np

from distillguard.detect import OnlineDetector
from distillguard.detect._config import DetectConfig
from distillguard.detect._decision import BLOCK, THROTTLE

from . import scenes
from .builders import T0, account, account_table, event_table, events
from .decide import Scene, cells_config, decide


def _cfg(**solo: Any) -> DetectConfig:
    return cells_config(**solo)


def _run(*parts: Scene, cfg: DetectConfig | None = None,
         ) -> tuple[OnlineDetector, dict[str, str], dict[str, list[str]]]:
    return decide(*parts, cfg=cfg or cells_config())


def _solo() -> Scene:
    # One operator account (60 requests) and a reseller that carries 400 more of them among
    # 4,000 of its customers' chats: each template is ~5% of the reseller's traffic.
    return scenes.cell(n_direct=1, carried=400, chats=4000)


def test_one_direct_account_and_its_reseller_are_throttled_never_blocked() -> None:
    det, action, reasons = _run(_solo())
    assert action["op0"] == "throttle"
    assert action["op-reseller"] == "throttle"
    assert not (det.assess().action == BLOCK).any()
    assert any("the one direct account of small campaign" in r for r in reasons["op0"])
    assert any("carries the traffic of small campaign" in r for r in reasons["op-reseller"])
    # Without the rule (no tie, so no cell), the same traffic is at most watched.
    _, off, _ = _run(_solo(), cfg=_cfg(solo_enabled=False))
    assert {off["op0"], off["op-reseller"]} <= {"allow", "monitor"}


def test_the_solo_cell_is_found_as_the_traffic_arrives() -> None:
    rows, accts = _solo()
    rows = sorted(rows, key=lambda r: r["ts"])  # type: ignore[arg-type,return-value]
    det = OnlineDetector(_cfg(every_minutes=0.0), accounts=account_table(accts))
    flagged_at: dict[str, int] = {}
    for k, chunk in enumerate(np.array_split(np.arange(len(rows)), 20)):
        det.update(event_table([rows[i] for i in chunk]))
        a = det.assess()
        for aid in ("op0", "op-reseller"):
            i = det.state.index.get(aid)
            if i is not None and a.action[i] >= THROTTLE:
                flagged_at.setdefault(aid, k)
    assert set(flagged_at) == {"op0", "op-reseller"}
    assert max(flagged_at.values()) < 10, flagged_at


def _two_companies() -> Scene:
    """A big batch job whose template is a third of its traffic, and a small company that runs
    the same template (one verified enterprise account each)."""
    tmpl = "Write a {i} line Python solution for problem {j} and explain your reasoning step by step."
    other = ["Summarise ticket {i} for the on-call engineer in {j} bullet points.",
             "Translate product description {i} into German, keep it under {j} words."]
    big = events("big", 900, every=timedelta(minutes=1), prompt=[tmpl, *other],
                 ip="198.51.100.60", completion_tokens=1024, max_tokens=1024)
    small = events("small", 60, start=T0 + timedelta(minutes=3), every=timedelta(minutes=15),
                   prompt=tmpl, ip=["203.0.113.70", "203.0.113.71"], completion_tokens=1024,
                   max_tokens=1024)
    return big + small, [account("big", channel="enterprise", verified=True, email="big.example"),
                         account("small", channel="startup", verified=False,
                                 email="small.example")]


def test_two_companies_running_one_template_are_not_a_solo_cell() -> None:
    det, action, _ = _run(_two_companies())
    assert {action["big"], action["small"]} <= {"allow", "monitor"}
    # What spares them is the carrier's focus: the template is a third of the big one's traffic.
    _, loose, _ = _run(_two_companies(), cfg=_cfg(solo_max_carrier_focus=1.0))
    assert loose["small"] == "throttle"


def _busy_account_on_a_customer_template() -> Scene:
    """A reseller whose customer runs a harvest-like template job among 4,000 chats, and a
    busy harvest-like account (an evaluation runner) that sends the same template 10 times
    among 1,200 benchmark requests."""
    rows, accts = scenes.cell(prefix="x", n_direct=0, carried=400, chats=4000)
    tmpl = scenes.CELL_PROMPTS
    rows += events("runner", 1200, every=timedelta(seconds=40), ip="198.51.100.77",
                   prompt=scenes.HYDRA_PROMPT, completion_tokens=1024, max_tokens=1024)
    rows += events("runner", 10, start=T0 + timedelta(hours=1), every=timedelta(minutes=30),
                   ip="198.51.100.77", prompt=tmpl, completion_tokens=1024, max_tokens=1024)
    accts.append(account("runner", channel="startup", verified=False, email="runner.example"))
    return rows, accts


def test_a_busy_account_that_sends_a_customer_template_in_passing_is_not_a_solo_cell() -> None:
    _, action, _ = _run(_busy_account_on_a_customer_template())
    assert {action["x-reseller"], action["runner"]} <= {"allow", "monitor"}
    # What spares them is the runner's focus: the template is under 1% of what it sends.
    _, loose, _ = _run(_busy_account_on_a_customer_template(),
                       cfg=_cfg(solo_min_direct_focus=0.0))
    assert loose["runner"] == "throttle"
