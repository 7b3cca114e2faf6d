"""A unit's reminder carries its own items overdue in other phases; no email is sent just for them.

The small Hà Tĩnh tree of ``test_escalation_ladder_store``: the chi bộ cơ sở CS1 never sends its
meeting's dossier (due 01/12/2022) and sends its minutes late, on 07/12. On Thu 08/12 it is
reminded of the decisions due 15/12: that reminder also lists what it still owes from 28/11 and
01/12, with their deadlines and delays, without the minutes. CB1 (a chi bộ trực thuộc) owes
nothing after 01/12: it gets no email on 08/12.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from kiemdiem.notify import messages
from kiemdiem.store.models import Outbox
from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.store.test_escalation_ladder_store import MEMBERS, UNITS, mails, mornings, tick
from tests.support import hatinh_campaign, ict

MEETING = "Chi bộ cơ sở, chi bộ trực thuộc đảng ủy cơ sở kiểm điểm, đánh giá, xếp loại chất lượng"
DRAFT = "Chi bộ gửi dự thảo báo cáo kiểm điểm tới người dự hội nghị"


pytestmark = pytest.mark.usefixtures("default_working_hours")


@pytest.fixture
def plan(store, tmp_path):
    return hatinh_campaign(store, tmp_path / "org", UNITS, MEMBERS, campaign_id="ht")


def _overdue_part(text: str) -> str:
    start = text.index("CÁC MỤC ĐÃ QUÁ HẠN")
    return text[start:text.index("CÁCH NỘP", start)]


def _run(store, plan, last: dt.date) -> None:
    for now in mornings(dt.date(2022, 11, 28), last):
        tick(store, plan, "ht", now)
        if now.date() == dt.date(2022, 12, 7):
            with store.uow() as uow:
                record_submission(uow, store.blobs, plan, "ht", "CS1", "bien_ban_hoi_nghi",
                                  [IncomingFile("bien_ban.pdf", data=b"%PDF CS1")], ict(2022, 12, 7, 10), "web",
                                  phase_id="chi_bo_kiem_diem")
                uow.commit()


def test_a_reminder_lists_the_units_own_overdue_items(store, plan):
    _run(store, plan, dt.date(2022, 12, 8))
    reminders = mails(store, "ht", "reminder")
    mail = reminders[("cs1@example.vn", dt.date(2022, 12, 8))]
    assert "Nhắc hạn" in mail.subject and "hạn gần nhất 15/12/2022" in mail.subject
    part = _overdue_part(mail.body_text)
    assert "Ngoài các mục trên, Chi bộ Sở Tư pháp còn" in part
    assert f"[KH/ĐUK (Hà Tĩnh, 2022)] {DRAFT}\n   Hạn: 28/11/2022 lúc 23:59, đã quá hạn 8 ngày làm việc; còn thiếu 1 mục:" in part
    assert f"[KH/ĐUK (Hà Tĩnh, 2022)] {MEETING}\n   Hạn: 01/12/2022 lúc 23:59, đã quá hạn 5 ngày làm việc; còn thiếu 6 mục:" in part
    assert "- Báo cáo kiểm điểm tập thể" in part and "Nguyễn Văn An (mã M1)" in part
    assert "Biên bản hội nghị" not in part  # sent on 07/12
    assert "Các mục đã quá hạn" in mail.body_html
    assert "đã quá hạn" not in mail.subject
    # The draft was overdue when the meeting's reminders went out: they told CS1 then as well.
    before = reminders[("cs1@example.vn", dt.date(2022, 11, 30))]
    assert f"{DRAFT}\n   Hạn: 28/11/2022 lúc 23:59, đã quá hạn 2 ngày làm việc" in _overdue_part(before.body_text)
    assert "đã quá hạn 2 ngày làm việc; còn thiếu 1 mục:" in _overdue_part(before.body_text)
    # Escalations are unchanged: the root's office hears of CS1 as before.
    assert "Chi bộ Sở Tư pháp" in mails(store, "ht")[("btc@khoi.example.vn", dt.date(2022, 12, 2))].body_text


def test_no_email_just_for_overdue_items(store, plan):
    _run(store, plan, dt.date(2022, 12, 8))
    with store.uow() as uow:
        to_cb1 = uow.session.execute(select(Outbox.kind, Outbox.created_at).where(Outbox.recipient == "cb1@example.vn")).all()
    assert to_cb1 and all(kind == "reminder" for kind, _ in to_cb1)
    # CB1's last deadline is 01/12: nothing reaches it afterwards, though it still owes everything.
    assert max(created for _, created in to_cb1) < ict(2022, 12, 2)


def test_a_long_overdue_list_is_counted_not_listed(store, plan, monkeypatch):
    monkeypatch.setattr(messages, "MAX_OVERDUE_DETAILED_ITEMS", 3)
    _run(store, plan, dt.date(2022, 12, 8))
    part = _overdue_part(mails(store, "ht", "reminder")[("cs1@example.vn", dt.date(2022, 12, 8))].body_text)
    assert "▸ Chi bộ Sở Tư pháp (mã CS1): còn thiếu 1 mục" in part  # the draft
    assert "▸ Chi bộ Sở Tư pháp (mã CS1): còn thiếu 6 mục" in part  # the meeting's 7 items but the minutes
    assert "Báo cáo kiểm điểm tập thể" not in part and "Nguyễn Văn An" not in part
