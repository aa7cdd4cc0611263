"""Registries shared by every persona and campaign: accounts, keys, addresses, user agents,
the event plan (numeric columns only) and the arrival-time helpers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US

# Declared country, UTC offset in hours, share of benign accounts.
COUNTRIES: list[tuple[str, float, float]] = [
    ("US", -5, 0.16), ("US", -8, 0.10), ("IN", 5.5, 0.09), ("GB", 0, 0.06), ("DE", 1, 0.06),
    ("FR", 1, 0.04), ("BR", -3, 0.06), ("JP", 9, 0.05), ("KR", 9, 0.04), ("CA", -5, 0.04),
    ("AU", 10, 0.03), ("ID", 7, 0.04), ("VN", 7, 0.03), ("MX", -6, 0.03), ("ES", 1, 0.03),
    ("IT", 1, 0.02), ("NL", 1, 0.02), ("PL", 1, 0.02), ("TR", 3, 0.02), ("NG", 1, 0.02),
    ("PH", 8, 0.02), ("SG", 8, 0.02),
]
COUNTRY_TZ = {c: tz for c, tz, _ in COUNTRIES}

# Relative request rate by local hour (0..23).
HUMAN_PROFILE = np.array(
    [0.35, 0.2, 0.12, 0.08, 0.07, 0.08, 0.15, 0.3, 0.55, 0.8, 0.95, 1.0,
     0.9, 0.95, 1.0, 0.97, 0.9, 0.85, 0.85, 0.9, 0.95, 0.9, 0.75, 0.55]
)
OFFICE_PROFILE = np.array(
    [0.03, 0.02, 0.02, 0.02, 0.02, 0.03, 0.06, 0.2, 0.6, 0.95, 1.0, 1.0,
     0.7, 0.9, 1.0, 1.0, 0.95, 0.75, 0.4, 0.25, 0.2, 0.15, 0.1, 0.05]
)
FLAT_PROFILE = np.ones(24)

BROWSER_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_{m}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
]
SDK_UAS: list[tuple[str, str]] = [
    ("OpenAI/Python 1.{m}.0", "chat.completions"),
    ("AsyncOpenAI/Python 1.{m}.2", "chat.completions"),
    ("OpenAI/JS 4.{m}.1", "chat.completions"),
    ("anthropic-python/0.{m}.0", "messages"),
    ("python-httpx/0.2{d}.0", "chat.completions"),
    ("python-requests/2.3{d}.0", "chat.completions"),
    ("axios/1.{d}.2", "chat.completions"),
    ("curl/8.{d}.0", "completions"),
    ("langchain-openai/0.{d}.3 OpenAI/Python 1.{m}.0", "chat.completions"),
    ("Go-http-client/2.0", "chat.completions"),
]

FREE_MAIL = ["gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "proton.me",
             "qq.com", "163.com", "gmx.de", "yandex.ru", "naver.com", "mail.ru"]


@dataclass
class EndUsers:
    """Customers of resellers that pass their ids: id, the account they come through, truth."""

    end_user: list[str] = field(default_factory=list)
    acct: list[int] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    campaign_id: list[str | None] = field(default_factory=list)

    def add(self, acct: np.ndarray, label: str = "benign", campaign_id: str | None = None) -> np.ndarray:
        """Register one end user per entry of `acct` (account indices); their indices.

        Ids are hashes of the running count: deterministic, and drawing none from the world's
        generator keeps every other id of a seeded run unchanged."""
        first = len(self.end_user)
        for a in np.asarray(acct).tolist():
            n = len(self.end_user)
            self.end_user.append("user-" + hashlib.blake2b(f"eu{n}".encode(), digest_size=6).hexdigest())
            self.acct.append(int(a))
            self.label.append(label)
            self.campaign_id.append(campaign_id)
        return np.arange(first, len(self.end_user), dtype=np.int32)


def passes_end_users(account_id: str, share: float) -> bool:
    """Whether a reseller account declares its customers' ids: a stable draw from its id (no
    generator state is used, so the rest of a seeded run is unchanged)."""
    u = int.from_bytes(hashlib.blake2b(account_id.encode(), digest_size=4).digest(), "little") / 2**32
    return u < share


@dataclass
class Accounts:
    account_id: list[str] = field(default_factory=list)
    created_us: list[int] = field(default_factory=list)
    signup_channel: list[str] = field(default_factory=list)
    email_domain: list[str] = field(default_factory=list)
    payment_fingerprint: list[str | None] = field(default_factory=list)
    country: list[str] = field(default_factory=list)
    verified: list[bool] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    campaign_id: list[str | None] = field(default_factory=list)
    persona: list[str] = field(default_factory=list)
    distill_share: list[float] = field(default_factory=list)


class World:
    """Everything the event plans index into: accounts, keys, addresses, user agents."""

    def __init__(self, start_us: int, end_us: int, rng: np.random.Generator) -> None:
        self.start_us = start_us
        self.end_us = end_us
        self.rng = rng
        self.acc = Accounts()
        self._ids: set[str] = set()
        self.keys: list[str] = []
        self.acct_key_first: list[int] = []
        self.acct_key_n: list[int] = []
        self.ips: list[str] = []
        self._ip_set: set[str] = set()
        self.uas: list[str] = []
        self.ua_endpoint: list[str] = []
        self._ua_ix: dict[str, int] = {}
        # End users that resellers declare per request (the v1.1 `end_user` column).
        self.end_users = EndUsers()

    # ---- identifiers ---------------------------------------------------------
    def _hex(self, n: int) -> str:
        return "".join("0123456789abcdef"[int(d)] for d in self.rng.integers(16, size=n))

    def payment(self) -> str:
        return "pm_" + self._hex(16)

    def new_accounts(
        self,
        n: int,
        *,
        persona: str,
        label: str = "benign",
        campaign_id: str | None = None,
        created_us: np.ndarray,
        signup: list[str],
        email_domain: list[str],
        payment: list[str | None],
        country: list[str],
        verified: np.ndarray,
        keys: int | np.ndarray = 1,
        distill_share: float | None = None,
    ) -> np.ndarray:
        first = len(self.acc.account_id)
        nkeys = np.broadcast_to(np.asarray(keys), (n,))
        for i in range(n):
            aid = "acct_" + self._hex(12)
            while aid in self._ids:
                aid = "acct_" + self._hex(12)
            self._ids.add(aid)
            a = self.acc
            a.account_id.append(aid)
            a.created_us.append(int(created_us[i]))
            a.signup_channel.append(signup[i])
            a.email_domain.append(email_domain[i])
            a.payment_fingerprint.append(payment[i])
            a.country.append(country[i])
            a.verified.append(bool(verified[i]))
            a.label.append(label)
            a.campaign_id.append(campaign_id)
            a.persona.append(persona)
            a.distill_share.append(
                (1.0 if label == "distill" else 0.0) if distill_share is None else distill_share
            )
            self.acct_key_first.append(len(self.keys))
            k = int(nkeys[i])
            self.acct_key_n.append(k)
            self.keys.extend("key_" + self._hex(20) for _ in range(k))
        return np.arange(first, first + n, dtype=np.int32)

    def pick_keys(self, acct: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        first = np.asarray(self.acct_key_first, np.int64)[acct]
        n = np.asarray(self.acct_key_n, np.int64)[acct]
        # the first key carries most traffic, as with a main key and a few secondary ones
        off = np.where(rng.random(len(acct)) < 0.8, 0, rng.integers(0, 1 << 30, size=len(acct)) % n)
        out: np.ndarray = (first + off).astype(np.int32)
        return out

    def new_ips(self, n: int, kind: str = "residential") -> np.ndarray:
        """`n` fresh addresses: residential/datacenter IPv4, or mobile IPv6."""
        out = np.empty(n, np.int32)
        r = self.rng
        for i in range(n):
            while True:
                if kind == "mobile6":
                    s = "2a0{}:{:x}:{:x}:{:x}::{:x}".format(*(int(x) for x in r.integers(1, 0xFFFF, 5)))
                elif kind == "datacenter":
                    b = [int(x) for x in r.integers(1, 255, 3)]
                    s = f"{(34, 35, 52, 54, 104, 138, 159, 165)[b[0] % 8]}.{b[1]}.{b[2]}.{int(r.integers(2, 250))}"
                else:
                    b = [int(x) for x in r.integers(1, 255, 4)]
                    first = (24, 31, 46, 62, 68, 73, 79, 81, 86, 93, 98, 101, 112, 121, 171, 178,
                             183, 189, 201, 203)[b[0] % 20]
                    s = f"{first}.{b[1]}.{b[2]}.{b[3]}"
                if s not in self._ip_set:
                    break
            self._ip_set.add(s)
            out[i] = len(self.ips)
            self.ips.append(s)
        return out

    def new_range_ips(self, n: int) -> np.ndarray:
        """`n` fresh residential addresses inside one random /24 range (a proxy provider's
        block), at most 250 per range."""
        if not 1 <= n <= 250:
            raise ValueError(f"a /24 range holds 1-250 addresses, asked for {n}")
        r = self.rng
        while True:
            b = [int(x) for x in r.integers(1, 255, 3)]
            prefix = f"{(45, 77, 89, 104, 141, 154, 185, 193)[b[0] % 8]}.{b[1]}.{b[2]}."
            if not any(f"{prefix}{h}" in self._ip_set for h in range(1, 255)):
                break
        hosts = r.choice(np.arange(2, 254), size=n, replace=False)
        out = np.empty(n, np.int32)
        for i, h in enumerate(hosts):
            s = f"{prefix}{int(h)}"
            self._ip_set.add(s)
            out[i] = len(self.ips)
            self.ips.append(s)
        return out

    def ua(self, s: str, endpoint: str = "chat.completions") -> int:
        if s not in self._ua_ix:
            self._ua_ix[s] = len(self.uas)
            self.uas.append(s)
            self.ua_endpoint.append(endpoint)
        return self._ua_ix[s]

    def browser_ua(self, rng: np.random.Generator) -> int:
        t = BROWSER_UAS[int(rng.integers(len(BROWSER_UAS)))]
        return self.ua(t.format(v=int(rng.integers(118, 132)), m=int(rng.integers(0, 7))))

    def sdk_ua(self, rng: np.random.Generator, choices: int = len(SDK_UAS)) -> int:
        t, ep = SDK_UAS[int(rng.integers(choices))]
        return self.ua(t.format(m=int(rng.integers(30, 60)), d=int(rng.integers(0, 9))), ep)

    def countries(self, n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
        w = np.array([c[2] for c in COUNTRIES])
        ix = rng.choice(len(COUNTRIES), size=n, p=w / w.sum())
        return [COUNTRIES[int(i)][0] for i in ix], np.array([COUNTRIES[int(i)][1] for i in ix])


def sample_times(
    rng: np.random.Generator,
    tz: np.ndarray,
    lo_us: int | np.ndarray,
    hi_us: int | np.ndarray,
    profile: np.ndarray,
    weekend: float = 0.7,
) -> np.ndarray:
    """Arrival times in [lo, hi), weighted by `profile` at the local hour (UTC + tz) and by
    `weekend` on local Saturdays and Sundays. `lo`/`hi` may be per item."""
    n = len(tz)
    lo = np.broadcast_to(np.asarray(lo_us, np.int64), (n,))
    hi = np.broadcast_to(np.asarray(hi_us, np.int64), (n,))
    base = int(lo.min()) // HOUR_US * HOUR_US
    nh = int((int(hi.max()) - base + HOUR_US - 1) // HOUR_US)
    hours = base + np.arange(nh, dtype=np.int64) * HOUR_US
    out = np.empty(n, np.int64)
    # group by (tz, lo, hi) so each group is one weighted draw over whole hours
    keys = np.stack([np.rint(tz * 4).astype(np.int64), lo, hi], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    for g in range(len(uniq)):
        idx = order[bounds[g] : bounds[g + 1]]
        tzq, glo, ghi = (int(x) for x in uniq[g])
        local = hours + tzq * (HOUR_US // 4)
        hod = (local // HOUR_US) % 24
        dow = (local // DAY_US + 3) % 7  # 1970-01-01 was a Thursday; 5, 6 = Sat, Sun
        w = profile[hod] * np.where(dow >= 5, weekend, 1.0)
        w = np.where((hours + HOUR_US > glo) & (hours < ghi), w, 0.0)
        if w.sum() <= 0:
            w = np.where((hours + HOUR_US > glo) & (hours < ghi), 1.0, 0.0)
        h = rng.choice(nh, size=len(idx), p=w / w.sum())
        t = hours[h] + rng.integers(0, HOUR_US, size=len(idx))
        out[idx] = np.clip(t, glo, ghi - 1)
    return out


PLAN_COLUMNS: dict[str, tuple[type, int | float]] = {
    # name: (dtype, default)
    "ts": (np.int64, 0),
    "acct": (np.int32, 0),
    "key": (np.int32, -1),
    "ip": (np.int32, 0),
    "ua": (np.int32, 0),
    "model": (np.int16, 0),
    "system": (np.int32, 0),
    "lead": (np.int32, 0),
    "ctx": (np.int32, 0),
    "body": (np.int32, 0),
    "tail": (np.int32, 0),
    "turns": (np.int16, 1),
    "tools": (np.int16, 0),
    "hist": (np.int32, 0),
    "comp": (np.int32, 100),
    "maxtok": (np.int32, -1),
    "temp": (np.float32, float("nan")),
    "status": (np.int16, 200),
    "euser": (np.int32, -1),  # index into World.end_users; -1: the request names no end user
}


class Plan:
    """The events to write, as numeric columns (indices into the pools and registries)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, n: int, **cols: np.ndarray | int | float | np.floating) -> None:
        if n == 0:
            return
        part: dict[str, np.ndarray] = {}
        for name, (dt, default) in PLAN_COLUMNS.items():
            v = cols.pop(name, default)
            arr: np.ndarray = np.asarray(v, dtype=dt)
            part[name] = np.broadcast_to(arr, (n,)).copy() if arr.ndim == 0 else arr
            if len(part[name]) != n:
                raise ValueError(f"plan column {name} has {len(part[name])} rows, expected {n}")
        if cols:
            raise ValueError(f"unknown plan columns {sorted(cols)}")
        self.parts.append(part)

    def concat(self) -> dict[str, np.ndarray]:
        out = {
            name: np.concatenate([p[name] for p in self.parts]) if self.parts else np.zeros(0, dt)
            for name, (dt, _) in PLAN_COLUMNS.items()
        }
        self.parts = []
        return out
