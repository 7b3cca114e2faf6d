"""Sending the outbox on SQLite and PostgreSQL, through a transport that records what happens.

The real SMTP server is in tests/flows (pipeline, crash); here the transport is a stand-in
that looks at the rows while the messages go out, to pin down when each mark commits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import email.utils

import pytest
from sqlalchemy import select, text, update

from kiemdiem.notify.messages import ComposedMessage
from kiemdiem.notify.transport import SendOutcome, SendStatus
from kiemdiem.settings import ReminderSettings, SmtpSettings
from kiemdiem.store.models import Outbox
from kiemdiem.store.organization import create_campaign
from kiemdiem.store.outbox import enqueue, send_due
from tests.flows.support import one_phase_plan
from tests.support import ict

NOW = ict(2023, 11, 30, 8)
SMTP = SmtpSettings(host="127.0.0.1", port=25, from_="Văn phòng <vanphong@kiemdiem.local>")


def status_of(store) -> dict[int, str]:
    with store.engine.connect() as connection:
        return dict(connection.execute(select(Outbox.id, Outbox.status)).all())


class WatchingTransport:
    """Accepts every message; before each DATA, notes the status of every row in the store."""

    def __init__(self, store, on_finish=None):
        self.store = store
        self.on_finish = on_finish
        self.calls: list[tuple] = []
        self.seen_at_data: list[dict[int, str]] = []
        self._open: str | None = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None

    async def begin(self, sender, recipients, *, size=None):
        assert self._open is None
        self.calls.append(("begin", sender, tuple(recipients), size))
        self._open = recipients[0]
        return None

    async def finish(self, data):
        self.seen_at_data.append(status_of(self.store))
        self.calls.append(("finish", self._open))
        if self.on_finish is not None:
            self.on_finish(self._open)
        self._open = None
        return SendOutcome(SendStatus.ACCEPTED, 250, "OK")


@pytest.fixture
def queued(store):
    """Five messages queued for one campaign; their row ids in queue order."""
    with store.uow() as uow:
        create_campaign(uow, one_phase_plan(), "test", ict(2023, 11, 20))
        ids = [
            enqueue(
                uow, campaign_id="test", kind="reminder", recipient=f"u{n}@example.vn", recipient_name=f"U {n}",
                message=ComposedMessage(f"Nhắc hạn {n}", "Kính gửi", "<p>Kính gửi</p>"), key_material=f"k{n}",
                reason="test", now=NOW, sender="vanphong@kiemdiem.local",
            )
            for n in range(5)
        ]
        uow.commit()
    return ids


def send(store, transport, settings=None):
    return asyncio.run(send_due(store, transport, NOW, smtp=SMTP, settings=settings or ReminderSettings(batch_size=2)))


def test_each_message_goes_to_data_only_once_the_previous_one_is_marked(store, queued):
    transport = WatchingTransport(store)
    report = send(store, transport)
    assert report.sent == 5 and report.sent_ids == queued
    for n, seen in enumerate(transport.seen_at_data):
        # Before message n's DATA: every earlier message is marked, this one and later are not.
        assert [seen[row_id] == "sent" for row_id in queued] == [i < n for i in range(5)]
    assert status_of(store) == {row_id: "sent" for row_id in queued}


def test_the_envelope_is_the_sender_address_and_the_row_recipient(store, queued):
    transport = WatchingTransport(store)
    send(store, transport)
    begins = [call for call in transport.calls if call[0] == "begin"]
    assert [call[1:3] for call in begins] == [("vanphong@kiemdiem.local", (f"u{n}@example.vn",)) for n in range(5)]
    with store.engine.connect() as connection:
        sizes = connection.execute(select(text("length(mime)")).select_from(Outbox).order_by(Outbox.id)).scalars().all()
    assert [call[3] for call in begins] == sizes


def test_a_sent_row_records_when_and_drops_its_claim(store, queued):
    send(store, WatchingTransport(store))
    with store.uow() as uow:
        rows = uow.session.execute(select(Outbox.status, Outbox.sent_at, Outbox.attempts, Outbox.claim_token, Outbox.last_error)).all()
    assert [tuple(r) for r in rows] == [("sent", NOW, 1, None, None)] * 5


def test_a_row_reclaimed_meanwhile_is_left_to_its_new_claimant(store, queued):
    def reclaim_third(recipient):
        if recipient == "u2@example.vn":  # reaped and claimed again by another process
            with store.engine.begin() as connection:
                connection.execute(update(Outbox).where(Outbox.id == queued[2]).values(claim_token="someone-else"))

    report = send(store, WatchingTransport(store, reclaim_third))
    assert report.sent == 4 and queued[2] not in report.sent_ids
    assert status_of(store)[queued[2]] == "sending"


def test_a_second_pass_at_the_same_now_sends_nothing(store, queued):
    send(store, WatchingTransport(store))
    again = WatchingTransport(store)
    report = send(store, again)
    assert report.sent == 0 and again.calls == []


def test_the_sqlite_connections_go_back_to_the_pool_as_they_came(store, queued, backend):
    if backend != "sqlite":
        pytest.skip("a SQLite setting")
    send(store, WatchingTransport(store))
    connections = [store.engine.connect() for _ in range(max(store.engine.pool.checkedin(), 1))]
    try:
        assert {c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() for c in connections} == {1000}
    finally:
        for connection in connections:
            connection.close()


def test_many_messages_saved_in_one_statement_are_the_rows_enqueue_saves(store):
    """``enqueue_many`` (batches of ENQUEUE_BATCH rows): each message's row id in order, None for a
    key already saved, and the same rows, MIME included, as ``enqueue`` one at a time."""
    from kiemdiem.store.outbox import ENQUEUE_BATCH, enqueue_many, outbox_values

    def values(n: int, prefix: str) -> dict:
        return outbox_values(
            campaign_id="test", kind="consolidation_diff", recipient=f"u{n}@example.vn", recipient_name=f"U {n}",
            message=ComposedMessage(f"Thay đổi {n}", "Kính gửi", "<p>Kính gửi</p>"), key_material=f"{prefix}{n}",
            reason="test", now=NOW, sender="vanphong@kiemdiem.local",
        )

    count = ENQUEUE_BATCH + 3
    with store.uow() as uow:
        create_campaign(uow, one_phase_plan(), "test", ict(2023, 11, 20))
        one = enqueue(uow, **dict(
            campaign_id="test", kind="consolidation_diff", recipient="u1@example.vn", recipient_name="U 1",
            message=ComposedMessage("Thay đổi 1", "Kính gửi", "<p>Kính gửi</p>"), key_material="single1",
            reason="test", now=NOW, sender="vanphong@kiemdiem.local"))
        ids = enqueue_many(uow, [values(n, "many") for n in range(count)])
        again = enqueue_many(uow, [values(0, "many"), values(count, "many")])
        uow.commit()
    assert None not in ids and len(set(ids)) == count and ids == sorted(ids)
    assert again[0] is None and again[1] is not None and again[1] not in ids
    fields = ("recipient", "subject", "body_text", "kind", "status", "attempts", "not_before", "next_attempt_at", "created_at", "gave_up")
    with store.uow() as uow:
        rows = {r.id: (*(getattr(r, f) for f in fields), r.message_id, r.mime) for r in uow.session.scalars(select(Outbox))}
    assert [rows[i][0] for i in ids] == [f"u{n}@example.vn" for n in range(count)]
    # The same message through either path: the same row, its MIME rendered with its own Message-ID.
    single, batched = rows[one], rows[ids[1]]
    assert single[:len(fields)] == batched[:len(fields)]
    assert batched[-2].encode() in batched[-1] and b"Subject:" in batched[-1] and batched[-2] != single[-2]


def test_wrong_smtp_settings_keep_every_message_queued_and_say_so(store, queued, tmp_path):
    """A login the server refuses fails every message alike: none is given up (even with one
    attempt allowed), none spends an attempt, and the pass reports the server's words."""
    from kiemdiem.notify.sink import MailSink
    from kiemdiem.notify.transport import SmtpTransport

    with MailSink(tmp_path / "mail", credentials={"vanphong": "đúng"}) as sink:
        wrong = SmtpSettings(host="127.0.0.1", port=sink.port, user="vanphong", password="sai", from_=SMTP.from_, timeout=5.0)
        report = asyncio.run(send_due(store, SmtpTransport(wrong), NOW, smtp=wrong, settings=ReminderSettings(batch_size=2, max_attempts=1)))
        assert report.sent == 0 and report.gave_up == 0 and report.failed == 5
        assert "Authentication" in report.configuration_error  # the server's own words
        with store.engine.connect() as connection:
            rows = connection.execute(select(Outbox.status, Outbox.attempts, Outbox.gave_up)).all()
        assert set(rows) == {("failed", 0, False)}
        # Fixed, the queue goes out.
        right = SmtpSettings(host="127.0.0.1", port=sink.port, user="vanphong", password="đúng", from_=SMTP.from_, timeout=5.0)
        later = NOW.replace(hour=12)
        again = asyncio.run(send_due(store, SmtpTransport(right), later, smtp=right, settings=ReminderSettings(batch_size=2, max_attempts=1)))
        assert again.sent == 5 and len(sink.received) == 5


def test_a_later_tick_does_not_reap_rows_another_pass_is_still_sending(store, queued):
    """Leases run on real time: a pass claimed at its tick's moment (a scheduled start, a
    replayed date) still owns its rows when a tick for a later moment starts while it sends."""
    from kiemdiem.store.outbox import claim_due, reap_stale

    with store.engine.connect() as connection:
        token, rows = claim_due(connection, NOW, 3)
    assert len(rows) == 3
    an_hour_later = NOW + dt.timedelta(hours=1)
    with store.uow() as uow:
        assert reap_stale(uow, an_hour_later, 600) == 0
        uow.commit()
    assert list(status_of(store).values()).count("sending") == 3
    # Ten minutes of real time without a renewal: that pass died, its rows go back to the queue.
    with store.uow() as uow:
        later = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=601)  # noqa: E731
        assert reap_stale(uow, an_hour_later, 600, wall=later) == 3
        uow.commit()


def test_a_slow_batch_keeps_its_lease(store, queued, monkeypatch):
    """Past a third of the lease, the pass renews its batch's claim before the next message."""
    import kiemdiem.store.outbox as outbox

    start = dt.datetime.now(dt.timezone.utc)
    ticks = iter([0, 0, 100, 300, 300, 300])  # seconds of real time at each reading of the clock
    stamps = []

    def clock():
        stamps.append(start + dt.timedelta(seconds=next(ticks, 300)))
        return stamps[-1]

    monkeypatch.setattr(outbox, "wall_clock", clock)
    send(store, WatchingTransport(store), ReminderSettings(batch_size=5, sending_lease_seconds=600))
    with store.engine.connect() as connection:
        claimed = set(connection.execute(select(Outbox.claimed_at)).scalars())
    assert start + dt.timedelta(seconds=300) in claimed  # renewed once 200 s had gone, and the renewal written
    assert set(status_of(store).values()) == {"sent"}


def test_a_message_sent_after_it_was_composed_is_dated_when_it_is_sent(store, queued):
    """Composed at a tick, held or retried: mail programs sort by the Date header, so it is the
    sending pass's moment; every other byte is the stored message."""
    sent: list[bytes] = []

    class Keeping(WatchingTransport):
        async def finish(self, data):
            sent.append(data)
            return await super().finish(data)

    later = NOW + dt.timedelta(days=1, hours=2, minutes=5)
    asyncio.run(send_due(store, Keeping(store), later, smtp=SMTP, settings=ReminderSettings(batch_size=2)))
    with store.engine.connect() as connection:
        stored = connection.execute(select(Outbox.mime).order_by(Outbox.id)).scalars().all()
    assert len(sent) == len(stored) == 5
    for data, mime in zip(sent, stored):
        message = email.message_from_bytes(data, policy=email.policy.SMTP)
        assert email.utils.parsedate_to_datetime(message["Date"]) == later
        original = email.message_from_bytes(mime, policy=email.policy.SMTP)
        assert email.utils.parsedate_to_datetime(original["Date"]) == NOW
        assert data.replace(message["Date"].encode(), b"") == mime.replace(original["Date"].encode(), b"")
