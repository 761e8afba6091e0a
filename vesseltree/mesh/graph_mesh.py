"""Watertight surfaces of vessel graphs: the union of round cones, one per edge.

Units are millimetres throughout. The model is VMTK's "polyball line": every edge (i, j) is the
convex hull of the sphere of radius ``r_i`` at node i and the sphere of radius ``r_j`` at node j, and
the vessel is the union of these round cones. Its exact signed distance is evaluated in a narrow
band, brick by brick (:mod:`vesseltree.mesh._field`), and contoured by marching cubes.

Radius at a junction. Extractors and generators give a junction node one radius (usually the
parent's). Used as is for every edge at the junction, each child would start as a funnel as wide
as its parent. By default (``junction_radius="extrapolate"``) the end of a branch that meets a
junction takes the radius of that branch extrapolated linearly in arc length from its own next two
nodes (its next node's radius where the branch has no second node), clipped to at most the
junction's radius and at least half the next node's radius. The branch that carries the junction's
radius (the parent) is unchanged by the clip; children start at their own radius.
``junction_radius="node"`` uses the node radius for every edge end.

Thin vessels. A grid of step ``v`` samples a tube of radius ``r`` without breaking it only when
every cross-section holds a grid point: the cube of side ``v`` around a grid point that the axis
passes through has its centre within ``sqrt(3) / 2 * v`` of the axis, so with ``r >= 0.9 v`` the
samples inside every edge's tube form a 6-connected chain and marching cubes cannot cut the tube
(:func:`min_resolvable_radius`). Thinner edge ends are raised to that radius by default
(``thin="thicken"``, with a warning naming how many and how thin); ``thin="keep"`` contours them
as they are (they may break into pieces), ``thin="error"`` refuses. After contouring, the body
count and genus of the mesh are compared with the graph's (one body per connected component,
genus = independent cycles); a mismatch is logged and warned about, with the places where
different branches pass closer than the grid can separate.

Forks. Two branches that leave a junction at a narrow angle, or a tortuous child that grazes its
sibling, meet along a crease where their surfaces are nearly tangent: the outside between them
is a slit that thins to nothing. No grid resolves it (the union of two such siblings shows
spurious tunnels and cavities even at 0.03 mm), and at 0.25 mm marching cubes fuses the slit in
patches, each gap between patches a handle (genus 1 on a tree). By default the field closes
the gap between two branches that meet at a junction (:func:`fork_runs`): from the junction
outward, as long as their gap stays under 1.5 voxels, each sample near both takes the distance
to the closing by a ball of one voxel radius of the two tubes' tangent planes
(:func:`vesseltree.mesh._field.closing_of_two`). The crotch becomes one contiguous fillet of
radius one voxel, which the grid samples without tunnels; elsewhere the surface is the exact
union. Tangent planes stand for tubes much thicker than the ball; where the tubes are about one
voxel thin, their closing is a web thinner than a voxel that the grid again samples in patches
(one sample filled between two children, its neighbours not: a handle). So the same runs also
get struts (:func:`fork_webs`): round cones of radius ``min(1 voxel, r)`` from each run node's
axis to the nearest sphere of the other branch, one per strut radius of arc, whose union is a
web at least ``sqrt(3)`` strut radii thick across the crotch; the field takes their distance
where the closing acts. ``close=0`` turns both off.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace

import numpy as np

from .._validate import positive_mm as _positive
from ..errors import EmptyInputError, InvalidInputError, describe
from ..graph import VesselGraph
from ._field import Cones, Cutters, FieldSpec, contour

__all__ = [
    "from_graph",
    "hollow",
    "open_ends",
    "graph_cones",
    "default_voxel_size",
    "exact_distance",
    "min_resolvable_radius",
    "close_contacts",
    "expected_topology",
]

#: radius, in voxels, from which a tube is always sampled as one piece (see the module doc)
RESOLVABLE_RADIUS_VOXELS = 0.9
#: radius, in voxels, of the ball that closes the crotch of a fork (see :func:`fork_runs`)
CLOSE_VOXELS = 1.0
#: gap, in voxels, past which two branches leaving one junction are left apart
RUN_GAP_VOXELS = 1.5
#: a fork's run ends only once the gap has opened this wide (voxels, at least twice the closing
#: radius): where it narrows again before, the narrowing belongs to the same run
PART_GAP_VOXELS = 2.0
#: chord refinement splits an edge whose midpoint is farther than this (voxels) from the union:
#: every midpoint of a face within it puts the face centroid within about 4/3 of it
REFINE_TOL = 0.04

log = logging.getLogger(__name__)


def _check_graph(graph) -> VesselGraph:
    if not isinstance(graph, VesselGraph):
        raise InvalidInputError(f"graph must be a VesselGraph, got {describe(graph)}")
    if graph.n_nodes == 0:
        raise EmptyInputError(
            "graph has no nodes, so there is no surface to build; got an empty VesselGraph"
        )
    return graph


def default_voxel_size(graph: VesselGraph) -> float:
    """Default grid step (mm): ``min(0.25, r05 / 4)``, not below 0.02 mm.

    ``r05`` is the 5th percentile of the node radii (robust to a few outliers), so the thinnest
    vessels get at least 8 samples across their diameter and a coronary-sized tree gets 0.25 mm.
    """
    r05 = float(np.percentile(graph.radii, 5)) if graph.n_nodes else 1.0
    return float(max(min(0.25, r05 / 4.0), 0.02))


def min_resolvable_radius(voxel_size: float) -> float:
    """Smallest tube radius (mm) that a grid of step ``voxel_size`` mm never breaks: ``0.9 v``.

    Every grid point whose cube the axis passes through lies within ``sqrt(3) / 2 v`` of the
    axis, and these points form a 6-connected chain, so they are all inside a tube of radius
    ``0.9 v`` and marching cubes joins them into one piece.
    """
    return RESOLVABLE_RADIUS_VOXELS * float(voxel_size)


def _thin(thin: str) -> str:
    if thin not in ("thicken", "keep", "error"):
        raise InvalidInputError(f"thin must be 'thicken', 'keep' or 'error', got {thin!r}")
    return thin


def _resolve_thin(gc: GraphCones, voxel: float, thin: str, stats: dict) -> GraphCones:
    """Apply the ``thin`` policy to cone ends thinner than :func:`min_resolvable_radius`."""
    c = gc.cones
    r_res = min_resolvable_radius(voxel)
    ends = np.concatenate([c.ra, c.rb])
    n_thin = int(np.count_nonzero(ends < r_res))
    stats["thin_cone_ends"] = n_thin
    stats["min_resolvable_radius"] = r_res
    if n_thin == 0:
        return gc
    r_min = float(ends.min())
    what = (
        f"{n_thin} of {ends.size} cone ends have a radius below {r_res:.3g} mm (0.9 voxel at "
        f"voxel_size={voxel:.3g} mm; thinnest {r_min:.3g} mm), which the grid cannot sample "
        f"without breaking the tube"
    )
    fix = f"pass voxel_size <= {r_min / RESOLVABLE_RADIUS_VOXELS:.3g} mm to resolve them"
    if thin == "error":
        raise InvalidInputError(f"voxel_size={voxel:.3g} mm is too coarse: {what}; {fix}")
    if thin == "keep":
        msg = f"{what}; they may break into pieces (thin='keep'); {fix}"
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
        return gc
    msg = f"{what}; thickened to {r_res:.3g} mm to keep one body (thin='thicken'); {fix}"
    warnings.warn(msg, RuntimeWarning, stacklevel=4)
    stats["thickened_to"] = r_res
    cones = Cones.build(c.a, c.b, np.maximum(c.ra, r_res), np.maximum(c.rb, r_res), c.group)
    return GraphCones(cones, gc.branch_of_cone, gc.n_edges_in, gc.n_path)


@dataclass
class GraphCones:
    """Round cones built from a graph: the cones, the edge each came from, and branch ids."""

    cones: Cones
    branch_of_cone: np.ndarray
    n_edges_in: int
    #: the first ``n_path`` cones follow the branches in order (later ones: flat-end extensions)
    n_path: int | None = None


def _end_radius(pos, rad, path: np.ndarray, r_node: float) -> float:
    """Radius of the branch ``path`` extrapolated to ``path[0]`` from its next two nodes."""
    r1 = rad[path[1]]
    if len(path) >= 3:
        l1 = np.linalg.norm(pos[path[0]] - pos[path[1]])
        l2 = np.linalg.norm(pos[path[1]] - pos[path[2]])
        r_ext = r1 + (r1 - rad[path[2]]) * (l1 / l2 if l2 > 0 else 0.0)
    else:
        r_ext = r1
    return float(min(r_node, max(r_ext, 0.5 * r1)))


def _simplify_chain(p: np.ndarray, r: np.ndarray, tol: float, window: int = 48) -> np.ndarray:
    """Indices of the nodes kept when consecutive round cones are merged within ``tol`` mm.

    Greedy: from a kept node i, the next kept node is the farthest j (within ``window``) such
    that every node sphere between i and j, and every edge midpoint sphere, lies within ``tol``
    of the surface of the single round cone (i, j).
    """
    m = len(p)
    if m <= 2 or tol <= 0:
        return np.arange(m)
    keep = [0]
    i = 0
    while i < m - 1:
        hi = min(m - 1, i + window)
        js = np.arange(i + 2, hi + 1)
        if js.size == 0:
            keep.append(i + 1)
            i += 1
            continue
        cones = Cones.build(
            np.repeat(p[i : i + 1], js.size, 0), p[js], np.full(js.size, r[i]), r[js]
        )
        # test points: the nodes strictly between, and the midpoints of the original edges
        ks = np.arange(i + 1, hi)
        mid_p = 0.5 * (p[i:hi] + p[i + 1 : hi + 1])
        mid_r = 0.5 * (r[i:hi] + r[i + 1 : hi + 1])
        tp = np.concatenate([p[ks], mid_p])
        tr = np.concatenate([r[ks], mid_r])
        tpos = np.concatenate(
            [ks, np.arange(i, hi) + 0.5]
        )  # where each test point sits in the chain
        jj, tt = np.meshgrid(np.arange(js.size), np.arange(tp.shape[0]), indexing="ij")
        inside = tpos[tt] < js[jj]
        err = np.abs(cones.sdf(tp[tt.ravel()], jj.ravel()) + tr[tt.ravel()]).reshape(jj.shape)
        bad = np.any(inside & (err > tol), axis=1)
        n_ok = int(np.argmax(bad)) if bad.any() else js.size
        j = i + 1 + n_ok
        keep.append(j)
        i = j
    return np.asarray(keep)


def graph_cones(
    graph: VesselGraph,
    *,
    junction_radius: str = "extrapolate",
    simplify: float = 0.0,
    radius_offset: float = 0.0,
) -> GraphCones:
    """Round cones of ``graph``: one per edge (fewer where ``simplify`` merges collinear ones).

    Parameters
    ----------
    graph : VesselGraph
    junction_radius : {"extrapolate", "node"}
        Radius of a branch end at a junction (see the module docstring).
    simplify : float, mm
        Merge consecutive cones of a branch where the merged cone stays within this distance of
        every node sphere and edge-midpoint sphere it replaces (0 keeps one cone per edge).
    radius_offset : float, mm
        Added to every radius (the outer surface of a wall of this thickness).
    """
    if junction_radius not in ("extrapolate", "node"):
        raise InvalidInputError(
            f"junction_radius must be 'extrapolate' or 'node', got {junction_radius!r}"
        )
    pos, rad, deg = graph.positions, graph.radii, graph.degrees
    a_list, b_list, ra_list, rb_list, grp_list = [], [], [], [], []
    for bid, path in enumerate(graph.branches):
        path = np.asarray(path)
        r = rad[path].copy()
        if junction_radius == "extrapolate" and len(path) >= 2 and path[0] != path[-1]:
            if deg[path[0]] >= 3:
                r[0] = _end_radius(pos, rad, path, rad[path[0]])
            if deg[path[-1]] >= 3:
                r[-1] = _end_radius(pos, rad, path[::-1], rad[path[-1]])
        p = pos[path]
        keep = _simplify_chain(p, r, simplify) if simplify > 0 else np.arange(len(path))
        a_list.append(p[keep[:-1]])
        b_list.append(p[keep[1:]])
        ra_list.append(r[keep[:-1]])
        rb_list.append(r[keep[1:]])
        grp_list.append(np.full(len(keep) - 1, bid))
    nb = len(a_list)
    lone = np.flatnonzero(deg == 0)
    if lone.size:
        a_list.append(pos[lone])
        b_list.append(pos[lone])
        ra_list.append(rad[lone])
        rb_list.append(rad[lone])
        grp_list.append(nb + np.arange(lone.size))
    a, b = np.concatenate(a_list), np.concatenate(b_list)
    ra = np.concatenate(ra_list) + radius_offset
    rb = np.concatenate(rb_list) + radius_offset
    grp = np.concatenate(grp_list)
    return GraphCones(Cones.build(a, b, ra, rb, grp), grp, graph.n_edges)


def exact_distance(
    points, cones: Cones, *, reach: float = 1.0, cell: float | None = None
) -> np.ndarray:
    """Signed distance (mm) of ``points`` (n, 3) to the union of ``cones``.

    Exact wherever the union lies within ``reach`` mm of the point (every cone whose box padded
    by ``reach`` holds the point is evaluated); elsewhere ``+reach`` or more. Points and cones
    are binned in cubic cells of ``cell`` mm (default: about the median cone box).
    """
    from ._field import binned_distance

    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if cell is None:
        lo, hi = cones.bounds(reach)
        cell = float(max(np.median(hi - lo), 0.5))
    return binned_distance(pts, cones, reach=reach, cell=cell)


def compensate_chords(
    verts: np.ndarray, faces: np.ndarray, *, limit: float, factor: float = 1.0 / 3.0
) -> np.ndarray:
    """Move vertices along their normals by a third of the umbrella Laplacian's normal part.

    Marching-cubes vertices lie on the surface (to interpolation accuracy) but flat triangles
    between them cut inside convex parts (and outside concave ones) by about a third of what the
    umbrella operator measures, so a mesh of a convex tube loses ~1.5 % volume at 4 voxels per
    radius. Moving each vertex out by ``factor`` times the normal component of (vertex - mean of
    its neighbours), at most ``limit`` mm, balances vertex and face errors: volume error and
    face-centroid error drop about threefold, vertex error doubles.
    """
    n = len(verts)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    # each undirected edge appears twice in a closed mesh (once per direction), so summing both
    # directions visits every neighbour twice: the mean is unchanged
    e = np.concatenate([e, e[:, ::-1]])
    deg = np.bincount(e[:, 0], minlength=n).astype(np.float64)
    nb_sum = np.stack(
        [np.bincount(e[:, 0], weights=verts[e[:, 1], k], minlength=n) for k in range(3)], axis=1
    )
    lap = nb_sum / np.maximum(deg, 1)[:, None] - verts
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    vn = np.stack(
        [np.bincount(faces.ravel(), weights=np.repeat(fn[:, k], 3), minlength=n) for k in range(3)],
        axis=1,
    )
    vn /= np.maximum(np.linalg.norm(vn, axis=1), 1e-300)[:, None]
    shift = np.clip(-factor * np.einsum("ij,ij->i", lap, vn), -limit, limit)
    return verts + shift[:, None] * vn


def _safe_compensation(
    verts: np.ndarray, faces: np.ndarray, *, limit: float, stats: dict
) -> np.ndarray:
    """:func:`compensate_chords`, then put back the vertices (and their neighbours) of any faces
    the move made intersect; marching cubes alone never self-intersects."""
    import time

    from .check import count_self_intersections

    t0 = time.perf_counter()
    moved = compensate_chords(verts, faces, limit=limit)
    reverted = 0
    for _ in range(4):
        n, pairs = count_self_intersections(moved, faces, return_pairs=True)
        if n == 0:
            break
        bad = np.unique(faces[pairs.ravel()].ravel())
        ring = np.isin(faces, bad).any(axis=1)
        bad = np.unique(faces[ring].ravel())
        moved[bad] = verts[bad]
        reverted += bad.size
    else:
        log.warning(
            "chord compensation left intersections; using the plain marching-cubes vertices"
        )
        moved = verts
    stats["compensation_reverted"] = int(reverted)
    stats["t_compensate"] = time.perf_counter() - t0
    return moved


def _make_mesh(verts, faces, *, min_volume: float, stats: dict, compensate: float | None = None):
    """A trimesh of the contour, crease specks (components under ``min_volume``) removed; sets
    ``stats["bodies"]`` and ``stats["euler_number"]`` of what is kept."""
    import trimesh

    if compensate and len(faces):
        verts = _safe_compensation(verts, faces, limit=compensate, stats=stats)

    mesh = trimesh.Trimesh(verts, faces, process=False)
    bodies = 0
    if len(faces):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        nv = len(verts)
        # faces sharing a vertex are connected: label vertices, then faces by their first vertex
        vv = coo_matrix(
            (np.ones(3 * len(faces)), (faces[:, [0, 1, 2]].ravel(), faces[:, [1, 2, 0]].ravel())),
            shape=(nv, nv),
        )
        n_comp, vlab = connected_components(vv, directed=False)
        # vertices left unreferenced by welding are components of their own: count faces'
        bodies = int(np.unique(vlab[faces[:, 0]]).size)
        if n_comp > 1:
            flab = vlab[faces[:, 0]]
            tri = verts[faces]
            fvol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
            cvol = np.bincount(flab, weights=fvol, minlength=n_comp)
            small = (np.abs(cvol) < min_volume) & (np.bincount(flab, minlength=n_comp) > 0)
            if small.any():
                keep_f = ~small[flab]
                log.info(
                    "removed %d crease specks (volume < %.3g mm^3)", int(small.sum()), min_volume
                )
                stats["specks_removed"] = int(small.sum())
                bodies -= int(small.sum())
                mesh = trimesh.Trimesh(verts, faces[keep_f], process=False)
                mesh.remove_unreferenced_vertices()
    # the contour is closed (every edge in two faces), so E = 3F/2
    nf = len(mesh.faces)
    stats["bodies"] = int(bodies)
    stats["euler_number"] = int(len(mesh.vertices) - 3 * nf // 2 + nf)
    mesh.metadata["vesseltree"] = stats
    return mesh


def _segment_distance(p0, p1, q0, q1) -> np.ndarray:
    """Distance (mm) between segments p0-p1 and q0-q1, row by row (clamped closest points)."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a = np.einsum("ij,ij->i", d1, d1)
    e = np.einsum("ij,ij->i", d2, d2)
    b = np.einsum("ij,ij->i", d1, d2)
    c = np.einsum("ij,ij->i", d1, r)
    f = np.einsum("ij,ij->i", d2, r)
    tiny = 1e-12
    a_ok, e_ok = a > tiny, e > tiny
    a_s, e_s = np.where(a_ok, a, 1.0), np.where(e_ok, e, 1.0)
    den = a * e - b * b
    s = np.where(den > tiny * a_s * e_s, (b * f - c * e) / np.where(den > 0, den, 1.0), 0.0)
    s = np.where(a_ok, np.clip(s, 0.0, 1.0), 0.0)
    t = np.where(e_ok, (b * s + f) / e_s, 0.0)
    t_c = np.clip(t, 0.0, 1.0)
    # where t was clamped, s is recomputed for the clamped t
    s = np.where((t != t_c) & a_ok, np.clip((b * t_c - c) / a_s, 0.0, 1.0), s)
    return np.linalg.norm((p0 + d1 * s[:, None]) - (q0 + d2 * t_c[:, None]), axis=1)


def close_contacts(graph: VesselGraph, cones: Cones, gap_mm: float) -> np.ndarray:
    """Contact regions: places where two branches pass within ``gap_mm`` of each other.

    Cones of two different branches closer than ``gap_mm`` (surface gap, bounded below by the
    distance of their axes minus their larger radii) are grouped into runs along the first
    branch; each run is one contact region. Where the two branches share an end node (parent
    and child, siblings), the run that starts at that node is where they meet by construction
    and is not reported; every other run closes a loop (genus + 1) if the grid fuses it. A grid
    of step ``v`` can fuse tubes closer than about ``sqrt(3) v``; a negative gap is a true
    overlap of the round cones.

    Returns
    -------
    (n, 6) ndarray
        Per contact region: the midpoint (x, y, z, mm) of its closest pair of cones, the
        smallest gap (mm), and the two branch ids (indices into ``graph.branches``).
    """
    from .check import _candidate_pairs

    empty = np.zeros((0, 6))
    if len(cones) < 2:
        return empty
    lo, hi = cones.bounds(0.5 * gap_mm)
    ext = float(np.percentile((hi - lo).max(1), 99)) * 1.01
    pairs = _candidate_pairs(lo, hi, max(ext, 1e-6))
    g = cones.group
    pairs = pairs[g[pairs[:, 0]] != g[pairs[:, 1]]]
    if len(pairs) == 0:
        return empty
    # order each pair so that the first cone has the smaller branch id
    swap = g[pairs[:, 0]] > g[pairs[:, 1]]
    pairs[swap] = pairs[swap, ::-1]
    i, j = pairs[:, 0], pairs[:, 1]
    b = cones.b
    ri = np.maximum(cones.ra[i], cones.rb[i])
    rj = np.maximum(cones.ra[j], cones.rb[j])
    gap = _segment_distance(cones.a[i], b[i], cones.a[j], b[j]) - ri - rj
    close = gap < gap_mm
    i, j, gap = i[close], j[close], gap[close]
    if i.size == 0:
        return empty
    n_g = int(g.max()) + 1
    first = np.full(n_g, len(g))
    np.minimum.at(first, g, np.arange(len(g)))
    count = np.bincount(g, minlength=n_g)
    ends = np.full((n_g, 2), -1, np.int64)
    for bid, path in enumerate(graph.branches):
        if bid < n_g:
            ends[bid] = (path[0], path[-1])
    ga, gb = g[i], g[j]
    key = ga * n_g + gb
    order = np.lexsort((i, key))
    i, j, gap, ga, gb, key = i[order], j[order], gap[order], ga[order], gb[order], key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stops = np.r_[starts[1:], key.size]
    rows = []
    for s0, s1 in zip(starts, stops):
        A, B = int(ga[s0]), int(gb[s0])
        k = i[s0:s1] - first[A]  # position along branch A, from its first node
        shared = [c for c in (0, 1) if ends[A, c] >= 0 and ends[A, c] in (ends[B, 0], ends[B, 1])]
        # runs of consecutive cone positions along branch A
        uk = np.unique(k)
        breaks = np.flatnonzero(np.diff(uk) > 1)
        run_lo = uk[np.r_[0, breaks + 1]]
        run_hi = uk[np.r_[breaks, uk.size - 1]]
        for lo_k, hi_k in zip(run_lo, run_hi):
            at_node = (0 in shared and lo_k <= 1) or (1 in shared and hi_k >= count[A] - 2)
            if at_node:
                continue
            sel = np.flatnonzero((k >= lo_k) & (k <= hi_k))
            m = sel[np.argmin(gap[s0:s1][sel])] + s0
            mid = 0.25 * (cones.a[i[m]] + b[i[m]] + cones.a[j[m]] + b[j[m]])
            rows.append([*mid, gap[m], A, B])
    return np.asarray(rows, np.float64).reshape(-1, 6)


def expected_topology(graph: VesselGraph, contacts: np.ndarray | None = None) -> tuple[int, int]:
    """(bodies, genus) of the union of a graph's tubes.

    Without ``contacts``: one body per connected component, genus = independent cycles. With
    contact regions (rows of :func:`close_contacts`, e.g. the true overlaps ``gap < 0``), each
    region joins its two branches: the first contact between two bodies merges them, every
    further one closes a loop.
    """
    bodies, genus = graph.n_components, graph.n_cycles
    if contacts is None or len(contacts) == 0:
        return int(bodies), int(genus)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    labels = graph.component_labels
    first = np.array([labels[p[0]] for p in graph.branches], np.int64)
    a = first[contacts[:, 4].astype(np.int64)]
    b = first[contacts[:, 5].astype(np.int64)]
    adj = coo_matrix((np.ones(a.size), (a, b)), shape=(bodies, bodies))
    merged, _ = connected_components(adj, directed=False)
    return int(merged), int(genus + len(contacts) - (bodies - merged))


def _check_topology(
    graph: VesselGraph, cones: Cones, voxel: float, stats: dict, close: float = 0.0
) -> None:
    """Compare the mesh's bodies and genus with the graph's; warn with the likely cause."""
    bodies, euler = stats["bodies"], stats["euler_number"]
    exp_bodies, exp_genus = expected_topology(graph)
    genus = (2 * bodies - euler) // 2
    stats.update(genus=int(genus), expected_bodies=int(exp_bodies), expected_genus=int(exp_genus))
    if bodies == exp_bodies and genus == exp_genus:
        return
    reach = float(max(np.sqrt(3.0) * voxel, 2.0 * close))
    near = close_contacts(graph, cones, reach)
    overlap = near[near[:, 3] < 0]
    stats["close_contacts"] = int(len(near))
    stats["true_overlaps"] = int(len(overlap))
    ob, og = expected_topology(graph, overlap)
    stats.update(expected_bodies_with_overlaps=ob, expected_genus_with_overlaps=og)
    why = []
    if len(overlap):
        why.append(
            f"{len(overlap)} places where tubes of different branches truly overlap (bodies "
            f"{ob}, genus {og} expected from these)"
        )
    if len(near) > len(overlap):
        k = int(np.argmin(np.where(near[:, 3] < 0, np.inf, near[:, 3])))
        why.append(
            f"{len(near) - len(overlap)} places where branches pass within {reach:.3g} mm "
            f"of each other away from where they meet, which the grid can fuse "
            f"(e.g. gap {near[k, 3]:.3g} mm at {np.round(near[k, :3], 2).tolist()} mm); a "
            "smaller voxel_size separates tubes that do not truly overlap"
        )
    if stats.get("thin_cone_ends") and "thickened_to" not in stats:
        why.append("thin tubes were kept below the resolvable radius (thin='keep')")
    if not why:
        why.append(
            "branches that leave a junction together wind around each other or touch again "
            f"past the fork (their gap returns under {reach:.3g} mm), which closes a loop in "
            "the union itself or where the grid fuses them (a smaller voxel_size separates "
            "them)"
        )
    msg = (
        f"mesh has {bodies} bodies and genus {genus} where the graph has {exp_bodies} connected "
        f"components and {exp_genus} independent cycles: " + "; ".join(why)
    )
    warnings.warn(msg, RuntimeWarning, stacklevel=4)


def fork_runs(
    graph: VesselGraph, gc: GraphCones, tau: float, part: float | None = None
) -> np.ndarray:
    """Where two branches that meet at a junction may have the gap between them closed.

    For every pair of branches incident to one junction, each branch's cones are walked from
    the junction outward, measuring the surface gap to the other branch (from the branch's
    axis: distance of the node to the other branch's round cones minus the node's radius). The
    branches have parted where that gap first exceeds ``part`` (default ``tau``); the run is
    every cone up to the last one before that whose gap is at most ``tau``, and it ends with the
    cone that leaves that gap. So two siblings whose gap widens a little and then narrows again
    (a slight wiggle of a tortuous child) are one run, not a run and a second approach that the
    grid fuses in patches. Within the two runs the field closes the gap between the branches
    (:func:`vesseltree.mesh._field.closing_of_two`), so the crotch is one contiguous fillet
    from the junction to where the gap is wider than ``tau``, which the grid separates. Past
    where they parted, a later approach of the same two branches is left to the grid (it is a
    contact, reported by :func:`close_contacts`).

    Returns
    -------
    ndarray of int64
        Sorted keys ``cone * n_groups + group``: cone ``cone`` may be closed against ``group``.
    """
    return _run_keys(gc.cones, _fork_pairs(graph, gc, tau, part))


def _run_keys(cones: Cones, runs: list) -> np.ndarray:
    ng = int(cones.group.max()) + 1
    keys = [r[1].astype(np.int64) * ng + r[3] for r in runs]
    if not keys:
        return np.zeros(0, np.int64)
    return np.unique(np.concatenate(keys))


def _fork_pairs(graph: VesselGraph, gc: GraphCones, tau: float, part: float | None = None) -> list:
    """(own group, own run cones, flip, other group, other branch's cones from the junction, the
    nearest of these to each run cone's junction-side end, the gap there) for every ordered
    pair of branches meeting at a junction (see :func:`fork_runs`)."""
    cones = gc.cones
    n_path = len(cones) if gc.n_path is None else gc.n_path
    grp = cones.group[:n_path]
    ng = int(cones.group.max()) + 1
    order = np.argsort(grp, kind="stable")
    starts = np.searchsorted(grp[order], np.arange(ng + 1))
    deg = graph.degrees
    arms: dict[int, list[tuple[int, np.ndarray, bool]]] = {}
    for bid, path in enumerate(graph.branches):
        if bid >= ng or len(path) < 2:
            continue
        own = order[starts[bid] : starts[bid + 1]]
        if own.size == 0:
            continue
        for end, flip in ((path[0], False), (path[-1], True)):
            if deg[end] >= 3 and not (flip and path[0] == path[-1]):
                arms.setdefault(int(end), []).append((bid, own[::-1] if flip else own, flip))
    out = []
    ends_b = cones.b
    for node_arms in arms.values():
        for x in range(len(node_arms)):
            for y in range(x + 1, len(node_arms)):
                (ga, ca, fa), (gb, cb, fb) = node_arms[x], node_arms[y]
                if ga == gb:
                    continue
                for g_own, g_oth, c_own, f_own, c_oth in (
                    (ga, gb, ca, fa, cb),
                    (gb, ga, cb, fb, ca),
                ):
                    run, near, gap = _run_from_junction(
                        cones, c_own, f_own, c_oth, tau, ends_b, part
                    )
                    out.append((g_own, run, f_own, g_oth, c_oth, near, gap))
    return out


def _nearest_spheres(cones: Cones, k: np.ndarray, p: np.ndarray):
    """The sphere swept by cone ``k`` that holds the cone's point nearest to ``p``: centres
    (n, 3) and radii (n,) (its distance at ``p`` equals the cone's)."""
    a, u = cones.a[k], cones.u[k]
    q = p - a
    x = np.einsum("ij,ij->i", q, u)
    y = np.sqrt(np.maximum(np.einsum("ij,ij->i", q, q) - x * x, 0.0))
    s, c, h = cones.s[k], cones.c[k], cones.h[k]
    xi = np.clip(x - s * y / np.maximum(c, 1e-12), 0.0, h)
    return a + u * xi[:, None], cones.ra[k] - s * xi


def fork_webs(
    graph: VesselGraph, gc: GraphCones, tau: float, width: float, part: float | None = None
) -> Cones | None:
    """Round cones ("struts") that join two branches across the crotch of a fork.

    Along the run of each branch (:func:`fork_runs`), from about where its surface leaves the
    other branch's (gap above ``-width``), a strut of radius ``min(width, r_own, r_other)``
    joins the sphere of the branch's axis to the nearest sphere of the other branch, from inside
    one tube to inside the other (each end sphere internally tangent to its tube's sphere).
    Struts are placed one per ``min(width, r)`` of arc along the run, so consecutive ones
    overlap and the crotch is bridged by one web at least ``sqrt(3)`` strut radii thick up to the
    end of the run: where the branches are about as thin as the closing ball, the closing of
    their tangent planes (:func:`vesseltree.mesh._field.closing_of_two`) is a web thinner than
    the grid resolves, and fills only in patches. The field takes the struts into account where
    the fork closing acts (``FieldSpec.webs``). None where no run has a strut.
    """
    return _fork_webs(gc.cones, _fork_pairs(graph, gc, tau, part), width)


def _fork_webs(cones: Cones, runs: list, width: float) -> Cones | None:
    runs = [r for r in runs if r[1].size]
    if not runs:
        return None
    sizes = np.array([r[1].size for r in runs])
    starts = np.cumsum(sizes) - sizes
    pid = np.repeat(np.arange(len(runs)), sizes)
    run = np.concatenate([r[1] for r in runs])
    flip = np.repeat(np.array([r[2] for r in runs], bool), sizes)
    g_own = np.repeat(np.array([r[0] for r in runs], np.int64), sizes)
    # the other branch's cone nearest to each run cone's junction-side end, and to its far end
    near = [r[4][r[5]] for r in runs]
    kb0 = np.concatenate(near)
    kb1 = np.concatenate([np.r_[k[1:], k[-1:]] for k in near])
    gap = np.concatenate([r[6] for r in runs])
    ends_b = cones.b[run]
    a = np.where(flip[:, None], ends_b, cones.a[run])
    b = np.where(flip[:, None], cones.a[run], ends_b)
    r0 = np.where(flip, cones.rb[run], cones.ra[run])
    r1 = np.where(flip, cones.ra[run], cones.rb[run])
    length = np.linalg.norm(b - a, axis=1)
    # from about where the surfaces part, one root per ``step = min(width, r)`` of arc (struts
    # of radius r overlap with a waist of sqrt(3) r at spacing r)
    sel = gap > -width
    if not sel.any():
        return None
    step = np.minimum(width, np.minimum.reduceat(np.where(sel, r0, np.inf), starts))[pid]
    step = np.maximum(step, 0.25 * width)  # tubes kept thinner than the grid (thin='keep')
    arc = np.cumsum(length) - length
    arc -= arc[starts][pid]
    arc0 = np.minimum.reduceat(np.where(sel, arc, np.inf), starts)[pid]
    idx = np.flatnonzero(sel)
    bins = np.floor((arc[idx] - arc0[idx]) / step[idx]).astype(np.int64)
    _, first = np.unique(pid[idx] * (int(bins.max()) + 1) + bins, return_index=True)
    roots = idx[first]
    # and every ``step`` inside selected cones longer than that
    n = np.ceil(length[idx] / step[idx]).astype(np.int64)
    long = idx[n > 1]
    m = n[n > 1] - 1
    own = np.repeat(long, m)
    t = (np.arange(own.size) - np.repeat(np.cumsum(m) - m, m) + 1) / np.repeat(m + 1, m)
    at = np.concatenate([roots, own])
    tt = np.concatenate([np.zeros(roots.size), t])
    x = a[at] + (b - a)[at] * tt[:, None]
    rx = r0[at] + (r1 - r0)[at] * tt
    # nearest of the two candidate cones of the other branch
    c0, c1 = kb0[at], kb1[at]
    use1 = cones.sdf(x, c1) < cones.sdf(x, c0)
    cb, rb = _nearest_spheres(cones, np.where(use1, c1, c0), x)
    r = np.minimum(width, np.minimum(rx, rb))
    e = cb - x
    e /= np.maximum(np.linalg.norm(e, axis=1), 1e-12)[:, None]
    pa = x + e * (rx - r)[:, None]
    pb = cb - e * (rb - r)[:, None]
    return Cones.build(pa, pb, r, r, g_own[at])


def _run_from_junction(
    cones: Cones, c_own, flip: bool, c_oth, tau: float, ends_b=None, part: float | None = None
):
    """Cones of ``c_own`` (ordered from the junction; ``flip``: each cone's end ``b`` is the one
    nearer the junction) from the first up to the last one whose junction-side end is at most
    ``tau`` from the cones ``c_oth`` before the first end more than ``part`` (default ``tau``)
    from them; with, per cone of the run, the position in ``c_oth`` of the cone nearest to its
    junction-side end and the surface gap there."""
    part = tau if part is None else max(float(part), tau)
    for m in (64, len(c_own)):
        cc = c_own[:m]
        if flip:
            p, r = (cones.b if ends_b is None else ends_b)[cc], cones.rb[cc]
        else:
            p, r = cones.a[cc], cones.ra[cc]
        k = np.tile(c_oth, len(p))
        d = cones.sdf(np.repeat(p, len(c_oth), 0), k).reshape(len(p), len(c_oth))
        j = np.argmin(d, axis=1)
        gap = d[np.arange(len(p)), j] - r
        over = np.flatnonzero(gap > part)
        if over.size or m >= len(c_own):
            stop = int(over[0]) if over.size else len(cc)
            near = np.flatnonzero(gap[:stop] <= tau)
            n = int(near[-1]) + 1 if near.size else 0
            return cc[:n], j[:n], gap[:n]
    return c_own[:0], np.zeros(0, np.int64), np.zeros(0)


def _seam_pairs(graph: VesselGraph, cones: Cones, reach: float):
    """The bodies (connected components) to keep apart: per cone, its body where that body passes
    within ``reach`` of another one that it does not truly overlap anywhere (else -1), and the
    keys ``lo * n + hi`` of those pairs (``n`` the number of bodies); (None, None) where there
    is none."""
    labels = graph.component_labels
    # the body of each group of cones: a branch, then the isolated nodes (see graph_cones)
    comp = np.concatenate(
        [
            labels[[int(p[0]) for p in graph.branches]].astype(np.int64),
            labels[np.flatnonzero(graph.degrees == 0)].astype(np.int64),
        ]
    )
    near = close_contacts(graph, cones, reach)
    n_b = graph.n_components

    def keys(rows):
        a, b = comp[rows[:, 4].astype(np.int64)], comp[rows[:, 5].astype(np.int64)]
        return np.unique((np.minimum(a, b) * n_b + np.maximum(a, b))[a != b])

    seam = np.setdiff1d(keys(near), keys(near[near[:, 3] < 0]))
    if seam.size == 0:
        return None, None
    members = np.zeros(n_b, bool)
    members[seam // n_b] = True
    members[seam % n_b] = True
    body = np.where(members[comp], comp, -1)[cones.group]
    return body, seam


def _contour_graph(
    graph,
    gc: GraphCones,
    *,
    voxel: float,
    blend: float,
    shell: float,
    cutters,
    brick: int,
    min_volume: float | None,
    extra_stats: dict,
    compensate: bool = False,
    thin: str = "thicken",
    close: float | None = None,
    refine: bool = False,
):
    import time

    t0 = time.perf_counter()
    pre: dict = {}
    gc = _resolve_thin(gc, voxel, thin, pre)
    rho = CLOSE_VOXELS * voxel if close is None else close
    if blend > 0 or graph is None:
        rho = 0.0
    keys = webs = None
    if rho > 0:
        part = max(PART_GAP_VOXELS * voxel, 2.0 * rho)
        runs = _fork_pairs(graph, gc, RUN_GAP_VOXELS * voxel, part)
        keys = _run_keys(gc.cones, runs)
        webs = _fork_webs(gc.cones, runs, rho)
        pre["web_struts"] = 0 if webs is None else len(webs)
        pre["t_fork_runs"] = time.perf_counter() - t0
    body = body_keys = None
    if graph is not None and graph.n_components > 1:
        # one body per connected component, except where two truly overlap: bodies that pass
        # closer than the grid resolves without overlapping are kept apart by a seam
        t1 = time.perf_counter()
        body, body_keys = _seam_pairs(graph, gc.cones, 2.0 * voxel)
        pre["t_apart"] = time.perf_counter() - t1
    spec = FieldSpec(
        cones=gc.cones,
        voxel=voxel,
        blend=blend,
        shell=shell,
        cutters=cutters,
        brick=brick,
        close=rho,
        close_keys=keys,
        webs=webs,
        apart=body,
        apart_keys=body_keys,
        apart_n=graph.n_components if graph is not None else 0,
    )
    verts, faces, stats = contour(spec)
    stats.update(pre)
    stats.update(extra_stats)
    stats["cones"] = len(gc.cones)
    stats["edges"] = gc.n_edges_in
    stats["voxel_size"] = voxel
    if min_volume is None:
        rmin = float(np.min(np.minimum(gc.cones.ra, gc.cones.rb)))
        min_volume = 4.0 / 3.0 * np.pi * (0.5 * rmin) ** 3
    mesh = _make_mesh(
        verts,
        faces,
        min_volume=min_volume,
        stats=stats,
        compensate=0.1 * voxel if compensate else None,
    )
    if refine and shell == 0 and blend == 0 and cutters is None and not compensate:
        mesh = _refine(mesh, spec.cones, voxel, stats)
    if shell == 0 and graph is not None:
        _check_topology(graph, gc.cones, voxel, stats, spec.close)
    stats["t_total"] = time.perf_counter() - t0
    mesh.metadata["vesseltree_field"] = spec
    log.info(
        "mesh: %d cones, %d surface bricks, %d faces in %.2f s",
        len(gc.cones),
        stats["bricks_surface"],
        len(mesh.faces),
        stats["t_total"],
    )
    return mesh


def _refine(mesh, cones: Cones, voxel: float, stats: dict):
    """:func:`.refine.refine_chords` at the defaults of :func:`from_graph` (same topology)."""
    import time

    import trimesh

    from .refine import refine_chords

    if len(mesh.faces) == 0:
        return mesh
    t0 = time.perf_counter()
    v, f, rstats = refine_chords(
        mesh.vertices, mesh.faces, cones, tol=REFINE_TOL * voxel, max_move=0.25 * voxel
    )
    stats["refine"] = rstats
    stats["t_refine"] = time.perf_counter() - t0
    return trimesh.Trimesh(v, f, process=False, metadata=mesh.metadata)


def _select(graph: VesselGraph, keep: str) -> VesselGraph:
    if keep not in ("all", "largest"):
        raise InvalidInputError(f"keep must be 'all' or 'largest', got {keep!r}")
    if keep == "largest" and graph.n_components > 1:
        return graph.components()[0]
    return graph


def from_graph(
    graph: VesselGraph,
    *,
    voxel_size: float | None = None,
    blend: float | None = None,
    decimate: float | None = None,
    simplify: float | None = None,
    junction_radius: str = "extrapolate",
    keep: str = "all",
    vertex_data: bool = False,
    compensate: bool = False,
    min_component_volume: float | None = None,
    brick: int = 16,
    thin: str = "thicken",
    ends: str = "round",
    close: float | None = None,
    refine: bool = True,
):
    """Watertight surface of the union of round cones of ``graph`` (one per edge).

    Parameters
    ----------
    graph : VesselGraph
        Positions and radii in world mm.
    voxel_size : float, mm, optional
        Grid step of the distance field. Default :func:`default_voxel_size`
        (``min(0.25, r05 / 4)``). Memory and time grow as ``1 / voxel_size**2`` (surface bricks).
    blend : float, mm, optional
        Fillet radius where branches meet (polynomial smooth minimum between the nearest two
        branches). The surface moves outward by at most ``blend / 4``, only near junctions and
        where different branches pass within ``blend`` of each other.
    decimate : float, mm, optional
        Reduce the triangle count while every vertex and face centroid of the result stays within
        this distance of the exact union (checked; the reduction backs off until it does).
    simplify : float, mm, optional
        Merge consecutive round cones of a branch where the merged cone stays within this
        distance of the nodes it replaces (:func:`graph_cones`). Default 0: exactly one cone per
        edge (merging costs about as much as it saves on densely sampled, tortuous centerlines).
    junction_radius : {"extrapolate", "node"}
        Radius of a child branch at its junction (module docstring).
    keep : {"all", "largest"}
        Mesh every connected component of the graph, or only the longest.
    vertex_data : bool
        Attach ``mesh.vertex_attributes`` ``radius`` (mm, of the nearest cone at the vertex's
        projection), ``branch_id`` (index into ``graph.branches``) for :func:`export`.
    compensate : bool
        Move vertices outward by the chord bias of flat triangles on curved tubes
        (:func:`compensate_chords`; reverted where it would make faces intersect). Marching cubes
        puts vertices on the surface but flat faces cut inside a convex tube, so the enclosed
        volume is low by about 1.6 % at 4 voxels per radius (0.8 % at 8); compensation brings
        that under 0.2 % and halves the face-centroid error, at the price of a self-intersection
        check (about 1 s per 100k faces).
    min_component_volume : float, mm^3, optional
        Mesh components smaller than this are crease specks and dropped. Default: the volume of
        a sphere of half the smallest radius.
    brick : int
        Edge length of the evaluation bricks in voxels (16 suits vessels; 32 suits thick ones).
    thin : {"thicken", "keep", "error"}
        What to do with cone ends thinner than :func:`min_resolvable_radius` (``0.9 *
        voxel_size``), which the grid would break into pieces: raise them to that radius (with
        a ``RuntimeWarning``), keep them (warning), or raise :class:`InvalidInputError`.
    ends : {"round", "flat"}
        Vessel ends (degree-1 nodes): the end node's sphere (the polyball model), or the vessel
        continued straight for one end radius and cut there by a plane perpendicular to the
        centerline. "flat" follows VMTK's convention that a centerline stops one inscribed-sphere
        radius before the capped boundary of the surface it was computed from. Where
        ``node_data["end_length"]`` exists (:func:`~vesseltree.centerline.with_wall_radii` keeps
        the given radius there), the vessel runs on that far instead.
    close : float, mm, optional
        Radius of the ball that closes the crotch between two branches leaving one junction, as
        long as their gap stays under 1.5 voxels (module docstring). Default one voxel; 0 keeps
        the exact union there (the grid may then leave small tunnels at narrow forks). Ignored
        with ``blend``, which rounds every junction instead.
    refine : bool
        Flat marching-cubes triangles cut chords through curved tubes, missing the surface by
        the sagitta ``h^2 / (8 r)``, a quarter voxel on one-voxel tubes. Split every edge whose
        midpoint lies more than 0.04 voxel off the exact union and move the new vertex onto it
        (:func:`~vesseltree.mesh.refine.refine_chords`; same topology, no self-intersections):
        about 2x the faces, a third of the face error on thin trees. Not with ``blend``,
        ``ends="flat"`` or ``compensate``, whose surfaces are not the plain union.

    Returns
    -------
    trimesh.Trimesh
        Watertight, consistently wound, outward normals, vertices in world mm.
        ``mesh.metadata["vesseltree"]`` holds statistics (bricks, samples, seconds per stage,
        ``bodies``/``genus`` of the mesh and ``expected_bodies``/``expected_genus`` of the graph).
        Where they differ a ``RuntimeWarning`` names the cause (thin tubes, or branches passing
        closer than the grid separates, with the closest place).

    Raises
    ------
    InvalidInputError
        ``graph`` is not a VesselGraph, a non-positive ``voxel_size``/``blend``/``decimate``, an
        unknown ``keep``, ``junction_radius`` or ``thin``; ``thin="error"`` and a tube thinner
        than the grid resolves.
    EmptyInputError
        The graph has no nodes.

    Examples
    --------
    >>> import numpy as np
    >>> from vesseltree import VesselGraph
    >>> g = VesselGraph(np.array([[0, 0, 0], [10.0, 0, 0]]), [1.0, 1.0], [[0, 1]])
    >>> m = from_graph(g, voxel_size=0.25)
    >>> exact = np.pi * 10 + 4 / 3 * np.pi  # cylinder plus two half spheres, mm^3
    >>> bool(m.is_watertight), bool(abs(m.volume / exact - 1) < 0.02)  # chords cut ~1.6 %
    (True, True)
    """
    graph = _select(_check_graph(graph), keep)
    voxel = _positive(voxel_size, "voxel_size", allow_none=True)
    voxel = default_voxel_size(graph) if voxel is None else voxel
    k_blend = _positive(blend, "blend", allow_none=True, allow_zero=True) or 0.0
    tol_dec = _positive(decimate, "decimate", allow_none=True)
    tol = 0.0 if simplify is None else _positive(simplify, "simplify", allow_zero=True)
    brick = _brick(brick)
    thin = _thin(thin)
    rho = _positive(close, "close", allow_none=True, allow_zero=True)
    if ends not in ("round", "flat"):
        raise InvalidInputError(f"ends must be 'round' or 'flat', got {ends!r}")
    gc = graph_cones(graph, junction_radius=junction_radius, simplify=tol)
    cutters = None
    if ends == "flat":
        gc, cutters = _flat_end_cones(graph, gc, voxel)
    mesh = _contour_graph(
        graph,
        gc,
        voxel=voxel,
        blend=k_blend,
        shell=0.0,
        cutters=cutters,
        brick=brick,
        min_volume=min_component_volume,
        extra_stats={"simplify": tol, "blend": k_blend},
        compensate=bool(compensate),
        thin=thin,
        close=rho,
        refine=bool(refine),
    )
    if tol_dec is not None:
        mesh = _decimate(mesh, gc.cones, tol_dec)
    if vertex_data:
        attach_vertex_data(mesh, gc.cones)
    return mesh


def _brick(brick) -> int:
    if (
        isinstance(brick, bool)
        or not isinstance(brick, (int, np.integer))
        or not 4 <= int(brick) <= 128
    ):
        raise InvalidInputError(f"brick must be an integer in 4..128 (voxels), got {brick!r}")
    return int(brick)


def attach_vertex_data(mesh, cones: Cones) -> None:
    """Set ``mesh.vertex_attributes`` ``radius`` (mm) and ``branch_id`` from the nearest cone."""
    from scipy.spatial import cKDTree

    v = np.asarray(mesh.vertices)
    step = max(float(np.min(np.maximum(cones.ra, cones.rb))) * 0.5, 1e-3)
    n_s = np.ceil(cones.h / step).astype(np.int64) + 1
    owner = np.repeat(np.arange(len(cones)), n_s)
    t = (np.arange(owner.size) - (np.cumsum(n_s) - n_s)[owner]) / np.maximum(n_s[owner] - 1, 1)
    samples = cones.a[owner] + cones.u[owner] * (cones.h[owner] * t)[:, None]
    kk = min(16, samples.shape[0])
    _, idx = cKDTree(samples).query(v, k=kk)
    idx = idx.reshape(len(v), kk)
    cand = owner[idx]
    d = cones.sdf(np.repeat(v, kk, 0), cand.ravel()).reshape(len(v), kk)
    best = cand[np.arange(len(v)), np.argmin(d, axis=1)]
    x = np.einsum("ij,ij->i", v - cones.a[best], cones.u[best])
    f = np.clip(x / np.where(cones.h[best] > 0, cones.h[best], 1.0), 0.0, 1.0)
    mesh.vertex_attributes["radius"] = (1 - f) * cones.ra[best] + f * cones.rb[best]
    mesh.vertex_attributes["branch_id"] = cones.group[best].astype(np.int64)


def _decimate(mesh, cones: Cones, tol: float):
    """Quadric decimation (VTK) backed off until every vertex and centroid is within ``tol`` mm."""
    import trimesh
    import vtk
    from vtk.util import numpy_support as ns

    from .mask_mesh import triangles_to_polydata

    faces0 = np.asarray(mesh.faces)
    poly = triangles_to_polydata(mesh)
    for target in (0.9, 0.8, 0.65, 0.5, 0.3):
        dec = vtk.vtkQuadricDecimation()
        dec.SetInputData(poly)
        dec.SetTargetReduction(target)
        dec.VolumePreservationOn()
        dec.Update()
        out = dec.GetOutput()
        v = ns.vtk_to_numpy(out.GetPoints().GetData()).astype(np.float64)
        f = ns.vtk_to_numpy(out.GetPolys().GetConnectivityArray()).reshape(-1, 3).astype(np.int64)
        cand = trimesh.Trimesh(v, f, process=False)
        probe = np.concatenate([v, v[f].mean(axis=1)])
        err = np.abs(exact_distance(probe, cones))
        if err.max() <= tol and cand.is_watertight and cand.is_winding_consistent:
            log.info(
                "decimated %d -> %d faces (reduction %.2f), max error %.4f mm",
                len(faces0),
                len(f),
                target,
                err.max(),
            )
            cand.metadata = dict(mesh.metadata)
            cand.metadata["vesseltree"] = {
                **mesh.metadata.get("vesseltree", {}),
                "decimate_max_error": float(err.max()),
                "decimate_reduction": target,
            }
            if cand.volume < 0:
                cand.invert()
            return cand
    log.info("decimation kept the original: no reduction met the %.4f mm error bound", tol)
    return mesh


# ---------------------------------------------------------------------------- print preparation
def _end_nodes(graph: VesselGraph, nodes) -> np.ndarray:
    tips = np.flatnonzero(graph.degrees == 1)
    if isinstance(nodes, str):
        if nodes == "leaves":
            if graph.root is not None:
                return tips[tips != graph.root]
            return tips
        if nodes == "all":
            return tips
        if nodes == "root":
            root = graph.root if graph.root is not None else graph.default_root()
            return np.asarray([root])
        raise InvalidInputError(
            f"nodes must be 'all', 'leaves', 'root' or a list of node indices, got {nodes!r}"
        )
    idx = np.asarray(nodes, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= graph.n_nodes):
        raise InvalidInputError(
            f"nodes must be node indices in 0..{graph.n_nodes - 1}, got {describe(nodes)}"
        )
    bad = idx[graph.degrees[idx] != 1]
    if bad.size:
        raise InvalidInputError(
            f"nodes must be vessel ends (degree 1), got node {int(bad[0])} of degree "
            f"{int(graph.degrees[bad[0]])}"
        )
    return idx


def _end_directions(graph: VesselGraph, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kept end nodes, unit outward directions): the centerline direction over about one radius
    back from each end node (ends without a direction, such as lone nodes, are dropped)."""
    pos, rad = graph.positions, graph.radii
    keep, t = [], []
    for n in ends.tolist():
        # walk back along the branch about one radius to get a stable direction
        prev, cur, dist = -1, n, 0.0
        while dist < rad[n]:
            nb = [x for x in graph.neighbors(cur).tolist() if x != prev]
            if not nb:
                break
            nxt = nb[0]
            dist += float(np.linalg.norm(pos[nxt] - pos[cur]))
            prev, cur = cur, nxt
            if graph.degrees[cur] != 2:
                break
        d = pos[n] - pos[cur]
        nrm = np.linalg.norm(d)
        if nrm == 0:
            continue
        keep.append(n)
        t.append(d / nrm)
    return np.asarray(keep, np.int64), np.asarray(t, np.float64).reshape(-1, 3)


def end_cutters(
    graph: VesselGraph, nodes, *, wall: float, voxel: float, extend: float = 0.0
) -> Cutters:
    """Capped cylinders that cut a vessel end by a plane perpendicular to the centerline (its
    direction over about one radius back from the end), through the end node or ``extend``
    end radii beyond it."""
    ends, t = _end_directions(graph, _end_nodes(graph, nodes))
    r = graph.radii[ends]
    reach = r + wall
    return Cutters(
        graph.positions[ends] + t * (extend * r)[:, None],
        t,
        1.5 * reach + 2 * voxel,
        reach + 2 * voxel,
    )


def _flat_end_cones(graph: VesselGraph, gc: GraphCones, voxel: float):
    """Round cones that continue every vessel end straight for one end radius, and the cutters
    that end them by a plane there (``ends="flat"``)."""
    ends, t = _end_directions(graph, _end_nodes(graph, "all"))
    if ends.size == 0:
        return gc, None
    r = graph.radii[ends]
    a = graph.positions[ends]
    # how far the vessel runs on past its end node: one end radius, or the graph's own record of
    # it (with_wall_radii keeps the given radius there when it measures a wider tube)
    length = np.asarray(graph.node_data.get("end_length", graph.radii), np.float64)[ends]
    b = a + t * length[:, None]
    # the extension belongs to the branch of its end node (blending treats it as that branch)
    c = gc.cones
    branch_of = np.zeros(graph.n_nodes, np.int64)
    for bid, path in enumerate(graph.branches):
        branch_of[path[0]] = branch_of[path[-1]] = bid
    grp = branch_of[ends]
    cones = Cones.build(
        np.concatenate([c.a, a]),
        np.concatenate([c.b, b]),
        np.concatenate([c.ra, r]),
        np.concatenate([c.rb, r]),
        np.concatenate([c.group, grp]),
    )
    cut = Cutters(b, t, 1.5 * r + 2 * voxel, r + 2 * voxel)
    return GraphCones(cones, cones.group, gc.n_edges_in, n_path=len(c)), cut


def hollow(
    mesh_or_graph,
    *,
    wall_mm: float = 1.0,
    open_ends: bool | str | list = True,
    voxel_size: float | None = None,
    blend: float | None = None,
    graph: VesselGraph | None = None,
    keep: str = "all",
    thin: str = "thicken",
):
    """A lumen with a wall, for flow phantoms: inner surface = the vessel, outer = vessel + wall.

    Parameters
    ----------
    mesh_or_graph : VesselGraph or trimesh.Trimesh
        A graph (the inner surface is the union of round cones, the outer the union of the same
        cones with every radius increased by ``wall_mm``: exactly the inner solid dilated by the
        wall), or a mesh made by :func:`from_graph` (its graph must then be given as ``graph``,
        or its field is reused).
    wall_mm : float, mm
        Wall thickness.
    open_ends : bool, "leaves", "root", "all" or list of node indices
        Vessel ends opened by a planar cut through the end node, perpendicular to the centerline
        (True = every end). False leaves the lumen closed (a sealed cavity).
    voxel_size, blend, keep, thin
        As in :func:`from_graph`; the default voxel is at most a third of the wall; ``thin``
        applies to the lumen.

    Returns
    -------
    trimesh.Trimesh
        One closed, watertight shell per connected component (its lumen opened at the cuts).
    """
    import trimesh

    wall = _positive(wall_mm, "wall_mm")
    thin = _thin(thin)
    if isinstance(mesh_or_graph, VesselGraph):
        g = _select(_check_graph(mesh_or_graph), keep)
        voxel = _positive(voxel_size, "voxel_size", allow_none=True)
        voxel = min(default_voxel_size(g), wall / 3.0) if voxel is None else voxel
        gc = graph_cones(g)
        k_blend = _positive(blend, "blend", allow_none=True, allow_zero=True) or 0.0
    elif (
        isinstance(mesh_or_graph, trimesh.Trimesh) and "vesseltree_field" in mesh_or_graph.metadata
    ):
        spec = mesh_or_graph.metadata["vesseltree_field"]
        g = graph
        voxel = spec.voxel if voxel_size is None else _positive(voxel_size, "voxel_size")
        gc = GraphCones(spec.cones, spec.cones.group, 0)
        k_blend = spec.blend
        if open_ends is not False and g is None:
            raise InvalidInputError(
                "open_ends needs graph= when hollowing a mesh; pass the graph it was made from"
            )
    else:
        raise InvalidInputError(
            f"mesh_or_graph must be a VesselGraph or a mesh made by vesseltree.mesh.from_graph, got "
            f"{describe(mesh_or_graph)}; for other meshes extract a graph first"
        )
    if voxel > wall / 2:
        log.warning(
            "voxel_size %.3g mm is coarse for a %.3g mm wall; use at most wall/3", voxel, wall
        )
    cutters = None
    if open_ends is not False:
        cutters = end_cutters(g, "all" if open_ends is True else open_ends, wall=wall, voxel=voxel)
    return _contour_graph(
        g,
        gc,
        voxel=voxel,
        blend=k_blend,
        shell=wall,
        cutters=cutters,
        brick=16,
        min_volume=None,
        extra_stats={"wall_mm": wall, "blend": k_blend},
        thin=thin,
    )


def open_ends(mesh, graph: VesselGraph, *, nodes="all", voxel_size: float | None = None):
    """Cut vessel ends by planes through the end nodes, perpendicular to the centerline.

    A solid vessel gets a flat end; a hollow one (:func:`hollow`) an open lumen. The cut is
    made in the distance field the mesh was made from (``mesh.metadata["vesseltree_field"]``,
    set by :func:`from_graph` and :func:`hollow`), so the result is watertight by construction.

    Parameters
    ----------
    mesh : trimesh.Trimesh
        Made by :func:`from_graph` or :func:`hollow`.
    graph : VesselGraph
        The graph it was made from (gives the end nodes, their radii and directions).
    nodes : "all", "leaves", "root" or list of int
        Which ends to open ("leaves" = every tip except the root of a rooted tree).
    """
    import trimesh

    _check_graph(graph)
    if not isinstance(mesh, trimesh.Trimesh) or "vesseltree_field" not in mesh.metadata:
        raise InvalidInputError(
            f"mesh must be made by vesseltree.mesh.from_graph or hollow (it carries its distance field), got "
            f"{describe(mesh)}"
        )
    spec: FieldSpec = mesh.metadata["vesseltree_field"]
    voxel = spec.voxel if voxel_size is None else _positive(voxel_size, "voxel_size")
    new = end_cutters(graph, nodes, wall=spec.shell, voxel=voxel)
    if spec.cutters is not None and len(spec.cutters):
        old = spec.cutters
        new = Cutters(
            np.concatenate([old.p, new.p]),
            np.concatenate([old.t, new.t]),
            np.concatenate([old.radius, new.radius]),
            np.concatenate([old.length, new.length]),
        )
    spec = replace(spec, cutters=new, voxel=voxel)
    verts, faces, stats = contour(spec)
    out = _make_mesh(
        verts,
        faces,
        min_volume=(4.0 / 3.0) * np.pi * (0.5 * float(graph.radii.min())) ** 3,
        stats=stats,
    )
    out.metadata["vesseltree_field"] = spec
    return out
