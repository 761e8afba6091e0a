"""Training cases with exact truth, crops around vessels, and their collation into tensors.

Two kinds of case:

- **synthetic**: a :func:`~vesseltree.synth.random_tree` rendered CT-like or MRA-like by
  :func:`~vesseltree.synth.simulate_image`; the truth centerline is the generating graph.
- **semi-synthetic**: a real mask (e.g. TubeTK) rendered MRA-like on its own grid; the truth
  centerline is :func:`~vesseltree.centerline.extract_graph` of the true mask (the geometry is real,
  the image simulated).

Each case caches, once: the normalised image, the mask, its signed distance map (mm, float16,
clipped), dense truth points (voxel indices) with radii (mm), and the template of the true mask
(the curriculum's early template). Crops cut from a case therefore cost slicing only, and the true
template can be given realistic errors (:func:`perturb_template`) so that the cascade sees
templates like the ones it gets at inference from a predicted mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from ..graph import VesselGraph
from ..metrics import sample_graph
from ..volume import Volume, world_to_voxel
from .template import graph_to_arrays, template_from_mask

__all__ = [
    "Case",
    "normalize_image",
    "make_case",
    "synthetic_case",
    "mask_case",
    "training_cases",
    "region_around_vessels",
    "tubetk_mask_paths",
    "TUBETK_GOLD",
    "signed_distance",
    "sample_crop",
    "perturb_template",
    "collate",
]

log = logging.getLogger(__name__)


def normalize_image(image: np.ndarray) -> np.ndarray:
    """Robust intensity scaling to about [0, 1]: (x - p1) / (p99.9 - p1), float32."""
    a = np.asarray(image, dtype=np.float32)
    probe = a[::2, ::2, ::2] if a.size > 2_000_000 else a
    lo, hi = np.percentile(probe, [1.0, 99.9])
    return ((a - lo) / max(float(hi - lo), 1e-6)).astype(np.float32)


@dataclass
class Case:
    """One training/validation case (arrays in the case's own voxel grid)."""

    name: str
    image: np.ndarray  # (I, J, K) float32, normalised
    mask: np.ndarray  # (I, J, K) bool
    affine: np.ndarray  # (4, 4) voxel -> world mm
    truth_vox: np.ndarray  # (M, 3) float32 dense truth centerline, voxel indices
    truth_r: np.ndarray  # (M,) float32 mm
    tpl_pos: np.ndarray  # (N, 3) float32 true template, voxel indices
    tpl_r: np.ndarray  # (N,) float32 mm
    tpl_edges: np.ndarray  # (E, 2) int64
    sdf: np.ndarray | None = None  # (I, J, K) float16 signed distance to the mask surface, mm

    def __post_init__(self):
        if self.sdf is None:  # cached once per case: crops then only slice it
            spacing = np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0)
            sdf = signed_distance(np.asarray(self.mask, bool), spacing)
            self.sdf = np.clip(sdf, -SDF_CLIP_MM, SDF_CLIP_MM).astype(np.float16)
        # fill value of crops reaching outside the image
        self.background = float(np.percentile(self.image[::4, ::4, ::4], 50))


def make_case(
    name: str, image: Volume, mask: np.ndarray, truth: VesselGraph | None, node_step_vox=1.5
):
    """Build a :class:`Case`; ``truth=None`` takes the extracted centerline of ``mask`` as truth."""
    mvol = Volume(np.asarray(mask, dtype=bool), image.affine)
    tpl = template_from_mask(mvol, node_step_vox=node_step_vox)
    if tpl is None:
        return None
    if truth is None:
        truth = tpl
    step = 0.5 * float(np.min(mvol.spacing))
    tp, tr = sample_graph(truth, step)
    tp_vox = world_to_voxel(image.affine, tp).astype(np.float32)
    pos, r, e = graph_to_arrays(tpl, image.affine)
    return Case(
        name,
        normalize_image(image.data),
        np.asarray(mask, dtype=bool),
        np.asarray(image.affine, dtype=np.float64),
        tp_vox,
        tr.astype(np.float32),
        pos,
        r,
        e,
    )


def synthetic_case(seed: int, *, modality: str = "ct", preset: str = "coronary", spacing=0.5):
    """A random tree (7-25 branches) rendered as a CT- or MRA-like image; seeded."""
    from ..synth import random_tree, simulate_image

    rng = np.random.default_rng(seed)
    tree = random_tree(seed=int(seed), n_branches=int(rng.integers(7, 26)), preset=preset)
    img = simulate_image(tree, modality=modality, seed=int(seed), spacing=spacing, margin_mm=4.0)
    return make_case(f"synth-{modality}-{seed}", img, img.meta["mask"].data, tree)


def mask_case(name: str, mask: Volume, seed: int, *, modality: str = "mra"):
    """A real mask rendered MRA-like on its own grid (semi-synthetic)."""
    from ..synth import simulate_image

    m = Volume(np.asarray(mask.data) > 0, mask.affine)
    img = simulate_image(m, modality=modality, seed=int(seed))
    return make_case(name, img, m.data, None)


def _crop_box(shape, size, centre, rng):
    start = []
    for n, c in zip(shape, centre):
        s = int(round(c)) - size // 2 + int(rng.integers(-size // 4, size // 4 + 1))
        start.append(int(np.clip(s, 0, max(n - size, 0))))
    return np.array(start)


def _take(a: np.ndarray, start, size, fill):
    """``a[start : start + size]`` per axis; parts outside ``a`` read ``fill`` (any start)."""
    out = np.full((size,) * 3, fill, dtype=a.dtype)
    src, dst = [], []
    for s, n in zip(start, a.shape):
        lo, hi = max(int(s), 0), min(int(s) + size, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - int(s), hi - int(s)))
    out[tuple(dst)] = a[tuple(src)]
    return out


#: the cached signed distance maps are clipped to +-this (mm); the SDF loss clips at 5 mm
SDF_CLIP_MM = 10.0


def signed_distance(mask: np.ndarray, spacing) -> np.ndarray:
    """Signed Euclidean distance (mm) to the mask surface: < 0 inside, > 0 outside (float32)."""
    if not mask.any():
        return np.full(mask.shape, 10.0, np.float32)
    out = distance_transform_edt(~mask, sampling=spacing)
    inside = distance_transform_edt(mask, sampling=spacing)
    return (out - inside).astype(np.float32)


def _adjacency(n: int, edges: np.ndarray) -> list[list[int]]:
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        adj[a].append(int(b))
        adj[b].append(int(a))
    return adj


def perturb_template(
    pos: np.ndarray,
    radii: np.ndarray,
    edges: np.ndarray,
    lin: np.ndarray,
    rng: np.random.Generator,
    *,
    jitter_mm: float = 0.2,
    shift_mm: tuple[float, float] = (0.5, 1.5),
    shift_reach_mm: float = 4.0,
    n_shifts_per_100: float = 3.0,
    p_drop_tip: float = 0.15,
    drop_max_nodes: int = 6,
    n_spurs_per_100: float = 1.5,
    spur_mm: tuple[float, float] = (1.5, 5.0),
):
    """Give a true template the errors a template from a predicted mask has.

    - smooth local shifts: a few Gaussian bumps (reach ``shift_reach_mm``) move nearby nodes by
      ``shift_mm`` (a branch or part of one off the true centerline), plus a small independent
      ``jitter_mm`` per node;
    - missing pieces: with probability ``p_drop_tip`` the last up to ``drop_max_nodes`` nodes of a
      tip are removed (a short terminal branch entirely, when it is shorter);
    - extra short branches: spurs of ``spur_mm`` length in random directions from random nodes
      (false positives, for the node-score head to learn to remove).

    Parameters
    ----------
    pos : (N, 3) float voxel indices; radii : (N,) mm; edges : (E, 2) int
    lin : (3, 3) voxel -> mm linear map; rng : numpy Generator

    Returns
    -------
    (pos (N', 3) float32, radii (N',) float32, edges (E', 2) int64)
    """
    pos = np.asarray(pos, np.float64)
    radii = np.asarray(radii, np.float64)
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    n = len(pos)
    if n == 0:
        return pos.astype(np.float32), radii.astype(np.float32), edges
    lin = np.asarray(lin, np.float64)
    lin_inv = np.linalg.inv(lin)
    mm = pos @ lin.T
    # smooth shifts
    k = rng.poisson(n_shifts_per_100 * n / 100.0)
    if k:
        centres = mm[rng.integers(n, size=k)]
        dirs = rng.normal(size=(k, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-9
        amp = rng.uniform(*shift_mm, size=(k, 1)) * dirs
        d2 = ((mm[:, None, :] - centres[None]) ** 2).sum(-1)
        mm = mm + np.exp(-d2 / (2 * shift_reach_mm**2)) @ amp
    if jitter_mm > 0:
        mm = mm + rng.normal(0.0, jitter_mm, mm.shape)
    radii = radii * np.exp(rng.normal(0.0, 0.15, radii.shape))
    # missing tips
    keep = np.ones(n, bool)
    if p_drop_tip > 0 and len(edges):
        deg = np.bincount(edges.ravel(), minlength=n)
        adj = _adjacency(n, edges)
        for t in np.flatnonzero(deg == 1):
            if rng.random() >= p_drop_tip:
                continue
            length = int(rng.integers(1, drop_max_nodes + 1))
            path, prev, cur = [t], -1, t
            while len(path) < length:
                nxt = [v for v in adj[cur] if v != prev]
                if len(nxt) != 1 or deg[nxt[0]] != 2:
                    break
                prev, cur = cur, nxt[0]
                path.append(cur)
            keep[path] = False
        if keep.sum() < 2:
            keep[:] = True
    remap = -np.ones(n, np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    edges = remap[edges[np.all(keep[edges], axis=1)]] if len(edges) else edges
    mm, radii = mm[keep], radii[keep]
    # extra spurs
    n = len(mm)
    n_spurs = rng.poisson(n_spurs_per_100 * n / 100.0)
    step_mm = (
        np.median(np.linalg.norm(mm[edges[:, 0]] - mm[edges[:, 1]], axis=1)) if len(edges) else 0.5
    )
    new_pos, new_r, new_e = [mm], [radii], [edges]
    nxt_id = n
    for _ in range(n_spurs):
        base = int(rng.integers(n))
        d = rng.normal(size=3)
        d /= np.linalg.norm(d) + 1e-9
        m = max(1, int(round(rng.uniform(*spur_mm) / max(step_mm, 1e-3))))
        pts = mm[base] + d[None] * step_mm * np.arange(1, m + 1)[:, None]
        ids = np.arange(nxt_id, nxt_id + m)
        new_pos.append(pts)
        new_r.append(np.full(m, 0.7 * radii[base]))
        new_e.append(np.stack([np.r_[base, ids[:-1]], ids], axis=1))
        nxt_id += m
    mm = np.concatenate(new_pos)
    return (
        (mm @ lin_inv.T).astype(np.float32),
        np.concatenate(new_r).astype(np.float32),
        np.concatenate(new_e).astype(np.int64).reshape(-1, 2),
    )


def sample_crop(
    case: Case,
    size: int,
    rng: np.random.Generator,
    *,
    jitter_mm: float = 0.0,
    template_errors: float = 0.0,
):
    """A random ``size``^3 crop centred near a truth point (90 %) or anywhere (10 %).

    Returns a dict of numpy arrays: ``image``, ``mask``, ``sdf`` (mm), ``lin`` (3, 3 voxel -> mm),
    ``affine`` (crop's 4x4), ``truth`` (M, 3 crop voxel indices), ``truth_r`` (mm), and the true
    template cut to the crop (``tpl_pos``, ``tpl_r``, ``tpl_edges``). With probability
    ``template_errors`` the template gets realistic errors (:func:`perturb_template`), otherwise
    Gaussian jitter of ``jitter_mm`` per node.
    """
    shape = case.image.shape
    if len(case.truth_vox) and rng.random() < 0.9:
        centre = case.truth_vox[rng.integers(len(case.truth_vox))]
    else:
        centre = rng.uniform(0, np.array(shape) - 1)
    start = _crop_box(shape, size, centre, rng)
    lin = case.affine[:3, :3]
    sdf = _take(case.sdf, start, size, np.float16(SDF_CLIP_MM)).astype(np.float32)
    crop_aff = case.affine.copy()
    crop_aff[:3, 3] = case.affine[:3, :3] @ start + case.affine[:3, 3]
    lo, hi = start - 0.5, start + size - 0.5
    tsel = np.all((case.truth_vox >= lo - 2) & (case.truth_vox <= hi + 2), axis=1)
    nsel = np.all((case.tpl_pos >= lo) & (case.tpl_pos <= hi - 1), axis=1)
    remap = -np.ones(len(case.tpl_pos), np.int64)
    remap[nsel] = np.arange(int(nsel.sum()))
    e = case.tpl_edges
    e = remap[e[np.all(nsel[e], axis=1)]] if len(e) else e.reshape(0, 2)
    pos = case.tpl_pos[nsel] - start
    r = case.tpl_r[nsel].copy()
    if template_errors > 0 and len(pos) and rng.random() < template_errors:
        pos, r, e = perturb_template(pos, r, e, lin, rng)
        inside = np.all((pos >= -0.5) & (pos <= size - 0.5), axis=1)
        if not inside.all():  # spurs leaving the crop are cut
            remap = -np.ones(len(pos), np.int64)
            remap[inside] = np.arange(int(inside.sum()))
            e = remap[e[np.all(inside[e], axis=1)]]
            pos, r = pos[inside], r[inside]
    elif jitter_mm > 0 and len(pos):
        d_mm = rng.normal(0.0, jitter_mm, pos.shape)
        pos = pos + d_mm @ np.linalg.inv(lin).T
        r = r * np.exp(rng.normal(0.0, 0.15, r.shape))
    return {
        "image": _take(case.image, start, size, case.background),
        "mask": _take(case.mask, start, size, False),
        "sdf": sdf,
        "lin": lin.astype(np.float32),
        "affine": crop_aff,
        "truth": (case.truth_vox[tsel] - start).astype(np.float32),
        "truth_r": case.truth_r[tsel],
        "tpl_pos": pos.astype(np.float32),
        "tpl_r": r.astype(np.float32),
        "tpl_edges": e.astype(np.int64),
    }


def collate(crops: list[dict], device) -> dict:
    """Stack crops into tensors on ``device`` (images/masks/sdf (B, 1, S, S, S); lin (B, 3, 3))."""
    import torch

    def stack(key, dtype):
        return torch.from_numpy(np.stack([c[key] for c in crops])[:, None]).to(device, dtype)

    lin = torch.from_numpy(np.stack([c["lin"] for c in crops])).to(device, torch.float32)
    return {
        "image": stack("image", torch.float32),
        "mask": stack("mask", torch.float32),
        "sdf": stack("sdf", torch.float32),
        "lin": lin,
        "lin_inv": torch.linalg.inv(lin),
        "affine": [c["affine"] for c in crops],
        "truth": [torch.from_numpy(c["truth"]).to(device) for c in crops],
        "truth_r": [
            torch.from_numpy(np.asarray(c["truth_r"], np.float32)).to(device) for c in crops
        ],
    }


#: TubeTK cases with gold-standard centerlines: validation only, never trained on
TUBETK_GOLD = ("002", "003", "004", "006", "008", "009", "010", "011", "012", "017")


def tubetk_mask_paths(data_dir, *, gold: bool = False) -> list:
    """Sorted ``labels-NNN.nii.gz`` paths under ``data_dir/tubetk/masks`` (gold or non-gold ones)."""
    from pathlib import Path

    paths = sorted((Path(data_dir) / "tubetk" / "masks").glob("labels-*.nii.gz"))
    pick = [p for p in paths if (p.name[7:10] in TUBETK_GOLD) == gold]
    return pick


def region_around_vessels(mask: Volume, size, rng) -> Volume:
    """A sub-volume of ``size`` voxels (clipped to the volume) centred on a random vessel voxel."""
    data = np.asarray(mask.data) > 0
    idx = np.argwhere(data[::2, ::2, ::2]) * 2
    shape = np.array(data.shape)
    size = np.minimum(np.array(size), shape)
    c = idx[rng.integers(len(idx))] if len(idx) else shape // 2
    start = np.clip(c - size // 2, 0, shape - size)
    sl = tuple(slice(int(a), int(a + s)) for a, s in zip(start, size))
    aff = np.array(mask.affine, dtype=np.float64)
    aff[:3, 3] = aff[:3, :3] @ start + aff[:3, 3]
    return Volume(data[sl], aff)


def training_cases(
    *,
    n_synthetic: int = 16,
    tubetk_dir=None,
    n_tubetk: int = 16,
    region=(112, 112, 80),
    seed: int = 0,
    processes: int = 1,
) -> list[Case]:
    """Synthetic CT/MRA trees (half each, coronary and brain presets) and semi-synthetic TubeTK regions.

    ``tubetk_dir`` is the shared data folder (holding ``tubetk/masks``); the gold-standard cases are
    excluded. Seeded: the same arguments give the same cases.
    """
    jobs = []
    for i in range(n_synthetic):
        jobs.append(
            ("synth", seed * 1000 + i, ("ct", "mra")[i % 2], ("coronary", "brain")[(i // 2) % 2])
        )
    if tubetk_dir is not None and n_tubetk > 0:
        paths = tubetk_mask_paths(tubetk_dir)
        for i in range(n_tubetk):
            jobs.append(
                ("tubetk", seed * 1000 + 500 + i, str(paths[i % len(paths)]), tuple(region))
            )
    if processes > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(processes) as ex:
            cases = list(ex.map(_make_job, jobs))
    else:
        cases = [_make_job(j) for j in jobs]
    return [c for c in cases if c is not None]


def _make_job(job):
    kind, s, a, b = job
    if kind == "synth":
        return synthetic_case(s, modality=a, preset=b)
    from ..io import read_volume

    rng = np.random.default_rng(s)
    sub = region_around_vessels(read_volume(a), b, rng)
    from pathlib import Path

    return mask_case(f"tubetk-{Path(a).name[7:10]}-{s}", sub, s)
