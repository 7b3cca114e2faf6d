"""An escalation digest that carries phases late by different amounts states each phase's own
delay and ladder step, and never puts the worst phase's figures on every item.

Plan 187-KH/ĐU, one tick at Wed 06/12/2023 08:00 (as ``kiemdiem tick --at "06/12/2023 08:00"``):
the branches' draft report (due Thu 30/11) is 4 working days late, past step 1 of the ladder
(2 working days, to the root); the meeting's dossier (due Tue 05/12 23:59) is 1 working day
late, at step 0. Every branch is directly under the Đảng ủy Sở, the root: step 1 would tell its
office again what step 0 told it, and is not planned, so both phases stand at step 0 (phases at
different steps: tests/store/test_escalation_ladder_store.py). VP1 sent its draft on time, so
its assigned committee member hears of one phase only. Sent through a real SMTP server on
loopback, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from sqlalchemy import select

from kiemdiem import steps
from kiemdiem.notify.sink import MailSink
from kiemdiem.settings import SmtpSettings
from kiemdiem.store.models import Notice, Outbox
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.support import ict, write_small_org

CAMPAIGN = "c187"
NOW = ict(2023, 12, 6, 8)
ROOT_OFFICE = "vanphong@sct.example.vn"


@pytest.fixture
def mails(store, plan_187, tmp_path):
    units, members = write_small_org(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan_187, CAMPAIGN, ict(2023, 11, 20, 7))
        import_organization(uow, CAMPAIGN, units, members, ict(2023, 11, 20, 7))
        record_submission(uow, store.blobs, plan_187, CAMPAIGN, "VP1", "du_thao_bao_cao_kiem_diem",
                          [IncomingFile("du_thao.pdf", data=b"%PDF VP1")], ict(2023, 11, 28, 9), "web",
                          phase_id="chuan_bi_chi_bo")
        uow.commit()
    with MailSink(tmp_path / "mail") as sink:
        asyncio.run(steps.tick_once(store, plan_187, CAMPAIGN, NOW, SmtpSettings(host="127.0.0.1", port=sink.port, timeout=5)))
        received = [m for m in sink.received if "Quá hạn" in str(m.message["Subject"])]
    with store.uow() as uow:
        # Items per (recipient, phase) the digests carry, from the notices they link.
        rows = uow.session.execute(
            select(Notice.recipient, Notice.phase_id, Notice.item_key, Notice.step).where(Notice.kind == "escalation", Notice.outbox_id.is_not(None))
        ).all()
        reasons = dict(uow.session.execute(select(Outbox.recipient, Outbox.reason).where(Outbox.kind == "escalation")).all())
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    phase_steps: dict[tuple[str, str], int] = defaultdict(int)
    for recipient, phase_id, key, step in rows:  # an item may be linked at two steps
        keys[recipient, phase_id].add(key)
        phase_steps[recipient, phase_id] = max(phase_steps[recipient, phase_id], step)
    items = {k: len(v) for k, v in keys.items()}
    by_rcpt = {rcpt: m for m in received for rcpt in m.rcpt_tos}
    return by_rcpt, items, phase_steps, reasons


def _text(mail) -> str:
    return mail.message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def _html(mail) -> str:
    return mail.message.get_body(("html",)).get_content()


def test_each_phase_of_an_escalation_digest_states_its_own_delay_and_step(mails):
    by_rcpt, items, phase_steps, reasons = mails
    draft, review = items[(ROOT_OFFICE, "chuan_bi_chi_bo")], items[(ROOT_OFFICE, "chi_bo_kiem_diem")]
    assert draft == 2  # VP2's and KC's drafts; VP1 sent its own
    assert review > 10
    # Step 1 (to: root) would reach the office step 0 reached: the root is every branch's parent.
    assert phase_steps[(ROOT_OFFICE, "chuan_bi_chi_bo")] == 0 and phase_steps[(ROOT_OFFICE, "chi_bo_kiem_diem")] == 0
    mail = by_rcpt[ROOT_OFFICE]
    # The worst delay names only the items it is true of; the step is every item's.
    assert str(mail.message["Subject"]) == (
        f"[187-KH/ĐU] Quá hạn: {draft + review} mục còn thiếu tại 3 đơn vị (đôn đốc lần 1), "
        f"trong đó {draft} mục quá hạn 4 ngày làm việc"
    )
    text = _text(mail)
    assert text.startswith("Kính gửi: Đảng ủy Sở Công Thương,\n")
    assert (
        f"Tính đến 08:00 ngày 06/12/2023, 3 đơn vị sau còn thiếu {draft + review} mục hồ sơ "
        "đã quá hạn, trong 2 giai đoạn với mức quá hạn khác nhau:\n"
        "- Chi bộ gửi dự thảo báo cáo kiểm điểm tới người dự hội nghị (hạn 30/11/2023): "
        f"{draft} mục quá hạn 4 ngày làm việc, đôn đốc lần 1\n"
        "- Chi bộ trực thuộc kiểm điểm, đánh giá, xếp loại và gửi hồ sơ điểm 4.1 về Thường trực Đảng ủy Sở "
        f"(hạn 05/12/2023): {review} mục quá hạn 1 ngày làm việc, đôn đốc lần 1\n"
        "Đề nghị Đảng ủy Sở Công Thương đôn đốc, chỉ đạo các đơn vị hoàn thành và nộp ngay.\n"
    ) in text
    assert "đã quá hạn 4 ngày làm việc mà vẫn còn thiếu" not in text and "đồng chí" not in text
    html = _html(mail)
    assert f"{draft} mục <strong style=\"color:#b00020;\">quá hạn 4 ngày làm việc</strong>, đôn đốc <strong>lần 1</strong>" in html
    assert f"{review} mục <strong style=\"color:#b00020;\">quá hạn 1 ngày làm việc</strong>, đôn đốc <strong>lần 1</strong>" in html
    assert reasons[ROOT_OFFICE] == (
        f"chuyển cấp: {draft + review} mục ở 2 giai đoạn (chuan_bi_chi_bo: {draft} mục quá hạn 4 ngày làm việc, bước 0; "
        f"chi_bo_kiem_diem: {review} mục quá hạn 1 ngày làm việc, bước 0)"
    )


def test_a_digest_whose_phases_share_their_figures_states_them_once(mails):
    by_rcpt, items, _, reasons = mails
    # Nguyễn Sỹ Chín is assigned to VP1, which owes only the meeting's dossier: one phase, step 0.
    review = items[("chin@sct.example.vn", "chi_bo_kiem_diem")]
    assert review and ("chin@sct.example.vn", "chuan_bi_chi_bo") not in items
    mail = by_rcpt["chin@sct.example.vn"]
    assert str(mail.message["Subject"]) == f"[187-KH/ĐU] Quá hạn 1 ngày làm việc: {review} mục còn thiếu tại 1 đơn vị (đôn đốc lần 1)"
    # A person, asked as "đồng chí"; its one late unit named.
    assert (
        f"Chi bộ Văn phòng 1 đã quá hạn 1 ngày làm việc mà vẫn còn thiếu {review} mục hồ sơ trong 1 giai đoạn.\n"
        "Đây là thông báo đôn đốc lần 1; đề nghị đồng chí chỉ đạo đơn vị hoàn thành và nộp ngay."
    ) in _text(mail)
    assert reasons["chin@sct.example.vn"] == f"chuyển cấp bước 0: {review} mục quá hạn 1 ngày làm việc ở 1 giai đoạn"
    # Lê Xuân Tiến (VP2) hears of both phases at step 0, late by 4 and by 1 working days.
    tien = items[("tien@sct.example.vn", "chuan_bi_chi_bo")], items[("tien@sct.example.vn", "chi_bo_kiem_diem")]
    assert str(by_rcpt["tien@sct.example.vn"].message["Subject"]) == (
        f"[187-KH/ĐU] Quá hạn: {sum(tien)} mục còn thiếu tại 1 đơn vị (đôn đốc lần 1), trong đó {tien[0]} mục quá hạn 4 ngày làm việc"
    )
