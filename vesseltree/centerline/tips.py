"""Where a free tip ends: seated where its ball reaches the lumen's end, or at the volume's edge.

Thinning does not end a vessel at one reproducible place. At a rounded end the curve skeleton may
stop at the centre of the end cap, run on to its pole, or curl off to its rim, depending on how
the cap fell on the grid: on a straight tube of radius 2 mm at 0.5 mm voxels the tips landed
anywhere from 2 mm beyond to 1.5 mm short of the cap's centre. :func:`seat_tips` puts every free
tip where its inscribed ball just reaches the end of the lumen, a radius short of it: the centre
of a rounded end, a radius before a flat cut, and the end itself for a vessel that tapers out.
That is the end of the medial axis, where VMTK's centerlines and the TubeTK experts stop, and a
round-cone surface built on the graph reaches the lumen's end from there.

:func:`extend_tips` runs a tip on to the edge of the grid where the vessel leaves the field of
view (or, on request, every tip to the end of its lumen).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["seat_tips", "extend_tips"]

# how far back from a tip (mm) the tube is looked at: its radius, its direction
_WINDOW_MM = 10.0


class _Tip(NamedTuple):
    chain: np.ndarray  # node ids from the tip inwards
    last: int  # index in chain of the last node of this tip's own vessel (before a junction)
    s: np.ndarray  # arc length (mm) from the tip along the chain
    limit: float  # how far (mm) the tip may be pulled back
    R: float  # the tube's radius behind the end cap
    back: float  # how far back (mm) the tip's direction is taken from
    u: np.ndarray  # unit direction out of the tip


def _neighbours(edges: np.ndarray, n: int) -> tuple[list[int], list[int], np.ndarray]:
    """CSR adjacency (indptr, indices, as lists for a fast walk) and degree of an edge list."""
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.argsort(src, kind="stable")
    deg = np.bincount(src, minlength=n)
    indptr = np.concatenate([[0], np.cumsum(deg)])
    return indptr.tolist(), dst[order].tolist(), deg


def _chain(tip: int, indptr: list, indices: list, deg: list, max_nodes: int) -> list[int]:
    """Nodes from a tip inwards while they have degree 2, plus the node that stops the walk."""
    chain = [tip]
    prev, cur = -1, tip
    while len(chain) < max_nodes:
        if cur != tip and deg[cur] != 2:
            break
        nxt = [v for v in indices[indptr[cur] : indptr[cur + 1]] if v != prev]
        if not nxt:
            break
        prev, cur = cur, nxt[0]
        chain.append(cur)
    return chain


def _crossings(sampler, starts, dirs, reach, step):
    """March from each start (T, 3) along its unit direction in steps of ``step`` mm, up to
    ``reach`` (T,) mm: the distance to the first 0.5 crossing of the field (the last inside
    sample plus the linear guess to the level), and whether the march ran on past ``reach``
    without one."""
    rhos = step * np.arange(1, int(np.ceil(float(reach.max()) / step)) + 1)
    vals = sampler(starts[:, None, :] + dirs[:, None, :] * rhos[None, :, None])
    below = (vals < 0.5) | (rhos[None, :] > reach[:, None])
    below[:, -1] = True
    j = np.argmax(below, axis=1)
    rows = np.arange(len(starts))
    f_in = np.where(j > 0, vals[rows, np.maximum(j - 1, 0)], 1.0)
    f_out = vals[rows, j]
    frac = np.clip((f_in - 0.5) / np.maximum(f_in - f_out, 1e-6), 0.0, 1.0)
    f = np.where(j > 0, rhos[np.maximum(j - 1, 0)], 0.0) + frac * step
    return f, j, (rhos[j] > reach) | (f_out >= 0.5)


def _lumen_ends(sampler, starts, dirs, reach, step):
    """Distance from each start (T, 3) along its unit direction to the 0.5 crossing of the field;
    NaN where the field stays above 0.5 up to ``reach`` (T,) or the crossing lies beyond the
    grid's outermost voxel centres (the vessel leaves the volume there)."""
    f, _, ran_on = _crossings(sampler, starts, dirs, reach, step)
    f[ran_on] = np.nan
    ok = ~ran_on
    if ok.any():
        f[ok] = np.where(sampler.beyond_centres(starts[ok] + dirs[ok] * f[ok, None]), np.nan, f[ok])
    return f


def _arc(P: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(P, axis=0), axis=1))])


def _direction(P: np.ndarray, s: np.ndarray, back: float, last: int) -> np.ndarray:
    """Unit direction out of the tip, from the chain node about ``back`` mm behind it."""
    m = min(max(int(np.searchsorted(s, back)), 1), last)
    u = P[0] - P[m]
    return u / max(float(np.linalg.norm(u)), 1e-12)


def seat_tips(positions, radii, r_ins, touching, branch, edges, sampler, h, ray_kw, h_min):
    """Move every free tip to where its ball reaches the end of its lumen.

    For each tip the tube's radius ``R`` is the median cross-section radius between one and about
    four radii behind it (past the end cap, where sections shrink). The lumen's end is found by
    a ray through the interpolated field from the tip along its direction; the 0.5 level there
    lies about ``h_min^2 / (6 R)`` inside a rounded end (the curvature error of trilinear
    interpolation, twice that across a round wall), which is added back. A tip closer than
    ``R`` to that end is pulled back along its chain to the point ``R`` from it; then, from there
    (or from a tip that stopped short), the lumen is measured again along the straightened
    direction, and a tip more than ``R`` (+ a quarter node spacing) short of it runs on straight.
    Tips whose lumen reaches the grid's edge, runs on beyond two radii, or whose chain is too short
    to measure are left alone; an isolated branch gives up at most half its length to each tip.

    Returns
    -------
    positions, radii, r_ins, touching, branch, edges, n_seated
        The graph with nodes beyond a seated tip dropped (renumbered) and nodes added where a tip
        ran on; ``n_seated`` counts the tips moved.
    """
    n = len(positions)
    indptr, indices, deg = _neighbours(edges, n) if n else ([0], [], np.zeros(0, np.int64))
    tips = np.flatnonzero(deg == 1)
    if tips.size == 0:
        return positions, radii, r_ins, touching, branch, edges, 0
    deg_l = deg.tolist()
    max_nodes = int(4.0 * _WINDOW_MM / h) + 4
    step = 0.5 * ray_kw["step_mm"]
    # each tip: its chain (cut at the window), the tube radius behind the cap, its direction
    todo = []
    for tip in tips.tolist():
        chain = np.asarray(_chain(tip, indptr, indices, deg_l, max_nodes))
        inner = deg[chain] == 2
        inner[0] = True
        last = int(np.argmin(inner)) - 1 if not inner.all() else len(chain) - 1
        if last < 1:
            continue
        P = positions[chain]
        s = _arc(P)
        # an isolated branch: each of its two tips may take at most half of it
        limit = 0.5 * s[-1] if deg[chain[-1]] == 1 else np.inf
        r_in, s_in = radii[chain[: last + 1]], s[: last + 1]
        R0 = float(np.median(r_in[s_in <= _WINDOW_MM]))
        win = (s_in >= R0) & (s_in <= 4.0 * R0 + 2.0 * h)
        R = float(np.median(r_in[win])) if win.any() else R0
        back = max(R, 2.0 * h)
        todo.append(_Tip(chain, last, s, limit, R, back, _direction(P, s, back, last)))
    if not todo:
        return positions, radii, r_ins, touching, branch, edges, 0
    R_all = np.array([t.R for t in todo])
    reach = 2.0 * R_all + 2.0 * h
    bias = h_min**2 / (6.0 * np.maximum(R_all, h_min))
    f = _lumen_ends(
        sampler,
        np.array([positions[t.chain[0]] for t in todo]),
        np.array([t.u for t in todo]),
        reach,
        step,
    )
    positions = positions.copy()
    radii = radii.copy()
    branch = branch.copy()
    drop = np.zeros(n, bool)
    seated = np.zeros(len(todo), bool)
    # tips closer than R to the lumen's end: back along the chain to R from it
    again = []
    for i, t in enumerate(todo):
        if np.isnan(f[i]):
            continue
        chain, last, s, R = t.chain, t.last, t.s, t.R
        D = s[: last + 1] + f[i] + bias[i]  # along the chain to the lumen's end
        if D[0] >= R:
            continue
        ok = D >= R
        if not ok.any():
            continue
        k = int(np.argmax(ok))
        w = (R - D[k - 1]) / max(D[k] - D[k - 1], 1e-12)
        if s[k - 1] + w * (s[k] - s[k - 1]) > t.limit:
            continue
        P = positions[chain]
        positions[chain[k - 1]] = P[k - 1] + w * (P[k] - P[k - 1])
        radii[chain[k - 1]] = R
        branch[chain[k - 1]] = -1
        drop[chain[: k - 1]] = True
        seated[i] = True
        chain, last = chain[k - 1 :], last - (k - 1)
        f[i] = np.nan
        if last >= 1:
            P = positions[chain]
            s = _arc(P)
            todo[i] = t._replace(chain=chain, last=last, s=s, u=_direction(P, s, t.back, last))
            again.append(i)
    if again:
        # measured again from where the pulled-back tips now lie, along their straightened axis
        f[again] = _lumen_ends(
            sampler,
            np.array([positions[todo[i].chain[0]] for i in again]),
            np.array([todo[i].u for i in again]),
            reach[again],
            step,
        )
    # tips more than R short of the lumen's end: run on straight
    new_pos, new_r, new_ri, new_b, new_e = [], [], [], [], []
    count = n
    for i, t in enumerate(todo):
        if np.isnan(f[i]):
            continue
        chain, R, u = t.chain, t.R, t.u
        e = f[i] + bias[i] - R
        if e <= 0.25 * h:
            continue
        k = max(1, int(round(e / h)))
        ids = np.arange(count, count + k)
        new_pos.append(positions[chain[0]] + u * (e * np.arange(1, k + 1) / k)[:, None])
        new_r.append(np.full(k, R))
        new_ri.append(np.full(k, r_ins[chain[0]]))
        b = np.full(k, branch[chain[1]])
        b[-1] = -1
        new_b.append(b)
        branch[chain[0]] = branch[chain[1]]
        new_e.append(np.stack([np.concatenate([[chain[0]], ids[:-1]]), ids], axis=1))
        count += k
        seated[i] = True
    if not seated.any():
        return positions, radii, r_ins, touching, branch, edges, 0
    m = count - n
    if m:
        positions = np.concatenate([positions, *new_pos])
        radii = np.concatenate([radii, *new_r])
        r_ins = np.concatenate([r_ins, *new_ri])
        touching = np.concatenate([touching, np.zeros(m, bool)])
        branch = np.concatenate([branch, *new_b])
        edges = np.concatenate([edges, *new_e])
    keep = np.concatenate([~drop, np.ones(m, bool)])
    index = np.cumsum(keep) - 1
    kept = keep[edges[:, 0]] & keep[edges[:, 1]]
    return (
        positions[keep],
        radii[keep],
        r_ins[keep],
        touching[keep],
        branch[keep],
        index[edges[kept]],
        int(seated.sum()),
    )


def extend_tips(
    positions, radii, r_ins, touching, branch, edges, deg, sampler, h, ray_kw, border_only=False
):
    """Prolong every free tip along its direction to where the lumen ends; with ``border_only``,
    only the tips whose lumen ends at the edge of the grid (the vessel leaves the volume).

    Returns the graph with the new nodes appended and the number of tips extended."""
    n = len(positions)
    tips = np.flatnonzero(deg == 1)
    if tips.size == 0:
        return positions, radii, r_ins, touching, branch, edges, 0
    # the neighbour of each tip
    nb = np.full(n, -1, np.int64)
    for a, b in edges:
        if deg[a] == 1:
            nb[a] = b
        if deg[b] == 1:
            nb[b] = a
    d = positions[tips] - positions[nb[tips]]
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    reach = ray_kw["reach"] * r_ins[tips] + ray_kw["reach_mm"]
    if border_only:
        # a tip is about a radius short of the end; the border may lie a little farther
        reach = reach + 2.0 * h
    ext, j, _ = _crossings(sampler, positions[tips], d, reach, ray_kw["step_mm"] * 0.5)
    if border_only:
        # the lumen ends at the grid's edge where the 0.5 crossing lies beyond the outermost
        # voxel centres (outside the grid the field reads 0)
        at_edge = sampler.beyond_centres(positions[tips] + d * ext[:, None]) & (j > 0)
        ext = np.where(at_edge, ext, 0.0)
    new_pos, new_r, new_ri, new_t, new_b, new_e = [], [], [], [], [], []
    count = n
    done = 0
    for t_i, tip in enumerate(tips):
        e = ext[t_i]
        if e < 0.25 * h:
            continue
        k = max(1, int(round(e / h)))
        # the old tip becomes interior; k new nodes end at the lumen's end
        offs = e * np.arange(1, k + 1) / k
        pts = positions[tip] + d[t_i] * offs[:, None]
        ids = np.arange(count, count + k)
        chain = np.concatenate([[tip], ids])
        new_pos.append(pts)
        new_r.append(np.full(k, radii[tip]))
        new_ri.append(np.full(k, r_ins[tip]))
        new_t.append(np.zeros(k, bool))
        new_b.append(np.full(k, branch[nb[tip]]))
        new_e.append(np.stack([chain[:-1], chain[1:]], axis=1))
        count += k
        done += 1
    if not done:
        return positions, radii, r_ins, touching, branch, edges, 0
    return (
        np.concatenate([positions, *new_pos]),
        np.concatenate([radii, *new_r]),
        np.concatenate([r_ins, *new_ri]),
        np.concatenate([touching, *new_t]),
        np.concatenate([branch, *new_b]),
        np.concatenate([edges, *new_e]),
        done,
    )
