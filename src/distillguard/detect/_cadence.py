"""Looks that cost much and change slowly, taken at most every so many minutes of log time.

The replay decides after every window (15 minutes of log time), but some evidence shows itself
over hours: synchronised clocks, carriers, cells. Their trackers keep the last answer and reuse
it between looks, grown by the caller to the accounts and keys seen since.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Cadence(Generic[T]):
    """The last answer of one look and the log time it was taken."""

    def __init__(self) -> None:
        self.last: T | None = None
        self.last_us = 0

    def reuse(self, now_us: int, every_minutes: float,
              holds: Callable[[T], bool] | None = None) -> T | None:
        """The last answer while it is under `every_minutes` of log time old (0: never reused)
        and `holds` for it (where given); None when it is time to look again, which then counts
        as taken at `now_us`."""
        if (self.last is not None and now_us - self.last_us < int(every_minutes * 60_000_000)
                and (holds is None or holds(self.last))):
            return self.last
        self.last_us = now_us
        return None

    def keep(self, answer: T) -> T:
        """Hold `answer` as the last one and return it."""
        self.last = answer
        return answer
