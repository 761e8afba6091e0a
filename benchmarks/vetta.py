"""VeTTA against a 3D convolutional autoencoder on held-out real vessel trees.

Reconstruction of held-out trees (the VesselVAE validation models, sub-trees of the TubeTK gold
centerlines of the 10 held-out masks, and sub-trees extracted from those masks) by

- **VeTTA** (the shipped checkpoint, or ``--checkpoint``): encode -> recursive decode;
- **Conv-3D AE**: the paper's baseline kind: a 3D convolutional autoencoder with the same latent
  size on the trees voxelised in the same normalised frame (bounding box centred, longest side
  0.5, grid of ``--grid`` voxels over [-0.3, 0.3]^3), trained here on the same training trees for
  ``--conv-budget-s`` seconds (default: as long as the shipped VeTTA trained); its output mask
  becomes a centerline with :func:`vesseltree.centerline.extract_graph`.

Scores (medians per set): centerline Chamfer and Hausdorff (mm), F1 at 1 mm, radius MAE (mm),
count errors, normalised tree edit distance, validity, and Dice on the conv grid. Plus encode and
decode throughput (trees/s) and peak memory of each model (CPU: peak RSS growth of a fresh
process for one batch; CUDA: ``max_memory_allocated``). Writes ``benchmarks/results/vetta.md``
and ``vetta.json``.

    python benchmarks/vetta.py [--device cpu|cuda] [--n 60] [--conv-budget-s S]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _proc import reset_peak, status_mb  # noqa: E402
from torch import nn  # noqa: E402

log = logging.getLogger("bench.vetta")
RESULTS = REPO / "benchmarks" / "results"
PAPER = {"dice": (85.4, 71.8), "acd_mm": (0.326, 0.587)}  # VeTTA-AE, Conv-3D-AE (Table 2)
HALF = 0.3  # the grid spans [-HALF, HALF]^3 in normalised units


# --------------------------------------------------------------------------- voxel grid
def grid_affine(frame, grid: int) -> np.ndarray:
    """Voxel -> world mm of the conv grid of a tree (its frame: centre, scale)."""
    step_mm = (2 * HALF / frame.scale) / grid
    aff = np.diag([step_mm, step_mm, step_mm, 1.0])
    aff[:3, 3] = np.asarray(frame.centre) - HALF / frame.scale + 0.5 * step_mm
    return aff


def voxel_mask(graph, frame, grid: int) -> np.ndarray:
    from vesseltree.synth import voxelize

    return np.asarray(voxelize(graph, affine=grid_affine(frame, grid), shape=(grid,) * 3).data)


class ConvAE(nn.Module):
    """Four stride-2 conv blocks (GroupNorm, GELU) -> linear code -> mirrored decoder."""

    def __init__(self, grid: int, z_dim: int, width: int = 16):
        super().__init__()
        ch = [1, width, 2 * width, 4 * width, 8 * width]
        enc = []
        for a, b in zip(ch[:-1], ch[1:]):
            enc += [nn.Conv3d(a, b, 4, 2, 1), nn.GroupNorm(4 if b >= 4 else 1, b), nn.GELU()]
        self.enc = nn.Sequential(*enc)
        self.side = grid // 16
        flat = ch[-1] * self.side**3
        self.to_z = nn.Linear(flat, z_dim)
        self.from_z = nn.Linear(z_dim, flat)
        dec = []
        rev = ch[::-1]
        for a, b in zip(rev[:-2], rev[1:-1]):
            dec += [nn.ConvTranspose3d(a, b, 4, 2, 1), nn.GroupNorm(4, b), nn.GELU()]
        dec += [nn.ConvTranspose3d(rev[-2], 1, 4, 2, 1)]
        self.dec = nn.Sequential(*dec)
        self.ch = ch[-1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_z(self.enc(x).flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_z(z).view(-1, self.ch, self.side, self.side, self.side)
        return self.dec(h)


def train_conv(masks: np.ndarray, grid: int, z_dim: int, budget_s: float, device, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = ConvAE(grid, z_dim).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    frac = masks.mean()
    pos_w = torch.tensor(min(50.0, (1 - frac) / max(frac, 1e-6)), device=device)
    losses = []
    t0 = time.perf_counter()
    steps = 0
    while time.perf_counter() - t0 < budget_s:
        idx = rng.integers(0, len(masks), 8)
        x = torch.from_numpy(masks[idx]).float()[:, None].to(device)
        logits = net.decode(net.encode(x))
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * x).sum() + 1) / (p.sum() + x.sum() + 1)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, x, pos_weight=pos_w)
        loss = bce + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        steps += 1
    secs = time.perf_counter() - t0
    net.eval()
    k = max(1, min(20, len(losses) // 5))
    return net, {
        "steps": steps,
        "seconds": round(secs, 1),
        "loss_start": float(np.mean(losses[:k])),
        "loss_end": float(np.mean(losses[-k:])),
    }


def conv_centerline(mask: np.ndarray, affine: np.ndarray):
    """Centerline graph of a decoded mask (largest component made a tree), or None."""
    from vesseltree import Volume
    from vesseltree.centerline import extract_graph

    if mask.sum() < 2:
        return None
    try:
        g = extract_graph(Volume(mask.astype(bool), affine), on_empty="warn")
    except Exception as exc:  # noqa: BLE001 - a failed extraction is a failed reconstruction
        log.info("extraction failed: %s", exc)
        return None
    return g if g.n_nodes >= 2 and g.n_edges >= 1 else None


# --------------------------------------------------------------------------- scoring
def score(pred, truth_graph, pred_mask, truth_mask) -> dict:
    from vesseltree.metrics import dice
    from vesseltree.metrics.trees import (
        centerline_distances,
        count_errors,
        is_valid_tree,
        tree_edit_distance,
    )

    row = {"valid": 0.0, "dice": dice(pred_mask, truth_mask)}
    if pred is None:
        return row | {"chamfer_mm": np.nan, "hausdorff_mm": np.nan, "f1": 0.0}
    row.update(centerline_distances(pred, truth_graph, tolerance_mm=1.0))
    tree = pred if pred.root is not None else None
    if tree is None and pred.n_components >= 1:
        tree = pred.to_tree(keep="largest")
    row.update(count_errors(tree, truth_graph))
    row["ted"] = tree_edit_distance(tree, truth_graph)
    # a valid reconstruction is one rooted, connected, acyclic tree
    row["valid"] = float(is_valid_tree(pred) or (pred.is_tree and pred.n_components == 1))
    return row


def summarise(rows: list[dict]) -> dict:
    keys = [
        "chamfer_mm",
        "hausdorff_mm",
        "f1",
        "radius_mae_mm",
        "node_count_error",
        "bifurcation_count_error",
        "leaf_count_error",
        "ted",
        "dice",
    ]
    out = {}
    for k in keys:
        vals = np.array([r.get(k, np.nan) for r in rows], float)
        out[k] = float(np.nanmedian(vals)) if np.isfinite(vals).any() else float("nan")
    out["validity"] = float(np.mean([r["valid"] for r in rows]))
    out["n"] = len(rows)
    return out


# --------------------------------------------------------------------------- memory probe
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


PROBE_TREES = REPO / ".cache" / "vetta_bench_probe.pt"


def memprobe(kind: str, device: str, grid: int, checkpoint: str | None) -> dict:
    """Peak memory of one step of ``kind`` (``{vetta,conv}-{infer,train}``) on the probe batch.

    Runs in a fresh process: CPU memory is the growth of the peak RSS over the RSS after loading
    the model and the batch; CUDA memory is ``max_memory_allocated``.
    """
    from vesseltree.vetta import VeTTA
    from vesseltree.vetta.batch import make_record
    from vesseltree.vetta.datasets import load_sets
    from vesseltree.vetta.train import tree_step_loss
    from vesseltree.vetta.tree import Frame

    sets, _ = load_sets(PROBE_TREES)
    trees = sets["probe"]
    model = VeTTA.from_pretrained(checkpoint, device=device)
    dev = torch.device(device)
    name, mode = kind.split("-")
    if name == "vetta":
        records = [make_record(t, model.config.segment) for t in trees]
    else:
        net = ConvAE(grid, model.config.tree.z_dim).to(dev)
        masks = np.stack(
            [
                voxel_mask(t.to_graph(), Frame.of_points(t.dense_points()[:, :3]), grid)
                for t in trees
            ]
        )
        x = torch.from_numpy(masks).float()[:, None].to(dev)
    reset = reset_peak()
    base = status_mb("VmRSS") if reset else _rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated() / 2**20
    if name == "vetta" and mode == "infer":
        with torch.no_grad():
            z, fr = model.encode_many(trees)
            model.decode_many(z, fr)
    elif name == "vetta":
        model.tree_ae.train()
        loss, _ = tree_step_loss(model, records, np.random.default_rng(0))
        loss.backward()
    elif mode == "infer":
        with torch.no_grad():
            net.decode(net.encode(x))
    else:
        logits = net.decode(net.encode(x))
        nn.functional.binary_cross_entropy_with_logits(logits, x).backward()
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20 - base_cuda
    else:
        peak = (status_mb("VmHWM") if reset else _rss_mb()) - base
    return {"peak_mb": round(peak, 1)}


def _probe(kind: str, args) -> float:
    cmd = [sys.executable, __file__, "--_memprobe", kind, "--device", args.device]
    cmd += ["--grid", str(args.grid)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def memory(args) -> dict:
    """Peak memory of inference and of one training step, batch ``--mem-batch``, both models."""
    from vesseltree.vetta.datasets import load_sets, save_sets

    sets, _ = load_sets(REPO / ".cache" / "gpu_vetta" / "trees.pt")
    save_sets(PROBE_TREES, {"probe": sets["val_vesselvae"][: args.mem_batch]}, {})
    return {k: _probe(k, args) for k in ("vetta-infer", "vetta-train", "conv-infer", "conv-train")}


# --------------------------------------------------------------------------- main
def run(args) -> dict:
    from vesseltree.metrics.trees import centerline_distances
    from vesseltree.vetta import VeTTA
    from vesseltree.vetta.datasets import load_sets
    from vesseltree.vetta.tree import Frame

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sets, meta = load_sets(REPO / ".cache" / "gpu_vetta" / "trees.pt")
    model = VeTTA.from_pretrained(args.checkpoint, device=dev)
    prev = None
    if args.conv_from:
        # the conv AE's rows of an earlier run on the same held-out trees (no conv retraining)
        prev = json.loads(Path(args.conv_from).read_text())
    train_s = sum(
        ((model.metadata.get("training") or {}).get(k) or {}).get("seconds", 0.0)
        for k in ("segment", "tree")
    )
    budget = args.conv_budget_s if args.conv_budget_s is not None else train_s
    grid = args.grid

    if prev is None:
        # conv AE: voxelise training trees in their frames, train for the same wall time
        rng = np.random.default_rng(0)
        n_pick = min(args.conv_train, len(sets["train"]))
        pick = rng.choice(len(sets["train"]), n_pick, replace=False)
        t0 = time.perf_counter()
        masks = []
        for i in pick:
            t = sets["train"][i]
            fr = Frame.of_points(t.dense_points()[:, :3])
            masks.append(voxel_mask(t.to_graph(), fr, grid))
        masks = np.stack(masks).astype(np.uint8)
        vox_s = time.perf_counter() - t0
        conv, conv_log = train_conv(masks, grid, model.config.tree.z_dim, budget, dev)
        conv_log["voxelise_s"] = round(vox_s, 1)
    else:
        conv, conv_log = None, dict(prev["conv_training"], reused_from=str(args.conv_from))

    results: dict = {
        "vetta_training": model.metadata.get("training"),
        "conv_training": conv_log,
        "grid": grid,
        "device": str(dev),
        "sets": {},
    }
    timing = {
        "vetta_enc": [0.0, 0],
        "vetta_dec": [0.0, 0],
        "conv_enc": [0.0, 0],
        "conv_dec": [0.0, 0],
    }
    # VesselVAE trees the model was trained on (the same number): underfitting vs generalisation
    seen = [t for t in sets["train"] if str(t.meta.get("source", "")).startswith("vesselvae:")]
    pick = np.random.default_rng(1).choice(len(seen), min(args.n, len(seen)), replace=False)
    sets = dict(sets, train_vesselvae=[seen[i] for i in sorted(pick)])
    for key in ("val_vesselvae", "val_tubetk_gold", "val_tubetk_mask", "train_vesselvae"):
        trees = sets.get(key, [])[: args.n]
        if not trees:
            continue
        rows_v, rows_c = [], []
        for start in range(0, len(trees), 32):
            part = trees[start : start + 32]
            t0 = time.perf_counter()
            z, frames = model.encode_many(part)
            timing["vetta_enc"][0] += time.perf_counter() - t0
            t0 = time.perf_counter()
            recon = model.decode_many(z, frames)
            timing["vetta_dec"][0] += time.perf_counter() - t0
            timing["vetta_enc"][1] += len(part)
            timing["vetta_dec"][1] += len(part)
            truth_masks = np.stack(
                [voxel_mask(t.to_graph(), f, grid) for t, f in zip(part, frames)]
            )
            for t, f, g, tm in zip(part, frames, recon, truth_masks):
                rows_v.append(score(g, t.to_graph(), voxel_mask(g, f, grid), tm))
                # the floor: the tree's own training targets rendered (no tree AE)
                floor = centerline_distances(model.target_round_trip(t), t.to_graph())
                rows_v[-1]["floor_chamfer_mm"] = floor["chamfer_mm"]
            if conv is None:
                continue
            x = torch.from_numpy(truth_masks).float()[:, None].to(dev)
            with torch.no_grad():
                t0 = time.perf_counter()
                zc = conv.encode(x)
                timing["conv_enc"][0] += time.perf_counter() - t0
                t0 = time.perf_counter()
                out = torch.sigmoid(conv.decode(zc))
                timing["conv_dec"][0] += time.perf_counter() - t0
            timing["conv_enc"][1] += len(part)
            timing["conv_dec"][1] += len(part)
            conv_masks = out[:, 0].cpu().numpy() > 0.5
            for t, f, tm, cm in zip(part, frames, truth_masks, conv_masks):
                cg = conv_centerline(cm, grid_affine(f, grid))
                rows_c.append(score(cg, t.to_graph(), cm, tm))
        if conv is not None:
            conv_rows = summarise(rows_c)
        else:
            conv_rows = prev["sets"].get(key, {}).get("conv")  # absent for sets new since then
        results["sets"][key] = {
            "vetta": summarise(rows_v),
            "conv": conv_rows,
            "vetta_floor_chamfer_mm": float(np.median([r["floor_chamfer_mm"] for r in rows_v])),
        }
        log.info("%s done", key)
    results["throughput_trees_per_s"] = {
        k: round(v[1] / v[0], 1) if v[0] > 0 else None for k, v in timing.items()
    }
    if prev is not None:
        for k in ("conv_enc", "conv_dec"):
            results["throughput_trees_per_s"][k] = prev["throughput_trees_per_s"][k]
    results["peak_memory_mb"] = memory(args)
    results["memory_batch"] = args.mem_batch
    return results


def _fit_note(r: dict) -> str:
    seen, held = r["sets"].get("train_vesselvae"), r["sets"].get("val_vesselvae")
    if not seen or not held:
        return ""
    a, b = seen["vetta"]["chamfer_mm"], held["vetta"]["chamfer_mm"]
    verdict = (
        "the model underfits at this budget (its error on the trees it was trained on is nearly as "
        "large), "
        "so longer training, not regularisation, is what it needs"
        if a > 0.75 * b
        else "the gap to held-out trees is generalisation"
    )
    return (
        f" On {seen['vetta']['n']} VesselVAE trees it was trained on (`train_vesselvae`) its "
        f"Chamfer is {a:.2f} mm against {b:.2f} mm on held-out ones: {verdict}."
    )


def table(r: dict) -> str:
    lines = [
        "# VeTTA vs a 3D convolutional autoencoder (held-out real trees)",
        "",
        f"Device: {r['device']}. Conv grid {r['grid']}^3 over the tree's normalised frame; "
        f"same latent size. VeTTA (shipped checkpoint): its last segment and tree stages trained "
        f"{sum(((r['vetta_training'] or {}).get(k) or {}).get('seconds', 0) for k in ('segment', 'tree')):.0f} s "
        "(earlier stages in its metadata); "
        f"conv AE trained {r['conv_training']['seconds']} s ({r['conv_training']['steps']} steps, "
        f"loss {r['conv_training']['loss_start']:.3f} -> {r['conv_training']['loss_end']:.3f}). "
        "Medians per set; validity = fraction of outputs that are one connected acyclic tree."
        + (
            f" The conv AE's rows are reused from an earlier run on the same trees "
            f"({r['conv_training']['reused_from']}), not retrained."
            if r["conv_training"].get("reused_from")
            else ""
        ),
        "",
        "| set | model | n | Chamfer mm | Hausdorff mm | F1@1mm | radius MAE mm | node err | bif err | leaf err | TED | Dice | validity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, both in r["sets"].items():
        for name, s in (("VeTTA", both["vetta"]), ("Conv-3D AE", both["conv"])):
            if s is None:
                continue
            lines.append(
                f"| {key} | {name} | {s['n']} | {s['chamfer_mm']:.3f} | {s['hausdorff_mm']:.2f} | "
                f"{s['f1']:.3f} | {s['radius_mae_mm']:.3f} | {s['node_count_error']:.1f} | "
                f"{s['bifurcation_count_error']:.1f} | {s['leaf_count_error']:.1f} | {s['ted']:.3f} | "
                f"{100 * s['dice']:.1f} | {s['validity']:.2f} |"
            )
    notes = (r["vetta_training"] or {}).get("notes")
    if notes:
        lines += ["", f"VeTTA's training (checkpoint metadata): {notes}."]
    if all("vetta_floor_chamfer_mm" in b for b in r["sets"].values()):
        lines += [
            "",
            "Floor of VeTTA's Chamfer on each set: the trees' own training targets (key nodes, "
            "radii, segment codes) rendered by the decoding path, with no tree AE "
            "(`VeTTA.target_round_trip`; the segment AE's error alone): "
            + ", ".join(f"{k} {b['vetta_floor_chamfer_mm']:.3f} mm" for k, b in r["sets"].items())
            + ".",
        ]
    lines += [
        "",
        "## Against the paper (different data: compare ratios VeTTA / Conv-3D AE)",
        "",
        "| set | Chamfer ratio (ours) | ACD ratio (paper) | Dice ratio (ours) | Dice ratio (paper) |",
        "|---|---|---|---|---|",
    ]
    pa = PAPER["acd_mm"][0] / PAPER["acd_mm"][1]
    pd = PAPER["dice"][0] / PAPER["dice"][1]
    for key, both in r["sets"].items():
        if both["conv"] is None or key.startswith("train"):
            continue
        cr = both["vetta"]["chamfer_mm"] / both["conv"]["chamfer_mm"]
        dr = both["vetta"]["dice"] / max(both["conv"]["dice"], 1e-9)
        lines.append(f"| {key} | {cr:.2f} | {pa:.2f} | {dr:.2f} | {pd:.2f} |")
    tp = r["throughput_trees_per_s"]
    mem = r["peak_memory_mb"]
    lines += [
        "",
        "## Speed and memory",
        "",
        f"Peak memory: growth of the process's peak {'GPU allocation' if r['device'] != 'cpu' else 'RSS'} "
        f"for one batch of {r['memory_batch']} trees (fresh process each).",
        "",
        "| model | encode trees/s | decode trees/s | peak MB, encode+decode | peak MB, one training step |",
        "|---|---|---|---|---|",
        f"| VeTTA | {tp['vetta_enc']} | {tp['vetta_dec']} (recursive + segment rendering) | "
        f"{mem['vetta-infer']} | {mem['vetta-train']} |",
        f"| Conv-3D AE | {tp['conv_enc']} | {tp['conv_dec']} (mask only; centerline extraction extra) | "
        f"{mem['conv-infer']} | {mem['conv-train']} |",
        "",
        "## Notes",
        "",
        "- Training budgets are small next to the paper's (250k steps x 1100 trees on a V100); "
        "VeTTA's training is in the checkpoint's metadata. VeTTA learns the topology (node, "
        "bifurcation and leaf counts, edit distance, validity) but its key-node positions are "
        "off by millimetres, so its tubes overlap the truth little (low Dice). The decoding path "
        "is not the cause: the floor above (targets rendered without the tree AE) is below the "
        "conv AE's Chamfer."
        + _fit_note(r)
        + " The paper's ordering (VeTTA better on distance and Dice) is not reproduced at this "
        "budget.",
        "- VeTTA's outputs are valid trees by construction (validity 1.00); the conv AE's masks "
        "give a centerline that is one connected acyclic tree only after extraction, and not always.",
        "- Dice is on the conv grid (about 1.5 mm voxels for a 60 mm tree), for both models.",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--n", type=int, default=60, help="trees per held-out set")
    p.add_argument("--grid", type=int, default=48)
    p.add_argument("--conv-train", type=int, default=1500, help="training trees for the conv AE")
    p.add_argument("--conv-budget-s", type=float, default=None)
    p.add_argument(
        "--conv-from",
        default=None,
        metavar="JSON",
        help="reuse the conv AE rows of an earlier vetta.json (same --n) instead of retraining it",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mem-batch", type=int, default=16)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--_memprobe", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--memory-only", action="store_true", help="redo only the memory probes of the saved json"
    )
    args = p.parse_args(argv)
    if args._memprobe:
        torch.set_num_threads(1)
        print(json.dumps(memprobe(args._memprobe, args.device, args.grid, args.checkpoint)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{torch.device(args.device).type}"
    if args.memory_only:
        r = json.loads((out / f"vetta{suffix}.json").read_text())
        r["peak_memory_mb"] = memory(args)
        r["memory_batch"] = args.mem_batch
    else:
        r = run(args)
    (out / f"vetta{suffix}.json").write_text(json.dumps(r, indent=2, default=float))
    text = table(r)
    (out / f"vetta{suffix}.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
