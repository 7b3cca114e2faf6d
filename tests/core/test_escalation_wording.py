"""Whom an escalation addresses, and what its subject says of the ladder's steps.

A letter to a person ("Đồng chí …") asks "đồng chí"; a letter to a body (a committee "Đảng ủy …",
a branch "Chi bộ …", an office or mailbox the plan names, "Ban Tổ chức Đảng ủy Khối") asks that
body by its name, and never speaks of "đồng chí"; a letter to an address the plan gives no name
for asks no one in particular. A digest whose items stand at different steps of the ladder says
so in its subject ("đôn đốc lần 1–2"), not only the highest step.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from kiemdiem.notify.messages import OutstandingItem, PhaseDue, addressee_kind, compose_escalation, compose_reminder

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2022, 12, 8, 8, 0, tzinfo=HCM)
SUBMIT_URL = "http://127.0.0.1:8080"


def _items(*units: tuple[str, str]) -> tuple[OutstandingItem, ...]:
    return tuple(OutstandingItem(code, name, "bien_ban_hoi_nghi", "Biên bản hội nghị") for code, name in units)


def _due(units, step=2, late=5, phase_id="chi_bo_kiem_diem", name="Chi bộ kiểm điểm, đánh giá, xếp loại", day=1) -> PhaseDue:
    return PhaseDue("KH/ĐUK", "Ban Thường vụ Đảng ủy Khối", phase_id, name, datetime(2022, 12, day, 23, 59, tzinfo=HCM),
                    f"trước ngày {day:02d}/12/2022", _items(*units), overdue_working_days=late, step=step)


THREE = (("CS1", "Chi bộ Sở Tư pháp"), ("CB1", "Chi bộ Văn phòng Sở Y tế"), ("CB2", "Chi bộ Bệnh viện tỉnh"))


def _both(message) -> str:
    return message.text + message.html


@pytest.mark.parametrize(("name", "kind"), [
    ("Đồng chí Lê Xuân Tiến, Phó Bí thư Đảng ủy Sở", "person"),
    ("Ban Tổ chức Đảng ủy Khối", "body"),
    ("Đảng ủy Sở Công Thương", "body"),
    ("Chi bộ Văn phòng 2", "body"),
    ("duk.btc@dongnai.gov.vn", "mailbox"),
])
def test_who_a_recipient_name_stands_for(name, kind):
    assert addressee_kind(name) == kind


def test_the_plans_mailbox_is_asked_as_the_office_it_is():
    """KH-DUK-HT-2022's last step: "Kính gửi: Ban Tổ chức Đảng ủy Khối" was followed by "đề nghị
    đồng chí chỉ đạo" and "thuộc phạm vi theo dõi của đồng chí"."""
    msg = compose_escalation("Ban Tổ chức Đảng ủy Khối", [_due(THREE)], submit_url=SUBMIT_URL, now=NOW)
    assert msg.text.startswith("Kính gửi: Ban Tổ chức Đảng ủy Khối,\n")
    assert ("Tính đến 08:00 ngày 08/12/2022, 3 đơn vị sau đã quá hạn 5 ngày làm việc mà vẫn còn thiếu 3 mục hồ sơ "
            "trong 1 giai đoạn.\nĐây là thông báo đôn đốc lần 3; đề nghị Ban Tổ chức Đảng ủy Khối đôn đốc, chỉ đạo "
            "các đơn vị hoàn thành và nộp ngay.") in msg.text
    assert "đề nghị Ban Tổ chức Đảng ủy Khối đôn đốc, chỉ đạo các đơn vị hoàn thành và nộp ngay." in msg.html
    assert "<strong>3 đơn vị</strong> sau" in msg.html
    assert "đồng chí" not in _both(msg).lower()


def test_a_committee_is_asked_by_its_name():
    msg = compose_escalation("Đảng ủy Sở Y tế", [_due(THREE[1:], step=0, late=1)], submit_url=SUBMIT_URL, now=NOW)
    assert "2 đơn vị sau đã quá hạn 1 ngày làm việc" in msg.text
    assert "đề nghị Đảng ủy Sở Y tế đôn đốc, chỉ đạo các đơn vị hoàn thành và nộp ngay." in msg.text
    assert "đồng chí" not in _both(msg).lower()


def test_one_late_unit_is_named():
    msg = compose_escalation("Ban Tổ chức Đảng ủy Khối", [_due(THREE[:1])], submit_url=SUBMIT_URL, now=NOW)
    assert "08:00 ngày 08/12/2022, Chi bộ Sở Tư pháp đã quá hạn 5 ngày làm việc" in msg.text
    assert "đề nghị Ban Tổ chức Đảng ủy Khối đôn đốc, chỉ đạo đơn vị hoàn thành và nộp ngay." in msg.text
    assert "<strong>Chi bộ Sở Tư pháp</strong> đã <strong style=\"color:#b00020;\">quá hạn 5 ngày làm việc</strong>" in msg.html


def test_a_person_is_still_asked_as_a_comrade():
    msg = compose_escalation("Đồng chí Lê Xuân Tiến, Phó Bí thư Đảng ủy Sở", [_due(THREE, step=0, late=1)],
                             submit_url=SUBMIT_URL, now=NOW)
    assert "3 đơn vị thuộc phạm vi theo dõi của đồng chí đã quá hạn 1 ngày làm việc" in msg.text
    assert "đề nghị đồng chí chỉ đạo các đơn vị hoàn thành và nộp ngay." in msg.text
    assert "đề nghị đồng chí chỉ đạo các đơn vị hoàn thành và nộp ngay." in msg.html


def test_an_address_without_a_name_is_asked_impersonally():
    """897-CV/ĐUK's step names only duk.btc@dongnai.gov.vn: nobody to call "đồng chí"."""
    msg = compose_escalation("duk.btc@dongnai.gov.vn", [_due(THREE, step=1, late=2)], submit_url=SUBMIT_URL, now=NOW)
    assert "3 đơn vị sau đã quá hạn 2 ngày làm việc" in msg.text
    assert "Đây là thông báo đôn đốc lần 2; đề nghị đôn đốc, chỉ đạo các đơn vị hoàn thành và nộp ngay." in msg.text
    assert "đồng chí" not in _both(msg).lower()


def test_a_committee_is_asked_to_finish_its_own_report():
    late = _due((("SCT", "Đảng bộ Sở Công Thương"),), step=0, late=1)
    msg = compose_escalation("Đảng ủy Sở Công Thương", [late], submit_url=SUBMIT_URL, now=NOW)
    assert "Đảng bộ Sở Công Thương đã quá hạn 1 ngày làm việc" in msg.text
    assert "đề nghị Đảng ủy Sở Công Thương hoàn thành và nộp ngay." in msg.text
    assert "đồng chí" not in _both(msg).lower() and "chỉ đạo" not in _both(msg)


def test_a_reminder_to_an_office_of_several_units_does_not_speak_of_a_comrade():
    due = replace(_due(THREE[1:]), overdue_working_days=None, step=None, deadline=datetime(2022, 12, 12, 23, 59, tzinfo=HCM))
    office = compose_reminder("Đảng ủy Sở Y tế", [due], submit_url=SUBMIT_URL, now=NOW)
    assert "2 đơn vị sau còn thiếu 2 mục hồ sơ" in office.text and "đồng chí" not in _both(office).lower()
    person = compose_reminder("Đồng chí Bí thư", [due], submit_url=SUBMIT_URL, now=NOW)
    assert "2 đơn vị do đồng chí phụ trách còn thiếu 2 mục hồ sơ" in person.text


# ------------------------------------------------------------------ item 3: mixed steps


def test_a_digest_of_phases_at_different_steps_names_every_step_in_its_subject():
    """Both phases 5 working days late, one at step 0 (a unit under the root), one at step 2: the
    subject said "(đôn đốc lần 3)" and "trong đó 1 mục quá hạn 5 ngày" though all were."""
    msg = compose_escalation(
        "Ban Tổ chức Đảng ủy Khối",
        [_due(THREE[:1], step=0), _due(THREE[1:], step=2, phase_id="bo_phan", name="Đảng bộ bộ phận kiểm điểm", day=2)],
        submit_url=SUBMIT_URL, now=NOW,
    )
    assert msg.subject == "[KH/ĐUK] Quá hạn 5 ngày làm việc: 3 mục còn thiếu tại 3 đơn vị (đôn đốc lần 1–3)"
    assert "Đây là thông báo đôn đốc lần" not in msg.text
    assert "- Chi bộ kiểm điểm, đánh giá, xếp loại (hạn 01/12/2022): 1 mục quá hạn 5 ngày làm việc, đôn đốc lần 1\n" in msg.text
    assert "- Đảng bộ bộ phận kiểm điểm (hạn 02/12/2022): 2 mục quá hạn 5 ngày làm việc, đôn đốc lần 3\n" in msg.text
    assert "với mức quá hạn khác nhau" not in msg.text  # the delay is the same: only the steps differ


def test_a_phase_whose_units_stand_at_different_steps_says_so():
    """One phase: a unit under the root at step 0, one deeper at step 1 (the first tick after a gap)."""
    msg = compose_escalation("Ban Tổ chức Đảng ủy Khối", [replace(_due(THREE[:2], step=1, late=2), first_step=0)],
                             submit_url=SUBMIT_URL, now=NOW)
    assert msg.subject == "[KH/ĐUK] Quá hạn 2 ngày làm việc: 2 mục còn thiếu tại 2 đơn vị (đôn đốc lần 1–2)"
    assert "2 mục quá hạn 2 ngày làm việc, đôn đốc lần 1–2" in msg.text
    assert "đôn đốc <strong>lần 1–2</strong>" in msg.html


def test_different_delays_and_steps_keep_the_worst_delay_on_its_own_items():
    msg = compose_escalation(
        "Ban Tổ chức Đảng ủy Khối",
        [_due(THREE[:1], step=1, late=4), _due(THREE[1:], step=0, late=1, phase_id="bo_phan", name="Đảng bộ bộ phận kiểm điểm", day=5)],
        submit_url=SUBMIT_URL, now=NOW,
    )
    assert msg.subject == ("[KH/ĐUK] Quá hạn: 3 mục còn thiếu tại 3 đơn vị (đôn đốc lần 1–2), "
                           "trong đó 1 mục quá hạn 4 ngày làm việc")
    assert "trong 2 giai đoạn với mức quá hạn khác nhau:" in msg.text


def test_one_step_and_one_delay_read_as_before():
    msg = compose_escalation("Văn phòng Đảng ủy", [_due(THREE, step=2, late=3)], submit_url=SUBMIT_URL, now=NOW)
    assert msg.subject == "[KH/ĐUK] Quá hạn 3 ngày làm việc: 3 mục còn thiếu tại 3 đơn vị (đôn đốc lần 3)"
