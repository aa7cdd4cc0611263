"""What a prompt asks for, read from its words: hashed n-grams and a small linear model.

The regex flags of `_signatures` (step-by-step, rubric, training data) name the wrapper; an
operator rewords the wrapper per account, but not the task pool behind it (maths word problems,
coding exercises, instruction-generation seeds, function-calling items). This model reads the
task text: word 1- and 2-grams hashed into `N_FEATURES` columns (the hashing trick, as
scikit-learn's `HashingVectorizer`: nothing is stored but the weights) and a logistic model
(scikit-learn's `SGDClassifier`) trained on the
shipped corpora, `distill` sets (texts sent to harvest training data) against `benign` ones
(people using an assistant), the permissive sets only (`TRAINING_SETS`). It is trained on
first use in the process, in a few seconds, from the files that ship with the package (no
download), and kept for the rest of the process.

The corpora's `kind` is provenance, not behaviour: a student pastes a maths word problem too.
So the probability is never a verdict on its own; `_rarity` weighs an account's share of
distill-like prompts by how rare that share is among the log's human-looking accounts.

Features are also the embedding of the `mmd` detector (`embed`): the same hashed n-grams,
projected to a few dense dimensions.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from distillguard._data import corpora_root
from distillguard._errors import ConfigError

#: Hashed feature columns (word 1- and 2-grams).
N_FEATURES = 2**18
#: Only the start of a prompt is read: the task is stated there, and it bounds the cost.
MAX_CHARS = 600
#: L2 penalty of the logistic model (scikit-learn's SGD `alpha`); measured on a 20% split of
#: the corpora, 1e-5 to 1e-6 give the same held-out accuracy.
_ALPHA = 1e-5
#: The sets it learns from: the permissive ones (MIT, Apache-2.0, CC BY, ODC-BY; see
#: data/corpora/README.md), which every copy of distillguard ships, so the model is the same
#: wherever it is trained. The non-commercial sets and ShareGPT are left out even when present.
TRAINING_SETS = (
    "wildchat_1k", "arena_hard", "bfcl_live", "self_instruct_user_oriented",  # benign
    "self_instruct_seed_tasks", "gsm8k", "humaneval", "mbpp", "bfcl_curated",  # distill
)
_EPOCHS = 15
_SEED = 20261207


# scikit-learn's default token pattern, `\b\w\w+\b`: a maximal run of two or more word
# characters. Written without the `\b`s, which match the same runs (a greedy run of word
# characters starts and ends at a boundary) and slow the regex engine's Unicode path.
_TOKEN = r"\w\w+"
_BIGRAM_MIX = np.uint64(0x9E3779B97F4A7C15)
# N_FEATURES is a power of two: a hash's column is its low bits (the remainder, by a mask).
_COLUMN_MASK = np.uint64(N_FEATURES - 1)


def featurize(texts: Sequence[str] | pl.Series) -> sp.csr_matrix:
    """Hashed, L2-normalised word 1-2-gram counts of each text's first `MAX_CHARS` characters.

    What scikit-learn's `HashingVectorizer(ngram_range=(1, 2), alternate_sign=False)` computes
    (other hash values), done with polars and numpy: the signals run in a thread beside the
    replay, and the vectorizer's per-document Python tokenizer holds the GIL the replay needs.
    A Series is read as it is (no Python strings are made).
    """
    series = texts if isinstance(texts, pl.Series) else pl.Series("t", list(texts), pl.String)
    words = (series.cast(pl.String).fill_null("").str.head(MAX_CHARS).str.to_lowercase()
             .str.extract_all(_TOKEN))
    lens = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    h = words.explode().drop_nulls().hash(17).to_numpy()
    # 32-bit rows and columns: half the memory traffic of the sparse matrix's conversion.
    row = np.repeat(np.arange(len(lens), dtype=np.int32), lens)
    assert len(row) == len(h), "one hash per word"
    # A bigram is two neighbouring words of one text: their hashes mixed.
    pair = row[:-1] == row[1:]
    with np.errstate(over="ignore"):
        bigram = (h[:-1][pair] * _BIGRAM_MIX) ^ h[1:][pair]
    rows = np.concatenate([row, row[:-1][pair]])
    # Columns stored flipped (`_COLUMN_MASK - col`), so that each row's sorted columns run
    # high to low: the order scipy's product of a diagonal matrix and the counts leaves them
    # in, which the model's dot product sums in (the same floats as that product).
    flipped = (_COLUMN_MASK - (np.concatenate([h, bigram]) & _COLUMN_MASK)).astype(np.int32)
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, flipped)),
                      shape=(len(lens), N_FEATURES))
    x.sum_duplicates()  # counts
    per_row = np.diff(x.indptr)
    # Squared counts are small integers: their float32 sum is exact in any order.
    norm = np.zeros(len(lens), np.float32)
    filled = per_row > 0
    norm[filled] = np.sqrt(np.add.reduceat(x.data * x.data, x.indptr[:-1][filled]))
    norm[norm == 0] = 1.0
    scale = (1.0 / norm).astype(np.float32)
    out = sp.csr_matrix((x.data * np.repeat(scale, per_row),
                         np.int32(N_FEATURES - 1) - x.indices, x.indptr), shape=x.shape)
    return out


def read_corpora(root: Path | None = None) -> tuple[list[str], np.ndarray]:
    """The `TRAINING_SETS` texts found in `root` and their labels (1 = `distill`, 0 = `benign`).

    Raises:
        ConfigError: the folder lacks either kind (the model needs both).
    """
    root = corpora_root() if root is None else root
    texts: list[str] = []
    labels: list[int] = []
    for name in TRAINING_SETS:
        path = root / f"{name}.jsonl.gz"
        if not path.is_file():
            continue
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                kind = row.get("kind")
                if kind in ("distill", "benign") and row.get("text"):
                    texts.append(str(row["text"]))
                    labels.append(int(kind == "distill"))
    y = np.asarray(labels, np.int8)
    if not len(y) or y.all() or not y.any():
        raise ConfigError(
            f"The prompt corpora in {root} must hold both `distill` and `benign` sets to train "
            f"the content model ({int(y.sum())} distill and {int(len(y) - y.sum())} benign "
            "texts found); point $DISTILLGUARD_CORPORA at a complete copy."
        )
    return texts, y


@dataclass(frozen=True)
class ContentModel:
    """A logistic model over `featurize` columns: `coef` (N_FEATURES,) and `intercept`."""

    coef: np.ndarray
    intercept: float
    trained_on: int  # texts

    def probability(self, texts: Sequence[str] | pl.Series) -> np.ndarray:
        """P(distill) of each text (float32)."""
        if not len(texts):
            return np.zeros(0, np.float32)
        z = featurize(texts) @ self.coef + self.intercept
        out: np.ndarray = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        return out


def train(texts: Sequence[str], labels: np.ndarray) -> ContentModel:
    """Fit the model (balanced classes, fixed seed: the same corpora give the same weights)."""
    from sklearn.linear_model import SGDClassifier

    clf = SGDClassifier(loss="log_loss", alpha=_ALPHA, max_iter=_EPOCHS, tol=None,
                        class_weight="balanced", random_state=_SEED)
    clf.fit(featurize(texts), labels)
    return ContentModel(coef=clf.coef_[0].astype(np.float64), intercept=float(clf.intercept_[0]),
                        trained_on=len(texts))


_LOCK = threading.Lock()
_MODELS: dict[Path, ContentModel] = {}


def content_model(root: Path | None = None) -> ContentModel:
    """The model trained on the corpora in `root` (default: `corpora_root()`), once per process.

    Signals are computed in a background thread, so the first call trains under a lock.
    """
    root = corpora_root() if root is None else root
    with _LOCK:
        model = _MODELS.get(root)
        if model is None:
            model = train(*read_corpora(root))
            _MODELS[root] = model
    return model
