"""Trivial variants of weak Dutch passwords stay weak: separators, long
symbol runs, a year typed with O, repeated pieces and words; good
passphrases and generated passwords still pass."""

from __future__ import annotations

import pytest

from app import password_policy
from app.settings import Password

from .test_password_strength import Checker

# The sender is Jan de Vries (jan@zorg.example) on the portal "Koerier".
GUESSABLE = ["Jan de Vries", "jan@zorg.example", "Koerier"]

VARIANTS = [
    # Found accepted by the attack review.
    "Welkom 2024!!", "Koerier 2026!!", "Welkom2O24!!", "Welkom_2024_!!", "Welkom2024!!!!!", "Zomer2026!!!!!",
    "#Zomer#2026#", "Jan2026!!!!!",
    # More of the same kind.
    "Gemeente 2024!!", "Welkom-2024!!", "Welkom.2024!", "Welkom2024??!!", "Welkom2024#!?", "Welkom2024!!x!",
    "Welkom20242024!!", "Welkom2024!!!2024", "Welkom24!!!!", "Gemeente2024!!Gemeente", "Zomer 2o26 !!",
    "2024 Welkom!!", "Koerier_2026_!!", "Herfst2026!!!!!!!!", "Jan de Vries 2026!",
]
STRONG = [
    "Zonnebloem-Kade-1987!", "blauwe-tulp-zingt-zacht", "Hooiberg73&Molenwiek", "paard fiets regen lamp",
    "Kikker_Bureau_Wolk_77", "Molenwiek.Sneeuw.42!", "Vlinder 1987 Appelboom!", "Eikenboom#2024#Rivier",
    "gR8#kQ2!vL9@",
]


def assess(password: str) -> password_policy.Assessment:
    return password_policy.assess(password, Password(), GUESSABLE)


@pytest.mark.parametrize("password", VARIANTS)
def test_variants_of_weak_passwords_are_weak(password: str) -> None:
    verdict = assess(password)
    assert not verdict.acceptable and verdict.score <= 2 and verdict.warning, (password, verdict)


@pytest.mark.parametrize("password", STRONG)
def test_good_passphrases_still_pass(password: str) -> None:
    verdict = assess(password)
    assert verdict.acceptable and verdict.score == 4, (password, verdict)


def test_generated_passwords_still_pass() -> None:
    for _ in range(50):
        password = password_policy.generate(Password())
        assert assess(password).score == 4, password


def test_the_options_step_refuses_the_variants_and_keeps_good_ones(make_app, mailbox) -> None:
    checker = Checker(make_app({"site": {"name": "Koerier"}}), mailbox)
    for password in VARIANTS[:8]:
        verdict = checker.live(password)
        assert not verdict["acceptable"] and verdict["label"] != "Strong", (password, verdict)
    r = checker.form("Welkom 2024!!")
    assert r.status_code == 422 and 'value="Welkom 2024!!"' in r.get_data(as_text=True)
    assert checker.form("Vlinder 1987 Appelboom!").status_code == 302
