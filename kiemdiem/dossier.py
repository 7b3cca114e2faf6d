"""A unit's dossier (hồ sơ) for one phase: the checklist, the manifest and the ZIP archive. Pure.

``build_dossier`` turns what the store loaded (``DossierInput``: the items the unit owes,
the submissions received by ``now``, its children's deliveries, the consolidation if any)
into a ``Dossier``: the checklist (each item present, late, missing or not provided), the
files to archive (the current version of each item; older versions are listed in the
manifest under ``superseded`` but stay out of the archive, except a classification list's: a
list covers only the members it names, so every list received is archived), the sub-unit summaries, the
letterhead of the generated documents, and ``inputs_hash``, a digest of everything the
output depends on. It reads no blob and renders nothing, so it is cheap: a pipeline
compares ``inputs_hash`` with the last one and skips an unchanged dossier.

A dossier's files sit in a folder of their own, one per unit and phase (``folder_name``, the
archive's name without ``.zip``, or the tick's ``<unit>/<phase>/``): the generated files have
the same names in every dossier, so two dossiers in one folder would replace each other's.

``render_outputs`` generates the documents and ``write_archive`` writes the ZIP with
sorted entries and fixed timestamps, so unchanged inputs give a byte-identical archive.
The output depends on ``now`` only through which submissions had arrived and whether a
deadline had passed. Dates come from the inputs, never from the clock, so a later run with
nothing new gives the same bytes:

- the report, the classification list and the statistics table are dated by the
  consolidation version they are made from (its snapshot's creation time, in the plan's
  time zone): that is the day their figures are as of, and it only moves with a new version;
- the index and the checklist by the newest of that day and the last receipt of the unit's
  own items they list (the day the dossier last changed); with neither, the phase deadline.
  A child's receipt no longer dates the parent's documents: they do not list it.

Timeliness follows ``kiemdiem.status``: an item delivered on time once counts as delivered on
time (``status`` present, not late), even when a correction arrives after the deadline. The
checklist says both facts (``first_on_time`` decides the status; ``on_time`` is the current
version's, as in the manifest, and ``timeliness`` says "Đúng hạn (lần đầu …), nộp lại sau hạn
…"), so the receipt time shown next to it is never called on time when it was not.

Archive layout::

    manifest.json                 every file: type, member, sha256, size, received at, on time (this
                                  version) and its item's first delivery; the consolidation version
    checklist.json, checklist.xlsx, muc_luc_ho_so.docx
    thong_ke_xep_loai.xlsx, bao_cao_tong_hop.docx, danh_sach_xep_loai.docx   (with a consolidation)
    files/<doc type>/[<member id>/]<file name>
    sub_units/<unit code>.json    a child's checklist summary (and consolidation, when given)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import IO, Any
from zoneinfo import ZoneInfo

from kiemdiem import documents
from kiemdiem.calendar import format_date, format_instant
from kiemdiem.catalogue import BRANCH_KINDS, DOCUMENTS, UNIT_KINDS, acts_as_itself, addressee, committee_of
from kiemdiem.documents import Letterhead, Signature
from kiemdiem.plan import Phase, Plan
from kiemdiem.rules.base import get_rule_set
from kiemdiem.status import Delivery, Item, UnitInfo
from kiemdiem.submission import safe_filename

FORMAT = "kiemdiem-ho-so/3"  # bump when the archive's layout or contents change (2: timeliness, dates, scores; 3: entries dated, files named in the index)

CHECKLIST_JSON = "checklist.json"
CHECKLIST_XLSX = "checklist.xlsx"
INDEX_DOCX = "muc_luc_ho_so.docx"
STATISTICS_XLSX = "thong_ke_xep_loai.xlsx"
REPORT_DOCX = "bao_cao_tong_hop.docx"
LISTING_DOCX = "danh_sach_xep_loai.docx"
MANIFEST_JSON = "manifest.json"
# Outputs that depend on a consolidation; an assembler removes them when none is given.
CONSOLIDATION_OUTPUTS = (STATISTICS_XLSX, REPORT_DOCX, LISTING_DOCX)

ITEM_STATUS_NAMES = {
    "present": "Đã nộp",
    "late": "Đã nộp (trễ hạn)",
    "missing": "Chưa nộp",
    "overdue": "Chưa nộp (quá hạn)",
    "not_provided": "Không có (không bắt buộc)",
}
STATE_NAMES = {
    "done": "Đầy đủ, đúng hạn",
    "done_late": "Đầy đủ (có văn bản nộp trễ hạn)",
    "incomplete": "Chưa đầy đủ (chưa đến hạn)",
    "overdue": "Quá hạn, còn thiếu",
}


# ----------------------------------------------------------------------------------- input


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    size: int
    filename: str
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """One submission of one item with its files."""

    submission_id: int
    item_key: str
    doc_type: str
    member_code: str | None
    received_at: dt.datetime
    on_time: bool
    source: str
    submitted_by: str | None
    files: tuple[StoredFile, ...]


@dataclass(frozen=True)
class ChildPhase:
    phase: Phase
    items: tuple[Item, ...]
    deliveries: Mapping[str, Delivery]


@dataclass(frozen=True)
class ChildInput:
    unit: UnitInfo
    phases: tuple[ChildPhase, ...]


@dataclass(frozen=True)
class DossierInput:
    campaign_id: str
    plan: Plan
    phase: Phase
    unit: UnitInfo
    parent_name: str | None
    items: tuple[Item, ...]  # what the unit owes in the phase (status.owed_items)
    versions: tuple[Version, ...]  # the unit's submissions in the phase received by now
    now: dt.datetime
    children: tuple[ChildInput, ...] = ()
    consolidation: Mapping | None = None  # the unit's consolidation summary (UnitSummary.to_dict())
    subtree: Mapping[str, Mapping] = field(default_factory=dict)  # summaries by unit code, tree order
    classification_rows: tuple[Mapping, ...] = ()
    unit_names: Mapping[str, str] = field(default_factory=dict)
    secretary: str | None = None  # who signs as BÍ THƯ (the root signs as the plan's signer when it has one)
    issued_on: dt.date | None = None  # every document's date, when the caller fixes it; default: see the module docstring
    # The stored consolidation version ``consolidation`` is (None: not a stored one, e.g. a look-back).
    consolidation_version: int | None = None
    consolidated_at: dt.datetime | None = None


def child_phases(plan: Plan, phase: Phase, child_kind: str) -> list[Phase]:
    """The phases in which a child reports what its parent's phase builds on.

    The same phase when it applies to the child; else the phases it comes after; else the
    phases of the same kind; else every phase of the child due by this phase's deadline.
    """
    if child_kind in phase.applies_to:
        return [phase]
    for candidates in (
        [plan.phase(p) for p in phase.after],
        [p for p in plan.phases if p.kind == phase.kind],
        [p for p in plan.phases if p.deadline <= phase.deadline],
    ):
        matching = [p for p in candidates if child_kind in p.applies_to]
        if matching:
            return matching
    return []


# ---------------------------------------------------------------------------------- output


@dataclass(frozen=True)
class ArchivedFile:
    path: str
    sha256: str
    size: int
    entry: dict  # its manifest entry


@dataclass
class Dossier:
    source: DossierInput
    checklist: dict
    files: list[ArchivedFile]
    superseded: list[dict]
    sub_units: dict[str, dict]  # archive path -> payload
    letterhead: Letterhead
    issued_on: dt.date  # the index's and the checklist's date
    consolidation_issued_on: dt.date | None = None  # the report's, the list's and the statistics' date
    inputs_hash: str = ""

    @property
    def archive_name(self) -> str:
        return archive_name(self.source.unit.code, self.source.phase.id)

    @property
    def has_consolidation(self) -> bool:
        return self.source.consolidation is not None

    @property
    def consolidation_letterhead(self) -> Letterhead:
        """The letterhead of the documents made from the consolidation: dated by its version."""
        return replace(self.letterhead, issued_on=self.consolidation_issued_on or self.issued_on)

    @property
    def output_names(self) -> list[str]:
        """The generated files, by name (they sit at the archive's top and beside it)."""
        names = [CHECKLIST_JSON, CHECKLIST_XLSX, INDEX_DOCX]
        return names + (list(CONSOLIDATION_OUTPUTS) if self.has_consolidation else [])


def folder_name(unit_code: str, phase_id: str) -> str:
    """``<unit>_<phase>``: the folder a dossier gets inside a folder shared by several dossiers."""
    return f"{safe_filename(unit_code)}_{safe_filename(phase_id)}"


def archive_name(unit_code: str, phase_id: str) -> str:
    return f"{folder_name(unit_code, phase_id)}.zip"


def build_dossier(source: DossierInput) -> Dossier:
    """Checklist, files to archive, sub-unit summaries and the inputs hash; no blob read, nothing rendered."""
    plan, phase, unit = source.plan, source.phase, source.unit
    zone = ZoneInfo(plan.timezone)
    by_key: dict[str, list[Version]] = {}
    for version in sorted(source.versions, key=lambda v: (v.received_at, v.submission_id)):
        by_key.setdefault(version.item_key, []).append(version)
    past_deadline = source.now > phase.deadline

    items = list(source.items)
    owed_keys = {item.key for item in items}
    names = {item.member_code: item.member_name for item in items if item.member_code}
    # A submission for an item no longer owed (a member since exempted) is kept and shown.
    for key in sorted(by_key.keys() - owed_keys):
        first = by_key[key][0]
        items.append(Item(unit.code, phase.id, first.doc_type, first.member_code, names.get(first.member_code), False))

    used: set[str] = set()
    entries: list[dict] = []
    files: list[ArchivedFile] = []
    superseded: list[dict] = []
    notes = {(req.doc_type, req.per_member): req.note for req in phase.documents}
    for item in items:
        versions = by_key.get(item.key, [])
        entry = _item_entry(item, versions, item.key in owed_keys, past_deadline, zone)
        entry["note"] = notes.get((item.doc_type, item.member_code is not None), "")  # the plan's own words
        if versions:
            current, first = versions[-1], versions[0]
            folder = f"files/{item.doc_type}/" + (f"{safe_filename(item.member_code)}/" if item.member_code else "")
            # A classification list covers only the members it names: a supplement does not
            # replace the first list, so every list received stays in the archive (the earlier
            # ones under lan_<n>/). Another document's new version replaces the old one.
            kept = [(len(versions), current)]
            if _is_list(item.doc_type):
                kept += [(number, old) for number, old in enumerate(versions[:-1], start=1)]
            else:
                superseded.extend(_superseded_entry(item, old, versions, zone) for old in versions[:-1])
            for number, version in kept:
                where = folder if version is current else f"{folder}lan_{number}/"
                for stored in version.files:
                    path = _unique(where + safe_filename(stored.filename), used)
                    entry["files"].append(path)
                    files.append(ArchivedFile(path, stored.sha256, stored.size, _file_entry(path, item, version, first, stored, number, zone)))
        entries.append(entry)

    # Timeliness is the first delivery's, as kiemdiem.status counts it.
    summary = _tally(source.items, {k: (v[0].on_time, v[-1].received_at) for k, v in by_key.items()}, past_deadline)
    summary["optional_present"] = sum(1 for e in entries if not e["required"] and e["versions"])
    summary["files"] = len(files)
    last = max((v[-1].received_at for v in by_key.values()), default=None)
    summary["last_received_at"] = _iso(last, zone)
    checklist = {
        "plan": {"number": plan.number, "title": plan.title, "issuer": plan.issuer, "year": plan.year},
        "unit": _unit_dict(unit),
        "phase": _phase_dict(phase, zone),
        "past_deadline": past_deadline,
        "summary": summary,
        "items": entries,
    }
    sub_units = {f"sub_units/{safe_filename(child.unit.code)}.json": _child_payload(child, source, zone) for child in source.children}
    issued_on, consolidation_issued_on = _dates(source, last, zone)
    letterhead = letterhead_for(plan, unit, source.parent_name, source.secretary, issued_on)
    dossier = Dossier(source, checklist, files, superseded, sub_units, letterhead, issued_on, consolidation_issued_on)
    dossier.inputs_hash = _inputs_hash(dossier)
    return dossier


def _dates(source: DossierInput, last: dt.datetime | None, zone: ZoneInfo) -> tuple[dt.date, dt.date | None]:
    """(index and checklist date, consolidation documents' date); see the module docstring.

    Not the newest receipt in the subtree: a child's late file is no reason to re-date the
    parent's report. Both come from the inputs, so an unchanged dossier keeps its bytes."""
    if source.issued_on is not None:
        return source.issued_on, source.issued_on if source.consolidation is not None else None
    consolidated = source.consolidated_at.astimezone(zone).date() if source.consolidated_at and source.consolidation is not None else None
    known = [d for d in (last.astimezone(zone).date() if last else None, consolidated) if d is not None]
    issued_on = max(known) if known else source.phase.deadline.astimezone(zone).date()
    # A consolidation that is no stored version (a look-back) has no date of its own.
    return issued_on, (consolidated or issued_on) if source.consolidation is not None else None


def _is_list(doc_type: str) -> bool:
    """A classification list, read as data (``DocumentType.structured``)."""
    return doc_type in DOCUMENTS and DOCUMENTS[doc_type].structured


def _timeliness(versions: list[Version], zone: ZoneInfo, is_list: bool = False) -> str | None:
    """How the item's deliveries stand against the deadline, in words; None when none arrived.

    The first delivery decides on time or late (as kiemdiem.status counts it); a correction
    sent after the deadline is said too, so the receipt time shown is never called on time."""
    if not versions:
        return None
    first, current = versions[0], versions[-1]
    if first.on_time and not current.on_time:
        again = "nộp thêm danh sách" if is_list else "nộp lại"  # a list adds to the first, another document replaces it
        return f"Đúng hạn (lần đầu {format_date(first.received_at, str(zone))}), {again} sau hạn {format_date(current.received_at, str(zone))}"
    if first.on_time:
        return "Đúng hạn"
    return f"Trễ hạn (lần đầu {format_date(first.received_at, str(zone))})" if len(versions) > 1 else "Trễ hạn"


def _item_entry(item: Item, versions: list[Version], owed: bool, past_deadline: bool, zone: ZoneInfo) -> dict:
    # present / late by the first delivery: an item delivered on time once counts as on time,
    # as in kiemdiem.status (a correction after the deadline does not make it late).
    if versions:
        status = "present" if versions[0].on_time else "late"
    elif not item.required:
        status = "not_provided"
    else:
        status = "missing"
    status_name = ITEM_STATUS_NAMES["overdue" if status == "missing" and past_deadline else status]
    current = versions[-1] if versions else None
    timeliness = _timeliness(versions, zone, _is_list(item.doc_type))
    resent_late = current is not None and versions[0].on_time and not current.on_time
    return {
        "key": item.key,
        "doc_type": item.doc_type,
        "doc_name": DOCUMENTS[item.doc_type].name if item.doc_type in DOCUMENTS else item.doc_type,
        "member_id": item.member_code,
        "member_name": item.member_name,
        "required": item.required,
        "owed": owed,
        "status": status,
        "status_name": status_name,
        # What the index says: the status, and a correction after the deadline when there was one.
        "status_detail": f"Đã nộp {timeliness[0].lower()}{timeliness[1:]}" if resent_late else status_name,
        "first_received_at": _iso(versions[0].received_at, zone) if versions else None,
        "first_on_time": versions[0].on_time if versions else None,
        "received_at": _iso(current.received_at, zone) if current else None,
        "received_local": format_instant(current.received_at, str(zone)) if current else None,
        "on_time": current.on_time if current else None,  # of the version received_at is, as in the manifest
        "timeliness": timeliness,
        "versions": len(versions),
        "files": [],
    }


def _file_entry(path: str, item: Item, current: Version, first: Version, stored: StoredFile, count: int, zone: ZoneInfo) -> dict:
    return {
        "path": path,
        "item_key": item.key,
        "doc_type": item.doc_type,
        "doc_name": DOCUMENTS[item.doc_type].name if item.doc_type in DOCUMENTS else item.doc_type,
        "member_id": item.member_code,
        "member_name": item.member_name,
        "filename": stored.filename,
        "content_type": stored.content_type,
        "size": stored.size,
        "sha256": stored.sha256,
        "submission_id": current.submission_id,
        "received_at": _iso(current.received_at, zone),
        "on_time": current.on_time,
        "first_received_at": _iso(first.received_at, zone),
        "first_on_time": first.on_time,
        "version": count,
        "source": current.source,
        "submitted_by": current.submitted_by,
    }


def _superseded_entry(item: Item, old: Version, versions: list[Version], zone: ZoneInfo) -> dict:
    successor = versions[versions.index(old) + 1]
    return {
        "item_key": item.key,
        "doc_type": item.doc_type,
        "member_id": item.member_code,
        "submission_id": old.submission_id,
        "received_at": _iso(old.received_at, zone),
        "on_time": old.on_time,
        "superseded_by": successor.submission_id,
        "files": [{"filename": f.filename, "sha256": f.sha256, "size": f.size} for f in old.files],
    }


def _tally(items, delivered: Mapping[str, tuple[bool, dt.datetime]], past_deadline: bool) -> dict:
    """Counts over required items and the resulting state; one rule for a unit and its children."""
    required = present = late = 0
    for item in items:
        if not item.required:
            continue
        required += 1
        if item.key in delivered:
            present += 1
            late += 0 if delivered[item.key][0] else 1
    missing = required - present
    if missing == 0:
        state = "done_late" if late else "done"
    else:
        state = "overdue" if past_deadline else "incomplete"
    return {"state": state, "state_name": STATE_NAMES[state], "required": required, "present": present, "late": late, "missing": missing}


def _child_payload(child: ChildInput, source: DossierInput, zone: ZoneInfo) -> dict:
    phases = []
    for part in child.phases:
        delivered = {k: (d.first_on_time, d.last_received_at) for k, d in part.deliveries.items()}
        summary = _tally(part.items, delivered, source.now > part.phase.deadline)
        summary["last_received_at"] = _iso(max((d.last_received_at for d in part.deliveries.values()), default=None), zone)
        phases.append({
            "phase": _phase_dict(part.phase, zone),
            "summary": summary,
            "missing": [
                {"doc_type": i.doc_type, "doc_name": DOCUMENTS[i.doc_type].name, "member_id": i.member_code, "member_name": i.member_name}
                for i in part.items
                if i.required and i.key not in part.deliveries
            ],
        })
    consolidation = source.subtree.get(child.unit.code)
    return {"unit": _unit_dict(child.unit), "phases": phases, "consolidation": None if consolidation is None else dict(consolidation)}


def _unit_dict(unit: UnitInfo) -> dict:
    return {"code": unit.code, "name": unit.name, "kind": unit.kind, "kind_name": UNIT_KINDS.get(unit.kind, unit.kind), "parent": unit.parent_code}


def _phase_dict(phase: Phase, zone: ZoneInfo) -> dict:
    return {
        "id": phase.id,
        "name": phase.name,
        "deadline": _iso(phase.deadline, zone),
        "deadline_local": format_instant(phase.deadline, str(zone)),
        "reading": phase.reading,
    }


def _iso(instant: dt.datetime | None, zone: ZoneInfo) -> str | None:
    return None if instant is None else instant.astimezone(zone).isoformat()


def _unique(path: str, used: set[str]) -> str:
    """The path itself, or "name (2).ext", "name (3).ext"… when taken (two files of one name)."""
    candidate, n = path, 1
    stem, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        stem, ext = path, ""
    while candidate in used:
        n += 1
        candidate = f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})"
    used.add(candidate)
    return candidate


# ------------------------------------------------------------------------------ letterhead


def committee_name(unit: UnitInfo) -> str:
    """The body that issues a unit's documents: a branch itself, the committee (Đảng ủy) of a đảng bộ."""
    return addressee(unit.name, unit.kind)


def letterhead_for(plan: Plan, unit: UnitInfo, parent_name: str | None, secretary: str | None, issued_on: dt.date) -> Letterhead:
    """The root unit issues as the plan's issuer and signer; any other unit as its own committee."""
    if unit.parent_code is None:
        suffix = plan.number.rsplit("/", 1)[-1] if "/" in plan.number else "ĐU"
        signature = (
            Signature(plan.signer.on_behalf, plan.signer.title, plan.signer.name)
            if plan.signer else Signature("T/M ĐẢNG ỦY", "BÍ THƯ", secretary or "")
        )
        recipients = ((f"{plan.superior} (B/c)",) if plan.superior else ()) + (f"Lưu {suffix}",)
        return Letterhead(plan.issuer, plan.superior, f"     -BC/{suffix}", plan.place, issued_on, recipients, signature)
    branch = acts_as_itself(unit.kind)
    suffix = "CB" if branch else "ĐU"
    signature = Signature("T/M CHI BỘ" if branch else "T/M ĐẢNG ỦY", "BÍ THƯ", secretary or "")
    # Reported to the parent's committee ("Đảng ủy Sở …"), under the parent organization's name in the header.
    recipients = ((f"{committee_of(parent_name)} (B/c)",) if parent_name else ()) + (f"Lưu {suffix}",)
    return Letterhead(committee_name(unit), parent_name, f"     -BC/{suffix}", plan.place, issued_on, recipients, signature)


# ------------------------------------------------------------------------------ rendering


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _statistics_rows(dossier: Dossier) -> dict[str, Mapping]:
    source = dossier.source
    rows = dict(source.subtree)
    if source.unit.code not in rows and source.consolidation is not None:
        rows = {source.unit.code: source.consolidation, **rows}
    return rows


def _inputs_hash(dossier: Dossier) -> str:
    source = dossier.source
    material = {
        "format": FORMAT,
        "templates": documents.templates_digest(),
        "campaign": source.campaign_id,
        "checklist": dossier.checklist,
        "files": [f.entry for f in dossier.files],
        "superseded": dossier.superseded,
        "sub_units": dossier.sub_units,
        "letterhead": dossier.letterhead.view(),
        "issued_on": dossier.issued_on.isoformat(),
        "consolidation_issued_on": dossier.consolidation_issued_on.isoformat() if dossier.consolidation_issued_on else None,
        "consolidation_version": consolidation_version(dossier),
        "scored": scored(source.plan),
        "consolidation": source.consolidation,
        "statistics": _statistics_rows(dossier) if source.consolidation is not None else None,
        "classification": [dict(r) for r in source.classification_rows],
        "unit_names": dict(source.unit_names),
    }
    return hashlib.sha256(_json_bytes(material)).hexdigest()


def scored(plan: Plan) -> bool:
    """Whether the plan's rule set scores members (366/43: out of 100); the lists then show the score."""
    return bool(get_rule_set(plan.rule_set).score_bands)


def consolidation_version(dossier: Dossier) -> dict | None:
    """{version, created_at} of the stored consolidation the documents are made from; None without one."""
    source = dossier.source
    if source.consolidation is None or source.consolidation_version is None:
        return None
    zone = ZoneInfo(source.plan.timezone)
    return {"version": source.consolidation_version, "created_at": _iso(source.consolidated_at, zone)}


def render_outputs(dossier: Dossier) -> dict[str, bytes]:
    """The generated files by name: checklist, index, and the consolidation documents when given."""
    source, issued_on = dossier.source, dossier.issued_on
    outputs = {
        CHECKLIST_JSON: _json_bytes(dossier.checklist),
        CHECKLIST_XLSX: documents.checklist_xlsx(dossier.checklist, issued_on=issued_on),
        INDEX_DOCX: documents.dossier_index_docx(dossier.letterhead, dossier.checklist),
    }
    if source.consolidation is not None:
        year, with_score = source.plan.year, scored(source.plan)
        letterhead = dossier.consolidation_letterhead
        outputs[STATISTICS_XLSX] = documents.statistics_xlsx(
            _statistics_rows(dossier), title=f"Thống kê kết quả đánh giá, xếp loại chất lượng năm {year} — {source.unit.name}",
            issued_on=letterhead.issued_on, rows=source.classification_rows, scored=with_score,
        )
        outputs[REPORT_DOCX] = documents.consolidated_report_docx(
            letterhead, source.consolidation, year=year, plan_number=source.plan.number, unit_names=source.unit_names,
            subtree=source.subtree, plan_issuer=source.plan.issuer,
        )
        outputs[LISTING_DOCX] = documents.classification_list_docx(
            letterhead, source.classification_rows, unit_name=source.unit.name, year=year, scored=with_score,
        )
    return outputs


def manifest(dossier: Dossier, outputs: Mapping[str, bytes]) -> dict:
    """The archive's bill of contents: every submitted file and every generated one, with checksums."""
    source = dossier.source
    generated = [{"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in outputs.items()]
    generated += [
        {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for path, data in ((p, _json_bytes(payload)) for p, payload in dossier.sub_units.items())
    ]
    return {
        "format": FORMAT,
        "campaign": source.campaign_id,
        "plan": dossier.checklist["plan"],
        "unit": dossier.checklist["unit"],
        "phase": dossier.checklist["phase"],
        "inputs_hash": dossier.inputs_hash,
        "issued_on": dossier.issued_on.isoformat(),
        # The consolidation version the report, the list and the statistics are made from, and their date.
        "consolidation_version": consolidation_version(dossier),
        "consolidation_issued_on": dossier.consolidation_issued_on.isoformat() if dossier.consolidation_issued_on else None,
        "summary": dossier.checklist["summary"],
        "files": sorted((f.entry for f in dossier.files), key=lambda e: e["path"]),
        "superseded": dossier.superseded,
        "generated": sorted(generated, key=lambda e: e["path"]),
    }


def _zip_info(path: str, size: int, day: dt.date) -> zipfile.ZipInfo:
    # Dated the dossier's day (what a file manager shows), not a clock: the same inputs, the same bytes.
    info = zipfile.ZipInfo(path, (day.year, day.month, day.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.create_system = 3
    info.file_size = size  # known up front, so the ZIP64 choice never depends on how it is streamed
    return info


def write_archive(target: IO[bytes], dossier: Dossier, outputs: Mapping[str, bytes],
                  open_blob: Callable[[str], AbstractContextManager[IO[bytes]]]) -> None:
    """Write the ZIP: entries sorted by path, dated the dossier's day; submitted files streamed from the blob store."""
    in_memory: dict[str, bytes] = dict(outputs)
    in_memory.update({path: _json_bytes(payload) for path, payload in dossier.sub_units.items()})
    in_memory[MANIFEST_JSON] = _json_bytes(manifest(dossier, outputs))
    blobs = {f.path: f for f in dossier.files}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(in_memory.keys() | blobs.keys()):
            if path in in_memory:
                data = in_memory[path]
                archive.writestr(_zip_info(path, len(data), dossier.issued_on), data, compresslevel=6)
                continue
            stored = blobs[path]
            with open_blob(stored.sha256) as source, archive.open(_zip_info(path, stored.size, dossier.issued_on), "w") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def read_manifest(archive: IO[bytes]) -> dict | None:
    """The manifest of an archive written by ``write_archive``, or None when there is none."""
    try:
        with zipfile.ZipFile(archive) as opened:
            return json.loads(opened.read(MANIFEST_JSON).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError):
        return None
