"""Dates and times as the portal writes them: day, month, year and a 24-hour
clock, in every language, on pages and in mails alike.

CLDR's own formats differ per language (English "December 2, 2026 at
11:04 PM"), and a reader who meets "12/2/26" cannot tell the day from the
month. So the patterns are fixed here; the language gives only the month
names, its digits and how it joins a date to a time. Times are shown in
``site.timezone`` (Flask-Babel's default time zone).
"""

from __future__ import annotations

from datetime import date, datetime

from flask_babel import format_date, format_datetime, get_locale

DAY = "d MMMM y"
# German writes the day as an ordinal: "2. Dezember 2026".
DAYS = {"de": "d. MMMM y"}
TIME = "HH:mm"


def _day_pattern() -> str:
    return DAYS.get(get_locale().language, DAY)


def day(value: date | datetime) -> str:
    """Like "2 December 2026"; a moment counts as the day it is in the portal's time zone."""
    return format_date(value, _day_pattern())


def moment(value: datetime) -> str:
    """Like "2 December 2026, 23:04", date and time joined as the language joins them."""
    joined: str = get_locale().datetime_formats["medium"]
    return joined.format(format_datetime(value, TIME), format_date(value, _day_pattern()))
