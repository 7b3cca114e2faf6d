"""Read CSV or XLSX tables with English or Vietnamese headers into plain rows.

Rows keep their spreadsheet row number (the header is row 1, or lower under a form's
title block, and a header of two rows, group titles over sub-headers, is read as one) so every
error can name it. A field a form gives as one column per value with a mark in one (``Marks``)
is read as that value. Unknown headers are reported, never silently
dropped; only a row-number column ("STT") and a table's informational columns (``Columns``)
are passed over, and a form's footer under the table (a total, the signatures) when nothing
of the table follows it. Cells lose what nobody sees in them (``_clean``).
"""

from __future__ import annotations

import calendar
import csv
import dataclasses
import functools
import datetime as dt
import io
import itertools
import operator
import re
import unicodedata
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import openpyxl

from kiemdiem.errors import InvalidInput, Problem


@dataclass(frozen=True)
class Marks:
    """A field a form gives as one column per value, a mark in the one that holds ("x" under
    "Hoàn thành tốt nhiệm vụ"); a group title over the columns names the field."""

    value_of: Callable[[str], str | None]  # a header → the value its mark gives; None: not such a header
    fields: tuple[str, ...]  # the fields a group title may name
    default: str  # what mark columns mean with no group title over them
    what: str  # what the values are, for messages ("mức xếp loại")
    titles: str  # the group titles to write, for messages


# What a mark cell may hold (casefolded): anything else is refused, not guessed.
MARK_TEXTS = frozenset({"x", "✓", "✔", "1"})


class Columns(dict):
    """A table's columns: canonical name → accepted headers, in the order rows are given.

    ``informational``: headers the offices' forms carry that hold nothing the system keeps for
    this table (Quê quán, Dân tộc, Chữ ký…), passed over like "STT". Any other header is refused:
    what it holds would be lost without a word. ``marks``: the table's mark columns (``Marks``).
    ``refused``: headers refused with their own reason (header → why, and how to say it instead)."""

    def __init__(
        self, columns: dict[str, list[str]], informational: Iterable[str] = (),
        marks: Marks | None = None, refused: dict[str, str] | None = None,
    ):
        super().__init__(columns)
        self.informational: tuple[str, ...] = tuple(informational)
        self.marks = marks
        self.refused: dict[str, str] = dict(refused or {})


@dataclass(frozen=True)
class Row:
    number: int
    values: dict[str, str]


@functools.lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Compare headers without case, accents or spacing: 'Mã đơn vị' == 'ma_don_vi'. Compatibility
    forms fold too (NFKD): a full-width 'ＨＴＴＮＶ' typed with an East Asian keyboard is 'httnv'."""
    text = unicodedata.normalize("NFKD", text.strip()).lower().replace("đ", "d")
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def read_table(
    path: Path,
    columns: dict[str, list[str]],
    required: set[str],
    data: bytes | None = None,
    problems: list[Problem] | None = None,
) -> list[Row]:
    """Read ``path`` (or ``data`` named by ``path``) mapping headers onto canonical ``columns``.

    ``columns`` maps each canonical name to its accepted aliases (English and Vietnamese).
    Raises InvalidInput naming the file and header on unknown or missing columns. A row's mark
    columns (``Marks``) that do not read (two marks, a cell that is no mark) leave its field
    empty and are added to ``problems``, raised after the last row when it is None.
    """
    names = list(columns)
    return [Row(number, dict(zip(names, values))) for number, values in iter_rows(path, columns, required, data, problems)]


def iter_rows(
    path: Path,
    columns: dict[str, list[str]],
    required: set[str],
    data: bytes | None = None,
    problems: list[Problem] | None = None,
) -> Iterator[tuple[int, tuple[str, ...]]]:
    """``read_table`` without the dicts: ``(row number, values)`` pairs, one at a time, the
    values a tuple of cell texts in the order of ``columns`` ("" for an absent column or cell).

    The file is opened and its header checked (raising InvalidInput like ``read_table``)
    before this returns; blank lines are skipped."""
    raw_rows, header, mapping, all_text, header_row = _open(path, columns, required, data)
    rows = _rows(raw_rows, header, mapping, list(columns), all_text, header_row + 1, required, problems)
    return _guarded(path, data, rows) if all_text else rows


def read_columns(
    path: Path,
    columns: dict[str, list[str]],
    required: set[str],
    data: bytes | None = None,
) -> tuple[Sequence[int], list[Sequence[str]]]:
    """``iter_rows`` transposed: (row numbers, one sequence of cell texts per canonical column).

    For bulk imports: a well-formed CSV goes into one flat list of cells that is stripped
    and sliced into columns in C, with no tuple or Python code per cell. Same header
    checks, cell texts and blank-line skipping as ``read_table``.
    """
    raw_rows, header, mapping, all_text, header_row = _open(path, columns, required, data)
    return _csv_guard(path, data, lambda: _read_columns(raw_rows, header, mapping, all_text, header_row, columns, required))


def _read_columns(raw_rows, header, mapping, all_text, header_row, columns, required):
    first = header_row + 1
    names = list(columns)
    width = len(header)
    if all_text and width and len(mapping) == width == len(names):
        # Every column present, every header cell mapped: a row of the header's width is
        # cell for cell, so the rows can be laid end to end.
        flat: list[str] = []
        extend = flat.extend
        for row in raw_rows:
            if len(row) != width:  # a ragged row: go row by row from the start
                raw_rows = itertools.chain(_chunks(flat, width), [row], raw_rows)
                break
            extend(row)
        else:
            cells = list(map(str.strip, flat))
            del flat
            if _is_column_numbers(cells[:width], header):
                del cells[:width]
                first += 1
            position = {canonical: index for index, canonical in mapping.items()}
            count = len(cells) // width
            by_name = [cells[position[name]::width] for name in names]
            # No blank line when some column is filled on every row (e.g. a required id), and no
            # signature block or total under the table when its last row is certainly a row.
            is_row = _row_test(names, required)
            if not count or (
                any(all(column) for column in by_name)
                and (is_row is None or (is_row(tuple(column[-1] for column in by_name)) and not _is_total_line(cells[-width:])))
            ):
                return range(first, count + first), by_name
            raw_rows = _chunks(cells, width)
    numbers: list[int] = []
    values: list[tuple[str, ...]] = []
    for number, row in _rows(raw_rows, header, mapping, names, all_text, first, required):
        numbers.append(number)
        values.append(row)
    return numbers, columns_of(values, len(names))


@contextmanager
def open_rows(
    path: Path,
    columns: dict[str, list[str]],
    required: set[str],
    data: bytes | None = None,
) -> Iterator[Iterator[tuple[int, tuple[str, ...]]]]:
    """``iter_rows`` that streams: the file is read as the rows are taken, never whole.

    For files too large to hold (a nation's member list is ~560 MB): CSV is decoded and
    parsed a buffer at a time, XLSX sheets are read row by row. Same header checks, row
    numbers, cell texts and blank-line skipping as ``iter_rows``. A cell that is not UTF-8
    or a line the CSV parser refuses raises InvalidInput naming the row. Use as
    ``with open_rows(...) as rows: for number, values in rows: ...``.
    """
    source = str(path)
    with ExitStack() as stack:
        raw_rows, all_text, picked = _stream_raw_rows(path, data, stack, _header_lookup(columns))
        merged = None if picked is None else functools.partial(_merged_ranges, picked)
        header, mapping, header_row, after = _csv_guard(path, data, lambda: _header(source, raw_rows, columns, required, merged))
        if picked is not None:
            _check_formulas(source, picked, header_row, mapping)
        raw_rows = itertools.chain(after, raw_rows)
        yield _guarded(path, data, _rows(raw_rows, header, mapping, list(columns), all_text, header_row + 1, required))


def _guarded(path: Path, data: bytes | None, rows: Iterator[tuple[int, tuple[str, ...]]]) -> Iterator[tuple[int, tuple[str, ...]]]:
    """``rows``, a cell that is not UTF-8 or a line the CSV parser refuses raising InvalidInput that names the line."""
    last = 0
    try:
        for last, values in rows:
            yield last, values
    except UnicodeDecodeError:
        raise InvalidInput(Problem(str(path), NOT_UTF8, row=last + 1)) from None
    except csv.Error as exc:
        raise InvalidInput(csv_problem(path, data, exc)) from None


UNCLOSED_QUOTE = 'dấu ngoặc kép (") mở mà không đóng'


def csv_problem(path: Path, data: bytes | None, exc: csv.Error) -> Problem:
    """What the CSV parser refused, for an office, at the line where the record it could not
    finish starts (the file is parsed again to find it: only on the way to an error). A field
    over the parser's limit is a double quote opened and never closed: the rest of the file ran
    into one cell."""
    text = str(exc)
    line = _failed_record_line(path, data)
    if "field larger than field limit" in text or "unexpected end of data" in text:
        reason = (
            f"{UNCLOSED_QUOTE}: ô mở dấu ngoặc kép ở dòng {line} (hoặc ngay sau đó) không có dấu đóng, nên phần còn lại "
            "của tệp bị đọc thành một ô; hãy đóng dấu ngoặc kép hoặc bỏ nó đi"
        ) if line else f"{UNCLOSED_QUOTE}: phần còn lại của tệp bị đọc thành một ô"
    else:
        reason = f"dòng CSV không đọc được: {text}"
    return Problem(str(path), reason, row=line)


def _failed_record_line(path: Path, data: bytes | None) -> int | None:
    """The file line where the first record the CSV parser refuses starts: the line after the
    last record it read whole."""
    try:
        with ExitStack() as stack:
            reader, _all_text, _picked = _stream_raw_rows(path, data, stack)
            good = 0
            try:
                for _row in reader:
                    good = reader.line_num
            except csv.Error:
                return good + 1
    except (InvalidInput, UnicodeDecodeError, OSError):
        return None
    return None


def _csv_guard(path: Path, data: bytes | None, read):
    """``read()``, a csv.Error it raises (a line the CSV parser refuses) as InvalidInput naming the line."""
    try:
        return read()
    except csv.Error as exc:
        raise InvalidInput(csv_problem(path, data, exc)) from None


# Excel's "Unicode Text" (.txt, tab-separated) is UTF-16 with a byte order mark.
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Excel's plain "CSV (Comma delimited)" writes the Windows code page: Vietnamese letters outside it
# are already lost as "?", so such a file is refused with the way to save it whole.
NOT_UTF8 = (
    "tệp CSV phải mã hóa UTF-8: trong Excel chọn Lưu thành (Save As) → \"CSV UTF-8 (Comma delimited)\", "
    "hoặc gửi tệp .xlsx"
)


# Old Excel's (97-2003, .xls) compound file and a zip (.xlsx, .ods): told by their first bytes.
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
SAVE_AS_XLSX = (
    "mở tệp rồi chọn Lưu thành (Save As) → \"Excel Workbook (*.xlsx)\" hoặc \"CSV UTF-8 (Comma delimited)\" và gửi tệp đó"
)
_SAVE_AS_FROM_ODS = (
    "mở tệp bằng LibreOffice rồi chọn Lưu thành (Save As) → kiểu \"Excel 2007-365 (.xlsx)\" "
    "(hoặc \"Text CSV\" với bộ ký tự Unicode (UTF-8)) và gửi tệp đó"
)


def _is_ods(binary) -> bool:
    import zipfile  # noqa: PLC0415 - only for a file that did not open

    try:
        binary.seek(0)
        with zipfile.ZipFile(binary) as archive:
            return archive.read("mimetype").startswith(b"application/vnd.oasis.opendocument.spreadsheet")
    except (zipfile.BadZipFile, KeyError, OSError):
        return False


def _format_problem(source: str, suffix: str, binary) -> Problem | None:
    """A spreadsheet this reader does not take, by its name or (a file renamed) its first bytes:
    the office is told how to save it, not "không mở được" or "phải mã hóa UTF-8"."""
    binary.seek(0)
    head = binary.read(8)
    binary.seek(0)
    named = f" dù tên có đuôi '{suffix}'" if suffix not in (".xls", ".ods") else ""
    if suffix == ".xls" or head == _OLE2_MAGIC:
        return Problem(source, f"tệp là Excel 97-2003 (.xls){named}, định dạng này không được hỗ trợ: {SAVE_AS_XLSX}")
    if suffix in (".ods", ".fods") or head.startswith(_ZIP_MAGIC) and _is_ods(binary):
        return Problem(source, f"tệp là bảng tính LibreOffice/OpenOffice (.ods){named}, định dạng này không được hỗ trợ: {_SAVE_AS_FROM_ODS}")
    if suffix in (".csv", ".txt", "") and head.startswith(_ZIP_MAGIC):
        return Problem(source, f"tệp là bảng tính Excel (.xlsx) dù tên có đuôi '{suffix or '(không có)'}': đổi tên tệp thành .xlsx, hoặc {SAVE_AS_XLSX}")
    return None


# Other spreadsheets' own formats (Excel binary and templates, WPS, Numbers): they can be saved as .xlsx.
_OTHER_SHEETS = (".xlsb", ".xlt", ".xltx", ".xltm", ".et", ".ett", ".numbers")


def _unsupported(source: str, suffix: str, binary) -> InvalidInput:
    problem = _format_problem(source, suffix, binary)
    advice = f": {SAVE_AS_XLSX}" if suffix in _OTHER_SHEETS else ""
    return InvalidInput(problem or Problem(source, f"định dạng '{suffix}' không được hỗ trợ (chỉ nhận .csv hoặc .xlsx){advice}"))


def _stream_raw_rows(
    path: Path, data: bytes | None, stack: ExitStack, lookup: dict[str, str] | None = None,
) -> tuple[Iterator[list], bool, _Sheet | None]:
    """``_raw_rows`` from an open file: the rows (header first), whether every cell is a ``str``,
    and the sheet read (None for a CSV)."""
    source = str(path)
    suffix = path.suffix.lower()
    try:
        binary = io.BytesIO(data) if data is not None else stack.enter_context(open(path, "rb"))
    except OSError as exc:
        raise InvalidInput(Problem(source, f"không đọc được tệp: {exc.strerror or exc}")) from exc
    if suffix not in (".xlsx", ".xlsm", ".csv", ".txt", ""):
        raise _unsupported(source, suffix, binary)
    if suffix in (".xlsx", ".xlsm"):
        rows, picked = _xlsx_rows(source, binary, lookup, stack)
        return rows, False, picked
    wrong = _format_problem(source, suffix, binary)
    if wrong is not None:
        raise InvalidInput(wrong)
    encoding = "utf-16" if binary.read(2) in _UTF16_BOMS else "utf-8-sig"
    binary.seek(0)
    text = stack.enter_context(io.TextIOWrapper(binary, encoding=encoding, newline=""))
    try:
        sample = text.read(4096)
        text.seek(0)
    except UnicodeDecodeError:
        raise InvalidInput(Problem(source, NOT_UTF8)) from None
    return csv.reader(map(_clean, text), _dialect(sample)), True, None


def _dialect(sample: str):
    """The file's delimiter: as the sniffer reads it, else the most frequent of ``, ; tab`` (the
    sniffer gives up on Excel's own semicolon files when a quoted cell holds a ";")."""
    try:
        found = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        delimiter = max(",;\t", key=lambda d: (sample.count(d), d == ","))
        found = type("Found", (csv.excel,), {"delimiter": delimiter})
    # Strict: a double quote never closed is an error at its line, not every row after it read,
    # without a word, into one cell.
    return type("Strict", (found,), {"strict": True})


def _chunks(flat: list, width: int) -> Iterator[list]:
    return (flat[start:start + width] for start in range(0, len(flat), width))


def columns_of(rows: Sequence[Sequence], width: int) -> list[tuple]:
    """Transpose rows into ``width`` column tuples. Unlike ``zip(*rows)`` this makes no
    iterator per row: 90,000 short-lived tracked objects would wake the garbage collector."""
    return [tuple(map(operator.itemgetter(index), rows)) for index in range(width)]


def name_columns(problems: Sequence[Problem], path: Path, columns: dict[str, list[str]], data: bytes | None = None) -> list[Problem]:
    """``problems`` of the table ``path`` with their ``column`` set: the header cell of their field as the
    file spells it, or (a column the file lacks) the field's usual Vietnamese header. Problems of other
    files, or without a canonical field, are left as they are. A workbook showing more than one sheet
    names the sheet read in each of its problems' source ("ds.xlsx (trang tính 'Năm 2023')"): its row
    numbers are that sheet's. Only called on the way to an error, so it reads the header row again
    rather than carry it through every reader."""
    source = str(path)
    xlsx = path.suffix.lower() in (".xlsx", ".xlsm")
    if not any(p.source == source and (xlsx or (p.field in columns and p.column is None)) for p in problems):
        return list(problems)
    spelt: dict[str, str] = {}
    lookup = _header_lookup(columns)
    label = None
    try:
        with ExitStack() as stack:
            raw_rows, _, picked = _stream_raw_rows(path, data, stack, lookup)
            label = picked.label if picked is not None else None
            merged = None if picked is None else functools.partial(_merged_ranges, picked)
            found = _locate_header(source, raw_rows, lookup, set(), merged)
            header = found[0] if found else []
            marks = found[1].marks if found else {}
    except (InvalidInput, UnicodeDecodeError, csv.Error):
        header, marks = [], {}
    for cell in header:
        name = _clean(str(cell or "")).strip()
        canonical = lookup.get(fold(name)) if name else None
        if canonical.__class__ is str and canonical:
            spelt.setdefault(canonical, name)
    for field, group in marks.items():
        spelt.setdefault(field, group.title or f"{group.columns[0][1]} … {group.columns[-1][1]}")
    named = [
        dataclasses.replace(p, column=spelt.get(p.field) or columns[p.field][0])
        if p.source == source and p.field in columns and p.column is None else p
        for p in problems
    ]
    if label is None:
        return named
    return [dataclasses.replace(p, source=f"{source} ({label})") if p.source == source else p for p in named]


# What ``_header_lookup`` maps an informational header to: passed over, not a column.
_PASSED_OVER = ""


class _Lookup(dict):
    """Folded header → canonical column, with the table's ``Marks`` and refused headers (folded → why)."""

    marks: Marks | None = None
    refused: dict[str, str] = {}


def _header_lookup(columns: dict[str, list[str]]) -> dict[str, str]:
    """Folded header text (the canonical name or any alias) → canonical column; an informational
    header (``Columns``) → ``_PASSED_OVER``, a column's own alias winning."""
    lookup = _Lookup.fromkeys(map(fold, getattr(columns, "informational", ())), _PASSED_OVER)
    lookup.update({fold(alias): canonical for canonical, aliases in columns.items() for alias in [canonical, *aliases]})
    lookup.marks = getattr(columns, "marks", None)
    lookup.refused = {fold(header): why for header, why in getattr(columns, "refused", {}).items()}
    return lookup


def _open(path: Path, columns: dict[str, list[str]], required: set[str], data: bytes | None):
    """The file's remaining rows, its header and how header cells map onto canonical columns."""
    source = str(path)
    raw_rows, all_text, picked = _raw_rows(path, data, _header_lookup(columns))
    try:
        raw_rows = iter(raw_rows)
        merged = None if picked is None else functools.partial(_merged_ranges, picked)
        header, mapping, header_row, after = _csv_guard(path, data, lambda: _header(source, raw_rows, columns, required, merged))
        if picked is not None:
            _check_formulas(source, picked, header_row, mapping)
    finally:
        if picked is not None:
            picked.book.close()
    return itertools.chain(after, raw_rows), header, mapping, all_text, header_row


def _check_formulas(source: str, picked: _Sheet, header_row: int, mapping: dict[int, str]) -> None:
    groups = getattr(mapping, "marks", {}).items()
    marked = {index: field for field, group in groups for index, _name, _value in group.columns}
    spelt = {index: name for _field, group in groups for index, name, _value in group.columns}  # its own column, not the group
    problems = _uncached_formulas(source, picked, header_row, {**mapping, **marked} if marked else mapping, spelt)
    if problems:
        raise InvalidInput(problems)


# Office forms put a title block above the table ("ĐẢNG BỘ …", "DANH SÁCH …", a blank line):
# the header is looked for in this many first rows.
HEADER_SEARCH_ROWS = 15


def _header(
    source: str, raw_rows: Iterator[list], columns: dict[str, list[str]], required: set[str], merged=None,
) -> tuple[list, dict[int, str], int, list[list]]:
    """Take the rows up to and including the header off ``raw_rows``; map its cells onto
    canonical columns or raise. Returns (header, mapping, the header's row number, the rows
    below it that the search read: they come before what is left of ``raw_rows``)."""
    found = _locate_header(source, raw_rows, _header_lookup(columns), required, merged)
    if found is None:
        raise InvalidInput(Problem(source, "tệp rỗng, không có dòng tiêu đề", row=1))
    header, mapping, problems, number, after = found
    if problems:
        raise InvalidInput(_explain_unknown(problems, columns))
    return header, mapping, number, after


MISSING_COLUMN = "thiếu cột bắt buộc"
UNKNOWN_COLUMN = "cột không được hỗ trợ"


def _explain_unknown(problems: list[Problem], columns: dict[str, list[str]]) -> list[Problem]:
    """The first unknown column's problem says which headers the table takes (each column's usual
    one), once: a file with three odd columns is not told the list three times."""
    for index, problem in enumerate(problems):
        if problem.reason.startswith(UNKNOWN_COLUMN):
            usual = ", ".join(aliases[0] if aliases else name for name, aliases in columns.items())
            ignored = getattr(columns, "informational", ())[:3]
            passed = f"; các cột thông tin như {', '.join(ignored)}… được bỏ qua" if ignored else ""
            reason = (
                f"{problem.reason} (hệ thống không lưu cột này, dữ liệu trong đó sẽ bị mất). Bảng này nhận các cột: {usual}{passed}. "
                "Hãy đổi tên cột theo đúng tên trên, hoặc xóa cột nếu chỉ để tham khảo"
            )
            return [*problems[:index], dataclasses.replace(problem, reason=reason), *problems[index + 1:]]
    return problems


# Every table's row-number column, whatever the table (not a column of any).
_ROW_NUMBER_HEADERS = frozenset(fold(name) for name in ("STT", "TT", "Số TT", "Số thứ tự", "No"))


def _locate_header(source: str, raw_rows: Iterator[list], lookup: dict[str, str], required: set[str], merged=None):
    """(header, mapping, problems, row number, rows after it) of the header row, taken off
    ``raw_rows`` with the rows above it; None for a file with no text in its first rows. The rows
    after it are those the search read below the header (a header found by the fallback is
    followed by rows already read: they are the table's first rows, not to be lost).

    The header is the first of the first ``HEADER_SEARCH_ROWS`` rows that names at least two known
    columns: rows above it are a title block, not data (a title such as "QUYẾT ĐỊNH XẾP LOẠI" names
    one column by chance). When no row does, the first row that maps cleanly is the header; else
    the row that looks most like one (most known columns, then most filled cells, the earliest of
    equals), whose problems are the file's, after one saying which row was taken: a title block
    above an unrecognised header is not what the office should be told about.

    A header of two rows (group titles over sub-headers, ``_two_row_header``) is read as one, its
    number the second's. ``merged()``: the sheet's merged ranges (XLSX), read only for such a header."""
    fallback = likeliest = None
    rank = (-1, -1)
    read: list[list] = []
    for number in range(1, HEADER_SEARCH_ROWS + 1):
        header = next(raw_rows, None)
        if header is None:
            break
        read.append(header)
        mapping, problems = _map_header(source, header, number, lookup, required)
        if len(mapping) + bool(mapping.marks) >= 2:
            if mapping.marks and number > 1:
                # Mark columns with no title in their row: a group title may be the row above's.
                titled = _titles_above(source, read[-2], header, number, lookup, required, mapping, merged)
                if titled is not None:
                    return (*titled, number, [])
            below = next(raw_rows, None)
            if below is None:
                return header, mapping, problems, number, []
            combined = _two_row_header(source, header, below, number, lookup, required, merged)
            if combined is None:
                return header, mapping, problems, number, [below]
            return (*combined, number + 1, [])
        if fallback is None and not problems:
            fallback = (header, mapping, problems, number)
        filled = sum(1 for cell in header if str(cell or "").strip())
        if filled and (len(mapping), filled) > rank:
            rank, likeliest = (len(mapping), filled), (header, mapping, problems, number)
    if fallback is not None or likeliest is None:
        return None if fallback is None else (*fallback, read[fallback[3]:])
    header, mapping, problems, number = likeliest
    taken = Problem(
        source, f"không nhận ra dòng tiêu đề trong {HEADER_SEARCH_ROWS} dòng đầu; dòng {number} giống nhất, "
        "các lỗi dưới đây là của dòng đó (xem tên cột được nhận trong hướng dẫn)", row=number,
    )
    return header, mapping, [taken, *problems], number, read[number:]


def _texts(row: Sequence) -> list[str]:
    return [_clean(str(cell)).strip() if cell is not None else "" for cell in row]


def _group_spans(texts: list[str], number: int, width: int, merged, below: list[str] | None = None) -> dict[int, int]:
    """Column → the column of the group title over it, for the titles of the row ``number`` over
    more than one column: a merged range of the sheet when one starts at the title (XLSX), else the
    title and the blank cells after it (Excel's CSV of a merged cell; a sheet without merges), at
    the end of the row only up to the last with text ``below``: Excel's CSV pads every row to the
    sheet's widest (a title over the whole page), and those cells are no one's."""
    ranges = {}
    for top, left, bottom, right in (merged() if merged is not None else ()):
        if top == number and right > left:
            ranges[left] = right
    titles: dict[int, int] = {}
    for index, text in enumerate(texts):
        if not text:
            continue
        last = ranges.get(index)
        if last is None:
            last = index
            while last + 1 < width and not (texts[last + 1] if last + 1 < len(texts) else ""):
                last += 1
            if below is not None and last + 1 >= width:
                while last > index and not below[last]:
                    last -= 1
        if last > index:
            for column in range(index, last + 1):
                titles[column] = index
    return titles


def _known_header(text: str, lookup: dict[str, str]) -> bool:
    folded = fold(text)
    if folded in lookup or folded in _ROW_NUMBER_HEADERS or folded in getattr(lookup, "refused", {}):
        return True
    marks = getattr(lookup, "marks", None)
    return marks is not None and marks.value_of(text) is not None


def _two_row_header(source: str, header: list, below: list, number: int, lookup, required: set[str], merged):
    """(header, mapping, problems) of the header row and the row below it read as one, or None when
    the row below is not sub-headers: text only under a group title (a cell merged over several
    columns, or followed by blank ones), every text a known header or a mark column's. A sub-header
    takes its column, the group title keeps those of its columns without one; problems name the
    row the text is in. Cheap for a data row: its first cell under a one-column header fails it."""
    top = None
    for index, cell in enumerate(below):
        if cell is None or (cell.__class__ is str and not cell.strip()):
            continue
        if top is None:
            top = _texts(header)
        # Text under a header cell whose next cell has text is under no group: a data row.
        if index < len(top) and top[index] and index + 1 < len(top) and top[index + 1]:
            return None
    if top is None:
        return None
    sub = _texts(below)
    width = max(len(top), len(sub))
    top += [""] * (width - len(top))
    sub += [""] * (width - len(sub))
    titles = _group_spans(top, number, width, merged, sub)
    if not all(index in titles and _known_header(text, lookup) for index, text in enumerate(sub) if text):
        return None
    combined: list[str] = []
    origin: dict[int, int] = {}
    group: dict[int, str] = {}
    for index in range(width):
        if sub[index]:
            combined.append(sub[index])
            origin[index] = number + 1
            group[index] = top[titles[index]]
        else:
            combined.append(top[titles[index]] if index in titles else top[index])
            origin[index] = number
    mapping, problems = _map_header(source, combined, number, lookup, required, titles=group, origin=origin)
    return combined, mapping, problems


def _titles_above(source: str, above: list, header: list, number: int, lookup, required: set[str], mapping, merged):
    """(header, mapping, problems) of a header whose mark columns have no group title, with the
    group titles the row above puts over them (a form whose group row holds nothing else); None
    when no cell of the row above is over a mark column. A title must stand over its first mark
    column (a document title in the first cell is not one)."""
    top = _texts(above)
    columns = sorted(index for group in mapping.marks.values() for index, _name, _value in group.columns)
    marked = set(columns)
    if not any(index < len(top) and top[index] for index in columns):
        return None
    if any(text and index not in marked for index, text in enumerate(top)):
        return None  # a line of the title block ("ĐẢNG BỘ … | CỘNG HÒA …"), not a group row
    width = max(len(top), len(header))
    top += [""] * (width - len(top))
    titles = _group_spans(top, number - 1, width, merged)
    group = {index: top[titles[index]] for index in columns if index in titles and titles[index] in marked}
    group.update({index: top[index] for index in columns if top[index]})  # a title over one column
    if not group:
        return None
    origin = {index: number - 1 for index in group}
    problems_mapping = _map_header(source, header, number, lookup, required, titles=group, title_rows=origin)
    return (header, *problems_mapping)


class _HeaderMap(dict):
    """Column index → canonical name of a header, with its mark columns: field → ``_MarkGroup``."""

    def __init__(self, source: str = ""):
        super().__init__()
        self.source = source
        self.marks: dict[str, _MarkGroup] = {}


@dataclass
class _MarkGroup:
    title: str | None  # the group title as the file writes it; None: no title (``Marks.default``)
    row: int  # the row of the title (or of the columns)
    columns: list[tuple[int, str, str]]  # (index, header as written, value its mark gives)
    what: str = "giá trị"  # ``Marks.what``


def _map_header(
    source: str, header: Sequence, number: int, lookup: dict[str, str], required: set[str],
    titles: dict[int, str] | None = None, origin: dict[int, int] | None = None, title_rows: dict[int, int] | None = None,
) -> tuple[dict[int, str], list[Problem]]:
    """``titles``: column → the group title over it; ``origin``: column → the row its text is in
    (a two-row header), else ``number``; ``title_rows``: column → the row of its title, else ``number - 1``."""
    mapping = _HeaderMap(source)
    problems: list[Problem] = []
    marks, refused = getattr(lookup, "marks", None), getattr(lookup, "refused", {})
    untitled: dict[str, list[str]] = {}
    for index, cell in enumerate(header):
        name = _clean(str(cell or "")).strip()  # a workbook's header cell is read as its data cells are
        if not name:
            continue
        row = number if origin is None else origin.get(index, number)
        folded = fold(name)
        canonical = lookup.get(folded)
        if canonical == _PASSED_OVER or canonical is None and folded in _ROW_NUMBER_HEADERS:
            continue  # the forms' "STT" column (a row's place) or an informational one: not data
        if canonical is None and folded in refused:
            problems.append(Problem(source, f"cột '{name}' không được nhận: {refused[folded]}", row=row, field=name, column=name))
        elif canonical is None and marks is not None and (value := marks.value_of(name)) is not None:
            title = (titles or {}).get(index)
            field = marks.default if title is None else lookup.get(fold(title))
            title_row = (title_rows or {}).get(index, number - 1 if origin is None else number)
            if field not in marks.fields:
                untitled.setdefault((title, title_row), []).append(name)
                continue
            group = mapping.marks.setdefault(field, _MarkGroup(title, row if title is None else title_row, [], marks.what))
            if group.title != title:
                problems.append(Problem(
                    source, f"cột '{name}' dưới '{title or '(không có tiêu đề nhóm)'}' và các cột dưới "
                    f"'{group.title or '(không có tiêu đề nhóm)'}' cùng ghi một {marks.what}: bị lặp; chỉ giữ một nhóm cột",
                    row=row, field=field, column=name,
                ))
            elif any(value == other for _i, _n, other in group.columns):
                problems.append(Problem(source, f"cột '{name}' bị lặp", row=row, field=name, column=name))
            else:
                group.columns.append((index, name, value))
        elif canonical is None:
            problems.append(Problem(source, f"{UNKNOWN_COLUMN}: '{name}'", row=row, field=name))
        elif canonical in mapping.values():
            problems.append(Problem(source, f"cột '{name}' bị lặp", row=row, field=name))
        else:
            mapping[index] = canonical
    for (title, title_row), names in untitled.items():
        problems.append(Problem(
            source, f"các cột {', '.join(repr(n) for n in names)} là {marks.what} nhưng tiêu đề nhóm trên chúng "
            f"'{title}' không cho biết là {marks.what} nào; hãy đặt tiêu đề nhóm là {marks.titles}",
            row=title_row, field=title, column=title,
        ))
    for field, group in mapping.marks.items():
        single = next((index for index, canonical in mapping.items() if canonical == field), None)
        if single is not None:
            spelt = _clean(str(header[single])).strip()
            problems.append(Problem(
                source, f"cột '{spelt}' và các cột đánh dấu {', '.join(repr(n) for _i, n, _v in group.columns)} "
                f"cùng ghi một {marks.what}: bị lặp; chỉ giữ một cách ghi",
                row=number if origin is None else origin.get(single, number), field=field, column=spelt,
            ))
    for name in sorted(required - set(mapping.values()) - set(mapping.marks)):
        problems.append(Problem(source, MISSING_COLUMN, row=number, field=name))
    return mapping, problems


def _rows(
    raw_rows, header: list, mapping: dict[int, str], names: list[str], all_text: bool, first: int = 2, required: Iterable[str] = (),
    problems: list[Problem] | None = None,
) -> Iterator[tuple[int, tuple[str, ...]]]:
    marks = [(names.index(field), field, group) for field, group in getattr(mapping, "marks", {}).items()]
    if marks:  # mark columns: their own reading, problems given after the last row
        yield from _marked_rows(raw_rows, header, mapping, names, all_text, first, required, problems, marks)
        return
    position = {canonical: index for index, canonical in mapping.items()}
    # Source index of each canonical column in output order; -1 when the file lacks it.
    sources = [position.get(name, -1) for name in names]
    width = len(header)
    # Fast path: every column is present and every header cell is mapped, so a row of the
    # header's width maps cell for cell (after a reorder) and needs no per-cell dispatch.
    # CSV cells are always str, so they can be stripped in C; XLSX cells go through _cell_text.
    complete = all_text and -1 not in sources and len(mapping) == width
    if not complete or sources == list(range(width)):
        pick = None  # cells already in canonical order (or the slow path)
    elif len(sources) > 1:
        pick = operator.itemgetter(*sources)
    else:
        pick = lambda raw, _i=sources[0]: (raw[_i],)  # noqa: E731
    pairs = [(src, dst) for dst, src in enumerate(sources) if src >= 0]
    blank = [""] * len(names)
    strip = str.strip
    is_row = _row_test(names, required)
    held: list[tuple[int, tuple[str, ...]]] | None = None  # a possible footer, from its first line on
    for number, raw in enumerate(raw_rows, start=first):
        if number == first and _is_column_numbers(raw, header):
            continue
        if complete and len(raw) == width:
            values = tuple(map(strip, raw if pick is None else pick(raw)))
        else:
            cells = blank.copy()
            size = len(raw)
            for src, dst in pairs:
                if src < size:
                    cells[dst] = _cell_text(raw[src])
            values = tuple(cells)
        if not any(values):  # blank lines are skipped, not errors
            continue
        if is_row is not None and (not is_row(values) or _is_total_line(raw)):
            if held is not None and len(held) < FOOTER_ROWS:
                held.append((number, values))
                continue
            if held is None and _is_footer_line(raw):
                held = [(number, values)]
                continue
        if held is not None:
            yield from held  # a row of the table below it, or too long: not a footer, its lines are rows
            held = None
        yield number, values
    # What is still held is the form's footer (a total, the signatures): not rows.


def _marked_rows(raw_rows, header, mapping, names, all_text, first, required, problems, marks):
    """``_rows`` of a header with mark columns: each group's value (``_mark_value``) is put in a
    cell of its own after the row's, which a plain mapping reads as the field. A row's mark
    problems count when the row is one of the table's (not a column-numbers row or a footer's
    total); they go to ``problems``, or are raised as InvalidInput after the last row when it is
    None: every such row is told at once."""
    found: list[Problem] = [] if problems is None else problems
    width = len(header)
    plain = _HeaderMap()
    plain.update(mapping)
    plain.update({width + extra: field for extra, (_dst, field, _group) in enumerate(marks)})
    pending: dict[int, list[Problem]] = {}
    footer: set[int] = set()
    source = mapping.source

    def extended():
        for number, raw in enumerate(raw_rows, start=first):
            if number == first and _is_column_numbers(raw, header):
                yield raw
                continue
            raw = list(raw) + [""] * max(0, width - len(raw))
            for _dst, field, group in marks:
                raw.append(_mark_value(source, number, raw, field, group, pending))
            if number in pending and (_is_total_line(raw) or _is_footer_line(raw)):
                footer.add(number)
            yield raw

    def flush(upto: int) -> None:
        for number in sorted(n for n in pending if n <= upto):
            found.extend(pending.pop(number))

    for number, values in _rows(extended(), [*header, *[""] * len(marks)], plain, names, all_text, first, required):
        flush(number)  # this row's, and those of a row above left blank by a bad mark
        yield number, values
    # Below the last row: a footer's total counts marks ("Cộng | 3 | 10"), not a problem; any other is.
    for number in footer:
        pending.pop(number, None)
    flush(1 << 62)
    if problems is None and found:
        raise InvalidInput(found)


def _mark_value(source: str, number: int, raw: list, field: str, group: _MarkGroup, pending: dict[int, list[Problem]]) -> str:
    """The value of the one marked column of ``group`` in a row, "" when none is; a cell that is
    no mark, or a second mark, is a problem of the row (and the value "")."""
    chosen: list[tuple[str, str]] = []
    bad = False
    for index, name, value in group.columns:
        text = _cell_text(raw[index])
        if not text:
            continue
        if text.casefold() not in MARK_TEXTS:
            pending.setdefault(number, []).append(Problem(
                source, f"ô ghi '{text}' không phải dấu chọn: đánh dấu x (hoặc ✓, 1) vào đúng một cột {group.what}, "
                "các cột còn lại để trống",
                row=number, field=field, column=name,
            ))
            bad = True
        else:
            chosen.append((name, value))
    if len(chosen) > 1:
        pending.setdefault(number, []).append(Problem(
            source, f"có {len(chosen)} dấu ở các cột {' và '.join(repr(n) for n, _v in chosen)}: mỗi dòng chỉ đánh dấu "
            f"một cột {group.what}",
            row=number, field=field, column=chosen[0][0],
        ))
        bad = True
    return "" if bad or not chosen else chosen[0][1]


# Columns that hold codes, which never have a space: a signer's name that falls in one is not a row.
KEY_COLUMNS = ("member_id", "code", "unit")


def _row_test(names: list[str], required: Iterable[str]):
    """``is_row(values)``: whether a row is certainly one of the table's: every required cell filled
    and the first required code column (``KEY_COLUMNS``) a code. Only a row that is not can start
    or continue a footer. None when nothing is required (no footer is looked for)."""
    required = set(required)
    needed = [index for index, name in enumerate(names) if name in required]
    if not needed:
        return None
    key = next((index for index in needed if names[index] in KEY_COLUMNS), None)

    def is_row(values: tuple[str, ...]) -> bool:
        for index in needed:
            if not values[index]:
                return False
        return key is None or (" " not in values[key] and "\xa0" not in values[key])

    return is_row


# The lines forms put under a table: a total, the place and date, who signs ("T/M CHI ỦY",
# "BÍ THƯ", "Người lập biểu", "(Ký, ghi rõ họ tên)"), "Nơi nhận". Compared folded.
_FOOTER_FIRST = re.compile(
    r"^(?:t_?m_\w|k_?t_\w|(?:pho_)?bi_thu(?:_|$)|nguoi_lap|noi_nhan|xac_nhan)|ky_+(?:va_+)?ghi_ro|ky_ten|ngay_.*_thang_.*_nam"
)
_TOTAL_FIRST = re.compile(r"^(?:tong_cong|tong_so)(?:_|$)|^cong(?:_+\d|$)")
# A footer is the last lines of a file: more than this many lines below its first are a table's rows.
FOOTER_ROWS = 30


def _is_total_line(raw: Sequence) -> bool:
    """Whether a row's first filled cell says it is a total ("Tổng cộng", "Cộng"): never a row of
    the table, even with a count in its code column. Folded only when it could be one (cheap on
    millions of rows)."""
    for cell in raw:
        if cell is not None and (text := str(cell).strip()):
            return text[0] in "TtCc" and _TOTAL_FIRST.match(fold(text)) is not None
    return False


def _is_footer_line(raw: Sequence) -> bool:
    """Whether a row (one that is not certainly the table's, ``_row_test``) opens a form's footer: a
    total row (its first cell "Tổng cộng", "Cộng: …"), or a line of at most three cells that one of
    the footer's words opens."""
    texts = [fold(str(cell)) for cell in raw if cell is not None and str(cell).strip()]
    if texts and _TOTAL_FIRST.match(texts[0]):
        return True
    return len(texts) <= 3 and any(_FOOTER_FIRST.search(text) for text in texts)


_COLUMN_NUMBER = re.compile(r"^\(?(\d{1,2})\)?$")


def _is_column_numbers(row: Sequence, header: Sequence) -> bool:
    """The forms' row under the header that numbers its columns: (1) (2) (3) … or 1 2 3 …, one
    per header cell (at least three), in order. Not data: no data row is its columns' numbers."""
    texts = [str(cell).strip() for cell in row if cell is not None and str(cell).strip()]
    named = sum(1 for cell in header if cell is not None and str(cell).strip())
    matches = [_COLUMN_NUMBER.match(text) for text in texts]
    return (
        len(texts) == named >= 3 and all(matches)
        and [int(m.group(1)) for m in matches] == list(range(1, len(texts) + 1))
    )


# What copying from web pages, Word or chat leaves in cells without showing it: zero-width
# space, non-joiner and joiner, word joiner, a byte order mark inside the text, soft hyphen. A
# code "DV001" with one behind it would be another code, so they are dropped.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
# Spaces that are not the space bar's (no-break, figure, narrow, ideographic): a space.
_ODD_SPACES = "\u00a0\u2007\u202f\u3000"
# Full-width letters, digits and signs (an East Asian input method: "ＤＶ００１") as NFKC reads
# them. Not the CSV's quotes, comma and semicolon: the text is cleaned before it is split.
_FULL_WIDTH = {chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F) if chr(code - 0xFEE0) not in "\"',;"}
_CLEAN = str.maketrans({**dict.fromkeys(_INVISIBLE), **dict.fromkeys(_ODD_SPACES, " "), **_FULL_WIDTH})
_ODD = re.compile(f"[{_INVISIBLE}{_ODD_SPACES}{''.join(_FULL_WIDTH)}]")


def _clean(text: str) -> str:
    """``text`` without invisible characters, odd spaces or full-width forms, and precomposed (NFC):
    Vietnamese typed as combining marks (Unikey's "Unicode tổ hợp", macOS) is the same name as
    the rest of the files'. The usual text has none of the odd ones: one search, and the (slow,
    per character) translation is skipped."""
    if _ODD.search(text) is not None:
        text = text.translate(_CLEAN)  # before NFC: a dropped character may have split a letter from its mark
    return unicodedata.normalize("NFC", text)


def _cell_text(cell) -> str:
    if cell.__class__ is str:
        return _clean(cell).strip()
    if cell is None:
        return ""
    if isinstance(cell, dt.datetime):
        return cell.date().isoformat() if cell.time() == dt.time(0) else cell.isoformat()
    if isinstance(cell, dt.date):
        return cell.isoformat()
    if isinstance(cell, float):
        # As Excel shows it, to 15 significant digits: 89.99999999999999 (a sum's rounding) is 90.
        cell = float(f"{cell:.15g}")
        if cell.is_integer():
            return str(int(cell))
    return str(cell).strip()


def _raw_rows(path: Path, data: bytes | None, lookup: dict[str, str] | None = None):
    """The file's rows (header first), whether every cell is a ``str`` (CSV) and the sheet read
    (None for a CSV)."""
    suffix = path.suffix.lower()
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(Problem(str(path), f"không đọc được tệp: {exc.strerror or exc}")) from exc
    if suffix in (".xlsx", ".xlsm"):
        rows, picked = _xlsx_rows(str(path), io.BytesIO(data), lookup)
        try:
            return list(rows), False, picked  # the caller closes the book (``_open``)
        except BaseException:
            picked.book.close()
            raise
    if suffix in (".csv", ".txt", ""):
        if data[:4] in (_OLE2_MAGIC[:4], _ZIP_MAGIC):  # a workbook renamed .csv
            raise InvalidInput(_format_problem(str(path), suffix, io.BytesIO(data)) or Problem(str(path), NOT_UTF8))
        try:
            text = _clean(data.decode("utf-16" if data[:2] in _UTF16_BOMS else "utf-8-sig"))
        except UnicodeDecodeError:
            raise InvalidInput(Problem(str(path), NOT_UTF8)) from None
        return csv.reader(io.StringIO(text), _dialect(text[:4096])), True, None
    raise _unsupported(str(path), suffix, io.BytesIO(data))


# --------------------------------------------------------------------------- XLSX


@dataclass
class _Sheet:
    """The sheet of a workbook that is read, and how errors name it."""

    book: object
    sheet: object
    label: str | None  # "trang tính 'Năm 2023'" when the workbook shows more than one sheet


def _open_book(source: str, binary):
    try:
        return openpyxl.load_workbook(binary, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken file
        # An old .xls or an .ods renamed .xlsx is told how to save it; a broken file what broke.
        wrong = _format_problem(source, Path(source).suffix.lower(), binary)
        raise InvalidInput(wrong or Problem(source, f"không mở được tệp Excel: {exc}")) from exc


def sheet_label(title: str) -> str:
    return f"trang tính '{title}'"


# A number format of zeros only ("0000000", "00"): Excel shows the number padded to its width.
_ZERO_FORMAT = re.compile(r"^0{2,}$")


def _zero_format_styles(book) -> bool:
    """Whether the workbook defines a zeros-only number format (a code typed as a number)."""
    formats = getattr(book, "_number_formats", None)
    if formats is None:
        return True  # cannot tell cheaply: read the cells' formats
    return any(_ZERO_FORMAT.match(str(f).strip().replace('"', "")) for f in formats)


def _shown_code(cell):
    """A cell's value; an integer under a zeros-only format as the zero-padded text Excel shows
    (0000100 for 100 under "0000000"), so a code keeps its leading zeros."""
    value = cell.value
    if value.__class__ in (int, float) and value == value and float(value).is_integer():
        fmt = cell.number_format
        if fmt and _ZERO_FORMAT.match(fmt.replace('"', "")) and value >= 0:
            return str(int(value)).zfill(len(fmt.replace('"', "")))
    return value


def _sheet_rows(sheet, padded: bool) -> Iterator[list]:
    """Every row of ``sheet``, whatever its used-range tag (``<dimension>``) says: openpyxl's
    read-only mode stops at it, and programs write it wrong."""
    sheet.reset_dimensions()
    if padded:
        return (list(map(_shown_code, row)) for row in sheet.iter_rows())
    return map(list, sheet.iter_rows(values_only=True))


def _pick_sheet(source: str, book, lookup: dict[str, str] | None) -> _Sheet:
    """The sheet to read: the one shown on opening (the active sheet) when it is visible, else the
    first visible one; when it has no recognised table, the first visible sheet that has one. Two
    visible sheets with a recognised table are refused: which year's list is meant is not guessed."""
    visible = [s for s in book.worksheets if s.sheet_state == "visible"] or book.worksheets[:1]
    if not visible:
        raise InvalidInput(Problem(source, "tệp Excel không có trang tính nào"))
    if len(visible) == 1:
        return _Sheet(book, visible[0], None)
    try:
        active = book.active
    except Exception:  # a broken workbook view: no active sheet
        active = None
    order = ([active] if active in visible else []) + [s for s in visible if s is not active]
    if lookup is None:
        return _Sheet(book, order[0], sheet_label(order[0].title))
    padded = _zero_format_styles(book)
    with_table = [s for s in order if _has_table(source, _sheet_rows(s, padded), lookup)]
    if len(with_table) > 1:
        names = " và ".join(f"'{s.title}'" for s in with_table)
        raise InvalidInput(Problem(
            source,
            f"tệp có {len(with_table)} trang tính đều có bảng danh sách: {names}; không biết trang nào là danh sách cần gửi. "
            "Hãy giữ lại một trang tính (xóa hoặc chuyển trang kia sang tệp khác) rồi gửi lại",
        ))
    chosen = with_table[0] if with_table else order[0]
    return _Sheet(book, chosen, sheet_label(chosen.title))


def _has_table(source: str, rows: Iterator[list], lookup: dict[str, str]) -> bool:
    """Whether the first rows of a sheet hold a recognised header: a row naming at least two
    known columns (as ``_locate_header`` recognises one)."""
    for row in itertools.islice(rows, HEADER_SEARCH_ROWS):
        if len(_map_header(source, row, 1, lookup, set())[0]) >= 2:
            return True
    return False


def _xlsx_rows(source: str, binary, lookup: dict[str, str] | None, close: ExitStack | None = None):
    """(rows of the sheet read, the ``_Sheet``): see ``_pick_sheet``."""
    book = _open_book(source, binary)
    if close is not None:
        close.callback(book.close)
    picked = _pick_sheet(source, book, lookup)
    return _sheet_rows(picked.sheet, _zero_format_styles(book)), picked


UNCACHED_FORMULA = "ô có công thức nhưng chưa có giá trị đã tính; hãy mở tệp bằng Excel rồi lưu lại"
# A formula element in a sheet's XML (<f>, <x:f …>), not <formula1> of a validation.
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")
_CELL_REF = re.compile(r"^([A-Z]+)(\d+)$")


def _has_formulas(archive, path: str) -> bool:
    """Whether a sheet's XML holds a formula, read a buffer at a time (no parsing)."""
    tail = b""
    with archive.open(path) as xml:
        while chunk := xml.read(1 << 20):
            if _FORMULA_TAG.search(tail + chunk):
                return True
            tail = chunk[-16:]
    return False


def _uncached_formulas(
    source: str, picked: _Sheet, header_row: int, mapping: dict[int, str], spelt: dict[int, str] | None = None,
) -> list[Problem]:
    """The table's cells that hold a formula without the value it computes (files written by a
    program, never opened in Excel): read with ``data_only`` they are empty, so an "x" a formula
    puts in "Kỷ luật" would silently read as no. Only sheets whose XML has a formula are parsed."""
    archive = getattr(picked.book, "_archive", None)
    path = getattr(picked.sheet, "_worksheet_path", None)
    if archive is None or path is None or not _has_formulas(archive, path):
        return []
    from xml.etree.ElementTree import iterparse  # noqa: PLC0415 - only for sheets with formulas

    problems: list[Problem] = []
    with archive.open(path) as xml:
        for _event, element in iterparse(xml, events=("end",)):
            tag = element.tag.rsplit("}", 1)[-1]
            if tag == "row":
                element.clear()
                continue
            if tag != "c":
                continue
            children = {child.tag.rsplit("}", 1)[-1]: child for child in element}
            if "f" in children:
                value = children.get("v")
                kind = element.get("t", "n")
                cached = "is" in children or (value is not None and (bool(value.text) or kind == "str"))
                match = _CELL_REF.match(element.get("r") or "")
                if not cached and match:
                    column = openpyxl.utils.column_index_from_string(match.group(1)) - 1
                    row = int(match.group(2))
                    if row > header_row and column in mapping:
                        problems.append(Problem(source, UNCACHED_FORMULA, row=row, field=mapping[column], column=(spelt or {}).get(column)))
    return problems


_MERGE_REF = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?mergeCell\s[^>]*?ref=\"([A-Z]+)(\d+):([A-Z]+)(\d+)\"")


def _merged_in(archive, path: str) -> tuple[tuple[int, int, int, int], ...]:
    found = set()
    tail = b""
    with archive.open(path) as xml:
        while chunk := xml.read(1 << 20):
            text = tail + chunk
            found.update(_MERGE_REF.findall(text))
            tail = text[-256:]
    index = openpyxl.utils.column_index_from_string
    return tuple(sorted(
        (int(top), index(left.decode()) - 1, int(bottom), index(right.decode()) - 1)
        for left, top, right, bottom in found
    ))


def _merged_ranges(picked: _Sheet) -> tuple[tuple[int, int, int, int], ...]:
    """The sheet's merged ranges as (first row, first column, last row, last column), rows from 1
    and columns from 0: read-only openpyxl gives a merged cell's value in its first cell only and
    no ranges. Only read for a header that may be two rows (a sheet's XML scanned, not parsed)."""
    archive = getattr(picked.book, "_archive", None)
    path = getattr(picked.sheet, "_worksheet_path", None)
    if archive is None or path is None:
        return ()
    return _merged_in(archive, path)


_DATE_FORMS = (
    (re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$"), (3, 2, 1)),  # dd/mm/yyyy, dd-mm-yyyy, dd.mm.yyyy
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"), (1, 2, 3)),  # ISO yyyy-mm-dd
)


# Excel's serial day numbers (1900 date system, its day 60 the false 29/02/1900): from 10000
# (18/05/1927) to 73050 (31/12/2099).
_EXCEL_EPOCH = dt.date(1899, 12, 30)
EXCEL_SERIALS = (10000, 73050)


def format_decimal(value: float) -> str:
    """A number as the offices write it: decimal comma, no trailing zeros (85,5; 90), and every
    digit a score was given with (89,99999 is not 90: a rounded score could contradict its band)."""
    return f"{float(value):.15g}".replace(".", ",")


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


# A date followed by a time, as a datetime cell or a database export writes it ("01/02/1980 00:00:00").
_WITH_TIME = re.compile(r"^(\S+)[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$")


def parse_date(text: str) -> dt.date:
    """Accept dd/mm/yyyy (what offices type), ISO yyyy-mm-dd or an Excel serial day number (a date
    cell formatted as a number), each possibly with a midnight time; raise ValueError otherwise."""
    text = shown = text.strip()
    if len(text) == 10 and text.isascii():  # the two usual spellings, without a regex
        try:
            if text[4] == "-" and text[7] == "-":
                return dt.date.fromisoformat(text)  # yyyy-mm-dd (ASCII digits only)
            if text[2] in "/.-" and text[5] in "/.-" and text[:2].isdigit() and text[3:5].isdigit() and text[6:].isdigit():
                return dt.date(int(text[6:]), int(text[3:5]), int(text[:2]))  # dd/mm/yyyy
        except ValueError:
            pass  # an impossible date: the patterns below give the message
    timed = _WITH_TIME.match(text) if ":" in text else None
    if timed is not None:
        if any(int(part or 0) for part in timed.group(2, 3, 4)):
            # A time other than midnight may be a date moved by a time zone (17:00 the day before): not guessed.
            raise ValueError(f"ngày không hợp lệ '{shown}': chỉ ghi ngày, không ghi giờ (dùng dd/mm/yyyy)")
        text = timed.group(1)  # a date cell's midnight: the date itself
    if len(text) == 5 and text.isdigit() and EXCEL_SERIALS[0] <= int(text) <= EXCEL_SERIALS[1]:
        # A date cell formatted as a number ("General"): Excel's count of days, shown as such in
        # the sheet and in its CSV. Nothing else in a date column is five digits.
        return _EXCEL_EPOCH + dt.timedelta(days=int(text))
    for number, (pattern, (y, m, d)) in enumerate(_DATE_FORMS):
        match = pattern.match(text)
        if match:
            year, month, day = int(match.group(y)), int(match.group(m)), int(match.group(d))
            try:
                return dt.date(year, month, day)
            except ValueError:
                pass
            # The form is right but the day does not exist (31/02/2001): say why, not the form.
            if year < dt.MINYEAR:
                why = f"không có năm {year}"
            elif not 1 <= month <= 12:
                if number == 0 and _is_date(year, day, month):
                    # 02/13/1980: the month written first, as an English-language Excel shows dates.
                    raise ValueError(
                        f"ngày không hợp lệ '{shown}': không có tháng {month}, có vẻ tháng được ghi trước ngày; "
                        f"dùng dd/mm/yyyy (ngày trước, tháng sau), ví dụ {month:02d}/{day:02d}/{year}"
                    )
                why = f"không có tháng {month}"
            elif day < 1:
                why = f"không có ngày {day}"
            else:
                why = f"tháng {month} năm {year} chỉ có {calendar.monthrange(year, month)[1]} ngày"
            raise ValueError(f"ngày không hợp lệ '{shown}': ngày này không có thật ({why})")
    raise ValueError(f"ngày không hợp lệ '{shown}' (dùng dd/mm/yyyy)")


class LeadingZeros:
    """"có phải 0000123?" for a code not found that is a known code once leading zeros are added or
    removed: Excel drops them from a code typed as a number. The known codes are indexed at the
    first question (only a code not found asks)."""

    def __init__(self, known: Iterable[str]):
        self._known = known
        self._index: dict[str, list[str]] | None = None

    def code(self, text: str) -> str | None:
        if not text.isdigit():
            return None
        if self._index is None:
            self._index = {}
            for code in self._known:
                if code.isdigit():
                    self._index.setdefault(code.lstrip("0"), []).append(code)
        found = [code for code in self._index.get(text.lstrip("0"), ()) if code != text]
        return found[0] if len(found) == 1 else None

    def hint(self, text: str) -> str:
        code = self.code(text)
        return f" (có phải {code}? Excel có thể đã bỏ các số 0 đầu)" if code else ""


def split_list(text: str) -> list[str]:
    """Semicolon- (or comma-) separated cell into a clean list."""
    parts = text.replace(",", ";").split(";") if text else []
    return [p.strip() for p in parts if p.strip()]
