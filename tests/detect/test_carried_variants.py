"""Carried keys in the shapes an operator varies (`scenarios/tune_carried_variants.toml`): the
carried share split over two resellers, several direct accounts that share nothing, a direct
account already flagged in a large campaign, a milder direct account; and for each, the hard
negative that resembles it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from distillguard.detect._config import DetectConfig
from distillguard.detect._decision import BLOCK

from . import scenes
from .builders import BROWSER, HUMAN_PROMPTS, T0, account, events
from .decide import Scene, cells_config, decide

FLAGGED = ("throttle", "block")
QUIET = ("allow", "monitor")


def _cfg(**cells: Any) -> DetectConfig:
    return cells_config(**cells)


def _reseller(name: str, carried: int, chats: int = 4000, prompts: list[str] | None = None,
              hours: float = 15.0, ip: str = "198.51.100.19") -> Scene:
    """A reseller: `chats` of its customers' chats and `carried` requests on `prompts`."""
    prompts = prompts or scenes.CELL_PROMPTS
    minutes = hours * 60
    rows = events(name, chats, every=timedelta(minutes=minutes / chats), prompt=HUMAN_PROMPTS,
                  ip=ip, turns=3, completion_tokens=250)
    rows += events(name, carried, start=T0 + timedelta(seconds=30),
                   every=timedelta(minutes=minutes / max(carried, 1)), prompt=prompts, ip=ip,
                   completion_tokens=1024, max_tokens=1024)
    return rows, [account(name, channel="reseller", verified=True, email=f"{name}.example")]


def _join(*parts: Scene) -> Scene:
    return [r for p in parts for r in p[0]], [a for p in parts for a in p[1]]


# -- the carried share split over two resellers ----------------------------------------------

def _split() -> Scene:
    """One direct account (60 requests); two resellers carry 300 each of the same requests
    among 4,000 chats: each sends 45% of every template, neither 80%."""
    direct, accts = scenes.cell(n_direct=1, carried=0, chats=1)
    direct = [r for r in direct if r["account_id"] == "op0"]
    accts = [a for a in accts if a["account_id"] == "op0"]
    return _join((direct, accts), _reseller("res-a", 300, ip="198.51.100.19"),
                 _reseller("res-b", 300, ip="198.51.100.29"))


def test_a_campaign_split_over_two_resellers_is_found_with_both_carriers() -> None:
    det, action, reasons = decide(_split(), cfg=_cfg())
    assert action["op0"] == action["res-a"] == action["res-b"] == "throttle"
    assert not (det.assess().action == BLOCK).any()
    assert any("from 2 other accounts" in r for r in reasons["op0"]), reasons["op0"]
    # With one carrier required to send 80% (the rule before 2026.11.8), nobody is flagged.
    _, single, _ = decide(_split(), cfg=_cfg(solo_min_carrier_part=0.8))
    assert {single["op0"], single["res-a"], single["res-b"]} <= set(QUIET)


def test_two_accounts_that_split_a_template_are_not_carriers_when_one_runs_it_as_its_own_job(
) -> None:
    # res-b sends its half among only 300 other requests: half its traffic, a job of its own
    # (a company's batch template), so only res-a carries, 45% of the key: not enough.
    direct, accts = _split()
    rows = [r for r in direct if not (r["account_id"] == "res-b" and r["turns"] == 3)]
    rows += events("res-b", 300, every=timedelta(minutes=3), prompt=HUMAN_PROMPTS,
                   ip="198.51.100.29", turns=3, completion_tokens=250)
    _, action, _ = decide((rows, accts), cfg=_cfg())
    assert {action["op0"], action["res-a"], action["res-b"]} <= set(QUIET)


# -- several direct accounts that share nothing ----------------------------------------------

def _scattered(strangers: int = 0) -> Scene:
    """Three direct accounts with nothing in common but the templates; one reseller carries
    1,200 of the requests among 8,000 chats (87% of each template). `strangers` ordinary users
    also send the templates now and then."""
    rows, accts = scenes.cell(n_direct=3, tie=False, carried=1200, chats=8000)
    # (signed up weeks apart: not one sign-up burst either)
    accts = [{**a, "created_at": T0 - timedelta(days=5 + 9 * k)} for k, a in enumerate(accts)]
    for s in range(strangers):
        aid = f"user{s}"
        rows += events(aid, 40, every=timedelta(minutes=20), prompt=HUMAN_PROMPTS,
                       ip=f"192.0.2.{60 + s}", ua=BROWSER, turns=2, completion_tokens=200)
        rows += events(aid, 6, start=T0 + timedelta(hours=1), every=timedelta(hours=1),
                       prompt=scenes.CELL_PROMPTS, ip=f"192.0.2.{60 + s}", ua=BROWSER)
        accts.append(account(aid))
    return rows, accts


def test_three_direct_accounts_that_share_nothing_are_one_small_campaign() -> None:
    det, action, reasons = decide(_scattered(), cfg=_cfg())
    assert action["op0"] == action["op1"] == action["op2"] == action["op-reseller"] == "throttle"
    assert not (det.assess().action == BLOCK).any()
    assert any("one of the 3 direct accounts of small campaign" in r for r in reasons["op0"])
    # Four accounts on each template: too many for the rule before 2026.11.8 (at most 3).
    _, old, _ = decide(_scattered(), cfg=_cfg(solo_max_key_accounts=3))
    assert {old["op0"], old["op1"], old["op2"], old["op-reseller"]} <= set(QUIET)


def test_a_template_that_ordinary_users_also_send_is_not_a_carried_key() -> None:
    # Two ordinary users who send the same prompts now and then: strangers on the key.
    _, action, _ = decide(_scattered(strangers=2), cfg=_cfg())
    assert {action["op0"], action["op1"], action["op2"], action["op-reseller"]} <= set(QUIET)
    _, loose, _ = decide(_scattered(strangers=2), cfg=_cfg(solo_max_key_strangers=2))
    assert loose["op-reseller"] == "throttle"


# -- a direct account already flagged in a large campaign ------------------------------------

PRIVATE = ["Audit solution {i} for hidden edge cases, then grade it with rubric {j} step by step.",
           "Produce ten training pairs from problem {i}, each with reasoning steps and score {j}."]


def _hydra_with_a_carried_key() -> Scene:
    """A hydra (blocked) one of whose members also sends two private templates 60 times, and
    a reseller that carries 600 more of them among 4,000 chats: it shares nothing with the
    hydra but those templates."""
    rows, accts = scenes.hydra()
    rows += events("h0", 60, start=T0 + timedelta(minutes=5), every=timedelta(minutes=15),
                   ip="203.0.113.0", system=scenes.HYDRA_SYSTEM, prompt=PRIVATE)
    return _join((rows, accts), _reseller("carrier", 600, prompts=PRIVATE))


def test_the_carrier_of_a_flagged_accounts_private_template_is_throttled() -> None:
    det, action, reasons = decide(_hydra_with_a_carried_key(), cfg=_cfg())
    assert action["h0"] == "block"
    assert action["carrier"] == "throttle"
    text = [r for r in reasons["carrier"] if "carries the traffic of campaign" in r]
    assert text and "from its flagged account h0" in text[0], reasons["carrier"]
    _, off, _ = decide(_hydra_with_a_carried_key(), cfg=_cfg(solo_enabled=False))
    assert off["carrier"] in QUIET


def _hydra_and_a_benchmark_runner(each: int) -> Scene:
    """A hydra whose members each send one public benchmark item `each` times, and an
    evaluation runner that re-sends it 250 times among 2,000 requests of its own."""
    item = "Janet has {i} apples and gives {j} away. Solve step by step: how many are left?"
    rows, accts = scenes.hydra()
    for a in range(4):
        rows += events(f"h{a}", each, start=T0 + timedelta(hours=1, minutes=a),
                       every=timedelta(minutes=40), ip="203.0.113.0",
                       system=scenes.HYDRA_SYSTEM, prompt=item)
    runner = events("runner", 2000, every=timedelta(seconds=25), ip="198.51.100.77",
                    prompt=scenes.HYDRA_PROMPT[2], completion_tokens=1024, max_tokens=1024)
    runner += events("runner", 250, start=T0 + timedelta(minutes=2),
                     every=timedelta(minutes=3), ip="198.51.100.77", prompt=item,
                     completion_tokens=1024, max_tokens=1024)
    accts.append(account("runner", channel="research", verified=True,
                         created=T0 - timedelta(days=200)))
    return rows + runner, accts


def test_a_runner_that_resends_a_public_item_a_campaign_also_sent_once_is_not_a_carrier() -> None:
    # The members sent the item twice each: thin, not a template of theirs.
    _, action, _ = decide(_hydra_and_a_benchmark_runner(each=2), cfg=_cfg())
    assert action["h0"] == "block"
    assert action["runner"] in QUIET
    # Sent 12 times each, it would be theirs (and the runner would carry it).
    _, often, _ = decide(_hydra_and_a_benchmark_runner(each=12), cfg=_cfg())
    assert often["runner"] == "throttle"


# -- a milder direct account ---------------------------------------------------------------

def _mild(elicit: bool) -> Scene:
    """An aged, verified account in a browser, office hours, no capped answers, that sends a
    reseller-carried template 48 times over three days; the reseller carries 500."""
    prompts = scenes.CELL_PROMPTS if elicit else [
        "Write a {i} line Python solution for problem {j}.",
        "Port module {i} of the billing service to Go, keep interface {j}."]
    rows: list[dict[str, object]] = []
    for day in range(3):
        rows += events("m0", 16, start=T0 + timedelta(days=day, hours=9),
                       every=timedelta(minutes=30), ip="203.0.113.95", prompt=prompts,
                       ua=BROWSER, completion_tokens=300 if elicit else 4096, max_tokens=4096)
    res_rows, res_accts = _reseller("m-reseller", 500, prompts=prompts, hours=72.0)
    # (The developer signed up as a startup, which makes it as harvest-like as the other.)
    return rows + res_rows, [account("m0", channel="self_serve" if elicit else "startup",
                                     verified=True, created=T0 - timedelta(days=400)),
                             *res_accts]


def test_a_milder_direct_account_that_asks_for_reasoning_is_found() -> None:
    det, action, _ = decide(_mild(elicit=True), cfg=_cfg())
    h = det.assess().harvest[det.state.index["m0"]]
    assert 0.4 <= h < 0.6, h  # under the bar of an ordinary direct account
    assert action["m0"] == action["m-reseller"] == "throttle"
    _, old, _ = decide(_mild(elicit=True), cfg=_cfg(solo_mild_direct_harvest=0.6))
    assert {old["m0"], old["m-reseller"]} <= set(QUIET)


def test_a_developer_on_a_carried_template_who_asks_for_no_reasoning_is_not_a_direct_account(
) -> None:
    det, action, _ = decide(_mild(elicit=False), cfg=_cfg())
    h = det.assess().harvest[det.state.index["m0"]]
    assert 0.4 <= h < 0.6, h  # as mild as the one above
    assert {action["m0"], action["m-reseller"]} <= set(QUIET)
