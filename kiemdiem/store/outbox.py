"""The outbox: every email is a row, keyed for idempotency, moved queued → sending → sent | failed.

Composing ends when a row is saved (``enqueue``). Sending (``send_due``) claims due rows in
a short transaction, delivers each through the transport, and marks each one, with a commit
of its own, right after the server answers, so a crash can repeat at most the one message in
flight, with the same Message-ID. That commit overlaps the next message's envelope (MAIL
FROM, which delivers nothing); the next message's DATA waits for it. A reaper returns rows
left in "sending" by a dead process once their lease ends. A failed row is retried with
exponential backoff and never dropped. Tuned by ``ReminderSettings`` (batch_size,
max_attempts, backoff_seconds, sending_lease_seconds).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection, Row, bindparam, select, text, update

from email.utils import format_datetime, parseaddr

from kiemdiem.notify.messages import ComposedMessage, make_message_id, render_mime
from kiemdiem.notify.transport import SendOutcome, SendStatus
from kiemdiem.settings import ReminderSettings, SmtpSettings, smtp_settings
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import EventLog, Outbox

SENDABLE = ("queued", "failed")
OUTBOX = Outbox.__table__
EVENTS = EventLog.__table__


MISSING_MIME = SendOutcome(SendStatus.PERMANENT, None, "row has no rendered message", "MissingMime")


class Transport(Protocol):
    """One SMTP transaction in two steps (see ``SmtpTransport``): ``begin`` returns None when
    the envelope is open, else the message's outcome; ``finish`` sends DATA."""

    async def __aenter__(self): ...
    async def __aexit__(self, *exc): ...
    async def begin(self, sender: str, recipients: list[str], *, size: int | None = None) -> SendOutcome | None: ...
    async def finish(self, data: bytes) -> SendOutcome: ...


def idempotency_key(material: str) -> str:
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def enqueue(uow: UnitOfWork, **message) -> int | None:
    """Save a composed message, rendered once (``message``: ``outbox_values``' keyword arguments).
    Returns its row id, or None when that key exists."""
    values = outbox_values(**message)
    session = uow.session
    if session.autoflush:
        session.flush()  # as an ORM insert would: rows added in this unit of work (a campaign) go first
    return session.execute(_ENQUEUE, values).scalar_one_or_none()


def enqueue_many(uow: UnitOfWork, rows: list[dict]) -> list[int | None]:
    """``enqueue`` for several messages (``outbox_values`` each) in one statement: each one's row
    id, or None when its key exists (a few rows: one round trip instead of one each)."""
    if not rows:
        return []
    session = uow.session
    if session.autoflush:
        session.flush()
    ids: dict[str, int] = {}
    for start in range(0, len(rows), ENQUEUE_BATCH):
        batch = rows[start:start + ENQUEUE_BATCH]
        params = {f"{name}_{i}": row[name] for i, row in enumerate(batch) for name in _ENQUEUE_COLUMNS}
        ids.update((key, row_id) for row_id, key in session.execute(_enqueue_many_statement(len(batch)), params))
    return [ids.get(row["idempotency_key"]) for row in rows]


ENQUEUE_BATCH = 40  # rows per statement: 760 parameters, under SQLite's oldest limit (999)


def outbox_values(
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
) -> dict:
    """The outbox row of a composed message, its MIME rendered once (what ``enqueue`` saves)."""
    key = idempotency_key(key_material)
    message_id = make_message_id(key, domain)
    sender = sender or smtp_settings().from_
    mime = render_mime(message, sender=sender, recipient=recipient, message_id=message_id, date=now)
    return dict(
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
        mime=mime,
        message_id=message_id,
        reason=reason,
        status="queued",
        attempts=0,
        not_before=not_before or now,
        next_attempt_at=not_before or now,
        gave_up=False,
        created_at=now,
    )


_ENQUEUE_COLUMNS = (
    "campaign_id", "idempotency_key", "key_material", "kind", "recipient", "recipient_name",
    "subject", "body_text", "body_html", "attachments", "mime", "message_id", "reason",
    "status", "attempts", "not_before", "next_attempt_at", "gave_up", "created_at",
)


def _enqueue_statement():
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, typed by the table's
    columns; the same SQL on SQLite (3.35+) and PostgreSQL. Written as text because
    SQLAlchemy does not cache dialect INSERTs with ON CONFLICT: building one per message
    compiled it per message, which cost as much as rendering the message."""
    columns = [OUTBOX.c[name] for name in _ENQUEUE_COLUMNS]
    sql = (
        f"INSERT INTO {OUTBOX.name} ({', '.join(c.name for c in columns)}) "
        f"VALUES ({', '.join(':' + c.name for c in columns)}) "
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
    )
    return text(sql).bindparams(*(bindparam(c.name, type_=c.type) for c in columns)).columns(OUTBOX.c.id)


_ENQUEUE = _enqueue_statement()


@functools.lru_cache(maxsize=32)
def _enqueue_many_statement(count: int):
    """``_ENQUEUE`` for ``count`` rows (parameters suffixed _0, _1, …), returning id and key."""
    columns = [OUTBOX.c[name] for name in _ENQUEUE_COLUMNS]
    rows = ", ".join("(" + ", ".join(f":{c.name}_{i}" for c in columns) + ")" for i in range(count))
    sql = (
        f"INSERT INTO {OUTBOX.name} ({', '.join(c.name for c in columns)}) VALUES {rows} "
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key"
    )
    binds = [bindparam(f"{c.name}_{i}", type_=c.type) for i in range(count) for c in columns]
    return text(sql).bindparams(*binds).columns(OUTBOX.c.id, OUTBOX.c.idempotency_key)


def wall_clock() -> dt.datetime:
    """The real time, for sending leases only. A pass's ``now`` is its tick's moment (a scheduled
    run's start, a replayed date): a lease measured against it expired as soon as another tick
    ran later, and that tick re-sent the messages still going out."""
    return dt.datetime.now(dt.timezone.utc)


def reap_stale(uow: UnitOfWork, now: dt.datetime, lease_seconds: int, wall=wall_clock) -> int:
    """Return rows stuck in 'sending' past their lease (real time since their claim, or its
    last renewal) to the queue: their process died."""
    cutoff = wall() - dt.timedelta(seconds=lease_seconds)
    result = uow.session.execute(
        update(Outbox)
        .where(Outbox.status == "sending", Outbox.claimed_at <= cutoff)
        .values(status="queued", claim_token=None, next_attempt_at=now)
    )
    return result.rowcount or 0


def claim_due(connection: Connection, now: dt.datetime, limit: int, campaign_id: str | None = None) -> tuple[str, list[Row]]:
    """Atomically mark up to ``limit`` due rows as 'sending' for this claimant, and commit.

    Returns (token, rows): the rows this claim owns as (id, recipient, mime), in id order.
    """
    token = uuid.uuid4().hex
    due = (
        select(OUTBOX.c.id)
        .where(
            OUTBOX.c.status.in_(SENDABLE),
            OUTBOX.c.gave_up.is_(False),
            OUTBOX.c.next_attempt_at <= now,
            OUTBOX.c.not_before <= now,
        )
        .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
        .limit(limit)
    )
    if campaign_id is not None:
        due = due.where(OUTBOX.c.campaign_id == campaign_id)
    if connection.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)  # two ticks never claim the same row
    ids = list(connection.scalars(due))
    if not ids:
        connection.rollback()
        return token, []
    rows = connection.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(ids), OUTBOX.c.status.in_(SENDABLE))
        .values(status="sending", claim_token=token, claimed_at=wall_clock())
        .returning(OUTBOX.c.id, OUTBOX.c.recipient, OUTBOX.c.mime)
    ).all()
    connection.commit()
    return token, sorted(rows, key=lambda row: row.id)


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    gave_up: int = 0
    reaped: int = 0
    sent_ids: list[int] = field(default_factory=list)
    configuration_error: str | None = None  # the server's words when our SMTP settings are wrong


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
        with _SendingPass(store, now, settings, report) as sending:
            while True:
                token, rows = sending.claim(settings.batch_size, campaign_id)
                if not rows:
                    break
                await _deliver(rows, token, transport, sending, envelope_from, before_send)
    return report


async def _deliver(rows, token: str, transport: Transport, sending: _SendingPass, envelope_from: str, before_send) -> None:
    """Send claimed rows in order, marking each one right after the server's answer.

    The answer for one message is committed while the server reads the next one's MAIL FROM:
    the envelope (MAIL FROM, RCPT TO) delivers nothing, and that message's DATA goes only
    after the commit. So at any moment at most one accepted message is not yet marked, and a
    crash repeats only that one.
    """
    answered = None  # (row_id, token, outcome) of the previous message, not yet marked
    for row_id, recipient, mime in rows:
        if before_send is not None:
            before_send(row_id)
        sending.keep_claim(token)
        if mime is not None:
            mime = dated(mime, sending.date_header)
        envelope = None if mime is None else asyncio.ensure_future(transport.begin(envelope_from, [recipient], size=len(mime)))
        try:
            if answered is not None:
                if envelope is not None:
                    await asyncio.sleep(0)  # the envelope's first step sends MAIL FROM
                _mark(sending, *answered)
        finally:
            outcome = MISSING_MIME if envelope is None else await envelope  # never left running
        if outcome is None:  # the server took the envelope
            outcome = await transport.finish(mime)
        answered = (row_id, token, outcome)
    if answered is not None:
        _mark(sending, *answered)


_DATE_LINE = b"\r\nDate: "


def dated(mime: bytes, date_header: bytes) -> bytes:
    """The stored message with its Date header set to the sending pass's moment: a message is
    composed at a tick but may go out later (held for office hours, retried after a failure),
    and mail programs sort and show it by this header."""
    start = mime.find(_DATE_LINE, 0, mime.find(b"\r\n\r\n"))
    if start < 0:
        return mime
    start += len(_DATE_LINE)
    return mime[:start] + date_header + mime[mime.find(b"\r\n", start):]


# The one statement every message pays for: run on the DB-API cursor, where the driver keeps it
# prepared, compiled once per sending pass from this text for the dialect.
MARK_SENT = text(
    "UPDATE outbox SET status = 'sent', sent_at = :now, last_error = NULL, claim_token = NULL, attempts = attempts + 1"
    " WHERE id = :row_id AND claim_token = :token"
).bindparams(bindparam("now", type_=OUTBOX.c.sent_at.type), bindparam("row_id"), bindparam("token"))


class _SendingPass:
    """One ``send_due`` call's own connection: it claims each batch and marks each row, with a
    commit of its own per message (``_mark``).

    On SQLite, none of these commits checkpoints the WAL (copying it into the database file
    and syncing both, while the server would wait): after each claim, a thread of the pass
    checkpoints the previous batch's marks and this claim while the batch goes out.
    """

    def __init__(self, store: Store, now: dt.datetime, settings: ReminderSettings, report: SendReport):
        self.store, self.now, self.settings, self.report = store, now, settings, report
        self.date_header = format_datetime(now).encode("ascii")
        self.connection: Connection | None = None
        self._autocheckpoint: int | None = None
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint: Future | None = None
        self._claimed = wall_clock()  # when the current batch was claimed or its lease last renewed

    def __enter__(self) -> _SendingPass:
        self.connection = connection = self.store.engine.connect()
        dialect = connection.dialect
        compiled = MARK_SENT.compile(dialect=dialect)
        self._sent_sql = compiled.string
        self._sent_names = compiled.positiontup if compiled.positional else None
        process = OUTBOX.c.sent_at.type.bind_processor(dialect)
        self._sent_at = process(self.now) if process else self.now
        if dialect.name == "sqlite":
            self._autocheckpoint = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            connection.commit()
            self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-checkpoint")
        self._dbapi = connection.connection
        self._cursor = self._dbapi.cursor()
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        try:
            if self._checkpointer is not None:
                self._checkpointer.shutdown()
                if self._checkpoint is not None and exc_type is None:
                    self._checkpoint.result()
        finally:
            try:
                self._cursor.close()
                if self._autocheckpoint is not None:  # back to the pool as it came
                    self.connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint={int(self._autocheckpoint)}")
            finally:
                self.connection.close()

    def keep_claim(self, token: str) -> None:
        """Renew the batch's lease when a third of it has gone: a slow relay must not let another
        pass reap and re-send the rows this one is still sending."""
        now = wall_clock()
        if (now - self._claimed).total_seconds() < self.settings.sending_lease_seconds / 3:
            return
        self.connection.execute(
            update(OUTBOX).where(OUTBOX.c.claim_token == token, OUTBOX.c.status == "sending").values(claimed_at=now)
        )
        self.connection.commit()
        self._claimed = now

    def claim(self, limit: int, campaign_id: str | None) -> tuple[str, list[Row]]:
        self._claimed = wall_clock()  # at least as early as the claim's own stamp
        token, rows = claim_due(self.connection, self.now, limit, campaign_id)
        if rows and self._checkpointer is not None and (self._checkpoint is None or self._checkpoint.done()):
            if self._checkpoint is not None:
                self._checkpoint.result()  # a failed checkpoint fails the pass
            self._checkpoint = self._checkpointer.submit(_checkpoint, self.store)
        return token, rows

    def sent(self, row_id: int, token: str) -> bool:
        """Mark a row sent and commit; False when this claim no longer owns it."""
        values = {"now": self._sent_at, "row_id": row_id, "token": token}
        self._cursor.execute(self._sent_sql, values if self._sent_names is None else tuple(values[name] for name in self._sent_names))
        owned = self._cursor.rowcount == 1
        self._dbapi.commit()
        return owned


def _checkpoint(store: Store) -> None:
    """Copy the SQLite WAL into the database file, without blocking readers or writers."""
    with store.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()


def _mark(sending: _SendingPass, row_id: int, token: str, outcome) -> None:
    """Record one answer from the server, and commit. The row itself is the log of what was
    sent, when and why."""
    report = sending.report
    if outcome.accepted:
        if sending.sent(row_id, token):
            report.sent += 1
            report.sent_ids.append(row_id)
        return  # otherwise the row was reaped and re-claimed elsewhere: that claimant owns it now
    connection, now, settings = sending.connection, sending.now, sending.settings
    owned = (OUTBOX.c.id == row_id) & (OUTBOX.c.claim_token == token)
    row = connection.execute(select(OUTBOX.c.attempts, OUTBOX.c.campaign_id, OUTBOX.c.recipient).where(owned)).first()
    if row is None:
        connection.rollback()
        return
    if outcome.configuration:
        # Wrong settings fail every message alike: not counted against the message (it would be
        # given up while nobody fixes them), retried soon after, and reported to the operator.
        attempts, gave_up, delay = row.attempts, False, settings.backoff_seconds
        report.configuration_error = outcome.message
    else:
        attempts = row.attempts + 1
        gave_up = outcome.permanent or attempts >= settings.max_attempts
        delay = settings.backoff_seconds * (2 ** (attempts - 1))
    connection.execute(
        update(OUTBOX).where(owned).values(
            status="failed", attempts=attempts, claim_token=None, last_error=outcome.as_dict(), gave_up=gave_up,
            next_attempt_at=now + dt.timedelta(seconds=min(delay, 6 * 3600)),
        )
    )
    connection.execute(
        EVENTS.insert().values(
            campaign_id=row.campaign_id, at=now, actor="outbox", action="mail.failed", subject=row.recipient,
            detail={"outbox_id": row_id, "attempts": attempts, "error": outcome.as_dict(), "gave_up": gave_up},
        )
    )
    connection.commit()
    if gave_up:
        report.gave_up += 1
    else:
        report.failed += 1


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

