"""Read-side queries: load what the pure core needs, as plain values, in a few set-based queries."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, cast, func, select

from kiemdiem.plan import Plan
from kiemdiem.status import CampaignStatus, Delivery, MemberInfo, UnitInfo, compute_status
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import Member, Submission, Unit


def load_units(uow: UnitOfWork, campaign_id: str, subtree_of: str | None = None) -> list[UnitInfo]:
    parent = Unit.__table__.alias("parent")
    query = (
        select(Unit.id, Unit.code, Unit.name, Unit.kind, parent.c.code, Unit.emails)
        .select_from(Unit)
        .outerjoin(parent, parent.c.id == Unit.parent_id)
        .where(Unit.campaign_id == campaign_id)
        .order_by(Unit.path)
    )
    if subtree_of is not None:
        root_path = uow.session.scalar(select(Unit.path).where(Unit.campaign_id == campaign_id, Unit.code == subtree_of))
        if root_path is None:
            return []
        query = query.where(Unit.path.startswith(root_path))
    return [UnitInfo(uid, code, name, kind, parent_code, tuple(emails or ())) for uid, code, name, kind, parent_code, emails in uow.session.execute(query)]


def load_members(uow: UnitOfWork, campaign_id: str, unit_ids: set[int] | None = None) -> list[MemberInfo]:
    unit = Unit.__table__.alias("u")
    temp = Unit.__table__.alias("t")
    query = (
        select(
            Member.id, Member.member_code, Member.full_name, unit.c.code, Member.status, temp.c.code,
            Member.positions, Member.joined_on, Member.email, Member.unit_id,
        )
        .select_from(Member)
        .join(unit, unit.c.id == Member.unit_id)
        .outerjoin(temp, temp.c.id == Member.temporary_unit_id)
        .where(Member.campaign_id == campaign_id)
        .order_by(Member.member_code)
    )
    rows = uow.session.execute(query)
    return [
        MemberInfo(mid, code, name, unit_code, status, temp_code, tuple(positions or ()), joined_on, email)
        for mid, code, name, unit_code, status, temp_code, positions, joined_on, email, unit_id in rows
        if unit_ids is None or unit_id in unit_ids
    ]


def load_deliveries(uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> dict[str, Delivery]:
    """Each item's first and last delivery received at or before ``now`` (time travel for --at)."""
    session = uow.session
    first = (
        select(Submission.item_key, func.min(Submission.received_at).label("first_at"), func.max(Submission.received_at).label("last_at"), func.count().label("n"))
        .where(Submission.campaign_id == campaign_id, Submission.received_at <= now)
        .group_by(Submission.item_key)
        .subquery()
    )
    query = (
        select(first.c.item_key, first.c.first_at, first.c.last_at, first.c.n, func.min(cast(Submission.on_time, Integer)))
        .join(Submission, (Submission.item_key == first.c.item_key) & (Submission.received_at == first.c.first_at))
        .where(Submission.campaign_id == campaign_id)
        .group_by(first.c.item_key, first.c.first_at, first.c.last_at, first.c.n)
    )
    deliveries: dict[str, Delivery] = {}
    for key, first_at, last_at, n, on_time in session.execute(query):
        deliveries[key] = Delivery(_aware(first_at), bool(on_time), _aware(last_at), n)
    return deliveries


def _aware(value: dt.datetime) -> dt.datetime:
    # Aggregates bypass the column type on SQLite and come back naive; stored values are UTC.
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def campaign_status(
    uow: UnitOfWork,
    plan: Plan,
    campaign_id: str,
    now: dt.datetime,
    *,
    subtree_of: str | None = None,
    due_soon_working_days: int = 3,
) -> CampaignStatus:
    units = load_units(uow, campaign_id, subtree_of)
    unit_ids = {u.id for u in units} if subtree_of else None
    members = load_members(uow, campaign_id, unit_ids)
    deliveries = load_deliveries(uow, campaign_id, now)
    if subtree_of is not None and units:
        # The subtree's root has no parent inside the view; roll up stops there.
        root = units[0]
        units[0] = UnitInfo(root.id, root.code, root.name, root.kind, None, root.emails)
    return compute_status(plan, units, members, deliveries, now, due_soon_working_days=due_soon_working_days)
