"""Every projection the product runs, by name."""

from __future__ import annotations

from projections.api_keys.projection import ApiKeysProjection
from projections.audit_log.projection import AuditLogProjection
from projections.base import Projection, ProjectionContext
from projections.users.projection import UsersProjection

PROJECTION_CLASSES = (UsersProjection, ApiKeysProjection, AuditLogProjection)
NAMES = tuple(cls.name for cls in PROJECTION_CLASSES)


def all_projections(context: ProjectionContext) -> dict[str, Projection]:
    return {cls.name: cls(context) for cls in PROJECTION_CLASSES}
