"""``vesseltree interpolate`` and ``vesseltree train-vetta``; registered through :func:`add_parser`.

``vesseltree interpolate A B -o DIR --steps 8 [--mode linear|slerp]`` writes every step as a graph
(``step_00.npz`` ...) and a surface (``step_00.stl`` ...), and ``strip.png`` with a render of each.
``vesseltree train-vetta --out DIR`` trains both stages and writes ``DIR/vetta.pt``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    """Add ``interpolate`` and ``train-vetta`` to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "interpolate",
        help="decode trees along the VeTTA latent path between two trees (graphs, STLs, PNG strip)",
        description="Encode two vessel trees with VeTTA, decode STEPS codes between them (ends "
        "included) and write each as a graph (.npz) and a surface (.stl), plus a PNG strip.",
    )
    p.add_argument(
        "a", help="first tree (graph file: .npz .json .vtp .swc .graphml, or a VesselVAE .dat)"
    )
    p.add_argument("b", help="second tree")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument(
        "--steps", type=int, default=8, help="number of trees, ends included (default 8)"
    )
    p.add_argument("--mode", choices=("linear", "slerp"), default="linear")
    p.add_argument("--checkpoint", default=None, help="VeTTA checkpoint (default: the shipped one)")
    p.add_argument(
        "--graph-format", default=".npz", help="suffix of the graph files (default .npz)"
    )
    p.add_argument("--no-stl", action="store_true", help="skip the surfaces")
    p.set_defaults(func=run_interpolate)

    t = subparsers.add_parser(
        "train-vetta",
        help="train both VeTTA stages (segment AE, then tree AE)",
        description="Train VeTTA on synthetic trees plus, where ../shared/data is found, the "
        "VesselVAE training models and TubeTK trees; writes OUT/vetta.pt and a resumable "
        "OUT/train_state.pt.",
    )
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast on cuda)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=2000, help="tree-AE steps (default 2000)")
    t.add_argument(
        "--segment-steps", type=int, default=None, help="segment-AE steps (default steps/2)"
    )
    t.add_argument("--batch-size", type=int, default=32, help="trees per tree-AE step")
    t.add_argument(
        "--segment-batch-size", type=int, default=64, help="segments per segment-AE step"
    )
    t.add_argument(
        "--no-rotate",
        action="store_true",
        help="no random rotations in the tree stage (reuses precomputed segment codes: ~2x faster)",
    )
    t.add_argument(
        "--queries",
        type=int,
        default=8,
        help="decoding states supervised per tree and tree-AE step (they share one encoder pass)",
    )
    t.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes building the tree-AE batches (a GPU waits on them otherwise; 0: none)",
    )
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--config", choices=("tiny", "small", "default"), default="small")
    t.add_argument(
        "--data", default=None, help="real data folder (default ../shared/data if present)"
    )
    t.add_argument("--synthetic-only", action="store_true", help="train on synthetic trees only")
    t.add_argument("--n-synthetic", type=int, default=1500)
    t.add_argument("--cache", default=None, help="prepared-data cache (default .cache/vetta)")
    t.add_argument(
        "--budget-s", type=float, default=None, help="stop each stage after this many seconds"
    )
    t.add_argument("--resume", default=None, help="a train_state.pt to continue from")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=run_train)


def _read_tree(path: str):
    from ..io import read_graph
    from ..io.datasets import read_vesselvae_tree

    if path.endswith(".dat"):
        return read_vesselvae_tree(path)
    return read_graph(path)


def save_strip(graphs, path: Path, *, titles=None) -> Path:
    """A PNG strip with one picture per tree (pyvista off screen; matplotlib 3D lines as fallback)."""
    import numpy as np

    from .._atomic import atomic_path

    try:
        import pyvista as pv

        pv.OFF_SCREEN = True
        shots = []
        for g in graphs:
            pl = pv.Plotter(off_screen=True, window_size=(320, 320))
            tube = g.to_pyvista().tube(scalars="radius", absolute=True, n_sides=10)
            pl.add_mesh(tube, color="firebrick", smooth_shading=True)
            pl.view_isometric()
            pl.set_background("white")
            shots.append(pl.screenshot(return_img=True))
            pl.close()
        img = np.concatenate(shots, axis=1)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with atomic_path(path) as tmp:
            plt.imsave(tmp, img)
        return path
    except Exception as exc:  # noqa: BLE001 - no GL context: draw with matplotlib instead
        log.info("pyvista render failed (%s); drawing with matplotlib", exc)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2.6 * len(graphs), 2.8))
    for k, g in enumerate(graphs):
        ax = fig.add_subplot(1, len(graphs), k + 1, projection="3d")
        p = g.positions
        for a, b in g.edges:
            ax.plot(*p[[a, b]].T, color="firebrick", lw=1.2)
        ax.set_axis_off()
        if titles:
            ax.set_title(titles[k], fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def run_interpolate(args) -> int:
    import numpy as np

    from ..errors import InvalidInputError
    from ..io import write_graph
    from ..metrics.trees import is_valid_tree
    from .api import VeTTA, interpolate

    if args.steps < 2:
        raise InvalidInputError(f"--steps must be >= 2, got {args.steps}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = VeTTA.from_pretrained(args.checkpoint)
    trees = interpolate(
        _read_tree(args.a), _read_tree(args.b), steps=args.steps, mode=args.mode, model=model
    )
    n_valid = 0
    for k, g in enumerate(trees):
        n_valid += is_valid_tree(g)
        write_graph(g, out / f"step_{k:02d}{args.graph_format}")
        if not args.no_stl:
            from ..mesh import export, from_graph

            # a quarter of a small radius, kept in a range that meshes in seconds
            voxel = float(np.clip(np.percentile(g.radii, 5) / 4, 0.08, 0.4))
            export(from_graph(g, voxel_size=voxel), out / f"step_{k:02d}.stl")
    save_strip(trees, out / "strip.png", titles=[f"{k}" for k in range(len(trees))])
    print(
        f"wrote {len(trees)} trees ({n_valid} valid) to {out} in {time.perf_counter() - t0:.1f} s"
    )
    return 0 if n_valid == len(trees) else 3


def run_train(args) -> int:
    import torch

    from ..errors import InvalidInputError
    from .api import VeTTA
    from .config import VeTTAConfig
    from .datasets import prepare
    from .train import TrainSettings, evaluate, train

    if args.steps < 1:
        raise InvalidInputError(f"--steps must be >= 1, got {args.steps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    repo = Path(__file__).resolve().parents[2]
    data = args.data
    if data is None and not args.synthetic_only:
        cand = repo.parent / "shared" / "data"
        data = str(cand) if cand.is_dir() else None
    if args.synthetic_only:
        data = None
    cache = Path(args.cache) if args.cache else repo / ".cache" / "vetta"
    sets, meta = prepare(data, cache, n_synthetic=args.n_synthetic, seed=args.seed)
    config = getattr(VeTTAConfig, args.config)()
    model = VeTTA(config, device=args.device)
    from .batch import make_record

    records = [make_record(t, config.segment) for t in sets["train"]]
    seg_steps = args.segment_steps if args.segment_steps is not None else max(1, args.steps // 2)
    common = {"lr": args.lr, "budget_s": args.budget_s}
    logs = train(
        model,
        records,
        segment=TrainSettings(steps=seg_steps, batch_size=args.segment_batch_size, **common),
        tree=TrainSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            rotate=not args.no_rotate,
            queries=args.queries,
            workers=args.workers,
            **common,
        ),
        seed=args.seed,
        out=Path(args.out),
        resume=Path(args.resume) if args.resume else None,
        progress=not args.no_progress,
    )
    val = {}
    for key in ("val_vesselvae", "val_tubetk_gold", "val_synthetic"):
        if sets.get(key):
            val[key] = evaluate(model, sets[key][:40])
    scales = [t for t in sets["train"]]
    from .tree import Frame

    med = float(
        sorted(Frame.of_points(t.dense_points()[:, :3]).scale for t in scales)[len(scales) // 2]
    )
    model.metadata.update(
        training=logs,
        data=meta,
        validation=val,
        default_frame={"centre": [0.0, 0.0, 0.0], "scale": med},
        seed=args.seed,
        config_name=config.name,
        device=str(args.device),
        version=__import__("vesseltree").__version__,
    )
    path = model.save_pretrained(Path(args.out))
    print(f"wrote {path}")
    for k, v in val.items():
        print(k, {a: round(b, 4) for a, b in v.items()})
    return 0
