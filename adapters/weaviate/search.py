"""Searching the passage collection: hybrid, BM25 or vector queries, filters, one hit per passage, rerank."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from setpoint.adapters.weaviate.records import (
    SEARCH_MODES,
    STORED_PROPERTIES,
    SearchHit,
    SearchMode,
    hit_from_properties,
)
from setpoint.errors import InputError, RetrievalError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from weaviate.collections.classes.filters import _Filters

    from setpoint.adapters.domain.rerank import Reranker
    from setpoint.adapters.weaviate.schema import PassageCollection

__all__ = ["passage_filter", "search_passages"]


def search_passages(
    collection: PassageCollection,
    embedder: Embeddings,
    query: str,
    *,
    k: int,
    mode: SearchMode,
    alpha: float,
    source: str | Sequence[str] | None,
    title: str | Sequence[str] | None,
    rerank: bool | None,
    reranker: Reranker | None,
    rerank_by_default: bool,
    rerank_depth: int,
    query_vector: Sequence[float] | None,
    vector_name: str = "default",
) -> list[SearchHit]:
    """The body of ``WeaviateStore.search`` (see there for the arguments and the errors)."""
    if not query or not query.strip():
        raise InputError("the search query is empty")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    if mode not in SEARCH_MODES:
        raise InputError(f"search mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be between 0 (BM25 only) and 1 (vectors only), got {alpha}")
    use_reranker = reranker is not None and (rerank if rerank is not None else rerank_by_default)
    if rerank and reranker is None:
        raise InputError("this store has no reranker; build it with reranker=…")
    connection = collection.connection
    connection.connect()
    reason = connection.not_ready_reason()
    if reason is not None:
        raise RetrievalError(reason)
    vector: list[float] | None = None
    if mode != "bm25":
        vector = list(query_vector) if query_vector is not None else embedder.embed_query(query)
    # Over-fetch: several chunks of one passage collapse into one hit, and the
    # reranker needs a pool deeper than k to reorder.
    pool = max(rerank_depth, k) if use_reranker else k
    limit = pool + max(pool // 2, 5)
    where = passage_filter(source, title)
    with connection.errors(f"searching {collection.name}"):
        collection.require()
        target = collection.target(vector_name) if mode != "bm25" else None
        hits = _query(collection, query, vector, mode, alpha, limit, where, target)
    best: dict[tuple[str, str], SearchHit] = {}
    for hit in hits:
        best.setdefault((hit.source, hit.id), hit)  # results come best first
    ranked = list(best.values())[:pool]
    if use_reranker:
        assert reranker is not None
        ranked = reranker.rerank(query, ranked)
    return ranked[:k]


def _query(
    collection: PassageCollection,
    query: str,
    vector: list[float] | None,
    mode: SearchMode,
    alpha: float,
    limit: int,
    where: _Filters | None,
    target: str | None,
) -> list[SearchHit]:
    from weaviate.classes.query import HybridFusion, MetadataQuery

    handle = collection.handle()
    if mode == "vector":
        response = handle.query.near_vector(
            near_vector=vector,  # type: ignore[arg-type]
            target_vector=target,
            limit=limit,
            filters=where,
            return_metadata=MetadataQuery(distance=True),
            return_properties=STORED_PROPERTIES,
        )
        # Cosine distance is 1 - similarity; report the similarity (higher is better).
        return [
            hit_from_properties(o.properties, 1.0 - (o.metadata.distance or 0.0))
            for o in response.objects
        ]
    if mode == "bm25":
        response = handle.query.bm25(
            query=query,
            limit=limit,
            query_properties=["title", "text"],
            filters=where,
            return_metadata=MetadataQuery(score=True),
            return_properties=STORED_PROPERTIES,
        )
    else:
        response = handle.query.hybrid(
            query=query,
            vector=vector,
            target_vector=target,
            alpha=alpha,
            limit=limit,
            fusion_type=HybridFusion.RELATIVE_SCORE,
            query_properties=["title", "text"],
            filters=where,
            return_metadata=MetadataQuery(score=True),
            return_properties=STORED_PROPERTIES,
        )
    return [hit_from_properties(o.properties, o.metadata.score or 0.0) for o in response.objects]


def passage_filter(
    source: str | Sequence[str] | None, title: str | Sequence[str] | None
) -> _Filters | None:
    """A Weaviate filter: any of these sources and any of these exact titles (None: no filter).

    Raises:
        InputError: a filter is an empty list.

    Example:
        >>> passage_filter(None, None) is None
        True
    """
    from weaviate.classes.query import Filter

    parts = []
    for prop, value in (("source", source), ("title_key", title)):
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        if not values:
            raise InputError(f"the {prop.removesuffix('_key')} filter is an empty list")
        parts.append(
            Filter.by_property(prop).equal(values[0])
            if len(values) == 1
            else Filter.by_property(prop).contains_any(values)
        )
    if not parts:
        return None
    return Filter.all_of(parts) if len(parts) > 1 else parts[0]
