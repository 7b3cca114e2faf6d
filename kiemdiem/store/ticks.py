"""The record of finished ticks, and what arrived since the last one."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from kiemdiem.store.db import Store
from kiemdiem.store.models import EventLog, Submission, Unit


def touched_units(store: Store, campaign_id: str, now: dt.datetime) -> list[str]:
    """Units with submissions received since the last finished tick (all, the first time)."""
    with store.uow() as uow:
        last = uow.session.scalar(
            select(func.max(EventLog.subject)).where(EventLog.campaign_id == campaign_id, EventLog.action == "tick.done")
        )
        query = select(Unit.code).join(Submission, Submission.unit_id == Unit.id).where(
            Submission.campaign_id == campaign_id, Submission.received_at <= now
        )
        if last:
            query = query.where(Submission.received_at > dt.datetime.fromisoformat(last))
        return sorted(set(uow.session.scalars(query)))


def previous_tick(store: Store, campaign_id: str, now: dt.datetime) -> dt.datetime | None:
    """The moment of the last finished tick before ``now`` (None before the first): read backwards
    on the event log's (campaign, time) index, which stops at the first tick found."""
    with store.uow() as uow:
        return uow.session.scalar(
            select(EventLog.at)
            .where(EventLog.campaign_id == campaign_id, EventLog.at < now, EventLog.action == "tick.done")
            .order_by(EventLog.at.desc())
            .limit(1)
        )


def finish_tick(store: Store, campaign_id: str, now: dt.datetime, summary: dict) -> None:
    """Record that a tick at ``now`` finished; the next tick's window of new submissions starts here."""
    with store.uow() as uow:
        stamp = now.astimezone(dt.timezone.utc).isoformat()
        uow.session.add(EventLog(campaign_id=campaign_id, at=now, actor="tick", action="tick.done", subject=stamp, detail=summary))
        uow.commit()
