"""Package-level promises: a light import, a working CLI entry point, version."""

from __future__ import annotations

import subprocess
import sys

import vesseltree


def test_import_is_light():
    code = (
        "import sys, vesseltree, vesseltree.io, vesseltree.synth;"
        "heavy = sorted(m for m in ('torch', 'torch_geometric', 'pyvista', 'vtk') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import vesseltree loaded {out.stdout.strip()}"


def test_public_names():
    assert vesseltree.__version__
    for name in (
        "VesselGraph",
        "Volume",
        "VesselTreeError",
        "InvalidInputError",
        "FileFormatError",
    ):
        assert hasattr(vesseltree, name)
    assert issubclass(vesseltree.InvalidInputError, ValueError)
    assert issubclass(vesseltree.FileFormatError, vesseltree.InvalidInputError)


def test_cli_help_lists_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "vesseltree", "--help"], capture_output=True, text=True, check=True
    )
    for verb in (
        "demo",
        "synth",
        "convert",
        "info",
        "extract",
        "mesh",
        "interpolate",
        "train-vetta",
        "train-deformcl",
    ):
        assert verb in out.stdout


def test_building_the_cli_loads_no_torch():
    code = (
        "import sys, vesseltree.cli; vesseltree.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'torch_geometric', 'pyvista') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
