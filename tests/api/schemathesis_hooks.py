"""What a client knows that no schema can say, taught to schemathesis (``SCHEMATHESIS_HOOKS``).

The document admits only what the server accepts, except for rules about state, time or two
fields at once, which JSON Schema cannot express. A positive (schema-valid) case is brought
within them before it is sent, so that ``positive_data_acceptance`` tests the schema and nothing
else; negative cases are sent as generated. Every change keeps the case schema-valid:

- a position to read at (``min_position``) is one already written;
- no ``If-Match`` (which version is current is state);
- cursors are what a previous page answered (formats ``cursor`` and ``position-cursor``);
- the current password is the admin's own (the new one too, so the run can go on);
- a key's ``expires_at`` lies in the future;
- a subscription's URL resolves to an address the run allows (loopback);
- tree sizes lie within the tree (the log holds at least ``TREE`` events);
- an audit query's ``from`` is not after its ``to``; a page no deeper than offsets allow;
- the run's own admin and key are not deactivated, deleted, erased, demoted, rotated or revoked
  (the stateful phase would otherwise lock itself out and test nothing but 401s): a decoy user
  and key take what was meant for them (so links still lead to something that exists).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from hypothesis import strategies as st

from api.controllers.audit_logs import MAX_DEPTH
from api.services import encode_cursor, encode_position_cursor
from projections.audit_log.queries import MAX_POSITION

PASSWORD = os.environ.get("LEDGERLINE_FUZZ_PASSWORD", "")
# The run's own admin and key, each with a decoy that takes what was meant for it: "id=decoy,..."
DECOYS = dict(pair.split("=") for pair in os.environ.get("LEDGERLINE_FUZZ_DECOYS", "").split(",") if pair)
TREE = int(os.environ.get("LEDGERLINE_FUZZ_TREE", "1"))  # events written before the run

MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
schemathesis.openapi.format("cursor", st.builds(encode_cursor, MOMENTS, st.uuids()))
schemathesis.openapi.format("position-cursor", st.integers(0, MAX_POSITION).map(encode_position_cursor))


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    for name, value in (case.path_parameters or {}).items():
        if str(value) in DECOYS:
            case.path_parameters[name] = DECOYS[str(value)]
    query = case.query if isinstance(case.query, dict) else {}
    if isinstance(query.get("min_position"), int):  # a position written, not one to wait for
        query["min_position"] = min(query["min_position"], TREE)
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    body = case.body if isinstance(case.body, dict) else {}
    path = case.operation.path
    if case.headers:  # the version a resource has is state: a stale one is a 412
        case.headers.pop("If-Match", None)
    if path.endswith("/change-password"):
        body.update(current_password=PASSWORD, new_password=PASSWORD)
    if path == "/api/v1/users/me":
        body.pop("is_superuser", None)
    if isinstance(body.get("expires_at"), str) and _past(body["expires_at"]):
        body["expires_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    if path.endswith("/proof"):
        position = min(int(case.path_parameters["position"]), TREE)
        case.path_parameters["position"] = position
        if query.get("tree_size") is not None:
            query["tree_size"] = max(position, min(int(query["tree_size"]), TREE))
    if path.endswith("/consistency"):
        sizes = sorted(min(int(query[name]), TREE) for name in ("from", "to") if name in query)
        query.update(zip(("from", "to") if len(sizes) == 2 else ("from",), sizes, strict=True))
    if path.startswith("/api/v1/audit-logs"):
        _within_window(query)
        _within_depth(query)
    if path == "/api/v1/subscriptions" and "url" in body:  # where a name resolves is the world's state
        body["url"] = "http://127.0.0.1:9/hook"  # loopback: allowed by the run's settings


def _past(moment: str) -> bool:
    try:
        return datetime.fromisoformat(moment) <= datetime.now(UTC) + timedelta(minutes=1)
    except ValueError:
        return False


def _within_window(query: dict[str, Any]) -> None:
    if isinstance(query.get("from"), str) and isinstance(query.get("to"), str):
        try:
            if datetime.fromisoformat(query["from"]) > datetime.fromisoformat(query["to"]):
                query["from"], query["to"] = query["to"], query["from"]
        except ValueError:
            return


def _within_depth(query: dict[str, Any]) -> None:
    if "cursor" in query or "page" not in query:
        return
    per_page = int(query.get("per_page", 20))
    query["page"] = min(int(query["page"]), MAX_DEPTH // per_page + 1)
