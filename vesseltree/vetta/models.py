"""The two VeTTA networks: :class:`SegmentAE` (stage 1) and :class:`TreeAE` (stage 2).

Shapes use B for batch, S for samples per segment, T for tokens, M for slots, C for the most
children per node. Positions fed to :class:`TreeAE` are in the normalised tree frame
(:class:`~vesseltree.vetta.tree.Frame`); those fed to :class:`SegmentAE` in the segment frame
(start at the origin, end on the unit sphere, start radius 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import SegmentConfig, TreeAEConfig
from .fourier import lift, lift_dim

__all__ = ["SegmentAE", "TreeAE", "modulation", "LOG_RADIUS_OFFSET"]

#: tree tokens carry ``log(r_normalised) + LOG_RADIUS_OFFSET`` (about 0 for typical radii)
LOG_RADIUS_OFFSET = 4.0
_T_DOMAIN = (0.0, 2.0)  # t in [0, 1] covers half a period of the lowest octave: one-to-one


def _mlp2(d_in: int, d_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


def _encoder(d: int, heads: int, ff: int, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d, heads, d * ff, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
    )
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)


def modulation(t: torch.Tensor, kind: str) -> torch.Tensor:
    """End factor m(t) of the segment decoder: 1 in training, 0 at both ends at evaluation."""
    if kind == "one":
        return torch.ones_like(t)
    tc = t.clamp(0.0, 1.0)
    return 0.5**-0.2 * tc**0.1 * (1.0 - tc) ** 0.1


class SegmentAE(nn.Module):
    """Autoencoder of one vessel segment (the paper's vessel autoencoder).

    Encoder: Fourier-lifted samples (x, y, z, t) and log r -> MLP -> transformer (no positional
    encoding; order comes from the lifted t) -> mean over samples -> MLP -> code.
    Decoder: an implicit function of t: the straight line from the start (0, 0, 0, 1) to the end
    plus a learned residual times the end factor m(t), so the ends are exact at evaluation.
    """

    def __init__(self, config: SegmentConfig):
        super().__init__()
        self.config = config
        c = config
        d = c.d_model
        self.embed = _mlp2(lift_dim(4, c.octaves) + 1, d, d * c.ff_mult)
        self.encoder = _encoder(d, c.n_heads, c.ff_mult, c.n_layers)
        self.to_code = _mlp2(d, c.z_dim, d * c.ff_mult)
        self.decoder = nn.Sequential(
            nn.Linear(c.z_dim + lift_dim(1, c.octaves), c.hidden),
            nn.GELU(),
            nn.Linear(c.hidden, c.hidden),
            nn.GELU(),
            nn.Linear(c.hidden, 4),
        )
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)

    def encode(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, S, 5) normalised samples (x, y, z, r, t) -> (B, z_dim) codes."""
        o = self.config.octaves
        xyz = lift(samples[..., :3], o)
        t = lift(samples[..., 4:5], o, domain=_T_DOMAIN)
        lr = torch.log(samples[..., 3:4].clamp_min(1e-3))
        h = self.embed(torch.cat([xyz, t, lr], dim=-1))
        h = self.encoder(h)
        return self.to_code(h.mean(dim=1))

    def decode(
        self, z: torch.Tensor, end: torch.Tensor, t: torch.Tensor, *, mode: str = "eval"
    ) -> torch.Tensor:
        """Points of the segments at parameters ``t``.

        Parameters
        ----------
        z : (B, z_dim) codes
        end : (B, 4) the end point in the segment frame (unit chord direction, end/start radius)
        t : (B, Q) parameters in [0, 1]
        mode : {"eval", "train"}
            End factor: exact ends ("eval") or m = 1 ("train", as in the paper).

        Returns
        -------
        (B, Q, 4) x, y, z, r in the segment frame.
        """
        start = torch.zeros_like(end)
        start[:, 3] = 1.0
        base = start[:, None, :] + (end - start)[:, None, :] * t[..., None]
        tl = lift(t[..., None], self.config.octaves, domain=_T_DOMAIN)
        zz = z[:, None, :].expand(-1, t.shape[1], -1)
        delta = self.decoder(torch.cat([zz, tl], dim=-1))
        m = modulation(t, "one" if mode == "train" else "sharp")
        return base + delta * m[..., None]

    def loss(
        self,
        samples: torch.Tensor,
        end: torch.Tensor,
        weight: torch.Tensor,
        *,
        n_query: int = 32,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Reconstruction loss at random ``t`` (targets interpolated between the samples).

        ``weight`` (B,) weighs each segment (longer, more tortuous segments count more).
        """
        b = samples.shape[0]
        z = self.encode(samples)
        if self.config.latent_noise > 0:
            z = z + self.config.latent_noise * torch.randn(
                z.shape, device=z.device, dtype=z.dtype, generator=generator
            )
        start = torch.zeros_like(end)
        start[:, 3] = 1.0
        # known curve: start, samples, end, ordered by t
        pts = torch.cat([start[:, None], samples[..., :4], end[:, None]], dim=1)
        ts = torch.cat(
            [samples.new_zeros(b, 1), samples[..., 4], samples.new_ones(b, 1)], dim=1
        ).contiguous()
        tq = torch.rand(b, n_query, device=samples.device, generator=generator)
        j = torch.searchsorted(ts, tq).clamp(1, ts.shape[1] - 1)
        t0, t1 = ts.gather(1, j - 1), ts.gather(1, j)
        w = ((tq - t0) / (t1 - t0).clamp_min(1e-9)).clamp(0, 1)[..., None]
        p0 = pts.gather(1, (j - 1)[..., None].expand(-1, -1, 4))
        p1 = pts.gather(1, j[..., None].expand(-1, -1, 4))
        target = p0 + w * (p1 - p0)
        pred = self.decode(z, end, tq, mode="train")
        err = (pred - target) ** 2
        per = err[..., :3].mean(dim=(1, 2)) + self.config.radius_weight * err[..., 3].mean(dim=1)
        return (per * weight).sum() / weight.sum().clamp_min(1e-9)


class TreeAE(nn.Module):
    """Autoencoder of a whole tree with a recursive, always-valid decoder.

    Full-tree tokens (one per parent -> child edge, plus the root self-edge):
    ``[lift(p_a), lift(p_b), lr_a, lr_b, onehot(children_a), onehot(children_b), z_seg, skip, semi]``.
    Partial-tree tokens (the root-to-query path):
    ``[lift(p_a), lift(p_b), onehot(children_a), onehot(children_b), query, semi]``.
    A learned start token leads both sets. The decoder turns ``n_slots`` learned slots into
    per-slot predictions of a child: lifted position, child-count logits, log radius, segment
    code and skip logit.
    """

    def __init__(self, config: TreeAEConfig, z_seg_dim: int):
        super().__init__()
        self.config = config
        c = config
        d, ff = c.d_model, c.ff_mult
        self.z_seg_dim = int(z_seg_dim)
        ncls = c.max_children + 1
        self.n_classes = ncls
        lp = lift_dim(3, c.octaves)
        self.full_dim = 2 * lp + 2 + 2 * ncls + self.z_seg_dim + 2
        self.part_dim = 2 * lp + 2 * ncls + 2
        self.head_dims = {
            "pos": lp,
            "topo": ncls,
            "rad": 1,
            "zseg": self.z_seg_dim,
            "skip": 1,
            "xyz": 3,
        }

        self.full_embed = _mlp2(self.full_dim, d, d * ff)
        self.full_start = nn.Parameter(torch.empty(d).uniform_(-1, 1) / math.sqrt(d))
        self.encoder = _encoder(d, c.n_heads, ff, c.enc_layers)
        self.pool = _mlp2(d, 2 * c.z_dim if c.variational else c.z_dim, d * ff)

        self.part_embed = _mlp2(self.part_dim, d, d * ff)
        self.part_start = nn.Parameter(torch.empty(d).uniform_(-1, 1) / math.sqrt(d))
        self.part_encoder = _encoder(d, c.n_heads, ff, c.partial_layers)
        self.memory = _mlp2(d + c.z_dim, d, d * ff)
        self.slots = nn.Parameter(torch.empty(c.n_slots, d))
        nn.init.xavier_uniform_(self.slots)
        layer = nn.TransformerDecoderLayer(
            d, c.n_heads, d * ff, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
        )
        self.decoder = nn.TransformerDecoder(layer, c.dec_layers, norm=nn.LayerNorm(d))
        self.heads = _mlp2(d, sum(self.head_dims.values()), d * ff)
        # statistics of the segment codes (targets are standardised) and of the tree codes
        self.register_buffer("zseg_mean", torch.zeros(self.z_seg_dim))
        self.register_buffer("zseg_std", torch.ones(self.z_seg_dim))
        self.register_buffer("latent_mean", torch.zeros(c.z_dim))
        self.register_buffer("latent_std", torch.ones(c.z_dim))

    def lift_pos(self, u: torch.Tensor) -> torch.Tensor:
        """Lift normalised positions or offsets (..., 3) over the configured domain."""
        d = self.config.pos_domain
        return lift(u, self.config.octaves, domain=(-d, d))

    # ------------------------------------------------------------------ encoder
    def encode(
        self, tokens: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, full_dim) tokens, (B, T) bool mask -> code mu (B, z_dim) and log-variance."""
        b = tokens.shape[0]
        h = self.full_embed(tokens)
        h = torch.cat([self.full_start.expand(b, 1, -1), h], dim=1)
        m = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        h = self.encoder(h, src_key_padding_mask=~m)
        w = m.to(h.dtype)[..., None]
        pooled = (h * w).sum(1) / w.sum(1)
        out = self.pool(pooled)
        if self.config.variational:
            mu, logvar = out.chunk(2, dim=-1)
            return mu, logvar
        return out, None

    # ------------------------------------------------------------------ one decoding step
    def decode_step(
        self, z: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Slot predictions for the children of each query.

        Parameters
        ----------
        z : (B, z_dim) tree codes
        tokens : (B, P, part_dim) partial-tree tokens (P may be 0: the state before the root)
        mask : (B, P) bool

        Returns
        -------
        dict of (B, M, k) tensors: ``pos`` (lifted), ``topo`` (logits), ``rad``, ``zseg``, ``skip``,
        ``xyz`` (the position itself, normalised).
        """
        b = z.shape[0]
        h = (
            self.part_embed(tokens)
            if tokens.shape[1]
            else tokens.new_zeros(b, 0, self.config.d_model)
        )
        h = torch.cat([self.part_start.expand(b, 1, -1), h], dim=1)
        m = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        h = self.part_encoder(h, src_key_padding_mask=~m)
        mem = self.memory(torch.cat([h, z[:, None, :].expand(-1, h.shape[1], -1)], dim=-1))
        q = self.slots.expand(b, -1, -1)
        out = self.heads(self.decoder(q, mem, memory_key_padding_mask=~m))
        return dict(zip(self.head_dims, out.split(list(self.head_dims.values()), dim=-1)))

    # ------------------------------------------------------------------ set loss
    def cost(self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, M, C) cost of giving slot i target j (weights from the config).

        ``target``: ``pos`` (B, C, lp) lifted, ``topo`` (B, C) long, ``rad`` (B, C),
        ``zseg`` (B, C, zs), ``skip`` (B, C) float, ``has_seg`` (B, C) float, ``xyz`` (B, C, 3).
        """
        w = self.config.weights
        pos = ((pred["pos"][:, :, None] - target["pos"][:, None]) ** 2).mean(-1)
        # the plain position (ours): a smooth target the code can carry early in training, and
        # what the lifted prediction is refined around at decoding (no aliasing of high octaves)
        xyz = ((pred["xyz"][:, :, None] - target["xyz"][:, None]) ** 2).mean(-1)
        logp = F.log_softmax(pred["topo"].float(), dim=-1)  # (B, M, ncls)
        idx = target["topo"][:, None, :].expand(-1, logp.shape[1], -1)
        topo = -logp.gather(2, idx)
        rad = (pred["rad"][..., 0][:, :, None] - target["rad"][:, None]) ** 2
        zs = ((pred["zseg"][:, :, None] - target["zseg"][:, None]) ** 2).mean(-1)
        sk = F.binary_cross_entropy_with_logits(
            pred["skip"][..., 0][:, :, None].expand(-1, -1, target["skip"].shape[1]).float(),
            target["skip"][:, None].expand(-1, pred["skip"].shape[1], -1).float(),
            reduction="none",
        )
        seg = target["has_seg"][:, None]
        return (
            w["pos"] * pos
            + w.get("xyz", 0.0) * xyz
            + w["topo"] * topo
            + w["rad"] * rad
            + seg * (w["zseg"] * zs * (1 - target["skip"][:, None]) + w["skip"] * sk)
        )
