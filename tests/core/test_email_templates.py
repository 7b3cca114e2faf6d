"""Email composition: declared placeholders, every template rendered strictly, MIME round trip."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from email.headerregistry import Address
from zoneinfo import ZoneInfo

import pytest
from jinja2 import UndefinedError

from aiosmtplib.email import flatten_message
from kiemdiem.notify import messages
from kiemdiem.notify.messages import (
    PURPOSES,
    ComposedMessage,
    OutstandingItem,
    PhaseDue,
    build_mime,
    compose_consolidation_diff,
    compose_escalation,
    compose_invite,
    compose_reminder,
    format_date,
    format_time,
    make_message_id,
    validate_templates,
)
from kiemdiem.settings import templates_dir

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2023, 11, 30, 8, 0, tzinfo=HCM)
SUBMIT_URL = "http://127.0.0.1:8080"
SENDER = "Văn phòng Đảng ủy <vanphong@kiemdiem.local>"


def _item(unit="CB01", unit_name="Chi bộ Văn phòng Sở", doc="bao_cao_kiem_diem_tap_the",
          doc_name="Báo cáo kiểm điểm tập thể", member_id=None, member_name=None):
    return OutstandingItem(unit, unit_name, doc, doc_name, member_id, member_name)


@pytest.fixture
def two_phases_five_items() -> list[PhaseDue]:
    """A branch secretary answering for two branches, owing five items in two phases."""
    review = PhaseDue(
        "187-KH/ĐU", "Đảng ủy Sở Công Thương", "kiem_diem_chi_bo",
        "Chi bộ kiểm điểm và gửi hồ sơ đánh giá, xếp loại",
        datetime(2023, 12, 5, 23, 59, tzinfo=HCM), "trước 23:59 ngày 05/12/2023",
        (
            _item(),
            _item(doc="ban_kiem_diem_ca_nhan", doc_name="Bản kiểm điểm cá nhân",
                  member_id="DV0007", member_name="Nguyễn Thị Hạnh"),
            _item(doc="ban_kiem_diem_ca_nhan", doc_name="Bản kiểm điểm cá nhân",
                  member_id="DV0012", member_name="Trần Văn Đức"),
            _item(unit="CB02", unit_name="Chi bộ Kế hoạch & <Tài chính>",
                  doc="bien_ban_hoi_nghi", doc_name="Biên bản hội nghị"),
        ),
    )
    remediation = PhaseDue(
        "187-KH/ĐU", "Đảng ủy Sở Công Thương", "khac_phuc_chi_bo",
        "Chi bộ gửi kế hoạch khắc phục", datetime(2023, 12, 28, 17, 0, tzinfo=HCM),
        "trước 17:00 ngày 28/12/2023",
        (_item(doc="ke_hoach_khac_phuc", doc_name="Kế hoạch khắc phục hạn chế, khuyết điểm"),),
    )
    return [remediation, review]  # out of order on purpose: the digest sorts by deadline


def _parse(mime) -> email.message.EmailMessage:
    raw = flatten_message(mime, utf8=False, cte_type="7bit")  # what aiosmtplib puts on the wire
    return email.message_from_bytes(raw, policy=email.policy.default)


# ------------------------------------------------------------------- declared placeholders


def test_every_template_renders_strictly_against_the_declared_samples():
    assert validate_templates() == []


def test_every_purpose_has_both_templates_and_samples():
    assert set(PURPOSES) == {"reminder", "escalation", "consolidation_diff", "invite"}
    for purpose in PURPOSES.values():
        assert (templates_dir() / "email" / purpose.text_template).is_file()
        assert (templates_dir() / "email" / purpose.html_template).is_file()
        for placeholder in purpose.placeholders:
            assert placeholder.description and placeholder.sample is not None


@pytest.fixture
def template_copy(tmp_path):
    target = tmp_path / "email"
    shutil.copytree(templates_dir() / "email", target)
    return target


def test_validation_reports_an_undeclared_variable(template_copy):
    path = template_copy / "invite.txt.j2"
    path.write_text(path.read_text(encoding="utf-8") + "{{ secret_token }}\n", encoding="utf-8")
    problems = validate_templates(template_copy)
    assert any("secret_token" in p and "invite.txt.j2" in p for p in problems), problems


def test_validation_reports_a_bad_attribute_in_an_included_template(template_copy):
    path = template_copy / "_outstanding.html.j2"
    path.write_text(path.read_text(encoding="utf-8").replace("unit.unit_name", "unit.unitname"),
                    encoding="utf-8")
    problems = validate_templates(template_copy)
    assert any("unitname" in p for p in problems), problems


def test_validation_reports_a_missing_template_and_a_stray_one(template_copy):
    (template_copy / "escalation.html.j2").unlink()
    (template_copy / "farewell.txt.j2").write_text("x", encoding="utf-8")
    problems = validate_templates(template_copy)
    assert any("escalation.html.j2" in p for p in problems), problems
    assert any("farewell.txt.j2" in p for p in problems), problems


def test_validation_reports_a_missing_subject(template_copy):
    path = template_copy / "invite.txt.j2"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.split("\n", 1)[1], encoding="utf-8")
    assert any("subject" in p for p in validate_templates(template_copy))


def test_strict_undefined_is_on():
    env = messages.environment()
    with pytest.raises(UndefinedError):
        env.from_string("{{ nothing_here }}").render()


# ------------------------------------------------------------------------------- filters


def test_date_filters_use_vietnam_time():
    utc_evening = datetime(2023, 12, 5, 17, 30, tzinfo=UTC)  # 00:30 next day in Hà Nội
    assert format_date(utc_evening) == "06/12/2023"
    assert format_time(utc_evening) == "00:30"
    with pytest.raises(ValueError):
        format_date(datetime(2023, 12, 5))


# ---------------------------------------------------------------------------------- reminder


SHARE = "\\\\vanphong\\kiemdiem-nhan"


def test_reminder_is_one_digest_of_everything_outstanding(two_phases_five_items):
    msg = compose_reminder("Đồng chí Bí thư", two_phases_five_items, submit_url=SUBMIT_URL,
                           now=NOW, drop_share=SHARE)
    assert msg.subject == (
        "[187-KH/ĐU] Nhắc hạn: 2 giai đoạn, 5 mục còn thiếu – hạn gần nhất 05/12/2023"
    )
    text = msg.text
    assert "Kính gửi: Đồng chí Bí thư" in text
    assert "Còn 3 ngày làm việc" in text
    # phases in deadline order, each with date, hour and the reading of the deadline
    first = text.index("Chi bộ kiểm điểm và gửi hồ sơ")
    second = text.index("Chi bộ gửi kế hoạch khắc phục")
    assert first < second
    assert "Hạn: 05/12/2023 lúc 23:59 (trước 23:59 ngày 05/12/2023)" in text
    assert "Hạn: 28/12/2023 lúc 17:00 (trước 17:00 ngày 28/12/2023)" in text
    # grouped by unit, members named for per-member documents, drop folders shown
    assert "Chi bộ Văn phòng Sở (mã CB01)" in text
    assert "Chi bộ Kế hoạch & <Tài chính> (mã CB02)" in text  # text is not escaped
    assert "Bản kiểm điểm cá nhân – còn thiếu của 2 đảng viên" in text
    assert "Nguyễn Thị Hạnh (mã DV0007) → thư mục CB01/kiem_diem_chi_bo/ban_kiem_diem_ca_nhan/DV0007/" in text
    assert "Trần Văn Đức (mã DV0012)" in text
    assert "CB02/kiem_diem_chi_bo/bien_ban_hoi_nghi/" in text
    assert SUBMIT_URL in text
    assert f"thư mục tiếp nhận {SHARE} theo quy ước <mã đơn vị>/[<mã giai đoạn>/]<loại văn bản>/[<mã đảng viên>/]" in text
    assert text.count("Chi bộ Văn phòng Sở (mã CB01)") == 2  # once per phase
    # HTML says the same, escaped
    html = msg.html
    assert "Chi bộ Kế hoạch &amp; &lt;Tài chính&gt;" in html
    assert "<Tài chính>" not in html
    assert "Nguyễn Thị Hạnh" in html and "05/12/2023 lúc 23:59" in html
    assert f'href="{SUBMIT_URL}"' in html
    assert [a.filename for a in msg.attachments] == [
        "han-187-kh-du-kiem-diem-chi-bo.ics", "han-187-kh-du-khac-phuc-chi-bo.ics",
    ]
    assert all(a.content_type == "text/calendar; method=PUBLISH" for a in msg.attachments)


def test_reminder_on_the_deadline_day(two_phases_five_items):
    on_the_day = datetime(2023, 12, 5, 8, 0, tzinfo=HCM)  # "today" is the tick's date, not the step
    msg = compose_reminder("A", two_phases_five_items[1:], submit_url=SUBMIT_URL,
                           now=on_the_day)
    assert "Hôm nay là hạn nộp (23:59 ngày 05/12/2023)" in msg.text
    assert "<strong>Hôm nay là hạn nộp</strong> (23:59 ngày 05/12/2023)" in msg.html
    assert msg.subject == "[187-KH/ĐU] Nhắc hạn: 1 giai đoạn, 4 mục còn thiếu – hạn gần nhất 05/12/2023"


def test_member_without_a_name_is_shown_by_id():
    due = PhaseDue("1-KH", "X", "p", "P", datetime(2023, 12, 1, 17, tzinfo=HCM), "trước 17:00",
                   (_item(doc="ban_cam_ket", doc_name="Bản cam kết", member_id="DV9"),))
    msg = compose_reminder("A", [due], submit_url=SUBMIT_URL, now=NOW, drop_share=SHARE)
    assert "DV9 (mã DV9) → thư mục CB01/p/ban_cam_ket/DV9/" in msg.text


def test_without_a_shared_folder_no_folder_is_mentioned(two_phases_five_items):
    """The drop folder is on the server: a branch secretary told to put files there could not."""
    msg = compose_reminder("A", two_phases_five_items, submit_url=SUBMIT_URL, now=NOW)
    escalation = compose_escalation("A", [replace(d, overdue_working_days=2, step=1) for d in two_phases_five_items],
                                    submit_url=SUBMIT_URL, now=NOW)
    for text in (msg.text, msg.html, escalation.text, escalation.html):
        assert "thư mục" not in text.lower() and "CB01/ban_kiem_diem_ca_nhan" not in text and "loại văn bản>/" not in text
    assert "Nguyễn Thị Hạnh (mã DV0007)\n" in msg.text and SUBMIT_URL in msg.text
    assert "<th" in msg.html and "Thư mục nộp" not in msg.html


def test_a_digest_needs_something_to_say():
    with pytest.raises(ValueError):
        compose_reminder("A", [], submit_url=SUBMIT_URL, now=NOW)


def test_composition_is_deterministic(two_phases_five_items):
    a = compose_reminder("A", two_phases_five_items, submit_url=SUBMIT_URL,
                         now=NOW)
    b = compose_reminder("A", list(reversed(two_phases_five_items)), submit_url=SUBMIT_URL,
                         now=NOW)
    assert a == b


# -------------------------------------------------------------------------- other purposes


def test_escalation_names_the_delay_and_the_step(two_phases_five_items):
    late = [replace(d, step=2, overdue_working_days=3) for d in two_phases_five_items[1:]]
    msg = compose_escalation("Văn phòng Đảng ủy", late, submit_url=SUBMIT_URL,
                             now=datetime(2023, 12, 8, 9, 0, tzinfo=HCM))
    assert msg.subject == ("[187-KH/ĐU] Quá hạn 3 ngày làm việc: 4 mục còn thiếu tại 2 đơn vị "
                           "(đôn đốc lần 3)")
    assert "quá hạn 3 ngày làm việc" in msg.text
    assert "lần 3" in msg.text and "lần 3" in msg.html
    assert "Tính đến 09:00 ngày 08/12/2023" in msg.text
    assert "Nguyễn Thị Hạnh" in msg.text
    assert msg.attachments == ()


def test_escalation_words_each_phase_with_its_own_delay_and_step(two_phases_five_items):
    # 06/12/2023 under 187-KH/ĐU: the draft 4 working days late at step 1, the meeting's 4 items
    # 1 working day late at step 0. The draft's figures must not be put on all five items.
    review = two_phases_five_items[1]
    draft = PhaseDue("187-KH/ĐU", "Đảng ủy Sở Công Thương", "chuan_bi_chi_bo", "Chi bộ gửi dự thảo báo cáo",
                     datetime(2023, 11, 30, 23, 59, tzinfo=HCM), "trước 23:59 ngày 30/11/2023",
                     (_item(unit="CB02", unit_name="Chi bộ Kế hoạch & <Tài chính>", doc="du_thao_bao_cao_kiem_diem",
                            doc_name="Dự thảo báo cáo kiểm điểm"),),
                     overdue_working_days=4, step=1)
    review = replace(review, overdue_working_days=1, step=0)
    msg = compose_escalation("Văn phòng Đảng ủy", [review, draft], submit_url=SUBMIT_URL,
                             now=datetime(2023, 12, 6, 8, 0, tzinfo=HCM))
    # The steps of all items (lần 1 and 2), then the worst delay on the items it is true of.
    assert msg.subject == ("[187-KH/ĐU] Quá hạn: 5 mục còn thiếu tại 2 đơn vị (đôn đốc lần 1–2), "
                           "trong đó 1 mục quá hạn 4 ngày làm việc")
    assert (
        "Tính đến 08:00 ngày 06/12/2023, 2 đơn vị sau còn thiếu 5 mục hồ sơ "
        "đã quá hạn, trong 2 giai đoạn với mức quá hạn khác nhau:\n"
        "- Chi bộ gửi dự thảo báo cáo (hạn 30/11/2023): 1 mục quá hạn 4 ngày làm việc, đôn đốc lần 2\n"
        "- Chi bộ kiểm điểm và gửi hồ sơ đánh giá, xếp loại (hạn 05/12/2023): 4 mục quá hạn 1 ngày làm việc, "
        "đôn đốc lần 1\n"
    ) in msg.text
    assert "quá hạn 4 ngày làm việc mà vẫn còn thiếu" not in msg.text
    assert "Đây là thông báo đôn đốc lần" not in msg.text
    assert ('1 mục <strong style="color:#b00020;">quá hạn 4 ngày làm việc</strong>, đôn đốc <strong>lần 2</strong>'
            in msg.html)
    assert ('4 mục <strong style="color:#b00020;">quá hạn 1 ngày làm việc</strong>, đôn đốc <strong>lần 1</strong>'
            in msg.html)
    # The same phases at the same figures: one figure for all, as before.
    same = compose_escalation("Văn phòng Đảng ủy", [replace(draft, overdue_working_days=1, step=0), review],
                              submit_url=SUBMIT_URL, now=datetime(2023, 12, 6, 8, 0, tzinfo=HCM))
    assert same.subject == ("[187-KH/ĐU] Quá hạn 1 ngày làm việc: 5 mục còn thiếu tại 2 đơn vị "
                            "(đôn đốc lần 1)")


def test_escalation_needs_each_phase_figures(two_phases_five_items):
    with pytest.raises(ValueError):
        compose_escalation("A", two_phases_five_items, submit_url=SUBMIT_URL, now=NOW)


def test_consolidation_diff_shows_the_text_and_attaches_the_table():
    diff = {"members": [{"member_id": "DV0012", "old_level": "HTNV", "new_level": "HTTNV"}],
            "totals": [{"unit_code": "DB01", "changes": [{"field": "HTTNV", "old": 41, "new": 42}]}],
            "findings_appeared": [{"rule": "cap_20", "unit_code": "DB01"}]}
    table = "\ufeffThay đổi,Mã đơn vị\r\nKết quả đảng viên,DB01\r\n".encode()
    msg = compose_consolidation_diff("Văn phòng Đảng ủy", "187-KH/ĐU", "Đảng bộ Sở Công Thương",
                                     4, "Trần Văn Đức: HTNV → HTTNV\nHTTNV: 41 → 42", diff, NOW, table=table)
    assert msg.subject == ("[187-KH/ĐU] Kết quả tổng hợp của Đảng bộ Sở Công Thương thay đổi "
                           "(phiên bản 4) – 1 vi phạm mới")
    assert "Tóm tắt: 1 đảng viên có kết quả xếp loại mới hoặc thay đổi; 1 vi phạm quy định mới" in msg.text
    assert "Trần Văn Đức: HTNV → HTTNV\nHTTNV: 41 → 42" in msg.text
    assert "Phiên bản mới: 4, so với phiên bản 3." in msg.text and "số phiên bản có thể không liền nhau" in msg.text
    assert "<pre" in msg.html and "HTTNV: 41 → 42" in msg.html and "so với phiên bản 3" in msg.html
    (attachment,) = msg.attachments
    assert attachment.filename == "thay-doi-phien-ban-4.csv" and attachment.content_type.startswith("text/csv")
    assert attachment.data == table and "mở bằng Excel" in msg.text
    empty = compose_consolidation_diff("A", "1", "U", 2, "không đổi", {}, NOW)
    assert empty.attachments == () and "CSV" not in empty.text and "Tóm tắt" not in empty.text
    assert "so với phiên bản 1." in empty.text and "không liền nhau" not in empty.text
    assert empty.subject == "[1] Kết quả tổng hợp của U thay đổi (phiên bản 2)"


def test_invite_gives_the_link_and_its_expiry():
    link = "http://127.0.0.1:8080/dang-nhap?token=abc&unit=CB01"
    msg = compose_invite("Đồng chí Hạnh", "Chi bộ Văn phòng Sở", link,
                         datetime(2023, 12, 3, 8, 0, tzinfo=HCM))
    assert msg.subject == "Đường dẫn đăng nhập cổng nộp hồ sơ – Chi bộ Văn phòng Sở"
    assert link in msg.text
    assert "08:00 ngày 03/12/2023" in msg.text
    assert 'href="http://127.0.0.1:8080/dang-nhap?token=abc&amp;unit=CB01"' in msg.html
    # The office sent it unasked: someone who is not in charge says so rather than ignore it.
    assert "Nếu đồng chí không phụ trách Chi bộ Văn phòng Sở, xin báo lại cho văn phòng đã gửi thư này" in msg.text
    assert "không đề nghị" not in msg.text and "không đề nghị" not in msg.html


# ----------------------------------------------------------------------------------- MIME


def test_make_message_id_is_deterministic():
    a = make_message_id("reminder:CB01:2023-12-02:3")
    assert a == make_message_id("reminder:CB01:2023-12-02:3")
    assert a != make_message_id("reminder:CB01:2023-12-02:2")
    assert a.startswith("<") and a.endswith("@kiemdiem.local>")
    assert make_message_id("k", "example.vn").endswith("@example.vn>")


def test_build_mime_round_trip(two_phases_five_items):
    composed = compose_reminder("Đồng chí Bí thư", two_phases_five_items, submit_url=SUBMIT_URL,
                                now=NOW)
    message_id = make_message_id("reminder:1")
    mime = build_mime(composed, sender=SENDER, recipient="Nguyễn Thị Hạnh <hanh@example.vn>",
                      message_id=message_id, date=NOW)
    raw = flatten_message(mime, utf8=False, cte_type="7bit")
    assert raw.isascii()  # headers encoded, bodies transfer-encoded
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "[187-KH/ĐU] Nhắc hạn: 2 giai đoạn, 5 mục còn thiếu – hạn gần nhất 05/12/2023"
    assert parsed["Message-ID"] == message_id
    assert parsed["From"].addresses == (Address("Văn phòng Đảng ủy", addr_spec="vanphong@kiemdiem.local"),)
    assert parsed["To"].addresses == (Address("Nguyễn Thị Hạnh", addr_spec="hanh@example.vn"),)
    assert parsed["Date"].datetime == NOW
    assert parsed.get_content_type() == "multipart/mixed"
    alternative = parsed.get_payload()[0]
    assert alternative.get_content_type() == "multipart/alternative"
    def body(kind: str) -> str:  # MIME text is CRLF on the wire
        return parsed.get_body((kind,)).get_content().replace("\r\n", "\n")

    assert body("plain") == composed.text
    assert body("html") == composed.html
    calendars = [p for p in parsed.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(calendars) == 2 and calendars[0].get_param("method") == "PUBLISH"
    assert calendars[0].get_payload(decode=True) == composed.attachments[0].data


def test_build_mime_without_attachments_is_multipart_alternative():
    mime = build_mime(compose_invite("A", "Chi bộ", "http://x/y", NOW), sender=SENDER,
                      recipient="a@example.vn", message_id="<x@y>", date=NOW)
    parsed = _parse(mime)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]


@pytest.mark.parametrize(
    "subject",
    [
        "Đường dẫn đăng nhập cổng nộp hồ sơ – Chi bộ Văn phòng Sở",
        "[187-KH/ĐU] Quá hạn 3 ngày làm việc: 14 mục còn thiếu tại 6 đơn vị (đôn đốc lần 3)",
        "Kết quả tổng hợp của Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh thay đổi  (phiên bản 12) ",
        "ASCII only subject, long enough to be folded by the generator at least once or twice ok",
        "ệ" * 90,
    ],
)
def test_vietnamese_subjects_decode_exactly(subject):
    mime = build_mime(ComposedMessage(subject, "t", "<p>h</p>"), sender=SENDER,
                      recipient="a@example.vn", message_id="<x@y>", date=NOW)
    raw = flatten_message(mime, utf8=False, cte_type="7bit")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject


def test_headers_refuse_line_breaks():
    with pytest.raises(ValueError):
        build_mime(ComposedMessage("a\r\nBcc: x@y", "t", "h"), sender=SENDER,
                   recipient="a@example.vn", message_id="<x@y>", date=NOW)
    with pytest.raises(ValueError):
        build_mime(ComposedMessage("s", "t", "h"), sender=SENDER, recipient="not an address",
                   message_id="<x@y>", date=NOW)


def test_validation_reports_a_broken_calendar_macro(template_copy):
    path = template_copy / "_calendar.txt.j2"
    path.write_text(path.read_text(encoding="utf-8").replace("phase.phase_name", "phase.title"),
                    encoding="utf-8")
    assert any("_calendar.txt.j2" in p for p in validate_templates(template_copy))


def _province_office_due(units: int, members_per_unit: int) -> PhaseDue:
    items = tuple(
        _item(unit=f"CB{u:04d}", unit_name=f"Chi bộ số {u}", doc="ban_kiem_diem_ca_nhan", doc_name="Bản kiểm điểm cá nhân",
              member_id=f"DV{u:04d}{m:02d}", member_name=f"Đảng viên {u}-{m}")
        for u in range(units) for m in range(members_per_unit)
    )
    return PhaseDue("KH/ĐUK", "Đảng ủy Khối", "chi_bo_kiem_diem", "Chi bộ kiểm điểm",
                    datetime(2022, 12, 5, 23, 59, tzinfo=HCM), "trước ngày 05/12/2022", items)


def test_a_digest_too_long_for_mail_counts_per_unit_then_stops_listing():
    due = _province_office_due(messages.MAX_LISTED_UNITS + 120, 10)  # 6,200 items
    message = compose_escalation("Văn phòng Tỉnh ủy", [replace(due, step=3, overdue_working_days=6)], submit_url=SUBMIT_URL, now=NOW)
    assert f"{len(due.items)} mục còn thiếu tại {messages.MAX_LISTED_UNITS + 120} đơn vị" in message.subject
    for body in (message.text, message.html):
        assert "Chi bộ số 0" in body and "còn thiếu 10 mục" in body
        assert f"Chi bộ số {messages.MAX_LISTED_UNITS - 1}<" in body or f"Chi bộ số {messages.MAX_LISTED_UNITS - 1} (" in body
        assert f"Chi bộ số {messages.MAX_LISTED_UNITS}" not in body.replace(f"Chi bộ số {messages.MAX_LISTED_UNITS - 1}", "")
        assert "và 120 đơn vị khác còn thiếu 1200 mục" in body
        assert "Đảng viên 0-0" not in body  # no member-level detail
        assert "trang theo dõi" in body
    mime = build_mime(message, sender=SENDER, recipient="vp@tinh.example.vn", message_id="<x@kiemdiem.local>", date=NOW)
    assert len(mime.as_bytes()) < 1_000_000  # the full list would be megabytes


def test_a_digest_within_bounds_lists_every_member():
    due = _province_office_due(10, messages.MAX_DETAILED_ITEMS // 10)
    message = compose_reminder("Chi ủy", [due], submit_url=SUBMIT_URL, now=NOW)
    assert all(f"Đảng viên {u}-{m}" in message.text for u in range(10) for m in range(messages.MAX_DETAILED_ITEMS // 10))
    assert "đơn vị khác" not in message.text and "quá dài" not in message.text


def test_the_top_units_own_office_is_asked_to_finish_not_to_direct_its_units():
    """The root has no one above it: its own overdue report went to its own office as "1 đơn vị thuộc
    phạm vi theo dõi của đồng chí … chỉ đạo các đơn vị"."""
    late = PhaseDue("187-KH/ĐU", "Đảng ủy Sở Công Thương", "dang_uy_bao_cao_khoi", "Đảng ủy Sở báo cáo Khối",
                    datetime(2023, 12, 10, 23, 59, 59, tzinfo=HCM), "trước ngày 10/12/2023",
                    (_item(unit="SCT", unit_name="Đảng bộ Sở Công Thương", doc="bao_cao", doc_name="Báo cáo kết quả"),),
                    overdue_working_days=1, step=0)
    now = datetime(2023, 12, 11, 8, 0, tzinfo=HCM)
    own = compose_escalation("Đảng ủy Sở Công Thương", [late], submit_url=SUBMIT_URL, now=now)
    assert "08:00 ngày 11/12/2023, Đảng bộ Sở Công Thương đã quá hạn 1 ngày làm việc" in own.text
    # A committee is asked by its name, not as "đồng chí" (see test_escalation_wording).
    assert "đề nghị Đảng ủy Sở Công Thương hoàn thành và nộp ngay." in own.text and "chỉ đạo" not in own.text + own.html
    above = compose_escalation("Đảng ủy Khối", [late], submit_url=SUBMIT_URL, now=now)
    assert "11/12/2023, Đảng bộ Sở Công Thương đã quá hạn" in above.text
    assert "đề nghị Đảng ủy Khối đôn đốc, chỉ đạo đơn vị hoàn thành và nộp ngay." in above.html
