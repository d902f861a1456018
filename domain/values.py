"""Value types shared by the aggregates."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

ERASED = "[erased]"


@dataclass(frozen=True, slots=True)
class PersonalData:
    """A piece of personal data about one data subject (a user).

    The event store encrypts it with the subject's data key; erasing the subject destroys
    the key, after which it decodes as ``ERASED`` while the stored event stays untouched.
    """

    subject_id: UUID
    value: str

    @property
    def is_erased(self) -> bool:
        return self.value == ERASED

    def __repr__(self) -> str:  # keep personal data out of logs and tracebacks
        return f"PersonalData(subject_id={self.subject_id!s}, value=<hidden>)"


def reveal(data: PersonalData | None) -> str | None:
    return None if data is None else data.value


@dataclass(frozen=True, slots=True)
class AuditEnvelope:
    """Who did it, with which credential, from where, in answer to which request.

    Attached to every event when it is triggered (see ``domain.audit``); ``occurred_at`` is
    the event's own timestamp.
    """

    actor_id: UUID | None = None
    actor_type: str = "system"  # "user" | "api_key" | "anonymous" | "system"
    credential_id: UUID | None = None
    request_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    ip_address: PersonalData | None = None
    user_agent: PersonalData | None = None


@dataclass(frozen=True, slots=True)
class Lockout:
    """How many consecutive failed logins lock an account, and for how long."""

    max_failures: int = 5
    seconds: int = 15 * 60
