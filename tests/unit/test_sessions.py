"""Login sessions stored before they recorded the user's version still load, and are ordered
against password changes by full-precision times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from domain.sessions import Session
from domain.users import User


def test_a_session_stored_without_the_users_version_loads_and_falls_back_to_times() -> None:
    user = User.register(user_id=uuid4(), username="alice", email="a@example.com", password_hash="h1")
    started = Session.start(
        session_id=uuid4(), user_id=user.id, user_version=user.version, refresh_digest="d",
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )  # fmt: skip
    (event,) = started.collect_events()
    stored = dict(vars(event))
    del stored["user_version"]  # as events stored before the field existed
    old_event = object.__new__(type(event))
    object.__setattr__(old_event, "__dict__", stored)
    session = old_event.mutate(None)
    assert isinstance(session, Session) and session.user_version is None and session.user_id == user.id
    assert user.accepts_session(started_at_version=session.user_version, started_on=session.created_on)
    user.change_password("h2")
    assert not user.accepts_session(started_at_version=session.user_version, started_on=session.created_on)
