"""The audit log reads stored events, not domain events (issue 13, "decode less").

Building a domain event (the library's decoding, reviving every custom type, then the event
object) cost more than everything else an audit row takes. A row needs the event's JSON as
stored: its envelope and fields, with the custom types still boxed as the library writes them
(``{"_type_": name, "_data_": value}``). Personal data stays the ciphertext it was stored as
(sealed for the table as it is, never decrypted). A state stored in an older shape of its
event class is the exception: the mapper decodes and upcasts it, and it is boxed again.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Mapper
from eventsourcing.utils import resolve_topic

from domain.values import AuditEnvelope
from eventstore.transcoder import parsed_uuid

_decoder = msgspec.json.Decoder()
ENVELOPE_DEFAULTS = {field.name: field.default for field in fields(AuditEnvelope)}


def stored_state(stored: Any, mapper: Mapper[UUID] | None) -> dict[str, Any]:
    """The stored event's fields as JSON values, custom types boxed."""
    state: dict[str, Any] = _decoder.decode(stored.state)
    if state.pop("class_version", 1) >= getattr(resolve_topic(stored.topic), "class_version", 1):
        return state
    if mapper is None:
        raise ValueError(f"{stored.topic} is stored in an older shape: it needs the mapper to upcast")
    event = vars(mapper.to_domain_event(stored))
    upcast = {
        name: value for name, value in event.items() if name not in ("originator_id", "originator_version")
    }
    return _decoder.decode(mapper.transcoder.encode(upcast))


def unboxed(value: Any) -> tuple[str, Any] | None:
    """(type name, data) of a boxed custom value, or None for a plain JSON value."""
    if type(value) is dict and len(value) == 2 and "_type_" in value and "_data_" in value:
        return value["_type_"], value["_data_"]
    return None


def boxed(value: Any, expected: str) -> Any:
    """The data of a value boxed as ``expected``."""
    box = unboxed(value)
    if box is None or box[0] != expected:
        raise ValueError(f"expected a stored {expected}")
    return box[1]


def moment(value: Any) -> datetime:
    return datetime.fromisoformat(boxed(value, "datetime_iso"))


def identifier(value: Any) -> UUID | None:
    return None if value is None else parsed_uuid(boxed(value, "uuid_hex"))


def envelope(value: Any) -> dict[str, Any]:
    """The audit envelope's fields (their defaults where the stored one has none); identifiers
    as UUIDs, personal data still boxed."""
    stored = boxed(value, "audit")
    found = {name: stored.get(name, default) for name, default in ENVELOPE_DEFAULTS.items()}
    found["actor_id"], found["credential_id"] = (
        identifier(found["actor_id"]),
        identifier(found["credential_id"]),
    )
    return found
