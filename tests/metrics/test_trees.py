"""Tree reconstruction metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from vesseltree import VesselGraph
from vesseltree.errors import InvalidInputError
from vesseltree.metrics.trees import (
    centerline_distances,
    count_errors,
    is_valid_tree,
    key_topology,
    tree_edit_distance,
    tube_dice,
    validity_rate,
)


def _line(a, b, r=1.0, n=2):
    pts = np.linspace(a, b, n)
    return VesselGraph(pts, np.full(n, r), [(i, i + 1) for i in range(n - 1)], root=0)


def _y(stem=10.0, arm=5.0):
    pos = np.array([[0, 0, 0], [stem, 0, 0], [stem + arm, arm, 0], [stem + arm, -arm, 0]], float)
    return VesselGraph(pos, [1.0, 1.0, 1.0, 1.0], [(0, 1), (1, 2), (1, 3)], root=0)


def test_parallel_lines_give_the_offset_as_chamfer_and_hausdorff():
    a = _line([0, 0, 0], [10, 0, 0], r=1.0)
    b = _line([0, 0.5, 0], [10, 0.5, 0], r=1.3)
    d = centerline_distances(b, a, tolerance_mm=1.0, step_mm=0.05)
    assert d["chamfer_mm"] == pytest.approx(0.5)
    assert d["hausdorff_mm"] == pytest.approx(0.5)
    assert d["f1"] == 1.0 and d["radius_mae_mm"] == pytest.approx(0.3)
    tight = centerline_distances(b, a, tolerance_mm=0.4)
    assert tight["precision"] == 0.0 and tight["f1"] == 0.0


def test_half_covered_line_gives_hand_computed_scores():
    # truth 0..10 on x, prediction 0..5: recall 0.5 + (tolerance 1 mm)/10, precision 1
    truth = _line([0, 0, 0], [10, 0, 0])
    pred = _line([0, 0, 0], [5, 0, 0])
    d = centerline_distances(pred, truth, tolerance_mm=1.0, step_mm=0.01)
    assert d["precision"] == 1.0
    assert d["recall"] == pytest.approx(0.6, abs=2e-3)
    assert d["f1"] == pytest.approx(2 * 0.6 / 1.6, abs=2e-3)
    # truth points at x in (5, 10] are x - 5 away: mean 2.5 over half of the points
    assert d["chamfer_mm"] == pytest.approx(0.5 * (0 + 0.5 * 2.5), abs=1e-2)
    assert d["hausdorff_mm"] == pytest.approx(5.0)


def test_count_errors_and_edit_distance_of_a_y_against_a_line():
    y, line = _y(), _line([0, 0, 0], [10, 0, 0], n=5)
    keys, kids = key_topology(line)
    assert len(keys) == 2 and kids == [[1], []]  # the chain collapses to root + tip
    assert count_errors(y, line) == {
        "node_count_error": 2,  # 4 key nodes vs 2
        "bifurcation_count_error": 1,
        "leaf_count_error": 1,
    }
    # two deletions turn root-bif-(leaf, leaf) into root-leaf: 2 edits over 4 nodes
    assert tree_edit_distance(y, line) == pytest.approx(0.5)
    assert tree_edit_distance(y, line, normalise=False) == 2.0
    assert tree_edit_distance(line, y) == pytest.approx(0.5)
    assert tree_edit_distance(y, y) == 0.0


def test_edit_distance_ignores_child_order():
    # the same topology with the bigger sub-tree listed second
    pos = np.arange(18, dtype=float).reshape(6, 3)
    a = VesselGraph(pos, np.ones(6), [(0, 1), (1, 2), (1, 3), (3, 4), (3, 5)], root=0)
    b = VesselGraph(pos, np.ones(6), [(0, 1), (1, 2), (2, 4), (2, 5), (1, 3)], root=0)
    assert [len(c) for c in key_topology(a)[1]] != [len(c) for c in key_topology(b)[1]]
    assert tree_edit_distance(a, b) == 0.0


def test_validity():
    assert is_valid_tree(_y())
    unrooted = _y().replace(root=None)
    assert not is_valid_tree(unrooted)
    forest = VesselGraph(np.zeros((3, 3)) + np.arange(3)[:, None], np.ones(3), [(0, 1)])
    assert not is_valid_tree(forest)
    assert validity_rate([_y(), unrooted, _y(), forest]) == 0.5
    assert validity_rate([]) == 1.0


def test_tube_dice_matches_the_volume_ratio_of_nested_tubes():
    r = 1.0
    short = _line([0, 0, 0], [10, 0, 0], r=r)
    long = _line([0, 0, 0], [20, 0, 0], r=r)
    v = lambda length: np.pi * r**2 * length + 4 / 3 * np.pi * r**3  # noqa: E731
    expected = 2 * v(10) / (v(10) + v(20))
    assert tube_dice(short, long, spacing_mm=0.1) == pytest.approx(expected, abs=0.01)
    assert tube_dice(long, long, spacing_mm=0.2) == 1.0
    far = _line([0, 50, 0], [10, 50, 0], r=r)
    assert tube_dice(far, short, spacing_mm=0.5) == 0.0


def test_bad_inputs_name_the_argument():
    with pytest.raises(InvalidInputError, match="pred"):
        centerline_distances("x", _y())
    with pytest.raises(InvalidInputError, match="tolerance_mm"):
        centerline_distances(_y(), _y(), tolerance_mm=0)
    with pytest.raises(InvalidInputError, match="truth"):
        tube_dice(_y(), VesselGraph(np.zeros((0, 3)), [], []))
