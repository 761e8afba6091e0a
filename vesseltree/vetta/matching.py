"""Top-k Hungarian matching of decoder slots to target children (the VeTTA set loss)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..errors import InvalidInputError

__all__ = ["topk_match", "topk_match_batched"]


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


def topk_match_batched(
    cost: torch.Tensor, valid: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`topk_match` for a whole batch at once, on the cost's device.

    Parameters
    ----------
    cost : (B, M, C) tensor
        Cost of giving slot ``i`` of row ``b`` target ``j``.
    valid : (B, C) bool tensor
        The targets of each row; they must be a prefix (``valid[b, j]`` implies ``valid[b, :j]``).
    k : int
        Slots per target.

    Returns
    -------
    R, L : (B, M, C) bool tensors, as :func:`topk_match` per row (zeros at invalid targets).

    Each round is an exact minimum-cost assignment among the free slots, found by enumerating the
    slot tuples: for up to three targets per row (``M**3`` tuples) this is one batched reduction
    instead of a Python loop of ``B * k`` Hungarian solves; rows with more targets fall back to
    :func:`topk_match`. Ties may resolve differently from scipy's solver; the total cost of each
    round is the same.
    """
    if cost.ndim != 3 or valid.shape != (cost.shape[0], cost.shape[2]):
        raise InvalidInputError(
            f"cost must be (B, M, C) and valid (B, C), got {tuple(cost.shape)} and "
            f"{tuple(valid.shape)}"
        )
    b, m, c = cost.shape
    cost = cost.detach().float()
    n_t = valid.sum(1)
    if bool((valid != (torch.arange(c, device=valid.device)[None] < n_t[:, None])).any()):
        raise InvalidInputError("valid targets must be a prefix of each row")
    if bool((n_t * k > m).any()):
        raise InvalidInputError(f"need slots >= k * targets, got {m} slots, k = {k}")
    r_mask = torch.zeros(b, m, c, dtype=torch.bool, device=cost.device)
    big = torch.finfo(torch.float32).max / 8
    eye = torch.eye(m, dtype=torch.bool, device=cost.device)
    for n in range(1, c + 1):
        rows = torch.nonzero(n_t == n).flatten()
        if not len(rows):
            continue
        if n > 3:
            for g in rows.tolist():
                r, _ = topk_match(cost[g, :, :n].cpu().numpy(), k)
                r_mask[g, :, :n] = torch.from_numpy(r).to(cost.device)
            continue
        sub = cost[rows, :, :n]  # (r, M, n)
        free = torch.ones(len(rows), m, dtype=torch.bool, device=cost.device)
        ar = torch.arange(len(rows), device=cost.device)
        for _ in range(int(k)):
            c_free = torch.where(free[..., None], sub, torch.full_like(sub, big))
            if n == 1:
                pick = [c_free[..., 0].argmin(1)]
            elif n == 2:
                tot = c_free[:, :, None, 0] + c_free[:, None, :, 1]
                tot = tot.masked_fill(eye, 3 * big)
                flat = tot.flatten(1).argmin(1)
                pick = [flat // m, flat % m]
            else:
                tot = (
                    c_free[:, :, None, None, 0]
                    + c_free[:, None, :, None, 1]
                    + c_free[:, None, None, :, 2]
                )
                same = eye[:, :, None] | eye[:, None, :] | eye[None, :, :]
                tot = tot.masked_fill(same, 4 * big)
                flat = tot.flatten(1).argmin(1)
                pick = [flat // (m * m), (flat // m) % m, flat % m]
            for j, s in enumerate(pick):
                r_mask[rows, s, j] = True
                free[ar, s] = False
    # every slot left over goes to its cheapest valid target
    c_valid = torch.where(valid[:, None, :], cost, torch.full_like(cost, big))
    near = torch.nn.functional.one_hot(c_valid.argmin(2), c).bool() & valid[:, None, :]
    leftover = ~r_mask.any(2, keepdim=True)
    return r_mask, r_mask | (near & leftover)
