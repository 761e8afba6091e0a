"""voxelize: exact round-cone unions on any affine, partial volume, grid choice, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt, label, map_coordinates

from vesseltree import EmptyInputError, InvalidInputError, VesselGraph, Volume
from vesseltree.synth import cylinder, loop, random_tree, touching_tubes, voxelize, y_bifurcation


def _rotation(angles_deg) -> np.ndarray:
    out = np.eye(3)
    for axis, a in enumerate(np.radians(angles_deg)):
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def _general_affine() -> np.ndarray:
    """Rotation x anisotropic scale x shear, with an offset."""
    aff = np.eye(4)
    shear = np.array([[1.0, 0.15, 0.0], [0.0, 1.0, -0.1], [0.0, 0.0, 1.0]])
    aff[:3, :3] = _rotation([20.0, 35.0, -50.0]) @ np.diag([0.4, 0.55, 0.7]) @ shear
    aff[:3, 3] = [5.0, -3.0, 2.0]
    return aff


def _all_world(vol: Volume) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in vol.shape], indexing="ij"), axis=-1)
    return vol.voxel_to_world(ijk.reshape(-1, 3)).reshape(*vol.shape, 3)


def _hull_distance(p: np.ndarray, a, b, ra, rb) -> np.ndarray:
    """Brute force: min over t of |p - c(t)| - r(t), the swept-sphere definition of a round cone.

    The function is convex in t (a norm of an affine function minus a linear one), so a
    vectorised golden-section search finds the minimum.
    """

    def f(t):
        c = a + t[:, None] * (b - a)
        return np.linalg.norm(p - c, axis=1) - (ra + t * (rb - ra))

    lo, hi = np.zeros(len(p)), np.ones(len(p))
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(60):
        m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        left = f(m1) < f(m2)
        hi = np.where(left, m2, hi)
        lo = np.where(left, lo, m1)
    return np.minimum(f(0.5 * (lo + hi)), np.minimum(f(np.zeros(len(p))), f(np.ones(len(p)))))


def test_edt_at_truth_nodes_matches_radius_on_anisotropic_grid():
    g = random_tree(seed=11, n_branches=41)
    vol = voxelize(g, spacing=(0.5, 0.5, 0.8))
    assert vol.data.dtype == bool and vol.meta["truth"] is g
    assert np.allclose(vol.spacing, [0.5, 0.5, 0.8])
    edt = distance_transform_edt(vol.data, sampling=vol.spacing)
    ijk = vol.world_to_voxel(g.positions)
    at_nodes = map_coordinates(edt, ijk.T, order=1)
    err = np.abs(at_nodes - g.radii)
    assert err.max() <= vol.spacing.max(), f"worst EDT-vs-radius error {err.max():.3f} mm"
    assert abs(np.median(at_nodes - g.radii)) < 0.25


def test_rotated_sheared_anisotropic_cylinder_is_exact():
    c = cylinder(20.0, 2.0, start=(1.0, -2.0, 3.0), direction=(1.0, 2.0, 0.5))
    aff = _general_affine()
    vol = voxelize(c, affine=aff)
    a, d = np.array(c.meta["start"]), np.array(c.meta["direction"])
    w = _all_world(vol)
    t = np.clip((w - a) @ d, 0.0, 20.0)
    dist = np.linalg.norm(w - a - t[..., None] * d, axis=-1)
    clear = np.abs(dist - 2.0) > 1e-6  # leave out centres on the surface to rounding
    assert np.array_equal(vol.data[clear], (dist <= 2.0)[clear])
    assert vol.data.sum() > 1000
    # the affine keeps its linear part; only the translation moved, by whole voxels
    assert np.allclose(vol.affine[:3, :3], aff[:3, :3])
    shift = np.linalg.solve(aff[:3, :3], vol.affine[:3, 3] - aff[:3, 3])
    assert np.allclose(shift, np.round(shift))
    # the tube sits inside the grid, away from the border
    assert (
        not vol.data[[0, -1]].any()
        and not vol.data[:, [0, -1]].any()
        and not vol.data[:, :, [0, -1]].any()
    )


def test_round_cone_matches_swept_sphere_definition():
    a, b = np.array([0.5, -1.0, 2.0]), np.array([6.0, 3.0, -1.0])
    ra, rb = 2.5, 0.6
    g = VesselGraph(np.stack([a, b]), [ra, rb], [[0, 1]], root=0)
    vol = voxelize(g, affine=_general_affine())
    w = _all_world(vol).reshape(-1, 3)
    truth = _hull_distance(w, a, b, ra, rb)
    clear = np.abs(truth) > 1e-3
    assert (truth[clear] <= 0).sum() > 500
    assert np.array_equal(vol.data.reshape(-1)[clear], truth[clear] <= 0)


def test_sphere_inside_sphere_and_isolated_nodes():
    # one end sphere holds the other: the hull is the bigger sphere
    g = VesselGraph([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [20.0, 0.0, 0.0]], [3.0, 1.0, 1.5], [[0, 1]])
    vol = voxelize(g, spacing=0.25)
    w = _all_world(vol)
    big = np.linalg.norm(w, axis=-1) <= 3.0
    lone = np.linalg.norm(w - [20.0, 0.0, 0.0], axis=-1) <= 1.5
    clear = (np.abs(np.linalg.norm(w, axis=-1) - 3.0) > 1e-6) & (
        np.abs(np.linalg.norm(w - [20.0, 0.0, 0.0], axis=-1) - 1.5) > 1e-6
    )
    assert np.array_equal(vol.data[clear], (big | lone)[clear])


def test_partial_volume_fractions():
    c = cylinder(20.0, 2.0, direction=(1.0, 1.0, 0.3))
    aff = _general_affine()
    binary = voxelize(c, affine=aff)
    frac = voxelize(c, affine=aff, partial_volume=True, supersample=4)
    assert frac.data.dtype == np.float32
    assert frac.data.min() >= 0.0 and frac.data.max() <= 1.0
    assert np.allclose(frac.affine, binary.affine) and frac.shape == binary.shape
    exact = np.pi * 2.0**2 * 20.0 + 4.0 / 3.0 * np.pi * 2.0**3  # capsule, mm^3
    assert frac.data.sum() * frac.voxel_volume == pytest.approx(exact, rel=0.01)
    # voxels far inside are full, far outside empty; fractional voxels sit on the surface
    partial = (frac.data > 0) & (frac.data < 1)
    assert partial.sum() > 100
    assert np.all(frac.data[binary.data] > 0) and np.all(frac.data[~binary.data] < 1)


def test_grid_choices():
    g = y_bifurcation()
    vol = voxelize(g, spacing=0.5, margin_mm=3.0)
    assert np.allclose(vol.affine[:3, :3], 0.5 * np.eye(3))
    # the grid covers every sphere plus the margin
    lo = vol.voxel_to_world([0, 0, 0])
    hi = vol.voxel_to_world(np.asarray(vol.shape) - 1)
    assert np.all(lo <= (g.positions - g.radii[:, None]).min(axis=0) - 3.0 + 1e-9)
    assert np.all(hi >= (g.positions + g.radii[:, None]).max(axis=0) + 3.0 - 0.5 - 1e-9)
    # an explicit grid is used as given
    aff = np.diag([0.6, 0.6, 0.6, 1.0])
    aff[:3, 3] = [-10.0, -10.0, -2.0]
    fixed = voxelize(g, affine=aff, shape=(40, 40, 70))
    assert fixed.shape == (40, 40, 70) and np.allclose(fixed.affine, aff)
    # shape without affine: an axis-aligned grid centred on the graph
    centred = voxelize(g, spacing=1.0, shape=(60, 60, 60))
    assert centred.shape == (60, 60, 60) and centred.data.any()
    # the default spacing is 0.5 mm
    assert np.allclose(voxelize(g).spacing, 0.5)


def test_phantom_topology_survives_voxelisation():
    apart = voxelize(touching_tubes(gap_mm=2.0), spacing=0.25)
    assert label(apart.data)[1] == 2
    fused = voxelize(touching_tubes(gap_mm=-0.5), spacing=0.25)
    assert label(fused.data)[1] == 1
    ring = voxelize(loop(), spacing=0.5)
    centre = np.round(ring.world_to_voxel(np.zeros(3))).astype(int)
    assert not ring.data[tuple(centre)]  # the loop keeps its hole
    assert label(ring.data)[1] == 1


def test_large_tree_voxel_volume_matches_its_tubes():
    # a 100-branch tree: the voxel count times the voxel volume is the tubes' volume
    # (sum over edges of the truncated cones, minus overlaps at joints: an upper bound)
    g = random_tree(seed=3, n_branches=101, min_radius_mm=0.3)
    assert len(g.branches) >= 60
    vol = voxelize(g, spacing=0.5)
    mm3 = float(np.count_nonzero(vol.data)) * 0.5**3
    p, r = g.positions, g.radii
    a, b = g.edges[:, 0], g.edges[:, 1]
    h = np.linalg.norm(p[a] - p[b], axis=1)
    cones = float(np.sum(np.pi * h * (r[a] ** 2 + r[a] * r[b] + r[b] ** 2) / 3))
    assert 0.8 * cones < mm3 < 1.1 * cones, (mm3, cones)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"spacing": 0.0}, ["spacing", "0.0"]),
        ({"spacing": (0.5, -1.0, 0.5)}, ["spacing", "-1.0"]),
        ({"spacing": "a"}, ["spacing", "'a'"]),
        ({"spacing": 0.5, "affine": np.eye(4)}, ["spacing", "affine"]),
        ({"affine": np.zeros((4, 4))}, ["affine"]),
        ({"shape": (10, 0, 10)}, ["shape", "(10, 0, 10)"]),
        ({"shape": (10, 10)}, ["shape", "(10, 10)"]),
        ({"supersample": 0}, ["supersample", "0"]),
        ({"partial_volume": "yes"}, ["partial_volume", "'yes'"]),
        ({"margin_mm": -1.0}, ["margin_mm", "-1.0"]),
        ({"spacing": 1e-4}, ["voxels", "spacing"]),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(InvalidInputError) as info:
        voxelize(cylinder(), **kwargs)
    for w in words:
        assert w in str(info.value)


def test_bad_graphs():
    with pytest.raises(InvalidInputError, match="VesselGraph"):
        voxelize(np.zeros((5, 5, 5)))
    with pytest.raises(EmptyInputError):
        voxelize(VesselGraph(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 2), dtype=int)))
