"""The language switch sends the browser back where it was, and only there."""

from __future__ import annotations

import re
from urllib.parse import quote, urljoin, urlsplit

import pytest

from .walker import BASE, Browser

HOSTILE = [
    "https://evil.example/",
    "https:evil.example",
    "http:/evil.example",
    "javascript:alert(1)",
    "//evil.example",
    "///evil.example",
    "////evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\r\nLocation: https://evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\x00/evil.example",
    "/\x0b/evil.example",
    "/\u00a0/evil.example",
    "/\u3000/evil.example",
    "/\u2028/evil.example",
    "/\u200b/evil.example",
    "\u00a0//evil.example",
    "//[evil.example",
    "evil.example",
]


def _browser_target(location: str) -> str:
    """Where a browser goes: it strips tabs and line breaks (and outer
    controls and spaces) and reads backslashes as slashes (WHATWG URL)."""
    cleaned = re.sub(r"[\t\n\r]", "", location.strip("".join(map(chr, range(33))))).replace("\\", "/")
    return urljoin(BASE + "/help", cleaned)


@pytest.mark.parametrize("target", HOSTILE)
@pytest.mark.parametrize("encoded", [True, False], ids=["encoded", "raw"])
def test_language_switch_never_leaves_the_site(app, target: str, encoded: bool) -> None:
    value = quote(target, safe="") if encoded else target
    # As a WSGI server hands over the raw bytes of the request line.
    query = ("next=" + value).encode("utf-8").decode("latin-1")
    r = Browser(app).get("/lang/nl", environ_overrides={"QUERY_STRING": query})
    assert r.status_code == 302
    location = r.headers["Location"]
    assert urlsplit(_browser_target(location)).netloc == "portal.example.nl"
    assert location.startswith("/") and not location.startswith("//")
    assert not re.search(r"[\x00-\x20\x7f\\]", location)


def test_language_switch_keeps_a_local_path_and_query(app) -> None:
    r = Browser(app).get("/lang/nl", query_string={"next": "/download/?id=ABCD-EFGH"})
    assert r.headers["Location"] == "/download/?id=ABCD-EFGH"
