"""Reminder dispatch: 10,000 queued outbox rows sent to a local aiosmtpd, against a raw aiosmtplib loop.

Both send the same rendered messages (the ``mime`` bytes of the rows) with the same envelope
to the same null SMTP server (another process), each over one connection per round. Ours
claims rows in batches, sends each, and marks each row right after the server's answer (so
a crash repeats at most one message). Target: throughput ratio ours / raw >= 0.8.

The machine is shared, so its load drifts during a run. The messages are therefore sent in
rounds (1,000 each by default, due one minute apart), and within each round both sides send
that round's messages, in alternating order (raw first, then ours first, ...): a slow spell
hits both sides alike. The ratio is total raw time over total outbox time; the per-round
ratios and the CPU time per message (this process, all threads) are saved too.

    python -m bench.mail_bench [--messages 10000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
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
ROUND = dt.timedelta(minutes=1)
BODY = "Kính gửi đồng chí Bí thư,\n\nĐơn vị còn thiếu các mục sau đây trong hồ sơ kiểm điểm năm 2023:\n" + "\n".join(
    f"  - Bản kiểm điểm cá nhân của đảng viên số {n}" for n in range(12)
)


def fill(store, count: int, sender: str, per_round: int | None = None) -> None:
    """Queue ``count`` messages; those of round r (``per_round`` each) fall due at NOW + r minutes."""
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
                not_before=NOW + (n // per_round) * ROUND if per_round else None,
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
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    per_round = -(-args.messages // args.rounds)
    work = Path(tempfile.mkdtemp(prefix="kiemdiem-bench-mail-"))
    store = open_store(StoreSettings(home=work))
    sender = "vanphong@kiemdiem.local"
    fill(store, args.messages, sender, per_round)
    with store.uow() as uow:
        messages = [(r, m) for r, m in uow.session.execute(select(Outbox.recipient, Outbox.mime).order_by(Outbox.id))]
    rounds = [messages[i : i + per_round] for i in range(0, len(messages), per_round)]
    wall = {"raw": [], "ours": []}
    cpu = {"raw": 0.0, "ours": 0.0}
    with null_smtp_server() as port:
        smtp = SmtpSettings(host="127.0.0.1", port=port, from_=sender)

        def run_raw(batch: list[tuple[str, bytes]], at: dt.datetime) -> float:
            return asyncio.run(raw_loop(port, batch, sender))

        def run_ours(batch: list[tuple[str, bytes]], at: dt.datetime) -> float:
            started = time.perf_counter()
            report = asyncio.run(send_due(store, SmtpTransport(smtp), at, smtp=smtp, settings=ReminderSettings()))
            elapsed = time.perf_counter() - started
            assert report.sent == len(batch) and not report.failed and not report.gave_up, report
            return elapsed

        for n, batch in enumerate(rounds):
            order = [("raw", run_raw), ("ours", run_ours)]
            for side, run in order if n % 2 == 0 else order[::-1]:
                cpu_started = time.process_time()
                wall[side].append(run(batch, NOW + n * ROUND))
                cpu[side] += time.process_time() - cpu_started
    with store.uow() as uow:
        assert set(uow.session.scalars(select(Outbox.status))) == {"sent"}
    raw, ours = sum(wall["raw"]), sum(wall["ours"])
    per_round_ratios = [round(r / o, 2) for r, o in zip(wall["raw"], wall["ours"])]
    save(
        "mail",
        {
            "messages": args.messages,
            "rounds": len(rounds),
            "raw_aiosmtplib_s": round(raw, 3),
            "outbox_send_s": round(ours, 3),
            "raw_msgs_per_s": round(args.messages / raw),
            "outbox_msgs_per_s": round(args.messages / ours),
            "throughput_ratio": round(raw / ours, 2),
            "round_ratios": per_round_ratios,
            "round_ratio_median": round(statistics.median(per_round_ratios), 2),
            "raw_cpu_ms_per_msg": round(cpu["raw"] / args.messages * 1e3, 3),
            "outbox_cpu_ms_per_msg": round(cpu["ours"] / args.messages * 1e3, 3),
            "target": "throughput ratio >= 0.8",
            "peak_rss_mib": peak_rss_mib(),
        },
    )


if __name__ == "__main__":
    main()
