"""Frozen configuration of the DeformCL network and of its training.

Architecture (:class:`DeformCLConfig`) and training (:class:`TrainConfig`) are separate: a checkpoint
stores both, but only the first is needed to rebuild the network.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError

__all__ = ["DeformCLConfig", "TrainConfig"]


def _check_fields(obj, positive_int=(), positive=(), unit=()) -> None:
    for name in positive_int:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidInputError(
                f"{type(obj).__name__}.{name} must be an integer >= 1, got {v!r}"
            )
    for name in positive:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InvalidInputError(f"{type(obj).__name__}.{name} must be a number > 0, got {v!r}")
    for name in unit:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise InvalidInputError(f"{type(obj).__name__}.{name} must be in [0, 1], got {v!r}")


@dataclass(frozen=True)
class DeformCLConfig:
    """Architecture of :class:`~vesseltree.deformcl.DeformCLNet`.

    Attributes
    ----------
    in_channels : int
        Image channels.
    base_channels : int
        Channels of the full-resolution UNet level; level ``l`` has ``base * 2**l`` (capped at 8x).
    levels : int
        Down-sampling steps of the UNet (>= 2: the node features come from the stride-4 level).
    feat_channels : int
        Channels of the stride-4 feature map sampled at the nodes.
    hidden : int
        Width of the node state in the cascade.
    n_stages : int
        Deformation stages, each with its own weights.
    mp_layers : int
        Message-passing layers along the tree edges per stage.
    heads, n_latents : int
        Global attention per stage: ``n_latents`` learned tokens read all nodes of a graph and are
        read back by every node (cost linear in the node count, so whole-volume trees fit).
    max_offset_mm : float, mm
        Bound of each stage's node displacement (``max_offset_mm * tanh(.)`` per axis).
    max_log_radius : float
        Bound of each stage's radius correction: ``r * exp(max_log_radius * tanh(.))``.
    map_radius_vox : int
        Reach (voxels) of the distance-to-centerline map that conditions the final mask.
    patch : int
        Training crop and sliding-window size (voxels per axis), a multiple of ``2**levels``.
    node_step_vox : float
        Template node spacing, in units of the mean voxel size.
    keep_threshold : float
        Each stage also scores every node (probability that it lies on a true vessel); at
        inference, nodes of the last stage scoring below this are removed (0 keeps every node).
    """

    in_channels: int = 1
    base_channels: int = 16
    levels: int = 4
    feat_channels: int = 24
    hidden: int = 32
    n_stages: int = 4
    mp_layers: int = 2
    heads: int = 4
    n_latents: int = 8
    max_offset_mm: float = 1.0
    max_log_radius: float = 0.5
    map_radius_vox: int = 3
    patch: int = 96
    node_step_vox: float = 1.5
    keep_threshold: float = 0.5

    def __post_init__(self):
        _check_fields(
            self,
            positive_int=(
                "in_channels",
                "base_channels",
                "levels",
                "feat_channels",
                "hidden",
                "n_stages",
                "mp_layers",
                "heads",
                "n_latents",
                "map_radius_vox",
                "patch",
            ),
            positive=("max_offset_mm", "max_log_radius", "node_step_vox"),
            unit=("keep_threshold",),
        )
        if self.levels < 2:
            raise InvalidInputError(
                f"DeformCLConfig.levels must be >= 2 (stride-4 features), got {self.levels}"
            )
        if self.patch % (2**self.levels):
            raise InvalidInputError(
                f"DeformCLConfig.patch must be a multiple of 2**levels = {2**self.levels}, "
                f"got {self.patch}"
            )
        if self.hidden % self.heads:
            raise InvalidInputError(
                f"DeformCLConfig.hidden ({self.hidden}) must be divisible by heads ({self.heads})"
            )

    @classmethod
    def tiny(cls) -> DeformCLConfig:
        """A few thousand weights, for CPU tests (32^3 crops, 2 stages)."""
        return cls(
            base_channels=4,
            levels=2,
            feat_channels=8,
            hidden=16,
            n_stages=2,
            mp_layers=1,
            heads=2,
            n_latents=4,
            patch=32,
        )

    @classmethod
    def small(cls) -> DeformCLConfig:
        """The shipped CPU checkpoint: base 8, 3 levels, 3 stages, 48^3 crops."""
        return cls(
            base_channels=8,
            levels=3,
            feat_channels=16,
            hidden=32,
            n_stages=3,
            mp_layers=2,
            heads=4,
            n_latents=8,
            patch=48,
        )

    @classmethod
    def default(cls) -> DeformCLConfig:
        """The reference size: base 16, 4 levels, 24 feature channels, 4 stages, 96^3 crops."""
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeformCLConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"unknown DeformCLConfig fields {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class TrainConfig:
    """Losses, curriculum and optimiser of :func:`~vesseltree.deformcl.train`.

    Loss weights multiply terms in mm (Chamfer, SDF, radius), mm^2 (edge) or unitless (Dice).

    Attributes
    ----------
    steps, batch_size : int
        Optimiser steps and crops per step.
    lr, weight_decay : float
        AdamW; the learning rate follows a cosine after ``warmup`` steps of linear warm-up.
    stage_weights : tuple of float
        Weight of each stage's geometric losses (the last ``n_stages`` entries are used).
    w_chamfer, w_edge, w_sdf, w_radius, w_dice, w_seg, w_keep : float
        Local Chamfer (mm), edge-length change (mm^2), signed distance to the true surface (mm),
        radius L1 (mm), soft Dice of the centerline-conditioned mask, Dice + BCE of the UNet, and
        binary cross-entropy of the node scores (target: within ``keep_tol_mm`` of the truth).
    keep_tol_mm : float, mm
        A node is a true vessel node when a true centerline point lies within this distance.
    chamfer_patch_mm : float, mm
        Side of the cubes of the local Chamfer.
    teacher_forcing : float
        Probability of conditioning the final mask on the true centerline instead of the deformed one.
    curriculum_dice : float
        The template comes from the true mask while the predicted crop's Dice is at most this.
    template_jitter_mm : float, mm
        Gaussian jitter of true templates that get no realistic errors.
    template_errors : float
        Probability that a crop's true template gets realistic errors instead
        (:func:`~vesseltree.deformcl.data.perturb_template`: branches shifted 0.5-1.5 mm, missing
        tips, extra short branches), so that the cascade and its node scores learn to correct the
        errors of templates from predicted masks. Computed in the data workers (cheap).
    pred_template_every : int
        Once the UNet passes the curriculum (a crop's Dice > ``curriculum_dice``), every this many
        steps the template of one crop's *prediction* is extracted; the crop, with that template,
        joins a later batch. With worker processes the extraction runs in the background and never
        blocks a step; without, it runs inline. 0: never (true templates only).
    freeze_unet : bool
        Keep the UNet (and so the templates it yields) fixed and train the cascade and the mask
        head only: a fine-tune that compares with and without the cascade on the same UNet.
    grad_clip : float
        Gradient-norm clip.
    """

    steps: int = 2000
    batch_size: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-3
    warmup: int = 50
    stage_weights: tuple[float, ...] = (0.3, 0.6, 0.95, 1.0)
    w_chamfer: float = 1.0
    w_edge: float = 0.2
    w_sdf: float = 0.3
    w_radius: float = 0.5
    w_dice: float = 1.0
    w_seg: float = 1.0
    w_keep: float = 0.3
    keep_tol_mm: float = 1.5
    chamfer_patch_mm: float = 8.0
    teacher_forcing: float = 0.35
    curriculum_dice: float = 0.65
    template_jitter_mm: float = 0.6
    template_errors: float = 0.7
    pred_template_every: int = 4
    freeze_unet: bool = False
    grad_clip: float = 1.0

    def __post_init__(self):
        _check_fields(
            self,
            positive_int=("steps", "batch_size"),
            positive=("lr", "chamfer_patch_mm", "grad_clip"),
            unit=("teacher_forcing", "curriculum_dice", "template_errors"),
        )
        if self.pred_template_every < 0:
            raise InvalidInputError(
                f"TrainConfig.pred_template_every must be >= 0, got {self.pred_template_every}"
            )
        object.__setattr__(self, "stage_weights", tuple(float(w) for w in self.stage_weights))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stage_weights"] = list(d["stage_weights"])
        return d
