"""DeformCL on CPU: the same UNet with and without the cascade, against a training-free baseline.

Data with truth:

- the 10 TubeTK cases with gold-standard centerlines (never trained on), rendered MRA-like from
  their real masks with :func:`vesseltree.synth.simulate_image` (semi-synthetic); scored against
  the gold centerlines (F1 etc.) and the real masks (Dice etc.). By default a central ROI of each
  case (``--roi``) keeps the CPU time in bounds; ``--roi full`` uses the whole 448x448x128 volume.
- held-out synthetic CT-like volumes (seeds never used in training), scored against the generating
  tree and its mask.

Methods: ``unet`` (UNet mask, ``extract_graph`` of its probabilities), ``deformcl`` (the same UNet
pass + the cascade: deformed, pruned tree and the centerline-conditioned mask) and ``vesselness``
(``vesseltree.backbones.Vesselness`` + ``extract_graph``; no training).

Writes ``benchmarks/results/deformcl.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOLD = ("002", "003", "004", "006", "008", "009", "010", "011", "012", "017")
METRICS = (
    ("f1", "F1@1mm", 3),
    ("precision", "prec", 3),
    ("recall", "rec", 3),
    ("radius_mae", "r MAE mm", 2),
    ("dice", "Dice", 3),
    ("cldice", "clDice", 3),
    ("b0_error", "b0 err", 1),
    ("b1_error", "b1 err", 1),
    ("hd95", "HD95 mm", 2),
    ("assd", "ASSD mm", 2),
    ("seconds", "s / vol", 2),
    ("peak_mb", "peak MB", 0),
)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class PeakRSS:
    """Peak resident memory (MB) above the level at entry, sampled every 5 ms."""

    def __enter__(self):
        self.base = _rss_mb()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())
        self.mb = self.peak - self.base


def vesselness_row(image, truth_graph, truth_mask):
    from vesseltree.centerline import extract_graph
    from vesseltree.deformcl.evaluate import error_budget, score_prediction
    from vesseltree.graph import VesselGraph
    from vesseltree.volume import Volume

    with PeakRSS() as mem:
        t0 = time.perf_counter()
        try:
            from vesseltree.backbones import Vesselness

            prob = Vesselness().segment(image)
        except ImportError:  # the backbone package is missing: Frangi from scikit-image
            from skimage.filters import frangi, threshold_otsu

            resp = frangi(np.asarray(image.data, float), sigmas=(1, 2, 3), black_ridges=False)
            prob = Volume((resp >= threshold_otsu(resp)).astype(np.float32), image.affine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = extract_graph(prob, on_empty="warn")
        secs = time.perf_counter() - t0
    if g.n_nodes == 0:
        g = VesselGraph(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 2)))
    mask = Volume(np.asarray(prob.data) >= 0.5, image.affine)
    row = score_prediction(g, mask, truth_graph, truth_mask)
    row.update(error_budget(g, truth_graph, truth_mask))
    row.update(seconds=secs, peak_mb=mem.mb, nodes=g.n_nodes)
    return row


def cases(args):
    from vesseltree.deformcl.evaluate import crop_graph
    from vesseltree.io import read_tubetk_centerlines, read_volume
    from vesseltree.synth import random_tree, simulate_image
    from vesseltree.volume import Volume

    shared = Path(args.shared)
    if (shared / "tubetk").is_dir():
        for i, case in enumerate(GOLD[: args.n_tubetk]):
            mask = read_volume(shared / "tubetk" / "masks" / f"labels-{case}.nii.gz")
            mask = Volume(np.asarray(mask.data) > 0, mask.affine)
            gold = read_tubetk_centerlines(
                shared / "tubetk" / "centerlines" / f"VascularNetwork-{case}.vtp",
                min_spacing_mm=0.3,
            )
            if args.roi != "full":
                roi = np.array([int(s) for s in args.roi.split(",")])
                lo = np.maximum(np.array(mask.shape) // 2 - roi // 2, 0)
                hi = np.minimum(lo + roi, mask.shape)
                aff = np.array(mask.affine)
                aff[:3, 3] = aff[:3, :3] @ lo + aff[:3, 3]
                mask = Volume(mask.data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], aff)
                gold = crop_graph(gold, aff, (0, 0, 0), mask.shape)
            image = simulate_image(mask, modality="mra", seed=10_000 + i)
            yield "tubetk-gold (MRA-like)", case, image, gold, mask
    for i in range(args.n_synthetic):
        seed = 90_000 + i
        tree = random_tree(seed=seed, n_branches=15)
        image = simulate_image(tree, modality="ct", seed=seed, spacing=0.5)
        yield "synthetic CT-like", f"synth-{seed}", image, tree, image.meta["mask"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", default=None, help="DeformCL checkpoint (default: shipped)")
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--roi", default="160,160,96", help="central ROI of the gold cases, or 'full'")
    ap.add_argument("--n-tubetk", type=int, default=10)
    ap.add_argument("--n-synthetic", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "deformcl"))
    args = ap.parse_args(argv)

    import torch

    from vesseltree.deformcl import DeformCL
    from vesseltree.deformcl.evaluate import evaluate_case

    torch.set_num_threads(args.threads)
    model = DeformCL.from_pretrained(args.checkpoint)
    rows = []
    for group, name, image, truth, mask in cases(args):
        with PeakRSS() as mem, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = evaluate_case(model, image, truth, mask)
        for method, r in res.items():
            rows.append({"group": group, "case": name, "method": method, "peak_mb": mem.mb, **r})
        rows.append(
            {
                "group": group,
                "case": name,
                "method": "vesselness",
                **vesselness_row(image, truth, mask),
            }
        )
        last = {r["method"]: r for r in rows[-3:]}
        print(
            f"{name} {image.shape}: F1@1mm vesselness {last['vesselness']['f1']:.3f}, "
            f"unet {last['unet']['f1']:.3f}, deformcl {last['deformcl']['f1']:.3f}; "
            f"b0 err {last['vesselness']['b0_error']:.0f} / {last['unet']['b0_error']:.0f} / "
            f"{last['deformcl']['b0_error']:.0f}",
            flush=True,
        )
    labels = {
        "vesselness": "Vesselness + extract",
        "unet": "UNet only",
        "deformcl": "UNet + cascade",
    }
    lines = [
        "# DeformCL benchmark (CPU)",
        "",
        f"Checkpoint: `{args.checkpoint or 'data/checkpoints/deformcl'}` "
        f"(config {model.metadata.get('config_name', '?')}, {model.metadata.get('steps', '?')} steps). "
        f"Torch threads: {args.threads}, on a shared 2-core machine (timings are noisy). "
        f"Gold TubeTK cases: central ROI {args.roi}. Mean over cases (HD95/ASSD/time/memory: median). "
        "Peak MB is resident memory above the level before the call (near 0 where the call reuses "
        "memory the process already holds from an earlier case); the UNet and UNet + cascade "
        "rows share one call (one UNet pass).",
        "",
    ]
    for group in dict.fromkeys(r["group"] for r in rows):
        gr = [r for r in rows if r["group"] == group]
        n = len({r["case"] for r in gr})
        lines += [f"## {group} ({n} volumes)", ""]
        lines.append("| method | " + " | ".join(m[1] for m in METRICS) + " |")
        lines.append("|---|" + "---|" * len(METRICS))
        for method in ("vesselness", "unet", "deformcl"):
            mr = [r for r in gr if r["method"] == method]
            cells = []
            for key, _, nd in METRICS:
                vals = np.array([r.get(key, np.nan) for r in mr], float)
                vals = vals[np.isfinite(vals)]
                if not len(vals):
                    cells.append("n/a")
                    continue
                v = (
                    np.median(vals)
                    if key in ("hd95", "assd", "seconds", "peak_mb")
                    else vals.mean()
                )
                cells.append(f"{v:.{nd}f}")
            lines.append(f"| {labels[method]} | " + " | ".join(cells) + " |")
        d = [
            (r2["f1"] - r1["f1"], r2["b0_error"] - r1["b0_error"])
            for r1 in gr
            if r1["method"] == "unet"
            for r2 in gr
            if r2["method"] == "deformcl" and r2["case"] == r1["case"]
        ]
        wins = sum(1 for df, _ in d if df > 0)
        budget = (
            ("fp_offset", "pred 1-2 mm off"),
            ("fp_far_in_mask", "pred >2 mm off, in true mask"),
            ("fp_far_out_mask", "pred >2 mm off, outside true mask"),
            ("fn_offset", "truth 1-2 mm off"),
            ("fn_far", "truth >2 mm off (missed)"),
        )
        lines += [
            "",
            "Error budget at 1 mm (share of predicted / true centerline length, mean over cases):",
            "",
            "| method | " + " | ".join(b[1] for b in budget) + " |",
            "|---|" + "---|" * len(budget),
        ]
        for method in ("vesselness", "unet", "deformcl"):
            mr = [r for r in gr if r["method"] == method]
            cells = [
                f"{np.nanmean([r.get(k, np.nan) for r in mr]):.3f}" if mr else "n/a"
                for k, _ in budget
            ]
            lines.append(f"| {labels[method]} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Cascade vs UNet only, per volume: F1 better in {wins}/{len(d)}, "
            f"mean F1 change {np.mean([x for x, _ in d]):+.3f}, mean b0-error change "
            f"{np.mean([y for _, y in d]):+.1f}.",
            "",
        ]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
