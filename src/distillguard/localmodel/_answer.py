"""Answers from the local model that are never empty and stay in the prompt's writing system.

The tiny model cannot be trusted to stop late enough or to keep to one script,
so generation is guarded by a logits processor (`AnswerGuard`):

- end-of-text is banned until the answer holds a letter;
- every token must keep the answer valid UTF-8 whose letters belong to the
  prompt's script (Latin, Cyrillic, CJK, Arabic, Hangul, ...); digits,
  punctuation and spaces are allowed everywhere.

"Language" is taken as the writing system: a tiny byte-level model cannot tell
English from French, but it can be kept from answering Chinese in Latin letters
or an English prompt in Cyrillic. The guard needs a byte-level BPE tokenizer (the
local model's); masks are computed once per (script, pending bytes) and cached.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from typing import Any

# Scripts that write one language family together (Japanese mixes kana and kanji).
_SCRIPT_GROUPS = {
    "HIRAGANA": "CJK",
    "KATAKANA": "CJK",
    "KATAKANA-HIRAGANA": "CJK",
    "FULLWIDTH": "CJK",
    "HALFWIDTH": "CJK",
    "IDEOGRAPHIC": "CJK",
    "BOPOMOFO": "CJK",
}
# First words of letter names that name no script: such letters are neutral.
_NOT_SCRIPTS = frozenset({"MODIFIER", "SUPERSCRIPT", "SUBSCRIPT", "COMBINING", "LETTERLIKE"})
# Code points searched for scripts and for the characters a script may use.
_MAX_CODE_POINT = 0x30000

# Sampling settings of an answer (the gateway's local backend uses them): without them the
# tiny model loops on a fragment ("in a lacates in a lacates ...").
REPETITION_PENALTY = 1.3
NO_REPEAT_NGRAM_SIZE = 3
MIN_ANSWER_TOKENS = 8


@functools.cache
def _script_words() -> frozenset[str]:
    """Every word that starts the Unicode name of a letter: LATIN, CYRILLIC, THAI, CJK, ..."""
    words = set()
    for cp in range(_MAX_CODE_POINT):
        ch = chr(cp)
        if unicodedata.category(ch).startswith("L"):
            name = unicodedata.name(ch, "")
            if name:
                words.add(name.split()[0])
    return frozenset(words - _NOT_SCRIPTS)


def char_script(ch: str) -> str | None:
    """The script a character belongs to (`LATIN`, `CYRILLIC`, `CJK`, ...), from its Unicode name.

    Letters, and the digits, marks and signs of a script (DEVANAGARI DIGIT SEVEN, TIBETAN
    MARK ...) have one; common characters (DIGIT ONE, FULL STOP, EM DASH) have none.
    """
    name = unicodedata.name(ch, "")
    if not name:
        return None
    word = name.split()[0]
    if word not in _script_words():
        return None
    return _SCRIPT_GROUPS.get(word, word)


def letter_script(ch: str) -> str | None:
    """The script of a letter; None for anything that is not a letter or names no script."""
    return char_script(ch) if unicodedata.category(ch).startswith("L") else None


def _char_ok(ch: str, script: str | None) -> bool:
    """May `ch` appear in an answer in `script`? Common characters and the script's own, no
    controls or invisible format characters (newline and tab yes), no odd spaces."""
    category = unicodedata.category(ch)
    if category[0] == "C" or category in ("Zl", "Zp") or (category == "Zs" and ch != " "):
        return ch in "\n\t"
    if script is None:
        return True
    return char_script(ch) in (None, script)


def _is_letter(ch: str, script: str | None) -> bool:
    if not unicodedata.category(ch).startswith("L"):
        return False
    return script is None or letter_script(ch) == script


def dominant_script(text: str) -> str | None:
    """The script most of `text`'s letters are in; None when it has none."""
    counts = Counter(s for s in map(letter_script, text) if s is not None)
    return counts.most_common(1)[0][0] if counts else None


def answers_in_script(prompt: str, answer: str) -> bool:
    """`answer` is non-empty and, when the prompt has letters, holds letters of its script only.

    This is what "in the language of the prompt" means here (see the module's docstring).
    """
    if not answer.strip():
        return False
    script = dominant_script(prompt)
    if script is None:
        return True
    scripts = {s for s in map(letter_script, answer) if s is not None}
    return scripts == {script}


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet reversed: the printable stand-in of each byte -> the byte.

    Printable Latin-1 bytes stand for themselves; the others are shifted past U+0100 in order
    (Radford et al. 2019, the table byte-level BPE tokenizers share).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    shift = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shift)] = b
            shift += 1
    return table


def _utf8_length(lead: int) -> int:
    if lead < 0x80:
        return 1
    if lead >> 5 == 0b110:
        return 2
    if lead >> 4 == 0b1110:
        return 3
    if lead >> 3 == 0b11110:
        return 4
    return 0  # a continuation byte, or not UTF-8


def _pending(data: bytes) -> bytes:
    """The incomplete last character of a valid UTF-8 stream (empty when it ends complete)."""
    for back in range(1, min(4, len(data)) + 1):
        lead = data[-back]
        if lead >> 6 != 0b10:
            return data[-back:] if _utf8_length(lead) > back else b""
    return b""


class _Vocab:
    """Each token's raw bytes, and the masks of tokens allowed after given pending bytes."""

    def __init__(self, tokenizer: Any) -> None:
        import torch

        decoder = _byte_decoder()
        self.size = len(tokenizer)
        self.eos = int(tokenizer.eos_token_id)
        special = set(getattr(tokenizer, "all_special_ids", []))
        self.bytes: list[bytes | None] = []
        for token_id in range(self.size):
            piece = tokenizer.convert_ids_to_tokens(token_id)
            if token_id in special or piece is None or any(c not in decoder for c in piece):
                self.bytes.append(None)
            else:
                self.bytes.append(bytes(decoder[c] for c in piece))
        self._masks: dict[tuple[str | None, bytes, bool], Any] = {}
        self._prefixes: dict[tuple[str | None, bool], frozenset[bytes]] = {}
        self._torch = torch

    def prefixes(self, script: str | None, letters: bool = False) -> frozenset[bytes]:
        """Every proper UTF-8 prefix of a character an answer in `script` may hold (`letters`:
        of a letter of that script)."""
        got = self._prefixes.get((script, letters))
        if got is None:
            found: set[bytes] = set()
            for cp in range(0x80, _MAX_CODE_POINT):
                if 0xD800 <= cp <= 0xDFFF:
                    continue
                ch = chr(cp)
                if _is_letter(ch, script) if letters else _char_ok(ch, script):
                    encoded = ch.encode("utf-8")
                    found.update(encoded[:n] for n in range(1, len(encoded)))
            got = self._prefixes[(script, letters)] = frozenset(found)
        return got

    def mask(self, script: str | None, pending: bytes, need_letter: bool = False) -> Any:
        """Bool tensor: tokens that may follow `pending` in an answer written in `script`.

        `need_letter`: the answer has no letter yet, so `pending` and the token must make one
        of the script's letters, or a longer start of one (a reply of digits and dots is in no
        language).
        """
        key = (script, pending, need_letter)
        got = self._masks.get(key)
        if got is None:
            prefixes = self.prefixes(script)
            letter_prefixes = self.prefixes(script, letters=True) if need_letter else None
            allowed = [self._allowed(script, prefixes, pending, b, letter_prefixes)
                       for b in self.bytes]
            got = self._masks[key] = self._torch.tensor(allowed, dtype=self._torch.bool)
        return got

    @staticmethod
    def _allowed(
        script: str | None,
        prefixes: frozenset[bytes],
        pending: bytes,
        token: bytes | None,
        letter_prefixes: frozenset[bytes] | None = None,
    ) -> bool:
        if token is None:
            return False
        data = pending + token
        tail = _pending(data)
        if tail and tail not in prefixes:
            return False  # a character that could never be completed in this script
        try:
            text = data[: len(data) - len(tail)].decode("utf-8")
        except UnicodeDecodeError:
            return False
        if not all(_char_ok(ch, script) for ch in text):
            return False
        if letter_prefixes is None:
            return True
        return any(_is_letter(ch, script) for ch in text) or (
            bool(tail) and tail in letter_prefixes
        )


class AnswerGuard:
    """A transformers LogitsProcessor that keeps one batch of answers non-empty and in script.

    Args:
        vocab: the tokenizer's byte table (`answer_guard` builds and shares it).
        prompts: the prompt of each row of the batch, in order.
        prompt_length: tokens of (padded) prompt before the answer starts.
    """

    def __init__(self, vocab: _Vocab, prompts: list[str], prompt_length: int) -> None:
        self.vocab = vocab
        self.scripts = [dominant_script(p) for p in prompts]
        self.start = prompt_length

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = self.vocab._torch
        # Some backends widen the logits past the tokenizer's size; those ids are never text.
        width = scores.shape[1]
        for row in range(input_ids.shape[0]):
            generated = input_ids[row, self.start:].tolist()
            data = b"".join(self.vocab.bytes[t] or b"" for t in generated)
            pending = _pending(data[-4:])
            text = data[: len(data) - len(pending)].decode("utf-8", "ignore")
            has_letter = any(_is_letter(ch, self.scripts[row]) for ch in text)
            # Still letterless: this token must complete a letter of the script or go on writing
            # one, so a letter comes within a character's bytes of the start.
            allowed = self.vocab.mask(self.scripts[row], pending, not has_letter)
            full = torch.zeros(width, dtype=torch.bool, device=scores.device)
            full[: min(width, allowed.numel())] = allowed[:width].to(scores.device)
            # The answer may end only once it holds a letter and no half character.
            full[self.vocab.eos] = not pending and has_letter
            masked = scores[row].masked_fill(~full, float("-inf"))
            if not bool(torch.isfinite(masked).any()):
                # Earlier processors (no-repeat n-grams) banned every allowed token: choose
                # among the allowed ones alike rather than emit a banned one or nothing.
                masked = torch.where(full, torch.zeros_like(masked), masked)
            scores[row] = masked
        return scores


class AnswerGuardFactory:
    """Makes the `AnswerGuard` of each generation call; the byte table is built once per tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.vocab = _Vocab(tokenizer)

    def __call__(self, prompts: list[str], prompt_length: int) -> AnswerGuard:
        return AnswerGuard(self.vocab, prompts, prompt_length)


def answer_guard(tokenizer: Any) -> AnswerGuardFactory:
    """A factory of answer guards for `tokenizer` (byte-level BPE, like the local model's)."""
    return AnswerGuardFactory(tokenizer)
