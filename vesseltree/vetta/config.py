"""Frozen configuration dataclasses of the VeTTA models.

A config is data: :class:`VeTTAConfig` holds a :class:`SegmentConfig` (stage 1, one vessel segment)
and a :class:`TreeAEConfig` (stage 2, the whole tree, with the decoding caps). ``tiny()`` suits CPU
tests (seconds), ``small()`` is the CPU-trained shipped checkpoint, ``default()`` is for a GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInputError, describe

__all__ = ["SegmentConfig", "TreeAEConfig", "VeTTAConfig"]


def _check_int(obj, name: str, low: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(
            f"{type(obj).__name__}.{name} must be an integer >= {low}, got {describe(value)}"
        )


def _check_pos(obj, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidInputError(
            f"{type(obj).__name__}.{name} must be a positive number, got {describe(value)}"
        )


@dataclass(frozen=True)
class SegmentConfig:
    """Stage 1: the segment autoencoder.

    Parameters
    ----------
    n_samples : int
        Samples (x, y, z, r, t) per segment, spread by smoothed curvature (paper: 64).
    octaves : int
        Fourier octaves 1, 2, 4, ... 2**(octaves-1) per lifted scalar (paper: 6, i.e. up to 32).
    d_model, n_heads, n_layers, ff_mult : int
        Transformer encoder width, heads, depth and feed-forward width multiple.
    z_dim : int
        Segment code size (paper: 64).
    hidden : int
        Hidden width of the decoder MLP.
    latent_noise : float
        Standard deviation of the Gaussian noise added to the code in training (paper: 0.05).
    radius_weight : float
        Weight of the radius term of the loss against the position terms.
    curvature_power : float
        Sensitivity of the curvature-spread resampling (paper: 0.75).
    """

    n_samples: int = 64
    octaves: int = 6
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_mult: int = 2
    z_dim: int = 16
    hidden: int = 128
    latent_noise: float = 0.05
    radius_weight: float = 0.1
    curvature_power: float = 0.75

    def __post_init__(self):
        for name in ("n_samples", "octaves", "d_model", "n_heads", "n_layers", "ff_mult"):
            _check_int(self, name, 1)
        for name in ("z_dim", "hidden"):
            _check_int(self, name, 1)
        if self.d_model % self.n_heads:
            raise InvalidInputError(
                f"SegmentConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        _check_pos(self, "curvature_power")


@dataclass(frozen=True)
class TreeAEConfig:
    """Stage 2: the tree autoencoder and its recursive decoder.

    Parameters
    ----------
    d_model, n_heads, ff_mult : int
        Transformer width, heads and feed-forward multiple (shared by all three transformers).
    enc_layers, partial_layers, dec_layers : int
        Depth of the full-tree encoder, the partial-tree (root-to-query path) encoder and the
        slot decoder.
    z_dim : int
        Tree code size.
    n_slots : int
        Learned query slots of the decoder (paper: 32); must be >= ``match_k * max_children``.
    match_k : int
        Slots matched to each target by repeated Hungarian assignment (paper: 3).
    max_children : int
        Most children a node may have (paper: 2; 3 lets real trifurcations through).
    octaves : int
        Fourier octaves of the lifted positions.
    variational : bool
        A VAE head (mu, log-variance, KL weight ``kl_weight``) instead of a plain code.
    max_nodes, max_depth : int
        Hard caps of recursive decoding: a random latent always ends in a valid tree.
    skip_mm : float
        Segments with a chord shorter than this (mm) carry no segment code and are drawn straight.
    max_segment_mm : float
        Longer segments are split by inserting one-child nodes (keeps segment codes in range).
    jitter : float
        Standard deviation of the noise on partial-tree positions in training (normalised units).
    pos_domain : float
        Tree positions are lifted over ``[-pos_domain, pos_domain]`` (normalised units). The paper
        lifts over [-3, 3] although trees fill [-0.25, 0.25]; there the lowest octaves barely vary
        and the coarse position is a weak signal. 1.0 still holds every augmented tree.
    relative : bool
        Predict each child's position as an offset from the query node (ours) instead of an
        absolute position (the paper); the root stays absolute.
    refine_window : float
        Ours: each slot also predicts the plain position; decoding inverts the lifted position only
        within this distance (normalised units) of it, so noisy high octaves cannot alias the
        result to a far-away place. 0 uses the plain position alone; None-like large values give
        the paper's global lookup.
    """

    d_model: int = 96
    n_heads: int = 4
    ff_mult: int = 2
    enc_layers: int = 2
    partial_layers: int = 1
    dec_layers: int = 2
    z_dim: int = 64
    n_slots: int = 32
    match_k: int = 3
    max_children: int = 3
    octaves: int = 6
    variational: bool = False
    kl_weight: float = 1e-6
    max_nodes: int = 48
    max_depth: int = 16
    skip_mm: float = 1.0
    max_segment_mm: float = 30.0
    jitter: float = 0.005
    pos_domain: float = 1.0
    relative: bool = True
    refine_window: float = 0.02
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "pos": 1.0,
            "xyz": 30.0,
            "topo": 1.0,
            "rad": 0.3,
            "zseg": 0.1,
            "skip": 0.1,
        }
    )

    def __post_init__(self):
        for name in ("d_model", "n_heads", "ff_mult", "enc_layers", "partial_layers"):
            _check_int(self, name, 1)
        for name in ("dec_layers", "z_dim", "n_slots", "match_k", "max_children", "octaves"):
            _check_int(self, name, 1)
        _check_int(self, "max_nodes", 2)
        _check_int(self, "max_depth", 1)
        if self.d_model % self.n_heads:
            raise InvalidInputError(
                f"TreeAEConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.n_slots < self.match_k * self.max_children:
            raise InvalidInputError(
                f"TreeAEConfig.n_slots ({self.n_slots}) must be >= match_k * max_children "
                f"({self.match_k} * {self.max_children})"
            )
        for name in ("skip_mm", "max_segment_mm", "pos_domain"):
            _check_pos(self, name)
        # a frozen dataclass holding a dict: store a plain copy so asdict() round-trips
        object.__setattr__(self, "weights", dict(self.weights))


@dataclass(frozen=True)
class VeTTAConfig:
    """Both stages of VeTTA."""

    segment: SegmentConfig = field(default_factory=SegmentConfig)
    tree: TreeAEConfig = field(default_factory=TreeAEConfig)
    name: str = "small"

    @classmethod
    def tiny(cls) -> VeTTAConfig:
        """A few thousand parameters: CPU unit tests in seconds."""
        return cls(
            segment=SegmentConfig(
                n_samples=16, octaves=4, d_model=32, n_heads=2, n_layers=1, z_dim=8, hidden=64
            ),
            tree=TreeAEConfig(
                d_model=32,
                n_heads=2,
                enc_layers=1,
                partial_layers=1,
                dec_layers=1,
                z_dim=16,
                n_slots=9,
                match_k=3,
                octaves=5,
                max_nodes=16,
                max_depth=8,
            ),
            name="tiny",
        )

    @classmethod
    def small(cls) -> VeTTAConfig:
        """The CPU-trained shipped checkpoint (a few hundred thousand parameters)."""
        return cls(name="small")

    @classmethod
    def default(cls) -> VeTTAConfig:
        """For real use on a GPU (closer to the paper's sizes, still far smaller)."""
        return cls(
            segment=SegmentConfig(d_model=256, n_heads=8, n_layers=4, z_dim=64, hidden=512),
            tree=TreeAEConfig(
                d_model=256,
                n_heads=8,
                enc_layers=4,
                partial_layers=2,
                dec_layers=4,
                z_dim=256,
                max_nodes=64,
            ),
            name="default",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VeTTAConfig:
        try:
            return cls(
                segment=SegmentConfig(**data["segment"]),
                tree=TreeAEConfig(**data["tree"]),
                name=str(data.get("name", "custom")),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"not a VeTTA config: {describe(data)} ({exc})") from exc
