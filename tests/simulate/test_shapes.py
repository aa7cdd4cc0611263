"""Content-only and single-link campaigns and the benign look-alikes (issue 14 part 5): each
shape has the property the scenario knobs claim, on a small log (seed in SEED)."""

from __future__ import annotations

import re
from typing import Any

import duckdb
import pytest

from distillguard.report import HARD_NEGATIVE_PERSONAS
from distillguard.simulate import CampaignSpec, Corpora, campaign_family, load_scenario, simulate
from distillguard.simulate._world import FREE_MAIL

SEED = 4
PER_LINK = 40
HUMAN = (8.0, 16.0)
LOOKALIKES = ("student", "judge_lab", "benchmark_researcher", "oss_app_developer")


def _campaign(cid: str, links: str, accounts: int, **kw: object) -> CampaignSpec:
    return CampaignSpec(
        id=cid, persona="content_only_worker" if links == "none" else "single_link_worker",
        content=kw.pop("content", "task_pool_elicitation"), links=links, accounts=accounts,
        accounts_per_link=PER_LINK, human_daily=HUMAN, user_agents="per_account", created_days=(-120.0, -2.0),
        signup_channels={"self_serve": 1.0}, paid_share=0.8, **kw,
    )


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory, corpora: Corpora) -> duckdb.DuckDBPyConnection:
    sc = load_scenario()
    small = {
        "casual": sc.casual.model_copy(update={"accounts": 300, "events": 5000}),
        "developer": sc.developer.model_copy(update={"accounts": 40, "events": 1500}),
        "template_developer": sc.template_developer.model_copy(update={"accounts": 4, "events": 400}),
        "enterprise_batch": sc.enterprise_batch.model_copy(update={"accounts": 1, "events": 500}),
        "classroom": sc.classroom.model_copy(update={"classes": 1}),
        "eval_runner": sc.eval_runner.model_copy(update={"accounts": 1, "events": 500}),
        "reseller": sc.reseller.model_copy(update={"accounts": 1, "events": 500}),
        "students": sc.students.model_copy(update={"accounts": 200, "events": 2500, "universities": 30}),
        "judge_lab": sc.judge_lab.model_copy(update={"accounts": 4, "events": 1600}),
        "benchmark_researcher": sc.benchmark_researcher.model_copy(update={"accounts": 6, "events": 1200}),
        "oss_app_developer": sc.oss_app_developer.model_copy(update={"accounts": 30, "events": 1500}),
        "campaigns": [
            _campaign("content-only", "none", 60),
            _campaign("by-card", "card", 120, elicitation="step_by_step"),
            _campaign("by-email", "email", 80, content="reasoning_rubric"),
            _campaign("by-signup", "signup", 80, content="coding_agentic"),
            _campaign("by-proxy", "proxy", 80),
        ],
    }
    out = tmp_path_factory.mktemp("shapes") / "log"
    simulate(out, seed=SEED, scenario=sc.model_copy(update=small), corpora=corpora)
    c = duckdb.connect()
    c.execute(f"create view e as select * from read_parquet('{out}/events/*.parquet')")
    for t in ("accounts", "labels"):
        c.execute(f"create view {t} as select * from read_parquet('{out}/{t}.parquet')")
    c.execute("""create view ca as select l.campaign_id, a.* from labels l join accounts a using (account_id)
                 where l.campaign_id is not null""")
    return c


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def _shared(con: duckdb.DuckDBPyConnection, cid: str, column: str) -> int:
    """How many values of an account column (or of `ip`) more than one account of `cid` uses."""
    src = "e join labels using (account_id)" if column == "ip" else "ca"
    got = _rows(con, f"""select count(*) from (select {column} from {src} where campaign_id = '{cid}'
                         and {column} is not null group by 1 having count(distinct account_id) > 1)""")
    return int(got[0][0])


def test_content_only_accounts_share_no_infrastructure(con: duckdb.DuckDBPyConnection) -> None:
    cid = "content-only"
    for column in ("ip", "payment_fingerprint", "date_trunc('hour', created_at)", "user_agent"):
        if column == "user_agent":  # a browser build can coincide; each account keeps its own
            per = _rows(con, f"""select max(n) from (select account_id, count(distinct user_agent) n from e
                                 join labels using (account_id) where campaign_id = '{cid}' group by 1)""")
            assert per[0][0] == 1
            continue
        assert _shared(con, cid, column) == 0, column
    # e-mail at public providers only; accounts aged days to months
    doms = {r[0] for r in _rows(con, f"select distinct email_domain from ca where campaign_id = '{cid}'")}
    assert doms <= set(FREE_MAIL)
    age = _rows(con, f"""select min(epoch(w - created_at)) / 86400, max(epoch(w - created_at)) / 86400
                         from ca, (select min(ts) w from e) where campaign_id = '{cid}'""")[0]
    assert 1 < age[0] < 30 and age[1] > 60


def test_content_only_accounts_ask_from_one_pool_each_in_its_own_wrapper(con: duckdb.DuckDBPyConnection) -> None:
    # every request wraps a task in a step-by-step or rubric elicitation
    share = _rows(con, """select avg(regexp_matches(lower(prompt), 'step|grade|score|rate|mark|judge|assess|evaluat|reason|explain|think|walk|describe|clarif')::int)
                          from e join labels using (account_id) where campaign_id = 'content-only'""")[0][0]
    assert share > 0.95
    # each account its own paraphrase: the wrapper's opening line differs between accounts
    n_acc, n_open = _rows(con, """select count(distinct account_id), count(distinct (account_id, open)) from (
        select account_id, split_part(prompt, chr(10), 1) open from e join labels using (account_id)
        where campaign_id = 'by-card')""")[0]
    heads = _rows(con, """select count(distinct open) from (select account_id, any_value(split_part(prompt, chr(10), 1)) open
                          from e join labels using (account_id) where campaign_id = 'by-card' group by 1)""")[0][0]
    assert heads >= 0.5 * n_acc
    # slices: accounts rarely send the same task as another account
    dup = _rows(con, """select avg((n > 1)::int) from (select prompt, count(distinct account_id) n from e
                        join labels using (account_id) where campaign_id = 'content-only' group by 1)""")[0][0]
    assert dup < 0.05 and n_open >= n_acc


def test_single_link_campaigns_share_exactly_one_kind(con: duckdb.DuckDBPyConnection) -> None:
    kinds = {"by-card": "payment_fingerprint", "by-email": "email_domain",
             "by-signup": "date_trunc('hour', created_at)", "by-proxy": "ip"}
    for cid, link in kinds.items():
        for column in kinds.values():
            if column == "email_domain":
                continue  # public providers are shared by everybody; the pattern is checked below
            n = _shared(con, cid, column)
            assert (n > 0) == (column == link), (cid, column, n)
    # about 40 accounts per card
    per_card = _rows(con, """select avg(n), max(n) from (select payment_fingerprint, count(*) n from ca
                             where campaign_id = 'by-card' group by 1)""")[0]
    assert 30 <= per_card[0] <= PER_LINK and per_card[1] == PER_LINK
    # one patterned series of domains (same stem, numbered), ~40 accounts each
    doms = [r[0] for r in _rows(con, "select distinct email_domain from ca where campaign_id = 'by-email'")]
    stems = {re.sub(r"\d+\.[a-z]+$", "", d) for d in doms}
    assert len(doms) == 2 and len(stems) == 1 and all(re.search(r"\d{2}\.[a-z]+$", d) for d in doms), doms
    # a sign-up burst is one two-hour window of ~40 accounts
    bursts = _rows(con, """select count(*) from (select date_trunc('day', created_at), count(*) n from ca
                           where campaign_id = 'by-signup' group by 1 having n >= 30)""")[0][0]
    assert bursts == 2
    # the proxy range: every address of one group in one /24, each group its own range
    ranges = _rows(con, """select count(distinct regexp_extract(ip, '^(\\d+\\.\\d+\\.\\d+)\\.')) from e
                           join labels using (account_id) where campaign_id = 'by-proxy'""")[0][0]
    assert ranges == 2


def test_human_pace_in_own_time_zone(con: duckdb.DuckDBPyConnection) -> None:
    per_day = _rows(con, """select quantile_cont(n, 0.1), quantile_cont(n, 0.9) from (
        select account_id, count(*) / 7.0 n from e join labels using (account_id)
        where campaign_id in ('content-only', 'by-card') group by 1)""")[0]
    assert HUMAN[0] * 0.7 <= per_day[0] and per_day[1] <= HUMAN[1] * 1.3
    # local nights are quiet (declared country's offset, as the simulator's COUNTRY_TZ)
    from distillguard.simulate._world import COUNTRY_TZ

    case = " ".join(f"when '{c}' then {tz}" for c, tz in COUNTRY_TZ.items())
    night, day = _rows(con, f"""select avg((h between 2 and 5)::int), avg((h between 10 and 13)::int) from (
        select (hour(ts) + 24 + (case a.country {case} else 0 end)::int) % 24 h
        from e join labels using (account_id) join accounts a using (account_id)
        where campaign_id = 'content-only')""")[0]
    assert day > 3 * night


def test_lookalikes_present_and_hard_negatives(con: duckdb.DuckDBPyConnection) -> None:
    got = dict(_rows(con, """select persona, count(distinct account_id) from labels join e using (account_id)
                             where label = 'benign' group by 1"""))
    for p in LOOKALIKES:
        assert got.get(p, 0) > 0 and p in HARD_NEGATIVE_PERSONAS, p
    # students: many universities, step-by-step requests, no shared card
    unis, step = _rows(con, """select count(distinct a.email_domain), avg(regexp_matches(lower(prompt), 'step|explain|walk|show|method|understand|help|reasoning|working|tutor|solve')::int)
                               from e join labels using (account_id) join accounts a using (account_id)
                               where persona = 'student' and turns = 1""")[0]
    assert unis >= 15 and step > 0.9
    # judge labs: one public template, the same text opening every lab's requests
    labs, opens = _rows(con, """select count(distinct account_id), count(distinct left(prompt, 200)) from e
                                join labels using (account_id) where persona = 'judge_lab'""")[0]
    assert labs >= 3 and opens <= 2
    # one open-source app's system prompt sent by many unrelated developers
    n = _rows(con, """select max(n) from (select system, count(distinct account_id) n from e join labels using (account_id)
                      where persona = 'oss_app_developer' group by 1)""")[0][0]
    assert n >= 20


def test_campaign_family_from_knobs() -> None:
    assert campaign_family(_campaign("a", "none", 2)) == "content_only"
    assert campaign_family(_campaign("b", "card", 2)) == "single_link_card"
    assert campaign_family(CampaignSpec(id="c", via_reseller_share=0.5)) == "reseller_carried"
    assert campaign_family(CampaignSpec(id="d", content="self_instruct_templates")) == "templated"
    assert campaign_family(CampaignSpec(id="e")) == "hydra"
    assert campaign_family(CampaignSpec(id="f", family="mine")) == "mine"
