"""The direct constructions used to cut per-label overhead equal the scipy.sparse ones."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import factorized

from vesseltree.centerline import refine
from vesseltree.centerline.refine import smooth_on_graph, smoothing_matrix


def _paths(rng, n):
    """Random paths over n nodes, sharing nodes (junctions), with some short and repeated ones."""
    paths = []
    for _ in range(rng.integers(1, 8)):
        m = min(int(rng.integers(2, 12)), n)
        paths.append(rng.choice(n, size=m, replace=False))
    paths.append(np.array([0, 1, 0]))  # a node twice in one triple
    return paths


def _reference(positions, paths, weights, lam):
    """smooth_on_graph as built with scipy.sparse operators."""
    n = len(positions)
    rows, cols, vals = [], [], []
    r = 0
    for p in paths:
        if len(p) < 3:
            continue
        k = len(p) - 2
        rr = r + np.arange(k)
        rows += [rr, rr, rr]
        cols += [p[:-2], p[1:-1], p[2:]]
        vals += [np.ones(k), -2 * np.ones(k), np.ones(k)]
        r += k
    d = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, n)
    )
    a = (sp.diags(weights) + lam * (d.T @ d)).tocsc()
    solve = factorized(a)
    rhs = positions * weights[:, None]
    return a, np.stack([solve(rhs[:, i]) for i in range(3)], axis=1)


@pytest.mark.parametrize("dense_max", [384, 0])  # the direct and the scipy construction
def test_smoothing_matrix_and_solve_match_scipy_bit_for_bit(monkeypatch, dense_max):
    monkeypatch.setattr(refine, "_DENSE_SMOOTHING_MAX", dense_max)
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(3, 40))
        paths = _paths(rng, n)
        weights = rng.uniform(0.1, 3.0, n)
        weights[rng.integers(n)] = 1e6  # a pinned node
        lam = float(rng.choice([1.0, 2.5, 7.3]))
        pos = rng.normal(size=(n, 3)) * 10
        ref_a, ref_x = _reference(pos, paths, weights, lam)
        triples = np.concatenate(
            [np.stack([p[:-2], p[1:-1], p[2:]], 1) for p in paths if len(p) >= 3]
        )
        a = smoothing_matrix(triples.astype(np.int64), weights, lam)
        if dense_max:
            assert a.has_canonical_format
        # splu factorises the canonical form (it sums duplicates and sorts the indices first)
        a, ref_a = a.copy(), ref_a.copy()
        a.sum_duplicates()
        ref_a.sum_duplicates()
        assert np.array_equal(a.indptr, ref_a.indptr), trial
        assert np.array_equal(a.indices, ref_a.indices), trial
        assert np.array_equal(a.data, ref_a.data), trial
        assert np.array_equal(smooth_on_graph(pos, paths, weights, lam), ref_x), trial


def test_smooth_on_graph_without_triples_is_a_copy():
    pos = np.arange(6.0).reshape(2, 3)
    out = smooth_on_graph(pos, [np.array([0, 1])], np.ones(2), 3.0)
    assert np.array_equal(out, pos) and out is not pos


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("direct_max", [1 << 14, 0])  # built directly, through scipy
def test_pair_graph_matches_coo_to_csr(monkeypatch, symmetric, direct_max):
    from vesseltree.centerline import cleanup
    from vesseltree.centerline.cleanup import pair_graph

    monkeypatch.setattr(cleanup, "_PAIR_GRAPH_DIRECT_MAX", direct_max)

    rng = np.random.default_rng(1)
    for n in (1, 5, 60):
        a = rng.integers(0, n, 3 * n)
        b = rng.integers(0, n, 3 * n)
        ref = sp.coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n)).tocsr()
        if symmetric:
            ref = (ref + ref.T).tocsr()
        ref.sum_duplicates()
        g = pair_graph(a, b, n, symmetric=symmetric)
        g.sum_duplicates()
        assert np.array_equal(g.indptr, ref.indptr)
        assert np.array_equal(g.indices, ref.indices)
        assert g.has_canonical_format and np.all(g.data >= 1)


def test_graph_smoother_reused_equals_smooth_on_graph():
    from vesseltree.centerline.refine import graph_smoother

    rng = np.random.default_rng(2)
    paths = [np.arange(0, 12), np.array([5, 12, 13, 14]), np.array([14, 15])]
    weights = rng.uniform(0.5, 2.0, 16)
    smooth = graph_smoother(paths, weights, 1.5)
    for _ in range(3):  # one factorisation, several position sets
        pos = rng.normal(size=(16, 3))
        assert np.array_equal(smooth(pos), smooth_on_graph(pos, paths, weights, 1.5))
        assert not np.array_equal(smooth(pos), pos)


def test_cross_and_frames_match_numpy_bit_for_bit():
    from vesseltree.centerline.refine import _cross, frames

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    assert np.array_equal(_cross(a, b), np.cross(a, b))
    t = a / np.linalg.norm(a, axis=1, keepdims=True)
    u, w = frames(t)
    helper = np.zeros_like(t)
    helper[np.arange(len(t)), np.argmin(np.abs(t), axis=1)] = 1.0
    ref_u = np.cross(t, helper)
    ref_u /= np.linalg.norm(ref_u, axis=1, keepdims=True)
    assert np.array_equal(u, ref_u) and np.array_equal(w, np.cross(t, ref_u))


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_mask_components_dense_equals_sparse(monkeypatch, connectivity):
    from vesseltree.centerline import cleanup

    rng = np.random.default_rng(4)
    for density in (0.05, 0.2, 0.5):
        mask = rng.random((9, 11, 7)) < density
        sm = cleanup.SparseMask.from_dense(mask)
        ref = cleanup.sparse_components(sm.ijk, sm.lookup, connectivity)
        monkeypatch.setattr(cleanup, "_DENSE_LABEL_RATIO", 10**9)  # always dense
        k, lab = cleanup.mask_components(sm, connectivity)
        assert k == ref[0] and (k > 1 or density > 0.1)
        assert lab.dtype == np.int64 and np.array_equal(lab, ref[1])


def test_sampler_matches_trilinear_reference_inside_and_at_the_border():
    from scipy import ndimage as ndi

    from vesseltree.centerline.refine import Sampler

    rng = np.random.default_rng(5)
    field = (rng.random((9, 8, 7)) * 255).astype(np.uint8)
    affine = np.array([[0, 0, -0.7, 5], [0.5, 0, 0, -3], [0, 0.6, 0, 2], [0, 0, 0, 1.0]])
    vox = rng.uniform(-1.5, np.array(field.shape) + 0.5, size=(400, 3))  # many off the grid
    world = vox @ affine[:3, :3].T + affine[:3, 3]
    ref = ndi.map_coordinates(field.astype(np.float64) / 255, vox.T, order=1, mode="grid-constant")
    got = Sampler(field, affine, 1 / 255)(world)
    assert np.allclose(got, ref, atol=1e-5)
    coords = [world[:, i] for i in range(3)]
    assert np.array_equal(Sampler(field, affine, 1 / 255).at_coords(coords), got)
