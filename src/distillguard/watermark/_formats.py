"""Keyed choices of the lexical watermark that are not lexicon groups: formatting and punctuation.

Each has a fixed id in its own range (`FORMAT_BASE` and up), so growing the lexicon (whose
group ids are positions in `_synonyms.GROUPS`) never moves them: a key's marks stay the same.
Ids are never reused; a retired choice keeps its id reserved.

- `APOSTROPHE`: an inner apostrophe no lexicon group claims ("model's"): `'` or `’`.
- `DASH`: an em dash between two words, unspaced ("a—b") or spaced ("a — b").
- `BULLET`: a list's bullets, `-` or `*` (one choice per list: the first bullet decides and the
  rest of the list follows it, since changing the bullet starts a new Markdown list).
- `ORDERED`: an ordered list's markers, `1.` or `1)` (one choice per list, likewise).
- `ABBREVIATION`: "e.g." / "i.e." with or without the comma after it.
- `NUMBER_WORD`: a small count in prose, "3 steps" or "three steps".
- `THOUSANDS`: a count of five or more digits in prose, "10000 users" or "10,000 users".
- `QUOTES`: a double-quoted span opening before a word, straight ("a") or curly (“a”); its
  closing quote (the next one after a non-space, in the paragraph) follows the opening's style.
- `SERIAL_COMMA`: a list of three or more ending "B and C" or "B, and C" (`_serial` says where).
- `PERCENT`: a percentage in prose, "50%" or "50 percent".
- `RANGE_DASH`: a range of whole numbers in prose, "5-10" or "5–10" (en dash).
- `ELLIPSIS`: an ellipsis after a word, three full stops or one "…".
- `BOLD_COLON`: a Markdown bold label's colon inside or outside its closing stars, "**Note:**"
  or "**Note**:".
- `SENTENCE_SPACE`: the space between two sentences on one line, one space or two ("ends. The" or
  "ends.  The"): after ".", "!" or "?" that follows a word (not a listed abbreviation such as
  "Dr." or "vs."), before a capitalised word. Markdown and HTML render both alike; raw text
  (what an API returns and a harvester stores) keeps it.
"""

from __future__ import annotations

import re

FORMAT_BASE = 1 << 32
APOSTROPHE = FORMAT_BASE + 0
DASH = FORMAT_BASE + 1
BULLET = FORMAT_BASE + 2
ORDERED = FORMAT_BASE + 3
ABBREVIATION = FORMAT_BASE + 4
NUMBER_WORD = FORMAT_BASE + 5
THOUSANDS = FORMAT_BASE + 6
QUOTES = FORMAT_BASE + 7
SERIAL_COMMA = FORMAT_BASE + 8
PERCENT = FORMAT_BASE + 9
RANGE_DASH = FORMAT_BASE + 10
ELLIPSIS = FORMAT_BASE + 11
BOLD_COLON = FORMAT_BASE + 12
SENTENCE_SPACE = FORMAT_BASE + 13
FORMATS: frozenset[int] = frozenset(
    {
        APOSTROPHE, DASH, BULLET, ORDERED, ABBREVIATION, NUMBER_WORD, THOUSANDS, QUOTES,
        SERIAL_COMMA, PERCENT, RANGE_DASH, ELLIPSIS, BOLD_COLON, SENTENCE_SPACE,
    }
)

APOSTROPHES = ("'", "’")
EM_DASH = "—"
OPENING_QUOTES = ('"', "“")
CLOSING_QUOTES = ('"', "”")
BULLETS = ("-", "*")
ORDERED_MARKER = re.compile(r"(\d{1,3})([.)])")
ORDERED_DELIMITERS = (".", ")")
# "e.g." / "i.e." (optionally after "(" and before ","), split from their chunk so that they are
# neither code-like (`a.b`) nor glued to their comma
ABBREVIATION_CHUNK = re.compile(r"(\(?)([EeIi]\.[gGeE]\.)(,?)")
ABBREVIATIONS = frozenset(["e.g.", "i.e.", "E.g.", "I.e."])

NUMBER_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS = tuple(str(n) for n in range(2, 10))
# a count is spelled either way only before a plural noun in prose; these nouns are units or
# operations ("5 ms", "3 times 4"), where digits are the only right form
UNIT_WORDS = frozenset(
    [
        "ms",
        "mins",
        "secs",
        "hrs",
        "yrs",
        "lbs",
        "kgs",
        "cms",
        "mms",
        "kms",
        "gbs",
        "mbs",
        "kbs",
        "tbs",
        "pts",
        "dpi",
        "rpms",
        "times",
        "bits",
        "bytes",
        "px",
        "ems",
        "rems",
        "vs",
    ]
)
# words after which a number is a label, part of a range or of arithmetic ("step 3", "2 or 3
# days", "x plus 3 apples"): its digits stay
NUMBER_LABEL_WORDS = frozenset(
    [
        "version",
        "step",
        "chapter",
        "page",
        "section",
        "figure",
        "fig",
        "table",
        "level",
        "grade",
        "line",
        "row",
        "column",
        "item",
        "part",
        "phase",
        "stage",
        "round",
        "day",
        "week",
        "month",
        "year",
        "season",
        "episode",
        "act",
        "verse",
        "rule",
        "option",
        "question",
        "problem",
        "exercise",
        "example",
        "lesson",
        "unit",
        "type",
        "class",
        "category",
        "tier",
        "rank",
        "number",
        "no",
        "plus",
        "minus",
        "times",
        "divided",
        "multiplied",
        "by",
        "over",
        "equals",
        "or",
        "and",
        "to",
        "through",
        "between",
        "from",
        "than",
        "of",
        "is",
        "are",
        "was",
        "were",
        "be",
        "at",
        "top",
        "python",
        "gpt",
        "ios",
        "windows",
        "port",
        "zip",
        "code",
        "id",
        "pin",
        "room",
        "flight",
        "route",
        "error",
        "status",
        "model",
        "serial",
        "account",
        "order",
        "ticket",
    ]
)
COUNT_DIGITS = re.compile(r"\$?[1-9]\d{4,11}")
COUNT_GROUPED = re.compile(r"\$?[1-9]\d{0,2}(?:,\d{3}){1,3}")
MIN_THOUSANDS_DIGITS = 5


def group_thousands(number: str) -> str:
    """ "12345" -> "12,345" (a leading "$" kept)."""
    sign, digits = ("$", number[1:]) if number.startswith("$") else ("", number)
    return sign + f"{int(digits):,}"


def is_count(number: str) -> bool:
    """A whole count written in either form with at least MIN_THOUSANDS_DIGITS digits."""
    if COUNT_DIGITS.fullmatch(number):
        return True
    return (
        bool(COUNT_GROUPED.fullmatch(number))
        and sum(c.isdigit() for c in number) >= MIN_THOUSANDS_DIGITS
    )


# a figure may carry one closing punctuation mark: "50%," "5-10." "wait...?"
_CLOSE = r"([,.;:!?)]?)"
PERCENT_SIGN = re.compile(r"(\d{1,3}(?:\.\d{1,2})?)%" + _CLOSE)
PERCENT_NUMBER = re.compile(r"\d{1,3}(?:\.\d{1,2})?")
PERCENT_WORD = "percent"
RANGE = re.compile(r"(\d{1,4})([-–])(\d{1,4})" + _CLOSE)
RANGE_DASHES = ("-", "–")
ELLIPSIS_MARK = re.compile(r"(\.\.\.|…)([,;:!?)]?)")
ELLIPSES = ("...", "…")
BOLD_COLONS = (":**", "**:")
SENTENCE_SPACES = (" ", "  ")
SENTENCE_MARKS = frozenset([".", "!", "?"])
# words whose full stop is an abbreviation's, not a sentence's end ("Dr. Smith", "vs. Python"):
# no sentence space after them (compared in lower case); a single letter may be an initial
_ABBREVIATED = (
    """mr mrs ms mme messrs dr prof st mt ft jr sr lt maj gen col sgt capt gov sen rep pres rev hon
    vs cf al fig figs no nos approx incl esp resp ca ed eds vol pp ch sec eq inc ltd corp co dept
    est ave rd blvd jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun"""
)
ABBREVIATED_WORDS = frozenset(_ABBREVIATED.split())


def ends_sentence(word: str, mark: str) -> bool:
    """A word then `mark` closes a sentence: "!" or "?" always, "." unless the word is a single
    letter or a listed abbreviation."""
    if mark != ".":
        return mark in SENTENCE_MARKS
    return len(word) > 1 and word.lower() not in ABBREVIATED_WORDS


def is_range(low: str, high: str) -> bool:
    """Two whole numbers that read as a range: rising, and alike in length unless short ("5-10",
    "2019-2020"), so phone numbers ("555-1234") and dates are left alone."""
    if int(low) >= int(high) or low.startswith("0"):
        return False
    return len(low) == len(high) or len(low) < len(high) <= 3
