"""Exact reminder counts and recipients per unit over the 187-KH/ĐU campaign, 20/11–31/12/2023,
through a real SMTP server, against an oracle computed from the working-day calendar.

Reading of an offset k: a reminder goes out when k working days are left before the deadline
(the morning the count of remaining working days first drops to k or below). Planned on a
weekend, it waits for the next working morning and is dropped if the deadline has passed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from email.utils import parsedate_to_datetime

import pytest

from kiemdiem import steps
from kiemdiem.notify.sink import MailSink
from kiemdiem.plan import Phase, Plan
from kiemdiem.settings import SmtpSettings
from kiemdiem.status import owed_items
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.queries import load_members, load_units
from kiemdiem.store.results import STRUCTURED_DOC_TYPES
from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.support import ict, readable_list, write_small_org

CAMPAIGN = "c187"
FIRST, LAST = dt.date(2023, 11, 20), dt.date(2023, 12, 31)
KC_DRAFT_AT = ict(2023, 11, 28, 12)


def ticks():
    day = FIRST
    while day <= LAST:
        yield ict(day.year, day.month, day.day, 8)
        day += dt.timedelta(days=1)


def send_days(plan: Plan, phase: Phase, delivered_at: dt.datetime | None) -> set[dt.date]:
    """Oracle: the mornings on which this phase's reminder for one unit reaches its inbox."""
    calendar = plan.calendar
    deadline_day = calendar.local(phase.deadline).date()
    fired: set[int] = set()
    days: set[dt.date] = set()
    waiting: list[int] = []
    for now in ticks():
        if now > phase.deadline or (delivered_at is not None and now >= delivered_at):
            break
        left = sum(1 for n in range(1, 400) if (d := now.date() + dt.timedelta(days=n)) <= deadline_day and calendar.is_working_day(d))
        due = [k for k in plan.reminder_offsets if left <= k]
        if due and min(due) not in fired:
            fired.add(min(due))
            waiting.append(min(due))
        if waiting and calendar.is_working_day(now.date()):
            days.add(now.date())
            waiting.clear()
    return days


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_reminders_per_unit_over_the_187_campaign(store, plan_187, tmp_path):
    units_csv, members_csv = write_small_org(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan_187, CAMPAIGN, ict(2023, 11, 20, 7))
        import_organization(uow, CAMPAIGN, units_csv, members_csv, ict(2023, 11, 20, 7))
        uow.commit()
        units = {u.code: u for u in load_units(uow, CAMPAIGN)}
        members = load_members(uow, CAMPAIGN)

    def deliver(unit_code: str, phase: Phase, at: dt.datetime) -> None:
        own = [m for m in members if m.unit_code == unit_code]
        items = owed_items(phase, units[unit_code], own)
        with store.uow() as uow:
            for item in items:
                if item.required:
                    name, data = ("f.pdf", f"{item.key}".encode())
                    if item.doc_type in STRUCTURED_DOC_TYPES:  # a list must read as one
                        name, data = readable_list(item.doc_type, unit_code, [m.code for m in own if m.status == "active"])
                    record_submission(
                        uow, store.blobs, plan_187, CAMPAIGN, unit_code, item.doc_type,
                        [IncomingFile(name, data=data)], at, "web",
                        member_code=item.member_code, phase_id=phase.id,
                    )
            uow.commit()

    # VP1 delivers everything on the first day; KC only its draft report, on 28/11; the rest never.
    for phase in plan_187.phases_for_kind("chi_bo_truc_thuoc"):
        deliver("VP1", phase, ict(2023, 11, 20, 9))
    deliver("KC", plan_187.phase("chuan_bi_chi_bo"), KC_DRAFT_AT)

    with MailSink(tmp_path / "mail") as sink:
        smtp = SmtpSettings(host="127.0.0.1", port=sink.port)
        for now in ticks():
            asyncio.run(steps.tick_once(store, plan_187, CAMPAIGN, now, smtp))
        received = defaultdict(list)
        for mail in sink.received:
            if "Nhắc hạn" in str(mail.message["Subject"]):
                for rcpt in mail.rcpt_tos:
                    received[rcpt].append(mail)

    expected: dict[str, set[dt.date]] = {}
    for code, unit in units.items():
        days: set[dt.date] = set()
        for phase in plan_187.phases_for_kind(unit.kind):
            delivered = None
            if code == "VP1":
                delivered = ict(2023, 11, 20, 9)
            elif code == "KC" and phase.id == "chuan_bi_chi_bo":
                delivered = KC_DRAFT_AT
            days |= send_days(plan_187, phase, delivered)
        for email in unit.emails:
            if days:
                expected[email] = days
    got = {
        rcpt: sorted(plan_187.calendar.local(parsedate_to_datetime(str(m.message["Date"]))).date() for m in mails)
        for rcpt, mails in received.items()
    }
    assert got == {rcpt: sorted(days) for rcpt, days in expected.items()}  # one digest per recipient per day, exactly then
    assert "vp1@sct.example.vn" not in received
    assert got["vp2@sct.example.vn"] == got["bithu.vp2@sct.example.vn"]
    assert len(got["vp2@sct.example.vn"]) >= 10  # four phases' offsets over the campaign
    # KC's draft came on 28/11: its 29/11 and 30/11 reminders no longer list the draft.
    kc_late = [m for m in received["kc@sct.example.vn"] if "29 Nov 2023" in str(m.message["Date"]) or "30 Nov 2023" in str(m.message["Date"])]
    draft = "Dự thảo báo cáo kiểm điểm tập thể"
    assert kc_late and all(draft not in m.message.get_body(preferencelist=("plain",)).get_content() for m in kc_late)
    vp2_late = [m for m in received["vp2@sct.example.vn"] if "29 Nov 2023" in str(m.message["Date"])]
    assert vp2_late and draft in vp2_late[0].message.get_body(preferencelist=("plain",)).get_content()
