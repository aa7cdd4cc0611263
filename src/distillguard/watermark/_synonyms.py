"""Synonym pairs for the lexical watermark.

Chosen to be interchangeable in almost any sentence where either appears: same
part of speech, same inflection, no common second sense that the other word
lacks (so "hard"/"difficult", "use"/"utilize", "odd"/"strange" are left out).
Each word belongs to one pair only.
"""

from __future__ import annotations

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

GROUP: dict[str, int] = {}
for _i, (_a, _b) in enumerate(PAIRS):
    for _w in (_a, _b):
        if _w in GROUP:  # pragma: no cover - guards the table above
            raise RuntimeError(f"synonym {_w!r} is in two pairs")
        GROUP[_w] = _i
