"""Seven languages, the operator's choice of them, and Arabic right to left."""

from __future__ import annotations

import re

from .test_password_strength import Checker
from .walker import Browser, Sender, text_of

ALL = {"nl": "Nederlands", "en": "English", "de": "Deutsch", "pl": "Polski", "tr": "Türkçe", "uk": "Українська", "ar": "العربية"}


def test_the_language_choice_names_every_language_in_itself(app) -> None:
    page = Browser(app).get("/download/").get_data(as_text=True)
    choice = page[page.index('<details class="languages">') : page.index("</details>")]
    links = re.findall(r'<a href="([^"]+)" lang="(\w+)" hreflang="\2" dir="(\w+)"( aria-current="true")?>([^<]+)</a>', choice)
    assert [(lang, name) for _, lang, _, _, name in links] == list(ALL.items())
    assert [lang for _, lang, _, current, _ in links if current] == ["en"]
    assert {lang: direction for _, lang, direction, _, _ in links}["ar"] == "rtl"
    # Each link comes back to the page it was chosen on.
    assert all(href.endswith("next=/download/?") for href, *_ in links)


def test_arabic_pages_are_right_to_left(app) -> None:
    browser = Browser(app)
    browser.get("/lang/ar?next=/")
    page = browser.get("/download/").get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in page
    assert "رقم المعاملة" in page  # "Transaction ID"


def test_the_operator_chooses_the_languages_offered(make_app) -> None:
    app = make_app({"site": {"languages": ["de", "en", "tr"], "default_language": "de"}})
    browser = Browser(app)
    browser.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "nl-NL,nl;q=0.9"
    page = browser.get("/").get_data(as_text=True)
    # Dutch is not offered: the default language answers a Dutch browser.
    assert '<html lang="de" dir="ltr">' in page
    assert re.findall(r'hreflang="(\w+)"', page) == ["de", "en", "tr"]
    assert browser.get("/lang/nl?next=/").status_code == 404
    assert browser.get("/lang/tr?next=/").status_code == 302
    assert '<html lang="tr"' in browser.get("/").get_data(as_text=True)
    # A Ukrainian browser gets Ukrainian where it is offered, by its main language.
    other = Browser(make_app({"site": {"languages": ["nl", "uk"]}}))
    other.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "uk-UA,uk;q=0.9,en;q=0.5"
    assert '<html lang="uk"' in other.get("/").get_data(as_text=True)


def test_one_language_needs_no_choice(make_app) -> None:
    page = Browser(make_app({"site": {"languages": ["nl"]}})).get("/").get_data(as_text=True)
    assert '<html lang="nl"' in page and "languages" not in page


def test_the_recipient_language_offers_the_offered_languages(make_app, mailbox) -> None:
    sender = Sender(make_app({"site": {"languages": ["nl", "en", "ar"]}}), mailbox)
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([("a.txt", b"a")])
    page = sender.get("/send/options").get_data(as_text=True)
    options = re.findall(r'<option[^>]*value="(\w+)"[^>]*>([^<]+)</option>', page)
    assert options == [("nl", "Nederlands"), ("en", "English"), ("ar", "العربية")]
    assert '<option dir="rtl" lang="ar" value="ar">' in page
    # German exists, but this operator does not offer it.
    r = sender.options(recipient_language="de")
    assert r.status_code != 302 and "Not a valid choice" in text_of(r)


def test_the_recipients_mail_goes_out_in_the_chosen_language(sender: Sender) -> None:
    german = sender.send(recipient_language="de").notifications["anna@gemeente.example"]
    assert german.message["Subject"] == "Dateien (1) von Jan de Vries"
    assert "Sehr geehrte Damen und Herren," in german.text and "Transaktions-ID" in german.text
    assert '<html lang="de" dir="ltr">' in german.html and "Dateien herunterladen" in german.html
    # The sender's own receipt stays in the sender's language.
    assert "Your transfer to 1 recipient has been sent" in sender.mailbox.last_to(sender.person.email).message["Subject"]

    arabic = sender.send(recipient_language="ar").notifications["anna@gemeente.example"]
    assert arabic.message["Subject"] == "ملفات (1) من Jan de Vries"
    assert "رقم المعاملة" in arabic.text and "تحية طيبة،" in arabic.text
    # Isolated, the phone number keeps its order in a right-to-left line.
    assert "\u20660592 123456\u2069" in arabic.text and "\u20660592 123456\u2069" in arabic.html
    assert '<html lang="ar" dir="rtl">' in arabic.html and '<body dir="rtl"' in arabic.html
    # Label cells keep their gap towards the value, which sits on their left.
    assert "padding-left:12px" in arabic.html and "padding-right" not in arabic.html


def test_frequent_words_of_every_language_are_easy_to_guess(make_app, mailbox) -> None:
    """A resident builds a password on a word of their own language: zxcvbn
    alone took these (German, Polish, Turkish, Ukrainian, Arabic) for strong."""
    checker = Checker(make_app(), mailbox)
    for password in ("Geburtstag2025!", "Rodzina2024!!", "Sevgilim2024!!", "Україна2024!!", "حبيبي2024!!"):
        verdict = checker.live(password)
        assert not verdict["acceptable"] and verdict["warning"], (password, verdict)
