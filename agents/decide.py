"""Every routing decision of the graph, as pure functions: signals, thresholds and check results in, a ``Decision`` out.

Nodes measure (probe signals, per-token entropy, policy verdicts, tool and search
outcomes), call one function here, and store its ``Decision`` in the state
(``Decision.update()``); the edges in ``setpoint.graphs.edges`` only read ``next_node``.
Reading this file tells when setpoint answers from the weights, retrieves, calls a tool or
escalates, and with which reason.

Two words, two meanings:

- ``next_node``: the node the graph runs next (``Hop``).
- ``route``: where the answer comes from, what callers get back (``Route``): ``answer``
  (the weights), ``retrieve`` (read from passages), ``tool`` (a plug-in tool) or
  ``escalate`` (abstained, or handed to a reviewer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args

from setpoint.adapters.domain.hops import restates_question
from setpoint.adapters.lora.reader import is_no_answer
from setpoint.errors import SetpointError
from setpoint.graphs.context import DEFAULT_READER_SETPOINT

if TYPE_CHECKING:
    from setpoint.graphs.context import Context

__all__ = [
    "ROUTES",
    "CheckHop",
    "Decision",
    "GenerateHop",
    "GuardHop",
    "Hop",
    "ProbeHop",
    "RetrieveHop",
    "Route",
    "Status",
    "ToolHop",
    "after_check",
    "after_generation",
    "after_guard",
    "after_probe",
    "after_retrieval",
    "after_tool",
    "choose_route",
    "final_route",
    "on_retrieval_error",
    "output_problem",
    "read_again",
    "reader_setpoint",
    "retrievals_spent",
]

Route = Literal["answer", "retrieve", "tool", "escalate"]
ROUTES: tuple[Route, ...] = get_args(Route)
#: What a caller is told: an answer, a best guess the signals doubt (shown with its
#: citations), or no answer (policy, no support, a failed check).
Status = Literal["answered", "unsure", "abstained"]

GuardHop = Literal["probe", "call_tool", "escalate"]
ProbeHop = Literal["generate", "retrieve", "escalate"]
RetrieveHop = Literal["generate"]
ToolHop = Literal["check_output", "escalate"]
GenerateHop = Literal["retrieve", "check_output"]
CheckHop = Literal["finalize", "escalate"]
Hop = Literal["probe", "call_tool", "generate", "retrieve", "check_output", "escalate", "finalize"]

H = TypeVar("H", bound=str)


@dataclass(frozen=True)
class Decision(Generic[H]):
    """Where the graph goes next, and what that means for the answer.

    Attributes:
        next_node: the node to run next.
        route: the answer's route from here on; None leaves the run's route as it is.
        reason: why, for the user and the trace; None leaves the run's reason as it is.
        status: the answer's status once given (``answered`` or ``unsure``); None leaves
            it as it is (escalation sets ``abstained``).

    Example:
        >>> Decision("escalate", "escalate", "refused_topic:weapons").update()["next_node"]
        'escalate'
    """

    next_node: H
    route: Route | None = None
    reason: str | None = None
    status: Status | None = None

    def update(self) -> dict[str, Any]:
        """The state update that records this decision (unchanged fields left out)."""
        out: dict[str, Any] = {"next_node": self.next_node}
        if self.route is not None:
            out["route"] = self.route
        if self.reason is not None:
            out["reason"] = self.reason
        if self.status is not None:
            out["status"] = self.status
        return out


def after_guard(allowed: bool, refusal: str, tool: str | None) -> Decision[GuardHop]:
    """After the input policy: refused questions escalate, a plug-in tool takes the ones it
    declared it handles, every other question goes to the probe.

    Example:
        >>> after_guard(True, "", None).next_node
        'probe'
        >>> after_guard(False, "refused_topic:weapons", None).reason
        'refused_topic:weapons'
    """
    if not allowed:
        return Decision("escalate", "escalate", refusal)
    if tool is not None:
        return Decision("call_tool", "tool")
    return Decision("probe")


def choose_route(
    signal: float, ctx: Context, *, retrievals_used: int = 0
) -> Literal["answer", "retrieve", "escalate"]:
    """Route a question from its probe signal.

    Returns ``"escalate"`` above ``escalate_above`` (or for a NaN signal), or when retrieval
    is needed but the budget is spent; ``"retrieve"`` above ``probe_setpoint``; otherwise
    ``"answer"``.

    Example:
        >>> from setpoint.graphs.context import Context
        >>> choose_route(0.3, Context(probe_setpoint=1.0))
        'answer'
        >>> choose_route(2.5, Context(probe_setpoint=1.0))
        'retrieve'
        >>> choose_route(2.5, Context(probe_setpoint=1.0, max_retrievals=0))
        'escalate'
    """
    if math.isnan(signal):
        return "escalate"
    if signal > ctx.escalate_above:
        return "escalate"
    if signal > ctx.probe_setpoint:
        return "retrieve" if retrievals_used < ctx.max_retrievals else "escalate"
    return "answer"


_PROBE_HOP: dict[str, ProbeHop] = {
    "answer": "generate",
    "retrieve": "retrieve",
    "escalate": "escalate",
}


def after_probe(
    signal: float,
    ctx: Context,
    *,
    retrievals_used: int = 0,
    calibrated: bool = False,
    stale: str | None = None,
    multi_fact: str | None = None,
) -> Decision[ProbeHop]:
    """Before generation: answer from the weights, retrieve first, or escalate.

    ``calibrated``: the signal is a calibrated probe's P(wrong), not the first-token entropy.
    ``stale``: why the chosen adapter's knowledge of this question is superseded (None: it
    is not); the index then answers instead of the weights.
    ``multi_fact``: why the question needs facts the weights rarely hold together (a
    nested question's first read, the two things a comparison names; None: it does not);
    it is retrieved for, as Adaptive-RAG routes multi-step questions, unless both
    setpoints are inf (closed book asked for).

    Example:
        >>> from setpoint.graphs.context import Context
        >>> after_probe(2.5, Context(probe_setpoint=1.0)).reason
        'probe entropy 2.50 > probe setpoint 1'
        >>> after_probe(0.2, Context(), stale="passage p1 changed").route
        'retrieve'
    """
    route = choose_route(signal, ctx, retrievals_used=retrievals_used)
    what = "probe P(wrong)" if calibrated else "probe entropy"
    if route == "answer":
        reason = f"{what} {signal:.2f} <= probe setpoint {ctx.probe_setpoint:g}"
    elif route == "retrieve":
        reason = f"{what} {signal:.2f} > probe setpoint {ctx.probe_setpoint:g}"
    elif signal > ctx.escalate_above:
        reason = f"{what} {signal:.2f} > escalate_above {ctx.escalate_above:g}"
    else:
        reason = "retrieval needed but the retrieval budget is 0"
    if stale is not None and route == "answer":
        # Never answer from superseded weights: the index has the current fact.
        reason = stale
        route = "retrieve" if ctx.max_retrievals > 0 else "escalate"
    elif (
        multi_fact is not None
        and route == "answer"
        and ctx.max_retrievals > retrievals_used
        and not (math.isinf(ctx.setpoint) and math.isinf(ctx.probe_setpoint))
    ):
        reason, route = multi_fact, "retrieve"
    if route == "escalate":
        reason = f"uncertain:{reason}"
    return Decision(_PROBE_HOP[route], route, reason)


def after_retrieval() -> Decision[RetrieveHop]:
    """Passages in hand: the reader answers from them."""
    return Decision("generate", "retrieve")


def on_retrieval_error(
    error: str, *, mid_answer: bool, transient: bool, attempts_left: bool, hop: bool = False
) -> Decision[RetrieveHop] | None:
    """The search failed: None lets the error propagate (the retry policy may run the node
    again); a ``Decision`` finishes the answer without these passages, flagged.

    Only a retrieval the thermostat asked for mid-answer (or the echo check) falls back to
    the weights, and a second hop (``hop``: passages already in hand) to the first hop's
    passages, once a transient error has used up its retries: on the retrieve route there
    is no answer to finish.

    Example:
        >>> on_retrieval_error("down", mid_answer=False, transient=False, attempts_left=False)
        >>> on_retrieval_error("down", mid_answer=True, transient=False, attempts_left=True).route
        'answer'
        >>> on_retrieval_error("down", mid_answer=False, transient=False, attempts_left=False, hop=True).route
        'retrieve'
    """
    if not (mid_answer or hop) or (transient and attempts_left):
        return None
    if hop:
        return Decision(
            "generate",
            "retrieve",
            f"second hop unavailable ({error}); read the first hop's passages",
        )
    return Decision(
        "generate", "answer", f"retrieval unavailable ({error}); answered from the weights"
    )


def retrievals_spent(ctx: Context, calls: int, unavailable: bool) -> int:
    """The retrieval budget a decoding pass sees as used: all of it once the store failed.

    A search that failed after its retries gives no reason to think the next one, moments
    later, will not: the run finishes from the weights instead of paying the retries again.

    Example:
        >>> from setpoint.graphs.context import Context
        >>> retrievals_spent(Context(max_retrievals=2), 1, False), retrievals_spent(Context(max_retrievals=2), 1, True)
        (1, 2)
    """
    return max(calls, ctx.max_retrievals) if unavailable else calls


def after_tool(tool: str, failed: bool) -> Decision[ToolHop]:
    """A tool's answer gets the same output checks as the model's; a failed call escalates."""
    if failed:
        return Decision("escalate", "escalate", f"tool_error:{tool}")
    return Decision("check_output", "tool", f"answered by tool {tool}")


def reader_setpoint(ctx: Context, signal: str, probe_setpoint: float | None = None) -> float:
    """The reader setpoint a run compares ``signal``'s uncertainty with.

    ``Context.reader_setpoint`` when set; left at None, the reader probe's own dev-chosen
    setpoint (``probe_setpoint``, ``ReaderProbe.default_setpoint``) or else
    ``DEFAULT_READER_SETPOINT`` for a P(wrong) (the probe's, or a date comparison's fixed
    ``compare.COMPARISON_P_WRONG``), and inf for
    the surprisal or sampled scales, which have no chosen default.

    Example:
        >>> from setpoint.graphs.context import DEFAULT_READER_SETPOINT, Context
        >>> reader_setpoint(Context(), "probe") == DEFAULT_READER_SETPOINT
        True
        >>> reader_setpoint(Context(), "probe", 0.7), reader_setpoint(Context(reader_setpoint=0.5), "probe", 0.7)
        (0.7, 0.5)
        >>> reader_setpoint(Context(), "surprisal"), reader_setpoint(Context(reader_setpoint=2.0), "surprisal")
        (inf, 2.0)
    """
    if ctx.reader_setpoint is not None:
        return ctx.reader_setpoint
    if signal not in ("probe", "comparison"):
        return math.inf
    return DEFAULT_READER_SETPOINT if probe_setpoint is None else probe_setpoint


def read_again(ctx: Context, *, answer: str, question: str, options: tuple[str, ...]) -> bool:
    """Whether a finished read answer should be read once more (``decoding.reread``).

    Yes when it only repeats words of the question (``hops.restates_question``: "Calpurnia"
    to "What is Calpurnia's son's name?"), the reader quoting the subject, not the answer;
    never for a question that names its answers ("X or Y?", ``options``), nor with
    ``Context.reread_echo`` off. (Only grounded reads can be barred from beginning alike.)

    Example:
        >>> from setpoint.graphs.context import Context
        >>> read_again(Context(), answer="Steve McGarrett", question="Who played Steve McGarrett?",
        ...            options=())
        True
    """
    return (
        ctx.reread_echo
        and not options
        and restates_question(answer, question)
        and not is_no_answer(answer)
    )


def after_generation(
    ctx: Context,
    *,
    fired_at: int | None,
    ema: float | None,
    read_passages: bool,
    reader_uncertainty: float,
    mean_entropy: float,
    tokens: int,
    reader_signal: str = "probe",
    probe_setpoint: float | None = None,
    echo: float = 0.0,
    retrievals_used: int = 0,
    bridge: str | None = None,
    answered: bool = True,
    no_answer: bool = False,
    decomposed: bool = False,
    lookup: bool = False,
    compared: str | None = None,
    reread: str | None = None,
) -> Decision[GenerateHop]:
    """After a decoding pass: retrieve (again), or on to the checks as answered or unsure.

    - The thermostat fired: retrieve with the partial answer.
    - Closed book, and the answer restates the question (``echo``, the share of its content
      words the question has, ``hops.echo_overlap``, >= ``ctx.echo_overlap``): retrieve
      while the budget lasts; after it, the echo is given as ``unsure``.
    - Read from passages, and the reader is not sure (``reader_uncertainty``, NaN when not
      measured, above ``reader_setpoint(ctx, reader_signal, probe_setpoint)``, or no
      answer): a second hop with the ``bridge`` query while the budget lasts and the
      bridge adds something; else the answer is given as
      ``unsure`` (selective answering; an empty one still fails the checks).
    - Read from passages, and the reader said they hold no answer (``no_answer``,
      ``reader.NO_ANSWER``; pass ``answered=False`` too): a second hop as above, else
      ``unsure`` with no answer claimed.
    - Read the first half of a nested question (``decomposed``; ``bridge`` is then the
      second half's question, with the first read's answer in it): a second hop while the
      budget lasts, however sure the reader was: the question is not answered yet.
    - Read again because the first read only repeated the question (``reread``, that first
      answer): doubtful like an unsure read, under the same inf knobs (a second hop while
      the budget lasts, else ``unsure``): re-read answers were right 2 of 8 times on a
      NQ-Open dev part, 3 of 17 in the generalisation run.
    - Read a comparison of two options, and no passage is about one of them (``lookup``;
      ``bridge`` is then that option, ``compare.compare_options``): a second hop for it
      while the budget lasts, however sure the reader was. An ordered comparison answers
      with ``compared`` (``Comparison.reason``) as the reason.

    Example:
        >>> from setpoint.graphs.context import Context
        >>> d = after_generation(Context(), fired_at=None, ema=0.4, read_passages=False,
        ...                      reader_uncertainty=math.nan, mean_entropy=0.4, tokens=3)
        >>> d.next_node, d.route, d.reason
        ('check_output', 'answer', 'entropy EMA stayed under setpoint 1.6 (mean 0.40 over 3 tokens)')
        >>> after_generation(Context(), fired_at=None, ema=0.1, read_passages=False, echo=0.82,
        ...                  reader_uncertainty=math.nan, mean_entropy=0.1, tokens=9).reason
        'echo of the question (overlap 0.82)'
    """
    budget_left = retrievals_used < ctx.max_retrievals
    if fired_at is not None:
        return Decision(
            "retrieve",
            "retrieve",
            f"entropy EMA {ema or 0.0:.2f} above setpoint {ctx.setpoint:g} "
            f"for {ctx.consecutive_steps} steps at token {fired_at}",
        )
    if not read_passages:
        if echo >= ctx.echo_overlap:
            why = f"echo of the question (overlap {echo:.2f})"
            if budget_left:
                return Decision("retrieve", "retrieve", why)
            return Decision("check_output", "answer", f"unsure:{why}; budget spent", "unsure")
        return Decision(
            "check_output",
            "answer",
            f"entropy EMA stayed under setpoint {ctx.setpoint:g} "
            f"(mean {mean_entropy:.2f} over {tokens} tokens)",
            "answered",
        )
    if decomposed and budget_left and bridge is not None:
        return Decision("retrieve", "retrieve", f"second hop: nested question; query {bridge!r}")
    if lookup and budget_left and bridge is not None:
        return Decision("retrieve", "retrieve", f"second hop: no passage on {bridge!r}")
    setpoint = reader_setpoint(ctx, reader_signal, probe_setpoint)
    doubt = reader_uncertainty > setpoint
    hop_at = setpoint if ctx.hop_setpoint is None else ctx.hop_setpoint
    hop_doubt = reader_uncertainty > hop_at or (math.isnan(reader_uncertainty) and hop_at < 0)
    # A re-read is doubtful whatever the signal; the knobs that stop the reader's doubt stop it.
    echoed = f"the first read only repeated the question ({reread!r})" if reread else None
    hop_knob = ctx.reader_setpoint if ctx.hop_setpoint is None else ctx.hop_setpoint
    hop_echo = echoed is not None and hop_knob != math.inf
    if (hop_doubt or not answered or hop_echo) and budget_left and bridge is not None:
        knob = "reader setpoint" if ctx.hop_setpoint is None else "hop setpoint"
        what = (
            f"reader uncertainty {reader_uncertainty:.2f} > {knob} {hop_at:g}"
            if hop_doubt
            else echoed or "no answer in the passages"
        )
        return Decision("retrieve", "retrieve", f"second hop: {what}; query {bridge!r}")
    if no_answer:
        return Decision(
            "check_output",
            "retrieve",
            "unsure:the reader found no answer in the passages",
            "unsure",
        )
    if doubt:
        return Decision(
            "check_output",
            "retrieve",
            f"unsure:reader uncertainty {reader_uncertainty:.2f} > reader setpoint {setpoint:g}",
            "unsure",
        )
    if echoed and ctx.reader_setpoint != math.inf:
        return Decision("check_output", "retrieve", f"unsure:{echoed}", "unsure")
    return Decision("check_output", "retrieve", compared, status="answered")


def output_problem(
    answer: str,
    *,
    answer_entropy: float,
    abstain_above: float,
    used_passages: bool,
    budget_spent: bool,
    uncertain_after_budget: bool = False,
    escalate_after_budget: bool = False,
    unsure: bool = False,
) -> str | None:
    """The uncertainty reason code that stops an answer, or None when it may be given.

    Example:
        >>> output_problem("", answer_entropy=0.1, abstain_above=9, used_passages=False, budget_spent=False)
        'empty_answer'
        >>> output_problem("Paris", answer_entropy=0.1, abstain_above=9, used_passages=False, budget_spent=False)
        >>> output_problem("Paris", answer_entropy=0.1, abstain_above=9, used_passages=True, budget_spent=True,
        ...                uncertain_after_budget=True, escalate_after_budget=True)
        'uncertain_after_budget'
    """
    if not answer.strip():
        # "Unsure" with nothing claimed (the reader found no answer) is a result, not a failure.
        return None if unsure else "empty_answer"
    if (used_passages or budget_spent) and answer_entropy > abstain_above:
        return "uncertain_after_retrieval"
    if uncertain_after_budget and escalate_after_budget:
        return "uncertain_after_budget"
    return None


def after_check(failed: list[str], route: str) -> Decision[CheckHop]:
    """After the output checks: the first failed check's reason escalates; a passing answer
    goes to ``finalize`` unless generation already marked it for escalation.

    Example:
        >>> after_check(["pii"], "retrieve").reason
        'pii'
        >>> after_check([], "answer").next_node
        'finalize'
    """
    if failed:
        return Decision("escalate", "escalate", failed[0])
    if route == "escalate":
        return Decision("escalate")
    return Decision("finalize")


def final_route(route: object) -> Route:
    """The answer's route as callers get it; a run without one is a wiring bug, not an answer.

    Raises:
        SetpointError: ``route`` is not one of ``ROUTES``.

    Example:
        >>> final_route("tool")
        'tool'
    """
    for known in ROUTES:
        if route == known:
            return known
    raise SetpointError(
        f"the run reached finalize with route {route!r}, not one of {', '.join(ROUTES)}; "
        "every node that routes must store a decide.Decision"
    )
