"""Where a webhook may point (SSRF guard): checked when a subscription is created, and again
before every delivery attempt on the addresses the name resolves to then (DNS rebinding), and
the request goes to the address that was checked, never to a second lookup.

Always refused: link-local (169.254.0.0/16, fe80::/10, where cloud metadata services live),
known metadata addresses, unspecified (0.0.0.0, ::), multicast, broadcast and reserved ranges,
and IPv4 addresses hidden in IPv6 (mapped, NAT64, 6to4, Teredo's client) are judged as the IPv4
address they carry. Private ranges (RFC 1918, unique local fc00::/7, site-local fec0::/10, shared
100.64.0.0/10) only with ``allow_private``; loopback only with ``allow_loopback`` (tests, a
receiver on the same host). A refusal names the reason, never the address a name resolved to.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from domain.errors import InvalidValueError
from domain.subscriptions import check_url_shape

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[..., Sequence[Any]]  # socket.getaddrinfo's shape (tests pass a DNS answer)
AsyncResolve = Callable[..., Awaitable[Sequence[Any]]]
METADATA = tuple(
    ipaddress.ip_network(net)
    for net in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "192.0.0.192/32")
)
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private to the provider
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefusedError(InvalidValueError):
    """The URL points somewhere a webhook may not go (HTTP 422 on creation)."""

    def __init__(self, reason: str) -> None:
        super().__init__("url", reason)


@dataclass(frozen=True)
class TargetPolicy:
    allow_private: bool = False
    allow_loopback: bool = False


@dataclass(frozen=True)
class Target:
    """A checked URL: its parts and the address to connect to."""

    scheme: str
    host: str  # as written in the URL (the Host header and TLS name)
    port: int
    address: str  # the checked address the request goes to


def why_refused(address: Address, policy: TargetPolicy) -> str | None:
    """None if a webhook may go to ``address``, else the reason (which never names the address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return why_refused(embedded, policy)
    if any(address in network for network in METADATA) or address.is_link_local:
        return "link-local or cloud metadata"
    if address.is_loopback:
        return None if policy.allow_loopback else "loopback; LEDGERLINE_STREAM_ALLOW_LOOPBACK allows it"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "unspecified, multicast or reserved"
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address("255.255.255.255"):
        return "broadcast"
    private = address.is_private or (isinstance(address, ipaddress.IPv4Address) and address in SHARED)
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local  # global to 3.11
    if private or site_local or not address.is_global:
        return None if policy.allow_private else "private; LEDGERLINE_STREAM_ALLOW_PRIVATE allows it"
    return None


def split(url: str) -> tuple[str, str, int]:
    check_url_shape(url)
    try:  # what the deliverer's HTTP client could not send is refused now, not at each attempt
        httpx.URL(url)
    except httpx.InvalidURL:
        raise InvalidValueError("url", "is not a valid URL") from None
    parts = urlsplit(url)
    assert parts.hostname is not None  # check_url_shape
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _checked(host: str, port: int, scheme: str, found: list[str], policy: TargetPolicy) -> Target:
    if not found:
        raise TargetRefusedError(f"{host} does not resolve")
    for text in found:
        reason = why_refused(ipaddress.ip_address(text.split("%", 1)[0]), policy)
        if reason is None:
            continue
        if _literal(host) is not None:
            raise TargetRefusedError(f"{host} is a refused address ({reason})")
        # One bad address is enough (a resolver may hand out either); which one is not said: the
        # answer (a 422 body, last_error) must not map internal DNS for whoever may subscribe.
        raise TargetRefusedError(f"{host} resolves to a refused address ({reason})")
    return Target(scheme, host, port, found[0])


def _literal(host: str) -> list[str] | None:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return None


def check_target(url: str, policy: TargetPolicy, resolve: Resolve = socket.getaddrinfo) -> Target:
    """Resolve and check ``url`` (blocking: the API calls it in a worker thread)."""
    scheme, host, port = split(url)
    found = _literal(host)
    if found is None:
        try:
            infos = resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise TargetRefusedError(f"{host} does not resolve") from None
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return _checked(host, port, scheme, found, policy)


async def check_target_async(url: str, policy: TargetPolicy, resolve: AsyncResolve) -> Target:
    """``check_target`` on the event loop (the deliverer, before each attempt, inside its timeout;
    ``resolve`` runs the lookup in the sink's own thread)."""
    scheme, host, port = split(url)
    found = _literal(host)
    if found is None:
        try:
            infos = await resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise TargetRefusedError(f"{host} does not resolve") from None
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return _checked(host, port, scheme, found, policy)
