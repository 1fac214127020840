"""Node ``call_tool``: answer with the registered tool that declared it handles the question.

``guard_input`` asks the ``setpoint.tools`` registry (``match_question``) and, when a tool's
``handles(question)`` gives arguments, routes here instead of to the probe: no model runs, the
tool's result is the answer, and ``check_output`` applies the policy to it as to any answer.
A tool that fails (an error ``ToolMessage`` or an exception) sends the question to
``escalate`` with the reason ``tool_error:<tool>``.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.runtime import Runtime
from opentelemetry.trace import Status, StatusCode

from setpoint.agents.decide import after_tool
from setpoint.agents.resources import Resources
from setpoint.tools.registry import get_tool
from setpoint.tracing import ATTR, node_span, set_attributes

if TYPE_CHECKING:
    from setpoint.graphs.context import Context

__all__ = ["make_call_tool"]

_ERROR_CHARS = 300


def make_call_tool(res: Resources) -> Any:
    def call_tool(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
        request = state["tool_call"]
        tool = get_tool(request["name"])
        call = {
            "name": tool.name,
            "args": dict(request["args"]),
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "tool_call",
        }
        with node_span(res.tracer, "call_tool") as node:
            with res.tracer.start_as_current_span(f"execute_tool {tool.name}") as span:
                set_attributes(
                    span,
                    {
                        ATTR.OPERATION: "execute_tool",
                        ATTR.TOOL_NAME: tool.name,
                        ATTR.TOOL_TYPE: "function",
                        ATTR.TOOL_CALL_ID: call["id"],
                        ATTR.TOOL_DESCRIPTION: tool.description,
                        ATTR.TOOL: request["name"],
                    },
                )
                if res.settings.trace_content:
                    # The arguments are taken from the question: text, so opt-in like any text.
                    span.set_attribute(ATTR.TOOL_CALL_ARGUMENTS, json.dumps(call["args"]))
                try:
                    message = tool.invoke(call)
                except Exception as exc:  # a plug-in's bug ends in an escalation, not a crash
                    span.record_exception(exc)
                    message = ToolMessage(
                        f"{type(exc).__name__}: {exc}",
                        tool_call_id=call["id"],
                        name=tool.name,
                        status="error",
                    )
                if not isinstance(message, ToolMessage):
                    message = ToolMessage(str(message), tool_call_id=call["id"], name=tool.name)
                content = (
                    message.text if isinstance(message.content, list) else str(message.content)
                )
                failed = message.status == "error" or not content.strip()
                if failed:
                    span.set_status(Status(StatusCode.ERROR, content[:_ERROR_CHARS]))
                    span.set_attribute(ATTR.ERROR_TYPE, "tool_error")
                elif res.settings.trace_content:
                    span.set_attribute(ATTR.TOOL_CALL_RESULT, content)
            messages = [
                AIMessage(
                    "", tool_calls=[{"name": call["name"], "args": call["args"], "id": call["id"]}]
                ),
                message,
            ]
            decision = after_tool(tool.name, failed)
            set_attributes(node, {ATTR.ROUTE: decision.route, ATTR.REASON: decision.reason})
            if failed:
                verdict = {
                    "check": tool.name,
                    "allowed": False,
                    "reason": decision.reason,
                    "matched": content[:_ERROR_CHARS],
                    "target": "tool",
                }
                return {
                    **decision.update(),
                    "verdicts": [*(state.get("verdicts") or []), verdict],
                    "messages": messages,
                }
            node.set_attribute(ATTR.TOOL, request["name"])
            return {**decision.update(), "answer": content, "messages": messages}

    return call_tool
