"""What each admin role and each API token scope allows.

A scope names one kind of power: ``read`` (see lists, people, stats), ``export`` (take
data out: exports, one person's data), ``write`` (change lists and people, import),
``erase`` (erase people), ``admin`` (admins, tokens, sessions of others, the audit log).
A role is the set of scopes its admins have; a token acts with the scopes it was given
that its admin's role still has, so demoting an admin narrows their tokens at once.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "LEGACY_SCOPES",
    "ROLES",
    "SCOPES",
    "parse_scopes",
    "role_scopes",
]

SCOPES = ("read", "export", "write", "erase", "admin")
# Tokens made before scopes existed could read, export, write and erase: they still can.
LEGACY_SCOPES = ("read", "export", "write", "erase")
ROLES: dict[str, frozenset[str]] = {
    "owner": frozenset(SCOPES),
    "editor": frozenset({"read", "write"}),
}


def role_scopes(role: str) -> frozenset[str]:
    """The scopes of ``role``; none for a role this version does not know."""
    return ROLES.get(role, frozenset())


def parse_scopes(values: Iterable[object]) -> tuple[str, ...]:
    """Known scopes, in their canonical order; a ValueError naming what is not one."""
    chosen: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"scopes are strings, one of {', '.join(SCOPES)}")
        name = value.strip().lower()
        if name not in SCOPES:
            raise ValueError(f"{value!r} is not a scope; the scopes are {', '.join(SCOPES)}")
        chosen.add(name)
    if not chosen:
        raise ValueError(f"give a token at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in chosen)
