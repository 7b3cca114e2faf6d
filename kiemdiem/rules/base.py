"""Shared vocabulary and rules for classifying party organizations and members.

A rule set (one per regulation: 132/21, 124/25, 366/43) is a composition of the rules
defined here plus the few specific to it (in its own module). Rules are pure: they read a
``RuleContext`` built once from the consolidation input and return ``Finding`` objects.

Severity convention for per-member level rules: a breach on a FINAL level is an "error";
the same breach on a level only proposed by the branch (no decision yet) is a "warning",
so offices see it before the committee votes. The 20% cap is checked on final levels only.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import TYPE_CHECKING

from kiemdiem.calendar import format_instant

if TYPE_CHECKING:  # the input dataclasses live in consolidation, which imports this module
    from kiemdiem.consolidation import MemberRecord, MemberResult, OrgResult, Override, UnitNode

Level = str

# Best first; the ranks below make "above"/"below" comparisons explicit.
LEVELS: tuple[Level, ...] = ("HTXSNV", "HTTNV", "HTNV", "KHTNV")
LEVEL_NAMES: dict[Level, str] = {
    "HTXSNV": "Hoàn thành xuất sắc nhiệm vụ",
    "HTTNV": "Hoàn thành tốt nhiệm vụ",
    "HTNV": "Hoàn thành nhiệm vụ",
    "KHTNV": "Không hoàn thành nhiệm vụ",
}
LEVEL_RANK: dict[Level, int] = {"HTXSNV": 3, "HTTNV": 2, "HTNV": 1, "KHTNV": 0}

NOT_EVALUATED_REASONS: tuple[str, ...] = ("exempt", "suspended", "new_member")
NOT_EVALUATED_NAMES: dict[str, str] = {
    "exempt": "được miễn công tác và sinh hoạt đảng",
    "suspended": "bị đình chỉ sinh hoạt đảng",
    "new_member": "mới kết nạp chưa đủ 6 tháng",
}

BASE_KINDS = frozenset({"dang_bo_co_so", "chi_bo_co_so"})
BRANCH_KINDS = frozenset({"chi_bo_co_so", "chi_bo_truc_thuoc"})
# A party cell (tổ đảng) is part of a branch, not an organization that gets classified.
UNCLASSIFIED_KINDS = frozenset({"to_dang"})
HEAD_POSITION = "bi_thu"
NEW_MEMBER_MONTHS = 6
CAP_PERCENT = 20


def cap_max_allowed(httnv: int) -> int:
    """floor(20% × HTTNV) in integers, so 0.2 × n float rounding can never move the boundary."""
    return httnv * CAP_PERCENT // 100


def months_before(day: dt.date, months: int) -> dt.date:
    """Same day ``months`` calendar months earlier, clamped to the month's last day."""
    year, month0 = divmod(day.year * 12 + day.month - 1 - months, 12)
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return dt.date(year, month0 + 1, min(day.day, last_day))


@dataclass(frozen=True)
class Finding:
    """One rule breach (or notice) with its explanation in Vietnamese and the numbers behind it."""

    rule: str
    severity: str  # "error" | "warning" | "info"
    unit_code: str
    member_id: str | None
    message: str
    regulation: str
    data: dict = field(default_factory=dict)
    overridden: Override | None = None

    @property
    def key(self) -> str:
        """Stable identity across runs: used by overrides and by snapshot diffs."""
        return f"{self.rule}:{self.unit_code}:{self.member_id or ''}"

    @property
    def is_breach(self) -> bool:
        return self.severity == "error" and self.overridden is None

    def to_dict(self) -> dict:
        ov = self.overridden
        return {
            "key": self.key,
            "rule": self.rule,
            "severity": self.severity,
            "unit_code": self.unit_code,
            "member_id": self.member_id,
            "message": self.message,
            "regulation": self.regulation,
            "data": dict(self.data),
            "overridden": None if ov is None else {"by": ov.by, "reason": ov.reason, "at": ov.at.isoformat()},
        }


def unit_of_key(key: str) -> str:
    """The unit part of a finding key ``rule:unit:member`` (member may be empty)."""
    return key.split(":", 1)[1].rsplit(":", 1)[0] if key.count(":") >= 2 else ""


# What each rule's finding is about, as an office names it (a decision's reason, the diff email).
RULE_TITLES = {
    "cap_members": "hạn mức 20% đảng viên HTXSNV",
    "cap_organizations": "hạn mức 20% tổ chức đảng HTXSNV",
    "disciplined_member": "đảng viên bị kỷ luật chưa xếp loại KHTNV",
    "disciplined_org": "tổ chức đảng bị kỷ luật chưa xếp loại KHTNV",
    "not_evaluated_classified": "xếp loại người thuộc diện không đánh giá",
    "head_above_unit": "bí thư xếp loại cao hơn tổ chức mình đứng đầu",
    "no_self_review": "xếp loại khi chưa có bản kiểm điểm",
    "sick_leave_ceiling": "nghỉ ốm từ 3 tháng trở lên mà xếp trên HTNV",
    "score_band": "mức xếp loại không khớp điểm",
    "score_missing": "xếp loại chưa có điểm",
    "invalid_level": "mức xếp loại không hợp lệ",
    "absent_pending": "đảng viên vắng mặt chờ đánh giá bổ sung",
    "unknown_member": "kết quả của người không có trong danh sách",
}


def finding_title(key: str, unit_name: str | None = None) -> str:
    """A finding key (``rule:unit:member``) in words: "hạn mức 20% đảng viên HTXSNV của Đảng bộ Sở …
    (SCT)", "… của đảng viên DV004"."""
    rule = key.split(":", 1)[0]
    unit = unit_of_key(key)
    member = key.rsplit(":", 1)[1] if unit else ""
    title = RULE_TITLES.get(rule, rule)
    if member:
        return f"{title} (đảng viên {member}, {unit_name or unit})"
    return f"{title} của {unit_name} ({unit})" if unit_name else f"{title} ({unit})"


# --------------------------------------------------------------------------- context


@dataclass
class RuleContext:
    """Indexes over one consolidation input, built once and shared by rules and rollup."""

    units: dict[str, UnitNode]
    children: dict[str, tuple[str, ...]]
    order: tuple[str, ...]  # children before parents
    base_org: dict[str, str | None]  # unit -> the base organization containing it (or itself)
    # unit -> its own members as (member, current result or None, not-evaluated reason or None)
    entries: dict[str, list[tuple[MemberRecord, MemberResult | None, str | None]]]
    result_of: dict[str, MemberResult]
    org_result_of: dict[str, OrgResult]
    reason_of: dict[str, str | None]  # member -> why not evaluated, None when evaluated
    committees: dict[str, tuple[str, tuple[OrgResult, ...]]]  # decided_by -> (placement unit, results)
    orphan_results: tuple[MemberResult, ...]  # results of members missing from the member list
    overrides: dict[str, tuple[Override, ...]]  # finding key -> its overrides, newest first
    evaluation_date: dt.date
    scope: frozenset[str] | None = None  # None = every unit

    def in_scope(self, code: str) -> bool:
        return self.scope is None or code in self.scope

    def subtree(self, code: str) -> Iterator[str]:
        stack = [code]
        while stack:
            current = stack.pop()
            yield current
            stack.extend(self.children.get(current, ()))

    def ancestors(self, code: str) -> Iterator[str]:
        """``code`` itself, then its parent, up to the root."""
        seen = set()
        while code is not None and code in self.units and code not in seen:
            seen.add(code)
            yield code
            code = self.units[code].parent_code

    def with_scope(self, scope: Iterable[str] | None) -> RuleContext:
        return replace(self, scope=None if scope is None else frozenset(scope))


# Deterministic choice when the store hands over two results for one subject, so that
# input order never changes the outcome (snapshot hashes rely on it): decided beats undecided.
def _member_result_preference(result) -> tuple:
    return (result.final_level is not None, result.proposed_level is not None, repr(result))


def _org_result_preference(result) -> tuple:
    return (result.level is not None, result.decided_by is not None, repr(result))


def _pick_unique(items, key, preference, prefer_max: bool = False) -> dict:
    chosen: dict = {}
    for item in items:
        k = key(item)
        current = chosen.get(k)
        if current is None:
            chosen[k] = item
            continue
        better = preference(item) > preference(current) if prefer_max else preference(item) < preference(current)
        if better:
            chosen[k] = item
    return chosen


def build_context(
    rule_set: RuleSet,
    units: Sequence[UnitNode],
    members: Sequence[MemberRecord],
    member_results: Sequence[MemberResult],
    org_results: Sequence[OrgResult],
    evaluation_date: dt.date,
    overrides: Sequence[Override] = (),
) -> RuleContext:
    """Index the input. Raises ValueError on duplicate unit codes or a cycle in the tree."""
    by_code: dict[str, UnitNode] = {}
    for node in units:
        if node.code in by_code and by_code[node.code] != node:
            raise ValueError(f"mã đơn vị bị lặp: {node.code}")
        by_code[node.code] = node
    child_lists: dict[str, list[str]] = {code: [] for code in by_code}
    roots: list[str] = []
    for code, node in by_code.items():
        if node.parent_code is not None and node.parent_code in by_code:
            child_lists[node.parent_code].append(code)
        else:
            roots.append(code)
    children = {code: tuple(sorted(kids)) for code, kids in child_lists.items()}

    top_down: list[str] = []
    base_org: dict[str, str | None] = {}
    stack = [(root, None) for root in sorted(roots, reverse=True)]
    while stack:
        code, inherited = stack.pop()
        top_down.append(code)
        base = code if by_code[code].kind in BASE_KINDS else inherited
        base_org[code] = base
        stack.extend((kid, base) for kid in reversed(children[code]))
    if len(top_down) != len(by_code):
        cyclic = sorted(set(by_code) - set(top_down))
        raise ValueError(f"cây tổ chức có chu trình: {', '.join(cyclic[:10])}")

    # Fast path in C (dict comprehensions); the slow, order-independent choice between
    # duplicates only runs when there are duplicates (the store guarantees unique ids).
    member_of: dict[str, MemberRecord] = {m.member_id: m for m in members}
    if len(member_of) != len(members):
        member_of = _pick_unique(members, attrgetter("member_id"), repr)
    known = [r for r in member_results if r.member_id in member_of]
    orphans = [r for r in member_results if r.member_id not in member_of] if len(known) != len(member_results) else []
    result_of: dict[str, MemberResult] = {r.member_id: r for r in known}
    if len(result_of) != len(known):
        result_of = _pick_unique(known, attrgetter("member_id"), _member_result_preference, prefer_max=True)

    entries: dict[str, list] = {code: [] for code in by_code}
    cutoff = months_before(evaluation_date, NEW_MEMBER_MONTHS)
    not_evaluated = rule_set.not_evaluated_reason_by_cutoff
    reason_of: dict[str, str | None] = {mid: not_evaluated(m, cutoff) for mid, m in member_of.items()}
    get_result, get_bucket = result_of.get, entries.get
    for member_id, member in member_of.items():
        bucket = get_bucket(member.unit_code)
        if bucket is not None:
            bucket.append((member, get_result(member_id), reason_of[member_id]))

    org_result_of: dict[str, object] = {}
    for result in org_results:
        if result.unit_code not in by_code:
            continue
        current = org_result_of.get(result.unit_code)
        if current is None or _org_result_preference(result) > _org_result_preference(current):
            org_result_of[result.unit_code] = result

    groups: dict[str, list] = {}
    for code in sorted(org_result_of):
        result = org_result_of[code]
        if result.decided_by is not None:
            groups.setdefault(result.decided_by, []).append(result)
    depth = {}
    for code in top_down:
        parent = by_code[code].parent_code
        depth[code] = depth[parent] + 1 if parent in depth else 0
    committees = {}
    for committee, results in groups.items():
        placement = committee if committee in by_code else _common_ancestor(
            [by_code[r.unit_code].parent_code or r.unit_code for r in results], by_code, depth
        )
        committees[committee] = (placement, tuple(results))

    grants: dict[str, list[Override]] = {}
    for override in overrides:
        grants.setdefault(override.finding_key, []).append(override)
    latest = {
        key: tuple(sorted(found, key=lambda o: (o.at, o.by, o.reason, repr(o.covers)), reverse=True))
        for key, found in grants.items()
    }

    return RuleContext(
        units=by_code,
        children=children,
        order=tuple(reversed(top_down)),
        base_org=base_org,
        entries=entries,
        result_of=result_of,
        org_result_of=org_result_of,
        reason_of=reason_of,
        committees=committees,
        orphan_results=tuple(sorted(orphans, key=repr)),
        overrides=latest,
        evaluation_date=evaluation_date,
    )


def _common_ancestor(codes: list[str], by_code: dict, depth: dict) -> str:
    """Lowest common ancestor; used to place a committee that is not itself a unit of the tree."""
    codes = [c for c in codes if c in by_code]
    if not codes:
        return ""
    current = codes[0]
    for other in codes[1:]:
        a, b = current, other
        while depth[a] > depth[b]:
            a = by_code[a].parent_code
        while depth[b] > depth[a]:
            b = by_code[b].parent_code
        while a != b and a is not None and b is not None:
            a, b = by_code[a].parent_code, by_code[b].parent_code
        if a is None or b is None:
            return min(codes)  # separate trees: no common ancestor, pick deterministically
        current = a
    return current


# --------------------------------------------------------------------------- rules

# A member rule looks at one member (with result and not-evaluated reason) and may return a finding.
MemberRule = Callable[["RuleSet", RuleContext, "MemberRecord", "MemberResult | None", "str | None"], "Finding | None"]
# A group rule looks at the whole (scoped) context.
GroupRule = Callable[["RuleSet", RuleContext], Iterable[Finding]]


def decided_level(result) -> tuple[Level | None, str]:
    """The level a rule should judge and how serious a breach is: final ⇒ error, proposed ⇒ warning."""
    if result is None:
        return None, "info"
    if result.final_level is not None:
        return (result.final_level, "error") if result.final_level in LEVEL_RANK else (None, "info")
    if result.proposed_level is not None:
        return (result.proposed_level, "warning") if result.proposed_level in LEVEL_RANK else (None, "info")
    return None, "info"


def who(member) -> str:
    return f"Đảng viên {member.full_name} ({member.member_id})"


def unit_label(ctx: RuleContext, code: str) -> str:
    node = ctx.units.get(code)
    return f"{node.name} ({code})" if node is not None else code


def level_phrase(level: Level, severity: str) -> str:
    return f"được xếp loại {level}" if severity == "error" else f"được đề xuất xếp loại {level}"


def invalid_level(rs, ctx, member, result, reason):
    """Parsed files only hold valid codes; anything else reaching here is reported, not counted."""
    if result is None:
        return None
    bad = {
        name: value
        for name, value in (("self_level", result.self_level), ("proposed_level", result.proposed_level),
                            ("final_level", result.final_level))
        if value is not None and value not in LEVEL_RANK
    }
    if not bad:
        return None
    shown = ", ".join(f"'{v}'" for v in bad.values())
    return rs.finding(
        "invalid_level", "error", member.unit_code, member.member_id,
        f"{who(member)} có mức xếp loại không hợp lệ {shown}; chỉ dùng {', '.join(LEVELS)}.",
        bad,
    )


def not_evaluated_classified(rs, ctx, member, result, reason):
    """Exempt, suspended and new members are not classified; a level given to them is wrong."""
    if reason is None or result is None:
        return None
    level = result.final_level or result.proposed_level
    if level is None:
        return None
    # As every member rule: a level only proposed by the branch is a warning, a decided one an error.
    severity = "error" if result.final_level else "warning"
    return rs.finding(
        "not_evaluated_classified", severity, member.unit_code, member.member_id,
        f"{who(member)} thuộc diện không đánh giá, xếp loại ({NOT_EVALUATED_NAMES[reason]}) "
        f"nhưng {level_phrase(level, severity)}.",
        {"reason": reason, "level": level},
    )


def disciplined_member(rs, ctx, member, result, reason):
    if reason is not None or result is None or not result.disciplined:
        return None
    level, severity = decided_level(result)
    if level is None or level == "KHTNV":
        return None
    return rs.finding(
        "disciplined_member", severity, member.unit_code, member.member_id,
        f"{who(member)} bị kỷ luật trong năm nhưng {level_phrase(level, severity)}; "
        f"phải xếp loại KHTNV ({LEVEL_NAMES['KHTNV']}).",
        {"level": level, "required": "KHTNV"},
    )


def no_self_review(rs, ctx, member, result, reason):
    """Review before classification: a level needs the member's own self-review (Mẫu 02)."""
    if reason is not None or result is None or result.has_self_review:
        return None
    level, severity = decided_level(result)
    if level is None:
        return None
    return rs.finding(
        "no_self_review", severity, member.unit_code, member.member_id,
        f"{who(member)} chưa có bản kiểm điểm cá nhân nhưng {level_phrase(level, severity)}; "
        "phải kiểm điểm trước khi xếp loại.",
        {"level": level},
    )


def head_above_unit(rs, ctx, member, result, reason):
    """The secretary (bí thư) of a branch is not rated above the branch they lead."""
    if reason is not None or HEAD_POSITION not in member.positions:
        return None
    unit_result = ctx.org_result_of.get(member.unit_code)
    if unit_result is None or unit_result.level not in LEVEL_RANK:
        return None
    level, severity = decided_level(result)
    if level is None or LEVEL_RANK[level] <= LEVEL_RANK[unit_result.level]:
        return None
    return rs.finding(
        "head_above_unit", severity, member.unit_code, member.member_id,
        f"{who(member)} là bí thư {unit_label(ctx, member.unit_code)}, {level_phrase(level, severity)} "
        f"cao hơn mức của tổ chức do mình đứng đầu ({unit_result.level}).",
        {"level": level, "unit_level": unit_result.level},
    )


def absent_pending(rs, ctx, member, result, reason):
    """Absent at the meeting: evaluated at the next one and reported as a supplement."""
    if reason is not None or result is None or not result.absent or result.final_level is not None:
        return None
    return rs.finding(
        "absent_pending", "info", member.unit_code, member.member_id,
        f"{who(member)} vắng mặt tại hội nghị; chi bộ đánh giá vào cuộc họp gần nhất và báo cáo bổ sung sau.",
        {},
    )


def member_cap(rs, ctx):
    """20% cap among members of each base organization, on final levels."""
    for base in ctx.order:
        if ctx.units[base].kind not in BASE_KINDS or not ctx.in_scope(base):
            continue
        htxsnv = httnv = 0
        for code in ctx.subtree(base):
            for _member, result, reason in ctx.entries[code]:
                if reason is not None or result is None:
                    continue
                level = result.final_level
                if level == "HTXSNV":
                    htxsnv += 1
                elif level == "HTTNV":
                    httnv += 1
        allowed = cap_max_allowed(httnv)
        if htxsnv > allowed:
            yield rs.finding(
                "cap_members", "error", base, None,
                f"Có {htxsnv} đảng viên HTXSNV trên {httnv} HTTNV; tối đa được {allowed} ({CAP_PERCENT}%) "
                f"tại {unit_label(ctx, base)}, vượt {htxsnv - allowed}.",
                {"htxsnv": htxsnv, "httnv": httnv, "max_allowed": allowed},
            )


def org_cap(rs, ctx):
    """20% cap among the organizations one committee classifies (OrgResult.decided_by)."""
    for committee in sorted(ctx.committees):
        placement, results = ctx.committees[committee]
        if not placement or not ctx.in_scope(placement):
            continue
        htxsnv = sum(1 for r in results if r.level == "HTXSNV")
        httnv = sum(1 for r in results if r.level == "HTTNV")
        allowed = cap_max_allowed(httnv)
        if htxsnv > allowed:
            yield rs.finding(
                "cap_organizations", "error", placement, None,
                f"Có {htxsnv} tổ chức đảng HTXSNV trên {httnv} HTTNV; tối đa được {allowed} ({CAP_PERCENT}%) "
                f"trong các tổ chức do {unit_label(ctx, committee)} xếp loại, vượt {htxsnv - allowed}.",
                {"htxsnv": htxsnv, "httnv": httnv, "max_allowed": allowed, "committee": committee},
            )


def disciplined_org(rs, ctx):
    for code in sorted(ctx.org_result_of):
        result = ctx.org_result_of[code]
        if not result.disciplined or not ctx.in_scope(code):
            continue
        level, severity = (result.level, "error") if result.level is not None else (result.self_level, "warning")
        if level is None or level == "KHTNV":
            continue
        verb = "được xếp loại" if severity == "error" else "tự xếp loại"
        yield rs.finding(
            "disciplined_org", severity, code, None,
            f"Tổ chức đảng {unit_label(ctx, code)} bị kỷ luật trong năm nhưng {verb} {level}; "
            "phải xếp loại KHTNV.",
            {"level": level, "required": "KHTNV"},
        )


def unknown_member_results(rs, ctx):
    """Results for ids not in the member list are never counted; say so instead of dropping them."""
    for result in ctx.orphan_results:
        if result.unit_code not in ctx.units or not ctx.in_scope(result.unit_code):
            continue
        yield rs.finding(
            "unknown_member", "warning", result.unit_code, result.member_id,
            f"Có kết quả xếp loại cho mã đảng viên {result.member_id} nhưng mã này không có trong danh sách "
            f"đảng viên; kết quả không được tính.",
            {},
        )


COMMON_MEMBER_RULES: tuple[MemberRule, ...] = (
    invalid_level,
    not_evaluated_classified,
    disciplined_member,
    no_self_review,
    head_above_unit,
    absent_pending,
)
COMMON_GROUP_RULES: tuple[GroupRule, ...] = (member_cap, org_cap, disciplined_org, unknown_member_results)


# --------------------------------------------------------------------------- rule set


@dataclass(frozen=True)
class RuleSet:
    """A regulation's rules: shared ones composed with its own (see r132_21, r124_25, r366_43)."""

    code: str
    name: str
    regulation: str
    member_rules: tuple[MemberRule, ...] = COMMON_MEMBER_RULES
    group_rules: tuple[GroupRule, ...] = COMMON_GROUP_RULES
    # (minimum score, level), best first; empty when the regulation has no score.
    score_bands: tuple[tuple[float, Level], ...] = ()

    def member_not_evaluated_reason(self, member: MemberRecord, evaluation_date: dt.date) -> str | None:
        """'exempt', 'suspended', 'new_member' (admitted less than 6 months before), or None."""
        return self.not_evaluated_reason_by_cutoff(member, months_before(evaluation_date, NEW_MEMBER_MONTHS))

    def not_evaluated_reason_by_cutoff(self, member: MemberRecord, cutoff: dt.date) -> str | None:
        if member.status in ("exempt", "suspended"):
            return member.status
        if member.joined_on is not None and member.joined_on > cutoff:
            return "new_member"
        return None

    def score_band(self, score: float | None) -> Level | None:
        if score is None:
            return None
        for minimum, level in self.score_bands:
            if score >= minimum:
                return level
        return None

    def finding(self, rule: str, severity: str, unit_code: str, member_id: str | None, message: str, data: dict) -> Finding:
        return Finding(rule, severity, unit_code, member_id, message, self.regulation, data)

    def check(self, ctx: RuleContext) -> list[Finding]:
        """All findings for the units in ``ctx.scope`` (all units when None), sorted by key,
        with matching overrides attached (kept, but no longer a breach)."""
        found: list[Finding] = []
        member_rules = self.member_rules
        for code, entries in ctx.entries.items():
            if not entries or not ctx.in_scope(code):
                continue
            for member, result, reason in entries:
                for rule in member_rules:
                    finding = rule(self, ctx, member, result, reason)
                    if finding is not None:
                        found.append(finding)
        for group_rule in self.group_rules:
            found.extend(group_rule(self, ctx))
        if ctx.overrides:
            found = [_with_override(f, ctx.overrides[f.key]) if f.key in ctx.overrides else f for f in found]
        found.sort(key=lambda f: f.key)
        return found


CAP_RULES = frozenset(("cap_members", "cap_organizations"))


def covers(granted: Mapping | None, finding: Finding) -> bool:
    """Whether an override granted on the finding data ``granted`` still holds for ``finding``.

    A cap approved for some HTXSNV over the limit holds while the excess is no larger (fewer
    members over it, or more HTTNV, is still within what was approved); any other finding, while
    its data is the same (the same level, the same reason). None: granted before overrides
    kept their data, holds as it did."""
    if granted is None:
        return True
    data = finding.data
    if finding.rule in CAP_RULES:
        return (
            data.get("committee") == granted.get("committee")
            and data["htxsnv"] - data["max_allowed"] <= granted["htxsnv"] - granted["max_allowed"]
        )
    return dict(granted) == data


def _with_override(finding: Finding, overrides: tuple[Override, ...]) -> Finding:
    """The finding under the newest override that still covers it; when none does, a breach
    again, its message saying which approval no longer applies."""
    for override in overrides:
        if covers(override.covers, finding):
            return replace(finding, overridden=override)
    newest = overrides[0]
    return replace(finding, message=(
        f"{finding.message} Chấp thuận của {newest.by} lúc {format_instant(newest.at)} ({newest.reason}) "
        "chỉ áp dụng cho số liệu khi đó; số liệu đã thay đổi nên cần xem xét, chấp thuận lại."
    ))


_REGISTRY: dict[str, RuleSet] = {}


def register(rule_set: RuleSet) -> RuleSet:
    _REGISTRY[rule_set.code] = rule_set
    return rule_set


def get_rule_set(code: str) -> RuleSet:
    """'132/21', '124/25' or '366/43' ('-' accepted for '/'); ValueError for anything else."""
    normalized = (code or "").strip().replace("-", "/").replace(" ", "")
    try:
        return _REGISTRY[normalized]
    except KeyError:
        raise ValueError(
            f"bộ quy tắc không được hỗ trợ: '{code}' (chọn một trong: {', '.join(sorted(_REGISTRY))})"
        ) from None
