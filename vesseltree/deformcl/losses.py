"""Training losses, all in millimetres (or unitless for Dice).

Points are given in mm (``vox @ A.T`` with ``A`` the linear part of the crop's affine), so the
losses do not depend on the voxel size or on which axis is coarser.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .geometry import sample_at

__all__ = [
    "local_chamfer",
    "edge_length_loss",
    "sdf_loss",
    "radius_loss",
    "soft_dice_loss",
    "segmentation_loss",
    "keep_loss",
    "chamfer_centres",
]


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Euclidean distance with a smooth gradient at 0
    d2 = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)
    return torch.sqrt(d2 + 1e-6)


def chamfer_centres(gt_mm: torch.Tensor, n: int, generator=None) -> torch.Tensor:
    """``n`` patch centres drawn among the true centerline points (all of them if fewer)."""
    if gt_mm.shape[0] <= n:
        return gt_mm
    idx = torch.randperm(gt_mm.shape[0], generator=generator)[:n].to(gt_mm.device)
    return gt_mm[idx]


def local_chamfer(
    pred_mm: torch.Tensor, gt_mm: torch.Tensor, centres_mm: torch.Tensor, side_mm: float
) -> torch.Tensor:
    """Mean over cubes of the symmetric Chamfer distance (mm) between the points inside each cube.

    For each cube (side ``side_mm``, centred on a point of ``centres_mm``) that holds at least one
    predicted and one true point: the mean over predicted points in it of the distance to the
    nearest true point in it, plus the same from the true side. Local cubes keep a node from being
    matched to another branch far along the tree. Distances are Euclidean (not squared), in mm.

    Parameters
    ----------
    pred_mm : (N, 3) predicted nodes, mm; gt_mm : (M, 3) true centerline points, mm;
    centres_mm : (P, 3) cube centres, mm; side_mm : float.

    Returns
    -------
    scalar tensor (0 with a gradient path when no cube qualifies).
    """
    if pred_mm.shape[0] == 0 or gt_mm.shape[0] == 0 or centres_mm.shape[0] == 0:
        return pred_mm.sum() * 0.0
    half = side_mm / 2
    with torch.no_grad():
        in_p = ((pred_mm.detach()[None] - centres_mm[:, None]).abs() <= half).all(-1)  # (P, N)
        in_g = ((gt_mm[None] - centres_mm[:, None]).abs() <= half).all(-1)  # (P, M)
        ok = in_p.any(1) & in_g.any(1)
        # only points in some cube take part: one (P, N', M') tensor, no loop, no host sync
        rows = in_p.any(0).nonzero()[:, 0]
        cols = in_g.any(0).nonzero()[:, 0]
    if centres_mm.shape[0] * rows.numel() * cols.numel() > 40_000_000:
        return _local_chamfer_loop(pred_mm, gt_mm, in_p, in_g, ok)
    d = _dist(pred_mm[rows], gt_mm[cols])  # (N', M')
    ip, ig = in_p[:, rows], in_g[:, cols]
    both = ip[:, :, None] & ig[:, None, :]  # (P, N', M')
    big = torch.finfo(d.dtype).max / 4
    dm = torch.where(both, d[None], d.new_tensor(big))
    a = torch.where(ip, dm.amin(2), d.new_zeros(())).sum(1) / ip.sum(1).clamp(min=1)
    b = torch.where(ig, dm.amin(1), d.new_zeros(())).sum(1) / ig.sum(1).clamp(min=1)
    n_ok = ok.sum()
    val = torch.where(ok, a + b, d.new_zeros(())).sum() / n_ok.clamp(min=1)
    return torch.where(n_ok > 0, val, pred_mm.sum() * 0.0)


def _local_chamfer_loop(pred_mm, gt_mm, in_p, in_g, ok):
    # one small distance matrix per cube: memory O(cube members), for very dense crops
    idx = torch.nonzero(ok)[:, 0].tolist()
    if not idx:
        return pred_mm.sum() * 0.0
    vals = []
    for p in idx:
        d = _dist(pred_mm[in_p[p]], gt_mm[in_g[p]])
        vals.append(d.min(1).values.mean() + d.min(0).values.mean())
    return torch.stack(vals).mean()


def edge_length_loss(
    pos_mm: torch.Tensor, ref_mm: torch.Tensor, edges: torch.Tensor
) -> torch.Tensor:
    """Mean squared change of edge length (mm^2) relative to the template ``ref_mm``.

    The reference penalises the squared length itself (which shrinks the curve); a tree with fixed
    tips would lose its ends that way, so the change from the template is penalised instead.
    """
    if edges.numel() == 0:
        return pos_mm.sum() * 0.0
    a, b = edges[:, 0], edges[:, 1]
    length = (pos_mm[a] - pos_mm[b]).norm(dim=1)
    ref = (ref_mm[a] - ref_mm[b]).norm(dim=1)
    return (length - ref).pow(2).mean()


def sdf_loss(sdf: torch.Tensor, vox: torch.Tensor, batch: torch.Tensor, clip_mm: float = 5.0):
    """Mean signed distance (mm, < 0 inside) to the true surface, sampled trilinearly at the nodes.

    Parameters
    ----------
    sdf : (B, 1, I, J, K) precomputed signed distance map of the true mask, mm.
    vox : (N, 3) voxel indices of the nodes (packed); batch : (N,) crop of each node.

    Outside nodes are pulled in, inside nodes pushed away from the wall (to the medial axis); the
    value is clipped at ``clip_mm`` so nodes far outside do not dominate.
    """
    if vox.shape[0] == 0:
        return vox.sum() * 0.0
    from torch_geometric.utils import to_dense_batch

    dense, mask = to_dense_batch(vox, batch, batch_size=sdf.shape[0])
    vals = sample_at(sdf, dense)[mask][:, 0]
    return vals.clamp(max=clip_mm).mean()


def radius_loss(
    pos_mm: torch.Tensor,
    radii: torch.Tensor,
    gt_mm: torch.Tensor,
    gt_radii: torch.Tensor,
    near_mm: float = 2.0,
) -> torch.Tensor:
    """Mean absolute radius error (mm) against the nearest true point, for nodes within ``near_mm``."""
    if pos_mm.shape[0] == 0 or gt_mm.shape[0] == 0:
        return radii.sum() * 0.0
    with torch.no_grad():
        d = torch.cdist(pos_mm.detach().float(), gt_mm.float())
        dmin, idx = d.min(1)
        near = dmin <= near_mm
    if not near.any():
        return radii.sum() * 0.0
    return (radii[near] - gt_radii[idx[near]]).abs().mean()


def keep_loss(
    keep_logit: torch.Tensor, pos_mm: torch.Tensor, gt_mm: torch.Tensor, tol_mm: float
) -> torch.Tensor:
    """Binary cross-entropy of node scores; target 1 where a true point lies within ``tol_mm``."""
    if keep_logit.shape[0] == 0:
        return keep_logit.sum() * 0.0
    with torch.no_grad():
        if gt_mm.shape[0]:
            near = torch.cdist(pos_mm.detach().float(), gt_mm.float()).min(1).values <= tol_mm
        else:
            near = torch.zeros(pos_mm.shape[0], dtype=torch.bool, device=pos_mm.device)
    return F.binary_cross_entropy_with_logits(keep_logit.float(), near.float())


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per crop, averaged: logits and target (B, 1, I, J, K)."""
    p = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice + binary cross-entropy (the UNet's own loss)."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return soft_dice_loss(logits, target) + bce
