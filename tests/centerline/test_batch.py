"""extract_batch and ``vesseltree extract A B ... -o DIR``: one graph per input, failures recorded
and the batch going on, an atomic summary, resuming, processes, refused options."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest

from vesseltree import FileFormatError, InvalidInputError, Volume, synth
from vesseltree.centerline import cli as extract_cli
from vesseltree.centerline import extract
from vesseltree.centerline.batch import SUMMARY_COLUMNS, extract_batch, volume_files
from vesseltree.io import read_graph, read_volume, write_volume

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two tree masks, a label map, a corrupt file, an empty mask and a stray text file."""
    d = tmp_path_factory.mktemp("masks")
    for seed in (3, 4):
        m = synth.voxelize(synth.random_tree(seed=seed, n_branches=5), spacing=(0.6, 0.6, 0.8))
        write_volume(m.replace(data=np.asarray(m.data, np.uint8)), d / f"tree{seed}.nii.gz")
    lab = np.asarray(m.data, np.uint8) * 2  # one label, id 2
    lab[: lab.shape[0] // 2] = np.minimum(lab[: lab.shape[0] // 2], 1)  # and id 1 in one half
    write_volume(Volume(lab, m.affine), d / "labels.nii.gz")
    (d / "broken.nii.gz").write_bytes(b"not a volume")
    write_volume(Volume(np.zeros((8, 8, 8), np.uint8), np.eye(4)), d / "empty.nii")
    (d / "notes.txt").write_text("not an input")
    return d


def _cli(argv):
    parser = argparse.ArgumentParser()
    extract_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_batch_writes_each_graph_and_records_failures(folder, tmp_path):
    out = tmp_path / "graphs"  # created, with its parents missing too
    table = extract_batch(folder, out / "run1", progress=False)
    out = out / "run1"
    assert list(table.columns) == list(SUMMARY_COLUMNS)
    # inputs in sorted order, the text file not among them
    names = [os.path.basename(p) for p in table["input"]]
    assert names == ["broken.nii.gz", "empty.nii", "labels.nii.gz", "tree3.nii.gz", "tree4.nii.gz"]
    status = dict(zip(names, table["status"]))
    assert status == {
        "broken.nii.gz": "error",
        "empty.nii": "error",
        "labels.nii.gz": "ok",
        "tree3.nii.gz": "ok",
        "tree4.nii.gz": "ok",
    }
    err = dict(zip(names, table["error"]))
    assert (
        err["broken.nii.gz"].startswith("FileFormatError")
        and "broken.nii.gz" in err["broken.nii.gz"]
    )
    assert err["empty.nii"].startswith("EmptyInputError")
    # each graph is what extract gives for that file, and the counts are its counts
    for name, stem in (("tree3.nii.gz", "tree3"), ("labels.nii.gz", "labels")):
        g = read_graph(out / f"{stem}.vtp")
        ref = extract(read_volume(folder / name))
        assert g.n_nodes == ref.n_nodes and np.allclose(g.positions, ref.positions, atol=1e-4)
        row = table[table["input"] == str(folder / name)].iloc[0]
        assert row["outputs"] == f"{stem}.vtp;{stem}_branches.csv"
        assert (row["nodes"], row["branches"]) == (ref.n_nodes, len(ref.branches))
        assert (row["junctions"], row["endpoints"]) == (len(ref.junctions), len(ref.endpoints))
        assert row["length_mm"] == pytest.approx(ref.total_length, abs=1e-3)
        assert len(pd.read_csv(out / f"{stem}_branches.csv")) == len(ref.branches)
    assert set(read_graph(out / "labels.vtp").node_data["label"]) == {1, 2}
    # the summary on disk is the table returned, and no temporary file is left behind
    disk = pd.read_csv(out / "summary.csv")
    assert list(disk["status"]) == list(table["status"])
    assert list(disk["nodes"].fillna(-1)) == list(table["nodes"].fillna(-1))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert not (out / "broken.vtp").exists() and not (out / "empty.vtp").exists()


def test_skip_existing_resumes_and_reruns_what_is_missing(folder, tmp_path):
    out = tmp_path / "out"
    files = [folder / "tree3.nii.gz", folder / "tree4.nii.gz", folder / "broken.nii.gz"]
    first = extract_batch(files, out, fmt="npz", progress=False)
    stamp = (out / "tree3.npz").stat().st_mtime_ns
    (out / "tree4_branches.csv").unlink()  # a case whose files are not all there is run again
    # the same files named by relative paths are the same cases
    rel = [os.path.relpath(f) for f in files]
    again = extract_batch(rel, out, fmt="npz", skip_existing=True, progress=False)
    assert list(again["status"]) == ["skipped", "ok", "error"]
    assert (out / "tree3.npz").stat().st_mtime_ns == stamp
    assert (out / "tree4_branches.csv").is_file()
    assert again["nodes"].iloc[0] == first["nodes"].iloc[0]  # the old row is kept
    # without skip_existing every case runs again
    assert list(extract_batch(files, out, fmt="npz", progress=False)["status"]) == [
        "ok",
        "ok",
        "error",
    ]


def test_batch_in_processes_gives_the_same_graphs(folder, tmp_path):
    files = [folder / "tree3.nii.gz", folder / "tree4.nii.gz", folder / "broken.nii.gz"]
    one = extract_batch(files, tmp_path / "a", progress=False)
    two = extract_batch(files, tmp_path / "b", jobs=2, progress=False)
    assert list(two["status"]) == list(one["status"]) == ["ok", "ok", "error"]
    for stem in ("tree3", "tree4"):
        a, b = (
            read_graph(tmp_path / "a" / f"{stem}.vtp"),
            read_graph(tmp_path / "b" / f"{stem}.vtp"),
        )
        assert a.n_nodes == b.n_nodes and np.array_equal(a.positions, b.positions)


def test_batch_passes_options_per_label_and_tree(folder, tmp_path):
    table = extract_batch(
        [folder / "labels.nii.gz"], tmp_path, fmt="swc", per_label=True, tree=True, progress=False
    )
    assert list(table["status"]) == ["ok"]
    outputs = table["outputs"].iloc[0].split(";")
    assert outputs == [
        "labels_label1.swc",
        "labels_label1_branches.csv",
        "labels_label2.swc",
        "labels_label2_branches.csv",
    ]
    per = extract(read_volume(folder / "labels.nii.gz"), per_label=True, tree=True)
    assert table["nodes"].iloc[0] == sum(g.n_nodes for g in per.values())
    for c in (1, 2):
        g = read_graph(tmp_path / f"labels_label{c}.swc")
        assert g.n_nodes == per[c].n_nodes and g.n_cycles == 0


def test_batch_refuses_bad_requests_before_writing(folder, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(InvalidInputError, match="unknown graph format"):
        extract_batch(folder, out, fmt="stl")
    with pytest.raises(InvalidInputError, match="jobs"):
        extract_batch(folder, out, jobs=0)
    with pytest.raises(InvalidInputError, match="not a volume file"):
        extract_batch([folder / "notes.txt"], out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        extract_batch([folder / "missing.nii.gz"], out)
    with pytest.raises(InvalidInputError, match="no volume file"):
        extract_batch(tmp_path, out)  # an empty folder
    with pytest.raises(InvalidInputError, match="unknown extract options"):
        extract_batch(folder, out, spur_ratoi=2)
    with pytest.raises(InvalidInputError, match="does not take spacing"):
        extract_batch(folder, out, spacing=1.0)
    # two inputs that would write the same file
    other = tmp_path / "other"
    other.mkdir()
    (other / "tree3.nii.gz").write_bytes((folder / "tree3.nii.gz").read_bytes())
    with pytest.raises(InvalidInputError, match="both write tree3.vtp"):
        extract_batch([folder / "tree3.nii.gz", other / "tree3.nii.gz"], out)
    # the same file named twice is one case
    assert volume_files([folder / "tree3.nii.gz", folder / "tree3.nii.gz"]) == [
        folder / "tree3.nii.gz"
    ]
    assert not out.exists()


def test_cli_batch_exit_code_and_report(folder, tmp_path, capsys):
    out = tmp_path / "cli"
    code = _cli(
        ["extract", str(folder / "tree3.nii.gz"), str(folder / "broken.nii.gz"), "-o", str(out),
         "--format", "json", "--no-progress"]
    )  # fmt: skip
    assert code == 1  # one case failed
    text = capsys.readouterr().out
    assert "failed: " in text and "broken.nii.gz" in text
    assert "2 cases" in text and "1 ok" in text and "1 failed" in text
    assert read_graph(out / "tree3.json").n_nodes > 0
    # one file with a folder as output is not a batch: the output must name a graph file
    with pytest.raises(FileFormatError, match="unknown suffix"):
        _cli(["extract", str(folder / "tree3.nii.gz"), "-o", str(out), "--no-progress"])
    # a folder alone is a batch too, and all-ok exits 0
    good = tmp_path / "good"
    good.mkdir()
    for name in ("tree3.nii.gz", "tree4.nii.gz"):
        (good / name).write_bytes((folder / name).read_bytes())
    assert _cli(["extract", str(good), "-o", str(tmp_path / "g"), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        "summary.csv",
        "tree3.vtp",
        "tree3_branches.csv",
        "tree4.vtp",
        "tree4_branches.csv",
    ]
    # batch options on a single file are refused
    with pytest.raises(InvalidInputError, match="only for a batch"):
        _cli(["extract", str(good / "tree3.nii.gz"), "-o", str(tmp_path / "x.vtp"), "--jobs", "2"])
