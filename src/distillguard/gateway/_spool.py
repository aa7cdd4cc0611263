"""A local append-only spool of captured events, so that a crash loses nothing that was answered.

The request path appends its event and waits until the record is in the spool file before the
answer's last byte leaves: written (`sync="write"`, the default: a killed process loses
nothing, the file is synced every `SYNC_INTERVAL_S`) or synced (`sync="always"`: a machine
crash loses nothing either). One writer thread writes the appends in groups: while one write
or `fdatasync` runs, the next appends gather, so a busy gateway pays one per group, not per
request. Capture drains the spool to the database in order from a checkpoint (a small
file rewritten after each batch), and the database skips event_ids it already has, so a batch
drained twice (a crash between insert and checkpoint) is written once. After a restart the
drain resumes at the checkpoint.

Files: `DIR/LOCK` (one gateway per spool: a second one fails to start), segments
`DIR/NNNNNNNNNNNN.spool` of length-prefixed, CRC-checked records (JSON, ASCII), and
`DIR/CHECKPOINT` (segment and offset of the next record to drain). Drained segments are
deleted. The spool is bounded: when its undrained records reach `max_bytes`, or the disk refuses a
write, appends are refused (`SpoolFull`) and the gateway answers 503 until the drain frees room.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from distillguard._errors import ConfigError, DistillguardError

log = logging.getLogger("distillguard.gateway")

_HEAD = struct.Struct("<II")  # payload length, CRC-32 of the payload
#: a new segment is started past this size (drained segments are deleted whole)
SEGMENT_BYTES = 16 << 20
#: bytes read from a segment per drain step
_READ_BYTES = 4 << 20
#: after a write error (a full disk), appends are refused for this long before the next try
_ERROR_PAUSE_S = 1.0


#: `write`: an answer waits until its event is written to the spool file (in the kernel's
#: page cache, which a killed process cannot lose), and the file is synced every
#: SYNC_INTERVAL_S; `always`: an answer waits for the sync itself (also survives a power loss
#: or kernel crash, at one fdatasync of latency per group: about 5 ms on this machine's disk)
SyncMode = Literal["write", "always"]
#: seconds between syncs in `write` mode (what a machine crash can lose)
SYNC_INTERVAL_S = 0.05


class SpoolFull(DistillguardError):
    """The spool cannot take an event now (size bound reached, or the disk refused a write)."""


Position = tuple[int, int]  # (segment number, byte offset)


def _encode(row: tuple[Any, ...]) -> bytes:
    # ASCII JSON escapes lone surrogates and NUL, which a client can put in any text field.
    payload = json.dumps(row, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def _records(data: bytes, limit: int | None = None) -> tuple[list[tuple[Any, ...]], int]:
    """Whole, valid records at the start of `data` (at most `limit`), and the bytes they take."""
    rows: list[tuple[Any, ...]] = []
    at = 0
    while at + _HEAD.size <= len(data) and (limit is None or len(rows) < limit):
        size, crc = _HEAD.unpack_from(data, at)
        end = at + _HEAD.size + size
        if end > len(data):
            break
        payload = data[at + _HEAD.size : end]
        if zlib.crc32(payload) != crc:
            break
        rows.append(tuple(json.loads(payload)))
        at = end
    return rows, at


class Spool:
    """The spool directory of one gateway.

    Args:
        directory: where segments live (created if missing); one gateway per directory.
        max_bytes: bound on the bytes appended and not yet drained; appends are refused beyond it.
        segment_bytes: size at which a new segment starts.
        sync: `write` or `always` (see `SyncMode`).
        sync_interval: seconds between syncs in `write` mode.
    """

    def __init__(self, directory: Path | str, max_bytes: int = 1 << 30, segment_bytes: int = SEGMENT_BYTES,
                 sync: SyncMode = "write", sync_interval: float = SYNC_INTERVAL_S) -> None:
        if sync not in ("write", "always"):
            raise ConfigError(f"Spool sync mode must be write or always, got {sync!r}.")
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.sync = sync
        self.sync_interval = sync_interval
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"Cannot open the capture spool {self.dir}: {exc}; choose another --spool directory.") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise ConfigError(
                f"The capture spool {self.dir} is in use by another gateway; give each replica its own --spool directory."
            ) from exc
        self._drained = self._read_checkpoint()
        self._recover()
        segs = self._segments()
        # Appends always go to a fresh segment after everything on disk and the checkpoint.
        self._seq = max(segs[-1] if segs else 0, self._drained[0]) + 1
        self._fd = self._open_segment(self._seq)
        self._offset = 0
        # the end of what is durable, read by the drain (never past a half-written record)
        self._durable: Position = (self._seq, 0)
        # undrained bytes (what the bound counts): everything after the checkpoint; changed
        # by the event loop (appends) and the drain thread (commits), hence the lock
        self._bytes = self._between(self._drained, (self._seq, 0))
        self._bytes_lock = threading.Lock()
        # `write` mode: the event loop writes and rolls, the syncer thread syncs
        self._io_lock = threading.Lock()
        self._dirty = False
        self._retired: list[int] = []  # finished segments' descriptors, to sync and close
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._cond = threading.Condition()
        self._closing = False
        self._error_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: called (in the event loop) after each group of appends is durable
        self.on_durable: Callable[[], None] | None = None
        self.appended = 0
        self.syncs = 0

    # ------------------------------------------------------------------ files

    @staticmethod
    def _name(seq: int) -> str:
        return f"{seq:012d}.spool"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.spool") if p.stem.isdigit())

    def _open_segment(self, seq: int) -> int:
        fd = os.open(self.dir / self._name(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._sync_dir()
        return fd

    def _sync_dir(self) -> None:
        # A new or deleted file is durable only once its directory is synced.
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _read_checkpoint(self) -> Position:
        try:
            seq, off = (self.dir / "CHECKPOINT").read_text().split()
            return int(seq), int(off)
        except FileNotFoundError:
            return 0, 0
        except (OSError, ValueError) as exc:
            # Draining again from the oldest segment is safe: the store skips known event_ids.
            log.warning("capture spool checkpoint in %s unreadable (%s); draining from the oldest segment", self.dir, exc)
            return 0, 0

    def _recover(self) -> None:
        """Cut a torn record off the end of each segment (a crash mid-append) and drop
        segments the checkpoint has passed."""
        for seq in self._segments():
            path = self.dir / self._name(seq)
            if seq < self._drained[0]:
                path.unlink()
                continue
            data = path.read_bytes()
            _, good = _records(data)
            if good < len(data):
                log.warning("capture spool %s: %d bytes after the last whole record cut off (a crash mid-write)", path, len(data) - good)
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())

    # ------------------------------------------------------------------ appending

    def start(self) -> None:
        """Start the writer thread (call from the event loop that appends)."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            target = self._writer if self.sync == "always" else self._syncer
            self._thread = threading.Thread(target=target, name="distillguard-spool", daemon=True)
            self._thread.start()

    @property
    def refusing(self) -> bool:
        """True while appends would be refused (bound reached or a recent write error)."""
        return self._bytes >= self.max_bytes or time.monotonic() < self._error_until

    @property
    def size(self) -> int:
        """Bytes appended and not yet drained (what `max_bytes` bounds)."""
        return self._bytes

    def append(self, row: tuple[Any, ...]) -> asyncio.Future[None]:
        """Queue one event; the future resolves once it is on disk (or fails with SpoolFull)."""
        if self.refusing:
            raise SpoolFull(
                f"The capture spool {self.dir} is full ({self._bytes} of {self.max_bytes} bytes) or its disk "
                "refused a write; requests are refused until capture drains it."
            )
        assert self._loop is not None, "Spool.start() was not called"
        fut: asyncio.Future[None] = self._loop.create_future()
        rec = _encode(row)
        with self._bytes_lock:
            self._bytes += len(rec)  # counted now, so a burst cannot overrun the bound
        if self.sync == "write":
            # A write of a few hundred bytes to the page cache takes microseconds: done here,
            # with no hop to a thread; the syncer thread makes it durable within the interval.
            self._append_now(rec)
            fut.set_result(None)
            if self.on_durable is not None:
                self.on_durable()
            return fut
        with self._cond:
            self._pending.append((rec, fut))
            self._cond.notify()
        return fut

    def _writer(self) -> None:
        """`always` mode: write and sync each gathered group, then resolve its futures."""
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                group, self._pending = self._pending, []
                if not group and self._closing:
                    return
            data = b"".join(r for r, _ in group)
            error: OSError | None = None
            try:
                self._write_all(data)
                os.fdatasync(self._fd)
                self.syncs += 1
            except OSError as exc:
                error = exc
                self._undo()
            if error is None:
                self._offset += len(data)
                self._durable = (self._seq, self._offset)
                self.appended += len(group)
                if self._offset >= self.segment_bytes:
                    self._roll()
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._resolve, [f for _, f in group], error, len(data))
            except RuntimeError:  # the loop is closed (shutdown): nobody waits any more
                return

    def _append_now(self, rec: bytes) -> None:
        """`write` mode: write one record from the event loop (raises SpoolFull on a disk error)."""
        with self._io_lock:
            try:
                self._write_all(rec)
            except OSError as exc:
                self._undo()
                with self._bytes_lock:
                    self._bytes -= len(rec)
                self._error_until = time.monotonic() + _ERROR_PAUSE_S
                log.error("capture spool %s: write failed (%s); refusing requests for %.0f s", self.dir, exc, _ERROR_PAUSE_S)
                raise SpoolFull(f"The capture spool {self.dir} could not write an event: {exc}.") from exc
            self._offset += len(rec)
            self._durable = (self._seq, self._offset)
            self.appended += 1
            self._dirty = True
            if self._offset >= self.segment_bytes:
                # the finished segment is synced and closed by the syncer, not here
                self._retired.append(self._fd)
                self._seq += 1
                self._fd = self._open_segment(self._seq)
                self._offset = 0
                self._durable = (self._seq, 0)

    def _syncer(self) -> None:
        """`write` mode: sync what was written every `sync_interval` seconds (and at close)."""
        while True:
            with self._cond:
                if not self._closing:
                    self._cond.wait(self.sync_interval)
                closing = self._closing
            with self._io_lock:
                retired, self._retired = self._retired, []
                fd = os.dup(self._fd) if self._dirty else None  # a copy: the loop may roll meanwhile
                self._dirty = False
            for f in [*retired, *([fd] if fd is not None else [])]:
                try:
                    os.fdatasync(f)
                    self.syncs += 1
                except OSError:
                    log.error("capture spool %s: fdatasync failed", self.dir, exc_info=True)
                finally:
                    os.close(f)
            if closing:
                return

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def _undo(self) -> None:
        # A failed write may have left part of the group: cut it, so the segment ends on a record.
        try:
            os.ftruncate(self._fd, self._offset)
        except OSError:
            log.error("capture spool: could not cut a failed write off %s", self._name(self._seq), exc_info=True)

    def _roll(self) -> None:
        os.close(self._fd)  # `always` mode: already synced
        self._seq += 1
        self._fd = self._open_segment(self._seq)
        self._offset = 0
        self._durable = (self._seq, 0)

    def _resolve(self, futs: list[asyncio.Future[None]], error: OSError | None, size: int) -> None:
        if error is not None:
            with self._bytes_lock:
                self._bytes -= size
            self._error_until = time.monotonic() + _ERROR_PAUSE_S
            log.error("capture spool %s: write failed (%s); refusing requests for %.0f s", self.dir, error, _ERROR_PAUSE_S)
        for f in futs:
            if not f.done():
                if error is None:
                    f.set_result(None)
                else:
                    f.set_exception(SpoolFull(f"The capture spool {self.dir} could not write an event: {error}."))
        if error is None and self.on_durable is not None:
            self.on_durable()

    # ------------------------------------------------------------------ draining

    def read(self, max_rows: int) -> tuple[list[tuple[Any, ...]], Position]:
        """Up to `max_rows` durable records after the checkpoint, and the position after them
        (blocking; call from a thread). Nothing counts as drained until `commit`."""
        seq, off = self._drained
        rows: list[tuple[Any, ...]] = []
        while len(rows) < max_rows:
            segs = self._segments()
            if seq not in segs:
                later = [s for s in segs if s > seq]
                if not later:
                    break
                seq, off = later[0], 0
            dseq, doff = self._durable
            live = seq >= dseq  # the segment being written: read only its durable part
            want = min(_READ_BYTES, doff - off) if live else _READ_BYTES
            if want <= 0:
                break
            with open(self.dir / self._name(seq), "rb") as f:
                f.seek(off)
                data = f.read(want)
            got, used = _records(data, max_rows - len(rows))
            rows.extend(got)
            off += used
            if used == 0:  # the end of this segment
                nxt = [s for s in segs if s > seq]
                if live or not nxt:
                    break
                seq, off = nxt[0], 0
        return rows, (seq, off)

    def _between(self, a: Position, b: Position) -> int:
        """Bytes of records from position `a` up to position `b`."""
        if a[0] == b[0]:
            return max(0, b[1] - a[1])
        total = b[1]
        for seq in self._segments():
            if a[0] <= seq < b[0]:
                total += (self.dir / self._name(seq)).stat().st_size - (a[1] if seq == a[0] else 0)
        return total

    def commit(self, pos: Position) -> None:
        """Record that everything before `pos` is in the database; delete drained segments."""
        tmp = self.dir / "CHECKPOINT.tmp"
        tmp.write_text(f"{pos[0]} {pos[1]}\n")
        os.replace(tmp, self.dir / "CHECKPOINT")
        drained = self._between(self._drained, pos)
        with self._bytes_lock:
            self._bytes -= drained
        self._drained = pos
        deleted = False
        for seq in self._segments():
            if seq >= pos[0]:
                break
            (self.dir / self._name(seq)).unlink()
            deleted = True
        if deleted:
            self._sync_dir()

    def stop_writer(self) -> None:
        """Finish the pending appends and stop the writer thread (blocking)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def close(self) -> None:
        """Stop the writer and release the directory (the files stay for the next start)."""
        self.stop_writer()
        if self._fd >= 0:
            os.close(self._fd)
            os.close(self._lock_fd)
            self._fd = -1
