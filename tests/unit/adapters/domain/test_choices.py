"""Questions that name their answers: alternatives and yes/no, and what is left open."""

from __future__ import annotations

import pytest

from setpoint.adapters.domain.choices import YES_NO, answer_options, closed_answers


@pytest.mark.parametrize(
    ("question", "options"),
    [
        (
            "Which film came out first, Blind Shaft or The Mask Of Fu Manchu?",
            ("Blind Shaft", "The Mask Of Fu Manchu"),
        ),
        (
            "Who was born later, Ada Lovelace or Charles Babbage?",
            ("Ada Lovelace", "Charles Babbage"),
        ),
        # a comma inside the second option's name stays with it
        (
            "Which film has the director born first, The Sign Of Death or Believe Me, Xantippe?",
            ("The Sign Of Death", "Believe Me, Xantippe"),
        ),
        (
            "Was Ian Brennan (Footballer) or Jagnandan Singh born first?",
            ("Ian Brennan (Footballer)", "Jagnandan Singh"),
        ),
        (
            "Which is more costly, formal, or informal imperialism?",
            ("formal", "informal imperialism"),
        ),
    ],
)
def test_an_alternative_names_its_two_options(question: str, options: tuple[str, str]) -> None:
    assert answer_options(question) == options
    assert closed_answers(question) == options


@pytest.mark.parametrize(
    "question",
    [
        "Who would teach from a work like the Quran, Torah or Bible?",  # a list, no comparison
        "does archie end up with betty or veronica in riverdale",  # no cue, no names
        "What method is used to assess or quantify the resources a problem needs?",
        "Which NFL team won Super Bowl 50?",
        "Who was born first, Ada Lovelace or Ada Lovelace?",  # not two things
    ],
)
def test_other_questions_name_no_options(question: str) -> None:
    assert answer_options(question) == ()


def test_yes_no_questions_allow_yes_and_no_unless_they_offer_an_alternative() -> None:
    assert closed_answers("Are the Tamar and the Badam in the same country?") == YES_NO
    assert (
        closed_answers("Did Eberhard Nestle and Zélia Cardoso De Mello share a nationality?")
        == YES_NO
    )
    assert closed_answers("Were Tesla's experiments high-voltage or low-voltage?") == ()
    assert closed_answers("Who founded Paris?") == ()
