"""The canonical rooted tree VeTTA works on, and the numpy steps around it.

A :class:`CanonicalTree` keeps only the nodes that matter for topology: the root, bifurcations
(and higher) and leaves, plus one-child nodes inserted to split segments longer than a limit. The
geometry between two kept nodes is a dense polyline with radii (a *segment*). Nodes are numbered
breadth-first from the root (node 0), so a parent always comes before its children.

Everything here is numpy: segment resampling by curvature, the tree normalisation frame, sub-tree
crops and the random decoding splits used in training. Lengths are millimetres unless a docstring
says "normalised".
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..errors import EmptyInputError, InvalidInputError, describe
from ..graph import VesselGraph

__all__ = [
    "CanonicalTree",
    "Frame",
    "canonical_tree",
    "resample_segment",
    "crop_subtrees",
    "random_split",
    "root_path",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """Map between world mm and the normalised tree frame: ``u = (p - centre) * scale``.

    The bounding box of the tree is centred at the origin and its longest side becomes 0.5
    (``[-0.25, 0.25]``); radii are scaled by the same factor.
    """

    centre: tuple[float, float, float]
    scale: float  # normalised units per mm

    @classmethod
    def of_points(cls, points: np.ndarray) -> Frame:
        lo, hi = points.min(0), points.max(0)
        side = float(np.max(hi - lo))
        return cls(tuple(float(v) for v in 0.5 * (lo + hi)), 0.5 / max(side, 1e-3))

    def to_unit(self, p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, float) - np.asarray(self.centre)) * self.scale

    def to_mm(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(u, float) / self.scale + np.asarray(self.centre)

    def to_dict(self) -> dict[str, Any]:
        return {"centre": list(self.centre), "scale": self.scale}


@dataclass(frozen=True)
class CanonicalTree:
    """A rooted tree of key nodes joined by dense segments.

    Parameters
    ----------
    positions : (K, 3) float ndarray, mm
    radii : (K,) float ndarray, mm
    parent : (K,) int ndarray
        Parent of each node, -1 at the root (node 0); ``parent[i] < i``.
    curves : list of K arrays
        ``curves[i]`` is the (M_i, 4) polyline (x, y, z, r in mm) from ``parent[i]`` to ``i``,
        both ends included; ``curves[0]`` is the (1, 4) root point.
    meta : dict
    """

    positions: np.ndarray
    radii: np.ndarray
    parent: np.ndarray
    curves: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return int(len(self.parent))

    @property
    def n_children(self) -> np.ndarray:
        """(K,) int number of children of each node."""
        return np.bincount(self.parent[1:], minlength=self.n_nodes).astype(np.int64)

    @property
    def children(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.n_nodes)]
        for i in range(1, self.n_nodes):
            out[int(self.parent[i])].append(i)
        return out

    @property
    def depth(self) -> np.ndarray:
        d = np.zeros(self.n_nodes, dtype=np.int64)
        for i in range(1, self.n_nodes):
            d[i] = d[self.parent[i]] + 1
        return d

    @property
    def arc_lengths(self) -> np.ndarray:
        """(K,) arc length of each node's incoming segment (0 at the root), mm."""
        return np.array(
            [0.0]
            + [
                float(np.linalg.norm(np.diff(c[:, :3], axis=0), axis=1).sum())
                for c in self.curves[1:]
            ]
        )

    def dense_points(self) -> np.ndarray:
        """(P, 4) all curve points (x, y, z, r)."""
        return np.concatenate(self.curves, axis=0)

    def to_graph(self) -> VesselGraph:
        """The dense centerline as a rooted :class:`VesselGraph` (root = node 0).

        The K key nodes come first (in tree order), then the interior points of every segment;
        ``node_data["key_node"]`` marks the key nodes and ``edge_data["segment"]`` gives, for every
        edge, the key node its segment ends at.
        """
        k = self.n_nodes
        pos = [self.positions]
        rad = [self.radii]
        edges: list[np.ndarray] = []
        seg: list[np.ndarray] = []
        nxt = k
        for i in range(1, k):
            c = self.curves[i]
            inner = c[1:-1]
            m = len(inner)
            chain = np.concatenate([[self.parent[i]], np.arange(nxt, nxt + m), [i]]).astype(
                np.int64
            )
            pos.append(inner[:, :3])
            rad.append(inner[:, 3])
            edges.append(np.stack([chain[:-1], chain[1:]], axis=1))
            seg.append(np.full(len(chain) - 1, i, dtype=np.int64))
            nxt += m
        e = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
        key = np.zeros(nxt, dtype=bool)
        key[:k] = True
        return VesselGraph(
            np.concatenate(pos),
            np.maximum(np.concatenate(rad), 1e-6),
            e,
            root=0,
            node_data={"key_node": key},
            edge_data={"segment": np.concatenate(seg) if seg else np.zeros(0, np.int64)},
            meta={k_: v for k_, v in self.meta.items() if _jsonable(v)},
        )


def _jsonable(value) -> bool:
    return isinstance(value, (str, int, float, bool, list, dict, type(None)))


def _split_curve(curve: np.ndarray, n: int) -> list[np.ndarray]:
    """Cut a polyline into ``n`` pieces of equal arc length (interpolated cut points)."""
    seg = np.linalg.norm(np.diff(curve[:, :3], axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    cuts = np.linspace(0.0, cum[-1], n + 1)
    pieces = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        inside = np.flatnonzero((cum > a) & (cum < b))
        ends = np.stack([_interp(curve, cum, a), _interp(curve, cum, b)])
        pieces.append(np.concatenate([ends[:1], curve[inside], ends[1:]]))
    return pieces


def _interp(curve: np.ndarray, cum: np.ndarray, s: float) -> np.ndarray:
    return np.array([np.interp(s, cum, curve[:, j]) for j in range(curve.shape[1])])


def canonical_tree(
    graph: VesselGraph,
    *,
    max_segment_mm: float = 30.0,
    max_children: int = 3,
    root: int | None = None,
) -> CanonicalTree:
    """Reduce a vessel graph to its key nodes joined by dense segments.

    Parameters
    ----------
    graph : VesselGraph
        Any graph; an unrooted graph is first made a tree with ``to_tree(root, keep="largest")``.
    max_segment_mm : float
        Segments longer than this (arc length, mm) are split into equal pieces by one-child nodes.
    max_children : int
        A node with more children keeps the ``max_children`` children whose sub-trees are longest;
        the others are dropped and counted in ``meta["dropped_branches"]``.
    root : int, optional
        Root for an unrooted graph (default: the graph's default root).

    Returns
    -------
    CanonicalTree

    Raises
    ------
    InvalidInputError
        ``graph`` is not a VesselGraph or a bad option.
    EmptyInputError
        The graph has no nodes.
    """
    if not isinstance(graph, VesselGraph):
        raise InvalidInputError(f"graph must be a VesselGraph, got {describe(graph)}")
    if graph.n_nodes == 0:
        raise EmptyInputError("graph has no nodes, so it has no tree")
    if not (isinstance(max_segment_mm, (int, float)) and max_segment_mm > 0):
        raise InvalidInputError(f"max_segment_mm must be a positive number, got {max_segment_mm!r}")
    if isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 1:
        raise InvalidInputError(f"max_children must be an integer >= 1, got {max_children!r}")
    g = graph if graph.root is not None else graph.to_tree(root=root, keep="largest")
    kids = g.children
    pos, rad = g.positions, g.radii
    # subtree length of every node (children after parents in BFS order: accumulate backwards)
    order = g.depth_first_order
    sub = np.zeros(g.n_nodes)
    par = g.parents
    for v in order[::-1]:
        if par[v] >= 0:
            sub[par[v]] += sub[v] + float(np.linalg.norm(pos[v] - pos[par[v]]))
    r0 = int(g.root)
    positions = [pos[r0]]
    radii = [rad[r0]]
    parent = [-1]
    curves = [np.concatenate([pos[r0], [rad[r0]]])[None]]
    dropped = 0
    queue: deque[tuple[int, int]] = deque([(r0, 0)])  # (graph node, canonical index)
    while queue:
        v, ci = queue.popleft()
        ch = list(kids[v])
        if len(ch) > max_children:
            keep = sorted(ch, key=lambda c: -(sub[c] + np.linalg.norm(pos[c] - pos[v])))[
                :max_children
            ]
            dropped += len(ch) - max_children
            ch = [c for c in ch if c in keep]
        for c in ch:
            path = [v, int(c)]
            while len(kids[path[-1]]) == 1:
                path.append(int(kids[path[-1]][0]))
            curve = np.concatenate([pos[path], rad[path][:, None]], axis=1)
            arc = float(np.linalg.norm(np.diff(curve[:, :3], axis=0), axis=1).sum())
            n_split = max(1, int(np.ceil(arc / max_segment_mm - 1e-9)))
            pieces = _split_curve(curve, n_split) if n_split > 1 else [curve]
            prev = ci
            for piece in pieces:
                positions.append(piece[-1, :3])
                radii.append(piece[-1, 3])
                parent.append(prev)
                curves.append(piece)
                prev = len(parent) - 1
            queue.append((path[-1], prev))
    # renumber breadth-first so that parents precede children and siblings are adjacent
    par_arr = np.asarray(parent, dtype=np.int64)
    tree = CanonicalTree(
        np.asarray(positions, float).reshape(-1, 3),
        np.asarray(radii, float),
        par_arr,
        curves,
        {"dropped_branches": dropped, "source": str(graph.meta.get("source", ""))},
    )
    return _bfs_renumber(tree)


def _bfs_renumber(tree: CanonicalTree) -> CanonicalTree:
    kids = tree.children
    order = [0]
    head = 0
    while head < len(order):
        order.extend(kids[order[head]])
        head += 1
    new = np.empty(tree.n_nodes, dtype=np.int64)
    new[np.asarray(order)] = np.arange(tree.n_nodes)
    idx = np.asarray(order)
    parent = np.where(tree.parent[idx] >= 0, new[np.maximum(tree.parent[idx], 0)], -1)
    return CanonicalTree(
        tree.positions[idx], tree.radii[idx], parent, [tree.curves[i] for i in idx], tree.meta
    )


def resample_segment(
    curve: np.ndarray,
    n: int,
    *,
    power: float = 0.75,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, float, float]:
    """Normalise a segment and resample it at ``n`` points spread by smoothed curvature.

    The frame puts the start at the origin, the end on the unit sphere and the start radius at 1
    (rotation is kept). Half of the samples are spread evenly in arc length and half by the
    smoothed curvature raised to ``power``; the samples sit at the centres of ``n`` bins of equal
    weight, or (with ``rng``) at a random place inside each bin.

    Parameters
    ----------
    curve : (M, 4) float ndarray
        Polyline x, y, z, r (mm), M >= 2.
    n : int
        Number of samples.

    Returns
    -------
    samples : (n, 5) float ndarray
        Normalised (x, y, z, r, t), ``t`` the arc-length fraction in [0, 1].
    arc_mm, chord_mm : float
        Arc length and end-to-end distance of the segment.
    """
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 4 or len(c) < 2:
        raise InvalidInputError(f"curve must have shape (M >= 2, 4), got shape {c.shape}")
    seg = np.linalg.norm(np.diff(c[:, :3], axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    arc = float(cum[-1])
    chord = float(np.linalg.norm(c[-1, :3] - c[0, :3]))
    g = 128
    if arc > 1e-9:
        s_grid = np.linspace(0.0, arc, g)
        dense = np.stack([np.interp(s_grid, cum, c[:, j]) for j in range(4)], axis=1)
        d1 = gaussian_filter1d(np.diff(dense[:, :3], axis=0), sigma=2.0, axis=0, mode="nearest")
        curv = np.linalg.norm(np.diff(d1, axis=0), axis=1)
        curv = np.concatenate([[curv[0]], curv])  # one value per grid step (g - 1)
        top = curv.max()
        w_curv = (curv / top) ** power if top > 1e-12 else np.zeros_like(curv)
        even = np.full(len(curv), 0.5 / len(curv))
        weight = even + (0.5 * w_curv / w_curv.sum() if w_curv.sum() > 0 else even)
        cdf = np.concatenate([[0.0], np.cumsum(weight)])
        cdf /= cdf[-1]
        q = (np.arange(n) + (rng.random(n) if rng is not None else 0.5)) / n
        s = np.interp(q, cdf, s_grid)
        pts = np.stack([np.interp(s, cum, c[:, j]) for j in range(4)], axis=1)
        t = s / arc
    else:
        t = (np.arange(n) + 0.5) / n
        pts = np.repeat(c[:1], n, axis=0)
    scale = 1.0 / max(chord, 1e-3)
    out = np.empty((n, 5))
    out[:, :3] = (pts[:, :3] - c[0, :3]) * scale
    out[:, 3] = pts[:, 3] / max(c[0, 3], 1e-6)
    out[:, 4] = t
    return out, arc, chord


def crop_subtrees(
    tree: CanonicalTree,
    *,
    max_arc_mm: float = 60.0,
    n: int = 10,
    rng: np.random.Generator,
    min_segments: int = 3,
    max_segment_mm: float = 30.0,
) -> list[CanonicalTree]:
    """Random sub-trees of at most ``max_arc_mm`` arc length from their root to any leaf.

    Each crop starts at a random node with children and keeps what lies within ``max_arc_mm``
    along the tree (a segment crossing the limit is cut there and ends in a leaf). Crops with
    fewer than ``min_segments`` segments or no bifurcation are dropped.
    """
    kids = tree.children
    cand = [i for i in range(tree.n_nodes) if kids[i]]
    rng.shuffle(cand)
    out: list[CanonicalTree] = []
    for start in cand:
        if len(out) >= n:
            break
        curves = [np.concatenate([tree.positions[start], [tree.radii[start]]])[None]]
        parent = [-1]
        queue: deque[tuple[int, int, float]] = deque([(start, 0, 0.0)])
        while queue:
            v, ci, s0 = queue.popleft()
            for c in kids[v]:
                cur = tree.curves[c]
                seg = np.linalg.norm(np.diff(cur[:, :3], axis=0), axis=1)
                cum = np.concatenate([[0.0], np.cumsum(seg)]) + s0
                if cum[-1] <= max_arc_mm:
                    curves.append(cur)
                    parent.append(ci)
                    queue.append((c, len(parent) - 1, float(cum[-1])))
                elif cum[0] < max_arc_mm - 1.0:
                    inside = np.flatnonzero(cum < max_arc_mm)
                    end = _interp(cur, cum, max_arc_mm)
                    curves.append(np.concatenate([cur[inside], end[None]]))
                    parent.append(ci)
        par = np.asarray(parent, dtype=np.int64)
        nch = np.bincount(par[1:], minlength=len(par))
        if len(par) - 1 < min_segments or not np.any(nch >= 2):
            continue
        crop = CanonicalTree(
            np.array([c[-1, :3] for c in curves]),
            np.array([c[-1, 3] for c in curves]),
            par,
            curves,
            dict(tree.meta, crop_root=int(start)),
        )
        out.append(_bfs_renumber(crop))
    return out


def random_split(
    parent: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, int, np.ndarray]:
    """One random decoding state of a tree (teacher forcing without unrolling the recursion).

    A random topological order emits the root, then repeatedly a random pending *sibling group*
    (all children of one node, shuffled). A decoding state is a prefix of that order ending at a
    group boundary, with one *open* node of it (a node with children, none emitted yet) as the
    query; the empty prefix is the state before the root, whose target is the root itself.

    Parameters
    ----------
    parent : (K,) int ndarray
        Parent of each node, -1 at the root.

    Returns
    -------
    lhs : (L,) int ndarray
        The nodes already decoded (ancestor-closed; every sibling group complete).
    query : int
        The node whose children are predicted next, -1 for the empty state.
    targets : (T,) int ndarray
        The children of ``query`` (the root where ``query`` is -1).
    """
    par = np.asarray(parent, dtype=np.int64)
    k = len(par)
    root = int(np.flatnonzero(par < 0)[0])
    kids: list[list[int]] = [[] for _ in range(k)]
    for i in range(k):
        if par[i] >= 0:
            kids[par[i]].append(i)
    order = [root]
    bounds = [1]
    pending: list[list[int]] = []
    if kids[root]:
        pending.append(list(rng.permutation(kids[root])))
    while pending:
        group = pending.pop(int(rng.integers(len(pending))))
        order.extend(int(x) for x in group)
        bounds.append(len(order))
        for x in group:
            if kids[x]:
                pending.append(list(rng.permutation(kids[x])))
    # states: (prefix length, open nodes)
    states: list[tuple[int, list[int]]] = [(0, [])]
    emitted = np.zeros(k, dtype=bool)
    pos = 0
    for b in bounds:
        emitted[order[pos:b]] = True
        pos = b
        open_nodes = [v for v in order[:b] if kids[v] and not emitted[kids[v][0]]]
        if open_nodes:
            states.append((b, open_nodes))
    b, open_nodes = states[int(rng.integers(len(states)))]
    lhs = np.asarray(order[:b], dtype=np.int64)
    if b == 0:
        return lhs, -1, np.asarray([root], dtype=np.int64)
    q = int(open_nodes[int(rng.integers(len(open_nodes)))])
    return lhs, q, np.asarray(sorted(kids[q]), dtype=np.int64)


def root_path(parent: np.ndarray, node: int) -> np.ndarray:
    """Nodes from the root to ``node`` (both included)."""
    path = [int(node)]
    while parent[path[-1]] >= 0:
        path.append(int(parent[path[-1]]))
    return np.asarray(path[::-1], dtype=np.int64)
