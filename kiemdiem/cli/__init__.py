"""The ``kiemdiem`` command line. Each command is a thin shell over core and store functions."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kiemdiem.calendar import format_instant, parse_instant
from kiemdiem.catalogue import DOCUMENTS
from kiemdiem.errors import InvalidInput, KiemdiemError, Problem
from kiemdiem.plan import describe, load_plan
from kiemdiem.settings import reminder_settings
from kiemdiem.status import STATE_NAMES
from kiemdiem.store.db import current_revision, migrate, open_store
from kiemdiem.store.intake import collect_drop_folder
from kiemdiem.store.organization import campaign_plan, create_campaign, import_organization, list_campaigns
from kiemdiem.store.queries import campaign_status
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.synth import PRESETS, generate

app = typer.Typer(help="kiemdiem: điều phối đợt kiểm điểm, đánh giá, xếp loại chất lượng tổ chức đảng, đảng viên.", no_args_is_help=True)
plan_app = typer.Typer(help="Kế hoạch (plan files).", no_args_is_help=True)
campaign_app = typer.Typer(help="Đợt kiểm điểm (campaigns).", no_args_is_help=True)
org_app = typer.Typer(help="Tổ chức đảng và đảng viên.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
app.add_typer(campaign_app, name="campaign")
app.add_typer(org_app, name="org")
db_app = typer.Typer(help="Cơ sở dữ liệu (migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)

STATE_STYLES = {"done": "green", "done_late": "yellow", "pending": "white", "due_soon": "magenta", "overdue": "bold red"}


def resolve_now(at: str | None) -> dt.datetime:
    """The command's "now": --at if given (local time unless it has an offset), else the wall clock."""
    if at is None:
        return dt.datetime.now(dt.timezone.utc)
    try:
        return parse_instant(at)
    except ValueError as exc:
        raise InvalidInput([_problem("--at", str(exc))]) from exc


def _problem(field: str, reason: str) -> Problem:
    return Problem("tham số dòng lệnh", reason, field=field)


def fail(exc: KiemdiemError) -> None:
    if isinstance(exc, InvalidInput):
        err_console.print(f"[bold red]Lỗi:[/] {len(exc.problems)} vấn đề, không có gì được lưu:")
        for problem in exc.problems:
            err_console.print(f"  • {problem}", highlight=False, markup=False)
    else:
        err_console.print(f"[bold red]Lỗi:[/] {exc}", highlight=False)
    raise typer.Exit(exc.exit_code)


# --- database ---------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Đưa lược đồ cơ sở dữ liệu lên phiên bản mới nhất (Alembic); chạy khi nâng cấp."""
    store = open_store(run_migrations=False)
    before = current_revision(store.engine)
    migrate(store.engine)
    after = current_revision(store.engine)
    console.print(f"Lược đồ: {before or 'trống'} → {after} ({store.dialect})")


# --- plan -----------------------------------------------------------------------------


@plan_app.command("check")
def plan_check(file: Path, as_json: bool = typer.Option(False, "--json", help="In kết quả dạng JSON.")) -> None:
    """Kiểm tra một tệp kế hoạch và in từng giai đoạn với hạn chót chính xác."""
    try:
        plan = load_plan(file)
    except InvalidInput as exc:
        if as_json:
            print(json.dumps({"ok": False, "errors": [p.as_dict() for p in exc.problems]}, ensure_ascii=False, indent=2))
            raise typer.Exit(exc.exit_code) from None
        fail(exc)
        return
    if as_json:
        print(json.dumps({"ok": True, "plan": describe(plan)}, ensure_ascii=False, indent=2))
        return
    console.print(f"[bold]{plan.number}[/] — {plan.title}")
    console.print(f"Cơ quan ban hành: {plan.issuer} · năm {plan.year} · bộ quy tắc {plan.rule_set} · múi giờ {plan.timezone}")
    for n, phase in enumerate(plan.phases, start=1):
        console.print(f"\n[bold]{n}. {phase.id}[/] — {phase.name} [dim]({phase.kind})[/]")
        console.print(f"   Hạn chót: [bold]{phase.deadline:%d/%m/%Y %H:%M:%S} {phase.deadline:%z}[/]", highlight=False)
        console.print(f"   Cách đọc: {phase.reading}", highlight=False)
        console.print(f"   Áp dụng cho: {', '.join(phase.applies_to)}" + (f" · sau: {', '.join(phase.after)}" if phase.after else ""))
        for d in phase.documents:
            mark = "bắt buộc" if d.required else "nếu có"
            who = f"từng đảng viên ({d.member_scope})" if d.per_member else "đơn vị"
            console.print(f"   {'•' if d.required else '○'} {d.doc_type}: {d.name} — {who}, {mark}", highlight=False)
    console.print(f"Nhắc trước hạn (ngày làm việc): {', '.join(map(str, plan.reminder_offsets))}")
    for step in plan.escalation:
        console.print(f"Chuyển cấp bước {step.step}: sau {step.after_working_days} ngày làm việc → {step.to} {' '.join(step.emails)}")
    for a in plan.assignments:
        console.print(f"Phân công: {a.person} ({a.title or ''}) dự, chỉ đạo tại {a.unit}")
    console.print("[green]Kế hoạch hợp lệ.[/]")


# --- campaign and organization ---------------------------------------------------------


@campaign_app.command("create")
def campaign_create(plan_file: Path, campaign_id: str = typer.Option(None, "--id", help="Mã đợt (mặc định: mã kế hoạch).")) -> None:
    """Tạo đợt kiểm điểm từ một tệp kế hoạch (chạy lại với kế hoạch đã sửa sẽ cập nhật)."""
    try:
        plan = load_plan(plan_file)
        store = open_store()
        with store.uow() as uow:
            campaign, changed = create_campaign(uow, plan, campaign_id, dt.datetime.now(dt.timezone.utc))
            uow.commit()
    except KiemdiemError as exc:
        fail(exc)
        return
    console.print(f"Đợt [bold]{campaign.id}[/] ({plan.number}): {'đã tạo/cập nhật' if changed else 'không thay đổi'}.")


@campaign_app.command("list")
def campaign_list() -> None:
    """Liệt kê các đợt kiểm điểm."""
    store = open_store()
    with store.uow() as uow:
        for c in list_campaigns(uow):
            console.print(f"{c.id}\t{c.plan_number}\t{c.title}")


@org_app.command("import")
def org_import(
    campaign: str = typer.Option(..., "--campaign", help="Mã đợt."),
    units: Path = typer.Option(..., "--units", help="Tệp đơn vị (CSV/XLSX)."),
    members: Path = typer.Option(None, "--members", help="Tệp đảng viên (CSV/XLSX)."),
) -> None:
    """Nhập cây tổ chức và danh sách đảng viên (tất cả hoặc không gì cả)."""
    try:
        store = open_store()
        with store.uow() as uow:
            report = import_organization(uow, campaign, units, members, dt.datetime.now(dt.timezone.utc))
            uow.commit()
    except KiemdiemError as exc:
        fail(exc)
        return
    console.print(
        f"Đơn vị: thêm {report.units_added}, cập nhật {report.units_updated}. "
        f"Đảng viên: thêm {report.members_added}, cập nhật {report.members_updated}."
        + ("" if report.changed else " (Không có gì thay đổi.)")
    )


@app.command("gen")
def gen(
    preset: str = typer.Option("khoi", "--preset", help=f"Một trong: {', '.join(PRESETS)}."),
    seed: int = typer.Option(1, "--seed"),
    out: Path = typer.Option(Path("out/org"), "--out"),
    year: int = typer.Option(2023, "--year"),
) -> None:
    """Sinh dữ liệu tổ chức và đảng viên giả lập theo định dạng nhập."""
    if preset not in PRESETS:
        err_console.print(f"[bold red]Lỗi:[/] preset không tồn tại '{preset}' (chỉ nhận {', '.join(PRESETS)})")
        raise typer.Exit(2)
    files = generate(preset, seed, out, campaign_year=year)
    console.print(f"Đã ghi {files.units} ({files.unit_count} đơn vị, {files.branch_count} chi bộ) và {files.members} ({files.member_count} đảng viên).")


# --- submissions and status ------------------------------------------------------------


@app.command("submit")
def submit(
    files: list[Path] = typer.Argument(..., help="Các tệp nộp cho một mục."),
    campaign: str = typer.Option(..., "--campaign"),
    unit: str = typer.Option(..., "--unit"),
    doc: str = typer.Option(..., "--doc", help="Loại văn bản (xem danh mục)."),
    member: str = typer.Option(None, "--member", help="Mã đảng viên, với văn bản nộp theo từng đảng viên."),
    phase: str = typer.Option(None, "--phase", help="Giai đoạn, khi văn bản thuộc nhiều giai đoạn."),
    at: str = typer.Option(None, "--at", help="Thời điểm nhận (ISO 8601 hoặc dd/mm/yyyy HH:MM, giờ địa phương)."),
) -> None:
    """Nộp văn bản của một đơn vị (hoặc của một đảng viên)."""
    try:
        now = resolve_now(at)
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InvalidInput([_problem("FILE", f"không tìm thấy tệp '{m}'") for m in missing])
        store = open_store()
        with store.uow() as uow:
            plan = campaign_plan(uow, campaign)
            outcome = record_submission(
                uow, store.blobs, plan, campaign, unit, doc, [IncomingFile(f.name, path=f) for f in files], now, "cli",
                member_code=member, phase_id=phase, actor="cli",
            )
            uow.commit()
    except KiemdiemError as exc:
        fail(exc)
        return
    if not outcome.created:
        which = "hiện hành" if outcome.is_current else "đã ghi cùng thời điểm"
        console.print(f"Không thay đổi: nội dung trùng với lần nộp {which} (#{outcome.submission_id}).")
        return
    timing = "[green]đúng hạn[/]" if outcome.on_time else "[yellow]trễ hạn[/]"
    if outcome.is_current:
        extra = f", thay thế lần nộp #{outcome.supersedes_id}" if outcome.supersedes_id else ""
    else:  # recorded with an earlier --at than the current submission
        extra = f"; ghi vào lịch sử theo thời điểm nhận, lần nộp hiện hành vẫn là #{outcome.current_id}"
    console.print(f"Đã nhận #{outcome.submission_id} {outcome.item_key}: {timing} (hạn {format_instant(outcome.deadline)}){extra}.")


@app.command("collect")
def collect(
    campaign: str = typer.Option(..., "--campaign"),
    inbox: Path = typer.Option(None, "--inbox", help="Thư mục nhận (mặc định: <KIEMDIEM_HOME>/inbox/<campaign>)."),
    at: str = typer.Option(None, "--at"),
) -> None:
    """Nhận các tệp trong thư mục nhận: <mã đơn vị>/<loại văn bản>/[<mã đảng viên>/]tệp."""
    try:
        now = resolve_now(at)
        store = open_store()
        with store.uow() as uow:
            plan = campaign_plan(uow, campaign)
        folder = inbox or store.settings.inbox_dir / campaign
        report = collect_drop_folder(store, plan, campaign, folder, now)
    except KiemdiemError as exc:
        fail(exc)
        return
    for outcome in report.accepted:
        console.print(f"Đã nhận {outcome.item_key} ({'đúng hạn' if outcome.on_time else 'trễ hạn'}).")
    for folder_name, reason in report.refused:
        err_console.print(f"[red]Từ chối[/] {folder_name}: {reason}")
    console.print(f"Nhận {len(report.accepted)}, trùng {len(report.unchanged)}, từ chối {len(report.refused)}.")
    if report.refused:
        raise typer.Exit(4)


@app.command("status")
def status(
    campaign: str = typer.Option(..., "--campaign"),
    unit: str = typer.Option(None, "--unit", help="Chỉ cây con của đơn vị này."),
    at: str = typer.Option(None, "--at"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Tình trạng từng đơn vị, từng giai đoạn: hạn, trạng thái, mục còn thiếu, % hoàn thành của cây con."""
    try:
        now = resolve_now(at)
        store = open_store()
        with store.uow() as uow:
            plan = campaign_plan(uow, campaign)
            result = campaign_status(uow, plan, campaign, now, subtree_of=unit, due_soon_working_days=reminder_settings().due_soon_working_days)
        if unit and not result.units:
            raise InvalidInput([_problem("--unit", f"đơn vị không tồn tại: '{unit}'")])
    except KiemdiemError as exc:
        fail(exc)
        return
    if as_json:
        for chunk in status_json_chunks(result):
            sys.stdout.write(chunk)
        sys.stdout.write("\n")
        return
    console.print(f"[bold]{plan.number}[/] — tình trạng lúc {format_instant(now)}")
    # A province has thousands of units and the country hundreds of thousands: print a table
    # per block of units, so that nothing holds every row at once.
    codes = list(result.units)
    for start in range(0, len(codes), STATUS_TABLE_UNITS):
        table = Table()
        for col in ("Đơn vị", "Giai đoạn", "Hạn", "Trạng thái", "Đã nộp", "% cây con", "Còn thiếu"):
            table.add_column(col)
        for code in codes[start : start + STATUS_TABLE_UNITS]:
            info = result.units[code]
            for row in result.for_unit(code):
                missing = ", ".join(
                    f"{m.doc_type}{f' ({m.member_name})' if m.member_name else ''}" for m in row.missing[:4]
                ) + (f" … +{len(row.missing) - 4}" if len(row.missing) > 4 else "")
                table.add_row(
                    f"{code}\n{info.name}", row.phase_id, format_instant(row.deadline),
                    f"[{STATE_STYLES[row.state]}]{STATE_NAMES[row.state]}[/]", f"{row.present}/{row.required}",
                    f"{row.subtree_percent:.0f}%", missing,
                )
        console.print(table)
    counts = result.count_states()
    console.print(" · ".join(f"{STATE_NAMES[s]}: {n}" for s, n in counts.items()))


STATUS_TABLE_UNITS = 500


def unit_status_json(result, code: str, info) -> dict:
    return {
        "code": code,
        "name": info.name,
        "kind": info.kind,
        "parent": info.parent_code,
        "subtree_percent": result.subtree_percent(code),
        "phases": [
            {
                "phase": row.phase_id,
                "deadline": row.deadline.isoformat(),
                "state": row.state,
                "required": row.required,
                "present": row.present,
                "late": row.late,
                "percent": row.percent,
                "subtree_percent": row.subtree_percent,
                "missing": [
                    {"doc_type": m.doc_type, "doc_name": DOCUMENTS[m.doc_type].name, "member_id": m.member_code, "member_name": m.member_name}
                    for m in row.missing
                ],
            }
            for row in result.for_unit(code)
        ],
    }


def status_json_chunks(result):
    """The status as one JSON document ({"now", "units": [...], "counts"}), written unit by unit."""
    yield "{\n  \"now\": " + json.dumps(result.now.isoformat()) + ",\n  \"units\": ["
    for n, (code, info) in enumerate(result.units.items()):
        text = json.dumps(unit_status_json(result, code, info), ensure_ascii=False, indent=2)
        yield ("," if n else "") + "\n    " + text.replace("\n", "\n    ")
    yield "\n  ],\n  \"counts\": " + json.dumps(result.count_states(), ensure_ascii=False) + "\n}"


def main() -> None:
    try:
        app()
    except KiemdiemError as exc:  # a command that forgot to catch still exits cleanly
        err_console.print(f"[bold red]Lỗi:[/] {exc}")
        sys.exit(exc.exit_code)

