"""Use cases on login sessions: start (at login), refresh with rotation, end (logout), check."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.errors import AuthenticationError, SessionNotFoundError
from domain.sessions import Session
from domain.users import User
from eventstore.api_key_tokens import digest_of
from eventstore.authentication import Authentication
from eventstore.commands import CommandResult, fresh_reads, utcnow, with_retries

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


def _survives(session: Session, user: User) -> bool:
    """A session lives while its user is live and nothing has ended it since it started."""
    return (
        not session.is_revoked
        and not user.is_deleted
        and user.is_active
        and user.accepts_session(started_at_version=session.user_version, started_on=session.created_on)
    )


class SessionCommands(Authentication):
    def log_in(self, login: str, password: str) -> SessionTokens:
        """A password login that starts a session: the login and the session are one append, and
        the session records the user's version it was decided on (what orders it against a
        password change, a deletion or an erasure)."""
        session_id, secret = uuid4(), _new_secret()

        def start(user: User) -> list[Aggregate]:
            return [
                Session.start(
                    session_id=session_id,
                    user_id=user.id,
                    user_version=user.version,
                    refresh_digest=digest_of(secret),
                    expires_at=utcnow() + REFRESH_LIFETIME,
                )
            ]

        result = self.authenticate(login, password, also=start)
        token = f"{REFRESH_PREFIX}{session_id.hex}_{secret}"
        return SessionTokens(result, result.id, session_id, token)

    def refresh_session(self, refresh_token: str) -> SessionTokens:
        """Rotate the refresh token of a live session. A spent token revokes its session and
        fails, like any bad one; a session that something ended fails without writing."""
        match = _REFRESH.match(refresh_token)
        if match is None:
            raise AuthenticationError("malformed_refresh_token")
        session_id, presented = UUID(match.group(1)), digest_of(match.group(2))
        secret = _new_secret()

        def attempt() -> SessionTokens:
            session = self._session(session_id)
            assert session.user_id is not None
            with fresh_reads():  # decided on, not saved: as stored now (see _current_owner)
                user = self.get_user(session.user_id)
            if not session.is_revoked and not _survives(session, user):
                raise AuthenticationError("session_ended")
            session.refresh(presented, digest_of(secret), utcnow() + REFRESH_LIFETIME, utcnow())
            result = self._save(session)
            if session.is_revoked:
                raise AuthenticationError("refresh_token_reused")
            return SessionTokens(
                result, session.user_id, session_id, f"{REFRESH_PREFIX}{session_id.hex}_{secret}"
            )

        return with_retries(attempt)

    def end_session(self, session_id: UUID, *, reason: str = "logout") -> CommandResult:
        def change(session: Session) -> list[Aggregate]:
            session.revoke(reason)
            return []

        return self._change(Session, session_id, SessionNotFoundError, change, None)

    def user_of_live_session(self, session_id: UUID) -> User:
        """The user of a session that is still live (what an access token of it needs)."""
        session = self._session(session_id)
        if session.user_id is None:
            raise AuthenticationError("unknown_session")
        user = self.get_user(session.user_id)
        if not _survives(session, user):
            raise AuthenticationError("session_ended")
        return user

    def _session(self, session_id: UUID) -> Session:
        try:
            return self._get(Session, session_id, SessionNotFoundError)
        except SessionNotFoundError:
            raise AuthenticationError("unknown_session") from None
