"""Streaming the audit log out, against real receivers: a local HTTP server, the real local
nats-server, on SQLite and PostgreSQL. Backoffs and polls are short so each test takes seconds."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text

from domain.audit import AuditContext, acting_as
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build
from ledgerline.streaming import start_deliverer
from projections.streaming.cursors import NATS, cursor_states, subscription_cursor
from projections.streaming.delivery import StreamDeliverer
from projections.streaming.sinks import NATS_STREAM, DeliveryError, NatsSink, WebhookSink, webhook_id
from projections.streaming.targets import TargetPolicy
from projections.worker import start_workers
from tests.conftest import settings_for
from tests.integration.helpers import register, user_context
from tests.integration.stream_receiver import receiving, wait_until
from tests.integration.test_witness import NATS_URL, require_nats

STREAM_ENV = {
    "LEDGERLINE_STREAM_ALLOW_LOOPBACK": "true",
    "LEDGERLINE_STREAM_RETRY_FIRST_MS": "20",
    "LEDGERLINE_STREAM_RETRY_MAX_SECONDS": "1",
    "LEDGERLINE_STREAM_TIMEOUT_SECONDS": "1",
    "LEDGERLINE_STREAM_POLL_MS": "20",
}
ADMIN = AuditContext(actor_type="system", request_id="streaming-test")


def fast(components: Components, **changes: Any) -> None:
    """Look for new subscriptions every 0.1 s (not every second)."""
    stream = dataclasses.replace(components.settings.stream, discover_interval=0.1, **changes)
    components.settings = dataclasses.replace(components.settings, stream=stream)


@pytest.fixture
def streaming(database_url: str, tmp_path: Path, fast_passwords: Passwords) -> Iterator[Components]:
    built = build(settings_for(database_url, tmp_path, **STREAM_ENV), init=True, passwords=fast_passwords)
    fast(built)
    try:
        yield built
    finally:
        built.close()


@contextlib.contextmanager
def delivering(components: Components) -> Iterator[StreamDeliverer]:
    """The audit_log projector and the deliverer, as ``ledgerline project`` runs them."""
    stop = threading.Event()
    workers = start_workers(
        [components.projections["audit_log"]],
        components.identity,
        components.engine,
        components.settings.database,
        stop,
    )
    deliverer = start_deliverer(components, stop)
    try:
        yield deliverer
    finally:
        stop.set()
        deliverer.join(timeout=10)
        for worker in workers:
            worker.join(timeout=10)
    assert not deliverer.is_alive()


def audited_positions(components: Components, resource_type: str | None = None) -> list[int]:
    query = "SELECT position FROM audit_log" + (" WHERE resource_type = :t" if resource_type else "")
    with components.engine.connect() as conn:
        return sorted(conn.execute(text(query + " ORDER BY position"), {"t": resource_type}).scalars())


def write_some(components: Components, prefix: str, users: int = 3) -> None:
    identity = components.identity
    for n in range(users):
        user = register(identity, f"{prefix}{n}")
        with user_context(user.id):
            identity.update_user(user.id, full_name=f"{prefix} {n} renamed")


def subscribe(components: Components, url: str, **kwargs: Any) -> Any:
    with acting_as(ADMIN):
        return components.identity.create_subscription(url=url, **kwargs)


def test_every_entry_arrives_in_order_signed_and_with_stable_ids(streaming: Components) -> None:
    write_some(streaming, "before")
    with receiving() as receiver:
        created = subscribe(streaming, receiver.url, from_position=1)
        with delivering(streaming) as deliverer:
            write_some(streaming, "during")
            head = streaming.identity.head_position()
            assert wait_until(lambda: deliverer.bound >= head, 10)
            expected = audited_positions(streaming)
            assert wait_until(lambda: receiver.accepted_positions() == expected, 10), (
                receiver.accepted_positions(),
                expected,
            )
        receiver.verify_all(created.secret)  # signed with the secret shown once
        subscription_id = created.result.id
        for request in receiver.requests:
            assert request.headers["webhook-id"] == webhook_id(subscription_id, request.position)
            assert request.headers["content-type"] == "application/json"
            assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        first = receiver.requests[0].entry
        assert set(first) >= {"position", "action", "resource_type", "changes", "hash", "actor_id"}
    with streaming.engine.connect() as conn:
        state = cursor_states(conn)[subscription_cursor(subscription_id)]
    assert state.delivered == len(expected) and state.failed == 0 and state.last_error is None
    assert state.delivered_through >= expected[-1]
    counters = {c.sink: c for c in deliverer.counters()}[subscription_cursor(subscription_id)]
    assert counters.delivered == len(expected) and counters.failed == 0


def test_a_receiver_down_for_a_while_gets_every_missed_entry_in_order(streaming: Components) -> None:
    with receiving(lambda n: 503 if n < 6 else 200) as receiver:  # down for its first 6 requests
        created = subscribe(streaming, receiver.url, resource_types=["user"])
        with delivering(streaming) as deliverer:
            write_some(streaming, "missed", users=4)
            head = streaming.identity.head_position()
            assert wait_until(lambda: deliverer.bound >= head, 10)
            expected = audited_positions(streaming, "user")
            assert wait_until(lambda: receiver.accepted_positions() == expected, 15), (
                receiver.accepted_positions(),
                expected,
            )
        failed = [r for r in receiver.requests if r.status == 503]
        assert failed, "the receiver was never down"
        # The retries were of the first entry not yet acknowledged, with the same id each time.
        assert {r.position for r in failed} == {expected[0]}
        assert len({r.headers["webhook-id"] for r in failed}) == 1
        receiver.verify_all(created.secret)
        # Each retry waited longer (exponential backoff, 20 ms first, with jitter).
        gaps = [b.at - a.at for a, b in itertools.pairwise(failed)]
        assert len(gaps) >= 2 and gaps[-1] > gaps[0]
    with streaming.engine.connect() as conn:
        state = cursor_states(conn)[subscription_cursor(created.result.id)]
    assert state.failed == len(failed) and state.last_error is None  # cleared by the recovery
    assert state.delivered == len(expected)


def test_filters_pause_resume_and_delete(streaming: Components) -> None:
    identity = streaming.identity
    with receiving() as keys_only, receiving() as everything, receiving() as usage:
        subscribe(streaming, keys_only.url, actions=["api_key.issued", "api_key.revoked"])
        subscribe(streaming, usage.url, actions=["api_key.usage_recorded"])
        everything_sub = subscribe(streaming, everything.url)
        with delivering(streaming):
            user = register(identity, "owner")
            issued = identity.issue_api_key(user.id, name="k", permissions={"users:read": True})
            identity.record_api_key_usage(
                issued.result.id, count=3, last_used_at=datetime.now(UTC), last_used_ip="203.0.113.5"
            )
            identity.revoke_api_key(issued.result.id)
            assert wait_until(lambda: len(keys_only.accepted()) == 2, 10)
            assert [r.entry["action"] for r in keys_only.accepted()] == ["api_key.issued", "api_key.revoked"]
            assert wait_until(lambda: len(usage.accepted()) == 1, 10)  # traffic: only when named
            assert usage.accepted()[0].entry["changes"]["count"] == 3
            with acting_as(ADMIN):
                identity.pause_subscription(everything_sub.result.id)
            time.sleep(0.5)  # the deliverer sees the pause
            received = len(everything.requests)
            register(identity, "while-paused")
            time.sleep(0.5)
            assert len(everything.requests) == received  # nothing while paused
            with acting_as(ADMIN):
                identity.resume_subscription(everything_sub.result.id)
            missed = audited_positions(streaming)[-1]
            assert wait_until(lambda: missed in everything.accepted_positions(), 10)  # caught up
            with acting_as(ADMIN):
                identity.delete_subscription(everything_sub.result.id)
            time.sleep(0.5)
            received = len(everything.requests)
            register(identity, "after-delete")
            time.sleep(0.5)
            assert len(everything.requests) == received  # deleted: nothing more
    positions = everything.accepted_positions()
    assert positions == sorted(set(positions))  # in order, none twice
    assert "api_key.usage_recorded" not in {r.entry["action"] for r in everything.accepted()}


def test_one_slow_receiver_delays_no_other(streaming: Components) -> None:
    with receiving(delay=1.5) as slow, receiving() as quick:  # slow answers after the 1 s timeout
        slow_sub = subscribe(streaming, slow.url)
        subscribe(streaming, quick.url)
        with delivering(streaming):
            started = time.monotonic()
            write_some(streaming, "pair", users=2)
            head = streaming.identity.head_position()
            assert wait_until(lambda: audited_positions(streaming)[-1:] == [head], 10)
            expected = audited_positions(streaming)
            assert wait_until(lambda: quick.accepted_positions()[-4:] == expected[-4:], 5)
            assert time.monotonic() - started < 5
            assert slow.requests, "the slow receiver was tried too"
        with streaming.engine.connect() as conn:
            state = cursor_states(conn)[subscription_cursor(slow_sub.result.id)]
        assert state.delivered == 0 and state.last_error == "timeout"  # every answer came too late


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_pausing_a_sink_mid_attempt_holds_up_no_other(streaming: Components) -> None:
    """The paused sink ends after its attempt in flight (up to the timeout) in the background:
    meanwhile the other sinks go on delivering."""
    fast(streaming, timeout=8.0)
    with receiving(delay=10) as stuck, receiving() as quick:
        stuck_sub = subscribe(streaming, stuck.url, from_position=1)
        subscribe(streaming, quick.url)
        with delivering(streaming):
            assert wait_until(lambda: len(stuck.requests) == 1, 10)  # an attempt is in flight
            identity = streaming.identity
            with acting_as(ADMIN):
                identity.pause_subscription(stuck_sub.result.id)
            time.sleep(0.3)  # the deliverer sees the pause
            write_some(streaming, "meanwhile", users=1)
            head = identity.head_position()
            assert wait_until(lambda: audited_positions(streaming)[-1:] == [head], 10)
            # Retiring inline would hold the loop for the attempt's timeout plus one second.
            assert wait_until(lambda: head in quick.accepted_positions(), 5)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_deliverers_on_one_sqlite_file_deliver_each_entry_once(
    streaming: Components, database_url: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    """``ledgerline project`` beside ``serve`` on one SQLite file: a file lock elects one leader;
    the other takes over when it stops."""
    other = build(settings_for(database_url, tmp_path, **STREAM_ENV), passwords=fast_passwords)
    fast(other)
    other_stop = threading.Event()
    try:
        with receiving() as receiver:
            subscribe(streaming, receiver.url, from_position=1)
            with delivering(streaming) as first:
                second = start_deliverer(other, other_stop)
                write_some(streaming, "twice", users=2)
                head = streaming.identity.head_position()
                assert wait_until(lambda: first.bound >= head and second.bound >= head, 10)
                expected = audited_positions(streaming)
                assert wait_until(lambda: set(receiver.accepted_positions()) >= set(expected), 10)
                time.sleep(0.3)  # a second deliverer would have sent its copies by now
                assert sorted(receiver.accepted_positions()) == expected  # each once
            register(streaming.identity, "after-takeover")  # the first has stopped
            head = streaming.identity.head_position()
            projector_stop = threading.Event()
            workers = start_workers(
                [other.projections["audit_log"]], other.identity, other.engine, other.settings.database,
                projector_stop,
            )  # fmt: skip
            try:
                expected = audited_positions(other) if wait_until(lambda: second.bound >= head, 10) else []
                assert wait_until(lambda: sorted(receiver.accepted_positions()) == expected, 10)
            finally:
                projector_stop.set()
                for worker in workers:
                    worker.join(timeout=10)
    finally:
        other_stop.set()
        if "second" in locals():
            second.join(timeout=10)
        other.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_redirect_is_a_failure_and_never_followed(streaming: Components) -> None:
    """A receiver cannot bounce deliveries (and their signatures) to an address nobody checked."""
    with receiving() as elsewhere, receiving(lambda n: 307, headers={"location": "PLACEHOLDER"}) as bouncer:
        bouncer.headers["location"] = elsewhere.url
        created = subscribe(streaming, bouncer.url, from_position=1)
        with delivering(streaming), streaming.engine.connect() as conn:

            def failed_twice() -> bool:
                state = cursor_states(conn).get(subscription_cursor(created.result.id))
                conn.rollback()
                return state is not None and state.failed >= 2

            assert wait_until(failed_twice, 10)
            state = cursor_states(conn)[subscription_cursor(created.result.id)]
        assert state.last_error == "HTTP 307" and state.delivered == 0
        assert elsewhere.requests == []


def test_an_erased_users_data_reads_erased_in_deliveries_made_after_the_erasure(
    streaming: Components,
) -> None:
    identity = streaming.identity
    user = register(identity, "leaving", full_name="Leaving Person")
    with receiving() as receiver:
        subscribe(streaming, receiver.url, from_position=1, resource_types=["user"])
        with acting_as(ADMIN):
            identity.erase_user(user.id)
        with delivering(streaming) as deliverer:
            head = streaming.identity.head_position()
            assert wait_until(lambda: deliverer.bound >= head, 10)
            expected = audited_positions(streaming, "user")
            assert wait_until(lambda: receiver.accepted_positions() == expected, 10)
    registered = receiver.requests[0].entry
    assert registered["action"] == "user.registered"
    assert "Leaving Person" not in receiver.requests[0].body.decode()
    assert "[erased]" in receiver.requests[0].body.decode()


def test_an_erasure_during_a_batch_reaches_the_entries_sent_after_it(streaming: Components) -> None:
    """Entries are read a batch at a time but revealed one at a time, just before each is sent:
    an erasure while the first is in flight leaves the rest of the batch reading ``[erased]``."""
    fast(streaming, timeout=5.0)
    identity = streaming.identity
    user = register(identity, "leaving", full_name="Leaving Person")
    with user_context(user.id):
        for n in range(3):
            identity.update_user(user.id, full_name=f"Leaving Person {n}")
    first_arrived, go_on = threading.Event(), threading.Event()

    def answer(n: int) -> int:
        if n == 0:
            first_arrived.set()
            go_on.wait(10)
        return 200

    with receiving(answer) as receiver:
        subscribe(streaming, receiver.url, from_position=1, resource_types=["user"])
        with delivering(streaming):
            assert first_arrived.wait(10)
            with acting_as(ADMIN):
                identity.erase_user(user.id)
            time.sleep(0.6)  # past the deliverer's data-key cache
            go_on.set()
            expected = [p for p in audited_positions(streaming, "user") if p <= user.position + 3]
            assert wait_until(lambda: receiver.accepted_positions()[:4] == expected, 10)
    first, *later = receiver.accepted()[:4]
    assert "Leaving Person" in first.body.decode()  # sent before the erasure
    for request in later:
        assert "Leaving Person" not in request.body.decode()
        assert request.entry["changes"]["full_name"] == "[erased]"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_name_that_resolves_elsewhere_at_delivery_time_is_refused(streaming: Components) -> None:
    """DNS rebinding: the name was checked when the subscription was made; before each attempt it
    is resolved and checked again, and the request goes to the address that was checked."""
    answers = {"now": "127.0.0.1"}

    def resolver(host: str, port: int, **_: Any) -> list[Any]:  # the name's DNS answer
        return [(2, 1, 6, "", (answers["now"], port))]

    async def run(sink: WebhookSink) -> tuple[str | None, str]:
        entry = {"position": 1, "action": "user.registered", "resource_type": "user"}
        first = await sink.deliver(entry)
        answers["now"] = "169.254.169.254"
        await asyncio.sleep(1.1)  # past the checked address's reuse
        try:
            await sink.deliver(entry | {"position": 2})
        except DeliveryError as error:
            return first, error.reason
        finally:
            await sink.close()
        return first, "delivered"

    with receiving() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        sink = WebhookSink(
            "test",
            uuid4(),
            f"http://hooks.example:{port}/hook",
            "whsec_" + "A" * 43 + "=",
            TargetPolicy(allow_loopback=True),
            1.0,
            resolve=resolver,
        )
        first, second = asyncio.run(run(sink))
    assert first is None
    assert second.startswith("target refused: hooks.example resolves to a refused address (link-local")
    assert "169.254" not in second
    assert [r.position for r in receiver.requests] == [1]
    assert receiver.requests[0].headers["host"] == f"hooks.example:{port}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_names_that_never_resolve_hold_up_no_other_sink(
    streaming: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight receivers whose DNS never answers (more than the event loop's default executor has
    threads): each attempt times out and is recorded, and a receiver at an address still gets
    every entry promptly (lookups run inside the attempt's timeout, in each sink's own thread)."""
    released = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".slow.example"):
            released.wait(30)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        with receiving() as quick:
            slow = [subscribe(streaming, f"http://r{n}.slow.example:9/hook") for n in range(8)]
            subscribe(streaming, quick.url)
            with delivering(streaming), streaming.engine.connect() as conn:
                time.sleep(0.3)  # every slow sink is stuck in its lookup
                write_some(streaming, "meanwhile", users=1)
                head = streaming.identity.head_position()
                assert wait_until(lambda: audited_positions(streaming)[-1:] == [head], 10)
                expected = audited_positions(streaming)[-2:]
                # The hung lookups last 30 s: an executor they filled would hold this up that long.
                assert wait_until(lambda: quick.accepted_positions()[-2:] == expected, 5)

                def timed_out() -> bool:
                    states = cursor_states(conn)
                    conn.rollback()
                    found = [states.get(subscription_cursor(s.result.id)) for s in slow]
                    return all(state is not None and state.last_error == "timeout" for state in found)

                assert wait_until(timed_out, 5)
    finally:
        released.set()


async def _stream_messages() -> list[Any]:
    import nats

    client = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        jetstream = client.jetstream(timeout=5)
        info = await jetstream.stream_info(NATS_STREAM)
        return [await jetstream.get_msg(NATS_STREAM, seq) for seq in range(1, info.state.messages + 1)]
    finally:
        await client.close()


async def _drop_stream() -> None:
    import nats
    from nats.js.errors import NotFoundError

    client = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream(timeout=5).delete_stream(NATS_STREAM)
    finally:
        await client.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # NATS does not care which store
def test_nats_sink_publishes_every_entry_in_order_and_a_resend_is_deduplicated(
    streaming: Components,
) -> None:
    require_nats()
    asyncio.run(_drop_stream())  # the stream is created again, by the sink, when missing
    fast(streaming, nats_url=NATS_URL)
    subscribe(streaming, "http://127.0.0.1:9/T01/B02/natspathsecret?token=natsquerysecret")
    write_some(streaming, "nats")
    with delivering(streaming) as deliverer:
        head = streaming.identity.head_position()
        assert wait_until(lambda: deliverer.bound >= head, 10)
        expected = audited_positions(streaming)
        with streaming.engine.connect() as conn:

            def published() -> bool:
                state = cursor_states(conn).get(NATS)
                conn.rollback()
                return state is not None and state.delivered_through >= expected[-1]

            assert wait_until(published, 15)
    messages = asyncio.run(_stream_messages())
    assert [int(m.headers["Nats-Msg-Id"]) for m in messages] == expected
    entries = [json.loads(m.data) for m in messages]
    assert [e["position"] for e in entries] == expected
    assert all(
        m.subject == f"ledgerline.audit.{e['resource_type']}.{e['action'].split('.', 1)[1]}"
        for m, e in zip(messages, entries, strict=True)
    )
    assert "ledgerline.audit.subscription.created" in {m.subject for m in messages}
    assert not any(b"natspathsecret" in m.data or b"natsquerysecret" in m.data for m in messages)

    async def resend() -> None:  # what a deliverer killed before moving its cursor does
        sink = NatsSink(NATS, NATS_URL, 5.0)
        try:
            for entry in entries[-3:]:
                await sink.deliver(entry)
        finally:
            await sink.close()

    asyncio.run(resend())
    assert len(asyncio.run(_stream_messages())) == len(expected)  # deduplicated by Nats-Msg-Id


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unreachable_nats_is_retried_and_recorded(streaming: Components) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"nats://127.0.0.1:{sock.getsockname()[1]}"
    fast(streaming, nats_url=dead)
    register(streaming.identity, "unheard")
    with delivering(streaming), streaming.engine.connect() as conn:

        def failed_twice() -> bool:
            state = cursor_states(conn).get(NATS)
            conn.rollback()
            return state is not None and state.failed >= 2

        assert wait_until(failed_twice, 10)
        state = cursor_states(conn)[NATS]
    assert state.delivered_through == 0 and (state.last_error or "").startswith("NATS publish failed (")
