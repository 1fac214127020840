"""Policy checks: refused topics and prompt-injection patterns, loaded from a YAML policy file.

Each check is a plain function of text returning a ``Verdict``; ``make_policy_tool`` wraps the
question check as a LangChain tool for agents that want to call it themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from setpoint.errors import ConfigError

__all__ = ["DEFAULT_POLICY_FILE", "Policy", "Verdict", "load_policy"]

DEFAULT_POLICY_FILE = "policy.yaml"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: ``allowed``, and when not, a reason code and the matched text."""

    check: str
    allowed: bool
    reason: str = ""
    matched: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "allowed": self.allowed,
            "reason": self.reason,
            "matched": self.matched,
        }


@dataclass(frozen=True)
class Topic:
    name: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Policy:
    """A validated policy.

    Example:
        >>> policy = Policy.from_mapping({"refused_topics": [{"name": "weapons", "keywords": ["bomb"]}]})
        >>> policy.check_question("How do I build a bomb?").reason
        'refused_topic:weapons'
    """

    topics: tuple[Topic, ...] = ()
    injection_patterns: tuple[re.Pattern[str], ...] = ()
    source: str = "<mapping>"
    _names: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_mapping(cls, data: Any, source: str = "<mapping>") -> Policy:
        """Validate a parsed policy document; every mistake is a ``ConfigError`` naming the key."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"policy {source}: the top level must be a mapping, got {type(data).__name__}"
            )
        unknown = set(data) - {"version", "refused_topics", "injection_patterns"}
        if unknown:
            raise ConfigError(
                f"policy {source}: unknown key(s) {sorted(unknown)}; allowed: version, refused_topics, injection_patterns"
            )
        topics: list[Topic] = []
        raw_topics = data.get("refused_topics") or []
        if not isinstance(raw_topics, list):
            raise ConfigError(f"policy {source}: refused_topics must be a list")
        for i, entry in enumerate(raw_topics):
            where = f"policy {source}: refused_topics[{i}]"
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("name"), str)
                or not entry["name"]
            ):
                raise ConfigError(f"{where} needs a non-empty string 'name'")
            keywords = entry.get("keywords")
            if (
                not isinstance(keywords, list)
                or not keywords
                or not all(isinstance(k, str) and k.strip() for k in keywords)
            ):
                raise ConfigError(
                    f"{where} ({entry['name']}) needs a non-empty list of string 'keywords'"
                )
            alternatives = "|".join(re.escape(k.strip().lower()) for k in keywords)
            topics.append(
                Topic(entry["name"], re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE))
            )
        patterns: list[re.Pattern[str]] = []
        raw_patterns = data.get("injection_patterns") or []
        if not isinstance(raw_patterns, list):
            raise ConfigError(
                f"policy {source}: injection_patterns must be a list of regular expressions"
            )
        for i, raw in enumerate(raw_patterns):
            if not isinstance(raw, str) or not raw:
                raise ConfigError(
                    f"policy {source}: injection_patterns[{i}] must be a non-empty string"
                )
            try:
                patterns.append(re.compile(raw, re.IGNORECASE))
            except re.error as exc:
                raise ConfigError(
                    f"policy {source}: injection_patterns[{i}] {raw!r} is not a valid regex: {exc}"
                ) from None
        return cls(tuple(topics), tuple(patterns), source, tuple(t.name for t in topics))

    @classmethod
    def from_file(cls, path: Path) -> Policy:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read policy file {path}: {exc}; fix the path in SETPOINT_POLICY_FILE"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"policy file {path} is not valid YAML: {str(exc).splitlines()[0]}"
            ) from None
        return cls.from_mapping(data, str(path))

    def refused_topic(self, text: str) -> Verdict:
        for topic in self.topics:
            match = topic.pattern.search(text)
            if match:
                return Verdict(
                    "refused_topic", False, f"refused_topic:{topic.name}", match.group(0)
                )
        return Verdict("refused_topic", True)

    def injection(self, text: str) -> Verdict:
        for pattern in self.injection_patterns:
            match = pattern.search(text)
            if match:
                return Verdict("prompt_injection", False, "prompt_injection", match.group(0))
        return Verdict("prompt_injection", True)

    def check_question(self, text: str) -> Verdict:
        """Refused topics first, then injection; the first failure wins."""
        topic = self.refused_topic(text)
        return topic if not topic.allowed else self.injection(text)

    def check_passage(self, text: str) -> Verdict:
        """A passage is dropped when it carries instructions aimed at the model."""
        return self.injection(text)

    def check_answer(self, text: str) -> Verdict:
        return self.refused_topic(text)


@lru_cache(maxsize=8)
def load_policy(path: str | None = None) -> Policy:
    """The policy at ``path``, or the packaged default; cached per path."""
    if path is None:
        default = resources.files("setpoint").joinpath(DEFAULT_POLICY_FILE)
        return Policy.from_mapping(
            yaml.safe_load(default.read_text(encoding="utf-8")), "default policy"
        )
    return Policy.from_file(Path(path).expanduser())
