"""``ledgerline audit``: verify the log and its Merkle tree (on the live database or an offline
copy, and against a checkpoint kept earlier), print a signed checkpoint, export the log, verify
an export on its own, and print the public key auditors verify against."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn
from uuid import UUID

import click
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from eventstore.audit_chain.bundle import trusted_keys, verify_bundle
from eventstore.audit_chain.checkpoints import CheckpointKeys, checkpoint_now
from eventstore.audit_chain.note import MAX_NOTE_BYTES, Checkpoint, NoteError, VerifierKey, open_checkpoint
from eventstore.audit_chain.verify import verify_log
from eventstore.personal_data import Sealer
from eventstore.schema import is_initialised
from eventstore.snapshots import SnapshotReport, verify_snapshots
from ledgerline.bootstrap import (
    Components,
    NotInitialisedError,
    build,
    checkpoint_keys,
    secret_key,
)
from ledgerline.settings import Settings
from projections.audit_log.evidence import AuditEvidence, EntryReport, ForgedEntryError
from projections.audit_log.export import UnprovableError, export
from projections.audit_log.queries import AuditFilter

PUBLIC_KEY_HELP = (
    "A key checkpoints may be signed with (repeatable): the log's signed-note verifier key "
    "(name+hex key ID+base64; its name is the log's origin) or a 64-hex Ed25519 key, named by "
    "LEDGERLINE_AUDIT_ORIGIN. Default: this installation's key and LEDGERLINE_AUDIT_RETIRED_KEYS."
)
SINCE_HELP = "A signed checkpoint you kept (`ledgerline audit checkpoint`): the log must still extend it."
NO_VERIFY_KEY = (
    "error: no key to check checkpoints with: pass --public-key with the vkey published by "
    "`ledgerline audit public-key` (or GET /api/v1/audit-logs/public-key), or set the secret key"
)
TRUSTED_KEY_HELP = (
    "A key you trust (repeatable; at least one is required): the log's signed-note verifier key "
    "(name+hex key ID+base64) or its Ed25519 public key in hex."
)
NO_TRUSTED_KEY = (
    "error: a bundle proves nothing without a key you trust: pass --public-key with the key "
    "published by `ledgerline audit public-key` (or GET /api/v1/audit-logs/public-key)"
)


@click.group("audit")
def audit() -> None:
    """Verify and export the audit log."""


@audit.command("verify")
@click.option("--public-key", "public_keys", multiple=True, help=PUBLIC_KEY_HELP)
@click.option("--since", "kept", type=click.File("rb"), help=SINCE_HELP)
def audit_verify(public_keys: tuple[str, ...], kept: IO[bytes] | None) -> None:
    """Recompute the log's Merkle tree from the stored events; check every stored node and every
    signed checkpoint against it (and, with --since, that the log still extends the checkpoint
    you kept: the same leaves through its size), then every stored snapshot and audit_log row
    against its events (when the secret key is at hand). Exit status 0 when intact; 1 when the
    log was rewritten, truncated or forked, or a cache forged (the report says where and why);
    2 when the kept checkpoint is not one of this log signed by a trusted key."""
    settings = Settings.from_env(os.environ)
    trusted = _checkpoint_verifiers(settings, public_keys)
    origin = trusted[0].name  # the log's name in its checkpoints is its key's name
    since = None if kept is None else _kept_checkpoint(kept, trusted, origin)
    engine = settings.database.create_engine()
    try:
        if not is_initialised(engine):
            raise NotInitialisedError(f"{settings.database.redacted()} holds no Ledgerline schema")
        report = verify_log(engine, settings.database, trusted, origin, since=since)
    finally:
        engine.dispose()
    if not report.ok:
        click.echo(f"error: position {report.first_bad_position}: {report.reason}", err=True)
    caches = _verify_caches(settings)
    snapshots, entries = caches or (None, None)
    forged = None if snapshots is None else snapshots.forged
    ok = report.ok and not forged and not (entries and entries.forged)
    _report(
        {
            **asdict(report),
            "ok": ok,
            "snapshots_verified": None if snapshots is None else snapshots.verified,
            "unauthenticated_snapshots": None if snapshots is None else snapshots.unauthenticated,
            "forged_snapshots": None if forged is None else [asdict(problem) for problem in forged],
            "audit_entries_verified": None if entries is None else entries.entries_verified,
            "forged_audit_entries": None if entries is None else entries.forged,
            "forged_audit_positions": None if entries is None else entries.forged_positions,
        },
        ok,
    )


def _verify_caches(settings: Settings) -> tuple[SnapshotReport, EntryReport] | None:
    """Snapshots and audit_log rows are checked against their events with the secret key (the
    snapshots' MAC key, and what decrypts the personal data both are compared on); without it
    they are not checked, and the report says ``null``."""
    kept = settings.database.is_sqlite and (Path(settings.data_dir) / "secret.key").exists()
    if settings.secret_key is None and not kept:
        click.echo("warning: no secret key: snapshots and audit_log rows were not checked", err=True)
        return None
    components = build(settings)
    try:
        identity, engine = components.identity, components.engine
        snapshots = verify_snapshots(identity, engine, settings.database, identity.snapshot_key)
        return snapshots, _evidence(components).verify(engine)
    finally:
        components.close()


def _evidence(components: Components) -> AuditEvidence:
    identity = components.identity
    return AuditEvidence(identity.mapper, components.settings.database, Sealer(identity.data_keys))


@audit.command("verify-export")
@click.argument("bundle", type=click.File("rb"))
@click.option("--public-key", "public_keys", multiple=True, help=TRUSTED_KEY_HELP)
def audit_verify_export(bundle: IO[bytes], public_keys: tuple[str, ...]) -> None:
    """Check an NDJSON export on its own against the keys you trust: its checkpoint's signature,
    each entry's record, leaf hash and inclusion proof to that checkpoint, the position order and
    the closing signature over every line. Nothing the bundle carries is trusted on its own word.
    Exit status 0 when it verifies, 1 at the first bad line (named in the report), 2 without a key."""
    if not public_keys:
        click.echo(NO_TRUSTED_KEY, err=True)
        sys.exit(2)
    try:
        trusted = trusted_keys(public_keys)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--public-key") from None
    report = verify_bundle(bundle, trusted)
    _report(asdict(report), report.ok)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["ndjson", "csv"]), default="ndjson", show_default=True)
@click.option("--output", "-o", type=click.File("wb"), default="-", help="File to write (default: stdout).")
@click.option("--actor-id", type=click.UUID)
@click.option("--resource-type", type=click.Choice(["user", "api_key", "session", "subscription"]))
@click.option("--resource-id", type=click.UUID)
@click.option("--action")
@click.option("--status", type=click.Choice(["success", "failure"]))
@click.option("--from", "from_", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]))
@click.option("--to", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]))
@click.option("--after-position", type=click.IntRange(min=0))
def audit_export(fmt: str, output: IO[bytes], **filters: Any) -> None:
    """Stream the audit log (the API list's filters) in position order, in constant memory. When
    the store no longer holds what an entry needs (an event changed or unreadable, a tree node
    gone), the export stops there: one line names the position and `ledgerline audit verify`,
    exit status 1, and what was written is left unsigned (verify-export refuses it)."""
    for name in ("from_", "to"):
        moment = filters[name]
        if moment is not None and moment.tzinfo is None:
            filters[name] = moment.replace(tzinfo=UTC)
    components = build(Settings.from_env(os.environ))
    evidence = _PagedEvidence(components)
    try:
        chunks = export(components.engine, evidence, components.checkpoint_keys, _filter(filters), fmt)  # type: ignore[arg-type]
        for chunk in chunks:
            output.write(chunk)
        output.flush()
    except (ForgedEntryError, UnprovableError, UnreadableEventError) as refused:
        _export_stopped(str(refused), evidence.page, fmt)
    except RuntimeError as failed:  # the export's own wrapping of a proof or record that fails
        if not isinstance(failed.__cause__, ValueError):
            raise
        _export_stopped(str(failed.__cause__), evidence.page, fmt)
    finally:
        components.close()


class UnreadableEventError(RuntimeError):
    """A stored event that no longer decodes (its bytes were changed outside the log)."""

    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(
            f"the stored event at position {position} cannot be read ({type(error).__name__}: {error}): "
            "it was changed outside the log (run `ledgerline audit verify`)"
        )
        self.position = position


class _PagedEvidence(AuditEvidence):
    """The export's row check, remembering the page it checks (to say where an export stopped)
    and naming the event that cannot be read rather than failing on its whole page."""

    def __init__(self, components: Components) -> None:
        identity = components.identity
        super().__init__(identity.mapper, components.settings.database, Sealer(identity.data_keys))
        self.page: tuple[int, int] | None = None

    def forged_in(self, conn: Connection, rows: Iterable[Any]) -> list[int]:
        rows = list(rows)
        if rows:
            self.page = (rows[0]["position"], rows[-1]["position"])
        try:
            return super().forged_in(conn, rows)
        except SQLAlchemyError:
            raise
        except Exception:
            for row in rows:
                try:
                    super().forged_in(conn, [row])
                except SQLAlchemyError:
                    raise
                except Exception as error:
                    raise UnreadableEventError(row["position"], error) from None
            raise


def _export_stopped(problem: str, page: tuple[int, int] | None, fmt: str) -> NoReturn:
    """One line: where the export stopped, why, what to run; exit 1."""
    problem = " ".join(problem.split())
    where = ""
    if "position" not in problem:
        where = f" at positions {page[0]}-{page[1]}" if page else " before its first position"
    if "ledgerline audit verify" not in problem:
        problem += " (run `ledgerline audit verify`)"
    kept = "unsigned (verify-export refuses it)" if fmt == "ndjson" else "incomplete"
    click.echo(f"error: the export stopped{where}: {problem}; what it wrote is {kept}", err=True)
    sys.exit(1)


@audit.command("public-key")
def audit_public_key() -> None:
    """The key checkpoints and exports are signed with: publish it to your auditors (``vkey``
    is the signed-note verifier key that `audit verify --public-key` and any C2SP tool take)."""
    settings = Settings.from_env(os.environ)
    secret = None if settings.audit_signing_key else secret_key(settings)
    keys = checkpoint_keys(settings, secret)
    published = {"algorithm": "Ed25519", "key_id": keys.fingerprint, "public_key": keys.public_key.hex()}
    click.echo(
        json.dumps(
            {
                **published,
                "origin": keys.origin,
                "vkey": keys.signer.verifier_key.encode(),
                "retired_vkeys": [key.encode() for key in keys.retired],
            }
        )
    )


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Print the latest signed checkpoint of the log (a C2SP tlog-checkpoint note), signing one
    now when the latest does not cover every committed event. Keep it: `audit verify --since
    FILE` later proves the log still extends it."""
    settings = Settings.from_env(os.environ)
    keys = checkpoint_keys(settings, None if settings.audit_signing_key else secret_key(settings))
    engine = settings.database.create_engine()
    try:
        if not is_initialised(engine):
            raise NotInitialisedError(f"{settings.database.redacted()} holds no Ledgerline schema")
        note = checkpoint_now(engine, keys).note
    finally:
        engine.dispose()
    click.echo(note, nl=False)  # the note, exactly: it ends with its newline


def _filter(options: dict[str, Any]) -> AuditFilter:
    def uuid(value: UUID | None) -> UUID | None:
        return None if value is None else UUID(str(value))

    return AuditFilter(
        actor_id=uuid(options["actor_id"]),
        resource_type=options["resource_type"],
        resource_id=uuid(options["resource_id"]),
        action=options["action"],
        status=options["status"],
        from_=options["from_"],
        to=options["to"],
        after_position=options["after_position"],
        without_usage=True,  # key usage (traffic) only when --action asks for it
    )


def _checkpoint_verifiers(settings: Settings, public_keys: tuple[str, ...]) -> list[VerifierKey]:
    """The keys ``audit verify`` wants checkpoints signed with: the ones given, else this
    installation's current key (when its secret is at hand) and its retired keys; with neither,
    exit 2 (a checkpoint checked against no key proves nothing)."""
    if public_keys:
        return [_verifier_key(settings, key) for key in public_keys]
    own = _own_checkpoint_keys(settings)
    if own is None:
        click.echo(NO_VERIFY_KEY, err=True)
        sys.exit(2)
    return list(own.trusted)


def _verifier_key(settings: Settings, value: str) -> VerifierKey:
    """A signed-note verifier key, or a bare Ed25519 key in hex named by the configured origin."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return VerifierKey(settings.audit_origin, bytes.fromhex(value))
    try:
        return VerifierKey.parse(value)
    except ValueError as error:
        raise click.BadParameter(
            f"{error}: pass a verifier key (name+hex key ID+base64) or a 64-hex Ed25519 key",
            param_hint="--public-key",
        ) from None


def _own_checkpoint_keys(settings: Settings) -> CheckpointKeys | None:
    """This installation's keys when its signing key or secret is at hand (a secret is never
    created here: an auditor's offline copy has none)."""
    if settings.audit_signing_key is not None:
        return checkpoint_keys(settings, None)
    kept = settings.database.is_sqlite and (Path(settings.data_dir) / "secret.key").exists()
    if settings.secret_key is None and not kept:
        return None
    return checkpoint_keys(settings, secret_key(settings))


def _kept_checkpoint(kept: IO[bytes], trusted: list[VerifierKey], origin: str) -> Checkpoint:
    """The checkpoint the auditor kept, opened with the trusted keys; anything else exits 2."""
    try:
        return open_checkpoint(kept.read(MAX_NOTE_BYTES + 1), trusted, origin=origin)
    except NoteError as error:
        click.echo(f"error: {kept.name} is not a checkpoint of {origin} signed by a trusted key: {error}",
                   err=True)  # fmt: skip
        sys.exit(2)


def _hex_keys(public_keys: tuple[str, ...]) -> frozenset[bytes]:
    try:
        return frozenset(bytes.fromhex(key) for key in public_keys)
    except ValueError:
        raise click.BadParameter("not hex", param_hint="--public-key") from None


def _report(report: dict[str, Any], ok: bool) -> None:
    report["checked_at"] = datetime.now(UTC).isoformat()
    click.echo(json.dumps(report, indent=2))
    sys.exit(0 if ok else 1)
