"""The watermark as a vLLM V1 logits processor (`vllm.v1.sample.logits_processor.LogitsProcessor`).

Load it when starting vLLM, with the provider's key file in the environment::

    DISTILLGUARD_WATERMARK_KEY_FILE=/secrets/wm.key \\
    vllm serve MODEL --logits-processors distillguard.watermark.vllm_logits:DistillguardWatermark

Every request is marked for the provider (global layer). A request whose sampling params
carry `extra_args={"distillguard_account": ACCOUNT_ID}` (`vllm_xargs` in the OpenAI-compatible
server) is also marked for that account. The gateway sets it; a deployment where clients
reach vLLM directly must strip client-supplied `vllm_xargs`, or any client could name another
account. Detection is unchanged: `distillguard trace` with the same key file.

The batch bookkeeping and the keyed maps live in `BatchedWatermark` (no vLLM import, tested on
the CPU); this module only translates vLLM's batch updates.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from distillguard._errors import ConfigError
from distillguard.watermark._batched import BatchedWatermark
from distillguard.watermark._keys import WatermarkKey

KEY_FILE_ENV = "DISTILLGUARD_WATERMARK_KEY_FILE"
ACCOUNT_ARG = "distillguard_account"
MAX_ACCOUNT_CHARS = 200

__all__ = ["ACCOUNT_ARG", "KEY_FILE_ENV", "DistillguardWatermark"]


def _account_of(params: Any) -> str | None:
    extra = getattr(params, "extra_args", None) or {}
    account = extra.get(ACCOUNT_ARG)
    return None if account is None else str(account)


class DistillguardWatermark(LogitsProcessor):  # type: ignore[misc]
    """Marks every request for the provider and, where named, for its account."""

    @classmethod
    def validate_params(cls, params: Any) -> None:
        """Refuse an account id that is not a short string (vLLM answers 400)."""
        account = (getattr(params, "extra_args", None) or {}).get(ACCOUNT_ARG)
        if account is not None and (not isinstance(account, str) or not 0 < len(account) <= MAX_ACCOUNT_CHARS):
            raise ValueError(
                f"extra_args[{ACCOUNT_ARG!r}] must be a non-empty string of at most "
                f"{MAX_ACCOUNT_CHARS} characters, not {account!r:.60}"
            )

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        path = os.environ.get(KEY_FILE_ENV)
        if not path:
            raise ConfigError(
                f"Set {KEY_FILE_ENV} to the watermark key file (distillguard watermark keygen) "
                "before starting vLLM with this logits processor."
            )
        self.core = BatchedWatermark(WatermarkKey.load(path).current, device)

    def is_argmax_invariant(self) -> bool:
        # the bias can change which token is the most likely, so greedy requests are marked too
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.core.remove(index)
        for added in batch_update.added:
            index, params, prompt, output = added[0], added[1], added[2], added[3]
            self.core.add(index, prompt, output, account_id=_account_of(params))
        for src, dst, direction in batch_update.moved:
            self.core.move(src, dst, swap=direction == MoveDirectionality.SWAP)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return self.core.apply(logits)
