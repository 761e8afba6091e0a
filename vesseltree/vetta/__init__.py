"""VeTTA: transformer autoencoders of vessel segments and whole vessel trees.

Two stages, trained one after the other (after Batten et al., "Vector Representations of Vessel
Trees", MIDL 2025; our own implementation):

- :class:`SegmentAE` maps one segment (64 curvature-spread samples of x, y, z, r, t in a frame
  with the start at the origin, the end on the unit sphere and the start radius 1) to a code and
  back, as a residual on the straight line with exact ends;
- :class:`TreeAE` maps a tree (one token per parent -> child edge, a start token and the root
  self-edge) to one vector, and decodes it breadth-first, predicting the children of one node at a
  time from the root-to-node path and the code with learned slots. Every new node gets exactly one
  parent, so every decode is a valid tree; caps on nodes and depth make every decode end.

:class:`VeTTA` is the plain face: ``from_pretrained``, ``encode``, ``decode``, ``reconstruct``,
``sample``; :func:`interpolate` walks the latent space between two trees. Lengths are mm.
"""

from __future__ import annotations

import importlib

# names load on first use, so `vesseltree.vetta.cli` (wired into the main CLI) does not import torch
_EXPORTS = {
    "VeTTA": "api",
    "interpolate": "api",
    "latent_path": "api",
    "DEFAULT_CHECKPOINT": "api",
    "VeTTAConfig": "config",
    "SegmentConfig": "config",
    "TreeAEConfig": "config",
    "SegmentAE": "models",
    "TreeAE": "models",
    "topk_match": "matching",
    "CanonicalTree": "tree",
    "Frame": "tree",
    "canonical_tree": "tree",
    "crop_subtrees": "tree",
    "random_split": "tree",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vesseltree.vetta' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
