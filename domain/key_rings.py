"""A user's key ring: the names of their live API keys, so a key name is unique per owner.

Issuing, renaming and revoking a key change the ring in the same atomic append as the key, so
two concurrent requests for one name cannot both win (the ring's version decides).
"""

from __future__ import annotations

from dataclasses import field
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.base import LedgerAggregate
from domain.errors import ApiKeyNameTakenError

NAMESPACE = uuid5(NAMESPACE_URL, "https://ledgerline.dev/key-rings")


def key_ring_id(owner_id: UUID) -> UUID:
    return uuid5(NAMESPACE, owner_id.hex)


class KeyRing(LedgerAggregate):
    TOPIC = "ledgerline.KeyRing"

    class Event(LedgerAggregate.Event):
        pass

    class Opened(Event, LedgerAggregate.Created):
        TOPIC = "ledgerline.KeyRing.Opened"
        owner_id: UUID

    Created = Opened

    class KeyAdded(Event):
        TOPIC = "ledgerline.KeyRing.KeyAdded"
        key_id: UUID
        name: str

        def apply(self, ring: KeyRing) -> None:
            ring.names[self.key_id.hex] = self.name

    class KeyRenamed(Event):
        TOPIC = "ledgerline.KeyRing.KeyRenamed"
        key_id: UUID
        name: str

        def apply(self, ring: KeyRing) -> None:
            ring.names[self.key_id.hex] = self.name

    class KeyRemoved(Event):
        TOPIC = "ledgerline.KeyRing.KeyRemoved"
        key_id: UUID

        def apply(self, ring: KeyRing) -> None:
            ring.names.pop(self.key_id.hex, None)

    owner_id: UUID | None = None
    names: dict[str, str] = field(default_factory=dict)  # key id (hex) -> name (JSON-safe keys)

    @property
    def data_subject_id(self) -> UUID:
        return self.owner_id or self.id

    @classmethod
    def open(cls, owner_id: UUID) -> KeyRing:
        return cls._create_with_audit(
            cls.Opened, id=key_ring_id(owner_id), audit_subject=owner_id, owner_id=owner_id
        )

    @property
    def key_ids(self) -> list[UUID]:
        return [UUID(hex_id) for hex_id in self.names]

    def _check_free(self, name: str, key_id: UUID) -> None:
        folded = name.casefold()
        for other_id, other in self.names.items():
            if other_id != key_id.hex and other.casefold() == folded:
                raise ApiKeyNameTakenError()

    def add(self, key_id: UUID, name: str) -> None:
        self._check_free(name, key_id)
        self.trigger_event(self.KeyAdded, key_id=key_id, name=name)

    def rename(self, key_id: UUID, name: str) -> None:
        self._check_free(name, key_id)
        if self.names.get(key_id.hex) != name:
            self.trigger_event(self.KeyRenamed, key_id=key_id, name=name)

    def remove(self, key_id: UUID) -> None:
        if key_id.hex in self.names:
            self.trigger_event(self.KeyRemoved, key_id=key_id)
