"""Use cases on users: registration, profile, credentials, verification, lifecycle, erasure."""

from __future__ import annotations

import secrets
from datetime import timedelta
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.errors import (
    EmailTakenError,
    UserErasedError,
    UsernameTakenError,
    UserNotFoundError,
    WrongPasswordError,
)
from domain.password_policy import check_password
from domain.users import User, normalise_email
from eventstore.api_key_tokens import digest_of
from eventstore.commands import (
    UNCHANGED,
    CommandResult,
    VerificationRequest,
    fresh_reads,
    utcnow,
    with_retries,
)
from eventstore.identity_base import IdentityBase


class UserCommands(IdentityBase):
    def register_user(
        self,
        *,
        username: str,
        email: str,
        password: str,
        full_name: str | None = None,
        is_superuser: bool = False,
    ) -> CommandResult[User]:
        check_password(password, username=username, email=email, full_name=full_name)
        password_hash = self.passwords.hash(password)
        user_id = uuid4()

        def attempt() -> CommandResult[User]:
            user = User.register(
                user_id=user_id,
                username=username,
                email=email,
                password_hash=password_hash,
                full_name=full_name,
                is_superuser=is_superuser,
            )
            # A lost race on either reservation is retried, and then fails as the rule it broke.
            username_claim = self._claim(
                "username", username.casefold(), user_id, user_id, UsernameTakenError
            )
            email_claim = self._claim("email", self._email_key(email), user_id, user_id, EmailTakenError)
            return self._save(user, username_claim, email_claim)

        return with_retries(attempt)

    def update_user(
        self,
        user_id: UUID,
        *,
        full_name: str | None = UNCHANGED,
        email: str = UNCHANGED,
        is_superuser: bool = UNCHANGED,
        expected_version: int | None = None,
    ) -> CommandResult[User]:
        """Change any of profile, e-mail address and superuser status: everything in one append,
        or nothing (a taken address, a stale version, a change a live user cannot take)."""

        def change(user: User) -> list[Aggregate]:
            touched: list[Aggregate] = []
            if full_name is not UNCHANGED:
                user.update_profile(full_name=full_name)
            if email is not UNCHANGED and normalise_email(email) != user.email_address:
                claim = self._claim("email", self._email_key(email), user.id, user.id, EmailTakenError)
                touched += [claim, *self._release_email(user)]  # the old address is free for others
                user.change_email(email)
            if is_superuser is not UNCHANGED and is_superuser and not user.is_superuser:
                user.grant_superuser()
            elif is_superuser is not UNCHANGED and not is_superuser and user.is_superuser:
                user.revoke_superuser()
            return touched

        return self._change(User, user_id, UserNotFoundError, change, expected_version)

    def change_password(
        self, user_id: UUID, *, current_password: str, new_password: str
    ) -> CommandResult[User]:
        """The user's own change: the current password is checked against the very hash the
        change replaces (a concurrent reset makes the old password fail, not win)."""
        self._check_new_password(user_id, new_password, "new_password")
        new_hash = self.passwords.hash(new_password)
        checked: dict[str, bool] = {}

        def change(user: User) -> list[Aggregate]:
            if user.password_hash not in checked:
                checked[user.password_hash] = self.passwords.verify(user.password_hash, current_password)
            if not checked[user.password_hash]:
                raise WrongPasswordError("current password is wrong")
            user.change_password(new_hash)
            return []

        return self._change(User, user_id, UserNotFoundError, change, None)

    def reset_password(self, user_id: UUID, new_password: str) -> CommandResult[User]:
        """An administrator's reset: no current password, recorded as such."""
        self._check_new_password(user_id, new_password, "password")
        new_hash = self.passwords.hash(new_password)
        return self._change_user(user_id, lambda u: u.reset_password(new_hash))

    def _check_new_password(self, user_id: UUID, password: str, field: str) -> None:
        """The password policy, with the user's own names (``domain.password_policy``)."""
        user = self.get_user(user_id)
        check_password(
            password,
            field=field,
            username=user.username,
            email=user.email_address,
            full_name=user.full_name.value if user.full_name else None,
        )

    def request_email_verification(
        self, user_id: UUID, *, ttl: timedelta = timedelta(days=2)
    ) -> VerificationRequest:
        """Returns the one-time token to send to the user; only its digest is stored."""
        token = secrets.token_urlsafe(32)
        expires_at = utcnow() + ttl
        result = self._change_user(user_id, lambda u: u.request_verification(digest_of(token), expires_at))
        return VerificationRequest(result, token)

    def verify_user(self, user_id: UUID, *, token: str | None = None) -> CommandResult[User]:
        digest = None if token is None else digest_of(token)
        return self._change_user(user_id, lambda u: u.verify(token_digest=digest, now=utcnow()))

    def activate_user(self, user_id: UUID) -> CommandResult[User]:
        return self._change_user(user_id, User.activate)

    def deactivate_user(self, user_id: UUID) -> CommandResult[User]:
        return self._change_user(user_id, User.deactivate)

    def unlock_user(self, user_id: UUID) -> CommandResult[User]:
        return self._change_user(user_id, lambda u: u.unlock(utcnow()))

    def delete_user(self, user_id: UUID) -> CommandResult[User]:
        """Soft delete: the user and all their live keys go in one append; names stay reserved."""

        def change(user: User) -> list[Aggregate]:
            user.delete()
            return self._revoke_all_keys(user.id, "owner deleted")

        return self._change(User, user_id, UserNotFoundError, change, None)

    def restore_user(self, user_id: UUID) -> CommandResult[User]:
        return self._change_user(user_id, User.restore)

    def erase_user(self, user_id: UUID) -> CommandResult[User]:
        """GDPR erasure: record ``User.Erased`` (revoking keys, freeing the e-mail address) in one
        append, then destroy the data key. Idempotent: a repeat finishes an interrupted erasure
        and answers like the first call."""

        def change(user: User) -> list[Aggregate]:
            released = self._release_email(user)
            user.erase()
            return [*released, *self._revoke_all_keys(user.id, "owner erased")]

        try:
            position = self._change(User, user_id, UserNotFoundError, change, None).position
        except UserErasedError:
            position = self.head_position()
        self._erase_subject(user_id)  # stored: no cached aggregate keeps their data in the clear
        self.data_keys.erase(user_id)
        with fresh_reads():
            user = self.get_user(user_id)  # as stored now: its personal data reads as erased
        return CommandResult(user.id, position, user.version, user)

    def finish_erasures(self) -> int:
        """Destroy the data key of every erased user whose key survived (a crash between the
        ``User.Erased`` append and the key destruction). Returns how many were finished."""
        finished, start = 0, 0
        while True:
            page = self.recorder.select_notifications(
                start, 500, topics=[User.Erased.TOPIC], inclusive_of_start=False
            )
            for notification in page:
                subject_id = UUID(str(notification.originator_id))
                if not self.data_keys.is_erased(subject_id):
                    self.data_keys.erase(subject_id)
                    finished += 1
            if len(page) < 500:
                return finished
            start = page[-1].id
