"""Parsing member and organization result files (CSV and XLSX, Vietnamese headers)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import openpyxl
import pytest

from kiemdiem.consolidation import MemberResult, OrgResult
from kiemdiem.errors import InvalidInput
from kiemdiem.results import LEVEL_NAMES, LEVELS, parse_level, parse_member_results, parse_org_results, parse_yes_no

KNOWN = {"DV01", "DV02", "DV03", "DV04", "DV05"}


def write_csv(tmp_path: Path, text: str, name="tong_hop.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: InvalidInput):
    return [(p.row, p.field, p.reason) for p in exc.problems]


def test_levels_vocabulary():
    assert LEVELS == ("HTXSNV", "HTTNV", "HTNV", "KHTNV")
    assert LEVEL_NAMES["HTTNV"] == "Hoàn thành tốt nhiệm vụ"
    assert set(LEVEL_NAMES) == set(LEVELS)


@pytest.mark.parametrize(
    "text, code",
    [
        ("HTXSNV", "HTXSNV"),
        ("htxsnv", "HTXSNV"),
        ("Hoàn thành xuất sắc nhiệm vụ", "HTXSNV"),
        ("HOÀN THÀNH TỐT NHIỆM VỤ", "HTTNV"),
        ("hoan thanh  tot nhiem vu", "HTTNV"),
        ("Hoàn thành nhiệm vụ", "HTNV"),
        ("Không hoàn thành nhiệm vụ", "KHTNV"),
        ("khong hoan thanh nhiem vu", "KHTNV"),
        ("Xuất sắc", "HTXSNV"),
        ("", None),
    ],
)
def test_parse_level(text, code):
    assert parse_level(text) == code


@pytest.mark.parametrize("text, value", [("x", True), ("Có", True), ("1", True), ("TRUE", True), ("yes", True),
                                          ("không", False), ("0", False), ("false", False), ("No", False), ("", None)])
def test_parse_yes_no(text, value):
    assert parse_yes_no(text) is value


def test_member_results_with_vietnamese_headers_csv(tmp_path):
    path = write_csv(
        tmp_path,
        "STT,Mã đảng viên,Họ và tên,Tự xếp loại,Chi bộ đề xuất,Quyết định xếp loại,Kỷ luật,Số tháng nghỉ ốm,Vắng mặt,Điểm,Ghi chú\n"
        "1,DV01,Nguyễn Văn A,Hoàn thành tốt nhiệm vụ,HTTNV,hoàn thành tốt nhiệm vụ,,,,85,\n"
        "2,DV02,Trần Thị B,HTXSNV,Hoàn thành xuất sắc nhiệm vụ,HTXSNV,không,0,0,\"92,5\",Điển hình\n"
        "3,DV03,Lê Văn C,HTTNV,HTNV,,x,\"3,5\",,60,Bị khiển trách\n"
        "4,DV04,Phạm Văn D,,,,,,x,,Đi công tác\n",
    )
    results = parse_member_results(path, "CB1", KNOWN)
    assert results[0] == MemberResult("DV01", "CB1", "HTTNV", "HTTNV", "HTTNV", False, 0.0, False, 85.0, "", True)
    assert results[1] == MemberResult("DV02", "CB1", "HTXSNV", "HTXSNV", "HTXSNV", False, 0.0, False, 92.5, "Điển hình", True)
    assert results[2] == MemberResult("DV03", "CB1", "HTTNV", "HTNV", None, True, 3.5, False, 60.0, "Bị khiển trách", True)
    # Absent: no level is fine; no self-level while others have one ⇒ no self-review.
    assert results[3] == MemberResult("DV04", "CB1", None, None, None, False, 0.0, True, None, "Đi công tác", False)


def test_a_lists_total_and_signature_block_are_not_rows(tmp_path):
    """A branch's list as it is signed: a total row, the place and date, who signs, their name."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["STT", "Mã đảng viên", "Họ và tên", "Chi bộ đề xuất", "Ghi chú"])
    sheet.append([1, "DV01", "Nguyễn Văn A", "Hoàn thành tốt nhiệm vụ", None])
    sheet.append([2, "DV02", "Trần Thị B", "HTXSNV", None])
    sheet.append(["Tổng cộng", None, "2 đảng viên", "1 HTXSNV, 1 HTTNV", None])
    sheet.append([])
    sheet.append([None, None, None, "Hà Tĩnh, ngày 05 tháng 12 năm 2023"])
    sheet.append([None, "Người lập biểu", None, "T/M CHI ỦY"])
    sheet.append([None, None, None, "BÍ THƯ"])
    sheet.append([None, "(Ký, ghi rõ họ tên)", None, "(Ký, ghi rõ họ tên)"])
    sheet.append([None, "Lê Thị C", None, "Phạm Văn D"])
    path = tmp_path / "danh_sach.xlsx"
    book.save(path)
    results = parse_member_results(path, "CB1", KNOWN)
    assert [(r.member_id, r.proposed_level) for r in results] == [("DV01", "HTTNV"), ("DV02", "HTXSNV")]


def test_a_signature_line_with_a_whole_row_under_it_is_a_row(tmp_path):
    """Only a file's last lines can be a footer: a row under "BÍ THƯ" makes it a line of the table,
    reported for its missing member id like any other."""
    path = write_csv(tmp_path, "Mã đảng viên,Họ và tên,Chi bộ đề xuất\nDV01,Nguyễn Văn A,HTTNV\n,BÍ THƯ,\nDV02,Trần Thị B,HTNV\n")
    with pytest.raises(InvalidInput) as info:
        parse_member_results(path, "CB1", KNOWN)
    assert [(row, field) for row, field, _ in problems_of(info.value)] == [(3, "member_id"), (3, "final_level")]
    # Without a footer word, an incomplete last line is a row too.
    path = write_csv(tmp_path, "Mã đảng viên,Họ và tên,Chi bộ đề xuất\nDV01,Nguyễn Văn A,HTTNV\n,Trần Thị B,HTNV\n")
    with pytest.raises(InvalidInput) as info:
        parse_member_results(path, "CB1", KNOWN)
    assert [(row, field) for row, field, _ in problems_of(info.value)] == [(3, "member_id")]


def test_the_dossiers_own_member_list_reads_back(tmp_path):
    """The headers of "Danh sách xếp loại" (thong_ke_xep_loai.xlsx, documents.list_headers):
    an office may correct that sheet and send it in."""
    from kiemdiem.documents import list_headers

    path = write_csv(tmp_path, ",".join(list_headers(False)) + "\n1,DV01,Nguyễn Văn A,CB1,HTTNV,HTXSNV,HTTNV,\n")
    [row] = parse_member_results(path, "CB1", KNOWN)
    assert (row.self_level, row.proposed_level, row.final_level) == ("HTTNV", "HTXSNV", "HTTNV")


def test_decomposed_vietnamese_reads_as_precomposed_text(tmp_path):
    # Unikey's "Unicode tổ hợp" (and macOS) write each mark as its own character.
    text = "Mã đảng viên,Họ và tên,Chi bộ đề xuất,Ghi chú\nDV01,Nguyễn Văn A,Hoàn thành tốt nhiệm vụ,Điển hình\n"
    decomposed = unicodedata.normalize("NFD", text)
    assert decomposed != text
    expected = parse_member_results(write_csv(tmp_path, text), "CB1")
    assert parse_member_results(Path("nfd.csv"), "CB1", data=decomposed.encode()) == expected
    assert expected[0].note == "Điển hình" and expected[0].proposed_level == "HTTNV"
    book = openpyxl.Workbook()
    for line in decomposed.splitlines():
        book.active.append(line.split(","))
    path = tmp_path / "nfd.xlsx"
    book.save(path)
    assert parse_member_results(path, "CB1") == expected


def test_member_results_alternative_headers_and_xlsx(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mã ĐV", "Đề xuất xếp loại", "Xếp loại chính thức", "Bị kỷ luật trong năm", "Nghỉ ốm (tháng)",
                  "Vắng mặt", "Có bản kiểm điểm"])
    sheet.append(["DV01", "Hoàn thành tốt nhiệm vụ", "HTTNV", None, 4, None, "có"])
    sheet.append(["DV02", "HTNV", None, "Có", 0.5, None, "không"])
    sheet.append([None, None, None, None, None, None, None])  # blank rows are skipped
    sheet.append(["DV05", None, "KHTNV", 1, None, "0", None])
    path = tmp_path / "tong_hop.xlsx"
    book.save(path)
    results = parse_member_results(path, "DB01")
    assert [(r.member_id, r.proposed_level, r.final_level, r.disciplined, r.sick_leave_months, r.has_self_review)
            for r in results] == [
        ("DV01", "HTTNV", "HTTNV", False, 4.0, True),
        ("DV02", "HTNV", None, True, 0.5, False),
        # No self-level anywhere in the file and no self-review cell: no information ⇒ True.
        ("DV05", None, "KHTNV", True, 0.0, True),
    ]
    # Same bytes passed as data (an upload) give the same result.
    assert parse_member_results(Path("upload.xlsx"), "DB01", data=path.read_bytes()) == results


def test_every_bad_row_kind_is_reported_with_row_and_column(tmp_path):
    path = write_csv(
        tmp_path,
        "Mã đảng viên;Tự xếp loại;Chi bộ đề xuất;Quyết định xếp loại;Kỷ luật;Số tháng nghỉ ốm;Vắng mặt;Điểm\n"
        "DV01;HTTNV;HTTNV;Giỏi;;;;\n"          # row 2: unknown level
        "DV99;HTTNV;HTTNV;HTTNV;;;;\n"         # row 3: unknown member id
        "DV02;HTTNV;HTTNV;HTTNV;;;;\n"         # row 4: fine
        "DV02;HTTNV;HTTNV;HTTNV;;;;\n"         # row 5: duplicate member
        "DV03;HTTNV;HTTNV;HTTNV;;ba;;\n"       # row 6: bad number
        "DV04;HTTNV;HTTNV;HTTNV;;;;120\n"      # row 7: score out of 0..100
        "DV05;HTTNV;;;;;;\n"                   # row 8: neither proposed nor final, not absent
        "DV01;HTTNV;HTTNV;HTTNV;có lẽ;;;\n"    # row 9: duplicate of row 2 and bad yes/no
        ";HTTNV;HTTNV;HTTNV;;;;\n"             # row 10: no member id
        "DV03;HTTNV;HTTNV;HTTNV;;13;;-1\n",    # row 11: duplicate, sick leave > 12, negative score
    )
    with pytest.raises(InvalidInput) as caught:
        parse_member_results(path, "CB1", KNOWN)
    got = problems_of(caught.value)
    assert [(row, field) for row, field, _ in got] == [
        (2, "final_level"),
        (3, "member_id"),
        (5, "member_id"),
        (6, "sick_leave_months"),
        (7, "score"),
        (8, "final_level"),
        (9, "member_id"),
        (9, "disciplined"),
        (10, "member_id"),
        (11, "member_id"),
        (11, "sick_leave_months"),
        (11, "score"),
    ]
    reasons = {(row, field): reason for row, field, reason in got}
    assert "mức xếp loại không hợp lệ 'Giỏi'" in reasons[(2, "final_level")]
    assert "DV99 không có trong danh sách" in reasons[(3, "member_id")]
    assert "bị lặp (đã có ở dòng 4)" in reasons[(5, "member_id")]
    assert "không phải là số: 'ba'" in reasons[(6, "sick_leave_months")]
    assert reasons[(7, "score")] == "điểm phải từ 0 đến 100, nhận được '120'"
    assert "chưa có mức xếp loại" in reasons[(8, "final_level")]
    assert "có/không không hợp lệ 'có lẽ'" in reasons[(9, "disciplined")]
    assert reasons[(10, "member_id")] == "thiếu mã đảng viên"
    assert reasons[(11, "sick_leave_months")] == "số tháng nghỉ ốm phải từ 0 đến 12, nhận được '13'"
    assert "tong_hop.csv, dòng 7, cột 'Điểm'" in str(caught.value)


def test_not_evaluated_members_may_be_listed_without_level(tmp_path):
    path = write_csv(tmp_path, "member_id,self_level,final_level,note\nDV01,,,Miễn sinh hoạt\nDV02,HTTNV,HTTNV,\n")
    with pytest.raises(InvalidInput):
        parse_member_results(path, "CB1")
    results = parse_member_results(path, "CB1", not_evaluated_ids={"DV01"})
    assert [(r.member_id, r.final_level, r.has_self_review) for r in results] == [("DV01", None, False), ("DV02", "HTTNV", True)]


def test_unknown_and_missing_headers(tmp_path):
    with pytest.raises(InvalidInput) as caught:
        parse_member_results(write_csv(tmp_path, "Họ và tên,Quyết định xếp loại,Khen thưởng\nA,HTTNV,x\n"), "CB1")
    fields = {(p.row, p.field) for p in caught.value.problems}
    assert fields == {(1, "Khen thưởng"), (1, "member_id")}


def test_problems_name_the_column_as_the_file_spells_it(tmp_path):
    """Messages name the column by the file's own header (any accepted spelling, any language);
    a required column the file lacks by its usual Vietnamese header. The field stays canonical."""
    path = write_csv(tmp_path, "Mã ĐV,Đề nghị xếp loại,bi ky luat\nDV01,Tốt lắm,có lẽ\n")
    with pytest.raises(InvalidInput) as caught:
        parse_member_results(path, "CB1", KNOWN)
    assert [(p.field, p.column) for p in caught.value.problems] == [("proposed_level", "Đề nghị xếp loại"), ("disciplined", "bi ky luat")]
    assert str(caught.value.problems[0]).replace(f"{tmp_path}/", "").startswith("tong_hop.csv, dòng 2, cột 'Đề nghị xếp loại': mức xếp loại không hợp lệ 'Tốt lắm'")
    english = write_csv(tmp_path, "member_id,proposed_level\nDV09,HTTNV\n", name="en.csv")
    with pytest.raises(InvalidInput) as caught:
        parse_member_results(english, "CB1", KNOWN)
    assert [str(p).replace(f"{tmp_path}/", "") for p in caught.value.problems] == [
        "en.csv, dòng 2, cột 'member_id': mã đảng viên DV09 không có trong danh sách đảng viên của đơn vị"
    ]
    with pytest.raises(InvalidInput) as caught:
        parse_org_results(write_csv(tmp_path, "Tên chi bộ,Xếp loại\nChi bộ 1,HTTNV\n", name="kq.csv"), "DB01", {"CB1"})
    assert [str(p).replace(f"{tmp_path}/", "") for p in caught.value.problems] == ["kq.csv, dòng 1, cột 'Mã đơn vị': thiếu cột bắt buộc"]


def test_org_results_vietnamese_headers(tmp_path):
    path = write_csv(
        tmp_path,
        "STT,Mã đơn vị,Tên tổ chức đảng,Tự xếp loại,Xếp loại,Kỷ luật,Ghi chú\n"
        "1,CB1,Chi bộ Văn phòng 1,Hoàn thành tốt nhiệm vụ,HTTNV,,\n"
        "2,CB2,Chi bộ Văn phòng 2,HTXSNV,hoàn thành xuất sắc nhiệm vụ,không,\n"
        "3,CB3,Chi bộ Khuyến công,HTTNV,,x,Chờ quyết định\n",
        name="ket_qua.csv",
    )
    assert parse_org_results(path, "DB01", {"CB1", "CB2", "CB3"}) == [
        OrgResult("CB1", "HTTNV", "DB01", False, "HTTNV"),
        OrgResult("CB2", "HTXSNV", "DB01", False, "HTXSNV"),
        OrgResult("CB3", None, "DB01", True, "HTTNV"),
    ]


def test_org_results_alias_to_chuc_dang_xlsx_and_errors(tmp_path):
    book = openpyxl.Workbook()
    book.active.append(["Tổ chức đảng", "Tự xếp loại", "Xếp loại", "Kỷ luật"])
    for row in (["CB1", "HTTNV", "Tốt lắm", None], ["CB9", "HTTNV", "HTTNV", None], ["CB1", None, "HTNV", None],
                ["CB2", None, None, "?"], [None, "HTNV", "HTNV", None]):
        book.active.append(row)
    path = tmp_path / "ket_qua.xlsx"
    book.save(path)
    with pytest.raises(InvalidInput) as caught:
        parse_org_results(path, "DUK", {"CB1", "CB2"})
    assert [(row, field) for row, field, _ in problems_of(caught.value)] == [
        (2, "level"),       # unknown level
        (3, "unit"),        # unit not in the tree
        (4, "unit"),        # duplicate of row 2
        (5, "disciplined"),  # bad yes/no
        (5, "level"),       # no level at all
        (6, "unit"),        # no unit code
    ]


def test_a_committees_list_may_name_each_members_branch(tmp_path):
    """A đảng ủy's decision covers several branches; its list has a "Chi bộ" column, which was
    refused as "cột không được hỗ trợ"."""
    path = write_csv(
        tmp_path,
        "STT,Mã đảng viên,Họ và tên,Ngày sinh,Chi bộ,Xếp loại,Kỷ luật\n"
        "1,DV01,Nguyễn Văn A,01/02/1980,Chi bộ Văn phòng,HTTNV,\n",
    )
    results = parse_member_results(path, "CB1", KNOWN)
    assert [(r.member_id, r.final_level) for r in results] == [("DV01", "HTTNV")]


def test_a_number_out_of_range_is_quoted_as_typed(tmp_path):
    path = write_csv(tmp_path, "member_id,final_level,score\nDV01,HTTNV,100.0001\n")
    with pytest.raises(InvalidInput) as caught:
        parse_member_results(path, "VP1", {"DV01"})
    (problem,) = caught.value.problems
    assert problem.reason == "điểm phải từ 0 đến 100, nhận được '100.0001'"


def test_a_total_row_with_its_count_in_the_member_id_column_is_not_a_member(tmp_path):
    path = write_csv(tmp_path, "STT,Mã đảng viên,Họ và tên,Quyết định xếp loại\n1,DV01,Nguyễn Văn A,HTTNV\n2,DV02,Trần Thị B,HTNV\n"
                               "Tổng cộng,2,,\n,,T/M CHI ỦY,\n")
    results = parse_member_results(path, "VP1", {"DV01", "DV02"})
    assert [(r.member_id, r.final_level) for r in results] == [("DV01", "HTTNV"), ("DV02", "HTNV")]
