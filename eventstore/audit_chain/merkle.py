"""RFC 9162 (Certificate Transparency v2, section 2.1) Merkle tree hashing over SHA-256.

    leaf hash   = SHA-256(0x00 || leaf)
    node hash   = SHA-256(0x01 || left || right)
    MTH({})     = SHA-256("")
    MTH(D[0:n]) = node_hash(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

Node addressing (C2SP tlog-tiles compatible): ``NodeId(level, index)`` is the root of the
perfect subtree over the leaves ``[index * 2**level, (index + 1) * 2**level)``. Level 0 holds
the leaf hashes (``NodeId(0, i)`` is leaf ``i``). Every perfect subtree of the tree has exactly
one id and never changes once its last leaf is appended, so nodes can be stored append-only.
A tlog-tiles tile ``(l, n)`` holds the nodes ``NodeId(8 * l, n * 256 + i)`` for ``i`` in 0..255;
levels in between are recomputed from a tile's hashes.

Proof generation never sees the leaves: it names the perfect subtrees it needs
(``inclusion_proof_nodes``, ``consistency_proof_nodes``: at most about 2 log2(n) ids), reads
their hashes in one batch through a ``NodeReader`` and folds them. The verification functions
follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step: they are what an auditor runs offline.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


@dataclass(frozen=True, order=True)
class NodeId:
    """The perfect subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``."""

    level: int
    index: int

    def __post_init__(self) -> None:
        if self.level < 0 or self.index < 0:
            raise ValueError("a node's level and index are non-negative")

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


NodeReader = Callable[[Sequence[NodeId]], Sequence[bytes]]
"""Reads the hashes of the given perfect subtrees, in the order asked (storage: tiles, rows)."""


class ProofError(ValueError):
    """A proof asked for sizes or indexes that do not exist, or a node source answered wrongly."""


def _largest_power_of_two_below(n: int) -> int:
    # For n >= 2: the k of RFC 9162, the largest power of two strictly smaller than n.
    return 1 << ((n - 1).bit_length() - 1)


def _fold(hashes: Sequence[bytes]) -> bytes:
    # MTH of consecutive perfect subtrees listed largest (leftmost) first: right to left.
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def subtree_nodes(start: int, end: int) -> tuple[NodeId, ...]:
    """The perfect subtrees whose fold is MTH(D[start:end]), largest first.

    Defined where RFC 9162's recursion can reach: ``start`` a multiple of the smallest power of
    two >= ``end - start`` (always true for ``start == 0``, and for every range a proof names).
    """
    size = end - start
    if start < 0 or size <= 0 or start % (1 << (size - 1).bit_length()):
        raise ProofError(f"[{start}, {end}) is not a subtree of an RFC 9162 tree")
    ids: list[NodeId] = []
    position = start
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            ids.append(NodeId(level, position >> level))
            position += 1 << level
    return tuple(ids)


@dataclass(frozen=True)
class CompactRange:
    """The right border of the tree of ``size`` leaves: the roots of its perfect subtrees, largest
    first (one per bit set in ``size``, so at most log2(size) + 1 hashes). It is all the state
    needed to append a leaf in O(log n) and to give the root; it is immutable, so a rolled-back
    transaction leaves the caller's copy untouched."""

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError("a compact range holds one hash per bit set in its size")
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise ValueError(f"hashes are {HASH_SIZE} bytes")

    @property
    def node_ids(self) -> tuple[NodeId, ...]:
        return subtree_nodes(0, self.size) if self.size else ()

    def root(self) -> bytes:
        return _fold(self.hashes) if self.hashes else EMPTY_ROOT

    def append(self, leaf: bytes) -> tuple[CompactRange, list[tuple[NodeId, bytes]]]:
        """The range one leaf hash longer, and the perfect subtrees that leaf completed (the
        leaf itself first, then each parent up to the largest new node): what storage keeps."""
        return self.extend((leaf,))

    def extend(self, leaves: Iterable[bytes]) -> tuple[CompactRange, list[tuple[NodeId, bytes]]]:
        """The range after these leaf hashes, and every subtree they completed, in order."""
        size, hashes = self.size, list(self.hashes)
        created: list[tuple[NodeId, bytes]] = []
        for leaf in leaves:
            if len(leaf) != HASH_SIZE:
                raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
            created.append((NodeId(0, size), leaf))
            current, level = leaf, 0
            while size >> level & 1:  # each completed pair merges, as in binary addition
                current = node_hash(hashes.pop(), current)
                level += 1
                created.append((NodeId(level, size >> level), current))
            hashes.append(current)
            size += 1
        return CompactRange(size, tuple(hashes)), created

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        if len(data) != HASH_SIZE * size.bit_count():
            raise ValueError("stored compact range does not match its size")
        return cls(size, tuple(data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)))

    @classmethod
    def read(cls, size: int, read_nodes: NodeReader) -> CompactRange:
        """The compact range of an earlier (or the current) size, from stored nodes."""
        return cls(size, tuple(_read(read_nodes, subtree_nodes(0, size)))) if size else cls()


def root_from_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    return CompactRange().extend(leaves)[0].root()


def _read(read_nodes: NodeReader, ids: Sequence[NodeId]) -> list[bytes]:
    hashes = list(read_nodes(ids)) if ids else []
    if len(hashes) != len(ids) or any(len(h) != HASH_SIZE for h in hashes):
        raise ProofError("the node source did not answer one hash per node asked")
    return hashes


def inclusion_proof_nodes(index: int, size: int) -> list[tuple[NodeId, ...]]:
    """PATH(index, D[0:size]) of RFC 9162 2.1.3.1 as node ids: one tuple per proof element, whose
    fold is that element (a single perfect subtree, except at most one on the right border)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    siblings: list[tuple[NodeId, ...]] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            siblings.append(subtree_nodes(start + k, end))
            end = start + k
        else:
            siblings.append(subtree_nodes(start, start + k))
            start += k
    siblings.reverse()  # PATH(...) : MTH(sibling): the deepest sibling comes first
    return siblings


def consistency_proof_nodes(first: int, second: int) -> list[tuple[NodeId, ...]]:
    """PROOF(first, D[0:second]) of RFC 9162 2.1.4.1 as node ids (empty when ``first`` is 0 or
    equals ``second``: there is nothing to prove)."""
    if not 0 <= first <= second:
        raise ProofError(f"tree {first} cannot be a prefix of tree {second}")
    if first in (0, second):
        return []
    siblings: list[tuple[NodeId, ...]] = []
    start, size, m, whole = 0, second, first, True
    while m < size:
        k = _largest_power_of_two_below(size)
        if m <= k:
            siblings.append(subtree_nodes(start + k, start + size))
            size = k
        else:
            siblings.append(subtree_nodes(start, start + k))
            start, size, m, whole = start + k, size - k, m - k, False
    if not whole:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        siblings.append(subtree_nodes(start, start + size))
    siblings.reverse()
    return siblings


def _resolve(elements: list[tuple[NodeId, ...]], read_nodes: NodeReader) -> list[bytes]:
    wanted = sorted({node for element in elements for node in element})
    known = dict(zip(wanted, _read(read_nodes, wanted), strict=True))
    return [_fold([known[node] for node in element]) for element in elements]


def inclusion_proof(index: int, size: int, read_nodes: NodeReader) -> list[bytes]:
    return _resolve(inclusion_proof_nodes(index, size), read_nodes)


def consistency_proof(first: int, second: int, read_nodes: NodeReader) -> list[bytes]:
    return _resolve(consistency_proof_nodes(first, second), read_nodes)


def tree_root(size: int, read_nodes: NodeReader) -> bytes:
    """MTH(D[0:size]) from stored nodes, for any size up to the current one."""
    return CompactRange.read(size, read_nodes).root()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def root_from_inclusion_proof(
    leaf_index: int, tree_size: int, leaf: bytes, inclusion_path: Sequence[bytes]
) -> bytes | None:
    """RFC 9162 2.1.3.2 steps 1-5 up to the comparison: the root the path leads to, or None
    when the path cannot be a proof for that index and size."""
    if not (_is_hash(leaf) and all(_is_hash(p) for p in inclusion_path)):
        return None
    # 1. If leaf_index >= tree_size, fail.
    if not 0 <= leaf_index < tree_size:
        return None
    # 2. fn = leaf_index, sn = tree_size - 1.  3. r = hash.
    fn, sn, r = leaf_index, tree_size - 1, leaf
    # 4. For each value p in the inclusion_path array:
    for p in inclusion_path:
        if sn == 0:  # a. If sn is 0, stop and fail.
            return None
        if fn & 1 or fn == sn:  # b. If LSB(fn) is set, or fn equals sn:
            r = node_hash(p, r)  # i. r = HASH(0x01 || p || r)
            if not fn & 1:  # ii. shift until LSB(fn) is set or fn is 0
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:  # c. Otherwise r = HASH(0x01 || r || p)
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1  # d. right-shift both once
    # 5. sn must be 0 (then r is compared with the root).
    return r if sn == 0 else None


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, inclusion_path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does ``inclusion_path`` prove leaf hash ``leaf`` at ``leaf_index`` in
    the tree of ``tree_size`` leaves whose root is ``root``?"""
    computed = root_from_inclusion_proof(leaf_index, tree_size, leaf, inclusion_path)
    return computed is not None and _is_hash(root) and hmac.compare_digest(computed, root)


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, consistency_path: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: does ``consistency_path`` prove the tree ``second_hash`` of ``second``
    leaves extends the tree ``first_hash`` of ``first`` leaves?

    The RFC defines the algorithm for 0 < first < second. Outside it: equal sizes need an empty
    path and equal roots; the empty tree (first = 0, root SHA-256("")) is a prefix of every tree
    and needs an empty path."""
    if not (_is_hash(first_hash) and _is_hash(second_hash)):
        return False
    if not all(_is_hash(c) for c in consistency_path) or not 0 <= first <= second:
        return False
    if first == second:
        return not consistency_path and hmac.compare_digest(first_hash, second_hash)
    if first == 0:
        return not consistency_path and hmac.compare_digest(first_hash, EMPTY_ROOT)
    # 1. If consistency_path is empty, fail.
    if not consistency_path:
        return False
    path = list(consistency_path)
    # 2. If first is an exact power of 2, prepend first_hash.
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    # 3. fn = first - 1, sn = second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, right-shift fn and sn until it is not.
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # 5. fr = sr = the first value of the path.
    fr = sr = path[0]
    # 6. For each subsequent value c:
    for c in path[1:]:
        if sn == 0:  # a. If sn is 0, stop and fail.
            return False
        if fn & 1 or fn == sn:  # b. If LSB(fn) is set, or fn equals sn:
            fr = node_hash(c, fr)  # i.
            sr = node_hash(c, sr)  # ii.
            if not fn & 1:  # iii. shift until LSB(fn) is set or fn is 0
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:  # c. Otherwise sr = HASH(0x01 || sr || c)
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1  # d. right-shift both once
    # 7. fr must equal first_hash, sr second_hash, and sn be 0.
    return sn == 0 and hmac.compare_digest(fr, first_hash) and hmac.compare_digest(sr, second_hash)


class InMemoryNodes:
    """Every perfect subtree of a growing tree, kept in memory: the node source of the tests, and
    the shape a stored node table takes (one row per ``NodeId``, written as leaves arrive)."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = []
        self.compact = CompactRange()

    @property
    def size(self) -> int:
        return self.compact.size

    def append(self, leaf: bytes) -> list[tuple[NodeId, bytes]]:
        self.compact, created = self.compact.append(leaf)
        for node, value in created:
            if node.level == len(self._levels):
                self._levels.append([])
            self._levels[node.level].append(value)
        return created

    def node(self, node: NodeId) -> bytes:
        level = self._levels[node.level] if node.level < len(self._levels) else []
        if node.index >= len(level):
            raise KeyError(node)
        return level[node.index]

    def read_nodes(self, ids: Sequence[NodeId]) -> list[bytes]:
        return [self.node(node) for node in ids]

    def root(self, size: int | None = None) -> bytes:
        return self.compact.root() if size is None else tree_root(size, self.read_nodes)
