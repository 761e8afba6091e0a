"""Pruning by node score (components and terminal branches) and fitting the score head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vesseltree.deformcl import DeformCL, DeformCLConfig, DeformCLNet
from vesseltree.deformcl.prune import fit_node_scores, node_samples, prune_by_score
from vesseltree.errors import InvalidInputError
from vesseltree.graph import VesselGraph


def _graph():
    # main vessel 0-9 with junctions at 3 and 6; a spur 10-13 off node 3, a side branch 14-16 off
    # node 6, and a separate component 17-21
    pos, edges = [], []
    for i in range(10):
        pos.append([i, 0, 0])
        if i:
            edges.append([i - 1, i])
    for k in range(4):  # spur from junction 3
        pos.append([3, k + 1, 0])
        edges.append([3 if k == 0 else 9 + k, 10 + k])
    for k in range(3):  # side branch from junction 6 (kept: high score)
        pos.append([6, 0, k + 1])
        edges.append([6 if k == 0 else 13 + k, 14 + k])
    for k in range(5):  # a separate component
        pos.append([20 + k, 5, 5])
        if k:
            edges.append([16 + k, 17 + k])
    pos = np.array(pos, float)
    return VesselGraph(pos, np.ones(len(pos)), np.array(edges))


def test_prune_removes_low_scoring_component_and_spur_only():
    g = _graph()
    p = np.full(g.n_nodes, 0.9)
    p[10:14] = 0.1  # the spur
    p[17:22] = 0.2  # the separate component
    p[4:6] = 0.05  # low scores inside the main vessel, between two junctions
    # by default only whole components go
    comp = prune_by_score(g, p, 0.5)
    assert comp[:17].all() and not comp[17:22].any()
    keep = prune_by_score(g, p, 0.5, branches=True)
    assert not keep[10:14].any() and not keep[17:22].any()
    assert keep[:10].all() and keep[14:17].all()  # the junction and the inner run stay
    sub = g.subgraph(keep)
    assert sub.n_components == 1  # pruning never splits the tree
    assert prune_by_score(g, p, 0.0).all()
    # the largest component is never dropped whole (only its low-scoring terminal branches)
    low = prune_by_score(g, np.full(g.n_nodes, 0.1), 0.5, branches=True)
    assert low[3:7].all() and not low[17:].any() and not low[[0, 9]].any()
    assert prune_by_score(g, np.full(g.n_nodes, 0.9), 0.5, branches=True).all()
    with pytest.raises(InvalidInputError, match="one value per node"):
        prune_by_score(g, p[:-1], 0.5)


def _case_with_false_vessel():
    """A small synthetic case, and a fake UNet: the true mask plus a bright bar far from the vessels.

    The bar is flagged in one feature channel, so a head that learns anything removes it.
    """
    from vesseltree.deformcl.data import make_case
    from vesseltree.synth import random_tree, simulate_image
    from vesseltree.volume import Volume

    tree = random_tree(seed=5, n_branches=4)
    img = simulate_image(tree, modality="ct", seed=5, spacing=0.8)
    mask = np.asarray(img.meta["mask"].data, bool)
    pad = ((0, 0), (0, 16), (0, 0))
    image = np.pad(np.asarray(img.data, np.float32), pad, mode="edge")
    mask = np.pad(mask, pad)
    case = make_case("bar", Volume(image, img.affine), mask, tree)
    bar = np.zeros(mask.shape, bool)
    j = mask.shape[1] - 8
    bar[4:-4, j - 1 : j + 2, 10:13] = True
    return case, mask, bar


def test_fit_node_scores_learns_the_false_nodes(monkeypatch):
    torch.manual_seed(0)
    cfg = DeformCLConfig.tiny()
    predictor = DeformCL(DeformCLNet(cfg), window=32)
    case, mask, bar = _case_with_false_vessel()
    shp = mask.shape
    padded = tuple(int(np.ceil(n / 4) * 4) for n in shp)
    logit = torch.full(padded, -8.0)
    logit[: shp[0], : shp[1], : shp[2]] = torch.from_numpy(np.where(mask | bar, 8.0, -8.0))
    feat = torch.zeros((cfg.feat_channels, *(n // 4 for n in padded)))
    b = np.zeros(padded, bool)
    b[: shp[0], : shp[1], : shp[2]] = bar
    flag = b.reshape(padded[0] // 4, 4, padded[1] // 4, 4, padded[2] // 4, 4).any(axis=(1, 3, 5))
    feat[0] = torch.from_numpy(flag.astype(np.float32))
    monkeypatch.setattr(predictor, "_unet", lambda image, overlap=0.25: (logit, feat, shp))

    s = node_samples(predictor, case, tol_mm=1.0)
    assert s is not None
    assert s["hidden"].shape == (len(s["target"]), cfg.hidden)
    d = np.min(np.linalg.norm(s["node_mm"][:, None] - s["truth_mm"][None], axis=2), axis=1)
    np.testing.assert_array_equal(s["target"], d <= 1.0)
    assert 0.1 < 1 - s["target"].mean() < 0.9  # the bar gives false nodes, the vessels true ones

    summary = fit_node_scores(predictor, [case], epochs=40, holdout=0.0)
    assert summary["cases"] == 1 and summary["nodes"] == len(s["target"])
    assert summary["loss_last_epoch"] < summary["loss_first_epoch"]
    assert predictor.config.keep_threshold == summary["threshold"] > 0
    assert summary["proxy_f1"][f"{summary['threshold']:g}"] > summary["proxy_f1"]["0"]
    # the predictor now removes the false vessel and keeps the true ones
    graph, _ = predictor.predict(_image_of(case))
    ijk = np.rint(graph.voxel_positions(case.affine)).astype(int)
    ijk = np.clip(ijk, 0, np.array(shp) - 1)
    on_bar = bar[tuple(ijk.T)]
    assert graph.n_nodes > 0 and on_bar.mean() < 0.05


def _image_of(case):
    from vesseltree.volume import Volume

    return Volume(case.image, case.affine)


def test_error_budget_splits_the_misses_by_cause():
    from vesseltree.deformcl.evaluate import error_budget
    from vesseltree.volume import Volume

    def line(a, b, n=11):
        pts = np.linspace(a, b, n)
        return pts, np.array([[i, i + 1] for i in range(n - 1)])

    t_pos, t_e = line([2, 5, 5], [22, 5, 5])
    truth = VesselGraph(t_pos, np.ones(len(t_pos)), t_e)
    mask = np.zeros((30, 30, 12), bool)
    mask[1:24, 4:7, 4:7] = True
    a, ea = line([2, 5, 5], [12, 5, 5])  # on the truth: 10 mm
    b, eb = line([12, 6.5, 5], [22, 6.5, 5])  # 1.5 mm off, inside the mask: 10 mm
    c, ec = line([2, 20, 5], [22, 20, 5])  # a false vessel far away: 20 mm
    pos = np.concatenate([a, b, c])
    edges = np.concatenate([ea, eb + len(a), ec + len(a) + len(b)])
    pred = VesselGraph(pos, np.ones(len(pos)), edges)
    eb_ = error_budget(pred, truth, Volume(mask, np.eye(4)))
    assert eb_["fp_offset"] == pytest.approx(0.25, abs=0.02)
    assert eb_["fp_far_out_mask"] == pytest.approx(0.5, abs=0.02)
    assert eb_["fp_far_in_mask"] == pytest.approx(0.0, abs=0.01)
    # truth beyond x = 13 mm is 1.5 mm from the shifted part (up to 13 mm, a reaches it)
    assert eb_["fn_offset"] == pytest.approx(0.45, abs=0.02)
    assert eb_["fn_far"] == pytest.approx(0.0, abs=0.01)
