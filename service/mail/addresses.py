"""Addresses as they travel over SMTP.

An internationalised domain (``bücher.example``) goes out in its ASCII form
(``xn--bcher-kva.example``) in RCPT TO and To:, which every mail server takes. Only a
non-ASCII local part (``zoë@…``) needs the SMTPUTF8 extension; a relay that does not offer
it cannot deliver to such an address at all (a permanent failure, not a retry).
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

__all__ = ["wire_address"]


def wire_address(address: str) -> str:
    """``address`` with its domain in ASCII (A-label) form; the local part as it is."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return address  # stored before today's checks; the relay will say what it thinks
    return f"{local}@{checked.ascii_domain}"
