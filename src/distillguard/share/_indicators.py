"""Partners' indicators in STIX 2.1: the patterns, importing a bundle, matching a log.

Exporting a campaign's own indicators is `distillguard.cases.export_bundle`, built on the
patterns and hashes defined here.

A bundle holds an `identity` (who shares), a `campaign`, and one `indicator` per value,
each `indicates` the campaign. Patterns, one comparison each:

| kind | pattern |
| --- | --- |
| template | `[x-distillguard-template:fingerprint = 'p5-…']` |
| ip | `[ipv4-addr:value = '203.0.113.7']` (or `ipv6-addr`) |
| net24 | `[ipv4-addr:value ISSUBSET '203.0.113.0/24']` |
| payment | `[x-distillguard-account:payment_sha256 = '…']` |
| email | `[x-distillguard-account:email_domain_sha256 = '…']` |
| user_agent | `[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = '…']` |

Payment instruments and e-mail domains never leave in clear: they are SHA-256 of
`distillguard-share-v1:<kind>:<value>` (`share_hash`), which partners running the same code
compute on their own accounts. Only values specific to the campaign are shared (by default
at least 90% of the accounts that use a value are members, and at most two accounts outside
it use it), so a shared NAT address, a common browser agent or a popular prompt opening
does not end up flagging a partner's customers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from distillguard._errors import ConfigError

SHARE_SALT = "distillguard-share-v1"

#: DuckDB SQL of a prompt's template over a `prompt` column: its first five words, lower-cased,
#: digits folded to `#`. A template indicator is `'p5-' || left(sha256(<this>), 16)`; partners
#: running the same code compute the same fingerprint.
TEMPLATE_SQL = r"""regexp_replace(array_to_string(list_slice(list_filter(
    string_split_regex(lower(left(prompt, 160)), '[ \t\n\r\f\v]+'), lambda w: w <> ''), 1, 5),
    ' '), '[0-9]+', '#', 'g')"""

#: Indicator kinds, in the order a bundle lists them.
INDICATOR_KINDS = ("template", "ip", "net24", "payment", "email", "user_agent")

_UA_PATH = "network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'"
_PATHS: dict[str, str] = {
    "template": "x-distillguard-template:fingerprint",
    "payment": "x-distillguard-account:payment_sha256",
    "email": "x-distillguard-account:email_domain_sha256",
    "user_agent": _UA_PATH,
}
_COMPARISON = re.compile(
    r"([a-z0-9-]+:[^\s=]+)\s+(=|ISSUBSET)\s+'((?:[^'\\]|\\.)*)'", re.IGNORECASE
)


def share_hash(kind: str, value: str) -> str:
    """The shared form of a payment instrument or e-mail domain (SHA-256, salted, lowercase)."""
    text = f"{SHARE_SALT}:{kind}:{value.strip().lower()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def pattern_for(kind: str, value: str) -> str:
    """The STIX pattern of one indicator value (`value` already hashed where it must be)."""
    if kind in ("ip", "net24"):
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ConfigError(f"{value!r} is not an IP address or range.") from exc
        obj = "ipv4-addr" if net.version == 4 else "ipv6-addr"
        if kind == "ip":
            return f"[{obj}:value = '{_quote(str(net.network_address))}']"
        return f"[{obj}:value ISSUBSET '{_quote(str(net))}']"
    if kind not in _PATHS:
        raise ConfigError(
            f"Unknown indicator kind {kind!r}; use one of {', '.join(INDICATOR_KINDS)}."
        )
    return f"[{_PATHS[kind]} = '{_quote(value)}']"



@dataclass(frozen=True)
class Indicator:
    """One indicator value as read back from a bundle."""

    kind: str
    value: str
    indicator_id: str
    source: str  # name of the identity that shared it, when the bundle says


@dataclass
class IndicatorSet:
    """Indicators loaded from bundles, as match sets a scan can use in scoring.

    Attributes hold the values per kind (payment and e-mail as `share_hash` values); `by_value`
    maps `(kind, value)` to the indicator ids that carry it.

    Examples:
        >>> ind = load_indicators("indicators/")  # doctest: +SKIP
        >>> ind.match_ip("203.0.113.7"), ind.match_payment("pay_7f3a9c")  # doctest: +SKIP
    """

    template_fingerprints: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    payment_hashes: set[str] = field(default_factory=set)
    email_hashes: set[str] = field(default_factory=set)
    user_agents: set[str] = field(default_factory=set)
    by_value: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    skipped: int = 0  # indicators whose pattern is not one of ours

    def add(self, ind: Indicator) -> None:
        """Add one indicator to the match sets."""
        self.by_value.setdefault((ind.kind, ind.value), []).append(ind.indicator_id)
        if ind.kind == "template":
            self.template_fingerprints.add(ind.value)
        elif ind.kind == "ip":
            self.ips.add(ind.value)
        elif ind.kind == "net24":
            net = ipaddress.ip_network(ind.value, strict=False)
            if net not in self.networks:
                self.networks.append(net)
        elif ind.kind == "payment":
            self.payment_hashes.add(ind.value)
        elif ind.kind == "email":
            self.email_hashes.add(ind.value)
        elif ind.kind == "user_agent":
            self.user_agents.add(ind.value)

    def __len__(self) -> int:
        return len(self.by_value)

    def match_ip(self, ip: str | None) -> bool:
        """Whether an address is listed or lies in a listed range."""
        if not ip:
            return False
        if ip in self.ips:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in self.networks)

    def network_of(self, ip: str) -> str:
        """The first listed range that holds `ip` ('' when none does)."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ""
        return next((str(n) for n in self.networks if addr.version == n.version and addr in n), "")

    def match_payment(self, payment_fingerprint: str | None) -> bool:
        """Whether an account's payment fingerprint (clear, as in `accounts`) is listed."""
        return (
            bool(payment_fingerprint)
            and share_hash("payment", str(payment_fingerprint)) in self.payment_hashes
        )

    def match_email_domain(self, domain: str | None) -> bool:
        """Whether an account's e-mail domain (clear, as in `accounts`) is listed."""
        return bool(domain) and share_hash("email", str(domain)) in self.email_hashes

    def match_user_agent(self, user_agent: str | None) -> bool:
        """Whether a user agent is listed (exact match)."""
        return bool(user_agent) and user_agent in self.user_agents

    def match_template(self, fingerprint: str | None) -> bool:
        """Whether a template fingerprint (see `mined_fingerprint`) is listed."""
        return bool(fingerprint) and fingerprint in self.template_fingerprints

    def match_accounts(self, log_dir: str | Path) -> pa.Table:
        """The accounts of a traffic log that match any indicator.

        Returns:
            A table `account_id, kind, value, events, indicator_ids` (one row per account and
            matched value; `events` counts the account's events that carry it, 0 for sign-up
            attributes), sorted by account.
        """
        return _match_accounts(self, Path(log_dir))


def _parse_pattern(pattern: str) -> list[tuple[str, str]]:
    """`(kind, value)` pairs of a pattern of ours; empty when it is not one we can use."""
    body = pattern.strip()
    if not (body.startswith("[") and body.endswith("]")) or re.search(
        r"\b(AND|FOLLOWEDBY|WITHIN|REPEATS)\b", body
    ):
        return []
    out: list[tuple[str, str]] = []
    for path, op, raw in _COMPARISON.findall(body):
        value = _unquote(raw)
        obj, _, prop = path.partition(":")
        if obj in ("ipv4-addr", "ipv6-addr") and prop == "value":
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                continue
            single = net.num_addresses == 1
            out.append(
                ("ip" if single else "net24", str(net.network_address) if single else str(net))
            )
            continue
        for kind, p in _PATHS.items():
            if path == p and op == "=":
                out.append((kind, value))
    return out


def _objects_from(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        import stix2

        src = stix2.FileSystemSource(str(path), allow_custom=True)
        found: list[dict[str, Any]] = []
        for kind in ("identity", "indicator"):
            for obj in src.query([stix2.Filter("type", "=", kind)]):
                found.append(json.loads(obj.serialize()))
        return found
    if not path.is_file():
        raise ConfigError(f"No STIX bundle or indicator store at {path}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}. Pass a STIX 2.1 bundle file.") from exc
    if not isinstance(data, dict) or data.get("type") != "bundle":
        raise ConfigError(f"{path} is not a STIX 2.1 bundle (its top-level type is not 'bundle').")
    objects = data.get("objects") or []
    return [o for o in objects if isinstance(o, dict)]


def load_indicators(path_or_store: str | Path | Sequence[str | Path]) -> IndicatorSet:
    """Load indicators from bundle files and/or indicator stores into match sets.

    Args:
        path_or_store: a bundle JSON file, a store directory written by `import_bundle`,
            or a list of them.

    Raises:
        ConfigError: a path is neither a bundle nor a store.
    """
    paths = [path_or_store] if isinstance(path_or_store, str | Path) else list(path_or_store)
    result = IndicatorSet()
    for p in paths:
        objects = _objects_from(Path(p))
        names = {o["id"]: str(o.get("name", "")) for o in objects if o.get("type") == "identity"}
        for obj in objects:
            if obj.get("type") != "indicator":
                continue
            if obj.get("pattern_type", "stix") != "stix" or obj.get("revoked"):
                result.skipped += 1
                continue
            pairs = _parse_pattern(str(obj.get("pattern", "")))
            if not pairs:
                result.skipped += 1
            source = names.get(str(obj.get("created_by_ref", "")), "")
            for kind, value in pairs:
                result.add(Indicator(kind, value, str(obj["id"]), source))
    return result


@dataclass(frozen=True)
class ImportReport:
    """What `import_bundle` did."""

    store: Path
    indicators: int
    added: int
    per_kind: dict[str, int]
    skipped: int


def import_bundle(path: str | Path, store_dir: str | Path) -> ImportReport:
    """Check a partner's bundle and add its objects to a local indicator store.

    The store is a `stix2.FileSystemStore` directory (one JSON file per object version);
    `load_indicators(store_dir)` reads everything imported so far.

    Raises:
        ConfigError: the file is not a STIX 2.1 bundle.
    """
    import stix2
    from stix2.exceptions import STIXError

    src = Path(path)
    objects = _objects_from(src) if src.is_file() else None
    if objects is None:
        raise ConfigError(f"No STIX bundle file at {src}; pass the JSON file a partner sent.")
    try:
        parsed = [stix2.parse(o, allow_custom=True) for o in objects]
    except (STIXError, ValueError) as exc:
        raise ConfigError(f"{src} holds an invalid STIX 2.1 object: {exc}") from exc
    store = Path(store_dir)
    store.mkdir(parents=True, exist_ok=True)
    sink = stix2.FileSystemSink(str(store), allow_custom=True)
    added = 0
    for obj in parsed:
        existing = store / obj["type"] / obj["id"]
        if existing.is_dir() and any(existing.iterdir()):
            continue  # this version (or another) of the object is already stored
        sink.add(obj)
        added += 1
    ind = load_indicators(src)
    per_kind: dict[str, int] = {}
    for kind, _ in ind.by_value:
        per_kind[kind] = per_kind.get(kind, 0) + 1
    return ImportReport(
        store, sum(1 for o in objects if o.get("type") == "indicator"), added, per_kind, ind.skipped
    )


def _match_accounts(ind: IndicatorSet, log_dir: Path) -> pa.Table:
    import duckdb

    from distillguard._logsql import has_table, register_view

    con = duckdb.connect()
    try:
        register_view(con, log_dir, "events", "ev")
        cols = {str(r[0]) for r in con.execute("DESCRIBE ev").fetchall()}
        rows: list[tuple[str, str, str, int]] = []
        per_net: dict[tuple[str, str, str], int] = {}
        if "ip" in cols:
            for acct, ip, n in con.execute(
                "SELECT account_id, ip, count(*) FROM ev WHERE ip IS NOT NULL GROUP BY ALL"
            ).fetchall():
                if ip in ind.ips:
                    rows.append((str(acct), "ip", str(ip), int(n)))
                elif ind.match_ip(ip):
                    net = ind.network_of(str(ip))
                    key = (str(acct), "net24", net)
                    per_net[key] = per_net.get(key, 0) + int(n)
            rows += [(a, k, v, n) for (a, k, v), n in per_net.items()]
        if "user_agent" in cols and ind.user_agents:
            for acct, ua, n in con.execute(
                "SELECT account_id, user_agent, count(*) FROM ev WHERE user_agent IN "
                "(SELECT unnest(?)) GROUP BY ALL",
                [sorted(ind.user_agents)],
            ).fetchall():
                rows.append((str(acct), "user_agent", str(ua), int(n)))
        if ind.template_fingerprints:
            for acct, fp, n in con.execute(
                f"""SELECT account_id, fp, count(*) FROM (SELECT account_id,
                'p5-' || left(sha256({TEMPLATE_SQL}), 16) AS fp FROM ev)
                WHERE fp IN (SELECT unnest(?)) GROUP BY ALL""",
                [sorted(ind.template_fingerprints)],
            ).fetchall():
                rows.append((str(acct), "template", str(fp), int(n)))
        if has_table(log_dir, "accounts") and (ind.payment_hashes or ind.email_hashes):
            register_view(con, log_dir, "accounts", "acc")
            acols = {str(r[0]) for r in con.execute("DESCRIBE acc").fetchall()}
            for col, kind, check in (
                ("payment_fingerprint", "payment", ind.match_payment),
                ("email_domain", "email", ind.match_email_domain),
            ):
                if col not in acols:
                    continue
                for acct, value in con.execute(
                    f'SELECT account_id, "{col}" FROM acc WHERE "{col}" IS NOT NULL'
                ).fetchall():
                    if check(value):
                        rows.append((str(acct), kind, share_hash(kind, str(value)), 0))
    finally:
        con.close()
    rows.sort()

    def ids(kind: str, value: str) -> list[str]:
        return sorted(set(ind.by_value.get((kind, value), [])))

    return pa.table(
        {
            "account_id": pa.array([r[0] for r in rows], pa.string()),
            "kind": pa.array([r[1] for r in rows], pa.string()),
            "value": pa.array([r[2] for r in rows], pa.string()),
            "events": pa.array([r[3] for r in rows], pa.int64()),
            "indicator_ids": pa.array([ids(r[1], r[2]) for r in rows], pa.list_(pa.string())),
        }
    )


def matched_accounts(table: pa.Table) -> list[str]:
    """The distinct accounts of a `match_accounts` table."""
    return sorted(set(table.column("account_id").to_pylist()))


def summarize_matches(table: pa.Table) -> dict[str, int]:
    """Number of matched accounts per indicator kind."""
    out: dict[str, set[str]] = {}
    for acct, kind in zip(
        table.column("account_id").to_pylist(), table.column("kind").to_pylist(), strict=True
    ):
        out.setdefault(str(kind), set()).add(str(acct))
    return {k: len(v) for k, v in sorted(out.items())}
