"""The `mmd` baseline: a benign-calibrated two-sample test on windows of an account's queries.

The published window test (Liu 2026: maximum mean discrepancy of query embeddings against
benign reference traffic; 0.3 % false positives, 100 % of pure attacker windows, 90.5 % on
average over attacker fractions) adapted to accounts, with embeddings that run on a CPU:

- **embedding** `phi(x)`: the prompt's hashed, L2-normalised word 1-2-grams
  (`_content.featurize`) under a sparse random projection to `mmd.components` dimensions
  (Johnson-Lindenstrauss: inner products are kept), so `k(x, y) = phi(x) . phi(y)` is about
  the cosine similarity of the two prompts' n-gram counts. Measured on the corpora (windows of
  20 from one source, threshold at 0.3 % of benign windows), this linear kernel at 256
  dimensions found more task-pool windows than a Gaussian kernel through random Fourier
  features at the median bandwidth (maths 98 % vs 95 %, code 71 % vs 67 %) and at 64
  dimensions far fewer (93 %, 12 %).
- **statistic**: for a window W of n consecutive requests of one account,
  `MMD^2(W, R) = || mean phi(W) - mean phi(R) ||^2` (the biased estimator; R the reference).
- **reference and calibration**: the benign sets of the shipped corpora (people using an
  assistant), split in two: one half is R, the other gives `mmd.null_windows` random benign
  windows of each size n, whose (1 - `mmd.window_fpr`) quantile is the threshold for n.
- **accounts**: each account's requests in time order are cut into windows of
  `mmd.window_requests` (the last one shorter; windows under `mmd.min_requests` are not
  tested). The account is throttled at the end of its first window over the threshold
  (`first_flagged_ts`: that window's last request, decided as it closes).

Score = r / (1 + r), r the largest window's MMD^2 over its threshold (above 0.5 exactly when
flagged). Accounts only: the baseline assembles no campaign (its table is empty).
The test is per window: an account with many windows gets many chances to cross.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from distillguard.detect._config import MMDConfig, load_config
from distillguard.detect._content import featurize, read_corpora
from distillguard.detect._registry import ScanResult

_EVENT_BATCH = 100_000


@dataclass(frozen=True)
class Embedding:
    """The fixed map from text to its projected n-gram vector (see the module docstring)."""

    projection: object  # a fitted sklearn SparseRandomProjection
    components: int

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """`phi` of each text, float32 (len(texts), components)."""
        if not len(texts):
            return np.zeros((0, self.components), np.float32)
        out: np.ndarray = np.asarray(
            self.projection.transform(featurize(texts)), np.float32)  # type: ignore[attr-defined]
        return out


@dataclass(frozen=True)
class Reference:
    """The benign reference: its mean embedding and the threshold for each window size."""

    embed: Embedding
    mean: np.ndarray
    threshold: np.ndarray  # index n: the MMD^2 benign windows of n requests pass w.p. window_fpr


def build_reference(cfg: MMDConfig, benign: Sequence[str]) -> Reference:
    """Fit the embedding on benign texts and calibrate the thresholds (seeded: reproducible)."""
    from sklearn.random_projection import SparseRandomProjection

    if len(benign) < 4 * cfg.window_requests:
        raise ValueError(
            f"the mmd reference needs at least {4 * cfg.window_requests} benign texts, "
            f"got {len(benign)}"
        )
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(benign))
    half = len(order) // 2
    ref_texts = [benign[i] for i in order[:half]]
    null_texts = [benign[i] for i in order[half:]]
    x_ref = featurize(ref_texts)
    proj = SparseRandomProjection(n_components=cfg.components, dense_output=True,
                                  random_state=cfg.seed).fit(x_ref)
    embed = Embedding(proj, cfg.components)
    mean = embed(ref_texts).astype(np.float64).mean(axis=0)
    phi_null = embed(null_texts).astype(np.float64)
    threshold = np.full(cfg.window_requests + 1, np.inf)
    for n in range(cfg.min_requests, cfg.window_requests + 1):
        pick = rng.integers(0, len(phi_null), (cfg.null_windows, n))
        stat = ((phi_null[pick].mean(axis=1) - mean) ** 2).sum(axis=1)
        threshold[n] = float(np.quantile(stat, 1.0 - cfg.window_fpr))
    return Reference(embed, mean, threshold)


def corpora_reference(cfg: MMDConfig) -> Reference:
    """The reference built from the shipped corpora's benign sets."""
    texts, labels = read_corpora()
    return build_reference(cfg, [t for t, y in zip(texts, labels, strict=True) if y == 0])


def window_table(log_dir: Path, cfg: MMDConfig, ref: Reference) -> pa.Table:
    """One row per (account, window): account_id, window_index, requests, last_ts, mmd2, threshold.

    Windows are `cfg.window_requests` consecutive requests of an account in time order.
    """
    import duckdb

    from distillguard._logsql import register_view

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        view = register_view(con, log_dir, "events", "__dg_events")
        con.execute(
            f"""CREATE TEMP TABLE seq AS
            SELECT account_id, ts, coalesce(prompt, '') AS prompt,
                   (row_number() OVER (PARTITION BY account_id ORDER BY ts, event_id) - 1)
                       // $w AS window_index
            FROM "{view}" """,
            {"w": cfg.window_requests},
        )
        con.execute(
            """CREATE TEMP TABLE wins AS
            SELECT account_id, window_index, count(*)::BIGINT AS requests, max(ts) AS last_ts,
                   (row_number() OVER (ORDER BY account_id, window_index) - 1)::BIGINT AS wid
            FROM seq GROUP BY account_id, window_index"""
        )
        wins = con.sql("SELECT account_id, window_index, requests, last_ts FROM wins ORDER BY wid"
                       ).to_arrow_table()
        sums = np.zeros((wins.num_rows, len(ref.mean)))
        reader: pa.RecordBatchReader = con.sql(
            "SELECT w.wid, s.prompt FROM seq s JOIN wins w USING (account_id, window_index)"
        ).to_arrow_reader(_EVENT_BATCH)
        for batch in reader:
            wid = batch.column(0).to_numpy()
            prompts = batch.column(1).to_pylist()
            # Distinct prompts only: templates, benchmark items and retries repeat.
            uniq, at = np.unique(np.asarray(prompts, dtype=object), return_inverse=True)
            phi = ref.embed(uniq.tolist())[at]
            np.add.at(sums, wid, phi)
    finally:
        con.close()
    n = wins.column("requests").to_numpy()
    mmd2 = ((sums / np.maximum(n, 1)[:, None] - ref.mean) ** 2).sum(axis=1)
    thr = ref.threshold[np.minimum(n, len(ref.threshold) - 1)]
    return wins.append_column("mmd2", pa.array(mmd2)).append_column(
        "threshold", pa.array(thr))


def mmd_verdicts(windows: pa.Table, cfg: MMDConfig) -> pa.Table:
    """Per-account verdicts from the window table (see the module docstring)."""
    import polars as pl

    from distillguard.traffic import conform

    w = pl.from_arrow(windows)
    assert isinstance(w, pl.DataFrame)
    w = w.with_columns((pl.col("mmd2") / pl.col("threshold")).alias("ratio"))
    over = w.filter(pl.col("ratio") > 1.0)
    first = over.sort("account_id", "window_index").group_by("account_id", maintain_order=True).first()
    acc = w.group_by("account_id", maintain_order=True).agg(
        pl.col("ratio").max().alias("r"), pl.len().alias("windows"),
        pl.col("requests").sum().alias("events"),
        (pl.col("ratio") > 1.0).sum().alias("over"),
        pl.col("mmd2").get(pl.col("ratio").arg_max()).alias("best_mmd2"),
        pl.col("threshold").get(pl.col("ratio").arg_max()).alias("best_threshold"),
    ).join(first.select("account_id", pl.col("window_index").alias("first_window"),
                        pl.col("last_ts").alias("first_flagged_ts"),
                        pl.col("mmd2").alias("first_mmd2"),
                        pl.col("threshold").alias("first_threshold"),
                        pl.col("requests").alias("first_requests")),
           on="account_id", how="left").sort("account_id")
    reasons: list[str] = []
    evidence: list[str] = []
    q = 100 * (1 - cfg.window_fpr)
    for row in acc.iter_rows(named=True):
        r = row["r"] if np.isfinite(row["r"]) else 0.0
        if row["first_window"] is not None:
            start = row["first_window"] * cfg.window_requests + 1
            why = [
                f"requests {start}-{start + row['first_requests'] - 1} (window "
                f"{row['first_window'] + 1}) differ from benign reference traffic: MMD^2 "
                f"{row['first_mmd2']:.4f}, above the {q:.1f}% benign threshold "
                f"{row['first_threshold']:.4f} for {row['first_requests']} requests",
            ]
            if row["over"] > 1:
                why.append(f"{row['over']} of its {row['windows']} windows are over the threshold")
        else:
            why = [f"none of its {row['windows']} windows of up to {cfg.window_requests} "
                   f"requests differs from benign reference traffic (largest MMD^2 "
                   f"{r:.2f} of the threshold)"]
        reasons.append(json.dumps(why))
        evidence.append(json.dumps({
            "detector": "mmd", "windows": row["windows"], "windows_over": row["over"],
            "max_ratio": round(float(r), 4), "window_requests": cfg.window_requests,
            "window_fpr": cfg.window_fpr,
        }))
    r = acc["r"].fill_nan(0.0).to_numpy()
    r = np.where(np.isfinite(r), r, 0.0)
    flagged = acc["first_window"].is_not_null().to_numpy()
    table = pa.table({
        "account_id": acc["account_id"].to_arrow(),
        "score": pa.array(r / (1.0 + r)),
        "action": pa.array(np.where(flagged, "throttle", "allow").tolist(), pa.string()),
        "campaign_id": pa.nulls(acc.height, pa.string()),
        "first_flagged_ts": acc["first_flagged_ts"].to_arrow(),
        "reasons": pa.array(reasons, pa.string()),
        "evidence": pa.array(evidence, pa.string()),
    })
    return conform("verdicts", table)


def mmd_detector(log_dir: Path, config: Path | None) -> ScanResult:
    """The `mmd` detector for the registry (config: the `[mmd]` section of a detect config)."""
    from distillguard.detect._baselines import _empty_campaigns

    cfg = load_config(config).mmd
    ref = corpora_reference(cfg)
    windows = window_table(log_dir, cfg, ref)
    return ScanResult(verdicts=mmd_verdicts(windows, cfg), campaigns=_empty_campaigns(),
                      tables={"mmd_windows": windows})
