"""Node ``retrieve``: call the Weaviate search tool, then drop passages that fail the injection check."""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.runtime import Runtime

from setpoint.agents.resources import Resources, RunContext
from setpoint.errors import RetrievalError
from setpoint.tracing import ATTR, node_span, set_attributes

__all__ = ["make_retrieve"]


def make_retrieve(res: Resources) -> Any:
    def retrieve(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        query = state.get("query") or state["question"]
        calls = int(state.get("retrieval_calls", 0)) + 1
        tool = res.search_tool()
        with node_span(res.tracer, "retrieve") as node:
            call = {
                "name": tool.name,
                "args": {"query": query, "k": ctx.top_k, "alpha": ctx.alpha},
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
                    message = tool.invoke(call)
                    hits = list(message.artifact or []) if isinstance(message, ToolMessage) else []
                    span.set_attribute(ATTR.PASSAGE_IDS, [str(h["id"]) for h in hits])
            except RetrievalError as exc:
                if state.get("partial_answer") is None:
                    raise
                # Mid-answer re-entry with Weaviate down: finish from the weights, flagged.
                node.set_attribute(ATTR.RETRIEVAL_UNAVAILABLE, True)
                return {
                    "retrieval_unavailable": True,
                    "retrieval_calls": calls,
                    "route": "answer",
                    "reason": f"retrieval unavailable ({exc}); answered from the weights",
                }
            policy = res.policy(ctx.policy_file)
            kept: list[dict[str, Any]] = []
            dropped: list[dict[str, Any]] = list(state.get("dropped_passages") or [])
            verdicts = list(state.get("verdicts") or [])
            for hit in hits:
                verdict = policy.check_passage(hit["text"])
                if verdict.allowed:
                    kept.append(dict(hit))
                else:
                    dropped.append(
                        {"id": hit["id"], "reason": verdict.reason, "matched": verdict.matched}
                    )
                    verdicts.append({**verdict.to_dict(), "passage_id": hit["id"]})
            set_attributes(
                node,
                {
                    ATTR.ROUTE: "retrieve",
                    ATTR.RETRIEVAL_CALLS: calls,
                    ATTR.PASSAGE_IDS: [str(p["id"]) for p in kept],
                    ATTR.DROPPED_PASSAGES: [str(p["id"]) for p in dropped],
                },
            )
            return {
                "passages": kept,
                "dropped_passages": dropped,
                "verdicts": verdicts,
                "retrieval_calls": calls,
                "route": "retrieve",
                "messages": [
                    AIMessage(
                        "",
                        tool_calls=[{"name": call["name"], "args": call["args"], "id": call["id"]}],
                    ),
                    message,
                ],
            }

    return retrieve
