"""Matching the key points of two centerline graphs: junctions, free tips and cycles, in mm.

Skeletons stored voxel by voxel (scikit-image + skan, kimimaro) mark one bifurcation with a
cluster of adjacent junction voxels, and expert annotations such as TubeTK's store each vessel as
a separate polyline whose end merely touches its parent. To compare junctions and endpoints fairly
across such graphs, every graph is first reduced to its key points the same way:

- :func:`graph_keypoints`: junction clusters (junction nodes joined by an edge or closer than
  ``merge_mm``) collapsed to their centroid, and the free tips (degree-1 nodes);
- :func:`tube_keypoints`: the same for a set of separate tubes (``node_data["tube_id"]``): a tube
  end within ``attach_mm`` of another tube is a junction (at the nearest point of that tube), any
  other tube end is a free tip;
- :func:`contracted_cycles`: independent cycles once junction clusters are collapsed, so the
  small cliques of voxel skeletons do not count as loops;
- :func:`match_keypoints`: :func:`~vesseltree.metrics.keypoint_scores` of both kinds at once.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..errors import InvalidInputError
from ..graph import VesselGraph

__all__ = ["graph_keypoints", "tube_keypoints", "contracted_cycles", "match_keypoints"]


def _check_graph(graph, name: str = "graph") -> VesselGraph:
    if not isinstance(graph, VesselGraph):
        raise InvalidInputError(f"{name} must be a VesselGraph, got {type(graph).__name__}")
    return graph


def _check_mm(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number >= 0 (mm), got {value!r}") from None
    if not np.isfinite(out) or out < 0:
        raise InvalidInputError(f"{name} must be a number >= 0 (mm), got {value!r}")
    return out


def _junction_clusters(graph: VesselGraph, merge_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Junction node ids and their cluster label (0..k-1)."""
    deg = graph.degrees
    junc = np.flatnonzero(deg >= 3)
    if junc.size == 0:
        return junc, np.zeros(0, np.int64)
    row = np.full(graph.n_nodes, -1, np.int64)
    row[junc] = np.arange(junc.size)
    e = graph.edges
    both = (row[e[:, 0]] >= 0) & (row[e[:, 1]] >= 0)
    a, b = [row[e[both, 0]]], [row[e[both, 1]]]
    if merge_mm > 0 and junc.size > 1:
        pairs = cKDTree(graph.positions[junc]).query_pairs(merge_mm, output_type="ndarray")
        a.append(pairs[:, 0])
        b.append(pairs[:, 1])
    a, b = np.concatenate(a), np.concatenate(b)
    link = sp.coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(junc.size, junc.size))
    _, lab = connected_components(link, directed=False)
    return junc, lab.astype(np.int64)


def graph_keypoints(graph: VesselGraph, *, merge_mm: float = 1.0) -> dict[str, np.ndarray]:
    """Junctions (clusters collapsed) and free tips of a centerline graph.

    Parameters
    ----------
    graph : VesselGraph
    merge_mm : float
        Junction nodes closer than this (mm), or joined by an edge, are one junction.

    Returns
    -------
    dict
        ``junctions`` (J, 3) mm: the centroid of each junction cluster; ``endpoints`` (T, 3) mm:
        the degree-1 nodes.
    """
    graph = _check_graph(graph)
    merge_mm = _check_mm(merge_mm, "merge_mm")
    junc, lab = _junction_clusters(graph, merge_mm)
    if junc.size:
        k = int(lab.max()) + 1
        cnt = np.bincount(lab, minlength=k)[:, None]
        cen = np.stack(
            [np.bincount(lab, graph.positions[junc, i], minlength=k) for i in range(3)], axis=1
        )
        junctions = cen / cnt
    else:
        junctions = np.zeros((0, 3))
    return {"junctions": junctions, "endpoints": graph.positions[graph.endpoints].reshape(-1, 3)}


def contracted_cycles(graph: VesselGraph, *, merge_mm: float = 1.0) -> int:
    """Independent cycles of ``graph`` once each junction cluster is one node.

    The cliques that voxel skeletons form around a bifurcation (three adjacent junction voxels
    make a triangle) vanish; real loops, and the loops of fused or touching vessels, remain.
    """
    graph = _check_graph(graph)
    merge_mm = _check_mm(merge_mm, "merge_mm")
    if graph.n_nodes == 0:
        return 0
    junc, lab = _junction_clusters(graph, merge_mm)
    node = np.arange(graph.n_nodes)
    node[junc] = graph.n_nodes + lab
    _, node = np.unique(node, return_inverse=True)
    e = node[graph.edges]
    e = e[e[:, 0] != e[:, 1]]
    n = int(node.max()) + 1
    link = sp.coo_matrix((np.ones(len(e), np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    n_comp, _ = connected_components(link, directed=False)
    # parallel edges between the same two nodes are cycles too (a short loop around a junction)
    return int(len(e) - n + n_comp)


def tube_keypoints(
    graph: VesselGraph, *, attach_mm: float = 2.0, merge_mm: float = 1.0
) -> dict[str, np.ndarray]:
    """Junctions and free tips of a centerline stored as separate tubes (TubeTK's expert graphs).

    Each tube is the nodes that share ``node_data["tube_id"]``, in node order; its two ends are
    its first and last node. An end with a point of another tube within ``attach_mm`` attaches
    to the nearest such point. The place where it attaches is the ball of radius ``merge_mm``
    around that point (balls that share points are one place); its degree is the number of tube
    pieces that leave it, not counting a piece that ends within ``attach_mm`` of it (a tube
    drawn a little past the point where it meets the next one). A place of degree 3 or more is a
    junction (a side branch leaving a tube, or several tubes starting at one point); a place of
    degree 2 is a tube split in two where one vessel runs on, so it is neither a junction nor an
    endpoint. Every end with no other tube within ``attach_mm`` is a free tip.

    Returns
    -------
    dict
        ``junctions`` (J, 3): the mean attachment point of each junction, and ``endpoints``
        (T, 3), mm.
    """
    graph = _check_graph(graph)
    attach_mm = _check_mm(attach_mm, "attach_mm")
    merge_mm = _check_mm(merge_mm, "merge_mm")
    if "tube_id" not in graph.node_data:
        raise InvalidInputError(
            "graph has no node_data['tube_id']; read the expert file with "
            "read_tubetk_centerlines(path, connect=False)"
        )
    tube = np.asarray(graph.node_data["tube_id"])
    pos = graph.positions
    n = len(pos)
    tree = cKDTree(pos)
    order = np.argsort(tube, kind="stable")
    bounds = np.flatnonzero(np.diff(tube[order])) + 1
    groups = np.split(order, bounds) if n else []
    tips, balls, anchors = [], [], []
    for ids in groups:
        t = tube[ids[0]]
        for end in {int(ids[0]), int(ids[-1])}:
            near = np.asarray(tree.query_ball_point(pos[end], attach_mm), dtype=np.int64)
            near = near[tube[near] != t]
            if near.size == 0:
                tips.append(pos[end])
                continue
            j = int(near[np.argmin(np.linalg.norm(pos[near] - pos[end], axis=1))])
            ball = np.asarray(tree.query_ball_point(pos[j], merge_mm), dtype=np.int64)
            balls.append(np.union1d(ball, [end, j]))
            anchors.append(j)
    junctions = np.zeros((0, 3))
    if balls:
        # places: attachment balls that share a point are one place
        k = len(balls)
        member = np.concatenate(balls)
        owner = np.repeat(np.arange(k), [len(b) for b in balls])
        link = sp.coo_matrix((np.ones(member.size, np.int8), (owner, member)), shape=(k, n))
        both = (link @ link.T).tocoo()
        _, place = connected_components(both, directed=False)
        inside = np.full(n, -1, np.int64)
        inside[member] = place[owner]
        # degree of a place: the tube pieces that leave it, except stubs that end within
        # attach_mm (a tube drawn a little past the point where it meets the next one)
        deg = np.zeros(place.max() + 1, np.int64)
        for ids in groups:
            lab = inside[ids]
            if not np.any(lab >= 0):
                continue
            step = np.linalg.norm(np.diff(pos[ids], axis=0), axis=1)
            arc = np.concatenate([[0.0], np.cumsum(step)])
            inn = np.flatnonzero(lab >= 0)
            # runs of outside nodes between inside nodes (or the tube's ends): a run from one
            # place to another is a piece leaving each; a run that leaves a place and comes
            # back to it is two pieces only if it reaches attach_mm out and back (a tube that
            # grazes the edge of the place's balls for a few points does not leave it)
            for a, b in zip(inn[:-1], inn[1:]):
                if lab[a] != lab[b] or (b > a + 1 and arc[b] - arc[a] >= 2.0 * attach_mm):
                    deg[lab[a]] += 1
                    deg[lab[b]] += 1
            first, last = inn[0], inn[-1]
            if first > 0 and arc[first] >= attach_mm:
                deg[lab[first]] += 1
            if last < len(ids) - 1 and arc[-1] - arc[last] >= attach_mm:
                deg[lab[last]] += 1
        anchors = np.asarray(anchors)
        n_place = place.max() + 1
        cnt = np.bincount(place, minlength=n_place)[:, None]
        cen = np.stack(
            [np.bincount(place, pos[anchors, i], minlength=n_place) for i in range(3)], 1
        )
        junctions = (cen / cnt)[deg >= 3]
    return {"junctions": junctions, "endpoints": np.asarray(tips, dtype=np.float64).reshape(-1, 3)}


def match_keypoints(
    pred: dict[str, np.ndarray], truth: dict[str, np.ndarray], *, tolerance_mm: float = 2.0
) -> dict[str, float]:
    """Junction and endpoint scores of two key-point sets (from the functions above).

    Returns
    -------
    dict
        ``junction_precision``, ``junction_recall``, ``junction_f1``, ``endpoint_precision``,
        ``endpoint_recall``, ``endpoint_f1``, ``spurious_endpoints`` (predicted tips with no
        true tip within the tolerance), and the counts ``n_junctions``, ``n_junctions_truth``,
        ``n_endpoints``, ``n_endpoints_truth``.
    """
    from . import keypoint_scores

    tol = _check_mm(tolerance_mm, "tolerance_mm")
    out: dict[str, float] = {}
    for kind, key in (("junction", "junctions"), ("endpoint", "endpoints")):
        s = keypoint_scores(pred[key], truth[key], tolerance_mm=tol)
        out[f"{kind}_precision"] = s["precision"]
        out[f"{kind}_recall"] = s["recall"]
        out[f"{kind}_f1"] = s["f1"]
        out[f"n_{key}"] = s["n_pred"]
        out[f"n_{key}_truth"] = s["n_truth"]
        if kind == "endpoint":
            out["spurious_endpoints"] = s["n_pred"] - s["matched"]
    return out
