"""Every configuration key, as the documentation tests check them."""

from __future__ import annotations

import dataclasses

from app.settings import Settings


def config_keys() -> tuple[list[str], list[tuple[str, str]]]:
    """The array-of-tables sections (``[[rules]]``), and (section, key) of every other key."""
    defaults = Settings()
    arrays, keys = [], []
    for section in dataclasses.fields(Settings):
        value = getattr(defaults, section.name)
        if isinstance(value, list):
            arrays.append(section.name)
        else:
            keys += [(section.name, key.name) for key in dataclasses.fields(value)]
    return arrays, keys
