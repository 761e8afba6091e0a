"""`TorchModule`: sliding-window inference of any 3D segmentation ``torch.nn.Module``.

torch is imported only when a window runs, so importing :mod:`vesseltree.backbones` stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import product

import numpy as np

from ..errors import InvalidInputError, describe
from ..volume import Volume, as_volume

__all__ = ["TorchModule", "window_starts", "blend_weights"]

log = logging.getLogger(__name__)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start indices of windows of length ``roi`` covering ``0..size`` with ``overlap``.

    The first window starts at 0 and the last one ends at ``size`` (shifted back, not padded), so
    every voxel at the volume's border is at a window's border too.
    """
    if size <= roi:
        return [0]
    step = max(1, int(np.floor(roi * (1.0 - overlap))))
    n = int(np.ceil((size - roi) / step)) + 1
    starts = np.linspace(0, size - roi, n).round().astype(int)
    return sorted(set(int(s) for s in starts))


def blend_weights(roi: tuple[int, int, int], mode: str, sigma_scale: float = 0.125) -> np.ndarray:
    """(roi) float32 weight of each window voxel: a Gaussian around the centre, or ones."""
    if mode == "constant":
        return np.ones(roi, np.float32)
    axes = []
    for n in roi:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        s = max(sigma_scale * n, 1e-6)
        axes.append(np.exp(-0.5 * (x / s) ** 2))
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    w /= w.max()
    # floor: corner voxels only one window covers still get a finite weight
    return np.maximum(w, 1e-4).astype(np.float32)


class TorchModule:
    """Sliding-window inference of a 3D segmentation network as a vesseltree backbone.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a (B, 1, X, Y, Z) float32 batch to (B, C, X, Y, Z) logits (or probabilities with
        ``activation=None``). It is run in ``eval()`` mode under ``torch.inference_mode``; its
        training flag is restored afterwards.
    roi_size : (3,) int, voxels
        Window size; a volume smaller than the window along an axis is padded with zeros (what a
        zero-padded convolution sees beyond the border anyway).
    overlap : float
        Fraction of the window shared by neighbours, in [0, 1).
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    activation : {"sigmoid", "softmax", None}
        Applied to the logits before blending.
    channel : int
        Output channel returned as the probability map: 0 for a one-channel sigmoid net, 1 (the
        first foreground class) for a softmax net.
    output : {"probability", "argmax"}
        A float32 probability map of ``channel`` (extract thresholds it at 0.5), or the int32
        arg-max over channels (a label map, so ``extract(..., label=...)`` selects classes).
    mode : {"gaussian", "constant"}
        Blending of overlapping windows: Gaussian weights (sd ``roi / 8``, as nnU-Net and MONAI) or
        a plain average.
    batch_size : int
        Windows per forward pass.
    margin : int, voxels
        Voxels at each window face that lies inside the volume get no weight, so the stitched
        output ignores the window's own border effects. With ``margin`` at least the network's
        receptive-field half-width (and ``overlap * roi >= 2 * margin``) the stitched output equals
        a forward pass over the whole volume. 0 (default) blends everything, as MONAI does.
    normalize : callable, optional
        ``f(ndarray) -> ndarray`` applied to the image first (e.g. the model's intensity
        normalisation); the model sees the raw values where None.
    amp : bool
        Mixed precision (float16 autocast) on CUDA.
    """

    def __init__(
        self,
        model,
        *,
        roi_size=(96, 96, 96),
        overlap: float = 0.25,
        device="cpu",
        activation: str | None = "sigmoid",
        channel: int | None = None,
        output: str = "probability",
        mode: str = "gaussian",
        batch_size: int = 1,
        margin: int = 0,
        normalize: Callable | None = None,
        amp: bool = False,
    ):
        if not callable(model):
            raise InvalidInputError(f"model must be a torch.nn.Module, got {describe(model)}")
        roi = np.atleast_1d(np.asarray(roi_size))
        if roi.size == 1:
            roi = np.repeat(roi, 3)
        if roi.shape != (3,) or roi.dtype.kind not in "iu" or np.any(roi < 1):
            raise InvalidInputError(f"roi_size must be 3 positive ints, got {roi_size!r}")
        if not 0.0 <= overlap < 1.0:
            raise InvalidInputError(f"overlap must be in [0, 1), got {overlap!r}")
        if activation not in ("sigmoid", "softmax", None):
            raise InvalidInputError(
                f"activation must be 'sigmoid', 'softmax' or None, got {activation!r}"
            )
        if output not in ("probability", "argmax"):
            raise InvalidInputError(f"output must be 'probability' or 'argmax', got {output!r}")
        if mode not in ("gaussian", "constant"):
            raise InvalidInputError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise InvalidInputError(f"margin must be a non-negative int (voxels), got {margin!r}")
        if 2 * margin >= int(roi.min()):
            raise InvalidInputError(
                f"margin={margin} leaves nothing of a {tuple(int(r) for r in roi)} window"
            )
        self.model = model
        self.margin = margin
        self.roi_size = tuple(int(r) for r in roi)
        self.overlap = float(overlap)
        self.device = device
        self.activation = activation
        self.channel = (1 if activation == "softmax" else 0) if channel is None else int(channel)
        self.output = output
        self.mode = mode
        self.batch_size = batch_size
        self.normalize = normalize
        self.amp = bool(amp)

    def __repr__(self) -> str:
        return (
            f"TorchModule({type(self.model).__name__}, roi_size={self.roi_size}, "
            f"overlap={self.overlap}, device={self.device!r}, activation={self.activation!r})"
        )

    def predict(self, data: np.ndarray) -> np.ndarray:
        """(C, I, J, K) float32 blended (activated) network output for an (I, J, K) image."""
        import torch

        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidInputError(f"device={self.device!r} but CUDA is not available; use 'cpu'")
        x = np.asarray(data, dtype=np.float32)
        if self.normalize is not None:
            x = np.asarray(self.normalize(x), dtype=np.float32)
        shape = x.shape
        pad = [(0, max(0, r - s)) for r, s in zip(self.roi_size, shape)]
        if any(p[1] for p in pad):
            x = np.pad(x, pad, mode="constant")
        full = x.shape
        starts = [window_starts(s, r, self.overlap) for s, r in zip(full, self.roi_size)]
        corners = list(product(*starts))
        w = blend_weights(self.roi_size, self.mode)
        acc = None
        norm = np.zeros(full, np.float32)
        rx, ry, rz = self.roi_size
        model = self.model
        was_training = bool(getattr(model, "training", False))
        if hasattr(model, "eval"):
            model.eval()
        try:
            with torch.inference_mode():
                for b0 in range(0, len(corners), self.batch_size):
                    batch = corners[b0 : b0 + self.batch_size]
                    tiles = np.stack([x[i : i + rx, j : j + ry, k : k + rz] for i, j, k in batch])
                    inp = torch.from_numpy(tiles[:, None]).to(device)
                    with torch.autocast(device.type, enabled=self.amp and device.type == "cuda"):
                        out = model(inp)
                    if not isinstance(out, torch.Tensor) or out.ndim != 5:
                        raise InvalidInputError(
                            f"model must return a (B, C, X, Y, Z) tensor, got {describe(out)}"
                        )
                    if tuple(out.shape[2:]) != self.roi_size:
                        raise InvalidInputError(
                            f"model output spatial shape {tuple(out.shape[2:])} differs from its input "
                            f"{self.roi_size}; TorchModule needs a dense segmentation network"
                        )
                    out = out.float()
                    if self.activation == "sigmoid":
                        out = torch.sigmoid(out)
                    elif self.activation == "softmax":
                        out = torch.softmax(out, dim=1)
                    out = out.cpu().numpy()
                    if acc is None:
                        acc = np.zeros((out.shape[1], *full), np.float32)
                    for (i, j, k), o in zip(batch, out):
                        wk = self._trimmed(w, (i, j, k), full)
                        acc[:, i : i + rx, j : j + ry, k : k + rz] += o * wk
                        norm[i : i + rx, j : j + ry, k : k + rz] += wk
        finally:
            if hasattr(model, "train"):
                model.train(was_training)
        if not np.all(norm > 0):
            raise InvalidInputError(
                f"margin={self.margin} with overlap={self.overlap} leaves voxels no window covers; "
                "raise overlap or lower margin"
            )
        acc /= norm
        log.debug("TorchModule: %d windows over %s", len(corners), shape)
        return acc[:, : shape[0], : shape[1], : shape[2]]

    def _trimmed(self, w: np.ndarray, start, full) -> np.ndarray:
        """Window weights with the ``margin`` zeroed on faces inside the volume."""
        m = self.margin
        if m == 0:
            return w
        w = w.copy()
        for ax, (s0, r, n) in enumerate(zip(start, self.roi_size, full)):
            idx = [slice(None)] * 3
            if s0 > 0:
                idx[ax] = slice(0, m)
                w[tuple(idx)] = 0.0
            if s0 + r < n:
                idx[ax] = slice(r - m, r)
                w[tuple(idx)] = 0.0
        return w

    def segment(self, volume) -> Volume:
        """Probability map of ``channel`` (float32) or arg-max label map (int32), same affine."""
        vol = as_volume(volume, name="volume")
        data = np.asarray(vol.data)
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            raise InvalidInputError("volume holds NaN or inf values; replace them before inference")
        prob = self.predict(data)
        if self.output == "argmax":
            out = np.argmax(prob, axis=0).astype(np.int32)
        else:
            if not 0 <= self.channel < prob.shape[0]:
                raise InvalidInputError(
                    f"channel={self.channel} is out of range for a model with {prob.shape[0]} outputs"
                )
            out = np.clip(prob[self.channel], 0.0, 1.0)
        return Volume(
            out, vol.affine, meta={"source": vol.meta.get("source"), "backbone": repr(self)}
        )
