"""Passage files: JSON Lines read leniently, good lines kept, every bad line reported by number."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from setpoint.errors import IngestError

__all__ = ["PassageRecord", "read_jsonl"]

_CORE_FIELDS = ("id", "title", "text")


@dataclass(frozen=True)
class PassageRecord:
    """One passage to index: ``metadata`` holds every other field of its JSON line.

    Example:
        >>> PassageRecord(id="p1", title="Denver", text="Capital of Colorado.")
        PassageRecord(id='p1', title='Denver', text='Capital of Colorado.', metadata={})
    """

    id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _parse_line(raw: bytes) -> PassageRecord | str:
    """A record, or the reason the line is unusable."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(obj, dict):
        return f"not a JSON object (got {type(obj).__name__})"
    for name in _CORE_FIELDS:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            return f'field "{name}" must be a string, got {type(value).__name__}'
    passage_id = (obj.get("id") or "").strip()
    if not passage_id:
        return 'missing or empty "id"'
    text = obj.get("text") or ""
    if not text.strip():
        return 'missing or empty "text"'
    metadata = {k: v for k, v in obj.items() if k not in _CORE_FIELDS}
    return PassageRecord(id=passage_id, title=obj.get("title") or "", text=text, metadata=metadata)


def read_jsonl(path: Path) -> tuple[list[PassageRecord], list[tuple[int, str]]]:
    """Read ``{"id", "title", "text", ...}`` lines; returns the good records and the bad lines.

    A bad line (not UTF-8, not JSON, not an object, no id or text, a non-string field, an
    id already seen) is reported as ``(line number, reason)`` and skipped; blank lines are
    skipped silently. Line numbers start at 1.

    Raises:
        IngestError: the file is missing or cannot be read.

    Example:
        >>> records, bad = read_jsonl(Path("passages.jsonl"))  # doctest: +SKIP
        >>> bad
        [(7, 'invalid JSON: Expecting value at column 1')]
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IngestError(f"passage file {path} does not exist") from None
    except IsADirectoryError:
        raise IngestError(f"{path} is a directory; give a .jsonl file of passages") from None
    except OSError as exc:
        raise IngestError(f"cannot read passage file {path}: {exc.strerror or exc}") from None
    # Editors on Windows like to start UTF-8 files with a byte-order mark.
    data = data.removeprefix(b"\xef\xbb\xbf")
    records: list[PassageRecord] = []
    bad: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    # JSON Lines ends records with \n (or \r\n); work on bytes so that one line of bad
    # encoding is reported by number instead of failing the whole file's decode.
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        parsed = _parse_line(raw.rstrip(b"\r"))
        if isinstance(parsed, str):
            bad.append((number, parsed))
        elif parsed.id in first_line:
            bad.append(
                (number, f'duplicate id "{parsed.id}" (first on line {first_line[parsed.id]})')
            )
        else:
            first_line[parsed.id] = number
            records.append(parsed)
    return records, bad
