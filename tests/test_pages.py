"""The portal's own pages: help, branding, and the live password check."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from app.settings import ConfigError

from .walker import PASSWORD, Browser, Recipient, Sender, csrf_token, text_of


def test_help_page_in_both_languages(app) -> None:
    client = app.test_client()
    english = text_of(client.get("/help", headers={"Accept-Language": "en"}))
    assert "Sending files" in english and "Receiving files" in english
    assert "also ask for a one-time code after the password" in english
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


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids += [value or "" for name, value in attrs if name == "id"]


def repeated_ids(page: str) -> list[str]:
    parser = _Ids()
    parser.feed(page)
    return sorted({i for i in parser.ids if parser.ids.count(i) > 1})


def test_no_page_repeats_an_id(sender: Sender, app) -> None:
    """A walk found id="csrf_token" twice on the pages with two forms (the
    code and "Send the code again"; a Remove for each file): an id names one
    element, or a label or a link to it finds another. Every page of the
    wizard, the download and My transfers, with every form it can show."""
    pages: dict[str, str] = {}

    def visit(path: str, who: Browser = sender, name: str = "") -> str:
        pages[name or path] = who.get(path).get_data(as_text=True)
        return pages[name or path]

    visit("/send/")
    sender.personal()
    visit("/send/verify")
    sender.verify()
    visit("/send/recipients")
    sender.recipients("anna@gemeente.example")
    sender.files([("a.txt", b"a"), ("b.txt", b"b")], action="upload")
    visit("/send/files")
    sender.files(action="next")
    visit("/send/options")
    sender.options(recipient_language="en")
    visit("/send/notification")
    # With the note on a text kept through a change of language, and its own form.
    sender.notification(body="Eigen tekst", action="back")
    sender.options(recipient_language="nl")
    assert "Use the proposed text" in visit("/send/notification", name="notification with own text")
    pages["summary"] = sender.notification().get_data(as_text=True)
    status = re.search(r'href="(?:https://[^/"]+)?(/send/status/[^"]+)"', pages["summary"]).group(1)
    visit(status, name="status")
    visit(status + "/withdraw", name="withdraw")
    visit("/mine/")
    visit(re.search(r'href="(/mine/[^"/]+)"', pages["/mine/"]).group(1), name="my transfer")

    anna = Recipient(app)
    access_id = re.search(r"/download/\?id=([\w-]+)", sender.mailbox.last_to("anna@gemeente.example").text).group(1)
    visit(f"/download/?id={access_id}", anna, "download")
    anna.unlock(access_id, PASSWORD)
    visit("/download/transfer", anna)
    reply = re.search(r'href="(?:https://[^/"]+)?(/send/reply/[^"]+)"', pages["/download/transfer"]).group(1)
    visit(reply, anna, "reply")

    # My transfers in a browser that has not verified the address yet.
    other = Browser(app)
    visit("/mine/verify", other)
    assert other.submit("/mine/verify", {"email": "jan@zorg.example"}).status_code == 302
    visit("/mine/verify/code", other)

    repeated = {name: ids for name, page in pages.items() if (ids := repeated_ids(page))}
    assert not repeated
