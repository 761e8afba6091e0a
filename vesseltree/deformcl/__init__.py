"""DeformCL: a 3D UNet plus a learned cascade that deforms whole centerline trees.

- :class:`DeformCL`: ``from_pretrained(path=None)``, ``predict(volume) -> (VesselGraph, mask)``
  with sliding-window inference, ``refine(volume, graph)``, ``segment(volume)`` (backbone face).
- :class:`DeformCLConfig` (``tiny()``, ``small()``, ``default()``), :class:`TrainConfig`.
- :class:`DeformCLNet` (UNet3D + Cascade + merger) and :func:`train`.

Everything geometric is in millimetres; see :mod:`.geometry` for the voxel conventions.
"""

from __future__ import annotations

from .api import DEFAULT_CHECKPOINT, DeformCL
from .config import DeformCLConfig, TrainConfig
from .model import DeformCLNet
from .train import train

__all__ = [
    "DeformCL",
    "DeformCLConfig",
    "TrainConfig",
    "DeformCLNet",
    "train",
    "DEFAULT_CHECKPOINT",
]
