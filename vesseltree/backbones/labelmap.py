"""`LabelMap`: adapter for label maps written by nnU-Net, TotalSegmentator, MONAI and friends.

Label names come from a mapping or a JSON file in any of the usual layouts:

- nnU-Net v2 ``dataset.json``: ``{"labels": {"background": 0, "aorta": 1, ...}}`` (name -> id);
- nnU-Net v1 / MSD ``dataset.json``: ``{"labels": {"0": "background", "1": "aorta"}}`` (id -> name);
- TotalSegmentator / MONAI style: ``{1: "spleen", 2: "kidney_right", ...}`` (id -> name).

:func:`parse_labels` turns any of them into one ``{name: id}`` dict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EmptyInputError, FileFormatError, InvalidInputError, describe
from ..volume import Volume, as_volume

__all__ = ["LabelMap", "parse_labels", "read_labels_json", "resolve_labels"]


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_labels(mapping) -> dict[str, int]:
    """``{name: id}`` from a name -> id or an id -> name mapping (or a dataset.json dict).

    Entries that are not a (name, integer id) pair, such as nnU-Net's region lists, are skipped.

    Raises
    ------
    InvalidInputError
        ``mapping`` is not a mapping, or holds no (name, id) pair.
    """
    if not isinstance(mapping, Mapping):
        raise InvalidInputError(
            f"labels must be a mapping of names and ids, got {describe(mapping)}"
        )
    if "labels" in mapping and isinstance(mapping["labels"], Mapping):
        mapping = mapping["labels"]
    out: dict[str, int] = {}
    for k, v in mapping.items():
        kid, vid = _as_int(k), _as_int(v)
        if kid is None and vid is not None and isinstance(k, str):
            out[k] = vid
        elif kid is not None and isinstance(v, str) and vid is None:
            out[v] = kid
    if not out:
        raise InvalidInputError(
            f"labels holds no (name, integer id) pairs, got {describe(dict(mapping))}; expected "
            '{"aorta": 1, ...} or {1: "aorta", ...} or a dataset.json {"labels": {...}}'
        )
    return out


def read_labels_json(path: str | os.PathLike) -> dict[str, int]:
    """``{name: id}`` from a labels JSON file (see the module docstring for the layouts)."""
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"labels_json {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"labels_json {str(p)!r} is not valid JSON: {exc}") from exc
    try:
        return parse_labels(data)
    except InvalidInputError as exc:
        raise FileFormatError(f"labels_json {str(p)!r}: {exc}") from exc


def resolve_labels(selection, names: Mapping[str, int] | None, present=None) -> list[int]:
    """Label ids for ``selection`` (an id, a name, or a list of them).

    Names match case-insensitively against ``names``. Where ``present`` is given, every selected
    id must be in it.

    Raises
    ------
    InvalidInputError
        An unknown name, a name without a names mapping, a bad type, or an absent label.
    """
    items = (
        list(selection) if isinstance(selection, (list, tuple, set, np.ndarray)) else [selection]
    )
    if not items:
        raise InvalidInputError("label is an empty list; give at least one label id or name")
    lower = {k.lower(): v for k, v in (names or {}).items()}
    ids: list[int] = []
    for item in items:
        if isinstance(item, str):
            if not names:
                raise InvalidInputError(
                    f"label {item!r} is a name, but no label names are known; pass labels={{...}} "
                    "or labels_json=dataset.json"
                )
            if item.lower() not in lower:
                raise InvalidInputError(
                    f"label {item!r} is not a known label name; known names: {sorted(names)}"
                )
            ids.append(int(lower[item.lower()]))
        elif (iid := _as_int(item)) is not None and not isinstance(item, str):
            ids.append(iid)
        else:
            raise InvalidInputError(f"label must be an integer id or a name, got {describe(item)}")
    for i in ids:
        if i <= 0:
            raise InvalidInputError(f"label must be a positive id (0 is background), got {i}")
    if present is not None:
        have = set(int(x) for x in present)
        missing = [i for i in ids if i not in have]
        if missing:
            inv = {v: k for k, v in (names or {}).items()}
            shown = [f"{i} ({inv[i]})" if i in inv else str(i) for i in sorted(have)]
            raise InvalidInputError(
                f"label {missing[0] if len(missing) == 1 else missing} is not in the source; "
                f"labels present: [{', '.join(shown) or 'none'}]"
            )
    return sorted(set(ids))


def label_ids(data: np.ndarray) -> np.ndarray:
    """Sorted non-zero values of an integer label map."""
    if data.size == 0:
        return np.zeros(0, np.int64)
    lo, hi = int(data.min()), int(data.max())
    if lo >= 0 and hi < 1 << 20:
        counts = np.bincount(np.asarray(data).ravel().astype(np.intp, copy=False), minlength=1)
        ids = np.flatnonzero(counts)
    else:
        ids = np.unique(data)
    return ids[ids != 0].astype(np.int64)


@dataclass(frozen=True)
class LabelMap:
    """Keep selected labels of a segmentation's label map (ids or names), drop the rest.

    Parameters
    ----------
    labels : int, str or list of them, optional
        Labels to keep; all non-zero labels where None.
    labels_json : path, optional
        A labels file (nnU-Net ``dataset.json``, TotalSegmentator-style ``{id: name}``) so
        ``labels`` may hold names.
    names : mapping, optional
        The same as a dict (``{"aorta": 1}`` or ``{1: "aorta"}``).

    :meth:`segment` takes a label map Volume (or a path, read with :func:`vesseltree.io.read_volume`)
    and returns an int32 label map with the same affine in which unselected labels are 0, and
    ``meta["labels"]`` the ``{name: id}`` mapping where known. Float-stored label maps are accepted
    where every value is a whole number.
    """

    labels: object = None
    labels_json: str | os.PathLike | None = None
    names: Mapping | None = field(default=None)

    def label_names(self) -> dict[str, int] | None:
        if self.names is not None and self.labels_json is not None:
            raise InvalidInputError("give names= or labels_json=, not both")
        if self.names is not None:
            return parse_labels(self.names)
        if self.labels_json is not None:
            return read_labels_json(self.labels_json)
        return None

    def segment(self, volume) -> Volume:
        if isinstance(volume, (str, os.PathLike)):
            from ..io import read_volume

            volume = read_volume(volume)
        vol = as_volume(volume, name="volume")
        data = np.asarray(vol.data)
        if data.dtype == bool:
            data = data.astype(np.int32)
        elif data.dtype.kind == "f":
            if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
                raise InvalidInputError(
                    "volume is not a label map: it holds fractional or non-finite values; "
                    "LabelMap needs integer labels"
                )
        elif data.dtype.kind not in "iu":
            raise InvalidInputError(f"volume must be an integer label map, got dtype {data.dtype}")
        data = data.astype(np.int32, copy=False)
        names = self.label_names() or vol.meta.get("labels")
        present = label_ids(data)
        if self.labels is None:
            keep = present
        else:
            keep = np.asarray(resolve_labels(self.labels, names, present), dtype=np.int64)
        if keep.size == 0:
            raise EmptyInputError("volume holds no non-zero label")
        out = np.where(np.isin(data, keep), data, 0).astype(np.int32)
        meta = {"source": vol.meta.get("source"), "kept_labels": [int(k) for k in keep]}
        if names:
            meta["labels"] = dict(names)
        return Volume(out, vol.affine, meta=meta)
