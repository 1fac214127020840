"""Dates in a passage's lead: a birth date, a death date, the year of a film or an album.

Encyclopaedia-style passages give a person's dates in the opening parenthesis ("Ada
Lovelace (10 December 1815 – 27 November 1852) was …") and a work's year in the first
sentence ("… is a 1953 film"), or its release date further on ("It was released on 11 May
2018"). ``read_date`` reads the one asked for at the precision the text gives (a year, a
month, a day); ``DateRead.before`` orders two dates only where that precision allows.
The layouts were read off the 2WikiMultihopQA *train* split.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Attribute", "DateRead", "lifespan_order", "read_date"]

Attribute = Literal["birth", "death", "year", "lifespan"]

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_YEARS = r"1\d{3}|20\d{2}"
# "February 27, 1975" | "6 October 1988" | "March 1950" | "1953" (not "1950s").
_DATE = re.compile(
    rf"\b(?:(?P<month>{_NAMES})\.?\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>{_YEARS})"
    rf"|(?P<day2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<month2>{_NAMES})\.?,?\s+(?P<year2>{_YEARS})"
    rf"|(?P<month3>{_NAMES})\.?,?\s+(?P<year3>{_YEARS})"
    rf"|(?P<year4>{_YEARS}))(?!\d)(?!s\b)",
    re.IGNORECASE,
)
# A sentence ends at ". X" (searched from the lead's 60th character: "translit. Asabani").
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]])\.\s+(?=[A-Z])")
_EVENT = re.compile(
    r"\b(?:released|premiered|published|founded|established|formed|opened|aired|launched)"
    r"(?:\s+(?:on|in))?\s+",
    re.IGNORECASE,
)
# A dash between two dates in the lead's parenthesis: "(April 9, 1818 – December 17, 1913)".
_DASH = re.compile(r"\s*(?:–|—|-|−|\bto\b)\s*")


@dataclass(frozen=True)
class DateRead:
    """A date read from a passage: year, and month and day where it gives them."""

    year: int
    month: int | None = None
    day: int | None = None
    text: str = ""

    def before(self, other: DateRead) -> bool | None:
        """True or False where the two dates order at the precision both give; None: a tie.

        Example:
            >>> DateRead(1975, 2, 27).before(DateRead(1975, 3))
            True
            >>> DateRead(1975).before(DateRead(1975, 3, 1)) is None
            True
        """
        if self.year != other.year:
            return self.year < other.year
        if self.month is None or other.month is None or self.month == other.month:
            if self.month == other.month and self.day is not None and other.day is not None:
                return None if self.day == other.day else self.day < other.day
            return None
        return self.month < other.month


def _parse(match: re.Match[str]) -> DateRead:
    g = match.groupdict()
    year = g["year"] or g["year2"] or g["year3"] or g["year4"]
    month = g["month"] or g["month2"] or g["month3"]
    day = g["day"] or g["day2"]
    return DateRead(
        int(year),
        _MONTHS[month.lower().rstrip(".")] if month else None,
        int(day) if day else None,
        match.group(0),
    )


def _lead(text: str, title: str) -> str:
    # The first sentence, without the title (a title may hold a year: "2012: Ice Age").
    # A sentence ends at ". X" after its first 60 characters ("translit. Asabani" is inside).
    end = _SENTENCE_END.search(text, 60)
    first = text[: end.start() + 1] if end else text
    for name in {title, re.sub(r"\s*\([^)]*\)\s*$", "", title)}:
        if name:
            first = first.replace(name, " ")
    return first


def read_date(text: str, title: str, attribute: Attribute) -> DateRead | None:
    """The date of ``attribute`` in a passage's lead, or None where the lead does not give it.

    Example:
        >>> lead = "Mary Lightner( April 9, 1818 – December 17, 1913) was a member of ..."
        >>> read_date(lead, "Mary Lightner", "death").year
        1913
        >>> read_date("Kurt Szilier( born 11 January 1957) is a gymnast.", "Kurt Szilier", "birth")
        DateRead(year=1957, month=1, day=11, text='11 January 1957')
        >>> read_date("2012: Ice Age is a 2011 disaster film.", "2012: Ice Age", "year").year
        2011
        >>> read_date("Zvezdopad is an album. It was released on 20 March 2002.", "Zvezdopad", "year")
        DateRead(year=2002, month=3, day=20, text='20 March 2002')
    """
    lead = _lead(text, title)
    if attribute == "year":
        found = next(_DATE.finditer(lead), None)
        first = _parse(found) if found else None
        # "... It was released on 11 May 2018": the event's own date, anywhere in the text.
        event = _EVENT.search(text)
        dated = next(_DATE.finditer(text, event.end()), None) if event else None
        said = _parse(dated) if dated and dated.start() - event.end() < 12 else None  # type: ignore[union-attr]
        if first is None or (said is not None and said.year == first.year and said.day):
            return said
        return first
    span = re.search(r"\(([^()]*\d{3,4}[^()]*)\)", lead)
    inside = span.group(1) if span else ""
    if attribute == "birth":
        born = re.search(r"\b(?:born|b\.)\s*", lead)
        if born:
            found = next(_DATE.finditer(lead, born.end()), None)
            if found and found.start() - born.end() < 40:
                return _parse(found)
        found = next(_DATE.finditer(inside), None)
        return _parse(found) if found else None
    died = re.search(r"\b(?:died|d\.)\s*(?:on\s+|in\s+)?", lead)
    if died:
        found = next(_DATE.finditer(lead, died.end()), None)
        if found and found.start() - died.end() < 40:
            return _parse(found)
    dates = list(_DATE.finditer(inside))
    if len(dates) >= 2 and _DASH.search(inside[dates[0].end() : dates[1].start()] or ""):
        return _parse(dates[1])
    return None


def _days(birth: DateRead, death: DateRead) -> tuple[int, int]:
    """The shortest and longest a life between two dates can have been, in days."""

    def bounds(d: DateRead) -> tuple[dt.date, dt.date]:
        if d.month is None:
            return dt.date(d.year, 1, 1), dt.date(d.year, 12, 31)
        if d.day is None:
            last = (dt.date(d.year + d.month // 12, d.month % 12 + 1, 1) - dt.timedelta(1)).day
            return dt.date(d.year, d.month, 1), dt.date(d.year, d.month, last)
        return dt.date(d.year, d.month, d.day), dt.date(d.year, d.month, d.day)

    (b0, b1), (d0, d1) = bounds(birth), bounds(death)
    return (d0 - b1).days, (d1 - b0).days


def lifespan_order(
    first: tuple[DateRead, DateRead], second: tuple[DateRead, DateRead]
) -> bool | None:
    """True: the first life was shorter, whatever the dates leave open; None: not sure."""
    (lo1, hi1), (lo2, hi2) = _days(*first), _days(*second)
    if hi1 < lo2:
        return True
    if hi2 < lo1:
        return False
    return None
