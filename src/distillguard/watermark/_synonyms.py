"""Keyed-choice groups of the lexical watermark: synonym pairs, spellings, contractions.

`PAIRS`: the first table, chosen to be interchangeable in almost any sentence where
either appears: same part of speech, same inflection, no common second sense that
the other word lacks (so "hard"/"difficult", "use"/"utilize", "odd"/"strange" are
left out). `data/synonyms_extra.tsv` appends more groups after them (group ids are
positions, so that file only grows): pairs derived from WordNet 3.0 and reviewed,
pairs added by hand, -ize/-ise spellings, contractions (a member of one or two
words; see the file's header for the rules) and US/UK spelling pairs derived from breame
(`_spelling_build.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

PAIRS: tuple[tuple[str, str], ...] = (
    ("often", "frequently"),
    ("usually", "typically"),
    ("quickly", "rapidly"),
    ("maybe", "perhaps"),
    ("mostly", "mainly"),
    ("entirely", "completely"),
    ("nearly", "almost"),
    ("certainly", "definitely"),
    ("essential", "crucial"),
    ("huge", "enormous"),
    ("big", "large"),
    ("choose", "select"),
    ("begin", "commence"),
    ("happy", "glad"),
    ("sad", "unhappy"),
    ("smart", "clever"),
    ("rich", "wealthy"),
    ("various", "diverse"),
    ("therefore", "hence"),
    ("furthermore", "moreover"),
    ("demonstrate", "illustrate"),
    ("demonstrates", "illustrates"),
    ("modify", "alter"),
    ("modifies", "alters"),
    ("modified", "altered"),
    ("precisely", "exactly"),
    ("rarely", "seldom"),
    ("immediately", "instantly"),
    ("vast", "immense"),
    ("beautiful", "lovely"),
    ("strange", "weird"),
    ("obviously", "clearly"),
    ("primarily", "chiefly"),
    ("currently", "presently"),
    ("initially", "originally"),
    ("eventually", "ultimately"),
    ("approximately", "roughly"),
    ("ability", "capability"),
    ("advantages", "benefits"),
    ("problems", "issues"),
    ("story", "tale"),
    ("couch", "sofa"),
    ("movie", "film"),
    ("movies", "films"),
    ("fantastic", "excellent"),
    ("wonderful", "marvelous"),
    ("terrible", "awful"),
    ("afraid", "scared"),
    ("explain", "clarify"),
    ("explains", "clarifies"),
    ("extremely", "exceedingly"),
    ("really", "truly"),
    ("recently", "lately"),
    ("carefully", "cautiously"),
    ("amazing", "astonishing"),
    ("attempted", "tried"),
    ("thoughtful", "considerate"),
    ("rapid", "swift"),
    ("purchase", "buy"),
    ("additionally", "also"),
    ("difficult", "challenging"),
    ("reduce", "decrease"),
    ("reduces", "decreases"),
    ("ensure", "guarantee"),
    ("helps", "assists"),
    ("shows", "displays"),
    ("fast", "quick"),
    ("easily", "readily"),
    ("significant", "substantial"),
    ("finally", "lastly"),
)

# Pairs of the first table that change meaning too often ("finally anchor" is not "lastly
# anchor", "a purchase decision" is not "a buy decision"): their group ids stay reserved,
# but nothing is marked or read with them.
RETIRED = frozenset({("finally", "lastly"), ("purchase", "buy")})

# rule values (data/synonyms_extra.tsv, 4th column)
RULE_NONE = ""
RULE_NO_PRONOUN = "nopron"  # not before a pronoun: "Don't you" -> "Do not you" is wrong
RULE_CONTINUES = "cont"  # only before a lower-case word: "I am going", never "who I am."
RULE_BE = "be"  # RULE_CONTINUES, and "it's" must not stand for "it has" ("it's been")
RULE_LEAD = "lead"  # only opening a sentence, before a comma: "First," / "Firstly,"
RULE_LEAD_BE = "leadbe"  # RULE_BE, opening a sentence: "Here is" / "Here's" ("the potential here is")
RULE_PERFECT = "perf"  # RULE_CONTINUES, before a past participle: "I have seen" / "I've seen"
# RULE_CONTINUES, before no participle or adverb that "had" could govern ("I'd seen", "I'd
# already") nor "better" ("you'd better" is "you had better")
RULE_WOULD = "would"
RULE_NO_DETERMINER = "nodet"  # not after a determiner: "a while", "the learned" stay
_RULES = {
    RULE_NONE, RULE_NO_PRONOUN, RULE_CONTINUES, RULE_BE, RULE_LEAD, RULE_LEAD_BE, RULE_PERFECT,
    RULE_WOULD, RULE_NO_DETERMINER,
}
# past participles that do not end in "-ed" (RULE_PERFECT, RULE_WOULD)
_PARTICIPLES = (
    """been done seen made had got gotten gone taken given found written known shown become come
    run put set read left heard built brought bought thought told said sent spent kept lost met
    paid won begun chosen driven eaten fallen forgotten held hidden learnt meant grown drawn
    understood felt caught taught fought sought led stood struck sold shut cut hit let hurt spoken
    stolen thrown worn broken frozen risen ridden shaken flown blown dealt slept swept dug hung
    spun stuck beaten bitten proven sunk sung swum drunk rung overcome undergone withdrawn laid
    sat fed fled lit slid spread burst cast cost quit bet upset forbidden forgiven mistaken
    undertaken arisen torn"""
)
PARTICIPLES = frozenset(_PARTICIPLES.split())
# "-ed" words that are no participle ("I'd need")
_NOT_PARTICIPLES = "need feed speed proceed succeed exceed bed red shed bleed breed seed weed heed indeed"
NOT_PARTICIPLES = frozenset(_NOT_PARTICIPLES.split())
# adverbs that sit between "had" and its participle ("I'd already left"): RULE_WOULD stops there
_PERFECT_ADVERBS = "already just never always ever recently previously since better"
PERFECT_ADVERBS = frozenset(_PERFECT_ADVERBS.split())
# RULE_NO_DETERMINER: the words before a noun use ("for a while", "all the while", "worth while")
_DETERMINERS = "a an the this that these those my your our their his her its each every some any no worth once most quite very"
DETERMINERS = frozenset(_DETERMINERS.split())


def is_participle(word: str) -> bool:
    """A past participle by its form: "-ed" or a listed irregular one (lower case)."""
    return word in PARTICIPLES or (word.endswith("ed") and word not in NOT_PARTICIPLES)
_KINDS = {"core", "wordnet", "manual", "spelling", "contraction", "breame"}
EXTRA_FILE = "synonyms_extra.tsv"


@dataclass(frozen=True)
class Group:
    """Two interchangeable forms; each member is a tuple of words (one or two)."""

    members: tuple[tuple[str, ...], tuple[str, ...]]
    kind: str
    rule: str = RULE_NONE


def _load_extra() -> list[Group]:
    text = resources.files("distillguard.watermark").joinpath("data", EXTRA_FILE).read_text("utf-8")
    groups = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) not in (3, 4) or fields[0] not in _KINDS:
            raise RuntimeError(f"{EXTRA_FILE} line {n}: want kind<TAB>a<TAB>b[<TAB>rule], got {line!r}")
        rule = fields[3] if len(fields) == 4 else RULE_NONE
        if rule not in _RULES:
            raise RuntimeError(f"{EXTRA_FILE} line {n}: unknown rule {rule!r}")
        a, b = (tuple(m.split(" ")) for m in fields[1:3])
        groups.append(Group((a, b), fields[0], rule))
    return groups


def _index(groups: list[Group]) -> dict[str, list[tuple[int, int]]]:
    """First word (lower case) -> (group, member) starting with it, longest member first."""
    by_first: dict[str, list[tuple[int, int]]] = {}
    owner: dict[tuple[str, ...], int] = {}
    inner = {w.lower() for g in groups for m in g.members for w in m[1:]}
    for gi, g in enumerate(groups):
        if tuple(m[0] for m in g.members) in RETIRED and g.kind == "core":
            continue
        for mi, member in enumerate(g.members):
            if member in owner:  # pragma: no cover - guards the tables
                raise RuntimeError(f"lexical form {' '.join(member)!r} is in two groups")
            if len(member) == 1 and member[0].lower() in inner:  # pragma: no cover
                # a replacement could then join the next word into another group's form
                raise RuntimeError(f"{member[0]!r} is also a later word of a longer form")
            owner[member] = gi
            by_first.setdefault(member[0].lower(), []).append((gi, mi))
    for entries in by_first.values():
        entries.sort(key=lambda e: -len(groups[e[0]].members[e[1]]))
    return by_first


GROUPS: tuple[Group, ...] = tuple(
    [Group(((a,), (b,)), "core") for a, b in PAIRS] + _load_extra()
)
BY_FIRST: dict[str, list[tuple[int, int]]] = _index(list(GROUPS))
# every word some lexicon form or count choice writes (lower case): a rewording of the choices
# changes only these, so the "stable" context skips them
CHOICE_WORDS: frozenset[str] = frozenset(
    [w.lower() for g in GROUPS for m in g.members for w in m]
    + ["two", "three", "four", "five", "six", "seven", "eight", "nine", "percent"]
)
# the old single-word index (kept for callers of the first table)
GROUP: dict[str, int] = {w: i for i, pair in enumerate(PAIRS) for w in pair}
