"""The `mmd` baseline on a hand-built log: a task-pool account crosses, a chatting one does not."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from distillguard._data import corpora_root
from distillguard.detect import detector_names, scan
from distillguard.detect._config import MMDConfig
from distillguard.detect._content import read_corpora
from distillguard.detect._mmd import build_reference
from distillguard.traffic import write_table

from .builders import event_table, events


def _corpus(kind: int) -> list[str]:
    texts, labels = read_corpora()
    return [t for t, y in zip(texts, labels, strict=True) if y == kind]


def _pool(name: str) -> list[str]:
    with gzip.open(corpora_root() / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


def test_benign_windows_pass_at_about_the_calibrated_rate() -> None:
    cfg = MMDConfig(null_windows=500)
    benign = _corpus(0)
    ref = build_reference(cfg, benign)
    # Fresh benign windows (the whole benign set, reference half included) rarely cross.
    rng = np.random.default_rng(5)
    phi = ref.embed([benign[i] for i in rng.integers(0, len(benign), 4000)]).astype(float)
    stat = ((phi.reshape(200, 20, -1).mean(axis=1) - ref.mean) ** 2).sum(axis=1)
    assert (stat > ref.threshold[20]).mean() <= 0.03
    # Windows from one task pool (maths word problems) cross.
    pool = _pool("gsm8k")
    phi = ref.embed([pool[i] for i in rng.integers(0, len(pool), 4000)]).astype(float)
    stat = ((phi.reshape(200, 20, -1).mean(axis=1) - ref.mean) ** 2).sum(axis=1)
    assert (stat > ref.threshold[20]).mean() >= 0.7  # 0.8 measured


def test_scan_flags_the_task_pool_account_only(tmp_path: Path) -> None:
    assert "mmd" in detector_names()
    benign = _corpus(0)
    pool = _pool("gsm8k")
    # Someone chatting: prompts drawn from the benign sets at random (a seeded draw).
    chat = np.random.default_rng(3).choice(len(benign), 40, replace=False)
    rows = (events("acct-pool", 40, prompt=[t.replace("{", "(").replace("}", ")")
                                             for t in pool[100:140]])
            + events("acct-chat", 40, prompt=[benign[i].replace("{", "(").replace("}", ")")
                                             for i in chat]))
    log = tmp_path / "log"
    write_table(log, "events", event_table(rows))
    result = scan(log, tmp_path / "out", detector="mmd")
    v = {r["account_id"]: r for r in result.verdicts.to_pylist()}
    assert v["acct-pool"]["action"] == "throttle"
    assert v["acct-pool"]["score"] > 0.5
    assert "benign threshold" in json.loads(v["acct-pool"]["reasons"])[0]
    assert v["acct-pool"]["first_flagged_ts"] is not None
    assert v["acct-chat"]["action"] == "allow"
    assert v["acct-chat"]["first_flagged_ts"] is None
    assert "mmd_windows" in result.tables


def test_windows_longer_than_allowed_are_refused() -> None:
    with pytest.raises(ValueError, match="min_requests"):
        MMDConfig(window_requests=4, min_requests=5)
