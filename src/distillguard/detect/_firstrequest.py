"""The first request of a new account, decided on the request itself.

The detector decides at window ends, so each account's first requests are served before any
decision can see them. Once a campaign is flagged, though, the keys its accounts share are
known: a new account whose very first request carries them (the campaign's system prompt, its
prompt template bands at both ends of the prompt, or its address beside one of them) is
throttled on that request. The gateway checks an
unjudged account's request against the published keys before forwarding it (`CampaignKeys`,
`request_keys`); the replay measures what that saves (`first_request_flags`).

Only *campaign keys* count: a key used by at least `min_flagged_accounts` throttled or blocked
accounts that are at least `min_flagged_share` of all the accounts on it. A popular public
system prompt or a big NAT is shared by unflagged accounts and never qualifies, however many
campaign accounts use it too. Optionally (`max_established_accounts`), a key used by *people*
(unflagged accounts opened `established_days` before with a calm profile) never qualifies
either: it closes the gap early in a log, when a campaign can be most of a public key's users,
but a stealthy campaign's own aged accounts look like people too (docs/detection.md). Account keys (card, e-mail domain, sign-up hour) are left to
the detector: the gateway does not hold them at a new account's first request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from distillguard.detect._decision import THROTTLE
from distillguard.detect._links import FlaggedOnKeys
from distillguard.detect._state import (
    ALL_KINDS,
    DAY_US,
    EVENT_KINDS,
    LINK_KINDS,
    PAIR_ACCOUNT,
    PAIR_KEY,
)

if TYPE_CHECKING:
    from distillguard.detect._config import FirstRequestConfig
    from distillguard.detect._links import PairIndex
    from distillguard.detect._state import DetectorState

# Event kinds a request carries (`day` never links).
REQUEST_KINDS = tuple(k for k in EVENT_KINDS if k in LINK_KINDS)
# A prompt template band covers a dozen words at one end of the prompt, and unrelated people
# open or close prompts alike: a band counts only with a band of the other end. A whole system
# prompt counts alone. An address counts only beside content: a NAT or a carrier's gateway
# puts unrelated people behind one.
HEAD_KINDS = frozenset({"head0", "head1"})
TAIL_KINDS = frozenset({"tail0", "tail1"})


def matches(kinds: set[str]) -> bool:
    """Whether the campaign keys a request carries (their kinds) stop it."""
    content = "sys" in kinds or bool(kinds & HEAD_KINDS and kinds & TAIL_KINDS)
    return content or ("ip" in kinds and bool(kinds & (HEAD_KINDS | TAIL_KINDS)))


def campaign_key_mask(flagged_on_key: np.ndarray, accounts_on_key: np.ndarray,
                      established_on_key: np.ndarray, min_flagged: int, min_share: float,
                      max_established: int | None) -> np.ndarray:
    """Per key: enough flagged accounts, they are most of the key's accounts, and (unless
    `max_established` is None) at most that many people use it."""
    share = flagged_on_key / np.maximum(accounts_on_key, 1)
    mask: np.ndarray = (flagged_on_key >= min_flagged) & (share >= min_share)
    if max_established is not None:
        mask &= established_on_key <= max_established
    return mask


def _flagged_and_people(state: DetectorState, acct: np.ndarray, action: np.ndarray,
                        harvest: np.ndarray, cfg: FirstRequestConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per account code in `acct`: throttled or blocked, and a person: unflagged, opened at
    least `established_days` before now (unknown: not established), with a profile that is not
    harvest-like (a campaign's aged accounts not yet caught are not people). Accounts the
    decision did not know (past `action`) are neither flagged nor harvest-like."""
    flagged = np.zeros(len(acct), bool)
    inside = acct < len(action)
    flagged[inside] = action[acct[inside]] >= THROTTLE
    opened = state.created_us[acct]
    calm = np.ones(len(acct), bool)
    calm[inside] = harvest[acct[inside]] < cfg.people_max_harvest
    established = ~flagged & calm & (opened <= state.now_us - cfg.established_days * DAY_US)
    return flagged, established


def _among(values: np.ndarray, ascending: np.ndarray) -> np.ndarray:
    """`np.isin(values, ascending)` for an ascending, non-empty `ascending` (one binary
    search per value, no sort)."""
    at = np.minimum(np.searchsorted(ascending, values), len(ascending) - 1)
    out: np.ndarray = ascending[at] == values
    return out


def campaign_key_codes(state: DetectorState, action: np.ndarray, harvest: np.ndarray,
                       cfg: FirstRequestConfig) -> np.ndarray:
    """Codes of the keys that are campaign keys now (request kinds only), ascending: a pass
    over every shared pair (`FlaggedOnKeys` and `campaign_keys` give the same, from the
    pairs that changed)."""
    pairs = state.shared_pairs()
    if not len(pairs) or not len(action):
        return np.zeros(0, np.int64)
    flagged, established = _flagged_and_people(state, pairs[:, PAIR_ACCOUNT], action, harvest,
                                                cfg)
    sid = pairs[:, PAIR_KEY]
    n_sid = int(sid.max()) + 1
    on_key = np.bincount(sid, weights=flagged, minlength=n_sid)
    public = np.bincount(sid, weights=established, minlength=n_sid)
    codes = state.sid_code[:n_sid]
    keep = campaign_key_mask(on_key, state.key_accounts[codes], public, cfg.min_flagged_accounts,
                             cfg.min_flagged_share, cfg.max_established_accounts)
    return np.unique(codes[keep])


def campaign_keys(state: DetectorState, on_key: np.ndarray, action: np.ndarray,
                  harvest: np.ndarray, cfg: FirstRequestConfig, by_key: PairIndex) -> np.ndarray:
    """`campaign_key_codes` from the flagged accounts per shared key id (`FlaggedOnKeys`):
    people are counted (when `max_established_accounts` is set) on the pairs of the keys
    that pass the other tests only."""
    sid = np.flatnonzero(on_key >= cfg.min_flagged_accounts)
    codes = state.sid_code[sid]
    members = state.key_accounts[codes]
    flagged = on_key[sid]
    keep = campaign_key_mask(flagged, members, np.zeros(len(sid)), cfg.min_flagged_accounts,
                             cfg.min_flagged_share, None)
    sid, codes, members, flagged = sid[keep], codes[keep], members[keep], flagged[keep]
    if cfg.max_established_accounts is not None and len(sid):
        wanted = np.zeros(len(on_key), bool)
        wanted[sid] = True
        pairs = state.shared_pairs()
        rows = pairs[by_key.select(pairs, wanted, ordered=False)]
        _, established = _flagged_and_people(state, rows[:, PAIR_ACCOUNT], action, harvest, cfg)
        public = np.bincount(rows[:, PAIR_KEY], weights=established, minlength=len(on_key))[sid]
        codes = codes[campaign_key_mask(flagged, members, public, cfg.min_flagged_accounts,
                                        cfg.min_flagged_share, cfg.max_established_accounts)]
    return np.unique(codes)


@dataclass
class FirstRequestFlags:
    """Replay bookkeeping: the campaign keys as of the last decision, and per account the time
    of the first request that matched one (-1: none) while the account was unjudged."""

    cfg: FirstRequestConfig
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    flagged_us: dict[int, int] = field(default_factory=dict)
    kind: dict[int, str] = field(default_factory=dict)  # the kind of key it matched on
    _looked_us: int = -(1 << 62)
    _pending: tuple[DetectorState, np.ndarray, np.ndarray,
                    tuple[PairIndex, PairIndex] | None] | None = None
    _on_keys: FlaggedOnKeys = field(default_factory=FlaggedOnKeys)

    def __setstate__(self, saved: dict[str, object]) -> None:
        # A checkpoint written before the counts were kept: the next look starts them afresh.
        self.__dict__.update(saved)
        if "_on_keys" not in saved:
            self._on_keys = FlaggedOnKeys()
        if self._pending is not None and len(self._pending) == 3:
            self._pending = (*self._pending, None)

    def decided(self, state: DetectorState, action: np.ndarray, harvest: np.ndarray,
                index: tuple[PairIndex, PairIndex] | None = None) -> None:
        """After a decision: the keys a new account's request is checked against next, looked
        for at most every `every_minutes` of log time, and only once a new account needs them
        (`index`: the detector's shared pairs by key and by account, to read only the pairs
        that changed since the last look; without it, a pass over every shared pair)."""
        if state.now_us - self._looked_us >= self.cfg.every_minutes * 60_000_000:
            self._looked_us = state.now_us
            self._pending = (state, action.copy(), harvest.copy(), index)

    def _codes(self) -> np.ndarray:
        if self._pending is not None:
            state, action, harvest, index = self._pending
            self.codes = self.look(state, action, harvest, index)
            self._pending = None
        return self.codes

    def look(self, state: DetectorState, action: np.ndarray, harvest: np.ndarray,
             index: tuple[PairIndex, PairIndex] | None) -> np.ndarray:
        """The campaign keys as of this decision (see `decided`)."""
        if index is None:
            self._on_keys = FlaggedOnKeys()
            return campaign_key_codes(state, action, harvest, self.cfg)
        by_key, by_acct = index
        pairs = state.shared_pairs()
        flagged = np.zeros(max(state.size, len(action)), bool)
        flagged[: len(action)] = action >= THROTTLE
        on_key = self._on_keys.update(pairs, state.shared_keys, flagged, by_acct)
        if not len(pairs) or not len(action):
            return np.zeros(0, np.int64)
        return campaign_keys(state, on_key, action, harvest, self.cfg, by_key)

    def window(self, new_pairs: dict[str, np.ndarray], new_accounts: dict[str, np.ndarray]) -> None:
        """Before a window is applied: the keys its new accounts' first requests carry
        (`Prepared.new_pairs` rows at the account's first time, `Prepared.accounts` rows)
        matched against the campaign keys as of the last decision."""
        if not len(new_pairs["code"]) or not len(new_accounts["acct"]) or not len(self._codes()):
            return
        first = dict(zip(new_accounts["acct"].tolist(), new_accounts["first_ts"].tolist(), strict=True))
        hit = _among(new_pairs["code"], self.codes)
        kinds: dict[int, set[str]] = {}
        for acct, ts, kind in zip(new_pairs["acct"][hit].tolist(), new_pairs["first_ts"][hit].tolist(),
                                  new_pairs["kind"][hit].tolist(), strict=True):
            if first.get(acct) == ts:
                kinds.setdefault(acct, set()).add(ALL_KINDS[kind])
        for acct, found in kinds.items():
            if matches(found):
                self.flagged_us[acct] = first[acct]
                self.kind[acct] = "+".join(sorted(found))


@dataclass(frozen=True)
class CampaignKeys:
    """The campaign keys the gateway checks a new account's request against: (kind, key) ->
    the flagged account whose campaign it names (for the reason)."""

    keys: dict[tuple[str, int], str]

    @classmethod
    def of(cls, state: DetectorState, action: np.ndarray, harvest: np.ndarray,
           cfg: FirstRequestConfig) -> CampaignKeys:
        codes = campaign_key_codes(state, action, harvest, cfg)
        if not len(codes):
            return cls({})
        values = state.key_values(codes)
        first = state.key_first[codes]
        out: dict[tuple[str, int], str] = {}
        for (kind, key), acct in zip(values, first.tolist(), strict=True):
            if kind in REQUEST_KINDS:
                out[(kind, key)] = state.ids[acct] if 0 <= acct < len(state.ids) else ""
        return cls(out)

    def match(self, keys: list[tuple[str, int]]) -> list[tuple[str, int]] | None:
        """The request's keys that are campaign keys, when they stop it (`matches`), else None."""
        found = [k for k in keys if k in self.keys]
        return found if matches({kind for kind, _ in found}) else None


def request_keys(events: pl.DataFrame) -> list[tuple[str, int]]:
    """The keys one request carries (an events frame of one row, format columns): its address
    and its template bands and system prompt, hashed as the detector hashes them."""
    from distillguard.detect._signatures import event_signals

    sig = event_signals(events)
    out: list[tuple[str, int]] = []
    ip = sig.select(pl.col("ip").hash(3))["ip"].to_list()
    if ip and ip[0] is not None:
        out.append(("ip", int(ip[0])))
    for kind in REQUEST_KINDS:
        if kind == "ip" or kind not in sig.columns:
            continue
        value = sig[kind].to_list()[0]
        if value is not None:
            out.append((kind, int(value)))
    return out


# Strings whose hashes `RequestKeys` keeps, per kind (addresses, words); a table that fills up
# is emptied and refilled from the requests that follow.
MAX_CACHED_STRINGS = 1 << 16
# System prompts whose hashes it keeps: a log has few, and each can be long.
MAX_CACHED_SYSTEM_PROMPTS = 1024


class RequestKeys:
    """`request_keys` for one request at a time, without building a frame: the gateway's
    first-request check runs this on the request loop.

    The words, bands and order of keys are computed in plain Python (`edge_words`,
    `band_keys`); the hashes of the strings are polars', the detector's own, memoised per
    string: an address, a system prompt or a word seen before costs a dictionary lookup, and
    those of a request not seen yet are hashed by one polars call per kind.
    """

    def __init__(self, max_cached: int = MAX_CACHED_STRINGS,
                 max_system_prompts: int = MAX_CACHED_SYSTEM_PROMPTS) -> None:
        self.max_cached = max_cached
        self.max_system_prompts = max_system_prompts
        self._ip: dict[str, int] = {}
        self._system: dict[str, int] = {}
        self._word: dict[str, int] = {}

    def __call__(self, ip: str | None, system: str | None, prompt: str | None) -> list[tuple[str, int]]:
        """The keys of a request from `ip` with this system prompt and prompt, as
        `request_keys` gives them for a frame of that one request."""
        from distillguard.detect._signatures import band_keys, edge_words

        text = prompt or ""
        head, tail = edge_words(text, head=True), edge_words(text, head=False)
        hashes = self._hashes(self._word, head + tail, 11)
        address = ip or ""
        out: list[tuple[str, int]] = [("ip", self._hashes(self._ip, [address], 3)[address])]
        for side, words in (("head", head), ("tail", tail)):
            for band, key in enumerate(band_keys([hashes[w] for w in words])):
                if key is not None:
                    out.append((f"{side}{band}", key))
        sys_key = self._system_key(system)
        if sys_key is not None:
            out.append(("sys", sys_key))
        return out

    def _hashes(self, table: dict[str, int], values: list[str], seed: int) -> dict[str, int]:
        """`table` holding the polars hash (`seed`) of every value; also returned."""
        missing = [v for v in dict.fromkeys(values) if v not in table]
        if missing:
            if len(table) + len(missing) > self.max_cached:
                table.clear()
            hashed = pl.Series(missing, dtype=pl.String).hash(seed).to_list()
            table.update(zip(missing, hashed, strict=True))
        return table

    def _system_key(self, system: str | None) -> int | None:
        """The `sys` key: None without a system prompt, else the hash of its normalised text
        (computed by the detector's own `_system_hash` the first time a prompt is seen)."""
        if not system:
            return None
        got = self._system.get(system)
        if got is None:
            from distillguard.detect._signatures import _system_hash

            if len(self._system) >= self.max_system_prompts:
                self._system.clear()
            frame = pl.DataFrame({"system": [system]}, schema={"system": pl.String})
            got = self._system[system] = int(_system_hash(frame)["sys"][0])
        return got


def first_request_table(state: DetectorState, flags: FirstRequestFlags) -> pa.Table:
    """The replay's first-request matches (an added scan table): account_id, first_request_ts
    (the time of the account's first request, which carried a campaign key) and key_kind."""
    accts = sorted(flags.flagged_us)
    return pa.table({
        "account_id": pa.array([state.ids[a] for a in accts], pa.string()),
        "first_request_ts": pa.array([flags.flagged_us[a] for a in accts], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "key_kind": pa.array([flags.kind[a] for a in accts], pa.string()),
    })
