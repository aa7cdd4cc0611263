"""Signals streamed from the log while the replay runs: the same chunks and the same verdicts
as computing them all first, whatever the order of the log's rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from distillguard._errors import LogFormatError
from distillguard.detect import scan
from distillguard.detect._config import load_config
from distillguard.detect._replay import replay
from distillguard.detect._stream import compute_signals, log_chunks, memory_chunks
from distillguard.traffic import write_table

from . import scenes
from .builders import account_table, event_table

STEP = 15 * 60_000_000


def _log(path: Path, shuffle: bool) -> Path:
    parts = [scenes.hydra(n_accounts=10, n_events=150), scenes.classroom(12), scenes.enterprise(),
             scenes.hydra(n_accounts=6, n_events=60, start_hours=24, prefix="late")]
    rows = [r for p in parts for r in p[0]]
    if shuffle:
        random.Random(5).shuffle(rows)
    write_table(path, "events", event_table(rows))
    write_table(path, "accounts", account_table([a for p in parts for a in p[1]]))
    return path


@pytest.mark.parametrize("shuffle", [False, True])
def test_streamed_chunks_are_the_sorted_signals_cut_at_whole_windows(
    tmp_path: Path, shuffle: bool
) -> None:
    log = _log(tmp_path / "log", shuffle)
    every = compute_signals(log)
    src = log_chunks(log, STEP, chunk_events=300, batch_size=97)
    assert src is not None
    chunks = list(src.chunks)
    assert len(chunks) >= 4
    assert pl.concat(chunks).equals(every)
    windows = [(c["ts_us"].to_numpy() - src.origin) // STEP for c in chunks]
    for before, after in zip(windows[:-1], windows[1:], strict=True):
        assert before.max() < after.min()  # no window is split between two chunks
    mem = memory_chunks(every, STEP, chunk_events=300)
    assert mem.origin == src.origin
    assert [c.height for c in mem.chunks] == [c.height for c in chunks]


def test_the_reader_stays_about_a_chunk_ahead_of_the_chunks_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signals are reduced while the replay works, but never piled up for the whole log."""
    import time

    from distillguard.detect import _stream
    from distillguard.detect._signatures import event_signals
    from distillguard.detect._text_cache import TextCache

    parts = [scenes.hydra(n_accounts=10, n_events=150), scenes.classroom(12)]
    rows = sorted((r for p in parts for r in p[0]), key=lambda r: str(r["ts"]))
    write_table(tmp_path / "log", "events", event_table(rows))
    read: list[int] = []

    def counted(frame: pl.DataFrame, prompts: TextCache | None = None) -> pl.DataFrame:
        read.append(frame.height)
        return event_signals(frame, prompts)

    monkeypatch.setattr(_stream, "event_signals", counted)
    src = log_chunks(tmp_path / "log", STEP, chunk_events=40, batch_size=20)
    assert src is not None
    first = next(src.chunks)
    time.sleep(1.0)  # room for a reader that is not held back to run on to the end
    held = len(read)
    rest = list(src.chunks)
    # The batches the first chunk took (one more for the row after it), two queued
    # (`ahead` for 40-event chunks of 20-event batches) and one in the reader's hands.
    bound = -(-first.height // 20) + 1 + 2 + 1
    assert len(read) > bound + 2  # the log is long enough for an unbounded reader to show
    assert held <= bound
    assert pl.concat([first, *rest]).equals(compute_signals(tmp_path / "log"))


def test_replay_from_the_log_decides_as_the_replay_of_precomputed_signals(tmp_path: Path) -> None:
    log = _log(tmp_path / "log", shuffle=True)
    cfg = load_config(None)
    streamed, flag_s = replay(log, cfg, None, chunk_events=250)
    stored, flag_m = replay(log, cfg, compute_signals(log), chunk_events=250)
    assert (flag_s >= 0).sum() >= 16  # both hydra waves are flagged
    assert np.array_equal(flag_s, flag_m)
    assert streamed.state.ids == stored.state.ids
    assert np.array_equal(streamed.assess().action, stored.assess().action)


def test_a_bad_row_late_in_the_log_fails_the_scan_naming_file_row_and_column(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log"
    log.mkdir()
    rows = [{"event_id": f"e{i}", "ts": f"2026-03-01T{i // 600:02d}:{i // 10 % 60:02d}:00Z",
             "account_id": f"a{i % 7}", "model": "m", "prompt": f"prompt {i}", "turns": 1}
            for i in range(3000)]
    rows[2500]["turns"] = "many"
    (log / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(LogFormatError) as info:
        scan(log, tmp_path / "out")
    assert (info.value.row, info.value.column) == (2501, "turns")
    assert info.value.file is not None and info.value.file.endswith("events.jsonl")
