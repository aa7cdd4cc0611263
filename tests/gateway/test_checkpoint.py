"""The detector's checkpoint format: arrays out of band and compressed, taken at one instant."""

from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pytest

from distillguard.detect._checkpoint import decode, encode, snapshot


def state() -> dict[str, object]:
    rng = np.random.default_rng(3)
    return {
        "counts": np.zeros(100_000, np.int64),
        "pairs": rng.integers(0, 1 << 40, (5_000, 4)),
        "f_order": np.asfortranarray(rng.random((300, 7))),
        "labels": [f"key-{i}" for i in range(1000)],
        "index": {"a": 0, "b": 1},
        "frame": pl.DataFrame({"kind": [1, 2], "code": [10, 20]}),
        "cursor": 42,
    }


def test_a_checkpoint_gives_back_the_state_with_writable_arrays() -> None:
    s = state()
    got = decode(encode(snapshot(s)))
    assert got.keys() == s.keys()
    for k in ("counts", "pairs", "f_order"):
        np.testing.assert_array_equal(got[k], s[k])
        assert got[k].dtype == s[k].dtype and got[k].flags.writeable  # the detector updates in place
    got["counts"][7] += 1  # type: ignore[index]
    assert got["labels"] == s["labels"] and got["index"] == s["index"] and got["cursor"] == 42
    assert got["frame"].equals(s["frame"])  # type: ignore[attr-defined]


def test_a_snapshot_is_the_state_when_taken_and_compressed_when_encoded() -> None:
    s = state()
    snap = snapshot(s)
    s["counts"][:] = 9  # type: ignore[index]  # the detector steps on while the snapshot is written
    got = decode(encode(snap))
    assert not got["counts"].any()
    assert len(encode(snap)) < snap.nbytes / 4  # mostly zeros and small integers


def test_the_earlier_whole_pickle_still_loads_and_anything_else_is_refused() -> None:
    s = state()
    assert decode(pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL))["cursor"] == 42
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    schema = pa.schema([pa.field("part", pa.large_binary())])
    with pa.ipc.new_stream(sink, schema) as w:
        w.write_batch(pa.record_batch([pa.array([b"x"], pa.large_binary())], schema=schema))
    with pytest.raises(ValueError, match="not a distillguard checkpoint"):
        decode(bytes(sink.getvalue()))
