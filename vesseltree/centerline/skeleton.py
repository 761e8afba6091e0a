"""Curve skeleton of a cleaned mask, component by component, and the inscribed (EDT) radius.

Thinning is the distance-ordered, topology-preserving thinning of :mod:`.thinning`, run on each
component's bounding box so memory follows the component, not the grid. The skeleton sits on voxel
centres; :mod:`.refine` moves it to the centre of the lumen afterwards.

The inscribed radius of a point is its distance (world mm, through the affine, so any spacing,
rotation or shear is exact) to the nearest background voxel centre: the value of an exact
Euclidean distance transform, but computed only where it is needed, with a k-d tree of the
background voxels that touch the foreground.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.spatial import cKDTree

from .cleanup import SparseMask, face_neighbours, unique_ints
from .thinning import thin, world_parity

__all__ = ["skeletonize_components", "BoundaryTree"]

log = logging.getLogger(__name__)


def skeletonize_components(
    fg: SparseMask,
    labels: np.ndarray,
    n: int,
    dist: np.ndarray,
    band_mm: float,
    axes: np.ndarray | None = None,
) -> np.ndarray:
    """Skeleton voxels of every component.

    Parameters
    ----------
    fg : SparseMask
        Cleaned foreground.
    labels : (F,) int64 ndarray
        Component of each foreground voxel, 0..n-1.
    n : int
        Number of components.
    dist : (F,) float ndarray, mm
        Distance of each foreground voxel to the background (the thinning order).
    band_mm : float
        Width of a distance band peeled at once.
    axes : (3, 3) ndarray, optional
        The affine's linear part: the thinning then numbers its sub-fields by world axes
        (:func:`.thinning.world_parity`), so the skeleton does not depend on the storage order.

    Returns
    -------
    (S, 3) int64 ndarray
        Voxel indices of the skeleton, sorted by flat index.
    """
    ijk = fg.ijk
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n + 1))
    out = []
    for c in range(n):
        rows = order[bounds[c] : bounds[c + 1]]
        pts = ijk[rows]
        if len(pts) == 1:
            out.append(pts)
            continue
        lo = pts.min(0) - 1
        shape = tuple(pts.max(0) - lo + 2)
        box = np.zeros(shape, dtype=bool)
        dbox = np.zeros(shape, dtype=np.float32)
        local = pts - lo
        box[local[:, 0], local[:, 1], local[:, 2]] = True
        dbox[local[:, 0], local[:, 1], local[:, 2]] = dist[rows]
        parity = None if axes is None else world_parity(shape, axes)
        got = np.argwhere(thin(box, dbox, band_mm, parity))
        out.append(got + lo)
    skel = np.concatenate(out).astype(np.int64)
    flat = np.ravel_multi_index(tuple(skel.T), fg.shape)
    return skel[np.argsort(flat)]


class BoundaryTree:
    """Distance (mm) from world points to the nearest background voxel centre.

    Built from the background voxels that share a face with the foreground; the nearest
    background voxel of any foreground point is one of them.

    Parameters
    ----------
    mask : (I, J, K) bool ndarray
        Cleaned foreground.
    fg : SparseMask
        The same foreground, sparse.
    affine : (4, 4) ndarray
        Voxel -> world mm.
    """

    def __init__(self, mask: np.ndarray, fg: SparseMask, affine: np.ndarray):
        inside, outside = face_neighbours(fg)
        # background before the duplicates go: a sort of far fewer values
        f = unique_ints(inside[~mask.ravel()[inside]])
        bg = np.stack(np.unravel_index(f, fg.shape), 1)
        # voxels just outside the grid count as background too (a vessel cut by the image border
        # then ends there rather than looking infinitely thick)
        outside = np.unique(outside, axis=0)
        pts = np.concatenate([bg, outside]).astype(np.float64)
        self.tree = (
            cKDTree(
                pts @ affine[:3, :3].T + affine[:3, 3],
                leafsize=64,
                balanced_tree=False,
                compact_nodes=False,
            )
            if len(pts)
            else None
        )

    def distance(self, xyz: np.ndarray) -> np.ndarray:
        """(P,) distance in mm from each world point (P, 3) to the nearest background voxel centre."""
        if self.tree is None:
            return np.full(len(xyz), np.inf)
        d, _ = self.tree.query(np.asarray(xyz, dtype=np.float64), k=1)
        return d
