"""The ``weaviate_search`` tool: hybrid passage search for LangChain, hits as its artifact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from setpoint.adapters.store import SearchHit

__all__ = ["TOOL_NAME", "PassageSearcher", "SearchArgs", "make_search_tool", "search_passages"]

TOOL_NAME = "weaviate_search"
_PREVIEW_CHARS = 600


class PassageSearcher(Protocol):
    """What the tool needs from a store: ``WeaviateStore`` satisfies it, and so can a test fake."""

    def hybrid_search(self, query: str, *, k: int = 3, alpha: float = 0.5) -> list[SearchHit]: ...


class SearchArgs(BaseModel):
    """Arguments of ``weaviate_search``; unset k and alpha take the tool's defaults."""

    query: str = Field(min_length=1, description="What to look for, in natural language.")
    k: int | None = Field(default=None, ge=1, le=50, description="How many passages to return.")
    alpha: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Hybrid weight: 0 is keyword (BM25) only, 1 is embedding only.",
    )


def search_passages(
    store: PassageSearcher, query: str, k: int = 3, alpha: float = 0.5
) -> list[SearchHit]:
    """The ``k`` passages that best match ``query`` by hybrid search.

    Example:
        >>> hits = search_passages(store, "Who won Super Bowl 50?", 3, 0.5)  # doctest: +SKIP
        >>> hits[0].id
        'Super_Bowl_50-0'
    """
    return store.hybrid_search(query, k=k, alpha=alpha)


def _render(hits: list[SearchHit]) -> str:
    """Numbered, readable passages for the model (the artifact keeps the full structured hits)."""
    if not hits:
        return "No passages matched the query."
    blocks = []
    for n, hit in enumerate(hits, start=1):
        text = hit.text if len(hit.text) <= _PREVIEW_CHARS else hit.text[:_PREVIEW_CHARS] + "…"
        blocks.append(f"[{n}] {hit.title or hit.id} (id {hit.id}, score {hit.score:.3f})\n{text}")
    return "\n\n".join(blocks)


def make_search_tool(store: PassageSearcher, *, k: int = 3, alpha: float = 0.5) -> BaseTool:
    """A ``weaviate_search`` tool over ``store``.

    Invoked with a tool call it returns a ``ToolMessage`` whose content is the numbered
    passages as text and whose ``artifact`` is a list of
    ``{"id", "title", "text", "source", "score"}`` dicts. ``RetrievalError`` propagates,
    so the graph can decide what an unavailable store means.

    Example:
        >>> tool = make_search_tool(store, k=3)  # doctest: +SKIP
        >>> msg = tool.invoke({"name": "weaviate_search", "args": {"query": "Super Bowl 50"},
        ...                    "id": "call_1", "type": "tool_call"})
        >>> msg.artifact[0]["id"]
        'Super_Bowl_50-0'
    """
    default_k, default_alpha = k, alpha

    def weaviate_search(
        query: str, k: int | None = None, alpha: float | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        hits = search_passages(
            store,
            query,
            k=default_k if k is None else k,
            alpha=default_alpha if alpha is None else alpha,
        )
        return _render(hits), [hit.to_dict() for hit in hits]

    return StructuredTool.from_function(
        func=weaviate_search,
        name=TOOL_NAME,
        description=(
            "Search the passage collection by keywords and meaning at once. Returns the best "
            "passages with their ids, titles and scores."
        ),
        args_schema=SearchArgs,
        response_format="content_and_artifact",
    )
