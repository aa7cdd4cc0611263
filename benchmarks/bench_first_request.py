"""The gateway's first-request check: what one request of an account with no verdict costs.

    python benchmarks/bench_first_request.py [--requests 3000] [--seed 0]

Times, in this process and on the same generated requests (varied prompts, a few system
prompts, many addresses), the two ways of computing a request's keys and matching them
against published campaign keys:

- `frame`: the path the gateway took before (a one-row polars frame of the request and the
  vectorised `request_keys`, which computes every per-event signal of the scan);
- `plain`: `RequestKeys`, plain Python over memoised string hashes, starting from an empty
  cache (so the first requests pay for the hashing of their words);
- `held`: a later request of an account whose earlier request matched (the held decision).

Prints the microseconds per request of each and the ratio of `frame` to the others; first
checks that both paths give the same keys for every request.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import polars as pl
from _docs import markdown_table, write_section

from distillguard.detect import CampaignKeys, RequestKeys, request_keys
from distillguard.enforce import Policy

WORDS = [
    "solve",
    "explain",
    "the",
    "step",
    "by",
    "step",
    "answer",
    "grade",
    "rubric",
    "using",
    "python",
    "code",
    "function",
    "return",
    "value",
    "list",
    "of",
    "numbers",
    "prove",
    "that",
    "integral",
    "derivative",
    "matrix",
    "table",
    "translate",
    "summary",
    "essay",
    "please",
    "show",
    "your",
    "work",
    "reasoning",
    "final",
    "write",
    "a",
    "short",
    "story",
    "about",
    "cat",
    "dog",
    "city",
    "river",
]
SYSTEMS = [
    None,
    None,
    "You are a helpful assistant.",
    "You are a strict grader. Score 1-10 with a rubric.",
    "You are a coding assistant for the Acme IDE.",
]


def requests(n: int, seed: int) -> list[tuple[str, str | None, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = (
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 80)))
            + f" ({rng.randint(1, 999)})"
        )
        out.append(
            (f"198.51.{rng.randint(0, 255)}.{rng.randint(1, 254)}", rng.choice(SYSTEMS), prompt)
        )
    return out


def frame_keys(ip: str, system: str | None, prompt: str) -> list[tuple[str, int]]:
    """The request as a one-row events frame through the vectorised `request_keys`."""
    row = pl.DataFrame(
        {
            "ts": [time.time_ns() // 1000],
            "event_id": [""],
            "account_id": ["acct"],
            "ip": [ip],
            "user_agent": [None],
            "model": ["m"],
            "system": [system],
            "prompt": [prompt],
            "turns": [1],
            "tools": [None],
            "completion_tokens": [None],
            "max_tokens": [None],
        },
        schema_overrides={
            "completion_tokens": pl.Int64,
            "max_tokens": pl.Int64,
            "system": pl.String,
            "ip": pl.String,
            "user_agent": pl.String,
            "prompt": pl.String,
            "tools": pl.Int64,
        },
    )
    return request_keys(
        row.with_columns(pl.from_epoch("ts", time_unit="us").dt.replace_time_zone("UTC"))
    )


def per_request_us(
    fn: Callable[[tuple[str, str | None, str]], object], reqs: list[tuple[str, str | None, str]]
) -> float:
    t0 = time.perf_counter()
    for r in reqs:
        fn(r)
    return (time.perf_counter() - t0) / len(reqs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    reqs = requests(args.requests, args.seed)
    plain = RequestKeys()
    # Campaign keys: the grader's system prompt and the bands of a few requests.
    published = {k: "h0" for r in reqs[:5] for k in frame_keys(*r) if k[0] != "ip"}
    keys = CampaignKeys(published)
    frame_keys(*reqs[0])  # the content model and polars' first calls are loaded before timing
    checked = reqs[: min(len(reqs), 500)]
    assert all(frame_keys(*r) == RequestKeys()(*r) for r in checked), "the two paths disagree"
    policy = Policy()
    policy.set_campaign_keys(keys)
    policy.first_request("held", [next(iter(published))])

    frame_us = per_request_us(lambda r: keys.match(frame_keys(*r)), reqs)
    plain_us = per_request_us(lambda r: keys.match(plain(*r)), reqs)
    warm_us = per_request_us(lambda r: keys.match(plain(*r)), reqs)
    held_us = per_request_us(lambda r: policy.held_first_request("held"), reqs)
    rows = [
        ["frame (before)", f"{frame_us:.1f}", "1.0"],
        ["plain, cold cache", f"{plain_us:.1f}", f"{frame_us / plain_us:.0f}"],
        ["plain, warm cache", f"{warm_us:.1f}", f"{frame_us / warm_us:.0f}"],
        ["held match", f"{held_us:.2f}", f"{frame_us / held_us:.0f}"],
    ]
    table = markdown_table(["path", "us per request", "frame / path"], rows)
    print(table)
    matched = sum(keys.match(plain(*r)) is not None for r in reqs)
    body = (
        f"{args.requests} generated requests ({matched} match the published keys), keys checked "
        f"equal on {len(checked)}; one timed pass over all requests per path.\n\n{table}\n"
    )
    write_section(__file__, "First-request check (gateway hot path)", body)


if __name__ == "__main__":
    main()
