"""Issue 12: after an upgrade that changes a read table (audit_log's MACs, shape 3), PostgreSQL
serves the old generation until an operator rebuilds it; its reads are a 503 saying so, not a 500."""

from __future__ import annotations

import sqlalchemy.exc
from psycopg.errors import UndefinedColumn

from api.problems import INTERNAL, READ_MODEL_OUTDATED, problem_for


def test_a_column_the_live_table_lacks_is_an_outdated_read_model() -> None:
    error = sqlalchemy.exc.ProgrammingError(
        "SELECT mac ...", {}, UndefinedColumn("column mac does not exist")
    )
    assert problem_for(error) is READ_MODEL_OUTDATED and READ_MODEL_OUTDATED.status == 503


def test_other_programming_errors_stay_internal() -> None:
    assert problem_for(sqlalchemy.exc.ProgrammingError("SELECT", {}, ValueError("x"))) is INTERNAL
