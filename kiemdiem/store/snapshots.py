"""Consolidation snapshots: one versioned, hashed summary per unit; reruns only where results changed.

``consolidate_campaign`` runs one pass at ``now`` under the campaign's lock (``lock_campaign``):

1. what changed since the last run: the ``changed_units`` the caller passes (the tick passes what
   its ingest changed) plus every change logged in the event log since the last run's watermark
   (``kiemdiem.store.results.CHANGE_ACTIONS``), so a crash between ingest and consolidation
   loses nothing;
2. a full run when there is no snapshot yet, when the caller passes None, when the organization
   or the plan was re-imported, or when the tree differs from the last run's; otherwise an
   incremental run of the changed units and their ancestors (see ``_incremental``), which reads
   only those units' members, results and stored summaries and rebuilds each summary from its
   stored one (``reconsolidate_lines``; a full run instead when the stored ones do not fit).
   When the tree is the last run's (no import logged since, even one that counts later, and
   the same fingerprint: count, highest and sum of the unit ids, kept with each run), the
   incremental run reads only the units it needs (``_Tree``: the changed units, their
   ancestors and their children in one read, then whatever their committees decided);
   otherwise it reads the whole unit list and compares the tree's hash, as a full run does.
   Both count members set-based (``_own_tallies``): each unit's own members by reason and
   level, with the sum of their keys, counted by the database, the members evaluated without a
   level listed, and full records only for the members a member rule could report
   (``_examine_masks``); ``consolidate_lines`` rolls up. Snapshots do not list members: whose
   result changed is read from the results at both versions' times (``_member_changes``).
   A rule set with a member rule the store cannot pre-select for is consolidated from every
   member's full record (``consolidate``);
3. each recomputed unit whose ``unit_hash`` differs from its newest ``Snapshot.content_hash``
   gets version n+1 with the summary as payload (the hashed canonical JSON text, written as is)
   and the difference from version n; the same inputs make no new row;
4. when versions above 1 were made, every affected office (the emails of each updated unit)
   gets one ``consolidation_diff`` email in the outbox: whose result changed, which totals moved
   from the changed unit up to that office's unit, which findings appeared or went away.

A full run of a big campaign (more than ``PARTITION_MEMBERS`` members, or ``part_members``) goes
in parts, in bounded memory (``_full_in_parts``): the tree is cut into subtrees of at most
``PART_MEMBERS`` members (``_split_parts``; a committee that decides across parts is kept above
them, with its ancestors, so that its 20% cap counts everything it decided); each group of parts,
consecutive in path order, is read by one path range, consolidated (``consolidate_lines(part=True)``),
hashed, compared and written at once, and only its roots' summaries are kept; the units above the
parts are then built from their own members and those summaries (``rollup_lines``) and written.
The snapshots, versions, differences and emails are those of the run in one piece.

A second pass at the same ``now`` changes nothing. Two concurrent passes are serialised by the
lock; a unique-version conflict (a writer that skipped the lock) rolls back and retries.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import NamedTuple

from sqlalchemy import (
    BigInteger, Integer, String, all_, and_, any_, bindparam, case, cast, func, literal, or_, select, text, true, type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from kiemdiem.consolidation import (
    ConsolidationInput,
    LinesInput,
    MemberRecord,
    MemberResult,
    MissingMember,
    NeedsFullRun,
    OrgResult,
    OwnMembers,
    OwnTally,
    Override,
    UnitNode,
    UnitSummary,
    consolidate,
    consolidate_lines,
    diff,
    diff_csv,
    diff_is_empty,
    gc_paused,
    line_weight,
    lines_supported,
    member_changes,
    reconsolidate_lines,
    render_diff_text,
    rollup_lines,
    tally_lines,
)
from kiemdiem.errors import NotFound
from kiemdiem.notify.messages import ComposedMessage, compose_consolidation_diff
from kiemdiem.plan import Plan
from kiemdiem.rules import r132_21, r366_43
from kiemdiem.rules.base import (
    HEAD_POSITION,
    LEVELS,
    NEW_MEMBER_MONTHS,
    NOT_EVALUATED_REASONS,
    RuleSet,
    absent_pending,
    disciplined_member,
    get_rule_set,
    head_above_unit,
    invalid_level,
    months_before,
    no_self_review,
    not_evaluated_classified,
    unit_of_key,
)
from kiemdiem.settings import smtp_settings
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import EventLog, FindingOverride, Member, Snapshot, Unit
from kiemdiem.store.models import MemberResult as MemberResultRow
from kiemdiem.store.models import OrgResult as OrgResultRow
from kiemdiem.store.organization import get_campaign
from kiemdiem.store.outbox import enqueue_many, outbox_values
from kiemdiem.store.results import CHANGE_ACTIONS, ID_CHUNK, lock_campaign

COMPLETED_ACTION = "consolidation.completed"
# Changes after which only a full run is exact: members may have moved, rules may differ.
FULL_RUN_ACTIONS = ("org.imported", "plan.updated")
MAX_ATTEMPTS = 3
SNAPSHOT_INSERT_BATCH = 500  # snapshot rows per INSERT (payloads are large)
COPY_ROWS = 100  # PostgreSQL: from this many snapshot rows, COPY rather than INSERT
# A full run of a campaign with more members than this goes in parts (``_full_in_parts``): subtrees
# of at most PART_MEMBERS members each, read by path range, consolidated, written and let go;
# only their roots' summaries stay for the units above them.
PARTITION_MEMBERS = 500_000
PART_MEMBERS = 250_000


@dataclass
class ConsolidationReport:
    mode: str  # full | incremental | unchanged | as_of (a moment before the last stored run: computed, not stored)
    recomputed: int  # units whose summary was rebuilt
    changed_units: list[str]  # the change set the run started from
    units_updated: list[str]  # units given a new version, deepest first
    versions: dict[str, int]  # unit -> its new version
    diff: dict = field(default_factory=dict)  # consolidation.diff over the updated units ({} on first versions only)
    diff_text: str = ""
    outbox_ids: list[int] = field(default_factory=list)
    # Seconds per step: lock, compute (with loading), hash (comparing with the stored versions), store (with
    # the text and hash of first versions, made as written), diff (the report's), notify (the offices' emails);
    # a run in parts also has read (the parts' members and results, out of compute).
    timings: dict[str, float] = field(default_factory=dict)
    units_read: int = 0  # units of the tree the run read (an incremental run: the ones it rebuilt and their neighbours)
    parts: int = 0  # a full run in parts: how many batches it wrote (the parts, then the units above them); else 0
    as_of: dict[str, dict] = field(default_factory=dict)  # mode as_of: each unit's summary (``to_dict``) at that moment
    last_run_at: dt.datetime | None = None  # mode as_of: when the newest stored consolidation was made

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
            "units_read": self.units_read,
            "parts": self.parts,
            **({"last_run_at": self.last_run_at.isoformat()} if self.last_run_at else {}),
        }


# --------------------------------------------------------------------------- loading the input


class _UnitRow(NamedTuple):
    id: int
    code: str
    name: str
    kind: str
    parent_code: str | None


def _rows(uow: UnitOfWork, statement, params: dict | None = None):
    """All rows, plain, through the session's connection: no ORM row machinery on the big reads."""
    return uow.session.connection().execute(statement, params).all()


def _units(uow: UnitOfWork, campaign_id: str) -> list[_UnitRow]:
    """Every unit of the campaign (in no particular order: consolidation does not depend on it)."""
    rows = _raw_rows(uow, select(Unit.id, Unit.code, Unit.name, Unit.kind, Unit.parent_id).where(Unit.campaign_id == campaign_id))
    code_of = {row[0]: row[1] for row in rows}.get
    return [_UnitRow(uid, code, name, kind, code_of(pid)) for uid, code, name, kind, pid in rows]


def _chunked(values: list, size: int = ID_CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _preload(code_of: dict[int, str], unit_ids: Iterable[int | None]) -> None:
    """Load at once the units a partial ``_Tree`` does not hold yet (else one query per unit)."""
    if isinstance(code_of, _Codes):
        code_of._tree.load_ids(uid for uid in unit_ids if uid is not None)


def _flag(column):
    return type_coerce(column, Integer)


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _positions(text: str | None) -> tuple[str, ...]:
    # Most members hold no position: skip the JSON parser for them.
    if not text or text == "[]":
        return ()
    return tuple(json.loads(text))


# The statements of the reads below are built once (bound parameters: campaign, now, ids): an
# incremental run makes a dozen small reads, and building and keying a statement each time
# costs more than the database does to answer it.
_CAMPAIGN, _NOW = bindparam("campaign"), bindparam("now")
_IDS = bindparam("ids", expanding=True)
_ARRAY = bindparam("array", type_=ARRAY(Integer))  # PostgreSQL: a single array parameter


def _is_postgres(uow: UnitOfWork) -> bool:
    return uow.session.get_bind().dialect.name == "postgresql"


def _by_ids(uow: UnitOfWork, ids: list[int]) -> list[tuple[str, dict]]:
    """(variant, parameters) per query selecting the rows of ``ids``: one array parameter on
    PostgreSQL (thousands of bound values cost more to send and plan), IN lists of ``ID_CHUNK``
    elsewhere (bound-parameter limits)."""
    if _is_postgres(uow):
        return [("member_array", {"array": list(ids)})]
    return [("member", {"ids": chunk}) for chunk in _chunked(ids)]


@functools.cache
def _members_statement(by: str | None):
    query = select(
        Member.id, Member.member_code, Member.full_name, Member.unit_id, Member.status,
        cast(Member.joined_on, String), cast(Member.positions, String),
    )
    # By id: the primary key alone (ids are the campaign's already). With the campaign as well,
    # SQLite scans the campaign's members on an index led by campaign_id, for each chunk.
    if by == "member":
        return query.where(Member.id.in_(_IDS))
    if by == "member_array":
        return query.where(Member.id == any_(_ARRAY))
    query = query.where(Member.campaign_id == _CAMPAIGN)
    if by == "unit":
        return query.where(Member.unit_id.in_(_IDS))
    return query


def _members(uow: UnitOfWork, campaign_id: str, code_of: dict[int, str], unit_ids: list[int] | None,
             member_pks: list[int] | None = None) -> dict[int, MemberRecord]:
    """Full member records: all, or those of ``unit_ids``, or those with the ids ``member_pks``."""
    # Dates and positions are read as text and parsed here rather than by the column types and
    # the driver, row by row.
    if member_pks is not None:
        batches = [(_members_statement(by), params) for by, params in _by_ids(uow, member_pks)]
    elif unit_ids is not None:
        batches = [(_members_statement("unit"), {"ids": chunk}) for chunk in _chunked(unit_ids)]
    else:
        batches = [(_members_statement(None), {})]
    rows = []
    for statement, params in batches:
        rows += _raw_rows(uow, statement, {"campaign": campaign_id, **params})
    _preload(code_of, (row[3] for row in rows))
    out: dict[int, MemberRecord] = {}
    for pk, code, name, unit_id, status, joined_on, positions in rows:
        out[pk] = MemberRecord(code, name, code_of[unit_id], status, _date(joined_on), _positions(positions))
    return out


@functools.cache
def _member_results_statement(by: str | None, bounded: bool = False):
    r = MemberResultRow
    cancelled = and_(r.cancelled_at.is_not(None), r.cancelled_at <= _NOW)
    # Flags read as plain numbers (SQLite) or booleans (PostgreSQL), no per-row conversion.
    query = (
        select(r.member_id, r.unit_id, r.self_level, r.proposed_level, r.final_level, _flag(r.disciplined), r.sick_leave_months,
               _flag(r.absent), r.score, r.note, _flag(r.has_self_review), _flag(cancelled))
        .where(r.campaign_id == _CAMPAIGN, r.received_at <= _NOW)
        .order_by(r.member_id, r.received_at, r.id)
    )
    if bounded:  # only the rows stored up to a given id (what an earlier run saw)
        query = query.where(r.id <= bindparam("upto"))
    if by == "member":  # the results of these members only
        return query.where(r.member_id.in_(_IDS))
    if by == "member_array":
        return query.where(r.member_id == any_(_ARRAY))
    if by == "unit":  # driven by the members of those units (their index), not by every result of the campaign
        return query.where(r.member_id.in_(select(Member.id).where(Member.unit_id.in_(_IDS))))
    return query


def _member_results(uow: UnitOfWork, campaign_id: str, now: dt.datetime, code_of: dict[int, str],
                    members: dict[int, MemberRecord], unit_ids: list[int] | None, *, by_member: bool = False,
                    upto: int | None = None) -> list[MemberResult]:
    """Each member's result at ``now``: the newest received by then, unless cancelled by then
    (``upto``: among the rows stored up to that id)."""
    if by_member:
        batches = _by_ids(uow, sorted(members))
    elif unit_ids is None:
        batches = [(None, {})]
    else:
        batches = [("unit", {"ids": chunk}) for chunk in _chunked(unit_ids)]
    latest: dict[int, tuple] = {}
    for by, params in batches:
        params = {"campaign": campaign_id, "now": now, **params, **({} if upto is None else {"upto": upto})}
        statement = _member_results_statement(by, upto is not None)
        latest.update({row[0]: row for row in _raw_rows(uow, statement, params)})  # ordered: the newest row of each member wins
    _preload(code_of, (row[1] for row in latest.values()))
    out = []
    for pk, unit_id, self_level, proposed, final, disciplined, sick, absent, score, note, review, is_cancelled in latest.values():
        member = members.get(pk)
        if is_cancelled or member is None:
            continue
        out.append(MemberResult(member.member_id, code_of[unit_id], self_level, proposed, final, bool(disciplined),
                                float(sick or 0.0), bool(absent), score, note or "", bool(review)))
    return out


@functools.cache
def _org_results_statement(related: bool, postgres: bool = False):
    r = OrgResultRow
    cancelled = and_(r.cancelled_at.is_not(None), r.cancelled_at <= _NOW)
    query = (
        select(r.unit_id, r.decided_by_id, r.level, _flag(r.disciplined), r.self_level, _flag(cancelled))
        .where(r.campaign_id == _CAMPAIGN, r.received_at <= _NOW)
        .order_by(r.unit_id, r.received_at, r.id)
    )
    if not related:
        return query
    # Whole histories of the organizations concerned (a row decided by one of these units may
    # have been superseded by a row that is not), so that the newest row is picked right.
    decided = aliased(OrgResultRow)
    if postgres:
        # As an array worked out first, so that both halves are index lookups (an IN over a
        # subquery made PostgreSQL scan the whole table twice).
        decided_array = cast(select(func.array_agg(decided.unit_id)).where(
            decided.campaign_id == _CAMPAIGN, decided.decided_by_id.in_(_IDS)).scalar_subquery(), ARRAY(Integer))
        return query.where(or_(r.unit_id.in_(_IDS), r.unit_id == any_(decided_array)))
    decided_by_them = select(decided.unit_id).where(decided.campaign_id == _CAMPAIGN, decided.decided_by_id.in_(_IDS))
    return query.where(or_(r.unit_id.in_(_IDS), r.unit_id.in_(decided_by_them)))


def _org_results(uow: UnitOfWork, campaign_id: str, now: dt.datetime, code_of: dict[int, str],
                 related_to: list[int] | None = None) -> list[OrgResult]:
    """Each organization's result at ``now``; ``related_to``: only those of, or decided by, these units."""
    params = {"campaign": campaign_id, "now": now}
    if related_to is None:
        batches = [(_org_results_statement(False), params)]
    else:
        statement = _org_results_statement(True, _is_postgres(uow))
        batches = [(statement, params | {"ids": chunk}) for chunk in _chunked(related_to)]
    latest: dict[int, tuple] = {}
    for statement, values in batches:
        latest.update({row[0]: row for row in _raw_rows(uow, statement, values)})
    _preload(code_of, chain.from_iterable((row[0], row[1]) for row in latest.values()))
    return [
        OrgResult(code_of[uid], level, code_of[decided_by] if decided_by else None, bool(disciplined), self_level)
        for uid, decided_by, level, disciplined, self_level, is_cancelled in latest.values()
        if not is_cancelled
    ]


_OVERRIDES = select(
    FindingOverride.finding_key, FindingOverride.by, FindingOverride.reason, FindingOverride.at, FindingOverride.covers
).where(FindingOverride.campaign_id == _CAMPAIGN, FindingOverride.at <= _NOW)


def _overrides(uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> list[Override]:
    rows = uow.session.connection().execute(_OVERRIDES, {"campaign": campaign_id, "now": now})
    return [Override(key, by, reason, at, covers) for key, by, reason, at, covers in rows]


def _raw_rows(uow: UnitOfWork, statement, params: dict | None = None) -> list[tuple]:
    """All rows exactly as the driver returns them: plain tuples, no row objects, no type
    processing. Only for columns whose driver values are final: text, integers, flags."""
    result = uow.session.connection().execute(statement, params)
    try:
        strategy = getattr(result, "cursor_strategy", None)  # SQLAlchemy 2.0's fetch, minus the row objects
        if strategy is None:
            return [tuple(row) for row in result]
        return strategy.fetchall(result, result.cursor)
    finally:
        result.close()


def _not_evaluated_reason(rule_set: RuleSet, evaluation_date: dt.date):
    """``RuleSet.not_evaluated_reason_by_cutoff`` as a SQL expression (None if a rule set defines its own)."""
    if type(rule_set).not_evaluated_reason_by_cutoff is not RuleSet.not_evaluated_reason_by_cutoff:
        return None
    cutoff = months_before(evaluation_date, NEW_MEMBER_MONTHS)
    return case(
        (Member.status.in_(("exempt", "suspended")), Member.status),
        (Member.joined_on > cutoff, literal("new_member", String)),
        else_=literal(None, String),
    )


# For each member rule, a condition on the member row and one on its current result row (None:
# always) that both hold whenever the rule can report the member: its first tests, or wider.
# Every one of these rules judges a current result, so a member without one is never examined.
# A member meeting both conditions of some rule is read in full and checked by the rules; the
# others are counted by their lines.
def _levels_invalid(r):
    return or_(*(and_(column.is_not(None), column.not_in(LEVELS)) for column in (r.self_level, r.proposed_level, r.final_level)))


def _has_level(r):
    return or_(r.final_level.is_not(None), r.proposed_level.is_not(None))


def _band_differs(rs: RuleSet, r):
    if not rs.score_bands:
        return literal(False)
    band = case(*((r.score >= minimum, literal(level, String)) for minimum, level in rs.score_bands), else_=literal(None, String))
    return and_(
        r.score.is_not(None),
        or_(and_(r.final_level.is_not(None), r.final_level != band), and_(r.proposed_level.is_not(None), r.proposed_level != band)),
    )


# Stands for "the member is not evaluated" (the reason column, already read): tested here, not in SQL.
_NOT_EVALUATED = object()

_EXAMINE = {
    invalid_level: lambda rs, m, r, reason: (None, _levels_invalid(r)),
    not_evaluated_classified: lambda rs, m, r, reason: (_NOT_EVALUATED, _has_level(r)),
    disciplined_member: lambda rs, m, r, reason: (None, r.disciplined.is_(True)),
    no_self_review: lambda rs, m, r, reason: (None, r.has_self_review.is_(False)),
    # Positions are a JSON list of codes: the quoted code is in its text ("_" matches itself too);
    # most members hold none ("[]"), tested first (cheaper than the pattern).
    head_above_unit: lambda rs, m, r, reason: (
        and_(cast(m.positions, String) != "[]", cast(m.positions, String).like(f'%"{HEAD_POSITION}"%')), _has_level(r)
    ),
    absent_pending: lambda rs, m, r, reason: (None, r.absent.is_(True)),
    r132_21.sick_leave_ceiling: lambda rs, m, r, reason: (None, r.sick_leave_months >= r132_21.SICK_LEAVE_MONTHS),
    r366_43.score_missing: lambda rs, m, r, reason: (None, and_(r.score.is_(None), _has_level(r))),
    r366_43.score_band_mismatch: lambda rs, m, r, reason: (None, _band_differs(rs, r)),
}


def _examine_condition(rule_set: RuleSet, reason):
    """``_examine_masks`` as one condition on a member and their current result (some rule's two
    conditions both hold): what the database tests row by row when it counts by the flags."""
    either = []
    for rule in rule_set.member_rules:
        on_member, on_result = _EXAMINE[rule](rule_set, Member, MemberResultRow, reason)
        if on_member is _NOT_EVALUATED:
            on_member = reason.is_not(None)
        parts = [c for c in (on_member, on_result) if c is not None]
        either.append(and_(*parts) if parts else literal(True))
    return or_(*either) if either else literal(False)


def _examine_masks(rule_set: RuleSet, reason):
    """(member mask, bits for a member not evaluated, result mask): a member needs its full
    record when its member mask (plus those bits if it is not evaluated) and its current
    result's mask share a bit. Bit 0: the rules with a condition on the result only; one more
    bit per rule with a condition on the member. None when the rule set has a member rule with
    no known conditions (then every record is read)."""
    on_result_only, member_bits, result_bits = [], [], []
    not_evaluated_bits = 0
    for rule in rule_set.member_rules:
        known = _EXAMINE.get(rule)
        if known is None:
            return None
        on_member, on_result = known(rule_set, Member, MemberResultRow, reason)
        if on_member is None:
            on_result_only.append(on_result)
            continue
        bit = 2 << len(result_bits)
        if on_member is _NOT_EVALUATED:
            not_evaluated_bits |= bit
        else:
            member_bits.append(case((on_member, bit), else_=0))
        result_bits.append(case((on_result, bit), else_=0) if on_result is not None else literal(bit, Integer))
    member_mask = sum(member_bits[1:], member_bits[0]) if member_bits else literal(0, Integer)
    result_mask = sum(result_bits, case((or_(*on_result_only), 1), else_=0) if on_result_only else literal(0, Integer))
    return member_mask, not_evaluated_bits | 1, result_mask


def _level_slot(level_column):
    """0-3: the level's place in LEVELS; 4: none, cancelled or not a level (``line_weight``'s slots)."""
    return case(*((level_column == lv, i) for i, lv in enumerate(LEVELS)), else_=4)


# Two lookups, each on its index (``ix_member_results_received``, ``ix_member_results_cancelled``).
_FUTURE_RESULTS = select(
    select(MemberResultRow.id).where(MemberResultRow.campaign_id == _CAMPAIGN, MemberResultRow.received_at > _NOW).exists(),
    select(MemberResultRow.id).where(
        MemberResultRow.campaign_id == _CAMPAIGN, MemberResultRow.cancelled_at.is_not(None), MemberResultRow.cancelled_at > _NOW
    ).exists(),
)


def _current_flags_hold(uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> bool:
    """Whether each member's row flagged ``current`` is their result at ``now``: true unless a
    row was received or cancelled after ``now`` (consolidating an earlier moment). The flag is
    the newest row by (received time, id), cleared by a cancellation (``store.results``)."""
    received_later, cancelled_later = _raw_rows(uow, _FUTURE_RESULTS, {"campaign": campaign_id, "now": now})[0]
    return not received_later and not cancelled_later


class _Counter:
    """Own-member tallies built from (unit id, reason, level slot, members, sum of member keys)."""

    def __init__(self) -> None:
        self.groups: dict[int, list] = {}  # unit id -> [total, not_evaluated[3], counts[4], key]
        self.missing: dict[int, list[tuple[str, str]]] = {}  # unit id -> (member id, name) of those evaluated without a level

    def add(self, unit_id: int, reason: str | None, slot: int, count: int, keys: int) -> None:
        group = self.groups.get(unit_id)
        if group is None:
            group = self.groups[unit_id] = [0, [0, 0, 0], [0, 0, 0, 0], 0]
        group[0] += count
        group[3] += int(keys) * _WEIGHTS[slot, reason]
        if reason is not None:
            group[1][_REASON_SLOT[reason]] += count
        elif slot < 4:
            group[2][slot] += count

    def tallies(self, code_of) -> dict[str, OwnTally]:
        out = {}
        for unit_id, (total, not_eval, counts, key) in self.groups.items():
            code = code_of[unit_id]
            missing = tuple(MissingMember(member_id, name, code) for member_id, name in sorted(self.missing.get(unit_id, ())))
            out[code] = OwnTally(OwnMembers(total, tuple(not_eval), tuple(counts), key), missing)
        return out


_REASON_SLOT = {reason: i for i, reason in enumerate(NOT_EVALUATED_REASONS)}
_WEIGHTS = {
    (slot, reason): line_weight(LEVELS[slot] if slot < 4 else None, reason)
    for slot in range(5) for reason in (None, *NOT_EVALUATED_REASONS)
}


def _own_tallies(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, code_of: dict[int, str],
    units_where=None, *, by_flags: bool | None = None,
) -> tuple[dict[str, OwnTally], list[MemberRecord], list[MemberResult]] | None:
    """Every unit's own members counted (``OwnTally``), and the full records and results of the
    members a member rule must look at; None when the rule set needs every full record.

    ``units_where``: a condition on ``Unit`` (a path range, a list of ids): only the members of
    those units (one part of a run in parts). ``by_flags``: count by the ``current`` flags (True)
    or by reading each member's newest row (False) rather than as ``_current_flags_hold`` says.

    When each member's ``current`` row is their result at ``now`` (``_current_flags_hold``, the
    usual case), the database counts: one GROUP BY (unit, reason, level) with the sum of the
    members' keys, and one read of the members to list (evaluated without a level) or examine
    (PostgreSQL: both in one grouped pass).
    Consolidating an earlier moment reads one row per member instead (newest result received by
    ``now``): on PostgreSQL one joined read, on SQLite two plain reads joined here.
    """
    rule_set = get_rule_set(plan.rule_set)
    reason = _not_evaluated_reason(rule_set, plan.evaluation_date)
    masks = None if reason is None or not lines_supported(rule_set) else _examine_masks(rule_set, reason)
    if masks is None:
        return None
    member_mask, not_evaluated_bits, result_mask = masks
    r = MemberResultRow
    counter = _Counter()
    examine: list[int] = []
    unlisted: list[tuple[int, int]] = []  # PostgreSQL: (unit id, member id) of those to list, evaluated without a level
    in_units = None if units_where is None else Member.unit_id.in_(
        select(Unit.id).where(Unit.campaign_id == campaign_id, units_where)
    )
    postgres = _is_postgres(uow)
    if by_flags if by_flags is not None else _current_flags_hold(uow, campaign_id, now):
        joined = and_(r.campaign_id == Member.campaign_id, r.member_id == Member.id, r.current == true())
        slot = _level_slot(r.final_level)
        where = [Member.campaign_id == campaign_id]
        hash_joins = False
        if in_units is not None and postgres:
            # One part of a big campaign: its units as an array, and its results found by the
            # range of its members' ids (a part is imported together, so nearly contiguous) and
            # hash-joined: the planner's default, a lookup of each member's result, costs ~3x.
            unit_ids = [row[0] for row in _raw_rows(uow, select(Unit.id).where(Unit.campaign_id == campaign_id, units_where))]
            in_part = Member.unit_id == any_(literal(unit_ids, ARRAY(Integer)))
            part_ids = select(Member.id).where(in_part).offset(0).subquery()  # OFFSET 0: min/max by this index, not the primary key's
            low, high = _raw_rows(uow, select(func.min(part_ids.c.id), func.max(part_ids.c.id)))[0]
            if low is None:
                return {}, [], []
            # The range bounds both sides: without it the members were found by a scan of the
            # whole table per part (the planner guesses a third of the campaign for the array).
            where += [in_part, Member.id >= low, Member.id <= high]
            joined = and_(joined, r.member_id >= low, r.member_id <= high)
            # Nor parallel workers (starting them costs more than they save on a part), and room
            # for the grouping in memory (the default spills a part to disk).
            uow.session.connection().exec_driver_sql("SET LOCAL enable_nestloop = off; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL work_mem = '64MB'")
            hash_joins = True
        elif in_units is not None:
            where.append(in_units)
        needs_record = and_(r.id.is_not(None), _examine_condition(rule_set, reason))
        unlevelled = and_(reason.is_(None), slot == 4)
        if postgres:
            # One pass over the joined rows: counted by (unit, reason, level), with the ids of the
            # members to list (evaluated without a level) or examine, read by id afterwards. (Their
            # codes and names carried through the join and grouped by id cost a province-sized
            # part 2.0 s instead of 1.3.)
            rows = (
                select(Member.id.label("pk"), Member.unit_id.label("unit_id"), Member.code_key.label("key"), reason.label("why"),
                       slot.label("slot"), unlevelled.label("missing"), needs_record.label("examined"))
                .select_from(Member).outerjoin(r, joined).where(*where)
                .subquery()
            )
            counts = (
                select(rows.c.unit_id, rows.c.why, rows.c.slot, func.count(), func.sum(rows.c.key),
                       func.array_agg(rows.c.pk).filter(rows.c.missing), func.array_agg(rows.c.pk).filter(rows.c.examined))
                .group_by(rows.c.unit_id, rows.c.why, rows.c.slot)
            )
            for unit_id, why, level_slot, count, keys, missing_ids, examined_ids in _raw_rows(uow, counts):
                counter.add(unit_id, why, level_slot, count, keys)
                if missing_ids:
                    unlisted.extend((unit_id, pk) for pk in missing_ids)
                if examined_ids:
                    examine.extend(examined_ids)
        else:
            # SQLite: two passes (grouping with the ids too is no faster there).
            counts = (
                select(Member.unit_id, reason, slot, func.count(), func.sum(Member.code_key))
                .select_from(Member).outerjoin(r, joined).where(*where)
                .group_by(Member.unit_id, reason, slot)
            )
            for unit_id, why, level_slot, count, keys in _raw_rows(uow, counts):
                counter.add(unit_id, why, level_slot, count, keys)
            listed = (
                select(Member.id, Member.unit_id, Member.member_code, Member.full_name, unlevelled, needs_record)
                .select_from(Member).outerjoin(r, joined)
                .where(*where, or_(unlevelled, needs_record))
            )
            for pk, unit_id, code, name, is_missing, to_examine in _raw_rows(uow, listed):
                if is_missing:
                    counter.missing.setdefault(unit_id, []).append((code, name))
                if to_examine:
                    examine.append(pk)
        if hash_joins:
            uow.session.connection().exec_driver_sql("RESET enable_nestloop; RESET max_parallel_workers_per_gather; RESET work_mem")
    else:
        cancelled = and_(r.cancelled_at.is_not(None), r.cancelled_at <= now)
        level = case((cancelled, literal(None, String)), else_=r.final_level)
        result_bits = case((cancelled, 0), else_=result_mask)
        evaluated_bits = 1  # bit 0: rules that look at the result only
        columns = (Member.id, Member.unit_id, Member.member_code, Member.full_name, Member.code_key, reason, member_mask)
        if postgres:
            # One read: the server picks each member's newest row (on the results' index) and joins it.
            newest = (
                select(level.label("level"), result_bits.label("bits"))
                .where(r.member_id == Member.id, r.campaign_id == campaign_id, r.received_at <= now)
                .order_by(r.received_at.desc(), r.id.desc())
                .limit(1)
                .lateral("newest")
            )
            query = select(*columns, newest.c.level, newest.c.bits).select_from(Member).outerjoin(newest, literal(True)).where(
                Member.campaign_id == campaign_id, *(() if in_units is None else (in_units,))
            )
            rows = _raw_rows(uow, query)
        else:
            # Two plain reads (SQLite sorts and joins them slower than this): each member's newest
            # row received by ``now`` comes last and counts.
            member_query = select(*columns).where(Member.campaign_id == campaign_id)
            result_query = select(r.member_id, level, result_bits).where(r.campaign_id == campaign_id, r.received_at <= now).order_by(r.received_at, r.id)
            if in_units is not None:
                member_query = member_query.where(in_units)
                result_query = result_query.where(r.member_id.in_(select(Member.id).where(Member.campaign_id == campaign_id, in_units)))
            current = {row[0]: row[1:] for row in _raw_rows(uow, result_query)}.get
            rows = [(*row, *(current(row[0]) or (None, None))) for row in _raw_rows(uow, member_query)]
        level_slot = {lv: i for i, lv in enumerate(LEVELS)}.get
        for pk, unit_id, code, name, key, why, mask, final, found_bits in rows:
            slot = level_slot(final, 4) if final is not None else 4
            counter.add(unit_id, why, slot, 1, key)
            if why is None and slot == 4:
                counter.missing.setdefault(unit_id, []).append((code, name))
            if found_bits and (mask | (evaluated_bits if why is None else not_evaluated_bits)) & found_bits:
                examine.append(pk)
    _preload(code_of, counter.groups)
    examined = _members(uow, campaign_id, code_of, None, examine) if examine else {}
    if unlisted:  # PostgreSQL: the members to list, by id (code and name only; those examined are read already)
        others = sorted({pk for _, pk in unlisted if pk not in examined})
        names = {pk: (code, name) for pk, code, name in _raw_rows(uow, _LISTED_MEMBERS, {"array": others})} if others else {}
        for unit_id, pk in unlisted:
            record = examined.get(pk)
            counter.missing.setdefault(unit_id, []).append((record.member_id, record.full_name) if record else names[pk])
    results = _member_results(uow, campaign_id, now, code_of, examined, None, by_member=True) if examined else []
    return counter.tallies(code_of), list(examined.values()), results


_LISTED_MEMBERS = select(Member.id, Member.member_code, Member.full_name).where(Member.id == any_(_ARRAY))


def _tallies_of_records(plan: Plan, members: Iterable[MemberRecord], results: Iterable[MemberResult]) -> dict[str, OwnTally]:
    """Own-member tallies from full records, as ``consolidate`` would count them."""
    rule_set = get_rule_set(plan.rule_set)
    cutoff = months_before(plan.evaluation_date, NEW_MEMBER_MONTHS)
    final = {r.member_id: r.final_level for r in results}
    lines: dict[str, list] = {}
    for m in members:
        reason = rule_set.not_evaluated_reason_by_cutoff(m, cutoff)
        lines.setdefault(m.unit_code, []).append((m.member_id, m.full_name, final.get(m.member_id), reason))
    return {code: tally_lines(code, found) for code, found in lines.items()}


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


def _newest_rows(uow: UnitOfWork, campaign_id: str, unit_ids: Iterable[int]) -> dict[int, tuple[int, str, dict, dt.datetime, int | None]]:
    """unit id -> (version, content hash, payload, time, results up to) of its newest snapshot, for the given units.

    Each unit's rows by the ``(campaign_id, unit_id, version)`` index, kept when no newer version
    exists (a correlated lookup on the same index), rather than a join on a grouped subquery:
    right after a first run the planner's statistics still say the table is empty, and the join
    then rescans it for every unit."""
    out: dict[int, tuple[int, str, dict, dt.datetime, int | None]] = {}
    for chunk in _chunked(sorted(set(unit_ids))):
        rows = _rows(uow, _NEWEST_ROWS, {"campaign": campaign_id, "ids": chunk})
        out.update({uid: (version, content, payload, at, upto) for uid, version, content, payload, at, upto in rows})
    return out


_NEWER = aliased(Snapshot)
_NEWEST_ROWS = select(
    Snapshot.unit_id, Snapshot.version, Snapshot.content_hash, Snapshot.payload, Snapshot.created_at, Snapshot.results_upto,
).where(
    Snapshot.campaign_id == _CAMPAIGN,
    Snapshot.unit_id.in_(_IDS),
    ~select(_NEWER.unit_id).where(
        _NEWER.campaign_id == Snapshot.campaign_id, _NEWER.unit_id == Snapshot.unit_id, _NEWER.version > Snapshot.version
    ).exists(),
)
_UNITS_WITH_SNAPSHOTS = select(func.count(func.distinct(Snapshot.unit_id))).where(Snapshot.campaign_id == _CAMPAIGN)
def _units_with_snapshots(uow: UnitOfWork, campaign_id: str) -> int:
    return _raw_rows(uow, _UNITS_WITH_SNAPSHOTS, {"campaign": campaign_id})[0][0] or 0


_SNAPSHOT_COLUMNS = ("campaign_id", "unit_id", "version", "content_hash", "payload", "diff", "created_at", "reason", "results_upto")
# PostgreSQL compresses large values (TOAST); lz4 does it several times faster than the default
# pglz. Only for this transaction's writes, and only where the server was built with it.
_LZ4_AVAILABLE = text(
    "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
)


def _insert_snapshots(
    uow: UnitOfWork, campaign_id: str, now: dt.datetime, rows: Iterable[tuple], count: int, results_upto: int | None = None,
) -> None:
    """Insert ``count`` (unit id, version, content hash, payload text, diff, reason) rows at
    driver level, taking them from ``rows`` as they are written (an iterator may make them then).

    The payload is the summary's canonical JSON, written as is (the JSON column type would
    serialise the summary again), and SQLAlchemy's per-row type processing is skipped: at a
    province's 3,800 units it costs more than the insert. SQLite: executemany by batches;
    PostgreSQL: COPY, streamed (the server stores each row while the next is made), with payloads
    compressed by lz4 when available (from ``COPY_ROWS`` rows: for a few, as an incremental run
    writes, one INSERT is fewer round trips).
    """
    if not count:
        return
    connection = uow.session.connection()
    dialect = connection.dialect
    table = Snapshot.__table__

    def processor(column: str):
        return table.c[column].type.bind_processor(dialect) or (lambda value: value)

    if dialect.name == "postgresql" and count >= COPY_ROWS:
        if connection.execute(_LZ4_AVAILABLE).scalar():
            connection.exec_driver_sql("SET LOCAL default_toast_compression = 'lz4'")
        json_null = "null"  # what the JSON column type writes for None
        cursor = connection.connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY snapshots ({', '.join(_SNAPSHOT_COLUMNS)}) FROM STDIN") as copy:
            for unit_id, version, content, payload, changes, why in rows:
                changes_text = json_null if changes is None else json.dumps(changes)
                copy.write_row((campaign_id, unit_id, version, content, payload, changes_text, now, why, results_upto))
        return
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    json_marker = marker if dialect.name == "sqlite" else f"CAST({marker} AS JSON)"
    markers = [json_marker if column in ("payload", "diff") else marker for column in _SNAPSHOT_COLUMNS]
    sql = f"INSERT INTO snapshots ({', '.join(_SNAPSHOT_COLUMNS)}) VALUES ({', '.join(markers)})"
    created_at, encode_diff = processor("created_at")(now), processor("diff")
    params = (
        (campaign_id, unit_id, version, content, payload, encode_diff(changes), created_at, why, results_upto)
        for unit_id, version, content, payload, changes, why in rows
    )
    if dialect.name == "sqlite":  # in process: executemany by batches
        while batch := list(islice(params, SNAPSHOT_INSERT_BATCH)):
            connection.exec_driver_sql(sql, batch)
        return
    # A server: the few rows of an incremental run in one statement (one round trip).
    params = list(params)
    values = ", ".join([f"({', '.join(markers)})"] * len(params))
    connection.exec_driver_sql(
        f"INSERT INTO snapshots ({', '.join(_SNAPSHOT_COLUMNS)}) VALUES {values}", tuple(chain.from_iterable(params))
    )


def has_snapshots(uow: UnitOfWork, campaign_id: str) -> bool:
    """Whether the campaign was ever consolidated: one lookup on ``ix_snapshots_latest``."""
    return bool(uow.session.scalar(select(select(Snapshot.unit_id).where(Snapshot.campaign_id == campaign_id).limit(1).exists())))


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
    if wanted is not None:
        # A few units: each one's newest row by the ``(campaign_id, unit_id, version)`` index, not
        # the newest version of every unit of the campaign (hundreds of thousands at national scale).
        query = (
            select(Unit.code, Snapshot)
            .join(Unit, Unit.id == Snapshot.unit_id)
            .where(
                Snapshot.campaign_id == campaign_id,
                Unit.campaign_id == campaign_id,
                ~select(_NEWER.unit_id).where(
                    _NEWER.campaign_id == Snapshot.campaign_id, _NEWER.unit_id == Snapshot.unit_id, _NEWER.version > Snapshot.version
                ).exists(),
            )
            .order_by(Unit.path)
        )
    batches = [query] if wanted is None else [query.where(Unit.code.in_(chunk)) for chunk in _chunked(wanted)]
    out: dict[str, dict] = {}
    for batch in batches:
        for code, snap in uow.session.execute(batch):
            out[code] = _snapshot_dict(snap) | {"payload": snap.payload}
    return out


def root_units(uow: UnitOfWork, campaign_id: str) -> list[str]:
    """Codes of the campaign's top units (no parent), without reading the rest of the tree."""
    return list(uow.session.scalars(
        select(Unit.code).where(Unit.campaign_id == campaign_id, Unit.parent_id.is_(None)).order_by(Unit.path)
    ))


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
    rows = {
        snap.version: snap for snap in uow.session.scalars(
            select(Snapshot).where(Snapshot.campaign_id == campaign_id, Snapshot.unit_id == uid, Snapshot.version.in_((v1, v2)))
        )
    }
    missing = [v for v in (v1, v2) if v not in rows]
    if missing:
        raise NotFound(f"{unit_code} không có phiên bản tổng hợp {', '.join(map(str, missing))}")
    before, after = rows[v1], rows[v2]
    old, new = before.payload, after.payload
    return diff({unit_code: old}, {unit_code: new}, members=member_changes_between(uow, campaign_id, {unit_code: (uid, old, new)}, before, after))


# --------------------------------------------------------------------------- what changed since the last run


@dataclass
class _Pending:
    units: set[str]
    full: bool
    watermark: int  # event id to store once this run is done
    previous_watermark: int
    tree_hash: str | None  # the tree the last run consolidated
    tree_stats: list[int] | None = None  # the tree's fingerprint when the last run was done (None: not recorded)
    full_later: bool = False  # an import or plan change after the watermark that counts only after ``now``
    tree_stats_now: list[int] = field(default_factory=list)  # the fingerprint (count, max and sum of unit ids) now
    any_snapshot: bool = False  # the campaign has a snapshot
    results_upto: int = 0  # the highest member result id now
    last_run_at: dt.datetime | None = None  # the "now" of the last run that stored versions


_TREE_STATS_ROW = select(
    func.count().label("units"),
    func.coalesce(func.max(Unit.id), 0).label("max_id"),
    func.coalesce(func.sum(cast(Unit.id, BigInteger)), 0).label("sum_id"),
).where(Unit.campaign_id == _CAMPAIGN).subquery()
# The run's first read: the last run's record and time, the tree's fingerprint, whether any snapshot exists.
_LAST_COMPLETED = select(EventLog).where(EventLog.campaign_id == _CAMPAIGN, EventLog.action == COMPLETED_ACTION).order_by(EventLog.id.desc()).limit(1)
_PREAMBLE = select(
    _LAST_COMPLETED.with_only_columns(EventLog.detail).scalar_subquery(),
    _LAST_COMPLETED.with_only_columns(EventLog.at).scalar_subquery(),
    _TREE_STATS_ROW.c.units,
    _TREE_STATS_ROW.c.max_id,
    _TREE_STATS_ROW.c.sum_id,
    select(Snapshot.unit_id).where(Snapshot.campaign_id == _CAMPAIGN).limit(1).exists(),
    # Every member result stored so far (ids only grow): kept with each snapshot written.
    select(func.max(MemberResultRow.id)).scalar_subquery(),
)
_CHANGES_SINCE = select(EventLog.id, EventLog.action, EventLog.at, EventLog.detail).where(
    EventLog.campaign_id == _CAMPAIGN, EventLog.id > bindparam("watermark"), EventLog.action.in_(CHANGE_ACTIONS + FULL_RUN_ACTIONS)
).order_by(EventLog.id)


def _pending_changes(uow: UnitOfWork, campaign_id: str, now: dt.datetime) -> _Pending:
    connection = uow.session.connection()
    last, last_at, *stats, any_snapshot, results_upto = connection.execute(_PREAMBLE, {"campaign": campaign_id}).one()
    last = last or {}
    watermark = int(last.get("event_id", 0))
    rows = connection.execute(_CHANGES_SINCE, {"campaign": campaign_id, "watermark": watermark}).all()
    units: set[str] = set()
    full = False
    first_later: int | None = None  # a change that counts only after ``now`` (time travel): not consumed
    full_later = False
    newest = watermark
    for event_id, action, at, detail in rows:
        detail = detail or {}
        effective = dt.datetime.fromisoformat(detail["effective_at"]) if detail.get("effective_at") else at
        if effective > now:
            first_later = event_id if first_later is None else first_later
            full_later = full_later or action in FULL_RUN_ACTIONS
            continue
        newest = max(newest, event_id)
        if action in FULL_RUN_ACTIONS:
            full = True
        units.update(detail.get("changed_units") or ())
    mark = newest if first_later is None else min(newest, first_later - 1)
    kept = last.get("tree_stats")
    # A run that stored no version (recorded for its watermark) does not move the moment before
    # which a run only looks back: an office's `consolidate` at the real clock during a replay
    # would otherwise turn every later tick at the campaign's time into a look-back.
    stored_at = dt.datetime.fromisoformat(last["stored_at"]) if last.get("stored_at") else (None if "stored_at" in last else last_at)
    return _Pending(
        units, full, max(mark, watermark), watermark, last.get("tree_hash"),
        [int(v) for v in kept] if isinstance(kept, list) else None, full_later, [int(v) for v in stats], bool(any_snapshot),
        int(results_upto or 0), stored_at,
    )


def _tree_hash(units: list[_UnitRow]) -> str:
    lines = sorted(f"{u.code}\t{u.name}\t{u.kind}\t{u.parent_code or ''}" for u in units)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --------------------------------------------------------------------------- the run


@dataclass
class _Stored:
    """The newest stored snapshot of the units an incremental run rebuilds."""

    versions: dict[str, int]
    hashes: dict[str, str]
    payloads: dict[str, dict]
    times: dict[str, dt.datetime] = field(default_factory=dict)  # when each payload was made
    uptos: dict[str, int | None] = field(default_factory=dict)  # the results each was made from (ids up to)
    results_upto: int | None = None  # this run's: the highest member result id
    # Own members of the units rebuilt and their final levels at ``now``, when already read.
    read_now: tuple[dict[int, MemberRecord], dict[str, str | None]] | None = None


def _full(uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, units: list[_UnitRow]) -> dict[str, UnitSummary]:
    """Every unit's summary: from member lines when the rule set allows it, else from full records."""
    code_of = {u.id: u.code for u in units}
    loaded = _own_tallies(uow, plan, campaign_id, now, code_of)
    if loaded is None:
        return consolidate(load_consolidation_input(uow, plan, campaign_id, now))
    tallies, members, results = loaded
    return consolidate_lines(LinesInput(
        units=tuple(UnitNode(u.code, u.name, u.kind, u.parent_code) for u in units),
        own=tallies,
        members=tuple(members),
        member_results=tuple(results),
        org_results=tuple(_org_results(uow, campaign_id, now, code_of)),
        rule_set=plan.rule_set,
        evaluation_date=plan.evaluation_date,
        overrides=tuple(_overrides(uow, campaign_id, now)),
    ))


class _Tree:
    """The campaign's units as an incremental run needs them: loaded on demand, by code, by id,
    with their ancestors (one lookup of the path prefixes on the ``(campaign_id, path)`` index)
    or with their children (``ix_units_parent``), never the whole tree unless given it.

    ``code_of`` maps unit ids to codes and loads an unknown id when it is asked for (a result
    submitted by a unit outside the loaded ones)."""

    def __init__(self, uow: UnitOfWork, campaign_id: str, units: list[_UnitRow] | None = None) -> None:
        self.uow, self.campaign_id = uow, campaign_id
        self.by_code: dict[str, _UnitRow] = {}
        self.paths: dict[str, str] = {}
        self.kids: dict[str, list[str]] = {}  # children, for the units whose children were loaded
        self.code_of = _Codes(self)
        self.complete = units is not None
        if units is not None:
            self._keep(units)
            for u in units:
                self.kids.setdefault(u.code, [])
            for u in units:
                if u.parent_code is not None:
                    self.kids[u.parent_code].append(u.code)

    def _keep(self, rows) -> None:
        for row in rows:
            self.by_code[row.code] = row
            dict.__setitem__(self.code_of, row.id, row.code)

    def _load(self, by: str, values: list) -> list[_UnitRow]:
        rows, on_line = [], []
        for uid, code, name, kind, parent_code, path, flag in _raw_rows(
            self.uow, _units_statement(by, _is_postgres(self.uow)), {"campaign": self.campaign_id, "ids": values}
        ):
            rows.append(_UnitRow(uid, code, name, kind, parent_code))
            self.paths[code] = path
            if flag:
                on_line.append(code)
        self._keep(rows)
        if on_line:  # their children came with them
            for code in on_line:
                self.kids.setdefault(code, [])
            for row in rows:
                kids = self.kids.get(row.parent_code) if row.parent_code is not None else None
                if kids is not None and row.code not in kids:
                    kids.append(row.code)
        return rows

    def load_lines(self, codes: Iterable[str]) -> None:
        """Load the units with these codes, their ancestors and the children of all of them, in
        one read (what an incremental run rebuilds, and what it reads of the units next to them)."""
        if self.complete:
            return
        wanted = sorted({c for c in codes if c is not None and c not in self.kids})
        for chunk in _chunked(wanted):
            self._load("lines", chunk)

    def load(self, codes: Iterable[str]) -> None:
        """Load the units with these codes (unknown codes are left out) and all their ancestors."""
        if self.complete:
            return
        wanted = sorted({c for c in codes if c is not None and c not in self.by_code})
        for chunk in _chunked(wanted):
            self._load("code", chunk)
        self._ancestors()

    def load_ids(self, ids: Iterable[int]) -> None:
        if self.complete:
            return
        wanted = sorted({i for i in ids if i not in self.code_of})
        for chunk in _chunked(wanted):
            self._load("id", chunk)
        self._ancestors()

    def _ancestors(self) -> None:
        # A unit's path is its ancestors' codes joined by "/": each prefix ending in "/" may be an
        # ancestor's path (a code holding "/" only adds prefixes that match nothing).
        prefixes = set()
        for code, path in self.paths.items():
            parent = self.by_code[code].parent_code
            if parent is None or parent in self.by_code:
                continue
            prefixes.update(path[:i + 1] for i, ch in enumerate(path[:-1]) if ch == "/" and i > 0)
        for chunk in _chunked(sorted(prefixes)):
            self._load("path", chunk)
        # Whatever a path did not give (an inconsistent path): parent by parent.
        while True:
            missing = sorted({u.parent_code for u in self.by_code.values() if u.parent_code is not None} - self.by_code.keys())
            if not missing:
                return
            loaded = []
            for chunk in _chunked(missing):
                loaded += self._load("code", chunk)
            if not loaded:
                return

    def load_children(self, codes: Iterable[str]) -> None:
        """Load the children of these (loaded) units."""
        if self.complete:
            return
        wanted = sorted({c for c in codes if c in self.by_code and c not in self.kids})
        for code in wanted:
            self.kids[code] = []
        ids = [self.by_code[c].id for c in wanted]
        rows = []
        for chunk in _chunked(ids):
            rows += self._load("parent_id", chunk)
        for row in rows:
            if row.parent_code in self.kids and row.code not in self.kids[row.parent_code]:
                self.kids[row.parent_code].append(row.code)

    def with_ancestors(self, codes: Iterable[str], into: set[str]) -> set[str]:
        """``into`` plus ``codes`` (those that are units) and all their ancestors."""
        codes = list(codes)
        self.load(codes)
        for code in codes:
            while code is not None and code in self.by_code and code not in into:
                into.add(code)
                code = self.by_code[code].parent_code
        return into


@functools.cache
def _units_statement(by: str, postgres: bool = False):
    parent = aliased(Unit)
    if by != "lines":
        return (
            select(Unit.id, Unit.code, Unit.name, Unit.kind, parent.code, Unit.path, literal(0, Integer))
            .outerjoin(parent, parent.id == Unit.parent_id)
            .where(Unit.campaign_id == _CAMPAIGN, getattr(Unit, by).in_(_IDS))
        )
    # The units with these codes and their ancestors (flag 1), found up the parent links, and
    # their children (flag 0): in one read, by primary key and ``ix_units_parent``.
    up = select(Unit.id.label("id"), Unit.parent_id.label("parent_id")).where(
        Unit.campaign_id == _CAMPAIGN, Unit.code.in_(_IDS)
    ).cte("up", recursive=True)
    step = aliased(Unit)
    up = up.union(select(step.id, step.parent_id).where(step.id == up.c.parent_id))
    on_line = select(up.c.id)
    if postgres:
        # As an array worked out first: PostgreSQL guesses a hundred rows for the CTE and would
        # scan every unit twice (hash joins) instead of looking a few up by key and parent.
        on_line = cast(select(func.array_agg(up.c.id)).scalar_subquery(), ARRAY(Integer))  # ANY((SELECT …)), not ANY(SELECT …)
        in_line, parent_in_line = Unit.id == any_(on_line), Unit.parent_id == any_(on_line)
        not_in_line = func.coalesce(Unit.id != all_(on_line), true())
    else:
        in_line, parent_in_line, not_in_line = Unit.id.in_(on_line), Unit.parent_id.in_(on_line), Unit.id.not_in(on_line)

    def rows(flag: int):
        return select(Unit.id, Unit.code, Unit.name, Unit.kind, parent.code, Unit.path, literal(flag, Integer)).outerjoin(
            parent, parent.id == Unit.parent_id
        )

    return union_all(
        rows(1).where(in_line),
        rows(0).where(Unit.campaign_id == _CAMPAIGN, parent_in_line, not_in_line),
    )


class _Codes(dict):
    """unit id -> code of a ``_Tree``; an id not loaded yet is loaded (with its ancestors)."""

    def __init__(self, tree: _Tree) -> None:
        super().__init__()
        self._tree = tree

    def __missing__(self, uid: int) -> str:
        self._tree.load_ids([uid])
        if not dict.__contains__(self, uid):
            raise KeyError(uid)
        return dict.__getitem__(self, uid)


# The tree's fingerprint (``_Pending.tree_stats_now``): how many units the campaign has, and their
# ids, counted by the database (no unit row leaves it). Kept with each run: when it and the event
# log say the tree is the one the last run saw, an incremental run reads only the units it
# rebuilds rather than the whole tree (``_tree_hash``). Every change of the tree is an import,
# which logs it (``org.imported``: a full run); this also catches units added or removed without.


def _incremental(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, tree: _Tree, changed: set[str]
) -> tuple[dict[str, UnitSummary], _Stored] | None:
    """Rebuild the changed units and their ancestors from their stored summaries; None when a
    full run is needed (the rule set needs every record, or the stored summaries do not fit).

    Seeds: the changed units, the units of overridden findings, and the committees that decided
    a seed's organization result before (stored summary) or now; affected: the seeds and their
    ancestors. Read: the affected units, their children and the units their committees decided
    (``tree`` loads them on demand), the affected units' stored snapshots, their own members and
    results (full records: a few dozen), their organization results and those they decided.
    Nothing else of the campaign is read.
    """
    if not lines_supported(plan.rule_set):
        return None
    code_of = tree.code_of
    overrides = _overrides(uow, campaign_id, now)
    override_units = {unit_of_key(o.finding_key) for o in overrides}
    tree.load_lines(set(changed) | override_units)
    by_code = tree.by_code
    seeds = {c for c in changed if c in by_code} | (override_units & by_code.keys())
    affected: set[str] = set()
    stored: dict[int, tuple[int, str, dict, dt.datetime, int | None]] = {}
    org_results: dict[str, OrgResult] = {}
    todo = tree.with_ancestors(seeds, set())
    while todo:  # committees found on the way join the affected units (usually already in)
        affected |= todo
        tree.load_children(todo)  # what their committees usually decide: loaded in one read
        ids = [by_code[c].id for c in todo]
        stored.update(_newest_rows(uow, campaign_id, ids))
        org_results.update({r.unit_code: r for r in _org_results(uow, campaign_id, now, code_of, ids)})
        if any(by_code[c].id not in stored for c in todo):
            return None
        committees = {r.decided_by for r in org_results.values() if r.unit_code in seeds and r.decided_by is not None}
        for code in seeds:
            own = stored[by_code[code].id][2]["unit"].get("result") or {}
            if own.get("decided_by") is not None:
                committees.add(own["decided_by"])
        tree.load(committees)
        todo = tree.with_ancestors({c for c in committees if c in by_code}, set(affected)) - affected

    # The affected units' own members, few: their full records, every one examined.
    ids = sorted(by_code[c].id for c in affected)
    records = _members(uow, campaign_id, code_of, ids)
    results = _member_results(uow, campaign_id, now, code_of, records, ids)
    tallies = _tallies_of_records(plan, records.values(), results)
    members = list(records.values())
    results_kept = [r for r in org_results.values() if r.unit_code in affected or r.decided_by in affected]
    tree.load_children(affected)
    wanted = set(affected) | {r.unit_code for r in results_kept}
    for code in affected:
        wanted.update(tree.kids.get(code, ()))
    tree.load(wanted)
    partial = LinesInput(
        units=tuple(UnitNode(u.code, u.name, u.kind, u.parent_code) for u in (by_code[c] for c in sorted(wanted))),
        own=tallies,
        members=tuple(members),
        member_results=tuple(results),
        org_results=tuple(results_kept),
        rule_set=plan.rule_set,
        evaluation_date=plan.evaluation_date,
        overrides=tuple(overrides),
    )
    before = {code_of[uid]: row for uid, row in stored.items()}
    if any("own_members" not in row[2] for row in before.values()):
        return None  # summaries stored before own members were counted in them: rebuild all
    try:
        summaries = reconsolidate_lines(partial, {code: row[2] for code, row in before.items()}, affected)
    except NeedsFullRun:
        return None
    return summaries, _Stored(
        versions={code: row[0] for code, row in before.items()},
        hashes={code: row[1] for code, row in before.items()},
        payloads={code: row[2] for code, row in before.items()},
        times={code: row[3] for code, row in before.items()},
        uptos={code: row[4] for code, row in before.items()},
        read_now=(records, {r.member_id: r.final_level for r in results}),
    )


def _look_back(uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, last_run_at: dt.datetime,
               clock: _Stopwatch) -> ConsolidationReport:
    """A run at a moment before the last stored one: every unit computed as it stood at ``now``
    (the results received by then, none cancelled since), returned and not stored. Stored, it
    would become the newest version of a state older than the versions before it, and tell the
    offices that results changed when none did."""
    units = _units(uow, campaign_id)
    summaries = _full(uow, plan, campaign_id, now, units)
    clock.lap("compute")
    return ConsolidationReport(
        "as_of", len(summaries), [], [], {}, timings=clock.laps, units_read=len(units),
        as_of={code: summary.to_dict() for code, summary in summaries.items()}, last_run_at=last_run_at,
    )


def _depth_order(codes: Iterable[str], parent: dict[str, str | None]) -> list[str]:
    """Deepest first, then by code (each unit's depth worked out once, its ancestors' with it)."""
    depth: dict[str, int] = {}

    def depth_of(code: str) -> int:
        line = []
        while code not in depth and parent.get(code) is not None and code not in line:
            line.append(code)
            code = parent[code]
        d = depth.get(code, 0)
        for c in reversed(line):
            d += 1
            depth[c] = d
        return d if line else depth.setdefault(code, d)

    return sorted(codes, key=lambda c: (-depth_of(c), c))


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
         reason: str, actor: str, part_members: int | None = None) -> ConsolidationReport:
    clock = _Stopwatch()
    get_campaign(uow, campaign_id)
    lock_campaign(uow, campaign_id)
    clock.lap("lock")
    session = uow.session
    pending = _pending_changes(uow, campaign_id, now)
    if pending.last_run_at is not None and now < pending.last_run_at:
        return _look_back(uow, plan, campaign_id, now, pending.last_run_at, clock)
    changed = set(changed_units or ()) | pending.units
    stats = pending.tree_stats_now

    summaries: dict[str, UnitSummary] | None = None
    stored: _Stored | None = None
    units: list[_UnitRow] | None = None
    tree: _Tree | None = None
    written: _Written | None = None
    # The tree is the last run's (same fingerprint, no import since, whatever its time): an
    # incremental run reads only the units it rebuilds, never the whole tree. Every unit of it
    # then has a snapshot (each run leaves one for every unit of its tree; a unit added since
    # would change the fingerprint), so they are not counted (a scan of every snapshot).
    same_tree = (
        changed_units is not None and not pending.full and not pending.full_later
        and pending.tree_hash is not None and pending.tree_stats == stats and pending.any_snapshot
    )
    if same_tree:
        tree_hash = pending.tree_hash
        mode = "incremental"
        if not changed:
            summaries, stored = {}, _Stored({}, {}, {})
            mode = "unchanged"
        else:
            tree = _Tree(uow, campaign_id)
            rebuilt = _incremental(uow, plan, campaign_id, now, tree, changed)
            if rebuilt is not None:
                summaries, stored = rebuilt
    with_snapshots = None
    if summaries is None:
        with_snapshots = _units_with_snapshots(uow, campaign_id)
        units = _units(uow, campaign_id)
        tree_hash = _tree_hash(units)
        full = changed_units is None or not with_snapshots or pending.full or pending.tree_hash != tree_hash
        mode = "full" if full else "incremental"
        if not full and not same_tree and with_snapshots == len(units):  # a unit without a snapshot: only a full run is exact
            if not changed:
                summaries, stored = {}, _Stored({}, {}, {})
                mode = "unchanged"
            else:
                tree = _Tree(uow, campaign_id, units)
                rebuilt = _incremental(uow, plan, campaign_id, now, tree, changed)
                if rebuilt is not None:
                    summaries, stored = rebuilt
    if summaries is None:
        mode = "full"
        tree = _Tree(uow, campaign_id, units)
        limit = _part_limit(uow, plan, campaign_id, part_members)
        if limit is not None:
            written = _full_in_parts(uow, plan, campaign_id, now, units, tree, with_snapshots, reason, limit, clock, pending.results_upto)
        else:
            summaries = _full(uow, plan, campaign_id, now, units)
    by_code = tree.by_code if tree is not None else {}
    parent = {code: u.parent_code for code, u in by_code.items()}

    if written is None:
        clock.lap("compute")
        if stored is None:  # a full run: compare with every unit's newest snapshot, if any
            latest = _latest_versions(uow, campaign_id) if with_snapshots else {}
            hashes = _content_hashes(uow, campaign_id, latest)
            code_of = tree.code_of
            stored = _Stored({code_of[uid]: v for uid, v in latest.items()}, {code_of[uid]: h for uid, h in hashes.items()}, {})
        stored.results_upto = pending.results_upto
        written = _write_summaries(uow, campaign_id, now, summaries, stored, by_code, parent, reason, clock)
    updated = _depth_order(written.updated, parent) if written.parts > 1 else written.updated
    versions, payloads, old_payloads, flats = written.versions, written.payloads, written.old_payloads, written.flats
    again = [c for c in updated if c in old_payloads]  # units given a version above 1

    report = ConsolidationReport(mode, written.recomputed, sorted(changed), updated, versions, timings=clock.laps,
                                 units_read=len(units) if units is not None else len(by_code))
    if again:
        changes = diff(old_payloads, {c: payloads[c] for c in updated}, members=written.members, flat_memo=flats)
        report.diff, report.diff_text = changes, render_diff_text(changes)
        clock.lap("diff")
        report.outbox_ids = _notify_offices(
            uow, plan, campaign_id, now, updated, versions, old_payloads, payloads, parent, reason, flats, written.members
        )
    else:
        clock.lap("diff")
    clock.lap("notify")
    report.parts = written.parts if written.parts > 1 else 0

    if (updated or pending.watermark != pending.previous_watermark or pending.tree_hash != tree_hash
            or (pending.tree_stats is not None and pending.tree_stats != stats)):
        session.add(
            EventLog(
                campaign_id=campaign_id, at=now, actor=actor, action=COMPLETED_ACTION, subject=mode,
                detail={
                    "event_id": pending.watermark,
                    "tree_hash": tree_hash,
                    "tree_stats": stats,
                    "mode": mode,
                    "recomputed": written.recomputed,
                    "units_updated": len(updated),
                    "changed_units": sorted(changed)[:50],
                    "outbox_ids": report.outbox_ids,
                    "reason": reason,
                    # The "now" of the newest run that stored versions (this one's, or carried on).
                    "stored_at": now.isoformat() if updated else (pending.last_run_at.isoformat() if pending.last_run_at else None),
                },
            )
        )
    return report


@dataclass
class _Written:
    """What writing one or more batches of summaries did (``_write_summaries``)."""

    updated: list[str] = field(default_factory=list)  # units given a new version (deepest first within a batch)
    versions: dict[str, int] = field(default_factory=dict)
    payloads: dict[str, dict] = field(default_factory=dict)  # new summaries (as dicts) kept for the differences
    old_payloads: dict[str, dict] = field(default_factory=dict)  # previous summaries of the units given a version above 1
    flats: dict[int, tuple[dict, dict]] = field(default_factory=dict)  # each payload's flattened totals
    members: dict[str, list[dict]] = field(default_factory=dict)  # unit -> its own members whose level changed
    recomputed: int = 0
    parts: int = 0

    def add(self, other: _Written) -> None:
        self.updated += other.updated
        self.versions.update(other.versions)
        self.payloads.update(other.payloads)
        self.old_payloads.update(other.old_payloads)
        self.flats.update(other.flats)
        self.members.update(other.members)
        self.recomputed += other.recomputed
        self.parts += other.parts


def _write_summaries(
    uow: UnitOfWork, campaign_id: str, now: dt.datetime, summaries: dict[str, UnitSummary], stored: _Stored,
    by_code: dict[str, _UnitRow], parent: dict[str, str | None], reason: str, clock: _Stopwatch, *, keep_fresh: bool = False,
) -> _Written:
    """Give each summary whose hash differs from its unit's newest snapshot a new version.

    ``keep_fresh``: keep the payloads of first versions too, even when this batch gives no version
    above 1 (a run in parts: another part may, and the offices' differences list new units)."""
    # A unit without a snapshot always gets version 1: its text is made as its row is written
    # (``rows`` below), so that PostgreSQL takes in each row while the next is being made, and the
    # texts are never all held at once. The others are compared with their newest snapshot first.
    texts: dict[str, str] = {}
    hashes: dict[str, str] = {}
    fresh: list[str] = []
    for code, summary in summaries.items():
        if code not in stored.versions:
            fresh.append(code)
            continue
        text = summary.canonical_json()
        content = hashlib.sha256(text.encode()).hexdigest()
        if stored.hashes.get(code) != content:
            texts[code], hashes[code] = text, content
    clock.lap("hash")
    updated = _depth_order([*texts, *fresh], parent)
    again = [c for c in updated if c in stored.versions]  # units given a version above 1
    missing = [c for c in again if c not in stored.payloads]
    if missing:
        loaded = _newest_rows(uow, campaign_id, (by_code[c].id for c in missing))
        stored.payloads.update({c: loaded[by_code[c].id][2] for c in missing})
        stored.times.update({c: loaded[by_code[c].id][3] for c in missing})
        stored.uptos.update({c: loaded[by_code[c].id][4] for c in missing})
    # What the differences compare (none to make when every version is a first one).
    payloads = {code: summaries[code].to_dict() for code in updated} if again or (keep_fresh and updated) else {}
    moved = {
        c: (stored.times[c], stored.uptos.get(c)) for c in again if c in stored.times and members_moved(stored.payloads[c], payloads[c])
    }
    members = _member_changes(uow, campaign_id, by_code, moved, now, stored.read_now) if moved else {}
    compared = set(again)

    versions = {code: stored.versions.get(code, 0) + 1 for code in updated}
    flats: dict[int, tuple[dict, dict]] = {}  # each payload's flattened totals, for the differences below

    def rows() -> Iterator[tuple]:
        for code in updated:
            text = texts.pop(code, None)
            if text is None:  # a first version
                text = summaries[code].canonical_json()
                content = hashlib.sha256(text.encode()).hexdigest()
            else:
                content = hashes[code]
            version = versions[code]
            yield (
                by_code[code].id, version, content, text,
                diff({code: stored.payloads[code]}, {code: payloads[code]}, members=members, flat_memo=flats) if code in compared else None,
                (reason or ("Tổng hợp lần đầu" if version == 1 else "Tổng hợp lại do kết quả thay đổi"))[:256],
            )

    _insert_snapshots(uow, campaign_id, now, rows(), len(updated), stored.results_upto)
    clock.lap("store")
    return _Written(updated, versions, payloads, {c: stored.payloads[c] for c in again}, flats, members, len(summaries), 1)


def members_moved(old: dict, new: dict) -> bool:
    """Whether two summaries of a unit may differ in whose result is what: its own members' counts
    or key moved, or a finding about one of its members changed (two values that are not levels
    count alike). Not for a summary stored before members were counted (it listed them): after
    that upgrade every unit gets a version, and reading every member twice for that one-off
    difference is not worth it."""
    if "own_members" not in old:
        return False
    if old["own_members"] != new.get("own_members"):
        return True
    code = new["unit"]["code"]

    def about_members(summary: dict) -> list:
        return sorted((f["key"], f["message"]) for f in summary.get("findings", ()) if f.get("member_id") and f.get("unit_code") == code)

    return about_members(old) != about_members(new)


class _KnownCodes(dict):
    """unit id -> code of the units at hand; another unit (one that submitted a result for a member
    of theirs) is not needed by name."""

    def __missing__(self, key: int) -> str:
        return ""


def _member_changes(
    uow: UnitOfWork, campaign_id: str, by_code: dict[str, _UnitRow], units: dict[str, tuple[dt.datetime, int | None]],
    now: dt.datetime, read_now: tuple[dict[int, MemberRecord], dict[str, str | None]] | None = None,
    now_upto: int | None = None,
) -> dict[str, list[dict]]:
    """Unit code -> its own members whose final level at ``now`` differs from the one the unit's
    previous version was made from (``units``: code -> (its time, the highest result id it saw):
    a result stored later but dated before it is a change, not part of it), read from the results
    (``read_now``: the members of these units and their levels at ``now``, already read;
    ``now_upto``: for ``now`` too, only results up to this id)."""
    code_of = _KnownCodes((row.id, code) for code, row in by_code.items())
    by_time: dict[tuple[dt.datetime, int | None], list[int]] = {}
    for code, seen in units.items():
        by_time.setdefault(seen, []).append(by_code[code].id)
    out: dict[str, list[dict]] = {}
    for (before, before_upto), ids in by_time.items():
        ids.sort()
        finals_now = None
        if read_now is not None:
            codes = {code_of[uid] for uid in ids}
            records = {pk: m for pk, m in read_now[0].items() if m.unit_code in codes}
            finals_now = read_now[1]
        else:
            records = _members(uow, campaign_id, code_of, ids)
        levels = []
        for at, upto in ((before, before_upto), (now, now_upto)):
            if at is now and finals_now is not None:
                final = finals_now
            else:
                found = _member_results(uow, campaign_id, at, code_of, records, ids, upto=upto)
                final = {r.member_id: r.final_level for r in found}
            lines: dict[str, list] = {}
            for m in records.values():
                lines.setdefault(m.unit_code, []).append((m.member_id, m.full_name, final.get(m.member_id), None))
            levels.append(lines)
        out.update(member_changes(*levels))
    return out


def member_changes_between(
    uow: UnitOfWork, campaign_id: str, units: dict[str, tuple[int, dict, dict]], before: Snapshot, after: Snapshot,
) -> dict[str, list[dict]]:
    """Unit code -> its own members whose final level differs between the results two snapshots
    were made from (their times, and the results stored by then), for ``consolidation.diff(members=...)``.
    ``units``: code -> (unit id, its summary at ``before``, at ``after``); only those whose own
    members may have moved (``members_moved``) are read."""
    rows = {code: _UnitRow(uid, code, "", "", None) for code, (uid, old, new) in units.items() if members_moved(old, new)}
    if not rows:
        return {}
    seen = (before.created_at, before.results_upto)
    return _member_changes(uow, campaign_id, rows, dict.fromkeys(rows, seen), after.created_at, now_upto=after.results_upto)


# --------------------------------------------------------------------------- a full run in parts


_MEMBER_COUNT = select(func.count()).select_from(Member).where(Member.campaign_id == _CAMPAIGN)
_MEMBERS_PER_UNIT = select(Member.unit_id, func.count()).where(Member.campaign_id == _CAMPAIGN).group_by(Member.unit_id)


def _part_limit(uow: UnitOfWork, plan: Plan, campaign_id: str, part_members: int | None) -> int | None:
    """Members per part for a full run in parts, or None for a run in one piece: ``part_members``
    when given (0: never in parts), else ``PART_MEMBERS`` above ``PARTITION_MEMBERS`` members."""
    if part_members == 0 or not lines_supported(plan.rule_set):
        return None
    rule_set = get_rule_set(plan.rule_set)
    reason = _not_evaluated_reason(rule_set, plan.evaluation_date)
    if reason is None or _examine_masks(rule_set, reason) is None:
        return None  # parts are counted set-based (``_own_tallies``): the rule set must allow it
    if part_members is not None:
        return max(1, part_members)
    total = _raw_rows(uow, _MEMBER_COUNT, {"campaign": campaign_id})[0][0] or 0
    return PART_MEMBERS if total > PARTITION_MEMBERS else None


@dataclass
class _Split:
    parts: list[list[str]]  # groups of part roots (whole subtrees), each group consecutive in path order
    upper: list[str]  # the units above the parts, rolled up last
    forced: set[str]  # committees that decide across parts, kept with the upper units


def _split_parts(units: list[_UnitRow], members: dict[int, int], paths: dict[str, str],
                 decided: dict[str, set[str]], limit: int) -> _Split:
    """The tree in parts of at most ``limit`` members (a unit with more members of its own is a
    part alone): topmost subtrees that fit, grouped while consecutive in path order and still
    fitting. A committee must decide only inside its own part (its org cap counts all it decided):
    one that decides outside it is kept above the parts, with its ancestors, and the split is made
    again until none does."""
    by_code = {u.code: u for u in units}
    children: dict[str, list[str]] = {u.code: [] for u in units}
    roots = []
    for u in units:
        if u.parent_code is not None and u.parent_code in by_code:
            children[u.parent_code].append(u.code)
        else:
            roots.append(u.code)
    order = sorted(by_code, key=paths.__getitem__)  # parents before children, subtrees contiguous
    weight = {u.code: members.get(u.id, 0) for u in units}
    for code in reversed(order):
        up = by_code[code].parent_code
        if up is not None and up in weight:
            weight[up] += weight[code]
    forced: set[str] = set()
    while True:
        blocked: set[str] = set()
        for code in forced:
            while code is not None and code in by_code and code not in blocked:
                blocked.add(code)
                code = by_code[code].parent_code
        tops, upper = [], []
        stack = sorted(roots, reverse=True)
        while stack:
            code = stack.pop()
            if code not in blocked and (weight[code] <= limit or not children[code]):
                tops.append(code)
            else:
                upper.append(code)
                stack.extend(sorted(children[code], reverse=True))
        owner: dict[str, int] = {}
        for index, top in enumerate(tops):
            todo = [top]
            while todo:
                code = todo.pop()
                owner[code] = index
                todo.extend(children[code])
        crossing = {
            committee for committee, codes in decided.items()
            if committee in owner and any(owner.get(code, -1) != owner[committee] for code in codes)
        }
        if not crossing - forced:
            break
        forced |= crossing
    tops.sort(key=paths.__getitem__)
    groups: list[list[str]] = []
    load = 0
    for top in tops:
        if groups and load + weight[top] <= limit:
            groups[-1].append(top)
            load += weight[top]
        else:
            groups.append([top])
            load = weight[top]
    return _Split(groups, sorted(upper, key=paths.__getitem__), forced)


_NEWEST_HASHES = select(Snapshot.unit_id, Snapshot.version, Snapshot.content_hash).where(
    Snapshot.campaign_id == _CAMPAIGN,
    ~select(_NEWER.unit_id).where(
        _NEWER.campaign_id == Snapshot.campaign_id, _NEWER.unit_id == Snapshot.unit_id, _NEWER.version > Snapshot.version
    ).exists(),
)
_UNIT_PATHS = select(Unit.code, Unit.path).where(Unit.campaign_id == _CAMPAIGN)


def _full_in_parts(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, units: list[_UnitRow], tree: _Tree,
    with_snapshots: int | None, reason: str, limit: int, clock: _Stopwatch, results_upto: int | None = None,
) -> _Written:
    """A full run part by part (``_split_parts``), in bounded memory, equal to the run in one piece.

    Each part's members are counted by its path range (``_own_tallies``), consolidated as a subtree
    (``consolidate_lines(part=True)``), hashed, compared and written at once; only its roots'
    summaries are kept. The units above the parts are then built from their own members and those
    summaries (``rollup_lines``) and written. Organization results and overrides are read once for
    all (one row per organization)."""
    if _is_postgres(uow):
        # A few dozen reads of a few hundred thousand rows each: compiling each one (JIT) costs
        # more than it saves.
        uow.session.connection().exec_driver_sql("SET LOCAL jit = off")
    code_of = tree.code_of
    by_code = tree.by_code
    parent = {code: u.parent_code for code, u in by_code.items()}
    paths = dict(_raw_rows(uow, _UNIT_PATHS, {"campaign": campaign_id}))
    members = dict(_raw_rows(uow, _MEMBERS_PER_UNIT, {"campaign": campaign_id}))
    org_results = _org_results(uow, campaign_id, now, code_of)
    overrides = tuple(_overrides(uow, campaign_id, now))
    decided: dict[str, set[str]] = {}
    for result in org_results:
        if result.decided_by is not None:
            decided.setdefault(result.decided_by, set()).add(result.unit_code)
    split = _split_parts(units, members, paths, decided, limit)
    del members
    if with_snapshots:
        stored = _Stored({}, {}, {})
        for uid, version, content in _raw_rows(uow, _NEWEST_HASHES, {"campaign": campaign_id}):
            code = code_of[uid]
            stored.versions[code], stored.hashes[code] = version, content
    else:
        stored = _Stored({}, {}, {})
    stored.results_upto = results_upto
    keep = bool(with_snapshots)
    node_of = {u.code: UnitNode(u.code, u.name, u.kind, u.parent_code) for u in units}
    owner: dict[str, int] = {}
    kids = tree.kids
    for index, group in enumerate(split.parts):
        for top in group:
            todo = [top]
            while todo:
                code = todo.pop()
                owner[code] = index
                todo.extend(kids.get(code, ()))
    results_of: dict[int, list[OrgResult]] = {}
    for result in org_results:
        index = owner.get(result.unit_code)
        if index is not None:
            results_of.setdefault(index, []).append(result)
    # What the units above the parts need of the organization results; the rest is let go.
    upper = set(split.upper)
    upper_nodes = set(upper)
    for code in upper:
        upper_nodes.update(kids.get(code, ()))
    upper_results = [r for r in org_results if r.unit_code in upper_nodes or r.decided_by in upper]
    ranges = [(paths[group[0]], paths[group[-1]] + "~") for group in split.parts]  # codes hold [A-Za-z0-9._-], all below "~"
    del org_results, decided, owner, paths
    clock.lap("compute")

    written = _Written()
    tops: dict[str, UnitSummary] = {}
    for index, group in enumerate(split.parts):
        low, high = ranges[index]
        inside = set()
        for top in group:
            todo = [top]
            while todo:
                code = todo.pop()
                inside.add(code)
                todo.extend(kids.get(code, ()))
        loaded = _own_tallies(uow, plan, campaign_id, now, code_of, and_(Unit.path >= low, Unit.path < high))
        tallies, records, results = loaded
        clock.lap("read")  # a run in parts: reading the parts' members apart from consolidating them
        tallies = {code: found for code, found in tallies.items() if code in inside}  # an upper unit in the range: its own read
        records = [m for m in records if m.unit_code in inside]
        examined = {m.member_id for m in records}
        summaries = consolidate_lines(LinesInput(
            units=tuple(node_of[c] for c in sorted(inside)),
            own=tallies,
            members=tuple(records),
            member_results=tuple(r for r in results if r.member_id in examined),
            org_results=tuple(results_of.pop(index, ())),
            rule_set=plan.rule_set,
            evaluation_date=plan.evaluation_date,
            overrides=overrides,
        ), part=True)
        del tallies, records, results, loaded, examined
        for top in group:
            tops[top] = summaries[top]
        clock.lap("compute")
        written.add(_write_summaries(uow, campaign_id, now, summaries, stored, by_code, parent, reason, clock, keep_fresh=keep))
        del summaries

    if upper:
        ids = [by_code[c].id for c in split.upper]
        loaded = _own_tallies(uow, plan, campaign_id, now, code_of, Unit.id.in_(ids))
        tallies, records, results = loaded
        kept = upper_results
        wanted = upper_nodes | {r.unit_code for r in kept}
        summaries = rollup_lines(LinesInput(
            units=tuple(node_of[c] for c in sorted(wanted)),
            own={code: found for code, found in tallies.items() if code in upper},
            members=tuple(m for m in records if m.unit_code in upper),
            member_results=tuple(results),
            org_results=tuple(kept),
            rule_set=plan.rule_set,
            evaluation_date=plan.evaluation_date,
            overrides=overrides,
        ), tops, upper)
        clock.lap("compute")
        written.add(_write_summaries(uow, campaign_id, now, summaries, stored, by_code, parent, reason, clock, keep_fresh=keep))
    if not any(c in written.old_payloads for c in written.updated):
        written.payloads.clear()
        written.flats.clear()
    return written


def _notify_offices(
    uow: UnitOfWork, plan: Plan, campaign_id: str, now: dt.datetime, updated: list[str], versions: dict[str, int],
    old_payloads: dict[str, dict], payloads: dict[str, dict], parent: dict[str, str | None], reason: str,
    flats: dict[int, tuple[dict, dict]] | None = None, members: dict[str, list[dict]] | None = None,
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
    composed: dict[str, ComposedMessage | None] = {}  # office -> its message (None: nothing changed), made once
    rows = []
    for email in sorted(units_of_email):
        codes = units_of_email[email]
        tops = [c for c in codes if not any(o != c and _in_subtree(c, o, parent) for o in codes)]
        for office in sorted(tops):
            name, version = payloads[office]["unit"]["name"], versions[office]
            if office not in composed:  # an office with several addresses gets the same message at each
                inside = [c for c in updated if _in_subtree(c, office, parent)]
                changes = diff(
                    {c: old_payloads[c] for c in inside if c in old_payloads}, {c: payloads[c] for c in inside},
                    members=members, flat_memo=flats,
                )
                composed[office] = None if diff_is_empty(changes) else compose_consolidation_diff(
                    name, plan.number, name, version, render_diff_text(changes), changes, now, cause=reason, table=diff_csv(changes),
                )
            message = composed[office]
            if message is None:
                continue
            why = f"Kết quả tổng hợp của {name} ({office}) thay đổi, phiên bản {version}" + (f": {reason}" if reason else "")
            rows.append(outbox_values(
                campaign_id=campaign_id, kind="consolidation_diff", recipient=email, recipient_name=name,
                message=message, key_material=f"consolidation_diff:{campaign_id}:{office}:{version}:{email}", reason=why, now=now,
                sender=sender,
            ))
    return [outbox_id for outbox_id in enqueue_many(uow, rows) if outbox_id is not None]


def consolidate_campaign(
    store: Store,
    plan: Plan,
    campaign_id: str,
    now: dt.datetime,
    *,
    changed_units: set[str] | None = None,
    reason: str = "",
    actor: str = "tick",
    part_members: int | None = None,
) -> ConsolidationReport:
    """One consolidation pass at ``now`` in its own transaction (see the module docstring).

    ``changed_units``: units whose own members' results or organization result changed (what an
    ingest reports); changes logged since the last run are added. None: recompute everything
    and compare (always exact, slower).

    ``part_members``: a full run goes in parts of at most this many members (``_full_in_parts``;
    0: in one piece). By default, in parts of ``PART_MEMBERS`` above ``PARTITION_MEMBERS``
    members. Either way the snapshots are the same.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            # A full run holds ~a million small objects at once: the cyclic collector would scan
            # them again and again (a quarter of the run); it runs once the pass is over.
            with gc_paused(), store.uow() as uow:
                report = _run(uow, plan, campaign_id, now, changed_units, reason, actor, part_members)
                uow.commit()
            return report
        except IntegrityError:
            if attempt == MAX_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
