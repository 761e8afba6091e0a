"""From skeleton voxels to a branch graph.

Skeleton voxels are joined by 26-adjacency, minus the "corner-cutting" links: a diagonal link is
dropped where a path of shorter links joins the same two voxels, so an L-shaped step of a thin
curve does not look like a junction. Adjacent voxels with three or more links form a junction
cluster that becomes one node. The graph is then stored as key nodes (junctions and tips) and
branches (the ordered run of skeleton points between two key nodes), which is what pruning, loop
handling and refinement operate on.

Positions here are world mm; ``r`` is the inscribed (EDT) radius in mm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse.csgraph import connected_components

from .cleanup import SparseMask, pair_graph, sparse_adjacency, unique_ints

__all__ = ["Branch", "SkeletonGraph", "build_skeleton_graph", "canonical_order"]

log = logging.getLogger(__name__)


@dataclass
class Branch:
    """A run of centerline points between key nodes ``u`` and ``v`` (``u == v`` for a closed loop).

    ``pts`` (P, 3) world mm and ``r`` (P,) mm hold the interior points only, ordered from u to v.
    """

    u: int
    v: int
    pts: np.ndarray
    r: np.ndarray
    alive: bool = True
    cached_length: float | None = None
    cached_radius: float | None = None

    def polyline(self, graph: SkeletonGraph) -> np.ndarray:
        """(P + 2, 3) points from node u through the interior to node v, mm."""
        return np.concatenate(
            [graph.node_pos[self.u][None], self.pts, graph.node_pos[self.v][None]]
        )

    def length(self, graph: SkeletonGraph) -> float:
        """Polyline length, mm (cached: reset ``cached_length`` when an end node moves)."""
        if self.cached_length is None:
            p = self.polyline(graph)
            d = p[1:] - p[:-1]  # np.diff, without its overhead (called thousands of times)
            self.cached_length = float(np.sqrt((d * d).sum(1)).sum())
        return self.cached_length

    def median_radius(self) -> float | None:
        """Median inscribed radius of the interior points, mm (None for a branch without any)."""
        if self.cached_radius is None and len(self.r):
            n = len(self.r)
            if n <= 64:  # most branches: a Python sort beats np.median's overhead
                s = sorted(self.r.tolist())
                self.cached_radius = 0.5 * (s[(n - 1) // 2] + s[n // 2])
            else:
                self.cached_radius = float(np.median(self.r))
        return self.cached_radius

    def other(self, node: int) -> int:
        return self.v if node == self.u else self.u


@dataclass
class SkeletonGraph:
    """Key nodes and branches of a centerline, in world mm (mutable, used while pruning)."""

    node_pos: list[np.ndarray] = field(default_factory=list)
    node_r: list[float] = field(default_factory=list)
    branches: list[Branch] = field(default_factory=list)

    def add_node(self, pos, r) -> int:
        self.node_pos.append(np.asarray(pos, dtype=np.float64))
        self.node_r.append(float(r))
        return len(self.node_pos) - 1

    def alive_branches(self) -> list[int]:
        return [i for i, b in enumerate(self.branches) if b.alive]

    def incidence(self) -> dict[int, list[int]]:
        """Node -> alive branch ids touching it (a closed loop is listed twice at its node)."""
        inc: dict[int, list[int]] = {}
        for i, b in enumerate(self.branches):
            if b.alive:
                inc.setdefault(b.u, []).append(i)
                inc.setdefault(b.v, []).append(i)
        return inc

    def degree(self, inc: dict[int, list[int]], node: int) -> int:
        return len(inc.get(node, ()))

    def merge_degree_two(self) -> int:
        """Join the two branches at every node of degree 2 into one; returns how many joins."""
        inc = self.incidence()
        joins = 0
        stack = [n for n, ids in inc.items() if len(ids) == 2]
        while stack:
            node = stack.pop()
            ids = inc.get(node, [])
            if len(ids) != 2 or ids[0] == ids[1]:
                continue
            a, b = self.branches[ids[0]], self.branches[ids[1]]
            # orient a to end at node and b to start at it
            pa, ra = (a.pts, a.r) if a.v == node else (a.pts[::-1], a.r[::-1])
            ua = a.u if a.v == node else a.v
            pb, rb = (b.pts, b.r) if b.u == node else (b.pts[::-1], b.r[::-1])
            vb = b.v if b.u == node else b.u
            merged = Branch(
                ua,
                vb,
                np.concatenate([pa, self.node_pos[node][None], pb]),
                np.concatenate([ra, [self.node_r[node]], rb]),
            )
            a.alive = b.alive = False
            new = len(self.branches)
            self.branches.append(merged)
            del inc[node]
            for end, old in ((ua, ids[0]), (vb, ids[1])):
                lst = inc[end]
                lst[lst.index(old)] = new
            joins += 1
            # a closed loop whose only node has degree 2 stays a self-loop (no further joins)
            for end in (ua, vb):
                if end != node and len(inc[end]) == 2 and inc[end][0] != inc[end][1]:
                    stack.append(end)
        return joins


def _reduced_edges(ijk: np.ndarray, lookup) -> tuple[np.ndarray, np.ndarray]:
    """26-adjacent pairs, without diagonal links that a path of shorter links already joins."""
    a, b = sparse_adjacency(ijk, lookup, 26)
    d = ijk[b] - ijk[a]
    order = np.abs(d).sum(1)
    drop = np.zeros(len(a), bool)
    for m in np.argwhere(np.ones((2, 2, 2))):  # every 0/1 mask over the three axes
        sub = d * m
        so = np.abs(sub).sum(1)
        test = (order >= 2) & (so > 0) & (so < order) & ~drop
        if test.any():
            idx = np.flatnonzero(test)
            drop[idx] |= lookup(ijk[a[idx]] + sub[idx]) >= 0
    return a[~drop], b[~drop]


def build_skeleton_graph(
    skel: np.ndarray, shape, affine: np.ndarray, radius: np.ndarray
) -> SkeletonGraph:
    """Branch graph of skeleton voxels.

    Parameters
    ----------
    skel : (S, 3) int64 ndarray
        Skeleton voxel indices, sorted by flat index.
    shape : tuple of 3 int
        Grid shape.
    affine : (4, 4) ndarray
        Voxel -> world mm.
    radius : (S,) float64 ndarray, mm
        Inscribed radius at each skeleton voxel.
    """
    s = len(skel)
    sm = SparseMask(np.ravel_multi_index(tuple(skel.T), shape).astype(np.int64), tuple(shape))
    world = skel @ affine[:3, :3].T + affine[:3, 3]
    a, b = _reduced_edges(skel, sm.lookup)
    adj = pair_graph(a, b, s, symmetric=True)
    deg = np.diff(adj.indptr)
    g = SkeletonGraph()
    node_of = np.full(s, -1, np.int64)

    # junction clusters
    junc = deg >= 3
    jv = np.flatnonzero(junc)
    if jv.size:
        jj = junc[a] & junc[b]
        if jj.any():
            _, clab = connected_components(pair_graph(a[jj], b[jj], s), directed=False)
        else:  # no two junction voxels touch: each is a cluster of its own
            clab = np.arange(s)
        uniq = unique_ints(clab[jv])
        inv = np.searchsorted(uniq, clab[jv])
        # the members of every cluster at once, in the order of their voxels: summed in that
        # order, as a per-cluster mean would
        members = jv[np.argsort(inv, kind="stable")]
        count = np.bincount(inv, minlength=len(uniq))
        starts = np.concatenate([[0], np.cumsum(count)[:-1]])
        mean = np.add.reduceat(world[members], starts, axis=0) / count[:, None]
        r_max = np.maximum.reduceat(radius[members], starts)
        first = len(g.node_pos)
        for c in range(len(uniq)):
            g.add_node(mean[c].copy(), r_max[c])
        node_of[members] = np.repeat(np.arange(first, first + len(uniq)), count)
    for v in np.flatnonzero(deg <= 1):
        node_of[v] = g.add_node(world[v], radius[v])

    # the walks go voxel by voxel: on Python lists, whose items are much cheaper to read and
    # write than those of arrays (key: node_of as a list, kept up to date from here on)
    indptr, indices = adj.indptr.tolist(), adj.indices.tolist()
    key = node_of.tolist()
    visited = [False] * s
    seen_direct: set[tuple[int, int]] = set()

    def walk(start: int, first: int) -> None:
        path = []
        prev, cur = start, first
        while key[cur] < 0:
            visited[cur] = True
            path.append(cur)
            at = indptr[cur]
            nxt = indices[at] if indices[at] != prev else indices[at + 1]
            prev, cur = cur, nxt
        idx = np.asarray(path, dtype=np.int64)
        g.branches.append(Branch(key[start], key[cur], world[idx], radius[idx]))

    for v in np.flatnonzero(node_of >= 0).tolist():
        for nb in indices[indptr[v] : indptr[v + 1]]:
            if key[nb] >= 0:
                pu, pv = key[v], key[nb]
                if pu != pv and (min(pu, pv), max(pu, pv)) not in seen_direct:
                    seen_direct.add((min(pu, pv), max(pu, pv)))
                    g.branches.append(Branch(pu, pv, np.zeros((0, 3)), np.zeros(0)))
            elif not visited[nb]:
                walk(v, nb)
    # closed loops of degree-2 voxels with no key node: open them at their first voxel
    for v in np.flatnonzero((deg == 2) & ~np.array(visited, bool)).tolist():
        if visited[v]:
            continue
        key[v] = g.add_node(world[v], radius[v])
        visited[v] = True
        walk(v, indices[indptr[v]])
    return canonical_order(g)


def _world_key(points: np.ndarray) -> np.ndarray:
    """Lexicographic rank of world points (rounded to a micrometre), for order-free tie breaks."""
    q = np.round(np.asarray(points, np.float64).reshape(-1, 3), 3)
    return np.lexsort((q[:, 2], q[:, 1], q[:, 0]))


def canonical_order(g: SkeletonGraph) -> SkeletonGraph:
    """Renumber nodes and branches by world position, so that nothing depends on storage order.

    Nodes are sorted by their world coordinates; each branch runs from its lower to its higher
    node (a closed loop from its lexicographically first point, at which a loop with no other
    branch gets its node); branches are sorted by their end nodes, then by their middle point.
    Pruning and refinement break ties by these indices, so a flipped or permuted copy of a mask
    (same world voxels) yields the same graph.
    """
    n = len(g.node_pos)
    if n == 0:
        return g
    pos = np.asarray(g.node_pos)
    inc = g.incidence()
    for b in g.branches:
        if b.u == b.v and len(b.pts) and len(inc.get(b.u, ())) == 2:
            # a closed loop alone at its node: move the node to the loop's first world point
            ring = np.concatenate([pos[b.u][None], b.pts])
            rr = np.concatenate([[g.node_r[b.u]], b.r])
            first = int(_world_key(ring)[0])
            ring, rr = np.roll(ring, -first, axis=0), np.roll(rr, -first)
            pos[b.u], g.node_r[b.u] = ring[0], float(rr[0])
            b.pts, b.r = ring[1:], rr[1:]
            b.cached_length = b.cached_radius = None
    order = _world_key(pos)
    new_id = np.empty(n, np.int64)
    new_id[order] = np.arange(n)
    out = SkeletonGraph(
        node_pos=[pos[i].copy() for i in order], node_r=[g.node_r[i] for i in order]
    )
    keyed, mids = [], []
    for b in g.branches:
        if not b.alive:
            continue
        u, v = int(new_id[b.u]), int(new_id[b.v])
        pts, r = b.pts, b.r
        if u > v or (u == v and len(pts) > 1 and _world_key(pts[[0, -1]])[0] == 1):
            u, v, pts, r = v, u, pts[::-1], r[::-1]
        mids.append(pts[len(pts) // 2] if len(pts) else np.zeros(3))
        keyed.append(((u, v, len(pts)), Branch(u, v, pts, r)))
    # the middle points, rounded all at once
    mids = np.round(np.reshape(mids, (-1, 3)), 3).tolist()
    keyed = [(key + tuple(mid), b) for (key, b), mid in zip(keyed, mids)]
    keyed.sort(key=lambda kb: kb[0])
    out.branches = [b for _, b in keyed]
    return out
