"""Watermark and tracing benchmark, on this machine's CPU (one torch thread).

Prints, side by side on the same model and prompts:
- generation overhead of our logits processor against unwatermarked sampling;
- detection throughput (tokens/s) of our detector on 1 M tokens, and of the
  Kirchenbauer reference (jwkirchenbauer/lm-watermarking, fetched into a temp
  checkout at run time) and MarkLLM (PyPI `markllm`, installed into a separate
  venv under /tmp that reads the project's torch/transformers, never into the
  project venv);
- detection power at equal length (and false positives on unmarked text);
- attribution among 1 M account ids, the length/accounts/error trade-off (plot);
- quality cost (perplexity under the teacher), robustness (truncation, synonym
  substitution, re-sampling by a student) and radioactivity of students
  (all-watermarked, control; and the 5 % experiment: 5 % of the student's data
  watermarked, three fresh keys at delta 2, against a control student, with four reference
  students distilled from unmarked answers as the reference; students saved for re-scoring).

Usage: python benchmarks/bench_watermark.py [--out out/watermark] [--quick] [--only-5pct]
       [--runs-5pct N] [--rescore-5pct GLOB] [--only-students]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _docs import results_table, write_section

from distillguard.localmodel import (
    LocalModelConfig,
    generate,
    generate_ids,
    load_default_model,
    model_path,
    read_corpus_texts,
)
from distillguard.trace import radioactivity_open, trace_texts
from distillguard.trace._experiment import (
    Harvested,
    chat_prompt,
    harvest_direct,
    harvest_via_gateway,
    perplexity,
    train_student,
)
from distillguard.trace._trace import READING_OFFSETS
from distillguard.watermark import (
    SYNONYM_PAIRS,
    WatermarkConfig,
    WatermarkKey,
    collect_tuples,
    detect_ids,
)
from distillguard.watermark import _seeding as S
from distillguard.watermark._detect import _account_table, combine_positions
from distillguard.watermark._scheme import LayerKeys

# A git directory of jwkirchenbauer/lm-watermarking (any clone; set the variable to compare against it).
KIRCH_REPO = Path(os.environ.get("DISTILLGUARD_KIRCHENBAUER_REPO", "lm-watermarking/.git"))
Z_THRESHOLD = 4.0
P_THRESHOLD = 3.167e-5  # one-sided normal tail at z = 4, so all methods share one threshold
RESULTS: dict[str, Any] = {}
# (answers harvested, student training steps) of the 5 % experiment; --quick uses the second
RADIOACTIVITY_5PCT = (1600, 800)
RADIOACTIVITY_5PCT_QUICK = (800, 400)
RUNS_5PCT = 3  # fresh key each
REFERENCE_STUDENTS = 4


def say(msg: str) -> None:
    print(msg, flush=True)


def timed(fn: Any, *a: Any, **kw: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


# ----------------------------------------------------------------------------- generation
def bench_overhead(model: Any, tok: Any, key: WatermarkKey, prompts: list[str], repeats: int) -> None:
    say("\n== generation overhead (CPU, 1 torch thread, batch 16 x 128 new tokens) ==")
    batch = [chat_prompt(p) for p in prompts[:16]]
    plain_t, wm_t = [], []
    proc = key.logits_processor("acct-overhead")
    for r in range(repeats):  # interleaved so machine load hits both alike
        _, t0 = timed(generate_ids, model, tok, batch, max_new_tokens=128, min_new_tokens=128, seed=r)
        _, t1 = timed(generate_ids, model, tok, batch, max_new_tokens=128, min_new_tokens=128,
                      seed=r, logits_processors=[proc])
        plain_t.append(t0)
        wm_t.append(t1)
    n = 16 * 128
    p, w = n / statistics.median(plain_t), n / statistics.median(wm_t)
    call_ms = _processor_cost(proc)
    say(f"unwatermarked {p:,.0f} tok/s, watermarked {w:,.0f} tok/s: overhead {100 * (p / w - 1):+.1f} % "
        f"(median of {repeats}); processor alone {call_ms:.3f} ms per step for 16 x 512 logits")
    RESULTS["generation"] = {"plain_tok_s": p, "wm_tok_s": w, "overhead_pct": 100 * (p / w - 1),
                             "processor_ms_per_step": call_ms}


def _processor_cost(proc: Any) -> float:
    ids = torch.randint(0, 512, (16, 100))
    scores = torch.randn(16, 512)
    proc(ids, scores)
    _, t = timed(lambda: [proc(ids, scores) for _ in range(200)])
    return 1000 * t / 200


# ----------------------------------------------------------------------------- detection speed
def bench_throughput(key: WatermarkKey) -> None:
    say("\n== detection throughput (numpy, CPU) ==")
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 512, size=200).tolist() for _ in range(5000)]  # 1,000,000 tokens
    detect_ids(key, seqs[:10])
    det, t = timed(detect_ids, key, seqs)
    say(f"1,000,000 tokens in {t:.2f} s = {1e6 / t:,.0f} tokens/s (dedup + global layer + "
        f"{len(det.controls)} random-key controls); {det.scored_tuples:,} unique tuples")
    RESULTS["throughput"] = {"tokens": 1_000_000, "seconds": t, "tokens_per_s": 1e6 / t}


# ----------------------------------------------------------------------------- attribution
def account_log_p(key: WatermarkKey, seqs: list[list[int]], account: str) -> float:
    """Unadjusted natural-log p of one account (the Bonferroni term is added per N later)."""
    version = key.current
    cfg = version.config
    t = collect_tuples(seqs, cfg.context_width)
    counts, green = _account_table(LayerKeys.of(version), t)
    from scipy import stats

    with np.errstate(divide="ignore"):
        table = np.where(counts[:, None] > 0, stats.binom.logsf(green - 1, counts[:, None], cfg.gamma), 0.0)
    code = np.asarray([S.account_code(version.secret, version.version, account,
                                      cfg.account_length, cfg.account_alphabet)])
    return float(combine_positions(table, code, 1)[0])


def bench_attribution(key: WatermarkKey, marked: dict[str, list[list[int]]],
                      plain: dict[str, list[list[int]]], out: Path) -> None:
    say("\n== attribution among 1,000,000 account ids (20 texts x 200 tokens per account) ==")
    accounts = list(marked)
    candidates = [f"cand-{i:07d}" for i in range(1_000_000 - len(accounts))] + accounts
    hits, false_hits, times = 0, 0, []
    for a in accounts:
        det, t = timed(detect_ids, key, marked[a][:20], candidates=candidates, controls=False)
        times.append(t)
        named = [m.account_id for m in det.accounts if m.attributed]
        hits += named == [a]
        false_hits += len([x for x in named if x != a])
        say(f"  {a}: attributed {named} p = {det.accounts[0].p_value if det.accounts else 1:.2e} ({t:.1f} s)")
    null_false = 0
    for a in accounts:
        det = detect_ids(key, plain[a][:20], candidates=candidates, controls=False)
        null_false += sum(m.attributed for m in det.accounts)
    say(f"correct: {hits}/{len(accounts)}; false attributions: {false_hits} on marked data, "
        f"{null_false} on {len(accounts)} unmarked datasets x 1M candidates (alpha 1e-6, Bonferroni)")
    RESULTS["attribution"] = {"accounts": len(accounts), "correct": hits, "false_on_marked": false_hits,
                              "false_on_unmarked": null_false, "seconds_per_dataset": statistics.median(times)}

    # trade-off: texts per account, tokens per text, number of accounts
    texts_grid, len_grid, n_grid = [2, 5, 10, 20, 40], [50, 100, 200], [1e3, 1e4, 1e5, 1e6, 1e7]
    rng = random.Random(0)
    rates: dict[str, list[float]] = {}
    for length in len_grid:
        for n_accounts in n_grid:
            row = []
            for n_texts in texts_grid:
                ok = tot = 0
                for a in accounts:
                    for _ in range(2):
                        sample = rng.sample(marked[a], min(n_texts, len(marked[a])))
                        lp = account_log_p(key, [s[:length] for s in sample], a) + math.log(n_accounts)
                        ok += lp <= math.log(1e-6)
                        tot += 1
                row.append(ok / tot)
            rates[f"{length}|{int(n_accounts)}"] = row
    say("attribution rate at false-attribution bound 1e-6 (rows: tokens per text / accounts; cols: texts "
        + " ".join(map(str, texts_grid)) + ")")
    for k, row in rates.items():
        say(f"  {k:>14}: " + " ".join(f"{r:4.2f}" for r in row))
    RESULTS["tradeoff"] = {"texts": texts_grid, "rates": rates}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(len_grid), figsize=(4 * len(len_grid), 3.4), sharey=True)
        for ax, length in zip(axes, len_grid, strict=True):
            for n_accounts in n_grid:
                ax.plot(texts_grid, rates[f"{length}|{int(n_accounts)}"], marker="o",
                        label=f"{int(n_accounts):,} accounts")
            ax.set_xscale("log")
            ax.set_title(f"{length} tokens per text")
            ax.set_xlabel("harvested texts of the account")
        axes[0].set_ylabel("attributed at FAR <= 1e-6")
        axes[-1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "attribution_tradeoff.png", dpi=120)
        say(f"plot: {out / 'attribution_tradeoff.png'}")
    except Exception as exc:  # noqa: BLE001
        say(f"plot failed: {exc!r}")


# ----------------------------------------------------------------------------- robustness
def _swap_synonyms(text: str) -> str:
    partner = {a: b for a, b in SYNONYM_PAIRS} | {b: a for a, b in SYNONYM_PAIRS}
    return " ".join(partner.get(w, w) for w in text.split(" "))


def bench_quality_and_robustness(model: Any, tok: Any, key: WatermarkKey, marked: list[Harvested],
                                 plain: list[Harvested], gumbel: list[Harvested],
                                 gumbel_plain: list[Harvested]) -> None:
    say("\n== quality: perplexity of the answers under the teacher ==")
    ppl = {
        "plain": perplexity(model, tok, [r.prompt for r in plain], [r.text for r in plain]),
        "kgw+account": perplexity(model, tok, [r.prompt for r in marked], [r.text for r in marked]),
        "gumbel_plain": perplexity(model, tok, [r.prompt for r in gumbel_plain], [r.text for r in gumbel_plain]),
        "gumbel+account": perplexity(model, tok, [r.prompt for r in gumbel], [r.text for r in gumbel]),
    }
    say(f"kgw (gamma .25, delta 2, account delta 2): {ppl['kgw+account']:.1f} vs {ppl['plain']:.1f} unmarked "
        f"({100 * (ppl['kgw+account'] / ppl['plain'] - 1):+.1f} %)")
    say(f"gumbel (+account layer): {ppl['gumbel+account']:.1f} vs {ppl['gumbel_plain']:.1f} unmarked "
        f"({100 * (ppl['gumbel+account'] / ppl['gumbel_plain'] - 1):+.1f} %)")
    RESULTS["perplexity"] = ppl

    say("\n== robustness (global layer, one account's 20 answers) ==")
    texts = [r.text for r in marked[:20]]
    rng = random.Random(1)

    def p_of(ts: list[str]) -> float:
        return float(trace_texts(key, ts, tokenizer=tok, lexical=False).layers[0].p_value)

    def replace_tokens(t: str, frac: float) -> str:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        ids = [rng.randrange(len(tok)) if rng.random() < frac else i for i in ids]
        return str(tok.decode(ids))

    rob = {
        "intact": p_of(texts),
        "truncated to 50 %": p_of([t[: len(t) // 2] for t in texts]),
        "truncated to 25 %": p_of([t[: len(t) // 4] for t in texts]),
        "synonym swap": p_of([_swap_synonyms(t) for t in texts]),
        "10 % tokens replaced": p_of([replace_tokens(t, 0.1) for t in texts]),
        "30 % tokens replaced": p_of([replace_tokens(t, 0.3) for t in texts]),
    }
    for k, v in rob.items():
        say(f"  {k:>22}: p = {v:.2e}")
    RESULTS["robustness"] = rob


# ----------------------------------------------------------------------------- radioactivity
def bench_radioactivity(model: Any, tok: Any, key: WatermarkKey, marked: list[Harvested],
                        plain: list[Harvested], steps: int, reading: list[str], closed_prompts: list[str]) -> None:
    say(f"\n== radioactivity: students trained from scratch, {steps} steps, on all harvested answers ==")
    res = {}
    served = [chat_prompt(r.prompt) + r.text for r in marked]  # what the harvesting accounts received
    for name, rows in (("100 % watermarked", marked), ("control (0 %)", plain)):
        student, t = timed(train_student, tok, rows, steps=steps, seq_len=128)
        rep = radioactivity_open(key, student, tok, reading)
        on_served = radioactivity_open(key, student, tok, served, reference=model)
        d = rep.layers[0]
        answers = generate(student, tok, [chat_prompt(p) for p in closed_prompts], max_new_tokens=128,
                           min_new_tokens=64, temperature=0.7, seed=0)
        closed = trace_texts(key, answers, tokenizer=tok, prompts=[chat_prompt(p) for p in closed_prompts],
                             lexical=False)
        res[name] = {"open_p": rep.p_value, "open_tuples": d.scored_tuples, "open_served_p": on_served.p_value,
                     "open_served_tuples": on_served.scored_tuples, "closed_p": closed.p_value,
                     "closed_tuples": closed.scored_tuples, "train_s": t}
        say(f"  {name:>18}: open, reading gsm8k p = {rep.p_value:.2e} on {d.scored_tuples} tuples; reading the "
            f"served answers (teacher as reference) p = {on_served.p_value:.2e} on {on_served.scored_tuples}; "
            f"closed (sampled answers) p = {closed.p_value:.2e} on {closed.scored_tuples} tuples; "
            f"controls min p = {min(d.controls):.2f}; trained in {t:.0f} s")
    RESULTS["radioactivity"] = res


def bench_radioactivity_5pct(model: Any, tok: Any, prompts: list[str], answers: int, steps: int, cache: Path,
                             runs: int = RUNS_5PCT, delta: float = 2.0, rescore: str | None = None) -> None:
    """Sander et al.'s setting: 5 % of the student's fine-tuning data is our watermarked answers.

    One account harvests `answers / 20` marked answers; the other 95 % are unmarked answers of
    the same teacher to other prompts. The control student sees the same data with the marked
    answers replaced by unmarked answers to the same prompts (it does not depend on the key, so
    one control serves every run); so do the reference students, distilled from our own unmarked
    answers. These key-independent parts are cached under `cache`, shared with
    `bench_watermark_5pct_lab.py`; each run draws a fresh key and saves its key, marked answers
    and student there (`bench-<ns>/`), so a miss can be re-scored offline (`rescore`: score saved
    runs matching this glob instead of training new ones). Open test: the student reads the
    answers we served to the harvesting account (each window at its first occurrence per text,
    each text from 4 offsets), per window its 15 best-supported tokens weighted by how much more
    it prefers them than the 4 reference students (`contrast_tuples`), with and without the
    harvesting account's layer; and, for comparison, the weights kept before (2 reference
    students, one pass, top-15 pooling, unscaled).
    """
    from bench_watermark_5pct_lab import (
        control_student,
        load_run,
        new_run,
        reference_students,
        unmarked_answers,
    )

    n_m = answers // 20
    say(f"\n== radioactivity at 5 %: {n_m} marked + {answers - n_m} unmarked answers x 200 tokens, "
        f"students trained {steps} steps (gamma .25, delta {delta:g}, account delta 2, h 1), "
        + (f"saved runs {rescore!r} re-scored ==" if rescore else f"{runs} runs =="))
    cache.mkdir(parents=True, exist_ok=True)
    (plain, same), t = timed(unmarked_answers, cache, model, tok, prompts, answers)
    control, tc = timed(control_student, cache, tok, plain, same, steps)
    refs, tr = timed(reference_students, cache, model, tok, prompts, answers, steps, REFERENCE_STUDENTS)
    say(f"  unmarked answers {t:.0f} s, control student {tc:.0f} s, {len(refs)} reference students {tr:.0f} s "
        f"(0 when cached under {cache}; load {os.getloadavg()[0]:.1f})")
    res: dict[str, Any] = {"answers": answers, "marked": n_m, "steps": steps, "delta": delta,
                           "reference_students": len(refs), "runs": []}
    saved = sorted(p for p in cache.glob(rescore) if (p / "done").exists()) if rescore else []
    for i in range(len(saved) if rescore else runs):
        if rescore:
            run_dir, ts = saved[i], float("nan")
        else:
            run_dir, ts = timed(new_run, cache, "bench", model, tok, prompts, plain, answers, steps, delta)
        key, marked, student = load_run(run_dir)
        served = [chat_prompt(r.prompt) + r.text for r in marked]
        ppl = (perplexity(model, tok, [r.prompt for r in marked], [r.text for r in marked]),
               perplexity(model, tok, [r.prompt for r in same], [r.text for r in same]))
        entry: dict[str, Any] = {"run": run_dir.name, "perplexity_marked": ppl[0], "perplexity_unmarked": ppl[1],
                                 "seconds": ts, "load": os.getloadavg()[0]}
        took = "saved earlier" if rescore else f"harvested and trained in {ts:.0f} s"
        say(f"  {run_dir.name} (a key of its own): served answers' perplexity under the teacher {ppl[0]:.1f} vs "
            f"{ppl[1]:.1f} unmarked ({100 * (ppl[0] / ppl[1] - 1):+.0f} %); {took} (load {entry['load']:.1f})")
        tests = ((f"{len(refs)} reference students, weighted and scaled by reads, {len(READING_OFFSETS)} passes",
                  refs, {}),
                 ("2 reference students, earlier weights (one pass, top-15 pooling, unscaled)", refs[:2],
                  {"offsets": (0,), "pool": "top_k", "scale_by_reads": False}))
        for name, m in (("5 % watermarked", student), ("control (0 %)", control)):
            entry[name] = {}
            for label, ref, kw in tests:
                r = [radioactivity_open(key, m, tok, served, reference=ref, account=acct, **kw)
                     for acct in (None, "acct-5pct")]
                d = [x.layers[0] for x in r]
                entry[name][label] = {"p": r[0].p_value, "p_with_account": r[1].p_value,
                                      "tuples": d[0].scored_tuples, "controls_min_p": min(d[0].controls),
                                      "controls_min_p_with_account": min(d[1].controls)}
                say(f"    {name:>16}, reference {label}: p = {r[0].p_value:.2e} on {d[0].scored_tuples} tuples "
                    f"({d[0].statistic:.0f} vs {d[0].expected:.0f} expected); with the harvesting account's "
                    f"layer p = {r[1].p_value:.2e}; random-key controls min p {min(d[0].controls):.2f} / "
                    f"{min(d[1].controls):.2f}")
        res["runs"].append(entry)
    RESULTS["radioactivity_5pct"] = res


# ----------------------------------------------------------------------------- anchors
_MARKLLM_SCRIPT = r'''
import json, sys, time, torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList
from markllm.watermark.kgw.kgw import KGW
from markllm.utils.transformers_config import TransformersConfig
args = json.load(open(sys.argv[1]))
tok = AutoTokenizer.from_pretrained(args["model"]); model = AutoModelForCausalLM.from_pretrained(args["model"]).eval()
tok.padding_side = "left"
wm = KGW(args["config"], TransformersConfig(model=model, tokenizer=tok, vocab_size=len(tok), device="cpu"))
out = {}
enc = tok(args["prompts"], return_tensors="pt", padding=True, add_special_tokens=False, truncation=True,
          max_length=model.config.n_positions - args["n"])
def gen(procs, seed):
    torch.manual_seed(seed)
    with torch.inference_mode():
        r = model.generate(**enc, max_new_tokens=args["n"], min_new_tokens=args["n"], do_sample=True, top_k=None,
                           pad_token_id=tok.eos_token_id, logits_processor=LogitsProcessorList(procs))
    return r[:, enc["input_ids"].shape[1]:].tolist()
t = time.perf_counter(); out["plain"] = gen([], 0); out["t_plain"] = time.perf_counter() - t
t = time.perf_counter(); out["marked"] = gen([wm.logits_processor], 0); out["t_marked"] = time.perf_counter() - t
def z(seq):
    return wm.utils.score_sequence(torch.tensor(seq))[0]
out["z"] = {}
for L in args["lengths"]:
    out["z"][str(L)] = {"marked": [z(s[:L]) for s in out["marked"]], "plain": [z(s[:L]) for s in out["plain"]]}
t = time.perf_counter(); [z(s) for s in out["marked"]]; out["t_detect"] = time.perf_counter() - t
json.dump(out, open(sys.argv[2], "w"))
'''


def run_markllm(prompts: list[str], n: int, lengths: list[int], work: Path) -> dict[str, Any] | str:
    venv = Path(tempfile.gettempdir()) / "distillguard-markllm-venv"
    py = venv / "bin" / "python"
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "markllm"], check=True)
            site = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                                  check=True, capture_output=True, text=True).stdout.strip()
            ours = next(p for p in sys.path if p.endswith("site-packages"))
            # read-only reuse of the project's torch/transformers: nothing is installed there
            Path(site, "distillguard_readonly.pth").write_text(ours + "\n")
        cfg = work / "markllm_kgw.json"
        cfg.write_text(json.dumps({"algorithm_name": "KGW", "gamma": 0.25, "delta": 2.0, "hash_key": 15485863,
                                   "prefix_length": 1, "z_threshold": Z_THRESHOLD, "f_scheme": "time",
                                   "window_scheme": "left"}))
        args = work / "markllm_args.json"
        args.write_text(json.dumps({"model": str(model_path(LocalModelConfig())), "config": str(cfg),
                                    "prompts": prompts, "n": n, "lengths": lengths}))
        script = work / "markllm_run.py"
        script.write_text(_MARKLLM_SCRIPT)
        res = work / "markllm_out.json"
        proc = subprocess.run([str(py), str(script), str(args), str(res)], capture_output=True, text=True,
                              timeout=1200)
        if proc.returncode != 0:
            return "MarkLLM failed: " + proc.stderr.strip().splitlines()[-1]
        return dict(json.loads(res.read_text()))
    except Exception as exc:  # noqa: BLE001
        return f"MarkLLM could not be installed or run offline: {exc!r}"


def run_kirchenbauer(model: Any, tok: Any, prompts: list[str], n: int, lengths: list[int],
                     work: Path) -> dict[str, Any] | str:
    if not KIRCH_REPO.exists():
        return f"Kirchenbauer reference not found ({KIRCH_REPO}; set DISTILLGUARD_KIRCHENBAUER_REPO to a clone's git directory)"
    ref = work / "lm-watermarking"
    ref.mkdir(exist_ok=True)
    files = ["extended_watermark_processor.py", "alternative_prf_schemes.py", "normalizers.py", "homoglyphs.py"]
    archive = subprocess.run(["git", f"--git-dir={KIRCH_REPO}", "archive", "HEAD", *files, "homoglyph_data"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(ref)], input=archive, check=True)
    sys.path.insert(0, str(ref))
    try:
        from extended_watermark_processor import WatermarkDetector, WatermarkLogitsProcessor  # type: ignore
    finally:
        sys.path.remove(str(ref))
    vocab = list(range(len(tok)))
    proc = WatermarkLogitsProcessor(vocab=vocab, gamma=0.25, delta=2.0, seeding_scheme="lefthash")
    det = WatermarkDetector(vocab=vocab, gamma=0.25, seeding_scheme="lefthash", device="cpu", tokenizer=tok,
                            z_threshold=Z_THRESHOLD, normalizers=[], ignore_repeated_ngrams=True)
    batch = [chat_prompt(p) for p in prompts]
    plain, tp = timed(generate_ids, model, tok, batch, max_new_tokens=n, min_new_tokens=n, seed=0)
    marked, tm = timed(generate_ids, model, tok, batch, max_new_tokens=n, min_new_tokens=n, seed=0,
                       logits_processors=[proc])

    def z(seq: list[int]) -> float:
        if len(seq) < 3:
            return 0.0
        try:
            return float(det.detect(tokenized_text=torch.tensor(seq), return_prediction=False)["z_score"])
        except Exception:  # noqa: BLE001 - too few tokens after dedup
            return 0.0

    out: dict[str, Any] = {"plain": plain, "marked": marked, "t_plain": tp, "t_marked": tm, "z": {}}
    for L in lengths:
        out["z"][str(L)] = {"marked": [z(s[:L]) for s in marked], "plain": [z(s[:L]) for s in plain]}
    _, out["t_detect"] = timed(lambda: [z(s) for s in marked])
    return out


def bench_anchors(model: Any, tok: Any, prompts: list[str], work: Path, n: int = 200) -> None:
    say("\n== side by side: ours vs Kirchenbauer reference vs MarkLLM (same model, prompts, gamma .25, "
        "delta 2, h 1) ==")
    lengths = [25, 50, 100, 200]
    key = WatermarkKey.generate(WatermarkConfig(account_delta=0.0))
    batch = [chat_prompt(p) for p in prompts]
    plain, tp = timed(generate_ids, model, tok, batch, max_new_tokens=n, min_new_tokens=n, seed=0)
    marked, tm = timed(generate_ids, model, tok, batch, max_new_tokens=n, min_new_tokens=n, seed=0,
                       logits_processors=[key.logits_processor(None)])  # type: ignore[arg-type]
    ours: dict[str, Any] = {"t_plain": tp, "t_marked": tm, "p": {}}
    for L in lengths:
        ours["p"][str(L)] = {
            "marked": [detect_ids(key, [s[:L]], controls=False).p_value for s in marked],
            "plain": [detect_ids(key, [s[:L]], controls=False).p_value for s in plain],
        }
    _, ours["t_detect"] = timed(lambda: [detect_ids(key, [s], controls=False) for s in marked])
    methods: dict[str, Any] = {"distillguard": ours}
    methods["kirchenbauer-ref"] = run_kirchenbauer(model, tok, prompts, n, lengths, work)
    methods["markllm-kgw"] = run_markllm(batch, n, lengths, work)
    tokens = len(prompts) * n
    table: dict[str, Any] = {}
    for name, res in methods.items():
        if isinstance(res, str):
            say(f"  {name}: {res}")
            table[name] = res
            continue
        row: dict[str, Any] = {}
        for L in lengths:
            if "p" in res:
                tpr = float(np.mean(np.array(res["p"][str(L)]["marked"]) <= P_THRESHOLD))
                fpr = float(np.mean(np.array(res["p"][str(L)]["plain"]) <= P_THRESHOLD))
            else:
                tpr = float(np.mean(np.array(res["z"][str(L)]["marked"]) >= Z_THRESHOLD))
                fpr = float(np.mean(np.array(res["z"][str(L)]["plain"]) >= Z_THRESHOLD))
            row[str(L)] = {"tpr": tpr, "fpr": fpr}
        row["detect_tok_s"] = tokens / res["t_detect"]
        row["gen_overhead_pct"] = 100 * (res["t_marked"] / res["t_plain"] - 1)
        table[name] = row
        say(f"  {name:>16}: detected at z>=4 / p<=3.2e-5 (TPR|FPR) "
            + ", ".join(f"{L} tok {row[str(L)]['tpr']:.2f}|{row[str(L)]['fpr']:.2f}" for L in lengths)
            + f"; detection {row['detect_tok_s']:,.0f} tok/s (one call per text); generation time vs "
            f"unmarked {row['gen_overhead_pct']:+.1f} % (one run each, noisy)")
    RESULTS["anchors"] = table


# ----------------------------------------------------------------------------- main
def bench_5pct(args: argparse.Namespace, model: Any, tok: Any) -> None:
    answers, steps = RADIOACTIVITY_5PCT_QUICK if args.quick else RADIOACTIVITY_5PCT
    bench_radioactivity_5pct(model, tok, read_corpus_texts(["alpaca_5k"], 5000)[2000:], answers, steps,
                             args.out / ("lab5pct-quick" if args.quick else "lab5pct"), runs=args.runs_5pct,
                             rescore=args.rescore_5pct)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("out/watermark"))
    ap.add_argument("--quick", action="store_true", help="fewer accounts and steps")
    ap.add_argument("--skip-anchors", action="store_true")
    ap.add_argument("--skip-gateway", action="store_true")
    ap.add_argument("--only-5pct", action="store_true", help="only the 5 %% radioactivity experiment")
    ap.add_argument("--runs-5pct", type=int, default=RUNS_5PCT, help="fresh keys (students) of the 5 %% experiment")
    ap.add_argument("--rescore-5pct", metavar="GLOB",
                    help="re-score the 5 %% experiment's saved runs matching GLOB (e.g. 'bench-*') instead of "
                    "training; writes results_5pct_rescored.json")
    ap.add_argument("--only-students", action="store_true",
                    help="only the students trained on 100 %% marked and on unmarked answers")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    say(f"CPU only: {os.cpu_count()} cores (shared), torch {torch.__version__}, 1 torch thread")
    model, tok = load_default_model()
    n_params = sum(p.numel() for p in model.parameters())
    say(f"teacher: the built-in local model, {n_params:,} parameters, vocab {len(tok)}")
    prompts = read_corpus_texts(["alpaca_5k"], 2000)
    key = WatermarkKey.generate()
    if args.only_5pct:
        bench_5pct(args, model, tok)
        name = "results_5pct_rescored.json" if args.rescore_5pct else "results_5pct.json"
        (args.out / name).write_text(json.dumps(RESULTS, indent=2, default=float))
        return
    n_acc, per = (4, 24) if args.quick else (8, 40)
    accounts = [f"acct-{i:07d}" for i in (7, 4242, 99999, 123456, 500000, 777777, 888888, 999990)[:n_acc]]
    if not args.only_students:
        bench_overhead(model, tok, key, prompts[1500:], 2 if args.quick else 4)
        bench_throughput(key)

    work = Path(tempfile.mkdtemp(prefix="dg-bench-"))
    key_file = key.save(work / "wm.key")
    if not args.skip_gateway and not args.only_students:
        rows, t = timed(harvest_via_gateway, key_file, {a: prompts[i * 2 : i * 2 + 2] for i, a in
                                                           enumerate(accounts[:3])}, work, max_tokens=64)
        gw = trace_texts(key, [r.text for r in rows], tokenizer=tok, lexical=False)
        say(f"\n== harvest through the gateway (local backend, --watermark-key-file): {len(rows)} answers "
            f"in {t:.1f} s, p = {gw.p_value:.2e} on {gw.scored_tuples} tuples ==")
        RESULTS["gateway_harvest"] = {"answers": len(rows), "seconds": t, "p": gw.p_value}
    by_acc = {a: prompts[100 + i * per : 100 + (i + 1) * per] for i, a in enumerate(accounts)}
    say(f"\nharvesting {n_acc} accounts x {per} answers x 200 tokens in batches (same processor as the "
        "gateway's local backend) ...")
    marked_rows, tmk = timed(harvest_direct, model, tok, key, by_acc, max_new_tokens=200)
    plain_rows, tpl = timed(harvest_direct, model, tok, None, by_acc, max_new_tokens=200)
    say(f"  marked {tmk:.0f} s, unmarked {tpl:.0f} s")
    if args.only_students:
        bench_radioactivity(model, tok, key, marked_rows, plain_rows, 200 if args.quick else 400,
                            read_corpus_texts(["gsm8k"], 300), prompts[1000:1100])
        (args.out / "results_students.json").write_text(json.dumps(RESULTS, indent=2, default=float))
        return
    enc = {a: [tok(r.text, add_special_tokens=False)["input_ids"] for r in marked_rows if r.account_id == a]
           for a in accounts}
    enc_plain = {a: [tok(r.text, add_special_tokens=False)["input_ids"] for r in plain_rows
                     if r.account_id == a] for a in accounts}
    bench_attribution(key, enc, enc_plain, args.out)

    gkey = WatermarkKey.generate(WatermarkConfig(scheme="gumbel"))
    gsub = {a: by_acc[a][:10] for a in accounts[:4]}
    gumbel_rows = harvest_direct(model, tok, gkey, gsub, max_new_tokens=200)
    gumbel_plain = [r for r in plain_rows if r.account_id in gsub and r.prompt in set(sum(gsub.values(), []))]
    bench_quality_and_robustness(model, tok, key, marked_rows, plain_rows, gumbel_rows, gumbel_plain)
    bench_radioactivity(model, tok, key, marked_rows, plain_rows, 200 if args.quick else 400,
                        read_corpus_texts(["gsm8k"], 300), prompts[1000:1100])
    bench_5pct(args, model, tok)
    if not args.skip_anchors:
        bench_anchors(model, tok, prompts[1200:1240], work)
    (args.out / "results.json").write_text(json.dumps(RESULTS, indent=2, default=float))
    say(f"\nresults: {args.out / 'results.json'}")
    write_section(__file__, "Watermarks and tracing", results_table(RESULTS))


if __name__ == "__main__":
    main()
