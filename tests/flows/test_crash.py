"""A sending process killed (SIGKILL) after the SMTP server accepted a message but before its row
was marked: the next tick finishes the batch, repeating only that message, with the same Message-ID."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from sqlalchemy import select, update

from kiemdiem import steps
from kiemdiem.notify.sink import MailSink
from kiemdiem.settings import ReminderSettings, SmtpSettings
from kiemdiem.store.models import Outbox
from tests.flows.support import one_phase_campaign
from tests.support import REPO, ict

CHILD = r"""
import asyncio, sys, time
from pathlib import Path
import kiemdiem.store.outbox as outbox
from kiemdiem import steps
from kiemdiem.settings import ReminderSettings, SmtpSettings
from kiemdiem.store.db import open_store
from kiemdiem.store.organization import campaign_plan
from tasks.context import to_instant

marker = Path(sys.argv[2])
real_mark = outbox._mark
calls = []

def mark_then_hang(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        # The server has accepted message 2; the parent kills us before its row is marked.
        # Message 3's envelope may be open by now, but its DATA waits for this mark.
        marker.write_text("accepted")
        time.sleep(120)
    return real_mark(*args, **kwargs)

outbox._mark = mark_then_hang
store = open_store()
with store.uow() as uow:
    plan = campaign_plan(uow, "test")
smtp = SmtpSettings(host="127.0.0.1", port=int(sys.argv[1]))
asyncio.run(steps.send_outbox(store, plan, "test", to_instant(sys.argv[3]), smtp, ReminderSettings(batch_size=100)))
"""


def test_killed_sender_repeats_at_most_the_message_in_flight(store, store_env, tmp_path):
    plan = one_phase_campaign(store, tmp_path)
    now = ict(2023, 11, 30, 8)
    open_ids = steps.open_phase_ids(plan, now)
    steps.plan_reminders(store, plan, "test", now, open_ids)
    assert steps.compose(store, plan, "test", now).digests == 4

    with MailSink(tmp_path / "mail") as sink:
        marker = tmp_path / "accepted"
        env = {**os.environ, **store_env, "PYTHONPATH": str(REPO)}
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(sink.port), str(marker), now.isoformat()], env=env, cwd=REPO)
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the sending process ended before the crash point"
            assert time.monotonic() < deadline, "the sending process never reached the crash point"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
        assert len(sink.received) == 2
        with store.uow() as uow:
            states = Counter(uow.session.scalars(select(Outbox.status)))
        assert states == Counter({"sent": 1, "sending": 3})

        # The next tick, after the sending lease ran out (real time: the claims are aged by it),
        # finishes the batch.
        lease = dt.timedelta(seconds=ReminderSettings().sending_lease_seconds + 60)
        with store.engine.begin() as connection:
            for row_id, claimed_at in connection.execute(select(Outbox.id, Outbox.claimed_at).where(Outbox.status == "sending")).all():
                connection.execute(update(Outbox).where(Outbox.id == row_id).values(claimed_at=claimed_at - lease))
        later = now + dt.timedelta(hours=1)
        report = asyncio.run(steps.send_outbox(store, plan, "test", later, SmtpSettings(host="127.0.0.1", port=sink.port)))
        assert report.reaped == 3 and report.sent == 3
        ids = Counter(str(m.message["Message-ID"]) for m in sink.received)
        assert len(ids) == 4
        assert sorted(ids.values()) == [1, 1, 1, 2]  # only the message in flight came twice
        with store.uow() as uow:
            assert set(uow.session.scalars(select(Outbox.status))) == {"sent"}
