"""Surfaces of masks and probability maps, in world millimetres through the volume's affine."""

from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import EmptyInputError, InvalidInputError, describe
from ..volume import Volume, as_volume

__all__ = ["from_mask"]

log = logging.getLogger(__name__)


def _as_volume(source, spacing, affine) -> Volume:
    if isinstance(source, (str, os.PathLike)):
        from ..io import read_volume

        return read_volume(source)
    return as_volume(source, spacing=spacing, affine=affine, name="volume")


def from_mask(
    volume,
    *,
    level: float | None = None,
    smoothing: float | None = 0.1,
    iterations: int = 20,
    keep: str = "all",
    fill_holes: bool = True,
    spacing=None,
    affine=None,
):
    """Watertight surface of a binary mask or probability map, in world mm.

    Marching cubes runs in voxel index space on the (padded) volume; vertices are then mapped
    through ``volume.affine``, so anisotropic, rotated, sheared and flipped grids all come out
    right, and the faces are re-wound where the affine flips orientation (det < 0), so normals
    point outward.

    Parameters
    ----------
    volume : Volume, path, nibabel image or ndarray
        A mask (bool or integer: nonzero is vessel) or a probability map (float in [0, 1],
        contoured at 0.5 for sub-voxel walls). A float volume of other values needs ``level``
        (vessel where value > level; negate a level set that is negative inside).
    level : float, optional
        Iso-value. Default 0.5 (mask or probability).
    smoothing : float or None
        Pass band of VTK's windowed-sinc smoother (0 < pass band < 2; smaller is smoother).
        The default 0.1 with 20 iterations halves the staircase error of a binary mask without
        thinning vessels of two voxels' diameter; None turns smoothing off (use it for
        probability maps, whose contour is already sub-voxel).
    iterations : int
        Smoother iterations.
    keep : {"all", "largest"}
        Components kept (26-connected).
    fill_holes : bool
        Fill enclosed cavities first (they would become inner shells).
    spacing, affine
        For a bare array: voxel size (mm) or voxel -> world affine.

    Returns
    -------
    trimesh.Trimesh

    Raises
    ------
    InvalidInputError
        Not a 3D volume, a float volume outside [0, 1] without ``level``, bad ``keep``,
        ``smoothing`` or ``iterations``.
    EmptyInputError
        Nothing above ``level``.
    """
    import trimesh
    from scipy import ndimage
    from skimage.measure import marching_cubes

    vol = _as_volume(volume, spacing, affine)
    if keep not in ("all", "largest"):
        raise InvalidInputError(f"keep must be 'all' or 'largest', got {keep!r}")
    if smoothing is not None:
        try:
            sm = float(smoothing)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"smoothing must be a pass band in (0, 2) or None, got {describe(smoothing)}"
            ) from None
        if not 0 < sm < 2:
            raise InvalidInputError(
                f"smoothing must be a pass band in (0, 2) or None, got {smoothing!r}"
            )
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 1
    ):
        raise InvalidInputError(f"iterations must be a positive integer, got {iterations!r}")
    data = np.asarray(vol.data)
    if data.dtype.kind == "f":
        field = data.astype(np.float32)
        if level is None:
            lo, hi = float(np.nanmin(field)), float(np.nanmax(field))
            if lo < 0 or hi > 1:
                raise InvalidInputError(
                    f"volume holds floats in [{lo:.3g}, {hi:.3g}], not a probability map in [0, 1]; pass level= "
                    "(vessel where value > level)"
                )
            level = 0.5
    else:
        field = (data != 0).astype(np.float32)
        level = 0.5 if level is None else level
    level = float(level)
    inside = field > level
    if fill_holes:
        filled = ndimage.binary_fill_holes(inside)
        field = np.where(filled & ~inside, np.float32(1.0 if level < 1 else level + 1), field)
        inside = filled
    lab, n = ndimage.label(inside, structure=np.ones((3, 3, 3)))
    if n == 0:
        raise EmptyInputError(f"volume has no voxel above level {level}; nothing to mesh")
    if keep == "largest" and n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        big = int(np.argmax(sizes))
        # outside the kept component the field drops below the level (keeps sub-voxel walls)
        grown = ndimage.binary_dilation(lab == big, structure=np.ones((3, 3, 3)))
        field = np.where(grown, field, np.minimum(field, np.float32(level - 1.0)))
    low = np.float32(min(float(field.min()), level - 1.0))
    padded = np.pad(field, 2, mode="constant", constant_values=low)
    verts, faces, _, _ = marching_cubes(padded, level=level, allow_degenerate=False)
    ijk = verts.astype(np.float64) - 2.0
    aff = np.asarray(vol.affine, np.float64)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    faces = faces.astype(np.int64)
    mesh = trimesh.Trimesh(world, faces, process=False)
    if smoothing is not None:
        mesh = _windowed_sinc(mesh, float(smoothing), int(iterations))
    if mesh.volume < 0:  # MC winding, and the affine's handedness, decide the sign
        mesh.invert()
    mesh.metadata["vesseltree"] = {"level": level, "components": int(n), "smoothing": smoothing}
    log.info("from_mask: %d components, %d faces", n, len(mesh.faces))
    return mesh


def triangles_to_polydata(mesh):
    """A ``vtkPolyData`` holding a triangle mesh's vertices and faces (copies)."""
    import vtk
    from vtk.util import numpy_support as ns

    faces = np.ascontiguousarray(mesh.faces, np.int64)
    poly = vtk.vtkPolyData()
    pts = vtk.vtkPoints()
    pts.SetData(ns.numpy_to_vtk(np.asarray(mesh.vertices, np.float64), deep=True))
    poly.SetPoints(pts)
    ca = vtk.vtkCellArray()
    ca.SetData(
        ns.numpy_to_vtkIdTypeArray(np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64), deep=True),
        ns.numpy_to_vtkIdTypeArray(faces.ravel(), deep=True),
    )
    poly.SetPolys(ca)
    return poly


def _windowed_sinc(mesh, pass_band: float, iterations: int):
    """VTK's windowed-sinc smoother (volume-preserving low pass); topology is unchanged."""
    import trimesh
    import vtk
    from vtk.util import numpy_support as ns

    poly = triangles_to_polydata(mesh)
    sm = vtk.vtkWindowedSincPolyDataFilter()
    sm.SetInputData(poly)
    sm.SetNumberOfIterations(iterations)
    sm.SetPassBand(pass_band)
    sm.NormalizeCoordinatesOn()
    sm.FeatureEdgeSmoothingOff()
    sm.BoundarySmoothingOff()
    sm.NonManifoldSmoothingOn()
    sm.Update()
    v = ns.vtk_to_numpy(sm.GetOutput().GetPoints().GetData()).astype(np.float64)
    return trimesh.Trimesh(v, np.asarray(mesh.faces, np.int64), process=False)
