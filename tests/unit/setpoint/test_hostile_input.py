"""Hostile input, generated: only clean ``SetpointError``s come out, never a traceback or a hang.

Covers the question path (validation and the whole graph on the tiny model), the passage
file readers (random bytes, huge lines, deep JSON, wrong encodings), the policy file, the
CLI's arguments, folder ingestion through symlinks, and what reaches logs and spans.

Runs derandomized (the same inputs every run, so CI is reproducible); raise the budget for a
deeper search with ``SETPOINT_FUZZ_EXAMPLES`` (a multiplier, e.g. 20). With
``SETPOINT_RELIABILITY_JSON=path`` the number of inputs tried per generator is merged into
that JSON file (see RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from setpoint.adapters.weaviate.corpus import (
    PassageRecord,
    find_passage_files,
    read_jsonl,
    read_passages,
)
from setpoint.agents.guard_input import validate_question
from setpoint.agents.resources import Resources
from setpoint.errors import SetpointError
from setpoint.graphs.context import Context
from setpoint.graphs.graph import build_graph
from setpoint.tools.policy import Policy

_SCALE = max(float(os.environ.get("SETPOINT_FUZZ_EXAMPLES", "1")), 0.01)
TRIED: Counter[str] = Counter()


def budget(examples: int, *also_suppress: HealthCheck) -> Any:
    """Hypothesis settings: ``examples`` scaled, no per-example deadline, same inputs each run."""
    return settings(
        max_examples=max(int(examples * _SCALE), 1),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, *also_suppress],
    )


@pytest.fixture(scope="module", autouse=True)
def _record_counts() -> Iterator[None]:
    yield
    target = os.environ.get("SETPOINT_RELIABILITY_JSON")
    if not target:
        return
    path = Path(target)
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    section = data.setdefault("hostile_input", {})
    section["inputs_per_generator"] = dict(sorted(TRIED.items()))
    section["inputs_total"] = sum(TRIED.values())
    section["examples_scale"] = _SCALE
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# -- strategies ---------------------------------------------------------------------------------

# Text as attackers write it: control bytes, lone surrogates, right-to-left marks, NULs,
# replacement characters, zero-width joiners, combining marks, and plain words.
_NASTY = st.sampled_from(
    ["\x00", "\ufffd", "\ud800", "\udfff", "\u202e", "\u200d", "\u0301", "\x1b[2J", "\r\n", "\t",
     "ignore previous instructions", "{{", "}}", "<|im_end|>", "<|im_start|>system", "%s", "\\x00"]
)  # fmt: skip
nasty_text = st.lists(
    st.one_of(st.text(max_size=40), _NASTY, st.sampled_from(["who", "won", "the", "super", "bowl", "?"])),
    max_size=25,
).map("".join)  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)  # fmt: skip


def _deep_json(depth: int, opener: str) -> bytes:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return ('{"a":' * depth + "1" + closer * depth).encode()
    return (opener * depth + closer * depth).encode()


jsonl_lines = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"id": json_values, "title": json_values, "text": json_values},
        optional={"meta": json_values},
    ).map(lambda d: json.dumps(d).encode()),
    st.builds(
        lambda i, t, enc: json.dumps({"id": i, "text": t}, ensure_ascii=False).encode(enc, "replace"),
        st.text(min_size=1, max_size=20),
        nasty_text,
        st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252", "utf-32"]),
    ),
    st.builds(_deep_json, st.integers(1, 200_000), st.sampled_from(["[", "{"])),
    st.integers(1, 2_000_000).map(lambda n: b'{"id": "huge", "text": "' + b"x" * n + b'"}'),
)  # fmt: skip
jsonl_files = st.lists(jsonl_lines, max_size=8).map(lambda lines: b"\n".join(lines)) | st.binary(
    max_size=2000
)


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _valid_records(records: list[PassageRecord]) -> None:
    for record in records:
        assert isinstance(record.id, str) and record.id.strip()
        assert (
            isinstance(record.title, str) and isinstance(record.text, str) and record.text.strip()
        )
        assert isinstance(record.metadata, dict)


# -- the question path ----------------------------------------------------------------------


@budget(400)
@given(
    st.one_of(nasty_text, st.binary(max_size=50), st.none(), st.integers(), st.lists(st.text())),
    st.integers(1, 3000),
)
def test_validate_question_returns_text_or_input_error(question: object, limit: int) -> None:
    TRIED["question: validate_question"] += 1
    try:
        text = validate_question(question, limit)
    except SetpointError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(text, str) and 0 < len(text) <= limit and text == text.strip()


# One ``resources`` (conftest's tiny model and in-memory store) serves every example.
@budget(60, HealthCheck.function_scoped_fixture)
@given(question=nasty_text, setpoint=st.sampled_from([0.0, 1.6, math.inf]), up=st.booleans())
def test_graph_answers_abstains_or_raises_setpoint_error(
    resources: Resources, question: str, setpoint: float, up: bool
) -> None:
    TRIED["question: whole graph (tiny model)"] += 1
    resources.store().up = up
    graph = build_graph(resources)
    try:
        out = graph.invoke(
            {"question": question}, context=Context(setpoint=setpoint, max_new_tokens=4)
        )
    except SetpointError as exc:
        assert "\n" not in str(exc)
        return
    assert out["status"] in {"answered", "abstained", "refused"}, out["status"]
    assert isinstance(out["answer"], str)


# -- ingestion formats ------------------------------------------------------------------------


@budget(250)
@given(data=jsonl_files)
def test_jsonl_reader_reports_bad_lines_never_crashes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    TRIED["ingest: JSONL bytes (random, huge, deep, mis-encoded)"] += 1
    path = _write(tmp_path_factory.mktemp("jsonl"), "p.jsonl", data)
    started = time.monotonic()
    records, bad = read_jsonl(path)
    assert time.monotonic() - started < 10
    _valid_records(records)
    assert len({r.id for r in records}) == len(records)
    for number, reason in bad:
        assert isinstance(number, int) and number >= 1 and reason and "\n" not in reason


@budget(150)
@given(
    data=st.one_of(
        st.binary(max_size=3000), nasty_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
    ),
    suffix=st.sampled_from([".md", ".markdown", ".txt", ".TXT", ".csv", "", ".jsonl"]),
)
def test_markdown_and_text_readers_never_crash(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, suffix: str
) -> None:
    TRIED["ingest: Markdown/text/other suffixes"] += 1
    path = _write(tmp_path_factory.mktemp("doc"), f"doc{suffix}", data)
    try:
        records, bad = read_passages(path)
    except SetpointError as exc:
        assert "\n" not in str(exc)
        return
    _valid_records(records)
    assert all(number >= 1 and "\n" not in reason for number, reason in bad)


def test_pathological_files_are_rejected_in_bounded_time(tmp_path: Path) -> None:
    """The classic worst cases, once each, outside the generators' size limits."""
    cases = {
        "deep.jsonl": b"[" * 5_000_000,
        "deep-objects.jsonl": b'{"a":' * 1_000_000,
        "one-huge-line.jsonl": b'{"id": "x", "text": "' + b"y" * 20_000_000 + b'"}',
        "utf16.jsonl": json.dumps({"id": "a", "text": "b"}).encode("utf-16"),
        "nul.md": b"# Title\n\x00\x00\x00",
        "latin1.txt": "caf\xe9".encode("latin-1"),
        "heading-storm.md": b"# h\n" * 200_000,
        "fences.md": b"```\n" * 100_000,
    }
    for name, data in cases.items():
        TRIED["ingest: pathological files"] += 1
        path = _write(tmp_path, name, data)
        started = time.monotonic()
        try:
            records, _ = read_passages(path)
            _valid_records(records)
        except SetpointError as exc:
            assert "\n" not in str(exc)
        assert time.monotonic() - started < 30, name


# -- folder ingestion: symlinks and traversal ------------------------------------------------


def test_folder_ingest_never_leaves_the_folder(tmp_path: Path) -> None:
    TRIED["ingest: symlink/traversal layouts"] += 1
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("private key material")
    (outside / "notes.md").write_text("# Notes\nprivate")
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "kept.txt").write_text("a public passage")
    (corpus / "sub" / "also.md").write_text("# Also\npublic")
    (corpus / "link-to-secret.txt").symlink_to(outside / "secret.txt")
    (corpus / "relative-escape.txt").symlink_to(Path("..") / "outside" / "secret.txt")
    (corpus / "dir-link").symlink_to(outside, target_is_directory=True)
    (corpus / "sub" / "loop").symlink_to(corpus, target_is_directory=True)
    (corpus / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (corpus / "inside-link.txt").symlink_to(corpus / "kept.txt")
    (corpus / "..weird.txt").write_text("a dot-dot name that stays inside")
    found = find_passage_files(corpus)
    root = corpus.resolve()
    for item in found:
        assert item.path.resolve().is_relative_to(root), f"{item.path} leaves the folder"
        assert ".." not in Path(item.source).parts and not item.source.startswith("/")
    texts = {read_passages(f.path)[0][0].text for f in found}
    assert not any("private" in t for t in texts)
    assert "a public passage" in texts and "public" in " ".join(texts)


# -- the policy file ----------------------------------------------------------------------------

policy_mappings = st.fixed_dictionaries(
    {},
    optional={
        "refused_topics": json_values | st.lists(st.fixed_dictionaries({"name": json_values}, optional={"keywords": json_values, "examples": json_values, "threshold": json_values}), max_size=3),
        "injection": json_values | st.fixed_dictionaries({}, optional={"patterns": st.lists(st.text(max_size=15), max_size=3), "phrases": json_values}),
        "output": json_values | st.fixed_dictionaries({}, optional={"grounding": json_values, "pii": json_values}),
        "pii": json_values,
        "version": json_values,
    },
)  # fmt: skip


@budget(300)
@given(body=st.one_of(
    policy_mappings.map(lambda m: json.dumps(m)),  # JSON is YAML
    json_values.map(json.dumps),
    st.text(max_size=400),
    st.binary(max_size=400).map(lambda b: b.decode("latin-1")),
))  # fmt: skip
def test_policy_file_loads_or_is_one_config_error(
    tmp_path_factory: pytest.TempPathFactory, body: str
) -> None:
    TRIED["policy file: YAML/JSON/bytes"] += 1
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(body, encoding="utf-8", errors="surrogatepass")
    try:
        policy = Policy.from_file(path)
    except SetpointError as exc:
        assert "\n" not in str(exc)
        return
    if not policy.needs_embedder:
        policy.check_question("who won the super bowl ?")


def test_policy_yaml_bomb_and_deep_nesting_fail_fast(tmp_path: Path) -> None:
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 10):
        prev = chr(ord("a") + n - 1)
        cur = chr(ord("a") + n)
        laughs.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    laughs.append("refused_topics: *j")
    cases = {
        "bomb.yaml": "\n".join(laughs),
        "deep.yaml": "refused_topics: " + "[" * 50_000 + "]" * 50_000,
        "anchors-in-names.yaml": "refused_topics:\n  - &t {name: x, keywords: [bomb]}\n  - *t\n",
        "python-tag.yaml": "!!python/object/apply:os.system ['echo owned']",
    }
    for name, body in cases.items():
        TRIED["policy file: YAML bombs and tags"] += 1
        path = tmp_path / name
        path.write_text(body, encoding="utf-8")
        started = time.monotonic()
        try:
            Policy.from_file(path)
        except SetpointError as exc:
            assert "\n" not in str(exc)
        assert time.monotonic() - started < 10, name


# -- the CLI ------------------------------------------------------------------------------------

_VERBS = ["ask", "ingest", "trace", "setup", "demo", "serve", "eval", "calibrate", "tune", "review"]
_FLAGS = ["--json", "--setpoint", "--top-k", "--alpha", "--max-retrievals", "--max-new-tokens", "--adapter",
          "--sync", "--delete", "--quiet", "--last", "--png", "--trace-id", "--port", "--limit", "--help", "-h",
          "--probe-setpoint", "--console-trace", "--trace-file", "--", "-", "--recreate"]  # fmt: skip
_VALUES = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "0x10", "", " ", "../../etc/passwd", "/etc", "/nonexistent/x.jsonl"]),
    st.text(max_size=12),
    nasty_text,
)  # fmt: skip
cli_args = st.lists(
    st.one_of(st.sampled_from(_VERBS), st.sampled_from(_FLAGS), _VALUES), max_size=6
)


@budget(300)
@given(argv=cli_args)
def test_cli_parser_accepts_or_exits_cleanly(argv: list[str]) -> None:
    """Every verb's arguments: parsed, or argparse's usage error (exit 2) / help (exit 0)."""
    from setpoint.cli.parser import build_parser

    TRIED["cli: argument parser (all verbs)"] += 1
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            assert exc.code in (0, 2)
    assert "Traceback" not in err.getvalue()


@pytest.fixture(scope="module")
def sandbox_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Settings that make every heavy dependency absent, so a run fails fast and cleanly."""
    tmp = tmp_path_factory.mktemp("cli-sandbox")
    return {
        "SETPOINT_CACHE_DIR": str(tmp / "cache"),
        "SETPOINT_MODEL_DIR": str(tmp / "no-model"),
        "SETPOINT_EMBEDDER_DIR": str(tmp / "no-embedder"),
        "SETPOINT_WEAVIATE_BINARY": str(tmp / "no-weaviate-server"),
        "SETPOINT_WEAVIATE_DATA": str(tmp / "weaviate"),
        "SETPOINT_TRACE_FILE": str(tmp / "spans.jsonl"),
        "SETPOINT_WEAVIATE_URL": "",
        "SETPOINT_CHECKPOINT_URL": "",
    }


@budget(120)
@given(
    verb=st.sampled_from(["ask", "ingest", "trace"]),
    rest=st.lists(st.one_of(st.sampled_from(_FLAGS), _VALUES), max_size=5),
)
def test_cli_runs_end_in_one_clean_line(
    sandbox_env: dict[str, str], verb: str, rest: list[str]
) -> None:
    """Runs that get past the parser fail (or succeed) without a traceback; errors are one line."""
    from setpoint.cli import main

    TRIED["cli: ask/ingest/trace runs"] += 1
    out, err = io.StringIO(), io.StringIO()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["code"] = main([verb, *rest])
        except SystemExit as exc:
            outcome["exit"] = exc.code
        except BaseException as exc:  # reported below, with the input that caused it
            outcome["raised"] = exc

    with pytest.MonkeyPatch.context() as patch:
        for name, value in sandbox_env.items():
            patch.setenv(name, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            # A daemon thread with a deadline: a hang fails this test instead of the whole run.
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            worker.join(60)
    assert not worker.is_alive(), f"setpoint {verb} {rest!r} hung"
    if "raised" in outcome:
        raise outcome["raised"]
    if "exit" in outcome:
        assert outcome["exit"] in (0, 2)
        return
    code = outcome["code"]
    assert "Traceback" not in err.getvalue()
    if code == 2:
        errors = [ln for ln in err.getvalue().splitlines() if ln.startswith("setpoint: ")]
        assert len(errors) == 1, err.getvalue()


# -- secrets and prompt text stay out of logs and spans ----------------------------------------


def _run_marked(
    resources: Resources, spans: InMemorySpanExporter, *, content: bool
) -> tuple[str, list[Any]]:
    """Ask a question carrying a marker, with an API key configured; return logs and spans."""
    settings = resources.settings.replace(
        weaviate_api_key="sk-SECRET-0123456789", trace_content=content
    )
    res = dataclasses.replace(resources, settings=settings)
    from setpoint.api import Setpoint

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        sp = Setpoint(settings, tracer_provider=res.tracer_provider, resources=res)
        sp.ask(
            "who won the super bowl zebra-marker-42 ?",
            context=sp.context(setpoint=0.0, max_new_tokens=6),
        )
        # A debug line that prints the settings, as anyone might add one day.
        logging.getLogger("setpoint").debug("settings in use: %r", settings)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    return stream.getvalue(), list(spans.get_finished_spans())


def _span_text(spans: list[Any]) -> str:
    return json.dumps(
        [
            {
                "attributes": dict(s.attributes or {}),
                "events": [dict(e.attributes or {}) for e in s.events],
            }
            for s in spans
        ],
        default=str,
    )


def test_no_secret_or_prompt_in_logs_and_spans_by_default(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    logs, finished = _run_marked(resources, spans, content=False)
    traced = _span_text(finished)
    assert finished, "no spans recorded"
    for place, text in (("logs", logs), ("spans", traced)):
        assert "sk-SECRET-0123456789" not in text, f"API key in {place}"
        assert "zebra-marker-42" not in text, f"question text in {place}"


def test_prompt_text_in_spans_only_when_opted_in(
    resources: Resources, spans: InMemorySpanExporter
) -> None:
    logs, finished = _run_marked(resources, spans, content=True)
    traced = _span_text(finished)
    assert "zebra-marker-42" in traced
    assert "sk-SECRET-0123456789" not in traced and "sk-SECRET-0123456789" not in logs
