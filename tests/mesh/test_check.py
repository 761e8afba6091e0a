"""Tests of the broad phase and crossing test of vesseltree.mesh.check, and of the box listing
they share with the field (against brute force on small inputs)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vesseltree.mesh._field import _ragged_boxes
from vesseltree.mesh.check import _candidate_pairs, _orient, count_self_intersections


def _brute_pairs(lo, hi) -> set:
    n = len(lo)
    return {
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if np.all(lo[i] <= hi[j]) and np.all(lo[j] <= hi[i])
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_candidate_pairs_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 400
    lo = rng.uniform(0, 4, (n, 3))
    # mostly boxes under a cell, some spanning several cells, some degenerate (flat, points)
    ext = rng.uniform(0, 0.5, (n, 3)) * (rng.uniform(size=(n, 1)) < 0.9) + rng.uniform(
        0, 1.5, (n, 3)
    ) * (rng.uniform(size=(n, 1)) < 0.05)
    ext[:10, 0] = 0.0
    hi = lo + ext
    # boxes that touch exactly (a shared face) overlap too
    lo[20:30] = hi[30:40]
    hi[20:30] = np.maximum(hi[20:30], lo[20:30])
    pairs = _candidate_pairs(lo, hi, 0.4)
    got = [tuple(p) for p in pairs.tolist()]
    assert len(got) == len(set(got))  # each pair once
    assert all(i < j for i, j in got)
    assert set(got) == _brute_pairs(lo, hi)


def test_candidate_pairs_small_chunks_same_order():
    rng = np.random.default_rng(5)
    lo = rng.uniform(0, 2, (300, 3))
    hi = lo + rng.uniform(0, 0.3, (300, 3))
    whole = _candidate_pairs(lo, hi, 0.3)
    assert len(whole) > 100
    np.testing.assert_array_equal(_candidate_pairs(lo, hi, 0.3, chunk=7), whole)


def _brute_crossings(v, f, tol) -> set:
    """Pairs of faces without a shared vertex where an edge of one passes through the other,
    every pair tested (no broad phase, no early exits)."""
    i, j = np.triu_indices(len(f), 1)
    share = (f[i][:, :, None] == f[j][:, None, :]).any(axis=(1, 2))
    i, j = i[~share], j[~share]
    tri = v[f]
    hit = np.zeros(len(i), bool)
    for t1, t2 in ((tri[i], tri[j]), (tri[j], tri[i])):
        a, b, c = t2[:, 0], t2[:, 1], t2[:, 2]
        for k in range(3):
            s, e = t1[:, k], t1[:, (k + 1) % 3]
            o1, o2 = _orient(a, b, c, s), _orient(a, b, c, e)
            s1, s2, s3 = _orient(s, e, a, b), _orient(s, e, b, c), _orient(s, e, c, a)
            cross = ((o1 > tol) & (o2 < -tol)) | ((o1 < -tol) & (o2 > tol))
            inside = (np.minimum(np.minimum(s1, s2), s3) > tol) | (
                np.maximum(np.maximum(s1, s2), s3) < -tol
            )
            hit |= cross & inside
    return set(zip(i[hit].tolist(), j[hit].tolist()))


def test_self_intersections_match_brute_force():
    trimesh = pytest.importorskip("trimesh")
    rng = np.random.default_rng(3)
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    v0, f = np.asarray(sphere.vertices), np.asarray(sphere.faces, np.int64)
    assert count_self_intersections(v0, f) == 0
    # jitter the vertices until faces fold through each other
    v = v0 + rng.normal(0, 0.08, v0.shape)
    tol = 1e-12 * float(np.ptp(v, axis=0).max()) ** 3
    n, pairs = count_self_intersections(v, f, return_pairs=True)
    want = _brute_crossings(v, f, tol)
    assert len(want) > 0
    assert n == len(want)
    assert {tuple(p) for p in pairs.tolist()} == want


def test_ragged_boxes_match_loops():
    rng = np.random.default_rng(7)
    for span in (3, 6, 40):  # few shapes (one list per shape), and mostly distinct ones
        lo = rng.integers(-5, 5, (60, 3))
        hi = lo + rng.integers(-1, span, (60, 3))  # some empty boxes
        owner, coords = _ragged_boxes(lo, hi)
        want = [
            (b, p)
            for b in range(len(lo))
            for p in itertools.product(*(range(lo[b, i], hi[b, i] + 1) for i in range(3)))
        ]
        assert owner.tolist() == [b for b, _ in want]
        assert coords.tolist() == [list(p) for _, p in want]
        assert coords.dtype == lo.dtype
    owner, coords = _ragged_boxes(np.zeros((2, 3), np.int64), -np.ones((2, 3), np.int64))
    assert owner.size == 0 and coords.shape == (0, 3)
