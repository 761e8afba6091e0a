"""Topology and surface-distance scores on toy shapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vesseltree import Volume
from vesseltree.errors import InvalidInputError
from vesseltree.metrics.volumes import (
    assd,
    betti_errors,
    betti_numbers,
    cldice,
    hd95,
    surface_distances,
    volume_scores,
)


def _torus(shape=(40, 40, 20), big=12.0, small=4.0):
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(float)
    z, y, x = z - (shape[0] - 1) / 2, y - (shape[1] - 1) / 2, x - (shape[2] - 1) / 2
    return (np.sqrt(z**2 + y**2) - big) ** 2 + x**2 < small**2


def _ball(shape, centre, radius):
    g = np.indices(shape).astype(float)
    return sum((g[i] - centre[i]) ** 2 for i in range(3)) <= radius**2


def test_torus_has_one_loop():
    b = betti_numbers(_torus())
    assert b == {"b0": 1, "b1": 1, "b2": 0, "euler": 0}


def test_two_blobs_are_two_components():
    m = _ball((30, 30, 30), (8, 8, 8), 4) | _ball((30, 30, 30), (20, 21, 20), 5)
    assert betti_numbers(m)["b0"] == 2
    assert betti_numbers(m)["b1"] == 0


def test_hollow_sphere_has_one_cavity():
    m = _ball((25, 25, 25), (12, 12, 12), 9) & ~_ball((25, 25, 25), (12, 12, 12), 5)
    assert betti_numbers(m) == {"b0": 1, "b1": 0, "b2": 1, "euler": 2}


def test_diagonal_touch_is_26_connected():
    m = np.zeros((4, 4, 4), bool)
    m[1, 1, 1] = m[2, 2, 2] = True
    assert betti_numbers(m)["b0"] == 1


def test_betti_errors_count_differences():
    torus = _torus()
    two = torus | _ball(torus.shape, (2, 2, 2), 1.5)
    err = betti_errors(two, torus)
    assert err["b0_error"] == 1 and err["b1_error"] == 0


def test_cldice_perfect_and_disjoint():
    t = _torus()
    assert cldice(t, t) == pytest.approx(1.0)
    assert cldice(np.zeros_like(t), t) == 0.0
    half = t.copy()
    half[:20] = False  # half the ring missing: sensitivity about 1/2, precision 1
    assert 0.55 < cldice(half, t) < 0.8


def test_surface_distances_in_mm_through_the_affine():
    shape = (30, 30, 30)
    a = np.zeros(shape, bool)
    a[5:20, 5:20, 5:20] = True
    b = np.roll(a, 2, axis=0)  # 2 voxels along i = 2 * 1.5 mm
    vol_a = Volume(a, spacing=(1.5, 0.5, 0.5))
    vol_b = Volume(b, spacing=(1.5, 0.5, 0.5))
    assert hd95(vol_a, vol_b) == pytest.approx(3.0)
    # the two cube faces normal to i sit 3 mm apart; everything else moves <= 3 mm
    d_ab, d_ba = surface_distances(vol_a, vol_b)
    assert d_ab.max() == pytest.approx(3.0)
    assert 0 < assd(vol_a, vol_b) < 3.0
    # spacing given to a bare array gives the same numbers
    assert hd95(a, b, spacing=(1.5, 0.5, 0.5)) == pytest.approx(3.0)


def test_empty_and_bad_inputs():
    e = np.zeros((5, 5, 5), bool)
    full = e.copy()
    full[1:4, 1:4, 1:4] = True
    assert hd95(e, e) == 0.0
    assert hd95(full, e) == np.inf
    with pytest.raises(InvalidInputError, match="same shape"):
        volume_scores(e, np.zeros((4, 5, 5)))
    with pytest.raises(InvalidInputError, match="3D"):
        betti_numbers(np.zeros((4, 4)))


def test_volume_scores_identical_masks():
    t = _torus()
    s = volume_scores(t, t)
    assert s["dice"] == 1.0 and s["cldice"] == pytest.approx(1.0)
    assert s["b0_error"] == s["b1_error"] == s["euler_error"] == 0
    assert s["hd95"] == 0.0 and s["assd"] == 0.0


def test_surface_distances_with_a_rotated_sheared_affine():
    a = np.zeros((30, 30, 30), bool)
    a[5:20, 5:20, 5:20] = True
    b = np.roll(a, 2, axis=0)
    c, s = np.cos(0.4), np.sin(0.4)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    lin = rot @ np.diag([1.5, 0.5, 0.5])
    lin[:, 2] += 0.2 * lin[:, 1]  # shear: the k axis leans along j
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = (10.0, -4.0, 2.0)
    # a shift of 2 voxels along i is 2 * |column i| = 3 mm in the world, whatever the rotation
    assert hd95(Volume(a, aff), Volume(b, aff)) == pytest.approx(3.0, abs=0.05)
