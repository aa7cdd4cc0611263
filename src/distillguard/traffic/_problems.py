"""A problem found in a traffic log: an error, or a counted warning with example locations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distillguard._errors import LogFormatError

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Location:
    """Where one offending row is: file, 1-based row (JSONL: line), column."""

    file: str | None = None
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        parts = [self.file or "", f"row {self.row}" if self.row is not None else ""]
        if self.column:
            parts.append(f"column {self.column!r}")
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class Problem:
    """One kind of problem: `count` occurrences, the first few of them in `examples`.

    Errors stop the reading of the file they are in (earlier rows stay read);
    warnings mark rows that were skipped or are suspicious but safe to keep.
    """

    level: Level
    code: str
    message: str
    count: int = 1
    examples: tuple[Location, ...] = field(default_factory=tuple)

    @classmethod
    def from_error(cls, exc: LogFormatError, code: str = "format") -> Problem:
        loc = Location(exc.file, exc.row, exc.column)
        return cls("error", code, exc.message, 1, (loc,))

    def __str__(self) -> str:
        where = "; ".join(str(e) for e in self.examples)
        more = f" ({self.count} rows)" if self.count > 1 else ""
        return f"{self.level}: {self.message}{more}" + (f" [{where}]" if where else "")
