"""Synthetic vessel data with exact truth: trees, phantoms, masks and images.

- :func:`random_tree` grows seeded 3D vessel trees with physiological statistics (power-law radius
  splits, bifurcation angles, tortuosity, taper, no colliding tubes); :class:`TreeConfig` holds
  the parameters and :data:`PRESETS` the coronary, brain and aorta sets.
- :func:`cylinder`, :func:`y_bifurcation`, :func:`helix`, :func:`loop`, :func:`touching_tubes` and
  :func:`forest` are small analytic phantoms.
- :func:`voxelize` draws any graph as the exact union of round cones on any voxel grid.
- :func:`simulate_image` renders a graph or a mask as a CT-like or MRA-like image.

Every length is in millimetres, in world coordinates.
"""

from __future__ import annotations

from .image import simulate_image
from .phantoms import cylinder, forest, helix, loop, touching_tubes, y_bifurcation
from .trees import PRESETS, TreeConfig, random_tree
from .voxelize import voxelize

__all__ = [
    "random_tree",
    "TreeConfig",
    "PRESETS",
    "voxelize",
    "simulate_image",
    "cylinder",
    "y_bifurcation",
    "helix",
    "loop",
    "touching_tubes",
    "forest",
]
