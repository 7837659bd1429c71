"""Receiving files from a plain HTML form without ever holding plaintext.

Werkzeug's own form parser spools large files into temporary files, which
would put plaintext on disk. Here the multipart body is decoded as it
streams in and each file's bytes go straight into a ``SegmentWriter``, so
what reaches the disk is ciphertext and at most one 64 KiB segment is in
memory per upload.

Form fields that precede the files (the CSRF token, the confidential
message) are read first, which is why the form puts them first: no file byte
is stored before the CSRF token has been checked.
"""

from __future__ import annotations

import itertools
import mimetypes
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy.orm import Session
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from . import drafts
from .crypto.keys import seal_text
from .crypto.stream import SegmentWriter
from .models import Draft, StoredFile
from .policy import Limits
from .portal import Portal

READ_SIZE = 256 * 1024
FIELD_LIMIT = 256 * 1024
MAX_NAME_CHARS = 200
# Characters that make a name lie about itself: bidi overrides and isolates
# ("invoice\u202Efdp.exe"), zero-width characters.
_INVISIBLE = {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


class UploadRejected(Exception):
    """The whole request is refused (bad CSRF token, malformed body)."""


@dataclass
class Received:
    fields: dict[str, str] = field(default_factory=dict)
    added: list[StoredFile] = field(default_factory=list)
    # (file name, why): "extension", "count" or "size"; nothing of these was stored.
    refused: list[tuple[str, str]] = field(default_factory=list)


_WINDOWS_FORBIDDEN = str.maketrans(dict.fromkeys('<>:"|?*', "_"))
# Windows opens the device, not a file, for these names with any extension.
_WINDOWS_DEVICES = {
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
    *(f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"),
}


def clean_filename(raw: str) -> str:
    """A display name that is also a safe file name where it is saved.

    No path (``/`` or ``\\``, and no drive: ``C:evil.txt`` is a path on
    drive C), no control or invisible characters, bounded; and nothing
    Windows would read otherwise: the characters ``<>:"|?*``, trailing dots
    and spaces, and device names such as ``CON.txt`` or ``aux.tar.gz``, so a
    file saved from a download or unpacked from "Download all" lands where
    its name says.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C" and ord(ch) not in _INVISIBLE)
    if name[1:2] == ":" and name[:1].isascii() and name[:1].isalpha():
        name = name[2:]
    name = name.translate(_WINDOWS_FORBIDDEN).strip(" .")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 10 else ""
        name = name[: MAX_NAME_CHARS - len(keep) - 1].rstrip(" .") + ("." + keep if keep else "")
    if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        name = "_" + name
    return name or "file"


def content_type_for(name: str) -> str:
    """Judged from the name, never from what the browser claims."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def sealed_name_and_type(dek: bytes, file_id: str, name: str) -> tuple[bytes, bytes]:
    """A file's name and content type, sealed as ``delivery.describe`` opens them."""
    return seal_text(dek, "name", file_id, name), seal_text(dek, "type", file_id, content_type_for(name))


def read_chunks(stream: BinaryIO, size: int = READ_SIZE) -> Iterable[bytes]:
    while chunk := stream.read(size):
        yield chunk


def receive(
    db: Session,
    portal: Portal,
    draft: Draft,
    stream: BinaryIO,
    boundary: bytes,
    check_csrf: Callable[[str], bool],
    limits: Limits,
) -> Received:
    dek = drafts.data_key(draft)
    # Werkzeug's max_form_memory_size bounds the decoder's raw buffer, which
    # holds a whole read chunk, not just a field; fields are bounded below.
    # The buffer stays small because every chunk is drained before the next.
    decoder = MultipartDecoder(boundary)
    result = Received()
    used = drafts.reserved_bytes(draft)
    count = len(draft.files) + len(draft.uploads)
    csrf_ok = False
    field_name: str | None = None
    field_buf = bytearray()
    upload: _OpenUpload | None = None
    skipping = False

    def finish_field() -> None:
        nonlocal csrf_ok
        value = field_buf.decode("utf-8", errors="replace")
        if field_name == "csrf_token":
            csrf_ok = check_csrf(value)
        elif field_name:
            result.fields[field_name] = value

    try:
        for chunk in itertools.chain(read_chunks(stream), [None]):
            decoder.receive_data(chunk)
            while True:
                event = decoder.next_event()
                if isinstance(event, NeedData):
                    break
                if isinstance(event, Field):
                    field_name, field_buf = event.name, bytearray()
                elif isinstance(event, File):
                    if not csrf_ok:
                        raise UploadRejected("CSRF token missing or wrong")
                    name = clean_filename(event.filename or "")
                    skipping = not event.filename
                    if not skipping and not limits.extension_allowed(name):
                        result.refused.append((name, "extension"))
                        skipping = True
                    if not skipping and count >= limits.max_files:
                        result.refused.append((name, "count"))
                        skipping = True
                    if not skipping:
                        upload = _OpenUpload(portal, dek, name, draft.transfer_id)
                        count += 1
                    field_name = None
                elif isinstance(event, Data):
                    if upload is not None:
                        if used + upload.size + len(event.data) > limits.max_total_bytes:
                            upload.abort()
                            result.refused.append((upload.name, "size"))
                            upload, skipping = None, True
                            count -= 1
                        else:
                            upload.write(event.data)
                    elif field_name is not None and not skipping:
                        field_buf += event.data
                        if len(field_buf) > FIELD_LIMIT:
                            raise UploadRejected(f"form field {field_name!r} is too large")
                    if not event.more_data:
                        if upload is not None:
                            result.added.append(upload.finish(draft, position=count))
                            used += upload.size
                            upload = None
                        elif field_name is not None:
                            finish_field()
                            field_name = None
                        skipping = False
                elif isinstance(event, Epilogue):
                    break
    except ValueError as exc:
        # Werkzeug's decoder signals a malformed body or an oversized field this way.
        raise UploadRejected(str(exc)) from None
    finally:
        if upload is not None:
            upload.abort()
    if not csrf_ok:
        raise UploadRejected("CSRF token missing or wrong")
    for stored in result.added:
        db.add(stored)
    drafts.touch(draft)
    return result


class _OpenUpload:
    """One file being written: ciphertext only, visible only once complete."""

    def __init__(self, portal: Portal, dek: bytes, name: str, transfer_id: str) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.dek = dek
        self.blob_key = portal.store.new_key()
        self._ctx = portal.store.create(self.blob_key)
        self._sink = self._ctx.__enter__()
        self._writer = SegmentWriter(self._sink, dek, transfer_id=transfer_id, file_id=self.id)

    @property
    def size(self) -> int:
        return self._writer.size

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def finish(self, draft: Draft, position: int) -> StoredFile:
        self._writer.close()
        self._ctx.__exit__(None, None, None)
        name_ct, type_ct = sealed_name_and_type(self.dek, self.id, self.name)
        return StoredFile(
            id=self.id, draft=draft, position=position, blob_key=self.blob_key, size=self._writer.size,
            name_ct=name_ct, type_ct=type_ct,
        )

    def abort(self) -> None:
        # Throwing into the store's context deletes the partial blob.
        err = RuntimeError("upload aborted")
        self._ctx.__exit__(RuntimeError, err, None)
