"""Scoring of DeformCL (with and without the cascade) against truth, shared by the benchmarks."""

from __future__ import annotations

import time

import numpy as np

from ..graph import VesselGraph
from ..metrics import centerline_scores
from ..metrics.volumes import volume_scores
from ..volume import Volume

__all__ = ["score_prediction", "evaluate_case", "crop_graph"]


def crop_graph(graph: VesselGraph, affine, lo, hi) -> VesselGraph:
    """The part of ``graph`` whose nodes fall in the voxel box ``lo <= ijk < hi`` of ``affine``."""
    ijk = graph.voxel_positions(affine)
    keep = np.all((ijk >= np.asarray(lo) - 0.5) & (ijk < np.asarray(hi) - 0.5), axis=1)
    return graph.subgraph(keep)


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
        t_unet = secs["unet"] + secs["template"]
        row["seconds"] = total if key == "deformcl" else t_unet
        row["nodes"] = g.n_nodes
        rows[key] = row
    return rows
