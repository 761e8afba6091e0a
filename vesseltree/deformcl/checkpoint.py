"""Checkpoints: one folder with ``model.pt`` (config + state_dict + metadata) and, while training,
``train_state.pt`` (optimiser, step, RNG, history). Written atomically, read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import logging
import pickle
import zipfile
from pathlib import Path

import torch

from .._atomic import write_bytes_atomic
from ..errors import FileFormatError, InvalidInputError

__all__ = ["save_checkpoint", "load_checkpoint", "load_train_state", "MODEL_FILE", "FORMAT"]

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
STATE_FILE = "train_state.pt"
FORMAT = "vesseltree-deformcl"
VERSION = 1


def _save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def save_checkpoint(
    folder, model, metadata: dict | None = None, *, train_state: dict | None = None
):
    """Write ``folder/model.pt`` (and ``folder/train_state.pt`` when ``train_state`` is given)."""
    import vesseltree

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = dict(metadata or {})
    meta.setdefault("vesseltree_version", getattr(vesseltree, "__version__", "unknown"))
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "state_dict": state,
        "metadata": meta,
    }
    _save(obj, folder / MODEL_FILE)
    if train_state is not None:
        full = dict(train_state)
        full["model"] = state
        _save(full, folder / STATE_FILE)


def _load(path: Path, map_location="cpu"):
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise FileFormatError(
            f"checkpoint {str(path)!r} is truncated or not a vesseltree DeformCL checkpoint "
            f"({type(exc).__name__}: {exc}); re-download or re-train it"
        ) from exc


def resolve(path) -> Path:
    """``path`` itself if it is a file, else ``path/model.pt``."""
    p = Path(path)
    return p if p.is_file() or p.suffix == ".pt" else p / MODEL_FILE


def load_checkpoint(path, map_location="cpu") -> tuple[dict, dict, dict]:
    """(config dict, state_dict, metadata) from a checkpoint folder or ``model.pt`` file.

    Raises
    ------
    FileNotFoundError
        No such file.
    FileFormatError
        Truncated or corrupt file, or not a DeformCL checkpoint.
    """
    obj = _load(resolve(path), map_location)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise FileFormatError(
            f"{str(path)!r} is not a {FORMAT} checkpoint (format={obj.get('format') if isinstance(obj, dict) else type(obj).__name__!r})"
        )
    if int(obj.get("version", 0)) > VERSION:
        raise FileFormatError(
            f"checkpoint {str(path)!r} has version {obj['version']}, newer than this vesseltree ({VERSION})"
        )
    return obj["config"], obj["state_dict"], obj.get("metadata", {})


def load_train_state(folder, map_location="cpu") -> dict:
    """The resumable state written next to ``model.pt`` by training."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"resume folder {str(folder)!r} does not exist")
    return _load(folder / STATE_FILE, map_location)
