"""VesselGraph: validation, derived properties, trees, subgraphs, resampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import general_affine, vessel_graphs

from vesseltree import InvalidInputError, VesselGraph
from vesseltree.errors import VesselTreeError


def y_graph() -> VesselGraph:
    """Trunk 0-1-2 (z axis), children 2-3-4 and 2-5-6."""
    pos = np.array(
        [[0, 0, 0], [0, 0, 1], [0, 0, 2], [1, 0, 3], [2, 0, 4], [-1, 0, 3], [-2, 0, 4]], float
    )
    rad = np.array([2.0, 1.9, 1.8, 1.2, 1.1, 1.0, 0.9])
    return VesselGraph(pos, rad, [[0, 1], [1, 2], [2, 3], [3, 4], [2, 5], [5, 6]])


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"positions": np.zeros((3, 2))}, "positions must have shape (N, 3)"),
        ({"positions": [[0, 0, np.nan], [0, 0, 1], [0, 0, 2]]}, "positions must be finite"),
        ({"positions": [[0, 0, np.inf], [0, 0, 1], [0, 0, 2]]}, "positions must be finite"),
        ({"radii": [1.0, 0.0, 1.0]}, "radii must be positive"),
        ({"radii": [1.0, -2.0, 1.0]}, "radii must be positive"),
        ({"radii": [1.0, 1.0]}, "radii must have shape (3,)"),
        ({"radii": [1.0, np.nan, 1.0]}, "radii must be finite"),
        ({"edges": [[0, 3]]}, "outside 0..2"),
        ({"edges": [[0, -1]]}, "outside 0..2"),
        ({"edges": [[1, 1]]}, "self-loops"),
        ({"edges": [[0, 1], [1, 0]]}, "must not repeat"),
        ({"edges": [0, 1, 2]}, "edges must have shape (E, 2)"),
        ({"edges": [[0.5, 1]]}, "integer node indices"),
        ({"affine": np.zeros((4, 4))}, "last row"),
        ({"affine": np.diag([1.0, 1.0, 0.0, 1.0])}, "singular"),
        ({"affine": np.eye(3)}, "affine must have shape (4, 4)"),
        ({"affine": np.diag([1.0, np.nan, 1.0, 1.0])}, "affine must be finite"),
        ({"root": 7}, "root must be a node index"),
        ({"root": 1, "edges": [[0, 1], [1, 2]]}, "not all oriented"),
        ({"root": 0, "edges": [[0, 1]]}, "needs a connected tree"),
        ({"node_data": {"label": [1, 2]}}, "node_data['label'] must have one row per node"),
        ({"node_data": {"name": ["a", "b", "c"]}}, "must be numeric"),
        ({"edge_data": {"w": [1.0, 2.0, 3.0]}}, "edge_data['w'] must have one row per edge"),
        ({"meta": {"x": object()}}, "meta must be JSON-serialisable"),
    ],
)
def test_bad_input_names_argument_and_value(kwargs, fragment):
    args = {
        "positions": [[0, 0, 0], [0, 0, 1], [0, 0, 2]],
        "radii": [1.0, 1.0, 1.0],
        "edges": [[0, 1], [1, 2]],
    }
    args.update(kwargs)
    with pytest.raises(InvalidInputError) as info:
        VesselGraph(args.pop("positions"), args.pop("radii"), args.pop("edges"), **args)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, VesselTreeError)


def test_immutable_and_copies_inputs():
    pos = np.zeros((2, 3))
    pos[1, 2] = 1
    g = VesselGraph(pos, [1, 1], [[0, 1]])
    pos[0, 0] = 99  # the caller's array is not the graph's
    assert g.positions[0, 0] == 0
    with pytest.raises(ValueError):
        g.positions[0, 0] = 5
    with pytest.raises(AttributeError):
        g.root = 0
    with pytest.raises(TypeError):
        g.node_data["x"] = np.zeros(2)


def test_empty_graph_is_valid():
    g = VesselGraph(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 2), int))
    assert (g.n_nodes, g.n_edges, g.n_components, len(g.branches)) == (0, 0, 0, 0)
    assert not g.is_tree
    with pytest.raises(InvalidInputError, match="empty graph"):
        g.to_tree()


# ---------------------------------------------------------------------- derived properties
def test_y_graph_properties():
    g = y_graph()
    assert g.degrees.tolist() == [1, 2, 3, 2, 1, 2, 1]
    assert g.endpoints.tolist() == [0, 4, 6]
    assert g.junctions.tolist() == [2]
    assert g.is_tree and g.is_forest and g.n_cycles == 0
    paths = sorted(b.tolist() for b in g.branches)
    assert paths == [[0, 1, 2], [2, 3, 4], [2, 5, 6]]
    assert np.isclose(g.total_length, 2 + 4 * np.sqrt(2))
    assert np.allclose(sorted(g.branch_lengths), [2, 2 * np.sqrt(2), 2 * np.sqrt(2)])
    # each edge maps to the branch that contains it
    for e, b in zip(g.edges.tolist(), g.edge_branch.tolist()):
        path = g.branches[b].tolist()
        assert any(path[i : i + 2] in (e, e[::-1]) for i in range(len(path) - 1))
    with pytest.raises(InvalidInputError, match="rooted"):
        _ = g.parents


def test_isolated_cycle_is_one_closed_branch():
    t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    pos = np.stack([np.cos(t), np.sin(t), 0 * t], 1) * 5
    g = VesselGraph(pos, np.ones(8), [[i, (i + 1) % 8] for i in range(8)])
    assert g.n_cycles == 1 and not g.is_forest
    (b,) = g.branches
    assert b[0] == b[-1] and len(b) == 9
    assert np.isclose(g.branch_lengths[0], g.total_length)


@settings(max_examples=60, deadline=None)
@given(vessel_graphs())
def test_branches_partition_edges(g):
    # every edge lies in exactly one branch; branch interiors have degree 2; ends do not (unless a loop)
    counts = np.bincount(g.edge_branch, minlength=len(g.branches)) if g.n_edges else np.zeros(0)
    assert sum(len(b) - 1 for b in g.branches) == g.n_edges
    assert np.array_equal(counts, [len(b) - 1 for b in g.branches])
    for b in g.branches:
        assert np.all(g.degrees[b[1:-1]] == 2)
    assert np.isclose(g.branch_lengths.sum(), g.total_length)
    assert g.n_cycles == g.n_edges - g.n_nodes + g.n_components >= 0


# ---------------------------------------------------------------------- trees
def test_to_tree_rooted_views():
    t = y_graph().to_tree(root=0)
    assert t.root == 0 and t.parents.tolist() == [-1, 0, 1, 2, 3, 2, 5]
    assert [c.tolist() for c in t.children] == [[1], [2], [3, 5], [4], [], [6], []]
    assert t.meta["cuts"] == []
    assert all(t.parents[b[1]] == b[0] for b in t.branches)  # branches run away from the root
    # default root: the thickest tip
    assert y_graph().to_tree().root == 0
    # rooting at a leaf flips the orientation
    t6 = y_graph().to_tree(root=6)
    assert t6.parents[6] == -1 and t6.parents[0] == 1


def test_to_tree_cuts_the_thinnest_edge_of_a_cycle():
    # square 0-1-2-3-0 with a thin edge 2-3
    pos = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    g = VesselGraph(pos, [2.0, 2.0, 0.5, 0.5], [[0, 1], [1, 2], [2, 3], [3, 0]])
    t = g.to_tree(root=0)
    assert t.is_tree and t.n_edges == 3
    assert t.meta["cuts"] == [[2, 3]]


def test_to_tree_components():
    pos = np.array([[0, 0, 0], [0, 0, 1], [5, 0, 0], [5, 0, 1], [5, 0, 3]], float)
    g = VesselGraph(pos, np.ones(5), [[0, 1], [2, 3], [3, 4]])
    with pytest.raises(InvalidInputError, match="2 components"):
        g.to_tree()
    t = g.to_tree(keep="largest")
    assert t.n_nodes == 3 and t.meta["dropped_nodes"] == [0, 1]
    t = g.to_tree(root=1, keep="root")
    assert t.n_nodes == 2 and t.root == 1
    parts = g.components()
    assert [p.n_nodes for p in parts] == [3, 2]


@settings(max_examples=60, deadline=None)
@given(vessel_graphs(rooted=False))
def test_to_tree_property(g):
    if g.n_components > 1:
        t = g.to_tree(keep="largest")
    else:
        t = g.to_tree()
    assert t.is_tree and t.root is not None
    assert len(t.meta["cuts"]) == (g.n_cycles if g.n_components == 1 else len(t.meta["cuts"]))
    par = t.parents
    assert (par == -1).sum() == 1
    # every kept edge is parent -> child
    assert np.all(par[t.edges[:, 1]] == t.edges[:, 0])


# ---------------------------------------------------------------------- subgraph, resample, transform
def test_subgraph_keeps_data_and_root():
    g = (
        y_graph()
        .to_tree(root=0)
        .replace(node_data={"label": np.arange(7)}, edge_data={"w": np.arange(6.0)})
    )
    s = g.subgraph([0, 1, 2, 3, 4])
    assert s.root == 0 and s.n_edges == 4 and s.node_data["label"].tolist() == [0, 1, 2, 3, 4]
    assert s.edge_data["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
    s2 = g.subgraph(np.array([False, True, True, True, False, True, False]))
    assert s2.root is None and s2.n_nodes == 4


def test_resample_uniform_steps_keep_key_nodes():
    g = y_graph().to_tree(root=0).replace(node_data={"label": np.array([1, 1, 1, 2, 2, 3, 3])})
    r = g.resample(0.1)
    assert r.root is not None and r.is_tree
    assert np.isclose(r.total_length, g.total_length)
    assert r.edge_lengths.max() <= 0.1 + 1e-9
    for b in r.branches:
        seg = np.linalg.norm(np.diff(r.positions[b], axis=0), axis=1)
        assert np.allclose(seg, seg.mean())  # equal steps within a branch
    # junctions and tips keep exact positions and radii
    for node in (0, 2, 4, 6):
        d = np.linalg.norm(r.positions - g.positions[node], axis=1)
        assert d.min() < 1e-12 and np.isclose(r.radii[np.argmin(d)], g.radii[node])
    assert len(r.junctions) == 1 and len(r.endpoints) == 3
    assert set(np.unique(r.node_data["label"]).tolist()) == {1, 2, 3}
    # radii interpolate linearly: the midpoint of edge 0-1 has radius 1.95
    mid = np.argmin(np.linalg.norm(r.positions - [0, 0, 0.5], axis=1))
    assert np.isclose(r.radii[mid], 1.95)
    coarse = g.resample(10.0)
    assert coarse.n_nodes == 4 and coarse.n_edges == 3
    with pytest.raises(InvalidInputError, match="step_mm"):
        g.resample(0)


def test_transform_and_voxel_positions():
    rng = np.random.default_rng(3)
    aff = general_affine(rng)
    g = y_graph().replace(affine=aff)
    vox = g.voxel_positions()
    assert np.allclose(vox @ aff[:3, :3].T + aff[:3, 3], g.positions)
    m = np.eye(4)
    m[:3, :3] = 2 * np.eye(3)
    m[:3, 3] = [1, 2, 3]
    h = g.transform(m)
    assert np.allclose(h.positions, 2 * g.positions + [1, 2, 3]) and np.allclose(
        h.radii, 2 * g.radii
    )
    assert np.allclose(h.voxel_positions(), vox)  # the affine moved with the points
