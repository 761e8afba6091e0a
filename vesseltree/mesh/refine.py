"""Adaptive chord refinement of a marching-cubes mesh of a union of round cones.

Marching cubes puts vertices on the surface (to interpolation accuracy), but a flat triangle
between them cuts a chord: on a tube of radius ``r`` an edge of length ``h`` misses the surface by
its sagitta ``h**2 / (8 r)`` at its midpoint, a quarter voxel on tubes one voxel thick.
:func:`refine_chords` splits every edge whose midpoint is farther than ``tol`` from the exact
union, moves the new vertex onto the exact surface (Newton steps on the exact signed distance of
the nearest cone; an edge whose move would exceed ``max_move`` is left whole) and re-triangulates
each face by its split edges (1, 2 or 3 -> 2, 3 or 4 triangles, the shorter diagonal where two are
split), so the mesh stays closed, manifold and consistently wound, with the same Euler number.
Edges with an end off the exact union (where the mesher altered the field: fork closing) are left
whole, and so are edges whose chord runs outside the solid (concave creases and saddles): the
moves are outward, onto convex tube walls, where the sagitta error is. A new vertex whose move
would flip a face against its parent face goes back on its chord (the face then lies in its
parent's plane). Where two tubes meet, marching cubes leaves folded slivers across the crease
that even outward moves can push through each other (found on meshes of real TubeTK graphs);
the faces at creases are checked for crossings and their new vertices put back where any are.

The distance of the union is the minimum over cones; the nearest cone of every vertex comes from
one binned query (:func:`nearest_cones`), and an edge's midpoint is evaluated against the nearest
cones of its two ends only (on a closed surface sampled at a voxel the nearest cone of a point
between two vertices is, but for rare corners, the nearest of one of them; a missed cone can
only make the evaluated distance larger than the exact one, i.e. a move too short).
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InvalidInputError
from ._field import Cones, _ragged_boxes

__all__ = ["refine_chords", "nearest_cones", "ConeTable"]

#: pairs (point, cone) evaluated at once: small enough for the temporaries to stay in cache
_CHUNK = 1 << 16


class ConeTable:
    """The per-cone constants of :class:`Cones` as rows of one (11, K) array, so that a batch of
    (point, cone) pairs gathers them column-contiguously; distance and gradient of one cone per
    point."""

    def __init__(self, cones: Cones):
        self.cones = cones
        self.t = np.concatenate(
            [cones.a.T, cones.u.T, np.stack([cones.h, cones.ra, cones.rb, cones.s, cones.c])]
        )

    def _frame(self, p, k):
        g = _rows(self.t, k)
        q0, q1, q2 = p[0] - g[0], p[1] - g[1], p[2] - g[2]
        x = q0 * g[3] + q1 * g[4] + q2 * g[5]
        qq = q0 * q0 + q1 * q1 + q2 * q2
        y = np.sqrt(np.maximum(qq - x * x, 0.0))
        return g, (q0, q1, q2), x, y, qq

    def sdf(self, p: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Exact signed distance of points ``p`` (3, n) to cones ``k`` (n,)."""
        g, _, x, y, qq = self._frame(p, k)
        h, ra, rb, s, c = g[6], g[7], g[8], g[9], g[10]
        t = x * c - y * s
        d_side = x * s + y * c - ra
        xb = x - h
        d_a = np.sqrt(qq) - ra
        d_b = np.sqrt(xb * xb + y * y) - rb
        return np.where(t < 0, d_a, np.where(t > h * c, d_b, d_side))

    def sdf_grad(self, p: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signed distance (n,) and its unit gradient (3, n) of cones ``k`` at points ``p``."""
        g, q, x, y, qq = self._frame(p, k)
        h, ra, rb, s, c = g[6], g[7], g[8], g[9], g[10]
        u = g[3:6]
        t = x * c - y * s
        end_a, end_b = t < 0, t > h * c
        xb = x - h
        ya = np.sqrt(qq)
        yb = np.sqrt(xb * xb + y * y)
        d = np.where(end_a, ya - ra, np.where(end_b, yb - rb, x * s + y * c - ra))
        # radial unit vector (arbitrary on the axis, where the side normal is then s u anyway)
        iy = 1.0 / np.maximum(y, 1e-300)
        er = [(q[i] - x * u[i]) * iy for i in range(3)]
        # meridian-plane normal (along u, along er), then mapped to 3D
        nx = np.where(
            end_a, x / np.maximum(ya, 1e-300), np.where(end_b, xb / np.maximum(yb, 1e-300), s)
        )
        ny = np.where(
            end_a, y / np.maximum(ya, 1e-300), np.where(end_b, y / np.maximum(yb, 1e-300), c)
        )
        n = np.stack([nx * u[i] + ny * er[i] for i in range(3)])
        n /= np.maximum(np.sqrt((n * n).sum(0)), 1e-300)
        return d, n


def nearest_cones(
    points: np.ndarray,
    cones: Cones | ConeTable,
    *,
    reach: float,
    cell: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (n,) of ``points`` (n, 3) to the union of ``cones`` and the cone attaining
    it (n,), exact wherever the union is within ``reach`` mm of the point; elsewhere the distance
    is ``inf`` and the cone -1.

    The same binning as :func:`vesseltree.mesh.graph_mesh.exact_distance` (cone boxes padded by
    ``reach`` registered in cubic cells), with the points sorted by cell and the (point, cone)
    pairs evaluated in cache-sized chunks.
    """
    table = cones if isinstance(cones, ConeTable) else ConeTable(cones)
    cones = table.cones
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    n = len(pts)
    dist = np.full(n, np.inf)
    near = np.full(n, -1, np.int64)
    if n == 0 or len(cones) == 0:
        return dist, near
    lo, hi = cones.bounds(reach)
    if cell is None:
        cell = 0.8 * float(max(np.median(hi - lo), 1e-3))
    origin = np.minimum(lo.min(0), pts.min(0)) - cell
    c_lo = np.floor((lo - origin) / cell).astype(np.int64)
    c_hi = np.floor((hi - origin) / cell).astype(np.int64)
    pc = np.floor((pts - origin) / cell).astype(np.int64)
    dims = np.maximum(c_hi.max(0), pc.max(0)) + 2
    owner, cc = _ragged_boxes(c_lo, c_hi)
    ckey = (cc[:, 0] * dims[1] + cc[:, 1]) * dims[2] + cc[:, 2]
    order = np.argsort(ckey)
    ckey, owner = ckey[order], owner[order]
    pkey = (pc[:, 0] * dims[1] + pc[:, 1]) * dims[2] + pc[:, 2]
    porder = np.argsort(pkey)
    pkey = pkey[porder]
    spt = pts[porder].T.copy()
    start = np.searchsorted(ckey, pkey, side="left")
    cnt = np.searchsorted(ckey, pkey, side="right") - start
    ends = np.cumsum(cnt)
    if ends[-1] == 0:
        return dist, near
    cuts = np.searchsorted(ends, np.arange(_CHUNK, ends[-1], _CHUNK))
    bnd = np.unique(np.concatenate([[0], cuts, [n]]))
    sd = np.full(n, np.inf)
    sk = np.full(n, -1, np.int64)
    for s0, s1 in zip(bnd[:-1], bnd[1:]):
        c = cnt[s0:s1]
        m = int(c.sum())
        if m == 0:
            continue
        first = np.cumsum(c) - c
        pid = np.repeat(np.arange(s1 - s0), c)
        k = owner[np.arange(m) + np.repeat(start[s0:s1] - first, c)]
        d = table.sdf(_rows(spt[:, s0:s1], pid), k)
        nz = c > 0
        dmin = np.full(s1 - s0, np.inf)
        dmin[nz] = np.minimum.reduceat(d, first[nz])
        hit = d == dmin[pid]
        kk = np.full(s1 - s0, -1, np.int64)
        kk[pid[hit]] = k[hit]
        sd[s0:s1] = dmin
        sk[s0:s1] = kk
    far = sd > reach
    sd[far] = np.inf
    sk[far] = -1
    dist[porder] = sd
    near[porder] = sk
    return dist, near


def _min2(table: ConeTable, p: np.ndarray, ka: np.ndarray, kb: np.ndarray):
    """Distance of points ``p`` (3, n) to the union of cones ``ka`` and ``kb`` and the nearer."""
    d = table.sdf(p, ka)
    k = ka.copy()
    other = np.flatnonzero(kb != ka)
    if other.size:
        db = table.sdf(_rows(p, other), kb[other])
        nearer = db < d[other]
        d[other[nearer]] = db[nearer]
        k[other[nearer]] = kb[other[nearer]]
    return d, k


def _midpoint_distance(table, verts, ea, eb, ka, kb):
    """Distance of the midpoints of edges (ea, eb) to the union of their ends' nearest cones and
    the nearer cone, in cache-sized chunks."""
    n = len(ea)
    d = np.empty(n)
    k = np.empty(n, np.int64)
    for s0 in range(0, n, _CHUNK):
        s = slice(s0, min(s0 + _CHUNK, n))
        mid = 0.5 * (verts[ea[s]] + verts[eb[s]]).T
        d[s], k[s] = _min2(table, mid, ka[s], kb[s])
    return d, k


def _newton(table, p, d, k, ka, kb, steps: int):
    """``steps`` Newton steps ``p -= d grad d`` onto the union of cones ``ka``/``kb`` from
    ``p`` (3, n), whose distance ``d`` and nearest cone ``k`` are given; returns the end points,
    their distance and nearest cone. From a point with one nearest cone the first step lands
    exactly on that cone (its distance is exact); a second is needed only where that lands
    inside the other cone."""
    p, d, k = p.copy(), d.copy(), k.copy()
    move = np.arange(len(d))
    for _ in range(steps):
        move = move[np.abs(d[move]) > 1e-9]
        if move.size == 0:
            break
        dk, g = table.sdf_grad(_rows(p, move), k[move])
        for i in range(3):
            p[i, move] -= dk * g[i]
        d[move], k[move] = _min2(table, _rows(p, move), ka[move], kb[move])
    return p, d, k


def refine_chords(
    verts: np.ndarray,
    faces: np.ndarray,
    cones: Cones | ConeTable,
    *,
    tol: float,
    max_move: float,
    off_tol: float | None = None,
    steps: int = 2,
    rounds: int = 1,
    cos_fold: float = 0.0,
    outward_only: bool = True,
    check: str = "creases",
    cell: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Split the edges of a closed triangle mesh whose midpoint misses the union of ``cones`` by
    more than ``tol`` mm, and put the new vertices on the exact surface.

    Parameters
    ----------
    verts, faces : (V, 3) float, (F, 3) int
        A closed, manifold, consistently wound mesh of the union (world mm).
    cones : Cones or ConeTable
        The round cones the mesh was contoured from.
    tol : float, mm
        An edge is split where the exact distance of its midpoint exceeds this.
    max_move : float, mm
        A new vertex moves at most this far from its edge's midpoint (the sagitta of an edge of
        length ``h`` on a tube of radius ``r`` is ``h**2 / (8 r)``); an edge whose midpoint is
        farther than this is left whole: its faces stand for something that is not the exact
        union (a closed fork, a fused contact).
    off_tol : float, mm
        Edges with an end farther than this from the exact union are left whole (where the
        mesher altered the field: fork closing). Default ``max_move / 2``.
    steps : int
        Newton steps per new vertex (1 lands on the nearest cone; 2 also settles a vertex that
        the first step put inside the other end's cone).
    rounds : int
        Refinement rounds; a later round looks only at edges with a vertex the previous one made.
    outward_only : bool
        Split only edges whose chord runs inside the solid (convex stretches: every tube wall),
        not those outside it (concave creases and saddles, where inward moves can fold faces).
    check : {"creases", "all", "none"}
        Look for faces that the moves made intersect (:func:`~vesseltree.mesh.check.
        count_self_intersections`) and put the new vertices of those faces and their neighbours
        back on their chords (flat, as the input) until none are left: among the faces at
        creases (a vertex of a face whose vertices' nearest cones lie on different branches:
        junctions, contacts; the only places crossings were found, about 0.1 s per 20k faces),
        among all faces (about 1 s per 100k), or not at all.
    cell : float, mm, optional
        Cell of the nearest-cone query (default 0.8 times the median padded cone box).

    Returns
    -------
    verts, faces, stats
        The refined mesh (the input vertices first, unchanged) and statistics: ``split`` (new
        vertices per round), ``faces_in``/``faces_out``, ``reverted`` (with ``check``), seconds.
    """
    if check not in ("creases", "all", "none"):
        raise InvalidInputError(f"check must be 'creases', 'all' or 'none', got {check!r}")
    t0 = time.perf_counter()
    verts = np.asarray(verts, np.float64)
    faces = np.asarray(faces, np.int64)
    table = cones if isinstance(cones, ConeTable) else ConeTable(cones)
    if off_tol is None:
        off_tol = 0.5 * max_move
    stats: dict = {"faces_in": int(len(faces)), "split": []}
    if len(faces) == 0 or len(table.cones) == 0:
        stats.update(faces_out=int(len(faces)), t_refine=time.perf_counter() - t0)
        return verts, faces, stats
    # exact for every vertex within off_tol; a farther one is left alone anyway
    vd, vk = nearest_cones(verts, table, reach=max(off_tol, 1e-6), cell=cell)
    stats["t_query"] = time.perf_counter() - t0
    ok_v = np.abs(vd) <= off_tol
    n_in = len(verts)
    chord = np.zeros((0, 3))  # chord midpoint of every new vertex (for check)
    new_v = None  # the first vertex a round added (a later round looks only near them)
    for _ in range(max(int(rounds), 1)):
        verts, faces, vk, ok_v, mids, n0, back = _round(
            table,
            verts,
            faces,
            vk,
            ok_v,
            new_v,
            tol=tol,
            max_move=max_move,
            steps=steps,
            cos_fold=cos_fold,
            outward_only=outward_only,
            tm=stats,
        )
        stats["split"].append(int(len(mids)))
        stats["unfolded"] = stats.get("unfolded", 0) + int(back)
        if len(mids) == 0:
            break
        chord = np.concatenate([chord, mids])
        new_v = n0
    if len(verts) > n_in and check != "none":
        # where two tubes meet (junctions, contacts) the union has a crease and marching cubes
        # leaves folded slivers across it; moves there can push faces through each other, so
        # the faces at creases are checked (all faces with check="all") and undone where they cross
        crease = (
            None if check == "all" else _near_creases(faces, table.cones.group[vk], len(verts), 1)
        )
        verts = _revert_intersections(verts, faces, n_in, chord, stats, crease)
    stats["faces_out"] = int(len(faces))
    stats["t_refine"] = time.perf_counter() - t0
    return verts, faces, stats


def _near_creases(faces: np.ndarray, group: np.ndarray, nv: int, rings: int = 0) -> np.ndarray:
    """Vertices of faces whose vertices' nearest cones lie on different branches (``group``),
    grown by ``rings`` face rings (where two tubes meet)."""
    g = group[faces]
    mark = np.zeros(nv, bool)
    mark[faces[(g[:, 0] != g[:, 1]) | (g[:, 1] != g[:, 2])].ravel()] = True
    for _ in range(rings):
        mark[faces[mark[faces].any(axis=1)].ravel()] = True
    return mark


def _revert_intersections(verts, faces, n_in, chord, stats, region=None):
    """Put new vertices of crossing faces (and their one-ring) back on their chords until no
    faces cross; only faces with a vertex in ``region`` (bool per vertex) where given."""
    from .check import count_self_intersections

    t0 = time.perf_counter()
    verts = verts.copy()
    reverted = np.zeros(len(verts), bool)
    sub = np.arange(len(faces)) if region is None else np.flatnonzero(region[faces].any(axis=1))
    stats["checked_faces"] = int(sub.size)
    n = 0
    for _ in range(8):
        n, pairs = count_self_intersections(verts, faces[sub], return_pairs=True)
        pairs = sub[pairs]
        if n == 0:
            break
        bad = np.zeros(len(verts), bool)
        bad[faces[pairs.ravel()].ravel()] = True
        bad[faces[bad[faces].any(1)].ravel()] = True  # and the one-ring
        bad[:n_in] = False
        bad &= ~reverted
        if not bad.any():
            break
        verts[bad] = chord[np.flatnonzero(bad) - n_in]
        reverted |= bad
    stats["reverted"] = int(reverted.sum())
    stats["intersections_left"] = int(n)
    stats["t_check"] = time.perf_counter() - t0
    return verts


def _round(
    table, verts, faces, vk, ok_v, new_v, *, tol, max_move, steps, cos_fold, outward_only, tm
):
    """One round: returns the new mesh, per-vertex nearest cone and flag, the chord midpoints of
    the new vertices and the index of the first."""
    nv, nf = len(verts), len(faces)
    he = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F, 2)
    # each undirected edge of a closed oriented mesh is one half-edge with a < b
    sel = np.flatnonzero(he[:, 0] < he[:, 1])
    ea, eb = he[sel, 0], he[sel, 1]
    cand = ok_v[ea] & ok_v[eb]
    if new_v is not None:
        cand &= (ea >= new_v) | (eb >= new_v)
    sel, ea, eb = sel[cand], ea[cand], eb[cand]
    ka, kb = vk[ea], vk[eb]
    t0 = time.perf_counter()
    d0, k0 = _midpoint_distance(table, verts, ea, eb, ka, kb)
    if outward_only:  # chord inside the solid: a convex stretch of surface
        go = np.flatnonzero((d0 < -tol) & (d0 >= -max_move))
    else:
        go = np.flatnonzero((np.abs(d0) > tol) & (np.abs(d0) <= max_move))
    sel, ea, eb, ka, kb, d0, k0 = sel[go], ea[go], eb[go], ka[go], kb[go], d0[go], k0[go]
    mid = 0.5 * (verts[ea] + verts[eb]).T
    p = np.empty_like(mid)
    d1 = np.empty(len(sel))
    k1 = np.empty(len(sel), np.int64)
    for s0 in range(0, len(sel), _CHUNK):
        s = slice(s0, min(s0 + _CHUNK, len(sel)))
        p[:, s], d1[s], k1[s] = _newton(table, mid[:, s], d0[s], k0[s], ka[s], kb[s], steps)
    mlen = np.sqrt(((p - mid) ** 2).sum(0))
    keep = (mlen <= max_move) & (np.abs(d1) < np.abs(d0))
    keep = np.flatnonzero(keep)
    sel, k1 = sel[keep], k1[keep]
    p, mid = np.stack(_rows(p, keep)), np.stack(_rows(mid, keep))
    if len(sel) == 0:
        return verts, faces, vk, ok_v, np.zeros((0, 3)), nv, 0
    # one new vertex per undirected edge: both half-edges find it by their (lo, hi) key
    t1 = time.perf_counter()
    # (sel are half-edges a < b: in a closed manifold mesh one per undirected edge; duplicates,
    # from a non-manifold input, share one new vertex)
    key = he[sel, 0] * nv + he[sel, 1]
    first = np.argsort(key)
    uk = key[first]
    if uk.size > 1 and (uk[1:] == uk[:-1]).any():
        uk, i1 = np.unique(uk, return_index=True)
        first = first[i1]
    mids = np.full(3 * nf, -1, np.int64)  # new vertex on the edge from corner i to i + 1
    pos = np.searchsorted(uk, key)
    mids[sel] = nv + pos
    rev = np.flatnonzero(he[:, 0] > he[:, 1])
    rkey = he[rev, 1] * nv + he[rev, 0]
    pos = np.minimum(np.searchsorted(uk, rkey), len(uk) - 1)
    hit = uk[pos] == rkey
    mids[rev[hit]] = nv + pos[hit]
    mids = mids.reshape(3, nf).T
    verts = np.concatenate([verts, np.stack(_rows(p, first), 1)])
    vk = np.concatenate([vk, k1[first]])
    ok_v = np.concatenate([ok_v, np.ones(len(uk), bool)])
    chord = np.stack(_rows(mid, first), 1)
    new_faces, parent = _split_faces(verts, faces, mids)
    t2 = time.perf_counter()
    back = _unfold(verts, faces, mids, new_faces, parent, nv, chord, cos_fold)
    t3 = time.perf_counter()
    for key, dt in (("t_distance", t1 - t0), ("t_split", t2 - t1), ("t_unfold", t3 - t2)):
        tm[key] = tm.get(key, 0.0) + dt
    return verts, new_faces, vk, ok_v, chord, nv, back


def _rows(a, idx: np.ndarray) -> list:
    """``a[:, idx]`` of a (m, n) array (or a list of m rows) as a list of m rows (row-wise ``take`` is several times
    faster than fancy indexing along the second axis)."""
    return [row.take(idx) for row in a]


def _folded(x, tri, normal, cos_fold):
    """Whether triangles ``tri`` (n, 3) of points ``x`` (3, V) turn more than ``acos(cos_fold)``
    from unit ``normal`` (3, n); degenerate ones do not."""
    p0, p1, p2 = (_rows(x, tri[:, i]) for i in range(3))
    e1 = [p1[i] - p0[i] for i in range(3)]
    e2 = [p2[i] - p0[i] for i in range(3)]
    c0 = e1[1] * e2[2] - e1[2] * e2[1]
    c1 = e1[2] * e2[0] - e1[0] * e2[2]
    c2 = e1[0] * e2[1] - e1[1] * e2[0]
    dot = c0 * normal[0] + c1 * normal[1] + c2 * normal[2]
    if cos_fold == 0:
        return dot < 0
    return dot < cos_fold * np.sqrt(c0 * c0 + c1 * c1 + c2 * c2)


def _unfold(verts, faces, mids, new_faces, parent, nv, chord, cos_fold, max_iter: int = 8) -> int:
    """Put new vertices back on their chord (in place) where a face they are on turns more than
    ``acos(cos_fold)`` from its parent face; repeat until no face does. A face whose new vertices
    all sit on chords lies in its parent's plane. Returns how many were put back.

    With ``cos_fold <= 0`` (only flips matter) just the children of parents where some new
    vertex moved within the parent's plane by more than 1/16 of the parent's smallest altitude
    are tested: a move along the parent's normal flips nothing, and every child's altitudes are
    at least a quarter of its parent's."""
    sp = np.flatnonzero(mids.max(1) >= 0)
    x = np.ascontiguousarray(verts.T)
    f = faces[sp]
    p0, p1, p2 = (np.array(_rows(x, f[:, i])) for i in range(3))
    e1, e2, e3 = p1 - p0, p2 - p0, p2 - p1
    n = np.stack(
        [
            e1[1] * e2[2] - e1[2] * e2[1],
            e1[2] * e2[0] - e1[0] * e2[2],
            e1[0] * e2[1] - e1[1] * e2[0],
        ]
    )
    area2 = np.sqrt((n * n).sum(0))
    n /= np.maximum(area2, 1e-300)
    pn = np.zeros((3, len(faces)))
    pn[:, sp] = n
    check = np.flatnonzero(new_faces.max(1) >= nv)
    if cos_fold <= 0:
        lmax2 = np.maximum(np.maximum((e1 * e1).sum(0), (e2 * e2).sum(0)), (e3 * e3).sum(0))
        hmin = area2 / np.sqrt(np.maximum(lmax2, 1e-300))
        delta = np.ascontiguousarray((verts[nv:] - chord).T)
        m = mids[sp]
        tang = np.zeros(len(sp))
        for j in range(3):
            has = m[:, j] >= 0
            dj = np.array(_rows(delta, np.where(has, m[:, j] - nv, 0)))
            dj -= (dj * n).sum(0) * n
            tang = np.maximum(tang, np.where(has, np.sqrt((dj * dj).sum(0)), 0.0))
        risky = np.zeros(len(faces), bool)
        risky[sp[tang * 16.0 > hmin]] = True
        check = check[risky[parent[check]]]
    back = 0
    for _ in range(max_iter):
        if check.size == 0:
            break
        tri = new_faces[check]
        bad = _folded(x, tri, _rows(pn, parent[check]), cos_fold)
        if not bad.any():
            break
        vb = np.unique(tri[bad].ravel())
        vb = vb[vb >= nv]
        if vb.size == 0:
            break
        verts[vb] = chord[vb - nv]
        x[:, vb] = chord[vb - nv].T
        back += vb.size
        # the faces around the vertices put back
        hit = np.zeros(len(verts), bool)
        hit[vb] = True
        check = check[hit[new_faces[check]].any(1)]
    return back


def _split_faces(
    verts: np.ndarray, faces: np.ndarray, mids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Re-triangulate faces by their split edges: ``mids[f, i]`` is the new vertex on the edge
    from corner ``i`` to ``i + 1`` of face ``f`` (-1: not split). Winding is kept; a face with two
    split edges takes the shorter diagonal of its quadrilateral. Returns the new faces and the
    parent (input face) of each."""
    s = mids >= 0
    ns = s.sum(1)
    out = [faces[ns == 0]]
    par = [np.flatnonzero(ns == 0)]
    ar = np.arange(3)
    # rotate each face so that its pattern is canonical: one split -> edge 0; two -> edge 1 whole
    rot = np.zeros(len(faces), np.int64)
    one = ns == 1
    rot[one] = np.argmax(s[one], axis=1)
    two = ns == 2
    rot[two] = (np.argmin(s[two], axis=1) + 2) % 3  # the unsplit edge becomes edge 1
    idx = (ar[None] + rot[:, None]) % 3
    v = np.take_along_axis(faces, idx, axis=1)
    m = np.take_along_axis(mids, idx, axis=1)
    f1 = np.flatnonzero(one)
    if f1.size:
        a, b, c, m0 = v[f1, 0], v[f1, 1], v[f1, 2], m[f1, 0]
        out += [np.stack([a, m0, c], 1), np.stack([m0, b, c], 1)]
        par += [f1, f1]
    f2 = np.flatnonzero(two)
    if f2.size:
        a, b, c, m0, m2 = v[f2, 0], v[f2, 1], v[f2, 2], m[f2, 0], m[f2, 2]
        out.append(np.stack([a, m0, m2], 1))
        # quad m0, b, c, m2: diagonal m0-c or b-m2
        d_mc = ((verts[m0] - verts[c]) ** 2).sum(1)
        d_bm = ((verts[b] - verts[m2]) ** 2).sum(1)
        use = d_mc <= d_bm
        out += [
            np.stack([m0, b, c], 1)[use],
            np.stack([m0, c, m2], 1)[use],
            np.stack([m0, b, m2], 1)[~use],
            np.stack([b, c, m2], 1)[~use],
        ]
        par += [f2, f2[use], f2[use], f2[~use], f2[~use]]
    f3 = np.flatnonzero(ns == 3)
    if f3.size:
        a, b, c = v[f3, 0], v[f3, 1], v[f3, 2]
        m0, m1, m2 = m[f3, 0], m[f3, 1], m[f3, 2]
        out += [
            np.stack([a, m0, m2], 1),
            np.stack([m0, b, m1], 1),
            np.stack([m2, m1, c], 1),
            np.stack([m0, m1, m2], 1),
        ]
        par += [f3] * 4
    return np.concatenate(out).astype(np.int64), np.concatenate(par)
