"""Train VeTTA (both stages) at a bigger size on a GPU within a strict time budget.

Two modes:

``python benchmarks/gpu_vetta.py --prepare DIR``
    (here, on CPU, with ../shared/data) writes the prepared training/validation trees to
    ``DIR/trees.pt`` (plain tensors, a few MB), so the GPU machine needs no access to the data.

``python benchmarks/gpu_vetta.py --device cuda --budget-s 240 --data DIR --out OUT``
    trains the segment AE, then the tree AE, on ``DIR/trees.pt``, then measures reconstruction on
    the held-out trees, and prints a table: loss at start/end, iterations/s, encode and decode
    throughput (trees/s), peak GPU memory, and the validation Chamfer distance and Dice next to
    the conv-3D AE baseline of ``benchmarks/results/vetta.json``. Everything,
    evaluation included, stays within ``--budget-s`` wall seconds of the script start. Writes
    ``OUT/vetta.pt`` (the checkpoint), ``OUT/gpu_vetta.json`` and ``OUT/gpu_vetta.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def prepare(
    out: Path,
    data: Path | None,
    *,
    n_synthetic: int = 1500,
    tubetk_per_mask: int = 15,
    seed: int = 0,
) -> Path:
    from vesseltree.vetta.datasets import load_sets, prepare, save_sets

    sets, meta = prepare(
        data,
        REPO / ".cache" / "vetta",
        n_synthetic=n_synthetic,
        tubetk_per_mask=tubetk_per_mask,
        seed=seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "trees.pt"
    save_sets(path, sets, meta)
    size = path.stat().st_size / 2**20
    again, _ = load_sets(path)
    assert {k: len(v) for k, v in again.items()} == {k: len(v) for k, v in sets.items()}
    print(f"wrote {path} ({size:.1f} MB): " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    if size > 20:
        print("WARNING: more than 20 MB")
    return path


def _records_chunk(args):
    from vesseltree.vetta.batch import make_record

    trees, seg_cfg = args
    return [make_record(t, seg_cfg) for t in trees]


def _records(trees, seg_cfg) -> list[dict]:
    """Records of the training trees, in parallel where there are cores to spare."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = min(8, (os.cpu_count() or 1) - 1)
    if workers < 2 or len(trees) < 200:
        return _records_chunk((trees, seg_cfg))
    chunks = [(trees[i : i + 200], seg_cfg) for i in range(0, len(trees), 200)]
    with ProcessPoolExecutor(workers) as pool:
        return [r for part in pool.map(_records_chunk, chunks) for r in part]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def run(args) -> dict:
    import vetta as bench  # benchmarks/vetta.py: the conv baseline's voxel grid

    from vesseltree.metrics import dice
    from vesseltree.metrics.trees import centerline_distances, validity_rate
    from vesseltree.vetta import VeTTA, VeTTAConfig
    from vesseltree.vetta.datasets import load_sets
    from vesseltree.vetta.decode import decode_codes, render
    from vesseltree.vetta.train import TrainSettings, train_segment, train_tree
    from vesseltree.vetta.tree import Frame

    t_start = time.perf_counter()
    budget = float(args.budget_s)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    sets, meta = load_sets(Path(args.data) / "trees.pt")
    config = getattr(VeTTAConfig, args.config)()
    train_trees = sets["train"][: args.max_train] if args.max_train else sets["train"]
    # records first: the worker processes fork before CUDA is initialised
    train_records = _records(train_trees, config.segment)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(args.seed)
    previous = None
    if args.init:
        # continue from a checkpoint (its config wins); --segment-share 0 trains the tree AE only
        model = VeTTA.from_pretrained(args.init, device=dev)
        config = model.config
        previous = dict(model.metadata)
    else:
        model = VeTTA(config, device=dev)
    if args.weights or args.refine_window is not None:
        # loss weights / decoding of the tree stage changed: the checkpoint records the new config
        import dataclasses

        weights = dict(config.tree.weights)
        for item in filter(None, (args.weights or "").split(",")):
            name, value = item.split("=")
            weights[name.strip()] = float(value)
        tree_cfg = dataclasses.replace(
            config.tree,
            weights=weights,
            refine_window=config.tree.refine_window
            if args.refine_window is None
            else args.refine_window,
        )
        config = dataclasses.replace(config, tree=tree_cfg)
        model.tree_ae.config = tree_cfg
        model = VeTTA(
            config,
            segment_ae=model.segment_ae,
            tree_ae=model.tree_ae,
            metadata=model.metadata,
            device=dev,
        )
    val_keys = [
        k
        for k in ("val_vesselvae", "val_tubetk_gold", "val_tubetk_mask", "val_synthetic")
        if sets.get(k)
    ]
    prep_s = time.perf_counter() - t_start
    # what is left after loading: --eval-share for evaluation, the rest 35:65 for the stages
    left = budget - prep_s
    train_share = 1.0 - args.eval_share
    share = float(args.segment_share)
    seg_s, tree_s = share * train_share * left, (1.0 - share) * train_share * left
    stats = args.stats_trees
    seg_log = None
    if seg_s > 0:
        seg_log = train_segment(
            model,
            train_records,
            TrainSettings(
                steps=10**6, batch_size=args.segment_batch, lr=args.lr, budget_s=seg_s, warmup=100
            ),
            seed=args.seed,
            progress=not args.no_progress,
        )
    monitor = None
    if args.monitor_every_s > 0:
        # early stopping on held-out trees that the reported validation below does not use
        from vesseltree.vetta.train import tree_step_loss

        mon_trees = sets.get("val_vesselvae", [])[args.n_val :] + sets.get("val_synthetic", [])
        mon_records = _records(mon_trees, config.segment)

        def monitor(m):
            vals = [
                float(
                    tree_step_loss(
                        m,
                        mon_records[i : i + 128],
                        np.random.default_rng(0),
                        augment=False,
                        queries=1000,
                    )[0]
                )
                for i in range(0, len(mon_records), 128)
            ]
            value = float(np.mean(vals))
            print(f"monitor {time.perf_counter() - t_start:7.1f} s: {value:.4f}", flush=True)
            return value

    # the learning rate decays with the time budget (the step count is left open)
    tree_log = train_tree(
        model,
        train_records,
        TrainSettings(
            steps=10**6,
            batch_size=args.tree_batch,
            lr=args.lr,
            budget_s=tree_s,
            warmup=100,
            rotate=not args.no_rotate,
            stats_trees=stats,
            queries=args.queries,
            workers=args.workers,
            monitor_every_s=args.monitor_every_s,
        ),
        seed=args.seed,
        progress=not args.no_progress,
        monitor=monitor,
    )
    _sync(dev)
    peak_train = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    # the trained weights first, so that a failure in the evaluation below loses nothing
    model.metadata.update(training={"segment": seg_log, "tree": tree_log}, device=str(dev))
    model.save_pretrained(Path(args.out))

    # throughput and validation, in chunks, bounded by what is left of the budget
    results: dict = {
        "config": config.name,
        "device": str(dev),
        "prep_s": round(prep_s, 1),
        "init": args.init,
    }
    val = [(k, t) for k in val_keys for t in sets[k][: args.n_val]]
    deadline = t_start + budget - 3.0
    chunk = 64
    zs, frames, decoded = [], [], []
    enc_s = dec_s = 0.0
    with torch.no_grad():
        for i in range(0, len(val), chunk):
            if time.perf_counter() > deadline - 1.0:
                break
            part = [t for _, t in val[i : i + chunk]]
            t0 = time.perf_counter()
            z, fr = model.encode_many(part)
            _sync(dev)
            enc_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            decoded += decode_codes(model.tree_ae, torch.as_tensor(z, device=dev), model.lookup)
            _sync(dev)
            dec_s += time.perf_counter() - t0
            zs.append(z)
            frames += fr
    n_done = len(decoded)
    results["encode_trees_per_s"] = round(n_done / enc_s, 1) if enc_s else None
    results["decode_trees_per_s"] = round(n_done / dec_s, 1) if dec_s else None
    per_set: dict = {}
    for i in range(n_done):
        if time.perf_counter() > deadline:
            break
        key, truth = val[i]
        g = render(decoded[i], frames[i], model.segment_ae).to_graph()
        row = per_set.setdefault(key, {"chamfer": [], "graphs": [], "dice": []})
        tg = truth.to_graph()
        row["chamfer"].append(centerline_distances(g, tg)["chamfer_mm"])
        row["graphs"].append(g)
        if len(row["dice"]) < args.n_dice:
            # Dice on the conv baseline's grid (benchmarks/vetta.py), in the tree's own frame
            row["dice"].append(
                dice(bench.voxel_mask(g, frames[i], 48), bench.voxel_mask(tg, frames[i], 48))
            )
    per_set = {
        k: {
            "chamfer_mm_median": round(float(np.median(v["chamfer"])), 3),
            "dice_median": round(100 * float(np.median(v["dice"])), 1) if v["dice"] else None,
            "n": len(v["chamfer"]),
            "validity": validity_rate(v["graphs"]),
        }
        for k, v in per_set.items()
    }
    results["conv_baseline"] = _conv_baseline()
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    results.update(
        segment=seg_log,
        tree=tree_log,
        peak_gpu_mb_train=None if peak_train is None else round(peak_train, 1),
        peak_gpu_mb=None if peak is None else round(peak, 1),
        validation=per_set,
        params={
            "segment": sum(p.numel() for p in model.segment_ae.parameters()),
            "tree": sum(p.numel() for p in model.tree_ae.parameters()),
        },
        data=meta.get("counts", {}),
    )
    med_scale = float(
        np.median([Frame.of_points(t.dense_points()[:, :3]).scale for t in sets["train"][:500]])
    )
    if previous is not None:
        model.metadata["init_from"] = {
            "path": str(args.init),
            "training": previous.get("training"),
            "note": previous.get("note"),
        }
    if seg_log is None and previous is not None:
        # the segment AE was not trained here: its log is the one it came with
        seg_log = dict((previous.get("training") or {}).get("segment") or {}, unchanged=True)
    model.metadata.update(
        training={"segment": seg_log, "tree": tree_log},
        # the keys of benchmarks/vetta.py's rows (Dice as a fraction), which the notebooks read
        validation={
            k: {
                "chamfer_mm": v["chamfer_mm_median"],
                "dice": None if v["dice_median"] is None else v["dice_median"] / 100,
                "n": v["n"],
                "validity": v["validity"],
            }
            for k, v in per_set.items()
        },
        data=meta,
        default_frame={"centre": [0.0, 0.0, 0.0], "scale": med_scale},
        device=str(dev),
        config_name=config.name,
        version=__import__("vesseltree").__version__,
        script="benchmarks/gpu_vetta.py",
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    table = _table(results)
    print(table)
    (out / "gpu_vetta.json").write_text(json.dumps(results, indent=2))
    (out / "gpu_vetta.md").write_text(table + "\n")
    return results


def _conv_baseline() -> dict:
    """The conv-3D AE's medians from the last CPU benchmark (benchmarks/results/vetta.json)."""
    path = REPO / "benchmarks" / "results" / "vetta.json"
    try:
        sets = json.loads(path.read_text())["sets"]
        return {
            k: {
                "chamfer_mm": round(v["conv"]["chamfer_mm"], 3),
                "dice": round(100 * v["conv"]["dice"], 1),
            }
            for k, v in sets.items()
            if v.get("conv")
        }
    except (OSError, KeyError, ValueError):
        return {}


def _g(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _table(r: dict) -> str:
    t = r["tree"]
    s = r["segment"] or {"steps": 0, "loss_start": None, "loss_end": None, "it_per_s": "-"}
    lines = [
        f"VeTTA `{r['config']}` on {r['device']} (total {r['total_s']} s, data prep {r['prep_s']} s)"
        + (f"; continued from {r['init']}" if r.get("init") else ""),
        "",
        "| quantity | segment AE | tree AE |",
        "|---|---|---|",
        f"| steps | {s['steps']} | {t['steps']} |",
        f"| loss start -> end | {_g(s['loss_start'])} -> {_g(s['loss_end'])} | "
        f"{_g(t['loss_start'])} -> {_g(t['loss_end'])} |",
        f"| iterations/s | {s['it_per_s']} | {t['it_per_s']} |",
        f"| parameters | {r['params']['segment']:,} | {r['params']['tree']:,} |",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| encode throughput (trees/s, batches of 64) | {r['encode_trees_per_s']} |",
        f"| decode throughput (trees/s, recursive, no rendering) | {r['decode_trees_per_s']} |",
        f"| peak GPU memory, training (MB) | {r['peak_gpu_mb_train']} |",
        f"| peak GPU memory, overall (MB) | {r['peak_gpu_mb']} |",
    ]
    conv = r.get("conv_baseline", {})
    lines += [
        "",
        "Validation (medians; Dice % on the conv baseline's 48^3 grid; conv-3D AE numbers from "
        "benchmarks/results/vetta.json, n = 40 per set, CPU-trained):",
        "",
        "| set | n | validity | VeTTA Chamfer mm | conv AE Chamfer mm | VeTTA Dice | conv AE Dice |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in r["validation"].items():
        c = conv.get(k, {})
        lines.append(
            f"| {k} | {v['n']} | {v['validity']:.2f} | {v['chamfer_mm_median']} | "
            f"{c.get('chamfer_mm', 'n/a')} | {_g(v.get('dice_median'))} | {c.get('dice', 'n/a')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepare", default=None, metavar="DIR", help="write prepared trees and exit")
    p.add_argument("--real-data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--n-synthetic", type=int, default=1500, help="--prepare: synthetic trees")
    p.add_argument(
        "--tubetk-per-mask", type=int, default=15, help="--prepare: sub-trees per TubeTK mask"
    )
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget-s", type=float, default=240.0)
    p.add_argument("--data", default=str(REPO / ".cache" / "gpu_vetta"))
    p.add_argument("--out", default=str(REPO / ".cache" / "gpu_vetta_out"))
    p.add_argument("--config", choices=("tiny", "small", "default"), default="default")
    p.add_argument("--segment-batch", type=int, default=512)
    p.add_argument("--tree-batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-val", type=int, default=100, help="trees per validation set")
    p.add_argument("--stats-trees", type=int, default=1024, help="trees for the code statistics")
    p.add_argument("--no-rotate", action="store_true")
    p.add_argument(
        "--queries", type=int, default=8, help="decoding states per tree and tree-AE step"
    )
    p.add_argument("--n-dice", type=int, default=40, help="trees per set scored by Dice")
    p.add_argument("--eval-share", type=float, default=0.15, help="budget share for evaluation")
    p.add_argument(
        "--max-train", type=int, default=None, help="use only the first N training trees"
    )
    p.add_argument(
        "--init", default=None, help="continue training from this VeTTA checkpoint (file or folder)"
    )
    p.add_argument(
        "--segment-share",
        type=float,
        default=0.35,
        help="share of the training time for the segment AE (0: train the tree AE only)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes building the tree-AE batches (0: in the training loop)",
    )
    p.add_argument(
        "--weights", default=None, help="tree-AE loss weights to change, e.g. 'xyz=300,pos=0.05'"
    )
    p.add_argument(
        "--refine-window",
        type=float,
        default=None,
        help="decode positions with this lifted-lookup window (0: the plain position head)",
    )
    p.add_argument(
        "--monitor-every-s",
        type=float,
        default=0.0,
        help="early stopping: every so many seconds score the held-out trees beyond --n-val "
        "(VesselVAE) and the synthetic ones, keep the best weights (0: off)",
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not 0.0 <= args.segment_share < 1.0:
        p.error("--segment-share must be in [0, 1)")
    if args.prepare:
        data = Path(args.real_data)
        prepare(
            Path(args.prepare),
            data if data.is_dir() else None,
            n_synthetic=args.n_synthetic,
            tubetk_per_mask=args.tubetk_per_mask,
            seed=args.seed,
        )
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
