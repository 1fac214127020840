"""What every benchmark records about the machine it ran on, and the order variants run in (imported by the scripts beside it).

Imports nothing of setpoint: a worker that must start without setpoint's process settings
(``openmp_wait.py``) can use it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def machine(*, load: bool = True) -> dict[str, Any]:
    """CPU model, cores, torch threads and versions; with ``load`` the load average at the start."""
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if load:
        info["load_average_start"] = os.getloadavg()
    return info


def rotated(items: Sequence[T], round_no: int) -> list[T]:
    """``items`` in round ``round_no``'s order: rotated so no variant always runs first or last.

    Example:
        >>> rotated(["a", "b", "c"], 0), rotated(["a", "b", "c"], 1), rotated(["a", "b", "c"], 5)
        (['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b'])
    """
    shift = round_no % len(items)
    return [*items[shift:], *items[:shift]]
