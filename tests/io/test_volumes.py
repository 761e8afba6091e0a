"""Volume I/O: NIfTI round trips, hand-written MetaImage and NRRD files, bad input.

Every MetaImage/NRRD file here is written byte by byte in the test, voxel values are
``v(i, j, k) = i + 10 j + 100 k`` written with i varying fastest, and the expected RAS affine is
written out by hand, so the readers are checked against the format definitions rather than
against themselves.
"""

from __future__ import annotations

import bz2
import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest

from vesseltree import Volume
from vesseltree.errors import FileFormatError, InvalidInputError
from vesseltree.io.volumes import VOLUME_SUFFIXES, read_volume, write_volume

NX, NY, NZ = 2, 3, 4  # i, j, k sizes of every hand-written file


def values_fastest_i(dtype: str) -> bytes:
    """v(i, j, k) = i + 10 j + 100 k, i fastest, then j, then k, as raw bytes of ``dtype``."""
    out = []
    for k in range(NZ):
        for j in range(NY):
            for i in range(NX):
                out.append(i + 10 * j + 100 * k)
    return np.array(out, dtype=np.int64).astype(dtype).tobytes()  # int8 wraps around


def expected_values() -> np.ndarray:
    i, j, k = np.meshgrid(np.arange(NX), np.arange(NY), np.arange(NZ), indexing="ij")
    return i + 10 * j + 100 * k


# Direction cosines in LPS (world): axis i -> +y, axis j -> -x, axis k -> +z; spacing (0.5, 2, 3);
# voxel (0, 0, 0) at LPS (10, -20, 30). MetaImage lists the directions axis by axis.
MHA_GEOMETRY = (
    "TransformMatrix = 0 1 0 -1 0 0 0 0 1",
    "Offset = 10 -20 30",
    "ElementSpacing = 0.5 2 3",
)
# The same geometry by hand in RAS: negate world x and y of every column and of the origin.
#   column i: LPS (0, 0.5, 0) -> RAS (0, -0.5, 0)
#   column j: LPS (-2, 0, 0)  -> RAS (2, 0, 0)
#   column k: LPS (0, 0, 3)   -> RAS (0, 0, 3)
#   origin:   LPS (10, -20, 30) -> RAS (-10, 20, 30)
EXPECTED_RAS = np.array(
    [
        [0.0, 2.0, 0.0, -10.0],
        [-0.5, 0.0, 0.0, 20.0],
        [0.0, 0.0, 3.0, 30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def mha_header(
    *extra: str, etype: str = "MET_SHORT", datafile: str = "LOCAL", dims: str = "2 3 4"
) -> bytes:
    lines = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        *MHA_GEOMETRY,
        f"DimSize = {dims}",
        f"ElementType = {etype}",
        *extra,
        f"ElementDataFile = {datafile}",
    ]
    return ("\n".join(lines) + "\n").encode()


def write_mha(
    path: Path, *extra: str, etype="MET_SHORT", payload: bytes | None = None, **kw
) -> Path:
    data = values_fastest_i("<i2") if payload is None else payload
    path.write_bytes(mha_header(*extra, etype=etype, **kw) + data)
    return path


def general_affine() -> np.ndarray:
    """Rotation + anisotropic scale + shear + offset."""
    a, b = 0.3, -0.7
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    shear = np.array([[1, 0.2, 0.0], [0, 1, -0.15], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ shear @ np.diag([0.45, 0.8, 1.7])
    aff[:3, 3] = [-12.5, 40.25, 7.0]
    return aff


# ---------------------------------------------------------------------- NIfTI
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".NII.GZ"])
@pytest.mark.parametrize("dtype", ["float32", "int16", "uint8", "float64"])
def test_nifti_round_trip_general_affine(tmp_path, rng, suffix, dtype):
    data = (rng.random((5, 4, 3)) * 100).astype(dtype)
    vol = Volume(data, general_affine())
    path = tmp_path / f"vol{suffix}"
    write_volume(vol, path)
    back = read_volume(path)
    assert back.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.data, data)
    # the sform holds float32: equal to float32 precision
    np.testing.assert_allclose(back.affine, general_affine(), rtol=0, atol=1e-5)
    assert back.meta["format"] == "nifti"
    assert back.meta["source"] == str(path)
    assert back.meta["sform_code"] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_nifti_bool_and_int64_are_stored_compactly(tmp_path):
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    write_volume(Volume(mask), tmp_path / "m.nii.gz")
    back = read_volume(tmp_path / "m.nii.gz")
    assert back.data.dtype == np.uint8
    np.testing.assert_array_equal(back.data, mask)
    labels = np.arange(27, dtype=np.int64).reshape(3, 3, 3)
    write_volume(Volume(labels), tmp_path / "l.nii")
    back = read_volume(tmp_path / "l.nii")
    assert back.data.dtype == np.int32
    np.testing.assert_array_equal(back.data, labels)


def test_nifti_nan_is_allowed(tmp_path):
    data = np.ones((2, 2, 2), np.float32)
    data[0, 1, 0] = np.nan
    write_volume(Volume(data), tmp_path / "n.nii")
    back = read_volume(tmp_path / "n.nii")
    assert np.isnan(back.data[0, 1, 0]) and np.nansum(back.data) == 7


def test_nifti_4d_with_one_volume_is_squeezed_and_4d_is_refused(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 1), np.float32), np.eye(4)), tmp_path / "one.nii")
    assert read_volume(tmp_path / "one.nii").shape == (2, 3, 4)
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 2), np.float32), np.eye(4)), tmp_path / "two.nii")
    with pytest.raises(FileFormatError, match=r"two\.nii.*4D"):
        read_volume(tmp_path / "two.nii")


def test_write_refuses_other_suffixes_and_non_volumes(tmp_path):
    vol = Volume(np.zeros((2, 2, 2)))
    with pytest.raises(FileFormatError, match=r"out\.mha.*NIfTI only"):
        write_volume(vol, tmp_path / "out.mha")
    with pytest.raises(InvalidInputError, match="volume must be a vesseltree.Volume"):
        write_volume(np.zeros((2, 2, 2)), tmp_path / "out.nii")
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    import nibabel as nib

    path = tmp_path / "keep.nii.gz"
    write_volume(Volume(np.ones((2, 2, 2), np.float32)), path)
    before = path.read_bytes()

    def broken_save(image, filename):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_volume(Volume(np.zeros((2, 2, 2), np.float32)), path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


# ---------------------------------------------------------------------- MetaImage
def test_mha_local_lps_directions(tmp_path):
    vol = read_volume(write_mha(tmp_path / "a.mha"))
    assert vol.shape == (NX, NY, NZ)
    assert vol.data.dtype == np.int16
    np.testing.assert_array_equal(vol.data, expected_values())
    np.testing.assert_array_equal(vol.affine, EXPECTED_RAS)
    # voxel (1, 0, 0) is at LPS offset + 0.5 * (0, 1, 0) = (10, -19.5, 30), i.e. RAS (-10, 19.5, 30)
    np.testing.assert_allclose(vol.voxel_to_world([1, 0, 0]), [-10.0, 19.5, 30.0])
    assert vol.meta["format"] == "metaimage"
    assert vol.meta["header"]["ElementType"] == "MET_SHORT"


def test_mhd_raw_big_endian(tmp_path):
    (tmp_path / "b.raw").write_bytes(values_fastest_i(">u2"))
    (tmp_path / "b.mhd").write_bytes(
        mha_header("BinaryDataByteOrderMSB = True", etype="MET_USHORT", datafile="b.raw")
    )
    vol = read_volume(tmp_path / "b.mhd")
    assert vol.data.dtype == np.uint16 and vol.data.dtype.isnative
    np.testing.assert_array_equal(vol.data, expected_values())
    np.testing.assert_array_equal(vol.affine, EXPECTED_RAS)


def test_mhd_zraw_compressed(tmp_path):
    packed = zlib.compress(values_fastest_i("<f8"))
    (tmp_path / "c.zraw").write_bytes(packed)
    (tmp_path / "c.mhd").write_bytes(
        mha_header(
            "CompressedData = True",
            f"CompressedDataSize = {len(packed)}",
            etype="MET_DOUBLE",
            datafile="c.zraw",
        )
    )
    vol = read_volume(tmp_path / "c.mhd")
    assert vol.data.dtype == np.float64
    np.testing.assert_array_equal(vol.data, expected_values())
    np.testing.assert_array_equal(vol.affine, EXPECTED_RAS)


def test_mha_compressed_local(tmp_path):
    path = write_mha(
        tmp_path / "d.mha",
        "CompressedData = True",
        etype="MET_FLOAT",
        payload=zlib.compress(values_fastest_i("<f4")),
    )
    np.testing.assert_array_equal(read_volume(path).data, expected_values())


@pytest.mark.parametrize(
    ("etype", "dtype"),
    [
        ("MET_CHAR", "i1"),
        ("MET_UCHAR", "u1"),
        ("MET_SHORT", "i2"),
        ("MET_USHORT", "u2"),
        ("MET_INT", "i4"),
        ("MET_UINT", "u4"),
        ("MET_LONG", "i4"),
        ("MET_LONG_LONG", "i8"),
        ("MET_FLOAT", "f4"),
        ("MET_DOUBLE", "f8"),
    ],
)
def test_mha_element_types(tmp_path, etype, dtype):
    vol = read_volume(
        write_mha(tmp_path / "t.mha", etype=etype, payload=values_fastest_i(f"<{dtype}"))
    )
    assert vol.data.dtype == np.dtype(dtype)
    # MET_CHAR cannot hold 321: compare through the same wrap-around
    np.testing.assert_array_equal(vol.data, expected_values().astype(dtype))


def test_mha_defaults_and_synonyms(tmp_path):
    """No TransformMatrix -> identity direction; Position/Orientation are synonyms."""
    path = tmp_path / "e.mha"
    header = (
        b"NDims = 3\nDimSize = 2 3 4\nElementType = MET_SHORT\nElementSpacing = 1 1 2\n"
        b"Position = 1 2 3\nElementDataFile = LOCAL\n"
    )
    path.write_bytes(header + values_fastest_i("<i2"))
    vol = read_volume(path)
    np.testing.assert_array_equal(
        vol.affine, [[-1, 0, 0, -1], [0, -1, 0, -2], [0, 0, 2, 3], [0, 0, 0, 1]]
    )
    path.write_bytes(
        header.replace(b"Position = 1 2 3", b"Orientation = 0 1 0 1 0 0 0 0 1")
        + values_fastest_i("<i2")
    )
    # axis i -> LPS +y, axis j -> LPS +x: RAS columns i = (0, -1, 0), j = (-1, 0, 0)
    np.testing.assert_array_equal(
        read_volume(path).affine, [[0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]
    )


def test_mha_nan_is_allowed(tmp_path):
    payload = bytearray(values_fastest_i("<f4"))
    payload[4:8] = np.array([np.nan], "<f4").tobytes()  # voxel (1, 0, 0)
    vol = read_volume(write_mha(tmp_path / "nan.mha", etype="MET_FLOAT", payload=bytes(payload)))
    assert np.isnan(vol.data[1, 0, 0]) and np.isnan(vol.data).sum() == 1


def test_mha_ascii_data(tmp_path):
    text = " ".join(str(v) for v in np.frombuffer(values_fastest_i("<i2"), "<i2")).encode()
    path = tmp_path / "ascii.mha"
    path.write_bytes(mha_header().replace(b"BinaryData = True", b"BinaryData = False") + text)
    np.testing.assert_array_equal(read_volume(path).data, expected_values())


def test_mhd_header_size_skips_a_preamble(tmp_path):
    (tmp_path / "h.raw").write_bytes(b"16 junk bytes..." + values_fastest_i("<i2"))
    (tmp_path / "h.mhd").write_bytes(mha_header("HeaderSize = 16", datafile="h.raw"))
    np.testing.assert_array_equal(read_volume(tmp_path / "h.mhd").data, expected_values())
    # -1: the data are the last bytes of the file
    (tmp_path / "h.mhd").write_bytes(mha_header("HeaderSize = -1", datafile="h.raw"))
    np.testing.assert_array_equal(read_volume(tmp_path / "h.mhd").data, expected_values())


def test_mhd_several_data_files_are_refused(tmp_path):
    (tmp_path / "s.mhd").write_bytes(mha_header(datafile="slice%03d.raw 1 4 1"))
    with pytest.raises(FileFormatError, match=r"s\.mhd.*names several files"):
        read_volume(tmp_path / "s.mhd")


# ---------------------------------------------------------------------- NRRD
# LPS geometry of the NRRD files: axis i -> (0, 0.5, 0), axis j -> (-2, 0, 0), axis k -> (0, 0, 3),
# origin (10, -20, 30): the same as the MetaImage files, so EXPECTED_RAS applies.
NRRD_GEOMETRY = (
    "space: left-posterior-superior\n"
    "space directions: (0,0.5,0) (-2,0,0) (0,0,3)\n"
    "space origin: (10,-20,30)\n"
)


def nrrd_header(
    encoding: str,
    *,
    type_: str = "short",
    endian: str = "little",
    extra: str = "",
    geometry: str = NRRD_GEOMETRY,
) -> bytes:
    text = (
        "NRRD0004\n# written by hand\n"
        f"type: {type_}\ndimension: 3\nsizes: 2 3 4\n{geometry}"
        f"encoding: {encoding}\nendian: {endian}\nkinds: domain domain domain\n"
        f"my key:=my value\n{extra}"
    )
    return text.encode()


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
def test_nrrd_attached(tmp_path, encoding):
    payload = values_fastest_i("<i2")
    if encoding == "gzip":
        payload = gzip.compress(payload)
    path = tmp_path / "a.nrrd"
    path.write_bytes(nrrd_header(encoding) + b"\n" + payload)
    vol = read_volume(path)
    assert vol.data.dtype == np.int16
    np.testing.assert_array_equal(vol.data, expected_values())
    np.testing.assert_array_equal(vol.affine, EXPECTED_RAS)
    assert vol.meta["format"] == "nrrd"
    assert vol.meta["header"]["my key:="] == "my value"


@pytest.mark.parametrize(
    ("encoding", "suffix"), [("raw", ".raw"), ("gzip", ".raw.gz"), ("bzip2", ".raw.bz2")]
)
def test_nrrd_detached_big_endian(tmp_path, encoding, suffix):
    payload = values_fastest_i(">f4")
    payload = {"raw": payload, "gzip": gzip.compress(payload), "bzip2": bz2.compress(payload)}[
        encoding
    ]
    (tmp_path / f"b{suffix}").write_bytes(payload)
    (tmp_path / "b.nhdr").write_bytes(
        nrrd_header(encoding, type_="float", endian="big", extra=f"data file: b{suffix}\n")
    )
    vol = read_volume(tmp_path / "b.nhdr")
    assert vol.data.dtype == np.float32 and vol.data.dtype.isnative
    np.testing.assert_array_equal(vol.data, expected_values())
    np.testing.assert_array_equal(vol.affine, EXPECTED_RAS)


def test_nrrd_detached_line_and_byte_skip(tmp_path):
    (tmp_path / "s.raw").write_bytes(b"first line\nsecond line\nXYZ" + values_fastest_i("<i2"))
    (tmp_path / "s.nhdr").write_bytes(
        nrrd_header("raw", extra="data file: s.raw\nline skip: 2\nbyte skip: 3\n")
    )
    np.testing.assert_array_equal(read_volume(tmp_path / "s.nhdr").data, expected_values())
    (tmp_path / "s.nhdr").write_bytes(nrrd_header("raw", extra="data file: s.raw\nbyte skip: -1\n"))
    np.testing.assert_array_equal(read_volume(tmp_path / "s.nhdr").data, expected_values())


def test_nrrd_ras_space_is_kept_and_ascii_encoding(tmp_path):
    geometry = (
        "space: RAS\nspace directions: (0,0.5,0) (-2,0,0) (0,0,3)\nspace origin: (10,-20,30)\n"
    )
    text = " ".join(str(v) for v in np.frombuffer(values_fastest_i("<i2"), "<i2"))
    path = tmp_path / "r.nrrd"
    path.write_bytes(nrrd_header("ascii", geometry=geometry) + b"\n" + text.encode())
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.data, expected_values())
    # RAS directions are taken as they are
    np.testing.assert_array_equal(
        vol.affine, [[0, -2, 0, 10], [0.5, 0, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1]]
    )


def test_nrrd_uchar_needs_no_endian(tmp_path):
    path = tmp_path / "u.nrrd"
    header = nrrd_header("raw", type_="uchar").replace(b"endian: little\n", b"")
    path.write_bytes(header + b"\n" + values_fastest_i("u1"))
    np.testing.assert_array_equal(read_volume(path).data, expected_values().astype("u1"))


# ---------------------------------------------------------------------- bad input
def bad_mha(tmp_path: Path, name: str, header: bytes, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(header + payload)
    return path


GOOD = values_fastest_i("<i2")

BAD_CASES = {
    "truncated": (mha_header(), GOOD[:-2], "truncated.*need 48 bytes, found 46"),
    "too_long": (mha_header(), GOOD + b"\0\0", "longer than the header says"),
    "garbage_zlib": (
        mha_header("CompressedData = True"),
        b"definitely not zlib data",
        "not valid zlib",
    ),
    "truncated_zlib": (mha_header("CompressedData = True"), zlib.compress(GOOD)[:-6], "truncated"),
    "text_spacing": (
        mha_header().replace(b"ElementSpacing = 0.5 2 3", b"ElementSpacing = 0.5 two 3"),
        GOOD,
        "ElementSpacing must be 3 numbers",
    ),
    "zero_spacing": (
        mha_header().replace(b"ElementSpacing = 0.5 2 3", b"ElementSpacing = 0.5 0 3"),
        GOOD,
        "ElementSpacing must be positive",
    ),
    "singular": (
        mha_header().replace(b"0 1 0 -1 0 0 0 0 1", b"0 1 0 0 1 0 0 0 1"),
        GOOD,
        "singular",
    ),
    "ndims": (mha_header().replace(b"NDims = 3", b"NDims = 2"), GOOD, "NDims must be 3, got 2"),
    "channels": (
        mha_header("ElementNumberOfChannels = 3"),
        GOOD,
        "ElementNumberOfChannels must be 1",
    ),
    "element_type": (mha_header(etype="MET_STRING"), GOOD, "ElementType must be one of"),
    "no_datafile": (
        mha_header().replace(b"ElementDataFile = LOCAL\n", b""),
        b"",
        "no ElementDataFile",
    ),
    "missing_datafile": (mha_header(datafile="gone.raw"), b"", r"gone\.raw.*does not exist"),
    "bad_line": (b"NDims 3\n" + mha_header(), GOOD, "line 1 is not 'Key = Value'"),
    "bad_bool": (
        mha_header("CompressedData = maybe"),
        GOOD,
        "CompressedData must be True or False",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_metaimage(tmp_path, case):
    header, payload, message = BAD_CASES[case]
    path = bad_mha(tmp_path, f"bad_{case}.mha", header, payload)
    with pytest.raises(FileFormatError, match=message) as info:
        read_volume(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


BAD_NRRD = {
    "magic": (b"NRRX0004\n" + nrrd_header("raw")[9:] + b"\n" + GOOD, "NRRD magic"),
    "dimension": (
        nrrd_header("raw").replace(b"dimension: 3", b"dimension: 4") + b"\n" + GOOD,
        "dimension must be 3, got 4",
    ),
    "endian": (
        nrrd_header("raw").replace(b"endian: little\n", b"") + b"\n" + GOOD,
        "endian must be",
    ),
    "garbage_gzip": (
        nrrd_header("gzip") + b"\n" + b"\x1f\x8b not really gzip",
        "not valid zlib/gzip",
    ),
    "truncated": (nrrd_header("raw") + b"\n" + GOOD[:10], "truncated"),
    "encoding": (nrrd_header("hex") + b"\n" + GOOD, "encoding 'hex' is not supported"),
    "space": (
        nrrd_header("raw").replace(b"left-posterior-superior", b"scanner-xyz") + b"\n" + GOOD,
        "space 'scanner-xyz'",
    ),
    "directions": (
        nrrd_header("raw").replace(b"(-2,0,0)", b"(-2,zero,0)") + b"\n" + GOOD,
        "space directions must be 3 numbers",
    ),
    "zero_direction": (
        nrrd_header("raw").replace(b"(-2,0,0)", b"(0,0,0)") + b"\n" + GOOD,
        "zero voxel size",
    ),
    "singular": (nrrd_header("raw").replace(b"(-2,0,0)", b"(0,1,0)") + b"\n" + GOOD, "singular"),
    "no_sizes": (
        nrrd_header("raw").replace(b"sizes: 2 3 4\n", b"") + b"\n" + GOOD,
        "no 'sizes' field",
    ),
    "type": (nrrd_header("raw", type_="block") + b"\n" + GOOD, "type 'block'"),
}


@pytest.mark.parametrize("case", sorted(BAD_NRRD))
def test_bad_nrrd(tmp_path, case):
    content, message = BAD_NRRD[case]
    path = tmp_path / f"bad_{case}.nrrd"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message) as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_nhdr_without_data_file(tmp_path):
    path = tmp_path / "lonely.nhdr"
    path.write_bytes(nrrd_header("raw"))
    with pytest.raises(FileFormatError, match="lonely.nhdr.*needs a 'data file'"):
        read_volume(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(FileFormatError, match=r"a\.png.*unknown suffix"):
        read_volume(tmp_path / "a.png")
    with pytest.raises(FileFormatError, match=r"nothing\.nii\.gz.*no such file"):
        read_volume(tmp_path / "nothing.nii.gz")
    with pytest.raises(InvalidInputError, match="path must be a file path"):
        read_volume(42)
    assert ".mha" in VOLUME_SUFFIXES and ".nii.gz" in VOLUME_SUFFIXES


@pytest.mark.parametrize("name", ["garbage.nii.gz", "garbage.nii"])
def test_corrupt_nifti(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x1f\x8b\x08 this is not a NIfTI file at all" * 3)
    with pytest.raises(FileFormatError, match=name.replace(".", r"\.")):
        read_volume(path)


def test_truncated_nifti(tmp_path):
    path = tmp_path / "t.nii"
    write_volume(Volume(np.ones((8, 8, 8), np.float32)), path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(FileFormatError, match=r"t\.nii"):
        read_volume(path)
    gz = tmp_path / "t.nii.gz"
    write_volume(Volume(np.ones((8, 8, 8), np.float32)), gz)
    gz.write_bytes(gz.read_bytes()[:-20])
    with pytest.raises(FileFormatError, match=r"t\.nii\.gz"):
        read_volume(gz)


# ---------------------------------------------------------------------- real data
def test_real_aorta_header(shared_data):
    """aorta-final-levelset.mha: TransformMatrix diag(-1, -1, 1), Offset (-156.445, -24.6094, 0),
    spacing (0.878906, 0.878906, 1.50009), LPS; so RAS = diag(0.878906, 0.878906, 1.50009) with
    origin (156.445, 24.6094, 0)."""
    vol = read_volume(shared_data / "vmtk_aorta" / "aorta-final-levelset.mha")
    assert vol.shape == (157, 393, 34)
    assert vol.data.dtype == np.float32
    expected = np.array(
        [
            [0.878906, 0.0, 0.0, 156.445],
            [0.0, 0.878906, 0.0, 24.6094],
            [0.0, 0.0, 1.50009, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(vol.affine, expected, rtol=0, atol=1e-12)
    assert (vol.data < 0).sum() > 1000  # a level set with a vessel inside
