"""Items (detect/_items.py): the task line's key and topic sketch, the book of who sent which
item, and the two-sided overlap and pool similarity the cohort evidence reads."""

from __future__ import annotations

import numpy as np
import polars as pl

from distillguard.detect._items import (
    TOPIC_BITS,
    ItemBook,
    best_overlap,
    item_signals,
    pool_similarity,
)

TASK = "Janet has 16 ducks that lay eggs every day. How many eggs does she collect in a week?"


def test_the_same_task_in_two_frames_is_one_item() -> None:
    got = item_signals(
        pl.Series(
            [
                f"{TASK}\n\nLet's think step by step.",
                f"Problem:\n{TASK.upper()}!\n\nReason carefully, then give the final answer.",
                f"{TASK.replace('week', 'month')}\n\nLet's think step by step.",
                "hi there",
                None,
            ]
        )
    )
    item = got["item"].to_list()
    assert item[0] == item[1] != item[2]
    assert item[3] is None and item[4] is None
    assert got["topic"][0] == got["topic"][1] and got["topic"][3] == 0


def _book(rows: list[tuple[int, int, int]]) -> ItemBook:
    """A book fed (window, account, item) rows, in order, one window at a time."""
    book = ItemBook()
    book.grow(8)
    w = np.array([r[0] for r in rows], np.int64)
    batch = book.prepare(
        w,
        np.array([r[1] for r in rows], np.int64),
        pl.Series([r[2] for r in rows], dtype=pl.UInt64),
        np.zeros(len(rows), np.uint32),
    )
    for window in np.unique(w):
        book.apply(batch, int(window))
    return book


def test_the_book_counts_distinct_items_and_the_pairs_of_shared_ones() -> None:
    book = _book([(0, 0, 11), (0, 0, 11), (0, 0, 12), (1, 1, 13), (2, 2, 11), (3, 2, 11)])
    assert book.items[:3].tolist() == [2, 1, 1]
    shared = book.shared_pairs()
    # Item 11 became shared in window 2: its first sender (0) and the second (2), once each.
    assert sorted(map(tuple, shared.tolist())) == [(0, 0, 0), (0, 2, 1)]


def test_a_second_batch_finds_what_the_first_one_coded() -> None:
    book = _book([(0, 0, 11), (0, 1, 12)])
    batch = book.prepare(
        np.array([1, 1]),
        np.array([2, 0]),
        pl.Series([12, 11], dtype=pl.UInt64),
        np.zeros(2, np.uint32),
    )
    book.apply(batch, 1)
    assert book.items[:3].tolist() == [1, 1, 1]
    assert sorted(map(tuple, book.shared_pairs().tolist())) == [(1, 1, 0), (1, 2, 1)]


def test_overlap_is_two_sided() -> None:
    # Accounts 0 and 1 ran the same 20 items; account 2's slice of 3 items is inside both runs.
    rows = [(c, a, a) for c in range(20) for a in (0, 1)] + [(c, 2, 2) for c in range(3)]
    shared = np.array(rows, np.int64)
    items = np.array([20, 20, 3])
    share, count = best_overlap(shared, items, np.array([0, 1, 2]), max_partners=64)
    assert share.tolist() == [1.0, 1.0, 3 / 20]
    assert count.tolist() == [20, 20, 3]
    # Read with one partner per item, account 2 sees only account 0 (its first sender).
    share, _ = best_overlap(shared, items, np.array([1, 2]), max_partners=1)
    assert share.tolist() == [1.0, 3 / 20]


def test_pool_similarity_tells_a_pool_from_an_account_of_its_own() -> None:
    rng = np.random.default_rng(5)
    pool = rng.normal(size=TOPIC_BITS)
    members = pool + 0.3 * rng.normal(size=(30, TOPIC_BITS))
    lone = rng.normal(size=(1, TOPIC_BITS))
    others = rng.normal(size=(200, TOPIC_BITS))
    topic = np.vstack([members, lone, others])
    group = np.zeros(len(topic), bool)
    group[:31] = True
    sim = pool_similarity(topic, np.ones(len(topic), bool), group, np.zeros(len(topic), np.int64))
    assert sim[:30].min() > 0.6
    assert sim[30] < 0.4
    assert (sim[31:] == 0).all()


def test_the_book_fed_in_batches_matches_a_count_from_scratch() -> None:
    """Batch by batch (the codebooks merged, never rebuilt), the book's distinct items per
    account and its shared pairs are those a plain pass over every row so far gives."""
    rng = np.random.default_rng(9)
    book = ItemBook()
    book.grow(40)
    senders: dict[int, list[int]] = {}  # item -> its distinct accounts, in order of first use
    seen = 0
    for batch_w in range(12):
        n = int(rng.integers(0, 300))
        acct = rng.integers(0, 40, n)
        item = rng.integers(0, 150 + 40 * batch_w, n)  # old items come back, new ones join
        w = np.full(n, batch_w)
        missing = rng.random(n) < 0.1
        series = pl.Series([None if m else int(i) for m, i in zip(missing, item, strict=True)],
                           dtype=pl.UInt64)
        batch = book.prepare(w, acct, series, np.zeros(n, np.uint32))
        book.apply(batch, batch_w)
        for a, i, m in zip(acct.tolist(), item.tolist(), missing.tolist(), strict=True):
            if not m and a not in senders.setdefault(i, []):
                senders[i].append(a)
        seen += n
        items = np.zeros(40, np.int64)
        for accounts in senders.values():
            items[accounts] += 1
        assert np.array_equal(book.items[:40], items)
        got = sorted(map(tuple, book.shared_pairs()[:, 1:].tolist()))
        shared = {i: a for i, a in senders.items() if len(a) >= 2}
        want = sorted((a, rank) for accounts in shared.values() for rank, a in enumerate(accounts))
        assert got == want
        # One code per shared item, the same for each of its senders.
        codes = book.shared_pairs()[:, 0]
        assert len(np.unique(codes)) == len(shared)
    assert seen
