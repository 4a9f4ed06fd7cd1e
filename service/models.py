"""Tables. Times are stored as timezone-aware UTC; emails are stored normalised (lowercase)."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AdminSession",
    "AdminUser",
    "ApiToken",
    "AuditEvent",
    "Base",
    "BlockedEntry",
    "BoxCount",
    "BoxTest",
    "CaughtMail",
    "ConsentAction",
    "ConsentRecord",
    "LoginAttempt",
    "MailingList",
    "Meta",
    "OutboxMessage",
    "OutboxStatus",
    "RateCounter",
    "SignupRequest",
    "Subscriber",
    "Subscription",
    "SubscriptionStatus",
    "Suppression",
    "UsedChallenge",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite forgets the zone; this restores it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use service.models.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Constraint names are fixed so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class SubscriptionStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"


class ConsentAction(enum.StrEnum):
    SUBSCRIBE = "subscribe"
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _enum(cls: type[enum.StrEnum]) -> Enum:
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


class Meta(Base):
    """Instance-wide values the service generates once (e.g. a fallback secret key)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MailingList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(16), default="en")
    allowed_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=True)
    consent_text: Mapped[str] = mapped_column(Text, default="")
    widget: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The welcome email after a first confirmation: {"enabled": bool, "texts": {language:
    # {"subject": ..., "body": ...}}} (``service.welcome``).
    welcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Subscription(Base):
    """A subscriber on a list: pending -> confirmed -> unsubscribed (and back to pending).

    ``confirm_nonce`` goes into the confirmation link's signature and is replaced whenever
    the subscription leaves ``pending``, so a confirmation link confirms once.
    """

    __tablename__ = "subscriptions"
    # Links in emails name a subscription by id: SQLite must never give an erased one's
    # id to someone else (AUTOINCREMENT; PostgreSQL's sequences never reuse one).
    __table_args__ = (
        UniqueConstraint("list_id", "subscriber_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[SubscriptionStatus] = mapped_column(_enum(SubscriptionStatus))
    confirm_nonce: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    subscribed_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmation_sent_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # Where the box was when its signup came ("device|variant|path"): its confirmation is
    # counted there (service.box_counts). None for signups from elsewhere.
    box_source: Mapped[str | None] = mapped_column(String(320))


class ConsentRecord(Base):
    """Proof of consent: who did what, when, from where, having been shown which words."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[ConsentAction] = mapped_column(_enum(ConsentAction))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    page_url: Mapped[str | None] = mapped_column(String(2048))
    wording: Mapped[str] = mapped_column(Text, default="")
    method: Mapped[str] = mapped_column(String(32), default="")


class OutboxMessage(Base):
    """An email waiting to be sent, written in the same transaction as its cause.

    The message is rendered when it is sent, from ``template`` and ``payload``; rendering is
    deterministic (fixed Message-ID and Date), so every retry sends the same bytes.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    template: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str] = mapped_column(String(320))
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class CaughtMail(Base):
    """Development mail catcher: what would have gone to SMTP, kept for `/dev/mail`."""

    __tablename__ = "caught_mail"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Suppression(Base):
    """What is left of an erased person: a hash of the address, so it stays suppressed.

    No name, no address: an import or a signup of the same address can be recognised
    (and refused), nothing else.
    """

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(200), default="")


class BlockedEntry(Base):
    """An address or a domain the admin has blocked: no signup or import adds it.

    ``value`` is an address in its canonical form (``service.limits.canonical_address``)
    or a domain, which blocks its subdomains too (see ``service.blocklist``).
    """

    __tablename__ = "blocklist"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[str] = mapped_column(String(320), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "address" or "domain"
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    role: Mapped[str] = mapped_column(String(16), default="owner", server_default="owner")
    disabled_at: Mapped[datetime | None]  # set: no sign-in, no session, no token


class AdminSession(Base):
    """A signed-in browser. Only a hash of the cookie's value is stored; delete to revoke."""

    __tablename__ = "admin_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("admin_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ip_address: Mapped[str | None] = mapped_column(String(64))  # where it signed in from
    user_agent: Mapped[str | None] = mapped_column(String(256))


class ApiToken(Base):
    """A token for scripts (``Authorization: Bearer``); only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Comma-separated; tokens made before scopes existed keep every scope they had.
    scopes: Mapped[str] = mapped_column(
        String(100), default="read,export,write,erase", server_default="read,export,write,erase"
    )
    expires_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Who did what on the admin side, when and from where. Rows are only ever added.

    ``actor`` is a name, not a foreign key: the record outlives what it names.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_action_id", "action", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    via: Mapped[str] = mapped_column(String(16))  # session, token, cli, or "-" (signed out)
    client: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class LoginAttempt(Base):
    """Failed sign-ins, kept briefly, so throttling holds across processes."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_key_time", "key", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))  # "user-ip:NAME|ADDRESS" or "ip:ADDRESS"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignupRequest(Base):
    """A signup the public API accepted and has not acted on yet.

    Answering a signup only writes this row, the same for every address, so the answer
    takes as long whatever the address's state; a worker then does the real work (see
    ``service.intake``). ``verdict`` is set when the request came from a bot and is to be
    dropped without a word.
    """

    __tablename__ = "signup_requests"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    page_url: Mapped[str | None] = mapped_column(String(2048))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    verdict: Mapped[str] = mapped_column(String(16), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    language: Mapped[str | None] = mapped_column(String(8))  # the box's, if not the list's
    box_source: Mapped[str | None] = mapped_column(String(320))  # see service.box_counts


class RateCounter(Base):
    """Hits per key in one fixed time window; shared by every process through the database."""

    __tablename__ = "rate_counters"
    __table_args__ = (Index("ix_rate_counters_expires", "expires_at"),)

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]


class UsedChallenge(Base):
    """Proof-of-work challenges already spent, kept until they would have expired anyway."""

    __tablename__ = "used_challenges"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WebhookEndpoint(Base):
    """A URL that is told of changes (``service.webhooks``), signed by Standard Webhooks.

    ``secret`` signs every request; during a rotation ``old_secret`` signs too, until
    ``old_secret_until``. ``lists`` is empty for every list, else list ids. ``status`` is
    ``active``, ``paused`` (by an admin, or by repeated failure: ``status_reason`` says
    which) or ``disabled`` (the receiver answered 410 Gone).
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    lists: Mapped[list[int]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(100))
    old_secret: Mapped[str | None] = mapped_column(String(100))
    old_secret_until: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)  # in a row, since a success
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """Something that happened, written in the same transaction as the change itself.

    ``msg_id`` is the ``webhook-id`` every delivery of it carries, on every retry, so
    receivers can drop repeats. ``subscriber_id`` (no foreign key: the event outlives
    nothing, erasure deletes it) finds a person's events when they are erased.
    """

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    subscriber_id: Mapped[int | None] = mapped_column(Integer, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookDelivery(Base):
    """One event to one endpoint: queued -> sending (leased) -> delivered or failed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)  # the answer's start, or the error
    delivered_at: Mapped[datetime | None]


class BoxCount(Base):
    """How often the subscribe box did something (``event``: shown, dismissed, submitted,
    accepted, confirmed), per list, day, page path, copy variant and device class. No row
    per reader or per event: counts are added up (service.box_counts)."""

    __tablename__ = "box_counts"

    list_id: Mapped[int] = mapped_column(
        ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    page: Mapped[str] = mapped_column(String(256), primary_key=True)
    variant: Mapped[str] = mapped_column(String(32), primary_key=True)
    device: Mapped[str] = mapped_column(String(8), primary_key=True)
    event: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class BoxTest(Base):
    """An A/B test of a list's box: variants of its copy and trigger, with weights
    (service.box_tests). Ending a test keeps it, and its counts, for the record."""

    __tablename__ = "box_tests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # [{"key": "control", "weight": 50}, {"key": "b", "weight": 50, "title": ...}, ...]
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    winner: Mapped[str | None] = mapped_column(String(32))
