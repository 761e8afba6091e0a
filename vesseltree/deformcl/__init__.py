"""DeformCL: a 3D UNet plus a learned cascade that deforms whole centerline trees.

- :class:`DeformCL`: ``from_pretrained(path=None)``, ``predict(volume) -> (VesselGraph, mask)``
  with sliding-window inference, ``refine(volume, graph)``, ``segment(volume)`` (backbone face).
- :class:`DeformCLConfig` (``tiny()``, ``small()``, ``default()``), :class:`TrainConfig`.
- :class:`DeformCLNet` (UNet3D + Cascade + merger) and :func:`train`.

Everything geometric is in millimetres; see :mod:`.geometry` for the voxel conventions.
"""

from __future__ import annotations

import importlib

# loaded on first use, so `vesseltree --help` (which registers the CLI) does not import torch
_LAZY = {
    "DeformCL": ".api",
    "DEFAULT_CHECKPOINT": ".api",
    "DeformCLConfig": ".config",
    "TrainConfig": ".config",
    "DeformCLNet": ".model",
    "train": ".train",
}

__all__ = [
    "DeformCL",
    "DeformCLConfig",
    "TrainConfig",
    "DeformCLNet",
    "train",
    "DEFAULT_CHECKPOINT",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        # importing the submodule ``.train`` binds the package attribute ``train`` to the module;
        # bind the function instead so that ``from vesseltree.deformcl import train`` gets it
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
