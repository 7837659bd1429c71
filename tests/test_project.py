"""The project's own promises: CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

from .settings_keys import config_keys

ROOT = Path(__file__).resolve().parent.parent


def _block_after(heading: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {heading}", 1)[1]
    return re.search(r"```sh\n(.+?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_test_command() -> None:
    command = _block_after("Run the tests")
    assert "pytest" in command
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_documents_every_config_key() -> None:
    readme = (ROOT / "README.md").read_text()
    arrays, keys = config_keys()
    for name in arrays:
        assert f"`[[{name}]]`" in readme
    for section, key in keys:
        assert f"`{section}.{key}`" in readme, f"{section}.{key}"
