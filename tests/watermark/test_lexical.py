from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.localmodel import read_corpus_texts
from distillguard.watermark import TextWatermarker, detect_lexical
from distillguard.watermark import _formats as F
from distillguard.watermark import _lexical as L
from distillguard.watermark._synonyms import BY_FIRST, GROUPS, Group, _index

from .keys import fixed_key


def test_stream_equals_apply_for_any_split(corpora_dir: Path) -> None:
    key = fixed_key(102)
    wm = key.text_watermarker("acct-1")
    texts = read_corpus_texts(["wildchat_1k"], 150, root=corpora_dir)
    rng = random.Random(0)
    changed = 0
    for text in texts:
        whole = wm.apply(text)
        changed += whole != text
        stream, out, i = wm.stream(), [], 0
        while i < len(text):
            j = i + rng.randint(1, 9)
            out.append(stream.feed(text[i:j]))
            i = j
        out.append(stream.finish())
        assert "".join(out) == whole
    assert changed > 10


def test_code_urls_and_case_are_respected() -> None:
    text = (
        "It was often big. Often\n```\nbig = often()\n```\nsee `often big` "
        "and https://often.example/big or well-known big-data. BIG often"
    )
    keys = [fixed_key(103 + i) for i in range(12)]
    outs = [k.text_watermarker("x").apply(text) for k in keys]
    assert any(o != text for o in outs)
    for out in outs:
        assert "```\nbig = often()\n```" in out
        assert "`often big`" in out and "https://often.example/big" in out
        assert "big-data" in out and "BIG" in out
        words = out.split()
        assert words[2] in ("often", "frequently") and words[4] in ("Often", "Frequently")


def test_dataset_detection_and_controls(corpora_dir: Path) -> None:
    texts = read_corpus_texts(["arena_hard", "wildchat_1k"], 300, root=corpora_dir)
    key = fixed_key(104)
    marked = [key.text_watermarker("acct-9").apply(t) for t in texts]
    det = detect_lexical(key, marked)
    assert det.scored_tuples > 50 and det.p_value < 1e-12
    assert all(p > 1e-4 for p in det.controls)
    assert detect_lexical(key, texts).p_value > 1e-3
    assert detect_lexical(fixed_key(105), marked).p_value > 1e-3


def _bundles(texts: list[str], words: int) -> list[list[str]]:
    """Consecutive texts grouped until each group has at least `words` words."""
    out: list[list[str]] = [[]]
    count = 0
    for t in texts:
        if count >= words:
            out.append([])
            count = 0
        out[-1].append(t)
        count += len(t.split())
    return out[:-1] if count < words else out


def _english(corpora_dir: Path, per_corpus: int) -> list[str]:
    texts = read_corpus_texts(
        ["arena_hard", "sharegpt_1k", "wildchat_1k"], per_corpus, root=corpora_dir
    )
    seen: set[str] = set()
    out = []
    for t in texts:  # English, >= 150 words, one per opening (the corpora repeat prompt templates)
        if (
            len(t.split()) >= 150
            and sum(c.isascii() for c in t) > 0.97 * len(t)
            and t[:80] not in seen
        ):
            seen.add(t[:80])
            out.append(t)
    return out


def test_detection_from_2000_words(corpora_dir: Path) -> None:
    """2,000-word samples of real answers: the issue's target is p <= 1e-6 for each, met for all
    six here (docs/watermark.md). Unmarked text and another key stay unremarkable."""
    key = fixed_key(106)
    wm = key.text_watermarker("acct-2")
    bundles = [
        b
        for b in _bundles(_english(corpora_dir, 150), 2000)
        if sum(len(t.split()) for t in b) <= 2600
    ]
    assert len(bundles) >= 6
    ps = [detect_lexical(key, [wm.apply(t) for t in b]).p_value for b in bundles[:6]]
    assert max(ps) <= 1e-6
    assert all(detect_lexical(key, b).p_value > 1e-4 for b in bundles[:6])
    assert all(
        detect_lexical(fixed_key(107), [wm.apply(t) for t in b]).p_value > 1e-4 for b in bundles[:3]
    )


def test_attribution_names_each_account_not_a_third(corpora_dir: Path) -> None:
    """10,000 words per account: each of two accounts is named at p <= 1e-3 among 1 M candidates
    (Bonferroni is linear in the count: 5,003 searched, p scaled to 1 M), the other account and
    an account that sent nothing are not, and nobody is named in the same texts unmarked."""
    key = fixed_key(108)
    texts = _english(corpora_dir, 300)
    bundles = _bundles(texts, 10_000)
    assert len(bundles) >= 2
    one = [key.text_watermarker("acct-a").apply(t) for t in bundles[0]]
    two = [key.text_watermarker("acct-b").apply(t) for t in bundles[1]]
    assert (
        one != bundles[0] and [key.text_watermarker("acct-b").apply(t) for t in bundles[0]] != one
    )
    candidates = [f"acct-{i}" for i in range(5000)] + ["acct-a", "acct-b", "acct-c"]
    scale = 1e6 / len(candidates)
    for marked, who, other in ((one, "acct-a", "acct-b"), (two, "acct-b", "acct-a")):
        det = detect_lexical(key, marked, candidates=candidates, report_alpha=1.0)
        named = {m.account_id: m.p_value for m in det.accounts}
        assert named[who] * scale <= 1e-3
        assert named.get(other, 1.0) > 1e-2 and named.get("acct-c", 1.0) > 1e-2
    # the control: the same texts unmarked are neither detected nor attributed to anyone
    for plain in bundles[:2]:
        det = detect_lexical(key, plain, candidates=candidates, report_alpha=1.0)
        assert det.p_value > 1e-3 and all(m.p_value > 1e-2 for m in det.accounts)


def test_contractions_and_rules() -> None:
    """Contractions swap both ways, keep capitals, and never break questions or clause ends."""
    keys = [fixed_key(200 + i) for i in range(16)]
    text = "Do not worry. I am going home. Don't you know who you are? It's been long. Tell me what it is."
    raw = {k.text_watermarker("x").apply(text) for k in keys}
    # an apostrophe no group claims is itself a keyed choice, straight or typographic
    assert any("It's been" in o for o in raw) and any("It’s been" in o for o in raw)
    outs = {o.replace("’", "'") for o in raw}
    assert any("Don't worry" in o for o in outs) and any("Do not worry" in o for o in outs)
    assert any("I'm going" in o for o in outs)
    for out in outs:
        assert "Don't you know who you are?" in out and "It's been long." in out
        assert out.endswith("what it is.")


def test_perfect_would_and_determiner_rules() -> None:
    """ "I have"/"I've" only before a participle, "I would"/"I'd" never where "'d" is "had",
    "while"/"whilst" and "learned"/"learnt" never after a determiner."""
    text = (
        "I have seen it and I have a car. I would suggest this, but you'd better go; I'd already "
        "left. For a while, while we wait, we learned a lot from the learned man. They have finished."
    )
    outs = {fixed_key(800 + i).text_watermarker("x").apply(text).replace("’", "'") for i in range(24)}
    for a, b in (
        ("I have seen", "I've seen"),
        ("I would suggest", "I'd suggest"),
        (", while we", ", whilst we"),
        ("we learned a", "we learnt a"),
        ("They have finished", "They've finished"),
    ):
        assert any(a in o for o in outs) and any(b in o for o in outs), (a, b)
    for o in outs:
        assert "I have a car" in o and "you'd better go; I'd already left" in o
        assert "For a while," in o and "the learned man" in o


def test_meaning_kept_in_code_urls_numbers_quotes() -> None:
    """Nothing inside code (fenced, inline or pasted as prose), URLs, numbers with units,
    quotes or hyphenated words changes."""
    code = "if x is not None and self.big is not None: y = often(big)"
    css = 'text-align: center; color: red; <Box alignItems="center">'
    text = (
        "`do not big` and ```\nit is often\n``` then https://x.example/do-not-often "
        f"5-big km, 10big and 'often' here\n{code}\n{css}\nIt is not big, it is often big."
    )
    for i in range(12):
        out = fixed_key(300 + i).text_watermarker("x").apply(text)
        assert "`do not big`" in out and "```\nit is often\n```" in out
        assert "https://x.example/do-not-often" in out and "5-big km, 10big" in out
        assert "'often'" in out and code in out and css in out
    outs = {fixed_key(300 + i).text_watermarker("x").apply(text) for i in range(12)}
    assert len({o.splitlines()[-1] for o in outs}) > 1  # the prose line after the code is marked


def test_stream_one_character_at_a_time_keeps_compounds() -> None:
    # the item before a word may already be emitted when the word is decided: a stream must
    # still see the hyphen of "self-defense" and leave the compound alone, as apply does
    wm = fixed_key(102).text_watermarker("acct-1")
    text = "the ancient art of self-defense, and urging Dick to use his acrobatics from the circus coupled with"
    stream = wm.stream()
    out = "".join(stream.feed(ch) for ch in text) + stream.finish()
    assert out == wm.apply(text) and "self-defense" in out


# prose with the spelling, contraction and "among" groups added to the lexicon last, between
# code, numbers, quotes and apostrophes a split could cut anywhere
NEW_FORMS_TEXT = (
    "He is sure it will work: among the travelers, she is the one who organizes and prioritizes. "
    "You mustn't apologize, and that will stabilize the neighborhood's labor market.\n"
    "```\nfavor = 'he is'\n```\nThe behavioral judgment (aging, fiber, 3,000 km) was modeled, "
    "labeling and signaling the `color` of https://x.example/among centered theater... "
    "He'll standardize it, and she'll finalize the catalogs, fulfill the enrollment and honor each other."
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    which=st.integers(min_value=0, max_value=3),
    cuts=st.lists(st.integers(min_value=0, max_value=len(NEW_FORMS_TEXT)), max_size=40),
)
def test_stream_equals_apply_for_any_split_with_the_new_forms(which: int, cuts: list[int]) -> None:
    """Byte-exact for any split: the stream's output equals apply's, whatever the deltas (the
    lexicon's newer forms, and every format choice)."""
    text = (NEW_FORMS_TEXT, FORMATS_TEXT, LISTS_TEXT, SENTENCES_TEXT)[which]
    wm = fixed_key(110).text_watermarker("acct-3")
    stream, out, at = wm.stream(), [], 0
    for cut in sorted(min(c, len(text)) for c in cuts):
        out.append(stream.feed(text[at:cut]))
        at = cut
    out.append(stream.feed(text[at:]))
    out.append(stream.finish())
    assert "".join(out) == wm.apply(text)


def test_new_forms_are_keyed_choices() -> None:
    """Each added kind swaps both ways under some key, and code, URLs and numbers stay."""
    outs = [
        fixed_key(400 + i).text_watermarker("x").apply(NEW_FORMS_TEXT).replace("’", "'")
        for i in range(24)
    ]
    for a, b in (
        ("among the", "amongst the"),
        ("organizes", "organises"),
        ("He is sure", "He's sure"),
        ("it will work", "it'll work"),
        ("You mustn't", "You must not"),
        ("travelers", "travellers"),
        ("judgment", "judgement"),
        ("He'll standardize", "He will standardize"),
    ):
        assert any(a in o for o in outs) and any(b in o for o in outs), (a, b)
    for o in outs:
        assert (
            "```\nfavor = 'he is'\n```" in o and "https://x.example/among" in o and "3,000 km" in o
        )
        assert "`color`" in o


def test_adding_a_lexicon_group_moves_no_other_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lexicon ids are positions (append only) and format ids are fixed: a key's marks on every
    other choice stay the same when a group is appended."""
    assert {g: g - F.FORMAT_BASE for g in F.FORMATS} == {
        F.APOSTROPHE: 0, F.DASH: 1, F.BULLET: 2, F.ORDERED: 3, F.ABBREVIATION: 4, F.NUMBER_WORD: 5,
        F.THOUSANDS: 6, F.QUOTES: 7, F.SERIAL_COMMA: 8, F.PERCENT: 9, F.RANGE_DASH: 10,
        F.ELLIPSIS: 11, F.BOLD_COLON: 12, F.SENTENCE_SPACE: 13,
    }
    assert L.APOSTROPHE_GROUP == F.APOSTROPHE and len(GROUPS) < F.FORMAT_BASE
    grown = [*GROUPS, Group((("zyzzyva",), ("zyzzyvas",)), "manual")]
    index = _index(grown)
    assert all(index[w] == entries for w, entries in BY_FIRST.items())
    key = fixed_key(111)
    before = key.text_watermarker("acct-4").apply(FORMATS_TEXT + NEW_FORMS_TEXT)
    monkeypatch.setattr(L, "GROUPS", tuple(grown))
    monkeypatch.setattr(L, "BY_FIRST", index)
    assert key.text_watermarker("acct-4").apply(FORMATS_TEXT + NEW_FORMS_TEXT) == before


# prose with every format choice, beside code, maths, units, labels and URLs that must stay
FORMATS_TEXT = (
    "Here are the options—pick one. The plan — simple — works, e.g. the cat and i.e., the dog.\n"
    'She said "yes please," then "no".\n\n'
    "- the first item has 3 steps\n- the second has five parts\n  - nested item\n\n"
    "1. we have 10,000 users\n2. and costs $12500 per year\n\n"
    'Then a paragraph with `- not a list` and `3 steps` and `"q"`, {"a": 1}, see https://x.example/a—b, it takes 5 mins, '
    "step 3 items, x = 3 apples, 2 or 3 days.\n```\n- code\n1. code\nit has 3 steps—really\n```\n"
)
FORMS = (
    (F.DASH, ("options—pick", "options — pick")),
    (F.BULLET, ("- the first", "* the first")),
    (F.ORDERED, ("1. we have", "1) we have")),
    (F.ABBREVIATION, ("e.g. the cat", "e.g., the cat")),
    (F.NUMBER_WORD, ("has 3 steps", "has three steps")),
    (F.THOUSANDS, ("10,000 users", "10000 users")),
    (F.QUOTES, ('said "yes', "said “yes")),
)
# lists, percentages, ranges and ellipses, beside look-alikes that must stay: an introduction
# ("Yes, John and Mary"), two clauses, a pronoun after the conjunction, numbers in labels, phone
# numbers, dates, falling "ranges", code
LISTS_TEXT = (
    "We bought apples, pears and plums at the market. Cats, dogs, fish, and birds are pets, "
    "so I like red, green or blue shirts... Yes, John and Mary came. He left early, she stayed "
    "and cried. My aunt, uncle and I went.\nIt rose 50% in 5-10 days, then by 20 percent, wait… "
    "it took 2019-2020 and 3–4 weeks.\nCall 555-1234 on 2024-01-05, the score was 5-3, see "
    "(40%) and x = 5-10, 50%-ish.\n```\na, b and c\nrose 50% in 5-10 days...\n```\n"
    "- **Note:** it is\n- **Key point**: it was\n"
)
LIST_FORMS = (
    (F.SERIAL_COMMA, ("apples, pears and plums", "apples, pears, and plums")),
    (F.SERIAL_COMMA, ("fish, and birds", "fish and birds")),
    (F.SERIAL_COMMA, ("green or blue", "green, or blue")),
    (F.PERCENT, ("rose 50% in", "rose 50 percent in")),
    (F.PERCENT, ("by 20 percent,", "by 20%,")),
    (F.RANGE_DASH, ("in 5-10 days", "in 5–10 days")),
    (F.RANGE_DASH, ("took 2019-2020", "took 2019–2020")),
    (F.RANGE_DASH, ("and 3–4 weeks", "and 3-4 weeks")),
    (F.ELLIPSIS, ("shirts... Yes", "shirts… Yes")),
    (F.ELLIPSIS, ("wait… it", "wait... it")),
    (F.BOLD_COLON, ("**Note:**", "**Note**:")),
    (F.BOLD_COLON, ("point**:", "point:**")),
)


# sentence spaces, beside full stops that end no sentence: titles, "vs.", numbers, inline code,
# URLs, code
SENTENCES_TEXT = (
    "It works well. The plan is good!  Then we go? Yes, we go. Dr. Smith came, not Mr. Jones, "
    "and Python vs. Rust came up. Read 3. Then see `a. B` at https://x.example/a. B\n"
    "```\nok. Then\n```\nThe end. Fin"
)
SENTENCE_FORMS = (
    (F.SENTENCE_SPACE, ("well. The", "well.  The")),
    (F.SENTENCE_SPACE, ("good!  Then", "good! Then")),
    (F.SENTENCE_SPACE, ("go? Yes", "go?  Yes")),
)
# per text: the first fixed key's seed, its keyed choices and what must stay under every key
SWAP_TEXTS = (
    (
        FORMATS_TEXT,
        600,
        FORMS,
        (
            '`- not a list` and `3 steps` and `"q"`, {"a": 1}, see https://x.example/a—b, it takes 5 mins, ',
            "step 3 items, x = 3 apples, 2 or 3 days.",
            "```\n- code\n1. code\nit has 3 steps—really\n```\n",
        ),
    ),
    (
        LISTS_TEXT,
        650,
        LIST_FORMS,
        (
            "Yes, John and Mary came.",
            "He left early, she stayed and cried.",
            "My aunt, uncle and I went.",
            "Call 555-1234 on 2024-01-05, the score was 5-3, see (40%) and x = 5-10, 50%-ish.\n"
            "```\na, b and c\nrose 50% in 5-10 days...\n```\n",
        ),
    ),
    (
        SENTENCES_TEXT,
        670,
        SENTENCE_FORMS,
        ("Dr. Smith", "Mr. Jones", "vs. Rust", "Read 3. Then", "`a. B` at https://x.example/a. B\n",
         "```\nok. Then\n```\nThe end"),
    ),
)


@functools.cache
def _marked_under_keys(text: str, first_seed: int) -> tuple[str, ...]:
    return tuple(fixed_key(first_seed + i).text_watermarker("x").apply(text) for i in range(24))


@pytest.mark.parametrize(
    ("text", "first_seed", "before", "after"),
    [(text, seed, a, b) for text, seed, forms, _ in SWAP_TEXTS for _, (a, b) in forms],
    ids=[f"{g - F.FORMAT_BASE}:{a}" for _, _, forms, _ in SWAP_TEXTS for g, (a, _) in forms],
)
def test_format_choice_swaps_both_ways(text: str, first_seed: int, before: str, after: str) -> None:
    """Each format choice is a keyed choice: both forms appear under some of 24 keys."""
    outs = _marked_under_keys(text, first_seed)
    assert any(before in o for o in outs) and any(after in o for o in outs)


@pytest.mark.parametrize(("text", "first_seed", "kept"), [(t, s, k) for t, s, _, k in SWAP_TEXTS])
def test_format_choices_leave_code_and_look_alikes(text: str, first_seed: int, kept: tuple[str, ...]) -> None:
    """Code, inline code, URLs, units, labels, maths, introductions, clauses, phone numbers, dates,
    scores and abbreviations stay under every key (sentence spaces aside)."""
    for o in _marked_under_keys(text, first_seed):
        plain = o.replace(".  ", ". ")
        for k in kept:
            assert k in plain, k


def test_lists_keep_one_marker_and_quotes_pair() -> None:
    """A list keeps one marker for all its items; a swapped opening quote brings its closing one."""
    for o in _marked_under_keys(FORMATS_TEXT, 600):
        lines = o.splitlines()
        assert lines[3][0] == lines[4][0] and lines[7][1] == lines[8][1]  # one marker per list
        assert 'said "yes please," then' in o or "said “yes please,” then" in o  # quotes in pairs


def test_sentence_space_reads_alike_after_either_member_of_a_lexicon_group() -> None:
    """Whether a full stop ends a sentence reads the word before it, which a lexicon swap may
    have written: both members of every group must give the same answer, in either case."""
    for g in GROUPS:
        for cased in (str.lower, str.capitalize):
            ends = {F.ends_sentence(cased(m[-1]), ".") for m in g.members}
            assert len(ends) == 1, g


def test_list_choice_reads_the_same_after_any_earlier_choice() -> None:
    """Marked text is read back with every list choice in place: detection on a text of lists
    after contractions, numbers and abbreviations reaches every keyed context."""
    text = " ".join(
        f"We don't need {a}, {b} and {c} today, e.g. 3 pets, {b}, {c}, and {a} or 50% more."
        for a, b, c in zip(["cats", "dogs", "owls", "hens"] * 30, ["tea", "jam", "rice", "salt"] * 30,
                           ["milk", "bread", "eggs", "figs"][::-1] * 30, strict=True)
    )
    key = fixed_key(660)
    marked = TextWatermarker(key.versions[0], None).apply(text)
    ids = {F.SERIAL_COMMA, F.PERCENT}
    occ = L.occurrences([marked], groups=0, formats=ids)
    assert occ.ctx.size >= 8
    wm = TextWatermarker(key.versions[0], None, groups=0, formats=ids)
    assert wm.apply(marked) == TextWatermarker(key.versions[0], None, groups=0, formats=ids).apply(
        wm.apply(marked)
    )
    assert L.occurrences([text], groups=0, formats=ids).ctx.size == occ.ctx.size


OPEN, CLOSE = ('"', "“"), ('"', "”")


def _format_prose(group: int, rng: random.Random, words: list[str]) -> str:
    """A text with many occurrences of one format choice, each after two random words."""
    parts = []
    for _ in range(400):
        a, b, c = rng.sample(words, 3)
        parts.append(
            {
                F.DASH: f"{a} {b}—{c}.",
                F.BULLET: f"{a} {b}:\n\n- {c}\n- {a}\n\nok",
                F.ORDERED: f"{a} {b}:\n\n1. {c}\n2) {a}\n\nok",
                F.ABBREVIATION: f"{a} {b}, e.g. {c}.",
                F.NUMBER_WORD: f"{a} {b} {rng.choice(['4', 'seven'])} {c}s.",
                F.THOUSANDS: f"{a} {b} {rng.choice(['12345', '67,890'])} {c}.",
            F.QUOTES: f"{a} {b} {rng.choice(OPEN)}{c} {a}{rng.choice(CLOSE)} ok.",
                F.SERIAL_COMMA: f"the {a} {b}, {c}{rng.choice(['', ','])} and {a} ok.",
                F.PERCENT: f"{a} {b} {rng.choice(['12%', '7 percent'])} ok.",
                F.RANGE_DASH: f"{a} {b} {rng.choice(['3-4', '10–20'])} ok.",
                F.ELLIPSIS: f"{a} {b}{rng.choice(['...', '…'])} ok.",
                F.BOLD_COLON: f"{a} **{b}{rng.choice([':**', '**:'])} ok.",
                F.SENTENCE_SPACE: f"{a} {b}.{rng.choice(F.SENTENCE_SPACES)}{c.capitalize()} ok.",
            }[group]
        )
    return " ".join(parts)


@pytest.mark.parametrize("group", sorted({g for g, _ in FORMS + LIST_FORMS + SENTENCE_FORMS}))
def test_each_format_choice_is_detected_alone(group: int) -> None:
    """Marked with one format choice only, text is detected from that choice alone; the same text
    unmarked, or read with another key, is not."""
    rng = random.Random(group)
    words = [
        w
        for w in read_corpus_texts(["alpaca_5k"], 300)[0:300]
        for w in w.split()
        if w.isalpha() and w.islower()
    ]
    text = _format_prose(group, rng, sorted(set(words)))
    key = fixed_key(700)
    marked = TextWatermarker(key.versions[0], "x", groups=0, formats={group}).apply(text)
    assert marked != text
    assert detect_lexical(key, [marked], groups=0, formats={group}).p_value < 1e-6
    assert detect_lexical(key, [text], groups=0, formats={group}).p_value > 1e-3
    assert detect_lexical(fixed_key(701), [marked], groups=0, formats={group}).p_value > 1e-3


def test_key_files_without_lexical_context_read_as_before() -> None:
    """New keys key each choice on the stable words; a key file written before the setting
    existed keeps the two previous words, so marks already served stay readable."""
    from distillguard.watermark import WatermarkConfig

    assert WatermarkConfig().lexical_context == "stable"
    assert WatermarkConfig.from_dict({}).lexical_context == "words"
    assert WatermarkConfig.from_dict(WatermarkConfig().to_dict()).lexical_context == "stable"
    with pytest.raises(Exception, match="lexical_context"):
        WatermarkConfig(lexical_context="sentence")  # type: ignore[arg-type]


def test_stable_contexts_survive_a_rewording_of_the_other_choices(corpora_dir: Path) -> None:
    """Re-drawing every lexicon and format choice at random (the rule paraphraser, public
    lexicon) changes only the choices: under the stable context every other choice keeps its
    context, where the two-previous-words context loses those next to a reworded choice."""
    from distillguard.trace import RuleParaphrase, paraphrase_rules
    from distillguard.watermark import WatermarkConfig

    texts = read_corpus_texts(["wildchat_1k"], 150, root=corpora_dir)
    swap = RuleParaphrase(swap_rate=1.0, reorder_rate=0.0, normalise=False)
    kept = {}
    for mode in ("words", "stable"):
        key = fixed_key(120, WatermarkConfig(lexical_context=mode))
        marked = [key.text_watermarker("acct-1").apply(t) for t in texts]
        reworded = [paraphrase_rules(t, seed=i, rules=swap) for i, t in enumerate(marked)]
        before = set(L.occurrences(marked, stable=mode == "stable").ctx.tolist())
        after = set(L.occurrences(reworded, stable=mode == "stable").ctx.tolist())
        kept[mode] = len(before & after) / len(before)
        assert detect_lexical(key, marked).p_value < 1e-12
    assert kept["stable"] >= 0.97, kept
    assert 1 - kept["stable"] <= (1 - kept["words"]) / 2, kept  # loses at most half as many


def test_uniform_groups_are_choices_made_one_way_often() -> None:
    found = [(0, 1)] * L.UNIFORM_MIN_CONTEXTS + [(1, 2)] * (L.UNIFORM_MIN_CONTEXTS - 1)
    found += [(0, 3)] * L.UNIFORM_MIN_CONTEXTS + [(1, 3)]
    assert L.uniform_groups(found) == {1}


def test_a_normalised_choice_is_not_read(corpora_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Punctuation mapped to ASCII and runs of spaces to one leave the apostrophe, quote and
    sentence-space choices one way throughout: they are dropped, not read as coin flips that
    dilute the choices that survived; the texts unmarked, so normalised, stay unremarkable."""
    from distillguard.trace._scrub import normalise_punctuation

    texts = read_corpus_texts(["wildchat_1k"], 150, root=corpora_dir)
    key = fixed_key(121)
    marked = [normalise_punctuation(key.text_watermarker("acct-1").apply(t)) for t in texts]
    plain = [normalise_punctuation(t) for t in texts]
    occ = L.occurrences(marked, stable=True)
    assert occ.dropped_uniform > 50
    det = detect_lexical(key, marked)
    assert det.statistic == det.scored_tuples and det.p_value < 1e-12
    assert detect_lexical(key, plain).p_value > 1e-3
    monkeypatch.setattr(L, "UNIFORM_MIN_CONTEXTS", 10**9)
    diluted = detect_lexical(key, marked)
    assert diluted.scored_tuples > det.scored_tuples and diluted.log10_p > det.log10_p + 3
