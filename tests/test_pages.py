"""The portal's own pages: help, branding, and the live password check."""

from __future__ import annotations

import pytest

from app.settings import ConfigError

from .walker import Sender, csrf_token, text_of


def test_help_page_in_both_languages(app) -> None:
    client = app.test_client()
    english = text_of(client.get("/help", headers={"Accept-Language": "en"}))
    assert "Sending files" in english and "Receiving files" in english
    dutch = text_of(client.get("/help", headers={"Accept-Language": "nl"}))
    assert "Bestanden versturen" in dutch and "Bestanden ontvangen" in dutch
    assert 'href="/help"' in client.get("/").get_data(as_text=True)


def test_accent_colour_and_logo_from_config(make_app, tmp_path) -> None:
    instance = tmp_path / "branded"
    instance.mkdir()
    (instance / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    app = make_app({"site": {"accent_color": "#7a1f5c", "logo": "logo.svg"}}, instance=instance)
    client = app.test_client()
    assert "--accent: #7a1f5c" in client.get("/theme.css").get_data(as_text=True)
    assert '<img class="logo" src="/branding/logo" alt="">' in client.get("/").get_data(as_text=True)
    logo = client.get("/branding/logo")
    assert logo.mimetype == "image/svg+xml"
    assert "sandbox" in logo.headers["Content-Security-Policy"]  # its script never runs in our origin


def test_no_logo_configured_is_not_found(app) -> None:
    assert app.test_client().get("/branding/logo").status_code == 404


@pytest.mark.parametrize(
    ("site", "message"),
    [
        ({"accent_color": "#ffcc00"}, "contrast"),
        ({"accent_color": "blue"}, "#rrggbb"),
        ({"logo": "../secret_key"}, "instance folder"),
        ({"logo": "logo.exe"}, "instance folder"),
    ],
)
def test_branding_is_validated(make_app, site, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app({"site": site})


def _at_options(sender: Sender) -> str:
    sender.personal()
    sender.verify()
    sender.recipients("anna@gemeente.example")
    sender.files([("verslag.pdf", b"%PDF report")])
    return csrf_token(sender.get("/send/options").get_data(as_text=True))


def test_live_password_check_matches_the_form(sender: Sender) -> None:
    token = _at_options(sender)

    def check(password: str) -> dict:
        r = sender.post("/send/options/strength", json={"password": password}, headers={"X-CSRFToken": token})
        assert r.status_code == 200
        return r.json

    weak = check("welkom01")
    assert weak["label"] == "Weak" and not weak["acceptable"] and weak["problem"]
    own_name = check("JanDeVries2024")
    assert not own_name["acceptable"]
    strong = check("Zonnebloem-Kade-1987!")
    assert strong["acceptable"] and strong["label"] == "Strong" and strong["problem"] == ""
    # The same verdict as the form.
    assert sender.options(password="welkom01", password_repeat="welkom01").status_code == 422
    assert sender.options().status_code == 302


def test_live_password_check_needs_a_draft_and_the_token(app, sender: Sender) -> None:
    stranger = app.test_client()
    assert stranger.post("/send/options/strength", json={"password": "x"}, base_url="https://portal.example.nl").status_code == 403
    token = _at_options(sender)
    assert sender.post("/send/options/strength", json={"password": "x"}, headers={"X-CSRFToken": "nope"}).status_code == 403
    assert sender.post("/send/options/strength", json={"pw": 1}, headers={"X-CSRFToken": token}).status_code == 400
