"""Files in and out: the upload portal, downloads, CSV/XLSX exports and the ICS deadline feed.

An upload is one submission of one item (a document of the unit, or of one member) with
one or more files. Every file is checked first (name, size, type by content); if any is
refused, nothing is stored and each file says why. Otherwise the files go through
``record_submission`` with ``source="web"``, the same path as ``kiemdiem submit``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, replace

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, JSONResponse, Response

from kiemdiem.calendar import format_date, format_instant
from kiemdiem.catalogue import DOCUMENTS
from kiemdiem.errors import InvalidInput, KiemdiemError
from kiemdiem.results import problem_text
from kiemdiem.notify.ics import CalendarEvent, calendar_feed
from kiemdiem.notify.messages import slug
from kiemdiem.plan import Plan
from kiemdiem.store.db import UnitOfWork
from kiemdiem.status import member_owes
from kiemdiem.store.models import Member, Submission, SubmissionFile, Unit
from kiemdiem.store.submissions import IncomingFile, record_submission, submission_history
from kiemdiem.submission import item_key
from kiemdiem.web.auth import audit
from kiemdiem.web.context import (
    Viewer,
    WebContext,
    campaign_of,
    check_csrf,
    client_ip,
    get_ctx,
    get_uow,
    get_viewer,
    render,
)
from kiemdiem.web.exports import MEDIA_TYPES, consolidation_table, progress_table, to_csv, to_xlsx
from kiemdiem.web.queries import UnitRef, file_in_scope, latest_snapshots, member_options, scoped_unit, unit_members
from kiemdiem.web.uploads import ACCEPT_ATTRIBUTE, ALLOWED_LIST, MAX_FILES, FileCheck, check_file, format_size

log = logging.getLogger(__name__)
router = APIRouter()

REQUEST_OVERHEAD = 1024 * 1024  # form fields and multipart framing on top of the files
MAX_FILES_PER_REQUEST_BYTES = 5  # a request may carry at most this many maximum-size files


# ----------------------------------------------------------------------------- upload


@dataclass(frozen=True)
class ItemOption:
    value: str  # "phase|doc|u" or "phase|doc|m"
    phase_id: str
    phase_name: str
    doc_type: str
    doc_name: str
    per_member: bool
    required: bool
    deadline: dt.datetime
    note: str = ""  # the plan's own words for the item
    done: str = ""  # a unit document already sent: "đã nộp: <files>, dd/mm/yyyy HH:MM" (its current submission)
    missing: bool = True  # still owed: the unit's document, or some member's
    # A member's document: for each member who owes it, the current file's words ("" while missing).
    members_done: dict[str, str] = field(default_factory=dict)


def item_options(plan: Plan, unit_kind: str) -> list[ItemOption]:
    options = []
    # By deadline, as the unit meets them (the plan file's order breaks ties).
    phases = plan.phases_for_kind(unit_kind)
    for phase in sorted(phases, key=lambda p: (p.deadline, phases.index(p))):
        for req in phase.documents:
            options.append(ItemOption(
                f"{phase.id}|{req.doc_type}|{'m' if req.per_member else 'u'}", phase.id, phase.name, req.doc_type,
                DOCUMENTS[req.doc_type].name, req.per_member, req.required, phase.deadline, req.note,
            ))
    return options


@dataclass
class FileFeedback:
    name: str
    status: str  # accepted | unchanged | refused | not_stored
    message: str
    size: int = 0
    problems: list[str] = field(default_factory=list)  # a classification list's errors, one a line


@dataclass
class UploadResult:
    ok: bool
    status_code: int
    message: str
    files: list[FileFeedback] = field(default_factory=list)
    on_time: bool | None = None
    submission_id: int | None = None
    item_key: str | None = None
    # How the message is shown: ok (received), notice (received, replacing an earlier file), error.
    level: str = ""
    warnings: list[str] = field(default_factory=list)  # to check (the same file already filed elsewhere)
    errors: list[str] = field(default_factory=list)  # a refused list's problems not tied to one file
    hint: str = ""  # what to do next, after the files
    # The item now holding a file, so the form marks it: {"item": option value, "member": code, "label": words}.
    done: dict | None = None

    def __post_init__(self) -> None:
        if not self.level:
            self.level = "ok" if self.ok else "error"

    def as_json(self) -> dict:
        return {
            "ok": self.ok,
            "level": self.level,
            "message": self.message,
            "warnings": self.warnings,
            "errors": self.errors,
            "hint": self.hint,
            "on_time": self.on_time,
            "submission_id": self.submission_id,
            "item_key": self.item_key,
            "done": self.done,
            "files": [f.__dict__ for f in self.files],
        }


def load_viewer(request: Request) -> Viewer:
    with get_ctx(request).store.uow() as uow:
        return get_viewer(request, uow)


def upload_target(ctx: WebContext, viewer: Viewer, campaign_id: str, code: str) -> tuple[UnitRef, list[ItemOption], list[tuple[str, str]]]:
    with ctx.store.uow() as uow:
        unit = scoped_unit(uow, campaign_id, code, viewer.unit_path)
        if unit is None:
            raise HTTPException(404)
        plan = ctx.status.plan_for(uow, campaign_id)
        return UnitRef.of(unit), with_current_files(uow, plan, unit, item_options(plan, unit.kind), ctx.now()), member_options(uow, unit)


def files_words(names: list[str], received_at: dt.datetime) -> str:
    """A current submission as the form names it: "<tên tệp>, dd/mm/yyyy HH:MM" (the first two files' names)."""
    shown = " + ".join(names[:2]) + (f" + {len(names) - 2} tệp khác" if len(names) > 2 else "")
    return f"{shown or 'tệp'}, {format_instant(received_at)}"


def current_files(uow: UnitOfWork, campaign_id: str, unit_id: int, now: dt.datetime) -> dict[str, str]:
    """Each item of the unit holding a file (its current submission: the newest not refused) in words, by item key."""
    found: dict[str, str] = {}
    for submission, files in submission_history(uow, campaign_id, unit_id):  # newest first
        if submission.refused_at is not None or submission.received_at > now or submission.item_key in found:
            continue
        found[submission.item_key] = files_words([f.filename for f in sorted(files, key=lambda f: f.id)], submission.received_at)
    return found


def with_current_files(uow: UnitOfWork, plan: Plan, unit: Unit, options: list[ItemOption], now: dt.datetime) -> list[ItemOption]:
    """The options marked with what the unit already sent, the items still missing first within each phase
    (phases stay in deadline order)."""
    current = current_files(uow, unit.campaign_id, unit.id, now)
    members = unit_members(uow, unit)
    marked = []
    for option in options:
        if option.per_member:
            requirement = next(d for d in plan.phase(option.phase_id).documents if d.doc_type == option.doc_type)
            done = {m.code: current.get(item_key(unit.code, option.phase_id, option.doc_type, m.code), "")
                    for m in members if member_owes(m, requirement)}
            marked.append(replace(option, members_done=done, missing=not done or not all(done.values())))
        else:
            words = current.get(item_key(unit.code, option.phase_id, option.doc_type, None), "")
            marked.append(replace(option, done=words, missing=not words))
    order = {p: i for i, p in enumerate(dict.fromkeys(o.phase_id for o in marked))}
    # Owed and not sent, then optional and not sent, then sent.
    return sorted(marked, key=lambda o: (order[o.phase_id], 0 if o.missing and o.required else 1 if o.missing else 2))


@router.get("/c/{campaign_id}/u/{code}/upload")
def upload_form(campaign_id: str, code: str, request: Request, item: str = "", member: str = "",
                viewer: Viewer = Depends(get_viewer)):
    """The form; ``?item=<phase|doc|u/m>&member=<code>`` (the unit page's "Nộp" links) chooses the item first."""
    campaign_of(viewer, campaign_id)
    ctx = get_ctx(request)
    unit, options, members = upload_target(ctx, viewer, campaign_id, code)
    option = next((o for o in options if o.value == item), None)
    chosen_member = member if option is not None and option.per_member and any(c == member for c, _ in members) else ""
    return render(request, "upload.html", **upload_page_context(ctx, viewer, campaign_id, unit, options, members,
                                                                chosen=option.value if option else "", chosen_member=chosen_member))


def upload_page_context(ctx: WebContext, viewer: Viewer, campaign_id: str, unit: UnitRef, options, members, **extra) -> dict:
    context = dict(
        viewer=viewer, campaign_id=campaign_id, unit=unit, options=options, members=members, section="unit",
        done_members={o.value: o.members_done for o in options if o.per_member},
        max_mb=ctx.settings.max_upload_mb, max_bytes=ctx.max_upload_bytes, max_files=MAX_FILES, accept=ACCEPT_ATTRIBUTE,
        allowed=ALLOWED_LIST, result=None, chosen="", chosen_member="",
    )
    context.update(extra)
    return context


@router.post("/c/{campaign_id}/u/{code}/upload")
async def upload(campaign_id: str, code: str, request: Request):
    ctx = get_ctx(request)
    viewer = await run_in_threadpool(load_viewer, request)
    campaign_of(viewer, campaign_id)
    unit, options, members = await run_in_threadpool(upload_target, ctx, viewer, campaign_id, code)
    wants_json = "application/json" in request.headers.get("accept", "")
    limit = ctx.max_upload_bytes * MAX_FILES_PER_REQUEST_BYTES + REQUEST_OVERHEAD
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        result = UploadResult(False, 411, "Yêu cầu thiếu độ dài (Content-Length). Không có gì được lưu.")
        return upload_response(ctx, request, wants_json, result, viewer, campaign_id, unit, options, members, "", "")
    if int(length) > limit:
        result = UploadResult(False, 413, f"Lần nộp quá lớn: tổng dung lượng tối đa {format_size(limit - REQUEST_OVERHEAD)} "
                                          f"(mỗi tệp tối đa {format_size(ctx.max_upload_bytes)}). Không có gì được lưu.")
        return upload_response(ctx, request, wants_json, result, viewer, campaign_id, unit, options, members, "", "")
    form = await request.form(max_files=MAX_FILES + 1, max_fields=20)
    try:
        check_csrf(request, form)
        chosen = str(form.get("item") or "")
        chosen_member = str(form.get("member") or "")
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile) and (f.filename or f.size)]
        checks: list[FileCheck] = []
        datas: list[bytes] = []
        for upload_file in uploads:
            data = await upload_file.read(ctx.max_upload_bytes + 1)
            size = upload_file.size if upload_file.size is not None else len(data)
            checks.append(check_file(upload_file.filename or "", data, ctx.max_upload_bytes, declared_size=size))
            datas.append(data)
    finally:
        await form.close()
    result = await run_in_threadpool(store_upload, ctx, request, viewer, campaign_id, unit, options, chosen, chosen_member, checks, datas)
    if result.ok and not wants_json:  # the form shown again marks the item just sent
        unit, options, members = await run_in_threadpool(upload_target, ctx, viewer, campaign_id, code)
    return upload_response(ctx, request, wants_json, result, viewer, campaign_id, unit, options, members, chosen, chosen_member)


def upload_response(ctx, request, wants_json, result: UploadResult, viewer, campaign_id, unit, options, members, chosen, chosen_member):
    if wants_json:
        return JSONResponse(result.as_json(), status_code=result.status_code)
    return render(
        request, "upload.html", status_code=result.status_code,
        **upload_page_context(ctx, viewer, campaign_id, unit, options, members, result=result,
                              chosen=chosen if not result.ok else "", chosen_member=chosen_member if not result.ok else ""),
    )


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def store_upload(
    ctx: WebContext, request: Request, viewer: Viewer, campaign_id: str, unit: UnitRef, options: list[ItemOption],
    chosen: str, member_code: str, checks: list[FileCheck], datas: list[bytes],
) -> UploadResult:
    def refuse(message: str, status_code: int = 422, files: list[FileFeedback] | None = None) -> UploadResult:
        files = files if files is not None else [
            FileFeedback(c.original_name, "refused" if not c.ok else "not_stored",
                         sentence(c.reason) if not c.ok else "Hợp lệ, nhưng chưa lưu vì lần nộp bị từ chối.", c.size)
            for c in checks
        ]
        log.info("upload refused: %s %s by %s: %s", campaign_id, unit.code, viewer.email, message)
        return UploadResult(False, status_code, message, files)

    def refuse_list(exc: InvalidInput) -> UploadResult:
        files = []
        for c in checks:
            own = [p for p in exc.problems if p.source == c.filename]
            if own:
                shown = [problem_text(p) for p in own[:MAX_PROBLEMS_SHOWN]]
                if len(own) > MAX_PROBLEMS_SHOWN:
                    shown.append(f"… và {len(own) - MAX_PROBLEMS_SHOWN} lỗi khác")
                files.append(FileFeedback(c.original_name, "refused", "; ".join(shown), c.size, problems=shown))
            else:
                files.append(FileFeedback(c.original_name, "not_stored", "Chưa lưu vì lần nộp bị từ chối.", c.size))
        general = [p.reason for p in exc.problems if not any(p.source == c.filename for c in checks)]
        # Not "does not read": the file is fine, some of its rows are not; each error on its own line.
        result = refuse(f"Danh sách có {len(exc.problems)} lỗi cần sửa, chưa được nhận:", files=files)
        result.errors = general
        result.hint = "Sửa các lỗi trên trong tệp rồi nộp lại; chưa có tệp nào được lưu."
        return result

    if not checks:
        return refuse("Chưa chọn tệp nào để nộp.")
    if len(checks) > MAX_FILES:
        return refuse(f"Mỗi lần nộp tối đa {MAX_FILES} tệp.")
    option = next((o for o in options if o.value == chosen), None)
    if not chosen:
        return refuse("Hãy chọn loại văn bản cần nộp.")
    if option is None:
        return refuse("Đơn vị này không phải nộp loại văn bản đã chọn trong giai đoạn đó.")
    if option.per_member and not member_code:
        return refuse("Văn bản này nộp theo từng đảng viên: hãy chọn đảng viên.")
    refused = [c for c in checks if not c.ok]
    if refused:
        return refuse(f"{len(refused)}/{len(checks)} tệp bị từ chối; không có tệp nào được lưu.")
    now = ctx.now()
    with ctx.store.uow() as uow:
        plan = ctx.status.plan_for(uow, campaign_id)
        try:
            outcome = record_submission(
                uow, ctx.store.blobs, plan, campaign_id, unit.code, option.doc_type,
                [IncomingFile(c.filename, data=d, content_type=c.content_type) for c, d in zip(checks, datas)],
                now, "web", member_code=member_code if option.per_member else None, phase_id=option.phase_id, actor=viewer.email,
            )
        except InvalidInput as exc:  # a classification list that does not read: each file's rows and fields
            return refuse_list(exc)
        except KiemdiemError as exc:
            return refuse(f"Không nhận: {exc}.")
        if outcome.created:
            audit(uow, campaign_id=campaign_id, actor=viewer.email, action="web.upload", subject=outcome.item_key, now=now,
                  detail={"submission_id": outcome.submission_id, "on_time": outcome.on_time, "unit": unit.code,
                          "files": [c.filename for c in checks], "ip": client_ip(request)})
        described = submissions_words(uow, [i for i in (outcome.submission_id, outcome.supersedes_id) if i])
        same_files_warning = same_files_words(uow, plan, campaign_id, unit, outcome.same_files_as) if outcome.same_files_as else ""
        uow.commit()
    ctx.status.touch(campaign_id)
    deadline = format_instant(outcome.deadline)
    done = {"item": option.value, "member": member_code if option.per_member else "", "label": described.get(outcome.submission_id, "")}
    if not outcome.created:
        files = [FileFeedback(c.original_name, "unchanged", "Trùng với tệp đã nộp cho mục này: không có gì thay đổi.", c.size) for c in checks]
        return UploadResult(True, 200, f"Nội dung trùng với tệp đã nộp cho mục này ({described.get(outcome.submission_id, '')}): "
                                       "không có gì thay đổi.", files, outcome.on_time, outcome.submission_id, outcome.item_key,
                            done=done)
    timing = "đúng hạn" if outcome.on_time else "trễ hạn"
    files = [FileFeedback(c.original_name, "accepted", f"Đã nhận – {timing} (hạn {deadline}).", c.size) for c in checks]
    message = f"Đã nhận {len(checks)} tệp ({timing}, hạn {deadline})."
    level = "ok"
    if outcome.supersedes_id and outcome.supersedes_id in described:
        # Said plainly: the item held a file, which this one now replaces (kept in the history).
        message += (f" Tệp mới thay thế tệp đã nộp trước cho mục này: {described[outcome.supersedes_id]}; "
                    "tệp cũ vẫn được lưu trong lịch sử.")
        level = "notice"
    return UploadResult(True, 200, message, files, outcome.on_time, outcome.submission_id, outcome.item_key, level=level,
                        warnings=[same_files_warning] if same_files_warning else [], done=done)


MAX_PROBLEMS_SHOWN = 20  # per file; the rest are counted


def submissions_words(uow: UnitOfWork, ids: list[int]) -> dict[int, str]:
    """Submissions as the sender knows them: their files' names and when they were received (never their ids)."""
    if not ids:
        return {}
    received = dict(uow.session.execute(select(Submission.id, Submission.received_at).where(Submission.id.in_(ids))).all())
    names: dict[int, list[str]] = {i: [] for i in received}
    for submission_id, filename in uow.session.execute(
        select(SubmissionFile.submission_id, SubmissionFile.filename).where(SubmissionFile.submission_id.in_(ids)).order_by(SubmissionFile.id)
    ):
        names[submission_id].append(filename)
    return {i: files_words(names[i], at) for i, at in received.items()}


def same_files_words(uow: UnitOfWork, plan: Plan, campaign_id: str, unit: UnitRef, keys) -> str:
    """``kiemdiem.submission.same_files_note`` with people named as the secretary knows them: "đảng viên Nguyễn
    Sỹ Chín (DV001)" for a member's document, the unit's name for another unit's (the warning's wording is the page's)."""
    codes = {k.split(":", 3)[3] for k in keys} - {"-"}
    names = dict(uow.session.execute(
        select(Member.member_code, Member.full_name).where(Member.campaign_id == campaign_id, Member.member_code.in_(codes))
    ).all()) if codes else {}
    units = {k.split(":", 1)[0] for k in keys} - {unit.code}
    unit_names = dict(uow.session.execute(
        select(Unit.code, Unit.name).where(Unit.campaign_id == campaign_id, Unit.code.in_(units))
    ).all()) if units else {}
    items = []
    for key in keys:
        unit_code, phase_id, doc_type, member_code = key.split(":", 3)
        document = DOCUMENTS[doc_type].name if doc_type in DOCUMENTS else doc_type
        whose = []
        if member_code != "-":
            whose.append(f"đảng viên {names[member_code]} ({member_code})" if member_code in names else f"đảng viên {member_code}")
        if unit_code != unit.code:
            whose.append(f"{unit_names.get(unit_code, unit_code)} ({unit_code})")
        phase = next((p.name for p in plan.phases if p.id == phase_id), phase_id)
        items.append(f"{document}{' của ' + ', '.join(whose) if whose else ''} – giai đoạn «{phase}»")
    return (f"tệp này giống hệt tệp đã nộp cho {'; '.join(items)}. Hãy xem lại đã chọn đúng văn bản, đúng đảng viên chưa.")


# ----------------------------------------------------------------------------- download


@router.get("/c/{campaign_id}/files/{file_id}")
def download(campaign_id: str, file_id: int, request: Request, viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    campaign_of(viewer, campaign_id)
    ctx = get_ctx(request)
    found = file_in_scope(uow, campaign_id, file_id, viewer.unit_path)
    if found is None:
        raise HTTPException(404)
    stored, submission, unit = found
    path = ctx.store.blobs.path(stored.sha256)
    if not path.is_file():
        raise HTTPException(404, "Tệp không còn trong kho lưu trữ.")
    audit(uow, campaign_id=campaign_id, actor=viewer.email, action="web.download", subject=submission.item_key, now=ctx.now(),
          detail={"file_id": stored.id, "sha256": stored.sha256, "unit": unit.code, "ip": client_ip(request)})
    uow.commit()
    return FileResponse(path, filename=stored.filename, media_type=stored.content_type or "application/octet-stream")


# ----------------------------------------------------------------------------- exports


EXPORTS = ("progress", "consolidation")
EXPORT_NAMES = {"progress": "tien-do", "consolidation": "tong-hop"}


@router.get("/c/{campaign_id}/u/{code}/export/{what}.{fmt}")
def export(campaign_id: str, code: str, what: str, fmt: str, request: Request, viewer: Viewer = Depends(get_viewer),
           uow: UnitOfWork = Depends(get_uow)):
    campaign_of(viewer, campaign_id)
    if what not in EXPORTS or fmt not in MEDIA_TYPES:
        raise HTTPException(404)
    ctx = get_ctx(request)
    unit = scoped_unit(uow, campaign_id, code, viewer.unit_path)
    if unit is None:
        raise HTTPException(404)
    if what == "progress":
        table = progress_table(ctx.view(uow, campaign_id), unit.code)
        title = "Tiến độ"
    else:
        table = consolidation_table(latest_snapshots(uow, campaign_id, unit.path))
        title = "Tổng hợp"
    data = to_csv(table) if fmt == "csv" else to_xlsx(table, title)
    now = ctx.now()
    audit(uow, campaign_id=campaign_id, actor=viewer.email, action="web.export", subject=f"{what}.{fmt}", now=now,
          detail={"unit": unit.code, "rows": len(table[1]), "ip": client_ip(request)})
    uow.commit()
    filename = f"{EXPORT_NAMES[what]}-{slug(unit.code)}-{format_date(now).replace('/', '-')}.{fmt}"
    return Response(data, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# ----------------------------------------------------------------------------- calendar


def unit_feed(ctx: WebContext, uow: UnitOfWork, campaign_id: str, unit: Unit) -> Response:
    plan = ctx.status.plan_for(uow, campaign_id)
    link = f"{ctx.submit_url.rstrip('/')}/c/{campaign_id}/u/{unit.code}"
    events = []
    for phase in plan.phases_for_kind(unit.kind):
        documents = "\n".join(
            f"- {DOCUMENTS[d.doc_type].name}{' (từng đảng viên)' if d.per_member else ''}{'' if d.required else ' (nếu có)'}"
            + (f"\n  {d.note}" if d.note else "")
            for d in phase.documents
        )
        description = (
            f"{unit.name} ({unit.code})\n{plan.number}: {phase.name}\n"
            f"Hạn chót: {format_instant(phase.deadline)} (giờ Việt Nam) – {phase.reading}\n"
            f"Hồ sơ:\n{documents}\nNộp tại: {link}"
        )
        uid = f"kiemdiem-{slug(plan.number)}-{slug(phase.id)}-{slug(unit.code)}@kiemdiem.local"
        events.append(CalendarEvent(uid, f"Hạn: {phase.name}", description, phase.deadline, link, plan.calendar.morning_before(phase.deadline)))
    body = calendar_feed(events, now=ctx.now(), name=f"Hạn kiểm điểm – {unit.name}")
    filename = f"han-{slug(unit.code)}.ics"
    return Response(body, media_type="text/calendar; charset=utf-8", headers={"Content-Disposition": f'inline; filename="{filename}"'})


@router.get("/c/{campaign_id}/u/{code}/calendar.ics")
def unit_calendar(campaign_id: str, code: str, request: Request, viewer: Viewer = Depends(get_viewer), uow: UnitOfWork = Depends(get_uow)):
    campaign_of(viewer, campaign_id)
    unit = scoped_unit(uow, campaign_id, code, viewer.unit_path)
    if unit is None:
        raise HTTPException(404)
    return unit_feed(get_ctx(request), uow, campaign_id, unit)


@router.get("/ics/{token}.ics")
def subscribed_calendar(token: str, request: Request, uow: UnitOfWork = Depends(get_uow)):
    """The feed a calendar client subscribes to: the signed token names the unit (deadlines only)."""
    ctx = get_ctx(request)
    found = ctx.codec.read_ics_token(token)
    if found is None:
        raise HTTPException(404)
    campaign_id, code = found
    unit = scoped_unit(uow, campaign_id, code, "/")
    if unit is None:
        raise HTTPException(404)
    return unit_feed(ctx, uow, campaign_id, unit)
