"""vesseltree.extract: every source type, axis-order invariance, label maps, trees, errors, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import vesseltree
from vesseltree import EmptyInputError, FileFormatError, InvalidInputError, Volume, synth
from vesseltree.centerline import branch_table, extract, to_forest
from vesseltree.centerline import cli as extract_cli
from vesseltree.io import read_graph, read_volume, write_volume
from vesseltree.metrics import centerline_scores

SPACING = (0.5, 0.5, 0.8)


@pytest.fixture(scope="module")
def tree_case():
    truth = synth.random_tree(seed=5, n_branches=7)
    return truth, synth.voxelize(truth, spacing=SPACING)


@pytest.fixture(scope="module")
def touching():
    """Two tubes touching along a line, as a label map (1 and 2) on one grid, and their truth."""
    truth = synth.touching_tubes(length_mm=16.0, radius_mm=1.5, gap_mm=0.0)
    both = synth.voxelize(truth, spacing=0.4)
    tube = truth.node_data["tube"]
    m0 = synth.voxelize(truth.subgraph(tube == 0), affine=both.affine, shape=both.shape).data
    m1 = synth.voxelize(truth.subgraph(tube == 1), affine=both.affine, shape=both.shape).data
    lab = np.zeros(both.shape, np.uint8)
    lab[m0] = 1
    lab[m1 & ~m0] = 2
    return truth, Volume(lab, both.affine), both


def f1(a, b, tol=0.1):
    return centerline_scores(a, b, tolerances=(tol,))[f"f1@{tol:g}"]


def test_top_level_extract_is_the_api():
    assert vesseltree.extract is extract


def test_every_source_type_gives_the_same_graph(tree_case, tmp_path):
    torch = pytest.importorskip("torch")
    truth, vol = tree_case
    ref = extract(vol)
    assert centerline_scores(ref, truth)["f1@1"] >= 0.95
    path = tmp_path / "mask.nii.gz"
    write_volume(vol, path)
    data = np.asarray(vol.data)
    origin = vol.affine[:3, 3]
    sources = {
        "path": extract(path),
        "str path": extract(str(path)),
        "nibabel": extract(vol.to_nibabel()),
        "ndarray+affine": extract(data, affine=vol.affine),
        # spacing= puts voxel (0, 0, 0) at the origin: the graph moves by the grid's origin
        "ndarray+spacing": extract(data, spacing=SPACING).transform(
            np.block([[np.eye(3), origin[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]])
        ),
        "tensor": extract(torch.from_numpy(np.array(data))[None, None], affine=vol.affine),
        "uint8 tensor": extract(torch.from_numpy(data.astype(np.uint8))[None], affine=vol.affine),
    }
    for name, g in sources.items():
        assert g.n_nodes == ref.n_nodes, name
        assert np.allclose(g.positions, ref.positions, atol=1e-4), name
        assert np.allclose(g.radii, ref.radii, atol=1e-4), name
        assert np.array_equal(g.edges, ref.edges), name
    # a float tensor is a probability map: the same as the float array
    prob = data.astype(np.float32)
    g_t = extract(torch.from_numpy(prob)[None, None], affine=vol.affine)
    g_a = extract(prob, affine=vol.affine)
    assert np.allclose(g_t.positions, g_a.positions) and np.allclose(g_t.radii, g_a.radii)


def _flip(vol: Volume, axis: int) -> Volume:
    n = vol.shape[axis]
    m = np.eye(4)
    m[axis, axis] = -1.0
    m[axis, 3] = n - 1
    return Volume(np.flip(np.asarray(vol.data), axis), vol.affine @ m)


def _permute(vol: Volume, order) -> Volume:
    # new axis a is old axis order[a]: data transposed, affine columns permuted to match
    p = np.zeros((4, 4))
    for a, o in enumerate(order):
        p[o, a] = 1.0
    p[3, 3] = 1.0
    return Volume(np.transpose(np.asarray(vol.data), order), vol.affine @ p)


@pytest.mark.parametrize(
    "how",
    ["flip0", "flip2", "permute120", "permute210", "flip1+permute201"],
)
def test_axis_order_and_orientation_do_not_change_the_world_graph(tree_case, how):
    truth, vol = tree_case
    ref = extract(vol)
    other = vol
    for step in how.split("+"):
        if step.startswith("flip"):
            other = _flip(other, int(step[4:]))
        else:
            other = _permute(other, [int(c) for c in step[7:]])
    # the world position of every voxel is unchanged
    ijk = np.argwhere(np.asarray(other.data))
    assert np.allclose(
        np.sort(other.voxel_to_world(ijk), axis=0),
        np.sort(vol.voxel_to_world(np.argwhere(np.asarray(vol.data))), axis=0),
    )
    g = extract(other)
    # the thinning numbers its sub-fields by world axes and the branch graph is numbered by world
    # position, so the graph is the same up to rounding (measured: nodes within 2e-6 mm)
    s = centerline_scores(g, ref, tolerances=(0.001,))
    assert s["f1@0.001"] == 1.0
    assert s["mean_pred_to_truth"] <= 1e-4 and s["mean_truth_to_pred"] <= 1e-4
    assert s["radius_mae"] <= 1e-4
    assert g.n_nodes == ref.n_nodes and g.n_edges == ref.n_edges
    assert len(g.endpoints) == len(ref.endpoints)
    assert len(g.junctions) == len(ref.junctions)
    assert g.n_cycles == ref.n_cycles


def test_orientation_invariance_on_a_real_mask(shared_data):
    from vesseltree.io import read_volume

    vol = read_volume(shared_data / "tubetk" / "masks" / "labels-001.nii.gz")
    ref = extract(vol)
    # a NIfTI array is Fortran-ordered: the flip and permutation also change the memory order
    for other in (_flip(vol, 0), _permute(_flip(vol, 2), [1, 0, 2])):
        g = extract(other)
        s = centerline_scores(g, ref, tolerances=(0.001,))
        assert s["f1@0.001"] == 1.0 and s["mean_pred_to_truth"] <= 1e-4
        assert len(g.junctions) == len(ref.junctions) and g.n_cycles == ref.n_cycles


def test_probability_map_uses_threshold_and_sub_voxel_walls(tree_case):
    truth, _ = tree_case
    prob = synth.voxelize(truth, spacing=SPACING, partial_volume=True)
    g = extract(prob)
    s = centerline_scores(g, truth)
    assert s["f1@0.5"] >= 0.95  # measured 0.984
    assert abs(s["radius_bias"]) <= 0.1  # measured -0.04 mm
    # two tubes, the second one only ever 60 % certain: the threshold decides whether it counts
    pair = synth.touching_tubes(length_mm=12.0, radius_mm=1.5, gap_mm=3.0)
    p = np.array(synth.voxelize(pair, spacing=0.4, partial_volume=True).data)
    grid = synth.voxelize(pair, spacing=0.4)
    x = grid.voxel_to_world(np.argwhere(np.ones(grid.shape, bool)))[:, 0].reshape(grid.shape)
    p[x > pair.meta["center"][0]] *= 0.6
    assert extract(p, affine=grid.affine).n_components == 2
    assert extract(p, affine=grid.affine, threshold=0.7).n_components == 1


def test_label_map_keeps_touching_labels_apart(touching):
    truth, lab, both = touching
    g = extract(lab)
    assert g.n_components == 2
    assert g.node_data["label"].dtype.kind == "i"
    tube = truth.node_data["tube"]
    for c in range(2):
        labels = np.unique(g.node_data["label"][g.component_labels == c])
        assert labels.size == 1
        # the component is the tube of its label, not the other
        part = g.subgraph(g.component_labels == c)
        own = truth.subgraph(tube == labels[0] - 1)
        assert centerline_scores(part, own)["f1@0.5"] >= 0.9
    # the same voxels as one binary mask: the labels are gone (no label attribute)
    fused = extract(both)
    assert "label" not in fused.node_data


def test_label_map_stored_as_floats(touching):
    # nibabel's get_fdata() returns a label map as float64: whole numbers beyond 1 are labels
    _, lab, _ = touching
    want = extract(lab)
    data = np.asarray(lab.data)
    for dtype in (np.float64, np.float32):
        got = extract(Volume(data.astype(dtype), lab.affine))
        np.testing.assert_array_equal(got.positions, want.positions)
        np.testing.assert_array_equal(got.node_data["label"], want.node_data["label"])
    one = extract(Volume((data == 2).astype(np.float32), lab.affine), label=1)
    assert np.allclose(one.positions, extract(lab, label=2).positions)
    with pytest.raises(InvalidInputError, match="rescale it"):
        extract(Volume(data * 0.75, lab.affine))  # 0.75 / 1.5: neither probabilities nor labels


def test_per_label_and_label_selection(touching, tmp_path):
    truth, lab, _ = touching
    per = extract(lab, per_label=True)
    assert sorted(per) == [1, 2]
    for c, g in per.items():
        assert g.n_components == 1
        assert np.all(g.node_data["label"] == c)
    only2 = extract(lab, label=2)
    assert np.all(only2.node_data["label"] == 2)
    assert np.allclose(only2.positions, per[2].positions)
    both = extract(lab, label=[1, 2])
    assert both.n_nodes == per[1].n_nodes + per[2].n_nodes
    # names from an nnU-Net dataset.json, and from a TotalSegmentator-style {id: name} dict
    ds = tmp_path / "dataset.json"
    ds.write_text(json.dumps({"labels": {"background": 0, "left": 1, "right": 2}}))
    by_name = extract(lab, label="right", labels_json=ds)
    assert np.allclose(by_name.positions, only2.positions)
    by_dict = extract(lab, label=["LEFT"], labels={1: "left", 2: "right"})
    assert np.all(by_dict.node_data["label"] == 1)


def test_absent_or_unknown_label_is_a_clear_error(touching):
    _, lab, _ = touching
    with pytest.raises(
        InvalidInputError, match=r"label 7 is not in the source; labels present: \[1, 2\]"
    ):
        extract(lab, label=7)
    with pytest.raises(InvalidInputError, match=r"labels present: \[1 \(left\), 2 \(right\)\]"):
        extract(lab, label=7, labels={"left": 1, "right": 2})
    with pytest.raises(InvalidInputError, match="not a known label name"):
        extract(lab, label="aorta", labels={"left": 1, "right": 2})
    with pytest.raises(InvalidInputError, match="no label names are known"):
        extract(lab, label="aorta")
    with pytest.raises(InvalidInputError, match="probability map"):
        extract(lab.data.astype(np.float32) / 2, spacing=0.4, label=1)


def test_tree_option_roots_each_component():
    loop = synth.voxelize(synth.loop(), spacing=SPACING)
    plain = extract(loop)
    g = extract(loop, tree=True)
    assert plain.n_cycles == 1 and g.is_tree and g.root is not None
    assert np.array_equal(g.positions, plain.positions)  # same nodes, same order
    assert len(g.meta["cuts"]) == 1  # the one real loop is cut, and recorded
    a, b = g.meta["cuts"][0]
    assert plain.adjacency[a, b] and not g.adjacency[a, b]
    tips = plain.endpoints  # the tips before the cut: the root is the thickest of them
    assert g.root in tips and g.radii[g.root] == g.radii[tips].max()
    # two components: a forest, every edge parent -> child, each root a tip
    forest = synth.forest()
    f = extract(synth.voxelize(forest, spacing=SPACING), tree=True)
    roots = f.meta["roots"]
    assert len(roots) == f.n_components >= 2
    indeg = np.bincount(f.edges[:, 1], minlength=f.n_nodes)
    assert np.all(indeg[roots] == 0)
    assert np.all(np.delete(indeg, roots) == 1)
    # root= a world point: the nearest node becomes the root of its component
    target = f.positions[f.endpoints[-1]]
    f2 = to_forest(extract(synth.voxelize(forest, spacing=SPACING)), target + 0.01)
    assert int(np.argmin(np.linalg.norm(f2.positions - target, axis=1))) in f2.meta["roots"]


def test_backbone_is_run_first(tree_case):
    truth, vol = tree_case

    class Doubler:  # a stand-in "model": the mask back as a float probability map
        def segment(self, v):
            return Volume(np.asarray(v.data, np.float32), v.affine)

    g = extract(vol, backbone=Doubler())
    assert np.allclose(g.positions, extract(vol).positions, atol=1e-6)
    with pytest.raises(InvalidInputError, match="segment"):
        extract(vol, backbone=object())

    class Bad:
        def segment(self, v):
            return [1, 2, 3]

    with pytest.raises(InvalidInputError, match="must return a Volume"):
        extract(vol, backbone=Bad())


def test_empty_mask_raises_or_warns():
    empty = np.zeros((20, 20, 20), bool)
    with pytest.raises(EmptyInputError):
        extract(empty, spacing=1.0)
    with pytest.warns(RuntimeWarning, match="empty"):
        g = extract(empty, spacing=1.0, on_empty="warn")
    assert g.n_nodes == 0
    with pytest.raises(EmptyInputError):
        extract(np.zeros((20, 20, 20), np.uint8), spacing=1.0, label=None, per_label=True)


def test_bad_inputs_are_clear_errors(tmp_path):
    torch = pytest.importorskip("torch")
    cube = np.zeros((10, 10, 10), np.float32)
    nan = cube.copy()
    nan[3, 4, 5] = np.nan
    with pytest.raises(InvalidInputError, match=r"NaN or inf .*voxel \(3, 4, 5\)"):
        extract(nan, spacing=1.0)
    with pytest.raises(InvalidInputError, match="as integers"):
        extract(cube - 2.0, spacing=1.0)  # whole numbers beyond 1 are labels, negative ones not
    with pytest.raises(InvalidInputError, match="rescale"):
        extract(cube + 1.5, spacing=1.0)
    with pytest.raises(InvalidInputError, match="3D"):
        extract(np.zeros((10, 10), bool), spacing=1.0)
    with pytest.raises(InvalidInputError, match=r"3D.*arr\[0\]"):
        extract(np.zeros((1, 10, 10, 10), bool), spacing=1.0)
    with pytest.raises(InvalidInputError, match="3D"):
        extract(np.zeros((2, 10, 10, 10), bool), spacing=1.0)
    with pytest.raises(InvalidInputError, match="select one channel"):
        extract(torch.zeros(1, 2, 10, 10, 10), spacing=1.0)
    singular = np.diag([1.0, 1.0, 0.0, 1.0])
    with pytest.raises(InvalidInputError, match="singular"):
        extract(np.ones((10, 10, 10), bool), affine=singular)
    with pytest.raises(InvalidInputError, match="must be a path, Volume"):
        extract({"data": cube})
    with pytest.raises(InvalidInputError, match="must be a path, Volume"):
        extract(42)
    with pytest.raises(FileFormatError, match="no such file"):
        extract(tmp_path / "missing.nii.gz")
    with pytest.raises(InvalidInputError, match="without a voxel size"):
        extract(np.ones((10, 10, 10), bool))
    with pytest.raises(InvalidInputError, match="carries its own affine"):
        extract(Volume(np.ones((10, 10, 10), bool)), spacing=1.0)
    with pytest.raises(InvalidInputError, match="unknown extract options"):
        extract(np.ones((10, 10, 10), bool), spacing=1.0, spur_ration=2)
    with pytest.raises(InvalidInputError, match="threshold"):
        extract(np.ones((10, 10, 10), bool), spacing=1.0, threshold=1.5)
    with pytest.raises(InvalidInputError, match="negative"):
        extract(-np.ones((10, 10, 10), np.int16), spacing=1.0)


# ---------------------------------------------------------------------- CLI
def _cli(argv):
    parser = argparse.ArgumentParser(prog="vesseltree")
    extract_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_graph_and_branch_table(touching, tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    truth, lab, _ = touching
    src = tmp_path / "labels.nii.gz"
    write_volume(lab, src)
    out = tmp_path / "graph.npz"
    assert _cli(["extract", str(src), "-o", str(out), "--no-progress"]) == 0
    g = read_graph(out)
    # NIfTI keeps the affine in float32: compare with the volume as the CLI read it
    ref = extract(read_volume(src))
    assert g.n_nodes == ref.n_nodes and np.allclose(g.positions, ref.positions, atol=1e-4)
    assert centerline_scores(g, extract(lab))["f1@0.5"] >= 0.99
    table = pd.read_csv(tmp_path / "graph_branches.csv")
    assert len(table) == len(g.branches)
    assert np.allclose(
        np.sort(table["branch_distance"]), np.sort(branch_table(g)["branch_distance"])
    )
    assert set(table["label"]) == {1, 2}
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}") and f"{g.n_nodes} nodes" in line

    # per label, by name, as SWC trees
    ds = tmp_path / "dataset.json"
    ds.write_text(json.dumps({"labels": {"background": 0, "left": 1, "right": 2}}))
    out2 = tmp_path / "tubes.swc"
    code = _cli(
        ["extract", str(src), "-o", str(out2), "--per-label", "--tree", "--labels-json", str(ds),
         "--label", "left", "2", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    for c in (1, 2):
        t = read_graph(tmp_path / f"tubes_label{c}.swc")
        assert t.is_tree and t.n_nodes == ref.subgraph(ref.node_data["label"] == c).n_nodes
        assert (tmp_path / f"tubes_label{c}_branches.csv").is_file()
    with pytest.raises(FileFormatError, match="unknown suffix"):
        _cli(["extract", str(src), "-o", str(tmp_path / "g.txt")])
    assert not (tmp_path / "g.txt").exists()
