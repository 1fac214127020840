"""The chunking policy: passages cut into embedding-sized pieces on paragraph and sentence boundaries."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ChunkPolicy", "chunk_text", "split_sentences"]

# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket) before
# whitespace and an upper-case letter, digit or opening quote. Abbreviations such as "Dr."
# before a name split wrongly; a chunk boundary one sentence early costs little.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")


@dataclass(frozen=True)
class ChunkPolicy:
    """How long passages are cut before embedding.

    Sizes are in words (whitespace-separated), which keeps the policy independent of any
    tokenizer. The default of 180 words fits all-MiniLM-L6-v2's 256-token window with the
    title in front (English runs about 1.3 word pieces per word); text past the window
    would be silently left out of the vector.

    The rules, in order:

    1. A passage of at most ``max_words`` words is one chunk, its text unchanged.
    2. Otherwise the text is split into paragraphs (blank lines). Whole paragraphs are
       packed into chunks of at most ``max_words`` words.
    3. A paragraph longer than ``max_words`` is split into sentences, and a sentence
       longer than ``max_words`` into runs of ``max_words`` words.
    4. Each chunk after the first repeats the trailing sentences (or paragraphs) of the
       previous one, up to ``overlap_words`` words, so a fact that straddles a boundary
       is whole in at least one chunk.

    Args:
        max_words: Upper bound on a chunk's length (a single run of words may reach it).
        overlap_words: How much of the previous chunk's end to repeat; 0 for none.

    Example:
        >>> policy = ChunkPolicy(max_words=120, overlap_words=20)
        >>> policy.key
        'words-120-overlap-20'
    """

    max_words: int = 180
    overlap_words: int = 30

    def __post_init__(self) -> None:
        from setpoint.errors import ConfigError

        if self.max_words < 8:
            raise ConfigError(f"chunk size must be at least 8 words, got {self.max_words}")
        if not 0 <= self.overlap_words < self.max_words:
            raise ConfigError(
                f"chunk overlap must be between 0 and the chunk size ({self.max_words}) "
                f"words, got {self.overlap_words}"
            )

    @property
    def key(self) -> str:
        """A stable name of the policy; part of every passage's version hash."""
        return f"words-{self.max_words}-overlap-{self.overlap_words}"


def _words(text: str) -> int:
    return len(text.split())


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (whitespace inside each kept as it was, ends stripped).

    Example:
        >>> split_sentences("It rained. Then it stopped! Why? Nobody knows.")
        ['It rained.', 'Then it stopped!', 'Why?', 'Nobody knows.']
    """
    parts: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        # Keep a closing quote or bracket with the sentence it closes.
        end = match.start() + len(match.group(0).rstrip())
        piece = text[start:end].strip()
        if piece:
            parts.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


@dataclass(frozen=True)
class _Unit:
    """A piece that is never cut further: a paragraph, a sentence or a run of words."""

    text: str
    words: int
    # Units that begin a paragraph are joined to the previous one with a blank line.
    opens_paragraph: bool


def _units(text: str, max_words: int) -> list[_Unit]:
    units: list[_Unit] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if _words(paragraph) <= max_words:
            units.append(_Unit(paragraph, _words(paragraph), True))
            continue
        first = True
        for sentence in split_sentences(paragraph):
            words = sentence.split()
            for at in range(0, len(words), max_words):
                piece = words[at : at + max_words]
                # A sentence cut into runs loses its inner line breaks; that is harmless.
                run = sentence if len(piece) == len(words) else " ".join(piece)
                units.append(_Unit(run, len(piece), first))
                first = False
    return units


def _join(units: list[_Unit]) -> str:
    out = ""
    for n, unit in enumerate(units):
        if n:
            out += "\n\n" if unit.opens_paragraph else " "
        out += unit.text
    return out


def chunk_text(text: str, policy: ChunkPolicy | None = None) -> list[str]:
    """Cut ``text`` into chunks by ``policy`` (see :class:`ChunkPolicy` for the rules).

    Returns at least one chunk for any text with a word in it, and none for blank text.

    Example:
        >>> chunk_text("Short passage.")
        ['Short passage.']
        >>> len(chunk_text("word " * 400, ChunkPolicy(max_words=180, overlap_words=0)))
        3
    """
    policy = policy or ChunkPolicy()
    if not text.strip():
        return []
    if _words(text) <= policy.max_words:
        return [text]
    chunks: list[str] = []
    current: list[_Unit] = []
    size = 0
    for unit in _units(text, policy.max_words):
        if current and size + unit.words > policy.max_words:
            chunks.append(_join(current))
            # Carry the tail of the finished chunk, whole units only, within the overlap.
            carried: list[_Unit] = []
            carried_words = 0
            for previous in reversed(current):
                if carried_words + previous.words > policy.overlap_words:
                    break
                carried.insert(0, previous)
                carried_words += previous.words
            # The overlap must leave room for the new unit, or the chunk would not advance.
            while carried and carried_words + unit.words > policy.max_words:
                carried_words -= carried.pop(0).words
            current, size = carried, carried_words
        current.append(unit)
        size += unit.words
    if current:
        chunks.append(_join(current))
    return chunks
