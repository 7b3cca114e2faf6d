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
Read when the reminders are composed (for all of a tick's at once, not one read per digest), never
planned as notices: no email goes out for them alone.

A temporary-activity comment owed by a member's official branch is also asked of the branch where
the member is temporarily active (``kiemdiem.reminders.comment_requests``): a reminder notice of the
same item and offset to that branch's office, composed into its reminder digest as a section of its
own ("Nhận xét đảng viên sinh hoạt tạm thời tại chi bộ"). Such a notice is told apart from the
official branch's own by its recipient: not an address of the item's unit.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from itertools import groupby
from operator import itemgetter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.dialects import sqlite

from kiemdiem.catalogue import DOCUMENTS
from kiemdiem.notify import messages
from kiemdiem.notify.messages import CommentRequest, OutstandingItem, PhaseDue, compose_escalation, compose_reminder
from kiemdiem.plan import Plan
from kiemdiem.reminders import (
    PlannedNotice, RecipientDirectory, comment_members, comment_requests, overdue_working_days, plan_notices,
    temporary_comment_docs,
)
from kiemdiem.status import CampaignStatus
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import Member, Notice, Submission, Unit
from kiemdiem.store.outbox import enqueue
from kiemdiem.store.queries import IN_CHUNK
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
    wanted = comment_members(plan, notices)
    if wanted:
        notices += comment_requests(plan, notices, directory, _temporary_units(uow, campaign_id, wanted))
    return save_notices(uow, campaign_id, notices, now, unit_ids=unit_ids, member_ids=member_ids)


def _temporary_units(uow: UnitOfWork, campaign_id: str, member_codes: set[str]) -> dict[str, str]:
    """Member code -> the code of the branch where the member is temporarily active, for those of
    ``member_codes`` who are. Read by code: only the few members whose comment is still owed."""
    temporary = UNITS.alias("t")
    codes = sorted(member_codes)
    out: dict[str, str] = {}
    for start in range(0, len(codes), IN_CHUNK):
        out.update(uow.session.execute(
            select(MEMBERS.c.member_code, temporary.c.code)
            .join(temporary, temporary.c.id == MEMBERS.c.temporary_unit_id)
            .where(MEMBERS.c.campaign_id == campaign_id, MEMBERS.c.member_code.in_(codes[start:start + IN_CHUNK]))
        ).all())
    return out


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
# Units whose overdue items are read at once (``_overdue_index``): a few thousand rows in memory.
OVERDUE_UNITS_CHUNK = 200


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
        if max_seen is None:
            return report
        # Read for every digest at once, never per digest: the reminded units' own overdue items, and
        # which pending reminders ask a temporary branch for its comment.
        overdue = _overdue_index(uow, plan, campaign_id, now, max_seen)
        comments = _comment_request_ids(uow, plan, campaign_id, max_seen)
    link = _link_statement()
    with store.engine.connect() as reader, store.uow() as uow:
        rows = reader.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
            _live_query(store.dialect, campaign_id, max_seen)
        )
        in_batch = (0, 0)
        for (recipient, kind), group in groupby(rows, key=itemgetter(0, 3)):
            notices, units, members = _group(group)
            asked = [n for n in notices if n.id in comments]
            owed = [n for n in notices if n.id not in comments] if asked else notices
            own_overdue: list[PhaseDue] = []
            if kind == "reminder" and overdue.counts:
                # Only the units the recipient answers for: a comment request's unit is another branch.
                own_overdue = overdue.dues(plan, recipient, {n.unit_id for n in owed}, units, now)
            message, reason = _compose(plan, kind, owed, units, members, now, submit_url, drop_share, own_overdue, asked)
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


class _OverdueIndex:
    """The reminded units' own items overdue in any phase: escalated to their superiors and not
    delivered by ``now``. A reminder leaves out those escalated to its own recipient (``told``: its
    escalation says so already). Counted per unit and phase; a unit's items are kept only while
    some reminder of it may list them (``messages.MAX_OVERDUE_DETAILED_ITEMS``): memory stays bounded."""

    def __init__(self) -> None:
        self.counts: dict[int, dict[str, int]] = {}
        self.items: dict[int, list] = {}
        self.told: dict[tuple[str, int], set[tuple[str, str]]] = {}  # (recipient, unit id) -> {(phase id, item key)}

    def add_unit(self, unit_id: int, items: list, told: dict[str, set[tuple[str, str]]], limit: int) -> None:
        counts: dict[str, int] = {}
        for row in items:
            counts[row.phase_id] = counts.get(row.phase_id, 0) + 1
        self.counts[unit_id] = counts
        for recipient, keys in told.items():
            self.told[(recipient, unit_id)] = keys
        # Past this, every reminder of the unit counts its items (see ``dues``): no need to keep them.
        if len(items) <= limit + max(map(len, told.values()), default=0):
            self.items[unit_id] = items

    def dues(self, plan: Plan, recipient: str, unit_ids: set[int], units: dict[int, tuple[str, str]],
             now: dt.datetime) -> list[PhaseDue]:
        """A reminder's section on ``unit_ids`` (its units): each phase with its working days overdue;
        counted per unit past ``messages.MAX_OVERDUE_DETAILED_ITEMS`` items in all."""
        counts: dict[int, dict[str, int]] = {}
        for unit_id in sorted(u for u in unit_ids if u in self.counts):
            told = Counter(phase_id for phase_id, _ in self.told.get((recipient, unit_id), ()))
            left = {phase_id: n - told[phase_id] for phase_id, n in self.counts[unit_id].items() if n > told[phase_id]}
            if left:
                counts[unit_id] = left
        if not counts:
            return []
        phases = {p.id: p for p in plan.phases}
        dues = []
        if sum(n for left in counts.values() for n in left.values()) > messages.MAX_OVERDUE_DETAILED_ITEMS:
            by_phase: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
            for unit_id, left in counts.items():
                for phase_id, n in left.items():
                    by_phase[phase_id].append((*units[unit_id], n))
            for phase_id, unit_counts in by_phase.items():
                dues.append(_overdue_due(plan, phases[phase_id], (), tuple(sorted(unit_counts)), now))
            return dues
        by_items: dict[str, list] = defaultdict(list)
        for unit_id in counts:
            told_keys = self.told.get((recipient, unit_id), ())
            for row in self.items[unit_id]:
                if (row.phase_id, row.item_key) not in told_keys:
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


def _overdue_index(uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, max_seen: int) -> _OverdueIndex:
    """Every reminder's overdue items at once (see ``_OverdueIndex``): the reminded units that have
    undelivered escalated items, who their reminders go to, then those items in (unit, item) order,
    a few hundred units at a time: an item escalated to one of its unit's reminder recipients is
    ``told``. A morning before any deadline reads one empty result and nothing more."""
    phases = {p.id for p in plan.phases}
    reminded = (NOTICES.c.kind == "reminder", NOTICES.c.id <= max_seen, *_pending(campaign_id))
    escalated = NOTICES.alias("e")
    overdue_units = sorted(uow.session.scalars(
        select(escalated.c.unit_id).distinct().where(
            escalated.c.campaign_id == campaign_id, escalated.c.kind == "escalation",
            escalated.c.unit_id.in_(select(NOTICES.c.unit_id).where(*reminded)),
            _undelivered(escalated.c.item_key, campaign_id, now),
        )
    ))
    recipients: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(overdue_units), IN_CHUNK):
        for recipient, unit_id in uow.session.execute(
            select(NOTICES.c.recipient, NOTICES.c.unit_id).distinct()
            .where(*reminded, NOTICES.c.unit_id.in_(overdue_units[start:start + IN_CHUNK]))
        ):
            recipients[unit_id].add(recipient)
    query = (
        select(escalated.c.unit_id, escalated.c.item_key, escalated.c.phase_id, escalated.c.doc_type, MEMBERS.c.member_code,
               MEMBERS.c.full_name, escalated.c.recipient)
        .select_from(escalated.outerjoin(MEMBERS, MEMBERS.c.id == escalated.c.member_id))
        .where(escalated.c.campaign_id == campaign_id, escalated.c.kind == "escalation",
               escalated.c.unit_id.in_(bindparam("units", expanding=True)),
               _undelivered(escalated.c.item_key, campaign_id, now))
        .order_by(escalated.c.unit_id, escalated.c.item_key)
    )
    index = _OverdueIndex()
    limit = messages.MAX_OVERDUE_DETAILED_ITEMS
    # Those units, in chunks of ascending ids, each chunk read whole: a subquery for them with a
    # server-side cursor let PostgreSQL choose a per-row plan that did not answer in minutes on a
    # province's morning (~200,000 escalation notices).
    rows = (
        row for start in range(0, len(overdue_units), OVERDUE_UNITS_CHUNK)
        for row in uow.session.execute(query, {"units": overdue_units[start:start + OVERDUE_UNITS_CHUNK]}).all()
    )
    for unit_id, unit_rows in groupby(rows, key=itemgetter(0)):
        items: list = []
        told: dict[str, set[tuple[str, str]]] = defaultdict(set)
        # An item has one row per escalation notice (recipient and step).
        for item_key, item_rows in groupby(unit_rows, key=itemgetter(1)):
            first, *more = item_rows
            if first.phase_id not in phases:
                continue
            items.append(first)
            for row in (first, *more):
                if row.recipient in recipients[unit_id]:
                    told[row.recipient].add((row.phase_id, item_key))
        index.add_unit(unit_id, items, told, limit)
    return index


def _comment_request_ids(uow: UnitOfWork, plan: Plan, campaign_id: str, max_seen: int) -> frozenset[int]:
    """The pending reminders that ask a temporary branch for its comment on a member: a
    temporary-activity comment (``reminders.temporary_comment_docs``) sent to an address that is not
    the item's unit's own (``reminders.comment_requests`` plans them so). Few: read in one query."""
    docs = temporary_comment_docs(plan)
    if not docs:
        return frozenset()
    rows = uow.session.execute(
        select(NOTICES.c.id, NOTICES.c.recipient, NOTICES.c.phase_id, NOTICES.c.doc_type, UNITS.c.emails)
        .join(UNITS, UNITS.c.id == NOTICES.c.unit_id)
        .where(*_pending(campaign_id), NOTICES.c.kind == "reminder", NOTICES.c.id <= max_seen,
               NOTICES.c.member_id.is_not(None), NOTICES.c.doc_type.in_(sorted(set().union(*docs.values()))))
    )
    return frozenset(
        nid for nid, recipient, phase_id, doc_type, emails in rows
        if doc_type in docs.get(phase_id, ()) and recipient not in (emails or ())
    )


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
             drop_share: str = "", overdue: list[PhaseDue] | None = None, asked: list[PendingNotice] | None = None):
    """A digest of ``notices`` (the recipient's units' items); a reminder also asks for the comments
    of ``asked`` (comment requests: other branches' items, on members temporarily at the recipient's)."""
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
    first = (notices or asked)[0]
    name = first.recipient_name or first.recipient
    item_count = sum(len(d.items) for d in dues)
    if kind == "reminder":
        offset = min(n.step for n in (*notices, *(asked or ())))
        comments = _comments(plan, asked or (), units, members)
        message = compose_reminder(name, dues, submit_url=submit_url, now=now, calendar=plan.calendar, drop_share=drop_share,
                                   overdue=overdue or (), comments=comments)
        if dues:
            reason = f"nhắc hạn (trước {offset} ngày làm việc): {item_count} mục còn thiếu ở {len(dues)} giai đoạn"
            if comments:
                reason += f"; kèm đề nghị nhận xét {len(comments)} đảng viên sinh hoạt tạm thời"
        else:
            reason = f"nhắc hạn (trước {offset} ngày làm việc): đề nghị nhận xét {len(comments)} đảng viên sinh hoạt tạm thời"
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


def _comments(plan: Plan, asked, units, members) -> list[CommentRequest]:
    """One request per member and phase (an item at two offsets in one digest is asked once)."""
    out: dict[str, CommentRequest] = {}
    for n in asked:
        if n.item_key in out:
            continue
        phase = plan.phase(n.phase_id)
        member_code, member_name = members.get(n.member_id, (None, None))
        out[n.item_key] = CommentRequest(plan.number, phase.id, phase.name, phase.deadline, member_code, member_name or member_code,
                                         *units[n.unit_id])
    return list(out.values())


def _steps(due: PhaseDue) -> str:
    """"1" or, for a phase whose units stand at different steps, "0–1"."""
    return f"{due.first_step}–{due.step}" if due.first_step != due.step else f"{due.step}"
