"""Graph file formats: canonical ``.npz``, ``.json``, ``.vtp``, ``.swc`` and ``.graphml``.

:func:`read_graph` and :func:`write_graph` choose the format by suffix. Every writer is atomic
(a temporary file beside the target, renamed over it), and every reader turns a corrupt or
truncated file into a :class:`~vesseltree.errors.FileFormatError` that names the file.

What each format keeps:

- ``.npz`` and ``.json``: everything (positions, radii, edges in order, root, node/edge data with
  dtypes, affine, meta), bit-exact.
- ``.vtp``: everything (root/affine/meta in a field-data JSON string), float64 points.
- ``.graphml``: everything (vector data split into ``key__0``, ``key__1``... columns).
- ``.swc``: a tree or forest: positions, radii, parent links, ``swc_type``; affine and meta in a
  header comment. Edges come back oriented parent -> child in node order; other node/edge data is
  not stored (SWC has no place for it).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path, write_text_atomic
from ..errors import FileFormatError, InvalidInputError, describe
from ..graph import VesselGraph

__all__ = [
    "GRAPH_SUFFIXES",
    "read_graph",
    "write_graph",
    "graph_to_dict",
    "graph_from_dict",
    "read_swc",
    "write_swc",
]

FORMAT_NAME = "vesseltree.graph"
FORMAT_VERSION = 1


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in GRAPH_SUFFIXES:
        if name.endswith(s):
            return s
    return path.suffix.lower()


def _check_graph(graph) -> None:
    if not isinstance(graph, VesselGraph):
        raise InvalidInputError(f"graph must be a VesselGraph, got {describe(graph)}")


def write_graph(graph: VesselGraph, path: str | os.PathLike) -> Path:
    """Write ``graph`` to ``path`` in the format its suffix names (atomically).

    Suffixes: ``.npz`` (canonical), ``.json``, ``.vtp``, ``.swc``, ``.graphml``.

    Raises
    ------
    FileFormatError
        Unknown suffix.
    InvalidInputError
        The format cannot hold this graph (a graph with cycles as SWC).
    """
    _check_graph(graph)
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in _WRITERS:
        raise FileFormatError(
            f"cannot write graph to {str(path)!r}: unknown suffix {suffix!r}; use one of {sorted(_WRITERS)}"
        )
    _WRITERS[suffix](graph, path)
    return path


def read_graph(path: str | os.PathLike) -> VesselGraph:
    """Read a graph written by :func:`write_graph` (or any VTP polyline file / SWC / GraphML).

    Raises
    ------
    FileNotFoundError
        No such file.
    FileFormatError
        Unknown suffix, or the file is corrupt, truncated or does not describe a valid graph.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in _READERS:
        raise FileFormatError(
            f"cannot read graph from {str(path)!r}: unknown suffix {suffix!r}; use one of {sorted(_READERS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"graph file {str(path)!r} does not exist")
    try:
        return _READERS[suffix](path)
    except FileFormatError:
        raise
    except (
        InvalidInputError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        OSError,
        zipfile.BadZipFile,
        EOFError,
    ) as exc:
        raise FileFormatError(f"{str(path)!r} is not a valid {suffix} graph file: {exc}") from exc


# ---------------------------------------------------------------------- dict / JSON
def _array_entry(arr: np.ndarray) -> dict[str, Any]:
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tolist()}


def _array_from_entry(entry: Mapping[str, Any], name: str) -> np.ndarray:
    try:
        arr = np.asarray(entry["data"], dtype=np.dtype(entry["dtype"]))
        return arr.reshape(entry["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{name} is not a valid array entry: {exc}") from exc


def graph_to_dict(graph: VesselGraph) -> dict[str, Any]:
    """JSON-compatible dict holding every field of ``graph`` exactly."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "positions": graph.positions.tolist(),
        "radii": graph.radii.tolist(),
        "edges": graph.edges.tolist(),
        "root": graph.root,
        "affine": None if graph.affine is None else graph.affine.tolist(),
        "node_data": {k: _array_entry(v) for k, v in graph.node_data.items()},
        "edge_data": {k: _array_entry(v) for k, v in graph.edge_data.items()},
        "meta": dict(graph.meta),
    }


def graph_from_dict(data: Mapping[str, Any]) -> VesselGraph:
    """Inverse of :func:`graph_to_dict`."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
        raise FileFormatError(f"not a {FORMAT_NAME} document (missing 'format': {FORMAT_NAME!r})")
    if int(data.get("version", 0)) > FORMAT_VERSION:
        raise FileFormatError(
            f"graph format version {data['version']} is newer than this vesseltree reads"
        )
    missing = [k for k in ("positions", "radii", "edges") if k not in data]
    if missing:
        raise FileFormatError(f"graph document lacks {missing}")
    pos = (
        np.asarray(data["positions"], dtype=np.float64).reshape(-1, 3)
        if data["positions"]
        else np.zeros((0, 3))
    )
    return VesselGraph(
        pos,
        np.asarray(data["radii"], dtype=np.float64),
        np.asarray(data["edges"], dtype=np.int64).reshape(-1, 2),
        root=data.get("root"),
        node_data={
            k: _array_from_entry(v, f"node_data[{k!r}]")
            for k, v in (data.get("node_data") or {}).items()
        },
        edge_data={
            k: _array_from_entry(v, f"edge_data[{k!r}]")
            for k, v in (data.get("edge_data") or {}).items()
        },
        affine=data.get("affine"),
        meta=data.get("meta") or {},
    )


def _write_json(graph: VesselGraph, path: Path) -> None:
    write_text_atomic(path, json.dumps(graph_to_dict(graph)))


def _read_json(path: Path) -> VesselGraph:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    return graph_from_dict(doc)


# ---------------------------------------------------------------------- NPZ (canonical)
def _write_npz(graph: VesselGraph, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT_NAME),
        "version": np.array(FORMAT_VERSION),
        "positions": np.asarray(graph.positions),
        "radii": np.asarray(graph.radii),
        "edges": np.asarray(graph.edges),
        "root": np.array(-1 if graph.root is None else graph.root, dtype=np.int64),
        "affine": np.zeros((0, 4)) if graph.affine is None else np.asarray(graph.affine),
        "meta": np.array(json.dumps(dict(graph.meta))),
    }
    for k, v in graph.node_data.items():
        arrays[f"node_data/{k}"] = np.asarray(v)
    for k, v in graph.edge_data.items():
        arrays[f"edge_data/{k}"] = np.asarray(v)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _read_npz(path: Path) -> VesselGraph:
    with np.load(path, allow_pickle=False) as z:
        names = set(z.files)
        if "format" not in names or str(z["format"]) != FORMAT_NAME:
            raise FileFormatError(f"{str(path)!r} is an .npz file but not a vesseltree graph")
        missing = {"positions", "radii", "edges"} - names
        if missing:
            raise FileFormatError(f"{str(path)!r} lacks arrays {sorted(missing)}")
        root = int(z["root"]) if "root" in names else -1
        affine = z["affine"] if "affine" in names and z["affine"].size else None
        return VesselGraph(
            z["positions"],
            z["radii"],
            z["edges"],
            root=None if root < 0 else root,
            node_data={n.split("/", 1)[1]: z[n] for n in z.files if n.startswith("node_data/")},
            edge_data={n.split("/", 1)[1]: z[n] for n in z.files if n.startswith("edge_data/")},
            affine=affine,
            meta=json.loads(str(z["meta"])) if "meta" in names else {},
        )


# ---------------------------------------------------------------------- VTP
def _write_vtp(graph: VesselGraph, path: Path) -> None:
    from .convert import to_pyvista

    poly = to_pyvista(graph)
    with atomic_path(path) as tmp:
        poly.save(str(tmp), binary=True)


def _read_vtp(path: Path) -> VesselGraph:
    from .convert import from_pyvista

    return from_pyvista(read_polydata(path))


def read_polydata(path: str | os.PathLike):
    """Read a ``.vtp`` file into ``pyvista.PolyData``, turning VTK's silent failures into errors."""
    import pyvista as pv
    import vtk

    path = Path(path)
    head = path.read_bytes()[:256].lstrip()
    if not (head.startswith(b"<?xml") or head.startswith(b"<VTKFile")):
        raise FileFormatError(
            f"{str(path)!r} is not a VTK XML file (it does not start with '<?xml')"
        )
    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(path))
    errors: list[str] = []
    out = vtk.vtkFileOutputWindow()  # keep VTK from printing; we raise instead
    out.SetFileName(os.devnull)
    previous = vtk.vtkOutputWindow.GetInstance()
    vtk.vtkOutputWindow.SetInstance(out)
    try:
        reader.AddObserver("ErrorEvent", lambda obj, ev: errors.append(ev))
        reader.Update()
    finally:
        vtk.vtkOutputWindow.SetInstance(previous)
    if errors or reader.GetErrorCode():
        raise FileFormatError(f"{str(path)!r} is corrupt or truncated (VTK could not parse it)")
    poly = pv.wrap(reader.GetOutput())
    return poly


# ---------------------------------------------------------------------- SWC
def _tree_parents(graph: VesselGraph) -> np.ndarray:
    """Parent of every node (-1 at roots): the stored orientation, or BFS from each component's root."""
    if graph.root is not None:
        return np.asarray(graph.parents)
    if not graph.is_forest:
        raise InvalidInputError(
            f"SWC stores trees, but the graph has {graph.n_cycles} cycles; call graph.to_tree() first"
        )
    from scipy.sparse.csgraph import breadth_first_order

    parents = np.full(graph.n_nodes, -1, dtype=np.int64)
    for c in range(graph.n_components):
        root = graph.default_root(component=c)
        _, pred = breadth_first_order(
            graph.adjacency, root, directed=False, return_predecessors=True
        )
        member = graph.component_labels == c
        parents[member] = np.where(pred[member] < 0, -1, pred[member])
    return parents


def write_swc(graph: VesselGraph, path: str | os.PathLike) -> None:
    """Write a tree or forest as SWC (``id type x y z radius parent``; ids are node index + 1)."""
    _check_graph(graph)
    parents = _tree_parents(graph)
    types = graph.node_data.get("swc_type")
    types = (
        np.zeros(graph.n_nodes, dtype=np.int64)
        if types is None
        else np.asarray(types).astype(np.int64)
    )
    header = {
        "affine": None if graph.affine is None else graph.affine.tolist(),
        "meta": dict(graph.meta),
        "rooted": graph.root is not None,
        "swc_type": "swc_type" in graph.node_data,
        "n_nodes": graph.n_nodes,  # lets the reader detect a truncated file
    }
    lines = [
        "# SWC written by vesseltree; units mm, world frame of the source image (RAS)",
        "# columns: id type x y z radius parent",
        "# vesseltree: " + json.dumps(header),
    ]
    p = graph.positions.tolist()  # python floats: repr is the shortest exact text
    r = graph.radii.tolist()
    for i in range(graph.n_nodes):
        par = -1 if parents[i] < 0 else int(parents[i]) + 1
        x, y, z = p[i]
        lines.append(f"{i + 1} {int(types[i])} {x!r} {y!r} {z!r} {r[i]!r} {par}")
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_swc(path: str | os.PathLike) -> VesselGraph:
    """Read an SWC file; a single root gives a rooted tree, several roots an unrooted forest."""
    path = Path(path)
    header: dict[str, Any] = {}
    rows = []
    for lineno, line in enumerate(
        path.read_text(encoding="utf-8", errors="strict").splitlines(), 1
    ):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            if text.startswith("# vesseltree:"):
                header = json.loads(text.split(":", 1)[1])
            continue
        parts = text.split()
        if len(parts) < 7:
            raise FileFormatError(
                f"{str(path)!r} line {lineno}: expected 7 columns, got {len(parts)}: {text!r}"
            )
        try:
            rows.append(
                (
                    int(parts[0]),
                    int(float(parts[1])),
                    float(parts[2]),
                    float(parts[3]),
                    float(parts[4]),
                    float(parts[5]),
                    int(float(parts[6])),
                )
            )
        except ValueError as exc:
            raise FileFormatError(f"{str(path)!r} line {lineno}: not numeric: {text!r}") from exc
    if not rows:
        raise FileFormatError(f"{str(path)!r} holds no SWC node lines (empty or truncated file)")
    if "n_nodes" in header and header["n_nodes"] != len(rows):
        raise FileFormatError(
            f"{str(path)!r} is truncated: its header announces {header['n_nodes']} nodes, found {len(rows)}"
        )
    ids = [r[0] for r in rows]
    index = {nid: i for i, nid in enumerate(ids)}
    if len(index) != len(ids):
        raise FileFormatError(f"{str(path)!r} repeats node ids")
    edges, roots = [], []
    for i, r in enumerate(rows):
        if r[6] < 0:
            roots.append(i)
            continue
        if r[6] not in index:
            raise FileFormatError(
                f"{str(path)!r}: node {r[0]} has parent {r[6]}, which is not in the file"
            )
        edges.append((index[r[6]], i))
    arr = np.asarray([r[2:6] for r in rows], dtype=np.float64).reshape(-1, 4)
    node_data = {}
    if header.get("swc_type", not header and any(r[1] for r in rows)):
        node_data["swc_type"] = np.asarray([r[1] for r in rows], dtype=np.int64)
    rooted = header.get("rooted", True) and len(roots) == 1
    return VesselGraph(
        arr[:, :3],
        arr[:, 3],
        np.asarray(edges, dtype=np.int64).reshape(-1, 2),
        root=roots[0] if rooted else None,
        node_data=node_data,
        affine=header.get("affine"),
        meta=header.get("meta") or {},
    )


# ---------------------------------------------------------------------- GraphML
def _write_graphml(graph: VesselGraph, path: Path) -> None:
    import networkx as nx

    g = nx.DiGraph() if graph.root is not None else nx.Graph()
    shapes = {}
    for k, v in {**graph.node_data, **graph.edge_data}.items():
        shapes[k] = list(v.shape[1:])
    g.graph.update(
        vesseltree=json.dumps(
            {
                "root": graph.root,
                "affine": None if graph.affine is None else graph.affine.tolist(),
                "meta": dict(graph.meta),
                "node_data": {
                    k: [v.dtype.str, list(v.shape[1:])] for k, v in graph.node_data.items()
                },
                "edge_data": {
                    k: [v.dtype.str, list(v.shape[1:])] for k, v in graph.edge_data.items()
                },
            }
        )
    )

    def flat(data: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in data.items():
            row = np.asarray(v[i])
            if row.ndim == 0:
                out[k] = row.item()
            else:
                for j, x in enumerate(row.ravel().tolist()):
                    out[f"{k}__{j}"] = x
        return out

    p = graph.positions
    for i in range(graph.n_nodes):
        g.add_node(
            i,
            x=float(p[i, 0]),
            y=float(p[i, 1]),
            z=float(p[i, 2]),
            radius=float(graph.radii[i]),
            **flat(graph.node_data, i),
        )
    for r, (a, b) in enumerate(graph.edges.tolist()):
        g.add_edge(a, b, index=r, tail=a, **flat(graph.edge_data, r))
    with atomic_path(path) as tmp:
        nx.write_graphml(g, str(tmp))


def _read_graphml(path: Path) -> VesselGraph:
    import networkx as nx

    try:
        g = nx.read_graphml(str(path))
    except Exception as exc:  # noqa: BLE001 - networkx raises many types on bad XML
        raise FileFormatError(f"{str(path)!r} is not valid GraphML: {exc}") from exc
    info = json.loads(g.graph.get("vesseltree", "{}"))
    labels = list(g.nodes)
    index = {lab: i for i, lab in enumerate(labels)}
    n = len(labels)
    pos = np.zeros((n, 3))
    rad = np.zeros(n)
    for i, lab in enumerate(labels):
        a = g.nodes[lab]
        try:
            pos[i] = (a["x"], a["y"], a["z"])
            rad[i] = a["radius"]
        except KeyError as exc:
            raise FileFormatError(f"{str(path)!r}: node {lab!r} lacks attribute {exc}") from exc

    def unflat(rows: list[Mapping[str, Any]], spec: Mapping[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for k, (dtype, shape) in spec.items():
            size = int(np.prod(shape)) if shape else 0
            if not shape:
                vals = [r[k] for r in rows]
            else:
                vals = [[r[f"{k}__{j}"] for j in range(size)] for r in rows]
            out[k] = np.asarray(vals, dtype=np.dtype(dtype)).reshape((len(rows), *shape))
        return out

    node_rows = [g.nodes[lab] for lab in labels]
    edge_list = list(g.edges(data=True))
    if all("index" in d for _, _, d in edge_list):
        edge_list.sort(key=lambda t: t[2]["index"])
    edges = np.asarray(
        [_oriented(index[a], index[b], d) for a, b, d in edge_list], dtype=np.int64
    ).reshape(-1, 2)
    return VesselGraph(
        pos,
        rad,
        edges,
        root=info.get("root"),
        node_data=unflat(node_rows, info.get("node_data", {})),
        edge_data=unflat([d for _, _, d in edge_list], info.get("edge_data", {})),
        affine=info.get("affine"),
        meta=info.get("meta") or {},
    )


def _oriented(a: int, b: int, attrs: Mapping[str, Any]) -> tuple[int, int]:
    # undirected networkx graphs do not keep edge direction; the 'tail' attribute restores it
    return (b, a) if attrs.get("tail") == b else (a, b)


_WRITERS = {
    ".npz": _write_npz,
    ".json": _write_json,
    ".vtp": _write_vtp,
    ".swc": write_swc,
    ".graphml": _write_graphml,
}
_READERS = {
    ".npz": _read_npz,
    ".json": _read_json,
    ".vtp": _read_vtp,
    ".swc": read_swc,
    ".graphml": _read_graphml,
}
GRAPH_SUFFIXES = tuple(sorted(_WRITERS))
