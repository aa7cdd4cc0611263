"""Small scenes with a known answer: a hydra cluster and the hard negatives that resemble it."""

from __future__ import annotations

from datetime import timedelta

from .builders import BROWSER, HUMAN_PROMPTS, T0, account, events

HYDRA_SYSTEM = "You are an expert tutor. Always reason step by step and show every step."
HYDRA_PROMPT = [
    "Solve step by step: a farmer has {i} hens and buys {j} more each week. How many after 4 weeks?",
    "Think step by step and show your work: what is {i} divided by {j} rounded to 2 places?",
    "Write a python function that returns the {j}th prime after {i}. Explain your reasoning.",
]


def hydra(n_accounts: int = 12, n_events: int = 200, start_hours: float = 0.0,
          prefix: str = "h", prompts: list[str] | None = None,
          ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Accounts behind a rotating proxy pool, one template, new edu sign-ups, shared cards."""
    pool = [f"203.0.113.{i}" for i in range(8)]
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for a in range(n_accounts):
        aid = f"{prefix}{a}"
        accts.append(account(aid, created=T0 - timedelta(days=2, minutes=a), channel="education",
                             email="mail-hub.io", payment="card-7" if a % 2 == 0 else None,
                             verified=False, country="US"))
        rows += events(aid, n_events, start=T0 + timedelta(hours=start_hours, minutes=3 * a),
                       every=timedelta(minutes=9), ip=pool[a % 8:] + pool[: a % 8],
                       system=HYDRA_SYSTEM, prompt=prompts or HYDRA_PROMPT)
    return rows, accts


# A campaign's repertoire of distinct prompts (coding tasks it wants answered with reasoning).
REPERTOIRE = [
    "Implement a thread safe LRU cache in Java with generics and explain the locking strategy",
    "Write a Rust parser for ISO 8601 timestamps including offsets and leap seconds handling",
    "Design a Go worker pool that limits concurrency and propagates context cancellation cleanly",
    "Explain how to detect a cycle in a directed graph using depth first search colours",
    "Create a Python decorator retrying flaky network calls with exponential backoff and jitter",
    "Build a SQL query ranking customers by lifetime value within each region using windows",
    "Translate this recursive Fibonacci into an iterative version and compare memory usage",
    "Write unit tests for a bank transfer function covering overdrafts and concurrent updates",
    "Show a C implementation of a ring buffer suitable for an interrupt service routine",
    "Refactor a JavaScript callback pyramid into async await with proper error propagation",
    "Derive the time complexity of heapsort and prove the bound on comparisons carefully",
    "Implement Dijkstra shortest paths in TypeScript with a binary heap priority queue",
    "Write a bash script rotating log files daily while compressing archives older than week",
    "Model a vending machine as a finite state machine in Kotlin with sealed classes",
    "Explain the difference between optimistic and pessimistic locking in relational databases",
    "Code a trie supporting prefix search and deletion in Swift with complete examples",
    "Write a Haskell function merging two sorted infinite streams without duplicates lazily",
    "Describe how consistent hashing distributes keys and implement a virtual node ring",
    "Implement matrix multiplication with cache blocking in C plus plus and benchmark it",
    "Write a regular expression validating IPv6 addresses and explain every alternation used",
]


def reseller(prefix: str, campaign_share: float, own: int = 400,
             ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """A verified reseller: its customers' chat traffic plus, for a share, campaign prompts."""
    n_campaign = int(own * campaign_share / (1 - campaign_share))
    carried = REPERTOIRE if campaign_share >= 0.2 else REPERTOIRE[:3]
    rows = events(prefix, own, every=timedelta(minutes=5), prompt=HUMAN_PROMPTS,
                  ip="198.51.100.9", turns=3, completion_tokens=250)
    rows += events(prefix, n_campaign, start=T0 + timedelta(minutes=2),
                   every=timedelta(minutes=5 * own / max(n_campaign, 1)), prompt=carried,
                   system=HYDRA_SYSTEM, ip="198.51.100.9")
    return rows, [account(prefix, channel="reseller", verified=True, email="resell.example")]


def classroom(n_accounts: int = 30) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Students behind one NAT sending the same assignment in class, then their own questions."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    assignment = "Explain step by step how photosynthesis turns light into chemical energy."
    for a in range(n_accounts):
        aid = f"s{a}"
        accts.append(account(aid, created=T0 - timedelta(days=20, minutes=a), channel="education",
                             email="school.edu", verified=False, country="US"))
        own = [assignment] + HUMAN_PROMPTS[a % 5:] + HUMAN_PROMPTS[: a % 5]
        for day in range(3):
            rows += events(aid, 6, start=T0 + timedelta(days=day, hours=15, minutes=a % 4),
                           every=timedelta(minutes=6), prompt=own, ip="192.0.2.200",
                           ua=BROWSER, turns=2, completion_tokens=300)
    return rows, accts


def enterprise() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """One verified account running a templated batch job around the clock."""
    rows = events("ent", 1500, every=timedelta(minutes=2), ip="198.51.100.50",
                  prompt="Classify the sentiment of customer review #{i}: 'The product {j} ...'",
                  completion_tokens=20, max_tokens=50)
    return rows, [account("ent", channel="enterprise", verified=True)]


def eval_runner() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """A benchmark harness: step-by-step maths and coding prompts in bursts."""
    rows: list[dict[str, object]] = []
    for burst in range(3):
        rows += events("eval", 200, start=T0 + timedelta(days=burst, hours=10),
                       every=timedelta(seconds=20), ip="198.51.100.77", prompt=HYDRA_PROMPT[:2])
    return rows, [account("eval", channel="research", verified=True, created=T0 - timedelta(days=200))]


CELL_PROMPTS = [
    "Write a {i} line Python solution for problem {j} and explain your reasoning step by step.",
    "Solve coding task {i} in Go, then grade the answer against rubric {j} step by step.",
]


def cell(prefix: str = "op", n_direct: int = 2, each: int = 60, carried: int = 600,
         tie: bool = True, prompts: list[str] | None = None, chats: int = 900,
         ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """A small campaign: `n_direct` fresh accounts of one operator (one card, one e-mail
    domain, one proxy pair when `tie`) and a reseller that carries `carried` more of the same
    requests among `chats` of its customers' chats (over 15 hours)."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    prompts = prompts or CELL_PROMPTS
    for a in range(n_direct):
        aid = f"{prefix}{a}"
        accts.append(account(aid, created=T0 - timedelta(days=5, minutes=a), channel="startup",
                             email="ops-lab.io" if tie else f"{aid}.example",
                             payment="card-ops" if tie else None, verified=False))
        ip = ["203.0.113.90", "203.0.113.91"] if tie else f"203.0.{113 + a}.{90 + a}"
        rows += events(aid, each, start=T0 + timedelta(minutes=7 * a),
                       every=timedelta(minutes=20), ip=ip, prompt=prompts,
                       completion_tokens=1024, max_tokens=1024)
    res = f"{prefix}-reseller"
    rows += events(res, chats, every=timedelta(minutes=900 / chats), prompt=HUMAN_PROMPTS,
                   ip="198.51.100.19", turns=3, completion_tokens=250)
    rows += events(res, carried, start=T0 + timedelta(seconds=30),
                   every=timedelta(minutes=900 / max(carried, 1)), prompt=prompts,
                   ip="198.51.100.19", completion_tokens=1024, max_tokens=1024)
    accts.append(account(res, channel="reseller", verified=True, email="resell-two.example"))
    return rows, accts


def team(prefix: str = "dev") -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Three colleagues: one office address, one card, one domain, their app's system prompt,
    office hours and ordinary questions."""
    rows: list[dict[str, object]] = []
    accts: list[dict[str, object]] = []
    for a in range(3):
        aid = f"{prefix}{a}"
        accts.append(account(aid, email="acme-apps.com", payment="card-acme", verified=True))
        for day in range(3):
            rows += events(aid, 25, start=T0 + timedelta(days=day, hours=9, minutes=5 * a),
                           every=timedelta(minutes=15), ip="192.0.2.44",
                           system="You are Acme's support assistant. Answer briefly.",
                           prompt=HUMAN_PROMPTS, turns=2, completion_tokens=200)
    return rows, accts


def carrier() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """A blocked hydra, and a reseller passing the hydra's prompts for two of its 40 customers
    (declared as end users `op-0`, `op-1`; its customers `cust-0` to `cust-39`)."""
    hydra_rows, hydra_accts = hydra(prompts=REPERTOIRE)
    res_rows, res_accts = reseller("carrier", 0.3)
    for k, r in enumerate(res_rows):
        ours = r["system"] == HYDRA_SYSTEM
        r["end_user"] = f"op-{k % 2}" if ours else f"cust-{k % 40}"
    return hydra_rows + res_rows, hydra_accts + res_accts
