"""Small file helpers shared by the adapters."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

__all__ = ["hash_file", "write_json", "write_json_lines"]


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def hash_file(digest: _Digest, path: Path, out: BinaryIO | None = None) -> None:
    """Feed the bytes of ``path`` into ``digest`` in 4 MiB blocks (and copy them to ``out``).

    One reading loop for every content hash the adapters take: data files in training
    records, embedder folders, GGUF chunks joined while they are checked.

    Example:
        >>> import hashlib, tempfile
        >>> f = Path(tempfile.mkdtemp()) / "x"; _ = f.write_bytes(b"abc")
        >>> d = hashlib.sha256(); hash_file(d, f); d.hexdigest()[:8]
        'ba7816bf'
    """
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
            if out is not None:
                out.write(block)


def write_json(path: Path, data: Any, *, indent: int | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` through a temporary file beside it, so a crash
    leaves the old file whole and a reader never sees half a file.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "sub" / "probe.json"
        >>> write_json(target, {"a": 1}).read_text()
        '{"a": 1}'
    """
    return _write_atomically(path, json.dumps(data, indent=indent))


def write_json_lines(path: Path, rows: Iterable[Any]) -> Path:
    """Write each of ``rows`` as one JSON line, atomically like ``write_json``.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "rows.jsonl"
        >>> write_json_lines(target, [{"a": 1}, [2]]).read_text().splitlines()
        ['{"a": 1}', '[2]']
    """
    return _write_atomically(path, "".join(json.dumps(row) + "\n" for row in rows))


def _write_atomically(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
