from __future__ import annotations

import random
from pathlib import Path

from distillguard.localmodel import read_corpus_texts
from distillguard.watermark import detect_lexical

from .keys import fixed_key


def test_stream_equals_apply_for_any_split(corpora_dir: Path) -> None:
    key = fixed_key(102)
    wm = key.text_watermarker("acct-1")
    texts = read_corpus_texts(["wildchat_1k"], 150, root=corpora_dir)
    rng = random.Random(0)
    changed = 0
    for text in texts:
        whole = wm.apply(text)
        changed += whole != text
        stream, out, i = wm.stream(), [], 0
        while i < len(text):
            j = i + rng.randint(1, 9)
            out.append(stream.feed(text[i:j]))
            i = j
        out.append(stream.finish())
        assert "".join(out) == whole
    assert changed > 10


def test_code_urls_and_case_are_respected() -> None:
    text = (
        "It is often big. Often\n```\nbig = often()\n```\nsee `often big` "
        "and https://often.example/big or well-known big-data. BIG often"
    )
    keys = [fixed_key(103 + i) for i in range(12)]
    outs = [k.text_watermarker("x").apply(text) for k in keys]
    assert any(o != text for o in outs)
    for out in outs:
        assert "```\nbig = often()\n```" in out
        assert "`often big`" in out and "https://often.example/big" in out
        assert "big-data" in out and "BIG" in out
        words = out.split()
        assert words[2] in ("often", "frequently") and words[4] in ("Often", "Frequently")


def test_dataset_detection_and_controls(corpora_dir: Path) -> None:
    texts = read_corpus_texts(["arena_hard", "wildchat_1k"], 300, root=corpora_dir)
    key = fixed_key(104)
    marked = [key.text_watermarker("acct-9").apply(t) for t in texts]
    det = detect_lexical(key, marked)
    assert det.scored_tuples > 50 and det.p_value < 1e-12
    assert all(p > 1e-4 for p in det.controls)
    assert detect_lexical(key, texts).p_value > 1e-3
    assert detect_lexical(fixed_key(105), marked).p_value > 1e-3
