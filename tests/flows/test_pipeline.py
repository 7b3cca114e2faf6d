"""Reminders, escalation and the outbox over a simulated campaign, through a real SMTP server on loopback.

Runs the tick's steps (kiemdiem.steps.tick_once, the same steps the Prefect tick runs as
tasks) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import re
import threading
from collections import Counter
from email import message_from_bytes

import pytest
from sqlalchemy import select

from kiemdiem import steps
from kiemdiem.notify.sink import MailSink
from kiemdiem.settings import ReminderSettings, SmtpSettings
from kiemdiem.store.models import Notice, Outbox
from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.flows.support import one_phase_campaign, one_phase_plan
from tests.support import ict

CAMPAIGN = "test"


@pytest.fixture
def plan():
    return one_phase_plan()


@pytest.fixture
def campaign(store, plan, tmp_path):
    one_phase_campaign(store, tmp_path, CAMPAIGN, plan=plan)
    return CAMPAIGN


@pytest.fixture
def sink(tmp_path):
    with MailSink(tmp_path / "mail") as running:
        yield running


def smtp_for(sink_or_port) -> SmtpSettings:
    port = sink_or_port if isinstance(sink_or_port, int) else sink_or_port.port
    return SmtpSettings(host="127.0.0.1", port=port, timeout=5)


def deliver(store, plan, unit, doc, at, member=None):
    with store.uow() as uow:
        record_submission(uow, store.blobs, plan, CAMPAIGN, unit, doc, [IncomingFile("f.pdf", data=f"{unit}{doc}{member}".encode())], at, "web", member_code=member)
        uow.commit()


def tick(store, plan, now, smtp, settings=None):
    return asyncio.run(steps.tick_once(store, plan, CAMPAIGN, now, smtp, settings or ReminderSettings()))


def mornings(start: dt.date, end: dt.date):
    day = start
    while day <= end:
        yield ict(day.year, day.month, day.day, 8)
        day += dt.timedelta(days=1)


def by_recipient(sink) -> Counter:
    return Counter(rcpt for mail in sink.received for rcpt in mail.rcpt_tos)


def subject(mail) -> str:
    return str(mail.message["Subject"])


def test_reminder_and_escalation_counts_over_the_campaign(store, plan, campaign, sink):
    deliver(store, plan, "CB3", "bien_ban_hoi_nghi", ict(2023, 11, 29, 10))
    deliver(store, plan, "CB3", "ban_kiem_diem_ca_nhan", ict(2023, 11, 29, 10), member="M4")
    sent_on: dict[str, list[dt.date]] = {}
    for now in mornings(dt.date(2023, 11, 27), dt.date(2023, 12, 13)):
        before = len(sink.received)
        tick(store, plan, now, smtp_for(sink))
        if now.date() == dt.date(2023, 12, 4):
            deliver(store, plan, "CB1", "bien_ban_hoi_nghi", ict(2023, 12, 4, 12))
            deliver(store, plan, "CB1", "ban_kiem_diem_ca_nhan", ict(2023, 12, 4, 12), member="M1")
        for mail in sink.received[before:]:
            for rcpt in mail.rcpt_tos:
                sent_on.setdefault(rcpt, []).append(now.date())
    d = dt.date
    # CB3 delivered everything early: it hears nothing. CB1 delivered after its 04/12 reminder.
    assert "cb3@example.vn" not in sent_on
    assert sent_on["cb1@example.vn"] == [d(2023, 11, 30), d(2023, 12, 4)]
    # CB2 never delivers: both its addresses get each offset once, then the ladder climbs.
    assert sent_on["cb2@example.vn"] == sent_on["cb2b@example.vn"] == [d(2023, 11, 30), d(2023, 12, 4), d(2023, 12, 5)]
    assert sent_on["bp@example.vn"] == [d(2023, 12, 6)]
    assert sent_on["giamsat@example.vn"] == [d(2023, 12, 6)]
    assert sent_on["root@example.vn"] == [d(2023, 12, 7)]
    assert sent_on["btc@khoi.example.vn"] == [d(2023, 12, 11)]
    assert set(sent_on) == {"cb1@example.vn", "cb2@example.vn", "cb2b@example.vn", "bp@example.vn", "giamsat@example.vn", "root@example.vn", "btc@khoi.example.vn"}
    with store.uow() as uow:
        steps_sent = uow.session.execute(select(Notice.recipient, Notice.step).where(Notice.kind == "escalation", Notice.outbox_id.is_not(None))).all()
        sent_at = dict(uow.session.execute(select(Outbox.recipient, Outbox.sent_at).where(Outbox.kind == "escalation")).all())
    assert {(r, s) for r, s in steps_sent} == {("bp@example.vn", 0), ("giamsat@example.vn", 0), ("root@example.vn", 1), ("btc@khoi.example.vn", 2)}
    assert sent_at["bp@example.vn"] < sent_at["root@example.vn"] < sent_at["btc@khoi.example.vn"]


def test_rerun_at_same_now_sends_nothing_more(store, plan, campaign, sink):
    now = ict(2023, 11, 30, 8)
    tick(store, plan, now, smtp_for(sink))
    first = len(sink.received)
    assert first == 4  # cb1, cb2, cb2b, cb3
    again = tick(store, plan, now, smtp_for(sink))
    assert len(sink.received) == first and again["reminders"] == 0 and again["composed"].digests == 0


def test_unit_that_delivers_before_sending_is_not_reminded(store, plan, campaign, sink):
    # Planned in quiet hours (19:00), delivered overnight, composed next morning: nothing goes to CB1.
    tick(store, plan, ict(2023, 11, 30, 19), smtp_for(sink))
    assert sink.received == []
    deliver(store, plan, "CB1", "bien_ban_hoi_nghi", ict(2023, 11, 30, 21))
    deliver(store, plan, "CB1", "ban_kiem_diem_ca_nhan", ict(2023, 11, 30, 21), member="M1")
    result = tick(store, plan, ict(2023, 12, 1, 8), smtp_for(sink))
    assert "cb1@example.vn" not in by_recipient(sink)
    assert result["composed"].cancelled == 2
    assert by_recipient(sink) == Counter({"cb2@example.vn": 1, "cb2b@example.vn": 1, "cb3@example.vn": 1})


def test_no_sends_in_quiet_hours(store, plan, campaign, sink):
    for now in (ict(2023, 11, 30, 19), ict(2023, 12, 1, 7, 0), ict(2023, 12, 2, 10), ict(2023, 12, 3, 9)):
        result = tick(store, plan, now, smtp_for(sink))
        assert result["composed"].deferred
    assert sink.received == []
    tick(store, plan, ict(2023, 12, 4, 7, 45), smtp_for(sink))
    assert len(sink.received) == 4  # cb1, cb2, cb2b, cb3: one digest each, the first working morning


def test_vietnamese_subject_body_and_ics(store, plan, campaign, sink):
    tick(store, plan, ict(2023, 11, 30, 8), smtp_for(sink))
    mail = next(m for m in sink.received if "cb2@example.vn" in m.rcpt_tos)
    parsed = message_from_bytes(mail.raw if hasattr(mail, "raw") else mail.message.as_bytes(), policy=email.policy.default)
    assert subject(mail) == str(parsed["Subject"])
    assert "Nhắc hạn" in subject(mail) and "99-KH/TEST" in subject(mail) and "05/12/2023" in subject(mail)
    body = parsed.get_body(preferencelist=("plain",)).get_content()
    assert "Lê Thị Hai" in body and "Phạm Văn Ba" not in body  # the exempt member owes nothing
    assert "05/12/2023" in body and "23:59" in body and "Chi bộ họp kiểm điểm" in body
    html = parsed.get_body(preferencelist=("html",)).get_content()
    assert "Lê Thị Hai" in html
    ics = [part for part in parsed.iter_attachments() if part.get_content_type() == "text/calendar"]
    assert len(ics) == 1
    text = ics[0].get_content()
    text = text.decode() if isinstance(text, bytes) else text
    unfolded = re.sub(r"\r?\n[ \t]", "", text)  # RFC 5545 line unfolding
    assert "BEGIN:VEVENT" in unfolded and "DTEND:20231205T165959Z" in unfolded and "END:VCALENDAR" in unfolded


def test_smtp_down_then_back_every_message_once(store, plan, campaign, sink, unused_port):
    settings = ReminderSettings(backoff_seconds=60)
    for hour in (8, 9, 10):
        result = tick(store, plan, ict(2023, 11, 30, hour), smtp_for(unused_port), settings)
        assert result["sent"].sent == 0
    with store.uow() as uow:
        rows = uow.session.scalars(select(Outbox)).all()
        assert rows and all(r.status == "failed" and not r.gave_up and r.attempts == 3 for r in rows)
        assert all(r.last_error["status"] == "temporary" for r in rows)
    tick(store, plan, ict(2023, 11, 30, 11), smtp_for(sink), settings)
    ids = Counter(str(m.message["Message-ID"]) for m in sink.received)
    assert len(ids) == 4 and set(ids.values()) == {1}
    tick(store, plan, ict(2023, 11, 30, 12), smtp_for(sink), settings)
    assert len(sink.received) == 4


@pytest.mark.parametrize("code", [421, 451])
def test_temporary_smtp_errors_are_retried(store, plan, campaign, sink, code):
    sink.fail_next(2, code=code)
    tick(store, plan, ict(2023, 11, 30, 8), smtp_for(sink))
    with store.uow() as uow:
        failed = uow.session.scalars(select(Outbox).where(Outbox.status == "failed")).all()
        assert len(failed) == 2 and {f.last_error["code"] for f in failed} == {code}
    tick(store, plan, ict(2023, 11, 30, 9), smtp_for(sink))
    assert Counter(str(m.message["Message-ID"]) for m in sink.received).most_common(1)[0][1] == 1
    assert len(sink.received) == 4


def test_permanent_smtp_error_is_kept_not_retried(store, plan, campaign, sink):
    sink.set_mode("permfail")
    tick(store, plan, ict(2023, 11, 30, 8), smtp_for(sink))
    sink.set_mode("ok")
    tick(store, plan, ict(2023, 11, 30, 9), smtp_for(sink))
    assert sink.received == []
    with store.uow() as uow:
        rows = uow.session.scalars(select(Outbox)).all()
        assert len(rows) == 4 and all(r.gave_up and r.status == "failed" and r.last_error["code"] == 550 for r in rows)


def test_two_ticks_at_once_send_nothing_twice(store, plan, campaign, sink):
    now = ict(2023, 12, 6, 8)
    errors = []

    def run():
        try:
            tick(store, plan, now, smtp_for(sink))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    for _ in range(3):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        now += dt.timedelta(days=1)
    assert not errors
    ids = Counter(str(m.message["Message-ID"]) for m in sink.received)
    assert ids and max(ids.values()) == 1
    with store.uow() as uow:
        keys = uow.session.scalars(select(Outbox.idempotency_key)).all()
    assert len(keys) == len(set(keys)) == len(ids)
