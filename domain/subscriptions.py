"""Subscriptions: where the audit log is pushed (a webhook URL, a filter, a start position).

Every change is an event of the ``Subscription`` aggregate, so subscriptions are audited like
users and keys. The signing secret never enters an event: ``Created`` carries a random salt,
and the secret is derived from it and the server's secret key (``eventstore``), so whoever
reads the database alone cannot sign as Ledgerline. ``SubscriptionList`` holds the ids of the
live subscriptions (saved in the same append as a creation or deletion), so listing them and
finding them to deliver needs no read table.
"""

from __future__ import annotations

from dataclasses import field
from urllib.parse import urlsplit
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.base import LedgerAggregate
from domain.errors import (
    InvalidValueError,
    SubscriptionActiveError,
    SubscriptionNotFoundError,
    SubscriptionPausedError,
)

MAX_URL = 2048
SUBSCRIPTION_LIST_ID = uuid5(NAMESPACE_URL, "https://ledgerline.dev/subscriptions")


def check_url_shape(url: str) -> None:
    """http or https, a host, no credentials (they would be in the audit log) and no fragment.
    Where the host points is checked by the caller (``projections.streaming.targets``)."""
    if len(url) > MAX_URL or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidValueError("url", f"at most {MAX_URL} characters, no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidValueError("url", "is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidValueError("url", "must be http or https")
    if not parts.hostname:
        raise InvalidValueError("url", "must name a host")
    if not parts.hostname.isascii():  # a resolver would normalise it; HTTP clients refuse it
        raise InvalidValueError("url", "the host must be ASCII (write an internationalised name as xn--...)")
    if parts.username is not None or parts.password is not None:
        raise InvalidValueError("url", "must not carry credentials (the receiver checks the signature)")
    if parts.fragment or url.endswith("#"):
        raise InvalidValueError("url", "must not have a fragment")
    if port == 0:
        raise InvalidValueError("url", "port 0 is not a port")


def url_for_audit(url: str) -> str:
    """The URL as the audit log shows it: ``scheme://host[:port]/…``. A receiver's path and query
    often carry its credential (Slack-style ``/T/B/token``, ``?token=``), and the audit log goes to
    every reader and subscriber; the whole URL stays on the aggregate, for admins."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "[REDACTED]"
    shown_host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown_host}{'' if port is None else f':{port}'}/…"


class Subscription(LedgerAggregate):
    TOPIC = "ledgerline.Subscription"

    class Event(LedgerAggregate.Event):
        pass

    class Created(Event, LedgerAggregate.Created):
        TOPIC = "ledgerline.Subscription.Created"
        url: str
        actions: list[str] | None
        resource_types: list[str] | None
        from_position: int
        description: str | None
        secret_salt: str  # hex; the secret is derived from it and the server's secret key

    class Paused(Event):
        TOPIC = "ledgerline.Subscription.Paused"

        def apply(self, subscription: Subscription) -> None:
            subscription.paused = True

    class Resumed(Event):
        TOPIC = "ledgerline.Subscription.Resumed"

        def apply(self, subscription: Subscription) -> None:
            subscription.paused = False

    class Deleted(Event):
        TOPIC = "ledgerline.Subscription.Deleted"

        def apply(self, subscription: Subscription) -> None:
            subscription.deleted = True

    REDACTED = frozenset({"secret_salt"})

    url: str = ""
    actions: list[str] | None = None
    resource_types: list[str] | None = None
    from_position: int = 1
    description: str | None = None
    secret_salt: str = ""
    paused: bool = False
    deleted: bool = False

    @classmethod
    def create(
        cls,
        *,
        subscription_id: UUID,
        url: str,
        actions: list[str] | None,
        resource_types: list[str] | None,
        from_position: int,
        description: str | None,
        secret_salt: str,
    ) -> Subscription:
        check_url_shape(url)
        if from_position < 1:
            raise InvalidValueError("from_position", "positions start at 1")
        return cls._create_with_audit(
            cls.Created,
            id=subscription_id,
            audit_subject=subscription_id,
            url=url,
            actions=None if actions is None else sorted(set(actions)),
            resource_types=None if resource_types is None else sorted(set(resource_types)),
            from_position=from_position,
            description=description,
            secret_salt=secret_salt,
        )

    @property
    def state(self) -> str:
        return "deleted" if self.deleted else "paused" if self.paused else "active"

    def pause(self) -> None:
        self._check_live()
        if self.paused:
            raise SubscriptionPausedError(self.id)
        self.trigger_event(self.Paused)

    def resume(self) -> None:
        self._check_live()
        if not self.paused:
            raise SubscriptionActiveError(self.id)
        self.trigger_event(self.Resumed)

    def delete(self) -> None:
        self._check_live()
        self.trigger_event(self.Deleted)

    def _check_live(self) -> None:
        if self.deleted:  # gone, as far as anyone asking is concerned
            raise SubscriptionNotFoundError(self.id)

    def matches(self, action: str, resource_type: str) -> bool:
        return (self.actions is None or action in self.actions) and (
            self.resource_types is None or resource_type in self.resource_types
        )


class SubscriptionList(LedgerAggregate):
    """The ids of the live (not deleted) subscriptions, in order of creation."""

    TOPIC = "ledgerline.SubscriptionList"

    class Event(LedgerAggregate.Event):
        pass

    class Opened(Event, LedgerAggregate.Created):
        TOPIC = "ledgerline.SubscriptionList.Opened"

    Created = Opened

    class Added(Event):
        TOPIC = "ledgerline.SubscriptionList.Added"
        subscription_id: UUID

        def apply(self, listed: SubscriptionList) -> None:
            listed.ids.append(self.subscription_id.hex)

    class Removed(Event):
        TOPIC = "ledgerline.SubscriptionList.Removed"
        subscription_id: UUID

        def apply(self, listed: SubscriptionList) -> None:
            listed.ids.remove(self.subscription_id.hex)

    ids: list[str] = field(default_factory=list)  # hex ids (JSON-safe)

    @classmethod
    def open(cls) -> SubscriptionList:
        return cls._create_with_audit(cls.Opened, id=SUBSCRIPTION_LIST_ID, audit_subject=SUBSCRIPTION_LIST_ID)

    @property
    def subscription_ids(self) -> list[UUID]:
        return [UUID(hex_id) for hex_id in self.ids]

    def add(self, subscription_id: UUID) -> None:
        self.trigger_event(self.Added, subscription_id=subscription_id)

    def remove(self, subscription_id: UUID) -> None:
        if subscription_id.hex in self.ids:
            self.trigger_event(self.Removed, subscription_id=subscription_id)
