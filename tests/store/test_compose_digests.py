"""Composing digests streams the pending notices and commits in batches; the digests are the same.

A khoi campaign under the Hà Tĩnh plan on Tue 06/12/2022 08:00 (reminders and escalations
due), with some branches' documents delivered after the notices were planned: those notices
are cancelled, every other pending notice goes into exactly one digest for its recipient and
kind, and composing again adds nothing. However many digests carry a section read from other
rows (their units' own overdue items, a temporary branch's comment requests), composing reads
the store a fixed number of times.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlalchemy import event, func, select

from kiemdiem import steps
from kiemdiem.plan import load_plan
from kiemdiem.settings import ReminderSettings
from kiemdiem.store import notices as notices_module
from kiemdiem.store.models import Notice, Outbox, Unit
from kiemdiem.store.notices import compose_digests
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.synth import generate
from tests.support import PLANS, ict

CAMPAIGN = "khoi"
NOW = ict(2022, 12, 6, 8)
SENDER = "vanphong@kiemdiem.local"


def khoi_campaign(store, tmp_path, **generate_options):
    """The Hà Tĩnh plan's campaign on a generated khoi tree, set up on 20/11/2022."""
    plan = load_plan(PLANS / "KH-DUK-HT-2022.yaml")
    files = generate("khoi", 2, tmp_path / "org", campaign_year=plan.year, **generate_options)
    with store.uow() as uow:
        create_campaign(uow, plan, CAMPAIGN, ict(2022, 11, 20))
        import_organization(uow, CAMPAIGN, files.units, files.members, ict(2022, 11, 20))
        uow.commit()
    return plan


@pytest.fixture
def planned(store, tmp_path):
    plan = khoi_campaign(store, tmp_path)
    phases = steps.open_phase_ids(plan, NOW)
    settings = ReminderSettings()
    assert steps.plan_reminders(store, plan, CAMPAIGN, NOW, phases, settings) + steps.escalate_overdue(store, plan, CAMPAIGN, NOW, phases, settings)
    # After planning, a few branches deliver their minutes: their notices must not go out.
    with store.uow() as uow:
        keys = sorted({k for k, in uow.session.execute(select(Notice.item_key).where(Notice.doc_type == "bien_ban_hoi_nghi"))})[:5]
        units = {code: uid for code, uid in uow.session.execute(select(Unit.code, Unit.id))}
    delivered = []
    with store.uow() as uow:
        for key in keys:
            [[unit_id, phase_id]] = uow.session.execute(select(Notice.unit_id, Notice.phase_id).where(Notice.item_key == key).limit(1))
            code = next(c for c, i in units.items() if i == unit_id)
            record_submission(uow, store.blobs, plan, CAMPAIGN, code, "bien_ban_hoi_nghi",
                              [IncomingFile("bien_ban.pdf", data=f"%PDF {code}".encode())], ict(2022, 12, 6, 7), "web", phase_id=phase_id)
            delivered.append(key)
        uow.commit()
    return plan, set(delivered)


def test_streamed_batches_carry_every_live_notice_once(store, planned, monkeypatch):
    plan, delivered = planned
    monkeypatch.setattr(notices_module, "COMPOSE_COMMIT_EVERY", 3)
    monkeypatch.setattr(notices_module, "STREAM_ROWS", 7)
    with store.uow() as uow:
        before = uow.session.execute(select(Notice.id, Notice.recipient, Notice.kind, Notice.item_key)).all()
    expected = defaultdict(set)
    for nid, recipient, kind, key in before:
        if key not in delivered:
            expected[(recipient, kind)].add(nid)
    assert delivered and len(expected) > 10

    report = compose_digests(store, plan, CAMPAIGN, NOW, submit_url="http://127.0.0.1:8080", sender=SENDER)

    with store.uow() as uow:
        rows = uow.session.execute(select(Notice.id, Notice.item_key, Notice.outbox_id, Notice.cancelled_at)).all()
        outbox = {o.id: (o.recipient, o.kind) for o in uow.session.scalars(select(Outbox))}
    assert {key for _, key, _, cancelled in rows if cancelled is not None} == delivered
    assert all(outbox_id is None for _, key, outbox_id, _ in rows if key in delivered)
    carried = defaultdict(set)
    for nid, _, outbox_id, _ in rows:
        if outbox_id is not None:
            carried[outbox[outbox_id]].add(nid)
    assert carried == expected
    assert (report.digests, report.notices, report.cancelled) == (len(expected), sum(map(len, expected.values())), len(
        [1 for _, _, _, key in before if key in delivered]))

    again = compose_digests(store, plan, CAMPAIGN, NOW, submit_url="http://127.0.0.1:8080", sender=SENDER)
    assert (again.digests, again.notices) == (0, 0)


def test_the_same_notices_make_the_same_bytes_whatever_the_batch(store, planned, monkeypatch):
    plan, _ = planned
    compose_digests(store, plan, CAMPAIGN, NOW, submit_url="http://127.0.0.1:8080", sender=SENDER)
    with store.uow() as uow:
        first = {o.idempotency_key: (o.message_id, o.mime) for o in uow.session.scalars(select(Outbox))}
        # As after a crash that lost every digest: unlink the notices, drop the rows, compose again.
        uow.session.execute(Notice.__table__.update().values(outbox_id=None))
        uow.session.execute(Outbox.__table__.delete())
        uow.commit()
    monkeypatch.setattr(notices_module, "COMPOSE_COMMIT_EVERY", 1)
    compose_digests(store, plan, CAMPAIGN, NOW, submit_url="http://127.0.0.1:8080", sender=SENDER)
    with store.uow() as uow:
        second = {o.idempotency_key: (o.message_id, o.mime) for o in uow.session.scalars(select(Outbox))}
    assert second == first and len(first) > 10


def test_a_tick_says_why_it_dropped_notices(store, planned):
    """Delivered items and reminders whose deadline has passed are dropped for different reasons;
    the tick told the office "vì đơn vị đã nộp" for both."""
    plan, delivered = planned
    later = ict(2022, 12, 12, 8)  # past the deadlines of 01/12, 05/12 and 10/12/2022
    past = {p.id for p in plan.phases if later > p.deadline}
    with store.uow() as uow:
        before = uow.session.execute(select(Notice.kind, Notice.phase_id, Notice.item_key)).all()
    by_delivery = sum(1 for _, _, key in before if key in delivered)
    by_deadline = sum(1 for kind, phase, key in before if key not in delivered and kind == "reminder" and phase in past)
    assert by_delivery and by_deadline
    report = compose_digests(store, plan, CAMPAIGN, later, submit_url="http://127.0.0.1:8080", sender=SENDER)
    assert (report.cancelled_delivered, report.cancelled_past_deadline, report.cancelled) == (by_delivery, by_deadline, by_delivery + by_deadline)


@pytest.mark.parametrize(("now", "section"), [
    (ict(2022, 11, 24, 8), "NHẬN XÉT ĐẢNG VIÊN SINH HOẠT TẠM THỜI TẠI CHI BỘ"),  # temporary branches asked to comment
    (ict(2022, 12, 8, 8), "CÁC MỤC ĐÃ QUÁ HẠN"),  # branches reminded of 15/12, late on 01/12
], ids=["comments", "overdue"])
def test_composing_reads_the_store_a_fixed_number_of_times(store, tmp_path, now, section):
    plan = khoi_campaign(store, tmp_path, _scale=0.5)
    phases = steps.open_phase_ids(plan, now)
    settings = ReminderSettings()
    steps.plan_reminders(store, plan, CAMPAIGN, now, phases, settings)
    steps.escalate_overdue(store, plan, CAMPAIGN, now, phases, settings)
    selects: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        report = compose_digests(store, plan, CAMPAIGN, now, submit_url="http://127.0.0.1:8080", sender=SENDER)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    with store.uow() as uow:
        bodies = uow.session.scalars(select(Outbox.body_text).where(Outbox.kind == "reminder")).all()
        assert uow.session.scalar(select(func.count()).select_from(Outbox)) == report.digests
    assert sum(section in body for body in bodies) >= 10
    # The newest pending id, the reminded units with overdue items, who their reminders go to and
    # those items (one read per OVERDUE_UNITS_CHUNK units), the comment requests, the notices: never
    # a read per digest (there are hundreds).
    assert report.digests > 100 and len(selects) <= 6, selects
