"""Plans as data: the YAML format, its validation, and deadline resolution.

A plan file describes one issuing committee's plan (kế hoạch): its identity, the
phases with their deadlines and the documents each requires, reminder offsets,
the escalation ladder, committee-member assignments and calendar overrides.
``load_plan`` returns a resolved ``Plan`` whose every deadline is an exact
local instant, or raises ``InvalidInput`` naming each bad field and why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError, field_validator

from kiemdiem.calendar import Swap, WorkCalendar, format_date, weekday_name
from kiemdiem.catalogue import BRANCH_KINDS, DOCUMENTS, MEMBER_SCOPES, PHASE_KINDS, RULE_SET_YEARS, RULE_SETS, UNIT_KINDS
from kiemdiem.errors import InvalidInput, Problem
from kiemdiem.settings import reminder_settings


# --- The file format (pydantic models reject unknown keys and wrong types) -----------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DateSpec(_Strict):
    date: str
    time: str | None = None
    text: str | None = None  # the plan's own words, e.g. "trước ngày 05/12/2023"


class RelativeSpec(_Strict):
    after: str | None = None
    before: str | None = None
    working_days: int
    time: str | None = None
    text: str | None = None


class DocumentSpec(_Strict):
    type: str
    per: Literal["unit", "member"] = "unit"
    required: bool = True
    members: str = "reviewed"  # for per-member documents: which members owe it
    note: str | None = None


def _deadline_form(value) -> str:
    # Choose the deadline's form by its keys, so a typo yields one message about that key.
    if isinstance(value, dict):
        return "relative" if ({"after", "before", "working_days"} & value.keys()) else "date"
    if isinstance(value, (DateSpec, RelativeSpec)):
        return "date" if isinstance(value, DateSpec) else "relative"
    return "str"


class PhaseSpec(_Strict):
    id: str
    name: str
    kind: str
    deadline: Annotated[
        Annotated[str, Tag("str")] | Annotated[DateSpec, Tag("date")] | Annotated[RelativeSpec, Tag("relative")],
        Discriminator(_deadline_form),
    ]
    applies_to: list[str]
    documents: list[DocumentSpec] = []
    after: list[str] = []  # phases that must come first (lower levels before upper)
    submit_to: str = "parent"
    source: str | None = None  # where in the plan text this phase comes from


class ReminderSpec(_Strict):
    offsets_working_days: list[int] = [5, 3, 1]


class EscalationStepSpec(_Strict):
    after_working_days: int
    to: Literal["parent", "grandparent", "root", "emails"]
    emails: list[str] = []
    name: str | None = None  # who reads those addresses ("Ban Tổ chức Đảng ủy Khối"): the letters' "Kính gửi"
    note: str | None = None


class AssignmentSpec(_Strict):
    person: str
    title: str | None = None
    unit: str  # unit code or exact unit name
    email: str | None = None


class HolidaySpec(_Strict):
    date: str
    name: str = "Ngày nghỉ theo kế hoạch"


class WorkingDaySpec(_Strict):
    date: str
    note: str = ""


class SwapSpec(_Strict):
    day_off: str
    work_on: str
    note: str = ""


class CalendarSpec(_Strict):
    extra_holidays: list[HolidaySpec] = []
    extra_working_days: list[WorkingDaySpec] = []
    swaps: list[SwapSpec] = []


class SignerSpec(_Strict):
    on_behalf: str  # "T/M ĐẢNG ỦY"
    title: str  # "PHÓ BÍ THƯ"
    name: str


class PlanSpec(_Strict):
    id: str
    number: str
    title: str
    issuer: str
    superior: str | None = None  # the body the issuer reports to
    place: str | None = None
    issued_on: str | None = None
    year: int
    rule_set: str
    timezone: str = "Asia/Ho_Chi_Minh"
    evaluation_date: str | None = None
    signer: SignerSpec | None = None
    reminders: ReminderSpec = ReminderSpec()
    escalation: list[EscalationStepSpec] = []
    assignments: list[AssignmentSpec] = []
    calendar: CalendarSpec = CalendarSpec()
    phases: list[PhaseSpec]
    recipients: list[str] = []  # "Nơi nhận"

    @field_validator("phases")
    @classmethod
    def _at_least_one(cls, value):
        if not value:
            raise ValueError("kế hoạch phải có ít nhất một giai đoạn")
        return value


# --- The resolved plan the rest of the system uses ------------------------------------------


@dataclass(frozen=True)
class DocumentRequirement:
    doc_type: str
    per_member: bool
    required: bool
    member_scope: str = "reviewed"
    # The plan's own words for this item (which form, whose report, where a copy goes): shown
    # to units next to the catalogue's name, which is the same for every plan.
    note: str = ""

    @property
    def name(self) -> str:
        return DOCUMENTS[self.doc_type].name


@dataclass(frozen=True)
class Phase:
    id: str
    name: str
    kind: str
    deadline: dt.datetime  # aware, local time
    reading: str  # how the deadline was read, in Vietnamese
    applies_to: tuple[str, ...]
    documents: tuple[DocumentRequirement, ...]
    after: tuple[str, ...]
    submit_to: str
    source: str | None

    def requirement(self, doc_type: str, per_member: bool) -> DocumentRequirement | None:
        for req in self.documents:
            if req.doc_type == doc_type and req.per_member == per_member:
                return req
        return None


@dataclass(frozen=True)
class EscalationStep:
    step: int
    after_working_days: int
    to: str
    emails: tuple[str, ...] = ()
    name: str | None = None  # who reads ``emails`` (their letters are addressed to it)


@dataclass(frozen=True)
class Assignment:
    person: str
    title: str | None
    unit: str
    email: str | None


@dataclass(frozen=True)
class Plan:
    id: str
    number: str
    title: str
    issuer: str
    superior: str | None
    place: str | None
    issued_on: dt.date | None
    year: int
    rule_set: str
    timezone: str
    evaluation_date: dt.date
    signer: SignerSpec | None
    reminder_offsets: tuple[int, ...]
    escalation: tuple[EscalationStep, ...]
    assignments: tuple[Assignment, ...]
    phases: tuple[Phase, ...]
    recipients: tuple[str, ...]
    calendar: WorkCalendar = field(repr=False, compare=False)
    source_text: str = field(repr=False, default="")

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    def phase(self, phase_id: str) -> Phase:
        for phase in self.phases:
            if phase.id == phase_id:
                return phase
        raise KeyError(phase_id)

    def phases_for_kind(self, kind: str) -> list[Phase]:
        return [p for p in self.phases if kind in p.applies_to]


# --- Loading ------------------------------------------------------------------------------


WorkHours = tuple[dt.time, dt.time]


def load_plan(path: Path, *, work_hours: WorkHours | None = None) -> Plan:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(Problem(str(path), f"không đọc được tệp kế hoạch: {exc.strerror or exc}")) from exc
    return parse_plan(text, source=str(path), work_hours=work_hours)


def parse_plan(text: str, source: str = "<plan>", *, work_hours: WorkHours | None = None) -> Plan:
    """The resolved plan. ``work_hours`` is the sending window (start, end) of its calendar;
    None takes KIEMDIEM_REMINDERS_WORK_START/_END from the environment (a bad value is an
    ``InvalidInput`` naming the variable), so every caller's calendar sends when the office set."""
    if work_hours is None:
        work_hours = reminder_settings().work_hours
    elif work_hours[0] >= work_hours[1]:
        raise ValueError(f"giờ bắt đầu gửi ({work_hours[0]:%H:%M}) phải trước giờ kết thúc ({work_hours[1]:%H:%M})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark else None
        raise InvalidInput(Problem(source, f"YAML không hợp lệ: {getattr(exc, 'problem', exc)}", row=row)) from exc
    if not isinstance(data, dict):
        raise InvalidInput(Problem(source, "tệp kế hoạch phải là một bảng khóa: giá trị (mapping)"))
    try:
        spec = PlanSpec.model_validate(_stringify_dates(data))
    except ValidationError as exc:
        raise InvalidInput([_problem_from_pydantic(source, err) for err in exc.errors()]) from exc
    return _resolve(spec, source, text, work_hours)


def _stringify_dates(value):
    """YAML turns 2023-12-05 into a date; keep every date a string so one parser reads them all."""
    if isinstance(value, dict):
        return {k: _stringify_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_dates(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


PYDANTIC_REASONS = {
    "string_type": "phải là một chuỗi văn bản",
    "int_type": "phải là một số nguyên",
    "int_parsing": "phải là một số nguyên",
    "bool_type": "phải là true hoặc false",
    "bool_parsing": "phải là true hoặc false",
    "list_type": "phải là một danh sách",
    "dict_type": "phải là một bảng khóa: giá trị",
    "model_type": "phải là một bảng khóa: giá trị",
    "model_attributes_type": "phải là một bảng khóa: giá trị",
    "union_tag_invalid": "dạng hạn không hợp lệ",
}


def _problem_from_pydantic(source: str, err: dict) -> Problem:
    loc = _format_loc(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        reason = "khóa không được hỗ trợ (unknown key)"
    elif kind == "missing":
        reason = "thiếu trường bắt buộc"
    elif kind == "literal_error":
        reason = f"giá trị không hợp lệ; chỉ nhận: {err.get('ctx', {}).get('expected', '')}"
    elif kind in PYDANTIC_REASONS:
        reason = PYDANTIC_REASONS[kind]
    elif kind == "value_error":
        reason = str(err.get("ctx", {}).get("error", err["msg"]))
    else:
        reason = err["msg"]
    return Problem(source, reason, field=loc)


def _format_loc(loc) -> str:
    # pydantic puts union branch names ("str", "DateSpec") into loc; they mean nothing to users
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in {"str", "date", "relative", "DateSpec", "RelativeSpec"}:
            continue
        else:
            parts.append(str(item))
    return ".".join(parts)


def _parse_day(value: str, source: str, field_name: str, problems: list[Problem]) -> dt.date | None:
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            continue
    problems.append(Problem(source, f"ngày không tồn tại hoặc sai định dạng: '{value}' (dùng dd/mm/yyyy)", field=field_name))
    return None


def _parse_time(value: str | None, source: str, field_name: str, problems: list[Problem]) -> dt.time | None:
    if value is None:
        return None
    try:
        return dt.datetime.strptime(value.strip(), "%H:%M").time()
    except ValueError:
        problems.append(Problem(source, f"giờ không hợp lệ: '{value}' (dùng HH:MM)", field=field_name))
        return None


def _resolve(spec: PlanSpec, source: str, text: str, work_hours: WorkHours) -> Plan:
    problems: list[Problem] = []
    if spec.rule_set not in RULE_SETS:
        problems.append(Problem(source, f"bộ quy tắc không được hỗ trợ: '{spec.rule_set}' (chỉ nhận {', '.join(RULE_SETS)})", field="rule_set"))
    try:
        zoneinfo.ZoneInfo(spec.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(Problem(source, f"múi giờ không tồn tại: '{spec.timezone}'", field="timezone"))

    calendar = _build_calendar(spec, source, problems, work_hours)
    phase_ids = [p.id for p in spec.phases]
    seen: set[str] = set()
    for i, phase in enumerate(spec.phases):
        where = f"phases[{i}]"
        if phase.id in seen:
            problems.append(Problem(source, f"mã giai đoạn '{phase.id}' bị lặp", field=f"{where}.id"))
        seen.add(phase.id)
        # The drop folder tells <unit>/<phase>/<doc type>/ from <unit>/<doc type>/<member>/ by this.
        if phase.id in DOCUMENTS:
            problems.append(Problem(
                source, f"mã giai đoạn '{phase.id}' trùng mã loại văn bản: trong thư mục nhận, <mã đơn vị>/{phase.id}/ sẽ không rõ là giai đoạn hay loại văn bản; hãy đặt mã giai đoạn khác",
                field=f"{where}.id",
            ))
        if phase.kind not in PHASE_KINDS:
            problems.append(Problem(source, f"loại giai đoạn không hợp lệ: '{phase.kind}' (chỉ nhận {', '.join(PHASE_KINDS)})", field=f"{where}.kind"))
        if not phase.applies_to:
            problems.append(Problem(source, "phải nêu ít nhất một loại tổ chức đảng", field=f"{where}.applies_to"))
        for j, kind in enumerate(phase.applies_to):
            if kind not in UNIT_KINDS:
                problems.append(Problem(source, f"loại tổ chức đảng không hợp lệ: '{kind}' (chỉ nhận {', '.join(UNIT_KINDS)})", field=f"{where}.applies_to[{j}]"))
        doc_keys: set[tuple[str, str]] = set()
        for j, doc in enumerate(phase.documents):
            if doc.type not in DOCUMENTS:
                problems.append(Problem(source, f"loại văn bản không có trong danh mục: '{doc.type}'", field=f"{where}.documents[{j}].type"))
            if doc.members not in MEMBER_SCOPES:
                problems.append(Problem(source, f"phạm vi đảng viên không hợp lệ: '{doc.members}' (chỉ nhận {', '.join(MEMBER_SCOPES)})", field=f"{where}.documents[{j}].members"))
            if (doc.type, doc.per) in doc_keys:
                problems.append(Problem(source, f"văn bản '{doc.type}' được nêu hai lần", field=f"{where}.documents[{j}].type"))
            doc_keys.add((doc.type, doc.per))
        for j, ref in enumerate(phase.after):
            if ref not in phase_ids:
                problems.append(Problem(source, f"giai đoạn không tồn tại: '{ref}'", field=f"{where}.after[{j}]"))
        if phase.submit_to not in ("parent", "root", "superior"):
            problems.append(Problem(source, f"nơi nộp không hợp lệ: '{phase.submit_to}' (parent, root, superior)", field=f"{where}.submit_to"))
        deadline = phase.deadline
        if isinstance(deadline, RelativeSpec):
            refs = [r for r in (deadline.after, deadline.before) if r]
            if len(refs) != 1:
                problems.append(Problem(source, "hạn tương đối phải có đúng một trong 'after' hoặc 'before'", field=f"{where}.deadline"))
            elif refs[0] not in phase_ids:
                problems.append(Problem(source, f"giai đoạn không tồn tại: '{refs[0]}'", field=f"{where}.deadline"))
            if deadline.working_days < 0:
                problems.append(Problem(source, "số ngày làm việc không được âm", field=f"{where}.deadline.working_days"))
    for i, step in enumerate(spec.escalation):
        if step.after_working_days < 0:
            problems.append(Problem(source, "số ngày làm việc không được âm", field=f"escalation[{i}].after_working_days"))
        if step.to == "emails" and not step.emails:
            problems.append(Problem(source, "bước chuyển 'emails' phải nêu địa chỉ email", field=f"escalation[{i}].emails"))
    for i, offset in enumerate(spec.reminders.offsets_working_days):
        if offset < 0:
            problems.append(Problem(source, "khoảng nhắc trước hạn không được âm", field=f"reminders.offsets_working_days[{i}]"))
    if problems:
        raise InvalidInput(problems)

    order = _dependency_order(spec, source)
    resolved = _resolve_deadlines(spec, order, calendar, source)
    _check_order(spec, resolved, source)

    phases = tuple(
        Phase(
            id=p.id,
            name=p.name,
            kind=p.kind,
            deadline=resolved[p.id][0],
            reading=resolved[p.id][1],
            applies_to=tuple(p.applies_to),
            documents=tuple(DocumentRequirement(d.type, d.per == "member", d.required, d.members, _note(d)) for d in p.documents),
            after=tuple(p.after),
            submit_to=p.submit_to,
            source=p.source,
        )
        for p in spec.phases
    )
    issued_on = _parse_day(spec.issued_on, source, "issued_on", problems) if spec.issued_on else None
    evaluation_date = _parse_day(spec.evaluation_date, source, "evaluation_date", problems) if spec.evaluation_date else None
    if problems:
        raise InvalidInput(problems)
    if evaluation_date is None:
        meetings = [p.deadline.date() for p in phases if p.kind == "branch_meeting"] or [p.deadline.date() for p in phases]
        evaluation_date = min(meetings)
    return Plan(
        id=spec.id,
        number=spec.number,
        title=spec.title,
        issuer=spec.issuer,
        superior=spec.superior,
        place=spec.place,
        issued_on=issued_on,
        year=spec.year,
        rule_set=spec.rule_set,
        timezone=spec.timezone,
        evaluation_date=evaluation_date,
        signer=spec.signer,
        reminder_offsets=tuple(sorted(set(spec.reminders.offsets_working_days), reverse=True)),
        escalation=tuple(
            EscalationStep(i + 1, s.after_working_days, s.to, tuple(s.emails), s.name) for i, s in enumerate(spec.escalation)
        ),
        assignments=tuple(Assignment(a.person, a.title, a.unit, a.email) for a in spec.assignments),
        phases=phases,
        recipients=tuple(spec.recipients),
        calendar=calendar,
        source_text=text,
    )


def _note(document: DocumentSpec) -> str:
    """A document's note as units are shown it: none where it only repeats the catalogue's name."""
    note = (document.note or "").strip()
    known = DOCUMENTS.get(document.type)
    return "" if known is not None and note.casefold() == known.name.casefold() else note


def _build_calendar(spec: PlanSpec, source: str, problems: list[Problem], work_hours: WorkHours) -> WorkCalendar:
    holidays: dict[dt.date, str] = {}
    for i, h in enumerate(spec.calendar.extra_holidays):
        day = _parse_day(h.date, source, f"calendar.extra_holidays[{i}].date", problems)
        if day:
            holidays[day] = h.name
    working: set[dt.date] = set()
    for i, w in enumerate(spec.calendar.extra_working_days):
        day = _parse_day(w.date, source, f"calendar.extra_working_days[{i}].date", problems)
        if day:
            working.add(day)
    swaps: list[Swap] = []
    for i, s in enumerate(spec.calendar.swaps):
        off = _parse_day(s.day_off, source, f"calendar.swaps[{i}].day_off", problems)
        on = _parse_day(s.work_on, source, f"calendar.swaps[{i}].work_on", problems)
        if off and on:
            swaps.append(Swap(off, on, s.note))
    start, end = work_hours
    overrides = dict(extra_holidays=holidays, extra_working_days=working, swaps=swaps, work_start=start, work_end=end)
    try:
        return WorkCalendar(timezone=spec.timezone, **overrides)
    except ValueError:  # an unknown time zone is reported by _resolve, on its own field
        return WorkCalendar(**overrides)


def _references(phase: PhaseSpec) -> list[str]:
    refs = list(phase.after)
    if isinstance(phase.deadline, RelativeSpec):
        refs += [r for r in (phase.deadline.after, phase.deadline.before) if r]
    return refs


def _dependency_order(spec: PlanSpec, source: str) -> list[str]:
    """Topological order of phases by their references; a loop is an error naming the cycle."""
    by_id = {p.id: p for p in spec.phases}
    index = {p.id: i for i, p in enumerate(spec.phases)}
    state: dict[str, int] = {}
    order: list[str] = []

    def visit(phase_id: str, path: list[str]) -> None:
        if state.get(phase_id) == 2:
            return
        if state.get(phase_id) == 1:
            cycle = path[path.index(phase_id):] + [phase_id]
            raise InvalidInput(
                Problem(source, f"vòng lặp phụ thuộc giữa các giai đoạn: {' → '.join(cycle)}", field=f"phases[{index[phase_id]}]")
            )
        state[phase_id] = 1
        for ref in _references(by_id[phase_id]):
            visit(ref, path + [phase_id])
        state[phase_id] = 2
        order.append(phase_id)

    for phase in spec.phases:
        visit(phase.id, [])
    return order


def _resolve_deadlines(spec: PlanSpec, order: list[str], calendar: WorkCalendar, source: str) -> dict[str, tuple[dt.datetime, str]]:
    by_id = {p.id: p for p in spec.phases}
    index = {p.id: i for i, p in enumerate(spec.phases)}
    resolved: dict[str, tuple[dt.datetime, str]] = {}
    problems: list[Problem] = []
    for phase_id in order:
        phase = by_id[phase_id]
        where = f"phases[{index[phase_id]}].deadline"
        spec_value = phase.deadline
        if isinstance(spec_value, str):
            spec_value = DateSpec(date=spec_value)
        if isinstance(spec_value, DateSpec):
            day = _parse_day(spec_value.date, source, f"{where}.date" if isinstance(phase.deadline, DateSpec) else where, problems)
            hour = _parse_time(spec_value.time, source, f"{where}.time", problems)
            if day is None:
                continue
            quote = spec_value.text or f"trước ngày {format_date(day)}"
            instant, reading = _instant(calendar, day, hour, quote)
        else:
            ref_id = spec_value.after or spec_value.before
            ref_deadline = resolved.get(ref_id)
            if ref_deadline is None:
                continue  # the referenced phase already failed; its own error is reported
            n = spec_value.working_days if spec_value.after else -spec_value.working_days
            day = calendar.add_working_days(calendar.local(ref_deadline[0]).date(), n)
            hour = _parse_time(spec_value.time, source, f"{where}.time", problems)
            direction = "sau" if spec_value.after else "trước"
            quote = spec_value.text or f"{spec_value.working_days} ngày làm việc {direction} hạn của giai đoạn '{ref_id}'"
            instant, reading = _instant(calendar, day, hour, quote)
        resolved[phase_id] = (instant, reading)
        if spec.year and abs(instant.year - spec.year) > 1:
            problems.append(Problem(source, f"hạn {format_date(instant.date())} không thuộc năm của kế hoạch ({spec.year})", field=where))
    if problems:
        raise InvalidInput(problems)
    return resolved


VIETNAM_ZONES = frozenset({"Asia/Ho_Chi_Minh", "Asia/Saigon"})


def _instant(calendar: WorkCalendar, day: dt.date, hour: dt.time | None, quote: str) -> tuple[dt.datetime, str]:
    weekday = weekday_name(day)
    offset = calendar.end_of_day(day).strftime("%z")
    # Users read "giờ Việt Nam", not the IANA name; another zone is named by its offset only.
    zone = f"giờ Việt Nam, UTC{offset[:3]}:{offset[3:]}" if calendar.timezone in VIETNAM_ZONES else f"giờ UTC{offset[:3]}:{offset[3:]}"
    if hour is None:
        instant = calendar.end_of_day(day)
        reading = f"“{quote}” được hiểu là: hạn cuối 23:59:59 {weekday}, ngày {format_date(day)} ({zone})"
    else:
        instant = calendar.at(day, hour)
        reading = f"“{quote}” được hiểu là: hạn cuối {hour:%H:%M} {weekday}, ngày {format_date(day)} ({zone})"
    note = calendar.holiday_name(day)
    if note or not calendar.is_working_day(day):
        reading += f"; lưu ý: ngày này là ngày nghỉ ({note or weekday})"
    return instant, reading


def _check_order(spec: PlanSpec, resolved: dict[str, tuple[dt.datetime, str]], source: str) -> None:
    problems: list[Problem] = []
    index = {p.id: i for i, p in enumerate(spec.phases)}
    for phase in spec.phases:
        mine = resolved[phase.id][0]
        for j, ref in enumerate(phase.after):
            theirs = resolved[ref][0]
            if mine < theirs:
                problems.append(
                    Problem(
                        source,
                        f"hạn {format_date(mine.date())} sớm hơn hạn {format_date(theirs.date())} của giai đoạn '{ref}' phải làm trước",
                        field=f"phases[{index[phase.id]}].after[{j}]",
                    )
                )
    if problems:
        raise InvalidInput(problems)


def plan_warnings(plan: Plan) -> list[str]:
    """What a valid plan may have wrong, for the office to know before the campaign: a rule set
    chosen outside the years it was in force for; a per-member document required of a unit kind
    that has no members of its own (members sit only in branches, and a unit owes per-member items
    for its own members), which the system therefore cannot chase."""
    warnings = []
    first, last = RULE_SET_YEARS.get(plan.rule_set, (None, None))
    if first is not None and not (first <= plan.year and (last is None or plan.year <= last)):
        years = f"từ năm {first}" if last is None else f"các năm {first}–{last}"
        warnings.append(
            f"kế hoạch năm {plan.year} chọn bộ quy tắc {plan.rule_set} ({RULE_SETS[plan.rule_set]}), vốn áp dụng cho {years}: "
            "kiểm tra lại rule_set"
        )
    for phase in plan.phases:
        empty = [k for k in phase.applies_to if k not in BRANCH_KINDS]
        names = [f"“{d.name}”" for d in phase.documents if d.per_member]
        if empty and names:
            warnings.append(
                f"giai đoạn '{phase.id}': {', '.join(names)} nộp theo từng đảng viên, nhưng "
                f"{', '.join(UNIT_KINDS.get(k, k) for k in empty)} không có đảng viên trực tiếp (đảng viên chỉ sinh hoạt ở chi bộ): "
                "ở đơn vị loại này các văn bản đó không được tính là phải nộp và không được nhắc; văn bản nộp theo đơn vị vẫn được theo dõi"
            )
    return warnings


def describe(plan: Plan) -> dict:
    """A JSON-ready description of a plan, as ``plan check --json`` prints it."""
    return {
        "id": plan.id,
        "number": plan.number,
        "title": plan.title,
        "issuer": plan.issuer,
        "year": plan.year,
        "rule_set": plan.rule_set,
        "timezone": plan.timezone,
        "evaluation_date": plan.evaluation_date.isoformat(),
        "reminder_offsets_working_days": list(plan.reminder_offsets),
        "escalation": [
            {"step": s.step, "after_working_days": s.after_working_days, "to": s.to, "emails": list(s.emails), "name": s.name}
            for s in plan.escalation
        ],
        "assignments": [
            {"person": a.person, "title": a.title, "unit": a.unit, "email": a.email} for a in plan.assignments
        ],
        "phases": [
            {
                "id": p.id,
                "name": p.name,
                "kind": p.kind,
                "deadline": p.deadline.isoformat(),
                "deadline_local": p.deadline.strftime("%d/%m/%Y %H:%M:%S %z"),
                "reading": p.reading,
                "applies_to": list(p.applies_to),
                "documents": [
                    {"type": d.doc_type, "name": d.name, "per": "member" if d.per_member else "unit", "required": d.required, "members": d.member_scope}
                    for d in p.documents
                ],
                "after": list(p.after),
            }
            for p in plan.phases
        ],
        "warnings": plan_warnings(plan),
    }
