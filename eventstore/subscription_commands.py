"""Use cases on subscriptions (streaming the audit log out): create, pause, resume, delete.

The signing secret is ``whsec_`` + base64 of an HMAC-SHA256, keyed by a key derived from the
server's secret key, over the subscription's id and the random salt its ``Created`` event holds:
shown once on creation, recomputed by the deliverer, never stored. Whoever reads the database
(events, tables) without the secret key cannot compute it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from domain.errors import SubscriptionNotFoundError
from domain.subscriptions import SUBSCRIPTION_LIST_ID, Subscription, SubscriptionList
from eventstore.commands import CommandResult, fresh_reads, with_retries
from eventstore.identity_base import IdentityBase

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


@dataclass(frozen=True)
class NewSubscription:
    result: CommandResult[Subscription]
    secret: str = field(repr=False)  # the signing secret, shown once


class SubscriptionCommands(IdentityBase):
    def create_subscription(
        self,
        *,
        url: str,
        actions: list[str] | None = None,
        resource_types: list[str] | None = None,
        from_position: int | None = None,
        description: str | None = None,
    ) -> NewSubscription:
        """``from_position``: the first position to deliver (None: whatever is written next)."""
        subscription_id, salt = uuid4(), secrets.token_hex(16)
        start = from_position if from_position is not None else self.head_position() + 1

        def attempt() -> NewSubscription:
            subscription = Subscription.create(
                subscription_id=subscription_id,
                url=url,
                actions=actions,
                resource_types=resource_types,
                from_position=start,
                description=description,
                secret_salt=salt,
            )
            listed = self._subscription_list()
            listed.add(subscription_id)
            return NewSubscription(self._save(subscription, listed), self.subscription_secret(subscription))

        return with_retries(attempt)

    def pause_subscription(self, subscription_id: UUID) -> CommandResult[Subscription]:
        return self._change_subscription(subscription_id, Subscription.pause)

    def resume_subscription(self, subscription_id: UUID) -> CommandResult[Subscription]:
        return self._change_subscription(subscription_id, Subscription.resume)

    def delete_subscription(self, subscription_id: UUID) -> CommandResult[Subscription]:
        def change(subscription: Subscription) -> list[Aggregate]:
            subscription.delete()
            listed = self._subscription_list()
            listed.remove(subscription.id)
            return [listed]

        return self._change(Subscription, subscription_id, SubscriptionNotFoundError, change, None)

    def _change_subscription(self, subscription_id: UUID, decide: object) -> CommandResult[Subscription]:
        def change(subscription: Subscription) -> list[Aggregate]:
            decide(subscription)  # type: ignore[operator]
            return []

        return self._change(Subscription, subscription_id, SubscriptionNotFoundError, change, None)

    # ---- reads ------------------------------------------------------------------------------

    def get_subscription(self, subscription_id: UUID, *, fresh: bool = False) -> Subscription:
        """A live subscription (a deleted one is not found). ``fresh``: read from the store, not
        from this process's memory (the deliverer, which no stream follower vouches for)."""
        with fresh_reads(fresh):
            subscription = self._get(Subscription, subscription_id, SubscriptionNotFoundError)
        if subscription.deleted:
            raise SubscriptionNotFoundError(subscription_id)
        return subscription

    def subscription_ids(self, *, fresh: bool = False) -> list[UUID]:
        """The live subscriptions' ids, oldest first."""
        with fresh_reads(fresh):
            return self._subscription_list().subscription_ids

    def subscription_secret(self, subscription: Subscription) -> str:
        mac = hmac.new(
            self.webhook_key, subscription.id.bytes + bytes.fromhex(subscription.secret_salt), hashlib.sha256
        )
        return SECRET_PREFIX + base64.b64encode(mac.digest()).decode("ascii")

    def _subscription_list(self) -> SubscriptionList:
        try:
            listed: Aggregate = self._repository_get(SUBSCRIPTION_LIST_ID)
        except AggregateNotFoundError:
            return SubscriptionList.open()
        assert isinstance(listed, SubscriptionList)
        return listed
