"""Training and validation trees for VeTTA, and their on-disk cache.

Sources (all reduced to :class:`~vesseltree.vetta.tree.CanonicalTree`):

- synthetic trees from :func:`vesseltree.synth.random_tree` (coronary and brain presets), cropped
  to sub-trees of at most 60 mm arc length from their root;
- the 616 VesselVAE trees in mm (intracranial arteries of the IntrA models), split into training
  and validation **by IntrA model number**; the 615 ``p10`` copies are left out, as their
  coordinates are normalised to the unit cube, not mm (:func:`is_unit_box_file`);
- the TubeTK brain MRA masks: :func:`vesseltree.centerline.extract_graph`, every component made a
  tree, then cropped; the 10 masks with gold centerlines are held out, and their gold centerlines
  (cropped the same way) are validation trees.

Cached sets are plain tensors (:func:`pack_trees`), loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_path
from ..errors import FileFormatError, InvalidInputError
from .tree import CanonicalTree, canonical_tree, crop_subtrees

__all__ = [
    "GOLD_NUMBERS",
    "is_unit_box_file",
    "vesselvae_split",
    "vesselvae_trees",
    "synthetic_trees",
    "tubetk_mask_trees",
    "tubetk_gold_trees",
    "pack_trees",
    "unpack_trees",
    "prepare",
]

log = logging.getLogger(__name__)

#: TubeTK masks that have gold-standard centerlines (held out for validation)
GOLD_NUMBERS = (2, 3, 4, 6, 8, 9, 10, 11, 12, 17)


def is_unit_box_file(path: str | os.PathLike) -> bool:
    """True for the VesselVAE ``p10*`` files: their coordinates and radii lie in the unit cube
    (normalised per tree), not in mm, so no distance measured on them is in mm (all 615 of them
    span at most 1.0 unit; the 616 other files span 2.7-27 mm)."""
    return Path(path).name.startswith("p10")


def _unit_box_tree(tree: CanonicalTree) -> bool:
    return str(tree.meta.get("source", "")).startswith("vesselvae:p10")


def vesselvae_split(
    data_dir: str | os.PathLike,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    unit_box: bool = False,
) -> tuple[list[Path], list[Path]]:
    """VesselVAE files split into training and validation by IntrA model number (never by file).

    The split is drawn over every model, then the unit-cube ``p10`` copies are left out of both
    sides unless ``unit_box`` (see :func:`is_unit_box_file`).
    """
    from ..io.datasets import vesselvae_model_id

    files = sorted(Path(data_dir, "vesselvae_trees").glob("*.dat"))
    if not files:
        raise InvalidInputError(f"no VesselVAE .dat files under {str(Path(data_dir))!r}")
    ids = np.array([vesselvae_model_id(f) for f in files])
    models = np.unique(ids)
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(val_fraction * len(models))))
    val_models = set(rng.permutation(models)[:n_val].tolist())
    keep = [unit_box or not is_unit_box_file(f) for f in files]
    train = [f for f, i, k in zip(files, ids, keep) if k and i not in val_models]
    val = [f for f, i, k in zip(files, ids, keep) if k and i in val_models]
    return train, val


def vesselvae_trees(
    files, *, max_segment_mm: float = 30.0, max_children: int = 3
) -> list[CanonicalTree]:
    from ..io.datasets import read_vesselvae_tree

    out = []
    for f in files:
        t = canonical_tree(
            read_vesselvae_tree(f), max_segment_mm=max_segment_mm, max_children=max_children
        )
        if t.n_nodes >= 2:
            t.meta["source"] = f"vesselvae:{Path(f).name}"
            out.append(t)
    return out


def _crops(
    tree: CanonicalTree, rng, n: int, max_arc_mm: float, max_nodes: int
) -> list[CanonicalTree]:
    return [
        c
        for c in crop_subtrees(tree, max_arc_mm=max_arc_mm, n=n, rng=rng)
        if c.n_nodes <= max_nodes
    ]


def synthetic_trees(
    n: int,
    *,
    seed: int = 0,
    max_arc_mm: float = 60.0,
    max_nodes: int = 40,
    max_segment_mm: float = 30.0,
) -> list[CanonicalTree]:
    """``n`` synthetic sub-trees (coronary and brain presets, 3 to 15 branches before cropping)."""
    from ..synth import random_tree

    rng = np.random.default_rng(seed)
    out: list[CanonicalTree] = []
    k = 0
    while len(out) < n and k < 20 * n:
        preset = ("coronary", "brain")[k % 2]
        g = random_tree(
            seed=int(seed * 100_003 + k), n_branches=int(rng.integers(3, 16)), preset=preset
        )
        k += 1
        t = canonical_tree(g, max_segment_mm=max_segment_mm)
        crops = _crops(t, rng, 2, max_arc_mm, max_nodes)
        for c in crops[: n - len(out)]:
            c.meta["source"] = f"synthetic:{preset}:{k - 1}"
            out.append(c)
    return out


def _mask_number(path: Path) -> int:
    m = re.search(r"(\d+)", path.name)
    return int(m.group(1)) if m else -1


def _graph_crops(
    graph, rng, n, max_arc_mm, max_nodes, max_segment_mm, source: str
) -> list[CanonicalTree]:
    """Up to ``n`` random sub-tree crops of a graph's components longer than 20 mm."""
    got: list[CanonicalTree] = []
    for comp in graph.components():
        # a component needs a branch (3 nodes) and some length to give a useful crop
        if comp.total_length < 20.0 or comp.n_nodes < 3:
            continue
        t = canonical_tree(comp.to_tree(), max_segment_mm=max_segment_mm)
        got += _crops(t, rng, n, max_arc_mm, max_nodes)
    rng.shuffle(got)
    for c in got[:n]:
        c.meta["source"] = source
    return got[:n]


def tubetk_mask_trees(
    data_dir: str | os.PathLike,
    numbers,
    *,
    per_mask: int = 20,
    seed: int = 0,
    max_arc_mm: float = 40.0,
    max_nodes: int = 40,
    max_segment_mm: float = 30.0,
) -> list[CanonicalTree]:
    """Sub-trees of the centerlines extracted from the TubeTK masks with the given numbers."""
    from ..centerline import extract_graph
    from ..io import read_volume

    rng = np.random.default_rng(seed)
    out: list[CanonicalTree] = []
    for num in map(int, numbers):
        path = Path(data_dir, "tubetk", "masks", f"labels-{int(num):03d}.nii.gz")
        if not path.is_file():
            continue
        graph = extract_graph(read_volume(path), on_empty="warn")
        got = _graph_crops(
            graph, rng, per_mask, max_arc_mm, max_nodes, max_segment_mm, f"tubetk_mask:{num:03d}"
        )
        out += got
        log.info("tubetk mask %03d: %d sub-trees", num, len(got))
    return out


def tubetk_gold_trees(
    data_dir: str | os.PathLike,
    numbers=GOLD_NUMBERS,
    *,
    per_case: int = 10,
    seed: int = 0,
    max_arc_mm: float = 40.0,
    max_nodes: int = 40,
    max_segment_mm: float = 30.0,
) -> list[CanonicalTree]:
    """Sub-trees of the TubeTK gold-standard centerlines (thinned to ~0.5 mm node spacing)."""
    from ..io.datasets import read_tubetk_centerlines

    rng = np.random.default_rng(seed)
    out: list[CanonicalTree] = []
    for num in map(int, numbers):
        path = Path(data_dir, "tubetk", "centerlines", f"VascularNetwork-{int(num):03d}.vtp")
        if not path.is_file():
            continue
        graph = read_tubetk_centerlines(path, min_spacing_mm=0.5)
        out += _graph_crops(
            graph, rng, per_case, max_arc_mm, max_nodes, max_segment_mm, f"tubetk_gold:{num:03d}"
        )
    return out


def pack_trees(trees: list[CanonicalTree]) -> dict[str, Any]:
    """Canonical trees as a few flat tensors (for ``torch.save``; curves stored in float32)."""
    n_nodes = torch.tensor([t.n_nodes for t in trees], dtype=torch.int64)
    curve_len = torch.tensor([len(c) for t in trees for c in t.curves], dtype=torch.int64)
    return {
        "n_nodes": n_nodes,
        "positions": torch.from_numpy(
            np.concatenate([t.positions for t in trees]).astype(np.float32)
        ),
        "radii": torch.from_numpy(np.concatenate([t.radii for t in trees]).astype(np.float32)),
        "parent": torch.from_numpy(np.concatenate([t.parent for t in trees]).astype(np.int64)),
        "curve_len": curve_len,
        "curves": torch.from_numpy(
            np.concatenate([c for t in trees for c in t.curves]).astype(np.float32)
        ),
        "sources": [str(t.meta.get("source", "")) for t in trees],
    }


def unpack_trees(packed: dict[str, Any]) -> list[CanonicalTree]:
    try:
        nn = packed["n_nodes"].tolist()
        pos = packed["positions"].double().numpy()
        rad = packed["radii"].double().numpy()
        par = packed["parent"].numpy()
        cl = packed["curve_len"].tolist()
        curves_flat = packed["curves"].double().numpy()
        sources = list(packed["sources"])
    except (KeyError, AttributeError, TypeError) as exc:
        raise FileFormatError(f"not a packed VeTTA tree set: {exc}") from exc
    out = []
    a = c = p = 0
    for k, n in enumerate(nn):
        curves = []
        for _ in range(n):
            curves.append(curves_flat[p : p + cl[c]])
            p += cl[c]
            c += 1
        out.append(
            CanonicalTree(
                pos[a : a + n], rad[a : a + n], par[a : a + n], curves, {"source": sources[k]}
            )
        )
        a += n
    return out


def save_sets(path: str | os.PathLike, sets: dict[str, list[CanonicalTree]], meta: dict) -> None:
    import io
    import json

    buf = io.BytesIO()
    torch.save({k: pack_trees(v) for k, v in sets.items()} | {"meta": json.dumps(meta)}, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_sets(path: str | os.PathLike) -> tuple[dict[str, list[CanonicalTree]], dict]:
    """Tree sets written by :func:`save_sets`.

    Caches written before the unit-cube ``p10`` VesselVAE copies were left out still hold them;
    they are dropped here (and ``meta["counts"]`` recounted), so every reader sees the same sets.
    """
    import json

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(raw.pop("meta"))
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad cache file
        raise FileFormatError(f"cannot read VeTTA tree sets {str(path)!r}: {exc}") from exc
    sets = {k: [t for t in unpack_trees(v) if not _unit_box_tree(t)] for k, v in raw.items()}
    if "counts" in meta:
        meta["counts"] = {k: len(v) for k, v in sets.items()}
    return sets, meta


def prepare(
    data_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    *,
    n_synthetic: int = 1500,
    tubetk_per_mask: int = 15,
    seed: int = 0,
    refresh: bool = False,
) -> tuple[dict[str, list[CanonicalTree]], dict]:
    """Build (or load from ``cache_dir``) the VeTTA tree sets.

    Returns ``sets`` with ``train`` (synthetic + VesselVAE training models + TubeTK masks that
    are not held out), ``val_vesselvae`` (the validation models), ``val_tubetk_gold`` (gold
    centerline sub-trees of the 10 held-out masks) and ``val_tubetk_mask`` (extracted sub-trees of
    the held-out masks), and a ``meta`` dict describing them. Without ``data_dir`` (no real data)
    only synthetic sets are made.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    key = f"trees_s{seed}_n{n_synthetic}_t{tubetk_per_mask}_{'real' if data_dir else 'synth'}.pt"
    path = cache / key
    if path.is_file() and not refresh:
        return load_sets(path)
    synth = synthetic_trees(n_synthetic, seed=seed)
    synth_val = synthetic_trees(max(4, n_synthetic // 20), seed=seed + 9973)
    sets: dict[str, list[CanonicalTree]] = {"train": list(synth), "val_synthetic": synth_val}
    meta: dict[str, Any] = {"seed": seed, "synthetic_train": len(synth)}
    if data_dir is not None:
        tr_files, va_files = vesselvae_split(data_dir, seed=seed)
        vv_train = vesselvae_trees(tr_files)
        sets["val_vesselvae"] = vesselvae_trees(va_files)
        from ..io.datasets import vesselvae_model_id

        meta["vesselvae_val_models"] = sorted({vesselvae_model_id(f) for f in va_files})
        masks = sorted(Path(data_dir, "tubetk", "masks").glob("labels-*.nii.gz"))
        numbers = [_mask_number(p) for p in masks]
        train_nums = [n for n in numbers if n not in GOLD_NUMBERS]
        tk_train = tubetk_mask_trees(data_dir, train_nums, per_mask=tubetk_per_mask, seed=seed)
        sets["val_tubetk_mask"] = tubetk_mask_trees(data_dir, GOLD_NUMBERS, per_mask=4, seed=seed)
        sets["val_tubetk_gold"] = tubetk_gold_trees(data_dir, GOLD_NUMBERS, per_case=4, seed=seed)
        sets["train"] += vv_train + tk_train
        meta.update(
            vesselvae_train=len(vv_train),
            vesselvae_train_files=len(tr_files),
            tubetk_train_masks=len(train_nums),
            tubetk_train=len(tk_train),
            tubetk_heldout_masks=list(GOLD_NUMBERS),
        )
    meta["counts"] = {k: len(v) for k, v in sets.items()}
    save_sets(path, sets, meta)
    return sets, meta
