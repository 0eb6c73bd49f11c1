"""Helpers shared by the benchmark scripts (imported as ``_common`` from their folder)."""

from __future__ import annotations

import resource

MB = 1e6


def peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM: reset at exec, unlike ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
