"""Peak-memory readings of the current process (Linux /proc), shared by the benchmarks."""

from __future__ import annotations


def status_mb(key: str) -> float:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``, ...) in MB; NaN where absent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux >= 4.0), so that
    what ran before (imports, loading a model) does not hide the peak of what is measured."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
