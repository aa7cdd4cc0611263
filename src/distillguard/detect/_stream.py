"""Signals handed to the replay in time order, chunk by chunk, from memory or from a log.

The replay folds whole cadence windows in, about `chunk_events` events at a time. From a log,
the text work (`event_signals`) runs in a background thread while the replay works on the
chunks already complete: polars, pyarrow and numpy release the GIL, so on two cores reading
the texts overlaps with the replay instead of preceding it. A chunk is complete when no row
still to be read is older than its end; the log's timestamps, read first (one narrow column),
say when that is, so a log in any row order gives the same chunks (a time-ordered log, the
usual case, simply starts sooner).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from distillguard.detect._signatures import event_signals
from distillguard.detect._text_cache import TextCache

if TYPE_CHECKING:
    from distillguard.traffic import TrafficLog

SIGNAL_COLUMNS = [
    "event_id", "ts", "account_id", "ip", "user_agent", "model", "system", "prompt", "turns",
    "tools", "completion_tokens", "max_tokens",
]

Progress = Callable[[str, float], None]

# Events reduced to signals at a time. The text work's memory grows with the batch (its
# intermediate strings and lists are about 6 KB an event), and smaller batches cost no more
# CPU: 50,000 events hold it near 0.3 GB where 200,000 took 1.2 GB.
SIGNAL_BATCH = 50_000
# The first chunks are smaller: the replay starts once the first chunk's signals are read, so
# a full first chunk would keep it waiting on the reader (the reader keeps ahead after that).
# They double from `chunk_events >> RAMP_CHUNKS` (500,000 events: 31,250, 62,500, ...); a
# chunk's size changes no decision (whole windows either way), only when work can start.
RAMP_CHUNKS = 4


@dataclass
class Chunks:
    """Where the replay's windows start (`origin`, us) and the chunks, each sorted by
    (ts_us, event_id) and made of whole windows, in time order."""

    origin: int
    chunks: Iterator[pl.DataFrame]


def chunk_ends(n_events: int, chunk_events: int) -> np.ndarray:
    """Where the chunks would end in events, were windows no constraint: the first
    `RAMP_CHUNKS` double from `chunk_events >> RAMP_CHUNKS`, then `chunk_events` each."""
    ramp = np.cumsum([max(1, chunk_events >> k) for k in range(RAMP_CHUNKS, 0, -1)])
    start = int(ramp[-1]) if len(ramp) else 0
    ends = np.r_[ramp, np.arange(start + chunk_events, n_events, chunk_events)]
    out: np.ndarray = ends[ends < n_events].astype(np.int64)
    return out


def window_cuts(ts_sorted: np.ndarray, step: int, origin: int, chunk_events: int) -> np.ndarray:
    """End times (us) of the chunks: whole windows, about `chunk_events` events each (the
    first few smaller, see `RAMP_CHUNKS`)."""
    windows = (ts_sorted - origin) // step
    at = chunk_ends(len(windows), chunk_events)
    cuts = np.unique(np.searchsorted(windows, windows[at]))
    ends = [int(windows[c]) for c in cuts if 0 < c < len(windows)] + [int(windows[-1]) + 1]
    return origin + np.asarray(ends, np.int64) * step


def memory_chunks(signals: pl.DataFrame, step: int, chunk_events: int) -> Chunks:
    """Chunks of signals already computed and sorted by time (`compute_signals`)."""
    ts = signals["ts_us"].to_numpy()
    origin = (int(ts[0]) // step) * step
    ends = window_cuts(ts, step, origin, chunk_events)
    bounds = np.r_[0, np.searchsorted(ts, ends)]

    def chunks() -> Iterator[pl.DataFrame]:
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            yield signals.slice(lo, hi - lo)

    return Chunks(origin, chunks())


def compute_signals(log_dir: Path, progress: Progress | None = None,
                    batch_size: int = SIGNAL_BATCH) -> pl.DataFrame:
    """Per-event signals for the whole log, sorted by time (texts are dropped batch by batch)."""
    from distillguard.traffic import TrafficLog

    log = TrafficLog(log_dir)
    parts: list[pl.DataFrame] = []
    done = 0
    prompts = TextCache()
    for batch in log.batches("events", columns=SIGNAL_COLUMNS, batch_size=batch_size):
        parts.append(event_signals(_frame(batch), prompts))
        done += batch.num_rows
        if progress:
            progress("signals", done)
    if not parts:
        return event_signals(pl.from_arrow(log.read("events").slice(0, 0)))  # type: ignore[arg-type]
    return pl.concat(parts).sort("ts_us", "event_id")


def log_chunks(log_dir: Path, step: int, chunk_events: int,
               progress: Progress | None = None, batch_size: int = SIGNAL_BATCH,
               end_users: bool = False) -> Chunks | None:
    """Chunks of a log's signals, computed in a background thread as the replay goes; with
    `end_users`, each also carries its events' `end_user` column (for `SubPrincipals`).

    Returns None for a log without events. Errors in the log (a bad cell, an unreadable file)
    are raised by the iterator when the thread meets them, after the chunks before them.
    """
    from distillguard.traffic import TrafficLog

    log = TrafficLog(log_dir)
    stamps = [
        _frame(b).select(pl.col("ts").dt.epoch("us"))["ts"].to_numpy()
        for b in log.batches("events", columns=["ts"], batch_size=1_000_000)
    ]
    ts = np.concatenate(stamps) if stamps else np.zeros(0, np.int64)
    if not len(ts):
        return None
    ordered = np.sort(ts)
    origin = (int(ordered[0]) // step) * step
    ends = window_cuts(ordered, step, origin, chunk_events)
    # Oldest row not read yet, after the first `i` rows (non-decreasing); a chunk is complete
    # once the rows read reach the first `i` where that is no older than its end.
    unread_min = np.r_[np.minimum.accumulate(ts[::-1])[::-1], np.iinfo(np.int64).max]
    needed = np.searchsorted(unread_min, ends, side="left")
    del ordered, stamps, unread_min
    # The reader runs at most about a chunk ahead of the chunks taken: the texts are reduced
    # faster than the replay folds them in, and unread signals would pile up in memory.
    ahead = max(2, -(-chunk_events // batch_size))
    return Chunks(origin, _stream(log, ends, needed, progress, batch_size, end_users, ahead))


def _stream(log: TrafficLog, ends: np.ndarray, needed: np.ndarray,
            progress: Progress | None, batch_size: int, end_users: bool,
            ahead: int) -> Iterator[pl.DataFrame]:
    ready: queue.Queue[pl.DataFrame | BaseException | None] = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    columns = [*SIGNAL_COLUMNS, "end_user"] if end_users else SIGNAL_COLUMNS

    def put(item: pl.DataFrame | BaseException | None) -> bool:
        """Queue `item` once there is room; False if the consumer has stopped meanwhile."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        prompts = TextCache()  # a prompt seen in an earlier batch is not read again
        try:
            for batch in log.batches("events", columns=columns, batch_size=batch_size):
                if stop.is_set():
                    return
                frame = _frame(batch)
                if end_users:
                    sig = (event_signals(frame.drop("end_user"), prompts)
                           .with_columns(frame["end_user"]))
                else:
                    sig = event_signals(frame, prompts)
                del frame, batch
                if not put(sig):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="distillguard-signals", daemon=True)
    thread.start()
    pending: list[pl.DataFrame] = []
    done = 0
    try:
        for end, need in zip(ends.tolist(), needed.tolist(), strict=True):
            while done < need:
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:  # the log shrank while being read
                    break
                pending.append(item)
                done += item.height
                if progress:
                    progress("signals", done)
            pool = pl.concat(pending) if len(pending) > 1 else pending[0]
            early = pool["ts_us"] < end
            pending = [pool.filter(~early)]
            yield pool.filter(early).sort("ts_us", "event_id")
    finally:
        stop.set()


def _frame(batch: pa.RecordBatch) -> pl.DataFrame:
    frame = pl.from_arrow(pa.Table.from_batches([batch]))
    assert isinstance(frame, pl.DataFrame)
    return frame
