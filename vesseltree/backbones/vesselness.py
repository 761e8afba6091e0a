"""`Vesselness`: a training-free backbone, multi-scale Frangi or Sato tubeness in millimetres.

The measures are those of :func:`skimage.filters.frangi` and :func:`skimage.filters.sato`
(same eigenvalue ratios, same ``alpha``/``beta``/``gamma`` meaning), but the Hessian is computed
here with one Gaussian sigma per voxel axis (``sigma_mm / spacing``) and mapped to world
millimetres through the affine, so anisotropic voxels are handled exactly instead of through one
isotropic sigma in voxels. Eigenvalues come from the closed form for symmetric 3x3 matrices, in
slabs, in float32: a 256^3 volume takes seconds per scale, not minutes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..errors import InvalidInputError, describe
from ..volume import Volume, as_volume

__all__ = ["Vesselness", "hessian_eigenvalues"]

log = logging.getLogger(__name__)

_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _sym_eigvals(h: list[np.ndarray]) -> np.ndarray:
    """Eigenvalues (3, ...) of symmetric 3x3 matrices given by their 6 entries, ascending.

    Closed form (trigonometric solution of the characteristic cubic); float64 internally.
    """
    a, b, c, d, e, f = (np.asarray(x, dtype=np.float64) for x in h)  # xx yy zz xy xz yz
    q = (a + b + c) / 3.0
    p1 = d * d + e * e + f * f
    aq, bq, cq = a - q, b - q, c - q
    p2 = aq * aq + bq * bq + cq * cq + 2.0 * p1
    p = np.sqrt(p2 / 6.0)
    safe = np.where(p > 0, p, 1.0)
    # det((H - qI) / p) / 2
    det = aq * (bq * cq - f * f) - d * (d * cq - f * e) + e * (d * f - bq * e)
    r = np.clip(det / (2.0 * safe**3), -1.0, 1.0)
    phi = np.arccos(r) / 3.0
    l3 = q + 2.0 * p * np.cos(phi)
    l1 = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    l2 = 3.0 * q - l1 - l3
    out = np.stack([l1, l2, l3])
    flat = p == 0
    if np.any(flat):
        out[:, flat] = q[flat]
    return out


def hessian_eigenvalues(
    data: np.ndarray, affine: np.ndarray, sigma_mm: float, *, slab: int = 16
) -> np.ndarray:
    """Scale-normalised Hessian eigenvalues of an image in world millimetres.

    Parameters
    ----------
    data : (I, J, K) float ndarray
        The image.
    affine : (4, 4) float ndarray
        Voxel -> world mm. The Gaussian has ``sigma_mm / spacing`` voxels along each axis (exact
        for orthogonal voxel axes); the Hessian is mapped to world mm through the affine.
    sigma_mm : float, mm
        Gaussian scale; the Hessian is multiplied by ``sigma_mm**2`` (scale normalisation).
    slab : int
        Rows along the first axis per eigenvalue batch (bounds the float64 temporaries).

    Returns
    -------
    (3, I, J, K) float32 ndarray
        Eigenvalues sorted by magnitude, ``|l1| <= |l2| <= |l3|``, in image units (the
        normalisation makes them independent of the scale for a matched structure).
    """
    lin = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    sig_vox = sigma_mm / spacing
    x = np.asarray(data, dtype=np.float32)
    # world Hessian = B^T H_ijk B with B = inv(A); rotation does not change eigenvalues, so the
    # symmetric factor of A's polar decomposition is enough (diag(spacing) for orthogonal axes)
    w, v = np.linalg.eigh(lin.T @ lin)
    s_inv = v @ np.diag(1.0 / np.sqrt(w)) @ v.T
    hv = {}
    for i, j in _PAIRS:
        order = [0, 0, 0]
        order[i] += 1
        order[j] += 1
        hv[i, j] = ndi.gaussian_filter(x, sig_vox, order=order, mode="nearest", truncate=3.0)
    out = np.empty((3, *x.shape), dtype=np.float32)
    norm = sigma_mm**2
    diag_only = np.allclose(s_inv, np.diag(np.diag(s_inv)))
    for lo in range(0, x.shape[0], slab):
        sl = slice(lo, lo + slab)
        if diag_only:
            sd = np.diag(s_inv)
            h = [hv[i, j][sl] * (sd[i] * sd[j] * norm) for i, j in _PAIRS]
        else:
            full = [[hv[min(i, j), max(i, j)][sl] for j in range(3)] for i in range(3)]
            h = []
            for a, b in _PAIRS:
                acc = np.zeros(full[0][0].shape, dtype=np.float64)
                for i in range(3):
                    for j in range(3):
                        c = s_inv[i, a] * s_inv[j, b]
                        if c != 0.0:
                            acc += c * full[i][j]
                h.append(acc * norm)
        a, b, c = _sym_eigvals(h)
        # sort by magnitude with a three-comparator network (cheaper than argsort)
        for i, j in ((0, 1), (1, 2), (0, 1)):
            u, v = (a, b) if (i, j) == (0, 1) else (b, c)
            swap = np.abs(u) > np.abs(v)
            u2, v2 = np.where(swap, v, u), np.where(swap, u, v)
            if (i, j) == (0, 1):
                a, b = u2, v2
            else:
                b, c = u2, v2
        out[0, sl], out[1, sl], out[2, sl] = a, b, c
    return out


@dataclass(frozen=True)
class Vesselness:
    """Multi-scale vesselness (Frangi or Sato) of a raw CT/MRA image, as a probability-like map.

    Parameters
    ----------
    sigmas_mm : tuple of float, mm
        Gaussian scales; a tube of radius ``r`` responds best near ``sigma = r / sqrt(2)``
        (Frangi) or ``r / sqrt(3)`` (Sato), so the default covers radii ~0.7-4 mm.
    method : {"frangi", "sato"}
        Frangi's vesselness (eigenvalue ratios, in [0, 1)) or Sato's tubeness (geometric mean of
        the two large eigenvalues, in image units).
    bright : bool
        Vessels brighter than the background (CTA, TOF-MRA); False for dark vessels.
    threshold : "otsu" or float
        Response level that separates vessel from background: Otsu's threshold of the positive
        responses, or a fixed level in the method's units.
    hysteresis : float in (0, 1], optional
        Hysteresis ratio: the map keeps every connected region where the response reaches
        ``hysteresis * level`` that holds a voxel at ``level``, so thin branches connected to
        clear vessels survive while isolated texture at the same response does not. 1 = plain
        threshold. Default: 1/3 for Frangi, 1 for Sato (whose response, in image units, rises
        with tissue texture too).
    min_size_mm3 : float, mm^3
        Connected pieces of the thresholded map smaller than this are removed (noise, specks).
    alpha, beta, gamma : float
        Frangi's plate, blob and structure sensitivities (as in scikit-image); ``gamma=None``
        takes half the largest Hessian norm of the first scale.

    Notes
    -----
    :meth:`segment` returns a float32 Volume ``p = clip(response / (2 * low), 0, 1)`` with the
    input's affine (``low = hysteresis * level``), zeroed on the regions that hysteresis and
    ``min_size_mm3`` reject, so ``p >= 0.5`` exactly on the kept vessel voxels;
    :func:`vesseltree.extract` thresholds at 0.5 and uses ``p`` for sub-voxel walls. The walls of a
    vesselness map are not the lumen walls: radii from it are biased (Frangi low, Sato high).
    ``meta["vesselness"]`` records the level and the settings.
    """

    sigmas_mm: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
    method: str = "frangi"
    bright: bool = True
    threshold: str | float = "otsu"
    hysteresis: float | None = None
    min_size_mm3: float = 5.0
    alpha: float = 0.5
    beta: float = 0.5
    gamma: float | None = None

    def __post_init__(self):
        sig = np.atleast_1d(np.asarray(self.sigmas_mm, dtype=float))
        if sig.ndim != 1 or sig.size == 0 or not np.all(np.isfinite(sig)) or np.any(sig <= 0):
            raise InvalidInputError(
                f"sigmas_mm must be positive scales in mm, got {describe(self.sigmas_mm)}"
            )
        object.__setattr__(self, "sigmas_mm", tuple(float(s) for s in sig))
        if self.method not in ("frangi", "sato"):
            raise InvalidInputError(f"method must be 'frangi' or 'sato', got {self.method!r}")
        if not (
            self.threshold == "otsu"
            or (
                isinstance(self.threshold, (int, float))
                and not isinstance(self.threshold, bool)
                and np.isfinite(self.threshold)
                and self.threshold > 0
            )
        ):
            raise InvalidInputError(
                f"threshold must be 'otsu' or a positive number, got {self.threshold!r}"
            )
        if self.hysteresis is not None and not (
            isinstance(self.hysteresis, (int, float)) and 0 < self.hysteresis <= 1
        ):
            raise InvalidInputError(
                f"hysteresis must be a ratio in (0, 1] or None, got {self.hysteresis!r}"
            )
        if not (np.isfinite(self.min_size_mm3) and self.min_size_mm3 >= 0):
            raise InvalidInputError(
                f"min_size_mm3 must be a non-negative volume in mm^3, got {self.min_size_mm3!r}"
            )

    def response(self, volume) -> np.ndarray:
        """(I, J, K) float32 maximum response over the scales."""
        vol = as_volume(volume, name="volume")
        x = np.asarray(vol.data, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise InvalidInputError("volume holds NaN or inf values; replace them before filtering")
        if not self.bright:
            x = -x
        best = np.zeros(x.shape, dtype=np.float32)
        gamma = self.gamma
        for s in self.sigmas_mm:
            t0 = time.perf_counter()
            lam = hessian_eigenvalues(x, vol.affine, s)
            # bright tubes: the two large eigenvalues are negative; flip so they are positive
            l1, l2, l3 = -lam[0], -lam[1], -lam[2]
            del lam
            if self.method == "sato":
                val = np.sqrt(np.maximum(l2, 0) * np.maximum(l3, 0))
            else:
                l2c, l3c = np.maximum(l2, 1e-10), np.maximum(l3, 1e-10)
                ra = l2c / l3c
                rb = np.abs(l1) / np.sqrt(l2c * l3c)
                ss = l1 * l1 + l2 * l2 + l3 * l3
                if gamma is None:
                    gamma = 0.5 * float(np.sqrt(ss.max())) or 1.0
                val = (1.0 - np.exp(-(ra * ra) / (2 * self.alpha**2))) * np.exp(
                    -(rb * rb) / (2 * self.beta**2)
                )
                val *= 1.0 - np.exp(-ss / (2 * gamma**2))
                val[(l2 <= 0) | (l3 <= 0)] = 0.0
            np.maximum(best, val.astype(np.float32), out=best)
            log.debug("vesselness sigma %.3g mm: %.2f s", s, time.perf_counter() - t0)
        return best

    def segment(self, volume) -> Volume:
        """Probability-like vessel map of ``volume`` (same affine); see the class notes."""
        from skimage.filters import threshold_otsu

        vol = as_volume(volume, name="volume")
        r = self.response(vol)
        pos = r[r > 0]
        if pos.size == 0:
            level = float("inf")
        elif self.threshold == "otsu":
            level = float(threshold_otsu(pos)) if np.ptp(pos) > 0 else float(pos[0])
        else:
            level = float(self.threshold)
        ratio = self.hysteresis
        if ratio is None:
            ratio = 1.0 / 3.0 if self.method == "frangi" else 1.0
        low = level * ratio
        p = np.clip(r / (2.0 * low), 0.0, 1.0).astype(np.float32)
        removed = 0
        if np.isfinite(level):
            weak = p >= 0.5
            lab, n = ndi.label(weak, structure=np.ones((3, 3, 3)))
            if n:
                keep = np.zeros(n + 1, bool)
                if ratio < 1.0:
                    keep[np.unique(lab[r >= level])] = True
                else:
                    keep[:] = True
                keep[0] = False
                if self.min_size_mm3 > 0:
                    sizes = np.bincount(lab.ravel(), minlength=n + 1) * vol.voxel_volume
                    small = keep & (sizes < self.min_size_mm3)
                    removed = int(small.sum())
                    keep &= ~small
                p[weak & ~keep[lab]] = 0.0
        meta = {"source": vol.meta.get("source")}
        meta["vesselness"] = {
            "method": self.method,
            "sigmas_mm": list(self.sigmas_mm),
            "level": level,
            "low_level": low,
            "threshold": self.threshold,
            "pieces_removed": removed,
        }
        return Volume(p, vol.affine, meta=meta)
