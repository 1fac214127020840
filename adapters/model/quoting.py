"""Grounded answers: decoding constrained to spans of the retrieved passages, and where a quote sits in its passage.

``SpanConstraint`` is a logits processor for ``Generator.stream``: at every step it allows
only the tokens that keep the answer a contiguous, word-aligned substring of some passage
(whitespace normalised), and the stop token only where the quote ends on a word boundary.
So an answer decoded under it is always a quote that can be cited exactly.

It works on characters, not on the passages' own token sequences: an answer that starts a
quote is tokenised differently from the same words inside the passage ("Denver" versus
" Denver"), so a token trie over the passages would forbid the model's natural spelling.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from setpoint.adapters.model.generator import GeneratedToken, Generator, Passage

__all__ = [
    "Quote",
    "ReaderAnswer",
    "SpanConstraint",
    "TokenTable",
    "answer_question",
    "locate_quote",
]


class TokenTable:
    """Every vocabulary entry's decoded text, indexed by text, built once per tokenizer.

    Entries that decode to nothing (special tokens) or to a partial UTF-8 sequence (byte
    fallback pieces, shown as U+FFFD) are left out: they can never spell a quote.
    """

    _cache: dict[int, tuple[Any, TokenTable]] = {}  # noqa: RUF012 -- process-wide, keyed by tokenizer identity
    _building = threading.Lock()

    def __init__(self, tokenizer: Any) -> None:
        pieces = tokenizer.batch_decode(
            [[i] for i in range(len(tokenizer))],
            skip_special_tokens=True,
            clean_up_tokenization_spaces=False,
        )
        self.by_text: dict[str, list[int]] = {}
        for token_id, text in enumerate(pieces):
            if text and "\ufffd" not in text:
                self.by_text.setdefault(text, []).append(token_id)
        self.text_of = pieces
        self.longest = max((len(t) for t in self.by_text), default=1)

    @classmethod
    def of(cls, tokenizer: Any) -> TokenTable:
        cached = cls._cache.get(id(tokenizer))
        if cached is None or cached[0] is not tokenizer:
            # Built once: concurrent first readers (a server's first requests) wait for it
            # instead of each decoding the whole vocabulary under the GIL.
            with cls._building:
                cached = cls._cache.get(id(tokenizer))
                if cached is None or cached[0] is not tokenizer:
                    cached = (tokenizer, cls(tokenizer))
                    cls._cache[id(tokenizer)] = cached
        return cached[1]


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _begins(text: str, at: int, prefix: str) -> bool:
    """Whether the quote starting at ``at`` (a leading space skipped) begins with ``prefix``'s words.

    Example:
        >>> _begins("the son of Calpurnia", 3, "son"), _begins("a sonnet", 1, "son")
        (True, False)
    """
    if text[at : at + 1] == " ":
        at += 1
    end = at + len(prefix)
    return text.startswith(prefix, at) and (end == len(text) or not text[end].isalnum())


@dataclass(frozen=True)
class Quote:
    """Where an answer sits in a passage (character offsets into the passage's original text)."""

    passage_id: str
    start: int
    end: int
    text: str


def locate_quote(answer: str, passages: Sequence[Passage]) -> Quote | None:
    """The first place ``answer`` occurs in ``passages``, whitespace-insensitively; None when it does not.

    Example:
        >>> from setpoint.adapters.model.generator import Passage
        >>> locate_quote("Denver  Broncos", [Passage("p1", "SB", "The Denver\\nBroncos won.")])
        Quote(passage_id='p1', start=4, end=18, text='Denver\\nBroncos')
    """
    words = answer.split()
    if not words:
        return None
    pattern = re.compile(r"\s+".join(re.escape(w) for w in words))
    for p in passages:
        match = pattern.search(p.text)
        if match:
            return Quote(p.id, match.start(), match.end(), match.group(0))
    return None


class SpanConstraint:
    """Allow only tokens that keep the answer a quote of one of ``passages``.

    Call it like a logits processor: ``constraint(generated_ids, logits) -> masked logits``.
    It follows the decoded answer through the ids it is shown, so it needs no other state
    from the decoding loop. ``whole`` texts are allowed only entire, from their first
    character to their last (the options of an alternative question, not pieces of them).

    Example:
        >>> constraint = SpanConstraint.for_generator(gen, passages)  # doctest: +SKIP
        >>> tokens = list(gen.stream(ids, logits_processor=constraint))  # doctest: +SKIP
    """

    def __init__(
        self,
        texts: Sequence[str],
        table: TokenTable,
        stop_ids: Sequence[int],
        whole: Sequence[str] = (),
        barred_starts: Sequence[str] = (),
    ) -> None:
        self.texts = [_normalise(t) for t in (*texts, *whole)]
        self.table = table
        self.stop_ids = sorted(set(stop_ids))
        #: Indices of the texts that must be said entire.
        self._whole = frozenset(range(len(texts), len(self.texts)))
        # A quote starts at a word: a non-space character after a non-alphanumeric one, or
        # the space before such a word (a leading-space token such as " Denver").
        self._positions: set[tuple[int, int]] = {(i, 0) for i in self._whole}
        for i, text in enumerate(self.texts[: len(texts)]):
            for j, ch in enumerate(text):
                if not ch.isspace() and (j == 0 or not text[j - 1].isalnum()):
                    self._positions.add((i, j))
                    if j > 0 and text[j - 1] == " ":
                        self._positions.add((i, j - 1))
        barred = [b for b in (_normalise(t) for t in barred_starts) if b]
        if barred:
            # No quote may begin with a barred text (a word-aligned prefix), from any place.
            self._positions = {
                (i, j)
                for i, j in self._positions
                if not any(_begins(self.texts[i], j, b) for b in barred)
            }
        self._consumed = 0
        self._answer = ""

    @classmethod
    def for_generator(
        cls,
        generator: Generator,
        passages: Sequence[Passage],
        extra: Sequence[str] = (),
        whole: Sequence[str] = (),
        barred_starts: Sequence[str] = (),
    ) -> SpanConstraint:
        """Quotes of ``passages`` for ``generator``'s tokenizer; ``extra`` texts are allowed too.

        ``whole`` texts are allowed as well, each only in full. No answer may begin with
        one of ``barred_starts`` (whole words): a re-read that must not say it again.
        """
        return cls(
            [*(p.text for p in passages), *extra],
            TokenTable.of(generator.tokenizer),
            sorted(generator.stop_ids),
            whole=whole,
            barred_starts=barred_starts,
        )

    @property
    def answer(self) -> str:
        """The text decoded so far, as the constraint followed it."""
        return self._answer

    def _advance(self, generated: Sequence[int]) -> None:
        for token_id in generated[self._consumed :]:
            if token_id in self.stop_ids:
                continue
            piece = self.table.text_of[token_id]
            self._positions = {
                (i, j + len(piece))
                for i, j in self._positions
                if self.texts[i].startswith(piece, j)
            }
            self._answer += piece
        self._consumed = len(generated)

    def allowed(self, generated: Sequence[int] = ()) -> list[int]:
        """Token ids that may come next after ``generated``."""
        self._advance(generated)
        allowed: set[int] = set()
        can_stop = False
        by_text = self.table.by_text
        for i, j in self._positions:
            text = self.texts[i]
            ends = j == len(text) if i in self._whole else j == len(text) or not text[j].isalnum()
            if self._answer.strip() and ends:
                can_stop = True
            # Every vocabulary entry that spells the next characters of the passage.
            for end in range(j + 1, min(len(text), j + self.table.longest) + 1):
                ids = by_text.get(text[j:end])
                if ids:
                    allowed.update(ids)
        if can_stop or not allowed:
            allowed.update(self.stop_ids)
        return sorted(allowed)

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        import torch

        keep = torch.tensor(self.allowed(generated), dtype=torch.long)
        masked = torch.full_like(logits, float("-inf"))
        masked[..., keep] = logits[..., keep]
        return masked


@dataclass
class ReaderAnswer:
    """One greedy answer with its per-token signals."""

    text: str
    tokens: list[GeneratedToken] = field(default_factory=list)
    seconds: float = 0.0
    quote: Quote | None = None
    #: Whether decoding ended on the stop token (the last of ``tokens``) rather than the cap.
    stopped: bool = False
    #: Answers sampled from the same prompt (``answer_question(..., samples=k)``), else empty.
    samples: list[str] = field(default_factory=list)

    @property
    def answer_tokens(self) -> list[GeneratedToken]:
        """The tokens of the answer itself (the stop token left out)."""
        return self.tokens[:-1] if self.stopped else self.tokens

    @property
    def disagreement(self) -> float | None:
        """``1 -`` the mean token F1 of the sampled answers against this one; None without samples.

        0 when every sample says the same, 1 when none shares a word with the answer. A
        reader that knows the answer keeps giving it; one that guesses scatters.
        """
        return answer_disagreement(self.text, self.samples) if self.samples else None


def answer_question(
    generator: Generator,
    question: str,
    passages: Sequence[Passage] = (),
    *,
    max_new_tokens: int = 24,
    grounded: bool = False,
    samples: int = 0,
    sample_temperature: float = 1.0,
    seed: int = 0,
    capture_layers: Sequence[int] = (),
) -> ReaderAnswer:
    """Answer one question greedily with the active adapter; ``grounded`` quotes the passages.

    ``samples`` > 0 also draws that many answers at ``sample_temperature`` from the same
    prompt (one batch, no second prefill; grounded too when ``grounded``), for
    ``ReaderAnswer.disagreement``. ``capture_layers`` keeps those layers' hidden states on
    the tokens (``Generator.stream``) for ``reader_probe.ReaderProbe``.

    Example:
        >>> answer_question(gen, "Who won Super Bowl 50?", [passage], grounded=True).text  # doctest: +SKIP
        'Denver Broncos'
    """
    started = time.perf_counter()
    processor = SpanConstraint.for_generator(generator, passages) if grounded and passages else None
    prompt = generator.prompt_ids(question, passages)
    tokens: list[GeneratedToken] = []
    pieces: list[str] = []
    stopped = False
    with closing(
        generator.stream(
            prompt,
            max_new_tokens=max_new_tokens,
            logits_processor=processor,
            keep_prompt=samples > 0,
            capture_layers=capture_layers,
        )
    ) as stream:
        for token in stream:
            tokens.append(token)
            if token.token_id in generator.stop_ids:
                stopped = True
                break
            pieces.append(token.text)
    text = "".join(pieces).strip()
    sampled = (
        sample_answers(
            generator,
            prompt,
            samples,
            constraint=(lambda: SpanConstraint.for_generator(generator, passages))
            if grounded and passages
            else None,
            max_new_tokens=max_new_tokens,
            temperature=sample_temperature,
            seed=seed,
        )
        if samples > 0
        else []
    )
    return ReaderAnswer(
        text=text,
        tokens=tokens,
        seconds=time.perf_counter() - started,
        quote=locate_quote(text, passages) if passages else None,
        stopped=stopped,
        samples=sampled,
    )


def sample_answers(
    generator: Generator,
    prompt_ids: Sequence[int],
    n: int,
    *,
    constraint: Callable[[], SpanConstraint] | None = None,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """``n`` answers sampled for ``prompt_ids`` in one batch.

    ``constraint`` makes a fresh constraint per sample (each follows its own answer): pass
    the one the greedy answer was decoded under, so the samples may say what it could.
    """
    processors = [constraint() for _ in range(n)] if constraint is not None else []
    drawn = generator.sample(
        prompt_ids,
        n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        logits_processors=processors,
    )
    return [generator.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in drawn]


def reader_uncertainty(tokens: Sequence[GeneratedToken]) -> float:
    """How unsure the reader was of its answer: ``-ln p(answer, stop)``, the answer's total surprisal.

    Summed over the answer tokens and the stop token (the model must also be sure the
    answer has ended). Infinite when nothing was generated. Selective answering escalates
    when this is above the reader setpoint; BENCHMARKS.md ("Reader adapter") compares it with
    the other candidate signals.
    """
    if not tokens:
        return float("inf")
    return -sum(t.logprob for t in tokens)


def answer_disagreement(answer: str, samples: Sequence[str]) -> float:
    """``1 -`` the mean token F1 of ``samples`` against ``answer`` (see ``ReaderAnswer.disagreement``)."""
    if not samples:
        raise ValueError("disagreement needs at least one sampled answer")
    from setpoint.adapters.domain.metrics import token_f1

    return 1.0 - sum(token_f1(s, answer) for s in samples) / len(samples)


def sampled_uncertainty(disagreement: float, surprisal: float) -> float:
    """Sampled-answer disagreement, ties broken by the greedy answer's total surprisal.

    Disagreement moves in steps of at least ``1/(samples * answer words)``; the surprisal
    term stays below 0.01, so it only orders answers with equal disagreement (most often
    the ones every sample agreed with). Higher means less sure, in ``[0, 1.01)``.
    """
    if math.isinf(surprisal):
        return disagreement + 0.01
    return disagreement + 0.01 * (1.0 - math.exp(-max(0.0, surprisal)))
