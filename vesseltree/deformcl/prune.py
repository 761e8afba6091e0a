"""Pruning false branches with the cascade's node scores, and fitting the score head.

Where the centerline F1 of the UNet template is lost (gold TubeTK cases, shipped checkpoint,
``benchmarks/results/deformcl.md``): most of it is precision, and most of the false length lies
outside the true vessel mask, on whole spurious components (bright non-vessel structures of the
image that the UNet segments) and on spurs. Moving nodes cannot fix those; removing them can.

The last cascade stage scores every node (logit that the node lies within ``tol_mm`` of a true
centerline). :func:`prune_by_score` turns node scores into structural decisions:

1. a connected component whose mean node probability is below the threshold is removed whole,
   except the largest one (by node count): the main tree is never dropped, so a head that is out of
   its domain on an image cannot empty the result;
2. in the components kept, a terminal branch (tip to junction) whose mean probability is below it
   is removed (its junction node stays), so the tree is cut at branch points, never in the middle
   of a vessel, and pruning never splits a component.

:func:`fit_node_scores` trains the score head on the templates the UNet itself yields on training
cases (their typical false components and spurs), with everything else frozen: the UNet, the node
positions and the other heads are unchanged, so "UNet only" and "UNet + cascade" still share the
same UNet and the same template.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..errors import InvalidInputError
from ..graph import VesselGraph
from ..volume import Volume
from .data import Case, normalize_image
from .template import template_from_mask

__all__ = ["prune_by_score", "node_samples", "fit_node_scores"]

log = logging.getLogger(__name__)


def prune_by_score(
    graph: VesselGraph, prob: np.ndarray, threshold: float, *, branches: bool = False
) -> np.ndarray:
    """Nodes kept (bool (N,)) after removing low-scoring components (and terminal branches).

    Parameters
    ----------
    graph : VesselGraph
        The (deformed) template.
    prob : (N,) float
        Probability per node that it lies on a true vessel.
    threshold : float
        A component (other than the largest) whose mean node probability is below it is removed;
        0 keeps every node.
    branches : bool
        Also remove terminal branches (tip to junction) whose mean probability is below the
        threshold. Off by default: on synthetic CT the score head, trained mostly on MRA-like
        data, cut true branches (F1 0.826 with branch pruning, 0.859 without; on the TubeTK gold
        cases both give 0.972).
    """
    n = graph.n_nodes
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    if prob.shape[0] != n:
        raise InvalidInputError(f"prob must have one value per node ({n}), got {prob.shape[0]}")
    keep = np.ones(n, bool)
    if threshold <= 0 or n == 0:
        return keep
    lab = graph.component_labels
    cnt = np.bincount(lab)
    comp_mean = np.bincount(lab, weights=prob) / np.maximum(cnt, 1)
    comp_keep = comp_mean >= threshold
    comp_keep[np.argmax(cnt)] = True
    keep &= comp_keep[lab]
    if not branches:
        return keep
    deg = graph.degrees
    for br in graph.branches:
        ends = deg[br[[0, -1]]]
        if br[0] == br[-1] or not keep[br[0]]:
            continue  # a loop, or a removed component
        if ends.min() > 1 or ends.max() < 3:
            continue  # between two junctions (cutting it would split the tree), or a whole component
        body = br[1:] if ends[0] >= 3 else br[:-1]  # the tip side, without the junction node
        if prob[body].mean() < threshold:
            keep[body] = False
    return keep


@torch.no_grad()
def node_samples(predictor, case: Case, *, tol_mm: float = 1.0) -> dict | None:
    """One case through the predictor's inference path, with each node's state and label.

    Returns ``{"hidden": (N, C) float32, "target": (N,) bool (deformed node within tol_mm of the
    truth), "node_mm": (N, 3), "truth_mm": (M, 3), "graph": the template}`` (positions in the
    case's voxel frame scaled to mm), or ``None`` for an empty template.
    """
    logit, feat, shp = predictor._unet(normalize_image(case.image))
    prob = torch.sigmoid(logit[: shp[0], : shp[1], : shp[2]]).cpu().numpy()
    tpl = template_from_mask(
        Volume(prob, case.affine), node_step_vox=predictor.config.node_step_vox, warn=False
    )
    if tpl is None:
        return None
    _, (pos, _, _), _, hidden = predictor._cascade(logit, feat, tpl, case.affine, with_hidden=True)
    lin = np.asarray(case.affine, dtype=np.float64)[:3, :3]
    node_mm = pos.cpu().numpy().astype(np.float64) @ lin.T
    truth_mm = np.asarray(case.truth_vox, dtype=np.float64) @ lin.T
    dist = cKDTree(truth_mm).query(node_mm)[0] if len(truth_mm) else np.full(len(node_mm), np.inf)
    return {
        "hidden": hidden.float().cpu().numpy(),
        "target": dist <= tol_mm,
        "node_mm": node_mm,
        "truth_mm": truth_mm,
        "graph": tpl,
    }


def _proxy_f1(samples, probs, threshold: float, tol_mm: float) -> float:
    """Mean over cases of the centerline F1 (nodes vs truth points, ``tol_mm``) after pruning."""
    f1 = []
    for s, p in zip(samples, probs):
        kept = prune_by_score(s["graph"], p, threshold)
        if not kept.any() or not len(s["truth_mm"]):
            f1.append(0.0)
            continue
        prec = float(s["target"][kept].mean())
        rec = float((cKDTree(s["node_mm"][kept]).query(s["truth_mm"])[0] <= tol_mm).mean())
        f1.append(0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec))
    return float(np.mean(f1))


def fit_node_scores(
    predictor,
    cases: list[Case],
    *,
    tol_mm: float = 1.0,
    epochs: int = 60,
    lr: float = 3e-3,
    holdout: float = 0.25,
    seed: int = 0,
    thresholds=(0.3, 0.4, 0.5, 0.6, 0.7),
) -> dict:
    """Train the last stage's node-score head on the UNet's own templates of ``cases``.

    Everything else is frozen. The cases are split (``holdout``) into a fitting part and a part on
    which the pruning threshold is chosen (node-count F1 of :func:`prune_by_score`); the chosen
    threshold is written into the predictor's config (``keep_threshold``). The head is reset
    (fresh weights, bias at the positive rate) before fitting.

    Returns a summary: node counts, negative rate, held-out proxy F1 per threshold (0 = no
    pruning), the threshold chosen, seconds.
    """
    if not cases:
        raise InvalidInputError("cases is empty; give at least one Case to fit the node scores")
    t0 = time.perf_counter()
    samples = [s for s in (node_samples(predictor, c, tol_mm=tol_mm) for c in cases) if s]
    if not samples:
        raise InvalidInputError("no case gave a template; cannot fit the node scores")
    t_collect = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(samples))
    n_hold = int(round(holdout * len(samples))) if len(samples) > 1 else 0
    hold = [samples[i] for i in order[:n_hold]]
    fit = [samples[i] for i in order[n_hold:]]
    x = torch.from_numpy(np.concatenate([s["hidden"] for s in fit]))
    y = torch.from_numpy(np.concatenate([s["target"] for s in fit]).astype(np.float32))
    head = predictor.net.cascade.stages[-1].keep
    dev = next(head.parameters()).device
    x, y = x.to(dev), y.to(dev)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in head:
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()
        rate = float(y.mean().clamp(1e-3, 1 - 1e-3))
        head[-1].bias.fill_(float(np.log(rate / (1 - rate))))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    bs = 4096
    loss_first = loss_last = float("nan")
    for ep in range(epochs):
        perm = torch.randperm(len(y), generator=gen).to(dev)
        tot = 0.0
        for k in range(0, len(y), bs):
            idx = perm[k : k + bs]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x[idx])[:, 0], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        if ep == 0:
            loss_first = tot / len(y)
        loss_last = tot / len(y)
    head.eval()
    check = hold or fit

    def probs_of(group):
        with torch.no_grad():
            return [
                torch.sigmoid(head(torch.from_numpy(s["hidden"]).to(dev))[:, 0]).cpu().numpy()
                for s in group
            ]

    p_check = probs_of(check)
    scores = {0.0: _proxy_f1(check, p_check, 0.0, tol_mm)}
    for t in thresholds:
        scores[float(t)] = _proxy_f1(check, p_check, float(t), tol_mm)
    best = max(scores, key=lambda t: (scores[t], -abs(t - 0.5)))
    import dataclasses

    predictor.net.config = dataclasses.replace(predictor.net.config, keep_threshold=best)
    for stage in predictor.net.cascade.stages:
        stage.config = predictor.net.config
    n_nodes = int(sum(len(s["target"]) for s in samples))
    return {
        "cases": len(samples),
        "fit_cases": len(fit),
        "holdout_cases": len(hold),
        "nodes": n_nodes,
        "negative_rate": float(1 - np.concatenate([s["target"] for s in samples]).mean()),
        "loss_first_epoch": loss_first,
        "loss_last_epoch": loss_last,
        "proxy_f1": {f"{k:g}": v for k, v in scores.items()},
        "threshold": best,
        "collect_s": t_collect,
        "seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> int:
    """``python -m vesseltree.deformcl.prune``: fit a checkpoint's node scores and save it."""
    import argparse
    import json
    from pathlib import Path

    from .api import DeformCL
    from .data import training_cases

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: shipped)")
    ap.add_argument("--data", required=True, help="shared data folder holding tubetk/masks")
    ap.add_argument("--out", required=True, help="folder for the updated model.pt")
    ap.add_argument("--n-tubetk", type=int, default=36, help="TubeTK regions (gold excluded)")
    ap.add_argument("--n-synthetic", type=int, default=6)
    ap.add_argument("--region", default="160,160,96", help="TubeTK region size, voxels")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--processes", type=int, default=1, help="processes building the cases")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    predictor = DeformCL.from_pretrained(args.checkpoint, device=args.device)
    t0 = time.perf_counter()
    cases = training_cases(
        n_synthetic=args.n_synthetic,
        tubetk_dir=args.data,
        n_tubetk=args.n_tubetk,
        region=tuple(int(s) for s in args.region.split(",")),
        seed=args.seed,
        processes=args.processes,
    )
    print(f"{len(cases)} cases built in {time.perf_counter() - t0:.0f} s", flush=True)
    summary = fit_node_scores(predictor, cases, seed=args.seed)
    summary["training_data"] = {
        "n_synthetic": args.n_synthetic,
        "n_tubetk": args.n_tubetk,
        "region": args.region,
        "seed": args.seed,
        "tubetk_gold_excluded": True,
    }
    predictor.metadata["node_scores"] = summary
    predictor.save_pretrained(Path(args.out))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
