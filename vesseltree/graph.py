"""`VesselGraph`: the one type every stage of vesseltree speaks.

A vessel graph is a set of nodes (centerline points with a lumen radius) joined by edges. All
geometry is in world millimetres, in the frame of the source image's affine (NIfTI / RAS). The
object is immutable: every operation returns a new graph, and derived values (degrees, branches,
lengths, parents...) are computed once and cached.

A real vascular graph need not be a tree (the circle of Willis has a loop; touching vessels fuse in
masks), so a `VesselGraph` holds any simple undirected graph. Where the graph is a rooted tree,
``root`` is set and every edge is stored parent -> child; :meth:`VesselGraph.to_tree` makes one
explicitly and records what it had to cut in ``meta["cuts"]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree

from ._validate import as_float_array, check_affine, readonly
from .errors import InvalidInputError, describe

__all__ = ["VesselGraph"]

log = logging.getLogger(__name__)


def _check_data_dict(data, n: int, name: str, what: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if data is None:
        return out
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"{name} must be a dict of arrays, got {describe(data)}")
    for key, value in data.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"{name} keys must be non-empty strings, got {key!r}")
        arr = np.array(value)  # a copy, so the caller cannot mutate the graph
        if arr.dtype.kind not in "biuf":
            raise InvalidInputError(
                f"{name}[{key!r}] must be numeric or boolean, got dtype {arr.dtype}"
            )
        if arr.ndim == 0 or arr.shape[0] != n:
            raise InvalidInputError(
                f"{name}[{key!r}] must have one row per {what} ({n}), got shape {arr.shape}"
            )
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise InvalidInputError(f"{name}[{key!r}] must be finite, got NaN or inf")
        out[key] = readonly(arr)
    return out


def _freeze_meta(meta) -> Mapping[str, Any]:
    if meta is None:
        return MappingProxyType({})
    if not isinstance(meta, Mapping):
        raise InvalidInputError(f"meta must be a dict, got {describe(meta)}")
    try:
        # JSON round trip: a deep copy that also proves every format can store it
        return MappingProxyType(json.loads(json.dumps(dict(meta))))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"meta must be JSON-serialisable, got {describe(meta)}: {exc}"
        ) from exc


class VesselGraph:
    """An immutable vessel centerline graph in world millimetres.

    Parameters
    ----------
    positions : (N, 3) float64 ndarray, mm
        Node positions in world coordinates (frame of the source image's affine, RAS).
    radii : (N,) float64 ndarray, mm
        Lumen radius at each node; strictly positive.
    edges : (E, 2) int64 ndarray
        Node index pairs, parent -> child where the graph is rooted. No self-loops, no duplicates.
    root : int, optional
        Root node of a rooted tree. Then the graph must be a connected tree with every edge
        oriented away from the root (use :meth:`to_tree` to build one from any graph).
    node_data, edge_data : dict of str -> ndarray, optional
        Extra numeric attributes with a leading dimension of N (nodes) or E (edges); they survive
        every conversion (SWC excepted, which stores only ``swc_type``).
    affine : (4, 4) float64 ndarray, optional
        Voxel -> world affine of the image the graph came from, so voxel coordinates can be recovered.
    meta : dict, optional
        JSON-compatible information about the graph (source, cuts made by :meth:`to_tree`, ...).

    Raises
    ------
    InvalidInputError
        Shapes do not match, values are NaN/inf, a radius is not positive, an edge is out of range,
        a self-loop or duplicate edge, a root that is not a valid tree root, or a singular affine.

    Examples
    --------
    >>> import numpy as np
    >>> g = VesselGraph(np.array([[0, 0, 0], [0, 0, 2.0], [0, 1, 3.0]]), [1.0, 0.8, 0.5], [[0, 1], [1, 2]])
    >>> g.n_nodes, g.n_edges, round(g.total_length, 3)
    (3, 2, 3.414)
    """

    def __init__(
        self,
        positions,
        radii,
        edges,
        *,
        root: int | None = None,
        node_data: Mapping[str, Any] | None = None,
        edge_data: Mapping[str, Any] | None = None,
        affine=None,
        meta: Mapping[str, Any] | None = None,
    ):
        pos = as_float_array(positions, "positions", (-1, 3)).copy()
        n = pos.shape[0]
        rad = as_float_array(radii, "radii", (n,)).copy()
        if n and np.any(rad <= 0):
            i = int(np.argmin(rad))
            raise InvalidInputError(
                f"radii must be positive (mm), got {rad[i]!r} at node {i}; "
                "drop the node or clip the radius to a small positive value"
            )
        e = np.asarray(edges)
        if e.size == 0:
            e = np.zeros((0, 2), dtype=np.int64)
        if e.ndim != 2 or e.shape[1] != 2:
            raise InvalidInputError(f"edges must have shape (E, 2), got shape {e.shape}")
        if e.dtype.kind == "f":
            if not np.all(np.isfinite(e)) or np.any(e != np.round(e)):
                raise InvalidInputError(f"edges must hold integer node indices, got {describe(e)}")
        elif e.dtype.kind not in "iu":
            raise InvalidInputError(f"edges must hold integer node indices, got dtype {e.dtype}")
        e = e.astype(np.int64)
        if e.size and (e.min() < 0 or e.max() >= n):
            bad = e[(e < 0) | (e >= n)][0]
            raise InvalidInputError(f"edges refer to node {int(bad)}, outside 0..{n - 1}")
        loops = np.flatnonzero(e[:, 0] == e[:, 1])
        if loops.size:
            raise InvalidInputError(
                f"edges must not contain self-loops, got edge {e[loops[0]].tolist()} at row {int(loops[0])}"
            )
        if e.shape[0] > 1:
            # each edge as one integer (low end * n + high end), sorted: a repeat sits next to
            # its twin (cheaper than np.unique over rows, which every graph pays)
            key = np.sort(e, axis=1)
            flat = np.sort(key[:, 0] * n + key[:, 1])
            repeat = flat[1:] == flat[:-1]
            if repeat.any():
                dup = int(flat[1:][repeat][0])  # the lowest repeated edge
                raise InvalidInputError(
                    f"edges must not repeat, got edge {[dup // n, dup % n]} more than once"
                )
        self._positions = readonly(pos)
        self._radii = readonly(rad)
        self._edges = readonly(e)
        self._node_data = MappingProxyType(_check_data_dict(node_data, n, "node_data", "node"))
        self._edge_data = MappingProxyType(
            _check_data_dict(edge_data, e.shape[0], "edge_data", "edge")
        )
        self._affine = None if affine is None else readonly(check_affine(affine).copy())
        self._meta = _freeze_meta(meta)
        self._root = None
        if root is not None:
            if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
                raise InvalidInputError(f"root must be a node index or None, got {root!r}")
            if not 0 <= int(root) < n:
                raise InvalidInputError(f"root must be a node index in 0..{n - 1}, got {int(root)}")
            self._root = int(root)
            self._check_rooted()
        self._frozen = True

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise AttributeError(f"VesselGraph is immutable; use .replace(...) to change {name!r}")
        object.__setattr__(self, name, value)

    def _check_rooted(self) -> None:
        n, e = self.n_nodes, self._edges
        if e.shape[0] != n - 1 or self.n_components != 1:
            raise InvalidInputError(
                f"root={self._root} needs a connected tree, but the graph has {n} nodes, "
                f"{e.shape[0]} edges and {self.n_components} components; use to_tree(root=...)"
            )
        indeg = np.bincount(e[:, 1], minlength=n)
        if indeg[self._root] != 0 or np.any(np.delete(indeg, self._root) != 1):
            raise InvalidInputError(
                f"root={self._root} given, but edges are not all oriented parent -> child away from it; "
                "use to_tree(root=...) to orient them"
            )

    # ------------------------------------------------------------------ stored fields
    @property
    def positions(self) -> np.ndarray:
        """(N, 3) float64, world mm (read-only)."""
        return self._positions

    @property
    def radii(self) -> np.ndarray:
        """(N,) float64, mm (read-only)."""
        return self._radii

    @property
    def edges(self) -> np.ndarray:
        """(E, 2) int64 node index pairs (read-only); parent -> child where rooted."""
        return self._edges

    @property
    def root(self) -> int | None:
        return self._root

    @property
    def node_data(self) -> Mapping[str, np.ndarray]:
        return self._node_data

    @property
    def edge_data(self) -> Mapping[str, np.ndarray]:
        return self._edge_data

    @property
    def affine(self) -> np.ndarray | None:
        return self._affine

    @property
    def meta(self) -> Mapping[str, Any]:
        return self._meta

    def replace(self, **changes) -> VesselGraph:
        """A new graph with some constructor arguments replaced (``root=None`` un-roots it)."""
        args = {
            "positions": self._positions,
            "radii": self._radii,
            "edges": self._edges,
            "root": self._root,
            "node_data": dict(self._node_data),
            "edge_data": dict(self._edge_data),
            "affine": self._affine,
            "meta": dict(self._meta),
        }
        unknown = set(changes) - set(args)
        if unknown:
            raise InvalidInputError(
                f"replace() got unknown fields {sorted(unknown)}; valid: {sorted(args)}"
            )
        args.update(changes)
        return VesselGraph(args.pop("positions"), args.pop("radii"), args.pop("edges"), **args)

    # ------------------------------------------------------------------ sizes and topology
    @property
    def n_nodes(self) -> int:
        return int(self._positions.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self._edges.shape[0])

    def __len__(self) -> int:
        return self.n_nodes

    @cached_property
    def adjacency(self) -> sp.csr_matrix:
        """(N, N) symmetric CSR matrix; entry = 1 + edge row index (so the edge is recoverable)."""
        n, e = self.n_nodes, self._edges
        rows = np.concatenate([e[:, 0], e[:, 1]])
        cols = np.concatenate([e[:, 1], e[:, 0]])
        vals = np.concatenate([np.arange(1, len(e) + 1)] * 2).astype(np.int64)
        return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))

    def neighbors(self, node: int) -> np.ndarray:
        """Indices of the nodes joined to ``node``."""
        a = self.adjacency
        return a.indices[a.indptr[node] : a.indptr[node + 1]].copy()

    @cached_property
    def degrees(self) -> np.ndarray:
        """(N,) int64 number of edges at each node."""
        return readonly(np.bincount(self._edges.ravel(), minlength=self.n_nodes).astype(np.int64))

    @cached_property
    def _components(self) -> tuple[int, np.ndarray]:
        if self.n_nodes == 0:
            return 0, np.zeros(0, dtype=np.int64)
        k, labels = connected_components(self.adjacency, directed=False)
        return int(k), readonly(labels.astype(np.int64))

    @property
    def n_components(self) -> int:
        return self._components[0]

    @property
    def component_labels(self) -> np.ndarray:
        """(N,) int64 connected-component id of each node."""
        return self._components[1]

    @property
    def n_cycles(self) -> int:
        """Number of independent cycles (cyclomatic number E - N + C)."""
        return self.n_edges - self.n_nodes + self.n_components

    @property
    def is_forest(self) -> bool:
        return self.n_cycles == 0

    @property
    def is_tree(self) -> bool:
        """Connected and acyclic (rooted or not)."""
        return self.n_nodes > 0 and self.n_components == 1 and self.n_cycles == 0

    @cached_property
    def endpoints(self) -> np.ndarray:
        """Nodes of degree 1 (vessel tips, and the root where it is a tip)."""
        return readonly(np.flatnonzero(self.degrees == 1))

    @cached_property
    def junctions(self) -> np.ndarray:
        """Nodes of degree >= 3 (bifurcations and higher)."""
        return readonly(np.flatnonzero(self.degrees >= 3))

    # ------------------------------------------------------------------ geometry
    @cached_property
    def edge_lengths(self) -> np.ndarray:
        """(E,) float64 Euclidean length of each edge, mm."""
        d = self._positions[self._edges[:, 1]] - self._positions[self._edges[:, 0]]
        return readonly(np.linalg.norm(d, axis=1))

    @property
    def total_length(self) -> float:
        """Sum of edge lengths, mm."""
        return float(self.edge_lengths.sum())

    # ------------------------------------------------------------------ branches
    @cached_property
    def _branch_decomposition(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Paths between nodes of degree != 2; isolated cycles start at their lowest node."""
        a = self.adjacency
        indptr, indices, eids = a.indptr, a.indices, a.data - 1
        deg = self.degrees
        edge_branch = np.full(self.n_edges, -1, dtype=np.int64)
        branches: list[np.ndarray] = []

        def walk(start: int, k: int) -> None:
            path = [start]
            cur, eid = int(indices[k]), int(eids[k])
            bid = len(branches)
            edge_branch[eid] = bid
            path.append(cur)
            while deg[cur] == 2 and cur != start:
                lo = indptr[cur]
                j = lo if eids[lo] != eid else lo + 1
                cur, eid = int(indices[j]), int(eids[j])
                if edge_branch[eid] != -1:  # pragma: no cover - defensive
                    break
                edge_branch[eid] = bid
                path.append(cur)
            branches.append(np.asarray(path, dtype=np.int64))

        key_nodes = np.flatnonzero(deg != 2)
        for u in key_nodes:
            for k in range(indptr[u], indptr[u + 1]):
                if edge_branch[eids[k]] == -1:
                    walk(int(u), k)
        # what is left are components that are pure cycles of degree-2 nodes
        for eid in np.flatnonzero(edge_branch == -1):
            if edge_branch[eid] != -1:
                continue
            u = int(min(self._edges[eid]))
            k = indptr[u] + int(np.argmax(eids[indptr[u] : indptr[u + 1]] == eid))
            walk(u, k)
        for b in branches:
            b.setflags(write=False)
        return branches, readonly(edge_branch)

    @property
    def branches(self) -> list[np.ndarray]:
        """Branches as node paths between nodes of degree != 2 (a closed loop starts and ends at
        the same node). Where the graph is rooted, paths run away from the root."""
        branches = self._branch_decomposition[0]
        if self._root is None:
            return list(branches)
        parents = self.parents
        out = []
        for b in branches:
            out.append(b if parents[b[-1]] == b[-2] else b[::-1])
        return out

    @property
    def edge_branch(self) -> np.ndarray:
        """(E,) int64 index into :attr:`branches` of the branch each edge belongs to."""
        return self._branch_decomposition[1]

    @cached_property
    def branch_lengths(self) -> np.ndarray:
        """(B,) float64 arc length of each branch, mm."""
        return readonly(
            np.bincount(self.edge_branch, weights=self.edge_lengths, minlength=len(self.branches))
        )

    # ------------------------------------------------------------------ rooted views
    def _need_root(self, what: str) -> int:
        if self._root is None:
            raise InvalidInputError(
                f"{what} needs a rooted tree (root is None); call to_tree(root=...) first"
            )
        return self._root

    @cached_property
    def parents(self) -> np.ndarray:
        """(N,) int64 parent of each node, -1 at the root. Needs a rooted graph."""
        self._need_root("parents")
        par = np.full(self.n_nodes, -1, dtype=np.int64)
        par[self._edges[:, 1]] = self._edges[:, 0]
        return readonly(par)

    @cached_property
    def children(self) -> list[np.ndarray]:
        """Children of each node (list of N int arrays, in edge order). Needs a rooted graph."""
        self._need_root("children")
        order = np.argsort(self._edges[:, 0], kind="stable")
        src, dst = self._edges[order, 0], self._edges[order, 1]
        cuts = np.searchsorted(src, np.arange(self.n_nodes + 1))
        return [readonly(dst[cuts[i] : cuts[i + 1]]) for i in range(self.n_nodes)]

    @cached_property
    def depth_first_order(self) -> np.ndarray:
        """Nodes in breadth-first order from the root (parents before children). Needs a root."""
        root = self._need_root("depth_first_order")
        order, _ = breadth_first_order(self.adjacency, root, directed=False)
        return readonly(order.astype(np.int64))

    # ------------------------------------------------------------------ operations
    def default_root(self, component: int | None = None) -> int:
        """The node a rooted tree starts at by default: the thickest tip (the likely inlet), or the
        thickest node where a component has no tip. Restricted to ``component`` if given."""
        if self.n_nodes == 0:
            raise InvalidInputError("the graph has no nodes, so it has no root")
        mask = (
            np.ones(self.n_nodes, bool) if component is None else self.component_labels == component
        )
        tips = np.flatnonzero(mask & (self.degrees <= 1))
        cand = tips if tips.size else np.flatnonzero(mask)
        return int(cand[np.argmax(self._radii[cand])])

    def to_tree(self, root: int | None = None, *, keep: str = "error") -> VesselGraph:
        """A rooted tree: cycles cut, edges oriented away from ``root``.

        Each cycle is cut at its weakest edge (the thinnest: a maximum spanning tree on the mean
        radius of each edge's ends). Every cut is recorded in ``meta["cuts"]`` as
        ``[parent_side_node, other_node]`` pairs (node indices are unchanged), and logged.

        Parameters
        ----------
        root : int, optional
            Root node. Default: :meth:`default_root` of the component kept.
        keep : {"error", "largest", "root"}
            What to do with a graph of several components: raise (default), keep the one with the
            most total length, or keep the component that holds ``root``. Dropped nodes are
            removed and their original indices listed in ``meta["dropped_nodes"]``.
        """
        if self.n_nodes == 0:
            raise InvalidInputError("to_tree needs at least one node, got an empty graph")
        if keep not in ("error", "largest", "root"):
            raise InvalidInputError(f"keep must be 'error', 'largest' or 'root', got {keep!r}")
        if root is not None and not (
            isinstance(root, (int, np.integer)) and 0 <= root < self.n_nodes
        ):
            raise InvalidInputError(
                f"root must be a node index in 0..{self.n_nodes - 1}, got {root!r}"
            )
        graph = self
        meta = dict(self._meta)
        if self.n_components > 1:
            if keep == "error":
                raise InvalidInputError(
                    f"the graph has {self.n_components} components, so it is not one tree; "
                    "pass keep='largest' or keep='root', or split it with components()"
                )
            if keep == "root":
                if root is None:
                    raise InvalidInputError("keep='root' needs root=...")
                comp = int(self.component_labels[root])
            else:
                lengths = np.bincount(
                    self.component_labels[self._edges[:, 0]],
                    weights=self.edge_lengths,
                    minlength=self.n_components,
                )
                comp = int(np.argmax(lengths + 1e-9 * np.bincount(self.component_labels)))
                if root is not None and self.component_labels[root] != comp:
                    raise InvalidInputError(
                        f"root={root} is not in the largest component; use keep='root'"
                    )
            kept = np.flatnonzero(self.component_labels == comp)
            dropped = np.flatnonzero(self.component_labels != comp)
            meta["dropped_nodes"] = [int(i) for i in dropped]
            log.info(
                "to_tree: dropped %d nodes in %d other components",
                dropped.size,
                self.n_components - 1,
            )
            if root is not None:
                root = int(np.searchsorted(kept, root))
            graph = self.subgraph(kept)
        root = graph.default_root() if root is None else int(root)

        e = graph._edges
        n = graph.n_nodes
        if graph.n_cycles > 0:
            # maximum spanning tree on thickness == minimum spanning tree on 1 / thickness
            thick = 0.5 * (graph._radii[e[:, 0]] + graph._radii[e[:, 1]])
            w = 1.0 / thick + 1e-12 * np.arange(len(e))  # distinct weights -> deterministic tree
            m = sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
            mst = minimum_spanning_tree(m).tocoo()
            keep_pairs = {
                (min(a, b), max(a, b)) for a, b in zip(mst.row.tolist(), mst.col.tolist())
            }
            sel = np.array(
                [(min(a, b), max(a, b)) in keep_pairs for a, b in e.tolist()], dtype=bool
            )
        else:
            sel = np.ones(len(e), dtype=bool)
        kept_e = e[sel]
        adj = sp.coo_matrix(
            (np.ones(len(kept_e)), (kept_e[:, 0], kept_e[:, 1])), shape=(n, n)
        ).tocsr()
        order, pred = breadth_first_order(adj, root, directed=False, return_predecessors=True)
        # orient each kept edge parent -> child
        a, b = kept_e[:, 0], kept_e[:, 1]
        flip = pred[a] == b
        oriented = np.where(flip[:, None], kept_e[:, ::-1], kept_e)
        cut_rows = np.flatnonzero(~sel)
        cuts = [[int(x), int(y)] for x, y in e[cut_rows]]
        if cuts:
            log.info("to_tree: cut %d edges to break cycles", len(cuts))
        meta["cuts"] = list(meta.get("cuts", [])) + cuts
        edge_data = {k: v[sel] for k, v in graph._edge_data.items()}
        return VesselGraph(
            graph._positions,
            graph._radii,
            oriented,
            root=root,
            node_data=dict(graph._node_data),
            edge_data=edge_data,
            affine=graph._affine,
            meta=meta,
        )

    def subgraph(self, nodes) -> VesselGraph:
        """The graph induced by ``nodes`` (index array or (N,) boolean mask), in their original order.

        The root is kept where it survives and the result is still a connected tree; otherwise the
        result is unrooted.
        """
        idx = np.asarray(nodes)
        if idx.dtype == bool:
            if idx.shape != (self.n_nodes,):
                raise InvalidInputError(
                    f"nodes mask must have shape ({self.n_nodes},), got {idx.shape}"
                )
            idx = np.flatnonzero(idx)
        else:
            idx = np.unique(idx.astype(np.int64))
            if idx.size and (idx[0] < 0 or idx[-1] >= self.n_nodes):
                raise InvalidInputError(
                    f"nodes must be indices in 0..{self.n_nodes - 1}, got {describe(nodes)}"
                )
        new_index = np.full(self.n_nodes, -1, dtype=np.int64)
        new_index[idx] = np.arange(idx.size)
        e = new_index[self._edges]
        sel = np.all(e >= 0, axis=1)
        root = None
        if self._root is not None and new_index[self._root] >= 0:
            cand = int(new_index[self._root])
            k = int(sel.sum())
            if k == idx.size - 1:
                nd, _ = connected_components(
                    sp.coo_matrix((np.ones(k), (e[sel, 0], e[sel, 1])), shape=(idx.size,) * 2),
                    directed=False,
                )
                root = cand if nd == 1 else None
        return VesselGraph(
            self._positions[idx],
            self._radii[idx],
            e[sel],
            root=root,
            node_data={k: v[idx] for k, v in self._node_data.items()},
            edge_data={k: v[sel] for k, v in self._edge_data.items()},
            affine=self._affine,
            meta=dict(self._meta),
        )

    def components(self) -> list[VesselGraph]:
        """One graph per connected component, largest total length first."""
        k = self.n_components
        if k <= 1:
            return [self] if self.n_nodes else []
        lengths = np.bincount(
            self.component_labels[self._edges[:, 0]], weights=self.edge_lengths, minlength=k
        )
        return [
            self.subgraph(self.component_labels == c) for c in np.argsort(-lengths, kind="stable")
        ]

    def resample(self, step_mm: float) -> VesselGraph:
        """Resample every branch at (close to) uniform arc-length steps of ``step_mm``.

        Junctions and tips keep their exact positions; each branch of length L gets
        ``ceil(L / step_mm)`` edges of equal length along the original polyline. Radii and float
        node attributes are interpolated linearly in arc length; integer and boolean node attributes
        take the value of the nearer original node; edge attributes are inherited from the edge the
        new edge lies on. A rooted graph stays rooted at the same point.
        """
        try:
            step = float(step_mm)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"step_mm must be a positive number (mm), got {step_mm!r}"
            ) from exc
        if not np.isfinite(step) or step <= 0:
            raise InvalidInputError(f"step_mm must be a positive number (mm), got {step_mm!r}")
        if self.n_edges == 0:
            return self
        key = np.flatnonzero(self.degrees != 2)
        # every key node is kept; loops without key nodes keep their first node
        branches = self.branches
        keep_nodes = set(key.tolist()) | {int(b[0]) for b in branches}
        old_to_new = {old: i for i, old in enumerate(sorted(keep_nodes))}
        src_nodes = sorted(keep_nodes)
        # per new node: (old node a, old node b, fraction t) for interpolation
        interp_a = list(src_nodes)
        interp_b = list(src_nodes)
        interp_t = [0.0] * len(src_nodes)
        new_edges: list[tuple[int, int]] = []
        new_edge_src: list[int] = []  # index of the old edge each new edge lies on
        adj = self.adjacency
        for path in branches:
            seg = np.linalg.norm(np.diff(self._positions[path], axis=0), axis=1)
            cum = np.concatenate([[0.0], np.cumsum(seg)])
            length = cum[-1]
            m = max(1, int(np.ceil(length / step - 1e-9)))
            targets = np.linspace(0.0, length, m + 1)[1:-1]
            old_eids = [int(adj[path[j], path[j + 1]]) - 1 for j in range(len(path) - 1)]
            j = np.clip(np.searchsorted(cum, targets, side="right") - 1, 0, len(seg) - 1)
            t = np.where(seg[j] > 0, (targets - cum[j]) / np.where(seg[j] > 0, seg[j], 1.0), 0.0)
            chain = [old_to_new[int(path[0])]]
            for jj, tt in zip(j.tolist(), t.tolist()):
                interp_a.append(int(path[jj]))
                interp_b.append(int(path[jj + 1]))
                interp_t.append(float(tt))
                chain.append(len(interp_a) - 1)
            chain.append(old_to_new[int(path[-1])])
            # edge k of the chain spans targets[k-1]..targets[k]; attribute from its midpoint
            bounds = np.concatenate([[0.0], targets, [length]])
            mids = 0.5 * (bounds[:-1] + bounds[1:])
            jm = np.clip(np.searchsorted(cum, mids, side="right") - 1, 0, len(seg) - 1)
            for k in range(len(chain) - 1):
                new_edges.append((chain[k], chain[k + 1]))
                new_edge_src.append(old_eids[int(jm[k])])
        ia, ib, it = np.asarray(interp_a), np.asarray(interp_b), np.asarray(interp_t)
        pos = (1 - it)[:, None] * self._positions[ia] + it[:, None] * self._positions[ib]
        rad = (1 - it) * self._radii[ia] + it * self._radii[ib]
        nearest = np.where(it <= 0.5, ia, ib)
        node_data = {}
        for k, v in self._node_data.items():
            if v.dtype.kind == "f":
                tt = it.reshape((-1,) + (1,) * (v.ndim - 1))
                node_data[k] = (1 - tt) * v[ia] + tt * v[ib]
            else:
                node_data[k] = v[nearest]
        ne = np.asarray(new_edges, dtype=np.int64).reshape(-1, 2)
        src = np.asarray(new_edge_src, dtype=np.int64)
        edge_data = {k: v[src] for k, v in self._edge_data.items()}
        # drop accidental duplicate edges (a branch of one edge that collapses onto another)
        ne_key = np.sort(ne, axis=1)
        _, first = np.unique(ne_key, axis=0, return_index=True)
        first = np.sort(first)
        ne, edge_data = ne[first], {k: v[first] for k, v in edge_data.items()}
        root = None if self._root is None else old_to_new[self._root]
        return VesselGraph(
            pos,
            rad,
            ne,
            root=root,
            node_data=node_data,
            edge_data=edge_data,
            affine=self._affine,
            meta=dict(self._meta),
        )

    def transform(self, matrix) -> VesselGraph:
        """Apply a 4x4 world -> world transform to positions (and compose it into the affine).

        Radii are scaled by the cube root of the determinant's magnitude (exact for similarities).
        """
        m = check_affine(matrix, "matrix")
        pos = self._positions @ m[:3, :3].T + m[:3, 3]
        scale = abs(np.linalg.det(m[:3, :3])) ** (1 / 3)
        aff = None if self._affine is None else m @ self._affine
        return self.replace(positions=pos, radii=self._radii * scale, affine=aff)

    def voxel_positions(self, affine=None) -> np.ndarray:
        """(N, 3) fractional voxel indices of the nodes through ``affine`` (default: the graph's)."""
        aff = self._affine if affine is None else check_affine(affine)
        if aff is None:
            raise InvalidInputError(
                "voxel_positions needs an affine: the graph has none, pass affine="
            )
        inv = np.linalg.inv(aff)
        return self._positions @ inv[:3, :3].T + inv[:3, 3]

    # ------------------------------------------------------------------ comparison and display
    def allclose(
        self, other: VesselGraph, *, rtol: float = 1e-9, atol: float = 1e-9, meta: bool = True
    ) -> bool:
        """True where ``other`` has the same nodes, edges (same order), root, data and affine."""
        if not isinstance(other, VesselGraph):
            return False
        if (self.n_nodes, self.n_edges, self._root) != (other.n_nodes, other.n_edges, other._root):
            return False
        if not np.array_equal(self._edges, other._edges):
            return False
        if not (
            np.allclose(self._positions, other._positions, rtol=rtol, atol=atol)
            and np.allclose(self._radii, other._radii, rtol=rtol, atol=atol)
        ):
            return False
        for mine, theirs in (
            (self._node_data, other._node_data),
            (self._edge_data, other._edge_data),
        ):
            if set(mine) != set(theirs):
                return False
            for k in mine:
                if mine[k].shape != theirs[k].shape or not np.allclose(
                    mine[k], theirs[k], rtol=rtol, atol=atol
                ):
                    return False
        if (self._affine is None) != (other._affine is None):
            return False
        if self._affine is not None and not np.allclose(
            self._affine, other._affine, rtol=rtol, atol=atol
        ):
            return False
        return not meta or dict(self._meta) == dict(other._meta)

    def __repr__(self) -> str:
        rooted = f", root={self._root}" if self._root is not None else ""
        return (
            f"VesselGraph(nodes={self.n_nodes}, edges={self.n_edges}, branches={len(self.branches)}, "
            f"components={self.n_components}, cycles={self.n_cycles}, length={self.total_length:.1f} mm{rooted})"
        )

    # ------------------------------------------------------------------ conversions
    # Implemented in vesseltree.io.convert / vesseltree.io.formats; imports happen inside.
    def to_networkx(self):
        """As a ``networkx.Graph`` (``DiGraph`` where rooted); see :func:`vesseltree.io.to_networkx`."""
        from .io.convert import to_networkx

        return to_networkx(self)

    @classmethod
    def from_networkx(cls, graph) -> VesselGraph:
        from .io.convert import from_networkx

        return from_networkx(graph)

    def to_pyg(self):
        """As a ``torch_geometric.data.Data``; see :func:`vesseltree.io.to_pyg`."""
        from .io.convert import to_pyg

        return to_pyg(self)

    @classmethod
    def from_pyg(cls, data) -> VesselGraph:
        from .io.convert import from_pyg

        return from_pyg(data)

    def to_pyvista(self):
        """As a ``pyvista.PolyData`` of line cells with a ``radius`` point array."""
        from .io.convert import to_pyvista

        return to_pyvista(self)

    @classmethod
    def from_pyvista(cls, polydata, *, radius: str | None = None) -> VesselGraph:
        from .io.convert import from_pyvista

        return from_pyvista(polydata, radius=radius)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (the content of the ``.json`` format)."""
        from .io.formats import graph_to_dict

        return graph_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VesselGraph:
        from .io.formats import graph_from_dict

        return graph_from_dict(data)

    def to_swc(self, path) -> None:
        from .io.formats import write_swc

        write_swc(self, path)

    @classmethod
    def from_swc(cls, path) -> VesselGraph:
        from .io.formats import read_swc

        return read_swc(path)

    def save(self, path) -> None:
        """Write to ``path``; the format follows the suffix (see :func:`vesseltree.io.write_graph`)."""
        from .io import write_graph

        write_graph(self, path)

    @classmethod
    def load(cls, path) -> VesselGraph:
        """Read from ``path``; the format follows the suffix (see :func:`vesseltree.io.read_graph`)."""
        from .io import read_graph

        return read_graph(path)
