"""`Volume`: a 3D array with its voxel -> world (mm) affine.

Index order is (i, j, k) as stored on disk by NIfTI; the affine maps a voxel index (i, j, k) to a
world point (x, y, z) in millimetres, RAS, exactly as nibabel reports it. Every conversion between
voxel indices and world coordinates goes through the affine, never through a bare spacing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validate import as_float_array, check_affine, readonly
from .errors import InvalidInputError, describe

__all__ = ["Volume", "affine_from_spacing", "voxel_to_world", "world_to_voxel"]


def affine_from_spacing(spacing, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Axis-aligned 4x4 affine for voxel ``spacing`` (mm) and world ``origin`` of voxel (0, 0, 0)."""
    sp = as_float_array(spacing, "spacing", (3,))
    if np.any(sp <= 0):
        raise InvalidInputError(f"spacing must be positive (mm), got {sp.tolist()}")
    aff = np.diag([*sp, 1.0])
    aff[:3, 3] = as_float_array(origin, "origin", (3,))
    return aff


def voxel_to_world(affine: np.ndarray, ijk) -> np.ndarray:
    """Map voxel indices (..., 3) to world mm (..., 3) through ``affine``."""
    pts = np.asarray(ijk, dtype=np.float64)
    return pts @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(affine: np.ndarray, xyz) -> np.ndarray:
    """Map world mm (..., 3) to (fractional) voxel indices (..., 3) through ``affine``."""
    pts = np.asarray(xyz, dtype=np.float64)
    inv = np.linalg.inv(affine)
    return pts @ inv[:3, :3].T + inv[:3, 3]


class Volume:
    """A 3D image or mask with its voxel -> world affine.

    Parameters
    ----------
    data : (I, J, K) ndarray
        Voxel values in (i, j, k) index order. Stored as a read-only view (not copied).
    affine : (4, 4) float ndarray, optional
        Voxel index -> world mm (RAS). Give either ``affine`` or ``spacing``.
    spacing : (3,) float, mm, optional
        Voxel size for an axis-aligned affine with origin at world (0, 0, 0).
    meta : dict, optional
        Free-form, JSON-compatible information (source file, label names, ...).

    Raises
    ------
    InvalidInputError
        ``data`` is not 3D, the affine is singular or not finite, or both/neither of
        ``affine`` and ``spacing`` are given.
    """

    __slots__ = ("data", "affine", "meta", "__dict__")

    def __init__(self, data, affine=None, *, spacing=None, meta: dict[str, Any] | None = None):
        arr = np.asarray(data)
        if arr.ndim != 3:
            raise InvalidInputError(
                f"data must be a 3D array in (i, j, k) order, got {arr.ndim}D with shape {arr.shape}"
            )
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise InvalidInputError(f"data must be numeric or boolean, got dtype {arr.dtype}")
        if affine is None and spacing is None:
            spacing = (1.0, 1.0, 1.0)
        elif affine is not None and spacing is not None:
            raise InvalidInputError("give affine= or spacing=, not both")
        aff = affine_from_spacing(spacing) if affine is None else check_affine(affine)
        object.__setattr__(self, "data", readonly(arr))
        object.__setattr__(self, "affine", readonly(aff.copy()))
        object.__setattr__(self, "meta", dict(meta or {}))

    def __setattr__(self, name, value):
        raise AttributeError(f"Volume is immutable; use Volume.replace(...) to change {name!r}")

    # ------------------------------------------------------------------ derived
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """(3,) voxel edge lengths in mm along i, j, k (column norms of the affine)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm^3."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def voxel_to_world(self, ijk) -> np.ndarray:
        """Voxel indices (..., 3) -> world mm (..., 3)."""
        return voxel_to_world(self.affine, ijk)

    def world_to_voxel(self, xyz) -> np.ndarray:
        """World mm (..., 3) -> fractional voxel indices (..., 3)."""
        return world_to_voxel(self.affine, xyz)

    def replace(self, *, data=None, affine=None, meta=None) -> Volume:
        """A new Volume with some fields replaced."""
        return Volume(
            self.data if data is None else data,
            self.affine if affine is None else affine,
            meta=self.meta if meta is None else meta,
        )

    # ------------------------------------------------------------------ interop
    @classmethod
    def from_nibabel(cls, image) -> Volume:
        """From a nibabel spatial image (data read as stored, affine as nibabel reports it)."""
        data = np.asanyarray(image.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        return cls(data, image.affine, meta={"source": "nibabel"})

    def to_nibabel(self):
        """As a ``nibabel.Nifti1Image`` (bool data is stored as uint8)."""
        import nibabel as nib

        data = self.data.astype(np.uint8) if self.data.dtype == bool else np.asarray(self.data)
        img = nib.Nifti1Image(data, np.asarray(self.affine))
        img.header.set_xyzt_units("mm")
        return img

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        return f"Volume(shape={self.shape}, dtype={self.data.dtype}, spacing=({sp}) mm)"


def as_volume(source, *, spacing=None, affine=None, name: str = "source") -> Volume:
    """Coerce a Volume, nibabel image, numpy array (with spacing/affine) or torch tensor to a Volume."""
    if isinstance(source, Volume):
        if spacing is not None or affine is not None:
            raise InvalidInputError(
                f"{name} is a Volume, which carries its own affine; drop spacing=/affine="
            )
        return source
    if hasattr(source, "dataobj") and hasattr(source, "affine"):
        return Volume.from_nibabel(source)
    if type(source).__module__.startswith("torch"):
        source = source.detach().cpu().numpy()
    if isinstance(source, np.ndarray) or isinstance(source, (list, tuple)):
        return Volume(np.asarray(source), affine, spacing=spacing)
    raise InvalidInputError(
        f"{name} must be a path, Volume, nibabel image, numpy array or torch tensor, got {describe(source)}"
    )
