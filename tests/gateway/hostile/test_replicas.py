"""A revocation, an override or a limit change reaches every replica, whatever the writing
hosts' clocks say and in whatever order transactions commit; cached keys expire."""

from __future__ import annotations

import time

import sqlalchemy as sa

from distillguard.gateway import Gateway, Store, issue_key
from distillguard.gateway._keys import KeyRecord, KeyRing
from distillguard.gateway._store import now_us

from ..support import make_gateway

NO_UPSTREAM = "http://127.0.0.1:9/v1"


def _replica(db: tuple[str, str]) -> Gateway:
    gw = make_gateway(db[0], NO_UPSTREAM, prefix=db[1])
    gw.refresh()
    return gw


def test_a_revocation_behind_the_newest_row_is_seen(store_db: tuple[str, str]) -> None:
    writer, replica = _replica(store_db), _replica(store_db)
    victim = issue_key(writer.store, "victim")
    assert isinstance(replica.keys.lookup_cached(victim.key) or replica.keys.lookup_store(victim.key), KeyRecord)
    # a host whose clock runs 5 s ahead wrote the newest row the replica has seen
    with writer.store.engine.begin() as con:
        con.execute(sa.insert(writer.store.keys).values(key_id="kahead", account_id="other", key_hash="x",
                                                        created_us=now_us() + 5_000_000, updated_us=now_us() + 5_000_000))
    replica.refresh()
    assert writer.store.revoke_key(victim.key_id)
    replica.refresh()
    assert replica.keys.lookup_cached(victim.key) is None, "the replica still accepts a revoked key"


def test_a_late_committing_override_is_applied_in_id_order(store_db: tuple[str, str]) -> None:
    writer, replica = _replica(store_db), _replica(store_db)
    ov = writer.store.overrides
    # ids 101 and 103 commit first; 102 (another account) and 100 (an older one for acc-a) later
    def put(i: int, account: str, action: str) -> None:
        with writer.store.engine.begin() as con:
            con.execute(sa.insert(ov).values(id=i, account_id=account, action=action, ts_us=now_us(), by="t", note=""))

    put(101, "acc-a", "block")
    put(103, "acc-c", "allow")
    replica.refresh()
    assert replica.policy.decide("acc-a").action == "block"
    put(102, "acc-b", "block")
    put(100, "acc-a", "allow")  # older than the block: must not undo it
    replica.refresh()
    assert replica.policy.decide("acc-b").action == "block", "a skipped id that commits late is missed"
    assert replica.policy.decide("acc-a").action == "block"


def test_a_limit_change_behind_the_newest_row_is_seen(store_db: tuple[str, str]) -> None:
    writer, replica = _replica(store_db), _replica(store_db)
    with writer.store.engine.begin() as con:
        con.execute(sa.insert(writer.store.limits).values(subject="ahead", config="{}", updated_us=now_us() + 5_000_000))
    replica.refresh()
    writer.store.set_limits("acc-l", '{"requests_per_minute": 3}')
    replica.refresh()
    assert replica.limiter.account_overrides["acc-l"].requests_per_minute == 3


def test_cached_keys_expire(store_db: tuple[str, str]) -> None:
    store = Store(*store_db)
    issued = issue_key(store, "expiring")
    ring = KeyRing(store, ttl=0.3)
    ring.refresh()
    assert isinstance(ring.lookup_cached(issued.key), KeyRecord)
    # a change no poll will see (stamped long before the newest row seen)
    with store.engine.begin() as con:
        con.execute(sa.update(store.keys).where(store.keys.c.key_id == issued.key_id).values(revoked_us=1, updated_us=1))
    ring.refresh()
    assert isinstance(ring.lookup_cached(issued.key), KeyRecord)
    time.sleep(0.4)
    assert ring.lookup_cached(issued.key) is False, "an expired cached key must be read again"
    assert ring.lookup_store(issued.key) is None
