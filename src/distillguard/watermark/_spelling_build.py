"""Derives US/UK spelling pairs for the lexicon from breame's list (run once, offline).

    python -m distillguard.watermark._spelling_build BREAME_SPELLING_CONSTANTS_PY

The input is `breame/data/spelling_constants.py` of the PyPI package breame 0.1.2 (Charles
Pierse, https://github.com/cdpierse/breame, Apache License 2.0: `data/BREAME_LICENSE.txt`).
It is not shipped or read at run time: this prints the kept pairs as `breame` lines to append
to `data/synonyms_extra.tsv` (US spelling first). breame's list mixes systematic variants with
archaic forms ("connexion"), different words ("ton"/"tonne", "filter"/"philtre") and plain
errors, so a pair is kept only when the two spellings differ by one of the regular US/UK
patterns (`PATTERNS`), both are single lower-case words, neither is already a lexicon form or
a later word of one, and neither is in `EXCLUDE` (words with another sense or use the other
spelling lacks: units and devices, software terms that name functions or settings).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from distillguard.watermark._synonyms import GROUPS

# (US, UK) suffix rewrites: -ize/-ise (and -yze/-yse), -or/-our, -er/-re, a doubled l, -ense/-ence
PATTERNS: tuple[tuple[str, str], ...] = (
    (r"iz(e|ed|es|ing|ation|ations|er|ers|able)$", r"is\1"),
    (r"yz(e|ed|ing)$", r"ys\1"),
    (r"or(s|ed|ing|ful|ite|ites|able|ably|al)?$", r"our\1"),
    (r"([bcdt])er(s)?$", r"\1re\2"),
    (r"([aeiou])l(ed|ing|er|ers)$", r"\1ll\2"),
    (r"ense(s)?$", r"ence\1"),
)
EXCLUDE = frozenset(
    [
        # units, devices and measures the spelling tells apart in British English
        "meter",
        "meters",
        "liter",
        "liters",
        "gram",
        "grams",
        "ton",
        "tons",
        "caliber",
        # software terms (function, flag and API names: `normalize`, `initialize`, ...)
        "normalize",
        "normalized",
        "normalizes",
        "normalizing",
        "normalization",
        "initialize",
        "initialized",
        "initializes",
        "initializing",
        "initialization",
        "serialize",
        "serialized",
        "serializes",
        "serializing",
        "serialization",
        "deserialize",
        "deserialized",
        "tokenize",
        "tokenized",
        "tokenizes",
        "tokenizing",
        "tokenization",
        "tokenizer",
        "tokenizers",
        "sanitize",
        "sanitized",
        "sanitizes",
        "sanitizing",
        "sanitization",
        "vectorize",
        "vectorized",
        "vectorization",
        "parameterize",
        "parameterized",
        "randomize",
        "randomized",
        "randomization",
        "synchronize",
        "synchronized",
        "synchronizes",
        "synchronizing",
        "synchronization",
        "authorize",
        "authorized",
        "authorizes",
        "authorizing",
        "authorization",
        "unauthorized",
        "capitalize",
        "capitalized",
        "capitalizes",
        "capitalizing",
        "localize",
        "localized",
        "localization",
        "virtualize",
        "virtualized",
        "virtualization",
        "containerize",
        "containerized",
        "quantize",
        "quantized",
        "quantization",
        "memoize",
        "memoized",
        "discretize",
        "discretized",
        "lemmatize",
        "lemmatization",
        "finalizer",
        "analyzer",
        "analyzers",
        "analyses",
        "marshaling",
        "marshaled",
        "channeling",
        "channeled",
        # a different word or sense in either spelling
        "license",
        "licensed",
        "licenses",
        "licensing",
        "practice",
        "practices",
        "practiced",
        "tenor",
        "honors",
        "humors",
        "dialog",
        "dialogs",
        "program",
        "programs",
        "check",
        "draft",
        "disk",
        "tire",
        "curb",
        "story",
        "fiber",
        "fibered",
        "councilor",
        "counselor",
        "enamored",
        "moldy",
        "mold",
    ]
)
MIN_LEN = 4


def _regular(us: str, uk: str) -> bool:
    return any(re.search(p, us) and re.sub(p, r, us) == uk for p, r in PATTERNS)


def build(constants: Path) -> list[tuple[str, str]]:
    tables = {
        node.targets[0].id: ast.literal_eval(node.value)  # type: ignore[attr-defined]
        for node in ast.parse(constants.read_text(encoding="utf-8")).body
        if isinstance(node, ast.Assign)
    }
    uk_to_us: dict[str, str] = tables["BRITISH_ENGLISH_SPELLINGS"]
    forms = {w.lower() for g in GROUPS for m in g.members for w in m}
    used: set[str] = set()
    pairs = []
    for uk, us in sorted(uk_to_us.items(), key=lambda kv: kv[1]):
        words = (us, uk)
        if (
            not all(w.isalpha() and w.islower() and len(w) >= MIN_LEN for w in words)
            or any(w in forms or w in EXCLUDE or w in used for w in words)
            or not _regular(us, uk)
        ):
            continue
        used.update(words)
        pairs.append((us, uk))
    return pairs


def main() -> None:
    for us, uk in build(Path(sys.argv[1])):
        print(f"breame\t{us}\t{uk}")


if __name__ == "__main__":
    main()
