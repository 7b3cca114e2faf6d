"""Generated documents: declared templates render strictly; XLSX numbers and DOCX layout are right."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import docx
import openpyxl
import pytest
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from jinja2 import UndefinedError

from kiemdiem import documents
from kiemdiem.documents import (
    DOCUMENT_TEMPLATES,
    MEMBER_SHEET,
    ORG_SHEET,
    PARTY,
    SAMPLE_CHECKLIST,
    SAMPLE_LETTERHEAD,
    SAMPLE_ROWS,
    listing_view,
    SAMPLE_SUMMARY,
    SAMPLE_UNIT_NAMES,
    STATISTICS_FIRST_ROW,
    Letterhead,
    ListItem,
    Paragraph,
    Signature,
    Table,
    Title,
    checklist_xlsx,
    classification_list_docx,
    consolidated_report_docx,
    docx_text,
    dossier_index_docx,
    escape_markup,
    inline_runs,
    parse_markup,
    render_markup,
    statistics_xlsx,
    validate_templates,
)

DAY = dt.date(2023, 12, 5)


def summary_for(code: str, name: str, counts: tuple[int, int, int, int], evaluated: int, quota_status: str = "ok") -> dict:
    summary = json.loads(json.dumps(SAMPLE_SUMMARY))
    summary["unit"] = {"code": code, "name": name, "kind": "chi_bo_truc_thuoc", "parent": "SCT"}
    summary["members"]["evaluated"] = evaluated
    for level, count in zip(("HTXSNV", "HTTNV", "HTNV", "KHTNV"), counts):
        summary["members"]["levels"][level] = {"count": count, "percent": round(100 * count / evaluated, 1)}
    summary["members"]["htxsnv_over_httnv_percent"] = round(100 * counts[0] / counts[1], 1) if counts[1] else None
    summary["members"]["quota"] = {"scope": "base_organization", "htxsnv": counts[0], "httnv": counts[1], "max_allowed": counts[1] // 5, "status": quota_status}
    return summary


# ------------------------------------------------------------------------------ templates


def test_every_template_is_declared_and_renders_strictly():
    assert validate_templates() == []


@pytest.mark.parametrize("name", sorted(DOCUMENT_TEMPLATES))
def test_template_renders_against_its_samples(name):
    text = render_markup(name, DOCUMENT_TEMPLATES[name].samples())
    parsed = parse_markup(text)
    assert any(isinstance(b, Title) for b in parsed.body)
    assert parsed.header_right and parsed.date and parsed.signer == "Lê Xuân Tiến"


def test_a_missing_value_fails_loudly():
    samples = DOCUMENT_TEMPLATES["bao_cao_tong_hop"].samples()
    letterhead = dict(samples["letterhead"])
    del letterhead["signer_name"]
    with pytest.raises(UndefinedError):
        render_markup("bao_cao_tong_hop", {**samples, "letterhead": letterhead})
    with pytest.raises(ValueError, match="declared placeholders"):
        render_markup("bao_cao_tong_hop", {"letterhead": samples["letterhead"]})


def test_validation_reports_an_undeclared_variable(tmp_path):
    for path in (documents.templates_dir() / "documents").glob("*.j2"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "muc_luc_ho_so.j2").write_text('{% extends "_van_ban.j2" %}{% block body %}# {{ nobody }}{% endblock %}', encoding="utf-8")
    problems = validate_templates(tmp_path)
    assert any("undeclared variable 'nobody'" in p for p in problems)


# --------------------------------------------------------------------------------- markup


def test_markup_blocks():
    parsed = parse_markup(
        ":header-left: **ĐẢNG ỦY**\n:header-right: X\n:date: Hà Tĩnh, ngày 05 tháng 12 năm 2023\n"
        "# BÁO CÁO\n\nmột dòng\nnối tiếp\n\n- mục một\n| A | B |\n|:-:|--:|\n| 1 | a \\| b |\n:to: - Lưu\n:sign: T/M\n:signer: Tên\n"
    )
    assert parsed.header_left == ["**ĐẢNG ỦY**"] and parsed.date.endswith("năm 2023")
    title, paragraph, item, table = parsed.body
    assert title == Title("BÁO CÁO") and paragraph == Paragraph("một dòng nối tiếp") and item == ListItem("- mục một")
    assert table == Table((("A", "B"), ("1", "a \\| b")), ("center", "right"))
    assert parsed.recipients == ["- Lưu"] and parsed.sign_lines == ["T/M"] and parsed.signer == "Tên"
    with pytest.raises(ValueError, match="chỉ thị"):
        parse_markup(":bogus: x")


def test_values_never_become_markup():
    hostile = "# | **đậm** __nghiêng__ \\ ++gạch++\n- dòng mới"
    escaped = escape_markup(hostile)
    parsed = parse_markup(f"| {escaped} | b |\n")
    [table] = parsed.body
    assert len(table.rows[0]) == 2
    assert inline_runs(table.rows[0][0]) == [(hostile.replace("\n", " "), False, False, False)]
    assert parse_markup(escaped + "\n").body == [Paragraph(escaped)]
    assert escape_markup(None) == ""


# ----------------------------------------------------------------------------------- XLSX


def _rows(sheet) -> dict[str, list]:
    return {
        sheet.cell(r, 1).value: [sheet.cell(r, c).value for c in range(1, sheet.max_column + 1)]
        for r in range(STATISTICS_FIRST_ROW, sheet.max_row + 1)
    }


def test_statistics_table_numbers_match_the_summaries():
    summaries = {
        "SCT": SAMPLE_SUMMARY,
        "VP1": summary_for("VP1", "Chi bộ Văn phòng 1", (2, 9, 1, 0), 12),
        "VP2": summary_for("VP2", "Chi bộ Văn phòng 2", (3, 10, 0, 1), 14, "breach"),
    }
    data = statistics_xlsx(summaries, title="Thống kê", issued_on=DAY)
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == [MEMBER_SHEET, ORG_SHEET]
    members = book[MEMBER_SHEET]
    header = [members.cell(STATISTICS_FIRST_ROW - 2, c).value for c in range(1, members.max_column + 1)]
    assert header[:4] == ["Mã", "Tên tổ chức đảng", "Tổng số đảng viên", "Được đánh giá, xếp loại"]
    assert "Không đánh giá, xếp loại" in header and "Hạn mức 20%" in header
    rows = _rows(members)
    assert list(rows) == ["SCT", "VP1", "VP2"]
    for code, summary in summaries.items():
        m = summary["members"]
        row = rows[code]
        assert row[1] == summary["unit"]["name"]
        assert row[2:9] == [m["total"], m["evaluated"], m["not_evaluated"]["exempt"], m["not_evaluated"]["suspended"],
                            m["not_evaluated"]["new_member"], m["classified"], m["missing"]]
        for i, level in enumerate(("HTXSNV", "HTTNV", "HTNV", "KHTNV")):
            assert row[9 + 2 * i] == m["levels"][level]["count"]
            assert row[10 + 2 * i] == pytest.approx(m["levels"][level]["percent"])
        assert row[17] == pytest.approx(m["htxsnv_over_httnv_percent"])
        assert row[18] == m["quota"]["max_allowed"]
    assert rows["VP2"][19].startswith("Vượt")
    org_rows = _rows(book[ORG_SHEET])
    o = SAMPLE_SUMMARY["organizations"]
    assert org_rows["SCT"][2:5] == [o["total"], o["classified"], o["missing"]]
    assert org_rows["SCT"][7] == o["levels"]["HTTNV"]["count"]


def test_checklist_xlsx_lists_each_item():
    book = openpyxl.load_workbook(io.BytesIO(checklist_xlsx(SAMPLE_CHECKLIST, issued_on=DAY)))
    sheet = book.active
    header = [sheet.cell(documents.CHECKLIST_FIRST_ROW - 1, c).value for c in range(1, sheet.max_column + 1)]
    column = {name: header.index(name) + 1 for name in header}
    statuses = [sheet.cell(r, column["Tình trạng"]).value for r in range(documents.CHECKLIST_FIRST_ROW, sheet.max_row + 1)]
    assert statuses == [i["status_name"] for i in SAMPLE_CHECKLIST["items"]]


def test_outputs_are_reproducible_bytes():
    first = statistics_xlsx({"SCT": SAMPLE_SUMMARY}, title="T", issued_on=DAY)
    assert statistics_xlsx({"SCT": SAMPLE_SUMMARY}, title="T", issued_on=DAY) == first
    report = consolidated_report_docx(SAMPLE_LETTERHEAD, SAMPLE_SUMMARY, year=2023, plan_number="187-KH/ĐU")
    assert consolidated_report_docx(SAMPLE_LETTERHEAD, SAMPLE_SUMMARY, year=2023, plan_number="187-KH/ĐU") == report
    with zipfile.ZipFile(io.BytesIO(report)) as package:
        assert {i.date_time for i in package.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert b"2023-12-05T00:00:00Z" in package.read("docProps/core.xml")


# ----------------------------------------------------------------------------------- DOCX


def test_report_has_the_administrative_layout():
    data = consolidated_report_docx(SAMPLE_LETTERHEAD, SAMPLE_SUMMARY, year=2023, plan_number="187-KH/ĐU", unit_names=SAMPLE_UNIT_NAMES,
                                    plan_issuer="Đảng ủy Sở Công Thương")
    text = docx_text(data)
    # Whose plan, and who reports (the committee that signs), about which organization.
    assert ("Thực hiện Kế hoạch số 187-KH/ĐU của Đảng ủy Sở Công Thương về kiểm điểm, đánh giá, xếp loại chất lượng tổ chức đảng, "
            "đảng viên năm 2023, Đảng ủy Sở Công Thương tổng hợp kết quả của Đảng bộ Sở Công Thương như sau:") in text
    for expected in (
        "ĐẢNG BỘ KHỐI CÁC CƠ QUAN VÀ DOANH NGHIỆP TỈNH", "ĐẢNG ỦY SỞ CÔNG THƯƠNG", PARTY, "Số 187-KH/ĐU",
        "……, ngày 05 tháng 12 năm 2023", "BÁO CÁO", "Nơi nhận:", "- Lưu ĐU.", "T/M ĐẢNG ỦY", "PHÓ BÍ THƯ", "Lê Xuân Tiến",
    ):
        assert expected in text, expected
    document = docx.Document(io.BytesIO(data))
    assert document.styles["Normal"].font.name == "Times New Roman"
    assert document.sections[0].page_width.cm == pytest.approx(21.0, abs=0.01)
    header = document.tables[0]
    assert len(header.columns) == 2
    borders = header._tbl.tblPr.find(qn("w:tblBorders"))
    assert borders is not None and {e.get(qn("w:val")) for e in borders} == {"nil"}
    left, right = header.rows[0].cells
    assert [p.text for p in left.paragraphs] == ["ĐẢNG BỘ KHỐI CÁC CƠ QUAN VÀ DOANH NGHIỆP TỈNH", "ĐẢNG ỦY SỞ CÔNG THƯƠNG", "*", "Số 187-KH/ĐU"]
    date = right.paragraphs[-1]
    assert date.text == "……, ngày 05 tháng 12 năm 2023"
    assert date.alignment == WD_ALIGN_PARAGRAPH.RIGHT and all(r.italic for r in date.runs)
    title = next(p for p in document.paragraphs if p.text == "BÁO CÁO")
    assert title.alignment == WD_ALIGN_PARAGRAPH.CENTER and title.runs[0].bold
    closing = document.tables[-1]
    recipients, signature = closing.rows[0].cells
    assert recipients.paragraphs[0].text == "Nơi nhận:"
    assert [p.text for p in signature.paragraphs if p.text] == ["T/M ĐẢNG ỦY", "PHÓ BÍ THƯ", "Lê Xuân Tiến"]


def test_report_states_counts_quota_findings_and_missing_results():
    text = docx_text(consolidated_report_docx(SAMPLE_LETTERHEAD, SAMPLE_SUMMARY, year=2023, plan_number="187-KH/ĐU", unit_names=SAMPLE_UNIT_NAMES))
    assert "Hoàn thành xuất sắc nhiệm vụ (HTXSNV)\n5\n11,4%" in text
    assert "Miễn công tác và sinh hoạt đảng: 2 đồng chí" in text and "Mới kết nạp dưới 6 tháng: 1 đồng chí" in text
    assert "tỷ lệ HTXSNV so với HTTNV: 16,7%" in text and "tối đa 6 đồng chí" in text
    assert "Bí thư chi bộ được xếp loại HTXSNV cao hơn" in text and "Chi bộ Văn phòng 1, đảng viên DV001" in text
    assert "Đã được chấp thuận: Thường trực Đảng ủy" in text and "07/12/2023 09:00" in text
    assert "Phạm Minh Đức" in text and "Chi bộ Khuyến công (KC)" in text


def test_report_without_sub_organizations_or_findings():
    summary = summary_for("VP1", "Chi bộ Văn phòng 1", (0, 5, 1, 0), 6, "n/a")
    summary["organizations"] = {"total": 0, "classified": 0, "missing": 0, "levels": {lv: {"count": 0, "percent": 0.0} for lv in ("HTXSNV", "HTTNV", "HTNV", "KHTNV")},
                                "quota": {"scope": "committee", "htxsnv": 0, "httnv": 0, "max_allowed": 0, "status": "n/a"}}
    summary["findings"] = []
    summary["missing_results"] = {"members": [], "organizations": []}
    text = docx_text(consolidated_report_docx(SAMPLE_LETTERHEAD, summary, year=2023, plan_number="187-KH/ĐU"))
    assert "Không có tổ chức đảng trực thuộc" in text
    assert "Không phát hiện trường hợp nào" in text
    assert "Đã có đầy đủ kết quả" in text and "HTXSNV so với HTTNV: –" not in text
    # A branch's members are not held to the 20% rule on their own: no maximum that reads as a breach.
    assert "được xét trong từng tổ chức cơ sở đảng, không xét riêng ở cấp này" in text
    assert "tối đa" not in text and "Kết quả: không áp dụng" not in text


def test_classification_list_table():
    letterhead = Letterhead("Chi bộ Văn phòng 1", "Đảng bộ Sở Công Thương", "   -BC/CB", "Hà Tĩnh", DAY,
                            ("Đảng bộ Sở Công Thương (B/c)", "Lưu CB"), Signature("T/M CHI BỘ", "BÍ THƯ", "Nguyễn Sỹ Chín"))
    data = classification_list_docx(letterhead, SAMPLE_ROWS, unit_name="Chi bộ Văn phòng 1", year=2023)
    document = docx.Document(io.BytesIO(data))
    table = next(t for t in document.tables if len(t.columns) == 7)
    cells = [[c.text for c in row.cells] for row in table.rows]
    assert cells[0] == ["STT", "Họ và tên", "Chi bộ", "Tự xếp loại", "Đề xuất", "Quyết định", "Ghi chú"]
    assert cells[1] == ["1", "Nguyễn Sỹ Chín", "Chi bộ Văn phòng 1", "HTXSNV", "HTXSNV", "HTTNV", ""]
    assert cells[3] == ["3", "Lê Văn Nam", "Chi bộ Văn phòng 1", "", "", "", "Miễn công tác và sinh hoạt đảng"]
    text = docx_text(data)
    assert "Hà Tĩnh, ngày 05 tháng 12 năm 2023" in text and "CHI BỘ VĂN PHÒNG 1" in text
    assert "HTTNV: 2" in text and "T/M CHI BỘ" in text
    assert "-BC/CB" not in text  # a list goes with the report, unnumbered
    paragraphs = [p.text for p in document.paragraphs]
    total = next(p for p in paragraphs if p.startswith("Tổng số:"))
    assert "Ghi chú" not in total and any(p.startswith("Ghi chú: HTXSNV – Hoàn thành xuất sắc nhiệm vụ") for p in paragraphs)


def test_the_classification_list_counts_only_the_members_evaluated():
    """A level given to a member who is not evaluated (here admitted under 6 months) is listed
    but not counted, as the report and the statistics table do not count it."""
    rows = [dict(row) for row in SAMPLE_ROWS] + [{
        "member_id": "DV009", "full_name": "Phạm Minh Đức", "unit_name": "Chi bộ Văn phòng 1", "self_level": None,
        "proposed_level": None, "final_level": "HTXSNV", "evaluated": False, "note": "Mới kết nạp dưới 6 tháng, không đánh giá, xếp loại",
    }]
    counts = {c["code"]: c["count"] for c in listing_view(rows, unit_name="Chi bộ Văn phòng 1", year=2023)["level_counts"]}
    assert counts == {c["code"]: c["count"] for c in listing_view(SAMPLE_ROWS, unit_name="Chi bộ Văn phòng 1", year=2023)["level_counts"]}
    assert counts["HTXSNV"] == sum(1 for r in SAMPLE_ROWS if r.get("final_level") == "HTXSNV")


def test_dossier_index_lists_items_with_status():
    text = docx_text(dossier_index_docx(SAMPLE_LETTERHEAD, SAMPLE_CHECKLIST))
    assert "files/ban_kiem_diem_ca_nhan/DV001/kiem_diem.pdf" in text  # which file in the archive is which item
    assert "MỤC LỤC HỒ SƠ" in text and "Chưa nộp (quá hạn)" in text and "Đã nộp (trễ hạn)" in text
    # The index goes with the report, unnumbered (its own "Số … -BC" would say it is a report).
    assert "Trần Thị Hoa" in text and "ĐẢNG ỦY SỞ CÔNG THƯƠNG" in text and "Số 187-KH/ĐU" not in text
