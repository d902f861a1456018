"""How the deliverer behaves (from ``LEDGERLINE_STREAM_*`` and ``LEDGERLINE_NATS_URL``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from projections.streaming.targets import TargetPolicy


@dataclass(frozen=True)
class StreamOptions:
    policy: TargetPolicy = field(default_factory=TargetPolicy)
    nats_url: str | None = None  # also publish every entry to NATS JetStream
    timeout: float = 10.0  # seconds one delivery attempt may take, all in all
    retry_first: float = 1.0  # seconds before the first retry; doubles, with jitter
    retry_cap: float = 300.0  # never longer than this between two attempts
    poll_interval: float = 0.1  # seconds between two looks at the audit log's position
    discover_interval: float = 1.0  # seconds between two looks at the subscriptions
    batch_size: int = 100  # entries read at once; at most these are re-sent after a crash
