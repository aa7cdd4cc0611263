"""The cohort evidence (detect/_cohort.py, `[evidence.cohort]`): the group test's maths, and
hand-built logs where a cohort must be found (scripted accounts that share no infrastructure
and ask the same kind of task) and must not (students on the same homework, too few scripted
accounts)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from distillguard.detect._cohort import STRATA, cohort_pvalues, rare_edges, step_down
from distillguard.detect._config import DetectConfig, load_config

from .builders import BROWSER, HUMAN_PROMPTS, T0, account, events
from .decide import decide

Scene = tuple[list[dict[str, object]], list[dict[str, object]]]

# Longer than any account's frame line, as the tasks of a pool are: the task is the longest line.
WORD_PROBLEMS = [
    "A baker makes {i} loaves of bread each day and sells them for $3 each. If she gives away "
    "{j} loaves, how much money does she earn in a week?",
    "Tom has {i} marbles in a jar on his desk. He gives {j} marbles to each of his 4 friends "
    "after school. How many marbles does Tom have left?",
    "A train leaves the station at noon and travels {i} miles in {j} hours without stopping. "
    "What is its average speed in miles per hour?",
    "A garden has {i} rows of tomato plants with {j} plants in each row, and a fence around it. "
    "How many plants are there in the garden?",
    "Maria reads {i} pages on Monday and {j} more pages on Tuesday than on Monday. How many "
    "pages does she read in the two days?",
    "A school orders {i} boxes of pencils with {j} pencils in each box for its new classrooms. "
    "How many pencils does the school order?",
]
# Words an operator's script draws its per-account paraphrase of "reason step by step" from.
_FRAME_WORDS = ["carefully", "reason", "through", "each", "stage", "explain", "working",
                "clearly", "justify", "every", "move", "then", "state", "result", "final",
                "line", "below", "answer", "detail", "logic", "precisely", "intermediate",
                "values", "write"]


def cfg_with(**values: Any) -> DetectConfig:
    raw = load_config().model_dump()
    raw["evidence"]["cohort"].update(values)
    return DetectConfig.model_validate(raw)


def _frame(k: int) -> str:
    """Account k's own closing instruction: 14 words, a different draw for every account."""
    rng = np.random.default_rng(1000 + k)
    return " ".join(rng.choice(_FRAME_WORDS, size=14, replace=True).tolist()) + "."


PUBLIC_SLOTS = 5000


def pool_task(slot: int, problems: list[str] = WORD_PROBLEMS) -> str:
    """Task `slot` of a pool: a word problem with its own numbers."""
    return problems[slot % len(problems)].format(i=7 + slot % 89, j=3 + slot // 89)


def scripted(prefix: str, n: int, each: int = 6, shared: bool = False) -> Scene:
    """Accounts that share nothing (own address, card, browser, hours) and each wrap word
    problems in its own paraphrase of a step-by-step request, one task per request: each
    account its own slice of one pool, or (`shared`) all of them the same public items."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for k in range(n):
        aid = f"{prefix}{k}"
        accts.append(account(aid, created=T0 - timedelta(days=30 + k)))
        tail = _frame(k)
        # Public items: a benchmark's first items, numbered apart from the pool's slices.
        prompts = [pool_task(PUBLIC_SLOTS + i if shared else k * each + i) + "\n\n" + tail
                   for i in range(each)]
        rows += events(aid, each, start=T0 + timedelta(minutes=11 * k),
                       every=timedelta(minutes=53), prompt=prompts, ua=BROWSER,
                       ip=f"203.0.{k // 200}.{k % 200 + 1}")
    return rows, accts


# One-word frames an operator's script gives its accounts, a different one to every two.
_ONE_WORDS = ["Task", "Exercise", "Problem", "Item", "Query", "Prompt", "Input", "Case", "Sample",
              "Entry", "Record", "Puzzle", "Drill", "Quiz", "Assignment", "Challenge", "Request",
              "Job", "Unit", "Test"]


def framed(prefix: str, n: int, word: Callable[[int], str], each: int = 6) -> Scene:
    """Accounts that share nothing and put one word of their own (`word(k)`) before every
    task: a frame a dozen words of varying task drown in the template keys."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for k in range(n):
        aid = f"{prefix}{k}"
        accts.append(account(aid, created=T0 - timedelta(days=30 + k)))
        prompts = [f"{word(k)}: {WORD_PROBLEMS[(k + i) % len(WORD_PROBLEMS)]}"
                   for i in range(len(WORD_PROBLEMS))]
        rows += events(aid, each, start=T0 + timedelta(minutes=11 * k),
                       every=timedelta(minutes=53), prompt=prompts, ua=BROWSER,
                       ip=f"203.0.{k // 200}.{k % 200 + 1}")
    return rows, accts


def people(prefix: str, n: int, each: int = 5) -> Scene:
    """People asking everyday things, in conversations."""
    rows: list[dict[str, object]] = []
    accts = [account(f"{prefix}{k}") for k in range(n)]
    for k in range(n):
        prompts = HUMAN_PROMPTS[k % 10:] + HUMAN_PROMPTS[: k % 10]
        rows += events(f"{prefix}{k}", each, start=T0 + timedelta(minutes=3 * k),
                       every=timedelta(minutes=40), prompt=prompts, ua=BROWSER, turns=3,
                       ip=f"198.18.{k // 200}.{k % 200 + 1}")
    return rows, accts


def students(prefix: str, n: int, each: int = 6) -> Scene:
    """Students asking the same homework problems, each request worded its own way, in
    conversations with follow-ups."""
    asks = ["can you explain how to solve this step by step\n\n",
            "i'm stuck on this one, pls show the working\n\n",
            "homework question, walk me through it\n\n"]
    rows: list[dict[str, object]] = []
    accts = [account(f"{prefix}{k}", channel="education") for k in range(n)]
    for k in range(n):
        prompts = [asks[(k + i) % 3] + WORD_PROBLEMS[i % 3] for i in range(6)]
        rows += events(f"{prefix}{k}", each, start=T0 + timedelta(minutes=5 * k),
                       every=timedelta(minutes=9), prompt=prompts, ua=BROWSER,
                       turns=1 + 2 * (k % 2) + (k % 3), ip=f"192.0.{k // 200}.{k % 200 + 1}")
    return rows, accts


def test_a_big_excess_in_one_stratum_is_far_below_max_p() -> None:
    rate, p = cohort_pvalues(np.array([100, 3, 2, 4]), np.array([400, 900, 300, 2000]))
    assert rate[0] == pytest.approx((3 + 2 + 4 + 1) / (900 + 300 + 2000 + 2))
    assert p[0] < 1e-50
    assert (p[1:] > 1e-3).all()


def test_a_stratum_at_the_others_rate_is_not_a_cohort() -> None:
    _, p = cohort_pvalues(np.array([10, 10, 10, 10]), np.array([1000, 1000, 1000, 1000]))
    assert (p > 0.1).all()


def test_one_cohort_found_does_not_hide_another() -> None:
    k, n = np.array([150, 90, 0, 5]), np.array([850, 1600, 150, 3000])
    _, p_once = cohort_pvalues(k, n)
    assert p_once[1] > 1e-6  # against a null raised by the first cohort, the second hides
    _, p, found = step_down(k, n, 1e-6, 20)
    assert found.tolist() == [True, True, False, False]
    assert p[1] < 1e-20


def test_scripted_accounts_that_share_nothing_are_throttled_as_a_cohort() -> None:
    _, action, reasons = decide(scripted("op", 40), people("p", 300), students("st", 30))
    ops = [f"op{k}" for k in range(40)]
    assert all(action[a] == "throttle" for a in ops), {a: action[a] for a in ops}
    why = " ".join(reasons["op0"])
    assert f"asking mostly {STRATA[0]} tasks" in why and "p = " in why
    assert "throttled, not blocked" in why
    assert not any(action[f"p{k}"] in ("throttle", "block") for k in range(300))
    assert not any(action[f"st{k}"] in ("throttle", "block") for k in range(30))


def test_a_one_word_frame_of_its_own_is_a_frame() -> None:
    scene = framed("op", 40, lambda k: _ONE_WORDS[k // 2]), people("p", 300), students("st", 30)
    det, action, reasons = decide(*scene)
    ops = [f"op{k}" for k in range(40)]
    assert all(action[a] == "throttle" for a in ops), {a: action[a] for a in ops}
    assert f"asking mostly {STRATA[0]} tasks" in " ".join(reasons["op3"])
    assert not any(action[f"p{k}"] in ("throttle", "block") for k in range(300))
    assert not any(action[f"st{k}"] in ("throttle", "block") for k in range(30))
    # The template keys alone (no first or last word counts) do not see the frame.
    assert det.state.template_max[det.state.index["op3"]] < 0.9 * 6
    _, alone, _ = decide(*scene, cfg=cfg_with(edge_max_share=0.0))
    assert not any(alone[a] in ("throttle", "block") for a in ops)


def test_a_first_word_many_people_open_with_is_not_a_frame() -> None:
    # The same accounts, each opening with a word that one in ten people's prompts opens with.
    scene = framed("op", 40, lambda k: "Explain"), people("p", 300)
    _, action, _ = decide(*scene)
    assert not any(action[f"op{k}"] in ("throttle", "block") for k in range(40))
    # Counted as a frame however common, it would make them a cohort.
    _, any_word, _ = decide(*scene, cfg=cfg_with(edge_max_share=1.0))
    assert all(any_word[f"op{k}"] == "throttle" for k in range(40))


def test_an_edge_word_is_rare_up_to_its_share_of_requests() -> None:
    assert rare_edges(np.array([0, 20, 21]), 1000, 0.02).tolist() == [True, True, False]


def test_accounts_sending_the_same_public_items_are_no_cohort() -> None:
    # The same fingerprint, but every account sends the same items (a public benchmark run):
    # what independent researchers do, and what an operator splitting a pool does not.
    det, action, _ = decide(scripted("r", 40, each=12, shared=True), people("p", 300))
    assert not any(action[f"r{k}"] in ("throttle", "block") for k in range(40))
    found = det.assess().evidence["cohort"]
    assert (found["cell"] < 0).all()


def test_public_items_leave_the_fingerprint_of_their_accounts_only() -> None:
    # Researchers on the public items beside an operator's disjoint slices: the operator's
    # accounts stay a cohort, the researchers are not in it.
    _, action, reasons = decide(scripted("op", 40, each=12), scripted("r", 10, each=12, shared=True),
                                people("p", 300))
    assert all(action[f"op{k}"] == "throttle" for k in range(40))
    assert not any(action[f"r{k}"] in ("throttle", "block") for k in range(10))
    assert "items of its own" in " ".join(reasons["op0"])


def test_a_lone_scripter_with_tasks_of_his_own_is_not_a_member() -> None:
    # Fingerprinted and in the cohort's stratum, but his tasks come from elsewhere.
    own = ["Calculate the probability that a fair die rolled {i} times shows a six exactly {j} "
           "times, and how much it changes when the die is loaded.",
           "Solve the equation {i} x squared minus {j} x plus 7 equals 0 for x, and state how many "
           "real solutions the equation has.",
           "How much interest does a deposit of {i} euros earn at {j} percent per year compounded "
           "monthly over a decade?"]
    rows = events("lone", 12, start=T0, every=timedelta(minutes=47), ua=BROWSER,
                  prompt=[pool_task(i, own) + "\n\n" + _frame(999) for i in range(12)],
                  ip="100.64.0.1")
    scene = (rows, [account("lone", created=T0 - timedelta(days=60))])
    det, action, reasons = decide(scripted("op", 40), scene, people("p", 300))
    assert all(action[f"op{k}"] == "throttle" for k in range(40))
    assert action["lone"] not in ("throttle", "block"), reasons["lone"]
    # He shows the fingerprint in the cohort's stratum: only the pool test keeps him out.
    last = next(m for m in det.core.modules if m.name == "cohort").last  # type: ignore[attr-defined]
    lone = det.state.index["lone"]
    assert last.fingerprint[lone] and last.stratum[lone] == last.stratum[det.state.index["op0"]]
    assert last.pool[lone] < det.config.evidence.cohort.min_pool_similarity


def test_students_on_the_same_homework_are_no_cohort() -> None:
    det, action, _ = decide(people("p", 300), students("st", 60))
    assert not any(action[f"st{k}"] in ("throttle", "block") for k in range(60))
    table = det.assess().evidence["cohort"]
    assert (table["cell"] < 0).all()


def test_a_few_scripted_accounts_are_no_cohort() -> None:
    _, action, _ = decide(scripted("op", 8), people("p", 300))
    assert not any(action[f"op{k}"] in ("throttle", "block") for k in range(8))


def test_cohort_turned_off_finds_nothing() -> None:
    _, action, _ = decide(scripted("op", 40), people("p", 300), cfg=cfg_with(enabled=False))
    assert not any(action[f"op{k}"] in ("throttle", "block") for k in range(40))


def test_a_reason_never_quotes_p_as_zero() -> None:
    from distillguard.detect._evidence import cohort_reason
    from distillguard.detect._evidence._base import EvidenceTable

    t = EvidenceTable("cohort", {"stratum": np.array([0]), "accounts": np.array([213]),
                                 "tested": np.array([848]), "null_rate": np.array([3e-4]),
                                 "p_value": np.array([0.0]), "item_overlap": np.array([0.02]),
                                 "pool_similarity": np.array([0.8]),
                                 "frame_prior": np.array([0.0]), "early": np.array([False])})
    text, entry = cohort_reason(t, 0)
    assert "p < 1e-300" in text and "213 of the 848" in text
    assert entry["p_value"] == 0.0


def test_members_taken_from_a_campaign_leave_it_its_size_or_end_it() -> None:
    # A cohort takes its members from campaigns that only monitor (`_evidence._cohort`): the
    # campaign they leave keeps the accounts left, and one with none left is gone.
    from distillguard.detect._core import _Campaigns
    from distillguard.detect._evidence._base import EvidenceTable

    camp = _Campaigns.empty(6)
    camp.component[:4], camp.score[:4], camp.block_score[:4] = 0, 0.4, 0.9
    camp.size[0], camp.kinds[0] = 4, ["head0"]
    cell = np.array([0, 0, -1, -1, 0, -1])
    camp.add_small(EvidenceTable("cohort", {"cell": cell, "score": np.full(6, 0.55)}),
                   ([["cohort"]], np.array([3])), 1)
    assert camp.component.tolist() == [1, 1, 0, 0, 1, -1]
    assert camp.size == {0: 2, 1: 3} and camp.block_score[[0, 1, 4]].tolist() == [0, 0, 0]
    rest = np.array([-1, -1, 0, 0, -1, -1])
    camp.add_small(EvidenceTable("cohort", {"cell": rest, "score": np.full(6, 0.55)}),
                   ([["cohort"]], np.array([2])), 2)
    assert camp.size == {1: 3, 2: 2} and 0 not in camp.kinds


def _topics(directions: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One topic-sum row per direction, with a little noise (`_items` topic sums)."""
    bits = len(directions[0])
    return np.array([10 * d + rng.normal(0, 1, bits) for d in directions])


def test_an_account_outside_its_strata_pool_joins_the_cohort_whose_pool_it_draws_from() -> None:
    from distillguard.detect._cohort import ItemShape, nearest_pools
    from distillguard.detect._items import TOPIC_BITS

    rng = np.random.default_rng(3)
    maths, code, own, people = (rng.normal(0, 1, TOPIC_BITS) for _ in range(4))
    # Cohort 0 (maths stratum) draws from `maths`, cohort 1 from `code`; account 10 is in the
    # maths stratum with code tasks, account 11 a lone scripter with tasks of his own; the
    # rest are people (the population the directions are centred on).
    dirs = [maths] * 5 + [code] * 5 + [code, own] + [people + rng.normal(0, 1, TOPIC_BITS)
                                                      for _ in range(30)]
    topic = _topics(dirs, rng)
    m = len(topic)
    items = ItemShape(items=np.ones(m, np.int64), topic=topic, shared=np.zeros((0, 3), np.int64),
                      shared_rows=np.zeros(m, np.int64))
    cohort = np.array([0] * 5 + [1] * 5 + [0, 0] + [-1] * 30)
    in_pool = np.array([True] * 10 + [False, False] + [False] * 30)
    cfg = load_config().evidence.cohort
    out, pool = nearest_pools(items, np.ones(m, bool), cohort, in_pool, np.zeros(m), cfg,
                              np.zeros(m))
    assert out[:10].tolist() == cohort[:10].tolist()
    assert out[10] == 1 and pool[10] >= cfg.min_pool_similarity
    assert out[11] == -1 and (out[12:] == -1).all()


def _after(first: tuple[Scene, ...], later: tuple[Scene, ...], cfg: DetectConfig,
           ) -> tuple[Any, dict[str, str], dict[str, list[str]]]:
    """The detector fed `first`, looked at, then fed `later` (newer events) and looked at
    again: the second look has the first's cohorts as its `last`."""
    import json

    from distillguard.detect import OnlineDetector
    from distillguard.detect._communities import refine_campaigns
    from distillguard.detect._output import verdict_table

    from .builders import account_table, event_table

    det = OnlineDetector(cfg, accounts=account_table([a for p in first + later for a in p[1]]))
    det.update(event_table([r for p in first for r in p[0]]))
    det.assess()
    det.update(event_table([r for p in later for r in p[0]]))
    a = refine_campaigns(det.assess(), cfg.links.min_accounts)
    v = verdict_table(det.state, a, cfg, None).to_pylist()
    return det, {r["account_id"]: r["action"] for r in v}, {
        r["account_id"]: json.loads(r["reasons"]) for r in v}


def newcomer(aid: str, word: str, n: int = 2) -> Scene:
    """An account that shows up two days later and sends `n` word problems after `word`."""
    rows = events(aid, n, start=T0 + timedelta(days=2), every=timedelta(minutes=4), ua=BROWSER,
                  prompt=[f"{word}: {WORD_PROBLEMS[(i + 2) % len(WORD_PROBLEMS)]}" for i in range(n)],
                  ip="100.64.9.9")
    return rows, [account(aid, created=T0 - timedelta(days=40))]


def _openers(prefix: str, n: int, word: str) -> Scene:
    """People whose everyday questions, in conversations, open with `word`."""
    rows: list[dict[str, object]] = []
    for k in range(n):
        rows += events(f"{prefix}{k}", 5, start=T0 + timedelta(minutes=7 * k), ua=BROWSER, turns=3,
                       every=timedelta(minutes=40), prompt=[f"{word}: {h}" for h in HUMAN_PROMPTS],
                       ip=f"198.19.0.{k + 1}")
    return rows, [account(f"{prefix}{k}") for k in range(n)]


# A frame word is rare up to 5% of the requests here (a small log: 2% is a few dozen).
_FRAMES_CFG = {"edge_max_share": 0.05}


def test_a_newcomer_on_a_cohorts_own_frame_is_a_member_from_its_second_request() -> None:
    # Eight accounts of the operator's script share each one-word frame; nobody else uses it.
    ops = framed("op", 40, lambda k: _ONE_WORDS[k // 8])
    det, action, reasons = _after((ops, people("p", 300)),
                                  (newcomer("new", _ONE_WORDS[0]), newcomer("own", "Homework")),
                                  cfg_with(**_FRAMES_CFG))
    assert all(action[f"op{k}"] == "throttle" for k in range(40))
    assert action["new"] == "throttle", reasons["new"]
    why = " ".join(reasons["new"])
    assert "new member" in why and "prompt frame of the cohort's own (89%" in why
    table = det.assess().evidence["cohort"]
    assert table["early"][det.state.index["new"]]
    # (8 of 9: from early_min_events requests on, it counts itself, a newcomer not yet a member)
    assert table["frame_prior"][det.state.index["new"]] == pytest.approx(8 / 9)
    # Two requests on a frame of its own are what a person may send: the test waits for more.
    assert action["own"] not in ("throttle", "block"), reasons["own"]
    assert not any(action[f"p{k}"] in ("throttle", "block") for k in range(300))


def test_a_frame_people_use_too_is_no_prior() -> None:
    # The same, but three people open their own questions with the first frame's word: it is
    # the most used first word of 8 members and 3 (+1) others, under frame_min_share.
    ops = framed("op", 40, lambda k: _ONE_WORDS[k // 8])
    _, action, reasons = _after((ops, people("p", 300), _openers("o", 3, _ONE_WORDS[0])),
                                (newcomer("new", _ONE_WORDS[0]),), cfg_with(**_FRAMES_CFG))
    assert all(action[f"op{k}"] == "throttle" for k in range(40))
    assert action["new"] not in ("throttle", "block"), reasons["new"]
    assert not any(action[f"o{k}"] in ("throttle", "block") for k in range(3))


def test_a_frame_is_weighed_by_who_else_uses_it() -> None:
    from distillguard.detect._cohort import EdgeShape, cohort_frames, frame_prior

    cfg = load_config().evidence.cohort
    # Keys 11 (6 members, 1 other), 12 (6 members, 4 others), 13 (3 members), 14 (members of
    # two cohorts, 2 and 4): 11 and 14 are frames, 14 the second cohort's.
    keys = [11] * 7 + [12] * 10 + [13] * 3 + [14] * 6
    stratum = [0] * 6 + [-1] + [0] * 6 + [-1] * 4 + [1] * 3 + [0] * 2 + [1] * 4
    m = len(keys)
    key = np.column_stack([np.array(keys), np.full(m, -1)])
    edges = EdgeShape(top=np.column_stack([np.full(m, 4), np.zeros(m, np.int64)]), key=key,
                      rare=key >= 0)
    judged = np.ones(m, bool)
    frames = cohort_frames(edges, np.array(stratum), judged, cfg)
    assert frames.key.tolist() == [11, 14] and frames.stratum.tolist() == [0, 1]
    assert frames.members.tolist() == [6, 6] and frames.share[0] == pytest.approx(6 / 7)
    # Accounts too new to be judged count for neither side: key 12's four others are newcomers.
    judged[13:17] = False
    assert cohort_frames(edges, np.array(stratum), judged, cfg).key.tolist() == [11, 12, 14]
    # An account is on the frame when at least min_frame_share of its requests are.
    events_ = np.array([4.0] * m)
    events_[6] = 10.0  # the other account on key 11: 4 of 10 requests on it
    own, share = frame_prior(edges, events_, frames, cfg.min_frame_share)
    assert own[:6].tolist() == [0] * 6 and own[6] == -1 and (own[7:20] == -1).all()
    assert (own[20:] == 1).all()
    assert share[0] == pytest.approx(6 / 7) and share[6] == 0.0
