"""Consolidation of classification results up the organization tree (pure, no I/O).

``consolidate`` indexes the input once, runs the campaign's rule set, then builds one
``UnitSummary`` per unit in a single bottom-up pass: a unit's summary is its own members
and findings combined with its children's summaries. That shape is what makes
``reconsolidate`` cheap and exact: only changed units and their ancestors are rebuilt,
everything else is reused from the previous run.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import NamedTuple

from kiemdiem.rules.base import (
    BASE_KINDS,
    LEVEL_NAMES,
    LEVELS,
    NOT_EVALUATED_REASONS,
    UNCLASSIFIED_KINDS,
    Finding,
    RuleContext,
    build_context,
    cap_max_allowed,
    get_rule_set,
    unit_of_key,
)

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


@dataclass(frozen=True)
class ConsolidationInput:
    units: tuple[UnitNode, ...]
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
# reason). Plain tuples because there is one per member (lets ``diff`` name who changed).
MemberLine = tuple[str, str, "str | None", "str | None"]


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
    member_lines: tuple[MemberLine, ...]  # members attached here, sorted by id

    @property
    def classified(self) -> int:
        return sum(self.level_counts)

    @property
    def org_classified(self) -> int:
        return sum(self.org_level_counts)

    def to_dict(self) -> dict:
        node, own = self.unit, self.own_result
        classified = self.classified
        htxsnv, httnv = self.level_counts[0], self.level_counts[1]
        return {
            "unit": {
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
            },
            "members": {
                "total": self.members_total,
                "evaluated": self.evaluated,
                "not_evaluated": dict(zip(NOT_EVALUATED_REASONS, self.not_evaluated)),
                "classified": classified,
                "missing": self.evaluated - classified,
                "levels": _levels_dict(self.level_counts, self.evaluated),
                "htxsnv_over_httnv_percent": _percent(htxsnv, httnv) if httnv else None,
                "quota": self.member_quota.to_dict(),
            },
            "organizations": {
                "total": self.org_total,
                "classified": self.org_classified,
                "missing": self.org_total - self.org_classified,
                "levels": _levels_dict(self.org_level_counts, self.org_total),
                "quota": self.org_quota.to_dict(),
            },
            "missing_results": {
                "members": [
                    {"member_id": m.member_id, "full_name": m.full_name, "unit_code": m.unit_code}
                    for m in self.missing_members
                ],
                "organizations": list(self.missing_orgs),
            },
            "findings": [f.to_dict() for f in self.findings],
            "children": list(self.children),
            "member_results": [
                {"member_id": m[0], "full_name": m[1], "level": m[2], "not_evaluated": m[3]}
                for m in self.member_lines
            ],
        }

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
            member_lines=tuple(
                sorted((m["member_id"], m["full_name"], m["level"], m["not_evaluated"]) for m in data.get("member_results", ()))
            ),
        )


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


# --------------------------------------------------------------------------- rollup

_LEVEL_INDEX = {lv: i for i, lv in enumerate(LEVELS)}
_REASON_INDEX = {r: i for i, r in enumerate(NOT_EVALUATED_REASONS)}
_MISSING_ORDER = attrgetter("unit_code", "member_id")
_FINDING_ORDER = attrgetter("key")
_ZERO4 = (0, 0, 0, 0)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The rollup allocates ~one tuple per member and creates no reference cycles; the cyclic
    collector would rescan the whole input many times meanwhile (about half the run time)."""
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
    with _gc_paused():
        ctx = _context(inp, rule_set)
        findings = rule_set.check(ctx)
        return _summarize(ctx, findings, targets=None, previous={})


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
    with _gc_paused():
        ctx = _context(inp, rule_set)
        prev = {code: s if isinstance(s, UnitSummary) else UnitSummary.from_dict(s) for code, s in previous.items()}
        affected = _affected(ctx, prev, changed_unit_codes, inp.overrides)
        findings = rule_set.check(ctx.with_scope(affected))
        return _summarize(ctx, findings, targets=affected, previous=prev)


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
    ctx: RuleContext, findings: list[Finding], targets: set[str] | None, previous: dict[str, UnitSummary]
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
        out[code] = _summarize_unit(ctx, code, own_findings.get(code, []), kids)
    return out


def _summarize_unit(ctx: RuleContext, code: str, own_findings: list[Finding], kids: list[UnitSummary]) -> UnitSummary:
    node = ctx.units[code]
    # Own members.
    total = evaluated = 0
    not_eval = [0, 0, 0]
    counts = [0, 0, 0, 0]
    missing: list[MissingMember] = []
    lines: list[MemberLine] = []
    for member, result, reason in ctx.entries[code]:
        total += 1
        level = result.final_level if result is not None else None
        lines.append((member.member_id, member.full_name, level, reason))
        if reason is not None:
            not_eval[_REASON_INDEX[reason]] += 1
            continue
        evaluated += 1
        index = _LEVEL_INDEX.get(level) if level is not None else None
        if index is None:
            missing.append(MissingMember(member.member_id, member.full_name, code))
        else:
            counts[index] += 1

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
        missing_all = tuple(sorted(chain(missing, *(k.missing_members for k in kids)), key=_MISSING_ORDER))
        findings_all = tuple(sorted(chain(own_findings, *(k.findings for k in kids)), key=_FINDING_ORDER))
    else:
        missing_all = tuple(sorted(missing, key=_MISSING_ORDER))
        findings_all = tuple(own_findings)

    member_quota = _quota(
        "base_organization" if node.kind in BASE_KINDS else "subtree",
        counts, node.kind in BASE_KINDS, [f for f in own_findings if f.rule == "cap_members"],
    )
    committee = ctx.committees.get(code)
    if committee is not None and committee[0] == code:
        decided = [0, 0, 0, 0]
        for result in committee[1]:
            if result.level in _LEVEL_INDEX:
                decided[_LEVEL_INDEX[result.level]] += 1
        cap = [f for f in own_findings if f.rule == "cap_organizations" and f.data.get("committee") == code]
        org_quota = _quota("committee", decided, True, cap)
    else:
        org_quota = _quota("subtree", org_counts, False, [])

    return UnitSummary(
        unit=node,
        own_result=ctx.org_result_of.get(code),
        members_total=total,
        evaluated=evaluated,
        not_evaluated=tuple(not_eval),
        level_counts=tuple(counts),
        member_quota=member_quota,
        org_total=org_total,
        org_level_counts=tuple(org_counts),
        org_quota=org_quota,
        missing_members=missing_all,
        missing_orgs=tuple(sorted(missing_orgs)),
        findings=findings_all,
        children=ctx.children[code],
        member_lines=tuple(sorted(lines)),
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
    "member_results": lambda m: m["member_id"],
}


def _canonical_dict(summary: dict) -> dict:
    """A copy of a summary dict with every list in canonical order (already so when it comes
    from ``to_dict``; re-sorted when it was reordered, e.g. by a database round trip)."""
    out = dict(summary)
    out["findings"] = sorted(summary.get("findings", ()), key=_LIST_ORDER["findings"])
    out["children"] = sorted(summary.get("children", ()))
    out["member_results"] = sorted(summary.get("member_results", ()), key=_LIST_ORDER["member_results"])
    missing = summary.get("missing_results") or {}
    out["missing_results"] = {
        "members": sorted(missing.get("members", ()), key=_LIST_ORDER["members"]),
        "organizations": sorted(missing.get("organizations", ())),
    }
    return out


def _as_dict(summary: UnitSummary | dict) -> dict:
    return summary.to_dict() if isinstance(summary, UnitSummary) else summary


def unit_hash(summary: UnitSummary | dict) -> str:
    """sha256 of the summary as canonical JSON: sorted keys, lists in canonical order."""
    text = json.dumps(_canonical_dict(_as_dict(summary)), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def snapshot_hash(summaries: dict[str, UnitSummary] | dict[str, dict]) -> str:
    """sha256 over the sorted (unit code, unit hash) pairs: independent of any input order."""
    lines = "".join(f"{code}\t{unit_hash(s)}\n" for code, s in sorted(summaries.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


# --------------------------------------------------------------------------- diff


def diff(old: dict[str, dict], new: dict[str, dict]) -> dict:
    """What changed between two snapshots (dicts of ``to_dict()`` per unit, or UnitSummary).

    Returns ``{"members": [...], "totals": [...], "findings_appeared": [...],
    "findings_gone": [...], "findings_changed": [...], "units_added": [...], "units_removed": [...]}``.
    ``totals`` lists units deepest first (the changed unit, then its parents up to the root).
    """
    old = {code: _as_dict(s) for code, s in old.items()}
    new = {code: _as_dict(s) for code, s in new.items()}

    members = []
    old_lines, new_lines = _member_lines(old), _member_lines(new)
    for member_id in sorted(set(old_lines) | set(new_lines)):
        before, after = old_lines.get(member_id), new_lines.get(member_id)
        old_level = before[2] if before else None
        new_level = after[2] if after else None
        if old_level != new_level:
            unit_code, full_name = (after or before)[0], (after or before)[1]
            members.append({
                "member_id": member_id,
                "full_name": full_name,
                "unit_code": unit_code,
                "unit_name": _unit_name(new, old, unit_code),
                "old_level": old_level,
                "new_level": new_level,
            })

    depth = _depths(new)
    totals = []
    for code in sorted(set(old) & set(new), key=lambda c: (-depth.get(c, 0), c)):
        changes = [
            {"field": name, "old": value, "new": new_flat.get(name)}
            for new_flat in [_flatten_totals(new[code])]
            for name, value in _flatten_totals(old[code]).items()
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
        "members": members,
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


def _member_lines(snapshot: dict[str, dict]) -> dict[str, tuple]:
    out = {}
    for code, summary in snapshot.items():
        for line in summary.get("member_results", ()):
            out[line["member_id"]] = (code, line["full_name"], line["level"])
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


def _flatten_totals(summary: dict) -> dict[str, object]:
    out: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        elif not isinstance(value, list):
            out[prefix] = value

    walk("members", summary["members"])
    walk("organizations", summary["organizations"])
    # The member quota repeats the level counts; listing both would only lengthen the email.
    for redundant in ("members.quota.htxsnv", "members.quota.httnv", "members.quota.scope"):
        out.pop(redundant, None)
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


def _show(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}".replace(".", ",")  # Vietnamese decimal comma
    if isinstance(value, str) and value in _STATUS_LABELS:
        return _STATUS_LABELS[value]
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
                lines.append(f"  - {field_label(change['field'])}: {_show(change['old'])} → {_show(change['new'])}")
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


def _level_text(level: str | None) -> str:
    return f"{level} ({LEVEL_NAMES[level]})" if level in LEVEL_NAMES else "chưa có kết quả"


def _override_text(finding: dict) -> str:
    ov = finding.get("overridden")
    return f" (đã được {ov['by']} chấp thuận: {ov['reason']})" if ov else ""
