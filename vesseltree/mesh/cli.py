"""``vesseltree mesh INPUT -o OUT.stl``: a printable surface from a graph file or a mask.

Registered by the main CLI through :func:`add_parser`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")


def add_parser(subparsers) -> None:
    """Add the ``mesh`` subcommand to an ``argparse`` subparsers object (sets ``func``)."""
    p = subparsers.add_parser(
        "mesh",
        help="watertight printable surface of a graph (.vtp .swc .npz .json .graphml) or a mask",
        description="Build a watertight surface from a centerline graph (union of round cones) or a mask "
        "(marching cubes through its affine, smoothed), write it (STL/PLY/OBJ/VTP/3MF by suffix, mm) and "
        "print the print check of the file as read back.",
    )
    p.add_argument(
        "input", help="graph file (.vtp .swc .npz .json .graphml) or mask (.nii .nii.gz .mha .nrrd)"
    )
    p.add_argument("-o", "--output", required=True, help="output mesh (.stl .ply .obj .vtp .3mf)")
    p.add_argument(
        "--voxel-size",
        type=float,
        default=None,
        metavar="MM",
        help="grid step for graphs (default min(0.25, r05/4) mm)",
    )
    p.add_argument(
        "--hollow",
        type=float,
        default=None,
        metavar="WALL_MM",
        help="a wall of this thickness around the lumen (graphs only)",
    )
    p.add_argument(
        "--open-ends",
        action="store_true",
        help="cut every vessel end open by a plane (graphs only)",
    )
    p.add_argument(
        "--blend",
        type=float,
        default=None,
        metavar="MM",
        help="fillet radius at junctions (graphs)",
    )
    p.add_argument(
        "--keep", choices=("largest", "all"), default="all", help="components kept (default all)"
    )
    p.add_argument(
        "--ends",
        choices=("round", "flat"),
        default="round",
        help="vessel ends of a solid from a graph: the end sphere, or continued one radius and cut flat",
    )
    p.add_argument(
        "--thin",
        choices=("thicken", "keep", "error"),
        default="thicken",
        help="tubes thinner than 0.9 voxel: thicken to it (default, warns), keep (may break), or fail",
    )
    p.add_argument(
        "--wall-radii",
        default=None,
        metavar="MASK",
        help="graphs only: re-measure every radius from this mask (the circle nearest the lumen's "
        "outline), so that a centerline from another tool (VMTK: inscribed radii) meshes to the wall",
    )
    p.add_argument("--no-check", action="store_true", help="skip the print check")
    p.set_defaults(func=run)


def _is_volume(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in _VOLUME_SUFFIXES)


def run(args) -> int:
    from . import check_printable, export, from_graph, from_mask, hollow, open_ends

    src = Path(args.input)
    out = Path(args.output)
    t0 = time.perf_counter()
    if _is_volume(src):
        if args.hollow or args.open_ends or args.wall_radii:
            from ..errors import InvalidInputError

            raise InvalidInputError(
                "--hollow, --open-ends and --wall-radii need a graph input; extract a "
                "centerline first"
            )
        mesh = from_mask(src, keep=args.keep)
        expected = None
    else:
        from ..io import read_graph

        graph = read_graph(src)
        if args.wall_radii:
            from ..centerline import with_wall_radii
            from ..io import read_volume

            graph = with_wall_radii(graph, read_volume(args.wall_radii))
            print(f"radii measured from {args.wall_radii} ({graph.meta['radii_kept']} nodes kept)")
        if args.keep == "largest" and graph.n_components > 1:
            graph = graph.components()[0]
        if args.hollow:
            mesh = hollow(
                graph,
                wall_mm=args.hollow,
                open_ends=bool(args.open_ends),
                voxel_size=args.voxel_size,
                blend=args.blend,
                thin=args.thin,
            )
        else:
            mesh = from_graph(
                graph, voxel_size=args.voxel_size, blend=args.blend, thin=args.thin, ends=args.ends
            )
            if args.open_ends:
                mesh = open_ends(mesh, graph, nodes="all")
        expected = graph.n_components
    export(mesh, out)
    print(f"wrote {out} ({len(mesh.faces)} faces) in {time.perf_counter() - t0:.2f} s")
    if not args.no_check:
        # the verdict is about what a slicer needs (closed, consistent, no self-intersections);
        # where tubes of different graph components truly overlap they fuse into one body, which
        # is right for a print, so a body count that differs from the graph's is reported only
        report = check_printable(out)
        print(report)
        if expected is not None and report.bodies != expected:
            print(
                f"  note: {report.bodies} bodies where the input has {expected} connected parts "
                "(tubes that overlap fuse; parts below the grid are thickened or dropped, see warnings)"
            )
        return 0 if report.ok else 3
    return 0
