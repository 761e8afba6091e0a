"""Joining the centerlines of a label map where a vessel runs on from one label into another.

Segmentation backbones often split one vessel tree into labels by segment (TotalSegmentator's
aorta and iliac arteries, the circle-of-Willis segments of TopCoW, a tree labelled by branch).
:func:`~vesseltree.extract` extracts every label on its own, so that labels that only touch
(artery and vein, left and right) never fuse; each label's centerline then stops about one radius
short of the boundary to the next label, and the tree falls apart into its labels.

:func:`label_joins` looks ahead of every tip of every label's centerline, at the label's
boundary with other labels within about three radii (the vessel's end cap), and keeps the faces
that face forward: the label's outward normal, from its indicator smoothed over about a voxel so
that a staircase does not matter, within 60 degrees of the tip's direction. Where their area
(times the cosine) reaches a quarter of the tip's cross-section, the vessel goes on in the other
label(s), and the tip is joined to the centerline of the label that takes the most: to that
label's tip where one lies about as near (the vessel changes label), else to its nearest node (a
labelled branch leaves a vessel there). A vessel that merely lies alongside another one meets it with
normals across its direction, and a free end meets only background, so they stay apart. Joins at one meeting point never close a cycle among
themselves or with a label's centerline close by (three labels meeting at a fork give one
junction, not a triangle); long cycles through the labels, such as the circle of Willis, are kept.

A label's centerline stops about a radius short of its boundary, so a join bridges a gap of
about two radii with a straight edge: fine for a 1 mm vessel, several millimetres off the axis
where a 10 mm aorta turns into an iliac artery. :func:`joined_groups` therefore gathers the labels
that joins connect, and :func:`group_mask` masks each group together to be extracted again as
one vessel tree: open inside the end caps where a vessel runs on into the next label, sealed by a
one-voxel seam wherever else two of its labels touch (which keeps them apart as before).
:func:`node_labels` gives each node the label of the voxels it lies in.
"""

from __future__ import annotations

import heapq

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ..graph import VesselGraph
from ..volume import voxel_to_world
from .cleanup import pair_graph

__all__ = ["label_joins", "joined_groups", "group_mask", "node_labels"]


def _tip_frames(graph: VesselGraph, back_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tips of ``graph``, their outward unit directions and their radii.

    The radius is the largest within three radii (at least ``back_mm``) of the tip along its
    branch, as a tip's own radius shrinks in its cap. The direction is that of the branch from
    there to one radius before the tip, so that a centerline curling into the cap (as thinning
    may leave it) does not turn it.
    """
    tips = graph.endpoints
    dirs = np.zeros((len(tips), 3))
    rad = np.asarray(graph.radii[tips], np.float64).copy()
    adj, deg, pos = graph.adjacency, graph.degrees, graph.positions
    for n, t in enumerate(tips):
        path, arc = [int(t)], [0.0]
        prev, cur = -1, int(t)
        while arc[-1] < max(back_mm, 3.0 * rad[n]):
            nxt = [int(x) for x in adj.indices[adj.indptr[cur] : adj.indptr[cur + 1]] if x != prev]
            if not nxt:
                break
            arc.append(arc[-1] + float(np.linalg.norm(pos[nxt[0]] - pos[cur])))
            prev, cur = cur, nxt[0]
            path.append(cur)
            rad[n] = max(rad[n], float(graph.radii[cur]))
            if deg[cur] != 2:
                break
        near = path[min(int(np.searchsorted(arc, rad[n])), len(path) - 2)] if len(path) > 1 else t
        d = pos[near] - pos[path[-1]]
        norm = float(np.linalg.norm(d))
        dirs[n] = d / norm if norm > 0 else 0.0
    return tips, dirs, rad


def _face_areas(lin: np.ndarray) -> list[float]:
    """Area (mm^2) of a voxel face across each voxel axis, for the voxel -> world matrix ``lin``."""
    return [
        float(np.linalg.norm(np.cross(lin[:, (k + 1) % 3], lin[:, (k + 2) % 3]))) for k in range(3)
    ]


def _cap_contacts(
    data: np.ndarray,
    lin: np.ndarray,
    inv: np.ndarray,
    origin: np.ndarray,
    label: int,
    centre: np.ndarray,
    u: np.ndarray,
    reach: float,
    min_cos: float,
    face_areas: list[float],
) -> dict[int, float]:
    """Forward-facing boundary area of ``label`` within ``reach`` of ``centre``, per other label.

    The boundary faces between ``label`` and another label count where the label's outward
    normal, taken from its indicator smoothed over about a voxel (so that a staircase does not
    matter), makes a cosine of at least ``min_cos`` with ``u``. Each adds its area times that
    cosine (mm^2): about the vessel's cross-section where it runs on into the other label, and
    nearly nothing where the other label only lies alongside (normals across ``u``).
    ``face_areas`` are those of :func:`_face_areas` for ``lin`` (the same for every tip).
    """
    c_vox = inv @ (centre - origin)
    half = reach * np.linalg.norm(inv, axis=1) + 2.0  # voxels per axis covering the ball
    lo = np.floor(c_vox - half).astype(np.int64)
    hi = np.ceil(c_vox + half).astype(np.int64) + 1
    shape = np.asarray(data.shape)
    a, b = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(b <= a):
        return {}
    block = np.zeros(tuple(hi - lo), data.dtype)  # outside the grid reads as background
    block[tuple(slice(x - y, z - y) for x, y, z in zip(a, lo, b))] = data[
        tuple(slice(x, z) for x, z in zip(a, b))
    ]
    own = block == label
    if not np.any(block[~own]):
        return {}  # no other label nearby: no face can count (the loop below finds none)
    smooth = ndi.gaussian_filter(own.astype(np.float32), 1.0, mode="constant")
    # outward normal in world space: minus the indicator's gradient, through the inverse transpose
    grad = np.stack(np.gradient(smooth), axis=-1)
    out: dict[int, float] = {}
    for k in range(3):
        first = own[tuple(slice(0, -1) if ax == k else slice(None) for ax in range(3))]
        second = own[tuple(slice(1, None) if ax == k else slice(None) for ax in range(3))]
        face = first != second
        if not face.any():
            continue
        ijk = np.argwhere(face)
        nxt = ijk.copy()
        nxt[:, k] += 1
        beyond = np.where(first[tuple(ijk.T)], block[tuple(nxt.T)], block[tuple(ijk.T)])
        keep = beyond != 0
        if not keep.any():
            continue
        ijk, nxt, beyond = ijk[keep], nxt[keep], beyond[keep].astype(np.int64)
        mid = (ijk + lo).astype(np.float64)
        mid[:, k] += 0.5
        off = mid @ lin.T + origin - centre
        near = np.einsum("ij,ij->i", off, off) <= reach * reach
        if not near.any():
            continue
        ijk, nxt, beyond = ijk[near], nxt[near], beyond[near]
        g = 0.5 * (grad[tuple(ijk.T)] + grad[tuple(nxt.T)]) @ inv  # world gradient, (F, 3)
        norm = np.linalg.norm(g, axis=1)
        cos = -(g @ u) / np.maximum(norm, 1e-12)
        area = face_areas[k]
        ok = (cos >= min_cos) & (norm > 0)
        for lbl in np.unique(beyond[ok]):
            sel = ok & (beyond == lbl)
            out[int(lbl)] = out.get(int(lbl), 0.0) + area * float(cos[sel].sum())
    return out


class _Linked:
    """The merged graph of the per-label centerlines and the joins so far, for short-path tests."""

    def __init__(self, parts: list[tuple[int, VesselGraph]], offsets: np.ndarray):
        self.pos = np.concatenate([g.positions for _, g in parts])
        self.csr = [(g.adjacency, int(o)) for (_, g), o in zip(parts, offsets[:-1])]
        self.owner = np.repeat(np.arange(len(parts)), [g.n_nodes for _, g in parts])
        self.extra: dict[int, list[int]] = {}

    def _neighbours(self, x: int) -> list[int]:
        adj, off = self.csr[self.owner[x]]
        local = x - off
        own = (adj.indices[adj.indptr[local] : adj.indptr[local + 1]] + off).tolist()
        return own + self.extra.get(x, [])

    def add(self, a: int, b: int) -> None:
        self.extra.setdefault(a, []).append(b)
        self.extra.setdefault(b, []).append(a)

    def within(self, a: int, b: int, limit: float) -> bool:
        """Whether a path of length <= ``limit`` (mm) joins ``a`` and ``b``."""
        best = {a: 0.0}
        heap = [(0.0, a)]
        while heap:
            d, x = heapq.heappop(heap)
            if x == b:
                return True
            if d > best.get(x, np.inf):
                continue
            for y in self._neighbours(x):
                dy = d + float(np.linalg.norm(self.pos[y] - self.pos[x]))
                if dy <= limit and dy < best.get(y, np.inf):
                    best[y] = dy
                    heapq.heappush(heap, (dy, y))
        return False


def label_joins(
    parts: list[tuple[int, VesselGraph]],
    data: np.ndarray,
    affine: np.ndarray,
    *,
    min_cover: float = 0.25,
    min_cos: float = 0.5,
    contacts: list | None = None,
) -> list[dict]:
    """Edges that join per-label centerlines where a vessel runs on into another label.

    Parameters
    ----------
    parts : list of (label, VesselGraph)
        The per-label graphs in world mm, in the order they are merged (node ``i`` of part ``p``
        becomes node ``offset[p] + i``).
    data : (I, J, K) integer ndarray
        The label map they were extracted from.
    affine : (4, 4) ndarray
        Its voxel -> world mm affine.
    min_cover : float
        Smallest forward-facing boundary area towards other labels ahead of a tip (within
        about three radii), as a share of the tip's cross-section, for the tip to be joined.
        Where a vessel runs on into another label this is about 1 (a fork between labels
        splits it between its branches); a free end borders only background (0).
    min_cos : float
        A boundary face faces forward where the label's smoothed outward normal makes at least
        this cosine with the tip's direction; the side walls of a vessel lying alongside
        another one face across (cosine near 0) and do not count.
    contacts : list, optional
        Filled with a ball ``(centre, radius)`` (world mm) around every place where a vessel
        runs on from one label into another, joined or not (a join that would close a small
        loop is dropped, but the vessel still runs on there): the end cap that was measured.

    Returns
    -------
    list of dict
        One per join, strongest cover first: ``labels`` (own, other), ``nodes`` (tip, node) in
        the merged numbering, ``kind`` ("end-to-end" when the node is a tip of the other label,
        else "end-to-side"), ``cover`` (that area over the tip's cross-section).
    """
    affine = np.asarray(affine, np.float64)
    lin, origin = affine[:3, :3], affine[:3, 3]
    inv = np.linalg.inv(lin)
    voxel = float(np.linalg.norm(lin, axis=0).max())
    areas = _face_areas(lin)  # the same for every tip
    index = {lbl: p for p, (lbl, _) in enumerate(parts)}
    offsets = np.cumsum([0] + [g.n_nodes for _, g in parts])
    trees = [cKDTree(g.positions) if g.n_nodes else None for _, g in parts]
    tip_sets = [set(g.endpoints.tolist()) for _, g in parts]
    candidates = []
    for p, (lbl, g) in enumerate(parts):
        tips, dirs, rad = _tip_frames(g, back_mm=2.0 * voxel)
        for t, u, r in zip(tips, dirs, rad):
            if not np.any(u):
                continue
            # the cap seen from one radius behind the tip (a tip may reach the boundary itself)
            base = g.positions[t] - r * u
            reach = 3.0 * r + 2.0 * voxel
            contact = _cap_contacts(data, lin, inv, origin, lbl, base, u, reach, min_cos, areas)
            # every other label counts towards the cover (a label too small to leave a
            # centerline may sit in between); joins go to the labels with a centerline that
            # take a fair part of it (at a fork between labels, each branch)
            area = np.pi * r * r
            if sum(contact.values()) < min_cover * area:
                continue
            runs_on = False
            for k, f in contact.items():
                if k not in index or f < 0.5 * min_cover * area or trees[index[k]] is None:
                    continue
                q = index[k]
                other = parts[q][1]
                dist, j = trees[q].query(g.positions[t])
                if dist > 2.0 * r + 2.0 * voxel + float(other.radii[j]):
                    continue
                # the other label's own tip, where one lies about as near (the vessel changes
                # label), else its nearest node (a side branch leaves it there)
                ends = other.endpoints
                if len(ends):
                    de = np.linalg.norm(other.positions[ends] - g.positions[t], axis=1)
                    if de.min() <= dist + r:
                        j = int(ends[np.argmin(de)])
                near = 2.0 * (r + float(other.radii[j]))
                candidates.append((f / area, p, int(t), q, int(j), near))
                runs_on = True
            if runs_on and contacts is not None:
                contacts.append((base, reach))
    # strongest caps first; a join whose two nodes are already linked nearby (through the
    # labels' centerlines and the joins accepted so far) would close a small loop and is dropped
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    linked = _Linked(parts, offsets)
    joins: list[dict] = []
    for cover, p, t, q, j, near in candidates:
        a, b = int(offsets[p] + t), int(offsets[q] + j)
        if linked.within(a, b, 3.0 * near + 4.0 * voxel):
            continue
        linked.add(a, b)
        joins.append(
            {
                "labels": (parts[p][0], parts[q][0]),
                "nodes": (a, b),
                "kind": "end-to-end" if j in tip_sets[q] else "end-to-side",
                "cover": float(cover),
            }
        )
    return joins


def joined_groups(labels: list[int], joins: list[dict]) -> list[list[int]]:
    """The labels that joins connect, as groups (each sorted; groups of two labels or more)."""
    from scipy.sparse.csgraph import connected_components

    labels = sorted(int(c) for c in labels)
    at = {c: i for i, c in enumerate(labels)}
    pairs = np.array([[at[int(a)], at[int(b)]] for a, b in (j["labels"] for j in joins)])
    pairs = pairs.reshape(-1, 2)
    link = pair_graph(pairs[:, 0], pairs[:, 1], len(labels), symmetric=True)
    _, comp = connected_components(link, directed=False)
    groups = [[labels[i] for i in np.flatnonzero(comp == c)] for c in np.unique(comp)]
    return [g for g in groups if len(g) > 1]


def group_mask(
    crop: np.ndarray, members: list[int], contacts: list, affine
) -> tuple[np.ndarray, np.ndarray]:
    """Mask of a group of joined labels, open where a vessel runs on from one into another and
    with a seam wherever two of them only touch.

    Where a vessel runs on into the next label (the balls ``(centre, radius)`` of
    ``contacts``, from :func:`label_joins`), the labels are masked together, so that the
    centerline runs on through their boundary. Elsewhere, two labels that touch (vessels lying
    side by side, or an artery along a vein that one stray join put in the same group) are
    kept apart as when extracted one by one: the voxels of the lower of the two labels that are
    26-neighbours of the other are left out of the mask. ``affine``: voxel -> world of ``crop``.

    Returns the mask and the group-local index (1..K, 0 outside the group) of every voxel.
    """
    members = sorted(int(m) for m in members)
    k = len(members)
    top = int(max(members[-1], int(crop.max()) if crop.size else 0))
    # the smallest index type: loc and its padded copy are as large as the group's box
    kind = np.uint8 if k < 1 << 8 else np.uint16 if k < 1 << 16 else np.int32
    lut = np.zeros(top + 1, kind)
    lut[members] = np.arange(1, k + 1)
    loc = lut[crop]
    mask = loc > 0
    if k < 2:
        return mask, loc
    padded = np.pad(loc, 1)
    flat = padded.ravel()
    idx = np.flatnonzero(flat)
    own = flat[idx]
    stride = np.array(padded.strides) // padded.itemsize
    drop = np.zeros(idx.size, bool)
    for off in np.ndindex(3, 3, 3):
        if off == (1, 1, 1):
            continue
        nb = flat[idx + int(np.dot(np.array(off) - 1, stride))]
        drop |= nb > own  # a higher label of the group touches this voxel
    gone = np.stack(np.unravel_index(idx[drop], padded.shape), axis=1) - 1
    if len(gone) and contacts:
        # the seam stays open inside the end caps where a vessel runs on into the next label
        tree = cKDTree(voxel_to_world(np.asarray(affine, np.float64), gone))
        open_ = np.zeros(len(gone), bool)
        for centre, radius in contacts:
            open_[tree.query_ball_point(np.asarray(centre, np.float64), float(radius))] = True
        gone = gone[~open_]
    mask[tuple(gone.T)] = False
    return mask, loc


def node_labels(positions: np.ndarray, loc: np.ndarray, members: list[int], affine) -> np.ndarray:
    """Label of each node: that of the nearest voxel of the group (world distance)."""
    members = sorted(int(m) for m in members)
    ijk = np.argwhere(loc > 0)
    if len(ijk) == 0 or len(positions) == 0:
        return np.zeros(len(positions), np.int64)
    world = voxel_to_world(np.asarray(affine, np.float64), ijk)
    _, near = cKDTree(world).query(np.asarray(positions, np.float64))
    return np.asarray(members, np.int64)[loc[tuple(ijk[near].T)] - 1]
