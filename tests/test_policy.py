"""The operator's rules: who may send what to whom."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import policy
from app.settings import load_settings

from .walker import Sender, csrf_token, text_of

ROOT = Path(__file__).resolve().parent.parent

MUNICIPAL = {
    "policy": {"default": "deny", "default_reason": {"nl": "Niet toegestaan.", "en": "Not allowed."}},
    "rules": [
        {"name": "staff", "senders": ["*@gemeente.example", "*@*.gemeente.example"], "max_expiry_days": 60},
        {"name": "zorg-klein", "senders": ["*@zorg.example"], "recipients": ["*@gemeente.example"],
         "max_files": 2, "password_modes": ["manual"], "expose_filenames": "never"},
        {"name": "inbound", "recipients": ["*@gemeente.example", "*@*.gemeente.example"],
         "max_total_bytes": 1000, "allowed_extensions": ["pdf", "jpg"], "retrieval_notice": "always"},
        {"name": "blocked", "recipients": ["*@evil.example"], "action": "deny", "reason": {"nl": "Geblokkeerd.", "en": "Blocked."}},
    ],
}


@pytest.mark.parametrize(
    ("pattern", "address", "expected"),
    [
        ("*", "a@b.nl", True),
        ("anna@gemeente.example", "Anna@Gemeente.Example", True),
        ("anna@gemeente.example", "anna2@gemeente.example", False),
        ("*@gemeente.example", "x@gemeente.example", True),
        ("*@gemeente.example", "x@sub.gemeente.example", False),
        ("*@*.gemeente.example", "x@sub.gemeente.example", True),
        ("*@*.gemeente.example", "x@gemeente.example", False),
        ("*@*.gemeente.example", "x@notgemeente.example", False),
        ("*@gemeente.example", "x@gemeente.example.evil", False),
    ],
)
def test_patterns(pattern: str, address: str, expected: bool) -> None:
    assert policy.matches(pattern, address) is expected


@pytest.mark.parametrize(
    ("sender", "recipient", "rule"),
    [
        ("anna@gemeente.example", "piet@elders.example", "staff"),  # staff first, even to evil.example
        ("anna@gemeente.example", "x@evil.example", "staff"),
        ("jan@zorg.example", "anna@gemeente.example", "zorg-klein"),  # before the broader inbound rule
        ("jan@zorg.example", "anna@sub.gemeente.example", "inbound"),
        ("kees@burger.example", "anna@gemeente.example", "inbound"),
        ("kees@burger.example", "x@evil.example", "blocked"),
        ("kees@burger.example", "piet@elders.example", None),  # default
    ],
)
def test_first_match_wins(sender: str, recipient: str, rule: str | None) -> None:
    settings = load_settings(None, MUNICIPAL)
    found = policy.rule_for(settings, sender, recipient)
    assert (found.name if found else None) == rule


def test_refusals_name_each_address_and_reason() -> None:
    settings = load_settings(None, MUNICIPAL)
    decision = policy.decide(settings, "kees@burger.example", ["anna@gemeente.example", "x@evil.example", "p@elders.example"], "nl")
    assert not decision.allowed
    assert [(r.address, r.rule, r.reason) for r in decision.refusals] == [
        ("x@evil.example", "blocked", "Geblokkeerd."),
        ("p@elders.example", "(default)", "Niet toegestaan."),
    ]


def test_strictest_combination_across_recipients() -> None:
    settings = load_settings(None, MUNICIPAL)
    # jan@zorg.example -> anna@ matches zorg-klein, -> x@sub. matches inbound.
    limits = policy.decide(settings, "jan@zorg.example", ["anna@gemeente.example", "x@sub.gemeente.example"], "en").limits
    assert limits.max_files == 2  # zorg-klein
    assert limits.max_total_bytes == 1000  # inbound
    assert limits.password_modes == ("manual",)
    assert limits.allowed_extensions == frozenset({"pdf", "jpg"})
    assert limits.expose_filenames == "never"
    assert limits.retrieval_notice == "always"
    assert limits.max_expiry_days == 30
    assert set(limits.rules) == {"zorg-klein", "inbound"}


def test_strictest_of_toggles_and_message_rules() -> None:
    base = policy.base_limits(load_settings(None))
    a = policy.apply(base, load_settings(None, {"rules": [{"name": "a", "expose_filenames": "on", "confidential_message": "required", "edit_notification": False}]}).rules[0])
    b = policy.apply(base, load_settings(None, {"rules": [{"name": "b", "expose_filenames": "always", "confidential_message": "forbidden", "allowed_extensions": ["*"]}]}).rules[0])
    merged = policy.strictest(a, b)
    assert merged.expose_filenames == "on"
    assert merged.confidential_message == "forbidden"
    assert merged.edit_notification is False
    assert merged.allowed_extensions == base.allowed_extensions


def test_no_common_password_mode_is_not_allowed() -> None:
    settings = load_settings(None, {"rules": [
        {"name": "a", "recipients": ["*@a.example"], "password_modes": ["none"]},
        {"name": "b", "recipients": ["*@b.example"], "password_modes": ["manual"]},
    ]})
    decision = policy.decide(settings, "s@x.example", ["p@a.example", "q@b.example"], "en")
    assert decision.refusals == () and not decision.allowed


def _walk_to_files(sender: Sender, to: str) -> None:
    assert sender.personal().status_code == 302
    assert sender.verify().status_code == 302
    assert sender.recipients(to).status_code == 302


def test_recipients_step_names_refused_addresses(make_app, mailbox) -> None:
    app = make_app(MUNICIPAL)
    sender = Sender(app, mailbox)
    sender.person.email = "kees@burger.example"
    sender.personal()
    sender.verify()
    r = sender.recipients("anna@gemeente.example", cc="x@evil.example")
    assert r.status_code == 422
    page = text_of(r)
    assert "You cannot send to x@evil.example: Blocked." in page
    assert "anna@gemeente.example" not in page.split("Please check the following")[1].split("</ul>")[0]
    assert "anna@gemeente.example" in page  # kept in the field


def test_later_steps_apply_the_rules_limits(make_app, mailbox) -> None:
    app = make_app(MUNICIPAL)
    sender = Sender(app, mailbox)
    sender.person.email = "jan@zorg.example"
    _walk_to_files(sender, "anna@gemeente.example")
    r = sender.files([("a.pdf", b"1"), ("b.pdf", b"2"), ("c.pdf", b"3"), ("d.exe", b"4")], action="upload")
    page = text_of(r)
    assert "“c.pdf” was not added: a transfer can hold at most 2 files." in page
    assert "“d.exe” is not allowed: files of this type cannot be sent." in page
    assert sender.files([]).status_code == 302
    options = sender.get("/send/options").get_data(as_text=True)
    assert 'value="manual"' in options and 'value="none"' not in options and 'value="generate"' not in options
    # File names in mails are "never" here: the box is shown off and cannot be ticked.
    box = re.search(r'<input[^>]*id="expose_filenames"[^>]*>', options).group(0)
    assert "disabled" in box and "checked" not in box
    assert sender.options(expose_filenames="y").status_code == 302
    summary = sender.notification()
    assert "The file names are not shown in the notification mails." in text_of(summary)
    assert "a.pdf" not in mailbox.last_to("anna@gemeente.example").text


def test_changed_recipients_recheck_files(make_app, mailbox) -> None:
    config = {"rules": [{"name": "strict", "recipients": ["*@strict.example"], "max_files": 1}]}
    app = make_app(config)
    sender = Sender(app, mailbox)
    _walk_to_files(sender, "anna@gemeente.example")
    assert sender.files([("a.pdf", b"1"), ("b.pdf", b"2")]).status_code == 302
    assert sender.recipients("p@strict.example").status_code == 302
    r = sender.files([])
    assert r.status_code == 422 and "“b.pdf” was not added: a transfer can hold at most 1 files." in text_of(r)


def test_required_and_forbidden_message(make_app, mailbox) -> None:
    app = make_app({"rules": [
        {"name": "req", "recipients": ["*@req.example"], "confidential_message": "required"},
        {"name": "forb", "recipients": ["*@forb.example"], "confidential_message": "forbidden"},
    ]})
    sender = Sender(app, mailbox)
    _walk_to_files(sender, "a@req.example")
    r = sender.files([("a.pdf", b"1")])
    assert "Please write a confidential message for these recipients." in text_of(r)
    assert sender.files([], message="Hier is het bericht").status_code == 302
    sender.recipients("a@forb.example")
    r = sender.files([], message="Toch een bericht")
    assert "A confidential message is not allowed for these recipients." in text_of(r)


def test_fixed_notification_text(make_app, mailbox) -> None:
    app = make_app({"transfer": {"edit_notification": False}})
    sender = Sender(app, mailbox)
    _walk_to_files(sender, "anna@gemeente.example")
    sender.files([("a.pdf", b"1")])
    sender.options()
    assert "readonly" in sender.get("/send/notification").get_data(as_text=True)
    assert sender.notification(subject="Iets anders", body="Eigen tekst").status_code == 200
    mail = mailbox.last_to("anna@gemeente.example")
    assert mail.message["Subject"] == "Files (1) from Jan de Vries" and "Eigen tekst" not in mail.text


def test_policy_is_checked_again_when_the_transaction_starts(make_app, mailbox, tmp_path) -> None:
    """Options chosen under generous rules cannot be committed under stricter ones."""
    instance = tmp_path / "shared"
    sender = Sender(make_app(instance=instance), mailbox)
    _walk_to_files(sender, "anna@gemeente.example")
    sender.files([("a.pdf", b"1")])
    sender.options(password_mode="none", password=None, password_repeat=None)
    page = sender.get("/send/notification").get_data(as_text=True)
    # The operator tightens the rules while the sender is on the last step;
    # the browser's cookies go along to the restarted portal.
    stricter = make_app({"password": {"modes": ["manual"], "default_mode": "manual"}}, instance=instance)
    sender.restart_on(stricter)
    mailbox.clear()
    r = sender.post("/send/notification", data={"csrf_token": csrf_token(page), "subject": "Dossier", "body": "Tekst"})
    assert r.status_code == 302 and r.location.endswith("/send/options")
    assert mailbox.to("anna@gemeente.example") == []
    with stricter.app_context():
        from app import db
        from app.models import Transfer

        assert db.session().query(Transfer).count() == 0


def _flask(*args: str, config: str | None = None, instance: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "KOERIER_INSTANCE_PATH": str(instance)}
    if config is not None:
        (instance / "config.toml").write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_policy_check_and_explain(tmp_path: Path) -> None:
    instance = tmp_path / "inst"
    instance.mkdir()
    example = (ROOT / "instance" / "config.example.toml").read_text()
    checked = _flask("policy", "check", config=example, instance=instance)
    assert checked.returncode == 0, checked.stderr
    assert "to-the-municipality" in checked.stdout and "Configuration is valid: 3 rules." in checked.stdout
    explained = _flask("policy", "explain", "jan@zorg.example", "anna@gemeente.example", instance=instance)
    assert "rule 'to-the-municipality'" in explained.stdout and "allowed:" in explained.stdout
    denied = _flask("policy", "explain", "jan@zorg.example", "piet@elders.example", instance=instance)
    assert "rule 'everyone-else'" in denied.stdout and "only send files to the municipality" in denied.stdout
    assert "portal 'jeugdzorg' (/to/jeugdzorg) to jeugdzorg@gemeente.example: max 1,073,741,824 bytes, 20 files" in checked.stdout
    assert "refused" not in checked.stdout

    # An upload portal whose recipient the rules refuse to the public (any sender whom no rule names).
    wrong = "\n[[portals]]\nslug = 'verkeerd'\ntitle = 'Loket'\nrecipients = ['loket@elders.example']\n"
    refused = _flask("policy", "check", config=example + wrong, instance=instance)
    assert refused.returncode == 1
    assert "portal 'verkeerd' (/to/verkeerd) to loket@elders.example\n" in refused.stdout
    assert "  refused for any sender: loket@elders.example (rule 'everyone-else')" in refused.stdout
    # Staff (a sender pattern of the rules) may, by their own rule.
    assert "senders matching *@gemeente.example" not in refused.stdout
    assert "The rules refuse any sender whom no rule names at 1 of 2 portals: verkeerd." in refused.stdout


def test_policy_check_on_a_broken_config_names_the_key(tmp_path: Path) -> None:
    instance = tmp_path / "inst"
    instance.mkdir()
    result = _flask("policy", "check", config="[[rules]]\nname = 'x'\naction = 'maybe'\n", instance=instance)
    assert result.returncode != 0
    assert "rules[0].action" in result.stderr
