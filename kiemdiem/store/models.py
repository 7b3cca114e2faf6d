"""SQLAlchemy 2 models: the database is the source of truth for a campaign.

Times are stored as timezone-aware UTC instants. Lists are JSON columns, never
comma-separated strings. Every effect that must happen once has a unique key.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    LargeBinary,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kiemdiem.member_key import member_key


class UtcDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which drops tzinfo) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware instant")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(128))
    plan_number: Mapped[str] = mapped_column(String(128))
    plan_text: Mapped[str] = mapped_column(Text)  # the plan file as it was when the campaign was set up
    plan_hash: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Unit(Base):
    __tablename__ = "units"
    __table_args__ = (
        UniqueConstraint("campaign_id", "code", name="uq_unit_code"),
        Index("ix_units_campaign_path", "campaign_id", "path"),
        Index("ix_units_parent", "parent_id"),
        Index("ix_units_campaign_id", "campaign_id", "id"),  # the tree's fingerprint, read by every consolidation
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    # Materialised path of ancestor ids ("/1/5/23/"): subtree queries are a prefix match.
    path: Mapped[str] = mapped_column(String(1024))
    depth: Mapped[int] = mapped_column(Integer)
    emails: Mapped[list] = mapped_column(JSON, default=list)


def _code_key_default(context) -> int:
    """``members.code_key`` for an ORM or Core insert that does not give it: ``member_key(member_code)``.

    Raw-SQL inserts (the imports' driver-level paths, COPY) must set it themselves."""
    return member_key(context.get_current_parameters()["member_code"])


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("campaign_id", "member_code", name="uq_member_code"),
        Index("ix_members_unit", "unit_id", "id"),  # with the id: a part's member-id range by an index-only scan
        # Consolidation's per-unit GROUP BY over members (status, joined_on, sum of code_key)
        # reads this index alone.
        Index("ix_members_lines", "campaign_id", "unit_id", "status", "joined_on", "code_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    member_code: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(String(256))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    email: Mapped[str | None] = mapped_column(String(256), nullable=True)
    joined_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    temporary_unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    positions: Mapped[list] = mapped_column(JSON, default=list)
    # kiemdiem.member_key.member_key(member_code), computed in Python whenever a member is
    # stored (the code never changes): consolidation sums it per unit in SQL.
    code_key: Mapped[int] = mapped_column(BigInteger, default=_code_key_default)


class Submission(Base):
    """One delivery of one item (a unit's document, or a member's) with one or more files.

    The newest submission of an item is current; older ones stay as history. A classification
    list the ingest refused (``refused_at``) stays too, but does not count as delivered.
    """

    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_item", "campaign_id", "item_key", "received_at"),
        Index("ix_submissions_unit", "unit_id"),
        # The few lists the ingest refused (status_key reads their newest time on every page).
        Index(
            "ix_submissions_refused", "campaign_id", "refused_at",
            sqlite_where=text("refused_at IS NOT NULL"), postgresql_where=text("refused_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    phase_id: Mapped[str] = mapped_column(String(64))
    doc_type: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    # "unit:phase:doc:member" - one item; the same item re-submitted supersedes.
    item_key: Mapped[str] = mapped_column(String(256))
    # sha256 over the sorted file checksums: an identical re-submission is a no-op.
    content_key: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    on_time: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))  # cli | drop | web
    submitted_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Set when the ingest could not read this classification list (the tree changed after it was
    # checked at submission): kept, but not a delivery: the item is owed again.
    refused_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class SubmissionFile(Base):
    __tablename__ = "submission_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str | None] = mapped_column(String(128), nullable=True)


class MemberResult(Base):
    """A member's classification as parsed from a submitted list; cancelled rows are kept."""

    __tablename__ = "member_results"
    __table_args__ = (
        Index("ix_member_results_current", "campaign_id", "member_id", "current"),
        # Whether a row was received or cancelled after a moment (consolidation's ``_current_flags_hold``).
        Index("ix_member_results_received", "campaign_id", "received_at"),
        Index(
            "ix_member_results_cancelled", "campaign_id", "cancelled_at",
            sqlite_where=text("cancelled_at IS NOT NULL"), postgresql_where=text("cancelled_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    self_level: Mapped[str | None] = mapped_column(String(8), nullable=True)
    proposed_level: Mapped[str | None] = mapped_column(String(8), nullable=True)
    final_level: Mapped[str | None] = mapped_column(String(8), nullable=True)
    disciplined: Mapped[bool] = mapped_column(Boolean, default=False)
    sick_leave_months: Mapped[float] = mapped_column(Float, default=0.0)
    absent: Mapped[bool] = mapped_column(Boolean, default=False)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    has_self_review: Mapped[bool] = mapped_column(Boolean, default=True)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    cancel_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class OrgResult(Base):
    __tablename__ = "org_results"
    __table_args__ = (
        Index("ix_org_results_current", "campaign_id", "unit_id", "current"),
        Index("ix_org_results_decided_by", "campaign_id", "decided_by_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), nullable=True)
    self_level: Mapped[str | None] = mapped_column(String(8), nullable=True)
    level: Mapped[str | None] = mapped_column(String(8), nullable=True)
    disciplined: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    cancel_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class FindingOverride(Base):
    __tablename__ = "finding_overrides"
    __table_args__ = (UniqueConstraint("campaign_id", "finding_key", "at", name="uq_override"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    finding_key: Mapped[str] = mapped_column(String(256))
    by: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # The finding's data when granted: the override holds while the finding stays within it
    # (``rules.base.covers``); NULL (granted before 0010): whatever the numbers.
    covers: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class Snapshot(Base):
    """One version of one unit's consolidation. Same content hash, no new version."""

    __tablename__ = "snapshots"
    __table_args__ = (
        UniqueConstraint("campaign_id", "unit_id", "version", name="uq_snapshot_version"),
        Index("ix_snapshots_latest", "campaign_id", "unit_id", "version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    diff: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # against the previous version
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    # The highest member_results id when it was made: with created_at, the results it was made from
    # (a result stored later, even if dated before, is a change). None: made before this was kept.
    results_upto: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str] = mapped_column(String(256), default="")


class Outbox(Base):
    """Every email is a row: queued -> sending -> sent, or failed (kept, retried with backoff)."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_outbox_key"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_campaign", "campaign_id", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    key_material: Mapped[str] = mapped_column(Text)  # what the key was computed from, for the log
    kind: Mapped[str] = mapped_column(String(32))  # reminder | escalation | consolidation_diff | invite
    recipient: Mapped[str] = mapped_column(String(256))
    recipient_name: Mapped[str] = mapped_column(String(256), default="")
    subject: Mapped[str] = mapped_column(String(998))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list] = mapped_column(JSON, default=list)  # [{filename, content_type, size}] for display
    # The whole message as sent, built once when composed: a resend is byte-identical.
    mime: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    message_id: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text, default="")  # why this was sent, in words
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)  # quiet hours push this to the next working morning
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {type, code, message}
    gave_up: Mapped[bool] = mapped_column(Boolean, default=False)  # permanent failure or attempts exhausted: kept, not retried
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Notice(Base):
    """One outstanding item someone must be told about: planned by a phase step, composed into a digest.

    Unique per (recipient, kind, item, step), so a reminder for an offset or an escalation
    step is never planned twice. ``outbox_id`` links it to the digest that carried it.
    """

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("campaign_id", "recipient", "kind", "item_key", "step", name="uq_notice"),
        Index("ix_notices_pending", "campaign_id", "outbox_id", "recipient", "kind"),
        Index("ix_notices_unit", "unit_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    recipient: Mapped[str] = mapped_column(String(256))
    recipient_name: Mapped[str] = mapped_column(String(256), default="")
    kind: Mapped[str] = mapped_column(String(32))  # reminder | escalation
    step: Mapped[int] = mapped_column(Integer)  # reminder offset in working days, or escalation step
    item_key: Mapped[str] = mapped_column(String(256))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    phase_id: Mapped[str] = mapped_column(String(64))
    doc_type: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), nullable=True)
    planned_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), nullable=True)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)  # delivered before it was sent, or a reminder past its deadline


class EventLog(Base):
    """Append-only log of what the system and its users did (ticks, imports, overrides, web actions)."""

    __tablename__ = "event_log"
    __table_args__ = (Index("ix_event_log_campaign", "campaign_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(512), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("email", name="uq_user_email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(256))
    full_name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # admin | office | unit
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    password_hash: Mapped[str | None] = mapped_column(String(512), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class SignInToken(Base):
    __tablename__ = "sign_in_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RevokedSession(Base):
    """A session cookie given up at logout: refused until it would have expired anyway."""

    __tablename__ = "revoked_sessions"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    revoked_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class Lease(Base):
    """A named lock row for work that must not run twice at once (a campaign's consolidation)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128), nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
