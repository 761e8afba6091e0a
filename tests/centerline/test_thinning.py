"""The simple-point test behind the thinning: the bit-parallel form against the reference."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from vesseltree.centerline.thinning import _FACE, _IN18, _NB6_IN18, _NB26, _OFFSETS, is_simple


def _components(member: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Smallest member index of each position's component (rows = configurations); 99 = not a member."""
    m = member.shape[0]
    lab = np.where(member, np.arange(26, dtype=np.int8)[None, :], np.int8(99))
    pad = np.full((m, 1), 99, np.int8)
    for _ in range(26):
        ext = np.concatenate([lab, pad], axis=1)
        new = np.minimum(lab, ext[:, table].min(axis=2))
        new = np.where(member, new, np.int8(99))
        if np.array_equal(new, lab):
            break
        lab = new
    return lab


def _is_simple_by_labels(codes: np.ndarray) -> np.ndarray:
    """Reference simple-point test: component labels propagated over the 26 positions."""
    codes = np.asarray(codes, dtype=np.int64)
    bits = ((codes[:, None] >> np.arange(26)) & 1).astype(bool)
    # one 26-component of the vessel among the 26 neighbours
    lab = _components(bits, _NB26)
    n_fg = ((lab == np.arange(26)[None, :]) & bits).sum(1)
    # one 6-component of background in the 18-neighbourhood that touches a face neighbour
    bg = ~bits & _IN18[None, :]
    lab_bg = _components(bg, _NB6_IN18)
    face = np.sort(lab_bg[:, _FACE].astype(np.int16), axis=1)
    distinct = (face[:, :1] < 99).astype(np.int64).ravel() + (
        (face[:, 1:] != face[:, :-1]) & (face[:, 1:] < 99)
    ).sum(1)
    return (n_fg == 1) & (distinct == 1)


def _code(offsets) -> int:
    """26-bit code of a set of neighbour offsets (bit b = _OFFSETS[b])."""
    index = {tuple(o): b for b, o in enumerate(_OFFSETS.tolist())}
    return sum(1 << index[tuple(o)] for o in offsets)


def test_bit_parallel_simple_points_match_the_reference():
    rng = np.random.default_rng(0)
    few = [sum(1 << b for b in c) for k in range(4) for c in combinations(range(26), k)]
    full = (1 << 26) - 1
    codes = np.concatenate(
        [
            np.array(few, np.int64),
            full ^ np.array(few, np.int64),  # nearly full neighbourhoods
            rng.integers(0, 1 << 26, 60_000),  # half full
            rng.integers(0, 1 << 26, 30_000) & rng.integers(0, 1 << 26, 30_000),  # sparse
            rng.integers(0, 1 << 26, 30_000) | rng.integers(0, 1 << 26, 30_000),  # dense
        ]
    )
    fast, ref = is_simple(codes), _is_simple_by_labels(codes)
    assert np.array_equal(fast, ref)
    assert 0.05 < fast.mean() < 0.95  # both answers occur


def test_simple_points_by_hand():
    assert not is_simple(np.array([0]))[0]  # an isolated voxel: removing it deletes a component
    assert not is_simple(np.array([(1 << 26) - 1]))[0]  # interior: removing it makes a cavity
    assert is_simple(np.array([_code([(1, 0, 0)])]))[0]  # a curve end
    # the middle of a straight line: removing it cuts the line in two
    assert not is_simple(np.array([_code([(1, 0, 0), (-1, 0, 0)])]))[0]
    # a voxel on a flat wall (the half space below it present): removable
    below = [o for o in _OFFSETS.tolist() if o[2] == -1]
    side = [o for o in _OFFSETS.tolist() if o[2] == 0]
    assert is_simple(np.array([_code(below)]))[0]
    # inside a plate one voxel thick: removing it punches a hole (a tunnel)
    assert not is_simple(np.array([_code(side)]))[0]
