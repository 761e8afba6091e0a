"""Measured accuracy of extract_graph against exact truth (synthetic) and expert truth (TubeTK).

Every bound below is a measured value plus a margin; the comment beside it says what was measured.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from vesseltree import Volume
from vesseltree.centerline import extract_graph
from vesseltree.metrics import centerline_scores, sample_graph
from vesseltree.metrics.graph_match import graph_keypoints, match_keypoints, tube_keypoints

SPACING = (0.5, 0.5, 0.8)


@pytest.fixture(scope="module")
def synth():
    return pytest.importorskip("vesseltree.synth")


def interior(truth, g):
    """Mean distance and mean radius error (mm) of our centerline, away from truth key points."""
    tp, tr = sample_graph(truth, 0.05)
    pp, pr = sample_graph(g, 0.1)
    key = np.concatenate([truth.endpoints, truth.junctions])
    d, i = cKDTree(tp).query(pp)
    dk, ik = cKDTree(truth.positions[key]).query(pp)
    far = (dk > 2.0 * truth.radii[key][ik] + 0.5) & (d <= 1.0)
    return float(d[far].mean()), float(np.mean(pr[far] - tr[i[far]]))


def smooth_bumps(g, seed, amplitude=0.15, k=8):
    """Radii modulated by a smooth random field (plane waves of 3-8 mm wavelength)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((k, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    lam = rng.uniform(3.0, 8.0, k)
    phase = rng.uniform(0, 2 * np.pi, k)
    m = np.sin(2 * np.pi * (g.positions @ u.T) / lam + phase).sum(1)
    return g.replace(
        radii=np.clip(g.radii * (1 + amplitude * np.sqrt(2 / k) * m), 0.5 * g.radii, None)
    )


def rough(mask, seed, p=0.3):
    """Add p of the outer shell and remove p of the inner shell: voxel-scale wall noise."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    out = mask.copy()
    out[ndi.binary_dilation(mask) & ~mask & (rng.random(mask.shape) < p)] = True
    out[mask & ~ndi.binary_erosion(mask) & (rng.random(mask.shape) < p)] = False
    return out


def mask_handles(mask):
    """First Betti number of a 26-connected mask."""
    from scipy import ndimage as ndi
    from skimage.measure import euler_number

    padded = np.pad(mask, 1)
    b0 = ndi.label(padded, np.ones((3, 3, 3)))[1]
    b2 = ndi.label(~padded)[1] - 1
    return int(b0 + b2 - euler_number(padded, connectivity=3))


@pytest.mark.parametrize("radius", [0.6, 1.0, 2.0])
def test_radius_of_oblique_tubes_is_unbiased(synth, radius):
    # the cross-section radius with the h^2 / (12 r) correction of the binary mask's 0.5 level
    biases = []
    for k, direction in enumerate([(1, 0.4, 0.3), (0.2, 1, 0.5), (0.3, 0.3, 1)]):
        truth = synth.cylinder(25.0, radius, direction=direction, start=(0.13 * k, 0.21 * k, 0))
        g = extract_graph(synth.voxelize(truth, spacing=SPACING))
        biases.append(interior(truth, g)[1])
    assert abs(np.mean(biases)) <= 0.03  # measured -0.002 to +0.007 mm (uncorrected: -0.06 at 0.6)


@pytest.mark.parametrize("radius", [1.0, 2.0])
def test_radius_from_a_partial_volume_map(synth, radius):
    # the interpolation's h^2 / (12 r) applies to probability maps as to masks; what is left is
    # the voxels' own blur of a partial-volume map (about h^2 / (24 r) in the section plane)
    biases = []
    for k, direction in enumerate([(1, 0.4, 0.3), (0.2, 1, 0.5), (0.3, 0.3, 1)]):
        truth = synth.cylinder(25.0, radius, direction=direction, start=(0.13 * k, 0.21 * k, 0))
        prob = synth.voxelize(truth, spacing=SPACING, partial_volume=True)
        biases.append(interior(truth, extract_graph(prob))[1])
    assert (
        abs(np.mean(biases)) <= 0.035
    )  # measured -0.025 / -0.012 mm (uncorrected -0.047 / -0.023)


def test_float_mask_is_read_as_the_binary_mask(synth):
    # masks are often stored as floats: 0.0 / 1.0 must give the graph of the bool mask
    vol = synth.voxelize(synth.random_tree(seed=1, n_branches=9), spacing=SPACING)
    a = extract_graph(vol)
    b = extract_graph(Volume(np.asarray(vol.data, np.float32), vol.affine))
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.radii, b.radii)


@pytest.mark.parametrize("bumpy", [False, True])
def test_tree_centerline_and_radius(synth, bumpy):
    errs, biases = [], []
    for seed in (3, 5):
        truth = synth.random_tree(seed=seed, n_branches=15)
        if bumpy:
            truth = smooth_bumps(truth, seed=1)
        g = extract_graph(synth.voxelize(truth, spacing=SPACING))
        err, bias = interior(truth, g)
        errs.append(err)
        biases.append(bias)
        assert abs(bias) <= 0.045  # measured +0.002 to +0.034 mm
        assert centerline_scores(g, truth)["f1@1"] >= 0.97  # measured 0.99-1.0
        k = match_keypoints(graph_keypoints(g), graph_keypoints(truth))
        assert k["n_endpoints"] == k["n_endpoints_truth"]
        assert abs(k["n_junctions"] - k["n_junctions_truth"]) <= 1
        # a thick root's tip lies at the end of its lumen, beyond the truth's (the cap's centre)
        assert k["endpoint_f1"] >= 0.85  # measured 0.89-1.0
    assert max(errs) <= 0.12  # measured 0.06-0.11 mm (peers on voxel centres: ~0.25 mm)
    assert abs(np.mean(biases)) <= 0.03  # measured +0.005 (clean), +0.019 (bumpy) mm


def test_radius_next_to_forks_is_not_inflated(synth):
    """Within 2.5 junction radii of a fork, the plane normal to a branch also cuts the other
    branches' lumens: radii measured there read wide unless held at the branch's own value."""
    bias, mae = [], []
    for seed in (3, 5, 7):
        truth = synth.random_tree(seed=seed, n_branches=15)
        g = extract_graph(synth.voxelize(truth, spacing=SPACING))
        tp, tr = sample_graph(truth, 0.05)
        pp, pr = sample_graph(g, 0.1)
        d, i = cKDTree(tp).query(pp)
        junc = truth.junctions
        dj, j = cKDTree(truth.positions[junc]).query(pp)
        near = (dj < 2.5 * truth.radii[junc][j]) & (d <= 1.0)
        err = pr[near] - tr[i[near]]
        bias.append(err.mean())
        mae.append(np.abs(err).mean())
    # measured: bias +0.014 to +0.055 mm (mean +0.029), MAE 0.057-0.077 mm; with the radii
    # measured there (fork_ratio=0): bias +0.041 to +0.146 mm (mean +0.107), MAE 0.074-0.163 mm
    assert np.mean(bias) <= 0.05
    assert np.mean(mae) <= 0.09


def test_rough_loop_keeps_the_loop_and_drops_the_handles(synth):
    truth = smooth_bumps(synth.loop(), seed=1)
    vol = synth.voxelize(truth, spacing=SPACING)
    mask = rough(np.asarray(vol.data), seed=2)
    handles = mask_handles(mask)
    assert handles >= 20  # the wall noise punches many handles (53 here)
    g = extract_graph(Volume(mask, vol.affine))
    assert g.n_cycles == 1  # the real loop, and no handle
    assert 1 - (g.n_cycles - 1) / (handles - 1) >= 0.9
    # the one cycle is the real loop: it passes near both of its truth junctions
    edges = g.edges
    while True:  # peel the tips off until only the cycle is left
        deg = np.bincount(edges.ravel(), minlength=g.n_nodes)
        keep = (deg[edges] >= 2).all(1)
        if keep.all():
            break
        edges = edges[keep]
    near = cKDTree(g.positions[np.unique(edges)]).query(truth.positions[truth.junctions])[0]
    assert near.max() <= 1.0  # measured 0.58 mm
    k = match_keypoints(graph_keypoints(g), graph_keypoints(truth))
    assert k["n_junctions"] <= 3  # measured 3 (truth 2)
    s = centerline_scores(g, truth)
    assert s["recall@1"] >= 0.95  # measured 0.985
    # the handles' threads along the wall are deleted, not cut into two spurs each (which kept
    # them as the vessels that stand apart are kept: precision 0.768, 18 spurious tips), and
    # the threads thinning leaves along the rough wall are spurs (ridge_ratio): measured
    # precision 0.967 and 2 spurious tips (the truth has 2 tips); with ridge_ratio=0, 0.908 and 11
    assert s["precision@0.5"] >= 0.94
    assert k["spurious_endpoints"] <= 4


def test_tubetk_junctions_and_endpoints(shared_data):
    nib = pytest.importorskip("nibabel")
    from vesseltree.io import read_tubetk_centerlines

    case = "003"
    img = nib.load(str(shared_data / "tubetk" / "masks" / f"labels-{case}.nii.gz"))
    g = extract_graph(Volume(np.asanyarray(img.dataobj), img.affine))
    truth = read_tubetk_centerlines(
        shared_data / "tubetk" / "centerlines" / f"VascularNetwork-{case}.vtp", connect=False
    )
    s = centerline_scores(g, truth)
    assert s["f1@0.5"] >= 0.95  # measured 0.971
    assert s["f1@1"] >= 0.99  # measured 0.996
    k = match_keypoints(graph_keypoints(g), tube_keypoints(truth), tolerance_mm=2.0)
    assert k["junction_f1"] >= 0.83  # measured 0.87 (median of the 10 cases 0.83)
    assert k["endpoint_f1"] >= 0.88  # measured 0.93


@pytest.mark.parametrize("case", ["001", "109"])  # the first and last mask with no expert graph
def test_tubetk_mask_without_expert_graph_is_drawn_back(shared_data, case):
    """On masks the defaults were not chosen on, the graph drawn back as its round cones covers
    the mask: a centerline off the lumen's middle, a wrong radius, a missed or invented vessel
    each lower the tube Dice."""
    nib = pytest.importorskip("nibabel")
    synth = pytest.importorskip("vesseltree.synth")
    img = nib.load(str(shared_data / "tubetk" / "masks" / f"labels-{case}.nii.gz"))
    mask = np.asanyarray(img.dataobj) != 0
    g = extract_graph(Volume(mask, img.affine))
    tube = np.asarray(synth.voxelize(g, affine=img.affine, shape=mask.shape).data, bool)
    both = np.count_nonzero(tube & mask)
    dice = 2.0 * both / (np.count_nonzero(tube) + np.count_nonzero(mask))
    # measured 0.894 (001) and 0.859 (109); before radii were held next to forks 0.850 / 0.835
    assert dice >= 0.85
    assert both / np.count_nonzero(mask) >= 0.85  # mask recall, measured 0.898 / 0.881


def test_vmtk_aorta_bifurcation_and_tips(shared_data):
    """A wide fork (the aortic bifurcation) and clipped ends, against VMTK's centerlines."""
    from vesseltree.io import read_vmtk_centerlines, read_volume

    vol = read_volume(shared_data / "vmtk_aorta" / "aorta-final-levelset.mha")
    g = extract_graph(Volume(np.asarray(vol.data) < 0, vol.affine))
    truth = read_vmtk_centerlines(shared_data / "vmtk_aorta" / "aorta-centerline.vtp")
    assert len(g.junctions) == 1 and len(g.endpoints) == 3
    s = centerline_scores(g, truth)
    # measured 0.81 / 0.90 (kimimaro 0.48 / 0.86, skan 0.39 / 0.87); thinning's T at the fork
    # left on its own gives 0.77 / 0.86 at most
    assert s["f1@0.5"] >= 0.78
    assert s["f1@1"] >= 0.88
    # the straightened arms leave VMTK's paths by under a millimetre in the bifurcation region
    bent = extract_graph(Volume(np.asarray(vol.data) < 0, vol.affine), straighten_junctions=False)
    assert centerline_scores(bent, truth)["f1@1"] < s["f1@1"] - 0.02


def test_real_intra_trees_voxelised(shared_data):
    """31 real intracranial trees (VesselVAE / IntrA, every 20th file, p10 copies left out),
    voxelised at 0.4 mm and extracted: exact truth with real shapes (radius 0.3-4 mm)."""
    from vesseltree.io import read_vesselvae_tree
    from vesseltree.synth import voxelize

    files = sorted(
        f for f in (shared_data / "vesselvae_trees").glob("*.dat") if not f.name.startswith("p10")
    )[::20]
    rows = []
    for f in files:
        t = read_vesselvae_tree(f)
        g = extract_graph(voxelize(t, spacing=0.4))
        rows.append(centerline_scores(g, t, tolerances=(0.5, 1.0), step_mm=0.05))
        rows[-1] |= match_keypoints(graph_keypoints(g), graph_keypoints(t), tolerance_mm=2.0)
    assert len(rows) == 31
    k = {key: np.array([r[key] for r in rows]) for key in rows[0]}
    assert np.median(k["f1@0.5"]) >= 0.98  # measured 0.991
    # a thin artery whose end touches a thicker one closes a short cycle: cut at its neck it
    # keeps its length (ArteryObjAN183-8 recall@1 0.88; deleted whole, as before, 0.72)
    assert k["recall@1"].min() >= 0.85  # measured 0.881
    assert k["junction_f1"].mean() >= 0.95  # measured 0.989 (0.973 before)
    assert k["endpoint_f1"].mean() >= 0.93  # measured 0.961
