"""Where a table's files are in a log directory, and in which encoding.

A table NAME is stored as any of (the format, "A traffic log is a directory"):

    NAME.parquet            one Parquet file
    NAME-*.parquet          Parquet parts next to each other
    NAME/*.parquet          Parquet parts in a folder (what `LogWriter` writes)
    NAME.jsonl              JSON Lines, one object per row
    NAME.jsonl.gz           the same, gzip-compressed

Every file found is a part of the table, read in the order above (parts sorted
by name), so a table split across encodings still reads as one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Encoding = Literal["parquet", "jsonl", "jsonl.gz"]
ENCODINGS: tuple[Encoding, ...] = ("parquet", "jsonl", "jsonl.gz")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class TableFile:
    """One file holding (part of) a table."""

    path: Path
    encoding: Encoding

    def __str__(self) -> str:
        return str(self.path)


def check_name(name: str) -> str:
    """Refuse table names that could escape the directory or break a glob."""
    if not _NAME.match(name):
        raise ValueError(f"table name {name!r} must be letters, digits and underscores")
    return name


def encoding_of(path: Path) -> Encoding | None:
    n = path.name
    if n.endswith(".jsonl.gz"):
        return "jsonl.gz"
    if n.endswith(".jsonl"):
        return "jsonl"
    if n.endswith(".parquet"):
        return "parquet"
    return None


def find_files(directory: Path, name: str) -> list[TableFile]:
    """Every file of table `name` in `directory`, in reading order."""
    check_name(name)
    d = Path(directory)
    found: list[TableFile] = []
    single = d / f"{name}.parquet"
    if single.is_file():
        found.append(TableFile(single, "parquet"))
    found += [TableFile(p, "parquet") for p in sorted(d.glob(f"{name}-*.parquet")) if p.is_file()]
    sub = d / name
    if sub.is_dir():
        # Parts may sit in Hive-style partition folders (`events/date=2026-02-01/part-0.parquet`).
        for p in sorted(sub.rglob("*")):
            rel = p.relative_to(sub).parts
            enc = encoding_of(p)
            if enc is not None and p.is_file() and not any(x.startswith((".", "_")) for x in rel):
                found.append(TableFile(p, enc))
    for enc in ("jsonl", "jsonl.gz"):
        p = d / f"{name}.{enc}"
        if p.is_file():
            found.append(TableFile(p, enc))  # type: ignore[arg-type]
    return found


def table_names(directory: Path, known: tuple[str, ...] = ()) -> list[str]:
    """Names of the tables present in `directory`: `known` ones first, then any others."""
    d = Path(directory)
    names: set[str] = set()
    for p in d.iterdir():
        if p.name.startswith((".", "_")):
            continue
        if p.is_dir():
            if any(encoding_of(c) for c in p.iterdir()) and _NAME.match(p.name):
                names.add(p.name)
            continue
        enc = encoding_of(p)
        if enc is None:
            continue
        stem = p.name[: -len(enc) - 1]
        head = stem.split("-", 1)[0]
        if enc == "parquet" and "-" in stem and _NAME.match(head):
            names.add(head)
        elif _NAME.match(stem):
            names.add(stem)
    first = [n for n in known if n in names]
    return first + sorted(names - set(first))


def describe(files: list[TableFile]) -> str:
    """Human summary of how a table is stored, e.g. `parquet (3 parts)`."""
    if not files:
        return "absent"
    encs = sorted({f.encoding for f in files}, key=ENCODINGS.index)
    kind = "+".join(encs)
    return kind if len(files) == 1 else f"{kind} ({len(files)} parts)"
