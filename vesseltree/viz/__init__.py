"""Pictures of volumes and graphs (matplotlib, off screen).

:func:`overview_figure` draws maximum-intensity projections of an image and a mask with a graph's
centerline on top, and a projection of the graph coloured by radius; :func:`save_overview`
writes it to a PNG atomically. Matplotlib loads inside the functions, with the non-interactive
Agg backend, so nothing here needs a screen.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import InvalidInputError
from ..graph import VesselGraph
from ..volume import Volume

__all__ = ["overview_figure", "save_overview", "mip"]


def mip(volume: Volume, axis: int = 2) -> np.ndarray:
    """Maximum-intensity projection of ``volume.data`` along voxel ``axis``."""
    if axis not in (0, 1, 2):
        raise InvalidInputError(f"axis must be 0, 1 or 2, got {axis!r}")
    return np.asarray(volume.data, dtype=np.float32).max(axis=axis)


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _draw_graph_on(
    ax, graph: VesselGraph, affine: np.ndarray, axes: tuple[int, int], color=None, lw=1.0
):
    inv = np.linalg.inv(affine)
    vox = graph.positions @ inv[:3, :3].T + inv[:3, 3]
    for a, b in graph.edges:
        ax.plot(vox[[a, b], axes[0]], vox[[a, b], axes[1]], color=color or "tab:red", lw=lw)
    if len(graph.junctions):
        ax.plot(
            vox[graph.junctions, axes[0]], vox[graph.junctions, axes[1]], "o", ms=3, color="yellow"
        )


def overview_figure(
    image: Volume | None = None,
    mask: Volume | None = None,
    graph: VesselGraph | None = None,
    *,
    axis: int = 2,
    title: str | None = None,
):
    """A matplotlib Figure: image MIP, mask MIP + centerline, and the graph coloured by radius.

    Any of the three may be None; panels are drawn for those given. Projections run along voxel
    ``axis`` of the image (or mask); the graph is mapped into its voxel frame through the affine.
    """
    if image is None and mask is None and graph is None:
        raise InvalidInputError("overview_figure needs at least one of image, mask, graph")
    plt = _pyplot()
    panels = [p for p in (image, mask, graph) if p is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    axes = axes[0]
    uv = tuple(a for a in (0, 1, 2) if a != axis)
    ref = image if image is not None else mask
    k = 0
    for vol, name in ((image, "image (MIP)"), (mask, "mask (MIP) + centerline")):
        if vol is None:
            continue
        ax = axes[k]
        k += 1
        sp = vol.spacing
        ax.imshow(
            mip(vol, axis).T,
            origin="lower",
            cmap="gray",
            aspect=sp[uv[1]] / sp[uv[0]],
            interpolation="nearest",
        )
        if graph is not None and vol is mask:
            _draw_graph_on(ax, graph, vol.affine, uv, lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if graph is not None:
        ax = axes[k]
        pts = graph.positions if ref is None else graph.voxel_positions(ref.affine) * ref.spacing
        from matplotlib.collections import LineCollection

        segs = pts[graph.edges][:, :, list(uv)]
        r = 0.5 * (graph.radii[graph.edges[:, 0]] + graph.radii[graph.edges[:, 1]])
        lc = LineCollection(
            segs, cmap="viridis", linewidths=0.5 + 2.5 * r / max(r.max(), 1e-9) if len(r) else 1.0
        )
        lc.set_array(r)
        ax.add_collection(lc)
        ax.autoscale()
        ax.set_aspect("equal")
        fig.colorbar(lc, ax=ax, fraction=0.046, pad=0.04, label="radius (mm)")
        ax.set_title(f"graph: {graph.n_nodes} nodes, {len(graph.branches)} branches", fontsize=9)
        ax.set_xlabel("mm")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_overview(
    path: str | os.PathLike,
    image: Volume | None = None,
    mask: Volume | None = None,
    graph: VesselGraph | None = None,
    **kwargs,
) -> Path:
    """Write :func:`overview_figure` to a PNG at ``path`` (atomically) and close the figure."""
    plt = _pyplot()
    fig = overview_figure(image, mask, graph, **kwargs)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
