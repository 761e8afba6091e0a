"""Metrics against hand-computable cases."""

from __future__ import annotations

import numpy as np
import pytest

from vesseltree import InvalidInputError, VesselGraph
from vesseltree.metrics import centerline_scores, dice, keypoint_scores, sample_graph


def line(z0, z1, x=0.0, r=1.0, n=5):
    z = np.linspace(z0, z1, n)
    pos = np.stack([np.full(n, x), np.zeros(n), z], 1)
    return VesselGraph(pos, np.full(n, r), [[i, i + 1] for i in range(n - 1)])


def test_sample_graph_spacing():
    pts, rad = sample_graph(line(0, 10), step_mm=0.1)
    assert len(pts) == 101 and np.allclose(np.sort(pts[:, 2]), np.linspace(0, 10, 101))


def test_shifted_line_scores():
    truth = line(0, 10)
    pred = line(0, 10, x=0.7, r=1.2)  # 0.7 mm off, radius +0.2
    s = centerline_scores(pred, truth)
    assert s["f1@0.5"] == 0.0 and s["f1@1"] == 1.0
    assert np.isclose(s["mean_pred_to_truth"], 0.7) and np.isclose(s["radius_bias"], 0.2)
    # half of the truth is missing from a prediction covering z 0..5
    s = centerline_scores(line(0, 5), truth)
    assert s["precision@0.5"] == 1.0 and abs(s["recall@0.5"] - 0.55) < 0.02


def test_keypoints():
    t = np.array([[0, 0, 0], [10, 0, 0], [20, 0, 0.0]])
    p = np.array([[0.5, 0, 0], [10, 3, 0], [20, 0, 1.0], [40, 0, 0]])
    s = keypoint_scores(p, t, tolerance_mm=2.0)
    assert s["matched"] == 2 and np.isclose(s["precision"], 0.5) and np.isclose(s["recall"], 2 / 3)
    # one-to-one: two predictions near one truth point count once
    s = keypoint_scores([[0, 0, 0], [0.1, 0, 0]], [[0, 0, 0]], tolerance_mm=1)
    assert s["matched"] == 1 and s["precision"] == 0.5


def test_dice_and_errors():
    a = np.zeros((4, 4, 4), bool)
    a[:2] = True
    b = np.zeros_like(a)
    b[1:3] = True
    assert np.isclose(dice(a, b), 0.5)
    with pytest.raises(InvalidInputError, match="same shape"):
        dice(a, b[:3])
    with pytest.raises(InvalidInputError, match="empty graph"):
        centerline_scores(VesselGraph(np.zeros((0, 3)), [], []), line(0, 1))
