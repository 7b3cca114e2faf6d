"""``kiemdiem consolidate``, ``kiemdiem result cancel``, ``kiemdiem finding override``.

``consolidate`` reads the result lists received by ``--at`` (default: now), consolidates (a new
snapshot version only where something changed) and prints a unit's summary. A refused result
file is reported with its rows and reasons and makes the exit code non-zero; what was valid is
still consolidated. Cancelling a result or overriding a finding is recorded with who and why,
and the consolidation is rerun at once so the new version and the offices' emails follow.
"""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

# The module, not its names: the CLI package imports this file while it is still loading.
import kiemdiem.cli as shell
from kiemdiem.calendar import format_instant
from kiemdiem.consolidation import QUOTA_SCOPE_LABELS, in_usual_order, unit_hash
from kiemdiem.errors import InvalidInput, KiemdiemError, NotFound
from kiemdiem.rules.base import LEVEL_NAMES, LEVELS, NOT_EVALUATED_NAMES, NOT_EVALUATED_REASONS, finding_title, unit_of_key
from kiemdiem.store.db import open_store
from kiemdiem.store.models import Unit
from kiemdiem.store.organization import campaign_plan
from kiemdiem.store.results import cancel_result, ingest_results, override_finding
from kiemdiem.store.snapshots import ConsolidationReport, consolidate_campaign, latest_snapshots, root_units
from kiemdiem.tabular import format_decimal

result_app = typer.Typer(help="Kết quả xếp loại (hủy bỏ kết quả để ban hành quyết định xếp loại lại).", no_args_is_help=True)
finding_app = typer.Typer(help="Vi phạm, lưu ý khi tổng hợp (chấp thuận có ghi rõ người và lý do).", no_args_is_help=True)

SEVERITY_NAMES = {"error": "Lỗi", "warning": "Cảnh báo", "info": "Thông tin"}
SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
QUOTA_STATUS = {"ok": "đạt", "breach": "VƯỢT", "overridden": "vượt (đã được chấp thuận)", "n/a": "không áp dụng"}
MODE_NAMES = {"full": "tính toàn bộ", "incremental": "tính lại phần thay đổi", "unchanged": "không có gì thay đổi", "as_of": "xem lại một thời điểm trước"}


def register(app: typer.Typer) -> None:
    app.command("consolidate")(consolidate)
    app.add_typer(result_app, name="result")
    app.add_typer(finding_app, name="finding")


def _vn_number(value: float | None) -> str:
    return "—" if value is None else format_decimal(value)


def consolidate(
    campaign: str = typer.Option(..., "--campaign", help="Mã đợt."),
    unit: str = typer.Option(None, "--unit", help="Đơn vị cần in (mặc định: đơn vị gốc)."),
    at: str = typer.Option(None, "--at", help="Tổng hợp như tại thời điểm này (ISO 8601 hoặc dd/mm/yyyy HH:MM, giờ địa phương)."),
    as_json: bool = typer.Option(False, "--json", help="In kết quả dạng JSON."),
    full: bool = typer.Option(False, "--full", help="Tính lại toàn bộ thay vì chỉ phần có thay đổi."),
) -> None:
    """Đọc các danh sách kết quả đã nộp, tổng hợp lên cây tổ chức và in kết quả của một đơn vị."""
    try:
        now = shell.resolve_now(at)
        store = open_store()
        with store.uow() as uow:
            plan = campaign_plan(uow, campaign)
        intake = ingest_results(store, plan, campaign, now, actor="cli")
        run = consolidate_campaign(store, plan, campaign, now, changed_units=None if full else intake.changed_units, actor="cli")
        with store.uow() as uow:
            # Only the units printed: the root's (or the given unit's) newest snapshot, never the
            # whole tree's (at national scale, hundreds of thousands of payloads).
            shown = [unit] if unit else root_units(uow, campaign)
            if run.mode == "as_of":  # a look back: the state at --at, computed and not stored
                snapshots = {
                    code: {"version": None, "content_hash": unit_hash(run.as_of[code]), "created_at": now.isoformat(), "payload": run.as_of[code]}
                    for code in shown if code in run.as_of
                }
            else:
                snapshots = latest_snapshots(uow, campaign, shown)
            if unit and unit not in snapshots:
                raise NotFound(f"đơn vị không tồn tại hoặc chưa có kết quả tổng hợp: '{unit}'")
            shown = [code for code in shown if code in snapshots]
            # Names of the organizations listed as missing results (only those printed).
            listed = {c for code in shown for c in snapshots[code]["payload"]["missing_results"]["organizations"][:MISSING_SHOWN]}
            org_names = dict(uow.session.execute(
                select(Unit.code, Unit.name).where(Unit.campaign_id == campaign, Unit.code.in_(sorted(listed)))
            ).all()) if listed else {}
    except KiemdiemError as exc:
        shell.fail(exc)
        return
    refused = [p for r in intake.refused for p in r.problems]
    if as_json:
        print(json.dumps(
            {
                "campaign": campaign,
                "at": now.isoformat(),
                "intake": intake.as_dict(),
                "run": run.as_dict(),
                "units": [
                    {"code": code, "version": snapshots[code]["version"], "content_hash": snapshots[code]["content_hash"],
                     "created_at": snapshots[code]["created_at"], "summary": in_usual_order(snapshots[code]["payload"])}
                    for code in shown
                ],
            },
            ensure_ascii=False, indent=2,
        ))
    else:
        _print_run(plan.number, now, intake, run)
        for code in shown:
            _print_summary(snapshots[code], org_names)
    if refused:
        shell.err_console.print(f"[bold red]Lỗi:[/] {len(intake.refused)} tệp kết quả bị từ chối ({len(refused)} vấn đề); kết quả trước đó vẫn giữ nguyên:")
        for problem in refused:
            shell.err_console.print(f"  • {problem}", highlight=False, markup=False)
        raise typer.Exit(InvalidInput.exit_code)


def _print_run(plan_number: str, now, intake, run: ConsolidationReport) -> None:
    console = shell.console
    console.print(f"[bold]{plan_number}[/] — tổng hợp lúc {format_instant(now)}", highlight=False)
    console.print(
        f"Đọc {len(intake.ingested)} tệp kết quả ({intake.member_rows} kết quả đảng viên, {intake.org_rows} kết quả tổ chức), "
        f"từ chối {len(intake.refused)}. Lần tổng hợp: {MODE_NAMES.get(run.mode, run.mode)}, {run.recomputed} đơn vị được tính.",
        highlight=False,
    )
    if run.mode == "as_of":
        console.print(
            f"Xem lại tại {format_instant(now)}, trước lần tổng hợp gần nhất ({format_instant(run.last_run_at)}): "
            "số liệu tính theo các kết quả đã nhận đến thời điểm đó; không lưu phiên bản mới, không gửi thư.",
            highlight=False,
        )
    elif run.units_updated:
        versions = ", ".join(f"{c} v{run.versions[c]}" for c in run.units_updated[:12])
        more = f" … +{len(run.units_updated) - 12}" if len(run.units_updated) > 12 else ""
        console.print(f"Phiên bản mới: {versions}{more}. Thư báo thay đổi: {len(run.outbox_ids)}.", highlight=False)
    else:
        console.print("Không có phiên bản mới (dữ liệu không đổi).")


def _levels_table(title: str, levels: dict) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("Mức xếp loại", "Số lượng", "Tỷ lệ (%)"):
        table.add_column(column)
    for code in LEVELS:  # best first, whatever order the stored payload's keys came back in
        if code in levels:
            value = levels[code]
            table.add_row(f"{code} – {LEVEL_NAMES[code]}", str(value["count"]), _vn_number(value["percent"]))
    return table


def _quota_line(quota: dict) -> str:
    # "tính <scope>", not "(<scope>)": one scope reads "toàn cây (chỉ để tham khảo)" and would nest brackets.
    return (
        f"Hạn mức 20% tính {QUOTA_SCOPE_LABELS.get(quota['scope'], quota['scope'])}: {quota['htxsnv']} HTXSNV / {quota['httnv']} HTTNV, "
        f"tối đa được {quota['max_allowed']} HTXSNV — {QUOTA_STATUS.get(quota['status'], quota['status'])}."
    )


MISSING_SHOWN = 30  # members and organizations listed by name; the rest are counted


def _print_summary(snapshot: dict, org_names: dict[str, str] | None = None) -> None:
    console = shell.console
    summary = snapshot["payload"]
    unit, members, orgs = summary["unit"], summary["members"], summary["organizations"]
    console.print()
    console.print(
        f"[bold]{unit['name']} ({unit['code']})[/] — "
        + (f"phiên bản {snapshot['version']}, lập lúc " if snapshot["version"] is not None else "xem lại tại ")
        + f"{format_instant(dt.datetime.fromisoformat(snapshot['created_at']))}, mã băm {snapshot['content_hash'][:12]}…",
        highlight=False,
    )
    own = unit.get("result")
    if own and (own.get("level") or own.get("self_level")):
        decided = f" (do {own['decided_by']} quyết định)" if own.get("decided_by") else " (tự đánh giá, chưa có quyết định)"
        console.print(f"Xếp loại của tổ chức: {own.get('level') or own.get('self_level')}{decided}", highlight=False)
    not_eval = ", ".join(
        f"{members['not_evaluated'][r]} {NOT_EVALUATED_NAMES[r]}" for r in NOT_EVALUATED_REASONS if members["not_evaluated"].get(r)
    ) or "không có"
    console.print(
        f"Đảng viên: tổng số {members['total']}; thuộc diện đánh giá {members['evaluated']}; đã xếp loại {members['classified']}; "
        f"chưa có kết quả {members['missing']}. Không đánh giá, xếp loại: {not_eval}.",
        highlight=False,
    )
    console.print(_levels_table("Xếp loại đảng viên (tỷ lệ trên số thuộc diện đánh giá)", members["levels"]))
    ratio = members.get("htxsnv_over_httnv_percent")
    console.print(f"Tỷ lệ HTXSNV/HTTNV: {_vn_number(ratio)}{'%' if ratio is not None else ''}.", highlight=False)
    console.print(_quota_line(members["quota"]), highlight=False)
    if orgs["total"]:
        console.print(
            f"Tổ chức đảng trực thuộc (cả cây): {orgs['total']}; đã xếp loại {orgs['classified']}; chưa có kết quả {orgs['missing']}.",
            highlight=False,
        )
        console.print(_levels_table("Xếp loại tổ chức đảng", orgs["levels"]))
        console.print(_quota_line(orgs["quota"]), highlight=False)
    missing = summary["missing_results"]
    if missing["members"] or missing["organizations"]:
        console.print(f"[bold]Chưa có kết quả[/]: {len(missing['members'])} đảng viên, {len(missing['organizations'])} tổ chức đảng.")
        for m in missing["members"][:MISSING_SHOWN]:
            console.print(f"  • {m['full_name']} ({m['member_id']}), {m['unit_code']}", highlight=False)
        if len(missing["members"]) > MISSING_SHOWN:
            console.print(f"  … và {len(missing['members']) - MISSING_SHOWN} đảng viên khác")
        names = org_names or {}
        for code in missing["organizations"][:MISSING_SHOWN]:
            console.print(f"  • Tổ chức: {names[code]} ({code})" if code in names else f"  • Tổ chức: {code}", highlight=False)
        if len(missing["organizations"]) > MISSING_SHOWN:
            console.print(f"  … và {len(missing['organizations']) - MISSING_SHOWN} tổ chức đảng khác")
    findings = summary["findings"]
    if not findings:
        console.print("Không có vi phạm quy định.")
        return
    console.print(f"[bold]Vi phạm, lưu ý ({len(findings)})[/]:")
    for f in findings:
        style = SEVERITY_STYLES.get(f["severity"], "white")
        override = f["overridden"]
        note = f" — đã được {override['by']} chấp thuận: {override['reason']}" if override else ""
        console.print(f"  • [{style}]{SEVERITY_NAMES.get(f['severity'], f['severity'])}[/] {f['message']} ({f['regulation']}){note}", highlight=False)
        # The key is what an authorised override names; said so, it does not read as a broken line.
        # Only a breach is approved: a warning or a note (an absent member) needs no approval.
        if not override and f["severity"] == "error":
            console.print(
                f"    [dim]chấp thuận (nếu có thẩm quyền): kiemdiem finding override --campaign … --key '{escape(f['key'])}' --by … --reason …[/]",
                highlight=False,
            )


def _print_rerun(run: ConsolidationReport) -> None:
    if run.units_updated:
        versions = ", ".join(f"{c} v{run.versions[c]}" for c in run.units_updated[:12])
        shell.console.print(f"Đã tổng hợp lại: {versions}; thư báo thay đổi: {len(run.outbox_ids)}.", highlight=False)
        if run.diff_text:
            shell.console.print(run.diff_text, highlight=False, markup=False)
    else:
        shell.console.print("Tổng hợp lại: không có phiên bản mới.")


@result_app.command("cancel")
def result_cancel(
    campaign: str = typer.Option(..., "--campaign", help="Mã đợt."),
    member: str = typer.Option(None, "--member", help="Mã đảng viên có kết quả cần hủy."),
    unit: str = typer.Option(None, "--unit", help="Mã tổ chức đảng có kết quả cần hủy."),
    by: str = typer.Option(..., "--by", help="Người (cấp ủy) quyết định hủy."),
    reason: str = typer.Option(..., "--reason", help="Lý do hủy."),
    at: str = typer.Option(None, "--at", help="Thời điểm hủy (mặc định: bây giờ)."),
) -> None:
    """Hủy bỏ kết quả xếp loại hiện hành (giữ lịch sử) để ban hành quyết định xếp loại lại."""
    try:
        now = shell.resolve_now(at)
        store = open_store()
        with store.uow() as uow:
            plan = campaign_plan(uow, campaign)
            outcome = cancel_result(uow, campaign, member_code=member, unit_code=unit, by=by, reason=reason, now=now)
            uow.commit()
        run = consolidate_campaign(
            store, plan, campaign, now, changed_units={outcome.changed_unit}, reason=f"hủy kết quả của {outcome.subject} ({by}: {reason})"[:256], actor=by,
        )
    except KiemdiemError as exc:
        shell.fail(exc)
        return
    what = f"đảng viên {member}" if member else f"tổ chức đảng {unit}"
    shell.console.print(f"Đã hủy kết quả hiện hành của {what} (do {by}: {reason}); lịch sử được giữ.", highlight=False)
    _print_rerun(run)


@finding_app.command("override")
def finding_override(
    campaign: str = typer.Option(..., "--campaign", help="Mã đợt."),
    key: str = typer.Option(..., "--key", help="Mã vi phạm, ví dụ cap_members:SCT: (xem 'kiemdiem consolidate')."),
    by: str = typer.Option(..., "--by", help="Người có thẩm quyền chấp thuận."),
    reason: str = typer.Option(..., "--reason", help="Lý do chấp thuận."),
    at: str = typer.Option(None, "--at", help="Thời điểm chấp thuận (mặc định: bây giờ)."),
) -> None:
    """Ghi nhận việc chấp thuận một vi phạm (ai, vì sao); vi phạm vẫn được liệt kê nhưng không còn tính là vi phạm."""
    try:
        now = shell.resolve_now(at)
        store = open_store()
        with store.uow() as uow:
            plan = campaign_plan(uow, campaign)
            override = override_finding(uow, campaign, key, by, reason, now)
            about = uow.session.scalar(select(Unit.name).where(Unit.campaign_id == campaign, Unit.code == unit_of_key(key)))
            uow.commit()
        run = consolidate_campaign(store, plan, campaign, now, changed_units=set(),
                                   reason=f"chấp thuận vi phạm {finding_title(key, about)} ({by}: {reason})"[:256], actor=by)
    except KiemdiemError as exc:
        shell.fail(exc)
        return
    shell.console.print(f"Đã ghi nhận: {override.finding_key} được {override.by} chấp thuận ({override.reason}).", highlight=False)
    _print_rerun(run)
