"""Uniqueness by reservation: one aggregate per reserved value, its id a uuid5 of the value.

Claiming a taken value writes version 1 of an existing aggregate (or a stale version), so the
atomic append that also holds the user or key fails: exactly one of concurrent claims wins.
The reserved value itself is never stored: only its uuid5 (callers pass a keyed hash for e-mail).
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from domain.base import LedgerAggregate
from domain.errors import ConflictError

NAMESPACE = uuid5(NAMESPACE_URL, "https://ledgerline.dev/reservations")


def reservation_id(kind: str, value: str) -> UUID:
    return uuid5(NAMESPACE, f"{kind}:{value}")


class Reservation(LedgerAggregate):
    TOPIC = "ledgerline.Reservation"

    class Event(LedgerAggregate.Event):
        pass

    class Claimed(Event, LedgerAggregate.Created):
        TOPIC = "ledgerline.Reservation.Claimed"
        kind: str
        owner_id: UUID
        subject_id: UUID

    Created = Claimed

    class Reclaimed(Event):
        TOPIC = "ledgerline.Reservation.Reclaimed"
        owner_id: UUID
        subject_id: UUID

        def apply(self, aggregate: Reservation) -> None:
            aggregate.owner_id = self.owner_id
            aggregate.subject_id = self.subject_id

    class Released(Event):
        TOPIC = "ledgerline.Reservation.Released"

        def apply(self, aggregate: Reservation) -> None:
            aggregate.owner_id = None

    kind: str = ""
    owner_id: UUID | None = None
    subject_id: UUID | None = None

    @property
    def data_subject_id(self) -> UUID:
        return self.subject_id or self.id

    @classmethod
    def claim(cls, kind: str, value: str, owner_id: UUID, subject_id: UUID) -> Reservation:
        return cls._create_with_audit(
            cls.Claimed,
            id=reservation_id(kind, value),
            audit_subject=subject_id,
            kind=kind,
            owner_id=owner_id,
            subject_id=subject_id,
        )

    @property
    def is_held(self) -> bool:
        return self.owner_id is not None

    def reclaim(self, owner_id: UUID, subject_id: UUID) -> None:
        if self.owner_id is not None:
            raise ConflictError(f"{self.kind} is already reserved")
        self.trigger_event(self.Reclaimed, owner_id=owner_id, subject_id=subject_id)

    def release(self) -> None:
        if self.owner_id is not None:
            self.trigger_event(self.Released)
