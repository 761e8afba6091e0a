"""Mask-against-mask scores: overlap, topology and surface distances (mm).

- :func:`cldice`: centerline Dice (Shit et al. 2021) from 3D skeletons.
- :func:`betti_numbers`, :func:`betti_errors`: b0, b1, b2 and the Euler characteristic of a 3D
  binary volume. Foreground is 26-connected and background 6-connected (the complementary pair,
  so the Euler characteristic is well defined): b0 = foreground components, b2 = background
  components that do not touch the volume border (enclosed cavities), chi from
  :func:`skimage.measure.euler_number` (connectivity 3), and b1 = b0 + b2 - chi (the number of
  independent loops / handles).
- :func:`surface_distances`, :func:`hd95`, :func:`assd`: distances between the two mask surfaces in
  world mm, through each volume's affine (any rotation, anisotropy or shear).
- :func:`volume_scores`: all of the above and Dice at once.

Masks are Volumes (their affine is used) or arrays with ``spacing=``/``affine=``; any value > 0 is
foreground.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import InvalidInputError, describe
from ..volume import Volume, as_volume, voxel_to_world
from . import dice

__all__ = [
    "cldice",
    "betti_numbers",
    "betti_errors",
    "surface_distances",
    "hd95",
    "assd",
    "volume_scores",
]


def _mask(a, name: str) -> np.ndarray:
    arr = np.asarray(getattr(a, "data", a))
    if arr.ndim != 3:
        raise InvalidInputError(f"{name} must be a 3D mask, got shape {arr.shape}")
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must be numeric or boolean, got {describe(arr)}")
    return arr > 0


def _pair(pred, truth):
    p, t = _mask(pred, "pred"), _mask(truth, "truth")
    if p.shape != t.shape:
        raise InvalidInputError(
            f"pred and truth must have the same shape, got {p.shape} and {t.shape}"
        )
    return p, t


def cldice(pred, truth) -> float:
    """Centerline Dice: harmonic mean of skeleton precision |S(P) & G| / |S(P)| and sensitivity
    |S(G) & P| / |S(G)| (1.0 when both masks are empty, 0.0 when only one is)."""
    from skimage.morphology import skeletonize

    p, t = _pair(pred, truth)
    if not p.any() and not t.any():
        return 1.0
    if not p.any() or not t.any():
        return 0.0
    sp, st = skeletonize(p) > 0, skeletonize(t) > 0
    tprec = (sp & t).sum() / max(sp.sum(), 1)
    tsens = (st & p).sum() / max(st.sum(), 1)
    return 0.0 if tprec + tsens == 0 else float(2 * tprec * tsens / (tprec + tsens))


def betti_numbers(mask) -> dict[str, int]:
    """``b0``, ``b1``, ``b2`` and ``euler`` of a 3D binary mask (26-connected foreground).

    Examples
    --------
    >>> m = np.zeros((7, 7, 7), bool); m[1:6, 1:6, 1:6] = True; m[3, 3, 3] = False
    >>> betti_numbers(m)
    {'b0': 1, 'b1': 0, 'b2': 1, 'euler': 2}
    """
    from skimage.measure import euler_number

    m = _mask(mask, "mask")
    b0 = int(ndimage.label(m, structure=np.ones((3, 3, 3)))[1])
    bg, nbg = ndimage.label(np.pad(~m, 1, constant_values=True))  # 6-connected background
    # the padded border is one background component; every other one is an enclosed cavity
    b2 = int(nbg - 1) if nbg else 0
    chi = int(euler_number(np.pad(m, 1), connectivity=3))
    return {"b0": b0, "b1": int(b0 + b2 - chi), "b2": b2, "euler": chi}


def betti_errors(pred, truth) -> dict[str, int]:
    """Absolute differences ``b0_error``, ``b1_error``, ``b2_error``, ``euler_error``."""
    p, t = _pair(pred, truth)
    bp, bt = betti_numbers(p), betti_numbers(t)
    return {f"{k}_error": abs(bp[k] - bt[k]) for k in ("b0", "b1", "b2", "euler")}


def _affine(vol, spacing, affine, name):
    if isinstance(vol, Volume):
        return vol.affine
    return as_volume(np.zeros((1, 1, 1)), spacing=spacing, affine=affine, name=name).affine


def _surface_points(m: np.ndarray, aff: np.ndarray) -> np.ndarray:
    edge = m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1))
    return voxel_to_world(aff, np.argwhere(edge))


def surface_distances(pred, truth, *, spacing=None, affine=None) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel centre of ``pred`` to the nearest of ``truth``, and back.

    The surface of a mask is its foreground voxels with a 6-neighbour in the background. Voxel
    centres are mapped to world mm through the affine (of ``pred`` when it is a Volume, else
    ``affine=``/``spacing=``; default 1 mm).
    """
    p, t = _pair(pred, truth)
    aff = _affine(pred if isinstance(pred, Volume) else truth, spacing, affine, "pred")
    if (
        isinstance(pred, Volume)
        and isinstance(truth, Volume)
        and not np.allclose(pred.affine, truth.affine)
    ):
        raise InvalidInputError("pred and truth Volumes must share the same affine")
    sp, st = _surface_points(p, aff), _surface_points(t, aff)
    if len(sp) == 0 or len(st) == 0:
        return np.full(len(sp), np.inf), np.full(len(st), np.inf)
    return cKDTree(st).query(sp)[0], cKDTree(sp).query(st)[0]


def hd95(pred, truth, *, spacing=None, affine=None) -> float:
    """95th-percentile Hausdorff distance (mm): max of the two directed 95th percentiles.

    0.0 when both masks are empty, ``inf`` when only one is.
    """
    d_pt, d_tp = surface_distances(pred, truth, spacing=spacing, affine=affine)
    if len(d_pt) == 0 and len(d_tp) == 0:
        return 0.0
    if len(d_pt) == 0 or len(d_tp) == 0:
        return float("inf")
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def assd(pred, truth, *, spacing=None, affine=None) -> float:
    """Average symmetric surface distance (mm): mean over both surfaces' distances (0 / inf as hd95)."""
    d_pt, d_tp = surface_distances(pred, truth, spacing=spacing, affine=affine)
    if len(d_pt) == 0 and len(d_tp) == 0:
        return 0.0
    if len(d_pt) == 0 or len(d_tp) == 0:
        return float("inf")
    return float(np.concatenate([d_pt, d_tp]).mean())


def volume_scores(pred, truth, *, spacing=None, affine=None) -> dict[str, float]:
    """``dice``, ``cldice``, ``b0_error``, ``b1_error``, ``b2_error``, ``euler_error``, ``hd95``, ``assd``."""
    out: dict[str, float] = {"dice": dice(pred, truth), "cldice": cldice(pred, truth)}
    out.update({k: float(v) for k, v in betti_errors(pred, truth).items()})
    d_pt, d_tp = surface_distances(pred, truth, spacing=spacing, affine=affine)
    if len(d_pt) and len(d_tp):
        out["hd95"] = float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))
        out["assd"] = float(np.concatenate([d_pt, d_tp]).mean())
    else:
        out["hd95"] = out["assd"] = 0.0 if len(d_pt) == len(d_tp) == 0 else float("inf")
    return out
