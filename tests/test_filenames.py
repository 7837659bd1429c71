"""File names land where they say: no paths, nothing Windows reads otherwise."""

from __future__ import annotations

import io
import zipfile

import pytest

from app.uploads import clean_filename

from .test_tus import TusSender


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("..\\..\\x.exe", "x.exe"),
        ("C:\\Users\\x\\doc.pdf", "doc.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:evil.txt", "evil.txt"),
        ("CON.txt", "_CON.txt"),
        ("con", "_con"),
        ("aux.tar.gz", "_aux.tar.gz"),
        ("NUL .txt", "_NUL .txt"),
        ("COM1.pdf", "_COM1.pdf"),
        ("lpt9", "_lpt9"),
        ("name.", "name"),
        ("name. . ", "name"),
        ('a<b>c?"d|e*f:g.txt', "a_b_c__d_e_f_g.txt"),
        ("console.txt", "console.txt"),
        ("Verslag 2026 (def).pdf", "Verslag 2026 (def).pdf"),
        ("...", "file"),
    ],
)
def test_clean_filename(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


def test_a_long_name_keeps_its_extension_and_no_trailing_dot() -> None:
    name = clean_filename("a" * 150 + ". " * 40 + ".pdf")
    assert len(name) <= 200 and name.endswith(".pdf") and not name[:-4].endswith((" ", "."))


NAMES = {
    # sent name -> the name the recipient gets
    "..\\..\\x.exe": "x.exe",
    "C:\\Users\\x\\doc.pdf": "doc.pdf",
    "C:evil.txt": "evil.txt",
    "CON.txt": "_CON.txt",
    "aux.tar.gz": "_aux.tar.gz",
    "name.": "name",
    "a<b>c?.txt": "a_b_c_.txt",
}


def test_stored_names_and_zip_entries_are_bare_windows_safe_names(make_app, mailbox) -> None:
    app = make_app({"transfer": {"allowed_extensions": ["*"]}})
    sender = TusSender(app, mailbox).ready()
    contents = {}
    for n, name in enumerate(NAMES):
        data = f"file {n}".encode()
        location = sender.create(len(data), name=name).headers["Location"]
        assert sender.patch(location, 0, data).status_code == 204
        contents[NAMES[name]] = data
    # A form upload whose client escapes backslashes in the quoted file name, as RFC 7578 allows.
    form = sender.files([("..\\\\..\\\\form.pdf", b"form file")], action="upload")
    assert form.status_code == 302
    contents["form.pdf"] = b"form file"

    recipient = sender.open_uploaded()
    links = recipient.file_links()
    assert sorted(links) == sorted(contents)
    for name, href in links.items():
        r = recipient.get(href)
        assert r.data == contents[name]
        assert f"filename*=UTF-8''{name}" in r.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(recipient.get("/download/all").data)) as archive:
        assert sorted(archive.namelist()) == sorted(contents)
        for name, data in contents.items():
            assert archive.read(name) == data

