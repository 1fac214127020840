"""What the generator is shown: the passage type, the system prompts, and the chat messages of a question."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BASE_READER_SYSTEM_PROMPT",
    "CHATML_TEMPLATE",
    "DEFAULT_SYSTEM_PROMPT",
    "READER_SYSTEM_PROMPT",
    "Passage",
    "chat_messages",
]

DEFAULT_SYSTEM_PROMPT = (
    "You are a precise assistant. Answer the question with a short answer only: "
    "a name, number, date or short phrase, not a sentence."
)
READER_SYSTEM_PROMPT = (
    "You are a precise assistant. Answer the question with a short phrase copied from the "
    "context passages. Do not write a sentence."
)

# A model reading without a reader adapter (a second family, ``reader_adapter=None``) has
# learned no answer format: it is told the format in the system turn and cued again right
# before it answers. Measured with Qwen2.5-Coder-0.5B's base weights on 40 SQuAD
# evaluation-title questions (gold passage) and 40 2WikiMultihopQA train questions
# (supporting passages), grounded: F1 0.577 / 0.362 against 0.475 / 0.341 with
# READER_SYSTEM_PROMPT, 4 answer tokens instead of 5.5 (``benchmarks/reader_prompt.py``;
# BENCHMARKS.md "Which generator"). Naming "yes or no" here made it answer "yes" to
# which-questions; ``reader.unquoted_answers`` offers yes/no to yes/no questions only.
BASE_READER_SYSTEM_PROMPT = (
    "Answer the question using the context. Reply with only the answer: the exact words "
    "from the context that answer it (a name, number, date or phrase). "
    "Do not write a full sentence and do not explain."
)
_BASE_READER_CUE = "Answer:"

# Chat template used when a model directory ships none (the GGUF conversion loses it).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Passage:
    """A retrieved passage as the generator sees it."""

    id: str
    title: str
    text: str


def chat_messages(
    question: str, passages: Sequence[Passage] = (), *, tuned_reader: bool = True
) -> list[dict[str, str]]:
    """The chat messages for a question, closed-book or with numbered context passages.

    ``tuned_reader=False``: the passages are read by a model without a reader adapter, so
    the answer format is spelled out (``BASE_READER_SYSTEM_PROMPT``, and a cue after the
    question); the reader adapters were trained on the ``READER_SYSTEM_PROMPT`` messages.

    Example:
        >>> chat_messages("Who won?", [Passage("p1", "Super Bowl 50", "Denver won.")])[1]["content"]
        'Context:\\n[1] Super Bowl 50: Denver won.\\n\\nQuestion: Who won?'
        >>> chat_messages("Who won?", [Passage("p1", "SB", "Denver won.")], tuned_reader=False)[1][
        ...     "content"
        ... ].splitlines()[-1]
        'Answer:'
    """
    if not passages:
        return [
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
    context = "\n\n".join(f"[{i}] {p.title}: {p.text}" for i, p in enumerate(passages, start=1))
    user = f"Context:\n{context}\n\nQuestion: {question}"
    if tuned_reader:
        return [
            {"role": "system", "content": READER_SYSTEM_PROMPT},
            {"role": "user", "content": user},
        ]
    return [
        {"role": "system", "content": BASE_READER_SYSTEM_PROMPT},
        {"role": "user", "content": f"{user}\n{_BASE_READER_CUE}"},
    ]
