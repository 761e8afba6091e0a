"""The whole model at the tiny size: shapes, identity at init, forward/backward, overfitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vesseltree.deformcl import DeformCLConfig, DeformCLNet, TrainConfig
from vesseltree.deformcl.data import collate, sample_crop
from vesseltree.deformcl.model import pack_graphs
from vesseltree.deformcl.train import training_step
from vesseltree.errors import InvalidInputError


def test_unet_shapes():
    cfg = DeformCLConfig.tiny()
    net = DeformCLNet(cfg)
    logits, feat = net(torch.zeros(2, 1, 32, 32, 32))
    assert logits.shape == (2, 1, 32, 32, 32)
    assert feat.shape == (2, cfg.feat_channels, 8, 8, 8)
    cfg3 = DeformCLConfig(base_channels=4, levels=4, feat_channels=6, patch=32, hidden=8, heads=2)
    logits, feat = DeformCLNet(cfg3)(torch.zeros(1, 1, 32, 32, 32))
    assert feat.shape == (1, 6, 8, 8, 8)


def test_config_validation():
    with pytest.raises(InvalidInputError, match="levels"):
        DeformCLConfig(levels=1)
    with pytest.raises(InvalidInputError, match="patch"):
        DeformCLConfig(patch=40)
    with pytest.raises(InvalidInputError, match="teacher_forcing"):
        TrainConfig(teacher_forcing=1.5)


def test_cascade_starts_as_identity_and_junction_moves_once():
    torch.manual_seed(0)
    net = DeformCLNet(DeformCLConfig.tiny())
    # a Y: node 1 is a junction shared by three branches
    pos = np.array([[10, 10, 10], [14, 14, 14], [18, 14, 10], [18, 18, 18]], np.float32)
    g = pack_graphs([(pos, np.ones(4), np.array([[0, 1], [1, 2], [1, 3]]))], "cpu")
    logits, feat = net(torch.randn(1, 1, 32, 32, 32))
    lin_inv = torch.eye(3)[None] * 2.0
    stages = net.deform(feat, logits, g, lin_inv)
    assert len(stages) == 2
    torch.testing.assert_close(stages[-1][0], g["pos"])  # zero-initialised offsets
    torch.testing.assert_close(stages[-1][1], g["radii"])
    # a non-zero offset head moves each node once (4 nodes in, 4 nodes out), bounded by max_offset_mm
    with torch.no_grad():
        for st in net.cascade.stages:
            st.offset[-1].bias.fill_(10.0)
    moved = net.deform(feat, logits, g, lin_inv)[-1][0]
    assert moved.shape == (4, 3)
    step_vox = 2.0 * net.config.max_offset_mm * np.tanh(10.0)
    torch.testing.assert_close(
        moved - g["pos"], torch.full((4, 3), 2 * step_vox), atol=1e-4, rtol=0
    )


def test_forward_backward_reaches_every_part(small_case):
    torch.manual_seed(0)
    cfg = DeformCLConfig.tiny()
    net = DeformCLNet(cfg)
    rng = np.random.default_rng(0)
    crops = [sample_crop(small_case, cfg.patch, rng, jitter_mm=0.6) for _ in range(2)]
    batch = collate(crops, "cpu")
    tc = TrainConfig(teacher_forcing=0.0)
    loss, parts = training_step(net, tc, batch, crops, rng, amp=False)
    loss.backward()
    assert np.isfinite(float(loss.detach()))
    assert parts["chamfer"] > 0 and parts["sdf"] == parts["sdf"]
    grads = {
        "unet": net.unet.stem[0].weight.grad,
        "offset_head": net.cascade.stages[-1].offset[-1].weight.grad,
        "radius_head": net.cascade.stages[-1].radius[-1].weight.grad,
        "keep_head": net.cascade.stages[-1].keep[-1].weight.grad,
        "merger": net.merger[-1].weight.grad,
    }
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name


def test_overfit_one_volume_chamfer_and_dice_improve(small_case):
    # one fixed crop with a jittered true template, trained on again and again
    torch.manual_seed(0)
    cfg = DeformCLConfig.tiny()
    net = DeformCLNet(cfg)
    rng = np.random.default_rng(1)
    crops = [sample_crop(small_case, cfg.patch, rng, jitter_mm=0.6)]
    batch = collate(crops, "cpu")
    tc = TrainConfig(teacher_forcing=0.0, curriculum_dice=1.0)  # keep the true template
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        loss, parts = training_step(net, tc, batch, crops, rng, amp=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(parts)
    first, last = history[0], history[-1]
    assert last["chamfer"] < 0.8 * first["chamfer"]
    assert last["dice_final"] > first["dice_final"] + 0.2
    assert last["total"] < 0.7 * first["total"]


def test_degenerate_template_warns_and_returns_none():
    from vesseltree import Volume
    from vesseltree.deformcl.template import template_from_mask

    with pytest.warns(RuntimeWarning, match="degenerate"):
        assert template_from_mask(Volume(np.zeros((12, 12, 12), bool))) is None
    tube = np.zeros((12, 12, 30), bool)
    tube[4:8, 4:8, 2:28] = True
    g = template_from_mask(Volume(tube, spacing=(0.5, 0.5, 0.5)))
    assert g is not None and g.n_edges > 3 and len(g.endpoints) == 2


def test_template_keeps_fused_outlines_on_their_common_axis():
    # the cascade was trained on centroid templates: the template does not move nodes into
    # one of two fused lumens (a notched UNet prediction of one thick vessel looks the same)
    from vesseltree import synth
    from vesseltree.centerline import extract_graph
    from vesseltree.deformcl.template import template_from_mask

    vol = synth.voxelize(synth.touching_tubes(), spacing=0.4)
    assert extract_graph(vol).meta["nodes_in_lobes"] > 0
    assert template_from_mask(vol).meta["nodes_in_lobes"] == 0


def test_predictor_rejects_bad_arguments():
    from vesseltree.deformcl import DeformCL

    net = DeformCLNet(DeformCLConfig.tiny())
    with pytest.raises(InvalidInputError, match="window"):
        DeformCL(net, window=30)
    with pytest.raises(InvalidInputError, match="net"):
        DeformCL("not a net")
    model = DeformCL(net)
    with pytest.raises(InvalidInputError, match="at least 4"):
        model.predict(np.zeros((2, 30, 30), np.float32))
    with pytest.raises(InvalidInputError, match="VesselGraph"):
        model.refine(np.zeros((8, 8, 8), np.float32), "graph")
