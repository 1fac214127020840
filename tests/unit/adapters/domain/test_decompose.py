"""Nested questions split into the read that names the bridge and the read that asks about it."""

from __future__ import annotations

import pytest

from setpoint.adapters.domain.decompose import decompose


@pytest.mark.parametrize(
    ("question", "first", "then"),
    [
        (
            "Where was the director of film French Leave (1948 Film) born?",
            "Who is the director of film French Leave (1948 Film)?",
            "Where was Ann Smith born?",
        ),
        (
            "What is the place of birth of the performer of song Dark Fantasy (Song)?",
            "Who is the performer of song Dark Fantasy (Song)?",
            "What is the place of birth of Ann Smith?",
        ),
        (
            "When did Peter Holmes À Court's father die?",
            "Who is the father of Peter Holmes À Court?",
            "When did Ann Smith die?",
        ),
        (
            "What is the date of death of Charles Neville, 6Th Earl Of Westmorland's wife?",
            "Who is the wife of Charles Neville, 6Th Earl Of Westmorland?",
            "What is the date of death of Ann Smith?",
        ),
        (
            "What kind of university did the author of Dead Ernest attend?",
            "Who is the author of Dead Ernest?",
            "What kind of university did Ann Smith attend?",
        ),
    ],
)
def test_a_nested_question_is_read_in_two_hops(question: str, first: str, then: str) -> None:
    plan = decompose(question)
    assert plan is not None
    assert plan.first == first
    assert plan.then(" Ann Smith ") == then


@pytest.mark.parametrize(
    "question",
    [
        "Who is the director of film Ivanhoe?",  # one read names the answer itself
        "Who was hired to be the deputy director of the Office of Manned Space Flight?",
        "What is the city centre of Warsaw called in Polish?",  # not a person's relation
        "What caused the delay during the development of the AC motor?",
        "What were Tesla's sisters' names?",  # plural: not one bridge
        "who starred in the movie summer of 42",
        "When did Beyonce start becoming popular?",
    ],
)
def test_questions_one_read_answers_are_left_whole(question: str) -> None:
    assert decompose(question) is None
