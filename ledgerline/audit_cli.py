"""``ledgerline audit``: verify the chain (on the live database or an offline copy), export the
log, verify an export on its own, and print the public key auditors verify against."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import click

from eventstore.audit_chain.bundle import verify_bundle
from eventstore.audit_chain.signing import ALGORITHM
from eventstore.audit_chain.verify import verify_chain
from eventstore.personal_data import Sealer
from eventstore.schema import is_initialised
from eventstore.snapshots import SnapshotReport, verify_snapshots
from ledgerline.bootstrap import Components, NotInitialisedError, audit_signer, build, secret_key
from ledgerline.settings import Settings
from projections.audit_log.evidence import AuditEvidence, EntryReport, ForgedEntryError
from projections.audit_log.export import export
from projections.audit_log.queries import AuditFilter

PUBLIC_KEY_HELP = "A trusted Ed25519 public key in hex (repeatable); default: this installation's own."
TRUSTED_KEY_HELP = "A trusted Ed25519 public key in hex (repeatable; at least one is required)."
NO_TRUSTED_KEY = (
    "error: a bundle proves nothing without a key you trust: pass --public-key with the key "
    "published by `ledgerline audit public-key` (or GET /api/v1/audit-logs/public-key)"
)


@click.group("audit")
def audit() -> None:
    """Verify and export the audit log."""


@audit.command("verify")
@click.option("--public-key", "public_keys", multiple=True, help=PUBLIC_KEY_HELP)
def audit_verify(public_keys: tuple[str, ...]) -> None:
    """Recompute the hash chain from the stored events and check every signed checkpoint, then
    every stored snapshot against its events and its MAC (when the secret key is at hand).
    Exit status 0 when intact, 1 at the first tampered position or a forged snapshot (printed)."""
    settings = Settings.from_env(os.environ)
    engine = settings.database.create_engine()
    try:
        if not is_initialised(engine):
            raise NotInitialisedError(f"{settings.database.redacted()} holds no Ledgerline schema")
        report = verify_chain(engine, settings.database, _trusted(settings, public_keys))
    finally:
        engine.dispose()
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
    """Check an NDJSON export on its own against the keys you trust: its signature, each entry's
    chain link, its checkpoint. The key the bundle names is never trusted (a forger names hers)."""
    if not public_keys:
        click.echo(NO_TRUSTED_KEY, err=True)
        sys.exit(2)
    report = verify_bundle(bundle, _hex_keys(public_keys))
    _report(asdict(report), report.ok)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["ndjson", "csv"]), default="ndjson", show_default=True)
@click.option("--output", "-o", type=click.File("wb"), default="-", help="File to write (default: stdout).")
@click.option("--actor-id", type=click.UUID)
@click.option("--resource-type", type=click.Choice(["user", "api_key", "session"]))
@click.option("--resource-id", type=click.UUID)
@click.option("--action")
@click.option("--status", type=click.Choice(["success", "failure"]))
@click.option("--from", "from_", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]))
@click.option("--to", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]))
@click.option("--after-position", type=click.IntRange(min=0))
def audit_export(fmt: str, output: IO[bytes], **filters: Any) -> None:
    """Stream the audit log (the API list's filters) in position order, in constant memory."""
    for name in ("from_", "to"):
        moment = filters[name]
        if moment is not None and moment.tzinfo is None:
            filters[name] = moment.replace(tzinfo=UTC)
    components = build(Settings.from_env(os.environ))
    try:
        chunks = export(components.engine, _evidence(components), components.signer, _filter(filters), fmt)  # type: ignore[arg-type]
        for chunk in chunks:
            output.write(chunk)
        output.flush()
    except ForgedEntryError as forged:  # the bundle stays unsigned: verify-export refuses it
        click.echo(f"error: {forged}", err=True)
        sys.exit(1)
    finally:
        components.close()


@audit.command("public-key")
def audit_public_key() -> None:
    """The key checkpoints and exports are signed with: publish it to your auditors."""
    settings = Settings.from_env(os.environ)
    signer = audit_signer(settings, None if settings.audit_signing_key else secret_key(settings))
    click.echo(
        json.dumps({"algorithm": ALGORITHM, "key_id": signer.key_id, "public_key": signer.public_key.hex()})
    )


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
    )


def _trusted(settings: Settings, public_keys: tuple[str, ...]) -> frozenset[bytes] | None:
    """The keys ``audit verify`` wants checkpoints signed with: the ones given, else this
    installation's own (when its secret is at hand), else none: then the report lists the keys
    stored beside the checkpoints in ``untrusted_keys``. (``verify-export`` takes only keys given.)"""
    if public_keys:
        return _hex_keys(public_keys)
    if settings.audit_signing_key is not None:
        return frozenset({audit_signer(settings, None).public_key})
    kept = settings.database.is_sqlite and (Path(settings.data_dir) / "secret.key").exists()
    if settings.secret_key is None and not kept:
        click.echo("warning: no public key given: checkpoints are checked only against the keys stored "
                   "beside them, which anchors nothing (pass --public-key)", err=True)  # fmt: skip
        return None
    return frozenset({audit_signer(settings, secret_key(settings)).public_key})


def _hex_keys(public_keys: tuple[str, ...]) -> frozenset[bytes]:
    try:
        return frozenset(bytes.fromhex(key) for key in public_keys)
    except ValueError:
        raise click.BadParameter("not hex", param_hint="--public-key") from None


def _report(report: dict[str, Any], ok: bool) -> None:
    report["checked_at"] = datetime.now(UTC).isoformat()
    click.echo(json.dumps(report, indent=2))
    sys.exit(0 if ok else 1)
