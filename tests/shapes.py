"""Small hand-built graphs shared by the tests."""

from __future__ import annotations

import numpy as np

from vesseltree import VesselGraph


def y_tree(
    parent_radii=(1.2, 1.15, 1.1), child_radius: float = 0.8, spread: float = 1.6, rise: float = 2.0
) -> VesselGraph:
    """A rooted Y along z with tapering branches of three nodes each (root at the origin)."""
    pts = [[0, 0, 0], [0, 0, 3], [0, 0, 6]]
    rad = list(parent_radii)
    edges = [[0, 1], [1, 2]]
    for sign in (1, -1):
        prev = 2
        for k in range(1, 4):
            pts.append([sign * spread * k, 0.3 * k, 6 + rise * k])
            rad.append(child_radius - 0.05 * k)
            edges.append([prev, len(pts) - 1])
            prev = len(pts) - 1
    return VesselGraph(np.array(pts, float), rad, edges, root=0)
