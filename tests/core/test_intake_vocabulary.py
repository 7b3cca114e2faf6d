"""What offices really write in their lists: level wordings, header wordings, informational
columns, invisible and full-width characters, dates with a time. Each must load as meant, or be
refused naming the file, row and column."""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

import openpyxl
import pytest

from kiemdiem import org, results
from kiemdiem.errors import InvalidInput
from kiemdiem.org import read_members, read_units
from kiemdiem.results import parse_level, parse_member_results, parse_org_results, parse_yes_no
from kiemdiem.tabular import fold, parse_date, read_table

TABLES = {
    "results.MEMBER_COLUMNS": results.MEMBER_COLUMNS,
    "results.ORG_COLUMNS": results.ORG_COLUMNS,
    "org.UNIT_COLUMNS": org.UNIT_COLUMNS,
    "org.MEMBER_COLUMNS": org.MEMBER_COLUMNS,
}


def csv_bytes(text: str) -> bytes:
    return text.encode("utf-8")


# --------------------------------------------------------------------------- 1. level wordings


@pytest.mark.parametrize("text, code", [
    ("Hoàn thành xuất sắc", "HTXSNV"),
    ("Hoàn thành xuất sắc NV", "HTXSNV"),
    ("Hoàn thành XS nhiệm vụ", "HTXSNV"),
    ("Hoàn thành tốt", "HTTNV"),
    ("Hoàn thành tốt NV", "HTTNV"),
    ("hoàn thành tốt n.vụ", "HTTNV"),
    ("Hoàn thành NV", "HTNV"),
    ("Không hoàn thành NV", "KHTNV"),
    ("Không HTNV", "KHTNV"),
    ("ＨＴＴＮＶ", "HTTNV"),  # full-width, from an East Asian input method
])
def test_the_short_wordings_offices_write_read_as_their_level(text, code):
    assert parse_level(text) == code


@pytest.mark.parametrize("text", ["Chưa hoàn thành", "Hoàn thành tốt lắm", "Không", "Tốt lắm", "NV", "Giỏi"])
def test_a_wording_that_is_not_one_level_is_still_refused(text):
    """Guard: what the short forms do not cover stays an error (never guessed)."""
    with pytest.raises(ValueError, match="mức xếp loại không hợp lệ"):
        parse_level(text)


# --------------------------------------------------------------------------- 2. header wordings


@pytest.mark.parametrize("name", list(TABLES))
def test_no_header_is_two_columns_and_an_informational_one_is_never_a_column(name):
    columns = TABLES[name]
    owner: dict[str, str] = {}
    for canonical, aliases in columns.items():
        for alias in [canonical, *aliases]:
            assert owner.setdefault(fold(alias), canonical) == canonical, f"{alias!r}: {owner[fold(alias)]} and {canonical}"
    assert columns.informational, "the table names its informational headers"
    assert not {fold(h) for h in columns.informational} & set(owner)


@pytest.mark.parametrize("table, header, canonical", [
    ("results.MEMBER_COLUMNS", "Họ và tên đảng viên", "full_name"),
    ("results.MEMBER_COLUMNS", "Đảng viên tự xếp loại", "self_level"),
    ("results.MEMBER_COLUMNS", "Chi bộ đề nghị xếp loại", "proposed_level"),
    ("results.MEMBER_COLUMNS", "Chi bộ đề nghị", "proposed_level"),
    ("results.MEMBER_COLUMNS", "Đề nghị của chi bộ", "proposed_level"),
    ("results.MEMBER_COLUMNS", "Chi ủy đề nghị", "proposed_level"),
    ("results.ORG_COLUMNS", "Chi bộ tự xếp loại", "self_level"),
    ("results.ORG_COLUMNS", "Cấp ủy quyết định", "level"),
    ("org.UNIT_COLUMNS", "Mã tổ chức đảng", "code"),
    ("org.UNIT_COLUMNS", "Trực thuộc", "parent"),
    ("org.UNIT_COLUMNS", "E-mail", "emails"),
    ("org.UNIT_COLUMNS", "Địa chỉ email", "emails"),
    ("org.MEMBER_COLUMNS", "Họ và tên đảng viên", "full_name"),
    ("org.MEMBER_COLUMNS", "E-mail", "email"),
    ("org.MEMBER_COLUMNS", "Địa chỉ email", "email"),
    ("org.MEMBER_COLUMNS", "Mã số đảng viên", "member_id"),
])
def test_the_headers_of_the_standard_forms_name_their_column(table, header, canonical):
    aliases = {fold(alias): name for name, values in TABLES[table].items() for alias in [name, *values]}
    assert aliases.get(fold(header)) == canonical


def test_a_member_list_with_the_forms_headers_reads_each_column():
    text = (
        "STT,Mã đảng viên,Họ và tên đảng viên,Đảng viên tự xếp loại,Chi bộ đề nghị xếp loại,Quyết định xếp loại\n"
        "1,DV01,Nguyễn Văn A,Hoàn thành tốt,HTXS NV,Hoàn thành tốt nhiệm vụ\n"
    )
    (row,) = parse_member_results(Path("ds.csv"), "CB1", {"DV01"}, data=csv_bytes(text))
    assert (row.self_level, row.proposed_level, row.final_level) == ("HTTNV", "HTXSNV", "HTTNV")


# --------------------------------------------------------------------------- 3. informational columns


def test_the_profile_columns_of_a_member_list_are_passed_over():
    text = (
        "STT,Mã đảng viên,Họ và tên,Giới tính,Dân tộc,Tôn giáo,Quê quán,Ngày vào Đảng,Ngày chính thức,"
        "Trình độ chuyên môn,Nghề nghiệp,Số điện thoại,Địa chỉ,Đơn vị công tác,Xếp loại,Chữ ký\n"
        "1,DV01,Nguyễn Văn A,Nam,Kinh,Không,Hà Tĩnh,01/02/1990,01/02/1991,Kỹ sư,Công chức,0912345678,Hà Tĩnh,Sở Công Thương,HTTNV,\n"
    )
    (row,) = parse_member_results(Path("ds.csv"), "CB1", {"DV01"}, data=csv_bytes(text))
    assert (row.member_id, row.final_level, row.note) == ("DV01", "HTTNV", "")


def test_an_unknown_column_is_refused_naming_it_and_the_headers_the_table_takes():
    text = "Mã đảng viên,Quyết định xếp loại,Khen thưởng,Xếp hạng\nDV01,HTTNV,x,1\n"
    with pytest.raises(InvalidInput) as caught:
        parse_member_results(Path("ds.csv"), "CB1", {"DV01"}, data=csv_bytes(text))
    first, second = caught.value.problems
    assert (first.row, first.field, second.row, second.field) == (1, "Khen thưởng", 1, "Xếp hạng")
    assert first.reason.startswith("cột không được hỗ trợ: 'Khen thưởng' (hệ thống không lưu cột này")
    assert "Bảng này nhận các cột: Mã đảng viên, Tự xếp loại, Chi bộ đề xuất, Quyết định xếp loại" in first.reason
    assert "Quê quán" in first.reason and len(first.reason) < 600
    assert second.reason == "cột không được hỗ trợ: 'Xếp hạng'"  # the list is said once


def test_a_units_file_refuses_a_note_column_and_lists_its_own_headers():
    """A units file's note may say what the import must know ("sáp nhập"): not passed over."""
    text = "Mã đơn vị,Tên đơn vị,Loại,Trực thuộc,Địa chỉ,Ghi chú\nSCT,Đảng bộ Sở,dang_bo_co_so,,Hà Tĩnh,\n"
    with pytest.raises(InvalidInput) as caught:
        read_units(Path("dv.csv"), data=csv_bytes(text))
    (problem,) = caught.value.problems
    assert problem.field == "Ghi chú"
    assert "Bảng này nhận các cột: Mã đơn vị, Tên đơn vị, Loại, Đơn vị cấp trên, Email" in problem.reason


def test_a_members_import_does_not_pass_over_the_date_that_marks_a_probationary_member():
    text = "Mã đảng viên,Họ và tên,Chi bộ,Quê quán,Ngày chính thức\nDV01,Nguyễn Văn A,CB1,Hà Tĩnh,\n"
    with pytest.raises(InvalidInput) as caught:
        read_members(Path("dv.csv"), data=csv_bytes(text))
    assert [(p.row, p.field) for p in caught.value.problems] == [(1, "Ngày chính thức")]


# --------------------------------------------------------------------------- 4. invisible and full-width characters


def test_invisible_characters_and_full_width_forms_do_not_change_a_cell():
    text = (
        "Mã đảng viên\u200b,Quyết định xếp loại,Kỷ luật,Ghi chú\n"
        "DV01\u200b,HTTNV\u00ad,,Đi học\u00a0dài hạn\n"  # zero-width space, soft hyphen, no-break space
        "\ufeffDV02,Hoàn thành tốt\u200d,ｘ,\n"  # a byte order mark inside the file, a zero-width joiner
        "ＤＶ０３,ＨＴＮＶ,,Ghi chú，có dấu phẩy\n"  # full-width: the comma stays a cell's comma
    )
    rows = parse_member_results(Path("ds.csv"), "CB1", {"DV01", "DV02", "DV03"}, data=csv_bytes(text))
    assert [(r.member_id, r.final_level, r.disciplined, r.note) for r in rows] == [
        ("DV01", "HTTNV", False, "Đi học dài hạn"),
        ("DV02", "HTTNV", True, ""),
        ("DV03", "HTNV", False, "Ghi chú，có dấu phẩy"),
    ]
    assert parse_yes_no("ｘ") is True


def test_invisible_characters_in_a_workbook_cell_do_not_change_it(tmp_path):
    book = openpyxl.Workbook()
    book.active.append(["ＳＴＴ", "Mã đơn vị", "Xếp loại\u200b", "\u200b"])  # the last header cell only looks empty
    book.active.append([1, "CB1\u200b", "\u00a0Hoàn thành xuất sắc\u00ad", None])
    path = tmp_path / "kq.xlsx"
    book.save(path)
    (row,) = parse_org_results(path, "DB1", {"CB1"})
    assert (row.unit_code, row.level) == ("CB1", "HTXSNV")


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_a_members_code_and_name_are_read_clean_and_precomposed(form):
    name = "Nguyễn Thị Hằng"
    text = unicodedata.normalize(form, f"Mã đảng viên,Họ và tên,Chi bộ\nＤＶ００１\u200b,Nguy\u200b{name[4:]}\u00a0,CB1\u200d\n")
    (member,) = read_members(Path("dv.csv"), data=csv_bytes(text))
    assert (member.member_id, member.full_name, member.unit) == ("DV001", unicodedata.normalize("NFC", name), "CB1")


def test_a_zero_width_character_between_a_letter_and_its_mark_still_makes_one_letter():
    decomposed = unicodedata.normalize("NFD", "Hằng")
    text = f"Mã đảng viên,Họ và tên,Chi bộ\nDV001,{decomposed[:2]}\u200b{decomposed[2:]},CB1\n"
    (member,) = read_members(Path("dv.csv"), data=csv_bytes(text))
    assert member.full_name == "Hằng"


# --------------------------------------------------------------------------- 5. dates


@pytest.mark.parametrize("text", ["01/02/1980 00:00:00", "01/02/1980 0:00", "1980-02-01 00:00:00", "1980-02-01T00:00:00"])
def test_a_date_with_a_midnight_time_is_the_date(text):
    assert parse_date(text) == dt.date(1980, 2, 1)


def test_a_date_with_another_time_is_refused_with_the_form():
    with pytest.raises(ValueError) as info:
        parse_date("31/01/1980 17:00")
    assert str(info.value) == "ngày không hợp lệ '31/01/1980 17:00': chỉ ghi ngày, không ghi giờ (dùng dd/mm/yyyy)"


def test_a_month_first_date_is_told_the_day_comes_first():
    with pytest.raises(ValueError) as info:
        parse_date("02/13/1980")
    assert str(info.value) == (
        "ngày không hợp lệ '02/13/1980': không có tháng 13, có vẻ tháng được ghi trước ngày; "
        "dùng dd/mm/yyyy (ngày trước, tháng sau), ví dụ 13/02/1980"
    )


def test_a_members_date_cell_with_a_time_is_read_or_refused_at_its_row(tmp_path):
    book = openpyxl.Workbook()
    book.active.append(["Mã đảng viên", "Họ và tên", "Chi bộ", "Ngày vào Đảng"])
    book.active.append(["DV001", "Nguyễn Văn A", "CB1", dt.datetime(1980, 2, 1)])
    book.active.append(["DV002", "Trần Văn B", "CB1", "01/02/1981 00:00:00"])
    path = tmp_path / "dv.xlsx"
    book.save(path)
    assert [m.joined_on for m in read_members(path)] == [dt.date(1980, 2, 1), dt.date(1981, 2, 1)]
    book.active.append(["DV003", "Lê Văn C", "CB1", "02/13/1980"])
    book.save(path)
    with pytest.raises(InvalidInput) as caught:
        read_members(path)
    (problem,) = caught.value.problems
    assert (problem.row, problem.field) == (4, "joined_on") and "dùng dd/mm/yyyy (ngày trước, tháng sau)" in problem.reason


# --------------------------------------------------------------------------- rows under a one-column header


def test_the_rows_under_a_header_of_one_known_column_are_all_read():
    """A header naming one known column is found only after the first rows are read looking for a
    better one: those rows are the table's, not to be dropped."""
    columns = {"member_id": ["Mã đảng viên"], "final_level": ["Xếp loại"]}
    rows = read_table(Path("ds.csv"), columns, {"member_id"}, data=csv_bytes("Mã đảng viên\nDV01\nDV02\n"))
    assert [(r.number, r.values["member_id"]) for r in rows] == [(2, "DV01"), (3, "DV02")]
