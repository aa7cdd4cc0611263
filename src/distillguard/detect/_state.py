"""Incremental per-account state: what the detector knows after each batch of events.

`DetectorState.update` folds a batch of per-event signals (see `_signatures`) into running
totals, so the replay and the gateway's online loop both pay for new events only. Heavy work is
vectorised per batch; the only Python loops run over *distinct* (account, key) pairs of a batch,
which is what makes distinct counts (addresses per account, accounts per template) incremental.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000

# Per-event counters summed per account.
COUNTERS = ("n", "cot", "rubric", "code", "math", "tool", "single", "browser", "capped",
            "night", "release", "completion")

# Keys an account can share with others. Event keys come from the signals; account keys from
# the accounts table. `day` only counts active days and never links accounts.
EVENT_KINDS = ("ip", "head0", "head1", "tail0", "tail1", "sys", "day")
ACCOUNT_KINDS = ("payment", "email", "created")
LINK_KINDS = ("ip", "head0", "head1", "tail0", "tail1", "sys", "payment", "email", "created")
TEMPLATE_KINDS = ("head0", "head1", "tail0", "tail1", "sys")

RISKY_CHANNELS = frozenset({"education", "research", "startup"})

# Rough standard-time UTC offsets by declared country, for "active during the account's night".
UTC_OFFSET_HOURS: dict[str, float] = {
    "US": -6, "CA": -5, "MX": -6, "BR": -3, "AR": -3, "CL": -4, "CO": -5, "PE": -5,
    "GB": 0, "IE": 0, "PT": 0, "FR": 1, "DE": 1, "ES": 1, "IT": 1, "NL": 1, "BE": 1, "CH": 1,
    "AT": 1, "SE": 1, "NO": 1, "DK": 1, "PL": 1, "CZ": 1, "FI": 2, "UA": 2, "RO": 2, "GR": 2,
    "TR": 3, "RU": 3, "IL": 2, "EG": 2, "ZA": 2, "NG": 1, "KE": 3, "SA": 3, "AE": 4, "IR": 3.5,
    "PK": 5, "IN": 5.5, "BD": 6, "TH": 7, "VN": 7, "ID": 7, "MY": 8, "SG": 8, "PH": 8,
    "CN": 8, "HK": 8, "TW": 8, "KR": 9, "JP": 9, "AU": 10, "NZ": 12,
}


def stable_hash(*parts: object) -> int:
    """A 63-bit hash that is the same in every process (Python's `hash` is salted per run)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass
class _Kind:
    """Distinct-pair bookkeeping for one kind of key."""

    code: dict[int, int] = field(default_factory=dict)  # key hash -> key code
    pairs: dict[int, int] = field(default_factory=dict)  # key code << 24 | account -> events
    key_accounts: list[int] = field(default_factory=list)
    key_events: list[int] = field(default_factory=list)
    key_first: list[int] = field(default_factory=list)  # first account that used the key
    key_label: list[str] = field(default_factory=list)  # example text or value, for evidence


class DetectorState:
    """Running totals per account and per shared key, grown batch by batch."""

    def __init__(self, accounts: pl.DataFrame | None = None, models: pl.DataFrame | None = None):
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._cap = 0
        self.counters: dict[str, np.ndarray] = {}
        self.first_ts = np.zeros(0, np.int64)
        self.last_ts = np.zeros(0, np.int64)
        self.created_us = np.zeros(0, np.float64)
        self.risky_channel = np.zeros(0, bool)
        self.verified = np.zeros(0, bool)
        self.enterprise = np.zeros(0, bool)
        self.offset_h = np.zeros(0, np.float64)
        self.hours = np.zeros((0, 24), np.int32)
        self.acct_distinct: dict[str, np.ndarray] = {}
        self.acct_maxcount: dict[str, np.ndarray] = {}
        self.kinds: dict[str, _Kind] = {k: _Kind() for k in EVENT_KINDS + ACCOUNT_KINDS}
        # Pairs of keys shared by >= 2 accounts: (kind index, key code, account).
        self._shared: list[tuple[int, int, int]] = []
        self._shared_arr = np.zeros((0, 3), np.int64)
        self.now_us = 0
        self.events_seen = 0
        self._grow(1024)
        self._meta: dict[str, dict[str, object]] = {}
        self._email_accounts: dict[str, int] = {}
        if accounts is not None:
            self.add_account_metadata(accounts)
        self.releases: dict[str, int] = {}
        if models is not None and models.height and "released_at" in models.columns:
            for model, rel in models.select("model", "released_at").iter_rows():
                if rel is not None:
                    self.releases[str(model)] = int(rel.timestamp() * 1_000_000)

    def add_account_metadata(self, accounts: pl.DataFrame) -> None:
        """Remember sign-up metadata; it applies when an account is first seen in events."""
        for row in accounts.iter_rows(named=True):
            aid = str(row["account_id"])
            if aid in self._meta:
                continue
            self._meta[aid] = row
            dom = row.get("email_domain")
            if isinstance(dom, str) and dom:
                self._email_accounts[dom] = self._email_accounts.get(dom, 0) + 1

    # -- growth -----------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, self._cap * 2)

        def grow(a: np.ndarray, fill: float = 0) -> np.ndarray:
            out = np.full((cap,) + a.shape[1:], fill, dtype=a.dtype)
            out[: a.shape[0]] = a
            return out

        for name in COUNTERS:
            self.counters[name] = grow(self.counters.get(name, np.zeros(0, np.int64)))
        for kind in EVENT_KINDS + ACCOUNT_KINDS:
            self.acct_distinct[kind] = grow(self.acct_distinct.get(kind, np.zeros(0, np.int64)))
            self.acct_maxcount[kind] = grow(self.acct_maxcount.get(kind, np.zeros(0, np.int64)))
        self.first_ts = grow(self.first_ts)
        self.last_ts = grow(self.last_ts)
        self.created_us = grow(self.created_us, np.nan)
        self.risky_channel = grow(self.risky_channel)
        self.verified = grow(self.verified)
        self.enterprise = grow(self.enterprise)
        self.offset_h = grow(self.offset_h)
        self.hours = grow(self.hours)
        self._cap = cap

    @property
    def size(self) -> int:
        return len(self.ids)

    def _register(self, account_ids: list[str], first_ts: list[int]) -> None:
        """Add accounts seen for the first time, with their sign-up metadata."""
        start = len(self.ids)
        self._grow(start + len(account_ids))
        for offset, (aid, ts) in enumerate(zip(account_ids, first_ts, strict=True)):
            i = start + offset
            self.ids.append(aid)
            self.index[aid] = i
            self.first_ts[i] = ts
            meta = self._meta.get(aid, {})
            created = meta.get("created_at")
            created_us = int(created.timestamp() * 1_000_000) if created is not None else None  # type: ignore[attr-defined]
            self.created_us[i] = np.nan if created_us is None else created_us
            channel = str(meta.get("signup_channel") or "")
            self.risky_channel[i] = channel in RISKY_CHANNELS
            self.enterprise[i] = channel == "enterprise"
            self.verified[i] = bool(meta.get("verified") or False)
            self.offset_h[i] = UTC_OFFSET_HOURS.get(str(meta.get("country") or ""), 0.0)
            pay = meta.get("payment_fingerprint")
            if isinstance(pay, str) and pay:
                self._add_pair("payment", stable_hash("pay", pay), i, 1, pay)
            dom = meta.get("email_domain")
            # A domain most accounts share (a big webmail provider) says nothing.
            if isinstance(dom, str) and dom and self._email_accounts.get(dom, 0) <= max(
                3, 0.01 * max(1, len(self._meta))
            ):
                self._add_pair("email", stable_hash("email", dom), i, 1, dom)
            if created_us is not None:
                bucket = created_us // HOUR_US
                hour = datetime.fromtimestamp(bucket * 3600, tz=UTC).strftime("%Y-%m-%d %H:00")
                self._add_pair("created", stable_hash("created", channel, bucket), i, 1,
                               f"({channel or 'unknown'} sign-ups in the hour from {hour} UTC)")

    # -- pairs --------------------------------------------------------------------------------
    def _add_pair(self, kind: str, key: int, acct: int, count: int, label: str) -> None:
        book = self.kinds[kind]
        code = book.code.get(key)
        if code is None:
            code = len(book.key_accounts)
            book.code[key] = code
            book.key_accounts.append(0)
            book.key_events.append(0)
            book.key_first.append(acct)
            book.key_label.append(label)
        pk = (code << 24) | acct
        old = book.pairs.get(pk)
        book.key_events[code] += count
        if old is None:
            book.pairs[pk] = count
            book.key_accounts[code] += 1
            self.acct_distinct[kind][acct] += 1
            new_total = count
            n_acc = book.key_accounts[code]
            if kind in LINK_KINDS:
                k_index = LINK_KINDS.index(kind)
                if n_acc == 2:
                    self._shared.append((k_index, code, book.key_first[code]))
                if n_acc >= 2:
                    self._shared.append((k_index, code, acct))
        else:
            new_total = old + count
            book.pairs[pk] = new_total
        if new_total > self.acct_maxcount[kind][acct]:
            self.acct_maxcount[kind][acct] = new_total

    # -- update -------------------------------------------------------------------------------
    def update(self, sig: pl.DataFrame) -> None:
        """Fold a batch of per-event signals (time ordered, newer than anything seen) in.

        Template keys remember the `event_id` of their first event, so that the evidence can
        quote an example prompt later without the state ever holding texts.
        """
        if sig.height == 0:
            return
        first = sig.group_by("account_id", maintain_order=True).agg(pl.col("ts_us").min())
        new = first.filter(~pl.col("account_id").is_in(list(self.index)))
        if new.height:
            self._register(new["account_id"].to_list(), new["ts_us"].to_list())
        codes = np.fromiter((self.index[a] for a in sig["account_id"].to_list()), np.int64,
                            count=sig.height)
        ts = sig["ts_us"].to_numpy()
        self.now_us = max(self.now_us, int(ts.max()))
        self.events_seen += sig.height
        np.maximum.at(self.last_ts, codes, ts)

        hour_utc = (ts // HOUR_US) % 24
        local = (hour_utc + self.offset_h[codes]) % 24
        night = (local >= 0) & (local < 6)
        release = np.zeros(sig.height, bool)
        if self.releases:
            rel = sig["model"].replace_strict(self.releases, default=None, return_dtype=pl.Int64)
            r = rel.to_numpy(allow_copy=True)
            ok = ~np.isnan(r.astype(np.float64))
            age = ts - np.where(ok, r, 0).astype(np.int64)
            release = ok & (age >= 0) & (age < 2 * DAY_US)
        per_event = {
            "n": np.ones(sig.height, np.int64),
            "cot": sig["cot"].to_numpy(),
            "rubric": sig["rubric"].to_numpy(),
            "code": sig["code"].to_numpy(),
            "math": sig["math"].to_numpy(),
            "tool": (sig["tools"].to_numpy() > 0),
            "single": (sig["turns"].to_numpy() <= 1),
            "browser": sig["is_browser"].to_numpy(),
            "capped": sig["capped"].to_numpy(),
            "night": night,
            "release": release,
            "completion": sig["completion_tokens"].to_numpy(),
        }
        for name, values in per_event.items():
            self.counters[name][: self._cap] += np.bincount(
                codes, weights=values.astype(np.float64), minlength=self._cap
            ).astype(np.int64)
        np.add.at(self.hours, (codes, local.astype(np.int64)), 1)

        keyed = sig.select(
            pl.Series("acct", codes),
            pl.col("ip").hash(3).alias("ip"),
            "head0", "head1", "tail0", "tail1", "sys",
            (pl.col("ts_us") // DAY_US).alias("day"),
        )
        labels = self._labels(sig)
        for kind in EVENT_KINDS:
            counted = (
                keyed.select("acct", pl.col(kind).alias("key"), pl.int_range(pl.len()).alias("row"))
                .filter(pl.col("key").is_not_null())
                .group_by("acct", "key", maintain_order=True)
                .agg(pl.len().alias("c"), pl.col("row").first())
            )
            label_col = labels.get(kind)
            for acct, key, c, row in counted.iter_rows():
                label = label_col[row] if label_col is not None else ""
                self._add_pair(kind, int(key), int(acct), int(c), label)

    @staticmethod
    def _labels(sig: pl.DataFrame) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"ip": sig["ip"].to_list()}
        if "event_id" in sig.columns:
            ids = sig["event_id"].to_list()
            for kind in TEMPLATE_KINDS:
                out[kind] = ids
        return out

    # -- views --------------------------------------------------------------------------------
    def shared_pairs(self) -> np.ndarray:
        """(kind index, key code, account) rows for keys shared by >= 2 accounts."""
        if self._shared:
            tail = np.asarray(self._shared, np.int64)
            self._shared_arr = np.concatenate([self._shared_arr, tail])
            self._shared.clear()
        return self._shared_arr

    def key_stats(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        book = self.kinds[kind]
        return np.asarray(book.key_accounts, np.int64), np.asarray(book.key_events, np.int64)
