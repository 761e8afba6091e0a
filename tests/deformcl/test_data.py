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


def test_perturbed_template_is_a_valid_graph_with_realistic_errors():
    from vesseltree.deformcl.data import perturb_template

    rng = np.random.default_rng(3)
    # a Y-shaped template: trunk along x and a branch along y, 0.5 mm voxels
    trunk = np.stack([np.arange(40.0), np.full(40, 20.0), np.full(40, 20.0)], 1)
    branch = np.stack([np.full(20, 20.0), 21.0 + np.arange(20.0), np.full(20, 20.0)], 1)
    pos = np.concatenate([trunk, branch])
    edges = np.array(
        [(i, i + 1) for i in range(39)] + [(20, 40)] + [(40 + i, 41 + i) for i in range(19)]
    )
    lin = np.diag([0.5, 0.5, 0.5])
    moved, spurs = [], 0
    for _ in range(20):
        p, r, e = perturb_template(pos, np.ones(len(pos)), edges, lin, rng)
        assert p.shape[1] == 3 and len(r) == len(p) and e.min() >= 0 and e.max() < len(p)
        spurs += len(p) > len(pos)
        near = np.linalg.norm((p[:, None] - pos[None]) * 0.5, axis=2).min(1)  # mm
        moved.append(np.median(near))
    assert spurs > 0
    assert 0.05 < np.median(moved) < 2.0  # mm: errors of the size the cascade should correct


def test_crop_with_template_errors_stays_consistent(small_case):
    rng = np.random.default_rng(0)
    for _ in range(5):
        crop = sample_crop(small_case, 32, rng, template_errors=1.0)
        pos, e = crop["tpl_pos"], crop["tpl_edges"]
        assert np.all((pos >= -0.5) & (pos <= 31.5))
        if len(e):
            assert e.max() < len(pos)
