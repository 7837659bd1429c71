"""A no-password link's access key never travels in a URL the server receives.

It sits in the link's fragment, which browsers keep to themselves; the page
posts it. Without scripts the recipient types it into the page's form.
Access logs, proxies and browser history therefore never hold it, and a
log plus a copy of the database opens nothing.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from .walker import BASE, Recipient, Sender, csrf_token, text_of

NO_PASSWORD = {"password_mode": "none", "password": None, "password_repeat": None}


def _link_form(page: str) -> dict[str, str]:
    assert 'name="key"' in page, "no access key field on the page"
    return {"csrf_token": csrf_token(page)}


def test_the_key_is_only_in_the_fragment_of_the_mailed_link(sender: Sender) -> None:
    sent = sender.send(to="anna@gemeente.example", **NO_PASSWORD)
    link = urlsplit(sent.link("anna@gemeente.example"))
    key = parse_qs(link.fragment)["key"][0]
    assert len(key) >= 43 and parse_qs(link.query).keys() == {"id"}
    mail = sent.notifications["anna@gemeente.example"]
    # Every link in the mail, text and HTML, keeps the key out of its path and query.
    for url in re.findall(r"https://portal\.example\.nl[^\s\"<>]*", mail.text + mail.html):
        before_fragment = url.split("#", 1)[0]
        assert key not in before_fragment, url
    # For a browser without scripts, the mail also gives the key to type.
    assert f"Access key: {key}" in mail.text


def test_without_scripts_the_key_is_typed_into_the_page(sender: Sender, app) -> None:
    sent = sender.send(to="anna@gemeente.example", **NO_PASSWORD)
    access_id, key = sent.access_id("anna@gemeente.example"), sent.link_key("anna@gemeente.example")
    recipient = Recipient(app)
    page = recipient.get(f"/download/?id={access_id}")
    assert "Access key" in text_of(page)
    form = _link_form(page.get_data(as_text=True))

    wrong = recipient.post("/download/", data={**form, "transaction_id": access_id, "key": key[::-1]})
    assert wrong.status_code == 403
    body = text_of(wrong)
    assert "This transaction ID and access key do not match" in body
    # The ID typed stays in the form; the key, a secret, is not echoed back.
    assert access_id in body and key[::-1] not in body

    opened = recipient.post("/download/", data={**form, "transaction_id": access_id, "key": key})
    assert opened.status_code == 302 and opened.location.endswith("/download/transfer")
    assert "verslag.pdf" in text_of(recipient.get("/download/transfer"))


def test_neither_password_nor_key_is_asked_for_again(sender: Sender, app) -> None:
    sent = sender.send(to="anna@gemeente.example", **NO_PASSWORD)
    recipient = Recipient(app)
    page = recipient.get("/download/").get_data(as_text=True)
    r = recipient.post("/download/", data={**_link_form(page), "transaction_id": sent.access_id("anna@gemeente.example")})
    assert r.status_code == 422 and "Please enter the password, or the access key from the email" in text_of(r)


def test_links_with_the_key_in_the_query_still_open(sender: Sender, app) -> None:
    """Mails sent before the key moved into the fragment keep working."""
    sent = sender.send(to="anna@gemeente.example", **NO_PASSWORD)
    access_id, key = sent.access_id("anna@gemeente.example"), sent.link_key("anna@gemeente.example")
    recipient = Recipient(app)
    landing = recipient.get(f"/download/?id={access_id}&key={key}")
    assert landing.status_code == 200 and "Open transfer" in text_of(landing)
    page = landing.get_data(as_text=True)
    field = re.search(r'<input[^>]*name="key"[^>]*>', page).group(0)
    assert 'type="hidden"' in field and f'value="{key}"' in field
    r = recipient.post("/download/", data={**_link_form(page), "transaction_id": access_id, "key": key})
    assert r.status_code == 302
    assert recipient.get(f"{BASE}/download/transfer").status_code == 200
