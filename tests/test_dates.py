"""Dates read day, month, year, with a 24-hour clock, in every language, on
pages and in mails; the date picker offers only days the server accepts."""

from __future__ import annotations

import re
from datetime import date, timedelta

from app import db, purge
from app.clock import utcnow

from .test_wizard_validation import walk_to
from .walker import PASSWORD, Recipient, Sender, text_of

MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
US_STYLE = re.compile(rf"\b({MONTHS}) \d{{1,2}}\b")
TWELVE_HOUR = re.compile(r"\d{1,2}:\d{2}(:\d{2})?\s*(AM|PM)\b", re.I)
MOMENT = re.compile(r"\d{1,2} [A-Za-z]+ \d{4}, ([01]\d|2[0-3]):[0-5]\d")


def _expiry_day(sender: Sender) -> date:
    page = sender.get("/send/options").get_data(as_text=True)
    return date.fromisoformat(re.search(r'name="expires_on"[^>]*value="([^"]+)"', page).group(1))


def _walk(sender: Sender, language: str) -> tuple[date, object]:
    sender.get(f"/lang/{language}?next=/send/")
    walk_to(sender, "options")
    day = _expiry_day(sender)
    sent = sender.finish(notify_retrieval="y", recipient_language=language)
    return day, sent


def test_english_dates_are_day_month_year_with_a_24_hour_clock(sender: Sender, app, mailbox) -> None:
    day, sent = _walk(sender, "en")
    written = f"{day.day} {day.strftime('%B')} {day.year}"
    recipient = Recipient(app)
    recipient.unlock(sent.access_id("anna@gemeente.example"), PASSWORD)
    transfer_page = text_of(recipient.get("/download/transfer"))
    recipient.get(recipient.file_links()["a.txt"])
    with app.app_context():
        purge.run(lambda: db.new_session(app), app.extensions["koerier"], utcnow() + timedelta(minutes=10))
    notice = mailbox.last_to(sender.person.email)
    assert "has downloaded" in notice.message["Subject"]
    status_link = re.search(r"/send/status/[\w-]+", sent.summary.get_data(as_text=True)).group(0)
    status_page = text_of(sender.get(status_link))
    texts = {
        "summary": text_of(sent.summary), "download page": transfer_page, "status page": status_page,
        "notification": sent.notifications["anna@gemeente.example"].text, "retrieval notice": notice.text,
    }
    for where, text in texts.items():
        assert not US_STYLE.search(text) and not TWELVE_HOUR.search(text), (where, text)
    for where in ("summary", "download page", "status page", "notification"):
        assert written in texts[where], where
    for where in ("download page", "status page", "retrieval notice"):
        assert MOMENT.search(texts[where]), where


def test_dutch_dates_keep_their_form(sender: Sender) -> None:
    day, sent = _walk(sender, "nl")
    months = "januari februari maart april mei juni juli augustus september oktober november december".split()
    written = f"{day.day} {months[day.month - 1]} {day.year}"
    assert written in text_of(sent.summary) and written in sent.notifications["anna@gemeente.example"].text


def test_the_date_picker_offers_what_the_senders_rule_allows(make_app, mailbox) -> None:
    rule = {"name": "kort", "recipients": ["*@gemeente.example"], "max_expiry_days": 3}
    sender = Sender(make_app({"rules": [rule]}), mailbox)
    walk_to(sender, "options")
    page = sender.get("/send/options").get_data(as_text=True)
    picker = re.search(r'<input[^>]*name="expires_on"[^>]*>', page).group(0)
    earliest = date.fromisoformat(re.search(r'min="([^"]+)"', picker).group(1))
    latest = date.fromisoformat(re.search(r'max="([^"]+)"', picker).group(1))
    assert latest - earliest == timedelta(days=3) and earliest <= _expiry_day(sender) <= latest
    assert sender.options(expires_on=(earliest - timedelta(days=1)).isoformat()).status_code == 422
    assert sender.options(expires_on=(latest + timedelta(days=1)).isoformat()).status_code == 422
    assert sender.options(expires_on=latest.isoformat()).status_code == 302


def test_german_days_are_ordinals(app) -> None:
    from datetime import date

    from flask_babel import force_locale

    from app import dates

    with app.test_request_context(), force_locale("de"):
        assert dates.day(date(2026, 12, 3)) == "3. Dezember 2026"
    with app.test_request_context(), force_locale("nl"):
        assert dates.day(date(2026, 12, 3)) == "3 december 2026"
