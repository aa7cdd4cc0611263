"""Precision and recall over a score: the curve and average precision.

Same definitions as scikit-learn's `precision_recall_curve` and `average_precision_score`
(the tests hold them to it), done in numpy so the evaluator does not import scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, eq=False)
class PRCurve:
    """Precision and recall at every distinct score threshold, highest threshold last.

    `precision[i]`, `recall[i]` are for "flag when score >= thresholds[i]"; a final point
    (precision 1, recall 0) closes the curve as scikit-learn does.
    `average_precision` is sum over thresholds of (R_n - R_{n-1}) * P_n; nan with no positives.
    """

    precision: npt.NDArray[np.float64]
    recall: npt.NDArray[np.float64]
    thresholds: npt.NDArray[np.float64]
    average_precision: float


def pr_curve(y_true: npt.ArrayLike, score: npt.ArrayLike) -> PRCurve:
    """Precision/recall curve of `score` against the binary labels `y_true` (1 = positive)."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"y_true has shape {y.shape} but score has shape {s.shape}.")
    positives = int(y.sum())
    if y.size == 0:
        empty = np.array([], dtype=np.float64)
        return PRCurve(np.array([1.0]), np.array([0.0]), empty, float("nan"))
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    # The last index of each run of equal scores: thresholds are the distinct scores.
    distinct = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]
    tps = np.cumsum(y_sorted)[distinct].astype(np.float64)
    fps = (distinct + 1).astype(np.float64) - tps
    thresholds = s_sorted[distinct]
    precision = tps / (tps + fps)
    if positives == 0:
        recall = np.full_like(tps, np.nan)
        ap = float("nan")
    else:
        recall = tps / positives
        ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    # Low-to-high threshold order, closed by (precision 1, recall 0), as scikit-learn returns.
    return PRCurve(
        precision=np.r_[precision[::-1], 1.0],
        recall=np.r_[recall[::-1], 0.0],
        thresholds=thresholds[::-1].copy(),
        average_precision=ap,
    )
