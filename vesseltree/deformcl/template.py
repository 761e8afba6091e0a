"""Initial centerline trees ("templates") from masks, and their conversion to tensors.

The template is the whole tree :func:`vesseltree.centerline.extract_graph` finds in a mask or
probability map (every branch, junctions shared), with nodes about ``node_step_vox`` voxels apart.
A mask whose skeleton is degenerate (empty, or no edge at all) gives ``None`` and a warning; the
caller then skips the refinement.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..centerline import extract_graph
from ..errors import VesselTreeError
from ..graph import VesselGraph
from ..volume import Volume, world_to_voxel

__all__ = ["template_from_mask", "graph_to_arrays", "arrays_to_graph"]

log = logging.getLogger(__name__)


def template_from_mask(
    volume: Volume, *, node_step_vox: float = 1.5, warn: bool = True
) -> VesselGraph | None:
    """Centerline tree of a mask or probability Volume, or ``None`` (with a warning) if degenerate.

    The extractor's side-by-side separation is off here: on the UNet's probability maps a thick
    vessel predicted with a notch or a dark core looks like two fused lumens, and moving the
    template into one of them puts it off the vessel's axis, which the cascade (trained on
    templates without that step) does not undo (synthetic CT F1@1mm: UNet 0.840 -> 0.858,
    cascade 0.813 -> 0.864 with it off).

    Tips are left where thinning ends them (``seat_tips=False``): the shipped cascade and its
    mask head were trained on such templates, and fed seated ones (a radius shorter at thick
    ends) the conditioned mask lost vessel ends (synthetic CT clDice 0.846 -> 0.718).
    :meth:`DeformCL.predict_both` seats the tips of its output graphs afterwards
    (:func:`~vesseltree.centerline.seat_graph_tips`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            graph = extract_graph(
                volume,
                on_empty="warn",
                node_spacing=node_step_vox,
                separate_touching=False,
                seat_tips=False,
            )
        except (VesselTreeError, ValueError, RuntimeError) as exc:
            # nothing left after clean-up, or a numerically degenerate prediction: no refinement
            log.warning(
                "template: extraction failed (%s: %s); no refinement", type(exc).__name__, exc
            )
            return None
    if graph.n_nodes < 2 or graph.n_edges == 0:
        if not warn:
            return None
        warnings.warn(
            f"deformcl template: degenerate skeleton ({graph.n_nodes} nodes, {graph.n_edges} "
            "edges); the centerline is returned without refinement",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return graph


def graph_to_arrays(graph: VesselGraph, affine: np.ndarray):
    """(voxel positions (N, 3) float32, radii (N,) float32 mm, edges (E, 2) int64) in ``affine``'s grid."""
    pos = world_to_voxel(affine, graph.positions).astype(np.float32)
    return pos, graph.radii.astype(np.float32), graph.edges.astype(np.int64)


def arrays_to_graph(
    pos_vox, radii, edges, affine, *, template: VesselGraph | None = None, meta=None
):
    """A VesselGraph in world mm from voxel positions, keeping a template's node/edge data."""
    from ..volume import voxel_to_world

    pos = voxel_to_world(affine, np.asarray(pos_vox, dtype=np.float64))
    r = np.maximum(np.asarray(radii, dtype=np.float64), 1e-3)
    kw = {}
    if template is not None:
        kw = {
            "root": template.root,
            "node_data": dict(template.node_data),
            "edge_data": dict(template.edge_data),
        }
    return VesselGraph(pos, r, np.asarray(edges, dtype=np.int64), affine=affine, meta=meta, **kw)
