"""Command-line tools: ``flask --app wsgi <command>``."""

from __future__ import annotations

from pathlib import Path

import click
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po, write_po
from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "translations"


@click.group("translations")
def translations() -> None:
    """Keep the nl and en catalogs in step with the code."""


def _pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


@translations.command("update")
def update() -> None:
    """Extract messages, merge them into every catalog, fill English, compile."""
    pot = CATALOGS / "messages.pot"
    _pybabel(
        "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l", "-k", "N_", "--no-location", "--sort-output",
        "--project=Koerier", "-o", str(pot), str(ROOT),
    )
    _pybabel("update", "-i", str(pot), "-d", str(CATALOGS), "--ignore-obsolete", "--no-fuzzy-matching")
    # msgids are English, so the English catalog is the identity; filling it
    # keeps it complete and makes a missing msgid visible in review.
    english = CATALOGS / "en" / "LC_MESSAGES" / "messages.po"
    with open(english, "rb") as fh:
        catalog = read_po(fh, locale="en")
    for message in catalog:
        if message.id:
            message.string = message.id
    with open(english, "wb") as fh:
        write_po(fh, catalog, omit_header=False, sort_output=True, include_lineno=False)
    compile_catalogs()
    untranslated = missing("nl")
    click.echo(f"{len(untranslated)} Dutch messages still to translate" + (":" if untranslated else "."))
    for msgid in untranslated:
        click.echo(f"  {msgid}")


@translations.command("compile")
def compile_command() -> None:
    """Compile the .po catalogs into the .mo files the app reads."""
    compile_catalogs()


def compile_catalogs() -> None:
    _pybabel("compile", "-d", str(CATALOGS), "--use-fuzzy")


def missing(language: str) -> list[str]:
    with open(CATALOGS / language / "LC_MESSAGES" / "messages.po", "rb") as fh:
        catalog = read_po(fh)
    out = []
    for message in catalog:
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.id and not all(strings):
            out.append(message.id if isinstance(message.id, str) else message.id[0])
    return out


def init_app(app: Flask) -> None:
    app.cli.add_command(translations)
