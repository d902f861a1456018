"""Streaming the audit log out: webhook subscriptions and a NATS JetStream sink."""
