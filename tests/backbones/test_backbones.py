"""Backbones: threshold, vesselness (analytic Hessian, synthetic CT), label maps, torch windows."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vesseltree import EmptyInputError, FileFormatError, InvalidInputError, Volume, synth
from vesseltree.backbones import (
    Backbone,
    LabelMap,
    Threshold,
    TorchModule,
    Vesselness,
    available,
    get,
    parse_labels,
)
from vesseltree.backbones.vesselness import hessian_eigenvalues
from vesseltree.centerline import extract
from vesseltree.metrics import centerline_scores
from vesseltree.volume import affine_from_spacing


def test_import_loads_no_torch():
    code = "import sys, vesseltree.backbones; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registry_and_protocol():
    assert available() == ["labelmap", "threshold", "torch", "vesselness"]
    v = get("Vesselness", method="sato")
    assert isinstance(v, Vesselness) and v.method == "sato"
    assert isinstance(Threshold(), Backbone) and isinstance(v, Backbone)
    with pytest.raises(InvalidInputError, match="unknown backbone 'unet'"):
        get("unet")


# ---------------------------------------------------------------------- threshold
def test_threshold_levels():
    rng = np.random.default_rng(0)
    truth = np.zeros((20, 20, 20), bool)
    truth[5:15, 8:12, 8:12] = True
    img = np.where(truth, 300.0, 40.0) + rng.normal(0, 10, truth.shape)
    vol = Volume(img, spacing=(0.5, 0.5, 0.8))
    for bb in (
        Threshold(level=170.0),
        Threshold(level="otsu"),
        Threshold(level=0.5, relative=True),
    ):
        out = bb.segment(vol)
        assert out.data.dtype == bool and np.array_equal(out.data, truth)
        assert np.array_equal(out.affine, vol.affine)
    dark = Threshold(level=170.0, bright=False).segment(vol)
    assert np.array_equal(dark.data, ~truth)
    with pytest.raises(InvalidInputError, match="fraction"):
        Threshold(level=2.0, relative=True)
    with pytest.raises(InvalidInputError, match="level"):
        Threshold(level="high")
    with pytest.raises(EmptyInputError, match="constant"):
        Threshold().segment(Volume(np.ones((4, 4, 4))))


# ---------------------------------------------------------------------- vesselness
def _gaussian_tube(affine, shape, direction, width_mm=1.0):
    """Image exp(-d^2 / 2 w^2), d = distance (mm) to a line through the grid centre."""
    vol = Volume(np.zeros(shape, np.float32), affine)
    ijk = np.argwhere(np.ones(shape, bool))
    xyz = vol.voxel_to_world(ijk)
    centre = vol.voxel_to_world((np.array(shape) - 1) / 2.0)
    u = np.asarray(direction, float) / np.linalg.norm(direction)
    rel = xyz - centre
    d = np.linalg.norm(rel - (rel @ u)[:, None] * u, axis=1)
    img = np.exp(-(d**2) / (2 * width_mm**2)).reshape(shape).astype(np.float32)
    return Volume(img, affine), d.reshape(shape), (rel @ u).reshape(shape)


def _rotation(angles):
    out = np.eye(3)
    for ax, a in enumerate(angles):
        c, s = np.cos(a), np.sin(a)
        r = np.eye(3)
        i, j = [k for k in range(3) if k != ax]
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = out @ r
    return out


@pytest.mark.parametrize(
    "spacing, angles",
    [
        ((0.5, 0.5, 0.5), (0, 0, 0)),
        ((0.4, 0.4, 1.0), (0, 0, 0)),
        ((0.5, 0.4, 0.8), (0.3, -0.5, 0.9)),
    ],
)
def test_hessian_eigenvalues_match_the_analytic_tube(spacing, angles):
    # a Gaussian tube of sd w blurred by sd s: at the axis the scale-normalised cross-section
    # curvatures are -s^2 w^2 / (w^2 + s^2)^2 (both), and 0 along the axis, whatever the grid
    aff = affine_from_spacing(spacing)
    aff[:3, :3] = _rotation(angles) @ aff[:3, :3]
    direction = (1.0, 0.4, 0.2)
    vol, d, along = _gaussian_tube(aff, (44, 44, 30), direction, width_mm=1.0)
    s = 1.0
    lam = hessian_eigenvalues(vol.data, vol.affine, s)
    axis = (d < 0.25) & (np.abs(along) < 4.0)
    expected = -(s**2) / (1 + s**2) ** 2
    assert axis.sum() > 5
    assert np.allclose(lam[0][axis], 0.0, atol=0.02)
    assert np.allclose(lam[1][axis], expected, rtol=0.06)
    assert np.allclose(lam[2][axis], expected, rtol=0.06)


def test_vesselness_does_not_depend_on_the_voxel_size():
    # the same tube on an isotropic and on an anisotropic grid responds alike at its axis
    peaks = []
    for spacing in ((0.4, 0.4, 0.4), (0.4, 0.4, 1.0)):
        vol, d, along = _gaussian_tube(affine_from_spacing(spacing), (41, 41, 25), (1, 0.3, 0))
        for method in ("frangi", "sato"):
            r = Vesselness(method=method, sigmas_mm=(0.7, 1.0, 1.4)).response(vol)
            peaks.append(float(np.median(r[(d < 0.3) & (np.abs(along) < 3)])))
    iso, aniso = np.array(peaks[:2]), np.array(peaks[2:])
    assert np.all(iso > 0) and np.allclose(aniso, iso, rtol=0.05)


@pytest.fixture(scope="module")
def ct_case():
    truth = synth.random_tree(seed=3, n_branches=15)
    return truth, synth.simulate_image(truth, modality="ct", seed=3, spacing=(0.5, 0.5, 0.8))


def test_vesselness_then_extract_finds_the_tree_in_a_ct(ct_case):
    truth, image = ct_case
    corner = image.replace(data=image.data[:60, :60, :40])
    prob = Vesselness().segment(corner)
    assert prob.data.dtype == np.float32 and np.array_equal(prob.affine, image.affine)
    assert 0 <= prob.data.min() and prob.data.max() <= 1
    assert prob.meta["vesselness"]["level"] > 0
    g = extract(image, backbone=Vesselness())
    s = centerline_scores(g, truth)
    # measured (tree seed 3, CT seed 3, 0.5 x 0.5 x 0.8 mm): F1@1 0.957, F1@0.5 0.808
    assert s["f1@1"] >= 0.9
    assert s["f1@0.5"] >= 0.72
    with pytest.raises(InvalidInputError, match="method"):
        Vesselness(method="hessian")
    with pytest.raises(InvalidInputError, match="sigmas_mm"):
        Vesselness(sigmas_mm=(1.0, -2.0))


def test_vesselness_min_size_removes_specks():
    rng = np.random.default_rng(3)
    img = rng.normal(0.0, 1.0, (40, 40, 40)).astype(np.float32)
    vol = Volume(img, spacing=0.5 * np.ones(3))
    keep_all = Vesselness(sigmas_mm=(0.5,), min_size_mm3=0.0).segment(vol)
    cleaned = Vesselness(sigmas_mm=(0.5,), min_size_mm3=2.0).segment(vol)
    assert cleaned.meta["vesselness"]["pieces_removed"] > 0
    assert (cleaned.data >= 0.5).sum() < (keep_all.data >= 0.5).sum()


# ---------------------------------------------------------------------- label maps
def test_parse_labels_layouts():
    want = {"background": 0, "aorta": 1, "vein": 2}
    assert parse_labels({"labels": {"background": 0, "aorta": 1, "vein": 2}}) == want  # nnU-Net v2
    assert parse_labels({"labels": {"0": "background", "1": "aorta", "2": "vein"}}) == want  # v1
    assert parse_labels({0: "background", 1: "aorta", 2: "vein"}) == want  # TotalSegmentator
    # nnU-Net region entries (lists) are skipped, not misread
    assert parse_labels({"labels": {"background": 0, "aorta": 1, "all": [1, 2]}}) == {
        "background": 0,
        "aorta": 1,
    }
    with pytest.raises(InvalidInputError, match="no \\(name, integer id\\) pairs"):
        parse_labels({"a": "b"})


def test_labelmap_keeps_selected_labels(tmp_path):
    lab = np.zeros((12, 12, 12), np.int16)
    lab[2:5], lab[6:8], lab[9:11] = 1, 2, 3
    vol = Volume(lab, spacing=(0.5, 0.5, 0.8))
    js = tmp_path / "dataset.json"
    js.write_text(json.dumps({"labels": {"background": 0, "aorta": 1, "vein": 2, "bone": 3}}))
    out = LabelMap(labels=["aorta", 3], labels_json=js).segment(vol)
    assert sorted(np.unique(out.data)) == [0, 1, 3]
    assert np.array_equal(out.data == 1, lab == 1) and out.meta["labels"]["vein"] == 2
    # float-stored label maps with whole values are fine; fractions are not label maps
    assert np.array_equal(
        LabelMap(labels=2).segment(Volume(lab.astype(np.float32))).data == 2, lab == 2
    )
    with pytest.raises(InvalidInputError, match="not a label map"):
        LabelMap().segment(Volume(lab / 2.0))
    with pytest.raises(InvalidInputError, match="labels present"):
        LabelMap(labels=9).segment(vol)
    with pytest.raises(FileFormatError, match="does not exist"):
        LabelMap(labels="aorta", labels_json=tmp_path / "none.json").segment(vol)


def test_labelmap_backbone_names_reach_extract(tmp_path):
    truth = synth.touching_tubes(length_mm=12.0, radius_mm=1.2, gap_mm=2.0)
    mask = synth.voxelize(truth, spacing=0.4)
    centre_x = truth.meta["center"][0]
    xyz = mask.voxel_to_world(np.argwhere(np.ones(mask.shape, bool)))[:, 0].reshape(mask.shape)
    lab = np.where(mask.data, np.where(xyz < centre_x, 1, 2), 0).astype(np.uint8)
    g = extract(
        Volume(lab, mask.affine), backbone=LabelMap(names={1: "left", 2: "right"}), label="right"
    )
    assert np.all(g.node_data["label"] == 2) and g.n_components == 1
    assert np.all(g.positions[:, 0] > centre_x)


# ---------------------------------------------------------------------- torch
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _tiny_net(torch, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 1, 3, padding=1)
    )


def test_sliding_window_equals_the_whole_volume_forward(torch):
    net = _tiny_net(torch)
    # a volume that is not a multiple of the window
    x = np.random.default_rng(0).normal(size=(37, 29, 23)).astype(np.float32)
    with torch.no_grad():
        full = torch.sigmoid(net(torch.from_numpy(x)[None, None]))[0, 0].numpy()
    vol = Volume(x, spacing=(0.5, 0.5, 0.8))
    # a margin of the receptive-field half-width (2 voxels) makes the stitching exact
    for mode in ("gaussian", "constant"):
        out = TorchModule(
            net, roi_size=16, overlap=0.25, mode=mode, margin=2, batch_size=3
        ).segment(vol)
        assert out.data.shape == x.shape and np.array_equal(out.affine, vol.affine)
        assert np.abs(out.data - full).max() < 1e-5
    # without a margin the window borders leak in; Gaussian weights keep them small
    errs = {}
    for mode in ("gaussian", "constant"):
        out = TorchModule(net, roi_size=(16, 16, 16), overlap=0.25, mode=mode).segment(vol)
        errs[mode] = float(np.abs(out.data - full).mean())
    assert errs["gaussian"] < 0.003 and errs["gaussian"] < errs["constant"]  # measured 0.001, 0.006
    # a window larger than the volume: zero padding; exact away from the padded faces (a second
    # layer sees the first layer's response to the padding, which a whole-volume pass does not)
    big = TorchModule(net, roi_size=(40, 32, 24)).segment(vol)
    assert big.data.shape == x.shape
    assert np.abs(big.data - full)[:-2, :-2, :-2].max() < 1e-5
    assert net.training  # the model's mode is restored


def test_torch_module_chain_and_outputs(torch):
    truth = synth.y_bifurcation()
    mask = synth.voxelize(truth, spacing=(0.5, 0.5, 0.8))
    image = Volume(np.where(mask.data, 400.0, 40.0).astype(np.float32), mask.affine)
    net = torch.nn.Conv3d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(0.05)
        net.bias.fill_(-11.0)  # logit 0 at 220 HU
    g = extract(image, backbone=TorchModule(net, roi_size=(32, 32, 32)))
    ref = extract(mask)
    assert centerline_scores(g, ref, tolerances=(0.1,))["f1@0.1"] >= 0.99
    # two classes as softmax: the probability of class 1, or the arg-max label map
    two = torch.nn.Conv3d(1, 2, 1)
    with torch.no_grad():
        two.weight[:] = torch.tensor([-0.05, 0.05]).reshape(2, 1, 1, 1, 1)
        two.bias[:] = torch.tensor([11.0, -11.0])
    p1 = TorchModule(two, roi_size=32, activation="softmax").segment(image)
    assert np.array_equal(p1.data >= 0.5, mask.data)
    lab = TorchModule(two, roi_size=32, activation="softmax", output="argmax").segment(image)
    assert lab.data.dtype == np.int32 and np.array_equal(lab.data == 1, mask.data)
    shrink = torch.nn.Conv3d(1, 1, 3)  # no padding: a smaller output
    with pytest.raises(InvalidInputError, match="spatial shape"):
        TorchModule(shrink, roi_size=8).segment(image)
    with pytest.raises(InvalidInputError, match="overlap"):
        TorchModule(net, overlap=1.0)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="CUDA is not available"):
            TorchModule(net, roi_size=8, device="cuda").segment(image)
