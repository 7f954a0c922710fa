"""RFC 9162 Merkle tree: every public vector through our verifiers, and proofs we generate against a
straightforward recursive implementation of the RFC's definitions."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import merkle
from gateway.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_plan,
    fold_plan,
    inclusion_plan,
    leaf_hash,
    node_hash,
    plan_nodes,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle"
INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))


def _b(s: str) -> bytes:
    return base64.b64decode(s)


def _proof(v: list[str] | None) -> list[bytes]:
    return [_b(h) for h in (v or [])]


def test_all_196_vectors_are_present():
    found = len(INCLUSION) + len(CONSISTENCY)
    assert found == 196, f"{VECTORS}: expected the 196 transparency-dev vectors beside the project, found {found}"


@pytest.mark.parametrize("path", INCLUSION, ids=lambda p: str(p.relative_to(VECTORS)))
def test_merkle_inclusion_vector(path: Path):
    v = json.loads(path.read_text())
    args = (v["leafIdx"], v["treeSize"], _b(v["leafHash"]), _proof(v["proof"]), _b(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=lambda p: str(p.relative_to(VECTORS)))
def test_merkle_consistency_vector(path: Path):
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], _proof(v["proof"]), _b(v["root1"]), _b(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --- reference implementation: RFC 9162 §2.1 written literally -------------------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return EMPTY_ROOT
    if len(d) == 1:
        return leaf_hash(d[0])
    k = _k(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


class _Tree:
    """All perfect-subtree hashes of a list of entries, as a store would keep them."""

    def __init__(self, entries: list[bytes]) -> None:
        self.cr = CompactRange()
        self.nodes: dict[tuple[int, int], bytes] = {}
        for i, e in enumerate(entries):
            h = leaf_hash(e)
            self.nodes[(0, i)] = h
            for lvl, idx, nh in self.cr.append(h):
                self.nodes[(lvl, idx)] = nh


def _entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def test_rfc_example_tree_of_seven():
    d = _entries(7)
    t = _Tree(d)
    assert t.cr.root() == mth(d)
    for m in range(7):
        plan = inclusion_plan(m, 7)
        assert fold_plan(plan, t.nodes) == path(m, d)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_generated_proofs_match_rfc_and_verify(n: int, data: st.DataObject):
    d = _entries(n)
    t = _Tree(d)
    roots = [mth(d[:s]) for s in range(n + 1)]
    assert t.cr.root() == roots[n]
    m = data.draw(st.integers(min_value=0, max_value=n - 1))
    incl = fold_plan(inclusion_plan(m, n), t.nodes)
    assert incl == path(m, d)
    verify_inclusion(m, n, leaf_hash(d[m]), incl, roots[n])
    s1 = data.draw(st.integers(min_value=1, max_value=n))
    cons = fold_plan(consistency_plan(s1, n), t.nodes)
    assert cons == subproof(s1, d, True)
    verify_consistency(s1, n, cons, roots[s1], roots[n])
    # every needed node is a stored perfect subtree within the tree
    for lvl, idx in plan_nodes(consistency_plan(s1, n)) | plan_nodes(inclusion_plan(m, n)):
        assert (idx + 1) << lvl <= n
    wrong = leaf_hash(b"not a root")
    with pytest.raises(ProofError):
        verify_consistency(s1, n, cons, roots[s1], wrong)
    with pytest.raises(ProofError):
        verify_consistency(s1, n, cons, wrong, roots[n])
    with pytest.raises(ProofError):
        verify_inclusion(m, n, leaf_hash(b"forged"), incl, roots[n])


def test_compact_range_resumes_from_stored_frontier():
    d = _entries(45)
    t = _Tree(d[:30])
    frontier = [t.nodes[n] for n in merkle.frontier_nodes(30)]
    cr = CompactRange(30, frontier)
    for e in d[30:]:
        cr.append(leaf_hash(e))
    assert cr.root() == mth(d)
    with pytest.raises(ValueError, match="needs 4 hashes"):
        CompactRange(30, frontier[:2])


def test_root_from_inclusion_refuses_short_leaf_and_bad_proof_hash():
    with pytest.raises(ProofError, match="leaf hash"):
        root_from_inclusion_proof(0, 1, b"x" * 31, [])
    with pytest.raises(ProofError, match="proof hash 0"):
        root_from_inclusion_proof(0, 2, b"x" * 32, [b"y" * 33])
    with pytest.raises(ProofError, match="beyond"):
        root_from_inclusion_proof(2, 2, b"x" * 32, [b"y" * 32])
