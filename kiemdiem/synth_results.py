"""Deterministic classification results for a (synthetic or real) organization: demos, tests, benchmarks.

``generate_results(units, members, seed, evaluation_date)`` gives every member a result and every
classifiable organization a committee decision, with a realistic mix:

- members: about 1% disciplined (so KHTNV), a few more KHTNV, ~12% HTNV, the rest HTTNV with as
  many HTXSNV as the 20% cap allows in each base organization (or one less); in
  ``breach_share`` of the base organizations the cap is exceeded by one or two, as happens;
- a branch secretary is not rated above the branch (in all but a few cases);
- members who are not evaluated (exempt, suspended, admitted less than 6 months before) are
  listed without a level, as offices list them;
- organizations: each committee classifies the organizations directly under it with the same
  mix and cap (``decided_by`` is the parent); the root has no decision (its superior decides).

The only randomness is one ``random.Random(seed)`` and every input is walked in sorted order:
the same input and seed give the same results. ``write_member_list`` and ``write_org_list``
write them as the CSV or XLSX files a unit submits (Vietnamese headers).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import openpyxl

from kiemdiem.consolidation import MemberRecord, MemberResult, OrgResult, UnitNode
from kiemdiem.rules.base import BASE_KINDS, LEVEL_RANK, UNCLASSIFIED_KINDS, cap_max_allowed, get_rule_set
from kiemdiem.tabular import format_decimal

DISCIPLINED_SHARE = 0.01
FAILED_SHARE = 0.005
COMPLETED_SHARE = 0.12
PROPOSAL_CHANGED_SHARE = 0.04  # the committee decided differently from the branch's proposal
SELF_HIGHER_SHARE = 0.08  # the member rated themself one level higher
HEAD_ABOVE_SHARE = 0.02  # secretaries left above their branch (a finding, as in real lists)
ORG_DISCIPLINED_SHARE = 0.005

# Score bands of 366/43 (a score is only written for that rule set).
_SCORE_RANGES = {"HTXSNV": (90, 100), "HTTNV": (70, 89), "HTNV": (50, 69), "KHTNV": (20, 49)}

MEMBER_HEADERS = (
    "STT", "Mã đảng viên", "Họ và tên", "Tự xếp loại", "Chi bộ đề xuất", "Quyết định xếp loại",
    "Kỷ luật", "Vắng mặt", "Điểm", "Ghi chú",
)
ORG_HEADERS = ("STT", "Mã đơn vị", "Tên đơn vị", "Tự xếp loại", "Xếp loại", "Kỷ luật")


@dataclass(frozen=True)
class GeneratedResults:
    member_results: tuple[MemberResult, ...]  # sorted by member id
    org_results: tuple[OrgResult, ...]  # sorted by unit code
    breaching_bases: tuple[str, ...]  # base organizations whose member quota was exceeded on purpose


def max_excellent(good_total: int) -> int:
    """The largest HTXSNV count h such that h <= floor(20% of (good_total - h) HTTNV)."""
    h = good_total // 6
    while h > 0 and h > cap_max_allowed(good_total - h):
        h -= 1
    while cap_max_allowed(good_total - h - 1) >= h + 1:
        h += 1
    return h


def _levels_for(rng: random.Random, count: int, breach: bool) -> list[str]:
    """A shuffled list of ``count`` levels with the realistic mix (see the module docstring)."""
    failed = sum(1 for _ in range(count) if rng.random() < FAILED_SHARE)
    completed = sum(1 for _ in range(count - failed) if rng.random() < COMPLETED_SHARE)
    good = count - failed - completed
    allowed = max_excellent(good)
    if breach and good >= 3:
        excellent = min(good - 1, allowed + rng.randint(1, 2))
    else:
        excellent = max(0, allowed - rng.randint(0, 1))
    levels = ["HTXSNV"] * excellent + ["HTTNV"] * (good - excellent) + ["HTNV"] * completed + ["KHTNV"] * failed
    rng.shuffle(levels)
    return levels


def _one_higher(level: str) -> str:
    rank = LEVEL_RANK[level]
    return next((lv for lv, r in LEVEL_RANK.items() if r == rank + 1), level)


def _one_lower(level: str) -> str:
    rank = LEVEL_RANK[level]
    return next((lv for lv, r in LEVEL_RANK.items() if r == rank - 1), level)


def org_results(units: Sequence[UnitNode], rng: random.Random, breach_share: float = 0.05) -> list[OrgResult]:
    """Each committee classifies the organizations directly under it; sorted by unit code."""
    by_code = {u.code: u for u in units}
    children: dict[str, list[str]] = {}
    for node in units:
        if node.parent_code in by_code:
            children.setdefault(node.parent_code, []).append(node.code)
    results: list[OrgResult] = []
    for committee in sorted(children):
        classified = sorted(c for c in children[committee] if by_code[c].kind not in UNCLASSIFIED_KINDS)
        if not classified:
            continue
        levels = _levels_for(rng, len(classified), breach=rng.random() < breach_share)
        for code, level in zip(classified, levels):
            disciplined = rng.random() < ORG_DISCIPLINED_SHARE
            if disciplined:
                level = "KHTNV"
            self_level = _one_higher(level) if rng.random() < SELF_HIGHER_SHARE else level
            results.append(OrgResult(code, level, committee, disciplined, self_level))
    results.sort(key=lambda r: r.unit_code)
    return results


def base_member_results(
    members: Sequence[MemberRecord],
    rng: random.Random,
    rules,
    evaluation_date: dt.date,
    org_level: dict[str, str],
    breach_share: float = 0.05,
) -> tuple[list[MemberResult], bool]:
    """One base organization's results, its members sorted by id, and whether it breaches the cap."""
    results: list[MemberResult] = []
    evaluated = []
    for member in members:
        if rules.member_not_evaluated_reason(member, evaluation_date) is None:
            evaluated.append(member)
        else:
            results.append(MemberResult(member.member_id, member.unit_code, None, None, None, False, 0.0, False, None, "Không đánh giá, xếp loại", True))
    breach = rng.random() < breach_share
    levels = _levels_for(rng, len(evaluated), breach)
    for member, level in zip(evaluated, levels):
        disciplined = rng.random() < DISCIPLINED_SHARE
        if disciplined:
            level = "KHTNV"
        unit_level = org_level.get(member.unit_code)
        if (
            "bi_thu" in member.positions and unit_level is not None
            and LEVEL_RANK[level] > LEVEL_RANK[unit_level] and rng.random() >= HEAD_ABOVE_SHARE
        ):
            level = unit_level
        proposed = level
        if rng.random() < PROPOSAL_CHANGED_SHARE:
            proposed = _one_higher(level) if rng.random() < 0.5 else _one_lower(level)
        self_level = _one_higher(proposed) if rng.random() < SELF_HIGHER_SHARE else proposed
        score = None
        if rules.score_bands:
            low, high = _SCORE_RANGES[level]
            score = float(rng.randint(low, high))
        results.append(
            MemberResult(member.member_id, member.unit_code, self_level, proposed, level, disciplined, 0.0, False, score,
                         "Bị kỷ luật trong năm" if disciplined else "", True)
        )
    return results, breach


def generate_results(
    units: Sequence[UnitNode],
    members: Sequence[MemberRecord],
    seed: int,
    evaluation_date: dt.date,
    *,
    rule_set: str = "124/25",
    breach_share: float = 0.05,
) -> GeneratedResults:
    rng = random.Random(seed)
    rules = get_rule_set(rule_set)
    by_code = {u.code: u for u in units}
    # Organizations first: a secretary's level is bounded by their branch's.
    orgs = org_results(units, rng, breach_share)
    org_level = {r.unit_code: r.level for r in orgs}

    def base_of(code: str) -> str:
        current: str | None = code
        while current is not None and current in by_code:
            if by_code[current].kind in BASE_KINDS:
                return current
            current = by_code[current].parent_code
        return code

    groups: dict[str, list[MemberRecord]] = {}
    for member in sorted(members, key=lambda m: m.member_id):
        groups.setdefault(base_of(member.unit_code), []).append(member)

    results: list[MemberResult] = []
    breaching: list[str] = []
    for base in sorted(groups):
        drawn, breach = base_member_results(groups[base], rng, rules, evaluation_date, org_level, breach_share)
        results.extend(drawn)
        if breach:
            breaching.append(base)
    results.sort(key=lambda r: r.member_id)
    return GeneratedResults(tuple(results), tuple(orgs), tuple(breaching))


def results_of_units(results: Iterable[MemberResult], members: Sequence[MemberRecord], unit_codes: set[str]) -> list[MemberResult]:
    """The results of the members who belong to ``unit_codes`` (their official branch)."""
    placed = {m.member_id: m.unit_code for m in members}
    return [r for r in results if placed.get(r.member_id) in unit_codes]


def submitted_by(results: Iterable[MemberResult], unit_code: str) -> list[MemberResult]:
    """The same results as submitted by ``unit_code`` (a branch's list, or its committee's)."""
    return [replace(r, unit_code=unit_code) for r in results]


def subtree_codes(units: Sequence[UnitNode], root: str) -> set[str]:
    children: dict[str | None, list[str]] = {}
    for node in units:
        children.setdefault(node.parent_code, []).append(node.code)
    out, stack = set(), [root]
    while stack:
        code = stack.pop()
        if code not in out:
            out.add(code)
            stack.extend(children.get(code, ()))
    return out


# --------------------------------------------------------------------------- files


def _level_cell(level: str | None) -> str:
    return level or ""


def _score_cell(score: float | None) -> str:
    if score is None:
        return ""
    return format_decimal(score)


def member_rows(results: Iterable[MemberResult], names: Mapping[str, str], *, decided: bool = True) -> list[list[str]]:
    """Rows of a member classification list. ``decided=False`` leaves the decision column empty
    (a branch's list before its committee decides)."""
    rows = []
    for number, r in enumerate(results, start=1):
        rows.append([
            str(number), r.member_id, names.get(r.member_id, ""), _level_cell(r.self_level), _level_cell(r.proposed_level),
            _level_cell(r.final_level if decided else None), "x" if r.disciplined else "", "x" if r.absent else "",
            _score_cell(r.score), r.note,
        ])
    return rows


def org_rows(results: Iterable[OrgResult], names: Mapping[str, str]) -> list[list[str]]:
    return [
        [str(n), r.unit_code, names.get(r.unit_code, ""), _level_cell(r.self_level), _level_cell(r.level), "x" if r.disciplined else ""]
        for n, r in enumerate(results, start=1)
    ]


def table_bytes(headers: Sequence[str], rows: Sequence[Sequence[str]], suffix: str) -> bytes:
    """The table as a ``.csv`` (UTF-8) or ``.xlsx`` file's bytes."""
    if suffix.lower() == ".xlsx":
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.title = "Xep loai"
        sheet.append(list(headers))
        for row in rows:
            sheet.append(list(row))
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()
    if suffix.lower() != ".csv":
        raise ValueError(f"định dạng '{suffix}' không được hỗ trợ (chỉ .csv hoặc .xlsx)")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def write_member_list(path: Path, results: Iterable[MemberResult], names: Mapping[str, str], *, decided: bool = True) -> Path:
    """Write a member classification list (tong_hop_xep_loai_dang_vien) as CSV or XLSX by suffix."""
    path = Path(path)
    path.write_bytes(table_bytes(MEMBER_HEADERS, member_rows(results, names, decided=decided), path.suffix))
    return path


def write_unit_list(
    path: Path,
    unit_code: str,
    units: Sequence[UnitNode],
    members: Sequence[MemberRecord],
    results: Iterable[MemberResult],
    *,
    subtree: bool = False,
    decided: bool = True,
) -> Path:
    """The classification list ``unit_code`` submits: its own members' results (``subtree``: every
    member below it, as a committee's list), CSV or XLSX by the path's suffix."""
    codes = subtree_codes(units, unit_code) if subtree else {unit_code}
    chosen = submitted_by(results_of_units(results, members, codes), unit_code)
    names = {m.member_id: m.full_name for m in members}
    return write_member_list(path, chosen, names, decided=decided)


def write_org_list(path: Path, results: Iterable[OrgResult], names: Mapping[str, str]) -> Path:
    """Write an organization classification list (ket_qua_xep_loai_chi_bo, quyet_dinh_xep_loai)."""
    path = Path(path)
    path.write_bytes(table_bytes(ORG_HEADERS, org_rows(results, names), path.suffix))
    return path
