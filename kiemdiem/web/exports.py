"""Progress and consolidation of a subtree as tables, written as CSV (UTF-8 with BOM, for Excel) or XLSX.

Building the rows is separate from writing them: ``progress_table`` and
``consolidation_table`` return (header, rows); ``to_csv`` and ``to_xlsx`` write any table.
Instants stay datetimes in the rows: the XLSX gets date cells (dd/mm/yyyy hh:mm, local time,
sortable and filterable), the CSV their dd/mm/yyyy HH:MM text.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from kiemdiem.calendar import TIMEZONE, format_instant
from kiemdiem.catalogue import UNIT_KINDS
from kiemdiem.rules.base import LEVELS, NOT_EVALUATED_NAMES, NOT_EVALUATED_REASONS
from kiemdiem.status import STATE_NAMES
from kiemdiem.store.models import Snapshot, Unit
from kiemdiem.web.queries import StatusView

QUOTA_NAMES = {"ok": "đạt", "breach": "vượt", "overridden": "vượt (đã được chấp thuận)", "n/a": "không áp dụng"}
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

Table = tuple[list[str], list[list[object]]]


def progress_table(view: StatusView, root_code: str) -> Table:
    header = [
        "Mã đơn vị", "Tên đơn vị", "Loại", "Cấp (0 = đơn vị cao nhất)", "Đơn vị cấp trên", "Mã giai đoạn", "Tên giai đoạn", "Hạn chót",
        "Trạng thái", "Đã nộp", "Phải nộp", "Nộp trễ", "Còn thiếu", "% hoàn thành", "% cây con",
    ]
    phases = {p.id: p for p in view.plan.phases}
    rows: list[list[object]] = []
    for unit in view.subtree_units(root_code):
        for cell in view.cells.get(unit.code, ()):
            phase = phases[cell.phase_id]
            rows.append([
                unit.code, unit.name, UNIT_KINDS.get(unit.kind, unit.kind), unit.depth, unit.parent_code or "",
                phase.id, phase.name, phase.deadline, STATE_NAMES[cell.state],
                cell.present, cell.required, cell.late, cell.missing, cell.percent,
                cell.subtree_percent if cell.subtree_percent is not None else "",
            ])
    return header, rows


def consolidation_table(snapshots: list[tuple[Unit, Snapshot]]) -> Table:
    header = ["Mã đơn vị", "Tên đơn vị", "Loại", "Phiên bản", "Thời điểm tổng hợp", "Tổng số đảng viên", "Được đánh giá"]
    header += [f"Không đánh giá: {NOT_EVALUATED_NAMES[r]}" for r in NOT_EVALUATED_REASONS]  # as the page names them
    header += ["Đã xếp loại", "Chưa có kết quả"]
    for level in LEVELS:
        header += [f"{level} (số)", f"{level} (%)"]
    header += ["HTXSNV/HTTNV (%)", "Hạn mức 20% đảng viên", "HTXSNV tối đa", "Tổ chức đảng", "Tổ chức đã xếp loại"]
    header += [f"Tổ chức {level}" for level in LEVELS]
    header += ["Hạn mức 20% tổ chức", "Số vi phạm (lỗi)", "Số cảnh báo"]
    rows: list[list[object]] = []
    for unit, snap in snapshots:
        p = snap.payload or {}
        members = p.get("members", {})
        orgs = p.get("organizations", {})
        levels = members.get("levels", {})
        org_levels = orgs.get("levels", {})
        findings = p.get("findings", [])
        not_evaluated = members.get("not_evaluated", {})
        row: list[object] = [unit.code, unit.name, UNIT_KINDS.get(unit.kind, unit.kind), snap.version, snap.created_at,
                             members.get("total"), members.get("evaluated")]
        row += [not_evaluated.get(r, 0) for r in NOT_EVALUATED_REASONS]
        row += [members.get("classified"), members.get("missing")]
        for level in LEVELS:
            row += [levels.get(level, {}).get("count"), levels.get(level, {}).get("percent")]
        quota = members.get("quota", {})
        org_quota = orgs.get("quota", {})
        ratio = members.get("htxsnv_over_httnv_percent")
        row += [ratio if ratio is not None else "", QUOTA_NAMES.get(quota.get("status"), quota.get("status") or ""), quota.get("max_allowed"),
                orgs.get("total"), orgs.get("classified")]
        row += [org_levels.get(level, {}).get("count") for level in LEVELS]
        row += [QUOTA_NAMES.get(org_quota.get("status"), org_quota.get("status") or ""),
                sum(1 for f in findings if f.get("severity") == "error" and not f.get("overridden")),
                sum(1 for f in findings if f.get("severity") == "warning")]
        rows.append(row)
    return header, rows


def to_csv(table: Table) -> bytes:
    header, rows = table
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else format_instant(v) if isinstance(v, dt.datetime) else v for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


DATE_TIME_FORMAT = "dd/mm/yyyy hh:mm"
_MAX_WIDTH = 48  # characters; longer texts wrap in the cell rather than widen the sheet


def _local(instant: dt.datetime) -> dt.datetime:
    """Excel has no time zones: the local wall time, as the pages show it."""
    return instant.astimezone(ZoneInfo(TIMEZONE)).replace(tzinfo=None)


def to_xlsx(table: Table, title: str) -> bytes:
    header, rows = table
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31] or "Sheet1")
    sheet.freeze_panes = "A2"
    # Widths from the longest text of each column (header included), within bounds.
    widths = [len(name) for name in header]
    for row in rows:
        for index, value in enumerate(row):
            size = 16 if isinstance(value, dt.datetime) else len(str(value)) if value is not None else 0
            if size > widths[index]:
                widths[index] = size
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = min(max(width, 6), _MAX_WIDTH) + 2
    if header:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(header))}{len(rows) + 1}"
    bold = Font(bold=True)
    cells = []
    for name in header:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = bold
        cells.append(cell)
    sheet.append(cells)
    for row in rows:
        out_row = []
        for value in row:
            if isinstance(value, dt.datetime):
                value = WriteOnlyCell(sheet, value=_local(value))
                value.number_format = DATE_TIME_FORMAT
            out_row.append(value)
        sheet.append(out_row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
