"""The keyed decisions of one key version, for tuples (detector) and whole vocabularies (generator).

Both sides go through `LayerKeys`, so a tuple's green/uniform value is the same
whether it is computed for one candidate among the vocabulary at generation
time or for the observed token at detection time (tests check this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from distillguard.watermark import _seeding as S
from distillguard.watermark._config import WatermarkConfig
from distillguard.watermark._version import KeyVersion

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LayerKeys:
    """Derived 64-bit keys of one key version (and optionally a control index)."""

    config: WatermarkConfig
    global_key: np.uint64
    account_key: np.uint64
    symbol_keys: S.U64  # (L, q)

    @classmethod
    def of(cls, version: KeyVersion, control: int | None = None, prefix: str = "") -> LayerKeys:
        """Keys of `version`; `prefix` separates schemes ("lexical-"), `control` makes a control key."""
        suffix = "" if control is None else f"|control-{control}"
        cfg = version.config
        account = S.subkey(version.secret, version.version, prefix + "account" + suffix)
        return cls(
            config=cfg,
            global_key=S.subkey(version.secret, version.version, prefix + "global" + suffix),
            account_key=account,
            symbol_keys=S.symbol_keys(account, cfg.account_length, cfg.account_alphabet),
        )

    # -- global layer ---------------------------------------------------------------
    def global_values(self, windows: I64, ctx_ids: S.U64, tokens: I64, tok_hash: S.U64) -> S.U64:
        """Keyed value of each observed (window, token) tuple: shape (n,).

        `tok_hash` holds the hash of each observed token (`hashes_of_tokens(tokens)`).
        """
        if self.config.self_hash:
            anchor = np.minimum(
                S.anchors(self.global_key, windows), S.keyed_token_min(self.global_key, tokens)
            )
            seeds = S.keyed_context(self.global_key, anchor)
        else:
            seeds = S.keyed_context(self.global_key, ctx_ids)
        return S.values(seeds, tok_hash)

    def global_values_vocab(self, windows: I64, ctx_ids: S.U64, tok_hash: S.U64) -> S.U64:
        """Keyed value of every candidate token after each window: shape (B, V)."""
        vocab = np.arange(tok_hash.shape[0], dtype=np.int64)
        if self.config.self_hash:
            anchor = np.minimum(
                S.anchors(self.global_key, windows)[:, None],
                S.keyed_token_min(self.global_key, vocab)[None, :],
            )
            seeds = S.keyed_context(self.global_key, anchor)
            return S.values(seeds, tok_hash[None, :])
        seeds = S.keyed_context(self.global_key, ctx_ids)
        return S.values(seeds[:, None], tok_hash[None, :])

    # -- account layer --------------------------------------------------------------
    def positions(self, ctx_ids: S.U64) -> I64:
        """Which code position each context carries."""
        seeds = S.keyed_context(self.account_key, ctx_ids)
        return S.positions(seeds, self.config.account_length)

    def account_values(self, ctx_ids: S.U64, symbols: I64, tok_hash_of_tokens: S.U64) -> S.U64:
        """Keyed value of tuples under the given code symbols, shape of `symbols`."""
        pos = self.positions(ctx_ids)
        keys = self.symbol_keys[pos, symbols]
        return S.values(S.keyed_context(keys, ctx_ids), tok_hash_of_tokens)

    def account_values_all_symbols(self, ctx_ids: S.U64, tok_hash_of_tokens: S.U64) -> S.U64:
        """(n, q): value of each tuple under every symbol of its code position."""
        pos = self.positions(ctx_ids)
        keys = self.symbol_keys[pos]  # (n, q)
        seeds = S.keyed_context(keys, ctx_ids[:, None])
        return S.values(seeds, tok_hash_of_tokens[:, None])


def windows_of(ids: I64, starts: I64, h: int) -> tuple[I64, I64]:
    """Context windows and tokens of a flat token array.

    `ids` is the concatenation of sequences and `starts` the flat index where each
    sequence begins. Returns (windows (n, h), flat index of each scored token): a
    token is scored when it has h tokens of its own sequence before it.
    """
    n = ids.shape[0]
    seq_start = np.zeros(n, dtype=np.int64)
    if starts.shape[0]:
        owner = np.searchsorted(starts, np.arange(n), side="right") - 1
        seq_start = starts[np.maximum(owner, 0)]
    idx = np.nonzero(np.arange(n) - seq_start >= h)[0]
    windows = np.stack([ids[idx - h + j] for j in range(h)], axis=1) if h else np.zeros((idx.size, 0), np.int64)
    return windows.astype(np.int64), idx
