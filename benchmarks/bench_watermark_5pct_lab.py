"""Lab for the 5 % radioactivity experiment: students saved to disk, statistics compared offline.

The key-independent parts (unmarked answers, the control student, reference students) are
cached under --dir; each `students` call adds students, each with a fresh key, saved with
their key and the answers served to the harvesting account. `score` then scores every saved
student and the control with several variants of the open test (same models, many
statistics, 20 random-key controls each), which is how the weighted contrast, top 15 and two
reference students were chosen (docs/watermark.md). Its candidate pooling (top 40 by the
suspect, then the best-supported k) differs slightly from `contrast_tuples`.

Usage:
    python benchmarks/bench_watermark_5pct_lab.py students --runs 3
    python benchmarks/bench_watermark_5pct_lab.py reference --seeds 11 13 2
    python benchmarks/bench_watermark_5pct_lab.py reference --seeds 17 19 3
    python benchmarks/bench_watermark_5pct_lab.py score --reference ref-11-13-2 ref-17-19-3
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
from distillguard.trace._experiment import Harvested, chat_prompt, harvest_direct, train_student
from distillguard.trace._trace import _first_windows, _log_probs
from distillguard.watermark import WatermarkConfig, WatermarkKey
from distillguard.watermark import _seeding as S
from distillguard.watermark._scheme import LayerKeys
from distillguard.watermark._tails import weighted_binom_logsf

VARIANTS = ("top5of20", "rank8of20", "z6of20", "z6of15", "z6of10", "z6of30")


def _prompts() -> list[str]:
    return read_corpus_texts(["alpaca_5k"], 5000)[2000:]


def students(d: Path, answers: int, steps: int, runs: int, delta: float) -> None:
    model, tok = load_default_model()
    prompts, n_m = _prompts(), answers // 20
    plain_file = d / "plain.json"
    if not plain_file.exists():
        plain = harvest_direct(model, tok, None, {"acct-other": prompts[n_m:answers]}, max_new_tokens=200, seed=5)
        same = harvest_direct(model, tok, None, {"acct-5pct": prompts[:n_m]}, max_new_tokens=200, seed=7)
        plain_file.write_text(json.dumps({"plain": [r.__dict__ for r in plain], "same": [r.__dict__ for r in same]}))
    rows = json.loads(plain_file.read_text())
    plain = [Harvested(**x) for x in rows["plain"]]
    same = [Harvested(**x) for x in rows["same"]]
    if not (d / "control").exists():
        train_student(tok, same + plain, steps=steps, seq_len=128).save_pretrained(d / "control")
    for _ in range(runs):
        run = d / f"run{time.time_ns()}"
        run.mkdir()
        key = WatermarkKey.generate(WatermarkConfig(delta=delta))
        key.save(run / "wm.key")
        t = time.perf_counter()
        marked = harvest_direct(model, tok, key, {"acct-5pct": prompts[:n_m]}, max_new_tokens=200)
        (run / "marked.json").write_text(json.dumps([r.__dict__ for r in marked]))
        train_student(tok, marked + plain, steps=steps, seq_len=128).save_pretrained(run / "student")
        (run / "done").write_text("ok\n")
        print(f"{run.name}: {time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)


def reference(d: Path, answers: int, steps: int, seeds: list[int]) -> None:
    model, tok = load_default_model()
    prompts, n_m = _prompts(), answers // 20
    served_seed, other_seed, model_seed = seeds
    rows = harvest_direct(model, tok, None, {"ref-served": prompts[:n_m]}, max_new_tokens=200, seed=served_seed)
    rows += harvest_direct(model, tok, None, {"ref-other": prompts[answers : 2 * answers - n_m]},
                           max_new_tokens=200, seed=other_seed)
    ref = train_student(tok, rows, steps=steps, seq_len=128, seed=model_seed)
    ref.save_pretrained(d / f"ref-{served_seed}-{other_seed}-{model_seed}")


def _candidates(rows: list[list[int]], sus: list[Any], ref: list[Any], pool: int = 40) -> dict[str, Any]:
    windows, ctx, pos, _ = _first_windows(rows, 1)
    at_pos = torch.from_numpy(pos)
    lp, lr = torch.cat(sus)[at_pos], torch.cat(ref)[at_pos]
    top = lp.topk(pool, dim=-1)
    tokens = top.indices.numpy().astype(np.int64)
    _, first_at, group = np.unique(ctx, return_index=True, return_inverse=True)
    pair = group[:, None].astype(np.int64) * (int(tokens.max()) + 1) + tokens
    _, at, inv = np.unique(pair.ravel(), return_index=True, return_inverse=True)
    gain = (lp - lr).gather(-1, top.indices).numpy().astype(np.float64).ravel()
    owner = group[at // tokens.shape[1]]
    return {
        "owner": owner,
        "tok": tokens.ravel()[at],
        "sup": np.bincount(inv, weights=top.values.exp().numpy().astype(np.float64).ravel()),
        "gain": np.bincount(inv, weights=gain) / np.bincount(inv),
        "ctx": ctx[first_at][owner],
        "win": windows[first_at][owner],
    }


def _rank(owner: Any, score: Any) -> Any:
    order = np.lexsort((-score, owner))
    starts = np.searchsorted(owner[order], owner[order], side="left")
    r = np.empty(owner.size, dtype=np.int64)
    r[order] = np.arange(order.size) - starts
    return r


def _weights(c: dict[str, Any], variant: str) -> Any:
    owner = c["owner"]
    if variant.startswith("top") or variant.startswith("rank"):
        m, k = map(int, variant.lstrip("toprank").split("of"))
        inset = _rank(owner, c["sup"]) < k
        r = _rank(owner, np.where(inset, c["gain"], -np.inf))
        return np.where(inset & (r < m), 1 if variant.startswith("top") else m - r, 0)
    cap, k = map(int, variant[1:].split("of"))
    inset = _rank(owner, c["sup"]) < k
    g = np.where(inset, c["gain"], 0.0)
    n = np.bincount(owner, weights=inset.astype(float))
    mean = np.bincount(owner, weights=g) / np.maximum(n, 1)
    dev = np.where(inset, g - mean[owner], 0.0)
    sd = np.sqrt(np.bincount(owner, weights=dev * dev) / np.maximum(n, 1))[owner]
    z = np.divide(dev, sd, out=np.zeros_like(dev), where=sd > 0)
    return np.where(inset, np.clip(np.round(2 * z), 0, cap), 0).astype(np.int64)


def _log10_p(w: Any, c: dict[str, Any], keys: LayerKeys, code: Any | None) -> float:
    keep = w > 0
    w, tok, ctx, win = w[keep], c["tok"][keep], c["ctx"][keep], c["win"][keep]
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


def score(d: Path, references: list[str], n_controls: int = 20) -> None:
    teacher, tok = load_default_model()
    refs = [teacher if r == "teacher" else _load(d / r) for r in references]
    control = _load(d / "control")
    for run in sorted(p for p in d.glob("run*") if (p / "done").exists()):
        key = WatermarkKey.load(run / "wm.key")
        v = key.versions[0]
        code = np.asarray(S.account_code(v.secret, v.version, "acct-5pct", v.config.account_length,
                                         v.config.account_alphabet), dtype=np.int64)
        served = [chat_prompt(m["prompt"]) + m["text"] for m in json.loads((run / "marked.json").read_text())]
        rows = [list(r)[:256] for r in tok(served, add_special_tokens=False)["input_ids"] if len(r) >= 2]
        each = [_log_probs(r, rows, 16, 0) for r in refs]
        ref = [sum(x[1:], x[0]) / len(x) for x in zip(*each, strict=True)]
        student = _load(run / "student")
        print(f"== {run.name} (reference: {', '.join(references)}; log10 p global / with the account layer)")
        for who, m in (("student", student), ("control", control)):
            c = _candidates(rows, _log_probs(m, rows, 16, 0), ref)
            for variant in VARIANTS:
                w = _weights(c, variant)
                real = [_log10_p(w, c, LayerKeys.of(v), x) for x in (None, code)]
                rand = [min(_log10_p(w, c, LayerKeys.of(v, i), x) for i in range(n_controls)) for x in (None, code)]
                print(f"  {who:>7} {variant:>9}: {real[0]:7.2f} / {real[1]:7.2f}   "
                      f"random-key controls min {rand[0]:6.2f} / {rand[1]:6.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("students", "reference", "score"))
    ap.add_argument("--dir", type=Path, default=Path("out/watermark/lab5pct"))
    ap.add_argument("--answers", type=int, default=1600)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--delta", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, nargs=3, default=[11, 13, 2], help="served, other, model seeds")
    ap.add_argument("--reference", nargs="+", default=["teacher"], help="'teacher' or ref-* folders")
    a = ap.parse_args()
    torch.set_num_threads(1)
    a.dir.mkdir(parents=True, exist_ok=True)
    if a.what == "students":
        students(a.dir, a.answers, a.steps, a.runs, a.delta)
    elif a.what == "reference":
        reference(a.dir, a.answers, a.steps, a.seeds)
    else:
        score(a.dir, a.reference)


if __name__ == "__main__":
    main()
