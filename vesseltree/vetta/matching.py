"""Top-k Hungarian matching of decoder slots to target children (the VeTTA set loss)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import InvalidInputError

__all__ = ["topk_match"]


def topk_match(cost: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Match slots to targets: ``k`` Hungarian rounds, then every leftover slot to its nearest target.

    Parameters
    ----------
    cost : (M, T) float ndarray
        Cost of giving slot ``i`` target ``j``; ``M >= k * T``.
    k : int
        Slots per target.

    Returns
    -------
    R : (M, T) bool ndarray
        The ``k`` rounds: each target has exactly ``k`` slots, each slot at most one target.
        Round one is an optimal assignment; each later round is optimal among the slots left.
    L : (M, T) bool ndarray
        ``R`` plus every slot not in ``R`` assigned to its cheapest target: every slot has exactly
        one target (where ``T > 0``).
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise InvalidInputError(f"cost must be a 2D (slots, targets) array, got shape {c.shape}")
    m, t = c.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")
    if m < k * t:
        raise InvalidInputError(f"need slots >= k * targets, got {m} slots for {k} x {t} targets")
    if not np.all(np.isfinite(c)):
        raise InvalidInputError("cost must be finite, got NaN or inf")
    r = np.zeros((m, t), dtype=bool)
    if t == 0:
        return r, r.copy()
    free = np.ones(m, dtype=bool)
    for _ in range(int(k)):
        rows = np.flatnonzero(free)
        ri, ci = linear_sum_assignment(c[rows])
        r[rows[ri], ci] = True
        free[rows[ri]] = False
    ell = r.copy()
    rest = np.flatnonzero(free)
    ell[rest, np.argmin(c[rest], axis=1)] = True
    return r, ell
