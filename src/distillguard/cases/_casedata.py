"""Everything an analyst looks at for a campaign, pre-aggregated once with DuckDB.

`CaseStore(log_dir, verdicts_dir)` reads a traffic log and the verdicts of a scan, builds
small per-account and per-campaign tables in an in-memory DuckDB (one pass over the events
per table), and then answers every question of the console, the case files and the STIX
export from those tables alone, so that no page touches the raw events again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from distillguard._errors import LogFormatError
from distillguard._logsql import has_table, quote_ident, register_view
from distillguard.cases._casemodel import (
    _BUCKETS,
    _TMPL_SQL,
    ATTRIBUTE_KINDS,
    CAPABILITIES,
    GRAPH_KIND_LIMITS,
    KIND_LABELS,
    KIND_PLURALS,
    Account,
    Attribute,
    Campaign,
    Link,
    Template,
    _account,
    _campaign,
    _graph_attributes,
    _template_ids,
    fold_attributes,
    mined_fingerprint,
    mined_template,
)

log = logging.getLogger(__name__)

__all__ = [
    "ATTRIBUTE_KINDS",
    "CAPABILITIES",
    "GRAPH_KIND_LIMITS",
    "KIND_LABELS",
    "KIND_PLURALS",
    "Account",
    "Attribute",
    "Campaign",
    "CaseStore",
    "Link",
    "Template",
    "fold_attributes",
    "mined_fingerprint",
    "mined_template",
]


class CaseStore:
    """Pre-aggregated views of one traffic log and one scan's verdicts.

    Args:
        log_dir: the traffic log (at least `events`; `accounts` adds payment and e-mail links).
        verdicts_dir: the scan's output (`verdicts`, optionally `campaigns`, `templates`,
            `links`, with an optional `evidence` column).

    Raises:
        LogFormatError: either directory lacks its required table.

    Examples:
        >>> store = CaseStore("log", "verdicts")  # doctest: +SKIP
        >>> [c.campaign_id for c in store.campaigns()][:3]  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | Path, verdicts_dir: str | Path) -> None:
        import duckdb

        self.log_dir = Path(log_dir)
        self.verdicts_dir = Path(verdicts_dir)
        if not has_table(self.verdicts_dir, "verdicts"):
            raise LogFormatError(
                "this directory has no verdicts table; run `distillguard scan LOG --out DIR` "
                "and point at DIR",
                file=str(self.verdicts_dir),
            )
        self._lock = threading.Lock()
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        self._build()

    # -- building ----------------------------------------------------------------------------

    def _columns(self, view: str) -> set[str]:
        rows = self._con.execute(f"DESCRIBE {quote_ident(view)}").fetchall()
        return {str(r[0]) for r in rows}

    def _run(self, step: str, sql: str, params: Sequence[Any] = ()) -> None:
        log.debug("casestore %s: %s", step, sql)
        self._con.execute(sql, list(params))

    def _build(self) -> None:
        con = self._con
        register_view(con, self.log_dir, "events", "ev_raw")
        register_view(con, self.verdicts_dir, "verdicts", "v_raw")
        ev_cols = self._columns("ev_raw")
        v_cols = self._columns("v_raw")

        def ev(col: str, default: str = "NULL") -> str:
            return quote_ident(col) if col in ev_cols else default

        def vc(col: str, default: str = "NULL") -> str:
            return quote_ident(col) if col in v_cols else default

        self._run(
            "verdicts",
            f"""CREATE TABLE verdicts AS SELECT account_id, CAST(score AS DOUBLE) AS score,
            action, CAST({vc("campaign_id")} AS VARCHAR) AS campaign_id,
            CAST({vc("first_flagged_ts")} AS TIMESTAMPTZ) AS first_flagged_ts,
            CAST({vc("reasons")} AS VARCHAR) AS reasons,
            CAST({vc("evidence")} AS VARCHAR) AS evidence FROM v_raw""",
        )
        self._run(
            "events",
            f"""CREATE VIEW ev AS SELECT account_id, CAST(ts AS TIMESTAMPTZ) AS ts,
            CAST({ev("ip")} AS VARCHAR) AS ip, CAST({ev("user_agent")} AS VARCHAR) AS user_agent,
            CAST({ev("key_id")} AS VARCHAR) AS key_id, CAST(model AS VARCHAR) AS model,
            CAST(prompt AS VARCHAR) AS prompt, CAST({ev("turns")} AS INTEGER) AS turns,
            CAST({ev("tools")} AS INTEGER) AS tools,
            CAST({ev("prompt_tokens")} AS BIGINT) AS prompt_tokens,
            CAST({ev("completion_tokens")} AS BIGINT) AS completion_tokens FROM ev_raw""",
        )
        span = con.execute("SELECT min(ts), max(ts) FROM ev").fetchone()
        lo, hi = (span or (None, None))[:2]
        width = _BUCKETS[-1]
        if lo is not None and hi is not None:
            width = next((b for b in _BUCKETS if (hi - lo) / b <= 240), _BUCKETS[-1])
        self.bucket = width
        self.span: tuple[datetime | None, datetime | None] = (lo, hi)
        bucket_sql = f"time_bucket(INTERVAL '{int(width.total_seconds())} seconds', ts)"
        cap_case = " ".join(
            f"WHEN regexp_matches(p, '{rx.replace(chr(39), chr(39) * 2)}') THEN '{name}'"
            for name, rx in CAPABILITIES
        )
        self._run(
            "evj",
            f"""CREATE TEMP VIEW evj AS SELECT e.*, v.campaign_id, v.first_flagged_ts,
            {bucket_sql} AS bucket FROM ev e LEFT JOIN verdicts v USING (account_id)""",
        )
        self._run(
            "acct_stats",
            """CREATE TABLE acct_stats AS SELECT account_id, count(*) AS events,
            min(ts) AS first_ts, max(ts) AS last_ts, count(DISTINCT ip) AS ips,
            count(DISTINCT user_agent) AS user_agents, count(DISTINCT key_id) AS keys,
            count(DISTINCT model) AS models, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
            coalesce(sum(completion_tokens), 0) AS completion_tokens,
            avg(CASE WHEN coalesce(turns, 1) <= 1 THEN 1.0 ELSE 0.0 END) AS single_turn,
            count(*) FILTER (WHERE first_flagged_ts IS NULL OR ts < first_flagged_ts)
              AS before_flag
            FROM evj GROUP BY account_id""",
        )
        self._run(
            "acct_ts",
            "CREATE TABLE acct_ts AS SELECT account_id, bucket, count(*) AS n "
            "FROM evj GROUP BY ALL",
        )
        # Capability per event from its prompt's first 300 characters (keyword patterns).
        self._run(
            "acct_cap",
            f"""CREATE TABLE acct_cap AS SELECT account_id,
            CASE WHEN coalesce(tools, 0) > 0 THEN 'tool use' {cap_case} ELSE 'general' END
              AS capability, count(*) AS n
            FROM (SELECT account_id, tools, lower(left(prompt, 300)) AS p FROM ev) GROUP BY ALL""",
        )
        # Mined templates of campaign members: the first five words, digits folded.
        self._run(
            "acct_tmpl",
            f"""CREATE TABLE acct_tmpl AS SELECT account_id, campaign_id, tmpl,
            'p5-' || left(sha256(tmpl), 16) AS fingerprint, count(*) AS n,
            any_value(left(prompt, 400)) AS example FROM (
              SELECT account_id, campaign_id, prompt, {_TMPL_SQL} AS tmpl
              FROM ev JOIN verdicts USING (account_id) WHERE campaign_id IS NOT NULL)
            GROUP BY ALL""",
        )
        self._run(
            "attr",
            r"""CREATE TABLE attr AS
            SELECT account_id, 'ip' AS kind, ip AS value, count(*) AS n FROM ev
              WHERE ip IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT account_id, 'net24', regexp_extract(ip, '^(\d+\.\d+\.\d+)\.\d+$', 1) || '.0/24',
              count(*) FROM ev WHERE regexp_matches(coalesce(ip, ''), '^\d+\.\d+\.\d+\.\d+$')
              GROUP BY ALL
            UNION ALL
            SELECT account_id, 'user_agent', user_agent, count(*) FROM ev
              WHERE user_agent IS NOT NULL GROUP BY ALL""",
        )
        self.has_accounts = has_table(self.log_dir, "accounts")
        if self.has_accounts:
            register_view(con, self.log_dir, "accounts", "acc_raw")
            a_cols = self._columns("acc_raw")
            for col, kind in (("payment_fingerprint", "payment"), ("email_domain", "email")):
                if col in a_cols:
                    self._run(
                        f"attr_{kind}",
                        f"INSERT INTO attr SELECT account_id, '{kind}', "
                        f"CAST({quote_ident(col)} AS VARCHAR), 0 FROM acc_raw "
                        f"WHERE {quote_ident(col)} IS NOT NULL",
                    )
            self._run("profile", "CREATE TABLE profile AS SELECT * FROM acc_raw")
            self._profile_columns = [str(r[0]) for r in con.execute("DESCRIBE profile").fetchall()]
        self._run(
            "attr_tmpl",
            "INSERT INTO attr SELECT account_id, 'template', tmpl, n FROM acct_tmpl",
        )
        self._run(
            "attr_users",
            "CREATE TABLE attr_users AS SELECT kind, value, count(DISTINCT account_id) AS accounts "
            "FROM attr GROUP BY ALL",
        )
        self.has_campaigns = has_table(self.verdicts_dir, "campaigns")
        c_cols: set[str] = set()
        if self.has_campaigns:
            register_view(con, self.verdicts_dir, "campaigns", "c_raw")
            c_cols = self._columns("c_raw")

        def cc(col: str) -> str:
            return f"c.{quote_ident(col)}" if col in c_cols else "NULL"

        members = """SELECT v.campaign_id, count(*) AS accounts, sum(s.events) AS events,
            max(v.score) AS score, min(v.first_flagged_ts) AS first_flagged_ts,
            min(s.first_ts) AS first_ts, max(s.last_ts) AS last_ts,
            sum(s.before_flag) AS before_flag,
            count(*) FILTER (WHERE v.action = 'block') AS blocked
            FROM verdicts v LEFT JOIN acct_stats s USING (account_id)
            WHERE v.campaign_id IS NOT NULL GROUP BY v.campaign_id"""
        source = "c_raw" if self.has_campaigns else "(SELECT NULL AS campaign_id WHERE false)"
        self._run(
            "campaigns",
            f"""CREATE TABLE campaigns AS SELECT
            coalesce(c.campaign_id, m.campaign_id) AS campaign_id,
            coalesce(CAST({cc("score")} AS DOUBLE), m.score, 0) AS score,
            coalesce(m.accounts, CAST({cc("accounts")} AS BIGINT), 0) AS accounts,
            coalesce(m.events, CAST({cc("events")} AS BIGINT), 0) AS events,
            coalesce(CAST({cc("first_flagged_ts")} AS TIMESTAMPTZ), m.first_flagged_ts)
              AS first_flagged_ts,
            m.first_ts, m.last_ts, coalesce(m.before_flag, 0) AS before_flag,
            coalesce(m.blocked, 0) AS blocked,
            CAST({cc("reasons")} AS VARCHAR) AS reasons,
            CAST({cc("evidence")} AS VARCHAR) AS evidence
            FROM {source} c FULL OUTER JOIN ({members}) m ON c.campaign_id = m.campaign_id""",
        )
        self._run(
            "camp_ts",
            "CREATE TABLE camp_ts AS SELECT v.campaign_id, t.bucket, sum(t.n) AS n "
            "FROM acct_ts t JOIN verdicts v USING (account_id) "
            "WHERE v.campaign_id IS NOT NULL GROUP BY ALL",
        )
        self.has_templates = has_table(self.verdicts_dir, "templates")
        if self.has_templates:
            register_view(con, self.verdicts_dir, "templates", "t_raw")
            t_cols = self._columns("t_raw")

            def tc(col: str) -> str:
                return quote_ident(col) if col in t_cols else "NULL"

            self._run(
                "templates",
                f"""CREATE TABLE templates AS SELECT CAST({tc("template_id")} AS VARCHAR)
                AS template_id, CAST({tc("fingerprint")} AS VARCHAR) AS fingerprint,
                CAST({tc("example")} AS VARCHAR) AS example,
                CAST({tc("accounts")} AS BIGINT) AS accounts,
                CAST({tc("events")} AS BIGINT) AS events FROM t_raw""",
            )
        self.has_links = has_table(self.verdicts_dir, "links")
        if self.has_links:
            register_view(con, self.verdicts_dir, "links", "l_raw")
            self._run(
                "links",
                "CREATE TABLE links AS SELECT CAST(src AS VARCHAR) AS src, "
                "CAST(dst AS VARCHAR) AS dst, CAST(kind AS VARCHAR) AS kind, "
                "CAST(weight AS DOUBLE) AS weight FROM l_raw",
            )
        self._run(
            "acct",
            """CREATE TABLE acct AS SELECT a.account_id, v.score, v.action, v.campaign_id,
            v.first_flagged_ts, v.reasons, v.evidence, coalesce(s.events, 0) AS events,
            s.first_ts, s.last_ts, coalesce(s.ips, 0) AS ips,
            coalesce(s.user_agents, 0) AS user_agents, coalesce(s.keys, 0) AS keys,
            coalesce(s.models, 0) AS models, coalesce(s.prompt_tokens, 0) AS prompt_tokens,
            coalesce(s.completion_tokens, 0) AS completion_tokens, s.single_turn,
            coalesce(s.before_flag, 0) AS before_flag
            FROM (SELECT account_id FROM verdicts UNION SELECT account_id FROM acct_stats) a
            LEFT JOIN verdicts v USING (account_id) LEFT JOIN acct_stats s USING (account_id)
            ORDER BY v.campaign_id, v.score DESC NULLS LAST, events DESC, a.account_id""",
        )
        self._run(
            "camp_attr",
            """CREATE TABLE camp_attr AS SELECT v.campaign_id, a.kind, a.value,
            count(DISTINCT a.account_id) AS members, any_value(u.accounts) AS accounts,
            sum(a.n) AS events FROM attr a JOIN verdicts v USING (account_id)
            JOIN attr_users u ON u.kind = a.kind AND u.value = a.value
            WHERE v.campaign_id IS NOT NULL GROUP BY ALL""",
        )
        self._run(
            "camp_cap",
            "CREATE TABLE camp_cap AS SELECT campaign_id, capability, sum(n) AS n FROM acct_cap "
            "JOIN verdicts USING (account_id) WHERE campaign_id IS NOT NULL GROUP BY ALL",
        )
        self._run(
            "camp_tmpl",
            """CREATE TABLE camp_tmpl AS SELECT * FROM (SELECT campaign_id, tmpl,
            any_value(example) AS example, count(DISTINCT account_id) AS accounts,
            sum(n) AS events, any_value(fingerprint) AS fingerprint FROM acct_tmpl GROUP BY ALL)
            QUALIFY row_number() OVER (PARTITION BY campaign_id
              ORDER BY accounts DESC, events DESC, tmpl) <= 500""",
        )
        self._con.execute("DROP VIEW evj")

    # -- queries -----------------------------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._con.cursor()
            try:
                rows: list[tuple[Any, ...]] = cur.execute(sql, list(params)).fetchall()
                return rows
            finally:
                cur.close()

    def campaigns(self) -> list[Campaign]:
        """All campaigns, highest score first."""
        rows = self._fetch(
            "SELECT campaign_id, score, accounts, events, first_flagged_ts, first_ts, last_ts, "
            "before_flag, blocked, reasons, evidence FROM campaigns "
            "ORDER BY score DESC, events DESC, campaign_id"
        )
        return [_campaign(r) for r in rows]

    def campaign(self, campaign_id: str) -> Campaign | None:
        """One campaign, or None when the scan found no campaign of that id."""
        rows = self._fetch(
            "SELECT campaign_id, score, accounts, events, first_flagged_ts, first_ts, last_ts, "
            "before_flag, blocked, reasons, evidence FROM campaigns WHERE campaign_id = ?",
            [campaign_id],
        )
        return _campaign(rows[0]) if rows else None

    _ACCOUNT_SQL = """SELECT account_id, score, action, campaign_id, first_flagged_ts,
        reasons, evidence, events, first_ts, last_ts, ips, user_agents, keys, models,
        prompt_tokens, completion_tokens, single_turn, before_flag FROM acct a"""

    def members(self, campaign_id: str, limit: int | None = None) -> list[Account]:
        """The campaign's accounts, highest score and most events first."""
        sql = (
            self._ACCOUNT_SQL + " WHERE campaign_id = ? "
            "ORDER BY score DESC NULLS LAST, events DESC, account_id"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_account(r, {}) for r in self._fetch(sql, [campaign_id])]

    def flagged(self, limit: int = 200) -> list[Account]:
        """Accounts flagged without a campaign (loners), highest score first."""
        sql = (
            self._ACCOUNT_SQL + " WHERE campaign_id IS NULL AND action IN ('throttle', 'block')"
            f" ORDER BY score DESC, account_id LIMIT {int(limit)}"
        )
        return [_account(r, {}) for r in self._fetch(sql)]

    def account(self, account_id: str) -> Account | None:
        """One account with its verdict, numbers and sign-up profile, or None if unknown."""
        rows = self._fetch(self._ACCOUNT_SQL + " WHERE a.account_id = ?", [account_id])
        if not rows:
            return None
        profile: dict[str, Any] = {}
        if self.has_accounts:
            cur_rows = self._fetch(
                "SELECT * FROM profile WHERE account_id = ? LIMIT 1", [account_id]
            )
            names = self._profile_columns
            if cur_rows:
                profile = {
                    k: v for k, v in zip(names, cur_rows[0], strict=False) if k != "account_id"
                }
        return _account(rows[0], profile)

    def traffic(
        self, *, campaign_id: str | None = None, account_id: str | None = None
    ) -> list[tuple[datetime, int]]:
        """Events per time bucket (`self.bucket` wide) for a campaign or an account."""
        if campaign_id is not None:
            rows = self._fetch(
                "SELECT bucket, n FROM camp_ts WHERE campaign_id = ? ORDER BY bucket",
                [campaign_id],
            )
        elif account_id is not None:
            rows = self._fetch(
                "SELECT bucket, n FROM acct_ts WHERE account_id = ? ORDER BY bucket", [account_id]
            )
        else:
            rows = self._fetch("SELECT bucket, sum(n) FROM acct_ts GROUP BY 1 ORDER BY 1")
        return [(r[0], int(r[1])) for r in rows]

    def campaign_traffic(self) -> list[tuple[datetime, int]]:
        """Events per time bucket of all campaigns together."""
        rows = self._fetch("SELECT bucket, sum(n) FROM camp_ts GROUP BY 1 ORDER BY 1")
        return [(r[0], int(r[1])) for r in rows]

    def template_users(self, fingerprints: Sequence[str]) -> dict[str, int]:
        """How many accounts of the whole log use each mined template fingerprint.

        One pass over the prompts (not pre-aggregated: only sharing needs it).
        """
        if not fingerprints:
            return {}
        rows = self._fetch(
            f"""SELECT fp, count(DISTINCT account_id) FROM (SELECT account_id,
            'p5-' || left(sha256({_TMPL_SQL}), 16) AS fp FROM ev)
            WHERE fp IN (SELECT unnest(?)) GROUP BY fp""",
            [list(fingerprints)],
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def capabilities(
        self, *, campaign_id: str | None = None, account_id: str | None = None
    ) -> list[tuple[str, int]]:
        """Events per capability category (code, math, ...), most first."""
        if campaign_id is not None:
            rows = self._fetch(
                "SELECT capability, n FROM camp_cap WHERE campaign_id = ? ORDER BY 2 DESC, 1",
                [campaign_id],
            )
        elif account_id is not None:
            rows = self._fetch(
                "SELECT capability, n FROM acct_cap WHERE account_id = ? ORDER BY 2 DESC, 1",
                [account_id],
            )
        else:
            rows = self._fetch("SELECT capability, sum(n) FROM acct_cap GROUP BY 1 ORDER BY 2 DESC")
        return [(str(r[0]), int(r[1])) for r in rows]

    def templates(self, campaign_id: str, limit: int = 12) -> list[Template]:
        """The campaign's prompt templates: the detector's, else mined from its prompts."""
        found: list[Template] = []
        campaign = self.campaign(campaign_id)
        if self.has_templates and campaign is not None:
            ids = _template_ids(campaign.evidence)
            for member in self.members(campaign_id, limit=500):
                ids.extend(_template_ids(member.evidence))
            ids = list(dict.fromkeys(ids))
            if ids:
                marks = ", ".join("?" for _ in ids)
                rows = self._fetch(
                    "SELECT template_id, fingerprint, example, accounts, events FROM templates "
                    f"WHERE template_id IN ({marks}) OR fingerprint IN ({marks}) "
                    "ORDER BY events DESC NULLS LAST LIMIT ?",
                    [*ids, *ids, limit],
                )
                found = [
                    Template(
                        str(r[0]), r[1], str(r[2] or ""), int(r[3] or 0), int(r[4] or 0), "detector"
                    )
                    for r in rows
                ]
        return found or self.mined_templates(campaign_id, limit=limit)

    def mined_templates(self, campaign_id: str, limit: int = 12) -> list[Template]:
        """Templates mined from the campaign's prompts (first five words, digits folded)."""
        rows = self._fetch(
            "SELECT tmpl, example, accounts, events, fingerprint FROM camp_tmpl "
            "WHERE campaign_id = ? ORDER BY accounts DESC, events DESC, tmpl LIMIT ?",
            [campaign_id, limit],
        )
        return [
            Template(f"M{i + 1}", str(r[4]), str(r[1] or ""), int(r[2]), int(r[3]), "mined")
            for i, r in enumerate(rows)
        ]

    def attributes(
        self,
        campaign_id: str,
        kinds: Sequence[str] = ATTRIBUTE_KINDS,
        min_members: int = 2,
        limit: int = 200,
    ) -> list[Attribute]:
        """What members of the campaign share: attributes used by at least `min_members`."""
        marks = ", ".join("?" for _ in kinds)
        rows = self._fetch(
            f"""SELECT kind, value, members, accounts, events FROM camp_attr
            WHERE campaign_id = ? AND kind IN ({marks}) AND members >= ?
            ORDER BY members DESC, kind, value LIMIT ?""",
            [campaign_id, *kinds, min_members, limit],
        )
        return [Attribute(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    def account_attributes(self, account_id: str) -> list[Attribute]:
        """Every address, range, agent, payment and e-mail of an account, with how many share it."""
        rows = self._fetch(
            """SELECT a.kind, a.value, 1, u.accounts, a.n FROM attr a
            JOIN attr_users u ON u.kind = a.kind AND u.value = a.value
            WHERE a.account_id = ? ORDER BY u.accounts DESC, a.n DESC LIMIT 100""",
            [account_id],
        )
        return [Attribute(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    def links(
        self, campaign_id: str, max_accounts: int = 120, max_attributes: int = 40
    ) -> tuple[list[Account], list[Attribute], list[Link]]:
        """The campaign graph: its top accounts, the attributes they share, and the edges.

        Edges run from an account to each shared attribute it uses, plus any account-to-account
        edges of the scan's `links` table between the accounts shown.
        """
        accounts = self.members(campaign_id, limit=max_accounts)
        ids = [a.account_id for a in accounts]
        if not ids:
            return [], [], []
        # What the accounts shown share among themselves (a big campaign's top accounts may
        # use other values than the campaign as a whole), with campaign-level counts.
        marks = ", ".join("?" for _ in ids)
        rows = self._fetch(
            f"""SELECT a.kind, a.value, count(DISTINCT a.account_id) AS shown,
            any_value(c.members), any_value(c.accounts), any_value(c.events)
            FROM attr a JOIN camp_attr c
              ON c.campaign_id = ? AND c.kind = a.kind AND c.value = a.value
            WHERE a.account_id IN ({marks}) GROUP BY a.kind, a.value
            HAVING count(DISTINCT a.account_id) >= 2 ORDER BY shown DESC LIMIT 2000""",
            [campaign_id, *ids],
        )
        shown = {(str(r[0]), str(r[1])): int(r[2]) for r in rows}
        candidates = [
            Attribute(str(r[0]), str(r[1]), int(r[3]), int(r[4]), int(r[5])) for r in rows
        ]
        attrs = _graph_attributes(candidates, max_attributes, shown)
        edges: list[Link] = []
        if attrs:
            marks = ", ".join("?" for _ in ids)
            pairs = [(a.kind, a.value) for a in attrs]
            self_vals = ", ".join("(?, ?)" for _ in pairs)
            flat = [x for p in pairs for x in p]
            rows = self._fetch(
                f"""SELECT account_id, kind, value, n FROM attr
                WHERE account_id IN ({marks}) AND (kind, value) IN (VALUES {self_vals})""",
                [*ids, *flat],
            )
            edges = [Link(str(r[0]), f"{r[1]}:{r[2]}", str(r[1]), float(r[3])) for r in rows]
        if self.has_links:
            marks = ", ".join("?" for _ in ids)
            rows = self._fetch(
                f"SELECT src, dst, kind, weight FROM links WHERE src IN ({marks}) "
                f"AND dst IN ({marks}) LIMIT 2000",
                [*ids, *ids],
            )
            edges += [Link(str(r[0]), str(r[1]), str(r[2]), float(r[3] or 1.0)) for r in rows]
        return accounts, attrs, edges

    def account_campaign_share(self, campaign_id: str) -> float:
        """Share of all accounts in the log that belong to this campaign."""
        rows = self._fetch(
            "SELECT count(*) FILTER (WHERE campaign_id = ?), count(*) FROM verdicts", [campaign_id]
        )
        total = int(rows[0][1]) if rows else 0
        return int(rows[0][0]) / total if total else 0.0

    def totals(self) -> dict[str, int]:
        """Counts for the front page: events, accounts, flagged accounts, campaigns."""
        rows = self._fetch(
            "SELECT (SELECT coalesce(sum(events), 0) FROM acct_stats), "
            "(SELECT count(*) FROM acct_stats), "
            "(SELECT count(*) FROM verdicts WHERE action IN ('throttle', 'block')), "
            "(SELECT count(*) FROM campaigns)"
        )
        r = rows[0]
        return {
            "events": int(r[0]),
            "accounts": int(r[1]),
            "flagged": int(r[2]),
            "campaigns": int(r[3]),
        }

    def close(self) -> None:
        """Release the DuckDB connection."""
        self._con.close()
