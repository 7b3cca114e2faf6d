"""A unit's reminder also shows its own items already overdue in other phases, in a short section
of its own ("Các mục đã quá hạn": the phase, its deadline, how many working days late), bounded
like the rest of the digest. Without such items the reminder reads as before."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from kiemdiem.notify import messages
from kiemdiem.notify.messages import OutstandingItem, PhaseDue, compose_reminder

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2022, 12, 8, 8, 0, tzinfo=HCM)
SUBMIT_URL = "http://127.0.0.1:8080"
UNIT = ("CS1", "Chi bộ Sở Tư pháp")


def _upcoming() -> PhaseDue:
    item = OutstandingItem(*UNIT, "quyet_dinh_xep_loai", "Quyết định xếp loại")
    return PhaseDue("KH/ĐUK", "Ban Thường vụ Đảng ủy Khối", "nop_quyet_dinh", "Nộp quyết định kèm danh sách xếp loại",
                    datetime(2022, 12, 15, 23, 59, tzinfo=HCM), "trước ngày 15/12/2022", (item,))


def _overdue(members: int = 2, late: int = 5) -> PhaseDue:
    items = (OutstandingItem(*UNIT, "bao_cao_kiem_diem_tap_the", "Báo cáo kiểm điểm tập thể"),) + tuple(
        OutstandingItem(*UNIT, "ban_kiem_diem_ca_nhan", "Bản kiểm điểm cá nhân", f"DV{m:04d}", f"Đảng viên {m}")
        for m in range(members)
    )
    return PhaseDue("KH/ĐUK", "Ban Thường vụ Đảng ủy Khối", "chi_bo_kiem_diem", "Chi bộ kiểm điểm, đánh giá, xếp loại",
                    datetime(2022, 12, 1, 23, 59, tzinfo=HCM), "hoàn thành trước ngày 01/12/2022", items,
                    overdue_working_days=late)


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def test_the_reminder_lists_the_units_own_overdue_items_apart():
    msg = compose_reminder("Chi bộ Sở Tư pháp", [_upcoming()], submit_url=SUBMIT_URL, now=NOW, overdue=[_overdue()])
    # The reminder itself is about the coming deadline only.
    assert msg.subject == "[KH/ĐUK] Nhắc hạn: 1 giai đoạn, 1 mục còn thiếu – hạn gần nhất 15/12/2022"
    assert "Còn 5 ngày làm việc đến hạn nộp gần nhất" in msg.text
    section = _section(msg.text, "CÁC MỤC ĐÃ QUÁ HẠN", "CÁCH NỘP")
    assert "Ngoài các mục trên, Chi bộ Sở Tư pháp còn 3 mục đã quá hạn chưa nộp; đề nghị hoàn thành và nộp ngay:" in section
    assert ("1. [KH/ĐUK] Chi bộ kiểm điểm, đánh giá, xếp loại\n"
            "   Hạn: 01/12/2022 lúc 23:59, đã quá hạn 5 ngày làm việc; còn thiếu 3 mục:") in section
    assert "- Báo cáo kiểm điểm tập thể" in section
    assert "- Bản kiểm điểm cá nhân – còn thiếu của 2 đảng viên: Đảng viên 0 (mã DV0000), Đảng viên 1 (mã DV0001)" in section
    assert "Quyết định xếp loại" not in section
    html = _section(msg.html, "Các mục đã quá hạn", "Cách nộp")
    assert "đã quá hạn 5 ngày làm việc" in html and "Đảng viên 1" in html
    # Only the coming deadline gets a calendar file.
    assert [a.filename for a in msg.attachments] == ["han-kh-duk-nop-quyet-dinh.ics"]


def test_without_overdue_items_the_reminder_is_as_before():
    plain = compose_reminder("Chi bộ Sở Tư pháp", [_upcoming()], submit_url=SUBMIT_URL, now=NOW)
    assert plain == compose_reminder("Chi bộ Sở Tư pháp", [_upcoming()], submit_url=SUBMIT_URL, now=NOW, overdue=[])
    assert "quá hạn" not in plain.text.lower() and "quá hạn" not in plain.html.lower()


def test_a_deadline_passed_today_is_said_to_be_passed_without_a_count():
    msg = compose_reminder("Chi bộ Sở Tư pháp", [_upcoming()], submit_url=SUBMIT_URL, now=NOW, overdue=[_overdue(late=0)])
    assert "Hạn: 01/12/2022 lúc 23:59, đã quá hạn; còn thiếu 3 mục:" in msg.text
    assert "quá hạn 0 ngày" not in msg.text


def test_a_long_overdue_list_is_counted_per_unit():
    many = _overdue(members=messages.MAX_OVERDUE_DETAILED_ITEMS + 10)
    msg = compose_reminder("Chi bộ Sở Tư pháp", [_upcoming()], submit_url=SUBMIT_URL, now=NOW, overdue=[many])
    section = _section(msg.text, "CÁC MỤC ĐÃ QUÁ HẠN", "CÁCH NỘP")
    assert f"▸ Chi bộ Sở Tư pháp (mã CS1): còn thiếu {len(many.items)} mục" in section
    assert "Đảng viên 0" not in msg.text and "Đảng viên 0" not in msg.html
    assert len(msg.text) < 5000


def test_counts_alone_make_a_section():
    """The store gives counts per unit, not items, when there are too many to list."""
    counted = PhaseDue("KH/ĐUK", "X", "chi_bo_kiem_diem", "Chi bộ kiểm điểm", datetime(2022, 12, 1, 23, 59, tzinfo=HCM),
                       "trước ngày 01/12/2022", (), overdue_working_days=5, unit_counts=((*UNIT, 1234),))
    msg = compose_reminder("Chi bộ Sở Tư pháp", [_upcoming()], submit_url=SUBMIT_URL, now=NOW, overdue=[counted])
    assert "còn 1234 mục đã quá hạn chưa nộp" in msg.text
    assert "▸ Chi bộ Sở Tư pháp (mã CS1): còn thiếu 1234 mục" in msg.text
    assert "còn thiếu 1234 mục" in msg.html
