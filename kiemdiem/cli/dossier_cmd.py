"""``kiemdiem dossier``: assemble one unit's dossier for one phase into its own folder under ``--out``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.table import Table

# The module, not its names: the CLI package imports this file while it is still loading.
import kiemdiem.cli as shell
from kiemdiem.calendar import format_instant
from kiemdiem.dossier import REPORT_DOCX, folder_name
from kiemdiem.errors import KiemdiemError
from kiemdiem.store.db import open_store
from kiemdiem.store.dossiers import assemble_dossier, latest_summaries
from kiemdiem.store.organization import campaign_plan

STATE_STYLES = {"done": "green", "done_late": "yellow", "incomplete": "white", "overdue": "bold red"}
STATUS_STYLES = {"present": "green", "late": "yellow", "missing": "red", "not_provided": "dim"}


def register(app: typer.Typer) -> None:
    app.command("dossier")(dossier)


def dossier(
    campaign: str = typer.Option(..., "--campaign", help="Mã đợt."),
    unit: str = typer.Option(..., "--unit", help="Mã đơn vị."),
    phase: str = typer.Option(..., "--phase", help="Mã giai đoạn (xem 'kiemdiem plan check')."),
    out: Path = typer.Option(..., "--out", help="Thư mục chứa các hồ sơ; mỗi hồ sơ nằm trong thư mục con <mã đơn vị>_<mã giai đoạn>/."),
    at: str = typer.Option(None, "--at", help="Lập hồ sơ như tại thời điểm này (ISO 8601 hoặc dd/mm/yyyy HH:MM, giờ địa phương)."),
) -> None:
    """Lập hồ sơ của một đơn vị trong một giai đoạn: danh mục, tệp nén kèm bảng kê, văn bản tổng hợp."""
    try:
        now = shell.resolve_now(at)
        store = open_store()
        with store.uow() as uow:
            plan = campaign_plan(uow, campaign)
            # Consolidation documents come with the newest snapshot, when one has been made.
            summaries = latest_summaries(uow, campaign, unit, now)
        # Every dossier has the same file names (checklist.json…): one folder each, so that
        # several units and phases can share one --out.
        result = assemble_dossier(
            store, plan, campaign, unit, phase, out / folder_name(unit, phase), now, summaries.get(unit), subtree=summaries or None,
        )
    except KiemdiemError as exc:
        shell.fail(exc)
        return
    summary = result.summary
    style = STATE_STYLES.get(summary["state"], "white")
    shell.console.print(f"[bold]Hồ sơ {result.unit_code} · {result.phase_id}[/] (tính đến {format_instant(now)})", highlight=False)
    shell.console.print(
        f"Tình trạng: [{style}]{summary['state_name']}[/] — bắt buộc {summary['required']}, đã nộp {summary['present']} "
        f"(trễ hạn {summary['late']}), còn thiếu {summary['missing']}; {summary['files']} tệp.",
        highlight=False,
    )
    if summary["missing"]:
        table = Table(title="Còn thiếu")
        for column in ("Văn bản", "Đảng viên", "Tình trạng"):
            table.add_column(column)
        for item in result.checklist["items"]:
            if item["status"] == "missing":
                table.add_row(item["doc_name"], item["member_name"] or "", f"[{STATUS_STYLES['missing']}]{item['status_name']}[/]")
        shell.console.print(table)
    if REPORT_DOCX not in result.outputs:
        shell.console.print("[dim]Chưa có kết quả tổng hợp (chạy kiemdiem consolidate): chưa lập báo cáo tổng hợp, danh sách xếp loại, biểu thống kê.[/]")
    elif result.consolidation_version:
        # The documents carry that version's date, not today's: say which one it is.
        made = dt.datetime.fromisoformat(result.consolidation_version["created_at"])
        shell.console.print(
            f"Báo cáo, danh sách, biểu thống kê lập theo lần tổng hợp phiên bản {result.consolidation_version['version']} "
            f"({format_instant(made)}), ghi ngày của phiên bản đó.",
            highlight=False,
        )
    shell.console.print(f"Thư mục hồ sơ: {result.out_dir}", highlight=False)
    verb = "Đã ghi" if result.changed else "Không thay đổi"
    shell.console.print(f"{verb}: {result.archive} (sha256 {result.sha256[:16]}…)", highlight=False)
    for name in result.written:
        shell.console.print(f"  • {name}", highlight=False)
