"""Locate and load the prompt corpora (shipped in distillguard/data/corpora) the simulator draws its texts from."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from distillguard._data import CORPORA_ENV, PACKAGED_CORPORA
from distillguard._errors import ScenarioError

BENIGN_SETS = (
    "wildchat_1k",
    "sharegpt_1k",
    "arena_hard",
    "bfcl_live",
    "self_instruct_user_oriented",
    "wizardlm_testset",
)
DISTILL_SETS = (
    "alpaca_5k",
    "self_instruct_seed_tasks",
    "code_alpaca",
    "gsm8k",
    "humaneval",
    "mbpp",
    "bfcl_curated",
)
# The sets the default scenario and the tests use: MIT, Apache-2.0, CC BY or ODC-BY
# (data/corpora/README.md). Every one is required.
PERMISSIVE_SETS = (
    "wildchat_1k",
    "arena_hard",
    "bfcl_live",
    "self_instruct_user_oriented",
    "self_instruct_seed_tasks",
    "gsm8k",
    "humaneval",
    "mbpp",
    "bfcl_curated",
)
# Sets used only when a scenario names them in `opt_in_corpora`; loaded when their file is
# present (the wheel leaves the non-commercial ones out), and their licence is printed when used.
# ShareGPT's conversations were shared by their users with no licence stated, so the content
# grants no permission to reuse it: it is opt-in like the non-commercial sets.
OPT_IN_LICENCES = {
    "alpaca_5k": "CC BY-NC 4.0 (non-commercial use only; Stanford Alpaca data)",
    "code_alpaca": "CC BY-NC 4.0 (non-commercial use only; Code Alpaca data)",
    "wizardlm_testset": "CC BY-NC 4.0 (non-commercial use only; WizardLM data)",
    "sharegpt_1k": "no stated licence (ShareGPT conversations shared by their users; the sample's repository is MIT)",
}
ENV_VAR = CORPORA_ENV


def find_corpora(explicit: str | Path | None = None) -> Path:
    """Find the corpora folder.

    Order: `explicit`, then the environment variable `DISTILLGUARD_CORPORA`, then the copy that
    ships inside the package (`distillguard/data/corpora`).

    Raises:
        ScenarioError: when the chosen folder does not hold templates.json and the text sets.
    """
    def ok(p: Path) -> bool:
        return (p / "templates.json").is_file() and (p / "wildchat_1k.jsonl.gz").is_file()

    # an explicit choice (argument or environment) is used as given, never silently replaced
    env = os.environ.get(ENV_VAR)
    for given, what in ((explicit, "The corpora folder given"), (env, f"${ENV_VAR}")):
        if given is not None and given != "":
            p = Path(given)
            if not ok(p):
                raise ScenarioError(
                    f"{what} ({p}) does not hold the prompt corpora (templates.json and the "
                    "*.jsonl.gz sets of distillguard/data/corpora); point it at such a folder."
                )
            return p
    if ok(PACKAGED_CORPORA):
        return PACKAGED_CORPORA
    raise ScenarioError(
        f"The prompt corpora that ship with distillguard are missing from {PACKAGED_CORPORA}; "
        f"reinstall the package or set {ENV_VAR} to a folder that holds them."
    )


def _read_jsonl_gz(path: Path) -> list[dict[str, object]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError) as exc:
        raise ScenarioError(
            f"The corpus file {path} cannot be read ({exc}); restore it from the distillguard package (data/corpora)."
        ) from exc


@dataclass
class Corpora:
    """The corpora's texts, templates and request-level traces, loaded into memory (~4 MB)."""

    root: Path
    texts: dict[str, list[str]] = field(default_factory=dict)
    categories: dict[str, list[str | None]] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    # Token counts from the real traces (calibration): arrays of ints.
    conv_context: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    conv_generated: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    code_context: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    code_generated: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mooncake_input: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mooncake_output: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Seconds between a conversation's turns in the Mooncake trace (see `turn_gaps`).
    turn_gaps_s: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    def set_texts(self, name: str) -> list[str]:
        """The texts of set `name`; a clear error when it was not loaded (an opt-in set the
        scenario did not name, or a corpus that does not exist)."""
        if name not in self.texts:
            raise ScenarioError(
                f"The corpus {name!r} is not loaded: permissive sets are {list(PERMISSIVE_SETS)}; "
                f"opt-in sets ({sorted(OPT_IN_LICENCES)}) need `opt_in_corpora = [{name!r}]` in the scenario "
                "and their file in the corpora folder."
            )
        return self.texts[name]

    def where(self, name: str, category: str | None) -> list[str]:
        """Texts of set `name` whose category equals (or starts with) `category`."""
        cats = self.categories[name]
        return [
            t
            for t, c in zip(self.texts[name], cats, strict=True)
            if c is not None and (c == category or c.startswith(f"{category}"))
        ]


def load_corpora(root: str | Path | None = None) -> Corpora:
    """Load every permissive text set (required), the opt-in sets whose files are present,
    templates.json and the two metadata traces."""
    path = find_corpora(root)
    corp = Corpora(root=path)
    for name in (*PERMISSIVE_SETS, *OPT_IN_LICENCES):
        f = path / f"{name}.jsonl.gz"
        if not f.is_file():
            if name in OPT_IN_LICENCES:
                continue  # opt-in: a scenario that names it gets a clear error (Corpora.set_texts)
            raise ScenarioError(
                f"The corpus file {f} is missing; the simulator needs every permissively licensed set "
                f"({', '.join(PERMISSIVE_SETS)}), as shipped in distillguard/data/corpora."
            )
        rows = _read_jsonl_gz(f)
        corp.texts[name] = [str(r["text"]) for r in rows]
        corp.categories[name] = [None if r.get("category") is None else str(r["category"]) for r in rows]
    try:
        tmpl = json.loads((path / "templates.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{path / 'templates.json'} cannot be read ({exc}).") from exc
    corp.templates = {str(t["id"]): str(t["text"]) for t in tmpl}

    conv_c, conv_g, code_c, code_g = [], [], [], []
    for r in _read_jsonl_gz(path / "azure_llm_meta.jsonl.gz"):
        if str(r["trace"]).endswith("code"):
            code_c.append(int(str(r["context_tokens"])))
            code_g.append(int(str(r["generated_tokens"])))
        else:
            conv_c.append(int(str(r["context_tokens"])))
            conv_g.append(int(str(r["generated_tokens"])))
    corp.conv_context = np.asarray(conv_c, np.int64)
    corp.conv_generated = np.asarray(conv_g, np.int64)
    corp.code_context = np.asarray(code_c, np.int64)
    corp.code_generated = np.asarray(code_g, np.int64)
    mi, mo = [], []
    moon = _read_jsonl_gz(path / "mooncake_meta.jsonl.gz")
    for r in moon:
        mi.append(int(str(r["input_length"])))
        mo.append(int(str(r["output_length"])))
    corp.mooncake_input = np.asarray(mi, np.int64)
    corp.mooncake_output = np.asarray(mo, np.int64)
    corp.turn_gaps_s = turn_gaps(moon)
    return corp


def turn_gaps(rows: list[dict[str, object]]) -> np.ndarray:
    """Gaps between turns of one conversation in a Mooncake trace, in seconds.

    A request whose prefix blocks (`hash_ids`) extend an earlier request's blocks continues that
    conversation; the time since the latest such request is one turn gap (generation, reading
    and typing together). Only continuations that add a whole 512-token block are seen, and the
    trace spans one hour, so long gaps are under-represented.
    """
    seen: dict[tuple[int, ...], float] = {}
    gaps: list[float] = []
    for r in sorted(rows, key=lambda r: float(str(r["timestamp_ms"]))):
        t = float(str(r["timestamp_ms"])) / 1000
        h = tuple(int(x) for x in r["hash_ids"])  # type: ignore[attr-defined]
        for k in range(len(h) - 1, 1, -1):
            if h[:k] in seen:
                if t > seen[h[:k]]:
                    gaps.append(t - seen[h[:k]])
                break
        for k in range(2, len(h) + 1):
            seen[h[:k]] = t
    return np.asarray(gaps, np.float64)


def parse_ts(value: str) -> datetime:
    """Parse an ISO-8601 timestamp (used by the scenario)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
