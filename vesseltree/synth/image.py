"""Simulated CT angiography and MR angiography images of a vessel mask or graph.

The image model, in order: a background of smooth tissue structures and a few bright blobs; the
vessel lumen blended in by its partial volume fraction; a Gaussian point spread function (mm); a
smooth multiplicative bias field; and Gaussian (CT) or Rician (MRA) noise. CT intensities are in
Hounsfield units; MRA intensities are unitless, with the vessels near 1. Lengths are in mm and
every spatial quantity goes through the volume's affine, so an image of a real mask keeps that
mask's grid.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import InvalidInputError, describe
from ..graph import VesselGraph
from ..volume import Volume
from .voxelize import voxelize

__all__ = ["simulate_image"]

log = logging.getLogger(__name__)

# defaults per modality; a (low, high) pair is drawn uniformly per image
_MODALITIES: dict[str, dict[str, Any]] = {
    "ct": {
        "vessel_intensity": (300.0, 450.0),  # contrast-enhanced lumen, HU
        "tissue": 40.0,  # soft tissue, HU
        "tissue_variation": 15.0,  # smooth variation of the soft tissue, HU (sd)
        "fat": -90.0,  # fatty regions, HU
        "blob_intensity": (700.0, 1200.0),  # bone / calcium, HU
        "blob_radius_mm": (1.0, 4.0),
        "n_blobs": (3, 6),
        "noise": (20.0, 40.0),  # Gaussian sd, HU
        "psf_mm": 0.4,  # Gaussian sd of the point spread function, mm
        "bias": 0.0,
        "floor": -1024.0,
    },
    "mra": {
        "vessel_intensity": (0.8, 1.0),  # inflow-enhanced lumen
        "tissue": 0.15,  # dark static tissue
        "tissue_variation": 0.03,
        "fat": 0.3,  # fat stays moderately bright in time-of-flight MRA
        "blob_intensity": (0.35, 0.5),
        "blob_radius_mm": (2.0, 6.0),
        "n_blobs": (2, 5),
        "noise": (0.02, 0.05),  # sd of each quadrature channel (Rician magnitude)
        "psf_mm": 0.5,
        "bias": 0.2,  # sd of the log bias field
        "floor": 0.0,
    },
}


def _smooth_field(
    shape: tuple[int, int, int], spacing: np.ndarray, length_mm: float, rng
) -> np.ndarray:
    """Zero-mean, unit-sd random field (float32) smooth over ``length_mm``.

    White noise on a coarse lattice (one node per ``length_mm`` along each voxel axis) blurred onto
    the voxel grid by separable Gaussian weights: three small matrix products, so it stays fast
    for large grids.
    """
    mats = []
    for n, sp in zip(shape, spacing):
        cell = max(length_mm / float(sp), 1.0)  # lattice step in voxels
        nodes = np.arange(-2.0 * cell, n - 1 + 2.0 * cell + 1e-9, cell)
        x = np.arange(n, dtype=np.float64)
        mats.append(np.exp(-0.5 * ((x[:, None] - nodes[None, :]) / cell) ** 2).astype(np.float32))
    ci, cj, ck = (m.shape[1] for m in mats)
    (ni, _), (nj, _), (nk, _) = (m.shape for m in mats)
    coarse = rng.standard_normal((ci, cj, ck)).astype(np.float32)
    # one 2D matrix product per axis (BLAS), the coarse axis moved to the front each time
    f = (coarse.reshape(ci * cj, ck) @ mats[2].T).reshape(ci, cj, nk)
    f = (mats[1] @ f.transpose(1, 0, 2).reshape(cj, ci * nk)).reshape(nj, ci, nk)
    f = (mats[0] @ f.transpose(1, 0, 2).reshape(ci, nj * nk)).reshape(ni, nj, nk)
    probe = f[::3, ::3, ::3]  # the field is smooth, so a sparse probe gives its moments
    mean, sd = float(probe.mean()), float(probe.std())
    f -= mean
    if sd > 0:
        f /= sd
    return f


def _paint_blobs(
    image: np.ndarray,
    fraction: np.ndarray,
    affine: np.ndarray,
    count: int,
    radius_range: tuple[float, float],
    value_range: tuple[float, float],
    rng,
) -> list[dict[str, Any]]:
    """Paint ``count`` soft-edged spheres into ``image``, kept 2 mm away from the vessels."""
    shape = np.asarray(image.shape)
    inv = np.linalg.inv(affine)
    rownorm = np.linalg.norm(inv[:3, :3], axis=1)
    edge = float(np.linalg.norm(affine[:3, :3], axis=0).min())  # softness of the blob edge, mm
    painted: list[dict[str, Any]] = []
    for _ in range(count):
        for _try in range(20):
            centre_vox = rng.uniform(0, shape - 1)
            radius = rng.uniform(*radius_range)
            value = rng.uniform(*value_range)
            lo = np.maximum(np.floor(centre_vox - (radius + 2.0) * rownorm), 0).astype(int)
            hi = np.minimum(np.ceil(centre_vox + (radius + 2.0) * rownorm), shape - 1).astype(int)
            sl = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))
            grids = np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij")
            rel = np.stack(grids, axis=-1) - centre_vox
            d = np.linalg.norm(rel @ affine[:3, :3].T, axis=-1) - radius
            if np.any((fraction[sl] > 0) & (d < 2.0)):
                continue
            w = np.clip(0.5 - d / edge, 0.0, 1.0).astype(np.float32)
            image[sl] += w * (value - image[sl])
            centre = affine[:3, :3] @ centre_vox + affine[:3, 3]
            painted.append({"center_mm": centre.tolist(), "radius_mm": radius, "intensity": value})
            break
    return painted


def _check_number(value, name: str, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InvalidInputError(f"{name} must be a number, got {describe(value)}")
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return out


def _as_fraction(source, spacing, affine, shape, supersample: int, margin_mm: float):
    """(fraction Volume in [0, 1], bool mask Volume, truth graph or None)."""
    if isinstance(source, VesselGraph):
        frac = voxelize(
            source,
            spacing=spacing,
            affine=affine,
            shape=shape,
            partial_volume=True,
            supersample=supersample,
            margin_mm=margin_mm,
        )
        mask = Volume(frac.data >= 0.5, frac.affine, meta={"truth": source})
        return frac, mask, source
    if shape is not None:
        raise InvalidInputError("shape= applies to a graph only; a mask keeps its own grid")
    if isinstance(source, Volume):
        if spacing is not None or affine is not None:
            raise InvalidInputError(
                "mask_or_graph is a Volume, which keeps its own affine; drop spacing=/affine="
            )
        vol = source
    elif isinstance(source, np.ndarray):
        if source.ndim != 3:
            raise InvalidInputError(
                f"mask_or_graph must be a 3D mask, got a {source.ndim}D array of shape {source.shape}"
            )
        if spacing is not None and affine is not None:
            raise InvalidInputError("give spacing= or affine=, not both")
        vol = Volume(source, affine, spacing=spacing)
    else:
        raise InvalidInputError(
            f"mask_or_graph must be a VesselGraph, a mask Volume or a 3D numpy array, got {describe(source)}"
        )
    data = np.asarray(vol.data)
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or data.min(initial=0.0) < 0 or data.max(initial=0.0) > 1:
            raise InvalidInputError(
                "a float mask_or_graph must hold vessel fractions in [0, 1], got values in "
                f"[{np.nanmin(data):.3g}, {np.nanmax(data):.3g}]; threshold or rescale it first"
            )
        frac_data = data.astype(np.float32)
    else:
        frac_data = (data > 0).astype(np.float32)  # any label counts as vessel
    frac = Volume(frac_data, vol.affine)
    mask = vol if data.dtype == bool else Volume(frac_data >= 0.5, vol.affine, meta=dict(vol.meta))
    truth = vol.meta.get("truth")
    return frac, mask, truth if isinstance(truth, VesselGraph) else None


def simulate_image(
    mask_or_graph,
    *,
    modality: str = "ct",
    seed: int,
    spacing=None,
    affine=None,
    shape=None,
    noise: float | None = None,
    psf_mm: float | None = None,
    bias: float | None = None,
    vessel_intensity: float | None = None,
    n_blobs: int | None = None,
    supersample: int = 2,
    margin_mm: float = 5.0,
) -> Volume:
    """A CT-like or MRA-like image of vessels, with its truth attached.

    Parameters
    ----------
    mask_or_graph : VesselGraph, Volume or (I, J, K) ndarray
        A graph is voxelised first (partial volume, :func:`~vesseltree.synth.voxelize`). A mask
        Volume (bool, integer labels: > 0 is vessel, or float fractions in [0, 1]) is rendered on
        its own grid, so a real segmentation becomes an image with the same affine. A bare array
        takes ``spacing=`` or ``affine=``.
    modality : {"ct", "mra"}
        CT angiography in HU (bright contrast-filled lumen on ~40 HU soft tissue with fatty
        regions and bone/calcium blobs, Gaussian noise) or time-of-flight MR angiography, unitless
        (bright lumen on dark textured tissue, bias field, Rician noise).
    seed : int
        Seed of every random draw (intensities, structures, noise).
    spacing, affine, shape : optional
        Grid of a graph's image, as in :func:`~vesseltree.synth.voxelize` (default 0.5 mm).
    noise : float, optional
        Noise sd (HU for CT; per quadrature channel for MRA). Default: drawn from 20-40 HU (CT),
        0.02-0.05 (MRA).
    psf_mm : float, mm, optional
        Gaussian sd of the point spread function (default 0.4 mm CT, 0.5 mm MRA; 0 = none). It is
        applied along the voxel axes, exact for affines with orthogonal axes.
    bias : float, optional
        sd of the log of the smooth multiplicative bias field (default 0 CT, 0.2 MRA).
    vessel_intensity : float, optional
        Lumen intensity (default drawn from 300-450 HU CT, 0.8-1.0 MRA).
    n_blobs : int, optional
        Number of bright blobs (bone/calcium in CT, fat in MRA); default drawn per modality.
    supersample : int
        Sub-samples per voxel axis for a graph's partial volume.
    margin_mm : float, mm
        Border around a graph where its grid is chosen here.

    Returns
    -------
    Volume
        float32 image. ``meta``: ``"truth"`` (the graph, or None where unknown), ``"mask"`` (bool
        Volume of the vessel, voxels at least half inside for a graph), ``"fraction"`` (float32
        Volume of the partial volume used), ``"modality"``, ``"seed"``, ``"params"`` (every drawn
        parameter and the blobs).

    Raises
    ------
    InvalidInputError
        Unknown ``modality``, a bad ``seed``, a negative ``noise``/``psf_mm``/``bias``, a mask that is
        not 3D, fractions outside [0, 1], or ``spacing=``/``affine=`` with a Volume.
    """
    if not isinstance(modality, str) or modality.lower() not in _MODALITIES:
        raise InvalidInputError(
            f"modality must be one of {sorted(_MODALITIES)}, got {describe(modality)}"
        )
    modality = modality.lower()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {describe(seed)}")
    noise = _check_number(noise, "noise")
    psf_mm = _check_number(psf_mm, "psf_mm")
    bias = _check_number(bias, "bias")
    if vessel_intensity is not None and (
        isinstance(vessel_intensity, bool)
        or not isinstance(vessel_intensity, (int, float, np.number))
        or not math.isfinite(vessel_intensity)
    ):
        raise InvalidInputError(
            f"vessel_intensity must be a finite number, got {describe(vessel_intensity)}"
        )
    if n_blobs is not None and (
        isinstance(n_blobs, bool) or not isinstance(n_blobs, (int, np.integer)) or n_blobs < 0
    ):
        raise InvalidInputError(f"n_blobs must be an integer >= 0, got {describe(n_blobs)}")
    if not isinstance(mask_or_graph, (VesselGraph, Volume, np.ndarray)):
        raise InvalidInputError(
            f"mask_or_graph must be a VesselGraph, a mask Volume or a 3D numpy array, got {describe(mask_or_graph)}"
        )

    frac_vol, mask, truth = _as_fraction(
        mask_or_graph, spacing, affine, shape, supersample, margin_mm
    )
    frac = frac_vol.data
    aff = frac_vol.affine
    sp = frac_vol.spacing
    shp = frac_vol.shape
    cfg = _MODALITIES[modality]
    rng = np.random.default_rng(int(seed))

    v0 = float(
        rng.uniform(*cfg["vessel_intensity"]) if vessel_intensity is None else vessel_intensity
    )
    sigma = float(rng.uniform(*cfg["noise"]) if noise is None else noise)
    psf = float(cfg["psf_mm"] if psf_mm is None else psf_mm)
    bias_sd = float(cfg["bias"] if bias is None else bias)
    count = int(
        rng.integers(cfg["n_blobs"][0], cfg["n_blobs"][1] + 1) if n_blobs is None else n_blobs
    )

    # background: smooth tissue, fatty regions with soft borders, a fine texture, bright blobs
    tissue = cfg["tissue"] + cfg["tissue_variation"] * _smooth_field(shp, sp, 25.0, rng)
    texture = _smooth_field(shp, sp, 4.0, rng)
    tissue += 0.5 * cfg["tissue_variation"] * texture
    fat_weight = 1.0 / (1.0 + np.exp(-4.0 * (_smooth_field(shp, sp, 15.0, rng) - 1.0)))
    background = (tissue + fat_weight * (cfg["fat"] - tissue)).astype(np.float32)
    blobs = _paint_blobs(
        background, frac, aff, count, cfg["blob_radius_mm"], cfg["blob_intensity"], rng
    )
    # the lumen: slowly varying contrast (+-5 %), blended by partial volume
    lumen = v0 * (1.0 + 0.05 * _smooth_field(shp, sp, 30.0, rng))
    image = background + frac * (lumen - background)
    if psf > 0:
        image = gaussian_filter(image, sigma=psf / sp, mode="nearest")
    if bias_sd > 0:
        image *= np.exp(bias_sd * _smooth_field(shp, sp, 80.0, rng))
    if modality == "mra":
        re = image + rng.normal(0.0, sigma, shp).astype(np.float32) if sigma > 0 else image
        im = rng.normal(0.0, sigma, shp).astype(np.float32) if sigma > 0 else 0.0
        image = np.sqrt(re * re + im * im)
    elif sigma > 0:
        image = image + rng.normal(0.0, sigma, shp).astype(np.float32)
    image = np.maximum(image, cfg["floor"]).astype(np.float32)

    params = {
        "vessel_intensity": v0,
        "noise": sigma,
        "psf_mm": psf,
        "bias": bias_sd,
        "tissue": cfg["tissue"],
        "fat": cfg["fat"],
        "blobs": blobs,
    }
    log.debug("simulate_image(%s, seed=%d): %s on %s", modality, seed, params, shp)
    meta = {
        "truth": truth,
        "mask": mask,
        "fraction": frac_vol,
        "modality": modality,
        "seed": int(seed),
        "params": params,
    }
    return Volume(image, aff, meta=meta)
