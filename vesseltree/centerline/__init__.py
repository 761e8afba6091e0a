"""Mask -> centerline graph.

:func:`extract_graph` turns a binary vessel mask or a probability map (a :class:`~vesseltree.Volume`
with any affine) into a :class:`~vesseltree.VesselGraph` in world millimetres: clean-up by physical
size, per-component thinning, a branch graph with junction clusters collapsed, spur pruning and
noise-loop cutting relative to the local radius, and sub-voxel refinement of every node on its
cross-section, with the radius taken from the cross-section area. :class:`ExtractionConfig` holds
the settings.
"""

from __future__ import annotations

from .extract import ExtractionConfig, extract_graph

__all__ = ["ExtractionConfig", "extract_graph"]
