"""What an evidence module is: what it reads, what it returns, how it explains itself.

An evidence module looks at the detector's state after a window and returns one table with a
row per account and named columns, among them `weight` (what the evidence adds to the
account's case, 0 where it does not fire). Modules come in roles:

- `link`: a kind of shared key (addresses, templates, cards, e-mail domains, sign-up bursts).
  It says which keys of its kinds are suspicious; an account that has a pair on one, while
  eligible, is linked by it. Linked accounts and their keys make the campaign graph.
- `corroboration`: a fact about an account (fresh, partner indicator, one clock with a key)
  that adds its weight to an account that already has a link, never links on its own.
- `requirement`: how much weight an account needs to join (thin accounts need more).

The decision step (`_decision`) combines the tables; it never reads a module's own columns
beyond those its role defines, so adding a module never touches it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from distillguard.detect._config import DetectConfig
from distillguard.detect._links import PairIndex
from distillguard.detect._state import LINK_KINDS, DetectorState

Role = Literal["link", "corroboration", "requirement"]

#: The columns every role's table has (beside a module's own).
ROLE_COLUMNS: dict[Role, tuple[str, ...]] = {
    "link": ("pairs", "weight"),
    "corroboration": ("fires", "weight"),
    "requirement": ("need",),
}


@dataclass(frozen=True)
class KeyContext:
    """What the link modules read to say which keys are suspicious (all per shared key id)."""

    state: DetectorState
    cfg: DetectConfig
    members: np.ndarray  # accounts on the key
    key_harvest: np.ndarray  # pooled harvest profile of the key's traffic (0 for small keys)
    churn: np.ndarray  # mean address churn of the key's accounts (quarters / 4 per account)
    candidate: np.ndarray  # enough accounts and a harvest-like pooled profile


@dataclass(frozen=True)
class Context:
    """What every module reads once the suspicious keys are known.

    Per account: `features` and `harvest` (the profile), `established` (enough requests for a
    profile), `eligible` (may join a campaign), `link_pairs` (pairs on suspicious keys while
    eligible, one column per `LINK_KINDS`). Per shared key: `suspicious`. `pairs` are the
    state's shared pairs (link kind, key code, account, key sid).
    """

    keys: KeyContext
    features: dict[str, np.ndarray]
    harvest: np.ndarray
    established: np.ndarray
    eligible: np.ndarray
    suspicious: np.ndarray
    link_pairs: np.ndarray
    pairs: np.ndarray
    by_key: PairIndex  # the pairs' positions by key sid

    @property
    def state(self) -> DetectorState:
        return self.keys.state

    @property
    def cfg(self) -> DetectConfig:
        return self.keys.cfg


@dataclass(frozen=True)
class EvidenceTable:
    """One module's output: named columns, one row per account (`state.ids` order).

    Raises:
        ValueError: a column the module does not declare, one missing, or of another length.
    """

    module: str
    columns: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"Evidence table {self.module!r} has no column {name!r}; it has "
                           f"{', '.join(self.columns)}.") from None

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


class Evidence(ABC):
    """One kind of evidence. Subclasses set the class attributes and implement `assess`.

    `name` is how reasons and the docs call it, `section` its config section under
    `[evidence]`, `columns` its table's columns (name -> meaning; the role's columns first).
    A module may keep state from one call to the next (a tracker), so each detector holds its
    own instances.
    """

    name: ClassVar[str]
    section: ClassVar[str]
    role: ClassVar[Role]
    columns: ClassVar[dict[str, str]]

    def __init__(self, cfg: DetectConfig) -> None:
        self.cfg = cfg

    @property
    def settings(self) -> object:
        """This module's config section."""
        return getattr(self.cfg.evidence, self.section)

    @property
    def enabled(self) -> bool:
        return bool(getattr(self.settings, "enabled", True))

    @abstractmethod
    def assess(self, ctx: Context) -> EvidenceTable:
        """The module's table for every account of `ctx.state`."""

    def table(self, **columns: np.ndarray) -> EvidenceTable:
        """A table of this module's declared columns (checked: names, lengths)."""
        if list(columns) != list(self.columns):
            raise ValueError(f"Evidence module {self.name!r} returned columns {list(columns)}; "
                             f"it declares {list(self.columns)}.")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"Evidence module {self.name!r} returned columns of lengths "
                             f"{sorted(lengths)}; every column has one row per account.")
        return EvidenceTable(self.name, dict(columns))

    def off(self, m: int) -> EvidenceTable:
        """The table of a module turned off: it fires for nobody."""
        cols: dict[str, np.ndarray] = {}
        for c in self.columns:
            cols[c] = np.full(m, -1, np.int64) if c in _INDEX_COLUMNS else np.zeros(m)
        if self.role == "corroboration":
            cols["fires"] = np.zeros(m, bool)
        return EvidenceTable(self.name, cols)


# Columns that hold an index (a shared key id), -1 where none.
_INDEX_COLUMNS = frozenset({"key"})


class LinkEvidence(Evidence):
    """A kind of link: some of the `LINK_KINDS` whose suspicious keys tie accounts together.

    `kinds` are the link kinds it stands for (the five template facets are one kind: facets
    of one prompt); `infrastructure` says whether sharing it costs an operator something
    (an address, a card, a mail domain), which a member needs for a block.
    """

    role: ClassVar[Role] = "link"
    kinds: ClassVar[tuple[str, ...]]
    infrastructure: ClassVar[bool]
    columns: ClassVar[dict[str, str]] = {
        "pairs": "the account's pairs on suspicious keys of this kind while it is eligible",
        "weight": "the module's weight where pairs > 0, else 0",
    }

    def suspicious(self, keys: KeyContext) -> np.ndarray:
        """Per shared key (of any kind): suspicious as a key of this kind (others: ignored)."""
        out: np.ndarray = keys.candidate
        return out

    def assess(self, ctx: Context) -> EvidenceTable:
        at = [LINK_KINDS.index(k) for k in self.kinds]
        pairs = ctx.link_pairs[:, at].sum(axis=1)
        weight = float(getattr(self.settings, "weight", 1.0))
        return self.table(pairs=pairs, weight=np.where(pairs > 0, weight, 0.0))
