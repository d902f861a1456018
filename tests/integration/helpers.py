"""Small helpers for integration tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from domain.audit import AuditContext, acting_as
from eventstore.identity import CommandResult, Identity
from ledgerline.bootstrap import Components
from projections.catalog import live_generation
from projections.runner import ProjectionRunner

STRONG_PASSWORD = "Correct-Horse-9"


def register(identity: Identity, username: str = "alice", **overrides: Any) -> CommandResult:
    fields = {
        "username": username,
        "email": f"{username}@example.com",
        "password": STRONG_PASSWORD,
        "full_name": f"{username.title()} Example",
    }
    fields.update(overrides)
    return identity.register_user(**fields)


def user_context(user_id: Any, ip: str = "198.51.100.7") -> Any:
    return acting_as(
        AuditContext(
            actor_id=user_id, actor_type="user", ip_address=ip, user_agent="pytest", request_id="req-1"
        )
    )


def events_of(identity: Identity, aggregate_id: Any) -> list[Any]:
    return list(identity.events.get(aggregate_id))


def table_names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
        else:
            rows = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        return [row[0] for row in rows]


def every_stored_byte(engine: Engine) -> bytes:
    """Every row of every table, as text: what a query of the whole database can reveal."""
    chunks = []
    with engine.connect() as conn:
        for table in table_names(engine):
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(chunks)


def project_all(components: Components) -> None:
    """Bring every read model up to the head of the store, in this thread."""
    with components.engine.connect() as conn:
        generations = {name: live_generation(conn, name)[0] for name in components.projections}
    for name, projection in components.projections.items():
        ProjectionRunner(projection, components.identity, components.engine).catch_up(generations[name])


def renames_by_an_admin(components: Components) -> None:
    """An admin registers alice and bob and renames both, from a known address."""
    identity = components.identity
    admin = register(identity, "root")
    with acting_as(
        AuditContext(actor_id=admin.id, actor_type="user", ip_address="203.0.113.9", user_agent="ua")
    ):
        for name in ("alice", "bob"):
            user = register(identity, name)
            identity.update_user(user.id, full_name=f"{name} Renamed")
