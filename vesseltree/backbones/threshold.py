"""`Threshold`: the simplest backbone, a mask where the image reaches a level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EmptyInputError, InvalidInputError
from ..volume import Volume, as_volume

__all__ = ["Threshold"]


@dataclass(frozen=True)
class Threshold:
    """Vessel mask ``image >= level`` (``<=`` for dark vessels), with the input's affine.

    Parameters
    ----------
    level : float or "otsu"
        Intensity level in image units (HU for CT), a fraction of the intensity range where
        ``relative=True``, or Otsu's threshold of the whole image.
    relative : bool
        Read ``level`` as a fraction in [0, 1] of the range: ``min + level * (max - min)``.
    bright : bool
        Vessels are brighter than the background.

    Examples
    --------
    >>> import numpy as np
    >>> from vesseltree import Volume
    >>> int(Threshold(level=0.5, relative=True).segment(Volume(np.arange(27.0).reshape(3, 3, 3))).data.sum())
    14
    """

    level: float | str = "otsu"
    relative: bool = False
    bright: bool = True

    def __post_init__(self):
        if self.level == "otsu":
            return
        if (
            isinstance(self.level, bool)
            or not isinstance(self.level, (int, float, np.number))
            or not np.isfinite(self.level)
        ):
            raise InvalidInputError(f"level must be a finite number or 'otsu', got {self.level!r}")
        if self.relative and not 0.0 <= float(self.level) <= 1.0:
            raise InvalidInputError(
                f"level must be a fraction in [0, 1] with relative=True, got {self.level!r}"
            )

    def cut(self, data: np.ndarray) -> float:
        """The absolute level for ``data``."""
        if self.level == "otsu":
            from skimage.filters import threshold_otsu

            if np.ptp(data) == 0:
                raise EmptyInputError("volume is constant, so Otsu's threshold is undefined")
            return float(threshold_otsu(data))
        if self.relative:
            lo, hi = float(np.min(data)), float(np.max(data))
            return lo + float(self.level) * (hi - lo)
        return float(self.level)

    def segment(self, volume) -> Volume:
        """Boolean mask Volume (same affine); ``meta["threshold"]`` is the level used."""
        vol = as_volume(volume, name="volume")
        data = np.asarray(vol.data)
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            raise InvalidInputError(
                "volume holds NaN or inf values; replace them before thresholding"
            )
        level = self.cut(data)
        mask = data >= level if self.bright else data <= level
        return Volume(mask, vol.affine, meta={"source": vol.meta.get("source"), "threshold": level})
