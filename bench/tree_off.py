"""Bench only: the ``ledgerline`` CLI (``python -m bench.tree_off serve``) whose appends do NOT
extend the log's Merkle tree, the "off" side of ``tree_commands_ratio`` (``bench.audit_tree``).

Not a setting of the product: the production recorders always extend the tree. Run as a module
(``-m``), this replaces the event store's recorder topic (``APPLICATION_RECORDER_TOPIC``, which
``Database.eventsourcing_env`` chooses) by ``TreeOffRecorder``: the group-commit recorder with a
``TreeAppender`` that writes nothing and reads nothing. Every other statement of a group is the
production one (BEGIN, table lock, NOTIFY, the saves, COMMIT). `serve` with
``LEDGERLINE_WORKERS`` > 1 starts its API processes with multiprocessing's
"spawn", which runs this module again in each as ``__mp_main__``: the patch applies there too.

A log written through it is no longer covered by its tree (its events are void leaves of the
next tree-extending append): the bench measures proofs and ``verify`` before it writes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from eventstore.audit_chain.merkle import CompactRange
from eventstore.audit_chain.records import StoredRecord
from eventstore.audit_chain.tree import TreeAppender
from eventstore.database import Database
from eventstore.group_commit import GroupCommitRecorder, OneSaveRecorder

TOPICS = {
    "eventstore.group_commit:GroupCommitRecorder": "bench.tree_off:TreeOffRecorder",
    "eventstore.group_commit:OneSaveRecorder": "bench.tree_off:TreeOffOneSaveRecorder",
}


class NoTree(TreeAppender):
    """Extends nothing: no node is read or written, the border is never asked for."""

    def extend(self, cursor: Any, border: CompactRange, records: Sequence[StoredRecord]) -> CompactRange:
        return border

    def ask_border(self, cursor: Any) -> None:
        return None

    def asked_border(self, cursor: Any) -> CompactRange:
        return CompactRange()


class TreeOffRecorder(GroupCommitRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tree = NoTree("%s")
        _built(self)


class TreeOffOneSaveRecorder(OneSaveRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tree = NoTree("%s")
        _built(self)


def _built(recorder: GroupCommitRecorder) -> None:
    """One line per recorder in the process's log: the bench checks every worker has one."""
    print(f"bench.tree_off: {type(recorder).__name__} in process {os.getpid()}", file=sys.stderr, flush=True)


def install() -> None:
    """Make every ``Database.eventsourcing_env`` of this process name the tree-off recorders."""
    original = Database.eventsourcing_env

    def without_tree(self: Database, **kwargs: Any) -> dict[str, str]:
        env = original(self, **kwargs)
        topic = env.get("APPLICATION_RECORDER_TOPIC", "")
        if topic not in TOPICS:
            raise RuntimeError(f"bench.tree_off knows no tree-off recorder for {topic!r}")
        env["APPLICATION_RECORDER_TOPIC"] = TOPICS[topic]
        return env

    Database.eventsourcing_env = without_tree  # type: ignore[method-assign]


if __name__ in ("__main__", "__mp_main__"):  # the entry point, or one of its spawned workers
    install()

if __name__ == "__main__":
    from ledgerline.cli import main

    main()
