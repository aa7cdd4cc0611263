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

import numpy as np
import numpy.typing as npt

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
