"""Reading what is traced: texts and datasets, candidate account lists."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from distillguard._errors import ConfigError

_JSONL = (".jsonl", ".jsonl.gz", ".json")


def _open_text(path: Path) -> str:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read()
    return path.read_text(encoding="utf-8")


def _read_jsonl(path: Path, texts: list[str], prompts: list[str]) -> None:
    for n, line in enumerate(_open_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} line {n} is not JSON ({exc}); give one object per line.") from exc
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise ConfigError(f"{path} line {n} has no string field 'text'; each line needs one.")
        texts.append(text)
        prompt = row.get("prompt")
        if isinstance(prompt, str) and prompt:
            prompts.append(prompt)


def load_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """(texts, prompts) of a text file, a JSONL dataset (`text`, optional `prompt`), or a folder.

    A folder is read recursively: every *.jsonl(.gz) as a dataset, every other
    regular file as one text.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist; give a text file, a JSONL dataset or a folder.")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    texts: list[str] = []
    prompts: list[str] = []
    for f in files:
        if f.name.startswith("."):
            continue
        if f.name.endswith(_JSONL):
            _read_jsonl(f, texts, prompts)
        else:
            texts.append(_open_text(f))
    if not texts:
        raise ConfigError(f"No texts found under {path}.")
    return texts, prompts


def load_candidates(path: str | Path) -> list[str]:
    """Candidate account ids: one per line, a JSONL file with `account_id`, or a traffic log folder."""
    path = Path(path)
    if path.is_dir():
        from distillguard.traffic import read_table

        for name in ("accounts", "events"):
            try:
                table = read_table(path, name, columns=["account_id"])
            except Exception:  # noqa: BLE001 - try the next table, then explain
                continue
            return sorted({str(a) for a in table.column("account_id").to_pylist() if a is not None})
        raise ConfigError(f"{path} holds no readable accounts or events table with account_id.")
    if not path.exists():
        raise ConfigError(f"Account list {path} does not exist.")
    ids: list[str] = []
    for line in _open_text(path).splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            ids.append(str(json.loads(line)["account_id"]))
        else:
            ids.append(line)
    return list(dict.fromkeys(ids))
