"""`distillguard trace text` and `distillguard watermark keygen|rotate` through typer's runner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.localmodel import generate, read_corpus_texts
from distillguard.trace._experiment import chat_prompt
from distillguard.watermark import KeyVersion, WatermarkConfig, WatermarkKey

runner = CliRunner()


def _keygen(tmp_path: Path) -> Path:
    out = tmp_path / "wm.key"
    res = runner.invoke(app, ["watermark", "keygen", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _fixed_key_file(tmp_path: Path) -> Path:
    """A key with a fixed secret: the statistical assertions below then hold in every run."""
    secret = hashlib.sha256(b"distillguard-test-cli-key").digest()
    return WatermarkKey((KeyVersion(1, secret, WatermarkConfig()),), active=1).save(tmp_path / "wm.key")


def test_keygen_refuses_overwrite_and_rotates(tmp_path: Path) -> None:
    out = _keygen(tmp_path)
    again = runner.invoke(app, ["watermark", "keygen", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    res = runner.invoke(app, ["watermark", "rotate", str(out)])
    assert res.exit_code == 0 and WatermarkKey.load(out).active == 2


def test_trace_text_json_names_the_accounts(
    tmp_path: Path, teacher: tuple[Any, Any], prompts: list[str], corpora_dir: Path
) -> None:
    key_file = _fixed_key_file(tmp_path)
    key = WatermarkKey.load(key_file)
    model, tok = teacher
    rows = []
    for account, chunk in (("acct-17", prompts[:10]), ("acct-99", prompts[10:20])):
        texts = generate(
            model, tok, [chat_prompt(p) for p in chunk], max_new_tokens=200, min_new_tokens=200,
            logits_processors=[key.logits_processor(account)], seed=5,
        )
        rows += [{"prompt": chat_prompt(p), "text": t} for p, t in zip(chunk, texts, strict=True)]
    dataset = tmp_path / "harvest.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("".join(f"acct-{i}\n" for i in range(2000)))
    res = runner.invoke(
        app,
        ["trace", "text", str(dataset), "--watermark-key-file", str(key_file),
         "--accounts", str(accounts), "--json", "--alpha", "1e-4"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["p_value"] < 1e-20 and out["scored_tuples"] > 1000
    assert {"account_id", "p_value"} <= set(out["accounts"][0])
    named = {a["account_id"] for a in out["accounts"] if a["attributed"]}
    assert named == {"acct-17", "acct-99"}
    assert all(c["p_value"] > 1e-4 for c in out["layers"][0]["controls"])

    # the same check on plain corpus text: not ours, nobody attributed
    plain = tmp_path / "plain.jsonl"
    texts = read_corpus_texts(["wildchat_1k"], 40, root=corpora_dir)
    plain.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    res = runner.invoke(
        app, ["trace", "text", str(plain), "--watermark-key-file", str(key_file),
              "--accounts", str(accounts), "--json"],
    )
    out = json.loads(res.stdout)
    assert out["p_value"] > 1e-3 and not any(a["attributed"] for a in out["accounts"])


def test_short_text_and_bad_key_are_clear(tmp_path: Path) -> None:
    key_file = _keygen(tmp_path)
    short = tmp_path / "short.txt"
    short.write_text("Hello there.")
    res = runner.invoke(app, ["trace", "text", str(short), "--watermark-key-file", str(key_file)])
    assert res.exit_code == 0 and "not enough scored tokens" in res.output
    res = runner.invoke(
        app, ["trace", "text", str(short), "--watermark-key-file", str(tmp_path / "nope.key")]
    )
    assert res.exit_code == 2 and "keygen" in res.output and "Traceback" not in res.output
