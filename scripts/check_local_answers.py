"""Ask the built-in local model every prompt of the shipped permissive corpora; fail on any bad answer.

An answer is good when it is non-empty and its letters are in the prompt's script
(`distillguard.localmodel.answers_in_script`). The tests check a seeded sample in
CI time; this checks all of them (about 20,000 prompts; on two CPU cores it takes
the better part of an hour, so run it under `nice`):

    nice -n 10 python scripts/check_local_answers.py [--limit N] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time

from distillguard._data import corpora_root
from distillguard.localmodel import (
    DEFAULT_CORPORA,
    answer,
    answers_in_script,
    dominant_script,
    load_default_model,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="prompts per corpus (default all)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    model, tokenizer = load_default_model(progress=False)
    total = bad = 0
    started = time.process_time()
    for name in DEFAULT_CORPORA:
        with gzip.open(corpora_root() / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
            prompts = [json.loads(line)["text"] for line in fh][: args.limit]
        got = answer(model, tokenizer, prompts, seed=0, max_new_tokens=args.max_new_tokens,
                     batch_size=args.batch_size)
        failures = [(p, a) for p, a in zip(prompts, got, strict=True) if not answers_in_script(p, a)]
        total += len(prompts)
        bad += len(failures)
        print(f"{name}: {len(prompts)} prompts, {len(failures)} bad", flush=True)
        for p, a in failures[:5]:
            print(f"  {dominant_script(p)}: {p[:60]!r} -> {a[:60]!r}")
    cpu = time.process_time() - started
    print(f"all: {total} prompts, {bad} bad answers, {cpu:.0f} s CPU")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
