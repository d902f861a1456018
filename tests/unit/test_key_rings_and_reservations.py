"""Per-owner key names (KeyRing) and uniqueness reservations (Reservation)."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from domain.errors import ApiKeyNameTakenError, ConflictError
from domain.key_rings import KeyRing, key_ring_id
from domain.reservations import Reservation, reservation_id

# ---- KeyRing ----------------------------------------------------------------------------------


def open_ring(owner_id: UUID | None = None) -> KeyRing:
    ring = KeyRing.open(owner_id or uuid4())
    ring.collect_events()
    return ring


def test_a_ring_id_is_derived_from_its_owner() -> None:
    owner_id = uuid4()

    ring = KeyRing.open(owner_id)

    assert ring.id == key_ring_id(owner_id) == key_ring_id(UUID(str(owner_id)))
    assert ring.id != key_ring_id(uuid4())
    assert ring.owner_id == owner_id
    assert ring.data_subject_id == owner_id
    assert ring.names == {}
    assert [type(event) for event in ring.collect_events()] == [KeyRing.Opened]


def test_add_records_the_names() -> None:
    ring = open_ring()
    first, second = uuid4(), uuid4()

    ring.add(first, "deploy")
    ring.add(second, "backup")

    assert ring.names == {first.hex: "deploy", second.hex: "backup"}
    assert ring.key_ids == [first, second]
    assert [type(event) for event in ring.collect_events()] == [KeyRing.KeyAdded] * 2


@pytest.mark.parametrize("taken", ["deploy", "Deploy", "DEPLOY", "dEpLoY"])
def test_a_name_is_unique_per_ring_ignoring_case(taken: str) -> None:
    ring = open_ring()
    ring.add(uuid4(), "Deploy")
    ring.collect_events()

    with pytest.raises(ApiKeyNameTakenError) as raised:
        ring.add(uuid4(), taken)

    assert raised.value.kind == "api_key_name"
    assert len(ring.names) == 1
    assert ring.collect_events() == []


def test_two_rings_may_hold_the_same_name() -> None:
    first, second = open_ring(), open_ring()

    first.add(uuid4(), "deploy")
    second.add(uuid4(), "deploy")

    assert list(first.names.values()) == list(second.names.values()) == ["deploy"]


def test_renaming_a_key_to_its_own_name_is_fine_and_changes_nothing() -> None:
    ring = open_ring()
    key_id = uuid4()
    ring.add(key_id, "deploy")
    ring.collect_events()

    ring.rename(key_id, "deploy")

    assert ring.collect_events() == []
    assert ring.names == {key_id.hex: "deploy"}


def test_renaming_a_key_to_its_own_name_in_another_case_is_fine() -> None:
    ring = open_ring()
    key_id = uuid4()
    ring.add(key_id, "deploy")
    ring.collect_events()

    ring.rename(key_id, "Deploy")

    assert ring.names == {key_id.hex: "Deploy"}
    assert [type(event) for event in ring.collect_events()] == [KeyRing.KeyRenamed]


def test_rename_to_a_free_name() -> None:
    ring = open_ring()
    key_id = uuid4()
    ring.add(key_id, "deploy")

    ring.rename(key_id, "release")

    assert ring.names == {key_id.hex: "release"}


@pytest.mark.parametrize("taken", ["backup", "BACKUP"])
def test_renaming_to_another_keys_name_is_refused(taken: str) -> None:
    ring = open_ring()
    key_id = uuid4()
    ring.add(key_id, "deploy")
    ring.add(uuid4(), "backup")
    ring.collect_events()

    with pytest.raises(ApiKeyNameTakenError):
        ring.rename(key_id, taken)

    assert ring.names[key_id.hex] == "deploy"
    assert ring.collect_events() == []


def test_remove_frees_the_name() -> None:
    ring = open_ring()
    old_key, new_key = uuid4(), uuid4()
    ring.add(old_key, "deploy")

    ring.remove(old_key)
    ring.add(new_key, "DEPLOY")

    assert ring.names == {new_key.hex: "DEPLOY"}
    assert [type(event) for event in ring.collect_events()] == [
        KeyRing.KeyAdded,
        KeyRing.KeyRemoved,
        KeyRing.KeyAdded,
    ]


def test_removing_an_unknown_key_changes_nothing() -> None:
    ring = open_ring()
    ring.add(uuid4(), "deploy")
    ring.collect_events()

    ring.remove(uuid4())

    assert ring.collect_events() == []
    assert len(ring.names) == 1


def test_ring_state_rebuilt_from_its_events() -> None:
    ring = KeyRing.open(uuid4())
    first, second = uuid4(), uuid4()
    ring.add(first, "a")
    ring.add(second, "b")
    ring.rename(first, "c")
    ring.remove(second)
    events = ring.collect_events()

    rebuilt = events[0].mutate(None)
    for event in events[1:]:
        rebuilt = event.mutate(rebuilt)

    assert rebuilt == ring
    assert rebuilt.names == {first.hex: "c"}


# ---- Reservation ------------------------------------------------------------------------------


def test_reservation_id_is_deterministic() -> None:
    assert reservation_id("username", "alice") == reservation_id("username", "alice")
    assert reservation_id("username", "alice").version == 5


@pytest.mark.parametrize(
    ("kind", "value"),
    [("username", "bob"), ("email", "alice"), ("username", "Alice"), ("usernam", "e:alice")],
)
def test_reservation_ids_differ_for_other_kinds_or_values(kind: str, value: str) -> None:
    assert reservation_id(kind, value) != reservation_id("username", "alice")


def test_claim_holds_the_value() -> None:
    owner_id, subject_id = uuid4(), uuid4()

    reservation = Reservation.claim("username", "alice", owner_id, subject_id)

    assert reservation.id == reservation_id("username", "alice")
    assert reservation.kind == "username"
    assert reservation.owner_id == owner_id
    assert reservation.subject_id == subject_id
    assert reservation.data_subject_id == subject_id
    assert reservation.is_held is True
    assert [type(event) for event in reservation.collect_events()] == [Reservation.Claimed]


def test_two_claims_of_one_value_have_the_same_id() -> None:
    first = Reservation.claim("email", "digest-of-address", uuid4(), uuid4())
    second = Reservation.claim("email", "digest-of-address", uuid4(), uuid4())

    assert first.id == second.id  # so the event store refuses the second at version 1


def test_release_frees_the_value_once() -> None:
    reservation = Reservation.claim("username", "alice", uuid4(), uuid4())
    reservation.collect_events()

    reservation.release()
    reservation.release()

    assert reservation.is_held is False
    assert reservation.owner_id is None
    assert [type(event) for event in reservation.collect_events()] == [Reservation.Released]


def test_reclaim_after_release() -> None:
    reservation = Reservation.claim("username", "alice", uuid4(), uuid4())
    reservation.release()
    new_owner, new_subject = uuid4(), uuid4()

    reservation.reclaim(new_owner, new_subject)

    assert reservation.is_held is True
    assert reservation.owner_id == new_owner
    assert reservation.subject_id == new_subject
    assert [type(event) for event in reservation.collect_events()] == [
        Reservation.Claimed,
        Reservation.Released,
        Reservation.Reclaimed,
    ]


def test_reclaiming_a_held_value_is_a_conflict() -> None:
    owner_id = uuid4()
    reservation = Reservation.claim("username", "alice", owner_id, owner_id)
    reservation.collect_events()

    with pytest.raises(ConflictError):
        reservation.reclaim(uuid4(), uuid4())

    assert reservation.owner_id == owner_id
    assert reservation.collect_events() == []
