"""Spur pruning and loop classification on a :class:`~.graph_build.SkeletonGraph`.

Both rules are dimensionless, in units of the local inscribed radius, so one setting serves a
0.3 mm cerebral artery and a 10 mm aorta alike:

* a terminal branch is a spur when the part of it that sticks out of its parent vessel
  (its length minus the parent's radius at the junction) is shorter than ``spur_ratio`` times its
  own radius (a bump of the wall, not a vessel);
* a cycle is a noise handle when its length is below ``loop_ratio`` times the largest radius on it
  (a hole punched through a wall, or two touching vessels bridged by a few voxels); it is cut at
  its thinnest branch. Longer cycles (anastomoses, the circle of Willis, a real loop) are kept.
"""

from __future__ import annotations

import heapq
import logging

import numpy as np

from .graph_build import SkeletonGraph

__all__ = ["prune_spurs", "cut_short_loops", "drop_small_components"]

log = logging.getLogger(__name__)


def _branch_radius(g: SkeletonGraph, bi: int) -> float:
    b = g.branches[bi]
    if len(b.r):
        return float(np.median(b.r))
    return float(min(g.node_r[b.u], g.node_r[b.v]))


def prune_spurs(g: SkeletonGraph, *, spur_ratio: float, min_length_mm: float) -> int:
    """Remove spurs until none is left; returns how many were removed.

    Parameters
    ----------
    spur_ratio : float
        A terminal branch is a spur when ``length - r_junction < spur_ratio * r_branch``.
    min_length_mm : float
        Terminal branches shorter than this (mm) beyond the parent wall are always spurs.
    """
    removed = 0
    while True:
        inc = g.incidence()
        best: dict[int, tuple[float, int]] = {}
        for bi in g.alive_branches():
            b = g.branches[bi]
            if b.u == b.v:
                continue
            du, dv = len(inc[b.u]), len(inc[b.v])
            if du == 1 and dv >= 3:
                junction = b.v
            elif dv == 1 and du >= 3:
                junction = b.u
            else:
                continue
            rb = max(_branch_radius(g, bi), 1e-6)
            protrusion = b.length(g) - g.node_r[junction]
            if protrusion < spur_ratio * rb or protrusion < min_length_mm:
                score = protrusion / rb
                if junction not in best or score < best[junction][0]:
                    best[junction] = (score, bi)
        if not best:
            return removed
        for _, bi in best.values():
            g.branches[bi].alive = False
            removed += 1
        g.merge_degree_two()


def _shortest_cycles(g: SkeletonGraph, loop_ratio: float) -> list[tuple[float, list[int]]]:
    """Short cycles through each branch: (length / radius score, branch ids), shortest first."""
    alive = g.alive_branches()
    if not alive:
        return []
    length = {bi: g.branches[bi].length(g) for bi in alive}
    radius = {bi: _branch_radius(g, bi) for bi in alive}
    adj: dict[int, list[tuple[int, int]]] = {}
    for bi in alive:
        b = g.branches[bi]
        adj.setdefault(b.u, []).append((b.v, bi))
        adj.setdefault(b.v, []).append((b.u, bi))
    found: list[tuple[float, list[int]]] = []
    seen: set[frozenset] = set()
    for bi in alive:
        b = g.branches[bi]
        r_ref = max(radius[bi], g.node_r[b.u], g.node_r[b.v])
        limit = loop_ratio * r_ref
        if length[bi] >= limit:
            continue
        if b.u == b.v:
            cyc = [bi]
            total = length[bi]
        else:
            # Dijkstra from u to v without branch bi, bounded by the length still allowed
            budget = limit - length[bi]
            dist = {b.u: 0.0}
            via: dict[int, tuple[int, int]] = {}
            heap = [(0.0, b.u)]
            while heap:
                d, x = heapq.heappop(heap)
                if x == b.v or d > dist.get(x, np.inf):
                    continue
                for y, bj in adj.get(x, ()):
                    if bj == bi:
                        continue
                    nd = d + length[bj]
                    if nd < budget and nd < dist.get(y, np.inf):
                        dist[y] = nd
                        via[y] = (x, bj)
                        heapq.heappush(heap, (nd, y))
            if b.v not in dist:
                continue
            cyc = [bi]
            x = b.v
            while x != b.u:
                x, bj = via[x]
                cyc.append(bj)
            total = length[bi] + dist[b.v]
        key = frozenset(cyc)
        if key in seen:
            continue
        seen.add(key)
        r_cyc = max(max(radius[c] for c in cyc), max(g.node_r[g.branches[c].u] for c in cyc))
        if total < loop_ratio * r_cyc:
            found.append((total / r_cyc, cyc))
    found.sort(key=lambda t: t[0])
    return found


def cut_short_loops(g: SkeletonGraph, *, loop_ratio: float) -> list[dict]:
    """Cut every cycle shorter than ``loop_ratio`` x its largest radius at its thinnest branch.

    Returns
    -------
    list of dict
        One entry per cut: ``position`` (world mm, middle of the cut branch), ``cycle_length_mm``.
    """
    cuts: list[dict] = []
    while True:
        cycles = _shortest_cycles(g, loop_ratio)
        if not cycles:
            return cuts
        made = 0
        for _, cyc in cycles:
            if not all(g.branches[c].alive for c in cyc):
                continue  # already broken by an earlier cut
            weakest = min(cyc, key=lambda c: (_branch_radius(g, c), -g.branches[c].length(g)))
            b = g.branches[weakest]
            poly = b.polyline(g)
            cuts.append(
                {
                    "position": [round(float(x), 3) for x in poly[len(poly) // 2]],
                    "cycle_length_mm": round(float(sum(g.branches[c].length(g) for c in cyc)), 3),
                }
            )
            b.alive = False
            made += 1
        g.merge_degree_two()
        if not made:  # pragma: no cover - every listed cycle had a live branch
            return cuts


def drop_small_components(g: SkeletonGraph, *, min_length_mm: float) -> int:
    """Remove connected pieces whose total centerline length is below ``min_length_mm``."""
    alive = g.alive_branches()
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for bi in alive:
        b = g.branches[bi]
        parent[find(b.u)] = find(b.v)
    total: dict[int, float] = {}
    for bi in alive:
        root = find(g.branches[bi].u)
        total[root] = total.get(root, 0.0) + g.branches[bi].length(g)
    dropped = 0
    for bi in alive:
        if total[find(g.branches[bi].u)] < min_length_mm:
            g.branches[bi].alive = False
            dropped += 1
    return dropped
