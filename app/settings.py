"""The operator's configuration: read once from TOML, validated, then frozen.

Every key has a default so the portal starts with no file at all. A wrong key
or value stops start-up with a message that names it, because a typo in a
security setting that is silently ignored is worse than a portal that will not
start.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import addresses

# Every language the portal has catalogs for; `site.languages` picks those offered.
LANGUAGES = ("nl", "en", "de", "pl", "tr", "uk", "ar")
PASSWORD_MODES = ("none", "generate", "manual")
# How an option is set for the sender: fixed off, fixed on, or a default the
# sender may change (Cryptshare's "on/off" plus "may be changed").
TOGGLES = ("never", "off", "on", "always")
MESSAGE_RULES = ("forbidden", "allowed", "required")
# A recipient's second factor after the password or link, weakest first.
RECIPIENT_VERIFICATIONS = ("none", "email", "sms")
# The highest max_recipients an operator may set: every recipient's mail is
# sent while the sender waits for the summary page.
MAX_RECIPIENTS = 1000
# The Rijkscloud list of permitted extensions; "" stands for files without one.
DEFAULT_EXTENSIONS = [
    "eps", "gif", "jpeg", "jpg", "png", "doc", "docx", "odt", "xls", "xlsx", "ods", "pps", "ppsx", "ppt", "pptx",
    "odp", "zip", "rar", "7z", "gz", "tgz", "lzma", "cab", "gzip", "bzip2", "z", "bz2", "pdf", "txt", "",
]


LOGO_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


def contrast_with_white(color: str) -> float:
    """WCAG 2.1 contrast ratio of white against ``#rrggbb``."""

    def channel(hex2: str) -> float:
        c = int(hex2, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(color[i : i + 2]) for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return 1.05 / (luminance + 0.05)


class ConfigError(ValueError):
    """Raised with a message naming the offending key."""


# An operator's text: one for every language, or {language: text}.
Localized = str | dict[str, str]


def localized(value: Localized, language: str, fallback: str = "en") -> str:
    """The text for ``language``, else the ``fallback`` one (by default
    English: read by more of the residents whose language the operator did
    not write for than Dutch), else the first one given: a text written in
    one language only is still shown to readers of the others."""
    if isinstance(value, str):
        return value
    return value.get(language) or value.get(fallback) or next(iter(value.values()), "")


@dataclass(frozen=True)
class FooterLink:
    """A link in the footer of every page: a privacy or accessibility statement, contact."""

    label: Localized
    url: Localized

    def check(self, path: str) -> None:
        _check_localized(path, "label", self.label, 100, required=True, lines=False)
        _check_localized(path, "url", self.url, 2000, required=True, lines=False)
        for url in [self.url] if isinstance(self.url, str) else self.url.values():
            if not _http_url(url):
                raise ConfigError(f"{path}.url: {url!r} is not an http:// or https:// URL")


@dataclass(frozen=True)
class Site:
    name: str = "Koerier"
    base_url: str = "http://localhost:5000"
    default_language: str = "nl"
    # Offered in the language choice and to recipients, in this order.
    languages: list[str] = field(default_factory=lambda: list(LANGUAGES))
    timezone: str = "Europe/Amsterdam"
    # How many reverse proxies in front of the portal append to
    # X-Forwarded-For; 0 means the header is ignored (it can be forged).
    trusted_proxies: int = 0
    session_idle_minutes: int = 60
    session_absolute_hours: int = 12
    # A file in the instance folder (PNG, SVG, JPEG or WebP), shown in the header.
    logo: str = ""
    # Header and buttons; white text on it must meet WCAG AA contrast.
    accent_color: str = "#1d4f91"
    # The operator's own words: on the start page, in the footer of every
    # page, and at the end of every mail (each escaped, never markup).
    start_text: Localized = ""
    footer_links: list[FooterLink] = field(default_factory=list)
    mail_disclaimer: Localized = ""

    def check(self, path: str) -> None:
        _check_localized(path, "start_text", self.start_text, 2000)
        _check_localized(path, "mail_disclaimer", self.mail_disclaimer, 2000)
        if len(self.footer_links) > 10:
            raise ConfigError(f"{path}.footer_links: at most 10 links")
        if self.logo and (Path(self.logo).name != self.logo or Path(self.logo).suffix.lower() not in LOGO_TYPES):
            raise ConfigError(f"{path}.logo: a file name in the instance folder ending in {', '.join(LOGO_TYPES)}")
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", self.accent_color):
            raise ConfigError(f"{path}.accent_color: a colour as #rrggbb")
        if contrast_with_white(self.accent_color) < 4.5:
            raise ConfigError(
                f"{path}.accent_color: white text on {self.accent_color} has a contrast of "
                f"{contrast_with_white(self.accent_color):.1f}:1; WCAG AA needs 4.5:1, choose a darker colour"
            )
        _range(path, "trusted_proxies", self.trusted_proxies, 0, 5)
        _range(path, "session_idle_minutes", self.session_idle_minutes, 5, 24 * 60)
        _range(path, "session_absolute_hours", self.session_absolute_hours, 1, 24 * 30)
        if not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", self.base_url):
            raise ConfigError(f"{path}.base_url: must be an http:// or https:// URL")
        if not self.languages:
            raise ConfigError(f"{path}.languages: offer at least one language")
        for language in self.languages:
            _one_of(path, "languages", language, LANGUAGES)
        if len(set(self.languages)) != len(self.languages):
            raise ConfigError(f"{path}.languages: a language is listed twice")
        if self.default_language not in self.languages:
            raise ConfigError(
                f"{path}.default_language: {self.default_language!r} is not one of site.languages ({', '.join(self.languages)})"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{path}.timezone: unknown time zone {self.timezone!r}") from None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def https(self) -> bool:
        return self.base_url.startswith("https://")


@dataclass(frozen=True)
class Mail:
    backend: str = "outbox"
    outbox_dir: str = "outbox"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_security: str = "none"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: int = 30
    from_address: str = "koerier@localhost"

    def check(self, path: str) -> None:
        _one_of(path, "backend", self.backend, ("outbox", "smtp"))
        _one_of(path, "smtp_security", self.smtp_security, ("none", "starttls", "tls"))
        _range(path, "smtp_port", self.smtp_port, 1, 65535)
        _range(path, "smtp_timeout_seconds", self.smtp_timeout_seconds, 1, 600)
        if bool(self.smtp_username) != bool(self.smtp_password):
            raise ConfigError(f"{path}.smtp_password: give both smtp_username and smtp_password, or neither")
        if not re.match(r"^[^@\s<>\"]+@[^@\s<>\"]+$", self.from_address):
            raise ConfigError(f"{path}.from_address: not an email address")


@dataclass(frozen=True)
class Storage:
    database_url: str = ""
    blob_dir: str = "store"
    # Uploads that would leave less free space on the blob store's file
    # system, beside what uploads admitted before them announced, are
    # refused ("try later") instead of filling the disk.
    min_free_bytes: int = 1024**3
    # Who brings the schema up to this version's revision at start-up: the
    # embedded SQLite file upgrades itself, so the one-command start stays
    # one command; a shared database waits for the operator's
    # `flask db upgrade`, run once, with a backup at hand.
    auto_upgrade: str = "embedded"
    # Where the encrypted files go: "local" (blob_dir) or "s3", a bucket of
    # any S3-compatible object store.
    backend: str = "local"
    # Empty: AWS's own endpoint for s3_region.
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_region: str = ""
    # "path" (https://host/bucket/key) suits self-hosted stores; AWS prefers "virtual".
    s3_addressing_style: str = "path"
    # Empty: boto3's usual chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
    # ~/.aws/credentials, an instance role).
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # Prepended to every object name, so one bucket can serve several portals;
    # the clean-up job's sweep of unknown objects looks nowhere else.
    s3_prefix: str = "koerier/"

    def check(self, path: str) -> None:
        _one_of(path, "auto_upgrade", self.auto_upgrade, ("embedded", "always", "never"))
        if not self.blob_dir:
            raise ConfigError(f"{path}.blob_dir: must not be empty")
        _range(path, "min_free_bytes", self.min_free_bytes, 0, 2**60)
        _one_of(path, "backend", self.backend, ("local", "s3"))
        _one_of(path, "s3_addressing_style", self.s3_addressing_style, ("path", "virtual"))
        if self.s3_endpoint_url and not _http_url(self.s3_endpoint_url):
            raise ConfigError(f"{path}.s3_endpoint_url: {self.s3_endpoint_url!r} is not an http:// or https:// URL")
        if self.s3_region and not re.fullmatch(r"[a-z0-9-]{1,40}", self.s3_region):
            raise ConfigError(f"{path}.s3_region: {self.s3_region!r} is not a region name such as eu-west-1")
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            raise ConfigError(f"{path}.s3_secret_access_key: give both s3_access_key_id and s3_secret_access_key, or neither")
        if self.s3_prefix and not re.fullmatch(r"[A-Za-z0-9!_.*'()/-]{1,200}", self.s3_prefix) or self.s3_prefix.startswith("/"):
            raise ConfigError(f"{path}.s3_prefix: letters, digits and !_.*'()/- only, not starting with /, at most 200")
        if self.backend == "s3" and not re.fullmatch(r"[A-Za-z0-9._-]{3,255}", self.s3_bucket):
            raise ConfigError(f"{path}.s3_bucket: the name of an existing bucket (letters, digits, dots, dashes)")


@dataclass(frozen=True)
class Transfer:
    max_total_bytes: int = 10 * 1024**3
    max_files: int = 100
    # To, Cc and Bcc together. Each recipient costs a mail, a key slot and
    # an access ID, and an open portal must not become a relay.
    max_recipients: int = 50
    default_expiry_days: int = 7
    max_expiry_days: int = 30
    draft_ttl_hours: int = 24
    allowed_extensions: list[str] = field(default_factory=lambda: list(DEFAULT_EXTENSIONS))
    expose_filenames: str = "off"
    retrieval_notice: str = "off"
    confidential_message: str = "allowed"
    edit_notification: bool = True
    # A program, a script or an archive under another type's name is refused (app/true_types.py).
    check_content_type: bool = True
    # The least a recipient proves after the password or link: nothing, a
    # code mailed to their own address, or a code by SMS to the mobile
    # number the sender entered for them.
    recipient_verification: str = "none"
    # May the sender choose a stronger one than that on the options step?
    recipient_verification_choice: bool = False
    # A generated password goes to each recipient by SMS (never by mail),
    # instead of the sender passing it on; needs recipient_verification = "sms".
    password_by_sms: bool = False

    def check(self, path: str) -> None:
        _range(path, "max_total_bytes", self.max_total_bytes, 1, 2**50)
        _range(path, "max_files", self.max_files, 1, 10_000)
        _range(path, "max_recipients", self.max_recipients, 1, MAX_RECIPIENTS)
        _range(path, "max_expiry_days", self.max_expiry_days, 1, 3650)
        _range(path, "default_expiry_days", self.default_expiry_days, 1, self.max_expiry_days)
        _range(path, "draft_ttl_hours", self.draft_ttl_hours, 1, 24 * 30)
        _check_limits(path, self)


@dataclass(frozen=True)
class PasswordPattern:
    name: str
    regex: str
    hint: str | dict[str, str] = ""

    def check(self, path: str) -> None:
        if not self.name:
            raise ConfigError(f"{path}.name: must not be empty")
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ConfigError(f"{path}.regex: not a valid regular expression ({exc})") from None
        _check_localized(path, "hint", self.hint, 500)

    def hint_for(self, language: str) -> str:
        return localized(self.hint, language)

    def matches(self, password: str) -> bool:
        return re.fullmatch(self.regex, password) is not None


@dataclass(frozen=True)
class Password:
    modes: list[str] = field(default_factory=lambda: list(PASSWORD_MODES))
    default_mode: str = "manual"
    min_length: int = 10
    min_score: int = 3
    generated_groups: int = 5
    patterns: list[PasswordPattern] = field(default_factory=list)
    # Words anyone could guess for this portal (the municipality, its
    # places, the organisation): a password built on them counts as weak.
    guessable_words: list[str] = field(default_factory=list)

    def check(self, path: str) -> None:
        if not self.modes:
            raise ConfigError(f"{path}.modes: allow at least one mode")
        for mode in self.modes:
            _one_of(path, "modes", mode, PASSWORD_MODES)
        if self.default_mode not in self.modes:
            raise ConfigError(f"{path}.default_mode: must be one of the allowed modes {self.modes}")
        _range(path, "min_length", self.min_length, 4, 256)
        _range(path, "min_score", self.min_score, 0, 4)
        _range(path, "generated_groups", self.generated_groups, 4, 16)
        if len(self.guessable_words) > 1000:
            raise ConfigError(f"{path}.guessable_words: at most 1000 words")
        for word in self.guessable_words:
            if not 3 <= len(word.strip()) <= 100:
                raise ConfigError(f"{path}.guessable_words: {word!r} must have 3 to 100 characters")


@dataclass(frozen=True)
class Verification:
    code_length: int = 8
    code_ttl_minutes: int = 15
    max_attempts: int = 5
    resend_cooldown_seconds: int = 60
    remember_days: int = 0
    # How long a verified address opens My transfers in its browser session.
    my_transfers_minutes: int = 30

    def check(self, path: str) -> None:
        _range(path, "code_length", self.code_length, 6, 12)
        _range(path, "code_ttl_minutes", self.code_ttl_minutes, 1, 24 * 60)
        _range(path, "max_attempts", self.max_attempts, 1, 20)
        _range(path, "resend_cooldown_seconds", self.resend_cooldown_seconds, 0, 3600)
        _range(path, "remember_days", self.remember_days, 0, 365)
        _range(path, "my_transfers_minutes", self.my_transfers_minutes, 1, 24 * 60)


@dataclass(frozen=True)
class RecipientCodes:
    """The one-time code a recipient enters after the password or link
    (``recipient_verification``), by mail or SMS."""

    code_length: int = 6
    code_ttl_minutes: int = 15
    # Wrong codes for one recipient's transaction ID, whichever browser or
    # code they were typed for, before a lockout; after it a new code is needed.
    max_attempts: int = 5
    # The first lockout; each next one doubles, up to download.max_lockout_hours.
    lockout_minutes: int = 15
    resend_cooldown_seconds: int = 60

    def check(self, path: str) -> None:
        _range(path, "code_length", self.code_length, 6, 8)
        _range(path, "code_ttl_minutes", self.code_ttl_minutes, 1, 60)
        _range(path, "max_attempts", self.max_attempts, 1, 20)
        _range(path, "lockout_minutes", self.lockout_minutes, 1, 24 * 60)
        _range(path, "resend_cooldown_seconds", self.resend_cooldown_seconds, 0, 3600)


SMS_PLACEHOLDERS = ("number", "msisdn", "text")
_SMS_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Sms:
    """The SMS gateway: off, a provider's HTTP API, or an outbox folder for development.

    ``body`` is the request body as a table: sent as JSON, or (``body_format
    = "form"``) as a form of its keys. In its strings ``{number}`` becomes the
    recipient's number as +31612345678, ``{msisdn}`` as 31612345678, and
    ``{text}`` the message; the values are put into the structure, never
    pasted into JSON text, so nothing a sender types can change its shape.
    """

    backend: str = "off"
    url: str = ""
    method: str = "POST"
    # e.g. "Authorization" with "AccessKey ..." (MessageBird), "Bearer ..." (Spryng).
    auth_header: str = ""
    auth_value: str = ""
    body_format: str = "json"
    body: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: int = 5

    def check(self, path: str) -> None:
        _one_of(path, "backend", self.backend, ("off", "http", "outbox"))
        _one_of(path, "method", self.method, ("POST", "PUT"))
        _one_of(path, "body_format", self.body_format, ("json", "form"))
        _range(path, "timeout_seconds", self.timeout_seconds, 1, 30)
        if bool(self.auth_header) != bool(self.auth_value):
            raise ConfigError(f"{path}.auth_value: give both auth_header and auth_value, or neither")
        if self.auth_header and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", self.auth_header):
            raise ConfigError(f"{path}.auth_header: a header name such as Authorization")
        if _CONTROL.search(self.auth_value):
            raise ConfigError(f"{path}.auth_value: no control characters or line breaks")
        if self.backend != "http":
            return
        if not _http_url(self.url):
            raise ConfigError(f"{path}.url: the gateway's http:// or https:// URL")
        strings = list(_strings(self.body, f"{path}.body"))
        if self.body_format == "form" and any(not isinstance(v, (str, int)) for v in self.body.values()):
            raise ConfigError(f"{path}.body: a form body holds texts and numbers only, no tables or lists")
        used = {name for _, text in strings for name in _SMS_PLACEHOLDER.findall(text)}
        for where, text in strings:
            for name in _SMS_PLACEHOLDER.findall(text):
                if name not in SMS_PLACEHOLDERS:
                    raise ConfigError(
                        f"{where}: unknown placeholder {{{name}}}; use {{number}}, {{msisdn}} or {{text}}"
                    )
        if "text" not in used or not used & {"number", "msisdn"}:
            raise ConfigError(f"{path}.body: must contain {{text}} and {{number}} (or {{msisdn}})")


def _strings(value: Any, where: str) -> Any:
    """Every text in a body template, with where it is; other values must be JSON's."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")
    elif not isinstance(value, (bool, int, float)):
        raise ConfigError(f"{where}: texts, numbers, true/false, lists and tables only")


@dataclass(frozen=True)
class Download:
    max_attempts: int = 5
    lockout_minutes: int = 15
    # Each further lockout of the same ID doubles, up to this.
    max_lockout_hours: int = 24
    grant_minutes: int = 60
    notify_sender_on_lockout: bool = True
    delete_on_lockout: bool = False

    def check(self, path: str) -> None:
        _range(path, "max_attempts", self.max_attempts, 1, 100)
        _range(path, "lockout_minutes", self.lockout_minutes, 1, 24 * 60)
        _range(path, "max_lockout_hours", self.max_lockout_hours, 1, 24 * 30)
        _range(path, "grant_minutes", self.grant_minutes, 1, 24 * 60)


@dataclass(frozen=True)
class Limits:
    """Rate limits, counted in the database so every worker sees the same numbers."""

    # Per address and browser: another browser cannot use up a sender's quota.
    verification_mails_per_address_per_hour: int = 5
    # Per address and client network (an IPv4 address or IPv6 /64), all
    # browsers together: bounds the mail one network can have sent to an
    # address, and whoever uses it up blocks only their own network.
    verification_mails_per_address_per_ip_per_day: int = 20
    # All networks together: every code mailed allows max_attempts guesses,
    # so this bounds the guesses at an address's codes from any number of
    # networks (1,000 a day at the defaults, against 10^8 codes), while
    # using it up takes ten networks' worth of mail to that address.
    verification_mails_per_address_per_day: int = 200
    # "ip" here and below: a client network, as above.
    verification_mails_per_ip_per_hour: int = 20
    failed_downloads_per_ip_per_hour: int = 30
    # Transfers opened (download sessions started) with one recipient's ID,
    # by whoever holds its password or link.
    unlocks_per_recipient_per_hour: int = 30
    # Per sender, that is per mailbox ("+tags" do not count): the transfers
    # started in a day ...
    transactions_per_sender_per_day: int = 50
    # ... and their To, Cc and Bcc together.
    recipients_per_sender_per_day: int = 250
    # The same, of all senders on one client network together.
    recipients_per_ip_per_day: int = 250
    # A notification mail sent again from My transfers, per recipient of a transfer.
    notification_resends_per_recipient_per_day: int = 3
    # A request body that sends nothing for this long ends its request.
    upload_read_timeout_seconds: int = 30
    # Uploads running at once (form posts, resumable creations and chunks).
    concurrent_uploads_per_sender: int = 4
    concurrent_uploads_per_ip: int = 8
    # Unfinished transfers holding files (from their first upload) per client address (an IPv6 /64).
    open_drafts_per_ip: int = 50
    # A verified sender's drafts holding uploads; older ones are discarded.
    open_drafts_per_sender: int = 3
    # Bytes stored (or announced by running uploads) in one sender's drafts.
    draft_bytes_per_sender: int = 20 * 1024**3
    # Codes sent to one recipient (by mail or SMS) in a day, from all browsers:
    # bounds the mail and SMS (which cost money) that a forwarded link can cause.
    recipient_codes_per_recipient_per_day: int = 10

    def check(self, path: str) -> None:
        ranges = {"upload_read_timeout_seconds": (1, 3600), "draft_bytes_per_sender": (1, 2**50)}
        for f in dataclasses.fields(self):
            _range(path, f.name, getattr(self, f.name), *ranges.get(f.name, (1, 100_000)))


@dataclass(frozen=True)
class Retention:
    """The clean-up job: expiry, abandoned drafts, notices, reminders, the audit trail's term."""

    scheduler: bool = True
    interval_minutes: int = 5
    # A retrieval notice goes out once a download session was quiet this long,
    # for all of its recipient's unreported sessions; at most one per recipient
    # in this time.
    notice_quiet_minutes: int = 3
    reminder_days_before: int = 0
    # The trail holds addresses and IP addresses: the AVG's storage limitation
    # wants a term, so there is no "forever" (a longer legal duty sets a
    # longer term, up to a century).
    audit_months: int = 24

    def check(self, path: str) -> None:
        _range(path, "interval_minutes", self.interval_minutes, 1, 24 * 60)
        _range(path, "notice_quiet_minutes", self.notice_quiet_minutes, 1, 24 * 60)
        _range(path, "reminder_days_before", self.reminder_days_before, 0, 365)
        _range(path, "audit_months", self.audit_months, 1, 1200)


@dataclass(frozen=True)
class Metrics:
    """Prometheus metrics at /metrics, for the addresses in ``allow`` only.

    An address is the client's as the rate limits see it: behind
    ``site.trusted_proxies`` proxies, taken from X-Forwarded-For, so a
    forged header passes no more here than there.
    """

    enabled: bool = False
    allow: list[str] = field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])

    def check(self, path: str) -> None:
        for network in self.allow:
            try:
                ipaddress.ip_network(network)
            except ValueError:
                raise ConfigError(
                    f"{path}.allow: {network!r} is not an address or a network such as \"10.0.5.0/24\""
                ) from None

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in ipaddress.ip_network(network) for network in self.allow)


SCAN_RULES = ("required", "off")


@dataclass(frozen=True)
class Scan:
    """Malware scanning of every uploaded file by ClamAV's daemon (app/scanning.py)."""

    backend: str = "off"
    # "tcp://host:port" or "unix:///path/to/clamd.ctl".
    clamd_address: str = "tcp://127.0.0.1:3310"
    # How long clamd may take to accept the connection, to take a chunk, or to answer.
    timeout_seconds: int = 60
    # When clamd cannot give a verdict: the file is refused ("try again
    # later"), or accepted and recorded as unscanned in the audit trail.
    on_unavailable: str = "refuse"
    # clamd's own StreamMaxLength default (100M); set it to clamd's setting.
    # A larger file cannot be scanned, so where scanning is required it is refused.
    max_stream_bytes: int = 100 * 1024**2

    def check(self, path: str) -> None:
        _one_of(path, "backend", self.backend, ("off", "clamd"))
        _one_of(path, "on_unavailable", self.on_unavailable, ("refuse", "accept"))
        _range(path, "timeout_seconds", self.timeout_seconds, 1, 3600)
        # clamd reads StreamMaxLength as a size below 4 GiB.
        _range(path, "max_stream_bytes", self.max_stream_bytes, 1, 4 * 1024**3 - 1)
        if clamd_socket(self.clamd_address) is None:
            raise ConfigError(
                f"{path}.clamd_address: {self.clamd_address!r} is not \"tcp://host:port\" or \"unix:///path/to/socket\""
            )


def clamd_socket(address: str) -> tuple[str, int] | str | None:
    """``(host, port)`` for "tcp://host:port", the path for "unix:///path", None for anything else."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return None
    if parts.query or parts.fragment or any(ch.isspace() for ch in address):
        return None
    if parts.scheme == "tcp" and parts.hostname and port and parts.path in ("", "/"):
        return parts.hostname, port
    if parts.scheme == "unix" and not parts.netloc and parts.path.startswith("/") and len(parts.path) < 108:
        return parts.path
    return None


@dataclass(frozen=True)
class Rule:
    """Who may send to whom, first match wins; unset keys keep [transfer]/[password]."""

    name: str
    senders: list[str] = field(default_factory=lambda: ["*"])
    recipients: list[str] = field(default_factory=lambda: ["*"])
    action: str = "allow"
    reason: str | dict[str, str] = ""
    max_total_bytes: int | None = None
    max_files: int | None = None
    max_recipients: int | None = None
    max_expiry_days: int | None = None
    password_modes: list[str] | None = None
    allowed_extensions: list[str] | None = None
    expose_filenames: str | None = None
    retrieval_notice: str | None = None
    confidential_message: str | None = None
    edit_notification: bool | None = None
    scan: str | None = None
    recipient_verification: str | None = None
    recipient_verification_choice: bool | None = None
    password_by_sms: bool | None = None

    def check(self, path: str) -> None:
        if self.scan is not None:
            _one_of(path, "scan", self.scan, SCAN_RULES)
        if not self.name:
            raise ConfigError(f"{path}.name: must not be empty")
        _one_of(path, "action", self.action, ("allow", "deny"))
        if self.action == "deny" and not self.reason:
            raise ConfigError(f"{path}.reason: a deny rule needs a reason the sender will read")
        for key in ("senders", "recipients"):
            for pattern in getattr(self, key):
                if not _ADDRESS_PATTERN.match(pattern):
                    raise ConfigError(f"{path}.{key}: {pattern!r} is not \"*\", an address, \"*@domain\" or \"*@*.domain\"")
        _check_localized(path, "reason", self.reason, 500)
        for mode in self.password_modes or []:
            _one_of(path, "password_modes", mode, PASSWORD_MODES)
        if self.password_modes == []:
            raise ConfigError(f"{path}.password_modes: allow at least one mode")
        for key in ("max_total_bytes", "max_files", "max_expiry_days"):
            if getattr(self, key) is not None:
                _range(path, key, getattr(self, key), 1, 2**50)
        if self.max_recipients is not None:
            _range(path, "max_recipients", self.max_recipients, 1, MAX_RECIPIENTS)
        _check_limits(path, self)

    def reason_for(self, language: str) -> str:
        return localized(self.reason, language)


@dataclass(frozen=True)
class Policy:
    default: str = "allow"
    default_reason: str | dict[str, str] = ""

    def check(self, path: str) -> None:
        _one_of(path, "default", self.default, ("allow", "deny"))
        if self.default == "deny" and not self.default_reason:
            raise ConfigError(f"{path}.default_reason: a deny default needs a reason the sender will read")
        _check_localized(path, "default_reason", self.default_reason, 500)


_ADDRESS_PATTERN = re.compile(r"^(\*|\*@(\*\.)?[^@*\s]+|[^@*\s]+@[^@*\s]+)$")


def _check_limits(path: str, obj: Any) -> None:
    for key, allowed in (
        ("expose_filenames", TOGGLES), ("retrieval_notice", TOGGLES), ("confidential_message", MESSAGE_RULES),
        ("recipient_verification", RECIPIENT_VERIFICATIONS),
    ):
        if getattr(obj, key) is not None:
            _one_of(path, key, getattr(obj, key), allowed)
    _check_extensions(path, obj.allowed_extensions)


def _check_extensions(path: str, extensions: list[str] | None) -> None:
    for ext in extensions or []:
        if ext != "*" and not re.fullmatch(r"[a-z0-9]{0,16}", ext):
            raise ConfigError(f"{path}.allowed_extensions: {ext!r} must be lower case letters and digits without a dot, \"\" or \"*\"")


@dataclass(frozen=True)
class UploadPortal:
    """A permanent public link, ``/to/<slug>``: whoever opens it sends to the
    fixed ``recipients`` (a department's mailbox), verifying their own
    address as any sender does. The limits only tighten what the rules for
    those recipients allow."""

    slug: str
    title: Localized
    recipients: list[str]
    intro: Localized = ""
    max_total_bytes: int | None = None
    max_files: int | None = None
    allowed_extensions: list[str] | None = None
    # The language of the mails its recipients get, proposed on the options
    # step; "" proposes the sender's, though a department reads its own.
    recipient_language: str = ""
    # Anyone may send through a portal (app/fixed_recipients.py); not a key.
    sender = None

    def check(self, path: str) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", self.slug):
            raise ConfigError(
                f"{path}.slug: {self.slug!r} must be lower case letters, digits and hyphens, "
                "starting with a letter or digit, at most 64"
            )
        _check_localized(path, "title", self.title, 200, required=True, lines=False)
        _check_localized(path, "intro", self.intro, 2000)
        if not self.recipients:
            raise ConfigError(f"{path}.recipients: give at least one address")
        if len(self.recipients) > MAX_RECIPIENTS:
            raise ConfigError(f"{path}.recipients: at most {MAX_RECIPIENTS} addresses")
        seen: set[str] = set()
        for address in self.recipients:
            try:
                normal = addresses.normalize(address)
            except addresses.InvalidAddress:
                raise ConfigError(f"{path}.recipients: {address!r} is not an email address") from None
            if normal in seen:
                raise ConfigError(f"{path}.recipients: {address!r} is listed twice")
            seen.add(normal)
        for key in ("max_total_bytes", "max_files"):
            if getattr(self, key) is not None:
                _range(path, key, getattr(self, key), 1, 2**50)
        _check_extensions(path, self.allowed_extensions)

    @property
    def addresses(self) -> list[str]:
        """The recipients as the wizard writes addresses (normalised)."""
        return [addresses.normalize(address) for address in self.recipients]

    def text(self, key: str, language: str, default_language: str) -> str:
        """``title`` or ``intro`` in ``language``, else in the site's default language, else any given."""
        return localized(getattr(self, key), language, default_language)

    def language(self, key: str, language: str, default_language: str) -> str | None:
        """The language ``text`` is written in; None for one text for every language."""
        value = getattr(self, key)
        if isinstance(value, str):
            return None
        return next((code for code in (language, default_language, *value) if value.get(code)), None)


@dataclass(frozen=True)
class Staff:
    """Who works for the organisation: a sender whose verified address matches
    one of ``senders`` (patterns as in the rules) may request files from others."""

    senders: list[str] = field(default_factory=list)

    def check(self, path: str) -> None:
        for pattern in self.senders:
            # "*" would make every verified address staff.
            if pattern == "*" or not _ADDRESS_PATTERN.match(pattern):
                raise ConfigError(f"{path}.senders: {pattern!r} is not an address, \"*@domain\" or \"*@*.domain\"")


REQUEST_REUSE = ("once", "until_expiry")


@dataclass(frozen=True)
class Requests:
    """Upload requests: a staff member asks someone to send files through a personal link."""

    # The latest expiration a staff member may give a request, in days from today.
    max_days: int = 30
    # "once": the link starts one transfer; "until_expiry": any number until it expires.
    reuse: str = "once"

    def check(self, path: str) -> None:
        _range(path, "max_days", self.max_days, 1, 365)
        _one_of(path, "reuse", self.reuse, REQUEST_REUSE)


@dataclass(frozen=True)
class Crypto:
    # RFC 9106 section 4, second recommended option (for memory-constrained
    # servers): t=3, m=64 MiB, p=4.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 64 * 1024
    argon2_parallelism: int = 4
    # Per worker process: at most this many run at once (each takes
    # argon2_memory_kib); others wait up to argon2_wait_seconds, then are
    # told the portal is busy.
    argon2_max_concurrent: int = 2
    argon2_wait_seconds: int = 10

    def check(self, path: str) -> None:
        _range(path, "argon2_time_cost", self.argon2_time_cost, 1, 100)
        _range(path, "argon2_memory_kib", self.argon2_memory_kib, 8 * self.argon2_parallelism, 4 * 1024 * 1024)
        _range(path, "argon2_parallelism", self.argon2_parallelism, 1, 64)
        _range(path, "argon2_max_concurrent", self.argon2_max_concurrent, 1, 256)
        _range(path, "argon2_wait_seconds", self.argon2_wait_seconds, 0, 300)


@dataclass(frozen=True)
class Settings:
    site: Site = field(default_factory=Site)
    mail: Mail = field(default_factory=Mail)
    storage: Storage = field(default_factory=Storage)
    transfer: Transfer = field(default_factory=Transfer)
    password: Password = field(default_factory=Password)
    verification: Verification = field(default_factory=Verification)
    recipient_codes: RecipientCodes = field(default_factory=RecipientCodes)
    sms: Sms = field(default_factory=Sms)
    download: Download = field(default_factory=Download)
    limits: Limits = field(default_factory=Limits)
    retention: Retention = field(default_factory=Retention)
    crypto: Crypto = field(default_factory=Crypto)
    metrics: Metrics = field(default_factory=Metrics)
    scan: Scan = field(default_factory=Scan)
    policy: Policy = field(default_factory=Policy)
    rules: list[Rule] = field(default_factory=list)
    portals: list[UploadPortal] = field(default_factory=list)
    staff: Staff = field(default_factory=Staff)
    requests: Requests = field(default_factory=Requests)

    def check(self, path: str) -> None:
        """What one section cannot see alone: a scan rule needs a scanner, SMS
        needs a gateway, and a password by SMS needs the numbers that SMS
        verification collects."""
        for index, rule in enumerate(self.rules):
            if rule.scan == "required" and self.scan.backend == "off":
                raise ConfigError(f"rules[{index}].scan: \"required\" needs a scanner: set scan.backend = \"clamd\"")
        t = self.transfer
        for where, rule in [("transfer", t), *((f"rules[{i}]", r) for i, r in enumerate(self.rules))]:
            if getattr(rule, "action", "allow") == "deny":
                continue
            verification = rule.recipient_verification or t.recipient_verification
            by_sms = t.password_by_sms if rule.password_by_sms is None else rule.password_by_sms
            if self.sms.backend == "off" and (verification == "sms" or by_sms):
                key = "recipient_verification" if verification == "sms" else "password_by_sms"
                raise ConfigError(
                    f"{where}.{key}: SMS needs a gateway; set sms.backend to \"http\" (or \"outbox\" to try)"
                )
            if by_sms and verification != "sms":
                raise ConfigError(
                    f"{where}.password_by_sms: needs recipient_verification = \"sms\", "
                    "which asks the sender for the numbers"
                )
            modes = getattr(rule, "password_modes", None) or self.password.modes
            if by_sms and "generate" not in modes:
                raise ConfigError(
                    f"{where}.password_by_sms: only a generated password goes by SMS; allow \"generate\" in password_modes"
                )
        first: dict[str, int] = {}
        for index, portal in enumerate(self.portals):
            if portal.slug in first:
                raise ConfigError(f"portals[{index}].slug: {portal.slug!r} is already the slug of portals[{first[portal.slug]}]")
            first[portal.slug] = index
            if portal.recipient_language and portal.recipient_language not in self.site.languages:
                raise ConfigError(
                    f"portals[{index}].recipient_language: {portal.recipient_language!r} is not one of "
                    f"site.languages ({', '.join(self.site.languages)})"
                )

    def portal(self, slug: str) -> UploadPortal | None:
        """The upload portal at ``/to/<slug>``, if the operator offers one."""
        return next((portal for portal in self.portals if portal.slug == slug), None)


def load_settings(config_file: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read the TOML file (if any), apply overrides section by section, validate."""
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            with open(config_file, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    return _build(Settings, data, "")


def _build(cls: type, data: Any, path: str) -> Any:
    label = path or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key")
    required = [
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in required:
        if name not in data:
            raise ConfigError(f"{_join(path, name)}: required")
    kwargs = {name: _coerce(hints[name], value, _join(path, name)) for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    if hasattr(obj, "check"):
        obj.check(label)
    return obj


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:  # checked by the section's own check()
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list")
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            try:
                return _coerce(option, value, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: unexpected value {value!r}")
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table")
        return {_coerce(key_t, k, path): _coerce(val_t, v, f"{path}.{k}") for k, v in value.items()}
    # bool is an int subclass; a TOML `true` must not pass as a size.
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{path}: expected a whole number")
    if not isinstance(value, hint):
        raise ConfigError(f"{path}: expected {hint.__name__}, got {type(value).__name__}")
    return value


def _http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[" where a host would be
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(ch.isspace() for ch in url)


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _check_localized(
    path: str, key: str, value: Localized, max_length: int, required: bool = False, lines: bool = True
) -> None:
    """Languages the portal knows, no empty text in a table, at most ``max_length``
    characters; line breaks only where ``lines`` (other control characters never)."""
    texts = value.items() if isinstance(value, dict) else [(None, value)]
    if required and not any(text for _, text in texts):
        raise ConfigError(f"{path}.{key}: must not be empty")
    for lang, text in texts:
        where = f"{path}.{key}" if lang is None else f"{path}.{key}.{lang}"
        if lang is not None:
            _one_of(f"{path}.{key}", lang, lang, LANGUAGES)
            if not text:
                raise ConfigError(f"{where}: must not be empty (leave the language out instead)")
        if len(text) > max_length:
            raise ConfigError(f"{where}: at most {max_length} characters")
        if _CONTROL.search(text.replace("\n", "") if lines else text):
            raise ConfigError(f"{where}: no control characters{'' if lines else ' or line breaks'}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _one_of(path: str, key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{path}.{key}: {value!r} is not one of {', '.join(allowed)}")


def _range(path: str, key: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{path}.{key}: must be between {low} and {high}")
