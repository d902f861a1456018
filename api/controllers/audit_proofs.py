"""/audit-logs/checkpoint, /{position}/proof and /consistency: the log's RFC 9162 proofs.

Every answer is read from the stored tree (``eventstore.audit_chain.tree``): a proof is at most
about 2 log2(n) node rows read by primary key, never a scan of the log. Each proof comes with the
signed checkpoint (C2SP tlog-checkpoint note) of the tree it is a proof in, so an auditor checks
it with nothing but the log's verifier key (``GET /audit-logs/public-key``: ``vkey``).
Hashes are standard base64, as in the checkpoint notes.
"""

from __future__ import annotations

import base64
import hmac
from typing import Annotated

import msgspec
from litestar import Controller, MediaType, get
from litestar.exceptions import ValidationException
from litestar.params import Parameter, QueryParameter
from sqlalchemy.engine import Engine

from api.authorization import authorize
from api.controllers.responses import MinPosition
from api.schemas import One
from api.services import Services
from domain.errors import NotFoundError
from eventstore.audit_chain.checkpoints import CheckpointKeys, checkpoint_now, note_for
from eventstore.audit_chain.merkle import ProofError
from eventstore.audit_chain.records import read_records
from eventstore.audit_chain.tree import consistency_with_root, inclusion_with_root, stored_size
from eventstore.database import Database
from projections.audit_log.queries import MAX_POSITION

_BOUNDS = {"ge": 0, "le": MAX_POSITION, "schema_extra": {"minimum": 0, "maximum": MAX_POSITION}}
Position = Annotated[int, Parameter(**_BOUNDS)]
TreeSize = Annotated[
    int | None,
    QueryParameter(description="prove in the tree of this many leaves (position..current size)", **_BOUNDS),
]
FromSize = Annotated[int, QueryParameter(name="from", description="the earlier tree's size", **_BOUNDS)]
ToSize = Annotated[
    int | None,
    QueryParameter(
        description="the later tree's size (from..current size); default: the current size", **_BOUNDS
    ),
]


class InclusionProofOut(msgspec.Struct):
    position: int
    leaf_index: int  # position - 1
    leaf_hash: str  # base64 SHA-256(0x00 || record)
    tree_size: int
    inclusion_path: list[str]  # RFC 9162 2.1.3.1, deepest sibling first, base64
    checkpoint: str  # the signed note of the tree of tree_size leaves


class ConsistencyProofOut(msgspec.Struct):
    from_: int = msgspec.field(name="from")
    to: int
    proof: list[str]  # RFC 9162 2.1.4.1, base64
    checkpoint: str  # the signed note of the tree of `to` leaves


class AuditProofsController(Controller):
    path = "/api/v1/audit-logs"
    tags = ["audit-logs"]
    guards = [authorize]

    @get("/checkpoint", media_type=MediaType.TEXT, sync_to_thread=True)
    def audit_checkpoint(self, services: Services, min_position: MinPosition = None) -> str:
        """The signed checkpoint (C2SP tlog-checkpoint note, ``text/plain``) of a tree covering
        every event committed before the request: the latest stored one when it does, else one
        signed now. Check it with the ``vkey`` of ``GET /audit-logs/public-key``."""
        services.store_at(min_position)
        return checkpoint_now(services.engine, _keys(services)).note

    @get("/{position:int}/proof", sync_to_thread=True)
    def audit_inclusion_proof(
        self,
        position: Position,
        services: Services,
        tree_size: TreeSize = None,
        min_position: MinPosition = None,
    ) -> One[InclusionProofOut]:
        """An RFC 9162 inclusion proof of the event at ``position`` (leaf ``position - 1``) in the
        tree of the latest checkpoint (one covering every event committed before the request),
        or with ``tree_size`` in that earlier tree (``position <= tree_size <=`` the current
        size, else 422). A position that holds no event, or is beyond the tree: 404."""
        services.store_at(min_position)
        return One(data=inclusion(services.engine, _database(services), _keys(services), position, tree_size))

    @get("/consistency", sync_to_thread=True)
    def audit_consistency_proof(
        self, services: Services, from_: FromSize, to: ToSize = None, min_position: MinPosition = None
    ) -> One[ConsistencyProofOut]:
        """An RFC 9162 consistency proof that the tree of ``to`` leaves extends the tree of
        ``from`` leaves (``0 <= from <= to <=`` the current size, else 422), with the signed
        checkpoint of tree ``to``. ``to`` defaults to the current size: the tree of a checkpoint
        covering every event committed before the request."""
        services.store_at(min_position)
        return One(data=consistency(services.engine, _keys(services), from_, to))


def inclusion(
    engine: Engine, database: Database, keys: CheckpointKeys, position: int, tree_size: int | None
) -> InclusionProofOut:
    """The proof ``GET /audit-logs/{position}/proof`` answers (see there): one connection, four
    statements (the size, the event, every node the proof and its root need, the stored note)."""
    with engine.connect() as conn:  # a node missing from the stored tree: ProofError (503)
        current = stored_size(conn)
        in_tree = 1 <= position <= current
        records = read_records(conn, database, position - 1, 1, upto=position) if in_tree else []
        if not records:
            raise NotFoundError("audit_entry", position)
        size = current if tree_size is None else tree_size  # none: every event committed before
        _within("tree_size", size, position, current)
        leaf, path, root = inclusion_with_root(conn, position - 1, size)
        if not hmac.compare_digest(leaf, records[0].leaf_hash()):  # never prove another event's leaf
            raise ProofError(f"the event at position {position} is not the leaf the tree holds for it")
        note = note_for(conn, keys, size, root)
    return InclusionProofOut(position, position - 1, _b64(leaf), size, [_b64(h) for h in path], note)


def consistency(engine: Engine, keys: CheckpointKeys, first: int, second: int | None) -> ConsistencyProofOut:
    """The proof ``GET /audit-logs/consistency`` answers (see there)."""
    with engine.connect() as conn:
        current = stored_size(conn)
        second = current if second is None else second
        _within("to", second, 0, current)
        _within("from", first, 0, second)
        proof, root = consistency_with_root(conn, first, second)
        note = note_for(conn, keys, second, root)
    return ConsistencyProofOut(first, second, [_b64(h) for h in proof], note)


def _within(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        message = f"must lie between {low} and {high}"
        raise ValidationException(f"{name} is out of range", extra=[{"key": name, "message": message}])


def _keys(services: Services) -> CheckpointKeys:
    assert services.checkpoint_keys is not None, "built by ledgerline.bootstrap"
    return services.checkpoint_keys


def _database(services: Services) -> Database:
    assert services.database is not None, "built by ledgerline.bootstrap"
    return services.database


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")
