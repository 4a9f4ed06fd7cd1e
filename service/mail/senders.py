"""Deliver a rendered message: over SMTP, or into the development mail catcher.

Senders sort failures into temporary (retry later) and permanent (give up, keep the
reason), the way the outgoing runner of Mailman does: a 5xx answer about the recipient or
the message is permanent; a 4xx, a dropped connection, a timeout, or a problem with our
own SMTP login or TLS is temporary, because it is fixed on our side and the message is fine.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import aiosmtplib

from service.db import Database
from service.mail.pool import SMTPPool
from service.mail.render import Outgoing, envelope, needs_smtputf8, subject_of, wire_bytes
from service.models import CaughtMail
from service.settings import Settings

__all__ = ["CatcherMailer", "DeliveryError", "Mailer", "SMTPMailer"]

log = logging.getLogger(__name__)

PROBE_FIRST_RETRY = 5.0  # seconds; doubled each time, up to
PROBE_MAX_RETRY = 300.0


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Mailer(Protocol):
    @property
    def smtputf8(self) -> bool | None:
        """Whether addresses with a non-ASCII local part can be sent (None: not known yet)."""

    async def probe(self) -> None:
        """Learn what the mail server offers, if there is one to ask."""

    async def send(self, message: Outgoing) -> None:
        """Hand the message over; raise DeliveryError if it was not accepted."""

    async def close(self) -> None:
        """Let go of open connections (at shutdown)."""


class SMTPMailer:
    """Sends over a small pool of kept-open connections (see ``service.mail.pool``)."""

    def __init__(self, settings: Settings, *, pool_size: int | None = None) -> None:
        self._settings = settings
        self._smtputf8: bool | None = None
        self.pool = SMTPPool(
            self._connect,
            max_size=pool_size or settings.worker_concurrency,
            idle_timeout=settings.smtp_idle_timeout,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password.reveal() or None,
            use_tls=s.smtp_tls == "tls",
            start_tls=s.smtp_tls == "starttls",
            timeout=s.smtp_timeout,
            cert_bundle=s.smtp_ca_file or None,
        )
        await smtp.connect()
        if smtp.is_ehlo_or_helo_needed:  # not done yet by a login or STARTTLS
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                await smtp.helo()
        self._smtputf8 = smtp.supports_extension("smtputf8")
        return smtp

    @property
    def smtputf8(self) -> bool | None:
        """Whether the relay takes internationalised local parts (None: not asked yet)."""
        return self._smtputf8

    async def probe(self) -> None:
        """Learn what the relay offers (EHLO) before the first signup needs to know; while it
        cannot be reached, ask again, less and less often (an app process without a worker
        would otherwise never learn it)."""
        wait = PROBE_FIRST_RETRY
        while self._smtputf8 is None:
            try:
                async with self.pool.connection():
                    return
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                log.warning("could not reach the SMTP server (%s); asking again in %ss", exc, wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, PROBE_MAX_RETRY)

    async def send(self, message: Outgoing) -> None:
        utf8 = needs_smtputf8(message)
        try:
            async with self.pool.connection() as smtp:
                offered = smtp.supports_extension("smtputf8")
                if offered or not utf8:
                    sender, recipient = envelope(message)
                    await smtp.sendmail(
                        sender,
                        [recipient],
                        wire_bytes(message),
                        mail_options=["SMTPUTF8"] if utf8 else None,
                    )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [err.code for err in exc.recipients]
            reason = "; ".join(f"{err.code} {err.message}" for err in exc.recipients)
            raise DeliveryError(reason, permanent=all(500 <= c < 600 for c in codes)) from exc
        except (
            aiosmtplib.SMTPRecipientRefused,
            aiosmtplib.SMTPDataError,
            aiosmtplib.SMTPSenderRefused,
        ) as exc:
            raise DeliveryError(
                f"{exc.code} {exc.message}", permanent=500 <= exc.code < 600
            ) from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            log.error("SMTP login refused (%s); check NEWSLETTER_SMTP_USERNAME/PASSWORD", exc.code)
            raise DeliveryError(f"SMTP login refused: {exc.code}", permanent=False) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{exc.code} {exc.message}", permanent=False) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False) from exc

        if utf8 and not offered:
            raise DeliveryError(
                "the mail server does not offer SMTPUTF8, so it cannot deliver to an address "
                "with non-ASCII characters before the @",
                permanent=True,
            )

    async def close(self) -> None:
        await self.pool.close()


class CatcherMailer:
    """Keeps every message in the database instead of sending it. Development only."""

    smtputf8 = True  # keeps anything

    def __init__(self, db: Database) -> None:
        self._db = db

    async def probe(self) -> None:
        return None

    async def send(self, message: Outgoing) -> None:
        async with self._db.write() as session:
            session.add(
                CaughtMail(
                    to_address=envelope(message)[1],
                    subject=subject_of(message),
                    raw=wire_bytes(message),
                )
            )

    async def close(self) -> None:
        return None
