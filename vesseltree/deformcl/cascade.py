"""The deformation cascade: K stages that move every node of a centerline tree and refine its radius.

Each stage samples the stride-4 UNet features and a 3x3x3 neighbourhood of the full-resolution
logits at every node, fuses them with the previous stage's node state, the node's kind (tip,
chain, junction) and its log radius, passes messages along the tree edges (torch_geometric
``GraphConv``, both directions), exchanges information globally (learned latent tokens that read
all nodes of a graph and are read back: attention whose cost is linear in the node count), and
predicts a bounded, zero-initialised offset (``max_offset_mm * tanh``, in mm) and a bounded radius
factor, plus a score per node (logit that the node lies on a true vessel; the predictor removes
low-scoring nodes, i.e. false-positive branches of the template). Nodes are moved, never duplicated: a junction node is one node shared by its branches.

Batching: nodes of several crops are packed (PyG style, ``batch`` vector) for message passing and
padded (``to_dense_batch`` + key-padding mask) for attention.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GraphConv
from torch_geometric.utils import to_dense_batch

from .config import DeformCLConfig
from .geometry import NEIGHBOUR_OFFSETS, sample_at

__all__ = ["DeformStage", "Cascade", "node_kind"]


def node_kind(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """(n, 3) one-hot of the node degree class: tip (<= 1), chain (2), junction (>= 3)."""
    deg = torch.zeros(n, device=edge_index.device)
    if edge_index.numel():
        deg.index_add_(0, edge_index[0], torch.ones(edge_index.shape[1], device=deg.device))
    cls = torch.clamp(deg - 1, 0, 2).long()  # undirected edge_index counts each edge once per end
    return torch.nn.functional.one_hot(cls, 3).float()


class _GlobalAttention(nn.Module):
    def __init__(self, c: int, heads: int, n_latents: int):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, c) * 0.1)
        self.read = nn.MultiheadAttention(c, heads, batch_first=True)
        self.write = nn.MultiheadAttention(c, heads, batch_first=True)
        self.norm = nn.LayerNorm(c)

    def forward(self, h: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        dense, mask = to_dense_batch(h, batch)  # (B, Nmax, C), (B, Nmax)
        lat = self.latents.unsqueeze(0).expand(dense.shape[0], -1, -1)
        pad = ~mask
        pad[:, 0] = False  # a crop without nodes reads a zero vector instead of NaN
        lat, _ = self.read(lat, dense, dense, key_padding_mask=pad, need_weights=False)
        upd, _ = self.write(dense, lat, lat, need_weights=False)
        return self.norm(h + upd[mask])


class DeformStage(nn.Module):
    """One deformation stage (own weights). See the module docstring."""

    def __init__(self, config: DeformCLConfig, first: bool):
        super().__init__()
        c = config.hidden
        n_in = config.feat_channels + 27 + 3 + 1 + (0 if first else c)
        self.config = config
        self.inp = nn.Sequential(nn.Linear(n_in, c), nn.GELU(), nn.Linear(c, c))
        self.convs = nn.ModuleList(GraphConv(c, c, aggr="mean") for _ in range(config.mp_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(c) for _ in range(config.mp_layers))
        self.glob = _GlobalAttention(c, config.heads, config.n_latents)
        self.offset = nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.Linear(c, 3))
        self.radius = nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.Linear(c, 1))
        self.keep = nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.Linear(c, 1))
        nn.init.zeros_(self.keep[-1].weight)
        nn.init.constant_(self.keep[-1].bias, 2.0)  # start by keeping every node
        for head in (self.offset, self.radius):  # every stage starts as the identity
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def forward(self, feat, logits, pos, radii, edge_index, batch, kind, lin_inv, h_prev):
        dense_pos, mask = to_dense_batch(pos, batch, batch_size=feat.shape[0])
        f = sample_at(feat, dense_pos, stride=4.0)[mask]
        offs = NEIGHBOUR_OFFSETS.to(pos)
        around = (dense_pos[:, :, None, :] + offs[None, None]).flatten(1, 2)
        lg = sample_at(logits, around).view(*dense_pos.shape[:2], 27)[mask]
        parts = [f.float(), torch.tanh(lg.float() / 4.0), kind, torch.log(radii).unsqueeze(1)]
        if h_prev is not None:
            parts.append(h_prev)
        h = self.inp(torch.cat(parts, dim=1))
        for conv, norm in zip(self.convs, self.norms):
            h = norm(h + torch.relu(conv(h, edge_index)))
        h = self.glob(h, batch)
        delta_mm = self.config.max_offset_mm * torch.tanh(self.offset(h))
        delta_vox = (lin_inv[batch] @ delta_mm.unsqueeze(-1)).squeeze(-1)
        new_r = radii * torch.exp(self.config.max_log_radius * torch.tanh(self.radius(h)[:, 0]))
        return pos + delta_vox, new_r, self.keep(h)[:, 0], h


class Cascade(nn.Module):
    """``n_stages`` :class:`DeformStage` s applied in turn.

    Forward
    -------
    feat : (B, F, I/4, J/4, K/4); logits : (B, 1, I, J, K)
    pos : (N, 3) voxel indices (packed over crops); radii : (N,) mm
    edge_index : (2, E2) long, both directions; batch : (N,) long
    lin_inv : (B, 3, 3) mm -> voxel linear map of each crop
    returns a list of ``(pos, radii, keep_logit)``, one per stage; with ``with_hidden`` also the
    last stage's node state (N, hidden), the input of its node-score head.
    """

    def __init__(self, config: DeformCLConfig):
        super().__init__()
        self.stages = nn.ModuleList(DeformStage(config, i == 0) for i in range(config.n_stages))

    def forward(self, feat, logits, pos, radii, edge_index, batch, lin_inv, with_hidden=False):
        kind = node_kind(edge_index, pos.shape[0])
        out = []
        h = None
        feat = feat.float()
        logits = logits.float()
        for stage in self.stages:
            pos, radii, keep, h = stage(
                feat, logits, pos, radii, edge_index, batch, kind, lin_inv, h
            )
            out.append((pos, radii, keep))
        return (out, h) if with_hidden else out
