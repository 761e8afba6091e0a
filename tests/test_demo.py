"""The main job on the bundled sample: every stage runs and meets its bar against the exact truth."""

from __future__ import annotations

import re

import pytest

from vesseltree.demo import SAMPLE_DIR, run_demo
from vesseltree.errors import FileFormatError


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    report = run_demo(out, echo=lines.append)
    return out, report, lines


def test_bundled_sample_is_in_the_repository():
    for name in ("image.nii.gz", "mask.nii.gz", "truth.npz"):
        assert (SAMPLE_DIR / name).is_file(), name


def test_demo_writes_every_file_it_lists(demo_out):
    out, report, _ = demo_out
    assert report.files
    for p in report.files:
        assert p.is_file() and p.stat().st_size > 0, p
    names = {p.name for p in report.files}
    assert {"centerline.vtp", "centerline.swc", "vessels.stl", "summary.md"} <= names


def test_demo_extraction_matches_truth(demo_out):
    _, report, _ = demo_out
    text = dict((name, t) for name, _, t in report.rows)["extract"]
    f1 = float(re.search(r"F1@1mm ([0-9.]+)", text).group(1))
    bias = float(re.search(r"radius bias ([-+0-9.]+)", text).group(1))
    assert f1 >= 0.97
    assert abs(bias) <= 0.1


def test_demo_stl_is_printable(demo_out):
    _, report, _ = demo_out
    text = dict((name, t) for name, _, t in report.rows)["mesh"]
    assert "printable: yes" in text, text


def test_demo_on_a_folder_without_sample_says_what_is_missing(tmp_path):
    with pytest.raises(FileFormatError, match="image.nii.gz"):
        run_demo(tmp_path / "out", sample=tmp_path)


def test_demo_deformcl_finds_the_tree_in_the_raw_image(demo_out):
    _, report, _ = demo_out
    text = dict((name, t) for name, _, t in report.rows)["deformcl"]
    f1 = float(re.search(r"F1@1mm ([0-9.]+)", text).group(1))
    assert f1 >= 0.85, text
