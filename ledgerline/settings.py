"""Settings from environment variables. ``Settings.from_env`` is pure: it reads a mapping and
touches nothing (no files, no network), so tests build settings from plain dicts."""

from __future__ import annotations

import base64
import binascii
import importlib.util
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from domain.values import Lockout
from eventstore.audit_chain.note import VerifierKey, is_valid_key_name
from eventstore.database import Database, DatabaseUrlError
from eventstore.passwords import Argon2Parameters, hashing_cores
from projections.streaming.options import StreamOptions
from projections.streaming.targets import TargetPolicy


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    database: Database
    data_dir: Path
    secret_key: bytes | None
    argon2: Argon2Parameters
    hashing_cores: int
    access_log: bool
    lockout: Lockout
    host: str
    port: int
    pool_size: int
    login_rate_limit: int
    login_failure_floor_ms: int
    trusted_proxies: tuple[str, ...]
    allow_registration: bool
    access_token_lifetime: timedelta
    usage_flush_seconds: float
    audit_signing_key: bytes | None
    audit_origin: str
    audit_retired_keys: tuple[VerifierKey, ...]
    checkpoint_seconds: int
    aggregate_cache: int
    workers: int
    ready_max_lag: int
    ready_stall_seconds: int
    # Operations (decision 0016): /metrics and the per-request counting; the log's level.
    metrics: bool = True
    log_level: str = "info"
    tracing: bool = False
    # PostgreSQL: the role that owns the schema (``db init`` only); ``database`` is then the
    # runtime role, granted what the API and projector need and nothing that rewrites evidence.
    owner_database: Database | None = None
    stream: StreamOptions = field(default_factory=StreamOptions)  # streaming events out
    # POST /api-keys/verify: verifications per calling credential and per client a minute (0: off)
    verify_rate_limit: int = 600

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        def get(name: str, default: str) -> str:
            return environ.get(f"LEDGERLINE_{name}", default).strip() or default

        def number(name: str, default: int, low: int, high: int) -> int:
            raw = get(name, str(default))
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"LEDGERLINE_{name} must be a whole number, not {raw!r}") from None
            if not low <= value <= high:
                raise SettingsError(f"LEDGERLINE_{name} must be between {low} and {high}, not {value}")
            return value

        data_dir = Path(get("DATA_DIR", "var"))
        try:
            database = Database(
                get("DATABASE_URL", f"sqlite:///{data_dir / 'ledgerline.sqlite3'}"),
                group_commit=_flag("GROUP_COMMIT", get("GROUP_COMMIT", "true")),
            )
        except DatabaseUrlError as error:
            raise SettingsError(f"LEDGERLINE_DATABASE_URL: {error}") from None
        return cls(
            database=database,
            owner_database=_owner_database(
                environ.get("LEDGERLINE_OWNER_DATABASE_URL", "").strip(), database
            ),
            data_dir=data_dir,
            secret_key=_secret(environ.get("LEDGERLINE_SECRET_KEY", "").strip()),
            argon2=Argon2Parameters(
                memory_kib=number("ARGON2_MEMORY_KIB", 19 * 1024, 8, 4 * 1024 * 1024),
                time_cost=number("ARGON2_TIME_COST", 2, 1, 100),
                parallelism=number("ARGON2_PARALLELISM", 1, 1, 64),
            ),
            hashing_cores=number("HASHING_CORES", hashing_cores(), 1, 1024),
            lockout=Lockout(
                max_failures=number("LOCKOUT_MAX_FAILURES", 5, 1, 1000),
                seconds=number("LOCKOUT_SECONDS", 15 * 60, 1, 365 * 24 * 3600),
            ),
            host=get("HOST", "127.0.0.1"),
            port=number("PORT", 8000, 1, 65535),
            pool_size=number("POOL_SIZE", 10, 1, 200),
            login_rate_limit=number("LOGIN_RATE_LIMIT", 10, 0, 1_000_000),
            login_failure_floor_ms=number("LOGIN_FAILURE_FLOOR_MS", 150, 0, 10_000),
            trusted_proxies=_networks(get("TRUSTED_PROXIES", "")),
            allow_registration=_flag("ALLOW_REGISTRATION", get("ALLOW_REGISTRATION", "true")),
            access_log=_flag("ACCESS_LOG", get("ACCESS_LOG", "true")),
            access_token_lifetime=timedelta(seconds=number("ACCESS_TOKEN_SECONDS", 900, 60, 24 * 3600)),
            usage_flush_seconds=number("USAGE_FLUSH_MS", 2000, 50, 60_000) / 1000,
            audit_signing_key=_secret(
                environ.get("LEDGERLINE_AUDIT_SIGNING_KEY", "").strip(), "AUDIT_SIGNING_KEY"
            ),
            audit_origin=_origin(get("AUDIT_ORIGIN", ""), database),
            audit_retired_keys=_verifier_keys(get("AUDIT_RETIRED_KEYS", "")),
            checkpoint_seconds=number("CHECKPOINT_SECONDS", 1, 1, 24 * 3600),
            aggregate_cache=number("AGGREGATE_CACHE", 10_000, 0, 10_000_000),
            workers=number("WORKERS", 1, 1, 64),
            verify_rate_limit=number("VERIFY_RATE_LIMIT", 600, 0, 1_000_000),
            ready_max_lag=number("READY_MAX_LAG", 1000, 0, 1_000_000_000),
            ready_stall_seconds=number("READY_STALL_SECONDS", 30, 1, 24 * 3600),
            metrics=_flag("METRICS", get("METRICS", "true")),
            log_level=log_level(environ),
            tracing=_tracing(_flag("TRACING", get("TRACING", "false"))),
            stream=StreamOptions(
                policy=TargetPolicy(
                    allow_private=_flag("STREAM_ALLOW_PRIVATE", get("STREAM_ALLOW_PRIVATE", "false")),
                    allow_loopback=_flag("STREAM_ALLOW_LOOPBACK", get("STREAM_ALLOW_LOOPBACK", "false")),
                ),
                nats_url=environ.get("LEDGERLINE_NATS_URL", "").strip() or None,
                timeout=number("STREAM_TIMEOUT_SECONDS", 10, 1, 300),
                retry_first=number("STREAM_RETRY_FIRST_MS", 1000, 10, 600_000) / 1000,
                retry_cap=number("STREAM_RETRY_MAX_SECONDS", 300, 1, 24 * 3600),
                poll_interval=number("STREAM_POLL_MS", 100, 10, 10_000) / 1000,
            ),
        )


def _tracing(on: bool) -> bool:
    if on and importlib.util.find_spec("opentelemetry.sdk") is None:
        raise SettingsError("LEDGERLINE_TRACING needs the tracing extra: pip install 'ledgerline[tracing]'")
    return on


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def log_level(environ: Mapping[str, str]) -> str:
    """``LEDGERLINE_LOG_LEVEL``: read before the rest, so that the first lines already obey it."""
    raw = environ.get("LEDGERLINE_LOG_LEVEL", "").strip().lower() or "info"
    if raw not in LOG_LEVELS:
        raise SettingsError(f"LEDGERLINE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {raw!r}")
    return raw


def _origin(raw: str, database: Database) -> str:
    """The log's name in its checkpoints (and its signing key's name): by default
    ``ledgerline/<host>``, the host being the PostgreSQL server's (every process of one
    deployment names the same log), or this machine's for the embedded store."""
    origin = raw or f"ledgerline/{database.host or socket.gethostname()}"
    if not is_valid_key_name(origin):
        raise SettingsError(f"LEDGERLINE_AUDIT_ORIGIN must be one word without spaces or '+', not {origin!r}")
    return origin


def _verifier_keys(raw: str) -> tuple[VerifierKey, ...]:
    """Retired checkpoint keys (signed-note verifier keys, ``name+id+key``), comma- or
    space-separated: checkpoints they signed keep verifying after a key rotation."""
    keys = []
    for part in raw.replace(",", " ").split():
        try:
            keys.append(VerifierKey.parse(part))
        except ValueError as error:
            raise SettingsError(f"LEDGERLINE_AUDIT_RETIRED_KEYS: {error}: {part[:40]!r}") from None
    return tuple(keys)


def _owner_database(raw: str, runtime: Database) -> Database | None:
    """The schema owner's URL: the same PostgreSQL database as the runtime URL, another role.
    Errors name URLs only redacted (they carry passwords)."""
    if not raw.strip():
        return None
    try:
        owner = Database(raw.strip())
    except DatabaseUrlError as error:
        raise SettingsError(f"LEDGERLINE_OWNER_DATABASE_URL: {error}") from None
    if not (owner.is_postgres and runtime.is_postgres):
        raise SettingsError("LEDGERLINE_OWNER_DATABASE_URL needs PostgreSQL for both URLs")
    if not owner.same_server_and_database(runtime):
        raise SettingsError(
            "LEDGERLINE_OWNER_DATABASE_URL must name the same server and database as "
            f"LEDGERLINE_DATABASE_URL (owner {owner.redacted()}, runtime {runtime.redacted()})"
        )
    if owner.role == runtime.role:
        raise SettingsError(
            "LEDGERLINE_OWNER_DATABASE_URL must connect as another role than LEDGERLINE_DATABASE_URL"
        )
    return owner


def _networks(raw: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR ranges whose X-Forwarded-For is believed."""
    networks = tuple(part.strip() for part in raw.split(",") if part.strip())
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(
                f"LEDGERLINE_TRUSTED_PROXIES: {network!r} is not an address or range"
            ) from None
    return networks


def _flag(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"LEDGERLINE_{name} must be true or false, not {raw!r}")


def _secret(raw: str, name: str = "SECRET_KEY") -> bytes | None:
    """A secret of at least 32 bytes, given as hex or base64."""
    if not raw:
        return None
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            secret = decode(raw)
        except (ValueError, binascii.Error):
            continue
        if len(secret) >= 32:
            return secret
    raise SettingsError(f"LEDGERLINE_{name} must be at least 32 bytes, hex or base64 encoded")
