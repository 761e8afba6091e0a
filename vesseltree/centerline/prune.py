"""Spur pruning and loop classification on a :class:`~.graph_build.SkeletonGraph`.

Both rules are dimensionless, in units of the local inscribed radius, so one setting serves a
0.3 mm cerebral artery and a 10 mm aorta alike:

* a terminal branch is a spur when the part of it that sticks out of its parent vessel
  (its length minus the parent's radius at the junction) is shorter than ``spur_ratio`` times its
  own radius, or than ``spur_ratio * parent_ratio`` times the parent's radius (a bump of the
  wall, not a vessel: on a rough wall the bumps are thin, so their own radius alone lets
  bumps a few voxels high through);
* a terminal branch is a spur too when none of its points lies more than ``ridge_ratio`` times
  its own radius outside the tubes of the branches it meets at its junction (a ridge along
  their wall: on a rough wall thinning leaves threads that run beside the vessel, which can be
  long, yet never leave it);
* a cycle is a noise handle when its length is below ``loop_ratio`` times the largest radius on it
  (a hole punched through a wall, or two touching vessels bridged by a few voxels); its thinnest
  branch is deleted, unless that branch stands apart from the rest of the cycle as a vessel of
  its own (a vessel whose end touches another one): then it is cut at its narrowest point and
  what is left either side is pruned like any other terminal branch, so the vessel keeps its
  length and ends at the contact. Longer cycles (anastomoses, the circle of Willis, a real loop)
  are kept.
"""

from __future__ import annotations

import heapq
import logging

import numpy as np
from scipy.spatial import cKDTree

from .graph_build import Branch, SkeletonGraph

__all__ = ["prune_spurs", "collapse_short_links", "cut_short_loops", "drop_small_components"]

log = logging.getLogger(__name__)


def _branch_radius(g: SkeletonGraph, bi: int) -> float:
    b = g.branches[bi]
    r = b.median_radius()
    return r if r is not None else float(min(g.node_r[b.u], g.node_r[b.v]))


def prune_spurs(
    g: SkeletonGraph,
    *,
    spur_ratio: float,
    min_length_mm: float,
    wall_offset_mm: float = 0.0,
    parent_ratio: float = 0.0,
    ridge_ratio: float = 0.0,
) -> int:
    """Remove spurs until none is left; returns how many were removed.

    Parameters
    ----------
    spur_ratio : float
        A terminal branch is a spur when
        ``length - r_junction < spur_ratio * max(r_branch, parent_ratio * r_junction)``.
    min_length_mm : float
        Terminal branches shorter than this (mm) beyond the parent wall are always spurs.
    wall_offset_mm : float
        Added to both radii: the inscribed radius is measured to the nearest background voxel
        centre, about half a voxel inside the wall.
    parent_ratio : float
        The least radius, as a fraction of the parent's at the junction, that a terminal branch
        is measured with (0: its own radius only).
    ridge_ratio : float
        A terminal branch is a spur too when every one of its points lies less than
        ``ridge_ratio`` times its own radius outside the tubes (inscribed balls) of the other
        branches at its junction and of the junction itself (0: no such test).
    """
    removed = 0
    ridge_seen: dict[tuple, bool] = {}  # (branch, other branches at its junction) -> ridge?
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
            rb = max(
                _branch_radius(g, bi) + wall_offset_mm,
                parent_ratio * (g.node_r[junction] + wall_offset_mm),
                1e-6,
            )
            protrusion = b.length(g) - g.node_r[junction] - wall_offset_mm
            score = None
            if protrusion < spur_ratio * rb or protrusion < min_length_mm:
                score = protrusion / rb
            elif ridge_ratio > 0:
                key = (bi, *sorted(inc[junction]))
                if key not in ridge_seen:
                    ridge_seen[key] = _is_ridge(
                        g, bi, junction, inc[junction], ridge_ratio, wall_offset_mm
                    )
                if ridge_seen[key]:
                    score = spur_ratio  # after every spur of the length rule at this junction
            if score is not None:
                if junction not in best or score < best[junction][0]:
                    best[junction] = (score, bi)
        if not best:
            return removed
        for _, bi in best.values():
            g.branches[bi].alive = False
            removed += 1
        g.merge_degree_two()


def _tubes(g: SkeletonGraph, branches: list[Branch]) -> tuple[np.ndarray, np.ndarray]:
    """Centres (P, 3) and inscribed radii (P,) of ``branches``, end nodes included, mm."""
    pts = np.concatenate([b.polyline(g) for b in branches])
    rad = np.concatenate([np.r_[g.node_r[b.u], b.r, g.node_r[b.v]] for b in branches])
    return pts, rad


def _is_ridge(
    g: SkeletonGraph, bi: int, junction: int, at_junction: list[int], ratio: float, wall: float
) -> bool:
    """True when no point of terminal branch ``bi`` gets ``ratio`` own radii out of the rest.

    The rest is the union of the balls (inscribed radius + ``wall``) of every point of the other
    branches at ``junction``, their end nodes included (:func:`_tubes`). The free tip is tested
    first: most branches leave the rest there, and the whole branch need not be measured.
    """
    b = g.branches[bi]
    tip = b.u if junction == b.v else b.v
    own = max(_branch_radius(g, bi) + wall, 1e-6)
    centres, radii = _tubes(g, [g.branches[bj] for bj in at_junction if bj != bi])
    reach = radii + wall + ratio * own

    def outside(points: np.ndarray) -> bool:
        for i in range(0, len(points), 64):  # blocks keep the distance table small
            d2 = ((points[i : i + 64, None, :] - centres[None, :, :]) ** 2).sum(-1)
            if np.any(np.all(d2 >= reach[None, :] ** 2, axis=1)):
                return True
        return False

    if outside(g.node_pos[tip][None]):
        return False
    return not outside(b.pts) if len(b.pts) else True


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


def cut_short_loops(
    g: SkeletonGraph,
    *,
    loop_ratio: float,
    spur_ratio: float = 2.0,
    inside=None,
    step_mm: float = 0.25,
) -> list[dict]:
    """Cut every cycle shorter than ``loop_ratio`` x its largest radius at its thinnest branch.

    A branch that stands apart from the rest of its cycle (it leaves their tubes by ``spur_ratio``
    times its radius, with background between, see :func:`_stands_apart`) is a vessel that
    touches another one: it is cut at its narrowest point (least inscribed radius) outside the
    balls of its two end nodes, the neck of the contact, and its two halves stay as terminal
    branches (the caller prunes them as spurs where they are short). Deleting it whole lost real
    vessels: a thin artery whose end touches a thicker one closes a short cycle with it (a real
    IntrA tree: recall at 1 mm 0.72; 0.88 when cut at the neck). Any other thinnest branch (a
    bridge over a hole in a wall, a thread along a rough wall) is deleted whole.

    Parameters
    ----------
    loop_ratio : float
        Cycles shorter than this times their largest radius are cut.
    spur_ratio : float
        How far (in its own radii) a branch must leave the rest of its cycle to be a vessel.
    inside : callable, optional
        World points (n, 3) -> bool (n,): in the mask. None: the clearance alone decides.
    step_mm : float
        Sampling step of ``inside`` along the way from the branch to the rest of its cycle.

    Returns
    -------
    list of dict
        One entry per cut: ``position`` (world mm, the cut point), ``cycle_length_mm``.
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
            total = round(float(sum(g.branches[c].length(g) for c in cyc)), 3)
            b.alive = False
            others = [g.branches[c] for c in cyc if c != weakest]
            rb = _branch_radius(g, weakest)
            apart = _stands_apart(g, b, rb, others, spur_ratio, inside, step_mm)
            where = _split_at_neck(g, b) if apart else None
            if where is None:  # no interior point outside the end balls: a bridge, dropped whole
                poly = b.polyline(g)
                where = poly[len(poly) // 2]
            cuts.append({"position": [round(float(x), 3) for x in where], "cycle_length_mm": total})
            made += 1
        g.merge_degree_two()
        if not made:  # pragma: no cover - every listed cycle had a live branch
            return cuts


def _stands_apart(
    g: SkeletonGraph, b: Branch, rb: float, others: list[Branch], ratio: float, inside, step: float
) -> bool:
    """Whether branch ``b`` is a vessel of its own rather than a thread along the wall of the
    vessel it bridges (a noise handle).

    It must leave the tubes of the ``others`` (the rest of its cycle) by at least ``ratio``
    times its radius ``rb`` somewhere, and from its point farthest out, the straight way to the
    nearest of those centerlines must cross background (``inside(points) -> bool``, sampled
    every ``step`` mm): a bridge over a hole in a wall has lumen all the way in, a vessel that
    bends away and comes back to touch another has background between them.
    """
    if len(b.pts) == 0 or not others:
        return False
    pts, rad = _tubes(g, others)
    d, i = cKDTree(pts).query(b.pts)
    clearance = d - rad[i]
    k = int(np.argmax(clearance))
    if clearance[k] < ratio * rb:
        return False
    if inside is None:
        return True
    n = max(int(np.ceil(d[k] / step)), 2)
    line = b.pts[k] + np.linspace(0.0, 1.0, n + 1)[:, None] * (pts[i[k]] - b.pts[k])
    return not bool(np.all(inside(line)))


def _split_at_neck(g: SkeletonGraph, b: Branch) -> np.ndarray | None:
    """Add the two halves of (dead) branch ``b`` on either side of its narrowest interior point
    outside its end nodes' balls, each ending in a new tip node; returns that point (None, and
    nothing added, where no interior point lies outside the balls)."""
    pts, r = b.pts, b.r
    if len(pts) < 3:
        return None
    du = np.linalg.norm(pts - g.node_pos[b.u], axis=1)
    dv = np.linalg.norm(pts - g.node_pos[b.v], axis=1)
    free = np.flatnonzero((du > g.node_r[b.u]) & (dv > g.node_r[b.v]))
    if free.size == 0:
        return None
    k = int(free[np.argmin(r[free])])
    if k >= 1:
        t = g.add_node(pts[k - 1], r[k - 1])
        g.branches.append(Branch(b.u, t, pts[: k - 1], r[: k - 1]))
    if k + 1 < len(pts):
        t = g.add_node(pts[k + 1], r[k + 1])
        g.branches.append(Branch(t, b.v, pts[k + 2 :], r[k + 2 :]))
    return pts[k]


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


def collapse_short_links(g: SkeletonGraph, *, link_ratio: float) -> int:
    """Merge two junctions joined by a branch shorter than ``link_ratio`` x the larger radius.

    Thinning splits a trifurcation, or two side branches that leave a vessel less than a
    diameter apart, into two junctions joined by a stub a voxel or two long: the mask cannot
    tell them apart, so they become one node (at the middle of the stub). Returns how many
    links were collapsed.
    """
    merged = 0
    inc = g.incidence()  # kept up to date below (only its lists' contents are used)
    while True:
        best = None
        for bi in g.alive_branches():
            b = g.branches[bi]
            if b.u == b.v or len(inc[b.u]) < 3 or len(inc[b.v]) < 3:
                continue
            limit = link_ratio * max(g.node_r[b.u], g.node_r[b.v])
            length = b.length(g)
            if length < limit and (best is None or length / limit < best[0]):
                best = (length / limit, bi)
        if best is None:
            return merged
        b = g.branches[best[1]]
        b.alive = False
        keep, gone = b.u, b.v
        poly = b.polyline(g)
        g.node_pos[keep] = poly[len(poly) // 2].copy() if len(poly) > 2 else poly.mean(0)
        g.node_r[keep] = max(g.node_r[keep], g.node_r[gone])
        for bj in inc[keep] + inc[gone]:
            g.branches[bj].cached_length = None
        inc[keep].remove(best[1])
        inc[gone].remove(best[1])
        for bj in inc[gone]:
            other = g.branches[bj]
            if other.u == gone:
                other.u = keep
            if other.v == gone:
                other.v = keep
        # the branches of the removed node now end at the kept one (a loop there: twice)
        inc[keep] += inc.pop(gone)
        merged += 1


def _direction(g: SkeletonGraph, bi: int, node: int, reach_mm: float) -> np.ndarray | None:
    """Unit direction of branch ``bi`` leaving ``node``, from its points within ``reach_mm``."""
    b = g.branches[bi]
    poly = b.polyline(g)
    if b.v == node and b.u != node:
        poly = poly[::-1]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(poly, axis=0), axis=1))])
    k = int(np.searchsorted(s, min(reach_mm, s[-1])))
    d = poly[min(k, len(poly) - 1)] - poly[0]
    n = np.linalg.norm(d)
    return d / n if n > 1e-9 else None


def cut_contacts(
    g: SkeletonGraph, *, contact_ratio: float, straight_cos: float = 0.6
) -> list[dict]:
    """Cut the bridges that join two touching vessels; returns one dict per cut.

    Where two vessels touch, the mask fuses them and the skeleton links their axes with a short
    bridge: a branch between two junctions, at each of which the other two branches continue
    each other (the vessel runs straight through) while the bridge leaves sideways. A branch is
    such a bridge when it lies on a cycle, is shorter than ``contact_ratio`` times the sum of the
    radii at its ends, and at both ends the other two branches point in nearly opposite
    directions (cosine below ``-straight_cos``) with the bridge across them (|cosine| below
    ``straight_cos`` with each). A side branch that splits at once into a T looks the same;
    that is rare in vessels.
    """
    cuts: list[dict] = []
    inc = g.incidence()
    for bi in g.alive_branches():
        b = g.branches[bi]
        if b.u == b.v or len(inc[b.u]) != 3 or len(inc[b.v]) != 3:
            continue
        if len({*inc[b.u], *inc[b.v]}) != 5:  # a parallel branch or a self loop at an end
            continue
        length = b.length(g)
        if length >= contact_ratio * (g.node_r[b.u] + g.node_r[b.v]):
            continue
        ok = True
        for node in (b.u, b.v):
            others = [bj for bj in inc[node] if bj != bi]
            reach = 2.0 * g.node_r[node] + 1.0
            d1 = _direction(g, others[0], node, reach)
            d2 = _direction(g, others[1], node, reach)
            db = _direction(g, bi, node, max(0.5 * length, 1e-6))
            if d1 is None or d2 is None or db is None:
                ok = False
                break
            if (
                d1 @ d2 > -straight_cos
                or abs(db @ d1) > straight_cos
                or abs(db @ d2) > straight_cos
            ):
                ok = False
                break
        if not ok:
            continue
        # only where the rest of the graph still joins the two ends (the bridge closes a cycle)
        b.alive = False
        if not _connected(g, b.u, b.v):
            b.alive = True
            continue
        poly = b.polyline(g)
        cuts.append(
            {
                "position": [round(float(x), 3) for x in poly[len(poly) // 2]],
                "length_mm": round(float(length), 3),
            }
        )
        # the incidence without the bridge (the other branches keep their order)
        inc[b.u].remove(bi)
        inc[b.v].remove(bi)
    return cuts


def _connected(g: SkeletonGraph, a: int, b: int) -> bool:
    adj: dict[int, list[int]] = {}
    for bi in g.alive_branches():
        br = g.branches[bi]
        adj.setdefault(br.u, []).append(br.v)
        adj.setdefault(br.v, []).append(br.u)
    seen = {a}
    stack = [a]
    while stack:
        x = stack.pop()
        if x == b:
            return True
        for y in adj.get(x, ()):
            if y not in seen:
                seen.add(y)
                stack.append(y)
    return False
