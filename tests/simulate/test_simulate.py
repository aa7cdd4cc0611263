"""The simulator: determinism, label consistency, and each persona and campaign present with
the property that defines it (on a small `events` size; seed in conftest.SEED)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from distillguard.simulate import (
    Corpora,
    Scenario,
    SimulationResult,
    load_scenario,
    plot_overview,
    simulate,
)
from distillguard.traffic import ACCOUNTS, EVENTS, LABELS, MODELS

SEED = 11  # the shared log's seed (tests/simulate/conftest.py)


def one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _tables(d: Path) -> dict[str, object]:
    return {
        "events": pq.read_table(d / "events"),
        **{t: pq.read_table(d / f"{t}.parquet") for t in ("accounts", "labels", "models")},
    }


def test_same_seed_same_files_other_seed_other_log(tmp_path: Path, corpora: Corpora) -> None:
    a = simulate(tmp_path / "a", seed=5, events=4000, corpora=corpora)
    b = simulate(tmp_path / "b", seed=5, events=4000, corpora=corpora)
    c = simulate(tmp_path / "c", seed=6, events=4000, corpora=corpora)
    ta, tb, tc = _tables(a.out), _tables(b.out), _tables(c.out)
    for name in ta:
        assert ta[name].equals(tb[name]), f"table {name} differs between two runs with seed 5"  # type: ignore[attr-defined]
    for f in sorted([*a.out.rglob("*.parquet"), a.out / "simulation.json"]):
        assert f.read_bytes() == (b.out / f.relative_to(a.out)).read_bytes(), f"{f.name} not byte-identical"
    assert not ta["events"].equals(tc["events"])  # type: ignore[attr-defined]


def test_manifest_records_seed_and_scenario(sim: SimulationResult) -> None:
    m = json.loads((sim.out / "simulation.json").read_text())
    assert m["seed"] == SEED and m["events"] == sim.events and m["accounts"] == sim.accounts
    assert {c["id"] for c in m["scenario"]["campaigns"]} == {c.id for c in load_scenario().campaigns}


def test_schemas_and_parts(sim: SimulationResult) -> None:
    assert [p.name for p in sim.files] == ["part-00000.parquet"]
    # every v1 column in order; the optional v1.1 columns it does not fill (end_user, batch_id) are left out
    written = [c for c in EVENTS.columns if c not in ("end_user", "batch_id")]
    assert pq.read_schema(sim.files[0]).names == written
    for t, spec in (("accounts", ACCOUNTS), ("labels", LABELS), ("models", MODELS)):
        assert pq.read_schema(sim.out / f"{t}.parquet").names[: len(spec.columns)] == spec.columns
    assert 30_000 < sim.events < 55_000


def test_labels_consistent(con: duckdb.DuckDBPyConnection) -> None:
    assert one(con, "select count(*) from e where account_id not in (select account_id from accounts)") == 0
    assert one(con, "select count(*) from accounts where account_id not in (select account_id from labels)") == 0
    assert one(con, "select count(*) from labels where account_id not in (select account_id from accounts)") == 0
    assert one(con, "select count(*) - count(distinct account_id) from labels") == 0
    assert one(con, "select count(*) from labels where label not in ('benign', 'distill')") == 0
    assert one(con, "select count(*) from labels where (label = 'distill') != (campaign_id is not null)") == 0
    assert one(con, "select count(*) from labels where persona is null") == 0
    ids = {r[0] for r in con.execute("select distinct campaign_id from labels where campaign_id is not null").fetchall()}
    assert ids == {c.id for c in load_scenario().campaigns}
    # every account has events, none before it was created, all inside the window
    assert one(con, "select count(*) from accounts where account_id not in (select account_id from e)") == 0
    assert one(con, "select count(*) from e join accounts using(account_id) where e.ts < created_at") == 0
    assert one(con, "select count(*) - count(distinct event_id) from e") == 0
    assert one(con, "select count(*) from e where model not in (select model from models)") == 0


def test_every_persona_present(con: duckdb.DuckDBPyConnection) -> None:
    got = {r[0] for r in con.execute("select distinct persona from labels join e using(account_id)").fetchall()}
    assert {"casual", "developer", "template_developer", "enterprise_batch", "classroom", "eval_runner",
            "reseller", "hydra_worker", "agentic_worker", "reasoning_elicitor", "template_worker",
            "reseller_mixed"} <= got


def test_benign_casual_users_rarely_share_exact_prompts(con: duckdb.DuckDBPyConnection) -> None:
    shared = one(con, """
        with c as (select e.account_id, prompt from e join labels using(account_id)
                   where persona = 'casual' and turns = 1),
             p as (select prompt, count(distinct account_id) na from c group by 1)
        select avg((na > 1)::int) from c join p using(prompt)""")
    assert isinstance(shared, float) and shared < 0.05, f"seed {SEED}: {shared:.3f} of first turns shared"
    # multi-turn sessions with human think times exist
    assert one(con, "select avg((turns > 1)::int) from e join labels using(account_id) where persona='casual'") > 0.3  # type: ignore[operator]


def test_classroom_behind_one_address_same_assignment(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute("""
        with c as (select e.*, a.email_domain from e join labels using(account_id) join accounts a using(account_id)
                   where persona = 'classroom' and turns = 1),
             top as (select email_domain, ip, count(distinct account_id) n,
                     row_number() over (partition by email_domain order by count(distinct account_id) desc) r
                     from c group by 1, 2)
        select t.email_domain, t.n, (select count(distinct account_id) from c where c.email_domain = t.email_domain)
        from top t where r = 1""").fetchall()
    assert rows
    for _dom, on_top_ip, total in rows:
        assert total >= 20 and on_top_ip >= 0.9 * total
    # the same assignment text, sent by many students within minutes
    n = one(con, """select max(n) from (select prompt, count(distinct account_id) n, max(ts) - min(ts) span
                   from e join labels using(account_id) where persona = 'classroom' and turns = 1
                   group by prompt) where span < interval 15 minute""")
    assert n >= 15  # type: ignore[operator]


def test_hydra_cluster(con: duckdb.DuckDBPyConnection) -> None:
    acc, ips = con.execute("""select count(distinct account_id), count(distinct ip) from e join labels using(account_id)
                              where campaign_id = 'hydra-coding'""").fetchone()  # type: ignore[misc]
    assert acc >= 20 and ips < acc
    shared_pay = one(con, """select count(*) from (select payment_fingerprint from accounts join labels using(account_id)
                            where campaign_id = 'hydra-coding' group by 1 having count(*) > 1)""")
    assert shared_pay >= 1  # type: ignore[operator]
    chans = {r[0] for r in con.execute("select distinct signup_channel from accounts join labels using(account_id) where campaign_id='hydra-coding'").fetchall()}
    assert chans <= {"education", "research", "startup"}
    # load balanced: per-account volume far more even than casual users'
    cv = one(con, """select stddev(n) / avg(n) from (select account_id, count(*) n from e join labels using(account_id)
                    where campaign_id = 'hydra-coding' group by 1)""")
    assert cv < 0.6  # type: ignore[operator]
    # ... and under the scenario's per-account daily limit
    limit = next(c.daily_limit for c in load_scenario().campaigns if c.id == "hydra-coding")
    peak = one(con, """select max(n) from (select account_id, date_trunc('day', ts), count(*) n from e
                      join labels using(account_id) where campaign_id = 'hydra-coding' group by all)""")
    assert limit is not None and peak <= limit  # type: ignore[operator]


def test_big_campaign_moves_to_new_model_within_a_day(con: duckdb.DuckDBPyConnection) -> None:
    before, after = con.execute("""
        select avg((e.model = m.model)::int) filter (where e.ts < m.released_at),
               avg((e.model = m.model)::int) filter (where e.ts between m.released_at + interval 14 hour
                                                   and m.released_at + interval 24 hour)
        from e join labels using(account_id), (select * from models where model = 'atlas-3.5') m
        where campaign_id = 'hydra-coding'""").fetchone()  # type: ignore[misc]
    assert before == 0 and after >= 0.5


def test_campaign_content(con: duckdb.DuckDBPyConnection) -> None:
    tools = one(con, "select avg((tools > 0)::int) from e join labels using(account_id) where campaign_id='agentic-tools'")
    assert tools > 0.4  # type: ignore[operator]
    step = one(con, """select avg(regexp_matches(lower(coalesce(system, '') || prompt), 'step|rubric|score|grade|reason')::int)
                      from e join labels using(account_id) where campaign_id = 'reasoning-rubric'""")
    assert step > 0.8  # type: ignore[operator]
    # templates with variation: a few wrappers cover most requests, yet the exact texts differ
    top, uniq = con.execute("""select max(n) / sum(n), (select count(distinct prompt) / count(*) from e join labels using(account_id) where campaign_id = 'template-variation')
        from (select left(prompt, 40) p, count(*) n from e join labels using(account_id)
              where campaign_id = 'template-variation' group by 1)""").fetchone()  # type: ignore[misc]
    assert top > 0.1 and uniq > 0.3
    capped = one(con, "select avg((completion_tokens = max_tokens)::int) from e join labels using(account_id) where label='distill'")
    assert capped > 0.15  # type: ignore[operator]


def test_hard_negatives(con: duckdb.DuckDBPyConnection) -> None:
    # enterprise batch: verified, the busiest benign account, active around the clock
    persona, verified, hours = con.execute("""
        select persona, verified, (select count(distinct hour(ts)) from e where e.account_id = t.account_id)
        from (select account_id, count(*) n from e group by 1 order by n desc limit 1) t
        join labels using(account_id) join accounts using(account_id)""").fetchone()  # type: ignore[misc]
    assert persona == "enterprise_batch" and verified and hours == 24
    # eval runners: benchmark prompts in bursts, including "step by step"
    burst = one(con, """select max(n) from (select account_id, date_trunc('minute', ts) m, count(*) n
                       from e join labels using(account_id) where persona = 'eval_runner' group by 1, 2)""")
    assert burst >= 60  # type: ignore[operator]
    assert one(con, "select count(*) from e join labels using(account_id) where persona='eval_runner' and prompt like '%step by step%'") > 0  # type: ignore[operator]
    # reseller: one account, many end users' sessions from a few server addresses
    r = con.execute("""select count(*), count(distinct ip) from e join labels using(account_id)
                       where persona = 'reseller' group by account_id""").fetchall()
    assert r and all(n > 500 and ips <= 3 for n, ips in r)
    # the mixed reseller is labelled distill with its campaign share
    share = one(con, "select distill_share from labels where persona = 'reseller_mixed'")
    assert 0 < share < 1  # type: ignore[operator]
    # template developers re-send the same inputs while editing one template
    assert one(con, """select min(r) from (select count(distinct prompt) / count(*) r from e join labels using(account_id)
                      where persona = 'template_developer' group by account_id)""") < 0.6  # type: ignore[operator]


def test_benign_rhythm_follows_local_day(con: duckdb.DuckDBPyConnection) -> None:
    night, day = con.execute("""
        with c as (select e.ts, a.country from e join labels using(account_id) join accounts a using(account_id)
                   where persona = 'casual' and a.country in ('DE', 'FR', 'ES', 'IT', 'NL', 'PL'))
        select avg((hour(ts + interval 1 hour) between 2 and 5)::int), avg((hour(ts + interval 1 hour) between 10 and 13)::int) from c""").fetchone()  # type: ignore[misc]
    assert day > 3 * night


def test_overview_plot(sim: SimulationResult, tmp_path: Path) -> None:
    png = plot_overview(sim.out, tmp_path / "overview.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_turn_gaps_follow_the_mooncake_trace(con: duckdb.DuckDBPyConnection, corpora: Corpora) -> None:
    import numpy as np

    med = one(con, """
        select median(gap) from (
            select epoch(ts - lag(ts) over w) gap, turns - lag(turns) over w dturns
            from e join labels using(account_id) where persona = 'casual'
            window w as (partition by account_id order by ts)) where dturns = 2""")
    real = float(np.median(corpora.turn_gaps_s))
    assert 100 < real < 150 and 0.6 * real < med < 1.6 * real  # type: ignore[operator]


def _small(sc: Scenario, campaigns: tuple[str, ...], **more: object) -> Scenario:
    """`sc` with only `campaigns`, smaller, beside a small population (scaling would cut the
    campaigns to one account); `more` replaces other sections."""
    small = {"casual": sc.casual.model_copy(update={"accounts": 100, "events": 2000}),
             "developer": sc.developer.model_copy(update={"accounts": 20, "events": 1000}),
             "enterprise_batch": sc.enterprise_batch.model_copy(update={"events": 1000}),
             "eval_runner": sc.eval_runner.model_copy(update={"events": 1000}),
             "reseller": sc.reseller.model_copy(update={"events": 2000}),
             "campaigns": [c.model_copy(update={"events": 2000, "reseller_benign_events": 2000})
                           for c in sc.campaigns if c.id in campaigns]}
    return sc.model_copy(update={**small, **more})


def test_carried_campaign_split_over_resellers_with_independent_accounts(
        tmp_path: Path, corpora: Corpora) -> None:
    """`via_resellers` splits the carried share over several reseller accounts;
    `independent_accounts` gives each direct account its own sign-up day, e-mail domain, card
    and (with one proxy each and no churn) address."""
    sc = load_scenario(Path(__file__).parents[2] / "scenarios" / "tune_carried_variants.toml")
    sim = simulate(tmp_path / "v", seed=3, corpora=corpora,
                   scenario=_small(sc, ("split-resellers", "scattered-three")))
    con = duckdb.connect()
    con.execute(f"create view e as select * from read_parquet('{sim.out}/events/*.parquet')")
    for t in ("accounts", "labels"):
        con.execute(f"create view {t} as select * from read_parquet('{sim.out}/{t}.parquet')")
    split = con.execute("""select l.account_id, count(*) from labels l join e using (account_id)
                           where l.campaign_id = 'split-resellers' and l.persona = 'reseller_mixed'
                           group by 1""").fetchall()
    assert len(split) == 2 and min(n for _, n in split) > 0.3 * max(n for _, n in split)
    direct = con.execute("""select a.email_domain, a.payment_fingerprint,
                                   date_trunc('hour', a.created_at), any_value(e.ip)
                            from labels l join accounts a using (account_id)
                            join e using (account_id)
                            where l.campaign_id = 'scattered-three' and l.persona != 'reseller_mixed'
                            group by all""").fetchall()
    assert len(direct) == 3
    for col in range(3):
        assert len({row[col] for row in direct}) == 3, direct
    ips = con.execute("""select count(distinct ip), count(distinct account_id) from e
                         join labels using (account_id)
                         where campaign_id = 'scattered-three' and persona != 'reseller_mixed'
                         """).fetchone()
    assert ips == (3, 3)


def test_resellers_that_declare_their_customers_write_end_users_and_their_truth(
        tmp_path: Path, corpora: Corpora) -> None:
    """`reseller.end_user_share = 1`: every reseller request names a customer; a carried
    campaign's requests name `reseller_end_users` customers of the operator's, labelled
    `distill` in `end_user_labels`; everything but the new column is what the run writes
    without end users."""
    sc = load_scenario(Path(__file__).parents[2] / "scenarios" / "tune_reseller_end_users.toml")
    named = _small(sc, ("carried-reasoning",),
                   template_developer=sc.template_developer.model_copy(update={"accounts": 0}))
    plain = named.model_copy(update={"reseller": named.reseller.model_copy(update={"end_user_share": 0.0})})
    a = simulate(tmp_path / "named", seed=3, corpora=corpora, scenario=named)
    b = simulate(tmp_path / "plain", seed=3, corpora=corpora, scenario=plain)
    ea, eb = pq.read_table(a.out / "events"), pq.read_table(b.out / "events")
    assert "end_user" not in eb.column_names
    assert ea.drop(["end_user"]).equals(eb)
    con = duckdb.connect()
    con.execute(f"create view e as select * from read_parquet('{a.out}/events/*.parquet')")
    for t in ("labels", "end_user_labels"):
        con.execute(f"create view {t} as select * from read_parquet('{a.out}/{t}.parquet')")
    unnamed = one(con, """select count(*) from e join labels using (account_id)
                          where persona like 'reseller%' and end_user is null""")
    assert unnamed == 0
    assert one(con, "select count(*) from e join labels using (account_id) where persona not like 'reseller%' and end_user is not null") == 0
    ops = con.execute("""select label, campaign_id, count(distinct end_user) from end_user_labels
                         where label = 'distill' group by all""").fetchall()
    assert ops == [("distill", "carried-reasoning", 3)]
    # every named request's end user has its truth, under the account it came through
    assert one(con, "select count(*) from e anti join end_user_labels using (account_id, end_user) where end_user is not null") == 0
