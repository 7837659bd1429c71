"""docs/NTA7516.md and its example configuration: the example is a valid
configuration that `flask policy check` passes, the document shows it as it
is, and every setting the document names exists."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import load_settings

from .settings_keys import config_keys
from .test_policy import _flask

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "nta7516.example.toml"
DOC = ROOT / "docs" / "NTA7516.md"


def test_the_example_loads_and_passes_the_policy_check(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLE)
    assert settings.transfer.recipient_verification == "email" and settings.sms.backend == "http"
    assert settings.scan.backend == "clamd" and settings.policy.default == "deny"
    instance = tmp_path / "inst"
    instance.mkdir()
    checked = _flask("policy", "check", config=EXAMPLE.read_text(), instance=instance)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration is valid: 3 rules." in checked.stdout
    assert "recipient code: sms or stronger, sender chooses; generated password by SMS" in checked.stdout


def test_the_document_shows_the_example_as_it_is() -> None:
    [shown] = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert shown == EXAMPLE.read_text()


def test_every_setting_the_document_names_exists() -> None:
    _, keys = config_keys()
    named = re.findall(r"`([a-z_]+)\.([a-z0-9_]+)(?: = [^`]+)?`", DOC.read_text())
    assert len(named) > 40
    unknown = sorted({f"{section}.{key}" for section, key in named} - {f"{section}.{key}" for section, key in keys})
    assert unknown == []
    readme = (ROOT / "README.md").read_text()
    assert "[docs/NTA7516.md](docs/NTA7516.md)" in readme
