"""Many volumes to centerline graphs in one call: :func:`extract_batch`.

This is what ``vesseltree extract A.nii.gz B.nii.gz ... -o DIR`` (or a folder as input) runs. Each
input is extracted on its own (in its own process with ``jobs > 1``); a case that fails is
recorded with its error and the batch goes on. ``DIR/summary.csv`` gets one row per case (status,
files written, node / branch / junction / tip / cycle counts, length, seconds, warnings, error)
and is rewritten atomically after every case, so a long run that is interrupted keeps what it
finished; with ``skip_existing`` a rerun skips the cases that summary says are done.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from ..errors import InvalidInputError
from ..io import GRAPH_SUFFIXES, VOLUME_SUFFIXES
from ..io.volumes import _volume_suffix

log = logging.getLogger(__name__)

__all__ = ["extract_batch", "volume_files", "write_graph_and_table", "SUMMARY_COLUMNS"]

#: columns of ``summary.csv`` and of the table :func:`extract_batch` returns
SUMMARY_COLUMNS = (
    "input",
    "status",
    "outputs",
    "nodes",
    "branches",
    "junctions",
    "endpoints",
    "cycles",
    "components",
    "length_mm",
    "seconds",
    "warnings",
    "error",
)
SUMMARY_NAME = "summary.csv"


def volume_files(inputs) -> list[Path]:
    """The volume files named by ``inputs``: paths, or folders (their volume files, sorted, not
    recursive), one or an iterable of them; in the order given, each file once.

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    InvalidInputError
        A file that is not a volume (``.nii .nii.gz .mha .mhd .nrrd .nhdr``), or nothing at all.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and _volume_suffix(f))
            if not found:
                raise InvalidInputError(
                    f"folder {str(p)!r} holds no volume file ({' '.join(VOLUME_SUFFIXES)})"
                )
            files += found
        elif p.is_file():
            if not _volume_suffix(p):
                raise InvalidInputError(
                    f"{str(p)!r} is not a volume file ({' '.join(VOLUME_SUFFIXES)})"
                )
            files.append(p)
        else:
            raise FileNotFoundError(f"input {str(p)!r} does not exist")
    unique = list(dict.fromkeys(files))
    if not unique:
        raise InvalidInputError("no input volumes given")
    return unique


def _stem(path: Path) -> str:
    return path.name[: len(path.name) - len(_volume_suffix(path) or "")]


def write_graph_and_table(graph, path: Path, tree: bool) -> list[Path]:
    """Write ``graph`` by the suffix of ``path`` and its branch table as ``<stem>_branches.csv``
    beside it, both atomically; returns the two paths."""
    from .._atomic import atomic_path
    from ..io import write_graph
    from .table import branch_table

    if path.suffix.lower() == ".swc" and not tree and graph.n_cycles:
        raise InvalidInputError(
            f"{str(path)!r}: SWC stores trees, but the graph has {graph.n_cycles} cycles; "
            "extract with tree=True (--tree)"
        )
    write_graph(graph, path)
    csv = path.with_name(path.stem + "_branches.csv")
    with atomic_path(csv) as tmp:
        branch_table(graph).to_csv(tmp, index_label="branch")
    return [path, csv]


def _counts(graphs) -> dict:
    return {
        "nodes": sum(g.n_nodes for g in graphs),
        "branches": sum(len(g.branches) for g in graphs),
        "junctions": sum(len(g.junctions) for g in graphs),
        "endpoints": sum(len(g.endpoints) for g in graphs),
        "cycles": sum(g.n_cycles for g in graphs),
        "components": sum(g.n_components for g in graphs),
        "length_mm": round(sum(g.total_length for g in graphs), 3),
    }


def _one_case(src: str, out_dir: str, suffix: str, kwargs: dict) -> dict:
    """Extract one volume and write its graph(s); never raises (the error goes in the row)."""
    from .api import extract

    src_path, out = Path(src), Path(out_dir)
    stem = _stem(src_path)
    row: dict = {"input": str(src_path), "status": "error", "outputs": ""}
    t0 = time.perf_counter()
    per_label = bool(kwargs.get("per_label", False))
    tree = bool(kwargs.get("tree", False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = extract(src_path, progress=False, **kwargs)
            named = (
                [(out / f"{stem}_label{c}{suffix}", g) for c, g in result.items()]
                if per_label
                else [(out / f"{stem}{suffix}", result)]
            )
            written = []
            for path, g in named:
                written += write_graph_and_table(g, path, tree)
            row |= {"status": "ok", "outputs": ";".join(p.name for p in written)}
            row |= _counts([g for _, g in named])
        except Exception as exc:  # noqa: BLE001 - a batch records a failed case and goes on
            row["error"] = f"{type(exc).__name__}: {exc}"
            log.debug("%s failed", src, exc_info=True)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    row["warnings"] = " | ".join(dict.fromkeys(str(w.message) for w in caught))
    return row


def _read_summary(path: Path) -> dict[str, dict]:
    import pandas as pd

    if not path.is_file():
        return {}
    try:
        old = pd.read_csv(path, dtype={"outputs": str, "warnings": str, "error": str})
    except Exception as exc:  # noqa: BLE001 - an unreadable summary only disables skipping
        warnings.warn(
            f"extract_batch: cannot read {str(path)!r} ({exc}); no case is skipped",
            RuntimeWarning,
            stacklevel=3,
        )
        return {}
    old = old.astype(object).where(old.notna(), None)
    return {_key(r["input"]): r for r in old.to_dict("records") if r.get("input")}


def _key(path) -> str:
    """Inputs are matched to an old summary by resolved path (relative or absolute alike)."""
    return str(Path(str(path)).resolve())


def _done_before(row: dict | None, out: Path) -> bool:
    if not row or row.get("status") not in ("ok", "skipped") or not row.get("outputs"):
        return False
    return all((out / name).is_file() for name in str(row["outputs"]).split(";"))


def _write_summary(rows: list[dict], path: Path):
    import pandas as pd

    from .._atomic import atomic_path

    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    for col in SUMMARY_COLUMNS[3:9]:  # counts: whole numbers, empty where a case failed
        table[col] = pd.to_numeric(table[col]).astype("Int64")
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def extract_batch(
    inputs,
    out_dir: str | os.PathLike,
    *,
    fmt: str = "vtp",
    jobs: int = 1,
    skip_existing: bool = False,
    progress: bool = True,
    **extract_kwargs,
):
    """Extract the centerline graph of every input volume into ``out_dir``.

    Parameters
    ----------
    inputs : path or iterable of paths
        Volume files, or folders (their volume files, sorted; not recursive).
    out_dir : path
        Output folder (created). Each input ``NAME.nii.gz`` gives ``NAME.<fmt>`` and
        ``NAME_branches.csv`` (with ``per_label=True``: ``NAME_label<id>.<fmt>`` and its table
        per label), and ``summary.csv`` lists every case.
    fmt : {"vtp", "swc", "graphml", "json", "npz"}
        Graph format (``swc`` needs ``tree=True`` where a graph has cycles).
    jobs : int
        Cases extracted at once, each in its own process (1: all in this process).
    skip_existing : bool
        Skip the cases that ``summary.csv`` in ``out_dir`` already lists as done and whose files
        are all there (to resume an interrupted batch); their old rows are kept, marked
        ``skipped``.
    progress : bool
        A progress bar over the cases (stderr).
    **extract_kwargs
        Passed to :func:`~vesseltree.centerline.api.extract` for every case (``label``,
        ``labels_json``, ``per_label``, ``tree``, ``threshold``, ``backbone``, config fields...).

    Returns
    -------
    pandas.DataFrame
        The summary, one row per input in input order; columns :data:`SUMMARY_COLUMNS`.
        ``status`` is ``ok``, ``skipped`` or ``error`` (then ``error`` says what went wrong:
        a case that fails does not stop the others).

    Raises
    ------
    InvalidInputError
        No inputs, a file that is not a volume, an unknown format, ``jobs < 1``, two inputs that
        would write the same output name, or options :func:`extract` would refuse for every case.
    FileNotFoundError
        An input that does not exist.
    """
    suffix = "." + str(fmt).lower().lstrip(".")
    if suffix not in GRAPH_SUFFIXES:
        raise InvalidInputError(
            f"unknown graph format {fmt!r}; use one of {sorted(s[1:] for s in GRAPH_SUFFIXES)}"
        )
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidInputError(f"jobs must be an integer >= 1, got {jobs!r}")
    for key in ("progress", "source", "spacing", "affine"):
        if key in extract_kwargs:
            raise InvalidInputError(f"extract_batch does not take {key}= (every input is a file)")
    files = volume_files(inputs)
    stems: dict[str, Path] = {}
    for f in files:
        other = stems.setdefault(_stem(f), f)
        if other != f:
            raise InvalidInputError(
                f"{str(other)!r} and {str(f)!r} would both write {_stem(f)}{suffix}; "
                "rename one or run them into different folders"
            )
    _check_options(extract_kwargs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    summary = out / SUMMARY_NAME
    before = _read_summary(summary) if skip_existing else {}

    rows: dict[str, dict] = {}
    todo = []
    for f in files:
        old = before.get(_key(f))
        if _done_before(old, out):
            rows[str(f)] = {**old, "input": str(f), "status": "skipped"}
        else:
            todo.append(str(f))
    ordered = [str(f) for f in files]

    def flush():
        """The summary so far (the cases done, in input order), written atomically."""
        return _write_summary([rows[k] for k in ordered if k in rows], summary)

    def record(row: dict) -> None:
        rows[row["input"]] = row
        flush()
        if row["status"] == "error":
            log.info("extract %s failed: %s", row["input"], row["error"])

    if rows:
        flush()
    bar = _bar(len(todo), progress)
    try:
        if jobs == 1 or len(todo) <= 1:
            for src in todo:
                record(_one_case(src, str(out), suffix, extract_kwargs))
                bar.update(1)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn: a fresh interpreter per worker (no forked torch / numba thread state)
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx) as pool:
                futures = {
                    pool.submit(_one_case, src, str(out), suffix, extract_kwargs): src
                    for src in todo
                }
                for fut in as_completed(futures):
                    try:
                        row = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a worker that died
                        row = {
                            "input": futures[fut],
                            "status": "error",
                            "outputs": "",
                            "error": f"{type(exc).__name__}: {exc}",
                        }
                    record(row)
                    bar.update(1)
    finally:
        bar.close()
    return flush()


def _check_options(kwargs: Mapping) -> None:
    """Refuse, before any case runs, options that every case would fail on."""
    import inspect
    from dataclasses import fields

    from .api import extract
    from .extract import ExtractionConfig

    params = inspect.signature(extract).parameters
    allowed = {k for k, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY}
    allowed = (allowed - {"progress", "spacing", "affine"}) | {
        f.name for f in fields(ExtractionConfig)
    }
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise InvalidInputError(f"unknown extract options {unknown}")
    if kwargs.get("on_empty", "raise") not in ("raise", "warn"):
        raise InvalidInputError(f"on_empty must be 'raise' or 'warn', got {kwargs['on_empty']!r}")
    lj = kwargs.get("labels_json")
    if lj is not None and not Path(lj).is_file():
        raise FileNotFoundError(f"labels_json {str(lj)!r} does not exist")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="cases", unit="case", file=sys.stderr)
