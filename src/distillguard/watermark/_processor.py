"""Generation-time watermarking: a transformers LogitsProcessor over one key version.

Every step runs on the device of `scores` with int64 tensor ops (`_seeding`'s `*_t`
maps, bit-identical to the numpy maps the detector uses): no host copy, no Python loop
over rows and no synchronisation, so the cost is a few element-wise kernels over the
(batch, vocabulary) logits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from transformers import LogitsProcessor

from distillguard.watermark import _seeding as S
from distillguard.watermark._config import WatermarkConfig
from distillguard.watermark._scheme import LayerKeys
from distillguard.watermark._version import KeyVersion


@dataclass(frozen=True)
class _DeviceTables:
    """What one step needs, resident on the device of the logits."""

    tok_hash: torch.Tensor  # (V,) unkeyed token hashes
    tok_min: torch.Tensor | None  # (V,) self-hash anchor map of every token
    account_keys: torch.Tensor | None  # (L,) key of (position i, code[i])
    seeds: torch.Tensor | None  # (V, 1 or 2) per-context seeds when a context is one token
    weights: torch.Tensor  # (1 or 2,) float32 logit bias of the global and account layers


class WatermarkLogitsProcessor(LogitsProcessor):  # type: ignore[misc]
    """Marks sampled text for the provider (global layer) and one account (account layer).

    - account layer (if `account_delta` > 0 and an account is given): the context
      picks a position i of the account's code word; tokens green under
      (i, code[i]) get `+account_delta`.
    - global layer, scheme "kgw": tokens green under the global key get `+delta`.
    - global layer, scheme "gumbel": the next token is argmax r_t ** (1 / p_t) with
      r keyed uniforms (Aaronson): a sample from p itself, averaged over keys;
      steps whose context already occurred in the sequence are left unmarked.

    Works on any vocabulary size (the width of `scores`), any batch and any device.
    With a one-token context (h = 1, no self-hash) the per-context seeds of both layers
    are looked up in a table built once per device, so a step is one gather and one
    pass of keyed hashing over the (batch, 2, vocabulary) values.
    """

    def __init__(self, version: KeyVersion, account_id: str | None = None) -> None:
        self.version = version
        self.config = version.config
        self.keys = LayerKeys.of(version)
        self.account_id = account_id
        self.code: list[int] | None = None
        if account_id is not None and self.config.account_delta > 0:
            self.code = S.account_code(
                version.secret,
                version.version,
                account_id,
                self.config.account_length,
                self.config.account_alphabet,
            )
        self._global = S.signed_key(self.keys.global_key)
        self._account = S.signed_key(self.keys.account_key)
        self._threshold = S.green_threshold(self.config.gamma)
        self._tables: dict[tuple[str, int], _DeviceTables] = {}

    def _on(self, device: torch.device, vocab: int) -> _DeviceTables:
        cached = self._tables.get((str(device), vocab))
        if cached is None:
            ids = torch.arange(vocab, dtype=torch.long, device=device)
            account_keys = None
            if self.code is not None:
                keys = self.keys.symbol_keys[np.arange(len(self.code)), self.code]
                account_keys = torch.from_numpy(keys.view(np.int64).copy()).to(device)
            cached = _DeviceTables(
                tok_hash=S.hashes_of_tokens_t(ids),
                tok_min=S.keyed_token_min_t(self._global, ids) if self.config.self_hash else None,
                account_keys=account_keys,
                seeds=None,
                weights=torch.tensor(
                    [self.config.delta, self.config.account_delta][: 1 + (account_keys is not None)],
                    dtype=torch.float32,
                    device=device,
                ),
            )
            if self.config.context_width == 1 and not self.config.self_hash:
                cached = replace(cached, seeds=self._seeds(ids[:, None], cached))
            self._tables[(str(device), vocab)] = cached
        return cached

    def _seeds(self, windows: torch.Tensor, t: _DeviceTables) -> torch.Tensor:
        """(B, 1 or 2): the keyed seed of each window, global layer then account layer."""
        if t.seeds is not None:
            return t.seeds[windows[:, 0]]
        ctx = S.context_ids_t(windows)
        if t.account_keys is None:
            return S.keyed_context_t(self._global, ctx)[:, None]
        pos = S.positions_t(S.keyed_context_t(self._account, ctx), self.config.account_length)
        return torch.stack(
            [S.keyed_context_t(self._global, ctx), S.keyed_context_t(t.account_keys[pos], ctx)], dim=1
        )

    def _values(self, windows: torch.Tensor, t: _DeviceTables) -> torch.Tensor:
        """(B, 1 or 2, V): keyed value of every candidate token, global layer then account layer."""
        seeds = self._seeds(windows, t)
        vals = S.values_t(seeds[:, :, None], t.tok_hash)
        if t.tok_min is not None:  # self-hash: anchor = min over the window and the candidate
            anchor = S.umin_t(S.anchors_t(self._global, windows)[:, None], t.tok_min[None, :])
            glob = S.values_t(S.keyed_context_t(self._global, anchor), t.tok_hash)
            vals = torch.cat([glob[:, None], vals[:, 1:]], dim=1)
        return vals

    def green_masks(self, input_ids: torch.Tensor, vocab: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(global green (B, V), account green (B, V) or None) after each row's last window."""
        t = self._on(input_ids.device, vocab)
        green = S.below_t(self._values(input_ids[:, -self.config.context_width :].long(), t), self._threshold)
        return green[:, 0], (green[:, 1] if green.shape[1] > 1 else None)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        h = self.config.context_width
        if input_ids.shape[1] < h:
            return scores
        t = self._on(scores.device, scores.shape[1])
        windows = input_ids[:, -h:].long()
        vals = self._values(windows, t)
        repeated = None
        if self.config.scheme == "gumbel" and self.config.skip_repeated and input_ids.shape[1] > h:
            if h == 1:
                repeated = (input_ids[:, :-1] == input_ids[:, -1:]).any(dim=1, keepdim=True)
            else:
                past = S.context_ids_t(input_ids[:, :-1].long().unfold(1, h, 1))  # (B, T - h)
                repeated = (past == S.context_ids_t(windows)[:, None]).any(dim=1, keepdim=True)
        return mark(scores, vals, t.weights[None, :], self.config, self._threshold, repeated)  # type: ignore[return-value]


def mark(
    scores: torch.Tensor,
    vals: torch.Tensor,
    weights: torch.Tensor,
    cfg: WatermarkConfig,
    threshold: int,
    repeated: torch.Tensor | None,
) -> torch.Tensor:
    """Marked logits from the keyed values of every candidate token.

    Args:
        scores: (B, V) logits.
        vals: (B, 1 or 2, V) keyed values, global layer then account layer.
        weights: (1 or B, 1 or 2) float32 logit bias of each layer (0 turns a layer off in a row).
        cfg: the key version's configuration (scheme).
        threshold: `green_threshold(cfg.gamma)`.
        repeated: (B, 1) rows whose context already occurred in the sequence (Gumbel leaves them
            unmarked), or None.
    """
    green = S.below_t(vals, threshold).float()
    if cfg.scheme == "kgw":
        bias = (green * weights[:, : vals.shape[1], None]).sum(dim=1)
        return scores + bias.to(scores.dtype)
    biased: torch.Tensor = scores
    if vals.shape[1] > 1:
        biased = biased + (green[:, 1] * weights[:, 1:2]).to(scores.dtype)
    probs = torch.softmax(biased.double(), dim=-1)
    rank = torch.log(S.unit_t(vals[:, 0])) / probs  # log r / p: argmax = argmax r ** (1/p)
    rank = rank.masked_fill(probs <= 0, float("-inf"))
    out = torch.full_like(scores, float("-inf"))
    out.scatter_(1, rank.argmax(dim=1, keepdim=True), 0.0)
    if repeated is not None:
        out = torch.where(repeated, biased, out)
    return out
