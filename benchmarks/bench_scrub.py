"""Scrubbing attacks against the watermark at the 5 % setting (issue 19 item 4), on this CPU.

One account harvests 5 % of a student's training answers, marked by the token layer (gamma .25,
delta 2, account delta 2, h 1, a fixed key never used to choose settings); the other 95 % are
unmarked answers of the same teacher. Before training, the harvested answers are attacked:
- none;
- rules: `paraphrase_rules` (every lexicon choice re-drawn at rate 0.5, sentences reordered
  within a line at rate 0.5, punctuation normalised);
- resample: `paraphrase_resample`, a share of the tokens redrawn from the (unmarked) teacher.
A student is trained on each; and the un-attacked student is neutralised at inference (Pan et
al. 2025, `estimate_neutraliser`: the attacker's reference is the control student, trained on
the same data with unmarked answers in place of the marked ones, the best reference it could
have). Reported for each: the open radioactivity test (the suspect reads the answers we served,
contrasted with reference models: the lab's reference students with --refs N, as
`bench_watermark.py --only-5pct`, or the teacher with --refs 0), global layer and with
the harvesting account's layer; attribution of the harvesting account among 1 M candidates
(account table, Fisher over the 3 weakest positions, Bonferroni over 1 M) from the student and
from the attacked dataset itself; the closed test on sampled answers for the neutraliser; the
control student beside them; and the attack's cost (share of words changed, perplexity under
the teacher of the attacked answers or of the neutralised student's answers).

The key-independent parts (unmarked answers, control, reference students) are shared with
`bench_watermark_5pct_lab.py` (same --dir layout); students are cached as scrub-<attack>/.

Usage: python benchmarks/bench_scrub.py [--dir out/scrub/lab] [--answers 800] [--steps 400] [--refs N]
       [--dataset-only] [--train-only ATTACK|ref-N]  (one student per process, to train side by side)
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _docs import markdown_table, write_section
from bench_watermark_5pct_lab import (
    _load,
    _prompts,
    control_student,
    reference_students,
    unmarked_answers,
)
from scipy import stats

from distillguard.localmodel import generate, load_default_model
from distillguard.trace import contrast_tuples
from distillguard.trace._experiment import (
    Harvested,
    chat_prompt,
    harvest_direct,
    perplexity,
    train_student,
)
from distillguard.trace._scrub import (
    NeutralisedModel,
    NeutralisingProcessor,
    estimate_neutraliser,
    paraphrase_resample,
    paraphrase_rules,
)
from distillguard.trace._trace import READING_OFFSETS, _read_passes
from distillguard.watermark import (
    KeyVersion,
    ScoredTuples,
    WatermarkConfig,
    WatermarkKey,
    collect_tuples,
    detect_ids,
)
from distillguard.watermark import _seeding as S
from distillguard.watermark._detect import _account_table, combine_positions, detect_tuples
from distillguard.watermark._scheme import LayerKeys

ACCOUNT = "acct-5pct"
CANDIDATES = 1_000_000  # attribution is Bonferroni-adjusted over this many account ids
RESAMPLE_RATES = (0.25, 0.5)
NEUTRALISE_PROMPTS = 100  # student outputs the neutraliser is estimated from
CLOSED_PROMPTS = 100  # answers the closed test samples from the (neutralised) student
RESULTS: dict[str, Any] = {}


def say(msg: str) -> None:
    print(msg, flush=True)


def bench_key() -> WatermarkKey:
    """A fixed key (reproducible), never used to choose any setting."""
    secret = hashlib.sha256(b"distillguard-bench-scrub-key-1").digest()
    return WatermarkKey((KeyVersion(1, secret, WatermarkConfig()),), active=1)


def attribution_log10_p(key: WatermarkKey, t: ScoredTuples, account: str, n_candidates: int) -> float:
    """log10 p of `account` among `n_candidates` (the library's `_attribute` rule, one candidate)."""
    v = key.current
    cfg = v.config
    counts, green = _account_table(LayerKeys.of(v), t)
    with np.errstate(divide="ignore"):
        table = np.where(counts[:, None] > 0, stats.binom.logsf(green - 1, counts[:, None], cfg.gamma), 0.0)
    code = np.asarray([S.account_code(v.secret, v.version, account, cfg.account_length, cfg.account_alphabet)])
    return float(combine_positions(table, code, n_candidates)[0] / math.log(10))


def words_changed(a: str, b: str) -> float:
    """Share of the words of `a` not kept in order in `b`."""
    wa, wb = a.split(), b.split()
    kept = sum(m.size for m in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_matching_blocks())
    return 1.0 - kept / max(len(wa), 1)


def open_test(key: WatermarkKey, model: Any, refs: list[Any], rows: list[list[int]]) -> dict[str, float]:
    """The 5 % open test (library settings) with and without the account layer, and attribution among 1 M."""
    suspect = _read_passes(model, rows, 16, 0, READING_OFFSETS)
    each = [_read_passes(r, rows, 16, 0, READING_OFFSETS) for r in refs]
    ref = [sum(x[1:], x[0]) / len(x) for x in zip(*each, strict=True)]
    t = contrast_tuples(rows, suspect, ref, key.config.context_width)
    glob = detect_tuples(key, lambda h: t)
    acct = detect_tuples(key, lambda h: t, served_account=ACCOUNT)
    return {"log10_p": glob.log10_p, "log10_p_with_account": acct.log10_p, "tuples": glob.scored_tuples,
            "attribution_log10_p": attribution_log10_p(key, t, ACCOUNT, CANDIDATES),
            "controls_min_p": min(glob.controls)}


def dataset_test(key: WatermarkKey, tok: Any, prompts: list[str], texts: list[str]) -> dict[str, float]:
    """The harvested (attacked) answers themselves: token-layer detection and attribution among 1 M."""
    seqs = [list(x) for x in tok(texts, add_special_tokens=False)["input_ids"]]
    pre = [list(x) for x in tok([chat_prompt(p) for p in prompts], add_special_tokens=False)["input_ids"]]
    det = detect_ids(key, seqs, prompts=pre)
    t = collect_tuples(seqs, key.config.context_width)
    return {"log10_p": det.log10_p, "tuples": det.scored_tuples,
            "attribution_log10_p": attribution_log10_p(key, t, ACCOUNT, CANDIDATES)}


def marked_answers(d: Path, model: Any, tok: Any, key: WatermarkKey, prompts: list[str]) -> list[Harvested]:
    path = d / "scrub-marked.json"
    if not path.exists():
        rows = harvest_direct(model, tok, key, {ACCOUNT: prompts}, max_new_tokens=200)
        path.write_text(json.dumps([r.__dict__ for r in rows]))
    return [Harvested(**x) for x in json.loads(path.read_text())]


def student_for(d: Path, name: str, tok: Any, rows: list[Harvested], steps: int) -> tuple[Any, float]:
    path = d / f"scrub-{name}"
    t0 = time.perf_counter()
    if not (path / "done").exists():
        train_student(tok, rows, steps=steps, seq_len=128).save_pretrained(path)
        (path / "done").write_text("ok\n")
    return _load(path), time.perf_counter() - t0


def closed_p(key: WatermarkKey, tok: Any, prompts: list[str], answers: list[str]) -> dict[str, float]:
    seqs = [list(x) for x in tok(answers, add_special_tokens=False)["input_ids"]]
    pre = [list(x) for x in tok([chat_prompt(p) for p in prompts], add_special_tokens=False)["input_ids"]]
    det = detect_ids(key, seqs, prompts=pre)
    return {"log10_p": det.log10_p, "tuples": det.scored_tuples}


def run(args: argparse.Namespace) -> None:
    d: Path = args.dir
    d.mkdir(parents=True, exist_ok=True)
    teacher, tok = load_default_model()
    prompts = _prompts()
    n_m = args.answers // 20
    plain, same = unmarked_answers(d, teacher, tok, prompts, args.answers)
    key = bench_key()
    marked = marked_answers(d, teacher, tok, key, prompts[:n_m])
    served = [chat_prompt(r.prompt) + r.text for r in marked]  # what we served: the test reads it
    rows = [list(r)[:256] for r in tok(served, add_special_tokens=False)["input_ids"] if len(r) >= 2]
    texts = [r.text for r in marked]
    qs = [r.prompt for r in marked]
    attacks: dict[str, list[str]] = {"none": texts,
                                     "rules": [paraphrase_rules(t, seed=i) for i, t in enumerate(texts)]}
    for rate in RESAMPLE_RATES:
        attacks[f"resample {rate:g}"] = paraphrase_resample(
            teacher, tok, [chat_prompt(q) for q in qs], texts, rate=rate, seed=3)
    if args.train_only:  # one student per process, so several train side by side
        if args.train_only.startswith("ref-"):
            reference_students(d, teacher, tok, prompts, args.answers, args.steps, 1, int(args.train_only[4:]) - 1)
        else:
            rows_a = [Harvested(ACCOUNT, q, t) for q, t in zip(qs, attacks[args.train_only], strict=True)]
            student_for(d, args.train_only.replace(" ", "-"), tok, rows_a + plain, args.steps)
        return
    plain_ppl = perplexity(teacher, tok, [r.prompt for r in same], [r.text for r in same])
    for name, attacked in attacks.items():  # the harvested dataset itself: no student needed
        RESULTS[name] = {
            "words_changed": float(np.mean([words_changed(a, b) for a, b in zip(texts, attacked, strict=True)])),
            "perplexity_ratio": perplexity(teacher, tok, qs, attacked) / plain_ppl,
            "dataset": dataset_test(key, tok, qs, attacked)}
        say(f"{name}: {json.dumps(RESULTS[name])}")
    if args.dataset_only:
        write_docs(args, n_m, len(plain), args.refs)
        return
    students = {name: student_for(d, name.replace(" ", "-"), tok,
                                  [Harvested(ACCOUNT, q, t) for q, t in zip(qs, attacked, strict=True)] + plain,
                                  args.steps) for name, attacked in attacks.items()}
    control = control_student(d, tok, plain, same, args.steps)
    refs = reference_students(d, teacher, tok, prompts, args.answers, args.steps, args.refs) if args.refs else [teacher]
    say(f"== 5 %: {n_m} marked + {len(plain)} unmarked answers, students {args.steps} steps, "
        f"{len(refs)} reference models, attribution among {CANDIDATES:,} (load {os.getloadavg()[0]:.1f}) ==")
    RESULTS["control"] = open_test(key, control, refs, rows)
    say(f"control student: {RESULTS['control']}")
    for name in attacks:
        RESULTS[name]["student"] = open_test(key, students[name][0], refs, rows)
        say(f"{name}: {json.dumps(RESULTS[name])}")
    # Pan et al.: neutralise the un-attacked student at inference, with the control as reference
    student = students["none"][0]
    held = prompts[args.answers : args.answers + NEUTRALISE_PROMPTS]
    own = generate(student, tok, [chat_prompt(p) for p in held], max_new_tokens=128, min_new_tokens=64, seed=11)
    bias = estimate_neutraliser(student, control, tok, [chat_prompt(p) + a for p, a in zip(held, own, strict=True)])
    closed_q = prompts[args.answers + NEUTRALISE_PROMPTS : args.answers + NEUTRALISE_PROMPTS + CLOSED_PROMPTS]
    res_n: dict[str, Any] = {}
    for label, procs, model in (("before", None, student),
                                ("after", [NeutralisingProcessor(bias)], NeutralisedModel(student, bias))):
        answers = generate(student, tok, [chat_prompt(p) for p in closed_q], max_new_tokens=128,
                           min_new_tokens=64, logits_processors=procs, seed=13)
        res_n[label] = {"closed": closed_p(key, tok, closed_q, answers), "open": open_test(key, model, refs, rows),
                        "answers_perplexity_ratio": perplexity(teacher, tok, closed_q, answers) / plain_ppl}
        say(f"neutraliser {label}: {json.dumps(res_n[label])}")
    res_n["contexts_estimated"] = int((bias != 0).any(dim=-1).sum())
    RESULTS["neutralised"] = res_n
    (d / "scrub-results.json").write_text(json.dumps(RESULTS, indent=1))
    write_docs(args, n_m, len(plain), args.refs)


def _p(log10: float) -> str:
    if not math.isfinite(log10):
        return "< 1e-300"  # below float range
    return f"{10 ** log10:.1e}" if log10 > -300 else f"1e{log10:.0f}"


def write_docs(args: argparse.Namespace, n_m: int, n_plain: int, n_refs: int) -> None:
    rows = []
    for name in ["none", "rules", *(f"resample {r:g}" for r in RESAMPLE_RATES)]:
        r = RESULTS[name]
        ds = r["dataset"]
        s = r.get("student")
        rows.append([name, f"{100 * r['words_changed']:.0f} %", f"{r['perplexity_ratio']:.2f}",
                     _p(ds["log10_p"]), _p(ds["attribution_log10_p"]),
                     *([_p(s["log10_p"]), _p(s["log10_p_with_account"]), _p(s["attribution_log10_p"])]
                       if s else ["not run"] * 3)])
    if "control" in RESULTS:
        c = RESULTS["control"]
        rows.append(["control student (unmarked answers)", "", "", "", "", _p(c["log10_p"]),
                     _p(c["log10_p_with_account"]), _p(c["attribution_log10_p"])])
    n = RESULTS.get("neutralised", {})
    for label in ("before", "after") if n else ():
        o = n[label]["open"]
        rows.append([f"Pan et al. neutraliser, {label}", "", f"{n[label]['answers_perplexity_ratio']:.2f}",
                     f"closed {_p(n[label]['closed']['log10_p'])}", "", _p(o["log10_p"]),
                     _p(o["log10_p_with_account"]), _p(o["attribution_log10_p"])])
    body = (
        f"{n_m} marked answers of one account + {n_plain} unmarked (5 %), students {args.steps} steps, "
        f"reference: {f'{n_refs} reference students' if n_refs else 'the teacher'}; the neutraliser's reference: "
        "the control student; gamma .25 / delta 2 / account delta 2 / h 1, one fixed key; "
        f"p-values are exact under H0; attribution = the harvesting account among {CANDIDATES:,} "
        "(Bonferroni). Target: student p <= 1e-3 and attribution <= 1e-3 after paraphrase.\n\n"
        + markdown_table(["attack on the harvested answers", "words changed", "perplexity / unmarked",
                          "dataset p", "dataset attribution p", "student p", "student p with account",
                          "student attribution p"], rows)
        + "\n\nPerplexity: under the teacher, of the attacked answers (or of the student's sampled answers "
        "for the neutraliser) over the unmarked answers'. Dataset p for the neutraliser: the closed test on "
        f"{CLOSED_PROMPTS} sampled answers."
    )
    write_section(__file__, "Scrubbing attacks (5 % contamination)", body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=Path("out/scrub/lab"))
    ap.add_argument("--answers", type=int, default=800)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--refs", type=int, default=2, help="reference students (0: the teacher is the reference)")
    ap.add_argument("--dataset-only", action="store_true", help="score the attacked datasets only (no students)")
    ap.add_argument("--train-only", metavar="ATTACK", help="train (or find) this attack's student (or ref-N: "
                    "reference students 1..N), then stop")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run(args)


if __name__ == "__main__":
    main()
