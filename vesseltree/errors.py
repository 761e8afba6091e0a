"""Exceptions raised by vesseltree.

Every error about a bad argument or a bad file is a :class:`ValueError` subclass, so callers that
already catch ``ValueError`` keep working, and every vesseltree error is a :class:`VesselTreeError`.
Messages name the argument, echo the offending value and say what to do instead.
"""

from __future__ import annotations

__all__ = ["VesselTreeError", "InvalidInputError", "FileFormatError", "EmptyInputError"]


class VesselTreeError(Exception):
    """Base class of every exception raised by vesseltree."""


class InvalidInputError(VesselTreeError, ValueError):
    """An argument has the wrong shape, type or value (names the argument and the value)."""


class FileFormatError(InvalidInputError):
    """A file cannot be read or written: unknown suffix, corrupt or truncated content."""


class EmptyInputError(InvalidInputError):
    """The input holds nothing to work on (an empty mask, a graph without nodes)."""


def describe(value, limit: int = 80) -> str:
    """Short printable form of ``value`` for error messages (arrays by shape and dtype)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None and getattr(value, "size", 0) > 6:
        return f"<array shape={tuple(shape)} dtype={dtype}>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
