"""What the generated documents say: timeliness of a corrected item, no internal codes, the 366/43 score."""

from __future__ import annotations

import datetime as dt
import io

import docx
import openpyxl

from kiemdiem import documents
from kiemdiem.documents import (
    SAMPLE_CHECKLIST,
    SAMPLE_LETTERHEAD,
    SAMPLE_ROWS,
    SAMPLE_SUMMARY,
    checklist_xlsx,
    classification_list_docx,
    docx_text,
    dossier_index_docx,
    statistics_xlsx,
)

DAY = dt.date(2023, 12, 5)
SCORED_ROWS = [dict(row) | {"score": score} for row, score in zip(SAMPLE_ROWS, (85.5, 90.0, None))]


def _checklist_rows() -> tuple[list[str], list[list]]:
    sheet = openpyxl.load_workbook(io.BytesIO(checklist_xlsx(SAMPLE_CHECKLIST, issued_on=DAY))).active
    first = documents.CHECKLIST_FIRST_ROW
    header = [sheet.cell(first - 1, c).value for c in range(1, sheet.max_column + 1)]
    rows = [[sheet.cell(r, c).value for c in range(1, sheet.max_column + 1)] for r in range(first, sheet.max_row + 1)]
    return header, rows


def test_the_checklist_says_a_correction_came_after_the_deadline():
    """First delivered on time, sent again after the deadline: not a bare "Có" next to the late receipt."""
    header, rows = _checklist_rows()
    resent = dict(zip(header, rows[0]))
    assert resent["Tình trạng"] == "Đã nộp"  # counted on time, as the status counts it
    # A date cell on the unit's clock, shown dd/mm/yyyy hh:mm: an office sorts and filters by it.
    assert resent[next(h for h in header if h.startswith("Nhận lúc"))] == dt.datetime(2023, 12, 6, 8, 0)
    sheet = openpyxl.load_workbook(io.BytesIO(checklist_xlsx(SAMPLE_CHECKLIST, issued_on=DAY))).active
    column = next(c for c in range(1, sheet.max_column + 1) if str(sheet.cell(documents.CHECKLIST_FIRST_ROW - 1, c).value).startswith("Nhận lúc"))
    assert sheet.cell(documents.CHECKLIST_FIRST_ROW, column).number_format == "dd/mm/yyyy hh:mm"
    assert resent["Đúng hạn / trễ hạn"] == "Đúng hạn (lần đầu 04/12/2023), nộp lại sau hạn 06/12/2023"
    assert dict(zip(header, rows[1]))["Đúng hạn / trễ hạn"] == "Trễ hạn"
    assert not dict(zip(header, rows[2]))["Đúng hạn / trễ hạn"]  # nothing received
    index = docx_text(dossier_index_docx(SAMPLE_LETTERHEAD, SAMPLE_CHECKLIST))
    assert "Đã nộp đúng hạn (lần đầu 04/12/2023), nộp lại sau hạn 06/12/2023" in index


def test_the_checklist_names_documents_in_vietnamese_and_keeps_the_code_apart():
    header, rows = _checklist_rows()
    assert "Loại" not in header
    assert header[1] == "Văn bản" and header[-1] == "Mã loại văn bản"
    first = dict(zip(header, rows[0]))
    assert first["Văn bản"] == "Biên bản hội nghị kiểm điểm, đánh giá, xếp loại"
    assert first["Mã loại văn bản"] == "bien_ban_hoi_nghi"


def _table(data: bytes) -> list[list[str]]:
    document = docx.Document(io.BytesIO(data))
    table = next(t for t in document.tables if t.rows[0].cells[0].text == "STT")
    return [[c.text for c in row.cells] for row in table.rows]


def test_the_classification_list_shows_the_score_when_the_rule_set_scores():
    cells = _table(classification_list_docx(SAMPLE_LETTERHEAD, SCORED_ROWS, unit_name="Chi bộ Văn phòng 1", year=2025, scored=True))
    assert cells[0] == ["STT", "Họ và tên", "Chi bộ", "Tự xếp loại", "Đề xuất", "Điểm", "Quyết định", "Ghi chú"]
    assert cells[1][5] == "85,5" and cells[2][5] == "90" and cells[3][5] == ""  # decimal comma; none: blank
    assert cells[1][6] == "HTTNV"
    # Other rule sets have no score: no column.
    plain = _table(classification_list_docx(SAMPLE_LETTERHEAD, SCORED_ROWS, unit_name="Chi bộ Văn phòng 1", year=2023))
    assert "Điểm" not in plain[0] and len(plain[0]) == 7


def test_the_statistics_workbook_lists_members_with_their_score_when_the_rule_set_scores():
    def list_sheet(scored: bool):
        data = statistics_xlsx({"SCT": SAMPLE_SUMMARY}, title="T", issued_on=DAY, rows=SCORED_ROWS, scored=scored)
        book = openpyxl.load_workbook(io.BytesIO(data))
        sheet = book[documents.LIST_SHEET]
        first = documents.LIST_FIRST_ROW
        header = [sheet.cell(first - 1, c).value for c in range(1, sheet.max_column + 1)]
        return header, [dict(zip(header, [sheet.cell(r, c).value for c in range(1, len(header) + 1)])) for r in range(first, sheet.max_row + 1)]

    header, rows = list_sheet(True)
    assert "Điểm" in header and header.index("Điểm") < header.index("Quyết định")
    assert [r["Mã đảng viên"] for r in rows] == ["DV001", "DV002", "DV003"]
    assert [r["Điểm"] for r in rows] == [85.5, 90.0, None]  # numbers: the reader's locale shows 85,5
    assert rows[0]["Quyết định"] == "HTTNV"
    header, rows = list_sheet(False)
    assert "Điểm" not in header and rows[0]["Họ và tên"] == "Nguyễn Sỹ Chín"


def test_the_report_lists_reasons_not_evaluated_in_the_usual_order_whatever_the_stored_key_order():
    """A stored snapshot comes back with sorted keys (exempt, new_member, suspended)."""
    summary = dict(SAMPLE_SUMMARY)
    summary["members"] = dict(SAMPLE_SUMMARY["members"])
    summary["members"]["not_evaluated"] = dict(sorted(SAMPLE_SUMMARY["members"]["not_evaluated"].items()))
    text = docx_text(documents.consolidated_report_docx(SAMPLE_LETTERHEAD, summary, year=2023, plan_number="187-KH/ĐU"))
    positions = [text.index(name) for name in ("Miễn công tác và sinh hoạt đảng:", "Đình chỉ sinh hoạt đảng:", "Mới kết nạp dưới 6 tháng:")]
    assert positions == sorted(positions)


def test_the_report_tells_an_organization_awaiting_its_committees_decision_from_one_that_sent_nothing():
    """A branch that sent its self-assessment waits on the committee: the report said it had sent no result."""
    summary = dict(SAMPLE_SUMMARY)
    summary["organizations"] = dict(SAMPLE_SUMMARY["organizations"], classified=1, missing=2)
    summary["missing_results"] = {"members": [], "organizations": ["KC", "VP2"]}
    subtree = {"VP2": {"unit": {"code": "VP2", "result": {"level": None, "self_level": "HTTNV"}}}}
    text = docx_text(documents.consolidated_report_docx(SAMPLE_LETTERHEAD, summary, year=2023, plan_number="187-KH/ĐU",
                                                        unit_names={"KC": "Chi bộ Khuyến công", "VP2": "Chi bộ Văn phòng 2"},
                                                        subtree=subtree))
    assert ("đã có quyết định xếp loại: 1; chưa có quyết định: 2 (trong đó 1 tổ chức đã tự đánh giá, chờ cấp ủy quyết định; "
            "1 tổ chức chưa gửi kết quả)") in text
    awaiting = text[text.index("chờ cấp ủy có thẩm quyền quyết định xếp loại:"):text.index("chưa gửi kết quả xếp loại:")]
    assert "Chi bộ Văn phòng 2 (VP2): tự đánh giá, đề nghị Hoàn thành tốt nhiệm vụ (HTTNV)." in awaiting
    assert "Chi bộ Khuyến công" not in awaiting
    assert "Chi bộ Khuyến công (KC)." in text[text.index("chưa gửi kết quả xếp loại:"):]
    assert "Đề nghị các tổ chức đảng chưa gửi đủ kết quả khẩn trương hoàn thành" in text
    # Every organization assessed itself: nothing is asked of them.
    summary["missing_results"] = {"members": [], "organizations": ["VP2"]}
    text = docx_text(documents.consolidated_report_docx(SAMPLE_LETTERHEAD, summary, year=2023, plan_number="187-KH/ĐU", subtree=subtree))
    assert "khẩn trương" not in text and "Kết quả quyết định xếp loại gửi bổ sung sẽ được tổng hợp lại." in text


def test_a_branchs_report_gives_its_own_self_assessment_while_the_committee_has_not_decided():
    summary = {**SAMPLE_SUMMARY, "unit": {"code": "VP2", "name": "Chi bộ Văn phòng 2", "kind": "chi_bo_truc_thuoc", "parent": "SCT",
                                          "result": {"level": None, "self_level": "HTXSNV"}}}
    text = docx_text(documents.consolidated_report_docx(SAMPLE_LETTERHEAD, summary, year=2023, plan_number="187-KH/ĐU"))
    assert "Chi bộ Văn phòng 2 tự đánh giá, đề nghị xếp loại: Hoàn thành xuất sắc nhiệm vụ (HTXSNV); chờ cấp ủy cấp trên quyết định." in text


def test_the_lists_total_adds_up_to_its_rows():
    """152 members listed, 135 with a level: the other 17 (no result yet, not evaluated) are said too."""
    rows = [dict(SAMPLE_ROWS[0]), dict(SAMPLE_ROWS[1]), dict(SAMPLE_ROWS[1], member_id="DV009", final_level=None),
            dict(SAMPLE_ROWS[2], evaluated=False)]
    text = docx_text(classification_list_docx(SAMPLE_LETTERHEAD, rows, unit_name="Đảng bộ Sở Công Thương", year=2023))
    assert ("Tổng số: 4 đảng viên; trong đó được xếp loại HTXSNV: 0; HTTNV: 2; HTNV: 0; KHTNV: 0; chưa có kết quả xếp loại: 1; "
            "không đánh giá, xếp loại: 1.") in text
    everyone = docx_text(classification_list_docx(SAMPLE_LETTERHEAD, rows[:2], unit_name="Đảng bộ Sở Công Thương", year=2023))
    assert "Tổng số: 2 đảng viên; trong đó được xếp loại HTXSNV: 0; HTTNV: 2; HTNV: 0; KHTNV: 0." in everyone
