"""Small file helpers shared by the adapters."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_json"]


def write_json(path: Path, data: Any, *, indent: int | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` through a temporary file beside it, so a crash
    leaves the old file whole and a reader never sees half a file.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "sub" / "probe.json"
        >>> write_json(target, {"a": 1}).read_text()
        '{"a": 1}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=indent), encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
