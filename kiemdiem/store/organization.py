"""Campaigns and the organization import, all or nothing.

Import validates both files completely before writing anything, then inserts
new rows and updates changed ones in one transaction. Re-importing the same
files changes nothing. Units and members absent from a re-import are kept:
submissions point at them, and nothing a unit sent may be lost.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select, update

from kiemdiem.errors import InvalidInput, NotFound, Problem
from kiemdiem.org import MemberRow, UnitRow, read_members, read_units, validate_members, validate_tree
from kiemdiem.plan import Plan, parse_plan
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import Campaign, EventLog, Member, Unit


@dataclass(frozen=True)
class ImportReport:
    units_added: int
    units_updated: int
    members_added: int
    members_updated: int

    @property
    def changed(self) -> bool:
        return any((self.units_added, self.units_updated, self.members_added, self.members_updated))


def create_campaign(uow: UnitOfWork, plan: Plan, campaign_id: str | None, now: dt.datetime, actor: str = "cli") -> tuple[Campaign, bool]:
    """Create a campaign from a plan, or refresh its stored plan if the file changed. Returns (campaign, changed)."""
    session = uow.session
    campaign_id = campaign_id or plan.id
    campaign = session.get(Campaign, campaign_id)
    if campaign is not None:
        if campaign.plan_hash == plan.content_hash:
            return campaign, False
        campaign.plan_text = plan.source_text
        campaign.plan_hash = plan.content_hash
        campaign.plan_number = plan.number
        campaign.title = plan.title
        session.add(EventLog(campaign_id=campaign_id, at=now, actor=actor, action="plan.updated", subject=plan.id, detail={"hash": plan.content_hash}))
        return campaign, True
    campaign = Campaign(
        id=campaign_id,
        plan_id=plan.id,
        plan_number=plan.number,
        plan_text=plan.source_text,
        plan_hash=plan.content_hash,
        title=plan.title,
        created_at=now,
    )
    session.add(campaign)
    session.add(EventLog(campaign_id=campaign_id, at=now, actor=actor, action="campaign.created", subject=plan.id, detail={}))
    return campaign, True


def get_campaign(uow: UnitOfWork, campaign_id: str) -> Campaign:
    campaign = uow.session.get(Campaign, campaign_id)
    if campaign is None:
        known = ", ".join(uow.session.scalars(select(Campaign.id)).all()) or "chưa có"
        raise NotFound(f"không có đợt kiểm điểm '{campaign_id}' (đã có: {known})")
    return campaign


def campaign_plan(uow: UnitOfWork, campaign_id: str) -> Plan:
    campaign = get_campaign(uow, campaign_id)
    return parse_plan(campaign.plan_text, source=f"campaign {campaign_id}")


def list_campaigns(uow: UnitOfWork) -> list[Campaign]:
    return list(uow.session.scalars(select(Campaign).order_by(Campaign.created_at)))


def import_organization(
    uow: UnitOfWork,
    campaign_id: str,
    units_path: Path,
    members_path: Path | None,
    now: dt.datetime,
    actor: str = "cli",
    units_data: bytes | None = None,
    members_data: bytes | None = None,
) -> ImportReport:
    """Validate both files fully, then write. Raises InvalidInput listing every bad row; writes nothing then."""
    get_campaign(uow, campaign_id)
    session = uow.session
    problems: list[Problem] = []
    units = _collect(lambda p: read_units(units_path, units_data, p), problems)
    members = _collect(lambda p: read_members(members_path, members_data, p), problems) if members_path else []

    stored_units = {
        code: (kind, parent)
        for code, kind, parent in session.execute(
            select(Unit.code, Unit.kind, _parent_code()).where(Unit.campaign_id == campaign_id)
        )
    }
    problems += validate_tree(units, str(units_path), stored_units)
    kinds = {code: kind for code, (kind, _) in stored_units.items()} | {u.code: u.kind for u in units}
    if members_path:
        problems += validate_members(members, str(members_path), kinds)
    if problems:
        raise InvalidInput(problems)

    units_added, units_updated = _write_units(uow, campaign_id, units)
    members_added, members_updated = _write_members(uow, campaign_id, members)
    report = ImportReport(units_added, units_updated, members_added, members_updated)
    if report.changed:
        session.add(
            EventLog(
                campaign_id=campaign_id,
                at=now,
                actor=actor,
                action="org.imported",
                subject=str(units_path),
                detail={"units_added": units_added, "units_updated": units_updated, "members_added": members_added, "members_updated": members_updated},
            )
        )
    return report


def _collect(read, problems: list[Problem]):
    """Run a reader that appends row problems; a file-level problem (missing column...) is kept too."""
    try:
        return read(problems)
    except InvalidInput as exc:
        problems.extend(exc.problems)
        return []


def _parent_code():
    parent = Unit.__table__.alias("parent")
    return select(parent.c.code).where(parent.c.id == Unit.parent_id).scalar_subquery()


def _depth_order(units: list[UnitRow], stored: dict[str, tuple[int, str, int]]) -> list[list[UnitRow]]:
    """Group new units by depth so each level's parents exist before it is inserted."""
    by_code = {u.code: u for u in units}
    depth: dict[str, int] = {}

    def depth_of(code: str) -> int:
        if code in depth:
            return depth[code]
        if code not in by_code:
            return stored[code][2]
        parent = by_code[code].parent
        depth[code] = 0 if parent is None else depth_of(parent) + 1
        return depth[code]

    levels: dict[int, list[UnitRow]] = {}
    for u in units:
        levels.setdefault(depth_of(u.code), []).append(u)
    return [levels[d] for d in sorted(levels)]


def _write_units(uow: UnitOfWork, campaign_id: str, units: list[UnitRow]) -> tuple[int, int]:
    session = uow.session
    stored = {
        code: (uid, path, depth, name, kind, parent_id, emails)
        for uid, code, path, depth, name, kind, parent_id, emails in session.execute(
            select(Unit.id, Unit.code, Unit.path, Unit.depth, Unit.name, Unit.kind, Unit.parent_id, Unit.emails).where(
                Unit.campaign_id == campaign_id
            )
        )
    }
    ids = {code: row[0] for code, row in stored.items()}
    paths = {code: row[1] for code, row in stored.items()}
    added = updated = 0
    levels = _depth_order(units, {code: (row[0], row[1], row[2]) for code, row in stored.items()})
    for level in levels:
        new_rows = []
        for u in level:
            parent_id = ids[u.parent] if u.parent else None
            path = (paths[u.parent] if u.parent else "/") + u.code + "/"
            depth = path.count("/") - 2
            if u.code in stored:
                uid, old_path, old_depth, name, kind, old_parent, emails = stored[u.code]
                if (name, kind, old_parent, list(emails or []), old_path) != (u.name, u.kind, parent_id, list(u.emails), path):
                    session.execute(
                        update(Unit).where(Unit.id == uid).values(name=u.name, kind=u.kind, parent_id=parent_id, emails=list(u.emails), path=path, depth=depth)
                    )
                    if old_path != path:
                        _repath_descendants(uow, campaign_id, old_path, path)
                    updated += 1
                paths[u.code] = path
                continue
            new_rows.append(
                {"campaign_id": campaign_id, "code": u.code, "name": u.name, "kind": u.kind, "parent_id": parent_id, "path": path, "depth": depth, "emails": list(u.emails)}
            )
            paths[u.code] = path
        if new_rows:
            result = session.execute(insert(Unit).returning(Unit.id, Unit.code, sort_by_parameter_order=True), new_rows)
            for uid, code in result:
                ids[code] = uid
            added += len(new_rows)
    return added, updated


def _repath_descendants(uow: UnitOfWork, campaign_id: str, old_path: str, new_path: str) -> None:
    session = uow.session
    rows = session.execute(
        select(Unit.id, Unit.path).where(Unit.campaign_id == campaign_id, Unit.path.startswith(old_path), Unit.path != old_path)
    ).all()
    for uid, path in rows:
        moved = new_path + path[len(old_path):]
        session.execute(update(Unit).where(Unit.id == uid).values(path=moved, depth=moved.count("/") - 2))


def _write_members(uow: UnitOfWork, campaign_id: str, members: list[MemberRow]) -> tuple[int, int]:
    if not members:
        return 0, 0
    session = uow.session
    unit_ids = dict(session.execute(select(Unit.code, Unit.id).where(Unit.campaign_id == campaign_id)).all())
    stored = {
        row.member_code: row
        for row in session.execute(
            select(
                Member.id, Member.member_code, Member.full_name, Member.unit_id, Member.email, Member.joined_on,
                Member.status, Member.temporary_unit_id, Member.positions,
            ).where(Member.campaign_id == campaign_id)
        )
    }
    new_rows: list[MemberRow] = []
    updated = 0
    for m in members:
        old = stored.get(m.member_id)
        if old is None:
            new_rows.append(m)
            continue
        values = {
            "full_name": m.full_name,
            "unit_id": unit_ids[m.unit],
            "email": m.email,
            "joined_on": m.joined_on,
            "status": m.status,
            "temporary_unit_id": unit_ids[m.temporary_unit] if m.temporary_unit else None,
            "positions": list(m.positions),
        }
        current = {
            "full_name": old.full_name, "unit_id": old.unit_id, "email": old.email, "joined_on": old.joined_on,
            "status": old.status, "temporary_unit_id": old.temporary_unit_id, "positions": list(old.positions or []),
        }
        if current != values:
            session.execute(update(Member).where(Member.id == old.id).values(**values))
            updated += 1
    if new_rows:
        _insert_members(uow, campaign_id, new_rows, unit_ids)
    return len(new_rows), updated


MEMBER_COLUMNS = ("campaign_id", "member_code", "full_name", "unit_id", "email", "joined_on", "status", "temporary_unit_id", "positions")


def _insert_members(uow: UnitOfWork, campaign_id: str, rows: list[MemberRow], unit_ids: dict[str, int]) -> None:
    """One driver-level executemany: the rows are validated already, and SQLAlchemy's per-row
    type processing would cost more than the insert itself at 90,000 members."""
    connection = uow.session.connection()
    sqlite_dialect = connection.dialect.name == "sqlite"
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO members ({', '.join(MEMBER_COLUMNS)}) VALUES ({', '.join([marker] * len(MEMBER_COLUMNS))})"
    params = [
        (
            campaign_id, m.member_id, m.full_name, unit_ids[m.unit], m.email,
            (m.joined_on.isoformat() if sqlite_dialect else m.joined_on) if m.joined_on else None,
            m.status, unit_ids[m.temporary_unit] if m.temporary_unit else None,
            json.dumps(list(m.positions), ensure_ascii=False),
        )
        for m in rows
    ]
    connection.exec_driver_sql(sql, params)
