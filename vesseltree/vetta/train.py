"""Training of both VeTTA stages (CPU or CUDA, bf16 autocast on GPU, seeded, resumable).

Stage 1 fits the segment autoencoder on every segment of the training trees. Stage 2 freezes it,
standardises the segment codes, and fits the tree autoencoder on one random decoding state per
tree and step (teacher forcing without unrolling: a partial tree, a query node, its children),
with top-k Hungarian matching of the slots to the children.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_path
from ..errors import InvalidInputError
from .api import VeTTA
from .batch import build_inputs, random_rotations, store_segment_codes
from .matching import topk_match, topk_match_batched

__all__ = [
    "TrainSettings",
    "segment_arrays",
    "train_segment",
    "train_tree",
    "tree_step_loss",
    "tree_batches",
    "train",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one stage."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 50
    clip: float = 1.0
    budget_s: float | None = None  # stop early after this many seconds of training
    checkpoint_every_s: float = 60.0
    stats_trees: int = 1024  # trees used for the code statistics (segment and tree codes)
    augment: bool = True  # random rotation / zoom / shift / jitter
    rotate: bool = True  # rotations in the tree stage (off: reuse precomputed segment codes)
    queries: int = 1  # tree stage: decoding states supervised per tree and step
    workers: int = 0  # tree stage: processes building the batches (0: in the training loop)
    monitor_every_s: float = 60.0  # tree stage: how often ``monitor`` (if given) is evaluated


def _device(device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device={str(device)!r} but CUDA is not available; use 'cpu'")
    return dev


def _autocast(dev: torch.device):
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _schedule(
    opt: torch.optim.Optimizer, step: int, s: TrainSettings, elapsed: float = 0.0
) -> None:
    # linear warm-up, then cosine decay to 10 % by the last step or the end of the time budget
    warm = min(1.0, (step + 1) / max(1, s.warmup))
    frac = step / max(1, s.steps)
    if s.budget_s:
        frac = max(frac, elapsed / s.budget_s)
    frac = min(1.0, frac)
    factor = warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
    for group in opt.param_groups:
        group["lr"] = s.lr * factor


def segment_arrays(records: list[dict], skip_mm: float) -> dict[str, np.ndarray]:
    """Every non-skipped segment of ``records``: samples (N, S, 5), ends (N, 4), weights (N,).

    A segment's weight is ``0.3 * arc / sqrt(chord)`` (mm; clipped to [0.1, 3]): longer and more
    tortuous vessels count more, as in the paper.
    """
    seg, end, w = [], [], []
    for r in records:
        keep = np.flatnonzero((np.arange(len(r["parent"])) > 0) & (r["chord"] >= skip_mm))
        seg.append(np.asarray(r["seg"][keep], np.float32))
        end.append(r["end"][keep])
        w.append(
            np.clip(0.3 * r["arc"][keep] / np.sqrt(np.maximum(r["chord"][keep], 1e-3)), 0.1, 3)
        )
    if not seg:
        raise InvalidInputError("records hold no segment to train on")
    return {
        "seg": np.concatenate(seg),
        "end": np.concatenate(end).astype(np.float32),
        "weight": np.concatenate(w).astype(np.float32),
    }


def _jitter_samples(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move each sample to a random place between its neighbours (a random point in its bin)."""
    n, s, _ = seg.shape
    f = np.clip(np.arange(s)[None] + rng.uniform(-0.5, 0.5, (n, s)), 0, s - 1)
    lo = np.floor(f).astype(np.int64)
    hi = np.minimum(lo + 1, s - 1)
    w = (f - lo)[..., None]
    rows = np.arange(n)[:, None]
    return (1 - w) * seg[rows, lo] + w * seg[rows, hi]


def _save_state(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True)


def train_segment(
    model: VeTTA,
    records: list[dict],
    settings: TrainSettings,
    *,
    seed: int = 0,
    progress: bool = True,
    state_path: Path | None = None,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit ``model.segment_ae`` (stage 1). Returns a log: losses, steps, seconds, it/s."""
    dev = model.device
    net = model.segment_ae
    data = segment_arrays(records, model.config.tree.skip_mm)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=dev).manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    start = 0
    if resume is not None and resume.get("stage") == "segment":
        opt.load_state_dict(resume["opt"])
        start = int(resume["step"])
    net.train()
    losses: list[float] = []
    t0 = last_save = time.perf_counter()
    n = len(data["seg"])
    bar = _progress(settings.steps - start, "segment AE", progress)
    step = start
    for step in range(start, settings.steps):
        if settings.budget_s is not None and time.perf_counter() - t0 > settings.budget_s:
            break
        idx = rng.integers(0, n, settings.batch_size)
        seg = data["seg"][idx]
        seg = _jitter_samples(seg, rng) if settings.augment else seg.astype(np.float64)
        end = data["end"][idx].copy()
        rot = (
            random_rotations(len(idx), rng)
            if settings.augment
            else np.eye(3)[None].repeat(len(idx), 0)
        )
        seg[..., :3] = np.einsum("nij,nsj->nsi", rot, seg[..., :3])
        end[:, :3] = np.einsum("nij,nj->ni", rot, end[:, :3])
        _schedule(opt, step, settings, time.perf_counter() - t0)
        with _autocast(dev):
            loss = net.loss(
                torch.as_tensor(seg, dtype=torch.float32, device=dev),
                torch.as_tensor(end, dtype=torch.float32, device=dev),
                torch.as_tensor(data["weight"][idx], device=dev),
                generator=gen,
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), settings.clip)
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if state_path is not None and time.perf_counter() - last_save > settings.checkpoint_every_s:
            _save_state(state_path, _train_state(model, "segment", step + 1, opt))
            last_save = time.perf_counter()
    else:
        step = settings.steps
    bar.close()
    net.eval()
    secs = time.perf_counter() - t0
    done = len(losses)
    return _log(losses, start + done, secs, done)


def _log(losses: list[float], steps: int, secs: float, done: int) -> dict[str, Any]:
    k = max(1, min(20, len(losses) // 5 or 1))
    return {
        "steps": int(steps),
        "seconds": round(secs, 2),
        "it_per_s": round(done / secs, 3) if secs > 0 else None,
        "loss_start": float(np.mean(losses[:k])) if losses else None,
        "loss_end": float(np.mean(losses[-k:])) if losses else None,
    }


def _train_state(model: VeTTA, stage: str, step: int, opt) -> dict[str, Any]:
    return {"model": model.state(), "stage": stage, "step": int(step), "opt": opt.state_dict()}


def tree_step_loss(
    model: VeTTA,
    records: list[dict] | None,
    rng: np.random.Generator | None,
    *,
    augment: bool = True,
    rotate: bool = True,
    queries: int = 1,
    inputs: dict | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The stage-2 loss of one batch: top-k matched set loss (+ KL in the variational case).

    ``queries`` decoding states per tree share one encoder pass (see :func:`build_inputs`).
    ``inputs``: the batch already built (by a loader worker, :func:`tree_batches`); then
    ``records`` and the augmentation arguments are not used.
    """
    tree = model.tree_ae
    cfg = tree.config
    inp = inputs
    if inp is None:
        inp = build_inputs(
            records,
            model.segment_ae,
            tree,
            rng=rng,
            split=True,
            device=model.device,
            augment=augment,
            rotate=rotate,
            queries=queries,
        )
    with _autocast(model.device):
        mu, logvar = tree.encode(inp["tokens"], inp["mask"])
        z = mu
        if logvar is not None:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        pred = tree.decode_step(z[inp["rows"]], inp["ptokens"], inp["pmask"])
    pred = {k: v.float() for k, v in pred.items()}
    target = inp["target"]
    cost = tree.cost(pred, target)  # (B, M, C)
    valid = target["valid"]
    if cost.device.type == "cuda":
        # one batched exact matching on the GPU instead of B * k Hungarian solves on the CPU
        r_mask, l_mask = topk_match_batched(cost, valid, cfg.match_k)
        rm, lm = r_mask.float(), l_mask.float()
    else:
        c_np = cost.detach().cpu().numpy()
        v_np = valid.cpu().numpy()
        r_np = np.zeros(c_np.shape, dtype=bool)
        l_np = np.zeros(c_np.shape, dtype=bool)
        for g in range(c_np.shape[0]):
            cols = np.flatnonzero(v_np[g])
            r, ell = topk_match(c_np[g][:, cols], cfg.match_k)
            r_np[g][:, cols] = r
            l_np[g][:, cols] = ell
        rm = torch.from_numpy(r_np).to(cost.device).float()
        lm = torch.from_numpy(l_np).to(cost.device).float()
    loss = (cost * lm).sum() / lm.sum() + (cost * rm).sum() / rm.sum()
    stats = {"set": float(loss.detach())}
    if logvar is not None:
        kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=-1))
        loss = loss + cfg.kl_weight * kl
        stats["kl"] = float(kl)
    return loss, stats


class _TreeBatches(torch.utils.data.IterableDataset):
    """Endless training batches of the tree stage, built on the CPU (in loader workers)."""

    def __init__(self, records, seg_ae, tree_ae, settings: TrainSettings, seed: int):
        super().__init__()
        self.records, self.seg_ae, self.tree_ae = records, seg_ae, tree_ae
        self.settings, self.seed = settings, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = 0 if info is None else info.id
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, wid])
        s = self.settings
        while True:
            idx = rng.integers(0, len(self.records), s.batch_size)
            with torch.no_grad():
                inp = build_inputs(
                    [self.records[i] for i in idx],
                    self.seg_ae,
                    self.tree_ae,
                    rng=rng,
                    split=True,
                    device="cpu",
                    augment=s.augment,
                    rotate=s.rotate,
                    queries=s.queries,
                )
            yield {k: inp[k] for k in ("tokens", "mask", "ptokens", "pmask", "rows", "target")}


def _to_device(obj, dev: torch.device):
    if isinstance(obj, dict):
        return {k: _to_device(v, dev) for k, v in obj.items()}
    return obj.to(dev, non_blocking=True)


def tree_batches(model: VeTTA, records: list[dict], settings: TrainSettings, *, seed: int = 0):
    """An endless iterator of tree-stage batches built by ``settings.workers`` processes.

    The workers hold CPU copies of the (frozen) segment AE and of the tree AE's fixed parts
    (position lifting, segment-code statistics); the batches arrive on the model's device.
    """
    import copy

    seg = copy.deepcopy(model.segment_ae).cpu().eval()
    tree = copy.deepcopy(model.tree_ae).cpu()
    loader = torch.utils.data.DataLoader(
        _TreeBatches(records, seg, tree, settings, seed),
        batch_size=None,
        num_workers=settings.workers,
        pin_memory=model.device.type == "cuda",
        prefetch_factor=4,
        persistent_workers=True,
        multiprocessing_context="fork",
    )
    for inp in loader:
        yield _to_device(inp, model.device)


@torch.no_grad()
def set_segment_stats(model: VeTTA, records: list[dict]) -> None:
    """Store the mean and std of the training segment codes (the tree AE regresses them
    standardised)."""
    inp = build_inputs(records, model.segment_ae, model.tree_ae, split=False, device=model.device)
    b = inp["batch"]
    nonroot = torch.ones(b.num_nodes, dtype=torch.bool, device=model.device)
    nonroot[b.ptr[:-1]] = False
    z = inp["zseg_raw"][nonroot]
    model.tree_ae.zseg_mean.copy_(z.mean(0))
    model.tree_ae.zseg_std.copy_(z.std(0, correction=0).clamp_min(1e-3))


@torch.no_grad()
def set_latent_stats(model: VeTTA, records: list[dict], chunk: int = 256) -> None:
    """Store the mean and std of the training tree codes (used by ``VeTTA.sample``)."""
    zs = []
    for i in range(0, len(records), chunk):
        inp = build_inputs(
            records[i : i + chunk],
            model.segment_ae,
            model.tree_ae,
            split=False,
            device=model.device,
        )
        zs.append(model.tree_ae.encode(inp["tokens"], inp["mask"])[0].float())
    z = torch.cat(zs)
    model.tree_ae.latent_mean.copy_(z.mean(0))
    model.tree_ae.latent_std.copy_(z.std(0, correction=0).clamp_min(1e-4))


def train_tree(
    model: VeTTA,
    records: list[dict],
    settings: TrainSettings,
    *,
    seed: int = 0,
    progress: bool = True,
    state_path: Path | None = None,
    resume: dict[str, Any] | None = None,
    monitor: Callable[[VeTTA], float] | None = None,
) -> dict[str, Any]:
    """Fit ``model.tree_ae`` (stage 2) with the segment AE frozen. Returns a log.

    ``monitor(model)`` (lower is better; e.g. the loss on held-out trees) is evaluated every
    ``settings.monitor_every_s`` seconds and at the end; the weights that scored best are kept
    (early stopping) and the log records every reading.
    """
    net = model.tree_ae
    rng = np.random.default_rng(seed + 1)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    start = 0
    if resume is not None and resume.get("stage") == "tree":
        opt.load_state_dict(resume["opt"])
        start = int(resume["step"])
    else:
        set_segment_stats(model, records[: settings.stats_trees])
    model.segment_ae.eval()
    if not settings.rotate:
        store_segment_codes(records, model.segment_ae)
    net.train()
    batches = None
    if settings.workers > 0:
        batches = tree_batches(model, records, settings, seed=seed + 1 + start)
    losses: list[float] = []
    readings: list[tuple[int, float]] = []
    best: tuple[float, int, dict] | None = None

    def check(step: int):
        nonlocal best
        net.eval()
        with torch.no_grad():
            value = float(monitor(model))
        net.train()
        readings.append((step, value))
        if best is None or value < best[0]:
            best = (value, step, {k: v.detach().clone() for k, v in net.state_dict().items()})

    t0 = last_save = last_check = time.perf_counter()
    bar = _progress(settings.steps - start, "tree AE", progress)
    for step in range(start, settings.steps):
        if settings.budget_s is not None and time.perf_counter() - t0 > settings.budget_s:
            break
        _schedule(opt, step, settings, time.perf_counter() - t0)
        if batches is not None:
            loss, _ = tree_step_loss(model, None, None, inputs=next(batches))
        else:
            idx = rng.integers(0, len(records), settings.batch_size)
            loss, _ = tree_step_loss(
                model,
                [records[i] for i in idx],
                rng,
                augment=settings.augment,
                rotate=settings.rotate,
                queries=settings.queries,
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), settings.clip)
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if state_path is not None and time.perf_counter() - last_save > settings.checkpoint_every_s:
            _save_state(state_path, _train_state(model, "tree", step + 1, opt))
            last_save = time.perf_counter()
        if monitor is not None and time.perf_counter() - last_check > settings.monitor_every_s:
            check(step + 1)
            last_check = time.perf_counter()
    bar.close()
    if batches is not None:
        batches.close()  # ends the loader's worker processes
    secs = time.perf_counter() - t0
    out = _log(losses, start + len(losses), secs, len(losses))
    if monitor is not None:
        check(start + len(losses))
        net.load_state_dict(best[2])
        out.update(monitor=readings, best_step=best[1], best_monitor=best[0])
    net.eval()
    set_latent_stats(model, records[: settings.stats_trees])
    return out


def evaluate(
    model: VeTTA, trees: list, *, tolerance_mm: float = 1.0, dice: bool = False
) -> dict[str, float]:
    """Median reconstruction scores of ``model`` on held-out trees (VesselGraph or CanonicalTree)."""
    from ..metrics.trees import centerline_distances, count_errors, tree_edit_distance, tube_dice
    from ..metrics.trees import validity_rate as vrate

    rows = []
    recon = []
    for t in trees:
        truth = t if not hasattr(t, "to_graph") else t.to_graph()
        pred = model.reconstruct(t)
        recon.append(pred)
        row = centerline_distances(pred, truth, tolerance_mm=tolerance_mm)
        row.update(count_errors(pred, truth))
        row["ted"] = tree_edit_distance(pred, truth)
        if dice:
            row["dice"] = tube_dice(pred, truth)
        rows.append(row)
    out = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    out["validity"] = vrate(recon)
    out["n"] = len(rows)
    return out


def train(
    model: VeTTA,
    train_records: list[dict],
    *,
    segment: TrainSettings,
    tree: TrainSettings,
    seed: int = 0,
    out: Path | None = None,
    resume: Path | None = None,
    progress: bool = True,
    on_stage: Callable[[str, dict], None] | None = None,
) -> dict[str, Any]:
    """Both stages one after the other; ``out`` gets ``train_state.pt`` (resumable) and ``vetta.pt``.

    With ``resume`` (a ``train_state.pt``), the model, optimiser and step are restored and
    training continues from there (a finished segment stage is not repeated).
    """
    torch.manual_seed(seed)
    state = None
    if resume is not None:
        state = torch.load(resume, map_location="cpu", weights_only=True)
        loaded = VeTTA.from_state(state["model"], device=model.device)
        model.segment_ae.load_state_dict(loaded.segment_ae.state_dict())
        model.tree_ae.load_state_dict(loaded.tree_ae.state_dict())
        model.metadata.update(loaded.metadata)
    state_path = None if out is None else Path(out) / "train_state.pt"
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    logs: dict[str, Any] = dict(model.metadata.get("training", {}))
    if state is None or state.get("stage") == "segment":
        logs["segment"] = train_segment(
            model,
            train_records,
            segment,
            seed=seed,
            progress=progress,
            state_path=state_path,
            resume=state,
        )
        model.metadata["training"] = logs
        if on_stage:
            on_stage("segment", logs["segment"])
        if state_path is not None:
            _save_state(state_path, {"model": model.state(), "stage": "tree", "step": 0, "opt": {}})
        state = None
    logs["tree"] = train_tree(
        model,
        train_records,
        tree,
        seed=seed,
        progress=progress,
        state_path=state_path,
        resume=state if state is not None and state.get("opt") else None,
    )
    model.metadata["training"] = logs
    if on_stage:
        on_stage("tree", logs["tree"])
    if out is not None:
        model.save_pretrained(Path(out))
    return logs
