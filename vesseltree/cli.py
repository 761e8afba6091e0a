"""The ``vesseltree`` command: thin subcommands over the library.

``vesseltree demo``      the main job on the bundled sample (writes graphs, mask, image, a picture)
``vesseltree synth``     a synthetic case with exact truth (tree, mask, CT/MRA-like image)
``vesseltree convert``   a graph from one format to another (``.npz .json .vtp .swc .graphml``)
``vesseltree info``      a summary of a graph or volume file
``vesseltree extract``   centerline graph + branch table of a mask, label map or image
``vesseltree mesh``      a watertight, printable surface of a graph or a mask
``vesseltree train-deformcl``, ``deformcl-predict``, ``deformcl-refine``   DeformCL
``vesseltree train-vetta``, ``interpolate``   VeTTA training and latent interpolation
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .errors import VesselTreeError

log = logging.getLogger("vesseltree")

REPO_DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE_DIR = REPO_DATA / "sample"
#: how the bundled sample was made (``vesseltree synth`` with these settings reproduces it)
SAMPLE_SETTINGS = {
    "seed": 7,
    "preset": "coronary",
    "n_branches": 24,
    "spacing": (0.5, 0.5, 0.8),
    "modality": "ct",
}


def _volume_suffix(path: Path) -> bool:
    from .io import VOLUME_SUFFIXES

    return any(path.name.lower().endswith(s) for s in VOLUME_SUFFIXES)


# ---------------------------------------------------------------------- synth
def make_case(
    outdir: Path,
    *,
    seed: int,
    preset: str,
    n_branches: int,
    spacing,
    modality: str,
    picture: bool = True,
) -> dict[str, Path]:
    """Generate a synthetic case into ``outdir``: truth graph (npz, vtp, swc), mask, image, picture."""
    from . import synth
    from .io import write_graph, write_volume

    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tree = synth.random_tree(seed=seed, n_branches=n_branches, preset=preset)
    mask = synth.voxelize(tree, spacing=tuple(spacing))
    image = synth.simulate_image(mask, modality=modality, seed=seed)
    files = {
        "truth": outdir / "truth.npz",
        "truth_vtp": outdir / "truth.vtp",
        "truth_swc": outdir / "truth.swc",
        "mask": outdir / "mask.nii.gz",
        "image": outdir / "image.nii.gz",
    }
    for key in ("truth", "truth_vtp", "truth_swc"):
        write_graph(tree, files[key])
    write_volume(mask.replace(data=np.asarray(mask.data, dtype=np.uint8)), files["mask"])
    # CT is stored as whole Hounsfield units (int16), as scanners write it; MRA stays float32
    img = np.asarray(image.data)
    img = np.round(img).astype(np.int16) if modality == "ct" else img.astype(np.float32)
    write_volume(image.replace(data=img), files["image"])
    if picture:
        from .viz import save_overview

        files["picture"] = save_overview(
            outdir / "overview.png",
            image,
            mask,
            tree,
            title=f"synthetic {preset} tree, seed {seed}, {modality.upper()}",
        )
    log.info("synthetic case in %.1f s: %s", time.perf_counter() - t0, tree)
    return {k: Path(v) for k, v in files.items()}


def _cmd_synth(args) -> int:
    files = make_case(
        Path(args.output),
        seed=args.seed,
        preset=args.preset,
        n_branches=args.n_branches,
        spacing=args.spacing,
        modality=args.modality,
    )
    for k, v in files.items():
        print(f"{k:10s} {v}")
    return 0


# ---------------------------------------------------------------------- demo
def _cmd_demo(args) -> int:
    from .demo import run_demo

    sample = Path(args.sample) if args.sample else SAMPLE_DIR
    if not (sample / "truth.npz").is_file() and not args.sample:
        print(f"no bundled sample at {sample}; generating one ({SAMPLE_SETTINGS})")
        make_case(Path(args.output) / "sample", picture=False, **SAMPLE_SETTINGS)
        sample = Path(args.output) / "sample"
    print(f"sample: {sample}")
    run_demo(args.output, sample=sample, echo=print)
    print(f"summary: {Path(args.output) / 'summary.md'}")
    return 0


# ---------------------------------------------------------------------- convert / info
def _cmd_convert(args) -> int:
    from .io import read_graph, write_graph

    graph = read_graph(args.input)
    if args.tree:
        graph = graph.to_tree(keep="largest")
    write_graph(graph, args.output)
    print(f"{graph} -> {args.output}")
    return 0


def _cmd_info(args) -> int:
    from .io import read_graph, read_volume

    path = Path(args.input)
    if _volume_suffix(path):
        vol = read_volume(path)
        data = np.asarray(vol.data)
        print(vol)
        print(
            f"affine (voxel -> world mm, RAS):\n{np.array2string(np.asarray(vol.affine), precision=4)}"
        )
        print(
            f"value range: {data.min()} .. {data.max()}, nonzero voxels: {int(np.count_nonzero(data))}"
        )
    else:
        g = read_graph(path)
        print(g)
        if g.n_nodes:
            print(
                f"radius: {g.radii.min():.3f} .. {g.radii.max():.3f} mm (median {np.median(g.radii):.3f})"
            )
            print(f"junctions: {len(g.junctions)}, endpoints: {len(g.endpoints)}")
        if g.node_data:
            print(f"node data: {sorted(g.node_data)}")
        if g.edge_data:
            print(f"edge data: {sorted(g.edge_data)}")
    return 0


# ---------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vesseltree", description="Geometric modelling of vessel trees."
    )
    parser.add_argument("--version", action="version", version=f"vesseltree {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run the main job on the bundled sample")
    p.add_argument("-o", "--output", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument(
        "--sample", default=None, help="sample folder (default: the bundled data/sample)"
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("synth", help="generate a synthetic case with exact truth")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="coronary", help="coronary, brain or aorta")
    p.add_argument("--n-branches", type=int, default=24)
    p.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=(0.5, 0.5, 0.8),
        metavar=("SI", "SJ", "SK"),
        help="voxel size in mm (default 0.5 0.5 0.8)",
    )
    p.add_argument("--modality", default="ct", choices=("ct", "mra"))
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("convert", help="convert a graph between formats (by suffix)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument(
        "--tree",
        action="store_true",
        help="make a rooted tree first (cuts cycles, keeps the largest part)",
    )
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("info", help="summarise a graph or volume file")
    p.add_argument("input")
    p.set_defaults(func=_cmd_info)

    from .mesh.cli import add_parser as add_mesh_parser

    add_mesh_parser(sub)

    from .centerline.cli import add_parser as add_extract_parser

    add_extract_parser(sub)

    from .deformcl.cli import add_parser as add_deformcl_parser

    add_deformcl_parser(sub)

    from .vetta.cli import add_parser as add_vetta_parser

    add_vetta_parser(sub)  # interpolate, train-vetta (torch loads only when they run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (VesselTreeError, FileNotFoundError) as exc:
        print(f"vesseltree {args.command}: error: {exc}", file=sys.stderr)
        return 1
