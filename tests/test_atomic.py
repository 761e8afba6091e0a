"""Atomic writes leave either the old file or the whole new one, with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from vesseltree._atomic import atomic_path, write_text_atomic


def test_written_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == 0o644
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "graph.vtp"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.vtp"]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        write_text_atomic(tmp_path / "nope" / "a.txt", "x")
