"""What a reminder says about the time left: counted from the tick's now on the plan's calendar.

Under 187-KH/ĐU the Đảng ủy Sở reports to the Khối "trước ngày 10/12/2023", a Sunday: the
"0 working days" reminder goes out on Friday 08/12, which is not the deadline's day. And a
reminder planned by its step ("3 working days before") but sent later has fewer days left.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from kiemdiem import steps
from kiemdiem.calendar import WorkCalendar
from kiemdiem.notify.messages import OutstandingItem, PhaseDue, compose_reminder
from kiemdiem.plan import load_plan, parse_plan
from kiemdiem.reminders import current_reminder_offset
from kiemdiem.settings import ReminderSettings, SmtpSettings
from kiemdiem.store.models import Outbox
from kiemdiem.store.organization import create_campaign, import_organization
from tests.support import PLANS, write_small_org

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
SUBMIT_URL = "http://127.0.0.1:8080"
SUNDAY_NOTE = "Hạn nộp là 23:59 Chủ nhật, ngày 10/12/2023 (ngày nghỉ); hôm nay là ngày làm việc cuối cùng trước hạn."


def vn(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=HCM)


@pytest.fixture(scope="module")
def plan():
    return load_plan(PLANS / "187-KH-DU-2023.yaml")


def _due(plan, phase_id: str) -> PhaseDue:
    phase = plan.phase(phase_id)
    item = OutstandingItem("SCT", "Đảng bộ Sở Công Thương", "bao_cao_ket_qua_kiem_diem", "Báo cáo kết quả kiểm điểm")
    return PhaseDue(plan.number, plan.issuer, phase.id, phase.name, phase.deadline, phase.reading, (item,))


def test_a_sunday_deadline_is_not_called_today_on_the_friday_before(plan):
    friday = vn(2023, 12, 8, 8, 0)
    phase = plan.phase("dang_uy_bao_cao_khoi")
    assert current_reminder_offset(plan, phase, friday) == 0  # the step that fires that morning
    msg = compose_reminder("Văn phòng Đảng ủy", [_due(plan, phase.id)], submit_url=SUBMIT_URL,
                           now=friday, calendar=plan.calendar)
    assert "Hôm nay là hạn nộp" not in msg.text and "Hôm nay là hạn nộp" not in msg.html
    assert SUNDAY_NOTE in msg.text
    assert ("Hạn nộp là <strong>23:59 Chủ nhật, ngày 10/12/2023</strong> (ngày nghỉ); "
            "<strong>hôm nay là ngày làm việc cuối cùng trước hạn</strong>.") in msg.html


def test_without_the_plan_calendar_the_public_one_still_knows_sunday(plan):
    """The store's composer passes only the step today: Vietnam's public calendar still counts."""
    msg = compose_reminder("Văn phòng Đảng ủy", [_due(plan, "dang_uy_bao_cao_khoi")], submit_url=SUBMIT_URL,
                           now=vn(2023, 12, 8, 8, 0))
    assert SUNDAY_NOTE in msg.text


def test_over_the_weekend_only_sunday_itself_is_the_deadline_day(plan):
    dues = [_due(plan, "dang_uy_bao_cao_khoi")]
    saturday = compose_reminder("A", dues, submit_url=SUBMIT_URL, now=vn(2023, 12, 9, 8, 0), calendar=plan.calendar)
    assert "Hạn nộp là 23:59 Chủ nhật, ngày 10/12/2023 (ngày nghỉ); không còn ngày làm việc nào trước hạn." in saturday.text
    sunday = compose_reminder("A", dues, submit_url=SUBMIT_URL, now=vn(2023, 12, 10, 8, 0), calendar=plan.calendar)
    assert "Hôm nay là hạn nộp (23:59 ngày 10/12/2023)." in sunday.text


def test_after_the_deadline_no_time_is_said_to_be_left(plan):
    msg = compose_reminder("A", [_due(plan, "dang_uy_bao_cao_khoi")], submit_url=SUBMIT_URL,
                           now=vn(2023, 12, 11, 8, 0), calendar=plan.calendar)
    assert "Hạn nộp gần nhất (23:59 Chủ nhật, ngày 10/12/2023) đã qua; đề nghị nộp ngay." in msg.text
    assert "Hôm nay là hạn nộp" not in msg.text and "ngày làm việc đến hạn" not in msg.text


def test_a_holiday_deadline_is_named_from_the_plan_calendar():
    holiday = "Nghỉ theo quyết định của Tỉnh ủy"
    calendar = WorkCalendar(extra_holidays={dt.date(2023, 12, 8): holiday})
    item = OutstandingItem("CB01", "Chi bộ Văn phòng Sở", "bien_ban_hoi_nghi", "Biên bản hội nghị")
    due = PhaseDue("1-KH", "X", "p", "P", vn(2023, 12, 8, 17, 0), "trước 17:00 ngày 08/12/2023", (item,))
    thursday = compose_reminder("A", [due], submit_url=SUBMIT_URL, now=vn(2023, 12, 7, 8, 0), calendar=calendar)
    assert ("Hạn nộp là 17:00 thứ Sáu, ngày 08/12/2023 (ngày nghỉ: Nghỉ theo quyết định của Tỉnh ủy); "
            "hôm nay là ngày làm việc cuối cùng trước hạn.") in thursday.text
    tuesday = compose_reminder("A", [due], submit_url=SUBMIT_URL, now=vn(2023, 12, 5, 8, 0), calendar=calendar)
    assert ("Còn 2 ngày làm việc đến hạn nộp gần nhất "
            "(17:00 thứ Sáu, ngày 08/12/2023, là ngày nghỉ: Nghỉ theo quyết định của Tỉnh ủy).") in tuesday.text


def test_a_late_reminder_says_the_working_days_really_left(plan):
    """The campaign's first tick on Fri 01/12 plans the 3-day step for Tue 05/12: 2 days are left."""
    friday = vn(2023, 12, 1, 8, 0)
    phase = plan.phase("chi_bo_kiem_diem")
    assert current_reminder_offset(plan, phase, friday) == 3
    msg = compose_reminder("Chi bộ", [_due(plan, phase.id)], submit_url=SUBMIT_URL,
                           now=friday, calendar=plan.calendar)
    assert "Còn 2 ngày làm việc đến hạn nộp gần nhất (23:59 thứ Ba, ngày 05/12/2023)." in msg.text
    assert "Còn <strong>2 ngày làm việc</strong>" in msg.html
    assert "Còn 3 ngày làm việc" not in msg.text


def test_the_tick_on_friday_tells_the_office_the_sunday_deadline_honestly(store, tmp_path, monkeypatch):
    """Through the store: plan the reminders of Fri 08/12/2023 08:00, compose the digests."""
    plan = load_plan(PLANS / "187-KH-DU-2023.yaml")
    texts = _reminder_texts(store, tmp_path, monkeypatch, plan, "dang_uy_bao_cao_khoi", vn(2023, 12, 8, 8, 0), "vanphong@sct.example.vn")
    assert len(texts) == 1
    assert SUNDAY_NOTE in texts[0]
    assert "Hôm nay là hạn nộp" not in texts[0]


def test_the_tick_counts_the_days_left_on_the_plans_own_calendar(store, tmp_path, monkeypatch):
    """A day off the plan adds (Mon 04/12/2023) is not a working day left before Tue 05/12."""
    text = (PLANS / "187-KH-DU-2023.yaml").read_text(encoding="utf-8")
    assert "\ncalendar:" not in text
    text += '\ncalendar:\n  extra_holidays:\n    - date: "04/12/2023"\n      name: Nghỉ bù theo kế hoạch\n'
    plan = parse_plan(text, source="187 with a day off")
    texts = _reminder_texts(store, tmp_path, monkeypatch, plan, "chi_bo_kiem_diem", vn(2023, 12, 1, 8, 0))
    assert texts and all("Còn 1 ngày làm việc đến hạn nộp gần nhất" in t for t in texts), texts[0]
    # The plan's own words for what is owed, once per phase (plan 187 asks for mẫu 3đ).
    assert all("Kế hoạch ghi:" in t for t in texts)
    assert all(t.count("(mẫu 3đ)") == 1 for t in texts)
    # Items in the plan's order, as the notes below them (it was by document code).
    listed = texts[0][:texts[0].index("Kế hoạch ghi:")]
    order = ["Báo cáo kiểm điểm tập thể", "Bản kiểm điểm cá nhân", "Phiếu phân tích", "Bản nhận xét", "Biên bản hội nghị", "Tổng hợp kết quả", "Kết quả đánh giá"]
    assert [listed.index(f"- {name}") for name in order] == sorted(listed.index(f"- {name}") for name in order)
    assert "* Phiếu phân tích chất lượng và đánh giá xếp loại tổ chức cơ sở đảng: Phiếu phân tích" in texts[0]


def _reminder_texts(store, tmp_path, monkeypatch, plan, phase_id: str, now: dt.datetime, recipient: str | None = None) -> list[str]:
    """Through the store, at ``now``: a campaign on the small tree, the phase's reminders planned
    and composed; the texts of the reminder emails (to ``recipient``, or all)."""
    monkeypatch.delenv("KIEMDIEM_REMINDERS_WORK_START", raising=False)
    monkeypatch.delenv("KIEMDIEM_REMINDERS_WORK_END", raising=False)
    units, members = write_small_org(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan, "c187", vn(2023, 11, 20, 8, 0))
        import_organization(uow, "c187", units, members, vn(2023, 11, 20, 8, 0))
        uow.commit()
    settings = ReminderSettings()
    assert steps.plan_reminders(store, plan, "c187", now, [phase_id], settings) > 0
    assert steps.compose(store, plan, "c187", now, settings, SmtpSettings()).digests > 0
    query = select(Outbox.body_text).where(Outbox.kind == "reminder")
    if recipient is not None:
        query = query.where(Outbox.recipient == recipient)
    with store.uow() as uow:
        return list(uow.session.scalars(query).all())


def test_letters_are_addressed_to_a_committee_a_branch_or_a_person_by_title(plan):
    """"Kính gửi: Đảng bộ Sở Công Thương" wrote to the organization: a đảng bộ's letters go to its committee."""
    from kiemdiem.reminders import Recipient, RecipientDirectory
    from kiemdiem.status import UnitInfo
    from kiemdiem.tabular import fold

    units = {
        "SCT": UnitInfo(1, "SCT", "Đảng bộ Sở Công Thương", "dang_bo_co_so", None, ("vanphong@sct.example.vn",)),
        "VP2": UnitInfo(2, "VP2", "Chi bộ Văn phòng 2", "chi_bo_truc_thuoc", "SCT", ("vp2@sct.example.vn",)),
    }
    directory = RecipientDirectory(plan, units, {fold("Lê Xuân Tiến"): "tien@sct.example.vn"})
    assert directory.office("SCT") == [Recipient("vanphong@sct.example.vn", "Đảng ủy Sở Công Thương")]
    assert directory.office("VP2") == [Recipient("vp2@sct.example.vn", "Chi bộ Văn phòng 2")]
    # Plan 187 names who attends Chi bộ Văn phòng 2's meeting: addressed as a comrade, with the plan's title.
    assert Recipient("tien@sct.example.vn", "Đồng chí Lê Xuân Tiến, Phó Bí thư Đảng ủy Sở") in directory.escalation_targets("VP2", 0)


def test_the_plans_mailbox_is_addressed_by_who_reads_it():
    """KH-DUK-HT-2022's last step goes to the Ban Tổ chức's mailbox: "Kính gửi: Ban Tổ chức Đảng ủy
    Khối", not "Kính gửi: buixuandung@hatinh.dcs.vn"."""
    from kiemdiem.reminders import Recipient, RecipientDirectory
    from kiemdiem.status import UnitInfo

    hatinh = load_plan(PLANS / "KH-DUK-HT-2022.yaml")
    units = {"KHOI": UnitInfo(1, "KHOI", "Đảng bộ Khối", "cap_tren_co_so", None, ("btc@khoi.example.vn",)),
             "CS1": UnitInfo(2, "CS1", "Chi bộ Sở Tư pháp", "chi_bo_co_so", "KHOI", ("cs1@example.vn",))}
    directory = RecipientDirectory(hatinh, units, {})
    # The recipient's name is what the letter's "Kính gửi" says (compose_*'s recipient_name).
    assert directory.escalation_targets("CS1", 2) == [Recipient("buixuandung@hatinh.dcs.vn", "Ban Tổ chức Đảng ủy Khối")]


def test_a_reminder_to_one_unit_names_it_and_a_committee_is_addressed_as_such(store, tmp_path, monkeypatch):
    plan = load_plan(PLANS / "187-KH-DU-2023.yaml")
    [text] = _reminder_texts(store, tmp_path, monkeypatch, plan, "dang_uy_bao_cao_khoi", vn(2023, 12, 8, 8, 0), "vanphong@sct.example.vn")
    assert text.startswith("Kính gửi: Đảng ủy Sở Công Thương,")
    assert "08:00 ngày 08/12/2023, Đảng bộ Sở Công Thương còn thiếu" in text and "do đồng chí phụ trách" not in text
