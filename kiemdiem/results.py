"""Parse classification result files (CSV or XLSX, English or Vietnamese headers).

Two documents:
- ``tong_hop_xep_loai_dang_vien``: the member classification list of a unit
  (``parse_member_results``);
- ``ket_qua_xep_loai_chi_bo`` or a committee's decision on organizations
  (``parse_org_results``).

Every bad row is reported at once (row number, column, reason) in one InvalidInput, so a
secretary can fix the whole file in one go. Nothing is returned unless the file is clean.

``has_self_review`` (has the member written a self-review, Mẫu 02?) is decided as follows:
1. a ``self_review`` / "Có bản kiểm điểm" cell with a yes/no value wins;
2. otherwise, if the file fills in self-levels for anyone, a member with an empty
   self-level is taken as having no self-review (the self-level is the conclusion of the
   self-review, so a blank one means none was presented);
3. otherwise (no self-level anywhere: the file simply does not carry that information)
   it is True, so a list that only gives decisions does not accuse every member.
"""

from __future__ import annotations

import math
from pathlib import Path

from kiemdiem.consolidation import MemberResult, OrgResult
from kiemdiem.errors import InvalidInput, Problem
from kiemdiem.rules.base import LEVEL_NAMES, LEVELS
from kiemdiem.tabular import Columns, LeadingZeros, Marks, fold, name_columns, read_table

__all__ = ["LEVELS", "LEVEL_NAMES", "parse_level", "parse_yes_no", "parse_member_results", "parse_org_results", "problem_text"]

# Headers a member's own data sheet carries (the forms' "Phiếu đảng viên" columns): nothing of
# them is a result, so a list that keeps them loads and they are passed over.
_MEMBER_PROFILE_HEADERS = (
    "Quê quán", "Dân tộc", "Tôn giáo", "Giới tính", "Ngày chính thức", "Ngày công nhận chính thức",
    "Trình độ", "Trình độ chuyên môn", "Trình độ học vấn", "Học vấn", "Trình độ lý luận chính trị", "Lý luận chính trị",
    "Nghề nghiệp", "Số điện thoại", "Điện thoại", "Địa chỉ", "Nơi ở", "Nơi ở hiện nay", "Chữ ký", "Ký tên",
    "Đơn vị công tác", "Nơi công tác", "Cơ quan công tác",
)


def _level_of_header(text: str) -> str | None:
    """A level column's header ("Hoàn thành tốt nhiệm vụ", "HTTNV") → its level: a form's one column per level."""
    return _LEVEL_LOOKUP.get(_squash(text))


# Forms' "not evaluated" columns. Who is not evaluated is not the list's to say: the members file
# says it (status exempt or suspended, the date of admission), so such a mark would be lost.
_NOT_EVALUATED_HEADERS = ("Không xếp loại", "Chưa xếp loại", "Không đánh giá xếp loại", "Không đánh giá", "Chưa đánh giá", "Miễn xếp loại")
_MEMBER_NOT_EVALUATED = (
    "hệ thống không lấy diện không xếp loại từ danh sách này: đảng viên miễn công tác và sinh hoạt đảng, "
    "đình chỉ sinh hoạt đảng hoặc mới kết nạp chưa đủ 6 tháng được xác định theo danh sách đảng viên đã nhập "
    "(cột Trạng thái, Ngày vào Đảng). Hãy xóa cột này và để trống mức xếp loại của những đảng viên đó "
    "(đảng viên vắng mặt: ghi 'x' ở cột Vắng mặt)"
)
_ORG_NOT_EVALUATED = (
    "tổ chức đảng không có diện không xếp loại trong hệ thống: mỗi tổ chức trong danh sách cần mức xếp loại "
    "hoặc tự xếp loại. Hãy xóa cột này và bỏ tổ chức chưa xếp loại khỏi danh sách, gửi khi đã có kết quả"
)

MEMBER_COLUMNS: dict[str, list[str]] = Columns({
    "member_id": ["Mã đảng viên", "Mã ĐV", "Mã số đảng viên", "Số thẻ đảng viên", "ma_dv", "member"],
    "self_level": [
        "Tự xếp loại", "Tự nhận mức xếp loại", "Tự đánh giá xếp loại", "Cá nhân tự xếp loại", "Đảng viên tự xếp loại",
        "Đảng viên tự nhận mức xếp loại", "Tự nhận xếp loại",
    ],
    "proposed_level": [
        "Chi bộ đề xuất", "Đề xuất", "Đề xuất xếp loại", "Chi bộ đề xuất xếp loại", "Đề nghị xếp loại", "Mức đề xuất",
        "Chi bộ đề nghị", "Chi bộ đề nghị xếp loại", "Đề nghị của chi bộ", "Đề xuất của chi bộ", "Chi ủy đề nghị", "Chi ủy đề xuất",
    ],
    "final_level": [
        "Quyết định xếp loại", "Quyết định", "Xếp loại chính thức", "Kết quả xếp loại", "Cấp ủy quyết định", "Xếp loại", "level",
    ],
    "disciplined": ["Kỷ luật", "Bị kỷ luật trong năm", "Bị kỷ luật", "Kỷ luật trong năm"],
    "sick_leave_months": ["Số tháng nghỉ ốm", "Nghỉ ốm (tháng)", "Nghỉ ốm", "sick_leave"],
    "absent": ["Vắng mặt", "Vắng"],
    "score": ["Điểm", "Tổng điểm", "Điểm đánh giá"],
    "note": ["Ghi chú"],
    "self_review": ["Có bản kiểm điểm", "Đã nộp bản kiểm điểm", "Bản kiểm điểm", "has_self_review"],
    # Accepted so that ordinary office lists load; not used.
    "full_name": ["Họ và tên", "Họ tên", "Họ và tên đảng viên", "Họ tên đảng viên", "name"],
    "position": ["Chức vụ", "positions"],
    # A committee's decision covers several branches: its list names each member's branch.
    "branch": ["Chi bộ", "Đơn vị", "Tên chi bộ", "Chi bộ sinh hoạt", "Mã chi bộ", "unit"],
    "birth": ["Ngày sinh", "Năm sinh"],
}, informational=(
    *_MEMBER_PROFILE_HEADERS, "Ngày vào Đảng", "Ngày kết nạp", "Email", "E-mail", "Thư điện tử", "Địa chỉ email",
), marks=Marks(
    _level_of_header, ("self_level", "proposed_level", "final_level"), "final_level", "mức xếp loại",
    "'Tự xếp loại', 'Chi bộ đề xuất' hoặc 'Xếp loại' (cấp ủy quyết định)",
), refused=dict.fromkeys(_NOT_EVALUATED_HEADERS, _MEMBER_NOT_EVALUATED))

ORG_COLUMNS: dict[str, list[str]] = Columns({
    "unit": ["Mã đơn vị", "Tổ chức đảng", "Mã tổ chức đảng", "Đơn vị", "unit_code", "Mã chi bộ", "Mã tổ chức"],
    "self_level": [
        "Tự xếp loại", "Tự đánh giá xếp loại", "Tự đánh giá", "Tự nhận mức xếp loại", "Tự nhận xếp loại",
        "Chi bộ tự xếp loại", "Tổ chức đảng tự xếp loại",
    ],
    "level": [
        "Xếp loại", "Kết quả xếp loại", "Quyết định xếp loại", "Xếp loại chính thức", "final_level", "Cấp ủy quyết định", "Quyết định",
    ],
    "disciplined": ["Kỷ luật", "Bị kỷ luật trong năm", "Bị kỷ luật"],
    "note": ["Ghi chú"],
    "name": ["Tên đơn vị", "Tên tổ chức đảng", "Tên chi bộ"],
}, informational=("Bí thư", "Số đảng viên", "Tổng số đảng viên", "Địa chỉ", "Số điện thoại", "Điện thoại", "Chữ ký", "Ký tên"),
   marks=Marks(_level_of_header, ("self_level", "level"), "level", "mức xếp loại", "'Tự xếp loại' hoặc 'Xếp loại'"),
   refused=dict.fromkeys(_NOT_EVALUATED_HEADERS, _ORG_NOT_EVALUATED))


def problem_text(problem: Problem, *, with_file: bool = False) -> str:
    """A list's problem as an office reads it, the column as the file names it (else under its usual
    Vietnamese header): "dòng 3, cột 'Chi bộ đề xuất': why" (prefixed by the file's name ``with_file``)."""
    where = [Path(problem.source).name] if with_file and problem.source else []
    if problem.row is not None:
        where.append(f"dòng {problem.row}")
    if problem.column or problem.field:
        headers = MEMBER_COLUMNS.get(problem.field) or ORG_COLUMNS.get(problem.field)
        where.append(f"cột '{problem.column or (headers[0] if headers else problem.field)}'")
    return f"{', '.join(where)}: {problem.reason}" if where else problem.reason


def _squash(text: str) -> str:
    return fold(text).replace("_", "")


# Codes, full names, and the short forms offices write ("Xuất sắc", "HTT", "Hoàn thành tốt"),
# each also with the task ending the full names carry ("nhiệm vụ", "NV", "n.vụ"). Folded, so
# case, accents, spacing and dots do not matter ("HTT NV", "H.T.T.N.V").
_LEVEL_LOOKUP: dict[str, str] = {}
_LEVEL_STEMS = {
    "HTXS": "HTXSNV", "Xuất sắc": "HTXSNV", "Hoàn thành xuất sắc": "HTXSNV", "Hoàn thành XS": "HTXSNV",
    "HTT": "HTTNV", "Tốt": "HTTNV", "Hoàn thành tốt": "HTTNV",
    "HT": "HTNV", "Hoàn thành": "HTNV",
    "KHT": "KHTNV", "Không hoàn thành": "KHTNV", "Không HT": "KHTNV",
}
_TASK_ENDINGS = ("", "nv", "nvu", "nhiemvu")
_LEVEL_WORDINGS = [(_squash(code), code) for code in LEVEL_NAMES] + [(_squash(name), code) for code, name in LEVEL_NAMES.items()]
_LEVEL_WORDINGS += [(_squash(stem) + ending, code) for stem, code in _LEVEL_STEMS.items() for ending in _TASK_ENDINGS]
for _key, _code in _LEVEL_WORDINGS:
    if _LEVEL_LOOKUP.setdefault(_key, _code) != _code:  # one wording, two levels: a mistake in the lists above
        raise AssertionError(f"level wording '{_key}' is ambiguous")

_YES = {"x", "co", "1", "true", "yes", "y", "dung", "c"}
_NO = {"khong", "0", "false", "no", "n", "k", "sai"}

SCORE_MIN, SCORE_MAX = 0.0, 100.0
SICK_LEAVE_MAX = 12.0


def parse_level(text: str) -> str | None:
    """'HTTNV', 'hoàn thành tốt nhiệm vụ', 'Tốt' → 'HTTNV'; '' → None; ValueError if unknown."""
    if not text or not text.strip():
        return None
    code = _LEVEL_LOOKUP.get(_squash(text))
    if code is None:
        raise ValueError(
            f"mức xếp loại không hợp lệ '{text}' (dùng {', '.join(LEVELS)} hoặc tên đầy đủ, "
            "ví dụ 'Hoàn thành tốt nhiệm vụ')"
        )
    return code


def parse_yes_no(text: str) -> bool | None:
    """x/có/1/true/yes → True; không/0/false/no → False; '' → None; ValueError otherwise."""
    if not text or not text.strip():
        return None
    key = _squash(text)
    if key in _YES:
        return True
    if key in _NO:
        return False
    raise ValueError(f"giá trị có/không không hợp lệ '{text}' (dùng x, có, không, 1, 0)")


def _parse_number(text: str) -> float | None:
    if not text or not text.strip():
        return None
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        raise ValueError(f"không phải là số: '{text}'") from None
    if not math.isfinite(value):
        raise ValueError(f"không phải là số: '{text}'")
    return value


class _Collector:
    """Collects one row's values and the problems found, so every problem is reported."""

    def __init__(self, source: str, row, problems: list[Problem]):
        self.source, self.row, self.problems = source, row, problems

    def fail(self, field: str, reason: str) -> None:
        self.problems.append(Problem(self.source, reason, row=self.row.number, field=field))

    def level(self, field: str):
        try:
            return parse_level(self.row.values[field])
        except ValueError as exc:
            self.fail(field, str(exc))
            return None

    def yes_no(self, field: str):
        try:
            return parse_yes_no(self.row.values[field])
        except ValueError as exc:
            self.fail(field, str(exc))
            return None

    def number(self, field: str, low: float, high: float, what: str):
        try:
            value = _parse_number(self.row.values[field])
        except ValueError as exc:
            self.fail(field, str(exc))
            return None
        if value is not None and not low <= value <= high:
            # As typed: a rounded figure ("100" for 100.0001) would contradict the refusal.
            self.fail(field, f"{what} phải từ {low:g} đến {high:g}, nhận được '{self.row.values[field].strip()}'")
            return None
        return value


def _by_row(problems: list[Problem]) -> dict[int, list[Problem]]:
    rows: dict[int, list[Problem]] = {}
    for problem in problems:
        rows.setdefault(problem.row, []).append(problem)
    return rows


def _in_row_order(problems: list[Problem]) -> list[Problem]:
    # A row left blank by its bad marks is not among the rows read: its problems come in its place.
    return sorted(problems, key=lambda p: p.row or 0)


def parse_member_results(
    path: Path,
    unit_code: str,
    known_member_ids: set[str] | None = None,
    data: bytes | None = None,
    not_evaluated_ids: set[str] | None = None,
) -> list[MemberResult]:
    """Parse a member classification list submitted by ``unit_code``.

    ``known_member_ids``: when given, an id outside it is an error.
    ``not_evaluated_ids``: members (exempt, suspended, new) who may be listed without a level.
    Raises InvalidInput listing every bad row.
    """
    source = str(path)
    marks: list[Problem] = []  # rows whose level marks do not read: told with the rest
    try:
        rows = read_table(path, MEMBER_COLUMNS, required={"member_id"}, data=data, problems=marks)
    except InvalidInput as exc:
        raise InvalidInput(name_columns(exc.problems, path, MEMBER_COLUMNS, data)) from None
    problems: list[Problem] = []
    bad_marks = _by_row(marks)
    file_has_self_levels = any(row.values["self_level"].strip() for row in rows)
    seen: dict[str, int] = {}
    results: list[MemberResult] = []
    zeros = LeadingZeros(known_member_ids or ())
    for row in rows:
        before = len(problems)
        if bad_marks:
            problems.extend(bad_marks.get(row.number, ()))
        cell = _Collector(source, row, problems)
        member_id = row.values["member_id"].strip()
        if not member_id:
            cell.fail("member_id", "thiếu mã đảng viên")
        elif member_id in seen:
            cell.fail("member_id", f"đảng viên {member_id} bị lặp (đã có ở dòng {seen[member_id]})")
        elif known_member_ids is not None and member_id not in known_member_ids:
            cell.fail("member_id", f"mã đảng viên {member_id} không có trong danh sách đảng viên của đơn vị{zeros.hint(member_id)}")
        if member_id and member_id not in seen:
            seen[member_id] = row.number
        self_level = cell.level("self_level")
        proposed = cell.level("proposed_level")
        final = cell.level("final_level")
        disciplined = cell.yes_no("disciplined")
        absent = cell.yes_no("absent")
        self_review = cell.yes_no("self_review")
        sick = cell.number("sick_leave_months", 0.0, SICK_LEAVE_MAX, "số tháng nghỉ ốm")
        score = cell.number("score", SCORE_MIN, SCORE_MAX, "điểm")
        exempt = not_evaluated_ids is not None and member_id in not_evaluated_ids
        if (
            proposed is None and final is None and not absent and not exempt and row.number not in bad_marks
            and not row.values["proposed_level"].strip() and not row.values["final_level"].strip()
        ):
            cell.fail(
                "final_level",
                "chưa có mức xếp loại (đề xuất hoặc quyết định); nếu đảng viên vắng mặt, ghi 'x' ở cột Vắng mặt",
            )
        if len(problems) > before:
            continue
        if self_review is not None:
            has_review = self_review
        elif file_has_self_levels:
            has_review = self_level is not None
        else:
            has_review = True
        results.append(
            MemberResult(
                member_id=member_id,
                unit_code=unit_code,
                self_level=self_level,
                proposed_level=proposed,
                final_level=final,
                disciplined=bool(disciplined),
                sick_leave_months=sick or 0.0,
                absent=bool(absent),
                score=score,
                note=row.values["note"].strip(),
                has_self_review=has_review,
            )
        )
    if problems or marks:
        read = {row.number for row in rows}
        problems += [p for p in marks if p.row not in read]
        raise InvalidInput(name_columns(_in_row_order(problems), path, MEMBER_COLUMNS, data))
    return results


def parse_org_results(
    path: Path,
    decided_by: str | None,
    known_unit_codes: set[str] | None,
    data: bytes | None = None,
) -> list[OrgResult]:
    """Parse organization results decided by ``decided_by`` (a unit code; None for a
    self-assessment not yet decided). A row needs a level or a self-level.
    The note column is accepted but not kept (OrgResult has no note)."""
    source = str(path)
    marks: list[Problem] = []
    try:
        rows = read_table(path, ORG_COLUMNS, required={"unit"}, data=data, problems=marks)
    except InvalidInput as exc:
        raise InvalidInput(name_columns(exc.problems, path, ORG_COLUMNS, data)) from None
    problems: list[Problem] = []
    bad_marks = _by_row(marks)
    seen: dict[str, int] = {}
    results: list[OrgResult] = []
    zeros = LeadingZeros(known_unit_codes or ())
    for row in rows:
        before = len(problems)
        if bad_marks:
            problems.extend(bad_marks.get(row.number, ()))
        cell = _Collector(source, row, problems)
        code = row.values["unit"].strip()
        if not code:
            cell.fail("unit", "thiếu mã tổ chức đảng")
        elif code in seen:
            cell.fail("unit", f"tổ chức đảng {code} bị lặp (đã có ở dòng {seen[code]})")
        elif known_unit_codes is not None and code not in known_unit_codes:
            cell.fail("unit", f"mã tổ chức đảng {code} không có trong cây tổ chức{zeros.hint(code)}")
        if code and code not in seen:
            seen[code] = row.number
        self_level = cell.level("self_level")
        level = cell.level("level")
        disciplined = cell.yes_no("disciplined")
        if (
            level is None and self_level is None and row.number not in bad_marks
            and not row.values["level"].strip() and not row.values["self_level"].strip()
        ):
            cell.fail("level", "chưa có mức xếp loại (xếp loại hoặc tự xếp loại)")
        if len(problems) > before:
            continue
        results.append(OrgResult(code, level, decided_by, bool(disciplined), self_level))
    if problems or marks:
        read = {row.number for row in rows}
        problems += [p for p in marks if p.row not in read]
        raise InvalidInput(name_columns(_in_row_order(problems), path, ORG_COLUMNS, data))
    return results
