"""The checkpoint shipped in data/checkpoints/vetta/."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vesseltree.metrics.trees import centerline_distances, is_valid_tree  # noqa: E402
from vesseltree.vetta import DEFAULT_CHECKPOINT, VeTTA, canonical_tree  # noqa: E402

# measured on the held-out tree below when the checkpoint was trained: 1.5x the measured value
CHAMFER_BOUND_MM = 1.5 * 3.27  # ArteryObjAN139-17, measured 3.27 mm (tree length 50 mm)


@pytest.fixture(scope="module")
def shipped() -> VeTTA:
    torch.set_num_threads(1)
    return VeTTA.from_pretrained()


def test_shipped_checkpoint_is_small_and_documented(shipped):
    size = (DEFAULT_CHECKPOINT / "vetta.pt").stat().st_size
    assert size < 5 * 2**20
    meta = shipped.metadata
    assert meta["training"]["tree"]["steps"] > 0 and meta["training"]["segment"]["steps"] > 0
    assert "val_vesselvae" in meta["validation"] and meta["data"]["counts"]["train"] > 1000
    # the shipped model decodes random codes into valid trees too
    assert all(is_valid_tree(g) for g in shipped.sample(8, seed=1))


def test_shipped_checkpoint_reconstructs_a_held_out_tree(shipped, shared_data):
    from vesseltree.io.datasets import read_vesselvae_tree, vesselvae_model_id
    from vesseltree.vetta.datasets import vesselvae_split

    _, val = vesselvae_split(shared_data)
    train_models = {vesselvae_model_id(f) for f in _}
    path = next(f for f in val if canonical_tree(read_vesselvae_tree(f)).n_nodes >= 5)
    assert vesselvae_model_id(path) not in train_models  # held out by model, not by file
    truth = read_vesselvae_tree(path)
    pred = shipped.reconstruct(truth)
    assert is_valid_tree(pred)
    d = centerline_distances(pred, truth)
    assert d["chamfer_mm"] < CHAMFER_BOUND_MM
    # better than no information (every point at the tree's centroid: 3.96 mm for this tree)
    centroid = truth.replace(
        positions=np.repeat(truth.positions.mean(0, keepdims=True), truth.n_nodes, 0)
    )
    assert d["chamfer_mm"] < centerline_distances(centroid, truth)["chamfer_mm"]
