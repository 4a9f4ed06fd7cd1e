"""A list's welcome email: optional, sent once after a subscription's first confirmation.

The editor writes a subject and a plain-text body per language (the list's language is
the one used; the others are kept for when it changes); ``{name}`` and ``{list}`` in them
are filled in. Without a text of its own the built-in welcome in the list's language is
sent. A single opt-in list always sends a welcome (it is the only email that tells the
address it was subscribed), with the list's own text when it has one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from service.db import Database
from service.models import MailingList

__all__ = [
    "MAX_BODY",
    "MAX_SUBJECT",
    "custom_text",
    "enabled",
    "fill",
    "paragraphs",
    "save",
    "validate",
    "with_settings",
]

MAX_SUBJECT = 200
MAX_BODY = 10_000


def enabled(mailing_list: MailingList) -> bool:
    return bool((mailing_list.welcome or {}).get("enabled"))


def custom_text(mailing_list: MailingList, language: str | None = None) -> tuple[str, str] | None:
    """(subject, body) the editor wrote for ``language`` (the list's), if any."""
    texts = (mailing_list.welcome or {}).get("texts") or {}
    found = texts.get(language or mailing_list.language) or {}
    subject, body = str(found.get("subject", "")), str(found.get("body", ""))
    return (subject, body) if subject.strip() and body.strip() else None


def fill(text: str, *, list_name: str, name: str | None) -> str:
    """``{name}`` and ``{list}`` filled in; nothing else is interpreted."""
    return text.replace("{name}", name or "").replace("{list}", list_name)


def paragraphs(body: str) -> list[list[str]]:
    """The body's paragraphs (split on blank lines), each a list of its lines."""
    blocks = [b.strip("\n") for b in body.replace("\r\n", "\n").split("\n\n")]
    return [block.split("\n") for block in blocks if block.strip()]


def validate(
    current: dict[str, Any] | None, language: str, *, on: bool, subject: str, body: str
) -> dict[str, Any]:
    """The list's new welcome settings; ValueError says what is wrong."""
    subject, body = subject.strip(), body.strip()
    if "\n" in subject or "\r" in subject:
        raise ValueError("The subject must be one line.")
    if len(subject) > MAX_SUBJECT:
        raise ValueError(f"The subject is longer than {MAX_SUBJECT} characters.")
    if len(body) > MAX_BODY:
        raise ValueError(f"The text is longer than {MAX_BODY} characters.")
    if bool(subject) != bool(body):
        raise ValueError("Write both a subject and a text, or neither (the built-in welcome).")
    texts = dict((current or {}).get("texts") or {})
    if subject:
        texts[language] = {"subject": subject, "body": body}
    else:
        texts.pop(language, None)
    return {"enabled": on, "texts": texts}


async def save(db: Database, slug: str, settings: dict[str, Any]) -> bool:
    """Store a list's welcome settings (from `validate`); False if there is no such list."""
    async with db.write() as session:
        changed = await session.execute(
            update(MailingList)
            .where(MailingList.slug == slug)
            .values(welcome=settings)
            .returning(MailingList.id)
        )
        return changed.first() is not None


def with_settings(mailing_list: MailingList, settings: dict[str, Any]) -> MailingList:
    """A detached copy of the list with other welcome settings, for a preview."""
    return MailingList(
        id=mailing_list.id,
        slug=mailing_list.slug,
        name=mailing_list.name,
        language=mailing_list.language,
        allowed_origins=list(mailing_list.allowed_origins or []),
        double_opt_in=mailing_list.double_opt_in,
        welcome=settings,
    )
