"""Read CSV or XLSX tables with English or Vietnamese headers into plain rows.

Rows keep their spreadsheet row number (the header is row 1) so every error can
name it. Unknown headers are reported, never silently dropped.
"""

from __future__ import annotations

import csv
import functools
import datetime as dt
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import openpyxl

from kiemdiem.errors import InvalidInput, Problem


@dataclass(frozen=True)
class Row:
    number: int
    values: dict[str, str]


@functools.lru_cache(maxsize=4096)
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
    blank = dict.fromkeys(columns, "")
    pairs = list(mapping.items())
    for number, raw in enumerate(raw_rows[1:], start=2):
        values = blank.copy()
        width = len(raw)
        for index, canonical in pairs:
            if index < width:
                values[canonical] = _cell_text(raw[index])
        if any(values.values()):  # blank lines are skipped, not errors
            rows.append(Row(number, values))
    return rows


def _cell_text(cell) -> str:
    if cell.__class__ is str:
        return cell.strip()
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


_DATE_FORMS = (
    (re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$"), (3, 2, 1)),  # dd/mm/yyyy, dd-mm-yyyy, dd.mm.yyyy
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"), (1, 2, 3)),  # ISO yyyy-mm-dd
)


def parse_date(text: str) -> dt.date:
    """Accept dd/mm/yyyy (what offices type) or ISO yyyy-mm-dd; raise ValueError otherwise."""
    text = text.strip()
    for pattern, (y, m, d) in _DATE_FORMS:
        match = pattern.match(text)
        if match:
            try:
                return dt.date(int(match.group(y)), int(match.group(m)), int(match.group(d)))
            except ValueError:
                break  # a real-looking but impossible date, e.g. 31/02/2001
    raise ValueError(f"ngày không hợp lệ '{text}' (dùng dd/mm/yyyy)")


def split_list(text: str) -> list[str]:
    """Semicolon- (or comma-) separated cell into a clean list."""
    parts = text.replace(",", ";").split(";") if text else []
    return [p.strip() for p in parts if p.strip()]
