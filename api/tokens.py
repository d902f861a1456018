"""Access tokens: short-lived JWTs (HS256) signed with a key derived from the server secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import jwt

from domain.errors import AuthenticationError

ISSUER = "ledgerline"
AUDIENCE = "ledgerline-api"


@dataclass(frozen=True)
class AccessClaims:
    user_id: UUID
    session_id: UUID
    issued_at: datetime


class AccessTokens:
    def __init__(self, signing_key: bytes, *, lifetime: timedelta = timedelta(minutes=15)) -> None:
        self._key = signing_key
        self.lifetime = lifetime

    def issue(self, user_id: UUID, *, session_id: UUID, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "sid": str(session_id),
            "iat": int(now.timestamp()),
            "exp": int((now + self.lifetime).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "sid"]},
            )
            issued_at = datetime.fromtimestamp(int(claims["iat"]), UTC)
            return AccessClaims(UUID(claims["sub"]), UUID(claims["sid"]), issued_at)
        except (jwt.PyJWTError, ValueError, KeyError, TypeError, OverflowError):
            raise AuthenticationError("bad_token") from None
