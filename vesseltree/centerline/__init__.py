"""Mask -> centerline graph.

:func:`extract_graph` turns a binary vessel mask or a probability map (a :class:`~vesseltree.Volume`
with any affine) into a :class:`~vesseltree.VesselGraph` in world millimetres: clean-up by physical
size, per-component thinning, a branch graph with junction clusters collapsed, spur pruning and
noise-loop cutting relative to the local radius, and sub-voxel refinement of every node on its
cross-section, with the radius taken from the cross-section area, and every free tip seated where
its ball reaches the end of the lumen (:func:`seat_graph_tips` does that to any centerline of a
mask). :class:`ExtractionConfig` holds the settings.

:func:`extract` (also ``vesseltree.extract``) is the front door: any source (file, Volume,
nibabel image, array, tensor), masks, label maps and probability maps, an optional backbone,
per-label graphs and rooted trees; the labels of a label map are extracted apart and their
centerlines joined where a vessel runs on from one label into the next
(:mod:`~vesseltree.centerline.labels`). :func:`branch_table` lists the branches of a graph.
:func:`extract_batch` runs :func:`extract` over many files (or folders) into one output folder,
with a summary of every case; a case that fails is recorded and the others go on.
"""

from __future__ import annotations

from .api import extract, load_source, to_forest
from .batch import extract_batch
from .extract import ExtractionConfig, extract_graph, seat_graph_tips, with_wall_radii
from .table import branch_table

__all__ = [
    "ExtractionConfig",
    "extract_graph",
    "seat_graph_tips",
    "with_wall_radii",
    "extract",
    "extract_batch",
    "load_source",
    "to_forest",
    "branch_table",
]
