"""Node ``generate``: decode the answer token by token under the thermostat.

Closed-book (no passages yet) or with the retrieved passages. When the smoothed entropy
stays above the setpoint for N steps and the retrieval budget allows, decoding stops and
``decide.after_generation`` sends the graph back to retrieval with the question plus the
partial answer as the query; a reader answer is also scored for its uncertainty, which the
same decision compares with the reader setpoint.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime

from setpoint.adapters.domain.choices import closed_answers
from setpoint.adapters.domain.compare import COMPARISON_P_WRONG, compare_options
from setpoint.adapters.domain.decompose import decompose
from setpoint.adapters.domain.hops import bridge_query, echo_overlap
from setpoint.adapters.lora.reader import is_no_answer
from setpoint.agents.decide import (
    after_generation,
    read_again,
    reader_setpoint,
    retrievals_spent,
)
from setpoint.agents.decoding import Pass, decode, reread
from setpoint.agents.probe import select_adapter
from setpoint.agents.resources import Resources
from setpoint.agents.thermostat import Thermostat
from setpoint.tracing import ATTR, node_span, set_attributes

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from setpoint.adapters.domain.compare import Comparison
    from setpoint.adapters.domain.reader_probe import ReaderProbe
    from setpoint.adapters.model.generator import Generator, Passage
    from setpoint.adapters.model.quoting import SpanConstraint
    from setpoint.graphs.context import Context

__all__ = ["make_generate"]


def _choose_adapter(
    res: Resources, ctx: Context, state: dict[str, Any], passages: list[Passage]
) -> str | None:
    """The pass's LoRA adapter, switched to.

    The retrieve route reads with the reader adapter; the answer route keeps the knowledge
    adapter (with a registry, the one the probe picked). PEFT switches them on the one
    loaded base model.
    """
    if passages:
        from setpoint.adapters.lora.reader import resolve_reader

        return select_adapter(res, resolve_reader(res.generator().model.config, ctx.reader_adapter))
    registry = ctx.adapter is None and bool(ctx.adapters or res.settings.adapters)
    return select_adapter(res, state.get("adapter") if registry else ctx.adapter)


def _constraint(
    generator: Generator,
    ctx: Context,
    question: str,
    passages: list[Passage],
    options: tuple[str, ...],
) -> Callable[..., SpanConstraint] | None:
    """What a pass may say, as a maker of fresh constraints (one per decoding); None: free.

    With grounded decoding: a question that names its answers (``options``,
    ``choices.closed_answers``) gets one of them, entire, on either route; the reader may
    otherwise quote its passages. The reader may also say NO_ANSWER (what it learned for
    passages that do not answer the question; mapped to "unsure", never cited), and yes or
    no to a yes/no question with an "or" in it (``reader.unquoted_answers``). The greedy
    pass and the reader's samples are held to the same maker.
    """
    from setpoint.adapters.lora.reader import NO_ANSWER, unquoted_answers
    from setpoint.adapters.model.quoting import SpanConstraint

    if not ctx.grounded or not (passages or options):
        return None
    if options:
        said: tuple[str, ...] = (NO_ANSWER,) if passages else ()
        return lambda: SpanConstraint.for_generator(generator, [], extra=said, whole=options)
    extra = unquoted_answers(question)
    # A re-read passes the answer it must not begin with again (``decoding.reread``).
    return lambda *barred: SpanConstraint.for_generator(
        generator, passages, extra=extra, barred_starts=barred
    )


def _reader_uncertainty(
    res: Resources,
    ctx: Context,
    generator: Generator,
    prompt: list[int],
    question: str,
    passages: list[Passage],
    out: Pass,
    probe: ReaderProbe | None,
    constrain: Callable[[], SpanConstraint] | None,
) -> tuple[float, dict[str, Any]]:
    """The reader answer's uncertainty (probe, sampled disagreement or surprisal) and its span attributes."""
    from setpoint.adapters.model.quoting import (
        answer_disagreement,
        locate_quote,
        reader_uncertainty,
        sample_answers,
        sampled_uncertainty,
    )

    text, disagreement = out.text, None
    if probe is not None:
        uncertainty = probe.score(out.tokens, question=question, passages=passages, answer=text)
        signal = "probe"
    elif ctx.reader_samples > 0:
        drawn = sample_answers(
            generator,
            prompt,
            ctx.reader_samples,
            constraint=constrain,
            max_new_tokens=ctx.max_new_tokens,
        )
        disagreement = answer_disagreement(text, drawn)
        uncertainty = sampled_uncertainty(disagreement, reader_uncertainty(out.tokens))
        signal = "sampled"
    else:
        uncertainty, signal = reader_uncertainty(out.tokens), "surprisal"
    quote = locate_quote(text, passages)
    return uncertainty, {
        "setpoint.reader_signal": signal,
        "setpoint.reader_samples": ctx.reader_samples,
        "setpoint.reader_disagreement": disagreement,
        "setpoint.reader_uncertainty": uncertainty,
        "setpoint.reader_setpoint": reader_setpoint(
            ctx, signal, probe.default_setpoint if probe is not None else None
        ),
        "setpoint.quote_passage_id": quote.passage_id if quote else None,
    }


def _chat_attributes(ctx: Context, out: Pass, first: int, thermostat: Thermostat) -> dict[str, Any]:
    """The chat span's numbers after decoding (no text: what `setpoint trace` draws)."""
    return {
        ATTR.OUTPUT_TOKENS: len(out.pieces),
        ATTR.FINISH_REASONS: [out.finish],
        ATTR.THERMOSTAT_FIRED_AT: out.fired_at,
        ATTR.TOKEN_ENTROPY: [r["entropy"] for r in out.trace[first:]],
        ATTR.TOKEN_EMA: [r["ema"] for r in out.trace[first:]],
        ATTR.SETPOINT: thermostat.thresholds.setpoint,
        ATTR.HYSTERESIS: thermostat.thresholds.hysteresis,
        ATTR.TRIGGER: ctx.trigger,
    }


def _whole_text(res: Resources) -> Callable[[Mapping[str, Any]], str | None]:
    """A hit's whole stored passage (a hit may be a later chunk, without the lead), or None."""
    from setpoint.errors import RetrievalError

    def whole(passage: Mapping[str, Any]) -> str | None:
        try:
            stored = res.store().get(str(passage["id"]), str(passage.get("source") or ""))
        except RetrievalError:
            return None  # the hit's own text still counts
        return str(stored.text) if stored is not None else None

    return whole


def cited_with(state: dict[str, Any], ids: tuple[str, ...]) -> list[dict[str, Any]]:
    """The prompt's passages, then those of ``ids`` found by this question's hops but not in it."""
    passages = list(state.get("passages") or [])
    have = {str(p["id"]) for p in passages}
    found = {str(p["id"]): p for p in state.get("found_passages") or []}
    return passages + [dict(found[i]) for i in ids if i not in have and i in found]


def make_generate(res: Resources) -> Any:
    def generate(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
        from setpoint.adapters.model.generator import Passage

        ctx = runtime.context
        question = state["question"]
        passages = [
            Passage(p["id"], p.get("title", ""), p["text"]) for p in state.get("passages") or []
        ]
        retrievals = retrievals_spent(
            ctx, int(state.get("retrieval_calls", 0)), bool(state.get("retrieval_unavailable"))
        )
        earlier = list(state.get("signal_trace") or [])
        out = Pass("reader" if passages else "closed_book", trace=list(earlier))
        with node_span(res.tracer, "generate", **{"setpoint.phase": out.phase}) as node:
            generator = res.generator()
            options = closed_answers(str(question))
            # A nested question ("Where was the director of film X born?") is read in two
            # hops: first who the director is, then the question about them (decompose.py).
            plan = (
                decompose(str(question)) if passages and ctx.nested_hops and not options else None
            )
            split = (
                plan is not None
                and not state.get("hop_question")
                and retrievals < ctx.max_retrievals
            )
            asked = (
                (plan.first if split and plan else None) or state.get("hop_question") or question
            )
            adapter = _choose_adapter(res, ctx, state, passages)
            constrain = _constraint(generator, ctx, str(question), passages, options)
            constraint = constrain() if constrain is not None else None
            # Passages read without a reader adapter get the answer format spelled out.
            tuned = adapter is not None or not passages
            prompt = generator.prompt_ids(asked, passages, tuned_reader=tuned)
            # A reader pass never stops mid-answer to retrieve: whether the passages held the
            # answer is the reader's uncertainty's call, after the answer (a second hop).
            thermostat = Thermostat(
                ctx, retrievals_used=ctx.max_retrievals if passages else retrievals
            )
            samples = ctx.reader_samples if passages else 0
            # The reader adapter's own probe scores the answer (unless sampling is asked
            # for); it reads hidden states of the decoding passes, kept as they run.
            probe = (
                res.reader_probe(adapter)
                if passages and samples == 0 and ctx.reader_probe
                else None
            )
            with res.tracer.start_as_current_span(f"chat {generator.name}") as chat:
                set_attributes(
                    chat,
                    {
                        ATTR.OPERATION: "chat",
                        ATTR.PROVIDER: "transformers",
                        ATTR.REQUEST_MODEL: generator.name,
                        ATTR.REQUEST_MAX_TOKENS: ctx.max_new_tokens,
                        ATTR.REQUEST_TEMPERATURE: 0.0,
                        ATTR.INPUT_TOKENS: len(prompt),
                        ATTR.ADAPTER: adapter,
                        ATTR.PRECISION: str(generator.model.dtype).removeprefix("torch."),
                    },
                )
                decode(
                    generator,
                    prompt,
                    ctx,
                    thermostat,
                    out,
                    constraint=constraint,
                    keep_prompt=samples > 0,
                    probe=probe,
                )
                echoed = ""
                if (
                    constrain is not None
                    and passages
                    and out.fired_at is None
                    and read_again(ctx, answer=out.text, question=str(asked), options=options)
                ):
                    echoed, out = out.text, reread(generator, prompt, ctx, out, constrain, probe)
                set_attributes(chat, _chat_attributes(ctx, out, len(earlier), thermostat))
                if res.settings.trace_content:
                    set_attributes(
                        chat,
                        {
                            ATTR.INPUT_MESSAGES: generator.messages(
                                asked, passages, tuned_reader=tuned
                            ),
                            ATTR.OUTPUT_MESSAGES: [{"role": "assistant", "content": out.text}],
                        },
                    )
            uncertainty, signal, echo, bridge = math.nan, "probe", 0.0, None
            next_question: str | None = None
            lookup: str | None = None
            ordered: Comparison | None = None  # a comparison that answered
            # "The passages hold no answer": no answer text is claimed (and none is cited).
            no_answer = bool(passages) and is_no_answer(out.text)
            text = "" if no_answer else out.text
            if passages and out.fired_at is None:
                uncertainty, reader_attrs = _reader_uncertainty(
                    res, ctx, generator, prompt, asked, passages, out, probe, constrain
                )
                signal = str(reader_attrs["setpoint.reader_signal"])
                if split and plan and text:
                    # The first read named the bridge: the next hop asks about it.
                    next_question = plan.then(text)
                bridge = next_question or bridge_query(question, state.get("passages") or [], text)
                # A comparison reads every passage this question found, not only the prompt's.
                found = state.get("found_passages") or state.get("passages") or []
                compared = (
                    compare_options(str(question), options, found, whole_text=_whole_text(res))
                    if options and ctx.compare_dates
                    else None
                )
                if compared is not None and compared.answer is not None:
                    # Two dates read and ordered: the comparison answers, not the reader's pick.
                    ordered = compared
                    text, uncertainty, signal = compared.answer, COMPARISON_P_WRONG, "comparison"
                    reader_attrs.update(
                        {
                            "setpoint.reader_signal": signal,
                            "setpoint.reader_uncertainty": uncertainty,
                            "setpoint.reader_answer": out.text
                            if res.settings.trace_content
                            else None,
                        }
                    )
                elif compared is not None and compared.missing is not None:
                    bridge = lookup = compared.missing
                if compared is not None:
                    reader_attrs.update(compared.span_attributes())
                set_attributes(
                    node,
                    {
                        "setpoint.grounded": constraint is not None,
                        # The first read only repeated the question's words: read again.
                        "setpoint.reread": bool(echoed),
                        "setpoint.echoed_answer": echoed or None
                        if res.settings.trace_content
                        else None,
                        "setpoint.decomposed": next_question is not None,
                        **reader_attrs,
                        # The query is text: only with trace_content, like every text in spans.
                        "setpoint.bridge_query": bridge if res.settings.trace_content else None,
                    },
                )
            elif out.fired_at is None:
                # Naming one of the question's options answers it; it is not an echo.
                echo = 0.0 if out.text in options else echo_overlap(out.text, question)
                node.set_attribute("setpoint.echo_overlap", echo)
            decision = after_generation(
                ctx,
                fired_at=out.fired_at,
                ema=thermostat.ema,
                read_passages=bool(passages),
                reader_uncertainty=uncertainty,
                mean_entropy=out.mean_entropy,
                tokens=len(out.entropies),
                reader_signal=signal,
                probe_setpoint=probe.default_setpoint if probe is not None else None,
                echo=echo,
                retrievals_used=retrievals,
                bridge=bridge,
                answered=bool(text),
                no_answer=no_answer,
                decomposed=next_question is not None,
                lookup=lookup is not None,
                compared=ordered.reason if ordered is not None else None,
                reread=echoed or None,
            )
            update: dict[str, Any] = {
                "signal_trace": out.trace,
                "adapter": adapter,
                "answer_entropy": out.mean_entropy,
                **decision.update(),
            }
            if ordered is not None:
                # The answer cites what it was read from, in or beyond the prompt's passages.
                update["passages"] = cited_with(state, ordered.read)
            if out.fired_at is not None:
                update.update(partial_answer=out.text, query=f"{question} {out.text}".strip())
            elif decision.next_node == "retrieve" and passages:
                # Second hop: the bridge query; the first hop's answer stays the fallback.
                # After the first half of a nested question, the next read asks the rest;
                # its answer (the bridge) answers a different question: no fallback then.
                fallback = "" if next_question else text
                update.update(answer=fallback, query=bridge, hop_question=next_question)
            elif decision.next_node == "retrieve":
                # Echo: the question itself; the echo is what a failed search falls back to.
                update.update(partial_answer=out.text, query=question)
            else:
                update.update(answer=text, uncertain_after_budget=thermostat.fired_after_budget)
            set_attributes(
                node,
                {
                    ATTR.ROUTE: decision.route,
                    ATTR.REASON: decision.reason or state.get("reason"),
                    ATTR.ENTROPY: thermostat.ema
                    if thermostat.ema is not None
                    else out.mean_entropy,
                    ATTR.SETPOINT: ctx.setpoint,
                    ATTR.RETRIEVAL_CALLS: retrievals,
                    ATTR.ADAPTER: adapter,
                },
            )
            return update

    return generate
