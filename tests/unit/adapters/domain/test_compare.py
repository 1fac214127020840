"""Date comparisons between two options, read from the options' own passages."""

from __future__ import annotations

import pytest

from setpoint.adapters.domain.compare import (
    Comparison,
    asked_attribute,
    compare_options,
    option_passage,
    related_name,
)
from setpoint.adapters.domain.dates import DateRead, read_date

ADA = {
    "id": "ada",
    "title": "Ada Lovelace",
    "text": "Augusta Ada King, Countess of Lovelace( née Byron; 10 December 1815 – 27 November "
    "1852) was an English mathematician and writer. She died in London.",
}
BABBAGE = {
    "id": "babbage",
    "title": "Charles Babbage",
    "text": "Charles Babbage( 26 December 1791 – 18 October 1871) was an English polymath.",
}
FILM_A = {
    "id": "fa",
    "title": "Crime After Crime (film)",
    "text": "Crime After Crime is a 2011 award- winning documentary film directed by Yoav Potash.",
}
FILM_B = {
    "id": "fb",
    "title": "The Mayor of 44th Street",
    "text": "The Mayor of 44th Street is a 1942 film directed by Alfred E. Green.",
}
DIRECTOR_A = {
    "id": "da",
    "title": "Yoav Potash",
    "text": "Yoav Potash( born March 3, 1975) is an American filmmaker.",
}
DIRECTOR_B = {
    "id": "db",
    "title": "Alfred E. Green",
    "text": "Alfred Edward Green( July 11, 1889 – September 4, 1960) was an American director.",
}
DISTRACTOR = {"id": "x", "title": "Analytical Engine", "text": "Designed in 1837 by Babbage."}


@pytest.mark.parametrize(
    ("question", "options", "answer"),
    [
        (
            "Who was born first, Ada Lovelace or Charles Babbage?",
            ["Ada Lovelace", "Charles Babbage"],
            "Charles Babbage",
        ),
        (
            "Who was born later, Ada Lovelace or Charles Babbage?",
            ["Ada Lovelace", "Charles Babbage"],
            "Ada Lovelace",
        ),
        (
            "Who is younger, Charles Babbage or Ada Lovelace?",
            ["Charles Babbage", "Ada Lovelace"],
            "Ada Lovelace",
        ),
        (
            "Who died first, Charles Babbage or Ada Lovelace?",
            ["Charles Babbage", "Ada Lovelace"],
            "Ada Lovelace",
        ),
        (
            "Who lived longer, Ada Lovelace or Charles Babbage?",
            ["Ada Lovelace", "Charles Babbage"],
            "Charles Babbage",
        ),
        # a related entity's dates: the options' directors, named in the options' passages
        (
            "Which film has the director born first, The Mayor Of 44Th Street or Crime After Crime (Film)?",
            ["The Mayor Of 44Th Street", "Crime After Crime (Film)"],
            "The Mayor Of 44Th Street",
        ),
        (
            "Which film whose director is younger, The Mayor Of 44Th Street or Crime After Crime (Film)?",
            ["The Mayor Of 44Th Street", "Crime After Crime (Film)"],
            "Crime After Crime (Film)",
        ),
        # the cue "After" inside a title is not read as the question's direction
        (
            "Which film was released earlier, The Mayor Of 44Th Street or Crime After Crime (Film)?",
            ["The Mayor Of 44Th Street", "Crime After Crime (Film)"],
            "The Mayor Of 44Th Street",
        ),
        (
            "Which film came out more recently, The Mayor Of 44Th Street or Crime After Crime (Film)?",
            ["The Mayor Of 44Th Street", "Crime After Crime (Film)"],
            "Crime After Crime (Film)",
        ),
    ],
)
def test_the_dates_of_both_options_answer_the_comparison(
    question: str, options: list[str], answer: str
) -> None:
    found = compare_options(
        question, options, [DISTRACTOR, ADA, BABBAGE, FILM_A, FILM_B, DIRECTOR_A, DIRECTOR_B]
    )
    assert found is not None and found.answer == answer
    assert found.evidence is not None and set(found.evidence) == set(options)
    assert found.span_attributes()["setpoint.comparison"].endswith(": ordered")


def test_an_option_without_a_passage_is_named_for_a_second_hop() -> None:
    found = compare_options(
        "Who was born first, Ada Lovelace or Charles Babbage?",
        ["Ada Lovelace", "Charles Babbage"],
        [ADA, DISTRACTOR],  # the engine's passage names Babbage but is not about him
    )
    assert found == Comparison("birth", missing="Charles Babbage", read=("ada",))


@pytest.mark.parametrize(
    "question",
    [
        # a relation whose names this module does not read from the options' passages
        "Whose father was born first, Ada Lovelace or Charles Babbage?",
        "Which film has the director's father born first, Ada Lovelace or Charles Babbage?",
        # not a date
        "Which film has more directors, Crime After Crime (Film) or The Mayor Of 44Th Street?",
        "Who is taller, Ada Lovelace or Charles Babbage?",
    ],
)
def test_what_is_not_a_date_comparison_of_the_options_is_left_to_the_reader(question: str) -> None:
    assert asked_attribute(question) is None
    assert compare_options(question, ["Ada Lovelace", "Charles Babbage"], [ADA, BABBAGE]) is None


def test_a_missing_director_is_named_for_a_second_hop() -> None:
    found = compare_options(
        "Which film has the director who was born first, The Mayor Of 44Th Street or Crime After Crime?",
        ["The Mayor Of 44Th Street", "Crime After Crime"],
        [FILM_A, FILM_B, DIRECTOR_A],
    )
    assert found == Comparison(
        "birth", missing="Alfred E. Green", read=("fb", "fa", "da"), relation="director"
    )
    # neither film's passage: both titles are looked up, in one query
    found = compare_options(
        "Which film has the director who died first, The Mayor Of 44Th Street or Crime After Crime?",
        ["The Mayor Of 44Th Street", "Crime After Crime"],
        [DISTRACTOR],
    )
    assert found == Comparison(
        "death", missing="The Mayor Of 44Th Street, Crime After Crime", relation="director"
    )


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (
            "X is a 1927 film directed by B. Reeves Eason and starring Hoot Gibson.",
            "B. Reeves Eason",
        ),
        (
            "X is a 1962 film produced and directed by Albert Zugsmith. It is loosely based",
            "Albert Zugsmith",
        ),
        ("X is a 1916 drama directed by John Ince and Robert Thornby. It stars", "John Ince"),
        (
            "X is a 1955 film. It was directed by and starred Jack Webb in the title role.",
            "Jack Webb",
        ),
        (
            "X is a 1995 comedy produced, directed, co-written by and starring Billy Crystal as",
            "Billy Crystal",
        ),
        ("X is a 2011 film directed by Jean- Pierre Mocky.", "Jean- Pierre Mocky"),
        ("X is a 1922 film directed by Erich von Stroheim, starring", "Erich von Stroheim"),
        ("X is a 2012 Filipino drama film by Jose Javier Reyes.", None),
    ],
)
def test_the_director_is_read_from_the_film_passage(text: str, name: str | None) -> None:
    assert related_name(text, "director") == name


@pytest.mark.parametrize(
    ("text", "evidence"),
    [
        ("Other Film is a 1942 drama film.", True),  # the same year: a tie
        ("Other Film is a drama film.", False),  # no date to read
    ],
)
def test_dates_that_do_not_order_leave_the_answer_open(text: str, evidence: bool) -> None:
    other = {"id": "c", "title": "Other Film", "text": text}
    found = compare_options(
        "Which film came out first, The Mayor of 44th Street or Other Film?",
        ["The Mayor of 44th Street", "Other Film"],
        [FILM_B, other],
    )
    assert found is not None and found.answer is None and found.missing is None
    assert (found.evidence is not None) is evidence
    assert found.span_attributes()["setpoint.comparison"] == "year: dates not read or equal"


@pytest.mark.parametrize(
    ("text", "title", "attribute", "expected"),
    [
        (
            "Lee Zeldin( born January 30, 1980) is an attorney.",
            "Lee Zeldin",
            "birth",
            DateRead(1980, 1, 30),
        ),
        (
            "Kurt Szilier( born 11 January 1957) is a gymnast.",
            "Kurt Szilier",
            "birth",
            DateRead(1957, 1, 11),
        ),
        (
            "John Gunn (August 17, 1877 - November 15, 1956) was a pastor.",
            "John Gunn",
            "death",
            DateRead(1956, 11, 15),
        ),
        ("Ann Roe (1901–1988) was a painter.", "Ann Roe", "death", DateRead(1988)),
        ("Ann Roe (1901–1988) was a painter.", "Ann Roe", "birth", DateRead(1901)),
        (
            "Jo Ma( born 1950) is a singer who died on 2 May 2001.",
            "Jo Ma",
            "death",
            DateRead(2001, 5, 2),
        ),
        # a title that holds a year does not date the film
        ("2012: Ice Age is a 2011 disaster film.", "2012: Ice Age", "year", DateRead(2011)),
        # the lead gives no year: the release date later in the text does
        (
            "Angali Pangali is a Tamil film. It was released on 17 June 2016.",
            "Angali Pangali",
            "year",
            DateRead(2016, 6, 17),
        ),
        # a decade is not a year
        ("The band is a 1990s rock group.", "The band", "year", None),
        ("Jo Ma( born 1950) is a singer.", "Jo Ma", "death", None),
    ],
)
def test_the_date_asked_for_is_read_from_the_lead(
    text: str, title: str, attribute: str, expected: DateRead | None
) -> None:
    found = read_date(text, title, attribute)  # type: ignore[arg-type]
    if expected is None:
        assert found is None
    else:
        assert found is not None and (found.year, found.month, found.day) == (
            expected.year,
            expected.month,
            expected.day,
        )


def test_an_option_finds_its_passage_by_title_with_or_without_its_disambiguation() -> None:
    assert option_passage("Crime After Crime (Film)", [FILM_B, FILM_A]) is FILM_A
    assert option_passage("crime after crime", [FILM_B, FILM_A]) is FILM_A
    assert option_passage("Żołnierz Zwycięstwa", [{"id": "z", "title": "Żołnierz zwycięstwa"}])
    assert option_passage("Charles Babbage", [DISTRACTOR, ADA]) is None


def test_a_later_chunk_is_read_through_its_whole_passage() -> None:
    chunk = {"id": "babbage", "title": "Charles Babbage", "text": "He designed engines."}
    question = "Who was born first, Ada Lovelace or Charles Babbage?"
    options = ["Ada Lovelace", "Charles Babbage"]
    found = compare_options(question, options, [ADA, chunk])
    assert found is not None and found.answer is None  # the chunk holds no date
    whole = {"babbage": BABBAGE["text"]}
    found = compare_options(
        question, options, [ADA, chunk], whole_text=lambda p: whole.get(str(p["id"]))
    )
    assert found is not None and found.answer == "Charles Babbage"
