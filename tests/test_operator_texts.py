"""The operator's own words: a start-page text, footer links and a mail
disclaimer, per language, validated at start-up and never taken as markup."""

from __future__ import annotations

import html

import pytest

from app.settings import ConfigError

from .test_mail_contents import every_kind_of_mail

TEXTS = {
    "start_text": {
        "nl": "Welkom bij <het> portaal van Gemeente Voorbeeld.\nVragen? Bel 14 0592.", "en": "Welcome & <hello>.",
    },
    "footer_links": [
        {"label": {"nl": "Privacyverklaring", "en": "Privacy statement"},
         "url": {"nl": "https://www.gemeente.example/privacy", "en": "https://www.gemeente.example/en/privacy"}},
        {"label": {"nl": "Toegankelijkheidsverklaring", "en": "Accessibility statement"},
         "url": "https://www.gemeente.example/toegankelijkheid"},
        {"label": "Contact & <info>", "url": "https://www.gemeente.example/contact?a=1&b=2"},
    ],
    "mail_disclaimer": {
        "nl": "Dit bericht is alleen voor de geadresseerde <b>&</b>.\nOntving u het per abuis? Meld het ons.",
        "en": "This message is for the addressee only <b>&</b>.\nReceived it by mistake? Tell us.",
    },
}


@pytest.mark.parametrize("language", ["nl", "en"])
def test_start_text_and_footer_links_in_the_readers_language(make_app, language: str) -> None:
    app = make_app({"site": TEXTS})
    client = app.test_client()
    start = client.get("/", headers={"Accept-Language": language}).get_data(as_text=True)
    assert html.escape(TEXTS["start_text"][language], quote=False) in start
    other = "en" if language == "nl" else "nl"
    assert html.escape(TEXTS["start_text"][other], quote=False) not in start
    # The footer of every page, the start page and a wizard step alike.
    for page in (start, client.get("/help", headers={"Accept-Language": language}).get_data(as_text=True)):
        first, second, third = TEXTS["footer_links"]
        assert f'<a href="{first["url"][language]}">{first["label"][language]}</a>' in page
        assert f'<a href="{second["url"]}">{second["label"][language]}</a>' in page
        assert '<a href="https://www.gemeente.example/contact?a=1&amp;b=2">Contact &amp; &lt;info&gt;</a>' in page


def test_no_texts_configured_shows_none(app) -> None:
    page = app.test_client().get("/").get_data(as_text=True)
    assert "operator-text" not in page and "footer-links" not in page


@pytest.mark.parametrize("language", ["en", "nl"])
def test_every_mail_ends_with_the_disclaimer(make_app, mailbox, language: str) -> None:
    made = every_kind_of_mail(make_app, mailbox, language, {"site": {"mail_disclaimer": TEXTS["mail_disclaimer"]}})
    disclaimer = TEXTS["mail_disclaimer"][language]
    for mail in made.all():
        subject = mail.message["Subject"]
        text, markup = mail.text.replace("\r\n", "\n"), mail.html.replace("\r\n", "\n")
        assert text.rstrip().endswith(disclaimer), subject
        assert html.escape(disclaimer, quote=False) in markup and "<b>&</b>" not in markup, subject
        assert TEXTS["mail_disclaimer"]["en" if language == "nl" else "nl"] not in text, subject


@pytest.mark.parametrize(
    ("site", "message"),
    [
        ({"start_text": {"xx": "Hallo"}}, "site.start_text"),
        ({"mail_disclaimer": "Regel\x07"}, "site.mail_disclaimer: no control characters"),
        ({"mail_disclaimer": "x" * 2001}, "site.mail_disclaimer: at most 2000 characters"),
        ({"footer_links": [{"label": "Privacy", "url": "javascript:alert(1)"}]}, "site.footer_links[0].url"),
        (
            {"footer_links": [{"label": "Privacy", "url": {"nl": "https://a.example/p", "en": "/privacy"}}]},
            "site.footer_links[0].url",
        ),
        ({"footer_links": [{"label": {"nl": ""}, "url": "https://a.example/p"}]}, "site.footer_links[0].label"),
        ({"footer_links": [{"label": "Twee\nregels", "url": "https://a.example/p"}]}, "site.footer_links[0].label"),
        ({"footer_links": [{"label": "Privacy"}]}, "site.footer_links[0]"),
        ({"footer_links": [{"label": "x", "url": "https://a.example/"}] * 11}, "site.footer_links: at most 10"),
    ],
)
def test_operator_texts_are_validated(make_app, site: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_app({"site": site})



def test_a_language_without_its_own_text_reads_the_english_one() -> None:
    from app.settings import localized

    texts = {"nl": "Alleen naar de gemeente.", "en": "Only to the municipality."}
    assert localized(texts, "de") == "Only to the municipality."
    assert localized(texts, "nl") == "Alleen naar de gemeente."
    assert localized({"nl": "Alleen"}, "ar") == "Alleen"
