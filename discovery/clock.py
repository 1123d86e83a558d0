"""The CPU clock every cost in the package is measured with."""

from __future__ import annotations

import resource
import time


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (Zeo++ runs in a child process)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime
