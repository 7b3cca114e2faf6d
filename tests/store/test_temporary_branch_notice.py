"""The branch where a member is temporarily active is asked for its written comment on them.

KH-DUK-HT-2022, Mục A.2.2: a member in temporary activity is classified by the official branch,
on the comment of the branch where they are temporarily active, which that branch gives to the
official one. On a small Hà Tĩnh tree, T1 belongs to CS1 and is temporarily at CS2. The branches'
meeting is due Thu 01/12/2022; reminders go out 5, 3, 1 and 0 working days before: Thu 24/11,
Mon 28/11, Wed 30/11, Thu 01/12. CS2 is asked on the mornings CS1 is reminded of T1's comment,
in the digest its own items make (or alone when it owes nothing), once per morning whatever the
reruns, and no more once CS1 has the comment.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from kiemdiem import steps
from kiemdiem.settings import ReminderSettings
from kiemdiem.status import owed_items
from kiemdiem.store.models import Notice, Outbox
from kiemdiem.store.queries import load_members, load_units
from kiemdiem.store.results import STRUCTURED_DOC_TYPES
from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.store.test_escalation_ladder_store import tick
from tests.support import hatinh_campaign, ict, readable_list

CAMPAIGN = "ht"
PHASE = "chi_bo_kiem_diem"
COMMENT = "nhan_xet_noi_sinh_hoat_tam_thoi"
ITEM = f"CS1:{PHASE}:{COMMENT}:T1"
SECTION = "NHẬN XÉT ĐẢNG VIÊN SINH HOẠT TẠM THỜI TẠI CHI BỘ"
LINE = "▸ Đồng chí Lê Thị Tâm (mã T1) – sinh hoạt chính thức tại Chi bộ Sở Tư pháp (mã CS1); hạn nộp của chi bộ đó: 01/12/2022"

UNITS = """code,name,kind,parent,emails
KHOI,Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh,cap_tren_co_so,,btc@khoi.example.vn
CS1,Chi bộ Sở Tư pháp,chi_bo_co_so,KHOI,cs1@example.vn
CS2,Chi bộ Sở Nội vụ,chi_bo_co_so,KHOI,cs2@example.vn
"""

MEMBERS = """member_id,full_name,unit,email,joined_on,status,temporary_unit,positions
M1,Nguyễn Văn An,CS1,,01/01/2000,active,,bi_thu
T1,Lê Thị Tâm,CS1,,01/01/2010,active,CS2,
M2,Trần Thị Bình,CS2,,01/01/2001,active,,bi_thu
"""


pytestmark = pytest.mark.usefixtures("default_working_hours")


@pytest.fixture
def plan(store, tmp_path):
    return hatinh_campaign(store, tmp_path / "org", UNITS, MEMBERS, campaign_id=CAMPAIGN)


def _reminders(store, recipient: str, day: dt.date) -> list[Outbox]:
    with store.uow() as uow:
        rows = uow.session.scalars(
            select(Outbox).where(Outbox.campaign_id == CAMPAIGN, Outbox.kind == "reminder", Outbox.recipient == recipient)
        ).all()
        for row in rows:
            uow.session.expunge(row)
    return [o for o in rows if (o.created_at + dt.timedelta(hours=7)).date() == day]


def _comment_notices(store) -> list[tuple[str, int, bool, bool]]:
    """(recipient, step, sent, cancelled) of every notice about T1's comment."""
    with store.uow() as uow:
        rows = uow.session.execute(
            select(Notice.recipient, Notice.step, Notice.outbox_id, Notice.cancelled_at).where(Notice.item_key == ITEM)
        ).all()
    return sorted((r, s, o is not None, c is not None) for r, s, o, c in rows)


def _outbox_count(store) -> int:
    with store.uow() as uow:
        return uow.session.scalar(select(func.count()).select_from(Outbox))


def _deliver_comment(store, plan, at: dt.datetime) -> None:
    with store.uow() as uow:
        record_submission(uow, store.blobs, plan, CAMPAIGN, "CS1", COMMENT, [IncomingFile("nhan_xet.pdf", data=b"%PDF T1")], at, "web",
                          member_code="T1", phase_id=PHASE)
        uow.commit()


def test_the_temporary_branch_is_asked_once_per_offset_until_the_comment_arrives(store, plan):
    # Thu 24/11 (5 working days before): CS2's own reminder carries the request, with T1, CS1 and CS1's deadline.
    tick(store, plan, CAMPAIGN, ict(2022, 11, 24, 8))
    [mail] = _reminders(store, "cs2@example.vn", dt.date(2022, 11, 24))
    assert "Chi bộ Sở Nội vụ" in mail.body_text and "Báo cáo kiểm điểm tập thể" in mail.body_text  # its own items
    assert SECTION in mail.body_text and LINE in mail.body_text
    assert "gửi bản nhận xét cho chi bộ nơi đảng viên sinh hoạt chính thức" in mail.body_text
    assert "Nhắc hạn" in mail.subject and "đề nghị nhận xét 1 đảng viên sinh hoạt tạm thời" in mail.subject
    assert "Nhận xét đảng viên sinh hoạt tạm thời tại chi bộ" in mail.body_html
    assert "Lê Thị Tâm" in mail.body_html and "mã T1" in mail.body_html and "<strong>01/12/2022</strong>" in mail.body_html
    # CS1 owes the item: it is reminded of it as its own, not asked to comment.
    [own] = _reminders(store, "cs1@example.vn", dt.date(2022, 11, 24))
    assert "Nhận xét của chi bộ nơi sinh hoạt tạm thời" in own.body_text and "Lê Thị Tâm (mã T1)" in own.body_text
    assert SECTION not in own.body_text
    assert _comment_notices(store) == [("cs1@example.vn", 5, True, False), ("cs2@example.vn", 5, True, False)]

    # The same tick run again plans and sends nothing more.
    before = _outbox_count(store)
    assert tick(store, plan, CAMPAIGN, ict(2022, 11, 24, 8)) == 0
    assert _outbox_count(store) == before

    # Mon 28/11 (3 days): a tick that crashed after planning is finished by the next run, once.
    tick(store, plan, CAMPAIGN, ict(2022, 11, 28, 8), crash_before_compose=True)
    assert not _reminders(store, "cs2@example.vn", dt.date(2022, 11, 28))
    tick(store, plan, CAMPAIGN, ict(2022, 11, 28, 8))
    [mail] = _reminders(store, "cs2@example.vn", dt.date(2022, 11, 28))
    assert LINE in mail.body_text
    # At the official branch's offsets, no others.
    assert _comment_notices(store) == [
        ("cs1@example.vn", 3, True, False), ("cs1@example.vn", 5, True, False),
        ("cs2@example.vn", 3, True, False), ("cs2@example.vn", 5, True, False),
    ]

    # Wed 30/11 (1 day): planned, then CS1 receives the comment before the digests are composed.
    tick(store, plan, CAMPAIGN, ict(2022, 11, 30, 8), crash_before_compose=True)
    assert ("cs2@example.vn", 1, False, False) in _comment_notices(store)
    _deliver_comment(store, plan, ict(2022, 11, 30, 8, 30))
    tick(store, plan, CAMPAIGN, ict(2022, 11, 30, 9))
    [mail] = _reminders(store, "cs2@example.vn", dt.date(2022, 11, 30))
    assert "Báo cáo kiểm điểm tập thể" in mail.body_text  # CS2 still owes its own
    assert SECTION not in mail.body_text and "Lê Thị Tâm" not in mail.body_text and "sinh hoạt tạm thời" not in mail.subject
    # Thu 01/12 (0 days): CS2 is not asked again.
    tick(store, plan, CAMPAIGN, ict(2022, 12, 1, 8))
    [mail] = _reminders(store, "cs2@example.vn", dt.date(2022, 12, 1))
    assert "Lê Thị Tâm" not in mail.body_text
    assert [n for n in _comment_notices(store) if n[1] < 3] == [("cs1@example.vn", 1, False, True), ("cs2@example.vn", 1, False, True)]


def test_a_branch_owing_nothing_that_morning_is_asked_in_a_digest_of_its_own(store, plan):
    # CS2 delivered all it owes on 21/11: on 24/11 the request is all its reminder says.
    with store.uow() as uow:
        cs2 = next(u for u in load_units(uow, CAMPAIGN) if u.code == "CS2")
        own = [m for m in load_members(uow, CAMPAIGN) if m.unit_code == "CS2"]
        for phase in plan.phases_for_kind(cs2.kind):
            for item in owed_items(phase, cs2, own):
                if not item.required:
                    continue
                name, data = "f.pdf", item.key.encode()
                if item.doc_type in STRUCTURED_DOC_TYPES:
                    name, data = readable_list(item.doc_type, "CS2", [m.code for m in own])
                record_submission(uow, store.blobs, plan, CAMPAIGN, "CS2", item.doc_type, [IncomingFile(name, data=data)],
                                  ict(2022, 11, 21, 9), "web", member_code=item.member_code, phase_id=phase.id)
        uow.commit()
    tick(store, plan, CAMPAIGN, ict(2022, 11, 24, 8))
    [mail] = _reminders(store, "cs2@example.vn", dt.date(2022, 11, 24))
    assert mail.subject == "[KH/ĐUK (Hà Tĩnh, 2022)] Nhắc hạn: đề nghị nhận xét 1 đảng viên sinh hoạt tạm thời – hạn gần nhất 01/12/2022"
    assert SECTION in mail.body_text and LINE in mail.body_text
    assert "còn thiếu" not in mail.body_text and "CÁCH NỘP" not in mail.body_text
    assert mail.attachments == []  # no calendar file: the deadline is CS1's, not CS2's
    assert "Nhận xét đảng viên sinh hoạt tạm thời tại chi bộ" in mail.body_html and "Cách nộp" not in mail.body_html
    assert "đề nghị nhận xét 1 đảng viên sinh hoạt tạm thời" in mail.reason


def test_planning_by_partitions_asks_the_same(store, plan, tmp_path):
    """One unit per partition: CS1's partition asks CS2, which lies in another one."""
    hatinh_campaign(store, tmp_path / "org2", UNITS, MEMBERS, campaign_id="ht2")
    now = ict(2022, 11, 24, 8)
    phases = set(steps.open_phase_ids(plan, now))
    settings = ReminderSettings()
    steps.plan_reminders(store, plan, CAMPAIGN, now, sorted(phases), settings, partitioned=False)
    steps.plan_partitioned(store, plan, "ht2", now, phases, steps.REMINDER, settings, max_members=1)
    with store.uow() as uow:
        rows = uow.session.execute(select(Notice.campaign_id, Notice.recipient, Notice.item_key, Notice.step)).all()
    whole = {(r, k, s) for c, r, k, s in rows if c == CAMPAIGN}
    parts = {(r, k, s) for c, r, k, s in rows if c == "ht2"}
    assert ("cs2@example.vn", ITEM, 5) in whole
    assert parts == whole
