"""The Hà Tĩnh ladder through the store, on a small tree: a chi bộ cơ sở directly under the Khối
(CS1) and a chi bộ trực thuộc two levels down (CB1, under the đảng bộ cơ sở DB1).

KH-DUK-HT-2022: the branches' meeting is due Thu 01/12/2022; step 0 (the parent) on Fri 02/12,
step 1 (the root) on Mon 05/12, step 2 (the Ban Tổ chức's mailbox) on Thu 08/12. The root's
office hears of CS1 on 02/12 and not again on 05/12, where it hears of CB1 alone. A tick run
again, a tick that crashed after planning, and planning by partitions change none of it.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from kiemdiem import steps
from kiemdiem.settings import ReminderSettings, SmtpSettings
from kiemdiem.store.models import Notice, Outbox, Unit
from kiemdiem.store.ticks import finish_tick
from tests.support import hatinh_campaign, ict

ROOT = "btc@khoi.example.vn"
MAILBOX = "buixuandung@hatinh.dcs.vn"
PHASE = "chi_bo_kiem_diem"

UNITS = f"""code,name,kind,parent,emails
KHOI,Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh,cap_tren_co_so,,{ROOT}
CS1,Chi bộ Sở Tư pháp,chi_bo_co_so,KHOI,cs1@example.vn
DB1,Đảng bộ Sở Y tế,dang_bo_co_so,KHOI,db1@example.vn
CB1,Chi bộ Văn phòng Sở Y tế,chi_bo_truc_thuoc,DB1,cb1@example.vn
"""

MEMBERS = """member_id,full_name,unit,email,joined_on,status,temporary_unit,positions
M1,Nguyễn Văn An,CS1,,01/01/2000,active,,bi_thu
M2,Trần Thị Bình,CB1,,01/01/2001,active,,bi_thu
"""


pytestmark = pytest.mark.usefixtures("default_working_hours")


def mornings(first: dt.date, last: dt.date):
    day = first
    while day <= last:
        yield ict(day.year, day.month, day.day, 8)
        day += dt.timedelta(days=1)


def tick(store, plan, campaign: str, now: dt.datetime, *, partitioned: bool | None = None, crash_before_compose: bool = False) -> int:
    """One pass as ``steps.tick_once`` makes it, without collecting or sending."""
    settings = ReminderSettings()
    phases = steps.phases_to_tick(store, plan, campaign, now)
    created = steps.plan_reminders(store, plan, campaign, now, phases, settings, partitioned=partitioned)
    created += steps.escalate_overdue(store, plan, campaign, now, phases, settings, partitioned=partitioned)
    if crash_before_compose:
        return created
    steps.compose(store, plan, campaign, now, settings, SmtpSettings())
    finish_tick(store, campaign, now, {})
    return created


def escalations(store, campaign: str, phase_id: str = PHASE) -> set[tuple[str, str, int]]:
    with store.uow() as uow:
        rows = uow.session.execute(
            select(Notice.recipient, Unit.code, Notice.step).join(Unit, Unit.id == Notice.unit_id)
            .where(Notice.campaign_id == campaign, Notice.kind == "escalation", Notice.phase_id == phase_id)
        ).all()
    return {tuple(r) for r in rows}


def mails(store, campaign: str, kind: str = "escalation") -> dict[tuple[str, dt.date], Outbox]:
    with store.uow() as uow:
        rows = uow.session.scalars(select(Outbox).where(Outbox.campaign_id == campaign, Outbox.kind == kind)).all()
        for row in rows:
            uow.session.expunge(row)
    return {(o.recipient, (o.created_at + dt.timedelta(hours=7)).date()): o for o in rows}


@pytest.fixture
def plan(store, tmp_path):
    return hatinh_campaign(store, tmp_path / "org", UNITS, MEMBERS, campaign_id="ht")


def test_a_unit_under_the_root_is_escalated_to_the_roots_office_once(store, plan):
    for now in mornings(dt.date(2022, 11, 28), dt.date(2022, 12, 9)):
        tick(store, plan, "ht", now)
    assert escalations(store, "ht") == {
        (ROOT, "CS1", 0), ("db1@example.vn", "CB1", 0), (ROOT, "CB1", 1), (MAILBOX, "CS1", 2), (MAILBOX, "CB1", 2),
    }
    sent = mails(store, "ht")
    on_02 = sent[(ROOT, dt.date(2022, 12, 2))]
    assert "Chi bộ Sở Tư pháp" in on_02.body_text and "Chi bộ Văn phòng Sở Y tế" not in on_02.body_text
    # 05/12: step 1 to the root. CS1's list went there on 02/12: only CB1, the first time it reaches the root.
    on_05 = sent[(ROOT, dt.date(2022, 12, 5))]
    assert "Chi bộ Văn phòng Sở Y tế" in on_05.body_text and "Chi bộ Sở Tư pháp" not in on_05.body_text
    assert on_05.subject.endswith("(đôn đốc lần 2)")
    # The ladder's last step still reaches the mailbox for both.
    on_08 = sent[(MAILBOX, dt.date(2022, 12, 8))]
    assert "Chi bộ Sở Tư pháp" in on_08.body_text and "Chi bộ Văn phòng Sở Y tế" in on_08.body_text


def test_rerun_crash_and_partitions_plan_the_same_notices(store, plan, tmp_path):
    """Campaign "ht" ticks every morning; "ht2", planned by partitions, crashes on 05/12 after
    planning and before composing, and ticks again at 10:00. Both plan and send the same."""
    hatinh_campaign(store, tmp_path / "org2", UNITS, MEMBERS, campaign_id="ht2")
    for now in mornings(dt.date(2022, 11, 28), dt.date(2022, 12, 9)):
        tick(store, plan, "ht", now)
        assert tick(store, plan, "ht", now) == 0  # run again at the same moment: nothing new
        if now.date() == dt.date(2022, 12, 5):
            tick(store, plan, "ht2", now, partitioned=True, crash_before_compose=True)
            now = now.replace(hour=10)
        tick(store, plan, "ht2", now, partitioned=True)
    for phase in ("chuan_bi_chi_bo", PHASE):
        assert escalations(store, "ht2", phase) == escalations(store, "ht", phase)
    assert "Chi bộ Sở Tư pháp" not in mails(store, "ht2")[(ROOT, dt.date(2022, 12, 5))].body_text


def test_the_first_tick_after_a_gap_says_which_steps_its_digest_holds(store, plan):
    """No tick before Mon 05/12: the root's office hears of CS1 at step 0 and of CB1 at step 1 in
    one digest (its subject said "đôn đốc lần 2" of both)."""
    tick(store, plan, "ht", ict(2022, 12, 5, 8))
    assert escalations(store, "ht") == {(ROOT, "CS1", 0), ("db1@example.vn", "CB1", 0), (ROOT, "CB1", 1)}
    [mail] = [m for (rcpt, _), m in mails(store, "ht").items() if rcpt == ROOT]
    per_phase: dict[str, int] = {}
    with store.uow() as uow:
        for phase_id, _key in uow.session.execute(  # items, each once whatever its steps
            select(Notice.phase_id, Notice.item_key).where(Notice.campaign_id == "ht", Notice.recipient == ROOT).distinct()
        ):
            per_phase[phase_id] = per_phase.get(phase_id, 0) + 1
    drafts, meeting = per_phase["chuan_bi_chi_bo"], per_phase[PHASE]
    assert drafts == 2 and meeting > 2
    assert mail.subject == (
        f"[KH/ĐUK (Hà Tĩnh, 2022)] Quá hạn: {drafts + meeting} mục còn thiếu tại 2 đơn vị (đôn đốc lần 1–2), "
        f"trong đó {drafts} mục quá hạn 5 ngày làm việc"
    )
    assert f"{meeting} mục quá hạn 2 ngày làm việc, đôn đốc lần 1–2" in mail.body_text
    assert mail.reason == (
        f"chuyển cấp: {drafts + meeting} mục ở 2 giai đoạn (chuan_bi_chi_bo: {drafts} mục quá hạn 5 ngày làm việc, bước 0–1; "
        f"{PHASE}: {meeting} mục quá hạn 2 ngày làm việc, bước 0–1)"
    )


def test_offices_are_asked_by_their_names(store, plan):
    for now in mornings(dt.date(2022, 12, 2), dt.date(2022, 12, 8)):
        tick(store, plan, "ht", now)
    sent = mails(store, "ht")
    mailbox = sent[(MAILBOX, dt.date(2022, 12, 8))].body_text
    assert mailbox.startswith("Kính gửi: Ban Tổ chức Đảng ủy Khối,")
    assert "2 đơn vị sau đã quá hạn 5 ngày làm việc" in mailbox
    assert "đề nghị Ban Tổ chức Đảng ủy Khối đôn đốc, chỉ đạo các đơn vị hoàn thành và nộp ngay." in mailbox
    committee = sent[("db1@example.vn", dt.date(2022, 12, 2))].body_text
    assert committee.startswith("Kính gửi: Đảng ủy Sở Y tế,")
    # Its one late unit, named, in two phases late by 4 and 1 working days (the draft and the meeting).
    assert "08:00 ngày 02/12/2022, Chi bộ Văn phòng Sở Y tế còn thiếu 8 mục hồ sơ đã quá hạn, trong 2 giai đoạn" in committee
    assert "\nĐề nghị Đảng ủy Sở Y tế đôn đốc, chỉ đạo đơn vị hoàn thành và nộp ngay.\n" in committee
    for mail in sent.values():
        assert "đồng chí" not in (mail.body_text + mail.body_html).lower(), mail.recipient
