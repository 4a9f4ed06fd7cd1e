"""What the list editor's fields show: the list as stored, or what was sent when a field
was wrong, so that no unsaved edit is lost (the wrong field is marked, not emptied)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.models import MailingList
from service.widget_settings import TEXT_KEYS, effective

__all__ = ["FLAGS", "editor_values"]

FLAGS = ("nameField", "consentCheckbox", "proofOfWork")


def editor_values(mailing_list: MailingList, posted: Mapping[str, str] | None) -> dict[str, Any]:
    """Each field's value for the editor: ``posted`` (as sent) over the stored list."""
    settings = effective(mailing_list)
    stored = mailing_list.widget or {}
    values: dict[str, Any] = {
        "name": mailing_list.name,
        "language": mailing_list.language,
        "origins": "\n".join(mailing_list.allowed_origins),
        "double_opt_in": mailing_list.double_opt_in,
        "consent_text": mailing_list.consent_text,
        **{key: settings[key] for key in settings if key not in TEXT_KEYS},
        **{key: stored.get(key, "") for key in TEXT_KEYS},  # empty: the language's default
    }
    if posted is None:
        return values
    for key, value in posted.items():
        if key == "origins":
            values["origins"] = "\n".join(value.split(","))
        elif key in FLAGS or key == "double_opt_in":
            values[key] = value.strip().lower() in {"true", "on", "1", "yes"}
        else:
            values[key] = value
    return values
