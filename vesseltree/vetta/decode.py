"""Recursive decoding of tree codes into trees that are valid by construction.

Breadth-first: the first step (an empty partial tree) gives the root; then every open node (one
predicted to have children and not yet expanded) is a query: the decoder sees the root-to-query
path and the tree code, its slots are clustered (average linkage, in the lifted space) into as
many groups as the query was predicted to have children, and each group becomes one new child.
Every new node gets exactly one parent that already exists, so the result is always a rooted
tree. Hard caps (``max_nodes``, ``max_depth``) make every decode end, whatever the code.
Queries of all trees in a batch are decoded together, one network call per round.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from .batch import partial_features
from .fourier import FourierLookup
from .models import LOG_RADIUS_OFFSET, SegmentAE, TreeAE
from .tree import CanonicalTree, Frame

__all__ = ["DecodedTree", "decode_codes", "render", "target_decoded"]


@dataclass
class DecodedTree:
    """Decoded key nodes in the normalised frame (before rendering the segments)."""

    u: np.ndarray  # (K, 3) positions, normalised
    lr: np.ndarray  # (K,) log radius + offset, normalised
    n_children: np.ndarray  # (K,) predicted child counts (after the caps)
    zseg: np.ndarray  # (K, zs) raw segment codes (row 0 unused)
    skip: np.ndarray  # (K,) bool: draw the segment straight
    parent: np.ndarray  # (K,) -1 at the root
    capped: bool  # a cap cut the expansion short


def _cluster(vectors: np.ndarray, k: int) -> list[np.ndarray]:
    """Average-linkage agglomerative clustering of a few vectors into ``k`` groups."""
    n = len(vectors)
    if k <= 1 or n <= 1:
        return [np.arange(n)]
    d = np.sqrt(((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    members = [[i] for i in range(n)]
    alive = np.ones(n, dtype=bool)
    for _ in range(n - min(k, n)):
        i, j = np.unravel_index(np.argmin(d), d.shape)
        i, j = min(i, j), max(i, j)
        ni, nj = len(members[i]), len(members[j])
        # Lance-Williams update for average linkage
        d[i, :] = (ni * d[i, :] + nj * d[j, :]) / (ni + nj)
        d[:, i] = d[i, :]
        d[i, i] = np.inf
        d[j, :] = np.inf
        d[:, j] = np.inf
        members[i] += members[j]
        members[j] = []
        alive[j] = False
    return [np.asarray(sorted(members[i])) for i in np.flatnonzero(alive)]


def _position(lookup: FourierLookup, lifted: np.ndarray, plain: np.ndarray, window: float):
    """(n, 3) positions: the lifted prediction inverted within ``window`` of the plain one."""
    if window <= 0:
        return plain.astype(np.float64)
    return lookup.invert(
        torch.from_numpy(lifted), near=torch.from_numpy(plain), window=window
    ).numpy()


@torch.no_grad()
def decode_codes(
    tree_ae: TreeAE, z: torch.Tensor, lookup: FourierLookup, *, max_batch: int = 512
) -> list[DecodedTree]:
    """Decode (B, z_dim) tree codes into key-node trees (see the module docstring)."""
    cfg = tree_ae.config
    ncls = cfg.max_children + 1
    was = tree_ae.training
    tree_ae.eval()
    device = z.device
    b = z.shape[0]
    zstd = tree_ae.zseg_std.cpu().numpy()
    zmean = tree_ae.zseg_mean.cpu().numpy()

    def heads_np(out: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    # root step: empty partial trees; K = 1 (all slots averaged)
    empty = torch.zeros(b, 0, tree_ae.part_dim, device=device)
    out = heads_np(
        tree_ae.decode_step(z, empty, torch.zeros(b, 0, dtype=torch.bool, device=device))
    )
    states = []
    for g in range(b):
        mean = {k: v[g].mean(0) for k, v in out.items()}
        u0 = _position(lookup, mean["pos"][None], mean["xyz"][None], cfg.refine_window)[0]
        count = int(np.argmax(mean["topo"]))
        if cfg.max_nodes < 2 or cfg.max_depth < 1:
            count = 0
        states.append(
            {
                "u": [u0],
                "lr": [float(mean["rad"][0])],
                "n": [count],
                "zseg": [np.zeros(tree_ae.z_seg_dim)],
                "skip": [False],
                "parent": [-1],
                "depth": [0],
                "queue": deque([0] if count > 0 else []),
                "capped": False,
            }
        )
    while True:
        jobs = []
        for g, st in enumerate(states):
            while st["queue"] and len(jobs) < max_batch:
                jobs.append((g, st["queue"].popleft()))
        if not jobs:
            break
        # partial tokens: the root-to-query path of each job
        paths = []
        for g, q in jobs:
            par = states[g]["parent"]
            p = [q]
            while par[p[-1]] >= 0:
                p.append(par[p[-1]])
            paths.append(p[::-1])
        pmax = max(len(p) for p in paths)
        nj = len(jobs)
        ua = np.zeros((nj, pmax, 3))
        ub = np.zeros((nj, pmax, 3))
        na = np.zeros((nj, pmax), np.int64)
        nb = np.zeros((nj, pmax), np.int64)
        qf = np.zeros((nj, pmax), bool)
        sf = np.zeros((nj, pmax), bool)
        pm = np.zeros((nj, pmax), bool)
        for j, ((g, q), p) in enumerate(zip(jobs, paths)):
            st = states[g]
            for s, v in enumerate(p):
                a = st["parent"][v] if st["parent"][v] >= 0 else v
                ua[j, s], ub[j, s] = st["u"][a], st["u"][v]
                na[j, s], nb[j, s] = st["n"][a], st["n"][v]
                qf[j, s], sf[j, s], pm[j, s] = v == q, a == v, True
        t = lambda x, dt=torch.float32: torch.as_tensor(x, dtype=dt, device=device)  # noqa: E731
        ptok = partial_features(
            t(ua),
            t(ub),
            t(na, torch.long),
            t(nb, torch.long),
            t(qf, torch.bool),
            t(sf, torch.bool),
            octaves=cfg.octaves,
            ncls=ncls,
            domain=cfg.pos_domain,
        )
        ptok = ptok * t(pm)[..., None]
        zj = z[torch.as_tensor([g for g, _ in jobs], device=device)]
        out = heads_np(tree_ae.decode_step(zj, ptok, t(pm, torch.bool)))
        new: list[tuple[int, int, dict[str, np.ndarray]]] = []  # (tree, parent, mean heads)
        for j, (g, q) in enumerate(jobs):
            st = states[g]
            room = cfg.max_nodes - len(st["parent"]) - sum(1 for h, *_ in new if h == g)
            k = min(st["n"][q], room)
            if k < st["n"][q]:
                st["capped"] = True
            if k <= 0:
                st["n"][q] = 0
                continue
            topo_p = np.exp(out["topo"][j] - out["topo"][j].max(-1, keepdims=True))
            topo_p /= topo_p.sum(-1, keepdims=True)
            groups = _cluster(np.concatenate([out["pos"][j], topo_p], axis=1), k)
            st["n"][q] = len(groups)
            for grp in groups:
                new.append((g, q, {key: v[j][grp].mean(0) for key, v in out.items()}))
        if not new:
            continue
        # one table lookup for every new child of this round
        u_new = _position(
            lookup,
            np.stack([m["pos"] for *_, m in new]),
            np.stack([m["xyz"] for *_, m in new]),
            cfg.refine_window,
        )
        for (g, q, mean), uc in zip(new, u_new):
            st = states[g]
            if cfg.relative:
                uc = uc + st["u"][q]
            depth = st["depth"][q] + 1
            count = int(np.argmax(mean["topo"]))
            if depth >= cfg.max_depth and count > 0:
                count = 0
                st["capped"] = True
            st["u"].append(uc)
            st["lr"].append(float(mean["rad"][0]))
            st["n"].append(count)
            st["zseg"].append(mean["zseg"] * zstd + zmean)
            st["skip"].append(bool(mean["skip"][0] > 0))
            st["parent"].append(q)
            st["depth"].append(depth)
            if count > 0:
                st["queue"].append(len(st["parent"]) - 1)
    tree_ae.train(was)
    result = []
    for st in states:
        par = np.asarray(st["parent"], np.int64)
        nch = np.bincount(par[1:], minlength=len(par)).astype(np.int64)
        result.append(
            DecodedTree(
                np.asarray(st["u"], float).reshape(-1, 3),
                np.asarray(st["lr"], float),
                nch,
                np.asarray(st["zseg"], float).reshape(len(par), -1),
                np.asarray(st["skip"], bool),
                par,
                bool(st["capped"]),
            )
        )
    return result


@torch.no_grad()
def target_decoded(inputs: dict, records: list[dict], skip_mm: float) -> list[DecodedTree]:
    """The trees exactly as the tree AE is trained to predict them (no tree AE involved).

    ``inputs`` is :func:`~vesseltree.vetta.batch.build_inputs` of ``records`` without
    augmentation: its normalised positions ``u``, log radii and raw segment codes are the
    training targets. :func:`render` of these gives the reconstruction floor set by the segment
    AE alone (a diagnostic: a frame or reference-point mismatch between training and rendering
    shows up here).
    """
    b = inputs["batch"]
    ptr = b.ptr.cpu().numpy()
    u = inputs["u"].double().cpu().numpy()
    lr = (torch.log((b.rad * b.scale[b.batch]).clamp_min(1e-6)) + LOG_RADIUS_OFFSET).cpu().numpy()
    zs = inputs["zseg_raw"].double().cpu().numpy()
    out = []
    for g, rec in enumerate(records):
        a, e = ptr[g], ptr[g + 1]
        par = np.asarray(rec["parent"], np.int64)
        skip = np.asarray(rec["chord"]) < skip_mm
        skip[par < 0] = False
        nch = np.bincount(par[par >= 0], minlength=len(par)).astype(np.int64)
        out.append(DecodedTree(u[a:e], lr[a:e], nch, zs[a:e], skip, par.copy(), False))
    return out


@torch.no_grad()
def render(
    decoded: DecodedTree, frame: Frame, seg_ae: SegmentAE, *, step_mm: float = 0.5
) -> CanonicalTree:
    """Key nodes in mm, and each segment drawn by the segment decoder (straight where skipped)."""
    pos = frame.to_mm(decoded.u)
    rad = np.exp(decoded.lr - LOG_RADIUS_OFFSET) / frame.scale
    k = len(decoded.parent)
    curves: list[np.ndarray] = [np.concatenate([pos[0], [rad[0]]])[None]]
    jobs = []
    for i in range(1, k):
        a = decoded.parent[i]
        chord = float(np.linalg.norm(pos[i] - pos[a]))
        m = int(np.clip(np.ceil(chord / step_mm) + 1, 2, 64))
        t = np.linspace(0.0, 1.0, m)
        if decoded.skip[i] or chord < 1e-6:
            pts = np.outer(1 - t, np.append(pos[a], rad[a])) + np.outer(
                t, np.append(pos[i], rad[i])
            )
            curves.append(pts)
        else:
            curves.append(None)
            jobs.append((i, a, chord, t))
    if jobs:
        dev = next(seg_ae.parameters()).device
        mmax = max(len(j[3]) for j in jobs)
        zs = torch.as_tensor(np.stack([decoded.zseg[i] for i, *_ in jobs]), dtype=torch.float32)
        end = np.zeros((len(jobs), 4))
        tt = np.ones((len(jobs), mmax))
        for r, (i, a, chord, t) in enumerate(jobs):
            end[r, :3] = (pos[i] - pos[a]) / chord
            end[r, 3] = rad[i] / rad[a]
            tt[r, : len(t)] = t
        was = seg_ae.training
        seg_ae.eval()
        pts = (
            seg_ae.decode(
                zs.to(dev),
                torch.as_tensor(end, dtype=torch.float32, device=dev),
                torch.as_tensor(tt, dtype=torch.float32, device=dev),
            )
            .cpu()
            .double()
            .numpy()
        )
        seg_ae.train(was)
        for r, (i, a, chord, t) in enumerate(jobs):
            p = pts[r, : len(t)]
            xyz = pos[a] + chord * p[:, :3]
            rr = rad[a] * np.maximum(p[:, 3], 1e-3)
            # the end factor makes both ends exact; pin them to remove float round-off
            xyz[0], xyz[-1], rr[0], rr[-1] = pos[a], pos[i], rad[a], rad[i]
            curves[i] = np.concatenate([xyz, rr[:, None]], axis=1)
    return CanonicalTree(
        pos, rad, decoded.parent.copy(), curves, {"capped": decoded.capped, "source": "vetta"}
    )
