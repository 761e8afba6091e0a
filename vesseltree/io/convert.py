"""In-memory conversions of a `VesselGraph`: networkx, torch_geometric, pyvista.

Each is a ``to_*`` / ``from_*`` pair that returns an equal graph on a round trip. The third-party
package is imported inside the function, so ``import vesseltree`` stays light.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import InvalidInputError, describe
from ..graph import VesselGraph

__all__ = ["to_networkx", "from_networkx", "to_pyg", "from_pyg", "to_pyvista", "from_pyvista"]

#: point-data names recognised as radius (mm) when reading VTK data, in order of preference
RADIUS_NAMES = ("radius", "Radius", "MaximumInscribedSphereRadius", "radii", "Radii")


# ---------------------------------------------------------------------- networkx
def to_networkx(graph: VesselGraph):
    """As a ``networkx.Graph`` (a ``DiGraph`` where the graph is rooted).

    Nodes are ``0..N-1`` with attributes ``position`` (tuple of 3 floats, mm), ``radius`` (mm) and
    every node-data key (scalars, or tuples for vector data); edges carry every edge-data key and
    ``index`` (the row in ``graph.edges``, which keeps edge order on the way back). Graph attributes:
    ``root``, ``affine`` (nested list or None), ``meta``.
    """
    import networkx as nx

    g = nx.DiGraph() if graph.root is not None else nx.Graph()
    g.graph.update(
        root=graph.root,
        affine=None if graph.affine is None else graph.affine.tolist(),
        meta=dict(graph.meta),
        node_data_dtypes={k: v.dtype.str for k, v in graph.node_data.items()},
        edge_data_dtypes={k: v.dtype.str for k, v in graph.edge_data.items()},
    )
    for i in range(graph.n_nodes):
        attrs: dict[str, Any] = {
            "position": tuple(graph.positions[i].tolist()),
            "radius": float(graph.radii[i]),
        }
        for k, v in graph.node_data.items():
            attrs[k] = _py(v[i])
        g.add_node(i, **attrs)
    for r, (a, b) in enumerate(graph.edges.tolist()):
        attrs = {"index": r, "tail": a}
        for k, v in graph.edge_data.items():
            attrs[k] = _py(v[r])
        g.add_edge(a, b, **attrs)
    return g


def _py(value):
    arr = np.asarray(value)
    return arr.item() if arr.ndim == 0 else tuple(arr.tolist())


def from_networkx(g) -> VesselGraph:
    """From a networkx graph with node attributes ``position`` (or ``x``/``y``/``z``) and ``radius``.

    Node labels may be anything hashable; they are numbered in iteration order (labels that are
    the integers ``0..N-1`` keep their number). A ``DiGraph`` with a ``root`` graph attribute comes
    back rooted.
    """
    import networkx as nx

    if not isinstance(g, nx.Graph):
        raise InvalidInputError(f"expected a networkx graph, got {describe(g)}")
    if g.is_multigraph():
        raise InvalidInputError("multigraphs are not supported: merge parallel edges first")
    labels = list(g.nodes)
    if sorted(labels, key=str) == list(range(len(labels))) or set(labels) == set(
        range(len(labels))
    ):
        labels = list(range(len(labels)))
    index = {lab: i for i, lab in enumerate(labels)}
    n = len(labels)
    pos = np.zeros((n, 3))
    rad = np.zeros(n)
    node_keys: set[str] = set()
    for lab in labels:
        node_keys.update(g.nodes[lab])
    node_keys -= {"position", "radius", "x", "y", "z"}
    node_cols: dict[str, list] = {k: [] for k in sorted(node_keys)}
    for i, lab in enumerate(labels):
        attrs = g.nodes[lab]
        if "position" in attrs:
            pos[i] = attrs["position"]
        elif all(c in attrs for c in "xyz"):
            pos[i] = (attrs["x"], attrs["y"], attrs["z"])
        else:
            raise InvalidInputError(f"node {lab!r} has no 'position' (or x, y, z) attribute")
        if "radius" not in attrs:
            raise InvalidInputError(f"node {lab!r} has no 'radius' attribute")
        rad[i] = attrs["radius"]
        for k in node_cols:
            if k not in attrs:
                raise InvalidInputError(
                    f"node {lab!r} lacks node attribute {k!r} that other nodes have"
                )
            node_cols[k].append(attrs[k])
    edge_list = list(g.edges(data=True))
    if edge_list and all("index" in d for _, _, d in edge_list):
        edge_list.sort(key=lambda t: t[2]["index"])
    edges = np.array(
        [
            (index[b], index[a]) if d.get("tail") == b and b in index else (index[a], index[b])
            for a, b, d in edge_list
        ],
        dtype=np.int64,
    ).reshape(-1, 2)
    edge_keys = sorted({k for _, _, d in edge_list for k in d} - {"index", "tail"})
    edge_cols = {k: [d[k] for _, _, d in edge_list] for k in edge_keys}
    node_dtypes = g.graph.get("node_data_dtypes", {})
    edge_dtypes = g.graph.get("edge_data_dtypes", {})
    node_data = {k: np.asarray(v, dtype=node_dtypes.get(k)) for k, v in node_cols.items()}
    edge_data = {k: np.asarray(v, dtype=edge_dtypes.get(k)) for k, v in edge_cols.items()}
    root = g.graph.get("root")
    root = index[root] if root is not None and root in index else None
    if root is not None and not g.is_directed():
        root = None
    affine = g.graph.get("affine")
    return VesselGraph(
        pos,
        rad,
        edges,
        root=root,
        node_data=node_data,
        edge_data=edge_data,
        affine=affine,
        meta=g.graph.get("meta") or {},
    )


# ---------------------------------------------------------------------- torch_geometric
def to_pyg(graph: VesselGraph):
    """As a ``torch_geometric.data.Data``.

    Fields: ``pos`` (N, 3) float64 mm, ``radius`` (N,) float64 mm, ``edge_index`` (2, E) int64
    (directed as stored; call ``torch_geometric.utils.to_undirected`` for message passing both
    ways), every node-data key as ``node_<key>`` and edge-data key as ``edge_<key>`` (tensors),
    ``root`` (int, -1 where unrooted), ``affine`` (4, 4) float64 tensor or None, ``meta`` (JSON str).
    """
    import torch
    from torch_geometric.data import Data

    data = Data(
        pos=torch.from_numpy(np.array(graph.positions)),
        radius=torch.from_numpy(np.array(graph.radii)),
        edge_index=torch.from_numpy(np.array(graph.edges.T, order="C")),
        num_nodes=graph.n_nodes,
    )
    for k, v in graph.node_data.items():
        data[f"node_{k}"] = torch.from_numpy(np.array(v))
    for k, v in graph.edge_data.items():
        data[f"edge_{k}"] = torch.from_numpy(np.array(v))
    data.root = -1 if graph.root is None else int(graph.root)
    data.affine = None if graph.affine is None else torch.from_numpy(np.array(graph.affine))
    data.meta = json.dumps(dict(graph.meta))
    return data


def from_pyg(data) -> VesselGraph:
    """From a ``torch_geometric.data.Data`` laid out as :func:`to_pyg` writes it.

    ``pos`` and ``radius`` are required; ``node_*`` / ``edge_*`` fields become node/edge data.
    """
    for field in ("pos", "edge_index"):
        if getattr(data, field, None) is None:
            raise InvalidInputError(
                f"data must have a {field!r} field, got fields {sorted(data.keys())}"
            )
    radius = getattr(data, "radius", None)
    if radius is None:
        raise InvalidInputError(
            f"data must have a 'radius' field (mm), got fields {sorted(data.keys())}"
        )
    pos = data.pos.detach().cpu().numpy()
    node_data, edge_data = {}, {}
    for key in data.keys():
        if key.startswith("node_") and key != "node_data":
            node_data[key[5:]] = data[key].detach().cpu().numpy()
        elif key.startswith("edge_") and key not in ("edge_index", "edge_attr"):
            edge_data[key[5:]] = data[key].detach().cpu().numpy()
    root = getattr(data, "root", None)
    root = None if root is None or int(root) < 0 else int(root)
    affine = getattr(data, "affine", None)
    if affine is not None:
        affine = affine.detach().cpu().numpy()
    meta = getattr(data, "meta", None)
    return VesselGraph(
        pos,
        radius.detach().cpu().numpy(),
        data.edge_index.detach().cpu().numpy().T,
        root=root,
        node_data=node_data,
        edge_data=edge_data,
        affine=affine,
        meta=json.loads(meta) if isinstance(meta, str) else None,
    )


# ---------------------------------------------------------------------- pyvista
_FIELD_KEY = "vesseltree"


def to_pyvista(graph: VesselGraph):
    """As a ``pyvista.PolyData``: the nodes as points, one 2-point line cell per edge.

    Point data: ``radius`` (mm) and every node-data key; cell data: every edge-data key. Root,
    affine and meta travel as a JSON string in field data (``"vesseltree"``), so VTP files made
    here read back equal. Use ``.tube(scalars="radius", absolute=True)`` to look at it.
    """
    import pyvista as pv

    poly = pv.PolyData()
    poly.points = np.array(graph.positions, dtype=np.float64)
    if graph.n_edges:
        cells = np.hstack([np.full((graph.n_edges, 1), 2, dtype=np.int64), graph.edges]).ravel()
        poly.lines = cells
    poly.point_data["radius"] = np.array(graph.radii)
    for k, v in graph.node_data.items():
        poly.point_data[k] = np.array(v)
    for k, v in graph.edge_data.items():
        poly.cell_data[k] = np.array(v)
    info = {
        "root": graph.root,
        "affine": None if graph.affine is None else graph.affine.tolist(),
        "meta": dict(graph.meta),
        "node_data": sorted(graph.node_data),
        "edge_data": sorted(graph.edge_data),
        "dtypes": {k: v.dtype.str for k, v in {**graph.node_data, **graph.edge_data}.items()},
    }
    poly.field_data[_FIELD_KEY] = np.array([json.dumps(info)])
    return poly


def from_pyvista(poly, *, radius: str | None = None) -> VesselGraph:
    """From a ``pyvista.PolyData`` (or vtkPolyData) of lines or polylines with a radius point array.

    Each polyline cell of k points gives k-1 edges between consecutive points; points shared by
    cells (same point id) join them. Points not used by any line are kept as isolated nodes.

    Parameters
    ----------
    radius : str, optional
        Name of the point array holding the radius in mm. Default: the first of ``radius``,
        ``Radius``, ``MaximumInscribedSphereRadius`` that is present.
    """
    import pyvista as pv

    if not isinstance(poly, pv.PolyData):
        try:
            poly = pv.wrap(poly)
        except Exception as exc:  # noqa: BLE001 - report what was passed
            raise InvalidInputError(f"expected pyvista.PolyData, got {describe(poly)}") from exc
        if not isinstance(poly, pv.PolyData):
            raise InvalidInputError(f"expected PolyData, got {type(poly).__name__}")
    info: dict[str, Any] = {}
    if _FIELD_KEY in poly.field_data:
        try:
            info = json.loads(str(np.asarray(poly.field_data[_FIELD_KEY]).ravel()[0]))
        except (ValueError, IndexError):
            info = {}
    names = list(poly.point_data.keys())
    if radius is None:
        radius = next((r for r in RADIUS_NAMES if r in names), None)
        if radius is None:
            raise InvalidInputError(
                f"no radius point array found (looked for {list(RADIUS_NAMES)}); got arrays {names}; pass radius=NAME"
            )
    elif radius not in names:
        raise InvalidInputError(f"radius={radius!r} is not a point array; got arrays {names}")
    pos = np.asarray(poly.points, dtype=np.float64)
    rad = np.asarray(poly.point_data[radius], dtype=np.float64).ravel()
    edges, cell_of_edge = _line_edges(poly)
    dtypes = info.get("dtypes", {})
    node_keys = info.get("node_data", [k for k in names if k != radius and not k.startswith("vtk")])
    node_data = {}
    for k in node_keys:
        if k in poly.point_data and np.asarray(poly.point_data[k]).dtype.kind in "biuf":
            node_data[k] = np.asarray(poly.point_data[k], dtype=dtypes.get(k))
    edge_data = {}
    for k in info.get("edge_data", list(poly.cell_data.keys())):
        if k in poly.cell_data and np.asarray(poly.cell_data[k]).dtype.kind in "biuf":
            edge_data[k] = np.asarray(poly.cell_data[k], dtype=dtypes.get(k))[cell_of_edge]
    edges, keep = _dedupe_edges(edges)
    edge_data = {k: v[keep] for k, v in edge_data.items()}
    return VesselGraph(
        pos,
        rad,
        edges,
        root=info.get("root"),
        node_data=node_data,
        edge_data=edge_data,
        affine=info.get("affine"),
        meta=info.get("meta") or {},
    )


def _line_edges(poly) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive point pairs of every line/polyline cell, and the cell each pair came from."""
    lines = np.asarray(poly.lines, dtype=np.int64)
    pairs, owners = [], []
    i, cell = 0, 0
    # fast path: all cells are 2-point lines
    if lines.size and lines.size % 3 == 0 and np.all(lines[::3] == 2):
        e = lines.reshape(-1, 3)[:, 1:]
        return e, np.arange(len(e))
    while i < lines.size:
        k = int(lines[i])
        ids = lines[i + 1 : i + 1 + k]
        if k >= 2:
            pairs.append(np.stack([ids[:-1], ids[1:]], axis=1))
            owners.append(np.full(k - 1, cell))
        i += k + 1
        cell += 1
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(pairs), np.concatenate(owners)


def _dedupe_edges(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop self-loops and repeated edges (first occurrence wins, order kept)."""
    ok = edges[:, 0] != edges[:, 1]
    idx = np.flatnonzero(ok)
    key = np.sort(edges[idx], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    keep = idx[np.sort(first)]
    return edges[keep], keep
