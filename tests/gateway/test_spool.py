"""The capture spool: durable appends, ordered drain from a checkpoint, recovery, bound, lock."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from distillguard._errors import ConfigError
from distillguard.gateway import Spool, SpoolFull
from distillguard.gateway._spool import SyncMode


def row(i: int, text: str = "") -> tuple[object, ...]:
    return (f"ev{i:05d}", 1_700_000_000_000_000 + i, "acct", None, 1.5, text)


async def append_all(spool: Spool, rows: list[tuple[object, ...]], group: int = 20) -> None:
    """Append in concurrent groups (each group is synced together, then the next starts)."""
    spool.start()
    for i in range(0, len(rows), group):
        await asyncio.gather(*(spool.append(r) for r in rows[i : i + group]))


def drain(spool: Spool, batch: int) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    while True:
        got, pos = spool.read(batch)
        if not got:
            return out
        out += got
        spool.commit(pos)


@pytest.mark.parametrize("sync", ["write", "always"])
def test_appends_drain_in_order_across_segments_and_restarts(tmp_path: Path, sync: SyncMode) -> None:
    rows = [row(i, "x" * (i % 50) + "\x00\ud800 surrogate") for i in range(500)]
    spool = Spool(tmp_path, segment_bytes=4096, sync=sync)  # many small segments
    asyncio.run(append_all(spool, rows[:300]))
    assert len(list(tmp_path.glob("*.spool"))) > 3
    got, pos = spool.read(120)
    assert got == rows[:120]
    spool.commit(pos)
    spool.close()
    # restart: the drain resumes at the checkpoint; new appends go after the old ones
    spool = Spool(tmp_path, segment_bytes=4096, sync=sync)
    asyncio.run(append_all(spool, rows[300:]))
    assert drain(spool, 77) == rows[120:]
    assert drain(spool, 77) == []
    assert len(list(tmp_path.glob("*.spool"))) <= 2  # drained segments are deleted
    spool.close()


def test_a_torn_record_is_cut_off_at_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    asyncio.run(append_all(spool, [row(i) for i in range(10)]))
    spool.close()
    [seg] = list(tmp_path.glob("*.spool"))
    whole = seg.stat().st_size
    with open(seg, "ab") as f:  # a crash in the middle of an append
        f.write(b"\x40\x00\x00\x00\x01\x02\x03\x04{\"half")
    spool = Spool(tmp_path)
    assert seg.stat().st_size == whole
    assert drain(spool, 100) == [row(i) for i in range(10)]
    spool.close()


def test_a_full_spool_refuses_and_frees_room_when_drained(tmp_path: Path) -> None:
    async def run() -> None:
        spool = Spool(tmp_path, max_bytes=2000, segment_bytes=500)
        spool.start()
        n = 0
        with pytest.raises(SpoolFull, match="full"):
            while True:
                await spool.append(row(n))
                n += 1
        assert spool.refusing and 2000 <= spool.size < 2000 + 200
        await asyncio.to_thread(drain, spool, 1000)
        assert not spool.refusing
        await spool.append(row(n))
        spool.close()

    asyncio.run(run())


def test_one_gateway_per_spool_directory(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    with pytest.raises(ConfigError, match="in use by another gateway"):
        Spool(tmp_path)
    first.close()
    Spool(tmp_path).close()


def test_appends_are_synced_in_groups(tmp_path: Path) -> None:
    spool = Spool(tmp_path, sync="always")
    asyncio.run(append_all(spool, [row(i) for i in range(2000)], group=2000))
    assert spool.appended == 2000 and 1 <= spool.syncs < 2000 / 4, spool.syncs
    spool.close()
    assert os.path.exists(tmp_path / "LOCK")


def test_written_appends_are_synced_within_the_interval(tmp_path: Path) -> None:
    """`write` mode answers after the write and syncs what was written every interval, not once
    per group, and not at all while nothing new was written."""

    async def run() -> None:
        spool = Spool(tmp_path, sync="write", sync_interval=0.2)
        await append_all(spool, [row(i) for i in range(200)], group=10)  # 20 groups, well within 0.2 s
        assert spool.appended == 200
        await asyncio.sleep(0.5)
        synced = spool.syncs
        assert 1 <= synced <= 3, synced
        await asyncio.sleep(0.5)
        assert spool.syncs == synced  # clean: nothing to sync
        spool.close()

    asyncio.run(run())
