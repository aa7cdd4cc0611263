"""Generation-time watermarking: a transformers LogitsProcessor over one key version."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from transformers import LogitsProcessor

from distillguard.watermark import _seeding as S
from distillguard.watermark._keys import KeyVersion
from distillguard.watermark._scheme import LayerKeys


class WatermarkLogitsProcessor(LogitsProcessor):  # type: ignore[misc]
    """Marks sampled text for the provider (global layer) and one account (account layer).

    - account layer (if `account_delta` > 0 and an account is given): the context
      picks a position i of the account's code word; tokens green under
      (i, code[i]) get `+account_delta`.
    - global layer, scheme "kgw": tokens green under the global key get `+delta`.
    - global layer, scheme "gumbel": the next token is argmax r_t ** (1 / p_t) with
      r keyed uniforms (Aaronson): a sample from p itself, averaged over keys;
      steps whose context already occurred in the sequence are left unmarked.

    Works on any vocabulary size (the width of `scores`) and any batch.
    """

    def __init__(self, version: KeyVersion, account_id: str | None = None) -> None:
        self.version = version
        self.config = version.config
        self.keys = LayerKeys.of(version)
        self.account_id = account_id
        self.code: np.ndarray[Any, np.dtype[np.int64]] | None = None
        if account_id is not None and self.config.account_delta > 0:
            self.code = np.asarray(
                S.account_code(
                    version.secret,
                    version.version,
                    account_id,
                    self.config.account_length,
                    self.config.account_alphabet,
                ),
                dtype=np.int64,
            )
        self._tok_hash: S.U64 | None = None

    def _hashes(self, vocab: int) -> S.U64:
        if self._tok_hash is None or self._tok_hash.shape[0] != vocab:
            self._tok_hash = S.token_hashes(vocab)
        return self._tok_hash

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        h = self.config.context_width
        if input_ids.shape[1] < h:
            return scores
        ids = input_ids.detach().cpu().numpy().astype(np.int64)
        windows = ids[:, -h:]
        ctx = S.context_ids(windows)
        tok_hash = self._hashes(scores.shape[1])
        bias = np.zeros(scores.shape, dtype=np.float32)
        if self.code is not None:
            pos = self.keys.positions(ctx)
            keys = self.keys.symbol_keys[pos, self.code[pos]]
            vals = S.values(S.keyed_context(keys, ctx)[:, None], tok_hash[None, :])
            bias += np.float32(self.config.account_delta) * (S.unit(vals) < self.config.gamma)
        glob = S.unit(self.keys.global_values_vocab(windows, ctx, tok_hash))
        if self.config.scheme == "kgw":
            bias += np.float32(self.config.delta) * (glob < self.config.gamma)
            return scores + torch.from_numpy(bias).to(scores.device, scores.dtype)  # type: ignore[return-value]
        biased = scores.detach().to(torch.float64).cpu() + torch.from_numpy(bias).to(torch.float64)
        probs = torch.softmax(biased, dim=-1).numpy()
        with np.errstate(divide="ignore"):
            rank = np.log(glob) / probs  # log r / p: argmax = argmax r ** (1/p)
        rank[probs <= 0] = -np.inf
        choice = rank.argmax(axis=1)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0]), torch.from_numpy(choice)] = 0.0
        if self.config.skip_repeated and ids.shape[1] > h:
            past = sliding_window_view(ids[:, :-1], h, axis=1)  # (B, T-h, h)
            past_ids = S.context_ids(past.reshape(-1, h)).reshape(past.shape[0], -1)
            repeated = (past_ids == ctx[:, None]).any(axis=1)
            if repeated.any():
                rows = torch.from_numpy(np.nonzero(repeated)[0])
                out[rows] = (scores[rows] + torch.from_numpy(bias[repeated]).to(scores.dtype))
        return out  # type: ignore[return-value]
