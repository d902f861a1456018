"""The Identity application: one method per use case, each one atomic, version-checked append.

Every command returns a ``CommandResult``: the aggregate id, the global position of the last
event it wrote (for read-your-writes), the aggregate's new version and the aggregate as saved (the
API answers with it). A command loads what it needs once, decides, and saves every aggregate it
touched in one append, or raises before writing. Uniqueness is enforced by
reservation aggregates and key rings saved in the same append. The use cases live in
``user_commands``, ``api_key_commands``, ``session_commands``, ``subscription_commands``,
``authentication`` and ``key_checks``; the shared machinery in
``identity_base``.
"""

from __future__ import annotations

from eventstore.api_key_commands import ApiKeyCommands
from eventstore.authentication import Authentication
from eventstore.commands import UNCHANGED, CommandResult, IssuedKey, VerificationRequest, VerifiedKey
from eventstore.key_checks import KeyCheck, KeyChecks, KeyCode
from eventstore.session_commands import SessionCommands, SessionTokens
from eventstore.subscription_commands import NewSubscription, SubscriptionCommands
from eventstore.user_commands import UserCommands

__all__ = [
    "UNCHANGED",
    "CommandResult",
    "Identity",
    "IssuedKey",
    "KeyCheck",
    "KeyCode",
    "NewSubscription",
    "SessionTokens",
    "VerificationRequest",
    "VerifiedKey",
]


class Identity(
    UserCommands, ApiKeyCommands, SessionCommands, SubscriptionCommands, Authentication, KeyChecks
):
    name = "Identity"
