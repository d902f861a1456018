"""One reader per process (issue 13): every projection of a process is fed from one read and one
decoding of each event, and what the feed hands out is exactly what the store holds."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from ledgerline.bootstrap import Components
from projections.feed import Feed
from projections.read_side import positions, wait_for_position
from projections.worker import start_workers
from tests.integration.helpers import register


def _counting_decodes(components: Components) -> Counter[int]:
    """Count each position's decodings (the mapper's work every projection used to repeat)."""
    mapper, decoded = components.identity.mapper, Counter[int]()
    to_domain_event = mapper.to_domain_event

    def counted(stored: Any) -> Any:
        decoded[getattr(stored, "id", -1)] += 1
        return to_domain_event(stored)

    mapper.to_domain_event = counted  # type: ignore[method-assign]
    return decoded


def test_every_projection_is_fed_by_one_decoding_of_each_event(components: Components) -> None:
    identity = components.identity
    decoded = _counting_decodes(components)
    stop = threading.Event()
    workers = start_workers(
        list(components.projections.values()), identity, components.engine, components.settings.database, stop
    )
    try:
        for n in range(30):
            result = register(identity, f"fed{n}")
            assert wait_for_position(components.engine, result.position, timeout=10)
        head = identity.head_position()
        assert set(positions(components.engine).values()) == {head}
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
    assert decoded, "the projections decoded nothing"
    # Each user event feeds two projections (users and audit_log): decoded once all the same.
    assert max(decoded.values()) == 1, {p: n for p, n in decoded.items() if n > 1}


def test_the_feed_hands_out_exactly_what_the_store_holds(components: Components) -> None:
    """Followers at random positions (inside, behind and past a small window) each get the
    store's own page, whatever the others asked before."""
    identity = components.identity
    for n in range(12):
        register(identity, f"page{n}")
    head = identity.head_position()
    topics = components.projections["audit_log"].topics
    feed = Feed(identity, topics, window=9)
    chance = random.Random(13)
    for _ in range(300):
        position, limit = chance.randint(0, head + 2), chance.randint(1, 6)
        page = feed.after(position, limit)
        stored = identity.recorder.select_notifications(position, limit, inclusive_of_start=False)
        assert [(e.position, e.topic) for e in page] == [(n.id, n.topic) for n in stored]
        for entry in page:
            assert feed.decode(entry) == identity.mapper.to_domain_event(entry.notification)


def test_an_event_the_feed_cannot_decode_is_decoded_again_by_the_projection(components: Components) -> None:
    """A failed decoding is not cached: the projection that needs the event meets the error
    itself (and names the position), and once the cause is gone it decodes."""
    identity = components.identity
    register(identity, "undecodable")
    to_domain_event = identity.mapper.to_domain_event
    identity.mapper.to_domain_event = lambda stored: 1 / 0  # type: ignore[assignment, method-assign]
    feed = Feed(identity, components.projections["users"].topics)
    (first, *_) = feed.after(0, 10)
    assert first.event is None
    identity.mapper.to_domain_event = to_domain_event  # type: ignore[method-assign]
    assert feed.decode(first).originator_id == first.notification.originator_id
