"""The benign population: casual users, developers, and the hard negatives that share some
signals of an attack (template developers, enterprise batch jobs, classrooms, evaluation
runners, resellers)."""

from __future__ import annotations

import numpy as np

from distillguard.simulate._content import (
    APP_TEMPLATES,
    COT_WRAPPERS,
    HUMANEVAL_WRAPPER,
    IDE_AGENTS,
    IDE_SYSTEMS,
    slotted,
)
from distillguard.simulate._env import DAY_US, HOUR_US, Env, expand_sessions
from distillguard.simulate._world import (
    COUNTRIES,
    FLAT_PROFILE,
    FREE_MAIL,
    HUMAN_PROFILE,
    OFFICE_PROFILE,
    passes_end_users,
    sample_times,
)

MINUTE_US = 60_000_000
# Temperatures SDK users set (none for browser tools): common values, a long tail of others.
TEMPERATURES = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2], np.float32)
TEMP_P = np.array([10, 3, 8, 4, 2, 8, 3, 20, 5, 2, 30, 5], float) / 100
UNIVERSITIES = 200  # casual accounts that sign up as education use their university's domain


def _created_before(env: Env, rng: np.random.Generator, n: int, median_days: float,
                    new_share: float = 0.03) -> np.ndarray:
    age = np.clip(rng.lognormal(np.log(median_days), 1.0, size=n), 1, 1500)
    created = env.start_us - (age * DAY_US).astype(np.int64)
    new = rng.random(n) < new_share
    created[new] = env.start_us + (rng.random(int(new.sum())) * 0.8 * (env.end_us - env.start_us)).astype(np.int64)
    return created


def _channels(rng: np.random.Generator, n: int, weights: dict[str, float]) -> list[str]:
    names = list(weights)
    p = np.array([weights[k] for k in names], float)
    return [names[int(i)] for i in rng.choice(len(names), size=n, p=p / p.sum())]


def _emails(env: Env, rng: np.random.Generator, n: int, personal: float = 0.1) -> list[str]:
    out = []
    for i in rng.integers(len(FREE_MAIL), size=n):
        if rng.random() < personal:
            out.append(f"{env.world._hex(6)}.{('com', 'net', 'io', 'de', 'fr', 'co.uk')[int(i) % 6]}")
        else:
            out.append(FREE_MAIL[int(i)])
    return out


def _payments(env: Env, rng: np.random.Generator, n: int, paid: float, family: float = 0.015) -> list[str | None]:
    out: list[str | None] = []
    for _ in range(n):
        if rng.random() >= paid:
            out.append(None)
        elif out and rng.random() < family and out[-1] is not None:
            out.append(out[-1])  # a family or a small team sharing a card
        else:
            out.append(env.world.payment())
    return out


def _ip_sets(env: Env, rng: np.random.Generator, n: int, shared_pool: np.ndarray | None,
             shared_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Per account 1-3 own addresses, or for a `shared_share` of accounts addresses from a
    carrier-grade NAT pool shared with other accounts. Returns (first, count) into a flat list."""
    k = rng.integers(1, 4, size=n)
    flat = env.world.new_ips(int(k.sum()), "residential")
    if shared_pool is not None and len(shared_pool):
        owner = np.repeat(np.arange(n), k)
        use = (rng.random(n) < shared_share)[owner]
        flat[use] = shared_pool[rng.integers(len(shared_pool), size=int(use.sum()))]
    first = np.cumsum(k) - k
    return np.concatenate([flat, np.zeros(1, np.int32)]), np.stack([first, k])


def _pick_ip(rng: np.random.Generator, flat: np.ndarray, fk: np.ndarray, owner: np.ndarray) -> np.ndarray:
    first, k = fk[0][owner], fk[1][owner]
    off = np.minimum(rng.geometric(0.7, size=len(owner)) - 1, k - 1)
    out: np.ndarray = flat[first + off]
    return out


def chat_prompts(env: Env, rng: np.random.Generator, j: np.ndarray, p_plain: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """lead/ctx/body/tail for chat turns: first turns from the benign first-turn pool with
    pasted context, greetings and closings; later turns from real follow-ups."""
    c = env.content
    n = len(j)
    first = j == 0
    fs, fu = c.sets["first"], c.sets["followup"]
    body = np.where(
        first,
        fs.index(rng.integers(fs.n_base, size=n), rng.integers(fs.n_var, size=n)),
        fu.index(rng.integers(fu.n_base, size=n), rng.integers(fu.n_var, size=n)),
    )
    p_ctx = np.where(first, 1 - p_plain, 0.1)
    ctx = np.where(rng.random(n) < p_ctx, c.ctx_ids[rng.integers(len(c.ctx_ids), size=n)], 0)
    lead = np.where(rng.random(n) < np.where(first, 0.35, 0.05), c.greet_ids[rng.integers(len(c.greet_ids), size=n)], 0)
    tail = np.where(rng.random(n) < np.where(first, 0.35, 0.1), c.close_ids[rng.integers(len(c.close_ids), size=n)], 0)
    return lead, ctx, body, tail


def _chat_events(env: Env, rng: np.random.Generator, acct: np.ndarray, ts: np.ndarray, j: np.ndarray,
                 ua: np.ndarray, ip: np.ndarray, sdk: np.ndarray, mini_share: float, adoption: float,
                 euser: np.ndarray | int = -1) -> None:
    n = len(ts)
    lead, ctx, body, tail = chat_prompts(env, rng, j, env.p_plain)
    comp = env.sample(rng, env.corpora.conv_generated, n, 1.6)
    maxtok = np.where(sdk, rng.choice(np.array([-1, 1024, 2048, 4096]), size=n), -1)
    comp = np.where(maxtok > 0, np.minimum(comp, maxtok), comp)
    temp = np.where(sdk & (rng.random(n) < 0.6), rng.choice(TEMPERATURES, size=n, p=TEMP_P), np.nan)
    hist = np.where(j > 0, j * (60 + env.sample(rng, env.corpora.conv_generated, n)), 0)
    env.plan.add(
        n, ts=ts, acct=acct, key=env.world.pick_keys(acct, rng), ip=ip, ua=ua,
        model=env.models(rng, ts, mini_share, adoption), lead=lead, ctx=ctx, body=body, tail=tail,
        turns=2 * j + 1, hist=hist, comp=comp, maxtok=maxtok, temp=temp, status=env.status(rng, n),
        euser=euser,
    )


def casual(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.casual
    a, e = spec.accounts, spec.events
    if a == 0 or e == 0:
        return
    w = env.world
    country, tz = w.countries(a, rng)
    signup = _channels(rng, a, {"self_serve": 0.9, "education": 0.06, "startup": 0.04})
    unis = [f"{w._hex(4)}.{('edu', 'ac.uk', 'edu.cn', 'ac.jp', 'edu.au', 'uni-x.de')[i % 6]}" for i in range(UNIVERSITIES)]
    email = [unis[int(rng.integers(len(unis)))] if ch == "education" else e
             for ch, e in zip(signup, _emails(env, rng, a), strict=True)]
    acct = w.new_accounts(
        a, persona="casual", created_us=_created_before(env, rng, a, 250), signup=signup,
        email_domain=email, payment=_payments(env, rng, a, 0.55), country=country,
        verified=rng.random(a) < 0.25, keys=rng.integers(1, 3, size=a),
    )
    sdk = rng.random(a) < spec.sdk_share
    ua = np.array([w.sdk_ua(rng) if s else w.browser_ua(rng) for s in sdk], np.int32)
    cg = w.new_ips(spec.cgnat_pool, "mobile6" if rng.random() < 0.5 else "residential")
    flat, fk = _ip_sets(env, rng, a, cg, spec.cgnat_share)
    activity = rng.lognormal(0, 1.1, size=a)
    s = max(1, int(e / spec.turns_mean))
    owner = rng.choice(a, size=s, p=activity / activity.sum())
    created = np.asarray(w.acc.created_us, np.int64)[acct[owner]]
    starts = sample_times(rng, tz[owner], np.maximum(created, env.start_us), env.end_us, HUMAN_PROFILE, 0.85)
    k = np.minimum(rng.geometric(1 / spec.turns_mean, size=s), 40)
    sess, j, ts = expand_sessions(rng, starts, k, spec.think_time_s, empirical=env.corpora.turn_gaps_s)
    keep = ts < env.end_us
    o = owner[sess][keep]
    _chat_events(env, rng, acct[o], ts[keep], j[keep], ua[o], _pick_ip(rng, flat, fk, o), sdk[o],
                 0.3, spec.new_model_adoption)


def developer(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.developer
    a, e = spec.accounts, spec.events
    if a == 0 or e == 0:
        return
    w, c = env.world, env.content
    country, tz = w.countries(a, rng)
    # teams share an office address (NAT); each developer also has a home address
    team = np.repeat(np.arange(a), rng.integers(1, spec.team_size_max + 1, size=a))[:a]
    office = w.new_ips(int(team.max()) + 1, "residential")[team]
    home = w.new_ips(a, "residential")
    company = [f"{w._hex(5)}.{('com', 'io', 'ai', 'dev', 'de')[int(t) % 5]}" for t in range(int(team.max()) + 1)]
    acct = w.new_accounts(
        a, persona="developer", created_us=_created_before(env, rng, a, 300, 0.02),
        signup=_channels(rng, a, {"self_serve": 0.55, "startup": 0.3, "enterprise": 0.1, "research": 0.05}),
        email_domain=[company[int(t)] if rng.random() < 0.6 else FREE_MAIL[int(t) % 4] for t in team],
        payment=_payments(env, rng, a, 0.95), country=country, verified=rng.random(a) < 0.5,
        keys=rng.integers(1, 5, size=a),
    )
    ide = rng.random(a) < spec.ide_agent_share
    ide_kind = rng.integers(len(IDE_SYSTEMS), size=a)
    ua = np.array([
        w.ua(IDE_AGENTS[int(k)].format(m=int(rng.integers(2, 9)), d=int(rng.integers(0, 9)))) if is_ide else w.sdk_ua(rng)
        for is_ide, k in zip(ide, ide_kind, strict=True)
    ], np.int32)
    sysp = np.where(rng.random(a) < spec.system_share, c.app_systems[rng.integers(len(c.app_systems), size=a)], 0)
    sysp = np.where(ide, c.ide_systems[ide_kind], sysp)
    activity = rng.lognormal(0, 1.0, size=a)
    nb = max(1, int(e / 9))
    owner = rng.choice(a, size=nb, p=activity / activity.sum())
    starts = sample_times(rng, tz[owner], env.start_us, env.end_us, OFFICE_PROFILE, 0.35)
    k = np.minimum(rng.geometric(1 / 9, size=nb), 200)
    burst, j, ts = expand_sessions(rng, starts, k, 25.0, 1.1)
    keep = ts < env.end_us
    burst, j, ts = burst[keep], j[keep], ts[keep]
    o = owner[burst]
    n = len(ts)
    tooly = (rng.random(nb) < spec.tools_share)[burst] & ~ide[o]
    chat = (rng.random(nb) < 0.2)[burst]
    bl, dm, dd = c.sets["bfcl_live"], c.sets["dev_misc"], c.sets["dev_distill"]
    fresh_misc = np.where(
        rng.random(n) < spec.distill_source_share,
        dd.index(rng.integers(dd.n_base, size=n), rng.integers(dd.n_var, size=n)),
        dm.index(rng.integers(dm.n_base, size=n), rng.integers(dm.n_var, size=n)),
    )
    fresh = np.where(tooly, bl.index(rng.integers(bl.n_base, size=n), rng.integers(bl.n_var, size=n)), fresh_misc)
    # re-running the burst's main prompt while debugging
    # a developer's own inputs: pasted code or data, sometimes a greeting or an instruction
    f_ctx = np.where(rng.random(n) < 1 - env.p_plain, c.ctx_ids[rng.integers(len(c.ctx_ids), size=n)], 0)
    f_lead = np.where(rng.random(n) < 0.2, c.greet_ids[rng.integers(len(c.greet_ids), size=n)], 0)
    f_tail = np.where(rng.random(n) < 0.3, c.close_ids[rng.integers(len(c.close_ids), size=n)], 0)
    # re-running the burst's first prompt while debugging
    first_of_burst = np.r_[True, burst[1:] != burst[:-1]]
    main_ix = np.maximum.accumulate(np.where(first_of_burst, np.arange(n), 0))
    rerun = rng.random(n) < 0.3
    body = np.where(rerun, fresh[main_ix], fresh)
    ctx = np.where(rerun, f_ctx[main_ix], f_ctx)
    lead = np.where(rerun, f_lead[main_ix], f_lead)
    tail = np.where(rerun, f_tail[main_ix], f_tail)
    system = np.where(tooly, c.bfcl_systems[rng.integers(len(c.bfcl_systems), size=n)] * (rng.random(n) < 0.5), sysp[o])
    tools = np.where(tooly, np.minimum(rng.geometric(0.25, size=n), 24), 0)
    tools = np.where(ide[o], 10 + ide_kind[o] * 4, tools)  # an IDE agent always ships its tool set
    turns = np.where(chat | tooly | ide[o], 2 * j + 1, 1)
    comp = np.where(rng.random(n) < 0.5, env.sample(rng, env.corpora.code_generated, n, 3.0),
                    env.sample(rng, env.corpora.conv_generated, n, 1.5))
    maxtok = rng.choice(np.array([-1, 512, 1024, 2048, 4096, 8192]), size=n)
    comp = np.where(maxtok > 0, np.minimum(comp, maxtok), comp)
    temp = np.where(rng.random(n) < 0.7, rng.choice(TEMPERATURES, size=n, p=TEMP_P), np.nan)
    at_office = rng.random(n) < 0.8
    env.plan.add(
        n, ts=ts, acct=acct[o], key=w.pick_keys(acct[o], rng), ip=np.where(at_office, office[o], home[o]),
        ua=ua[o], model=env.models(rng, ts, 0.35, spec.new_model_adoption, 1.0), system=system,
        lead=lead, ctx=ctx, body=body, tail=tail, turns=turns, tools=tools,
        hist=np.where(turns > 1, j * env.sample(rng, env.corpora.code_context, n, 0.3), 0),
        comp=comp, maxtok=maxtok, temp=temp, status=env.status(rng, n, 0.01),
    )


def template_developer(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.template_developer
    a, e = spec.accounts, spec.events
    if a == 0 or e == 0:
        return
    w, c = env.world, env.content
    country, tz = w.countries(a, rng)
    acct = w.new_accounts(
        a, persona="template_developer", created_us=_created_before(env, rng, a, 200, 0.05),
        signup=_channels(rng, a, {"self_serve": 0.5, "startup": 0.5}),
        email_domain=_emails(env, rng, a, 0.6), payment=_payments(env, rng, a, 1.0), country=country,
        verified=rng.random(a) < 0.5, keys=1,
    )
    ua = np.array([w.sdk_ua(rng, 5) for _ in range(a)], np.int32)
    ips = w.new_ips(a, "residential")
    docs = c.sets["docs"]
    per = max(1, e // a)
    for i in range(a):
        # each developer edits their own copy of a template: `versions` successive rewordings
        tp = slotted(c, APP_TEMPLATES[int(rng.integers(len(APP_TEMPLATES)))], rng, spec.versions + 1)
        nb = max(1, per // 15)
        starts = np.sort(sample_times(rng, np.full(nb, tz[i]), env.start_us, env.end_us, OFFICE_PROFILE, 0.3))
        k = np.maximum(1, rng.poisson(15, size=nb))
        _, _, ts = expand_sessions(rng, starts, k, 40.0, 1.0)
        ts = ts[ts < env.end_us]
        n = len(ts)
        version = 1 + np.minimum((np.arange(n) * spec.versions) // max(1, n), spec.versions - 1)
        tests = rng.integers(docs.n_base, size=int(rng.integers(5, 25)))
        body = docs.index(tests[rng.integers(len(tests), size=n)], np.zeros(n, np.int64))
        sysp = c.app_systems[int(rng.integers(len(c.app_systems)))] if rng.random() < 0.6 else 0
        acc = np.full(n, acct[i], np.int32)
        env.plan.add(
            n, ts=ts, acct=acc, key=w.pick_keys(acc, rng), ip=ips[i], ua=ua[i],
            model=env.models(rng, ts, 0.4, 0.3), system=sysp, lead=tp.leads[version], body=body,
            tail=tp.tails[version], comp=env.sample(rng, env.corpora.conv_generated, n),
            maxtok=1024, temp=np.float32(0.2), status=env.status(rng, n),
        )


def enterprise_batch(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.enterprise_batch
    a, e = spec.accounts, spec.events
    if a == 0 or e == 0:
        return
    w, c = env.world, env.content
    ci = rng.choice(len(COUNTRIES), size=a)
    acct = w.new_accounts(
        a, persona="enterprise_batch", created_us=_created_before(env, rng, a, 500, 0.0),
        signup=["enterprise"] * a, email_domain=[f"{w._hex(6)}-corp.com" for _ in range(a)],
        payment=[w.payment() for _ in range(a)], country=[COUNTRIES[int(i)][0] for i in ci],
        verified=np.ones(a, bool), keys=rng.integers(2, 6, size=a),
    )
    docs = c.sets["docs"]
    share = rng.dirichlet(np.ones(a) * 2)
    for i in range(a):
        n = max(1, int(e * share[i]))
        tps = [slotted(c, APP_TEMPLATES[int(t)], rng, 2)
               for t in rng.choice(len(APP_TEMPLATES), size=spec.templates_per_account, replace=False)]
        t_ix = rng.integers(len(tps), size=n)
        lead = np.array([tp.leads[1] for tp in tps], np.int32)[t_ix]
        tail = np.array([tp.tails[1] for tp in tps], np.int32)[t_ix]
        # a steady queue around the clock, heavier during the company's night-time batch window
        prof = FLAT_PROFILE + 0.8 * (np.arange(24) < 5)
        ts = np.sort(sample_times(rng, np.full(n, COUNTRIES[int(ci[i])][1]), env.start_us, env.end_us, prof, 1.0))
        ips = w.new_ips(2, "datacenter")
        acc = np.full(n, acct[i], np.int32)
        env.plan.add(
            n, ts=ts, acct=acc, key=w.pick_keys(acc, rng), ip=ips[rng.integers(2, size=n)],
            ua=w.sdk_ua(rng, 5), model=env.models(rng, ts, 0, 0, pinned=env.scenario.mini_model),
            system=c.app_systems[int(rng.integers(len(c.app_systems)))], lead=lead,
            ctx=np.where(rng.random(n) < 0.6, c.ctx_ids[rng.integers(len(c.ctx_ids), size=n)], 0),
            body=docs.index(rng.integers(docs.n_base, size=n), rng.integers(docs.n_var, size=n)),
            tail=tail, comp=np.minimum(env.sample(rng, env.corpora.conv_generated, n, 0.5), 512),
            maxtok=512, temp=np.float32(0.0), status=env.status(rng, n, 0.002),
        )


def classroom(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.classroom
    if spec.classes == 0:
        return
    w, c = env.world, env.content
    corp = env.corpora
    fs, fu = c.sets["first"], c.sets["followup"]
    for _ in range(spec.classes):
        s = spec.students
        cc, tz, _ = COUNTRIES[int(rng.integers(len(COUNTRIES)))]
        signup_day = env.start_us - int(rng.integers(5, 40)) * DAY_US + 9 * HOUR_US - int(tz * HOUR_US)
        uni = f"student.{w._hex(4)}-university.edu"
        acct = w.new_accounts(
            s, persona="classroom", created_us=signup_day + rng.integers(0, 50 * MINUTE_US, size=s),
            signup=["education"] * s, email_domain=[uni] * s, payment=[None] * s, country=[cc] * s,
            verified=np.zeros(s, bool), keys=1,
        )
        school_ip = w.new_ips(1, "residential")[0]
        homes = w.new_ips(s, "residential")
        class_ua = w.browser_ua(rng)  # managed school laptops share one browser build
        # lessons on school days (local Monday-Friday)
        all_days = np.arange(max(1, int(env.scenario.window.days)))
        weekday = ((env.start_us // DAY_US + all_days) + 3) % 7 < 5
        school = all_days[weekday] if weekday.any() else all_days
        days = rng.choice(school, size=min(spec.lessons, len(school)), replace=False)
        for d in days:
            t0 = env.start_us + int(d) * DAY_US + int((10 + rng.integers(0, 5) - tz) * HOUR_US)
            t0 = int(np.clip(t0, env.start_us, env.end_us - HOUR_US))
            base = int(rng.integers(fs.n_base))
            k = 1 + rng.poisson(spec.followups_mean, size=s)
            starts = t0 + rng.integers(0, 8 * MINUTE_US, size=s)
            sess, j, ts = expand_sessions(rng, starts, k, 60.0)
            n = len(ts)
            exact = (rng.random(s) < spec.exact_share)[sess]
            body_first = np.where(exact, fs.index(np.full(n, base), np.zeros(n, np.int64)),
                                  fs.index(np.full(n, base), rng.integers(fs.n_var, size=n)))
            body = np.where(j == 0, body_first, fu.index(rng.integers(fu.n_base, size=n), rng.integers(fu.n_var, size=n)))
            acc = acct[sess]
            env.plan.add(
                n, ts=ts, acct=acc, key=w.pick_keys(acc, rng), ip=school_ip, ua=class_ua,
                model=env.models(rng, ts, 0.0, 0.0), body=body, turns=2 * j + 1,
                hist=j * 300, comp=env.sample(rng, corp.conv_generated, n, 1.5), status=env.status(rng, n),
            )
        # homework from home, evenings, like casual chat
        if spec.homework_events:
            hs = max(1, spec.homework_events * s // 3)
            owner = rng.integers(s, size=hs)
            starts = sample_times(rng, np.full(hs, tz), env.start_us, env.end_us, HUMAN_PROFILE, 1.0)
            sess, j, ts = expand_sessions(rng, starts, np.minimum(rng.geometric(1 / 3, size=hs), 20), 50.0)
            keep = ts < env.end_us
            o = owner[sess][keep]
            _chat_events(env, rng, acct[o], ts[keep], j[keep], np.full(len(o), class_ua, np.int32),
                         homes[o], np.zeros(len(o), bool), 0.0, 0.0)


def eval_runner(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.eval_runner
    a, e = spec.accounts, spec.events
    if a == 0 or e == 0:
        return
    w, c = env.world, env.content
    corp = env.corpora
    country, tz = w.countries(a, rng)
    acct = w.new_accounts(
        a, persona="eval_runner", created_us=_created_before(env, rng, a, 300, 0.0),
        signup=_channels(rng, a, {"research": 0.5, "startup": 0.3, "enterprise": 0.2}),
        email_domain=[f"{w._hex(5)}-lab.org" for _ in range(a)], payment=[w.payment() for _ in range(a)],
        country=country, verified=rng.random(a) < 0.8, keys=2,
    )
    # benchmark harness prompts are identical everywhere: distill-provenance texts, benign use
    gsm = corp.where("gsm8k", "test")
    bench = {
        "gsm8k": (c.pools.add_bodies(gsm, rng, 1), slotted(c, COT_WRAPPERS[0], rng, 1), 400),
        "humaneval": (c.pools.add_bodies(corp.texts["humaneval"], rng, 1), slotted(c, HUMANEVAL_WRAPPER, rng, 1), 300),
        "mbpp": (c.pools.add_bodies(corp.texts["mbpp"], rng, 1),
                 slotted(c, "You are an expert Python programmer, and here is your task: {x}", rng, 1), 250),
    }
    names = list(bench)
    per = max(1, e // a)
    for i in range(a):
        ip = w.new_ips(1, "datacenter")[0]
        ua = w.sdk_ua(rng, 5)
        done = 0
        run = 0
        while done < per:
            name = names[(run + i) % len(names)]
            bs, tp, comp_med = bench[name]
            n = min(bs.n_base, per - done)
            if run == 0 and env.scenario.new_model:
                rel = env.release_us[env.scenario.new_model]
                t0 = rel + int((spec.release_run_delay_hours + rng.random() * 4) * HOUR_US)
                model = env.model_ix[env.scenario.new_model]
            else:
                t0 = int(sample_times(rng, np.array([tz[i]]), env.start_us, env.end_us, OFFICE_PROFILE, 0.2)[0])
                model = env.model_ix[env.scenario.default_model if rng.random() < 0.7 else env.scenario.mini_model]
            if not (env.start_us <= t0 < env.end_us):
                t0 = int(sample_times(rng, np.array([tz[i]]), env.start_us, env.end_us, OFFICE_PROFILE, 0.2)[0])
            ts = t0 + np.cumsum(rng.exponential(1e6 / spec.rate_per_s, size=n)).astype(np.int64)
            keep = ts < env.end_us
            ts = ts[keep]
            n = len(ts)
            if n:
                acc = np.full(n, acct[i], np.int32)
                comp = np.minimum(rng.lognormal(np.log(comp_med), 0.5, size=n).astype(np.int64), 1024)
                env.plan.add(
                    n, ts=ts, acct=acc, key=w.pick_keys(acc, rng), ip=ip, ua=ua, model=model,
                    lead=tp.leads[0], body=bs.index(np.arange(n) % bs.n_base, np.zeros(n, np.int64)),
                    tail=tp.tails[0], comp=comp, maxtok=1024, temp=np.float32(0.0),
                    status=env.status(rng, n, 0.01),
                )
            done += max(n, 1)
            run += 1


def reseller(env: Env, rng: np.random.Generator, accounts: int | None = None, events: int | None = None,
             persona: str = "reseller", label: str = "benign", campaign_id: str | None = None,
             distill_share: float | None = None) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """Resellers: many end users' chat sessions through a few verified accounts and server
    addresses. Returns the account indices, their server addresses and user agents (a
    campaign may route traffic through one)."""
    spec = env.scenario.reseller
    a = spec.accounts if accounts is None else accounts
    e = spec.events if events is None else events
    if a == 0:
        return np.zeros(0, np.int32), [], []
    w = env.world
    ci = rng.choice(len(COUNTRIES), size=a)
    acct = w.new_accounts(
        a, persona=persona, label=label, campaign_id=campaign_id,
        created_us=_created_before(env, rng, a, 400, 0.0), signup=["reseller"] * a,
        email_domain=[f"{w._hex(5)}-ai.com" for _ in range(a)], payment=[w.payment() for _ in range(a)],
        country=[COUNTRIES[int(i)][0] for i in ci], verified=np.ones(a, bool), keys=rng.integers(3, 7, size=a),
        distill_share=distill_share,
    )
    servers = [w.new_ips(spec.server_ips, "datacenter") for _ in range(a)]
    uas = [w.ua(f"{w._hex(4)}-gateway/{int(rng.integers(1, 4))}.{int(rng.integers(0, 9))}") for _ in range(a)]
    if e == 0:
        return acct, servers, uas
    users = max(10, e // 15)
    ucountry, utz = w.countries(users, rng)
    uacct = rng.integers(a, size=users)
    act = rng.lognormal(0, 1.0, size=users)
    s = max(1, int(e / 2.4))
    owner = rng.choice(users, size=s, p=act / act.sum())
    starts = sample_times(rng, utz[owner], env.start_us, env.end_us, HUMAN_PROFILE, 0.85)
    sess, j, ts = expand_sessions(rng, starts, np.minimum(rng.geometric(1 / 2.4, size=s), 30), 120.0,
                                  empirical=env.corpora.turn_gaps_s)
    keep = ts < env.end_us
    u = owner[sess][keep]
    ai = uacct[u]
    srv = np.stack([sv[rng.integers(len(sv), size=len(u))] for sv in servers])[ai, np.arange(len(u))]
    ua = np.asarray(uas, np.int32)[ai]
    _chat_events(env, rng, acct[ai], ts[keep], j[keep], ua, srv, np.ones(len(u), bool), 0.3, 0.3,
                 _customer_ids(env, acct, uacct, spec.end_user_share)[u])
    return acct, servers, uas


def _customer_ids(env: Env, acct: np.ndarray, uacct: np.ndarray, share: float) -> np.ndarray:
    """Per customer (reseller user), its end-user index where its reseller passes ids, else -1."""
    w = env.world
    passes = np.asarray([passes_end_users(w.acc.account_id[int(a)], share) for a in acct], bool)
    out = np.full(len(uacct), -1, np.int32)
    named = passes[uacct]
    out[named] = w.end_users.add(acct[uacct[named]])
    return out


def benign_population(env: Env, rngs: list[np.random.Generator]) -> None:
    """Generate every benign persona (one child generator each, in a fixed order)."""
    casual(env, rngs[0])
    developer(env, rngs[1])
    template_developer(env, rngs[2])
    enterprise_batch(env, rngs[3])
    classroom(env, rngs[4])
    eval_runner(env, rngs[5])
    reseller(env, rngs[6])
