"""`DeformCLNet`: UNet + deformation cascade + centerline-conditioned mask head."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .cascade import Cascade
from .config import DeformCLConfig
from .geometry import centerline_maps, densify_edges
from .unet import UNet3D

__all__ = ["DeformCLNet", "pack_graphs"]


def pack_graphs(graphs, device) -> dict:
    """Pack per-crop ``(pos (N, 3), radii (N,), edges (E, 2))`` numpy triples PyG-style.

    Returns ``pos`` (N, 3), ``radii`` (N,), ``edges`` (E, 2) (one direction, packed indices),
    ``edge_index`` (2, 2E) (both directions), ``batch`` (N,), ``ptr`` (B + 1,).
    """
    pos, rad, edges, batch, ptr = [], [], [], [], [0]
    for b, (p, r, e) in enumerate(graphs):
        pos.append(np.asarray(p, np.float32).reshape(-1, 3))
        rad.append(np.asarray(r, np.float32).reshape(-1))
        edges.append(np.asarray(e, np.int64).reshape(-1, 2) + ptr[-1])
        batch.append(np.full(len(pos[-1]), b, np.int64))
        ptr.append(ptr[-1] + len(pos[-1]))
    e = torch.from_numpy(np.concatenate(edges)).to(device)
    return {
        "pos": torch.from_numpy(np.concatenate(pos)).to(device),
        "radii": torch.from_numpy(np.maximum(np.concatenate(rad), 1e-2)).to(device),
        "edges": e,
        "edge_index": torch.cat([e.t(), e.t().flip(0)], dim=1),
        "batch": torch.from_numpy(np.concatenate(batch)).to(device),
        "ptr": ptr,
    }


class DeformCLNet(nn.Module):
    """The network: :class:`UNet3D`, :class:`Cascade`, and a merger for the final mask.

    The final logits are ``unet_logits + merger([unet_logits, maps])`` where ``maps`` are the two
    detached centerline maps of :func:`~vesseltree.deformcl.geometry.centerline_maps`; the
    merger's last layer starts at zero, so an untrained head returns the UNet's mask.
    """

    def __init__(self, config: DeformCLConfig):
        super().__init__()
        self.config = config
        self.unet = UNet3D(config)
        self.cascade = Cascade(config)
        self.merger = nn.Sequential(
            nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv3d(8, 1, 1)
        )
        nn.init.zeros_(self.merger[-1].weight)
        nn.init.zeros_(self.merger[-1].bias)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """UNet pass: (B, 1, I, J, K) image -> (logits (B, 1, I, J, K), features at stride 4)."""
        return self.unet(image)

    def deform(self, feat, logits, graph: dict, lin_inv: torch.Tensor, with_hidden: bool = False):
        """Run the cascade on a packed graph (see :func:`pack_graphs`).

        Returns a list of ``(pos, radii, keep_logit)`` per stage; with ``with_hidden``, the pair
        ``(that list, last stage's node state)``.
        """
        return self.cascade(
            feat,
            logits,
            graph["pos"],
            graph["radii"],
            graph["edge_index"],
            graph["batch"],
            lin_inv,
            with_hidden=with_hidden,
        )

    def condition_maps(self, pos, radii, edges, batch, shape, n_batch, lin) -> torch.Tensor:
        """(B, 2, I, J, K) detached centerline maps of packed nodes (voxel indices)."""
        pts, rad, node = densify_edges(pos.detach().float(), radii.detach().float(), edges)
        return centerline_maps(
            pts, rad, batch[node], shape, n_batch, lin, reach=self.config.map_radius_vox
        )

    def merge(self, logits: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Final logits conditioned on the centerline maps."""
        x = torch.cat([logits, maps.to(logits.dtype)], dim=1)
        return logits + self.merger(x)
