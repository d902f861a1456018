"""Login sessions: the refresh-token family behind a password login.

Each refresh rotates the token; presenting a token that was already spent means it leaked, so
the whole family is revoked (RFC 9700's refresh-token reuse detection). Logout revokes it too.
Only digests are stored.
"""

from __future__ import annotations

import hmac
from dataclasses import field
from datetime import datetime
from uuid import UUID

from domain.base import LedgerAggregate
from domain.errors import AuthenticationError


class Session(LedgerAggregate):
    TOPIC = "ledgerline.Session"
    REDACTED = frozenset({"refresh_digest", "spent_digests"})

    class Event(LedgerAggregate.Event):
        pass

    class Started(Event, LedgerAggregate.Created):
        TOPIC = "ledgerline.Session.Started"
        user_id: UUID
        refresh_digest: str
        expires_at: datetime
        # The user's version the login was decided on (None: stored before it was recorded).
        user_version: int | None = None

    Created = Started

    class Refreshed(Event):
        TOPIC = "ledgerline.Session.Refreshed"
        refresh_digest: str
        expires_at: datetime

        def apply(self, session: Session) -> None:
            session.spent_digests = [*session.spent_digests, session.refresh_digest]
            session.refresh_digest = self.refresh_digest
            session.expires_at = self.expires_at

    class Revoked(Event):
        TOPIC = "ledgerline.Session.Revoked"
        reason: str  # "logout" | "refresh_token_reused" | ...

        def apply(self, session: Session) -> None:
            session.revoked_at = self.timestamp
            session.revocation_reason = self.reason

    user_id: UUID | None = None
    user_version: int | None = None
    refresh_digest: str = ""
    expires_at: datetime | None = None
    spent_digests: list[str] = field(default_factory=list)
    revoked_at: datetime | None = None
    revocation_reason: str | None = None

    @property
    def data_subject_id(self) -> UUID:
        return self.user_id or self.id

    @classmethod
    def start(
        cls,
        *,
        session_id: UUID,
        user_id: UUID,
        user_version: int,
        refresh_digest: str,
        expires_at: datetime,
    ) -> Session:
        session: Session = cls._create_with_audit(
            cls.Started,
            id=session_id,
            audit_subject=user_id,
            user_id=user_id,
            user_version=user_version,
            refresh_digest=refresh_digest,
            expires_at=expires_at,
        )
        return session

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def refresh(self, presented_digest: str, new_digest: str, expires_at: datetime, now: datetime) -> None:
        """Rotate the refresh token; a spent one revokes the family (the caller must save it)."""
        if self.is_revoked:
            raise AuthenticationError("session_revoked")
        if any(hmac.compare_digest(spent, presented_digest) for spent in self.spent_digests):
            self.trigger_event(self.Revoked, reason="refresh_token_reused")
            return
        if not hmac.compare_digest(self.refresh_digest, presented_digest):
            raise AuthenticationError("unknown_refresh_token")
        if self.expires_at is None or now >= self.expires_at:
            raise AuthenticationError("refresh_token_expired")
        self.trigger_event(self.Refreshed, refresh_digest=new_digest, expires_at=expires_at)

    def revoke(self, reason: str) -> None:
        if not self.is_revoked:
            self.trigger_event(self.Revoked, reason=reason)
