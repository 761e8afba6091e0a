"""Checkpoints: round trip, truncation, resume, and the CLI through its own parser."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from vesseltree.deformcl import DeformCL, DeformCLConfig, DeformCLNet, TrainConfig, train
from vesseltree.deformcl.checkpoint import save_checkpoint
from vesseltree.errors import FileFormatError


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    net = DeformCLNet(DeformCLConfig.tiny())
    save_checkpoint(tmp_path, net, {"note": "x"})
    model = DeformCL.from_pretrained(tmp_path)
    assert model.config == net.config
    assert model.metadata["note"] == "x"
    for k, v in net.state_dict().items():
        torch.testing.assert_close(model.net.state_dict()[k], v)


def test_truncated_file_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path, DeformCLNet(DeformCLConfig.tiny()))
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated"):
        DeformCL.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        DeformCL.from_pretrained(tmp_path / "nowhere")


def test_resume_continues_where_it_stopped(tmp_path, small_case):
    cfg = DeformCLConfig.tiny()
    train([small_case], config=cfg, train_config=TrainConfig(steps=2), out=tmp_path, progress=False)
    _, hist = train(
        [small_case],
        config=cfg,
        train_config=TrainConfig(steps=4),
        out=tmp_path,
        resume=True,
        progress=False,
    )
    assert hist["steps"] == 4
    assert len(hist["loss"]) == 4  # two from the first run, two after resuming
    assert DeformCL.from_pretrained(tmp_path).metadata["steps"] == 4


def test_cli_train_predict(tmp_path):
    from vesseltree.deformcl.cli import add_parser
    from vesseltree.io import read_graph, write_volume
    from vesseltree.synth import random_tree, simulate_image

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = tmp_path / "ckpt"
    args = parser.parse_args(
        [
            "train-deformcl",
            "--out",
            str(out),
            "--config",
            "tiny",
            "--steps",
            "3",
            "--n-synthetic",
            "1",
        ]
    )
    assert args.func(args) == 0
    assert (out / "model.pt").is_file() and (out / "train_state.pt").is_file()
    img = simulate_image(random_tree(seed=4, n_branches=3), modality="ct", seed=4, spacing=0.6)
    write_volume(img, tmp_path / "img.nii.gz")
    args = parser.parse_args(
        [
            "deformcl-predict",
            str(tmp_path / "img.nii.gz"),
            "-o",
            str(tmp_path / "g.npz"),
            "--checkpoint",
            str(out),
        ]
    )
    assert args.func(args) == 0  # an untrained model may find nothing: then an empty graph
    g = read_graph(tmp_path / "g.npz")
    assert np.allclose(g.affine, img.affine) or g.n_nodes == 0
