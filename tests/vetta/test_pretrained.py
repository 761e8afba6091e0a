"""The checkpoint shipped in data/checkpoints/vetta/."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vesseltree import VesselGraph  # noqa: E402
from vesseltree.metrics.trees import centerline_distances, is_valid_tree  # noqa: E402
from vesseltree.vetta import DEFAULT_CHECKPOINT, VeTTA, canonical_tree  # noqa: E402

# measured on the held-out tree below when the checkpoint was trained: 1.5x the measured value
CHAMFER_BOUND_MM = 1.5 * 2.21  # ArteryObjAN139-17, measured 2.21 mm (tree length 50 mm)


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


def test_training_targets_of_real_trees_render_back_within_the_segment_ae_error(
    shipped, shared_data
):
    # no tree AE: the tree rebuilt from its own training targets (key nodes, radii, segment
    # codes) differs from the truth only by the segment AE's error (about 1 mm Chamfer when
    # measured; a mismatch of frames or reference points would cost several mm)
    from vesseltree.io.datasets import read_vesselvae_tree
    from vesseltree.vetta.datasets import vesselvae_split

    _, val = vesselvae_split(shared_data)
    trees = [canonical_tree(read_vesselvae_tree(f)) for f in val[:8]]
    seg, straight = [], []
    for t in trees:
        dense = t.to_graph()
        back = shipped.target_round_trip(t)
        assert np.abs(back.positions[: t.n_nodes] - t.positions).max() < 1e-3
        seg.append(centerline_distances(back, dense)["chamfer_mm"])
        edges = np.stack([t.parent[1:], np.arange(1, t.n_nodes)], axis=1)
        chords = VesselGraph(t.positions, t.radii, edges, root=0)
        straight.append(centerline_distances(chords, dense)["chamfer_mm"])
    assert max(seg) < 2.5
    assert np.median(seg) < 1.6
    # the segment AE draws the bends: better than straight segments between the key nodes
    assert np.median(seg) < np.median(straight)


def test_vesselvae_split_leaves_out_the_unit_cube_copies(shared_data):
    from vesseltree.io.datasets import read_vesselvae_tree, vesselvae_model_id
    from vesseltree.vetta.datasets import is_unit_box_file, vesselvae_split

    train, val = vesselvae_split(shared_data)
    every = vesselvae_split(shared_data, unit_box=True)
    assert not any(is_unit_box_file(f) for f in train + val)
    unit = [f for f in every[0] + every[1] if is_unit_box_file(f)]
    assert len(unit) > 100 and len(train) + len(val) + len(unit) == len(every[0]) + len(every[1])
    # the p10 files really are in unit-cube coordinates, the kept ones in mm
    side = lambda f: np.ptp(read_vesselvae_tree(f).positions, axis=0).max()  # noqa: E731
    assert max(side(f) for f in unit[:10]) <= 1.0 + 1e-6
    assert min(side(f) for f in (train[:5] + val[:5])) > 2.0
    assert not {vesselvae_model_id(f) for f in train} & {vesselvae_model_id(f) for f in val}
