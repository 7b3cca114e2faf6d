"""Read-side queries: load what the pure core needs, as plain values, in a few set-based queries.

A campaign's status is computed whole (``compute_status`` over every unit, member and
delivery) while the tree is small. Above ``WHOLE_TREE_MAX_MEMBERS`` members (a national
campaign: 300,000 units, 5.6 million members) it is a ``PartitionedStatus``: every unit's own
counts of items owed, delivered and delivered late come from two GROUP BY queries
(``own_item_counts``, streamed into flat arrays), the states follow from the counts, and the
subtree counts are rolled up the tree over the arrays. A unit's rows with their missing items
are computed when asked for, with the partition holding the unit: a run of units in path
order of about ``PARTITION_MEMBERS`` members, loaded with its own members and deliveries only
(``iter_status_parts``). A unit's own rows depend only on its own items, so each partition's
rows are exactly the whole computation's. Planning notices goes partition by partition the
same way (``kiemdiem.steps.plan_partitioned``).
"""

from __future__ import annotations

import datetime as dt
import json
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from sqlalchemy import Integer, String, bindparam, cast, func, select, text

from kiemdiem.catalogue import LEADER_POSITIONS, REVIEWED_STATUSES
from kiemdiem.plan import Plan
from kiemdiem.status import STATES, CampaignStatus, Delivery, MemberInfo, UnitInfo, UnitPhaseStatus, compute_status
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import Member, Submission, Unit, UtcDateTime

PARTITION_MEMBERS = 25_000  # members (plus units) per partition: some tens of MB of items and notices
PARTITION_UNITS = 10_000  # units per partition: keeps IN lists well under driver parameter limits
WHOLE_TREE_MAX_MEMBERS = 60_000  # above this many members, status and planning go partition by partition
IN_CHUNK = 10_000


def load_units(uow: UnitOfWork, campaign_id: str, subtree_of: str | None = None) -> list[UnitInfo]:
    parent = Unit.__table__.alias("parent")
    query = (
        select(Unit.id, Unit.code, Unit.name, Unit.kind, parent.c.code, Unit.emails)
        .select_from(Unit)
        .outerjoin(parent, parent.c.id == Unit.parent_id)
        .where(Unit.campaign_id == campaign_id)
        .order_by(Unit.path)
    )
    if subtree_of is not None:
        root_path = uow.session.scalar(select(Unit.path).where(Unit.campaign_id == campaign_id, Unit.code == subtree_of))
        if root_path is None:
            return []
        query = query.where(Unit.path.startswith(root_path))
    return [UnitInfo(uid, code, name, kind, parent_code, tuple(emails or ())) for uid, code, name, kind, parent_code, emails in uow.session.execute(query)]


def load_members(uow: UnitOfWork, campaign_id: str, unit_ids: set[int] | None = None) -> list[MemberInfo]:
    unit = Unit.__table__.alias("u")
    temp = Unit.__table__.alias("t")
    query = (
        select(
            Member.id, Member.member_code, Member.full_name, unit.c.code, Member.status, temp.c.code,
            Member.positions, Member.joined_on, Member.email, Member.unit_id,
        )
        .select_from(Member)
        .join(unit, unit.c.id == Member.unit_id)
        .outerjoin(temp, temp.c.id == Member.temporary_unit_id)
        .where(Member.campaign_id == campaign_id)
        .order_by(Member.member_code)
    )
    rows = uow.session.execute(query)
    return [
        MemberInfo(mid, code, name, unit_code, status, temp_code, tuple(positions or ()), joined_on, email)
        for mid, code, name, unit_code, status, temp_code, positions, joined_on, email, unit_id in rows
        if unit_ids is None or unit_id in unit_ids
    ]


def load_deliveries(uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> dict[str, Delivery]:
    """Each item's first and last delivery received at or before ``now`` (time travel for --at);
    a list the ingest refused is not a delivery."""
    return _deliveries(uow, _deliveries_query(campaign_id, now))


def _deliveries_query(campaign_id: str, now: dt.datetime, unit_ids: list[int] | None = None):
    """Per item: first and last delivery at or before ``now``, how many, and whether the first was on time."""
    scope = [Submission.campaign_id == campaign_id, Submission.received_at <= now, Submission.refused_at.is_(None)]
    if unit_ids is not None:
        scope.append(Submission.unit_id.in_(unit_ids))
    first = (
        select(Submission.item_key, func.min(Submission.received_at).label("first_at"), func.max(Submission.received_at).label("last_at"), func.count().label("n"))
        .where(*scope)
        .group_by(Submission.item_key)
        .subquery()
    )
    return (
        select(first.c.item_key, first.c.first_at, first.c.last_at, first.c.n, func.min(cast(Submission.on_time, Integer)))
        .join(Submission, (Submission.item_key == first.c.item_key) & (Submission.received_at == first.c.first_at))
        .where(Submission.campaign_id == campaign_id, Submission.refused_at.is_(None))
        .group_by(first.c.item_key, first.c.first_at, first.c.last_at, first.c.n)
    )


def _deliveries(uow: UnitOfWork, query, into: dict[str, Delivery] | None = None) -> dict[str, Delivery]:
    deliveries = {} if into is None else into
    for key, first_at, last_at, n, on_time in uow.session.connection().execute(query):
        deliveries[key] = Delivery(_aware(first_at), bool(on_time), _aware(last_at), n)
    return deliveries


def _aware(value: dt.datetime) -> dt.datetime:
    # Aggregates bypass the column type on SQLite and come back naive; stored values are UTC.
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def campaign_status(
    uow: UnitOfWork,
    plan: Plan,
    campaign_id: str,
    now: dt.datetime,
    *,
    subtree_of: str | None = None,
    due_soon_working_days: int = 3,
    partitioned: bool | None = None,
    max_members: int = PARTITION_MEMBERS,
) -> CampaignStatus:
    """Every unit's status at ``now`` (of ``subtree_of``'s subtree only, if given).

    ``partitioned``: None chooses by size (more than ``WHOLE_TREE_MAX_MEMBERS`` members: by
    partitions, a ``PartitionedStatus``); both give the same rows and subtree counts."""
    units = load_units(uow, campaign_id, subtree_of)
    if subtree_of is not None and units:
        # The subtree's root has no parent inside the view; roll up stops there.
        root = units[0]
        units[0] = UnitInfo(root.id, root.code, root.name, root.kind, None, root.emails)
    counts = member_counts(uow, campaign_id)
    if partitioned is None:
        partitioned = sum(counts.get(u.id, 0) for u in units) > WHOLE_TREE_MAX_MEMBERS
    if partitioned:
        return partitioned_status(
            uow, plan, campaign_id, now, units, counts, due_soon_working_days=due_soon_working_days, max_members=max_members
        )
    unit_ids = {u.id for u in units} if subtree_of else None
    members = load_members(uow, campaign_id, unit_ids)
    deliveries = load_deliveries(uow, campaign_id, now)
    return compute_status(plan, units, members, deliveries, now, due_soon_working_days=due_soon_working_days)


# ----------------------------------------------------------------------------- by partitions


def member_counts(uow: UnitOfWork, campaign_id: str) -> dict[int, int]:
    """Members per unit id (units without members are absent)."""
    query = select(Member.unit_id, func.count()).where(Member.campaign_id == campaign_id).group_by(Member.unit_id)
    return dict(uow.session.execute(query).all())


def load_members_of(uow: UnitOfWork, campaign_id: str, unit_ids: list[int]) -> list[MemberInfo]:
    """``load_members`` for some units only, filtered in SQL. Each unit's members come in the
    same order (by member code) as from ``load_members``. Read through Core, with the positions
    as JSON text decoded only when not empty (most members hold none): a third of the time."""
    unit = Unit.__table__.alias("u")
    temp = Unit.__table__.alias("t")
    connection = uow.session.connection()
    out: list[MemberInfo] = []
    for start in range(0, len(unit_ids), IN_CHUNK):
        query = (
            select(
                Member.id, Member.member_code, Member.full_name, unit.c.code, Member.status, temp.c.code,
                cast(Member.__table__.c.positions, String), Member.joined_on, Member.email,
            )
            .select_from(Member)
            .join(unit, unit.c.id == Member.unit_id)
            .outerjoin(temp, temp.c.id == Member.temporary_unit_id)
            .where(Member.campaign_id == campaign_id, Member.unit_id.in_(unit_ids[start : start + IN_CHUNK]))
            .order_by(Member.member_code)
        )
        out.extend(
            MemberInfo(mid, code, name, unit_code, status, temp_code, _positions(positions), joined_on, email)
            for mid, code, name, unit_code, status, temp_code, positions, joined_on, email in connection.execute(query)
        )
    return out


_NO_POSITIONS = (None, "", "[]", "null")


def _positions(text: str | None) -> tuple[str, ...]:
    return () if text in _NO_POSITIONS else tuple(json.loads(text) or ())


def load_unit_deliveries(uow: UnitOfWork, campaign_id: str, unit_ids: Iterable[int], now: dt.datetime) -> dict[str, Delivery]:
    """``load_deliveries`` for the items of some units only (an item's submissions all carry its unit)."""
    unit_ids = sorted(unit_ids)
    deliveries: dict[str, Delivery] = {}
    for start in range(0, len(unit_ids), IN_CHUNK):
        _deliveries(uow, _deliveries_query(campaign_id, now, unit_ids[start : start + IN_CHUNK]), deliveries)
    return deliveries


def partition_units(
    units: list[UnitInfo], members: Mapping[int, int], max_members: int = PARTITION_MEMBERS, max_units: int = PARTITION_UNITS
) -> list[list[UnitInfo]]:
    """Cut ``units`` (in path order) into consecutive runs of about ``max_members`` members (each
    unit weighs 1 plus its members) and at most ``max_units`` units. A unit is never split."""
    parts: list[list[UnitInfo]] = []
    current: list[UnitInfo] = []
    weight = 0
    for unit in units:
        w = 1 + members.get(unit.id, 0)
        if current and (weight + w > max_members or len(current) >= max_units):
            parts.append(current)
            current, weight = [], 0
        current.append(unit)
        weight += w
    if current:
        parts.append(current)
    return parts


def status_of_units(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, units: list[UnitInfo], *,
    due_soon_working_days: int = 3, phase_ids: set[str] | None = None,
) -> tuple[list[MemberInfo], CampaignStatus]:
    """The own rows of some units (their members and deliveries loaded for them alone). Their
    subtree counts cover only the units given."""
    ids = [u.id for u in units]
    members = load_members_of(uow, campaign_id, ids)
    deliveries = load_unit_deliveries(uow, campaign_id, ids, now)
    status = compute_status(plan, units, members, deliveries, now, due_soon_working_days=due_soon_working_days, phase_ids=phase_ids)
    return members, status


def iter_status_parts(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, units: list[UnitInfo], *,
    members: Mapping[int, int] | None = None, due_soon_working_days: int = 3, phase_ids: set[str] | None = None,
    max_members: int = PARTITION_MEMBERS,
) -> Iterator[tuple[list[UnitInfo], list[MemberInfo], CampaignStatus]]:
    """Partition by partition (in path order): its units, their members, and their own rows."""
    counts = members if members is not None else member_counts(uow, campaign_id)
    for part in partition_units(units, counts, max_members):
        part_members, status = status_of_units(
            uow, plan, campaign_id, now, part, due_soon_working_days=due_soon_working_days, phase_ids=phase_ids
        )
        yield part, part_members, status
        del part_members, status


class PartitionedStatus(CampaignStatus):
    """A ``CampaignStatus`` whose rows are computed partition by partition.

    Built in one pass over the partitions, keeping each unit's own item counts per phase in
    flat arrays and rolling them up the tree. ``by_unit`` and ``subtree`` are read-only
    mappings: a unit's rows (missing items included) are recomputed with its partition when
    asked for, and only the last partition is kept, so going through the units in order
    computes each partition once more and never holds more than one. Recomputing reads the
    database again in its own session at the same ``now``.
    """

    def __init__(
        self, now: dt.datetime, units: list[UnitInfo], starts: list[int], keys: list[str],
        required: dict[str, array], present: dict[str, array], rows: dict[str, array], states: Counter,
        compute_part,
    ):
        by_code = {u.code: u for u in units}
        super().__init__(now=now, units=by_code, by_unit=_PartRows(self), subtree=_PartSubtree(self))
        self._list = units
        self._index = {u.code: i for i, u in enumerate(units)}
        self._starts = starts
        self._keys = keys
        self._required, self._present, self._rows = required, present, rows
        self._states = states
        self._compute_part = compute_part
        self._cached: tuple[int, CampaignStatus] | None = None

    @property
    def partitions(self) -> int:
        return len(self._starts) - 1

    def count_states(self) -> dict[str, int]:
        return {s: self._states.get(s, 0) for s in STATES}

    def subtree_percent(self, code: str, phase_id: str = "*") -> float | None:
        i = self._index.get(code)
        if i is None or phase_id not in self._rows or not self._rows[phase_id][i]:
            return None
        required, present = self._required[phase_id][i], self._present[phase_id][i]
        return None if required == 0 else round(100.0 * present / required, 1)

    def _part_of(self, i: int) -> CampaignStatus:
        from bisect import bisect_right  # noqa: PLC0415

        p = bisect_right(self._starts, i) - 1
        if self._cached is not None and self._cached[0] == p:
            return self._cached[1]
        self._cached = None  # free the previous partition first
        status = self._compute_part(self._list[self._starts[p] : self._starts[p + 1]])
        for code, rows in status.by_unit.items():
            j = self._index[code]
            for row in rows:
                row.subtree_required = self._required[row.phase_id][j]
                row.subtree_present = self._present[row.phase_id][j]
        self._cached = (p, status)
        return status

    def _rows_of(self, code: str) -> list[UnitPhaseStatus]:
        i = self._index[code]
        return self._part_of(i).by_unit[code]

    def _subtree_of(self, code: str) -> dict[str, tuple[int, int]]:
        i = self._index[code]
        out = {k: (self._required[k][i], self._present[k][i]) for k in self._keys if self._rows[k][i]}
        if not out:
            raise KeyError(code)
        return out


class _PartRows(Mapping):
    def __init__(self, owner: PartitionedStatus):
        self._owner = owner

    def __getitem__(self, code: str) -> list[UnitPhaseStatus]:
        return self._owner._rows_of(code)

    def __iter__(self):
        return iter(self._owner.units)

    def __len__(self) -> int:
        return len(self._owner.units)

    def __contains__(self, code) -> bool:
        return code in self._owner.units


class _PartSubtree(Mapping):
    def __init__(self, owner: PartitionedStatus):
        self._owner = owner

    def __getitem__(self, code: str) -> dict[str, tuple[int, int]]:
        if code not in self._owner._index:
            raise KeyError(code)
        return self._owner._subtree_of(code)

    def __iter__(self):
        owner = self._owner
        return (u.code for i, u in enumerate(owner._list) if owner._rows["*"][i])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _requirement_values(plan: Plan, per_member: bool) -> tuple[str, dict]:
    """The plan's required documents (per member or per unit) as a VALUES list: kind, phase, doc, scope."""
    rows = sorted(
        {
            (kind, phase.id, req.doc_type, req.member_scope)
            for phase in plan.phases for kind in phase.applies_to for req in phase.documents
            if req.required and req.per_member == per_member
        }
    )
    # The same document twice in a phase is two items: count duplicates as the Python does.
    counted = Counter(
        (kind, phase.id, req.doc_type, req.member_scope)
        for phase in plan.phases for kind in phase.applies_to for req in phase.documents
        if req.required and req.per_member == per_member
    )
    rows = [row for row in rows for _ in range(counted[row])]
    tag = "rm" if per_member else "ru"  # distinct parameter names for the two lists
    params = {f"{tag}{i}_{j}": v for i, row in enumerate(rows) for j, v in enumerate(row)}
    values = ", ".join(f"(:{tag}{i}_0, :{tag}{i}_1, :{tag}{i}_2, :{tag}{i}_3)" for i in range(len(rows)))
    return values, params


def _owes_sql(dialect: str) -> str:
    """``status.member_owes`` in SQL, for member ``m`` and requirement ``r``."""
    reviewed = ", ".join(f"'{s}'" for s in sorted(REVIEWED_STATUSES))
    leaders = ", ".join(f"'{p}'" for p in sorted(LEADER_POSITIONS))
    if dialect == "postgresql":
        leader = f"jsonb_exists_any(CAST(m.positions AS jsonb), ARRAY[{leaders}])"
    else:
        leader = f"EXISTS (SELECT 1 FROM json_each(m.positions) AS j WHERE j.value IN ({leaders}))"
    return (
        f"(r.scope = 'all' OR (m.status IN ({reviewed}) AND (r.scope NOT IN ('temporary', 'leaders')"
        f" OR (r.scope = 'temporary' AND m.temporary_unit_id IS NOT NULL) OR (r.scope = 'leaders' AND {leader}))))"
    )


def own_item_counts(uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime) -> Iterator[tuple[str, int, str, int]]:
    """Set-based, in two GROUP BY queries streamed: per unit and phase, the required items owed by
    the unit's members (``("members", unit id, phase, n)``) and the required items delivered by
    ``now`` (``("present", ...)`` and, of those whose first delivery was late, ``("late", ...)``).
    The same items as ``status.owed_items`` and the same deliveries as ``load_deliveries``."""
    connection = uow.session.connection().execution_options(stream_results=True, yield_per=20_000)
    dialect = connection.dialect.name
    owes = _owes_sql(dialect)
    values, params = _requirement_values(plan, True)
    if values:
        owed = text(
            f"WITH r(kind, phase_id, doc_type, scope) AS (VALUES {values}) "
            "SELECT m.unit_id, r.phase_id, count(*) FROM members m JOIN units u ON u.id = m.unit_id JOIN r ON r.kind = u.kind "
            f"WHERE m.campaign_id = :campaign AND {owes} GROUP BY m.unit_id, r.phase_id"
        )
        for unit_id, phase_id, n in connection.execute(owed, {**params, "campaign": campaign_id}):
            yield "members", unit_id, phase_id, n
    unit_values, unit_params = _requirement_values(plan, False)
    parts = []
    if unit_values:
        parts.append(
            "SELECT d.unit_id, d.phase_id, d.ok FROM d JOIN units u ON u.id = d.unit_id "
            "JOIN ru AS r ON r.kind = u.kind AND r.phase_id = d.phase_id AND r.doc_type = d.doc_type WHERE d.member_id IS NULL"
        )
    if values:
        parts.append(
            f"SELECT d.unit_id, d.phase_id, d.ok FROM d JOIN units u ON u.id = d.unit_id "
            f"JOIN rm AS r ON r.kind = u.kind AND r.phase_id = d.phase_id AND r.doc_type = d.doc_type "
            f"JOIN members m ON m.id = d.member_id AND m.unit_id = d.unit_id WHERE {owes}"
        )
    if not parts:
        return
    ctes = [
        "f AS (SELECT item_key, min(received_at) AS first_at FROM submissions"
        " WHERE campaign_id = :campaign AND received_at <= :now AND refused_at IS NULL GROUP BY item_key)",
        "d AS (SELECT s.item_key, min(s.unit_id) AS unit_id, min(s.phase_id) AS phase_id, min(s.doc_type) AS doc_type,"
        " min(s.member_id) AS member_id, min(CAST(s.on_time AS INTEGER)) AS ok"
        " FROM f JOIN submissions s ON s.campaign_id = :campaign AND s.item_key = f.item_key AND s.received_at = f.first_at"
        " AND s.refused_at IS NULL GROUP BY s.item_key)",
    ]
    if unit_values:
        ctes.append(f"ru(kind, phase_id, doc_type, scope) AS (VALUES {unit_values})")
    if values:
        ctes.append(f"rm(kind, phase_id, doc_type, scope) AS (VALUES {values})")
    delivered = text(
        "WITH " + ", ".join(ctes) + " SELECT x.unit_id, x.phase_id, count(*), sum(1 - x.ok) FROM ("
        + " UNION ALL ".join(parts) + ") AS x GROUP BY x.unit_id, x.phase_id"
    ).bindparams(bindparam("now", type_=UtcDateTime))
    for unit_id, phase_id, n, late in connection.execute(delivered, {**params, **unit_params, "campaign": campaign_id, "now": now}):
        yield "present", unit_id, phase_id, n
        if late:
            yield "late", unit_id, phase_id, late


def own_counts(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, units: list[UnitInfo]
) -> tuple[dict[str, array], dict[str, array], dict[str, array]]:
    """Each unit's own required, present and late item counts per phase id (flat arrays in the
    order of ``units``), set-based (``own_item_counts``) plus the per-unit documents."""
    n = len(units)
    keys = [p.id for p in plan.phases]
    required = {k: array("q", bytes(8 * n)) for k in keys}
    present = {k: array("q", bytes(8 * n)) for k in keys}
    late = {k: array("q", bytes(8 * n)) for k in keys}
    by_id = {u.id: i for i, u in enumerate(units)}
    for what, unit_id, phase_id, count in own_item_counts(uow, plan, campaign_id, now):
        i = by_id.get(unit_id)
        if i is None or phase_id not in late:
            continue
        target = required if what == "members" else present if what == "present" else late
        target[phase_id][i] += count
    per_unit = {
        (kind, phase.id): sum(1 for r in phase.documents if r.required and not r.per_member)
        for phase in plan.phases for kind in phase.applies_to
    }
    for i, unit in enumerate(units):
        for phase in plan.phases_for_kind(unit.kind):
            required[phase.id][i] += per_unit[(unit.kind, phase.id)]
    return required, present, late


def own_rows(
    plan: Plan, now: dt.datetime, units: list[UnitInfo], counts: tuple[dict[str, array], dict[str, array], dict[str, array]],
    due_soon_working_days: int = 3,
) -> Iterator[tuple[int, UnitInfo, object, str, int, int, int]]:
    """Every unit's rows (``status.unit_phase_state`` from counts): (index, unit, phase, state,
    required, present, late), units in order, each unit's phases in plan order."""
    required, present, late = counts
    calendar = plan.calendar
    today = calendar.local(now).date()
    soon = {
        p.id: "due_soon" if calendar.working_days_between(today, calendar.local(p.deadline).date()) <= due_soon_working_days else "pending"
        for p in plan.phases
        if now <= p.deadline
    }
    phases_for = {}
    for i, unit in enumerate(units):
        phases = phases_for.get(unit.kind)
        if phases is None:
            phases = phases_for[unit.kind] = plan.phases_for_kind(unit.kind)
        for phase in phases:
            k = phase.id
            req, done, lt = required[k][i], present[k][i], late[k][i]
            if done >= req:
                state = "done_late" if lt else "done"
            else:
                state = "overdue" if now > phase.deadline else soon[k]
            yield i, unit, phase, state, req, done, lt


def partitioned_status(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, units: list[UnitInfo], members: Mapping[int, int], *,
    due_soon_working_days: int = 3, max_members: int = PARTITION_MEMBERS,
) -> PartitionedStatus:
    """The status of ``units`` (in path order, parents first): each unit's own counts set-based
    in SQL (``own_counts``), states and the subtree roll-up over flat arrays; the rows
    themselves, with their missing items, partition by partition when read."""
    n = len(units)
    keys = [p.id for p in plan.phases] + ["*"]
    own = own_counts(uow, plan, campaign_id, now, units)
    required = {k: array("q", bytes(8 * n)) for k in keys}
    present = {k: array("q", bytes(8 * n)) for k in keys}
    rows = {k: array("q", bytes(8 * n)) for k in keys}
    states: Counter = Counter()
    for i, _unit, phase, state, req, done, _late in own_rows(plan, now, units, own, due_soon_working_days):
        states[state] += 1
        for k in (phase.id, "*"):
            required[k][i] += req
            present[k][i] += done
            rows[k][i] += 1
    del own
    index = {u.code: i for i, u in enumerate(units)}
    # Children come after their parents: add each unit's subtree counts to its parent's.
    for i in range(n - 1, -1, -1):
        parent = units[i].parent_code
        p = index.get(parent) if parent is not None else None
        if p is None:
            continue
        for k in keys:
            if rows[k][i]:
                required[k][p] += required[k][i]
                present[k][p] += present[k][i]
                rows[k][p] += rows[k][i]
    starts = [0]
    for part in partition_units(units, members, max_members):
        starts.append(starts[-1] + len(part))
    factory = uow._factory

    def compute_part(part: list[UnitInfo]) -> CampaignStatus:
        with UnitOfWork(factory) as again:
            return status_of_units(again, plan, campaign_id, now, part, due_soon_working_days=due_soon_working_days)[1]

    return PartitionedStatus(now, units, starts, keys, required, present, rows, states, compute_part)
