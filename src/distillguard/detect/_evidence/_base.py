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
- `small_campaign`: runs once the campaigns are formed and finds small ones they miss (cells),
  each reported as a campaign of its own; members and carriers are throttled.
- `carrier`: runs once the blocks are known and finds accounts that carry a blocked
  campaign's traffic among their own; throttled.
- `solo`: evidence about one account that throttles it on its own, whatever the campaigns
  say (rarity); never blocks, since it is not a campaign's evidence.

The decision step (`_decision`) combines the tables; it never reads a module's own columns
beyond those its role defines, so adding a module never touches it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from distillguard.detect._config import DetectConfig, LinkKindConfig
from distillguard.detect._links import PairIndex
from distillguard.detect._own_asks import own_asks, weak_key_counts
from distillguard.detect._state import LINK_KINDS, DetectorState

Role = Literal["link", "corroboration", "requirement", "small_campaign", "carrier", "solo"]

#: The columns every role's table has (beside a module's own).
ROLE_COLUMNS: dict[Role, tuple[str, ...]] = {
    "link": ("pairs", "weight"),
    "corroboration": ("fires", "weight"),
    "requirement": ("need",),
    "small_campaign": ("cell", "score", "carries"),
    "carrier": ("carries",),
    "solo": ("throttles",),
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
    eligible, one column per `LINK_KINDS`), `flagged` (throttled or blocked by the last
    decision). Per shared key: `suspicious`. `pairs` are the state's shared pairs (link kind,
    key code, account, key sid), `by_key` and `by_acct` their positions by key and account.
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
    by_acct: PairIndex  # the pairs' positions by account
    flagged: np.ndarray  # per account: throttled or blocked by the last decision

    @property
    def state(self) -> DetectorState:
        return self.keys.state

    @property
    def cfg(self) -> DetectConfig:
        return self.keys.cfg


@dataclass(frozen=True)
class CampaignContext:
    """What `small_campaign` modules read: the account context and the campaigns so far.

    `free` are the accounts in no campaign, `flagged` those in a throttled or blocked one;
    `known_key_harvest` is the key profile where computed (NaN elsewhere) and `key_profile`
    computes it for the shared-key ids asked.
    """

    account: Context
    totals: dict[str, np.ndarray]
    known_key_harvest: np.ndarray
    free: np.ndarray
    flagged: np.ndarray
    by_acct: PairIndex

    def key_profile(self, sids: np.ndarray) -> np.ndarray:
        from distillguard.detect._profile import key_profiles

        c = self.account
        return key_profiles(c.state, self.totals, c.cfg, sids)


@dataclass(frozen=True)
class CarrierContext:
    """What `carrier` modules read: per account, its campaign (-1: none) and whether that
    campaign blocks it; the shared pairs and their indexes."""

    state: DetectorState
    cfg: DetectConfig
    pairs: np.ndarray
    component: np.ndarray
    blocked: np.ndarray
    by_key: PairIndex
    by_acct: PairIndex


@dataclass(frozen=True)
class SoloContext:
    """What `solo` modules read: the state, every account's features (`_profile`), and per
    shared key whether a link module calls it suspicious (all False before any key is shared),
    with the shared pairs' positions by key and by account."""

    state: DetectorState
    cfg: DetectConfig
    features: dict[str, np.ndarray]
    suspicious: np.ndarray
    by_key: PairIndex
    by_acct: PairIndex


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


class Evidence(ABC):  # noqa: B024 (the roles' subclasses declare what `assess` reads)
    """One kind of evidence. Subclasses (of a role's base class) set the class attributes and
    implement `assess`.

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
            if c in _INDEX_COLUMNS:
                cols[c] = np.full(m, -1, np.int64)
            else:
                cols[c] = np.zeros(m, bool) if c in _FLAG_COLUMNS else np.zeros(m)
        return EvidenceTable(self.name, cols)


# Columns that hold an index (a shared key id, a cell, an account), -1 where none; flags.
_INDEX_COLUMNS = frozenset({"key", "cell", "peer"})
_FLAG_COLUMNS = frozenset({"fires", "carries", "solo", "thin", "throttles"})


class AccountEvidence(Evidence):
    """Evidence about accounts before they join campaigns (links, corroborations, requirements)."""

    @abstractmethod
    def assess(self, ctx: Context) -> EvidenceTable:
        """The module's table for every account of `ctx.state`."""


class CampaignEvidence(Evidence):
    """Small campaigns that the campaign graph misses (role `small_campaign`).

    `assess` numbers them 0, 1, ... in the `cell` column; `campaigns` says what ties each and
    how big it is.
    """

    role: ClassVar[Role] = "small_campaign"

    @abstractmethod
    def assess(self, ctx: CampaignContext) -> EvidenceTable:
        """The module's table for every account of `ctx.account.state`."""

    @abstractmethod
    def campaigns(self, state: DetectorState) -> tuple[list[list[str]], np.ndarray]:
        """Per small campaign of the last `assess`: the kinds of link that tie it (for its
        reasons and campaign row), and its size as reported."""


class CarrierEvidence(Evidence):
    """Accounts that carry a blocked campaign's traffic (role `carrier`)."""

    role: ClassVar[Role] = "carrier"

    @abstractmethod
    def assess(self, ctx: CarrierContext) -> EvidenceTable:
        """The module's table for every account of `ctx.state`."""


class SoloEvidence(Evidence):
    """Evidence that throttles an account on its own (role `solo`), read after the carriers."""

    role: ClassVar[Role] = "solo"

    @abstractmethod
    def assess(self, ctx: SoloContext) -> EvidenceTable:
        """The module's table for every account of `ctx.state`."""


class LinkEvidence(AccountEvidence):
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
        gate = self.settings
        if isinstance(gate, LinkKindConfig) and gate.min_own_asks > 0:
            m = len(pairs)
            n = ctx.state.counters["n"][:m]
            own = own_asks(ctx.features["elicitation"][:m], ctx.state.counters["distill"][:m], n)
            counts = weak_key_counts(own, gate.min_own_asks, n, gate.own_asks_min_events)
            pairs = np.where(counts, pairs, 0)
        weight = float(getattr(self.settings, "weight", 1.0))
        return self.table(pairs=pairs, weight=np.where(pairs > 0, weight, 0.0))

