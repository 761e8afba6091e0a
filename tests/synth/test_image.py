"""simulate_image: contrast, affine kept, truth attached, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from vesseltree import InvalidInputError, Volume
from vesseltree.synth import cylinder, random_tree, simulate_image, voxelize


@pytest.fixture(scope="module")
def tree():
    return random_tree(seed=2, n_branches=21)


@pytest.mark.parametrize("modality", ["ct", "mra"])
def test_vessels_are_brighter_than_background(tree, modality):
    img = simulate_image(tree, modality=modality, seed=0)
    assert img.data.dtype == np.float32
    mask = img.meta["mask"]
    assert isinstance(mask, Volume) and mask.data.dtype == bool
    assert img.meta["truth"] is tree and img.meta["modality"] == modality
    assert np.allclose(mask.affine, img.affine) and mask.shape == img.shape
    # thick lumen (fully inside) against the background
    lumen = img.meta["fraction"].data >= 1.0
    vessel, background = np.median(img.data[lumen]), np.median(img.data[~mask.data])
    if modality == "ct":
        assert 200.0 < vessel < 500.0 and -60.0 < background < 100.0
        assert vessel - background > 150.0
    else:
        assert img.data.min() >= 0.0  # Rician magnitudes
        assert vessel > 2.5 * background


def test_ct_noise_and_parameters(tree):
    img = simulate_image(tree, modality="ct", seed=4)
    params = img.meta["params"]
    assert 300.0 <= params["vessel_intensity"] <= 450.0
    assert 20.0 <= params["noise"] <= 40.0
    # the noise is visible voxel to voxel: neighbour differences in the background
    diff = np.diff(img.data, axis=0)[~(img.meta["mask"].data[1:] | img.meta["mask"].data[:-1])]
    assert 0.7 * params["noise"] < np.median(np.abs(diff)) / 0.954 < 1.5 * params["noise"]
    # bright blobs like bone or calcium
    assert img.data.max() > 600.0 or not params["blobs"]


def test_clean_image_is_the_partial_volume_blend(tree):
    img = simulate_image(
        tree,
        modality="ct",
        seed=1,
        noise=0.0,
        psf_mm=0.0,
        bias=0.0,
        n_blobs=0,
        vessel_intensity=400.0,
    )
    frac = img.meta["fraction"].data
    inside = frac >= 1.0
    assert np.all(np.abs(img.data[inside] - 400.0) < 0.25 * 400.0)
    assert img.meta["params"]["blobs"] == []


def test_real_mask_keeps_its_affine():
    aff = np.array(
        [[0.0, -0.6, 0.1, 20.0], [0.7, 0.0, 0.0, -5.0], [0.0, 0.05, 0.9, 3.0], [0, 0, 0, 1.0]]
    )
    mask = voxelize(cylinder(15.0, 2.0, direction=(1.0, 1.0, 1.0)), affine=aff)
    img = simulate_image(mask, modality="mra", seed=3)
    assert img.shape == mask.shape and np.allclose(img.affine, mask.affine)
    assert img.meta["mask"] is mask
    assert img.meta["truth"] is mask.meta["truth"]
    assert np.median(img.data[mask.data]) > 2.0 * np.median(img.data[~mask.data])
    # a bare array with a spacing, and integer labels
    arr = mask.data.astype(np.uint8) * 2
    img2 = simulate_image(arr, modality="ct", seed=3, spacing=(0.5, 0.5, 1.0))
    assert np.allclose(img2.spacing, [0.5, 0.5, 1.0]) and img2.meta["truth"] is None
    assert img2.meta["mask"].data.sum() == mask.data.sum()


def test_deterministic_for_a_seed(tree):
    a = simulate_image(tree, modality="mra", seed=5)
    b = simulate_image(tree, modality="mra", seed=5)
    c = simulate_image(tree, modality="mra", seed=6)
    assert np.array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)


def test_graph_grid_options(tree):
    img = simulate_image(tree, seed=0, spacing=(0.6, 0.6, 0.8))
    assert np.allclose(img.spacing, [0.6, 0.6, 0.8])


@pytest.mark.parametrize(
    ("source", "kwargs", "words"),
    [
        ("tree", {"modality": "pet"}, ["modality", "'pet'"]),
        ("tree", {"seed": -2}, ["seed", "-2"]),
        ("tree", {"noise": -1.0}, ["noise", "-1.0"]),
        ("tree", {"psf_mm": float("nan")}, ["psf_mm", "nan"]),
        ("tree", {"spacing": 0.0}, ["spacing", "0.0"]),
        ("tree", {"n_blobs": -1}, ["n_blobs", "-1"]),
        ("2d", {}, ["mask_or_graph", "2D"]),
        ("volume", {"spacing": 1.0}, ["spacing", "affine"]),
        ("floats", {}, ["[0, 1]"]),
        ("text", {}, ["mask_or_graph", "'text'"]),
    ],
)
def test_bad_arguments(tree, source, kwargs, words):
    sources = {
        "tree": tree,
        "2d": np.zeros((8, 8), dtype=bool),
        "volume": Volume(np.zeros((4, 4, 4), dtype=bool)),
        "floats": Volume(np.full((4, 4, 4), 3.0)),
        "text": "text",
    }
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(InvalidInputError) as info:
        simulate_image(sources[source], **kwargs)
    for w in words:
        assert w in str(info.value)
