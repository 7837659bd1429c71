"""Weak Dutch passwords are weak: zxcvbn alone knew only English words and
scored ``Welkom2024!!`` or the portal's own name plus a year as strong."""

from __future__ import annotations

import pytest

from app.password_policy import generate
from app.settings import Password

from .test_wizard_validation import walk_to
from .walker import PASSWORD, Sender, csrf_token, text_of

WEAK = [
    "Welkom2024!!", "Gemeente2026!", "Koerier2026!", "Zomer2026!!",
    "Wachtwoord1!", "Voorjaar2025!", "Feyenoord2024!", "Oktober2025!", "Herfst#2024", "2024Welkom!", "Geheim2025!!",
]
STRONG = [PASSWORD, "blauwe-tulp-zingt-zacht", "Hooiberg73&Molenwiek"]
TOO_EASY = "This password is too easy to guess."


class Checker:
    """A sender at the options step, asking the live check as the page's script does."""

    def __init__(self, app, mailbox) -> None:  # type: ignore[no-untyped-def]
        self.sender = Sender(app, mailbox)
        walk_to(self.sender, "options")
        self.token = csrf_token(self.sender.get("/send/options").get_data(as_text=True))

    def live(self, password: str) -> dict:
        r = self.sender.post("/send/options/strength", json={"password": password}, headers={"X-CSRFToken": self.token})
        assert r.status_code == 200
        return r.json

    def form(self, password: str):  # type: ignore[no-untyped-def]
        return self.sender.options(password=password, password_repeat=password)


@pytest.fixture
def checker(make_app, mailbox) -> Checker:
    # The default site name, which "Koerier2026!" is built on.
    return Checker(make_app({"site": {"name": "Koerier"}}), mailbox)


@pytest.mark.parametrize("password", WEAK)
def test_weak_dutch_passwords_are_refused_live_and_by_the_form(checker: Checker, password: str) -> None:
    verdict = checker.live(password)
    assert not verdict["acceptable"] and verdict["label"] == "Weak" and verdict["warning"], verdict
    r = checker.form(password)
    assert r.status_code == 422
    page = text_of(r)
    assert TOO_EASY in page and f'value="{password}"' in page  # kept for correcting


def test_strong_passphrases_and_generated_passwords_still_pass(checker: Checker) -> None:
    for password in [*STRONG, *(generate(Password()) for _ in range(5))]:
        verdict = checker.live(password)
        assert verdict["acceptable"] and verdict["label"] == "Strong", (password, verdict)
    assert checker.form("blauwe-tulp-zingt-zacht").status_code == 302
    assert checker.sender.options(password_mode="generate", password=None, password_repeat=None).status_code == 302


def test_the_site_name_and_the_operators_words_count_as_guessable(make_app, mailbox) -> None:
    plain = Checker(make_app(), mailbox)
    assert plain.live("Quorvexa2026!!")["acceptable"] and plain.live("Zwurpelstad2026!")["acceptable"]

    app = make_app({"site": {"name": "Quorvexa"}, "password": {"guessable_words": ["Gemeente Zwurpelstad"]}})
    checker = Checker(app, mailbox)
    for password in ("Quorvexa2026!!", "Zwurpelstad2026!"):
        verdict = checker.live(password)
        assert not verdict["acceptable"]
        assert verdict["warning"] == "Your own name or email address, and words about this portal, are easy to guess."
        assert checker.form(password).status_code == 422


def test_the_advice_is_in_the_senders_language(checker: Checker) -> None:
    checker.sender.get("/lang/nl?next=/send/options")
    verdict = checker.live("Welkom2024!!")
    assert verdict["label"] == "Zwak"
    assert verdict["warning"] == "Dit woord komt heel vaak voor in wachtwoorden."
    assert verdict["suggestions"] == ["Voeg nog een of twee woorden toe. Ongebruikelijke woorden zijn beter."]
