"""Benign look-alikes of the content-only and single-link campaigns (issue 14 part 5): people
who legitimately ask what a distiller asks, each from their own infrastructure.

* `student`: students at many universities asking for step-by-step solutions to their
  homework (the problems of one course are shared by its students), in the evenings before a
  deadline, from home or the campus network.
* `judge_lab`: independent labs running LLM-as-judge evaluations of public benchmark questions
  with one popular public judge template, in batch runs.
* `benchmark_researcher`: researchers running public benchmarks (gsm8k, MBPP, HumanEval,
  BFCL) with the standard harness prompts, at a modest rate.
* `oss_app_developer`: unrelated developers building on one popular open-source app, all
  sending its system prompt and its retrieval template.

Every persona is off by default (`accounts = 0` in the scenario); the family scenarios turn
them on. Templates here were written for this project in the style of the public ones.
"""

from __future__ import annotations

import random

import numpy as np

from distillguard.simulate._content import COT_WRAPPERS, HUMANEVAL_WRAPPER, slotted
from distillguard.simulate._elicit import STUDENT_FOLLOWUPS, student_wrapper
from distillguard.simulate._env import DAY_US, HOUR_US, Env, expand_sessions
from distillguard.simulate._world import (
    COUNTRIES,
    FREE_MAIL,
    HUMAN_PROFILE,
    OFFICE_PROFILE,
    sample_times,
)

STUDENT_WRAPPERS = 300  # distinct ways students ask, shared by everyone (drawn per request)
DEADLINE_SHARE = 0.6  # sessions in the 36 hours before the course's deadline
DEADLINE_LEAD_H = 36
JUDGE_ANSWERS = 4000  # answers to grade, slices of real prose
RUN_WEEKEND = 0.3  # weight of a weekend hour for a lab's batch run (office work)

JUDGE_SYSTEM = "You are a helpful assistant."
JUDGE_INSTRUCTION = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an "
    "AI assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your "
    "explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "
    "\"[[rating]]\", for example: \"Rating: [[5]]\".\n\n"
)
OSS_APP_SYSTEM = (
    "You are an assistant for question-answering tasks inside a self-hosted knowledge base. Use the retrieved "
    "context to answer. If the context does not contain the answer, say that you don't know. Keep the answer "
    "concise and cite the document titles you used."
)
OSS_APP_TEMPLATE = (
    "Use the following pieces of context to answer the question at the end. If you don't know the answer, "
    "just say that you don't know, don't try to make up an answer.\n\n{x}\nHelpful Answer:"
)
OSS_APP_AGENT = "kb-chat/0.{m}.{d} (self-hosted)"
BENCH_MBPP = "You are an expert Python programmer, and here is your task: {x}"


def _created(env: Env, rng: np.random.Generator, n: int, median_days: float) -> np.ndarray:
    age = np.clip(rng.lognormal(np.log(median_days), 0.9, size=n), 2, 1500)
    out: np.ndarray = env.start_us - (age * DAY_US).astype(np.int64)
    return out


def _batch_run_times(env: Env, rng: np.random.Generator, tz: float, n: int, rate_per_s: float) -> np.ndarray:
    """Arrival times of one batch run of `n` requests: a start in office hours at local time
    zone `tz` (at least an hour before the window ends), then exponential gaps at `rate_per_s`;
    requests that would fall past the window's end are dropped."""
    t0 = int(sample_times(rng, np.array([tz]), env.start_us, env.end_us - HOUR_US, OFFICE_PROFILE, RUN_WEEKEND)[0])
    ts: np.ndarray = t0 + np.cumsum(rng.exponential(1e6 / rate_per_s, size=n)).astype(np.int64)
    return ts[ts < env.end_us]


def _orgs(env: Env, n: int, kinds: tuple[str, ...]) -> list[str]:
    w = env.world
    return [f"{w._hex(5)}{kinds[i % len(kinds)]}" for i in range(n)]


def students(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.students
    a, e = spec.accounts, spec.events
    if a == 0 or e == 0:
        return
    w, c, corp = env.world, env.content, env.corpora
    r = random.Random(int(rng.integers(1 << 62)))
    n_uni = min(spec.universities, a)
    uni_country = rng.choice(len(COUNTRIES), size=n_uni)
    uni_domain = _orgs(env, n_uni, (".edu", ".ac.uk", ".edu.au", ".ac.jp", ".edu.sg", "-uni.de"))
    campus = w.new_ips(n_uni, "residential")
    uni = rng.integers(n_uni, size=a)
    edu = rng.random(a) < 0.8
    acct = w.new_accounts(
        a, persona="student", created_us=_created(env, rng, a, 150),
        signup=["education" if x else "self_serve" for x in edu],
        email_domain=[uni_domain[int(u)] if x else FREE_MAIL[int(u) % len(FREE_MAIL)] for u, x in zip(uni, edu, strict=True)],
        payment=[w.payment() if x < 0.15 else None for x in rng.random(a)],
        country=[COUNTRIES[int(uni_country[int(u)])][0] for u in uni], verified=np.zeros(a, bool), keys=1,
    )
    home = w.new_ips(a, "residential")
    ua = np.asarray([w.browser_ua(rng) if x < 0.9 else w.sdk_ua(rng) for x in rng.random(a)], np.int32)
    # courses: about 25 students each inside a university, each with its homework problems
    course = uni * 1000 + rng.integers(0, np.maximum(1, np.bincount(uni, minlength=n_uni)[uni] // 25))
    course_ids, course = np.unique(course, return_inverse=True)
    tasks = corp.where("gsm8k", "train") + corp.set_texts("mbpp")
    bs = c.pools.add_bodies(tasks, rng, 3)
    homework = rng.integers(bs.n_base, size=(len(course_ids), spec.problems_per_course))
    deadline_day = rng.integers(1, max(2, int(env.scenario.window.days)), size=len(course_ids))
    tz = np.asarray([COUNTRIES[int(uni_country[int(u)])][1] for u in uni], np.float64)
    sessions = max(1, int(e / (1 + spec.followups_mean)))
    owner = rng.integers(a, size=sessions)
    starts = sample_times(rng, tz[owner], env.start_us, env.end_us, HUMAN_PROFILE, 0.9)
    # the evening before the deadline (23:00 local): a rush of homework sessions
    dl = env.start_us + deadline_day[course[owner]] * DAY_US + ((23 - tz[owner]) * HOUR_US).astype(np.int64)
    rush = (rng.random(sessions) < DEADLINE_SHARE)
    starts = np.where(rush, dl - rng.integers(0, DEADLINE_LEAD_H * HOUR_US, size=sessions), starts)
    starts = np.clip(starts, env.start_us, env.end_us - 1)
    k = 1 + rng.poisson(spec.followups_mean, size=sessions)
    sess, j, ts = expand_sessions(rng, starts, k, 100.0, empirical=env.corpora.turn_gaps_s)
    keep = ts < env.end_us
    sess, j, ts = sess[keep], j[keep], ts[keep]
    o = owner[sess]
    n = len(ts)
    wr = [student_wrapper(r) for _ in range(STUDENT_WRAPPERS)]
    leads = np.asarray([c.pools.lead(p) for p, _ in wr], np.int32)
    tails = np.asarray([c.pools.tail(t) for _, t in wr], np.int32)
    fu_body = c.pools.add_bodies(STUDENT_FOLLOWUPS, rng, 3)
    problem = homework[course[o], rng.integers(spec.problems_per_course, size=n)]
    first = j == 0
    wi = rng.integers(STUDENT_WRAPPERS, size=n)
    fs, gen = c.sets["followup"], rng.random(n) < 0.4
    body = np.where(first, bs.index(problem, rng.integers(bs.n_var, size=n)),
                    np.where(gen, fs.index(rng.integers(fs.n_base, size=n), rng.integers(fs.n_var, size=n)),
                             fu_body.index(rng.integers(fu_body.n_base, size=n), rng.integers(3, size=n))))
    on_campus = (rng.random(sessions) < spec.campus_share)[sess]
    env.plan.add(
        n, ts=ts, acct=acct[o], key=w.pick_keys(acct[o], rng), ip=np.where(on_campus, campus[uni[o]], home[o]),
        ua=ua[o], model=env.models(rng, ts, 0.2, 0.2), lead=np.where(first, leads[wi], 0), body=body,
        tail=np.where(first, tails[wi], 0), turns=2 * j + 1, hist=j * 350,
        comp=env.sample(rng, corp.conv_generated, n, 1.8), status=env.status(rng, n),
    )


def judge_lab(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.judge_lab
    a, e = spec.accounts, spec.events
    if a == 0 or e == 0:
        return
    w, c, corp = env.world, env.content, env.corpora
    r = random.Random(int(rng.integers(1 << 62)))
    country, tz = w.countries(a, rng)
    acct = w.new_accounts(
        a, persona="judge_lab", created_us=_created(env, rng, a, 200),
        signup=[("research", "startup")[i % 2] for i in range(a)], email_domain=_orgs(env, a, ("-lab.org", "labs.ai", ".ai")),
        payment=[w.payment() for _ in range(a)], country=country, verified=rng.random(a) < 0.6, keys=2,
    )
    questions = corp.texts["arena_hard"]
    q_ctx = c.pools.add_raw_ctxs([f"[Question]\n{q}\n\n" for q in questions])
    prose = corp.texts["wildchat_1k"] + corp.texts["arena_hard"]
    answers = []
    for _ in range(JUDGE_ANSWERS):
        t = r.choice(prose)
        ln = min(len(t), 200 + int(r.expovariate(1 / 900)))
        s0 = r.randrange(0, len(t) - ln + 1)
        answers.append(f"[The Start of Assistant's Answer]\n{t[s0 : s0 + ln].strip()}\n[The End of Assistant's Answer]")
    ans = c.pools.add_bodies(answers, rng, 1)
    sysp = c.pools.system(JUDGE_SYSTEM)
    per = max(1, e // a)
    for i in range(a):
        edited = rng.random() < spec.edited_template_share
        lead = c.pools.lead(JUDGE_INSTRUCTION if not edited else
                            JUDGE_INSTRUCTION.replace("Be as objective as possible. ", "Be strict and objective. "))
        ip = w.new_ips(1, "datacenter")[0]
        ua = w.sdk_ua(rng, 5)
        done = 0
        while done < per:
            # one run: the benchmark's questions in order, from a random start, at rate_per_s
            n = min(per - done, int(rng.integers(200, len(questions) + 1)))
            ts = _batch_run_times(env, rng, tz[i], n, spec.rate_per_s)
            m = len(ts)
            if m:
                q0 = int(rng.integers(len(questions)))
                acc = np.full(m, acct[i], np.int32)
                env.plan.add(
                    m, ts=ts, acct=acc, key=w.pick_keys(acc, rng), ip=ip, ua=ua,
                    model=env.models(rng, ts, 0.0, 0.0), system=sysp, lead=lead,
                    ctx=q_ctx[(q0 + np.arange(m)) % len(questions)],
                    body=ans.index(rng.integers(ans.n_base, size=m), np.zeros(m, np.int64)),
                    comp=np.minimum(rng.lognormal(np.log(180), 0.4, size=m).astype(np.int64), 1024),
                    maxtok=1024, temp=np.float32(0.0), status=env.status(rng, m, 0.005),
                )
            done += max(m, 1)


def benchmark_researcher(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.benchmark_researcher
    a, e = spec.accounts, spec.events
    if a == 0 or e == 0:
        return
    w, c, corp = env.world, env.content, env.corpora
    country, tz = w.countries(a, rng)
    acct = w.new_accounts(
        a, persona="benchmark_researcher", created_us=_created(env, rng, a, 250),
        signup=[("research", "education", "startup")[i % 3] for i in range(a)],
        email_domain=_orgs(env, a, (".edu", "-research.org", ".ac.uk", "lab.ai")),
        payment=[w.payment() if x < 0.8 else None for x in rng.random(a)], country=country,
        verified=rng.random(a) < 0.5, keys=1,
    )
    # the standard harness prompts: identical for every researcher running the benchmark
    bench = [
        (c.pools.add_bodies(corp.where("gsm8k", "test"), rng, 1), slotted(c, COT_WRAPPERS[0], rng, 1), 0, 350),
        (c.pools.add_bodies(corp.texts["humaneval"], rng, 1), slotted(c, HUMANEVAL_WRAPPER, rng, 1), 0, 250),
        (c.pools.add_bodies(corp.texts["mbpp"], rng, 1), slotted(c, BENCH_MBPP, rng, 1), 0, 220),
        (c.pools.add_bodies(corp.texts["bfcl_curated"], rng, 1), slotted(c, "{x}", rng, 1), 4, 120),
    ]
    per = max(1, e // a)
    for i in range(a):
        ip = w.new_ips(1, "datacenter" if rng.random() < 0.6 else "residential")[0]
        ua = w.sdk_ua(rng, 5)
        done = 0
        while done < per:
            bs, tp, tools, comp_med = bench[int(rng.integers(len(bench)))]
            n = min(per - done, bs.n_base, int(rng.integers(100, bs.n_base + 1)))
            ts = _batch_run_times(env, rng, tz[i], n, spec.rate_per_s)
            m = len(ts)
            if m:
                acc = np.full(m, acct[i], np.int32)
                start = int(rng.integers(bs.n_base))
                env.plan.add(
                    m, ts=ts, acct=acc, key=w.pick_keys(acc, rng), ip=ip, ua=ua,
                    model=env.models(rng, ts, 0.3, 0.3), lead=tp.leads[0],
                    body=bs.index((start + np.arange(m)) % bs.n_base, np.zeros(m, np.int64)), tail=tp.tails[0],
                    tools=np.full(m, tools) if tools == 0 else rng.integers(1, 6, size=m),
                    comp=np.minimum(rng.lognormal(np.log(comp_med), 0.5, size=m).astype(np.int64), 2048),
                    maxtok=2048, temp=np.float32(0.0), status=env.status(rng, m, 0.01),
                )
            done += max(m, 1)


def oss_app_developer(env: Env, rng: np.random.Generator) -> None:
    spec = env.scenario.oss_app_developer
    a, e = spec.accounts, spec.events
    if a == 0 or e == 0:
        return
    w, c, corp = env.world, env.content, env.corpora
    country, tz = w.countries(a, rng)
    acct = w.new_accounts(
        a, persona="oss_app_developer", created_us=_created(env, rng, a, 200),
        signup=[("self_serve", "startup")[i % 2] for i in range(a)],
        email_domain=[d if x < 0.5 else FREE_MAIL[i % 4] for i, (d, x) in
                      enumerate(zip(_orgs(env, a, (".com", ".io", ".dev")), rng.random(a), strict=True))],
        payment=[w.payment() for _ in range(a)], country=country, verified=rng.random(a) < 0.3, keys=1,
    )
    ip = w.new_ips(a, "residential")
    ua = np.asarray([w.ua(OSS_APP_AGENT.format(m=int(rng.integers(3, 9)), d=int(rng.integers(0, 9))))
                     if x < 0.7 else w.sdk_ua(rng) for x in rng.random(a)], np.int32)
    tp = slotted(c, OSS_APP_TEMPLATE, rng, 1)
    sysp = c.pools.system(OSS_APP_SYSTEM)
    activity = rng.lognormal(0, 1.0, size=a)
    nb = max(1, int(e / 8))
    owner = rng.choice(a, size=nb, p=activity / activity.sum())
    starts = sample_times(rng, tz[owner], env.start_us, env.end_us, OFFICE_PROFILE, 0.4)
    burst, _, ts = expand_sessions(rng, starts, np.minimum(rng.geometric(1 / 8, size=nb), 100), 30.0, 1.0)
    keep = ts < env.end_us
    burst, ts = burst[keep], ts[keep]
    o = owner[burst]
    n = len(ts)
    app = rng.random(n) < spec.app_prompt_share
    dm = c.sets["dev_misc"]
    body = dm.index(rng.integers(dm.n_base, size=n), rng.integers(dm.n_var, size=n))
    # the app's retrieval template: retrieved context, then the user's question
    ctx = np.where(app, c.ctx_ids[rng.integers(len(c.ctx_ids), size=n)], 0)
    env.plan.add(
        n, ts=ts, acct=acct[o], key=w.pick_keys(acct[o], rng), ip=ip[o], ua=ua[o],
        model=env.models(rng, ts, 0.5, 0.3), system=np.where(app, sysp, 0),
        lead=np.where(app, tp.leads[0], 0), ctx=ctx, body=body, tail=np.where(app, tp.tails[0], 0),
        comp=env.sample(rng, corp.conv_generated, n, 1.2), maxtok=1024,
        temp=np.float32(0.3), status=env.status(rng, n, 0.01),
    )


def lookalikes(env: Env, rngs: list[np.random.Generator]) -> None:
    """Generate the look-alike personas (one child generator each, in a fixed order)."""
    students(env, rngs[0])
    judge_lab(env, rngs[1])
    benchmark_researcher(env, rngs[2])
    oss_app_developer(env, rngs[3])
