"""Real-data readers: TubeTK and VMTK centerlines, VesselVAE trees; frames checked on real data.

Synthetic files pin the behaviour exactly; the real-data tests (``shared_data`` fixture, skipped
where ``../shared/data`` is absent) measure that the centerlines land inside their own masks,
which proves the world frames of both the volume readers and the graph readers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from vesseltree import VesselGraph
from vesseltree.errors import FileFormatError, InvalidInputError
from vesseltree.io.datasets import (
    TUBETK_MAX_GAP_MM,
    read_tubetk_centerlines,
    read_vesselvae_tree,
    read_vmtk_centerlines,
    vesselvae_model_id,
)
from vesseltree.io.volumes import read_volume

log = logging.getLogger(__name__)

TUBETK_CASES = ("002", "003", "004", "006", "008", "009", "010", "011", "012", "017")


def write_lines_vtp(
    path: Path, lines: list[np.ndarray], radius_name: str, radii: list[np.ndarray] | None = None
) -> Path:
    """One polyline cell per array of points (each with its own point ids), radius point array."""
    import pyvista as pv

    points = np.concatenate(lines)
    cells = []
    start = 0
    for line in lines:
        cells += [len(line), *range(start, start + len(line))]
        start += len(line)
    poly = pv.PolyData(points, lines=np.asarray(cells))
    rad = np.concatenate(radii) if radii is not None else np.full(len(points), 0.5)
    poly.point_data[radius_name] = rad
    poly.save(str(path))
    return path


def segment(a, b, n: int) -> np.ndarray:
    return np.linspace(np.asarray(a, float), np.asarray(b, float), n)


# ---------------------------------------------------------------------- TubeTK, synthetic
@pytest.fixture
def tubetk_file(tmp_path) -> Path:
    """Trunk A along z; B starts 1 mm beside A at z=5; C is stored tip-first, its *end* 1.5 mm
    beside A at z=8; D lies far away. A repeats one point, which must be dropped."""
    a = segment([0, 0, 0], [0, 0, 10], 11)
    a = np.insert(a, 3, a[3], axis=0)  # repeated consecutive point
    b = segment([1, 0, 5], [6, 0, 5], 6)
    c = segment([0, -6, 8], [0, -1.5, 8], 10)
    d = segment([50, 50, 50], [50, 50, 55], 6)
    return write_lines_vtp(tmp_path / "VascularNetwork-999.vtp", [a, b, c, d], "Radius")


def test_tubetk_raw_tubes(tubetk_file):
    g = read_tubetk_centerlines(tubetk_file, connect=False)
    assert g.n_nodes == 11 + 6 + 10 + 6  # the repeated point is gone
    assert g.n_components == 4 and g.is_forest and g.root is None
    np.testing.assert_array_equal(np.bincount(g.node_data["tube_id"]), [11, 6, 10, 6])
    assert g.node_data["point_id"][:5].tolist() == [0, 1, 2, 3, 5]  # file point 4 repeats point 3
    assert not g.edge_data["gap_edge"].any()
    assert g.meta["n_tubes"] == 4 and "attachments" not in g.meta


def test_tubetk_connect_attaches_start_or_nearer_end(tubetk_file):
    g = read_tubetk_centerlines(tubetk_file)
    assert g.is_forest and g.n_components == 2  # A+B+C, and D alone
    att = {a["tube"]: a for a in g.meta["attachments"]}
    assert sorted(att) == [1, 2]
    assert (
        att[1]["end"] == "start"
        and att[1]["target_tube"] == 0
        and att[1]["gap_mm"] == pytest.approx(1.0)
    )
    assert (
        att[2]["end"] == "end"
        and att[2]["target_tube"] == 0
        and att[2]["gap_mm"] == pytest.approx(1.5)
    )
    # each attachment is an edge from the tube end to the nearest node of the target tube
    np.testing.assert_allclose(g.positions[att[1]["target_node"]], [0, 0, 5])
    np.testing.assert_allclose(g.positions[att[2]["target_node"]], [0, 0, 8])
    gap_edges = g.edges[g.edge_data["gap_edge"]]
    assert sorted(map(tuple, gap_edges.tolist())) == sorted(
        (a["node"], a["target_node"]) for a in g.meta["attachments"]
    )
    assert g.meta["unattached_tubes"] == [0, 3]
    assert g.degrees[att[1]["target_node"]] == 3  # the trunk is split into a junction there
    tree = g.to_tree(keep="largest")
    assert tree.is_tree and tree.n_nodes == 27


def test_tubetk_max_gap(tubetk_file):
    g = read_tubetk_centerlines(tubetk_file, max_gap_mm=1.2)
    assert [a["tube"] for a in g.meta["attachments"]] == [1]
    assert g.n_components == 3
    with pytest.raises(InvalidInputError, match="max_gap_mm must be a positive number"):
        read_tubetk_centerlines(tubetk_file, max_gap_mm=-1)


def test_tubetk_connect_never_closes_a_cycle(tmp_path):
    """B's start joins A (0.5 mm), E's start joins B's end (0.8 mm); then A's end and E's end are
    0.9 mm apart, which would close the loop A-B-E-A: the union-find must refuse it."""
    a = segment([0, 0, 0], [0, 0, 10], 21)
    b = segment([0.5, 0, 5], [5, 0, 5], 10)
    e = np.concatenate(
        [segment([5, 0, 5.8], [5, 0, 10], 6), segment([5, 0, 10], [0.9, 0, 10], 6)[1:]]
    )
    path = write_lines_vtp(tmp_path / "loop.vtp", [a, b, e], "Radius")
    g = read_tubetk_centerlines(path)
    assert g.is_tree and g.n_cycles == 0
    gaps = sorted(x["gap_mm"] for x in g.meta["attachments"])
    assert gaps == pytest.approx([0.5, 0.8])


def test_tubetk_min_spacing(tmp_path):
    path = write_lines_vtp(tmp_path / "dense.vtp", [segment([0, 0, 0], [0, 0, 10], 101)], "Radius")
    g = read_tubetk_centerlines(path, min_spacing_mm=1.0)
    assert g.n_nodes == 11
    np.testing.assert_allclose(g.positions[:, 2], np.arange(11.0), atol=1e-9)
    assert read_tubetk_centerlines(path).n_nodes == 101


def test_tubetk_bad_input(tmp_path):
    with pytest.raises(FileFormatError, match=r"nothing\.vtp.*no such file"):
        read_tubetk_centerlines(tmp_path / "nothing.vtp")
    with pytest.raises(FileFormatError, match=r"tubes\.txt.*suffix \.vtp"):
        read_tubetk_centerlines(tmp_path / "tubes.txt")
    garbage = tmp_path / "garbage.vtp"
    garbage.write_text("<VTKFile>not really</VTKFile>")
    with pytest.raises(FileFormatError, match=r"garbage\.vtp.*not a readable"):
        read_tubetk_centerlines(garbage)
    other = write_lines_vtp(tmp_path / "other.vtp", [segment([0, 0, 0], [0, 0, 1], 3)], "Thickness")
    with pytest.raises(FileFormatError, match=r"other\.vtp.*no point array 'Radius'.*Thickness"):
        read_tubetk_centerlines(other)
    zero = write_lines_vtp(
        tmp_path / "zero.vtp", [segment([0, 0, 0], [0, 0, 1], 3)], "Radius", [np.zeros(3)]
    )
    with pytest.raises(FileFormatError, match=r"zero\.vtp.*Radius must be positive"):
        read_tubetk_centerlines(zero)


# ---------------------------------------------------------------------- VMTK, synthetic
def test_vmtk_merges_shared_trunk(tmp_path):
    """Two paths share 4 exact points (own point ids), then part; path 0 repeats its last point."""
    trunk = segment([0, 0, 0], [0, 0, 3], 4)
    left = np.concatenate([trunk, segment([-1, 0, 4], [-3, 0, 6], 3)])
    left = np.concatenate([left, left[-1:]])
    right = np.concatenate([trunk, segment([1, 0, 4], [3, 0, 6], 3)])
    radii = [np.linspace(3, 1, len(left)), np.linspace(3, 1, len(right))]
    path = write_lines_vtp(tmp_path / "c.vtp", [left, right], "MaximumInscribedSphereRadius", radii)
    g = read_vmtk_centerlines(path)
    assert g.n_nodes == 4 + 3 + 3 and g.n_edges == 9 and g.is_tree
    assert g.junctions.tolist() == [3]
    assert g.node_data["n_paths"].tolist() == [2, 2, 2, 2, 1, 1, 1, 1, 1, 1]
    assert g.meta["n_points_merged"] == 4 + 1
    tree = g.to_tree()
    assert tree.root == 0  # the thickest tip is the inlet
    with pytest.raises(FileFormatError, match="MaximumInscribedSphereRadius"):
        read_vmtk_centerlines(write_lines_vtp(tmp_path / "r.vtp", [trunk], "Radius"))


# ---------------------------------------------------------------------- VesselVAE, synthetic
def write_dat(tmp_path: Path, text: str, name: str = "ArteryObjAN7-1_tree.dat") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_vesselvae_small_tree(tmp_path):
    """#;#;0;#;#;1;2 -> node 2 with left child 0 and right child 1 (nodes in file order)."""
    text = "#;#;0_[0.0, 0.0, 1.0, 0.5];#;#;1_[1.0, 0.0, 1.0, 0.4];2_[0.5, 0.0, 0.0, 1.0]"
    g = read_vesselvae_tree(write_dat(tmp_path, text))
    assert g.root == 2 and g.is_tree
    assert g.edges.tolist() == [[2, 0], [2, 1]]
    assert g.node_data["dat_id"].tolist() == [0, 1, 2]
    assert g.node_data["dat_side"].tolist() == [0, 1, -1]
    np.testing.assert_array_equal(g.radii, [0.5, 0.4, 1.0])
    np.testing.assert_array_equal(g.positions[2], [0.5, 0.0, 0.0])
    # one child on the right, exponents, trailing ';' and newline
    text = "#;#;#;5_[1e-1, -2.5E+1, 3, 2];7_[0, 0, 0, 3];\n"
    g = read_vesselvae_tree(write_dat(tmp_path, text))
    assert g.root == 1 and g.edges.tolist() == [[1, 0]]
    assert g.node_data["dat_side"].tolist() == [1, -1]
    np.testing.assert_array_equal(g.positions[0], [0.1, -25.0, 3.0])


def test_vesselvae_zero_radius_is_raised(tmp_path):
    g = read_vesselvae_tree(write_dat(tmp_path, "#;#;3_[0, 0, 1, 0.0];#;4_[0, 0, 0, 1]"))
    assert g.radii[0] == 1e-6 and g.meta["zero_radius_ids"] == [3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("#;#;0_[0, 0, 0]", r"token 2 '0_\[0, 0, 0\]' is neither"),
        ("#;#;0_[0, 0, 0, 1];#;#;1_[0, 0, 1, x]", "token 5"),
        ("#;0_[0, 0, 0, 1]", "node token 1 .* fewer than two subtrees"),
        ("#;#;0_[0, 0, 0, 1];#", "leave 2 subtrees"),
        ("#;#;0_[0, 0, 0, 1];#;#;1_[0, 0, 1, 1]", "leave 2 subtrees"),
        ("#", "leave 1 subtrees"),
        ("#;#;0_[0, 0, 0, -1]", "radius must not be negative"),
    ],
)
def test_vesselvae_malformed(tmp_path, text, message):
    path = write_dat(tmp_path, text, "bad_tree.dat")
    with pytest.raises(FileFormatError, match=message) as info:
        read_vesselvae_tree(path)
    assert "bad_tree.dat" in str(info.value)


def test_vesselvae_model_id():
    assert vesselvae_model_id("ArteryObjAN12-3_tree.dat") == 12
    assert vesselvae_model_id(Path("/x/p10ArteryObjAN12-3_tree.dat")) == 12
    assert vesselvae_model_id("ArteryObjAN187-19_tree.dat") == 187
    with pytest.raises(InvalidInputError, match="ArteryObjAN12-3_tree.dat"):
        vesselvae_model_id("tree.dat")
    with pytest.raises(FileFormatError, match="no such file"):
        read_vesselvae_tree("missing_tree.dat")


# ---------------------------------------------------------------------- real data: frames
# The 6-neighbourhood: the voxel itself and its face neighbours, i.e. the mask dilated by one
# voxel with scipy's default structuring element.
_CROSS = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


def inside_fractions(
    mask: np.ndarray, affine: np.ndarray, points: np.ndarray
) -> tuple[float, float]:
    """Fraction of world points whose nearest voxel is in ``mask``, and in the mask dilated by one."""
    inv = np.linalg.inv(affine)
    ijk = np.rint(points @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    near = ijk[:, None, :] + _CROSS[None]
    valid = np.all((near >= 0) & (near < mask.shape), axis=2)
    near = np.clip(near, 0, np.array(mask.shape) - 1)
    hit = mask[near[..., 0], near[..., 1], near[..., 2]] & valid
    return float(hit[:, 0].mean()), float(hit.any(axis=1).mean())


@pytest.fixture(scope="module")
def tubetk(shared_data):
    """Every gold case: (mask volume, raw tubes, connected forest), read once."""
    out = {}
    for case in TUBETK_CASES:
        mask = read_volume(shared_data / "tubetk" / "masks" / f"labels-{case}.nii.gz")
        vtp = shared_data / "tubetk" / "centerlines" / f"VascularNetwork-{case}.vtp"
        out[case] = (
            mask,
            read_tubetk_centerlines(vtp, connect=False),
            read_tubetk_centerlines(vtp),
        )
    return out


def test_tubetk_gold_points_fall_inside_their_masks(tubetk, record_property):
    report = {}
    for case, (mask, tubes, _) in tubetk.items():
        inside, dilated = inside_fractions(mask.data > 0, mask.affine, tubes.positions)
        report[case] = (round(100 * inside, 2), round(100 * dilated, 2))
        assert dilated >= 0.99, (
            f"case {case}: only {100 * dilated:.2f} % of gold points inside the dilated mask"
        )
    record_property("tubetk_percent_inside_and_dilated", report)
    log.info("TubeTK gold points inside mask / dilated mask (%%): %s", report)
    print(f"\nTubeTK % inside mask, inside mask dilated by 1 voxel: {report}")


def test_tubetk_frames_are_not_a_coincidence(tubetk):
    """Control: the same points through the affine with world x and y negated (an LPS/RAS mix-up)
    miss the mask, so the pass above measures the frame, not a forgiving mask."""
    mask, tubes, _ = tubetk["002"]
    flipped = np.diag([-1.0, -1.0, 1.0, 1.0]) @ mask.affine
    assert inside_fractions(mask.data > 0, flipped, tubes.positions)[1] < 0.2


def test_tubetk_connect_builds_a_forest(tubetk, record_property):
    report = {}
    for case, (mask, tubes, forest) in tubetk.items():
        n_tubes = forest.meta["n_tubes"]
        assert tubes.n_components == n_tubes
        assert forest.is_forest
        assert forest.n_nodes == tubes.n_nodes
        assert forest.n_components == len(forest.meta["unattached_tubes"])
        assert forest.n_components <= n_tubes / 8, (
            f"case {case}: {forest.n_components} components of {n_tubes} tubes"
        )
        gaps = np.array([a["gap_mm"] for a in forest.meta["attachments"]])
        assert gaps.max() <= TUBETK_MAX_GAP_MM
        # the bridges are real junctions: most run inside the vessel mask all along
        e = forest.edges[forest.edge_data["gap_edge"]]
        t = np.linspace(0, 1, 11)[:, None, None]
        samples = ((1 - t) * forest.positions[e[:, 0]] + t * forest.positions[e[:, 1]]).reshape(
            -1, 3
        )
        inv = np.linalg.inv(mask.affine)
        ijk = np.rint(samples @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
        bridge_inside = (mask.data[tuple(ijk.T)] > 0).reshape(len(t), -1).all(axis=0).mean()
        assert bridge_inside > 0.7
        ends = sum(a["end"] == "end" for a in forest.meta["attachments"])
        report[case] = {
            "tubes": n_tubes,
            "components": forest.n_components,
            "attached_by_end": ends,
            "median_gap_mm": round(float(np.median(gaps)), 2),
            "bridges_inside_mask": round(float(bridge_inside), 3),
        }
    record_property("tubetk_connect", report)
    print(f"\nTubeTK connect: {report}")


@pytest.fixture(scope="module")
def aorta(shared_data):
    folder = shared_data / "vmtk_aorta"
    return read_volume(folder / "aorta-final-levelset.mha"), read_vmtk_centerlines(
        folder / "aorta-centerline.vtp"
    )


def test_vmtk_aorta_centerline_inside_levelset(aorta, record_property):
    """All reference points fall where the level set is negative, and the mask's distance to the
    wall there matches the inscribed-sphere radius."""
    levelset, graph = aorta
    assert graph.is_tree and graph.n_nodes == 346 and len(graph.junctions) == 1
    vessel = levelset.data < 0
    inside, _ = inside_fractions(vessel, levelset.affine, graph.positions)
    assert inside == 1.0
    ijk = np.rint(levelset.world_to_voxel(graph.positions)).astype(np.int64)
    # the affine is axis-aligned here, so its column norms are the voxel sizes along i, j, k
    assert np.allclose(np.abs(levelset.affine[:3, :3]), np.diag(levelset.spacing))
    wall = ndi.distance_transform_edt(vessel, sampling=levelset.spacing)[tuple(ijk.T)]
    ratio = np.median(wall) / np.median(graph.radii)
    assert abs(ratio - 1) < 0.15
    # control: without the LPS -> RAS conversion the points leave the image entirely
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ levelset.affine
    raw = np.rint(graph.positions @ np.linalg.inv(lps)[:3, :3].T + np.linalg.inv(lps)[:3, 3])
    assert not np.any(np.all((raw >= 0) & (raw < levelset.shape), axis=1))
    record_property(
        "aorta",
        {
            "inside": inside,
            "median_wall_mm": float(np.median(wall)),
            "median_radius_mm": float(np.median(graph.radii)),
        },
    )
    print(
        f"\nVMTK aorta: {100 * inside:.1f} % inside; median wall distance {np.median(wall):.2f} mm "
        f"vs inscribed radius {np.median(graph.radii):.2f} mm"
    )


def test_vmtk_branch_file_gives_the_same_tree(shared_data, aorta):
    _, graph = aorta
    branches = read_vmtk_centerlines(shared_data / "vmtk_aorta" / "aorta-centerline-branches.vtp")
    assert branches.is_tree and len(branches.junctions) == 1
    assert branches.total_length == pytest.approx(graph.total_length, rel=1e-3)


# ---------------------------------------------------------------------- real data: VesselVAE
def test_vesselvae_hand_checked_files(shared_data):
    """Two small files, parsed by hand from their tokens (coordinates left out):

    ArteryObjAN162-16_tree.dat: ``# # # # # 8 7 6 5 # # # # # 0 1 2 3 4`` (19 tokens, 9 nodes,
    10 '#'). Reading backwards (node, right, left): root 4; right subtree 3 -> 2 -> 1 -> 0, each
    with an empty left, 0 a leaf; left subtree 5 -> 6 -> 7 -> 8, likewise. So 9 nodes, root 4 with
    two children (3 right, 5 left), leaves 0 and 8, one node with two children (the root) and no
    node of degree >= 3. Geometrically one vessel 0..8 rooted in its middle.

    ArteryObjAN129-13_tree.dat: ``#x7 13 12 11 10 9 #x6 7 6 5 4 3 1 0`` (25 tokens, 12 nodes).
    Root 0 has one child 1 (right); 1 has left 9 (chain 9-10-11-12-13, a stub with radii
    < 0.004 mm) and right 3 (chain 3-4-5-6-7). Leaves 13 and 7; node 1 is the only bifurcation
    (degree 3).
    """
    folder = shared_data / "vesselvae_trees"
    g = read_vesselvae_tree(folder / "ArteryObjAN162-16_tree.dat")
    ids = g.node_data["dat_id"]
    assert g.n_nodes == 9 and ids[g.root] == 4
    kids = {int(ids[n]): sorted(ids[g.children[n]].tolist()) for n in range(g.n_nodes)}
    assert kids == {8: [], 7: [8], 6: [7], 5: [6], 0: [], 1: [0], 2: [1], 3: [2], 4: [3, 5]}
    assert sorted(ids[[n for n in range(9) if len(g.children[n]) == 0]].tolist()) == [0, 8]
    assert len(g.junctions) == 0

    g = read_vesselvae_tree(folder / "ArteryObjAN129-13_tree.dat")
    ids = g.node_data["dat_id"]
    assert g.n_nodes == 12 and ids[g.root] == 0
    kids = {int(ids[n]): ids[g.children[n]].tolist() for n in range(g.n_nodes)}  # left first
    assert kids == {
        13: [],
        12: [13],
        11: [12],
        10: [11],
        9: [10],
        7: [],
        6: [7],
        5: [6],
        4: [5],
        3: [4],
        1: [9, 3],
        0: [1],
    }
    assert ids[g.junctions].tolist() == [1]
    assert g.radii[ids.tolist().index(13)] == pytest.approx(1.435043608515744e-05)


def test_vesselvae_all_real_trees(shared_data, record_property):
    files = sorted((shared_data / "vesselvae_trees").glob("*.dat"))
    assert len(files) == 1231
    nodes, leaves, bifurcations, junctions, zero = [], [], [], [], 0
    models = set()
    for path in files:
        g = read_vesselvae_tree(path)
        n_children = np.array([len(c) for c in g.children])
        assert isinstance(g, VesselGraph) and g.is_tree
        assert g.root == g.n_nodes - 1  # the last node token
        assert n_children.max() <= 2
        assert len(np.unique(g.node_data["dat_id"])) == g.n_nodes
        nodes.append(g.n_nodes)
        leaves.append(int((n_children == 0).sum()))
        bifurcations.append(int((n_children == 2).sum()))
        junctions.append(len(g.junctions))
        zero += len(g.meta["zero_radius_ids"])
        models.add(vesselvae_model_id(path))
    nodes, leaves, bifurcations = np.array(nodes), np.array(leaves), np.array(bifurcations)
    totals = {
        "nodes": int(nodes.sum()),
        "leaves": int(leaves.sum()),
        "bifurcations": int(bifurcations.sum()),
        "degree3_junctions": int(sum(junctions)),
        "zero_radius_nodes": zero,
        "models": len(models),
    }
    record_property("vesselvae_totals", totals)
    print(
        f"\nVesselVAE totals: {totals}; nodes {nodes.min()}-{nodes.max()}, "
        f"bifurcations {bifurcations.min()}-{bifurcations.max()}"
    )
    assert (nodes.min(), nodes.max()) == (9, 197)
    # a binary tree has one more leaf than nodes with two children
    np.testing.assert_array_equal(leaves, bifurcations + 1)
    assert bifurcations.min() == 0 and bifurcations.max() <= 6  # data README: 0-6
    assert totals == {
        "nodes": 47453,
        "leaves": 3122,
        "bifurcations": 1891,
        "degree3_junctions": 676,
        "zero_radius_nodes": 8,
        "models": 58,
    }
