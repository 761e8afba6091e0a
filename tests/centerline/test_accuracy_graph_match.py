"""vesseltree.metrics.graph_match on hand-made graphs with known key points."""

from __future__ import annotations

import numpy as np
import pytest

from vesseltree import InvalidInputError, VesselGraph
from vesseltree.metrics.graph_match import (
    contracted_cycles,
    graph_keypoints,
    match_keypoints,
    tube_keypoints,
)


def path(a, b, n):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.asarray(a, float) + t * (np.asarray(b, float) - np.asarray(a, float))


def voxel_y():
    """A Y whose fork is a triangle of three adjacent junction voxels (as thinning leaves)."""
    pos = [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0.5, 0, 3], [-0.5, 0, 3], [0, 0.5, 3]]
    pos += [[1, 0, 4], [2, 0, 5], [-1, 0, 4], [-2, 0, 5]]
    edges = [[0, 1], [1, 2], [2, 3], [2, 4], [3, 4], [3, 5], [4, 5], [2, 5]]
    edges += [[3, 6], [6, 7], [4, 8], [8, 9]]
    return VesselGraph(np.asarray(pos, float), np.ones(len(pos)), np.asarray(edges))


def test_junction_cluster_is_one_junction_and_no_cycle():
    g = voxel_y()
    assert g.n_cycles > 0  # the voxel cliques
    kp = graph_keypoints(g, merge_mm=1.0)
    assert len(kp["junctions"]) == 1
    assert len(kp["endpoints"]) == 3
    assert contracted_cycles(g) == 0


def test_real_loop_is_counted():
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = np.stack([10 * np.cos(t), 10 * np.sin(t), 0 * t], 1)
    edges = np.stack([np.arange(40), (np.arange(40) + 1) % 40], 1)
    g = VesselGraph(ring, np.ones(40), edges)
    assert contracted_cycles(g) == 1


def tubes(*lines):
    pos = np.concatenate(lines)
    tube = np.repeat(np.arange(len(lines)), [len(x) for x in lines])
    edges = [
        np.stack([np.arange(s, s + len(x) - 1), np.arange(s + 1, s + len(x))], 1)
        for s, x in zip(np.cumsum([0] + [len(x) for x in lines[:-1]]), lines)
    ]
    return VesselGraph(pos, np.ones(len(pos)), np.concatenate(edges), node_data={"tube_id": tube})


def test_side_branch_is_a_junction_and_its_start_no_endpoint():
    main = path([0, 0, 0], [0, 0, 40], 401)
    side = path([0.8, 0, 20], [15, 0, 30], 200)  # starts 0.8 mm from the main tube
    kp = tube_keypoints(tubes(main, side), attach_mm=2.0)
    assert len(kp["junctions"]) == 1
    np.testing.assert_allclose(kp["junctions"][0], [0, 0, 20], atol=0.2)
    assert len(kp["endpoints"]) == 3  # the side branch's start touches the main tube


def test_tube_split_in_two_is_no_junction():
    a = path([0, 0, 0], [0, 0, 20], 201)
    b = path([0, 0, 20.3], [0, 0, 40], 201)  # the same vessel, drawn as a second tube
    kp = tube_keypoints(tubes(a, b), attach_mm=2.0)
    assert len(kp["junctions"]) == 0
    assert len(kp["endpoints"]) == 2


def test_tube_grazing_the_place_is_no_junction():
    """A tube that steps out of the place's balls for a few points and back is not two pieces."""
    a = path([0, 0, 0], [0, 0, 20], 201)
    b = path([0, 0, 20.3], [0, 0, 40], 198)
    z = b[:, 2]
    b[(z > 20.55) & (z < 20.75), 0] = 1.1  # 1.1 mm sideways: outside the 1 mm balls
    kp = tube_keypoints(tubes(a, b), attach_mm=2.0)
    assert len(kp["junctions"]) == 0
    assert len(kp["endpoints"]) == 2
    # a run that goes 3 mm out and comes back (a loop of 6 mm) still counts as two pieces
    b[(z > 20.55) & (z < 20.75), 0] = 3.0
    assert len(tube_keypoints(tubes(a, b), attach_mm=2.0)["junctions"]) == 1


def test_two_children_from_one_end_make_one_junction():
    parent = path([0, 0, 0], [0, 0, 20], 201)
    left = path([0, 0, 20.2], [-8, 0, 30], 150)
    right = path([0, 0, 20.2], [8, 0, 30], 150)
    kp = tube_keypoints(tubes(parent, left, right), attach_mm=2.0)
    assert len(kp["junctions"]) == 1
    assert len(kp["endpoints"]) == 3


def test_match_keypoints_counts_spurious_endpoints():
    truth = {"junctions": np.zeros((1, 3)), "endpoints": np.array([[0, 0, 10.0], [0, 0, -10]])}
    pred = {
        "junctions": np.array([[0.5, 0, 0]]),
        "endpoints": np.array([[0, 0, 10.5], [0, 0, -9], [5, 5, 5]]),
    }
    s = match_keypoints(pred, truth, tolerance_mm=2.0)
    assert s["junction_f1"] == 1.0
    assert s["spurious_endpoints"] == 1
    assert s["endpoint_recall"] == 1.0 and s["endpoint_precision"] == pytest.approx(2 / 3)


def test_bad_input():
    g = voxel_y()
    with pytest.raises(InvalidInputError, match="tube_id"):
        tube_keypoints(g)
    with pytest.raises(InvalidInputError, match="merge_mm"):
        graph_keypoints(g, merge_mm=-1)
    with pytest.raises(InvalidInputError, match="VesselGraph"):
        contracted_cycles("not a graph")
