"""branch_table against analytic phantoms with known lengths, radii and branch types."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vesseltree import InvalidInputError, VesselGraph, synth
from vesseltree.centerline import branch_table, extract
from vesseltree.centerline.table import BRANCH_COLUMNS

SPACING = (0.5, 0.5, 0.8)


def test_y_phantom_lengths_radii_types():
    y = synth.y_bifurcation(parent_length_mm=20.0, child_length_mm=15.0, radius_mm=2.0)
    t = branch_table(y)
    assert list(t.columns) == [c for c in BRANCH_COLUMNS if c != "label"]
    assert len(t) == 3
    parent = t.iloc[int(np.argmax(t["branch_distance"]))]
    assert parent["branch_distance"] == pytest.approx(20.0, abs=1e-9)
    assert sorted(t["branch_distance"])[:2] == pytest.approx([15.0, 15.0], abs=1e-9)
    # straight branches: chord == arc, tortuosity 1
    assert np.allclose(t["euclidean_distance"], t["branch_distance"])
    assert np.allclose(t["tortuosity"], 1.0)
    assert set(t["branch_type"]) == {1}  # junction-endpoint, skan's code 1
    assert set(t["skeleton_id"]) == {0}
    # radii: the parent is 2 mm; each child carries its own radius except at the junction node
    r1, r2 = y.meta["child_radii_mm"]
    assert parent["mean_radius"] == pytest.approx(2.0)
    children = t.drop(index=parent.name)
    assert sorted(children["min_radius"]) == pytest.approx(sorted([r1, r2]))
    assert np.allclose(children["max_radius"], 2.0)
    # end coordinates in mm: every branch touches the junction, the parent starts at the origin
    junction = np.array(y.meta["junction"])
    src = t[["coord_src_0", "coord_src_1", "coord_src_2"]].to_numpy()
    dst = t[["coord_dst_0", "coord_dst_1", "coord_dst_2"]].to_numpy()
    touches = np.isclose(np.linalg.norm(src - junction, axis=1), 0) | np.isclose(
        np.linalg.norm(dst - junction, axis=1), 0
    )
    assert touches.all()
    assert np.allclose(y.positions[t["node_id_src"]], src)


def test_extracted_y_matches_its_truth():
    y = synth.y_bifurcation()
    g = extract(synth.voxelize(y, spacing=SPACING))
    t = branch_table(g).sort_values("branch_distance")
    assert len(t) == 3 and set(t["branch_type"]) == {1}
    assert t["branch_distance"].sum() == pytest.approx(g.total_length)
    # the voxelised tubes end in round caps one radius past each tip; the extractor's tips stop
    # about where the cap's ball sits, at the truth tips, so each branch is about its truth length
    # (measured 15.8, 15.9, 19.3; the junction's place shifts the split by a little)
    r1, r2 = y.meta["child_radii_mm"]
    assert np.allclose(t["branch_distance"], [15.0, 15.0, 20.0], atol=1.5)
    # the parent is straight; children bend a little into the junction (measured 1.03-1.11)
    assert np.all(t["tortuosity"] >= 1.0)
    assert t["tortuosity"].iloc[-1] < 1.02 and np.all(t["tortuosity"] < 1.2)
    assert np.allclose(np.sort(t["mean_radius"]), sorted([r2, r1, 2.0]), atol=0.15)


def test_cycles_forest_labels_and_dict_form():
    # an isolated ring: type 3, closed, so no chord and no tortuosity
    n = 24
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = VesselGraph(
        np.stack([5 * np.cos(a), 5 * np.sin(a), np.zeros(n)], axis=1),
        np.ones(n),
        np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1),
    )
    t = branch_table(ring)
    assert list(t["branch_type"]) == [3]
    assert t["branch_distance"][0] == pytest.approx(n * 2 * 5 * math.sin(math.pi / n))
    assert np.isnan(t["tortuosity"][0])
    # the loop phantom: its two arcs run junction to junction (type 2), the stems are type 1
    loop = synth.loop(loop_radius_mm=8.0, stem_length_mm=10.0)
    lt = branch_table(loop)
    arcs = lt[lt["branch_type"] == 2]
    assert len(arcs) == 2 and len(lt[lt["branch_type"] == 1]) == 2
    # each arc is a half circle of radius 8 (polyline): length ~ 8 pi, chord 16, tortuosity ~ pi/2
    assert np.allclose(arcs["branch_distance"], 8 * np.pi, rtol=2e-3)
    assert np.allclose(arcs["tortuosity"], np.pi / 2, rtol=2e-3)
    # a straight tube alone: endpoint to endpoint (type 0); a forest: one skeleton_id per tree
    assert list(branch_table(synth.cylinder(12.0, 1.0))["branch_type"]) == [0]
    forest = synth.forest()
    ft = branch_table(forest)
    assert sorted(set(ft["skeleton_id"])) == [0, 1]
    assert sorted(ft.groupby("skeleton_id").size()) == [1, 3]
    # labels: the most common node label of each branch; the dict form equals the DataFrame
    labelled = forest.replace(
        node_data={**forest.node_data, "label": forest.node_data["tree_id"] + 5}
    )
    d = branch_table(labelled, as_dict=True)
    df = branch_table(labelled)
    assert set(d) == set(BRANCH_COLUMNS)
    for k, v in d.items():
        assert isinstance(v, np.ndarray) and len(v) == len(df)
        assert np.array_equal(np.asarray(df[k]), v, equal_nan=v.dtype.kind == "f")
    comp_label = {
        int(c): int(forest.node_data["tree_id"][forest.component_labels == c][0]) + 5
        for c in range(2)
    }
    assert all(comp_label[s] == lab for s, lab in zip(d["skeleton_id"], d["label"]))


def test_empty_graph_and_bad_input():
    empty = VesselGraph(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 2), np.int64))
    t = branch_table(empty)
    assert len(t) == 0 and "branch_distance" in t.columns
    with pytest.raises(InvalidInputError, match="VesselGraph"):
        branch_table(np.zeros((3, 3)))
