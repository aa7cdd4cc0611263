"""Tracing text marked by the lexical layer alone (the gateway in front of a third-party upstream):
the harvesting account is named at the issue's strictness, a control dataset names nobody."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from distillguard.localmodel import read_corpus_texts
from distillguard.trace import trace_texts
from distillguard.watermark import KeyVersion, WatermarkConfig, WatermarkKey

CANDIDATES = [f"acct-{i:06d}" for i in range(5000)]
# the target: attribution among 1 M accounts at p <= 1e-3; Bonferroni is linear in the
# number of candidates, so among len(CANDIDATES) that is an alpha scaled down by the same factor
ALPHA = 1e-3 * len(CANDIDATES) / 1_000_000
WORDS = 10_000


def _streamed(key: WatermarkKey, account: str, texts: list[str], seed: int) -> list[str]:
    """Each text marked as the gateway streams it: fed in random pieces."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        stream, parts, at = key.text_watermarker(account).stream(), [], 0
        while at < len(text):
            step = rng.randint(1, 40)
            parts.append(stream.feed(text[at : at + step]))
            at += step
        out.append("".join(parts) + stream.finish())
    return out


def _english_samples(corpora_dir: Path, n: int) -> list[list[str]]:
    """`n` disjoint samples of at least WORDS words of English corpus text (one per opening)."""
    texts = read_corpus_texts(["arena_hard", "sharegpt_1k", "wildchat_1k"], 300, root=corpora_dir)
    seen: set[str] = set()
    samples: list[list[str]] = [[]]
    for t in texts:
        if len(t.split()) < 150 or sum(c.isascii() for c in t) <= 0.97 * len(t) or t[:80] in seen:
            continue
        seen.add(t[:80])
        if sum(len(x.split()) for x in samples[-1]) >= WORDS:
            if len(samples) == n:
                break
            samples.append([])
        samples[-1].append(t)
    assert len(samples) == n and sum(len(x.split()) for x in samples[-1]) >= WORDS
    return samples


def test_lexical_only_trace_names_the_harvester_and_not_a_control(corpora_dir: Path) -> None:
    secret = hashlib.sha256(b"distillguard-test-lexical-trace").digest()
    key = WatermarkKey((KeyVersion(1, secret, WatermarkConfig()),), 1)
    harvested, control = _english_samples(corpora_dir, 2)
    marked = _streamed(key, "acct-000042", harvested, seed=1)
    report = trace_texts(key, marked, candidates=[*CANDIDATES, "acct-000042"], alpha=ALPHA)
    assert report.p_value <= 1e-6, report.lines()
    named = {a["account_id"] for a in report.accounts() if a["attributed"]}
    assert named == {"acct-000042"}, report.lines()
    # the control: other answers, never served through the key, name nobody
    plain = trace_texts(key, control, candidates=[*CANDIDATES, "acct-000042"], alpha=ALPHA)
    assert plain.p_value > 1e-3 and not any(a["attributed"] for a in plain.accounts()), plain.lines()
