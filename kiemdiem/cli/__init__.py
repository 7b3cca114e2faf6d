"""The ``kiemdiem`` command line. Each command is a thin shell over core and store functions."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path

import typer
import typer.core
import typer.rich_utils
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from typer.models import DefaultPlaceholder

try:  # typer carries its own copy of click since 0.2x; before, it used click itself
    from typer._click.exceptions import BadParameter, MissingParameter, NoArgsIsHelpError, NoSuchOption, UsageError
except ImportError:  # pragma: no cover - older typer
    from click.exceptions import BadParameter, MissingParameter, NoArgsIsHelpError, NoSuchOption, UsageError

from kiemdiem.calendar import TIMEZONE, format_instant, parse_instant
from kiemdiem.catalogue import DOCUMENTS, MEMBER_SCOPES, PHASE_KINDS, RULE_SETS, UNIT_KINDS
from kiemdiem.errors import InvalidInput, KiemdiemError, Problem, Unavailable
from kiemdiem.plan import Plan, describe, load_plan, plan_warnings
from kiemdiem.settings import reminder_settings
from kiemdiem.status import STATE_NAMES
from kiemdiem.store.db import UnitOfWork, current_revision, migrate, open_store
from kiemdiem.store.intake import collect_drop_folder
from kiemdiem.store.models import Unit
from kiemdiem.store.organization import campaign_plan, create_campaign, import_organization, list_campaigns
from kiemdiem.store.queries import campaign_status
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.submission import item_words, same_files_note
from kiemdiem.synth import PRESETS, generate

# --- Vietnamese for typer's own words (help pages, usage errors) --------------------------
#
# typer 0.29 carries its own copy of click, whose words are plain English strings (no gettext
# catalogue to add). Its public hooks are used instead: every command and group of the tree
# gets the classes below (``use_vietnamese_classes``), which write the usage line, the help
# option and the usage errors in Vietnamese; the help panels' titles and marks are typer's
# settings in ``typer.rich_utils``. Left in English: a value's conversion error from typer
# (e.g. a number that is not one), inside an otherwise Vietnamese message.

HELP_OPTION_HELP = "In hướng dẫn này rồi thoát."
# typer shows each option's Python type; office staff read these instead (flags show nothing).
TYPE_LABELS = {"<str>": "<chữ>", "<int>": "<số>", "<float>": "<số>", "<bool>": "", "<path>": "<đường dẫn>"}

for _name, _text in {
    "ARGUMENTS_PANEL_TITLE": "Tham số", "OPTIONS_PANEL_TITLE": "Tùy chọn", "COMMANDS_PANEL_TITLE": "Lệnh",
    "ERRORS_PANEL_TITLE": "Lỗi", "ABORTED_TEXT": "Đã dừng.", "DEFAULT_STRING": "[mặc định: {}]",
    "ENVVAR_STRING": "[biến môi trường: {}]", "REQUIRED_LONG_STRING": "[bắt buộc]",
    "DEPRECATED_STRING": "(không còn dùng) ", "RICH_HELP": "Xem hướng dẫn: [blue]'{command_path} {help_option}'[/].",
}.items():
    setattr(typer.rich_utils, _name, _text)

_USAGE_PATTERNS = [
    (re.compile(r"Option (.+) requires an argument\."), "Tùy chọn {0} cần một giá trị."),
    (re.compile(r"Option (.+) requires (\d+) arguments\."), "Tùy chọn {0} cần {1} giá trị."),
    (re.compile(r"Option (.+) does not take a value\."), "Tùy chọn {0} không nhận giá trị."),
    (re.compile(r"Got unexpected extra argument\(s\) \((.*)\)", re.S), "Thừa tham số: {0}."),
    (re.compile(r"No such command (.+)\."), "Không có lệnh {0}."),
    (re.compile(r"Missing command\."), "Thiếu lệnh."),
]


def _param_hint(exc: BadParameter) -> str:
    hint = exc.param_hint if exc.param_hint is not None else (exc.param.get_error_hint() if exc.param is not None else "")
    return hint if isinstance(hint, str) else " / ".join(repr(h) for h in hint)


def vietnamese_usage_error(exc: UsageError, ctx=None) -> UsageError:
    """The same usage error, said in Vietnamese (the exception itself when its words are not known).
    ``ctx``: the command's context, for an error raised without one (its usage line is shown)."""
    if isinstance(exc, NoArgsIsHelpError):
        return exc  # it carries the help page
    if isinstance(exc, MissingParameter):
        kind = exc.param_type or (exc.param.param_type_name if exc.param is not None else "")
        message = f"Thiếu {'tùy chọn' if kind == 'option' else 'tham số'} {_param_hint(exc)}."
    elif isinstance(exc, NoSuchOption):
        message = f"Không có tùy chọn {exc.option_name}."
        if exc.possibilities:
            message += f" Có phải là: {', '.join(sorted(exc.possibilities))}?"
    elif isinstance(exc, BadParameter):
        hint = _param_hint(exc)
        message = f"Giá trị không hợp lệ cho {hint}: {exc.message}" if hint else f"Giá trị không hợp lệ: {exc.message}"
    else:
        message = next((text.format(*m.groups()) for pattern, text in _USAGE_PATTERNS if (m := pattern.fullmatch(exc.message))), None)
        if message is None:
            return exc
    translated = UsageError(message, exc.ctx or ctx)
    translated.exit_code = exc.exit_code
    return translated


class _VietnameseHelp:
    """Usage line, help option, option types and usage errors in Vietnamese (see above)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.options_metavar == "[OPTIONS]":
            self.options_metavar = "[TÙY CHỌN]"
        if getattr(self, "subcommand_metavar", None) == "COMMAND [ARGS]...":
            self.subcommand_metavar = "LỆNH [THAM SỐ]..."

    def format_usage(self, ctx, formatter) -> None:
        formatter.write_usage(ctx.command_path, " ".join(self.collect_usage_pieces(ctx)), prefix="Cách dùng: ")

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.help = HELP_OPTION_HELP
        return option

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, typer.core.TyperOption) and param.metavar is None:
                label = param.display_type(ctx)
                if label in TYPE_LABELS:
                    param.metavar = TYPE_LABELS[label]
        return params

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            raise vietnamese_usage_error(exc, ctx) from None


class VietnameseCommand(_VietnameseHelp, typer.core.TyperCommand):
    pass


class VietnameseGroup(_VietnameseHelp, typer.core.TyperGroup):
    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            raise vietnamese_usage_error(exc, ctx) from None


def use_vietnamese_classes(typer_app: typer.Typer) -> None:
    """Give every command and group under ``typer_app`` the classes above, unless it chose its
    own. Run once every command is registered (the command modules register theirs later)."""
    for command in typer_app.registered_commands:
        if command.cls in (None, typer.core.TyperCommand):  # typer's default, made explicit by app.command()
            command.cls = VietnameseCommand
    for group in typer_app.registered_groups:
        if group.cls in (None, typer.core.TyperGroup) or isinstance(group.cls, DefaultPlaceholder):
            group.cls = VietnameseGroup
        use_vietnamese_classes(group.typer_instance)


# -h as well as --help on every command; no shell-completion options (English, and not for the office).
CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    help="kiemdiem: điều phối đợt kiểm điểm, đánh giá, xếp loại chất lượng tổ chức đảng, đảng viên.",
    no_args_is_help=True, add_completion=False, context_settings=CONTEXT, cls=VietnameseGroup,
)
plan_app = typer.Typer(help="Kế hoạch: kiểm tra tệp kế hoạch.", no_args_is_help=True)
campaign_app = typer.Typer(help="Đợt kiểm điểm: tạo, liệt kê.", no_args_is_help=True)
org_app = typer.Typer(help="Tổ chức đảng và đảng viên: nhập từ tệp.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
app.add_typer(campaign_app, name="campaign")
app.add_typer(org_app, name="org")
db_app = typer.Typer(help="Cơ sở dữ liệu: nâng cấp lược đồ.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# Help texts shared by the commands (here and in the other command modules).
CAMPAIGN_HELP = "Mã đợt kiểm điểm (xem 'kiemdiem campaign list')."
AT_HELP = (
    "Thời điểm coi là 'bây giờ' (mặc định: lúc chạy lệnh). Dạng dd/mm/yyyy HH:MM hoặc dd/mm/yyyy (giờ Việt Nam), "
    "ví dụ 10/12/2023 09:00; hoặc ISO 8601, ví dụ 2023-12-10T09:00 (không ghi múi giờ thì hiểu là giờ Việt Nam)."
)
JSON_HELP = "In kết quả dạng JSON (cho bộ phận kỹ thuật, chương trình khác): giữ các mã, kèm tên tiếng Việt."

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
    return Problem("dòng lệnh", reason, field=field)


# A file with thousands of bad rows (a shifted column) printed thousands of lines: the first ones
# are shown and the whole list is written as a CSV the office can open and sort in Excel.
PRINTED_PROBLEMS = 50


def problems_csv(problems: list[Problem], folder: Path | None = None) -> Path:
    """Every problem as a CSV (Excel's UTF-8 with BOM): tệp, dòng, cột, lý do. In ``folder`` (the
    current one), else the temporary folder when that cannot be written."""
    import csv
    import io
    import tempfile

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Tệp", "Dòng", "Cột", "Lý do"])
    for p in problems:
        writer.writerow([p.source, "" if p.row is None else p.row, p.column or p.field or "", p.reason])
    name = f"kiemdiem-loi-{dt.datetime.now():%Y%m%d-%H%M%S}.csv"
    data = out.getvalue().encode("utf-8-sig")
    for place in (folder or Path.cwd(), Path(tempfile.gettempdir())):
        try:
            (place / name).write_bytes(data)
            return (place / name).resolve()
        except OSError:
            continue
    raise OSError("không ghi được danh sách lỗi")


def fail(exc: KiemdiemError) -> None:
    if isinstance(exc, InvalidInput):
        problems = list(exc.problems)
        err_console.print(f"[bold red]Lỗi:[/] {len(problems)} vấn đề, không có gì được lưu:")
        for problem in problems[:PRINTED_PROBLEMS]:
            err_console.print(f"  • {problem}", highlight=False, markup=False)
        if len(problems) > PRINTED_PROBLEMS:
            more = len(problems) - PRINTED_PROBLEMS
            try:
                where = f"đủ {len(problems)} vấn đề ở tệp {problems_csv(problems)}"
            except OSError:
                where = "không ghi được tệp danh sách lỗi; dùng --json nếu lệnh có, để xem đủ"
            err_console.print(f"  … và {more} vấn đề khác; {where}", highlight=False, markup=False)
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
def plan_check(
    file: Path = typer.Argument(..., metavar="TỆP_KẾ_HOẠCH", help="Tệp kế hoạch (YAML), ví dụ plans/187-KH-DU-2023.yaml."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
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
    out = console.print
    out(f"[bold]{escape(plan.number)}[/] — {escape(plan.title)}")
    zone = "giờ Việt Nam" if plan.timezone == TIMEZONE else f"múi giờ {plan.timezone}"
    out(f"Cơ quan ban hành: {escape(plan.issuer)} · năm {plan.year} · {zone}", highlight=False)
    out(f"Căn cứ đánh giá: {escape(RULE_SETS.get(plan.rule_set, plan.rule_set))}", highlight=False)
    for n, phase in enumerate(plan.phases, start=1):
        out(f"\n[bold]{n}. {escape(phase.name)}[/]", highlight=False)
        out(f"   Mã giai đoạn: {phase.id} · loại: {escape(PHASE_KINDS.get(phase.kind, phase.kind))}", highlight=False)
        offset = f"{phase.deadline:%z}"
        out(f"   Hạn chót: [bold]{phase.deadline:%d/%m/%Y %H:%M:%S}[/] (UTC{offset[:3]}:{offset[3:]})", highlight=False)
        out(f"   Cách đọc: {escape(phase.reading)}", highlight=False)
        out(f"   Áp dụng cho: {', '.join(UNIT_KINDS.get(k, k) for k in phase.applies_to)}", highlight=False)
        if phase.after:
            out(f"   Sau giai đoạn: {escape('; '.join(_phase_name(plan, p) for p in phase.after))}", highlight=False)
        for d in phase.documents:
            mark = "bắt buộc" if d.required else "nếu có"
            who = f"từng đảng viên ({MEMBER_SCOPES.get(d.member_scope, d.member_scope).lower()})" if d.per_member else "đơn vị"
            out(f"   {'•' if d.required else '○'} {escape(d.name)} (mã {d.doc_type}) — {who}, {mark}", highlight=False)
            if d.note:
                out(f"     [dim]Kế hoạch ghi: {escape(d.note)}[/]", highlight=False)
    out(f"\nNhắc trước hạn: {', '.join(map(str, plan.reminder_offsets))} ngày làm việc", highlight=False)
    out("Chuyển cấp bước 0: ngay khi quá hạn → cấp ủy cấp trên trực tiếp và cấp ủy viên được phân công dự, chỉ đạo (nếu có)")
    for step in plan.escalation:
        target = escalation_target(step.to, step.emails) + (f" ({step.name})" if step.name else "")
        out(f"Chuyển cấp bước {step.step}: quá hạn {step.after_working_days} ngày làm việc → {escape(target)}", highlight=False)
    for a in plan.assignments:
        title = f" ({a.title})" if a.title else ""
        out(f"Phân công: {escape(a.person)}{escape(title)} dự, chỉ đạo tại {escape(a.unit)}", highlight=False)
    for warning in plan_warnings(plan):
        out(f"[yellow]Lưu ý:[/] {escape(warning)}", highlight=False)
    out("[green]Kế hoạch hợp lệ.[/]")


# What an escalation step's ``to`` means (kiemdiem.reminders.RecipientDirectory.escalation_targets).
ESCALATION_TARGETS = {
    "parent": "cấp ủy cấp trên trực tiếp của đơn vị",
    "grandparent": "cấp ủy trên hai cấp (cấp trên của cấp trên trực tiếp)",
    "root": "cấp ủy cao nhất của cây tổ chức đã nhập (đơn vị gốc)",
}


def escalation_target(to: str, emails: tuple[str, ...] | list[str] = ()) -> str:
    if to == "emails":
        return "các địa chỉ thư: " + ", ".join(emails)
    return ESCALATION_TARGETS.get(to, to)


def _phase_name(plan: Plan, phase_id: str) -> str:
    try:
        return plan.phase(phase_id).name
    except KeyError:
        return phase_id


# --- campaign and organization ---------------------------------------------------------


@campaign_app.command("create")
def campaign_create(
    plan_file: Path = typer.Argument(..., metavar="TỆP_KẾ_HOẠCH", help="Tệp kế hoạch (YAML)."),
    campaign_id: str = typer.Option(None, "--id", help="Mã đợt (mặc định: mã kế hoạch)."),
) -> None:
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
        campaigns = [(c.id, c.plan_number, c.title) for c in list_campaigns(uow)]
    for row in campaigns:
        console.print("\t".join(row), highlight=False, markup=False)
    if not campaigns:
        console.print("Chưa có đợt kiểm điểm nào: tạo bằng 'kiemdiem campaign create <tệp kế hoạch>'.")


@org_app.command("import")
def org_import(
    campaign: str = typer.Option(..., "--campaign", help=CAMPAIGN_HELP),
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
    if report.members_not_in_file:
        console.print(
            f"[yellow]Lưu ý:[/] {report.members_not_in_file} đảng viên đã có trong dữ liệu nhưng không có trong tệp này; "
"họ vẫn được giữ, vẫn được nhắc hạn và tính khi tổng hợp (chưa có lệnh xóa đảng viên: một mã nhập nhầm ở lần trước vẫn còn).",
            highlight=False,
        )


@app.command("gen")
def gen(
    preset: str = typer.Option("khoi", "--preset", help=f"Một trong: {', '.join(PRESETS)}."),
    seed: int = typer.Option(1, "--seed", help="Hạt giống ngẫu nhiên: cùng hạt giống cho cùng dữ liệu."),
    out: Path = typer.Option(Path("out/org"), "--out", help="Thư mục ghi các tệp đơn vị và đảng viên."),
    year: int = typer.Option(2023, "--year", help="Năm của đợt kiểm điểm (tính tuổi đảng, dự bị)."),
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
    files: list[Path] = typer.Argument(..., metavar="TỆP", help="Các tệp nộp cho một mục (một hoặc nhiều)."),
    campaign: str = typer.Option(..., "--campaign", help=CAMPAIGN_HELP),
    unit: str = typer.Option(..., "--unit", help="Mã đơn vị nộp."),
    doc: str = typer.Option(..., "--doc", help="Mã loại văn bản (xem 'kiemdiem plan check'), ví dụ bien_ban_hoi_nghi."),
    member: str = typer.Option(None, "--member", help="Mã đảng viên, với văn bản nộp theo từng đảng viên."),
    phase: str = typer.Option(None, "--phase", help="Mã giai đoạn, khi văn bản thuộc nhiều giai đoạn."),
    at: str = typer.Option(None, "--at", help="Thời điểm nhận. " + AT_HELP),
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
    except OSError as exc:  # the file store: full, unwritable (a file it cannot read was checked above)
        fail(Unavailable(f"không lưu được tệp vào kho tệp ({exc.strerror or exc}); không có gì được lưu, hãy nộp lại khi đã khắc phục"))
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
    console.print(f"Đã nhận #{outcome.submission_id} {escape(item_words(plan, outcome.item_key))}: {timing} (hạn {format_instant(outcome.deadline)}){extra}.", highlight=False)
    _warn_same_files(plan, outcome)


def _warn_same_files(plan: Plan, outcome) -> None:
    if outcome.same_files_as:
        console.print(same_files_note(plan, outcome.same_files_as), style="yellow", highlight=False, markup=False)


@app.command("collect")
def collect(
    campaign: str = typer.Option(..., "--campaign", help=CAMPAIGN_HELP),
    inbox: Path = typer.Option(None, "--inbox", help="Thư mục nhận (mặc định: <KIEMDIEM_HOME>/inbox/<mã đợt>)."),
    at: str = typer.Option(None, "--at", help="Thời điểm nhận. " + AT_HELP),
) -> None:
    """Nhận các tệp trong thư mục nhận: <mã đơn vị>/[<mã giai đoạn>/]<loại văn bản>/[<mã đảng viên>/]tệp.

    Thư mục <mã giai đoạn> chỉ cần khi văn bản thuộc nhiều giai đoạn của đơn vị."""
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
        console.print(f"Đã nhận {item_words(plan, outcome.item_key)} ({'đúng hạn' if outcome.on_time else 'trễ hạn'}).", highlight=False, markup=False)
        _warn_same_files(plan, outcome)
    for folder_name, reason in report.refused:
        err_console.print(f"[red]Từ chối[/] {folder_name}: {reason}", highlight=False)
    for folder_name, reason in report.failed:
        err_console.print(f"[red]Chưa nhận được[/] {folder_name}: {reason}; tệp vẫn ở thư mục nhận, lượt sau nhận lại.", highlight=False)
    if report.busy:
        err_console.print("Một tiến trình khác đang nhận thư mục này; lượt này không nhận gì.", highlight=False)
    console.print(f"Nhận {len(report.accepted)}, trùng {len(report.unchanged)}, từ chối {len(report.refused)}.")
    if report.failed:
        raise typer.Exit(5)
    if report.refused:
        raise typer.Exit(4)


@app.command("status")
def status(
    campaign: str = typer.Option(..., "--campaign", help=CAMPAIGN_HELP),
    unit: str = typer.Option(None, "--unit", help="Mã đơn vị: chỉ in đơn vị này và các đơn vị trực thuộc."),
    at: str = typer.Option(None, "--at", help="Tình trạng tại thời điểm này. " + AT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
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
            # The status of a subtree stops its roll-up at the subtree's root, which it shows
            # without a parent: the parent is read here, so that it is still named.
            parents = {unit: unit_parent(uow, campaign, unit)} if unit else {}
    except KiemdiemError as exc:
        fail(exc)
        return
    if as_json:
        for chunk in status_json_chunks(result, plan, parents):
            sys.stdout.write(chunk)
        sys.stdout.write("\n")
        return
    console.print(f"[bold]{escape(plan.number)}[/] — tình trạng lúc {format_instant(now)}", highlight=False)
    if unit:
        info = result.units[unit]
        above = parents[unit]
        line = f"Đơn vị: {info.name} ({unit}) và các đơn vị trực thuộc"
        line += f" · cấp trên: {above[1]} ({above[0]})" if above else " · đơn vị gốc, không có cấp trên"
        console.print(line, highlight=False, markup=False)
    # A province has thousands of units and the country hundreds of thousands: print a table
    # per block of units, so that nothing holds every row at once.
    codes = list(result.units)
    for start in range(0, len(codes), STATUS_TABLE_UNITS):
        block = codes[start : start + STATUS_TABLE_UNITS]
        # A code is what staff search for and type back: its column is as wide as the longest
        # code (an 80-column terminal cut "SCT-CB01" to "SCT-C…"); one longer still is folded.
        code_width = min(max(STATUS_NAME_WIDTH, *(len(code) for code in block)), STATUS_CODE_WIDTH)
        narrow = console.width < STATUS_WIDE_AT  # fewer rules and no subtree percentage
        table = Table(expand=True, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0)) if narrow else Table(expand=True)
        table.add_column("Đơn vị", width=code_width, overflow="fold")
        table.add_column("Giai đoạn", ratio=3, min_width=12)
        table.add_column("Hạn", no_wrap=True)
        table.add_column("Trạng thái", width=10)
        table.add_column("Đã\nnộp", no_wrap=True, justify="right")
        if not narrow:
            table.add_column("% cây\ncon", no_wrap=True, justify="right")
        table.add_column("Còn thiếu", ratio=3 if narrow else 4)
        for code in block:
            info = result.units[code]
            for row in result.for_unit(code):
                missing = escape(missing_text(row.missing))
                cells = [
                    f"{escape(info.name)}\n[dim]{escape(code)}[/]", escape(_phase_name(plan, row.phase_id)), format_instant(row.deadline).replace(" ", "\n"),
                    f"[{STATE_STYLES[row.state]}]{STATE_NAMES[row.state]}[/]", f"{row.present}/{row.required}",
                ]
                table.add_row(*cells, *(() if narrow else (f"{row.subtree_percent:.0f}%",)), missing)
        console.print(table)
    counts = result.count_states()
    console.print(" · ".join(f"{STATE_NAMES[s]}: {n}" for s, n in counts.items()))


STATUS_TABLE_UNITS = 500
STATUS_CODE_WIDTH = 24
STATUS_NAME_WIDTH = 14
STATUS_WIDE_AT = 100  # columns
MISSING_DOCUMENTS_SHOWN = 4
MISSING_MEMBERS_SHOWN = 3


def missing_text(missing) -> str:
    """Missing items by document, with the members who owe a per-member one:
    "Bản kiểm điểm cá nhân: Lê Xuân Tiến, Phạm Minh Đức; Biên bản hội nghị …"."""
    by_doc: dict[str, list[str]] = {}
    for item in missing:
        names = by_doc.setdefault(item.doc_type, [])
        if item.member_name:
            names.append(item.member_name)
    parts = []
    for doc_type, names in list(by_doc.items())[:MISSING_DOCUMENTS_SHOWN]:
        text = DOCUMENTS[doc_type].name
        if names:
            text += ": " + ", ".join(names[:MISSING_MEMBERS_SHOWN])
            if len(names) > MISSING_MEMBERS_SHOWN:
                text += f" và {len(names) - MISSING_MEMBERS_SHOWN} đảng viên khác"
        parts.append(text)
    rest = len(by_doc) - MISSING_DOCUMENTS_SHOWN
    return "; ".join(parts) + (f"; … và {rest} loại văn bản khác" if rest > 0 else "")


def unit_parent(uow: UnitOfWork, campaign_id: str, code: str) -> tuple[str, str] | None:
    """The (code, name) of a unit's parent, or None for the root."""
    parent = Unit.__table__.alias("parent")
    row = uow.session.execute(
        select(parent.c.code, parent.c.name)
        .select_from(Unit)
        .join(parent, parent.c.id == Unit.parent_id)
        .where(Unit.campaign_id == campaign_id, Unit.code == code)
    ).first()
    return (row[0], row[1]) if row else None


def unit_status_json(result, code: str, info, plan: Plan, parent: tuple[str, str] | None) -> dict:
    """One unit's status: the codes IT and other programs use, each with its Vietnamese name."""
    return {
        "code": code,
        "name": info.name,
        "kind": info.kind,
        "kind_name": UNIT_KINDS.get(info.kind, info.kind),
        "parent": parent[0] if parent else None,
        "parent_name": parent[1] if parent else None,
        "subtree_percent": result.subtree_percent(code),
        "phases": [
            {
                "phase": row.phase_id,
                "phase_name": _phase_name(plan, row.phase_id),
                "deadline": row.deadline.isoformat(),
                "state": row.state,
                "state_name": STATE_NAMES[row.state],
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


def status_json_chunks(result, plan: Plan, parents: dict[str, tuple[str, str] | None] | None = None):
    """The status as one JSON document ({"now", "units": [...], "counts"}), written unit by unit.
    ``parents``: the parent of a unit whose status does not hold it (the root of a subtree)."""
    parents = parents or {}
    yield "{\n  \"now\": " + json.dumps(result.now.isoformat()) + ",\n  \"units\": ["
    for n, (code, info) in enumerate(result.units.items()):
        if code in parents:
            parent = parents[code]
        elif info.parent_code is not None:
            above = result.units.get(info.parent_code)
            parent = (info.parent_code, above.name if above else None)
        else:
            parent = None
        text = json.dumps(unit_status_json(result, code, info, plan, parent), ensure_ascii=False, indent=2)
        yield ("," if n else "") + "\n    " + text.replace("\n", "\n    ")
    yield "\n  ],\n  \"counts\": " + json.dumps(result.count_states(), ensure_ascii=False) + "\n}"


use_vietnamese_classes(app)  # the core commands; deployments/cli.py again once the others are registered


def main() -> None:
    try:
        app()
    except KiemdiemError as exc:  # a command that forgot to catch still exits cleanly
        err_console.print(f"[bold red]Lỗi:[/] {exc}")
        sys.exit(exc.exit_code)

