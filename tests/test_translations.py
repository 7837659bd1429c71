"""Every catalog is complete and keeps the placeholders, and the compiled catalogs are current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from app.settings import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "translations"
# Every catalog on disk, so that a language added there but not to the code is checked too.
CATALOG_LANGUAGES = sorted(p.parent.parent.name for p in CATALOGS.glob("*/LC_MESSAGES/messages.po"))
# What must come through translation unchanged: %(name)s placeholders and HTML tags.
KEPT = re.compile(r"%\(\w+\)[sd]|</?[a-z][^>]*>")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every msgid in the code and templates as they are now."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l", "-k", "N_", "-o", str(pot), str(ROOT)]
    )
    with open(pot, "rb") as fh:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}


def _key(value: object) -> object:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _catalog(language: str):  # type: ignore[no-untyped-def]
    with open(CATALOGS / language / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=language)


def test_every_language_has_a_catalog() -> None:
    assert CATALOG_LANGUAGES == sorted(LANGUAGES)


@pytest.mark.parametrize("language", CATALOG_LANGUAGES)
def test_every_msgid_is_translated(extracted: set[str], language: str) -> None:
    catalog = _catalog(language)
    translated = {
        (m.id if isinstance(m.id, str) else m.id[0])
        for m in catalog
        if m.id and all(m.string if isinstance(m.string, tuple) else (m.string,))
    }
    missing = sorted(extracted - translated)
    assert not missing, f"run `flask --app wsgi translations update` and translate in {language}: {missing}"
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"{language}: fuzzy translations, check them and drop the mark: {fuzzy}"


@pytest.mark.parametrize("language", CATALOG_LANGUAGES)
def test_compiled_catalog_matches_the_po_file(language: str) -> None:
    with open(CATALOGS / language / "LC_MESSAGES" / "messages.mo", "rb") as fh:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(fh) if m.id}
    source = {_key(m.id): _key(m.string) for m in _catalog(language) if m.id}
    assert compiled == source, "run `flask --app wsgi translations compile`"


@pytest.mark.parametrize("language", CATALOG_LANGUAGES)
def test_placeholders_and_plural_forms_survive_translation(language: str) -> None:
    catalog = _catalog(language)
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if isinstance(message.id, tuple):
            assert len(strings) == catalog.num_plurals, f"{language}: {catalog.num_plurals} plural forms for {message.id}"
        wanted = sorted(set(KEPT.findall(" ".join(ids))))
        for string in strings:
            assert sorted(set(KEPT.findall(string))) == wanted, f"{language}: {message.id!r} -> {string!r}"


# The words users know for the mail a recipient gets (Cryptshare's): the
# pages say "kennisgevingsmail" and "notification mail", never a second name beside it.
NOT_THE_TERM = {"en": re.compile(r"notification e-?mail", re.I), "nl": re.compile(r"notificatie", re.I)}


@pytest.mark.parametrize("language", sorted(NOT_THE_TERM))
def test_the_notification_mail_has_one_name(language: str) -> None:
    other = NOT_THE_TERM[language]
    texts = [
        form for m in _catalog(language) if m.id
        for form in (m.string if isinstance(m.string, tuple) else (m.string,))
    ]
    assert not [t for t in texts if other.search(t)]

def test_language_switch_is_remembered_and_accept_language_decides_first(app) -> None:
    client = app.test_client()
    assert "Verzenden" in client.get("/", headers={"Accept-Language": "nl-NL,nl;q=0.9"}).get_data(as_text=True)
    assert ">Send<" in client.get("/", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    r = client.get("/lang/nl?next=/download/", headers={"Accept-Language": "en-US"})
    assert r.status_code == 302 and r.location == "/download/"
    page = client.get("/download/", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert "Transactie-ID" in page and '<html lang="nl" dir="ltr">' in page


def test_language_switch_is_no_open_redirect(app) -> None:
    client = app.test_client()
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        assert client.get(f"/lang/en?next={target}").location == "/"


def test_english_says_email_as_the_glossary_does(extracted: set[str]) -> None:
    """The team's glossary ("Email address") and the field's own label say
    "email"; a walk found "E-mail address verification" and a few dozen more
    "e-mail"s beside them. The msgids are the English text."""
    assert sorted(m for m in extracted if "e-mail" in m.lower()) == []
