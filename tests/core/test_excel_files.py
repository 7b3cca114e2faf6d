"""Files as Vietnamese offices prepare them in Excel (and as programs write them): every row read
whatever the used-range tag says, the sheet the user sees, formulas without a computed value,
codes with leading zeros, sums that Excel shows rounded, and a CSV with a quote never closed."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest

from kiemdiem.consolidation import MemberRecord, UnitNode
from kiemdiem.errors import InvalidInput
from kiemdiem.org import read_units
from kiemdiem.results import MEMBER_COLUMNS, parse_member_results, parse_org_results, problem_text
from kiemdiem.rules import build_context, get_rule_set
from kiemdiem.tabular import UNCACHED_FORMULA, open_rows, read_columns, read_table

COLUMNS = {"member_id": ["Mã đảng viên"], "full_name": ["Họ và tên"], "level": ["Xếp loại"]}


def xlsx_bytes(book: openpyxl.Workbook) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rewrite_sheet(data: bytes, change, sheet: str = "xl/worksheets/sheet1.xml") -> bytes:
    """The workbook with one sheet's XML passed through ``change`` (text → text)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == sheet:
                content = change(content.decode()).encode()
            target.writestr(item, content)
    return out.getvalue()


def with_dimension(data: bytes, ref: str) -> bytes:
    """The workbook with its sheet's used-range tag rewritten to ``ref`` (what some programs write)."""
    return rewrite_sheet(data, lambda xml: re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="{ref}"/>', xml))


def members_workbook(third_header: str, third_value: str, count: int = 148) -> openpyxl.Workbook:
    """A sheet of ``count`` members: code, name and one more column."""
    book = openpyxl.Workbook()
    book.active.append(["Mã đảng viên", "Họ và tên", third_header])
    for n in range(1, count + 1):
        book.active.append([f"DV{n:04d}", f"Đảng viên {n}", third_value])
    return book


def read_all_ways(path: Path, data: bytes, columns=COLUMNS, required=frozenset({"member_id"})):
    """The rows as read_table, read_columns and the streaming open_rows read them: they must agree."""
    table = [(r.number, tuple(r.values.values())) for r in read_table(path, columns, set(required), data=data)]
    numbers, cells = read_columns(path, columns, set(required), data=data)
    assert list(zip(numbers, zip(*cells))) == table
    with open_rows(path, columns, set(required), data=data) as rows:
        assert list(rows) == table
    return table


# --------------------------------------------------------------------------- 1. the used-range tag


def test_every_row_is_read_whatever_the_dimension_tag_says(tmp_path):
    data = xlsx_bytes(members_workbook("Xếp loại", "HTTNV"))
    wrong = with_dimension(data, "A1:H50")
    assert b'ref="A1:H50"' in zipfile.ZipFile(io.BytesIO(wrong)).read("xl/worksheets/sheet1.xml")
    path = tmp_path / "ds.xlsx"
    rows = read_all_ways(path, wrong)
    assert len(rows) == 148 and rows[-1] == (149, ("DV0148", "Đảng viên 148", "HTTNV"))
    # Also when the tag names fewer columns than the table has.
    narrow = with_dimension(data, "A1:B3")
    assert read_all_ways(path, narrow) == rows


# --------------------------------------------------------------------------- 2. which sheet


def _year_book(active: int, *, first_has_table: bool = True, second_has_table: bool = True, bad_row: bool = False) -> bytes:
    book = openpyxl.Workbook()
    old = book.active
    old.title = "Năm 2022"
    new = book.create_sheet("Năm 2023")
    for sheet, level, has_table in ((old, "HTNV", first_has_table), (new, "HTXSNV", second_has_table)):
        if has_table:
            sheet.append(["Mã đảng viên", "Họ và tên", "Xếp loại"])
            sheet.append(["DV001", "Nguyễn Văn A", level])
            if bad_row and sheet is new:
                sheet.append(["DV002", "Trần Thị B", "giỏi"])
        else:
            sheet.append(["HƯỚNG DẪN ĐIỀN BIỂU MẪU"])
            sheet.append(["Ghi mã đảng viên như trong danh sách đảng viên của chi bộ."])
    book.active = active
    return xlsx_bytes(book)


def test_the_active_sheet_is_read_when_no_other_sheet_has_a_table(tmp_path):
    rows = read_all_ways(tmp_path / "ds.xlsx", _year_book(active=1, first_has_table=False))
    assert rows == [(2, ("DV001", "Nguyễn Văn A", "HTXSNV"))]


def test_a_sheet_without_a_table_gives_way_to_the_first_visible_one_with_a_table(tmp_path):
    rows = read_all_ways(tmp_path / "ds.xlsx", _year_book(active=1, second_has_table=False))
    assert rows == [(2, ("DV001", "Nguyễn Văn A", "HTNV"))]


@pytest.mark.parametrize("active", [0, 1])
def test_two_sheets_with_a_table_are_refused_naming_both(tmp_path, active):
    for read in (
        lambda p, d: read_table(p, COLUMNS, {"member_id"}, data=d),
        lambda p, d: read_columns(p, COLUMNS, {"member_id"}, data=d),
        lambda p, d: list(open_rows(p, COLUMNS, {"member_id"}, data=d).__enter__()),
    ):
        with pytest.raises(InvalidInput) as info:
            read(tmp_path / "ds.xlsx", _year_book(active=active))
        [problem] = info.value.problems
        assert "'Năm 2022'" in problem.reason and "'Năm 2023'" in problem.reason
        assert "giữ lại một trang tính" in problem.reason


def test_errors_of_a_workbook_with_several_sheets_name_the_sheet_read(tmp_path):
    data = _year_book(active=1, first_has_table=False, bad_row=True)
    with pytest.raises(InvalidInput) as info:
        parse_member_results(tmp_path / "ds.xlsx", "CB1", data=data)
    [problem] = info.value.problems
    assert "trang tính 'Năm 2023'" in str(problem) and problem.row == 3
    assert problem_text(problem, with_file=True).startswith("ds.xlsx (trang tính 'Năm 2023'), dòng 3, cột 'Xếp loại': ")
    # A workbook of one visible sheet is named as before.
    single = openpyxl.Workbook()
    single.active.append(["Mã đảng viên", "Xếp loại"])
    single.active.append(["DV001", "giỏi"])
    with pytest.raises(InvalidInput) as info:
        parse_member_results(tmp_path / "ds.xlsx", "CB1", data=xlsx_bytes(single))
    assert info.value.problems[0].source == str(tmp_path / "ds.xlsx")


# --------------------------------------------------------------------------- 3. formulas


def _formula_book() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["STT", "Mã đảng viên", "Quyết định xếp loại", "Kỷ luật", "Ghi chú"])
    sheet.append(["=ROW()-1", "DV001", "KHTNV", '=IF(1=1,"x","")', "vi phạm"])
    sheet.append(["=ROW()-1", "DV002", "HTTNV", '=IF(1=2,"x","")', ""])
    return xlsx_bytes(book)


def test_a_formula_without_a_computed_value_is_refused_naming_row_and_column(tmp_path):
    with pytest.raises(InvalidInput) as info:
        parse_member_results(tmp_path / "ds.xlsx", "CB1", data=_formula_book())
    problems = info.value.problems
    # The STT column's formulas are not data: only the discipline cells.
    assert [(p.row, p.column, p.reason) for p in problems] == [(2, "Kỷ luật", UNCACHED_FORMULA), (3, "Kỷ luật", UNCACHED_FORMULA)]
    assert UNCACHED_FORMULA == "ô có công thức nhưng chưa có giá trị đã tính; hãy mở tệp bằng Excel rồi lưu lại"
    with pytest.raises(InvalidInput):  # the streaming reader too
        with open_rows(tmp_path / "ds.xlsx", MEMBER_COLUMNS, {"member_id"}, data=_formula_book()) as rows:
            list(rows)


def test_a_formula_with_its_computed_value_reads_the_value(tmp_path):
    def cache(xml: str) -> str:  # as Excel saves it: the value computed, "" as an empty string
        xml = xml.replace('<c r="D2"><f>IF(1=1,"x","")</f><v></v></c>', '<c r="D2" t="str"><f>IF(1=1,"x","")</f><v>x</v></c>')
        xml = xml.replace('<c r="D3"><f>IF(1=2,"x","")</f><v></v></c>', '<c r="D3" t="str"><f>IF(1=2,"x","")</f><v></v></c>')
        return re.sub(r'<c r="(A\d)"><f>ROW\(\)-1</f><v></v></c>', r'<c r="\1"><f>ROW()-1</f><v>1</v></c>', xml)

    data = rewrite_sheet(_formula_book(), cache)
    assert data != _formula_book()
    results = parse_member_results(tmp_path / "ds.xlsx", "CB1", data=data)
    assert [(r.member_id, r.disciplined) for r in results] == [("DV001", True), ("DV002", False)]


# --------------------------------------------------------------------------- 5. leading zeros


def test_codes_typed_as_numbers_keep_the_zeros_excel_shows(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mã đảng viên", "Họ và tên", "Xếp loại"])
    sheet.append([100, "Nguyễn Văn A", "HTTNV"])
    sheet.append([123, "Trần Thị B", "HTTNV"])
    sheet.append([7, "Lê Văn C", "HTNV"])
    sheet["A2"].number_format = "0000000"
    sheet["A3"].number_format = "0000000"  # A4 keeps "General": shown as 7
    rows = read_all_ways(tmp_path / "ds.xlsx", xlsx_bytes(book))
    assert [r[1][0] for r in rows] == ["0000100", "0000123", "7"]


def test_a_unit_code_formatted_00_keeps_its_zero(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mã đơn vị", "Xếp loại"])
    sheet.append([1, "HTTNV"])
    sheet["A2"].number_format = "00"
    [result] = parse_org_results(tmp_path / "kq.xlsx", "DB", {"01"}, data=xlsx_bytes(book))
    assert result.unit_code == "01"


def test_a_code_that_lost_its_zeros_is_told_the_code_it_may_be(tmp_path):
    path = tmp_path / "ds.csv"
    path.write_text("Mã đảng viên,Xếp loại\n123,HTTNV\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        parse_member_results(path, "CB1", known_member_ids={"0000123", "DV9"})
    [problem] = info.value.problems
    assert "có phải 0000123? Excel có thể đã bỏ các số 0 đầu" in problem.reason
    path.write_text("Mã đơn vị,Xếp loại\n1,HTTNV\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        parse_org_results(path, "DB", {"01", "02"})
    assert "có phải 01? Excel có thể đã bỏ các số 0 đầu" in info.value.problems[0].reason


# --------------------------------------------------------------------------- 6. numbers as Excel shows them


def test_a_score_excel_shows_as_90_is_90(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mã đảng viên", "Quyết định xếp loại", "Điểm"])
    sheet.append(["DV001", "HTXSNV", 89.99999999999999])  # a sum of sub-scores, shown as 90
    sheet.append(["DV002", "HTTNV", 0.1 + 0.2 + 80])
    results = parse_member_results(tmp_path / "ds.xlsx", "CB1", data=xlsx_bytes(book))
    assert [r.score for r in results] == [90.0, 80.3]
    rs = get_rule_set("366/43")
    units = (UnitNode("CB1", "Chi bộ 1", "chi_bo_co_so", None),)
    members = [MemberRecord(m, m, "CB1", "active", dt.date(2010, 3, 1), ()) for m in ("DV001", "DV002")]
    ctx = build_context(rs, units, members, results, (), dt.date(2025, 12, 1), ())
    assert [f.message for f in rs.check(ctx) if f.rule == "score_band"] == []
    # The score as typed with every digit still contradicts its band (89,99999 is not 90).
    sheet["C2"] = 89.99999
    [first, _] = parse_member_results(tmp_path / "ds.xlsx", "CB1", data=xlsx_bytes(book))
    assert first.score == 89.99999


# --------------------------------------------------------------------------- 7. what nobody sees in a cell


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_invisible_and_full_width_characters_read_the_same_every_way(tmp_path, kind):
    # Rows as pasted from a web page or a chat: a zero-width space, no-break space, soft hyphen, byte
    # order mark, zero-width non-joiner, full-width letters and digits. Every reader reads them clean.
    header = ["Mã đảng viên", "Họ và tên", "Xếp loại"]
    rows = [["DV001\u200b", "Nguyễn\u00a0Văn A", "HTTNV\u00ad"], ["\ufeffＤＶ００２", "Trần Thị B\u200c", "ＨＴＮＶ"]]
    if kind == "csv":
        data = "\n".join(",".join(row) for row in [header, *rows]).encode()
    else:
        book = openpyxl.Workbook()
        for row in [header, *rows]:
            book.active.append(row)
        data = xlsx_bytes(book)
    assert read_all_ways(tmp_path / f"ds.{kind}", data) == [
        (2, ("DV001", "Nguyễn Văn A", "HTTNV")),
        (3, ("DV002", "Trần Thị B", "HTNV")),
    ]


# --------------------------------------------------------------------------- 8. spreadsheets of other formats

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # how every Excel 97-2003 file begins


def _ods() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    return out.getvalue()


def _refusal(read, path: Path) -> str:
    with pytest.raises(InvalidInput) as info:
        read(path)
    (problem,) = info.value.problems
    return problem_text(problem, with_file=True)


READERS = {
    "member list": lambda path: parse_member_results(path, "CB1", None),
    "units file": lambda path: read_units(path),
}


@pytest.mark.parametrize("reader", READERS, ids=list(READERS))
@pytest.mark.parametrize("name, content, told", [
    ("ds.xls", "ole2", "tệp là Excel 97-2003 (.xls), định dạng này không được hỗ trợ"),
    ("ds.ods", "ods", "tệp là bảng tính LibreOffice/OpenOffice (.ods), định dạng này không được hỗ trợ"),
    # Renamed: what it is, not "không mở được tệp Excel: File is not a zip file" or "phải mã hóa UTF-8".
    ("ds.xlsx", "ole2", "tệp là Excel 97-2003 (.xls) dù tên có đuôi '.xlsx'"),
    ("ds.xlsx", "ods", "tệp là bảng tính LibreOffice/OpenOffice (.ods) dù tên có đuôi '.xlsx'"),
    ("ds.csv", "ole2", "tệp là Excel 97-2003 (.xls) dù tên có đuôi '.csv'"),
])
def test_an_old_excel_or_libreoffice_file_is_told_how_to_save_it(tmp_path, reader, name, content, told):
    """Before: ".xls không được hỗ trợ" without what to do, and a renamed one "không mở được"."""
    path = tmp_path / name
    path.write_bytes(_OLE2 if content == "ole2" else _ods())
    text = _refusal(READERS[reader], path)
    assert text.startswith(f"{name}: {told}"), text
    assert ("Excel 2007-365 (.xlsx)" if content == "ods" else '"Excel Workbook (*.xlsx)" hoặc "CSV UTF-8 (Comma delimited)"') in text


def test_a_workbook_named_csv_is_told_it_is_a_workbook(tmp_path):
    book = openpyxl.Workbook()
    book.active.append(["Mã đảng viên", "Xếp loại"])
    path = tmp_path / "ds.csv"
    path.write_bytes(xlsx_bytes(book))
    assert _refusal(READERS["member list"], path).startswith("ds.csv: tệp là bảng tính Excel (.xlsx) dù tên có đuôi '.csv': đổi tên tệp thành .xlsx")


# --------------------------------------------------------------------------- 9. hidden rows and columns


def test_hidden_rows_and_columns_are_read(tmp_path):
    """Pins what is read (it passes on the code before the two-row headers too): a hidden row or
    column is the list's as much as a shown one. Dropping it would lose a member's result without a
    word; reading it, any error names its row and column so the office can show it and fix it."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mã đảng viên", "Họ và tên", "Chi bộ đề xuất", "Kỷ luật"])
    sheet.append(["DV001", "An", "HTTNV", None])
    sheet.append(["DV002", "Bình", "HTNV", "x"])
    sheet.row_dimensions[3].hidden = True
    sheet.column_dimensions["D"].hidden = True
    path = tmp_path / "ds.xlsx"
    path.write_bytes(xlsx_bytes(book))
    read = {r.member_id: r for r in parse_member_results(path, "CB1", None)}
    assert (read["DV002"].proposed_level, read["DV002"].disciplined) == ("HTNV", True)
