"""Post-hoc lexical watermark for text we did not generate (CATER-style).

The text is read as whitespace-separated chunks, then items (words, other text,
whitespace, code). A *form* is one or two words of a group in `_synonyms.GROUPS`
(synonyms, spellings, contractions), in lower case or capitalised, outside code
fences, inline code, URLs, e-mails, hyphenated or apostrophised compounds and
code-like stretches, and allowed by its group's rule. Its context is the two
previous words (after marking; for keys with `lexical_context="stable"` the two previous words
no choice writes) and its group; the key decides, from that context only, which form the text
should use. Format choices (`_formats`: apostrophes, em dash spacing, list markers, "e.g."
commas, small counts, thousands separators, double quotes, serial commas, percentages, ranges,
ellipses, bold colons, sentence spaces) are read the same way, under fixed ids beside the
lexicon's. About half the contexts carry the
global key, the other half one symbol of the account's code word (the same code as the token
layer).

Detection reads the same occurrences from text alone. Under H0 (text written
without the key) each distinct context matches the keyed choice with probability
exactly 1/2, so the p-value is a binomial tail (choices the texts make one way throughout
are left out: `uniform_groups`). The choices keep meaning; about 5 distinct contexts per
hundred words of the corpus stand-ins (docs/benchmarks.md), removable
by an adversary who paraphrases: evidence that accumulates over a harvested
*dataset*, not over one answer.

Streaming: `stream().feed(delta)` turns complete chunks into items and emits each
item once `LOOKAHEAD` items follow it (all a decision reads); `finish()` flushes.
The concatenated stream output equals `apply(text)` for any split of the text.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from distillguard.watermark import _formats as F
from distillguard.watermark import _seeding as S
from distillguard.watermark._detect import LN10, AccountMatch, Detection, combine_positions
from distillguard.watermark._scheme import LayerKeys
from distillguard.watermark._serial import LIST_PRONOUNS, ListRun, first_word
from distillguard.watermark._synonyms import (
    BY_FIRST,
    CHOICE_WORDS,
    DETERMINERS,
    GROUPS,
    PERFECT_ADVERBS,
    RULE_BE,
    RULE_LEAD,
    RULE_LEAD_BE,
    RULE_NO_DETERMINER,
    RULE_NO_PRONOUN,
    RULE_NONE,
    RULE_PERFECT,
    RULE_WOULD,
    is_participle,
)
from distillguard.watermark._version import KeyVersion

if TYPE_CHECKING:  # only names an argument's type: at run time _keys imports this module
    from distillguard.watermark._keys import WatermarkKey

_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_CHUNK = re.compile(r"\S+|\s+")
_LAYER_SALT = np.uint64(0x2545F4914F6CDD1D)
_CHOICE_TOKEN = S.hashes_of_tokens(np.zeros(1, dtype=np.int64))
_BLOCKERS = set("-'’_/\\0123456789@")
# Code pasted outside fences ("text-align: center;", "x is not None and y.z = 1"): a chunk
# with these marks is code-like and nothing within CODE_WINDOW items of it on its line changes.
_CODEISH = re.compile(r"[=;{}<>\[\]|]|\w\(|[A-Za-z]\.[A-Za-z]|[a-z][A-Z]|_")
CODE_WINDOW = 8
# items after a form's first word that decide it: the form (up to 3 items), the code window
LOOKAHEAD = 3 + CODE_WINDOW
PRONOUNS = frozenset(["i", "you", "we", "they", "he", "she", "it", "there", "this", "that", "one"])
# before "I am"/"you are"/...: clause-final uses ("who you are is ...") cannot contract
NO_CONTRACTION_AFTER = frozenset(["who", "what", "where", "how", "which", "whoever", "whatever", "than", "as"])
# after "it's", "that's", ...: these make it "it has", which must not be expanded to "it is"
HAS_MARKERS = frozenset(["been", "got", "gotten", "had"])

# a choice whose texts make it one way in at least this many distinct contexts is not read
# (`uniform_groups`): marked text does so by chance with probability 2**(1 - n)
UNIFORM_MIN_CONTEXTS = 8

# Choices beyond the lexicon (apostrophes, dashes, list markers, "e.g.", numbers) have fixed
# ids of their own (`_formats`), so a lexicon that grows never moves them.
APOSTROPHE_GROUP = F.APOSTROPHE

# decide(prev_word, group, member used) -> member index to write, or None to keep it
Decide = Callable[[str, int, int], int | None]

# item kinds (_CODELIKE: a code-like chunk outside code marks, which also guards its neighbours;
# _ABBR: "e.g." or "i.e.")
_W, _SPACE, _OTHER, _CODE, _CODELIKE, _ABBR = "w", "s", "o", "c", "x", "a"


def choice_enabled(group: int, groups: int | None, formats: Collection[int] | None) -> bool:
    """Whether a choice is marked and read: a lexicon group among the first `groups` (all if
    None), a format choice among `formats` (all if None)."""
    if group >= F.FORMAT_BASE:
        return formats is None or group in formats
    return groups is None or group < groups


def context_id(prev: str, group: int) -> np.uint64:
    """Unkeyed identity of an occurrence's context."""
    digest = hashlib.blake2b(f"{prev}\x00{group}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def _norm(word: str) -> str:
    return word.replace("’", "'").lower()


@dataclass
class _ScanState:
    prev: str = ""
    before_prev: str = ""
    in_fence: bool = False
    in_inline: bool = False
    since_code: int = CODE_WINDOW + 1  # items since a code-like chunk on this line
    # the last character of the items passed so far: a stream has already emitted (and
    # dropped) the item before the one being decided, so lookbehind reads this
    last_char: str = ""
    # the last two items passed (a number reads "word, one space" before it)
    last_items: tuple[tuple[str, str], tuple[str, str]] = (("", ""), ("", ""))
    line_start: bool = True  # only whitespace since the last newline (or the start)
    line_indented: bool = False  # that whitespace is not empty
    # each open list's keyed swap of its markers (by list group): its first marker decides
    list_swap: dict[int, bool] = field(default_factory=dict)
    # the closing quote of a quoted span whose opening quote was swapped (same paragraph)
    quote_close: str | None = None
    # the comma-separated segments of this sentence (where a serial comma is a choice)
    run: ListRun = field(default_factory=ListRun)
    # the last two words that no choice writes (the "stable" context)
    stable: tuple[str, str] = ("", "")


def _items(chunk: str, state: _ScanState) -> list[tuple[str, str]]:
    """A complete chunk as (text, kind) items; code, URLs and e-mails are one `_CODE` item."""
    if chunk.isspace():
        return [(chunk, _SPACE)]
    if chunk.startswith("```"):
        state.in_fence = not state.in_fence
        return [(chunk, _CODE)]
    if state.in_fence or "://" in chunk or chunk.lower().startswith("www.") or "@" in chunk:
        return [(chunk, _CODE)]
    if not state.in_inline and (abbr := F.ABBREVIATION_CHUNK.fullmatch(chunk)):
        return [(t, k) for t, k in zip(abbr.groups(), (_OTHER, _ABBR, _OTHER), strict=True) if t]
    if "`" not in chunk and not state.in_inline and _CODEISH.search(chunk):
        return [(chunk, _CODELIKE)]
    out: list[tuple[str, str]] = []
    for i, piece in enumerate(chunk.split("`")):
        if i > 0:
            out.append(("`", _OTHER))
            state.in_inline = not state.in_inline
        if state.in_inline:
            out.append((piece, _CODE))
            continue
        last = 0
        for m in _WORD.finditer(piece):
            if m.start() > last:
                out.append((piece[last : m.start()], _OTHER))
            out.append((m.group(0), _W))
            last = m.end()
        if last < len(piece):
            out.append((piece[last:], _OTHER))
    return [it for it in out if it[0]]


def _cased_as(text: str, form: str) -> bool | None:
    """True if `text` is `form` capitalised, False if it is `form`, None if neither."""
    if text == form:
        return False
    if form[0].islower() and text == form[0].upper() + form[1:]:
        return True
    return None


@dataclass(frozen=True)
class _Form:
    """A format choice at items[i:end]: both renderings, the member the text uses, and the
    word the context reads after it (the same for either rendering; None: no word)."""

    group: int
    member: int
    end: int
    renders: tuple[str, str]
    word: str | None = None


def _list_marker(items: list[tuple[str, str]], i: int) -> tuple[int, int, tuple[str, str]] | None:
    """(group, member, renderings) of a list item's marker at a line's first item ("- ", "1. ")."""
    text, kind = items[i]
    if kind != _OTHER or i + 2 >= len(items) or items[i + 1] != (" ", _SPACE):
        return None
    if text in F.BULLETS:
        return F.BULLET, F.BULLETS.index(text), F.BULLETS
    if m := F.ORDERED_MARKER.fullmatch(text):
        return F.ORDERED, F.ORDERED_DELIMITERS.index(m[2]), (m[1] + ".", m[1] + ")")
    return None


def _dash(items: list[tuple[str, str]], i: int) -> _Form | None:
    """An em dash between two words (the caller checked the word before), "a—b" or "a — b"."""
    renders = (F.EM_DASH, f" {F.EM_DASH} ")
    if items[i] == (F.EM_DASH, _OTHER) and i + 1 < len(items) and items[i + 1][1] == _W:
        return _Form(F.DASH, 0, i + 1, renders)
    spaced = [(" ", _SPACE), (F.EM_DASH, _OTHER), (" ", _SPACE)]
    if items[i : i + 3] == spaced and i + 3 < len(items) and items[i + 3][1] == _W:
        return _Form(F.DASH, 1, i + 3, renders)
    return None


def _abbreviation(items: list[tuple[str, str]], i: int) -> _Form | None:
    """ "e.g." or "i.e." before a word, with its comma ("e.g., the") or without ("e.g. the")."""
    text = items[i][0]
    nxt = items[i + 1 : i + 4]
    if nxt[:2] == [(",", _OTHER), (" ", _SPACE)] and len(nxt) == 3 and nxt[2][1] == _W:
        return _Form(F.ABBREVIATION, 1, i + 2, (text, text + ","))
    if nxt[:1] == [(" ", _SPACE)] and len(nxt) >= 2 and nxt[1][1] == _W:
        return _Form(F.ABBREVIATION, 0, i + 1, (text, text + ","))
    return None


class _Matcher:
    """Finds and rewrites the keyed forms in a list of items (the scan's core); `stable`: contexts
    read the stable words (`WatermarkConfig.lexical_context`)."""

    def __init__(self, decide: Decide, stable: bool = False) -> None:
        self.decide = decide
        self.stable = stable
        self.state = _ScanState()

    def run(self, items: list[tuple[str, str]], final: bool) -> tuple[str, int]:
        """Rewrite items while each has its lookahead (all, if `final`); text and count used."""
        out: list[str] = []
        i = 0
        while i < len(items) and (final or i + LOOKAHEAD < len(items)):
            text, kind = items[i]
            if self.state.line_start and kind != _SPACE:
                marker = self._line_opens(items, i)
                if marker is not None and not self._near_code(items, i, i + 1):
                    out.append(self._mark_list(*marker))
                    self._passed(items[i])
                    self.state.run.new_sentence()  # "1." and "1)" alike
                    i += 1
                    continue
            if kind == _OTHER and (quoted := self._quote(items, i)) is not None:
                out.append(quoted)
                self._passed(items[i])
                i += 1
                continue
            form = self._format(items, i)
            if form is not None:
                out.append(self._mark_format(form, items, i))
                i = form.end
                continue
            if kind != _W:
                out.append(text)
                self._passed(items[i])
                i += 1
                continue
            found = self._match(items, i)
            if found is None:
                out.append(self._apostrophe(items, i))
                self._advance(_norm(text))
                self._passed(items[i])
                i += 1
                continue
            group, member, end, capital = found
            choice = self.decide(self._context(), group, member)
            if choice is None or choice == member:
                new = "".join(t for t, _ in items[i:end])
            else:
                new = " ".join(GROUPS[group].members[choice])
                if capital:
                    new = new[0].upper() + new[1:]
            out.append(new)
            self._advance(_norm(new))
            for it in items[i:end]:
                self._passed(it, track=False)
            self._track_words(new)
            i = end
        return "".join(out), i

    def _context(self) -> str:
        if self.stable:
            return "\x01".join(self.state.stable)
        return f"{self.state.before_prev} {self.state.prev}"

    def _track_words(self, text: str) -> None:
        """The list run reads the words written (a swap may change their number: "do not")."""
        for k, w in enumerate(text.split(" ")):
            if k:
                self.state.run.space(" ")
            self.state.run.word(w)

    def _passed(self, item: tuple[str, str], track: bool = True) -> None:
        st = self.state
        if track:
            if item[1] == _W:
                st.run.word(item[0])
            elif item[1] == _SPACE:
                st.run.space(item[0])
            elif item[1] == _OTHER:
                st.run.other(item[0])
            else:
                st.run.plain = False
        if item[0]:
            st.last_char = item[0][-1]
        st.last_items = (st.last_items[1], item)
        if item[1] == _SPACE:
            if "\n" in item[0]:
                st.line_start, st.line_indented = True, item[0].rsplit("\n", 1)[1] != ""
                if item[0].count("\n") > 1:  # a paragraph ends: no quoted span runs past it
                    st.quote_close = None
            elif st.line_start:
                st.line_indented = True
        else:
            st.line_start, st.line_indented = False, False
        if item[1] == _CODELIKE:
            st.since_code = 0
        elif item[1] == _SPACE and "\n" in item[0]:
            st.since_code = CODE_WINDOW + 1
        else:
            st.since_code += 1

    def _line_opens(
        self, items: list[tuple[str, str]], i: int
    ) -> tuple[int, int, tuple[str, str]] | None:
        """The list marker opening this line, if any; an unindented line that is no item of an
        open list closes it."""
        marker = _list_marker(items, i)
        if not self.state.line_indented:
            for group in list(self.state.list_swap):
                if marker is None or marker[0] != group:
                    del self.state.list_swap[group]
        return marker

    def _quote(self, items: list[tuple[str, str]], i: int) -> str | None:
        """A double quote opening a span before a word is a keyed choice, straight or curly; the
        span's closing quote (the next quote after a non-space, in the paragraph) follows a
        swapped opening. None: items[i] is neither, or stays."""
        st = self.state
        text = items[i][0]
        opens = (
            text in F.OPENING_QUOTES
            and (st.last_char == "" or st.last_char.isspace())
            and i + 1 < len(items)
            and items[i + 1][1] == _W
        )
        if opens:
            st.quote_close = None
            if self._near_code(items, i, i + 1):
                return None
            member = F.OPENING_QUOTES.index(text)
            choice = self.decide(self._context(), F.QUOTES, member)
            if choice is None or choice == member:
                return None
            st.quote_close = F.CLOSING_QUOTES[choice]
            return F.OPENING_QUOTES[choice]
        if st.quote_close is None or st.last_char.isspace():
            return None
        at = min((text.find(q) for q in F.CLOSING_QUOTES if q in text), default=-1)
        if at < 0:
            return None
        close, st.quote_close = st.quote_close, None
        return text[:at] + close + text[at + 1 :]

    def _mark_list(self, group: int, member: int, renders: tuple[str, str]) -> str:
        """A list's first marker is a keyed choice; the list's other markers follow it."""
        swap = self.state.list_swap.get(group)
        if swap is None:
            choice = self.decide(self._context(), group, member)
            swap = self.state.list_swap[group] = choice is not None and choice != member
        return renders[1 - member] if swap else renders[member]

    def _format(self, items: list[tuple[str, str]], i: int) -> _Form | None:
        """The format choice (dash, "e.g.", number) starting at items[i], outside code."""
        text, kind = items[i]
        form: _Form | None = None
        if kind == _ABBR:
            form = _abbreviation(items, i)
        if kind == _SPACE and text in F.SENTENCE_SPACES:
            form = self._sentence_space(items, i)
        if form is None and text in (",", " "):
            form = self._serial(items, i)
        if form is None and text in (F.EM_DASH, " "):
            form = _dash(items, i) if self.state.last_char.isalpha() else None
        if form is None and kind == _OTHER:
            form = self._figure(items, i)
        if form is None and kind in (_W, _OTHER):
            form = self._number(items, i)
        if form is None or self._near_code(items, i, form.end):
            return None
        return form

    def _sentence_space(self, items: list[tuple[str, str]], i: int) -> _Form | None:
        """One space or two between sentences on a line: after a word and its sentence mark
        (`_formats.ends_sentence`), before a capitalised word."""
        word, mark = self.state.last_items
        if (
            mark[1] != _OTHER
            or word[1] != _W
            or not F.ends_sentence(word[0], mark[0])
            or i + 1 >= len(items)
            or items[i + 1][1] != _W
            or not items[i + 1][0][0].isupper()
        ):
            return None
        text = items[i][0]
        return _Form(F.SENTENCE_SPACE, F.SENTENCE_SPACES.index(text), i + 1, F.SENTENCE_SPACES)

    def _serial(self, items: list[tuple[str, str]], i: int) -> _Form | None:
        """The end of a list of three or more: "B and C" (at the space) or "B, and C" (at the
        comma), when the segments read so far make a list (`_serial.ListRun`)."""
        if not self.state.run.in_list():
            return None
        member = int(items[i][0] == ",")
        if member == 0 and self.state.last_items[1][1] != _W:
            return None
        at = i + member  # the space before the conjunction
        if at + 3 >= len(items) or items[at] != (" ", _SPACE) or items[at + 2] != (" ", _SPACE):
            return None
        conj, after = items[at + 1], items[at + 3]
        if conj[1] != _W or conj[0] not in ("and", "or") or after[1] != _W:
            return None
        if first_word(after[0]) in LIST_PRONOUNS:
            return None
        return _Form(F.SERIAL_COMMA, member, at + 2, (" " + conj[0], ", " + conj[0]), conj[0])

    def _in_prose(self) -> bool:
        """The item before is one space after a word: a figure in a sentence, not a table or label."""
        before, gap = self.state.last_items
        return gap == (" ", _SPACE) and before[1] == _W

    def _figure(self, items: list[tuple[str, str]], i: int) -> _Form | None:
        """A percentage ("50%" / "50 percent"), a range ("5-10" / "5–10") in prose, an
        ellipsis or a bold label's colon after a word."""
        text = items[i][0]
        spaced = i + 1 >= len(items) or items[i + 1][1] == _SPACE
        if text in F.BOLD_COLONS and self.state.last_items[1][1] == _W:
            return _Form(F.BOLD_COLON, F.BOLD_COLONS.index(text), i + 1, F.BOLD_COLONS)
        if m := F.ELLIPSIS_MARK.fullmatch(text):
            if self.state.last_items[1][1] != _W:
                return None
            member = F.ELLIPSES.index(m[1])
            return _Form(F.ELLIPSIS, member, i + 1, tuple(e + m[2] for e in F.ELLIPSES))  # type: ignore[arg-type]
        if not self._in_prose():
            return None
        if (m := F.PERCENT_SIGN.fullmatch(text)) and spaced:
            return _Form(F.PERCENT, 0, i + 1, (text, f"{m[1]} {F.PERCENT_WORD}{m[2]}"))
        if (
            F.PERCENT_NUMBER.fullmatch(text)
            and items[i + 1 : i + 3] == [(" ", _SPACE), (F.PERCENT_WORD, _W)]
            and (i + 3 >= len(items) or items[i + 3][0][0] not in _BLOCKERS)
        ):
            return _Form(F.PERCENT, 1, i + 3, (text + "%", f"{text} {F.PERCENT_WORD}"))
        if (m := F.RANGE.fullmatch(text)) and spaced and F.is_range(m[1], m[3]):
            renders = tuple(f"{m[1]}{d}{m[3]}{m[4]}" for d in F.RANGE_DASHES)
            return _Form(F.RANGE_DASH, F.RANGE_DASHES.index(m[2]), i + 1, renders)  # type: ignore[arg-type]
        return None

    def _number(self, items: list[tuple[str, str]], i: int) -> _Form | None:
        """A count after a lower-case word and before a lower-case noun, in prose: "has 3 steps"."""
        text, kind = items[i]
        before, gap = self.state.last_items
        if (
            gap != (" ", _SPACE)
            or before[1] != _W
            or not before[0][0].islower()
            or _norm(before[0]) in F.NUMBER_LABEL_WORDS
            or i + 2 >= len(items)
            or items[i + 1] != (" ", _SPACE)
            or items[i + 2][1] != _W
        ):
            return None
        noun = items[i + 2][0]
        after = items[i + 3][0] if i + 3 < len(items) else ""
        if not noun.islower() or noun in F.UNIT_WORDS or (after and after[0] in _BLOCKERS):
            return None
        if kind == _W and text in F.NUMBER_WORDS or kind == _OTHER and text in F.DIGITS:
            n = (F.NUMBER_WORDS if kind == _W else F.DIGITS).index(text)
            if not noun.endswith("s") or len(noun) < 3:
                return None
            renders = (F.DIGITS[n], F.NUMBER_WORDS[n])
            return _Form(F.NUMBER_WORD, int(kind == _W), i + 1, renders, F.NUMBER_WORDS[n])
        if kind == _OTHER and F.is_count(text):
            plain = text.replace(",", "")
            return _Form(F.THOUSANDS, int("," in text), i + 1, (plain, F.group_thousands(plain)))
        return None

    def _mark_format(self, form: _Form, items: list[tuple[str, str]], i: int) -> str:
        choice = self.decide(self._context(), form.group, form.member)
        new = "".join(t for t, _ in items[i : form.end])
        if choice is not None and choice != form.member:
            new = form.renders[choice]
        if form.group == F.SENTENCE_SPACE:
            # a plain space either way: the next sentence's list run and figures read the same
            self._passed((F.SENTENCE_SPACES[0], _SPACE))
            return new
        for it in items[i : form.end]:
            self._passed(it)
        self.state.last_char = new[-1]
        self.state.run.after_format()
        if form.group == F.PERCENT:  # one item or three: what follows reads the same either way
            self.state.last_items = (("", ""), (new, _OTHER))
        if form.word is not None:
            self._advance(form.word)
        return new

    def _near_code(self, items: list[tuple[str, str]], i: int, end: int) -> bool:
        """A code-like chunk within CODE_WINDOW items of items[i:end], on the same line."""
        if self.state.since_code < CODE_WINDOW:
            return True
        for text, kind in items[end : end + CODE_WINDOW]:
            if kind == _CODELIKE:
                return True
            if kind == _SPACE and "\n" in text:
                return False
        return False

    def _apostrophe(self, items: list[tuple[str, str]], i: int) -> str:
        """The word with the keyed apostrophe (context: two previous words and the word)."""
        word = items[i][0]
        if ("'" not in word and "’" not in word) or self._near_code(items, i, i + 1):
            return word
        first = min(word.find(a) for a in F.APOSTROPHES if a in word)
        member = F.APOSTROPHES.index(word[first])
        ctx = f"{self._context()} {_norm(word)}"
        choice = self.decide(ctx, APOSTROPHE_GROUP, member)
        if choice is None or choice == member:
            return word
        return word.replace(F.APOSTROPHES[member], F.APOSTROPHES[choice])

    def _advance(self, word: str) -> None:
        self.state.before_prev, self.state.prev = self.state.prev, word
        if word not in CHOICE_WORDS:
            self.state.stable = (self.state.stable[1], word)

    def _match(self, items: list[tuple[str, str]], i: int) -> tuple[int, int, int, bool] | None:
        """(group, member, end item, capitalised) of the form starting at word item i."""
        text = items[i][0].replace("’", "'")
        entries = BY_FIRST.get(text.lower())
        if not entries:
            return None
        before = self.state.last_char
        if before in _BLOCKERS or self._near_code(items, i, i + 1):
            return None
        for group, member in entries:
            words = GROUPS[group].members[member]
            capital = _cased_as(text, words[0])
            if capital is None:
                continue
            end = i + 1
            for w in words[1:]:
                if (
                    end + 1 < len(items)
                    and items[end] == (" ", _SPACE)
                    and items[end + 1][1] == _W
                    and items[end + 1][0].replace("’", "'") == w
                ):
                    end += 2
                else:
                    break
            else:
                after = items[end][0] if end < len(items) else ""
                if after and after[0] in _BLOCKERS:
                    continue
                rule = GROUPS[group].rule
                if self._allowed(rule, items, end, capital) and not self._near_code(items, i, end):
                    return group, member, end, capital
                return None
        return None

    def _allowed(self, rule: str, items: list[tuple[str, str]], end: int, capital: bool) -> bool:
        if rule == RULE_NONE:
            return True
        if rule == RULE_LEAD:
            return capital and end < len(items) and items[end][0].startswith(",")
        if rule == RULE_LEAD_BE and not capital:
            return False
        if rule == RULE_NO_DETERMINER:
            return self.state.prev not in DETERMINERS
        nxt = None
        if (
            end + 1 < len(items)
            and items[end][1] == _SPACE
            and "\n" not in items[end][0]
            and items[end + 1][1] == _W
        ):
            nxt = items[end + 1][0]
        if rule == RULE_NO_PRONOUN:
            return nxt is None or _norm(nxt).split("'")[0] not in PRONOUNS
        continues = (
            nxt is not None
            and nxt[0].islower()
            and _norm(nxt) != "not"
            and self.state.prev not in NO_CONTRACTION_AFTER
        )
        if not continues or nxt is None:
            return False
        if rule in (RULE_BE, RULE_LEAD_BE):
            return _norm(nxt) not in HAS_MARKERS
        if rule == RULE_PERFECT:
            return is_participle(_norm(nxt))
        if rule == RULE_WOULD:
            return not is_participle(_norm(nxt)) and _norm(nxt) not in PERFECT_ADVERBS
        return True


def scan(text: str, state: _ScanState, decide: Decide, stable: bool = False) -> str:
    """Rewrite the whole of `text` (kept for callers that scan complete texts)."""
    matcher = _Matcher(decide, stable)
    matcher.state = state
    items = [it for c in _CHUNK.findall(text) for it in _items(c, state)]
    return matcher.run(items, final=True)[0]


class _Chooser:
    """The keyed choice for one key version and (optionally) one account."""

    def __init__(
        self,
        version: KeyVersion,
        account_id: str | None,
        groups: int | None = None,
        formats: Collection[int] | None = None,
    ) -> None:
        cfg = version.config
        self.groups, self.formats = groups, formats
        self.keys = LayerKeys.of(version, prefix="lexical-")
        self.code = (
            S.account_code(
                version.secret, version.version, account_id, cfg.account_length, cfg.account_alphabet
            )
            if account_id is not None
            else None
        )

    def __call__(self, prev: str, group: int, member: int) -> int | None:
        if not choice_enabled(group, self.groups, self.formats):
            return None
        ctx = np.array([context_id(prev, group)], dtype=np.uint64)
        if is_global(self.keys, ctx)[0]:
            member = int(global_bits(self.keys, ctx)[0])
        elif self.code is not None:
            pos = int(self.keys.positions(ctx)[0])
            member = int(symbol_bits(self.keys, ctx, np.array([self.code[pos]]))[0])
        else:
            return None
        return member


def is_global(keys: LayerKeys, ctx: S.U64) -> np.ndarray:  # type: ignore[type-arg]
    return S.unit(S.mix64(S.keyed_context(keys.global_key, ctx) ^ _LAYER_SALT)) < 0.5


def global_bits(keys: LayerKeys, ctx: S.U64) -> np.ndarray:  # type: ignore[type-arg]
    return S.unit(S.values(S.keyed_context(keys.global_key, ctx), _CHOICE_TOKEN)) >= 0.5


def symbol_bits(keys: LayerKeys, ctx: S.U64, symbols: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    """Member index chosen under each given symbol at each context's position."""
    pos = keys.positions(ctx)
    k = keys.symbol_keys[pos[:, None] if symbols.ndim == 2 else pos, symbols]
    c = ctx[:, None] if symbols.ndim == 2 else ctx
    return S.unit(S.values(S.keyed_context(k, c), _CHOICE_TOKEN)) >= 0.5


class TextStream:
    """Streaming form of `TextWatermarker.apply`: `feed` deltas, then `finish`.

    Complete chunks (any but the last of the buffer: a whitespace run or a word may
    still grow) become items; an item is rewritten once `LOOKAHEAD` items follow it,
    which is all a decision reads, so the output is the same for any split.
    """

    def __init__(self, decide: Decide, stable: bool = False) -> None:
        self._matcher = _Matcher(decide, stable)
        self._items: list[tuple[str, str]] = []
        self._buffer = ""

    def feed(self, delta: str) -> str:
        """Marked text for every item that is decided so far; the rest is held back."""
        self._buffer += delta
        chunks = _CHUNK.findall(self._buffer)
        if len(chunks) < 2:
            return ""
        self._buffer = chunks[-1]
        for c in chunks[:-1]:
            self._items.extend(_items(c, self._matcher.state))
        return self._emit(final=False)

    def finish(self) -> str:
        """The marked remainder; the stream is then empty."""
        if self._buffer:
            self._items.extend(_items(self._buffer, self._matcher.state))
            self._buffer = ""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        text, used = self._matcher.run(self._items, final)
        del self._items[:used]
        return text


class TextWatermarker:
    """Marks text post hoc for the provider and one account (`key.text_watermarker(id)`)."""

    def __init__(
        self,
        version: KeyVersion,
        account_id: str | None = None,
        groups: int | None = None,
        formats: Collection[int] | None = None,
    ) -> None:
        """For comparisons: `groups` marks with the first n groups of the lexicon only
        (`len(SYNONYM_PAIRS)` is the first table), `formats` with these format choices only
        (`_formats` ids); default all of each."""
        self.version = version
        self.account_id = account_id
        self._decide = _Chooser(version, account_id, groups, formats)

    def apply(self, text: str) -> str:
        stream = self.stream()
        return stream.feed(text) + stream.finish()

    def stream(self) -> TextStream:
        return TextStream(self._decide, self.version.config.lexical_context == "stable")


@dataclass
class _Occurrences:
    ctx: S.U64
    member: np.ndarray  # type: ignore[type-arg]
    seen: int
    dropped_repeats: int = 0
    dropped_uniform: int = 0  # contexts of choices the texts always make one way


def occurrences(
    texts: Sequence[str],
    groups: int | None = None,
    formats: Collection[int] | None = None,
    stable: bool = False,
) -> _Occurrences:
    """Each distinct (previous words, group) context of the texts, with the member used
    (`stable`: the stable words, `WatermarkConfig.lexical_context`), less the choices made one
    way throughout (`uniform_groups`)."""
    found: dict[int, tuple[int, int]] = {}
    seen = 0
    for text in texts:
        state = _ScanState()

        def record(prev: str, group: int, member: int) -> int | None:
            nonlocal seen
            if not choice_enabled(group, groups, formats):
                return None
            seen += 1
            found.setdefault(int(context_id(prev, group)), (member, group))
            return None

        scan(text, state, record, stable)
    uniform = uniform_groups(found.values())
    kept = {c: m for c, (m, g) in found.items() if g not in uniform}
    ctx = np.fromiter(kept.keys(), dtype=np.uint64, count=len(kept))
    member = np.fromiter(kept.values(), dtype=np.int64, count=len(kept))
    return _Occurrences(
        ctx=ctx,
        member=member,
        seen=seen,
        dropped_repeats=seen - len(found),
        dropped_uniform=len(found) - len(kept),
    )


def uniform_groups(found: Collection[tuple[int, int]]) -> set[int]:
    """Groups with at least UNIFORM_MIN_CONTEXTS distinct contexts, all with the same member.

    Marked text makes each context's choice by the key, so a group of n contexts is all one way
    with probability 2**(1 - n); a normaliser (curly quotes to straight, runs of spaces to one)
    or a writer's habit makes it so always, and its contexts would only dilute the others. The
    rule reads the text alone, never the key, so under H0 the other contexts still match with
    probability exactly 1/2 each."""
    members: dict[int, set[int]] = {}
    counts: dict[int, int] = {}
    for member, group in found:
        members.setdefault(group, set()).add(member)
        counts[group] = counts.get(group, 0) + 1
    return {g for g, m in members.items() if len(m) == 1 and counts[g] >= UNIFORM_MIN_CONTEXTS}


def detect_lexical(
    key: WatermarkKey,
    texts: Sequence[str],
    *,
    candidates: Sequence[str] | None = None,
    alpha: float = 1e-6,
    report_alpha: float = 0.01,
    max_report: int = 50,
    groups: int | None = None,
    formats: Collection[int] | None = None,
) -> Detection:
    """Lexical-layer detection from text alone, over every key version (`groups`, `formats`:
    as marked)."""
    occ = {
        mode: occurrences(texts, groups, formats, stable=mode == "stable")
        for mode in {v.config.lexical_context for v in key.versions}
    }
    best: Detection | None = None
    for version in key.versions:
        det = _detect_version(
            version, occ[version.config.lexical_context], candidates, alpha, report_alpha, max_report
        )
        if best is None or det.log10_p < best.log10_p:
            best = det
    assert best is not None
    n_versions = len(key.versions)
    best.log10_p = min(0.0, best.log10_p + math.log10(n_versions))
    best.p_value = 10.0**best.log10_p
    best.versions_tried = n_versions
    return best


def _detect_version(
    version: KeyVersion,
    occ: _Occurrences,
    candidates: Sequence[str] | None,
    alpha: float,
    report_alpha: float,
    max_report: int,
) -> Detection:
    cfg = version.config
    keys = LayerKeys.of(version, prefix="lexical-")
    glob = is_global(keys, occ.ctx) if occ.ctx.size else np.zeros(0, bool)

    def global_test(k: LayerKeys) -> tuple[float, int, int]:
        g = is_global(k, occ.ctx) if occ.ctx.size else np.zeros(0, bool)
        n = int(g.sum())
        hits = int((global_bits(k, occ.ctx[g]) == occ.member[g].astype(bool)).sum()) if n else 0
        return float(stats.binom.logsf(hits - 1, n, 0.5)) if n else 0.0, hits, n

    log_p, hits, n = global_test(keys)
    controls = [
        float(math.exp(global_test(LayerKeys.of(version, control=c, prefix="lexical-"))[0]))
        for c in range(cfg.controls)
    ]
    det = Detection(
        scheme="lexical",
        layer="global",
        key_version=version.version,
        versions_tried=1,
        tokens_seen=occ.seen,
        scored_tuples=n,
        dropped_repeats=occ.dropped_repeats,
        dropped_prompt=0,
        statistic=float(hits),
        expected=n / 2,
        p_value=float(math.exp(log_p)),
        log10_p=log_p / LN10,
        min_scored=min(cfg.min_scored, 10),
        controls=controls,
        alpha=alpha,
    )
    if candidates is not None:
        acc = ~glob
        ctx, member = occ.ctx[acc], occ.member[acc].astype(bool)
        L, q = cfg.account_length, cfg.account_alphabet
        pos = keys.positions(ctx) if ctx.size else np.zeros(0, np.int64)
        counts = np.bincount(pos, minlength=L)
        table = np.zeros((L, q))
        if ctx.size:
            bits = symbol_bits(keys, ctx, np.broadcast_to(np.arange(q), (ctx.size, q)))
            match = bits == member[:, None]
            for i in range(L):
                hits_i = match[pos == i].sum(axis=0)
                if counts[i]:
                    table[i] = stats.binom.logsf(hits_i - 1, counts[i], 0.5)
        det.decoded_code = [int(v) for v in table.argmin(axis=1)]
        det.position_log10_p = [float(table[i].min() / LN10) for i in range(L)]
        det.candidates = len(candidates)
        if candidates:
            codes = np.asarray(
                [S.account_code(version.secret, version.version, a, L, q) for a in candidates],
                dtype=np.int64,
            )
            adjusted = combine_positions(table, codes, len(candidates))
            for j in np.argsort(adjusted, kind="stable")[:max_report]:
                p = float(math.exp(adjusted[j]))
                if p > report_alpha:
                    break
                det.accounts.append(
                    AccountMatch(str(candidates[j]), p, float(adjusted[j] / LN10), p <= alpha)
                )
    return det
