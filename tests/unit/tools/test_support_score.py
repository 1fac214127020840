"""The grounding check's support scores on fixed answers and passages."""

from __future__ import annotations

import pytest

from setpoint.tools.support import content_words, lexical_support, support_score

PASSAGE = (
    "Super Bowl 50 was an American football game. The Denver Broncos defeated the Carolina "
    "Panthers 24–10 to earn their third Super Bowl title. The game was played on February 7, "
    "2016, at Levi's Stadium in Santa Clara, California."
)


@pytest.mark.parametrize(
    ("answer", "low", "high"),
    [
        ("Denver Broncos", 1.0, 1.0),
        ("The Denver Broncos won Super Bowl 50.", 0.7, 0.9),  # "won" is not in the passage
        ("It was played at Levi's Stadium in Santa Clara.", 0.9, 1.0),
        ("The Panthers defeated the Broncos", 0.5, 0.9),  # right words, wrong pairs
        ("The New England Patriots won.", 0.0, 0.3),
        ("Tom Brady", 0.0, 0.0),
    ],
)
def test_lexical_support(answer: str, low: float, high: float) -> None:
    score = support_score(answer, [PASSAGE])
    assert low <= score <= high, (answer, score)


def test_answers_without_content_words_are_neutral() -> None:
    assert lexical_support("Yes, it is.", [PASSAGE]) is None
    assert support_score("Yes, it is.", [PASSAGE]) == 0.5
    assert support_score("Denver Broncos", []) == 0.0


def test_stemming_and_numbers() -> None:
    assert content_words("The teams played 1,000 games") == ["team", "play", "1000", "game"]


def test_embedding_methods_need_an_embedder() -> None:
    with pytest.raises(ValueError, match="needs an embedder"):
        support_score("Denver", [PASSAGE], method="hybrid")
