"""The User aggregate: registration, profile, credentials, verification, login state, lifecycle."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from uuid import UUID

from domain.base import LedgerAggregate
from domain.errors import (
    AccountLockedError,
    AuthenticationError,
    StateConflictError,
    UserDeletedError,
    UserErasedError,
    VerificationTokenError,
)
from domain.values import ERASED, Lockout, PersonalData


def normalise_email(email: str) -> str:
    return email.strip().lower()


class User(LedgerAggregate):
    TOPIC = "ledgerline.User"

    class Event(LedgerAggregate.Event):
        pass

    class Registered(Event, LedgerAggregate.Created):
        TOPIC = "ledgerline.User.Registered"
        username: str
        email: PersonalData
        full_name: PersonalData | None
        password_hash: PersonalData  # sealed too: nothing of an erased user stays usable
        is_superuser: bool

        def apply(self, user: User) -> None:
            user.credential = self.password_hash

    Created = Registered

    class ProfileUpdated(Event):
        TOPIC = "ledgerline.User.ProfileUpdated"
        full_name: PersonalData | None

        def apply(self, user: User) -> None:
            user.full_name = self.full_name

    class EmailChanged(Event):
        TOPIC = "ledgerline.User.EmailChanged"
        email: PersonalData

        def apply(self, user: User) -> None:
            user.email = self.email
            user.verified_at = None  # a new address must be verified again,
            user.verification_digest = None  # and a token mailed to the old one is void
            user.verification_expires_at = None

    class PasswordChanged(Event):
        """The user changed their own password (the current one was checked)."""

        TOPIC = "ledgerline.User.PasswordChanged"
        password_hash: PersonalData

        def apply(self, user: User) -> None:
            user.credential = self.password_hash
            user._end_sessions(self)

    class PasswordReset(Event):
        """An administrator set a new password (no current password)."""

        TOPIC = "ledgerline.User.PasswordReset"
        password_hash: PersonalData

        def apply(self, user: User) -> None:
            user.credential = self.password_hash
            user._end_sessions(self)

    class PasswordRehashed(Event):
        """Same password, hashed again with the current parameters at a successful login."""

        TOPIC = "ledgerline.User.PasswordRehashed"
        password_hash: PersonalData

        def apply(self, user: User) -> None:
            user.credential = self.password_hash

    class VerificationRequested(Event):
        TOPIC = "ledgerline.User.VerificationRequested"
        token_digest: str
        expires_at: datetime

        def apply(self, user: User) -> None:
            user.verification_digest = self.token_digest
            user.verification_expires_at = self.expires_at

    class Verified(Event):
        TOPIC = "ledgerline.User.Verified"

        def apply(self, user: User) -> None:
            user.verified_at = self.timestamp
            user.verification_digest = None
            user.verification_expires_at = None

    class Activated(Event):
        TOPIC = "ledgerline.User.Activated"

        def apply(self, user: User) -> None:
            user.is_active = True

    class Deactivated(Event):
        TOPIC = "ledgerline.User.Deactivated"

        def apply(self, user: User) -> None:
            user.is_active = False
            user._end_sessions(self)  # an activation brings back the user and her keys, not sessions

    class LoggedIn(Event):
        TOPIC = "ledgerline.User.LoggedIn"

        def apply(self, user: User) -> None:
            user.last_login_at = self.timestamp
            user.last_login_ip = self.audit.ip_address
            user.failed_login_count = 0
            user.locked_until = None

    class LoginFailed(Event):
        TOPIC = "ledgerline.User.LoginFailed"
        reason: str  # "bad_password" | "locked" | "inactive" | "deleted"
        failed_login_count: int

        def apply(self, user: User) -> None:
            user.failed_login_count = self.failed_login_count

    class Locked(Event):
        TOPIC = "ledgerline.User.Locked"
        locked_until: datetime

        def apply(self, user: User) -> None:
            user.locked_until = self.locked_until
            user.failed_login_count = 0

    class Unlocked(Event):
        TOPIC = "ledgerline.User.Unlocked"

        def apply(self, user: User) -> None:
            user.locked_until = None
            user.failed_login_count = 0

    class SuperuserGranted(Event):
        TOPIC = "ledgerline.User.SuperuserGranted"

        def apply(self, user: User) -> None:
            user.is_superuser = True

    class SuperuserRevoked(Event):
        TOPIC = "ledgerline.User.SuperuserRevoked"

        def apply(self, user: User) -> None:
            user.is_superuser = False

    class Deleted(Event):
        TOPIC = "ledgerline.User.Deleted"

        def apply(self, user: User) -> None:
            user.deleted_at = self.timestamp
            user._end_sessions(self)  # a restore brings the user back, not their sessions

    class Restored(Event):
        TOPIC = "ledgerline.User.Restored"

        def apply(self, user: User) -> None:
            user.deleted_at = None

    class Erased(Event):
        """GDPR erasure: the subject's data key is destroyed right after this is stored."""

        TOPIC = "ledgerline.User.Erased"

        def apply(self, user: User) -> None:
            user.erased_at = self.timestamp
            user.deleted_at = user.deleted_at or self.timestamp
            user.is_active = False
            user._end_sessions(self)

    REDACTED = frozenset({"credential", "verification_digest"})

    username: str = ""
    email: PersonalData | None = None
    full_name: PersonalData | None = None
    credential: PersonalData | None = None  # the Argon2 hash, sealed with the user's data key
    is_superuser: bool = False
    is_active: bool = True
    verified_at: datetime | None = None
    verification_digest: str | None = None
    verification_expires_at: datetime | None = None
    failed_login_count: int = 0
    locked_until: datetime | None = None
    last_login_at: datetime | None = None
    last_login_ip: PersonalData | None = None
    deleted_at: datetime | None = None
    erased_at: datetime | None = None
    # The last event that ended every session started before it (password change or reset,
    # deletion, erasure): its version orders sessions exactly; its time is for sessions stored
    # before sessions recorded the user's version (and for snapshots from before the version).
    credentials_changed_at: datetime | None = None
    credentials_version: int | None = None

    # ---- creation -------------------------------------------------------------------------

    @classmethod
    def register(
        cls,
        *,
        user_id: UUID,
        username: str,
        email: str,
        password_hash: str,
        full_name: str | None = None,
        is_superuser: bool = False,
    ) -> User:
        return cls._create_with_audit(
            cls.Registered,
            id=user_id,
            audit_subject=user_id,
            username=username,
            email=PersonalData(user_id, normalise_email(email)),
            full_name=None if full_name is None else PersonalData(user_id, full_name),
            password_hash=PersonalData(user_id, password_hash),
            is_superuser=is_superuser,
        )

    # ---- state ----------------------------------------------------------------------------

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    @property
    def password_hash(self) -> str:
        return self.credential.value if self.credential else ERASED

    @property
    def email_address(self) -> str:
        return self.email.value if self.email else ERASED

    def check_live(self) -> None:
        if self.is_erased:
            raise UserErasedError(self.id)
        if self.is_deleted:
            raise UserDeletedError(self.id)

    def _conflict(self, reason: str) -> StateConflictError:
        return StateConflictError("user", self.id, reason)

    # ---- profile and credentials ----------------------------------------------------------

    def update_profile(self, *, full_name: str | None) -> None:
        self.check_live()
        current = self.full_name.value if self.full_name else None
        if full_name != current:
            value = None if full_name is None else PersonalData(self.id, full_name)
            self.trigger_event(self.ProfileUpdated, full_name=value)

    def change_email(self, email: str) -> None:
        self.check_live()
        if normalise_email(email) != self.email_address:
            self.trigger_event(self.EmailChanged, email=PersonalData(self.id, normalise_email(email)))

    def change_password(self, password_hash: str) -> None:
        self.check_live()
        self.trigger_event(self.PasswordChanged, password_hash=PersonalData(self.id, password_hash))

    def reset_password(self, password_hash: str) -> None:
        self.check_live()
        self.trigger_event(self.PasswordReset, password_hash=PersonalData(self.id, password_hash))

    def rehash_password(self, password_hash: str) -> None:
        """Same password, stronger hashing parameters (done on a successful login)."""
        self.check_live()
        self.trigger_event(self.PasswordRehashed, password_hash=PersonalData(self.id, password_hash))

    # ---- verification ---------------------------------------------------------------------

    def request_verification(self, token_digest: str, expires_at: datetime) -> None:
        self.check_live()
        if self.is_verified:
            raise self._conflict("user is already verified")
        self.trigger_event(self.VerificationRequested, token_digest=token_digest, expires_at=expires_at)

    def verify(self, *, token_digest: str | None = None, now: datetime | None = None) -> None:
        """Verify the e-mail address: by an admin (no token) or with the mailed token."""
        self.check_live()
        if self.is_verified:
            raise self._conflict("user is already verified")
        if token_digest is not None:
            expected = self.verification_digest or ""
            expired = (
                now is None or self.verification_expires_at is None or now >= self.verification_expires_at
            )
            if not hmac.compare_digest(expected, token_digest) or expired:
                raise VerificationTokenError("verification token is invalid or expired")
        self.trigger_event(self.Verified)

    # ---- lifecycle ------------------------------------------------------------------------

    def activate(self) -> None:
        self.check_live()
        if self.is_active:
            raise self._conflict("user is already active")
        self.trigger_event(self.Activated)

    def deactivate(self) -> None:
        self.check_live()
        if not self.is_active:
            raise self._conflict("user is already inactive")
        self.trigger_event(self.Deactivated)

    def grant_superuser(self) -> None:
        self.check_live()
        if self.is_superuser:
            raise self._conflict("user is already a superuser")
        self.trigger_event(self.SuperuserGranted)

    def revoke_superuser(self) -> None:
        self.check_live()
        if not self.is_superuser:
            raise self._conflict("user is not a superuser")
        self.trigger_event(self.SuperuserRevoked)

    def delete(self) -> None:
        self.check_live()
        self.trigger_event(self.Deleted)

    def restore(self) -> None:
        if self.is_erased:
            raise UserErasedError(self.id)
        if not self.is_deleted:
            raise self._conflict("user is not deleted")
        self.trigger_event(self.Restored)

    def erase(self) -> None:
        if self.is_erased:
            raise UserErasedError(self.id)
        self.trigger_event(self.Erased)

    # ---- authentication -------------------------------------------------------------------

    def _end_sessions(self, event: LedgerAggregate.Event) -> None:
        self.credentials_changed_at = event.timestamp
        self.credentials_version = event.originator_version

    def accepts_session(self, *, started_at_version: int | None, started_on: datetime) -> bool:
        """Whether a login session (and so each access token of it) survives the last event that
        ended sessions. Ordered by the user's versions: a session records the version its login
        was decided on, so a change in the same instant is still before or after it. Sessions
        or user states stored without versions are ordered by full-precision event times."""
        if self.credentials_version is None and self.credentials_changed_at is None:
            return True
        if self.credentials_version is not None and started_at_version is not None:
            return started_at_version >= self.credentials_version
        assert self.credentials_changed_at is not None
        return started_on > self.credentials_changed_at

    def login_refusal(self, now: datetime) -> AuthenticationError | None:
        """Why this account may not log in now, whatever the password."""
        if self.is_deleted:
            return AuthenticationError("deleted")
        if not self.is_active:
            return AuthenticationError("inactive")
        if self.locked_until is not None and self.is_locked(now):
            return AccountLockedError(self.locked_until)
        return None

    def record_login(self, now: datetime) -> None:
        refusal = self.login_refusal(now)
        if refusal is not None:
            raise refusal
        self.trigger_event(self.LoggedIn)

    def record_failed_login(self, reason: str, now: datetime, lockout: Lockout) -> None:
        """Count a failure; the ``max_failures``-th consecutive bad password locks the account."""
        counts = reason == "bad_password" and not self.is_locked(now)
        failures = self.failed_login_count + 1 if counts else self.failed_login_count
        self.trigger_event(self.LoginFailed, reason=reason, failed_login_count=failures)
        if counts and failures >= lockout.max_failures:
            self.trigger_event(self.Locked, locked_until=now + timedelta(seconds=lockout.seconds))

    def unlock(self, now: datetime) -> None:
        self.check_live()
        if not self.is_locked(now) and self.failed_login_count == 0:
            raise self._conflict("user is not locked")
        self.trigger_event(self.Unlocked)
