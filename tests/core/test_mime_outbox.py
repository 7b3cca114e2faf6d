"""``enqueue`` stores ``render_mime``'s bytes: on SQLite and PostgreSQL, the row holds the email
package's bytes for the message (boundaries from the Message-ID), and a second enqueue of the
same key changes nothing."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from kiemdiem.notify.messages import (
    OutstandingItem,
    PhaseDue,
    compose_reminder,
    legacy_mime_bytes,
    make_message_id,
)
from kiemdiem.store.models import Outbox
from kiemdiem.store.organization import create_campaign
from kiemdiem.store.outbox import enqueue, idempotency_key
from tests.flows.support import one_phase_plan
from tests.support import ict

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = ict(2023, 11, 30, 8)
SENDER = "Văn phòng Đảng ủy <vanphong@kiemdiem.local>"


def _reminder():
    items = (OutstandingItem("CB01", "Chi bộ Văn phòng & <Kho>", "bao_cao_kiem_diem_tap_the", "Báo cáo kiểm điểm tập thể"),) + tuple(
        OutstandingItem("CB01", "Chi bộ Văn phòng & <Kho>", "ban_kiem_diem_ca_nhan", "Bản kiểm điểm cá nhân",
                        f"DV{n:04d}", f"Nguyễn Thị Hạnh {n}")
        for n in range(40)
    )
    due = PhaseDue("187-KH/ĐU", "Đảng ủy Sở Công Thương", "kiem_diem_chi_bo",
                   "Chi bộ kiểm điểm và gửi hồ sơ đánh giá, xếp loại",
                   datetime(2023, 12, 5, 23, 59, tzinfo=HCM), "trước 23:59 ngày 05/12/2023", items)
    return compose_reminder("Đồng chí Bí thư", [due], submit_url="http://127.0.0.1:8080", now=NOW)


def test_enqueue_stores_the_email_packages_bytes(store):
    message = _reminder()
    with store.uow() as uow:
        create_campaign(uow, one_phase_plan(), "test", ict(2023, 11, 20))
        row_id = enqueue(uow, campaign_id="test", kind="reminder", recipient="hanh@example.vn",
                         recipient_name="Hạnh", message=message, key_material="k|1", reason="nhắc hạn",
                         now=NOW, sender=SENDER)
        again = enqueue(uow, campaign_id="test", kind="reminder", recipient="hanh@example.vn",
                        recipient_name="Hạnh", message=message, key_material="k|1", reason="nhắc hạn",
                        now=NOW, sender=SENDER)
        uow.commit()
    assert row_id is not None and again is None
    with store.uow() as uow:
        row = uow.session.scalars(select(Outbox).where(Outbox.id == row_id)).one()
        message_id = make_message_id(idempotency_key("k|1"))
        assert row.message_id == message_id
        assert row.mime == legacy_mime_bytes(message, sender=SENDER, recipient="hanh@example.vn",
                                             message_id=message_id, date=NOW)
        assert (row.subject, row.body_text, row.body_html) == (message.subject, message.text, message.html)
        assert row.attachments == [{"filename": a.filename, "content_type": a.content_type, "size": len(a.data)}
                                   for a in message.attachments]
        assert (row.status, row.attempts, row.gave_up, row.not_before, row.created_at) == ("queued", 0, False, NOW, NOW)
        stored = row.mime
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    assert parsed["Message-ID"] == message_id
    assert parsed["Subject"] == message.subject
    assert parsed.get_body(("html",)).get_content() == message.html
    assert [p.get_payload(decode=True) for p in parsed.iter_attachments()] == [a.data for a in message.attachments]
