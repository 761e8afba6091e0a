"""Analytic phantoms: topology, exact geometry, errors."""

from __future__ import annotations

import numpy as np
import pytest

from vesseltree import InvalidInputError
from vesseltree.synth import cylinder, forest, helix, loop, touching_tubes, y_bifurcation


def test_cylinder():
    g = cylinder(12.0, 1.5, start=(1.0, 2.0, 3.0), direction=(0.0, 2.0, 0.0), step_mm=0.5)
    assert g.root == 0 and g.is_tree and len(g.branches) == 1
    assert np.allclose(g.positions[0], [1.0, 2.0, 3.0]) and np.allclose(
        g.positions[-1], [1.0, 14.0, 3.0]
    )
    assert np.allclose(g.radii, 1.5)
    assert g.total_length == pytest.approx(12.0)
    assert g.edge_lengths.max() <= 0.5 + 1e-12
    assert g.meta["phantom"] == "cylinder"


def test_y_bifurcation():
    g = y_bifurcation(radius_mm=2.0, angle_deg=80.0, exponent=3.0, asymmetry=0.6)
    assert g.root == 0 and g.is_tree
    assert len(g.junctions) == 1 and g.degrees[g.junctions[0]] == 3
    assert len(g.branches) == 3 and len(g.endpoints) == 3
    j = int(g.junctions[0])
    kids = [b for b in g.branches if b[0] == j]
    r1, r2 = (g.radii[b[1]] for b in kids)
    assert r1**3 + r2**3 == pytest.approx(2.0**3)  # Murray's law
    assert r2 / r1 == pytest.approx(0.6)
    d = [
        (g.positions[b[-1]] - g.positions[b[0]])
        / np.linalg.norm(g.positions[b[-1]] - g.positions[b[0]])
        for b in kids
    ]
    assert np.degrees(np.arccos(d[0] @ d[1])) == pytest.approx(80.0)
    # the thinner child turns further from the parent's direction (+z)
    assert np.arccos(d[1][2]) > np.arccos(d[0][2])


def test_helix():
    g = helix(radius_mm=1.0, helix_radius_mm=5.0, pitch_mm=6.0, turns=2.0)
    assert g.root == 0 and g.is_tree and len(g.branches) == 1
    assert np.allclose(np.linalg.norm(g.positions[:, :2], axis=1), 5.0)
    assert g.positions[-1, 2] == pytest.approx(12.0)
    exact = 2 * np.pi * 2.0 * np.hypot(5.0, 6.0 / (2 * np.pi))
    assert g.total_length == pytest.approx(exact, rel=1e-3)


def test_loop_has_one_cycle():
    g = loop()
    assert g.root is None
    assert g.n_components == 1 and g.n_cycles == 1 and not g.is_tree
    assert len(g.junctions) == 2 and np.all(g.degrees[g.junctions] == 3)
    assert len(g.branches) == 4 and len(g.endpoints) == 2
    # to_tree cuts exactly one edge
    assert len(g.to_tree().meta["cuts"]) == 1


def test_touching_tubes():
    g = touching_tubes(radius_mm=1.5, gap_mm=0.0)
    assert g.root is None and g.n_components == 2 and g.is_forest
    a, b = (g.positions[g.node_data["tube"] == k] for k in (0, 1))
    # the surfaces touch: axis distance = 2 r + gap
    assert np.linalg.norm(a[0] - b[0]) == pytest.approx(3.0)
    g2 = touching_tubes(radius_mm=1.0, gap_mm=0.4)
    a, b = (g2.positions[g2.node_data["tube"] == k] for k in (0, 1))
    assert np.linalg.norm(a[0] - b[0]) == pytest.approx(2.4)


def test_forest():
    g = forest()
    assert g.root is None and g.n_components == 2 and g.is_forest
    assert len(g.junctions) == 1 and len(g.branches) == 4
    assert set(np.unique(g.node_data["tree_id"]).tolist()) == {0, 1}
    trees = g.components()
    assert all(t.is_tree for t in trees)
    # the two trees stay apart: every pair of spheres from different trees is disjoint
    y, tube = (g.node_data["tree_id"] == k for k in (0, 1))
    d = np.linalg.norm(g.positions[y][:, None] - g.positions[tube][None], axis=-1)
    assert np.all(d - g.radii[y][:, None] - g.radii[tube][None] > 0)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: cylinder(-1.0), ["length_mm", "-1.0"]),
        (lambda: cylinder(10.0, 0.0), ["radius_mm", "0.0"]),
        (lambda: cylinder(direction=(0, 0, 0)), ["direction"]),
        (lambda: cylinder(step_mm="x"), ["step_mm", "'x'"]),
        (lambda: y_bifurcation(angle_deg=200.0), ["angle_deg", "200.0"]),
        (lambda: y_bifurcation(asymmetry=1.5), ["asymmetry", "1.5"]),
        (lambda: y_bifurcation(exponent=1.0), ["exponent", "1.0"]),
        (lambda: helix(radius_mm=4.0, pitch_mm=6.0), ["pitch_mm", "6.0"]),
        (lambda: helix(radius_mm=3.0, helix_radius_mm=1.0, pitch_mm=2.0), ["curvature radius"]),
        (lambda: loop(loop_radius_mm=2.0, radius_mm=1.5), ["loop_radius_mm", "2.0"]),
        (lambda: touching_tubes(gap_mm=-5.0), ["gap_mm", "-5.0"]),
        (lambda: forest(separation_mm=1.0), ["separation_mm", "1.0"]),
    ],
)
def test_bad_arguments(call, words):
    with pytest.raises(InvalidInputError) as info:
        call()
    for w in words:
        assert w in str(info.value)
