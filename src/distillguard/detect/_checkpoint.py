"""A detector's checkpoint as bytes: its arrays out of band, compressed, framed by Arrow IPC.

Used by the fleet's detector service (`gateway._detector`) and the Spark streaming prototype
(`_spark_stream`).

Nearly all of a detector's state is numpy arrays (per account, per shared key, per pair); the
rest is a small skeleton of plain Python objects (ids, labels, config). A checkpoint is taken
in two halves so that the detector pauses only for the first:

* `snapshot` (on the detector's thread, while nothing else changes it): the skeleton pickled
  with protocol 5, every array's buffer handed out of band (PEP 574) and copied: about as
  long as pickling the whole state took (both are mostly a copy of the arrays).
* `encode` (any thread): one Arrow IPC stream, a row per part (the skeleton, then each
  buffer), zstd-compressed by Arrow's C++ code, which releases the GIL: the request loop
  and the detector run on while it compresses. The state compresses about 7 to 1, which is
  what makes the database write (and the read at a restore) several times shorter.

`decode` reads this format and the earlier one (a plain pickle of the whole state), so a
detector upgraded in place resumes from its last checkpoint.

Only a detector's own checkpoints are ever decoded (its database rows, or the files in its
streaming query's checkpoint folder).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

#: the schema metadata that marks this format
FORMAT_KEY = b"distillguard-checkpoint"
FORMAT_VERSION = b"2"
#: Arrow IPC body compression of the parts
CODEC = "zstd"


@dataclass(frozen=True)
class Snapshot:
    """A state taken apart: its pickled skeleton and copies of its arrays' buffers."""

    skeleton: bytes
    buffers: tuple[bytes, ...]

    @property
    def nbytes(self) -> int:
        return len(self.skeleton) + sum(len(b) for b in self.buffers)


def snapshot(state: Any) -> Snapshot:
    """Take `state` apart (blocking; the caller keeps it unchanged meanwhile)."""
    views: list[pickle.PickleBuffer] = []
    skeleton = pickle.dumps(state, protocol=5, buffer_callback=views.append)
    # Copied now: the arrays change in place once the detector steps on.
    return Snapshot(skeleton, tuple(bytes(v.raw()) for v in views))


def encode(snap: Snapshot) -> bytes:
    """The snapshot as one compressed Arrow IPC stream (releases the GIL while compressing)."""
    import pyarrow as pa

    parts = pa.array([snap.skeleton, *snap.buffers], pa.large_binary())
    schema = pa.schema([pa.field("part", pa.large_binary())], metadata={FORMAT_KEY: FORMAT_VERSION})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema, options=pa.ipc.IpcWriteOptions(compression=CODEC)) as writer:
        writer.write_batch(pa.record_batch([parts], schema=schema))
    return bytes(sink.getvalue())


def decode(data: bytes) -> Any:
    """The state a checkpoint holds (this format or the earlier whole pickle)."""
    if data[:1] == b"\x80":  # a pickle's PROTO opcode: the earlier format
        return pickle.loads(data)  # noqa: S301 - the detector's own rows
    import pyarrow as pa

    reader = pa.ipc.open_stream(pa.py_buffer(data))
    meta = reader.schema.metadata or {}
    if meta.get(FORMAT_KEY) != FORMAT_VERSION:
        raise ValueError(f"not a distillguard checkpoint of format {FORMAT_VERSION.decode()} "
                         f"(schema metadata {meta!r})")
    parts = reader.read_all().column("part").to_pylist()
    # bytearrays: the arrays rebuilt on them must be writable (the detector updates in place)
    return pickle.loads(parts[0], buffers=[bytearray(p) for p in parts[1:]])  # noqa: S301 - see above
