"""RFC 9162 Merkle tree: the published test vectors, an independent reference built from the RFC's
recursive definitions, property tests (every proof verifies, every altered proof fails) and a
cross-check against pymerkle.

The vectors are the certificate-transparency ones (first in the C++ merkle_tree_test.cc), as
carried by github.com/transparency-dev/merkle at commit 417fb0c: testonly/constants.go (leaf
inputs, node hashes, roots, compact trees) and testdata/{inclusion,consistency}/*/happy-path.json
(proofs; their mutated probes are regenerated below under the same names).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.audit_chain.merkle import (
    EMPTY_ROOT,
    CompactRange,
    InMemoryNodes,
    NodeId,
    ProofError,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    subtree_nodes,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

LEAF_INPUTS = [
    b"",
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
NODE_HASHES = [  # [level][index]
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]
ROOTS = [  # by tree size, 0..8
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
N = NODE_HASHES
COMPACT_TREES = [
    [],
    [N[0][0]],
    [N[1][0]],
    [N[1][0], N[0][2]],
    [N[2][0]],
    [N[2][0], N[0][4]],
    [N[2][0], N[1][2]],
    [N[2][0], N[1][2], N[0][6]],
    [N[3][0]],
]
INCLUSION_VECTORS = [  # (leaf index, tree size, path)
    (0, 1, []),
    (0, 8, [N[0][1], N[1][1], N[2][1]]),
    (5, 8, [N[0][4], N[1][3], N[2][0]]),
    (2, 3, [N[1][0]]),
    (1, 5, [N[0][0], N[1][1], N[0][4]]),
]
CONSISTENCY_VECTORS = [  # (first, second, proof)
    (1, 1, []),
    (1, 8, [N[0][1], N[1][1], N[2][1]]),
    (6, 8, [N[1][2], N[1][3], N[2][0]]),
    (2, 5, [N[1][1], N[0][4]]),
    (6, 7, [N[1][2], N[0][6], N[2][0]]),
]
# testdata/inclusion/1/inserted-component.json's extra element.
INSERTED = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def vector_tree() -> InMemoryNodes:
    nodes = InMemoryNodes()
    for leaf in LEAF_INPUTS:
        nodes.append(leaf_hash(leaf))
    return nodes


# ---- An independent reference: RFC 9162 2.1.1, 2.1.3.1 and 2.1.4.1 as written, over leaves.


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _k(len(leaves))
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [ref_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], whole), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


# ---- A shared grown tree for the property tests: proofs for any earlier size come from it.

BIG = 700
BIG_LEAVES = tuple(i.to_bytes(4, "big") for i in range(BIG))
BIG_TREE = InMemoryNodes()
for _leaf in BIG_LEAVES:
    BIG_TREE.append(leaf_hash(_leaf))


@cache
def big_root(size: int) -> bytes:
    return ref_mth(BIG_LEAVES[:size])


def flip(value: bytes, position: int, bit: int = 0) -> bytes:
    changed = bytearray(value)
    changed[position % len(changed)] ^= 1 << bit
    return bytes(changed)


# ---- Published vectors.


def test_leaf_and_node_hashes_match_the_vectors() -> None:
    assert [leaf_hash(leaf) for leaf in LEAF_INPUTS] == NODE_HASHES[0]
    assert node_hash(N[0][0], N[0][1]) == N[1][0]
    tree = vector_tree()
    for level, hashes in enumerate(NODE_HASHES):
        assert tree.read_nodes([NodeId(level, i) for i in range(len(hashes))]) == hashes


@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_vectors(size: int) -> None:
    leaves = [leaf_hash(leaf) for leaf in LEAF_INPUTS[:size]]
    assert root_from_leaf_hashes(leaves) == ROOTS[size]
    assert vector_tree().root(size) == ROOTS[size]
    assert ref_mth(LEAF_INPUTS[:size]) == ROOTS[size]


def test_the_empty_tree_hashes_the_empty_string() -> None:
    assert EMPTY_ROOT == ROOTS[0] == CompactRange().root() == root_from_leaf_hashes([])


@pytest.mark.parametrize("size", range(9))
def test_compact_ranges_match_the_vectors(size: int) -> None:
    compact = CompactRange().extend(leaf_hash(leaf) for leaf in LEAF_INPUTS[:size])[0]
    assert list(compact.hashes) == COMPACT_TREES[size]
    assert compact.root() == ROOTS[size]
    assert CompactRange.read(size, vector_tree().read_nodes) == compact


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_the_vectors(index: int, size: int, path: list[bytes]) -> None:
    assert inclusion_proof(index, size, vector_tree().read_nodes) == path
    assert ref_path(index, LEAF_INPUTS[:size]) == path
    assert verify_inclusion(index, size, N[0][index], path, ROOTS[size])


def _inclusion_probes(index: int, size: int, path: list[bytes]) -> dict[str, tuple]:
    leaf, root = N[0][index], ROOTS[size]
    probes: dict[str, tuple] = {
        "leafIdx-plus-@1": (index + 1, size, leaf, path, root),
        "leafIdx-sub-@1": (index - 1, size, leaf, path, root),
        "leafIdx-XOR-@2": (index ^ 2, size, leaf, path, root),
        "treeSize-mul-@2": (index, size * 2, leaf, path, root),
        "treeSize-div-@2": (index, size // 2, leaf, path, root),
        "wrong-leaf": (index, size, leaf_hash(b"WrongLeaf"), path, root),
        "empty-root": (index, size, leaf, path, b""),
        "random-root": (index, size, leaf, path, hashlib.sha256(b"random").digest()),
        "preceding-garbage": (index, size, leaf, [b"", *path], root),
        "trailing-garbage": (index, size, leaf, [*path, b""], root),
        "preceding-root": (index, size, leaf, [root, *path], root),
        "trailing-root": (index, size, leaf, [*path, root], root),
        "empty-leaf": (index, size, b"", path, root),
    }
    for i in range(len(path)):
        modified = [*path[:i], flip(path[i], 0, 3), *path[i + 1 :]]
        probes[f"modified-proof[{i}]-bit-@3"] = (index, size, leaf, modified, root)
    if path:
        probes["removed-component"] = (index, size, leaf, path[:-1], root)
        probes["inserted-component"] = (index, size, leaf, [path[0], INSERTED, *path[1:]], root)
    return probes


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_every_probe_of_an_inclusion_vector_fails(index: int, size: int, path: list[bytes]) -> None:
    for name, probe in _inclusion_probes(index, size, path).items():
        if name == "leafIdx-XOR-@2" and size == 1:
            continue  # index 2 of a tree of 1: rejected as out of range, tested by leafIdx-plus
        assert not verify_inclusion(*probe), name


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_the_vectors(first: int, second: int, proof: list[bytes]) -> None:
    assert consistency_proof(first, second, vector_tree().read_nodes) == proof
    if first < second:
        assert ref_subproof(first, LEAF_INPUTS[:second], True) == proof
    assert verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_VECTORS)
def test_every_probe_of_a_consistency_vector_fails(first: int, second: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[first], ROOTS[second]
    probes: dict[str, tuple] = {
        "size1-plus-@1": (first + 1, second, r1, r2, proof),
        "size1-sub-@1": (first - 1, second, r1, r2, proof),
        "size1-XOR-@2": (first ^ 2, second, r1, r2, proof),
        "size2-mul-@2": (first, second * 2, r1, r2, proof),
        "size2-div-@2": (first, second // 2, r1, r2, proof),
        "wrong-root1": (first, second, hashlib.sha256(b"WrongRoot").digest(), r2, proof),
        "wrong-root2": (first, second, r1, hashlib.sha256(b"WrongRoot").digest(), proof),
        "swapped-roots": (first, second, r2, r1, proof),
        "preceding-garbage": (first, second, r1, r2, [b"", *proof]),
        "trailing-garbage": (first, second, r1, r2, [*proof, b""]),
        "preceding-root1": (first, second, r1, r2, [r1, *proof]),
        "preceding-root2": (first, second, r1, r2, [r2, *proof]),
        "trailing-root1": (first, second, r1, r2, [*proof, r1]),
        "trailing-root2": (first, second, r1, r2, [*proof, r2]),
    }
    if proof:
        probes["empty-proof"] = (first, second, r1, r2, [])
        probes["truncated-proof"] = (first, second, r1, r2, proof[:-1])
        probes["preceding-proof-@0"] = (first, second, r1, r2, [proof[0], *proof])
    for i in range(len(proof)):
        modified = [*proof[:i], flip(proof[i], 0, 4), *proof[i + 1 :]]
        probes[f"modified-proof@{i}-bit-@4"] = (first, second, r1, r2, modified)
    for name, probe in probes.items():
        if name == "swapped-roots" and first == second:
            continue
        assert not verify_consistency(*probe), name


DONT_CARE_1, DONT_CARE_2 = b"don't care 1", b"don't care 2"


@pytest.mark.parametrize(
    ("first", "second", "root1", "root2", "proof", "valid"),
    [  # testdata/consistency/additional/*.json
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),  # from the empty tree: nothing to prove
        (0, 0, EMPTY_ROOT, DONT_CARE_2, [], False),
        (1, 1, EMPTY_ROOT, DONT_CARE_2, [], False),
        (2, 1, DONT_CARE_1, DONT_CARE_2, [], False),
        (1, 0, DONT_CARE_1, DONT_CARE_2, [], False),
        (0, 1, DONT_CARE_1, DONT_CARE_2, [], False),
        (0, 1, EMPTY_ROOT, DONT_CARE_2, [], False),
        (1, 1, N[0][0], N[0][0], [], True),
        (1, 1, DONT_CARE_1, DONT_CARE_2, [], False),
        (1, 2, DONT_CARE_1, DONT_CARE_2, [], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        # Ledgerline's convention where the RFC's algorithm (0 < first < second) does not apply:
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 5, EMPTY_ROOT, ROOTS[5], [], True),
        (0, 5, DONT_CARE_1.ljust(32, b"."), ROOTS[5], [], False),
    ],
)
def test_consistency_edge_cases(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes], valid: bool
) -> None:
    assert verify_consistency(first, second, root1, root2, proof) is valid


def test_inclusion_edge_cases() -> None:
    single = h("0d3aed023148ffd2a259fbd0cdc7fb3cf975658760d3775b82af6f90aacc2dfc")
    assert verify_inclusion(0, 1, single, [], single)  # single-entry/matching-root-and-leaf
    assert not verify_inclusion(0, 1, b"", [], single)
    assert not verify_inclusion(0, 1, single, [], b"")
    assert not verify_inclusion(0, 0, single, [], EMPTY_ROOT)  # nothing is in the empty tree


# ---- Node addressing, the compact range, the node source.


def test_node_ids_cover_aligned_leaf_ranges() -> None:
    assert (NodeId(3, 2).start, NodeId(3, 2).end) == (16, 24)
    assert subtree_nodes(0, 7) == (NodeId(2, 0), NodeId(1, 2), NodeId(0, 6))
    assert subtree_nodes(8, 12) == (NodeId(2, 2),)
    for start, end in [(3, 5), (2, 5), (1, 3), (0, 0), (-2, 2)]:
        with pytest.raises(ProofError):
            subtree_nodes(start, end)


def test_appending_a_leaf_creates_the_subtrees_it_completes() -> None:
    compact = CompactRange().extend(N[0][:7])[0]
    grown, created = compact.append(N[0][7])
    assert created == [
        (NodeId(0, 7), N[0][7]),
        (NodeId(1, 3), N[1][3]),
        (NodeId(2, 1), N[2][1]),
        (NodeId(3, 0), N[3][0]),
    ]
    assert grown.hashes == (N[3][0],) and grown.node_ids == (NodeId(3, 0),)
    assert compact.size == 7, "the original range is left as it was"


@given(st.integers(min_value=0, max_value=BIG))
def test_the_compact_range_is_small_and_round_trips(size: int) -> None:
    compact = CompactRange.read(size, BIG_TREE.read_nodes)
    assert len(compact.hashes) <= size.bit_length()
    assert compact.root() == big_root(size)
    assert CompactRange.from_bytes(size, compact.to_bytes()) == compact


def test_a_compact_range_refuses_the_wrong_number_of_hashes() -> None:
    with pytest.raises(ValueError):
        CompactRange(3, (N[1][0],))
    with pytest.raises(ValueError):
        CompactRange.from_bytes(2, N[1][0] + N[0][2])
    with pytest.raises(ValueError):
        CompactRange(1, (b"short",))
    with pytest.raises(ValueError):
        CompactRange().append(b"short")


def test_nodes_not_yet_complete_cannot_be_read() -> None:
    tree = vector_tree()
    with pytest.raises(KeyError):
        tree.node(NodeId(0, 8))
    with pytest.raises(KeyError):
        tree.node(NodeId(4, 0))
    with pytest.raises(ProofError):
        inclusion_proof(8, 8, tree.read_nodes)
    with pytest.raises(ProofError):
        consistency_proof(9, 8, tree.read_nodes)


def counting(reader: Callable[[Sequence[NodeId]], list[bytes]]) -> tuple[list[int], Callable]:
    calls: list[int] = []

    def read(ids: Sequence[NodeId]) -> list[bytes]:
        calls.append(len(ids))
        return reader(ids)

    return calls, read


@given(st.data())
def test_a_proof_reads_few_nodes_in_one_batch(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=BIG))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    first = data.draw(st.integers(min_value=0, max_value=size))
    bound = 2 * size.bit_length() + 1
    calls, read = counting(BIG_TREE.read_nodes)
    inclusion_proof(index, size, read)
    consistency_proof(first, size, read)
    assert all(count <= bound for count in calls)
    assert len(calls) <= 2
    assert sum(len(e) for e in inclusion_proof_nodes(index, size)) <= bound
    assert sum(len(e) for e in consistency_proof_nodes(first, size)) <= bound


@given(st.integers(min_value=1, max_value=1 << 62), st.data())
def test_proofs_name_only_complete_subtrees_and_stay_logarithmic(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    first = data.draw(st.integers(min_value=0, max_value=size))
    for plan in (inclusion_proof_nodes(index, size), consistency_proof_nodes(first, size)):
        nodes = [node for element in plan for node in element]
        assert all(node.end <= size for node in nodes), "a node past the tree's end is not stored yet"
        assert len(nodes) <= 2 * size.bit_length() + 1
        assert len(plan) <= size.bit_length() + 1


def test_a_node_source_that_answers_wrongly_is_refused() -> None:
    with pytest.raises(ProofError):
        inclusion_proof(0, 8, lambda ids: [b"x" * 32])
    with pytest.raises(ProofError):
        tree_root(3, lambda ids: [b"short"] * len(ids))


# ---- Properties over many sizes (the tree of 700 leaves serves every earlier size).

sizes = st.integers(min_value=1, max_value=BIG)


@settings(max_examples=150)
@given(st.data())
def test_every_inclusion_proof_verifies_and_matches_the_rfc(data: st.DataObject) -> None:
    size = data.draw(sizes)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    path = inclusion_proof(index, size, BIG_TREE.read_nodes)
    assert path == ref_path(index, BIG_LEAVES[:size])
    assert tree_root(size, BIG_TREE.read_nodes) == big_root(size)
    assert verify_inclusion(index, size, leaf_hash(BIG_LEAVES[index]), path, big_root(size))


@settings(max_examples=150)
@given(st.data())
def test_any_altered_inclusion_proof_fails(data: st.DataObject) -> None:
    size = data.draw(sizes)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    leaf, root = leaf_hash(BIG_LEAVES[index]), big_root(size)
    path = inclusion_proof(index, size, BIG_TREE.read_nodes)
    byte, bit = data.draw(st.integers(0, 31)), data.draw(st.integers(0, 7))
    for i in range(len(path)):
        altered = [*path[:i], flip(path[i], byte, bit), *path[i + 1 :]]
        assert not verify_inclusion(index, size, leaf, altered, root)
    assert not verify_inclusion(index, size, flip(leaf, byte, bit), path, root)
    assert not verify_inclusion(index, size, leaf, path, flip(root, byte, bit))
    assert not verify_inclusion(index, size, leaf, [*path, leaf], root)
    if path:
        assert not verify_inclusion(index, size, leaf, path[:-1], root)
    if path[::-1] != path:
        assert not verify_inclusion(index, size, leaf, path[::-1], root)
    other = data.draw(st.integers(min_value=0, max_value=size - 1).filter(lambda i: i != index))
    if size > 1:
        assert not verify_inclusion(other, size, leaf, path, root)


@settings(max_examples=150)
@given(st.data())
def test_every_consistency_proof_verifies_and_matches_the_rfc(data: st.DataObject) -> None:
    second = data.draw(sizes)
    first = data.draw(st.integers(min_value=0, max_value=second))
    proof = consistency_proof(first, second, BIG_TREE.read_nodes)
    if 0 < first < second:
        assert proof == ref_subproof(first, BIG_LEAVES[:second], True)
    else:
        assert proof == []
    assert verify_consistency(first, second, big_root(first), big_root(second), proof)


@settings(max_examples=150)
@given(st.data())
def test_any_altered_consistency_proof_fails(data: st.DataObject) -> None:
    second = data.draw(st.integers(min_value=2, max_value=BIG))
    first = data.draw(st.integers(min_value=1, max_value=second - 1))
    r1, r2 = big_root(first), big_root(second)
    proof = consistency_proof(first, second, BIG_TREE.read_nodes)
    byte, bit = data.draw(st.integers(0, 31)), data.draw(st.integers(0, 7))
    for i in range(len(proof)):
        altered = [*proof[:i], flip(proof[i], byte, bit), *proof[i + 1 :]]
        assert not verify_consistency(first, second, r1, r2, altered)
    assert not verify_consistency(first, second, flip(r1, byte, bit), r2, proof)
    assert not verify_consistency(first, second, r1, flip(r2, byte, bit), proof)
    assert not verify_consistency(first, second, r1, r2, proof[:-1])
    assert not verify_consistency(first, second, r1, r2, [*proof, r1])
    # A log that rewrote, dropped or reordered a leaf before `first` cannot prove it extends r1.
    forged = list(BIG_LEAVES[:second])
    victim = data.draw(st.integers(min_value=0, max_value=first - 1))
    forged[victim] = b"rewritten"
    forged_tree = InMemoryNodes()
    for leaf in forged:
        forged_tree.append(leaf_hash(leaf))
    forged_proof = consistency_proof(first, second, forged_tree.read_nodes)
    assert not verify_consistency(first, second, r1, forged_tree.root(), forged_proof)


# ---- Cross-check against an independent implementation (pymerkle, RFC 9162 hashing).


@settings(max_examples=60)
@given(st.data())
def test_pymerkle_agrees_on_roots_and_inclusion_paths(data: st.DataObject) -> None:
    pymerkle = pytest.importorskip("pymerkle")
    leaves = data.draw(st.lists(st.binary(max_size=8), min_size=1, max_size=80))
    theirs = pymerkle.InmemoryTree(algorithm="sha256")
    ours = InMemoryNodes()
    for leaf in leaves:
        theirs.append_entry(leaf)
        ours.append(leaf_hash(leaf))
    size = data.draw(st.integers(min_value=1, max_value=len(leaves)))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    assert theirs.get_root(size) == ours.root(size)
    path = [bytes.fromhex(x) for x in theirs.prove_inclusion(index + 1, size).serialize()["path"]]
    assert path[0] == leaf_hash(leaves[index])
    assert path[1:] == inclusion_proof(index, size, ours.read_nodes)
    first = data.draw(st.integers(min_value=1, max_value=size))
    proof = theirs.prove_consistency(first, size)
    pymerkle.verify_consistency(ours.root(first), ours.root(size), proof)  # raises when it disagrees
