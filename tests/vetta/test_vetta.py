"""VeTTA: data pipeline, matching, splits, Fourier lookup, validity, overfitting, checkpoints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from vesseltree import VesselGraph  # noqa: E402
from vesseltree.errors import FileFormatError, InvalidInputError  # noqa: E402
from vesseltree.metrics.trees import (  # noqa: E402
    centerline_distances,
    count_errors,
    is_valid_tree,
    tree_edit_distance,
)
from vesseltree.synth import random_tree  # noqa: E402
from vesseltree.vetta import (  # noqa: E402
    SegmentAE,
    VeTTA,
    VeTTAConfig,
    canonical_tree,
    interpolate,
    random_split,
    topk_match,
)
from vesseltree.vetta.api import latent_path  # noqa: E402
from vesseltree.vetta.batch import make_record  # noqa: E402
from vesseltree.vetta.fourier import FourierLookup, lift  # noqa: E402
from vesseltree.vetta.train import TrainSettings, train  # noqa: E402
from vesseltree.vetta.tree import resample_segment, root_path  # noqa: E402


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny_model() -> VeTTA:
    torch.manual_seed(0)
    return VeTTA(VeTTAConfig.tiny())


def _random_parents(rng, n):
    par = np.full(n, -1)
    for i in range(1, n):
        par[i] = rng.integers(0, i)
    return par


# ---------------------------------------------------------------------------------- Fourier
def test_fourier_lookup_round_trips_within_half_a_grid_step():
    rng = np.random.default_rng(0)
    lookup = FourierLookup(6, n_grid=3001)
    v = torch.as_tensor(rng.uniform(-2.99, 2.99, (500, 3)))
    back = lookup.invert(lift(v.float(), 6))
    err = (back - v).abs().max().item()
    assert err <= lookup.step / 2 + 1e-5
    # one-to-one inside the domain: values near both ends are not confused
    ends = torch.tensor([[-2.9, 0.0, 2.9]])
    assert np.allclose(lookup.invert(lift(ends, 6)).numpy(), ends.numpy(), atol=lookup.step)


def test_windowed_lookup_refines_a_rough_estimate_and_ignores_far_aliases():
    lookup = FourierLookup(6, n_grid=3001, domain=(-1.0, 1.0))
    true = torch.tensor([[0.30]], dtype=torch.float64)
    feats = lift(true.float(), 6, domain=(-1.0, 1.0))
    # corrupt the two lowest octaves: the global lookup then jumps to a far alias ...
    bad = feats.clone()
    bad[..., [0, 1, 6, 7]] = -bad[..., [0, 1, 6, 7]]
    assert abs(lookup.invert(bad).item() - 0.30) > 0.1
    # ... while a lookup near a rough estimate recovers the value from the high octaves
    near = torch.tensor([[0.31]])
    got = lookup.invert(bad, near=near, window=0.02).item()
    assert abs(got - 0.30) <= lookup.step


# ---------------------------------------------------------------------------------- matching
def test_topk_match_invariants_and_optimal_first_round():
    rng = np.random.default_rng(1)
    for _ in range(30):
        m, t, k = int(rng.integers(6, 12)), int(rng.integers(1, 4)), 2
        if m < k * t:
            continue
        cost = rng.random((m, t))
        r, ell = topk_match(cost, k)
        assert np.all(r.sum(0) == k)  # every target exactly k slots
        assert np.all(r.sum(1) <= 1)  # no slot twice
        assert np.all(ell.sum(1) == 1)  # every slot exactly one target
        assert np.all(ell[r])  # R inside L
        # leftover slots go to their cheapest target
        rest = r.sum(1) == 0
        assert np.all(np.argmax(ell[rest], 1) == np.argmin(cost[rest], 1))
    # round one alone (k=1) is an optimal assignment (brute force on a small case)
    cost = rng.random((5, 2))
    r, _ = topk_match(cost, 1)
    best = min(cost[i, 0] + cost[j, 1] for i, j in itertools.permutations(range(5), 2))
    assert cost[r].sum() == pytest.approx(best)
    with pytest.raises(InvalidInputError, match="slots"):
        topk_match(np.zeros((3, 2)), 2)


def test_batched_matching_costs_what_the_per_row_hungarian_costs():
    from vesseltree.vetta.matching import topk_match_batched

    rng = np.random.default_rng(4)
    for m, c, k in [(12, 3, 3), (9, 2, 3), (8, 1, 2), (16, 4, 3)]:
        b = 40
        cost = torch.from_numpy(rng.random((b, m, c))).float()
        n = torch.from_numpy(rng.integers(0, c + 1, b))
        valid = torch.arange(c)[None] < n[:, None]
        r_b, l_b = topk_match_batched(cost, valid, k)
        for g in range(b):
            cols = np.flatnonzero(valid[g].numpy())
            cg = cost[g].numpy()[:, cols].astype(np.float64)
            r, ell = topk_match(cg, k)
            rg, lg = r_b[g][:, cols].numpy(), l_b[g][:, cols].numpy()
            assert not r_b[g][:, len(cols) :].any() and not l_b[g][:, len(cols) :].any()
            assert np.all(rg.sum(0) == k) and np.all(rg.sum(1) <= 1)
            assert np.all(lg.sum(1) == (1 if len(cols) else 0)) and np.all(lg[rg])
            # each round is an exact assignment: the same total cost as scipy's solver
            assert (cg * rg).sum() == pytest.approx((cg * r).sum(), abs=1e-5)
            assert (cg * lg).sum() == pytest.approx((cg * ell).sum(), abs=1e-5)
    with pytest.raises(InvalidInputError, match="prefix"):
        topk_match_batched(torch.zeros(1, 9, 2), torch.tensor([[False, True]]), 2)


# ---------------------------------------------------------------------------------- splits
def test_random_split_gives_ancestor_closed_states_with_true_children():
    rng = np.random.default_rng(2)
    for _ in range(200):
        par = _random_parents(rng, int(rng.integers(1, 15)))
        kids = [set(np.flatnonzero(par == i).tolist()) for i in range(len(par))]
        lhs, q, targets = random_split(par, rng)
        s = set(lhs.tolist())
        if q < 0:
            assert len(lhs) == 0 and targets.tolist() == [0]
            continue
        assert q in s and kids[q] and set(targets.tolist()) == kids[q]
        assert not (set(targets.tolist()) & s)  # the children are not decoded yet
        for v in lhs:
            assert par[v] < 0 or par[v] in s  # ancestor-closed
            if par[v] >= 0:
                assert kids[par[v]] <= s  # sibling groups complete
        assert root_path(par, q)[0] == 0 and root_path(par, q)[-1] == q


def test_random_split_reaches_every_internal_node():
    rng = np.random.default_rng(3)
    par = np.array([-1, 0, 0, 1, 1, 2, 5])
    seen = {random_split(par, rng)[1] for _ in range(400)}
    assert seen == {-1, 0, 1, 2, 5}


# ---------------------------------------------------------------------------------- canonical tree
def _y_graph():
    # stem 0 -> 40 mm along x (41 nodes), two 10 mm children
    stem = np.stack([np.arange(41.0), np.zeros(41), np.zeros(41)], 1)
    up = stem[-1] + np.outer(np.arange(1, 11), [0.6, 0.8, 0])
    dn = stem[-1] + np.outer(np.arange(1, 11), [0.6, -0.8, 0])
    pos = np.concatenate([stem, up, dn])
    edges = [(i, i + 1) for i in range(40)] + [(40, 41)] + [(41 + i, 42 + i) for i in range(9)]
    edges += [(40, 51)] + [(51 + i, 52 + i) for i in range(9)]
    return VesselGraph(pos, np.linspace(2, 1, len(pos)), edges, root=0)


def test_canonical_tree_keeps_key_nodes_and_splits_long_segments():
    g = _y_graph()
    t = canonical_tree(g, max_segment_mm=30.0)
    # root, one split node in the 40 mm stem, the bifurcation, two leaves
    assert t.n_nodes == 5
    assert sorted(t.n_children.tolist()) == [0, 0, 1, 1, 2]
    assert np.all(t.parent[1:] < np.arange(1, 5))
    for i in range(1, 5):
        assert np.allclose(t.curves[i][0, :3], t.positions[t.parent[i]])
        assert np.allclose(t.curves[i][-1, :3], t.positions[i])
    dense = t.to_graph()
    assert dense.total_length == pytest.approx(g.total_length)
    assert dense.is_tree and dense.root == 0


def test_resample_segment_normalises_and_follows_curvature():
    # an L: 10 mm along x then 10 mm along y, radius 2 -> 1
    s = np.linspace(0, 1, 50)
    leg1 = np.stack([10 * s, 0 * s, 0 * s], 1)
    leg2 = np.stack([10 + 0 * s[1:], 10 * s[1:], 0 * s[1:]], 1)
    pts = np.concatenate([leg1, leg2])
    curve = np.concatenate([pts, np.linspace(2, 1, len(pts))[:, None]], 1)
    out, arc, chord = resample_segment(curve, 64)
    assert arc == pytest.approx(20.0) and chord == pytest.approx(np.sqrt(200))
    assert np.all(np.diff(out[:, 4]) > 0) and 0 < out[0, 4] < out[-1, 4] < 1
    assert out[:, 3].max() <= 1.0 + 1e-9  # start radius is 1
    # more samples near the corner (t = 0.5) than an even spread would give
    near = np.sum(np.abs(out[:, 4] - 0.5) < 0.1)
    assert near > 0.2 * 64 * 1.3


# ---------------------------------------------------------------------------------- validity
def test_untrained_decodes_of_random_latents_are_always_valid_trees(tiny_model):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(60, tiny_model.config.tree.z_dim)) * rng.choice([0.1, 1, 10], (60, 1))
    graphs = tiny_model.decode_many(z.astype(np.float32))
    assert all(is_valid_tree(g) for g in graphs)
    keys = [int(g.node_data["key_node"].sum()) for g in graphs]
    assert max(keys) <= tiny_model.config.tree.max_nodes


def test_every_step_of_100_interpolations_is_a_valid_tree(tiny_model):
    pool = [canonical_tree(random_tree(seed=s, n_branches=5, preset="brain")) for s in range(8)]
    z, frames = tiny_model.encode_many(pool)
    rng = np.random.default_rng(5)
    codes, fr = [], []
    for k in range(100):
        i, j = rng.choice(len(pool), 2, replace=False)
        codes.append(latent_path(z[i], z[j], 8, ("linear", "slerp")[k % 2]))
        fr += [frames[i]] * 8
    graphs = tiny_model.decode_many(np.concatenate(codes), fr)
    assert len(graphs) == 800
    assert all(is_valid_tree(g) for g in graphs)
    # the public function on real pairs: ends included, every step valid
    steps = interpolate(pool[0], pool[1], steps=8, mode="slerp", model=tiny_model)
    assert len(steps) == 8 and all(is_valid_tree(g) for g in steps)
    assert np.allclose(latent_path(z[0], z[1], 8, "slerp")[[0, -1]], z[[0, 1]], atol=1e-5)


def test_interpolate_rejects_bad_arguments(tiny_model):
    g = random_tree(seed=0, n_branches=3)
    with pytest.raises(InvalidInputError, match="steps"):
        interpolate(g, g, steps=1, model=tiny_model)
    with pytest.raises(InvalidInputError, match="mode"):
        interpolate(g, g, mode="cubic", model=tiny_model)
    with pytest.raises(InvalidInputError, match="z must have shape"):
        tiny_model.decode(np.zeros(3))


# ---------------------------------------------------------------------------------- overfitting
def test_segment_ae_overfits_one_curve_with_exact_endpoints():
    torch.manual_seed(0)
    cfg = VeTTAConfig.tiny().segment
    net = SegmentAE(cfg)
    s = np.linspace(0, 1, 80)
    curve = np.stack([10 * s, 3 * np.sin(np.pi * s), 2 * s**2, 1.5 - 0.5 * s], 1)
    samples, _, chord = resample_segment(curve, cfg.n_samples)
    end = np.append((curve[-1, :3] - curve[0, :3]) / chord, curve[-1, 3] / curve[0, 3])
    x = torch.as_tensor(samples, dtype=torch.float32)[None]
    e = torch.as_tensor(end, dtype=torch.float32)[None]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        loss = net.loss(x, e, torch.ones(1), generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        z = net.encode(x)
        ends = net.decode(z, e, torch.tensor([[0.0, 1.0]]))[0].numpy()
        mid = net.decode(z, e, x[..., 4])[0].numpy()
    assert np.allclose(ends[0], [0, 0, 0, 1], atol=1e-6)
    assert np.allclose(ends[1], end, atol=1e-6)
    err = np.abs(mid[:, :3] - samples[:, :3]).max()
    straight = np.abs(np.outer(samples[:, 4], end[:3]) - samples[:, :3]).max()
    assert err < 0.15 * straight  # the residual learned most of the bend


def test_tree_ae_overfits_one_tree():
    torch.manual_seed(0)
    cfg = VeTTAConfig.tiny()
    model = VeTTA(cfg)
    truth = canonical_tree(random_tree(seed=3, n_branches=5, preset="brain"))
    rec = make_record(truth, cfg.segment)
    logs = train(
        model,
        [rec],
        segment=TrainSettings(steps=150, batch_size=8, lr=3e-3, warmup=10, augment=False),
        tree=TrainSettings(steps=300, batch_size=8, lr=3e-3, warmup=10, augment=False),
        progress=False,
    )
    assert logs["tree"]["loss_end"] < 0.1 * logs["tree"]["loss_start"]
    pred = model.reconstruct(truth)
    dense = truth.to_graph()
    assert int(pred.node_data["key_node"].sum()) == truth.n_nodes
    assert count_errors(pred, dense)["bifurcation_count_error"] == 0
    assert tree_edit_distance(pred, dense) == 0.0
    total = dense.total_length
    assert centerline_distances(pred, dense)["chamfer_mm"] < 0.01 * total


def test_several_decoding_states_per_tree_share_the_tree_code(tiny_model):
    from vesseltree.vetta.batch import build_inputs
    from vesseltree.vetta.train import tree_step_loss

    trees = [canonical_tree(random_tree(seed=s, n_branches=5)) for s in (1, 2)]
    recs = [make_record(t, tiny_model.config.segment) for t in trees]
    rng = np.random.default_rng(0)
    inp = build_inputs(recs, tiny_model.segment_ae, tiny_model.tree_ae, rng=rng, queries=50)
    rows = inp["rows"].numpy()
    # every state of every tree once: the empty state plus one per node with children
    n_states = [1 + int(np.sum(t.n_children > 0)) for t in trees]
    assert np.bincount(rows).tolist() == n_states
    u = inp["u"].numpy()
    ptr = inp["batch"].ptr.numpy()
    for r, g in enumerate(rows):
        tree = trees[g]
        valid = inp["target"]["valid"][r].numpy()
        xyz = inp["target"]["xyz"][r].numpy()[valid]
        path = inp["pmask"][r].sum().item()
        if path == 0:  # the empty state: the target is the root, absolute
            assert np.allclose(xyz, u[ptr[g]], atol=1e-6)
            continue
        # a query: its children relative to it (the last node of the root-to-query path)
        hits = [
            q
            for q in range(tree.n_nodes)
            if len(root_path(tree.parent, q)) == path
            and sorted(np.flatnonzero(tree.parent == q).tolist())
            and np.allclose(
                np.sort(xyz, axis=0),
                np.sort(u[ptr[g] + np.flatnonzero(tree.parent == q)] - u[ptr[g] + q], axis=0),
                atol=1e-6,
            )
        ]
        assert hits
    loss, _ = tree_step_loss(tiny_model, recs, np.random.default_rng(1), queries=4)
    assert torch.isfinite(loss)


# ---------------------------------------------------------------------------------- round trip
def test_training_targets_render_back_to_the_tree(tiny_model):
    # the targets the tree AE learns, drawn by the decoding path: key nodes, radii and parents
    # come back exactly (no frame or reference-point mismatch between training and rendering)
    truth = canonical_tree(random_tree(seed=5, n_branches=6, preset="coronary"))
    back = tiny_model.target_round_trip(truth)
    k = truth.n_nodes
    assert int(back.node_data["key_node"].sum()) == k
    assert np.abs(back.positions[:k] - truth.positions).max() < 1e-3  # mm
    assert np.allclose(back.radii[:k], truth.radii, rtol=1e-4)
    dense = truth.to_graph()
    assert tree_edit_distance(back, dense) == 0.0
    # an untrained segment decoder draws straight segments: the rest is the bend of the vessels
    straight = centerline_distances(back, dense)["chamfer_mm"]
    assert straight < 0.05 * dense.total_length


# ---------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_corrupt_files(tiny_model, tmp_path):
    g = random_tree(seed=1, n_branches=5)
    path = tiny_model.save_pretrained(tmp_path / "ck")
    again = VeTTA.from_pretrained(tmp_path / "ck")
    assert np.allclose(again.encode(g), tiny_model.encode(g), atol=1e-6)
    assert again.config == tiny_model.config
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        VeTTA.from_pretrained(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(FileFormatError):
        VeTTA.from_pretrained(tmp_path / "junk.pt")
    with pytest.raises(FileFormatError, match="no VeTTA checkpoint"):
        VeTTA.from_pretrained(tmp_path / "missing")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(FileFormatError, match="not a VeTTA checkpoint"):
        VeTTA.from_pretrained(tmp_path / "other.pt")


def test_tree_training_with_loader_workers_keeps_the_weights_the_monitor_scored_best():
    from vesseltree.vetta.train import train_tree

    torch.manual_seed(0)
    cfg = VeTTAConfig.tiny()
    model = VeTTA(cfg)
    recs = [
        make_record(canonical_tree(random_tree(seed=s, n_branches=4, preset="brain")), cfg.segment)
        for s in (3, 5)
    ]
    readings = iter([3.0, 1.0, 2.0, 5.0, 4.0, 6.0, 7.0, 8.0, 9.0, 9.5, 9.7, 9.8])
    seen = []

    def monitor(m):
        seen.append({k: v.clone() for k, v in m.tree_ae.state_dict().items()})
        return next(readings)

    log = train_tree(
        model,
        recs,
        TrainSettings(steps=8, batch_size=4, lr=1e-2, warmup=1, workers=1, monitor_every_s=0.0),
        progress=False,
        monitor=monitor,
    )
    assert log["steps"] == 8 and len(log["monitor"]) == len(seen) >= 3
    # the second reading was the lowest: those weights are kept, not the last ones
    assert log["best_monitor"] == 1.0 and log["best_step"] == log["monitor"][1][0]
    kept = model.tree_ae.state_dict()
    assert all(torch.equal(kept[k], seen[1][k]) for k in kept if k.startswith("heads"))
    assert not all(torch.equal(seen[1][k], seen[-1][k]) for k in kept if k.startswith("heads"))
