"""Consolidation of classification results up the organization tree (pure, no I/O).

``consolidate`` indexes the input once, runs the campaign's rule set, then builds one
``UnitSummary`` per unit in a single bottom-up pass: a unit's summary is its own members
and findings combined with its children's summaries. That shape is what makes
``reconsolidate`` cheap and exact: only changed units and their ancestors are rebuilt,
everything else is reused from the previous run.

A summary does not list its members: it carries its own members counted (``OwnMembers``: by
level and not-evaluated reason, and a key summing each member's ``member_key`` times a weight for
their level and reason, so that any member's change of level changes the summary's hash). The
store counts members in SQL (``LinesInput``: each unit's ``OwnTally``) and reads full records only
for the members a rule must look at; ``consolidate_lines`` gives the same summaries as
``consolidate`` from that. For a late result,
``reconsolidate_lines`` rebuilds the changed units and their ancestors from their previous
summaries alone (totals adjusted by the difference each changed child made), so it reads and
touches O(depth × children) units whatever the size of the tree.

A tree too big to hold at once is consolidated in parts: ``consolidate_lines`` of each subtree
(a unit whose parent is not in the input is a root), then ``rollup_lines`` of the units above
them from the parts' root summaries.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gc
import hashlib
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import chain
from json.encoder import encode_basestring as _json_string
from operator import attrgetter, itemgetter
from typing import NamedTuple

from kiemdiem.member_key import member_key
from kiemdiem.rules.base import (
    BASE_KINDS,
    LEVEL_NAMES,
    LEVELS,
    NOT_EVALUATED_REASONS,
    UNCLASSIFIED_KINDS,
    Finding,
    RuleContext,
    RuleSet,
    build_context,
    cap_max_allowed,
    disciplined_org,
    get_rule_set,
    member_cap,
    org_cap,
    unit_of_key,
    unknown_member_results,
)
from kiemdiem.tabular import format_decimal

Level = str  # "HTXSNV" | "HTTNV" | "HTNV" | "KHTNV"; ordering HTXSNV > HTTNV > HTNV > KHTNV


# --------------------------------------------------------------------------- input


@dataclass(frozen=True, slots=True)
class UnitNode:
    code: str
    name: str
    kind: str  # cap_tren_co_so, dang_bo_co_so, chi_bo_co_so, dang_bo_bo_phan, chi_bo_truc_thuoc, to_dang
    parent_code: str | None


@dataclass(frozen=True, slots=True)
class MemberRecord:
    member_id: str
    full_name: str
    unit_code: str  # the branch where the member officially belongs
    status: str  # active | probationary | exempt | suspended
    joined_on: dt.date | None
    positions: tuple[str, ...]  # bi_thu, pho_bi_thu, chi_uy_vien, dang_uy_vien, thu_truong, ...


@dataclass(frozen=True, slots=True)
class MemberResult:
    member_id: str
    unit_code: str  # the unit that submitted the result (placement uses MemberRecord.unit_code)
    self_level: str | None
    proposed_level: str | None
    final_level: str | None
    disciplined: bool
    sick_leave_months: float
    absent: bool
    score: float | None
    note: str
    has_self_review: bool


@dataclass(frozen=True, slots=True)
class OrgResult:
    unit_code: str
    level: str | None  # the committee's decision
    decided_by: str | None  # code of the unit whose committee decided
    disciplined: bool
    self_level: str | None = None


@dataclass(frozen=True, slots=True)
class Override:
    finding_key: str
    by: str
    reason: str
    at: dt.datetime
    # The finding's data when granted; None: granted before overrides kept it, holds whatever
    # the numbers (``rules.base.covers``).
    covers: Mapping | None = None


@dataclass(frozen=True)
class ConsolidationInput:
    units: tuple[UnitNode, ...]
    members: tuple[MemberRecord, ...]
    member_results: tuple[MemberResult, ...]
    org_results: tuple[OrgResult, ...]
    rule_set: str
    evaluation_date: dt.date
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class LinesInput:
    """The input with each unit's own members counted: what the store reads set-based.

    ``own``: unit code -> its own members counted (``OwnTally``; ``tally_lines`` makes one from
    member lines); a unit left out has none. ``members`` and ``member_results``: full records of
    the members a member rule must look at - at least every member some member rule of the rule
    set could report; more is harmless - and their current results. A result of a member not in
    ``members`` is an unknown member's (reported, never counted): give results of examined
    members only. The rule set's group rules must be the shared ones (``lines_supported``).
    """

    units: tuple[UnitNode, ...]
    own: Mapping[str, OwnTally]
    members: tuple[MemberRecord, ...]
    member_results: tuple[MemberResult, ...]
    org_results: tuple[OrgResult, ...]
    rule_set: str
    evaluation_date: dt.date
    overrides: tuple[Override, ...] = ()


# --------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True)
class Quota:
    scope: str  # members: base_organization | subtree; organizations: committee | subtree
    htxsnv: int
    httnv: int
    max_allowed: int
    status: str  # ok | breach | overridden | n/a

    def to_dict(self) -> dict:
        return {
            "scope": self.scope,
            "htxsnv": self.htxsnv,
            "httnv": self.httnv,
            "max_allowed": self.max_allowed,
            "status": self.status,
        }


class MissingMember(NamedTuple):
    member_id: str
    full_name: str
    unit_code: str


# A member attached directly to the unit: (member_id, full_name, final level, not-evaluated
# reason). Plain tuples because there is one per member.
MemberLine = tuple[str, str, "str | None", "str | None"]


def line_weight(level: str | None, reason: str | None) -> int:
    """1..20: one per (final level or none/invalid, not-evaluated reason or none) pair. A member's
    part of their unit's key is ``member_key(code) * line_weight(level, reason)``."""
    slot = _LEVEL_INDEX.get(level, 4) if level is not None else 4
    return 1 + slot + 5 * (0 if reason is None else 1 + _REASON_INDEX[reason])


class OwnMembers(NamedTuple):
    """A unit's own members (attached to it directly), counted; part of its summary."""

    total: int
    not_evaluated: tuple[int, int, int]  # in NOT_EVALUATED_REASONS order
    counts: tuple[int, int, int, int]  # in LEVELS order, final levels of evaluated members
    key: int  # sum of member_key(member id) * line_weight(final level, reason)

    @property
    def evaluated(self) -> int:
        return self.total - sum(self.not_evaluated)

    def to_dict(self) -> dict:
        return {
            "key": f"{self.key:016x}",
            "levels": dict(zip(LEVELS, self.counts)),
            "not_evaluated": dict(zip(NOT_EVALUATED_REASONS, self.not_evaluated)),
            "total": self.total,
        }

    def canonical_json(self) -> str:
        htxsnv, httnv, htnv, khtnv = self.counts
        exempt, suspended, new_member = self.not_evaluated
        return (
            f'{{"key":"{self.key:016x}","levels":{{"HTNV":{htnv:d},"HTTNV":{httnv:d},"HTXSNV":{htxsnv:d},"KHTNV":{khtnv:d}}},'
            f'"not_evaluated":{{"exempt":{exempt:d},"new_member":{new_member:d},"suspended":{suspended:d}}},"total":{self.total:d}}}'
        )

    @classmethod
    def from_dict(cls, data: dict) -> OwnMembers:
        return cls(
            data["total"],
            tuple(data["not_evaluated"][r] for r in NOT_EVALUATED_REASONS),
            tuple(data["levels"][lv] for lv in LEVELS),
            int(data["key"], 16),
        )


class OwnTally(NamedTuple):
    """A unit's own members counted, with those evaluated but without a valid final level."""

    members: OwnMembers
    missing: tuple[MissingMember, ...]  # sorted by member id


NO_MEMBERS = OwnMembers(0, (0, 0, 0), (0, 0, 0, 0), 0)
NO_TALLY = OwnTally(NO_MEMBERS, ())


def tally_lines(code: str, lines: Iterable[MemberLine]) -> OwnTally:
    """A unit's own members counted from their lines."""
    not_eval = [0, 0, 0]
    counts = [0, 0, 0, 0]
    missing: list[MissingMember] = []
    total = key = 0
    level_index, reason_index = _LEVEL_INDEX.get, _REASON_INDEX
    for member_id, full_name, level, reason in lines:
        total += 1
        key += member_key(member_id) * line_weight(level, reason)
        if reason is not None:
            not_eval[reason_index[reason]] += 1
            continue
        index = level_index(level) if level is not None else None
        if index is None:
            missing.append(MissingMember(member_id, full_name, code))
        else:
            counts[index] += 1
    missing.sort(key=_MISSING_ORDER)
    return OwnTally(OwnMembers(total, tuple(not_eval), tuple(counts), key), tuple(missing))


@dataclass(frozen=True, slots=True)
class UnitSummary:
    unit: UnitNode
    own_result: OrgResult | None
    members_total: int
    evaluated: int
    not_evaluated: tuple[int, int, int]  # in NOT_EVALUATED_REASONS order
    level_counts: tuple[int, int, int, int]  # in LEVELS order, final levels of evaluated members
    member_quota: Quota
    org_total: int  # classifiable organizations in the subtree, excluding the unit itself
    org_level_counts: tuple[int, int, int, int]
    org_quota: Quota
    missing_members: tuple[MissingMember, ...]  # sorted by (unit_code, member_id)
    missing_orgs: tuple[str, ...]  # sorted
    findings: tuple[Finding, ...]  # sorted by key, whole subtree
    children: tuple[str, ...]  # sorted
    own_members: OwnMembers  # members attached here, counted

    @property
    def classified(self) -> int:
        return sum(self.level_counts)

    @property
    def org_classified(self) -> int:
        return sum(self.org_level_counts)

    def _parts(self) -> tuple[dict, dict, dict, dict, list, list]:
        """unit, members, organizations, missing_results, findings, children of ``to_dict``."""
        node, own = self.unit, self.own_result
        classified = self.classified
        htxsnv, httnv = self.level_counts[0], self.level_counts[1]
        unit = {
            "code": node.code,
            "name": node.name,
            "kind": node.kind,
            "parent": node.parent_code,
            "result": None if own is None else {
                "level": own.level,
                "self_level": own.self_level,
                "decided_by": own.decided_by,
                "disciplined": own.disciplined,
            },
        }
        members = {
            "total": self.members_total,
            "evaluated": self.evaluated,
            "not_evaluated": dict(zip(NOT_EVALUATED_REASONS, self.not_evaluated)),
            "classified": classified,
            "missing": self.evaluated - classified,
            "levels": _levels_dict(self.level_counts, self.evaluated),
            "htxsnv_over_httnv_percent": _percent(htxsnv, httnv) if httnv else None,
            "quota": self.member_quota.to_dict(),
        }
        organizations = {
            "total": self.org_total,
            "classified": self.org_classified,
            "missing": self.org_total - self.org_classified,
            "levels": _levels_dict(self.org_level_counts, self.org_total),
            "quota": self.org_quota.to_dict(),
        }
        missing = {
            "members": [
                {"member_id": m.member_id, "full_name": m.full_name, "unit_code": m.unit_code}
                for m in self.missing_members
            ],
            "organizations": list(self.missing_orgs),
        }
        return unit, members, organizations, missing, [f.to_dict() for f in self.findings], list(self.children)

    def to_dict(self) -> dict:
        unit, members, organizations, missing, findings, children = self._parts()
        return {
            "unit": unit,
            "members": members,
            "organizations": organizations,
            "missing_results": missing,
            "findings": findings,
            "children": children,
            "own_members": self.own_members.to_dict(),
        }

    def canonical_json(self) -> str:
        """``to_dict()`` as canonical JSON (what ``unit_hash`` hashes): sorted keys, lists in
        canonical order, compact, UTF-8 text. Written directly rather than through dicts and the
        encoder: the shape is fixed, and a province has 3,800 summaries and 90,000 member lines.
        (The tests check it against ``json.dumps`` of ``to_dict``, so the two cannot drift.)"""
        node, own = self.unit, self.own_result
        counts, org_counts = self.level_counts, self.org_level_counts
        evaluated, classified, org_classified = self.evaluated, sum(counts), sum(org_counts)
        htxsnv, httnv = counts[0], counts[1]
        exempt, suspended, new_member = self.not_evaluated
        org_total = self.org_total
        # Counts are ints, written with ":d" (which refuses anything else rather than write it
        # differently from the encoder); percentages are floats, written as repr (as the encoder does).
        members = (
            f'{{"classified":{classified:d},"evaluated":{evaluated:d},'
            f'"htxsnv_over_httnv_percent":{_percent(htxsnv, httnv)!r}' if httnv else
            f'{{"classified":{classified:d},"evaluated":{evaluated:d},"htxsnv_over_httnv_percent":null'
        ) + (
            f',"levels":{_levels_json(counts, evaluated)},"missing":{evaluated - classified:d},'
            f'"not_evaluated":{{"exempt":{exempt:d},"new_member":{new_member:d},"suspended":{suspended:d}}},'
            f'"quota":{_quota_json(self.member_quota)},"total":{self.members_total:d}}}'
        )
        organizations = (
            f'{{"classified":{org_classified:d},"levels":{_levels_json(org_counts, org_total)},'
            f'"missing":{org_total - org_classified:d},"quota":{_quota_json(self.org_quota)},"total":{org_total:d}}}'
        )
        result = "null" if own is None else (
            f'{{"decided_by":{_j(own.decided_by)},"disciplined":{_j(own.disciplined)},'
            f'"level":{_j(own.level)},"self_level":{_j(own.self_level)}}}'
        )
        unit = f'{{"code":{_j(node.code)},"kind":{_j(node.kind)},"name":{_j(node.name)},"parent":{_j(node.parent_code)},"result":{result}}}'
        if self.missing_members:
            missing_members = ",".join([
                f'{{"full_name":{_j(m.full_name)},"member_id":{_j(m.member_id)},"unit_code":{_j(m.unit_code)}}}'
                for m in sorted(self.missing_members, key=_MISSING_ORDER)
            ])
        else:
            missing_members = ""
        orgs = ",".join(map(_j, sorted(self.missing_orgs))) if self.missing_orgs else ""
        findings = _findings_json(self.findings) if self.findings else "[]"
        children = ",".join(map(_j, sorted(self.children))) if self.children else ""
        return (
            f'{{"children":[{children}],"findings":{findings},"members":{members},'
            f'"missing_results":{{"members":[{missing_members}],"organizations":[{orgs}]}},'
            f'"organizations":{organizations},"own_members":{self.own_members.canonical_json()},"unit":{unit}}}'
        )

    @classmethod
    def from_dict(cls, data: dict) -> UnitSummary:
        """Inverse of ``to_dict`` (summaries stored as JSON can seed ``reconsolidate``).
        Lists are put back in canonical order whatever order the store returns them in."""
        unit, members, orgs = data["unit"], data["members"], data["organizations"]
        own = unit.get("result")
        code = unit["code"]
        return cls(
            unit=UnitNode(code, unit["name"], unit["kind"], unit["parent"]),
            own_result=None if own is None else OrgResult(
                code, own["level"], own["decided_by"], own["disciplined"], own["self_level"]
            ),
            members_total=members["total"],
            evaluated=members["evaluated"],
            not_evaluated=tuple(members["not_evaluated"][r] for r in NOT_EVALUATED_REASONS),
            level_counts=tuple(members["levels"][lv]["count"] for lv in LEVELS),
            member_quota=Quota(**members["quota"]),
            org_total=orgs["total"],
            org_level_counts=tuple(orgs["levels"][lv]["count"] for lv in LEVELS),
            org_quota=Quota(**orgs["quota"]),
            missing_members=tuple(
                sorted((MissingMember(**m) for m in data["missing_results"]["members"]), key=_MISSING_ORDER)
            ),
            missing_orgs=tuple(sorted(data["missing_results"]["organizations"])),
            findings=tuple(sorted((finding_from_dict(f) for f in data["findings"]), key=_FINDING_ORDER)),
            children=tuple(sorted(data["children"])),
            own_members=OwnMembers.from_dict(data["own_members"]) if "own_members" in data else NO_MEMBERS,
        )


def _ordered(mapping: dict, order: tuple[str, ...]) -> dict:
    return {k: mapping[k] for k in order if k in mapping} | {k: v for k, v in mapping.items() if k not in order}


def in_usual_order(summary: Mapping) -> dict:
    """The summary with levels best first (HTXSNV, HTTNV, HTNV, KHTNV) and not-evaluated reasons in
    their usual order. A stored snapshot comes back from the database with its keys sorted
    (canonical JSON: HTNV, HTTNV, HTXSNV, KHTNV), a look-back in the usual order; the same
    command and document must show both alike. Only the order changes: the content and its hash do not."""
    out = dict(summary)
    for part in ("members", "organizations"):
        if isinstance(out.get(part), dict):
            section = dict(out[part])
            if isinstance(section.get("levels"), dict):
                section["levels"] = _ordered(section["levels"], LEVELS)
            if isinstance(section.get("not_evaluated"), dict):
                section["not_evaluated"] = _ordered(section["not_evaluated"], NOT_EVALUATED_REASONS)
            out[part] = section
    return out


def finding_from_dict(data: dict) -> Finding:
    ov = data.get("overridden")
    return Finding(
        rule=data["rule"],
        severity=data["severity"],
        unit_code=data["unit_code"],
        member_id=data["member_id"],
        message=data["message"],
        regulation=data["regulation"],
        data=dict(data.get("data") or {}),
        overridden=None if ov is None else Override(
            data["key"], ov["by"], ov["reason"], dt.datetime.fromisoformat(ov["at"])
        ),
    )


def _percent(count: int, total: int) -> float:
    """count/total in percent, 1 decimal, half rounded up, computed exactly in integers."""
    if total <= 0:
        return 0.0
    return ((2000 * count + total) // (2 * total)) / 10


def _levels_dict(counts, total: int) -> dict:
    return {lv: {"count": c, "percent": _percent(c, total)} for lv, c in zip(LEVELS, counts)}


_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
_KEY_OF = itemgetter("key")
_SHORT_JSON = {None: "null", **{v: _json_string(v) for v in (*LEVELS, *NOT_EVALUATED_REASONS)}}


def _j(value) -> str:
    """One scalar as canonical JSON, exactly as the encoder writes it."""
    kind = type(value)
    if kind is str:
        return _json_string(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if value is None:
        return "null"
    return _CANONICAL.encode(value)


def _levels_json(counts, total: int) -> str:
    """``_levels_dict(counts, total)`` as canonical JSON (keys sorted: HTNV, HTTNV, HTXSNV, KHTNV)."""
    htxsnv, httnv, htnv, khtnv = counts  # LEVELS order
    if total <= 0:  # every percentage 0.0
        return (
            f'{{"HTNV":{{"count":{htnv:d},"percent":0.0}},"HTTNV":{{"count":{httnv:d},"percent":0.0}},'
            f'"HTXSNV":{{"count":{htxsnv:d},"percent":0.0}},"KHTNV":{{"count":{khtnv:d},"percent":0.0}}}}'
        )
    return (
        f'{{"HTNV":{{"count":{htnv:d},"percent":{_percent(htnv, total)!r}}},'
        f'"HTTNV":{{"count":{httnv:d},"percent":{_percent(httnv, total)!r}}},'
        f'"HTXSNV":{{"count":{htxsnv:d},"percent":{_percent(htxsnv, total)!r}}},'
        f'"KHTNV":{{"count":{khtnv:d},"percent":{_percent(khtnv, total)!r}}}}}'
    )


def _quota_json(quota: Quota) -> str:
    return (
        f'{{"httnv":{quota.httnv:d},"htxsnv":{quota.htxsnv:d},"max_allowed":{quota.max_allowed:d},'
        f'"scope":{_j(quota.scope)},"status":{_j(quota.status)}}}'
    )


def _findings_json(findings: Sequence[Finding]) -> str:
    """The canonical JSON of a findings list, ordered by key (one call of the C encoder)."""
    return _CANONICAL.encode([f.to_dict() for f in sorted(findings, key=_FINDING_ORDER)])


# --------------------------------------------------------------------------- rollup

_LEVEL_INDEX = {lv: i for i, lv in enumerate(LEVELS)}
_REASON_INDEX = {r: i for i, r in enumerate(NOT_EVALUATED_REASONS)}
_MISSING_ORDER = attrgetter("unit_code", "member_id")
_FINDING_ORDER = attrgetter("key")
_ZERO4 = (0, 0, 0, 0)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The rollup allocates ~one tuple per member and creates no reference cycles; the cyclic
    collector would rescan the whole input many times meanwhile (about half the run time).
    Nests; the collector runs again once the outermost pause ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def consolidate(inp: ConsolidationInput) -> dict[str, UnitSummary]:
    """One summary per unit, each rolling up its whole subtree. O(units + members)."""
    rule_set = get_rule_set(inp.rule_set)
    with gc_paused():
        ctx = _context(inp, rule_set)
        findings = rule_set.check(ctx)
        return _summarize(ctx, _entry_tallies(ctx, ctx.units), findings, targets=None, previous={})


def reconsolidate(
    inp: ConsolidationInput,
    previous: dict[str, UnitSummary] | dict[str, dict],
    changed_unit_codes: set[str],
) -> dict[str, UnitSummary]:
    """Rebuild only ``changed_unit_codes`` and their ancestors; reuse the rest of ``previous``.

    Equal to ``consolidate(inp)`` provided ``changed_unit_codes`` names every unit whose own
    members, member results or organization result changed (a member who moved: both units)
    and the rule set and evaluation date are those of ``previous``. Tree changes (units
    added, removed, renamed, re-parented), committees deciding on changed organizations and
    overridden findings are detected here and need not be listed.
    """
    rule_set = get_rule_set(inp.rule_set)
    with gc_paused():
        ctx = _context(inp, rule_set)
        prev = {code: s if isinstance(s, UnitSummary) else UnitSummary.from_dict(s) for code, s in previous.items()}
        affected = _affected(ctx, prev, changed_unit_codes, inp.overrides)
        findings = rule_set.check(ctx.with_scope(affected))
        return _summarize(ctx, _entry_tallies(ctx, affected), findings, targets=affected, previous=prev)


def affected_units(units, changed_unit_codes) -> set[str]:
    """The changed units and all their ancestors (unknown codes are ignored)."""
    parent = {u.code: u.parent_code for u in units}
    out: set[str] = set()
    for code in changed_unit_codes:
        while code is not None and code in parent and code not in out:
            out.add(code)
            code = parent[code]
    return out


def _context(inp: ConsolidationInput, rule_set) -> RuleContext:
    return build_context(
        rule_set, inp.units, inp.members, inp.member_results, inp.org_results, inp.evaluation_date, inp.overrides
    )


def _entry_lines(entries) -> list[MemberLine]:
    return [(m.member_id, m.full_name, r.final_level if r is not None else None, reason) for m, r, reason in entries]


def member_lines_of(inp: ConsolidationInput) -> dict[str, list[MemberLine]]:
    """Unit code -> its own members as ``MemberLine`` (for ``member_changes``)."""
    ctx = _context(inp, get_rule_set(inp.rule_set))
    return {code: _entry_lines(entries) for code, entries in ctx.entries.items()}


def _entry_tallies(ctx: RuleContext, codes: Iterable[str]) -> dict[str, OwnTally]:
    """The own members of the given units, counted."""
    return {code: tally_lines(code, _entry_lines(ctx.entries[code])) for code in codes if code in ctx.entries}


def _affected(ctx: RuleContext, prev: dict[str, UnitSummary], changed: set[str], overrides) -> set[str]:
    seeds = {code for code in changed if code in ctx.units}
    for code, node in ctx.units.items():
        old = prev.get(code)
        if old is None or old.unit != node or old.children != ctx.children[code]:
            seeds.add(code)
    # A changed organization result also moves the quota of the committee that decided it.
    for code in list(seeds):
        result = ctx.org_result_of.get(code)
        if result is not None and result.decided_by:
            seeds.add(result.decided_by)
        old = prev.get(code)
        if old is not None and old.own_result is not None and old.own_result.decided_by:
            seeds.add(old.own_result.decided_by)
    # Overrides can be added or withdrawn anywhere; committees outside the tree move with the data.
    seeds.update(unit_of_key(o.finding_key) for o in overrides)
    # A committee outside the tree is placed on the common ancestor of what it decided,
    # which can move when its decisions change: recompute those placements every time.
    seeds.update(placement for committee, (placement, _) in ctx.committees.items() if committee not in ctx.units)
    for old in prev.values():
        if old.unit.parent_code is None or old.unit.parent_code not in prev:
            seeds.update(
                f.unit_code for f in old.findings
                if f.overridden is not None or f.data.get("committee", f.unit_code) != f.unit_code
            )
    out: set[str] = set()
    for code in seeds:
        for ancestor in ctx.ancestors(code):
            if ancestor in out:
                break
            out.add(ancestor)
    return out


def _summarize(
    ctx: RuleContext, own_of: Mapping[str, OwnTally], findings: list[Finding], targets: set[str] | None,
    previous: dict[str, UnitSummary],
) -> dict[str, UnitSummary]:
    own_findings: dict[str, list[Finding]] = {}
    for finding in findings:
        own_findings.setdefault(finding.unit_code, []).append(finding)
    out: dict[str, UnitSummary] = {}
    for code in ctx.order:  # children before parents
        if targets is not None and code not in targets:
            out[code] = previous[code]
            continue
        kids = [out[c] for c in ctx.children[code]]
        out[code] = _summarize_unit(ctx, code, own_of.get(code, NO_TALLY), own_findings.get(code, []), kids)
    return out


def _summarize_unit(ctx: RuleContext, code: str, own: OwnTally, own_findings: list[Finding], kids: list[UnitSummary]) -> UnitSummary:
    node = ctx.units[code]
    # Own members.
    mine = own.members
    total, evaluated = mine.total, mine.evaluated
    not_eval, counts = list(mine.not_evaluated), list(mine.counts)

    # Children: their subtrees, and themselves as organizations.
    org_total = 0
    org_counts = [0, 0, 0, 0]
    missing_orgs: list[str] = []
    for kid in kids:
        total += kid.members_total
        evaluated += kid.evaluated
        for i in range(3):
            not_eval[i] += kid.not_evaluated[i]
        for i in range(4):
            counts[i] += kid.level_counts[i]
            org_counts[i] += kid.org_level_counts[i]
        org_total += kid.org_total
        missing_orgs.extend(kid.missing_orgs)
        if kid.unit.kind not in UNCLASSIFIED_KINDS:
            org_total += 1
            kid_level = kid.own_result.level if kid.own_result is not None else None
            if kid_level in _LEVEL_INDEX:
                org_counts[_LEVEL_INDEX[kid_level]] += 1
            else:
                missing_orgs.append(kid.unit.code)

    own_findings = sorted(own_findings, key=_FINDING_ORDER)
    if kids:
        missing_all = tuple(sorted(chain(own.missing, *(k.missing_members for k in kids)), key=_MISSING_ORDER))
        findings_all = tuple(sorted(chain(own_findings, *(k.findings for k in kids)), key=_FINDING_ORDER))
    else:
        missing_all = tuple(sorted(own.missing, key=_MISSING_ORDER))
        findings_all = tuple(own_findings)

    return UnitSummary(
        unit=node,
        own_result=ctx.org_result_of.get(code),
        members_total=total,
        evaluated=evaluated,
        not_evaluated=tuple(not_eval),
        level_counts=tuple(counts),
        member_quota=_member_quota(node, counts, own_findings),
        org_total=org_total,
        org_level_counts=tuple(org_counts),
        org_quota=_org_quota(ctx, code, org_counts, own_findings),
        missing_members=missing_all,
        missing_orgs=tuple(sorted(missing_orgs)),
        findings=findings_all,
        children=ctx.children[code],
        own_members=mine,
    )


def _member_quota(node: UnitNode, counts, own_findings: list[Finding]) -> Quota:
    base = node.kind in BASE_KINDS
    return _quota("base_organization" if base else "subtree", counts, base, [f for f in own_findings if f.rule == "cap_members"])


def _org_quota(ctx: RuleContext, code: str, org_counts, own_findings: list[Finding]) -> Quota:
    committee = ctx.committees.get(code)
    if committee is not None and committee[0] == code:
        decided = [0, 0, 0, 0]
        for result in committee[1]:
            if result.level in _LEVEL_INDEX:
                decided[_LEVEL_INDEX[result.level]] += 1
        cap = [f for f in own_findings if f.rule == "cap_organizations" and f.data.get("committee") == code]
        return _quota("committee", decided, True, cap)
    return _quota("subtree", org_counts, False, [])


# --------------------------------------------------------------------------- from member lines

# Group rules that read no member entry (org_cap, disciplined_org, unknown_member_results) or
# only how many evaluated members of each unit hold each final level (member_cap, fed counts).
_LINES_GROUP_RULES = frozenset({member_cap, org_cap, disciplined_org, unknown_member_results})


class NeedsFullRun(ValueError):
    """The previous summaries do not fit the partial input: consolidate the whole campaign."""


def lines_supported(rule_set: RuleSet | str) -> bool:
    """Whether ``consolidate_lines`` / ``reconsolidate_lines`` handle this rule set: its group
    rules must be the shared ones (a rule reading other member data needs every record)."""
    rule_set = get_rule_set(rule_set) if isinstance(rule_set, str) else rule_set
    return all(rule in _LINES_GROUP_RULES for rule in rule_set.group_rules)


def consolidate_lines(inp: LinesInput, *, part: bool = False) -> dict[str, UnitSummary]:
    """``consolidate`` from member lines: the same summaries, O(units + members) with a small constant.

    The member rules look only at ``inp.members``; the 20% member cap counts the lines.

    ``part``: ``inp`` is one subtree of a bigger tree (its root's parent is left out), to be
    topped by ``rollup_lines``. A committee that is not one of its units is then a unit above
    it, whose quota ``rollup_lines`` works out (rather than one outside the tree, placed on the
    common ancestor of what it decided).
    """
    rule_set = _lines_rule_set(inp.rule_set)
    with gc_paused():
        ctx = _lines_context(inp, rule_set)
        if part:
            ctx = replace(ctx, committees={c: v for c, v in ctx.committees.items() if c in ctx.units})
        tallies = {code: inp.own.get(code, NO_TALLY) for code in ctx.units}
        findings = _check_with_counts(rule_set, ctx, {code: t.members.counts for code, t in tallies.items()})
        own_findings: dict[str, list[Finding]] = {}
        for finding in findings:
            own_findings.setdefault(finding.unit_code, []).append(finding)
        out: dict[str, UnitSummary] = {}
        for code in ctx.order:  # children before parents
            kids = [out[c] for c in ctx.children[code]]
            out[code] = _summarize_unit(ctx, code, tallies[code], own_findings.get(code, []), kids)
        return out


def reconsolidate_lines(
    inp: LinesInput, previous: Mapping[str, UnitSummary | dict], affected: Iterable[str]
) -> dict[str, UnitSummary]:
    """New summaries of the ``affected`` units from their previous ones: O(affected × children).

    Each affected unit's totals and lists are its previous ones with its own members and
    findings, and each affected child's contribution, replaced; unaffected children are never
    looked at. Equal to ``consolidate_lines`` of the whole campaign, restricted to ``affected``,
    provided that:

    - ``affected`` holds every unit whose own members, member results or organization result
      changed since ``previous``, the committees that decided a changed organization result
      (before and after), the units of findings whose override changed, and every ancestor of
      each of these;
    - ``inp.units`` holds the affected units, all their children and every unit whose result an
      affected committee decided (committees are units of the tree); ``inp.own`` and
      ``inp.members`` the own members of the affected units (as for ``consolidate_lines``);
      ``inp.org_results`` the results of the affected units and every result decided by one;
    - ``previous`` holds the affected units' summaries from the same tree, rule set and date.

    Raises ``NeedsFullRun`` when ``previous`` does not fit (a unit without a summary, or whose
    children differ).
    """
    rule_set = _lines_rule_set(inp.rule_set)
    affected = set(affected)
    with gc_paused():
        ctx = _lines_context(inp, rule_set)
        unknown = affected - ctx.units.keys()
        if unknown:
            raise NeedsFullRun(f"không có đơn vị: {', '.join(sorted(unknown)[:5])}")
        # Only the affected committees' decisions are complete in a partial input.
        ctx = replace(
            ctx, scope=frozenset(affected), committees={c: v for c, v in ctx.committees.items() if c in affected}
        )
        prev: dict[str, UnitSummary] = {}
        for code in affected:
            old = previous.get(code)
            old = UnitSummary.from_dict(old) if isinstance(old, dict) else old
            if old is None or old.unit != ctx.units[code] or old.children != ctx.children[code]:
                raise NeedsFullRun(f"tổng hợp trước không khớp với cây tổ chức: {code}")
            parent = old.unit.parent_code
            if parent is not None and parent in ctx.units and parent not in affected:
                raise NeedsFullRun(f"thiếu đơn vị cấp trên của {code}: {parent}")
            prev[code] = old
        order = [code for code in ctx.order if code in affected]  # children before parents

        tallies = {code: inp.own.get(code, NO_TALLY) for code in order}
        sums: dict[str, list[int]] = {}
        for code in order:
            total = _subtree_vector(prev[code])
            _add(total, _own_vector(prev[code].own_members), -1)
            _add(total, _own_vector(tallies[code].members), 1)
            for kid in ctx.children[code]:
                if kid in affected:
                    _add(total, _contribution(prev[kid], prev[kid].own_result, _subtree_vector(prev[kid])), -1)
                    _add(total, _contribution(prev[kid], ctx.org_result_of.get(kid), sums[kid]), 1)
            sums[code] = total

        findings = _check_with_counts(rule_set, ctx, _own_share_of_counts(ctx, order, affected, sums))
        own_findings: dict[str, list[Finding]] = {}
        for finding in findings:
            own_findings.setdefault(finding.unit_code, []).append(finding)
        out: dict[str, UnitSummary] = {}
        for code in order:
            out[code] = _update_unit(ctx, code, prev, out, sums[code], tallies[code], own_findings.get(code, []), affected)
        return out


def rollup_lines(
    inp: LinesInput, below: Mapping[str, UnitSummary | dict], units: Iterable[str]
) -> dict[str, UnitSummary]:
    """Summaries of the upper ``units`` from their own members and the summaries of the children
    they have outside ``units`` (``below``): the top of a tree consolidated in parts, each part a
    subtree consolidated on its own (``consolidate_lines``) whose root summary is in ``below``.

    ``units`` must hold each of its units' ancestors that is in ``inp.units``; ``inp.units`` the
    upper units, all their children, and every unit whose result an upper committee decided;
    ``inp.own`` and ``inp.members`` the upper units' own members (as for ``consolidate_lines``);
    ``inp.org_results`` the results of the upper units and of their children, and every result an
    upper committee decided. Each part must hold the committees that decided inside it (a
    committee deciding across parts must be an upper unit). Then the result equals
    ``consolidate_lines`` of the whole tree, restricted to ``units``.

    Raises ``NeedsFullRun`` when a child outside ``units`` has no summary in ``below`` or one of
    another unit.
    """
    rule_set = _lines_rule_set(inp.rule_set)
    upper = set(units)
    with gc_paused():
        ctx = _lines_context(inp, rule_set)
        unknown = upper - ctx.units.keys()
        if unknown:
            raise ValueError(f"không có đơn vị: {', '.join(sorted(unknown)[:5])}")
        ctx = replace(ctx, scope=frozenset(upper), committees={c: v for c, v in ctx.committees.items() if c in upper})
        order = [code for code in ctx.order if code in upper]  # children before parents
        given: dict[str, UnitSummary] = {}
        for code in order:
            for kid in ctx.children[code]:
                if kid in upper:
                    continue
                summary = below.get(kid)
                summary = UnitSummary.from_dict(summary) if isinstance(summary, dict) else summary
                if summary is None or summary.unit != ctx.units[kid]:
                    raise NeedsFullRun(f"thiếu tổng hợp của đơn vị {kid}")
                given[kid] = summary
        tallies = {code: inp.own.get(code, NO_TALLY) for code in order}
        # The member cap counts, at each upper unit, its own members and the subtrees of its given
        # children (their units are not in the context: they count nothing themselves).
        own_counts: dict[str, list[int]] = {}
        for code in order:
            counts = list(tallies[code].members.counts)
            for kid in ctx.children[code]:
                if kid in given:
                    counts = [a + b for a, b in zip(counts, given[kid].level_counts)]
            own_counts[code] = counts
        findings = _check_with_counts(rule_set, ctx, own_counts)
        own_findings: dict[str, list[Finding]] = {}
        for finding in findings:
            own_findings.setdefault(finding.unit_code, []).append(finding)
        out: dict[str, UnitSummary] = {}
        for code in order:
            kids = [out[kid] if kid in upper else given[kid] for kid in ctx.children[code]]
            out[code] = _summarize_unit(ctx, code, tallies[code], own_findings.get(code, []), kids)
        return out


def _lines_rule_set(code: str) -> RuleSet:
    rule_set = get_rule_set(code)
    if not lines_supported(rule_set):
        raise ValueError(f"bộ quy tắc {rule_set.code} cần toàn bộ hồ sơ đảng viên; dùng consolidate")
    return rule_set


def _lines_context(inp: LinesInput, rule_set: RuleSet) -> RuleContext:
    """Indexes over the examined members."""
    return build_context(rule_set, inp.units, inp.members, inp.member_results, inp.org_results, inp.evaluation_date, inp.overrides)


# Stand-ins for member_cap, which only reads final levels and reasons of each unit's entries.
_CAP_ENTRIES = tuple(
    (None, MemberResult("", "", None, None, level, False, 0.0, False, None, "", True), None) for level in LEVELS[:2]
)


def _check_with_counts(rule_set: RuleSet, ctx: RuleContext, own_counts: Mapping[str, Sequence[int]]) -> list[Finding]:
    """``rule_set.check(ctx)`` where the member cap counts ``own_counts`` (each unit's evaluated
    members by final level, the members its subtree adds excluded) instead of member records."""
    htxsnv, httnv = _CAP_ENTRIES
    counted = {code: [] for code in ctx.units}
    counted.update({code: [htxsnv] * c[0] + [httnv] * c[1] for code, c in own_counts.items()})

    def member_cap_on_counts(rs, context):
        return member_cap(rs, replace(context, entries=counted))

    group_rules = tuple(member_cap_on_counts if rule is member_cap else rule for rule in rule_set.group_rules)
    return replace(rule_set, group_rules=group_rules).check(ctx)


# A subtree as one vector: members total, evaluated, not evaluated (3), levels (4), organizations
# total, organization levels (4).
_VECTOR = 14


def _subtree_vector(s: UnitSummary) -> list[int]:
    return [s.members_total, s.evaluated, *s.not_evaluated, *s.level_counts, s.org_total, *s.org_level_counts]


def _own_vector(t: OwnMembers) -> list[int]:
    return [t.total, t.evaluated, *t.not_evaluated, *t.counts, 0, 0, 0, 0, 0]


def _contribution(kid: UnitSummary, own_result: OrgResult | None, subtree: list[int]) -> list[int]:
    """What a child adds to its parent: its subtree, and itself as an organization."""
    out = list(subtree)
    if kid.unit.kind not in UNCLASSIFIED_KINDS:
        out[9] += 1
        level = own_result.level if own_result is not None else None
        if level in _LEVEL_INDEX:
            out[10 + _LEVEL_INDEX[level]] += 1
    return out


def _add(total: list[int], vector: list[int], sign: int) -> None:
    for i in range(_VECTOR):
        total[i] += sign * vector[i]


def _own_share_of_counts(ctx: RuleContext, order, affected: set[str], sums) -> dict[str, list[int]]:
    """Level counts that make every affected unit's subtree sum right when unaffected units count
    nothing: the unit's new subtree counts less those of its affected children."""
    out = {}
    for code in order:
        counts = sums[code][5:9]
        for kid in ctx.children[code]:
            if kid in affected:
                counts = [a - b for a, b in zip(counts, sums[kid][5:9])]
        out[code] = counts
    return out


def _update_unit(
    ctx: RuleContext, code: str, prev: dict[str, UnitSummary], new: dict[str, UnitSummary], total: list[int],
    own: OwnTally, own_findings: list[Finding], affected: set[str],
) -> UnitSummary:
    node, old = ctx.units[code], prev[code]
    kids = [k for k in ctx.children[code] if k in affected]
    own_findings = sorted(own_findings, key=_FINDING_ORDER)

    # Every list item names the unit it is about, and every unit's items come from one child's
    # subtree: drop the unit's own and the affected children's old items, add their new ones.
    gone = {code}
    for kid in kids:
        gone.update(f.unit_code for f in prev[kid].findings)
    findings = sorted(
        chain((f for f in old.findings if f.unit_code not in gone), own_findings, *(new[k].findings for k in kids)),
        key=_FINDING_ORDER,
    )
    for before, after in zip(findings, findings[1:]):
        if before.unit_code != after.unit_code and before.key == after.key:
            # Equal keys of two units (codes with ':'): their order follows the tree; rebuild it whole.
            raise NeedsFullRun(f"hai vi phạm cùng khóa {after.key}")

    gone = {code}
    for kid in kids:
        gone.update(m.unit_code for m in prev[kid].missing_members)
    missing = sorted(
        chain((m for m in old.missing_members if m.unit_code not in gone), own.missing, *(new[k].missing_members for k in kids)),
        key=_MISSING_ORDER,
    )

    gone = set(kids)
    for kid in kids:
        gone.update(prev[kid].missing_orgs)
    missing_orgs = [o for o in old.missing_orgs if o not in gone]
    for kid in kids:
        missing_orgs.extend(new[kid].missing_orgs)
        result = new[kid].own_result
        if new[kid].unit.kind not in UNCLASSIFIED_KINDS and (result is None or result.level not in _LEVEL_INDEX):
            missing_orgs.append(kid)

    counts, org_counts = total[5:9], total[10:14]
    return UnitSummary(
        unit=node,
        own_result=ctx.org_result_of.get(code),
        members_total=total[0],
        evaluated=total[1],
        not_evaluated=tuple(total[2:5]),
        level_counts=tuple(counts),
        member_quota=_member_quota(node, counts, own_findings),
        org_total=total[9],
        org_level_counts=tuple(org_counts),
        org_quota=_org_quota(ctx, code, org_counts, own_findings),
        missing_members=tuple(missing),
        missing_orgs=tuple(sorted(missing_orgs)),
        findings=tuple(findings),
        children=ctx.children[code],
        own_members=own.members,
    )


def _quota(scope: str, counts, checked: bool, cap_findings: list[Finding]) -> Quota:
    htxsnv, httnv = counts[0], counts[1]
    allowed = cap_max_allowed(httnv)
    if not checked:
        status = "n/a"
    elif not cap_findings:
        status = "ok"
    elif any(f.overridden is None for f in cap_findings):
        status = "breach"
    else:
        status = "overridden"
    return Quota(scope, htxsnv, httnv, allowed, status)


# --------------------------------------------------------------------------- hashing


# Lists in a summary are sets; these keys put each in one canonical order.
_LIST_ORDER = {
    "members": lambda m: (m["unit_code"], m["member_id"]),
    "findings": lambda f: f["key"],
}


def _canonical_dict(summary: dict) -> dict:
    """A copy of a summary dict with every list in canonical order (already so when it comes
    from ``to_dict``; re-sorted when it was reordered, e.g. by a database round trip)."""
    out = dict(summary)
    out["findings"] = sorted(summary.get("findings", ()), key=_LIST_ORDER["findings"])
    out["children"] = sorted(summary.get("children", ()))
    missing = summary.get("missing_results") or {}
    out["missing_results"] = {
        "members": sorted(missing.get("members", ()), key=_LIST_ORDER["members"]),
        "organizations": sorted(missing.get("organizations", ())),
    }
    return out


def _as_dict(summary: UnitSummary | dict) -> dict:
    return summary.to_dict() if isinstance(summary, UnitSummary) else summary


def canonical_json(summary: UnitSummary | dict) -> str:
    """The summary as canonical JSON: sorted keys, lists in canonical order, compact, UTF-8 text."""
    if isinstance(summary, UnitSummary):
        return summary.canonical_json()
    return json.dumps(_canonical_dict(summary), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def unit_hash(summary: UnitSummary | dict) -> str:
    """sha256 of the summary as canonical JSON: sorted keys, lists in canonical order."""
    return hashlib.sha256(canonical_json(summary).encode()).hexdigest()


def snapshot_hash(summaries: dict[str, UnitSummary] | dict[str, dict]) -> str:
    """sha256 over the sorted (unit code, unit hash) pairs: independent of any input order."""
    lines = "".join(f"{code}\t{unit_hash(s)}\n" for code, s in sorted(summaries.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


# --------------------------------------------------------------------------- diff


def diff(
    old: dict[str, dict], new: dict[str, dict], *, members: Mapping[str, Sequence[dict]] | None = None,
    flat_memo: dict[int, tuple[dict, dict]] | None = None,
) -> dict:
    """What changed between two snapshots (dicts of ``to_dict()`` per unit, or UnitSummary).

    Summaries do not list members: whose result changed comes from ``members``, unit code ->
    the ``member_changes`` of its own members (the store reads them from the results at both
    times); those of the units in ``old`` or ``new`` are listed.
    Returns ``{"members": [...], "totals": [...], "findings_appeared": [...],
    "findings_gone": [...], "findings_changed": [...], "units_added": [...], "units_removed": [...]}``.
    ``totals`` lists units deepest first (the changed unit, then its parents up to the root).
    ``flat_memo``: a dict kept by a caller that diffs the same summary dicts several times (one
    run's offices), where each one's flattened totals are kept; they are not copied, so the
    dicts must not change meanwhile.
    """
    old = {code: _as_dict(s) for code, s in old.items()}
    new = {code: _as_dict(s) for code, s in new.items()}

    changed_members = []
    if members:
        for code in sorted(set(old) | set(new)):
            for change in members.get(code, ()):
                changed_members.append({**change, "unit_name": _unit_name(new, old, change["unit_code"])})
        changed_members.sort(key=itemgetter("member_id"))

    depth = _depths(new)
    totals = []
    flatten = _flatten_totals if flat_memo is None else lambda summary: _flat_of(summary, flat_memo)
    for code in sorted(set(old) & set(new), key=lambda c: (-depth.get(c, 0), c)):
        changes = [
            {"field": name, "old": value, "new": new_flat.get(name)}
            for new_flat in [flatten(new[code])]
            for name, value in flatten(old[code]).items()
            if new_flat.get(name) != value
        ]
        if changes:
            totals.append({"unit_code": code, "unit_name": new[code]["unit"]["name"], "changes": changes})

    old_findings, new_findings = _own_findings(old), _own_findings(new)
    appeared = [new_findings[k] for k in sorted(set(new_findings) - set(old_findings))]
    gone = [old_findings[k] for k in sorted(set(old_findings) - set(new_findings))]
    changed = [
        {"key": k, "old": old_findings[k], "new": new_findings[k]}
        for k in sorted(set(old_findings) & set(new_findings))
        if old_findings[k] != new_findings[k]
    ]
    return {
        "members": changed_members,
        "totals": totals,
        "findings_appeared": appeared,
        "findings_gone": gone,
        "findings_changed": changed,
        "units_added": sorted(set(new) - set(old)),
        "units_removed": sorted(set(old) - set(new)),
    }


def diff_is_empty(changes: dict) -> bool:
    """True when ``diff`` found nothing: no member, total, finding or unit changed."""
    return not any(changes.get(key) for key in _DIFF_KEYS)


_DIFF_KEYS = (
    "members", "totals", "findings_appeared", "findings_gone", "findings_changed", "units_added", "units_removed",
)


def member_changes(before: Mapping[str, Sequence[MemberLine]], after: Mapping[str, Sequence[MemberLine]]) -> dict[str, list[dict]]:
    """Unit code -> its own members whose final level differs between two sets of member lines
    (a member is listed under the unit that holds them after, or before if gone), for ``diff``."""
    old = {line[0]: (code, line) for code, lines in before.items() for line in lines}
    new = {line[0]: (code, line) for code, lines in after.items() for line in lines}
    out: dict[str, list[dict]] = {}
    for member_id in sorted(old.keys() | new.keys()):
        was, now = old.get(member_id), new.get(member_id)
        old_level = was[1][2] if was else None
        new_level = now[1][2] if now else None
        if old_level != new_level:
            code, line = now or was
            out.setdefault(code, []).append({
                "member_id": member_id, "full_name": line[1], "unit_code": code, "old_level": old_level, "new_level": new_level,
            })
    return out


def _own_findings(snapshot: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for code, summary in snapshot.items():
        for finding in summary["findings"]:
            if finding["unit_code"] == code:  # each finding once, at the unit it is about
                out[finding["key"]] = finding
    return out


def _depths(snapshot: dict[str, dict]) -> dict[str, int]:
    depth: dict[str, int] = {}
    for code in snapshot:
        chain_codes = []
        current = code
        while current in snapshot and current not in depth and current not in chain_codes:
            chain_codes.append(current)
            current = snapshot[current]["unit"]["parent"]
        base = depth.get(current, -1)
        for offset, c in enumerate(reversed(chain_codes), start=1):
            depth[c] = base + offset
    return depth


def _unit_name(new: dict, old: dict, code: str) -> str:
    summary = new.get(code) or old.get(code)
    return summary["unit"]["name"] if summary else code


# The order ``to_dict`` writes the totals in (stored payloads may come back in another order:
# canonical JSON sorts keys). Differences list fields in this order; unknown keys come last.
_TOTALS_ORDER = {
    key: rank for rank, key in enumerate((
        "total", "evaluated", "not_evaluated", "classified", "missing", "levels", "htxsnv_over_httnv_percent", "quota",
        *NOT_EVALUATED_REASONS, *LEVELS, "count", "percent", "scope", "htxsnv", "httnv", "max_allowed", "status",
    ))
}


def _totals_rank(key: str) -> int:
    return _TOTALS_ORDER.get(key, len(_TOTALS_ORDER))


def _flat_of(summary: dict, memo: dict[int, tuple[dict, dict]]) -> dict[str, object]:
    kept = memo.get(id(summary))
    if kept is None or kept[0] is not summary:
        kept = memo[id(summary)] = (summary, _flatten_totals(summary))
    return kept[1]


@functools.lru_cache(maxsize=256)
def _keys_in_totals_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(keys, key=_totals_rank))


def _flatten_totals(summary: dict) -> dict[str, object]:
    out: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if type(value) is dict or isinstance(value, dict):
            for key in _keys_in_totals_order(tuple(value)):
                walk(f"{prefix}.{key}", value[key])
        elif not isinstance(value, list):
            out[prefix] = value

    walk("members", summary["members"])
    walk("organizations", summary["organizations"])
    # The member quota repeats the level counts; listing both would only lengthen the email.
    # Above base organizations it is counted over the subtree for reference only (the cap binds
    # each base organization): an office is not told it moved, nor that it is "vượt".
    subtree_only = (summary["members"].get("quota") or {}).get("scope") == "subtree"
    for name in [n for n in out if n.startswith("members.quota.")]:
        if subtree_only or name in ("members.quota.htxsnv", "members.quota.httnv", "members.quota.scope"):
            del out[name]
    out["unit.result.level"] = (summary["unit"].get("result") or {}).get("level")
    return out


_REASON_LABELS = {
    "exempt": "miễn công tác và sinh hoạt đảng",
    "suspended": "đình chỉ sinh hoạt đảng",
    "new_member": "mới kết nạp dưới 6 tháng",
}
_FIELD_LABELS = {
    "total": "tổng số",
    "evaluated": "số được đánh giá",
    "classified": "đã xếp loại",
    "missing": "chưa có kết quả",
    "htxsnv_over_httnv_percent": "tỷ lệ HTXSNV/HTTNV (%)",
}
_QUOTA_LABELS = {
    "htxsnv": "số HTXSNV tính hạn mức 20%",
    "httnv": "số HTTNV tính hạn mức 20%",
    "max_allowed": "số HTXSNV tối đa được phép",
    "status": "tình trạng hạn mức 20%",
    "scope": "phạm vi hạn mức",
}
_STATUS_LABELS = {"ok": "đạt", "breach": "vượt", "overridden": "vượt (đã được chấp thuận)", "n/a": "không áp dụng"}
_SEVERITY_LABELS = {"error": "Lỗi", "warning": "Cảnh báo", "info": "Thông tin"}


def field_label(field: str) -> str:
    """Vietnamese label for a flattened totals field such as ``members.levels.HTTNV.count``."""
    if field == "unit.result.level":
        return "Xếp loại của tổ chức"
    head, _, rest = field.partition(".")
    subject = "Đảng viên" if head == "members" else "Tổ chức đảng"
    parts = rest.split(".")
    if parts[0] == "levels" and len(parts) == 3:
        what = "số" if parts[2] == "count" else "tỷ lệ (%)"
        return f"{subject} {parts[1]}: {what}"
    if parts[0] == "not_evaluated" and len(parts) == 2:
        return f"{subject} không đánh giá ({_REASON_LABELS.get(parts[1], parts[1])})"
    if parts[0] == "quota" and len(parts) == 2:
        return f"{subject}: {_QUOTA_LABELS.get(parts[1], parts[1])}"
    return f"{subject}: {_FIELD_LABELS.get(parts[0], rest)}"


# Where the 20% cap is counted (a quota's ``scope``), as offices say it.
QUOTA_SCOPE_LABELS = {
    "base_organization": "trong tổ chức cơ sở đảng",
    "subtree": "toàn cây (chỉ để tham khảo)",
    "committee": "trong các tổ chức do cấp ủy này xếp loại",
}


def show_value(value, field: str = "") -> str:
    """A totals value as the offices read it: decimal comma, quota status and scope in Vietnamese;
    a percentage (``field`` ending in "percent") with its one decimal, "20,0" beside "16,7"."""
    if value is None:
        return "—"
    if field.endswith("percent") and isinstance(value, (int, float)):
        return f"{value:.1f}".replace(".", ",")
    if isinstance(value, float):
        return format_decimal(value)
    if isinstance(value, str):
        return _STATUS_LABELS.get(value) or QUOTA_SCOPE_LABELS.get(value) or value
    return str(value)


def render_diff_text(changes: dict) -> str:
    """Plain-text Vietnamese summary of ``diff(...)`` for an email body."""
    if diff_is_empty(changes):
        return "Không có thay đổi so với lần tổng hợp trước.\n"
    lines: list[str] = []
    members = changes.get("members", [])
    if members:
        lines.append(f"Kết quả xếp loại đảng viên thay đổi ({len(members)}):")
        for m in members:
            lines.append(
                f"- {m['full_name']} ({m['member_id']}), {m['unit_name']}: "
                f"{_level_text(m['old_level'])} → {_level_text(m['new_level'])}"
            )
        lines.append("")
    totals = changes.get("totals", [])
    if totals:
        lines.append("Số liệu tổng hợp thay đổi (từ đơn vị có thay đổi lên cấp trên):")
        for unit in totals:
            lines.append(f"* {unit['unit_name']} ({unit['unit_code']}):")
            for change in unit["changes"]:
                lines.append(f"  - {field_label(change['field'])}: {show_value(change['old'], change['field'])} → {show_value(change['new'], change['field'])}")
        lines.append("")
    for key, title in (
        ("findings_appeared", "Vi phạm, lưu ý mới"),
        ("findings_gone", "Vi phạm, lưu ý không còn"),
    ):
        items = changes.get(key, [])
        if items:
            lines.append(f"{title} ({len(items)}):")
            for f in items:
                lines.append(f"- [{_SEVERITY_LABELS.get(f['severity'], f['severity'])}] {f['message']}{_override_text(f)}")
            lines.append("")
    changed = changes.get("findings_changed", [])
    if changed:
        lines.append(f"Vi phạm, lưu ý có thay đổi ({len(changed)}):")
        for item in changed:
            f = item["new"]
            lines.append(f"- [{_SEVERITY_LABELS.get(f['severity'], f['severity'])}] {f['message']}{_override_text(f)}")
        lines.append("")
    if changes.get("units_added"):
        lines.append("Đơn vị mới: " + ", ".join(changes["units_added"]))
    if changes.get("units_removed"):
        lines.append("Đơn vị không còn: " + ", ".join(changes["units_removed"]))
    return "\n".join(lines).rstrip() + "\n"


DIFF_TABLE_HEADER = ("Thay đổi", "Mã đơn vị", "Đơn vị", "Nội dung", "Trước", "Sau")


def diff_table(changes: dict) -> list[tuple[str, ...]]:
    """``diff(...)`` as rows of a table for Excel, in the words of ``render_diff_text``: one row
    per member, total and finding that changed (header ``DIFF_TABLE_HEADER``)."""
    rows: list[tuple[str, ...]] = []
    for m in changes.get("members", ()):
        rows.append(("Kết quả đảng viên", m["unit_code"], m["unit_name"], f"{m['full_name']} ({m['member_id']})",
                     _level_text(m["old_level"]), _level_text(m["new_level"])))
    for unit in changes.get("totals", ()):
        for change in unit["changes"]:
            rows.append(("Số liệu tổng hợp", unit["unit_code"], unit["unit_name"], field_label(change["field"]),
                         show_value(change["old"], change["field"]), show_value(change["new"], change["field"])))
    names = {u["unit_code"]: u["unit_name"] for u in changes.get("totals", ())}
    for key, kind, before, after in (
        ("findings_appeared", "Vi phạm, lưu ý mới", "", "có"),
        ("findings_gone", "Vi phạm, lưu ý không còn", "có", ""),
    ):
        for f in changes.get(key, ()):
            code = f.get("unit_code") or ""
            rows.append((kind, code, names.get(code, ""), f"[{_SEVERITY_LABELS.get(f['severity'], f['severity'])}] {f['message']}{_override_text(f)}",
                         before, after))
    for item in changes.get("findings_changed", ()):
        old, new = item["old"], item["new"]
        code = new.get("unit_code") or ""
        rows.append(("Vi phạm, lưu ý có thay đổi", code, names.get(code, ""), _SEVERITY_LABELS.get(new["severity"], new["severity"]),
                     f"{old['message']}{_override_text(old)}", f"{new['message']}{_override_text(new)}"))
    for key, kind in (("units_added", "Đơn vị mới"), ("units_removed", "Đơn vị không còn")):
        rows.extend((kind, code, "", "", "", "") for code in changes.get(key, ()))
    return rows


def diff_csv(changes: dict) -> bytes:
    """``diff_table`` as CSV that Excel opens as UTF-8 (with a byte-order mark), or b"" when
    nothing changed."""
    rows = diff_table(changes)
    if not rows:
        return b""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(DIFF_TABLE_HEADER)
    writer.writerows(rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _level_text(level: str | None) -> str:
    return f"{level} ({LEVEL_NAMES[level]})" if level in LEVEL_NAMES else "chưa có kết quả"


def _override_text(finding: dict) -> str:
    ov = finding.get("overridden")
    return f" (đã được {ov['by']} chấp thuận: {ov['reason']})" if ov else ""
