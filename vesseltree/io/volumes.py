"""Volumes on disk: NIfTI, MetaImage and NRRD, read into a :class:`~vesseltree.Volume`.

Every reader returns ``Volume.data`` in (i, j, k) index order and ``Volume.affine`` mapping a voxel
index to world millimetres in the **RAS** frame that NIfTI and nibabel use, whatever frame the file
stores:

* NIfTI (``.nii``, ``.nii.gz``) goes through nibabel; the affine is exactly ``image.affine``.
* MetaImage (``.mha``, ``.mhd`` + ``.raw``/``.zraw``) and NRRD (``.nrrd``, ``.nhdr`` + data file)
  are parsed here. Their world frame is LPS (ITK's), unless a NRRD ``space`` field says otherwise,
  so the first two rows of the LPS affine are negated: world (x, y, z) in LPS is (-x, -y, z) in RAS.

Only NIfTI is written (:func:`write_volume`), atomically.

MetaImage geometry, following ITK's ``MetaImageIO``: the nine numbers of ``TransformMatrix`` are
listed axis by axis, so numbers ``3a .. 3a + 2`` are the world direction of voxel axis ``a``; read
in Fortran (column-major) order they form the direction matrix whose columns are the directions of
the i, j, k axes. The voxel -> world (LPS) map is ``x = Offset + D @ diag(ElementSpacing) @ ijk``.
The data are stored with i varying fastest. ``AnatomicalOrientation`` is informational only (ITK
ignores it for geometry, and so do we); it is kept in ``meta["header"]``.

NRRD geometry: each ``space directions`` vector is the world step of one axis (the first vector
belongs to the first, fastest-varying axis), ``space origin`` is the world position of voxel
(0, 0, 0).
"""

from __future__ import annotations

import bz2
import logging
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..errors import FileFormatError, InvalidInputError, describe
from ..volume import Volume

__all__ = ["VOLUME_SUFFIXES", "read_volume", "write_volume"]

log = logging.getLogger(__name__)

#: Suffixes :func:`read_volume` understands (lower case; ``.nii.gz`` is one suffix).
VOLUME_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
_WRITE_SUFFIXES = (".nii", ".nii.gz")

# world LPS -> world RAS (and back: it is its own inverse)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# a header longer than this is not a header: the file is binary garbage or not a volume
_MAX_HEADER_BYTES = 1 << 20


def _fail(path: Path, what: str) -> FileFormatError:
    return FileFormatError(f"cannot read volume {str(path)!r}: {what}")


def _volume_suffix(path: Path, allowed: tuple[str, ...] = VOLUME_SUFFIXES) -> str | None:
    name = path.name.lower()
    for suffix in sorted(allowed, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return None


def _as_path(path, name: str = "path") -> Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise InvalidInputError(
        f"{name} must be a file path (str or os.PathLike), got {describe(path)}"
    )


# ----------------------------------------------------------------------------------- public API
def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D volume with its voxel -> world (RAS, mm) affine.

    Parameters
    ----------
    path : str or os.PathLike
        A NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``) or NRRD (``.nrrd``,
        ``.nhdr``) file. The format follows the suffix (case-insensitive).

    Returns
    -------
    Volume
        ``data`` : (I, J, K) ndarray in (i, j, k) index order, in the file's element type (native
        byte order); ``affine`` : (4, 4) voxel -> world mm, RAS; ``meta`` holds ``source`` (the
        path), ``format`` (``"nifti"``, ``"metaimage"`` or ``"nrrd"``) and, for MetaImage and NRRD,
        the raw ``header`` fields as strings.

    Raises
    ------
    FileFormatError
        Unknown suffix, missing file, or a file that is corrupt, truncated, too long, not 3D, or
        whose header has a bad field (non-numeric or zero spacing, singular direction matrix, ...).
        The message names the file and what is wrong.

    Examples
    --------
    >>> vol = read_volume("labels-002.nii.gz")  # doctest: +SKIP
    >>> vol.world_to_voxel([[-100.0, -120.0, 40.0]])  # doctest: +SKIP
    """
    p = _as_path(path)
    suffix = _volume_suffix(p)
    if suffix is None:
        raise FileFormatError(
            f"cannot read volume {str(p)!r}: unknown suffix; expected one of {', '.join(VOLUME_SUFFIXES)}"
        )
    if not p.is_file():
        raise FileFormatError(f"cannot read volume {str(p)!r}: no such file")
    if suffix in (".nii", ".nii.gz"):
        data, affine, meta = _read_nifti(p)
    elif suffix in (".mha", ".mhd"):
        data, affine, meta = _read_metaimage(p)
    else:
        data, affine, meta = _read_nrrd(p)
    meta = {"source": str(p), "format": meta.pop("format"), **meta}
    try:
        return Volume(data, affine, meta=meta)
    except InvalidInputError as exc:
        raise _fail(p, str(exc)) from exc


def write_volume(volume: Volume, path: str | os.PathLike) -> None:
    """Write ``volume`` as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically.

    The affine is stored in both the sform and the qform (code 1, scanner); nibabel reads it back as
    ``image.affine`` (from the sform, so a sheared affine survives). Boolean data are stored as
    uint8, 64-bit integers as int32 where the values fit, float16 as float32.

    Parameters
    ----------
    volume : Volume
        The volume to write.
    path : str or os.PathLike
        Target file; the suffix must be ``.nii`` or ``.nii.gz``. Its folder must exist. The file
        appears complete or not at all (written beside it, then renamed over it).

    Raises
    ------
    InvalidInputError
        ``volume`` is not a :class:`~vesseltree.Volume`.
    FileFormatError
        The suffix is not a NIfTI suffix, or the data type cannot be stored.
    """
    import nibabel as nib

    if not isinstance(volume, Volume):
        raise InvalidInputError(
            f"volume must be a vesseltree.Volume, got {describe(volume)}; "
            "wrap an array with Volume(data, affine)"
        )
    p = _as_path(path)
    if _volume_suffix(p, _WRITE_SUFFIXES) is None:
        raise FileFormatError(
            f"cannot write volume {str(p)!r}: write_volume writes NIfTI only, "
            f"so the suffix must be .nii or .nii.gz"
        )
    data = np.asarray(volume.data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype.kind in "iu" and data.dtype.itemsize == 8:
        small = np.int32 if data.dtype.kind == "i" else np.uint32
        info = np.iinfo(small)
        if data.size == 0 or (data.min() >= info.min and data.max() <= info.max):
            data = data.astype(small)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    affine = np.asarray(volume.affine, dtype=np.float64)
    try:
        image = nib.Nifti1Image(data, affine, dtype=data.dtype)
    except Exception as exc:  # nibabel refuses some dtypes (complex, 64-bit out of range)
        raise FileFormatError(f"cannot write volume {str(p)!r}: {exc}") from exc
    image.header.set_xyzt_units("mm")
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)  # nearest rigid + zoom form; the sform keeps shear exactly
    with atomic_path(p) as tmp:
        nib.save(image, str(tmp))
    log.debug("wrote %s volume %s to %s", data.dtype, data.shape, p)


# ----------------------------------------------------------------------------------- NIfTI
def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    errors = (ImageFileError, OSError, EOFError, ValueError, zlib.error)
    try:
        image = nib.load(str(path), mmap=False)
        data = np.asanyarray(image.dataobj)
        affine = np.asarray(image.affine, dtype=np.float64)
    except errors as exc:
        raise _fail(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise _fail(path, f"the image is {data.ndim}D with shape {data.shape}; volumes must be 3D")
    header = image.header
    meta: dict[str, Any] = {"format": "nifti"}
    for code in ("sform_code", "qform_code"):
        if code in header:
            meta[code] = int(header[code])
    return data, affine, meta


# ----------------------------------------------------------------------------------- helpers
def _floats(path: Path, key: str, value: str, count: int) -> np.ndarray:
    try:
        out = np.array([float(v) for v in value.replace(",", " ").split()], dtype=np.float64)
    except ValueError:
        raise _fail(path, f"{key} must be {count} numbers, got {value!r}") from None
    if out.size != count:
        raise _fail(path, f"{key} must be {count} numbers, got {out.size} in {value!r}")
    if not np.all(np.isfinite(out)):
        raise _fail(path, f"{key} must be finite, got {value!r}")
    return out


def _ints(path: Path, key: str, value: str, count: int) -> list[int]:
    try:
        out = [int(v) for v in value.split()]
    except ValueError:
        raise _fail(path, f"{key} must be {count} integers, got {value!r}") from None
    if len(out) != count:
        raise _fail(path, f"{key} must be {count} integers, got {len(out)} in {value!r}")
    return out


def _check_geometry(path: Path, linear: np.ndarray, what: str) -> None:
    """``linear`` (3, 3): columns are the world steps of the i, j, k axes."""
    steps = np.linalg.norm(linear, axis=0)
    if np.any(steps == 0):
        raise _fail(path, f"{what} gives a zero voxel size along axis {int(np.argmin(steps))}")
    det = float(np.linalg.det(linear / steps))
    if abs(det) < 1e-6:
        raise _fail(
            path, f"{what} is singular (determinant {det:.3g}): the voxel axes must span 3D"
        )


def _decode(
    path: Path, raw: bytes, dtype: np.dtype, shape_fastest_first: Sequence[int], what: str
) -> np.ndarray:
    """Binary buffer (first axis fastest) -> (i, j, k) array in native byte order."""
    n = int(np.prod(shape_fastest_first))
    want = n * dtype.itemsize
    if len(raw) != want:
        dims = "x".join(str(s) for s in shape_fastest_first)
        kind = "truncated" if len(raw) < want else "longer than the header says"
        raise _fail(
            path,
            f"{what} are {kind}: {dims} voxels of {dtype.itemsize}-byte {dtype.name} need {want} bytes, "
            f"found {len(raw)}",
        )
    arr = np.frombuffer(raw, dtype=dtype, count=n)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    nx, ny, nz = shape_fastest_first
    return arr.reshape(nz, ny, nx).transpose(2, 1, 0)


def _decode_text(
    path: Path, text: bytes, dtype: np.dtype, shape_fastest_first: Sequence[int]
) -> np.ndarray:
    try:
        values = np.array(text.decode("ascii").replace(",", " ").split(), dtype=np.float64)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(path, f"ASCII data hold a non-numeric value ({exc})") from None
    n = int(np.prod(shape_fastest_first))
    if values.size != n:
        raise _fail(path, f"ASCII data hold {values.size} values, but the header says {n}")
    nx, ny, nz = shape_fastest_first
    return values.astype(dtype.newbyteorder("=")).reshape(nz, ny, nx).transpose(2, 1, 0)


def _inflate(path: Path, raw: bytes, what: str) -> bytes:
    """zlib or gzip stream (header auto-detected) -> bytes."""
    inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw) + inflater.flush()
    except zlib.error as exc:
        raise _fail(path, f"{what} are not valid zlib/gzip data ({exc})") from None
    if not inflater.eof:
        raise _fail(path, f"{what} end before the compressed stream does (truncated file)")
    return out


def _read_header_lines(path: Path, *, last_key: str | None = None) -> tuple[list[str], int]:
    """Text lines of the header at the start of ``path`` and the byte offset just after it.

    The header ends after the ``last_key = ...`` line (MetaImage: ``ElementDataFile``), or, where
    ``last_key`` is None, at the first blank line (NRRD), which is not returned. At the end of the
    file, everything read is returned.
    """
    lines: list[str] = []
    offset = 0
    with open(path, "rb") as f:
        while True:
            raw = f.readline(_MAX_HEADER_BYTES)
            if not raw:
                return lines, offset
            offset += len(raw)
            if offset > _MAX_HEADER_BYTES:
                raise _fail(path, "no end of header within the first 1 MiB: not a header file")
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise _fail(path, f"header line {len(lines) + 1} is not text") from None
            if last_key is None and not line.strip():
                return lines, offset
            lines.append(line)
            if last_key is not None and line.split("=", 1)[0].strip().lower() == last_key:
                return lines, offset


def _names_several_files(source: str) -> bool:
    # MetaImage "LIST" / NRRD "LIST", or a printf pattern "slice%03d.raw 1 10 1"
    return source.upper().startswith("LIST") or "%" in source


# ----------------------------------------------------------------------------------- MetaImage
_MET_TYPES = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_LONG": "i4",  # MetaIO's LONG is 4 bytes on every platform
    "MET_ULONG": "u4",
    "MET_LONG_LONG": "i8",
    "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}


def _met_bool(path: Path, key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise _fail(path, f"{key} must be True or False, got {value!r}")


def _read_metaimage(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    lines, data_offset = _read_header_lines(path, last_key="elementdatafile")
    header: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if "=" not in line:
            raise _fail(path, f"header line {number} is not 'Key = Value': {line[:60]!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        header[key] = value
    fields = {k.lower(): v for k, v in header.items()}
    if "elementdatafile" not in fields:
        raise _fail(
            path, "the header has no ElementDataFile field (a MetaImage header ends with it)"
        )

    def get(*keys: str) -> tuple[str, str] | None:
        for key in keys:
            if key.lower() in fields:
                return key, fields[key.lower()]
        return None

    if "objecttype" in fields and fields["objecttype"].lower() != "image":
        raise _fail(path, f"ObjectType must be Image, got {fields['objecttype']!r}")
    if "dimsize" not in fields:
        raise _fail(path, "the header has no DimSize field")
    ndims = len(fields["dimsize"].split())
    if "ndims" in fields:
        ndims = _ints(path, "NDims", fields["ndims"], 1)[0]
    if ndims != 3:
        raise _fail(path, f"NDims must be 3, got {ndims}; vesseltree volumes are 3D")
    dims = _ints(path, "DimSize", fields["dimsize"], 3)
    if min(dims) < 1:
        raise _fail(path, f"DimSize must be positive, got {fields['dimsize']!r}")
    channels = _ints(
        path, "ElementNumberOfChannels", fields.get("elementnumberofchannels", "1"), 1
    )[0]
    if channels != 1:
        raise _fail(
            path, f"ElementNumberOfChannels must be 1, got {channels}; only scalar images are read"
        )
    etype = fields.get("elementtype", "").upper()
    if etype not in _MET_TYPES:
        raise _fail(
            path, f"ElementType must be one of {', '.join(_MET_TYPES)}, got {etype or 'nothing'!r}"
        )

    found = get("ElementSpacing", "ElementSize")
    spacing = np.ones(3)
    if found is not None:
        spacing = _floats(path, found[0], found[1], 3)
        if np.any(spacing <= 0):
            raise _fail(path, f"{found[0]} must be positive (mm), got {found[1]!r}")
    found = get("Offset", "Position", "Origin")
    offset = np.zeros(3) if found is None else _floats(path, found[0], found[1], 3)
    found = get("TransformMatrix", "Rotation", "Orientation")
    if found is None:
        direction = np.eye(3)
    else:
        # listed axis by axis: numbers 3a..3a+2 are the direction of axis a (ITK MetaImageIO)
        direction = _floats(path, found[0], found[1], 9).reshape(3, 3, order="F")
    linear = direction * spacing[None, :]
    _check_geometry(path, linear, found[0] if found else "ElementSpacing")

    msb_found = get("BinaryDataByteOrderMSB", "ElementByteOrderMSB")
    msb = False if msb_found is None else _met_bool(path, *msb_found)
    binary = _met_bool(path, "BinaryData", fields.get("binarydata", "True"))
    compressed = _met_bool(path, "CompressedData", fields.get("compresseddata", "False"))
    dtype = np.dtype(_MET_TYPES[etype]).newbyteorder(">" if msb else "<")

    source = fields["elementdatafile"]
    if source.upper() == "LOCAL":
        with open(path, "rb") as f:
            f.seek(data_offset)
            raw = f.read()
        data_path = path
    else:
        if _names_several_files(source):
            raise _fail(
                path,
                f"ElementDataFile {source!r} names several files; only one data file is supported",
            )
        data_path = path.parent / source
        if not data_path.is_file():
            raise _fail(path, f"its ElementDataFile {str(data_path)!r} does not exist")
        raw = data_path.read_bytes()
        skip = _ints(path, "HeaderSize", fields.get("headersize", "0"), 1)[0]
        if skip == -1 and not compressed:
            raw = raw[max(len(raw) - int(np.prod(dims)) * dtype.itemsize, 0) :]
        elif skip > 0:
            raw = raw[skip:]
    what = "data" if data_path == path else f"data in {data_path.name!r}"
    if compressed:
        if "compresseddatasize" in fields:
            size = _ints(path, "CompressedDataSize", fields["compresseddatasize"], 1)[0]
            if len(raw) < size:
                raise _fail(
                    path,
                    f"{what} are truncated: CompressedDataSize is {size}, found {len(raw)} bytes",
                )
            raw = raw[:size]
        raw = _inflate(path, raw, f"compressed {what}")
    if binary:
        data = _decode(path, raw, dtype, tuple(dims), what)
    else:
        data = _decode_text(path, raw, dtype, tuple(dims))

    lps = np.eye(4)
    lps[:3, :3] = linear
    lps[:3, 3] = offset
    return data, _LPS_TO_RAS @ lps, {"format": "metaimage", "header": header}


# ----------------------------------------------------------------------------------- NRRD
_NRRD_TYPES = {
    "i1": ("signed char", "int8", "int8_t"),
    "u1": ("uchar", "unsigned char", "uint8", "uint8_t"),
    "i2": ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
    "u2": ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    "i4": ("int", "signed int", "int32", "int32_t"),
    "u4": ("uint", "unsigned int", "uint32", "uint32_t"),
    "i8": (
        "longlong",
        "long long",
        "long long int",
        "signed long long",
        "signed long long int",
        "int64",
        "int64_t",
    ),
    "u8": ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
    "f4": ("float",),
    "f8": ("double",),
}
_NRRD_TYPE_OF = {name: code for code, names in _NRRD_TYPES.items() for name in names}

# sign of each world axis of a NRRD space relative to RAS
_NRRD_SPACES = {
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
    "las": (-1.0, 1.0, 1.0),
}

_VECTOR = re.compile(r"\(([^()]*)\)")


def _nrrd_vectors(path: Path, key: str, value: str, count: int) -> np.ndarray:
    if "none" in value.lower().split():
        raise _fail(
            path, f"{key} marks a non-spatial axis ({value!r}); only 3D spatial volumes are read"
        )
    found = _VECTOR.findall(value)
    if len(found) != count:
        raise _fail(path, f"{key} must hold {count} vectors like (x,y,z), got {value!r}")
    return np.stack([_floats(path, key, v, 3) for v in found])


def _read_nrrd(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    lines, data_offset = _read_header_lines(path)
    if not lines or not lines[0].startswith("NRRD"):
        raise _fail(path, "it does not start with the NRRD magic line 'NRRD000X'")
    fields: dict[str, str] = {}
    keyvalues: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if line.startswith("#"):
            continue
        if ":=" in line:
            key, value = line.split(":=", 1)
            keyvalues[key] = value
            continue
        if ": " not in line:
            raise _fail(path, f"header line {number} is not 'field: value': {line[:60]!r}")
        key, value = line.split(": ", 1)
        fields[key.strip().lower().replace(" ", "")] = value.strip()
    header = {**fields, **{f"{k}:=": v for k, v in keyvalues.items()}}

    for required in ("type", "dimension", "sizes", "encoding"):
        if required not in fields:
            raise _fail(path, f"the header has no {required!r} field")
    dim = _ints(path, "dimension", fields["dimension"], 1)[0]
    if dim != 3:
        raise _fail(path, f"dimension must be 3, got {dim}; vesseltree volumes are 3D")
    sizes = _ints(path, "sizes", fields["sizes"], 3)
    if min(sizes) < 1:
        raise _fail(path, f"sizes must be positive, got {fields['sizes']!r}")
    code = _NRRD_TYPE_OF.get(fields["type"].lower())
    if code is None:
        raise _fail(path, f"type {fields['type']!r} is not a supported scalar type")
    dtype = np.dtype(code)
    encoding = fields["encoding"].lower()
    if encoding not in ("raw", "gzip", "gz", "bzip2", "bz2", "ascii", "text", "txt"):
        raise _fail(
            path, f"encoding {fields['encoding']!r} is not supported (raw, gzip, bzip2, ascii)"
        )
    if dtype.itemsize > 1 and encoding not in ("ascii", "text", "txt"):
        endian = fields.get("endian", "").lower()
        if endian not in ("little", "big"):
            raise _fail(
                path,
                f"endian must be 'little' or 'big' for {fields['type']!r} data, got {endian or 'nothing'!r}",
            )
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")

    # geometry
    space = fields.get("space", "").lower()
    if space and space not in _NRRD_SPACES:
        raise _fail(
            path,
            f"space {fields['space']!r} is not an anatomical frame vesseltree can map to RAS (RAS, LPS, LAS)",
        )
    if space and fields.get("spacedimension", "3") != "3":
        raise _fail(path, f"space dimension must be 3, got {fields['spacedimension']!r}")
    units = fields.get("spaceunits", "").replace('"', " ").split()
    if any(u.lower() not in ("mm", "millimeter", "millimeters") for u in units):
        raise _fail(path, f"space units must be mm, got {fields['spaceunits']!r}")
    if "spacedirections" in fields:
        linear = _nrrd_vectors(path, "space directions", fields["spacedirections"], 3).T
        what = "space directions"
    elif "spacings" in fields:
        spacing = _floats(path, "spacings", fields["spacings"], 3)
        linear = np.diag(spacing)
        what = "spacings"
    else:
        linear, what = np.eye(3), "identity"
    if "spacings" in fields and "spacedirections" not in fields and np.any(np.diag(linear) <= 0):
        raise _fail(path, f"spacings must be positive (mm), got {fields['spacings']!r}")
    _check_geometry(path, linear, what)
    origin = np.zeros(3)
    if "spaceorigin" in fields:
        origin = _nrrd_vectors(path, "space origin", fields["spaceorigin"], 1)[0]
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = origin
    if space:
        affine = np.diag([*_NRRD_SPACES[space], 1.0]) @ affine
    else:
        log.debug("%s has no 'space' field: its world frame is taken as RAS", path)

    # data
    source = fields.get("datafile")
    if source is None:
        if path.suffix.lower() == ".nhdr":
            raise _fail(path, "a detached header (.nhdr) needs a 'data file' field")
        with open(path, "rb") as f:
            f.seek(data_offset)
            raw = f.read()
        data_path = path
    else:
        if _names_several_files(source):
            raise _fail(
                path, f"data file {source!r} names several files; only one data file is supported"
            )
        data_path = path.parent / source
        if not data_path.is_file():
            raise _fail(path, f"its data file {str(data_path)!r} does not exist")
        raw = data_path.read_bytes()
    line_skip = _ints(path, "line skip", fields.get("lineskip", "0"), 1)[0]
    for _ in range(max(line_skip, 0)):
        cut = raw.find(b"\n")
        raw = b"" if cut < 0 else raw[cut + 1 :]
    what_data = "data" if data_path == path else f"data in {data_path.name!r}"
    if encoding in ("gzip", "gz"):
        raw = _inflate(path, raw, f"gzip {what_data}")
    elif encoding in ("bzip2", "bz2"):
        try:
            raw = bz2.decompress(raw)
        except (OSError, ValueError, EOFError) as exc:
            raise _fail(path, f"bzip2 {what_data} are corrupt ({exc})") from None
    n_bytes = int(np.prod(sizes)) * dtype.itemsize
    byte_skip = _ints(path, "byte skip", fields.get("byteskip", "0"), 1)[0]
    if byte_skip == -1 and encoding == "raw":
        raw = raw[max(len(raw) - n_bytes, 0) :]
    elif byte_skip > 0:
        raw = raw[byte_skip:]
    if encoding in ("ascii", "text", "txt"):
        data = _decode_text(path, raw, dtype, tuple(sizes))
    else:
        data = _decode(path, raw, dtype, tuple(sizes), what_data)
    return data, affine, {"format": "nrrd", "header": header}
