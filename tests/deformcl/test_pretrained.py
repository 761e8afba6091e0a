"""The shipped checkpoint loads and finds the vessels of a small synthetic CT-like volume."""

from __future__ import annotations

import numpy as np
import pytest

from vesseltree.deformcl import DEFAULT_CHECKPOINT, DeformCL
from vesseltree.metrics import centerline_scores
from vesseltree.synth import random_tree, simulate_image


@pytest.fixture(scope="module")
def model():
    if not (DEFAULT_CHECKPOINT / "model.pt").is_file():
        pytest.fail(f"the shipped checkpoint is missing from {DEFAULT_CHECKPOINT}")
    return DeformCL.from_pretrained()


def test_shipped_checkpoint_predicts_with_measured_accuracy(model):
    tree = random_tree(seed=7, n_branches=7)
    image = simulate_image(tree, modality="ct", seed=7, spacing=0.5)  # 73 x 59 x 156 voxels
    graph, mask = model.predict(image)
    assert graph.meta["cascade"] is True
    assert np.allclose(graph.affine, image.affine) and mask.shape == image.shape
    assert mask.data.dtype == bool
    # measured F1@1mm 0.93 when the checkpoint was made; the bound leaves room for platform noise
    assert centerline_scores(graph, tree, tolerances=(1.0,))["f1@1"] >= 0.8
    assert model.segment(image).shape == image.shape


def test_refine_moves_nodes_but_keeps_topology(model):
    tree = random_tree(seed=7, n_branches=7)
    image = simulate_image(tree, modality="ct", seed=7, spacing=0.5)
    rng = np.random.default_rng(0)
    noisy = tree.replace(positions=tree.positions + rng.normal(0, 0.3, tree.positions.shape))
    refined = model.refine(image, noisy)
    assert refined.n_nodes == noisy.n_nodes
    np.testing.assert_array_equal(refined.edges, noisy.edges)
    step = np.linalg.norm(refined.positions - noisy.positions, axis=1)
    # each of the stages moves a node at most max_offset_mm along each axis
    assert step.max() <= model.config.n_stages * model.config.max_offset_mm * np.sqrt(3) + 1e-6
