"""``vesseltree train-deformcl``, ``vesseltree deformcl-predict`` and ``vesseltree deformcl-refine``.

Registered by the main CLI through :func:`add_parser`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

_CONFIGS = ("tiny", "small", "default")


def add_parser(subparsers) -> None:
    """Add the DeformCL subcommands to an ``argparse`` subparsers object (each sets ``func``)."""
    p = subparsers.add_parser(
        "train-deformcl",
        help="train the DeformCL UNet + centerline cascade on synthetic and semi-synthetic data",
        description="Train DeformCL on synthetic CT/MRA trees and real TubeTK masks rendered MRA-like "
        "(the 10 gold-standard cases are never used). Writes OUT/model.pt (config + weights + metadata) "
        "and OUT/train_state.pt (for --resume).",
    )
    p.add_argument("--out", required=True, help="checkpoint folder")
    p.add_argument(
        "--config", choices=_CONFIGS, default="small", help="network size (default small)"
    )
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument(
        "--data", default=None, help="shared data folder holding tubetk/masks (optional)"
    )
    p.add_argument("--n-synthetic", type=int, default=12, help="synthetic cases (default 12)")
    p.add_argument(
        "--n-tubetk", type=int, default=12, help="semi-synthetic TubeTK regions (default 12)"
    )
    p.add_argument(
        "--time-budget", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--init-from", default=None, help="start from this checkpoint's weights")
    p.set_defaults(func=run_train)

    for verb, helptext in (
        (
            "deformcl-predict",
            "centerline tree + vessel mask of an image with a DeformCL checkpoint",
        ),
        ("deformcl-refine", "deform an existing centerline graph onto an image with DeformCL"),
    ):
        q = subparsers.add_parser(verb, help=helptext, description=helptext)
        q.add_argument("image", help="image volume (.nii .nii.gz .mha .nrrd)")
        if verb == "deformcl-refine":
            q.add_argument("graph", help="graph file (.npz .json .vtp .swc .graphml)")
        q.add_argument(
            "-o", "--output", required=True, help="output graph (.npz .json .vtp .swc ...)"
        )
        if verb == "deformcl-predict":
            q.add_argument("--mask", default=None, help="also write the vessel mask here (.nii.gz)")
            q.add_argument("--no-cascade", action="store_true", help="plain UNet result")
        q.add_argument("--checkpoint", default=None, help="checkpoint folder (default: shipped)")
        q.add_argument("--device", default="cpu")
        q.set_defaults(func=run_predict if verb == "deformcl-predict" else run_refine)


def run_train(args) -> int:
    import torch

    from .config import DeformCLConfig, TrainConfig
    from .data import training_cases
    from .train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = getattr(DeformCLConfig, args.config)()
    tc = TrainConfig(steps=args.steps, batch_size=args.batch_size)
    t0 = time.perf_counter()
    cases = training_cases(
        n_synthetic=args.n_synthetic,
        tubetk_dir=args.data,
        n_tubetk=args.n_tubetk if args.data else 0,
        seed=args.seed,
    )
    print(f"{len(cases)} training cases in {time.perf_counter() - t0:.1f} s")
    meta = {
        "training_data": {
            "n_synthetic": args.n_synthetic,
            "n_tubetk": args.n_tubetk if args.data else 0,
            "tubetk_gold_excluded": True,
            "cases": [c.name for c in cases],
        },
        "device": args.device,
        "config_name": args.config,
    }
    _, hist = train(
        cases,
        config=config,
        train_config=tc,
        device=args.device,
        seed=args.seed,
        out=args.out,
        resume=args.resume,
        amp=args.amp,
        time_budget_s=args.time_budget,
        metadata=meta,
        init_from=args.init_from,
    )
    print(
        f"trained {hist['steps']} steps in {hist['seconds']:.0f} s ({hist['it_per_s']:.2f} it/s); "
        f"loss {hist['loss_start']:.3f} -> {hist['loss_end']:.3f}; wrote {Path(args.out) / 'model.pt'}"
    )
    return 0


def run_predict(args) -> int:
    from ..io import read_volume, write_graph, write_volume
    from .api import DeformCL

    model = DeformCL.from_pretrained(args.checkpoint, device=args.device)
    t0 = time.perf_counter()
    graph, mask = model.predict(read_volume(args.image), cascade=not args.no_cascade)
    write_graph(graph, args.output)
    if args.mask:
        write_volume(mask.replace(data=mask.data.astype("uint8")), args.mask)
    print(
        f"wrote {args.output} ({graph.n_nodes} nodes, {graph.total_length:.1f} mm) "
        f"in {time.perf_counter() - t0:.2f} s"
    )
    return 0


def run_refine(args) -> int:
    from ..io import read_graph, read_volume, write_graph
    from .api import DeformCL

    model = DeformCL.from_pretrained(args.checkpoint, device=args.device)
    refined = model.refine(read_volume(args.image), read_graph(args.graph))
    write_graph(refined, args.output)
    print(f"wrote {args.output} ({refined.n_nodes} nodes)")
    return 0
