"""The operator's config: validated at start-up, errors name the key."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from app.settings import ConfigError, load_settings

from .live import free_port
from .settings_keys import config_keys

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_is_valid_and_documents_every_key() -> None:
    example = ROOT / "instance" / "config.example.toml"
    settings = load_settings(example)
    assert settings.password.patterns[0].matches("Agb12345678!")
    assert settings.password.patterns[0].hint_for("nl") == "Agb + uw AGB-code + !"
    text = example.read_text()
    arrays, keys = config_keys()
    for name in arrays:
        assert f"[[{name}]]" in text
    for section, key in keys:
        assert f"[{section}]" in text
        assert f"\n{key} = " in text or f"[[{section}.{key}]]" in text, key


def test_defaults_need_no_file() -> None:
    settings = load_settings(None)
    assert settings.transfer.max_total_bytes == 10 * 1024**3
    assert settings.verification.code_ttl_minutes == 15
    assert (settings.crypto.argon2_time_cost, settings.crypto.argon2_memory_kib, settings.crypto.argon2_parallelism) == (3, 65536, 4)


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ("[site]\nnmae = 'x'\n", "site.nmae: unknown key"),
        ("[sitee]\n", "sitee: unknown key"),
        ("[transfer]\nmax_total_bytes = 'veel'\n", "transfer.max_total_bytes"),
        ("[transfer]\nmax_total_bytes = true\n", "transfer.max_total_bytes"),
        ("[transfer]\ndefault_expiry_days = 40\n", "transfer.default_expiry_days"),
        ("[mail]\nbackend = 'pigeon'\n", "mail.backend"),
        ("[mail]\nsmtp_security = 'ssl'\n", "mail.smtp_security"),
        ("[mail]\nsmtp_username = 'u'\n", "mail.smtp_password"),
        ("[site]\nbase_url = 'portal.example.nl'\n", "site.base_url"),
        ("[site]\ndefault_language = 'fr'\n", "site.default_language"),
        ("[site]\nlanguages = ['en', 'de']\n", "site.default_language"),
        ("[site]\nlanguages = ['nl', 'fr']\n", "site.languages"),
        ("[site]\nlanguages = []\n", "site.languages"),
        ("[site]\nlanguages = ['nl', 'nl']\n", "site.languages"),
        ("[site]\ntimezone = 'Mars/Olympus'\n", "site.timezone"),
        ("[password]\nmodes = ['manual']\ndefault_mode = 'none'\n", "password.default_mode"),
        ("[password]\nmin_score = 5\n", "password.min_score"),
        ("[[password.patterns]]\nname = 'x'\nregex = '(['\n", "password.patterns[0].regex"),
        ("[[password.patterns]]\nname = 'x'\nregex = 'a'\nhint = { fr = 'x' }\n", "password.patterns[0].hint"),
        ("[verification]\nmax_attempts = 0\n", "verification.max_attempts"),
        ("[retention]\naudit_months = 0\n", "retention.audit_months: must be between"),
        ("[crypto]\nargon2_memory_kib = 1\n", "crypto.argon2_memory_kib"),
        ("[storage]\nbackend = 'ftp'\n", "storage.backend"),
        ("[storage]\nbackend = 's3'\n", "storage.s3_bucket"),
        ("[storage]\ns3_addressing_style = 'dns'\n", "storage.s3_addressing_style"),
        ("[storage]\ns3_endpoint_url = 's3.example.nl'\n", "storage.s3_endpoint_url"),
        ("[storage]\ns3_region = 'EU West'\n", "storage.s3_region"),
        ("[storage]\ns3_access_key_id = 'AKIA'\n", "storage.s3_secret_access_key"),
        ("[storage]\ns3_prefix = '/koerier/'\n", "storage.s3_prefix"),
        ("[site\n", "config.toml"),
    ],
)
def test_bad_values_stop_start_up_naming_the_key(tmp_path: Path, toml: str, names: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=r".*" + __import__("re").escape(names)):
        load_settings(path)


def test_app_reads_instance_config_and_env_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = tmp_path / "inst"
    instance.mkdir()
    (instance / "config.toml").write_text("[site]\nname = 'Gemeente Assen'\n")
    monkeypatch.setenv("KOERIER_INSTANCE_PATH", str(instance))
    monkeypatch.delenv("KOERIER_CONFIG", raising=False)
    monkeypatch.delenv("KOERIER_SECRET_KEY", raising=False)
    app = create_app()
    assert app.config["KOERIER"].site.name == "Gemeente Assen"
    # A secret key was generated into the instance folder, readable only by us.
    key_file = instance / "secret_key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert create_app().config["SECRET_KEY"] == app.config["SECRET_KEY"]

    other = tmp_path / "other.toml"
    other.write_text("[site]\nname = 'Elders'\n")
    monkeypatch.setenv("KOERIER_CONFIG", str(other))
    assert create_app().config["KOERIER"].site.name == "Elders"
    monkeypatch.setenv("KOERIER_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="KOERIER_CONFIG"):
        create_app()


def test_secret_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOERIER_SECRET_KEY", "x" * 40)
    monkeypatch.delenv("KOERIER_CONFIG", raising=False)
    app = create_app(instance_path=tmp_path / "inst")
    assert app.config["SECRET_KEY"] == "x" * 40
    assert not (tmp_path / "inst" / "secret_key").exists()


def test_gunicorn_stops_on_a_configuration_error(tmp_path: Path) -> None:
    """A worker that cannot start the app makes gunicorn stop, with the
    error: otherwise it would restart its workers for ever, and systemd
    would see a running service and never apply its restart rule."""
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.toml").write_text('[storage]\nbackend = "tape"\n')
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{free_port()}", "--no-control-socket", "wsgi:app"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={"PATH": "/usr/bin:/bin", "KOERIER_INSTANCE_PATH": str(instance)},
    )
    try:
        _, stderr = gunicorn.communicate(timeout=120)
    finally:
        # Workers and all, should it still run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gunicorn.pid, signal.SIGKILL)
    assert gunicorn.returncode != 0
    assert "Configuration error: storage.backend" in stderr


def test_a_database_that_does_not_answer_at_start_up_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.toml").write_text(f'[storage]\ndatabase_url = "postgresql+psycopg://koerier@127.0.0.1:{free_port()}/koerier"\n')
    refused = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "policy", "check"], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={"PATH": "/usr/bin:/bin", "KOERIER_INSTANCE_PATH": str(instance)},
    )
    assert refused.returncode == 3
    assert "Database: storage.database_url: " in refused.stderr and "Connection refused" in refused.stderr
    assert "Traceback" not in refused.stderr
