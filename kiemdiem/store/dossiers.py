"""Assembling a unit's dossier for a phase from the store, into a folder.

``load_dossier_input`` reads, in a few set-based queries, what the pure ``kiemdiem.dossier``
needs: the unit, what it owes in the phase, its submissions received by ``now`` with their
files, its children's deliveries, who signs (``_secretary``), and with a consolidation the
members' classification rows and the stored snapshot version it is (whose creation time dates
the documents made from it). ``assemble_dossier`` writes ``checklist.json``,
``checklist.xlsx``, the generated documents and ``<unit>_<phase>.zip`` into ``out_dir``, each
only when its bytes changed, and
returns the archive's sha256 and whether anything changed. ``out_dir`` belongs to that one
dossier (the CLI gives each its ``<unit>_<phase>/`` folder, the tick ``<unit>/<phase>/``): a
folder holding another dossier is refused, since the generated files have the same names in
every dossier. ``dossier_inputs_hash`` computes
the digest of the inputs without reading a blob or rendering a document, so a pipeline can
skip unchanged dossiers; the same digest is in the archive's manifest (``archive_inputs_hash``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, or_, select

from kiemdiem.catalogue import BRANCH_KINDS, MEMBER_STATUSES, REVIEWED_STATUSES, UNIT_KINDS
from kiemdiem.consolidation import unit_hash
from kiemdiem.dossier import (
    CHECKLIST_JSON,
    CONSOLIDATION_OUTPUTS,
    ChildInput,
    ChildPhase,
    Dossier,
    archive_name,
    DossierInput,
    StoredFile,
    Version,
    build_dossier,
    child_phases,
    consolidation_version,
    read_manifest,
    render_outputs,
    write_archive,
)
from kiemdiem.errors import NotFound, Refused
from kiemdiem.plan import Phase, Plan
from kiemdiem.documents import NOT_EVALUATED_NAMES
from kiemdiem.rules.base import NEW_MEMBER_MONTHS, get_rule_set, months_before
from kiemdiem.status import Delivery, MemberInfo, UnitInfo, owed_items
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import Member, MemberResult, Snapshot, Submission, SubmissionFile, Unit
from kiemdiem.store.organization import get_campaign
from kiemdiem.store.queries import load_units
from kiemdiem.tabular import fold

# Keys a consolidation summary (UnitSummary.to_dict()) always has; a snapshot without them is not one.
SUMMARY_KEYS = frozenset({"unit", "members", "organizations", "missing_results", "findings"})


@dataclass(frozen=True)
class DossierResult:
    unit_code: str
    phase_id: str
    out_dir: Path
    archive: Path
    sha256: str  # of the archive
    changed: bool  # False: every output already had these bytes, nothing was written
    inputs_hash: str
    written: tuple[str, ...]  # names of the files written this time
    outputs: tuple[str, ...]  # the generated files beside the archive
    checklist: dict  # as in checklist.json
    # The consolidation version the documents are made from and dated by ({version, created_at}), if stored.
    consolidation_version: dict | None = None

    @property
    def summary(self) -> dict:
        """State, required, present, late, missing, files…"""
        return self.checklist["summary"]


# ------------------------------------------------------------------------------- loading


def _phase(plan: Plan, phase_id: str) -> Phase:
    try:
        return plan.phase(phase_id)
    except KeyError:
        raise NotFound(f"giai đoạn không tồn tại: '{phase_id}' (kế hoạch {plan.number} có: {', '.join(p.id for p in plan.phases)})") from None


def load_dossier_input(
    uow: UnitOfWork,
    plan: Plan,
    campaign_id: str,
    unit_code: str,
    phase_id: str,
    now: dt.datetime,
    consolidation: Mapping | None = None,
    *,
    subtree: Mapping[str, Mapping] | None = None,
    issued_on: dt.date | None = None,
) -> DossierInput:
    """Everything the pure dossier needs; NotFound / Refused with a Vietnamese reason for a bad unit or phase."""
    get_campaign(uow, campaign_id)
    phase = _phase(plan, phase_id)
    units = load_units(uow, campaign_id, subtree_of=unit_code)
    if not units:
        raise NotFound(f"đơn vị không tồn tại: '{unit_code}' (đợt {campaign_id})")
    unit = units[0]
    if unit.kind not in phase.applies_to:
        own = ", ".join(p.id for p in plan.phases_for_kind(unit.kind)) or "không có"
        raise Refused(
            f"giai đoạn '{phase.id}' ({phase.name}) không áp dụng cho {UNIT_KINDS.get(unit.kind, unit.kind)} "
            f"'{unit.code}'; các giai đoạn của đơn vị này: {own}"
        )
    session = uow.session
    parent_name = None
    if unit.parent_code is not None:
        parent_name = session.scalar(select(Unit.name).where(Unit.campaign_id == campaign_id, Unit.code == unit.parent_code))
    children = [u for u in units if u.parent_code == unit.code]
    with_results = consolidation is not None
    codes = {u.id: u.code for u in units}
    # The classification list needs the whole subtree; the checklist only the unit and its children.
    if with_results:
        root_path = session.scalar(select(Unit.path).where(Unit.id == unit.id))
        members = _members(uow, campaign_id, codes, Unit.path.startswith(root_path))
    else:
        members = _members(uow, campaign_id, codes, Unit.id.in_([unit.id] + [c.id for c in children]))
    by_unit: dict[str, list[MemberInfo]] = {}
    for member in members:
        by_unit.setdefault(member.unit_code, []).append(member)

    own_members = by_unit.get(unit.code, [])
    items = tuple(owed_items(phase, unit, own_members))
    versions = _versions(uow, campaign_id, unit.id, phase.id, now)
    child_inputs = _children(uow, plan, phase, campaign_id, children, by_unit, now)
    secretary = _secretary(plan, unit, own_members)
    rows = tuple(_classification_rows(uow, plan, campaign_id, units, members, root_path, now)) if with_results else ()
    version = _snapshot_version(uow, campaign_id, unit.id, consolidation, now) if with_results else None
    ordered_subtree = {u.code: subtree[u.code] for u in units if subtree and u.code in subtree}
    return DossierInput(
        campaign_id=campaign_id,
        plan=plan,
        phase=phase,
        unit=unit,
        parent_name=parent_name,
        items=items,
        versions=versions,
        now=now,
        children=child_inputs,
        consolidation=consolidation,
        subtree=ordered_subtree,
        classification_rows=rows,
        unit_names={u.code: u.name for u in units},
        secretary=secretary,
        issued_on=issued_on,
        consolidation_version=version[0] if version else None,
        consolidated_at=version[1] if version else None,
    )


def _secretary(plan: Plan, unit: UnitInfo, own_members: list[MemberInfo]) -> str | None:
    """Who signs the unit's documents as BÍ THƯ, when the data says so; None leaves the name blank
    under "T/M ĐẢNG ỦY / BÍ THƯ" (or "T/M CHI BỘ") for a hand signature.

    Members sit only in branches (chi bộ), and a position is a code without a unit: ``bi_thu``
    is the secretary of the member's own branch, ``dang_uy_vien`` a member of the committee
    above; no code says "Bí thư Đảng ủy". So a branch's secretary is its member holding
    ``bi_thu``, but a đảng bộ's cannot be read from the member list: a branch secretary found in
    its subtree (even one who is also ``dang_uy_vien``) is someone else, and naming the wrong
    person on a signed report is worse than a blank. Only the plan names a đảng bộ's secretary,
    and only its issuer's (the root; when the plan has no ``signer``): the assignment whose title
    says "Bí thư" of that committee (see ``_named_secretary``)."""
    if unit.kind in BRANCH_KINDS:
        return next((m.full_name for m in own_members if "bi_thu" in m.positions), None)
    if unit.parent_code is None:
        return _named_secretary(plan)
    return None


def _named_secretary(plan: Plan) -> str | None:
    """The person the plan's assignments call the issuer's secretary ("Tỉnh ủy viên, Bí thư Đảng ủy
    Sở" for the Đảng ủy Sở Công Thương), when exactly one is: a title part "Bí thư <body>" whose
    body begins the issuer's name (so "Phó Bí thư…", "Bí thư Chi bộ…" or the secretary of another
    committee do not count)."""
    issuer = fold(plan.issuer)  # "dang_uy_so_cong_thuong"
    found = set()
    for assignment in plan.assignments:
        for part in re.split(r"[,;]", assignment.title or ""):
            part = fold(part)
            if part == "bi_thu" or (part.startswith("bi_thu_") and issuer.startswith(part[len("bi_thu_"):])):
                found.add(assignment.person.strip())
    return found.pop() if len(found) == 1 else None


def _snapshot_version(
    uow: UnitOfWork, campaign_id: str, unit_id: int, consolidation: Mapping, now: dt.datetime
) -> tuple[int, dt.datetime] | None:
    """(version, created at) of the stored snapshot ``consolidation`` is: the newest one made by
    ``now`` (a run stores its versions as made at its own ``now``) with its content hash (a
    summary can come back to an earlier content); None when it is no stored version (a
    look-back, or a summary built by hand)."""
    try:
        content_hash = unit_hash(dict(consolidation))
    except (KeyError, TypeError, ValueError):
        return None  # not a summary's shape: no snapshot can have its hash
    row = uow.session.execute(
        select(Snapshot.version, Snapshot.created_at)
        .where(Snapshot.campaign_id == campaign_id, Snapshot.unit_id == unit_id, Snapshot.content_hash == content_hash,
               Snapshot.created_at <= now)
        .order_by(Snapshot.version.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def _members(uow: UnitOfWork, campaign_id: str, codes: dict[int, str], where) -> list[MemberInfo]:
    """Members of the units matching ``where`` (load_members would read the whole campaign)."""
    temp = Unit.__table__.alias("t")
    query = (
        select(Member.id, Member.member_code, Member.full_name, Member.unit_id, Member.status, temp.c.code, Member.positions, Member.joined_on, Member.email)
        .join(Unit, Unit.id == Member.unit_id)
        .outerjoin(temp, temp.c.id == Member.temporary_unit_id)
        .where(Member.campaign_id == campaign_id, where)
        .order_by(Member.member_code)
    )
    return [
        MemberInfo(mid, code, name, codes[unit_id], status, temp_code, tuple(positions or ()), joined_on, email)
        for mid, code, name, unit_id, status, temp_code, positions, joined_on, email in uow.session.execute(query)
    ]


def _versions(uow: UnitOfWork, campaign_id: str, unit_id: int, phase_id: str, now: dt.datetime) -> tuple[Version, ...]:
    session = uow.session
    rows = session.execute(
        select(
            Submission.id, Submission.item_key, Submission.doc_type, Member.member_code, Submission.received_at,
            Submission.on_time, Submission.source, Submission.submitted_by,
        )
        .outerjoin(Member, Member.id == Submission.member_id)
        .where(
            Submission.campaign_id == campaign_id, Submission.unit_id == unit_id, Submission.phase_id == phase_id,
            Submission.received_at <= now, Submission.refused_at.is_(None),
        )
        .order_by(Submission.received_at, Submission.id)
    ).all()
    files: dict[int, list[StoredFile]] = {}
    if rows:
        query = select(SubmissionFile).where(SubmissionFile.submission_id.in_([r[0] for r in rows])).order_by(SubmissionFile.id)
        for f in session.scalars(query):
            files.setdefault(f.submission_id, []).append(StoredFile(f.sha256, f.size, f.filename, f.content_type))
    return tuple(
        Version(sid, key, doc, member, received_at, bool(on_time), source, by, tuple(files.get(sid, ())))
        for sid, key, doc, member, received_at, on_time, source, by in rows
    )


def _children(
    uow: UnitOfWork, plan: Plan, phase: Phase, campaign_id: str, children: list[UnitInfo], by_unit: dict[str, list[MemberInfo]], now: dt.datetime
) -> tuple[ChildInput, ...]:
    if not children:
        return ()
    phases_of = {c.code: child_phases(plan, phase, c.kind) for c in children}
    phase_ids = sorted({p.id for ps in phases_of.values() for p in ps})
    deliveries: dict[str, Delivery] = {}
    if phase_ids:
        rows = uow.session.execute(
            select(Submission.item_key, Submission.received_at, Submission.on_time)
            .where(
                Submission.campaign_id == campaign_id,
                Submission.unit_id.in_([c.id for c in children]),
                Submission.phase_id.in_(phase_ids),
                Submission.received_at <= now,
                Submission.refused_at.is_(None),
            )
            .order_by(Submission.received_at, Submission.id)
        )
        for key, received_at, on_time in rows:
            seen = deliveries.get(key)
            deliveries[key] = (
                Delivery(received_at, bool(on_time), received_at, 1)
                if seen is None
                else Delivery(seen.first_received_at, seen.first_on_time, received_at, seen.versions + 1)
            )
    result = []
    for child in children:
        parts = []
        for child_phase in phases_of[child.code]:
            items = tuple(owed_items(child_phase, child, by_unit.get(child.code, [])))
            parts.append(ChildPhase(child_phase, items, {i.key: deliveries[i.key] for i in items if i.key in deliveries}))
        result.append(ChildInput(child, tuple(parts)))
    return tuple(result)


def _classification_rows(
    uow: UnitOfWork, plan: Plan, campaign_id: str, units: list[UnitInfo], members: list[MemberInfo], root_path: str, now: dt.datetime
) -> list[dict]:
    """One row per member of the subtree, in tree order: the result current at ``now``, or why there is none."""
    if not members:
        return []
    # Joined by the subtree's path, not a list of ids: a province has more members than bind parameters.
    # A result cancelled after ``now`` was still the current one at ``now``.
    query = (
        select(MemberResult)
        .join(Member, Member.id == MemberResult.member_id)
        .join(Unit, Unit.id == Member.unit_id)
        .where(
            MemberResult.campaign_id == campaign_id,
            Unit.path.startswith(root_path),
            MemberResult.received_at <= now,
            or_(MemberResult.current.is_(True), and_(MemberResult.cancelled_at.is_not(None), MemberResult.cancelled_at > now)),
        )
        .order_by(MemberResult.received_at, MemberResult.id)
    )
    latest: dict[int, MemberResult] = {}
    for result in uow.session.scalars(query):
        latest[result.member_id] = result
    # Rule 4: a member absent at the meeting is evaluated at the next one, and the list says so.
    absent_before = set(uow.session.scalars(
        select(MemberResult.member_id).distinct()
        .join(Member, Member.id == MemberResult.member_id)
        .join(Unit, Unit.id == Member.unit_id)
        .where(MemberResult.campaign_id == campaign_id, Unit.path.startswith(root_path), MemberResult.received_at <= now,
               MemberResult.absent.is_(True))
    ))
    order = {u.code: i for i, u in enumerate(units)}
    names = {u.code: u.name for u in units}
    # Who is not evaluated, as the plan's rule set says (a level given to them is not counted).
    not_evaluated = get_rule_set(plan.rule_set).not_evaluated_reason_by_cutoff
    cutoff = months_before(plan.evaluation_date, NEW_MEMBER_MONTHS)
    rows = []
    for member in sorted(members, key=lambda m: (order.get(m.unit_code, len(order)), m.code)):
        result = latest.get(member.id)
        reason = not_evaluated(member, cutoff)
        if member.status not in REVIEWED_STATUSES:
            note = MEMBER_STATUSES.get(member.status, member.status)
        elif reason is not None:
            note = f"{NOT_EVALUATED_NAMES.get(reason, reason)}, không đánh giá, xếp loại"
        elif result is None:
            note = "Chưa có kết quả"
        elif result.absent and result.final_level is None and result.proposed_level is None:
            note = "; ".join(filter(None, ("Vắng mặt tại hội nghị, đánh giá bổ sung sau", result.note)))
        elif member.id in absent_before:
            note = "; ".join(filter(None, ("Đánh giá bổ sung (vắng mặt tại hội nghị)", result.note)))
        else:
            note = result.note or ""
        rows.append({
            "member_id": member.code,
            "full_name": member.full_name,
            "unit_name": names.get(member.unit_code, member.unit_code),
            "self_level": result.self_level if result else None,
            "proposed_level": result.proposed_level if result else None,
            "final_level": result.final_level if result else None,
            "score": result.score if result else None,  # 366/43; the documents show it only when the rule set scores
            "evaluated": reason is None,
            "note": note,
        })
    return rows


def latest_summaries(uow: UnitOfWork, campaign_id: str, unit_code: str, now: dt.datetime) -> dict[str, dict]:
    """The newest consolidation snapshot made by ``now`` for each unit of the subtree, in tree order."""
    units = load_units(uow, campaign_id, subtree_of=unit_code)
    if not units:
        return {}
    ids = {u.id: u.code for u in units}
    rows = uow.session.execute(
        select(Snapshot.unit_id, Snapshot.payload)
        .where(Snapshot.campaign_id == campaign_id, Snapshot.unit_id.in_(list(ids)), Snapshot.created_at <= now)
        .order_by(Snapshot.unit_id, Snapshot.version)
    )
    found: dict[str, dict] = {}
    for unit_id, payload in rows:
        if isinstance(payload, dict) and SUMMARY_KEYS <= payload.keys():
            found[ids[unit_id]] = payload
    return {u.code: found[u.code] for u in units if u.code in found}


# ----------------------------------------------------------------------------- assembling


def dossier_inputs_hash(
    store: Store,
    plan: Plan,
    campaign_id: str,
    unit_code: str,
    phase_id: str,
    now: dt.datetime,
    consolidation: Mapping | None = None,
    *,
    subtree: Mapping[str, Mapping] | None = None,
    issued_on: dt.date | None = None,
) -> str:
    """Digest of everything the dossier depends on; no blob is read and nothing is rendered."""
    with store.uow() as uow:
        source = load_dossier_input(uow, plan, campaign_id, unit_code, phase_id, now, consolidation, subtree=subtree, issued_on=issued_on)
    return build_dossier(source).inputs_hash


def archive_inputs_hash(out_dir: Path, unit_code: str, phase_id: str) -> str | None:
    """The inputs hash recorded in an assembled archive, or None when there is none yet."""
    path = Path(out_dir) / archive_name(unit_code, phase_id)
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        found = read_manifest(handle)
    return None if found is None else found.get("inputs_hash")


def assemble_dossier(
    store: Store,
    plan: Plan,
    campaign_id: str,
    unit_code: str,
    phase_id: str,
    out_dir: Path,
    now: dt.datetime,
    consolidation: dict | None = None,
    *,
    subtree: Mapping[str, Mapping] | None = None,
    issued_on: dt.date | None = None,
) -> DossierResult:
    """Write the unit's dossier for the phase into ``out_dir``; idempotent (unchanged inputs: nothing written).

    ``out_dir`` is this dossier's own folder: Refused, with nothing written, when it holds the
    dossier of another unit, phase or campaign. ``consolidation`` is the unit's consolidation
    summary; ``subtree`` the summaries of its subtree by unit code (rows of the statistics table,
    and each child's summary in ``sub_units/``).
    """
    with store.uow() as uow:
        source = load_dossier_input(uow, plan, campaign_id, unit_code, phase_id, now, consolidation, subtree=subtree, issued_on=issued_on)
    dossier = build_dossier(source)
    out_dir = Path(out_dir)
    archive = out_dir / dossier.archive_name
    found = _archive_manifest(archive)
    _refuse_another_dossiers_folder(out_dir, dossier, found)
    if _up_to_date(out_dir, dossier, found):
        return _result(dossier, out_dir, archive, _sha256_file(archive), ())

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = render_outputs(dossier)
    written = [name for name, data in outputs.items() if _write_if_changed(out_dir / name, data)]
    if consolidation is None:
        # Documents of an earlier run with a consolidation would now describe another state.
        for name in CONSOLIDATION_OUTPUTS:
            if (out_dir / name).is_file():
                (out_dir / name).unlink()
                written.append(name)
    sha, archive_changed = _write_archive(out_dir, archive, dossier, outputs, store)
    if archive_changed:
        written.append(archive.name)
    return _result(dossier, out_dir, archive, sha, tuple(written))


def _result(dossier: Dossier, out_dir: Path, archive: Path, sha: str, written: tuple[str, ...]) -> DossierResult:
    return DossierResult(
        unit_code=dossier.source.unit.code,
        phase_id=dossier.source.phase.id,
        out_dir=out_dir,
        archive=archive,
        sha256=sha,
        changed=bool(written),
        inputs_hash=dossier.inputs_hash,
        written=written,
        outputs=tuple(dossier.output_names),
        checklist=dossier.checklist,
        consolidation_version=consolidation_version(dossier),
    )


def _archive_manifest(archive: Path) -> dict | None:
    if not archive.is_file():
        return None
    with open(archive, "rb") as handle:
        return read_manifest(handle)


def _refuse_another_dossiers_folder(out_dir: Path, dossier: Dossier, found: dict | None) -> None:
    """Refused when ``out_dir`` holds another dossier: this one would replace its checklist and documents."""
    source = dossier.source
    mine = f"{source.unit.code} · {source.phase.id}"
    try:
        checklist = json.loads((out_dir / CHECKLIST_JSON).read_text(encoding="utf-8"))
        theirs = (checklist["unit"]["code"], checklist["phase"]["id"])
    except (OSError, ValueError, KeyError, TypeError):
        theirs = None  # none yet, or a damaged one of ours: rewritten like any damaged output
    if theirs is not None and theirs != (source.unit.code, source.phase.id):
        raise Refused(
            f"thư mục '{out_dir}' đang chứa hồ sơ {theirs[0]} · {theirs[1]}; hồ sơ {mine} sẽ ghi đè lên các tệp của hồ sơ đó, "
            f"nên không được ghi — hãy chọn thư mục khác"
        )
    # Same unit and phase in another campaign: only the archive's manifest names the campaign.
    campaign = found.get("campaign") if found else None
    if campaign is not None and campaign != source.campaign_id:
        raise Refused(
            f"thư mục '{out_dir}' đang chứa hồ sơ {mine} của đợt '{campaign}'; hồ sơ của đợt '{source.campaign_id}' "
            f"sẽ ghi đè lên hồ sơ đó, nên không được ghi — hãy chọn thư mục khác"
        )


def _up_to_date(out_dir: Path, dossier: Dossier, found: dict | None) -> bool:
    """The archive (its manifest ``found``) records these very inputs and every output is there: nothing to do."""
    if found is None or any(not (out_dir / name).is_file() for name in dossier.output_names):
        return False
    return found.get("inputs_hash") == dossier.inputs_hash


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    _replace_atomically(path, lambda handle: handle.write(data))
    return True


def _replace_atomically(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_archive(out_dir: Path, archive: Path, dossier: Dossier, outputs: dict[str, bytes], store: Store) -> tuple[str, bool]:
    """Write the ZIP beside the old one; keep the old file (untouched) when the bytes are the same."""
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{archive.name}.")
    try:
        with os.fdopen(fd, "w+b") as handle:
            write_archive(handle, dossier, outputs, lambda sha: open(store.blobs.path(sha), "rb"))
            handle.flush()
            os.fsync(handle.fileno())
        sha = _sha256_file(Path(tmp))
        if archive.is_file() and _sha256_file(archive) == sha:
            os.unlink(tmp)
            return sha, False
        os.replace(tmp, archive)
        return sha, True
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
