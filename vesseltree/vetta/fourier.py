"""Fourier lifting of scalars and its inversion by table lookup.

A scalar ``v`` in the domain ``[-3, 3]`` is mapped to ``u = (v + 3) / 6`` in ``[0, 1]`` and lifted to
``(cos 2 pi a u, sin 2 pi a u)`` for the octaves ``a = 1, 2, 4, ...``. The lowest octave turns once
over the domain, so the lift is one-to-one and can be inverted: :class:`FourierLookup` finds the
nearest lifted value on a fine grid (one scalar at a time).
"""

from __future__ import annotations

import math

import torch

__all__ = ["DOMAIN", "lift", "lift_dim", "FourierLookup"]

#: the interval of scalars the lift can represent (normalised tree units)
DOMAIN = (-3.0, 3.0)


def lift_dim(n_scalars: int, octaves: int) -> int:
    """Width of the lift of ``n_scalars`` scalars: ``2 * octaves`` each."""
    return 2 * octaves * n_scalars


def lift(
    values: torch.Tensor, octaves: int, *, domain: tuple[float, float] = DOMAIN
) -> torch.Tensor:
    """Lift the last axis of ``values`` (..., D) to (..., D * 2 * octaves).

    Features are grouped per scalar: ``[cos a1 u, ..., cos aK u, sin a1 u, ..., sin aK u]``.
    """
    lo, hi = domain
    u = (values - lo) / (hi - lo)
    freqs = (2.0 ** torch.arange(octaves, device=values.device, dtype=values.dtype)) * (2 * math.pi)
    ang = u.unsqueeze(-1) * freqs  # (..., D, K)
    out = torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)  # (..., D, 2K)
    return out.flatten(-2)


class FourierLookup:
    """Invert :func:`lift` by nearest neighbour on a grid of ``n_grid`` values over the domain.

    The round-trip error of a value inside the domain is at most half a grid step,
    ``(hi - lo) / (n_grid - 1) / 2``.
    """

    def __init__(self, octaves: int, *, n_grid: int = 6001, domain: tuple[float, float] = DOMAIN):
        self.octaves = int(octaves)
        self.domain = (float(domain[0]), float(domain[1]))
        self.grid = torch.linspace(self.domain[0], self.domain[1], int(n_grid), dtype=torch.float64)
        self.table = lift(self.grid.unsqueeze(-1), self.octaves, domain=self.domain).float()

    @property
    def step(self) -> float:
        return (self.domain[1] - self.domain[0]) / (len(self.grid) - 1)

    def invert(
        self,
        features: torch.Tensor,
        *,
        near: torch.Tensor | None = None,
        window: float | None = None,
    ) -> torch.Tensor:
        """(..., D * 2 * octaves) lifted features -> (..., D) scalars (float64, on CPU).

        With ``near`` (..., D) and ``window``, only grid values within ``window`` of ``near`` are
        candidates (a local refinement of a rough estimate).
        """
        w = 2 * self.octaves
        f = features.detach().float().cpu()
        shape = f.shape[:-1]
        d = f.shape[-1] // w
        flat = f.reshape(-1, w)
        # nearest neighbour = largest dot product minus half the squared norm of the table rows
        score = flat @ self.table.T - 0.5 * (self.table**2).sum(1)
        if near is not None and window is not None:
            c = near.detach().double().cpu().reshape(-1, 1)
            c = c.clamp(self.grid[0], self.grid[-1])
            far = (self.grid[None, :] - c).abs() > max(window, self.step)
            score = score.masked_fill(far, float("-inf"))
        idx = score.argmax(dim=1)
        return self.grid[idx].reshape(*shape, d)
