"""The credential cache refuses what was read before the last change of a credential or owner."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from api.security import CredentialCache, Principal, _Cached

NOW = datetime.now(UTC)


def entry(read_at: int, *, key_id: object = None, owner_id: object = None) -> _Cached:
    principal = Principal(owner_id or uuid4(), False, "api_key", key_id or uuid4(), {})  # type: ignore[arg-type]
    return _Cached(principal, None, None, read_at)


def test_an_entry_read_before_its_keys_last_change_is_not_kept() -> None:
    cache, key_id = CredentialCache(), uuid4()
    cache.invalidate({key_id: 10})  # revoked at position 10
    cache.put("k", entry(9, key_id=key_id))  # verified on state read at 9: in flight during the revoke
    assert cache.get("k", NOW) is None
    cache.put("k", entry(10, key_id=key_id))  # read with the change in view
    assert cache.get("k", NOW) is not None


def test_a_change_of_the_owner_drops_and_refuses_their_credentials() -> None:
    cache, owner_id = CredentialCache(), uuid4()
    cache.put("old", entry(5, owner_id=owner_id))
    cache.put("new", entry(20, owner_id=owner_id))
    cache.invalidate({owner_id: 12})
    assert cache.get("old", NOW) is None  # read before the change
    assert cache.get("new", NOW) is not None  # read after it: already reflects it
    cache.put("late", entry(11, owner_id=owner_id))
    assert cache.get("late", NOW) is None


def test_forgotten_changes_still_refuse_entries_read_before_them() -> None:
    cache = CredentialCache(remember=4)
    ids = [uuid4() for _ in range(6)]
    cache.invalidate({changed: position for position, changed in enumerate(ids, 100)})
    cache.put("k", entry(100, key_id=ids[0]))  # its change (100) may be forgotten: still refused
    assert cache.get("k", NOW) is None
    cache.put("fresh", entry(200, key_id=ids[0]))
    assert cache.get("fresh", NOW) is not None
