"""State as of a version or a moment, over a long history (snapshots every 50 events): every
answer matches the state the user had right after that event."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import UserNotFoundError
from ledgerline.bootstrap import Components
from tests.integration.helpers import register

CHANGES = 230


def test_as_of_every_moment_matches_the_state_recorded_then(components: Components) -> None:
    identity = components.identity
    user_id = register(identity, "alice").id
    seen = {}  # version -> the time of its event
    for n in range(CHANGES):
        identity.update_user(user_id, full_name=f"Alice {n}")
    for event in identity.events.get(user_id):
        seen[event.originator_version] = event.timestamp
    names = {v: identity.get_user(user_id, version=v).full_name.value for v in seen}  # type: ignore[union-attr]
    assert names[len(seen)] == f"Alice {CHANGES - 1}"

    for version in [*list(seen)[::7], len(seen)]:
        moment = seen[version]
        assert identity.get_user_as_of(user_id, as_of=moment).version == version
        just_after = identity.get_user_as_of(user_id, as_of=moment + timedelta(microseconds=1))
        assert just_after.version >= version
        assert identity.get_user_as_of(user_id, version=version).full_name.value == names[version]  # type: ignore[union-attr]
    assert identity.get_user_as_of(user_id, as_of=seen[1] + timedelta(days=1)).version == len(seen)
    with pytest.raises(UserNotFoundError):
        identity.get_user_as_of(user_id, as_of=seen[1] - timedelta(microseconds=1))
    with pytest.raises(UserNotFoundError):
        identity.get_user_as_of(user_id, version=len(seen) + 1)
