"""Marked generations are detected and attributed; unmarked ones are not."""

from __future__ import annotations

from typing import Any

import pytest

from distillguard.localmodel import generate, generate_ids
from distillguard.watermark import WatermarkConfig, WatermarkDetector, detect_ids

from .keys import fixed_key

CANDIDATES = [f"acct-{i:06d}" for i in range(100_000)]


def _marked(teacher: tuple[Any, Any], prompts: list[str], key: Any, account: str, tokens: int,
            seed: int) -> list[list[int]]:
    """Token ids the teacher generates for `prompts` under `key`'s layer for `account`."""
    model, tok = teacher
    return generate_ids(
        model, tok, prompts, max_new_tokens=tokens, min_new_tokens=tokens,
        logits_processors=[key.logits_processor(account)], seed=seed,
    )


def test_kgw_detects_and_attributes_among_100k_accounts(
    teacher: tuple[Any, Any], prompts: list[str], plain_ids: list[list[int]]
) -> None:
    key = fixed_key(2)
    marked = _marked(teacher, prompts[:20], key, "acct-004242", 200, seed=0)
    det = detect_ids(key, marked, candidates=CANDIDATES)
    assert det.enough and det.p_value < 1e-20
    assert all(p > 1e-4 for p in det.controls)
    assert [a.account_id for a in det.accounts if a.attributed] == ["acct-004242"]
    null = detect_ids(key, plain_ids, candidates=CANDIDATES)
    assert null.p_value > 1e-3 and null.accounts == []
    # another provider's key sees nothing in our marked text
    assert detect_ids(fixed_key(3), marked).p_value > 1e-3


@pytest.mark.parametrize(
    "config",
    [WatermarkConfig(scheme="gumbel"), WatermarkConfig(context_width=2, self_hash=True)],
    ids=["gumbel", "kgw-selfhash-h2"],
)
def test_other_schemes_detect(
    config: WatermarkConfig, teacher: tuple[Any, Any], prompts: list[str], plain_ids: list[list[int]]
) -> None:
    key = fixed_key(5, config)
    marked = _marked(teacher, prompts[:8], key, "b", 100, seed=1)
    det = detect_ids(key, marked)
    assert det.p_value < 1e-10 and all(p > 1e-4 for p in det.controls)
    assert detect_ids(key, plain_ids).p_value > 1e-3


def test_text_round_trip_and_rotation(teacher: tuple[Any, Any], prompts: list[str]) -> None:
    model, tok = teacher
    old = fixed_key(4)
    texts = generate(
        model, tok, prompts[:8], max_new_tokens=100, min_new_tokens=100,
        logits_processors=[old.logits_processor("a")], seed=3,
    )
    rotated = old.rotate()
    det = WatermarkDetector(rotated, tok).detect_texts(texts, prompts=prompts[:8])
    assert det.key_version == 1 and det.versions_tried == 2 and det.p_value < 1e-10


def test_the_served_accounts_layer_adds_its_evidence(
    teacher: tuple[Any, Any], prompts: list[str], plain_ids: list[list[int]]
) -> None:
    from distillguard.watermark import collect_tuples, detect_tuples

    key = fixed_key(2)
    marked = _marked(teacher, prompts[:4], key, "acct-004242", 40, seed=2)
    alone = detect_tuples(key, lambda h: collect_tuples(marked, h))
    both = detect_tuples(key, lambda h: collect_tuples(marked, h), served_account="acct-004242")
    other = detect_tuples(key, lambda h: collect_tuples(marked, h), served_account="acct-000001")
    assert both.expected == 2 * alone.expected and both.scored_tuples == alone.scored_tuples
    assert both.log10_p < alone.log10_p and both.log10_p < other.log10_p
    assert all(p > 1e-4 for p in both.controls)
    null = detect_tuples(key, lambda h: collect_tuples(plain_ids, h), served_account="acct-004242")
    assert null.p_value > 1e-3
