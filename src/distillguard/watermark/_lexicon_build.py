"""Builds the shipped synonym lexicon from a WordNet 3.0 `dict` folder (run once, offline).

    python -m distillguard.watermark._lexicon_build WORDNET_DICT_DIR

The WordNet files are not shipped or read at run time: only the pairs this writes
(`data/synonyms_wordnet.tsv`, with WordNet's licence beside it). A pair (a, b) is
kept when it is safe to swap without reading the sentence:

- a and b share a synset that is the dominant sense of each word over *all* parts
  of speech (SemCor tag counts in `index.sense`: at least `MIN_DOMINANCE` of the
  word's tagged uses), so "fast" (adjective and verb) or "hard" are left out;
- each word is seen at least `MIN_TAGS` times (not a rare word in place of a common
  one) and neither is more than `MAX_FREQ_RATIO` times as common as the other;
- single lower-case words of at least `MIN_LEN` letters, same first-sound class so
  "a"/"an" before them stays right, none in `EXCLUDE`;
- each word in one pair only (the most tagged pair wins).

Nouns also get their plural pair when both take a plain "s".
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

MIN_DOMINANCE = 0.6
MIN_TAGS = 3
MAX_FREQ_RATIO = 12.0
MIN_LEN = 3
POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
# Words whose WordNet-dominant sense still has a common use the pair lacks (checked by hand).
EXCLUDE = frozenset(
    ["bill", "check", "close", "content", "fine", "kind", "lead", "live", "mean", "means", "mind", "minute", "object", "present", "rest", "right", "set", "spring", "stay", "still", "subject", "well", "will", "even", "just", "like", "last", "long", "own"]
)
_VOWELS = set("aeio")
_AMBIGUOUS_START = set("huy")
OUT = Path(__file__).with_name("data") / "synonyms_wordnet.tsv"


def _sound_class(word: str) -> str | None:
    """'v' or 'c' for the article before it; None where spelling does not tell ("hour", "unit")."""
    if word[0] in _AMBIGUOUS_START or word.startswith(("one", "eu")):
        return None
    return "v" if word[0] in _VOWELS else "c"


def _plural(word: str) -> str | None:
    if word.endswith(("s", "x", "z", "ch", "sh", "y", "f", "fe", "o", "man")):
        return None
    return word + "s"


def build(dict_dir: Path) -> list[tuple[str, str, str]]:
    total: dict[str, int] = defaultdict(int)
    per_sense: dict[tuple[str, str, str], int] = {}
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    for line in (dict_dir / "index.sense").read_text(encoding="utf-8").splitlines():
        key, offset, _num, tags = line.split()
        lemma, rest = key.split("%", 1)
        pos = POS[rest[0]]
        total[lemma] += int(tags)
        per_sense[(lemma, pos, offset)] = per_sense.get((lemma, pos, offset), 0) + int(tags)
        members[(pos, offset)].append(lemma)

    def safe(word: str, pos: str, offset: str) -> bool:
        t = total[word]
        return (
            word.isalpha()
            and word.islower()
            and len(word) >= MIN_LEN
            and word not in EXCLUDE
            and t >= MIN_TAGS
            and per_sense[(word, pos, offset)] >= MIN_DOMINANCE * t
        )

    candidates: list[tuple[int, str, str, str]] = []
    for (pos, offset), words in members.items():
        ok = sorted({w for w in words if safe(w, pos, offset)}, key=lambda w: (-total[w], w))
        for i, a in enumerate(ok):
            for b in ok[i + 1 :]:
                hi, lo = max(total[a], total[b]), min(total[a], total[b])
                if hi > MAX_FREQ_RATIO * lo or _sound_class(a) is None or _sound_class(a) != _sound_class(b):
                    continue
                candidates.append((lo, pos, a, b))
    used: set[str] = set()
    pairs: list[tuple[str, str, str]] = []
    for _lo, pos, a, b in sorted(candidates, key=lambda c: (-c[0], c[2], c[3])):
        forms = [(a, b)]
        if pos == "n" and (pa := _plural(a)) and (pb := _plural(b)):
            forms.append((pa, pb))
        if any(w in used for f in forms for w in f):
            continue
        for x, y in forms:
            used.update((x, y))
            pairs.append((pos, x, y))
    return pairs


def main() -> None:
    pairs = build(Path(sys.argv[1]))
    lines = ["# pos\tword\tword  (derived from WordNet 3.0, see WORDNET_LICENSE.txt)"]
    lines += [f"{p}\t{a}\t{b}" for p, a, b in pairs]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(pairs)} pairs -> {OUT}")


if __name__ == "__main__":
    main()
