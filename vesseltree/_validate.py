"""Argument checks shared by the core types; each raises InvalidInputError naming the argument."""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError, describe


def as_float_array(value, name: str, shape: tuple, *, finite: bool = True) -> np.ndarray:
    """``value`` as a float64 array of ``shape`` (``-1`` matches any length)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numeric, got {describe(value)}") from exc
    if arr.ndim != len(shape) or any(s != -1 and s != a for s, a in zip(shape, arr.shape)):
        want = str(tuple("N" if s == -1 else s for s in shape)).replace("'", "")
        raise InvalidInputError(f"{name} must have shape {want}, got shape {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidInputError(
            f"{name} must be finite, got {arr[tuple(bad)]!r} at index {tuple(int(b) for b in bad)}"
        )
    return arr


def check_affine(affine, name: str = "affine") -> np.ndarray:
    """A finite, invertible 4x4 voxel->world matrix with last row (0, 0, 0, 1)."""
    arr = as_float_array(affine, name, (4, 4))
    if not np.allclose(arr[3], [0.0, 0.0, 0.0, 1.0]):
        raise InvalidInputError(f"{name} must have last row (0, 0, 0, 1), got {arr[3].tolist()}")
    det = float(np.linalg.det(arr[:3, :3]))
    scale = float(np.abs(arr[:3, :3]).max())
    if scale == 0.0 or abs(det) <= 1e-12 * scale**3:
        raise InvalidInputError(
            f"{name} is singular (determinant {det:.3g}): voxel axes must span 3D, got {arr[:3, :3].tolist()}"
        )
    return arr


def readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view of ``arr`` (the caller's array keeps its own flags)."""
    view = arr.view()
    view.setflags(write=False)
    return view


def positive_mm(value, name: str, *, allow_none: bool = False, allow_zero: bool = False):
    """``value`` as a positive finite float (a length in mm); None passes where ``allow_none``."""
    from .errors import describe

    if value is None and allow_none:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{name} must be a positive number (mm), got {describe(value)}"
        ) from None
    if not np.isfinite(out) or out < 0 or (out == 0 and not allow_zero):
        raise InvalidInputError(f"{name} must be a positive number (mm), got {value!r}")
    return out
