"""Run every CPU benchmark in turn (``make bench``); each writes its tables to ``results/``.

    python benchmarks/run_all.py [--only centerline,mesh] [--keep-going]

The benchmarks and their usual wall time on the 2-core development machine: ``centerline.py``
(~17 min, vesseltree vs kimimaro vs skan), ``intra_trees.py`` (~1.5 min, real IntrA shapes),
``tubetk_all.py`` (~4 min, all 77 TubeTK masks, the 67 without expert centerlines included),
``mesh.py`` (~14 min), ``deformcl.py`` (~6 min), ``vetta.py`` (~30 s with the conv rows of the
last full run reused; a full conv-AE retraining takes as long as VeTTA trained). The GPU scripts
(``gpu_*.py``) need a CUDA machine and are not run here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> extra arguments
BENCHMARKS = {
    "centerline": [],
    "intra_trees": [],
    "tubetk_all": [],
    "mesh": [],
    "deformcl": [],
    "vetta": ["--n", "40", "--conv-from", str(HERE / "results" / "vetta_before.json")],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated benchmark names")
    ap.add_argument("--keep-going", action="store_true", help="run the rest after a failure")
    args = ap.parse_args(argv)
    names = list(BENCHMARKS) if not args.only else [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; choose from {list(BENCHMARKS)}")
    failed = []
    for name in names:
        cmd = [sys.executable, str(HERE / f"{name}.py"), *BENCHMARKS[name]]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call(cmd)
        print(f"== {name}: exit {code} after {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        if code:
            failed.append(name)
            if not args.keep_going:
                break
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
