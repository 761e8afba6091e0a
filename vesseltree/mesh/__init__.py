"""Watertight, printable vessel surfaces: from a graph, from a mask; print checks; export.

Units are millimetres. The main entry points:

- :func:`from_graph`: the union of round cones (one per edge), block-sparse narrow-band distance
  field + marching cubes;
- :func:`from_mask`: marching cubes through a volume's affine, windowed-sinc smoothing;
- :func:`hollow`, :func:`open_ends`: a wall around the lumen, vessel ends opened by planar cuts;
- :func:`check_printable`: watertight, winding, normals, bodies, genus, self-intersections, wall;
- :func:`export`: STL (binary), PLY, OBJ, VTP, 3MF, atomically.
"""

from __future__ import annotations

from .check import PrintReport, check_printable, count_self_intersections
from .export import MESH_SUFFIXES, export
from .graph_mesh import (
    close_contacts,
    default_voxel_size,
    exact_distance,
    expected_topology,
    from_graph,
    graph_cones,
    hollow,
    min_resolvable_radius,
    open_ends,
)
from .mask_mesh import from_mask

__all__ = [
    "from_graph",
    "from_mask",
    "hollow",
    "open_ends",
    "check_printable",
    "PrintReport",
    "count_self_intersections",
    "export",
    "MESH_SUFFIXES",
    "default_voxel_size",
    "graph_cones",
    "exact_distance",
    "min_resolvable_radius",
    "close_contacts",
    "expected_topology",
]
