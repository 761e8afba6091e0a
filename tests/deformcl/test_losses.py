"""Losses against brute-force references written with plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from vesseltree.deformcl.data import signed_distance
from vesseltree.deformcl.losses import (
    edge_length_loss,
    local_chamfer,
    radius_loss,
    sdf_loss,
    soft_dice_loss,
)


def _brute_local_chamfer(p, g, c, side):
    vals = []
    for centre in c:
        ip = [x for x in p if np.all(np.abs(x - centre) <= side / 2)]
        ig = [y for y in g if np.all(np.abs(y - centre) <= side / 2)]
        if not ip or not ig:
            continue
        a = np.mean([min(np.linalg.norm(x - y) for y in ig) for x in ip])
        b = np.mean([min(np.linalg.norm(x - y) for x in ip) for y in ig])
        vals.append(a + b)
    return np.mean(vals)


def test_local_chamfer_matches_loops():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 10, (30, 3))
    g = rng.uniform(0, 10, (40, 3))
    c = g[:6]
    got = local_chamfer(torch.tensor(p), torch.tensor(g), torch.tensor(c), 4.0)
    assert float(got) == pytest.approx(_brute_local_chamfer(p, g, c, 4.0), rel=1e-5)


def test_local_chamfer_zero_on_identity_and_has_gradient():
    g = torch.rand(20, 3) * 5
    p = (g + 0.3).requires_grad_()
    loss = local_chamfer(p, g, g[:5], 3.0)
    loss.backward()
    assert float(loss.detach()) > 0.3  # each direction about |0.3 * (1, 1, 1)| = 0.52 mm
    assert p.grad.abs().sum() > 0
    assert float(local_chamfer(g, g, g[:5], 3.0)) == pytest.approx(0.0, abs=1e-2)


def test_edge_length_loss_matches_loop():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(6, 3))
    pos = ref + rng.normal(scale=0.3, size=(6, 3))
    e = np.array([[0, 1], [1, 2], [2, 3], [1, 4], [4, 5]])
    want = np.mean(
        [(np.linalg.norm(pos[a] - pos[b]) - np.linalg.norm(ref[a] - ref[b])) ** 2 for a, b in e]
    )
    got = edge_length_loss(torch.tensor(pos), torch.tensor(ref), torch.tensor(e))
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_sdf_loss_is_trilinear_sample_of_signed_distance():
    m = np.zeros((20, 22, 24), bool)
    m[6:14, 8:16, 5:19] = True
    sdf = signed_distance(m, (0.5, 0.5, 0.8))
    assert sdf[10, 12, 12] < 0 < sdf[0, 0, 0]
    pts = np.array([[10.2, 11.7, 12.5], [3.3, 4.4, 5.5], [7.9, 8.1, 18.6]])
    want = map_coordinates(sdf, pts.T, order=1).mean()
    got = sdf_loss(
        torch.tensor(sdf)[None, None],
        torch.tensor(pts, dtype=torch.float32),
        torch.zeros(3, dtype=torch.long),
    )
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_radius_loss_uses_nearest_true_point():
    gt = torch.tensor([[0.0, 0, 0], [10.0, 0, 0]])
    gt_r = torch.tensor([1.0, 3.0])
    pos = torch.tensor([[0.5, 0, 0], [9.0, 0, 0], [50.0, 0, 0]])  # the last is too far to count
    r = torch.tensor([1.5, 2.0, 9.0])
    assert float(radius_loss(pos, r, gt, gt_r)) == pytest.approx((0.5 + 1.0) / 2)


def test_soft_dice_loss_extremes():
    t = torch.zeros(1, 1, 4, 4, 4)
    t[..., 1:3, 1:3, 1:3] = 1
    good = torch.where(t > 0, 20.0, -20.0)
    assert float(soft_dice_loss(good, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_dice_loss(-good, t)) > 0.8


def test_keep_loss_targets_nodes_near_the_truth():
    from vesseltree.deformcl.losses import keep_loss

    gt = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]])
    pos = torch.tensor([[0.2, 0, 0], [5.0, 0, 0]])
    right = torch.tensor([8.0, -8.0])  # keep the near node, drop the far one
    assert float(keep_loss(right, pos, gt, 1.5)) < 1e-3
    assert float(keep_loss(-right, pos, gt, 1.5)) > 7.0
