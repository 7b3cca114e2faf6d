"""How a reminder asks the branch where members are temporarily active for its written comment.

Its own section ("Nhận xét đảng viên sinh hoạt tạm thời tại chi bộ"), in text and HTML: each
member with their code, their official branch and that branch's deadline (dd/mm/yyyy); the
comment goes to the official branch, which submits it. Outside the digest's own figures and
calendar files; and a reminder may say nothing else.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from kiemdiem.notify.messages import CommentRequest, OutstandingItem, PhaseDue, compose_reminder

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2022, 11, 24, 8, 0, tzinfo=HCM)
SUBMIT_URL = "http://127.0.0.1:8080"
PLAN = "KH/ĐUK (Hà Tĩnh, 2022)"
MEETING = "Chi bộ cơ sở, chi bộ trực thuộc đảng ủy cơ sở kiểm điểm, đánh giá, xếp loại chất lượng"
MEETING_DEADLINE = datetime(2022, 12, 1, 23, 59, 59, tzinfo=HCM)
DECISIONS = "Nộp quyết định kèm danh sách xếp loại"
SECTION = "NHẬN XÉT ĐẢNG VIÊN SINH HOẠT TẠM THỜI TẠI CHI BỘ"


def _request(member: str, name: str, unit: str, unit_name: str, *, phase=("chi_bo_kiem_diem", MEETING),
             deadline=MEETING_DEADLINE) -> CommentRequest:
    return CommentRequest(PLAN, *phase, deadline, member, name, unit, unit_name)


COMMENTS = [
    _request("DV0203", "Phan Văn Hùng", "CB09", "Chi bộ Kế hoạch & <Tài chính>"),
    _request("DV0101", "Hoàng Thị Lan", "CB03", "Chi bộ Khuyến công"),
    _request("DV0101", "Hoàng Thị Lan", "CB03", "Chi bộ Khuyến công"),  # at two offsets in one digest: asked once
]


def _own() -> PhaseDue:
    items = (OutstandingItem("CB05", "Chi bộ Sở Nội vụ", "bao_cao_kiem_diem_tap_the", "Báo cáo kiểm điểm tập thể"),)
    return PhaseDue(PLAN, "Ban Thường vụ Đảng ủy Khối", "chi_bo_kiem_diem", MEETING, MEETING_DEADLINE, "hoàn thành trước ngày 01/12/2022", items)


def _section(text: str) -> str:
    start = text.index(SECTION)
    return text[start:text.index("CÁCH NỘP", start)] if "CÁCH NỘP" in text[start:] else text[start:]


def test_the_temporary_branch_is_asked_for_a_comment_that_goes_to_the_official_branch():
    msg = compose_reminder("Chi bộ Sở Nội vụ", [_own()], submit_url=SUBMIT_URL, now=NOW, comments=COMMENTS)
    part = _section(msg.text)
    assert ("Đề nghị Chi bộ Sở Nội vụ nhận xét bằng văn bản đối với từng đồng chí, gửi bản nhận xét cho chi bộ nơi đảng viên "
            "sinh hoạt chính thức trước hạn nộp của chi bộ đó") in part
    assert "chi bộ nơi sinh hoạt tạm thời không nộp bản nhận xét này lên hệ thống" in part
    assert "chi bộ nơi sinh hoạt chính thức của 2 đảng viên dưới đây chưa có bản nhận xét" in part
    # By official branch, then member; the official branch's deadline as dd/mm/yyyy on each.
    lan = "▸ Đồng chí Hoàng Thị Lan (mã DV0101) – sinh hoạt chính thức tại Chi bộ Khuyến công (mã CB03); hạn nộp của chi bộ đó: 01/12/2022"
    hung = ("▸ Đồng chí Phan Văn Hùng (mã DV0203) – sinh hoạt chính thức tại Chi bộ Kế hoạch & <Tài chính> (mã CB09);"
            " hạn nộp của chi bộ đó: 01/12/2022")
    assert f"1. [{PLAN}] {MEETING}\n   {lan}\n   {hung}\n" in part
    assert part.count("Hoàng Thị Lan") == 1
    assert msg.subject == (f"[{PLAN}] Nhắc hạn: 1 giai đoạn, 1 mục còn thiếu – hạn gần nhất 01/12/2022; "
                           "đề nghị nhận xét 2 đảng viên sinh hoạt tạm thời")
    # HTML: the same section, as a table, escaped.
    html = msg.html
    assert "<h3 style=\"font-size:16px;margin:20px 0 4px;\">Nhận xét đảng viên sinh hoạt tạm thời tại chi bộ</h3>" in html
    assert "<strong>gửi bản nhận xét cho chi bộ nơi đảng viên sinh hoạt chính thức</strong>" in html
    assert "<th style=\"border:1px solid #ddd;\">Chi bộ nơi sinh hoạt chính thức</th>" in html
    assert "Chi bộ Kế hoạch &amp; &lt;Tài chính&gt;<br><span style=\"color:#777;\">mã CB09</span>" in html
    assert "Hoàng Thị Lan<br><span style=\"color:#777;\">mã DV0101</span>" in html
    assert html.count("<strong>01/12/2022</strong>") == 2


def test_comments_leave_the_digest_figures_and_calendar_files_alone():
    plain = compose_reminder("Chi bộ Sở Nội vụ", [_own()], submit_url=SUBMIT_URL, now=NOW)
    asked = compose_reminder("Chi bộ Sở Nội vụ", [_own()], submit_url=SUBMIT_URL, now=NOW, comments=COMMENTS)
    assert asked.attachments == plain.attachments
    assert asked.text.replace(_section(asked.text), "") == plain.text
    assert SECTION not in plain.text and "sinh hoạt tạm thời" not in plain.html


def test_a_reminder_may_only_ask_for_comments():
    later = _request("DV0300", "Đặng Văn Phúc", "CB01", "Chi bộ Văn phòng", phase=("nop_quyet_dinh", DECISIONS),
                     deadline=datetime(2022, 12, 15, 23, 59, 59, tzinfo=HCM))
    msg = compose_reminder("Chi bộ Sở Nội vụ", [], submit_url=SUBMIT_URL, now=NOW, comments=[later, *COMMENTS])
    assert msg.subject == f"[{PLAN}] Nhắc hạn: đề nghị nhận xét 3 đảng viên sinh hoạt tạm thời – hạn gần nhất 01/12/2022"
    assert msg.text.startswith("Kính gửi: Chi bộ Sở Nội vụ,\n\nNHẬN XÉT ĐẢNG VIÊN SINH HOẠT TẠM THỜI TẠI CHI BỘ\n")
    assert msg.text.index(f"1. [{PLAN}] {MEETING}") < msg.text.index(f"2. [{PLAN}] {DECISIONS}")  # by deadline
    assert "hạn nộp của chi bộ đó: 15/12/2022" in msg.text
    assert "còn thiếu" not in msg.text and "CÁCH NỘP" not in msg.text and "Còn " not in msg.text
    assert msg.text.endswith(
        "Nếu chi bộ đã gửi bản nhận xét cho chi bộ nơi đảng viên sinh hoạt chính thức, xin bỏ qua thư này.\n\nTrân trọng.\n")
    assert msg.attachments == ()
    assert "Cách nộp" not in msg.html and "Nếu chi bộ đã gửi bản nhận xét" in msg.html


def test_a_reminder_still_needs_something_to_say():
    with pytest.raises(ValueError):
        compose_reminder("Chi bộ Sở Nội vụ", [], submit_url=SUBMIT_URL, now=NOW, comments=[])
