"""What a projection is: a named read model of a given shape, fed a batch of events at a time.

Each generation of a projection has its own physical tables (``users_g3``); queries read a view
with the plain name (``users``) that points at the live generation, so a rebuild can fill a new
generation while the old one serves, then switch the view in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Mapper
from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection

from eventstore.personal_data import Sealer


@dataclass(frozen=True)
class Positioned:
    """An event and its position in the application's notification log: the domain event, or
    the stored event for a projection that ``reads_stored``."""

    position: int
    event: Any


class Projection(Protocol):
    name: str
    shape: int  # bump when the tables' definition changes: needs a rebuild
    topics: frozenset[str]
    # False: ``apply`` gets decoded domain events. True: it gets the stored events (topic,
    # originator, version, state bytes) and reads what it needs from them itself.
    reads_stored: bool

    def define_tables(self, metadata: MetaData, generation: int) -> list[Table]:
        """This generation's tables; the first is the one the view shows."""
        ...

    def apply(self, conn: Connection, tables: Sequence[Table], events: Sequence[Positioned]) -> None:
        """Write the effect of ``events`` (in position order) inside the caller's transaction."""
        ...


def table_name(base: str, generation: int) -> str:
    return f"{base}_g{generation}"


@dataclass
class ProjectionContext:
    """What handlers may use: sealing personal data for read tables; the application's mapper
    (set once the application is built), for the rare stored event that needs upcasting."""

    sealer: Sealer
    mapper: Mapper[UUID] | None = None
