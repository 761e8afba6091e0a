"""Tests of vesseltree.mesh: accuracy against exact round-cone unions, topology after an STL round
trip, masks through general affines, print checks on good and bad meshes, print preparation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import shapes

from vesseltree import VesselGraph, Volume
from vesseltree.errors import EmptyInputError, FileFormatError, InvalidInputError
from vesseltree.mesh import (
    check_printable,
    count_self_intersections,
    exact_distance,
    export,
    from_graph,
    from_mask,
    graph_cones,
    hollow,
    open_ends,
)

trimesh = pytest.importorskip("trimesh")


def segment(length=10.0, r=1.0):
    return VesselGraph(np.array([[0, 0, 0], [length, 0, 0.0]]), [r, r], [[0, 1]])


def y_tree():
    """A rooted Y with tapering branches and several nodes per branch."""
    return shapes.y_tree()


def loop_graph():
    t = np.linspace(0, 2 * np.pi, 13)[:-1]
    pts = np.stack([8 * np.cos(t), 8 * np.sin(t), np.zeros_like(t)], axis=1)
    edges = [[i, (i + 1) % 12] for i in range(12)]
    return VesselGraph(pts, np.full(12, 1.0), edges)


def round_trip(mesh, tmp_path, name="m.stl", **kw):
    path = export(mesh, tmp_path / name)
    return check_printable(path, **kw)


# ----------------------------------------------------------------------------- accuracy
def test_cylinder_volume_and_face_error():
    g = segment(10.0, 2.0)
    m = from_graph(g, voxel_size=0.25)
    exact = np.pi * 4 * 10 + 4 / 3 * np.pi * 8
    assert abs(m.volume / exact - 1) < 0.01
    d = exact_distance(m.triangles_center, graph_cones(g).cones)
    assert np.percentile(np.abs(d), 95) <= 0.02


def test_compensation_brings_thin_tube_volume_within_one_percent():
    g = segment(10.0, 1.0)
    exact = np.pi * 10 + 4 / 3 * np.pi
    plain = from_graph(g, voxel_size=0.25)
    comp = from_graph(g, voxel_size=0.25, compensate=True)
    assert abs(comp.volume / exact - 1) < 0.01
    assert abs(comp.volume / exact - 1) < abs(plain.volume / exact - 1)
    assert count_self_intersections(comp.vertices, comp.faces) == 0


def test_round_cone_union_accuracy_tree():
    g = y_tree()
    m = from_graph(g, voxel_size=0.25)
    cones = graph_cones(g).cones
    d = exact_distance(m.triangles_center, cones)
    assert np.percentile(np.abs(d), 95) <= 0.02
    ref = from_graph(g, voxel_size=0.0625, compensate=True)
    comp = from_graph(g, voxel_size=0.25, compensate=True)
    assert abs(comp.volume / ref.volume - 1) < 0.01
    assert (
        abs(m.volume / ref.volume - 1) < 0.02
    )  # plain marching cubes: chords cut ~1.6 % at r = 4 voxels


def test_sphere_volume():
    g = VesselGraph(np.zeros((1, 3)), [2.0], np.zeros((0, 2), int))
    m = from_graph(g, voxel_size=0.25)
    assert abs(m.volume / (4 / 3 * np.pi * 8) - 1) < 0.01


def test_child_starts_at_its_own_radius():
    g = y_tree()
    cones = graph_cones(g).cones
    # the junction node (2) has radius 1.1; child cones leaving it start near their own 0.8
    at_junction = np.isclose(cones.a, g.positions[2]).all(1) & (cones.h > 0)
    assert at_junction.sum() == 2
    assert np.all(cones.ra[at_junction] < 0.9)
    node = graph_cones(g, junction_radius="node").cones
    assert np.allclose(node.ra[np.isclose(node.a, g.positions[2]).all(1)], 1.1)


# ----------------------------------------------------------------------------- topology
def test_tree_watertight_genus0_after_stl(tmp_path):
    rep = round_trip(
        from_graph(y_tree(), voxel_size=0.2), tmp_path, expected_bodies=1, expected_genus=0
    )
    assert rep.ok, str(rep)
    assert rep.euler_number == 2 and rep.self_intersections == 0


def test_loop_genus1_after_stl(tmp_path):
    rep = round_trip(
        from_graph(loop_graph(), voxel_size=0.25), tmp_path, expected_bodies=1, expected_genus=1
    )
    assert rep.ok, str(rep)


def test_one_body_per_component(tmp_path):
    a, b = segment(5.0, 1.0), segment(5.0, 0.8).transform(np.diag([1.0, 1, 1, 1]) + np.eye(4) * 0)
    pos = np.concatenate([a.positions, b.positions + [0, 6, 0]])
    g = VesselGraph(pos, np.r_[a.radii, b.radii], [[0, 1], [2, 3]])
    rep = round_trip(from_graph(g, voxel_size=0.25), tmp_path, expected_bodies=2, expected_genus=0)
    assert rep.ok, str(rep)
    one = from_graph(g, voxel_size=0.25, keep="largest")
    assert one.body_count == 1


def test_blend_keeps_watertight_and_adds_fillet(tmp_path):
    g = y_tree()
    hard = from_graph(g, voxel_size=0.2)
    soft = from_graph(g, voxel_size=0.2, blend=0.6)
    assert soft.volume > hard.volume
    assert soft.volume < hard.volume * 1.05
    rep = round_trip(soft, tmp_path, expected_bodies=1, expected_genus=0)
    assert rep.ok, str(rep)


def test_vertex_data_and_formats(tmp_path):
    m = from_graph(y_tree(), voxel_size=0.25, vertex_data=True)
    r = m.vertex_attributes["radius"]
    assert r.min() > 0.6 and r.max() < 1.3
    import importlib.util

    suffixes = [".stl", ".ply", ".obj", ".vtp"] + (
        [".3mf"] if importlib.util.find_spec("lxml") else []
    )
    for suffix in suffixes:
        p = export(m, tmp_path / f"m{suffix}")
        assert p.stat().st_size > 0
    import pyvista as pv

    poly = pv.read(str(tmp_path / "m.vtp"))
    assert "radius" in poly.point_data and "branch_id" in poly.point_data
    ply = (tmp_path / "m.ply").read_bytes()[:600]
    assert b"radius" in ply


def test_decimate_within_bound():
    g = segment(10.0, 1.5)
    m = from_graph(g, voxel_size=0.2)
    d = from_graph(g, voxel_size=0.2, decimate=0.03)
    assert len(d.faces) < len(m.faces)
    assert d.is_watertight
    err = np.abs(exact_distance(d.vertices, graph_cones(g).cones))
    assert err.max() <= 0.03


# ----------------------------------------------------------------------------- masks
def _rotated_affine():
    ang = np.deg2rad(30)
    rot = np.array([[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]])
    rot = rot @ np.array([[1, 0, 0], [0, np.cos(0.4), -np.sin(0.4)], [0, np.sin(0.4), np.cos(0.4)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.3, 0.35, 0.5]) @ np.diag([1, -1, 1])  # flipped axis: det < 0
    aff[:3, 3] = [5, -3, 2]
    return aff


def _phantom_mask(graph, aff, shape=(90, 90, 60)):
    """Voxel centres inside the union (exact distance), on the grid of ``aff``."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    # centre the grid on the graph
    c = graph.positions.mean(0)
    shift = c - world.mean(0)
    aff = aff.copy()
    aff[:3, 3] += shift
    world += shift
    d = exact_distance(world, graph_cones(graph).cones, reach=2.0)
    return Volume((d < 0).reshape(shape), aff)


def test_from_mask_rotated_anisotropic_within_one_voxel(tmp_path):
    g = y_tree()
    vol = _phantom_mask(g, _rotated_affine())
    assert np.linalg.det(vol.affine[:3, :3]) < 0
    m = from_mask(vol, keep="largest")
    assert m.volume > 0 and m.is_watertight
    d = exact_distance(m.vertices, graph_cones(g).cones)
    assert np.percentile(np.abs(d), 95) <= vol.spacing.max()
    rep = round_trip(m, tmp_path, expected_bodies=1)
    assert rep.ok, str(rep)


def test_from_mask_probability_map_and_errors():
    g = segment(6.0, 1.5)
    vol = _phantom_mask(g, np.diag([0.4, 0.4, 0.4, 1.0]), shape=(40, 20, 20))
    prob = Volume(np.asarray(vol.data, np.float32) * 0.9, vol.affine)
    m = from_mask(prob, smoothing=None)
    assert m.is_watertight and m.volume > 0
    with pytest.raises(InvalidInputError, match="level"):
        from_mask(Volume(np.asarray(vol.data, np.float32) * 3, vol.affine))
    with pytest.raises(EmptyInputError):
        from_mask(Volume(np.zeros((5, 5, 5), bool)))
    with pytest.raises(InvalidInputError, match="keep"):
        from_mask(vol, keep="biggest")


# ----------------------------------------------------------------------------- print checks
def test_check_detects_bad_meshes(tmp_path):
    good = trimesh.creation.icosphere(subdivisions=3, radius=2.0)
    assert check_printable(good).ok
    open_mesh = trimesh.Trimesh(good.vertices, good.faces[:-3], process=False)
    rep = check_printable(open_mesh)
    assert not rep.watertight and not rep.ok
    flipped = good.copy()
    flipped.faces = flipped.faces[:, ::-1]
    rep = check_printable(flipped)
    assert not rep.outward_normals and not rep.ok
    half = good.copy()
    f = half.faces.copy()
    f[: len(f) // 2] = f[: len(f) // 2, ::-1]
    rep = check_printable(trimesh.Trimesh(good.vertices, f, process=False))
    assert not rep.winding_consistent
    two = trimesh.util.concatenate([good, good.copy().apply_translation([10, 0, 0])])
    rep = check_printable(two, expected_bodies=1)
    assert rep.bodies == 2 and not rep.ok
    c1 = trimesh.creation.cylinder(radius=1.0, height=10.0)
    c2 = c1.copy().apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    both = trimesh.util.concatenate([c1, c2])
    rep = round_trip(both, tmp_path, name="cross.stl")
    assert rep.self_intersections > 0 and not rep.ok
    assert "self-intersect" in str(rep)


def test_wall_thickness_of_tube():
    m = from_graph(segment(10.0, 1.0), voxel_size=0.2)
    rep = check_printable(m)
    assert 1.8 < rep.min_wall_thickness < 2.05


# ----------------------------------------------------------------------------- print preparation
def test_hollow_open_ends_printable(tmp_path):
    g = y_tree()
    h = hollow(g, wall_mm=0.6, voxel_size=0.15)
    rep = round_trip(h, tmp_path, expected_bodies=1)
    assert rep.ok, str(rep)
    # three open ends on a Y: a closed shell with three holes has genus 2
    assert rep.genus == 2
    assert 0.45 < rep.min_wall_thickness < 0.75


def test_hollow_closed_and_open_ends_on_solid(tmp_path):
    g = y_tree()
    closed = hollow(g, wall_mm=0.6, open_ends=False, voxel_size=0.2)
    assert closed.body_count == 2 or closed.is_watertight  # an outer shell and the sealed lumen
    solid = from_graph(g, voxel_size=0.2)
    cut = open_ends(solid, g, nodes="leaves")
    assert cut.volume < solid.volume
    rep = round_trip(cut, tmp_path, expected_bodies=1, expected_genus=0)
    assert rep.ok, str(rep)


# ----------------------------------------------------------------------------- errors
def test_errors_name_the_argument(tmp_path):
    g = segment()
    with pytest.raises(EmptyInputError):
        from_graph(VesselGraph(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 2), int)))
    with pytest.raises(InvalidInputError, match="voxel_size"):
        from_graph(g, voxel_size=0)
    with pytest.raises(InvalidInputError, match="voxel_size"):
        from_graph(g, voxel_size=-1.0)
    with pytest.raises(InvalidInputError, match="graph"):
        from_graph("not a graph")
    with pytest.raises(InvalidInputError, match="keep"):
        from_graph(g, keep="most")
    with pytest.raises(InvalidInputError, match="wall_mm"):
        hollow(g, wall_mm=0)
    m = from_graph(g, voxel_size=0.5)
    with pytest.raises(FileFormatError, match="suffix"):
        export(m, tmp_path / "m.xyz")
    with pytest.raises(InvalidInputError, match="nodes"):
        open_ends(m, g, nodes="everything")


def test_cli_mesh(tmp_path, capsys):
    import argparse

    from vesseltree.io import write_graph
    from vesseltree.mesh.cli import add_parser

    src = write_graph(y_tree(), tmp_path / "y.npz")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "mesh",
            str(src),
            "-o",
            str(tmp_path / "y.stl"),
            "--voxel-size",
            "0.25",
            "--hollow",
            "0.6",
            "--open-ends",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "printable             yes" in out


# ----------------------------------------------------------------------------- thin tubes, topology
def thin_tree():
    """A rooted tree of 31 branches whose radii fall to 0.08 mm, far below a 0.3 mm grid."""
    from vesseltree.synth import random_tree

    return random_tree(
        seed=0,
        n_branches=31,
        root_radius_mm=0.5,
        root_radius_sd_mm=0.0,
        min_radius_mm=0.08,
        collision_margin_mm=0.6,
        taper_range=(0.1, 0.3),
    )


def test_thin_branches_keep_one_body_per_component(tmp_path):
    g = thin_tree()
    assert g.radii.min() < 0.3 * 0.9
    # the old behaviour (thin tubes contoured as they are) breaks the tree into pieces
    with pytest.warns(RuntimeWarning, match="may break"):
        with pytest.warns(RuntimeWarning, match="bodies"):
            broken = from_graph(g, voxel_size=0.3, thin="keep")
    assert broken.metadata["vesseltree"]["bodies"] > 1
    with pytest.warns(RuntimeWarning, match=r"thickened to 0\.27 mm"):
        m = from_graph(g, voxel_size=0.3)
    st = m.metadata["vesseltree"]
    assert st["bodies"] == st["expected_bodies"] == 1
    rep = round_trip(m, tmp_path, expected_bodies=g.n_components, expected_genus=0)
    assert rep.ok, str(rep)
    with pytest.raises(InvalidInputError, match="voxel_size"):
        from_graph(g, voxel_size=0.3, thin="error")
    with pytest.raises(InvalidInputError, match="thin"):
        from_graph(g, voxel_size=0.3, thin="fatten")


def test_bodies_per_component_and_no_warning_when_resolved(tmp_path):
    # three parallel tubes of radius 0.3 mm (resolvable at 0.3 mm: 0.9 voxel = 0.27 mm), 3 mm apart
    pos = np.array([[0, 3.0 * k, z] for k in range(3) for z in (0.0, 4.0)])
    g = VesselGraph(pos, np.full(6, 0.3), [[0, 1], [2, 3], [4, 5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = from_graph(g, voxel_size=0.3)
    rep = round_trip(m, tmp_path, expected_bodies=3, expected_genus=0)
    assert rep.ok, str(rep)


def test_separate_tubes_closer_than_the_grid_stay_apart(tmp_path):
    # two separate tubes 0.02 mm apart, the gap between grid planes: a 0.25 mm grid has samples
    # inside each that are neighbours, and marching cubes joined them into one body; a seam
    # halfway between them keeps them two, as the graph has
    pos = np.array([[0, 0, 0], [8, 0, 0], [0, 2.14, 0], [8, 2.14, 0.0]])
    g = VesselGraph(pos, [1.06, 1.06, 1.06, 1.06], [[0, 1], [2, 3]])
    m = from_graph(g, voxel_size=0.25)
    st = m.metadata["vesseltree"]
    assert st["bodies"] == 2 and st["apart_samples"] > 0
    rep = round_trip(m, tmp_path, expected_bodies=2, expected_genus=0)
    assert rep.ok, str(rep)
    # each tube gives way only near the other, by up to a voxel: along this 8 mm long contact
    # (the worst case, parallel tubes) that is 7% of their volume
    exact = 2 * (np.pi * 1.06**2 * 8.0 + 4.0 / 3.0 * np.pi * 1.06**3)
    assert -0.08 < m.volume / exact - 1 < 0.0
    far = np.abs(m.vertices[:, 1] - 1.07) > 0.6
    r = np.hypot(
        m.vertices[far, 1] - np.where(m.vertices[far, 1] > 1.07, 2.14, 0.0), m.vertices[far, 2]
    )
    inner = (m.vertices[far, 0] > 0.5) & (m.vertices[far, 0] < 7.5)
    assert np.abs(r[inner] - 1.06).max() < 0.03
    # overlapping by 0.1 mm they are one body, as their union is
    pos[2:, 1] = 2.02
    fused = from_graph(VesselGraph(pos, [1.06] * 4, [[0, 1], [2, 3]]), voxel_size=0.25)
    assert fused.metadata["vesseltree"]["bodies"] == 1


def test_flat_ends_continue_one_radius_and_cut_by_a_plane(tmp_path):
    g = segment(10.0, 1.0)
    m = from_graph(g, voxel_size=0.2, ends="flat")
    # a cylinder from x = -1 to x = 11 (one radius past each end node), flat at both ends
    exact = np.pi * 1.0**2 * 12.0
    assert abs(m.volume / exact - 1) < 0.015
    assert m.vertices[:, 0].min() == pytest.approx(-1.0, abs=0.05)
    assert m.vertices[:, 0].max() == pytest.approx(11.0, abs=0.05)
    rep = round_trip(m, tmp_path, expected_bodies=1, expected_genus=0)
    assert rep.ok, str(rep)
    with pytest.raises(InvalidInputError, match="ends"):
        from_graph(g, ends="square")


def test_extracted_graph_of_synthetic_mask_is_printable(tmp_path):
    from vesseltree.centerline import extract_graph
    from vesseltree.synth import random_tree, voxelize

    mask = voxelize(random_tree(seed=1, n_branches=7), spacing=0.25)
    g = extract_graph(mask)
    m = from_graph(g, voxel_size=0.25)
    rep = round_trip(m, tmp_path, expected_bodies=g.n_components, expected_genus=g.n_cycles)
    assert rep.ok, str(rep)
    assert rep.self_intersections == 0


# ----------------------------------------------------------------------------- forks: genus 0
def test_closing_of_two_half_spaces():
    from vesseltree.mesh._field import closing_of_two

    rho = 0.25
    # two facing walls 0.3 mm apart (narrower than 2 rho): the middle of the slit is filled
    assert closing_of_two(0.15, 0.15, -1.0, rho) < 0
    # 0.6 mm apart: an empty ball fits, the distance is the union's
    assert closing_of_two(0.3, 0.3, -1.0, rho) == pytest.approx(0.3)
    # a right-angle crease: the corner lies (sqrt(2) - 1) rho inside the fillet of radius rho
    assert closing_of_two(0.0, 0.0, 0.0, rho) == pytest.approx(-(np.sqrt(2) - 1) * rho)
    # on the fillet circle (centre at a = b = rho, radius rho) the distance is zero
    t = rho - rho / np.sqrt(2)
    assert closing_of_two(t, t, 0.0, rho) == pytest.approx(0.0, abs=1e-12)
    # away from the crease, or inside, nothing changes
    assert closing_of_two(0.05, 2.0, 0.0, rho) == pytest.approx(0.05)
    assert closing_of_two(-0.4, 0.1, 0.3, rho) == pytest.approx(-0.4)


def narrow_fork(rng, voxel=0.25):
    """A parent and two children leaving at 2-24 degrees with their own radii (each at least
    two voxels), one of them winding towards its sibling, nodes 0.4 mm apart."""
    r0 = rng.uniform(2.0 * voxel, 3.0)
    step = 0.4
    pts = [[0.0, 0.0, -6.0 + step * i] for i in range(16)]
    rad = [r0] * 16
    edges = [[i, i + 1] for i in range(15)]
    half = np.radians(rng.uniform(1.0, 12.0))
    phi = rng.uniform(0.0, 2.0 * np.pi)
    for sign in (1, -1):
        ang = sign * half + rng.normal(0.0, 0.1)
        d = np.array([np.sin(ang) * np.cos(phi), np.sin(ang) * np.sin(phi), np.cos(ang)])
        rc = r0 * rng.uniform(0.6, 1.0)
        n = int(rng.uniform(6.0, 15.0) / step)
        wiggle, freq = rng.uniform(0.0, 0.4), rng.uniform(0.3, 1.5)
        side = np.cross(d, rng.normal(size=3))
        side /= np.linalg.norm(side)
        prev = 15
        for i in range(1, n + 1):
            s = step * i
            pts.append((d * s + side * wiggle * np.sin(freq * s)).tolist())
            rad.append(max(rc * (1 - 0.01 * i), 0.9 * voxel))
            edges.append([prev, len(pts) - 1])
            prev = len(pts) - 1
    return VesselGraph(np.array(pts), np.array(rad), edges, root=0)


@pytest.mark.slow
def test_narrow_forks_are_genus_0():
    rng = np.random.default_rng(7)
    forks = [narrow_fork(rng) for _ in range(230)]
    bad = []
    for i, g in enumerate(forks):
        st = from_graph(g, voxel_size=0.25).metadata["vesseltree"]
        if (st["bodies"], st["genus"]) != (1, 0):
            bad.append((i, st["bodies"], st["genus"]))
    assert not bad, f"forks with bodies/genus other than 1/0: {bad}"
    # the set holds forks that the grid alone gets wrong: the exact union leaves tunnels there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plain = [
            from_graph(g, voxel_size=0.25, close=0).metadata["vesseltree"]["genus"] for g in forks
        ]
    assert max(plain) > 0


def thin_fork(offset):
    """A fork of thin tubes (radius about one voxel at 0.25 mm) from the 5,001-branch synthetic
    tree (seed 2): the children leave the parent at about 75 degrees, then run side by side
    1.3-1.6 voxels apart; a lone sphere at ``-4 - offset`` mm sets where the grid falls."""
    pos = np.array(
        [
            [-0.343, -0.979, 0.631],
            [-0.252, -0.891, 0.530],
            [-0.168, -0.818, 0.411],
            [-0.101, -0.733, 0.290],
            [-0.062, -0.616, 0.185],
            [-0.055, -0.468, 0.120],
            [-0.055, -0.309, 0.082],
            [-0.037, -0.152, 0.045],
            [0.000, 0.000, 0.000],
            [-0.020, 0.121, 0.015],
            [-0.051, 0.239, 0.037],
            [-0.095, 0.352, 0.062],
            [-0.144, 0.464, 0.078],
            [-0.184, 0.580, 0.071],
            [-0.203, 0.698, 0.040],
            [-0.198, 0.814, -0.003],
            [-0.178, 0.931, -0.040],
            [-0.151, 1.050, -0.057],
            [-0.130, 1.170, -0.041],
            [-0.127, 1.285, 0.004],
            [-0.143, 1.394, 0.061],
            [-0.174, 1.500, 0.116],
            [-0.211, 1.610, 0.158],
            [0.072, 0.065, -0.074],
            [0.146, 0.131, -0.146],
            [0.222, 0.200, -0.212],
            [0.298, 0.275, -0.271],
            [0.369, 0.359, -0.323],
            [0.432, 0.452, -0.370],
            [0.484, 0.554, -0.412],
            [0.527, 0.661, -0.453],
            [0.565, 0.769, -0.496],
            [0.602, 0.874, -0.545],
            [0.645, 0.972, -0.604],
            [0.700, 1.053, -0.676],
            [0.769, 1.109, -0.759],
            [0.848, 1.140, -0.847],
        ]
    )
    rad = np.array(
        [
            0.341,
            0.341,
            0.340,
            0.340,
            0.340,
            0.339,
            0.339,
            0.338,
            0.338,
            0.266,
            0.266,
            0.265,
            0.265,
            0.265,
            0.264,
            0.264,
            0.264,
            0.263,
            0.263,
            0.262,
            0.262,
            0.262,
            0.261,
            0.259,
            0.258,
            0.258,
            0.258,
            0.258,
            0.258,
            0.258,
            0.258,
            0.258,
            0.258,
            0.257,
            0.257,
            0.257,
            0.257,
        ]
    )
    # parent: nodes 0..8 (8 is the junction); children: 9..22 and 23..36
    e = [[i, i + 1] for i in range(8)] + [[8, 9], [8, 23]]
    e += [[i, i + 1] for i in range(9, 22)] + [[i, i + 1] for i in range(23, 36)]
    pts = np.vstack([pos, np.full(3, -4.0) - offset])
    return VesselGraph(pts, np.r_[rad, 0.5], e)


def test_thin_fork_is_genus_0_wherever_the_grid_falls():
    # the closing by tangent planes alone left a handle between these children at offset 11
    # (the planes of tubes one voxel thick make an isolated filled sample between them); the
    # struts across the crotch make the web between them solid
    offsets = np.random.default_rng(0).uniform(0.0, 0.25, (12, 3))
    got, struts = [], []
    for off in offsets:
        st = from_graph(thin_fork(off), voxel_size=0.25).metadata["vesseltree"]
        got.append((st["bodies"], st["genus"]))
        struts.append(st.get("web_struts", 0))
    assert got == [(2, 0)] * len(offsets)
    assert min(struts) > 0


def wiggling_siblings(offset):
    """A fork from the 101-branch synthetic tree (seed 14): two children (0.75 and 0.54 mm)
    leave the junction at the origin, part to a 0.38 mm gap, come back to 0.21 mm and then part
    for good; a lone sphere at ``-4 - offset`` mm sets where the grid falls."""
    pos = np.array(
        [
            [5.39, 6.19, -1.44],
            [5.14, 5.87, -1.39],
            [4.90, 5.54, -1.35],
            [4.66, 5.20, -1.33],
            [4.42, 4.87, -1.30],
            [4.16, 4.57, -1.22],
            [3.88, 4.30, -1.08],
            [3.60, 4.08, -0.87],
            [3.35, 3.89, -0.61],
            [3.11, 3.71, -0.33],
            [2.90, 3.52, -0.04],
            [2.70, 3.29, 0.24],
            [2.51, 3.02, 0.48],
            [2.31, 2.69, 0.63],
            [2.10, 2.34, 0.65],
            [1.87, 2.01, 0.57],
            [1.64, 1.71, 0.42],
            [1.38, 1.43, 0.26],
            [1.12, 1.16, 0.10],
            [0.83, 0.89, -0.02],
            [0.55, 0.60, -0.08],
            [0.27, 0.30, -0.06],
            [0.00, 0.00, 0.00],
            [-0.15, -0.27, 0.18],
            [-0.36, -0.49, 0.37],
            [-0.62, -0.67, 0.55],
            [-0.89, -0.84, 0.69],
            [-1.17, -1.07, 0.76],
            [-1.40, -1.34, 0.76],
            [-1.59, -1.64, 0.72],
            [-1.78, -1.95, 0.69],
            [-1.96, -2.25, 0.74],
            [-2.12, -2.51, 0.93],
            [-2.19, -2.72, 1.21],
            [-2.18, -2.92, 1.51],
            [-2.12, -3.14, 1.78],
            [-2.04, -3.38, 2.04],
            [-2.00, -3.66, 2.26],
            [-2.04, -3.95, 2.46],
            [-2.17, -4.24, 2.64],
            [-0.20, -0.09, -0.12],
            [-0.39, -0.19, -0.26],
            [-0.56, -0.29, -0.40],
            [-0.72, -0.41, -0.56],
            [-0.88, -0.55, -0.71],
            [-1.05, -0.70, -0.82],
            [-1.23, -0.85, -0.88],
            [-1.44, -1.00, -0.89],
            [-1.64, -1.15, -0.85],
            [-1.84, -1.29, -0.80],
            [-2.04, -1.43, -0.74],
            [-2.24, -1.57, -0.69],
            [-2.44, -1.72, -0.66],
            [-2.64, -1.88, -0.67],
            [-2.82, -2.03, -0.76],
            [-2.97, -2.13, -0.93],
            [-3.11, -2.18, -1.14],
            [-3.23, -2.19, -1.36],
            [-3.36, -2.16, -1.57],
            [-3.50, -2.12, -1.78],
            [-3.65, -2.06, -1.97],
            [-3.82, -2.00, -2.14],
            [-4.01, -1.94, -2.30],
            [-4.22, -1.92, -2.45],
            [-4.43, -1.94, -2.58],
            [-4.64, -1.99, -2.71],
            [-4.84, -2.08, -2.83],
        ]
    )
    rad = np.repeat([0.85, 0.84, 0.75, 0.54, 0.53], [3, 20, 17, 13, 14])
    n = len(pos)
    edges = [(i, i + 1) for i in range(39)] + [(22, 40)] + [(i, i + 1) for i in range(40, n - 1)]
    lone = np.round(-4.0 - np.asarray(offset), 3)
    pos = np.vstack([pos, lone, lone + [0.0, 0.0, 0.001]])
    return VesselGraph(pos, np.r_[rad, 0.5, 0.5], edges + [(n, n + 1)])


def test_siblings_that_part_and_come_back_are_one_closed_crotch():
    # a fork's closing ran from the junction to the first gap over 1.5 voxels; the second
    # approach (0.21 mm) was left to the grid, which fused it in patches: a handle at 3 of these
    # 48 grid placements (measured). The run now ends only where the gap has opened to 2 voxels.
    offsets = np.r_[[np.zeros(3)], np.random.default_rng(2).uniform(0.0, 0.25, (47, 3))]
    got = [
        from_graph(wiggling_siblings(o), voxel_size=0.25).metadata["vesseltree"]["genus"]
        for o in offsets
    ]
    assert got == [0] * len(offsets)


@pytest.mark.slow
def test_synthetic_trees_are_genus_0_after_stl(tmp_path):
    from vesseltree.synth import random_tree

    plain_genus = []
    # 15 and 30 have a tunnel at a fork without the closing; in 14 two siblings part by 0.38 mm
    # and come back to 0.21 mm, which was a handle while a fork's run ended at the first 1.5
    # voxel gap (the grid fused the second approach in patches)
    for seed in (14, 15, 30):
        g = random_tree(seed=seed, n_branches=101, preset="large")
        m = from_graph(g, voxel_size=0.25)
        st = m.metadata["vesseltree"]
        assert (st["bodies"], st["genus"]) == (1, 0), (seed, st["bodies"], st["genus"])
        if seed == 14:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            plain = from_graph(g, voxel_size=0.25, close=0)
        plain_genus.append(plain.metadata["vesseltree"]["genus"])
    assert min(plain_genus) > 0
    rep = round_trip(m, tmp_path, expected_bodies=1, expected_genus=0)
    assert rep.ok, str(rep)


# ----------------------------------------------------------------------------- joint cuts
def _wiggly_chain(seed: int, n: int = 60):
    """A dense, bending, tapering polyline: cones much shorter than their radius."""
    rng = np.random.default_rng(seed)
    step = rng.normal(0, 1, (n - 1, 3)) * 0.05 + np.array([0.2, 0.0, 0.0])
    pts = np.concatenate([[[0.0, 0.0, 0.0]], np.cumsum(step, axis=0)])
    r = 1.2 + 0.4 * np.sin(np.linspace(0, 3, n)) + rng.uniform(-0.05, 0.05, n)
    return pts, r


def test_joint_cut_region_is_dominated_by_the_next_cone():
    from vesseltree.mesh._field import Cones, joint_cuts

    for seed in range(4):
        pts, r = _wiggly_chain(seed)
        cones = Cones.build(pts[:-1], pts[1:], r[:-1], r[1:], np.zeros(len(pts) - 1))
        pad = 0.5
        cut = joint_cuts(cones, pad)
        # (a cone stored as one sphere, where one end ball holds the other, is left whole)
        assert np.isfinite(cut[:-1]).mean() > 0.8 and np.isinf(cut[-1])  # the chain's end too
        rng = np.random.default_rng(seed)
        k = rng.integers(0, len(cones) - 1, 20_000)
        p = cones.b[k] + rng.normal(0, 1, (k.size, 3)) * (r.max() + pad)
        x = np.einsum("ij,ij->i", p - cones.a[k], cones.u[k])
        # the points the field evaluates (within pad of cone k) past its cut
        past = (x > cut[k]) & (cones.sdf(p, k) <= pad)
        assert past.sum() > 1000
        d_k, d_next = cones.sdf(p[past], k[past]), cones.sdf(p[past], k[past] + 1)
        assert np.all(d_next <= d_k + 1e-9)
    # another group, or a next sphere that does not hold this one's end: no cut
    cones = Cones.build(pts[:-1], pts[1:], r[:-1], r[1:], np.arange(len(pts) - 1) % 2)
    assert np.isinf(joint_cuts(cones, 0.5)).all()
    shrunk = Cones.build(pts[:-1], pts[1:], r[:-1], r[1:] + 0.01, np.zeros(len(pts) - 1))
    assert np.isinf(joint_cuts(shrunk, 0.5)).all()


def test_joint_cuts_leave_the_surface_unchanged(monkeypatch):
    import vesseltree.mesh._field as field

    pts, r = _wiggly_chain(1, 120)
    side, rs = _wiggly_chain(2, 50)
    side = side[:, [1, 0, 2]] + pts[40]  # a branch leaving node 40
    pos = np.concatenate([pts, side[1:]])
    edges = [[i, i + 1] for i in range(119)] + [[40, 120]] + [[i, i + 1] for i in range(120, 168)]
    g = VesselGraph(pos, np.concatenate([r, 0.6 * rs[1:]]), edges)
    cut = from_graph(g, voxel_size=0.2, refine=False)
    whole_cut = field.joint_cuts
    monkeypatch.setattr(field, "joint_cuts", lambda c, pad: np.full(len(c), np.inf))
    whole = from_graph(g, voxel_size=0.2, refine=False)
    monkeypatch.setattr(field, "joint_cuts", whole_cut)
    assert np.array_equal(cut.faces, whole.faces)
    assert np.abs(cut.vertices - whole.vertices).max() < 1e-5
    s_cut, s_whole = cut.metadata["vesseltree"]["samples"], whole.metadata["vesseltree"]["samples"]
    assert s_cut < 0.7 * s_whole
