"""Training loop: curriculum templates, teacher forcing, mm losses, resumable checkpoints."""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..volume import Volume
from .checkpoint import load_train_state, save_checkpoint
from .config import DeformCLConfig, TrainConfig
from .data import Case, collate, sample_crop
from .losses import (
    chamfer_centres,
    edge_length_loss,
    keep_loss,
    local_chamfer,
    radius_loss,
    sdf_loss,
    segmentation_loss,
    soft_dice_loss,
)
from .model import DeformCLNet, pack_graphs
from .template import graph_to_arrays, template_from_mask

__all__ = ["train", "training_step"]

log = logging.getLogger(__name__)


def _to_mm(pos: torch.Tensor, lin: torch.Tensor) -> torch.Tensor:
    return pos @ lin.t()


def _add_ready(ready, crop: dict, arrays) -> None:
    """Queue ``crop`` with the template extracted from its prediction (if one was found)."""
    if arrays is None or len(arrays[0]) == 0:
        return
    pos, r, e = arrays
    ready.append({**crop, "tpl_pos": pos, "tpl_r": r, "tpl_edges": e})


def _template_job(args):
    prob, affine = args
    tpl = template_from_mask(Volume(prob, affine), warn=False)
    return None if tpl is None else graph_to_arrays(tpl, affine)


def training_step(
    model: DeformCLNet,
    tc: TrainConfig,
    batch: dict,
    crops: list,
    rng,
    *,
    amp: bool,
    want_prob: bool = False,
):
    """Forward pass and all losses for one batch of crops.

    The templates are the crops' own (``tpl_pos``, ``tpl_r``, ``tpl_edges``: the true template,
    perturbed, or one extracted from an earlier prediction); nothing is extracted here. With
    ``want_prob``, ``parts["prob"]`` is ``(index, probability map)`` of the crop whose UNet Dice
    is highest above ``tc.curriculum_dice`` (or ``None``), for the caller to extract a predicted
    template from off the critical path.

    Returns ``(total_loss, parts)`` where ``parts`` holds float values of every term, the hard Dice
    of the UNet and of the final mask.
    """
    dev = batch["image"].device
    use_amp = amp and dev.type == "cuda"
    frozen = tc.freeze_unet
    with (
        torch.no_grad() if frozen else contextlib.nullcontext(),
        torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp),
    ):
        logits, feat = model(batch["image"])
    logits = logits.float()
    mask = batch["mask"]
    seg = segmentation_loss(logits, mask) if not frozen else logits.new_zeros(())
    with torch.no_grad():
        hard = (logits > 0).float()
        inter = (hard * mask).flatten(1).sum(1)
        denom = hard.flatten(1).sum(1) + mask.flatten(1).sum(1)
        dice_unet = torch.where(denom > 0, 2 * inter / denom.clamp(min=1), torch.ones_like(denom))
    parts = {"seg": float(seg.detach()), "prob": None}
    if want_prob:
        best = int(torch.argmax(dice_unet))
        if float(dice_unet[best]) > tc.curriculum_dice:
            parts["prob"] = (best, torch.sigmoid(logits[best, 0]).detach().cpu().numpy())
    graphs = [(c["tpl_pos"], c["tpl_r"], c["tpl_edges"]) for c in crops]
    g = pack_graphs(graphs, dev)
    lin, lin_inv = batch["lin"], batch["lin_inv"]
    geo = logits.new_zeros(())
    n = len(crops)
    final_pos, final_r, final_keep = g["pos"], g["radii"], None
    if g["pos"].shape[0]:
        stages = model.deform(feat.float(), logits, g, lin_inv)
        weights = list(tc.stage_weights)[-len(stages) :]
        weights = [0.0] * (len(stages) - len(weights)) + weights
        lin_n = lin[g["batch"]]
        ref_mm = (lin_n @ g["pos"].unsqueeze(-1)).squeeze(-1)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        gt_mm = [_to_mm(batch["truth"][i], lin[i]) for i in range(n)]
        centres = [chamfer_centres(gt_mm[i], 24, gen) for i in range(n)]
        for w, (pos, rad, keep) in zip(weights, stages):
            pos_mm = (lin_n @ pos.unsqueeze(-1)).squeeze(-1)
            ch, rl, kl = [], [], []
            for i in range(n):
                sl = slice(g["ptr"][i], g["ptr"][i + 1])
                ch.append(local_chamfer(pos_mm[sl], gt_mm[i], centres[i], tc.chamfer_patch_mm))
                rl.append(radius_loss(pos_mm[sl], rad[sl], gt_mm[i], batch["truth_r"][i]))
                kl.append(keep_loss(keep[sl], pos_mm[sl], gt_mm[i], tc.keep_tol_mm))
            ch = torch.stack(ch).mean()
            rl = torch.stack(rl).mean()
            kl = torch.stack(kl).mean()
            ed = edge_length_loss(pos_mm, ref_mm, g["edges"])
            sd = sdf_loss(batch["sdf"], pos, g["batch"])
            geo = geo + w * (
                tc.w_chamfer * ch
                + tc.w_edge * ed
                + tc.w_sdf * sd
                + tc.w_radius * rl
                + tc.w_keep * kl
            )
        parts.update(
            chamfer=float(ch.detach()),
            edge=float(ed.detach()),
            sdf=float(sd.detach()),
            radius=float(rl.detach()),
            keep=float(kl.detach()),
        )
        final_pos, final_r, final_keep = stages[-1]
    shape = tuple(mask.shape[2:])
    if rng.random() < tc.teacher_forcing:
        pts = torch.cat(batch["truth"])
        rad = torch.cat(batch["truth_r"])
        bidx = torch.cat(
            [
                torch.full((len(t),), i, device=dev, dtype=torch.long)
                for i, t in enumerate(batch["truth"])
            ]
        )
        empty = torch.zeros((0, 2), dtype=torch.long, device=dev)
        maps = model.condition_maps(pts, rad.clamp(min=1e-2), empty, bidx, shape, n, lin)
    else:
        pos_m, r_m, e_m, b_m = final_pos, final_r, g["edges"], g["batch"]
        thr = model.config.keep_threshold
        if final_keep is not None and thr > 0:  # as at inference: low-scoring nodes are removed
            kept = torch.sigmoid(final_keep.detach()) >= thr
            remap = torch.cumsum(kept.long(), 0) - 1
            e_m = remap[e_m[kept[e_m[:, 0]] & kept[e_m[:, 1]]]]
            pos_m, r_m, b_m = pos_m[kept], r_m[kept], b_m[kept]
        maps = model.condition_maps(pos_m, r_m, e_m, b_m, shape, n, lin)
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
        final = model.merge(logits, maps).float()
    dl = soft_dice_loss(final, mask)
    with torch.no_grad():
        hf = (final > 0).float()
        inter = (hf * mask).sum()
        dice_final = float(2 * inter / (hf.sum() + mask.sum()).clamp(min=1))
    total = geo + tc.w_dice * dl + (tc.w_seg * seg if not frozen else 0.0)
    parts.update(
        dice=float(dl.detach()),
        total=float(total.detach()),
        dice_unet=float(dice_unet.mean()),
        dice_final=dice_final,
    )
    return total, parts


class _CropStream(torch.utils.data.IterableDataset):
    """Endless batches of crops (lists of dicts of numpy arrays), seeded per worker."""

    def __init__(self, cases, size, batch_size, jitter_mm, errors, seed):
        self.cases, self.size, self.batch_size = cases, size, batch_size
        self.jitter_mm, self.errors, self.seed = jitter_mm, errors, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, 0 if info is None else info.id + 1])
        while True:
            yield [
                sample_crop(
                    self.cases[int(rng.integers(len(self.cases)))],
                    self.size,
                    rng,
                    jitter_mm=self.jitter_mm,
                    template_errors=self.errors,
                )
                for _ in range(self.batch_size)
            ]


def _as_is(x):
    return x


def _lr_factor(frac: float, warm_frac: float) -> float:
    if frac < warm_frac:
        return 0.1 + 0.9 * frac / warm_frac
    f = (frac - warm_frac) / max(1 - warm_frac, 1e-9)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(f, 1.0)))


def train(
    cases: list[Case],
    *,
    config: DeformCLConfig | None = None,
    train_config: TrainConfig | None = None,
    device: str = "cpu",
    seed: int = 0,
    out: str | Path | None = None,
    resume: bool = False,
    amp: bool = False,
    time_budget_s: float | None = None,
    checkpoint_every: int = 200,
    progress: bool = True,
    workers: int = 0,
    metadata: dict | None = None,
    init_from=None,
) -> tuple[DeformCLNet, dict]:
    """Train a :class:`DeformCLNet` on crops of ``cases``.

    Parameters
    ----------
    cases : list of Case
        Training cases (see :mod:`vesseltree.deformcl.data`).
    config, train_config : optional
        Architecture (default :meth:`DeformCLConfig.small`) and training settings.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    seed : int
        Seeds numpy and torch (crops, jitter, teacher forcing, weights).
    out : path, optional
        Folder for ``model.pt`` (config + weights + metadata) and ``train_state.pt`` (optimiser,
        step, RNG), written atomically every ``checkpoint_every`` steps and at the end.
    resume : bool
        Continue from ``out/train_state.pt`` when present.
    amp : bool
        bf16 autocast for the convolutions on CUDA (ignored on CPU).
    time_budget_s : float, optional
        Stop before a step would end after this much wall time (judged from the running mean step
        time); the learning-rate schedule then runs on elapsed time instead of step count.
    workers : int
        Worker processes that cut crops and extract predicted templates in parallel (0: all in
        this process, reproducible from ``seed`` across resumes; > 0: seeded per worker but not
        resumable bit for bit).
    init_from : path, optional
        Start from the weights of this checkpoint (fine-tuning); layers it lacks keep their fresh
        initialisation.

    Returns
    -------
    (model, history): the trained network (eval mode) and a dict with per-step ``loss`` and summary
    numbers (``steps``, ``seconds``, ``it_per_s``, ``loss_start``, ``loss_end``).
    """
    from ..errors import InvalidInputError

    if not cases:
        raise InvalidInputError("cases is empty; give at least one training Case")
    config = config or DeformCLConfig.small()
    tc = train_config or TrainConfig()
    dev = torch.device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = DeformCLNet(config).to(dev)
    if init_from is not None:
        from .checkpoint import load_checkpoint

        _, state, _ = load_checkpoint(init_from)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected:
            raise InvalidInputError(
                f"init_from {str(init_from)!r} holds weights this config lacks: {unexpected[:5]}"
            )
        log.info("initialised from %s (fresh: %s)", init_from, missing)
    trainable = [
        p for n, p in model.named_parameters() if not (tc.freeze_unet and n.startswith("unet."))
    ]
    opt = torch.optim.AdamW(trainable, lr=tc.lr, weight_decay=tc.weight_decay)
    step0, history = 0, {"loss": [], "chamfer": [], "dice_unet": [], "dice_final": []}
    timing = {"data": [], "forward": [], "template": [], "backward": []}
    out = Path(out) if out is not None else None
    if resume and out is not None and (out / "train_state.pt").exists():
        state = load_train_state(out, map_location=dev)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step0 = int(state["step"])
        history = state["history"]
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at step %d", out, step0)
    warm_frac = tc.warmup / max(tc.steps, 1)
    model.train()
    if tc.freeze_unet:
        model.unet.eval()  # fixed batch-norm statistics: the same UNet as before the fine-tune
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=tc.steps, initial=step0, desc="train-deformcl", unit="it")
    step = step0

    def save(final: bool):
        if out is None:
            return
        meta = dict(metadata or {})
        meta.update(
            steps=step,
            seed=seed,
            train_config=tc.to_dict(),
            n_cases=len(cases),
            loss_start=float(np.mean(history["loss"][:20])) if history["loss"] else None,
            loss_end=float(np.mean(history["loss"][-20:])) if history["loss"] else None,
            dice_unet_end=float(np.mean(history["dice_unet"][-50:]))
            if history["dice_unet"]
            else None,
        )
        train_state = {
            "optimizer": opt.state_dict(),
            "step": step,
            "history": history,
            "numpy_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }
        save_checkpoint(out, model, meta, train_state=train_state)

    stream, pool = None, None
    if workers > 0:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ds = _CropStream(
            cases,
            config.patch,
            tc.batch_size,
            tc.template_jitter_mm,
            tc.template_errors,
            seed + step0,
        )
        stream = iter(
            torch.utils.data.DataLoader(
                ds, batch_size=None, num_workers=workers, collate_fn=_as_is, prefetch_factor=4
            )
        )
        if tc.pred_template_every > 0:
            pool = ProcessPoolExecutor(
                max(1, workers // 2), mp_context=mp.get_context("forkserver")
            )
    # crops whose template was extracted from a prediction: in flight, and ready for a batch
    pending: list = []
    ready: collections.deque = collections.deque(maxlen=16)
    max_pending = max(1, workers // 2)
    n_pred_used = 0
    params = trainable
    step_s = 0.0  # running mean of the step time, so the budget is not overrun by the last step
    try:
        while step < tc.steps:
            t_step = time.perf_counter()
            elapsed = t_step - t0
            if time_budget_s is not None and elapsed + step_s >= time_budget_s:
                break
            frac = step / tc.steps
            if time_budget_s is not None:
                frac = max(frac, elapsed / time_budget_s)
            for group in opt.param_groups:
                group["lr"] = tc.lr * _lr_factor(frac, warm_frac)
            if stream is not None:
                crops = next(stream)
            else:
                crops = []
                for _ in range(tc.batch_size):
                    case = cases[int(rng.integers(len(cases)))]
                    crops.append(
                        sample_crop(
                            case,
                            config.patch,
                            rng,
                            jitter_mm=tc.template_jitter_mm,
                            template_errors=tc.template_errors,
                        )
                    )
            if ready:
                crops[0] = ready.popleft()
                n_pred_used += 1
            batch = collate(crops, dev)
            t_fwd = time.perf_counter()
            want = (
                tc.pred_template_every > 0
                and step % tc.pred_template_every == 0
                and len(pending) < max_pending
            )
            loss, parts = training_step(model, tc, batch, crops, rng, amp=amp, want_prob=want)
            t_bwd = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            t_tpl = time.perf_counter()
            if parts["prob"] is not None:
                i, prob = parts["prob"]
                job = (prob, crops[i]["affine"])
                if pool is not None:  # background: the crop joins a later batch
                    pending.append((pool.submit(_template_job, job), crops[i]))
                else:
                    _add_ready(ready, crops[i], _template_job(job))
            still = []
            for fut, crop in pending:
                if fut.done():
                    _add_ready(ready, crop, None if fut.exception() else fut.result())
                else:
                    still.append((fut, crop))
            pending = still
            t_tpl = time.perf_counter() - t_tpl
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            step += 1
            t_end = time.perf_counter()
            timing["data"].append(t_fwd - t_step)
            timing["forward"].append(t_bwd - t_fwd)
            timing["template"].append(t_tpl)
            timing["backward"].append(t_end - t_bwd - t_tpl)
            dt = t_end - t_step
            step_s = dt if step_s == 0.0 else 0.9 * step_s + 0.1 * dt
            history["loss"].append(parts["total"])
            history["chamfer"].append(parts.get("chamfer", float("nan")))
            history["dice_unet"].append(parts["dice_unet"])
            history["dice_final"].append(parts["dice_final"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{parts['total']:.3f}",
                    ch=f"{parts.get('chamfer', float('nan')):.2f}",
                    dice=f"{parts['dice_unet']:.2f}",
                )
            if out is not None and step % checkpoint_every == 0:
                save(False)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        stream = None  # stops the crop workers
    seconds = time.perf_counter() - t0
    done = step - step0
    summary = {
        "pred_template_crops": n_pred_used,
        "steps": step,
        "seconds": seconds,
        "it_per_s": done / seconds if seconds > 0 else float("nan"),
        "loss_start": float(np.mean(history["loss"][:10])) if history["loss"] else float("nan"),
        "loss_end": float(np.mean(history["loss"][-10:])) if history["loss"] else float("nan"),
    }
    history.update(summary)
    # seconds per step: median, and the total of the first 10 steps (warm-up, autotuning)
    history["timing"] = {
        k: {"median": float(np.median(v)), "first10": float(np.sum(v[:10]))} if v else None
        for k, v in timing.items()
    }
    save(True)
    model.eval()
    return model, history
