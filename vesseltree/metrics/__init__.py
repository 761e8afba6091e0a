"""Accuracy measures against truth, all in millimetres.

- :func:`centerline_scores`: precision / recall / F1 of a centerline at distance tolerances, mean
  and 95th-percentile distances both ways, radius bias and MAE at matched points.
- :func:`keypoint_scores`: one-to-one matching of junctions or endpoints within a tolerance.
- :func:`dice`: overlap of two masks.
- :mod:`.graph_match`: junctions and endpoints of a graph or of expert tubes, matched one to one.
- :mod:`.volumes`: mask scores in mm (clDice, Betti-0/1 errors, HD95, ASSD).
- :mod:`.trees`: tree reconstruction scores (Chamfer, Hausdorff, count errors, tree edit distance,
  validity, Dice of voxelised tubes).

Both graphs are sampled densely along their edges (``step_mm``), so the scores do not depend on
how densely either graph stores its nodes.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from ..errors import InvalidInputError
from ..graph import VesselGraph

__all__ = ["sample_graph", "centerline_scores", "keypoint_scores", "dice"]


def sample_graph(graph: VesselGraph, step_mm: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Points (M, 3) and radii (M,) sampled along every edge at most ``step_mm`` apart.

    Isolated nodes are included as single points.
    """
    if graph.n_nodes == 0:
        return np.zeros((0, 3)), np.zeros(0)
    p, r, e = graph.positions, graph.radii, graph.edges
    if len(e) == 0:
        return np.array(p), np.array(r)
    lengths = graph.edge_lengths
    k = np.maximum(1, np.ceil(lengths / step_mm).astype(np.int64))  # pieces per edge
    rep = np.repeat(np.arange(len(e)), k)
    t = (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)) / np.repeat(k, k)
    a, b = e[rep, 0], e[rep, 1]
    pts = p[a] + t[:, None] * (p[b] - p[a])
    rad = r[a] + t * (r[b] - r[a])
    # nodes that start no edge (edge ends, isolated nodes) are not covered by t in [0, 1)
    ends = np.setdiff1d(np.arange(graph.n_nodes), e[:, 0])
    return np.concatenate([pts, p[ends]]), np.concatenate([rad, r[ends]])


def centerline_scores(
    pred: VesselGraph, truth: VesselGraph, *, tolerances=(0.5, 1.0), step_mm: float = 0.1
) -> dict[str, float]:
    """Compare a predicted centerline graph with a truth graph.

    Returns a dict with, for each tolerance ``t`` (mm): ``precision@t`` (fraction of predicted
    centerline length within ``t`` of the truth), ``recall@t`` (fraction of truth length within
    ``t`` of the prediction) and ``f1@t``; ``mean_pred_to_truth``, ``p95_pred_to_truth``,
    ``mean_truth_to_pred``, ``p95_truth_to_pred`` (mm); ``radius_bias`` and ``radius_mae`` (mm,
    predicted minus truth radius at predicted points within the largest tolerance).
    """
    for name, g in (("pred", pred), ("truth", truth)):
        if not isinstance(g, VesselGraph):
            raise InvalidInputError(f"{name} must be a VesselGraph, got {type(g).__name__}")
        if g.n_nodes == 0:
            raise InvalidInputError(f"{name} is an empty graph; there is nothing to score")
    pp, pr = sample_graph(pred, step_mm)
    tp, tr = sample_graph(truth, step_mm)
    d_pt, i_pt = cKDTree(tp).query(pp)
    d_tp, _ = cKDTree(pp).query(tp)
    out: dict[str, float] = {}
    for t in tolerances:
        prec = float(np.mean(d_pt <= t))
        rec = float(np.mean(d_tp <= t))
        out[f"precision@{t:g}"] = prec
        out[f"recall@{t:g}"] = rec
        out[f"f1@{t:g}"] = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
    out["mean_pred_to_truth"] = float(d_pt.mean())
    out["p95_pred_to_truth"] = float(np.percentile(d_pt, 95))
    out["mean_truth_to_pred"] = float(d_tp.mean())
    out["p95_truth_to_pred"] = float(np.percentile(d_tp, 95))
    near = d_pt <= max(tolerances)
    diff = pr[near] - tr[i_pt[near]]
    out["radius_bias"] = float(diff.mean()) if diff.size else float("nan")
    out["radius_mae"] = float(np.abs(diff).mean()) if diff.size else float("nan")
    return out


def keypoint_scores(pred_points, truth_points, *, tolerance_mm: float = 2.0) -> dict[str, float]:
    """One-to-one matching of two point sets (e.g. junctions) within ``tolerance_mm``.

    Pairs are chosen to maximise the number of matches, then minimise the total distance
    (Hungarian assignment on distances, with pairs beyond the tolerance forbidden).
    Returns ``precision``, ``recall``, ``f1``, ``matched``, ``n_pred``, ``n_truth``.
    """
    p = np.asarray(pred_points, dtype=float).reshape(-1, 3)
    t = np.asarray(truth_points, dtype=float).reshape(-1, 3)
    matched = 0
    if len(p) and len(t):
        d = np.linalg.norm(p[:, None, :] - t[None, :, :], axis=2)
        big = 1e6
        cost = np.where(d <= tolerance_mm, d, big)
        rows, cols = linear_sum_assignment(cost)
        matched = int(np.sum(cost[rows, cols] < big))
    prec = matched / len(p) if len(p) else float(len(t) == 0)
    rec = matched / len(t) if len(t) else float(len(p) == 0)
    f1 = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
    return {
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "matched": matched,
        "n_pred": len(p),
        "n_truth": len(t),
    }


def dice(a, b) -> float:
    """Dice overlap of two boolean masks (arrays or Volumes) of the same shape."""
    a = np.asarray(getattr(a, "data", a)) > 0
    b = np.asarray(getattr(b, "data", b)) > 0
    if a.shape != b.shape:
        raise InvalidInputError(f"masks must have the same shape, got {a.shape} and {b.shape}")
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


# the submodules import from this one, so they load after it (and lazily, on first attribute use)
_SUBMODULE_NAMES = {
    "graph_keypoints": "graph_match",
    "tube_keypoints": "graph_match",
    "contracted_cycles": "graph_match",
    "match_keypoints": "graph_match",
    "cldice": "volumes",
    "betti_numbers": "volumes",
    "betti_errors": "volumes",
    "hd95": "volumes",
    "assd": "volumes",
    "surface_distances": "volumes",
    "volume_scores": "volumes",
}
__all__ += sorted(_SUBMODULE_NAMES) + ["graph_match", "volumes", "trees"]


def __getattr__(name: str):
    import importlib

    if name in ("graph_match", "volumes", "trees"):
        return importlib.import_module(f".{name}", __name__)
    if name in _SUBMODULE_NAMES:
        module = importlib.import_module(f".{_SUBMODULE_NAMES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
