"""Passage files: JSON Lines (bad lines reported by number), Markdown sections, plain text."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from setpoint.errors import IngestError

__all__ = [
    "PASSAGE_SUFFIXES",
    "PassageFile",
    "PassageRecord",
    "find_passage_files",
    "read_jsonl",
    "read_markdown",
    "read_passages",
    "read_text",
]

logger = logging.getLogger(__name__)

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
    except RecursionError:
        return "invalid JSON: nested too deeply"
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
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "passages.jsonl"
        >>> _ = path.write_text('{"id": "p1", "title": "Rain", "text": "It rained."}\\n{oops\\n')
        >>> records, bad = read_jsonl(path)
        >>> [r.id for r in records], bad
        (['p1'], [(2, 'invalid JSON: Expecting property name enclosed in double quotes at column 2')])
    """
    path = Path(path)
    data = _read_bytes(path, "passage")
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


def _read_bytes(path: Path, kind: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IngestError(f"{kind} file {path} does not exist") from None
    except IsADirectoryError:
        raise IngestError(
            f"{path} is a directory; give a passage file, or the folder to `setpoint ingest`"
        ) from None
    except OSError as exc:
        raise IngestError(f"cannot read {kind} file {path}: {exc.strerror or exc}") from None


def _read_utf8(path: Path, kind: str) -> str:
    data = _read_bytes(path, kind)
    try:
        return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{kind} file {path} is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _slug(text: str) -> str:
    slug = re.sub(r"[^\w]+", "-", text.lower()).strip("-")
    return slug or "section"


def read_markdown(path: Path) -> list[PassageRecord]:
    """One passage per Markdown section (ATX ``#`` headings; fenced code is not a heading).

    A section's id is the slug of its heading path (``install/linux``; repeated paths get
    ``-2``, ``-3``), its title the heading path joined with `` › ``; text before the first
    heading is a passage with the file's stem as id and title. Sections with no text are
    skipped. YAML front matter is dropped.

    Raises:
        IngestError: the file is missing, unreadable or not UTF-8.

    Example:
        >>> [r.id for r in read_markdown(Path("guide.md"))]  # doctest: +SKIP
        ['guide', 'install', 'install/linux']
    """
    path = Path(path)
    text = _read_utf8(path, "Markdown")
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":
        for end in range(1, len(lines)):
            if lines[end].strip() in ("---", "..."):
                lines = lines[end + 1 :]
                break
    records: list[PassageRecord] = []
    used: dict[str, int] = {}
    stack: list[str] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        content = "\n".join(body).strip()
        body.clear()
        if not content:
            return
        base = "/".join(_slug(h) for h in stack) if stack else path.stem
        used[base] = used.get(base, 0) + 1
        passage_id = base if used[base] == 1 else f"{base}-{used[base]}"
        title = " › ".join(stack) if stack else path.stem
        records.append(PassageRecord(id=passage_id, title=title, text=content))

    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        flush()
        level = len(heading.group(1))
        del stack[level - 1 :]
        # A skipped level (# then ###) keeps the path short rather than inventing a parent.
        stack.append(heading.group(2).strip() or f"section {len(records) + 1}")
    flush()
    return records


def read_text(path: Path) -> list[PassageRecord]:
    """A plain-text file as one passage (id and title: the file's stem); chunking cuts it.

    Raises:
        IngestError: the file is missing, unreadable or not UTF-8.
    """
    path = Path(path)
    text = _read_utf8(path, "text")
    if not text.strip():
        return []
    return [PassageRecord(id=path.stem, title=path.stem, text=text.strip())]


#: File types an ingest reads, by suffix (lower case).
PASSAGE_SUFFIXES = (".jsonl", ".md", ".markdown", ".txt")


def read_passages(path: Path) -> tuple[list[PassageRecord], list[tuple[int, str]]]:
    """The passages of one file by its suffix (see ``PASSAGE_SUFFIXES``) and its bad lines.

    Raises:
        IngestError: unknown suffix, or the file cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix in (".md", ".markdown"):
        return read_markdown(path), []
    if suffix == ".txt":
        return read_text(path), []
    raise IngestError(
        f"{path}: unknown passage file type {suffix or '(none)'!r}; use "
        + ", ".join(PASSAGE_SUFFIXES)
    )


@dataclass(frozen=True)
class PassageFile:
    """A file of passages inside an ingested folder, and the source name it is stored under."""

    path: Path
    source: str


def find_passage_files(folder: Path) -> list[PassageFile]:
    """Every passage file under ``folder`` (recursively, hidden paths skipped), sorted.

    Each file's source is ``<folder name>/<path inside the folder>``, so two folders with
    the same inner layout do not collide, and a sync knows which sources are its own.

    Raises:
        IngestError: ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise IngestError(f"{folder} is not a folder")
    root = folder.resolve()
    name = root.name
    found: list[PassageFile] = []
    for path in sorted(folder.rglob("*")):
        inner = path.relative_to(folder)
        if any(part.startswith(".") for part in inner.parts):
            continue
        if path.is_file() and path.suffix.lower() in PASSAGE_SUFFIXES:
            # A symlink may point anywhere (a key file, another user's notes); what a folder
            # ingest indexes, and later serves to anyone who asks, stays inside the folder.
            if not path.resolve().is_relative_to(root):
                logger.warning("skipping %s: it links outside %s", path, folder)
                continue
            found.append(PassageFile(path=path, source=f"{name}/{inner.as_posix()}"))
    return found
