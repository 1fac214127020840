"""What a run gives back: the ``AskResult`` of ``Setpoint.ask`` and the typed events of ``Setpoint.stream``.

The events are read from LangGraph's ``updates`` stream (a node finished) and ``custom`` stream
(what ``generate`` writes through ``get_stream_writer``: each token with its entropy, and the
thermostat firing). No ``messages`` stream: decoding is not a LangChain chat-model call, so
that stream would carry no tokens, only copies of messages already in the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "AskResult",
    "NodeEvent",
    "ResultEvent",
    "StreamEvent",
    "ThermostatEvent",
    "TokenEvent",
    "events_from_chunk",
]


class _Record:
    """``to_dict`` for the dataclasses below: their fields, nested dataclasses as dicts."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(cast("DataclassInstance", self))


@dataclass(frozen=True)
class AskResult(_Record):
    """One answered (or refused) question, as the CLI prints it.

    ``status``: ``answered``; ``unsure`` (the answer is a best guess the reader's
    uncertainty doubts, still with its citations: "I'm not certain, but the passage says
    ..."); ``abstained`` (no answer: policy, no support, a failed check; ``answer`` then
    says why); ``pending_review``.
    """

    question: str
    answer: str
    status: str
    route: str
    reason: str
    probe_entropy: float | None
    answer_entropy: float | None
    setpoint: float
    retrieval_calls: int
    retrieval_unavailable: bool
    adapter: str | None
    citations: list[dict[str, Any]] = field(default_factory=list)
    dropped_passages: list[dict[str, Any]] = field(default_factory=list)
    trace_file: str | None = None
    trace_id: str | None = None
    seconds: float = 0.0
    #: The run's thread in the checkpointer (what ``setpoint review`` resumes).
    thread_id: str | None = None
    #: For ``status == "pending_review"``: the interrupt payload a reviewer sees; after a
    #: review: the reviewer's decision.
    review: dict[str, Any] | None = None

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], *, question: str, setpoint: float, **run: Any
    ) -> AskResult:
        """The result a graph run's final ``state`` stands for, in process or on a server.

        ``question`` is the asked one (the state's wins when it has one); ``run`` carries
        what only the caller knows: ``seconds``, ``trace_file``, ``trace_id``, ``thread_id``.

        Example:
            >>> r = AskResult.from_state({"answer": "Paris", "decision": {"answer_entropy": 0.4}},
            ...                          question="Capital of France?", setpoint=1.6, seconds=1.0)
            >>> r.answer, r.status, r.answer_entropy, r.retrieval_calls
            ('Paris', 'answered', 0.4, 0)
        """
        decision = state.get("decision") or {}
        return cls(
            question=str(state.get("question") or question),
            answer=state.get("answer", ""),
            status=state.get("status", "answered"),
            route=state.get("route", ""),
            reason=state.get("reason", ""),
            probe_entropy=decision.get("probe_entropy"),
            answer_entropy=decision.get("answer_entropy"),
            setpoint=setpoint,
            retrieval_calls=int(state.get("retrieval_calls", 0)),
            retrieval_unavailable=bool(state.get("retrieval_unavailable")),
            adapter=decision.get("adapter"),
            citations=list(state.get("citations") or []),
            dropped_passages=list(state.get("dropped_passages") or []),
            review=state.get("review") or None,
            **run,
        )


@dataclass(frozen=True)
class NodeEvent(_Record):
    """A graph node finished, with the route and reason it set (None where it set none).

    Example:
        >>> NodeEvent("probe", route="answer").to_dict()
        {'node': 'probe', 'route': 'answer', 'reason': None}
    """

    kind: ClassVar[Literal["node"]] = "node"
    node: str
    route: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class TokenEvent(_Record):
    """One decoded token and its signals; ``ema`` is the thermostat's smoothed value.

    ``phase`` is ``closed_book`` (no passages yet), ``reader``, or ``reread`` (the reader
    again, after an answer that only repeated the question's words; it replaces that
    answer); ``step`` starts again at 0 on each pass, and ``fired`` says the thermostat
    fired at this token.
    """

    kind: ClassVar[Literal["token"]] = "token"
    phase: str
    step: int
    token: str
    entropy: float
    ema: float
    fired: bool = False
    margin: float | None = None
    top_prob: float | None = None
    lens: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ThermostatEvent(_Record):
    """The thermostat fired at ``step``: its ``ema`` rose above ``setpoint``; decoding stops to retrieve."""

    kind: ClassVar[Literal["thermostat"]] = "thermostat"
    step: int
    ema: float
    setpoint: float


@dataclass(frozen=True)
class ResultEvent(_Record):
    """The last event of a stream: the same ``AskResult`` that ``Setpoint.ask`` returns."""

    kind: ClassVar[Literal["result"]] = "result"
    result: AskResult


StreamEvent = NodeEvent | TokenEvent | ThermostatEvent | ResultEvent

_TOKEN_FIELDS = ("phase", "step", "token", "entropy", "ema", "fired", "margin", "top_prob", "lens")


def events_from_chunk(mode: str, chunk: Any) -> list[StreamEvent]:
    """The events in one ``(mode, chunk)`` pair of ``graph.stream(stream_mode=[...])``. Pure.

    ``values`` chunks and the ``__interrupt__`` update give none: the final result carries them.

    Example:
        >>> events_from_chunk("updates", {"probe": {"route": "answer", "reason": "sure"}})
        [NodeEvent(node='probe', route='answer', reason='sure')]
        >>> events_from_chunk("custom", {"type": "thermostat", "step": 4, "ema": 2.1, "setpoint": 1.6})
        [ThermostatEvent(step=4, ema=2.1, setpoint=1.6)]
    """
    if mode == "updates":
        return [
            NodeEvent(node, (update or {}).get("route"), (update or {}).get("reason"))
            for node, update in chunk.items()
            if node != "__interrupt__"
        ]
    if mode == "custom" and isinstance(chunk, dict):
        if chunk.get("type") == "token":
            return [TokenEvent(**{name: chunk[name] for name in _TOKEN_FIELDS if name in chunk})]
        if chunk.get("type") == "thermostat":
            return [ThermostatEvent(chunk["step"], chunk["ema"], chunk["setpoint"])]
    return []
