"""Benchmark of vesseltree.mesh against peers; writes benchmarks/results/mesh.md and mesh_hollow.png.

Methods on the same inputs, each checked on its STL as read back from disk:

- ``vesseltree``: :func:`vesseltree.mesh.from_graph` (block-sparse narrow band + marching cubes);
- ``pyvista tubes``: one ``PolyData.tube`` per branch, concatenated (not a solid: overlapping shells);
- ``manifold3d``: exact union of per-edge hulls of two spheres (if installed);
- ``MC on mask``: plain marching cubes on the voxelised mask (0.5 mm, a typical image grid);
- ``brute force``: every voxel against every cone (same field, same grid), on a subtree only.

Synthetic trees: one :func:`vesseltree.synth.random_tree` each, grown with the ``"large"`` preset
(a thicker inlet, less taper and wider forks than the coronary preset, so that the radius budget
allows thousands of branches and no tube is thinner than a 0.25 mm grid resolves).

Surface error: distance of face centroids (and vertices) to the exact round-cone union
(synthetic), or of face centroids to the reference surface (VMTK aorta). Peak memory is the
tracemalloc peak of a second, traced run (numpy allocations).

Run: ``python benchmarks/mesh.py [--quick]`` (``--quick`` skips the 5,000-branch tree, manifold3d
and the TubeTK masks).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
#: timed runs per method on the 100- and 1,000-branch trees (the median is reported)
REPEATS = 3


def measure(fn, *, traced: bool = True, repeats: int = 1):
    """(result, seconds without tracing: the median of ``repeats`` runs, tracemalloc peak MB from
    one more, traced run)."""
    import warnings

    times = []
    for _ in range(max(int(repeats), 1)):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))
    if not traced:
        return out, dt, float("nan")
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, dt, peak / 2**20


def stl_check(mesh, tmp: Path, name: str, **kw):
    from vesseltree.mesh import check_printable, export

    path = export(mesh, tmp / f"{name}.stl")
    rep = check_printable(path, wall_rays=0, **kw)
    return rep, path.stat().st_size / 2**20


def union_error(mesh, cones, n=100_000):
    """Face-centroid p95 / max and vertex p95 distance (mm) to the exact union of ``cones``."""
    from vesseltree.mesh import exact_distance

    rng = np.random.default_rng(0)
    c = np.asarray(mesh.triangles_center)
    v = np.asarray(mesh.vertices)
    if len(c) > n:
        c = c[rng.choice(len(c), n, replace=False)]
    if len(v) > n:
        v = v[rng.choice(len(v), n, replace=False)]
    d = np.abs(exact_distance(c, cones, reach=3.0))
    dv = np.abs(exact_distance(v, cones, reach=3.0))
    return f"{np.percentile(d, 95):.3f} / {d.max():.3f} (vertices {np.percentile(dv, 95):.3f})"


def surface_error(mesh, ref, n=100_000):
    """Centroid -> reference distance (nearest of dense points sampled on the reference)."""
    from scipy.spatial import cKDTree

    pts, _ = __import__("trimesh").sample.sample_surface_even(ref, 400_000, seed=0)
    tree = cKDTree(np.concatenate([pts, ref.vertices]))
    c = np.asarray(mesh.triangles_center)
    if len(c) > n:
        c = c[np.random.default_rng(0).choice(len(c), n, replace=False)]
    d, _ = tree.query(c)
    return float(np.percentile(d, 95)), float(np.median(d))


def tubes(graph):
    import pyvista as pv
    import trimesh

    parts = []
    for path in graph.branches:
        pts = graph.positions[path]
        line = pv.lines_from_points(pts)
        line.point_data["r"] = graph.radii[path]
        tube = line.tube(scalars="r", absolute=True, n_sides=16, capping=True).triangulate()
        f = tube.faces.reshape(-1, 4)[:, 1:]
        parts.append(trimesh.Trimesh(np.asarray(tube.points), f, process=False))
    return trimesh.util.concatenate(parts)


def manifold_union(cones, segments=16):
    import manifold3d as mf
    import trimesh

    hulls = []
    b = cones.b
    for i in range(len(cones)):
        s1 = mf.Manifold.sphere(float(cones.ra[i]), segments).translate(tuple(cones.a[i]))
        s2 = mf.Manifold.sphere(float(cones.rb[i]), segments).translate(tuple(b[i]))
        hulls.append(mf.Manifold.batch_hull([s1, s2]))
    u = mf.Manifold.batch_boolean(hulls, mf.OpType.Add)
    m = u.to_mesh()
    return trimesh.Trimesh(
        np.asarray(m.vert_properties)[:, :3], np.asarray(m.tri_verts), process=False
    )


def mask_mc(graph, spacing=0.5):
    from vesseltree.mesh import from_mask
    from vesseltree.synth import voxelize

    vol = voxelize(graph, spacing=spacing)
    return from_mask(vol, smoothing=None)


def brute_force(cones, voxel):
    lo, hi = cones.bounds(2 * voxel)
    origin, top = lo.min(0), hi.max(0)
    axes = [np.arange(origin[k], top[k] + voxel, voxel) for k in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    field = np.full(len(grid), np.inf)
    for k in range(len(cones)):
        np.minimum(field, cones.sdf(grid, np.full(len(grid), k)), out=field)
    return field


def row(name, case, dt, mem, mesh, rep, size, err, expected=None):
    exp = "" if expected is None else f" (exp. {expected[0]} / {expected[1]})"
    return (
        f"| {case} | {name} | {dt:.2f} | {mem:.0f} | {len(mesh.faces):,} | {size:.1f} | "
        f"{'yes' if rep.watertight else 'no'} | {rep.bodies} | "
        f"{rep.genus if rep.genus is not None else '-'}{exp} | {rep.self_intersections} | "
        f"{'yes' if rep.ok else 'no'} | {err} |"
    )


def private_mc_speed(graph, voxel=0.25):
    """Seconds of the per-brick marching cubes with scikit-image's public function and with its
    private Cython kernel (same blocks), or None where the private module is gone."""
    import vesseltree.mesh._field as fld
    from vesseltree.mesh import from_graph

    try:
        from skimage.measure import _marching_cubes_lewiner_cy as mc_cy
        from skimage.measure._marching_cubes_lewiner import _get_mc_luts
    except ImportError:
        return None
    luts = _get_mc_luts()

    def private(block):
        verts, faces, _, _ = mc_cy.marching_cubes(block, 0.0, luts, 1, False, None)
        return verts[:, ::-1], faces.reshape(-1, 3)

    public = fld._marching_cubes
    out = {}
    for name, fn in (("public", public), ("private", private), ("public again", public)):
        fld._marching_cubes = fn
        try:
            m, _, _ = measure(lambda: from_graph(graph, voxel_size=voxel), traced=False)
        finally:
            fld._marching_cubes = public
        out[name] = (m.metadata["vesseltree"]["t_mc"], len(m.faces))
    return out


def render(mesh, path: Path, title: str) -> None:
    import pyvista as pv

    pv.OFF_SCREEN = True
    faces = np.hstack([np.full((len(mesh.faces), 1), 3), mesh.faces]).ravel()
    poly = pv.PolyData(np.asarray(mesh.vertices), faces)
    pl = pv.Plotter(off_screen=True, window_size=(900, 900))
    pl.add_mesh(poly, color="#d8b08c", smooth_shading=True)
    pl.view_isometric()
    pl.add_text(title, font_size=10)
    pl.screenshot(str(path))
    pl.close()


def write(rows, notes) -> str:
    """Write the table so far to benchmarks/results/mesh.md (atomically) and return it."""
    from vesseltree._atomic import write_text_atomic

    header = (
        "| case | method | time s | peak MB | triangles | STL MB | watertight | bodies | genus "
        "(expected bodies / genus) | self-int. pairs | printable | error p95 / max mm |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    text = (
        "# Mesh benchmark\n\nMachine: this sandbox, 2 shared cores, numpy single-threaded work; "
        "timings are noisy (other jobs ran alongside): on the 100- and 1,000-branch trees every method's "
        f"time is the median of {REPEATS} runs, elsewhere one run. Every check is on the STL as read back from "
        "disk. Error vs the exact round-cone union (face centroids p95 / max, and vertices p95) "
        "unless marked `ref`. 'printable' = check_printable ok, with the expected bodies / genus "
        "where given (a genus given as '<= n' is not checked).\n\n"
        + header
        + "\n"
        + "\n".join(rows)
        + "\n\n## Notes\n"
        + "\n".join(notes)
        + "\n"
    )

    write_text_atomic(RESULTS / "mesh.md", text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--quick", action="store_true", help="skip the 5,000-branch tree, manifold3d, TubeTK masks"
    )
    ap.add_argument(
        "--only-real", action="store_true", help="only the real data and extracted graphs"
    )
    args = ap.parse_args(argv)
    import trimesh

    from vesseltree.mesh import (
        close_contacts,
        expected_topology,
        from_graph,
        from_mask,
        graph_cones,
        hollow,
    )
    from vesseltree.synth import random_tree

    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    rows, notes = [], []
    # the radius budget of a 3 mm inlet ends near 1,100 branches; 5,000 need a 5.5 mm inlet
    sizes = [(0, 101, 3.0), (1, 1001, 3.0)] + ([] if args.quick else [(2, 5001, 5.5)])
    if args.only_real:
        sizes = [(0, 101, 3.0)]
    trees = {}
    for seed, nb, r_in in sizes:
        t0 = time.perf_counter()
        g = random_tree(seed=seed, n_branches=nb, preset="large", root_radius_mm=r_in)
        trees[f"synth {nb - 1}"] = g
        notes.append(
            f"- synth tree seed {seed}, n_branches={nb}, inlet {r_in} mm: {len(g.branches)} branches, "
            f"{g.n_edges} edges, radius {g.radii.min():.2f}-{g.radii.max():.2f} mm, extent "
            f"{np.ptp(g.positions, 0).round(0).astype(int).tolist()} mm, grown in "
            f"{time.perf_counter() - t0:.1f} s"
        )
    for label, g in trees.items() if not args.only_real else []:
        case = f"{label} ({len(g.branches)} br, {g.n_edges} edges)"
        print(case, flush=True)
        cones = graph_cones(g).cones
        exp = expected_topology(g)
        reps = 1 if "5000" in case else REPEATS
        m, dt, mem = measure(lambda g=g: from_graph(g, voxel_size=0.25), repeats=reps)
        rep, size = stl_check(m, tmp, "vt", expected_bodies=exp[0], expected_genus=exp[1])
        rows.append(
            row("vesseltree 0.25 mm", case, dt, mem, m, rep, size, union_error(m, cones), exp)
        )
        st = m.metadata["vesseltree"]
        notes.append(
            f"- {case}: vesseltree stages: setup {st['t_setup']:.2f} s, field {st['t_field']:.2f} s "
            f"({st['samples']:,} samples in {st['bricks_surface']} of {st['bricks_active']} bricks of "
            f"16^3), marching cubes {st['t_mc']:.2f} s, weld {st['t_weld']:.2f} s, chord refinement "
            f"{st.get('t_refine', 0.0):.2f} s ({st['refine']['faces_in']:,} -> "
            f"{st['refine']['faces_out']:,} faces), total {st['t_total']:.2f} s; dense grid would "
            f"be {np.prod(st['dims']) / 1e6:.0f} M voxels"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_p = time.perf_counter()
            plain = from_graph(g, voxel_size=0.25, close=0)
            t_p = time.perf_counter() - t_p
            unref = from_graph(g, voxel_size=0.25, refine=False)
        sp = plain.metadata["vesseltree"]
        notes.append(
            f"- {case}: fork closing (default, close = 1 voxel): {st.get('closed_samples', 0):,} "
            f"samples moved, genus {st['genus']}; without it (close=0): genus {sp['genus']}, "
            f"{t_p:.2f} s, error {union_error(plain, cones)}"
        )
        notes.append(
            f"- {case}: without chord refinement (refine=False): {len(unref.faces):,} faces, "
            f"{unref.metadata['vesseltree']['t_total']:.2f} s, error {union_error(unref, cones)}"
        )
        if "5000" not in case:
            # the volume against a finer mesh of the same union (0.0625 mm for 100 branches)
            fine = 0.0625 if "100 " in case else 0.125
            ref = from_graph(g, voxel_size=fine)
            notes.append(
                f"- {case}: volume vs the {fine} mm mesh: default {100 * (m.volume / ref.volume - 1):+.2f} %, "
                f"without refinement {100 * (unref.volume / ref.volume - 1):+.2f} %"
            )
            del ref
        del plain, unref
        if rep.genus != exp[1]:
            near = close_contacts(g, cones, float(np.sqrt(3) * 0.25))
            notes.append(
                f"- {case}: genus {rep.genus}: {len(near)} contact regions between branches "
                f"within sqrt(3) voxels away from their junction, {int((near[:, 3] < 0).sum())} "
                "of them true overlaps; the handle sits at a fork"
            )
        if "100 " in case:
            mc, dtc, memc = measure(
                lambda g=g: from_graph(g, voxel_size=0.25, compensate=True), repeats=reps
            )
            repc, sizec = stl_check(mc, tmp, "vtc", expected_bodies=exp[0], expected_genus=exp[1])
            rows.append(
                row(
                    "vesseltree 0.25 mm, compensate",
                    case,
                    dtc,
                    memc,
                    mc,
                    repc,
                    sizec,
                    union_error(mc, cones),
                    exp,
                )
            )
        if "5000" not in case:
            t, dtt, memt = measure(lambda g=g: tubes(g), repeats=reps)
            rept, sizet = stl_check(t, tmp, "tubes")
            rows.append(
                row("pyvista tubes", case, dtt, memt, t, rept, sizet, union_error(t, cones))
            )
            mm, dtm, memm = measure(lambda g=g: mask_mc(g), repeats=reps)
            repm, sizem = stl_check(mm, tmp, "mc")
            rows.append(
                row("MC on 0.5 mm mask", case, dtm, memm, mm, repm, sizem, union_error(mm, cones))
            )
        if not args.quick and "100 " in case:
            try:
                u, dtu, memu = measure(lambda cones=cones: manifold_union(cones), repeats=reps)
                repu, sizeu = stl_check(u, tmp, "mf")
                rows.append(
                    row("manifold3d union", case, dtu, memu, u, repu, sizeu, union_error(u, cones))
                )
            except ImportError:
                notes.append("- manifold3d not installed")
        if "100 " in case:
            # brute force vs block-sparse on a subtree, same field and grid (timed once each)
            sub = g.subgraph(np.arange(min(g.n_nodes, 200)))
            sc = graph_cones(sub).cones
            _, dtb, _ = measure(lambda sc=sc: brute_force(sc, 0.25), traced=False)
            _, dts, _ = measure(lambda sub=sub: from_graph(sub, voxel_size=0.25), traced=False)
            notes.append(
                f"- brute force (every voxel x every cone, the field only) on a {sub.n_edges}-edge "
                f"subtree at 0.25 mm: {dtb:.2f} s; vesseltree {dts:.3f} s for the whole mesh: "
                f"{dtb / dts:.0f}x"
            )
        write(rows, notes)
        if "1000 " in case:
            sp = private_mc_speed(g)
            if sp is None:
                notes.append("- marching cubes: skimage's private kernel is not importable here")
            else:
                notes.append(
                    f"- marching cubes on {case}: public skimage.measure.marching_cubes "
                    f"{sp['public'][0]:.2f} s / {sp['public again'][0]:.2f} s (two runs) vs the "
                    f"private Cython kernel {sp['private'][0]:.2f} s, same {sp['public'][1]:,} "
                    "faces; the public API is used"
                )

    # ---------------------------------------------------------------- real data
    from vesseltree.centerline import with_wall_radii
    from vesseltree.io import read_tubetk_centerlines, read_vmtk_centerlines, read_volume
    from vesseltree.mesh.graph_mesh import end_cutters
    from vesseltree.volume import Volume

    aorta = DATA / "vmtk_aorta"
    write(rows, notes)
    if aorta.is_dir():
        ref = trimesh.load(str(aorta / "aorta-surface.stl"), force="mesh")
        g = read_vmtk_centerlines(aorta / "aorta-centerline.vtp")
        case = f"VMTK aorta centerline ({g.n_edges} edges)"
        cut = end_cutters(g, "all", wall=0.0, voxel=0.25)
        vol = read_volume(aorta / "aorta-final-levelset.mha")
        lumen = Volume(np.asarray(vol.data) < 0, vol.affine)
        t_w = time.perf_counter()
        g_wall = with_wall_radii(g, lumen)
        t_w = time.perf_counter() - t_w
        for radii, gg, ends in (
            ("inscribed", g, "round"),
            ("inscribed", g, "flat"),
            ("wall", g_wall, "round"),
            ("wall", g_wall, "flat"),
        ):
            m, dt, mem = measure(
                lambda gg=gg, ends=ends: from_graph(gg, voxel_size=0.25, ends=ends)
            )
            rep, size = stl_check(m, tmp, "aorta", expected_bodies=1, expected_genus=0)
            p95, med = surface_error(m, ref)
            c = np.asarray(m.triangles_center)
            beyond = np.zeros(len(c), bool)
            for k in range(len(cut)):
                beyond |= np.einsum("ij,j->i", c - cut.p[k], cut.t[k]) > 0
            p95b, medb = surface_error(trimesh.Trimesh(m.vertices, m.faces[~beyond]), ref)
            rows.append(
                row(
                    f"vesseltree 0.25 mm, {radii} radii, ends={ends}",
                    case,
                    dt,
                    mem,
                    m,
                    rep,
                    size,
                    f"ref {p95:.2f} (median {med:.2f}); without the end caps {p95b:.2f} "
                    f"(median {medb:.2f})",
                )
            )
        neg = Volume(-np.asarray(vol.data, np.float32), vol.affine)
        mm, dtm, memm = measure(lambda: from_mask(neg, level=0.0, keep="largest"))
        repm, sizem = stl_check(mm, tmp, "aorta_mask")
        p95m, medm = surface_error(mm, ref)
        rows.append(
            row(
                "from_mask (level set < 0)",
                "VMTK aorta segmentation",
                dtm,
                memm,
                mm,
                repm,
                sizem,
                f"ref {p95m:.2f} (median {medm:.2f})",
            )
        )
        notes.append(
            f"- VMTK aorta: image voxel {np.round(vol.spacing, 3).tolist()} mm; errors are face-centroid "
            "distances to the reference surface aorta-surface.stl, mm (95th percentile). 'Without the "
            "end caps' drops the mesh faces beyond the planes through the three end nodes (the "
            "reference is capped by flat clip planes about one radius past them). 'inscribed "
            "radii': the file's MaximumInscribedSphereRadius; 'wall radii': with_wall_radii(centerline, "
            f"level set < 0), the median wall distance over 48 rays normal to the centerline "
            f"({t_w:.2f} s; {g_wall.meta['radii_kept']} of {g.n_nodes} nodes kept their radius: "
            "the junction and the nodes within its ball), median ratio to the inscribed radius "
            f"{np.median(g_wall.radii / g.radii):.3f}."
        )
        h, dth, memh = measure(lambda: hollow(g, wall_mm=1.5, voxel_size=0.3))
        reph, sizeh = stl_check(h, tmp, "aorta_hollow", expected_bodies=1, expected_genus=2)
        rows.append(
            row(
                "hollow 1.5 mm wall, 3 open ends",
                case,
                dth,
                memh,
                h,
                reph,
                sizeh,
                "-",
                (1, 2),
            )
        )
        try:
            render(
                h,
                RESULTS / "mesh_hollow.png",
                f"hollow aorta print, wall 1.5 mm, open ends; printable: {reph.ok}",
            )
        except Exception as exc:  # noqa: BLE001 - rendering is optional (no display / GL)
            notes.append(f"- render failed: {exc}")
    tubetk = DATA / "tubetk" / "centerlines" / "VascularNetwork-002.vtp"
    write(rows, notes)
    if tubetk.is_file():
        g = read_tubetk_centerlines(tubetk, min_spacing_mm=0.25)
        case = f"TubeTK 002 gold ({len(g.branches)} br, {g.n_edges} edges, {g.n_components} comp)"
        print(case, flush=True)
        cones = graph_cones(g).cones
        over = close_contacts(g, cones, 0.0)
        exp = expected_topology(g, over)
        m, dt, mem = measure(lambda: from_graph(g, voxel_size=0.25))
        # the pairwise count of overlaps bounds the genus from above (three tubes overlapping
        # in one place count three times), so only the bodies are checked
        rep, size = stl_check(m, tmp, "tubetk", expected_bodies=exp[0])
        rows.append(
            row(
                "vesseltree 0.25 mm",
                case,
                dt,
                mem,
                m,
                rep,
                size,
                union_error(m, cones),
                (exp[0], f"<= {exp[1]}"),
            )
        )
        notes.append(
            f"- TubeTK 002 gold: radius 5th percentile {np.percentile(g.radii, 5):.2f} mm; "
            f"{len(over)} places where tubes of different branches truly overlap (round cones "
            f"intersect away from a shared node), so {exp[0]} bodies / genus at most {exp[1]} are "
            f"expected rather than the graph's {g.n_components} components / {g.n_cycles} cycles"
        )

    # ---------------------------------------------------------------- extracted graphs
    from vesseltree.centerline import extract_graph
    from vesseltree.synth import voxelize

    masks = [
        (
            "synth coronary 31 br, mask 0.25 mm",
            lambda: voxelize(random_tree(seed=0, n_branches=31), spacing=0.25),
        )
    ]
    if not args.quick:
        for name in ("labels-002.nii.gz", "labels-003.nii.gz"):
            path = DATA / "tubetk" / "masks" / name
            if path.is_file():
                masks.append((f"TubeTK {name.split('.')[0]}", lambda path=path: read_volume(path)))
    for label, load in masks:
        write(rows, notes)
        vol = load()
        t0 = time.perf_counter()
        g = extract_graph(vol)
        te = time.perf_counter() - t0
        case = f"extracted: {label} ({len(g.branches)} br, {g.n_components} comp)"
        print(case, flush=True)
        cones = graph_cones(g).cones
        over = close_contacts(g, cones, 0.0)
        exp = expected_topology(g, over)
        voxel = 0.25 if "synth" in label else 0.3
        m, dt, mem = measure(lambda g=g, voxel=voxel: from_graph(g, voxel_size=voxel))
        # bodies checked; the genus from pairwise overlaps is an upper bound (see above)
        check_genus = exp[1] if len(over) == 0 else None
        rep, size = stl_check(
            m, tmp, "extracted", expected_bodies=exp[0], expected_genus=check_genus
        )
        if check_genus is None:
            exp = (exp[0], f"<= {exp[1]}")
        rows.append(
            row(
                f"vesseltree {voxel} mm",
                case,
                dt,
                mem,
                m,
                rep,
                size,
                union_error(m, cones),
                exp,
            )
        )
        notes.append(
            f"- {case}: extract_graph {te:.1f} s; graph {g.n_components} components / "
            f"{g.n_cycles} cycles; {len(over)} true overlaps between tubes of different branches "
            f"(radii are cross-section equivalents, and touching vessels of a mask overlap), so "
            f"{exp[0]} bodies / genus {exp[1]} expected (the genus from pairwise overlaps is an "
            "upper bound)"
        )
        del vol

    text = write(rows, notes)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
