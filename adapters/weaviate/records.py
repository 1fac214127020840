"""What the passage store holds and returns: hits, passage versions, chunk UUIDs, stored properties."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "DEFAULT_VECTOR",
    "SEARCH_MODES",
    "STORED_PROPERTIES",
    "PassageVersion",
    "SearchHit",
    "SearchMode",
    "as_utc",
    "chunk_uuid",
    "hit_from_properties",
    "vector_name_of",
]

#: The named vector of the packaged embedder, and of collections made before named vectors.
DEFAULT_VECTOR = "default"

#: Every object is one chunk of one passage; these are what a search returns of it.
STORED_PROPERTIES = [
    "passage_id",
    "chunk",
    "title",
    "text",
    "source",
    "version",
    "ingested_at",
    "metadata",
]

SearchMode = Literal["hybrid", "bm25", "vector"]
#: The search modes behind ``WeaviateStore.search`` and the ``weaviate_search`` tool.
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "bm25", "vector")


def chunk_uuid(source: str, passage_id: str, chunk: int) -> str:
    """The object UUID of one chunk: a UUIDv5 of ``[source, passage id, chunk]``.

    JSON encoding keeps the name unambiguous whatever characters the source or id hold,
    so ingesting the same passage again always addresses the same objects.

    Example:
        >>> chunk_uuid("squad", "Denver-0", 0) == chunk_uuid("squad", "Denver-0", 0)
        True
    """
    from weaviate.util import generate_uuid5

    return str(generate_uuid5(json.dumps([source, passage_id, chunk], ensure_ascii=False)))


@dataclass(frozen=True)
class SearchHit:
    """One passage returned by a search: its best-matching chunk and a score (higher is better).

    ``version`` (a content hash) and ``ingested_at`` say which edition of the passage
    this is, so a caller can tell a newer passage from what it learned earlier.

    Example:
        >>> hit = SearchHit(id="Denver-0", title="Denver", text="...", source="squad", score=0.82)
        >>> hit.id
        'Denver-0'
    """

    id: str
    title: str
    text: str
    source: str
    score: float
    chunk: int = 0
    version: str = ""
    ingested_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``ingested_at`` as an ISO 8601 string (or None)."""
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "source": self.source,
            "score": self.score,
            "chunk": self.chunk,
            "version": self.version,
            "ingested_at": self.ingested_at.isoformat() if self.ingested_at else None,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class PassageVersion:
    """Which edition of a passage the index holds: content hash and when it was written."""

    id: str
    source: str
    version: str
    ingested_at: datetime


def hit_from_properties(props: Any, score: float) -> SearchHit:
    """A :class:`SearchHit` from one stored object's properties (a mapping) and a score.

    Example:
        >>> hit_from_properties({"passage_id": "p1", "text": "Hi", "metadata": '{"a": 1}'}, 0.5)
        SearchHit(id='p1', title='', text='Hi', source='', score=0.5, chunk=0, version='', ingested_at=None, metadata={'a': 1})
    """
    raw_meta = props.get("metadata")
    try:
        metadata = json.loads(raw_meta) if raw_meta else {}
    except ValueError:
        metadata = {}
    ingested = props.get("ingested_at")
    return SearchHit(
        id=str(props.get("passage_id") or ""),
        title=str(props.get("title") or ""),
        text=str(props.get("text") or ""),
        source=str(props.get("source") or ""),
        score=float(score),
        chunk=int(props.get("chunk") or 0),
        version=str(props.get("version") or ""),
        ingested_at=ingested if isinstance(ingested, datetime) else None,
        metadata=metadata if isinstance(metadata, dict) else {"value": metadata},
    )


def as_utc(moment: datetime | float) -> datetime:
    """``moment`` (a datetime or a Unix time) as an aware UTC-comparable datetime.

    Example:
        >>> as_utc(0).isoformat()
        '1970-01-01T00:00:00+00:00'
    """
    if isinstance(moment, (int, float)):
        return datetime.fromtimestamp(moment, tz=UTC)
    # A naive datetime is taken as local time, as datetime.timestamp() does.
    return moment if moment.tzinfo is not None else moment.astimezone(UTC)


def vector_name_of(embedder: Any) -> str:
    """The named vector an embedder's vectors live in: its ``vector_name``, else ``default``.

    Example:
        >>> vector_name_of(object())
        'default'
    """
    return str(getattr(embedder, "vector_name", None) or DEFAULT_VECTOR)
