"""Domain errors: typed, HTTP-agnostic. The API maps each type to a problem in one table."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID


class DomainError(Exception):
    """Base of every rule the domain refuses."""


class NotFoundError(DomainError):
    def __init__(self, resource_type: str, resource_id: object) -> None:
        super().__init__(f"{resource_type} {resource_id} not found")
        self.resource_type = resource_type
        self.resource_id = resource_id


class UserNotFoundError(NotFoundError):
    def __init__(self, user_id: object) -> None:
        super().__init__("user", user_id)


class ApiKeyNotFoundError(NotFoundError):
    def __init__(self, key_id: object) -> None:
        super().__init__("api_key", key_id)


class SessionNotFoundError(NotFoundError):
    def __init__(self, session_id: object) -> None:
        super().__init__("session", session_id)


class SubscriptionNotFoundError(NotFoundError):
    def __init__(self, subscription_id: object) -> None:
        super().__init__("subscription", subscription_id)


class ConflictError(DomainError):
    """The resource is not in a state that allows this change (HTTP 409)."""


class UniquenessError(ConflictError):
    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind.replace('_', ' ')} is already taken")
        self.kind = kind


class UsernameTakenError(UniquenessError):
    def __init__(self) -> None:
        super().__init__("username")


class EmailTakenError(UniquenessError):
    def __init__(self) -> None:
        super().__init__("email")


class ApiKeyNameTakenError(UniquenessError):
    def __init__(self) -> None:
        super().__init__("api_key_name")


class StateConflictError(ConflictError):
    def __init__(self, resource_type: str, resource_id: UUID, reason: str) -> None:
        super().__init__(f"{resource_type} {resource_id}: {reason}")
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.reason = reason


class UserDeletedError(StateConflictError):
    def __init__(self, user_id: UUID) -> None:
        super().__init__("user", user_id, "user is deleted")


class UserErasedError(StateConflictError):
    def __init__(self, user_id: UUID) -> None:
        super().__init__("user", user_id, "user is erased")


class ApiKeyRevokedError(StateConflictError):
    def __init__(self, key_id: UUID) -> None:
        super().__init__("api_key", key_id, "API key is revoked")


class ApiKeyExpiredError(StateConflictError):
    def __init__(self, key_id: UUID) -> None:
        super().__init__("api_key", key_id, "API key is expired")


class SubscriptionPausedError(StateConflictError):
    def __init__(self, subscription_id: UUID) -> None:
        super().__init__("subscription", subscription_id, "subscription is already paused")


class SubscriptionActiveError(StateConflictError):
    def __init__(self, subscription_id: UUID) -> None:
        super().__init__("subscription", subscription_id, "subscription is not paused")


class VersionMismatchError(DomainError):
    """The client's expected version (If-Match) is not the current one (HTTP 412)."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"expected version {expected}, current version is {actual}")
        self.expected = expected
        self.actual = actual


class ConcurrentChangeError(DomainError):
    """Another writer changed the aggregate first and retrying did not help (HTTP 409)."""


class InvalidValueError(DomainError):
    """A value breaks a business rule the request schema cannot express (HTTP 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownScopeError(InvalidValueError):
    def __init__(self, scope: str) -> None:
        super().__init__("permissions", f"unknown scope {scope!r}")
        self.scope = scope


class ScopeNotAllowedError(DomainError):
    """A key may not hold more than its owner has (HTTP 403)."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"scope {scope!r} needs admin rights")
        self.scope = scope


class ScopeBeyondCredentialError(ScopeNotAllowedError):
    """A request may hand out (or renew) only scopes its own credential grants (HTTP 403)."""

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.args = (f"the credential in hand does not grant {scope!r}",)


class LifetimeBeyondCredentialError(ScopeNotAllowedError):
    """A request may hand out (or renew) no key that outlives its own credential, and a rotated
    key's previous secret hands out nothing during its grace (HTTP 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__("expires_at")
        self.args = (reason,)


class VerificationTokenError(DomainError):
    """The e-mail verification token is wrong or expired (HTTP 422)."""


class AuthenticationError(DomainError):
    """Credentials did not authenticate. One message for every cause (no oracle)."""

    def __init__(self, reason: str = "invalid_credentials") -> None:
        super().__init__("invalid credentials")
        self.reason = reason  # for logs and audit only, never for the client


class AccountLockedError(AuthenticationError):
    def __init__(self, locked_until: datetime) -> None:
        super().__init__("locked")
        self.locked_until = locked_until


class WrongPasswordError(DomainError):
    """The current password given to change a password is wrong (HTTP 422)."""
