"""Planning notices and composing them into digests, one per recipient and kind per tick.

``save_notices`` stores what ``kiemdiem.reminders.plan_notices`` found, ignoring any
(recipient, kind, item, step) already planned. ``compose_digests`` runs only in working
hours: it re-checks each pending notice against the submissions received so far (a unit
that delivered in the meantime is not reminded), then saves one outbox row per recipient
and kind, linking the notices it carries. Two ticks composing at once cannot both take a
notice: linking is conditional and a digest whose notices were taken is rolled back.

A reminder also shows its units' own items overdue in other phases ("Các mục đã quá hạn"):
those their superiors were told of by escalation (any escalation notice, sent or not) and
not delivered by ``now``, less those the reminder's recipient is itself told of by escalation.
Read when the reminder is composed, never planned as notices: no email goes out for them alone.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from itertools import groupby
from operator import itemgetter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.dialects import sqlite

from kiemdiem.catalogue import DOCUMENTS
from kiemdiem.notify import messages
from kiemdiem.notify.messages import OutstandingItem, PhaseDue, compose_escalation, compose_reminder
from kiemdiem.plan import Plan
from kiemdiem.reminders import PlannedNotice, RecipientDirectory, overdue_working_days, plan_notices
from kiemdiem.status import CampaignStatus
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import Member, Notice, Submission, Unit
from kiemdiem.store.outbox import enqueue
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
    # This connection's own inserts (a conflict skipped is no change): counting the table before
    # and after also counted notices another phase of the same tick committed in between.
    driver = session.connection().connection.driver_connection
    before = driver.total_changes
    batch: list[dict] = []
    for row in rows:
        batch.append({**dict(zip(NOTICE_COLUMNS, row)), "planned_at": now})
        if len(batch) == NOTICE_BATCH:
            _insert_ignoring(session, batch)
            batch = []
    if batch:
        _insert_ignoring(session, batch)
    return driver.total_changes - before


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
    cancelled_delivered: int = 0  # the item was delivered
    cancelled_past_deadline: int = 0  # reminders whose deadline passed (escalation takes over)
    deferred: bool = False  # quiet hours: nothing composed

    @property
    def cancelled(self) -> int:
        return self.cancelled_delivered + self.cancelled_past_deadline


COMPOSE_COMMIT_EVERY = 200  # digests per transaction; each digest is a savepoint of its own
STREAM_ROWS = 5000


def compose_digests(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, *, submit_url: str, sender: str,
                    drop_share: str = "") -> ComposeReport:
    """Cancel the pending notices that no longer hold, then save one digest per (recipient, kind).

    Set-based and streamed, so that a national reminder morning (millions of notices) runs in
    bounded memory: the stale notices are cancelled by one UPDATE, and the live ones are read
    in (recipient, kind) order over their own connection, one digest's worth at a time. Digests
    are committed in batches; a crash loses at most the batch in hand, which the next tick
    composes again into the same bytes (the Message-ID and the boundaries come from the key).
    """
    report = ComposeReport()
    if not plan.calendar.is_working_time(now):
        report.deferred = True
        return report
    with store.uow() as uow:
        report.cancelled_delivered, report.cancelled_past_deadline = _cancel_stale(uow, plan, campaign_id, now)
        uow.commit()
        # Notices planned from here on have higher ids and wait for the next digest.
        max_seen = uow.session.scalar(select(func.max(NOTICES.c.id)).where(*_pending(campaign_id)))
        # The reminded units that have items overdue elsewhere: only their reminders look them up.
        overdue_units = _units_with_overdue(uow, campaign_id, now, max_seen) if max_seen is not None else set()
    if max_seen is None:
        return report
    link = _link_statement()
    with store.engine.connect() as reader, store.uow() as uow:
        rows = reader.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
            _live_query(store.dialect, campaign_id, max_seen)
        )
        in_batch = (0, 0)
        for (recipient, kind), group in groupby(rows, key=itemgetter(0, 3)):
            notices, units, members = _group(group)
            overdue: list[PhaseDue] = []
            if kind == "reminder" and overdue_units:
                own = sorted({n.unit_id for n in notices} & overdue_units)
                if own:
                    overdue = _own_overdue(uow, plan, campaign_id, recipient, own, units, now)
            message, reason = _compose(plan, kind, notices, units, members, now, submit_url, drop_share, overdue)
            material = f"{campaign_id}|{recipient}|{kind}|" + ",".join(sorted(f"{n.item_key}@{n.step}" for n in notices))
            savepoint = uow.session.begin_nested()
            outbox_id = enqueue(
                uow, campaign_id=campaign_id, kind=kind, recipient=recipient, recipient_name=notices[0].recipient_name,
                message=message, key_material=material, reason=reason, now=now, sender=sender,
            )
            if outbox_id is None:  # the same digest was saved by a concurrent tick
                savepoint.rollback()
                continue
            linked = uow.session.execute(
                link, {"b_campaign": campaign_id, "b_recipient": recipient, "b_kind": kind, "b_max_seen": max_seen, "b_outbox": outbox_id}
            ).rowcount
            if linked != len(notices):  # another tick took some of these notices: drop this digest
                savepoint.rollback()
                continue
            savepoint.commit()
            in_batch = (in_batch[0] + 1, in_batch[1] + len(notices))
            if in_batch[0] == COMPOSE_COMMIT_EVERY:
                uow.commit()
                report.digests, report.notices = report.digests + in_batch[0], report.notices + in_batch[1]
                in_batch = (0, 0)
        uow.commit()
        report.digests, report.notices = report.digests + in_batch[0], report.notices + in_batch[1]
    return report


NOTICES = Notice.__table__
UNITS = Unit.__table__
MEMBERS = Member.__table__
SUBMISSIONS = Submission.__table__


def _pending(campaign_id: str) -> tuple:
    return (NOTICES.c.campaign_id == campaign_id, NOTICES.c.outbox_id.is_(None), NOTICES.c.cancelled_at.is_(None))


def _cancel_stale(uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime) -> tuple[int, int]:
    """Cancel pending notices whose item has been delivered by ``now``, then reminders whose
    deadline has passed; how many for each reason (a tick tells the office which)."""
    delivered = select(Submission.item_key).where(
        Submission.campaign_id == campaign_id, Submission.received_at <= now, Submission.refused_at.is_(None)
    )
    result = uow.session.execute(update(NOTICES).where(*_pending(campaign_id), NOTICES.c.item_key.in_(delivered)).values(cancelled_at=now))
    by_delivery = result.rowcount or 0
    past = [p.id for p in plan.phases if now > p.deadline]
    if not past:
        return by_delivery, 0
    result = uow.session.execute(
        update(NOTICES).where(*_pending(campaign_id), NOTICES.c.kind == "reminder", NOTICES.c.phase_id.in_(past)).values(cancelled_at=now)
    )
    return by_delivery, result.rowcount or 0


def _undelivered(item_key, campaign_id: str, now: dt.datetime):
    """No submission of the item counts as delivered by ``now`` (as ``_cancel_stale`` reads it)."""
    return ~exists().where(
        SUBMISSIONS.c.campaign_id == campaign_id, SUBMISSIONS.c.item_key == item_key,
        SUBMISSIONS.c.received_at <= now, SUBMISSIONS.c.refused_at.is_(None),
    )


def _units_with_overdue(uow: UnitOfWork, campaign_id: str, now: dt.datetime, max_seen: int) -> set[int]:
    """Units with a pending reminder that also have an escalated item not delivered by ``now``."""
    escalated = NOTICES.alias("e")
    reminded = select(NOTICES.c.unit_id).where(*_pending(campaign_id), NOTICES.c.kind == "reminder", NOTICES.c.id <= max_seen)
    return set(uow.session.scalars(
        select(escalated.c.unit_id).distinct().where(
            escalated.c.campaign_id == campaign_id, escalated.c.kind == "escalation", escalated.c.unit_id.in_(reminded),
            _undelivered(escalated.c.item_key, campaign_id, now),
        )
    ))


def _own_overdue(uow: UnitOfWork, plan: Plan, campaign_id: str, recipient: str, unit_ids: list[int],
                 units: dict[int, tuple[str, str]], now: dt.datetime) -> list[PhaseDue]:
    """The items of ``unit_ids`` (a reminder's units) overdue in any phase: escalated to their
    superiors, not delivered by ``now``, and not escalated to ``recipient`` itself (its escalation
    says so already). Each phase with its working days overdue; counted per unit, not read item
    by item, past ``messages.MAX_OVERDUE_DETAILED_ITEMS``."""
    escalated, own = NOTICES.alias("e"), NOTICES.alias("o")
    told = exists().where(
        own.c.campaign_id == campaign_id, own.c.recipient == recipient, own.c.kind == "escalation", own.c.item_key == escalated.c.item_key,
    )
    where = (
        escalated.c.campaign_id == campaign_id, escalated.c.kind == "escalation", escalated.c.unit_id.in_(unit_ids),
        _undelivered(escalated.c.item_key, campaign_id, now), ~told,
    )
    phases = {p.id: p for p in plan.phases}
    counts = [
        (unit_id, phase_id, n) for unit_id, phase_id, n in uow.session.execute(
            select(escalated.c.unit_id, escalated.c.phase_id, func.count(escalated.c.item_key.distinct()))
            .where(*where).group_by(escalated.c.unit_id, escalated.c.phase_id)
        ) if phase_id in phases
    ]
    if not counts:
        return []
    dues = []
    if sum(n for _, _, n in counts) > messages.MAX_OVERDUE_DETAILED_ITEMS:
        by_phase: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for unit_id, phase_id, n in counts:
            by_phase[phase_id].append((*units[unit_id], n))
        for phase_id, unit_counts in by_phase.items():
            dues.append(_overdue_due(plan, phases[phase_id], (), tuple(sorted(unit_counts)), now))
        return dues
    rows = uow.session.execute(
        select(escalated.c.item_key, escalated.c.unit_id, escalated.c.phase_id, escalated.c.doc_type, MEMBERS.c.member_code, MEMBERS.c.full_name)
        .distinct().select_from(escalated.outerjoin(MEMBERS, MEMBERS.c.id == escalated.c.member_id)).where(*where)
    ).all()
    by_items: dict[str, list] = defaultdict(list)
    for row in rows:
        if row.phase_id in phases:
            by_items[row.phase_id].append(row)
    for phase_id, items in by_items.items():
        phase = phases[phase_id]
        place = {(req.doc_type, req.per_member): i for i, req in enumerate(phase.documents)}
        items.sort(key=lambda r: (units[r.unit_id][0], place.get((r.doc_type, r.member_code is not None), len(place)), r.item_key))
        outstanding = tuple(
            OutstandingItem(*units[r.unit_id], r.doc_type, DOCUMENTS[r.doc_type].name, r.member_code, r.full_name) for r in items
        )
        dues.append(_overdue_due(plan, phase, outstanding, (), now))
    return dues


def _overdue_due(plan: Plan, phase, items, unit_counts, now: dt.datetime) -> PhaseDue:
    return PhaseDue(plan.number, plan.issuer, phase.id, phase.name, phase.deadline, phase.reading, items,
                    overdue_working_days=overdue_working_days(plan, phase, now), unit_counts=unit_counts)


def _live_query(dialect: str, campaign_id: str, max_seen: int):
    # Python's order (code points): byte order of UTF-8, which is SQLite's default and PostgreSQL's "C".
    recipient = NOTICES.c.recipient.collate("C") if dialect == "postgresql" else NOTICES.c.recipient
    return (
        select(
            NOTICES.c.recipient, NOTICES.c.id, NOTICES.c.recipient_name, NOTICES.c.kind, NOTICES.c.step, NOTICES.c.item_key,
            NOTICES.c.unit_id, NOTICES.c.phase_id, NOTICES.c.doc_type, NOTICES.c.member_id,
            UNITS.c.code, UNITS.c.name, MEMBERS.c.member_code, MEMBERS.c.full_name,
        )
        .select_from(NOTICES)
        .join(UNITS, UNITS.c.id == NOTICES.c.unit_id)
        .outerjoin(MEMBERS, MEMBERS.c.id == NOTICES.c.member_id)
        .where(*_pending(campaign_id), NOTICES.c.id <= max_seen)
        .order_by(recipient, NOTICES.c.kind, NOTICES.c.id)
    )


def _group(rows) -> tuple[list[PendingNotice], dict[int, tuple[str, str]], dict[int, tuple[str, str]]]:
    notices, units, members = [], {}, {}
    for recipient, nid, name, kind, step, key, unit_id, phase_id, doc_type, member_id, unit_code, unit_name, member_code, member_name in rows:
        notices.append(PendingNotice(nid, recipient, name, kind, step, key, unit_id, phase_id, doc_type, member_id))
        units[unit_id] = (unit_code, unit_name)
        if member_id is not None:
            members[member_id] = (member_code, member_name)
    return notices, units, members


def _link_statement():
    """Link a digest's notices: every live pending notice of this recipient and kind seen when composing began."""
    return (
        update(NOTICES)
        .where(
            NOTICES.c.campaign_id == bindparam("b_campaign"), NOTICES.c.recipient == bindparam("b_recipient"),
            NOTICES.c.kind == bindparam("b_kind"), NOTICES.c.outbox_id.is_(None), NOTICES.c.cancelled_at.is_(None),
            NOTICES.c.id <= bindparam("b_max_seen"),
        )
        .values(outbox_id=bindparam("b_outbox"))
    )


def _compose(plan: Plan, kind: str, notices: list[PendingNotice], units, members, now: dt.datetime, submit_url: str,
             drop_share: str = "", overdue: list[PhaseDue] | None = None):
    by_phase: dict[str, list[PendingNotice]] = defaultdict(list)
    for n in notices:
        by_phase[n.phase_id].append(n)
    dues = []
    for phase_id, items in by_phase.items():
        phase = plan.phase(phase_id)
        seen: set[str] = set()
        outstanding = []
        # By unit, then in the plan's order of documents (as its notes and the unit's page list them).
        place = {(req.doc_type, req.per_member): i for i, req in enumerate(phase.documents)}
        for n in sorted(items, key=lambda n: (units[n.unit_id][0], place.get((n.doc_type, n.member_id is not None), len(place)), n.item_key)):
            if n.item_key in seen:
                continue  # an item may sit at two escalation steps in one digest
            seen.add(n.item_key)
            unit_code, unit_name = units[n.unit_id]
            member_code, member_name = members.get(n.member_id, (None, None))
            outstanding.append(OutstandingItem(unit_code, unit_name, n.doc_type, DOCUMENTS[n.doc_type].name, member_code, member_name))
        owed = {(i.doc_type, i.member_id is not None) for i in outstanding}
        notes = tuple(dict.fromkeys(
            (req.name, req.note) for req in phase.documents if req.note and (req.doc_type, req.per_member) in owed
        ))
        due = PhaseDue(plan.number, plan.issuer, phase.id, phase.name, phase.deadline, phase.reading, tuple(outstanding), notes=notes)
        if kind == "escalation":
            # Per phase: a digest mixes phases late by different amounts and at different steps, and
            # a phase's units may stand at different steps (one under the root, one deeper). An item
            # at two steps in one digest (a tick after a gap) counts at the higher.
            reached: dict[str, int] = {}
            for n in items:
                reached[n.item_key] = max(reached.get(n.item_key, n.step), n.step)
            due = replace(due, overdue_working_days=overdue_working_days(plan, phase, now),
                          step=max(reached.values()), first_step=min(reached.values()))
        dues.append(due)
    dues.sort(key=lambda d: (d.deadline, d.phase_id))
    name = notices[0].recipient_name or notices[0].recipient
    item_count = sum(len(d.items) for d in dues)
    if kind == "reminder":
        offset = min(n.step for n in notices)
        message = compose_reminder(name, dues, submit_url=submit_url, now=now, calendar=plan.calendar, drop_share=drop_share,
                                   overdue=overdue or ())
        reason = f"nhắc hạn (trước {offset} ngày làm việc): {item_count} mục còn thiếu ở {len(dues)} giai đoạn"
        if overdue:
            late = sum(messages.due_item_count(d) for d in overdue)
            reason += f"; kèm {late} mục của đơn vị đã quá hạn ở {len(overdue)} giai đoạn khác"
    else:
        message = compose_escalation(name, dues, submit_url=submit_url, now=now, drop_share=drop_share)
        figures = {(d.first_step, d.step, d.overdue_working_days) for d in dues}
        if len(figures) == 1:
            ((_, _, late),) = figures
            reason = f"chuyển cấp bước {_steps(dues[0])}: {item_count} mục quá hạn {late} ngày làm việc ở {len(dues)} giai đoạn"
        else:
            reason = f"chuyển cấp: {item_count} mục ở {len(dues)} giai đoạn (" + "; ".join(
                f"{d.phase_id}: {len(d.items)} mục quá hạn {d.overdue_working_days} ngày làm việc, bước {_steps(d)}" for d in dues
            ) + ")"
    return message, reason


def _steps(due: PhaseDue) -> str:
    """"1" or, for a phase whose units stand at different steps, "0–1"."""
    return f"{due.first_step}–{due.step}" if due.first_step != due.step else f"{due.step}"
