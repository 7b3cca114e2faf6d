"""Generated documents, in the Vietnamese administrative format. Pure: values in, bytes out.

Four documents: the statistics table (XLSX, ``statistics_xlsx``; with the member list as a
sheet of its own), the member classification list, the consolidated report and the dossier
index (DOCX: ``classification_list_docx``, ``consolidated_report_docx``,
``dossier_index_docx``), plus the checklist as XLSX (``checklist_xlsx``). Under a rule set
that scores members (366/43) both member lists have a "Điểm" column; other rule sets have
none. Every DOCX comes from a Jinja2 template in ``templates/documents/``
that renders to the small line markup below; ``markup_to_docx`` lays it out with python-docx
(A4, Times New Roman, the two-column letterhead as a borderless table, the date line in
italic on the right, "Nơi nhận" bottom left, the signature bottom right).

Each template declares its placeholders with sample values in ``DOCUMENT_TEMPLATES``;
``validate_templates`` renders every one with ``StrictUndefined`` against those samples.

Bytes are reproducible: the same values give the same bytes (fixed ZIP timestamps, document
properties dated by the document's own date), so a dossier rebuilt from unchanged inputs is
byte-identical.

The markup, one block per line::

    :header-left: text    letterhead, left column (superior body, issuing body, "*", number)
    :header-right: text   letterhead, right column ("ĐẢNG CỘNG SẢN VIỆT NAM")
    :date: text           place and date: italic, right-aligned, under the right column
    # text                title: centered, bold, 14pt
    #. text               subtitle: centered, bold
    ## text               heading (bold);  ### text: subheading (bold italic)
    - text                list item, kept with its dash as administrative texts write lists
    | a | b |             table row; a table's first row is its header; a row of only
                          ---, :-:, --: cells sets the columns' alignment
    :note: text           centered italic line
    :recipients: text     "Nơi nhận:" caption (bottom left); :to: text is one recipient line
    :sign: text           signature caption line (bottom right, bold); :signer: the name
    other text            paragraph; consecutive lines join, a blank line ends it

Inline: ``**bold**``, ``__italic__``, ``++underline++``; a backslash makes the next
character literal. The environment escapes every ``{{ value }}`` (``escape_markup``), so
names and messages from data never turn into markup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docx
import openpyxl
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, meta
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter

from kiemdiem.calendar import format_instant
from kiemdiem.catalogue import LEVELS, UNIT_KINDS
from kiemdiem.consolidation import in_usual_order
from kiemdiem.settings import templates_dir
from kiemdiem.tabular import format_decimal

FONT = "Times New Roman"
BODY_PT = 14
TABLE_PT = 13
# A4 with the margins of the party's document format (Hướng dẫn 36-HD/VPTW): text is 16 cm wide.
PAGE_WIDTH_CM, PAGE_HEIGHT_CM = 21.0, 29.7
MARGINS_CM = {"top": 2.0, "bottom": 2.0, "left": 3.0, "right": 2.0}
TEXT_WIDTH_CM = PAGE_WIDTH_CM - MARGINS_CM["left"] - MARGINS_CM["right"]
# Fixed ZIP entry time: the earliest a ZIP can hold, so no wall clock leaks into the bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
PARTY = "ĐẢNG CỘNG SẢN VIỆT NAM"
BLANK_PLACE = "……"  # the form's dotted blank, when the plan names no place

NOT_EVALUATED_NAMES = {
    "exempt": "Miễn công tác và sinh hoạt đảng",
    "suspended": "Đình chỉ sinh hoạt đảng",
    "new_member": "Mới kết nạp dưới 6 tháng",
}
QUOTA_STATUS_NAMES = {
    "ok": "bảo đảm tỷ lệ quy định",
    "breach": "vượt tỷ lệ quy định",
    "overridden": "vượt tỷ lệ quy định, đã được cấp có thẩm quyền chấp thuận",
    "n/a": "không áp dụng",
}
SEVERITY_NAMES = {"error": "Vi phạm", "warning": "Lưu ý", "info": "Thông tin"}


# ------------------------------------------------------------------------------ letterhead


@dataclass(frozen=True)
class Signature:
    on_behalf: str  # "T/M ĐẢNG ỦY"
    title: str  # "PHÓ BÍ THƯ"
    name: str


@dataclass(frozen=True)
class Letterhead:
    """Who issues a document, its number and date, who receives it, who signs it."""

    issuer: str  # "Đảng ủy Sở Công Thương"
    superior: str | None  # the body above the issuer, shown over it
    number: str  # "187-KH/ĐU"; shown as "Số 187-KH/ĐU"
    place: str | None
    issued_on: dt.date
    recipients: tuple[str, ...]
    signature: Signature

    def view(self) -> dict:
        return {
            "superior": self.superior.upper() if self.superior else None,
            "issuer": self.issuer.upper(),
            "issuer_name": self.issuer,
            "number": self.number,
            "date_line": date_line(self.place, self.issued_on),
            "recipients": list(self.recipients),
            "on_behalf": self.signature.on_behalf,
            "signer_title": self.signature.title,
            "signer_name": self.signature.name,
        }


def date_line(place: str | None, day: dt.date) -> str:
    """"Hà Tĩnh, ngày 05 tháng 12 năm 2023"; the dotted blank when the place is unknown."""
    return f"{place or BLANK_PLACE}, ngày {day.day:02d} tháng {day.month:02d} năm {day.year:04d}"


# ------------------------------------------------------------------------ declared templates


@dataclass(frozen=True)
class Placeholder:
    name: str
    description: str
    sample: Any


@dataclass(frozen=True)
class DocumentTemplate:
    name: str
    description: str
    placeholders: tuple[Placeholder, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.j2"

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.placeholders)

    def samples(self) -> dict[str, Any]:
        return {p.name: p.sample for p in self.placeholders}


SAMPLE_LETTERHEAD = Letterhead(
    issuer="Đảng ủy Sở Công Thương",
    superior="Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh",
    number="187-KH/ĐU",
    place=None,
    issued_on=dt.date(2023, 12, 5),
    recipients=("Đảng bộ Khối CCQ và DN tỉnh (B/c)", "Các đ/c Đảng ủy viên", "Lưu ĐU"),
    signature=Signature("T/M ĐẢNG ỦY", "PHÓ BÍ THƯ", "Lê Xuân Tiến"),
)


def _sample_levels(counts: Sequence[int], total: int) -> dict:
    return {lv: {"count": c, "percent": round(100.0 * c / total, 1) if total else 0.0} for lv, c in zip(LEVELS, counts)}


# One unit's consolidation, in the shape consolidation.UnitSummary.to_dict() produces.
SAMPLE_SUMMARY: dict = {
    "unit": {"code": "SCT", "name": "Đảng bộ Sở Công Thương", "kind": "dang_bo_co_so", "parent": None},
    "members": {
        "total": 48,
        "evaluated": 44,
        "not_evaluated": {"exempt": 2, "suspended": 1, "new_member": 1},
        "classified": 42,
        "missing": 2,
        "levels": _sample_levels((5, 30, 6, 1), 44),
        "htxsnv_over_httnv_percent": 16.7,
        "quota": {"scope": "base_organization", "htxsnv": 5, "httnv": 30, "max_allowed": 6, "status": "ok"},
    },
    "organizations": {
        "total": 3,
        "classified": 2,
        "missing": 1,
        "levels": _sample_levels((0, 2, 0, 0), 3),
        "quota": {"scope": "committee", "htxsnv": 0, "httnv": 2, "max_allowed": 0, "status": "ok"},
    },
    "missing_results": {
        "members": [{"member_id": "DV005", "full_name": "Phạm Minh Đức", "unit_code": "VP2"}],
        "organizations": ["KC"],
    },
    "findings": [
        {
            "key": "head_above_unit:VP1:DV001",
            "rule": "head_above_unit",
            "severity": "error",
            "unit_code": "VP1",
            "member_id": "DV001",
            "message": "Bí thư chi bộ được xếp loại HTXSNV cao hơn mức xếp loại của chi bộ (HTTNV).",
            "regulation": "Quy định 124-QĐ/TW, Điều 10",
            "overridden": None,
        },
        {
            "key": "member_cap:VP2:",
            "rule": "member_cap",
            "severity": "error",
            "unit_code": "VP2",
            "member_id": None,
            "message": "Số đảng viên HTXSNV (3) vượt 20% số HTTNV (10): tối đa 2.",
            "regulation": "Hướng dẫn 25-HD/BTCTW, Mục 3",
            "overridden": {"by": "Thường trực Đảng ủy", "reason": "Đã xem xét thành tích đặc biệt", "at": "2023-12-07T09:00:00+07:00"},
        },
    ],
    "children": ["KC", "VP1", "VP2"],
}
SAMPLE_UNIT_NAMES = {"SCT": "Đảng bộ Sở Công Thương", "VP1": "Chi bộ Văn phòng 1", "VP2": "Chi bộ Văn phòng 2", "KC": "Chi bộ Khuyến công"}
SAMPLE_ROWS = [
    {"member_id": "DV001", "full_name": "Nguyễn Sỹ Chín", "unit_name": "Chi bộ Văn phòng 1", "self_level": "HTXSNV", "proposed_level": "HTXSNV", "final_level": "HTTNV", "note": ""},
    {"member_id": "DV002", "full_name": "Trần Thị Hoa", "unit_name": "Chi bộ Văn phòng 1", "self_level": "HTTNV", "proposed_level": "HTTNV", "final_level": "HTTNV", "note": ""},
    {"member_id": "DV003", "full_name": "Lê Văn Nam", "unit_name": "Chi bộ Văn phòng 1", "self_level": None, "proposed_level": None, "final_level": None, "note": "Miễn công tác và sinh hoạt đảng"},
]
# The same under rule set 366/43, where members are scored out of 100.
SAMPLE_SCORED_ROWS = [row | {"score": score} for row, score in zip(SAMPLE_ROWS, (91.5, 85.0, None))]


def report_view(summary: Mapping, *, year: int, plan_number: str, unit_names: Mapping[str, str] | None = None,
                subtree: Mapping[str, Mapping] | None = None, plan_issuer: str | None = None) -> dict:
    """What the consolidated report template reads: the summary, with names and rows resolved.
    ``subtree``: the summaries of the units below, by code: an organization without a decided level
    that assessed itself is awaiting its committee's decision, not late with its results."""
    names = dict(unit_names or {})
    subtree = subtree or {}
    awaiting, missing_orgs = [], []
    for code in summary["missing_results"]["organizations"]:
        proposed = (((subtree.get(code) or {}).get("unit") or {}).get("result") or {}).get("self_level")
        if proposed:
            awaiting.append({"code": code, "name": names.get(code, code), "self_level": proposed, "self_level_name": LEVELS.get(proposed, "")})
        else:
            missing_orgs.append({"code": code, "name": names.get(code, code)})
    unit = summary["unit"]
    names.setdefault(unit["code"], unit["name"])
    members, orgs = in_usual_order(summary)["members"], summary["organizations"]
    own = unit.get("result") or {}
    org_quota = orgs["quota"]
    return {
        "year": year,
        "plan_number": plan_number,
        "plan_issuer": plan_issuer,
        "unit_name": unit["name"],
        "unit_kind": UNIT_KINDS.get(unit["kind"], unit["kind"]),
        "own_level": own.get("level"),
        "own_level_name": LEVELS.get(own.get("level") or "", ""),
        "own_self_level": own.get("self_level"),
        "own_self_level_name": LEVELS.get(own.get("self_level") or "", ""),
        "members": members,
        "member_levels": _level_rows(members["levels"]),
        "not_evaluated": [
            {"reason": r, "name": NOT_EVALUATED_NAMES.get(r, r), "count": n} for r, n in members["not_evaluated"].items()
        ],
        "not_evaluated_total": sum(members["not_evaluated"].values()),
        "member_quota_status": QUOTA_STATUS_NAMES.get(members["quota"]["status"], members["quota"]["status"]),
        "organizations": orgs,
        "org_levels": _level_rows(orgs["levels"]),
        "org_ratio": _ratio(org_quota["htxsnv"], org_quota["httnv"]),
        "org_quota_status": QUOTA_STATUS_NAMES.get(org_quota["status"], org_quota["status"]),
        "findings": [
            {
                "severity_name": SEVERITY_NAMES.get(f["severity"], f["severity"]),
                "unit_name": names.get(f["unit_code"], f["unit_code"]),
                "member_id": f.get("member_id"),
                "message": f["message"],
                "regulation": f["regulation"],
                "overridden": _override_view(f.get("overridden")),
            }
            for f in summary["findings"]
        ],
        "missing_members": [
            {"member_id": m["member_id"], "full_name": m["full_name"], "unit_name": names.get(m["unit_code"], m["unit_code"])}
            for m in summary["missing_results"]["members"]
        ],
        "missing_orgs": missing_orgs,
        "awaiting_orgs": awaiting,
    }


def _override_view(override: Mapping | None) -> dict | None:
    if not override:
        return None
    at = override.get("at")
    try:
        when = format_instant(dt.datetime.fromisoformat(at)) if at else ""
    except (TypeError, ValueError):
        when = str(at)  # not an ISO instant: show it as given rather than drop it
    return {"by": override.get("by", ""), "reason": override.get("reason", ""), "at": when}


def listing_view(rows: Sequence[Mapping], *, unit_name: str, year: int, scored: bool = False) -> dict:
    """What the classification list template reads: the rows plus the count per final level (of
    the members evaluated: a level given to someone not evaluated is not counted, as in the report).
    ``scored``: the plan's rule set scores members (366/43), so the list has a "Điểm" column."""
    counts = {lv: 0 for lv in LEVELS}
    not_evaluated = undecided = 0
    for row in rows:
        if not row.get("evaluated", True):
            not_evaluated += 1
        elif row.get("final_level") in counts:
            counts[row["final_level"]] += 1
        else:
            undecided += 1
    return {
        "unit_name": unit_name,
        "year": year,
        "scored": scored,
        "rows": [dict(row) | {"score_text": format_score(row.get("score"))} for row in rows],
        "level_counts": [{"code": lv, "name": LEVELS[lv], "count": counts[lv]} for lv in LEVELS],
        # With the levels, the total's other parts: the line adds up to the number of rows.
        "undecided": undecided,
        "not_evaluated": not_evaluated,
    }


def format_score(value: float | None) -> str:
    """85.5 -> "85,5", 90.0 -> "90" (Vietnamese decimal comma); None -> ""."""
    return "" if value is None else format_decimal(value)


def _level_rows(levels: Mapping) -> list[dict]:
    return [{"code": lv, "name": LEVELS[lv], "count": levels[lv]["count"], "percent": levels[lv]["percent"]} for lv in LEVELS]


def _ratio(htxsnv: int, httnv: int) -> float | None:
    return round(100.0 * htxsnv / httnv, 1) if httnv else None


SAMPLE_CHECKLIST: dict = {
    "plan": {"number": "187-KH/ĐU", "title": "Kiểm điểm, đánh giá, xếp loại chất lượng tổ chức đảng, đảng viên năm 2023", "issuer": "Đảng ủy Sở Công Thương", "year": 2023},
    "unit": {"code": "VP1", "name": "Chi bộ Văn phòng 1", "kind": "chi_bo_truc_thuoc", "kind_name": "Chi bộ trực thuộc", "parent": "SCT"},
    "phase": {
        "id": "chi_bo_kiem_diem",
        "name": "Chi bộ trực thuộc kiểm điểm, đánh giá, xếp loại và gửi hồ sơ",
        "deadline": "2023-12-05T23:59:59+07:00",
        "deadline_local": "05/12/2023 23:59",
        "reading": "“trước ngày 05/12/2023” được hiểu là: hạn cuối 23:59:59 thứ Ba, ngày 05/12/2023 (giờ Việt Nam, UTC+07:00)",
    },
    "past_deadline": True,
    "summary": {"state": "overdue", "state_name": "Quá hạn, còn thiếu", "required": 3, "present": 2, "late": 1, "missing": 1, "optional_present": 0, "files": 2, "last_received_at": "2023-12-06T09:00:00+07:00"},
    "items": [
        {"key": "VP1:chi_bo_kiem_diem:bien_ban_hoi_nghi:-", "doc_type": "bien_ban_hoi_nghi", "doc_name": "Biên bản hội nghị kiểm điểm, đánh giá, xếp loại", "member_id": None, "member_name": None, "required": True, "owed": True, "status": "present", "status_name": "Đã nộp", "status_detail": "Đã nộp đúng hạn (lần đầu 04/12/2023), nộp lại sau hạn 06/12/2023", "first_received_at": "2023-12-04T10:00:00+07:00", "first_on_time": True, "received_at": "2023-12-06T08:00:00+07:00", "received_local": "06/12/2023 08:00", "on_time": False, "timeliness": "Đúng hạn (lần đầu 04/12/2023), nộp lại sau hạn 06/12/2023", "versions": 2, "files": ["files/bien_ban_hoi_nghi/bien_ban.pdf"]},
        {"key": "VP1:chi_bo_kiem_diem:ban_kiem_diem_ca_nhan:DV001", "doc_type": "ban_kiem_diem_ca_nhan", "doc_name": "Bản kiểm điểm cá nhân", "member_id": "DV001", "member_name": "Nguyễn Sỹ Chín", "required": True, "owed": True, "status": "late", "status_name": "Đã nộp (trễ hạn)", "status_detail": "Đã nộp (trễ hạn)", "first_received_at": "2023-12-06T09:00:00+07:00", "first_on_time": False, "received_at": "2023-12-06T09:00:00+07:00", "received_local": "06/12/2023 09:00", "on_time": False, "timeliness": "Trễ hạn", "versions": 1, "files": ["files/ban_kiem_diem_ca_nhan/DV001/kiem_diem.pdf"]},
        {"key": "VP1:chi_bo_kiem_diem:ban_kiem_diem_ca_nhan:DV002", "doc_type": "ban_kiem_diem_ca_nhan", "doc_name": "Bản kiểm điểm cá nhân", "member_id": "DV002", "member_name": "Trần Thị Hoa", "required": True, "owed": True, "status": "missing", "status_name": "Chưa nộp (quá hạn)", "status_detail": "Chưa nộp (quá hạn)", "first_received_at": None, "first_on_time": None, "received_at": None, "received_local": None, "on_time": None, "timeliness": None, "versions": 0, "files": []},
    ],
}


DOCUMENT_TEMPLATES: dict[str, DocumentTemplate] = {
    t.name: t
    for t in (
        DocumentTemplate(
            "bao_cao_tong_hop",
            "Báo cáo tổng hợp kết quả đánh giá, xếp loại của một đơn vị (cây con của nó).",
            (
                Placeholder("letterhead", "Letterhead.view(): issuer, number, date line, recipients, signer", SAMPLE_LETTERHEAD.view()),
                Placeholder("report", "report_view() of the unit's consolidation summary", report_view(SAMPLE_SUMMARY, year=2023, plan_number="187-KH/ĐU", unit_names=SAMPLE_UNIT_NAMES)),
            ),
        ),
        DocumentTemplate(
            "danh_sach_xep_loai",
            "Danh sách đánh giá, xếp loại chất lượng đảng viên (tự xếp loại, đề xuất, quyết định).",
            (
                Placeholder("letterhead", "Letterhead.view()", SAMPLE_LETTERHEAD.view()),
                Placeholder("listing", "listing_view() of the member rows (scored: with the 366/43 score column)",
                            listing_view(SAMPLE_SCORED_ROWS, unit_name="Đảng bộ Sở Công Thương", year=2023, scored=True)),
            ),
        ),
        DocumentTemplate(
            "muc_luc_ho_so",
            "Mục lục hồ sơ: các văn bản của một đơn vị trong một giai đoạn và tình trạng từng văn bản.",
            (
                Placeholder("letterhead", "Letterhead.view()", SAMPLE_LETTERHEAD.view()),
                Placeholder("checklist", "the dossier checklist (dossier.Checklist.to_dict())", SAMPLE_CHECKLIST),
            ),
        ),
    )
}


# ------------------------------------------------------------------------------ rendering


_ESCAPED = re.compile(r"([\\|*_+])")
_LINE_MARKERS = ("#", "-", ":")


def escape_markup(value: Any) -> str:
    """Finalize for every {{ value }}: data is text, never markup (None prints as nothing)."""
    if value is None:
        return ""
    text = " ".join(str(value).splitlines())
    text = _ESCAPED.sub(r"\\\1", text)
    return "\\" + text if text.startswith(_LINE_MARKERS) else text


def format_percent(value: float | None) -> str:
    """12.5 -> "12,5%" (Vietnamese decimal comma); None -> "–"."""
    if value is None:
        return "–"
    return f"{value:.1f}".replace(".", ",") + "%"


def make_environment(directory: Path | None = None) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(directory or templates_dir() / "documents")),
        undefined=StrictUndefined,
        finalize=escape_markup,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # the markup is not HTML; escape_markup does the escaping
    )
    env.filters["pct"] = format_percent
    return env


def render_markup(name: str, context: Mapping[str, Any], directory: Path | None = None) -> str:
    """Render one declared template to markup; the context must match its declaration."""
    template = DOCUMENT_TEMPLATES[name]
    if set(context) != template.names:
        # The declaration and the code drifted apart: a programming error, caught by tests.
        raise ValueError(f"{name}: context {sorted(context)} differs from the declared placeholders {sorted(template.names)}")
    return make_environment(directory).get_template(template.filename).render(**context)


def validate_templates(directory: Path | None = None) -> list[str]:
    """Render every declared template against its samples; list what is wrong (empty: all well)."""
    directory = directory or templates_dir() / "documents"
    env = make_environment(directory)
    problems: list[str] = []
    for template in DOCUMENT_TEMPLATES.values():
        problems += _undeclared(env, template)
        try:
            text = env.get_template(template.filename).render(**template.samples())
            blocks = parse_markup(text)
        except (TemplateError, TypeError, ValueError, AttributeError, KeyError) as error:
            problems.append(f"{template.filename}: {type(error).__name__}: {error}")
            continue
        if not any(isinstance(b, Title) for b in blocks.body):
            problems.append(f"{template.filename}: no title (# …)")
    for path in sorted(directory.glob("*.j2")):
        if not path.name.startswith("_") and path.stem not in DOCUMENT_TEMPLATES:
            problems.append(f"{path.name}: no declaration in DOCUMENT_TEMPLATES")
    return problems


def _undeclared(env: Environment, template: DocumentTemplate) -> list[str]:
    problems: list[str] = []
    pending, seen = [template.filename], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            ast = env.parse(env.loader.get_source(env, current)[0])  # type: ignore[union-attr]
        except TemplateError as error:
            problems.append(f"{current}: {type(error).__name__}: {error}")
            continue
        unknown = meta.find_undeclared_variables(ast) - template.names - set(env.globals)
        problems += [f"{current} (from {template.filename}): uses undeclared variable '{v}'" for v in sorted(unknown)]
        pending += [t for t in meta.find_referenced_templates(ast) if t]
    return problems


def templates_digest(directory: Path | None = None) -> str:
    """sha256 over the document templates and the library versions: part of a dossier's inputs."""
    directory = directory or templates_dir() / "documents"
    digest = hashlib.sha256(f"python-docx {docx.__version__}; openpyxl {openpyxl.__version__}\n".encode())
    for path in sorted(directory.glob("*.j2")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# ------------------------------------------------------------------------- markup parsing


@dataclass(frozen=True)
class Title:
    text: str


@dataclass(frozen=True)
class Subtitle:
    text: str


@dataclass(frozen=True)
class Heading:
    text: str
    level: int  # 2 or 3


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class ListItem:
    text: str


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Table:
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...]  # per column: left | center | right


@dataclass
class ParsedMarkup:
    header_left: list[str]
    header_right: list[str]
    date: str | None
    body: list
    recipients_caption: str | None
    recipients: list[str]
    sign_lines: list[str]
    signer: str | None


_DIRECTIVE = re.compile(r"^:([a-z-]+):(?: (.*))?$")
_DIRECTIVES = {"header-left", "header-right", "date", "note", "recipients", "to", "sign", "signer"}
_ALIGN_CELL = re.compile(r"^:?-+:?$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def parse_markup(text: str) -> ParsedMarkup:
    """Blocks of the markup (see the module docstring); unknown directives are an error."""
    parsed = ParsedMarkup([], [], None, [], None, [], [], None)
    paragraph: list[str] = []
    table: list[tuple[str, ...]] = []

    def flush() -> None:
        if paragraph:
            parsed.body.append(Paragraph(" ".join(paragraph)))
            paragraph.clear()
        if table:
            parsed.body.append(_make_table(table))
            table.clear()

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("|"):
            if paragraph:
                parsed.body.append(Paragraph(" ".join(paragraph)))
                paragraph.clear()
            table.append(_split_row(line))
            continue
        if table:
            parsed.body.append(_make_table(table))
            table.clear()
        if not line:
            flush()
            continue
        directive = _DIRECTIVE.match(line)
        if directive:
            flush()
            name, value = directive.group(1), directive.group(2) or ""
            if name not in _DIRECTIVES:
                raise ValueError(f"dòng {number}: chỉ thị không hỗ trợ ':{name}:'")
            _apply_directive(parsed, name, value)
        elif line.startswith("### "):
            flush()
            parsed.body.append(Heading(line[4:], 3))
        elif line.startswith("## "):
            flush()
            parsed.body.append(Heading(line[3:], 2))
        elif line.startswith("#. "):
            flush()
            parsed.body.append(Subtitle(line[3:]))
        elif line.startswith("# "):
            flush()
            parsed.body.append(Title(line[2:]))
        elif line.startswith("- "):
            flush()
            parsed.body.append(ListItem(line))
        else:
            paragraph.append(line)
    flush()
    return parsed


def _apply_directive(parsed: ParsedMarkup, name: str, value: str) -> None:
    if name == "header-left":
        parsed.header_left.append(value)
    elif name == "header-right":
        parsed.header_right.append(value)
    elif name == "date":
        parsed.date = value
    elif name == "note":
        parsed.body.append(Note(value))
    elif name == "recipients":
        parsed.recipients_caption = value
    elif name == "to":
        parsed.recipients.append(value)
    elif name == "sign":
        parsed.sign_lines.append(value)
    elif name == "signer":
        parsed.signer = value


def _split_row(line: str) -> tuple[str, ...]:
    inner = line[1:-1] if line.endswith("|") and not line.endswith("\\|") and len(line) > 1 else line[1:]
    return tuple(cell.strip() for cell in _CELL_SPLIT.split(inner))


def _make_table(rows: list[tuple[str, ...]]) -> Table:
    width = max(len(r) for r in rows)
    align = ["left"] * width
    body = []
    for row in rows:
        if row and all(_ALIGN_CELL.match(c) for c in row):
            for i, cell in enumerate(row):
                align[i] = "center" if cell.startswith(":") and cell.endswith(":") else "right" if cell.endswith(":") else "left"
            continue
        body.append(row + ("",) * (width - len(row)))
    return Table(tuple(body), tuple(align))


def inline_runs(text: str) -> list[tuple[str, bool, bool, bool]]:
    """Split inline markup into runs of (text, bold, italic, underline)."""
    runs: list[tuple[str, bool, bool, bool]] = []
    bold = italic = underline = False
    buffer: list[str] = []

    def emit() -> None:
        if buffer:
            runs.append(("".join(buffer), bold, italic, underline))
            buffer.clear()

    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if text[i] == "\\" and i + 1 < len(text):
            buffer.append(text[i + 1])
            i += 2
        elif pair in ("**", "__", "++"):
            emit()
            if pair == "**":
                bold = not bold
            elif pair == "__":
                italic = not italic
            else:
                underline = not underline
            i += 2
        else:
            buffer.append(text[i])
            i += 1
    emit()
    return runs


def plain_text(text: str) -> str:
    """The text of inline markup without its marks."""
    return "".join(run[0] for run in inline_runs(text))


# -------------------------------------------------------------------------- DOCX layout


_ALIGN = {"left": WD_ALIGN_PARAGRAPH.LEFT, "center": WD_ALIGN_PARAGRAPH.CENTER, "right": WD_ALIGN_PARAGRAPH.RIGHT}


def markup_to_docx(text: str, *, issued_on: dt.date, title: str) -> bytes:
    """Lay out rendered markup as a DOCX in the administrative format; reproducible bytes."""
    parsed = parse_markup(text)
    document = docx.Document()
    width_cm = _setup_page(document)
    if parsed.header_left or parsed.header_right or parsed.date:
        _letterhead(document, parsed, width_cm)
    for block in parsed.body:
        _add_block(document, block, width_cm)
    if parsed.recipients or parsed.sign_lines or parsed.signer:
        _closing(document, parsed, width_cm)
    stamp = dt.datetime(issued_on.year, issued_on.month, issued_on.day, tzinfo=dt.timezone.utc)
    props = document.core_properties
    props.title = title
    props.author = "kiemdiem"
    props.last_modified_by = "kiemdiem"
    props.comments = ""
    props.revision = 1
    props.created = stamp
    props.modified = stamp
    buffer = io.BytesIO()
    document.save(buffer)
    return reproducible_ooxml(buffer.getvalue(), stamp)


def _setup_page(document) -> float:
    section = document.sections[0]
    section.page_width, section.page_height = Cm(PAGE_WIDTH_CM), Cm(PAGE_HEIGHT_CM)
    section.top_margin = Cm(MARGINS_CM["top"])
    section.bottom_margin = Cm(MARGINS_CM["bottom"])
    section.left_margin = Cm(MARGINS_CM["left"])
    section.right_margin = Cm(MARGINS_CM["right"])
    normal = document.styles["Normal"]
    normal.font.name = FONT
    normal.font.size = Pt(BODY_PT)
    fonts = normal.element.get_or_add_rPr().get_or_add_rFonts()
    for attribute in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attribute), FONT)
    normal.paragraph_format.space_after = Pt(0)
    normal.paragraph_format.space_before = Pt(0)
    normal.paragraph_format.line_spacing = 1.15
    return TEXT_WIDTH_CM


def _add_runs(paragraph, text: str, *, size: float | None = None, bold: bool = False, italic: bool = False) -> None:
    for chunk, b, i, u in inline_runs(text):
        run = paragraph.add_run(chunk)
        run.bold = bold or b or None
        run.italic = italic or i or None
        if u:
            run.underline = True
        if size:
            run.font.size = Pt(size)


def _paragraph(container, text: str, *, align: str = "left", size: float | None = None, bold: bool = False,
               italic: bool = False, indent_cm: float = 0.0, before: float = 0, after: float = 0):
    paragraph = container.add_paragraph()
    paragraph.alignment = WD_ALIGN_PARAGRAPH.JUSTIFY if align == "justify" else _ALIGN[align]
    fmt = paragraph.paragraph_format
    if indent_cm:
        fmt.first_line_indent = Cm(indent_cm)
    fmt.space_before = Pt(before)
    fmt.space_after = Pt(after)
    _add_runs(paragraph, text, size=size, bold=bold, italic=italic)
    return paragraph


def _cell_paragraph(cell, text: str, *, align: str, size: float, bold: bool = False, italic: bool = False, first: bool = True):
    paragraph = cell.paragraphs[0] if first else cell.add_paragraph()
    paragraph.alignment = _ALIGN[align]
    _add_runs(paragraph, text, size=size, bold=bold, italic=italic)
    return paragraph


def _borderless(table) -> None:
    properties = table._tbl.tblPr
    borders = OxmlElement("w:tblBorders")
    for edge in ("top", "left", "bottom", "right", "insideH", "insideV"):
        element = OxmlElement(f"w:{edge}")
        element.set(qn("w:val"), "nil")
        borders.append(element)
    properties.append(borders)


def _two_columns(document, left_cm: float, right_cm: float):
    table = document.add_table(rows=0, cols=2)
    _borderless(table)
    table.autofit = False
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.columns[0].width = Cm(left_cm)
    table.columns[1].width = Cm(right_cm)
    return table, table.add_row().cells


def _letterhead(document, parsed: ParsedMarkup, width_cm: float) -> None:
    left_cm = 7.0
    _, (left, right) = _two_columns(document, left_cm, width_cm - left_cm)
    for n, line in enumerate(parsed.header_left or [""]):
        _cell_paragraph(left, line, align="center", size=TABLE_PT, first=n == 0)
    for n, line in enumerate(parsed.header_right or [""]):
        _cell_paragraph(right, line, align="center", size=TABLE_PT, first=n == 0)
    if parsed.date is not None:
        # Two lines down, level with the number on the left, as the format places it.
        spacer = max(len(parsed.header_left) - len(parsed.header_right) - 1, 1)
        for _ in range(spacer):
            _cell_paragraph(right, "", align="right", size=TABLE_PT, first=False)
        _cell_paragraph(right, parsed.date, align="right", size=BODY_PT, italic=True, first=False)
    document.add_paragraph()


def _add_block(document, block, width_cm: float) -> None:
    if isinstance(block, Title):
        _paragraph(document, block.text, align="center", size=BODY_PT, bold=True, before=12)
    elif isinstance(block, Subtitle):
        _paragraph(document, block.text, align="center", size=BODY_PT, bold=True, after=6)
    elif isinstance(block, Heading):
        _paragraph(document, block.text, align="justify", size=BODY_PT, bold=True, italic=block.level == 3, indent_cm=1.0, before=6, after=3)
    elif isinstance(block, Paragraph):
        _paragraph(document, block.text, align="justify", size=BODY_PT, indent_cm=1.0, after=6)
    elif isinstance(block, ListItem):
        _paragraph(document, block.text, align="justify", size=BODY_PT, indent_cm=1.0, after=3)
    elif isinstance(block, Note):
        _paragraph(document, block.text, align="center", size=BODY_PT, italic=True, after=6)
    elif isinstance(block, Table):
        _data_table(document, block, width_cm)


def _data_table(document, block: Table, width_cm: float) -> None:
    columns = len(block.align)
    table = document.add_table(rows=0, cols=columns)
    table.style = document.styles["Table Grid"]
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.autofit = False
    for column, width in zip(table.columns, _column_widths(block, width_cm)):
        column.width = Cm(width)
    for n, values in enumerate(block.rows):
        row = table.add_row()
        if n == 0:
            # Repeat the header row on every page of a long list.
            header = OxmlElement("w:tblHeader")
            header.set(qn("w:val"), "true")
            row._tr.get_or_add_trPr().append(header)
        for cell, value, align in zip(row.cells, values, block.align):
            _cell_paragraph(cell, value, align="center" if n == 0 else align, size=TABLE_PT - 1 if columns > 5 else TABLE_PT, bold=n == 0)
    document.add_paragraph()


def _column_widths(block: Table, width_cm: float) -> list[float]:
    """Share the text width by each column's longest text, within bounds, so STT stays narrow."""
    weights = []
    for i in range(len(block.align)):
        longest = max((len(plain_text(row[i])) for row in block.rows), default=1)
        weights.append(min(max(longest, 3), 28))
    total = sum(weights)
    return [width_cm * w / total for w in weights]


def _closing(document, parsed: ParsedMarkup, width_cm: float) -> None:
    left_cm = 7.5
    _, (left, right) = _two_columns(document, left_cm, width_cm - left_cm)
    _cell_paragraph(left, parsed.recipients_caption or "", align="left", size=12, bold=True, italic=True)
    for line in parsed.recipients:
        _cell_paragraph(left, line, align="left", size=11, first=False)
    for n, line in enumerate(parsed.sign_lines or [""]):
        _cell_paragraph(right, line, align="center", size=BODY_PT, bold=True, first=n == 0)
    if parsed.signer is not None:
        for _ in range(3):  # room for the signature and the seal
            _cell_paragraph(right, "", align="center", size=BODY_PT, first=False)
        _cell_paragraph(right, parsed.signer, align="center", size=BODY_PT, bold=True, first=False)


def docx_text(data: bytes) -> str:
    """All text of a DOCX in reading order, one line per paragraph (table cells included): for checks."""
    document = docx.Document(io.BytesIO(data))
    lines: list[str] = []
    for element in document.element.body.iterchildren():
        if element.tag == qn("w:p"):
            lines.append("".join(t.text or "" for t in element.iter(qn("w:t"))))
        elif element.tag == qn("w:tbl"):
            for paragraph in element.iter(qn("w:p")):
                lines.append("".join(t.text or "" for t in paragraph.iter(qn("w:t"))))
    return "\n".join(lines)


# ------------------------------------------------------------------------ reproducibility


_CORE_DATES = re.compile(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)")


def reproducible_ooxml(data: bytes, stamp: dt.datetime) -> bytes:
    """Rewrite an OOXML package with fixed entry times and document dates: same content, same bytes."""
    iso = stamp.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = _CORE_DATES.sub(lambda m: m.group(1) + iso + m.group(3), content)
            entry = zipfile.ZipInfo(info.filename, ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            entry.create_system = 3
            target.writestr(entry, content, compresslevel=6)
    return out.getvalue()


# --------------------------------------------------------------------------- the documents


def consolidated_report_docx(letterhead: Letterhead, summary: Mapping, *, year: int, plan_number: str,
                             unit_names: Mapping[str, str] | None = None, subtree: Mapping[str, Mapping] | None = None,
                             plan_issuer: str | None = None) -> bytes:
    """The consolidated report (báo cáo tổng hợp) of one unit's consolidation summary."""
    context = {"letterhead": letterhead.view(),
               "report": report_view(summary, year=year, plan_number=plan_number, unit_names=unit_names, subtree=subtree,
                                     plan_issuer=plan_issuer)}
    markup = render_markup("bao_cao_tong_hop", context)
    return markup_to_docx(markup, issued_on=letterhead.issued_on, title=f"Báo cáo tổng hợp kết quả xếp loại năm {year}")


def classification_list_docx(letterhead: Letterhead, rows: Sequence[Mapping], *, unit_name: str, year: int, scored: bool = False) -> bytes:
    """The member classification list; rows: member_id, full_name, unit_name, self_level, proposed_level, final_level,
    note, and score; ``scored`` (rule set 366/43) adds the "Điểm" column."""
    context = {"letterhead": letterhead.view(), "listing": listing_view(rows, unit_name=unit_name, year=year, scored=scored)}
    markup = render_markup("danh_sach_xep_loai", context)
    return markup_to_docx(markup, issued_on=letterhead.issued_on, title=f"Danh sách xếp loại đảng viên năm {year}")


def dossier_index_docx(letterhead: Letterhead, checklist: Mapping) -> bytes:
    """The dossier index (mục lục hồ sơ): every item of the checklist with its state."""
    markup = render_markup("muc_luc_ho_so", {"letterhead": letterhead.view(), "checklist": dict(checklist)})
    return markup_to_docx(markup, issued_on=letterhead.issued_on, title="Mục lục hồ sơ")


# --------------------------------------------------------------------------------- XLSX


_THIN = Side(style="thin", color="000000")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_HEAD_FILL = PatternFill("solid", fgColor="DDE4EE")
_WRAP_CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)

MEMBER_SHEET = "Đảng viên"
ORG_SHEET = "Tổ chức đảng"
LIST_SHEET = "Danh sách xếp loại"
CHECKLIST_SHEET = "Danh mục hồ sơ"


def _quota_text(quota: Mapping) -> str:
    status = quota["status"]
    if status == "n/a":
        return "Không áp dụng"
    name = {"ok": "Bảo đảm", "breach": "Vượt", "overridden": "Vượt (đã chấp thuận)"}.get(status, status)
    return f"{name} ({quota['htxsnv']}/{quota['max_allowed']})"


def _member_row(summary: Mapping) -> list:
    m = summary["members"]
    ne = m["not_evaluated"]
    row = [summary["unit"]["code"], summary["unit"]["name"], m["total"], m["evaluated"],
           ne.get("exempt", 0), ne.get("suspended", 0), ne.get("new_member", 0), m["classified"], m["missing"]]
    for lv in LEVELS:
        row += [m["levels"][lv]["count"], m["levels"][lv]["percent"]]
    row += [m["htxsnv_over_httnv_percent"], m["quota"]["max_allowed"], _quota_text(m["quota"])]
    return row


def _org_row(summary: Mapping) -> list:
    o = summary["organizations"]
    row = [summary["unit"]["code"], summary["unit"]["name"], o["total"], o["classified"], o["missing"]]
    for lv in LEVELS:
        row += [o["levels"][lv]["count"], o["levels"][lv]["percent"]]
    row += [_ratio(o["quota"]["htxsnv"], o["quota"]["httnv"]), o["quota"]["max_allowed"], _quota_text(o["quota"])]
    return row


_LEVEL_GROUPS = [(f"{lv} – {LEVELS[lv]}", ["Số lượng", "Tỷ lệ (%)"]) for lv in LEVELS]
MEMBER_HEADERS: list[tuple[str, list[str]]] = [
    ("Mã", []), ("Tên tổ chức đảng", []), ("Tổng số đảng viên", []), ("Được đánh giá, xếp loại", []),
    ("Không đánh giá, xếp loại", ["Miễn công tác, sinh hoạt", "Đình chỉ sinh hoạt", "Mới kết nạp dưới 6 tháng"]),
    ("Đã có kết quả", []), ("Chưa có kết quả", []),
    *_LEVEL_GROUPS,
    ("HTXSNV/HTTNV (%)", []), ("Tối đa được xếp HTXSNV", []), ("Hạn mức 20%", []),
]
ORG_HEADERS: list[tuple[str, list[str]]] = [
    ("Mã", []), ("Tên tổ chức đảng", []), ("Tổ chức đảng thuộc diện xếp loại", []), ("Đã có kết quả", []), ("Chưa có kết quả", []),
    *_LEVEL_GROUPS,
    ("HTXSNV/HTTNV (%)", []), ("Tối đa được xếp HTXSNV", []), ("Hạn mức 20%", []),
]
# Where data starts in the statistics sheets: title, subtitle, blank, two header rows.
STATISTICS_FIRST_ROW = 6


def statistics_xlsx(summaries: Mapping[str, Mapping], *, title: str, issued_on: dt.date,
                    rows: Sequence[Mapping] | None = None, scored: bool = False) -> bytes:
    """The statistics table: one row per unit of the subtree (in the given order), members and organizations;
    with ``rows`` (as for the classification list) also the member list, with the score when ``scored``."""
    workbook = openpyxl.Workbook()
    members = workbook.active
    members.title = MEMBER_SHEET
    orgs = workbook.create_sheet(ORG_SHEET)
    _grouped_sheet(members, title, "Kết quả đánh giá, xếp loại chất lượng đảng viên", MEMBER_HEADERS, [_member_row(s) for s in summaries.values()])
    _grouped_sheet(orgs, title, "Kết quả đánh giá, xếp loại chất lượng tổ chức đảng", ORG_HEADERS, [_org_row(s) for s in summaries.values()])
    if rows is not None:
        _list_sheet(workbook.create_sheet(LIST_SHEET), title, rows, scored)
    return _save_workbook(workbook, issued_on)


def list_headers(scored: bool) -> list[str]:
    """The member list's columns; "Điểm" only under a rule set that scores members (366/43)."""
    return ["STT", "Mã đảng viên", "Họ và tên", "Chi bộ", "Tự xếp loại", "Đề xuất", *(["Điểm"] if scored else []), "Quyết định", "Ghi chú"]


# Where data starts in the list sheet: title, subtitle, blank, one header row.
LIST_FIRST_ROW = 5


def _list_sheet(sheet, title: str, rows: Sequence[Mapping], scored: bool) -> None:
    headers = list_headers(scored)
    sheet.cell(1, 1, title).font = Font(name=FONT, size=13, bold=True)
    sheet.cell(2, 1, "Danh sách đánh giá, xếp loại chất lượng đảng viên").font = Font(name=FONT, size=12, italic=True)
    for c, name in enumerate(headers, start=1):
        cell = sheet.cell(LIST_FIRST_ROW - 1, c, name)
        cell.border, cell.fill, cell.alignment = _BOX, _HEAD_FILL, _WRAP_CENTER
        cell.font = Font(name=FONT, size=11, bold=True)
    for n, row in enumerate(rows, start=1):
        # The score stays a number (sortable, summable); the spreadsheet shows it with the
        # reader's decimal separator (85,5 in Vietnamese), as it does the percentages.
        score = [row.get("score")] if scored else []
        values = [n, row.get("member_id"), row.get("full_name"), row.get("unit_name"), row.get("self_level"),
                  row.get("proposed_level"), *score, row.get("final_level"), row.get("note") or None]
        for c, value in enumerate(values, start=1):
            cell = sheet.cell(LIST_FIRST_ROW - 1 + n, c, value)
            cell.border = _BOX
            cell.font = Font(name=FONT, size=11)
            if headers[c - 1] not in ("Họ và tên", "Chi bộ", "Ghi chú"):
                cell.alignment = Alignment(horizontal="center")
    widths = {"STT": 6, "Mã đảng viên": 14, "Họ và tên": 26, "Chi bộ": 30, "Ghi chú": 40}
    for c, name in enumerate(headers, start=1):
        sheet.column_dimensions[get_column_letter(c)].width = widths.get(name, 12)
    sheet.freeze_panes = sheet.cell(LIST_FIRST_ROW, 1)


def _grouped_sheet(sheet, title: str, subtitle: str, headers: list[tuple[str, list[str]]], rows: list[list]) -> None:
    width = sum(max(len(subs), 1) for _, subs in headers)
    sheet.cell(1, 1, title).font = Font(name=FONT, size=13, bold=True)
    sheet.cell(2, 1, subtitle).font = Font(name=FONT, size=12, italic=True)
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    sheet.merge_cells(start_row=2, start_column=1, end_row=2, end_column=width)
    top, sub = STATISTICS_FIRST_ROW - 2, STATISTICS_FIRST_ROW - 1
    column = 1
    for name, subs in headers:
        span = max(len(subs), 1)
        for c in range(column, column + span):
            for r in (top, sub):
                cell = sheet.cell(r, c)
                cell.border, cell.fill, cell.alignment = _BOX, _HEAD_FILL, _WRAP_CENTER
                cell.font = Font(name=FONT, size=11, bold=True)
        sheet.cell(top, column, name)
        if subs:
            sheet.merge_cells(start_row=top, start_column=column, end_row=top, end_column=column + span - 1)
            for i, label in enumerate(subs):
                sheet.cell(sub, column + i, label)
        else:
            sheet.merge_cells(start_row=top, start_column=column, end_row=sub, end_column=column)
        column += span
    for r, values in enumerate(rows, start=STATISTICS_FIRST_ROW):
        for c, value in enumerate(values, start=1):
            cell = sheet.cell(r, c, value)
            cell.border = _BOX
            cell.font = Font(name=FONT, size=11)
            if isinstance(value, float):
                cell.number_format = "0.0"
            if c > 2:
                cell.alignment = Alignment(horizontal="center")
    sheet.row_dimensions[sub].height = 45
    sheet.column_dimensions["A"].width = 10
    sheet.column_dimensions["B"].width = 36
    for c in range(3, width + 1):
        sheet.column_dimensions[get_column_letter(c)].width = 12
    sheet.freeze_panes = sheet.cell(STATISTICS_FIRST_ROW, 3)


# The document's Vietnamese name comes first; its catalogue code, for IT staff, last.
CHECKLIST_HEADERS = [
    "STT", "Văn bản", "Mã đảng viên", "Họ và tên", "Bắt buộc", "Tình trạng", "Nhận lúc (bản hiện hành)",
    "Đúng hạn / trễ hạn", "Số lần nộp", "Tệp", "Kế hoạch ghi", "Mã loại văn bản",
]
CHECKLIST_FIRST_ROW = 6


def checklist_xlsx(checklist: Mapping, *, issued_on: dt.date) -> bytes:
    """The checklist as a sheet an office can filter: one row per item."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = CHECKLIST_SHEET
    unit, phase, summary = checklist["unit"], checklist["phase"], checklist["summary"]
    sheet.cell(1, 1, f"Danh mục hồ sơ: {unit['name']} ({unit['code']})").font = Font(name=FONT, size=13, bold=True)
    sheet.cell(2, 1, f"Giai đoạn: {phase['name']} — hạn {phase['deadline_local']}").font = Font(name=FONT, size=12)
    sheet.cell(3, 1, (
        f"Bắt buộc: {summary['required']}; đã nộp: {summary['present']} (trễ hạn {summary['late']}); "
        f"còn thiếu: {summary['missing']}; tình trạng: {summary['state_name']}"
    )).font = Font(name=FONT, size=12, italic=True)
    head = CHECKLIST_FIRST_ROW - 1
    for c, name in enumerate(CHECKLIST_HEADERS, start=1):
        cell = sheet.cell(head, c, name)
        cell.border, cell.fill, cell.alignment = _BOX, _HEAD_FILL, _WRAP_CENTER
        cell.font = Font(name=FONT, size=11, bold=True)
    for n, item in enumerate(checklist["items"], start=1):
        values = [
            n, item["doc_name"], item["member_id"] or "", item["member_name"] or "",
            # A date cell on the unit's clock (the ISO time carries its offset), sortable and filterable.
            "Có" if item["required"] else "Không", item["status_name"],
            dt.datetime.fromisoformat(item["received_at"]).replace(tzinfo=None) if item.get("received_at") else "",
            # Not a bare yes/no next to the current receipt: a correction after the deadline says so.
            item["timeliness"] or "", item["versions"], "\n".join(item["files"]), item.get("note") or "", item["doc_type"],
        ]
        for c, value in enumerate(values, start=1):
            cell = sheet.cell(head + n, c, value)
            cell.border = _BOX
            cell.font = Font(name=FONT, size=11)
            if isinstance(value, dt.datetime):
                cell.number_format = "dd/mm/yyyy hh:mm"
    for c, w in enumerate([6, 48, 12, 24, 9, 22, 17, 30, 9, 50, 40, 26], start=1):
        sheet.column_dimensions[get_column_letter(c)].width = w
    sheet.freeze_panes = sheet.cell(CHECKLIST_FIRST_ROW, 1)
    return _save_workbook(workbook, issued_on)


def _save_workbook(workbook, issued_on: dt.date) -> bytes:
    stamp = dt.datetime(issued_on.year, issued_on.month, issued_on.day, tzinfo=dt.timezone.utc)
    workbook.properties.creator = "kiemdiem"
    workbook.properties.lastModifiedBy = "kiemdiem"
    workbook.properties.created = stamp.replace(tzinfo=None)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return reproducible_ooxml(buffer.getvalue(), stamp)
