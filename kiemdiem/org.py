"""The organization tree and member list: reading and validating import files.

Pure: reads CSV/XLSX into validated rows and reports every bad row with its
file, row number, column and reason. Writing happens in ``kiemdiem.store.organization``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

from kiemdiem.catalogue import BRANCH_KINDS, MEMBER_STATUSES, POSITIONS, UNIT_KINDS
from kiemdiem.errors import InvalidInput, Problem
from kiemdiem.tabular import Columns, LeadingZeros, columns_of, fold, iter_rows, name_columns, open_rows, parse_date, read_columns, split_list

UNIT_COLUMNS = Columns({
    "code": ["Mã đơn vị", "Mã tổ chức", "Ma don vi", "Mã tổ chức đảng"],
    "name": ["Tên đơn vị", "Tên tổ chức đảng", "Tên"],
    "kind": ["Loại", "Loại tổ chức", "Loại hình"],
    "parent": ["Đơn vị cấp trên", "Mã đơn vị cấp trên", "Cấp trên", "Trực thuộc", "Mã cấp trên", "Cấp trên trực tiếp"],
    "emails": ["Email", "Thư điện tử", "Emails", "E-mail", "Địa chỉ email", "Địa chỉ thư điện tử"],
}, informational=("Bí thư", "Số đảng viên", "Tổng số đảng viên", "Địa chỉ", "Số điện thoại", "Điện thoại"))
# Passed over in the members import: a member's profile columns that it does not keep. Not
# "Ngày chính thức" (a blank one marks a probationary member: the status column must say it) nor
# "Ghi chú" (where an office may write "miễn sinh hoạt").
MEMBER_COLUMNS = Columns({
    "member_id": ["Mã đảng viên", "Số thẻ đảng viên", "Mã ĐV", "Mã số đảng viên"],
    "full_name": ["Họ và tên", "Họ tên", "Họ và tên đảng viên", "Họ tên đảng viên"],
    "unit": ["Chi bộ", "Mã chi bộ", "Đơn vị", "Chi bộ sinh hoạt"],
    "email": ["Email", "Thư điện tử", "E-mail", "Địa chỉ email", "Địa chỉ thư điện tử"],
    "joined_on": ["Ngày vào Đảng", "Ngày kết nạp"],
    "status": ["Trạng thái", "Tình trạng"],
    "temporary_unit": ["Sinh hoạt tạm thời", "Chi bộ sinh hoạt tạm thời"],
    "positions": ["Chức vụ", "Chức vụ đảng", "Chức vụ trong Đảng"],
}, informational=(
    "Quê quán", "Dân tộc", "Ngày sinh", "Năm sinh", "Tôn giáo", "Giới tính",
    "Trình độ", "Trình độ chuyên môn", "Trình độ học vấn", "Học vấn", "Trình độ lý luận chính trị", "Lý luận chính trị",
    "Nghề nghiệp", "Số điện thoại", "Điện thoại", "Địa chỉ", "Nơi ở", "Nơi ở hiện nay", "Chữ ký", "Ký tên",
    "Đơn vị công tác", "Nơi công tác", "Cơ quan công tác",
))

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
    fold("Đảng viên chính thức"): "active",
    fold("Đảng viên dự bị"): "probationary",
}


def _accepted(names: dict[str, str]) -> str:
    """What a coded cell accepts, as a message lists it: the Vietnamese name or the code."""
    return "; ".join(f"{name} ({code})" for code, name in names.items())


_POSITION_ALIASES = {fold(v): k for k, v in POSITIONS.items()} | {fold(k): k for k in POSITIONS} | {
    # How member lists abbreviate them.
    "uv_btv": "uy_vien_ban_thuong_vu", "uvbtv": "uy_vien_ban_thuong_vu", "uy_vien_btv": "uy_vien_ban_thuong_vu",
    "uy_vien_thuong_vu": "uy_vien_ban_thuong_vu", "duv": "dang_uy_vien", "cuv": "chi_uy_vien",
    "uy_vien_chi_uy": "chi_uy_vien", "uy_vien_dang_uy": "dang_uy_vien", "uy_vien_ban_chap_hanh": "dang_uy_vien",
    **dict.fromkeys(
        ("tinh_uy_vien", "thanh_uy_vien", "huyen_uy_vien", "thi_uy_vien", "quan_uy_vien", "uy_vien_tinh_uy", "uy_vien_huyen_uy"),
        "cap_uy_vien_cap_tren",
    ),
}
# A position followed by its body: "Bí thư Chi bộ", "Phó Bí thư Đảng ủy", "Ủy viên BTV Đảng ủy".
_BODY_START = re.compile(
    r"_(?=(?:chi_bo|chi_uy|dang_uy|dang_bo|cap_uy|thuong_truc|btv|ban_thuong_vu|tinh_uy|huyen_uy|thanh_uy|thi_uy|quan_uy)(?:_|$))"
)
_BRANCH_BODIES = ("chi_bo", "chi_uy")
NOT_A_POSITION = (
    "chức vụ không hợp lệ '{item}': cột này chỉ nhận các chức vụ trong Đảng sau ({accepted}); "
    "chức vụ chính quyền, chuyên môn không ghi ở cột này"
)


def position_of(item: str) -> str | None:
    """The party position a cell item names (its code), by name, code, abbreviation or followed
    by its body ("Bí thư Chi bộ"); None for anything else (a job title such as "Trưởng phòng").
    The secretary of a body above the branch ("Bí thư Đảng ủy Sở") is ``bi_thu_dang_uy``: ``bi_thu``
    is the head of the member's own branch, whom the rules and the branch's documents name."""
    key = fold(item)
    found = _POSITION_ALIASES.get(key)
    for body in () if found is not None else _BODY_START.finditer(key):
        found = _POSITION_ALIASES.get(key[:body.start()])
        if found is not None:
            if found == "bi_thu" and not key[body.end():].startswith(_BRANCH_BODIES):
                found = "bi_thu_dang_uy"
            break
    return found


def position_items(text: str) -> list[str]:
    """A "Chức vụ" cell's items, split at ";" or ",", except where the comma is a name's own
    ("Thủ trưởng cơ quan, đơn vị")."""
    items = split_list(text.replace(",", ";"))
    merged: list[str] = []
    for item in items:
        if merged and position_of(merged[-1]) is None and position_of(f"{merged[-1]}, {item}") is not None:
            merged[-1] = f"{merged[-1]}, {item}"
        else:
            merged.append(item)
    return merged


class UnitRow(NamedTuple):
    row: int
    code: str
    name: str
    kind: str
    parent: str | None
    emails: tuple[str, ...]


class MemberRow(NamedTuple):
    """One valid member line. A named tuple, not a dataclass: a province has ~90,000 of them."""

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


def name_import_columns(
    problems: list[Problem], units_path: Path, units_data: bytes | None, members_path: Path | None, members_data: bytes | None,
) -> list[Problem]:
    """An import's problems with each file's columns as that file names them (``tabular.name_columns``)."""
    problems = name_columns(problems, units_path, UNIT_COLUMNS, units_data)
    return problems if members_path is None else name_columns(problems, members_path, MEMBER_COLUMNS, members_data)


def unit_code_by_name(load) -> Callable[[str], str | None]:
    """``code_of(text)``: the code of the one unit whose name is ``text`` (folded), else None: a
    member's branch typed by its name is told its code. ``load()`` yields (code, name) pairs; it
    is called once, at the first question (only an import with a missing branch asks)."""
    codes: dict[str, list[str]] = {}
    every: list[str] = []
    loaded = False

    def load_once() -> None:
        nonlocal loaded
        if not loaded:
            for code, name in load():
                codes.setdefault(fold(name), []).append(code)
                every.append(code)
            loaded = True

    def code_of(text: str) -> str | None:
        load_once()
        found = codes.get(fold(text), ())
        return found[0] if len(found) == 1 else None

    zeros = LeadingZeros(every)

    def zero_hint(text: str) -> str:
        """" (có phải 01? …)" for a code that lost its leading zeros in Excel."""
        load_once()
        return zeros.hint(text)

    code_of.zero_hint = zero_hint  # type: ignore[attr-defined]
    return code_of


def read_units(path: Path, data: bytes | None = None, problems: list[Problem] | None = None) -> list[UnitRow]:
    """Parse a units file. Row problems go to ``problems`` (or raise when it is None)."""
    own = problems is None
    problems = [] if own else problems
    rows = iter_rows(path, UNIT_COLUMNS, required={"code", "name", "kind"}, data=data)
    units = units_of_rows(str(path), rows, problems)
    if own and problems:
        raise InvalidInput(name_columns(problems, path, UNIT_COLUMNS, data))
    return units


def read_units_streaming(path: Path, data: bytes | None = None, problems: list[Problem] | None = None) -> list[UnitRow]:
    """``read_units`` without holding the file: the rows are parsed as the file is read."""
    own = problems is None
    problems = [] if own else problems
    with open_rows(path, UNIT_COLUMNS, required={"code", "name", "kind"}, data=data) as rows:
        units = units_of_rows(str(path), rows, problems)
    if own and problems:
        raise InvalidInput(name_columns(problems, path, UNIT_COLUMNS, data))
    return units


def units_of_rows(source: str, rows, problems: list[Problem]) -> list[UnitRow]:
    """The valid units of ``(row number, cells)`` pairs; every bad cell goes to ``problems``."""
    units: list[UnitRow] = []
    for number, (code, name, kind_text, parent, emails_text) in rows:
        ok = True
        if not CODE_RE.match(code):
            problems.append(Problem(source, f"mã đơn vị không hợp lệ '{code}' (chữ, số, . _ -, tối đa 64 ký tự)", number, "code"))
            ok = False
        if not name:
            problems.append(Problem(source, "thiếu tên đơn vị", number, "name"))
            ok = False
        kind = _KIND_ALIASES.get(fold(kind_text))
        if kind is None:
            problems.append(Problem(source, f"loại tổ chức không hợp lệ '{kind_text}' (chỉ nhận {_accepted(UNIT_KINDS)})", number, "kind"))
            ok = False
        emails = split_list(emails_text)
        for email in emails:
            if not EMAIL_RE.match(email):
                problems.append(Problem(source, f"email không hợp lệ '{email}'", number, "emails"))
                ok = False
        if ok:
            units.append(UnitRow(number, code, name, kind, parent or None, tuple(emails)))
    return units


def read_members(path: Path, data: bytes | None = None, problems: list[Problem] | None = None) -> list[MemberRow]:
    """Parse a members file. Row problems go to ``problems`` (or raise when it is None)."""
    return list(map(MemberRow._make, zip(*read_member_columns(path, data, problems))))


def read_member_columns(
    path: Path, data: bytes | None = None, problems: list[Problem] | None = None, refused: list[tuple] | None = None,
) -> list[Sequence]:
    """``read_members`` column by column, for bulk imports: one sequence per ``MemberRow``
    field, in field order (row numbers first), holding the valid rows. ``refused`` gets the (row,
    branch, temporary branch, member id) of each row refused for a bad cell, for the caller to check
    against the tree as well (``refused_unit_problems``): every problem of a row is reported at once.

    A province has ~90,000 members: a file without a bad cell is checked a column at a
    time, in C where possible; otherwise row by row, naming every bad cell.
    """
    own = problems is None
    problems = [] if own else problems
    source = str(path)
    numbers, columns = read_columns(path, MEMBER_COLUMNS, required={"member_id", "full_name", "unit"}, data=data)
    members = _clean_members(numbers, columns)
    if members is None:
        members = columns_of(_check_members(source, zip(numbers, zip(*columns)), problems, refused), len(MemberRow._fields))
    if own and problems:
        raise InvalidInput(name_columns(problems, path, MEMBER_COLUMNS, data))
    return members


def member_chunks(
    path: Path, data: bytes | None, problems: list[Problem], chunk_rows: int = 50_000, refused: list[tuple] | None = None,
) -> Iterator[list[Sequence]]:
    """``read_member_columns`` a chunk at a time, for files too large to hold: yields the
    valid rows of each ``chunk_rows`` file rows as columns (the fields of ``MemberRow``).

    Each chunk is checked a column at a time when it has no bad cell, else row by row;
    every bad cell goes to ``problems``. A file-level problem (header) raises InvalidInput
    when the iteration starts. Memory holds one chunk, whatever the file's size.
    """
    source = str(path)
    with open_rows(path, MEMBER_COLUMNS, required={"member_id", "full_name", "unit"}, data=data) as rows:
        width = len(MEMBER_COLUMNS)
        while True:
            chunk = list(itertools.islice(rows, chunk_rows))
            if not chunk:
                return
            numbers, cells = columns_of(chunk, 2)
            columns = columns_of(cells, width)
            del chunk, cells
            members = _clean_members(numbers, columns)
            if members is None:
                members = columns_of(_check_members(source, zip(numbers, zip(*columns)), problems, refused), len(MemberRow._fields))
            yield members


def _clean_members(numbers: Sequence[int], columns: list[Sequence[str]]) -> list[Sequence] | None:
    """The columns of a file with no bad cell; None at the first problem (``_check_members``
    then finds and names them all). The same checks as ``_check_members``.

    Each distinct date, status and position list is parsed once: a province has ~90,000
    members but only a few thousand dates and a handful of statuses and position lists.
    """
    member_ids, full_names, units, emails, joined, statuses, temporary, positions = columns
    if not (all(full_names) and all(units) and all(map(CODE_RE.match, member_ids))):
        return None
    if not all(map(EMAIL_RE.match, filter(None, emails))):
        return None
    dates: dict[str, dt.date | None] = {"": None}
    for text in set(joined):
        if text:
            try:
                dates[text] = parse_date(text)
            except ValueError:
                return None
    status_of: dict[str, str] = {}
    for text in set(statuses):
        status = _STATUS_ALIASES.get(fold(text or "active"))
        if status is None:
            return None
        status_of[text] = status
    positions_of: dict[str, tuple[str, ...]] = {}
    for text in set(positions):
        found = tuple(map(position_of, position_items(text)))
        if None in found:
            return None
        positions_of[text] = found
    empty = {"": None}  # empty.get(cell, cell): None for an empty cell, the cell itself otherwise
    return [
        numbers, member_ids, full_names, units,
        list(map(empty.get, emails, emails)),
        list(map(dates.__getitem__, joined)),
        statuses if all(key == value for key, value in status_of.items()) else list(map(status_of.__getitem__, statuses)),
        list(map(empty.get, temporary, temporary)),
        list(map(positions_of.__getitem__, positions)),
    ]


# The refused rows kept for the tree check: enough for the problems listed (``bulk_import.MAX_PROBLEMS``).
MAX_REFUSED_KEPT = 10_000


def _check_members(source: str, rows, problems: list[Problem], refused: list[tuple] | None = None) -> list[tuple]:
    """Row by row: every problem of every row, in file order; the valid rows as tuples, and the
    (row, branch, temporary branch, member id) of the refused ones to ``refused``."""
    members: list[tuple] = []
    append = members.append
    code_ok = CODE_RE.match
    email_ok = EMAIL_RE.match
    dates: dict[str, dt.date] = {}
    statuses: dict[str, str] = {}
    position_lists: dict[str, tuple[str, ...]] = {"": ()}
    # A refused row is not kept, so the later check of duplicates would not see it: a repeated id
    # where either row is refused is reported here (both kept: ``validate_member_columns``).
    first_seen: dict[str, tuple[int, bool]] = {}
    for number, (member_id, full_name, unit, email, joined_text, status_text, temporary_unit, positions_text) in rows:
        ok = True
        if code_ok(member_id) is None:
            problems.append(Problem(source, f"mã đảng viên không hợp lệ '{member_id}'", number, "member_id"))
            ok = False
        if not full_name:
            problems.append(Problem(source, "thiếu họ và tên", number, "full_name"))
            ok = False
        if not unit:
            problems.append(Problem(source, "thiếu chi bộ", number, "unit"))
            ok = False
        if not email:
            email = None
        elif email_ok(email) is None:
            problems.append(Problem(source, f"email không hợp lệ '{email}'", number, "email"))
            ok = False
        joined_on = None
        if joined_text:
            joined_on = dates.get(joined_text)
            if joined_on is None:
                try:
                    joined_on = dates[joined_text] = parse_date(joined_text)
                except ValueError as exc:
                    problems.append(Problem(source, str(exc), number, "joined_on"))
                    ok = False
        status = statuses.get(status_text)
        if status is None:
            status = _STATUS_ALIASES.get(fold(status_text or "active"))
            if status is None:
                problems.append(
                    Problem(source, f"trạng thái không hợp lệ '{status_text}' (chỉ nhận {_accepted(MEMBER_STATUSES)})", number, "status")
                )
                ok = False
            else:
                statuses[status_text] = status
        positions = position_lists.get(positions_text)
        if positions is None:
            found = []
            valid = True
            for item in position_items(positions_text):
                position = position_of(item)
                if position is None:
                    problems.append(Problem(source, NOT_A_POSITION.format(item=item, accepted=_accepted(POSITIONS)), number, "positions"))
                    valid = False
                else:
                    found.append(position)
            positions = tuple(found)
            if valid:
                position_lists[positions_text] = positions
            else:
                ok = False
        if member_id:
            first = first_seen.get(member_id)
            if first is None:
                first_seen[member_id] = (number, ok)
            elif not (ok and first[1]):
                problems.append(duplicate_member_problem(source, number, member_id, first[0]))
        if ok:
            append((number, member_id, full_name, unit, email, joined_on, status, temporary_unit or None, positions))
        elif refused is not None and len(refused) < MAX_REFUSED_KEPT:
            refused.append((number, unit, temporary_unit or None, member_id))
    return members


def refused_unit_problems(
    source: str, refused: Sequence[tuple], unit_kinds: dict[str, str], code_of_name: Callable[[str], str | None] | None = None,
) -> list[Problem]:
    """``member_unit_problems`` of the rows refused for a bad cell (``_check_members``'s ``refused``)."""
    problems: list[Problem] = []
    for row, unit, temporary_unit, _member_id in refused:
        if unit:  # an empty one is reported with the row's cells
            problems += _branch_problems(source, row, unit, temporary_unit, unit_kinds, code_of_name)
    return problems


def _branch_problems(source: str, row: int, unit: str, temporary_unit: str | None, unit_kinds: dict[str, str],
                     code_of_name: Callable[[str], str | None] | None) -> list[Problem]:
    temp_kind = None if temporary_unit is None else unit_kinds.get(temporary_unit)
    return member_unit_problems(source, row, unit, unit_kinds.get(unit), temporary_unit, temp_kind, code_of_name)


def validate_tree(
    units: list[UnitRow], source: str, existing: dict[str, tuple[str, str | None]] | None = None,
    code_of_name: Callable[[str], str | None] | None = None,
) -> list[Problem]:
    """Duplicate codes, unknown parents and cycles. ``existing`` maps stored codes to (kind, parent code);
    a parent given by its name is told its code (``code_of_name``, ``unit_code_by_name``)."""
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
            problems.append(Problem(source, _missing("đơn vị cấp trên", u.parent, code_of_name), u.row, "parent"))
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
    return validate_member_columns(columns_of(members, len(MemberRow._fields)), source, unit_kinds)


def validate_member_columns(
    columns: list[Sequence], source: str, unit_kinds: dict[str, str], code_of_name: Callable[[str], str | None] | None = None,
) -> list[Problem]:
    """``validate_members`` on the columns of ``read_member_columns``."""
    _rows, member_ids, _names, units, _emails, _joined, _statuses, temporary, _positions = columns
    # The common case first, a column at a time: unique ids, branches that exist.
    branches = {code for code, kind in unit_kinds.items() if kind in BRANCH_KINDS}
    temporary_branches = set(temporary)
    temporary_branches.discard(None)
    if (
        len(set(member_ids)) == len(member_ids)
        and branches.issuperset(units)
        and branches.issuperset(temporary_branches)
        and not any(map(operator.eq, temporary, units))
    ):
        return []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for row, member_id, _name, unit, _email, _joined, _status, temporary_unit, _positions in zip(*columns):
        if member_id in seen:
            problems.append(duplicate_member_problem(source, row, member_id, seen[member_id]))
        else:
            seen[member_id] = row
        problems += _branch_problems(source, row, unit, temporary_unit, unit_kinds, code_of_name)
    return problems


def duplicate_member_problem(source: str, row: int, member_id: str, first_row: int) -> Problem:
    return Problem(source, f"đảng viên '{member_id}' bị lặp (đã có ở dòng {first_row})", row, "member_id")


def member_unit_problems(
    source: str, row: int, unit: str, kind: str | None, temporary_unit: str | None, temp_kind: str | None,
    code_of_name: Callable[[str], str | None] | None = None,
) -> list[Problem]:
    """A member's branch and temporary branch, given their kinds (None: no such unit). A branch
    given by its name is told its code (``code_of_name``, ``unit_code_by_name``)."""
    problems: list[Problem] = []
    if kind not in BRANCH_KINDS:
        if kind is None:
            problems.append(Problem(source, _missing("chi bộ", unit, code_of_name), row, "unit"))
        else:
            problems.append(
                Problem(source, f"'{unit}' là {UNIT_KINDS[kind]}, không phải chi bộ: đảng viên chỉ sinh hoạt ở chi bộ", row, "unit")
            )
    if temporary_unit is not None:
        if temp_kind is None:
            problems.append(Problem(source, _missing("chi bộ sinh hoạt tạm thời", temporary_unit, code_of_name), row, "temporary_unit"))
        elif temp_kind not in BRANCH_KINDS:
            problems.append(Problem(source, f"'{temporary_unit}' không phải chi bộ", row, "temporary_unit"))
        elif temporary_unit == unit:
            problems.append(Problem(source, "chi bộ sinh hoạt tạm thời trùng chi bộ chính thức", row, "temporary_unit"))
    return problems


def _missing(what: str, text: str, code_of_name: Callable[[str], str | None] | None) -> str:
    """"… không tồn tại", with the code of the unit ``text`` names when it is a name."""
    code = code_of_name(text) if code_of_name is not None else None
    hint = f": đây là tên của đơn vị có mã '{code}', cột này cần mã đơn vị" if code else ""
    if not hint and code_of_name is not None and hasattr(code_of_name, "zero_hint"):
        hint = code_of_name.zero_hint(text)
    return f"{what} '{text}' không tồn tại{hint}"


def demoted_branches(units: list[UnitRow], stored_kinds: dict[str, str]) -> dict[str, UnitRow]:
    """The stored branches the units file makes something else, by code: their stored members
    would be left in a unit that is not a branch (``stranded_members_problem``)."""
    demoted: dict[str, UnitRow] = {}
    for u in units:
        if u.code not in demoted and stored_kinds.get(u.code) in BRANCH_KINDS and u.kind not in BRANCH_KINDS:
            demoted[u.code] = u
    return demoted


# Member ids a problem names at most; the count says how many there are.
IDS_NAMED = 3


def stranded_members_problem(
    source: str, unit: UnitRow, members: int, member_ids: Sequence[str], temporary: int, temporary_ids: Sequence[str],
) -> Problem:
    """A units file row that makes a branch something else while stored members the members file
    does not move still belong to it (``members``) or are there temporarily (``temporary``);
    ``*_ids`` are the first of them."""

    def named(count: int, ids: Sequence[str], what: str) -> str:
        shown = ", ".join(ids[:IDS_NAMED]) + (", …" if count > IDS_NAMED else "")
        return f"{count} {what} ({shown})"

    held = [named(members, member_ids, "đảng viên")] if members else []
    held += [named(temporary, temporary_ids, "đảng viên sinh hoạt tạm thời")] if temporary else []
    return Problem(
        source,
        f"đơn vị '{unit.code}' còn {' và '.join(held)} nên không đổi thành {UNIT_KINDS[unit.kind]} được: "
        "đảng viên chỉ sinh hoạt ở chi bộ; trước hết chuyển họ sang một chi bộ bằng cách nhập tệp đảng viên "
        "(ghi chi bộ mới của họ) cùng với tệp đơn vị",
        unit.row,
        "kind",
    )


def in_row_order(problems: list[Problem]) -> list[Problem]:
    """A file's problems by row; stable, so a row keeps its own order. A file-level one first."""
    return sorted(problems, key=lambda p: p.row or 0)
