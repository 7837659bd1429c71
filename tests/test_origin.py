"""Where a browser may post from: the portal's own address, and on a
developer's machine whatever loopback address it was opened at."""

from __future__ import annotations

import logging

import pytest

from .walker import csrf_token, text_of

PERSONAL = {"name": "Jan de Vries", "phone": "0592 123456", "email": "jan@zorg.example"}


def english(app):  # type: ignore[no-untyped-def]
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def post_personal(app, at: str, origin: str | None = None):  # type: ignore[no-untyped-def]
    """The first step, opened at ``at`` and sent with the ``Origin`` a browser there sends."""
    client = english(app)
    token = csrf_token(client.get("/send/", base_url=at).get_data(as_text=True))
    return client.post(
        "/send/", base_url=at, data={"csrf_token": token, **PERSONAL}, headers={"Origin": origin or at}
    )


@pytest.mark.parametrize("at", ["http://127.0.0.1:5000", "http://localhost:5000", "http://[::1]:5000", "http://127.0.0.1:8123"])
def test_the_built_in_address_works_at_any_loopback_address(make_app, at: str) -> None:
    # `flask run` prints 127.0.0.1:5000, the built-in site.base_url says localhost:5000.
    app = make_app({"site": {"base_url": None}})
    assert app.config["KOERIER"].site.base_url == "http://localhost:5000"
    r = post_personal(app, at)
    assert r.status_code == 302 and r.location.endswith("/send/verify"), text_of(r)


@pytest.mark.parametrize(
    ("at", "origin"),
    [
        # Another site.
        ("http://127.0.0.1:5000", "https://evil.example"),
        # Another program on the same machine, on another port.
        ("http://127.0.0.1:5000", "http://127.0.0.1:6000"),
        ("http://localhost:5000", "http://127.0.0.1:5000"),
        # DNS rebinding: a public name that resolves to 127.0.0.1 is no loopback origin.
        ("http://rebind.example:5000", "http://rebind.example:5000"),
    ],
)
def test_a_loopback_portal_takes_posts_from_no_other_page(make_app, at: str, origin: str) -> None:
    app = make_app({"site": {"base_url": None}})
    assert post_personal(app, at, origin).status_code == 403


def test_a_configured_portal_opened_elsewhere_says_where_it_is(make_app, caplog) -> None:
    app = make_app()  # site.base_url = https://portal.example.nl
    with caplog.at_level(logging.WARNING, logger="app.web"):
        r = post_personal(app, "http://127.0.0.1:5000")
    assert r.status_code == 403
    page = text_of(r)
    assert (
        "This page was opened at http://127.0.0.1:5000, but this portal's address is https://portal.example.nl. "
        "Please open the portal at https://portal.example.nl and try again." in page
    )
    assert 'href="https://portal.example.nl/send/"' in page
    assert any("site.base_url" in record.getMessage() and "http://127.0.0.1:5000" in record.getMessage() for record in caplog.records)


def test_a_script_refused_for_its_address_gets_the_reason_to_show(make_app) -> None:
    app = make_app()
    r = english(app).post(
        "/send/uploads", base_url="http://127.0.0.1:5000",
        headers={"Origin": "http://127.0.0.1:5000", "Tus-Resumable": "1.0.0", "Upload-Length": "5"},
    )
    assert r.status_code == 403
    assert r.json["error"].startswith("This page was opened at http://127.0.0.1:5000, but this portal's address is")


def test_the_log_of_a_refused_post_holds_no_secret_of_its_path(make_app, caplog) -> None:
    """An upload request's link carries its token in the path: the warning names the route instead."""
    app = make_app()
    secret = "Zt3x9Qk" * 6
    client = english(app)
    token = csrf_token(client.get("/send/", base_url="http://127.0.0.1:5000").get_data(as_text=True))
    with caplog.at_level(logging.WARNING, logger="app.web"):
        r = client.post(
            f"/send/request/{secret}", base_url="http://127.0.0.1:5000", headers={"Origin": "http://127.0.0.1:5000"},
            data={"csrf_token": token, **PERSONAL},
        )
    assert r.status_code == 403
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "site.base_url" in logged and "/send/request/<token>" in logged and secret not in logged
