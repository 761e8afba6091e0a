"""Training data: crops carry consistent truth; the gold TubeTK cases never reach training."""

from __future__ import annotations

import numpy as np

from vesseltree.deformcl.data import TUBETK_GOLD, sample_crop, tubetk_mask_paths


def test_gold_cases_are_kept_out_of_training(shared_data):
    train = tubetk_mask_paths(shared_data)
    gold = tubetk_mask_paths(shared_data, gold=True)
    assert len(gold) == len(TUBETK_GOLD) == 10
    assert len(train) == 67
    assert not {p.name for p in train} & {p.name for p in gold}


def test_crop_truth_lies_in_the_crop_mask(small_case):
    rng = np.random.default_rng(0)
    crop = sample_crop(small_case, 32, rng)
    assert crop["image"].shape == crop["mask"].shape == crop["sdf"].shape == (32, 32, 32)
    inside = np.all((crop["truth"] >= 0) & (crop["truth"] <= 31), axis=1)
    assert inside.sum() > 10
    idx = np.round(crop["truth"][inside]).astype(int)
    # the true centerline runs inside the true mask, where the signed distance is negative
    assert np.mean(crop["mask"][tuple(idx.T)]) > 0.9
    assert np.mean(crop["sdf"][tuple(idx.T)] < 0) > 0.9
    # the crop's affine maps crop voxels to the same world points as the case's affine
    start = np.linalg.solve(
        small_case.affine[:3, :3], crop["affine"][:3, 3] - small_case.affine[:3, 3]
    )
    assert np.allclose(start, np.round(start))
    # template nodes of the crop index into its node list
    if len(crop["tpl_edges"]):
        assert crop["tpl_edges"].max() < len(crop["tpl_pos"])
