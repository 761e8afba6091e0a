"""The ``interpolate`` and ``train-vetta`` subcommands, through their own argparse parser."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vesseltree.io import read_graph, write_graph  # noqa: E402
from vesseltree.metrics.trees import is_valid_tree  # noqa: E402
from vesseltree.synth import random_tree  # noqa: E402
from vesseltree.vetta import VeTTA, VeTTAConfig  # noqa: E402
from vesseltree.vetta.cli import add_parser  # noqa: E402


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vesseltree")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_interpolate_writes_valid_graphs_stls_and_a_strip(tmp_path):
    torch.manual_seed(0)
    ck = VeTTA(VeTTAConfig.tiny()).save_pretrained(tmp_path / "ck")
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    write_graph(random_tree(seed=1, n_branches=3, preset="brain"), a)
    write_graph(random_tree(seed=2, n_branches=3, preset="brain"), b)
    out = tmp_path / "out"
    code = _run(
        [
            "interpolate",
            str(a),
            str(b),
            "-o",
            str(out),
            "--steps",
            "3",
            "--checkpoint",
            str(ck),
            "--mode",
            "slerp",
        ]
    )
    assert code == 0
    graphs = [read_graph(out / f"step_{k:02d}.npz") for k in range(3)]
    assert all(is_valid_tree(g) for g in graphs)
    for k in range(3):
        stl = (out / f"step_{k:02d}.stl").read_bytes()
        assert len(stl) > 84 + 50  # binary STL header + at least one triangle
    png = (out / "strip.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_interpolate_rejects_one_step(tmp_path):
    from vesseltree.errors import InvalidInputError

    a = tmp_path / "a.npz"
    write_graph(random_tree(seed=1, n_branches=3), a)
    with pytest.raises(InvalidInputError, match="--steps"):
        _run(["interpolate", str(a), str(a), "-o", str(tmp_path / "o"), "--steps", "1"])


def test_train_vetta_trains_both_stages_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    common = [
        "train-vetta",
        "--config",
        "tiny",
        "--synthetic-only",
        "--n-synthetic",
        "12",
        "--cache",
        str(tmp_path / "cache"),
        "--no-progress",
        "--batch-size",
        "4",
        "--segment-batch-size",
        "8",
        "--seed",
        "3",
    ]
    assert _run(common + ["--out", str(out), "--steps", "3", "--segment-steps", "2"]) == 0
    first = VeTTA.from_pretrained(out)
    assert first.metadata["training"]["tree"]["steps"] == 3
    assert first.metadata["training"]["segment"]["steps"] == 2
    assert "val_synthetic" in first.metadata["validation"]
    state = out / "train_state.pt"
    assert state.is_file()
    # resume the tree stage: the step count continues from the saved state
    torch.save(
        {**torch.load(state, weights_only=True), "stage": "tree", "step": 0, "opt": {}}, state
    )
    out2 = tmp_path / "run2"
    assert _run(common + ["--out", str(out2), "--steps", "5", "--resume", str(state)]) == 0
    again = VeTTA.from_pretrained(out2)
    assert again.metadata["training"]["tree"]["steps"] == 5
    # the segment stage was not repeated: its weights are those of the first run
    for k, v in first.segment_ae.state_dict().items():
        assert torch.equal(v, again.segment_ae.state_dict()[k])
    assert np.isfinite(again.encode(random_tree(seed=4, n_branches=3))).all()


def test_registering_the_subcommands_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import argparse, sys; from vesseltree.vetta.cli import add_parser; "
        "add_parser(argparse.ArgumentParser().add_subparsers()); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
