"""What the generator is shown: the passage type, the system prompts, and the chat messages of a question."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
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


def chat_messages(question: str, passages: Sequence[Passage] = ()) -> list[dict[str, str]]:
    """The chat messages for a question, closed-book or with numbered context passages.

    Example:
        >>> chat_messages("Who won?", [Passage("p1", "Super Bowl 50", "Denver won.")])[1]["content"]
        'Context:\\n[1] Super Bowl 50: Denver won.\\n\\nQuestion: Who won?'
    """
    if not passages:
        return [
            {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
    context = "\n\n".join(f"[{i}] {p.title}: {p.text}" for i, p in enumerate(passages, start=1))
    return [
        {"role": "system", "content": READER_SYSTEM_PROMPT},
        {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"},
    ]
