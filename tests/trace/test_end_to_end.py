"""End to end on the CPU: teacher -> harvest by accounts (through the gateway and in bulk) ->
students -> the dataset is attributed, the student is radioactive, the control is not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.localmodel import LocalModelConfig, generate, model_path, read_corpus_texts
from distillguard.trace import (
    query_openai_compatible,
    radioactivity_closed,
    radioactivity_open,
    trace_texts,
)
from distillguard.trace._experiment import (
    Harvested,
    chat_prompt,
    harvest_direct,
    harvest_via_gateway,
    train_student,
)
from distillguard.watermark import KeyVersion, WatermarkConfig, WatermarkKey

ACCOUNTS = ["acct-000007", "acct-000512", "acct-031337"]
CANDIDATES = [f"acct-{i:06d}" for i in range(50_000)]
# the closed test: answers the suspect endpoint samples (enough tuples for a decision either way)
CLOSED_PROMPTS = 120
CLOSED_TOKENS = 96
CLOSED_SEEDS: dict[str, int] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, teacher: tuple[Any, Any], corpora_dir: Path) -> dict[str, Any]:
    model, tok = teacher
    work = tmp_path_factory.mktemp("e2e")
    # a fixed secret keeps the test reproducible; tests elsewhere use fresh random keys
    key = WatermarkKey((KeyVersion(1, b"end-to-end-test-secret-32-bytes!", WatermarkConfig()),), 1)
    key_file = key.save(work / "wm.key")
    prompts = read_corpus_texts(["self_instruct_seed_tasks", "self_instruct_user_oriented"], 400, root=corpora_dir)[100:]
    via_gateway = harvest_via_gateway(
        key_file, {a: prompts[i * 2 : i * 2 + 2] for i, a in enumerate(ACCOUNTS)}, work, max_tokens=48
    )
    bulk = {a: prompts[20 + i * 20 : 40 + i * 20] for i, a in enumerate(ACCOUNTS)}
    marked = via_gateway + harvest_direct(model, tok, key, bulk, max_new_tokens=200)
    plain = harvest_direct(model, tok, None, bulk, max_new_tokens=200)
    return {
        "key": key, "key_file": key_file, "work": work, "marked": marked, "plain": plain,
        "gateway_rows": via_gateway,
        "student": train_student(tok, marked, steps=200),
        "control": train_student(tok, plain, steps=200),
        "reading": read_corpus_texts(["gsm8k"], 200, root=corpora_dir),
    }


def test_gateway_answers_are_marked_per_account(world: dict[str, Any], teacher: tuple[Any, Any]) -> None:
    rows: list[Harvested] = world["gateway_rows"]
    assert len(rows) == 6 and {r.account_id for r in rows} == set(ACCOUNTS)
    report = trace_texts(world["key"], [r.text for r in rows], tokenizer=teacher[1])
    assert report.layers[0].scored_tuples > 0 and report.log10_p < -2


def test_harvested_dataset_is_attributed(world: dict[str, Any], teacher: tuple[Any, Any]) -> None:
    rows: list[Harvested] = world["marked"]
    # Three harvesters share one small dataset (22 answers each), each named among 50,000
    # candidates at the attribution target, p <= 1e-3 after the Bonferroni factor (the
    # weakest of them sits near 4e-6, varying with the gateway's sampled answers).
    report = trace_texts(
        world["key"], [r.text for r in rows], tokenizer=teacher[1],
        prompts=[chat_prompt(r.prompt) for r in rows], candidates=CANDIDATES, alpha=1e-3,
    )
    assert report.p_value < 1e-30
    assert {a["account_id"] for a in report.accounts() if a["attributed"]} == set(ACCOUNTS), report.lines()
    plain = trace_texts(world["key"], [r.text for r in world["plain"]], tokenizer=teacher[1],
                        candidates=CANDIDATES)
    assert plain.p_value > 0.01 and plain.accounts() == []


def test_student_is_radioactive_and_control_is_not(world: dict[str, Any], teacher: tuple[Any, Any]) -> None:
    tok = teacher[1]
    student = radioactivity_open(world["key"], world["student"], tok, world["reading"])
    control = radioactivity_open(world["key"], world["control"], tok, world["reading"])
    assert student.p_value <= 1e-4, student.lines()
    assert control.p_value > 0.01, control.lines()
    assert all(p > 1e-4 for p in student.layers[0].controls)
    # reading what the accounts were served, scored on the tokens the student prefers over
    # the teacher (valid on marked text: each window at its first occurrence per text)
    served = [chat_prompt(r.prompt) + r.text for r in world["marked"]]
    student = radioactivity_open(world["key"], world["student"], tok, served, reference=teacher[0])
    control = radioactivity_open(world["key"], world["control"], tok, served, reference=teacher[0])
    assert student.p_value <= 1e-6, student.lines()
    assert control.p_value > 0.01, control.lines()


def test_trace_model_cli_open_and_closed(world: dict[str, Any], teacher: tuple[Any, Any]) -> None:
    tok = teacher[1]
    saved = world["work"] / "student"
    world["student"].save_pretrained(saved)
    tok.save_pretrained(saved)
    reading = world["work"] / "reading.jsonl"
    reading.write_text("".join(json.dumps({"text": t}) + "\n" for t in world["reading"]))
    res = CliRunner().invoke(
        app, ["trace", "model", "--local", str(saved), "--prompts", str(reading),
              "--watermark-key-file", str(world["key_file"]), "--json"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["p_value"] <= 1e-4 and out["scored_tuples"] > 50
    # reading the served answers against our own model (the teacher's cached folder)
    served = world["work"] / "served.jsonl"
    served.write_text("".join(json.dumps({"text": chat_prompt(r.prompt) + r.text}) + "\n" for r in world["marked"]))
    res = CliRunner().invoke(
        app, ["trace", "model", "--local", str(saved), "--prompts", str(served), "--reference",
              str(model_path(LocalModelConfig())), "--watermark-key-file", str(world["key_file"]), "--json"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["p_value"] <= 1e-6
    # several references (repeated): the teacher and a student of our own unmarked answers
    ours = world["work"] / "unmarked-student"
    world["control"].save_pretrained(ours)
    res = CliRunner().invoke(
        app, ["trace", "model", "--local", str(saved), "--prompts", str(served),
              "--reference", str(model_path(LocalModelConfig())), "--reference", str(ours),
              "--watermark-key-file", str(world["key_file"]), "--json"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["p_value"] <= 1e-6

    # closed: the student behind an OpenAI-compatible endpoint, answered by the real model; the
    # control student (trained on unmarked answers to the same prompts) behind the same endpoint
    # must show nothing. Sampling is seeded per prompt, so the test is deterministic.
    def endpoint(student: Any) -> httpx.MockTransport:
        def serve(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            prompt = body["messages"][0]["content"]
            text = generate(student, tok, [chat_prompt(prompt)], max_new_tokens=body["max_tokens"],
                            min_new_tokens=body["max_tokens"] // 2, temperature=body["temperature"],
                            seed=CLOSED_SEEDS[prompt])[0]
            return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": text}}]})

        return httpx.MockTransport(serve)

    prompts = world["reading"][:CLOSED_PROMPTS]
    CLOSED_SEEDS.update({p: i for i, p in enumerate(prompts)})
    results = {}
    for name in ("student", "control"):
        with httpx.Client(transport=endpoint(world[name])) as client:
            answers = query_openai_compatible(
                "http://suspect/v1", name, prompts, max_tokens=CLOSED_TOKENS, temperature=0.7, client=client
            )
        results[name] = radioactivity_closed(world["key"], answers, prompts, tokenizer=tok)
    assert results["student"].p_value <= 1e-3, results["student"].lines()
    assert results["control"].p_value > 1e-2, results["control"].lines()
