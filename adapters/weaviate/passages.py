"""Stored passages: reading them back (chunks, versions, counts, sources), deleting them, and the write counter."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from setpoint.adapters.weaviate.records import (
    STORED_PROPERTIES,
    PassageVersion,
    SearchHit,
    as_utc,
    hit_from_properties,
)

if TYPE_CHECKING:
    from weaviate.collections.classes.filters import _Filters

    from setpoint.adapters.weaviate.schema import PassageCollection

__all__ = [
    "changed_since",
    "count",
    "delete_passages",
    "delete_source",
    "get",
    "index_generation",
    "note_index_write",
    "sources",
    "stored_chunks",
    "stored_versions",
    "versions",
]

# Weaviate answers at most QUERY_MAXIMUM_RESULTS (default 10,000) objects per query.
_PAGE = 10_000

# Bumped by every ingest or delete in this process: caches of what the index holds (which
# passages an adapter learned from have changed) compare it instead of asking Weaviate.
_index_writes = 0


def index_generation() -> int:
    """How many ingests and deletes this process ran; a cache of index facts is valid while it holds."""
    return _index_writes


def note_index_write() -> None:
    """Count one write to the index (before it starts, and again after an ingest ends).

    Example:
        >>> before = index_generation()
        >>> note_index_write()
        >>> index_generation() == before + 1
        True
    """
    global _index_writes
    _index_writes += 1


def count(collection: PassageCollection, *, first_chunks: bool) -> int:
    """Passages (``first_chunks``) or stored objects; 0 when the collection does not exist yet."""
    from weaviate.classes.query import Filter

    if not collection.exists():
        return 0
    where = Filter.by_property("chunk").equal(0) if first_chunks else None
    with collection.connection.errors("counting passages"):
        total = collection.handle().aggregate.over_all(total_count=True, filters=where).total_count
    return int(total or 0)


def get(collection: PassageCollection, passage_id: str, source: str) -> SearchHit | None:
    """The stored passage ``passage_id`` of ``source``, its chunks joined (score 0.0), or None."""
    chunks = stored_chunks(collection, source, [passage_id]).get(passage_id)
    if not chunks:
        return None
    first = chunks[min(chunks)]
    text = "\n\n".join(chunks[n].text for n in sorted(chunks)) if len(chunks) > 1 else first.text
    return SearchHit(
        id=first.id,
        title=first.title,
        text=text,
        source=first.source,
        score=0.0,
        chunk=0,
        version=first.version,
        ingested_at=first.ingested_at,
        metadata=first.metadata,
    )


def stored_chunks(
    collection: PassageCollection, source: str, passage_ids: Sequence[str]
) -> dict[str, dict[int, SearchHit]]:
    """Every stored chunk of these passages of ``source``: ``{passage id: {chunk: hit}}``."""
    found: dict[str, dict[int, SearchHit]] = {}
    for props in _fetch_chunks(collection, source, passage_ids, STORED_PROPERTIES):
        hit = hit_from_properties(props, 0.0)
        found.setdefault(hit.id, {})[hit.chunk] = hit
    return found


def stored_versions(
    collection: PassageCollection, source: str, passage_ids: Sequence[str]
) -> dict[str, dict[int, str]]:
    """``{passage id: {chunk: version}}``: what an ingest compares against, without the text."""
    found: dict[str, dict[int, str]] = {}
    for props in _fetch_chunks(collection, source, passage_ids, ["passage_id", "chunk", "version"]):
        chunks = found.setdefault(str(props.get("passage_id") or ""), {})
        chunks[int(props.get("chunk") or 0)] = str(props.get("version") or "")
    return found


def _fetch_chunks(
    collection: PassageCollection, source: str, passage_ids: Sequence[str], properties: list[str]
) -> Iterator[Any]:
    from weaviate.classes.query import Filter

    if not passage_ids or not collection.exists():
        return
    pending = [list(dict.fromkeys(passage_ids))]
    with collection.connection.errors(f"reading passages of {source}"):
        while pending:
            ids = pending.pop()
            where = Filter.by_property("source").equal(source) & Filter.by_property(
                "passage_id"
            ).contains_any(ids)
            response = collection.handle().query.fetch_objects(
                filters=where, limit=_PAGE, return_properties=properties
            )
            if len(response.objects) >= _PAGE and len(ids) > 1:
                # More chunks than one answer holds: ask again in halves.
                pending += [ids[: len(ids) // 2], ids[len(ids) // 2 :]]
                continue
            for obj in response.objects:
                yield obj.properties


def versions(
    collection: PassageCollection, passage_ids: Sequence[str], *, source: str | None = None
) -> dict[tuple[str, str], PassageVersion]:
    """The stored edition of each passage: ``{(source, id): PassageVersion}``."""
    from weaviate.classes.query import Filter

    found: dict[tuple[str, str], PassageVersion] = {}
    if not passage_ids or not collection.exists():
        return found
    where = Filter.by_property("chunk").equal(0) & Filter.by_property("passage_id").contains_any(
        list(passage_ids)
    )
    if source is not None:
        where = where & Filter.by_property("source").equal(source)
    with collection.connection.errors("reading passage versions"):
        response = collection.handle().query.fetch_objects(
            filters=where,
            limit=_PAGE,
            return_properties=["passage_id", "source", "version", "ingested_at"],
        )
    for obj in response.objects:
        props = obj.properties
        key = (str(props["source"]), str(props["passage_id"]))
        found[key] = PassageVersion(
            id=key[1],
            source=key[0],
            version=str(props.get("version") or ""),
            ingested_at=as_utc(props["ingested_at"]),
        )
    return found


def changed_since(
    collection: PassageCollection,
    passage_ids: Sequence[str],
    since: datetime | float,
    *,
    source: str | None = None,
) -> dict[str, PassageVersion | None]:
    """Which of these passages changed after ``since`` (see ``WeaviateStore.changed_since``)."""
    cutoff = as_utc(since)
    stored: dict[str, list[PassageVersion]] = {}
    for version in versions(collection, passage_ids, source=source).values():
        stored.setdefault(version.id, []).append(version)
    changed: dict[str, PassageVersion | None] = {}
    for passage_id in dict.fromkeys(passage_ids):
        editions = stored.get(passage_id)
        if not editions:
            changed[passage_id] = None
            continue
        newest = max(editions, key=lambda v: v.ingested_at)
        if newest.ingested_at > cutoff:
            changed[passage_id] = newest
    return changed


def sources(collection: PassageCollection) -> dict[str, int]:
    """Every source in the collection with its number of passages."""
    from weaviate.classes.aggregate import GroupByAggregate
    from weaviate.classes.query import Filter

    if not collection.exists():
        return {}
    with collection.connection.errors("listing sources"):
        response = collection.handle().aggregate.over_all(
            filters=Filter.by_property("chunk").equal(0),
            group_by=GroupByAggregate(prop="source", limit=_PAGE),
            total_count=True,
        )
    return {str(g.grouped_by.value): int(g.total_count or 0) for g in response.groups}


def delete_passages(
    collection: PassageCollection, passage_ids: Sequence[str], *, source: str | None = None
) -> list[tuple[str, str]]:
    """Delete passages by id (in one source or all); returns the ``(source, id)`` pairs deleted."""
    from weaviate.classes.query import Filter

    if not passage_ids or not collection.exists():
        return []
    note_index_write()
    where = Filter.by_property("passage_id").contains_any(list(passage_ids))
    if source is not None:
        where = where & Filter.by_property("source").equal(source)
    return _delete_where(collection, where, f"deleting {len(passage_ids)} passages")


def delete_source(
    collection: PassageCollection, source: str, *, keep: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """Delete every passage of ``source`` except the ids in ``keep``; returns what went."""
    from weaviate.classes.query import Filter

    if not collection.exists():
        return []
    note_index_write()
    where = Filter.by_property("source").equal(source)
    if keep:
        where = where & Filter.by_property("passage_id").contains_none(list(keep))
    return _delete_where(collection, where, f"deleting passages of {source}")


def _delete_where(
    collection: PassageCollection, where: _Filters, action: str
) -> list[tuple[str, str]]:
    from weaviate.classes.query import Filter

    handle = collection.handle()
    gone: set[tuple[str, str]] = set()
    with collection.connection.errors(action):
        first = where & Filter.by_property("chunk").equal(0)
        while True:
            # Learn the passages first: delete_many reports objects, not passages.
            listed = handle.query.fetch_objects(
                filters=first, limit=_PAGE, return_properties=["passage_id", "source"]
            ).objects
            gone.update(
                (str(o.properties["source"]), str(o.properties["passage_id"])) for o in listed
            )
            result = handle.data.delete_many(where=where)
            # One call deletes at most QUERY_MAXIMUM_RESULTS objects; repeat until none match.
            if result.matches == 0 or (result.matches < _PAGE and len(listed) < _PAGE):
                break
    return sorted(gone)
