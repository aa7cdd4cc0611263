"""Per-event signals: each flag fires on the text it names and not on ordinary text."""

from __future__ import annotations

import polars as pl
import pytest

from distillguard.detect._signatures import (
    EDGE_KEYS,
    MATH_PATTERN,
    TEMPLATE_KEYS,
    _ascii,
    event_signals,
)

from .builders import event_table, events


def _signals(prompts: list[str], system: str | None = None) -> pl.DataFrame:
    rows = []
    for k, p in enumerate(prompts):
        rows += events(f"a{k}", 1, prompt=p.replace("{", "{{").replace("}", "}}"), system=system)
    frame = pl.from_arrow(event_table(rows))
    assert isinstance(frame, pl.DataFrame)
    return event_signals(frame)


@pytest.mark.parametrize(
    ("flag", "hit", "miss"),
    [
        ("cot", "Solve this and think step by step.", "What a lovely day it is."),
        ("rubric", "Grade the response below using this rubric: accuracy, clarity.", "Grade A beef?"),
        ("code", "Write a Python function that reverses a list.", "Tell me about whales."),
        ("math", "How many apples are left if I eat 3 of 12?", "Describe a sunset."),
    ],
)
def test_flag_fires_on_its_text_only(flag: str, hit: str, miss: str) -> None:
    sig = _signals([hit, miss])
    assert sig[flag].to_list() == [True, False]


def test_filled_slots_share_a_template_key_and_unrelated_prompts_do_not() -> None:
    template = (
        "You are a meticulous tutor. Read the problem and reason carefully before answering. "
        "Problem: {q} Give the final answer on the last line."
    )
    filled = [
        template.format(q="A train leaves at 3 pm travelling 60 km per hour toward a city."),
        template.format(q="Sara has twelve marbles and gives five of them to her brother today."),
    ]
    unrelated = ["what should i cook tonight with leftover rice", "suggest a name for a cafe"]
    sig = _signals(filled + unrelated)
    keys = sig.select(TEMPLATE_KEYS).rows()
    shared = [a == b for a, b in zip(keys[0], keys[1], strict=True)]
    assert any(shared), "slot-filled prompts must collide on at least one template key"
    assert not any(a == b for a, b in zip(keys[2], keys[3], strict=True))


def test_light_rewording_still_collides() -> None:
    a = "Please answer the following question in detail and explain your reasoning step by step: what is entropy"
    b = "Please answer the following question in detail and explain your reasoning step by step: why do stars shine"
    sig = _signals([a, b])
    keys = sig.select(TEMPLATE_KEYS).rows()
    assert any(x == y for x, y in zip(keys[0], keys[1], strict=True))


def test_edge_keys_are_the_first_and_last_words() -> None:
    sig = _signals(["Task: add 2 and 3.", "task - multiply four by five", "Five by four, task!",
                    "42 ?"])
    lead, end = (sig[k].to_list() for k in EDGE_KEYS)
    assert lead[0] == lead[1] != lead[2] and end[2] == lead[0]
    assert end[0] != end[1] and lead[3] is None and end[3] is None


def test_system_prompt_key_ignores_case_and_spacing() -> None:
    rows = events("x", 1, system="You are  a helpful   tutor.") + events(
        "y", 1, system="you are a helpful tutor."
    ) + events("z", 1, system="You are a pirate.")
    frame = pl.from_arrow(event_table(rows))
    assert isinstance(frame, pl.DataFrame)
    sig = event_signals(frame).sort("account_id")
    x, y, z = sig["sys"].to_list()
    assert x == y and x != z


def test_datagen_fires_on_self_instruct_style_requests() -> None:
    sig = _signals(
        [
            "Come up with a series of tasks: 1. Instruction: write a haiku",
            "I want you act as a Prompt Rewriter. Rewrite the given prompt into a more complex version.",
            "Can you come over for dinner on Friday?",
        ]
    )
    assert sig["datagen"].to_list() == [True, True, False]


def test_text_signals_are_shared_by_equal_texts_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated texts are computed once; texts whose hashes collide still get their own."""
    from distillguard.detect import _signatures

    texts = pl.DataFrame({
        "prompt": ["solve 2 + 2 step by step", "write a python function", None,
                   "solve 2 + 2 step by step", "grade this essay with a rubric"],
        "system": ["You are helpful.", None, "  Be   BRIEF ", "You are helpful.", None],
    })
    flags = _signatures._flag_signals(texts)
    prompt = _signatures._prompt_signals(texts.select("prompt"))
    assert _signatures._per_distinct(texts, _signatures._flag_signals).equals(flags)
    assert _signatures._per_distinct(texts.select("prompt"),
                                     _signatures._prompt_signals).equals(prompt)
    # Every row hashing alike must still give each text its own signals.
    monkeypatch.setattr(_signatures, "_row_hash", lambda columns: pl.lit(7, pl.UInt64))
    assert _signatures._per_distinct(texts, _signatures._flag_signals).equals(flags)
    assert _signatures._per_distinct(texts.select("prompt"),
                                     _signatures._prompt_signals).equals(prompt)
    assert _signatures._per_distinct(texts.select("system"), _signatures._system_hash).equals(
        _signatures._system_hash(texts.select("system"))
    )


@pytest.mark.parametrize(
    "prompt",
    ["What is 7 *\n 8?", "Calculate the total.", "How much is left", "x=1", "version 2 - 3",
     "plain words only", "12\t=\t4", "", "Equations: none"],
)
def test_math_is_the_whole_pattern_searched_at_once(prompt: str) -> None:
    want = pl.Series([prompt.lower() + "\n"]).str.contains(_ascii(MATH_PATTERN)).item()
    assert _signals([prompt])["math"].item() == want
