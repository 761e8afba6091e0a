"""vesseltree: geometric modelling of vessel trees in 3D medical images.

The core type is :class:`VesselGraph` (centerline nodes with radii, in world mm). Volumes carry
their voxel -> world affine in :class:`Volume`. Readers and writers live in :mod:`vesseltree.io`,
synthetic trees with exact truth in :mod:`vesseltree.synth`.

Importing vesseltree loads neither torch, torch_geometric nor pyvista; they load where used.
"""

from __future__ import annotations

from .errors import EmptyInputError, FileFormatError, InvalidInputError, VesselTreeError
from .graph import VesselGraph
from .volume import Volume

__version__ = "0.1.0"

__all__ = [
    "VesselGraph",
    "Volume",
    "VesselTreeError",
    "InvalidInputError",
    "FileFormatError",
    "EmptyInputError",
    "extract",
    "io",
    "synth",
    "__version__",
]


def __getattr__(name: str):
    # subpackages load on first use, so `import vesseltree` stays light
    import importlib

    if name in {
        "io",
        "synth",
        "metrics",
        "viz",
        "centerline",
        "mesh",
        "backbones",
        "vetta",
        "deformcl",
    }:
        return importlib.import_module(f".{name}", __name__)
    if name == "extract":
        # the front door of centerline extraction, loaded on first use
        return importlib.import_module(".centerline.api", __name__).extract
    raise AttributeError(f"module 'vesseltree' has no attribute {name!r}")
