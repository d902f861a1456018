"""The export's inclusion paths (``path_elements``, integer arithmetic over a page) are exactly the
proofs the Merkle module names (``inclusion_proof_nodes``, RFC 9162 2.1.3.1's recursion)."""

from __future__ import annotations

import random

from eventstore.audit_chain.merkle import NodeId, inclusion_proof_nodes, subtree_nodes
from projections.audit_log.export import RIGHT, path_elements


def as_nodes(index: int, size: int) -> list[tuple[NodeId, ...]]:
    return [
        subtree_nodes(start, size) if level == RIGHT else (NodeId(level, start),)
        for level, start in path_elements(index, size)
    ]


def test_every_leaf_of_every_small_tree() -> None:
    for size in range(1, 260):
        for index in range(size):
            assert as_nodes(index, size) == inclusion_proof_nodes(index, size), (index, size)


def test_leaves_of_large_trees() -> None:
    rng = random.Random(9162)
    for _ in range(5000):
        size = rng.randrange(1, 1 << 48)
        for index in (0, size - 1, rng.randrange(size)):
            assert as_nodes(index, size) == inclusion_proof_nodes(index, size), (index, size)
