"""The ``kiemdiem`` console script: the core commands plus those that run Prefect flows."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import typer
import uvicorn
from prefect import serve as prefect_serve
from prefect.client.schemas.schedules import RRuleSchedule

from deployments.demo import run_demo
from deployments.schedules import describe_schedules, phase_rrule, tick_rrule
from flows.phases import PHASE_FLOWS
from flows.tick import tick as tick_flow
from kiemdiem.cli import app, consolidate_cmd, console, dossier_cmd, fail, main as core_main, resolve_now, web_cmd
from kiemdiem.errors import KiemdiemError
from kiemdiem.plan import load_plan
from kiemdiem.settings import web_settings


dossier_cmd.register(app)
consolidate_cmd.register(app)
web_cmd.register(app)


@app.command("tick")
def tick(campaign: str = typer.Option(..., "--campaign"), at: str = typer.Option(None, "--at")) -> None:
    """Chạy một lượt xử lý (flow Prefect) của đợt tại thời điểm --at."""
    try:
        now = resolve_now(at)
    except KiemdiemError as exc:
        fail(exc)
        return
    result = asyncio.run(tick_flow(campaign, now.isoformat()))
    console.print_json(json.dumps(result, ensure_ascii=False, default=str))


def build_deployments(plan_file: Path, campaign: str | None):
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


@app.command("deploy")
def deploy(
    plan_file: Path,
    campaign: str = typer.Option(None, "--campaign", help="Mã đợt (mặc định: mã kế hoạch)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Dựng lịch chạy từ các mốc của kế hoạch: lượt xử lý hằng giờ trong đợt và các ngày của từng giai đoạn."""
    try:
        plan = load_plan(plan_file)
    except KiemdiemError as exc:
        fail(exc)
        return
    schedules = describe_schedules(plan)
    if as_json:
        print(json.dumps(schedules, ensure_ascii=False, indent=2))
        return
    window = schedules["tick"]["window"]
    console.print(f"[bold]tick[/]: hằng giờ từ {window[0]} đến {window[1]} (Asia/Ho_Chi_Minh)")
    for phase_id, info in schedules["phases"].items():
        console.print(f"[bold]{phase_id}[/] ({info['kind']}): " + ", ".join(r[:16].replace("T", " ") for r in info["runs"]))


@app.command("serve")
def serve(
    plan_file: Path = typer.Option(..., "--plan"),
    campaign: str = typer.Option(None, "--campaign"),
    web: bool = typer.Option(True, "--web/--no-web", help="Chạy cả trang theo dõi."),
) -> None:
    """Chạy các deployment (Prefect cục bộ hoặc máy chủ đã cấu hình) và trang theo dõi trong một tiến trình."""
    _, deployments = build_deployments(plan_file, campaign)
    if web:
        settings = web_settings()
        server = uvicorn.Server(uvicorn.Config("kiemdiem.web.app:create_app", factory=True, host=settings.host, port=settings.port, log_level="warning"))
        threading.Thread(target=server.run, name="kiemdiem-web", daemon=True).start()
        console.print(f"Trang theo dõi: http://{settings.host}:{settings.port}")
    prefect_serve(*deployments)


@app.command("demo")
def demo(
    home: Path = typer.Option(Path(".kiemdiem/demo"), "--home", help="Thư mục dữ liệu của bản chạy thử (bị xóa và tạo lại)."),
    seed: int = typer.Option(2023, "--seed"),
) -> None:
    """Chạy thử kế hoạch 187-KH/ĐU từ 20/11 đến 31/12/2023 với Đảng bộ Sở Công Thương giả lập."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    run_demo(home.resolve(), seed, console)


def main() -> None:
    core_main()
