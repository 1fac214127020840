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
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.runtime import Runtime
from opentelemetry.trace import Status, StatusCode

from setpoint.agents.resources import Resources, RunContext
from setpoint.tools.registry import get_tool
from setpoint.tracing import ATTR, node_span, set_attributes

__all__ = ["make_call_tool"]

_ERROR_CHARS = 300


def make_call_tool(res: Resources) -> Any:
    def call_tool(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
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
            if failed:
                reason = f"tool_error:{tool.name}"
                set_attributes(node, {ATTR.ROUTE: "escalate", ATTR.REASON: reason})
                verdict = {
                    "check": tool.name,
                    "allowed": False,
                    "reason": reason,
                    "matched": content[:_ERROR_CHARS],
                    "target": "tool",
                }
                return {
                    "route": "escalate",
                    "reason": reason,
                    "verdicts": [*(state.get("verdicts") or []), verdict],
                    "messages": messages,
                }
            set_attributes(node, {ATTR.ROUTE: "tool", ATTR.TOOL: request["name"]})
            return {
                "route": "tool",
                "reason": f"answered by tool {tool.name}",
                "answer": content,
                "messages": messages,
            }

    return call_tool
