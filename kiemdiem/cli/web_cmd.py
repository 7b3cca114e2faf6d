"""``kiemdiem web`` (the dashboard alone, with uvicorn) and ``kiemdiem user add|invite``."""

from __future__ import annotations

import os

import typer
import uvicorn

from kiemdiem.calendar import format_instant
from kiemdiem.cli import AT_HELP, console, fail, resolve_now
from kiemdiem.errors import KiemdiemError
from kiemdiem.settings import reminder_settings, web_settings
from kiemdiem.store.db import open_store
from kiemdiem.web.auth import ROLES, create_user, invite_user

# What each role may do, for the help texts (the role is given by its code).
ROLE_HELP = "admin: quản trị đợt và người dùng; office: văn phòng cấp ủy, cả cây con của đơn vị; unit: đơn vị và cấp dưới"


def web(
    host: str = typer.Option(None, "--host", help="Địa chỉ lắng nghe (mặc định KIEMDIEM_WEB_HOST hoặc 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="Cổng (mặc định KIEMDIEM_WEB_PORT hoặc 8080)."),
    workers: int = typer.Option(1, "--workers", help="Số tiến trình phục vụ."),
    at: str = typer.Option(
        None, "--at", help="Khi chạy lại (diễn tập) một đợt đã qua: đồng hồ của trang bắt đầu từ thời điểm này rồi chạy tiếp "
        "(như KIEMDIEM_WEB_CLOCK_START), để trang, tệp nộp và quyết định mang ngày của đợt. " + AT_HELP,
    ),
) -> None:
    """Chạy trang theo dõi và cổng nộp hồ sơ (một mình, không cần Prefect)."""
    if at is not None:
        try:
            resolve_now(at)
        except KiemdiemError as exc:
            fail(exc)
            return
        os.environ["KIEMDIEM_WEB_CLOCK_START"] = at  # the worker processes read it (create_app)
    settings = web_settings()
    open_store().dispose()  # create the data directory and bring the schema up to date once, before the workers start
    console.print(f"Trang theo dõi: http://{host or settings.host}:{port or settings.port}/")
    uvicorn.run(
        "kiemdiem.web.app:create_app", factory=True, host=host or settings.host, port=port or settings.port,
        workers=workers, proxy_headers=True, log_level="info",
    )


def user_add(
    campaign: str = typer.Option(..., "--campaign", help="Mã đợt kiểm điểm (xem 'kiemdiem campaign list')."),
    email: str = typer.Option(..., "--email", help="Địa chỉ thư của người dùng (dùng để đăng nhập)."),
    name: str = typer.Option(..., "--name", help="Họ tên."),
    role: str = typer.Option(..., "--role", help=f"Vai trò, một trong {', '.join(ROLES)} ({ROLE_HELP})."),
    unit: str = typer.Option(..., "--unit", help="Mã đơn vị mà người này thuộc về (thấy cây con của đơn vị đó)."),
    password: str = typer.Option(None, "--password", help="Mật khẩu (ít nhất 10 ký tự); bỏ trống: chỉ đăng nhập bằng đường dẫn."),
    at: str = typer.Option(None, "--at", help="Thời điểm tạo. " + AT_HELP),
) -> None:
    """Thêm người dùng gắn với một đơn vị."""
    try:
        now = resolve_now(at)
        store = open_store()
        with store.uow() as uow:
            user = create_user(uow, campaign_id=campaign, unit_code=unit, email=email, full_name=name, role=role,
                               now=now, password=password, actor="cli")
            uow.commit()
    except KiemdiemError as exc:
        fail(exc)
        return
    console.print(f"Đã thêm {user.email} ({role}) thuộc đơn vị {unit}.")
    if password is None:
        console.print("Chưa đặt mật khẩu: gửi đường dẫn đăng nhập bằng [bold]kiemdiem user invite[/].")


def user_invite(
    campaign: str = typer.Option(..., "--campaign", help="Mã đợt kiểm điểm (xem 'kiemdiem campaign list')."),
    email: str = typer.Option(..., "--email", help="Địa chỉ thư nhận thư mời."),
    name: str = typer.Option(..., "--name", help="Họ tên."),
    unit: str = typer.Option(..., "--unit", help="Mã đơn vị."),
    role: str = typer.Option("unit", "--role", help=f"Vai trò của người mới, một trong {', '.join(ROLES)} ({ROLE_HELP})."),
    show_link: bool = typer.Option(False, "--show-link", help="In cả đường dẫn (khi chưa cấu hình gửi thư)."),
    at: str = typer.Option(None, "--at", help="Thời điểm mời (đường dẫn có hạn tính từ lúc này). " + AT_HELP),
) -> None:
    """Mời người phụ trách đơn vị: xếp thư có đường dẫn đăng nhập (có hạn) vào hàng đợi gửi."""
    try:
        now = resolve_now(at)
        store = open_store()
        with store.uow() as uow:
            invitation = invite_user(
                uow, campaign_id=campaign, unit_code=unit, email=email, full_name=name, now=now,
                hours=web_settings().invite_hours, base_url=reminder_settings().submit_url, actor="cli", role=role,
            )
            uow.commit()
    except KiemdiemError as exc:
        fail(exc)
        return
    created = "đã tạo người dùng mới, " if invitation.created_user else ""
    console.print(
        f"Thư mời cho {invitation.email}: {created}đường dẫn hết hạn lúc {format_instant(invitation.expires_at)} (giờ Việt Nam). "
        "Thư đã vào hàng đợi; lượt xử lý kế tiếp ('kiemdiem tick', hoặc 'kiemdiem serve' đang chạy) sẽ gửi đi."
    )
    if show_link:
        console.print(invitation.link, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``web`` and the ``user`` group to the ``kiemdiem`` command line."""
    app.command("web")(web)
    user_app = typer.Typer(help="Người dùng trang theo dõi và cổng nộp hồ sơ.", no_args_is_help=True)
    user_app.command("add")(user_add)
    user_app.command("invite")(user_invite)
    app.add_typer(user_app, name="user")
