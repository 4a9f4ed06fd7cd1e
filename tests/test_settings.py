from __future__ import annotations

import pytest

from service.settings import SETTINGS, Settings, SettingsError, parse_duration


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite+aiosqlite:///newsletter.db"
    assert settings.uses_mail_catcher
    assert settings.confirm_ttl == 3 * 86400
    assert settings.smtp_tls == "starttls"


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "NEWSLETTER_DATABASE_URL": "postgresql://u:p@db/news",
            "NEWSLETTER_BASE_URL": "https://news.example.com/",
            "NEWSLETTER_SMTP_PORT": "465",
            "NEWSLETTER_SMTP_TLS": "TLS",
            "NEWSLETTER_CONFIRM_TTL": "12h",
            "NEWSLETTER_RUN_WORKER": "off",
            "NEWSLETTER_MAIL_FROM": "Tägliche Nachrichten <News@Example.com>",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://u:p@db/news"
    assert settings.base_url == "https://news.example.com"
    assert settings.smtp_port == 465 and settings.smtp_tls == "tls"
    assert settings.confirm_ttl == 43200
    assert settings.run_worker is False
    assert settings.mail_from == "Tägliche Nachrichten <news@example.com>"


def test_every_bad_value_is_reported_at_once_by_name() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "NEWSLETTER_SMTP_PORT": "seventy",
                "NEWSLETTER_BASE_URL": "news.example.com",
                "NEWSLETTER_SMTP_TLS": "maybe",
                "NEWSLETTER_CONFIRM_TTL": "soon",
                "NEWSLETTER_DATABASE_URL": "mysql://x",
                "NEWSLETTER_MAIL_FROM": "not an address",
            }
        )
    message = str(info.value)
    for name in ("SMTP_PORT", "BASE_URL", "SMTP_TLS", "CONFIRM_TTL", "DATABASE_URL", "MAIL_FROM"):
        assert f"NEWSLETTER_{name}=" in message
    assert "expected starttls, tls or none" in message


def test_secrets_never_print() -> None:
    settings = Settings.from_env(
        {"NEWSLETTER_SMTP_PASSWORD": "hunter2-very-secret", "NEWSLETTER_SECRET_KEY": "s" * 40}
    )
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.describe())
    assert "sss" not in repr(settings)
    assert settings.smtp_password.reveal() == "hunter2-very-secret"
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"NEWSLETTER_SECRET_KEY": "short-secret-value"})
    assert "short-secret-value" not in str(info.value) and "32 characters" in str(info.value)


def test_unknown_variables_are_noticed() -> None:
    settings = Settings.from_env({"NEWSLETTER_SMTP_HOSTNAME": "typo"})
    assert settings.unknown_variables == ("NEWSLETTER_SMTP_HOSTNAME",)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("300s", 300), ("5m", 300), ("72h", 259200), ("3d", 259200), ("250ms", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_every_setting_has_help() -> None:
    assert all(spec.help and spec.env.startswith("NEWSLETTER_") for spec in SETTINGS)
