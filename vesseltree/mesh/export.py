"""Writing surfaces: binary STL (default), PLY, OBJ, VTP and 3MF, in millimetres, atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, write_bytes_atomic
from ..errors import FileFormatError, InvalidInputError, describe

__all__ = ["MESH_SUFFIXES", "export"]

#: suffixes :func:`export` writes; PLY and VTP carry per-vertex data
MESH_SUFFIXES = (".stl", ".ply", ".obj", ".vtp", ".3mf")


def export(
    mesh, path: str | os.PathLike, *, vertex_data: Mapping[str, np.ndarray] | None = None
) -> Path:
    """Write ``mesh`` to ``path`` in the format its suffix names (atomically; units mm).

    Parameters
    ----------
    mesh : trimesh.Trimesh
        Vertices in world mm.
    path : str or os.PathLike
        ``.stl`` (binary), ``.ply`` (binary), ``.obj``, ``.vtp`` (VTK XML) or ``.3mf``.
    vertex_data : dict of str -> (V,) or (V, k) array, optional
        Per-vertex values (radius mm, label, branch id). Written to PLY (vertex properties) and
        VTP (point data); other formats have no place for them. Default: the mesh's
        ``vertex_attributes`` (set by ``from_graph(..., vertex_data=True)``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileFormatError
        Unknown suffix.
    InvalidInputError
        ``mesh`` is not a trimesh mesh, or a ``vertex_data`` array has the wrong length.
    """
    import trimesh

    if not isinstance(mesh, trimesh.Trimesh):
        raise InvalidInputError(f"mesh must be a trimesh.Trimesh, got {describe(mesh)}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise FileFormatError(
            f"cannot write mesh to {str(path)!r}: unknown suffix {suffix!r}; use one of "
            f"{list(MESH_SUFFIXES)}"
        )
    nv = len(mesh.vertices)
    data = dict(mesh.vertex_attributes) if vertex_data is None else dict(vertex_data)
    for key, arr in data.items():
        a = np.asarray(arr)
        if a.shape[:1] != (nv,):
            raise InvalidInputError(
                f"vertex_data[{key!r}] must have one row per vertex ({nv}), got shape {a.shape}"
            )
    if suffix == ".stl":
        write_bytes_atomic(path, trimesh.exchange.stl.export_stl(mesh))
    elif suffix == ".obj":
        write_bytes_atomic(
            path, trimesh.exchange.obj.export_obj(mesh, include_normals=False).encode("utf-8")
        )
    elif suffix == ".3mf":
        try:
            import lxml  # noqa: F401 - trimesh's 3MF writer needs it
        except ImportError:
            raise FileFormatError(
                f"writing 3MF ({str(path)!r}) needs the lxml package; pip install lxml, "
                "or write .stl"
            ) from None
        write_bytes_atomic(path, trimesh.exchange.threemf.export_3MF(mesh))
    elif suffix == ".ply":
        out = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=False)
        for key, arr in data.items():
            out.vertex_attributes[key] = np.asarray(arr)
        write_bytes_atomic(
            path, trimesh.exchange.ply.export_ply(out, encoding="binary", include_attributes=True)
        )
    else:  # .vtp
        import pyvista as pv

        faces = np.asarray(mesh.faces, np.int64)
        cells = np.hstack([np.full((len(faces), 1), 3, np.int64), faces]).ravel()
        poly = pv.PolyData(np.asarray(mesh.vertices, np.float64), cells)
        for key, arr in data.items():
            poly.point_data[key] = np.asarray(arr)
        poly.field_data["units"] = np.array(["mm"])
        with atomic_path(path) as tmp:
            poly.save(str(tmp), binary=True)
    return path
