"""Whatever the API accepts, every projection can apply: random bodies of the documented shapes
(with hostile text and times) go to every command that takes a body, on PostgreSQL, and afterwards
every projection reaches the head of the log; none stalls on an event."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from domain.scopes import KNOWN_SCOPES
from eventstore.passwords import Passwords
from ledgerline.bootstrap import Components, build, build_app
from projections.read_side import positions, wait_for_position
from projections.worker import start_workers
from tests.conftest import FAST_ARGON2, settings_for

PASSWORD = "Correct-Horse-9"


@pytest.fixture
def store(pg_database: str, tmp_path: Path) -> Iterator[tuple[Components, Litestar]]:
    components = build(
        settings_for(pg_database, tmp_path, LEDGERLINE_LOGIN_FAILURE_FLOOR_MS="0"),
        init=True,
        passwords=Passwords(FAST_ARGON2),
    )
    stop = threading.Event()
    workers = start_workers(
        list(components.projections.values()),
        components.identity,
        components.engine,
        components.settings.database,
        stop,
    )
    try:
        yield components, build_app(components)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
        components.close()


# Text as a hostile client sends it: any code point, NUL drawn often, and long runs of the
# characters that grow when case-folded ("ﬃ" -> "ffi", "ß" -> "ss").
TEXT = st.text(st.characters(codec=None) | st.just("\x00"), max_size=255) | st.text(
    st.sampled_from("\ufb03\u00dfa"), min_size=200, max_size=255
)
MOMENT = st.datetimes(min_value=datetime(2030, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
OFFSET = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
EXPIRY = st.builds(lambda moment, offset: moment.replace(tzinfo=offset).isoformat(), MOMENT, OFFSET)
PERMISSIONS = st.dictionaries(st.sampled_from(sorted(KNOWN_SCOPES)), st.booleans())
NAME = st.from_regex(r"\A[a-z0-9_-]{3,20}\Z")
USER = st.fixed_dictionaries(
    {"username": NAME, "email": NAME.map(lambda name: f"{name}@example.com"), "password": st.just(PASSWORD)},
    optional={"full_name": TEXT | st.none()},
)
PROFILE = st.fixed_dictionaries({}, optional={"full_name": TEXT | st.none(), "email": st.emails()})
KEY = st.fixed_dictionaries(
    {"name": TEXT, "permissions": PERMISSIONS},
    optional={"description": TEXT | st.none(), "expires_at": EXPIRY},
)
KEY_CHANGE = st.fixed_dictionaries(
    {},
    optional={
        "name": TEXT,
        "description": TEXT | st.none(),
        "permissions": PERMISSIONS,
        "expires_at": EXPIRY,
    },
)
COMMANDS = [
    ("POST", "/api/v1/auth/register", USER),
    ("POST", "/api/v1/users", USER),
    ("PATCH", "/api/v1/users/me", PROFILE),
    ("PATCH", "/api/v1/users/{user_id}", PROFILE),
    ("POST", "/api/v1/api-keys", KEY),
    ("PATCH", "/api/v1/api-keys/{key_id}", KEY_CHANGE),
    (
        "POST",
        "/api/v1/api-keys/{key_id}/rotate",
        st.fixed_dictionaries({"grace_seconds": st.integers(0, 604800)}),
    ),
]


def test_every_accepted_command_is_projected(store: tuple[Components, Litestar]) -> None:
    components, app = store
    identity = components.identity
    admin = identity.register_user(
        username="root", email="root@example.com", password=PASSWORD, is_superuser=True
    )
    key = identity.issue_api_key(admin.id, name="admin", permissions={"*": True})
    target = identity.issue_api_key(admin.id, name="target", permissions={}).result.id
    ids = {"user_id": str(admin.id), "key_id": str(target)}
    answers: Counter[int] = Counter()

    with TestClient(app=app) as client:

        @given(data=st.data())
        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def send(data: Any) -> None:
            method, path, bodies = data.draw(st.sampled_from(COMMANDS))
            response = client.request(
                method, path.format(**ids), json=data.draw(bodies), headers={"X-API-Key": key.key}
            )
            assert response.status_code < 500, (method, path, response.text)
            answers[response.status_code] += 1

        send()

    head = identity.head_position()
    assert sum(count for status, count in answers.items() if status < 300) > 20, answers
    assert wait_for_position(components.engine, head, timeout=30), (positions(components.engine), head)
    assert all(position >= head for position in positions(components.engine).values())
