"""Planning notices and composing them into digests, one per recipient and kind per tick.

``save_notices`` stores what ``kiemdiem.reminders.plan_notices`` found, ignoring any
(recipient, kind, item, step) already planned. ``compose_digests`` runs only in working
hours: it re-checks each pending notice against the submissions received so far (a unit
that delivered in the meantime is not reminded), then saves one outbox row per recipient
and kind, linking the notices it carries. Two ticks composing at once cannot both take a
notice: linking is conditional and a digest whose notices were taken is rolled back.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects import sqlite

from kiemdiem.catalogue import DOCUMENTS
from kiemdiem.notify.messages import OutstandingItem, PhaseDue, compose_escalation, compose_reminder
from kiemdiem.plan import Plan
from kiemdiem.reminders import PlannedNotice, RecipientDirectory, overdue_working_days, plan_notices
from kiemdiem.status import CampaignStatus
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import Member, Notice, Unit
from kiemdiem.store.outbox import enqueue
from kiemdiem.store.queries import load_deliveries
from kiemdiem.tabular import fold

NOTICE_BATCH = 5000  # rows per INSERT; keeps statements well under driver parameter limits


def recipient_directory(uow: UnitOfWork, plan: Plan, campaign_id: str, status: CampaignStatus) -> RecipientDirectory:
    names = {fold(a.person) for a in plan.assignments if not a.email}
    member_emails: dict[str, str] = {}
    if names:
        # Streamed: at national scale the members do not fit in memory at once.
        for full_name, email in uow.session.execute(
            select(Member.full_name, Member.email).where(Member.campaign_id == campaign_id, Member.email.is_not(None)),
            execution_options={"yield_per": 20_000},
        ):
            if fold(full_name) in names:
                member_emails.setdefault(fold(full_name), email)
    return RecipientDirectory(plan, status.units, member_emails)


def save_notices(
    uow: UnitOfWork, campaign_id: str, notices: list[PlannedNotice], now: dt.datetime, *,
    unit_ids: Mapping[str, int] | None = None, member_ids: Mapping[str, int] | None = None,
) -> int:
    """Insert planned notices; duplicates of earlier ones are ignored. Returns how many are new.

    ``unit_ids`` and ``member_ids`` (code -> id) cover the notices' units and members when the
    caller has them (planning by partitions); otherwise the campaign's whole maps are read."""
    if not notices:
        return 0
    session = uow.session
    if unit_ids is None:
        unit_ids = dict(session.execute(select(Unit.code, Unit.id).where(Unit.campaign_id == campaign_id)).all())
    if member_ids is None:
        member_ids = {}
        if any(n.item.member_code for n in notices):
            # The campaign's whole id map: an IN list of 80,000 codes exceeds PostgreSQL's parameter limit.
            member_ids = dict(session.execute(select(Member.member_code, Member.id).where(Member.campaign_id == campaign_id)).all())
    rows = (
        (
            campaign_id, n.recipient.email, n.recipient.name, n.kind, n.step, n.item.key, unit_ids[n.item.unit_code],
            n.item.phase_id, n.item.doc_type, member_ids.get(n.item.member_code) if n.item.member_code else None,
        )
        for n in notices
    )
    if session.get_bind().dialect.name == "postgresql":
        return _copy_notices(session, rows, now)
    # Drivers disagree on rowcount for executemany: count the rows instead.
    before = session.scalar(select(func.count()).select_from(Notice).where(Notice.campaign_id == campaign_id))
    batch: list[dict] = []
    for row in rows:
        batch.append({**dict(zip(NOTICE_COLUMNS, row)), "planned_at": now})
        if len(batch) == NOTICE_BATCH:
            _insert_ignoring(session, batch)
            batch = []
    if batch:
        _insert_ignoring(session, batch)
    after = session.scalar(select(func.count()).select_from(Notice).where(Notice.campaign_id == campaign_id))
    return after - before


NOTICE_COLUMNS = ("campaign_id", "recipient", "recipient_name", "kind", "step", "item_key", "unit_id", "phase_id", "doc_type", "member_id")
_NOTICE_BATCH_TABLE = "kiemdiem_notice_batch"


def _insert_ignoring(session, rows: list[dict]) -> None:
    statement = sqlite.insert(Notice).on_conflict_do_nothing(index_elements=["campaign_id", "recipient", "kind", "item_key", "step"])
    session.execute(statement, rows)


def _copy_notices(session, rows, now: dt.datetime) -> int:
    """PostgreSQL: COPY the rows into a session-local table, then one INSERT ... SELECT that skips
    notices already planned. Tens of times faster than a multi-row INSERT for 100,000s of rows;
    runs in the session's transaction. Returns how many are new."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    columns = ", ".join(NOTICE_COLUMNS)
    with driver.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_NOTICE_BATCH_TABLE} (campaign_id varchar, recipient varchar, recipient_name varchar,"
            " kind varchar, step integer, item_key varchar, unit_id integer, phase_id varchar, doc_type varchar, member_id integer)"
            " ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {_NOTICE_BATCH_TABLE}")
        with cursor.copy(f"COPY {_NOTICE_BATCH_TABLE} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO notices ({columns}, planned_at) SELECT {columns}, %s FROM {_NOTICE_BATCH_TABLE}"
            " ON CONFLICT (campaign_id, recipient, kind, item_key, step) DO NOTHING",
            (now.astimezone(dt.timezone.utc),),
        )
        created = cursor.rowcount
        cursor.execute(f"TRUNCATE {_NOTICE_BATCH_TABLE}")
    return created


def plan_and_save(
    uow: UnitOfWork,
    plan: Plan,
    campaign_id: str,
    status: CampaignStatus,
    now: dt.datetime,
    phase_ids: set[str] | None = None,
    kinds: frozenset[str] = frozenset({"reminder", "escalation"}),
    *,
    directory: RecipientDirectory | None = None,
    unit_ids: Mapping[str, int] | None = None,
    member_ids: Mapping[str, int] | None = None,
) -> int:
    """Plan the notices of ``status``'s units and save them. ``directory`` (who answers for a
    unit) must cover the whole tree when ``status`` covers only part of it."""
    directory = directory or recipient_directory(uow, plan, campaign_id, status)
    notices = plan_notices(plan, status, directory, now, phase_ids, kinds)
    return save_notices(uow, campaign_id, notices, now, unit_ids=unit_ids, member_ids=member_ids)


@dataclass(frozen=True, slots=True)
class PendingNotice:
    id: int
    recipient: str
    recipient_name: str
    kind: str
    step: int
    item_key: str
    unit_id: int
    phase_id: str
    doc_type: str
    member_id: int | None


@dataclass
class ComposeReport:
    digests: int = 0
    notices: int = 0
    cancelled: int = 0
    deferred: bool = False  # quiet hours: nothing composed


def compose_digests(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, *, submit_url: str, sender: str) -> ComposeReport:
    report = ComposeReport()
    if not plan.calendar.is_working_time(now):
        report.deferred = True
        return report
    with store.uow() as uow:
        session = uow.session
        pending = [
            PendingNotice(*row)
            for row in session.execute(
                select(
                    Notice.id, Notice.recipient, Notice.recipient_name, Notice.kind, Notice.step, Notice.item_key,
                    Notice.unit_id, Notice.phase_id, Notice.doc_type, Notice.member_id,
                )
                .where(Notice.campaign_id == campaign_id, Notice.outbox_id.is_(None), Notice.cancelled_at.is_(None))
                .order_by(Notice.id)
            )
        ]
        if not pending:
            return report
        delivered = load_deliveries(uow, campaign_id, now)
        phases = {p.id: p for p in plan.phases}
        stale = [
            n.id
            for n in pending
            if n.item_key in delivered or (n.kind == "reminder" and now > phases[n.phase_id].deadline)
        ]
        if stale:
            session.execute(update(Notice).where(Notice.id.in_(stale)).values(cancelled_at=now))
            uow.commit()
            report.cancelled = len(stale)
        stale_ids = set(stale)
        live = [n for n in pending if n.id not in stale_ids]
        max_seen = max(n.id for n in pending)
        units = {uid: (code, name) for uid, code, name in session.execute(select(Unit.id, Unit.code, Unit.name).where(Unit.campaign_id == campaign_id))}
        member_ids = {n.member_id for n in live if n.member_id}
        members = {}
        if member_ids:
            members = {mid: (code, name) for mid, code, name in session.execute(select(Member.id, Member.member_code, Member.full_name).where(Member.id.in_(member_ids)))}
    groups: dict[tuple[str, str], list[PendingNotice]] = defaultdict(list)
    for n in live:
        groups[(n.recipient, n.kind)].append(n)
    settings_url = submit_url
    for (recipient, kind), notices in sorted(groups.items()):
        message, reason = _compose(plan, kind, notices, units, members, now, settings_url)
        material = f"{campaign_id}|{recipient}|{kind}|" + ",".join(sorted(f"{n.item_key}@{n.step}" for n in notices))
        with store.uow() as uow:
            outbox_id = enqueue(
                uow, campaign_id=campaign_id, kind=kind, recipient=recipient, recipient_name=notices[0].recipient_name,
                message=message, key_material=material, reason=reason, now=now, sender=sender,
            )
            if outbox_id is None:
                continue  # the same digest was saved by a concurrent tick
            # The digest carries every live pending notice of this recipient and kind seen above;
            # a notice planned since has a higher id and waits for the next digest.
            linked = uow.session.execute(
                update(Notice)
                .where(
                    Notice.campaign_id == campaign_id, Notice.recipient == recipient, Notice.kind == kind,
                    Notice.outbox_id.is_(None), Notice.cancelled_at.is_(None), Notice.id <= max_seen,
                )
                .values(outbox_id=outbox_id)
            ).rowcount
            if linked != len(notices):
                continue  # another tick took some of these notices: roll back this digest
            uow.commit()
        report.digests += 1
        report.notices += len(notices)
    return report


def _compose(plan: Plan, kind: str, notices: list[PendingNotice], units, members, now: dt.datetime, submit_url: str):
    by_phase: dict[str, list[PendingNotice]] = defaultdict(list)
    for n in notices:
        by_phase[n.phase_id].append(n)
    dues = []
    for phase_id, items in by_phase.items():
        phase = plan.phase(phase_id)
        seen: set[str] = set()
        outstanding = []
        for n in sorted(items, key=lambda n: n.item_key):
            if n.item_key in seen:
                continue  # an item may sit at two escalation steps in one digest
            seen.add(n.item_key)
            unit_code, unit_name = units[n.unit_id]
            member_code, member_name = members.get(n.member_id, (None, None))
            outstanding.append(OutstandingItem(unit_code, unit_name, n.doc_type, DOCUMENTS[n.doc_type].name, member_code, member_name))
        dues.append(PhaseDue(plan.number, plan.issuer, phase.id, phase.name, phase.deadline, phase.reading, tuple(outstanding)))
    dues.sort(key=lambda d: (d.deadline, d.phase_id))
    name = notices[0].recipient_name or notices[0].recipient
    item_count = sum(len(d.items) for d in dues)
    if kind == "reminder":
        offset = min(n.step for n in notices)
        message = compose_reminder(name, dues, submit_url=submit_url, offset_working_days=offset, now=now)
        reason = f"nhắc hạn (trước {offset} ngày làm việc): {item_count} mục còn thiếu ở {len(dues)} giai đoạn"
    else:
        step = max(n.step for n in notices)
        late = max(overdue_working_days(plan, plan.phase(pid), now) for pid in by_phase)
        message = compose_escalation(name, dues, step=step, overdue_working_days=late, submit_url=submit_url, now=now)
        reason = f"chuyển cấp bước {step}: {item_count} mục quá hạn {late} ngày làm việc ở {len(dues)} giai đoạn"
    return message, reason
