"""Scoring of DeformCL (with and without the cascade) against truth, shared by the benchmarks."""

from __future__ import annotations

import time

import numpy as np

from ..graph import VesselGraph
from ..metrics import centerline_scores
from ..metrics.volumes import volume_scores
from ..volume import Volume

__all__ = ["score_prediction", "evaluate_case", "crop_graph", "error_budget"]


def crop_graph(graph: VesselGraph, affine, lo, hi) -> VesselGraph:
    """The part of ``graph`` whose nodes fall in the voxel box ``lo <= ijk < hi`` of ``affine``."""
    ijk = graph.voxel_positions(affine)
    keep = np.all((ijk >= np.asarray(lo) - 0.5) & (ijk < np.asarray(hi) - 0.5), axis=1)
    return graph.subgraph(keep)


def error_budget(
    graph: VesselGraph, truth_graph: VesselGraph, truth_mask: Volume, *, tolerance_mm: float = 1.0
) -> dict[str, float]:
    """Where the centerline F1 is lost: shares of predicted and of true length, by cause.

    ``fp_offset``: predicted length ``tolerance_mm``-2 tolerances from the truth (a position
    error); ``fp_far_in_mask`` / ``fp_far_out_mask``: farther, inside / outside the true mask
    dilated by one voxel (an unannotated vessel / a false vessel); ``fn_offset`` and ``fn_far``:
    the same for true length (position error / missed branch). Fractions of each graph's length
    (0.1 mm samples).
    """
    from scipy.ndimage import binary_dilation
    from scipy.spatial import cKDTree

    from ..metrics import sample_graph
    from ..volume import world_to_voxel

    if not graph.n_nodes or not truth_graph.n_nodes:
        return {}
    pp, _ = sample_graph(graph, 0.1)
    tp, _ = sample_graph(truth_graph, 0.1)
    d_pt = cKDTree(tp).query(pp)[0]
    d_tp = cKDTree(pp).query(tp)[0]
    m = binary_dilation(np.asarray(truth_mask.data) > 0)
    ijk = np.rint(world_to_voxel(truth_mask.affine, pp)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(m.shape)), axis=1)
    in_mask = np.zeros(len(pp), bool)
    in_mask[inside] = m[tuple(ijk[inside].T)]
    t, t2 = tolerance_mm, 2 * tolerance_mm
    return {
        "fp_offset": float(np.mean((d_pt > t) & (d_pt <= t2))),
        "fp_far_in_mask": float(np.mean((d_pt > t2) & in_mask)),
        "fp_far_out_mask": float(np.mean((d_pt > t2) & ~in_mask)),
        "fn_offset": float(np.mean((d_tp > t) & (d_tp <= t2))),
        "fn_far": float(np.mean(d_tp > t2)),
    }


def score_prediction(
    graph: VesselGraph,
    mask: Volume,
    truth_graph: VesselGraph,
    truth_mask,
    *,
    tolerance_mm: float = 1.0,
) -> dict[str, float]:
    """Centerline scores at ``tolerance_mm`` (F1, precision, recall, radius MAE) and mask scores."""
    row: dict[str, float] = {}
    if graph.n_nodes and truth_graph.n_nodes:
        cs = centerline_scores(graph, truth_graph, tolerances=(tolerance_mm,))
        t = f"{tolerance_mm:g}"
        row.update(
            f1=cs[f"f1@{t}"],
            precision=cs[f"precision@{t}"],
            recall=cs[f"recall@{t}"],
            radius_mae=cs["radius_mae"],
            mean_dist=cs["mean_pred_to_truth"],
        )
    else:
        row.update(
            f1=0.0, precision=0.0, recall=0.0, radius_mae=float("nan"), mean_dist=float("nan")
        )
    row.update(volume_scores(mask, truth_mask))
    return row


def evaluate_case(model, image: Volume, truth_graph: VesselGraph, truth_mask, *, tolerance_mm=1.0):
    """Rows ``{"unet": {...}, "deformcl": {...}}`` of scores and seconds for one image."""
    t0 = time.perf_counter()
    out = model.predict_both(image)
    total = time.perf_counter() - t0
    secs = out["seconds"]
    rows = {}
    for key in ("unet", "deformcl"):
        g, m = out[key]
        row = score_prediction(g, m, truth_graph, truth_mask, tolerance_mm=tolerance_mm)
        row.update(error_budget(g, truth_graph, truth_mask, tolerance_mm=tolerance_mm))
        t_unet = secs["unet"] + secs["template"]
        row["seconds"] = total if key == "deformcl" else t_unet
        row["nodes"] = g.n_nodes
        rows[key] = row
    return rows
