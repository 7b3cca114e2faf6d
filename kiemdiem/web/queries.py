"""Read-side queries for the dashboard pages: a few set-based queries per page, never one per unit.

The campaign's status (every unit in every phase, rolled up over subtrees) is computed by
``kiemdiem.status.compute_status`` from three bulk loads, then kept in memory as a compact
``StatusView``. The view is reused while nothing it depends on changed: the key holds the
plan's hash, the newest submission, member and unit ids, the local day (due-soon counts
working days) and how many deadlines have passed. A short TTL covers edits that keep those
(a re-import that only renames). A subtree is a contiguous run of the units sorted by path.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select, tuple_
from sqlalchemy.orm import aliased

from kiemdiem.calendar import format_date, format_instant
from kiemdiem.catalogue import DOCUMENTS, UNIT_KINDS
from kiemdiem.consolidation import diff as consolidation_diff
from kiemdiem.errors import Problem
from kiemdiem.store.snapshots import member_changes_between
from kiemdiem.plan import Phase, Plan
from kiemdiem.results import problem_text
from kiemdiem.status import STATES, MemberInfo, UnitInfo, compute_status, member_owes, owed_items, unit_phase_state
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import (
    Campaign,
    EventLog,
    Member,
    MemberResult,
    Notice,
    OrgResult,
    Outbox,
    SignInToken,
    Snapshot,
    Submission,
    SubmissionFile,
    Unit,
    User,
)
from kiemdiem.store.organization import campaign_plan
from kiemdiem.store.results import REFUSED_ACTION
from kiemdiem.store.queries import load_deliveries, load_members, load_unit_deliveries
from kiemdiem.submission import item_key

log = logging.getLogger(__name__)

# A unit over all its phases, one definition for every page:
# - its badge (the tree's rows, the unit page) is its worst phase's state (STATE_SEVERITY);
# - "the units in state S" (the overview's cards, the tree's state filter without a phase) are
#   those with at least one phase in S (``StatusView.states``). An office chasing late units
#   wants every unit that missed a deadline: one that delivered a phase late is late, whether
#   its other phases are on time, not due yet or overdue (counted by the worst, it would hide
#   under "pending" until its last phase is in, and under "overdue" when it is late twice).
#   For "overdue", the worst state, both readings give the same units.
STATE_SEVERITY = {"overdue": 4, "due_soon": 3, "pending": 2, "done_late": 1, "done": 0}
NO_STATE = "none"
STATUS_CHECK_SECONDS = 1.0  # how often a busy page asks the database whether the status changed
STATUS_TTL_SECONDS = 300.0
SLOW_BUILD_SECONDS = 0.5  # a status that takes longer to build is rebuilt in the background
SLOW_BUILD_SPACING = 3.0  # ... and at most once every this many build times  # catches edits the key cannot see (a re-import that renames units or changes a member's status)
RENDER_CACHE_SIZE = 64
MAX_ID = 2**31 - 1  # ids are INTEGER columns (32-bit on PostgreSQL); drivers refuse to bind a larger one


# ----------------------------------------------------------------------------- the status view


@dataclass(frozen=True, slots=True)
class TreeUnit:
    id: int
    code: str
    name: str
    kind: str
    parent_code: str | None
    path: str
    depth: int


@dataclass(frozen=True, slots=True)
class Cell:
    """One unit in one phase."""

    phase_id: str
    state: str
    required: int
    present: int
    late: int
    missing: int
    subtree_required: int
    subtree_present: int

    @property
    def percent(self) -> float:
        return 100.0 if self.required == 0 else round(100.0 * self.present / self.required, 1)

    @property
    def subtree_percent(self) -> float | None:
        return None if self.subtree_required == 0 else round(100.0 * self.subtree_present / self.subtree_required, 1)


@dataclass
class StatusView:
    key: tuple
    plan: Plan
    now: dt.datetime
    units: list[TreeUnit]  # sorted by path: a subtree is a contiguous run
    index: dict[str, int]
    cells: dict[str, tuple[Cell, ...]]
    subtree: dict[str, dict[str, tuple[int, int]]]
    has_children: set[str]
    built_at: float
    build_seconds: float = 0.0
    memo: dict = field(default_factory=dict)  # per-view derived values (overview summaries, fragments)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def etag(self) -> str:
        """The same in every worker process (``hash()`` of a str is salted per process)."""
        return hashlib.sha1(repr(self.key).encode()).hexdigest()[:16]

    def unit(self, code: str) -> TreeUnit | None:
        pos = self.index.get(code)
        return None if pos is None else self.units[pos]

    def subtree_units(self, code: str) -> list[TreeUnit]:
        start = self.index.get(code)
        if start is None:
            return []
        prefix = self.units[start].path
        # the run ends at the first path without the prefix; found by bisection over sorted paths
        end = bisect.bisect_left(_PathKeys(self.units), prefix + "\U0010ffff", lo=start + 1)
        return self.units[start:end]

    def state(self, code: str, phase_id: str | None = None) -> str:
        cells = self.cells.get(code, ())
        if phase_id:
            for cell in cells:
                if cell.phase_id == phase_id:
                    return cell.state
            return NO_STATE
        if not cells:
            return NO_STATE
        return max((c.state for c in cells), key=STATE_SEVERITY.__getitem__)

    def states(self, code: str, phase_id: str | None = None) -> frozenset[str]:
        """The states the unit is in: that phase's, or (no phase) each of its phases' (``NO_STATE``
        when it has none). A unit is "in state S" for the cards and the tree's filter when S is here."""
        if phase_id:
            return frozenset((self.state(code, phase_id),))
        cells = self.cells.get(code, ())
        return frozenset(c.state for c in cells) if cells else frozenset((NO_STATE,))

    def cell(self, code: str, phase_id: str) -> Cell | None:
        for cell in self.cells.get(code, ()):
            if cell.phase_id == phase_id:
                return cell
        return None

    def subtree_percent(self, code: str, phase_id: str | None = None) -> float | None:
        required, present = self.subtree.get(code, {}).get(phase_id or "*", (0, 0))
        return None if required == 0 else round(100.0 * present / required, 1)

    def subtree_counts(self, code: str, phase_id: str | None = None) -> tuple[int, int]:
        return self.subtree.get(code, {}).get(phase_id or "*", (0, 0))


class _PathKeys:
    """A sequence view of unit paths for bisect (Python 3.10+ bisect takes ``key``, but this keeps it plain)."""

    __slots__ = ("units",)

    def __init__(self, units: list[TreeUnit]):
        self.units = units

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int) -> str:
        return self.units[i].path


def load_tree(uow: UnitOfWork, campaign_id: str) -> list[TreeUnit]:
    parent = Unit.__table__.alias("parent")
    rows = uow.session.execute(
        select(Unit.id, Unit.code, Unit.name, Unit.kind, parent.c.code, Unit.path, Unit.depth)
        .select_from(Unit)
        .outerjoin(parent, parent.c.id == Unit.parent_id)
        .where(Unit.campaign_id == campaign_id)
    )
    units = [TreeUnit(*row) for row in rows]
    units.sort(key=lambda u: u.path)  # code-point order (a database collation may differ)
    return units


def status_key(uow: UnitOfWork, campaign_id: str, plan: Plan, now: dt.datetime) -> tuple | None:
    """What the status depends on, in one round trip (global max ids: each is an index lookup)."""
    row = uow.session.execute(
        select(
            Campaign.plan_hash,
            select(func.max(Submission.id)).scalar_subquery(),
            select(func.max(Member.id)).scalar_subquery(),
            select(func.max(Unit.id)).scalar_subquery(),
            # A list the ingest refused is owed again (on the partial index: a lookup).
            select(func.max(Submission.refused_at)).where(Submission.campaign_id == campaign_id, Submission.refused_at.is_not(None)).scalar_subquery(),
        ).where(Campaign.id == campaign_id)
    ).first()
    if row is None:
        return None
    local_day = plan.calendar.local(now).date()
    passed = sum(1 for p in plan.phases if now > p.deadline)
    return (campaign_id, row[0], row[1], row[2], row[3], local_day, passed, row[4])


class StatusCache:
    """One ``StatusView`` per campaign, rebuilt when its key changes or its TTL ends.

    Rebuilding a province takes seconds, so no request waits for another's rebuild: when the
    key changed, the request that notices rebuilds while concurrent ones get the previous view;
    when a build took longer than ``SLOW_BUILD_SECONDS``, later rebuilds run in the background
    (given ``uow_factory``), spaced by a few build times, and pages answer from the previous
    view meanwhile (a few seconds behind); when only the TTL ran out, likewise in the background.
    """

    def __init__(self, ttl: float = STATUS_TTL_SECONDS, due_soon_working_days: int = 3,
                 uow_factory: Callable[[], UnitOfWork] | None = None, check_seconds: float = STATUS_CHECK_SECONDS):
        self.ttl = ttl
        self.check_seconds = check_seconds
        self._checked: dict[str, tuple[float, dt.datetime]] = {}  # campaign -> (when the key was last checked, for which now)
        self.due_soon_working_days = due_soon_working_days
        self.uow_factory = uow_factory
        self._views: dict[str, StatusView] = {}
        self._plans: dict[tuple[str, str], Plan] = {}
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._refreshing: set[str] = set()
        self._guard = threading.Lock()
        self.builds = 0
        self.updates = 0

    def add_plan(self, campaign_id: str, plan: Plan) -> None:
        """Use an already parsed plan (it is keyed by its content hash, so a changed plan is parsed again)."""
        self._plans[(campaign_id, plan.content_hash)] = plan

    def plan(self, uow: UnitOfWork, campaign: Campaign) -> Plan:
        key = (campaign.id, campaign.plan_hash)
        plan = self._plans.get(key)
        if plan is None:
            plan = campaign_plan(uow, campaign.id)
            self._plans[key] = plan
        return plan

    def plan_for(self, uow: UnitOfWork, campaign_id: str, plan_hash: str | None = None) -> Plan:
        if plan_hash is not None and (campaign_id, plan_hash) in self._plans:
            return self._plans[(campaign_id, plan_hash)]
        campaign = uow.session.get(Campaign, campaign_id)
        return self.plan(uow, campaign)

    def _lock(self, campaign_id: str) -> threading.Lock:
        with self._guard:
            return self._locks[campaign_id]

    def _current_key(self, uow: UnitOfWork, campaign_id: str, plan: Plan, now: dt.datetime) -> tuple[Plan, tuple | None]:
        key = status_key(uow, campaign_id, plan, now)
        if key is not None and key[1] != plan.content_hash:
            plan = self.plan_for(uow, campaign_id, key[1])
            key = status_key(uow, campaign_id, plan, now)
        return plan, key

    def touch(self, campaign_id: str) -> None:
        """Something was written: the next request checks the key (other processes within ``check_seconds``)."""
        self._checked.pop(campaign_id, None)

    def get(self, uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> StatusView:
        current = self._views.get(campaign_id)
        checked = self._checked.get(campaign_id)
        if (
            current is not None and checked is not None and time.monotonic() - checked[0] < self.check_seconds
            and 0 <= (now - checked[1]).total_seconds() < self.check_seconds
        ):
            return current  # the database was asked a moment ago
        plan, key = self._current_key(uow, campaign_id, current.plan if current else self.plan_for(uow, campaign_id), now)
        self._checked[campaign_id] = (time.monotonic(), now)
        if current is not None and current.key == key:
            if time.monotonic() - current.built_at >= self.ttl:
                self._refresh_later(uow, campaign_id, now)
            return current
        if current is not None and key is not None:
            updated = self._update(uow, campaign_id, current, now, key)
            if updated is not None:
                return updated
        if current is not None and current.build_seconds >= SLOW_BUILD_SECONDS:
            # A big campaign (a province takes seconds): rebuild in the background, at most once
            # every few build times, and keep answering from the current view meanwhile.
            if time.monotonic() - current.built_at >= SLOW_BUILD_SPACING * current.build_seconds:
                self._refresh_later(uow, campaign_id, now)
            return current
        lock = self._lock(campaign_id)
        if not lock.acquire(blocking=current is None):
            return current  # someone is rebuilding it right now
        try:
            latest = self._views.get(campaign_id)
            if latest is not None and latest.key == key:
                return latest
            return self._build(uow, plan, campaign_id, now, key)
        finally:
            lock.release()

    def _update(self, uow: UnitOfWork, campaign_id: str, current: StatusView, now: dt.datetime, key: tuple) -> StatusView | None:
        """Only new submissions since ``current``: recompute their units (None: a full build is needed)."""
        lock = self._lock(campaign_id)
        if not lock.acquire(blocking=False):
            return current  # someone is rebuilding it right now
        try:
            latest = self._views.get(campaign_id)
            if latest is not None and latest.key == key:
                return latest
            view = update_view(uow, current, campaign_id, now, key, self.due_soon_working_days)
            if view is not None:
                self._views[campaign_id] = view
                self.updates += 1
            return view
        finally:
            lock.release()

    def _build(self, uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, key: tuple) -> StatusView:
        started = time.monotonic()
        view = build_view(uow, plan, campaign_id, now, key, self.due_soon_working_days)
        view.build_seconds = time.monotonic() - started
        self._views[campaign_id] = view
        self.builds += 1
        return view

    def _refresh_later(self, uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> None:
        if self.uow_factory is None:
            lock = self._lock(campaign_id)
            if lock.acquire(blocking=False):
                try:
                    plan, key = self._current_key(uow, campaign_id, self._views[campaign_id].plan, now)
                    self._build(uow, plan, campaign_id, now, key)
                finally:
                    lock.release()
            return
        with self._guard:
            if campaign_id in self._refreshing:
                return
            self._refreshing.add(campaign_id)
        threading.Thread(target=self._refresh, args=(campaign_id, now), name=f"status-{campaign_id}", daemon=True).start()

    def _refresh(self, campaign_id: str, now: dt.datetime) -> None:
        try:
            with self.uow_factory() as uow, self._lock(campaign_id):
                plan, key = self._current_key(uow, campaign_id, self._views[campaign_id].plan, now)
                self._build(uow, plan, campaign_id, now, key)
        except Exception:  # a failed background refresh keeps the previous view; the next request retries
            log.exception("status refresh of %s failed", campaign_id)
        finally:
            with self._guard:
                self._refreshing.discard(campaign_id)

    def clear(self) -> None:
        self._views.clear()


def build_view(uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, key: tuple, due_soon_working_days: int) -> StatusView:
    tree = load_tree(uow, campaign_id)
    infos = [UnitInfo(u.id, u.code, u.name, u.kind, u.parent_code) for u in tree]
    members = load_members(uow, campaign_id)
    deliveries = load_deliveries(uow, campaign_id, now)
    status = compute_status(plan, infos, members, deliveries, now, due_soon_working_days=due_soon_working_days)
    cells = {
        code: tuple(
            Cell(r.phase_id, r.state, r.required, r.present, r.late, len(r.missing), r.subtree_required, r.subtree_present)
            for r in rows
        )
        for code, rows in status.by_unit.items()
    }
    has_children = {u.parent_code for u in tree if u.parent_code}
    return StatusView(
        key=key,
        plan=plan,
        now=now,
        units=tree,
        index={u.code: i for i, u in enumerate(tree)},
        cells=cells,
        subtree=status.subtree,
        has_children=has_children,
        built_at=time.monotonic(),
    )


# status_key() layout: (campaign, plan hash, newest submission, newest member, newest unit, local day, deadlines passed,
# newest refusal)
KEY_SUBMISSION = 2
MAX_INCREMENTAL_UNITS = 200  # more units touched at once than this: a full build is as quick


def update_view(uow: UnitOfWork, old: StatusView, campaign_id: str, now: dt.datetime, key: tuple,
                due_soon_working_days: int) -> StatusView | None:
    """``old`` with the units that received submissions since it was built recomputed, and their
    ancestors' subtree counts moved by the difference. None when anything else changed (plan,
    members, units, the day, a deadline passed) or too many units did: then a full build is due."""
    if old.key[:KEY_SUBMISSION] != key[:KEY_SUBMISSION] or old.key[KEY_SUBMISSION + 1:] != key[KEY_SUBMISSION + 1:]:
        return None
    before, after = old.key[KEY_SUBMISSION] or 0, key[KEY_SUBMISSION]
    if after is None or after < before:
        return None
    unit_ids = set(uow.session.scalars(
        select(Submission.unit_id).where(Submission.campaign_id == campaign_id, Submission.id > before, Submission.id <= after).distinct()
    ))
    if len(unit_ids) > MAX_INCREMENTAL_UNITS:
        return None
    by_id = {u.id: u for u in old.units} if unit_ids else {}
    units = [by_id[i] for i in unit_ids if i in by_id]
    if len(units) != len(unit_ids):
        return None  # a unit the view does not know
    cells = dict(old.cells)
    subtree = dict(old.subtree)
    copied: set[str] = set()
    if units:
        plan = old.plan
        members = members_of(uow, {u.id: u.code for u in units})
        deliveries = load_unit_deliveries(uow, campaign_id, unit_ids, now)
        for unit in units:
            info = UnitInfo(unit.id, unit.code, unit.name, unit.kind, unit.parent_code)
            previous = {c.phase_id: c for c in old.cells.get(unit.code, ())}
            fresh = []
            for phase in plan.phases_for_kind(unit.kind):
                items = owed_items(phase, info, members.get(unit.code, []))
                state, required, present, late, missing, _optional = unit_phase_state(
                    plan, phase, items, deliveries, now, due_soon_working_days
                )
                was = previous.get(phase.id)
                d_required = required - (was.required if was else 0)
                d_present = present - (was.present if was else 0)
                code: str | None = unit.code
                while code is not None and (d_required or d_present):  # the unit and its ancestors
                    if code not in copied:
                        subtree[code] = dict(subtree.get(code, {}))
                        copied.add(code)
                    for part in (phase.id, "*"):
                        r, p = subtree[code].get(part, (0, 0))
                        subtree[code][part] = (r + d_required, p + d_present)
                    parent = old.unit(code)
                    code = parent.parent_code if parent else None
                fresh.append(Cell(phase.id, state, required, present, late, len(missing), 0, 0))
            cells[unit.code] = tuple(fresh)
        for code in copied | {u.code for u in units}:  # each Cell carries its subtree counts
            cells[code] = tuple(
                Cell(c.phase_id, c.state, c.required, c.present, c.late, c.missing, *subtree.get(code, {}).get(c.phase_id, (0, 0)))
                for c in cells.get(code, ())
            )
    return StatusView(
        key=key, plan=old.plan, now=now, units=old.units, index=old.index, cells=cells, subtree=subtree,
        has_children=old.has_children, built_at=old.built_at, build_seconds=old.build_seconds,
    )


def members_of(uow: UnitOfWork, units: dict[int, str]) -> dict[str, list[MemberInfo]]:
    """Members of some units (id -> code), as the status needs them, by unit code."""
    temp = Unit.__table__.alias("t")
    rows = uow.session.execute(
        select(Member.id, Member.member_code, Member.full_name, Member.unit_id, Member.status, temp.c.code, Member.positions,
               Member.joined_on, Member.email)
        .select_from(Member)
        .outerjoin(temp, temp.c.id == Member.temporary_unit_id)
        .where(Member.unit_id.in_(list(units)))
        .order_by(Member.member_code)
    )
    out: dict[str, list[MemberInfo]] = defaultdict(list)
    for mid, code, name, unit_id, status, temp_code, positions, joined_on, email in rows:
        out[units[unit_id]].append(MemberInfo(mid, code, name, units[unit_id], status, temp_code, tuple(positions or ()), joined_on, email))
    return out


class RenderCache:
    """A small LRU of rendered fragments, keyed with the status view they were rendered from."""

    def __init__(self, size: int = RENDER_CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self._making = threading.Lock()

    def get(self, key: tuple) -> object | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def get_or_make(self, key: tuple, make: Callable[[], object]) -> object:
        """The cached value, or ``make()``'s; requests that miss together wait for one render, not each do it."""
        value = self.get(key)
        if value is not None:
            return value
        with self._making:
            value = self.get(key)
            if value is None:
                value = make()
                self.put(key, value)
            return value

    def put(self, key: tuple, value: object) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# ----------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class UnitRef:
    """A unit as plain values, safe to use after its unit of work has closed."""

    id: int
    code: str
    name: str
    kind: str
    path: str
    depth: int

    @classmethod
    def of(cls, unit: Unit) -> "UnitRef":
        return cls(unit.id, unit.code, unit.name, unit.kind, unit.path, unit.depth)


def scoped_unit(uow: UnitOfWork, campaign_id: str, code: str, root_path: str) -> Unit | None:
    """The unit if it is inside the subtree at ``root_path``, else None (the caller answers 404).
    A code typed in another case ("sct-cb04") finds the unit when only one unit has that code so."""
    unit = uow.session.scalar(select(Unit).where(Unit.campaign_id == campaign_id, Unit.code == code))
    if unit is None and code:
        found = uow.session.scalars(select(Unit).where(Unit.campaign_id == campaign_id, func.upper(Unit.code) == code.upper()).limit(2)).all()
        unit = found[0] if len(found) == 1 else None
    if unit is None or not unit.path.startswith(root_path):
        return None
    return unit


def unit_paths(uow: UnitOfWork, campaign_id: str, codes) -> dict[str, str]:
    """Path of each unit code given (those that exist)."""
    codes = sorted(c for c in codes if c)
    if not codes:
        return {}
    return dict(uow.session.execute(select(Unit.code, Unit.path).where(Unit.campaign_id == campaign_id, Unit.code.in_(codes))).all())


def ancestors_in_scope(uow: UnitOfWork, unit: Unit, root_path: str) -> list[Unit]:
    """Breadcrumbs: the unit's ancestors from the viewer's root down (none above the root)."""
    codes = [c for c in unit.path.strip("/").split("/")][:-1]
    if not codes:
        return []
    rows = uow.session.scalars(select(Unit).where(Unit.campaign_id == unit.campaign_id, Unit.code.in_(codes)))
    by_code = {u.code: u for u in rows}
    return [by_code[c] for c in codes if c in by_code and by_code[c].path.startswith(root_path)]


# ----------------------------------------------------------------------------- overview


@dataclass
class PhaseSummary:
    phase: Phase
    counts: dict[str, int]
    units: int
    percent: float | None
    passed: bool


@dataclass
class OverdueRow:
    unit: TreeUnit
    phase: Phase
    missing: int
    required: int


@dataclass
class Overview:
    root: TreeUnit
    units: int
    percent: float | None
    required: int
    present: int
    cell_counts: dict[str, int]
    unit_states: dict[str, int]  # units with at least one phase in each state (``StatusView.states``)
    overdue_units: int
    done_late_units: int
    phases: list[PhaseSummary]
    overdue: list[OverdueRow]
    overdue_total: int


def overview(view: StatusView, root_code: str, overdue_limit: int = 100) -> Overview:
    """Progress, state counts and the overdue list of a subtree; memoised on the view."""
    memo_key = ("overview", root_code, overdue_limit)
    cached = view.memo.get(memo_key)
    if cached is not None:
        return cached
    units = view.subtree_units(root_code)
    phases = view.plan.phases
    per_phase: dict[str, dict[str, int]] = {p.id: {s: 0 for s in STATES} for p in phases}
    cell_counts = {s: 0 for s in STATES}
    unit_states = {s: 0 for s in (*STATES, NO_STATE)}
    overdue: list[OverdueRow] = []
    phase_by_id = {p.id: p for p in phases}
    for unit in units:
        for state in view.states(unit.code):  # as the tree's filter reads them: its links show these units
            unit_states[state] += 1
        for cell in view.cells.get(unit.code, ()):
            per_phase[cell.phase_id][cell.state] += 1
            cell_counts[cell.state] += 1
            if cell.state == "overdue":
                overdue.append(OverdueRow(unit, phase_by_id[cell.phase_id], cell.missing, cell.required))
    overdue.sort(key=lambda r: (r.phase.deadline, r.unit.path))
    summaries = []
    for phase in phases:
        counts = per_phase[phase.id]
        summaries.append(
            PhaseSummary(phase, counts, sum(counts.values()), view.subtree_percent(root_code, phase.id), view.now > phase.deadline)
        )
    required, present = view.subtree_counts(root_code)
    result = Overview(
        root=view.unit(root_code),
        units=len(units),
        percent=view.subtree_percent(root_code),
        required=required,
        present=present,
        cell_counts=cell_counts,
        unit_states=unit_states,
        overdue_units=unit_states["overdue"],
        done_late_units=unit_states["done_late"],
        phases=summaries,
        overdue=overdue[:overdue_limit],
        overdue_total=len(overdue),
    )
    with view.lock:
        view.memo[memo_key] = result
    return result


@dataclass(frozen=True)
class Contact:
    """Who to call about an overdue unit: its addresses, and how often it was chased for the phase."""

    emails: tuple[str, ...]
    escalations: int  # escalation steps sent for the unit's phase
    last_escalated_at: dt.datetime | None
    escalation_mails: int = 0  # escalation emails made about the unit's phase, whatever became of them
    escalations_failed: int = 0  # ... of which the last try failed (waiting to retry, or given up)
    escalation_error: dict | str | None = None  # the newest failed one's ``last_error``
    escalations_sent_mails: int = 0  # ... of which were sent

    @property
    def escalations_waiting(self) -> int:
        """Emails made but neither sent nor failed yet (queued, being sent)."""
        return max(0, self.escalation_mails - self.escalations_failed - self.escalations_sent_mails)


# Built once: the overview asks on every request (bound lists keep the compiled form cached).
_UNIT_EMAILS = select(Unit.id, Unit.emails).where(Unit.id.in_(bindparam("ids", expanding=True)))
# Every escalation email about the rows' units, by status: "sent" ones count the steps that reached
# someone; emails made but failed (SMTP down) or still waiting must not read as "not chased".
_ESCALATION_MAILS = (
    select(Notice.unit_id, Notice.phase_id, Outbox.status, func.count(func.distinct(Notice.step)), func.count(func.distinct(Outbox.id)),
           func.max(Outbox.sent_at), func.max(Outbox.id))
    .join(Outbox, Outbox.id == Notice.outbox_id)
    .where(Notice.campaign_id == bindparam("campaign"), Notice.unit_id.in_(bindparam("ids", expanding=True)),
           Notice.kind == "escalation")
    .group_by(Notice.unit_id, Notice.phase_id, Outbox.status)
)


def overdue_contacts(uow: UnitOfWork, campaign_id: str, rows: list[OverdueRow]) -> dict[tuple[str, str], Contact]:
    """``Contact`` of each overdue row shown, by (unit code, phase id): a few queries by the rows' units."""
    if not rows:
        return {}
    ids = sorted({r.unit.id for r in rows})
    emails = dict(uow.session.execute(_UNIT_EMAILS, {"ids": ids}).all())
    chased: dict[tuple[int, str], dict] = defaultdict(lambda: {"steps": 0, "last": None, "mails": 0, "failed": 0, "sent": 0, "failed_id": None})
    for unit_id, phase_id, status, steps, mails, last, newest in uow.session.execute(_ESCALATION_MAILS, {"campaign": campaign_id, "ids": ids}):
        entry = chased[(unit_id, phase_id)]
        entry["mails"] += mails
        if status == "sent":
            entry["steps"], entry["last"], entry["sent"] = steps, last, mails
        elif status == "failed":
            entry["failed"], entry["failed_id"] = mails, newest
    failed_ids = [e["failed_id"] for e in chased.values() if e["failed_id"] is not None]
    errors = dict(uow.session.execute(select(Outbox.id, Outbox.last_error).where(Outbox.id.in_(failed_ids))).all()) if failed_ids else {}
    out = {}
    for r in rows:
        entry = chased.get((r.unit.id, r.phase.id)) or {"steps": 0, "last": None, "mails": 0, "failed": 0, "sent": 0, "failed_id": None}
        out[(r.unit.code, r.phase.id)] = Contact(
            tuple(e for e in emails.get(r.unit.id) or () if e), entry["steps"], entry["last"], entry["mails"], entry["failed"],
            errors.get(entry["failed_id"]), entry["sent"],
        )
    return out


def notices_sent(uow: UnitOfWork, campaign_id: str, root_path: str, whole_campaign: bool) -> dict:
    """Reminders and escalations sent (outbox rows with status 'sent'), for the viewer's subtree;
    escalation emails made, whatever their status (``escalations_made``: the overdue list says
    "đã tạo N thư" of those not sent, and its render is keyed by this); and, so that an office does
    not believe its mail went out, how many messages failed (every kind for the whole campaign;
    those about the subtree otherwise) and the newest failure's ``last_error`` as stored
    (``failed``, ``last_error``: a ``SendOutcome.as_dict()`` or text; shown through ``mail_error_text``)."""
    counts: dict = {"reminder": 0, "escalation": 0, "escalations_made": 0}
    kinds = ("reminder", "escalation")
    about = None if whole_campaign else select(Notice.outbox_id).join(Unit, Unit.id == Notice.unit_id).where(
        Notice.campaign_id == campaign_id, Unit.path.startswith(root_path, autoescape=True)
    )
    if about is None:
        rows = uow.session.execute(
            select(Outbox.kind, Outbox.status, func.count())
            .where(Outbox.campaign_id == campaign_id, Outbox.kind.in_(kinds))
            .group_by(Outbox.kind, Outbox.status)
        )
    else:
        rows = uow.session.execute(
            select(Outbox.kind, Outbox.status, func.count())
            .where(Outbox.id.in_(about), Outbox.kind.in_(kinds))
            .group_by(Outbox.kind, Outbox.status)
        )
    for kind, status, n in rows:
        if status == "sent":
            counts[kind] += n
        if kind == "escalation":
            counts["escalations_made"] += n
    counts.update(_mail_failures(uow, campaign_id, about))
    return counts


def _mail_failures(uow: UnitOfWork, campaign_id: str, about) -> dict:
    """How many messages' last try failed (waiting to retry, or given up), and the newest one's
    ``last_error``. Found by status first (``ix_outbox_due``): there are none, or few, on a good day."""
    failed = select(Outbox.last_error).where(Outbox.status == "failed", Outbox.campaign_id == campaign_id)
    if about is not None:
        failed = failed.where(Outbox.id.in_(about))
    count = uow.session.scalar(select(func.count()).select_from(failed.subquery())) or 0
    last = uow.session.scalar(failed.order_by(Outbox.claimed_at.desc().nulls_last(), Outbox.id.desc()).limit(1)) if count else None
    return {"failed": count, "last_error": last if isinstance(last, (dict, str)) and last else None}


# ----------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class TreeFilter:
    phase: str = ""
    state: str = ""
    kind: str = ""
    q: str = ""

    @property
    def active(self) -> bool:
        return bool(self.state or self.kind or self.q)


def fold(text: str) -> str:
    """Lower case without Vietnamese diacritics, for search (the same folding as the page script)."""
    return text.lower().translate(_FOLD)


_FOLD_SOURCE = (
    "àáảãạăằắẳẵặâầấẩẫậ", "èéẻẽẹêềếểễệ", "ìíỉĩị", "òóỏõọôồốổỗộơờớởỡợ", "ùúủũụưừứửữự", "ỳýỷỹỵ", "đ",
)
_FOLD = str.maketrans({ch: target for chars, target in zip(_FOLD_SOURCE, "aeiouyd") for ch in chars})


LATE_STATES = ("overdue", "done_late")  # a deadline missed: still owed, or delivered after it


@dataclass(frozen=True, slots=True)
class LatePhase:
    """A phase in which a unit missed the deadline, as the tree's row names it: short ("GĐ 2", the
    phase's number in the plan, as the timeline and the phase filter number them) with its deadline."""

    number: int
    phase: Phase
    state: str  # one of LATE_STATES

    @property
    def label(self) -> str:
        late = " nộp trễ" if self.state == "done_late" else ""
        return f"GĐ {self.number}{late} (hạn {format_date(self.phase.deadline)})"

    @property
    def title(self) -> str:
        what = "đã nộp đủ sau hạn chót" if self.state == "done_late" else "quá hạn, còn thiếu hồ sơ"
        return f"{self.number}. {self.phase.name}: {what} (hạn {format_instant(self.phase.deadline)})"


def late_phases(view: StatusView, code: str, phase_id: str | None = None) -> tuple[LatePhase, ...]:
    """The unit's phases past their deadline without everything in on time (that phase's only, given one):
    the overdue ones first (what to chase), then those delivered late, each in the plan's order."""
    cells = [c for c in view.cells.get(code, ()) if c.state in LATE_STATES and (not phase_id or c.phase_id == phase_id)]
    if not cells:
        return ()
    numbers = view.memo.get("phase_numbers")
    if numbers is None:
        numbers = {p.id: (i, p) for i, p in enumerate(view.plan.phases, 1)}
        with view.lock:
            view.memo["phase_numbers"] = numbers
    found = [LatePhase(*numbers[c.phase_id], c.state) for c in cells if c.phase_id in numbers]
    return tuple(sorted(found, key=lambda p: (LATE_STATES.index(p.state), p.number)))


@dataclass(frozen=True, slots=True)
class TreeRow:
    unit: TreeUnit
    depth: int  # relative to the root of the view
    state: str
    percent: float | None
    has_children: bool
    match: bool  # False: shown only as the ancestor of a match
    states: tuple[str, ...] = ()  # without a phase: the states of its phases, which the filter reads (sorted)
    late: tuple[LatePhase, ...] = ()  # the phases it is late in (``late_phases``), named on the row


def tree_rows(view: StatusView, root_code: str, flt: TreeFilter) -> list[TreeRow]:
    """The subtree's rows; a state filter keeps the units in that state (``StatusView.states``: without
    a phase, those with at least one phase in it, as the overview's cards count them)."""
    units = view.subtree_units(root_code)
    if not units:
        return []
    base = units[0].depth
    rows: list[TreeRow] = []
    q = fold(flt.q.strip()) if flt.q else ""
    phase = flt.phase or None
    for unit in units:
        state = view.state(unit.code, phase)
        states = view.states(unit.code, phase)
        match = True
        if flt.state and flt.state not in states:
            match = False
        elif flt.kind and unit.kind != flt.kind:
            match = False
        elif q and q not in fold(unit.name) and q not in unit.code.lower():
            match = False
        rows.append(TreeRow(unit, unit.depth - base, state, view.subtree_percent(unit.code, phase), unit.code in view.has_children, match,
                            () if phase else tuple(sorted(states)), late_phases(view, unit.code, phase)))
    if not flt.active:
        return rows
    # keep matches and their ancestors; ``stack`` holds the ancestors of the current row
    keep = [False] * len(rows)
    stack: list[int] = []
    for i, row in enumerate(rows):
        while stack and rows[stack[-1]].depth >= row.depth:
            stack.pop()
        if row.match:
            keep[i] = True
            for j in reversed(stack):
                if keep[j]:
                    break  # a kept row's ancestors are kept already
                keep[j] = True
        stack.append(i)
    return [r for r, k in zip(rows, keep) if k]


def kinds_in(view: StatusView, root_code: str) -> list[tuple[str, str]]:
    memo_key = ("kinds", root_code)
    found = view.memo.get(memo_key)
    if found is None:
        kinds = {u.kind for u in view.subtree_units(root_code)}
        found = [(k, UNIT_KINDS.get(k, k)) for k in UNIT_KINDS if k in kinds] + [(k, k) for k in sorted(kinds - set(UNIT_KINDS))]
        with view.lock:
            view.memo[memo_key] = found
    return found


# ----------------------------------------------------------------------------- unit page


@dataclass
class ChecklistItem:
    doc_type: str
    doc_name: str
    required: bool
    member_code: str | None
    member_name: str | None
    submission: Submission | None  # the current (newest) one
    first_on_time: bool | None
    versions: int
    # A classification list sent after the current one (or instead of any) that the ingest
    # could not read: the item is owed again.
    refused: Submission | None = None
    note: str = ""  # the plan's own words for the item

    @property
    def present(self) -> bool:
        return self.submission is not None


@dataclass
class PhaseChecklist:
    phase: Phase
    cell: Cell | None
    items: list[ChecklistItem]


def unit_members(uow: UnitOfWork, unit: Unit) -> list[MemberInfo]:
    temp = Unit.__table__.alias("t")
    rows = uow.session.execute(
        select(Member.id, Member.member_code, Member.full_name, Member.status, temp.c.code, Member.positions, Member.joined_on, Member.email)
        .select_from(Member)
        .outerjoin(temp, temp.c.id == Member.temporary_unit_id)
        .where(Member.unit_id == unit.id)
        .order_by(Member.member_code)
    )
    return [
        MemberInfo(mid, code, name, unit.code, status, temp_code, tuple(positions or ()), joined_on, email)
        for mid, code, name, status, temp_code, positions, joined_on, email in rows
    ]


def checklist(view: StatusView, unit: Unit, members: list[MemberInfo], history: list[tuple[Submission, list[SubmissionFile]]]) -> list[PhaseChecklist]:
    by_item: dict[str, list[Submission]] = defaultdict(list)
    refused: dict[str, Submission] = {}
    for submission, _files in history:  # newest first
        if submission.received_at > view.now:
            continue
        if submission.refused_at is not None:
            if submission.item_key not in by_item:
                refused.setdefault(submission.item_key, submission)
        else:
            by_item[submission.item_key].append(submission)
    phases = []
    for phase in view.plan.phases_for_kind(unit.kind):
        items = []
        for req in phase.documents:
            owners = [m for m in members if member_owes(m, req)] if req.per_member else [None]
            for member in owners:
                key = item_key(unit.code, phase.id, req.doc_type, member.code if member else None)
                subs = by_item.get(key, [])
                first = min(subs, key=lambda s: (s.received_at, s.id)) if subs else None
                items.append(
                    ChecklistItem(
                        req.doc_type, DOCUMENTS[req.doc_type].name, req.required,
                        member.code if member else None, member.full_name if member else None,
                        subs[0] if subs else None, first.on_time if first else None, len(subs), refused.get(key),
                        req.note,
                    )
                )
        phases.append(PhaseChecklist(phase, view.cell(unit.code, phase.id), items))
    return phases


REFUSAL_PROBLEMS_SHOWN = 20


def refusal_problems(uow: UnitOfWork, campaign_id: str, history: list[tuple[Submission, list[SubmissionFile]]]) -> dict[int, list[str]]:
    """Why the ingest refused each refused list of ``history`` (its logged problems), by submission id."""
    ids = [s.id for s, _ in history if s.refused_at is not None]
    if not ids:
        return {}
    rows = uow.session.execute(
        select(EventLog.subject, EventLog.detail).where(
            EventLog.campaign_id == campaign_id, EventLog.action == REFUSED_ACTION,
            EventLog.subject.in_([f"submission:{i}" for i in ids]),
        )
    )
    found: dict[int, list[str]] = {}
    for subject, detail in rows:
        problems = [Problem(**p) for p in (detail or {}).get("problems", [])]
        shown = [problem_text(p, with_file=True) for p in problems[:REFUSAL_PROBLEMS_SHOWN]]
        if len(problems) > REFUSAL_PROBLEMS_SHOWN:
            shown.append(f"… và {len(problems) - REFUSAL_PROBLEMS_SHOWN} lỗi khác")
        found[int(subject.split(":", 1)[1])] = shown
    return found


@dataclass
class NoticeRow:
    notice: Notice
    outbox: Outbox | None


def unit_notices(uow: UnitOfWork, unit: Unit, limit: int = 200) -> list[NoticeRow]:
    rows = uow.session.execute(
        select(Notice, Outbox)
        .outerjoin(Outbox, Outbox.id == Notice.outbox_id)
        .where(Notice.unit_id == unit.id)
        .order_by(Notice.planned_at.desc(), Notice.id.desc())
        .limit(limit)
    )
    return [NoticeRow(n, o) for n, o in rows]


@dataclass
class ResultRow:
    member_code: str
    member_name: str
    result: MemberResult
    sent_by: str = ""  # the unit whose list it came from, when not the member's own (a committee's decision)


def unit_results(uow: UnitOfWork, unit: Unit) -> tuple[list[ResultRow], list[OrgResult]]:
    """The results of the unit's own members, whoever sent them (its list, its committee's
    decision: a result row's unit is the sender), and of the unit as an organization."""
    sender = aliased(Unit)
    members = uow.session.execute(
        select(Member.member_code, Member.full_name, MemberResult, sender.id, sender.name)
        .join(Member, Member.id == MemberResult.member_id)
        .join(sender, sender.id == MemberResult.unit_id)
        .where(Member.campaign_id == unit.campaign_id, Member.unit_id == unit.id)
        .order_by(MemberResult.current.desc(), Member.member_code, MemberResult.received_at.desc())
    )
    orgs = uow.session.scalars(
        select(OrgResult).where(OrgResult.unit_id == unit.id).order_by(OrgResult.current.desc(), OrgResult.received_at.desc())
    )
    return [ResultRow(code, name, r, "" if sender_id == unit.id else sender_name) for code, name, r, sender_id, sender_name in members], list(orgs)


def awaiting_decision(uow: UnitOfWork, campaign_id: str, root_path: str) -> dict[str, str]:
    """Members of the subtree at ``root_path`` whose branch sent a proposal (``proposed_level``) that no
    decision followed yet: member code -> the proposed level. A consolidation counts only decided
    (final) levels, so these members are "chưa có kết quả" there, though their branch has done its part."""
    decided = (
        select(MemberResult.member_id)
        .where(MemberResult.campaign_id == campaign_id, MemberResult.current.is_(True), MemberResult.final_level.is_not(None))
    )
    rows = uow.session.execute(
        select(Member.member_code, MemberResult.proposed_level, MemberResult.received_at)
        .join(Member, Member.id == MemberResult.member_id)
        .join(Unit, Unit.id == Member.unit_id)
        .where(MemberResult.campaign_id == campaign_id, MemberResult.current.is_(True), MemberResult.final_level.is_(None),
               MemberResult.proposed_level.is_not(None), Unit.path.startswith(root_path, autoescape=True),
               MemberResult.member_id.not_in(decided))
        .order_by(MemberResult.received_at)
    )
    return {code: level for code, level, _ in rows}  # the newest current row last


def file_in_scope(uow: UnitOfWork, campaign_id: str, file_id: int, root_path: str) -> tuple[SubmissionFile, Submission, Unit] | None:
    if not 0 < file_id <= MAX_ID:
        return None
    row = uow.session.execute(
        select(SubmissionFile, Submission, Unit)
        .join(Submission, Submission.id == SubmissionFile.submission_id)
        .join(Unit, Unit.id == Submission.unit_id)
        .where(SubmissionFile.id == file_id, Submission.campaign_id == campaign_id)
    ).first()
    if row is None or not row[2].path.startswith(root_path):
        return None
    return row[0], row[1], row[2]


def member_options(uow: UnitOfWork, unit: Unit) -> list[tuple[str, str]]:
    return [(m.code, m.full_name) for m in unit_members(uow, unit)]


# ----------------------------------------------------------------------------- consolidation


def snapshot_versions(uow: UnitOfWork, campaign_id: str, unit_id: int) -> list[Snapshot]:
    return list(
        uow.session.scalars(
            select(Snapshot).where(Snapshot.campaign_id == campaign_id, Snapshot.unit_id == unit_id).order_by(Snapshot.version.desc())
        )
    )


def latest_snapshots(uow: UnitOfWork, campaign_id: str, root_path: str, children_of: int | None = None) -> list[tuple[Unit, Snapshot]]:
    """The newest snapshot of each unit in a subtree (or of a unit's children), in path order."""
    latest = (
        select(Snapshot.unit_id, func.max(Snapshot.version).label("version"))
        .where(Snapshot.campaign_id == campaign_id)
        .group_by(Snapshot.unit_id)
        .subquery()
    )
    query = (
        select(Unit, Snapshot)
        .join(latest, latest.c.unit_id == Unit.id)
        .join(Snapshot, (Snapshot.unit_id == latest.c.unit_id) & (Snapshot.version == latest.c.version) & (Snapshot.campaign_id == campaign_id))
        .where(Unit.campaign_id == campaign_id, Unit.path.startswith(root_path, autoescape=True))
    )
    if children_of is not None:
        query = query.where(Unit.parent_id == children_of)
    rows = [(u, s) for u, s in uow.session.execute(query)]
    rows.sort(key=lambda r: r[0].path)
    return rows


# ----------------------------------------------------------------------------- users and audit


@dataclass(frozen=True)
class Access:
    """How a person gets in: their last sign-in, their newest link, and its e-mail's fate."""

    last_login_at: dt.datetime | None = None
    link_expires_at: dt.datetime | None = None
    link_used_at: dt.datetime | None = None
    invite_status: str | None = None  # the newest invitation e-mail: queued | sending | sent | failed
    invite_error: str = ""


def user_access(uow: UnitOfWork, campaign_id: str, root_path: str) -> dict[int, Access]:
    """``Access`` of each user of the subtree at ``root_path``, in three grouped queries (sign-ins,
    links, invitation e-mails) joined on the subtree, not on a list of ids (a country has
    hundreds of thousands of secretaries)."""
    in_scope = (
        select(User.id, User.email)
        .join(Unit, Unit.id == User.unit_id)
        .where(User.campaign_id == campaign_id, Unit.path.startswith(root_path, autoescape=True))
        .subquery()
    )
    logins = dict(uow.session.execute(
        select(in_scope.c.id, func.max(EventLog.at))
        .join(EventLog, EventLog.actor == in_scope.c.email)
        .where(EventLog.campaign_id == campaign_id, EventLog.action == "web.login")
        .group_by(in_scope.c.id)
    ).all())
    newest_link = (
        select(func.max(SignInToken.id)).join(in_scope, in_scope.c.id == SignInToken.user_id).group_by(SignInToken.user_id)
    )
    links = {
        user_id: (expires_at, used_at)
        for user_id, expires_at, used_at in uow.session.execute(
            select(SignInToken.user_id, SignInToken.expires_at, SignInToken.used_at).where(SignInToken.id.in_(newest_link))
        )
    }
    newest_mail = (
        select(func.max(Outbox.id))
        .join(in_scope, in_scope.c.email == Outbox.recipient)
        .where(Outbox.campaign_id == campaign_id, Outbox.kind == "invite")
        .group_by(Outbox.recipient)
    )
    mails = {
        recipient: (status, error)
        for recipient, status, error in uow.session.execute(
            select(Outbox.recipient, Outbox.status, Outbox.last_error).where(Outbox.id.in_(newest_mail))
        )
    }
    out: dict[int, Access] = {}
    for user_id, email in uow.session.execute(select(in_scope.c.id, in_scope.c.email)):
        expires_at, used_at = links.get(user_id, (None, None))
        status, error = mails.get(email, (None, None))
        out[user_id] = Access(logins.get(user_id), expires_at, used_at, status, error or "")
    return out


def users_in_scope(uow: UnitOfWork, campaign_id: str, root_path: str) -> list[tuple[User, Unit]]:
    rows = uow.session.execute(
        select(User, Unit)
        .join(Unit, Unit.id == User.unit_id)
        .where(User.campaign_id == campaign_id, Unit.path.startswith(root_path, autoescape=True))
        .order_by(Unit.path, User.email)
    )
    return [(u, unit) for u, unit in rows]


def audit_events(uow: UnitOfWork, campaign_id: str, action: str | None = None, limit: int = 300) -> list[EventLog]:
    query = select(EventLog).where(EventLog.campaign_id == campaign_id)
    if action:
        query = query.where(EventLog.action == action)
    # Newest written first: an entry's ``at`` is its own moment (a submission recorded with --at
    # 07/12/2023 today says 07/12/2023), which is not the order things were done in.
    return list(uow.session.scalars(query.order_by(EventLog.id.desc()).limit(limit)))


def audit_actions(uow: UnitOfWork, campaign_id: str) -> list[str]:
    return list(uow.session.scalars(select(EventLog.action).where(EventLog.campaign_id == campaign_id).distinct().order_by(EventLog.action)))


# ----------------------------------------------------------------------------- timeline and diffs


@dataclass(frozen=True)
class TimelineMark:
    x: float  # 0..1000 along the axis
    deadline: dt.datetime
    phases: tuple[Phase, ...]
    passed: bool
    row: int  # label row: 0, 2, 4… above the axis (0 nearest), 1, 3, 5… below; the first where the labels fit
    numbers: tuple[int, ...] = ()  # the phases' numbers in the plan
    label_x: float = 0.0  # the labels' centre: the mark's x, moved inwards at the ends of the axis
    date_y: float = 0.0  # baselines of the date and of the phases' numbers
    phases_y: float = 0.0

    @property
    def phases_label(self) -> str:
        return "GĐ " + ", ".join(str(n) for n in self.numbers)


@dataclass(frozen=True)
class Timeline:
    start: dt.datetime
    end: dt.datetime
    marks: tuple[TimelineMark, ...]
    today_x: float
    today_inside: bool  # False: today is before or after the drawn range (marker at an edge)
    axis_y: float = 0.0
    today_y: float = 0.0  # baseline of today's label, below every row
    height: float = 0.0
    left: float = -50.0  # the drawing's horizontal extent (the axis runs from 0 to TIMELINE_WIDTH)
    right: float = 1050.0


TIMELINE_WIDTH = 1000.0
TIMELINE_LEFT, TIMELINE_RIGHT = -50.0, 1050.0
# The labels are laid out at the largest size the page draws them (base.html: 16 units where the
# screen is narrow and the drawing scaled down, 13 otherwise), with DejaVu Sans's advance widths
# (the widest of the page's fonts): the drawing scales as a whole, so labels apart at that size
# are apart at every width.
LABEL_FONT = 16.0
_LABEL_EM = {**dict.fromkeys("0123456789", 0.636), "/": 0.337, ",": 0.318, " ": 0.318, "G": 0.775, "Đ": 0.770}
LABEL_GAP = 10.0  # the least space between two labels on one row
LABEL_ASCENT, LABEL_DESCENT = 15.0, 4.0  # of a line of text at LABEL_FONT
LABEL_LINE = 21.0  # from a date's baseline to its phases' line
LABEL_ROW = 46.0  # from one row of labels to the next on the same side of the axis
TIMELINE_MARGIN = 6.0


def label_width(text: str) -> float:
    return LABEL_FONT * sum(_LABEL_EM.get(ch, 0.8 if ch.isupper() else 0.65) for ch in text)


def timeline(plan: Plan, now: dt.datetime) -> Timeline:
    """Deadlines on an axis from a week before the first to a few days after the last.

    Each deadline's labels (its date, its phases' numbers) go on the first row where they clear the
    labels already there: rows alternate above and below the axis, outwards, so deadlines a day
    apart get rows of their own however many there are, and the drawing grows by the rows used."""
    deadlines = sorted({p.deadline for p in plan.phases})
    start = deadlines[0] - dt.timedelta(days=7)
    end = deadlines[-1] + dt.timedelta(days=3)
    span = (end - start).total_seconds()
    numbers = {p.id: i for i, p in enumerate(plan.phases, 1)}

    def x_of(moment: dt.datetime) -> float:
        return round(TIMELINE_WIDTH * min(1.0, max(0.0, (moment - start).total_seconds() / span)), 1)

    placed = []
    row_ends: list[float] = []  # each row's rightmost label edge so far
    for deadline in deadlines:
        phases = tuple(p for p in plan.phases if p.deadline == deadline)
        nums = tuple(numbers[p.id] for p in phases)
        x = x_of(deadline)
        half = max(label_width("00/00/0000"), label_width("GĐ " + ", ".join(map(str, nums)))) / 2
        centre = round(min(max(x, TIMELINE_LEFT + half), TIMELINE_RIGHT - half), 1)
        row = next((r for r, edge in enumerate(row_ends) if edge + LABEL_GAP <= centre - half), len(row_ends))
        if row == len(row_ends):
            row_ends.append(0.0)
        row_ends[row] = centre + half
        placed.append((x, deadline, phases, nums, centre, row))

    above, below = (len(row_ends) + 1) // 2, len(row_ends) // 2
    # Above the axis a row is a date over the circle's top, its phases' line over it; below, the other way round.
    inner_above = 15.0  # from the axis up to the first row's date baseline (circle r=7, gap, descent)
    inner_below = 26.0  # from the axis down to the first row's date baseline (circle, gap, ascent)
    axis = TIMELINE_MARGIN + inner_above + LABEL_LINE + LABEL_ASCENT + (above - 1) * LABEL_ROW
    marks = []
    for x, deadline, phases, nums, centre, row in placed:
        level = row // 2
        if row % 2 == 0:
            date_y = axis - inner_above - level * LABEL_ROW
            phases_y = date_y - LABEL_LINE
        else:
            date_y = axis + inner_below + level * LABEL_ROW
            phases_y = date_y + LABEL_LINE
        marks.append(TimelineMark(x, deadline, phases, now > deadline, row, nums, centre, round(date_y, 1), round(phases_y, 1)))
    today_y = axis + inner_below + below * LABEL_ROW
    return Timeline(
        start, end, tuple(marks), x_of(now), start <= now <= end, axis_y=round(axis, 1), today_y=round(today_y, 1),
        height=round(today_y + LABEL_DESCENT + TIMELINE_MARGIN, 1), left=TIMELINE_LEFT, right=TIMELINE_RIGHT,
    )


MAX_DIFF_UNITS = 500  # above this many units with snapshots, a diff compares the unit's own payloads only


def compare_versions(uow: UnitOfWork, campaign_id: str, unit: Unit, old: Snapshot, new: Snapshot) -> tuple[dict, bool]:
    """What changed in a unit's subtree between two of its versions; (changes, whole_subtree).

    Each unit of the subtree is taken at its newest snapshot no later than each version
    (the unit itself at exactly those versions), so members of the branches below, the
    totals on the way up and the findings at each unit are compared, as ``diff`` expects.
    """
    rows = uow.session.execute(
        select(Unit.code, Snapshot.unit_id, Snapshot.version, Snapshot.created_at)
        .join(Unit, Unit.id == Snapshot.unit_id)
        .where(Snapshot.campaign_id == campaign_id, Unit.path.startswith(unit.path, autoescape=True),
               Snapshot.created_at <= max(old.created_at, new.created_at))
    ).all()
    if len({r.unit_id for r in rows}) > MAX_DIFF_UNITS:
        old_payload, new_payload = old.payload or {}, new.payload or {}
        members = member_changes_between(uow, campaign_id, {unit.code: (unit.id, old_payload, new_payload)}, old, new)
        return compare_payloads(old_payload, new_payload, unit.code, members), False
    picks: dict[str, dict[str, tuple[int, int]]] = {"old": {}, "new": {}}
    for side, snap in (("old", old), ("new", new)):
        chosen: dict[str, tuple[dt.datetime, int, int]] = {}
        for code, unit_id, version, created_at in rows:
            if code == unit.code or created_at > snap.created_at:
                continue
            if code not in chosen or (created_at, version) > chosen[code][:2]:
                chosen[code] = (created_at, version, unit_id)
        picks[side] = {code: (unit_id, version) for code, (_, version, unit_id) in chosen.items()}
        picks[side][unit.code] = (unit.id, snap.version)
    wanted = set(picks["old"].values()) | set(picks["new"].values())
    payloads = {
        (unit_id, version): payload
        for unit_id, version, payload in uow.session.execute(
            select(Snapshot.unit_id, Snapshot.version, Snapshot.payload).where(
                Snapshot.campaign_id == campaign_id, tuple_(Snapshot.unit_id, Snapshot.version).in_(sorted(wanted))
            )
        )
    }
    before = {code: payloads[key] for code, key in picks["old"].items()}
    after = {code: payloads[key] for code, key in picks["new"].items()}
    # Summaries count members without listing them: whose result changed is read from the
    # results at the two versions' times, for the units in both whose own members moved.
    members = member_changes_between(
        uow, campaign_id, {code: (picks["new"][code][0], before[code], after[code]) for code in before.keys() & after.keys()}, old, new,
    )
    return consolidation_diff(before, after, members=members), True


def compare_payloads(old: dict, new: dict, code: str, members: dict[str, list[dict]] | None = None) -> dict:
    """What changed between two versions of one unit's own payload (the whole subtree's findings included)."""
    changes = consolidation_diff({code: old}, {code: new}, members=members)
    old_findings = {f["key"]: f for f in old.get("findings", []) if "key" in f}
    new_findings = {f["key"]: f for f in new.get("findings", []) if "key" in f}
    changes["findings_appeared"] = [new_findings[k] for k in sorted(new_findings.keys() - old_findings.keys())]
    changes["findings_gone"] = [old_findings[k] for k in sorted(old_findings.keys() - new_findings.keys())]
    changes["findings_changed"] = [
        {"key": k, "old": old_findings[k], "new": new_findings[k]}
        for k in sorted(old_findings.keys() & new_findings.keys())
        if old_findings[k] != new_findings[k]
    ]
    return changes
