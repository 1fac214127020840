"""Node ``retrieve``: call the Weaviate search tool, then drop passages that fail the injection check."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.runtime import Runtime

from setpoint.agents.resources import Resources, RunContext
from setpoint.errors import RetrievalError
from setpoint.tracing import ATTR, node_span, set_attributes

if TYPE_CHECKING:
    from setpoint.tools.policy import Policy

__all__ = ["make_retrieve", "screen_passages"]


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
            kept, newly_dropped, verdicts = screen_passages(
                res.policy(ctx.policy_file), hits, list(state.get("verdicts") or [])
            )
            dropped = [*(state.get("dropped_passages") or []), *newly_dropped]
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
            if newly_dropped and isinstance(message, ToolMessage):
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
