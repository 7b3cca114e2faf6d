"""Results intake: classification lists submitted as documents become result rows.

A structured submission (``tong_hop_xep_loai_dang_vien``, ``ket_qua_xep_loai_chi_bo``,
``quyet_dinh_xep_loai``) arrives like any document (``record_submission``) and is read here once,
by ``ingest_results``: the current submission of each item received by ``now`` that has not been
read yet. Its CSV/XLSX files are taken from the blob store and parsed
(``kiemdiem.results``):

- a member list covers the members of the submitting unit's subtree (a branch: its own
  members; a committee: everyone below it);
- an organization list covers the submitting unit itself (its self-assessment,
  ``decided_by`` None) and, for a committee's decision, the organizations below it
  (``decided_by`` = the committee);
- ``quyet_dinh_xep_loai`` may be either: the file's columns say which.

Every parsed result becomes a new row that supersedes the subject's current row (which stays,
``current`` False: nothing is deleted). A result equal to the current one adds nothing. A list
covers only the members it names, so a supplement with the absent members' results touches only
them. When a different unit sends the next result for a member (the committee deciding on a
branch's proposal), what its file does not carry (a column empty in every row, such as the
self-assessment in a decision list) is kept from the current row.

A file that does not parse is not lost: the submission stays stored, the problems (file, row,
column, reason) are logged as ``results.refused``, and the results already current stay current.
The submission is marked ``refused_at``: it no longer counts as delivered (status, reminders,
dossiers), so the unit is asked for the list again: the notices about its item that were
cancelled as delivered since it arrived are reopened (``_reopen_notices``); composing cancels
them again if an earlier list still counts, or a reminder's deadline has passed.

Every write records which units changed in the event log (``CHANGE_ACTIONS``) under the
campaign's consolidation lock (``lock_campaign``), so consolidation can tell what to rerun even
after a crash between the two. ``cancel_result`` and ``override_finding`` do the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from kiemdiem.calendar import format_instant
from kiemdiem.catalogue import DOCUMENTS
from kiemdiem.consolidation import MemberRecord, finding_from_dict
from kiemdiem.consolidation import MemberResult as MemberResultValue
from kiemdiem.consolidation import OrgResult as OrgResultValue
from kiemdiem.errors import InvalidInput, NotFound, Problem, Refused
from kiemdiem.plan import Plan
from kiemdiem.results import MEMBER_COLUMNS, ORG_COLUMNS, parse_member_results, parse_org_results
from kiemdiem.rules.base import NEW_MEMBER_MONTHS, covers, get_rule_set, months_before, unit_of_key
from kiemdiem.store.blobs import BlobStore
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import (
    EventLog,
    FindingOverride,
    Lease,
    Member,
    MemberResult,
    Notice,
    OrgResult,
    Snapshot,
    Submission,
    SubmissionFile,
    Unit,
)
from kiemdiem.tabular import MISSING_COLUMN, name_columns, read_table

MEMBER_LIST = "tong_hop_xep_loai_dang_vien"
ORG_LIST = "ket_qua_xep_loai_chi_bo"
DECISION = "quyet_dinh_xep_loai"
STRUCTURED_DOC_TYPES = tuple(code for code, doc in DOCUMENTS.items() if doc.structured)
TABULAR_SUFFIXES = (".csv", ".xlsx", ".xlsm")

# Event-log actions that change what consolidation reads; detail["changed_units"] lists the
# units and detail["effective_at"] the moment from which the change counts.
CHANGE_ACTIONS = ("results.ingested", "results.recorded", "result.cancelled", "finding.overridden")
REFUSED_ACTION = "results.refused"

# Rows per IN (...) list or UPDATE; well under SQLite's and PostgreSQL's bound-parameter limits.
ID_CHUNK = 5000

MEMBER_FIELDS = (
    "self_level", "proposed_level", "final_level", "disciplined", "sick_leave_months", "absent", "score", "note",
    "has_self_review",
)
ORG_FIELDS = ("self_level", "level", "decided_by_id", "disciplined", "note")


@dataclass(frozen=True)
class RefusedFile:
    submission_id: int
    unit_code: str
    doc_type: str
    problems: tuple[Problem, ...]

    def as_dict(self) -> dict:
        return {
            "submission_id": self.submission_id,
            "unit_code": self.unit_code,
            "doc_type": self.doc_type,
            "problems": [p.as_dict() for p in self.problems],
        }


@dataclass
class IngestReport:
    ingested: list[int] = field(default_factory=list)  # submission ids read and recorded
    refused: list[RefusedFile] = field(default_factory=list)
    member_rows: int = 0  # new member_results rows
    org_rows: int = 0  # new org_results rows
    changed_units: set[str] = field(default_factory=set)  # units whose own results changed
    # Results a lower unit sent after a committee above it decided them: they change no result,
    # the decision stands, the file stays with its submission (``_Writer``):
    # {"submission_id", "unit_code", "subject", "decided_by"}.
    kept_decisions: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "ingested": list(self.ingested),
            "refused": [r.as_dict() for r in self.refused],
            "member_rows": self.member_rows,
            "org_rows": self.org_rows,
            "changed_units": sorted(self.changed_units),
            "kept_decisions": list(self.kept_decisions),
        }


# --------------------------------------------------------------------------- locking


def lease_name(campaign_id: str) -> str:
    return f"consolidation:{campaign_id}"


def lock_campaign(uow: UnitOfWork, campaign_id: str) -> None:
    """Serialise result writes and consolidation runs of one campaign until the transaction ends.

    Call it first in the unit of work. PostgreSQL: a row lock on the campaign's lease row (the
    upsert below takes it, as ``SELECT ... FOR UPDATE`` would). SQLite: the insert below opens the write transaction, which
    holds the database's single write lock (later reads in the transaction see the newest data).
    """
    session = uow.session
    dialect = session.get_bind().dialect.name
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    name = lease_name(campaign_id)
    if dialect == "postgresql":
        # Created if need be and locked in one statement: an upsert's update locks the row.
        statement = insert_(Lease).values(name=name, holder=None, expires_at=None)
        session.execute(statement.on_conflict_do_update(index_elements=["name"], set_={"name": statement.excluded.name}))
        return
    session.execute(insert_(Lease).values(name=name, holder=None, expires_at=None).on_conflict_do_nothing(index_elements=["name"]))


def log_change(uow: UnitOfWork, campaign_id: str, action: str, subject: str, actor: str, now: dt.datetime,
               changed_units: Iterable[str], effective_at: dt.datetime, **detail) -> None:
    uow.session.add(
        EventLog(
            campaign_id=campaign_id, at=now, actor=actor, action=action, subject=subject,
            detail={"changed_units": sorted(set(changed_units)), "effective_at": effective_at.isoformat(), **detail},
        )
    )


# --------------------------------------------------------------------------- the campaign's tree


@dataclass
class _Tree:
    """Units and members of a campaign as plain values, loaded once per pass."""

    unit_id: dict[str, int]
    unit_code: dict[int, str]
    unit_name: dict[str, str]
    parent: dict[str, str | None]
    children: dict[str, list[str]]
    member_pk: dict[str, int]
    member_unit: dict[str, str]  # member code -> official unit code
    not_evaluated: set[str]  # member codes not evaluated (exempt, suspended, new)

    def subtree(self, code: str) -> set[str]:
        out, stack = set(), [code]
        while stack:
            current = stack.pop()
            if current not in out:
                out.add(current)
                stack.extend(self.children.get(current, ()))
        return out


def _load_tree(uow: UnitOfWork, plan: Plan, campaign_id: str, member_units: Iterable[str] | None = None) -> _Tree:
    """Units, and the members of ``member_units`` (None: every member)."""
    tree = _load_units(uow, campaign_id)
    _load_members(uow, plan, campaign_id, tree, member_units)
    return tree


def _load_units(uow: UnitOfWork, campaign_id: str) -> _Tree:
    session = uow.session
    rows = session.execute(select(Unit.id, Unit.code, Unit.name, Unit.parent_id).where(Unit.campaign_id == campaign_id)).all()
    unit_code = {uid: code for uid, code, _, _ in rows}
    parent = {code: unit_code.get(pid) if pid is not None else None for _, code, _, pid in rows}
    children: dict[str, list[str]] = {}
    for code, p in parent.items():
        if p is not None:
            children.setdefault(p, []).append(code)
    tree = _Tree(
        unit_id={code: uid for uid, code in unit_code.items()},
        unit_code=unit_code,
        unit_name={code: name for _, code, name, _ in rows},
        parent=parent,
        children=children,
        member_pk={},
        member_unit={},
        not_evaluated=set(),
    )
    return tree


def _load_members(uow: UnitOfWork, plan: Plan, campaign_id: str, tree: _Tree, member_units: Iterable[str] | None,
                  member_codes: Iterable[str] | None = None) -> None:
    """The members of ``member_units``, or those named in ``member_codes``, or (both None) every member."""
    session = uow.session
    unit_code = tree.unit_code
    query = select(Member.id, Member.member_code, Member.unit_id, Member.status, Member.joined_on).where(Member.campaign_id == campaign_id)
    if member_codes is not None:
        batches = [query.where(Member.member_code.in_(chunk)) for chunk in _chunks(sorted(set(member_codes)))]
    elif member_units is None:
        batches = [query]
    else:
        ids = sorted(tree.unit_id[c] for c in set(member_units) if c in tree.unit_id)
        batches = [query.where(Member.unit_id.in_(chunk)) for chunk in _chunks(ids)]
    rule_set = get_rule_set(plan.rule_set)
    cutoff = months_before(plan.evaluation_date, NEW_MEMBER_MONTHS)
    for batch in batches:
        for pk, code, unit_id, status, joined_on in session.execute(batch):
            tree.member_pk[code] = pk
            tree.member_unit[code] = unit_code[unit_id]
            record = MemberRecord(code, "", unit_code[unit_id], status, joined_on, ())
            if rule_set.not_evaluated_reason_by_cutoff(record, cutoff) is not None:
                tree.not_evaluated.add(code)


# --------------------------------------------------------------------------- writing rows


@dataclass
class _Current:
    ref: int  # row id (in_db) or index into the pending list
    in_db: bool
    received_at: dt.datetime
    submitter_id: int
    values: dict


def _chunks(items: Sequence, size: int = ID_CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


_DECISION_FIELDS = frozenset({"final_level", "note"})


class _Writer:
    """Applies results in order, in memory, then writes them in a few bulk statements."""

    def __init__(self, uow: UnitOfWork, campaign_id: str, tree: _Tree):
        self.uow, self.campaign_id, self.tree = uow, campaign_id, tree
        self.member_state: dict[int, _Current | None] = {}
        # A member's newest cancelled row, when newer than their current one (or they have none):
        # a result received before it is history only, as consolidation reads it (newest row first).
        self.member_cancelled: dict[int, dt.datetime] = {}
        # The values of a member's newest cancelled row when they have no current one: what the
        # branch said of them still holds when the committee decides again (``member``).
        self.member_voided: dict[int, dict] = {}
        self.org_state: dict[int, _Current | None] = {}
        self.member_rows: list[dict] = []
        self.org_rows: list[dict] = []
        self.superseded_members: list[int] = []
        self.superseded_orgs: list[int] = []
        self.kept_decisions: list[tuple[str, int]] = []  # (member id or unit code, deciding unit id); the ingest takes them per submission

    def _decided_above(self, current: _Current | None, submitter_id: int, received_at: dt.datetime) -> bool:
        """Whether ``current`` was decided by a unit above ``submitter_id``: a committee's decision
        is not undone by a list its branch sends later (the branch proposes, the committee decides),
        which changes no result (its file stays with its submission; the ingest reports it). A
        result received before the decision is history anyway."""
        if current is None or current.submitter_id == submitter_id or received_at < current.received_at:
            return False
        upper = self.tree.unit_code.get(current.submitter_id)
        code = self.tree.parent.get(self.tree.unit_code.get(submitter_id, ""))
        while code is not None:
            if code == upper:
                return True
            code = self.tree.parent.get(code)
        return False

    # Current rows are loaded for the subjects about to be written, in chunks.
    def preload_members(self, member_pks: Iterable[int]) -> None:
        wanted = sorted({pk for pk in member_pks if pk not in self.member_state})
        for pk in wanted:
            self.member_state[pk] = None
        columns = [getattr(MemberResult, f) for f in MEMBER_FIELDS]
        for chunk in _chunks(wanted):
            query = select(MemberResult.id, MemberResult.member_id, MemberResult.unit_id, MemberResult.received_at, *columns).where(
                MemberResult.campaign_id == self.campaign_id, MemberResult.current.is_(True), MemberResult.member_id.in_(chunk)
            )
            for row_id, member_pk, unit_id, received_at, *values in self.uow.session.execute(query):
                self._keep_newest(self.member_state, member_pk, _Current(row_id, True, received_at, unit_id, dict(zip(MEMBER_FIELDS, values))))
            cancelled = (
                select(MemberResult.member_id, func.max(MemberResult.received_at))
                .where(MemberResult.campaign_id == self.campaign_id, MemberResult.cancelled_at.is_not(None), MemberResult.member_id.in_(chunk))
                .group_by(MemberResult.member_id)
            )
            for member_pk, received_at in self.uow.session.execute(cancelled):
                self.member_cancelled[member_pk] = received_at
            voided = [pk for pk in chunk if self.member_state[pk] is None and pk in self.member_cancelled]
            if voided:
                newest = (
                    select(MemberResult.member_id, *columns)
                    .where(MemberResult.campaign_id == self.campaign_id, MemberResult.cancelled_at.is_not(None), MemberResult.member_id.in_(voided))
                    .order_by(MemberResult.member_id, MemberResult.received_at, MemberResult.id)
                )
                for member_pk, *values in self.uow.session.execute(newest):
                    self.member_voided[member_pk] = dict(zip(MEMBER_FIELDS, values))  # the newest comes last

    def preload_orgs(self, unit_ids: Iterable[int]) -> None:
        wanted = sorted({uid for uid in unit_ids if uid not in self.org_state})
        for uid in wanted:
            self.org_state[uid] = None
        columns = [getattr(OrgResult, f) for f in ORG_FIELDS]
        for chunk in _chunks(wanted):
            query = select(OrgResult.id, OrgResult.unit_id, OrgResult.received_at, OrgResult.submission_id, *columns).where(
                OrgResult.campaign_id == self.campaign_id, OrgResult.current.is_(True), OrgResult.unit_id.in_(chunk)
            )
            submitters = self._submitters(chunk)
            for row_id, unit_id, received_at, submission_id, *values in self.uow.session.execute(query):
                # Recorded without a file: the deciding committee, else the organization itself.
                submitter = submitters.get(submission_id) or values[ORG_FIELDS.index("decided_by_id")] or unit_id
                self._keep_newest(self.org_state, unit_id, _Current(row_id, True, received_at, submitter, dict(zip(ORG_FIELDS, values))))

    def _submitters(self, unit_ids: Sequence[int]) -> dict[int, int]:
        """Submission id -> submitting unit, for the org rows of ``unit_ids`` (org rows have no submitter column)."""
        query = (
            select(Submission.id, Submission.unit_id)
            .join(OrgResult, OrgResult.submission_id == Submission.id)
            .where(OrgResult.campaign_id == self.campaign_id, OrgResult.current.is_(True), OrgResult.unit_id.in_(unit_ids))
        )
        return dict(self.uow.session.execute(query).all())

    @staticmethod
    def _keep_newest(state: dict, key: int, candidate: _Current) -> None:
        # Two rows flagged current for one subject should not happen; the newest wins.
        current = state.get(key)
        if current is None or (candidate.received_at, candidate.ref) > (current.received_at, current.ref):
            state[key] = candidate

    def _apply(self, state: dict, pending: list[dict], superseded: list[int], key: int, values: dict,
               submitter_id: int, received_at: dt.datetime, base: dict, newest_cancelled: dt.datetime | None = None) -> bool:
        """Queue a row for ``key``; returns True when the subject's current result changed."""
        current = state.get(key)
        if current is not None and current.submitter_id == submitter_id and current.values == values:
            return False
        is_current = (current is None or received_at >= current.received_at) and (
            newest_cancelled is None or received_at >= newest_cancelled
        )
        pending.append({**base, **values, "received_at": received_at, "current": is_current})
        if not is_current:
            return False  # an older result arriving late: kept as history only
        if current is not None:
            if current.in_db:
                superseded.append(current.ref)
            else:
                pending[current.ref]["current"] = False
        state[key] = _Current(len(pending) - 1, False, received_at, submitter_id, values)
        return current is None or current.values != values

    def member(self, result: MemberResultValue, submitter_id: int, received_at: dt.datetime,
               submission_id: int | None, carried: frozenset[str]) -> str | None:
        """Queue one member result; returns the member's unit code when their result changed."""
        pk = self.tree.member_pk[result.member_id]
        if pk not in self.member_state:
            self.preload_members([pk])
        values = {f: getattr(result, f) for f in MEMBER_FIELDS}
        current = self.member_state.get(pk)
        if current is not None and current.submitter_id != submitter_id:
            values = {f: values[f] if f in carried else current.values[f] for f in MEMBER_FIELDS}
            if "note" not in carried and values["final_level"] != current.values["final_level"]:
                values["note"] = ""  # a note explains its own decision, not another level
        elif current is None and pk in self.member_voided:
            # Decided again after a cancellation (rule 8): the cancelled decision and its note are
            # void, what the list it carried said of the member (discipline, proposals…) is not.
            voided = self.member_voided[pk]
            values = {f: values[f] if f in carried or f in _DECISION_FIELDS else voided[f] for f in MEMBER_FIELDS}
        base = {"campaign_id": self.campaign_id, "member_id": pk, "unit_id": submitter_id, "submission_id": submission_id}
        if self._decided_above(current, submitter_id, received_at):
            if current.values != values:
                self.kept_decisions.append((result.member_id, current.submitter_id))
            return None  # the file stays stored with its submission; the decision stands
        changed = self._apply(
            self.member_state, self.member_rows, self.superseded_members, pk, values, submitter_id, received_at, base,
            self.member_cancelled.get(pk),
        )
        return self.tree.member_unit[result.member_id] if changed else None

    def org(self, result: OrgResultValue, submitter_id: int, received_at: dt.datetime,
            submission_id: int | None, carried: frozenset[str]) -> str | None:
        uid = self.tree.unit_id[result.unit_code]
        if uid not in self.org_state:
            self.preload_orgs([uid])
        values = {
            "self_level": result.self_level,
            "level": result.level,
            "decided_by_id": self.tree.unit_id[result.decided_by] if result.decided_by else None,
            "disciplined": result.disciplined,
            "note": "",
        }
        current = self.org_state.get(uid)
        if current is not None and current.submitter_id != submitter_id:
            kept = dict(current.values)
            for f in ("self_level", "disciplined", "note"):
                if f in carried:
                    kept[f] = values[f]
            if "level" in carried:
                kept["level"], kept["decided_by_id"] = values["level"], values["decided_by_id"]
            values = kept
        base = {"campaign_id": self.campaign_id, "unit_id": uid, "submission_id": submission_id}
        if self._decided_above(current, submitter_id, received_at):
            if current.values != values:
                self.kept_decisions.append((result.unit_code, current.submitter_id))
            return None
        changed = self._apply(self.org_state, self.org_rows, self.superseded_orgs, uid, values, submitter_id, received_at, base)
        return result.unit_code if changed else None

    def flush(self) -> tuple[int, int]:
        session = self.uow.session
        for chunk in _chunks(sorted(set(self.superseded_members))):
            session.execute(update(MemberResult).where(MemberResult.id.in_(chunk)).values(current=False))
        for chunk in _chunks(sorted(set(self.superseded_orgs))):
            session.execute(update(OrgResult).where(OrgResult.id.in_(chunk)).values(current=False))
        written = len(self.member_rows), len(self.org_rows)
        for chunk in _chunks(self.member_rows):
            session.execute(insert(MemberResult), chunk)
        for chunk in _chunks(self.org_rows):
            session.execute(insert(OrgResult), chunk)
        # Rows now in the database: later writes in this pass compare against them as they are.
        self.member_state.clear()
        self.org_state.clear()
        self.member_rows, self.org_rows = [], []
        self.superseded_members, self.superseded_orgs = [], []
        return written


# --------------------------------------------------------------------------- parsing one submission


@dataclass
class _Parsed:
    members: list[MemberResultValue] = field(default_factory=list)
    member_carried: frozenset[str] = frozenset(MEMBER_FIELDS)
    orgs: list[OrgResultValue] = field(default_factory=list)
    org_carried: frozenset[str] = frozenset(("self_level", "level", "disciplined", "note"))


def _carried(rows, columns: dict[str, str]) -> frozenset[str]:
    """Fields whose column holds a value in at least one row: what the file really says."""
    present = {name for name in columns if any(row.values.get(name, "").strip() for row in rows)}
    return frozenset(columns[name] for name in present)


_MEMBER_COLUMN_FIELDS = {
    "self_level": "self_level", "proposed_level": "proposed_level", "final_level": "final_level",
    "disciplined": "disciplined", "sick_leave_months": "sick_leave_months", "absent": "absent",
    "score": "score", "note": "note", "self_review": "has_self_review",
}
_ORG_COLUMN_FIELDS = {"self_level": "self_level", "level": "level", "disciplined": "disciplined"}


def _missing_key_column(exc: InvalidInput, key: str) -> bool:
    """Whether the header (wherever a title block put it) lacks the column ``key``."""
    return any(p.field == key and p.reason == MISSING_COLUMN for p in exc.problems)


def _parse_members(source: Path, data: bytes, submitter: str, tree: _Tree) -> _Parsed:
    subtree = tree.subtree(submitter)
    known = {code for code, unit in tree.member_unit.items() if unit in subtree}
    results = parse_member_results(source, submitter, known, data=data, not_evaluated_ids=tree.not_evaluated & known)
    rows = read_table(source, MEMBER_COLUMNS, required={"member_id"}, data=data)
    carried = set(_carried(rows, _MEMBER_COLUMN_FIELDS))
    if "self_level" in carried:
        carried.add("has_self_review")  # a blank self-level then means no self-review (see kiemdiem.results)
    return _Parsed(members=results, member_carried=frozenset(carried))


def _parse_orgs(source: Path, data: bytes, submitter: str, tree: _Tree, decision: bool) -> _Parsed:
    results = parse_org_results(source, submitter, set(tree.unit_id), data=data)
    rows = read_table(source, ORG_COLUMNS, required={"unit"}, data=data)
    subtree = tree.subtree(submitter)
    problems = []
    out = []
    for row, result in zip(rows, results):
        if result.unit_code not in subtree:
            problems.append(Problem(str(source), f"tổ chức đảng {result.unit_code} không thuộc {tree.unit_name[submitter]} ({submitter})", row=row.number, field="unit"))
        elif result.unit_code == submitter and decision:
            problems.append(Problem(str(source), f"cấp ủy {submitter} không tự quyết định xếp loại tổ chức mình; cấp trên quyết định", row=row.number, field="unit"))
        else:
            out.append(OrgResultValue(result.unit_code, result.level, None if result.unit_code == submitter else submitter, result.disciplined, result.self_level))
    if problems:
        raise InvalidInput(name_columns(problems, source, ORG_COLUMNS, data))
    return _Parsed(orgs=out, org_carried=_carried(rows, _ORG_COLUMN_FIELDS))


def _parse_file(source: Path, data: bytes, doc_type: str, submitter: str, tree: _Tree) -> _Parsed:
    """Parse one file of a structured submission; raises InvalidInput naming every bad row."""
    if doc_type == MEMBER_LIST:
        return _parse_members(source, data, submitter, tree)
    if doc_type == ORG_LIST:
        return _parse_orgs(source, data, submitter, tree, decision=False)
    # A decision is on members or on organizations: the key column tells which.
    try:
        return _parse_members(source, data, submitter, tree)
    except InvalidInput as exc:
        if not _missing_key_column(exc, "member_id"):
            raise
    try:
        return _parse_orgs(source, data, submitter, tree, decision=True)
    except InvalidInput as exc:
        if not _missing_key_column(exc, "unit"):
            raise
    raise InvalidInput(
        Problem(
            str(source),
            "không nhận ra danh sách: cần cột 'Mã đảng viên' (quyết định xếp loại đảng viên) "
            "hoặc cột 'Mã đơn vị' (quyết định xếp loại tổ chức đảng)",
            row=1,
        )
    )


def _parse_submission(blobs: BlobStore, files: list[SubmissionFile], doc_type: str, submitter: str, tree: _Tree) -> list[tuple[_Parsed, str]]:
    """All tabular files of one stored submission, parsed; InvalidInput with every problem of every file."""
    prefix = f"{submitter}/{doc_type}"

    def stored(f: SubmissionFile):
        def read() -> bytes:
            try:
                return blobs.read(f.sha256)
            except OSError as exc:
                raise InvalidInput(Problem(f"{prefix}/{f.filename}", f"không đọc được tệp đã lưu ({f.sha256[:12]}…): {exc.strerror or exc}")) from exc
        return read

    named = [(f.filename, stored(f)) for f in sorted(files, key=lambda f: (f.filename, f.id))]
    return _parse_files(named, doc_type, submitter, tree, prefix + "/")


def _parse_files(named: list[tuple[str, Callable[[], bytes]]], doc_type: str, submitter: str, tree: _Tree,
                 prefix: str = "") -> list[tuple[_Parsed, str]]:
    """(file name, its bytes) of one submission: each tabular file parsed; problems named ``prefix + name``."""
    tabular = [(name, read) for name, read in named if Path(name).suffix.lower() in TABULAR_SUFFIXES]
    if not tabular:
        names = ", ".join(name for name, _ in named) or "không có tệp"
        raise InvalidInput(Problem(
            prefix or names,
            f"không có tệp CSV hoặc XLSX để đọc kết quả ({names}); danh sách phải là tệp .csv hoặc .xlsx "
            "(tệp Excel 97-2003 .xls: mở bằng Excel và lưu lại dạng .xlsx)",
        ))
    problems: list[Problem] = []
    parsed: list[tuple[_Parsed, str]] = []
    seen_members: dict[str, str] = {}
    seen_units: dict[str, str] = {}
    for name, read in tabular:
        source = Path(prefix + name)
        try:
            result = _parse_file(source, read(), doc_type, submitter, tree)
        except InvalidInput as exc:
            problems.extend(exc.problems)
            continue
        for r in result.members:
            if r.member_id in seen_members:
                problems.append(Problem(str(source), f"đảng viên {r.member_id} đã có trong tệp {seen_members[r.member_id]}", field="member_id"))
            seen_members[r.member_id] = name
        for r in result.orgs:
            if r.unit_code in seen_units:
                problems.append(Problem(str(source), f"tổ chức đảng {r.unit_code} đã có trong tệp {seen_units[r.unit_code]}", field="unit"))
            seen_units[r.unit_code] = name
        parsed.append((result, name))
    if problems:
        raise InvalidInput(problems)
    return parsed


def check_result_files(uow: UnitOfWork, plan: Plan, campaign_id: str, unit_code: str, doc_type: str,
                       files: Sequence[tuple[str, bytes]]) -> None:
    """Read a classification list as the ingest will, before it is stored: raises InvalidInput
    naming each file, row and field, so that a list that cannot be read is refused at the door
    (it would otherwise replace the unit's readable list and count as delivered). Does nothing
    for a document that is not a list. The ingest reads it again against the tree of its time."""
    if doc_type not in STRUCTURED_DOC_TYPES:
        return
    tree = _load_units(uow, campaign_id)
    if unit_code not in tree.unit_id:
        raise NotFound(f"đơn vị không tồn tại: '{unit_code}'")
    _load_members(uow, plan, campaign_id, tree, tree.subtree(unit_code))
    _parse_files([(name, lambda data=data: data) for name, data in sorted(files)], doc_type, unit_code, tree)


# --------------------------------------------------------------------------- ingest


def _processed_submissions(uow: UnitOfWork, campaign_id: str, candidates: list[int]) -> set[int]:
    """Submissions already read: logged as ingested or refused, or (written by other code) with result rows."""
    session = uow.session
    done: set[int] = set()
    for chunk in _chunks(candidates):
        subjects = [f"submission:{i}" for i in chunk]
        for subject in session.scalars(
            select(EventLog.subject).where(
                EventLog.campaign_id == campaign_id,
                EventLog.action.in_(("results.ingested", REFUSED_ACTION)),
                EventLog.subject.in_(subjects),
            )
        ):
            done.add(int(subject.split(":", 1)[1]))
    rest = [i for i in candidates if i not in done]
    for chunk in _chunks(rest):
        done.update(session.scalars(select(MemberResult.submission_id).where(MemberResult.submission_id.in_(chunk)).distinct()))
        done.update(session.scalars(select(OrgResult.submission_id).where(OrgResult.submission_id.in_(chunk)).distinct()))
    return done


def pending_submissions(uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> list[Submission]:
    """Structured submissions received by ``now`` and not read yet, oldest first.

    Every one, not only each item's newest: a list covers only the members it names, so a list
    and its supplement sent between two ticks give what they give with a tick between them (the
    supplement's members from it, the others from the first list; the newer row wins a member
    both name, the older stays as history)."""
    rows = uow.session.scalars(
        select(Submission).where(
            Submission.campaign_id == campaign_id,
            Submission.doc_type.in_(STRUCTURED_DOC_TYPES),
            Submission.received_at <= now,
        )
    ).all()
    candidates = sorted(rows, key=lambda s: (s.received_at, s.id))
    done = _processed_submissions(uow, campaign_id, [s.id for s in candidates])
    return [s for s in candidates if s.id not in done]


def _reopen_notices(uow: UnitOfWork, sub: Submission) -> None:
    """Notices about ``sub``'s item not sent and cancelled since it arrived: planned again as they
    were (the planner never plans a step twice). Composing re-checks each one first."""
    uow.session.execute(
        update(Notice)
        .where(
            # By unit first: its index (``ix_notices_unit``) finds the item's few notices among millions.
            Notice.unit_id == sub.unit_id, Notice.campaign_id == sub.campaign_id, Notice.item_key == sub.item_key,
            Notice.outbox_id.is_(None),
            Notice.cancelled_at >= sub.received_at,
        )
        .values(cancelled_at=None)
    )


def ingest_pending(uow: UnitOfWork, blobs: BlobStore, plan: Plan, campaign_id: str, now: dt.datetime, *, actor: str = "tick") -> IngestReport:
    """Read every pending structured submission (the caller commits). See the module docstring."""
    lock_campaign(uow, campaign_id)
    report = IngestReport()
    pending = pending_submissions(uow, campaign_id, now)
    if not pending:
        return report
    session = uow.session
    tree = _load_units(uow, campaign_id)
    submitters = {tree.unit_code[s.unit_id] for s in pending}
    _load_members(uow, plan, campaign_id, tree, set().union(*(tree.subtree(c) for c in submitters)))
    files: dict[int, list[SubmissionFile]] = {}
    for chunk in _chunks([s.id for s in pending]):
        for f in session.scalars(select(SubmissionFile).where(SubmissionFile.submission_id.in_(chunk))):
            files.setdefault(f.submission_id, []).append(f)

    parsed: list[tuple[Submission, list[tuple[_Parsed, str]]]] = []
    for sub in pending:
        submitter = tree.unit_code[sub.unit_id]
        try:
            parsed.append((sub, _parse_submission(blobs, files.get(sub.id, []), sub.doc_type, submitter, tree)))
        except InvalidInput as exc:
            refused = RefusedFile(sub.id, submitter, sub.doc_type, tuple(exc.problems))
            report.refused.append(refused)
            sub.refused_at = now  # no longer a delivery: the item is owed again
            _reopen_notices(uow, sub)
            session.add(
                EventLog(
                    campaign_id=campaign_id, at=now, actor=actor, action=REFUSED_ACTION, subject=f"submission:{sub.id}",
                    detail={**refused.as_dict(), "item_key": sub.item_key, "problems_text": [str(p) for p in exc.problems]},
                )
            )

    writer = _Writer(uow, campaign_id, tree)
    writer.preload_members(tree.member_pk[r.member_id] for _, results in parsed for p, _ in results for r in p.members)
    writer.preload_orgs(tree.unit_id[r.unit_code] for _, results in parsed for p, _ in results for r in p.orgs)
    for sub, results in parsed:
        changed: set[str] = set()
        before = len(writer.member_rows), len(writer.org_rows)
        for p, _filename in results:
            for r in p.members:
                code = writer.member(r, sub.unit_id, sub.received_at, sub.id, p.member_carried)
                if code:
                    changed.add(code)
            for r in p.orgs:
                code = writer.org(r, sub.unit_id, sub.received_at, sub.id, p.org_carried)
                if code:
                    changed.add(code)
        report.ingested.append(sub.id)
        report.changed_units |= changed
        kept = [
            {"submission_id": sub.id, "unit_code": tree.unit_code[sub.unit_id], "subject": subject, "decided_by": tree.unit_code[by]}
            for subject, by in writer.kept_decisions
        ]
        writer.kept_decisions = []
        report.kept_decisions.extend(kept)
        log_change(
            uow, campaign_id, "results.ingested", f"submission:{sub.id}", actor, now, changed, sub.received_at,
            submission_id=sub.id, unit_code=tree.unit_code[sub.unit_id], doc_type=sub.doc_type, item_key=sub.item_key,
            member_rows=len(writer.member_rows) - before[0], org_rows=len(writer.org_rows) - before[1],
            files=[name for _, name in results], kept_decisions=[{k: d[k] for k in ("subject", "decided_by")} for d in kept],
        )
    report.member_rows, report.org_rows = writer.flush()
    return report


def ingest_results(store: Store, plan: Plan, campaign_id: str, now: dt.datetime, *, actor: str = "tick") -> IngestReport:
    """One pass of results intake in its own transaction (see ``ingest_pending``)."""
    with store.uow() as uow:
        report = ingest_pending(uow, store.blobs, plan, campaign_id, now, actor=actor)
        uow.commit()
    return report


# --------------------------------------------------------------------------- direct recording


def record_results(
    uow: UnitOfWork,
    plan: Plan,
    campaign_id: str,
    received_at: dt.datetime,
    member_results: Iterable[MemberResultValue] = (),
    org_results: Iterable[OrgResultValue] = (),
    *,
    now: dt.datetime | None = None,
    actor: str = "cli",
) -> set[str]:
    """Record parsed results as they are (no file, no merging); the caller commits.

    ``MemberResult.unit_code`` and ``OrgResult.decided_by`` are unit codes of the campaign; the
    submitting unit of a member result is its ``unit_code``. Raises InvalidInput naming every
    unknown member or unit, writing nothing. Returns the units whose results changed.
    """
    member_results, org_results = list(member_results), list(org_results)
    lock_campaign(uow, campaign_id)
    # Only the members named: a late branch's list must not load the whole country's members.
    tree = _load_units(uow, campaign_id)
    _load_members(uow, plan, campaign_id, tree, None, member_codes=[r.member_id for r in member_results])
    problems = []
    for i, r in enumerate(member_results, start=1):
        if r.member_id not in tree.member_pk:
            problems.append(Problem("kết quả đảng viên", f"đảng viên không tồn tại: '{r.member_id}'", row=i, field="member_id"))
        if r.unit_code not in tree.unit_id:
            problems.append(Problem("kết quả đảng viên", f"đơn vị không tồn tại: '{r.unit_code}'", row=i, field="unit_code"))
    for i, r in enumerate(org_results, start=1):
        for name, code in (("unit_code", r.unit_code), ("decided_by", r.decided_by)):
            if code is not None and code not in tree.unit_id:
                problems.append(Problem("kết quả tổ chức đảng", f"đơn vị không tồn tại: '{code}'", row=i, field=name))
    if problems:
        raise InvalidInput(problems)
    writer = _Writer(uow, campaign_id, tree)
    writer.preload_members(tree.member_pk[r.member_id] for r in member_results)
    writer.preload_orgs(tree.unit_id[r.unit_code] for r in org_results)
    changed: set[str] = set()
    everything_m, everything_o = frozenset(MEMBER_FIELDS), frozenset(ORG_FIELDS) | {"level"}
    for r in member_results:
        code = writer.member(r, tree.unit_id[r.unit_code], received_at, None, everything_m)
        if code:
            changed.add(code)
    for r in org_results:
        submitter = tree.unit_id[r.decided_by or r.unit_code]
        code = writer.org(r, submitter, received_at, None, everything_o)
        if code:
            changed.add(code)
    member_rows, org_rows = writer.flush()
    if member_rows or org_rows:
        log_change(uow, campaign_id, "results.recorded", "results", actor, now or received_at, changed, received_at,
                   member_rows=member_rows, org_rows=org_rows)
    return changed


# --------------------------------------------------------------------------- cancel, override


def _require_text(by: str, reason: str) -> None:
    problems = []
    if not (by or "").strip():
        problems.append(Problem("tham số", "phải ghi rõ người quyết định", field="by"))
    if not (reason or "").strip():
        problems.append(Problem("tham số", "phải ghi rõ lý do", field="reason"))
    if problems:
        raise InvalidInput(problems)


@dataclass(frozen=True)
class CancelOutcome:
    subject: str  # member code or unit code
    cancelled_row_id: int
    changed_unit: str  # the unit whose consolidation changes


def cancel_result(
    uow: UnitOfWork,
    campaign_id: str,
    *,
    member_code: str | None = None,
    unit_code: str | None = None,
    by: str,
    reason: str,
    now: dt.datetime,
) -> CancelOutcome:
    """Cancel the current result of a member or of an organization ('hủy bỏ kết quả').

    The row stays, marked not current with who, when and why; the subject has no result until
    a new decision arrives (a new list), which supersedes nothing. The caller commits.
    """
    if (member_code is None) == (unit_code is None):
        raise InvalidInput(Problem("tham số", "chọn đúng một: đảng viên (--member) hoặc tổ chức đảng (--unit)", field="member/unit"))
    _require_text(by, reason)
    lock_campaign(uow, campaign_id)
    session = uow.session
    if member_code is not None:
        member = session.scalar(select(Member).where(Member.campaign_id == campaign_id, Member.member_code == member_code))
        if member is None:
            raise NotFound(f"đảng viên không tồn tại: '{member_code}'")
        row = session.scalar(
            select(MemberResult)
            .where(MemberResult.campaign_id == campaign_id, MemberResult.member_id == member.id, MemberResult.current.is_(True))
            .order_by(MemberResult.received_at.desc(), MemberResult.id.desc())
            .limit(1)
        )
        changed = session.scalar(select(Unit.code).where(Unit.id == member.unit_id))
        subject, label = member_code, f"đảng viên {member_code}"
    else:
        unit = session.scalar(select(Unit).where(Unit.campaign_id == campaign_id, Unit.code == unit_code))
        if unit is None:
            raise NotFound(f"đơn vị không tồn tại: '{unit_code}'")
        row = session.scalar(
            select(OrgResult)
            .where(OrgResult.campaign_id == campaign_id, OrgResult.unit_id == unit.id, OrgResult.current.is_(True))
            .order_by(OrgResult.received_at.desc(), OrgResult.id.desc())
            .limit(1)
        )
        changed, subject, label = unit.code, unit.code, f"tổ chức đảng {unit.code}"
    if row is None:
        raise NotFound(f"{label} không có kết quả xếp loại hiện hành để hủy")
    if row.received_at > now:
        raise Refused(f"kết quả của {label} nhận lúc {row.received_at.isoformat()}, sau thời điểm hủy {now.isoformat()}")
    row.current = False
    row.cancelled_at = now
    row.cancelled_by = by.strip()
    row.cancel_reason = reason.strip()
    log_change(
        uow, campaign_id, "result.cancelled", f"{'member' if member_code else 'unit'}:{subject}", by.strip(), now, [changed], now,
        row_id=row.id, reason=reason.strip(), level=getattr(row, "final_level", None) or getattr(row, "level", None),
    )
    return CancelOutcome(subject, row.id, changed)


def current_finding_keys(uow: UnitOfWork, campaign_id: str, unit_id: int) -> dict[str, dict]:
    """Findings about ``unit_id`` in its newest snapshot, by key."""
    payload = uow.session.scalar(
        select(Snapshot.payload).where(Snapshot.campaign_id == campaign_id, Snapshot.unit_id == unit_id).order_by(Snapshot.version.desc()).limit(1)
    )
    if not payload:
        return {}
    code = payload["unit"]["code"]
    return {f["key"]: f for f in payload.get("findings", ()) if f.get("unit_code") == code}


def override_finding(uow: UnitOfWork, campaign_id: str, finding_key: str, by: str, reason: str, now: dt.datetime) -> FindingOverride:
    """Record an authorised override of a finding (who, why, when); it stays listed, no longer a breach.

    The finding must be in the newest consolidation of its unit. The override holds for the
    numbers shown there (its ``covers``): a cap while the excess is no larger, any other finding
    while its data is the same (``rules.base.covers``). While one override covers the finding, the
    same override again is a no-op and a different one is refused (that decision stands); once the
    numbers have gone past every override, a new one may be granted. The caller commits.
    """
    _require_text(by, reason)
    lock_campaign(uow, campaign_id)
    session = uow.session
    unit_code = unit_of_key(finding_key)
    unit = session.scalar(select(Unit).where(Unit.campaign_id == campaign_id, Unit.code == unit_code)) if unit_code else None
    if unit is None:
        raise InvalidInput(Problem("tham số", f"mã vi phạm không hợp lệ '{finding_key}' (dạng quy_tac:ma_don_vi:ma_dang_vien)", field="key"))
    findings = current_finding_keys(uow, campaign_id, unit.id)
    if finding_key not in findings:
        known = ", ".join(sorted(findings)) or "không có"
        raise NotFound(f"không có vi phạm '{finding_key}' trong kết quả tổng hợp mới nhất của {unit_code} (hiện có: {known})")
    finding = finding_from_dict(findings[finding_key])
    existing = session.scalars(
        select(FindingOverride)
        .where(FindingOverride.campaign_id == campaign_id, FindingOverride.finding_key == finding_key)
        .order_by(FindingOverride.at.desc(), FindingOverride.id.desc())
    ).all()
    standing = next((o for o in existing if covers(o.covers, finding)), None)
    if standing is not None:
        if standing.by == by.strip() and standing.reason == reason.strip():
            return standing
        raise Refused(
            f"vi phạm '{finding_key}' đã được {standing.by} chấp thuận lúc {format_instant(standing.at)} ({standing.reason})"
        )
    override = FindingOverride(
        campaign_id=campaign_id, finding_key=finding_key, by=by.strip(), reason=reason.strip(), at=now, covers=dict(finding.data),
    )
    session.add(override)
    session.flush()
    log_change(
        uow, campaign_id, "finding.overridden", finding_key, by.strip(), now, [unit_code], now,
        reason=reason.strip(), message=findings[finding_key].get("message", ""), covers=dict(finding.data),
    )
    return override
