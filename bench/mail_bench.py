"""Reminder dispatch: 10,000 queued outbox rows sent to a local aiosmtpd, against a raw aiosmtplib loop.

Both send the same rendered messages to the same null SMTP server (another process) over
one connection, in the same run. Ours claims rows in batches, sends each, and marks each
row right after the server's answer (so a crash repeats at most one message). Target:
throughput ratio ours / raw >= 0.8.

    python -m bench.mail_bench [--messages 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path

import aiosmtplib
from sqlalchemy import select

from bench.common import null_smtp_server, peak_rss_mib, save
from kiemdiem.notify.messages import Attachment, ComposedMessage
from kiemdiem.notify.transport import SmtpTransport
from kiemdiem.plan import load_plan
from kiemdiem.settings import ReminderSettings, SmtpSettings, StoreSettings, plans_dir
from kiemdiem.store.db import open_store
from kiemdiem.store.models import Outbox
from kiemdiem.store.organization import create_campaign
from kiemdiem.store.outbox import enqueue, send_due

NOW = dt.datetime(2023, 11, 30, 1, 0, tzinfo=dt.timezone.utc)  # 08:00 in Hà Nội, a working morning
BODY = "Kính gửi đồng chí Bí thư,\n\nĐơn vị còn thiếu các mục sau đây trong hồ sơ kiểm điểm năm 2023:\n" + "\n".join(
    f"  - Bản kiểm điểm cá nhân của đảng viên số {n}" for n in range(12)
)


def fill(store, count: int, sender: str) -> None:
    plan = load_plan(plans_dir() / "187-KH-DU-2023.yaml")
    with store.uow() as uow:
        create_campaign(uow, plan, "bench", NOW)
        for n in range(count):
            message = ComposedMessage(
                subject=f"[187-KH/ĐU] Nhắc hạn: 12 mục còn thiếu – hạn 05/12/2023 ({n})",
                text=BODY,
                html="<p>" + BODY.replace("\n", "<br>") + "</p>",
                attachments=(Attachment("han.ics", "text/calendar; method=PUBLISH", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"),),
            )
            enqueue(
                uow, campaign_id="bench", kind="reminder", recipient=f"chibo{n}@bench.kiemdiem.local", recipient_name=f"Chi bộ {n}",
                message=message, key_material=f"bench-{n}", reason="benchmark", now=NOW, sender=sender,
            )
        uow.commit()


async def raw_loop(port: int, messages: list[tuple[str, bytes]], sender: str) -> float:
    started = time.perf_counter()
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await smtp.connect()
    for recipient, data in messages:
        await smtp.sendmail(sender, [recipient], data)
    await smtp.quit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiemdiem-bench-mail-"))
    store = open_store(StoreSettings(home=work))
    sender = "vanphong@kiemdiem.local"
    fill(store, args.messages, sender)
    with store.uow() as uow:
        messages = [(r, m) for r, m in uow.session.execute(select(Outbox.recipient, Outbox.mime).order_by(Outbox.id))]
    with null_smtp_server() as port:
        raw = asyncio.run(raw_loop(port, messages, sender))
        smtp = SmtpSettings(host="127.0.0.1", port=port, from_=sender)
        started = time.perf_counter()
        report = asyncio.run(send_due(store, SmtpTransport(smtp), NOW, smtp=smtp, settings=ReminderSettings()))
        ours = time.perf_counter() - started
    assert report.sent == args.messages, report
    save(
        "mail",
        {
            "messages": args.messages,
            "raw_aiosmtplib_s": round(raw, 3),
            "outbox_send_s": round(ours, 3),
            "raw_msgs_per_s": round(args.messages / raw),
            "outbox_msgs_per_s": round(args.messages / ours),
            "throughput_ratio": round(raw / ours, 2),
            "target": "throughput ratio >= 0.8",
            "peak_rss_mib": peak_rss_mib(),
        },
    )


if __name__ == "__main__":
    main()
