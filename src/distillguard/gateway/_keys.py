"""API keys: issued once, stored hashed, checked in constant time from an in-memory cache.

A key reads `dg-<key_id>-<secret>`. The key_id is public (it appears in logs and the admin
API); the secret never leaves the response that issued it. Keys carry 192 bits of
randomness, so a single SHA-256 is enough to store them (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from distillguard.gateway._replica import ChangeFeed
from distillguard.gateway._store import Store

_DUMMY = hashlib.sha256(b"distillguard-no-such-key").hexdigest()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh (key_id, key)."""
    key_id = "k" + secrets.token_hex(6)
    return key_id, f"dg-{key_id}-{secrets.token_urlsafe(24)}"


def key_id_of(key: str) -> str | None:
    parts = key.split("-", 2)
    if len(parts) != 3 or parts[0] != "dg" or not parts[1].startswith("k") or len(parts[1]) > 32:
        return None
    return parts[1]


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    account_id: str
    key_hash: str
    revoked: bool = False


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    account_id: str
    key: str


def issue_key(store: Store, account_id: str, name: str | None = None) -> IssuedKey:
    """Create the account if needed and a key for it; the returned key is the only copy."""
    store.upsert_account(account_id)
    key_id, key = new_key()
    store.add_key(key_id, account_id, hash_key(key), name)
    return IssuedKey(key_id, account_id, key)


#: seconds a cached key is trusted before the store is asked again (a change the refresh
#: missed, whatever the cause, lasts at most this long)
KEY_CACHE_TTL_S = 60.0


class KeyRing:
    """The keys the gateway accepts, cached in memory and refreshed from the store.

    Changes are polled in the database's clock order with an overlap (`ChangeFeed`), and each
    cached key expires after `ttl` seconds, when the next request reads it from the store.
    """

    def __init__(self, store: Store, miss_ttl: float = 2.0, ttl: float = KEY_CACHE_TTL_S) -> None:
        self.store = store
        self._keys: dict[str, KeyRecord] = {}
        self._loaded: dict[str, float] = {}
        self._misses: dict[str, float] = {}
        self._miss_ttl = miss_ttl
        self._ttl = ttl
        self._feed = ChangeFeed(store.keys_since, "key_id")

    def _put(self, r: dict[str, object]) -> KeyRecord:
        kid = str(r["key_id"])
        rec = KeyRecord(kid, str(r["account_id"]), str(r["key_hash"]), r["revoked_us"] is not None)
        self._keys[kid] = rec
        self._loaded[kid] = time.monotonic()
        return rec

    def refresh(self) -> int:
        """Load keys created or revoked since the last refresh (blocking; run in a thread);
        returns how many changed."""
        rows = self._feed.poll()
        for r in rows:
            self._put(r)
            self._misses.pop(r["key_id"], None)
        return len(rows)

    def lookup_cached(self, key: str) -> KeyRecord | None | bool:
        """The active record for `key`; None if invalid; False if the store must be asked."""
        kid = key_id_of(key)
        rec = self._keys.get(kid) if kid else None
        if rec is not None and time.monotonic() - self._loaded.get(rec.key_id, 0.0) > self._ttl:
            return False  # expired: read it again
        if rec is None:
            if kid is None:
                hmac.compare_digest(hash_key(key), _DUMMY)
                return None
            miss = self._misses.get(kid)
            if miss is not None and time.monotonic() - miss < self._miss_ttl:
                hmac.compare_digest(hash_key(key), _DUMMY)
                return None
            return False
        ok = hmac.compare_digest(hash_key(key), rec.key_hash)
        return rec if ok and not rec.revoked else None

    def is_cached(self, key: str) -> bool:
        """Whether `key`'s id is in the cache (maybe expired), whatever its secret."""
        kid = key_id_of(key)
        return kid is not None and kid in self._keys

    def lookup_store(self, key: str) -> KeyRecord | None:
        """Cache miss: read the key from the store (blocking; run in a thread)."""
        kid = key_id_of(key)
        if kid is None:
            return None
        r = self.store.get_key(kid)
        if r is None:
            if len(self._misses) > 100_000:
                self._misses.clear()
            self._misses[kid] = time.monotonic()
            hmac.compare_digest(hash_key(key), _DUMMY)
            return None
        rec = self._put(r)
        ok = hmac.compare_digest(hash_key(key), rec.key_hash)
        return rec if ok and not rec.revoked else None

    def revoke_local(self, key_id: str) -> None:
        rec = self._keys.get(key_id)
        if rec is not None:
            self._keys[key_id] = KeyRecord(rec.key_id, rec.account_id, rec.key_hash, True)
