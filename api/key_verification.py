"""``POST /api-keys/verify``: a service asks whether a key its own caller presented is good.

Rate limited per calling credential and per client address (``LEDGERLINE_VERIFY_RATE_LIMIT`` a
minute each, 429 with Retry-After beyond), counted before the key is looked at, so guessing keys
costs the same budget whatever the guesses are. A valid key's verification counts as a use of
it, the way a request authenticated with it counts (``api.usage``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from api.key_schemas import KeyVerification
from api.security import Principal
from api.services import Services
from domain.audit import current_audit_context
from eventstore.identity import KeyCheck


def verify_key(services: Services, principal: Principal, key: str) -> KeyVerification:
    address = current_audit_context().ip_address
    services.verify_limiter.check(f"credential:{principal.credential_id}", f"address:{address}")
    now = datetime.now(UTC)
    check = services.identity.check_api_key(key, now=now)
    if check.valid and check.key_id is not None and services.usage is not None:
        services.usage.count(check.key_id, now, address)
    return _presented(check)


def _presented(check: KeyCheck) -> KeyVerification:
    unset = msgspec.UNSET
    return KeyVerification(
        valid=check.valid,
        code=check.code.value,  # KeyCode's values are the Literal's
        key_id=unset if check.key_id is None else check.key_id,
        user_id=unset if check.user_id is None else check.user_id,
        permissions=check.permissions if check.valid and check.permissions is not None else unset,
        expires_at=check.expires_at if check.valid else unset,
    )
