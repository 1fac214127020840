"""Node ``retrieve``: call the Weaviate search tool, then drop passages that fail the injection check.

Two LangGraph mechanisms guard the search: ``RETRIEVAL_RETRY`` (the node's ``RetryPolicy``)
runs the node again after a transient Weaviate error (``is_transient``), and the search
itself is a one-node graph with a ``CachePolicy``, so an identical query, ``k``, ``alpha``
and collection within ``RETRIEVAL_CACHE_TTL_S`` reads ``Resources.retrieval_cache``
instead of the store.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import CachePolicy, RetryPolicy

from setpoint.adapters.domain.hops import merge_passages
from setpoint.adapters.weaviate.passages import index_generation
from setpoint.agents.decide import after_retrieval, on_retrieval_error
from setpoint.agents.resources import Resources
from setpoint.errors import RetrievalError
from setpoint.tracing import (
    ATTR,
    guardrail_results,
    node_span,
    retrieval_span,
    set_attributes,
)

if TYPE_CHECKING:
    from setpoint.graphs.context import Context
    from setpoint.tools.policy import Policy

__all__ = [
    "RETRIEVAL_CACHE_TTL_S",
    "RETRIEVAL_RETRY",
    "is_transient",
    "make_retrieve",
    "screen_passages",
]

# Failures that say "try again shortly" rather than "this cannot work": weaviate-client's
# timeout and connection errors (matched by name: agents do not import weaviate), HTTP
# statuses of an overloaded or restarting server, gRPC codes of the same.
_TRANSIENT_ERRORS = frozenset(
    {"WeaviateTimeoutError", "WeaviateGRPCUnavailableError", "WeaviateConnectionError"}
)
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_GRPC = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


def is_transient(exc: BaseException) -> bool:
    """Whether a search error is worth retrying: a timeout, a dropped connection, an
    overloaded or restarting server, anywhere in the exception's cause chain.

    An exception with a boolean ``transient`` attribute decides for itself. A store that is
    down, a missing collection or a bad query are not transient.

    Example:
        >>> from setpoint.errors import RetrievalError
        >>> is_transient(RetrievalError("Weaviate has no collection X"))
        False
        >>> try:
        ...     raise RetrievalError("search timed out") from TimeoutError("read timeout")
        ... except RetrievalError as err:
        ...     is_transient(err)
        True
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        flag = getattr(current, "transient", None)
        if isinstance(flag, bool):
            return flag
        name = type(current).__name__
        if isinstance(current, (TimeoutError, ConnectionError)) or name in _TRANSIENT_ERRORS:
            return True
        if getattr(current, "status_code", None) in _TRANSIENT_STATUS:
            return True
        if name == "WeaviateQueryError" and any(code in str(current) for code in _TRANSIENT_GRPC):
            return True
        current = current.__cause__ or current.__context__
    return False


#: The retrieve node's retry policy: three attempts, 0.5 s then 1 s apart (plus jitter).
RETRIEVAL_RETRY = RetryPolicy(
    initial_interval=0.5, backoff_factor=2.0, max_attempts=3, retry_on=is_transient
)
#: How long a search result is reused. Short, because the cache cannot see every index
#: change: an ingest or delete through this process moves the index generation in the key
#: (older entries go unused), one through another process shows after at most this long.
RETRIEVAL_CACHE_TTL_S = 60


class _Search(TypedDict, total=False):
    query: str
    k: int
    alpha: float
    #: The process's index generation: an ingest or delete here makes older entries unused.
    generation: int
    collection: str
    content: str
    hits: list[dict[str, Any]]


def _search_key(request: Mapping[str, Any]) -> str:
    return json.dumps(
        [
            request["collection"],
            request.get("generation", 0),
            request["query"],
            request["k"],
            request["alpha"],
        ]
    )


def _cached_search(res: Resources) -> Any:
    """The search as a one-node graph whose node LangGraph caches by query, k, alpha, collection.

    A graph of its own, not a ``CachePolicy`` on the retrieve node: a node's cache key sees
    only its input state (k and alpha live in the run context), and the node's own output
    depends on the run so far (verdicts, budget, the fallback when the store is down).
    """

    def search(state: _Search) -> dict[str, Any]:
        tool = res.search_tool()
        args = {"query": state["query"], "k": state["k"], "alpha": state["alpha"]}
        message = tool.invoke(
            {"name": tool.name, "args": args, "id": "search", "type": "tool_call"}
        )
        if not isinstance(message, ToolMessage):
            return {"content": str(message), "hits": []}
        return {"content": message.content, "hits": list(message.artifact or [])}

    builder = StateGraph(_Search)
    builder.add_node(
        "search",
        search,
        cache_policy=CachePolicy(key_func=_search_key, ttl=RETRIEVAL_CACHE_TTL_S),
    )
    builder.add_edge(START, "search")
    builder.add_edge("search", END)
    # Inherits the parent run's checkpointer: compiled with checkpointer=False, LangGraph 1.2
    # still hands it the parent's durability="sync" and then waits on a checkpoint it never
    # writes (AttributeError _put_checkpoint_fut). The cost is a few checkpoints per search.
    return builder.compile(cache=res.retrieval_cache(), name="search")


def screen_passages(
    policy: Policy, hits: list[dict[str, Any]], verdicts: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Split hits into kept and dropped by the policy's passage checks; failed verdicts are appended.

    Returns ``(kept, dropped, verdicts)``; each dropped record has the passage id, reason code,
    check, matched text and detector score.
    """
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    verdicts = list(verdicts)
    for hit in hits:
        verdict = policy.check_passage(hit["text"])
        if verdict.allowed:
            kept.append(dict(hit))
            continue
        dropped.append(
            {
                "id": hit["id"],
                "reason": verdict.reason,
                "check": verdict.check,
                "matched": verdict.matched,
                "score": verdict.score,
            }
        )
        verdicts.append({**verdict.to_dict(), "target": "passage", "passage_id": hit["id"]})
    return kept, dropped, verdicts


def _screened_content(kept: list[dict[str, Any]], dropped: list[dict[str, Any]]) -> str:
    blocks = [
        f"[{n}] {p.get('title') or p['id']} (id {p['id']})\n{p['text']}"
        for n, p in enumerate(kept, start=1)
    ]
    blocks.append(
        "Withheld by the prompt-injection screen: " + ", ".join(str(d["id"]) for d in dropped)
    )
    return "\n\n".join(blocks)


def make_retrieve(res: Resources) -> Any:
    searcher = _cached_search(res)

    def retrieve(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        query = state.get("query") or state["question"]
        calls = int(state.get("retrieval_calls", 0)) + 1
        tool = res.search_tool()
        with node_span(res.tracer, "retrieve") as node:
            args: dict[str, Any] = {"query": query, "k": ctx.top_k, "alpha": ctx.alpha}
            call = {
                "name": tool.name,
                "args": args,
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "tool_call",
            }
            try:
                with res.tracer.start_as_current_span(f"execute_tool {tool.name}") as span:
                    set_attributes(
                        span,
                        {
                            ATTR.OPERATION: "execute_tool",
                            ATTR.TOOL_NAME: tool.name,
                            ATTR.TOOL_TYPE: "datastore",
                            ATTR.DB_SYSTEM: "weaviate",
                            ATTR.DB_COLLECTION: res.settings.collection,
                            ATTR.RETRIEVAL_CALLS: calls,
                        },
                    )
                    with retrieval_span(res.tracer, res.settings.collection, ctx.top_k) as search:
                        found = searcher.invoke(
                            {
                                **args,
                                "collection": res.settings.collection,
                                "generation": index_generation(),
                            }
                        )
                        hits = list(found["hits"])
                        documents = [{"id": str(h["id"]), "score": h.get("score")} for h in hits]
                        set_attributes(search, {ATTR.RETRIEVAL_DOCUMENTS: documents})
                    message = ToolMessage(
                        found["content"], tool_call_id=call["id"], name=tool.name, artifact=hits
                    )
                    span.set_attribute(ATTR.PASSAGE_IDS, [str(h["id"]) for h in hits])
            except RetrievalError as exc:
                info = runtime.execution_info
                fallback = on_retrieval_error(
                    str(exc),
                    mid_answer=state.get("partial_answer") is not None,
                    hop=bool(state.get("passages")),
                    transient=is_transient(exc),
                    attempts_left=info is not None
                    and info.node_attempt < RETRIEVAL_RETRY.max_attempts,
                )
                if fallback is None:
                    raise
                # Mid-answer re-entry with Weaviate down: finish from the weights, flagged.
                node.set_attribute(ATTR.RETRIEVAL_UNAVAILABLE, True)
                return {
                    "retrieval_unavailable": True,
                    "retrieval_calls": calls,
                    **fallback.update(),
                }
            kept, newly_dropped, verdicts = screen_passages(
                res.policy(ctx.policy_file), hits, list(state.get("verdicts") or [])
            )
            # Every kept passage of every hop, each once: what a date comparison reads.
            found_so_far = list(state.get("found_passages") or [])
            known = {str(p["id"]) for p in found_so_far}
            found_so_far += [dict(p) for p in kept if str(p["id"]) not in known]
            if state.get("passages"):
                # A later hop adds to what the first found: the reader reads both hops' best
                # (top_k + 1 passages: the bridge passage and what it led to fit the prompt).
                # After the first half of a nested question the next read asks about the
                # bridge: its hop's passages lead.
                earlier = list(state["passages"])
                if state.get("hop_question"):
                    kept = merge_passages(kept, earlier, ctx.top_k + 1)
                else:
                    kept = merge_passages(earlier, kept, ctx.top_k + 1)
            dropped = [*(state.get("dropped_passages") or []), *newly_dropped]
            guardrail_results(
                node,
                verdicts[len(state.get("verdicts") or []) :],
                policy_id=res.policy(ctx.policy_file).source,
                source="retrieval",
            )
            for drop in newly_dropped:
                node.add_event(
                    "passage_dropped",
                    {
                        "setpoint.passage_id": str(drop["id"]),
                        "setpoint.reason": drop["reason"],
                        "setpoint.check": drop["check"],
                        "setpoint.score": float(drop.get("score") or 0.0),
                    },
                )
            set_attributes(
                node,
                {
                    ATTR.ROUTE: "retrieve",
                    ATTR.RETRIEVAL_CALLS: calls,
                    ATTR.PASSAGE_IDS: [str(p["id"]) for p in kept],
                    ATTR.DROPPED_PASSAGES: [str(p["id"]) for p in dropped],
                },
            )
            if newly_dropped:
                # The tool's own message quotes every hit; the conversation must not carry the
                # dropped text either (a chat client replaying messages would feed it to a model).
                message = ToolMessage(
                    _screened_content(kept, newly_dropped),
                    tool_call_id=message.tool_call_id,
                    name=message.name,
                    artifact=kept,
                )
            return {
                "passages": kept,
                "found_passages": found_so_far,
                "dropped_passages": dropped,
                "verdicts": verdicts,
                "retrieval_calls": calls,
                **after_retrieval().update(),
                "messages": [
                    AIMessage(
                        "",
                        tool_calls=[{"name": call["name"], "args": call["args"], "id": call["id"]}],
                    ),
                    message,
                ],
            }

    return retrieve
