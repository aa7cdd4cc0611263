"""The watermark for serving engines that keep a persistent batch (vLLM's V1 engine).

A row of the engine's batch is one request: it may carry an account (marked for the
provider and that account), no account (marked for the provider alone) or ask for no
mark at all (left byte-identical). The engine tells us when requests join, leave or move
between rows; each step we read every marked row's last `h` tokens (the engine's live
output list, prompt first) and bias the whole (rows, vocabulary) block at once, with the
same keyed maps as `WatermarkLogitsProcessor` and the detector: a row's logits are
bit-identical to what that processor gives for the same sequence and account.

No vLLM import here: `distillguard.watermark.vllm` adapts this to vLLM's interface.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from distillguard._errors import ConfigError
from distillguard.watermark import _seeding as S
from distillguard.watermark._processor import mark
from distillguard.watermark._scheme import LayerKeys
from distillguard.watermark._version import KeyVersion

# Account code words kept between requests (an LRU: 8 int64 each).
MAX_CACHED_CODES = 65_536


@dataclass
class _Row:
    """One marked request in the batch."""

    prompt: Sequence[int]
    output: Sequence[int]  # the engine's live list of generated tokens
    code_keys: np.ndarray | None  # (L,) int64 bits of the account's symbol keys, or None
    seen: set[int] = field(default_factory=set)  # context ids seen (Gumbel's skip_repeated)
    scanned: int = 0  # tokens of prompt + output whose windows are in `seen`

    def tail(self, h: int) -> list[int] | None:
        """The last h tokens of prompt + output, or None while there are fewer."""
        n_out = len(self.output)
        if n_out >= h:
            return list(self.output[n_out - h :])
        need = h - n_out
        if len(self.prompt) < need:
            return None
        return [*self.prompt[len(self.prompt) - need :], *self.output]


class BatchedWatermark:
    """Watermark state for every row of a persistent batch, one key version.

    Args:
        version: the key version that marks (normally `WatermarkKey.current`).
        device: where the logits live.

    Rows are added with `add`, dropped with `remove` and reordered with `move`, in the
    order the engine reports them (removed, added, moved); `apply` marks the rows that
    asked for it and leaves the others untouched.
    """

    def __init__(self, version: KeyVersion, device: torch.device | str = "cpu") -> None:
        self.version = version
        self.config = version.config
        self.keys = LayerKeys.of(version)
        self.device = torch.device(device)
        self._global = S.signed_key(self.keys.global_key)
        self._account = S.signed_key(self.keys.account_key)
        self._threshold = S.green_threshold(self.config.gamma)
        self._rows: dict[int, _Row] = {}
        self._codes: OrderedDict[str, np.ndarray] = OrderedDict()
        self._vocab: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    # -- batch membership ----------------------------------------------------------------
    def add(self, index: int, prompt: Sequence[int] | None, output: Sequence[int], *,
            account_id: str | None = None, marked: bool = True) -> None:
        """Row `index` now holds a new request (replacing whatever was there)."""
        self._rows.pop(index, None)
        if marked:
            self._rows[index] = _Row(prompt or (), output, self._code_keys(account_id))

    def remove(self, index: int) -> None:
        """Row `index` finished or was preempted."""
        self._rows.pop(index, None)

    def move(self, src: int, dst: int, *, swap: bool) -> None:
        """A one-way move (src replaces dst) or a swap of two rows."""
        a, b = self._rows.pop(src, None), self._rows.pop(dst, None)
        if a is not None:
            self._rows[dst] = a
        if swap and b is not None:
            self._rows[src] = b

    @property
    def marked_rows(self) -> list[int]:
        return sorted(self._rows)

    def _code_keys(self, account_id: str | None) -> np.ndarray | None:
        if account_id is None or self.config.account_delta <= 0:
            return None
        keys = self._codes.get(account_id)
        if keys is None:
            code = S.account_code(self.version.secret, self.version.version, account_id,
                                  self.config.account_length, self.config.account_alphabet)
            keys = self.keys.symbol_keys[np.arange(len(code)), code].view(np.int64).copy()
            self._codes[account_id] = keys
            if len(self._codes) > MAX_CACHED_CODES:
                self._codes.popitem(last=False)
        else:
            self._codes.move_to_end(account_id)
        return keys

    # -- one step -------------------------------------------------------------------------
    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Mark the rows that asked for it, in place where possible; returns the logits."""
        h = self.config.context_width
        rows, windows = [], []
        for i in sorted(self._rows):
            if i >= logits.shape[0]:
                raise ConfigError(
                    f"watermark row {i} is outside the logits batch of {logits.shape[0]} rows: the "
                    "engine's batch updates and its logits disagree"
                )
            tail = self._rows[i].tail(h)
            if tail is not None:
                rows.append(i)
                windows.append(tail)
        if not rows:
            return logits
        dev = logits.device
        idx = torch.tensor(rows, dtype=torch.long, device=dev)
        win = torch.tensor(windows, dtype=torch.long, device=dev)
        codes = [self._rows[i].code_keys for i in rows]
        vals = self._values(win, codes, logits.shape[1], dev)
        cfg = self.config
        weights = torch.tensor(
            [[cfg.delta, cfg.account_delta if c is not None else 0.0] for c in codes],
            dtype=torch.float32, device=dev,
        )
        repeated = None
        if cfg.scheme == "gumbel" and cfg.skip_repeated:
            flags = [self._repeated(self._rows[i]) for i in rows]
            repeated = torch.tensor(flags, dtype=torch.bool, device=dev)[:, None]
        logits[idx] = mark(logits[idx], vals, weights, cfg, self._threshold, repeated)
        return logits

    def _tables(self, vocab: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        cached = self._vocab.get(vocab)
        if cached is None or cached[0].device != dev:
            ids = torch.arange(vocab, dtype=torch.long, device=dev)
            tok_min = S.keyed_token_min_t(self._global, ids) if self.config.self_hash else None
            cached = (S.hashes_of_tokens_t(ids), tok_min)
            self._vocab[vocab] = cached
        return cached

    def _values(self, windows: torch.Tensor, codes: list[np.ndarray | None], vocab: int,
                dev: torch.device) -> torch.Tensor:
        """(R, 2, V): keyed value of every candidate token, global layer then account layer.

        Rows without an account get the account values of an all-zero code key; their
        layer weight is 0, so those values never count.
        """
        tok_hash, tok_min = self._tables(vocab, dev)
        ctx = S.context_ids_t(windows)
        if tok_min is not None:  # self-hash: anchor = min over the window and the candidate
            anchor = S.umin_t(S.anchors_t(self._global, windows)[:, None], tok_min[None, :])
            glob = S.values_t(S.keyed_context_t(self._global, anchor), tok_hash)
        else:
            glob = S.values_t(S.keyed_context_t(self._global, ctx)[:, None], tok_hash)
        length = self.config.account_length
        table = np.stack([c if c is not None else np.zeros(length, np.int64) for c in codes])
        keys = torch.from_numpy(table).to(dev)  # (R, L)
        pos = S.positions_t(S.keyed_context_t(self._account, ctx), length)
        row_key = keys.gather(1, pos[:, None])[:, 0]
        acc = S.values_t(S.keyed_context_t(row_key, ctx)[:, None], tok_hash)
        return torch.stack([glob, acc], dim=1)

    def _repeated(self, row: _Row) -> bool:
        """Whether the row's current window occurred earlier in its sequence (prompt included)."""
        h = self.config.context_width
        seq = [*row.prompt, *row.output]
        # windows ending before the last token, not yet recorded
        for end in range(max(row.scanned, h), len(seq)):
            row.seen.add(_window_id(seq[end - h : end]))
        row.scanned = max(row.scanned, len(seq))
        return len(seq) > h and _window_id(seq[len(seq) - h :]) in row.seen


def _window_id(window: Sequence[int]) -> int:
    """The context id of one window, as a Python int (host side)."""
    return int(S.context_ids(np.asarray([window], dtype=np.int64))[0])
