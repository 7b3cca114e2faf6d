"""The organization import at national scale, on PostgreSQL: streaming, set-based, all or nothing.

A nation has ~300,000 units and ~5.6 million members (a 560 MB member file): the member
list is never held. The import

1. reads the units file (held in memory: ~300,000 rows) and checks every row and the tree
   in Python, as ``kiemdiem.org`` does for a province;
2. streams the member file a chunk at a time (``member_chunks``): every row is checked
   (bad cells named by file, row and column) and the valid rows are COPYed into a TEMP
   staging table, with their file row numbers;
3. checks the staged members set-based in SQL: duplicate member ids (with the row of the
   first), unknown branches, members on a unit that is not a branch, temporary branches; and
   that a branch the units file makes something else keeps no stored member the file does not move;
4. only when nothing is wrong, merges: units level by level (parents first) and members
   with one ``INSERT … SELECT`` for the new and one ``UPDATE … FROM`` for the changed.

Nothing outside the TEMP tables is written before every check has passed, and the whole
import is the caller's one transaction: an error leaves the stored data as it was. What is
stored is exactly what ``import_organization``'s in-memory path stores for the same files,
ids included (units are inserted level by level in file order, members in file order).
Re-importing the same files changes nothing; units and members absent from a re-import are
kept.

At most ``MAX_PROBLEMS`` problems of the member file are listed (in row order), then one line
says how many more there are: a file with millions of bad rows must not fill the memory
with their descriptions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from kiemdiem.catalogue import BRANCH_KINDS
from kiemdiem.errors import InvalidInput, Problem
from kiemdiem.member_key import member_key
from kiemdiem.org import (
    IDS_NAMED,
    UnitRow,
    demoted_branches,
    duplicate_member_problem,
    in_row_order,
    member_chunks,
    member_unit_problems,
    refused_unit_problems,
    unit_code_by_name,
    name_import_columns,
    read_units_streaming,
    stranded_members_problem,
    validate_tree,
)
from kiemdiem.store.db import UnitOfWork

# Rows of the member file read, checked and COPYed at a time.
CHUNK_ROWS = 50_000
# Problems of the member file listed at most; the rest are counted.
MAX_PROBLEMS = 10_000

STAGE_UNITS = "kd_stage_units"
STAGE_KINDS = "kd_stage_kinds"
STAGE_MEMBERS = "kd_stage_members"

_to_json = json.JSONEncoder(ensure_ascii=False).encode
log = logging.getLogger(__name__)


class _Phases:
    """Logs how long each step took (INFO on this module's logger): where a national import spends its time."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def __call__(self, step: str, **counts) -> None:
        now = time.perf_counter()
        log.info("import phase %s: %.2f s %s", step, now - self.last, counts or "")
        self.last = now


def import_organization_streaming(
    uow: UnitOfWork,
    campaign_id: str,
    units_path: Path,
    members_path: Path | None,
    now: dt.datetime,
    actor: str = "cli",
    units_data: bytes | None = None,
    members_data: bytes | None = None,
    chunk_rows: int = CHUNK_ROWS,
    max_problems: int = MAX_PROBLEMS,
):
    """``import_organization`` for PostgreSQL in bounded memory. The campaign must exist.

    Raises InvalidInput listing every bad row (file, row, column, reason); writes nothing then.
    """
    from kiemdiem.store.organization import ImportReport, without_unit_references  # noqa: PLC0415 - organization imports this module

    session = uow.session
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        raise ValueError(f"the streaming import needs PostgreSQL, not {connection.dialect.name}")
    pg = connection.connection.driver_connection
    phase = _Phases()
    with pg.cursor() as cursor:
        _create_stages(cursor)
        unit_problems: list[Problem] = []
        units_unreadable = False
        try:
            units = read_units_streaming(units_path, units_data, unit_problems)
        except InvalidInput as exc:  # a file-level problem (missing column, not UTF-8...)
            unit_problems.extend(exc.problems)
            units, units_unreadable = [], True
        stored = _stored_units(cursor, campaign_id)

        def unit_names():  # (code, name) of every unit, for a parent or a branch typed by its name; asked only then
            cursor.execute("SELECT code, name FROM units WHERE campaign_id = %s", (campaign_id,))
            return [*((u.code, u.name) for u in units), *cursor.fetchall()]

        code_of_name = unit_code_by_name(unit_names)  # loaded once, at the first unit typed by its name
        unit_problems += validate_tree(units, str(units_path), stored, code_of_name)
        stored_kinds = {code: kind for code, (kind, _parent) in stored.items()}
        kinds = stored_kinds | {u.code: u.kind for u in units}
        phase("units read and checked", units=len(units), stored=len(stored))
        member_problems: list[Problem] = []
        refused: list[tuple] = []  # member rows refused for a bad cell: their branches are checked too
        members_read = True
        if members_path is not None:
            member_problems, members_read = _stage_members(
                cursor, members_path, members_data, kinds, chunk_rows, max_problems, phase, code_of_name, refused,
            )
            if units_unreadable:
                member_problems = without_unit_references(member_problems, units_path)
        del kinds
        demoted = demoted_branches(units, stored_kinds)
        if demoted and members_read:  # else who the members file moves is not known
            unit_problems += _stranded_members(cursor, campaign_id, str(units_path), demoted, [row[3] for row in refused])
        del stored_kinds, refused
        unit_problems = in_row_order(unit_problems)
        if unit_problems or member_problems:
            _drop_stages(cursor)
            raise InvalidInput(name_import_columns(unit_problems + member_problems, units_path, units_data, members_path, members_data))

        units_added, units_updated = _merge_units(cursor, campaign_id, units, stored)
        del units, stored
        phase("units merged", added=units_added, updated=units_updated)
        members_added = members_updated = not_in_file = 0
        if members_path is not None:
            members_added, members_updated = _merge_members(cursor, campaign_id)
            phase("members merged", added=members_added, updated=members_updated)
            cursor.execute(
                f"SELECT count(*) FROM members m WHERE m.campaign_id = %(c)s"
                f" AND NOT EXISTS (SELECT 1 FROM {STAGE_MEMBERS} s WHERE s.member_code = m.member_code)",
                {"c": campaign_id},
            )
            not_in_file = cursor.fetchone()[0]
        _drop_stages(cursor)
    report = ImportReport(units_added, units_updated, members_added, members_updated, not_in_file)
    report.log(uow, campaign_id, units_path, now, actor)
    return report


# --------------------------------------------------------------------------- staging


def _create_stages(cursor) -> None:
    _drop_stages(cursor)
    cursor.execute(
        f"CREATE TEMP TABLE {STAGE_UNITS} (row integer, code text, name text, kind text, parent text, path text,"
        " depth integer, emails text, is_new boolean, in_file boolean) ON COMMIT DROP"
    )
    cursor.execute(f"CREATE TEMP TABLE {STAGE_KINDS} (code text PRIMARY KEY, kind text) ON COMMIT DROP")
    cursor.execute(
        f"CREATE TEMP TABLE {STAGE_MEMBERS} (row integer, member_code text, full_name text, unit_code text, email text,"
        " joined_on date, status text, temporary_code text, positions text, code_key bigint) ON COMMIT DROP"
    )


def _drop_stages(cursor) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {STAGE_UNITS}, {STAGE_KINDS}, {STAGE_MEMBERS}")


def _stored_units(cursor, campaign_id: str) -> dict[str, tuple[str, str | None]]:
    """The campaign's units by code: (kind, parent code). Only what the tree check and the
    paths need; names, emails and paths are compared in SQL. Codes are interned, so a
    parent code is the same string as its unit's."""
    cursor.execute(
        "SELECT u.code, u.kind, p.code FROM units u LEFT JOIN units p ON p.id = u.parent_id WHERE u.campaign_id = %s",
        (campaign_id,),
    )
    intern = sys.intern
    return {intern(code): (intern(kind), None if parent is None else intern(parent)) for code, kind, parent in cursor}


def _stage_members(
    cursor, path: Path, data: bytes | None, kinds: dict[str, str], chunk_rows: int, max_problems: int, phase: _Phases,
    code_of_name, refused: list[tuple],
) -> tuple[list[Problem], bool]:
    """COPY the valid member rows into the stage as the file is read, then check them in SQL.

    Each row is staged with its ``code_key`` (``member_key(member_code)``, computed here in
    Python, the one place that defines it), which the merge carries into ``members``.

    Returns the problems of the member file in row order (at most ``max_problems`` listed), and
    whether the file was read to its end. ``refused`` gets the rows refused for a bad cell
    (``read_member_columns``).
    """
    source = str(path)
    with cursor.copy(f"COPY {STAGE_KINDS} (code, kind) FROM STDIN") as copy:
        for pair in kinds.items():
            copy.write_row(pair)
    read_problems: list[Problem] = []
    dropped = 0
    read_whole = True

    def chunks():
        nonlocal read_whole
        try:
            yield from member_chunks(path, data, read_problems, chunk_rows, refused)
        except InvalidInput as exc:  # header, encoding, or a line the CSV parser refuses
            read_problems.extend(exc.problems)
            read_whole = False

    encoded: dict[tuple[str, ...], str] = {}
    with cursor.copy(
        f"COPY {STAGE_MEMBERS} (row, member_code, full_name, unit_code, email, joined_on, status, temporary_code, positions, code_key)"
        " FROM STDIN"
    ) as copy:
        for numbers, codes, names, units, emails, joined, statuses, temporary, positions in chunks():
            for key in set(positions).difference(encoded):
                encoded[key] = _to_json(list(key))
            copy.write(_copy_text(
                list(map(str, numbers)), _text(codes), _text(names), _text(units), _text(emails), _dates(joined), _text(statuses),
                _text(temporary), list(map(encoded.__getitem__, positions)), list(map(str, map(member_key, codes))),
            ))
            if len(read_problems) > max_problems:  # kept in row order: the first ones stay
                dropped += len(read_problems) - max_problems
                del read_problems[max_problems:]
    cursor.execute(f"ANALYZE {STAGE_MEMBERS}")
    cursor.execute(f"ANALYZE {STAGE_KINDS}")
    phase("members read, checked and staged", problems=len(read_problems) + dropped)
    cursor.execute("SET LOCAL work_mem = '64MB'")  # the duplicate check groups millions of ids
    duplicates, more_duplicates = _duplicate_problems(cursor, source, max_problems)
    misplaced, more_misplaced = _unit_problems(cursor, source, max_problems, code_of_name)
    refused_problems = refused_unit_problems(source, refused, kinds, code_of_name)
    if more_misplaced and misplaced:  # the SQL list stops at a row: no gap before the line saying so
        refused_problems = [p for p in refused_problems if (p.row or 0) <= misplaced[-1].row]
    misplaced += refused_problems
    cursor.execute("SET LOCAL work_mem TO DEFAULT")
    phase("members checked in SQL", problems=len(duplicates) + len(misplaced))
    # In row order; stable, so a row keeps its own order (id, then branch, then temporary branch).
    problems = sorted(read_problems + duplicates + misplaced, key=lambda p: p.row or 0)
    if len(problems) > max_problems:
        dropped += len(problems) - max_problems
        del problems[max_problems:]
    if dropped or more_duplicates or more_misplaced:
        problems.append(Problem(source, f"còn lỗi khác sau dòng {problems[-1].row}: chỉ liệt kê {max_problems} lỗi đầu tiên"))
    return problems, read_whole


def _stranded_members(cursor, campaign_id: str, source: str, demoted: dict[str, UnitRow], refused_ids: list[str]) -> list[Problem]:
    """A problem for each branch in ``demoted`` (``demoted_branches``) that stored members not in
    the members file (neither staged nor refused) belong to, or are in temporarily: they would be
    left outside any branch. Ids in code order, as the in-memory path lists them."""
    cursor.execute(
        "WITH d AS (SELECT id, code FROM units WHERE campaign_id = %(c)s AND code = ANY(%(codes)s)),"
        " held AS ("
        "  SELECT d.code, false AS temporary, m.member_code FROM d JOIN members m ON m.campaign_id = %(c)s AND m.unit_id = d.id"
        "  UNION ALL"
        "  SELECT d.code, true, m.member_code FROM d JOIN members m ON m.campaign_id = %(c)s AND m.temporary_unit_id = d.id)"
        " SELECT h.code, h.temporary, count(*), (array_agg(h.member_code ORDER BY h.member_code COLLATE \"C\"))[1:%(named)s] FROM held h"
        f" WHERE NOT EXISTS (SELECT 1 FROM {STAGE_MEMBERS} s WHERE s.member_code = h.member_code)"
        " AND h.member_code <> ALL(%(refused)s)"
        " GROUP BY h.code, h.temporary",
        {"c": campaign_id, "codes": list(demoted), "named": IDS_NAMED, "refused": refused_ids},
    )
    held = {code: [0, [], 0, []] for code in demoted}
    for code, temporary, count, ids in cursor.fetchall():
        at = 2 if temporary else 0
        held[code][at:at + 2] = [count, ids]
    return [
        stranded_members_problem(source, demoted[code], members, member_ids, temporary, temporary_ids)
        for code, (members, member_ids, temporary, temporary_ids) in held.items() if members or temporary
    ]


# COPY's text format: a row per line, cells separated by tabs, \N for NULL, and these escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(column: Sequence[str | None]) -> Sequence[str]:
    """A column of texts (None for NULL) as COPY cells. Checked a column at a time, in C:
    cells are only escaped when the column holds a character that needs it."""
    joined = "".join(filter(None, column))
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        column = [None if value is None else value.translate(_COPY_ESCAPES) for value in column]
    if None in column:
        column = ["\\N" if value is None else value for value in column]
    return column


def _dates(column: Sequence[dt.date | None]) -> list[str]:
    text = {day: day.isoformat() for day in set(column) if day is not None}  # each distinct day once
    text[None] = "\\N"
    return list(map(text.__getitem__, column))


def _copy_text(*columns: Sequence[str]) -> str:
    """Whole rows of COPY text from columns of cells: joined in C, no Python code per row."""
    return "\n".join(map("\t".join, zip(*columns))) + "\n"


def _duplicate_problems(cursor, source: str, limit: int) -> tuple[list[Problem], bool]:
    """Every repeat of a member id after its first row (among the valid rows): the first
    ``limit``, and whether there are more."""
    cursor.execute(
        f"SELECT s.row, s.member_code, d.first FROM {STAGE_MEMBERS} s"
        f" JOIN (SELECT member_code, min(row) AS first FROM {STAGE_MEMBERS} GROUP BY member_code HAVING count(*) > 1) d"
        " USING (member_code) WHERE s.row <> d.first ORDER BY s.row LIMIT %s",
        (limit + 1,),
    )
    rows = cursor.fetchall()
    return [duplicate_member_problem(source, row, code, first) for row, code, first in rows[:limit]], len(rows) > limit


def _unit_problems(cursor, source: str, limit: int, code_of_name) -> tuple[list[Problem], bool]:
    """Branches that do not exist or are not branches; temporary branches likewise, or the same:
    those of the first ``limit`` rows, and whether more rows have some."""
    cursor.execute(
        f"SELECT s.row, s.unit_code, k.kind, s.temporary_code, t.kind FROM {STAGE_MEMBERS} s"
        f" LEFT JOIN {STAGE_KINDS} k ON k.code = s.unit_code"
        f" LEFT JOIN {STAGE_KINDS} t ON t.code = s.temporary_code"
        " WHERE k.kind IS NULL OR k.kind <> ALL(%(branches)s)"
        " OR (s.temporary_code IS NOT NULL AND (t.kind IS NULL OR t.kind <> ALL(%(branches)s) OR s.temporary_code = s.unit_code))"
        " ORDER BY s.row LIMIT %(limit)s",
        {"branches": list(BRANCH_KINDS), "limit": limit + 1},
    )
    rows = cursor.fetchall()
    problems: list[Problem] = []
    for row, unit, kind, temporary, temp_kind in rows[:limit]:
        problems += member_unit_problems(source, row, unit, kind, temporary, temp_kind, code_of_name)
    return problems, len(rows) > limit


# --------------------------------------------------------------------------- merging


def _merge_units(cursor, campaign_id: str, units: list[UnitRow], stored: dict[str, tuple[str, str | None]]) -> tuple[int, int]:
    """Insert the new units level by level (parents first, file order within a level), update
    the changed ones, and re-path stored units under a moved one. Returns (added, updated).

    Paths are computed here, from the tree after the import; what changed is decided in SQL."""
    parent_of = {code: parent for code, (_kind, parent) in stored.items()}
    parent_of.update((u.code, u.parent) for u in units)
    path_of: dict[str, str] = {}

    def path(code: str) -> str:
        chain = []
        while code is not None and code not in path_of:
            chain.append(code)
            code = parent_of[code]
        prefix = "/" if code is None else path_of[code]
        for link in reversed(chain):
            prefix = path_of[link] = prefix + link + "/"
        return prefix

    new_depths: set[int] = set()
    in_file: set[str] = set()
    with cursor.copy(f"COPY {STAGE_UNITS} (row, code, name, kind, parent, path, depth, emails, is_new, in_file) FROM STDIN") as copy:
        for u in units:
            in_file.add(u.code)
            unit_path = path(u.code)
            depth = unit_path.count("/") - 2
            is_new = u.code not in stored
            if is_new:
                new_depths.add(depth)
            copy.write_row((u.row, u.code, u.name, u.kind, u.parent, unit_path, depth, _to_json(list(u.emails)), is_new, True))
        for code in stored.keys() - in_file:  # kept as they are, but re-pathed if under a moved unit
            unit_path = path(code)
            copy.write_row((None, code, None, None, None, unit_path, unit_path.count("/") - 2, None, False, False))
    del parent_of, path_of, in_file
    cursor.execute(f"ANALYZE {STAGE_UNITS}")
    added = 0
    for depth in sorted(new_depths):
        cursor.execute(
            "INSERT INTO units (campaign_id, code, name, kind, parent_id, path, depth, emails)"
            " SELECT %(c)s, s.code, s.name, s.kind, p.id, s.path, s.depth, s.emails::json"
            f" FROM {STAGE_UNITS} s LEFT JOIN units p ON p.campaign_id = %(c)s AND p.code = s.parent"
            " WHERE s.is_new AND s.depth = %(d)s ORDER BY s.row",
            {"c": campaign_id, "d": depth},
        )
        added += cursor.rowcount
    if len(stored):
        # Units in the file: every field as the file says. Units absent from it: only their path.
        cursor.execute(
            "UPDATE units u SET name = s.name, kind = s.kind, parent_id = p.id, path = s.path, depth = s.depth, emails = s.emails::json"
            f" FROM {STAGE_UNITS} s LEFT JOIN units p ON p.campaign_id = %(c)s AND p.code = s.parent"
            " WHERE s.in_file AND NOT s.is_new AND u.campaign_id = %(c)s AND u.code = s.code"
            " AND (u.name, u.kind, u.parent_id, u.emails::jsonb, u.path) IS DISTINCT FROM (s.name, s.kind, p.id, s.emails::jsonb, s.path)",
            {"c": campaign_id},
        )
        updated = cursor.rowcount
        cursor.execute(
            f"UPDATE units u SET path = s.path, depth = s.depth FROM {STAGE_UNITS} s"
            " WHERE NOT s.in_file AND u.campaign_id = %(c)s AND u.code = s.code AND u.path <> s.path",
            {"c": campaign_id},
        )
    else:
        updated = 0
    cursor.execute("ANALYZE units")  # the members' merge joins them: the planner must know their number
    return added, updated


def _merge_members(cursor, campaign_id: str) -> tuple[int, int]:
    """New members in file order, changed ones updated in place. Returns (added, updated).

    A stored member keeps its code, so its ``code_key`` is left as it is."""
    params = {"c": campaign_id}
    cursor.execute("SET LOCAL work_mem = '64MB'")  # hash joins on the units in one batch, fewer sort runs
    cursor.execute("SELECT EXISTS (SELECT 1 FROM members WHERE campaign_id = %(c)s)", params)
    any_stored = cursor.fetchone()[0]
    resolved = (
        f" FROM {STAGE_MEMBERS} s JOIN units u ON u.campaign_id = %(c)s AND u.code = s.unit_code"
        " LEFT JOIN units t ON t.campaign_id = %(c)s AND t.code = s.temporary_code"
    )
    updated = 0
    if any_stored:
        cursor.execute(
            "UPDATE members m SET full_name = s.full_name, unit_id = u.id, email = s.email, joined_on = s.joined_on,"
            " status = s.status, temporary_unit_id = t.id, positions = s.positions::json"
            + resolved
            + " WHERE m.campaign_id = %(c)s AND m.member_code = s.member_code"
            " AND (m.full_name, m.unit_id, m.email, m.joined_on, m.status, m.temporary_unit_id, coalesce(m.positions::jsonb, '[]'::jsonb))"
            " IS DISTINCT FROM (s.full_name, u.id, s.email, s.joined_on, s.status, t.id, s.positions::jsonb)",
            params,
        )
        updated = cursor.rowcount
    cursor.execute(
        "INSERT INTO members (campaign_id, member_code, full_name, unit_id, email, joined_on, status, temporary_unit_id, positions, code_key)"
        " SELECT %(c)s, s.member_code, s.full_name, u.id, s.email, s.joined_on, s.status, t.id, s.positions::json, s.code_key"
        + resolved
        + (" WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.campaign_id = %(c)s AND m.member_code = s.member_code)" if any_stored else "")
        + " ORDER BY s.row",
        params,
    )
    added = cursor.rowcount
    cursor.execute("SET LOCAL work_mem TO DEFAULT")
    return added, updated
