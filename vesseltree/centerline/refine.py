"""Sub-voxel refinement: cross-sections, centring, area radius, smoothing.

Every centerline node is looked at in the plane perpendicular to its branch: rays are cast from the
node in that plane through the trilinear interpolation of the mask (or of the probability map,
which gives sub-voxel walls), and the first crossing of the 0.5 level along each ray is located to
a small fraction of a voxel. The rays trace the lumen's outline; its centroid is the node's new
position, and its area ``A`` gives the cross-section radius ``sqrt(A / pi)``, which is nearly
unbiased for voxelised tubes, unlike the inscribed-sphere radius. A ray that does not leave the
lumen within a few radii runs into a touching vessel; such outlines are clipped and the node is
flagged.

All geometry is in world mm; sampling goes through the inverse affine, so any spacing,
orientation or shear is handled alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

__all__ = [
    "Sampler",
    "cross_sections",
    "smooth_on_graph",
    "graph_smoother",
    "smoothing_matrix",
    "frames",
]

log = logging.getLogger(__name__)


# the (dx, dy, dz) steps from a cell's first corner to its 8 corners, z fastest
_CORNER_STEPS = np.array([(dx, dy, dz) for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)])


class Sampler:
    """Trilinear interpolation of a 3D field at world points (0 outside the grid).

    Parameters
    ----------
    field : (I, J, K) bool or uint8 ndarray
        Mask (0/1) or probabilities quantised to 0..255 (then ``scale = 1/255``).
    affine : (4, 4) ndarray
        Voxel -> world mm.
    scale : float
        Multiplier that maps stored values to [0, 1].
    """

    def __init__(self, field: np.ndarray, affine: np.ndarray, scale: float = 1.0):
        self.flat = np.ascontiguousarray(field).reshape(-1).view(np.uint8)
        self.shape = np.asarray(field.shape, dtype=np.int64)
        self.strides = np.array(
            [field.shape[1] * field.shape[2], field.shape[2], 1], dtype=np.int64
        )
        inv = np.linalg.inv(affine)
        self.lin = inv[:3, :3].astype(np.float32)
        self.off = inv[:3, 3].astype(np.float32)
        self.scale = np.float32(scale)
        # an axis-aligned affine (every voxel axis along one world axis, possibly flipped or
        # permuted: the usual case) maps each voxel coordinate from one world coordinate, a
        # scale instead of a (for 3 x 3, slow) matrix product; the values are the same, as the
        # product only adds exact zeros
        nonzero = self.lin != 0
        self.axis_of = np.argmax(nonzero, axis=1) if np.all(nonzero.sum(1) == 1) else None
        if self.axis_of is not None:  # the scale of each voxel axis, (3, 1) float32
            self.axis_scale = self.lin[np.arange(3), self.axis_of][:, None]
        # flat offsets of the 8 corners of a cell, z fastest: 000, 001, 010, 011, 100, ...
        s0, s1, _ = self.strides.tolist()
        # cells are numbered in int32 where the grid allows (cheaper to convert and add), the
        # corners gathered with intp indices (numpy's take converts any other type first)
        self.index_type = np.int32 if self.flat.size < 2**31 else np.int64
        self.corners = np.array([0, 1, s1, s1 + 1, s0, s0 + 1, s0 + s1, s0 + s1 + 1], np.intp)
        self.corners = self.corners[:, None]

    def beyond_centres(self, xyz: np.ndarray) -> np.ndarray:
        """Whether each world point (..., 3) lies beyond the outermost voxel centres of the grid
        along some axis (where the field fades to the 0 outside it). A point on the outermost
        centres' plane (to 1e-6 voxel) is not beyond it, whatever the rounding of the affine
        (a vessel that lies in the first slice ends there without leaving the volume)."""
        v = np.asarray(xyz, np.float64) @ self.lin.T.astype(np.float64) + self.off
        return np.any((v < -1e-6) | (v > self.shape - 1.0 + 1e-6), axis=-1)

    def __call__(self, xyz: np.ndarray) -> np.ndarray:
        """Values (...,) float32 at world points (..., 3)."""
        xyz = np.asarray(xyz)
        if self.axis_of is None:
            v = xyz.astype(np.float32, copy=False) @ self.lin.T + self.off
            return self._interpolate(np.ascontiguousarray(v.reshape(-1, 3).T), xyz.shape[:-1])
        return self.at_coords([xyz[..., i] for i in range(3)])

    def at_coords(self, coords: list[np.ndarray]) -> np.ndarray:
        """Values float32 at world points given as their three coordinate arrays (x, y, z), each
        of the output's shape: the same as ``self(np.stack(coords, -1))``, without the stack."""
        if self.axis_of is None:
            return self(np.stack(coords, axis=-1))
        # (3, P) voxel coordinates, a row per voxel axis: each world coordinate cast to float32
        # (on assignment), then scaled and shifted, all rows at once
        vox = np.empty((3, coords[0].size), np.float32)
        for i, a in enumerate(self.axis_of.tolist()):
            vox[i] = coords[a].reshape(-1)
        vox *= self.axis_scale
        vox += self.off[:, None]
        return self._interpolate(vox, coords[0].shape)

    def _interpolate(self, vox: np.ndarray, shape: tuple) -> np.ndarray:
        """Values at the voxel coordinates ``vox`` ((3, P) float32), shaped ``shape``."""
        # per axis (row): integer cell, fraction and its complement
        i0 = np.floor(vox)
        frac = vox - i0
        cell = i0.astype(self.index_type)
        comp = 1 - frac
        ix, iy, iz = cell
        n = cell.shape[1]
        # points whose 8 corners are inside the grid (the common case) take the fast path
        nx, ny, nz = (self.shape - 1).tolist()
        inner = None
        if n and not (np.all(cell.min(axis=1) >= 0) and np.all(cell.max(axis=1) < self.shape - 1)):
            inner = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (iz >= 0) & (iz < nz)
        s0, s1, _ = self.strides.tolist()
        base = ix * self.index_type(s0)
        base += iy * self.index_type(s1)
        base += iz
        if inner is not None:
            base[~inner] = 0
        # all 8 corners in one gather, (8, P), then the same sums as ever, two corners at a time:
        # along z (4 edges), along y (2 faces), along x
        val = self.flat.take(base[None, :] + self.corners).astype(np.float32)
        val = val[0::2] * comp[2] + val[1::2] * frac[2]
        val = val[0::2] * comp[1] + val[1::2] * frac[1]
        val = val[0] * comp[0] + val[1] * frac[0]
        if inner is not None and not inner.all():  # corners outside the grid read as 0
            edge = ~inner
            ie = cell[:, edge].T.astype(np.int64)
            fe = frac[:, edge]
            # the 8 corners at once, (8, E), z fastest; a corner outside the grid adds 0
            idx = ie[None, :, :] + _CORNER_STEPS[:, None, :]
            ok = np.all((idx >= 0) & (idx < self.shape), axis=2)
            corner = self.flat[np.where(ok, idx @ self.strides, 0)] * ok
            # weights as products in x, y, z order, (2, E) per axis: 1 - f and f
            wx, wy, wz = (np.stack([1 - f, f]) for f in fe)
            w = ((wx[:, None, None, :] * wy[None, :, None, :]) * wz[None, None, :, :]).reshape(
                8, -1
            )
            term = corner * w
            # summed corner by corner from zero, as the values are exact sums in that order
            acc = np.zeros(len(ie), np.float32)
            for t in term:
                acc += t
            val[edge] = acc
        if self.scale != 1:
            val *= self.scale
        return val.reshape(shape)


def frames(tangents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors (n, 3) spanning the plane perpendicular to each unit tangent (n, 3)."""
    helper = np.zeros_like(tangents)
    helper[np.arange(len(tangents)), np.argmin(np.abs(tangents), axis=1)] = 1.0
    u = _cross(tangents, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = _cross(tangents, u)
    return u, w


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of two (n, 3) arrays: ``np.cross(a, b)``, the same products and
    differences (so the same bits), without its axis handling, which dominates for small n."""
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b))
    np.subtract(a1 * b2, a2 * b1, out=out[:, 0])
    np.subtract(a2 * b0, a0 * b2, out=out[:, 1])
    np.subtract(a0 * b1, a1 * b0, out=out[:, 2])
    return out


def cross_sections(
    sampler: Sampler,
    centres: np.ndarray,
    tangents: np.ndarray,
    r_guess: np.ndarray,
    *,
    n_rays: int,
    step_mm: float,
    reach: float,
    reach_mm: float,
    clip_ratio: float,
    chunk: int = 4096,
    rays: bool = False,
) -> dict[str, np.ndarray]:
    """Lumen outline in the plane perpendicular to each node's tangent.

    Parameters
    ----------
    sampler : Sampler
        The mask or probability map.
    centres, tangents : (n, 3) ndarray
        Node positions (world mm) and unit tangents.
    r_guess : (n,) ndarray, mm
        Expected radius (the inscribed radius); rays are followed up to
        ``reach * r_guess + reach_mm``.
    n_rays : int
        Rays per node, evenly spread over the circle.
    step_mm : float
        Step of the coarse march along each ray before bisection.
    clip_ratio : float
        Rays longer than ``clip_ratio`` x the median ray of the node are clipped there (touching
        vessels, side branches) and counted as ``n_open``.
    rays : bool
        Also return the outline itself: ``rho`` (n, n_rays) mm, the unclipped distance from the
        centre to the wall along each ray (the reach where no wall was found), and ``u``, ``w``
        (n, 3), the in-plane axes; ray k points along ``cos(2 pi k / n_rays) u + sin(...) w``.

    Returns
    -------
    dict
        ``shift`` (n, 3) mm: centroid of the outline minus the centre; ``area`` (n,) mm^2;
        ``n_open`` (n,) rays clipped; ``elongation`` (n,): longest / shortest ray;
        ``inside`` (n,) bool: the centre lies in the lumen (else nothing was measured).
    """
    n = len(centres)
    out = {
        "shift": np.zeros((n, 3)),
        "area": np.pi * np.asarray(r_guess, np.float64) ** 2,
        "n_open": np.zeros(n, np.int64),
        "elongation": np.ones(n),
        "inside": np.zeros(n, bool),
    }
    if rays:
        out.update(rho=np.zeros((n, n_rays)), u=np.zeros((n, 3)), w=np.zeros((n, 3)))
    if n == 0:
        return out
    theta = np.arange(n_rays) * (2 * np.pi / n_rays)
    cos, sin = np.cos(theta), np.sin(theta)
    rho_max = reach * np.asarray(r_guess, np.float64) + reach_mm
    order = np.argsort(rho_max)  # chunks of similar reach waste few samples
    for s in range(0, n, chunk):
        idx = order[s : s + chunk]
        c, t = centres[idx], tangents[idx]
        u, w = frames(t)
        d = cos[None, :, None] * u[:, None, :] + sin[None, :, None] * w[:, None, :]  # (m, K, 3)
        rmax = rho_max[idx]
        n_steps = int(np.ceil(rmax.max() / step_mm))
        f0 = sampler(c)
        # coarse march: samples at rho = j * step, j = 1..n_steps, stopping at each node's reach;
        # in blocks of a few steps, each only for the rays that are still inside the lumen
        j, f_lo, f_hi, found = _march(sampler, c, d, f0, rmax, step_mm, n_steps)
        lo = np.where(j > 0, step_mm * j, 0.0)  # rho of step j is step_mm * (j + 1)
        hi = step_mm * (j + 1)
        d_axes = [np.ascontiguousarray(d[:, :, a]) for a in range(3)]  # (m, K) per world axis
        # bisection on the trilinear field, then a linear guess inside the last bracket
        for _ in range(3):
            mid = 0.5 * (lo + hi)
            fm = sampler.at_coords([c[:, a, None] + d_axes[a] * mid for a in range(3)])
            go_out = fm >= 0.5
            lo = np.where(go_out, mid, lo)
            f_lo = np.where(go_out, fm, f_lo)
            hi = np.where(go_out, hi, mid)
            f_hi = np.where(go_out, f_hi, fm)
        denom = np.where(np.abs(f_lo - f_hi) > 1e-6, f_lo - f_hi, 1.0)
        rho = lo + (hi - lo) * np.clip((f_lo - 0.5) / denom, 0.0, 1.0)
        rho = np.where(found, rho, rmax[:, None])
        if rays:
            out["rho"][idx], out["u"][idx], out["w"][idx] = rho, u, w
        med = np.median(rho, axis=1, keepdims=True)
        clipped = rho > clip_ratio * med
        rho = np.minimum(rho, clip_ratio * med)
        # outline as a star-shaped curve rho(theta): area and centroid by the trapezoid rule in theta
        area = (np.pi / n_rays) * np.sum(rho**2, axis=1)
        mom = (2 * np.pi / n_rays) * (rho**3 / 3.0)
        cu = (mom * cos).sum(1) / np.maximum(area, 1e-12)
        cw = (mom * sin).sum(1) / np.maximum(area, 1e-12)
        inside = f0 >= 0.5
        out["shift"][idx] = np.where(inside[:, None], cu[:, None] * u + cw[:, None] * w, 0.0)
        out["area"][idx] = np.where(inside, area, out["area"][idx])
        out["n_open"][idx] = (clipped | ~found).sum(1)
        out["elongation"][idx] = rho.max(1) / np.maximum(rho.min(1), 1e-9)
        out["inside"][idx] = inside
    return out


def two_lobes(rho: np.ndarray, *, dip: float = 0.8, samples: int = 24) -> dict[str, np.ndarray]:
    """Outlines that are two lumens side by side (a figure eight), and where each lumen lies.

    The outline of each node is the star-shaped polygon through the ray ends (``rho`` from
    :func:`cross_sections` with ``rays=True``, in the node's section plane). Along its longest
    axis (the principal axis of its area, through its centroid), the radius of the largest
    circle centred there that fits in the polygon has one maximum for one lumen (round or
    oval) and two, with a neck between, for two fused lumens. Each lumen is the part of the
    polygon on its side of the line across the axis at the neck: its centroid is the lumen's
    centre and its area gives the lumen's radius. An outline is two lumens when the neck's
    circle is under ``dip`` times the smaller lumen's (both its largest circle on the axis and
    its area's radius).

    Returns
    -------
    dict
        ``two`` (n,) bool; ``centres`` (n, 2, 2): the centre of each lumen in the plane's (u, w)
        coordinates, mm; ``radii`` (n, 2): its area's equivalent radius, mm; ``neck`` (n,): the
        neck circle's radius, mm. Rows where ``two`` is False hold NaN.
    """
    rho = np.asarray(rho, np.float64)
    n, k = rho.shape
    out = {
        "two": np.zeros(n, bool),
        "centres": np.full((n, 2, 2), np.nan),
        "radii": np.full((n, 2), np.nan),
        "neck": np.full(n, np.nan),
    }
    if n == 0 or k < 8 or k % 2:
        return out
    theta = np.arange(k) * (2 * np.pi / k)
    ray = np.stack([np.cos(theta), np.sin(theta)], axis=1)  # (K, 2)
    q = rho[:, :, None] * ray[None]  # (n, K, 2) polygon vertices
    a, b = q, np.roll(q, -1, axis=1)  # edges a -> b
    ab = b - a
    ab2 = np.maximum((ab * ab).sum(-1), 1e-18)
    # the outline's long axis: the principal axis of its area, through its centroid (for a
    # figure eight, the line through both lumens' centres, wherever the node sits), from the
    # fan of triangles (0, a, b): area A = a x b / 2, first moment A (a + b) / 3, second
    # moment A / 12 (a a' + b b' + (a + b)(a + b)')
    tri = 0.5 * (a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])  # (n, K)
    area = np.maximum(tri.sum(1), 1e-12)
    cen = (tri[..., None] * (a + b)).sum(1) / (3.0 * area[:, None])  # (n, 2)
    ab_sum = a + b
    mom = (
        tri[..., None, None]
        / 12.0
        * (
            a[..., :, None] * a[..., None, :]
            + b[..., :, None] * b[..., None, :]
            + ab_sum[..., :, None] * ab_sum[..., None, :]
        )
    ).sum(1) / area[:, None, None] - cen[:, :, None] * cen[:, None, :]
    e = np.linalg.eigh(mom)[1][..., -1]  # (n, 2) the largest eigenvalue's axis
    proj = ((q - cen[:, None, :]) * e[:, None, :]).sum(-1)  # (n, K)
    lo, hi = proj.min(1), proj.max(1)
    s = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.02, 0.98, samples)[None]  # (n, S)
    p = cen[:, None, :] + s[:, :, None] * e[:, None, :]  # (n, S, 2)
    # distance from each sample to each polygon edge: (n, S, K), per coordinate (no (..., 2)
    # temporaries), squared until the minimum
    px, py = p[:, :, None, 0], p[:, :, None, 1]
    ax_, ay_ = a[:, None, :, 0], a[:, None, :, 1]
    bx_, by_ = ab[:, None, :, 0], ab[:, None, :, 1]
    dx, dy = px - ax_, py - ay_
    t = np.clip((dx * bx_ + dy * by_) / ab2[:, None], 0.0, 1.0)
    dx -= t * bx_
    dy -= t * by_
    d = np.sqrt((dx * dx + dy * dy).min(-1))  # (n, S)
    # the two largest local maxima (plateaus count once) and the smallest value between them
    inner = d[:, 1:-1]
    peak = (inner >= d[:, :-2]) & (inner > d[:, 2:])
    for i in np.flatnonzero(peak.sum(1) >= 2):
        js = np.flatnonzero(peak[i]) + 1
        top = js[np.argsort(d[i, js])[-2:]]
        j1, j2 = int(top.min()), int(top.max())
        neck = float(d[i, j1 : j2 + 1].min())
        r1, r2 = float(d[i, j1]), float(d[i, j2])
        if neck >= dip * min(r1, r2):
            continue
        # each lumen: the part of the outline on its side of the neck (the line across the
        # longest diameter at the neck), its centroid and its area's equivalent radius
        jn = j1 + int(np.argmin(d[i, j1 : j2 + 1]))
        centres, rad = [], []
        for side in (-1.0, 1.0):
            c, ar = _half_polygon(q[i], e[i], float(p[i, jn] @ e[i]), side)
            centres.append(c)
            rad.append(np.sqrt(ar / np.pi))
        if neck >= dip * min(rad):
            continue
        out["two"][i] = True
        out["centres"][i] = np.stack(centres)
        out["radii"][i] = rad
        out["neck"][i] = neck
    return out


def _half_polygon(q: np.ndarray, e: np.ndarray, s0: float, side: float):
    """Centroid (2,) and area of the polygon ``q`` (K, 2) where ``side * (x . e - s0) >= 0``."""
    f = side * (q @ e - s0)
    pts = []
    k = len(q)
    for a in range(k):
        b = (a + 1) % k
        if f[a] >= 0:
            pts.append(q[a])
        if (f[a] >= 0) != (f[b] >= 0):
            t = f[a] / (f[a] - f[b])
            pts.append(q[a] + t * (q[b] - q[a]))
    if len(pts) < 3:
        return np.full(2, np.nan), 0.0
    p = np.asarray(pts)
    x, y = p[:, 0], p[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cr = x * y1 - x1 * y
    area = 0.5 * cr.sum()
    if abs(area) < 1e-12:
        return p.mean(0), 0.0
    c = np.array([((x + x1) * cr).sum(), ((y + y1) * cr).sum()]) / (6.0 * area)
    return c, abs(float(area))


# _march samples at least about this many points per block
_MARCH_POINTS = 8192


def _march(sampler, c, d, f0, rmax, step_mm, n_steps, block: int = 4):
    """First step (0-based, along each of the (m, K) rays) that leaves the lumen or the reach.

    Returns the step index ``j``, the field just before it (``f_lo``; the centre's value for
    ``j = 0``) and at it (``f_hi``), and whether the ray really left the lumen there (``found``,
    False where it reached ``rmax`` or ``n_steps`` first).
    """
    m, k = d.shape[:2]
    # few rays: longer blocks (all steps at once for a small graph), as the fixed cost of a
    # block outweighs the samples past a ray's exit; every sample and every answer is the same
    block = max(block, _MARCH_POINTS // max(m * k, 1))
    j = np.full(m * k, n_steps - 1, np.int64)
    f_lo = np.repeat(f0, k).astype(np.float32)
    f_hi = np.zeros(m * k, np.float32)
    found = np.zeros(m * k, bool)
    # the rays still inside, compacted as they leave: their ids, origins and directions (one
    # array per world axis, as the sampler takes them), reach, and the field at their last sample
    active = np.arange(m * k)
    org = [np.repeat(c[:, a], k) for a in range(3)]
    dirs = [d[:, :, a].ravel() for a in range(3)]
    reach = np.repeat(rmax, k)
    last = f_lo.copy()
    for j0 in range(0, n_steps, block):
        if active.size == 0:
            break
        js = np.arange(j0, min(j0 + block, n_steps))
        rhos = step_mm * (js + 1)
        vals = sampler.at_coords([o[:, None] + e[:, None] * rhos for o, e in zip(org, dirs)])
        beyond = rhos[None, :] > reach[:, None]
        below = (vals < 0.5) | beyond
        if js[-1] == n_steps - 1:
            below[:, -1] = True
        hit = below.any(axis=1)
        first = np.argmax(below, axis=1)
        rows = np.flatnonzero(hit)
        ray = active[rows]
        fj = first[rows]
        j[ray] = js[fj]
        f_hi[ray] = vals[rows, fj]
        f_lo[ray] = np.where(fj > 0, vals[rows, np.maximum(fj - 1, 0)], last[rows])
        found[ray] = (vals[rows, fj] < 0.5) & ~beyond[rows, fj]
        stay = ~hit
        active, reach, last = active[stay], reach[stay], vals[stay, -1]
        org = [o[stay] for o in org]
        dirs = [e[stay] for e in dirs]
    return j.reshape(m, k), f_lo.reshape(m, k), f_hi.reshape(m, k), found.reshape(m, k)


def smooth_on_graph(
    positions: np.ndarray, paths: list[np.ndarray], weights: np.ndarray, lam: float
) -> np.ndarray:
    """Whittaker smoothing of node positions along each path of the graph.

    Minimises ``sum_i w_i |x_i - y_i|^2 + lam * sum |x_{i-1} - 2 x_i + x_{i+1}|^2`` where the
    second differences run along each path (so branches are smoothed, junctions stay joined).

    Parameters
    ----------
    positions : (N, 3) ndarray, mm
    paths : list of int ndarrays
        Node sequences (branches, ends included).
    weights : (N,) ndarray
        Data weights (a large weight pins a node).
    lam : float
        Smoothness, in units of the node spacing to the fourth power.
    """
    return graph_smoother(paths, weights, lam)(positions)


def graph_smoother(
    paths: list[np.ndarray], weights: np.ndarray, lam: float
) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`smooth_on_graph` with ``paths``, ``weights`` and ``lam`` fixed: a function of the
    positions. The system is assembled and factorised once, for any number of position sets
    (refinement smooths the same graph several times); each result is the same as
    ``smooth_on_graph(positions, paths, weights, lam)``.
    """
    triples = [
        np.stack([p[:-2], p[1:-1], p[2:]], axis=1) for p in paths if len(p) >= 3
    ]  # one row of second differences per node triple along a path
    if not triples or lam <= 0:
        return lambda positions: positions.copy()
    a = smoothing_matrix(np.concatenate(triples).astype(np.int64), weights, lam)
    solve = splu(a).solve

    def smooth(positions: np.ndarray) -> np.ndarray:
        rhs = positions * weights[:, None]
        return np.stack([solve(rhs[:, i]) for i in range(3)], axis=1)

    return smooth


# the products D[r, i] * D[r, j] of one row (1, -2, 1) of second differences, row-major
_SECOND_DIFF_PRODUCTS = np.outer([1.0, -2.0, 1.0], [1.0, -2.0, 1.0]).ravel()
# graphs up to this many nodes get their smoothing matrix summed in a dense (n, n) array, larger
# ones through scipy.sparse
_DENSE_SMOOTHING_MAX = 384


def smoothing_matrix(triples: np.ndarray, weights: np.ndarray, lam: float) -> sp.csc_matrix:
    """The system ``diag(weights) + lam * D^T D`` of :func:`smooth_on_graph`, as a CSC matrix.

    ``D`` has one row ``x_a - 2 x_b + x_c`` per node triple ``(a, b, c)`` of ``triples`` (T, 3).
    For a small graph the matrix is assembled straight into canonical CSC arrays (sorted,
    summed, exact zeros dropped), as scipy's ``(diags(w) + lam * (d.T @ d)).tocsc()`` leaves it
    but without the half a dozen intermediate sparse matrices, which cost far more than the
    factorisation for the small graphs of a label. The entries are bit for bit the same: those
    of ``D^T D`` are sums of small integers (exact in any order) and each is then scaled by
    ``lam`` and added to its weight once, as scipy does.
    """
    n = len(weights)
    if n > _DENSE_SMOOTHING_MAX:
        # a large graph: scipy's sparse products, whose fixed cost no longer matters
        k = len(triples)
        d = sp.csr_matrix(
            (np.tile([1.0, -2.0, 1.0], k), (np.repeat(np.arange(k), 3), triples.ravel())),
            shape=(k, n),
        )
        return (sp.diags(weights) + lam * (d.T @ d)).tocsc()
    # every product D[r, i] * D[r, j] of a row with itself (9 per triple), keyed column-major
    # (the symmetric matrix's CSC is its CSR), summed into the dense matrix, whose non-zeros
    # then come in key order
    rows = np.repeat(triples, 3, axis=1).ravel()
    cols = np.tile(triples, (1, 3)).ravel()
    prod = np.tile(_SECOND_DIFF_PRODUCTS, len(triples))
    vals = lam * np.bincount(cols * n + rows, weights=prod, minlength=n * n)
    vals[:: n + 1] = weights + vals[:: n + 1]
    keys = np.flatnonzero(vals)  # scipy drops the exact zeros of each product and sum
    vals = vals[keys]
    idx_type = np.int32 if max(len(vals), n) < 2**31 else np.int64
    row = (keys % n).astype(idx_type)
    indptr = np.searchsorted(keys, np.arange(n + 1) * n).astype(idx_type)  # column starts
    return sp.csc_matrix((vals, row, indptr), shape=(n, n), copy=False)


def hold_fork_radii(
    radii: np.ndarray,
    positions: np.ndarray,
    paths: list[np.ndarray],
    junction: np.ndarray,
    reach: np.ndarray,
) -> np.ndarray:
    """Radii near junctions taken from their branch just beyond the fork.

    Within ``reach[j]`` (mm, along the branch) of a junction node ``j``, the plane normal to a
    branch cuts through the fork as well: the other branches' lumens widen the outline, so its
    area reads too large. Each node there takes the radius of the nearest node (along the
    branch) of its own branch that lies beyond the reach of both of the branch's ends; a branch
    that lies within reach of its junctions everywhere takes the smallest radius measured on it.
    Junction nodes themselves and nodes with no measured radius (NaN) are left as they are.

    Parameters
    ----------
    radii : (n,) float
        Measured radii (NaN where none was measured).
    positions : (n, 3) float, mm
    paths : list of int arrays
        Each branch's node ids from one key node (junction or tip) to the next.
    junction : (n,) bool
    reach : (n,) float, mm
        The fork's extent around each junction node.

    Returns
    -------
    (n,) float
        A copy of ``radii``.
    """
    out = radii.copy()
    paths = [p for p in paths if len(p) >= 3 and (junction[p[0]] or junction[p[-1]])]
    if not paths:
        return out
    # every path's nodes in one array; arc length from the path's first node
    size = np.array([len(p) for p in paths])
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    node = np.concatenate(paths)
    pid = np.repeat(np.arange(len(paths)), size)
    step = np.linalg.norm(np.diff(positions[node], axis=0), axis=1)
    step[start[1:] - 1] = 0.0  # no step from one path's last node to the next path's first
    arc = np.concatenate([[0.0], np.cumsum(step)])
    arc -= arc[start][pid]
    first, last = node[start], node[start + size - 1]
    length = arc[start + size - 1]
    near = (junction[first][pid] & (arc < reach[first][pid])) | (
        junction[last][pid] & (length[pid] - arc < reach[last][pid])
    )
    inner = np.ones(len(node), bool)
    inner[start] = inner[start + size - 1] = False  # the key nodes themselves
    r = radii[node]
    fix = near & inner & np.isfinite(r)
    clean = ~near & inner & np.isfinite(r)
    if not fix.any():
        return out
    # a path with no clean node: its smallest measured radius
    has_clean = np.bincount(pid[clean], minlength=len(paths)) > 0
    lowest = np.full(len(paths), np.inf)
    ok = inner & np.isfinite(r)
    np.minimum.at(lowest, pid[ok], r[ok])
    value = np.where(has_clean[pid], np.nan, lowest[pid])
    # otherwise: the nearest clean node of the same path, along it (paths laid end to end on
    # one axis, each a gap longer than itself after the one before)
    key = arc + np.concatenate([[0.0], np.cumsum(2.0 * length + 1.0)])[pid]
    k = np.flatnonzero(clean)
    want = fix & has_clean[pid]
    at = np.searchsorted(key[k], key[want])
    lo = k[np.clip(at - 1, 0, len(k) - 1)]
    hi = k[np.clip(at, 0, len(k) - 1)]
    d_lo = np.where(pid[lo] == pid[want], np.abs(key[want] - key[lo]), np.inf)
    d_hi = np.where(pid[hi] == pid[want], np.abs(key[hi] - key[want]), np.inf)
    value[want] = r[np.where(d_lo <= d_hi, lo, hi)]
    out[node[fix]] = value[fix]
    return out


def place_junctions(
    positions: np.ndarray,
    paths: list[np.ndarray],
    junctions: np.ndarray,
    radius: np.ndarray,
    sampler: Sampler,
    *,
    reach_mm: float,
) -> tuple[np.ndarray, int]:
    """Move each junction to the point nearest to the axes of the branches that meet there.

    Thinning leaves a junction where the medial axes of the branches happen to meet in the voxel
    grid, which for a side branch is often a voxel or two off the parent's axis. Each incident
    branch is represented by the line through its refined nodes between one junction radius and
    ``radius + reach_mm`` from the junction; the junction moves to the least-squares
    intersection of these lines (for a side branch: where its axis meets the parent's axis).
    A move longer than two junction radii or leaving the lumen is not made.

    Parameters
    ----------
    positions : (N, 3) ndarray, mm
        Refined node positions.
    paths : list of int ndarrays
        Branches as node sequences, ends included.
    junctions : (N,) bool ndarray
        Nodes to place.
    radius : (N,) ndarray, mm
        Node radii.
    sampler : Sampler
        The mask, to check the new position lies inside.
    reach_mm : float
        Length of branch used beyond the junction radius.

    Returns
    -------
    positions : (N, 3) ndarray
        A copy with the junctions moved.
    moved : int
        How many moved.
    """
    out = positions.copy()
    lines: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for p in paths:
        for end, seq in ((p[0], p), (p[-1], p[::-1])):
            if not junctions[end] or len(seq) < 3:
                continue
            q = positions[seq]
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))])
            r0 = radius[end]
            sel = (s >= r0) & (s <= r0 + reach_mm)
            if seq[-1] != end and junctions[seq[-1]]:
                sel &= s <= 0.5 * s[-1]  # stop half way to the next junction
            if sel.sum() < 2:
                continue
            pts = q[sel]
            c = pts.mean(0)
            d = pts[-1] - pts[0]
            norm = np.linalg.norm(d)
            if norm < 1e-9:
                continue
            lines.setdefault(int(end), []).append((c, d / norm))
    moved = 0
    cand, old = [], []
    for j, ls in lines.items():
        if len(ls) < 2:
            continue
        a = np.zeros((3, 3))
        b = np.zeros(3)
        for c, d in ls:
            m = np.eye(3) - np.outer(d, d)
            a += m
            b += m @ c
        if np.linalg.cond(a) > 1e6:
            continue
        x = np.linalg.solve(a, b)
        if np.linalg.norm(x - positions[j]) > 2.0 * radius[j]:
            continue
        cand.append(x)
        old.append(j)
    if cand:
        cand = np.asarray(cand)
        ok = sampler(cand) >= 0.5
        out[np.asarray(old)[ok]] = cand[ok]
        moved = int(ok.sum())
    return out, moved


def straighten_in_balls(
    positions: np.ndarray,
    paths: list[np.ndarray],
    junctions: np.ndarray,
    radius: np.ndarray,
    *,
    max_balls: float = 4.0,
) -> tuple[np.ndarray, int]:
    """Run each branch straight from a junction to where it leaves its siblings' tubes.

    Near a junction the lumens of the branches merge and no cross-section belongs to one branch,
    so the refined path there is arbitrary; distance-ordered thinning at a wide fork even leaves
    a T whose arms run along the crotch. As in VMTK's branch splitting, a branch's own part starts
    where its centerline leaves the tubes (balls of radius ``radius`` along the paths) of the other
    branches at that junction. The nodes before that point are put on the chord from the junction
    to it, keeping their arc-length fractions. The search stops at half a branch that ends at
    another junction, and at ``max_balls`` junction radii.

    Returns the new positions (a copy) and the number of nodes moved.
    """
    out = positions.copy()
    arms: dict[int, list[np.ndarray]] = {}
    for p in paths:
        for seq in (p, p[::-1]):
            end = int(seq[0])
            if not junctions[end] or len(seq) < 3:
                continue
            q = positions[seq]
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))])
            limit = max_balls * radius[end]
            if junctions[seq[-1]]:
                limit = min(limit, 0.5 * s[-1])
            arms.setdefault(end, []).append(seq[: int(np.searchsorted(s, limit, "right"))])
    moved = 0
    for seqs in arms.values():
        if len(seqs) < 2 or max(len(q) for q in seqs) < 3:
            continue
        # every node of every arm against every node of the others, at once
        nodes = np.concatenate(seqs)
        arm = np.repeat(np.arange(len(seqs)), [len(q) for q in seqs])
        p = positions[nodes]
        d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
        covered = ((d < radius[nodes][None, :]) & (arm[:, None] != arm[None, :])).any(axis=1)
        start = 0
        for seq in seqs:
            inside = covered[start : start + len(seq)].copy()
            start += len(seq)
            if len(seq) < 3:
                continue
            q = positions[seq]
            inside[0] = True
            k = int(np.argmin(inside)) if not inside.all() else 0
            if k < 2:
                continue
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))])
            frac = (s[1:k] / s[k])[:, None]
            out[seq[1:k]] = q[0] + frac * (q[k] - q[0])
            moved += k - 1
    return out, moved
