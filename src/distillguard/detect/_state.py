"""Incremental per-account state: what the detector knows after each window of events.

Updating is split in two so that the replay pays for grouping once and the online loop pays
per batch, through the same code:

* `prepare` groups a batch of per-event signals (see `_signatures`) by window with polars:
  per-account counters, hours of activity, and the (account, key) pairs with their running
  totals. Accounts and keys get their dense codes here.
* `apply` folds one window of a prepared batch into numpy arrays. No Python loop runs per event
  or per pair; the only loops are per *new account* (its sign-up metadata).

Keys are what accounts can share: an address, a prompt-template band, a system prompt, a payment
fingerprint, an e-mail domain, a sign-up burst. A key shared by two or more accounts enters the
list of shared pairs, which is all the campaign assembly looks at.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from distillguard.detect._codebook import SortedRuns
from distillguard.detect._items import ItemBatch, ItemBook

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000

# Per-event counters summed per account.
COUNTERS = ("n", "cot", "rubric", "datagen", "coding", "math", "tool", "single", "browser", "capped",
            "night", "release", "completion", "distill")  # distill: P(distill) in percent, summed

# Keys an account can share with others. Event keys come from the signals; account keys from
# the accounts table. `day` only counts active days and never links accounts; nor do the edge
# keys (a prompt's first and last word), which only say how often an account repeats one.
EDGE_KINDS = ("lead", "end")
EVENT_KINDS = ("ip", "head0", "head1", "tail0", "tail1", "sys", "day", *EDGE_KINDS)
ACCOUNT_KINDS = ("payment", "email", "created")
# Kind ids are indices here: the edge kinds come last so that the ids of the others stay those
# a checkpoint written before them holds.
ALL_KINDS = tuple(k for k in EVENT_KINDS if k not in EDGE_KINDS) + ACCOUNT_KINDS + EDGE_KINDS
LINK_KINDS = ("ip", "head0", "head1", "tail0", "tail1", "sys", "payment", "email", "created")
TEMPLATE_KINDS = ("head0", "head1", "tail0", "tail1", "sys")
# Link index (a shared pair's first column, `sid_link`) -> is it a prompt template key.
IS_TEMPLATE_LINK = np.array([k in TEMPLATE_KINDS for k in LINK_KINDS])

_KIND_ID = {k: i for i, k in enumerate(ALL_KINDS)}
# Kind id -> index in LINK_KINDS (-1: never links).
_LINK_INDEX = np.array([LINK_KINDS.index(k) if k in LINK_KINDS else -1 for k in ALL_KINDS])
_TEMPLATE_IDS = [_KIND_ID[k] for k in TEMPLATE_KINDS]
_EDGE_IDS = [_KIND_ID[k] for k in EDGE_KINDS]
_EVENT_KIND_IDS = [_KIND_ID[k] for k in EVENT_KINDS]
ACCOUNT_KIND_LINKS = [LINK_KINDS.index(k) for k in ACCOUNT_KINDS]
# Columns of a shared pair (`shared_pairs`): the link kind (index in LINK_KINDS), the key's
# code, the account, and the shared-key id (sid).
PAIR_KIND, PAIR_CODE, PAIR_ACCOUNT, PAIR_KEY = 0, 1, 2, 3
_ACCT_BITS = 24  # pair id = key code << 24 | account code
# An account's requests on one template key are kept (per pair, causally) once they reach this
# many; below it they read as 0 (see `pair_events`).
HEAVY_PAIR_EVENTS = 20

RECENT_SIGNUP_DAYS = 30
# Distinct addresses beyond the first at which an account's address churn is full (an
# integer: churn is kept in whole units of 1 / IP_CHURN_FULL, see `_links.AddressChurn`).
IP_CHURN_FULL = 4
# An e-mail domain used by more than this share of the accounts known (and more than
# COMMON_EMAIL_MIN_ACCOUNTS of them) is a big provider: it never becomes a key.
COMMON_EMAIL_SHARE = 0.01
COMMON_EMAIL_MIN_ACCOUNTS = 3.0

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


def add_rows(a: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """`np.add.at(a, rows, values)` for a 2-D `a`, column by column: numpy's fast path for
    `ufunc.at` is one-dimensional, and this is 10-20 times faster than the 2-D call."""
    for j in range(a.shape[1]):
        np.add.at(a[:, j], rows, values[:, j])


def add_unique_rows(a: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """`np.add.at(a, rows, values)` where `rows` holds no value twice (a window's rows grouped
    by it): one fancy-indexed add gives every row the same single addition, without
    `ufunc.at`'s per-element loop."""
    a[rows] += values


def add_unique_cells(a: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     values: np.ndarray) -> None:
    """`np.add.at(a, (rows, cols), values)` where no (row, col) cell comes twice (see
    `add_unique_rows`)."""
    a[rows, cols] += values


def add_cells(a: np.ndarray, rows: np.ndarray, cols: np.ndarray,
              values: np.ndarray | int) -> None:
    """`np.add.at(a, (rows, cols), values)` for a C-contiguous 2-D `a`, through its flat view
    (the same fast path)."""
    if not a.flags.c_contiguous:
        raise ValueError("add_cells needs a C-contiguous array")
    np.add.at(a.reshape(-1), rows * a.shape[1] + cols, values)


#: How much longer a per-key array's buffer grows each time it is full (see `extend`).
GROWTH = 1.5


def extend(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`np.concatenate([a, rows])`, amortised: the result is a view of the first rows of a
    longer buffer, and when `a` is such a view with room left, `rows` are written into the
    room (no copy of `a`). `a` is taken over: the result shares its rows."""
    n, k = len(a), len(rows)
    base = a.base
    if (isinstance(base, np.ndarray) and base.dtype == a.dtype and base.shape[1:] == a.shape[1:]
            and base.flags.c_contiguous and a.flags.c_contiguous
            and a.ctypes.data == base.ctypes.data and n + k <= len(base)):
        base[n : n + k] = rows
        return base[: n + k]
    buf = np.empty((max(n + k, int(GROWTH * n), 1024), *a.shape[1:]), a.dtype)
    buf[:n] = a
    buf[n : n + k] = rows
    return buf[: n + k]


def _utc_offset(meta: dict[str, object]) -> float:
    return UTC_OFFSET_HOURS.get(str(meta.get("country") or ""), 0.0)


@dataclass
class _Rows:
    """One prepared table: its columns as numpy arrays, sorted by window `w`."""

    cols: dict[str, np.ndarray]

    def window(self, w: int) -> dict[str, np.ndarray]:
        ws = self.cols["w"]
        lo, hi = np.searchsorted(ws, [w, w + 1])
        return {k: v[lo:hi] for k, v in self.cols.items()}

    @classmethod
    def of(cls, frame: pl.DataFrame) -> _Rows:
        return cls({c: frame[c].to_numpy() for c in frame.columns})


@dataclass
class Prepared:
    """A batch of signals grouped by window, ready for `DetectorState.apply`."""

    windows: np.ndarray  # the windows present, ascending
    window_end_us: np.ndarray  # latest event time in each of them
    accounts: _Rows  # w, acct, first_ts (new accounts, in code order)
    counters: _Rows  # w, acct, last_ts and one column per COUNTERS name
    hours: _Rows  # w, acct, hour, c
    new_pairs: _Rows  # w, kind, code, acct, first_ts (first use of a key by an account)
    template_max: _Rows  # w, acct, top (running count of the account's most used template)
    key_counts: _Rows  # w, code and one column per COUNTERS name: the traffic carrying each key
    heavy_pairs: _Rows  # w, code, acct, cum: template pairs with >= HEAVY_PAIR_EVENTS requests by then
    edge_pairs: _Rows  # w, kind, code, acct, cum: running counts of (account, edge key) pairs
    # Accounts and keys first seen in the batch, for `DetectorState.admit`.
    new_accounts: pl.DataFrame  # account_id, acct
    new_keys: pl.DataFrame  # kind, code, label, first_ts, key
    items: ItemBatch | None = None  # the batch's items (`_items`), None without item signals
    admitted: bool = False


def release_times(models: pl.DataFrame | None) -> dict[str, int]:
    """Model -> release time (µs since the epoch) from the format's `models` table; models
    without one are left out."""
    out: dict[str, int] = {}
    if models is not None and models.height and "released_at" in models.columns:
        for model, rel in models.select("model", "released_at").iter_rows():
            if rel is not None:
                out[str(model)] = int(rel.timestamp() * 1_000_000)
    return out


class DetectorState:
    """Running totals per account and per shared key, grown window by window."""

    def __init__(self, accounts: pl.DataFrame | None = None,
                 models: pl.DataFrame | None = None) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._reserved = 0  # account codes handed out by `prepare` (>= len(ids))
        self._key_codes = 0  # key codes handed out by `prepare`
        self._acct_codes = pl.DataFrame(schema={"account_id": pl.String, "acct": pl.Int64})
        self._cap = 0
        self.counters: dict[str, np.ndarray] = {}
        self.first_ts = np.zeros(0, np.int64)
        self.last_ts = np.zeros(0, np.int64)
        self.created_us = np.zeros(0, np.float64)
        self.risky_channel = np.zeros(0, bool)
        self.verified = np.zeros(0, bool)
        self.enterprise = np.zeros(0, bool)
        self.offset_h = np.zeros(0, np.float64)
        self.hours = np.zeros((0, 24), np.int64)
        self.ip_count = np.zeros(0, np.int64)
        self.template_max = np.zeros(0, np.int64)
        # Per account and edge kind (columns, EDGE_KINDS): the running count of its most used
        # edge key and that key's code (-1: none yet).
        self.edge_top = np.zeros((0, len(EDGE_KINDS)), np.int64)
        self.edge_top_key = np.zeros((0, len(EDGE_KINDS)), np.int64)
        self.partner = np.zeros(0, bool)  # matches partners' shared indicators
        self.items = ItemBook()  # items per account and who shares them (`_items`)
        self._grow_accounts(1024)
        # Keys: dense codes over all kinds, a codebook (key hash -> code) per kind.
        self._key_books = [SortedRuns(np.int64) for _ in ALL_KINDS]
        self.key_kind = np.zeros(0, np.int8)
        self.key_hash = np.zeros(0, np.uint64)  # per code: the key's hash (see `key_values`)
        self.key_accounts = np.zeros(0, np.int64)
        self.key_first = np.zeros(0, np.int64)
        self.key_sid = np.zeros(0, np.int64)  # dense id among shared keys, -1 until shared
        self.key_first_ts = np.zeros(0, np.int64)
        # Per key: COUNTERS summed over the events that carry it (event kinds), and the
        # number of its accounts that are new, on a risky sign-up channel, unverified.
        self.key_counts = np.zeros((0, len(COUNTERS)), np.float64)
        self.key_static = np.zeros((0, 3), np.float64)
        # Per key: the `applied` count when its traffic, accounts or static counts last changed
        # (lets a consumer recompute only the keys changed since it last looked).
        self.key_changed = np.zeros(0, np.int64)
        self.applied = 0  # windows applied so far
        self.sid_code = np.zeros(0, np.int64)
        self.sid_link = np.zeros(0, np.int64)  # link kind index of each shared key
        self.shared_keys = 0
        self.key_label: list[str] = []
        # Running event totals per (account, key) pair, by pair id (key code << 24 | account);
        # a pair's requests are far below 2**31.
        self._pair_totals = SortedRuns(np.int32)
        self._heavy_ids = np.zeros(0, np.uint64)  # sorted pair ids (see `pair_events`)
        self._heavy_counts = np.zeros(0, np.int64)
        # Pairs of keys shared by >= 2 accounts: (link kind index, key code, account, key sid).
        self._shared_buf = np.zeros((1024, 4), np.int64)
        self._acct_pairs: list[np.ndarray] = []  # the shared pairs of account kinds, kept apart
        self._shared_n = 0
        self.now_us = 0
        self.events_seen = 0
        self._meta: dict[str, dict[str, object]] = {}
        self.partners: set[str] = set()  # accounts matching partners' indicators
        self._email_accounts: dict[str, int] = {}
        if accounts is not None:
            self.add_account_metadata(accounts)
        self.releases = release_times(models)

    def __setstate__(self, saved: dict[str, object]) -> None:
        self.__dict__.update(saved)
        # A checkpoint written before the codebooks were sorted runs: one run each.
        if "_pair_ids" in saved:
            self._pair_totals = SortedRuns.of(np.asarray(self.__dict__.pop("_pair_ids")),
                                              np.asarray(saved["_pair_totals"]), np.int32)
        if "_keys" in saved:
            keys = self.__dict__.pop("_keys").sort("code")
            self.key_hash = keys["key"].to_numpy().astype(np.uint64)
            self._key_books = [SortedRuns(np.int64) for _ in ALL_KINDS]
            for kind, part in keys.partition_by("kind", as_dict=True).items():
                self._key_books[int(kind[0])].add(part["key"].to_numpy(), part["code"].to_numpy())
        # A checkpoint written before the edge kinds: no account has an edge key yet.
        if "edge_top" not in saved:
            self.edge_top = np.zeros((self._cap, len(EDGE_KINDS)), np.int64)
            self.edge_top_key = np.full((self._cap, len(EDGE_KINDS)), -1, np.int64)

    @property
    def size(self) -> int:
        return len(self.ids)

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
    def _grow_accounts(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, self._cap * 2)

        def grow(a: np.ndarray, fill: float = 0) -> np.ndarray:
            out = np.full((cap,) + a.shape[1:], fill, dtype=a.dtype)
            out[: a.shape[0]] = a
            return out

        for name in COUNTERS:
            self.counters[name] = grow(self.counters.get(name, np.zeros(0, np.int64)))
        self.first_ts = grow(self.first_ts)
        self.last_ts = grow(self.last_ts)
        self.created_us = grow(self.created_us, np.nan)
        self.risky_channel = grow(self.risky_channel)
        self.verified = grow(self.verified)
        self.enterprise = grow(self.enterprise)
        self.offset_h = grow(self.offset_h)
        self.hours = grow(self.hours)
        self.ip_count = grow(self.ip_count)
        self.partner = grow(self.partner)
        self.template_max = grow(self.template_max)
        self.edge_top = grow(self.edge_top)
        self.edge_top_key = grow(self.edge_top_key, -1)
        self.items.grow(cap)
        self._cap = cap

    # -- prepare ----------------------------------------------------------------------------
    def _reserve_accounts(self, sig: pl.DataFrame) -> pl.DataFrame:
        """Codes for accounts first seen in `sig`, in order of first appearance."""
        first = sig.group_by("account_id", maintain_order=True).agg(
            pl.col("ts_us").first().alias("first_ts"), pl.col("w").first()
        )
        new = first.join(self._acct_codes, on="account_id", how="anti", maintain_order="left")
        new = new.with_columns(
            (pl.int_range(pl.len(), dtype=pl.Int64) + self._reserved).alias("acct")
        )
        if new.height:
            self._acct_codes = pl.concat([self._acct_codes, new.select("account_id", "acct")])
            self._reserved += new.height
        return new

    def _set_static(self, aid: str, i: int) -> None:
        meta = self._meta.get(aid, {})
        created = meta.get("created_at")
        self.created_us[i] = (
            created.timestamp() * 1_000_000 if isinstance(created, datetime) else np.nan
        )
        channel = str(meta.get("signup_channel") or "")
        self.risky_channel[i] = channel in RISKY_CHANNELS
        self.enterprise[i] = channel == "enterprise"
        self.verified[i] = bool(meta.get("verified") or False)
        self.offset_h[i] = _utc_offset(meta)
        self.partner[i] = aid in self.partners

    def _account_keys(self, new: pl.DataFrame) -> pl.DataFrame:
        """Sign-up keys (payment, e-mail domain, sign-up hour) of newly seen accounts."""
        rows: dict[str, list[object]] = {"w": [], "kind": [], "acct": [], "key": [], "label": [],
                                         "first_ts": []}
        big_domain = max(COMMON_EMAIL_MIN_ACCOUNTS, COMMON_EMAIL_SHARE * max(1, len(self._meta)))

        def add(w: int, kind: str, acct: int, key: int, label: str) -> None:
            rows["first_ts"].append(first_ts[acct])
            rows["w"].append(w)
            rows["kind"].append(_KIND_ID[kind])
            rows["acct"].append(acct)
            rows["key"].append(key)
            rows["label"].append(label)

        first_ts = dict(zip(new["acct"].to_list(), new["first_ts"].to_list(), strict=True))
        for aid, w, acct in new.select("account_id", "w", "acct").iter_rows():
            meta = self._meta.get(aid, {})
            pay = meta.get("payment_fingerprint")
            if isinstance(pay, str) and pay:
                add(w, "payment", acct, stable_hash("pay", pay), pay)
            dom = meta.get("email_domain")
            # A domain most accounts share (a big webmail provider) says nothing.
            if isinstance(dom, str) and dom and self._email_accounts.get(dom, 0) <= big_domain:
                add(w, "email", acct, stable_hash("email", dom), dom)
            created = meta.get("created_at")
            # A sign-up burst says "opened for this": only accounts put to use within a month of
            # opening count (enterprise accounts opened together years ago are not a farm).
            recent = isinstance(created, datetime) and (
                first_ts[acct] - created.timestamp() * 1_000_000 < RECENT_SIGNUP_DAYS * DAY_US
            )
            if isinstance(created, datetime) and recent:
                channel = str(meta.get("signup_channel") or "unknown")
                hour = created.astimezone(UTC).strftime("%Y-%m-%d %H:00")
                add(w, "created", acct, stable_hash("created", channel, hour),
                    f"({channel} sign-ups in the hour from {hour} UTC)")
        return pl.DataFrame(
            rows,
            schema={"w": pl.Int64, "kind": pl.Int8, "acct": pl.Int64, "key": pl.UInt64,
                    "label": pl.String, "first_ts": pl.Int64},
        ).with_columns(pl.lit(1, pl.UInt32).alias("c"))

    def _key_codes_of(self, kind: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Codes of (kind, key hash) pairs (-1: not coded yet)."""
        out = np.full(len(key), -1, np.int64)
        for k in np.unique(kind).tolist():
            at = kind == k
            out[at] = self._key_books[k].get(key[at], default=-1)
        return out

    def _encode_keys(self, pairs: pl.DataFrame,
                     sig: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Give every (kind, key) a dense code, new keys in order of first appearance.

        Event keys are labelled by the row of `sig` that first carried them (its address, or
        its event id for a template), account keys by their `label`. Returns the pairs with
        their codes, the new keys (kind, code, label, first_ts, key) and the batch's keys with
        their codes (kind, key, code). Only the batch's distinct keys are looked up in the
        codebooks (and only its new ones added): no join against every key known.
        """
        seen = pairs.select("kind", "key", "label", "row", "first_ts").unique(
            ["kind", "key"], keep="first", maintain_order=True
        )
        kind, key = seen["kind"].to_numpy(), seen["key"].to_numpy()
        code = self._key_codes_of(kind, key)
        fresh = code < 0
        code[fresh] = self._key_codes + np.arange(int(fresh.sum()))
        for k in np.unique(kind[fresh]).tolist():
            at = fresh & (kind == k)
            self._key_books[k].add(key[at], code[at])
        self._key_codes += int(fresh.sum())
        seen = seen.with_columns(pl.Series("code", code))
        new = seen.filter(pl.Series(fresh))
        rows = new["row"].fill_null(0)
        new = new.with_columns(
            pl.when(pl.col("label").is_not_null())
            .then(pl.col("label"))
            .when(pl.col("kind") == _KIND_ID["ip"])
            .then(sig["ip"].gather(rows))
            .otherwise(sig["event_id"].gather(rows))
            .alias("label")
        ) if new.height else new
        codes = seen.select("kind", "key", "code")
        coded = pairs.join(codes, on=["kind", "key"], how="left", maintain_order="left")
        return coded, new.select("kind", "code", "label", "first_ts", "key"), codes

    def prepare(self, sig: pl.DataFrame, step_us: int | None = None,
                origin_us: int = 0) -> Prepared:
        """Group time-ordered signals by window (`(ts - origin) // step`; one window if None).

        Only the codebooks (accounts', keys', pairs' running totals) change here, never an
        array that `apply` or the scoring reads: the replay prepares the next batch in a
        thread while the current one is applied. The new accounts and keys join the arrays in
        `admit`, which `apply` calls first.
        """
        if step_us is None:
            w_expr = pl.lit(0, pl.Int64)
        else:
            w_expr = (pl.col("ts_us") - origin_us) // step_us
        sig = sig.with_columns(w_expr.alias("w"))
        admitted = self._reserved
        new = self._reserve_accounts(sig)
        sig = sig.join(self._acct_codes, on="account_id", how="left", maintain_order="left")
        acct = sig["acct"].to_numpy()
        ts = sig["ts_us"].to_numpy()
        offset = np.concatenate([
            self.offset_h[:admitted],
            [_utc_offset(self._meta.get(aid, {})) for aid in new["account_id"].to_list()],
        ])
        local = ((ts // HOUR_US) % 24 + offset[acct]) % 24
        release = np.zeros(sig.height, bool)
        if self.releases:
            rel = sig["model"].replace_strict(self.releases, default=None, return_dtype=pl.Int64)
            r = rel.fill_null(-1).to_numpy()
            age = ts - r
            release = (r >= 0) & (age >= 0) & (age < 2 * DAY_US)
        flags = sig.select(
            "w", "acct",
            pl.col("ts_us").alias("last_ts"),
            pl.lit(1, pl.Int64).alias("n"),
            "cot", "rubric", "datagen", pl.col("code").alias("coding"), "math",
            (pl.col("tools") > 0).alias("tool"),
            (pl.col("turns") <= 1).alias("single"),
            pl.col("is_browser").alias("browser"),
            "capped",
            pl.Series("night", local < 6),
            pl.Series("release", release),
            pl.col("completion_tokens").alias("completion"),
            pl.col("distill").cast(pl.Int64),
        )
        counters = flags.group_by("w", "acct", maintain_order=True).agg(
            pl.col("last_ts").max(), *[pl.col(c).cast(pl.Int64).sum() for c in COUNTERS]
        )
        hours = (
            flags.select("w", "acct", pl.Series("hour", local.astype(np.int64)))
            .group_by("w", "acct", "hour", maintain_order=True)
            .agg(pl.len().alias("c"))
        )
        pairs, traffic = self._event_pairs(sig, flags)
        if new.height:
            pairs = pl.concat([pairs, self._account_keys(new)], how="diagonal_relaxed").sort(
                "w", maintain_order=True
            )
        else:
            pairs = pairs.with_columns(pl.lit(None, pl.String).alias("label"))
        pairs, new_keys, codes = self._encode_keys(pairs, sig)
        # (The traffic's keys are the batch's event keys: all in `codes`.)
        key_counts = traffic.join(codes, on=["kind", "key"], how="left",
                                  maintain_order="left").select("w", "code", *COUNTERS)
        new_pairs, template_max, heavy_pairs, edge_pairs = self._running_totals(pairs)
        items = (self.items.prepare(sig["w"].to_numpy(), acct, sig["item"], sig["topic"].to_numpy())
                 if "item" in sig.columns else None)
        windows = counters["w"].unique(maintain_order=True).to_numpy()
        ends = counters.group_by("w", maintain_order=True).agg(pl.col("last_ts").max())
        return Prepared(
            windows=windows,
            window_end_us=ends["last_ts"].to_numpy(),
            accounts=_Rows.of(new.select("w", "acct", "first_ts")),
            counters=_Rows.of(counters),
            hours=_Rows.of(hours),
            new_pairs=_Rows.of(new_pairs),
            template_max=_Rows.of(template_max),
            key_counts=_Rows.of(key_counts),
            heavy_pairs=_Rows.of(heavy_pairs),
            edge_pairs=_Rows.of(edge_pairs),
            new_accounts=new.select("account_id", "acct"),
            new_keys=new_keys,
            items=items,
        )

    def admit(self, prep: Prepared) -> None:
        """Make room for the accounts and keys a prepared batch saw first (once per batch)."""
        if prep.admitted:
            return
        prep.admitted = True
        new = prep.new_accounts
        if new.height:
            self._grow_accounts(int(new["acct"].to_numpy().max()) + 1)
            for aid, code in zip(new["account_id"].to_list(), new["acct"].to_list(), strict=True):
                self._set_static(aid, code)
        keys = prep.new_keys
        if keys.height:
            self.key_label.extend(keys["label"].to_list())
            # Per-key arrays grow in place (`extend`): a copy of every key per chunk otherwise.
            k = keys.height
            self.key_kind = extend(self.key_kind, keys["kind"].to_numpy())
            self.key_hash = extend(self.key_hash, keys["key"].to_numpy())
            self.key_accounts = extend(self.key_accounts, np.zeros(k, np.int64))
            self.key_first = extend(self.key_first, np.full(k, -1, np.int64))
            self.key_sid = extend(self.key_sid, np.full(k, -1, np.int64))
            self.key_first_ts = extend(self.key_first_ts, keys["first_ts"].to_numpy())
            self.key_counts = extend(self.key_counts, np.zeros((k, len(COUNTERS))))
            self.key_static = extend(self.key_static, np.zeros((k, 3)))
            self.key_changed = extend(self.key_changed, np.full(k, self.applied + 1, np.int64))

    @staticmethod
    def _event_pairs(sig: pl.DataFrame,
                     flags: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Per kind of key, grouped one kind at a time so memory stays at one kind's worth:

        * pairs (w, kind, acct, key, row, first_ts, c): how often each account used each key
          (`row`: the first row of `sig` with it);
        * traffic (w, kind, key, COUNTERS...): what the traffic carrying each key looked like.
        """
        keyed = pl.concat(
            [
                sig.select(
                    pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
                    pl.col("ip").hash(3).alias("ip"),
                    *TEMPLATE_KINDS,
                    (pl.col("ts_us") // DAY_US).cast(pl.UInt64).alias("day"),
                    *EDGE_KINDS,
                ),
                flags.select("w", "acct", pl.col("last_ts").alias("ts"),
                             *[pl.col(c).cast(pl.Int64) for c in COUNTERS]),
            ],
            how="horizontal",
        )
        pairs, traffic = [], []
        for kind in EVENT_KINDS:
            kind_id = pl.lit(_KIND_ID[kind], pl.Int8).alias("kind")
            base = keyed.select(
                "w", "acct", pl.col(kind).cast(pl.UInt64).alias("key"), "row", "ts", *COUNTERS,
            ).filter(pl.col("key").is_not_null())
            pairs.append(
                base.group_by("w", "acct", "key", maintain_order=True)
                .agg(pl.col("row").first(), pl.col("ts").first().alias("first_ts"),
                     pl.len().alias("c"))
                .with_columns(kind_id)
            )
            # An edge key's traffic is read for its request count only (`_cohort.frame_counts`).
            sums = ([pl.col(c).sum() for c in COUNTERS] if kind not in EDGE_KINDS else
                    [pl.len().cast(pl.Int64).alias(c) if c == "n" else pl.lit(0, pl.Int64).alias(c)
                     for c in COUNTERS])
            traffic.append(
                base.group_by("w", "key", maintain_order=True).agg(*sums).with_columns(kind_id)
            )
        cols = ["w", "kind", "acct", "key", "row", "first_ts", "c"]
        return (
            pl.concat([p.select(cols) for p in pairs]).sort("w", maintain_order=True),
            pl.concat(traffic).sort("w", maintain_order=True),
        )

    def _running_totals(
        self, pairs: pl.DataFrame
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """First uses of each (account, key) pair, the running template counts, the
        template pairs that have reached `HEAVY_PAIR_EVENTS` requests, and the edge pairs
        (running counts).

        Sorts the batch's pairs by pair id once (stable: time order within a pair) and looks
        the earlier totals up in the codebook of all pairs seen so far (`SortedRuns`: the
        batch's new pairs join it without a copy of the older ones).
        """
        pair = (pairs["code"].to_numpy().astype(np.uint64) << np.uint64(_ACCT_BITS)) | pairs[
            "acct"
        ].to_numpy().astype(np.uint64)
        c = pairs["c"].to_numpy().astype(np.int64)
        order = np.argsort(pair, kind="stable")
        sp, sc = pair[order], c[order]
        start = np.r_[True, sp[1:] != sp[:-1]] if len(sp) else np.zeros(0, bool)
        seg = np.cumsum(start) - 1
        heads = sp[start]
        book = self._pair_totals
        run, at = book.locate(heads)
        found = run >= 0
        prior = book.values_at(run, at).astype(np.int64)
        cs = np.cumsum(sc)
        before = (cs - sc)[start]  # the batch's count of the pair before its first row
        cum = np.empty(len(pair), np.int64)
        cum[order] = prior[seg] + cs - before[seg]
        is_new = np.zeros(len(pair), bool)
        is_new[order] = start & ~found[seg]
        seg_total = prior + np.add.reduceat(sc, np.flatnonzero(start)) if len(sc) else prior
        # In place: only `prepare` reads the totals.
        book.assign(run[found], at[found], seg_total[found])
        book.add(heads[~found], seg_total[~found])
        pairs = pairs.with_columns(pl.Series("cum", cum), pl.Series("is_new", is_new))
        new_pairs = pairs.filter("is_new").select("w", "kind", "code", "acct", "first_ts")
        template_max = (
            pairs.filter(pl.col("kind").is_in(_TEMPLATE_IDS))
            .group_by("w", "acct", maintain_order=True)
            .agg(pl.col("cum").max().alias("top"))
        )
        heavy = pairs.filter(
            pl.col("kind").is_in(_TEMPLATE_IDS) & (pl.col("cum") >= HEAVY_PAIR_EVENTS)
        ).select("w", "code", "acct", "cum")
        edges = pairs.filter(pl.col("kind").is_in(_EDGE_IDS)).select("w", "kind", "code", "acct",
                                                                      "cum")
        return new_pairs, template_max, heavy, edges

    # -- apply ------------------------------------------------------------------------------
    def apply(self, prep: Prepared, w: int) -> None:
        """Fold window `w` of a prepared batch into the state."""
        self.admit(prep)
        self.applied += 1
        acc = prep.accounts.window(w)
        for code, first in zip(acc["acct"].tolist(), acc["first_ts"].tolist(), strict=True):
            aid = str(self._acct_codes["account_id"][code])
            self.ids.append(aid)
            self.index[aid] = code
            self.first_ts[code] = first
        c = prep.counters.window(w)
        a = c["acct"]  # (grouped by window and account: each account once)
        for name in COUNTERS:
            add_unique_rows(self.counters[name], a, c[name])
        np.maximum.at(self.last_ts, a, c["last_ts"])
        if len(c["last_ts"]):
            self.now_us = max(self.now_us, int(c["last_ts"].max()))
        self.events_seen += int(c["n"].sum())
        h = prep.hours.window(w)
        # (Grouped by window, account and hour: each cell once.)
        add_unique_cells(self.hours, h["acct"], h["hour"], h["c"])
        t = prep.template_max.window(w)
        np.maximum.at(self.template_max, t["acct"], t["top"])
        self._apply_new_pairs(prep.new_pairs.window(w))
        self._apply_heavy(prep.heavy_pairs.window(w))
        self._apply_edges(prep.edge_pairs.window(w))
        if prep.items is not None:
            self.items.apply(prep.items, w)
        k = prep.key_counts.window(w)
        if len(k["code"]):
            self.key_changed[k["code"]] = self.applied
            # (The traffic is grouped by window and key: each key code once.)
            add_unique_rows(self.key_counts, k["code"],
                            np.column_stack([k[c] for c in COUNTERS]).astype(np.float64))

    def _apply_new_pairs(self, p: dict[str, np.ndarray]) -> None:
        kind, code, acct = p["kind"].astype(np.int64), p["code"], p["acct"]
        if not len(code):
            return
        np.add.at(self.ip_count, acct[kind == _KIND_ID["ip"]], 1)
        # Membership number of each new pair within its key, in arrival order.
        order = np.argsort(code, kind="stable")
        sc = code[order]
        group_start = np.r_[0, np.flatnonzero(sc[1:] != sc[:-1]) + 1]
        rank_sorted = np.arange(len(sc)) - np.repeat(group_start, np.diff(np.r_[group_start, len(sc)]))
        rank = np.empty_like(rank_sorted)
        rank[order] = rank_sorted
        n = self.key_accounts[code] + rank + 1
        np.add.at(self.key_accounts, code, 1)
        self.key_changed[code] = self.applied
        age_days = (self.first_ts[acct] - self.created_us[acct]) / DAY_US
        static = np.column_stack(
            [np.nan_to_num(age_days, nan=1e9) < 14, self.risky_channel[acct], ~self.verified[acct]]
        ).astype(np.float64)
        add_rows(self.key_static, code, static)
        firsts = n == 1
        self.key_first[code[firsts]] = acct[firsts]
        link = _LINK_INDEX[kind]
        shared = (n >= 2) & (link >= 0)
        second = (n == 2) & (link >= 0)
        fresh = code[second]
        self.key_sid[fresh] = np.arange(self.shared_keys, self.shared_keys + len(fresh))
        self.sid_code = extend(self.sid_code, fresh)
        self.sid_link = extend(self.sid_link, link[second])
        self.shared_keys += len(fresh)
        sid = self.key_sid[code]
        rows = [
            np.column_stack([link[second], fresh, self.key_first[fresh], sid[second]]),
            np.column_stack([link[shared], code[shared], acct[shared], sid[shared]]),
        ]
        for r in rows:
            self._append_shared(r.astype(np.int64))
        on_accounts = [r[np.isin(r[:, PAIR_KIND], ACCOUNT_KIND_LINKS)] for r in rows if len(r)]
        self._acct_pairs.extend(r.astype(np.int64) for r in on_accounts if len(r))

    def _apply_edges(self, p: dict[str, np.ndarray]) -> None:
        """Keep each account's most used key per edge kind (count and code)."""
        if not len(p["code"]):
            return
        col = np.searchsorted(_EDGE_IDS, p["kind"].astype(np.int64))
        acct, code, cum = p["acct"], p["code"], p["cum"]
        # The largest running count per (account, kind) in the window, then against the top so far.
        order = np.lexsort((cum, col, acct))
        acct, col, code, cum = acct[order], col[order], code[order], cum[order]
        last = np.r_[(acct[1:] != acct[:-1]) | (col[1:] != col[:-1]), True]
        acct, col, code, cum = acct[last], col[last], code[last], cum[last]
        up = cum > self.edge_top[acct, col]
        self.edge_top[acct[up], col[up]] = cum[up]
        self.edge_top_key[acct[up], col[up]] = code[up]

    def _apply_heavy(self, p: dict[str, np.ndarray]) -> None:
        if not len(p["code"]):
            return
        pid = (p["code"].astype(np.uint64) << np.uint64(_ACCT_BITS)) | p["acct"].astype(np.uint64)
        order = np.argsort(pid)  # new ids are inserted in order
        pid, cum = pid[order], p["cum"][order]
        ids, counts = self._heavy_ids, self._heavy_counts
        at = np.searchsorted(ids, pid)
        found = np.zeros(len(pid), bool)
        inside = at < len(ids)
        found[inside] = ids[at[inside]] == pid[inside]
        counts[at[found]] = cum[found]
        self._heavy_ids = np.insert(ids, at[~found], pid[~found])
        self._heavy_counts = np.insert(counts, at[~found], cum[~found])

    def pair_events(self, code: np.ndarray, acct: np.ndarray) -> np.ndarray:
        """Requests each (template key code, account) pair has sent so far, where that is at
        least `HEAVY_PAIR_EVENTS` (0 otherwise)."""
        pid = (code.astype(np.uint64) << np.uint64(_ACCT_BITS)) | acct.astype(np.uint64)
        ids = self._heavy_ids
        if not len(ids):
            return np.zeros(len(pid), np.int64)
        at = np.minimum(np.searchsorted(ids, pid), len(ids) - 1)
        return np.where(ids[at] == pid, self._heavy_counts[at], 0)

    def _append_shared(self, rows: np.ndarray) -> None:
        need = self._shared_n + len(rows)
        if need > len(self._shared_buf):
            buf = np.zeros((max(need, 2 * len(self._shared_buf)), 4), np.int64)
            buf[: self._shared_n] = self._shared_buf[: self._shared_n]
            self._shared_buf = buf
        self._shared_buf[self._shared_n : need] = rows
        self._shared_n = need

    def update(self, sig: pl.DataFrame) -> None:
        """Fold a batch of time-ordered signals in as one window."""
        if sig.height == 0:
            return
        prep = self.prepare(sig)
        self.apply(prep, 0)

    # -- views ------------------------------------------------------------------------------
    def account_codes(self, account_id: pl.Series) -> np.ndarray:
        """Codes of accounts `prepare` has seen (-1: none yet), in the order given."""
        frame = pl.DataFrame({"account_id": account_id.cast(pl.String)})
        got = frame.join(self._acct_codes, on="account_id", how="left", maintain_order="left")
        out: np.ndarray = got["acct"].fill_null(-1).to_numpy()
        return out

    def key_codes(self, kind: int, keys: np.ndarray) -> np.ndarray:
        """Codes of keys of one kind (an index in ALL_KINDS) by hash (-1: not coded yet); in
        the prepare thread, which alone adds to the codebooks."""
        out: np.ndarray = self._key_books[kind].get(np.asarray(keys, np.uint64), default=-1)
        return out

    def key_values(self, codes: np.ndarray) -> list[tuple[str, int]]:
        """(kind name, key hash) of these key codes, in their order."""
        codes = np.asarray(codes, np.int64)
        return [(ALL_KINDS[int(k)], int(v)) for k, v in
                zip(self.key_kind[codes].tolist(), self.key_hash[codes].tolist(), strict=True)]

    def shared_pairs(self) -> np.ndarray:
        """(link kind index, key code, account, shared key id) rows, keys with >= 2 accounts."""
        return self._shared_buf[: self._shared_n]

    def shared_account_pairs(self) -> np.ndarray:
        """The shared pairs of account kinds (payment, e-mail, sign-up burst): few, kept apart."""
        if len(self._acct_pairs) > 1:
            self._acct_pairs = [np.concatenate(self._acct_pairs)]
        return self._acct_pairs[0] if self._acct_pairs else np.zeros((0, 4), np.int64)
