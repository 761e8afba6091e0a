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


def _lookup(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return ((table[codes >> 3] >> (codes & 7)) & 1).astype(bool)


def test_shipped_table_matches_the_test():
    """The packaged bit table over all 2^26 codes is the vectorised test's answers."""
    from vesseltree.centerline.thinning import load_table

    table = load_table()
    rng = np.random.default_rng(1)
    few = np.array([sum(1 << b for b in c) for k in range(4) for c in combinations(range(26), k)])
    codes = np.concatenate(
        [few, ((1 << 26) - 1) ^ few, rng.integers(0, 1 << 26, 400_000, dtype=np.int64)]
    )
    assert np.array_equal(_lookup(table, codes), is_simple(codes))


def test_damaged_table_is_refused_and_the_thinning_falls_back(tmp_path, monkeypatch, caplog):
    import lzma

    import pytest

    from vesseltree.centerline import thinning

    bad = tmp_path / "simple26.bits.xz"
    raw = bytearray(lzma.decompress(thinning.TABLE_FILE.read_bytes()))
    raw[12345] ^= 0x10
    bad.write_bytes(lzma.compress(bytes(raw)))
    with pytest.raises(ValueError, match="corrupt"):
        thinning.load_table(bad)
    (tmp_path / "junk.xz").write_bytes(b"not lzma")
    monkeypatch.setattr(thinning, "TABLE_FILE", tmp_path / "junk.xz")
    monkeypatch.setattr(thinning.load_table, "__defaults__", (tmp_path / "junk.xz",))
    fresh = thinning._SimpleTable()
    codes = np.random.default_rng(2).integers(0, 1 << 26, 5_000, dtype=np.int64)
    with caplog.at_level("WARNING"):
        got = fresh(codes)
    assert "on demand" in caplog.text
    assert np.array_equal(got, is_simple(codes))
    # the thinning itself gives the same skeleton either way
    box = np.zeros((12, 12, 30), bool)
    box[3:9, 3:9, 2:28] = True
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(box)
    monkeypatch.setattr(thinning, "_TABLE", fresh)
    slow = thinning.thin(box, dist, 0.5)
    monkeypatch.undo()
    assert np.array_equal(slow, thinning.thin(box, dist, 0.5))
    assert 20 <= slow.sum() <= 30  # a curve along the bar
