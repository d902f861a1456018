"""The audit context of the command being handled, captured once and attached to every event.

The API's middleware (or a CLI command) opens ``acting_as(...)``; aggregates read it when they
trigger an event, so no method passes actor, IP or request id by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from uuid import UUID

from domain.values import AuditEnvelope, PersonalData


@dataclass(frozen=True, slots=True)
class AuditContext:
    actor_id: UUID | None = None
    actor_type: str = "system"
    credential_id: UUID | None = None
    request_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None

    def envelope(self, subject_id: UUID) -> AuditEnvelope:
        """The envelope for an event about ``subject_id``.

        The IP address and user agent belong to the acting user when there is one (erasing
        that user erases them); for anonymous or system actors they belong to the subject.
        """
        owner = self.actor_id if self.actor_type in ("user", "api_key") and self.actor_id else subject_id
        return AuditEnvelope(
            actor_id=self.actor_id,
            actor_type=self.actor_type,
            credential_id=self.credential_id,
            request_id=self.request_id,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            ip_address=_personal(owner, self.ip_address),
            user_agent=_personal(owner, self.user_agent),
        )


def _personal(subject_id: UUID, value: str | None) -> PersonalData | None:
    return None if value is None else PersonalData(subject_id, value)


SYSTEM = AuditContext()
_current: ContextVar[AuditContext] = ContextVar("ledgerline_audit_context", default=SYSTEM)


def current_audit_context() -> AuditContext:
    return _current.get()


@contextmanager
def acting_as(context: AuditContext) -> Iterator[AuditContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


@contextmanager
def acting_with(**changes: object) -> Iterator[AuditContext]:
    """Refine the current context (e.g. once a login has identified the actor)."""
    with acting_as(replace(_current.get(), **changes)) as context:  # type: ignore[arg-type]
        yield context
