"""The organization tree and member list: reading and validating import files.

Pure: reads CSV/XLSX into validated rows and reports every bad row with its
file, row number, column and reason. Writing happens in ``kiemdiem.store.organization``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from kiemdiem.catalogue import BRANCH_KINDS, MEMBER_STATUSES, POSITIONS, UNIT_KINDS
from kiemdiem.errors import InvalidInput, Problem
from kiemdiem.tabular import fold, parse_date, read_table, split_list

UNIT_COLUMNS = {
    "code": ["Mã đơn vị", "Mã tổ chức", "Ma don vi"],
    "name": ["Tên đơn vị", "Tên tổ chức đảng", "Tên"],
    "kind": ["Loại", "Loại tổ chức", "Loại hình"],
    "parent": ["Đơn vị cấp trên", "Mã đơn vị cấp trên", "Cấp trên"],
    "emails": ["Email", "Thư điện tử", "Emails"],
}
MEMBER_COLUMNS = {
    "member_id": ["Mã đảng viên", "Số thẻ đảng viên", "Mã ĐV"],
    "full_name": ["Họ và tên", "Họ tên"],
    "unit": ["Chi bộ", "Mã chi bộ", "Đơn vị"],
    "email": ["Email", "Thư điện tử"],
    "joined_on": ["Ngày vào Đảng", "Ngày kết nạp"],
    "status": ["Trạng thái", "Tình trạng"],
    "temporary_unit": ["Sinh hoạt tạm thời", "Chi bộ sinh hoạt tạm thời"],
    "positions": ["Chức vụ", "Chức vụ đảng"],
}

EMAIL_RE = re.compile(r"^[^@\s;,<>]+@[^@\s;,<>]+\.[A-Za-z0-9-]{2,}$")
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Vietnamese spellings offices type for kinds and statuses, folded.
_KIND_ALIASES = {fold(v): k for k, v in UNIT_KINDS.items()} | {fold(k): k for k in UNIT_KINDS}
_STATUS_ALIASES = {fold(v): k for k, v in MEMBER_STATUSES.items()} | {fold(k): k for k in MEMBER_STATUSES} | {
    fold("Miễn sinh hoạt"): "exempt",
    fold("Miễn"): "exempt",
    fold("Đình chỉ"): "suspended",
    fold("Đình chỉ sinh hoạt"): "suspended",
    fold("Đang sinh hoạt"): "active",
}
_POSITION_ALIASES = {fold(v): k for k, v in POSITIONS.items()} | {fold(k): k for k in POSITIONS}


@dataclass(frozen=True)
class UnitRow:
    row: int
    code: str
    name: str
    kind: str
    parent: str | None
    emails: tuple[str, ...]


@dataclass(frozen=True)
class MemberRow:
    row: int
    member_id: str
    full_name: str
    unit: str
    email: str | None
    joined_on: dt.date | None
    status: str
    temporary_unit: str | None
    positions: tuple[str, ...]


def is_email(text: str) -> bool:
    return bool(EMAIL_RE.match(text))


def read_units(path: Path, data: bytes | None = None, problems: list[Problem] | None = None) -> list[UnitRow]:
    """Parse a units file. Row problems go to ``problems`` (or raise when it is None)."""
    own = problems is None
    problems = [] if own else problems
    source = str(path)
    rows = read_table(path, UNIT_COLUMNS, required={"code", "name", "kind"}, data=data)
    units: list[UnitRow] = []
    for r in rows:
        v = r.values
        ok = True
        if not CODE_RE.match(v["code"]):
            problems.append(Problem(source, f"mã đơn vị không hợp lệ '{v['code']}' (chữ, số, . _ -, tối đa 64 ký tự)", r.number, "code"))
            ok = False
        if not v["name"]:
            problems.append(Problem(source, "thiếu tên đơn vị", r.number, "name"))
            ok = False
        kind = _KIND_ALIASES.get(fold(v["kind"]))
        if kind is None:
            problems.append(Problem(source, f"loại tổ chức không hợp lệ '{v['kind']}' (chỉ nhận {', '.join(UNIT_KINDS)})", r.number, "kind"))
            ok = False
        emails = split_list(v["emails"])
        for email in emails:
            if not is_email(email):
                problems.append(Problem(source, f"email không hợp lệ '{email}'", r.number, "emails"))
                ok = False
        if ok:
            units.append(UnitRow(r.number, v["code"], v["name"], kind, v["parent"] or None, tuple(emails)))
    if own and problems:
        raise InvalidInput(problems)
    return units


def read_members(path: Path, data: bytes | None = None, problems: list[Problem] | None = None) -> list[MemberRow]:
    own = problems is None
    problems = [] if own else problems
    source = str(path)
    rows = read_table(path, MEMBER_COLUMNS, required={"member_id", "full_name", "unit"}, data=data)
    members: list[MemberRow] = []
    for r in rows:
        v = r.values
        ok = True
        if not CODE_RE.match(v["member_id"]):
            problems.append(Problem(source, f"mã đảng viên không hợp lệ '{v['member_id']}'", r.number, "member_id"))
            ok = False
        if not v["full_name"]:
            problems.append(Problem(source, "thiếu họ và tên", r.number, "full_name"))
            ok = False
        if not v["unit"]:
            problems.append(Problem(source, "thiếu chi bộ", r.number, "unit"))
            ok = False
        email = v["email"] or None
        if email and not is_email(email):
            problems.append(Problem(source, f"email không hợp lệ '{email}'", r.number, "email"))
            ok = False
        joined_on = None
        if v["joined_on"]:
            try:
                joined_on = parse_date(v["joined_on"])
            except ValueError as exc:
                problems.append(Problem(source, str(exc), r.number, "joined_on"))
                ok = False
        status = _STATUS_ALIASES.get(fold(v["status"] or "active"))
        if status is None:
            problems.append(Problem(source, f"trạng thái không hợp lệ '{v['status']}' (chỉ nhận {', '.join(MEMBER_STATUSES)})", r.number, "status"))
            ok = False
        positions = []
        for item in split_list(v["positions"].replace(",", ";")):
            position = _POSITION_ALIASES.get(fold(item))
            if position is None:
                problems.append(Problem(source, f"chức vụ không hợp lệ '{item}' (chỉ nhận {', '.join(POSITIONS)})", r.number, "positions"))
                ok = False
            else:
                positions.append(position)
        if ok:
            members.append(
                MemberRow(r.number, v["member_id"], v["full_name"], v["unit"], email, joined_on, status, v["temporary_unit"] or None, tuple(positions))
            )
    if own and problems:
        raise InvalidInput(problems)
    return members


def validate_tree(units: list[UnitRow], source: str, existing: dict[str, tuple[str, str | None]] | None = None) -> list[Problem]:
    """Duplicate codes, unknown parents and cycles. ``existing`` maps stored codes to (kind, parent code)."""
    problems: list[Problem] = []
    existing = existing or {}
    seen: dict[str, UnitRow] = {}
    for u in units:
        if u.code in seen:
            problems.append(Problem(source, f"mã đơn vị '{u.code}' bị lặp (đã có ở dòng {seen[u.code].row})", u.row, "code"))
        else:
            seen[u.code] = u
    parents = {code: parent for code, (_, parent) in existing.items()}
    parents.update({u.code: u.parent for u in seen.values()})
    for u in seen.values():
        if u.parent is not None and u.parent not in parents:
            problems.append(Problem(source, f"đơn vị cấp trên '{u.parent}' không tồn tại", u.row, "parent"))
        if u.parent == u.code:
            problems.append(Problem(source, "đơn vị không thể là cấp trên của chính nó", u.row, "parent"))
    # Cycle detection: follow parents from each unit; a revisit within one walk is a cycle.
    reported: set[str] = set()
    for u in seen.values():
        walk: list[str] = []
        code: str | None = u.code
        while code is not None and code in parents and code not in walk:
            walk.append(code)
            code = parents[code]
        if code is not None and code in walk and u.code == code and u.code not in reported:
            cycle = walk[walk.index(code):] + [code]
            reported.update(cycle)
            problems.append(Problem(source, f"vòng lặp cấp trên: {' → '.join(cycle)}", u.row, "parent"))
    return problems


def validate_members(
    members: list[MemberRow],
    source: str,
    unit_kinds: dict[str, str],
) -> list[Problem]:
    """Members belong to branches that exist; ids are unique; a temporary unit is another branch."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for m in members:
        if m.member_id in seen:
            problems.append(Problem(source, f"đảng viên '{m.member_id}' bị lặp (đã có ở dòng {seen[m.member_id]})", m.row, "member_id"))
        else:
            seen[m.member_id] = m.row
        kind = unit_kinds.get(m.unit)
        if kind is None:
            problems.append(Problem(source, f"chi bộ '{m.unit}' không tồn tại", m.row, "unit"))
        elif kind not in BRANCH_KINDS:
            problems.append(
                Problem(source, f"'{m.unit}' là {UNIT_KINDS[kind]}, không phải chi bộ: đảng viên chỉ sinh hoạt ở chi bộ", m.row, "unit")
            )
        if m.temporary_unit is not None:
            temp_kind = unit_kinds.get(m.temporary_unit)
            if temp_kind is None:
                problems.append(Problem(source, f"chi bộ sinh hoạt tạm thời '{m.temporary_unit}' không tồn tại", m.row, "temporary_unit"))
            elif temp_kind not in BRANCH_KINDS:
                problems.append(Problem(source, f"'{m.temporary_unit}' không phải chi bộ", m.row, "temporary_unit"))
            elif m.temporary_unit == m.unit:
                problems.append(Problem(source, "chi bộ sinh hoạt tạm thời trùng chi bộ chính thức", m.row, "temporary_unit"))
    return problems
