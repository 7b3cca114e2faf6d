"""Campaigns and the organization import, all or nothing.

Import validates both files completely before writing anything, then inserts
new rows and updates changed ones in one transaction (on PostgreSQL through the
streaming, set-based path of ``kiemdiem.store.bulk_import``). Re-importing the same
files changes nothing. Units and members absent from a re-import are kept:
submissions point at them, and nothing a unit sent may be lost.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sqlalchemy import func, or_, select, update

from kiemdiem.errors import InvalidInput, NotFound, Problem
from kiemdiem.member_key import member_key
from kiemdiem.org import (
    MemberRow, UnitRow, demoted_branches, in_row_order, name_import_columns, read_member_columns, read_units, refused_unit_problems,
    stranded_members_problem, unit_code_by_name, validate_member_columns, validate_tree,
)
from kiemdiem.plan import Plan, parse_plan
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import Campaign, EventLog, Member, Unit
from kiemdiem.tabular import columns_of


@dataclass(frozen=True)
class ImportReport:
    units_added: int
    units_updated: int
    members_added: int
    members_updated: int
    # Stored members the members file does not list: kept (a file may be one branch's), but an
    # office re-importing a corrected file must hear of a mistyped id left behind.
    members_not_in_file: int = 0

    @property
    def changed(self) -> bool:
        return any((self.units_added, self.units_updated, self.members_added, self.members_updated))

    def log(self, uow: UnitOfWork, campaign_id: str, units_path: Path, now: dt.datetime, actor: str) -> None:
        """Record an import that changed something (consolidation looks for it)."""
        if self.changed:
            uow.session.add(
                EventLog(
                    campaign_id=campaign_id, at=now, actor=actor, action="org.imported", subject=str(units_path),
                    detail={"units_added": self.units_added, "units_updated": self.units_updated,
                            "members_added": self.members_added, "members_updated": self.members_updated},
                )
            )


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
        known = ", ".join(uow.session.scalars(select(Campaign.id)).all())
        hint = f"đã có: {known}" if known else "chưa có đợt nào; tạo bằng 'kiemdiem campaign create'"
        raise NotFound(f"không có đợt kiểm điểm '{campaign_id}' ({hint})")
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
    streaming: bool | None = None,
) -> ImportReport:
    """Validate both files fully, then write. Raises InvalidInput listing every bad row; writes nothing then.

    ``streaming`` chooses the path: on PostgreSQL (the default there) the files are streamed
    and checked a chunk at a time, staged with COPY and merged set-based
    (``kiemdiem.store.bulk_import``), so a nation's 5.6 million members fit in bounded
    memory; on SQLite (the embedded default, sized for a province) both files are read
    whole, checked, then written. Both store the same rows for the same files.
    """
    get_campaign(uow, campaign_id)
    session = uow.session
    if streaming is None:
        streaming = session.connection().dialect.name == "postgresql"
    if streaming:
        from kiemdiem.store.bulk_import import import_organization_streaming  # noqa: PLC0415 - it imports this module

        return import_organization_streaming(uow, campaign_id, units_path, members_path, now, actor, units_data, members_data)
    problems: list[Problem] = []
    units, units_readable = _collect(lambda p: read_units(units_path, units_data, p), problems)
    # Column by column (one sequence per MemberRow field): ~90,000 members for a province.
    no_members = [()] * len(MemberRow._fields)
    member_cells: list[Problem] = []
    refused: list[tuple] = []  # rows refused for a bad cell: their branches are checked too
    members, members_readable = (
        _collect(lambda p: read_member_columns(members_path, members_data, p, refused), member_cells) if members_path else ([], True)
    )
    members = members or no_members

    stored_units = {
        code: (kind, parent)
        for code, kind, parent in session.execute(
            select(Unit.code, Unit.kind, _parent_code()).where(Unit.campaign_id == campaign_id)
        )
    }
    # A parent or a branch typed by its name is told its code.
    names = unit_code_by_name(lambda: [
        *((u.code, u.name) for u in units),
        *session.execute(select(Unit.code, Unit.name).where(Unit.campaign_id == campaign_id)).tuples(),
    ])
    problems += validate_tree(units, str(units_path), stored_units, names)
    stored_kinds = {code: kind for code, (kind, _) in stored_units.items()}
    demoted = demoted_branches(units, stored_kinds)
    if demoted and members_readable:  # else who the members file moves is not known
        # A member in the members file (even on a refused row) has its branch checked there.
        in_file = set(members[1]).union(row[3] for row in refused)
        problems += _stranded_members(uow, campaign_id, str(units_path), demoted, in_file)
    problems = in_row_order(problems)  # the units file's, so far
    kinds = stored_kinds | {u.code: u.kind for u in units}
    if members_path:
        tree_problems = validate_member_columns(members, str(members_path), kinds, names)
        tree_problems += refused_unit_problems(str(members_path), refused, kinds, names)
        if not units_readable:
            tree_problems = without_unit_references(tree_problems, units_path)
        # In row order; stable, so a row keeps its own order (its cells, then its id, branch, temporary branch).
        problems += sorted(member_cells + tree_problems, key=lambda p: p.row or 0)
    else:
        problems += member_cells
    if problems:
        raise InvalidInput(name_import_columns(problems, units_path, units_data, members_path, members_data))

    units_added, units_updated, unit_ids = _write_units(uow, campaign_id, units)
    members_added, members_updated, not_in_file = _write_members(uow, campaign_id, members, unit_ids) if members_path else (0, 0, 0)
    report = ImportReport(units_added, units_updated, members_added, members_updated, not_in_file)
    report.log(uow, campaign_id, units_path, now, actor)
    return report


def _stranded_members(uow: UnitOfWork, campaign_id: str, source: str, demoted: dict[str, UnitRow], in_file: set[str]) -> list[Problem]:
    """A problem for each branch in ``demoted`` (``demoted_branches``) that stored members not in
    the members file belong to, or are in temporarily: they would be left outside any branch."""
    session = uow.session
    code_of = dict(session.execute(select(Unit.id, Unit.code).where(Unit.campaign_id == campaign_id, Unit.code.in_(list(demoted)))).all())
    held: dict[str, tuple[list[str], list[str]]] = {code: ([], []) for code in demoted}
    ids = list(code_of)
    rows = session.execute(
        select(Member.member_code, Member.unit_id, Member.temporary_unit_id)
        .where(Member.campaign_id == campaign_id, or_(Member.unit_id.in_(ids), Member.temporary_unit_id.in_(ids)))
        .order_by(Member.member_code)
    )
    for member_code, unit_id, temporary_unit_id in rows:
        if member_code in in_file:
            continue
        if unit_id in code_of:
            held[code_of[unit_id]][0].append(member_code)
        if temporary_unit_id in code_of:
            held[code_of[temporary_unit_id]][1].append(member_code)
    return [
        stranded_members_problem(source, demoted[code], len(members), members, len(temporary), temporary)
        for code, (members, temporary) in held.items() if members or temporary
    ]


def without_unit_references(member_problems: list[Problem], units_path: Path) -> list[Problem]:
    """Member problems without "chi bộ … không tồn tại" when the units file could not be read:
    every member's branch would be reported missing, burying the one real error."""
    kept = [p for p in member_problems if p.field not in ("unit", "temporary_unit")]
    if len(kept) < len(member_problems):
        kept.append(Problem(str(units_path), "chưa kiểm tra chi bộ của từng đảng viên vì tệp đơn vị chưa đọc được; sửa tệp đơn vị rồi nhập lại"))
    return kept


def _collect(read, problems: list[Problem]) -> tuple[list, bool]:
    """Run a reader that appends row problems: (its rows, True), or ([], False) when it gave up on
    the file (a missing column, not a table...), whose problems are kept too."""
    try:
        return read(problems), True
    except InvalidInput as exc:
        problems.extend(exc.problems)
        return [], False


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


# JSON lists as SQLAlchemy's JSON type reads them back; one encoder, not one per call.
_to_json = json.JSONEncoder(ensure_ascii=False).encode


def _marker(connection) -> str:
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


UNIT_COLUMNS = ("campaign_id", "code", "name", "kind", "parent_id", "path", "depth", "emails")


def _write_units(uow: UnitOfWork, campaign_id: str, units: list[UnitRow]) -> tuple[int, int, dict[str, int]]:
    """Insert new units level by level (parents first) and update changed ones.

    Returns (added, updated, ids of every unit of the campaign by code).
    """
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
    connection = session.connection()
    marker = _marker(connection)
    insert_sql = f"INSERT INTO units ({', '.join(UNIT_COLUMNS)}) VALUES ({', '.join([marker] * len(UNIT_COLUMNS))})"
    ids_sql = f"SELECT code, id FROM units WHERE campaign_id = {marker} AND depth = {marker}"
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
                        # Units below it not yet seen (deeper in the file, or absent from it)
                        # moved with it: their children's paths start from the new one.
                        for code, below in paths.items():
                            if below.startswith(old_path) and below != old_path:
                                paths[code] = path + below[len(old_path):]
                    updated += 1
                paths[u.code] = path
                continue
            new_rows.append((campaign_id, u.code, u.name, u.kind, parent_id, path, depth, _to_json(list(u.emails))))
            paths[u.code] = path
        if new_rows:
            # A driver-level executemany of prepared tuples; the ids of the level are then read
            # back in one query (the next level's parents, and the members' units).
            connection.exec_driver_sql(insert_sql, new_rows)
            for depth in {row[6] for row in new_rows}:
                ids.update(connection.exec_driver_sql(ids_sql, (campaign_id, depth)).all())
            added += len(new_rows)
    return added, updated, ids


def _repath_descendants(uow: UnitOfWork, campaign_id: str, old_path: str, new_path: str) -> None:
    session = uow.session
    rows = session.execute(
        select(Unit.id, Unit.path).where(Unit.campaign_id == campaign_id, Unit.path.startswith(old_path), Unit.path != old_path)
    ).all()
    for uid, path in rows:
        moved = new_path + path[len(old_path):]
        session.execute(update(Unit).where(Unit.id == uid).values(path=moved, depth=moved.count("/") - 2))


def _write_members(uow: UnitOfWork, campaign_id: str, members: list[Sequence], unit_ids: dict[str, int]) -> tuple[int, int, int]:
    """``members`` are the columns of ``read_member_columns``. Returns (added, updated, stored
    members the file does not list)."""
    _rows, codes, full_names, units, emails, joined, statuses, temporary, positions = members
    if not codes:
        stored_count = uow.session.scalar(select(func.count()).select_from(Member).where(Member.campaign_id == campaign_id))
        return 0, 0, stored_count or 0
    stored, stored_ids = _stored_members(uow, campaign_id)
    if not stored:  # a first import: every member is new, nothing to compare
        _insert_members(uow, campaign_id, members, unit_ids)
        return len(codes), 0, 0
    not_in_file = len(stored.keys() - set(codes))
    temporary_ids = {None: None, **unit_ids}
    current = dict(
        zip(codes, zip(full_names, map(unit_ids.__getitem__, units), emails, joined, statuses, map(temporary_ids.__getitem__, temporary), positions))
    )
    changed = {code for code, _ in current.items() - stored.items()}  # new or different, compared in C
    if not changed:
        return 0, 0, not_in_file
    session = uow.session
    new_rows: list[tuple] = []
    updated = 0
    for member in zip(*members):
        code = member[1]
        if code not in changed:
            continue
        member_id = stored_ids.get(code)
        if member_id is None:
            new_rows.append(member)
            continue
        full_name, unit_id, email, joined_on, status, temporary_unit_id, member_positions = current[code]
        session.execute(
            update(Member).where(Member.id == member_id).values(
                full_name=full_name, unit_id=unit_id, email=email, joined_on=joined_on, status=status,
                temporary_unit_id=temporary_unit_id, positions=list(member_positions),
            )
        )
        updated += 1
    if new_rows:
        _insert_members(uow, campaign_id, columns_of(new_rows, len(MemberRow._fields)), unit_ids)
    return len(new_rows), updated, not_in_file


def _stored_members(uow: UnitOfWork, campaign_id: str) -> tuple[dict[str, tuple], dict[str, int]]:
    """The campaign's members as the ORM would load them, by code: (full_name, unit_id, email,
    joined_on, status, temporary_unit_id, positions as a tuple), and their ids.

    Read at driver level: the column types' own result processors convert each distinct
    date and position list once instead of 90,000 times.
    """
    connection = uow.session.connection()
    cursor = connection.connection.cursor()
    try:
        cursor.execute(
            "SELECT member_code, id, full_name, unit_id, email, joined_on, status, temporary_unit_id, positions "
            f"FROM members WHERE campaign_id = {_marker(connection)}",
            (campaign_id,),
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return {}, {}
    codes, ids, full_names, units, emails, joined, statuses, temporary, positions = columns_of(rows, 9)
    del rows
    table = Member.__table__.c
    joined = _load_column(table.joined_on, connection.dialect, joined, lambda value: value)
    positions = _load_column(table.positions, connection.dialect, positions, lambda value: tuple(value or ()))
    stored = dict(zip(codes, zip(full_names, units, emails, joined, statuses, temporary, positions)))
    return stored, dict(zip(codes, ids))


def _load_column(column, dialect, values: Sequence, finish) -> list:
    """``finish(value as the ORM loads it)`` for each raw driver value of ``column``."""
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)

    def load(value):
        return finish(process(value) if process else value)

    try:
        loaded = {value: load(value) for value in set(values)}  # each distinct value once
    except TypeError:  # unhashable: already decoded by the driver (psycopg and JSON)
        return list(map(load, values))
    return list(map(loaded.__getitem__, values))


MEMBER_COLUMNS = (
    "campaign_id", "member_code", "full_name", "unit_id", "email", "joined_on", "status", "temporary_unit_id", "positions", "code_key",
)

# Rows per multi-row INSERT on SQLite: 10 columns x 99 rows stay under the 999 parameters
# that SQLite builds before 3.32 allow.
_SQLITE_ROWS_PER_INSERT = 999 // len(MEMBER_COLUMNS)


def _insert_members(uow: UnitOfWork, campaign_id: str, members: list[Sequence], unit_ids: dict[str, int]) -> None:
    """Driver-level executemany of prepared tuples: the rows are validated already, and
    SQLAlchemy's per-row type processing would cost more than the insert itself at 90,000
    members. ``members`` are the columns of ``read_member_columns``. Each member's
    ``code_key`` is ``member_key(member_code)``, computed here (an update never changes a
    member's code, so never its key)."""
    connection = uow.session.connection()
    sqlite_dialect = connection.dialect.name == "sqlite"
    marker = _marker(connection)
    placeholders = ", ".join([marker] * len(MEMBER_COLUMNS))
    sql = f"INSERT INTO members ({', '.join(MEMBER_COLUMNS)}) VALUES ({placeholders})"
    # Column by column, in C: each distinct date and position list is encoded once.
    _rows, codes, full_names, units, emails, joined, statuses, temporary, positions = members
    day = {d: (d.isoformat() if sqlite_dialect else d) for d in set(joined) if d is not None}
    day[None] = None
    encoded = {p: _to_json(list(p)) for p in set(positions)}
    temporary_ids = {None: None, **unit_ids}
    params = zip(
        itertools.repeat(campaign_id), codes, full_names, map(unit_ids.__getitem__, units), emails,
        map(day.__getitem__, joined), statuses, map(temporary_ids.__getitem__, temporary), map(encoded.__getitem__, positions),
        map(member_key, codes),
    )
    # The DB-API cursor of the session's own connection, so the same transaction.
    cursor = connection.connection.cursor()
    try:
        if sqlite_dialect:
            # SQLite runs its insert program once per statement: a hundred rows per INSERT
            # cost a quarter less than one row per INSERT.
            rows = list(params)
            whole = len(rows) - len(rows) % _SQLITE_ROWS_PER_INSERT
            many = f"{sql}{f', ({placeholders})' * (_SQLITE_ROWS_PER_INSERT - 1)}"
            flat = itertools.chain.from_iterable
            cursor.executemany(many, (tuple(flat(rows[i:i + _SQLITE_ROWS_PER_INSERT])) for i in range(0, whole, _SQLITE_ROWS_PER_INSERT)))
            cursor.executemany(sql, rows[whole:])
        else:
            cursor.executemany(sql, params)  # rows as they are zipped: no list of 90,000 tuples
    finally:
        cursor.close()
