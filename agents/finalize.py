"""Node ``finalize``: the answer message, its citations and the decision record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime

from setpoint.agents.decide import final_route
from setpoint.agents.resources import Resources
from setpoint.tracing import ATTR, node_span, set_attributes

if TYPE_CHECKING:
    from setpoint.graphs.context import Context

__all__ = ["make_finalize"]


def make_finalize(res: Resources) -> Any:
    def finalize(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        with node_span(res.tracer, "finalize") as span:
            status = state.get("status") or "answered"
            route = final_route(state.get("route"))
            # An unsure answer is a best guess: it keeps its citations so a reader can check it.
            given = status in ("answered", "unsure")
            passages = (state.get("passages") or []) if given else []
            citations = [
                {
                    "index": i,
                    "id": p["id"],
                    "title": p.get("title", ""),
                    "source": p.get("source", ""),
                    "score": p.get("score"),
                }
                for i, p in enumerate(passages, start=1)
            ]
            unavailable = bool(state.get("retrieval_unavailable"))
            if route == "answer" and not unavailable and state.get("retrieval_calls", 0) == 0:
                # The answer did not need Weaviate; flag it when Weaviate is down anyway.
                unavailable = not res.retrieval_available()
            probe = state.get("probe") or {}
            decision = {
                "route": route,
                "reason": state.get("reason", ""),
                "status": status,
                "probe_entropy": probe.get("signal"),
                "answer_entropy": state.get("answer_entropy"),
                "setpoint": ctx.setpoint,
                "probe_setpoint": ctx.probe_setpoint,
                "retrieval_calls": int(state.get("retrieval_calls", 0)),
                "retrieval_unavailable": unavailable,
                "adapter": state.get("adapter"),
                "tool": (state.get("tool_call") or {}).get("name") if route == "tool" else None,
                "dropped_passages": len(state.get("dropped_passages") or []),
                "uncertain_after_budget": bool(state.get("uncertain_after_budget")),
            }
            set_attributes(
                span,
                {
                    ATTR.ROUTE: route,
                    ATTR.REASON: decision["reason"],
                    ATTR.RETRIEVAL_CALLS: decision["retrieval_calls"],
                    ATTR.RETRIEVAL_UNAVAILABLE: unavailable,
                    ATTR.ADAPTER: decision["adapter"],
                    ATTR.PASSAGE_IDS: [c["id"] for c in citations],
                    "setpoint.status": status,
                },
            )
            if res.settings.trace_content:
                # What `setpoint distill` reads back: the question, the answer and the passages
                # it was read from (opt-in, like every text in spans).
                set_attributes(
                    span,
                    {
                        ATTR.INPUT_MESSAGES: [
                            {"role": "user", "content": state.get("question", "")}
                        ],
                        ATTR.OUTPUT_MESSAGES: [
                            {"role": "assistant", "content": state.get("answer", "")}
                        ],
                        "setpoint.cited_passages": [
                            {"id": p["id"], "title": p.get("title", ""), "text": p.get("text", "")}
                            for p in passages
                        ]
                        or None,
                    },
                )
            return {
                "status": status,
                "route": route,
                "citations": citations,
                "retrieval_unavailable": unavailable,
                "decision": decision,
                "messages": [
                    AIMessage(state.get("answer", ""), response_metadata={"setpoint": decision})
                ],
            }

    return finalize
