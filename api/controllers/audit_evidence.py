"""/audit-logs/export, /verify and /public-key: the evidence an auditor takes away.

The export streams a signed bundle (or CSV) a page at a time; verify recomputes the chain from
the stored records and checks each checkpoint against this installation's public key, which is
served without authentication so anyone can check a bundle or a checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Literal

import msgspec
from litestar import Controller, get
from litestar.di import Provide
from litestar.response import Stream

from api.authorization import authorize
from api.controllers.audit_logs import audit_filter
from api.controllers.responses import MinPosition
from api.schemas import One
from api.services import Services
from eventstore.audit_chain.checkpoints import CheckpointKeys
from eventstore.audit_chain.verify import verify_log
from projections.audit_log.export import MEDIA_TYPES, export
from projections.audit_log.queries import AuditFilter


class ChainVerification(msgspec.Struct):
    ok: bool
    verified_through_position: int
    head_hash: str | None
    first_bad_position: int | None
    reason: str | None
    tree_size: int  # leaves stored: every position through the newest event
    events_verified: int
    checkpoints_verified: int
    last_checkpoint_size: int | None
    audit_entries_verified: int  # audit_log rows checked against the entries their events give
    forged_audit_entries: int
    forged_audit_positions: list[int]  # the first of them


class PublicKey(msgspec.Struct):
    algorithm: str
    key_id: str
    public_key: str  # hex
    origin: str  # the log's name in its checkpoints (and the key's name in their signatures)
    vkey: str  # the C2SP signed-note verifier key checkpoints verify with: name+key ID+key
    retired_vkeys: list[str]  # keys that signed older checkpoints (LEDGERLINE_AUDIT_RETIRED_KEYS)


def _checkpoint_keys(services: Services) -> CheckpointKeys:
    assert services.checkpoint_keys is not None, "built by ledgerline.bootstrap"
    return services.checkpoint_keys


class AuditEvidenceController(Controller):
    path = "/api/v1/audit-logs"
    tags = ["audit-logs"]
    guards = [authorize]
    dependencies = {"audit": Provide(audit_filter, sync_to_thread=False)}

    @get("/export", sync_to_thread=True, opt={"media_types": tuple(MEDIA_TYPES.values())})
    def export_audit_logs(
        self,
        services: Services,
        audit: AuditFilter,
        format: Literal["ndjson", "csv"] = "ndjson",
        min_position: MinPosition = None,
    ) -> Stream:
        """The list's entries (same filters) in position order, streamed; ``ndjson`` is a signed
        bundle whose entries each carry an inclusion proof to its checkpoint, which `ledgerline
        audit verify-export` checks with only a key the auditor trusts."""
        services.read_side_at(min_position)
        name = f"audit-log-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{format}"
        return Stream(
            export(services.engine, services.audit_evidence, _checkpoint_keys(services), audit, format),
            media_type=MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @get("/verify", sync_to_thread=True)
    def verify_audit_chain(self, services: Services) -> One[ChainVerification]:
        """Recompute the log's Merkle tree from the stored events; check every stored node, every
        signed checkpoint (against this installation's current and retired keys) and every
        audit_log row against the entry its stored event gives (anything forged: ok false)."""
        assert services.database is not None, "built by ledgerline.bootstrap"
        keys = _checkpoint_keys(services)
        report = asdict(verify_log(services.engine, services.database, keys.trusted, keys.origin))
        report.pop("since_size")
        entries = services.audit_evidence.verify(services.engine)
        return One(
            data=ChainVerification(
                **{**report, "ok": report["ok"] and not entries.forged},
                audit_entries_verified=entries.entries_verified,
                forged_audit_entries=entries.forged,
                forged_audit_positions=entries.forged_positions,
            )
        )

    @get("/public-key", sync_to_thread=True)
    def audit_public_key(self, services: Services) -> One[PublicKey]:
        """The Ed25519 key checkpoints and exports are signed with (nothing about the log), and
        the signed-note verifier keys (``vkey``, ``retired_vkeys``) that check checkpoints."""
        keys = _checkpoint_keys(services)
        return One(
            data=PublicKey(
                algorithm="Ed25519",
                key_id=keys.fingerprint,
                public_key=keys.public_key.hex(),
                origin=keys.origin,
                vkey=keys.signer.verifier_key.encode(),
                retired_vkeys=[key.encode() for key in keys.retired],
            )
        )
