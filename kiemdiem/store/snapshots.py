"""Consolidation snapshots: one versioned, hashed summary per unit; reruns only where results changed.

``consolidate_campaign`` runs one pass at ``now`` under the campaign's lock (``lock_campaign``):

1. what changed since the last run: the ``changed_units`` the caller passes (the tick passes what
   its ingest changed) plus every change logged in the event log since the last run's watermark
   (``kiemdiem.store.results.CHANGE_ACTIONS``), so a crash between ingest and consolidation
   loses nothing;
2. a full run (``consolidate``) when there is no snapshot yet, when the caller passes None, when
   the organization or the plan was re-imported, or when the tree differs from the last run's;
   otherwise an incremental run (``reconsolidate``) of the changed units and their ancestors,
   which loads only those units' members and the stored summaries it reuses (see
   ``_incremental``; it checks its own reach and falls back to a full run if it fell short);
3. each recomputed unit whose ``unit_hash`` differs from its newest ``Snapshot.content_hash``
   gets version n+1 with the summary as payload and the difference from version n; the same
   inputs make no new row;
4. when versions above 1 were made, every affected office (the emails of each updated unit)
   gets one ``consolidation_diff`` email in the outbox: whose result changed, which totals moved
   from the changed unit up to that office's unit, which findings appeared or went away.

A second pass at the same ``now`` changes nothing. Two concurrent passes are serialised by the
lock; a unique-version conflict (a writer that skipped the lock) rolls back and retries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Integer, String, and_, cast, func, or_, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from kiemdiem.consolidation import (
    ConsolidationInput,
    MemberRecord,
    MemberResult,
    OrgResult,
    Override,
    Quota,
    UnitNode,
    UnitSummary,
    affected_units,
    consolidate,
    diff,
    diff_is_empty,
    reconsolidate,
    render_diff_text,
    unit_hash,
)
from kiemdiem.errors import NotFound
from kiemdiem.notify.messages import compose_consolidation_diff
from kiemdiem.plan import Plan
from kiemdiem.rules.base import BASE_KINDS, unit_of_key
from kiemdiem.settings import smtp_settings
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import EventLog, FindingOverride, Member, Snapshot, Unit
from kiemdiem.store.models import MemberResult as MemberResultRow
from kiemdiem.store.models import OrgResult as OrgResultRow
from kiemdiem.store.organization import get_campaign
from kiemdiem.store.outbox import enqueue
from kiemdiem.store.results import CHANGE_ACTIONS, ID_CHUNK, lock_campaign

COMPLETED_ACTION = "consolidation.completed"
# Changes after which only a full run is exact: members may have moved, rules may differ.
FULL_RUN_ACTIONS = ("org.imported", "plan.updated")
MAX_ATTEMPTS = 3
SNAPSHOT_INSERT_BATCH = 500  # snapshot rows per INSERT (payloads are large)

_NO_QUOTA = Quota("subtree", 0, 0, 0, "n/a")


@dataclass
class ConsolidationReport:
    mode: str  # full | incremental | unchanged
    recomputed: int  # units whose summary was rebuilt
    changed_units: list[str]  # the change set the run started from
    units_updated: list[str]  # units given a new version, deepest first
    versions: dict[str, int]  # unit -> its new version
    diff: dict = field(default_factory=dict)  # consolidation.diff over the updated units ({} on first versions only)
    diff_text: str = ""
    outbox_ids: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step: lock, compute (with loading), hash, store, notify

    @property
    def created(self) -> bool:
        return bool(self.units_updated)

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "recomputed": self.recomputed,
            "changed_units": list(self.changed_units),
            "units_updated": list(self.units_updated),
            "versions": dict(self.versions),
            "diff": self.diff,
            "outbox_ids": list(self.outbox_ids),
            "timings": dict(self.timings),
        }


# --------------------------------------------------------------------------- loading the input


@dataclass(frozen=True, slots=True)
class _UnitRow:
    id: int
    code: str
    name: str
    kind: str
    parent_code: str | None


def _rows(uow: UnitOfWork, statement):
    """All rows, plain, through the session's connection: no ORM row machinery on the big reads."""
    return uow.session.connection().execute(statement).all()


def _units(uow: UnitOfWork, campaign_id: str) -> list[_UnitRow]:
    rows = _rows(
        uow, select(Unit.id, Unit.code, Unit.name, Unit.kind, Unit.parent_id).where(Unit.campaign_id == campaign_id).order_by(Unit.path)
    )
    code_of = {uid: code for uid, code, *_ in rows}
    return [_UnitRow(uid, code, name, kind, code_of.get(pid)) for uid, code, name, kind, pid in rows]


def _chunked(values: list, size: int = ID_CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _flag(column):
    return type_coerce(column, Integer)


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _positions(text: str | None) -> tuple[str, ...]:
    # Most members hold no position: skip the JSON parser for them.
    if not text or text == "[]":
        return ()
    return tuple(json.loads(text))


def _members(uow: UnitOfWork, campaign_id: str, code_of: dict[int, str], unit_ids: list[int] | None) -> dict[int, MemberRecord]:
    # Dates and positions are read as text and parsed here rather than by the column types and
    # the driver, row by row: this is the biggest read of a consolidation (one row per member).
    query = select(
        Member.id, Member.member_code, Member.full_name, Member.unit_id, Member.status,
        cast(Member.joined_on, String), cast(Member.positions, String),
    ).where(Member.campaign_id == campaign_id)
    batches = [query] if unit_ids is None else [query.where(Member.unit_id.in_(chunk)) for chunk in _chunked(unit_ids)]
    out: dict[int, MemberRecord] = {}
    for batch in batches:
        for pk, code, name, unit_id, status, joined_on, positions in _rows(uow, batch):
            out[pk] = MemberRecord(code, name, code_of[unit_id], status, _date(joined_on), _positions(positions))
    return out


def _member_results(uow: UnitOfWork, campaign_id: str, now: dt.datetime, code_of: dict[int, str],
                    members: dict[int, MemberRecord], unit_ids: list[int] | None) -> list[MemberResult]:
    """Each member's result at ``now``: the newest received by then, unless cancelled by then."""
    r = MemberResultRow
    cancelled = and_(r.cancelled_at.is_not(None), r.cancelled_at <= now)
    # Flags read as plain numbers (SQLite) or booleans (PostgreSQL), no per-row conversion.
    query = (
        select(r.member_id, r.unit_id, r.self_level, r.proposed_level, r.final_level, _flag(r.disciplined), r.sick_leave_months,
               _flag(r.absent), r.score, r.note, _flag(r.has_self_review), _flag(cancelled))
        .where(r.campaign_id == campaign_id, r.received_at <= now)
        .order_by(r.member_id, r.received_at, r.id)
    )
    if unit_ids is None:
        batches = [query]
    else:  # driven by the members of those units (their index), not by every result of the campaign
        batches = [
            query.where(r.member_id.in_(select(Member.id).where(Member.unit_id.in_(chunk))))
            for chunk in _chunked(unit_ids)
        ]
    latest: dict[int, tuple] = {}
    for batch in batches:
        latest.update({row[0]: row for row in _rows(uow, batch)})  # ordered: the newest row of each member wins
    out = []
    for pk, unit_id, self_level, proposed, final, disciplined, sick, absent, score, note, review, is_cancelled in latest.values():
        member = members.get(pk)
        if is_cancelled or member is None:
            continue
        out.append(MemberResult(member.member_id, code_of[unit_id], self_level, proposed, final, bool(disciplined),
                                float(sick or 0.0), bool(absent), score, note or "", bool(review)))
    return out


def _org_results(uow: UnitOfWork, campaign_id: str, now: dt.datetime, code_of: dict[int, str],
                 related_to: list[int] | None = None) -> list[OrgResult]:
    """Each organization's result at ``now``; ``related_to``: only those of, or decided by, these units."""
    r = OrgResultRow
    cancelled = and_(r.cancelled_at.is_not(None), r.cancelled_at <= now)
    query = (
        select(r.unit_id, r.decided_by_id, r.level, r.disciplined, r.self_level, cancelled)
        .where(r.campaign_id == campaign_id, r.received_at <= now)
        .order_by(r.unit_id, r.received_at, r.id)
    )
    if related_to is None:
        batches = [query]
    else:
        # Whole histories of the organizations concerned (a row decided by one of these units may
        # have been superseded by a row that is not), so that the newest row is picked right.
        decided = aliased(OrgResultRow)

        def concerned(chunk):
            return or_(
                r.unit_id.in_(chunk),
                r.unit_id.in_(select(decided.unit_id).where(decided.campaign_id == campaign_id, decided.decided_by_id.in_(chunk))),
            )

        batches = [query.where(concerned(chunk)) for chunk in _chunked(related_to)]
    latest: dict[int, tuple] = {}
    for batch in batches:
        latest.update({row[0]: row for row in _rows(uow, batch)})
    return [
        OrgResult(code_of[uid], level, code_of.get(decided_by) if decided_by else None, bool(disciplined), self_level)
        for uid, decided_by, level, disciplined, self_level, is_cancelled in latest.values()
        if not is_cancelled
    ]


def _overrides(uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> list[Override]:
    rows = uow.session.execute(
        select(FindingOverride.finding_key, FindingOverride.by, FindingOverride.reason, FindingOverride.at).where(
            FindingOverride.campaign_id == campaign_id, FindingOverride.at <= now
        )
    )
    return [Override(key, by, reason, at) for key, by, reason, at in rows]


def _input(plan: Plan, units: list[_UnitRow], members: dict[int, MemberRecord], member_results, org_results, overrides) -> ConsolidationInput:
    return ConsolidationInput(
        units=tuple(UnitNode(u.code, u.name, u.kind, u.parent_code) for u in units),
        members=tuple(members.values()),
        member_results=tuple(member_results),
        org_results=tuple(org_results),
        rule_set=plan.rule_set,
        evaluation_date=plan.evaluation_date,
        overrides=tuple(overrides),
    )


def load_consolidation_input(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, *, member_units: set[str] | None = None
) -> ConsolidationInput:
    """The campaign as consolidation sees it at ``now``, in a few set-based queries.

    Results count from when they were received; a cancelled result stops counting when it was
    cancelled. ``member_units`` restricts members and their results to those units (the
    incremental run); units, organization results and overrides are always complete.
    """
    units = _units(uow, campaign_id)
    code_of = {u.id: u.code for u in units}
    unit_ids = None if member_units is None else sorted(u.id for u in units if u.code in member_units)
    members = _members(uow, campaign_id, code_of, unit_ids)
    results = _member_results(uow, campaign_id, now, code_of, members, unit_ids)
    return _input(plan, units, members, results, _org_results(uow, campaign_id, now, code_of), _overrides(uow, campaign_id, now))


# --------------------------------------------------------------------------- stored snapshots


def _latest_versions(uow: UnitOfWork, campaign_id: str) -> dict[int, int]:
    """unit id -> its newest version (read from the index alone: snapshot rows are large)."""
    query = (
        select(Snapshot.unit_id, func.max(Snapshot.version)).where(Snapshot.campaign_id == campaign_id).group_by(Snapshot.unit_id)
    )
    return dict(_rows(uow, query))


def _content_hashes(uow: UnitOfWork, campaign_id: str, versions: dict[int, int]) -> dict[int, str]:
    """unit id -> content hash of the given version."""
    out: dict[int, str] = {}
    for chunk in _chunked(sorted(versions)):
        rows = _rows(uow, select(Snapshot.unit_id, Snapshot.version, Snapshot.content_hash).where(
            Snapshot.campaign_id == campaign_id, Snapshot.unit_id.in_(chunk)
        ))
        out.update({uid: content for uid, version, content in rows if versions[uid] == version})
    return out


def _latest_payloads(uow: UnitOfWork, campaign_id: str, unit_ids: Iterable[int]) -> dict[int, dict]:
    """unit id -> payload of its newest snapshot, for the given units."""
    out: dict[int, dict] = {}
    for chunk in _chunked(sorted(set(unit_ids))):
        newest = (
            select(Snapshot.unit_id, func.max(Snapshot.version).label("version"))
            .where(Snapshot.campaign_id == campaign_id, Snapshot.unit_id.in_(chunk))
            .group_by(Snapshot.unit_id)
            .subquery()
        )
        rows = uow.session.execute(
            select(Snapshot.unit_id, Snapshot.payload)
            .join(newest, (newest.c.unit_id == Snapshot.unit_id) & (newest.c.version == Snapshot.version))
            .where(Snapshot.campaign_id == campaign_id)
        )
        out.update(dict(rows.all()))
    return out


def latest_hashes(uow: UnitOfWork, campaign_id: str) -> dict[str, str]:
    """unit code -> content hash of its newest snapshot."""
    code_of = dict(uow.session.execute(select(Unit.id, Unit.code).where(Unit.campaign_id == campaign_id)).all())
    return {code_of[uid]: content for uid, content in _content_hashes(uow, campaign_id, _latest_versions(uow, campaign_id)).items()}


def latest_snapshots(uow: UnitOfWork, campaign_id: str, unit_codes: Iterable[str] | None = None) -> dict[str, dict]:
    """unit code -> {version, content_hash, created_at, reason, payload} of its newest snapshot."""
    newest = (
        select(Snapshot.unit_id, func.max(Snapshot.version).label("version"))
        .where(Snapshot.campaign_id == campaign_id)
        .group_by(Snapshot.unit_id)
        .subquery()
    )
    query = (
        select(Unit.code, Snapshot)
        .join(newest, (newest.c.unit_id == Snapshot.unit_id) & (newest.c.version == Snapshot.version))
        .join(Unit, Unit.id == Snapshot.unit_id)
        .where(Snapshot.campaign_id == campaign_id)
        .order_by(Unit.path)
    )
    wanted = None if unit_codes is None else sorted(set(unit_codes))
    batches = [query] if wanted is None else [query.where(Unit.code.in_(chunk)) for chunk in _chunked(wanted)]
    out: dict[str, dict] = {}
    for batch in batches:
        for code, snap in uow.session.execute(batch):
            out[code] = _snapshot_dict(snap) | {"payload": snap.payload}
    return out


def _snapshot_dict(snap: Snapshot) -> dict:
    return {"version": snap.version, "content_hash": snap.content_hash, "created_at": snap.created_at.isoformat(), "reason": snap.reason}


def _unit_id(uow: UnitOfWork, campaign_id: str, unit_code: str) -> int:
    uid = uow.session.scalar(select(Unit.id).where(Unit.campaign_id == campaign_id, Unit.code == unit_code))
    if uid is None:
        raise NotFound(f"đơn vị không tồn tại: '{unit_code}'")
    return uid


def snapshot_history(uow: UnitOfWork, campaign_id: str, unit_code: str) -> list[dict]:
    """Every version of a unit's consolidation, oldest first, with its difference from the one before."""
    uid = _unit_id(uow, campaign_id, unit_code)
    snaps = uow.session.scalars(
        select(Snapshot).where(Snapshot.campaign_id == campaign_id, Snapshot.unit_id == uid).order_by(Snapshot.version)
    )
    return [_snapshot_dict(s) | {"diff": s.diff} for s in snaps]


def diff_versions(uow: UnitOfWork, campaign_id: str, unit_code: str, v1: int, v2: int) -> dict:
    """``consolidation.diff`` between two versions of a unit's summary (any order of versions)."""
    uid = _unit_id(uow, campaign_id, unit_code)
    rows = dict(
        uow.session.execute(
            select(Snapshot.version, Snapshot.payload).where(
                Snapshot.campaign_id == campaign_id, Snapshot.unit_id == uid, Snapshot.version.in_((v1, v2))
            )
        ).all()
    )
    missing = [v for v in (v1, v2) if v not in rows]
    if missing:
        raise NotFound(f"{unit_code} không có phiên bản tổng hợp {', '.join(map(str, missing))}")
    return diff({unit_code: rows[v1]}, {unit_code: rows[v2]})


# --------------------------------------------------------------------------- what changed since the last run


@dataclass
class _Pending:
    units: set[str]
    full: bool
    watermark: int  # event id to store once this run is done
    previous_watermark: int
    tree_hash: str | None  # the tree the last run consolidated


def _pending_changes(uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> _Pending:
    session = uow.session
    last = session.scalar(
        select(EventLog.detail)
        .where(EventLog.campaign_id == campaign_id, EventLog.action == COMPLETED_ACTION)
        .order_by(EventLog.id.desc())
        .limit(1)
    ) or {}
    watermark = int(last.get("event_id", 0))
    rows = session.execute(
        select(EventLog.id, EventLog.action, EventLog.at, EventLog.detail).where(
            EventLog.campaign_id == campaign_id, EventLog.id > watermark, EventLog.action.in_(CHANGE_ACTIONS + FULL_RUN_ACTIONS)
        ).order_by(EventLog.id)
    ).all()
    units: set[str] = set()
    full = False
    first_later: int | None = None  # a change that counts only after ``now`` (time travel): not consumed
    newest = watermark
    for event_id, action, at, detail in rows:
        detail = detail or {}
        effective = dt.datetime.fromisoformat(detail["effective_at"]) if detail.get("effective_at") else at
        if effective > now:
            first_later = event_id if first_later is None else first_later
            continue
        newest = max(newest, event_id)
        if action in FULL_RUN_ACTIONS:
            full = True
        units.update(detail.get("changed_units") or ())
    mark = newest if first_later is None else min(newest, first_later - 1)
    return _Pending(units, full, max(mark, watermark), watermark, last.get("tree_hash"))


def _tree_hash(units: list[_UnitRow]) -> str:
    lines = sorted(f"{u.code}\t{u.name}\t{u.kind}\t{u.parent_code or ''}" for u in units)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --------------------------------------------------------------------------- the run


def _placeholder(node: UnitNode, children: tuple[str, ...]) -> UnitSummary:
    """Stands in for a stored summary the incremental run does not read (only its unit and children are)."""
    return UnitSummary(
        unit=node, own_result=None, members_total=0, evaluated=0, not_evaluated=(0, 0, 0), level_counts=(0, 0, 0, 0),
        member_quota=_NO_QUOTA, org_total=0, org_level_counts=(0, 0, 0, 0), org_quota=_NO_QUOTA, missing_members=(),
        missing_orgs=(), findings=(), children=children, member_lines=(),
    )


def _incremental(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, units: list[_UnitRow],
    latest: dict[int, int], changed: set[str],
) -> dict[str, UnitSummary] | None:
    """Rebuild the changed units and their ancestors from a partial load; None when a full run is needed.

    Loaded: every unit and override (small); for the affected units and the whole subtree of
    each affected base organization (the 20% cap counts there), their members, results and
    organization results, and the organization results their committees decided; the stored
    summaries of the affected units and of their children. Every other unit gets a placeholder
    that ``reconsolidate`` passes through untouched. After the run, the reach is checked: a unit
    rebuilt outside what was loaded means a full run instead.
    """
    nodes = {u.code: UnitNode(u.code, u.name, u.kind, u.parent_code) for u in units}
    by_code = {u.code: u for u in units}
    kids: dict[str, list[str]] = {code: [] for code in nodes}
    for node in nodes.values():
        if node.parent_code in kids:
            kids[node.parent_code].append(node.code)
    children = {code: tuple(sorted(k)) for code, k in kids.items()}

    def subtree(code: str) -> set[str]:
        out, stack = set(), [code]
        while stack:
            current = stack.pop()
            out.add(current)
            stack.extend(children[current])
        return out

    code_of = {u.id: u.code for u in units}
    overrides = _overrides(uow, campaign_id, now)
    seeds = {c for c in changed if c in nodes} | {c for c in nodes if by_code[c].id not in latest}
    seeds |= {unit_of_key(o.finding_key) for o in overrides} & nodes.keys()
    # A changed organization result also moves the quota of the committee that decided it.
    seeds |= {
        r.decided_by for r in _org_results(uow, campaign_id, now, code_of, sorted(by_code[c].id for c in seeds))
        if r.unit_code in seeds and r.decided_by in nodes
    }
    roots = {c for c, n in nodes.items() if n.parent_code not in nodes}
    needed = affected_units(nodes.values(), seeds) | roots
    real = needed | {k for c in needed for k in children[c]}
    member_units = set(needed)
    for code in needed:
        if nodes[code].kind in BASE_KINDS:
            member_units |= subtree(code)
    member_unit_ids = sorted(by_code[c].id for c in member_units)
    # The results of these units and of those they decide on: all a rebuilt unit reads.
    org_results = _org_results(uow, campaign_id, now, code_of, member_unit_ids)

    stored = _latest_payloads(uow, campaign_id, (by_code[c].id for c in real if by_code[c].id in latest))
    previous: dict[str, UnitSummary] = {}
    for code, node in nodes.items():
        uid = by_code[code].id
        if uid in stored:
            previous[code] = UnitSummary.from_dict(stored[uid])
        elif uid in latest:
            previous[code] = _placeholder(node, children[code])
    members = _members(uow, campaign_id, code_of, member_unit_ids)
    results = _member_results(uow, campaign_id, now, code_of, members, member_unit_ids)
    inp = _input(plan, units, members, results, org_results, overrides)
    out = reconsolidate(inp, previous, seeds)

    rebuilt = {c: s for c, s in out.items() if previous.get(c) is not s}
    for code in rebuilt:
        if code not in member_units or (code in previous and code not in real):
            return None
        if any(k not in rebuilt and k not in real for k in children[code]):
            return None
        if nodes[code].kind in BASE_KINDS and not subtree(code) <= member_units:
            return None
    return rebuilt


def _depth_order(codes: Iterable[str], parent: dict[str, str | None]) -> list[str]:
    def depth(code: str) -> int:
        d, seen = 0, set()
        while parent.get(code) is not None and code not in seen:
            seen.add(code)
            code = parent[code]
            d += 1
        return d

    return sorted(codes, key=lambda c: (-depth(c), c))


def _in_subtree(code: str, top: str, parent: dict[str, str | None]) -> bool:
    seen = set()
    while code is not None and code not in seen:
        if code == top:
            return True
        seen.add(code)
        code = parent.get(code)
    return False


class _Stopwatch:
    """Seconds spent in each step of a run (instrumentation only; the run's "now" is its argument)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        current = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + current - self._last, 4)
        self._last = current


def _run(uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, changed_units: set[str] | None,
         reason: str, actor: str) -> ConsolidationReport:
    clock = _Stopwatch()
    get_campaign(uow, campaign_id)
    lock_campaign(uow, campaign_id)
    clock.lap("lock")
    session = uow.session
    units = _units(uow, campaign_id)
    by_code = {u.code: u for u in units}
    parent = {u.code: u.parent_code for u in units}
    latest = _latest_versions(uow, campaign_id)
    pending = _pending_changes(uow, campaign_id, now)
    tree_hash = _tree_hash(units)
    changed = set(changed_units or ()) | pending.units
    full = changed_units is None or not latest or pending.full or pending.tree_hash != tree_hash

    summaries: dict[str, UnitSummary] | None = None
    mode = "full" if full else "incremental"
    if not full:
        if not changed and all(u.id in latest for u in units):
            summaries = {}
            mode = "unchanged"
        else:
            summaries = _incremental(uow, plan, campaign_id, now, units, latest, changed)
    if summaries is None:
        mode = "full"
        summaries = consolidate(load_consolidation_input(uow, plan, campaign_id, now))
    clock.lap("compute")

    old_hashes = _content_hashes(uow, campaign_id, {by_code[c].id: latest[by_code[c].id] for c in summaries if by_code[c].id in latest})
    payloads: dict[str, dict] = {}
    hashes: dict[str, str] = {}
    for code, summary in summaries.items():
        payload = summary.to_dict()
        content = unit_hash(payload)
        if old_hashes.get(by_code[code].id) != content:
            payloads[code], hashes[code] = payload, content
    clock.lap("hash")
    updated = _depth_order(payloads, parent)
    stored_old = _latest_payloads(uow, campaign_id, (by_code[c].id for c in updated if by_code[c].id in latest))
    old_payloads = {c: stored_old[by_code[c].id] for c in updated if by_code[c].id in stored_old}

    versions: dict[str, int] = {}
    rows = []
    for code in updated:
        uid = by_code[code].id
        version = latest.get(uid, 0) + 1
        versions[code] = version
        rows.append({
            "campaign_id": campaign_id,
            "unit_id": uid,
            "version": version,
            "content_hash": hashes[code],
            "payload": payloads[code],
            "diff": diff({code: old_payloads[code]}, {code: payloads[code]}) if code in old_payloads else None,
            "created_at": now,
            "reason": (reason or ("Tổng hợp lần đầu" if version == 1 else "Tổng hợp lại do kết quả thay đổi"))[:256],
        })
    for chunk in _chunked(rows, SNAPSHOT_INSERT_BATCH):
        session.execute(Snapshot.__table__.insert(), chunk)
    clock.lap("store")

    report = ConsolidationReport(mode, len(summaries), sorted(changed), updated, versions, timings=clock.laps)
    if old_payloads:
        changes = diff(old_payloads, {c: payloads[c] for c in updated})
        report.diff, report.diff_text = changes, render_diff_text(changes)
        report.outbox_ids = _notify_offices(uow, plan, campaign_id, now, updated, versions, old_payloads, payloads, parent, reason)
    clock.lap("notify")

    if updated or pending.watermark != pending.previous_watermark or pending.tree_hash != tree_hash:
        session.add(
            EventLog(
                campaign_id=campaign_id, at=now, actor=actor, action=COMPLETED_ACTION, subject=mode,
                detail={
                    "event_id": pending.watermark,
                    "tree_hash": tree_hash,
                    "mode": mode,
                    "recomputed": len(summaries),
                    "units_updated": len(updated),
                    "changed_units": sorted(changed)[:50],
                    "outbox_ids": report.outbox_ids,
                    "reason": reason,
                },
            )
        )
    return report


def _notify_offices(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, updated: list[str], versions: dict[str, int],
    old_payloads: dict[str, dict], payloads: dict[str, dict], parent: dict[str, str | None], reason: str,
) -> list[int]:
    """One consolidation_diff email per office (email address) of each unit given a version above 1.

    The difference an office gets covers the updated units of its own subtree: the changed
    members and each level's totals from the changed unit up to the office's unit. An address
    shared by a unit and one of its ancestors gets only the ancestor's (which includes the other).
    """
    offices = [c for c in updated if versions[c] > 1]
    if not offices:
        return []
    emails_of = dict(
        uow.session.execute(select(Unit.code, Unit.emails).where(Unit.campaign_id == campaign_id, Unit.code.in_(offices))).all()
    )
    units_of_email: dict[str, list[str]] = {}
    for code in offices:
        for email in dict.fromkeys(e.strip() for e in emails_of.get(code) or () if e and e.strip()):
            units_of_email.setdefault(email, []).append(code)
    sender = smtp_settings().from_
    ids = []
    for email in sorted(units_of_email):
        codes = units_of_email[email]
        tops = [c for c in codes if not any(o != c and _in_subtree(c, o, parent) for o in codes)]
        for office in sorted(tops):
            inside = [c for c in updated if _in_subtree(c, office, parent)]
            changes = diff({c: old_payloads[c] for c in inside if c in old_payloads}, {c: payloads[c] for c in inside})
            if diff_is_empty(changes):
                continue
            name = payloads[office]["unit"]["name"]
            version = versions[office]
            message = compose_consolidation_diff(name, plan.number, name, version, render_diff_text(changes), changes, now)
            why = f"Kết quả tổng hợp của {name} ({office}) thay đổi, phiên bản {version}" + (f": {reason}" if reason else "")
            outbox_id = enqueue(
                uow, campaign_id=campaign_id, kind="consolidation_diff", recipient=email, recipient_name=name,
                message=message, key_material=f"consolidation_diff:{campaign_id}:{office}:{version}:{email}", reason=why, now=now,
                sender=sender,
            )
            if outbox_id is not None:
                ids.append(outbox_id)
    return ids


def consolidate_campaign(
    store: Store,
    plan: Plan,
    campaign_id: str,
    now: dt.datetime,
    *,
    changed_units: set[str] | None = None,
    reason: str = "",
    actor: str = "tick",
) -> ConsolidationReport:
    """One consolidation pass at ``now`` in its own transaction (see the module docstring).

    ``changed_units``: units whose own members' results or organization result changed (what an
    ingest reports); changes logged since the last run are added. None: recompute everything
    and compare (always exact, slower).
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with store.uow() as uow:
                report = _run(uow, plan, campaign_id, now, changed_units, reason, actor)
                uow.commit()
            return report
        except IntegrityError:
            if attempt == MAX_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
