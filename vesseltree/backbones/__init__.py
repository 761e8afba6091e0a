"""The common mask-to-graph interface: any segmentation model in front of the extractor.

A backbone is any object with one method, ``segment(volume) -> Volume``, that returns a mask, a
label map or a probability map with the input's affine (:class:`Backbone`).
``vesseltree.extract(image, backbone=...)`` runs it and extracts the centerline of its output.

==================  ===========================================================================
:class:`Threshold`  ``image >= level`` (absolute, relative to the range, or Otsu)
:class:`Vesselness` multi-scale Frangi/Sato in mm on a raw CT/MRA; no training
:class:`LabelMap`   keep labels (by id or name) of an nnU-Net / TotalSegmentator / MONAI output
:class:`TorchModule` sliding-window inference of any ``torch.nn.Module`` (CPU or CUDA)
==================  ===========================================================================

:func:`get` builds one by name (``get("vesselness", method="sato")``). Importing this package
loads no torch.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..errors import InvalidInputError
from ..volume import Volume
from .labelmap import LabelMap, parse_labels, read_labels_json
from .threshold import Threshold
from .torch_module import TorchModule
from .vesselness import Vesselness

__all__ = [
    "Backbone",
    "Threshold",
    "Vesselness",
    "LabelMap",
    "TorchModule",
    "get",
    "available",
    "parse_labels",
    "read_labels_json",
]


@runtime_checkable
class Backbone(Protocol):
    """Anything with ``segment(volume) -> Volume`` (a mask, label map or probability map with the
    input's affine)."""

    def segment(self, volume: Volume) -> Volume: ...


_REGISTRY = {
    "threshold": Threshold,
    "vesselness": Vesselness,
    "labelmap": LabelMap,
    "torch": TorchModule,
}


def available() -> list[str]:
    """Names :func:`get` knows."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> Backbone:
    """A backbone by name: ``"threshold"``, ``"vesselness"``, ``"labelmap"`` or ``"torch"``."""
    key = name.lower().replace("-", "").replace("_", "") if isinstance(name, str) else None
    if key not in _REGISTRY:
        raise InvalidInputError(f"unknown backbone {name!r}; choose one of {available()}")
    return _REGISTRY[key](**kwargs)
