"""``vesseltree extract INPUT -o OUTPUT``: centerline graph and branch table of a mask or image.

Registered by the main CLI through :func:`add_parser`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _label(text: str):
    """A label id (int) or a label name (str)."""
    return int(text) if text.strip().lstrip("-").isdigit() else text


def add_parser(subparsers) -> None:
    """Add the ``extract`` subcommand to an ``argparse`` subparsers object (sets ``func``)."""
    p = subparsers.add_parser(
        "extract",
        help="centerline graph of a mask, label map, probability map or image",
        description="Extract the centerline graph (world mm, radii) of a vessel mask, label map or "
        "probability map (.nii .nii.gz .mha .mhd .nrrd), or of a raw image through a backbone, "
        "write it by suffix (.vtp .swc .graphml .json .npz) and a branch table as "
        "OUTPUT_branches.csv beside it.",
    )
    p.add_argument("input", help="volume file (.nii .nii.gz .mha .mhd .nrrd .nhdr)")
    p.add_argument(
        "-o", "--output", required=True, help="graph file (.vtp .swc .graphml .json .npz)"
    )
    p.add_argument(
        "--label",
        nargs="+",
        type=_label,
        default=None,
        metavar="L",
        help="label ids or names to extract (default: every non-zero label)",
    )
    p.add_argument(
        "--labels-json",
        default=None,
        metavar="F",
        help="label names (nnU-Net dataset.json or {id: name} JSON)",
    )
    p.add_argument(
        "--per-label",
        action="store_true",
        help="one output file per label: OUTPUT-stem_label<id>.ext",
    )
    p.add_argument(
        "--labels-apart",
        action="store_true",
        help="keep every label's centerline apart (default: join them where a vessel runs on "
        "from one label into the next)",
    )
    p.add_argument(
        "--tree",
        action="store_true",
        help="rooted trees: cut cycles at their thinnest edge (needed for .swc with loops)",
    )
    p.add_argument(
        "--backbone",
        choices=("none", "threshold", "vesselness"),
        default="none",
        help="segment a raw image first: Otsu/--level threshold, or Frangi vesselness",
    )
    p.add_argument(
        "--level",
        type=float,
        default=None,
        metavar="X",
        help="intensity level of --backbone threshold (default: Otsu)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        metavar="T",
        help="probability maps are vessel where p >= T (default 0.5)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _backbone(args):
    if args.backbone == "threshold":
        from ..backbones import Threshold

        return Threshold(level="otsu" if args.level is None else args.level)
    if args.backbone == "vesselness":
        from ..backbones import Vesselness

        return Vesselness()
    if args.level is not None:
        from ..errors import InvalidInputError

        raise InvalidInputError("--level needs --backbone threshold")
    return None


def _write(graph, path: Path, tree: bool) -> tuple[Path, Path]:
    """The graph by suffix and its branch table as CSV, both atomically."""
    from .._atomic import atomic_path
    from ..errors import InvalidInputError
    from ..io import write_graph
    from .table import branch_table

    if path.suffix.lower() == ".swc" and not tree and graph.n_cycles:
        raise InvalidInputError(
            f"{str(path)!r}: SWC stores trees, but the graph has {graph.n_cycles} cycles; add --tree"
        )
    write_graph(graph, path)
    csv = path.with_name(path.stem + "_branches.csv")
    with atomic_path(csv) as tmp:
        branch_table(graph).to_csv(tmp, index_label="branch")
    return path, csv


def run(args) -> int:
    from ..errors import FileFormatError
    from ..io import GRAPH_SUFFIXES
    from .api import extract

    out = Path(args.output)
    if out.suffix.lower() not in GRAPH_SUFFIXES:
        raise FileFormatError(
            f"cannot write graph to {str(out)!r}: unknown suffix {out.suffix!r}; "
            f"use one of {sorted(GRAPH_SUFFIXES)}"
        )
    if not out.parent.exists():
        raise FileNotFoundError(f"output folder {str(out.parent)!r} does not exist")
    t0 = time.perf_counter()
    result = extract(
        args.input,
        label=args.label,
        labels_json=args.labels_json,
        backbone=_backbone(args),
        per_label=args.per_label,
        join_labels=not args.labels_apart,
        tree=args.tree,
        threshold=args.threshold,
        progress=not args.no_progress,
    )
    if args.per_label:
        written = [
            _write(g, out.with_name(f"{out.stem}_label{c}{out.suffix}"), args.tree)[0]
            for c, g in result.items()
        ]
        n_nodes = sum(g.n_nodes for g in result.values())
        n_branches = sum(len(g.branches) for g in result.values())
        length = sum(g.total_length for g in result.values())
        what = f"{len(written)} files ({out.stem}_label*{out.suffix})"
    else:
        _write(result, out, args.tree)
        n_nodes, n_branches, length = result.n_nodes, len(result.branches), result.total_length
        what = str(out)
    print(
        f"wrote {what}: {n_nodes} nodes, {n_branches} branches, {length:.1f} mm of centerline "
        f"in {time.perf_counter() - t0:.2f} s"
    )
    return 0
