"""The composition root: builds every component from settings. Tests use the same function."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from litestar import Litestar
from sqlalchemy.engine import Engine

from api.app import create_app
from api.rate_limit import RateLimiter
from api.services import Services
from api.tokens import AccessTokens
from eventstore.audit_chain.checkpoints import Checkpointer, CheckpointKeys
from eventstore.audit_chain.note import NoteSigner
from eventstore.identity import Identity
from eventstore.passwords import HashingSlots, Passwords
from eventstore.personal_data import DataKeyStore, Sealer, WrongSecretKeyError, derive_key
from eventstore.schema import grant_runtime_role, hand_over_caches, init_lock, init_schema, is_initialised
from ledgerline import __version__
from ledgerline.settings import Settings, SettingsError
from projections.base import Projection, ProjectionContext
from projections.catalog import cache_relations, ensure_live_generation
from projections.registry import all_projections


class NotInitialisedError(RuntimeError):
    pass


@dataclass
class Components:
    settings: Settings
    engine: Engine
    identity: Identity
    projections: dict[str, Projection]
    secret: bytes
    checkpoint_keys: CheckpointKeys

    def checkpointer(self) -> Checkpointer:
        return Checkpointer(self.engine, self.checkpoint_keys, interval=self.settings.checkpoint_seconds)

    def close(self) -> None:
        self.identity.close()
        self.engine.dispose()

    def selected_projections(self, names: tuple[str, ...] = ()) -> list[Projection]:
        unknown = set(names) - set(self.projections)
        if unknown:
            raise SettingsError(
                f"unknown projection(s) {sorted(unknown)}: choose from {sorted(self.projections)}"
            )
        return [p for name, p in self.projections.items() if not names or name in names]


def secret_key(settings: Settings) -> bytes:
    """The configured secret; on the embedded SQLite default, one kept in the data directory."""
    if settings.secret_key is not None:
        return settings.secret_key
    if not settings.database.is_sqlite:
        raise SettingsError("LEDGERLINE_SECRET_KEY is required with PostgreSQL (every process must share it)")
    path = Path(settings.data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def build(settings: Settings, *, init: bool | None = False, passwords: Passwords | None = None) -> Components:
    """Assemble the application. ``init`` creates or upgrades the schema first (``db init``);
    None does so only when it is not up to date (a first ``create-admin``; a store initialised by
    its owner is then left alone, its runtime role could not); otherwise the schema must already
    be in place: workers never race to create tables."""
    secret = secret_key(settings)
    engine = settings.database.create_engine()
    data_keys = DataKeyStore(engine, secret)
    context = ProjectionContext(Sealer(data_keys))
    projections = all_projections(context)
    if init is None:
        init = not is_initialised(engine)
    if init:
        initialise(settings, engine, projections)
    elif not is_initialised(engine):
        engine.dispose()
        raise NotInitialisedError(
            f"the database {settings.database.redacted()} is not initialised: run `ledgerline db init`"
        )
    try:
        data_keys.check_secret()
    except WrongSecretKeyError:
        engine.dispose()
        raise
    identity = Identity(
        env=settings.database.eventsourcing_env(create_table=False, pool_size=settings.pool_size),
        aggregate_cache=settings.aggregate_cache,  # trusted only where a stream follower runs
        data_keys=data_keys,
        secret=secret,
        passwords=passwords or Passwords(settings.argon2, slots=hashing_slots(settings)),
        lockout=settings.lockout,
        login_failure_floor=settings.login_failure_floor_ms / 1000,
    )
    context.mapper = identity.mapper
    return Components(
        settings=settings,
        engine=engine,
        identity=identity,
        projections=projections,
        secret=secret,
        checkpoint_keys=checkpoint_keys(settings, secret),
    )


def hashing_slots(settings: Settings) -> HashingSlots:
    """Shared by the API processes of this host through lock files in the data directory."""
    return HashingSlots(settings.hashing_cores, Path(settings.data_dir) / "hashing")


def initialise(settings: Settings, engine: Engine, projections: dict[str, Projection]) -> None:
    """``db init``: the schema is created by its owner (LEDGERLINE_OWNER_DATABASE_URL, else the
    runtime URL's role), which then grants the runtime role what it needs; the read models'
    first generations are created over ``engine`` (the runtime role), which so owns its caches."""
    owner = settings.owner_database
    owner_engine = owner.create_engine() if owner is not None else engine
    try:
        with init_lock(owner_engine) as connection:
            init_schema(owner or settings.database, connection)
            if owner is not None:
                grant_runtime_role(connection, settings.database.role)
                caches = [name for p in projections.values() for name in cache_relations(connection, p)]
                hand_over_caches(connection, settings.database.role, caches)
            for projection in projections.values():
                ensure_live_generation(engine, projection)
    finally:
        if owner_engine is not engine:
            owner_engine.dispose()


def _signing_seed(settings: Settings, secret: bytes | None) -> bytes:
    """The audit signing key: from LEDGERLINE_AUDIT_SIGNING_KEY, else from the secret key."""
    material = settings.audit_signing_key or secret
    if material is None:
        raise SettingsError("LEDGERLINE_AUDIT_SIGNING_KEY or LEDGERLINE_SECRET_KEY is needed to sign")
    return derive_key(material, "audit-signing")


def checkpoint_keys(settings: Settings, secret: bytes | None) -> CheckpointKeys:
    """Signs checkpoints (the same Ed25519 key, named by the log's origin); the retired keys
    keep older checkpoints verifying after a rotation."""
    signer = NoteSigner(settings.audit_origin, _signing_seed(settings, secret))
    return CheckpointKeys(signer, settings.audit_retired_keys)


def build_app(components: Components, *, watch_credentials: bool = True) -> Litestar:
    settings = components.settings
    services = Services(
        identity=components.identity,
        engine=components.engine,
        sealer=Sealer(components.identity.data_keys),
        tokens=AccessTokens(
            derive_key(components.secret, "access-tokens"), lifetime=settings.access_token_lifetime
        ),
        version=__version__,
        allow_registration=settings.allow_registration,
        usage_flush_seconds=settings.usage_flush_seconds,
        ready_max_lag=settings.ready_max_lag,
        ready_stall_seconds=settings.ready_stall_seconds,
        checkpoint_seconds=settings.checkpoint_seconds,
        login_limiter=RateLimiter(settings.login_rate_limit),
        verify_limiter=RateLimiter(settings.verify_rate_limit, "key verifications"),
        database=settings.database,
        checkpoint_keys=components.checkpoint_keys,
        measure=settings.metrics,
        tracing=settings.tracing,
        stream_policy=settings.stream.policy,
    )
    return create_app(services, trusted_proxies=settings.trusted_proxies, watch_credentials=watch_credentials)
