"""From canonical trees to model inputs: records, torch_geometric batches, padded tokens.

The path of one tree through the pipeline::

    VesselGraph --canonical_tree--> CanonicalTree --make_record--> record (numpy dict, mm)
        --to_data--> torch_geometric Data --Batch.from_data_list--> Batch (packed nodes)
        --build_inputs--> padded tokens (B, T, F) + key-padding mask (B, T) for the transformers

A *record* holds, per key node ``i`` (K nodes, root 0): ``pos`` (K, 3) mm, ``rad`` (K,) mm,
``parent`` (K,), ``seg`` (K, S, 5) the normalised samples of the segment ending at ``i`` (zeros
at the root), ``end`` (K, 4) its end in the segment frame, ``arc``/``chord`` (K,) mm, and the
tree frame ``centre`` (3,) and ``scale`` (1,). Records are what the caches store.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_batch

from .config import SegmentConfig, TreeAEConfig
from .fourier import lift
from .models import LOG_RADIUS_OFFSET, SegmentAE, TreeAE
from .tree import CanonicalTree, Frame, random_split, resample_segment, root_path

__all__ = [
    "make_record",
    "to_data",
    "build_inputs",
    "partial_features",
    "random_rotations",
    "store_segment_codes",
]


def make_record(tree: CanonicalTree, seg_cfg: SegmentConfig) -> dict[str, np.ndarray]:
    """A :class:`CanonicalTree` as arrays (segments resampled and normalised)."""
    k = tree.n_nodes
    s = seg_cfg.n_samples
    seg = np.zeros((k, s, 5), dtype=np.float32)
    end = np.zeros((k, 4), dtype=np.float32)
    end[0, 3] = 1.0
    arc = np.zeros(k, dtype=np.float32)
    chord = np.zeros(k, dtype=np.float32)
    for i in range(1, k):
        c = tree.curves[i]
        samples, a, ch = resample_segment(c, s, power=seg_cfg.curvature_power)
        seg[i] = samples
        d = c[-1, :3] - c[0, :3]
        end[i, :3] = d / max(ch, 1e-3)
        end[i, 3] = c[-1, 3] / max(c[0, 3], 1e-6)
        arc[i], chord[i] = a, ch
    frame = Frame.of_points(tree.dense_points()[:, :3])
    return {
        "pos": tree.positions.astype(np.float32),
        "rad": tree.radii.astype(np.float32),
        "parent": tree.parent.astype(np.int64),
        "seg": seg.astype(np.float16),
        "end": end,
        "arc": arc,
        "chord": chord,
        "centre": np.asarray(frame.centre, dtype=np.float32),
        "scale": np.asarray([frame.scale], dtype=np.float32),
    }


def to_data(record: dict[str, np.ndarray]) -> Data:
    """A record as a torch_geometric ``Data`` (edges parent -> child; frame as graph attributes)."""
    par = record["parent"]
    child = np.flatnonzero(par >= 0)
    return Data(
        pos=torch.from_numpy(np.asarray(record["pos"], np.float32)),
        rad=torch.from_numpy(np.asarray(record["rad"], np.float32)),
        edge_index=torch.from_numpy(np.stack([par[child], child]).astype(np.int64)),
        seg=torch.from_numpy(np.asarray(record["seg"], np.float32)),
        end=torch.from_numpy(np.asarray(record["end"], np.float32)),
        chord=torch.from_numpy(np.asarray(record["chord"], np.float32)),
        centre=torch.from_numpy(np.asarray(record["centre"], np.float32)).view(1, 3),
        scale=torch.from_numpy(np.asarray(record["scale"], np.float32)).view(1),
        num_nodes=len(par),
    )


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) uniformly random proper rotations."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    flip = np.linalg.det(q) < 0
    q[flip, :, 0] *= -1
    return q


def _onehot(count: torch.Tensor, ncls: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(count.clamp(0, ncls - 1), ncls).float()


def partial_features(
    ua: torch.Tensor,
    ub: torch.Tensor,
    na: torch.Tensor,
    nb: torch.Tensor,
    query: torch.Tensor,
    semi: torch.Tensor,
    *,
    octaves: int,
    ncls: int,
    domain: float,
) -> torch.Tensor:
    """Partial-tree token features (..., part_dim) from end positions, child counts and flags."""
    return torch.cat(
        [
            lift(ua, octaves, domain=(-domain, domain)),
            lift(ub, octaves, domain=(-domain, domain)),
            _onehot(na, ncls),
            _onehot(nb, ncls),
            query[..., None].float(),
            semi[..., None].float(),
        ],
        dim=-1,
    )


@torch.no_grad()
def segment_codes(seg_ae: SegmentAE, samples: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(N, S, 5) samples -> (N, z) codes with the (frozen) segment encoder, in chunks."""
    was = seg_ae.training
    seg_ae.eval()
    out = [seg_ae.encode(samples[i : i + chunk]) for i in range(0, len(samples), chunk)]
    seg_ae.train(was)
    return torch.cat(out) if out else samples.new_zeros(0, seg_ae.config.z_dim)


def build_inputs(
    records: list[dict[str, np.ndarray]],
    seg_ae: SegmentAE,
    tree_ae: TreeAE,
    *,
    rng: np.random.Generator | None = None,
    split: bool = True,
    device: torch.device | str = "cpu",
    zseg: torch.Tensor | None = None,
    augment: bool = True,
    rotate: bool = True,
    queries: int = 1,
) -> dict[str, torch.Tensor]:
    """Padded tokens (and, with ``split``, random decoding states of each tree with their targets).

    Parameters
    ----------
    records : list of record dicts
    seg_ae, tree_ae : the two networks (the segment encoder runs without gradient)
    rng : numpy Generator, optional
        Augments (random rotation; zoom 0.75-1.5 and translation, each with p = 0.5; jitter on
        partial-tree positions) and draws the splits. None: no augmentation.
    split : bool
        Also build the partial-tree tokens and targets of one random decoding state per tree.
    zseg : (N, z) tensor, optional
        Raw segment codes of the packed nodes (skips the encoder; only without rotation).
    augment : bool
        With ``rng``: augment (True) or only draw the splits (False).
    rotate : bool
        Include random rotations in the augmentation. Without them the segment codes stored in
        the records (``record["zseg"]``, set by :func:`store_segment_codes`) are reused, which
        saves the segment encoder pass.
    queries : int
        Decoding states per tree. 1: one state drawn by :func:`random_split`. More: up to that
        many distinct states per tree, drawn uniformly from the state before the root and every
        node with children (each state is one row of the partial-tree tensors; ``rows`` maps the
        rows to their trees). Every row shares its tree's code, so one encoder pass supervises
        several decoding steps.

    Returns
    -------
    dict with ``tokens`` (B, T, full_dim), ``mask`` (B, T) and, with ``split``, ``ptokens``
    (R, P, part_dim), ``pmask`` (R, P), ``rows`` (R,) the tree of each row and ``target`` (dict of
    (R, C, ...) tensors, ``valid`` (R, C) bool); R = B with ``queries=1``. Also ``batch`` (the
    torch_geometric Batch), ``u`` (N, 3) normalised positions, ``zseg_raw`` (N, z).
    """
    cfg: TreeAEConfig = tree_ae.config
    ncls = cfg.max_children + 1
    device = torch.device(device)
    batch = Batch.from_data_list([to_data(r) for r in records]).to(device)
    b = batch.num_graphs
    bidx = batch.batch
    n = batch.num_nodes
    src, dst = batch.edge_index
    parent = torch.arange(n, device=device)
    parent[dst] = src
    nch = torch.bincount(src, minlength=n)
    semi = parent == torch.arange(n, device=device)

    rotated = rng is not None and augment and rotate
    if zseg is None and not rotated and all("zseg" in r for r in records):
        zseg = torch.from_numpy(np.concatenate([r["zseg"] for r in records])).float().to(device)
    if rng is not None and augment:
        rot = torch.eye(3, device=device).expand(b, 3, 3)
        if rotated:
            rot = torch.from_numpy(random_rotations(b, rng)).float().to(device)
        zoom = np.where(rng.random(b) < 0.5, rng.uniform(0.75, 1.5, b), 1.0)
        shift = np.where(rng.random((b, 1)) < 0.5, rng.uniform(-0.05, 0.05, (b, 3)), 0.0)
        zoom_t = torch.from_numpy(zoom).float().to(device)
        shift_t = torch.from_numpy(shift).float().to(device)
    else:
        rot = torch.eye(3, device=device).expand(b, 3, 3)
        zoom_t = torch.ones(b, device=device)
        shift_t = torch.zeros(b, 3, device=device)
    sc = (batch.scale * zoom_t)[bidx]
    u = torch.einsum("nij,nj->ni", rot[bidx], (batch.pos - batch.centre[bidx]) * sc[:, None])
    u = u + shift_t[bidx]
    lr = torch.log((batch.rad * sc).clamp_min(1e-6)) + LOG_RADIUS_OFFSET

    if zseg is None:
        seg = batch.seg.clone()
        seg[..., :3] = torch.einsum("nij,nsj->nsi", rot[bidx], seg[..., :3])
        zseg = torch.zeros(n, seg_ae.config.z_dim, device=device)
        nonroot = ~semi
        if nonroot.any():
            zseg[nonroot] = segment_codes(seg_ae, seg[nonroot])
    zstd = (zseg - tree_ae.zseg_mean) / tree_ae.zseg_std
    skip = (batch.chord < cfg.skip_mm) & ~semi
    zin = torch.where(skip[:, None], torch.zeros_like(zstd), zstd)

    tok = torch.cat(
        [
            tree_ae.lift_pos(u[parent]),
            tree_ae.lift_pos(u),
            lr[parent, None],
            lr[:, None],
            _onehot(nch[parent], ncls),
            _onehot(nch, ncls),
            zin,
            skip[:, None].float(),
            semi[:, None].float(),
        ],
        dim=-1,
    )
    tokens, mask = to_dense_batch(tok, bidx, batch_size=b)
    out: dict = {"tokens": tokens, "mask": mask, "batch": batch, "u": u, "zseg_raw": zseg}
    if not split:
        return out

    split_rng = rng if rng is not None else np.random.default_rng(0)
    ptr = batch.ptr.cpu().numpy()
    paths: list[np.ndarray] = []
    qlist: list[int] = []
    targets: list[np.ndarray] = []
    rows: list[int] = []
    for g, rec in enumerate(records):
        for q, tg in _states(rec["parent"], split_rng, queries):
            paths.append(root_path(rec["parent"], q) + ptr[g] if q >= 0 else np.zeros(0, np.int64))
            qlist.append(q + ptr[g] if q >= 0 else -1)
            targets.append(tg + ptr[g])
            rows.append(g)
    b = len(rows)
    row_t = torch.as_tensor(rows, dtype=torch.long, device=device)
    pmax = max((len(p) for p in paths), default=0)
    pidx = torch.full((b, pmax), -1, dtype=torch.long)
    for g, p in enumerate(paths):
        pidx[g, : len(p)] = torch.from_numpy(p)
    pidx = pidx.to(device)
    pmask = pidx >= 0
    safe = pidx.clamp_min(0)
    uj = u
    if rng is not None and augment and cfg.jitter > 0:
        uj = u + cfg.jitter * torch.from_numpy(rng.normal(size=(n, 3))).float().to(device)
    qt = torch.tensor(qlist, device=device)
    ptok = partial_features(
        uj[parent[safe]],
        uj[safe],
        nch[parent[safe]],
        nch[safe],
        safe == qt[:, None],
        semi[safe],
        octaves=cfg.octaves,
        ncls=ncls,
        domain=cfg.pos_domain,
    )
    ptok = ptok * pmask[..., None]
    c = cfg.max_children
    tidx = torch.full((b, c), -1, dtype=torch.long)
    for g, t in enumerate(targets):
        tidx[g, : len(t)] = torch.from_numpy(t[:c])
    tidx = tidx.to(device)
    valid = tidx >= 0
    ts = tidx.clamp_min(0)
    # children relative to the query (ours) or absolute; the root is always absolute
    origin = torch.zeros(b, 1, 3, device=device)
    if cfg.relative:
        has_q = qt >= 0
        origin[has_q, 0] = u[qt[has_q]]
    out.update(
        ptokens=ptok,
        pmask=pmask,
        rows=row_t,
        target={
            "pos": tree_ae.lift_pos(u[ts] - origin),
            "xyz": u[ts] - origin,
            "topo": nch[ts].clamp_max(c),
            "rad": lr[ts],
            "zseg": zstd[ts],
            "skip": skip[ts].float(),
            "has_seg": (~semi[ts]).float(),
            "valid": valid,
        },
    )
    return out


def _states(
    parent: np.ndarray, rng: np.random.Generator, queries: int
) -> list[tuple[int, np.ndarray]]:
    """Decoding states ``(query, children)`` of one tree (query -1: the root is the target)."""
    if queries <= 1:
        _, q, tg = random_split(parent, rng)
        return [(q, tg)]
    par = np.asarray(parent, dtype=np.int64)
    root = int(np.flatnonzero(par < 0)[0])
    kids: list[list[int]] = [[] for _ in range(len(par))]
    for i in np.flatnonzero(par >= 0):
        kids[par[i]].append(int(i))
    cand = [-1] + [v for v in range(len(par)) if kids[v]]
    pick = rng.permutation(len(cand))[:queries]
    return [
        (cand[i], np.asarray([root] if cand[i] < 0 else kids[cand[i]], dtype=np.int64))
        for i in sorted(pick)
    ]


@torch.no_grad()
def store_segment_codes(records: list[dict], seg_ae: SegmentAE, *, chunk: int = 256) -> None:
    """Add ``record["zseg"]`` (K, z) float32, the unrotated segment codes (zeros at the root)."""
    dev = next(seg_ae.parameters()).device
    for i in range(0, len(records), chunk):
        part = records[i : i + chunk]
        seg = torch.from_numpy(np.concatenate([np.asarray(r["seg"], np.float32) for r in part]))
        z = segment_codes(seg_ae, seg.to(dev)).cpu().numpy()
        a = 0
        for r in part:
            k = len(r["parent"])
            r["zseg"] = z[a : a + k].copy()
            r["zseg"][0] = 0.0
            a += k
