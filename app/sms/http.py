"""A provider's HTTP API: one request per message, as ``[sms]`` describes it.

The body is the operator's template (a table) with the placeholders in its
strings replaced, sent as JSON or as a form; the values are put into the
structure, so a message can never change its shape. Any 2xx answer counts
as taken; anything else, and no answer within ``timeout_seconds``, is an
``SmsError``. A redirect too: followed, the message would go as a GET
without its body (whose 200 took nothing), with the auth header, to
wherever it points. The standard library's client: one request per
message needs no connection pool.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

from .. import metrics
from ..settings import Sms
from . import SmsError, TextMessage, masked

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"\{(number|msisdn|text)\}")


def fill(template: Any, values: dict[str, str]) -> Any:
    """The template with every placeholder in its strings replaced, in one pass
    (a message that contains "{number}" stays as it is)."""
    if isinstance(template, str):
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, values) for value in template]
    return template


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None  # the 3xx is then an HTTPError


class HttpGateway:
    def __init__(self, config: Sms) -> None:
        self.config = config
        self.opener = urllib.request.build_opener(_NoRedirects)

    def send(self, message: TextMessage) -> None:
        c = self.config
        body = fill(c.body, {"number": message.number, "msisdn": message.number.lstrip("+"), "text": message.text})
        if c.body_format == "json":
            data, content_type = json.dumps(body).encode(), "application/json"
        else:
            data, content_type = urlencode(body).encode(), "application/x-www-form-urlencoded"
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if c.auth_header:
            headers[c.auth_header] = c.auth_value
        request = urllib.request.Request(c.url, data=data, headers=headers, method=c.method)
        try:
            with self.opener.open(request, timeout=c.timeout_seconds) as answer:
                answer.read(64 * 1024)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # An HTTPError (a non-2xx answer) is a URLError too. Neither the
            # text (a code, a password) nor the whole number goes to the log.
            metrics.SMS_FAILED.inc()
            log.error("SMS to %s via %s failed: %s", masked(message.number), urlsplit(c.url).netloc, exc)
            raise SmsError(str(exc)) from exc
