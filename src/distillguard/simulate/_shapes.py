"""Campaign shapes beyond the classic hydra (issue 14 part 5).

* content-only (`links = "none"`): accounts share NO infrastructure: each its own residential
  address, its own card (or none), an e-mail at a public provider, its own browser or SDK
  client, signed up on its own day (aged days to months), human-paced in its own time zone;
  tied only by what they ask (`content = "task_pool_elicitation"`: slices of one task pool
  wrapped in each account's own paraphrase of a step-by-step or rubric wrapper).
* single-link (`links = "card" | "email" | "signup" | "proxy"`): the same independent
  accounts, tied by exactly ONE kind of infrastructure, `accounts_per_link` accounts per link:
  one card bought in a batch, one e-mail domain out of a patterned series, one sign-up burst
  (within two hours), or one /24 proxy range (each request through an address of the range).
* human pace (`human_daily = [lo, hi]`): each account sends lo-hi requests a day in sessions,
  in the waking hours of its own declared country's time zone.
"""

from __future__ import annotations

import random

import numpy as np

from distillguard.simulate._content import Content
from distillguard.simulate._elicit import rubric_parts, step_wrapper
from distillguard.simulate._env import DAY_US, HOUR_US, Env, expand_sessions
from distillguard.simulate._scenario import CampaignSpec
from distillguard.simulate._text import BodySet
from distillguard.simulate._world import COUNTRY_TZ, FREE_MAIL, HUMAN_PROFILE, sample_times

# A human session: geometric number of requests (mean 3), ~90 s apart.
SESSION_MEAN = 3.0
SESSION_GAP_S = 90.0
BROWSER_SHARE = 0.6  # content-only accounts: browser clients, the rest SDKs
EMAIL_TLDS = ("com", "net", "xyz", "top", "online")
MIXED_RUBRIC_SHARE = 0.3  # elicitation = "mixed": share of accounts asking for rubric grades


def _groups(n: int, per_link: int, rng: np.random.Generator) -> np.ndarray:
    """Group id per account: consecutive runs of `per_link` accounts, in a random order."""
    return rng.permutation(np.arange(n) // per_link)


def linked_accounts(env: Env, spec: CampaignSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """Accounts of a content-only or single-link campaign (see the module docstring)."""
    w = env.world
    lo_d, hi_d = spec.created_days
    grp = _groups(n, spec.accounts_per_link, rng)
    n_grp = int(grp.max()) + 1 if n else 0
    if spec.links == "signup":
        centers = rng.uniform(lo_d, hi_d, size=n_grp)
        created = env.start_us + (centers[grp] * DAY_US).astype(np.int64) + rng.integers(0, 2 * HOUR_US, size=n)
    else:
        # each account its own stretch of `created_days` (in a random order), so no two sign up
        # together unless the campaign is large for its span
        slot = rng.permutation(n) + rng.uniform(0.2, 0.8, size=n)
        created = env.start_us + ((lo_d + (hi_d - lo_d) * slot / max(n, 1)) * DAY_US).astype(np.int64)
    if spec.links == "email":
        # a patterned series of throwaway domains (same stem, numbered), one per link group
        stem = w._hex(4) + ("mail", "box", "post", "inbox")[int(rng.integers(4))]
        tld = EMAIL_TLDS[int(rng.integers(len(EMAIL_TLDS)))]
        domains = [f"{stem}{g + 1:02d}.{tld}" for g in range(n_grp)]
        email = [domains[int(g)] for g in grp]
    else:
        email = [FREE_MAIL[int(i)] for i in rng.integers(len(FREE_MAIL), size=n)]
    if spec.links == "card":
        cards = [w.payment() for _ in range(n_grp)]  # bought in a batch: every account pays with one
        pay: list[str | None] = [cards[int(g)] for g in grp]
    else:
        pay = [w.payment() if u < spec.paid_share else None for u in rng.random(n)]
    names = list(spec.signup_channels)
    p = np.array([spec.signup_channels[k] for k in names], float)
    signup = [names[int(i)] for i in rng.choice(len(names), size=n, p=p / p.sum())]
    country = [spec.countries[int(i)] for i in rng.integers(len(spec.countries), size=n)]
    acct = w.new_accounts(
        n, persona=spec.persona, label="distill", campaign_id=spec.id, created_us=created, signup=signup,
        email_domain=email, payment=pay, country=country, verified=rng.random(n) < spec.verified_share, keys=1,
    )
    env.link_groups[spec.id] = grp
    return acct


def linked_ips(env: Env, spec: CampaignSpec, rng: np.random.Generator, owner_pos: np.ndarray, n_acct: int
               ) -> np.ndarray:
    """Address per request: each account's own residential address, or with `links = "proxy"`
    an address of its group's /24 range, per request."""
    w = env.world
    if spec.links != "proxy":
        home = w.new_ips(n_acct, "residential")
        out: np.ndarray = home[owner_pos]
        return out
    grp = env.link_groups[spec.id]
    n_grp = int(grp.max()) + 1
    width = min(250, spec.accounts_per_link)
    ranges = np.stack([w.new_range_ips(width) for _ in range(n_grp)])
    out = ranges[grp[owner_pos], rng.integers(width, size=len(owner_pos))]
    return out


def per_account_uas(env: Env, rng: np.random.Generator, n_acct: int) -> np.ndarray:
    """Each account its own client: a browser build or an SDK string, fixed for the account."""
    w = env.world
    return np.asarray([w.browser_ua(rng) if rng.random() < BROWSER_SHARE else w.sdk_ua(rng) for _ in range(n_acct)],
                      np.int32)


def human_paced(env: Env, spec: CampaignSpec, rng: np.random.Generator, acct: np.ndarray, a_lo: np.ndarray,
                a_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times and owners (positions in `acct`) of a human-paced campaign, sorted by time."""
    assert spec.human_daily is not None
    lo, hi = spec.human_daily
    n_acct = len(acct)
    rate = rng.uniform(lo, hi, size=n_acct)
    days = np.maximum(0, a_hi - a_lo) / DAY_US
    n_req = rng.poisson(rate * days)
    n_sess = np.maximum(np.where(n_req > 0, 1, 0), np.rint(n_req / SESSION_MEAN).astype(np.int64))
    owner_s = np.repeat(np.arange(n_acct), n_sess)
    countries = env.world.acc.country
    tz = np.asarray([COUNTRY_TZ.get(countries[int(a)], 0.0) for a in acct], np.float64)
    starts = sample_times(rng, tz[owner_s], a_lo[owner_s], a_hi[owner_s], HUMAN_PROFILE, 0.8)
    # spread each account's requests over its sessions, at least one each
    k = np.ones(len(owner_s), np.int64)
    extra = np.repeat(n_req - n_sess, n_sess)
    k += rng.binomial(np.maximum(extra, 0), 1.0 / np.repeat(np.maximum(n_sess, 1), n_sess))
    sess, _, ts = expand_sessions(rng, starts, k, SESSION_GAP_S, 0.8)
    owner = owner_s[sess]
    keep = ts < a_hi[owner]
    ts, owner = ts[keep], owner[keep]
    order = np.argsort(ts, kind="stable")
    return ts[order], owner[order]


def task_pool(c: Content, names: list[str], rng: np.random.Generator) -> BodySet:
    """The campaign's task pool (texts of the named corpora) in the body pool, once per run."""
    key = "taskpool#" + "+".join(names)
    if key not in c.sets:
        assert c.corpora is not None
        texts: list[str] = []
        for name in names:
            texts += c.corpora.set_texts(name)
        c.sets[key] = c.pools.add_bodies(texts, rng, 1)
    return c.sets[key]


def elicitation(env: Env, spec: CampaignSpec, rng: np.random.Generator, owner_pos: np.ndarray, n_acct: int
                ) -> dict[str, np.ndarray]:
    """Prompt columns of a task-pool elicitation campaign: each account works through its own
    slice of the shuffled task pool, in its own paraphrase of a step-by-step or rubric wrapper
    (or, with `wrapper_per_account = false`, one wrapper shared by all accounts). An account
    that reaches the end of its slice starts it again: several answers per task, as harvesters
    sample (best-of-n), rather than reaching into another account's slice."""
    c = env.content
    pools = c.pools
    r = random.Random(int(rng.integers(1 << 62)))
    bs = task_pool(c, spec.task_pool, rng)
    n = len(owner_pos)
    # slices: contiguous runs of a shuffled order, one per account
    order = rng.permutation(bs.n_base)
    bounds = np.linspace(0, bs.n_base, n_acct + 1).astype(np.int64)
    size = np.maximum(1, bounds[1:] - bounds[:-1])
    # each request's position in its account's own (time-ordered) sequence
    by_owner = np.argsort(owner_pos, kind="stable")
    first = np.searchsorted(owner_pos[by_owner], np.arange(n_acct))
    seq = np.empty(n, np.int64)
    seq[by_owner] = np.arange(n) - first[owner_pos[by_owner]]
    base = order[np.minimum(bounds[owner_pos] + seq % size[owner_pos], bs.n_base - 1)]
    body = bs.index(base, np.zeros(n, np.int64))
    n_wr = n_acct if spec.wrapper_per_account else 1
    if spec.elicitation == "mixed":
        rubric = np.asarray([r.random() < MIXED_RUBRIC_SHARE for _ in range(n_wr)], bool)
    else:
        rubric = np.full(n_wr, spec.elicitation == "rubric")
    lead_of, tail_of = np.zeros(n_wr, np.int32), np.zeros(n_wr, np.int32)
    for a in range(n_wr):
        # rubric: the instruction and the response's heading lead, the graded response and the
        # question's heading are the context chunk (rubric_ctx), the format closes
        pre, post = rubric_parts(r) if rubric[a] else step_wrapper(r)
        lead_of[a], tail_of[a] = pools.lead(pre), pools.tail(post)
    wi = owner_pos if spec.wrapper_per_account else np.zeros(n, np.int64)
    is_rub = rubric[wi]
    ctx = np.where(is_rub, c.rubric_ctx[rng.integers(len(c.rubric_ctx), size=n)], 0)
    return {"lead": lead_of[wi].astype(np.int64), "ctx": ctx, "body": body.astype(np.int64),
            "tail": tail_of[wi].astype(np.int64), "system": np.zeros(n, np.int64), "tools": np.zeros(n, np.int64),
            "turns": np.ones(n, np.int64), "hist": np.zeros(n, np.int64)}
