"""The demo: plan 187-KH/ĐU run from 20/11/2023 to 31/12/2023 on a generated Đảng bộ Sở Công Thương.

Everything is real except the calendar: a local SMTP sink writes each message as an .eml
file, Prefect runs each tick as a flow run, and the SQLite store under the demo's home
holds the campaign. Units deliver on time, late or never, through the web path or the drop
folder, per a seeded scenario.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.tick import tick
from kiemdiem.calendar import format_instant
from kiemdiem.notify.sink import MailSink
from kiemdiem.plan import Plan, load_plan
from kiemdiem.settings import StoreSettings, plans_dir
from kiemdiem.simulation import SimEvent, build_scenario, demo_ticks, with_results
from kiemdiem.status import STATE_NAMES
from kiemdiem.store.db import Store, open_store
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.outbox import outbox_counts
from kiemdiem.store.queries import campaign_status, load_members, load_units
from kiemdiem.store.snapshots import latest_snapshots
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.synth import generate

CAMPAIGN = "187-KH-DU-2023"
PLAN_FILE = "187-KH-DU-2023.yaml"
START = dt.date(2023, 11, 20)
END = dt.date(2023, 12, 31)


@dataclass
class DemoSummary:
    home: Path
    ticks: int
    seconds: float
    mail_dir: Path
    messages: int
    counts: dict[str, int]
    overdue: list[tuple[str, str, str, int]] = field(default_factory=list)  # unit code, unit name, phase name, items missing
    root_version: int = 0
    dossier_dir: Path | None = None


def prepare(home: Path, seed: int) -> tuple[Store, Plan]:
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    os.environ["KIEMDIEM_HOME"] = str(home)
    os.environ.pop("KIEMDIEM_DATABASE_URL", None)
    plan = load_plan(plans_dir() / PLAN_FILE)
    files = generate("sct", seed, home / "org", campaign_year=plan.year)
    store = open_store(StoreSettings(home=home))
    setup_at = plan.calendar.at(START, dt.time(7, 0))
    with store.uow() as uow:
        create_campaign(uow, plan, CAMPAIGN, setup_at, actor="demo")
        import_organization(uow, CAMPAIGN, files.units, files.members, setup_at, actor="demo")
        uow.commit()
    return store, plan


def deliver(store: Store, plan: Plan, event: SimEvent, inbox: Path) -> None:
    """Web uploads are recorded at their own moment; drop-folder files wait for the next tick."""
    if event.channel == "web":
        with store.uow() as uow:
            record_submission(
                uow, store.blobs, plan, CAMPAIGN, event.unit_code, event.doc_type,
                [IncomingFile(event.filename, data=event.content)], event.at, "web",
                member_code=event.member_code, phase_id=event.phase_id, actor=f"web:{event.unit_code}",
            )
            uow.commit()
        return
    folder = inbox / event.unit_code / event.doc_type
    if event.member_code:
        folder = folder / event.member_code
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / event.filename
    path.write_bytes(event.content)
    settled = time.time() - 60  # the intake skips files still being copied in
    os.utime(path, (settled, settled))


async def simulate(store: Store, plan: Plan, seed: int, console: Console) -> int:
    with store.uow() as uow:
        units = load_units(uow, CAMPAIGN)
        members = load_members(uow, CAMPAIGN)
    events, supplement = with_results(plan, build_scenario(plan, units, members, seed), units, members, seed)
    ticks = demo_ticks(plan, START, END)
    inbox = store.settings.inbox_dir / CAMPAIGN
    pending = list(events)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        job = progress.add_task("Mô phỏng đợt kiểm điểm", total=len(ticks))
        for now in ticks:
            while pending and pending[0].at <= now:
                deliver(store, plan, pending.pop(0), inbox)
            result = await tick(CAMPAIGN, now.isoformat())
            sent = result["sent"]["sent"]
            progress.update(job, advance=1, description=f"{format_instant(now)} · gửi {sent} thư")
    return len(ticks)


def run_demo(home: Path, seed: int = 2023, console: Console | None = None) -> DemoSummary:
    console = console or Console()
    started = time.monotonic()
    store, plan = prepare(home, seed)
    mail_dir = home / "mail"
    with MailSink(mail_dir) as sink:
        os.environ["KIEMDIEM_SMTP_HOST"] = "127.0.0.1"
        os.environ["KIEMDIEM_SMTP_PORT"] = str(sink.port)
        os.environ.setdefault("KIEMDIEM_SMTP_STARTTLS", "false")
        ticks = asyncio.run(simulate(store, plan, seed, console))
        messages = len(sink.received)
    end = plan.calendar.at(END, dt.time(23, 0))
    with store.uow() as uow:
        counts = outbox_counts(uow, CAMPAIGN)
        status = campaign_status(uow, plan, CAMPAIGN, end)
        snapshots = latest_snapshots(uow, CAMPAIGN)
    overdue = [
        (code, status.units[code].name, plan.phase(row.phase_id).name, len(row.missing))
        for code, rows in status.by_unit.items()
        for row in rows
        if row.state == "overdue"
    ]
    root = next(code for code, info in status.units.items() if info.parent_code is None)
    summary = DemoSummary(
        home, ticks, time.monotonic() - started, mail_dir, messages, counts, overdue,
        snapshots.get(root, {}).get("version", 0), store.settings.output_dir / CAMPAIGN / "dossiers",
    )
    print_summary(summary, console)
    return summary


def print_summary(summary: DemoSummary, console: Console) -> None:
    console.rule("[bold]Kết quả mô phỏng 187-KH/ĐU (20/11–31/12/2023)")
    reminders = summary.counts.get("reminder.sent", 0)
    escalations = summary.counts.get("escalation.sent", 0)
    console.print(f"{summary.ticks} lượt xử lý trong {summary.seconds:.0f} giây.")
    console.print(f"Thư nhắc hạn đã gửi: [bold]{reminders}[/] · thư đôn đốc (chuyển cấp): [bold]{escalations}[/] · tổng số thư nhận được ở hộp thư thử: {summary.messages}")
    table = Table(title="Đơn vị còn quá hạn lúc 31/12/2023 23:00")
    for column in ("Mã", "Đơn vị", "Giai đoạn", "Mục còn thiếu"):
        table.add_column(column)
    for code, name, phase_name, missing in summary.overdue:
        table.add_row(code, name, phase_name, str(missing))
    console.print(table if summary.overdue else f"Không còn đơn vị nào {STATE_NAMES['overdue'].lower()}.")
    diffs = summary.counts.get("consolidation_diff.sent", 0)
    console.print(f"Tổng hợp kết quả: phiên bản mới nhất của đảng bộ v{summary.root_version}; thư báo thay đổi do kết quả nộp muộn: [bold]{diffs}[/]")
    console.print(f"Hồ sơ (danh mục, tệp nén kèm bảng kê, văn bản tổng hợp): {summary.dossier_dir}")
    console.print(f"Thư (.eml): {summary.mail_dir}")
    console.print(f"Dữ liệu (SQLite, tệp đã nộp): {summary.home}")
