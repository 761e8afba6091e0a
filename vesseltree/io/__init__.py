"""Reading and writing: volumes with their affine, graph formats, and the real-data readers.

Graph formats (chosen by suffix in :func:`read_graph` / :func:`write_graph`):

=========  ==========================================================================
``.npz``   canonical: every field, exact (compressed numpy archive)
``.json``  every field, exact, human-readable
``.vtp``   VTK PolyData: one line cell per edge, ``radius`` and node data as point data
``.swc``   tree/forest text format: positions, radii, parents (+ affine/meta in header)
``.graphml`` networkx-compatible XML with positions/radii/data as attributes
=========  ==========================================================================

Volume formats: NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``), NRRD (``.nrrd``,
``.nhdr``). All are returned in the RAS world frame that NIfTI/nibabel use.
Every writer is atomic: a temporary file beside the target, renamed over it when complete.
"""

from __future__ import annotations

from .convert import from_networkx, from_pyg, from_pyvista, to_networkx, to_pyg, to_pyvista
from .datasets import (
    read_tubetk_centerlines,
    read_vesselvae_tree,
    read_vmtk_centerlines,
    vesselvae_model_id,
)
from .formats import GRAPH_SUFFIXES, read_graph, write_graph
from .volumes import VOLUME_SUFFIXES, read_volume, write_volume

__all__ = [
    "read_graph",
    "write_graph",
    "GRAPH_SUFFIXES",
    "read_volume",
    "write_volume",
    "VOLUME_SUFFIXES",
    "to_networkx",
    "from_networkx",
    "to_pyg",
    "from_pyg",
    "to_pyvista",
    "from_pyvista",
    "read_tubetk_centerlines",
    "read_vmtk_centerlines",
    "read_vesselvae_tree",
    "vesselvae_model_id",
]
