"""The chunking policy and the Markdown / plain-text readers: what ends up in each passage and chunk."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from setpoint.adapters.domain.chunking import ChunkPolicy, chunk_text, split_sentences
from setpoint.adapters.weaviate.corpus import (
    find_passage_files,
    read_markdown,
    read_passages,
    read_text,
)
from setpoint.errors import ConfigError, IngestError


def _sentences(n: int, words: int = 10, tag: str = "s") -> list[str]:
    """``n`` distinct sentences of ``words`` words each, every one recognisable by its tag."""
    return [
        f"{tag.capitalize()}{i} " + " ".join(f"w{i}x{j}" for j in range(words - 2)) + " end."
        for i in range(n)
    ]


def _words(text: str) -> int:
    return len(text.split())


# -- chunking --------------------------------------------------------------------------------


def test_short_passage_is_one_chunk_unchanged() -> None:
    text = "  A short passage.\n\nWith two paragraphs, kept exactly as given.  "
    assert chunk_text(text) == [text]


def test_blank_text_has_no_chunks() -> None:
    assert chunk_text("  \n\n ") == []


def test_every_chunk_fits_and_no_sentence_is_lost() -> None:
    sentences = _sentences(60)  # 600 words in one paragraph
    text = " ".join(sentences)
    policy = ChunkPolicy(max_words=100, overlap_words=25)
    chunks = chunk_text(text, policy)
    assert len(chunks) >= 6
    assert all(_words(c) <= 100 for c in chunks)
    joined = "\n".join(chunks)
    assert all(s in joined for s in sentences)


def test_overlap_repeats_the_end_of_the_previous_chunk() -> None:
    text = " ".join(_sentences(30))
    chunks = chunk_text(text, ChunkPolicy(max_words=50, overlap_words=20))
    for previous, following in itertools.pairwise(chunks):
        last_two = split_sentences(previous)[-2:]
        # 10-word sentences, 20 words of overlap: the last two sentences come again.
        assert following.startswith(" ".join(last_two))


def test_no_overlap_means_no_repeated_sentence() -> None:
    sentences = _sentences(30)
    chunks = chunk_text(" ".join(sentences), ChunkPolicy(max_words=50, overlap_words=0))
    seen = [s for c in chunks for s in split_sentences(c)]
    assert seen == sentences


def test_paragraphs_that_fit_are_never_split() -> None:
    paragraphs = [" ".join(_sentences(4, tag=f"p{n}x")) for n in range(8)]  # 40 words each
    chunks = chunk_text("\n\n".join(paragraphs), ChunkPolicy(max_words=100, overlap_words=0))
    for paragraph in paragraphs:
        holders = [c for c in chunks if paragraph in c]
        assert len(holders) == 1, "a paragraph that fits a chunk must sit whole in one chunk"
    # Two 40-word paragraphs fit in 100 words, three do not.
    assert len(chunks) == 4
    assert all(c.count("\n\n") == 1 for c in chunks)


def test_long_paragraph_is_split_at_sentences() -> None:
    long_paragraph = " ".join(_sentences(20))  # 200 words
    chunks = chunk_text(long_paragraph, ChunkPolicy(max_words=55, overlap_words=0))
    for chunk in chunks:
        assert chunk.endswith("end."), "a chunk of a long paragraph ends at a sentence end"


def test_sentence_longer_than_a_chunk_is_cut_into_runs() -> None:
    text = " ".join(f"w{i}" for i in range(250))  # one "sentence", no punctuation
    chunks = chunk_text(text, ChunkPolicy(max_words=100, overlap_words=0))
    assert [_words(c) for c in chunks] == [100, 100, 50]
    assert " ".join(chunks) == text


def test_chunking_is_deterministic() -> None:
    text = "\n\n".join(" ".join(_sentences(7, tag=f"p{n}x")) for n in range(5))
    policy = ChunkPolicy(max_words=60, overlap_words=15)
    assert chunk_text(text, policy) == chunk_text(text, policy)


@pytest.mark.parametrize(("size", "overlap"), [(4, 0), (100, 100), (100, -1)])
def test_bad_policy_is_refused(size: int, overlap: int) -> None:
    with pytest.raises(ConfigError, match="chunk"):
        ChunkPolicy(max_words=size, overlap_words=overlap)


def test_policy_key_names_its_numbers() -> None:
    assert ChunkPolicy(120, 20).key != ChunkPolicy(120, 30).key


def test_split_sentences_keeps_closing_quotes_and_numbers() -> None:
    text = 'He said "stop." Then he left! Was it 1990? 2001 came later.'
    assert split_sentences(text) == [
        'He said "stop."',
        "Then he left!",
        "Was it 1990?",
        "2001 came later.",
    ]


# -- passage files ---------------------------------------------------------------------------


def test_markdown_sections_become_passages(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(
        "---\ntitle: ignored front matter\n---\n"
        "Intro text before any heading.\n\n"
        "# Install\n\nRun the installer.\n\n"
        "## Linux\n\nUse the package.\n\n```sh\n# not a heading\nmake\n```\n\n"
        "## Empty\n\n"
        "# Install\n\nA second section with the same heading.\n",
        encoding="utf-8",
    )
    records = read_markdown(doc)
    assert [r.id for r in records] == ["guide", "install", "install/linux", "install-2"]
    assert [r.title for r in records] == ["guide", "Install", "Install › Linux", "Install"]
    linux = records[2]
    assert "# not a heading" in linux.text and "make" in linux.text
    assert "front matter" not in " ".join(r.text for r in records)


def test_text_file_is_one_passage(tmp_path: Path) -> None:
    note = tmp_path / "field_notes.txt"
    note.write_text("\n\nFirst paragraph.\n\nSecond paragraph.\n", encoding="utf-8")
    (record,) = read_text(note)
    assert (record.id, record.title) == ("field_notes", "field_notes")
    assert record.text == "First paragraph.\n\nSecond paragraph."


def test_unknown_suffix_and_bad_encoding_are_explained(tmp_path: Path) -> None:
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF")
    with pytest.raises(IngestError, match=re.escape(".jsonl")):
        read_passages(pdf)
    latin = tmp_path / "latin.md"
    latin.write_bytes(b"# Caf\xe9\n")
    with pytest.raises(IngestError, match="not UTF-8"):
        read_passages(latin)


def test_folder_files_are_found_with_their_sources(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for name in ("a.jsonl", "sub/b.md", "sub/c.txt", "sub/d.pdf", ".hidden/e.md"):
        (root / name).write_text("x", encoding="utf-8")
    found = find_passage_files(root)
    assert [f.source for f in found] == ["docs/a.jsonl", "docs/sub/b.md", "docs/sub/c.txt"]
    with pytest.raises(IngestError, match="not a folder"):
        find_passage_files(root / "a.jsonl")
