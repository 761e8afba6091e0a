"""The user-facing VeTTA model: encode a tree into one vector, decode a vector into a valid tree.

>>> from vesseltree.vetta import VeTTA                          # doctest: +SKIP
>>> model = VeTTA.from_pretrained()                            # doctest: +SKIP
>>> z = model.encode(graph)          # (z_dim,) float32          # doctest: +SKIP
>>> tree = model.decode(z)           # a rooted VesselGraph      # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_path
from ..errors import FileFormatError, InvalidInputError, describe
from ..graph import VesselGraph
from .batch import build_inputs, make_record
from .config import VeTTAConfig
from .decode import decode_codes, render, target_decoded
from .fourier import FourierLookup
from .models import SegmentAE, TreeAE
from .tree import CanonicalTree, Frame, canonical_tree

__all__ = ["VeTTA", "interpolate", "latent_path", "DEFAULT_CHECKPOINT", "CHECKPOINT_FORMAT"]

log = logging.getLogger(__name__)

#: where ``VeTTA.from_pretrained()`` looks without a path
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "vetta"
CHECKPOINT_FORMAT = "vesseltree-vetta"
CHECKPOINT_VERSION = 1
_FILE = "vetta.pt"


class VeTTA:
    """Segment and tree autoencoders together, with a plain-function face.

    Parameters
    ----------
    config : VeTTAConfig
    segment_ae, tree_ae : optional, networks to use (fresh, untrained ones by default)
    metadata : dict, optional
        How the weights were made (training data, steps, validation metrics, version) and the
        ``default_frame`` used to place a decoded tree in mm when no frame is given.
    device : str or torch.device
    """

    def __init__(
        self,
        config: VeTTAConfig | None = None,
        *,
        segment_ae: SegmentAE | None = None,
        tree_ae: TreeAE | None = None,
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ):
        self.config = config or VeTTAConfig.small()
        if not isinstance(self.config, VeTTAConfig):
            raise InvalidInputError(f"config must be a VeTTAConfig, got {describe(config)}")
        self.device = torch.device(device)
        self.segment_ae = (segment_ae or SegmentAE(self.config.segment)).to(self.device)
        self.tree_ae = (tree_ae or TreeAE(self.config.tree, self.config.segment.z_dim)).to(
            self.device
        )
        self.metadata: dict[str, Any] = dict(metadata or {})
        d = self.config.tree.pos_domain
        self.lookup = FourierLookup(self.config.tree.octaves, domain=(-d, d), n_grid=4001)
        self.segment_ae.eval()
        self.tree_ae.eval()

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": json.dumps(self.config.to_dict()),
            "segment": {k: v.detach().cpu() for k, v in self.segment_ae.state_dict().items()},
            "tree": {k: v.detach().cpu() for k, v in self.tree_ae.state_dict().items()},
            "metadata": json.dumps(self.metadata),
        }

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint (config + both state_dicts + metadata) atomically.

        ``path`` is a folder (the file ``vetta.pt`` is written in it) or a ``.pt`` file.
        """
        target = _checkpoint_file(Path(path), create=True)
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        with atomic_path(target) as tmp:
            tmp.write_bytes(buf.getvalue())
        return target

    @classmethod
    def from_state(cls, state: dict[str, Any], *, device: str | torch.device = "cpu") -> VeTTA:
        try:
            if state.get("format") != CHECKPOINT_FORMAT:
                raise KeyError(f"format is {state.get('format')!r}")
            config = VeTTAConfig.from_dict(json.loads(state["config"]))
            model = cls(config, metadata=json.loads(state["metadata"]), device=device)
            model.segment_ae.load_state_dict(state["segment"])
            model.tree_ae.load_state_dict(state["tree"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise FileFormatError(f"not a VeTTA checkpoint: {exc}") from exc
        return model

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu"
    ) -> VeTTA:
        """Load a checkpoint (default: the one shipped in ``data/checkpoints/vetta/``).

        Raises
        ------
        FileFormatError
            The file is missing, truncated, corrupt or not a VeTTA checkpoint.
        """
        target = _checkpoint_file(Path(path) if path is not None else DEFAULT_CHECKPOINT)
        if not target.is_file():
            raise FileFormatError(f"no VeTTA checkpoint at {str(target)!r}")
        try:
            state = torch.load(target, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            raise FileFormatError(
                f"cannot read VeTTA checkpoint {str(target)!r} (truncated or corrupt): {exc}"
            ) from exc
        if not isinstance(state, dict):
            raise FileFormatError(f"{str(target)!r} is not a VeTTA checkpoint (got {type(state)})")
        try:
            return cls.from_state(state, device=device)
        except FileFormatError as exc:
            raise FileFormatError(f"{str(target)!r}: {exc}") from exc

    # ------------------------------------------------------------------ encode / decode
    def _tree(self, graph) -> CanonicalTree:
        if isinstance(graph, CanonicalTree):
            return graph
        if not isinstance(graph, VesselGraph):
            raise InvalidInputError(f"graph must be a VesselGraph, got {describe(graph)}")
        t = self.config.tree
        return canonical_tree(graph, max_segment_mm=t.max_segment_mm, max_children=t.max_children)

    @torch.no_grad()
    def encode_many(self, graphs) -> tuple[np.ndarray, list[Frame]]:
        """Codes (B, z_dim) float32 and the frames of several graphs (one batch)."""
        trees = [self._tree(g) for g in graphs]
        if not trees:
            raise InvalidInputError("graphs is empty; give at least one graph to encode")
        records = [make_record(t, self.config.segment) for t in trees]
        inp = build_inputs(records, self.segment_ae, self.tree_ae, split=False, device=self.device)
        mu, _ = self.tree_ae.encode(inp["tokens"], inp["mask"])
        frames = [
            Frame(tuple(float(v) for v in r["centre"]), float(r["scale"][0])) for r in records
        ]
        return mu.float().cpu().numpy(), frames

    def encode(self, graph, *, return_frame: bool = False):
        """Tree code (z_dim,) float32 of ``graph`` (and its :class:`Frame` with ``return_frame``)."""
        z, frames = self.encode_many([graph])
        return (z[0], frames[0]) if return_frame else z[0]

    def default_frame(self) -> Frame:
        f = self.metadata.get("default_frame", {"centre": [0.0, 0.0, 0.0], "scale": 0.5 / 40.0})
        return Frame(tuple(float(v) for v in f["centre"]), float(f["scale"]))

    @torch.no_grad()
    def decode_many(self, z, frames=None) -> list[VesselGraph]:
        """Decode (B, z_dim) codes into rooted VesselGraphs (dense centerlines, mm)."""
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32))
        if zt.ndim == 1:
            zt = zt[None]
        if zt.ndim != 2 or zt.shape[1] != self.config.tree.z_dim:
            raise InvalidInputError(
                f"z must have shape (B, {self.config.tree.z_dim}) or ({self.config.tree.z_dim},), "
                f"got {tuple(zt.shape)}"
            )
        if not torch.isfinite(zt).all():
            raise InvalidInputError("z must be finite, got NaN or inf")
        if frames is None:
            frames = [self.default_frame()] * len(zt)
        elif isinstance(frames, Frame):
            frames = [frames] * len(zt)
        decoded = decode_codes(self.tree_ae, zt.to(self.device), self.lookup)
        return [render(d, f, self.segment_ae).to_graph() for d, f in zip(decoded, frames)]

    def decode(self, z, frame: Frame | None = None) -> VesselGraph:
        """Decode one code into a rooted :class:`VesselGraph` (always a valid tree).

        ``frame`` places the normalised tree in mm (default: the checkpoint's ``default_frame``).
        ``node_data["key_node"]`` marks root, bifurcations and leaves.
        """
        return self.decode_many(np.asarray(z)[None], [frame or self.default_frame()])[0]

    def reconstruct(self, graph) -> VesselGraph:
        """``decode(encode(graph))`` in the graph's own frame."""
        z, frame = self.encode(graph, return_frame=True)
        return self.decode(z, frame)

    @torch.no_grad()
    def target_round_trip(self, graph) -> VesselGraph:
        """``graph`` rebuilt from its own training targets, without the tree AE.

        The key nodes, radii and segment codes the tree AE is trained to predict are rendered
        as a decoded tree would be: the result differs from ``graph`` only by the segment AE's
        own error (a floor for :meth:`reconstruct`).
        """
        record = make_record(self._tree(graph), self.config.segment)
        inp = build_inputs([record], self.segment_ae, self.tree_ae, split=False, device=self.device)
        decoded = target_decoded(inp, [record], self.config.tree.skip_mm)[0]
        frame = Frame(tuple(float(v) for v in record["centre"]), float(record["scale"][0]))
        return render(decoded, frame, self.segment_ae).to_graph()

    def sample(self, n: int, *, seed: int = 0) -> list[VesselGraph]:
        """``n`` random trees: codes from N(0, I) (variational) or from a normal fitted to the
        training codes (``latent_mean``/``latent_std`` stored with the weights)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InvalidInputError(f"n must be an integer >= 1, got {describe(n)}")
        g = torch.Generator().manual_seed(int(seed))
        eps = torch.randn(int(n), self.config.tree.z_dim, generator=g)
        if not self.config.tree.variational:
            eps = eps * self.tree_ae.latent_std.cpu() + self.tree_ae.latent_mean.cpu()
        return self.decode_many(eps.numpy())


def _checkpoint_file(path: Path, *, create: bool = False) -> Path:
    if path.suffix == ".pt":
        return path
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path / _FILE


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return (1 - t) * a + t * b
    cos = float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))
    omega = np.arccos(cos)
    if omega < 1e-6:
        return (1 - t) * a + t * b
    direction = (np.sin((1 - t) * omega) * a / na + np.sin(t * omega) * b / nb) / np.sin(omega)
    return direction * ((1 - t) * na + t * nb)


def latent_path(z_a, z_b, steps: int, mode: str = "linear") -> np.ndarray:
    """(steps, z_dim) codes from ``z_a`` to ``z_b`` (ends included), linear or spherical."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise InvalidInputError(f"steps must be an integer >= 2, got {describe(steps)}")
    if mode not in ("linear", "slerp"):
        raise InvalidInputError(f"mode must be 'linear' or 'slerp', got {mode!r}")
    a, b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
    ts = np.linspace(0.0, 1.0, int(steps))
    if mode == "linear":
        return np.stack([(1 - t) * a + t * b for t in ts]).astype(np.float32)
    return np.stack([_slerp(a, b, t) for t in ts]).astype(np.float32)


def interpolate(
    graph_a,
    graph_b,
    *,
    steps: int = 8,
    mode: str = "linear",
    model: VeTTA | None = None,
) -> list[VesselGraph]:
    """Decode ``steps`` codes on the way from ``graph_a`` to ``graph_b`` (ends included).

    Parameters
    ----------
    graph_a, graph_b : VesselGraph
    steps : int
        Number of trees, >= 2.
    mode : {"linear", "slerp"}
        Straight line between the codes, or spherical interpolation (angle and norm).
    model : VeTTA, optional
        Default: ``VeTTA.from_pretrained()``.

    Returns
    -------
    list of VesselGraph
        Valid rooted trees; the frame (centre, scale) is interpolated too (scale geometrically).
    """
    latent_path(np.zeros(1), np.zeros(1), steps, mode)  # validates steps and mode
    model = model or VeTTA.from_pretrained()
    z, frames = model.encode_many([graph_a, graph_b])
    codes = latent_path(z[0], z[1], steps, mode)
    out_frames = []
    for t in np.linspace(0.0, 1.0, int(steps)):
        centre = (1 - t) * np.asarray(frames[0].centre) + t * np.asarray(frames[1].centre)
        scale = float(np.exp((1 - t) * np.log(frames[0].scale) + t * np.log(frames[1].scale)))
        out_frames.append(Frame(tuple(float(v) for v in centre), scale))
    return model.decode_many(codes, out_frames)
