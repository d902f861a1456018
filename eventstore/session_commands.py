"""Use cases on login sessions: start (at login), refresh with rotation, end (logout)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.errors import AuthenticationError, SessionNotFoundError
from domain.sessions import Session
from eventstore.api_key_tokens import digest_of
from eventstore.commands import CommandResult, utcnow, with_retries
from eventstore.identity_base import IdentityBase

REFRESH_PREFIX = "llr_"
_REFRESH = re.compile(rf"^{REFRESH_PREFIX}([0-9a-f]{{32}})_([A-Za-z0-9_-]{{43}})$")
REFRESH_LIFETIME = timedelta(days=30)


@dataclass(frozen=True)
class SessionTokens:
    result: CommandResult
    user_id: UUID
    session_id: UUID
    refresh_token: str = field(repr=False)


def _new_secret() -> str:
    return secrets.token_urlsafe(32)  # 43 characters, 256 bits


class SessionCommands(IdentityBase):
    def start_session(self, user_id: UUID) -> SessionTokens:
        session_id, secret = uuid4(), _new_secret()
        session = Session.start(
            session_id=session_id,
            user_id=user_id,
            refresh_digest=digest_of(secret),
            expires_at=utcnow() + REFRESH_LIFETIME,
        )
        token = f"{REFRESH_PREFIX}{session_id.hex}_{secret}"
        return SessionTokens(self._save(session), user_id, session_id, token)

    def refresh_session(self, refresh_token: str) -> SessionTokens:
        """Rotate the refresh token. A spent token revokes its session and fails, like any bad one."""
        match = _REFRESH.match(refresh_token)
        if match is None:
            raise AuthenticationError("malformed_refresh_token")
        session_id, presented = UUID(match.group(1)), digest_of(match.group(2))
        secret = _new_secret()

        def attempt() -> SessionTokens:
            session = self._session(session_id)
            session.refresh(presented, digest_of(secret), utcnow() + REFRESH_LIFETIME, utcnow())
            result = self._save(session)
            if session.is_revoked:
                raise AuthenticationError("refresh_token_reused")
            assert session.user_id is not None
            user = self.get_user(session.user_id)
            if user.is_deleted or not user.is_active:
                raise AuthenticationError("user_inactive")
            if not user.accepts_credentials_from(session.created_on):
                raise AuthenticationError("password_changed")
            return SessionTokens(
                result, session.user_id, session_id, f"{REFRESH_PREFIX}{session_id.hex}_{secret}"
            )

        return with_retries(attempt)

    def end_session(self, session_id: UUID, *, reason: str = "logout") -> CommandResult:
        def change(session: Session) -> list[Aggregate]:
            session.revoke(reason)
            return []

        return self._change(Session, session_id, SessionNotFoundError, change, None)

    def session_is_live(self, session_id: UUID) -> bool:
        try:
            session = self._session(session_id)
        except AuthenticationError:
            return False
        if session.is_revoked or session.user_id is None:
            return False
        return self.get_user(session.user_id).accepts_credentials_from(session.created_on)

    def _session(self, session_id: UUID) -> Session:
        try:
            return self._get(Session, session_id, SessionNotFoundError)
        except SessionNotFoundError:
            raise AuthenticationError("unknown_session") from None
