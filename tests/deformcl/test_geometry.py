"""Axis order and stride of node sampling; the centerline maps against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vesseltree.deformcl.geometry import centerline_maps, densify_edges, sample_at


def test_grid_sample_axis_order_full_resolution():
    # a feature volume equal to its own voxel coordinates, on an anisotropic grid
    shape = (5, 7, 11)
    coords = torch.stack(
        torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in shape), indexing="ij")
    )
    vol = coords[None]  # (1, 3, I, J, K)
    pts = torch.tensor([[[0.0, 0.0, 0.0], [4.0, 6.0, 10.0], [1.25, 5.5, 3.75], [3.0, 0.5, 9.0]]])
    got = sample_at(vol, pts)
    torch.testing.assert_close(got, pts, atol=1e-5, rtol=0)


def test_grid_sample_stride_four_convention():
    # voxel f of a stride-4 map sits on full-resolution voxel 4 f
    shape = (4, 6, 3)
    coords = torch.stack(
        torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in shape), indexing="ij")
    )
    vol = (4.0 * coords)[None]
    pts = torch.tensor([[[0.0, 0.0, 0.0], [12.0, 20.0, 8.0], [5.0, 9.0, 2.0]]])
    torch.testing.assert_close(sample_at(vol, pts, stride=4.0), pts, atol=1e-5, rtol=0)


def test_densify_edges_spacing_and_radius():
    pos = torch.tensor([[0.0, 0, 0], [0, 0, 3.0]])
    rad = torch.tensor([1.0, 2.0])
    pts, r, node = densify_edges(pos, rad, torch.tensor([[0, 1]]), step=0.5)
    assert len(pts) == 6 + 2
    gaps = (pts[1:6] - pts[:5]).norm(dim=1)
    torch.testing.assert_close(gaps, torch.full((5,), 0.5))
    torch.testing.assert_close(r[:6], 1.0 + pts[:6, 2] / 3.0)


def test_centerline_maps_match_brute_force():
    rng = np.random.default_rng(0)
    shape = (9, 10, 11)
    pts = torch.tensor(rng.uniform(2, 7, (5, 3)), dtype=torch.float32)
    rad = torch.tensor(rng.uniform(0.5, 2.0, 5), dtype=torch.float32)
    lin = torch.diag(torch.tensor([0.8, 0.5, 0.6]))[None]
    maps = centerline_maps(pts, rad, torch.zeros(5, dtype=torch.long), shape, 1, lin, reach=3)
    grid = np.indices(shape).reshape(3, -1).T.astype(float)
    diff = (grid[:, None, :] - pts.numpy()[None]) * np.array([0.8, 0.5, 0.6])
    d = np.linalg.norm(diff, axis=2)
    # inside the reach window (3 voxels of the rounded point) both maps are exact
    near = np.all(np.abs(grid[:, None, :] - np.round(pts.numpy())[None]) <= 3, axis=2)
    dmin = np.where(near, d, np.inf).min(1)
    smin = np.where(near, d - rad.numpy()[None], np.inf).min(1)
    covered = np.isfinite(dmin)
    m0 = np.clip(1 - dmin / (3 * 0.5), 0, 1)
    m1 = np.tanh(-smin / 0.5)
    got0 = maps[0, 0].numpy().reshape(-1)
    got1 = maps[0, 1].numpy().reshape(-1)
    np.testing.assert_allclose(got0[covered], m0[covered], atol=1e-5)
    np.testing.assert_allclose(got1[covered], m1[covered], atol=1e-5)
    assert np.all(got1[~covered] == -1.0)
    assert maps.shape == (1, 2, *shape)
    assert covered.sum() > 100


@pytest.mark.parametrize("stride", [1.0, 4.0])
def test_sample_at_clamps_outside(stride):
    vol = torch.arange(8, dtype=torch.float32).reshape(1, 1, 2, 2, 2)
    far = torch.tensor([[[-10.0, -10.0, -10.0]]])
    assert float(sample_at(vol, far, stride=stride)) == 0.0
