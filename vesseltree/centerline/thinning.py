"""Topology-preserving 3D thinning ordered by distance to the wall.

Voxels are peeled in order of increasing distance to the background (distance-ordered homotopic
thinning, Pudney 1998), so what survives sits on the medial axis and real loops survive (only
simple points are removed). Within one distance band the removal runs in parallel over the eight
parity sub-fields of the grid: two voxels of one sub-field are never 26-neighbours, so removing
simple points of one sub-field at once cannot change the topology. A voxel with exactly one
26-neighbour is a curve end and is kept, which yields a curve skeleton.

Simplicity (26-connectivity for the vessel, 6 for the background; Bertrand & Malandain 1994) is
decided from the 26-neighbourhood as a 26-bit code, looked up in a bit table over all 2^26 codes
(8 MB in memory, 10 kB compressed) that ships with the package and is built by :func:`build_table`
from the vectorised test :func:`is_simple`.

We write this ourselves because scikit-image's 3D thinning deletes straight axis-aligned tubes
thicker than about 6 voxels entirely (scikit-image issue #3757).
"""

from __future__ import annotations

import hashlib
import logging
import lzma
from pathlib import Path

import numpy as np

from .cleanup import unique_ints

__all__ = ["thin", "world_parity", "is_simple", "build_table", "load_table"]

log = logging.getLogger(__name__)

# the 26 neighbour offsets, in a fixed order: bit b of a code is the voxel at _OFFSETS[b]
_CUBE = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"), -1).reshape(-1, 3)
_OFFSETS = _CUBE[np.abs(_CUBE).sum(1) > 0]
_L1 = np.abs(_OFFSETS).sum(1)
_FACE = np.flatnonzero(_L1 == 1)
_IN18 = _L1 <= 2


def _neighbour_table(conn_l1: int, allowed: np.ndarray) -> np.ndarray:
    """(26, D) neighbour indices among the 26 positions (26 = padding column)."""
    diff = _OFFSETS[:, None, :] - _OFFSETS[None, :, :]
    cheb = np.abs(diff).max(-1)
    l1 = np.abs(diff).sum(-1)
    adj = (cheb == 1) & (l1 <= conn_l1) & allowed[None, :] & allowed[:, None]
    deg = adj.sum(1).max()
    table = np.full((26, max(deg, 1)), 26, np.int64)
    for i in range(26):
        nb = np.flatnonzero(adj[i])
        table[i, : len(nb)] = nb
    return table


_NB26 = _neighbour_table(3, np.ones(26, bool))
_NB6_IN18 = _neighbour_table(1, _IN18)


def _adjacency_bits(table: np.ndarray) -> list[int]:
    """Per position, the bit mask of its neighbours in a (26, D) neighbour table."""
    return [sum(1 << int(j) for j in row if j < 26) for row in table]


def _byte_tables(masks: list[int]) -> np.ndarray:
    """(4, 256) int64: for byte k of a 26-bit set, the union of the neighbour masks of its bits."""
    out = np.zeros((4, 256), np.int64)
    for k in range(4):
        for v in range(256):
            acc = 0
            for b in range(8):
                if 8 * k + b < 26 and (v >> b) & 1:
                    acc |= masks[8 * k + b]
            out[k, v] = acc
    return out


_GROW26 = _byte_tables(_adjacency_bits(_NB26))
_GROW6_IN18 = _byte_tables(_adjacency_bits(_NB6_IN18))
_MASK18 = sum(1 << int(i) for i in np.flatnonzero(_IN18))
_MASK_FACE = sum(1 << int(i) for i in _FACE)


def _grow(seed: np.ndarray, allowed: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """The component of ``seed`` within ``allowed`` (26-bit sets, one per row), bit-parallel."""
    m = seed
    while True:
        nb = (
            tables[0][m & 255]
            | tables[1][(m >> 8) & 255]
            | tables[2][(m >> 16) & 255]
            | tables[3][(m >> 24) & 255]
        )
        new = (m | nb) & allowed
        if np.array_equal(new, m):
            return m
        m = new


def is_simple(codes: np.ndarray) -> np.ndarray:
    """Whether the centre voxel of each 26-neighbourhood code (bit b = ``_OFFSETS[b]``) is simple.

    The neighbourhood is a 26-bit set; a component is grown from one member by OR-ing the
    neighbour masks of its bits (four 256-entry tables, one per byte), for all codes at once. The
    vessel must be one 26-component, and the background in the 18-neighbourhood must have exactly
    one 6-component that touches a face neighbour. Same answers as propagating component labels
    over the 26 positions (the reference in the tests), about 35x faster.
    """
    x = np.asarray(codes, dtype=np.int64)
    fg = _grow(x & -x, x, _GROW26)
    bg = ~x & _MASK18
    face = bg & _MASK_FACE
    comp = _grow(face & -face, bg, _GROW6_IN18)
    return (x != 0) & (fg == x) & (face != 0) & ((face & ~comp) == 0)


TABLE_FILE = Path(__file__).with_name("simple26.bits.xz")
TABLE_SHA256 = "3699e69a8cb5558afbae8c5420e3269555ec2b6fd4568e53509a57762a8baa6b"


def build_table(path: str | Path = TABLE_FILE, chunk: int = 1 << 22) -> Path:
    """Evaluate :func:`is_simple` on all 2^26 codes and write the bit table (LZMA, ~10 kB).

    Little-endian bit order: bit ``c & 7`` of byte ``c >> 3`` is code ``c``. Takes about 30 s;
    the file ships with the package (``python -m vesseltree.centerline.thinning`` rebuilds it).
    """
    from .._atomic import write_bytes_atomic

    parts = []
    for start in range(0, 1 << 26, chunk):
        codes = np.arange(start, start + chunk, dtype=np.int64)
        parts.append(np.packbits(is_simple(codes), bitorder="little"))
    data = lzma.compress(np.concatenate(parts).tobytes(), preset=9)
    write_bytes_atomic(path, data)
    return Path(path)


def load_table(path: str | Path = TABLE_FILE) -> np.ndarray:
    """The shipped bit table of simple codes, (2^23,) uint8; checked against its SHA-256."""
    raw = lzma.decompress(Path(path).read_bytes())
    if len(raw) != 1 << 23 or hashlib.sha256(raw).hexdigest() != TABLE_SHA256:
        raise ValueError(f"{path}: not the simple-point table this version expects (corrupt?)")
    return np.frombuffer(raw, np.uint8)


class _SimpleTable:
    """Bit table over all 2^26 codes: read from the shipped file on first use (~15 ms).

    Where the file is missing or damaged, codes are evaluated on demand instead (in batches, the
    first time they are met) and remembered, with a warning: same answers, slower first calls.
    """

    def __init__(self):
        self.known = None
        self.simple = None

    def _load(self) -> None:
        try:
            self.simple = load_table()
            self.known = None
        except (OSError, ValueError, lzma.LZMAError) as err:
            log.warning("simple-point table unavailable (%s); evaluating codes on demand", err)
            self.known = np.zeros(1 << 23, np.uint8)
            self.simple = np.zeros(1 << 23, np.uint8)

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        if self.simple is None:
            self._load()
        byte, bit = codes >> 3, (codes & 7).astype(np.uint8)
        if self.known is not None:
            known = (self.known[byte] >> bit) & 1
            todo = unique_ints(codes[known == 0])
            if todo.size:
                val = is_simple(todo)
                tb, tbit = todo >> 3, (todo & 7).astype(np.uint8)
                np.bitwise_or.at(self.known, tb, (1 << tbit).astype(np.uint8))
                np.bitwise_or.at(self.simple, tb[val], (1 << tbit[val]).astype(np.uint8))
        return ((self.simple[byte] >> bit) & 1).astype(bool)


_TABLE = _SimpleTable()


def world_parity(shape, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-field numbering of :func:`thin` by world axes, for a box of ``shape`` (the object's
    bounding box with one voxel of padding) and its affine's (3, 3) part.

    Storage axis ``a`` runs along world axis ``argmax |axes[:, a]|``, forwards or backwards; its
    parity bit is counted from the padding voxel before the object along that world direction
    and weighted 4, 2, 1 for world x, y, z. Flipping or permuting the storage axes (with the
    affine to match) then leaves every voxel's sub-field, hence the peeling order, unchanged.
    For oblique affines whose axes do not map one-to-one to world axes, the storage order is kept.
    """
    axes = np.asarray(axes, np.float64)
    world = np.argmax(np.abs(axes), axis=0)
    if len(set(world.tolist())) < 3:
        return np.zeros(3, np.int64), np.array([4, 2, 1])
    sign = np.sign(axes[world, np.arange(3)])
    origin = np.where(sign > 0, 0, np.asarray(shape) - 1).astype(np.int64)
    return origin, (1 << (2 - world)).astype(np.int64)


def thin(box: np.ndarray, dist: np.ndarray, band: float, parity: tuple | None = None) -> np.ndarray:
    """Curve skeleton of a bool volume, peeled in order of ``dist``.

    Parameters
    ----------
    box : (I, J, K) bool ndarray
        The object, with at least one background voxel of padding on every side.
    dist : (I, J, K) float ndarray
        Distance to the background at the object's voxels (mm); only read where ``box`` is set.
    band : float
        Width of a distance band (mm); voxels of one band are peeled together.
    parity : (origin, weights), optional
        How the eight sub-fields are numbered (they are peeled in that order): voxel ``ijk`` is in
        sub-field ``sum(((ijk - origin) & 1) * weights)``. The default, origin 0 and weights
        (4, 2, 1), follows the storage order; :func:`world_parity` numbers them by world axes,
        so a flipped or permuted copy of the same mask gives the same skeleton.

    Returns
    -------
    (I, J, K) bool ndarray
        The skeleton (a new array).
    """
    alive = box.copy()
    flat_alive = alive.reshape(-1)
    shape = np.asarray(box.shape)
    strides = np.array([box.shape[1] * box.shape[2], box.shape[2], 1], np.int64)
    offs = _OFFSETS @ strides
    vox = np.flatnonzero(box.reshape(-1))
    d = dist.reshape(-1)[vox]
    order = np.argsort(d, kind="stable")
    vox, d = vox[order], d[order]
    ijk = np.stack(np.unravel_index(vox, box.shape), 1)
    if np.any(ijk == 0) or np.any(ijk == shape - 1):
        raise ValueError("thin() needs one voxel of background padding on every side")
    origin, pw = (np.zeros(3, np.int64), np.array([4, 2, 1])) if parity is None else parity
    parity = (((ijk - np.asarray(origin, np.int64)) & 1) * np.asarray(pw, np.int64)).sum(1)
    # distances that are exact multiples of the band (axis-aligned ones are) stay in their band
    # when an orientation change moves them by a rounding error
    level = np.floor(d / band + 1e-3).astype(np.int64)
    starts = np.flatnonzero(np.concatenate([[True], level[1:] != level[:-1]])) if len(level) else []
    bounds = list(starts) + [len(vox)]
    kept = np.zeros(len(vox), bool)  # tested, not removable at the time, still alive
    dirty = np.zeros(len(vox), bool)  # a neighbour was removed since the last test
    # row of each object voxel, and whether it is kept, on the grid; read only at object voxels,
    # so the rest stays unwritten (an empty or zeroed array costs no time or memory where it is
    # never touched, unlike a filled one)
    row_of = np.empty(box.size, np.int32 if len(vox) < 2**31 else np.int64)
    row_of[vox] = np.arange(len(vox))
    kept_at = np.zeros(box.size, bool)
    for a, b in zip(bounds[:-1], bounds[1:]):
        cand = np.concatenate([np.flatnonzero(kept & dirty), np.arange(a, b)])
        while cand.size:
            dirty[cand] = False
            removed = []
            for sub in range(8):
                rows = cand[parity[cand] == sub]
                if rows.size == 0:
                    continue
                at = vox[rows]
                nbr = flat_alive[at[:, None] + offs[None, :]]
                # the 26 neighbours as the bits of a code (bit b: _OFFSETS[b]), 4 bytes a voxel
                code = np.packbits(nbr, axis=1, bitorder="little").view("<u4")[:, 0]
                # at least two neighbours (two bits set), else a curve end
                go = ((code & (code - 1)) != 0) & _TABLE(code)
                flat_alive[at[go]] = False
                kept[rows] = ~go
                kept_at[at] = ~go
                removed.append(at[go])
            gone = np.concatenate(removed) if removed else np.zeros(0, np.int64)
            if gone.size == 0:
                break
            # only a kept voxel's dirty flag is ever read (the others are tested afresh when
            # their band comes), so a removal marks its kept neighbours only
            nbr_vox = (gone[:, None] + offs[None, :]).ravel()
            dirty[row_of[nbr_vox[kept_at[nbr_vox]]]] = True
            cand = np.flatnonzero(kept & dirty)
    return alive


if __name__ == "__main__":
    print(build_table())
