"""End users inside an account, judged apart (the v1.1 `events.end_user` column).

A reseller that declares its customers' ids (OpenAI `user` / `safety_identifier`, Anthropic
`metadata.user_id`) lets the detector look inside its account: each (account, end user) becomes
a *sub-principal* of a second detector, with its own fingerprints, templates and links, so a
campaign carried by the reseller is found among its end users even when the operator has no
account of its own, and the reseller's other customers are told apart from it. The second
detector's population is every principal: the sub-principals and, for events that name no end
user, the accounts themselves (a carried campaign is found through its links to the campaign's
own accounts). The scan feeds it in the same replay as the account detector, from the same
signals (`SubPrincipals`): the log is read and its texts reduced once.

The end user is declared by the client, so it is attacker-controlled. Three rules follow:

* The account's own verdict comes from the ordinary replay, which ignores `end_user`: rotating
  end-user ids under one's own account dilutes nothing (end users add precision, never hide
  evidence).
* An account's flag is narrowed to its flagged end users (`apart`) only for a *carrier* (an
  account outside the campaign that sends its templates beside its own traffic) whose flagged
  end users are few among those it declared and which declares one on nearly every request;
  never for a campaign member.
* Their number is bounded (`[end_users]` in the config): at most `max_per_account` per account
  and `max_total` in all are judged apart, first come; later ones are judged together as the
  account's overflow (end user "" in `end_user_verdicts`).

In the second detector a named request's address is replaced by one private to its end user: the
real one is the reseller's server, shared by all its customers, and says nothing about which
customer sent the request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from distillguard.detect._config import DetectConfig
from distillguard.traffic import END_USER_VERDICTS, conform

if TYPE_CHECKING:
    from distillguard.detect._core import Assessment
    from distillguard.detect._firstrequest import CampaignKeys
    from distillguard.detect._online import OnlineDetector
    from distillguard.detect._output import VerdictColumns
    from distillguard.detect._state import DetectorState, Prepared

# Joins an account and an end user into a sub-principal id. Account ids are the provider's own
# and never hold it; the end user is cut at its first occurrence after the account.
SEP = "\x1f"
# The end user reported for an account's overflow (end users beyond the bounds): a declared
# empty end user reads as none, so no client can name it.
OVERFLOW = ""


def principal(account_id: str, end_user: str) -> str:
    return f"{account_id}{SEP}{end_user}"


def split_principal(pid: str) -> tuple[str, str | None]:
    """(account, end user) of a principal id; end user None for an account's own principal."""
    acct, sep, user = pid.partition(SEP)
    return acct, (user if sep else None)


@dataclass
class EndUserBook:
    """Which declared end users are judged apart: first come, bounded per account and in all."""

    max_per_account: int
    max_total: int
    apart: set[tuple[str, str]] = field(default_factory=set)
    per_account: dict[str, int] = field(default_factory=dict)

    def admit(self, pairs: pl.DataFrame) -> pl.Series:
        """For distinct (account_id, end_user) rows in first-seen order: the end user each is
        judged as (itself, or OVERFLOW). Loops over new distinct pairs only."""
        out: list[str] = []
        for acct, user in pairs.select("account_id", "end_user").iter_rows():
            key = (acct, user)
            if key in self.apart:
                out.append(user)
                continue
            n = self.per_account.get(acct, 0)
            if n < self.max_per_account and len(self.apart) < self.max_total:
                self.apart.add(key)
                self.per_account[acct] = n + 1
                out.append(user)
            else:
                out.append(OVERFLOW)
        return pl.Series("judged_as", out, pl.String)


def sub_principal_signals(sig: pl.DataFrame, end_user: pl.Series, book: EndUserBook) -> pl.DataFrame:
    """Per-event signals re-keyed to sub-principals: `account_id` becomes (account, end user)
    where the event names one (address dropped), and stays the account where it does not."""
    frame = sig.with_columns(end_user.alias("_eu"))
    named = frame.filter(pl.col("_eu").is_not_null()).select(
        pl.col("account_id"), pl.col("_eu").alias("end_user")).unique(maintain_order=True)
    if named.height == 0:
        return sig
    judged = named.with_columns(book.admit(named))
    frame = frame.join(judged.rename({"end_user": "_eu"}), on=["account_id", "_eu"], how="left",
                       maintain_order="left")
    is_named = pl.col("_eu").is_not_null()
    pid = pl.col("account_id") + SEP + pl.col("judged_as")
    # A named request's address is its own principal's (a value no real address takes): it
    # links nobody, where the reseller's server address would link all its customers.
    return frame.with_columns(
        pl.when(is_named).then(pid).otherwise(pl.col("account_id")).alias("account_id"),
        pl.when(is_named).then(pid).otherwise(pl.col("ip")).alias("ip"),
    ).drop("_eu", "judged_as")


def has_end_users(log_dir: Path) -> bool:
    """Whether any event of the log declares an end user (cheap: one narrow column)."""
    from distillguard.traffic import TrafficLog

    for batch in TrafficLog(log_dir).batches("events", columns=["end_user"], batch_size=1_000_000):
        if batch.column(0).null_count < batch.num_rows:
            return True
    return False


def count_named(keyed: pl.DataFrame, shares: dict[str, tuple[int, int]]) -> None:
    """Add sub-principal signals' requests to `shares`: per account, (requests that named an
    end user, all requests)."""
    per = keyed.select(
        pl.col("account_id").str.split(SEP).list.first().alias("acct"),
        pl.col("account_id").str.contains(SEP, literal=True).alias("named"),
    ).group_by("acct").agg(pl.col("named").sum(), pl.len())
    for acct, named, n in per.iter_rows():
        was = shares.get(acct, (0, 0))
        shares[acct] = (was[0] + int(named), was[1] + int(n))


@dataclass
class SubPrincipals:
    """The scan's sub-principal detector, fed in the account replay (`replay(sub=...)`): each
    chunk of signals, with its events' `end_user`, is re-keyed (`sub_principal_signals`) and
    folded in window by window beside the account detector's, so both see the same windows.
    End users are admitted in time order (the log's own order for a log written in time)."""

    det: OnlineDetector
    book: EndUserBook
    first_flag: np.ndarray = field(default_factory=lambda: np.full(0, -1, np.int64))
    shares: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of_log(cls, log_dir: Path, cfg: DetectConfig, overrides: dict[str, str],
               partners: set[str]) -> SubPrincipals | None:
        """The detector for this log's scan; None when no event names an end user (or the
        judging is off)."""
        if not cfg.end_users.enabled or not has_end_users(log_dir):
            return None
        return cls.fresh(log_dir, cfg, overrides, partners)

    @classmethod
    def fresh(cls, log_dir: Path, cfg: DetectConfig, overrides: dict[str, str],
              partners: set[str]) -> SubPrincipals:
        """A detector knowing the log's accounts and models, with no end user seen yet."""
        from distillguard.detect._online import OnlineDetector
        from distillguard.traffic import TrafficLog

        log = TrafficLog(log_dir)
        det = OnlineDetector(cfg, accounts=log.read("accounts") if log.has("accounts") else None,
                             models=log.read("models") if log.has("models") else None,
                             overrides=overrides, partners=partners)
        return cls(det, EndUserBook(cfg.end_users.max_per_account, cfg.end_users.max_total))

    def prepare(self, sig: pl.DataFrame, end_user: pl.Series, step: int, origin: int) -> Prepared:
        """Re-key one chunk (time-ordered signals and their events' end users, "" read as
        none) and group it by window (`DetectorState.prepare`)."""
        keyed = sub_principal_signals(sig, end_user.replace("", None), self.book)
        count_named(keyed, self.shares)
        return self.det.state.prepare(keyed, step, origin)

    @property
    def named(self) -> bool:
        """Whether any event fed so far named an end user."""
        return any(named for named, _ in self.shares.values())

    def judge(self, cfg: DetectConfig, carriers: set[str]) -> tuple[pa.Table, set[str]]:
        """After the replay: `end_user_verdicts`, and the carriers whose flag is narrowed to
        their flagged end users."""
        from distillguard.detect._communities import refine_campaigns
        from distillguard.detect._output import verdict_table

        a = refine_campaigns(self.det.assess(), cfg.links.min_accounts)
        table = end_user_table(verdict_table(self.det.state, a, cfg, self.first_flag))
        shares = {k: named / n for k, (named, n) in self.shares.items() if n}
        return table, apart_accounts(table, carriers, shares, cfg)


def apart_accounts(end_users: pa.Table, carriers: set[str],
                   named_share: dict[str, float], cfg: DetectConfig) -> set[str]:
    """Carriers whose flag is narrowed to their flagged end users (see the module docstring)."""
    c = cfg.end_users
    flagged = pl.from_arrow(end_users.select(["account_id", "action"]))
    assert isinstance(flagged, pl.DataFrame)
    per = flagged.group_by("account_id").agg(
        pl.len().alias("users"),
        pl.col("action").is_in(["throttle", "block"]).sum().alias("flagged"),
    )
    out: set[str] = set()
    for acct, users, n_flagged in per.iter_rows():
        if acct not in carriers or n_flagged == 0:
            continue
        if n_flagged <= c.apart_max_flagged_share * users and named_share.get(acct, 0.0) >= c.apart_min_named_share:
            out.add(acct)
    return out


def end_user_table(verdicts: pa.Table) -> pa.Table:
    """The sub-principal detector's verdicts, end users only, in the END_USER_VERDICTS schema."""
    ids = verdicts.column("account_id").to_pylist()
    keep = [i for i, pid in enumerate(ids) if SEP in pid]
    rows = verdicts.take(pa.array(keep, pa.int64()))
    split = [split_principal(ids[i]) for i in keep]
    cols = {name: rows.column(name) for name in END_USER_VERDICTS.schema.names
            if name in rows.column_names and name not in ("account_id", "end_user", "campaign_id")}
    cols["account_id"] = pa.array([a for a, _ in split], pa.string())
    cols["end_user"] = pa.array([u for _, u in split], pa.string())
    # The second detector names its own campaigns; prefixed so they never read as the account
    # replay's (a campaign id means one cluster per table).
    camp = rows.column("campaign_id").to_pylist() if "campaign_id" in rows.column_names else [None] * len(keep)
    cols["campaign_id"] = pa.array([f"eu-{c}" if c else None for c in camp], pa.string())
    return conform("end_user_verdicts", pa.table(cols))


def carrier_ids(state: DetectorState, a: Assessment) -> set[str]:
    """Accounts that carry a campaign's traffic without being one of its members."""
    from distillguard.detect._output import carried_campaigns

    member = a.component >= 0
    cells = a.cells.member[: len(member)]
    member[: len(cells)] |= cells >= 0
    carrying = (carried_campaigns(a) >= 0) & ~member
    return {state.ids[int(i)] for i in np.flatnonzero(carrying)}


#: the reason added to an account whose flag applies to its flagged end users only
APART_NOTE = ("carries a campaign through a few of the end users it declares: the flag applies to "
              "those end users (end_user_verdicts), its other customers are served")


def mark_apart(verdicts: pa.Table, apart: set[str]) -> pa.Table:
    """Add `end_users_apart` (an added verdicts column): whether the account's flag applies to
    its flagged end users only (`end_user_verdicts`), with a reason saying so."""
    ids = verdicts.column("account_id").to_pylist()
    flags = [aid in apart for aid in ids]
    reasons = verdicts.column("reasons").to_pylist()
    for i, on in enumerate(flags):
        if on:
            listed = json.loads(reasons[i] or "[]")
            reasons[i] = json.dumps([*listed, APART_NOTE])
    out = verdicts.set_column(verdicts.schema.get_field_index("reasons"), "reasons",
                              pa.array(reasons, pa.string()))
    return out.append_column("end_users_apart", pa.array(flags, pa.bool_()))


class EndUserDetector:
    """An `OnlineDetector` for accounts plus one for sub-principals, fed the same events.

    Same interface as `OnlineDetector` where the gateway uses it (`update`, `advance`,
    `set_override`, `verdicts`, `tables`), plus `end_user_verdicts`. The account detector
    never sees end users; the second one is started at the first event that names one (what
    came before it is not replayed into it) and is fed every event after, so its population
    holds the accounts as well as the end users.
    """

    def __init__(self, config: DetectConfig | str | Path | None = None,
                 accounts: pa.Table | None = None, models: pa.Table | None = None) -> None:
        from distillguard.detect._online import OnlineDetector

        self.main = OnlineDetector(config, accounts=accounts, models=models)
        self.config = self.main.config
        self._models = models
        self.sub: OnlineDetector | None = None
        c = self.config.end_users
        self.book = EndUserBook(c.max_per_account, c.max_total)
        self._shares: dict[str, tuple[int, int]] = {}  # account -> (named, all) requests
        self._end_user_table: tuple[Assessment, pa.Table] | None = None  # (its assessment, table)

    def __getstate__(self) -> dict[str, object]:
        # the end users' table is derived from the state: not checkpointed
        return {k: v for k, v in self.__dict__.items() if k != "_end_user_table"}

    def __setstate__(self, saved: dict[str, object]) -> None:
        self.__dict__.update(saved)
        self._end_user_table = None

    def update(self, events: pa.Table, accounts: pa.Table | None = None) -> None:
        from distillguard.detect._online import OnlineDetector, _frame
        from distillguard.detect._signatures import event_signals

        if accounts is not None and accounts.num_rows:
            self.main.state.add_account_metadata(_frame(accounts))
        if events.num_rows == 0:
            return
        frame = _frame(events)
        users = (frame["end_user"].replace("", None) if "end_user" in frame.columns
                 else pl.Series("end_user", [None] * frame.height, pl.String))
        sig = event_signals(frame.drop("end_user", strict=False))
        order = sig.select(pl.int_range(pl.len()).alias("i"), "ts_us", "event_id").sort("ts_us", "event_id")["i"]
        self.main.update_signals(sig[order])
        if self.sub is None and (not self.config.end_users.enabled or users.null_count() == users.len()):
            return
        if self.sub is None:
            self.sub = OnlineDetector(self.config, models=self._models)
        keyed = sub_principal_signals(sig, users, self.book)
        count_named(keyed, self._shares)
        self.sub.update_signals(keyed[order])

    def advance(self, now_us: int) -> None:
        self.main.advance(now_us)
        if self.sub is not None:
            self.sub.advance(now_us)

    def set_models(self, models: pa.Table | None) -> None:
        """`OnlineDetector.set_models` on both detectors (and on the end users' one when it starts)."""
        self._models = models
        self.main.set_models(models)
        if self.sub is not None:
            self.sub.set_models(models)

    def set_override(self, account_id: str, decision: str | None) -> None:
        self.main.set_override(account_id, decision)
        if self.sub is not None:
            self.sub.set_override(account_id, decision)

    def end_user_verdicts(self) -> pa.Table:
        """Current verdicts of the end users judged apart (END_USER_VERDICTS schema; built once
        per assessment: a step reads them for `apart` and again to publish them)."""
        if self.sub is None:
            return END_USER_VERDICTS.schema.empty_table()
        a = self.sub.refined()
        if self._end_user_table is None or self._end_user_table[0] is not a:
            self._end_user_table = (a, end_user_table(self.sub.verdicts()))
        return self._end_user_table[1]

    def tables(self) -> tuple[pa.Table, pa.Table]:
        """Account verdicts (with `end_users_apart`) and campaigns, as of now."""
        verdicts, campaigns = self.main.tables()
        return mark_apart(verdicts, self.apart()), campaigns

    def apart(self) -> set[str]:
        """The carriers whose flag is narrowed to their flagged end users."""
        if self.sub is None:
            return set()
        shares = {k: named / n for k, (named, n) in self._shares.items() if n}
        carriers = carrier_ids(self.main.state, self.main.refined())
        return apart_accounts(self.end_user_verdicts(), carriers, shares, self.config)

    def verdict_columns(self) -> VerdictColumns:
        """`OnlineDetector.verdict_columns` of the accounts, with `end_users_apart` (`apart`)
        and its reason: what `verdicts()` says, without building every reason."""
        cols = self.main.verdict_columns()
        flags = np.zeros(len(cols.ids), bool)
        index = self.main.state.index
        flags[[index[aid] for aid in self.apart()]] = True
        cols.mark(flags, APART_NOTE)
        return cols

    def verdicts(self) -> pa.Table:
        return self.tables()[0]

    def campaign_keys(self) -> CampaignKeys:
        """The flagged campaigns' keys a new account's first request is checked against."""
        from distillguard.detect._firstrequest import CampaignKeys

        a = self.main.assess(with_pairs=False)
        return CampaignKeys.of(self.main.state, a.action, a.harvest, self.config.first_request)
