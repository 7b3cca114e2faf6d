"""Read CSV or XLSX tables with English or Vietnamese headers into plain rows.

Rows keep their spreadsheet row number (the header is row 1) so every error can
name it. Unknown headers are reported, never silently dropped.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import openpyxl

from kiemdiem.errors import InvalidInput, Problem


@dataclass(frozen=True)
class Row:
    number: int
    values: dict[str, str]


def fold(text: str) -> str:
    """Compare headers without case, accents or spacing: 'Mã đơn vị' == 'ma_don_vi'."""
    text = unicodedata.normalize("NFD", text.strip().lower()).replace("đ", "d")
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def read_table(
    path: Path,
    columns: dict[str, list[str]],
    required: set[str],
    data: bytes | None = None,
) -> list[Row]:
    """Read ``path`` (or ``data`` named by ``path``) mapping headers onto canonical ``columns``.

    ``columns`` maps each canonical name to its accepted aliases (English and Vietnamese).
    Raises InvalidInput naming the file and header on unknown or missing columns.
    """
    source = str(path)
    raw_rows = _raw_rows(path, data)
    if not raw_rows:
        raise InvalidInput(Problem(source, "tệp rỗng, không có dòng tiêu đề", row=1))
    lookup: dict[str, str] = {}
    for canonical, aliases in columns.items():
        for alias in [canonical, *aliases]:
            lookup[fold(alias)] = canonical
    header = raw_rows[0]
    mapping: dict[int, str] = {}
    problems: list[Problem] = []
    for index, cell in enumerate(header):
        name = str(cell or "").strip()
        if not name:
            continue
        canonical = lookup.get(fold(name))
        if canonical is None:
            problems.append(Problem(source, f"cột không được hỗ trợ: '{name}'", row=1, field=name))
        elif canonical in mapping.values():
            problems.append(Problem(source, f"cột '{name}' bị lặp", row=1, field=name))
        else:
            mapping[index] = canonical
    missing = sorted(required - set(mapping.values()))
    for name in missing:
        problems.append(Problem(source, "thiếu cột bắt buộc", row=1, field=name))
    if problems:
        raise InvalidInput(problems)
    rows: list[Row] = []
    for number, raw in enumerate(raw_rows[1:], start=2):
        if all(_cell_text(c) == "" for c in raw):
            continue
        values = {name: "" for name in columns}
        for index, canonical in mapping.items():
            values[canonical] = _cell_text(raw[index]) if index < len(raw) else ""
        rows.append(Row(number, values))
    return rows


def _cell_text(cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, dt.datetime):
        return cell.date().isoformat() if cell.time() == dt.time(0) else cell.isoformat()
    if isinstance(cell, dt.date):
        return cell.isoformat()
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _raw_rows(path: Path, data: bytes | None) -> list[list]:
    suffix = path.suffix.lower()
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(Problem(str(path), f"không đọc được tệp: {exc.strerror or exc}")) from exc
    if suffix in (".xlsx", ".xlsm"):
        try:
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a broken file
            raise InvalidInput(Problem(str(path), f"không mở được tệp Excel: {exc}")) from exc
        sheet = book.worksheets[0]
        return [list(r) for r in sheet.iter_rows(values_only=True)]
    if suffix in (".csv", ".txt", ""):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput(Problem(str(path), "tệp CSV phải mã hóa UTF-8")) from None
        sample = text[:4096]
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        return [list(r) for r in csv.reader(io.StringIO(text), dialect)]
    raise InvalidInput(Problem(str(path), f"định dạng '{suffix}' không được hỗ trợ (chỉ nhận .csv hoặc .xlsx)"))


def parse_date(text: str) -> dt.date:
    """Accept dd/mm/yyyy (what offices type) or ISO yyyy-mm-dd; raise ValueError otherwise."""
    text = text.strip()
    for fmt in ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"ngày không hợp lệ '{text}' (dùng dd/mm/yyyy)")


def split_list(text: str) -> list[str]:
    """Semicolon- (or comma-) separated cell into a clean list."""
    parts = text.replace(",", ";").split(";") if text else []
    return [p.strip() for p in parts if p.strip()]
