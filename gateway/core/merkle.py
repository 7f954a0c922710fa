"""RFC 9162 §2.1 Merkle tree hashing, proofs and strict proof verification (SPEC §7.2). Pure: no I/O.

Leaf hash ``SHA-256(0x00 || entry)``, interior ``SHA-256(0x01 || left || right)``, the empty tree hashes
to ``SHA-256("")``. A tree of ``n`` leaves splits at ``k``, the largest power of two below ``n``.

Stored trees are addressed by *perfect subtrees*: ``(level, index)`` names the subtree of ``2**level``
leaves starting at leaf ``index * 2**level`` (level 0 is a leaf hash). Every hash a proof or a root
needs is either such a node or a fold of a few of them along the tree's right border, so proof
generation here is a *plan* (which nodes to read, how to fold them); the storage layer reads the nodes
in one query and calls :func:`fold_plan`.

Verification follows transparency-dev/merkle with the strict rules of the project's vectors
(``../shared/vectors/README.md``): a leaf hash and every proof hash are exactly 32 bytes, a proof has
exactly the length the tree shape needs, ``index < size``, and a consistency proof from size 0 is
invalid (even to size 0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_SIZE = (1 << 64) - 1

NodeId = tuple[int, int]  # (level, index): the perfect subtree of 2**level leaves at index * 2**level
# One proof element: the perfect subtrees whose fold (right to left) is that element's hash.
PlanItem = tuple[NodeId, ...]

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A Merkle proof or its inputs do not verify; the message says which check failed."""


def leaf_hash(entry: bytes) -> bytes:
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _largest_pow2_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (RFC 9162 §2.1.1), iteratively."""
    stack = CompactRange()
    for h in leaf_hashes:
        stack.append(h)
    return stack.root()


class CompactRange:
    """The right border of a growing tree: the perfect subtrees of ``[0, size)``, largest first.

    ``append`` returns the interior nodes it completed, so a store can persist every perfect subtree.
    """

    __slots__ = ("hashes", "levels", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        levels = [lvl for lvl in range(size.bit_length() - 1, -1, -1) if size >> lvl & 1]
        if len(levels) != len(nodes):
            raise ValueError(f"a compact range of size {size} needs {len(levels)} hashes, got {len(nodes)}")
        self.size = size
        self.levels: list[int] = levels
        self.hashes: list[bytes] = list(nodes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the completed interior nodes as ``(level, index, hash)``."""
        levels, hashes = self.levels, self.hashes
        new: list[tuple[int, int, bytes]] = []
        h, lvl, pos = leaf, 0, self.size
        while levels and levels[-1] == lvl:
            levels.pop()
            h = _sha256(b"\x01" + hashes.pop() + h).digest()
            lvl += 1
            pos >>= 1
            new.append((lvl, pos, h))
        levels.append(lvl)
        hashes.append(h)
        self.size += 1
        return new

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        hashes = self.hashes
        h = hashes[-1]
        for i in range(len(hashes) - 2, -1, -1):
            h = _sha256(b"\x01" + hashes[i] + h).digest()
        return h


def frontier_nodes(size: int) -> list[NodeId]:
    """The perfect subtrees that make up ``[0, size)``, largest (leftmost) first."""
    return _range_nodes(0, size)


def _range_nodes(lo: int, hi: int) -> list[NodeId]:
    """Decompose ``[lo, hi)`` into perfect subtrees, left to right. ``lo`` must be aligned to a power
    of two at least as large as any subtree taken, which holds for every range RFC 9162 splits off."""
    out: list[NodeId] = []
    while lo < hi:
        lvl = (hi - lo).bit_length() - 1
        out.append((lvl, lo >> lvl))
        lo += 1 << lvl
    return out


def inclusion_plan(index: int, size: int) -> list[PlanItem]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]) as a plan, lowest level first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not within a tree of size {size}")
    path: list[PlanItem] = []
    lo, n, m = 0, size, index
    while n > 1:
        k = _largest_pow2_below(n)
        if m < k:
            path.append(tuple(_range_nodes(lo + k, lo + n)))
            n = k
        else:
            path.append(tuple(_range_nodes(lo, lo + k)))
            lo, n, m = lo + k, n - k, m - k
    path.reverse()
    return path


def consistency_plan(size1: int, size2: int) -> list[PlanItem]:
    """RFC 9162 §2.1.4.1 PROOF(size1, D[0:size2]) as a plan. Requires ``0 < size1 <= size2``."""
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2} (needs 0 < old <= new)")
    proof: list[PlanItem] = []
    lo, n, m, b = 0, size2, size1, True
    while m != n:
        k = _largest_pow2_below(n)
        if m <= k:
            proof.append(tuple(_range_nodes(lo + k, lo + n)))
            n = k
        else:
            proof.append(tuple(_range_nodes(lo, lo + k)))
            lo, n, m, b = lo + k, n - k, m - k, False
    if not b:
        proof.append(tuple(_range_nodes(lo, lo + n)))
    proof.reverse()
    return proof


def plan_nodes(plan: Iterable[PlanItem]) -> set[NodeId]:
    return {node for item in plan for node in item}


def fold(hashes: Sequence[bytes]) -> bytes:
    """Fold perfect-subtree hashes (left to right order) into the hash of their union."""
    h = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        h = _sha256(b"\x01" + hashes[i] + h).digest()
    return h


def fold_plan(plan: Sequence[PlanItem], nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """Turn a plan into proof hashes, reading each node from ``nodes`` (KeyError names a missing one)."""
    return [fold([nodes[n] for n in item]) for item in plan]


# ---------------------------------------------------------------------------------------------------
# Verification (strict)


def _check_size(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SIZE:
        raise ProofError(f"{name} {value!r} is not an integer in 0..2^64-1")


def _check_hashes(proof: Sequence[bytes]) -> None:
    for i, h in enumerate(proof):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ProofError(f"proof hash {i} is not {HASH_SIZE} bytes")


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if (index >> i) & 1 == 0 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof. Raises ``ProofError`` on any malformed input."""
    _check_size("index", index)
    _check_size("size", size)
    if index >= size:
        raise ProofError(f"index {index} is beyond the tree size {size}")
    if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
        raise ProofError(f"leaf hash is not {HASH_SIZE} bytes")
    inner, border = _decomp_incl_proof(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, the tree shape needs {inner + border}")
    _check_hashes(proof)
    res = _chain_inner(leaf, proof[:inner], index)
    return _chain_border_right(res, proof[inner:])


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` is at ``index`` in the tree of ``size`` with ``root`` (RFC 9162 §2.1.3.2)."""
    calc = root_from_inclusion_proof(index, size, leaf, proof)
    if calc != root:
        raise ProofError(f"inclusion proof of index {index} does not lead to the root of size {size}")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree (size2, root2) extends (size1, root1) (RFC 9162 §2.1.4.2), strictly."""
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size2 < size1:
        raise ProofError(f"new size {size2} is smaller than old size {size1}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if len(proof) != 0:
            raise ProofError("equal sizes need an empty consistency proof")
        if root1 != root2:
            raise ProofError(f"two different roots for the same size {size1}")
        return
    if len(proof) == 0:
        raise ProofError("empty consistency proof between different sizes")
    _check_hashes(proof)
    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    if size1 == 1 << shift:
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofError(
            f"consistency proof has {len(proof)} hashes, sizes {size1}->{size2} need {start + inner + border}"
        )
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if hash1 != root1:
        raise ProofError(f"consistency proof does not lead to the old root of size {size1}")
    hash2 = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if hash2 != root2:
        raise ProofError(f"consistency proof does not lead to the new root of size {size2}")
