"""DeformCL at a real size on a GPU, within a strict time budget.

Two modes:

``--prepare DIR`` (run where ../shared/data exists, on CPU): writes the training masks (TubeTK,
gold cases excluded) and the 10 validation masks with their gold centerlines to DIR as compressed
npz (bit-packed masks), small enough to carry to a machine without the shared data.

``--device cuda --budget-s 240 --data DIR --out OUT``: builds training cases (synthetic CT/MRA
trees generated here, and the TubeTK masks rendered MRA-like with ``vesseltree.synth.simulate_image``),
trains the default-size model (UNet base 16, 4 levels, 96^3 crops, batch 4, bf16) for at most
``--budget-s`` seconds of training, fits the last stage's node scores on the UNet's own templates
of ``--fit-cases`` training cases (:func:`vesseltree.deformcl.prune.fit_node_scores`: everything
else frozen; this is what lets the cascade remove the UNet's false components and spurs), then
validates on the gold cases (whole 448x448x128 volumes) with and without the cascade, prints a
table and writes OUT/model.pt, OUT/results.md and OUT/results.json.

Example (CPU smoke test at a tiny size)::

    python benchmarks/gpu_deformcl.py --prepare .cache/gpu_deformcl
    python benchmarks/gpu_deformcl.py --device cpu --budget-s 20 --size tiny \
        --data .cache/gpu_deformcl --out /tmp/gpu_dcl --val-cases 1 --val-roi 128,128,64 \
        --fit-cases 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.astype(bool).ravel())


def _unpack(bits: np.ndarray, shape) -> np.ndarray:
    n = int(np.prod(shape))
    return np.unpackbits(bits, count=n).reshape(tuple(int(s) for s in shape)).astype(bool)


def prepare(out: Path, shared: Path) -> None:
    from vesseltree.deformcl.data import TUBETK_GOLD, tubetk_mask_paths
    from vesseltree.io import read_tubetk_centerlines, read_volume

    out.mkdir(parents=True, exist_ok=True)
    train = {}
    names = []
    for i, p in enumerate(tubetk_mask_paths(shared, gold=False)):
        v = read_volume(p)
        m = np.asarray(v.data) > 0
        idx = np.argwhere(m)
        lo, hi = idx.min(0), idx.max(0) + 1
        sub = m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        aff = np.array(v.affine)
        aff[:3, 3] = aff[:3, :3] @ lo + aff[:3, 3]
        train[f"bits{i}"] = _pack(sub)
        train[f"shape{i}"] = np.array(sub.shape)
        train[f"affine{i}"] = aff
        names.append(p.name)
    train["names"] = np.array(names)
    np.savez_compressed(out / "train_masks.npz", **train)
    val = {}
    for i, case in enumerate(TUBETK_GOLD):
        v = read_volume(shared / "tubetk" / "masks" / f"labels-{case}.nii.gz")
        g = read_tubetk_centerlines(
            shared / "tubetk" / "centerlines" / f"VascularNetwork-{case}.vtp", min_spacing_mm=0.3
        )
        val[f"bits{i}"] = _pack(np.asarray(v.data) > 0)
        val[f"shape{i}"] = np.array(v.shape)
        val[f"affine{i}"] = np.array(v.affine)
        val[f"gold_pos{i}"] = g.positions.astype(np.float32)
        val[f"gold_r{i}"] = g.radii.astype(np.float32)
        val[f"gold_edges{i}"] = g.edges.astype(np.int32)
    val["names"] = np.array(TUBETK_GOLD)
    np.savez_compressed(out / "val.npz", **val)
    total = sum(f.stat().st_size for f in out.glob("*.npz"))
    print(
        f"wrote {out} ({total / 1e6:.1f} MB): {len(names)} training masks, {len(TUBETK_GOLD)} validation cases"
    )


def _case_job(job):
    import warnings

    warnings.simplefilter("ignore")
    kind = job[0]
    from vesseltree.deformcl import data as D

    if kind == "synth":
        _, seed, modality, preset = job
        return D.synthetic_case(seed, modality=modality, preset=preset)
    from vesseltree.volume import Volume

    _, seed, bits, shape, affine, region, name = job
    m = Volume(_unpack(bits, shape), affine)
    sub = D.region_around_vessels(m, region, np.random.default_rng(seed))
    return D.mask_case(f"tubetk-{name}-{seed}", sub, seed)


def build_cases(data: Path, n_synth: int, n_tubetk: int, region, seed: int, processes: int):
    jobs = [
        ("synth", seed * 1000 + i, ("ct", "mra")[i % 2], ("coronary", "brain")[(i // 2) % 2])
        for i in range(n_synth)
    ]
    z = np.load(data / "train_masks.npz")
    n_masks = len(z["names"])
    for i in range(n_tubetk):
        k = i % n_masks
        jobs.append(
            (
                "tubetk",
                seed * 1000 + 500 + i,
                z[f"bits{k}"],
                z[f"shape{k}"],
                z[f"affine{k}"],
                region,
                str(z["names"][k])[7:10],
            )
        )
    if processes > 1:
        with ProcessPoolExecutor(processes) as ex:
            cases = list(ex.map(_case_job, jobs))
    else:
        cases = [_case_job(j) for j in jobs]
    return [c for c in cases if c is not None]


def _val_case(job):
    """(image, gold graph, mask) of one validation case (image re-simulated from the real mask)."""
    import warnings

    warnings.simplefilter("ignore")
    from vesseltree.deformcl.evaluate import crop_graph
    from vesseltree.graph import VesselGraph
    from vesseltree.synth import simulate_image
    from vesseltree.volume import Volume

    bits, shape, affine, gpos, gr, ge, i, roi = job
    mask = Volume(_unpack(bits, shape), affine)
    gold = VesselGraph(gpos, gr, ge, affine=mask.affine)
    if roi:
        roi = np.array([int(s) for s in roi.split(",")])
        lo = np.maximum(np.array(mask.shape) // 2 - roi // 2, 0)
        hi = np.minimum(lo + roi, mask.shape)
        aff = np.array(mask.affine)
        aff[:3, 3] = aff[:3, :3] @ lo + aff[:3, 3]
        mask = Volume(mask.data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], aff)
        gold = crop_graph(gold, aff, (0, 0, 0), mask.shape)
    image = simulate_image(mask, modality="mra", seed=10_000 + i)
    # Volume and VesselGraph do not pickle (read-only views, mapping proxies): send plain arrays
    return np.array(image.data), np.array(mask.data), np.array(mask.affine), _arrays(gold)


def _arrays(g):
    return (np.array(g.positions), np.array(g.radii), np.array(g.edges))


def _score(graph, mask, gold, truth_mask, affine):
    import warnings

    warnings.simplefilter("ignore")
    from vesseltree.deformcl.evaluate import score_prediction
    from vesseltree.graph import VesselGraph
    from vesseltree.volume import Volume

    return score_prediction(
        VesselGraph(*graph), Volume(mask, affine), VesselGraph(*gold), Volume(truth_mask, affine)
    )


def _fmt(v, nd=3):
    return "nan" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def run(args) -> int:
    import torch

    from vesseltree.deformcl import DeformCL, DeformCLConfig, DeformCLNet, TrainConfig, train
    from vesseltree.volume import Volume

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 2
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    procs = args.processes or max(1, min(16, (os.cpu_count() or 2) - 1))
    if dev.type == "cpu":
        torch.set_num_threads(procs)  # no oversubscription on a small shared machine
    if args.size == "tiny":
        config = DeformCLConfig.tiny()
        tc = TrainConfig(steps=100000, batch_size=2)
        n_synth, n_tub, region = 2, 2, (96, 96, 64)
    else:
        config = DeformCLConfig.default()  # base 16, 4 levels, 96^3 crops, 4 stages
        tc = TrainConfig(steps=100000, batch_size=args.batch_size)
        n_synth, n_tub, region = args.n_synthetic, args.n_tubetk, (160, 160, 112)
    t0 = time.perf_counter()
    cases = build_cases(data, n_synth, n_tub, region, args.seed, procs)
    t_cases = time.perf_counter() - t0
    print(
        f"{len(cases)} training cases built in {t_cases:.1f} s with {procs} processes", flush=True
    )
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        torch.backends.cudnn.benchmark = True
    n_params = sum(p.numel() for p in DeformCLNet(config).parameters())
    meta = {
        "training_data": {"synthetic": n_synth, "tubetk_regions": n_tub, "gold_excluded": True},
        "device": str(dev),
        "budget_s": args.budget_s,
    }
    model, hist = train(
        cases,
        config=config,
        train_config=tc,
        device=args.device,
        seed=args.seed,
        out=out,
        amp=not args.no_amp,
        time_budget_s=args.budget_s,
        checkpoint_every=10**9,
        progress=not args.no_progress,
        workers=args.workers if args.workers is not None else min(8, max(0, procs - 2)),
        metadata=meta,
    )
    peak_train = (
        torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    )
    from vesseltree.deformcl.checkpoint import load_checkpoint

    predictor = DeformCL(model, device=args.device, metadata=load_checkpoint(out)[2])
    # node scores: fitted on the UNet's own templates of training cases (gold excluded), so that
    # the cascade removes the false components and spurs the UNet yields; UNet and nodes unchanged
    fit = None
    if args.fit_cases > 0:
        from vesseltree.deformcl.prune import fit_node_scores

        step = max(1, len(cases) // args.fit_cases)
        fit = fit_node_scores(predictor, cases[::step][: args.fit_cases], seed=args.seed)
        predictor.metadata["node_scores"] = fit
        predictor.save_pretrained(out)
        print(
            f"node scores fitted on {fit['cases']} training cases ({fit['nodes']} nodes, "
            f"{fit['negative_rate']:.1%} false) in {fit['seconds']:.0f} s: threshold "
            f"{fit['threshold']:g}, held-out proxy F1 {fit['proxy_f1']}",
            flush=True,
        )
    # validation on the gold cases: semi-synthetic MRA images of the real masks, gold centerlines
    z = np.load(data / "val.npz")
    rows = []
    n_val = min(args.val_cases, len(z["names"]))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    jobs = [
        (
            z[f"bits{i}"],
            z[f"shape{i}"],
            z[f"affine{i}"],
            z[f"gold_pos{i}"],
            z[f"gold_r{i}"],
            z[f"gold_edges{i}"],
            i,
            args.val_roi,
        )
        for i in range(n_val)
    ]
    t_val = time.perf_counter()
    import multiprocessing as mp

    with ProcessPoolExecutor(procs, mp_context=mp.get_context("forkserver")) as pool:
        futures = []
        for i, (img_data, mask_data, affine, gold) in enumerate(pool.map(_val_case, jobs)):
            image = Volume(img_data, affine)
            # one UNet pass on the device, both results; scoring (CPU) goes to the pool
            t0 = time.perf_counter()
            res = predictor.predict_both(image)
            total = time.perf_counter() - t0
            secs = res["seconds"]
            for method in ("unet", "deformcl"):
                g, m = res[method]
                t = total if method == "deformcl" else secs["unet"] + secs["template"]
                futures.append(
                    (
                        str(z["names"][i]),
                        method,
                        t,
                        g.n_nodes,
                        pool.submit(_score, _arrays(g), np.array(m.data), gold, mask_data, affine),
                    )
                )
            print(
                f"val {z['names'][i]} {image.shape}: predicted in {total:.1f} s ({secs})",
                flush=True,
            )
        for name, method, t, nodes, fut in futures:
            rows.append(
                {"case": name, "method": method, "seconds": t, "nodes": nodes, **fut.result()}
            )
    t_val = time.perf_counter() - t_val
    for name in dict.fromkeys(r["case"] for r in rows):
        a, b = (
            next(r for r in rows if r["case"] == name and r["method"] == m)
            for m in ("unet", "deformcl")
        )
        print(
            f"val {name}: F1@1mm unet {a['f1']:.3f} -> deformcl {b['f1']:.3f}; "
            f"Dice {a['dice']:.3f} -> {b['dice']:.3f}; b0 err {a['b0_error']:.0f} -> {b['b0_error']:.0f}"
        )
    peak_inf = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    summary = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "config": config.to_dict(),
        "parameters": n_params,
        "batch_size": tc.batch_size,
        "case_build_s": t_cases,
        "train_s": hist["seconds"],
        "steps": hist["steps"],
        "it_per_s": hist["it_per_s"],
        "loss_start": hist["loss_start"],
        "loss_end": hist["loss_end"],
        "peak_train_gib": peak_train,
        "timing": hist.get("timing"),
        "pred_template_crops": hist.get("pred_template_crops"),
        "peak_inference_gib": peak_inf,
        "node_scores": fit,
        "validation_s": t_val,
        "rows": rows,
    }
    lines = [
        f"# DeformCL GPU run ({summary['device']})",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| parameters | {n_params:,} |",
        f"| crop / batch | {config.patch}^3 / {tc.batch_size} |",
        f"| training time (budget) | {hist['seconds']:.0f} s ({args.budget_s:.0f} s) |",
        f"| iterations (it/s) | {hist['steps']} ({hist['it_per_s']:.2f}) |",
        f"| crops trained with a predicted-mask template | {hist.get('pred_template_crops', 0)} |",
        f"| loss start -> end (mean of 10 steps) | {hist['loss_start']:.3f} -> {hist['loss_end']:.3f} |",
        f"| peak GPU memory, training | {_fmt(peak_train, 2)} GiB |",
        *[
            f"| s/step {k} (median; first 10 steps total) | {v['median']:.3f}; {v['first10']:.1f} |"
            for k, v in (hist.get("timing") or {}).items()
            if v
        ],
        f"| peak GPU memory, inference | {_fmt(peak_inf, 2)} GiB |",
        "| node-score fit (cases; s; threshold) | "
        + (f"{fit['cases']}; {fit['seconds']:.0f}; {fit['threshold']:g} |" if fit else "skipped |"),
        "",
        "| method | F1@1mm | precision | recall | Dice | clDice | b0 err | HD95 mm | s / volume |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in ("unet", "deformcl"):
        rr = [r for r in rows if r["method"] == method]
        if not rr:
            continue

        def med(k, rr=rr):
            return float(np.median([r[k] for r in rr]))

        def mean(k, rr=rr):
            return float(np.mean([r[k] for r in rr]))

        lines.append(
            f"| {'UNet only' if method == 'unet' else 'UNet + cascade'} | {_fmt(mean('f1'))} | "
            f"{_fmt(mean('precision'))} | {_fmt(mean('recall'))} | {_fmt(mean('dice'))} | "
            f"{_fmt(mean('cldice'))} | {_fmt(mean('b0_error'), 1)} | {_fmt(med('hd95'), 2)} | "
            f"{_fmt(med('seconds'), 2)} |"
        )
    lines.append("")
    lines.append(
        f"Validation: {n_val} gold TubeTK cases, {'ROI ' + args.val_roi if args.val_roi else 'whole volumes'} "
        f"(mean over cases; HD95 and time: median; time = UNet sliding window + template (+ cascade "
        f"+ final mask) per volume). Validation took {t_val:.0f} s."
    )
    text = "\n".join(lines)
    print(text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=float))
    ok = np.isfinite(hist["loss_end"]) and hist["loss_end"] < hist["loss_start"]
    print("loss fell" if ok else "WARNING: loss did not fall")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--prepare", metavar="DIR", help="write the carried data set to DIR and stop")
    ap.add_argument(
        "--shared", default=str(REPO.parent / "shared" / "data"), help="shared data (for --prepare)"
    )
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=150.0, help="training wall-time budget, s")
    ap.add_argument("--data", help="folder written by --prepare")
    ap.add_argument("--out", help="output folder (checkpoint, results)")
    ap.add_argument("--size", choices=("tiny", "default"), default="default")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--n-synthetic", type=int, default=24)
    ap.add_argument("--n-tubetk", type=int, default=40)
    ap.add_argument("--val-cases", type=int, default=5)
    ap.add_argument(
        "--fit-cases",
        type=int,
        default=12,
        help="training cases on which the node scores are fitted after training (0: skip)",
    )
    ap.add_argument("--val-roi", default=None, help="evaluate a central ROI, e.g. 192,192,96")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--processes", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.prepare:
        prepare(Path(args.prepare), Path(args.shared))
        return 0
    if not args.data or not args.out:
        ap.error("--data and --out are required (or --prepare DIR)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
