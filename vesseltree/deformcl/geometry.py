"""Torch geometry between voxel grids and node sets.

Node positions inside the network are fractional voxel indices ``(i, j, k)`` of the crop or volume
(array index order); the linear part ``A`` of the voxel -> world affine turns index differences into
millimetres (``d_mm = A @ d_vox``), so every loss and bound is in mm for any affine.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["sample_at", "densify_edges", "centerline_maps", "NEIGHBOUR_OFFSETS"]

# the 27 voxel offsets of a 3x3x3 neighbourhood, (27, 3) in (i, j, k)
NEIGHBOUR_OFFSETS = torch.stack(
    torch.meshgrid(*(torch.arange(-1.0, 2.0),) * 3, indexing="ij"), dim=-1
).reshape(-1, 3)


def sample_at(volume: torch.Tensor, vox: torch.Tensor, stride: float = 1.0) -> torch.Tensor:
    """Trilinear samples of a feature volume at fractional voxel indices.

    Parameters
    ----------
    volume : (B, C, I', J', K') tensor
        Features on a grid of ``stride`` times coarser voxels (voxel ``f`` at full-resolution
        index ``stride * f``).
    vox : (B, N, 3) tensor
        Full-resolution voxel indices ``(i, j, k)``.
    stride : float
        Grid stride of ``volume`` relative to the index space of ``vox``.

    Returns
    -------
    (B, N, C) tensor
        Border-clamped trilinear samples.

    Notes
    -----
    ``grid_sample`` indexes a 5D input as (N, C, D, H, W) and reads the grid's last axis as
    (x, y, z) = (W, H, D), the reverse of the index order, hence the flip.
    """
    size = torch.tensor(volume.shape[2:], dtype=vox.dtype, device=vox.device)
    norm = 2.0 * (vox / stride) / (size - 1).clamp(min=1) - 1.0
    grid = norm.flip(-1)[:, :, None, None, :].to(volume.dtype)
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, :, 0, 0].transpose(1, 2)


def densify_edges(
    pos: torch.Tensor, radii: torch.Tensor, edges: torch.Tensor, step: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points along every edge at most ``step`` voxels apart (with the nodes themselves).

    Parameters
    ----------
    pos : (N, 3) tensor, voxel indices; radii : (N,) tensor, mm; edges : (E, 2) long tensor.

    Returns
    -------
    points (M, 3), radii (M,), node (M,) long: the edge's first node (for the batch index).
    """
    n = pos.shape[0]
    if edges.numel() == 0:
        return pos, radii, torch.arange(n, device=pos.device)
    a, b = edges[:, 0], edges[:, 1]
    length = (pos[b] - pos[a]).norm(dim=1)
    k = torch.clamp(torch.ceil(length / step), min=1).long()
    rep = torch.repeat_interleave(torch.arange(len(a), device=pos.device), k)
    start = torch.repeat_interleave(torch.cumsum(k, 0) - k, k)
    t = ((torch.arange(int(k.sum()), device=pos.device) - start).to(pos.dtype) / k[rep]).unsqueeze(
        1
    )
    pts = pos[a[rep]] + t * (pos[b[rep]] - pos[a[rep]])
    rad = radii[a[rep]] + t[:, 0] * (radii[b[rep]] - radii[a[rep]])
    return (
        torch.cat([pts, pos]),
        torch.cat([rad, radii]),
        torch.cat([a[rep], torch.arange(n, device=pos.device)]),
    )


@torch.no_grad()
def centerline_maps(
    points: torch.Tensor,
    radii: torch.Tensor,
    batch: torch.Tensor,
    shape: tuple[int, int, int],
    n_batch: int,
    lin: torch.Tensor,
    reach: int = 3,
    chunk: int = 4096,
) -> torch.Tensor:
    """Two detached maps of a centerline: proximity and signed tube distance.

    For every voxel within ``reach`` voxels of a centerline point: ``d`` = distance (mm) to the
    nearest point and ``s`` = min over points of ``distance - radius`` (mm; < 0 inside the tube
    the radii describe). Channel 0 is ``1 - d / d_max`` clipped to [0, 1] (``d_max`` = ``reach``
    times the smallest voxel size), channel 1 is ``tanh(-s / voxel)``; voxels out of reach read
    0 and -1.

    Parameters
    ----------
    points : (M, 3) voxel indices; radii : (M,) mm; batch : (M,) long, the crop of each point.
    shape : (I, J, K) grid shape; n_batch : number of crops.
    lin : (B, 3, 3) tensor, voxel -> mm linear part of each crop's affine.

    Returns
    -------
    (B, 2, I, J, K) float32 tensor.
    """
    dev = points.device
    big = 1e4
    nvox = shape[0] * shape[1] * shape[2]
    d_best = torch.full((n_batch * nvox,), big, device=dev)
    s_best = torch.full((n_batch * nvox,), big, device=dev)
    r = torch.arange(-reach, reach + 1, device=dev)
    offs = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    lim = torch.tensor(shape, device=dev)
    pts_all = points.float()
    for c0 in range(0, pts_all.shape[0], chunk):
        pts = pts_all[c0 : c0 + chunk]
        bi = batch[c0 : c0 + chunk]
        vox = torch.round(pts).long()[:, None, :] + offs[None]  # (m, 343, 3)
        ok = ((vox >= 0) & (vox < lim)).all(-1)
        diff = (vox.float() - pts[:, None, :]).unsqueeze(-1)  # (m, 343, 3, 1)
        mm = (lin[bi][:, None] @ diff).squeeze(-1).norm(dim=-1)
        flat = ((bi[:, None] * shape[0] + vox[..., 0]) * shape[1] + vox[..., 1]) * shape[2] + vox[
            ..., 2
        ]
        flat, mm_ok = flat[ok], mm[ok]
        rad = radii[c0 : c0 + chunk].float()[:, None].expand_as(mm)[ok]
        d_best.scatter_reduce_(0, flat, mm_ok, reduce="amin")
        s_best.scatter_reduce_(0, flat, mm_ok - rad, reduce="amin")
    vsize = torch.linalg.norm(lin, dim=1).amin(dim=1)  # (B,) smallest voxel size, mm
    d = d_best.view(n_batch, 1, *shape)
    s = s_best.view(n_batch, 1, *shape)
    vs = vsize.view(-1, 1, 1, 1, 1)
    m0 = (1.0 - d / (reach * vs)).clamp(0.0, 1.0)
    m1 = torch.where(s < big / 2, torch.tanh(-s / vs), torch.full_like(s, -1.0))
    return torch.cat([m0, m1], dim=1)
