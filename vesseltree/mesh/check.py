"""Printability checks on a triangle mesh, as a slicer sees it (units: mm).

:func:`check_printable` reads the file back when given a path (an STL stores float32 vertices
without connectivity, so welding and float rounding are part of what is checked) and reports
watertightness, winding, outward normals, bodies, Euler number and genus, degenerate faces,
self-intersections (exact orientation tests on candidate pairs from a uniform grid) and the
minimum wall thickness along inward rays.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FileFormatError, InvalidInputError, describe

__all__ = ["PrintReport", "check_printable", "count_self_intersections", "wall_thickness"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrintReport:
    """What :func:`check_printable` found. Lengths in mm, volume in mm^3."""

    source: str
    n_vertices: int
    n_faces: int
    watertight: bool
    winding_consistent: bool
    outward_normals: bool
    bodies: int
    euler_number: int
    genus: int | None
    degenerate_faces: int
    self_intersections: int | None
    min_wall_thickness: float | None
    volume: float
    area: float
    expected_bodies: int | None = None
    expected_genus: int | None = None
    min_wall_mm: float | None = None

    @property
    def problems(self) -> list[str]:
        """Human-readable reasons the mesh is not printable (empty when :attr:`ok`)."""
        out = []
        if self.n_faces == 0:
            out.append("no faces")
        if not self.watertight:
            out.append("not watertight (open or non-manifold edges)")
        if not self.winding_consistent:
            out.append("inconsistent winding")
        if not self.outward_normals:
            out.append("normals point inward (a body has negative volume)")
        if self.degenerate_faces:
            out.append(f"{self.degenerate_faces} degenerate faces")
        if self.self_intersections:
            out.append(f"{self.self_intersections} self-intersecting face pairs")
        if self.expected_bodies is not None and self.bodies != self.expected_bodies:
            out.append(f"{self.bodies} bodies, expected {self.expected_bodies}")
        if self.expected_genus is not None and self.genus != self.expected_genus:
            out.append(f"genus {self.genus}, expected {self.expected_genus}")
        if self.min_wall_mm is not None and self.min_wall_thickness is not None:
            if self.min_wall_thickness < self.min_wall_mm:
                out.append(
                    f"wall {self.min_wall_thickness:.3f} mm thinner than {self.min_wall_mm} mm"
                )
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        def yn(flag: bool) -> str:
            return "yes" if flag else "NO"

        si = "not checked" if self.self_intersections is None else str(self.self_intersections)
        wall = (
            "not measured"
            if self.min_wall_thickness is None
            else f"{self.min_wall_thickness:.3f} mm"
        )
        lines = [
            f"print check of {self.source}",
            f"  vertices / faces      {self.n_vertices} / {self.n_faces}",
            f"  watertight            {yn(self.watertight)}",
            f"  winding consistent    {yn(self.winding_consistent)}",
            f"  outward normals       {yn(self.outward_normals)} (volume {self.volume:.1f} mm^3, area {self.area:.1f} mm^2)",
            f"  bodies                {self.bodies}",
            f"  Euler number / genus  {self.euler_number} / {self.genus}",
            f"  degenerate faces      {self.degenerate_faces}",
            f"  self-intersections    {si}",
            f"  min wall thickness    {wall}",
            f"  printable             {'yes' if self.ok else 'NO: ' + '; '.join(self.problems)}",
        ]
        return "\n".join(lines)


def _load(mesh_or_path):
    import trimesh

    if isinstance(mesh_or_path, (str, os.PathLike)):
        path = Path(mesh_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"mesh file {str(path)!r} does not exist")
        try:
            mesh = trimesh.load(str(path), force="mesh", process=True)
        except Exception as exc:  # noqa: BLE001 - trimesh raises many types on bad files
            raise FileFormatError(f"{str(path)!r} is not a readable mesh: {exc}") from exc
        return mesh, str(path)
    if isinstance(mesh_or_path, trimesh.Trimesh):
        mesh = trimesh.Trimesh(
            np.asarray(mesh_or_path.vertices), np.asarray(mesh_or_path.faces), process=True
        )
        return mesh, "mesh in memory"
    raise InvalidInputError(
        f"mesh_or_path must be a trimesh.Trimesh or a file path, got {describe(mesh_or_path)}"
    )


def check_printable(
    mesh_or_path,
    *,
    expected_bodies: int | None = None,
    expected_genus: int | None = None,
    min_wall_mm: float | None = None,
    self_intersections: bool = True,
    wall_rays: int = 2000,
    seed: int = 0,
) -> PrintReport:
    """Check a surface for 3D printing.

    Parameters
    ----------
    mesh_or_path : trimesh.Trimesh or path
        A mesh, or a mesh file (STL, PLY, OBJ, ...) that is read back first (vertices welded as a
        slicer does), which is how an exported file should be checked.
    expected_bodies, expected_genus : int, optional
        Compared with what is found (``ok`` is False on a mismatch).
    min_wall_mm : float, optional
        Thinnest acceptable wall (mm), compared with the ray estimate.
    self_intersections : bool
        Count intersecting face pairs (the slowest check, about 1 s per 200k faces).
    wall_rays : int
        Number of faces sampled for the inward-ray wall thickness (0 skips it).

    Returns
    -------
    PrintReport
    """
    mesh, source = _load(mesh_or_path)
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int64)
    nf = len(f)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    ukey, counts = np.unique(edges[:, 0] * (len(v) + 1) + edges[:, 1], return_counts=True)
    watertight = bool(nf > 0 and np.all(counts == 2))
    # winding: every directed edge must appear once (an edge shared by two faces runs both ways)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    dkey = directed[:, 0] * (len(v) + 1) + directed[:, 1]
    winding = bool(nf > 0 and np.unique(dkey).size == dkey.size)
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    area2 = np.linalg.norm(cross, axis=1)
    scale = float(np.ptp(v, axis=0).max()) if len(v) else 1.0
    degenerate = int(np.count_nonzero(area2 <= (1e-7 * scale) ** 2))
    fvol = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])) / 6.0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if nf:
        adj = coo_matrix(
            (np.ones(3 * nf), (directed[:, 0], directed[:, 1])), shape=(len(v), len(v))
        )
        n_comp, vlab = connected_components(adj, directed=False)
        used = np.zeros(len(v), bool)
        used[f.ravel()] = True
        labels = np.unique(vlab[used])
        bodies = int(labels.size)
        body_vol = np.bincount(vlab[f[:, 0]], weights=fvol, minlength=n_comp)[labels]
    else:
        bodies, body_vol = 0, np.zeros(0)
    n_used = int(np.unique(f).size)
    euler = n_used - int(ukey.size) + nf
    genus = (2 * bodies - euler) // 2 if watertight and (2 * bodies - euler) % 2 == 0 else None
    outward = bool(nf > 0 and np.all(body_vol > 0))
    n_si = (
        count_self_intersections(v, f)
        if self_intersections and nf
        else (0 if self_intersections else None)
    )
    wall = wall_thickness(v, f, n_rays=wall_rays, seed=seed) if wall_rays and watertight else None
    return PrintReport(
        source=source,
        n_vertices=n_used,
        n_faces=nf,
        watertight=watertight,
        winding_consistent=winding,
        outward_normals=outward,
        bodies=bodies,
        euler_number=int(euler),
        genus=None if genus is None else int(genus),
        degenerate_faces=degenerate,
        self_intersections=n_si,
        min_wall_thickness=wall,
        volume=float(fvol.sum()),
        area=float(area2.sum() / 2),
        expected_bodies=expected_bodies,
        expected_genus=expected_genus,
        min_wall_mm=min_wall_mm,
    )


def _orient(a, b, c, d):
    return np.einsum("ij,ij->i", b - a, np.cross(c - a, d - a))


def _candidate_pairs(lo: np.ndarray, hi: np.ndarray, cell: float, chunk: int = 2_000_000):
    """Pairs (i < j) of boxes sharing a cell of a uniform grid and whose boxes overlap.

    Each box is registered in every cell it touches; two boxes in one cell are a pair there only
    if that cell holds the corner ``max(lo_i, lo_j)`` (so a pair is reported once), i.e. if along
    every axis one of the two boxes starts in that cell. That test needs three bits per entry
    (where the box starts in the cell) and is made before the (costlier) box overlap test.
    Pairs come cell by cell, in the order of the entries within the cell.
    """
    from ._field import _ragged_boxes

    origin = lo.min(0)
    c_lo = np.floor((lo - origin) / cell).astype(np.int64)
    c_hi = np.floor((hi - origin) / cell).astype(np.int64)
    owner, cc = _ragged_boxes(c_lo, c_hi)
    dims = cc.max(0) + 2
    key = (cc[:, 0] * dims[1] + cc[:, 1]) * dims[2] + cc[:, 2]
    order = np.argsort(key, kind="stable")
    key, owner, cc = key[order], owner[order], cc[order]
    # bit i: the box starts in this cell along axis i (floor is monotone, so the cell of
    # max(lo_i, lo_j) is the larger start cell of the two along each axis)
    start = c_lo[owner] == cc
    home = (start[:, 0] | (start[:, 1] << 1) | (start[:, 2] << 2)).astype(np.uint8)
    del cc, start
    # the boxes of the entries, one contiguous column per axis and bound
    blo = [np.ascontiguousarray(lo[owner, i]) for i in range(3)]
    bhi = [np.ascontiguousarray(hi[owner, i]) for i in range(3)]
    first = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1])
    size = np.diff(np.concatenate([first, [key.size]]))
    rank = np.arange(key.size) - np.repeat(first, size)
    n_after = np.repeat(size, size) - 1 - rank  # entries after this one in its cell
    out = []
    ends = np.cumsum(n_after)
    done = 0
    while done < key.size:
        stop = int(np.searchsorted(ends, (ends[done - 1] if done else 0) + chunk, side="right"))
        stop = max(stop, done + 1)
        cnt = n_after[done:stop]
        # every pair (src, j) of an entry and a later entry of the same cell
        src = np.repeat(np.arange(done, stop), cnt)
        j = np.arange(src.size) - np.repeat(np.cumsum(cnt) - cnt, cnt) + 1
        j += src
        keep = (home.take(src) | home.take(j)) == 7
        src, j = src[keep], j[keep]
        ok = np.ones(src.size, bool)
        for i in range(3):
            ok &= blo[i].take(src) <= bhi[i].take(j)
            ok &= blo[i].take(j) <= bhi[i].take(src)
        a, b = owner.take(src[ok]), owner.take(j[ok])
        ok = a != b
        a, b = a[ok], b[ok]
        out.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
        done = stop
    pairs = np.concatenate(out) if out else np.zeros((0, 2), np.int64)
    return pairs


def count_self_intersections(vertices, faces, *, return_pairs: bool = False):
    """Number of pairs of faces that intersect without sharing a vertex.

    Candidates come from a uniform grid of cells about the size of the larger triangles, then
    overlapping bounding boxes; each candidate is decided exactly (up to float rounding) by
    orientation tests: two triangles that do not share a vertex cross where an edge of one
    passes strictly through the other. Touching (zero-volume) contacts are not counted.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if len(f) < 2:
        return (0, np.zeros((0, 2), np.int64)) if return_pairs else 0
    tri = v[f]
    # (corner by corner: several times faster than a reduction over the short middle axis)
    lo = np.minimum(np.minimum(tri[:, 0], tri[:, 1]), tri[:, 2])
    hi = np.maximum(np.maximum(tri[:, 0], tri[:, 1]), tri[:, 2])
    ext = (hi - lo).max(1)
    cell = float(max(np.percentile(ext, 99), 1e-9)) * 1.01
    pairs = _candidate_pairs(lo, hi, cell)
    if len(pairs):
        # most candidates are neighbours (sharing a vertex): compare corner by corner
        col = [np.ascontiguousarray(f[:, i]) for i in range(3)]
        fa = [c.take(pairs[:, 0]) for c in col]
        fb = [c.take(pairs[:, 1]) for c in col]
        share = np.zeros(len(pairs), bool)
        for x in fa:
            for y in fb:
                share |= x == y
        pairs = pairs[~share]
    hits = np.zeros(len(pairs), bool)
    tol = 1e-12 * max(float(np.ptp(v, axis=0).max()), 1e-9) ** 3
    # plane normals (b - a) x (c - a): orient(a, b, c, p) = (p - a) . n, one cross per face
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    for s0 in range(0, len(pairs), 1_000_000):
        p = pairs[s0 : s0 + 1_000_000]
        ta, tb = tri[p[:, 0]], tri[p[:, 1]]
        na, nb = normal[p[:, 0]], normal[p[:, 1]]
        hit = np.zeros(len(p), bool)
        for t1, t2, n2 in ((ta, tb, nb), (tb, ta, na)):
            a, b, c = t2[:, 0], t2[:, 1], t2[:, 2]
            # side of t2's plane of each corner of t1
            side = [np.einsum("ij,ij->i", t1[:, i] - a, n2) for i in range(3)]
            for i in range(3):
                o1, o2 = side[i], side[(i + 1) % 3]
                # the edge (s, e) crosses the plane: then does it pass inside the triangle?
                cross = ((o1 > tol) & (o2 < -tol)) | ((o1 < -tol) & (o2 > tol))
                k = np.flatnonzero(cross & ~hit)
                s, e = t1[k, i], t1[k, (i + 1) % 3]
                ak, bk, ck = a[k], b[k], c[k]
                s1, s2, s3 = _orient(s, e, ak, bk), _orient(s, e, bk, ck), _orient(s, e, ck, ak)
                inside = ((s1 > tol) & (s2 > tol) & (s3 > tol)) | (
                    (s1 < -tol) & (s2 < -tol) & (s3 < -tol)
                )
                hit[k[inside]] = True
        hits[s0 : s0 + len(p)] = hit
    n = int(hits.sum())
    return (n, pairs[hits]) if return_pairs else n


def wall_thickness(vertices, faces, *, n_rays: int = 2000, seed: int = 0) -> float | None:
    """Smallest distance (mm) from a face centroid, inward along its normal, to the next face.

    Uses ``n_rays`` faces drawn at random (all faces where there are fewer); candidates for
    each ray are the faces near points marched along it, then an exact ray-triangle test. The
    ray follows the face's smoothed normal (the sum of its three vertices' area-weighted
    normals): a sliver's own normal can tilt tens of degrees off the surface's and would
    measure a chord, not the wall.
    """
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if len(f) == 0 or n_rays <= 0:
        return None
    tri = v[f]
    cen = tri.mean(1)
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    nn = np.linalg.norm(nrm, axis=1)
    good = nn > 0
    rng = np.random.default_rng(seed)
    pick = np.flatnonzero(good)
    if pick.size > n_rays:
        pick = rng.choice(pick, n_rays, replace=False)
    origin = cen[pick]
    # area-weighted vertex normals (the cross product is twice the area times the normal)
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], nrm)
    smooth = vn[f[pick]].sum(1)
    sn = np.linalg.norm(smooth, axis=1)
    smooth = np.where(sn[:, None] > 0, smooth / np.maximum(sn, 1e-300)[:, None], 0.0)
    flat = nrm[pick] / nn[pick, None]
    direction = -np.where(sn[:, None] > 0, smooth, flat)
    reach = float(
        np.max(np.linalg.norm(tri - cen[:, None, :], axis=2))
    )  # largest circumradius bound
    step = max(reach, 1e-6)
    length = float(np.ptp(v, axis=0).max())
    n_steps = int(min(np.ceil(length / step), 4000))
    tree = cKDTree(cen)
    best = np.full(len(pick), np.inf)
    alive = np.ones(len(pick), bool)
    for k in range(n_steps + 1):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        pts = origin[idx] + direction[idx] * (k * step)
        near = tree.query_ball_point(pts, r=1.5 * step, return_sorted=False)
        cnt = np.fromiter((len(x) for x in near), np.int64, len(near))
        if cnt.sum() == 0:
            continue
        ray = np.repeat(idx, cnt)
        face = np.concatenate([np.asarray(x, np.int64) for x in near if len(x)])
        keep = face != pick[ray]
        ray, face = ray[keep], face[keep]
        t = _ray_triangle(origin[ray], direction[ray], tri[face])
        ok = np.isfinite(t) & (t > 1e-6)
        np.minimum.at(best, ray[ok], t[ok])
        # a hit closer than the marched distance cannot be beaten later
        alive &= ~(best <= k * step - 1.5 * step)
    best = best[np.isfinite(best)]
    return float(best.min()) if best.size else None


def _ray_triangle(o, d, tri):
    """Distance along unit rays ``o + t d`` to triangles (n, 3, 3); inf where missed."""
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    p = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > 1e-15
    inv = 1.0 / np.where(ok, det, 1.0)
    s = o - tri[:, 0]
    uu = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    vv = np.einsum("ij,ij->i", d, q) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    hit = ok & (uu >= 0) & (vv >= 0) & (uu + vv <= 1)
    return np.where(hit, t, np.inf)
