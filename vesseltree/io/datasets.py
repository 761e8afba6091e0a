"""Readers for the real vessel data sets the project measures against.

* TubeTK gold-standard centerlines (``VascularNetwork-NNN.vtp``): one polyline per tube, point
  array ``Radius`` (mm), points in the world frame of the matching ``labels-NNN.nii.gz`` mask.
  :func:`read_tubetk_centerlines` rebuilds the vessel forest by attaching tube ends to nearby tubes.
* VMTK centerlines (``aorta-centerline.vtp``): one polyline per inlet-outlet path, point array
  ``MaximumInscribedSphereRadius`` (mm), RAS; the paths overlap along shared trunks and
  :func:`read_vmtk_centerlines` merges them into one tree.
* VesselVAE binary trees (``*_tree.dat``): :func:`read_vesselvae_tree`, and
  :func:`vesselvae_model_id` to split them by IntrA model.

All positions are world millimetres in the frame the files store (RAS for these data sets), and
all readers raise :class:`~vesseltree.errors.FileFormatError` naming the file on bad input.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import positive_mm as _positive
from ..errors import FileFormatError, InvalidInputError, describe
from ..graph import VesselGraph

__all__ = [
    "read_tubetk_centerlines",
    "read_vmtk_centerlines",
    "read_vesselvae_tree",
    "vesselvae_model_id",
]

log = logging.getLogger(__name__)

#: Default largest gap (mm) bridged between a TubeTK tube end and another tube. Measured on the
#: 10 gold standards (3,308 tubes): the nearer end of a tube lies within 2 mm of another tube for
#: 90 % of tubes, within 4 mm for 99.4 %, within 5 mm for all but 3; the mask's vessels are only
#: ~0.5-3.5 mm in radius, so 4 mm reaches a parent's centerline from its wall without reaching far.
TUBETK_MAX_GAP_MM = 4.0


def _as_path(path, name: str = "path") -> Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise InvalidInputError(
        f"{name} must be a file path (str or os.PathLike), got {describe(path)}"
    )


def _fail(path: Path, what: str) -> FileFormatError:
    return FileFormatError(f"cannot read {str(path)!r}: {what}")


class _DisjointSets:
    """Union-find over ``n`` items with path halving and union by size."""

    def __init__(self, n: int):
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: int, b: int) -> bool:
        """Join the sets of ``a`` and ``b``; False where they already were one set."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return True


# ----------------------------------------------------------------------------------- VTP lines
def _read_vtp_lines(
    path: Path, radius_name: str
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Points (N, 3) float64, the radius point array (N,) and the point ids of each line cell."""
    if path.suffix.lower() != ".vtp":
        raise FileFormatError(
            f"cannot read {str(path)!r}: expected a VTK PolyData file with suffix .vtp"
        )
    if not path.is_file():
        raise FileFormatError(f"cannot read {str(path)!r}: no such file")
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkObject
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

    reader = vtkXMLPolyDataReader()
    reader.SetFileName(str(path))
    # VTK reports parse errors through its output window and an error code, not exceptions
    shown = vtkObject.GetGlobalWarningDisplay()
    vtkObject.GlobalWarningDisplayOff()
    try:
        reader.Update()
    finally:
        vtkObject.SetGlobalWarningDisplay(shown)
    poly = reader.GetOutput()
    if reader.GetErrorCode() != 0 or poly is None or poly.GetNumberOfPoints() == 0:
        raise _fail(path, "not a readable VTK XML PolyData file, or it holds no points")

    points = vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64)
    array = poly.GetPointData().GetArray(radius_name)
    if array is None:
        names = [
            poly.GetPointData().GetArrayName(i)
            for i in range(poly.GetPointData().GetNumberOfArrays())
        ]
        raise _fail(path, f"no point array {radius_name!r} (found {names})")
    radius = vtk_to_numpy(array).astype(np.float64).reshape(len(points), -1)[:, 0]
    cells = poly.GetLines()
    if cells is None or cells.GetNumberOfCells() == 0:
        raise _fail(path, "it holds no line cells")
    offsets = vtk_to_numpy(cells.GetOffsetsArray()).astype(np.int64)
    conn = vtk_to_numpy(cells.GetConnectivityArray()).astype(np.int64)
    lines = [conn[offsets[c] : offsets[c + 1]] for c in range(len(offsets) - 1)]
    if not np.all(np.isfinite(points)):
        raise _fail(path, "point coordinates hold NaN or inf")
    bad = np.flatnonzero(~np.isfinite(radius) | (radius <= 0))
    if bad.size:
        raise _fail(
            path, f"{radius_name} must be positive, got {radius[bad[0]]!r} at point {int(bad[0])}"
        )
    return points, radius, lines


# ----------------------------------------------------------------------------------- TubeTK
def _thin(chain: np.ndarray, points: np.ndarray, min_spacing_mm: float | None) -> np.ndarray:
    """Drop repeated consecutive points, then (optionally) keep points ~``min_spacing_mm`` apart
    in arc length; both ends are always kept."""
    if chain.size == 0:
        return chain
    step = np.linalg.norm(np.diff(points[chain], axis=0), axis=1)
    chain = chain[np.concatenate([[True], step > 0])]
    if min_spacing_mm is None or chain.size <= 2:
        return chain
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points[chain], axis=0), axis=1))])
    keep = [0]
    last = 0.0
    for i in range(1, chain.size - 1):
        if arc[i] - last >= min_spacing_mm:
            keep.append(i)
            last = arc[i]
    if arc[-1] - last < 0.5 * min_spacing_mm and len(keep) > 1:
        keep.pop()  # do not leave a sliver before the last point
    keep.append(chain.size - 1)
    return chain[keep]


def read_tubetk_centerlines(
    path: str | os.PathLike,
    *,
    connect: bool = True,
    max_gap_mm: float = TUBETK_MAX_GAP_MM,
    min_spacing_mm: float | None = None,
) -> VesselGraph:
    """Read a TubeTK gold-standard centerline ``.vtp`` into a vessel forest.

    Each tube (line cell) becomes a chain of nodes in file order. With ``connect=True`` the tubes
    are joined into a forest: every tube may attach one of its two ends (whichever lies nearer to
    another tube: tube direction in these files is not always root-first) to the nearest node of
    another tube within ``max_gap_mm``, by a new edge from the end node to that node (which then
    becomes a junction). Candidate attachments are taken greedily in order of gap size and a
    union-find over tubes rejects any that would close a cycle, so the result is a forest; a tube
    whose nearest neighbour is already in its component may fall back to its next-nearest tube.

    Parameters
    ----------
    path : str or os.PathLike
        A ``VascularNetwork-NNN.vtp`` file with point array ``Radius`` (mm).
    connect : bool
        Rebuild the forest (default) or return the raw, separate tubes.
    max_gap_mm : float
        Largest end-to-tube distance bridged, mm. Default :data:`TUBETK_MAX_GAP_MM` (4 mm): in the
        10 gold standards the nearer end of 99.4 % of tubes lies within 4 mm of another tube (the
        median attachment gap is ~0.6 mm), and ~80-90 % of the bridges run inside the vessel mask
        all along.
    min_spacing_mm : float, optional
        Thin each tube to nodes about this far apart along its arc (ends kept). Default: keep
        every point (~0.06 mm apart; exactly repeated consecutive points are always dropped).

    Returns
    -------
    VesselGraph
        Unrooted; positions in world mm (the frame of the matching ``labels-NNN.nii.gz``, whose
        inverse affine gives voxel indices). ``node_data["tube_id"]`` (int64, the line cell index)
        and ``node_data["point_id"]`` (int64, the point index in the file); ``edge_data["gap_edge"]``
        (bool) marks edges inserted to attach a tube. ``meta`` holds ``source``, ``format``
        (``"tubetk_vtp"``), ``n_tubes``, ``max_gap_mm``, ``min_spacing_mm`` and, when connecting,
        ``attachments`` (one dict per attached tube: ``tube``, ``end`` (``"start"``/``"end"``),
        ``node``, ``target_tube``, ``target_node``, ``gap_mm``) and ``unattached_tubes``. Call
        ``.to_tree(keep="largest")`` for one rooted tree.

    Raises
    ------
    FileFormatError
        The file is missing, unreadable, has no line cells, no ``Radius`` array, or a radius that
        is not positive.
    InvalidInputError
        ``max_gap_mm`` or ``min_spacing_mm`` is not a positive number.
    """
    from scipy.spatial import cKDTree

    p = _as_path(path)
    gap_limit = _positive(max_gap_mm, "max_gap_mm", allow_zero=True)
    spacing = None if min_spacing_mm is None else _positive(min_spacing_mm, "min_spacing_mm")
    points, radius, lines = _read_vtp_lines(p, "Radius")

    kept = [_thin(line, points, spacing) for line in lines]
    sizes = np.array([k.size for k in kept], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    chains = [np.arange(starts[t], starts[t + 1]) for t in range(len(kept))]  # node ids per tube
    point_id = np.concatenate(kept)
    tube_id = np.repeat(np.arange(len(lines)), sizes)
    pos = points[point_id]
    rad = radius[point_id]
    chain_edges = [np.stack([c[:-1], c[1:]], axis=1) for c in chains if c.size > 1]
    edges = np.concatenate(chain_edges) if chain_edges else np.zeros((0, 2), np.int64)
    gap_edge = np.zeros(len(edges), dtype=bool)
    meta: dict[str, Any] = {
        "source": str(p),
        "format": "tubetk_vtp",
        "n_tubes": len(lines),
        "max_gap_mm": gap_limit,
        "min_spacing_mm": spacing,
    }
    if connect and len(chains) > 1:
        tree = cKDTree(pos)
        # (gap mm, tube, its end node, target tube, target node)
        candidates: list[tuple[float, int, int, int, int]] = []
        for t, chain in enumerate(chains):
            if chain.size == 0:
                continue
            ends = (chain[0],) if chain.size == 1 else (chain[0], chain[-1])
            for end in ends:
                near = np.asarray(tree.query_ball_point(pos[end], gap_limit), dtype=np.int64)
                near = near[tube_id[near] != t]
                if near.size == 0:
                    continue
                dist = np.linalg.norm(pos[near] - pos[end], axis=1)
                # the nearest node of every other tube in reach is a candidate
                order = np.lexsort((dist, tube_id[near]))
                first = np.concatenate([[True], np.diff(tube_id[near][order]) != 0])
                for k in order[first]:
                    candidates.append(
                        (float(dist[k]), t, int(end), int(tube_id[near[k]]), int(near[k]))
                    )
        candidates.sort()
        sets = _DisjointSets(len(chains))
        attached = np.zeros(len(chains), dtype=bool)
        attachments = []
        new_edges = []
        for gap, t, end, target_tube, target in candidates:
            if attached[t] or not sets.union(t, target_tube):
                continue
            attached[t] = True
            new_edges.append((end, target))
            attachments.append(
                {
                    "tube": t,
                    "end": "start" if end == chains[t][0] else "end",
                    "node": end,
                    "target_tube": target_tube,
                    "target_node": target,
                    "gap_mm": round(gap, 6),
                }
            )
        if new_edges:
            edges = np.concatenate([edges, np.asarray(new_edges, dtype=np.int64)])
            gap_edge = np.concatenate([gap_edge, np.ones(len(new_edges), dtype=bool)])
        meta["attachments"] = attachments
        meta["unattached_tubes"] = [int(t) for t in np.flatnonzero(~attached)]
        gaps = [a["gap_mm"] for a in attachments]
        log.info(
            "%s: %d tubes, %d attached (gap median %.2f mm, max %.2f mm), %d left unattached",
            p.name,
            len(chains),
            len(attachments),
            float(np.median(gaps)) if gaps else 0.0,
            max(gaps, default=0.0),
            int((~attached).sum()),
        )
    return VesselGraph(
        pos,
        rad,
        edges,
        node_data={"tube_id": tube_id, "point_id": point_id},
        edge_data={"gap_edge": gap_edge},
        meta=meta,
    )


# ----------------------------------------------------------------------------------- VMTK
def read_vmtk_centerlines(path: str | os.PathLike, *, merge_tol_mm: float = 1e-6) -> VesselGraph:
    """Read a VMTK centerline ``.vtp`` (one line per inlet-outlet path) into one tree.

    The paths share their trunks point for point (same coordinates, different point ids), so
    points closer than ``merge_tol_mm`` are merged into one node, consecutive points of a line
    become edges, and edges repeated by overlapping lines are kept once. Where the paths part,
    the last shared point becomes a junction. VMTK's branch-split output
    (``*-centerline-branches.vtp``) reads the same way.

    Parameters
    ----------
    path : str or os.PathLike
        VMTK centerlines with point array ``MaximumInscribedSphereRadius`` (mm).
    merge_tol_mm : float
        Points closer than this (mm) are one node. Default 1e-6: the shared trunks of VMTK
        output coincide exactly, and the separate paths only diverge gradually afterwards, so a
        larger tolerance would fuse distinct but close points.

    Returns
    -------
    VesselGraph
        Unrooted; positions in world mm as stored (RAS for VMTK output); radius =
        ``MaximumInscribedSphereRadius``. ``node_data["point_id"]`` is the first file point of each
        node and ``node_data["n_paths"]`` the number of lines through it (2 on a shared trunk of
        two paths). ``meta``: ``source``, ``format`` (``"vmtk_vtp"``), ``n_lines``,
        ``n_points_merged``. Call ``.to_tree()`` to root it at the thickest tip (the inlet).

    Raises
    ------
    FileFormatError
        The file is missing, unreadable, has no lines or no ``MaximumInscribedSphereRadius``.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    p = _as_path(path)
    tol = _positive(merge_tol_mm, "merge_tol_mm", allow_zero=True)
    points, radius, lines = _read_vtp_lines(p, "MaximumInscribedSphereRadius")
    used = np.unique(np.concatenate(lines))
    n = len(points)
    # cluster coincident points: connected components of the "closer than tol" graph
    pairs = cKDTree(points[used]).query_pairs(tol, output_type="ndarray")
    link = sp.coo_matrix(
        (np.ones(len(pairs)), (used[pairs[:, 0]], used[pairs[:, 1]])), shape=(n, n)
    )
    _, label = connected_components(link, directed=False)
    # number the clusters of used points in order of first appearance along the lines
    order = np.concatenate(lines)
    _, first = np.unique(label[order], return_index=True)
    cluster_first_point = order[np.sort(first)]
    node_of_label = np.full(label.max() + 1, -1, dtype=np.int64)
    node_of_label[label[cluster_first_point]] = np.arange(cluster_first_point.size)
    node = node_of_label[label]
    n_paths = np.zeros(cluster_first_point.size, dtype=np.int64)
    edge_list = []
    for line in lines:
        ids = node[line]
        n_paths[np.unique(ids)] += 1
        if ids.size > 1:
            pair = np.stack([ids[:-1], ids[1:]], axis=1)
            edge_list.append(pair[pair[:, 0] != pair[:, 1]])
    edges = np.concatenate(edge_list) if edge_list else np.zeros((0, 2), np.int64)
    if edges.size:
        _, keep = np.unique(np.sort(edges, axis=1), axis=0, return_index=True)
        edges = edges[np.sort(keep)]
    graph = VesselGraph(
        points[cluster_first_point],
        radius[cluster_first_point],
        edges,
        node_data={"point_id": cluster_first_point, "n_paths": n_paths},
        meta={
            "source": str(p),
            "format": "vmtk_vtp",
            "n_lines": len(lines),
            "n_points_merged": int(used.size - cluster_first_point.size),
        },
    )
    if not graph.is_forest:
        log.warning(
            "%s: merged centerlines hold %d cycles (paths that part and rejoin)",
            p.name,
            graph.n_cycles,
        )
    return graph


# ----------------------------------------------------------------------------------- VesselVAE
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_DAT_NODE = re.compile(
    rf"^(\d+)_\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]$"
)
_MODEL_ID = re.compile(r"ArteryObjAN(\d+)-\d+_tree\.dat$")


def read_vesselvae_tree(path: str | os.PathLike, *, zero_radius_mm: float = 1e-6) -> VesselGraph:
    """Read a VesselVAE ``.dat`` binary tree.

    The file is one line of ``;``-separated tokens, a post-order serialisation of a binary tree:
    ``ID_[x, y, z, r]`` is a node (position and radius, mm) that follows its left and right
    subtrees, ``#`` an empty subtree; the root is the last node token. For example
    ``#;#;0_[...];#;#;1_[...];2_[...]`` is node 2 with children 0 (left) and 1 (right).

    Parameters
    ----------
    path : str or os.PathLike
        A ``*_tree.dat`` file.
    zero_radius_mm : float
        Radius given to nodes stored with radius exactly 0 (8 nodes, 7 of them vessel tips, in 7
        of the 1,231 real files), since a :class:`~vesseltree.VesselGraph` radius must be positive; their IDs are
        listed in ``meta["zero_radius_ids"]``. Default 1e-6 mm (the smallest positive radius in
        the real files is about 2.6e-6 mm).

    Returns
    -------
    VesselGraph
        A rooted tree (the last node token is the root; edges parent -> child, every node has at
        most 2 children). Nodes are in file (post-order) order, so the root is the last node.
        Edges are listed parent by parent, left child first, so ``graph.children`` keeps the
        binary order. ``node_data["dat_id"]`` (int64) is the ID of each token and
        ``node_data["dat_side"]`` (int64) is 0 for a left child, 1 for a right child, -1 for the
        root. ``meta``: ``source``, ``format`` (``"vesselvae_dat"``), ``zero_radius_ids``.

    Raises
    ------
    FileFormatError
        The file is missing or empty, a token is neither ``#`` nor ``ID_[x, y, z, r]``, a radius
        is negative, or the tokens do not form exactly one binary tree (the message names the
        file and the token).
    """
    p = _as_path(path)
    floor = _positive(zero_radius_mm, "zero_radius_mm")
    if not p.is_file():
        raise FileFormatError(f"cannot read VesselVAE tree {str(p)!r}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise FileFormatError(f"cannot read VesselVAE tree {str(p)!r}: {exc}") from exc
    tokens = [t.strip() for t in text.strip().split(";")]
    if tokens and tokens[-1] == "":
        tokens.pop()  # a trailing ';'

    def fail(what: str) -> FileFormatError:
        return FileFormatError(f"cannot read VesselVAE tree {str(p)!r}: {what}")

    if not tokens:
        raise fail("the file is empty")
    values: list[tuple[float, float, float, float]] = []
    ids: list[int] = []
    children: list[list[int]] = []  # [left, right], -1 where empty
    stack: list[int] = []  # subtrees waiting for their parent: node index, or -1 for '#'
    for k, token in enumerate(tokens):
        if token == "#":
            stack.append(-1)
            continue
        match = _DAT_NODE.match(token)
        if match is None:
            raise fail(f"token {k} {token[:60]!r} is neither '#' nor 'ID_[x, y, z, r]'")
        if len(stack) < 2:
            raise fail(
                f"node token {k} {token[:60]!r} follows fewer than two subtrees (expected left and right)"
            )
        right = stack.pop()
        left = stack.pop()
        ids.append(int(match.group(1)))
        x, y, z, r = (float(match.group(g)) for g in range(2, 6))
        values.append((x, y, z, r))
        children.append([left, right])
        stack.append(len(ids) - 1)
    if len(stack) != 1 or stack[0] < 0:
        raise fail(
            f"the {len(tokens)} tokens leave {len(stack)} subtrees instead of one tree "
            f"(the last token {tokens[-1][:60]!r} must be the root node and close every subtree)"
        )
    root = stack[0]
    arr = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1) | (arr[:, 3] < 0))
    if bad.size:
        raise fail(
            f"node token with ID {ids[bad[0]]} has values {arr[bad[0]].tolist()}; "
            "coordinates must be finite and the radius must not be negative"
        )
    zero = np.flatnonzero(arr[:, 3] == 0)
    if zero.size:
        # a few real files store radius 0.0, mostly at a vessel tip
        arr[zero, 3] = floor
        log.debug("%s: radius 0 at %d nodes raised to %g mm", p.name, zero.size, floor)
    side = np.full(len(ids), -1, dtype=np.int64)
    edges = []
    for parent, (left, right) in enumerate(children):
        for s, child in enumerate((left, right)):
            if child >= 0:
                edges.append((parent, child))
                side[child] = s
    return VesselGraph(
        arr[:, :3],
        arr[:, 3],
        np.asarray(edges, dtype=np.int64).reshape(-1, 2),
        root=root,
        node_data={"dat_id": np.asarray(ids, dtype=np.int64), "dat_side": side},
        meta={
            "source": str(p),
            "format": "vesselvae_dat",
            "zero_radius_ids": [ids[i] for i in zero.tolist()],
        },
    )


def vesselvae_model_id(path: str | os.PathLike) -> int:
    """IntrA model number of a VesselVAE tree file, for splitting train/validation by model.

    ``ArteryObjAN12-3_tree.dat`` and its perturbed copy ``p10ArteryObjAN12-3_tree.dat`` are both
    model 12 (tree 3 of it); split by this number, never by file.

    Raises
    ------
    InvalidInputError
        The file name does not look like ``...ArteryObjAN<model>-<k>_tree.dat``.

    Examples
    --------
    >>> vesselvae_model_id("p10ArteryObjAN12-3_tree.dat")
    12
    """
    name = _as_path(path).name
    match = _MODEL_ID.search(name)
    if match is None:
        raise InvalidInputError(
            f"path must name a VesselVAE tree file like 'ArteryObjAN12-3_tree.dat', got {name!r}"
        )
    return int(match.group(1))
