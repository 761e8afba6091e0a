"""``vesseltree extract INPUT -o OUTPUT``: centerline graph and branch table of a mask or image.

Several inputs, or a folder, run as a batch (:func:`~vesseltree.centerline.batch.extract_batch`):
``OUTPUT`` is then a folder that gets one graph per input and ``summary.csv``.

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
        "OUTPUT_branches.csv beside it. Several inputs or a folder run as a batch: OUTPUT is "
        "a folder, one graph per input (NAME.FORMAT), and summary.csv lists every case (a case "
        "that fails is recorded there and the others go on).",
    )
    p.add_argument(
        "input",
        nargs="+",
        help="volume file(s) (.nii .nii.gz .mha .mhd .nrrd .nhdr) or a folder of them",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="graph file (.vtp .swc .graphml .json .npz); a folder for a batch",
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
    p.add_argument(
        "--format",
        default=None,
        choices=("vtp", "swc", "graphml", "json", "npz"),
        help="batch: graph format (default vtp)",
    )
    p.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="batch: cases at once (processes)"
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="batch: skip cases that OUTPUT/summary.csv lists as done (resume a run)",
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


def _extract_kwargs(args) -> dict:
    return dict(
        label=args.label,
        labels_json=args.labels_json,
        backbone=_backbone(args),
        per_label=args.per_label,
        join_labels=not args.labels_apart,
        tree=args.tree,
        threshold=args.threshold,
    )


def run_batch(args) -> int:
    from .batch import extract_batch

    t0 = time.perf_counter()
    table = extract_batch(
        args.input,
        args.output,
        fmt=args.format or "vtp",
        jobs=args.jobs,
        skip_existing=args.skip_existing,
        progress=not args.no_progress,
        **_extract_kwargs(args),
    )
    status = table["status"].value_counts()
    failed = table[table["status"] == "error"]
    for src, err in zip(failed["input"], failed["error"]):
        print(f"failed: {src}: {err}")
    print(
        f"{len(table)} cases in {time.perf_counter() - t0:.1f} s: {status.get('ok', 0)} ok, "
        f"{status.get('skipped', 0)} skipped, {len(failed)} failed; "
        f"summary in {Path(args.output) / 'summary.csv'}"
    )
    return 1 if len(failed) else 0


def run(args) -> int:
    from ..errors import FileFormatError, InvalidInputError
    from ..io import GRAPH_SUFFIXES
    from .api import extract
    from .batch import write_graph_and_table

    if len(args.input) > 1 or Path(args.input[0]).is_dir():
        return run_batch(args)
    used = [f for f, on in (("--format", args.format), ("--jobs", args.jobs != 1),
                            ("--skip-existing", args.skip_existing)) if on]  # fmt: skip
    if used:
        raise InvalidInputError(f"{', '.join(used)}: only for a batch (several inputs or a folder)")
    out = Path(args.output)
    if out.suffix.lower() not in GRAPH_SUFFIXES:
        raise FileFormatError(
            f"cannot write graph to {str(out)!r}: unknown suffix {out.suffix!r}; "
            f"use one of {sorted(GRAPH_SUFFIXES)}"
        )
    if not out.parent.exists():
        raise FileNotFoundError(f"output folder {str(out.parent)!r} does not exist")
    t0 = time.perf_counter()
    result = extract(args.input[0], progress=not args.no_progress, **_extract_kwargs(args))
    if args.per_label:
        written = [
            write_graph_and_table(g, out.with_name(f"{out.stem}_label{c}{out.suffix}"), args.tree)[
                0
            ]
            for c, g in result.items()
        ]
        n_nodes = sum(g.n_nodes for g in result.values())
        n_branches = sum(len(g.branches) for g in result.values())
        length = sum(g.total_length for g in result.values())
        what = f"{len(written)} files ({out.stem}_label*{out.suffix})"
    else:
        write_graph_and_table(result, out, args.tree)
        n_nodes, n_branches, length = result.n_nodes, len(result.branches), result.total_length
        what = str(out)
    print(
        f"wrote {what}: {n_nodes} nodes, {n_branches} branches, {length:.1f} mm of centerline "
        f"in {time.perf_counter() - t0:.2f} s"
    )
    return 0
