"""Configuration from ``NEWSLETTER_*`` environment variables.

Every setting is declared once, as data (name, default, help, parser), so the README table
and the validation cannot drift apart; a test checks the README against ``SETTINGS``.
``Settings.from_env`` takes the mapping to read, so tests pass a dict instead of patching
``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "SETTINGS",
    "Rate",
    "Secret",
    "Settings",
    "SettingsError",
    "parse_duration",
    "parse_rates",
]

PREFIX = "NEWSLETTER_"


class SettingsError(ValueError):
    """A setting has a value the service cannot run with; the message names it."""


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


@dataclass(frozen=True)
class Rate:
    hits: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.hits}/{self.seconds}s"


def parse_rates(value: str) -> tuple[Rate, ...]:
    """``"10/1m,60/1h"`` -> rates; empty means no limit."""
    rates = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        match = _RATE.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a rate such as 10/1m")
        seconds = parse_duration(match.group(2))
        if seconds < 1 or int(match.group(1)) < 1:
            raise ValueError(f"{part!r}: expected at least 1 per 1s")
        rates.append(Rate(int(match.group(1)), int(seconds)))
    return tuple(rates)


def _one_rate(value: str) -> Rate | None:
    """One ``COUNT/DURATION`` rate, or None for empty."""
    rates = parse_rates(value)
    if len(rates) > 1:
        raise ValueError("expected one rate such as 60/1m")
    return rates[0] if rates else None


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str) -> float:
    """Seconds from ``"300"``, ``"300s"``, ``"5m"``, ``"72h"`` or ``"3d"``."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError("expected a duration such as 30s, 5m, 72h or 3d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _bool_or_auto(value: str) -> bool | None:
    """``auto`` (None) lets the service decide; otherwise as ``_bool``."""
    if value.strip().lower() == "auto":
        return None
    try:
        return _bool(value)
    except ValueError:
        raise ValueError("expected auto, true or false") from None


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not low <= number <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return number

    return parse


def _positive_duration(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("expected a duration greater than zero")
    return seconds


def _database_url(value: str) -> str:
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        for mode in parse_qs(urlsplit(value).query).get("synchronous", []):
            if mode.lower() not in {"full", "normal"}:
                raise ValueError(f"synchronous={mode}: expected full (the default) or normal")
        return "sqlite+aiosqlite://" + value.split("://", 1)[1]
    if scheme in {"postgres", "postgresql", "postgresql+asyncpg"}:
        return "postgresql+asyncpg://" + value.split("://", 1)[1]
    raise ValueError("expected a sqlite:///PATH or postgresql://USER@HOST/DB URL")


def _base_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("expected an absolute http(s) URL such as https://news.example.com")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    return value.strip().rstrip("/")


def _secret_key(value: str) -> Secret:
    if value and len(value) < 32:
        raise ValueError(
            "must be at least 32 characters (make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return Secret(value)


def _mail_from(value: str) -> str:
    from email.headerregistry import Address
    from email.utils import parseaddr

    from email_validator import EmailNotValidError, validate_email  # slow to import

    name, address = parseaddr(value)
    if not address:
        raise ValueError('expected an address such as "Daily News <news@example.com>"')
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return str(Address(display_name=name, addr_spec=checked.normalized))


def _existing_file(value: str) -> str:
    path = value.strip()
    if path and not os.path.isfile(path):
        raise ValueError("no such file")
    return path


def _smtp_tls(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in {"starttls", "tls", "none"}:
        raise ValueError("expected starttls, tls or none")
    return lowered


def _log_level(value: str) -> str:
    upper = value.strip().upper()
    if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return upper


def _log_format(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in {"text", "json"}:
        raise ValueError("expected text or json")
    return lowered


def _networks(value: str) -> tuple[str, ...]:
    import ipaddress

    found = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(found)


@dataclass(frozen=True)
class Spec:
    """One setting: its environment name, default (as the env string) and help text."""

    attr: str
    default: str
    help: str
    parse: Callable[[str], Any]

    @property
    def env(self) -> str:
        return PREFIX + self.attr.upper()


SETTINGS: tuple[Spec, ...] = (
    Spec(
        "database_url",
        "sqlite:///newsletter.db",
        "Where data lives: `sqlite:///PATH` (default, one file) or "
        "`postgresql://USER:PASS@HOST/DB`. SQLite syncs every commit to disk; "
        "`sqlite:///PATH?synchronous=normal` is faster but a power cut may lose the last "
        "signups answered.",
        _database_url,
    ),
    Spec(
        "migrate_on_start",
        "auto",
        "Bring the database schema up to date when the service starts. `auto`: on for "
        "SQLite (one process owns the file), off for PostgreSQL, where deploys run "
        "`newsletter migrate` once and every process refuses to start on an old schema.",
        _bool_or_auto,
    ),
    Spec(
        "base_url",
        "http://127.0.0.1:8000",
        "Public URL of this service. Every link in an email is built from it, never from "
        "the request's Host header. Use https in production.",
        _base_url,
    ),
    Spec(
        "secret_key",
        "",
        "At least 32 random characters; signs the links in emails. If unset, one is generated "
        "and kept in the database (fine for trying it out, not for production).",
        _secret_key,
    ),
    Spec(
        "smtp_host",
        "",
        "SMTP server to send through. Empty: the development mail catcher keeps all mail and "
        "shows it at `/dev/mail` (never use that in production).",
        str.strip,
    ),
    Spec(
        "smtp_port",
        "587",
        "SMTP port (587 for starttls, 465 for tls, 25 for none).",
        _int_range(1, 65535),
    ),
    Spec("smtp_username", "", "SMTP login; empty for no authentication.", str.strip),
    Spec("smtp_password", "", "SMTP password. Never logged or shown.", Secret),
    Spec(
        "smtp_tls",
        "starttls",
        "`starttls` (upgrade a plain connection), `tls` (implicit TLS) or `none`.",
        _smtp_tls,
    ),
    Spec(
        "smtp_ca_file",
        "",
        "PEM file of CA certificates to trust for the SMTP server's TLS certificate (a relay "
        "with a private CA). Empty: the system's trusted CAs.",
        _existing_file,
    ),
    Spec(
        "smtp_timeout",
        "30s",
        "How long to wait for the SMTP server before retrying later.",
        _positive_duration,
    ),
    Spec(
        "smtp_idle_timeout",
        "30s",
        "Sending keeps SMTP connections open for the next email; one unused this long is closed.",
        _positive_duration,
    ),
    Spec(
        "mail_from",
        "Newsletter <newsletter@example.com>",
        'Sender of every email, e.g. `"Daily News" <news@example.com>`.',
        _mail_from,
    ),
    Spec(
        "host",
        "127.0.0.1",
        "Address `newsletter serve` listens on (0.0.0.0 in the container).",
        str.strip,
    ),
    Spec("port", "8000", "Port `newsletter serve` listens on.", _int_range(1, 65535)),
    Spec("confirm_ttl", "3d", "How long a confirmation link stays valid.", _positive_duration),
    Spec(
        "resend_interval",
        "5m",
        "A pending address that subscribes again gets a new confirmation email at most this often.",
        _positive_duration,
    ),
    Spec(
        "max_body_bytes",
        "16384",
        "Largest request body accepted by the public API (413 above).",
        _int_range(1024, 10_000_000),
    ),
    Spec(
        "run_worker",
        "true",
        "Run the worker inside the server process: it acts on signups taken in and sends "
        "queued mail. With false, both wait for a `newsletter worker` process.",
        _bool,
    ),
    Spec(
        "worker_poll_interval",
        "2s",
        "How often the worker looks for due mail when nothing woke it.",
        _positive_duration,
    ),
    Spec(
        "worker_concurrency",
        "4",
        "How many emails one worker sends at once; also the most SMTP connections it keeps open.",
        _int_range(1, 100),
    ),
    Spec(
        "worker_lease",
        "30s",
        "A worker claims queued mail for this long, and renews the claim every third of it "
        "while the mail is in hand. Mail claimed by a worker that died is sent by another "
        "one once the lease has run out (again, if the dead worker had sent it already: "
        "counted in `newsletter_outbox_lease_takeovers_total`).",
        _positive_duration,
    ),
    Spec(
        "retry_base",
        "30s",
        "First retry delay after a temporary SMTP failure; doubles each time.",
        _positive_duration,
    ),
    Spec(
        "retry_max_delay", "1h", "Longest delay between two delivery attempts.", _positive_duration
    ),
    Spec(
        "retry_deadline",
        "2d",
        "A message still undelivered this long after it was queued is marked failed.",
        _positive_duration,
    ),
    Spec(
        "webhook_timeout",
        "10s",
        "How long a webhook receiver has to answer one delivery attempt.",
        _positive_duration,
    ),
    Spec(
        "webhook_retry_base",
        "5s",
        "First retry delay after a failed webhook delivery; doubles each time (with "
        "jitter), up to six hours.",
        _positive_duration,
    ),
    Spec(
        "webhook_retry_deadline",
        "3d",
        "A webhook event still undelivered this long after it happened is marked failed.",
        _positive_duration,
    ),
    Spec(
        "webhook_pause_after",
        "50",
        "A webhook endpoint that fails this many delivery attempts in a row is paused "
        "(the admin says so); its events wait until it is resumed.",
        _int_range(1, 1_000_000),
    ),
    Spec(
        "webhook_allow_private",
        "false",
        "Let webhooks call loopback, private and link-local addresses. Off, such targets "
        "are refused when saved and at every delivery (no server-side request forgery).",
        _bool,
    ),
    Spec(
        "rate_limit_ip",
        "10/1m,50/1h",
        "Signups one client address may make, as COUNT/DURATION rates (comma-separated); "
        "above them, 429 with Retry-After. Empty: no limit.",
        parse_rates,
    ),
    Spec(
        "rate_limit_list",
        "",
        "A hard cap on the signups one list takes from everyone together: 429 above it, for "
        "real readers too, so a flood can close the list. Empty (the default): no cap; "
        "under a flood the proof of work rises instead (`NEWSLETTER_POW_SURGE_LIST`).",
        parse_rates,
    ),
    Spec(
        "rate_limit_address",
        "1/10m,3/1d",
        "Confirmation emails one inbox gets, across all lists (case, `+tags` and Gmail's "
        "dots do not make another inbox). Silent: the signup is answered as usual and "
        "nothing is sent. Empty: no limit.",
        parse_rates,
    ),
    Spec(
        "rate_limit_confirmations",
        "1000/1h",
        "Confirmation emails the whole service sends; above it, signups wait (they are "
        "kept, not lost) until the next window. Empty: no limit.",
        parse_rates,
    ),
    Spec(
        "min_fill_time",
        "2s",
        "A signup sent back sooner than this after its form was shown (or without a signed "
        "form stamp) must solve a proof of work first; the box and the hosted page do so by "
        "themselves. 0 turns the check off.",
        parse_duration,
    ),
    Spec(
        "pow_difficulty",
        "16",
        "Proof of work, for lists that turn it on: how many leading zero bits the SHA-256 "
        "of a challenge and its solution must have (1-32). Each one more doubles the work; "
        "at 16 a low-end phone takes under 0.1 s for half the signups and under 0.6 s for "
        "nine in ten (docs/benchmarks.md).",
        _int_range(1, 32),
    ),
    Spec(
        "pow_difficulty_max",
        "19",
        "The most proof of work a surge asks (bits; never less than "
        "`NEWSLETTER_POW_DIFFICULTY`): at 19 a desktop browser takes about a quarter of a "
        "second on average and a mid-range phone about a second (docs/benchmarks.md); a "
        "flood pays that for every signup it gets in.",
        _int_range(1, 32),
    ),
    Spec(
        "pow_surge_list",
        "60/1m",
        "A list taking signups faster than this rate (all clients together) asks every "
        "signup for a proof of work, form stamp or not: `NEWSLETTER_POW_DIFFICULTY` bits, one "
        "more each time the rate doubles, up to `NEWSLETTER_POW_DIFFICULTY_MAX`. One rate; "
        "empty: off.",
        _one_rate,
    ),
    Spec(
        "pow_surge_client",
        "2/1m",
        "The same for one client address: past this rate its signups pay a proof of work "
        "that doubles as its rate does (the higher of the list's and the client's counts). "
        "One rate; empty: off.",
        _one_rate,
    ),
    Spec(
        "pow_lifetime",
        "10m",
        "How long a proof-of-work challenge may be used (each one once).",
        _positive_duration,
    ),
    Spec(
        "list_cache_ttl",
        "2s",
        "The public endpoints keep a list's settings this long, then renew them in the "
        "background (one read per list, while the old settings still answer for up to as long "
        "again); a change made by another process (the CLI, another app server) applies within "
        "twice this time, one made through this process's admin side at once. A list's and "
        "a client's recent signup rates (the proof of work a surge asks) are kept as long. "
        "0 turns the cache off.",
        parse_duration,
    ),
    Spec(
        "unconfirmed_retention",
        "30d",
        "Signups never confirmed are deleted, with their personal data, this long after "
        "they were made.",
        _positive_duration,
    ),
    Spec(
        "admin_session_lifetime",
        "12h",
        "An admin sign-in ends this long after it began, however active.",
        _positive_duration,
    ),
    Spec(
        "admin_idle_timeout",
        "1h",
        "An admin sign-in ends after this long without a request.",
        _positive_duration,
    ),
    Spec(
        "check_deliverability",
        "false",
        "Also check that an address's domain accepts mail (a DNS lookup on each subscribe).",
        _bool,
    ),
    Spec("log_level", "INFO", "DEBUG, INFO, WARNING or ERROR.", _log_level),
    Spec(
        "log_format",
        "text",
        "`text` (one readable line per event) or `json` (one JSON object per line, for a "
        "log collector). Both carry the request id.",
        _log_format,
    ),
    Spec(
        "trusted_proxies",
        "",
        "Comma-separated IP addresses or networks (CIDR) of reverse proxies whose "
        "`X-Forwarded-For` and `X-Forwarded-Proto` are believed. Empty: none, the client "
        "address is the connecting one.",
        _networks,
    ),
    Spec(
        "box_flush_interval",
        "10s",
        "The subscribe box's counts (shown, dismissed, submitted, accepted) are added up in "
        "memory and written this often; a crash loses at most this long's counts.",
        _positive_duration,
    ),
    Spec(
        "box_pages_per_day",
        "500",
        "Pages counted separately per list and day; the box's counts from further new pages "
        'that day go under "other", so invented paths cannot grow storage without bound.',
        _int_range(1, 100_000),
    ),
    Spec(
        "metrics_token",
        "",
        "Bearer token that `/metrics` asks every client for. Empty: `/metrics` answers only "
        "clients on loopback (not private networks, not requests through a proxy).",
        Secret,
    ),
)


@dataclass(frozen=True)
class Settings:
    """Validated configuration; build it with ``Settings.from_env`` (defaults: ``SETTINGS``)."""

    database_url: str
    migrate_on_start: bool | None
    base_url: str
    secret_key: Secret
    smtp_host: str
    smtp_port: int
    smtp_username: str
    smtp_password: Secret
    smtp_tls: str
    smtp_ca_file: str
    smtp_timeout: float
    smtp_idle_timeout: float
    mail_from: str
    host: str
    port: int
    confirm_ttl: float
    resend_interval: float
    max_body_bytes: int
    run_worker: bool
    worker_poll_interval: float
    worker_concurrency: int
    worker_lease: float
    retry_base: float
    retry_max_delay: float
    retry_deadline: float
    webhook_timeout: float
    webhook_retry_base: float
    webhook_retry_deadline: float
    webhook_pause_after: int
    webhook_allow_private: bool
    rate_limit_ip: tuple[Rate, ...]
    rate_limit_list: tuple[Rate, ...]
    rate_limit_address: tuple[Rate, ...]
    rate_limit_confirmations: tuple[Rate, ...]
    min_fill_time: float
    pow_difficulty: int
    pow_difficulty_max: int
    pow_surge_list: Rate | None
    pow_surge_client: Rate | None
    pow_lifetime: float
    list_cache_ttl: float
    unconfirmed_retention: float
    admin_session_lifetime: float
    admin_idle_timeout: float
    check_deliverability: bool
    log_level: str
    log_format: str
    trusted_proxies: tuple[str, ...]
    box_flush_interval: float
    box_pages_per_day: int
    metrics_token: Secret
    unknown_variables: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every ``NEWSLETTER_*`` variable, reporting all bad ones at once."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in SETTINGS:
            raw = env.get(spec.env, spec.default)
            try:
                values[spec.attr] = spec.parse(raw)
            except ValueError as exc:
                shown = "(hidden)" if spec.parse in (Secret, _secret_key) else repr(raw)
                problems.append(f"{spec.env}={shown}: {exc}")
        known = {spec.env for spec in SETTINGS}
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
        if problems:
            raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems))
        return cls(**values, unknown_variables=tuple(unknown))

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (tests and the CLI use this)."""
        return dataclasses.replace(self, **changes)

    @property
    def uses_mail_catcher(self) -> bool:
        return not self.smtp_host

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def migrates_on_start(self) -> bool:
        """``NEWSLETTER_MIGRATE_ON_START``, with ``auto`` decided by the backend."""
        return self.is_sqlite if self.migrate_on_start is None else self.migrate_on_start

    def describe(self) -> dict[str, str]:
        """Settings as text for a start-up log line; secrets stay masked."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self) if f.init}
