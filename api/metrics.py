"""Prometheus metrics (``GET /metrics``, the text format, through ``prometheus-client``).

Two kinds (decision 0016):

- What a process counts (requests, their durations, events it appended, its breaker, its usage
  backlog) lives in the process. With ``PROMETHEUS_MULTIPROC_DIR`` set before this module is
  imported (``ledgerline serve`` sets it when ``LEDGERLINE_WORKERS`` > 1), every process writes
  its values to files there and a scrape of any process sums them over all of them.
- What the store knows (each projection's and the audit checkpoints' position and lag, the head)
  is read from the database by the process that is scraped, at scrape time: every process would
  report the same numbers.

No label carries anything a caller chose freely: ``route`` is the route's template (never the
raw path with its ids), ``method`` one of the methods the API knows, else ``OTHER``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client import multiprocess as multiprocess_mode
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from eventstore.identity import Identity
from projections.read_side import chain_status, status
from projections.streaming.cursors import NATS, sink_counters, subscription_cursor

__all__ = ["CONTENT_TYPE", "Metrics"]
# The classic text format every Prometheus reads (Litestar adds the charset).
CONTENT_TYPE = "text/plain; version=0.0.4"
disable_created_metrics()  # no ``*_created`` twin of every series: half the lines, nothing lost

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Read once, as prometheus-client reads it when imported: values go to files from the start or never.
MULTIPROCESS = bool(os.environ.get(MULTIPROCESS_DIR))
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # no route (404, or 405 before a handler is chosen)
# Seconds: a cached read answers in well under a millisecond, a login waits for Argon2.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

PROCESS = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "ledgerline_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
    registry=PROCESS,
)
DURATION = Histogram(
    "ledgerline_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer",
    ["method", "route"],
    buckets=BUCKETS,
    registry=PROCESS,
)
EVENTS_APPENDED = Counter(
    "ledgerline_events_appended", "Events appended to the store by the API processes", registry=PROCESS
)
BREAKER_OPEN = Gauge(
    "ledgerline_database_breaker_open",
    "1 while an API process's database breaker is open (requests fail fast with 503)",
    multiprocess_mode="livemax",
    registry=PROCESS,
)
USAGE_BACKLOG = Gauge(
    "ledgerline_usage_backlog_keys",
    "API keys whose counted uses wait to be written (the usage flusher's backlog)",
    multiprocess_mode="livesum",
    registry=PROCESS,
)


_series: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}  # labels() costs a lock and checks


def observe(method: str, route: str | None, status_code: int, seconds: float) -> None:
    """One answered request. Its series are bounded: the app's routes x known methods x the
    statuses the app answers (a caller's method or path never becomes a label)."""
    known = method if method in METHODS else "OTHER"
    key = (known, route, status_code)
    series = _series.get(key)
    if series is None:
        series = _series[key] = (
            REQUESTS.labels(known, route or UNMATCHED, str(status_code)),
            DURATION.labels(known, route or UNMATCHED),
        )
    series[0].inc()
    series[1].observe(seconds)


class StoreCollector(Collector):
    """The read side's progress, from the database at scrape time (as ``/ready`` reads it)."""

    def __init__(self, engine: Engine, identity: Identity, stall_seconds: float, interval: float) -> None:
        self.engine, self.identity = engine, identity
        self.stall_seconds, self.interval = stall_seconds, interval

    def collect(self) -> Iterator[Metric]:
        reachable = GaugeMetricFamily(
            "ledgerline_store_reachable", "1 when the scraped process could read the store's progress"
        )
        try:
            rows = [
                *status(self.engine, self.identity, stall_seconds=self.stall_seconds),
                chain_status(
                    self.engine, self.identity, stall_seconds=self.stall_seconds, interval=self.interval
                ),
            ]
        except Exception:  # the store is away: say so, and report no stale positions
            reachable.add_metric([], 0)
            yield reachable
            return
        reachable.add_metric([], 1)
        yield reachable
        head = GaugeMetricFamily("ledgerline_event_store_head", "Position of the latest stored event")
        head.add_metric([], max(row.head for row in rows))
        yield head
        families = {
            "position": GaugeMetricFamily(
                "ledgerline_projection_position",
                "Last event applied by each projection (audit_checkpoints: the latest checkpoint's size)",
                labels=["projection"],
            ),
            "lag": GaugeMetricFamily(
                "ledgerline_projection_lag_events", "Events stored but not yet applied", labels=["projection"]
            ),
            "seconds": GaugeMetricFamily(
                "ledgerline_projection_lag_seconds",
                "Age of the oldest event not yet applied",
                labels=["projection"],
            ),
            "unhealthy": GaugeMetricFamily(
                "ledgerline_projection_unhealthy",
                "1 when the projection is failing on an event or stalled (as /ready judges it)",
                labels=["projection"],
            ),
        }
        for row in rows:
            families["position"].add_metric([row.name], row.position)
            families["lag"].add_metric([row.name], row.lag_events)
            families["seconds"].add_metric([row.name], row.lag_seconds)
            families["unhealthy"].add_metric([row.name], int(row.failure is not None or row.stalled))
        yield from families.values()
        yield from self._sinks(max(row.head for row in rows))

    def _sinks(self, head: int) -> Iterator[Metric]:
        """Each live sink's deliveries, from its cursor row (every deliverer's counts, whichever
        process ran them): a subscription as ``subscription:<id hex>``, JetStream as ``nats``.
        A deleted subscription's row stays as a record but leaves the metrics."""
        live = {subscription_cursor(found) for found in self.identity.subscription_ids()} | {NATS}
        delivered = CounterMetricFamily(
            "ledgerline_stream_delivered", "Audit entries a sink's receiver acknowledged", labels=["sink"]
        )
        failed = CounterMetricFamily(
            "ledgerline_stream_failed",
            "Failed delivery attempts (non-2xx, timeout, refused)",
            labels=["sink"],
        )
        lag = GaugeMetricFamily(
            "ledgerline_stream_lag_events", "Positions stored that a sink has not gone past", labels=["sink"]
        )
        for sink in sink_counters(self.engine, head):
            if sink.sink in live:
                delivered.add_metric([sink.sink], sink.delivered)
                failed.add_metric([sink.sink], sink.failed)
                lag.add_metric([sink.sink], sink.lag)
        yield from (delivered, failed, lag)


class Metrics:
    """One application's metrics: the process's (or every process's) counters and the store's."""

    def __init__(self, engine: Engine, identity: Identity, *, stall_seconds: float, interval: float) -> None:
        self.store = CollectorRegistry(auto_describe=False)
        self.store.register(StoreCollector(engine, identity, stall_seconds, interval))
        if EVENTS_APPENDED.inc not in identity.on_append:
            identity.on_append.append(EVENTS_APPENDED.inc)

    @staticmethod
    def breaker_changed(is_open: bool) -> None:
        BREAKER_OPEN.set(int(is_open))

    @staticmethod
    def usage_backlog(keys: int) -> None:
        USAGE_BACKLOG.set(keys)

    def render(self) -> bytes:
        """The exposition text (blocking: the store's part queries the database)."""
        if MULTIPROCESS:
            every_process = CollectorRegistry(auto_describe=False)
            multiprocess_mode.MultiProcessCollector(every_process)
            processes = generate_latest(every_process)
        else:
            processes = generate_latest(PROCESS)
        return processes + generate_latest(self.store)
