"""The one keyed seeding module that generator and detector share.

Every watermark decision is a keyed pseudo-random 64-bit value of a
(context, token) tuple. The provider's secret never enters the per-token
arithmetic directly: `subkey` derives a 64-bit layer key with HMAC-SHA256 over
(secret, key version, layer label), and the per-tuple values are a keyed
splitmix64-style mixing of that subkey with the tuple, vectorised in numpy so
that the detector scores millions of tuples per second and the generator the
whole vocabulary per step. Generator and detector call the same functions
below, so they cannot drift apart.

Tuple *identity* (which tuples are "the same" for deduplication and for
dropping prompt windows) is unkeyed (`tuple_ids`); tuple *values* are keyed.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

U64 = npt.NDArray[np.uint64]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TOKEN_SALT = np.uint64(0xD6E8FEB86659FD93)
_POSITION_SALT = np.uint64(0xA0761D6478BD642F)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV_2_53 = 1.0 / float(1 << 53)


def subkey(secret: bytes, version: int, label: str) -> np.uint64:
    """A 64-bit layer key: HMAC-SHA256(secret, "v{version}|{label}")."""
    digest = hmac.new(secret, f"v{version}|{label}".encode(), hashlib.sha256).digest()
    return np.uint64(int.from_bytes(digest[:8], "little"))


def account_code(secret: bytes, version: int, account_id: str, length: int, alphabet: int) -> list[int]:
    """The account's code word: `length` symbols in [0, alphabet), from HMAC of its id."""
    digest = hmac.new(secret, f"v{version}|account|{account_id}".encode(), hashlib.sha256).digest()
    value = int.from_bytes(digest, "little")
    out = []
    for _ in range(length):
        value, sym = divmod(value, alphabet)
        out.append(sym)
    return out


def mix64(z: U64) -> U64:
    """splitmix64's finaliser: a bijective avalanche on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def token_hashes(n: int) -> U64:
    """Unkeyed hash of every token id in [0, n)."""
    return mix64((np.arange(n, dtype=np.uint64) + np.uint64(1)) * _TOKEN_SALT)


def context_ids(windows: npt.NDArray[np.int64]) -> U64:
    """Unkeyed identity of ordered context windows, shape (n, h) -> (n,)."""
    acc = np.full(windows.shape[0], _GOLDEN, dtype=np.uint64)
    for j in range(windows.shape[1]):
        acc = mix64(acc ^ ((windows[:, j].astype(np.uint64) + np.uint64(1)) * _TOKEN_SALT))
    return acc


def tuple_ids(ctx_ids: U64, tokens: npt.NDArray[np.int64]) -> U64:
    """Unkeyed identity of (context, token) tuples: equal tuples, equal ids."""
    return mix64(ctx_ids ^ mix64((tokens.astype(np.uint64) + np.uint64(1)) * _TOKEN_SALT))


def keyed_context(key: np.uint64 | U64, ctx_ids: U64) -> U64:
    """The keyed seed of each context (broadcasts a key table against contexts)."""
    return mix64(mix64(ctx_ids ^ key) + _GOLDEN)


def anchors(key: np.uint64, windows: npt.NDArray[np.int64]) -> U64:
    """Self-hash anchor of each window: the minimum keyed hash over its tokens."""
    h = mix64((windows.astype(np.uint64) + np.uint64(1)) * _TOKEN_SALT ^ key)
    return np.asarray(h.min(axis=1), dtype=np.uint64)


def keyed_token_min(key: np.uint64, tokens: npt.NDArray[np.int64]) -> U64:
    """Per-token value of the self-hash anchor map (the same map as `anchors`)."""
    return mix64((tokens.astype(np.uint64) + np.uint64(1)) * _TOKEN_SALT ^ key)


def values(seeds: U64, tok_hash: U64) -> U64:
    """Keyed 64-bit value of (seed, token) pairs; broadcasts (B, 1) against (V,)."""
    return mix64(seeds ^ tok_hash)


def unit(v: U64) -> npt.NDArray[np.float64]:
    """Map 64-bit values to floats strictly inside (0, 1)."""
    return ((v >> _S11).astype(np.float64) + 0.5) * _INV_2_53


def positions(ctx_seeds: U64, length: int) -> npt.NDArray[np.int64]:
    """Which symbol of the account code a context carries, in [0, length)."""
    return (mix64(ctx_seeds ^ _POSITION_SALT) % np.uint64(length)).astype(np.int64)


def symbol_keys(layer_key: np.uint64, length: int, alphabet: int) -> U64:
    """A (length, alphabet) table of keys, one per (code position, symbol value)."""
    idx = np.arange(length * alphabet, dtype=np.uint64).reshape(length, alphabet)
    return mix64((idx + np.uint64(1)) * _GOLDEN ^ layer_key)


def hashes_of_tokens(tokens: npt.NDArray[np.int64]) -> U64:
    """`token_hashes(n)[tokens]` without building the table."""
    return mix64((tokens.astype(np.uint64) + np.uint64(1)) * _TOKEN_SALT)


# -- the same maps on torch int64 tensors, for the generator on any device ---------------
#
# torch has no full uint64 arithmetic, but int64 tensors hold the same 64 bits: xor and
# wrapping multiplication agree bit for bit, and a logical right shift is an arithmetic
# shift with the sign-extended bits masked off. Unsigned order (min, threshold) and
# modulo need the small adjustments below. `tests/watermark/test_seeding.py` checks that
# every function returns the numpy function's bits, so the generator marks exactly what
# the (numpy) detector scores, while staying on the GPU without a host sync per step.

_SIGN = -(1 << 63)


def _signed(c: np.uint64) -> int:
    """A uint64 constant as the int64 with the same bits."""
    v = int(c)
    return v - (1 << 64) if v >= 1 << 63 else v


_M1_T, _M2_T = _signed(_M1), _signed(_M2)
_GOLDEN_T, _TOKEN_SALT_T, _POSITION_SALT_T = _signed(_GOLDEN), _signed(_TOKEN_SALT), _signed(_POSITION_SALT)


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bits."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def signed_key(key: np.uint64) -> int:
    """A layer key as the Python int torch broadcasts (same 64 bits)."""
    return _signed(key)


def mix64_t(z: torch.Tensor) -> torch.Tensor:
    """`mix64` on int64 tensors."""
    z = (z ^ _shr(z, 30)) * _M1_T
    z = (z ^ _shr(z, 27)) * _M2_T
    return z ^ _shr(z, 31)


def hashes_of_tokens_t(tokens: torch.Tensor) -> torch.Tensor:
    """`hashes_of_tokens` on int64 tensors (`token_hashes(n)` is this of `arange(n)`)."""
    return mix64_t((tokens.long() + 1) * _TOKEN_SALT_T)


def context_ids_t(windows: torch.Tensor) -> torch.Tensor:
    """`context_ids` of windows (..., h) -> (...)."""
    acc = windows.long().new_full(windows.shape[:-1], _GOLDEN_T)
    for j in range(windows.shape[-1]):
        acc = mix64_t(acc ^ ((windows[..., j].long() + 1) * _TOKEN_SALT_T))
    return acc


def keyed_context_t(key: int | torch.Tensor, ctx_ids: torch.Tensor) -> torch.Tensor:
    """`keyed_context`: a key (int or tensor of keys) broadcast against contexts."""
    return mix64_t(mix64_t(ctx_ids ^ key) + _GOLDEN_T)


def keyed_token_min_t(key: int, tokens: torch.Tensor) -> torch.Tensor:
    """`keyed_token_min` on int64 tensors."""
    return mix64_t(((tokens.long() + 1) * _TOKEN_SALT_T) ^ key)


def umin_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise minimum in unsigned order (flipping the sign bit maps it onto signed order)."""
    return (a ^ _SIGN).minimum(b ^ _SIGN) ^ _SIGN


def anchors_t(key: int, windows: torch.Tensor) -> torch.Tensor:
    """`anchors`: the unsigned minimum keyed hash over each window (..., h) -> (...)."""
    h = keyed_token_min_t(key, windows)
    return (h ^ _SIGN).amin(dim=-1) ^ _SIGN


def values_t(seeds: torch.Tensor, tok_hash: torch.Tensor) -> torch.Tensor:
    """`values` (broadcasting)."""
    return mix64_t(seeds ^ tok_hash)


def positions_t(ctx_seeds: torch.Tensor, length: int) -> torch.Tensor:
    """`positions`: unsigned `mix64(seed ^ salt) % length` from int64 bits."""
    z = mix64_t(ctx_seeds ^ _POSITION_SALT_T)
    half = _shr(z, 1)  # z = 2 * half + low bit, all non-negative
    return ((half % length) * 2 + (z & 1)) % length


def green_threshold(gamma: float) -> int:
    """The count T with `unit(v) < gamma` exactly when `v >> 11 < T`."""
    lo, hi = 0, 1 << 53
    while lo < hi:  # first x with unit(x << 11) >= gamma; unit is monotone in x
        mid = (lo + hi) // 2
        if float(unit(np.array([mid << 11], dtype=np.uint64))[0]) < gamma:
            lo = mid + 1
        else:
            hi = mid
    return lo


def below_t(v: torch.Tensor, threshold: int) -> torch.Tensor:
    """`unit(v) < gamma` for `threshold = green_threshold(gamma)`, on int64 bits."""
    return _shr(v, 11) < threshold


def unit_t(v: torch.Tensor) -> torch.Tensor:
    """`unit` on int64 bits, float64 strictly inside (0, 1)."""
    return (_shr(v, 11).double() + 0.5) * _INV_2_53
