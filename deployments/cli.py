"""The ``kiemdiem`` console script: the core commands plus those that run Prefect flows.

Prefect, the flows and uvicorn are imported by the commands that use them: importing them costs
several seconds of CPU, which every ``kiemdiem org import`` or ``kiemdiem status`` paid for nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from deployments.schedules import describe_schedules, phase_rrule, tick_rrule
from kiemdiem import steps
from kiemdiem.calendar import format_instant, parse_instant
from kiemdiem.catalogue import PHASE_KINDS
from kiemdiem.cli import (
    AT_HELP, CAMPAIGN_HELP, JSON_HELP, app, consolidate_cmd, console, dossier_cmd, err_console, fail, main as core_main,
    resolve_now, use_vietnamese_classes, web_cmd,
)
from kiemdiem.errors import KiemdiemError, Refused
from kiemdiem.plan import Plan, load_plan
from kiemdiem.settings import web_settings
from kiemdiem.store.organization import campaign_plan, get_campaign
from tasks.context import get_store

dossier_cmd.register(app)
consolidate_cmd.register(app)
web_cmd.register(app)

# Prefect waits 20 s for its temporary local server to answer; a first start, which creates
# Prefect's own database, can take longer on a slow machine. Used unless the user set
# PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (environment or Prefect profile).
EPHEMERAL_STARTUP_SECONDS = 120
RECORDER_DRAIN_SECONDS = 15.0


# --- Prefect's temporary local server ------------------------------------------------------


def start_prefect() -> None:
    """Make sure a Prefect server answers before a flow runs, and say in Vietnamese, with a
    non-zero exit and before anything has run, when none does.

    Without a configured server (PREFECT_API_URL) Prefect starts a temporary local one inside
    the first flow run and waits 20 s for it; a first start, which creates Prefect's database,
    can take longer on a slow machine. It is started here instead, with more time
    (``EPHEMERAL_STARTUP_SECONDS``) unless the user set
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS."""
    from prefect.server.api.server import SubprocessASGIServer  # noqa: PLC0415 - see the module docstring
    from prefect.settings import get_current_settings  # noqa: PLC0415

    settings = get_current_settings()
    if settings.api.url:
        error = asyncio.run(_api_health())
        if error is not None:
            _prefect_failure(
                f"không kết nối được máy chủ Prefect đã cấu hình (PREFECT_API_URL={settings.api.url})",
                ["Kiểm tra máy chủ Prefect đang chạy và địa chỉ đúng, rồi chạy lại lệnh.",
                 "Hoặc bỏ biến PREFECT_API_URL để dùng máy chủ Prefect tạm thời trên máy này."],
                error,
            )
        return
    if not settings.server.ephemeral.enabled:
        _prefect_failure(
            "chưa có máy chủ Prefect: PREFECT_API_URL chưa đặt và máy chủ tạm thời đang tắt",
            ["Đặt PREFECT_API_URL tới một máy chủ Prefect, hoặc bật máy chủ tạm thời: export PREFECT_SERVER_EPHEMERAL_ENABLED=true"],
            None,
        )
    # Prefect creates its home without parents (a fresh checkout's .kiemdiem/prefect): its
    # database could then not be opened and the server never answered.
    Path(settings.home).expanduser().mkdir(parents=True, exist_ok=True)
    timeout = settings.server.ephemeral.startup_timeout_seconds
    if "startup_timeout_seconds" not in settings.server.ephemeral.model_fields_set:
        timeout = max(timeout, EPHEMERAL_STARTUP_SECONDS)
    try:
        SubprocessASGIServer().start(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported the same way
        _prefect_failure(
            f"không khởi động được máy chủ Prefect tạm thời trên máy này (đã chờ tối đa {timeout} giây)",
            ["Chạy lại lệnh: lần khởi động đầu tiên chậm hơn vì Prefect phải tạo cơ sở dữ liệu của nó.",
             "Cho chờ lâu hơn, ví dụ: export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300",
             "Hoặc dùng một máy chủ Prefect chạy sẵn: chạy 'prefect server start' ở một cửa sổ khác, rồi "
             "export PREFECT_API_URL=http://127.0.0.1:4200/api"],
            exc,
        )


async def _api_health() -> Exception | None:
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    async with get_client() as client:
        return await client.api_healthcheck()


def _prefect_failure(what: str, hints: list[str], exc: Exception | None) -> None:
    err_console.print(f"[bold red]Lỗi:[/] {escape(what)}; lệnh chưa làm gì, dữ liệu không thay đổi.", highlight=False)
    err_console.print("Cách khắc phục:")
    for hint in hints:
        err_console.print(f"  • {hint}", highlight=False, markup=False, soft_wrap=True)
    if exc is not None:
        detail = " ".join(str(exc).split())[:300]
        err_console.print(f"Chi tiết (cho bộ phận kỹ thuật): {type(exc).__name__}: {detail}", highlight=False, markup=False)
    raise typer.Exit(1)


def temporary_server_running() -> bool:
    from prefect.server.api.server import SubprocessASGIServer  # noqa: PLC0415
    from prefect.settings import get_current_settings  # noqa: PLC0415

    return not get_current_settings().api.url and SubprocessASGIServer().running


async def wait_until_recorded(flow_run_id=None, timeout: float = RECORDER_DRAIN_SECONDS) -> None:
    """Wait until Prefect's temporary server has recorded the tick's task runs.

    The server records task runs from the events the tick sends, a little after the fact. When
    the command ends, the server is stopped, and a recording still under way is cancelled and
    logged with a traceback (``task_run_recorder`` ... ``CancelledError``) though the tick went
    well. The events are handled in order, so once the tick's last task is recorded as finished
    and none is left unfinished, the server stops idle. ``flow_run_id``: the tick's run (default:
    the latest tick run). A Prefect server of one's own keeps running: nothing to wait for."""
    if not temporary_server_running():
        return
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        FlowFilter, FlowFilterName, TaskRunFilter, TaskRunFilterFlowRunId, TaskRunFilterName, TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import TERMINAL_STATES, StateType  # noqa: PLC0415
    from prefect.client.schemas.sorting import FlowRunSort  # noqa: PLC0415

    from flows.tick import tick as tick_flow  # noqa: PLC0415
    from tasks.consolidation import finish_tick  # noqa: PLC0415

    unfinished = [t for t in StateType if t not in TERMINAL_STATES]
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        if flow_run_id is None:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[tick_flow.name])), sort=FlowRunSort.START_TIME_DESC, limit=1,
            )
            if not runs:
                return
            flow_run_id = runs[0].id
        of_run = TaskRunFilterFlowRunId(any_=[flow_run_id])
        last_done = TaskRunFilter(
            flow_run_id=of_run, name=TaskRunFilterName(like_=finish_tick.name),
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=list(TERMINAL_STATES))),
        )
        not_done = TaskRunFilter(flow_run_id=of_run, state=TaskRunFilterState(type=TaskRunFilterStateType(any_=unfinished)))
        while time.monotonic() < deadline:
            if await client.read_task_runs(task_run_filter=last_done, limit=1) and not await client.read_task_runs(task_run_filter=not_done, limit=1):
                return
            await asyncio.sleep(0.2)


# --- tick -------------------------------------------------------------------------------------


async def run_tick(campaign: str, now: dt.datetime) -> dict:
    from flows.tick import tick as tick_flow  # noqa: PLC0415

    state = await tick_flow(campaign, now.isoformat(), return_state=True)
    if state.is_completed():
        await wait_until_recorded(state.state_details.flow_run_id)
    return await state.aresult()


@app.command("tick")
def tick(
    campaign: str = typer.Option(..., "--campaign", help=CAMPAIGN_HELP),
    at: str = typer.Option(None, "--at", help="Chạy lượt xử lý như tại thời điểm này. " + AT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    replay: bool = typer.Option(
        False, "--replay",
        help="Cho phép chạy tại thời điểm sớm hơn lượt đã chạy (chạy lại quá khứ; thư nhắc của thời điểm đó sẽ được gửi thật).",
    ),
) -> None:
    """Chạy một lượt xử lý của đợt (một flow run Prefect): nhận hồ sơ, nhắc hạn, chuyển cấp, gửi thư; in những gì lượt này đã làm."""
    try:
        now = resolve_now(at)
        store = get_store()
        with store.uow() as uow:
            plan = campaign_plan(uow, campaign)  # an unknown campaign is refused here, before Prefect starts
            last = steps.last_tick_at(uow, campaign)
        if last is not None and now < last and not replay:
            # A pass for a past moment really sends that moment's reminders, deadlines long gone.
            raise Refused(
                f"thời điểm {format_instant(now)} sớm hơn lượt xử lý đã chạy ({format_instant(last)}): chạy lại sẽ gửi "
                "thư nhắc đã cũ. Để xem tình trạng lúc đó dùng 'kiemdiem status --at'; nếu thật sự muốn chạy lại, thêm --replay."
            )
    except KiemdiemError as exc:
        fail(exc)
        return
    start_prefect()
    # What this tick does with notices is read from the store against marks taken before it (one
    # email carries several phases' notices); the command's report, so not the scheduled runs' cost.
    mark = steps.tick_mark(store, campaign)
    try:
        result = asyncio.run(run_tick(campaign, now))
    except KiemdiemError as exc:
        fail(exc)
        return
    except Exception as exc:  # noqa: BLE001 - Prefect has logged the traceback with the flow run
        err_console.print(f"[bold red]Lỗi:[/] lượt xử lý không hoàn thành: {escape(type(exc).__name__)}: {escape(str(exc))}", highlight=False)
        err_console.print("Có thể chạy lại lệnh: lượt xử lý chạy lại không lập trùng thông báo, không gửi trùng thư.")
        raise typer.Exit(1) from None
    result["notices"] = steps.tick_notices(store, campaign, mark)
    totals = steps.notice_totals(store, campaign)
    if as_json:
        print(json.dumps(with_phase_names(plan, {**result, "notices_cumulative": totals}), ensure_ascii=False, indent=2, default=str))
        return
    print_tick(plan, campaign, result, totals)


def with_phase_names(plan: Plan, report: dict) -> dict:
    """The tick's JSON keeps phase ids as keys and adds each phase's Vietnamese name (as status --json does)."""
    out = dict(report)
    names = {p.id: p.name for p in plan.phases}
    for part in ("phases", "notices", "notices_cumulative"):
        if isinstance(out.get(part), dict):
            out[part] = {
                pid: ({**value, "phase_name": names[pid]} if isinstance(value, dict) and pid in names else value)
                for pid, value in out[part].items()
            }
    return out


# Most telling first: a tick shows the one of its consolidations that did the most.
CONSOLIDATION_MODES = {
    "full": "tổng hợp toàn bộ",
    "incremental": "tính lại phần có thay đổi do có kết quả mới sau lần tổng hợp trước",
    "unchanged": "không có gì thay đổi",
    # A tick at a moment before the newest stored consolidation (a replay): nothing is stored.
    "as_of": "không lưu phiên bản mới vì lượt này ở thời điểm trước lần tổng hợp gần nhất",
    "not_yet": "chưa đến lúc tổng hợp",
}


def print_tick(plan: Plan, campaign: str, result: dict, totals: dict[str, dict[str, int]]) -> None:
    """What this tick did, in words: its counts are this tick's own; the campaign's running
    totals come last, under a title that says so."""
    out = console.print
    now = parse_instant(result["now"])
    out(f"[bold]Lượt xử lý đợt {escape(campaign)}[/] ({escape(plan.number)}) lúc {format_instant(now)}", highlight=False)
    collected = result["collected"]
    out(
        f"Thư mục nhận: nhận {collected['accepted']} bộ hồ sơ, trùng {collected['unchanged']}, từ chối {len(collected['refused'])}.",
        highlight=False,
    )
    for refused in collected["refused"]:
        err_console.print(f"  Từ chối {refused['folder']}: {refused['reason']}", highlight=False, markup=False)
    for failed in collected.get("failed", ()):
        err_console.print(f"  Chưa nhận được {failed['folder']}: {failed['reason']}; tệp vẫn ở thư mục nhận, lượt sau nhận lại.",
                          style="bold red", highlight=False, markup=False)
    results = result["results"]
    line = f"Danh sách kết quả xếp loại: đọc được {len(results['ingested'])} tệp"
    if results["refused"]:
        line += f", không đọc được {len(results['refused'])} tệp (xem 'kiemdiem consolidate')"
    out(line + ".", highlight=False)
    for kept in results.get("kept_decisions", ()):
        # A branch's list after its committee decided: the decision stands (store.results).
        out(f"  {kept['unit_code']} gửi kết quả mới cho {kept['subject']}, nhưng {kept['decided_by']} đã quyết định xếp loại: "
            "giữ quyết định của cấp trên (cấp trên ra quyết định mới nếu cần thay đổi).", highlight=False)
    # The tick reruns a consolidation for late results; a committee's phase makes the first one.
    reports = [result["consolidated"]] + [p["consolidation"] for p in (result.get("phases") or {}).values() if "consolidation" in p]
    rank = list(CONSOLIDATION_MODES)
    mode = min((r.get("mode") for r in reports), key=lambda m: rank.index(m) if m in rank else len(rank))
    updated = len({u for r in reports for u in r.get("units_updated", [])})
    text = CONSOLIDATION_MODES.get(mode, mode)
    out(f"Tổng hợp kết quả: {text}" + (f" ({updated} đơn vị cập nhật)" if updated else "") + ".", highlight=False)

    order = {p.id: i for i, p in enumerate(plan.phases)}
    names = {p.id: p.name for p in plan.phases}
    keys = ("reminders", "escalations", "queued", "sent")
    notices = {p: row for p, row in result.get("notices", {}).items() if any(row.get(k) for k in keys)}
    if notices:
        table = notice_table(
            "Thông báo của riêng lượt này (một thông báo: một mục còn thiếu, báo cho một người nhận)",
            ("Nhắc hạn\nmới lập", "Chuyển cấp\nmới lập", "Đưa vào\nthư", "Đã\ngửi"),
        )
        sums = dict.fromkeys(keys, 0)
        for phase_id in sorted(notices, key=lambda p: order.get(p, len(order))):
            row = notices[phase_id]
            for key in keys:
                sums[key] += row.get(key, 0)
            table.add_row(escape(names.get(phase_id, phase_id)), *(str(row.get(key, 0)) for key in keys))
        table.add_row("[bold]Cộng[/]", *(f"[bold]{n}[/]" for n in sums.values()))
        out(table)
    else:
        out("Thông báo: lượt này không lập, không gửi thông báo nhắc hạn hay chuyển cấp nào.")

    composed, sent = result["composed"], result["sent"]
    if composed.get("deferred"):
        out("Thư: ngoài giờ làm việc, lượt này không soạn và không gửi thư; thư được soạn và gửi vào giờ làm việc kế tiếp.")
    else:
        diffs = len({i for r in reports for i in r.get("outbox_ids") or ()})
        line = (
            f"Thư của lượt này: soạn {composed['digests']} thư nhắc hạn, chuyển cấp mới (gồm {composed['notices']} thông báo)"
            + (f" và {diffs} thư báo thay đổi kết quả tổng hợp" if diffs else "")
            + f" đưa vào hàng đợi; gửi đi {sent['sent']} thư trong hàng đợi"
        )
        if sent.get("failed"):
            line += f"; {sent['failed']} thư gửi lỗi, sẽ thử lại"
        if sent.get("gave_up"):
            line += f"; {sent['gave_up']} thư ngừng gửi (máy chủ thư từ chối hẳn, hoặc đã thử lại quá số lần)"
        if sent.get("configuration_error"):
            err_console.print(
                f"Lỗi cấu hình gửi thư: {sent['configuration_error']} — kiểm tra KIEMDIEM_SMTP_USER, mật khẩu "
                "(KIEMDIEM_SMTP_PASSWORD hoặc khối Secret KIEMDIEM_SMTP_PASSWORD_BLOCK); thư vẫn trong hàng đợi và sẽ được gửi khi sửa xong.",
                style="bold red", highlight=False, markup=False,
            )
        if composed.get("cancelled_delivered"):
            line += f"; bỏ {composed['cancelled_delivered']} thông báo vì đơn vị đã nộp"
        if composed.get("cancelled_past_deadline"):
            line += f"; bỏ {composed['cancelled_past_deadline']} thông báo nhắc hạn chưa kịp gửi vì đã quá hạn (chuyển sang đôn đốc)"
        out(line + ".", highlight=False)

    if totals:
        table = notice_table(
            "Lũy kế từ đầu đợt đến nay (cộng mọi lượt xử lý, không phải của riêng lượt này)",
            ("Nhắc hạn\nđã lập", "Chuyển cấp\nđã lập", "Thông báo\nđã gửi"),
        )
        for phase_id in sorted(totals, key=lambda p: order.get(p, len(order))):
            row = totals[phase_id]
            table.add_row(escape(names.get(phase_id, phase_id)), str(row["reminders"]), str(row["escalations"]), str(row["sent"]))
        out(table)


def notice_table(title: str, counts: tuple[str, ...]) -> Table:
    """A phase per row (its name takes the room left), then counts."""
    table = Table(title=title, expand=True)
    table.add_column("Giai đoạn", ratio=1)
    for column in counts:
        table.add_column(column, justify="right", no_wrap=True)
    return table


# --- deployments ------------------------------------------------------------------------------


def build_deployments(plan_file: Path, campaign: str | None):
    from prefect.client.schemas.schedules import RRuleSchedule  # noqa: PLC0415

    from flows.phases import PHASE_FLOWS  # noqa: PLC0415
    from flows.tick import tick as tick_flow  # noqa: PLC0415

    plan = load_plan(plan_file)
    campaign_id = campaign or plan.id
    deployments = [
        tick_flow.to_deployment(
            name=f"tick-{campaign_id}",
            parameters={"campaign_id": campaign_id},
            schedules=[RRuleSchedule(rrule=tick_rrule(plan), timezone="Asia/Ho_Chi_Minh")],
        )
    ]
    for phase in plan.phases:
        flow = PHASE_FLOWS.get(phase.kind, PHASE_FLOWS["report_upward"])
        deployments.append(
            flow.to_deployment(
                name=f"{phase.id}-{campaign_id}",
                parameters={"campaign_id": campaign_id, "phase_id": phase.id},
                schedules=[RRuleSchedule(rrule=phase_rrule(plan, phase), timezone="Asia/Ho_Chi_Minh")],
            )
        )
    return plan, deployments


def _check_served_campaign(plan: Plan, campaign_id: str) -> None:
    """The flows run the stored campaign by its id, on its stored plan; the schedules come from the
    plan file: refuse a campaign that does not exist, or one set up from another plan."""
    with get_store().uow() as uow:
        stored_plan = get_campaign(uow, campaign_id).plan_id
    if stored_plan != plan.id:
        raise Refused(
            f"đợt '{campaign_id}' được tạo từ kế hoạch '{stored_plan}', không phải '{plan.id}': "
            "hãy nêu đúng tệp kế hoạch của đợt (--plan) hoặc đúng mã đợt (--campaign)"
        )


@app.command("deploy")
def deploy(
    plan_file: Path = typer.Argument(..., metavar="TỆP_KẾ_HOẠCH", help="Tệp kế hoạch (YAML)."),
    campaign: str = typer.Option(None, "--campaign", help="Mã đợt (mặc định: mã kế hoạch)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """In lịch chạy dựng từ các mốc của kế hoạch: lượt xử lý hằng giờ trong đợt và các ngày của từng giai đoạn."""
    try:
        plan = load_plan(plan_file)
    except KiemdiemError as exc:
        fail(exc)
        return
    schedules = describe_schedules(plan)
    if as_json:
        print(json.dumps(schedules, ensure_ascii=False, indent=2))
        return
    start, end = (format_instant(dt.datetime.fromisoformat(t)) for t in schedules["tick"]["window"])
    console.print(f"[bold]Lượt xử lý[/]: mỗi giờ, từ {start} đến {end} (giờ Việt Nam)", highlight=False)
    for phase_id, info in schedules["phases"].items():
        runs = ", ".join(format_instant(dt.datetime.fromisoformat(r)) for r in info["runs"])
        console.print(
            f"[bold]{escape(plan.phase(phase_id).name)}[/] (mã {phase_id}, loại: {PHASE_KINDS.get(info['kind'], info['kind'])}): {runs}",
            highlight=False,
        )


@app.command("serve")
def serve(
    plan_file: Path = typer.Option(..., "--plan", help="Tệp kế hoạch (YAML) của đợt."),
    campaign: str = typer.Option(None, "--campaign", help="Mã đợt (mặc định: mã kế hoạch)."),
    web: bool = typer.Option(True, "--web/--no-web", help="Chạy cả trang theo dõi (mặc định: có)."),
) -> None:
    """Chạy các deployment (Prefect cục bộ hoặc máy chủ đã cấu hình) và trang theo dõi trong một tiến trình."""
    try:
        plan, deployments = build_deployments(plan_file, campaign)
        _check_served_campaign(plan, campaign or plan.id)
    except KiemdiemError as exc:
        fail(exc)
        return
    start_prefect()
    import uvicorn  # noqa: PLC0415
    from prefect import serve as prefect_serve  # noqa: PLC0415

    if web:
        settings = web_settings()
        server = uvicorn.Server(uvicorn.Config("kiemdiem.web.app:create_app", factory=True, host=settings.host, port=settings.port, log_level="warning"))
        threading.Thread(target=server.run, name="kiemdiem-web", daemon=True).start()
        console.print(f"Trang theo dõi: http://{settings.host}:{settings.port}")
    prefect_serve(*deployments)


@app.command("demo")
def demo(
    home: Path = typer.Option(Path(".kiemdiem/demo"), "--home", help="Thư mục dữ liệu của bản chạy thử (bị xóa và tạo lại)."),
    seed: int = typer.Option(2023, "--seed", help="Hạt giống ngẫu nhiên của kịch bản: cùng hạt giống cho cùng diễn biến."),
) -> None:
    """Chạy thử kế hoạch 187-KH/ĐU từ 20/11 đến 31/12/2023 với Đảng bộ Sở Công Thương giả lập."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from deployments.demo import run_demo  # noqa: PLC0415

    start_prefect()
    run_demo(home.resolve(), seed, console)
    asyncio.run(wait_until_recorded())


use_vietnamese_classes(app)  # every command is registered by now


def main() -> None:
    core_main()
