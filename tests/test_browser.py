"""End to end in a real browser: Debian's chromium driven by Playwright,
against gunicorn on loopback, with mail read from the aiosmtpd server.

Every page visited is checked with axe-core (no serious or critical
violations) and must not log a console error (a script blocked by the CSP
would). Screenshots of each step land in test-artifacts/screenshots/
(from the embedded setup).
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright
from sqlalchemy import select, update

from app import db
from app.clock import utcnow
from app.models import DownloadGrant, StoredFile, Upload
from app.upload_limits import RETRY_AFTER_SECONDS, UploadLease

from .clamd import EICAR, FOUND_AS, ClamdServer
from .conftest import Setup
from .live import ROOT, DroppingProxy, free_port, random_file, wait_for
from .mailbox import Mailbox
from .rawhttp import Held
from .walker import Recipient, Sender

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "Zonnebloem-Kade-1987!"
MiB = 1024 * 1024
PDF = ROOT / "tests" / "browser" / "verslag.pdf"
# The upload portal ([[portals]]) that the server of the `portal` fixture offers.
YOUTH_CARE = {
    "slug": "jeugdzorg",
    "title": {"nl": "Stukken sturen aan Jeugdzorg", "en": "Send documents to Youth care"},
    "intro": {
        "nl": "Stuur hier de stukken voor uw gesprek.\nWij nemen daarna contact met u op.",
        "en": "Send the documents for your meeting here.",
    },
    "recipients": ["jeugdzorg@gemeente.example"],
    "max_files": 3,
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install chromium (see README, Run the tests)")
    if not AXE.exists():
        pytest.fail("axe-core is not installed: npm ci --prefix tests/browser (see README, Run the tests)")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            # Root in a container needs --no-sandbox; the rest keeps chromium
            # from calling home on a machine with no way out.
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


class Visit:
    """One browser session: pages are checked and photographed as they come."""

    photograph = True

    def __init__(self, context: BrowserContext, folder: str, axe: bool = True) -> None:
        self.context = context
        self.axe = axe
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.shots = SHOTS / folder
        if self.photograph:
            self.shots.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def photo(self, name: str, page: Page | None = None, full_page: bool = False) -> None:
        """A screenshot of a moment between checks."""
        if self.photograph:
            (page or self.page).screenshot(path=self.shots / f"{name}.png", full_page=full_page)

    def _console(self, message) -> None:  # type: ignore[no-untyped-def]
        # A page that shows a refusal answers with its status (422, 403, …),
        # which chromium logs as a failed load of the document itself.
        document = message.text.startswith("Failed to load resource") and message.location.get("url") == self.page.url
        if message.type == "error" and not document:
            self.errors.append(message.text)

    def check(self, name: str) -> None:
        """axe-core on the page as it is now, the console, and a screenshot."""
        page = self.page
        # Every script and style the page loads is in. Not "networkidle", which
        # waits out half a second of quiet on every page: what the page fetches
        # later (the password's strength, an upload) each test waits for itself.
        page.wait_for_load_state("load")
        self.count += 1
        self.photo(f"{self.count:02d}-{name}", full_page=True)
        assert not self.errors, f"{name}: console errors {self.errors}"
        if not self.axe:
            return
        # evaluate() is not subject to the page's CSP, which would refuse an added script.
        if not page.evaluate("typeof axe !== 'undefined'"):
            page.evaluate(AXE.read_text())
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"{name}: {bad}"


@pytest.fixture(autouse=True)
def photographs(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Screenshots are for people to look at: the embedded setup's. The
    distributed one shows the same pages, and would race it to write the same files."""
    monkeypatch.setattr(Visit, "photograph", setup.name == "embedded")


@pytest.fixture
def portal(make_live):  # type: ignore[no-untyped-def]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app, server = make_live({"site": {"base_url": base}, "portals": [YOUTH_CARE]}, port=port)
    app.config["LIVE_SERVER"] = server
    return app, base


def new_visit(browser: Browser, folder: str, locale: str = "en-GB") -> Visit:
    context = browser.new_context(locale=locale, accept_downloads=True, viewport={"width": 1280, "height": 900})
    return Visit(context, folder)


def send_personal_and_verify(visit: Visit, mailbox: Mailbox, name: str, email: str, labels: dict[str, str]) -> None:
    page = visit.page
    page.get_by_label(labels["name"]).fill(name)
    page.get_by_label(labels["phone"]).fill("0592 123456")
    page.get_by_label(labels["email"], exact=True).fill(email)
    page.get_by_role("button", name=labels["next"]).click()
    expect(page.get_by_label(labels["code"])).to_be_visible()
    visit.check("verify")
    page.get_by_label(labels["code"]).fill(mailbox.code_for(email))
    page.get_by_role("button", name=labels["verify"]).click()


EN = {"name": "Name", "phone": "Phone", "email": "Email address", "next": "Next", "code": "Verification code", "verify": "Verify"}


def to_files_step(visit: Visit, mailbox: Mailbox, base: str) -> None:
    """An English sender, verified, sending to anna@gemeente.example: at the files step."""
    visit.page.goto(base + "/send/")
    send_personal_and_verify(visit, mailbox, "Jan de Vries", "jan@zorg.example", EN)
    visit.page.get_by_label("To").fill("anna@gemeente.example")
    visit.page.get_by_role("button", name="Next").click()


def start_with_manual_password(page: Page) -> None:
    """From the files step to the summary, protected by PASSWORD."""
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Start transaction").click()
    expect(page.get_by_role("heading", name="The transaction is complete")).to_be_visible()


def test_send_download_and_reply_in_english(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path) -> None:
    app, base = portal
    source = tmp_path / "dossier.zip"
    expected = random_file(source, 50 * MiB)
    sender = new_visit(browser, "send-en")
    page = sender.page

    page.goto(base + "/")
    sender.check("start")
    page.get_by_role("link", name="Send").click()
    sender.check("personal")
    send_personal_and_verify(sender, mailbox, "Jan de Vries", "jan@zorg.example", EN)

    expect(page.get_by_role("heading", name="Recipients")).to_be_visible()
    sender.check("recipients")
    page.get_by_label("To").fill("anna@gemeente.example")
    page.get_by_role("button", name="Next").click()

    expect(page.get_by_role("heading", name="Message and files")).to_be_visible()
    sender.check("files")
    # A slow line, so that progress, speed and time left (a few seconds in) can be seen.
    cdp = sender.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 5 * MiB})
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Add files / Browse").click()
    chooser.value.set_files([source, PDF])
    item = page.locator(".upload", has_text="dossier.zip")
    expect(item.locator(".upload-status")).to_contain_text("/s", timeout=20_000)
    expect(item.locator(".upload-status")).to_contain_text("left")
    assert 0 < float(item.locator("progress").get_attribute("value") or 0) < 50 * MiB
    sender.photo("files-uploading")
    page.get_by_label("Confidential message").fill("Het dossier, zoals besproken.")
    # "Next" waits for the upload, and then goes on by itself.
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Next continues by itself once all files are uploaded.")).to_be_visible()
    sender.photo("files-next-waits")
    expect(page.get_by_role("heading", name="Send options")).to_be_visible(timeout=60_000)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    sender.check("options")
    page.get_by_label("Enter password manually").check()
    page.get_by_label("Password", exact=True).press_sequentially("welkom01", delay=20)
    feedback = page.locator("#strength-live")
    expect(feedback).to_contain_text("Password strength: Weak")
    sender.check("options-weak-password")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password", exact=True).press("End")
    page.get_by_label("Password", exact=True).type(" ")
    page.get_by_label("Password", exact=True).press("Backspace")
    expect(feedback).to_contain_text("Password strength: Strong")
    page.get_by_label("Repeat password").fill(PASSWORD[:-1])
    page.get_by_label("Repeat password").type(PASSWORD[-1])
    expect(page.locator("#password-match")).to_have_text("The two passwords match.")
    sender.check("options-strong-password")
    page.get_by_role("button", name="Next").click()

    expect(page.get_by_role("heading", name="Notification mail")).to_be_visible()
    sender.check("notification")
    page.get_by_role("button", name="Start transaction").click()
    expect(page.get_by_role("heading", name="The transaction is complete")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Copy the transaction ID"))).to_be_visible()
    sender.check("summary")

    # The recipient types the transaction ID from the mail on the download page.
    access_id = mailbox.access_id_for("anna@gemeente.example")
    mail = mailbox.last_to("anna@gemeente.example")
    assert access_id in mail.text.replace("?id=" + access_id, "")  # also written out for typing
    recipient = new_visit(browser, "download-en")
    page = recipient.page
    page.goto(base + "/")
    page.get_by_role("link", name="Download").click()
    recipient.check("download-start")
    page.get_by_label("Transaction ID").fill(access_id.lower())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Het dossier, zoals besproken.")).to_be_visible()
    recipient.check("download-transfer")
    # Chrome's PDF viewer opens the preview (it would not in a sandboxed document).
    with recipient.context.expect_page() as opened:
        page.get_by_role("link", name="Preview verslag.pdf").click()
    opened.value.wait_for_load_state("load", timeout=15_000)
    if recipient.photograph:
        opened.value.wait_for_timeout(1500)  # only so that the screenshot shows the rendered page
    recipient.photo("preview-pdf", opened.value)
    opened.value.close()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download dossier.zip").click()
    saved = tmp_path / "downloaded.zip"
    download.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == expected

    page.get_by_role("link", name="Reply securely").click()
    expect(page.get_by_text("Your reply goes to Jan de Vries (jan@zorg.example)")).to_be_visible()
    recipient.check("reply-confirm")
    page.get_by_role("button", name="Start the reply").click()
    recipient.check("reply-personal")
    expect(page.get_by_label("Email address", exact=True)).to_have_value("anna@gemeente.example")
    send_personal_and_verify(recipient, mailbox, "Anna Jansen", "anna@gemeente.example", EN)
    expect(page.get_by_label("To")).to_have_value("jan@zorg.example")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Confidential message").fill("Ontvangen, dank u.")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Generate password").check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Subject")).to_have_value(re.compile(r"^Re: "))
    page.get_by_role("button", name="Start transaction").click()
    expect(page.get_by_role("button", name="Copy password")).to_be_visible()
    recipient.check("reply-summary")
    assert mailbox.last_to("jan@zorg.example").message["Subject"].startswith("Re: ")

    # Back to the first sender: the status page shows the download; then withdraw.
    page = sender.page
    page.get_by_role("link", name="Status of your transfer").click()
    expect(page.get_by_role("cell", name=re.compile("dossier.zip"))).to_be_visible()
    sender.check("status")
    page.get_by_role("link", name="Withdraw transfer").click()
    sender.check("withdraw-confirm")
    page.get_by_role("button", name="Withdraw transfer").click()
    expect(page.get_by_role("heading", name="The transfer has been withdrawn")).to_be_visible()
    sender.check("withdrawn")


NL = {"name": "Naam", "phone": "Telefoon", "email": "E-mailadres", "next": "Volgende", "code": "Verificatiecode", "verify": "Verifiëren"}


def start_in_dutch_with_a_generated_password(visit: Visit) -> None:
    """From the files step to the summary, in Dutch, protected by a generated password."""
    page = visit.page
    page.get_by_role("button", name="Volgende").click()
    page.get_by_label("Wachtwoord genereren").check()
    visit.check("options")
    page.get_by_role("button", name="Volgende").click()
    visit.check("notification")
    page.get_by_role("button", name="Transactie starten").click()
    expect(page.get_by_role("heading", name="De transactie is voltooid")).to_be_visible()


def test_send_in_dutch_on_a_phone(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path) -> None:
    app, base = portal
    context = browser.new_context(locale="en-GB", viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    visit = Visit(context, "send-nl-phone")
    page = visit.page
    page.goto(base + "/")
    page.get_by_text("Language: English").click()  # the language choice opens
    page.get_by_role("link", name="Nederlands").click()
    expect(page.get_by_role("heading", name="Veilig bestanden uitwisselen")).to_be_visible()
    visit.check("start")
    page.get_by_role("link", name="Verzenden").click()
    # An empty form: the errors are announced and the first field gets the focus.
    page.get_by_role("button", name="Volgende").click()
    expect(page.get_by_role("alert")).to_contain_text("Voer uw naam in.")
    expect(page.get_by_label("Naam")).to_be_focused()
    expect(page.get_by_label("Naam")).to_have_attribute("aria-invalid", "true")
    visit.errors.clear()  # the 422 answer, which the console reports
    visit.check("personal-errors")
    send_personal_and_verify(visit, mailbox, "Jan de Vries", "jan@zorg.example", NL)
    visit.check("recipients")
    page.get_by_label("Aan").fill("anna@gemeente.example")
    page.get_by_role("button", name="Volgende").click()
    source = tmp_path / "verslag.pdf"
    random_file(source, 300_000)
    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    page.locator("#picker").set_input_files(source)
    expect(page.locator(".upload-status")).to_have_text("Geüpload", timeout=30_000)
    assert fits(page)  # the step indicator too, with the current step's long Dutch label
    visit.check("files")
    start_in_dutch_with_a_generated_password(visit)
    visit.check("summary")
    # No horizontal scrolling on a 360 px phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.goto(base + "/help")
    visit.check("help")
    page.goto(base + "/download/")
    visit.check("download-start")
    assert page.goto(base + "/no-such-page").status == 404
    page.wait_for_load_state("networkidle")
    visit.check("not-found")


def test_a_new_sender_walks_a_portal_link_in_dutch(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path) -> None:
    """Someone who never used the portal opens a department's link: the
    portal's own words in Dutch, no recipients to choose, the code, a file,
    and the transfer reaches the department (and no one else), which downloads it."""
    _, base = portal
    visit = new_visit(browser, "portal-nl", locale="nl-NL")
    page = visit.page
    page.goto(base + "/to/jeugdzorg")
    expect(page.get_by_role("heading", name="Stukken sturen aan Jeugdzorg", level=1)).to_be_visible()
    expect(page.get_by_text("Stuur hier de stukken voor uw gesprek.")).to_be_visible()
    expect(page.get_by_text("Uw bestanden en bericht gaan naar jeugdzorg@gemeente.example.")).to_be_visible()
    expect(page.locator(".steps li")).to_have_count(5)
    expect(page.locator(".steps")).not_to_contain_text("Ontvangers")
    visit.check("portal")
    send_personal_and_verify(visit, mailbox, "Jan de Vries", "jan@zorg.example", NL)

    expect(page.get_by_role("heading", name="Bericht en bestanden")).to_be_visible()
    expect(page.get_by_text("Uw bestanden en bericht gaan naar jeugdzorg@gemeente.example.")).to_be_visible()
    expect(page.locator(".steps li[aria-current=step]")).to_contain_text("2")
    source = tmp_path / "verslag.pdf"
    expected = random_file(source, 300_000)
    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    page.locator("#picker").set_input_files(source)
    expect(page.locator(".upload-status")).to_have_text("Geüpload", timeout=30_000)
    page.get_by_label("Vertrouwelijk bericht").fill("De stukken voor dinsdag.")
    visit.check("files")
    start_in_dutch_with_a_generated_password(visit)
    expect(page.locator("main")).to_contain_text("jeugdzorg@gemeente.example")
    password = page.locator("#generated-password").inner_text()
    visit.check("summary")
    assert sorted(address for m in mailbox.messages for address in m.rcpt_tos) == [
        "jan@zorg.example", "jan@zorg.example", "jeugdzorg@gemeente.example",  # the code, the receipt; the notification
    ]

    department = new_visit(browser, "portal-download", locale="nl-NL")
    page = department.page
    page.goto(base + "/download/")
    page.get_by_label("Transactie-ID").fill(mailbox.access_id_for("jeugdzorg@gemeente.example"))
    page.get_by_label("Wachtwoord").fill(password)
    page.get_by_role("button", name="Volgende").click()
    expect(page.get_by_text("De stukken voor dinsdag.")).to_be_visible()
    department.check("download")
    with page.expect_download() as download:
        page.get_by_role("link", name="verslag.pdf downloaden").click()
    download.value.save_as(tmp_path / "got.pdf")
    assert hashlib.sha256((tmp_path / "got.pdf").read_bytes()).hexdigest() == expected


AR = {"name": "الاسم", "phone": "الهاتف", "email": "البريد الإلكتروني", "next": "التالي", "code": "رمز التحقق", "verify": "تحقق"}
# Draws a screenshot (PNG as base64) and reads the lightness of a pixel at each
# end, halfway down: says which end of a progress bar is filled.
ENDS = """async (png) => {
  const image = new Image();
  image.src = "data:image/png;base64," + png;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const light = (x) => {
    const [r, g, b] = context.getImageData(x, Math.floor(image.height / 2), 1, 1).data;
    return r + g + b;
  };
  return {left: light(Math.floor(image.width * 0.1)), right: light(Math.floor(image.width * 0.9))};
}"""


def box(locator: Locator) -> dict[str, float]:
    found = locator.bounding_box()
    assert found, f"{locator} is not shown"
    return found


def right_edge(locator: Locator) -> float:
    found = box(locator)
    return found["x"] + found["width"]


def assert_mirrored(page: Page, width: int) -> None:
    """Right to left: the steps run from the right, and nothing makes the page scroll sideways."""
    page.wait_for_load_state()  # its style sheet is in: boxes measured before it sit where no style put them
    assert page.locator("html").get_attribute("dir") == "rtl" and page.locator("html").get_attribute("lang") == "ar"
    steps = page.locator(".steps li")
    if steps.count():
        assert box(steps.nth(0))["x"] > box(steps.nth(1))["x"] > box(steps.nth(2))["x"]
    # Something placed off the left edge (a hidden skip link) would make an RTL page scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("width", [1280, 360])
def test_arabic_is_laid_out_right_to_left(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path, width: int) -> None:
    app, base = portal
    phone = width < 600
    context = browser.new_context(locale="ar", viewport={"width": width, "height": 740 if phone else 900}, is_mobile=phone, has_touch=phone)
    visit = Visit(context, f"send-ar-{width}")
    page = visit.page
    page.goto(base + "/send/")
    assert_mirrored(page, width)
    # A field's label and box start at the right, where the text starts.
    name = page.get_by_label(AR["name"], exact=True)
    label = page.locator("label[for=name]")
    main = page.locator("main")
    assert abs(right_edge(name) - right_edge(label)) < 1
    assert right_edge(name) > box(main)["x"] + box(main)["width"] / 2
    visit.check("personal")
    # The language choice opens inside the screen, each language in its own name and script.
    page.locator(".languages summary").click()
    # (Buttons on a wizard step, which carry what was typed along.)
    choices = page.locator(".languages li > button")
    expect(choices).to_have_count(7)
    for i in range(7):
        assert 0 <= box(choices.nth(i))["x"] and right_edge(choices.nth(i)) <= width
    expect(page.get_by_role("button", name="Deutsch")).to_have_attribute("lang", "de")
    visit.check("language-choice")
    page.locator(".languages summary").click()
    send_personal_and_verify(visit, mailbox, "Jan de Vries", "jan@zorg.example", AR)
    assert_mirrored(page, width)
    visit.check("recipients")
    page.get_by_label("إلى", exact=True).fill("anna@gemeente.example")
    page.get_by_role("button", name=AR["next"]).click()

    source = tmp_path / "verslag.pdf"
    random_file(source, 300_000)
    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    page.locator("#picker").set_input_files(source)
    item = page.locator(".upload", has_text="verslag.pdf")
    expect(item.locator(".upload-status")).to_have_text("تم الرفع", timeout=30_000)
    assert_mirrored(page, width)
    visit.check("files")
    # A bar a quarter full is filled from the right.
    bar = item.locator("progress")
    bar.evaluate("bar => { bar.max = 100; bar.value = 25; }")
    ends = page.evaluate(ENDS, base64.b64encode(bar.screenshot()).decode())
    assert ends["right"] < ends["left"] - 100, ends
    page.get_by_role("button", name=AR["next"]).click()

    expect(page.get_by_role("heading", name="خيارات الإرسال")).to_be_visible()
    assert_mirrored(page, width)
    # Each checkbox sits at the start of its row: right of its label.
    confirmation = page.get_by_label("أرسل لي تأكيدًا")
    assert box(confirmation)["x"] > box(page.locator("label[for=notify_confirmation]"))["x"]
    expect(page.get_by_label("لغة المستلم")).to_have_value("ar")
    page.get_by_label("إنشاء كلمة مرور تلقائيًا").check()
    visit.check("options")
    page.get_by_role("button", name=AR["next"]).click()
    assert_mirrored(page, width)
    visit.check("notification")
    page.get_by_role("button", name="بدء المعاملة").click()
    expect(page.get_by_role("heading", name="اكتملت المعاملة")).to_be_visible()
    page.wait_for_load_state()  # measured as styled
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    visit.check("summary")
    password = page.locator("#generated-password").inner_text()

    mail = mailbox.last_to("anna@gemeente.example")
    assert '<html lang="ar" dir="rtl">' in mail.html
    recipient = Visit(browser.new_context(locale="ar", viewport={"width": width, "height": 740 if phone else 900}), f"download-ar-{width}")
    page = recipient.page
    page.goto(base + "/download/")
    recipient.check("download-start")
    page.get_by_label("رقم المعاملة").fill(mailbox.access_id_for("anna@gemeente.example"))
    page.get_by_label("كلمة المرور").fill(password)
    page.get_by_role("button", name=AR["next"]).click()
    expect(page.get_by_role("link", name="تنزيل verslag.pdf")).to_be_visible()
    page.wait_for_load_state()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # The sender's phone number reads left to right, as typed, not "123456 0592".
    starts = page.locator("a[href^='tel:']").evaluate(
        """link => ["0592", "123456"].map(part => {
             const range = document.createRange(), text = link.firstChild, at = text.data.indexOf(part);
             range.setStart(text, at);
             range.setEnd(text, at + part.length);
             return range.getBoundingClientRect().x;
           })"""
    )
    assert starts[0] < starts[1], starts
    if not phone:  # on a phone the table's rows are stacked
        headers = page.locator("table.files th")
        assert box(headers.nth(0))["x"] > box(headers.nth(1))["x"]
    recipient.check("download-transfer")


def test_upload_resumes_after_the_connection_drops(browser: Browser, make_live, mailbox: Mailbox, tmp_path: Path) -> None:
    port = free_port()
    proxy = DroppingProxy(port, drop_after=3 * MiB)  # inside the first 8 MiB chunk
    app, _ = make_live({"site": {"base_url": proxy.url}}, port=port)
    source = tmp_path / "scan.zip"
    expected = random_file(source, 20 * MiB + 5)
    visit = new_visit(browser, "resume")
    page = visit.page
    to_files_step(visit, mailbox, proxy.url)
    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    page.locator("#picker").set_input_files(source)
    expect(page.locator(".upload-status")).to_have_text("Uploaded", timeout=60_000)
    assert proxy.dropped
    visit.errors.clear()  # the dropped request is logged as a network error
    visit.check("resumed")
    start_with_manual_password(page)

    recipient = Recipient(app)
    recipient.unlock(mailbox.access_id_for("anna@gemeente.example"), PASSWORD)
    assert hashlib.sha256(recipient.get(recipient.file_links()["scan.zip"]).data).hexdigest() == expected


def test_refused_file_cancel_and_retry(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path) -> None:
    app, base = portal
    visit = new_visit(browser, "cancel-retry")
    page = visit.page
    to_files_step(visit, mailbox, base)

    refused = tmp_path / "setup.exe"
    refused.write_bytes(b"MZ" + b"\0" * 100)
    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    page.locator("#picker").set_input_files(refused)
    item = page.locator(".upload", has_text="setup.exe")
    expect(item.locator(".upload-status")).to_contain_text("files of this type cannot be sent")
    # Trying again cannot help a refused type: the row offers only to remove it.
    expect(item.get_by_role("button", name="Retry: setup.exe")).to_be_hidden()
    expect(item.get_by_role("button", name="Remove: setup.exe")).to_be_visible()
    visit.errors.clear()  # the refusal is a 403 answer, which the console reports
    visit.check("refused")
    item.get_by_role("button", name="Remove: setup.exe").click()
    expect(item).to_have_count(0)

    # A slow upload, cancelled half-way: it leaves nothing on the server.
    big = tmp_path / "scan.zip"
    random_file(big, 30 * MiB)
    cdp = visit.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 3 * MiB})
    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    page.locator("#picker").set_input_files(big)
    upload = page.locator(".upload", has_text="scan.zip")
    expect(upload.locator(".upload-status")).to_contain_text("/s", timeout=20_000)
    upload.get_by_role("button", name="Cancel: scan.zip").click()
    expect(upload).to_have_count(0)
    with app.app_context():
        for _ in range(50):
            if not db.session().scalars(select(Upload)).all():
                break
            db.session().close()
            page.wait_for_timeout(100)
        assert db.session().scalars(select(Upload)).all() == []
        assert db.session().scalars(select(StoredFile)).all() == []


def test_after_removing_a_file_the_keyboard_stays_in_the_list(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path) -> None:
    """A walk found the focus gone after "Remove" (to the top of a reloaded
    page, or nowhere once the script took the row away): a keyboard user lost
    their place. It goes to the next file's button, or the last one's, and
    to the list's heading, or "Add files", once none is left; the removal is
    said in a live region."""
    _, base = portal
    visit = new_visit(browser, "remove-focus")
    page = visit.page
    to_files_step(visit, mailbox, base)
    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    names = ["a.txt", "b.txt", "c.txt"]
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
    page.locator("#picker").set_input_files([tmp_path / name for name in names])
    expect(page.locator(".upload[data-state=done]")).to_have_count(3)

    # In the script's list of uploads.
    page.get_by_role("button", name="Remove: a.txt").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Remove: b.txt")).to_be_focused()
    expect(page.locator("#announcer")).to_have_text("“a.txt” has been removed.")
    page.get_by_role("button", name="Remove: c.txt").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Remove: b.txt")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Add files / Browse")).to_be_focused()

    # In the page's list of files, after the page comes back.
    page.locator("#picker").set_input_files([tmp_path / name for name in names])
    expect(page.locator(".upload[data-state=done]")).to_have_count(3)
    page.reload()
    expect(page.locator("td.file-name")).to_have_text(names)
    page.get_by_role("button", name="Remove a.txt").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Remove b.txt")).to_be_focused()
    expect(page.locator(".flashes")).to_have_text("“a.txt” has been removed.")
    visit.check("removed")
    page.get_by_role("button", name="Remove c.txt").click()
    expect(page.get_by_role("button", name="Remove b.txt")).to_be_focused()
    page.get_by_role("button", name="Remove b.txt").click()
    expect(page.get_by_role("heading", name="Files", exact=True)).to_be_focused()


def test_the_files_step_shows_the_virus_scanners_verdict(
    browser: Browser, make_live, mailbox: Mailbox, own_clamd: ClamdServer, tmp_path: Path
) -> None:
    """Malware is refused for good, named; a file the scanner could not
    judge waits, complete, and goes in once the scanner is back, unsent again."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app, _ = make_live({"site": {"base_url": base}, "scan": own_clamd.config()}, port=port)
    visit = new_visit(browser, "scanning")
    page = visit.page
    to_files_step(visit, mailbox, base)
    eicar = tmp_path / "factuur.txt"
    eicar.write_bytes(EICAR)
    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    page.locator("#picker").set_input_files(eicar)
    item = page.locator(".upload", has_text="factuur.txt")
    expect(item.locator(".upload-status")).to_have_text(
        f"“factuur.txt” was not added: the virus scanner found malware in it ({FOUND_AS}). "
        "Do not open it, and have the device it came from checked for viruses."
    )
    expect(item.get_by_role("button", name="Retry: factuur.txt")).to_be_hidden()
    expect(item.get_by_role("button", name="Remove: factuur.txt")).to_be_visible()
    # Walk: its bar stayed full, as if the file were in.
    expect(item.locator("progress")).to_be_hidden()
    visit.errors.clear()  # the 422 answer, which the console reports
    visit.check("infected")
    item.get_by_role("button", name="Remove: factuur.txt").click()

    own_clamd.halt()
    clean = tmp_path / "verslag.pdf"
    random_file(clean, 3 * MiB)
    page.locator("#picker").set_input_files(clean)
    status = page.locator(".upload", has_text="verslag.pdf").locator(".upload-status")
    # Said while the page asks again by itself (walk: it read "was not added… try again later"),
    # and to a screen reader too (review: it heard nothing until the file was in, a minute later).
    expect(status).to_have_text("The virus scanner is not available right now; trying again…")
    expect(page.locator("#announcer")).to_have_text(
        "verslag.pdf: The virus scanner is not available right now; trying again…"
    )
    visit.errors.clear()  # the 503 answers
    visit.check("scanner-unavailable")
    own_clamd.resume()
    expect(status).to_have_text("Uploaded", timeout=60_000)
    with app.app_context():
        [stored] = db.session().scalars(select(StoredFile)).all()
    assert stored.size == 3 * MiB


def test_next_says_that_a_refused_file_can_only_be_removed(
    browser: Browser, make_live, mailbox: Mailbox, clamd: ClamdServer, tmp_path: Path
) -> None:
    """Walk: Next named files the virus scanner or the type check had refused
    with "Retry or remove it", though they offer only Remove; and a screen
    reader heard each refused file's name twice ("eicar.txt: “eicar.txt” was not added…")."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    make_live({"site": {"base_url": base}, "scan": clamd.config()}, port=port)
    visit = new_visit(browser, "refused-next")
    page = visit.page
    to_files_step(visit, mailbox, base)
    infected, program = tmp_path / "eicar.txt", tmp_path / "factuur.pdf"
    infected.write_bytes(EICAR)
    program.write_bytes(b"MZ" + bytes(range(256)) * 16)  # a Windows program under a PDF's name
    expect(page.locator(".uploader")).to_be_visible()
    page.locator("#picker").set_input_files([infected, program])
    said = ("“factuur.pdf” was not added: it is a program, not the .pdf file its name says. "
            "If you did not expect that, do not open it: it may be harmful.")
    expect(page.locator(".upload", has_text="factuur.pdf").locator(".upload-status")).to_have_text(said)
    expect(page.locator("#announcer")).to_have_text(said)
    expect(page.get_by_role("button", name="Retry: eicar.txt")).to_be_hidden()
    page.get_by_role("button", name="Next").click()
    notice = page.locator(".upload-notice")
    expect(notice).to_have_text("Not added: “eicar.txt”, “factuur.pdf”. Remove before you go on.")
    expect(notice).to_be_focused()
    visit.errors.clear()  # the 422 answers, which the console reports
    visit.check("refused-next")


def test_everything_works_without_javascript(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path) -> None:
    app, base = portal
    context = browser.new_context(locale="en-GB", java_script_enabled=False)
    # axe-core needs scripts; these pages were checked with them on in the other tests.
    visit = Visit(context, "no-javascript", axe=False)
    page = visit.page
    to_files_step(visit, mailbox, base)
    expect(page.locator(".uploader")).to_be_hidden()
    # A refused file: the page that says so takes the next upload (it carries its CSRF token).
    refused = tmp_path / "setup.exe"
    refused.write_bytes(b"MZ" + b"\0" * 100)
    page.get_by_label("Add files").set_input_files(refused)
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("alert")).to_contain_text("“setup.exe” is not allowed")
    visit.errors.clear()  # the 422 answer, which the console reports
    visit.check("refused")
    source = tmp_path / "verslag.pdf"
    expected = random_file(source, 2 * MiB + 3)
    page.get_by_label("Add files").set_input_files(source)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("td.file-name")).to_have_text("verslag.pdf")
    visit.check("files")
    start_with_manual_password(page)
    visit.check("summary")

    page.goto(base + "/download/")
    page.get_by_label("Transaction ID").fill(mailbox.access_id_for("anna@gemeente.example"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Next").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download verslag.pdf").click()
    download.value.save_as(tmp_path / "got.pdf")
    assert hashlib.sha256((tmp_path / "got.pdf").read_bytes()).hexdigest() == expected


def test_a_no_password_link_opens_without_its_key_reaching_the_server(browser: Browser, portal, mailbox: Mailbox) -> None:
    app, base = portal
    sent = Sender(app, mailbox).send(
        to="anna@gemeente.example, kees@gemeente.example", password_mode="none", password=None, password_repeat=None
    )
    link, key = sent.link("anna@gemeente.example"), sent.link_key("anna@gemeente.example")
    assert link.startswith(base) and "#key=" in link

    visit = new_visit(browser, "open-link")
    page = visit.page
    # The tab already shows the download page, so opening the link changes only the fragment.
    page.goto(link.split("#", 1)[0])
    page.goto(link)
    expect(page.get_by_text("Your link holds the access key.")).to_be_visible()
    expect(page.get_by_label("Password", exact=True)).to_be_hidden()
    assert key not in page.url  # gone from the address bar and the history entry
    visit.check("link-landing")
    # A reload (or a language switch) before opening keeps the key in this tab, still out of the address bar.
    page.reload()
    expect(page.get_by_text("Your link holds the access key.")).to_be_visible()
    assert key not in page.url
    page.get_by_role("button", name="Open transfer").click()
    expect(page.get_by_role("cell", name="verslag.pdf", exact=True)).to_be_visible()
    visit.check("link-opened")

    # Without scripts the recipient types the key from the mail.
    plain = Visit(browser.new_context(locale="en-GB", java_script_enabled=False), "open-link-no-javascript", axe=False)
    page = plain.page
    page.goto(sent.link("kees@gemeente.example"))
    # Next without a password opens the access key field and says why.
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("or the access key from the email").first).to_be_visible()
    plain.errors.clear()  # the 422 answer, which the console reports
    page.get_by_label("Access key").fill(sent.link_key("kees@gemeente.example"))
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("cell", name="verslag.pdf", exact=True)).to_be_visible()
    plain.check("link-opened")

    log = app.config["LIVE_SERVER"].access_log.read_text()
    assert "/download/transfer" in log
    for secret in (key, sent.link_key("kees@gemeente.example")):
        assert secret not in log
def pick_a_file(
    browser: Browser, mailbox: Mailbox, base: str, tmp_path: Path, folder: str, clock: bool = False
) -> tuple[Visit, Locator]:
    """At the files step, with the script ready, scan.zip is picked; its item in the upload list.

    ``clock``: the page's timers run on Playwright's clock, which the test can move on."""
    visit = new_visit(browser, folder)
    if clock:
        visit.page.clock.install()
    to_files_step(visit, mailbox, base)
    expect(visit.page.locator(".uploader")).to_be_visible()
    source = tmp_path / "scan.zip"
    random_file(source, 100_000)
    visit.page.locator("#picker").set_input_files(source)
    return visit, visit.page.locator(".upload", has_text="scan.zip")


def test_upload_waits_while_the_sender_has_too_many_running(
    browser: Browser, make_live, mailbox: Mailbox, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app, _ = make_live({"site": {"base_url": base}, "limits": {"concurrent_uploads_per_sender": 1}}, port=port)
    # The same sender uploads from another browser, holding the one slot.
    other = Sender(app, mailbox)
    other.personal()
    other.verify()
    other.recipients("anna@gemeente.example")
    headers = {"Tus-Resumable": "1.0.0", "Cookie": other.cookie_header(), "X-CSRFToken": other.upload_token()}
    created = requests.post(base + "/send/uploads", headers={**headers, "Upload-Length": "100"}, timeout=30)
    patch = {**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    running = Held(port, "PATCH", urlsplit(created.headers["Location"]).path, {**patch, "Content-Length": "100"}, b"x")
    with app.app_context():
        for _ in range(100):
            if db.session().scalars(select(UploadLease)).all():
                break
            db.session().close()
            time.sleep(0.1)

    visit, item = pick_a_file(browser, mailbox, base, tmp_path, "busy", clock=True)
    status = item.locator(".upload-status")
    expect(status).to_have_text("Waiting for other uploads to finish; this file starts by itself.")
    visit.errors.clear()  # the 429 answer, which the console reports
    visit.check("busy")

    assert running.send(b"y" * 99) and running.answer().status == 204
    # Retried once the time the server asked for has passed (on the page's clock, not the test's).
    visit.page.clock.run_for(RETRY_AFTER_SECONDS * 1000)
    expect(status).to_have_text("Uploaded", timeout=60_000)


def test_upload_says_when_the_portal_is_short_of_space(
    browser: Browser, make_live, mailbox: Mailbox, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    make_live({"site": {"base_url": base}, "storage": {"min_free_bytes": 2**59}}, port=port)
    visit, item = pick_a_file(browser, mailbox, base, tmp_path, "short-of-space")
    message = "The portal is short of storage space right now. Please try again later."
    expect(item.locator(".upload-status")).to_have_text(message)
    retry = item.get_by_role("button", name="Retry: scan.zip")
    expect(retry).to_be_visible()
    visit.errors.clear()  # the 507 answer, which the console reports
    visit.check("short-of-space")
    # Walk: Retry gave way to Cancel and the keyboard fell to the top of the
    # page; it stays on the file, and is on Retry again once that fails too.
    retry.focus()
    visit.page.keyboard.press("Enter")
    expect(item.locator(".upload-status")).to_have_text(message)
    expect(retry).to_be_focused()


@pytest.mark.parametrize("scripts", [True, False], ids=["with-js", "without-js"])
def test_back_after_a_refused_step_shows_that_step_again(browser: Browser, portal, mailbox: Mailbox, scripts: bool) -> None:
    _, base = portal
    context = browser.new_context(locale="en-GB", java_script_enabled=scripts, viewport={"width": 1280, "height": 900})
    visit = Visit(context, f"back-after-refusal-{'js' if scripts else 'nojs'}", axe=scripts)
    page = visit.page

    def back_to(heading: str) -> None:
        page.go_back()
        assert not page.url.startswith("chrome-error"), page.url
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        page.go_forward()

    page.goto(base + "/send/")
    page.get_by_label("Name").fill("Jan de Vries")
    page.get_by_label("Phone").fill("call me")
    page.get_by_label("Email address", exact=True).fill("jan@zorg.example")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Please enter a phone number").first).to_be_visible()
    visit.check("personal-refused")
    # Kept: what was typed, the wrong value included, to be corrected.
    expect(page.get_by_label("Name")).to_have_value("Jan de Vries")
    page.get_by_label("Phone").fill("0592 123456")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Verification code")).to_be_visible()
    back_to("Personal data")

    page.get_by_label("Verification code").fill(mailbox.code_for("jan@zorg.example"))
    page.get_by_role("button", name="Verify").click()
    page.get_by_label("To").fill("anna@gemeente.example; kees@@gemeente")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("“kees@@gemeente” is not a valid email address.").first).to_be_visible()
    visit.check("recipients-refused")
    page.get_by_label("To").fill("anna@gemeente.example")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Message and files", exact=True)).to_be_visible()
    back_to("Recipients")
    context.close()


def test_back_keeps_what_was_typed_on_every_step(browser: Browser, portal, mailbox: Mailbox) -> None:
    """A browser walk found "Back" a link that left behind what the step held:
    an edited notification mail came back as the portal's text, a changed
    message as the one saved before. Back saves first, as Next does."""
    _, base = portal
    visit = new_visit(browser, "back-keeps")
    page = visit.page

    def back() -> None:
        page.locator(".actions").get_by_text("Back", exact=True).click()

    def next_step() -> None:
        page.get_by_role("button", name="Next").click()

    page.goto(base + "/send/")
    send_personal_and_verify(visit, mailbox, "Jan de Vries", "jan@zorg.example", EN)
    page.get_by_label("To").fill("anna@gemeente.example")
    page.get_by_label("Cc", exact=True).fill("kees@gemeente.example")
    page.locator(".sender").get_by_text("Change").click()  # the sender's own address: back to the first step
    expect(page.get_by_role("heading", name="Personal data")).to_be_visible()
    next_step()
    expect(page.get_by_label("Cc", exact=True)).to_have_value("kees@gemeente.example")
    visit.check("recipients-kept")
    next_step()

    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    page.get_by_label("Confidential message").fill("Eerste versie")
    next_step()
    expect(page.get_by_role("heading", name="Send options")).to_be_visible()
    back()
    # A change to the saved message: the tab's kept copy only ever fills an empty field.
    page.get_by_label("Confidential message").fill("Tweede versie")
    back()
    expect(page.get_by_role("heading", name="Recipients")).to_be_visible()
    expect(page.get_by_label("To")).to_have_value("anna@gemeente.example")
    next_step()
    expect(page.get_by_label("Confidential message")).to_have_value("Tweede versie")
    next_step()

    page.get_by_label("Generate password").check()
    page.get_by_label("Send me a confirmation").uncheck()
    back()
    expect(page.get_by_role("heading", name="Message and files")).to_be_visible()
    next_step()
    expect(page.get_by_label("Generate password")).to_be_checked()
    expect(page.get_by_label("Send me a confirmation")).not_to_be_checked()
    next_step()

    page.get_by_label("Subject").fill("Het dossier van mevrouw Jansen")
    page.get_by_label("Message").fill("Beste Anna,\n\nZie het dossier.\n\nJan")
    visit.check("notification-edited")
    back()
    expect(page.get_by_role("heading", name="Send options")).to_be_visible()
    next_step()
    expect(page.get_by_label("Subject")).to_have_value("Het dossier van mevrouw Jansen")
    expect(page.get_by_label("Message")).to_have_value("Beste Anna,\n\nZie het dossier.\n\nJan")
    # Enter in the subject starts the transaction: it goes on, never back.
    page.get_by_label("Subject").press("Enter")
    expect(page.get_by_role("heading", name="The transaction is complete")).to_be_visible()
    mail = mailbox.last_to("anna@gemeente.example")
    assert mail.message["Subject"] == "Het dossier van mevrouw Jansen" and "Zie het dossier." in mail.text


def choose_language(page: Page, name: str) -> None:
    """The header's language choice: opened, then the language named in itself."""
    page.locator(".languages summary").click()
    page.locator(".languages li").get_by_text(name, exact=True).click()


def test_switching_the_language_keeps_what_was_typed(browser: Browser, portal, mailbox: Mailbox) -> None:
    """A walk found the language choice a link, which left behind what the
    step held but had not saved. On a step, each language is a button of the
    step's form: what was typed, even what is not valid yet, comes back in
    the new language, and Enter in a field still goes on."""
    _, base = portal
    visit = new_visit(browser, "language-keeps")
    page = visit.page

    def typed_then_switched(language: str, fields: list[tuple[str, str, str]]) -> None:
        """Each field (its label before, its label after, the value) filled, the language switched, the value there."""
        for before, _, value in fields:
            page.get_by_label(before, exact=True).fill(value)
        choose_language(page, language)
        for _, after, value in fields:
            expect(page.get_by_label(after, exact=True)).to_have_value(value)

    page.goto(base + "/send/")
    typed_then_switched("Nederlands", [("Name", "Naam", "Jan de Vries"), ("Phone", "Telefoon", "0592 123456")])
    expect(page.get_by_role("heading", name="Persoonlijke gegevens")).to_be_visible()
    visit.check("personal-nl")
    choose_language(page, "English")
    page.get_by_label("Email address", exact=True).fill("jan@zorg.example")
    page.get_by_label("Email address", exact=True).press("Enter")
    typed_then_switched("Nederlands", [("Verification code", "Verificatiecode", mailbox.code_for("jan@zorg.example"))])
    page.get_by_label("Verificatiecode").press("Enter")

    typed_then_switched("English", [("Aan", "To", "anna@gemeente.example"), ("Bcc", "Bcc", "kees@@gemeente")])
    expect(page.get_by_role("heading", name="Recipients")).to_be_visible()
    visit.check("recipients-en")
    page.get_by_label("Bcc").fill("")
    page.get_by_role("button", name="Next").click()

    expect(page.locator(".uploader")).to_be_visible()  # the script is ready
    typed_then_switched("Nederlands", [("Confidential message", "Vertrouwelijk bericht", "Zie bijlage.")])
    expect(page.locator(".restored")).to_have_count(0)  # from the server, not the tab's copy
    page.get_by_role("button", name="Volgende").click()

    page.get_by_label("Wachtwoord handmatig invoeren").check()
    page.get_by_label("Stuur mij een bevestiging").uncheck()
    typed_then_switched("English", [("Wachtwoord", "Password", PASSWORD)])
    expect(page.get_by_label("Send me a confirmation")).not_to_be_checked()
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Next").click()

    typed_then_switched("Nederlands", [("Subject", "Onderwerp", "Het dossier van mevrouw Jansen")])
    visit.check("notification-nl")
    page.get_by_label("Onderwerp").press("Enter")
    expect(page.get_by_role("heading", name="De transactie is voltooid")).to_be_visible()
    assert mailbox.last_to("anna@gemeente.example").message["Subject"] == "Het dossier van mevrouw Jansen"

    # Without scripts too: it is the page's own form that carries what was typed.
    context = browser.new_context(locale="en-GB", java_script_enabled=False)
    plain = context.new_page()
    plain.goto(base + "/send/")
    plain.get_by_label("Name").fill("Jan de Vries")
    choose_language(plain, "Deutsch")
    expect(plain.locator("#name")).to_have_value("Jan de Vries")
    assert plain.locator("html").get_attribute("lang") == "de"
    context.close()


def test_operator_texts_one_link_colour_and_an_agreed_password_not_called_strong(
    browser: Browser, make_live, mailbox: Mailbox
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    agb = {"name": "AGB", "regex": r"^Agb\d{8}!$", "hint": "Agb + your AGB code + !"}
    texts = {
        "start_text": "Questions? Call 14 0592.",
        "footer_links": [{"label": "Privacy statement", "url": "https://www.gemeente.example/privacy"},
                         {"label": "Contact", "url": "https://www.gemeente.example/contact"}],
    }
    make_live({"site": {"base_url": base, **texts}, "password": {"patterns": [agb]}}, port=port)
    visit = new_visit(browser, "texts")
    page = visit.page
    page.goto(base + "/")
    expect(page.get_by_text("Questions? Call 14 0592.")).to_be_visible()
    expect(page.get_by_role("link", name="Privacy statement")).to_be_visible()
    visit.check("start-with-operator-texts")

    def link_colours() -> set[str]:
        page.wait_for_load_state("networkidle")
        found = page.evaluate(
            "() => [...document.querySelectorAll('main a:not(.button), footer a, main summary, .link-button')]"
            ".map(e => getComputedStyle(e).color)"
        )
        assert len(found) >= 2
        return set(found)

    page.goto(base + "/help")
    page.goto(base + "/download/")  # the footer's links, help now visited, and the access key's summary
    assert len(link_colours()) == 1
    to_files_step(visit, mailbox, base)
    page.goto(base + "/send/recipients")
    assert len(link_colours()) == 1  # "Change" beside the sender, the footer's help link
    page.goto(base + "/send/files")
    page.get_by_label("Confidential message").fill("Zie telefoon.")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Enter password manually").check()
    page.get_by_label("Password", exact=True).press_sequentially("Agb12345678!", delay=20)
    feedback = page.locator("#strength-live")
    expect(feedback).to_have_text("This password matches the agreed convention “AGB”.")
    expect(feedback.locator("meter")).to_have_count(0)
    visit.check("options-agreed-convention")


def test_my_transfers_and_a_report_that_prints(browser: Browser, portal, mailbox: Mailbox) -> None:
    """Verify the address, find the transfer, open its report, print it to PDF:
    the print stylesheet leaves the site's navigation and the buttons out."""
    app, base = portal
    Sender(app, mailbox).send(to="anna@gemeente.example, kees@gemeente.example")
    visit = new_visit(browser, "my-transfers")
    page = visit.page
    page.goto(base + "/")
    page.get_by_role("link", name="My transfers").click()
    page.get_by_label("Email address").fill("jan@zorg.example")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Verification code").fill(mailbox.code_for("jan@zorg.example"))
    page.get_by_role("button", name="Verify").click()
    visit.check("list")
    page.get_by_role("link", name="Files (1) from Jan de Vries").click()
    expect(page.get_by_role("button", name="Send again: the notification mail to kees@gemeente.example")).to_be_visible()
    visit.check("transfer")
    page.get_by_role("link", name="Report", exact=True).click()
    expect(page.get_by_role("button", name="Print or save as PDF")).to_be_visible()
    visit.check("report")

    page.emulate_media(media="print")
    for hidden in (page.locator("header.top"), page.locator("footer.bottom"), page.get_by_role("button", name="Print or save as PDF")):
        expect(hidden).to_be_hidden()
    expect(page.get_by_role("cell", name="kees@gemeente.example")).to_be_visible()
    visit.photo("report-printed", full_page=True)
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000
    if visit.photograph:
        (visit.shots / "report.pdf").write_bytes(pdf)


def test_staff_request_files_and_the_external_answers_through_the_link(
    browser: Browser, make_live, mailbox: Mailbox, tmp_path: Path
) -> None:
    """A staff member asks for files in My transfers; the external's link
    opens the wizard with no code and no recipients step; the request shows
    as fulfilled, and its link is closed."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    make_live({"site": {"base_url": base}, "staff": {"senders": ["*@gemeente.example"]}}, port=port)
    staff = new_visit(browser, "request")
    page = staff.page
    page.goto(base + "/mine/")
    page.get_by_label("Email address").fill("anna@gemeente.example")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Verification code").fill(mailbox.code_for("anna@gemeente.example"))
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("link", name="Request files").click()
    staff.check("request-form")
    size = page.get_by_label("Largest total size in MB (optional)")
    assert size.bounding_box()["height"] == page.get_by_label("Name").bounding_box()["height"]  # a box like the others
    page.get_by_label("Name").fill("Karin Buiten")
    page.get_by_label("Email address").fill("karin@thuis.example")
    page.get_by_label("Message").fill("Graag het getekende contract.")
    page.get_by_role("button", name="Request files").click()
    expect(page.locator(".request-state")).to_have_text("Open")
    staff.check("requests")
    link = re.search(r"(http://\S+/send/request/\S+)", mailbox.last_to("karin@thuis.example").text).group(1)

    external = new_visit(browser, "request-answer")
    answer = external.page
    answer.goto(link)
    expect(answer.get_by_role("heading", name="Files requested by anna@gemeente.example", level=1)).to_be_visible()
    expect(answer.get_by_text("Graag het getekende contract.")).to_be_visible()
    expect(answer.locator(".steps")).not_to_contain_text("Recipients")
    background = "e => getComputedStyle(e).backgroundColor"
    assert answer.get_by_label("Email address").evaluate(background) != answer.get_by_label("Name").evaluate(background)
    external.check("personal")
    answer.get_by_label("Name").fill("Karin Buiten")
    answer.get_by_label("Phone").fill("06 12345678")
    answer.get_by_role("button", name="Next").click()
    source = tmp_path / "contract.pdf"
    random_file(source, 100_000)
    expect(answer.locator(".uploader")).to_be_visible()
    answer.locator("#picker").set_input_files(source)
    expect(answer.locator(".upload-status")).to_have_text("Uploaded", timeout=30_000)
    external.check("files")
    start_with_manual_password(answer)
    assert "This transfer answers your request for files." in mailbox.last_to("anna@gemeente.example").text

    page.reload()
    expect(page.locator(".request-state")).to_have_text("Fulfilled")
    answer.goto(link)
    expect(answer.get_by_text("This request is no longer open.")).to_be_visible()
    external.check("closed")


# First contact (issue 11): the address, uploads that did not get in, the
# session's end, and the phone layout.


def test_uploads_work_at_the_address_flask_run_prints(browser: Browser, make_live, mailbox: Mailbox, tmp_path: Path) -> None:
    """site.base_url left at its built-in http://localhost:5000; the portal is opened at 127.0.0.1 on another port."""
    port = free_port()
    make_live({"site": {"base_url": None}}, port=port)
    base = f"http://127.0.0.1:{port}"
    visit, item = pick_a_file(browser, mailbox, base, tmp_path, "loopback-address")
    expect(item.locator(".upload-status")).to_have_text("Uploaded", timeout=30_000)
    expect(visit.page.locator(".wrong-address")).to_have_count(0)
    visit.check("files")
    page = visit.page
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Enter password manually").check()
    page.get_by_label("Password", exact=True).press_sequentially("welkom01", delay=20)
    expect(page.locator("#strength-live")).to_contain_text("Password strength: Weak")


def test_a_page_opened_at_another_address_than_the_configured_one_says_so(
    browser: Browser, make_live, mailbox: Mailbox, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    address = f"http://portal.example.nl:{port}"
    _, server = make_live({"site": {"base_url": address}}, port=port)
    here = f"http://127.0.0.1:{port}"
    visit, item = pick_a_file(browser, mailbox, here, tmp_path, "wrong-address")
    page = visit.page
    explained = f"This page was opened at {here}, but this portal's address is {address}."
    notice = page.locator(".wrong-address")
    expect(notice).to_contain_text(explained)
    expect(notice.get_by_role("link", name="Open this page at the portal's address")).to_have_attribute("href", address + "/send/files")
    # The upload is refused (its Origin is not the portal's), and says why rather than "Upload failed".
    expect(item.locator(".upload-status")).to_contain_text(explained)
    visit.errors.clear()  # the 403 answer, which the console reports
    visit.check("explained")
    assert "site.base_url" in (server.instance / "gunicorn.log").read_text()


def test_a_failed_upload_stops_next_naming_the_file(browser: Browser, make_live, mailbox: Mailbox, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    make_live({"site": {"base_url": base}, "storage": {"min_free_bytes": 2**59}}, port=port)
    visit, item = pick_a_file(browser, mailbox, base, tmp_path, "failed-upload-next")
    page = visit.page
    expect(item.get_by_role("button", name="Retry: scan.zip")).to_be_visible()
    page.get_by_label("Confidential message").fill("Zie bijlage.")
    page.get_by_role("button", name="Next").click()
    notice = page.locator(".upload-notice")
    expect(notice).to_have_text("Not uploaded: “scan.zip”. Retry or remove before you go on.")
    expect(notice).to_be_focused()
    expect(page.get_by_role("heading", name="Message and files")).to_be_visible()
    visit.errors.clear()  # the 507 answer, which the console reports
    visit.check("stopped")
    item.get_by_role("button", name="Remove: scan.zip").click()
    expect(notice).to_be_hidden()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Send options")).to_be_visible()


def test_next_waits_for_uploads_and_stops_at_a_refused_one(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path) -> None:
    app, base = portal
    visit = new_visit(browser, "next-waits")
    page = visit.page
    to_files_step(visit, mailbox, base)
    big, refused = tmp_path / "scan.zip", tmp_path / "setup.exe"
    random_file(big, 20 * MiB)  # long enough for the estimate to show, a few seconds in
    refused.write_bytes(b"MZ" + b"\0" * 100)
    cdp = visit.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 2 * MiB})
    expect(page.locator(".uploader")).to_be_visible()
    page.locator("#picker").set_input_files([big, refused])
    expect(page.locator(".upload", has_text="scan.zip").locator(".upload-status")).to_contain_text("/s", timeout=20_000)
    page.get_by_role("button", name="Next").click()
    notice = page.locator(".upload-notice")
    expect(notice).to_have_text("Next continues by itself once all files are uploaded.")
    expect(notice).not_to_have_class(re.compile(r"\berror\b"))  # news, not an error
    # scan.zip gets in; setup.exe is refused, so Next stops waiting and says which file.
    expect(notice).to_have_text("Not added: “setup.exe”. Remove before you go on.", timeout=60_000)
    expect(notice).to_have_class(re.compile(r"\berror\b"))
    expect(page.locator(".upload", has_text="scan.zip").locator(".upload-status")).to_have_text("Uploaded")
    visit.errors.clear()  # the refusal is a 403 answer, which the console reports
    visit.check("stopped-at-refused")
    page.locator(".upload", has_text="setup.exe").get_by_role("button", name="Remove: setup.exe").click()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Send options")).to_be_visible()


def test_back_waits_for_uploads_as_next_does(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path) -> None:
    """A browser walk found "Back" during an upload leaving the page at once:
    chromium asked "Leave site?", and leaving cut the upload off, while Next
    waited for it. Back saves the step too, so it waits as well."""
    app, base = portal
    visit = new_visit(browser, "back-waits")
    page = visit.page
    to_files_step(visit, mailbox, base)
    big = tmp_path / "scan.zip"
    random_file(big, 12_000_000)
    cdp = visit.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 2 * MiB})
    expect(page.locator(".uploader")).to_be_visible()
    page.locator("#picker").set_input_files(big)
    expect(page.locator(".upload", has_text="scan.zip").locator(".upload-status")).to_contain_text("/s", timeout=20_000)
    # Its size as the server writes it, once the page is shown again: "12.0 MB", not "12 MB" and then "12.0 MB".
    expect(page.locator(".upload", has_text="scan.zip").locator(".upload-size")).to_have_text("12.0 MB")
    page.get_by_label("Confidential message").fill("Typed while the file went up")
    page.locator(".actions").get_by_role("button", name="Back").click()
    expect(page.locator(".upload-notice")).to_have_text("Back continues by itself once all files are uploaded.")
    visit.check("back-waits")
    expect(page.get_by_role("heading", name="Recipients")).to_be_visible(timeout=60_000)
    with app.app_context():
        assert [f.size for f in db.session().scalars(select(StoredFile))] == [12_000_000]
        assert db.session().scalars(select(Upload)).all() == []
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Confidential message")).to_have_value("Typed while the file went up")
    expect(page.locator("table.files tr", has_text="scan.zip")).to_contain_text("12.0 MB")


def _idle_session(app, context: BrowserContext, base: str, minutes: int) -> None:  # type: ignore[no-untyped-def]
    """As if this browser had sent nothing to the portal for ``minutes``: its session cookie says so."""
    cookie = next(c for c in context.cookies(base) if c["name"] == "koerier")
    signer = app.session_interface.get_signing_serializer(app)
    data = signer.loads(cookie["value"])
    data["_started"] = data["_seen"] = time.time() - minutes * 60
    fields = ("name", "domain", "path", "expires", "httpOnly", "secure", "sameSite")
    context.add_cookies([{**{k: cookie[k] for k in fields if k in cookie}, "value": signer.dumps(data)}])


def short_sessions(make_live):  # type: ignore[no-untyped-def]
    """A portal whose sessions end after 5 idle minutes; its app and address."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app, _ = make_live({"site": {"base_url": base, "session_idle_minutes": 5}}, port=port)
    return app, base


def type_a_message(visit: Visit, mailbox: Mailbox, base: str, message: str) -> None:
    """A verified sender at the files step types a confidential message, which its script keeps in the tab."""
    to_files_step(visit, mailbox, base)
    expect(visit.page.locator(".uploader")).to_be_visible()  # the script is ready
    visit.page.get_by_label("Confidential message").fill(message)


def kept_in_tab(page: Page) -> list[str]:
    return page.evaluate("Object.keys(sessionStorage).filter(k => k.startsWith('koerier-keep:'))")


def test_the_session_warns_before_it_ends_and_a_typed_message_survives(
    browser: Browser, make_live, mailbox: Mailbox  # type: ignore[no-untyped-def]
) -> None:
    app, base = short_sessions(make_live)
    visit = new_visit(browser, "session-end")
    page = visit.page
    page.clock.install()
    message = "Vertrouwelijk: het dossier van mevrouw Jansen."
    type_a_message(visit, mailbox, base, message)

    # A warning some minutes before the end, with a way to stay.
    page.clock.fast_forward("04:00")
    banner = page.locator(".session-banner")
    expect(banner).to_contain_text("For your safety, your session ends at")
    visit.check("warning")
    with page.expect_response(lambda r: r.url == base + "/session") as pinged:
        banner.get_by_role("button", name="Stay signed in").click()
    assert pinged.value.json()["idle"] > 4 * 60
    expect(banner).to_have_count(0)

    # Nobody there: the banner says the session is over.
    page.clock.fast_forward("06:00")
    expect(banner).to_have_text(re.compile("^Your session has ended."))
    visit.check("ended")
    _idle_session(app, visit.context, base, 6)
    banner.get_by_role("button", name="Start again").click()
    # The portal says what happened; what was typed is still in this tab.
    expect(page.locator(".flash-error")).to_have_text(
        "Your session ended after 5 minutes without activity, so that nobody else at this computer can continue it. "
        "Please start again."
    )
    visit.check("explained")
    send_personal_and_verify(visit, mailbox, "Jan de Vries", "jan@zorg.example", EN)
    page.get_by_label("To").fill("anna@gemeente.example")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Confidential message")).to_have_value(message)
    expect(page.get_by_text("What you typed earlier in this tab has been filled in again.")).to_be_visible()
    visit.check("restored")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Generate password").check()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Start transaction").click()
    expect(page.get_by_role("heading", name="The transaction is complete")).to_be_visible()
    # Started: the tab no longer keeps it (once the summary's script has run).
    page.wait_for_load_state("load")
    assert kept_in_tab(page) == []


def test_a_kept_message_is_not_shown_to_the_next_person_at_the_computer(
    browser: Browser, make_live, mailbox: Mailbox  # type: ignore[no-untyped-def]
) -> None:
    app, base = short_sessions(make_live)
    visit = new_visit(browser, "session-end-next-person")
    page = visit.page
    type_a_message(visit, mailbox, base, "Vertrouwelijk: het dossier van mevrouw Jansen.")
    # Jan walks away; the session ends; Piet starts in the same tab.
    _idle_session(app, visit.context, base, 6)
    page.goto(base + "/send/")
    expect(page.locator(".flash-error")).to_contain_text("Your session ended after 5 minutes without activity")
    send_personal_and_verify(visit, mailbox, "Piet Bakker", "piet@zorg.example", EN)
    page.get_by_label("To").fill("anna@gemeente.example")
    page.get_by_role("button", name="Next").click()
    expect(page.locator(".uploader")).to_be_visible()
    expect(page.get_by_label("Confidential message")).to_have_value("")
    expect(page.get_by_text("What you typed earlier in this tab has been filled in again.")).to_have_count(0)
    assert kept_in_tab(page) == []
    visit.check("next-person")


LONG_SENDER = "johanna.van.den.berg-de.vries.zorgcoordinatie@zorgnl.example"  # 60 characters
LONG_RECIPIENT = "afdeling.jeugdzorg.en.maatschappelijke.ondersteuning@gemeente.example"


def fits(page: Page) -> bool:
    """No sideways scrolling. Against the device's width: a phone zooms out
    to show what overflows, and innerWidth grows with it."""
    assert page.viewport_size
    return page.evaluate("document.scrollingElement.scrollWidth") <= page.viewport_size["width"]


def test_a_phone_shows_long_addresses_without_sideways_scrolling(
    browser: Browser, portal, mailbox: Mailbox, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    app, base = portal
    assert len(LONG_SENDER) == 60
    context = browser.new_context(locale="en-GB", viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    visit = Visit(context, "phone-long-addresses")
    page = visit.page
    page.goto(base + "/send/")
    send_personal_and_verify(visit, mailbox, "Jan de Vries", LONG_SENDER, EN)
    page.get_by_label("To").fill(LONG_RECIPIENT)
    page.get_by_role("button", name="Next").click()
    expect(page.locator(".uploader")).to_be_visible()
    # Nothing to drag files from on a touch screen: only the button.
    expect(page.get_by_text("Drag files here, or")).to_be_hidden()
    source = tmp_path / "verslag-jeugdzorg-en-maatschappelijke-ondersteuning-2026.pdf"
    random_file(source, 50_000)
    page.locator("#picker").set_input_files(source)
    expect(page.locator(".upload-status")).to_have_text("Uploaded", timeout=30_000)
    page.get_by_role("button", name="Next").click()
    # A checkbox's label wraps beside the box, not under it.
    page.wait_for_load_state()  # measured as styled
    for check in page.locator(".check").all():
        box, label = check.locator("input").bounding_box(), check.locator("label").bounding_box()
        assert box and label and label["x"] >= box["x"] + box["width"], check.inner_text()
    visit.check("options")
    page.get_by_label("Generate password").check()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Start transaction").click()
    expect(page.get_by_role("heading", name="The transaction is complete")).to_be_visible()
    visit.check("done")
    assert fits(page), "done page"
    password = page.locator("#generated-password").inner_text()
    page.get_by_role("link", name="Status of your transfer").click()
    expect(page.get_by_role("heading", name="Status of your transfer")).to_be_visible()
    visit.check("status")
    assert fits(page), "status page"

    page.goto(base + "/download/?id=" + mailbox.access_id_for(LONG_RECIPIENT))
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Download transfer files")).to_be_visible()
    visit.check("download")
    assert fits(page), "download page"
    # Each stacked cell says what it is.
    labels = page.locator("table.files td[data-label]").evaluate_all(
        "cells => cells.map(c => getComputedStyle(c, '::before').content)"
    )
    assert labels == ['"Name: "', '"Size: "'] or labels == ['"Name" ": "', '"Size" ": "'], labels


@pytest.mark.parametrize("language", ["en", "nl"])
def test_the_step_indicator_is_one_line_on_a_desktop(browser: Browser, portal, language: str) -> None:
    app, base = portal
    visit = new_visit(browser, f"steps-{language}")
    page = visit.page
    page.goto(f"{base}/lang/{language}?next=/send/")
    tops = page.locator(".steps li").evaluate_all("items => items.map(i => i.getBoundingClientRect().top)")
    assert len(tops) == 6 and len(set(tops)) == 1, tops
    assert page.locator(".steps").evaluate("ol => ol.scrollWidth <= ol.clientWidth")
    # Every step's label shows, not only the current one's.
    expect(page.locator(".steps")).not_to_have_class(re.compile("steps-compact"))
    expect(page.locator(".steps li").last.locator(".step-label")).to_be_visible()


def test_an_ended_download_session_asks_again_and_the_download_goes_on(browser: Browser, portal, mailbox: Mailbox) -> None:
    app, base = portal
    sent = Sender(app, mailbox).send(files=[("verslag.pdf", PDF.read_bytes())])
    access_id = sent.access_id("anna@gemeente.example")
    visit = new_visit(browser, "download-session-ended")
    page = visit.page
    page.goto(f"{base}/download/?id={access_id}")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Download transfer files")).to_be_visible()
    with db.new_session(app) as session:
        session.execute(update(DownloadGrant).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()

    page.get_by_role("link", name="Download verslag.pdf").click()
    expect(page.get_by_text("Your download session has ended.")).to_be_visible()
    expect(page.get_by_label("Transaction ID")).to_have_value(access_id)
    visit.check("asked-again")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_download() as download:
        page.get_by_role("button", name="Next").click()
    assert download.value.suggested_filename == "verslag.pdf"
    assert Path(download.value.path()).read_bytes() == PDF.read_bytes()
    expect(page.get_by_text("Your download of “verslag.pdf” starts now.")).to_be_visible()
    visit.check("continued")


def _primary(page: Page) -> None:
    """The page's main button, then the next page with its scripts running
    (a click returns once the next page starts to load)."""
    with page.expect_navigation():
        page.locator("main form button.button-primary").first.click()


def test_every_page_in_every_language(browser: Browser, portal, mailbox: Mailbox, tmp_path: Path) -> None:
    """Screenshots of every page in every language (test-artifacts/screenshots/tour-<language>/),
    each checked with axe-core and for console errors, wizard to report."""
    app, base = portal
    source = tmp_path / "verslag.pdf"
    random_file(source, 200_000)
    for language in app.config["KOERIER"].site.languages:
        email = f"jan.{language}@zorg.example"
        visit = new_visit(browser, f"tour-{language}")
        page = visit.page
        page.goto(f"{base}/lang/{language}?next=/")
        assert page.locator("html").get_attribute("lang") == language
        visit.check("start")
        page.goto(base + "/help")
        visit.check("help")
        page.goto(base + "/to/jeugdzorg")
        visit.check("upload-portal")
        page.goto(base + "/send/")
        page.locator("#name").fill("Jan de Vries")
        page.locator("#phone").fill("call me")
        page.locator("#email").fill(email)
        _primary(page)
        expect(page.locator(".error-summary")).to_be_visible()
        visit.check("personal-refused")
        page.locator("#phone").fill("0592 123456")
        _primary(page)
        expect(page.locator("#code")).to_be_visible()
        visit.check("verify")
        page.locator("#code").fill(mailbox.code_for(email))
        _primary(page)
        page.locator("#to").fill("anna@gemeente.example")
        visit.check("recipients")
        _primary(page)
        expect(page.locator(".uploader")).to_be_visible()
        page.locator("#picker").set_input_files(source)
        expect(page.locator(".upload[data-state=done]")).to_be_visible(timeout=30_000)
        page.locator("#message").fill("Vertrouwelijk bericht")
        visit.check("files")
        _primary(page)
        page.locator("input[name=password_mode][value=manual]").check()
        page.locator("#password").fill(PASSWORD)
        page.locator("#password_repeat").fill(PASSWORD)
        expect(page.locator("#strength-live")).to_be_visible()
        visit.check("options")
        _primary(page)
        expect(page.locator("#subject")).to_be_visible()
        visit.check("notification")
        _primary(page)
        expect(page.locator("a[href*='/send/status/']")).to_be_visible()
        visit.check("done")
        page.locator("a[href*='/send/status/']").click()
        visit.check("status")

        recipient = visit.context.new_page()
        visit.page = recipient
        recipient.goto(f"{base}/download/?id={mailbox.access_id_for('anna@gemeente.example')}")
        visit.check("download-start")
        recipient.locator("#password").fill(PASSWORD)
        _primary(recipient)
        expect(recipient.locator("td.file-name")).to_have_text("verslag.pdf")
        visit.check("download-transfer")
        recipient.goto(base + "/no-such-page")
        visit.check("not-found")

        visit.context.close()

        # My transfers, in a browser that has not just verified the address.
        visit = new_visit(browser, f"tour-{language}-my-transfers")
        page = visit.page
        page.goto(f"{base}/lang/{language}?next=/mine/")
        page.locator("#email").fill(email)
        visit.check("mine-address")
        _primary(page)
        page.locator("#code").fill(mailbox.code_for(email))
        visit.check("mine-code")
        _primary(page)
        expect(page.locator("table.mine")).to_be_visible()
        visit.check("mine-list")
        page.locator("table.mine a").first.click()
        visit.check("mine-transfer")
        page.locator("a[href$='/report']").click()
        visit.check("mine-report")
        visit.context.close()


def test_a_corrected_password_repeat_clears_the_old_refusal(browser: Browser, portal, mailbox: Mailbox) -> None:
    _, base = portal
    visit = new_visit(browser, "password-repeat-corrected")
    page = visit.page
    to_files_step(visit, mailbox, base)
    page.get_by_label("Confidential message").fill("Zie het dossier.")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD + "x")
    page.get_by_role("button", name="Next").click()
    stale = page.locator("#password_repeat-error")
    expect(stale).to_have_text("The two passwords are not the same.")
    # The refusal shows while the page still loads; typing before its script runs would go unheard.
    page.wait_for_load_state()
    page.get_by_label("Repeat password").fill(PASSWORD)
    expect(page.locator("#password-match")).to_have_text("The two passwords match.")
    expect(stale).to_be_hidden()
    visit.check("corrected")


# Walk 12: an upload cut by a reload, errors the server answers with, and a
# refusal the live password check has overtaken.


def unfinished_upload(app) -> Upload | None:  # type: ignore[no-untyped-def]
    """The one unfinished upload, with the offset it has stored."""
    with app.app_context():
        upload = db.session().scalars(select(Upload)).one_or_none()
        db.session().close()
        return upload


def test_an_upload_cut_by_a_reload_resumes_when_the_same_file_is_added_again(
    browser: Browser, portal, mailbox: Mailbox, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    app, base = portal
    source = tmp_path / "scan.zip"
    expected = random_file(source, 24 * MiB)
    visit = new_visit(browser, "resume-after-reload")
    page = visit.page
    to_files_step(visit, mailbox, base)
    cdp = visit.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 4 * MiB})
    expect(page.locator(".uploader")).to_be_visible()
    page.locator("#picker").set_input_files(source)
    # Past the first chunk, which the server has stored.
    wait_for(lambda: (upload := unfinished_upload(app)) and upload.offset >= 8 * MiB, "the first chunk")
    page.reload()
    visit.errors.clear()  # the PATCH the reload cut off
    row = page.locator("tr.unfinished", has_text="scan.zip")
    expect(row).to_contain_text("Add the same file again to continue, or remove it.")
    cut = unfinished_upload(app)
    visit.check("unfinished-after-reload")

    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    expect(page.locator(".uploader")).to_be_visible()
    page.locator("#picker").set_input_files(source)
    item = page.locator(".upload", has_text="scan.zip")
    expect(item.locator(".upload-status")).to_have_text("Uploaded", timeout=60_000)
    # That upload went on: one row for the file, and the file is the upload cut off.
    expect(row).to_have_count(0)
    expect(page.get_by_text("scan.zip", exact=True)).to_have_count(1)
    with app.app_context():
        [stored] = db.session().scalars(select(StoredFile)).all()
        assert stored.id == cut.id and db.session().scalars(select(Upload)).all() == []
    visit.check("resumed-after-reload")
    start_with_manual_password(page)

    recipient = Recipient(app)
    recipient.unlock(mailbox.access_id_for("anna@gemeente.example"), PASSWORD)
    assert hashlib.sha256(recipient.get(recipient.file_links()["scan.zip"]).data).hexdigest() == expected


def _first_mib_in_before_a_reload(visit: Visit, mailbox: Mailbox, base: str, tmp_path: Path) -> Path:
    """A file of 3 MiB whose upload began (its first MiB came in) before
    the files page was reloaded; the file, for the page to add again."""
    source = tmp_path / "scan.zip"
    random_file(source, 3 * MiB)
    page = visit.page
    to_files_step(visit, mailbox, base)
    headers = {
        "Tus-Resumable": "1.0.0", "X-CSRFToken": page.locator(".uploader").get_attribute("data-csrf") or "",
        "Cookie": "; ".join(f"{c['name']}={c['value']}" for c in visit.context.cookies()),
    }
    created = requests.post(
        base + "/send/uploads", timeout=30,
        headers={**headers, "Upload-Length": str(3 * MiB), "Upload-Metadata": "filename " + base64.b64encode(b"scan.zip").decode()},
    )
    first = requests.patch(
        base + created.headers["Location"], data=source.read_bytes()[:MiB], timeout=30,
        headers={**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert first.status_code == 204
    page.reload()
    expect(page.locator(".uploader")).to_be_visible()
    return source


def test_an_upload_the_portal_cannot_take_now_does_not_blame_the_connection(
    browser: Browser, portal, mailbox: Mailbox, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """A 423 (the upload is still held by a request on a node that died) is
    the portal's trouble, not the sender's connection; the page goes on by itself."""
    app, base = portal
    visit = new_visit(browser, "portal-unavailable")
    page = visit.page
    source = _first_mib_in_before_a_reload(visit, mailbox, base, tmp_path)
    store = app.extensions["koerier"].store
    with app.app_context(), db.new_session(app) as session:
        upload = session.scalars(select(Upload)).one()
        with store.resume(session, upload, session.commit):
            session.commit()  # the lock stays; the database is free
            page.locator("#picker").set_input_files(source)
            status = page.locator(".upload", has_text="scan.zip").locator(".upload-status")
            expect(status).to_have_text("The portal is temporarily unavailable; trying again…")
            visit.errors.clear()  # the 423 answer, which the console reports
            visit.check("portal-unavailable")
    expect(status).to_have_text("Uploaded", timeout=60_000)
    with app.app_context():
        [stored] = db.session().scalars(select(StoredFile)).all()
    assert stored.id == upload.id  # resumed, not started again


def test_an_upload_gone_from_the_portal_starts_anew_on_retry(
    browser: Browser, portal, mailbox: Mailbox, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """An upload the portal no longer has (removed in another tab, or its
    bytes lost) says so; Retry then sends the file as a new upload, rather
    than asking again at the address that is gone."""
    app, base = portal
    visit = new_visit(browser, "upload-gone")
    page = visit.page
    source = _first_mib_in_before_a_reload(visit, mailbox, base, tmp_path)
    with app.app_context(), db.new_session(app) as session:
        gone = session.scalars(select(Upload)).one()
    store = app.extensions["koerier"].store
    (store.root / gone.blob_key[:2] / (gone.blob_key + ".partial")).unlink()
    page.locator("#picker").set_input_files(source)
    item = page.locator(".upload", has_text="scan.zip")
    expect(item.locator(".upload-status")).to_have_text("This upload does not exist any more. Please add the file again.")
    visit.errors.clear()  # the 410 answer, which the console reports
    item.get_by_role("button", name="Retry: scan.zip").click()
    expect(item.locator(".upload-status")).to_have_text("Uploaded", timeout=60_000)
    with app.app_context():
        [stored] = db.session().scalars(select(StoredFile)).all()
    assert stored.id != gone.id and stored.size == 3 * MiB


@pytest.mark.setup("embedded")  # the embedded database, locked by the test
def test_an_upload_the_database_cannot_take_now_does_not_blame_the_virus_scanner(
    browser: Browser, portal, mailbox: Mailbox, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """Review: every 503 with words (the database or the file store out of
    reach, whose answers say so) read "The virus scanner is not available
    right now; trying again…", on a portal without a virus scanner too."""
    app, base = portal
    source = tmp_path / "verslag.pdf"
    random_file(source, MiB)
    visit = new_visit(browser, "database-unavailable")
    page = visit.page
    to_files_step(visit, mailbox, base)
    expect(page.locator(".uploader")).to_be_visible()
    # Another process writes for longer than the portal waits for it, from the upload's first PATCH on.
    database = app.extensions["koerier.engine"].url.database
    writer = sqlite3.connect(database, isolation_level=None, check_same_thread=False)

    def hold_the_database(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.method == "PATCH" and not writer.in_transaction:
            writer.execute("BEGIN IMMEDIATE")
        route.continue_()

    page.route("**/send/uploads/*", hold_the_database)
    status = page.locator(".upload", has_text="verslag.pdf").locator(".upload-status")
    try:
        page.locator("#picker").set_input_files(source)
        expect(status).to_have_text("The portal is temporarily unavailable; trying again…", timeout=60_000)
    finally:
        page.unroute("**/send/uploads/*")
        if writer.in_transaction:
            writer.execute("ROLLBACK")
        writer.close()
    visit.errors.clear()  # the 503 answers, which the console reports
    expect(status).to_have_text("Uploaded", timeout=60_000)


def test_no_speed_or_time_left_in_the_first_seconds_of_an_upload(
    browser: Browser, portal, mailbox: Mailbox, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """They say little yet (right after a resume they said "12 minutes left"
    for a few seconds). Time on the page's clock, which the test moves on."""
    _, base = portal
    visit = new_visit(browser, "estimate-waits")
    page = visit.page
    page.clock.install()
    to_files_step(visit, mailbox, base)
    source = tmp_path / "scan.zip"
    random_file(source, 20 * MiB)
    cdp = visit.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 2 * MiB})
    expect(page.locator(".uploader")).to_be_visible()
    page.clock.pause_at(datetime.now() + timedelta(seconds=1))
    page.locator("#picker").set_input_files(source)
    item = page.locator(".upload", has_text="scan.zip")

    def sent() -> float:
        return float(item.locator("progress").get_attribute("value") or 0)

    def bytes_flow() -> None:
        before = sent()
        wait_for(lambda: sent() > before + 64 * 1024, "more bytes sent")

    bytes_flow()
    page.clock.run_for(1000)
    bytes_flow()
    expect(item.locator(".upload-status")).to_have_text("Uploading")
    page.clock.run_for(3000)
    bytes_flow()
    expect(item.locator(".upload-status")).to_contain_text("/s · ")


def test_a_password_the_live_check_passes_clears_the_servers_refusal(
    browser: Browser, make_live, mailbox: Mailbox  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    agb = {"name": "AGB", "regex": r"^Agb\d{8}!$", "hint": "Agb + your AGB code + !"}
    make_live({"site": {"base_url": base}, "password": {"patterns": [agb]}}, port=port)
    visit = new_visit(browser, "password-refusal-overtaken")
    page = visit.page
    to_files_step(visit, mailbox, base)
    page.get_by_label("Confidential message").fill("Zie het dossier.")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Enter password manually").check()
    # One word for the agreement, in the hint and in the refusal.
    expect(page.locator("#password-rules")).to_contain_text("Or use the agreed convention: Agb + your AGB code + !")
    page.get_by_label("Password", exact=True).fill("Summer2026!!")
    page.get_by_label("Repeat password").fill("Summer2026!!")
    page.get_by_role("button", name="Next").click()
    refusal = "This password is too easy to guess. Choose a longer one, or use the agreed convention."
    stale = page.locator("#password-error")
    expect(stale).to_have_text(refusal)
    summary = page.locator(".error-summary")
    expect(summary).to_contain_text(refusal)
    page.wait_for_load_state()  # typing before the page's script runs would go unheard
    page.get_by_label("Password", exact=True).fill("Lighthouse pancake Zeeland 42")
    page.get_by_label("Repeat password").fill("Lighthouse pancake Zeeland 42")
    expect(page.locator("#strength-live")).to_contain_text("Password strength: Strong")
    expect(stale).to_be_hidden()
    expect(summary).to_be_hidden()
    expect(page.get_by_label("Password", exact=True)).not_to_have_attribute("aria-invalid", "true")
    visit.check("refusal-cleared")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Notification mail")).to_be_visible()


def _live_with(make_live, config: dict):  # type: ignore[no-untyped-def]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app, server = make_live({"site": {"base_url": base}, **config}, port=port)
    return app, base


def _open_with_password(visit: Visit, base: str, access_id: str, password: str) -> None:
    page = visit.page
    page.goto(f"{base}/download/?id={access_id}")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()


def test_a_recipient_confirms_with_a_mailed_code_and_a_forwarded_link_opens_nothing(
    browser: Browser, make_live, mailbox: Mailbox
) -> None:
    app, base = _live_with(make_live, {"transfer": {"recipient_verification": "email"}})
    access_id = Sender(app, mailbox).send().access_id("anna@gemeente.example")
    mailbox.clear()
    # Someone who was forwarded Anna's mail and told the password, without her mailbox.
    stranger = new_visit(browser, "code-forwarded")
    _open_with_password(stranger, base, access_id, PASSWORD)
    code = mailbox.code_for("anna@gemeente.example")
    page = stranger.page
    expect(page.get_by_text("A one-time code was sent to a•••@gemeente.example")).to_be_visible()
    guess = "123456" if code != "123456" else "654321"
    page.get_by_label("Verification code").fill(guess)
    page.get_by_role("button", name="Open transfer").click()
    expect(page.get_by_text("This code is not correct. You have 4 more attempts.").first).to_be_visible()
    stranger.check("code-wrong")
    page.goto(base + "/download/transfer")
    expect(page.get_by_role("heading", name="Receive transfer")).to_be_visible()
    # Anna herself: her code comes to her mailbox, in her own browser.
    mailbox.clear()
    anna = new_visit(browser, "code-email")
    _open_with_password(anna, base, access_id, PASSWORD)
    anna.check("code-email")
    page = anna.page
    page.get_by_label("Verification code").fill(mailbox.code_for("anna@gemeente.example"))
    page.get_by_role("button", name="Open transfer").click()
    # Checked before the download: a click that starts one leaves the page
    # waiting for a load that never comes, which check() would wait out.
    expect(page.get_by_role("link", name="Download verslag.pdf")).to_be_visible()
    anna.check("code-email-opened")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download verslag.pdf").click()
    assert Path(download.value.path()).read_bytes() == b"%PDF-1.4 test report\n"


def test_a_recipient_confirms_with_a_code_by_sms_and_wrong_codes_lock(
    browser: Browser, make_live, mailbox: Mailbox, sms_gateway
) -> None:
    app, base = _live_with(make_live, {"sms": sms_gateway.config(), "transfer": {"recipient_verification": "sms"}})
    sender = new_visit(browser, "code-sms-send")
    page = sender.page
    page.goto(base + "/send/")
    send_personal_and_verify(sender, mailbox, "Jan de Vries", "jan@zorg.example", EN)
    page.get_by_label("To").fill("anna@gemeente.example")
    page.get_by_role("button", name="Next").click()
    # The number is asked for each recipient, and checked.
    page.get_by_label("anna@gemeente.example").fill("0592 123456")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("“0592 123456” is a fixed line").first).to_be_visible()
    expect(page.get_by_label("To")).to_have_value("anna@gemeente.example")
    sender.check("recipients-mobile-refused")
    page.get_by_label("anna@gemeente.example").fill("06 12345678")
    page.get_by_role("button", name="Next").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Add files / Browse").click()
    chooser.value.set_files([PDF])
    expect(page.locator(".upload", has_text="verslag.pdf").locator(".upload-status")).to_contain_text("Uploaded")
    start_with_manual_password(page)
    access_id = mailbox.access_id_for("anna@gemeente.example")

    recipient = new_visit(browser, "code-sms")
    _open_with_password(recipient, base, access_id, PASSWORD)
    page = recipient.page
    expect(page.get_by_text("A one-time code was sent by SMS to •••• 78")).to_be_visible()
    recipient.check("code-sms")
    # "Send the code again" stands apart from the button, not stuck to its edge.
    opened = page.get_by_role("button", name="Open transfer").bounding_box()
    again = page.get_by_role("button", name="Send the code again").bounding_box()
    assert opened and again and again["y"] - (opened["y"] + opened["height"]) >= 8
    code = sms_gateway.code_for("31612345678")
    wrong = "123456" if code != "123456" else "654321"
    for _ in range(5):
        page.get_by_label("Verification code").fill(wrong)
        page.get_by_role("button", name="Open transfer").click()
    expect(page.get_by_text(re.compile("Too many wrong codes. Please try again after"))).to_be_visible()
    expect(page.get_by_label("Verification code")).to_have_count(0)
    recipient.check("code-sms-locked")
    # The lock is over: the old code is void, a new one opens the transfer.
    with db.new_session(app) as session:
        from app.models import AccessThrottle, CodeChallenge

        session.execute(update(AccessThrottle).values(locked_until=utcnow() - timedelta(seconds=1)))
        session.execute(update(CodeChallenge).values(code_sent_at=utcnow() - timedelta(minutes=2)))
        session.commit()
    page.reload()
    page.get_by_role("button", name="Send the code again").click()
    expect(page.get_by_text("A new code has been sent to •••• 78")).to_be_visible()
    page.get_by_label("Verification code").fill(sms_gateway.code_for("31612345678"))
    page.get_by_role("button", name="Open transfer").click()
    expect(page.get_by_role("link", name="Download verslag.pdf")).to_be_visible()
