"""Scores that compare a reconstructed vessel tree with the true one (lengths in mm).

- :func:`centerline_distances`: Chamfer (mean symmetric nearest distance) and Hausdorff distance
  between densely resampled centerlines, precision / recall / F1 at a tolerance, radius MAE;
- :func:`count_errors`: absolute errors of the numbers of key nodes, bifurcations and leaves;
- :func:`tree_edit_distance`: unit-cost edit distance between the topologies (see its notes);
- :func:`is_valid_tree`, :func:`validity_rate`: rooted, connected, acyclic, finite;
- :func:`tube_dice`: Dice of the two trees voxelised as unions of round cones on one grid.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InvalidInputError, describe
from ..graph import VesselGraph

__all__ = [
    "centerline_distances",
    "count_errors",
    "key_topology",
    "tree_edit_distance",
    "is_valid_tree",
    "validity_rate",
    "tube_dice",
]


def _check(graph, name: str) -> VesselGraph:
    if not isinstance(graph, VesselGraph):
        raise InvalidInputError(f"{name} must be a VesselGraph, got {describe(graph)}")
    if graph.n_nodes == 0:
        raise InvalidInputError(f"{name} is an empty graph; there is nothing to score")
    return graph


def _dense(graph: VesselGraph, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    from . import sample_graph

    return sample_graph(graph, step_mm)


def centerline_distances(
    pred: VesselGraph, truth: VesselGraph, *, tolerance_mm: float = 1.0, step_mm: float = 0.1
) -> dict[str, float]:
    """Point-set distances between two centerlines, both resampled every ``step_mm`` along edges.

    Returns
    -------
    dict
        ``chamfer_mm``: (mean over predicted points of the distance to the truth + mean over
        truth points of the distance to the prediction) / 2 (the paper's "average centreline
        distance"); ``hausdorff_mm``: the larger of the two maxima; ``precision``, ``recall``,
        ``f1``: fractions of predicted (truth) points within ``tolerance_mm`` of the other set and
        their harmonic mean; ``radius_mae_mm``: mean |r_pred - r_truth| at every predicted point
        against its nearest truth point.
    """
    _check(pred, "pred")
    _check(truth, "truth")
    if not (np.isfinite(tolerance_mm) and tolerance_mm > 0):
        raise InvalidInputError(f"tolerance_mm must be a positive number, got {tolerance_mm!r}")
    if not (np.isfinite(step_mm) and step_mm > 0):
        raise InvalidInputError(f"step_mm must be a positive number, got {step_mm!r}")
    pp, pr = _dense(pred, step_mm)
    tp, tr = _dense(truth, step_mm)
    d_pt, i_pt = cKDTree(tp).query(pp)
    d_tp, _ = cKDTree(pp).query(tp)
    prec = float(np.mean(d_pt <= tolerance_mm))
    rec = float(np.mean(d_tp <= tolerance_mm))
    return {
        "chamfer_mm": float(0.5 * (d_pt.mean() + d_tp.mean())),
        "hausdorff_mm": float(max(d_pt.max(), d_tp.max())),
        "precision": prec,
        "recall": rec,
        "f1": 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec),
        "radius_mae_mm": float(np.abs(pr - tr[i_pt]).mean()),
    }


def key_topology(graph: VesselGraph) -> tuple[np.ndarray, list[list[int]]]:
    """The key-node tree of a rooted graph: chains of one-child nodes collapsed.

    Returns the graph indices of the key nodes (root, nodes with 0 or >= 2 children), root first,
    and for each key node the positions (in that list) of its key children.
    """
    g = _check(graph, "graph")
    if g.root is None:
        g = g.to_tree(keep="largest")
    kids = g.children
    keys = [int(g.root)]
    key_children: list[list[int]] = [[]]
    stack = [0]
    while stack:
        ki = stack.pop()
        for c in kids[keys[ki]]:
            v = int(c)
            while len(kids[v]) == 1:
                v = int(kids[v][0])
            keys.append(v)
            key_children.append([])
            key_children[ki].append(len(keys) - 1)
            stack.append(len(keys) - 1)
    return np.asarray(keys, dtype=np.int64), key_children


def count_errors(pred: VesselGraph, truth: VesselGraph) -> dict[str, int]:
    """Absolute errors of the numbers of key nodes, bifurcations (>= 2 children) and leaves."""

    def counts(g: VesselGraph) -> tuple[int, int, int]:
        _, kc = key_topology(g)
        n = np.array([len(c) for c in kc])
        return len(kc), int(np.sum(n >= 2)), int(np.sum(n == 0))

    a, b = counts(pred), counts(truth)
    return {
        "node_count_error": abs(a[0] - b[0]),
        "bifurcation_count_error": abs(a[1] - b[1]),
        "leaf_count_error": abs(a[2] - b[2]),
    }


def _ordered(children: list[list[int]]) -> tuple[list[int], list[int]]:
    """Post-order labels and leftmost-leaf indices of a tree whose children are ordered
    canonically (larger sub-trees first, ties by shape)."""
    size = [1] * len(children)
    shape = [""] * len(children)

    def visit(v: int) -> None:
        for c in children[v]:
            visit(c)
        children[v].sort(key=lambda c: (-size[c], shape[c]))
        size[v] = 1 + sum(size[c] for c in children[v])
        shape[v] = "(" + "".join(shape[c] for c in children[v]) + ")"

    visit(0)
    post: list[int] = []
    leftmost: dict[int, int] = {}

    def walk(v: int) -> None:
        for c in children[v]:
            walk(c)
        post.append(v)
        leftmost[v] = leftmost[children[v][0]] if children[v] else len(post) - 1

    walk(0)
    return post, [leftmost[v] for v in post]


def _zhang_shasha(lml_a: list[int], lml_b: list[int]) -> int:
    """Unit-cost ordered tree edit distance (Zhang & Shasha 1989) from leftmost-leaf arrays."""
    na, nb = len(lml_a), len(lml_b)

    def keyroots(lml: list[int]) -> list[int]:
        seen: dict[int, int] = {}
        for i, left in enumerate(lml):
            seen[left] = i  # the highest node with this leftmost leaf
        return sorted(seen.values())

    td = np.zeros((na, nb), dtype=np.int64)
    for i in keyroots(lml_a):
        for j in keyroots(lml_b):
            li, lj = lml_a[i], lml_b[j]
            m, n = i - li + 2, j - lj + 2
            fd = np.zeros((m, n), dtype=np.int64)
            fd[:, 0] = np.arange(m)
            fd[0, :] = np.arange(n)
            for x in range(1, m):
                for y in range(1, n):
                    a, b = li + x - 1, lj + y - 1
                    if lml_a[a] == li and lml_b[b] == lj:
                        fd[x, y] = min(fd[x - 1, y] + 1, fd[x, y - 1] + 1, fd[x - 1, y - 1])
                        td[a, b] = fd[x, y]
                    else:
                        p, q = lml_a[a] - li, lml_b[b] - lj
                        fd[x, y] = min(fd[x - 1, y] + 1, fd[x, y - 1] + 1, fd[p, q] + td[a, b])
    return int(td[na - 1, nb - 1])


def tree_edit_distance(pred: VesselGraph, truth: VesselGraph, *, normalise: bool = True) -> float:
    """Unit-cost edit distance between the key-node topologies (insert, delete; relabel free).

    The exact edit distance of *unordered* trees is NP-hard, so this is the exact *ordered*
    distance (Zhang-Shasha) after ordering every node's children canonically (larger sub-tree
    first, ties broken by shape). Any ordered edit script is also an unordered one, so the value
    is an upper bound of the unordered distance, equal to it whenever the canonical orders line
    up (always for paths and for trees whose siblings differ in size). Geometry is ignored:
    this scores topology only.

    Returns
    -------
    float
        The number of edits, divided by ``max(|pred|, |truth|)`` (key nodes) when ``normalise``.
    """
    _, ca = key_topology(pred)
    _, cb = key_topology(truth)
    _, la = _ordered(ca)
    _, lb = _ordered(cb)
    d = _zhang_shasha(la, lb)
    return d / max(len(la), len(lb)) if normalise else float(d)


def is_valid_tree(graph) -> bool:
    """True for a rooted VesselGraph that is one connected acyclic tree with finite geometry."""
    return (
        isinstance(graph, VesselGraph)
        and graph.root is not None
        and graph.is_tree
        and bool(np.all(np.isfinite(graph.positions)))
        and bool(np.all(graph.radii > 0))
    )


def validity_rate(graphs) -> float:
    """Fraction of ``graphs`` that pass :func:`is_valid_tree` (1.0 for an empty list)."""
    graphs = list(graphs)
    return 1.0 if not graphs else float(np.mean([is_valid_tree(g) for g in graphs]))


def tube_dice(
    pred: VesselGraph,
    truth: VesselGraph,
    *,
    spacing_mm: float | None = None,
    resolution: int = 96,
) -> float:
    """Dice of the two trees voxelised (round cones per edge) on one axis-aligned grid.

    The grid covers both trees; its voxel is ``spacing_mm`` or, by default, the longest side of
    the truth's bounding box over ``resolution`` (the paper voxelises at 128^3).
    """
    from ..synth import voxelize
    from . import dice

    _check(pred, "pred")
    _check(truth, "truth")
    if spacing_mm is None:
        side = float(np.ptp(truth.positions, axis=0).max()) + 2 * float(truth.radii.max())
        spacing_mm = max(side, 1e-3) / float(resolution)
    if not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise InvalidInputError(f"spacing_mm must be a positive number, got {spacing_mm!r}")
    pts = np.concatenate([pred.positions, truth.positions])
    pad = float(max(pred.radii.max(), truth.radii.max())) + 2 * spacing_mm
    lo = pts.min(0) - pad
    shape = tuple(int(v) for v in np.ceil((pts.max(0) + pad - lo) / spacing_mm) + 1)
    if int(np.prod(shape)) > 2**27:
        raise InvalidInputError(
            f"the grid for spacing_mm={spacing_mm:g} would have shape {shape}; use a larger spacing"
        )
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = lo
    a = voxelize(pred, affine=affine, shape=shape)
    b = voxelize(truth, affine=affine, shape=shape)
    return dice(a.data, b.data)
