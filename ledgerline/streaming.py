"""Starts the deliverer that streams the audit log out (``ledgerline project``, and ``serve`` on
the embedded store, where the projector runs in-process too)."""

from __future__ import annotations

import threading

from eventstore.personal_data import DataKeyStore, Sealer
from ledgerline.bootstrap import Components
from projections.audit_log.projection import AuditLogProjection
from projections.base import ProjectionContext
from projections.streaming.delivery import StreamDeliverer
from projections.streaming.source import EntrySource

# Data keys are re-read this often at most: a delivery made after an erasure reads "[erased]"
# (the deliverer follows no stream that would tell it of the erasure sooner).
DATA_KEY_CACHE_SECONDS = 0.5


def start_deliverer(components: Components, stop: threading.Event) -> StreamDeliverer:
    engine = components.engine
    sealer = Sealer(DataKeyStore(engine, components.secret, cache_seconds=DATA_KEY_CACHE_SECONDS))
    source = EntrySource(engine, AuditLogProjection(ProjectionContext(sealer)), sealer)
    settings = components.settings
    deliverer = StreamDeliverer(components.identity, source, engine, settings.database, settings.stream, stop)
    deliverer.start()
    return deliverer
