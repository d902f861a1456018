"""``db init``: idempotent, safe when several processes run it at once, required before use."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from eventstore.schema import head_revision, is_initialised
from ledgerline.bootstrap import NotInitialisedError, build
from tests.conftest import settings_for


def test_init_twice_then_open_without_init(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(database_url, tmp_path)
    with pytest.raises(NotInitialisedError, match="ledgerline db init"):
        build(settings)
    for _ in range(2):
        build(settings, init=True).close()
    opened = build(settings)
    try:
        assert is_initialised(opened.engine)
        assert head_revision() == "0006"
    finally:
        opened.close()


def test_concurrent_init_on_postgres(pg_database: str, tmp_path: Path) -> None:
    settings = settings_for(pg_database, tmp_path)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def init() -> None:
        barrier.wait()
        try:
            build(settings, init=True).close()
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=init) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    opened = build(settings)
    opened.close()
