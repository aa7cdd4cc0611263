"""Where a serial (Oxford) comma is a free choice: "A, B and C" or "A, B, and C".

Without a parser, a list is read from its shape: comma-separated segments of plain words (no
digits, no other punctuation, no "and"/"or" inside), the segments after the first at most
`MAX_ITEM_WORDS` words and not opening with a pronoun ("He left early, she stayed and cried" is
two clauses, not a list), then "and"/"or" and a word that is not a pronoun. A sentence-opening
first segment that looks like an introduction ("Yes, John and Mary came", "However, cats and
dogs") is no list item, so "Yes, John and Mary" never gains a comma that would change who is
addressed.

`ListRun` follows the segments item by item. The marker reads it before each item it decides
and must leave it the same whichever form it wrote, so every format choice ends in one
canonical state (`after_format`) and a lexicon swap feeds the words it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ITEM_WORDS = 3
CONJUNCTIONS = ("and", "or")
# a segment ends a sentence, and the list with it, at any of these
SENTENCE_ENDS = frozenset(".!?:;…")
LIST_PRONOUNS = frozenset(
    ["i", "you", "we", "they", "he", "she", "it", "there", "this", "that", "these", "those", "one"]
)
# the first word of a sentence-opening segment that introduces the sentence rather than listing
_INTRO = (
    """however yes no well so also additionally moreover furthermore therefore hence thus
    in on at for if when whenever while whilst although though because since after before as
    first second third then next now today here there instead otherwise meanwhile besides
    indeed of by with without from to during unlike like overall ok okay sure hi hello hey dear
    thanks thank oh please again still once until unless whether whereas what how why where
    who which note remember similarly likewise specifically generally ultimately eventually
    finally lastly firstly secondly importantly unfortunately fortunately sorry alright but
    and or nor yet"""
)
INTRO_WORDS = frozenset(_INTRO.split())
INTRO_MAX_WORDS = 2  # a sentence-opening segment this short reads as an introduction


def first_word(word: str) -> str:
    """The word as list checks compare it: lower case, before any apostrophe ("I'm" -> "i")."""
    return word.replace("’", "'").lower().split("'")[0]


@dataclass
class ListRun:
    """The comma-separated segments read so far in this sentence."""

    items: int = 0  # consecutive segments before this one that are list items
    words: int = 0  # words in the current segment
    plain: bool = True  # the current segment holds only words and single spaces
    conjunction: bool = False  # it holds "and" or "or"
    first: str = ""  # its first word (`first_word`)
    sentence_start: bool = True  # it opens a sentence

    def word(self, text: str) -> None:
        w = first_word(text)
        if self.words == 0:
            self.first = w
        self.words += 1
        self.conjunction = self.conjunction or w in CONJUNCTIONS

    def space(self, text: str) -> None:
        if "\n" in text:
            self.new_sentence()
        elif text != " ":
            self.plain = False

    def other(self, text: str) -> None:
        """Punctuation or any other non-word item: a comma closes the segment, a sentence end
        closes the sentence, anything else spoils the segment."""
        if any(c in SENTENCE_ENDS for c in text):
            self.new_sentence()
            return
        if text != ",":
            self.plain = False
        if text.endswith(","):
            self.close_segment()

    def is_item(self) -> bool:
        """The current segment can be a list item after the first."""
        return (
            self.plain
            and 1 <= self.words <= MAX_ITEM_WORDS
            and not self.conjunction
            and self.first not in LIST_PRONOUNS
        )

    def is_first_item(self) -> bool:
        """The current segment can open a list (its last words are the first item)."""
        if not self.plain or self.words == 0 or self.conjunction:
            return False
        intro = self.words <= INTRO_MAX_WORDS or self.first in INTRO_WORDS
        return not (self.sentence_start and intro)

    def in_list(self) -> bool:
        """A conjunction after the current segment would end a list of three or more."""
        return self.items >= 1 and self.is_item()

    def close_segment(self) -> None:
        if self.items >= 1 and self.is_item():
            self.items += 1
        else:
            self.items = int(self.is_first_item())
        self._fresh(sentence_start=False)

    def new_sentence(self) -> None:
        self.items = 0
        self._fresh(sentence_start=True)

    def after_format(self) -> None:
        """The state after a format choice, the same for either of its forms: no list open and
        a spoilt segment (a list's conjunction ends it; "A, B and C, D and E" marks once)."""
        self.items = 0
        self._fresh(sentence_start=False)
        self.plain = False

    def _fresh(self, sentence_start: bool) -> None:
        self.words, self.plain, self.conjunction, self.first = 0, True, False, ""
        self.sentence_start = sentence_start
