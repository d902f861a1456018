"""The SSRF guard: which addresses a webhook may go to, judged after resolution (a DNS answer is
given as the resolver would return it)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from uuid import uuid4

import pytest

from domain.errors import InvalidValueError
from projections.streaming.sinks import DeliveryError, WebhookSink
from projections.streaming.targets import TargetPolicy, TargetRefusedError, check_target, why_refused

STRICT = TargetPolicy()
LOCAL = TargetPolicy(allow_loopback=True)
PRIVATE = TargetPolicy(allow_private=True)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS, GCP, Azure metadata
        "169.254.0.1",
        "fe80::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "100.100.100.200",  # Alibaba metadata
        "::ffff:169.254.169.254",  # mapped
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, its client 169.254.169.254
        "0.0.0.0",  # noqa: S104 (an address judged, not bound)
        "::",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
        "240.0.0.1",
    ],
)
def test_always_refused_whatever_the_settings(address: str) -> None:
    everything = TargetPolicy(allow_private=True, allow_loopback=True)
    assert why_refused(ipaddress.ip_address(address), everything) is not None


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",
        "fd12:3456::1",
        "::ffff:10.0.0.1",
        "fec0::1",  # site-local (deprecated; global to Python 3.11)
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, its client 10.0.0.1
    ],
)
def test_private_ranges_only_when_allowed(address: str) -> None:
    assert why_refused(ipaddress.ip_address(address), STRICT) is not None
    assert why_refused(ipaddress.ip_address(address), PRIVATE) is None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "2001:0:4136:e378:8000:63bf:80ff:fefe"]
)
def test_loopback_only_when_allowed(address: str) -> None:
    assert why_refused(ipaddress.ip_address(address), STRICT) is not None
    assert why_refused(ipaddress.ip_address(address), PRIVATE) is not None  # not a private range
    assert why_refused(ipaddress.ip_address(address), LOCAL) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert why_refused(ipaddress.ip_address(address), STRICT) is None


def dns(*addresses: str) -> Any:
    """A resolver whose answer for every name is ``addresses`` (getaddrinfo's shape)."""

    def resolve(host: str, port: int, **_: Any) -> list[Any]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


@pytest.mark.parametrize(
    "answer",
    [("169.254.169.254",), ("fe80::1",), ("93.184.216.34", "169.254.169.254"), ("10.0.0.1",)],
)
def test_a_name_resolving_to_a_refused_address_is_refused(answer: tuple[str, ...]) -> None:
    """The message names the reason, never the address (a 422 body or ``last_error`` must not map
    the internal DNS for whoever may create a subscription)."""
    refusal = r"hooks\.example resolves to a refused address \("
    with pytest.raises(TargetRefusedError, match=refusal) as refused:
        check_target("https://hooks.example/in", STRICT, resolve=dns(*answer))
    assert not any(address in str(refused.value) for address in answer)
    assert not any(part in str(refused.value) for part in ("169.254", "fe80", "10.0"))


def test_a_name_resolving_to_public_addresses_is_pinned_to_the_first() -> None:
    target = check_target(
        "https://hooks.example:8443/in", STRICT, resolve=dns("93.184.216.34", "2606:4700::1")
    )
    assert (target.scheme, target.host, target.port, target.address) == (
        "https",
        "hooks.example",
        8443,
        "93.184.216.34",
    )


def test_localhost_by_name_follows_the_loopback_setting() -> None:
    with pytest.raises(TargetRefusedError, match="loopback"):
        check_target("http://localhost:8080/in", STRICT)
    assert check_target("http://localhost:8080/in", LOCAL).address in ("127.0.0.1", "::1")


@pytest.mark.parametrize(
    "url",
    [
        "gopher://example.com/",
        "http://user@example.com/",
        "http://example.com/#frag",
        "http://exa mple.com/",
        "http://example.com:0/",
        "http://[::1/",
        "//example.com/",
    ],
)
def test_malformed_urls_are_invalid_values(url: str) -> None:
    with pytest.raises(InvalidValueError):
        check_target(url, PRIVATE, resolve=dns("93.184.216.34"))


def test_a_stored_url_httpx_cannot_parse_fails_the_delivery_instead_of_the_task() -> None:
    """A subscription made before non-ASCII hosts were refused: each attempt is a recorded
    failure (``DeliveryError``), never an exception that ends the sink's task."""

    async def attempt() -> str:
        sink = WebhookSink(
            "test", uuid4(), "https://\uff45xample.com/hook", "whsec_" + "A" * 43 + "=", STRICT, 1.0,
            dns("93.184.216.34"),
        )  # fmt: skip
        try:
            await sink.deliver({"position": 1, "action": "user.registered", "resource_type": "user"})
        except DeliveryError as error:
            return error.reason
        finally:
            await sink.close()
        return "delivered"

    assert asyncio.run(attempt()).startswith("target refused")
