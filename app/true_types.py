"""True file types: a file's first bytes must not contradict its name.

A program, a script or an archive sent under the name of a document or an
image ("report.pdf" that is a Windows program) is refused. What the bytes
are is told by puremagic, a maintained table of file signatures in pure
Python (no libmagic to install); what counts as a program, a script or an
archive is decided here. The rule:

- A name without an extension claims no type: there is nothing to contradict.
- What the content is, its first signature says (a self-extracting archive
  is a program). When that makes it a program, a script (``#!``) or an
  archive, the name must say so: by an extension of the same kind (.exe,
  .dll …; .sh, .py …; .zip, .7z, .tgz …, and the ZIP-based documents such
  as .docx or .odt, which are archives inside), or by one the same
  signature also stands for (OLE2 is an .msi, and a .doc or an .xls).
- Anything else is let through: content the detector does not know, and
  harmless disagreements (a PNG named .jpg, which every viewer opens).
  Text has no signature, so refusing the unknown would refuse every .txt
  and every damaged or unusual but genuine file; and the check is about
  disguise: malware in content of any type is the virus scanner's to find
  (app/scanning.py).

Only signatures at the start count: the detector is given the first
``HEAD_BYTES`` of the plaintext, never the file's end, so signatures it
matches at the end of what it was given are ignored.
"""

from __future__ import annotations

import puremagic

from .crypto.stream import SEGMENT_SIZE

PROGRAM, SCRIPT, ARCHIVE = "program", "script", "archive"
# One segment: more than the detector ever looks at (its deepest signature,
# ISO 9660's, ends at 36,870 bytes), and what a resumable upload's first
# segment holds.
HEAD_BYTES = SEGMENT_SIZE

_KINDS = {
    PROGRAM: frozenset({
        "exe", "dll", "com", "scr", "sys", "ocx", "cpl", "drv", "pif", "msi", "msix", "appx", "lnk", "class",
        "elf", "so", "dylib", "o", "bin", "app",
    }),
    SCRIPT: frozenset({
        "sh", "bash", "zsh", "ksh", "csh", "command", "py", "pl", "rb", "php", "lua", "tcl", "awk", "js", "vbs",
        "vbe", "wsf", "hta", "ps1", "psm1", "bat", "cmd", "reg",
    }),
    ARCHIVE: frozenset({
        "zip", "rar", "7z", "gz", "gzip", "tgz", "bz2", "bzip2", "tbz", "tbz2", "xz", "txz", "lzma", "z", "lz", "lz4",
        "zst", "tzst", "cab", "tar", "ace", "arc", "arj", "lzh", "lha", "sit", "sitx", "cpio", "rpm", "deb", "ar",
        "iso", "img", "vhd", "vhdx", "dmg", "jar", "apk",
    }),
}
# Documents that are ZIP archives inside: names an archive may have. Their
# signatures in the detector's table tell nothing beyond "a ZIP": those
# further in ("text" at byte 73 for an .odt) are found in any text.
_ZIP_BASED = frozenset({
    "docx", "docm", "dotx", "dotm", "xlsx", "xlsm", "xlsb", "xltx", "xltm", "pptx", "pptm", "ppsx", "ppsm", "potx",
    "potm", "odt", "ott", "ods", "ots", "odp", "otp", "odg", "otg", "odf", "odb", "epub", "xps", "oxps", "vsdx", "kmz",
})
# Programs the detector names without an extension (ELF, Mach-O).
_PROGRAM_NAMES = ("executable", "mach-o")
# Kinds the detector also finds in harmless files, by signatures that tell
# nothing: Python in any text that starts "import ", a shell script in any
# with "# This is " at its tenth byte, Ruby in Rocket eBooks, Corel palettes
# as .cpl, bitmaps as .img. Real scripts start with "#!", and the programs
# and archives among these have signatures of their own.
_NOT_TELLING = frozenset({"py", "sh", "rb", "csh", "cpl", "img", "bin"})


def extension(name: str) -> str:
    """The last extension, lower case, without the dot (``a.tar.gz``: "gz"); "" for none (``.profile`` too)."""
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def _last(detected: str) -> str:
    """A detected signature's extension (".tar.gz", ".Z", "xlsx") as ``extension`` gives a name's."""
    return detected.rpartition(".")[2].lower()


def _content_kind(match: puremagic.PureMagicWithConfidence) -> str | None:
    """The kind of content a detected signature stands for, if it is one that is checked."""
    if any(word in match.name.lower() for word in _PROGRAM_NAMES):
        return PROGRAM
    ext = _last(match.extension)
    return None if ext in _NOT_TELLING else _kind_of(ext)


def _kind_of_name(ext: str) -> str | None:
    return ARCHIVE if ext in _ZIP_BASED else _kind_of(ext)


def _kind_of(ext: str) -> str | None:
    return next((kind for kind, names in _KINDS.items() if ext in names), None)


def disguise(name: str, head: bytes) -> str | None:
    """What the content starting with ``head`` is when ``name`` hides it:
    PROGRAM, SCRIPT or ARCHIVE; None when the two do not disagree."""
    ext = extension(name)
    if not ext or not head:
        return None
    try:
        found = [m for m in puremagic.magic_string(head[:HEAD_BYTES]) if m.offset >= 0]
    except puremagic.PureError:
        found = []
    telling = [(m.offset, m.byte_match, kind) for m in found if (kind := _content_kind(m))]
    # The kernel runs any file that starts so; the detector knows only some interpreters.
    if head.startswith(b"#!"):
        telling.append((0, b"#!", SCRIPT))
    if not telling:
        return None
    # What a file is, its first signature says (a self-extracting archive is a
    # program): one further in cannot vouch for it, or a program could carry
    # an OpenDocument's "text" at byte 73 and pass as an .odt.
    first = min(offset for offset, _, _ in telling)
    for offset, signature, kind in telling:
        if offset != first or _kind_of_name(ext) == kind:
            continue
        # The same signature, or a longer one, also names the file's extension: OLE2 is an .msi and a .doc.
        if not any(
            _last(m.extension) == ext and m.offset == offset and m.byte_match.startswith(signature) for m in found
        ):
            return kind
    return None
