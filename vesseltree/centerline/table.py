"""`branch_table`: one row per branch of a `VesselGraph`, with column names a skan user knows.

Lengths and coordinates in world millimetres.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, describe
from ..graph import VesselGraph

__all__ = ["branch_table", "BRANCH_COLUMNS"]

#: columns of :func:`branch_table`, in order (``label`` only where the graph has that node data)
BRANCH_COLUMNS = (
    "skeleton_id",
    "node_id_src",
    "node_id_dst",
    "branch_distance",
    "branch_type",
    "euclidean_distance",
    "tortuosity",
    "mean_radius",
    "min_radius",
    "max_radius",
    "n_nodes",
    "label",
    "coord_src_0",
    "coord_src_1",
    "coord_src_2",
    "coord_dst_0",
    "coord_dst_1",
    "coord_dst_2",
)


def branch_table(graph: VesselGraph, *, as_dict: bool = False):
    """Per-branch measurements of a centerline graph.

    Branches are :attr:`VesselGraph.branches`: node paths between nodes of degree != 2 (rooted
    graphs: paths run away from the root, so ``src`` is the parent side).

    Parameters
    ----------
    graph : VesselGraph
    as_dict : bool
        Return a dict of (B,) numpy arrays instead of a ``pandas.DataFrame``.

    Returns
    -------
    pandas.DataFrame or dict of str -> (B,) ndarray
        One row per branch, index = branch index:

        - ``skeleton_id`` (int): connected component of the graph;
        - ``node_id_src``, ``node_id_dst`` (int): end nodes;
        - ``branch_distance`` (mm): arc length along the branch;
        - ``branch_type`` (int, skan's codes): 0 endpoint-endpoint, 1 junction-endpoint,
          2 junction-junction (a loop from a junction back to itself included), 3 isolated cycle;
        - ``euclidean_distance`` (mm): chord between the end nodes;
        - ``tortuosity``: ``branch_distance / euclidean_distance`` (>= 1; NaN for a closed loop);
        - ``mean_radius`` (mm, length-weighted along the branch), ``min_radius``, ``max_radius``
          (mm, over its nodes);
        - ``n_nodes`` (int): nodes on the branch, ends included;
        - ``label`` (int): the most common ``node_data["label"]`` of its nodes (only where the
          graph has labels);
        - ``coord_src_0..2``, ``coord_dst_0..2`` (mm): world coordinates of the end nodes.

    Examples
    --------
    >>> from vesseltree.synth import y_bifurcation
    >>> t = branch_table(y_bifurcation(), as_dict=True)
    >>> [round(float(x), 3) for x in t["branch_distance"]]
    [20.0, 15.0, 15.0]
    """
    if not isinstance(graph, VesselGraph):
        raise InvalidInputError(f"graph must be a VesselGraph, got {describe(graph)}")
    branches = graph.branches
    nb = len(branches)
    pos, rad, deg = graph.positions, graph.radii, graph.degrees
    has_label = "label" in graph.node_data
    src = np.array([b[0] for b in branches], dtype=np.int64)
    dst = np.array([b[-1] for b in branches], dtype=np.int64)
    length = np.zeros(nb)
    mean_r = np.zeros(nb)
    min_r = np.zeros(nb)
    max_r = np.zeros(nb)
    n_nodes = np.zeros(nb, dtype=np.int64)
    btype = np.zeros(nb, dtype=np.int64)
    label = np.zeros(nb, dtype=np.int64)
    labels = np.asarray(graph.node_data["label"]) if has_label else None
    for i, b in enumerate(branches):
        seg = np.linalg.norm(np.diff(pos[b], axis=0), axis=1)
        r = rad[b]
        length[i] = seg.sum()
        mid = 0.5 * (r[1:] + r[:-1])
        mean_r[i] = float((seg * mid).sum() / length[i]) if length[i] > 0 else float(r.mean())
        min_r[i], max_r[i] = r.min(), r.max()
        n_nodes[i] = len(b) - (1 if b[0] == b[-1] else 0)
        ends = deg[[b[0], b[-1]]]
        if b[0] == b[-1] and ends[0] == 2:
            btype[i] = 3
        else:
            tips = int(np.sum(ends <= 1))
            btype[i] = {2: 0, 1: 1, 0: 2}[tips]
        if labels is not None:
            vals, counts = np.unique(labels[b], return_counts=True)
            label[i] = int(vals[np.argmax(counts)])
    chord = np.linalg.norm(pos[dst] - pos[src], axis=1) if nb else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tort = np.where(chord > 1e-9, length / np.where(chord > 1e-9, chord, 1.0), np.nan)
    comp = graph.component_labels[src] if nb else np.zeros(0, np.int64)
    out = {
        "skeleton_id": np.asarray(comp, dtype=np.int64),
        "node_id_src": src,
        "node_id_dst": dst,
        "branch_distance": length,
        "branch_type": btype,
        "euclidean_distance": chord,
        "tortuosity": tort,
        "mean_radius": mean_r,
        "min_radius": min_r,
        "max_radius": max_r,
        "n_nodes": n_nodes,
    }
    if has_label:
        out["label"] = label
    ps = pos[src] if nb else np.zeros((0, 3))
    pd_ = pos[dst] if nb else np.zeros((0, 3))
    for k in range(3):
        out[f"coord_src_{k}"] = ps[:, k].copy()
    for k in range(3):
        out[f"coord_dst_{k}"] = pd_[:, k].copy()
    if as_dict:
        return out
    import pandas as pd

    return pd.DataFrame(out)
