"""The ``weaviate_search`` tool: hybrid, BM25 or vector passage search for LangChain, hits as its artifact."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from setpoint.errors import InputError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from setpoint.adapters.weaviate.store import PassageVersion, SearchHit

__all__ = [
    "TOOL_NAME",
    "PassageSearcher",
    "SearchArgs",
    "changed_passages",
    "make_search_tool",
    "search_passages",
]

TOOL_NAME = "weaviate_search"
_PREVIEW_CHARS = 600

Mode = Literal["hybrid", "bm25", "vector"]


class PassageSearcher(Protocol):
    """What the tool needs from a store: ``WeaviateStore`` satisfies it, and so can a test fake.

    A store with only ``hybrid_search`` serves the default mode without filters; modes and
    filters need a ``search(query, *, k, mode, alpha, source, title)`` method as well.
    """

    def hybrid_search(self, query: str, *, k: int = 3, alpha: float = 0.5) -> list[SearchHit]: ...


class SearchArgs(BaseModel):
    """Arguments of ``weaviate_search``; unset ones take the tool's defaults."""

    query: str = Field(min_length=1, description="What to look for, in natural language.")
    k: int | None = Field(default=None, ge=1, le=50, description="How many passages to return.")
    alpha: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Hybrid weight: 0 is keyword (BM25) only, 1 is embedding only.",
    )
    mode: Mode | None = Field(
        default=None,
        description="hybrid (keywords and meaning), bm25 (keywords only) or vector (meaning only).",
    )
    source: str | None = Field(default=None, description="Only passages from this source.")
    title: str | None = Field(default=None, description="Only passages with exactly this title.")


def search_passages(
    store: PassageSearcher,
    query: str,
    k: int = 3,
    alpha: float = 0.5,
    *,
    mode: Mode = "hybrid",
    source: str | None = None,
    title: str | None = None,
) -> list[SearchHit]:
    """The ``k`` passages that best match ``query``.

    Raises:
        InputError: a mode or filter the store cannot serve.
        RetrievalError: the store could not search.

    Example:
        >>> hits = search_passages(store, "Who won Super Bowl 50?", 3, 0.5)  # doctest: +SKIP
        >>> hits[0].id  # doctest: +SKIP
        'Super_Bowl_50-0'
    """
    search = getattr(store, "search", None)
    if callable(search):
        hits: list[SearchHit] = search(
            query, k=k, mode=mode, alpha=alpha, source=source, title=title
        )
        return hits
    if mode != "hybrid" or source is not None or title is not None:
        raise InputError(
            f"{type(store).__name__} offers hybrid search only, without source or title filters"
        )
    return store.hybrid_search(query, k=k, alpha=alpha)


def changed_passages(
    store: Any, passage_ids: Sequence[str], since: datetime | float
) -> dict[str, PassageVersion | None]:
    """Which of ``passage_ids`` changed (new edition, or deleted: None) after ``since``.

    What a LoRA adapter learned from a passage before ``since`` is superseded for each id
    in the result. See :meth:`setpoint.adapters.weaviate.store.WeaviateStore.changed_since`.

    Raises:
        InputError: the store keeps no passage versions.
    """
    changed_since = getattr(store, "changed_since", None)
    if not callable(changed_since):
        raise InputError(f"{type(store).__name__} keeps no passage versions")
    result: dict[str, PassageVersion | None] = changed_since(passage_ids, since)
    return result


def _render(hits: list[SearchHit]) -> str:
    """Numbered, readable passages for the model (the artifact keeps the full structured hits)."""
    if not hits:
        return "No passages matched the query."
    blocks = []
    for n, hit in enumerate(hits, start=1):
        text = hit.text if len(hit.text) <= _PREVIEW_CHARS else hit.text[:_PREVIEW_CHARS] + "…"
        blocks.append(f"[{n}] {hit.title or hit.id} (id {hit.id}, score {hit.score:.3f})\n{text}")
    return "\n\n".join(blocks)


def make_search_tool(
    store: PassageSearcher, *, k: int = 3, alpha: float = 0.5, mode: Mode = "hybrid"
) -> BaseTool:
    """A ``weaviate_search`` tool over ``store``.

    Invoked with a tool call it returns a ``ToolMessage`` whose content is the numbered
    passages as text and whose ``artifact`` is a list of ``SearchHit.to_dict()`` dicts:
    ``{"id", "title", "text", "source", "score", "chunk", "version", "ingested_at",
    "metadata"}`` (a store's own hits may carry fewer). ``RetrievalError`` propagates, so
    the graph can decide what an unavailable store means.

    Example:
        >>> tool = make_search_tool(store, k=3)  # doctest: +SKIP
        >>> msg = tool.invoke({"name": "weaviate_search", "args": {"query": "Super Bowl 50"},  # doctest: +SKIP
        ...                    "id": "call_1", "type": "tool_call"})
        >>> msg.artifact[0]["id"]  # doctest: +SKIP
        'Super_Bowl_50-0'
    """
    default_k, default_alpha, default_mode = k, alpha, mode

    def weaviate_search(
        query: str,
        k: int | None = None,
        alpha: float | None = None,
        mode: Mode | None = None,
        source: str | None = None,
        title: str | None = None,
    ) -> tuple[str, list[dict[str, Any]]]:
        hits = search_passages(
            store,
            query,
            k=default_k if k is None else k,
            alpha=default_alpha if alpha is None else alpha,
            mode=default_mode if mode is None else mode,
            source=source,
            title=title,
        )
        return _render(hits), [hit.to_dict() for hit in hits]

    return StructuredTool.from_function(
        func=weaviate_search,
        name=TOOL_NAME,
        description=(
            "Search the passage collection by keywords and meaning at once (or by one of "
            "them). Returns the best passages with their ids, titles and scores."
        ),
        args_schema=SearchArgs,
        response_format="content_and_artifact",
    )
