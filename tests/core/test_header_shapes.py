"""Headers as the offices' forms draw them: a group title merged over sub-headers (two header
rows), one column per level with a mark in one, "not evaluated" columns. Each reads as meant, or
is refused naming the file, row and column; nothing is read from the wrong row or column."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from kiemdiem.errors import InvalidInput
from kiemdiem.results import parse_member_results, parse_org_results, problem_text
from kiemdiem.tabular import open_rows, read_columns, read_table
from tests.core.test_excel_files import xlsx_bytes

LEVELS4 = ["Hoàn thành xuất sắc nhiệm vụ", "Hoàn thành tốt nhiệm vụ", "Hoàn thành nhiệm vụ", "Không hoàn thành nhiệm vụ"]


def members(name: str, data: bytes | str, known=None):
    data = data.encode() if isinstance(data, str) else data
    return {r.member_id: r for r in parse_member_results(Path(name), "CB1", known, data=data)}


def refused(parse, name: str, data: bytes | str) -> list[str]:
    data = data.encode() if isinstance(data, str) else data
    with pytest.raises(InvalidInput) as info:
        parse(Path(name), "CB1", None, data=data)
    return [problem_text(p, with_file=True) for p in info.value.problems]


def levels(result) -> tuple:
    return result.self_level, result.proposed_level, result.final_level


def two_row_form() -> openpyxl.Workbook:
    """The usual form: a title block, then "Kết quả xếp loại" merged over three sub-headers, the
    other headers merged down over both header rows."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["ĐẢNG BỘ SỞ CÔNG THƯƠNG"])
    sheet.append(["DANH SÁCH KẾT QUẢ XẾP LOẠI ĐẢNG VIÊN NĂM 2023"])
    sheet.merge_cells("A2:G2")
    sheet.append(["STT", "Họ và tên", "Mã đảng viên", "Kết quả xếp loại", None, None, "Ghi chú"])
    sheet.append([None, None, None, "Tự xếp loại", "Chi bộ đề xuất", "Cấp ủy quyết định", None])
    sheet.merge_cells("D3:F3")
    for column in "ABCG":
        sheet.merge_cells(f"{column}3:{column}4")
    sheet.append([1, "Nguyễn Văn An", "DV001", "HTTNV", "HTTNV", "HTXSNV", None])
    sheet.append([2, "Trần Thị Bình", "DV002", "HTNV", "Hoàn thành tốt nhiệm vụ", "HTTNV", "Chuyển đến"])
    return book


# --------------------------------------------------------------------------- 1. two header rows


def test_a_two_row_header_with_merged_group_title_is_read_as_one_header():
    """Before: the group row was the header and the sub-header row a member without an id."""
    read = members("ds.xlsx", xlsx_bytes(two_row_form()))
    assert levels(read["DV001"]) == ("HTTNV", "HTTNV", "HTXSNV")
    assert levels(read["DV002"]) == ("HTNV", "HTTNV", "HTTNV")
    assert read["DV002"].note == "Chuyển đến" and len(read) == 2


def test_excel_csv_of_a_two_row_header_is_read_as_one_header():
    """Excel's CSV of the form: the group title in its first cell, empty cells after it, and every
    line padded to the sheet's width (the title above spans more columns than the table)."""
    text = (
        "DANH SÁCH KẾT QUẢ XẾP LOẠI,,,,,,,\n"
        "STT,Họ và tên,Mã đảng viên,Kết quả xếp loại,,,Ghi chú,\n"
        ",,,Tự xếp loại,Chi bộ đề xuất,Cấp ủy quyết định,,\n"
        "1,Nguyễn Văn An,DV001,HTTNV,HTTNV,HTXSNV,,\n"
    )
    assert levels(members("ds.csv", text)["DV001"]) == ("HTTNV", "HTTNV", "HTXSNV")


def test_rows_under_a_two_row_header_keep_the_sheets_numbers():
    book = two_row_form()
    book.active["E6"] = "Hoàn thành tốt lắm"
    problems = refused(parse_member_results, "ds.xlsx", xlsx_bytes(book))
    assert problems == [
        "ds.xlsx, dòng 6, cột 'Chi bộ đề xuất': mức xếp loại không hợp lệ 'Hoàn thành tốt lắm' "
        "(dùng HTXSNV, HTTNV, HTNV, KHTNV hoặc tên đầy đủ, ví dụ 'Hoàn thành tốt nhiệm vụ')"
    ]


def test_the_group_title_keeps_a_column_without_sub_header_and_a_data_row_is_no_sub_header():
    # The group's third column has no sub-header: it is the group title's ("Kết quả xếp loại").
    text = (
        "STT,Họ và tên,Mã đảng viên,Kết quả xếp loại,,,Ghi chú\n"
        ",,,Tự xếp loại,Chi bộ đề xuất,,\n"
        "1,Nguyễn Văn An,DV001,HTTNV,HTTNV,HTXSNV,\n"
    )
    assert levels(members("ds.csv", text)["DV001"]) == ("HTTNV", "HTTNV", "HTXSNV")
    # Under a one-row header, a row with levels but no id is a row (refused), not sub-headers.
    text = "Mã đảng viên,Họ và tên,Tự xếp loại,Chi bộ đề xuất\n,,HTTNV,HTTNV\nDV001,A,HTNV,HTNV\n"
    assert refused(parse_member_results, "ds.csv", text) == ["ds.csv, dòng 2, cột 'Mã đảng viên': thiếu mã đảng viên"]


def test_every_reader_agrees_on_a_two_row_header():
    columns = {"member_id": ["Mã đảng viên"], "full_name": ["Họ và tên"], "self_level": ["Tự xếp loại"], "final_level": ["Quyết định"]}
    text = "Mã đảng viên,Họ và tên,Xếp loại,\n,,Tự xếp loại,Quyết định\n(1),(2),(3),(4)\nDV001,An,HTTNV,HTNV\nDV002,Bình,HTNV,HTNV\n"
    path, data = Path("ds.csv"), text.encode()
    table = [(r.number, tuple(r.values.values())) for r in read_table(path, columns, {"member_id"}, data=data)]
    assert table == [(4, ("DV001", "An", "HTTNV", "HTNV")), (5, ("DV002", "Bình", "HTNV", "HTNV"))]
    numbers, cells = read_columns(path, columns, {"member_id"}, data=data)
    assert list(zip(numbers, zip(*cells))) == table
    with open_rows(path, columns, {"member_id"}, data=data) as rows:
        assert list(rows) == table


# --------------------------------------------------------------------------- 2. one column per level


def test_level_columns_under_group_titles_are_the_fields_the_titles_name():
    """"Chi bộ đề xuất" merged over four code columns, "Cấp ủy quyết định" over four full names."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["STT", "Mã đảng viên", "Họ và tên", "Chi bộ đề xuất", None, None, None, "Cấp ủy quyết định", None, None, None])
    sheet.append([None, None, None, "HTXSNV", "HTTNV", "HTNV", "KHTNV", *LEVELS4])
    sheet.merge_cells("D1:G1")
    sheet.merge_cells("H1:K1")
    sheet.append([1, "DV001", "An", None, "x", None, None, "X", None, None, None])
    sheet.append([2, "DV002", "Bình", None, None, "✓", None, None, None, 1, None])
    sheet.append([3, "DV003", "Cường", None, None, None, "x", None, None, None, None])
    read = members("ds.xlsx", xlsx_bytes(book))
    assert levels(read["DV001"]) == (None, "HTTNV", "HTXSNV")
    assert levels(read["DV002"]) == (None, "HTNV", "HTNV")
    assert levels(read["DV003"]) == (None, "KHTNV", None)  # no mark: an empty level, as an empty cell


@pytest.mark.parametrize("headers", [LEVELS4, ["HTXSNV", "HTTNV", "HTNV", "KHTNV"]])
def test_level_columns_in_a_one_row_header_mean_xep_loai(headers):
    text = f"Mã đảng viên,Họ và tên,{','.join(headers)}\nDV001,An,,x,,\n"
    assert levels(members("ds.csv", text)["DV001"]) == (None, None, "HTTNV")
    orgs = parse_org_results(Path("ds.csv"), "SCT", None, data=f"Mã đơn vị,Tên đơn vị,{','.join(headers)}\nVP1,A,x,,,\n".encode())
    assert [(o.unit_code, o.level, o.self_level) for o in orgs] == [("VP1", "HTXSNV", None)]


def test_a_group_title_in_the_row_above_a_one_row_header_names_its_level_columns():
    """A form whose group row holds only the group title: the header is the row below it."""
    text = (
        "DANH SÁCH XẾP LOẠI,,,,,\n"
        ",,Tự xếp loại,,,\n"
        "Mã đảng viên,Họ và tên,HTXSNV,HTTNV,HTNV,KHTNV\n"
        "DV001,An,,x,,\n"
    )
    with pytest.raises(InvalidInput) as info:  # a self-level alone: the list has no level
        members("ds.csv", text)
    assert [(p.row, p.field) for p in info.value.problems] == [(4, "final_level")]
    read = members("ds.csv", text.replace(",,Tự xếp loại,,,", ",,Chi bộ đề xuất,,,"))
    assert levels(read["DV001"]) == (None, "HTTNV", None)


def test_marks_that_do_not_read_are_refused_naming_row_and_columns_with_the_other_rows_problems():
    text = (
        f"Mã đảng viên,Họ và tên,Xếp loại,,,\n"
        f",,{','.join(LEVELS4)}\n"
        "DV001,An,x,x,,\n"
        "DV002,Bình,,v,,\n"
        "DV003,Cường,,0,x,\n"
        "DV001,Dũng,,x,,\n"
        ",,,,có,\n"
        "Tổng cộng,,1,3,1,0\n"
    )
    assert refused(parse_member_results, "ds.csv", text) == [
        "ds.csv, dòng 3, cột 'Hoàn thành xuất sắc nhiệm vụ': có 2 dấu ở các cột 'Hoàn thành xuất sắc nhiệm vụ' "
        "và 'Hoàn thành tốt nhiệm vụ': mỗi dòng chỉ đánh dấu một cột mức xếp loại",
        "ds.csv, dòng 4, cột 'Hoàn thành tốt nhiệm vụ': ô ghi 'v' không phải dấu chọn: đánh dấu x (hoặc ✓, 1) "
        "vào đúng một cột mức xếp loại, các cột còn lại để trống",
        "ds.csv, dòng 5, cột 'Hoàn thành tốt nhiệm vụ': ô ghi '0' không phải dấu chọn: đánh dấu x (hoặc ✓, 1) "
        "vào đúng một cột mức xếp loại, các cột còn lại để trống",
        "ds.csv, dòng 6, cột 'Mã đảng viên': đảng viên DV001 bị lặp (đã có ở dòng 3)",
        # A line with only a stray cell is told, not skipped as blank; the total under the table is the footer's.
        "ds.csv, dòng 7, cột 'Hoàn thành nhiệm vụ': ô ghi 'có' không phải dấu chọn: đánh dấu x (hoặc ✓, 1) "
        "vào đúng một cột mức xếp loại, các cột còn lại để trống",
    ]


def test_a_level_given_both_as_a_column_and_as_marks_is_a_duplicate():
    text = "Mã đảng viên,Xếp loại,HTXSNV,HTTNV,HTNV,KHTNV\nDV001,HTTNV,,x,,\n"
    (problem,) = refused(parse_member_results, "ds.csv", text)
    assert problem.startswith("ds.csv, dòng 1, cột 'Xếp loại': cột 'Xếp loại' và các cột đánh dấu 'HTXSNV', 'HTTNV'")
    assert "bị lặp" in problem


def test_level_columns_under_a_title_that_names_no_level_are_refused():
    text = "Mã đảng viên,Họ và tên,Đánh giá,,,\n,,HTXSNV,HTTNV,HTNV,KHTNV\nDV001,An,,x,,\n"
    (problem,) = refused(parse_member_results, "ds.csv", text)
    assert problem.startswith("ds.csv, dòng 1, cột 'Đánh giá': các cột 'HTXSNV', 'HTTNV', 'HTNV', 'KHTNV' là mức xếp loại")
    assert "'Tự xếp loại', 'Chi bộ đề xuất' hoặc 'Xếp loại'" in problem


@pytest.mark.parametrize("parse, code, says", [
    (parse_member_results, "Mã đảng viên", "Trạng thái"),
    (parse_org_results, "Mã đơn vị", "bỏ tổ chức chưa xếp loại khỏi danh sách"),
])
@pytest.mark.parametrize("header", ["Không xếp loại", "Chưa xếp loại"])
def test_a_not_evaluated_column_is_refused_saying_how_to_give_it(parse, code, says, header):
    text = f"{code},Xếp loại,,,,\n,{','.join(LEVELS4)},{header}\nDV001,,,,,x\n"
    (problem,) = refused(parse, "ds.csv", text)
    assert problem.startswith(f"ds.csv, dòng 2, cột '{header}': cột '{header}' không được nhận") and says in problem


def test_an_uncached_formula_in_a_level_column_is_refused():
    """A mark a formula puts, never computed (a program wrote the file): read as no mark, it would be lost."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mã đảng viên", "Họ và tên", *LEVELS4])
    sheet.append(["DV001", "An", None, '=IF(1=1,"x","")', None, None])
    (problem,) = refused(parse_member_results, "ds.xlsx", xlsx_bytes(book))
    assert problem.startswith("ds.xlsx, dòng 2, cột 'Hoàn thành tốt nhiệm vụ': ô có công thức")

