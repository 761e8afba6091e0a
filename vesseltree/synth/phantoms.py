"""Small analytic phantoms with exact geometry, in millimetres.

Each function returns a :class:`~vesseltree.VesselGraph` whose centerline is sampled every
``step_mm`` (or closer) along straight lines, circular arcs or a helix, so the truth is known in
closed form. Voxelised with :func:`vesseltree.synth.voxelize`, each edge becomes a round cone (the
hull of its two end spheres), so every tube ends in a hemispherical cap.

Every phantom carries ``node_data["branch_id"]``, ``meta["phantom"]`` (its name) and its
arguments (and derived truth such as child radii) as further ``meta`` keys.
Trees (``cylinder``, ``y_bifurcation``, ``helix``) are rooted at their inlet, node 0; the others
(``loop``, ``touching_tubes``, ``forest``) are not trees and are returned unrooted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validate import as_float_array
from ..errors import InvalidInputError, describe
from ..graph import VesselGraph

__all__ = ["cylinder", "y_bifurcation", "helix", "loop", "touching_tubes", "forest"]


def _number(value, name: str, *, positive: bool = True, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise InvalidInputError(f"{name} must be a number, got {describe(value)}")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidInputError(f"{name} must be finite, got {value!r}")
    if positive and out <= 0:
        raise InvalidInputError(f"{name} must be positive (mm), got {value!r}")
    if minimum is not None and out < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def _unit(value, name: str) -> np.ndarray:
    d = as_float_array(value, name, (3,))
    n = float(np.linalg.norm(d))
    if n == 0:
        raise InvalidInputError(f"{name} must be a non-zero 3-vector, got {d.tolist()}")
    return d / n


def _perpendicular(d: np.ndarray) -> np.ndarray:
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = helper - (helper @ d) * d
    return u / np.linalg.norm(u)


def _line(a: np.ndarray, b: np.ndarray, step: float) -> np.ndarray:
    """Points from ``a`` to ``b`` (both included) at most ``step`` apart."""
    m = max(1, math.ceil(float(np.linalg.norm(b - a)) / step - 1e-9))
    t = np.linspace(0.0, 1.0, m + 1)[:, None]
    return a + t * (b - a)


class _Builder:
    """Accumulates paths into one node/edge list, sharing nodes where paths join."""

    def __init__(self):
        self.pos: list[np.ndarray] = []
        self.rad: list[float] = []
        self.bid: list[int] = []
        self.edges: list[tuple[int, int]] = []
        self.n_branches = 0

    def path(
        self, points: np.ndarray, radii, *, start: int | None = None, end: int | None = None
    ) -> tuple[int, int]:
        """Add a path; ``start``/``end`` reuse existing nodes for its first/last point.

        Returns the (first, last) node indices.
        """
        bid = self.n_branches
        self.n_branches += 1
        radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(points),))
        ids = []
        for k, (p, r) in enumerate(zip(points, radii)):
            if k == 0 and start is not None:
                ids.append(start)
            elif k == len(points) - 1 and end is not None:
                ids.append(end)
            else:
                ids.append(len(self.pos))
                self.pos.append(np.asarray(p, dtype=np.float64))
                self.rad.append(float(r))
                self.bid.append(bid)
        self.edges.extend(zip(ids[:-1], ids[1:]))
        return ids[0], ids[-1]

    def graph(self, *, root: int | None, meta: dict[str, Any], node_data=None) -> VesselGraph:
        data = {"branch_id": np.asarray(self.bid, dtype=np.int64)}
        data.update(node_data or {})
        return VesselGraph(
            np.asarray(self.pos),
            np.asarray(self.rad),
            np.asarray(self.edges, dtype=np.int64),
            root=root,
            node_data=data,
            meta=meta,
        )


def cylinder(
    length_mm: float = 20.0,
    radius_mm: float = 2.0,
    *,
    start=(0.0, 0.0, 0.0),
    direction=(0.0, 0.0, 1.0),
    step_mm: float = 0.5,
) -> VesselGraph:
    """A straight tube of constant radius.

    Parameters
    ----------
    length_mm : float, mm
        Centerline length (the voxelised tube also has a hemispherical cap of ``radius_mm`` at
        each end).
    radius_mm : float, mm
    start : (3,) float, mm
        World position of the inlet (node 0, the root).
    direction : (3,) float
        Axis direction (normalised here).
    step_mm : float, mm
        Largest distance between consecutive nodes.

    Returns
    -------
    VesselGraph
        A rooted path graph, one branch.
    """
    length = _number(length_mm, "length_mm")
    radius = _number(radius_mm, "radius_mm")
    step = _number(step_mm, "step_mm")
    a = as_float_array(start, "start", (3,))
    d = _unit(direction, "direction")
    b = _Builder()
    b.path(_line(a, a + length * d, step), radius)
    meta = {
        "phantom": "cylinder",
        "length_mm": length,
        "radius_mm": radius,
        "start": a.tolist(),
        "direction": d.tolist(),
    }
    return b.graph(root=0, meta=meta)


def y_bifurcation(
    *,
    parent_length_mm: float = 20.0,
    child_length_mm: float = 15.0,
    radius_mm: float = 2.0,
    angle_deg: float = 75.0,
    exponent: float = 3.0,
    asymmetry: float = 1.0,
    start=(0.0, 0.0, 0.0),
    step_mm: float = 0.5,
) -> VesselGraph:
    """A straight parent that splits into two straight children in the x-z plane.

    The parent runs from ``start`` along +z; the children leave its end at a total angle
    ``angle_deg`` between them, the thinner one deviating more (each turns by the share
    ``r_other**2 / (r1**2 + r2**2)`` of the angle). Child radii follow
    ``radius_mm**exponent = r1**exponent + r2**exponent`` with ``r2 = asymmetry * r1``.

    Parameters
    ----------
    parent_length_mm, child_length_mm : float, mm
    radius_mm : float, mm
        Parent radius; the junction node carries it.
    angle_deg : float, degrees
        Total bifurcation angle, in (0, 180).
    exponent : float
        Radius exponent (3 = Murray's law), > 1.
    asymmetry : float
        ``r2 / r1``, in (0, 1].
    start : (3,) float, mm
    step_mm : float, mm

    Returns
    -------
    VesselGraph
        Rooted at node 0, one junction of degree 3, three branches; ``meta`` holds the child
        radii and directions.
    """
    lp = _number(parent_length_mm, "parent_length_mm")
    lc = _number(child_length_mm, "child_length_mm")
    r0 = _number(radius_mm, "radius_mm")
    theta = _number(angle_deg, "angle_deg")
    if theta >= 180:
        raise InvalidInputError(f"angle_deg must be in (0, 180), got {angle_deg!r}")
    g = _number(exponent, "exponent")
    if g <= 1:
        raise InvalidInputError(f"exponent must be > 1, got {exponent!r}")
    alpha = _number(asymmetry, "asymmetry")
    if alpha > 1:
        raise InvalidInputError(
            f"asymmetry must be in (0, 1] (thinner / thicker child), got {asymmetry!r}"
        )
    step = _number(step_mm, "step_mm")
    a = as_float_array(start, "start", (3,))
    r1 = r0 * (1.0 + alpha**g) ** (-1.0 / g)
    r2 = alpha * r1
    t1 = math.radians(theta) * r2 * r2 / (r1 * r1 + r2 * r2)
    t2 = math.radians(theta) - t1
    d1 = np.array([math.sin(t1), 0.0, math.cos(t1)])
    d2 = np.array([-math.sin(t2), 0.0, math.cos(t2)])
    junction_pos = a + np.array([0.0, 0.0, lp])
    b = _Builder()
    _, j = b.path(_line(a, junction_pos, step), r0)
    for d, r in ((d1, r1), (d2, r2)):
        b.path(_line(junction_pos, junction_pos + lc * d, step), r, start=j)
    meta = {
        "phantom": "y_bifurcation",
        "parent_length_mm": lp,
        "child_length_mm": lc,
        "radius_mm": r0,
        "child_radii_mm": [r1, r2],
        "angle_deg": theta,
        "exponent": g,
        "asymmetry": alpha,
        "junction": junction_pos.tolist(),
        "child_directions": [d1.tolist(), d2.tolist()],
        "start": a.tolist(),
    }
    return b.graph(root=0, meta=meta)


def helix(
    *,
    radius_mm: float = 1.0,
    helix_radius_mm: float = 6.0,
    pitch_mm: float = 8.0,
    turns: float = 2.0,
    center=(0.0, 0.0, 0.0),
    step_mm: float = 0.25,
) -> VesselGraph:
    """A tube of constant radius wound along a helix about the z axis.

    The centerline is ``center + (R cos t, R sin t, pitch t / (2 pi))`` for t in
    [0, 2 pi turns], with ``R = helix_radius_mm``; its curvature radius is
    ``(R**2 + (pitch / 2 pi)**2) / R``.

    Parameters
    ----------
    radius_mm : float, mm
        Tube radius; must be below the curvature radius, and the pitch must exceed the tube
        diameter, so the tube does not touch itself.
    helix_radius_mm, pitch_mm : float, mm
    turns : float
    center : (3,) float, mm
        Point on the helix axis at the start height.
    step_mm : float, mm
        Largest arc length between consecutive nodes.

    Returns
    -------
    VesselGraph
        A rooted path graph, one branch, rooted at its start.
    """
    r = _number(radius_mm, "radius_mm")
    big = _number(helix_radius_mm, "helix_radius_mm")
    pitch = _number(pitch_mm, "pitch_mm")
    n_turns = _number(turns, "turns")
    step = _number(step_mm, "step_mm")
    c = as_float_array(center, "center", (3,))
    h = pitch / (2 * math.pi)
    curvature_radius = (big * big + h * h) / big
    if r >= curvature_radius:
        raise InvalidInputError(
            f"radius_mm ({r}) must be below the helix's curvature radius ({curvature_radius:.3g} mm); "
            "increase helix_radius_mm or pitch_mm"
        )
    if n_turns > 1 and pitch <= 2 * r:
        raise InvalidInputError(
            f"pitch_mm must exceed the tube diameter 2 * radius_mm = {2 * r}, got {pitch!r}"
        )
    arc = 2 * math.pi * n_turns * math.hypot(big, h)
    m = max(1, math.ceil(arc / step - 1e-9))
    t = np.linspace(0.0, 2 * math.pi * n_turns, m + 1)
    pts = c + np.stack([big * np.cos(t), big * np.sin(t), h * t], axis=1)
    b = _Builder()
    b.path(pts, r)
    meta = {
        "phantom": "helix",
        "radius_mm": r,
        "helix_radius_mm": big,
        "pitch_mm": pitch,
        "turns": n_turns,
        "center": c.tolist(),
        "curvature_radius_mm": curvature_radius,
        "arc_length_mm": arc,
    }
    return b.graph(root=0, meta=meta)


def loop(
    *,
    radius_mm: float = 1.5,
    loop_radius_mm: float = 8.0,
    stem_length_mm: float = 10.0,
    center=(0.0, 0.0, 0.0),
    step_mm: float = 0.5,
) -> VesselGraph:
    """A vessel that splits into two arcs which rejoin: a graph with exactly one cycle.

    An inlet stem runs along +z up to the bottom of a circle of radius ``loop_radius_mm`` in the
    x-z plane around ``center``; the two half circles (through +x and -x) rejoin at its top, and
    an outlet stem continues along +z. Like the circle of Willis, it is not a tree, so the graph
    is unrooted.

    Parameters
    ----------
    radius_mm : float, mm
        Tube radius of every vessel.
    loop_radius_mm : float, mm
        Radius of the circle the two arcs follow; at least ``2 * radius_mm`` so that the mask
        keeps an open hole.
    stem_length_mm : float, mm
        Length of the inlet and outlet stems (positive, so both junctions have degree 3).
    center : (3,) float, mm
    step_mm : float, mm

    Returns
    -------
    VesselGraph
        Unrooted; one component, one cycle, two junctions of degree 3, four branches.
    """
    r = _number(radius_mm, "radius_mm")
    big = _number(loop_radius_mm, "loop_radius_mm")
    stem = _number(stem_length_mm, "stem_length_mm")
    step = _number(step_mm, "step_mm")
    c = as_float_array(center, "center", (3,))
    if big < 2 * r:
        raise InvalidInputError(
            f"loop_radius_mm must be at least 2 * radius_mm = {2 * r} so the loop has a hole, got {loop_radius_mm!r}"
        )
    bottom, top = c - [0.0, 0.0, big], c + [0.0, 0.0, big]
    b = _Builder()
    _, j_bottom = b.path(_line(bottom - [0.0, 0.0, stem], bottom, step), r)
    m = max(2, math.ceil(math.pi * big / step - 1e-9))
    t = np.linspace(-math.pi / 2, math.pi / 2, m + 1)
    right = c + np.stack([big * np.cos(t), np.zeros_like(t), big * np.sin(t)], axis=1)
    left = right * [-1.0, 1.0, 1.0] + [2 * c[0], 0.0, 0.0]
    _, j_top = b.path(right, r, start=j_bottom)
    b.path(left, r, start=j_bottom, end=j_top)
    b.path(_line(top, top + [0.0, 0.0, stem], step), r, start=j_top)
    meta = {
        "phantom": "loop",
        "radius_mm": r,
        "loop_radius_mm": big,
        "stem_length_mm": stem,
        "center": c.tolist(),
        "junctions": [bottom.tolist(), top.tolist()],
    }
    return b.graph(root=None, meta=meta)


def touching_tubes(
    *,
    length_mm: float = 20.0,
    radius_mm: float = 1.5,
    gap_mm: float = 0.0,
    center=(0.0, 0.0, 0.0),
    step_mm: float = 0.5,
    bend_deg: float = 0.0,
) -> VesselGraph:
    """Two separate tubes running side by side along z, ``gap_mm`` apart.

    The axes lie at ``center +- (radius_mm + gap_mm / 2, 0, 0)``, so the surfaces are
    ``gap_mm`` apart (0: touching along a line; negative: overlapping). A mask of them fuses
    where they touch, while the truth keeps two components. With ``bend_deg``, the second tube
    (+x) turns away from the first at mid-length by that angle (in the x-z plane): two fused
    vessels that part.

    Parameters
    ----------
    length_mm, radius_mm : float, mm
    gap_mm : float, mm
        Surface-to-surface gap, greater than ``-2 * radius_mm``.
    center : (3,) float, mm
        Midpoint between the two tubes' centres.
    step_mm : float, mm
    bend_deg : float, degrees
        In [0, 90): the angle by which the second tube's far half turns away (0: straight).

    Returns
    -------
    VesselGraph
        Unrooted; two components, two branches; ``node_data["tube"]`` is 0 or 1.
    """
    length = _number(length_mm, "length_mm")
    r = _number(radius_mm, "radius_mm")
    gap = _number(gap_mm, "gap_mm", positive=False)
    if gap <= -2 * r:
        raise InvalidInputError(
            f"gap_mm must be greater than -2 * radius_mm = {-2 * r}, got {gap_mm!r}"
        )
    step = _number(step_mm, "step_mm")
    bend = _number(bend_deg, "bend_deg", positive=False)
    if not 0.0 <= bend < 90.0:
        raise InvalidInputError(f"bend_deg must be in [0, 90), got {bend_deg!r}")
    c = as_float_array(center, "center", (3,))
    b = _Builder()
    offset = r + gap / 2
    tube = []
    for k, sign in enumerate((-1.0, 1.0)):
        a = c + [sign * offset, 0.0, -length / 2]
        if k == 1 and bend > 0:
            mid = a + [0.0, 0.0, length / 2]
            t = np.deg2rad(bend)
            far = mid + 0.5 * length * np.array([np.sin(t), 0.0, np.cos(t)])
            pts = np.concatenate([_line(a, mid, step), _line(mid, far, step)[1:]])
        else:
            pts = _line(a, a + [0.0, 0.0, length], step)
        b.path(pts, r)
        tube += [k] * len(pts)
    meta = {
        "phantom": "touching_tubes",
        "length_mm": length,
        "radius_mm": r,
        "gap_mm": gap,
        "center": c.tolist(),
        "bend_deg": bend,
    }
    return b.graph(root=None, meta=meta, node_data={"tube": np.asarray(tube, dtype=np.int64)})


def forest(
    *,
    separation_mm: float = 12.0,
    radius_mm: float = 1.5,
    length_mm: float = 15.0,
    step_mm: float = 0.5,
) -> VesselGraph:
    """Two disjoint trees: a Y bifurcation and, beside it along +x, a straight tube.

    Parameters
    ----------
    separation_mm : float, mm
        Distance between the inlets of the two trees along x.
    radius_mm : float, mm
        Inlet radius of both trees.
    length_mm : float, mm
        Length of the tube and of the Y's parent (its children are 0.75 of it).
    step_mm : float, mm

    Returns
    -------
    VesselGraph
        Unrooted; two components, four branches; ``node_data["tree_id"]`` is 0 (the Y) or 1
        (the tube). Each component's inlet is its thickest tip (``to_tree(keep=...)`` picks it).
    """
    sep = _number(separation_mm, "separation_mm")
    r = _number(radius_mm, "radius_mm")
    length = _number(length_mm, "length_mm")
    step = _number(step_mm, "step_mm")
    y = y_bifurcation(
        parent_length_mm=length, child_length_mm=0.75 * length, radius_mm=r, step_mm=step
    )
    # the Y's children spread at most 0.75 L sin(37.5 deg) < 0.46 L sideways
    if sep <= 0.46 * length + 2 * r:
        raise InvalidInputError(
            f"separation_mm must exceed {0.46 * length + 2 * r:.3g} mm so the trees stay apart, got {separation_mm!r}"
        )
    tube = cylinder(length, r, start=(sep, 0.0, 0.0), step_mm=step)
    n = y.n_nodes
    bid = np.concatenate([y.node_data["branch_id"], tube.node_data["branch_id"] + 3])
    meta = {
        "phantom": "forest",
        "separation_mm": sep,
        "radius_mm": r,
        "length_mm": length,
        "trees": [dict(y.meta), dict(tube.meta)],
    }
    return VesselGraph(
        np.concatenate([y.positions, tube.positions]),
        np.concatenate([y.radii, tube.radii]),
        np.concatenate([y.edges, tube.edges + n]),
        node_data={
            "branch_id": bid,
            "tree_id": np.repeat(np.array([0, 1], dtype=np.int64), [n, tube.n_nodes]),
        },
        meta=meta,
    )
