"""`DeformCL`: the user-facing predictor (pretrained loading, sliding-window inference, refinement)."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..centerline import seat_graph_tips
from ..errors import InvalidInputError, describe
from ..graph import VesselGraph
from ..volume import Volume, as_volume
from .checkpoint import load_checkpoint, save_checkpoint
from .config import DeformCLConfig
from .data import normalize_image
from .model import DeformCLNet, pack_graphs
from .prune import prune_by_score
from .template import arrays_to_graph, graph_to_arrays, template_from_mask

__all__ = ["DeformCL", "DEFAULT_CHECKPOINT"]

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "deformcl"


def _starts(n: int, size: int, step: int) -> list[int]:
    if n <= size:
        return [0]
    s = list(range(0, n - size, step))
    return s + [n - size]


class DeformCL:
    """UNet + learned deformation cascade for whole centerline trees.

    Parameters
    ----------
    net : DeformCLNet
        The network (weights loaded).
    device : str
        Where inference runs.
    metadata : dict, optional
        The checkpoint's metadata (training data, steps, metrics).
    window : int, optional
        Sliding-window size (voxels per axis) for inference; the network is fully convolutional,
        so it may exceed the training crop. Default ``max(config.patch, 96)``.

    Examples
    --------
    >>> model = DeformCL.from_pretrained()  # doctest: +SKIP
    >>> graph, mask = model.predict(image)  # doctest: +SKIP
    """

    def __init__(
        self,
        net: DeformCLNet,
        *,
        device: str = "cpu",
        metadata: dict | None = None,
        window: int | None = None,
    ):
        if not isinstance(net, DeformCLNet):
            raise InvalidInputError(f"net must be a DeformCLNet, got {describe(net)}")
        mult = 2**net.config.levels
        if window is None:
            window = max(net.config.patch, 96)
        if (
            isinstance(window, bool)
            or not isinstance(window, int)
            or window < mult
            or window % mult
        ):
            raise InvalidInputError(
                f"window must be a positive multiple of {mult} voxels, got {describe(window)}"
            )
        self.window = window
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.metadata = dict(metadata or {})

    @property
    def config(self) -> DeformCLConfig:
        return self.net.config

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(
        cls, path=None, *, device: str = "cpu", window: int | None = None
    ) -> DeformCL:
        """Load a checkpoint folder (or ``model.pt``); ``None`` loads the shipped one.

        Raises
        ------
        FileNotFoundError
            No checkpoint at ``path``.
        FileFormatError
            A truncated or foreign file.
        """
        cfg, state, meta = load_checkpoint(DEFAULT_CHECKPOINT if path is None else path)
        net = DeformCLNet(DeformCLConfig.from_dict(cfg))
        net.load_state_dict(state)
        return cls(net, device=device, metadata=meta, window=window)

    def save_pretrained(self, folder) -> None:
        """Write ``folder/model.pt`` atomically (config + state_dict + metadata)."""
        save_checkpoint(folder, self.net, self.metadata)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def _unet(self, image: np.ndarray, overlap: float = 0.25):
        """Sliding-window UNet: full-resolution logits (I, J, K) and stride-4 features.

        Each axis is padded to a multiple of ``2**levels``; an axis up to 1.5 windows long is
        processed whole (the network is fully convolutional), a longer one in windows of
        ``self.window`` voxels overlapping by ``overlap``, blended with a linear ramp.
        """
        cfg = self.config
        mult = 2**cfg.levels
        shp = np.array(image.shape)
        padded = np.ceil(shp / mult).astype(int) * mult
        sizes = [int(n) if n <= 1.5 * self.window else self.window for n in padded]
        steps = [max(4, int(round(n * (1 - overlap) / 4)) * 4) for n in sizes]
        fill = float(np.median(image[::4, ::4, ::4]))
        img = np.full(tuple(padded), fill, np.float32)
        img[: shp[0], : shp[1], : shp[2]] = image
        logit = torch.zeros(tuple(padded), device=self.device)
        wsum = torch.zeros(tuple(padded), device=self.device)
        fsh = tuple(int(p) // 4 for p in padded)
        feat = torch.zeros((cfg.feat_channels, *fsh), device=self.device)
        fsum = torch.zeros(fsh, device=self.device)
        ramps = []
        for n in sizes:
            r = torch.minimum(torch.arange(n) + 1.0, n - torch.arange(n).float())
            ramps.append((r / r.max()).clamp(min=0.05).to(self.device))
        w = ramps[0][:, None, None] * ramps[1][None, :, None] * ramps[2][None, None, :]
        wf = w[::4, ::4, ::4]
        x_all = torch.from_numpy(img).to(self.device)
        use_amp = self.device.type == "cuda"
        si, sj, sk = sizes
        for a in _starts(padded[0], si, steps[0]):
            for b in _starts(padded[1], sj, steps[1]):
                for c in _starts(padded[2], sk, steps[2]):
                    x = x_all[a : a + si, b : b + sj, c : c + sk][None, None]
                    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                        lg, ft = self.net(x)
                    sl = (slice(a, a + si), slice(b, b + sj), slice(c, c + sk))
                    logit[sl] += w * lg[0, 0].float()
                    wsum[sl] += w
                    fs = tuple(slice(s0 // 4, (s0 + n) // 4) for s0, n in zip((a, b, c), sizes))
                    feat[(slice(None), *fs)] += wf * ft[0].float()
                    fsum[fs] += wf
        logit = logit / wsum
        feat = feat / fsum
        return logit, feat, tuple(int(s) for s in shp)

    def _cascade(self, logit, feat, graph: VesselGraph, affine: np.ndarray, with_hidden=False):
        pos, r, e = graph_to_arrays(graph, affine)
        g = pack_graphs([(pos, r, e)], self.device)
        lin = torch.tensor(np.array(affine)[:3, :3], dtype=torch.float32, device=self.device)
        inv = torch.linalg.inv(lin)[None]
        if with_hidden:
            stages, hidden = self.net.deform(
                feat[None], logit[None, None], g, inv, with_hidden=True
            )
            return g, stages[-1], lin, hidden
        stages = self.net.deform(feat[None], logit[None, None], g, inv)
        return g, stages[-1], lin

    @torch.no_grad()
    def _final_mask(self, logit, graph: VesselGraph, affine, shape, slab: int = 64) -> np.ndarray:
        full = logit.shape
        out = np.zeros(shape, bool)
        pos, r, e = graph_to_arrays(graph, affine)
        lin = torch.tensor(np.array(affine)[:3, :3], dtype=torch.float32, device=self.device)
        dev = self.device
        maps = self.net.condition_maps(
            torch.from_numpy(pos).to(dev),
            torch.from_numpy(r).to(dev),
            torch.from_numpy(e).to(dev),
            torch.zeros(len(pos), dtype=torch.long, device=dev),
            tuple(full),
            1,
            lin[None],
        )
        for a in range(0, shape[0], slab):
            lo, hi = max(a - 1, 0), min(a + slab + 1, full[0])
            lg = logit[lo:hi][None, None]
            fin = self.net.merge(lg, maps[:, :, lo:hi])[0, 0]
            keep = fin[a - lo : a - lo + min(slab, shape[0] - a)] > 0
            out[a : a + keep.shape[0]] = keep[:, : shape[1], : shape[2]].cpu().numpy()
        return out

    def _prepare(self, volume, name="volume") -> Volume:
        vol = as_volume(volume, name=name)
        if min(vol.shape) < 4:
            raise InvalidInputError(
                f"{name} must be at least 4 voxels along each axis, got {vol.shape}"
            )
        return vol

    @torch.no_grad()
    def predict(self, volume, *, cascade: bool = True) -> tuple[VesselGraph, Volume]:
        """Centerline tree and vessel mask of an image.

        Parameters
        ----------
        volume : Volume, nibabel image or (I, J, K) ndarray
            CT-like or MRA-like image (any intensity unit: it is normalised by robust percentiles).
        cascade : bool
            False: the plain UNet result (its mask, and ``extract_graph`` of its probabilities).

        Returns
        -------
        (VesselGraph, Volume)
            The (deformed) centerline tree in world mm with radii, and the bool mask (the
            centerline-conditioned mask with the cascade). ``graph.meta`` records timings and
            whether the cascade ran. A degenerate template (empty prediction) gives a warning and
            an empty graph with the UNet mask.
        """
        out = self.predict_both(volume, cascade=cascade)
        return out["deformcl" if cascade else "unet"]

    @torch.no_grad()
    def predict_both(self, volume, *, cascade: bool = True) -> dict:
        """One UNet pass, then both results: ``{"unet": (graph, mask), "deformcl": (graph, mask)}``.

        ``"unet"`` is ``extract_graph`` of the UNet probabilities and the UNet mask; ``"deformcl"``
        (only with ``cascade=True``) the deformed template and the centerline-conditioned mask.
        ``out["seconds"]`` holds ``unet``, ``template``, ``cascade`` and ``mask`` timings.
        """
        t0 = time.perf_counter()
        vol = self._prepare(volume)
        logit, feat, shp = self._unet(normalize_image(vol.data))
        t1 = time.perf_counter()
        prob = torch.sigmoid(logit[: shp[0], : shp[1], : shp[2]]).cpu().numpy()
        unet_mask = Volume(prob > 0.5, vol.affine, meta={"source": "vesseltree.deformcl.unet"})
        prob_vol = Volume(prob, vol.affine)
        tpl = template_from_mask(prob_vol, node_step_vox=self.config.node_step_vox)
        t2 = time.perf_counter()
        secs = {"unet": t1 - t0, "template": t2 - t1}
        meta = {"source": "vesseltree.deformcl", "cascade": False}
        if tpl is None:
            empty = VesselGraph(
                np.zeros((0, 3)), np.zeros(0), np.zeros((0, 2)), affine=vol.affine, meta=meta
            )
            out = {"unet": (empty, unet_mask), "seconds": secs}
            if cascade:
                out["deformcl"] = (empty, unet_mask)
            return out
        # the template keeps its tips where thinning left them (the cascade was trained so);
        # the graphs returned have them seated where their ball reaches the end of the lumen
        seat_kw = {"node_spacing": self.config.node_step_vox}
        unet_graph = seat_graph_tips(tpl, prob_vol, **seat_kw)
        out = {
            "unet": (unet_graph.replace(meta={**dict(unet_graph.meta), **meta}), unet_mask),
            "seconds": secs,
        }
        if cascade:
            g, (pos, rad, keep), _ = self._cascade(logit, feat, tpl, vol.affine)
            edges = g["edges"].cpu().numpy()
            graph = arrays_to_graph(
                pos.cpu().numpy(),
                rad.cpu().numpy(),
                edges,
                vol.affine,
                template=tpl,
                meta={**meta, "cascade": True, "seconds": secs},
            )
            p_keep = torch.sigmoid(keep.float()).cpu().numpy()
            kept = prune_by_score(graph, p_keep, self.config.keep_threshold)
            meta_removed = int((~kept).sum())
            graph = graph.subgraph(kept)
            if graph.n_nodes:  # drop crumbs (components of 1-2 nodes)
                sizes = np.bincount(graph.component_labels)
                graph = graph.subgraph(sizes[graph.component_labels] >= 3)
            graph = graph.replace(meta={**dict(graph.meta), "removed_nodes": meta_removed})
            t3 = time.perf_counter()
            mask = self._final_mask(logit, graph, vol.affine, shp)
            graph = seat_graph_tips(graph, prob_vol, **seat_kw)
            t4 = time.perf_counter()
            secs.update(cascade=t3 - t2, mask=t4 - t3)
            out["deformcl"] = (
                graph,
                Volume(mask, vol.affine, meta={"source": "vesseltree.deformcl"}),
            )
        return out

    @torch.no_grad()
    def refine(self, volume, graph: VesselGraph) -> VesselGraph:
        """Deform an existing centerline graph (world mm, any source) onto the image ``volume``.

        Every node is kept (no pruning by score); positions and radii change, topology does not.
        """
        if not isinstance(graph, VesselGraph):
            raise InvalidInputError(f"graph must be a VesselGraph, got {describe(graph)}")
        vol = self._prepare(volume)
        if graph.n_nodes == 0 or graph.n_edges == 0:
            warnings.warn(
                "refine: graph has no edges; returned unchanged", RuntimeWarning, stacklevel=2
            )
            return graph
        logit, feat, _ = self._unet(normalize_image(vol.data))
        g, (pos, rad, _keep), _ = self._cascade(logit, feat, graph, vol.affine)
        return arrays_to_graph(
            pos.cpu().numpy(),
            rad.cpu().numpy(),
            graph.edges,
            vol.affine,
            template=graph.replace(affine=vol.affine),
            meta={**dict(graph.meta), "refined_by": "vesseltree.deformcl"},
        )

    def segment(self, volume) -> Volume:
        """Vessel mask (bool Volume, the image's affine): the backbone interface."""
        return self.predict(volume)[1]
