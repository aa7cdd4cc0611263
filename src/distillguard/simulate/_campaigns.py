"""Attack campaigns modelled on the publicly reported distillation campaigns (Feb 2026):
hydra clusters of accounts behind proxy pools, reasoning and rubric elicitation, agentic
coding and tool use, templated prompts with variation, and traffic mixed into a reseller."""

from __future__ import annotations

import numpy as np

from distillguard.simulate._benign import reseller
from distillguard.simulate._content import (
    AGENT_SYSTEMS,
    CODE_WRAPPERS,
    COT_SYSTEMS,
    COT_WRAPPERS,
    HUMANEVAL_WRAPPER,
    RUBRIC_SYSTEMS,
    RUBRIC_WRAPPER,
    alpaca_rendered,
    distill_set,
    generation_prompts,
    slotted,
)
from distillguard.simulate._env import DAY_US, HOUR_US, Env
from distillguard.simulate._scenario import CampaignSpec
from distillguard.simulate._shapes import (
    elicitation,
    human_paced,
    linked_accounts,
    linked_ips,
    per_account_uas,
)
from distillguard.simulate._text import reword
from distillguard.simulate._world import (
    BROWSER_UAS,
    COUNTRY_TZ,
    FLAT_PROFILE,
    FREE_MAIL,
    OFFICE_PROFILE,
    passes_end_users,
    sample_times,
)

Cols = dict[str, np.ndarray]


def _variant(rng: np.random.Generator, n: int, k: int, reword_share: float) -> np.ndarray:
    """Variant 0 (verbatim) or, for a `reword_share` of rows, one of the k-1 rewordings."""
    if k <= 1:
        return np.zeros(n, np.int64)
    return np.where(rng.random(n) < reword_share, rng.integers(1, k, size=n), 0)


class _Recipes:
    """Prompt recipes of one campaign; each returns the prompt columns for n events."""

    def __init__(self, env: Env, spec: CampaignSpec, rng: np.random.Generator) -> None:
        self.env, self.spec, self.rng = env, spec, rng
        self.c = env.content
        self.v = spec.template_variants
        bases: list[str] = []
        if spec.content in ("coding_agentic", "agentic_tools"):
            bases = AGENT_SYSTEMS
        elif spec.content == "reasoning_rubric":
            orca = [v for k, v in sorted(env.corpora.templates.items()) if k.startswith("orca_system")]
            bases = COT_SYSTEMS + [orca[i] for i in (1, 2, 5, 11)]
        k = min(spec.system_prompts, len(bases))
        chosen = [bases[int(i)] for i in rng.choice(len(bases), size=k, replace=False)] if k else []
        self.systems = np.asarray(
            [[self.c.pools.system(s if v == 0 else reword(s, rng, 0.6)) for v in range(self.v)] for s in chosen],
            np.int32,
        ).reshape(k, self.v)

    def system(self, n: int) -> np.ndarray:
        if self.systems.shape[0] == 0:
            return np.zeros(n, np.int32)
        r = self.rng
        out: np.ndarray = self.systems[r.integers(self.systems.shape[0], size=n), _variant(r, n, self.v, self.spec.reword_share)]
        return out

    def wrapped(self, n: int, set_name: str, wrappers: list[str], body_override: tuple[int, int, int] | None = None
                ) -> Cols:
        r, s = self.rng, self.spec
        nv = 3 if s.reword_share > 0 else 1
        if body_override is None:
            bs = distill_set(self.c, set_name, r, nv)
            off, nb, nvar = bs.offset, bs.n_base, bs.n_var
        else:
            off, nb, nvar = body_override
        body = (off + r.integers(nb, size=n) * nvar + _variant(r, n, nvar, s.reword_share)).astype(np.int32)
        tps = [slotted(self.c, w, r, self.v) for w in wrappers]
        wi = r.integers(len(tps), size=n)
        vi = _variant(r, n, self.v, s.reword_share)
        leads = np.stack([tp.leads for tp in tps])
        tails = np.stack([tp.tails for tp in tps])
        return {"lead": leads[wi, vi], "body": body, "tail": tails[wi, vi], "system": self.system(n)}

    def tools(self, cols: Cols, n: int, lo: int, hi: int, loop: float) -> Cols:
        r = self.rng
        j = np.minimum(r.geometric(1 / loop, size=n) - 1, 20)
        cols["tools"] = r.integers(lo, hi + 1, size=n)
        cols["turns"] = 2 * j + 1
        cols["hist"] = j * self.env.sample(r, self.env.corpora.code_context, n, 0.5)
        return cols

    def mix(self, n: int) -> Cols:
        """Columns for n events of this campaign's content preset, in random order."""
        r, s = self.rng, self.spec
        env = self.env
        parts: list[tuple[int, Cols]] = []
        shares: list[tuple[float, str]]
        if s.content == "coding_agentic":
            shares = [(0.35, "code"), (0.3, "tools"), (0.1, "humaneval"), (0.1, "mbpp"), (0.1, "alpaca"), (0.05, "arena")]
        elif s.content == "agentic_tools":
            shares = [(0.6, "tools"), (0.2, "code"), (0.2, "alpaca")]
        elif s.content == "reasoning_rubric":
            shares = [(0.5, "cot"), (0.3, "rubric"), (0.1, "alpaca_cot"), (0.1, "seed_cot")]
        else:
            shares = [(0.35, "genprompt"), (0.35, "evol"), (0.3, "alpaca_wrapped")]
        counts = r.multinomial(n, [x for x, _ in shares])
        for (_, kind), m in zip(shares, counts, strict=True):
            m = int(m)
            if m == 0:
                continue
            if kind == "code":
                picks = [CODE_WRAPPERS[int(i)] for i in r.choice(len(CODE_WRAPPERS), size=2, replace=False)]
                cols = self.wrapped(m, "code_tasks", picks)
            elif kind == "tools":
                cols = self.tools(self.wrapped(m, "bfcl_curated", ["{x}"]), m, 3, 20, 4.0)
            elif kind == "humaneval":
                cols = self.wrapped(m, "humaneval", [HUMANEVAL_WRAPPER])
            elif kind == "mbpp":
                cols = self.wrapped(m, "mbpp", [CODE_WRAPPERS[2]])
            elif kind == "alpaca":
                cols = self.wrapped(m, "instructions", ["{x}"])
            elif kind == "arena":
                bs = self.c.sets["dev_misc"]
                cols = self.wrapped(m, "", ["{x}"], (bs.offset, bs.n_base, bs.n_var))
            elif kind == "cot":
                picks = [COT_WRAPPERS[int(i)] for i in r.choice(len(COT_WRAPPERS), size=2, replace=False)]
                cols = self.wrapped(m, "gsm8k", picks)
            elif kind == "rubric":
                cols = self.wrapped(m, "instructions", [RUBRIC_WRAPPER])
                # the response to grade sits between the wrapper's head and the question
                cols["ctx"] = self.c.rubric_ctx[r.integers(len(self.c.rubric_ctx), size=m)]
                rub = [self.c.pools.system(reword(t, r, 0.5) if v else t) for t in RUBRIC_SYSTEMS for v in range(2)]
                cols["system"] = np.asarray(rub, np.int32)[r.integers(len(rub), size=m)]
            elif kind == "alpaca_cot":
                cols = self.wrapped(m, "instructions", [COT_WRAPPERS[0]])
            elif kind == "seed_cot":
                cols = self.wrapped(m, "self_instruct_seed_tasks", [COT_WRAPPERS[1]])
            elif kind == "genprompt":
                bs = generation_prompts(self.c, r, 600, self.v)
                cols = self.wrapped(m, "", ["{x}"], (bs.offset, bs.n_base, bs.n_var))
            elif kind == "evol":
                ev = [v.replace("{instruction}", "{x}") for k, v in sorted(env.corpora.templates.items())
                      if k.startswith("evol_instruct")]
                cols = self.wrapped(m, "instructions" if r.random() < 0.6 else "code_tasks", ev)
            else:
                bs = alpaca_rendered(self.c, r, self.v)
                cols = self.wrapped(m, "", ["{x}"], (bs.offset, bs.n_base, bs.n_var))
            parts.append((m, cols))
        keys = ("lead", "ctx", "body", "tail", "system", "tools", "turns", "hist")
        out = {k: np.concatenate([c.get(k, np.full(m, 1 if k == "turns" else 0)) for m, c in parts]).astype(np.int64)
               for k in keys}
        perm = r.permutation(n)
        return {k: v[perm] for k, v in out.items()}


def _accounts(env: Env, spec: CampaignSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    w = env.world
    lo_d, hi_d = spec.created_days
    if spec.links != "shared":
        return linked_accounts(env, spec, rng, n)
    if spec.independent_accounts:
        return _independent_accounts(env, spec, rng, n)
    centers = np.sort(rng.uniform(lo_d, hi_d, size=spec.creation_bursts))
    created = env.start_us + (centers[np.sort(rng.integers(spec.creation_bursts, size=n))] * DAY_US).astype(np.int64)
    created += rng.integers(0, 2 * HOUR_US, size=n)  # a burst of sign-ups within two hours
    names = list(spec.signup_channels)
    p = np.array([spec.signup_channels[k] for k in names], float)
    signup = [names[int(i)] for i in rng.choice(len(names), size=n, p=p / p.sum())]
    tlds = ("edu.kg", "ac.id", "edu.pl", "org", "net", "io", "xyz")
    domains = [f"{w._hex(5)}{('mail', 'lab', 'research', 'edu', 'team')[i % 5]}.{tlds[int(rng.integers(len(tlds)))]}"
               for i in range(spec.email_domains)]
    email = [domains[int(rng.integers(len(domains)))] if rng.random() < 0.6 else FREE_MAIL[int(rng.integers(3))]
             for _ in range(n)]
    shared = [w.payment() for _ in range(spec.payment_pool)]
    pay: list[str | None] = [
        None if rng.random() >= spec.paid_share  # free tier or education credits
        else shared[int(rng.integers(len(shared)))] if rng.random() < spec.payment_shared_share
        else w.payment()
        for _ in range(n)
    ]
    country = [spec.countries[int(i)] for i in rng.integers(len(spec.countries), size=n)]
    return w.new_accounts(
        n, persona=spec.persona, label="distill", campaign_id=spec.id, created_us=created, signup=signup,
        email_domain=email, payment=pay, country=country, verified=rng.random(n) < spec.verified_share, keys=1,
    )


def _independent_accounts(env: Env, spec: CampaignSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """Direct accounts that share nothing: each signed up on its own day (evenly spread over
    `created_days`, so no two in one hour), with its own e-mail domain and its own card."""
    w = env.world
    lo_d, hi_d = spec.created_days
    days = lo_d + (hi_d - lo_d) * (np.arange(n) + rng.uniform(0.2, 0.8, size=n)) / max(n, 1)
    created = env.start_us + (days * DAY_US).astype(np.int64)
    names = list(spec.signup_channels)
    p = np.array([spec.signup_channels[k] for k in names], float)
    signup = [names[int(i)] for i in rng.choice(len(names), size=n, p=p / p.sum())]
    tlds = ("com", "io", "dev", "net", "org")
    email = [f"{w._hex(6)}{('labs', 'studio', 'works', 'apps', 'data')[i % 5]}.{tlds[int(rng.integers(len(tlds)))]}"
             for i in range(n)]
    pay: list[str | None] = [w.payment() if rng.random() < spec.paid_share else None for _ in range(n)]
    country = [spec.countries[int(i)] for i in rng.integers(len(spec.countries), size=n)]
    return w.new_accounts(
        n, persona=spec.persona, label="distill", campaign_id=spec.id, created_us=created, signup=signup,
        email_domain=email, payment=pay, country=country, verified=rng.random(n) < spec.verified_share, keys=1,
    )


def _load_balance(rng: np.random.Generator, ts: np.ndarray, active_lo: np.ndarray, active_hi: np.ndarray
                  ) -> np.ndarray:
    """Assign time-sorted requests to accounts round-robin among those active in each hour, so
    every account stays at about the same volume (just under a per-account limit)."""
    out = np.zeros(len(ts), np.int64)
    if len(ts) == 0:
        return out
    hour = (ts - ts[0]) // HOUR_US
    bounds = np.searchsorted(hour, np.arange(int(hour[-1]) + 2))
    rot = 0
    for h in range(len(bounds) - 1):
        a, b = int(bounds[h]), int(bounds[h + 1])
        if a == b:
            continue
        t = int(ts[a])
        act = np.flatnonzero((active_lo <= t) & (active_hi > t))
        if len(act) == 0:
            act = np.array([int(np.argmin(np.abs(active_lo - t)))])
        order = act[rng.permutation(len(act))]
        out[a:b] = order[(rot + np.arange(b - a)) % len(order)]
        rot += b - a
    return out


def _under_limit(owner: np.ndarray, ts: np.ndarray, limit: int) -> np.ndarray:
    """Mask of requests that keep each account at most `limit` requests per UTC day."""
    day = ts // DAY_US
    order = np.lexsort((ts, day, owner))
    o, d = owner[order], day[order]
    new = np.r_[True, (o[1:] != o[:-1]) | (d[1:] != d[:-1])]
    start = np.maximum.accumulate(np.where(new, np.arange(len(o)), 0))
    rank = np.arange(len(o)) - start
    keep = np.empty(len(o), bool)
    keep[order] = rank < limit
    return keep


def campaign(env: Env, spec: CampaignSpec, rng: np.random.Generator) -> None:
    """Generate one campaign's accounts and events into the plan."""
    w, s = env.world, env.scenario
    lo = env.start_us + int(spec.start_days * DAY_US)
    hi = env.end_us if spec.end_days is None else min(env.end_us, env.start_us + int(spec.end_days * DAY_US))
    if hi <= lo:
        return
    via = int(round(spec.events * spec.via_reseller_share))
    direct = spec.events - via
    acct = _accounts(env, spec, rng, spec.accounts)
    created = np.asarray(w.acc.created_us, np.int64)[acct]
    a_lo = np.maximum(created, lo)
    a_hi = np.full(len(acct), hi, np.int64)
    if spec.account_lifetime_days:
        a_hi = np.minimum(a_hi, a_lo + int(spec.account_lifetime_days * DAY_US))
    recipes = _Recipes(env, spec, rng)
    through: np.ndarray
    if spec.human_daily is not None:
        # human-paced: every account on its own clock, no load balancing, no reseller
        ts, pos = human_paced(env, spec, rng, acct, a_lo, a_hi)
        n_all = len(ts)
        owner = acct[pos].astype(np.int64)
        through = np.zeros(n_all, bool)
        via = 0
    else:
        tz = spec.operator_tz
        prof = FLAT_PROFILE * rng.uniform(0.9, 1.1, 24) if spec.schedule == "around_the_clock" else OFFICE_PROFILE
        n_all = direct + via
        ts = np.sort(sample_times(rng, np.full(n_all, tz, np.float64), lo, hi, prof, 0.9))
        if spec.content != "task_pool_elicitation":
            cols = recipes.mix(n_all)
        # direct accounts or the reseller's account, by request
        through = np.zeros(n_all, bool)
        if via:
            through[rng.choice(n_all, size=via, replace=False)] = True
        owner = np.full(n_all, -1, np.int64)
        if direct:
            owner[~through] = acct[_load_balance(rng, ts[~through], a_lo, a_hi)]
    acct_pos = np.full(len(w.acc.account_id) + 1, 0, np.int64)
    acct_pos[acct] = np.arange(len(acct))
    owner_pos = acct_pos[np.maximum(owner, 0)]
    if spec.content == "task_pool_elicitation":
        cols = elicitation(env, spec, rng, owner_pos, len(acct))
    elif spec.human_daily is not None:
        cols = recipes.mix(n_all)
    if spec.links != "shared":
        ip = linked_ips(env, spec, rng, owner_pos, len(acct))
    else:
        proxies = w.new_ips(spec.proxy_ips, "residential")
        home = proxies[np.arange(len(acct)) % len(proxies)]
        ip = np.where(rng.random(n_all) < spec.ip_churn, proxies[rng.integers(len(proxies), size=n_all)],
                      home[owner_pos])
    if spec.user_agents == "per_account":
        ua = per_account_uas(env, rng, len(acct))[owner_pos]
    elif spec.user_agents == "sdk":
        uas = np.asarray([w.sdk_ua(rng, 5) for _ in range(2)], np.int32)
        ua = uas[rng.integers(2, size=n_all)]
    else:
        ubro = np.asarray([w.ua(t.format(v=int(rng.integers(118, 132)), m=int(rng.integers(0, 7))))
                           for t in BROWSER_UAS for _ in range(4)], np.int32)
        per_acct = np.asarray([w.sdk_ua(rng, 5) if spec.user_agents == "mixed" and rng.random() < 0.5 else -1
                               for _ in range(len(acct))], np.int32)
        ua_a = per_acct[owner_pos]
        ua = np.where(ua_a >= 0, ua_a, ubro[rng.integers(len(ubro), size=n_all)])
    if via:
        k = spec.via_resellers
        r_acct, servers, r_uas = reseller(
            env, rng, accounts=k, events=spec.reseller_benign_events, persona="reseller_mixed",
            label="distill", campaign_id=spec.id, distill_share=via / (via + spec.reseller_benign_events),
        )
        if k == 1:
            owner[through] = r_acct[0]
            ip[through] = servers[0][rng.integers(len(servers[0]), size=via)]
            ua[through] = r_uas[0]
        else:  # split over several resellers' accounts, at random by request
            which = rng.integers(k, size=via)
            owner[through] = r_acct[which]
            ip[through] = np.stack(servers)[which, rng.integers(len(servers[0]), size=via)]
            ua[through] = np.asarray(r_uas, np.int32)[which]
        euser = _operator_end_users(env, spec, r_acct, owner, through)
    else:
        euser = np.full(n_all, -1, np.int32)
    # model: the campaign's model, moving a switch_share of traffic to a newly released one
    base_model = env.model_ix[spec.model or s.default_model]
    model = np.full(n_all, base_model, np.int16)
    if spec.switch_to_model and spec.switch_share > 0:
        t0 = env.release_us[spec.switch_to_model] + int(spec.switch_delay_hours * HOUR_US)
        p = spec.switch_share * np.clip((ts - t0) / (3 * HOUR_US), 0, 1)
        model = np.where(rng.random(n_all) < p, env.model_ix[spec.switch_to_model], model).astype(np.int16)
    long_out = env.sample(rng, env.corpora.mooncake_output, n_all, 2.5)
    comp = np.where(rng.random(n_all) < spec.capped_share, spec.max_tokens, np.minimum(long_out, spec.max_tokens))
    owner_i = owner.astype(np.int32)
    keep = _under_limit(owner, ts, spec.daily_limit) & ~through if spec.daily_limit else np.ones(n_all, bool)
    keep |= through
    if not keep.all():
        # requests over an account's daily limit are not sent (operators add accounts instead)
        n_all = int(keep.sum())
        ts, owner_i, ip, ua, model, comp = ts[keep], owner_i[keep], ip[keep], ua[keep], model[keep], comp[keep]
        euser = euser[keep]
        cols = {k: v[keep] for k, v in cols.items()}
    env.plan.add(
        n_all, ts=ts, acct=owner_i, key=w.pick_keys(owner_i, rng), ip=ip, ua=ua, model=model,
        system=cols["system"], lead=cols["lead"], ctx=cols["ctx"], body=cols["body"], tail=cols["tail"],
        turns=cols["turns"], tools=cols["tools"], hist=cols["hist"], comp=comp, maxtok=spec.max_tokens,
        temp=np.float32(spec.temperature), status=env.status(rng, n_all, 0.002), euser=euser,
    )
    _ = COUNTRY_TZ  # declared countries are the accounts'; the schedule follows the operator


def _operator_end_users(env: Env, spec: CampaignSpec, r_acct: np.ndarray, owner: np.ndarray,
                        through: np.ndarray) -> np.ndarray:
    """Per request, the customer id the operator uses at the reseller carrying it (one of
    `reseller_end_users` per reseller), where that reseller passes ids; else -1.

    Drawn from a generator of the campaign's own (seeded by its id), so the rest of the run is
    the same whether or not resellers pass ids."""
    w = env.world
    out = np.full(len(owner), -1, np.int32)
    share = env.scenario.reseller.end_user_share
    rng = np.random.default_rng(int.from_bytes(spec.id.encode()[:16].ljust(16, b"\0"), "little"))
    for a in r_acct.tolist():
        if not passes_end_users(w.acc.account_id[a], share):
            continue
        ids = w.end_users.add(np.full(spec.reseller_end_users, a), "distill", spec.id)
        mine = np.flatnonzero(through & (owner == a))
        out[mine] = ids[rng.integers(len(ids), size=len(mine))]
    return out


def all_campaigns(env: Env, rngs: list[np.random.Generator]) -> None:
    for spec, r in zip(env.scenario.campaigns, rngs, strict=True):
        campaign(env, spec, r)
