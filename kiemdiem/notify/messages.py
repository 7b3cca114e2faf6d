"""Composing emails: from domain values to a subject, a text body, an HTML body and attachments.

Pure: no database, no sending, no settings except where the templates live
(``templates_dir() / "email"``). Each purpose (``reminder``, ``escalation``,
``consolidation_diff``, ``invite``) declares its placeholders up front, each with a sample
value, in ``PURPOSES``; ``validate_templates()`` renders every template against those samples
with ``StrictUndefined``, so a broken template is found by a test, not at send time.

A purpose has two templates, ``<purpose>.txt.j2`` and ``<purpose>.html.j2``. The text template
also sets the subject (``{% set subject %}…{% endset %}``), so the wording of a message lives in
one place. ``_calendar.txt.j2`` holds the macros that word the ICS events attached to reminders.

``render_mime`` turns a composed message into the MIME bytes the outbox stores (a resend reuses
them, Message-ID included). It writes the bytes directly, the very bytes that ``build_mime``
(an ``EmailMessage``) serialised with ``email.policy.SMTP`` gives, multipart boundaries aside:
those are derived from the Message-ID instead of drawn at random, so rendering is
deterministic. Anything outside the shapes it knows goes through ``build_mime`` (with the same
boundaries), so the output never depends on which path wrote it.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    meta,
    select_autoescape,
)

from kiemdiem.calendar import WorkCalendar, weekday_name
from kiemdiem.catalogue import committee_of
from kiemdiem.notify import ics
from kiemdiem.settings import templates_dir
from kiemdiem.submission import DROP_FOLDER_PATTERN, drop_folder

LOCAL_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
CALENDAR_TEMPLATE = "_calendar.txt.j2"


# ---------------------------------------------------------------------------- input values


@dataclass(frozen=True)
class OutstandingItem:
    """One missing document: per unit (``member_id`` None) or per member."""

    unit_code: str
    unit_name: str
    doc_type: str
    doc_name: str
    member_id: str | None = None
    member_name: str | None = None


@dataclass(frozen=True)
class PhaseDue:
    """A phase of a plan with its deadline and what the recipient's units still owe for it.

    In an escalation, ``overdue_working_days`` and ``step`` say how late this phase is and which
    rung of the ladder it has reached: phases of one digest differ, and each is worded with its
    own figures. Its units may stand at different rungs (one directly under the root, one deeper):
    ``first_step`` is then the lowest, ``step`` the highest (None: all at ``step``). Reminders
    leave them None; a reminder's own overdue items (``compose_reminder``'s ``overdue``) have
    ``overdue_working_days`` and no step.

    ``unit_counts`` stands for ``items`` when there are too many to list: (unit code, unit name,
    items missing) per unit, ``items`` then empty."""

    plan_number: str
    issuer: str
    phase_id: str
    phase_name: str
    deadline: datetime
    deadline_reading: str
    items: tuple[OutstandingItem, ...]
    overdue_working_days: int | None = None
    step: int | None = None
    # The plan's own words for the documents still owed, (document name, note): which form,
    # where a copy goes. Said once per phase, not per unit.
    notes: tuple[tuple[str, str], ...] = ()
    first_step: int | None = None
    unit_counts: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True)
class CommentRequest:
    """A member temporarily active at the recipient's branch whose official branch still lacks the
    written comment of that temporary branch ("nhận xét của chi bộ nơi sinh hoạt tạm thời"). The
    recipient writes it and gives it to the official branch, which submits it by its own deadline
    for the phase; the recipient submits nothing itself."""

    plan_number: str
    phase_id: str
    phase_name: str
    deadline: datetime  # the official branch's deadline for the phase
    member_id: str
    member_name: str
    unit_code: str  # the official branch
    unit_name: str


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "text/calendar; method=PUBLISH"
    data: bytes


@dataclass(frozen=True)
class ComposedMessage:
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()


# ---------------------------------------------------------------- who a letter addresses


def addressee_kind(recipient_name: str) -> str:
    """How a letter to ``recipient_name`` asks its reader, from the name its "Kính gửi" gives:

    - ``person``: a comrade ("Đồng chí Lê Xuân Tiến, Phó Bí thư Đảng ủy Sở", as
      ``kiemdiem.reminders.RecipientDirectory`` names a committee member the plan assigns):
      asked as "đồng chí";
    - ``mailbox``: an address with no name (a plan's ``to: emails`` step without ``name:``):
      asked without naming anyone;
    - ``body``: anything else, an organization or an office: a committee ("Đảng ủy Sở Y tế"), a
      branch ("Chi bộ Văn phòng 2"), the office a plan names for its mailbox ("Ban Tổ chức Đảng
      ủy Khối"): asked by its name, never as "đồng chí".
    """
    name = unicodedata.normalize("NFC", recipient_name).strip()
    if name.casefold().startswith(("đồng chí ", "đ/c ", "đ/c. ")):
        return "person"
    if "@" in name and not any(c.isspace() for c in name):
        return "mailbox"
    return "body"


# ---------------------------------------------------------------- views handed to templates


@dataclass(frozen=True)
class MissingMember:
    member_id: str
    member_name: str
    folder: str


@dataclass(frozen=True)
class MissingDocument:
    doc_type: str
    doc_name: str
    folder: str  # "<unit>/<doc type>/"; per-member documents add "<member id>/"
    per_member: bool
    members: tuple[MissingMember, ...]


@dataclass(frozen=True)
class UnitOutstanding:
    unit_code: str
    unit_name: str
    documents: tuple[MissingDocument, ...]  # empty when the digest only counts this unit's items
    item_count: int


@dataclass(frozen=True)
class PhaseOutstanding:
    plan_number: str
    issuer: str
    phase_id: str
    phase_name: str
    deadline: datetime
    deadline_reading: str
    units: tuple[UnitOutstanding, ...]
    item_count: int
    more_units: int = 0  # units left out of the list (an office high up the tree)
    more_items: int = 0  # their items
    overdue_working_days: int | None = None  # escalations and a reminder's overdue items, as in PhaseDue
    step: int | None = None
    notes: tuple[tuple[str, str], ...] = ()  # as in PhaseDue
    first_step: int | None = None  # the lowest step of the phase's units; equal to ``step`` when they share it


@dataclass(frozen=True)
class PhaseComments:
    """A phase's comment requests (``CommentRequest``), its deadline the official branches'."""

    plan_number: str
    phase_id: str
    phase_name: str
    deadline: datetime
    members: tuple[CommentRequest, ...]


@dataclass(frozen=True)
class Countdown:
    """Where a reminder's tick stands against the digest's earliest deadline, on the plan's
    working-day calendar: what the reminder may truthfully say about the time left."""

    working_days_left: int  # after today up to and including the deadline's day (WorkCalendar.working_days_left)
    is_today: bool  # the tick's local date is the deadline's
    passed: bool  # the deadline is behind the tick
    weekday: str  # the deadline's weekday, "thứ Hai" … "Chủ nhật"
    day_off: bool  # the deadline falls on a weekend or a holiday
    holiday: str  # that holiday's name; "" for a weekend or a working day
    today_is_working_day: bool


# Vietnam's public calendar: for callers that do not pass the plan's own (its swaps and extra days).
_PUBLIC_CALENDAR = WorkCalendar()


def countdown(deadline: datetime, now: datetime, calendar: WorkCalendar | None = None) -> Countdown:
    """The facts a reminder words about ``deadline`` at ``now``; pure, from the calendar given."""
    calendar = calendar or _PUBLIC_CALENDAR
    today = calendar.local(now).date()
    day = calendar.local(deadline).date()
    return Countdown(
        working_days_left=calendar.working_days_left(now, deadline),
        is_today=day == today,
        passed=now > deadline,
        weekday=weekday_name(day),
        day_off=not calendar.is_working_day(day),
        holiday=calendar.holiday_name(day) or "",
        today_is_working_day=calendar.is_working_day(today),
    )


# A digest to an office high in the tree (a province's, the plan's mailbox) may carry hundreds
# of thousands of overdue items: listed one by one that is tens of megabytes, which mail servers
# refuse. Past these bounds a digest counts items per unit, then stops listing units at all.
MAX_DETAILED_ITEMS = 1000
MAX_LISTED_UNITS = 500
# A reminder's section on the unit's own overdue items ("Các mục đã quá hạn") is short: past this
# many items it counts them per unit (the store then reads counts only, not the items).
MAX_OVERDUE_DETAILED_ITEMS = 100


def due_item_count(due: PhaseDue) -> int:
    return len(due.items) if due.items or not due.unit_counts else sum(n for _, _, n in due.unit_counts)


def summarize_dues(dues: Iterable[PhaseDue], max_detailed: int | None = None) -> tuple[PhaseOutstanding, ...]:
    """Group each phase's items by unit, then by document; phases ordered by deadline.

    Units, documents and members keep the order in which the caller listed them. Past
    ``max_detailed`` items in all (``MAX_DETAILED_ITEMS``), units are only counted, and past
    ``MAX_LISTED_UNITS`` not listed; a due given by ``unit_counts`` is always counted.
    """
    phases = []
    dues = sorted(dues, key=lambda d: (d.deadline, d.plan_number, d.phase_id))
    limit = MAX_DETAILED_ITEMS if max_detailed is None else max_detailed
    detailed = sum(due_item_count(d) for d in dues) <= limit
    for due in dues:
        units: dict[str, dict[str, list[OutstandingItem]]] = {}
        names: dict[str, str] = {}
        for item in due.items:
            names.setdefault(item.unit_code, item.unit_name)
            units.setdefault(item.unit_code, {}).setdefault(item.doc_type, []).append(item)
        counted = {code: n for code, _, n in due.unit_counts} if not due.items else {}
        for code, name, _ in due.unit_counts if not due.items else ():
            names.setdefault(code, name)
            units.setdefault(code, {})
        unit_views = []
        more_units = more_items = 0
        for unit_code, documents in units.items():
            count = counted.get(unit_code) or sum(len(v) for v in documents.values())
            if not detailed or unit_code in counted:
                if len(unit_views) < MAX_LISTED_UNITS:
                    unit_views.append(UnitOutstanding(unit_code, names[unit_code], (), count))
                else:
                    more_units, more_items = more_units + 1, more_items + count
                continue
            doc_views = []
            for doc_type, items in documents.items():
                folder = drop_folder(unit_code, due.phase_id, doc_type)
                members = tuple(
                    MissingMember(i.member_id, i.member_name or i.member_id, f"{folder}{i.member_id}/")
                    for i in items
                    if i.member_id
                )
                doc_views.append(
                    MissingDocument(
                        doc_type=doc_type,
                        doc_name=items[0].doc_name,
                        folder=folder,
                        per_member=bool(members),
                        members=members,
                    )
                )
            unit_views.append(
                UnitOutstanding(
                    unit_code, names[unit_code], tuple(doc_views),
                    sum(len(v) for v in documents.values()),
                )
            )
        phases.append(
            PhaseOutstanding(
                plan_number=due.plan_number,
                issuer=due.issuer,
                phase_id=due.phase_id,
                phase_name=due.phase_name,
                deadline=due.deadline,
                deadline_reading=due.deadline_reading,
                units=tuple(unit_views),
                item_count=due_item_count(due),
                more_units=more_units,
                more_items=more_items,
                overdue_working_days=due.overdue_working_days,
                step=due.step,
                notes=due.notes,
                first_step=due.step if due.first_step is None else due.first_step,
            )
        )
    return tuple(phases)


def summarize_comments(requests: Iterable[CommentRequest]) -> tuple[PhaseComments, ...]:
    """Comment requests by phase (ordered by deadline), each phase's members by official branch, then code."""
    by_phase: dict[tuple[datetime, str, str], list[CommentRequest]] = {}
    for r in requests:
        by_phase.setdefault((r.deadline, r.plan_number, r.phase_id), []).append(r)
    return tuple(
        PhaseComments(plan_number, phase_id, members[0].phase_name, deadline,
                      tuple(sorted(set(members), key=lambda r: (r.unit_code, r.member_id))))
        for (deadline, plan_number, phase_id), members in sorted(by_phase.items(), key=lambda kv: kv[0])
    )


# ------------------------------------------------------------------ purposes and placeholders


@dataclass(frozen=True)
class Placeholder:
    """A variable a purpose's templates may use: its name, what it holds, a sample value."""

    name: str
    description: str
    sample: Any


@dataclass(frozen=True)
class Purpose:
    name: str
    description: str
    placeholders: tuple[Placeholder, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.placeholders)

    def samples(self) -> dict[str, Any]:
        return {p.name: p.sample for p in self.placeholders}

    @property
    def text_template(self) -> str:
        return f"{self.name}.txt.j2"

    @property
    def html_template(self) -> str:
        return f"{self.name}.html.j2"


_SAMPLE_NOW = datetime(2023, 11, 30, 8, 0, tzinfo=LOCAL_ZONE)
_SAMPLE_DUES = (
    PhaseDue(
        plan_number="187-KH/ĐU",
        issuer="Đảng ủy Sở Công Thương",
        phase_id="kiem_diem_chi_bo",
        phase_name="Chi bộ kiểm điểm và gửi hồ sơ đánh giá, xếp loại",
        deadline=datetime(2023, 12, 5, 23, 59, tzinfo=LOCAL_ZONE),
        deadline_reading="trước 23:59 ngày 05/12/2023",
        items=(
            OutstandingItem("CB01", "Chi bộ Văn phòng Sở", "bao_cao_kiem_diem_tap_the",
                            "Báo cáo kiểm điểm tập thể"),
            OutstandingItem("CB01", "Chi bộ Văn phòng Sở", "ban_kiem_diem_ca_nhan",
                            "Bản kiểm điểm cá nhân", "DV0007", "Nguyễn Thị Hạnh"),
            OutstandingItem("CB01", "Chi bộ Văn phòng Sở", "ban_kiem_diem_ca_nhan",
                            "Bản kiểm điểm cá nhân", "DV0012", "Trần Văn Đức"),
            OutstandingItem("CB02", "Chi bộ Phòng Quản lý Công nghiệp & <Năng lượng>",
                            "bien_ban_hoi_nghi", "Biên bản hội nghị"),
        ),
    ),
    PhaseDue(
        plan_number="187-KH/ĐU",
        issuer="Đảng ủy Sở Công Thương",
        phase_id="khac_phuc_chi_bo",
        phase_name="Chi bộ gửi kế hoạch khắc phục hạn chế, khuyết điểm",
        deadline=datetime(2023, 12, 28, 17, 0, tzinfo=LOCAL_ZONE),
        deadline_reading="trước 17:00 ngày 28/12/2023",
        items=(
            OutstandingItem("CB01", "Chi bộ Văn phòng Sở", "ke_hoach_khac_phuc",
                            "Kế hoạch khắc phục hạn chế, khuyết điểm"),
        ),
    ),
)
_SAMPLE_PHASES = summarize_dues(_SAMPLE_DUES)
# An escalation's phases each carry their own delay and step; the sample's differ, as on
# 06/12/2023 under 187-KH/ĐU (the draft 4 working days late, the meeting's dossier 1).
_SAMPLE_ESCALATION_NOW = datetime(2023, 12, 6, 8, 0, tzinfo=LOCAL_ZONE)
_SAMPLE_DRAFT_DUE = PhaseDue(
    plan_number="187-KH/ĐU",
    issuer="Đảng ủy Sở Công Thương",
    phase_id="chuan_bi_chi_bo",
    phase_name="Chi bộ gửi dự thảo báo cáo kiểm điểm tới người dự hội nghị",
    deadline=datetime(2023, 11, 30, 23, 59, tzinfo=LOCAL_ZONE),
    deadline_reading="trước 23:59 ngày 30/11/2023",
    items=(
        OutstandingItem("CB02", "Chi bộ Phòng Quản lý Công nghiệp & <Năng lượng>",
                        "du_thao_bao_cao_kiem_diem", "Dự thảo báo cáo kiểm điểm tập thể (gửi trước hội nghị)"),
    ),
)
_SAMPLE_ESCALATION_PHASES = summarize_dues((
    replace(_SAMPLE_DRAFT_DUE, overdue_working_days=4, step=1),
    replace(_SAMPLE_DUES[0], overdue_working_days=1, step=0),
))


# A reminder's section on the unit's own items overdue in another phase.
_SAMPLE_OVERDUE = summarize_dues((
    replace(_SAMPLE_DRAFT_DUE, overdue_working_days=2, items=(
        *_SAMPLE_DRAFT_DUE.items,
        OutstandingItem("CB02", "Chi bộ Phòng Quản lý Công nghiệp & <Năng lượng>", "ban_kiem_diem_ca_nhan",
                        "Bản kiểm điểm cá nhân", "DV0031", "Lê Văn Tâm"),
    )),
), MAX_OVERDUE_DETAILED_ITEMS)


# A reminder to a branch where members of other branches are temporarily active.
_SAMPLE_COMMENTS = summarize_comments((
    CommentRequest("187-KH/ĐU", "kiem_diem_chi_bo", "Chi bộ kiểm điểm và gửi hồ sơ đánh giá, xếp loại",
                   datetime(2023, 12, 5, 23, 59, tzinfo=LOCAL_ZONE), "DV0044", "Hoàng Thị Lan",
                   "CB03", "Chi bộ Khuyến công & <Xúc tiến thương mại>"),
))


def _digest_placeholders(
    phases: tuple[PhaseOutstanding, ...] = _SAMPLE_PHASES, now: datetime = _SAMPLE_NOW
) -> tuple[Placeholder, ...]:
    return (
        Placeholder("recipient_name", "How the recipient is addressed.", "Đồng chí Bí thư Chi bộ"),
        Placeholder("addressed_as", "Who the recipient is (addressee_kind): 'person' (asked as "
                    "\"đồng chí\"), 'body' (an organization or office, asked by its name) or "
                    "'mailbox' (an address without a name, asked impersonally).", "person"),
        Placeholder("plan_numbers", "Plan numbers concerned, in order, without repeats.",
                    ("187-KH/ĐU",)),
        Placeholder("phases", "PhaseOutstanding values: each phase with its missing items "
                    "grouped by unit and document.", phases),
        Placeholder("phase_count", "Number of phases listed.", len(phases)),
        Placeholder("unit_count", "Number of distinct units with something missing.",
                    len({u.unit_code for p in phases for u in p.units})),
        Placeholder("item_count", "Number of missing items over all phases.",
                    sum(p.item_count for p in phases)),
        Placeholder("earliest_deadline", "The nearest deadline (aware datetime).",
                    phases[0].deadline),
        Placeholder("submit_url", "Where units submit (web portal).", "http://127.0.0.1:8080"),
        Placeholder("drop_folder_pattern", "The drop-folder convention.", DROP_FOLDER_PATTERN),
        Placeholder("drop_share", "The drop folder as those who may use it reach it; empty: not mentioned "
                    "(and no item's folder is listed).", "\\\\vanphong\\kiemdiem-nhan"),
        Placeholder("now", "When the message is composed (aware datetime).", now),
    )


PURPOSES: dict[str, Purpose] = {
    p.name: p
    for p in (
        Purpose(
            name="reminder",
            description="Digest reminder before deadlines: every outstanding item of every "
            "unit the recipient answers for, one message per recipient per tick.",
            placeholders=_digest_placeholders() + (
                Placeholder("countdown", "Countdown to the earliest deadline at ``now``: working "
                            "days really left (not the reminder step that planned the digest), "
                            "whether the deadline is today, passed, or falls on a day off.",
                            Countdown(3, False, False, "thứ Ba", False, "", True)),
                Placeholder("overdue", "PhaseOutstanding values: the recipient's units' own items "
                            "already overdue in other phases (their superiors hear of them by "
                            "escalation), each phase with its overdue_working_days; empty: none. "
                            "Listed apart, never counted in the figures above.", _SAMPLE_OVERDUE),
                Placeholder("overdue_item_count", "Number of items in ``overdue``.",
                            sum(p.item_count for p in _SAMPLE_OVERDUE)),
                Placeholder("comments", "PhaseComments values: members temporarily active at the "
                            "recipient's branch whose official branch still lacks its written comment, "
                            "each with that branch and its deadline; empty: none. Not the recipient's "
                            "own items: never counted in the figures above. ``phases`` may be empty "
                            "when these are all the reminder says.", _SAMPLE_COMMENTS),
                Placeholder("comment_count", "Number of members in ``comments``.",
                            sum(len(p.members) for p in _SAMPLE_COMMENTS)),
            ),
        ),
        Purpose(
            name="escalation",
            description="Digest sent after a deadline to a parent unit, an office or a committee member. "
            "Each phase in ``phases`` has its own ``overdue_working_days`` and steps (``first_step`` "
            "to ``step``); the digest-wide figures below are stated for all items only when they "
            "hold for all of them.",
            placeholders=_digest_placeholders(_SAMPLE_ESCALATION_PHASES, _SAMPLE_ESCALATION_NOW) + (
                Placeholder("step", "Highest rung of the escalation ladder an item of the digest has "
                            "reached (0 = the parent unit, right after the deadline).", 1),
                Placeholder("first_step", "Lowest rung an item of the digest stands at; equal to "
                            "``step`` when all stand at one.", 0),
                Placeholder("overdue_working_days",
                            "Working days past the deadline of the most overdue phase.", 4),
                Placeholder("most_overdue_item_count",
                            "Items that are that late; equal to item_count when every phase is.", 1),
                Placeholder("own_unit", "Whether the recipient is the one late unit's own office (the top "
                            "of the tree, with no one above it): the letter asks it, not its units.", False),
            ),
        ),
        Purpose(
            name="consolidation_diff",
            description="A late result, a cancellation or an approval changed a consolidation; the office gets the difference.",
            placeholders=(
                Placeholder("recipient_name", "How the recipient is addressed.",
                            "Văn phòng Đảng ủy"),
                Placeholder("plan_number", "Plan number.", "187-KH/ĐU"),
                Placeholder("unit_name", "Unit whose consolidation changed.",
                            "Đảng bộ Sở Công Thương"),
                Placeholder("version", "Number of the new consolidation snapshot.", 3),
                Placeholder("diff_text", "Human-readable difference (multi-line, preformatted).",
                            "Đảng viên Trần Văn Đức: HTNV → HTTNV\n"
                            "HTTNV: 41 → 42\nHTXSNV/HTTNV: 19,5% → 19,0%"),
                Placeholder("member_change_count",
                            "Members whose level changed (len of diff['members']).", 1),
                Placeholder("new_finding_count", "Rule findings that appeared "
                            "(len of diff['findings_appeared']), e.g. a 20% cap breach.", 1),
                Placeholder("has_table",
                            "Whether the changes are attached as a table for Excel (CSV).", True),
                Placeholder("now", "When the message is composed (aware datetime).", _SAMPLE_NOW),
                Placeholder("cause", "Why it was recomputed, after \"do\" (empty: not said).",
                            "hủy kết quả của DV0000005 (Bí thư Đảng ủy: xếp loại lại theo Quyết định 15-QĐ/ĐU)"),
            ),
        ),
        Purpose(
            name="invite",
            description="A sign-in link to the web portal for a unit's secretary or office.",
            placeholders=(
                Placeholder("recipient_name", "How the recipient is addressed.",
                            "Đồng chí Nguyễn Thị Hạnh"),
                Placeholder("unit_name", "Unit the link signs in for.", "Chi bộ Văn phòng Sở"),
                Placeholder("link", "The one-time sign-in link.",
                            "http://127.0.0.1:8080/dang-nhap?token=abc&x=1"),
                Placeholder("expires_at", "When the link stops working (aware datetime).",
                            datetime(2023, 12, 3, 8, 0, tzinfo=LOCAL_ZONE)),
            ),
        ),
    )
}


# -------------------------------------------------------------------------------- rendering


def _local(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: give it a zone")
    return value.astimezone(LOCAL_ZONE)


def format_date(value: datetime) -> str:
    """dd/mm/yyyy in Asia/Ho_Chi_Minh."""
    return _local(value).strftime("%d/%m/%Y")


def format_time(value: datetime) -> str:
    """HH:MM (24 h) in Asia/Ho_Chi_Minh."""
    return _local(value).strftime("%H:%M")


def make_environment(directory: Path) -> Environment:
    """Jinja2 environment: StrictUndefined; ``*.html.j2`` autoescaped, ``*.txt.j2`` not."""
    env = Environment(
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",), disabled_extensions=("txt.j2",),
            default_for_string=False, default=False,
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["date_vn"] = format_date
    env.filters["time_vn"] = format_time
    return env


@lru_cache(maxsize=4)
def _environment_for(directory: str) -> Environment:
    return make_environment(Path(directory))


def environment() -> Environment:
    return _environment_for(str(templates_dir() / "email"))


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


def _render(env: Environment, purpose: Purpose, context: Mapping[str, Any]) -> tuple[str, str, str]:
    """Render a purpose's templates; returns (subject, text, html)."""
    module = env.get_template(purpose.text_template).make_module(dict(context))
    subject = _one_line(getattr(module, "subject", ""))
    if not subject:
        raise TemplateError(f"{purpose.text_template} does not set a subject")
    text = str(module).strip() + "\n"
    html = env.get_template(purpose.html_template).render(dict(context), subject=subject)
    return subject, text, html


def _compose(
    purpose_name: str, context: Mapping[str, Any], attachments: tuple[Attachment, ...] = ()
) -> ComposedMessage:
    purpose = PURPOSES[purpose_name]
    if set(context) != purpose.names:
        # The declaration and the code drifted apart: a programming error, caught by tests.
        raise ValueError(
            f"{purpose_name}: context {sorted(context)} differs from the declared "
            f"placeholders {sorted(purpose.names)}"
        )
    subject, text, html = _render(environment(), purpose, context)
    return ComposedMessage(subject, text, html, attachments)


@lru_cache(maxsize=8)
def _calendar_module(template: Template) -> Any:
    """The macros of ``_calendar.txt.j2``; one module per loaded template (macros keep no state,
    and an edited file loads as a new template)."""
    return template.make_module({})


def _calendar_texts(env: Environment, phase: PhaseOutstanding, submit_url: str) -> tuple[str, str]:
    """(summary, description) of a phase's ICS event, from the macros in _calendar.txt.j2."""
    module = _calendar_module(env.get_template(CALENDAR_TEMPLATE))
    summary = _one_line(module.event_summary(phase))
    description = str(module.event_description(phase, submit_url)).strip()
    if not summary or not description:
        raise TemplateError(f"{CALENDAR_TEMPLATE}: an event summary or description is empty")
    return summary, description


def _digest_context(
    recipient_name: str, dues: Iterable[PhaseDue], *, submit_url: str, now: datetime, drop_share: str = "",
    comments: tuple[PhaseComments, ...] = (),
) -> dict[str, Any]:
    dues = list(dues)
    phases = summarize_dues(dues)
    if not phases and not comments:
        raise ValueError("nothing outstanding: a digest needs at least one phase")
    return {
        "recipient_name": recipient_name,
        "addressed_as": addressee_kind(recipient_name),
        "plan_numbers": tuple(dict.fromkeys([p.plan_number for p in phases] + [c.plan_number for c in comments])),
        "phases": phases,
        "phase_count": len(phases),
        "unit_count": len({item.unit_code for due in dues for item in due.items}),
        "item_count": sum(p.item_count for p in phases),
        # The recipient's own nearest deadline; with nothing of its own, the comments' nearest.
        "earliest_deadline": min(p.deadline for p in phases or comments),
        "submit_url": submit_url,
        "drop_folder_pattern": DROP_FOLDER_PATTERN,
        "drop_share": drop_share,
        "now": now,
    }


def slug(value: str) -> str:
    """ASCII slug for file names and UIDs: diacritics dropped, đ→d, other runs → '-'."""
    value = value.replace("đ", "d").replace("Đ", "D")
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9]+", "-", value).strip("-").lower() or "x"


def phase_event_uid(plan_number: str, phase_id: str, deadline: datetime) -> str:
    """Stable UID: the same phase and deadline always update the same calendar event."""
    return f"kiemdiem-{slug(plan_number)}-{slug(phase_id)}-{ics.format_utc(deadline)}@kiemdiem.local"


def deadline_attachments(
    phases: Iterable[PhaseOutstanding], *, submit_url: str, now: datetime, calendar: WorkCalendar | None = None
) -> tuple[Attachment, ...]:
    """One ICS file per phase, worded by the macros in ``_calendar.txt.j2``; its alarm on the
    morning of the working day before the deadline (``calendar``; without it, a day before), or,
    when that morning is past, on the deadline's own morning if still to come."""
    env = environment()
    attachments = []
    for phase in phases:
        summary, description = _calendar_texts(env, phase, submit_url)
        alarm_at = calendar.morning_before(phase.deadline) if calendar is not None else None
        if alarm_at is not None and alarm_at <= now:
            # Sent on the last day before, or on the day: ring on the deadline's morning instead of in the past.
            on_the_day = calendar.at(calendar.local(phase.deadline).date(), calendar.work_start)
            if now < on_the_day < phase.deadline:
                alarm_at = on_the_day
        attachments.append(
            _deadline_attachment(
                phase.plan_number, phase.phase_id, phase.deadline, summary, description, now, submit_url, alarm_at
            )
        )
    return tuple(attachments)


@lru_cache(maxsize=1024)
def _deadline_attachment(
    plan_number: str, phase_id: str, deadline: datetime, summary: str, description: str,
    now: datetime, submit_url: str, alarm_at: datetime | None = None,
) -> Attachment:
    """A phase's ICS file; recipients owing the same counts in a tick share the same bytes."""
    data = ics.deadline_event(
        phase_event_uid(plan_number, phase_id, deadline),
        summary,
        description,
        deadline,
        now=now,
        url=submit_url,
        alarm_at=alarm_at,
    )
    filename = f"han-{slug(plan_number)}-{slug(phase_id)}.ics"
    return Attachment(filename, "text/calendar; method=PUBLISH", data)


# ------------------------------------------------------------------------------- composing


def compose_reminder(
    recipient_name: str,
    dues: list[PhaseDue],
    *,
    submit_url: str,
    now: datetime,
    calendar: WorkCalendar | None = None,
    drop_share: str = "",
    overdue: Iterable[PhaseDue] = (),
    comments: Iterable[CommentRequest] = (),
) -> ComposedMessage:
    """One digest listing every outstanding item of every unit the recipient answers for.

    Each phase comes with an ICS attachment for its deadline. The time left to the earliest
    deadline is counted from ``now`` on ``calendar``, the plan's (without it: Vietnam's public
    calendar, which lacks a plan's swaps and extra days), not taken from the reminder step that
    planned the digest: sent late, a step overstates what is left.

    ``overdue``: the same units' items already overdue in other phases (each due with its
    ``overdue_working_days``), which only their superiors are told of by escalation; shown in a
    short section of their own ("Các mục đã quá hạn"), counted per unit past
    ``MAX_OVERDUE_DETAILED_ITEMS``, outside the digest's figures and with no calendar file.

    ``comments``: members temporarily active at the recipient's branch on whom it is asked for a
    written comment, to give to their official branch ("Nhận xét đảng viên sinh hoạt tạm thời tại
    chi bộ"); a section of their own, outside the figures and with no calendar file. They may be all
    a reminder says (``dues`` empty): the branch owes nothing itself that morning.
    """
    comment_phases = summarize_comments(comments)
    context = _digest_context(recipient_name, dues, submit_url=submit_url, now=now, drop_share=drop_share,
                              comments=comment_phases)
    overdue_phases = summarize_dues(overdue, MAX_OVERDUE_DETAILED_ITEMS) if overdue else ()
    if any(p.overdue_working_days is None for p in overdue_phases):
        raise ValueError("a reminder's overdue items need each phase's working days overdue")
    context["overdue"] = overdue_phases
    context["overdue_item_count"] = sum(p.item_count for p in overdue_phases)
    context["comments"] = comment_phases
    context["comment_count"] = sum(len(p.members) for p in comment_phases)
    context["countdown"] = countdown(context["earliest_deadline"], now, calendar)
    attachments = deadline_attachments(context["phases"], submit_url=submit_url, now=now, calendar=calendar)
    return _compose("reminder", context, attachments)


def compose_escalation(
    recipient_name: str,
    dues: list[PhaseDue],
    *,
    submit_url: str,
    now: datetime,
    drop_share: str = "",
) -> ComposedMessage:
    """A digest of overdue items for a parent unit, an office or a committee member.

    Each phase is worded with its own delay and ladder steps (its PhaseDue's). The subject puts
    the most overdue phase's delay only on the items it is true of, and names every step the
    digest's items stand at ("đôn đốc lần 1–3"), not only the highest.
    """
    if any(d.step is None or d.overdue_working_days is None for d in dues):
        raise ValueError("an escalation needs each phase's step and working days overdue")
    context = _digest_context(recipient_name, dues, submit_url=submit_url, now=now, drop_share=drop_share)
    phases = context["phases"]
    worst = max(p.overdue_working_days for p in phases)
    context["overdue_working_days"] = worst
    context["step"] = max(p.step for p in phases)
    context["first_step"] = min(p.first_step for p in phases)
    context["most_overdue_item_count"] = sum(p.item_count for p in phases if p.overdue_working_days == worst)
    # The top of the tree has no one above it: its own office hears of its own lateness.
    names = {u.unit_name for p in phases for u in p.units}
    context["own_unit"] = len(names) == 1 and recipient_name in names | {committee_of(n) for n in names}
    return _compose("escalation", context)


def compose_consolidation_diff(
    recipient_name: str,
    plan_number: str,
    unit_name: str,
    version: int,
    diff_text: str,
    diff: dict,
    now: datetime,
    cause: str = "",
    table: bytes = b"",
) -> ComposedMessage:
    """The office's notice that a late result (or a cancellation, an approval: ``cause``) changed a consolidation.

    ``diff_text`` is shown as is; ``diff`` (``consolidation.diff``'s shape) gives the summary's
    counts of its ``members`` and ``findings_appeared``; ``table`` (``consolidation.diff_csv``:
    the same changes as a Vietnamese table for Excel) is attached as ``thay-doi-phien-ban-<version>.csv``
    when not empty.
    """
    attachments = (Attachment(f"thay-doi-phien-ban-{version}.csv", "text/csv; charset=utf-8", table),) if table else ()
    context = {
        "recipient_name": recipient_name,
        "plan_number": plan_number,
        "unit_name": unit_name,
        "version": version,
        "diff_text": diff_text,
        "member_change_count": len(diff.get("members") or ()),
        "new_finding_count": len(diff.get("findings_appeared") or ()),
        "has_table": bool(attachments),
        "now": now,
        "cause": cause,
    }
    return _compose("consolidation_diff", context, attachments)


def compose_invite(
    recipient_name: str, unit_name: str, link: str, expires_at: datetime
) -> ComposedMessage:
    """A sign-in link to the portal, with when it expires."""
    context = {
        "recipient_name": recipient_name,
        "unit_name": unit_name,
        "link": link,
        "expires_at": expires_at,
    }
    return _compose("invite", context)


# ------------------------------------------------------------------------------ validation


def validate_templates(directory: Path | None = None) -> list[str]:
    """Render every purpose's templates against its declared samples; list what is wrong.

    Checks: both files exist; they use no variable that is not declared; they render with
    StrictUndefined; the text template sets a one-line subject; the calendar macros render;
    no stray template without a purpose. An empty list means all is well.
    """
    directory = directory or templates_dir() / "email"
    env = make_environment(directory)
    problems: list[str] = []
    known = {CALENDAR_TEMPLATE}
    for purpose in PURPOSES.values():
        for name in (purpose.text_template, purpose.html_template):
            known.add(name)
            problems += _check_variables(env, name, purpose.names)
        try:
            subject, text, html = _render(env, purpose, purpose.samples())
        except (TemplateError, TypeError, ValueError, AttributeError) as error:
            problems.append(f"{purpose.name}: {type(error).__name__}: {error}")
            continue
        if not text.strip():
            problems.append(f"{purpose.text_template}: empty body")
        if not html.strip():
            problems.append(f"{purpose.html_template}: empty body")
    problems += _check_calendar(env)
    for path in sorted(directory.glob("*.j2")):
        if path.name not in known and not path.name.startswith("_"):
            problems.append(f"{path.name}: no purpose declares this template")
    return problems


def _check_variables(env: Environment, name: str, declared: frozenset[str]) -> list[str]:
    """Variables a template (and what it extends or includes) uses but nobody declared."""
    problems: list[str] = []
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            source = env.loader.get_source(env, current)[0]  # type: ignore[union-attr]
            ast = env.parse(source)
        except TemplateError as error:
            problems.append(f"{current} (from {name}): {type(error).__name__}: {error}")
            continue
        unknown = meta.find_undeclared_variables(ast) - declared - set(env.globals) - {"subject"}
        problems += [f"{current} (from {name}): uses undeclared variable '{v}'" for v in sorted(unknown)]
        pending += [t for t in meta.find_referenced_templates(ast) if t]
    return problems


def _check_calendar(env: Environment) -> list[str]:
    try:
        for phase in _SAMPLE_PHASES:
            _calendar_texts(env, phase, "http://127.0.0.1:8080")
    except (TemplateError, TypeError, ValueError, AttributeError) as error:
        return [f"{CALENDAR_TEMPLATE}: {type(error).__name__}: {error}"]
    return []


# ----------------------------------------------------------------------------------- MIME


def make_message_id(idempotency_key: str, domain: str = "kiemdiem.local") -> str:
    """A Message-ID derived from the outbox row's idempotency key: ``<sha256[:32]@domain>``."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def build_mime(
    msg: ComposedMessage, *, sender: str, recipient: str, message_id: str, date: datetime
) -> EmailMessage:
    """multipart/alternative (text, HTML), wrapped in multipart/mixed when there are
    attachments; headers RFC 2047-encoded where needed; Message-ID exactly ``message_id``.

    The outbox stores ``render_mime``'s bytes, which are this message's, serialised; this
    object stays the reference they are tested against, and the path for unusual messages."""
    mime = EmailMessage()
    _set_address(mime, "From", sender)
    _set_address(mime, "To", recipient)
    _set_text_header(mime, "Subject", msg.subject)
    mime["Date"] = format_datetime(_aware(date))
    mime["Message-ID"] = message_id
    mime["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    # base64, not quoted-printable: Vietnamese text would triple in size and encode slowly.
    mime.set_content(msg.text, subtype="plain", charset="utf-8", cte="base64")
    mime.add_alternative(msg.html, subtype="html", charset="utf-8", cte="base64")
    for attachment in msg.attachments:
        maintype, subtype, params = _split_content_type(attachment.content_type)
        if maintype == "text":
            params.setdefault("charset", "utf-8")
        mime.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype,
            filename=attachment.filename, params=params,
        )
    return mime


# Non-ASCII header text is encoded here, not by the email package: CPython 3.11's folder can
# drop the space between two encoded words when it folds a long Vietnamese subject
# ("nộp hồ sơ" arrives as "nộphồ sơ"). Each encoded word below carries its own spaces, is cut
# at a character boundary and is short enough that the generator never refolds the line.
_ENCODED_WORD_MAX_BYTES = 39  # base64 → 52 chars → a 64-char word; "Subject: " + word < 78
_MAX_LINE = 78


def encode_words(text: str, max_bytes: int = _ENCODED_WORD_MAX_BYTES) -> list[str]:
    """RFC 2047 base64 encoded words for ``text``, split only between characters.

    A word ends after a space where one is near, with the space inside the word: decoders
    that follow RFC 2047 drop the fold between two encoded words, so the text is exact.
    (Python's own address parser keeps the fold as a space: a long display name read back by
    Python may show a double space there; the subject, an unstructured header, is exact.)
    """
    chunks: list[str] = []
    current = ""
    for char in text:
        if len((current + char).encode("utf-8")) > max_bytes:
            cut = current.rfind(" ") + 1
            if 0 < cut < len(current):
                chunks.append(current[:cut])
                current = current[cut:]
            else:
                chunks.append(current)
                current = ""
        current += char
    chunks.append(current)
    return [
        f"=?utf-8?b?{base64.b64encode(c.encode('utf-8')).decode('ascii')}?=" for c in chunks
    ]


def _one_header_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in header value {value!r}")
    return value


def _set_text_header(mime: EmailMessage, name: str, value: str) -> None:
    value = _one_header_line(value)
    if value.isascii():
        mime[name] = value
    else:
        mime.set_raw(name, "\n ".join(encode_words(value)))


def _set_address(mime: EmailMessage, name: str, value: str) -> None:
    value = _one_header_line(value)
    display, address = parseaddr(value)
    if not address or "@" not in address:
        raise ValueError(f"{name}: not an email address: {value!r}")
    if display.isascii() or not address.isascii():
        mime[name] = formataddr((display, address)) if display.isascii() else value
        return
    # The first word shares its line with "<name>: "; an encoded word is at most 75 chars.
    word_chars = min(75, _MAX_LINE - len(name) - 2)
    lines = encode_words(display, 3 * ((word_chars - 12) // 4))
    last = f"{lines[-1]} <{address}>"
    room = _MAX_LINE - (len(name) + 2 if len(lines) == 1 else 1)
    if len(last) <= room:
        lines[-1] = last
    else:
        lines.append(f"<{address}>")
    mime.set_raw(name, "\n ".join(lines))


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: a Date header needs a zone")
    return value


def _split_content_type(content_type: str) -> tuple[str, str, dict[str, str]]:
    kind, *rest = [part.strip() for part in content_type.split(";")]
    maintype, _, subtype = kind.partition("/")
    if not maintype or not subtype:
        raise ValueError(f"bad content type {content_type!r}")
    params = {}
    for part in rest:
        if part:
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
    return maintype.lower(), subtype.lower(), params


# ------------------------------------------------------------------------- MIME, written directly
#
# ``build_mime`` + ``as_bytes(policy=SMTP)`` costs several milliseconds a message: the email
# package parses every header it is given back into a tree, then refolds it, and builds a
# part object per body. The writer below produces the same bytes from strings: the layout is
# fixed (multipart/alternative of text and HTML, in multipart/mixed with one part per
# attachment), the bodies are base64 and the headers are either encoded here (subject,
# addresses, Message-ID) or taken once from the email package and cached (From, Date).
# tests/core/test_mime_writer.py checks the bytes against ``build_mime`` for many messages.

_SMTP = email.policy.SMTP
_CRLF = "\r\n"
_B64_LINE = 76  # email.policy's max_line_length 78 → 57 bytes → 76 base64 characters a line
_BOUNDARY_DIGITS = 19  # as email.generator: "=" * 15 + 19 digits + "=="
# A local part and domain of dot-atoms (RFC 5322 §3.2.3) the email package writes back as is.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
_PLAIN_MESSAGE_ID = re.compile(r"<[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>\Z")
# Parameter names and values (file names included) the email package writes as key="value".
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9._+-]+\Z")


class _NeedsEmailPackage(Exception):
    """The fast writer cannot promise the email package's exact bytes for this message."""


def mime_boundaries(message_id: str) -> tuple[str, str]:
    """(outer, inner) multipart boundaries for a message, derived from its Message-ID.

    Same shape as the email package's random ones; every body part is base64, whose
    alphabet has no "-", so a boundary line can never occur inside a part.
    """
    digest = hashlib.sha256(message_id.encode("utf-8")).digest()
    outer = int.from_bytes(digest[:16], "big") % 10**_BOUNDARY_DIGITS
    inner = int.from_bytes(digest[16:], "big") % 10**_BOUNDARY_DIGITS
    if inner == outer:
        inner = (inner + 1) % 10**_BOUNDARY_DIGITS
    return tuple(f"{'=' * 15}{n:0{_BOUNDARY_DIGITS}d}==" for n in (outer, inner))  # type: ignore[return-value]


def render_mime(
    msg: ComposedMessage, *, sender: str, recipient: str, message_id: str, date: datetime
) -> bytes:
    """The message as the outbox stores and sends it: CRLF lines, 7-bit, RFC 5322/MIME.

    Byte for byte what ``build_mime(...)`` serialised with ``email.policy.SMTP`` gives when its
    boundaries are ``mime_boundaries(message_id)``; raises what ``build_mime`` raises.
    """
    try:
        return _write_mime(msg, sender, recipient, message_id, date)
    except _NeedsEmailPackage:
        return legacy_mime_bytes(msg, sender=sender, recipient=recipient, message_id=message_id, date=date)


def legacy_mime_bytes(
    msg: ComposedMessage, *, sender: str, recipient: str, message_id: str, date: datetime
) -> bytes:
    """``build_mime`` serialised by the email package, with ``mime_boundaries(message_id)``:
    the reference ``render_mime`` is checked against, and its path for unusual messages."""
    mime = build_mime(msg, sender=sender, recipient=recipient, message_id=message_id, date=date)
    outer, inner = mime_boundaries(message_id)
    if mime.get_content_type() == "multipart/mixed":
        mime.set_boundary(outer)
        mime.get_payload()[0].set_boundary(inner)
    else:
        mime.set_boundary(inner)
    return mime.as_bytes(policy=_SMTP)


def _write_mime(msg: ComposedMessage, sender: str, recipient: str, message_id: str, date: datetime) -> bytes:
    subject = _one_header_line(msg.subject)
    outer, inner = mime_boundaries(message_id)
    head = [
        _cached_header("From", sender),
        _to_header(recipient),
        _subject_header(subject),
        _cached_header("Date", format_datetime(_aware(date))),
        _message_id_header(message_id),
        "Auto-Submitted: auto-generated\r\n",
        "MIME-Version: 1.0\r\n",
    ]
    alternative_type = _param_header("Content-Type", "multipart/alternative", (("boundary", inner),))
    text_part = (
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + _base64_text(msg.text)
    )
    html_part = (
        'Content-Type: text/html; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "MIME-Version: 1.0\r\n\r\n" + _base64_text(msg.html)
    )
    alternative_body = f"--{inner}\r\n{text_part}\r\n--{inner}\r\n{html_part}\r\n--{inner}--\r\n"
    if not msg.attachments:
        head.append(alternative_type)
        return ("".join(head) + _CRLF + alternative_body).encode("ascii")
    head.append(_param_header("Content-Type", "multipart/mixed", (("boundary", outer),)))
    out = ["".join(head), _CRLF, f"--{outer}\r\n", alternative_type, _CRLF, alternative_body]
    for attachment in msg.attachments:
        out.append(f"\r\n--{outer}\r\n")
        out.append(_attachment_part(attachment))
    out.append(f"\r\n--{outer}--\r\n")
    return "".join(out).encode("ascii")


def _base64_text(text: str) -> str:
    """A text body as the email package encodes it: lines rejoined with LF, base64, CRLF."""
    data = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    return _base64_lines(data)


def _base64_lines(data: bytes) -> str:
    encoded = binascii.b2a_base64(data, newline=False).decode("ascii")
    if not encoded:
        return ""
    return _CRLF.join([encoded[i : i + _B64_LINE] for i in range(0, len(encoded), _B64_LINE)]) + _CRLF


def _attachment_part(attachment: Attachment) -> str:
    maintype, subtype, params = _split_content_type(attachment.content_type)
    if maintype == "text":
        params.setdefault("charset", "utf-8")
    if maintype == "multipart" or (maintype, subtype) == ("message", "rfc822"):
        raise _NeedsEmailPackage  # the email package refuses or nests these
    filename = attachment.filename
    if not _PLAIN_TOKEN.match(filename) or not all(
        _PLAIN_TOKEN.match(k) and _PLAIN_TOKEN.match(v) for k, v in params.items()
    ):
        raise _NeedsEmailPackage
    disposition = _param_header("Content-Disposition", "attachment", (("filename", filename),))
    content_type = _param_header("Content-Type", f"{maintype}/{subtype}", tuple(params.items()))
    headers = (
        # set_param moves Content-Type after the headers set since; without params it stays first
        "Content-Transfer-Encoding: base64\r\n" + disposition + content_type
        if params
        else content_type + "Content-Transfer-Encoding: base64\r\n" + disposition
    )
    return headers + "MIME-Version: 1.0\r\n\r\n" + _base64_lines(attachment.data)


def _param_header(name: str, value: str, params: tuple[tuple[str, str], ...]) -> str:
    """``name: value; key="v"; …`` as the email package writes it: on one line when it fits in
    78 characters; a single parameter that does not fit goes alone on the next line when that
    line stays under 78. Anything longer the email package splits (RFC 2231): not here."""
    line = f"{name}: {value}" + "".join(f'; {key}="{val}"' for key, val in params)
    if len(line) <= _MAX_LINE:
        return line + _CRLF
    if len(params) == 1:
        key, val = params[0]
        continuation = f' {key}="{val}"'
        if len(continuation) < _MAX_LINE:
            return f"{name}: {value};\r\n{continuation}\r\n"
    raise _NeedsEmailPackage


def _subject_header(subject: str) -> str:
    if subject.isascii():
        return _cached_header("Subject", subject)
    lines = encode_words(subject)
    if len(lines[0]) + len("Subject: ") > _MAX_LINE or any(len(line) + 1 > _MAX_LINE for line in lines[1:]):
        raise _NeedsEmailPackage  # cannot happen with the default word size
    return "Subject: " + "\r\n ".join(lines) + _CRLF


def _to_header(recipient: str) -> str:
    value = _one_header_line(recipient)
    if _PLAIN_ADDRESS.match(value) and len(value) + len("To: ") <= _MAX_LINE:
        return f"To: {value}\r\n"
    return _cached_header("To", value)


def _message_id_header(message_id: str) -> str:
    if _PLAIN_MESSAGE_ID.match(message_id) and len(message_id) + len("Message-ID: ") <= _MAX_LINE:
        return f"Message-ID: {message_id}\r\n"
    return _email_package_header("Message-ID", message_id)


@lru_cache(maxsize=1024)
def _cached_header(name: str, value: str) -> str:
    """A header exactly as ``build_mime`` writes it; the sender and the Date repeat all day."""
    return _email_package_header(name, value)


def _email_package_header(name: str, value: str) -> str:
    part = MIMEPart(policy=email.policy.default)
    if name in ("From", "To"):
        _set_address(part, name, value)  # type: ignore[arg-type]
    elif name == "Subject":
        _set_text_header(part, name, value)  # type: ignore[arg-type]
    else:
        part[name] = _one_header_line(value)
    ((key, stored),) = part.raw_items()
    return _SMTP.fold_binary(key, stored).decode("ascii")
