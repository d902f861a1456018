"""The base of Ledgerline's aggregates: explicit topics and the audit envelope on every event."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.audit import current_audit_context
from domain.values import AuditEnvelope

TOPIC_PREFIX = "ledgerline"


class LedgerAggregate(Aggregate):
    """Aggregates whose events carry an ``audit`` envelope taken from the audit context.

    Every concrete aggregate and event class declares a stable ``TOPIC`` (stored events are
    forever: moving a module must not orphan them).
    """

    TOPIC: ClassVar[str]
    REDACTED: ClassVar[frozenset[str]] = frozenset()  # state never shown by repr()

    class Event(Aggregate.Event):
        audit: AuditEnvelope

    def __repr__(self) -> str:
        shown = (
            f"{name.lstrip('_')}={'<redacted>' if name in self.REDACTED else repr(value)}"
            for name, value in vars(self).items()
            if name != "_pending_events"
        )
        return f"{type(self).__name__}({', '.join(shown)})"

    @property
    def data_subject_id(self) -> UUID:
        """Whose personal data this aggregate's events carry by default."""
        return self.id

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.setdefault("audit", current_audit_context().envelope(self.data_subject_id))
        super().trigger_event(event_class, **kwargs)

    @classmethod
    def _create_with_audit(
        cls,
        event_class: Any,
        *,
        id: UUID,
        audit_subject: UUID,
        **kwargs: Any,
    ) -> Any:
        audit = current_audit_context().envelope(audit_subject)
        return cls._create(event_class, id=id, audit=audit, **kwargs)
