"""Graph formats and in-memory conversions: exact round trips, clear errors, atomic writes."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import undirected_edge_set, vessel_graphs

from vesseltree import FileFormatError, InvalidInputError, VesselGraph
from vesseltree.io import (
    from_networkx,
    from_pyg,
    from_pyvista,
    read_graph,
    to_networkx,
    to_pyg,
    to_pyvista,
    write_graph,
)

EXACT = {"rtol": 0.0, "atol": 0.0}
FULL_FORMATS = [".npz", ".json", ".vtp", ".graphml"]
HSETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@HSETTINGS
@given(g=vessel_graphs())
@pytest.mark.parametrize("suffix", FULL_FORMATS)
def test_file_round_trip_is_exact(tmp_path, suffix, g):
    path = tmp_path / f"graph{suffix}"
    write_graph(g, path)
    back = read_graph(path)
    assert g.allclose(back, **EXACT), (g, back)
    for k, v in g.node_data.items():
        assert back.node_data[k].dtype == v.dtype
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind


@HSETTINGS
@given(g=vessel_graphs(allow_cycles=False))
def test_swc_round_trip(tmp_path, g):
    path = tmp_path / "tree.swc"
    write_graph(g, path)
    back = read_graph(path)
    assert np.array_equal(back.positions, g.positions) and np.array_equal(back.radii, g.radii)
    assert undirected_edge_set(back) == undirected_edge_set(g)
    assert back.root == (g.root if g.n_components == 1 else None) or g.root is None
    if g.root is not None:
        assert back.root == g.root and np.array_equal(back.parents, g.parents)
    assert (back.affine is None) == (g.affine is None)
    if g.affine is not None:
        assert np.array_equal(back.affine, g.affine)
    assert dict(back.meta) == dict(g.meta)


@settings(max_examples=40, deadline=None)
@given(g=vessel_graphs())
def test_conversions_round_trip_exactly(g):
    assert g.allclose(from_networkx(to_networkx(g)), **EXACT)
    assert g.allclose(from_pyg(to_pyg(g)), **EXACT)
    assert g.allclose(from_pyvista(to_pyvista(g)), **EXACT)
    assert g.allclose(VesselGraph.from_dict(json.loads(json.dumps(g.to_dict()))), **EXACT)


def test_conversion_contents():
    g = VesselGraph(
        [[0, 0, 0], [0, 0, 1.5], [1, 0, 2]],
        [1.0, 0.8, 0.5],
        [[0, 1], [1, 2]],
        node_data={"label": np.array([3, 3, 4])},
    ).to_tree(root=0)
    nxg = to_networkx(g)
    assert nxg.is_directed() and nxg.nodes[1]["radius"] == 0.8 and nxg.nodes[2]["label"] == 4
    assert nxg.nodes[1]["position"] == (0.0, 0.0, 1.5)
    data = to_pyg(g)
    assert (
        tuple(data.edge_index.shape) == (2, 2)
        and data.root == 0
        and data.node_label.tolist() == [3, 3, 4]
    )
    poly = to_pyvista(g)
    assert (
        poly.n_points == 3 and poly.n_lines == 2 and np.allclose(poly.point_data["radius"], g.radii)
    )


def test_from_networkx_accepts_xyz_attributes_and_any_labels():
    import networkx as nx

    h = nx.Graph()
    h.add_node("a", x=0.0, y=0.0, z=0.0, radius=1.0)
    h.add_node("b", x=0.0, y=0.0, z=2.0, radius=0.5)
    h.add_edge("a", "b")
    g = from_networkx(h)
    assert g.n_nodes == 2 and np.isclose(g.total_length, 2.0)
    h.nodes["b"].pop("radius")
    with pytest.raises(InvalidInputError, match="radius"):
        from_networkx(h)


def test_from_pyvista_polylines_and_radius_names():
    import pyvista as pv

    poly = pv.PolyData(np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [1, 0, 2.0]]))
    poly.lines = np.array(
        [3, 0, 1, 2, 2, 2, 3]
    )  # a polyline of 3 points and a 2-point line sharing point 2
    poly.point_data["MaximumInscribedSphereRadius"] = np.array([1.0, 0.9, 0.8, 0.5])
    g = from_pyvista(poly)
    assert g.n_edges == 3 and g.degrees.tolist() == [1, 2, 2, 1]
    with pytest.raises(InvalidInputError, match="radius='nope'"):
        from_pyvista(poly, radius="nope")
    del poly.point_data["MaximumInscribedSphereRadius"]
    with pytest.raises(InvalidInputError, match="no radius point array"):
        from_pyvista(poly)


# ---------------------------------------------------------------------- errors
@pytest.fixture
def small():
    return VesselGraph([[0, 0, 0], [0, 0, 1.0]], [1.0, 1.0], [[0, 1]])


def test_unknown_suffix(tmp_path, small):
    with pytest.raises(FileFormatError, match="unknown suffix '.xyz'"):
        write_graph(small, tmp_path / "g.xyz")
    (tmp_path / "g.xyz").write_text("x")
    with pytest.raises(FileFormatError, match="unknown suffix"):
        read_graph(tmp_path / "g.xyz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_graph(tmp_path / "absent.npz")


@pytest.mark.parametrize("suffix", [".npz", ".json", ".vtp", ".graphml", ".swc"])
def test_truncated_files_raise_file_format_error(tmp_path, small, suffix):
    path = tmp_path / f"g{suffix}"
    write_graph(small, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=str(path.name)):
        read_graph(path)


def test_corrupt_contents(tmp_path):
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(FileFormatError, match="not a vesseltree.graph document"):
        read_graph(p)
    p.write_text(
        json.dumps(
            {
                "format": "vesseltree.graph",
                "version": 1,
                "positions": [[0, 0, 0]],
                "radii": [-1],
                "edges": [],
            }
        )
    )
    with pytest.raises(FileFormatError, match="radii must be positive"):
        read_graph(p)
    s = tmp_path / "g.swc"
    s.write_text("1 0 0 0 0 1 -1\n2 0 0 0 1 1 7\n")
    with pytest.raises(FileFormatError, match="parent 7"):
        read_graph(s)
    s.write_text("1 0 0 0 zero 1 -1\n")
    with pytest.raises(FileFormatError, match="not numeric"):
        read_graph(s)
    z = tmp_path / "g.npz"
    np.savez(z, a=np.zeros(3))
    with pytest.raises(FileFormatError, match="not a vesseltree graph"):
        read_graph(z)
    v = tmp_path / "g.vtp"
    v.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(FileFormatError, match="not a VTK XML file"):
        read_graph(v)


def test_swc_refuses_cycles(tmp_path):
    g = VesselGraph([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [1, 1, 1], [[0, 1], [1, 2], [2, 0]])
    with pytest.raises(InvalidInputError, match="to_tree"):
        write_graph(g, tmp_path / "g.swc")
    assert not (tmp_path / "g.swc").exists()


def test_failed_write_leaves_previous_file_intact(tmp_path, small, monkeypatch):
    path = tmp_path / "g.npz"
    write_graph(small, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    bigger = VesselGraph([[0, 0, 0], [0, 0, 1.0], [0, 0, 2.0]], [1.0, 1.0, 1.0], [[0, 1], [1, 2]])
    with pytest.raises(OSError, match="disk full"):
        write_graph(bigger, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["g.npz"]


def test_graph_save_load_methods(tmp_path, small):
    small.save(tmp_path / "g.json")
    assert VesselGraph.load(tmp_path / "g.json").allclose(small)
