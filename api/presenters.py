"""Resources as clients see them: from aggregates (single reads, always current) or read-table
rows (lists). Secrets and digests never appear; sealed personal data is revealed here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.schemas import ApiKeyOut, AuditEntryOut, UserOut
from domain.api_keys import ApiKey
from domain.users import User
from domain.values import reveal
from eventstore.personal_data import Sealer
from projections.audit_log.presenter import present_entries, present_entry


def user_from_aggregate(user: User, now: datetime | None = None) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        email=user.email_address,
        full_name=reveal(user.full_name),
        is_active=user.is_active,
        is_superuser=user.is_superuser,
        is_verified=user.is_verified,
        verified_at=user.verified_at,
        is_locked=user.is_locked(now or datetime.now(UTC)),
        created_at=user.created_on,
        updated_at=user.modified_on,
        last_login_at=user.last_login_at,
        last_login_ip=reveal(user.last_login_ip),
        version=user.version,
    )


def user_from_row(row: dict[str, Any], sealer: Sealer, now: datetime | None = None) -> UserOut:
    locked_until = row["locked_until"]
    return UserOut(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        full_name=row["full_name"],
        is_active=row["is_active"],
        is_superuser=row["is_superuser"],
        is_verified=row["is_verified"],
        verified_at=row["verified_at"],
        is_locked=locked_until is not None and (now or datetime.now(UTC)) < locked_until,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_login_at=row["last_login_at"],
        last_login_ip=sealer.reveal(row["last_login_ip"]),
        version=row["version"],
    )


def api_key_from_aggregate(key: ApiKey, now: datetime | None = None) -> dict[str, Any]:
    assert key.owner_id is not None
    return {
        "id": key.id,
        "name": key.name,
        "description": key.description,
        "key_prefix": key.key_prefix,
        "permissions": dict(key.permissions or {}),
        "expires_at": key.expires_at,
        "user_id": key.owner_id,
        "created_at": key.created_on,
        "last_used_at": key.last_used_at,
        "last_used_ip": reveal(key.last_used_ip),
        "usage_count": key.usage_count,
        "revoked_at": key.revoked_at,
        "rotated_at": key.rotated_at,
        "grace_until": key.grace_until,
        "is_active": key.is_active(now or datetime.now(UTC)),
        "version": key.version,
    }


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(**api_key_from_aggregate(key))


def api_key_from_row(row: dict[str, Any], sealer: Sealer, now: datetime | None = None) -> ApiKeyOut:
    now = now or datetime.now(UTC)
    expired = row["expires_at"] is not None and now >= row["expires_at"]
    return ApiKeyOut(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        key_prefix=row["key_prefix"],
        permissions=row["permissions"],
        expires_at=row["expires_at"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        last_used_ip=sealer.reveal(row["last_used_ip"]),
        usage_count=row["usage_count"],
        revoked_at=row["revoked_at"],
        rotated_at=row["rotated_at"],
        grace_until=row["grace_until"],
        is_active=row["revoked_at"] is None and not expired,
        version=row["version"],
    )


def audit_entry_from_row(row: dict[str, Any], sealer: Sealer) -> AuditEntryOut:
    return AuditEntryOut(**present_entry(row, sealer))


def audit_entries_from_rows(rows: list[dict[str, Any]], sealer: Sealer) -> list[AuditEntryOut]:
    return [AuditEntryOut(**entry) for entry in present_entries(rows, sealer)]
