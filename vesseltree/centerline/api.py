"""`vesseltree.extract`: the front door from any segmentation to a centerline `VesselGraph`.

It reads any source (a file, a :class:`~vesseltree.Volume`, a nibabel image, a numpy array with
its voxel size, a torch tensor), optionally runs a backbone on it, tells masks, label maps and
probability maps apart, and runs :func:`~vesseltree.centerline.extract_graph` on each selected
label. Everything is in world millimetres through the source's affine.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..backbones.labelmap import label_ids, parse_labels, read_labels_json, resolve_labels
from ..errors import EmptyInputError, InvalidInputError, describe
from ..graph import VesselGraph
from ..volume import Volume
from .extract import ExtractionConfig, extract_graph, seat_graph_tips
from .labels import group_mask, joined_groups, label_joins, node_labels

__all__ = ["extract", "load_source", "to_forest"]

log = logging.getLogger(__name__)

# background voxels kept around each label's bounding box (more than the cross-section rays reach)
_CROP_MARGIN = 4


def _squeeze_leading(arr: np.ndarray, name: str) -> np.ndarray:
    """Drop leading singleton (batch, channel) axes down to 3D; anything else is an error."""
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise InvalidInputError(
            f"{name} must be a 3D volume (leading batch/channel axes of size 1 are dropped), got "
            f"shape {tuple(arr.shape)}; select one channel (e.g. probs[:, 1]) or take the argmax first"
        )
    return arr


def load_source(source, *, spacing=None, affine=None, name: str = "source") -> Volume:
    """Any supported source as a :class:`~vesseltree.Volume`.

    Parameters
    ----------
    source : str, os.PathLike, Volume, nibabel image, ndarray or torch.Tensor
        A volume file (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``); a Volume;
        a nibabel spatial image; an (I, J, K) array with ``spacing=`` or ``affine=``; a tensor of
        shape (I, J, K), (1, I, J, K) or (1, 1, I, J, K) (leading singleton axes are dropped).
    spacing : float or (3,) float, mm, optional
        Voxel size along i, j, k for an array or tensor (axis-aligned affine, origin 0).
    affine : (4, 4) float, optional
        Voxel -> world mm for an array or tensor.

    Raises
    ------
    InvalidInputError
        A wrong type, not 3D, a singular affine, a bare array without ``spacing``/``affine``, or
        ``spacing``/``affine`` given with a source that carries its own.
    FileFormatError
        A missing or unreadable file.
    """
    carries_affine = isinstance(source, (str, os.PathLike, Volume)) or (
        hasattr(source, "dataobj") and hasattr(source, "affine")
    )
    if carries_affine and (spacing is not None or affine is not None):
        raise InvalidInputError(
            f"{name} carries its own affine ({type(source).__name__}); drop spacing=/affine="
        )
    if isinstance(source, (str, os.PathLike)):
        from ..io import read_volume

        return read_volume(Path(source))
    if isinstance(source, Volume):
        return source
    if hasattr(source, "dataobj") and hasattr(source, "affine"):
        return Volume.from_nibabel(source)
    if type(source).__module__.startswith("torch"):
        import torch

        if not isinstance(source, torch.Tensor):
            raise InvalidInputError(f"{name} must be a tensor, got {describe(source)}")
        t = source.detach()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        arr = _squeeze_leading(t.cpu().numpy(), name)
    elif isinstance(source, np.ndarray):
        arr = source
        if arr.ndim != 3:
            raise InvalidInputError(
                f"{name} must be a 3D array in (i, j, k) order, got {arr.ndim}D with shape "
                f"{arr.shape}"
                + ("; drop the leading axis (arr[0])" if arr.ndim > 3 and arr.shape[0] == 1 else "")
            )
    else:
        raise InvalidInputError(
            f"{name} must be a path, Volume, nibabel image, numpy array or torch tensor, got "
            f"{describe(source)}"
        )
    if spacing is None and affine is None:
        raise InvalidInputError(
            f"{name} is a bare array without a voxel size; pass spacing=(si, sj, sk) in mm or "
            "affine= (4x4 voxel -> world mm)"
        )
    if spacing is not None and affine is not None:
        raise InvalidInputError("give spacing= or affine=, not both")
    if spacing is not None and np.ndim(spacing) == 0:
        spacing = (spacing,) * 3  # one number: isotropic voxels
    return Volume(arr, affine, spacing=spacing)


def _config(threshold, overrides: Mapping) -> dict:
    valid = {f.name for f in fields(ExtractionConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise InvalidInputError(
            f"unknown extract options {unknown}; valid ones are the ExtractionConfig fields "
            f"{sorted(valid - {'threshold'})}"
        )
    cfg = dict(overrides)
    cfg["threshold"] = threshold
    ExtractionConfig(**cfg)  # validates every value, naming the bad one
    return cfg


def _whole(data: np.ndarray) -> bool:
    """Whether a float array holds only whole numbers (checked slab by slab, no full copy)."""
    return all(bool(np.all(np.mod(slab, 1.0) == 0)) for slab in data)


def _kind(data: np.ndarray, label, per_label: bool, name: str) -> str:
    """The kind of data: "mask", "labels" or "probability", with the checks each needs."""
    if data.dtype == bool:
        return "labels" if (label is not None or per_label) else "mask"
    if data.dtype.kind in "iu":
        if data.size and data.dtype.kind == "i" and int(data.min()) < 0:
            raise InvalidInputError(
                f"{name} is an integer label map with negative values (min {int(data.min())}); "
                "labels must be >= 0 with 0 as background"
            )
        if label is not None or per_label:
            return "labels"
        return "labels" if data.size and int(data.max()) > 1 else "mask"
    if data.dtype.kind != "f":
        raise InvalidInputError(
            f"{name} must be a mask, label map or probability map, got dtype {data.dtype}"
        )
    finite = np.isfinite(data)
    if not finite.all():
        bad = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise InvalidInputError(
            f"{name} holds NaN or inf values (first at voxel {bad}: {data[bad]!r}); replace them "
            "(e.g. np.nan_to_num) before extracting"
        )
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    out_of_range = lo < -1e-6 or hi > 1 + 1e-6
    whole = (out_of_range or label is not None or per_label) and _whole(data)
    if whole and lo >= 0:
        # a label map stored as floats (nibabel's get_fdata() returns float64): whole numbers
        # beyond 1 cannot be probabilities
        return "labels"
    if out_of_range:
        raise InvalidInputError(
            f"{name} is floating point, so it is read as a probability map in [0, 1], but its values "
            f"span [{lo:.4g}, {hi:.4g}]; "
            + (
                "pass a label map as integers (e.g. data.astype(np.int32))"
                if whole
                else "rescale it (e.g. a sigmoid of logits), or pass a label map as integers"
            )
        )
    if label is not None or per_label:
        raise InvalidInputError(
            f"label=/per_label= need an integer label map, but {name} is a probability map "
            f"(dtype {data.dtype}); threshold or argmax it to labels first"
        )
    return "probability"


def _names(labels, labels_json, vol: Volume) -> dict[str, int] | None:
    if labels is not None and labels_json is not None:
        raise InvalidInputError("give labels= or labels_json=, not both")
    if labels is not None:
        return parse_labels(labels)
    if labels_json is not None:
        return read_labels_json(labels_json)
    meta = vol.meta.get("labels")
    if isinstance(meta, Mapping):
        try:
            return parse_labels(meta)
        except InvalidInputError:
            return None
    return None


def _progress(iterable, total: int, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)


def _crop(vol: Volume, sl: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, tuple[slice, ...]]:
    """Bounding box ``sl`` grown by the margin, and the affine of that sub-grid."""
    grown = tuple(
        slice(max(0, s.start - _CROP_MARGIN), min(n, s.stop + _CROP_MARGIN))
        for s, n in zip(sl, vol.shape)
    )
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in grown]
    return vol.data[grown], vol.affine @ shift, grown


def _merge(parts: list[tuple], affine, meta: dict, joins: list[dict] | None = None) -> VesselGraph:
    """One graph of the per-label graphs, with a ``label`` node attribute (each part's label,
    or an array of one label per node); ``joins`` (from :func:`.labels.label_joins`) add an
    edge each between them."""
    pos, rad, edges, lab = [], [], [], []
    data: dict[str, list[np.ndarray]] = {}
    keys = set.intersection(*(set(g.node_data) for _, g in parts)) if parts else set()
    offset = 0
    branch_offset = 0
    for lbl, g in parts:
        pos.append(g.positions)
        rad.append(g.radii)
        edges.append(g.edges + offset)
        lab.append(np.broadcast_to(np.asarray(lbl, np.int64), (g.n_nodes,)))
        for k in keys:
            v = np.asarray(g.node_data[k])
            if k == "branch":
                v = np.where(v >= 0, v + branch_offset, v)
                branch_offset = int(max(branch_offset, v.max() + 1 if v.size else 0))
            data.setdefault(k, []).append(v)
        offset += g.n_nodes
    node_data = {k: np.concatenate(v) for k, v in data.items()}
    node_data["label"] = np.concatenate(lab) if lab else np.zeros(0, np.int64)
    join_edges = np.asarray([j["nodes"] for j in joins or []], np.int64).reshape(-1, 2)
    return VesselGraph(
        np.concatenate(pos) if pos else np.zeros((0, 3)),
        np.concatenate(rad) if rad else np.zeros(0),
        np.concatenate(edges + [join_edges]) if edges else np.zeros((0, 2), np.int64),
        node_data=node_data,
        affine=affine,
        meta=meta,
    )


def _regroup(vol, parts, joins, contacts, box_of, cfg, meta) -> list[tuple]:
    """Extract every group of joined labels again as one mask, so that its centerline runs on
    through the labels' boundaries (one label's centerline stops about a radius short of its
    boundary, and a straight join across the gap cuts the corner of a thick vessel's turn).

    The labels of a group are masked together where a vessel runs on from one into another
    (the balls of ``contacts``) and kept apart by a seam wherever else they touch
    (:func:`.labels.group_mask`), and each node takes the label of the nearest voxel
    of the group (``meta["label_groups"]`` lists the groups). A group whose mask leaves no
    centerline keeps its per-label centerlines, joined. Returns the new parts: (label, graph)
    for the labels no join touches, (per-node labels, graph) for each group.
    """
    groups = joined_groups([c for c, _ in parts], joins)
    grouped = {c for grp in groups for c in grp}
    index = {c: p for p, (c, _) in enumerate(parts)}
    offsets = np.cumsum([0] + [g.n_nodes for _, g in parts])
    out = [(c, g) for c, g in parts if c not in grouped]
    done = []
    for grp in groups:
        box = tuple(
            slice(min(box_of[c][k].start for c in grp), max(box_of[c][k].stop for c in grp))
            for k in range(3)
        )
        crop, crop_affine, _ = _crop(vol, box)
        mask, loc = group_mask(np.asarray(crop), grp, contacts, crop_affine)
        try:
            g = extract_graph(Volume(np.ascontiguousarray(mask), crop_affine), **cfg)
        except EmptyInputError:
            g = None
        if g is not None and g.n_nodes:
            out.append((node_labels(g.positions, loc, grp, crop_affine), g))
            done.append([int(c) for c in grp])
            continue
        # keep the labels' own centerlines and their joins, renumbered into this group's graph
        sub = [parts[index[c]] for c in grp]
        start = dict(zip(grp, np.cumsum([0] + [g.n_nodes for _, g in sub[:-1]])))

        # the part each join node is in, and its number in this group's graph
        inner = []
        for j in joins:
            if int(j["labels"][0]) in start:
                p = np.searchsorted(offsets, j["nodes"], side="right") - 1
                first = [start[parts[int(q)][0]] for q in p]
                nodes = np.asarray(j["nodes"]) - offsets[p] + first
                inner.append({**j, "nodes": tuple(int(n) for n in nodes)})
        g = _merge(sub, crop_affine, {}, inner)
        out.append((np.asarray(g.node_data["label"], np.int64), g))
    meta["label_groups"] = done
    return out


def _reseat(vol, parts, box_of, cfg) -> list[tuple]:
    """Seat the tips of every single label (one no join touched), looked at unseated first."""
    out = []
    for c, g in parts:
        if isinstance(c, (int, np.integer)):
            crop, crop_affine, _ = _crop(vol, box_of[c])
            g = seat_graph_tips(g, Volume(np.ascontiguousarray(crop == c), crop_affine), **cfg)
        out.append((c, g))
    return out


def _summary(g: VesselGraph) -> dict:
    """The parts of an extraction's meta worth keeping per label (small, JSON)."""
    keep = ("components", "spurs_pruned", "loops_cut", "crumbs_dropped", "touching_nodes", "timing")
    return {k: g.meta[k] for k in keep if k in g.meta}


def _as_points(root) -> np.ndarray:
    pts = np.asarray(root, dtype=np.float64) if root is not None else np.zeros((0, 3))
    if pts.ndim == 1:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 3 or not np.all(np.isfinite(pts)):
        raise InvalidInputError(
            f"root must be a world point (3,) in mm or points (K, 3), got {describe(root)}"
        )
    return pts


def to_forest(graph: VesselGraph, root=None, *, progress: bool = False) -> VesselGraph:
    """Every component as a rooted tree: cycles cut, edges oriented away from each root.

    Parameters
    ----------
    graph : VesselGraph
    root : (3,) or (K, 3) float, mm, optional
        World points; each picks the nearest node as the root of that node's component. Other
        components start at :meth:`VesselGraph.default_root` (the thickest tip, the likely inlet).
    progress : bool
        A progress bar over the components (stderr).

    Returns
    -------
    VesselGraph
        Same nodes in the same order. One component: a rooted tree (``root`` set). Several: an
        unrooted forest whose edges still run parent -> child, with ``meta["roots"]`` the root of
        each component (SWC writes it as a forest). ``meta["cuts"]`` lists every edge cut
        (``[parent_side_node, other_node]``, node indices of the result).
    """
    if graph.n_nodes == 0:
        return graph
    comp = graph.component_labels
    chosen: dict[int, int] = {}
    pts = _as_points(root)
    if len(pts):
        from scipy.spatial import cKDTree

        _, near = cKDTree(graph.positions).query(pts)
        for node in np.atleast_1d(near):
            c = int(comp[node])
            if c in chosen and chosen[c] != int(node):
                raise InvalidInputError(
                    f"root: two points fall in component {c}; give at most one root per component"
                )
            chosen[c] = int(node)
    edges, cuts, roots = [], [], []
    edge_data: dict[str, list[np.ndarray]] = {k: [] for k in graph.edge_data}
    k = graph.n_components
    for c in _progress(range(k), k, progress and k > 1, "components"):
        idx = np.flatnonzero(comp == c)
        sub = graph.subgraph(idx)
        r = chosen.get(c)
        local = None if r is None else int(np.searchsorted(idx, r))
        tree = sub.to_tree(root=local)
        edges.append(idx[tree.edges])
        new_cuts = tree.meta.get("cuts", [])[len(sub.meta.get("cuts", [])) :]
        cuts += [[int(idx[a]), int(idx[b])] for a, b in new_cuts]
        roots.append(int(idx[tree.root]))
        for k in edge_data:
            edge_data[k].append(np.asarray(tree.edge_data[k]))
    meta = dict(graph.meta)
    meta["cuts"] = list(meta.get("cuts", [])) + cuts
    meta["roots"] = roots
    if cuts:
        log.info("to_forest: cut %d edges to break cycles", len(cuts))
    return VesselGraph(
        graph.positions,
        graph.radii,
        np.concatenate(edges),
        root=roots[0] if len(roots) == 1 else None,
        node_data=dict(graph.node_data),
        edge_data={k: np.concatenate(v) for k, v in edge_data.items()},
        affine=graph.affine,
        meta=meta,
    )


def extract(
    source,
    *,
    label=None,
    labels: Mapping | None = None,
    labels_json: str | os.PathLike | None = None,
    backbone=None,
    per_label: bool = False,
    join_labels: bool = True,
    tree: bool = False,
    root=None,
    threshold: float = 0.5,
    spacing=None,
    affine=None,
    on_empty: str = "raise",
    progress: bool = False,
    **config_overrides,
) -> VesselGraph | dict[int, VesselGraph]:
    """Centerline graph(s) of a segmentation, or of an image through a backbone.

    Parameters
    ----------
    source : path, Volume, nibabel image, ndarray or torch.Tensor
        See :func:`load_source`. Its values decide what it is: ``bool`` (or integer 0/1) is a
        mask; integers beyond {0, 1} are a label map, and so are floats holding only whole
        numbers beyond 1 (nibabel's ``get_fdata()`` returns label maps as float64); other floats
        in [0, 1] are a probability map (0.0 / 1.0 only: a mask).
    label : int, str or list of them, optional
        Labels of a label map to extract, by id or by name (names need ``labels`` or
        ``labels_json``, or a ``meta["labels"]`` mapping on the Volume). None: every non-zero label.
    labels : mapping, optional
        Label names, ``{"aorta": 1}`` or ``{1: "aorta"}`` or a whole nnU-Net ``dataset.json`` dict.
    labels_json : path, optional
        A JSON file with label names (nnU-Net ``dataset.json``, TotalSegmentator ``{id: name}``).
    backbone : object with ``segment(volume) -> Volume``, optional
        Runs first on the source (a raw image); its output is extracted (see
        :mod:`vesseltree.backbones`).
    per_label : bool
        Return ``{label_id: VesselGraph}`` instead of one graph.
    join_labels : bool
        Where a vessel runs on from one label into another (a tree labelled by segment), join
        the two labels' centerlines across the boundary: tip to tip, or a labelled side branch's
        tip to the other label's centerline (see :mod:`vesseltree.centerline.labels`). Labels
        that only touch side by side stay apart. Each join is listed in ``meta["label_joins"]``
        (labels, world position, kind, cover). The labels that joins connect are then extracted
        again as one mask (open where a vessel runs on, sealed where labels only touch), so that
        the centerline runs on through the boundaries instead of bridging a radius-wide gap with
        a straight edge; each node takes the label of the voxels it lies in
        (``meta["label_groups"]``).
        Not used with ``per_label``.
    tree : bool
        Make every component a rooted tree (see :func:`to_forest`): cycles cut at their thinnest
        edge, cuts listed in ``meta["cuts"]``.
    root : (3,) or (K, 3) float, mm, optional
        With ``tree=True``: world points that choose the roots (nearest node); default: the
        thickest tip of each component.
    threshold : float
        Probability maps are vessel where ``p >= threshold``; the probabilities are kept for
        sub-voxel walls.
    spacing, affine : optional
        Voxel size (mm) or voxel -> world affine of a bare array or tensor.
    on_empty : {"raise", "warn"}
        No vessel at all: raise :class:`~vesseltree.errors.EmptyInputError`, or warn and return an
        empty graph.
    progress : bool
        A progress bar (stderr) over the labels, and over the components for ``tree=True``.
    **config_overrides
        :class:`~vesseltree.centerline.ExtractionConfig` fields (``spur_ratio=3``, ...).

    Returns
    -------
    VesselGraph or dict of int -> VesselGraph
        Nodes in world mm, ``affine`` the source's; see :func:`extract_graph` for the node data.
        A label map gives ``node_data["label"]`` (int64, the label of each node).

    Notes
    -----
    Each label of a label map is extracted on its own (cropped to its bounding box), so touching
    vessels with different labels (left and right arteries, artery and vein) never fuse. The
    graphs are then merged; with ``join_labels`` a vessel that changes label (the aorta into
    an iliac artery, segments of the circle of Willis) stays one connected centerline. Labels
    left empty after clean-up are skipped with a warning when all labels are extracted; a label
    selected by ``label=`` that is empty follows ``on_empty``.

    Raises
    ------
    InvalidInputError
        A wrong type, 2D/4D data, a singular affine, NaN/inf or out-of-range floats, an absent or
        unknown label, a bad option.
    FileFormatError
        A missing or unreadable file.
    EmptyInputError
        No vessel (with ``on_empty="raise"``).

    Examples
    --------
    >>> import numpy as np
    >>> z, y, x = np.mgrid[:40, :24, :24]
    >>> tube = (x - 11.5) ** 2 + (y - 11.5) ** 2 < 5.0**2
    >>> g = extract(tube, spacing=(0.8, 0.5, 0.5))
    >>> g.n_components, len(g.endpoints)
    (1, 2)
    """
    if on_empty not in ("raise", "warn"):
        raise InvalidInputError(f"on_empty must be 'raise' or 'warn', got {on_empty!r}")
    cfg = _config(threshold, config_overrides)
    vol = load_source(source, spacing=spacing, affine=affine)
    src_name = f"source {str(source)!r}" if isinstance(source, (str, os.PathLike)) else "source"
    if backbone is not None:
        if not callable(getattr(backbone, "segment", None)):
            raise InvalidInputError(
                f"backbone must have a segment(volume) -> Volume method, got {describe(backbone)}"
            )
        out = backbone.segment(vol)
        if isinstance(out, np.ndarray) and out.shape == vol.shape:
            out = Volume(out, vol.affine)
        if not isinstance(out, Volume):
            raise InvalidInputError(
                f"backbone {type(backbone).__name__}.segment must return a Volume, got {describe(out)}"
            )
        if out.shape != vol.shape:
            log.info("backbone changed the grid from %s to %s", vol.shape, out.shape)
        vol = out
        src_name = f"the output of backbone {type(backbone).__name__}"
    data = np.asarray(vol.data)
    kind = _kind(data, label, per_label, src_name)

    if kind != "labels":
        if not data.flags.c_contiguous:
            # one memory order for every source (NIfTI files load Fortran-ordered), so a file and
            # the same array in memory give the identical graph
            vol = Volume(np.ascontiguousarray(data), vol.affine, meta=vol.meta)
        g = extract_graph(vol, on_empty=on_empty, **cfg)
        if tree and g.n_nodes:
            g = to_forest(g, root, progress=progress)
        return g

    names = _names(labels, labels_json, vol)
    if data.dtype == bool:
        int_data = data.astype(np.uint8)
    elif data.dtype.kind == "f":  # whole numbers (see _kind)
        top = float(data.max()) if data.size else 0.0
        int_data = data.astype(np.uint16 if top < 1 << 16 else np.int64)
        vol = Volume(int_data, vol.affine, meta=vol.meta)
    else:
        int_data = data
    boxes = None
    if data.size and int(int_data.max()) < 1 << 20:
        # the bounding boxes of every label in one pass (find_objects indexes labels 1..max),
        # which also tells the labels present: cheaper than counting them over an intp copy
        boxes = ndi.find_objects(int_data)
        present = np.array([i + 1 for i, b in enumerate(boxes) if b is not None], np.int64)
    else:
        present = label_ids(int_data)
    if label is not None:
        chosen = resolve_labels(label, names, present)
    else:
        chosen = [int(x) for x in present]
    if not chosen:
        msg = f"{src_name} holds no non-zero label"
        if on_empty == "raise":
            raise EmptyInputError(msg)
        warnings.warn(f"extract: {msg}; returning an empty graph", RuntimeWarning, stacklevel=2)
        return {} if per_label else _merge([], vol.affine, {"empty": msg})
    if boxes is not None:
        box_of = {c: boxes[c - 1] for c in chosen}
    else:  # pragma: no cover - huge label ids
        box_of = {c: ndi.find_objects((int_data == c).astype(np.uint8))[0] for c in chosen}

    inv = {v: k for k, v in (names or {}).items()}
    parts: list[tuple[int, VesselGraph]] = []
    empty: list[int] = []
    # labels to be joined are looked at first with their tips where thinning left them: the
    # joins were measured that way (seated a radius short of a label's boundary, they found 1%
    # fewer joins on TubeTK labelled by tube), and the joined groups are extracted again anyway;
    # a label that joins none has its tips seated afterwards (_reseat)
    first = cfg if per_label or not join_labels else {**cfg, "seat_tips": False}
    for c in _progress(chosen, len(chosen), progress, "labels"):
        crop, crop_affine, _ = _crop(vol, box_of[c])
        sub = Volume(np.ascontiguousarray(crop == c), crop_affine)
        try:
            g = extract_graph(sub, on_empty="raise", **first)
        except EmptyInputError as exc:
            if label is not None and on_empty == "raise":
                raise EmptyInputError(f"label {c}: {exc}") from exc
            warnings.warn(
                f"extract: label {c} leaves no centerline ({exc}); skipped",
                RuntimeWarning,
                stacklevel=2,
            )
            empty.append(c)
            continue
        # g keeps the crop's affine: its positions are world mm already, and _merge gives the
        # merged graph(s) the source's affine (a replace() here would rebuild and recheck g)
        parts.append((c, g))
    per = {
        str(c): {"name": inv.get(c), **_summary(g)} if c in inv else _summary(g) for c, g in parts
    }
    meta = {
        "source": "vesseltree.extract",
        "config": cfg,
        "labels": per,
        "empty_labels": empty,
    }
    if per_label:
        out_dict: dict[int, VesselGraph] = {}
        pts = _as_points(root)
        owner = np.zeros(0, np.int64)
        if tree and len(pts) and parts:
            # each root point belongs to the label whose centerline is nearest to it
            from scipy.spatial import cKDTree

            allpos = np.concatenate([g.positions for _, g in parts])
            lab = np.concatenate([np.full(g.n_nodes, c) for c, g in parts])
            owner = lab[cKDTree(allpos).query(pts)[1]]
        for c, g in parts:
            m = _merge([(c, g)], vol.affine, {**dict(g.meta), "label": c, "label_name": inv.get(c)})
            if tree:
                m = to_forest(m, pts[owner == c] if len(pts) else None, progress=progress)
            out_dict[c] = m
        return out_dict
    if not parts:
        msg = f"no label of {src_name} leaves a centerline (labels {empty})"
        if on_empty == "raise":
            raise EmptyInputError(msg)
        warnings.warn(f"extract: {msg}; returning an empty graph", RuntimeWarning, stacklevel=2)
    joins = []
    if join_labels:
        contacts: list = []
        joins = (
            label_joins(parts, int_data, vol.affine, contacts=contacts) if len(parts) > 1 else []
        )
        allpos = np.concatenate([g.positions for _, g in parts]) if parts else np.zeros((0, 3))
        meta["label_joins"] = [
            {
                "labels": [int(a) for a in j["labels"]],
                "position": [round(float(x), 4) for x in allpos[list(j["nodes"])].mean(0)],
                "kind": j["kind"],
                "cover": round(float(j["cover"]), 3),
            }
            for j in joins
        ]
        if joins:
            log.info("extract: joined the labels' centerlines at %d boundaries", len(joins))
    if joins:
        parts, joins = _regroup(vol, parts, joins, contacts, box_of, cfg, meta), []
    if first is not cfg:
        parts = _reseat(vol, parts, box_of, cfg)
    merged = _merge(parts, vol.affine, meta, joins)
    if tree and merged.n_nodes:
        merged = to_forest(merged, root, progress=progress)
    return merged
