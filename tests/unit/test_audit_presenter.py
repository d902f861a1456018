"""The audit entry presenter: the contract's fields in order, the entry's leaf hash in hex."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast, get_args
from uuid import uuid4

import pytest

from api.controllers.audit_logs import ResourceType
from api.schemas import AuditEntryOut
from eventstore.personal_data import DataKeyStore, Sealer
from projections.audit_log.presenter import ENTRY_FIELDS, present_entry
from projections.audit_log.projection import RESOURCE_TYPES

NO_KEYS = Sealer(cast(DataKeyStore, None))  # nothing sealed in these rows: no key is looked up


def row(**changes: Any) -> dict[str, Any]:
    return {
        "position": 7,
        "occurred_at": datetime(2025, 1, 2, tzinfo=UTC),
        "action": "api_key.permissions_changed",
        "resource_type": "api_key",
        "resource_id": uuid4(),
        "resource_version": 3,
        "actor_id": None,
        "actor_type": "system",
        "credential_id": None,
        "ip_address": None,
        "user_agent": None,
        "request_id": "r-1",
        "correlation_id": "c-1",
        "causation_id": "not shown",
        "status": "success",
        "changes": {"permissions": {"users:read": True, "sealed": False}},
        **changes,
    }


# ``leaf_hash``: the entry's leaf in the log's Merkle tree (joined by ``select_entries``); None
# only if the tree lacks it, which ``audit verify`` reports.
@pytest.mark.parametrize(("leaf", "shown"), [(None, None), (bytes(range(32)), bytes(range(32)).hex())])
def test_an_entry_has_the_contract_fields_and_its_leaf_hash_in_hex(
    leaf: bytes | None, shown: str | None
) -> None:
    entry = present_entry(row(leaf_hash=leaf), NO_KEYS)
    assert tuple(entry) == ENTRY_FIELDS == AuditEntryOut.__struct_fields__
    assert entry["hash"] == shown
    assert entry["changes"] == {"permissions": {"users:read": True, "sealed": False}}  # not sealed data


def test_the_api_knows_every_resource_type_the_log_records() -> None:
    assert set(get_args(ResourceType)) == set(RESOURCE_TYPES.values())
