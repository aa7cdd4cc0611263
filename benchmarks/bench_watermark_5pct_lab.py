"""Lab for the 5 % radioactivity experiment: students saved to disk, statistics compared offline.

The key-independent parts (the unmarked answers, the control student, reference students
distilled from our own unmarked answers) are cached under --dir and shared with
`bench_watermark.py --only-5pct` (same folder layout: plain.json, control/, ref-<seeds>/);
each `students` call adds students, each with a fresh key, saved with their key and the
answers served to the harvesting account as TAG-<ns>/. `score` then scores every saved
student and the control with variants of the library's weighted contrast (`contrast_tuples`:
pooling, scaling by reads, reading passes, which references; 20 random-key controls each) and
appends one JSON line per result to --dir/scores.jsonl. This is how the weighted contrast,
top 15, four reference students, pooling over all reads, scaling by reads and four reading
passes were chosen (docs/watermark.md); students tagged `fresh` are kept out of that choice.

Usage:
    python benchmarks/bench_watermark_5pct_lab.py reference --count 4
    python benchmarks/bench_watermark_5pct_lab.py students --runs 3 --tag lab
    python benchmarks/bench_watermark_5pct_lab.py score --runs-glob 'lab-*'
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillguard.localmodel import load_default_model, read_corpus_texts
from distillguard.trace import contrast_tuples
from distillguard.trace._experiment import Harvested, chat_prompt, harvest_direct, train_student
from distillguard.trace._trace import _read_passes
from distillguard.watermark import ScoredTuples, WatermarkConfig, WatermarkKey
from distillguard.watermark import _seeding as S
from distillguard.watermark._scheme import LayerKeys
from distillguard.watermark._tails import weighted_binom_logsf


def _prompts() -> list[str]:
    return read_corpus_texts(["alpaca_5k"], 5000)[2000:]


# (served-prompt sampling seed, other-prompt sampling seed, model seed) of each reference student
REF_SEEDS = ((11, 13, 2), (17, 19, 3), (23, 29, 4), (31, 37, 5))


def unmarked_answers(d: Path, model: Any, tok: Any, prompts: list[str], answers: int) -> tuple[list[Harvested], list[Harvested]]:
    """(the 95 % every student shares, unmarked answers to the served prompts), cached in d/plain.json."""
    n_m = answers // 20
    plain_file = d / "plain.json"
    if not plain_file.exists():
        plain = harvest_direct(model, tok, None, {"acct-other": prompts[n_m:answers]}, max_new_tokens=200, seed=5)
        same = harvest_direct(model, tok, None, {"acct-5pct": prompts[:n_m]}, max_new_tokens=200, seed=7)
        plain_file.write_text(json.dumps({"plain": [r.__dict__ for r in plain], "same": [r.__dict__ for r in same]}))
    rows = json.loads(plain_file.read_text())
    return [Harvested(**x) for x in rows["plain"]], [Harvested(**x) for x in rows["same"]]


def control_student(d: Path, tok: Any, plain: list[Harvested], same: list[Harvested], steps: int) -> Any:
    """The control: the suspect's data with the marked answers replaced by unmarked ones (cached)."""
    if not (d / "control").exists():
        train_student(tok, same + plain, steps=steps, seq_len=128).save_pretrained(d / "control")
    return _load(d / "control")


def reference_students(d: Path, model: Any, tok: Any, prompts: list[str], answers: int, steps: int,
                       n: int, first: int = 0) -> list[Any]:
    """Our own students distilled from *unmarked* answers (served prompts + prompts the suspect never saw).

    Each has its own sampling and model seeds (`REF_SEEDS[first:first + n]`); cached as d/ref-<seeds>.
    """
    n_m = answers // 20
    out = []
    for served_seed, other_seed, model_seed in REF_SEEDS[first : first + n]:
        path = d / f"ref-{served_seed}-{other_seed}-{model_seed}"
        if not path.exists():
            rows = harvest_direct(model, tok, None, {"ref-served": prompts[:n_m]}, max_new_tokens=200,
                                  seed=served_seed)
            rows += harvest_direct(model, tok, None, {"ref-other": prompts[answers : 2 * answers - n_m]},
                                   max_new_tokens=200, seed=other_seed)
            train_student(tok, rows, steps=steps, seq_len=128, seed=model_seed).save_pretrained(path)
        out.append(_load(path))
    return out


def new_run(d: Path, tag: str, model: Any, tok: Any, prompts: list[str], plain: list[Harvested], answers: int,
            steps: int, delta: float) -> Path:
    """A fresh key, its marked answers to the served prompts and the student, saved as d/TAG-<ns>/."""
    run = d / f"{tag}-{time.time_ns()}"
    run.mkdir()
    key = WatermarkKey.generate(WatermarkConfig(delta=delta))
    key.save(run / "wm.key")
    marked = harvest_direct(model, tok, key, {"acct-5pct": prompts[: answers // 20]}, max_new_tokens=200)
    (run / "marked.json").write_text(json.dumps([r.__dict__ for r in marked]))
    train_student(tok, marked + plain, steps=steps, seq_len=128).save_pretrained(run / "student")
    (run / "done").write_text("ok\n")
    return run


def load_run(run: Path) -> tuple[WatermarkKey, list[Harvested], Any]:
    """(key, the marked answers served to the harvesting account, the student) of a saved run."""
    marked = [Harvested(**x) for x in json.loads((run / "marked.json").read_text())]
    return WatermarkKey.load(run / "wm.key"), marked, _load(run / "student")


def students(d: Path, answers: int, steps: int, runs: int, delta: float, tag: str) -> None:
    model, tok = load_default_model()
    prompts = _prompts()
    plain, same = unmarked_answers(d, model, tok, prompts, answers)
    control_student(d, tok, plain, same, steps)
    for _ in range(runs):
        t = time.perf_counter()
        run = new_run(d, tag, model, tok, prompts, plain, answers, steps, delta)
        print(f"{run.name}: {time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)


def _log10_p(t: ScoredTuples, keys: LayerKeys, code: Any | None) -> float:
    """log10 p of the weighted green count of `t` under `keys` (and the account's code word)."""
    assert t.weights is not None
    w, tok, ctx, win = t.weights, t.tokens, t.ctx_ids, t.windows
    th = S.hashes_of_tokens(tok)
    gamma = keys.config.gamma
    stat = int((w * (S.unit(keys.global_values(win, ctx, tok, th)) < gamma)).sum())
    counts = np.bincount(w)
    if code is not None:
        acc = S.unit(keys.account_values(ctx, code[keys.positions(ctx)], th)) < gamma
        stat, counts = stat + int((w * acc).sum()), 2 * counts
    return weighted_binom_logsf(counts, stat, gamma) / math.log(10)


def _load(path: Path) -> Any:
    from transformers import GPT2LMHeadModel

    model: Any = GPT2LMHeadModel.from_pretrained(path)
    return model.eval()


PASSES = {"p1": (0,), "p4": (0, 24, 64, 128)}


def score(d: Path, runs_glob: str, n_controls: int = 20, out_name: str = "scores.jsonl") -> None:
    """Score every finished run matching `runs_glob` with each variant of the library's weighted contrast.

    One JSON line per (run, suspect, variant): log10 p on the global layer and with the
    harvesting account's layer, and the same for `n_controls` random keys. The statistic is
    the library's (`contrast_tuples`, `_read_passes`), so what is chosen here is what ships.
    """
    teacher, tok = load_default_model()
    ref_dirs = sorted((p.name for p in d.glob("ref-*")), key=lambda n: int(n.split("-")[-1]))
    refs = {name: _load(d / name) for name in ref_dirs}
    refs["teacher"] = teacher
    ref_sets = {f"r{n}": ref_dirs[:n] for n in (2, 4) if len(ref_dirs) >= n}
    ref_sets |= {f"{k}T": [*v, "teacher"] for k, v in list(ref_sets.items())} | {"T": ["teacher"]}
    control = _load(d / "control")
    done = {json.loads(x)["run"] for x in (d / out_name).read_text().splitlines()} if (d / out_name).exists() else set()
    for run in sorted(p for p in d.glob(runs_glob) if (p / "done").exists() and p.name not in done):
        key, marked, student = load_run(run)
        v = key.versions[0]
        code = np.asarray(S.account_code(v.secret, v.version, "acct-5pct", v.config.account_length,
                                         v.config.account_alphabet), dtype=np.int64)
        served = [chat_prompt(m.prompt) + m.text for m in marked]
        rows = [list(r)[:256] for r in tok(served, add_special_tokens=False)["input_ids"] if len(r) >= 2]
        t0 = time.perf_counter()
        lines = []
        for pn, offsets in PASSES.items():
            reads = {name: _read_passes(m, rows, 16, 0, offsets)
                     for name, m in [("student", student), ("control", control), *refs.items()]}
            for rs, members in ref_sets.items():
                ref = [sum(x[1:], x[0]) / len(x) for x in zip(*(reads[m] for m in members), strict=True)]
                for who in ("student", "control"):
                    for pool in ("window", "top_k"):
                        for scaled in (True, False):
                            t = contrast_tuples(rows, reads[who], ref, 1, pool=pool, scale_by_reads=scaled)
                            real = [_log10_p(t, LayerKeys.of(v), x) for x in (None, code)]
                            rand = [[_log10_p(t, LayerKeys.of(v, i), x) for i in range(n_controls)]
                                    for x in (None, code)]
                            lines.append({"run": run.name, "who": who, "passes": pn, "refs": rs, "mode": pool,
                                          "k": 15, "scheme": "zn" if scaled else "z", "global": real[0],
                                          "account": real[1], "rand_global": rand[0], "rand_account": rand[1]})
        with (d / out_name).open("a") as f:
            for x in lines:
                f.write(json.dumps(x) + "\n")
        base = [x for x in lines if x["passes"] == "p1" and x["refs"] == "r2" and x["mode"] == "top_k"
                and x["scheme"] == "z"]
        print(f"{run.name}: {len(lines)} results in {time.perf_counter() - t0:.0f} s; earlier weights, two "
              "references: " + ", ".join(f"{x['who']} {x['global']:.2f} / {x['account']:.2f}" for x in base),
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("students", "reference", "score"))
    ap.add_argument("--dir", type=Path, default=Path("out/watermark/lab5pct"))
    ap.add_argument("--answers", type=int, default=1600)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--delta", type=float, default=2.0)
    ap.add_argument("--count", type=int, default=len(REF_SEEDS), help="reference: how many (seeds REF_SEEDS)")
    ap.add_argument("--tag", default="lab", help="students: run folders are named TAG-<ns>")
    ap.add_argument("--runs-glob", default="lab-*", help="score: which run folders")
    a = ap.parse_args()
    torch.set_num_threads(1)
    a.dir.mkdir(parents=True, exist_ok=True)
    if a.what == "students":
        students(a.dir, a.answers, a.steps, a.runs, a.delta, a.tag)
    elif a.what == "reference":
        model, tok = load_default_model()
        reference_students(a.dir, model, tok, _prompts(), a.answers, a.steps, a.count)
    else:
        score(a.dir, a.runs_glob)


if __name__ == "__main__":
    main()
