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
          prefix: str = "h") -> tuple[list[dict[str, object]], list[dict[str, object]]]:
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
                       system=HYDRA_SYSTEM, prompt=HYDRA_PROMPT)
    return rows, accts


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
