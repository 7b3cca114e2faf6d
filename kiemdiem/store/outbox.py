"""The outbox: every email is a row, keyed for idempotency, moved queued → sending → sent | failed.

Composing ends when a row is saved (``enqueue``). Sending (``send_due``) claims due rows in
a short transaction, delivers each through the transport, and marks each one right after
the server answers, so a crash can repeat at most the one message in flight, with the same
Message-ID. A reaper returns rows left in "sending" by a dead process once their lease ends.
A failed row is retried with exponential backoff and never dropped. Tuned by
``ReminderSettings`` (batch_size, max_attempts, backoff_seconds, sending_lease_seconds).
"""

from __future__ import annotations

import datetime as dt
import email.policy
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from email.utils import parseaddr

from kiemdiem.notify.messages import ComposedMessage, build_mime, make_message_id
from kiemdiem.notify.transport import SendOutcome, SendStatus
from kiemdiem.settings import ReminderSettings, SmtpSettings, smtp_settings
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import EventLog, Outbox

SENDABLE = ("queued", "failed")


MISSING_MIME = SendOutcome(SendStatus.PERMANENT, None, "row has no rendered message", "MissingMime")


class Transport(Protocol):
    async def __aenter__(self): ...
    async def __aexit__(self, *exc): ...
    async def send_bytes(self, data: bytes, *, sender: str, recipients: list[str]): ...


def idempotency_key(material: str) -> str:
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def enqueue(
    uow: UnitOfWork,
    *,
    campaign_id: str,
    kind: str,
    recipient: str,
    recipient_name: str,
    message: ComposedMessage,
    key_material: str,
    reason: str,
    now: dt.datetime,
    sender: str | None = None,
    not_before: dt.datetime | None = None,
    domain: str = "kiemdiem.local",
) -> int | None:
    """Save a composed message, rendered once. Returns its row id, or None when that key exists."""
    key = idempotency_key(key_material)
    message_id = make_message_id(key, domain)
    sender = sender or smtp_settings().from_
    mime = build_mime(message, sender=sender, recipient=recipient, message_id=message_id, date=now)
    values = dict(
        campaign_id=campaign_id,
        idempotency_key=key,
        key_material=key_material,
        kind=kind,
        recipient=recipient,
        recipient_name=recipient_name,
        subject=message.subject,
        body_text=message.text,
        body_html=message.html,
        attachments=[{"filename": a.filename, "content_type": a.content_type, "size": len(a.data)} for a in message.attachments],
        mime=mime.as_bytes(policy=email.policy.SMTP),
        message_id=message_id,
        reason=reason,
        status="queued",
        attempts=0,
        not_before=not_before or now,
        next_attempt_at=not_before or now,
        gave_up=False,
        created_at=now,
    )
    session = uow.session
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Outbox).values(**values).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(Outbox.id)
    return session.execute(statement).scalar_one_or_none()


def reap_stale(uow: UnitOfWork, now: dt.datetime, lease_seconds: int) -> int:
    """Return rows stuck in 'sending' past their lease to the queue (their process died)."""
    cutoff = now - dt.timedelta(seconds=lease_seconds)
    result = uow.session.execute(
        update(Outbox)
        .where(Outbox.status == "sending", Outbox.claimed_at <= cutoff)
        .values(status="queued", claim_token=None, next_attempt_at=now)
    )
    return result.rowcount or 0


def claim_due(store: Store, now: dt.datetime, limit: int, campaign_id: str | None = None) -> tuple[str, list[int]]:
    """Atomically mark up to ``limit`` due rows as 'sending' for this claimant; returns (token, ids)."""
    token = uuid.uuid4().hex
    due = (
        select(Outbox.id)
        .where(
            Outbox.status.in_(SENDABLE),
            Outbox.gave_up.is_(False),
            Outbox.next_attempt_at <= now,
            Outbox.not_before <= now,
        )
        .order_by(Outbox.next_attempt_at, Outbox.id)
        .limit(limit)
    )
    if campaign_id is not None:
        due = due.where(Outbox.campaign_id == campaign_id)
    with store.uow() as uow:
        if store.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)  # two ticks never claim the same row
        ids = list(uow.session.scalars(due))
        if ids:
            uow.session.execute(
                update(Outbox)
                .where(Outbox.id.in_(ids), Outbox.status.in_(SENDABLE))
                .values(status="sending", claim_token=token, claimed_at=now)
            )
            uow.commit()
        claimed = list(uow.session.scalars(select(Outbox.id).where(Outbox.claim_token == token).order_by(Outbox.id))) if ids else []
    return token, claimed


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    gave_up: int = 0
    reaped: int = 0
    sent_ids: list[int] = field(default_factory=list)


async def send_due(
    store: Store,
    transport: Transport,
    now: dt.datetime,
    *,
    smtp: SmtpSettings,
    settings: ReminderSettings,
    campaign_id: str | None = None,
    before_send=None,
) -> SendReport:
    """Deliver every due row, batch by batch. ``before_send(row_id)`` is a test hook for crash points."""
    report = SendReport()
    with store.uow() as uow:
        report.reaped = reap_stale(uow, now, settings.sending_lease_seconds)
        uow.commit()
    envelope_from = parseaddr(smtp.from_)[1] or smtp.from_
    async with transport:
        # One connection for the marks: a Core update and commit per message, no ORM session.
        with store.engine.connect() as connection:
            while True:
                token, ids = claim_due(store, now, settings.batch_size, campaign_id)
                if not ids:
                    break
                rows = connection.execute(
                    select(OUTBOX.c.id, OUTBOX.c.recipient, OUTBOX.c.mime)
                    .where(OUTBOX.c.id.in_(ids), OUTBOX.c.claim_token == token)
                    .order_by(OUTBOX.c.id)
                ).all()
                connection.commit()
                for row_id, recipient, mime in rows:
                    if before_send is not None:
                        before_send(row_id)
                    if mime is None:
                        outcome = MISSING_MIME
                    else:
                        outcome = await transport.send_bytes(mime, sender=envelope_from, recipients=[recipient])
                    _mark(connection, row_id, token, outcome, now, settings, report)
                    connection.commit()
    return report


OUTBOX = Outbox.__table__
EVENTS = EventLog.__table__


def _mark(connection, row_id: int, token: str, outcome, now: dt.datetime, settings: ReminderSettings, report: SendReport) -> None:
    """Record one answer from the server. The row itself is the log of what was sent, when and why."""
    owned = (OUTBOX.c.id == row_id) & (OUTBOX.c.claim_token == token)
    if outcome.accepted:
        done = connection.execute(
            update(OUTBOX).where(owned).values(status="sent", sent_at=now, last_error=None, claim_token=None, attempts=OUTBOX.c.attempts + 1)
        )
        if done.rowcount:
            report.sent += 1
            report.sent_ids.append(row_id)
        return  # otherwise the row was reaped and re-claimed elsewhere: that claimant owns it now
    row = connection.execute(select(OUTBOX.c.attempts, OUTBOX.c.campaign_id, OUTBOX.c.recipient).where(owned)).first()
    if row is None:
        return
    attempts = row.attempts + 1
    gave_up = outcome.permanent or attempts >= settings.max_attempts
    delay = settings.backoff_seconds * (2 ** (attempts - 1))
    connection.execute(
        update(OUTBOX).where(owned).values(
            status="failed", attempts=attempts, claim_token=None, last_error=outcome.as_dict(), gave_up=gave_up,
            next_attempt_at=now + dt.timedelta(seconds=min(delay, 6 * 3600)),
        )
    )
    if gave_up:
        report.gave_up += 1
    else:
        report.failed += 1
    connection.execute(
        EVENTS.insert().values(
            campaign_id=row.campaign_id, at=now, actor="outbox", action="mail.failed", subject=row.recipient,
            detail={"outbox_id": row_id, "attempts": attempts, "error": outcome.as_dict(), "gave_up": gave_up},
        )
    )


def retry_given_up(uow: UnitOfWork, outbox_ids: list[int], now: dt.datetime, actor: str) -> int:
    """An operator puts given-up rows back in the queue (after fixing an address, say)."""
    result = uow.session.execute(
        update(Outbox).where(Outbox.id.in_(outbox_ids), Outbox.gave_up.is_(True)).values(gave_up=False, status="queued", next_attempt_at=now)
    )
    uow.session.add(EventLog(at=now, actor=actor, action="mail.retry", subject=",".join(map(str, outbox_ids)), detail={}))
    return result.rowcount or 0


def outbox_counts(uow: UnitOfWork, campaign_id: str) -> dict[str, int]:
    rows = uow.session.execute(select(Outbox.kind, Outbox.status, Outbox.gave_up).where(Outbox.campaign_id == campaign_id))
    counts: dict[str, int] = {}
    for kind, status, gave_up in rows:
        key = f"{kind}.{'gave_up' if gave_up else status}"
        counts[key] = counts.get(key, 0) + 1
    return counts

