"""Hypothesis strategies for random vessel graphs and general affines (shared by the tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from vesseltree import VesselGraph


def rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def general_affine(rng: np.random.Generator) -> np.ndarray:
    """Rotation x shear x anisotropic scale (possibly a flip) + offset."""
    shear = np.eye(3)
    shear[0, 1], shear[0, 2], shear[1, 2] = rng.uniform(-0.3, 0.3, 3)
    scale = np.diag(rng.uniform(0.2, 2.0, 3) * rng.choice([-1.0, 1.0], 3))
    aff = np.eye(4)
    aff[:3, :3] = rotation(rng) @ shear @ scale
    aff[:3, 3] = rng.uniform(-200, 200, 3)
    return aff


@st.composite
def vessel_graphs(
    draw, *, rooted: bool | None = None, allow_cycles: bool = True, max_nodes: int = 30
):
    """Random graphs: a random tree, maybe extra edges (cycles), random node/edge data and affine."""
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, max_nodes))
    rng = np.random.default_rng(seed)
    parents = [int(rng.integers(0, i)) for i in range(1, n)]
    edges = [(p, i) for i, p in enumerate(parents, start=1)]
    if allow_cycles and n > 3 and draw(st.booleans()):
        present = {tuple(sorted(e)) for e in edges}
        for _ in range(draw(st.integers(1, 3))):
            a, b = (int(x) for x in rng.choice(n, 2, replace=False))
            if tuple(sorted((a, b))) not in present:
                present.add(tuple(sorted((a, b))))
                edges.append((a, b))
    # shuffle edge order and orientation
    order = rng.permutation(len(edges))
    edges = [edges[i] if rng.random() < 0.5 else edges[i][::-1] for i in order]
    pos = rng.normal(scale=draw(st.sampled_from([0.01, 1.0, 100.0])), size=(n, 3))
    rad = rng.uniform(0.05, 5.0, n)
    node_data = {}
    if draw(st.booleans()):
        node_data["label"] = rng.integers(0, 5, n)
        node_data["conf"] = rng.random(n).astype(np.float32)
        node_data["vec"] = rng.normal(size=(n, 3))
        node_data["flag"] = rng.random(n) < 0.5
    edge_data = {}
    if edges and draw(st.booleans()):
        edge_data["w"] = rng.normal(size=len(edges))
        edge_data["kind"] = rng.integers(-3, 3, len(edges)).astype(np.int32)
    affine = general_affine(rng) if draw(st.booleans()) else None
    meta = {"source": "hypothesis", "seed": seed} if draw(st.booleans()) else {}
    g = VesselGraph(
        pos,
        rad,
        np.asarray(edges, dtype=np.int64).reshape(-1, 2),
        node_data=node_data,
        edge_data=edge_data,
        affine=affine,
        meta=meta,
    )
    want_root = draw(st.booleans()) if rooted is None else rooted
    if want_root:
        g = g.to_tree(root=int(rng.integers(0, n)))
    return g


def undirected_edge_set(graph: VesselGraph) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in graph.edges.tolist()}
