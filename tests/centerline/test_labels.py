"""Label maps whose labels continue each other: the per-label centerlines are joined."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from vesseltree import VesselGraph, Volume, synth
from vesseltree.centerline import extract
from vesseltree.metrics import centerline_scores
from vesseltree.metrics.graph_match import graph_keypoints, match_keypoints

SPACING = (0.5, 0.5, 0.8)


def _label_map(vol: Volume, node_label: np.ndarray, truth) -> Volume:
    """Each vessel voxel takes the label of its nearest truth node."""
    mask = np.asarray(vol.data)
    ijk = np.argwhere(mask)
    _, near = cKDTree(truth.positions).query(vol.voxel_to_world(ijk))
    lab = np.zeros(mask.shape, np.int16)
    lab[tuple(ijk.T)] = node_label[near]
    return Volume(lab, vol.affine)


def _by_branch(truth) -> np.ndarray:
    """Label 1..B of every truth node: its branch (a fork node goes with its parent branch)."""
    out = np.zeros(truth.n_nodes, np.int16)
    for b, path in enumerate(truth.branches):
        out[path[1:-1] if len(path) > 2 else path] = b + 1
    for b, path in enumerate(truth.branches):
        for n in (path[0], path[-1]):
            if out[n] == 0:
                out[n] = b + 1
    return out


def test_tree_labelled_by_branch_is_one_tree_again():
    truth = synth.random_tree(seed=12, n_branches=15)
    vol = synth.voxelize(truth, spacing=SPACING)
    lab = _label_map(vol, _by_branch(truth), truth)
    apart = extract(lab, join_labels=False)
    g = extract(lab)
    n_labels = len(np.unique(apart.node_data["label"]))
    assert n_labels >= 12
    assert apart.n_components == n_labels  # each label alone
    # joined: the labels continue each other, so they are extracted again as one mask: the
    # centerline of the whole tree, each node labelled by the voxels it lies in
    assert len(g.meta["label_joins"]) >= n_labels - 1
    assert g.meta["label_groups"] == [sorted(np.unique(apart.node_data["label"]).tolist())]
    whole = extract(Volume(np.asarray(lab.data) > 0, lab.affine))
    assert g.n_nodes == whole.n_nodes
    assert np.allclose(g.positions, whole.positions, atol=1e-6)
    assert np.array_equal(np.unique(g.node_data["label"]), np.unique(apart.node_data["label"]))
    assert g.n_components == 1
    assert g.n_cycles == 0
    keys = match_keypoints(graph_keypoints(g), graph_keypoints(truth), tolerance_mm=2.0)
    assert keys["junction_f1"] >= 0.9
    assert keys["endpoint_f1"] >= 0.9
    s, s_apart = (centerline_scores(x, truth, tolerances=(0.5, 1.0)) for x in (g, apart))
    assert s["f1@1"] >= 0.97
    assert s["f1@0.5"] >= s_apart["f1@0.5"]  # no label-boundary gaps


def test_thick_fork_labelled_by_branch_keeps_its_centerline():
    # an aorta splitting into the iliacs, labelled by segment (as TotalSegmentator does): each
    # label's centerline stops about a radius (4 mm) short of its boundary; extracted again as
    # one mask, the labelled tree has the binary mask's centerline and fork
    truth = synth.y_bifurcation(radius_mm=4.0, angle_deg=60.0)
    vol = synth.voxelize(truth, spacing=0.8)
    g = extract(_label_map(vol, _by_branch(truth), truth))
    assert g.meta["label_groups"] == [[1, 2, 3]]
    assert sorted(np.unique(g.node_data["label"]).tolist()) == [1, 2, 3]
    assert centerline_scores(g, truth, tolerances=(0.5,))["f1@0.5"] >= 0.9  # 0.95 (joins: 0.68)
    assert len(g.junctions) == 1 and len(g.endpoints) == 3
    fork = truth.positions[truth.junctions[0]]
    assert np.linalg.norm(g.positions[g.junctions[0]] - fork) <= 2.0


def test_side_branch_label_joins_the_vessel_it_leaves():
    # parent and first child: one vessel (label 1) that bends; the other child: label 2
    truth = synth.y_bifurcation(radius_mm=2.0, angle_deg=80.0, asymmetry=0.7)
    vol = synth.voxelize(truth, spacing=SPACING)
    node_label = np.ones(truth.n_nodes, np.int16)
    thin = min(truth.branches[1:], key=lambda p: truth.radii[p].mean())
    node_label[thin[1:]] = 2
    g = extract(_label_map(vol, node_label, truth))
    assert g.n_components == 1
    joins = g.meta["label_joins"]
    assert [j["kind"] for j in joins] == ["end-to-side"]
    # the branch's tip now forms the fork, within 2 mm of the true one
    fork = truth.positions[truth.junctions[0]]
    assert len(g.junctions) == 1
    assert np.linalg.norm(g.positions[g.junctions[0]] - fork) <= 2.0


def test_loop_across_labels_is_kept():
    truth = synth.loop(radius_mm=1.5, loop_radius_mm=8.0)
    vol = synth.voxelize(truth, spacing=SPACING)
    node_label = np.where(truth.positions[:, 0] < -3.0, 2, 1).astype(np.int16)
    g = extract(_label_map(vol, node_label, truth))
    assert sorted(np.unique(g.node_data["label"]).tolist()) == [1, 2]
    assert g.n_components == 1
    assert g.n_cycles == 1  # the loop through both labels
    assert len(g.meta["label_joins"]) == 2


def _circle_of_willis():
    """A circle of Willis with exact truth, its nodes labelled as in TopCoW.

    The ring ACom - A1 - ICA - PCom - P1 - basilar tip - P1 - PCom - ICA - A1 is fed by both ICAs
    and the basilar artery, and the MCAs, A2s and P2s leave it. Labels: 1 BA, 2/3 PCA (right /
    left, P1 and P2), 4/6 ICA, 5/7 MCA, 8/9 PCom, 10 ACom, 11/12 ACA (A1 and A2); a node where
    segments meet takes the label of the first segment listed that reaches it.
    """
    right = {
        "ica": (-9.0, 4.0, -20.0),
        "t": (-8.0, 6.0, 0.0),
        "mca": (-25.0, 8.0, 2.0),
        "a1": (-2.0, 12.0, 0.0),
        "a2": (-2.0, 25.0, 10.0),
        "p1": (-6.0, -8.0, 0.0),
        "p2": (-20.0, -20.0, 3.0),
    }
    at = {("R", k): np.array(v) for k, v in right.items()}
    at |= {("L", k): np.array(v) * [-1, 1, 1] for k, v in right.items()}
    at["ba"], at["tip"] = np.array([0.0, -10.0, -25.0]), np.array([0.0, -10.0, 0.0])
    segments = [("ba", "tip", 1.5, 1)]
    for side, (pca, ica, mca, pcom, aca) in {"R": (2, 4, 5, 8, 11), "L": (3, 6, 7, 9, 12)}.items():
        segments += [
            ((side, "ica"), (side, "t"), 2.0, ica),
            ((side, "t"), (side, "mca"), 1.4, mca),
            (("tip"), (side, "p1"), 1.1, pca),
            ((side, "p1"), (side, "p2"), 1.0, pca),
            ((side, "t"), (side, "p1"), 0.6, pcom),
            ((side, "t"), (side, "a1"), 1.0, aca),
            ((side, "a1"), (side, "a2"), 0.9, aca),
        ]
    segments.append((("R", "a1"), ("L", "a1"), 0.7, 10))
    index = {k: i for i, k in enumerate(at)}
    pos = [at[k] for k in at]
    rad = [0.0] * len(pos)
    label = [0] * len(pos)
    edges = []
    for a, b, r, lab in segments:
        n = int(np.linalg.norm(at[b] - at[a]) / 0.5)
        chain = [index[a]]
        for t in np.linspace(0.0, 1.0, n + 1)[1:-1]:
            pos.append((1 - t) * at[a] + t * at[b])
            rad.append(r)
            label.append(lab)
            chain.append(len(pos) - 1)
        chain.append(index[b])
        for end in (index[a], index[b]):
            rad[end] = max(rad[end], r)
            label[end] = label[end] or lab
        edges += list(zip(chain[:-1], chain[1:]))
    truth = VesselGraph(np.array(pos), np.array(rad), np.array(edges))
    return truth, np.array(label, np.int16)


def test_circle_of_willis_label_map_keeps_its_ring():
    # twelve labels meeting at eight places, four of them at each ICA terminus: joined, the ring
    # through seven labels is kept as the one real cycle, and the graph is the binary mask's
    truth, node_label = _circle_of_willis()
    vol = synth.voxelize(truth, spacing=0.35)
    g = extract(_label_map(vol, node_label, truth))
    whole = extract(vol)
    assert sorted(np.unique(g.node_data["label"]).tolist()) == list(range(1, 13))
    assert g.n_components == 1 and g.n_cycles == 1
    assert g.n_nodes == whole.n_nodes and np.allclose(g.positions, whole.positions, atol=1e-6)
    keys = match_keypoints(graph_keypoints(g), graph_keypoints(truth), tolerance_mm=2.0)
    assert keys["junction_f1"] == 1.0 and keys["endpoint_f1"] == 1.0
    # every tip at its cap's centre (the truth's end), within a voxel
    tips = cKDTree(g.positions[g.endpoints]).query(truth.positions[truth.endpoints])[0]
    assert tips.max() < 0.5
    assert centerline_scores(g, truth, tolerances=(0.5,))["f1@0.5"] >= 0.97
    # each node lies in its own artery: labels agree with the truth's nearest node
    near = cKDTree(truth.positions).query(g.positions)[1]
    assert np.mean(g.node_data["label"] == node_label[near]) >= 0.95


def test_a_label_that_joins_none_has_its_tips_seated():
    # two capsules apart: labels are looked at unseated to find joins; one that joins no other
    # is seated afterwards, as the same vessel is in a binary mask
    a = synth.cylinder(16.0, 2.0, start=(0.1, 0.2, 0.3), direction=(1, 0.2, 0.1))
    b = synth.cylinder(16.0, 1.0, start=(0.3, 12.0, 0.1), direction=(1, -0.1, 0.3))
    both = VesselGraph(
        np.concatenate([a.positions, b.positions]),
        np.concatenate([a.radii, b.radii]),
        np.concatenate([a.edges, b.edges + a.n_nodes]),
    )
    vol = synth.voxelize(both, spacing=0.5)
    node_label = np.repeat([1, 2], [a.n_nodes, b.n_nodes]).astype(np.int16)
    g = extract(_label_map(vol, node_label, both))
    whole = extract(vol)
    assert g.meta["label_joins"] == []
    tips = np.sort(g.positions[g.endpoints], axis=0)
    assert np.allclose(tips, np.sort(whole.positions[whole.endpoints], axis=0), atol=1e-6)
    truth_tips = np.sort(both.positions[both.endpoints], axis=0)
    assert np.abs(tips - truth_tips).max() < 0.3


def test_labels_side_by_side_stay_apart():
    truth = synth.touching_tubes(length_mm=16.0, radius_mm=1.5, gap_mm=0.0)
    both = synth.voxelize(truth, spacing=0.4)
    node_label = (np.asarray(truth.node_data["tube"]) + 1).astype(np.int16)
    g = extract(_label_map(both, node_label, truth))
    assert g.n_components == 2
    assert g.meta["label_joins"] == []


def test_cli_joins_labels_unless_asked_not_to(tmp_path):
    import argparse

    from vesseltree.centerline import cli as extract_cli
    from vesseltree.io import read_graph, write_volume

    truth = synth.loop(radius_mm=1.5, loop_radius_mm=8.0)
    vol = synth.voxelize(truth, spacing=SPACING)
    node_label = np.where(truth.positions[:, 0] < -3.0, 2, 1).astype(np.int16)
    src = tmp_path / "labels.nii.gz"
    write_volume(_label_map(vol, node_label, truth), src)
    parser = argparse.ArgumentParser(prog="vesseltree")
    extract_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    for flags, comps in (([], 1), (["--labels-apart"], 2)):
        out = tmp_path / f"g{len(flags)}.npz"
        args = parser.parse_args(["extract", str(src), "-o", str(out), "--no-progress", *flags])
        assert args.func(args) == 0
        assert read_graph(out).n_components == comps


def test_joins_do_not_depend_on_axis_order_or_orientation():
    truth = synth.random_tree(seed=12, n_branches=15)
    lab = _label_map(synth.voxelize(truth, spacing=SPACING), _by_branch(truth), truth)
    data, aff = np.asarray(lab.data), np.asarray(lab.affine)
    # the same voxels stored flipped along i and with the j and k axes swapped
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, data.shape[0] - 1
    perm = np.eye(4)[[0, 2, 1, 3]]
    other = Volume(np.ascontiguousarray(np.flip(data, 0).transpose(0, 2, 1)), aff @ flip @ perm)

    def joined_points(g):
        return np.asarray(sorted(tuple(j["position"]) for j in g.meta["label_joins"]))

    a, b = extract(lab), extract(other)
    assert len(a.meta["label_joins"]) == len(b.meta["label_joins"]) >= 12
    assert np.allclose(joined_points(a), joined_points(b), atol=1e-3)
    # and the regrouped tree itself, with its node labels
    assert a.n_nodes == b.n_nodes
    d, near = cKDTree(b.positions).query(a.positions)
    assert d.max() <= 1e-4
    assert np.array_equal(a.node_data["label"], b.node_data["label"][near])


def test_group_mask_is_open_where_a_vessel_runs_on_and_sealed_where_labels_touch():
    from scipy import ndimage as ndi

    from vesseltree.centerline.labels import group_mask

    crop = np.zeros((6, 16, 10), np.int16)
    crop[1:5, 1:7, 1:5] = 1  # runs on into label 2 along j
    crop[1:5, 7:15, 1:5] = 2
    crop[1:5, 11:15, 5:9] = 3  # lies beside label 2 (along k), away from that boundary
    eye = np.eye(4)  # voxel = world mm

    def pieces(mask):
        comp, n = ndi.label(mask, np.ones((3, 3, 3)))
        return n, {int(c): set(np.unique(comp[(crop == c) & mask]).tolist()) for c in (1, 2, 3)}

    # no place where a vessel runs on: every touching pair is sealed
    mask, loc = group_mask(crop, [1, 2, 3], [], eye)
    assert np.array_equal(loc > 0, crop > 0)
    n, where = pieces(mask)
    assert n == 3 and where[1] != where[2] != where[3]
    # the end cap between labels 1 and 2 is open, the side contact of 2 and 3 stays sealed
    mask, _ = group_mask(crop, [1, 2, 3], [((2.5, 6.5, 2.5), 2.0)], eye)
    n, where = pieces(mask)
    assert n == 2 and where[1] == where[2] != where[3]
    assert mask[crop == 3].all()  # only the lower label of a sealed pair loses voxels
    # a ball over everything: nothing is sealed
    full, _ = group_mask(crop, [1, 2, 3], [((2.5, 8.0, 5.0), 20.0)], eye)
    assert np.array_equal(full, crop > 0)


def test_group_without_a_centerline_keeps_the_joined_label_centerlines(monkeypatch):
    import importlib

    api = importlib.import_module("vesseltree.centerline.api")
    truth = synth.random_tree(seed=12, n_branches=15)
    lab = _label_map(synth.voxelize(truth, spacing=SPACING), _by_branch(truth), truth)
    # the centerlines the joins were measured on: tips where thinning left them
    apart = extract(lab, join_labels=False, seat_tips=False)
    real = api.group_mask

    def empty(crop, members, contacts, affine):
        mask, loc = real(crop, members, contacts, affine)
        return np.zeros_like(mask), loc

    monkeypatch.setattr(api, "group_mask", empty)
    g = extract(lab)
    assert g.meta["label_groups"] == []
    assert g.n_components == 1
    assert g.n_edges == apart.n_edges + len(g.meta["label_joins"])
    order = np.lexsort(g.positions.T)
    other = np.lexsort(apart.positions.T)
    assert np.array_equal(g.positions[order], apart.positions[other])
    assert np.array_equal(g.node_data["label"][order], apart.node_data["label"][other])
