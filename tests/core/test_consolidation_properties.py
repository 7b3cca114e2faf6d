"""Properties of the rollup: sums of leaves, incremental == full, order independence; the same
from member lines (``consolidate_lines``) and from previous summaries (``reconsolidate_lines``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiemdiem.consolidation import (
    ConsolidationInput,
    LinesInput,
    MemberRecord,
    MemberResult,
    NeedsFullRun,
    OrgResult,
    Override,
    UnitSummary,
    UnitNode,
    affected_units,
    consolidate,
    consolidate_lines,
    reconsolidate,
    reconsolidate_lines,
    snapshot_hash,
    tally_lines,
    unit_hash,
)
from kiemdiem.rules import LEVELS, get_rule_set
from kiemdiem.rules.base import unit_of_key

EVAL = dt.date(2024, 12, 10)
KINDS = ["cap_tren_co_so", "dang_bo_co_so", "chi_bo_co_so", "dang_bo_bo_phan", "chi_bo_truc_thuoc", "to_dang"]
STATUSES = ["active", "active", "active", "probationary", "exempt", "suspended"]
JOINED = [None, dt.date(2001, 1, 1), dt.date(2024, 6, 10), dt.date(2024, 6, 11), dt.date(2024, 11, 1)]
MAYBE_LEVEL = st.sampled_from([None, *LEVELS])
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def member_result(draw, member_id, unit):
    return MemberResult(
        member_id=member_id,
        unit_code=unit,
        self_level=draw(MAYBE_LEVEL),
        proposed_level=draw(MAYBE_LEVEL),
        final_level=draw(st.sampled_from([None, *LEVELS, "HTXSNV", "HTTNV", "HTTNV"])),
        disciplined=draw(st.booleans()),
        sick_leave_months=draw(st.sampled_from([0.0, 2.0, 3.0, 6.0])),
        absent=draw(st.booleans()),
        score=draw(st.sampled_from([None, 45.0, 50.0, 75.0, 90.0, 99.5])),
        note="",
        has_self_review=draw(st.booleans()),
    )


@st.composite
def org_result(draw, code, unit_codes):
    return OrgResult(
        unit_code=code,
        level=draw(MAYBE_LEVEL),
        decided_by=draw(st.sampled_from([None, "EXTERNAL", *unit_codes])),
        disciplined=draw(st.booleans()),
        self_level=draw(MAYBE_LEVEL),
    )


@st.composite
def unit_data(draw, code, unit_codes, first_member):
    """Members, their results and the organization result of one unit."""
    members, results = [], []
    for i in range(draw(st.integers(0, 6))):
        mid = f"{code}-M{first_member + i}"
        positions = ("bi_thu",) if draw(st.booleans()) and i == 0 else ()
        members.append(MemberRecord(mid, f"Đảng viên {mid}", code, draw(st.sampled_from(STATUSES)),
                                    draw(st.sampled_from(JOINED)), positions))
        if draw(st.integers(0, 4)):
            results.append(draw(member_result(mid, code)))
    org = draw(st.one_of(st.none(), org_result(code, unit_codes)))
    return members, results, org


@st.composite
def tree(draw):
    n = draw(st.integers(1, 12))
    units = [UnitNode("U0", "Gốc", draw(st.sampled_from(KINDS[:3])), None)]
    for i in range(1, n):
        parent = draw(st.integers(0, i - 1))
        units.append(UnitNode(f"U{i}", f"Đơn vị {i}", draw(st.sampled_from(KINDS)), f"U{parent}"))
    return units


@st.composite
def campaign(draw):
    units = draw(tree())
    codes = [u.code for u in units]
    per_unit = {u.code: draw(unit_data(u.code, codes, 0)) for u in units}
    rule_set = draw(st.sampled_from(["132/21", "124/25", "366/43"]))
    return build(units, per_unit, rule_set, ())


def build(units, per_unit, rule_set, overrides):
    members = tuple(m for ms, _, _ in per_unit.values() for m in ms)
    results = tuple(r for _, rs, _ in per_unit.values() for r in rs)
    orgs = tuple(o for _, _, o in per_unit.values() if o is not None)
    return ConsolidationInput(tuple(units), members, results, orgs, rule_set, EVAL, tuple(overrides))


def draw_overrides(draw, inp):
    keys = sorted({f.key for s in consolidate(inp).values() for f in s.findings})
    chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=3)) if keys else []
    return [Override(k, "Ban Tổ chức", "đã xem xét", dt.datetime(2024, 12, 20, 9)) for k in chosen]


def subtree_of(inp):
    """Brute force: unit -> set of units in its subtree (itself included)."""
    parent = {u.code: u.parent_code for u in inp.units}
    out = {code: {code} for code in parent}
    for code in parent:
        current = parent[code]
        while current is not None:
            out[current].add(code)
            current = parent[current]
    return out


@PROFILE
@given(campaign())
def test_totals_at_every_level_equal_the_sum_of_leaves(inp):
    out = consolidate(inp)
    rs = get_rule_set(inp.rule_set)
    final = {r.member_id: r.final_level for r in inp.member_results}
    kinds = {u.code: u.kind for u in inp.units}
    org_level = {o.unit_code: o.level for o in inp.org_results}
    for code, units in subtree_of(inp).items():
        summary = out[code]
        inside = [m for m in inp.members if m.unit_code in units]
        reasons = [rs.member_not_evaluated_reason(m, EVAL) for m in inside]
        evaluated = [m for m, r in zip(inside, reasons) if r is None]
        assert summary.members_total == len(inside)
        assert summary.evaluated == len(evaluated)
        assert summary.not_evaluated == tuple(reasons.count(r) for r in ("exempt", "suspended", "new_member"))
        assert summary.level_counts == tuple(sum(1 for m in evaluated if final.get(m.member_id) == lv) for lv in LEVELS)
        assert len(summary.missing_members) == len(evaluated) - sum(summary.level_counts)
        orgs = [u for u in units if u != code and kinds[u] != "to_dang"]
        assert summary.org_total == len(orgs)
        assert summary.org_level_counts == tuple(sum(1 for u in orgs if org_level.get(u) == lv) for lv in LEVELS)
        assert set(summary.missing_orgs) == {u for u in orgs if org_level.get(u) is None}
        assert {f.unit_code for f in summary.findings} <= units
        data = summary.to_dict()
        assert data["members"]["classified"] + data["members"]["missing"] == data["members"]["evaluated"]
        if summary.unit.kind in ("dang_bo_co_so", "chi_bo_co_so"):
            breach = summary.level_counts[0] > summary.level_counts[1] // 5
            assert (data["members"]["quota"]["status"] != "ok") == breach


@PROFILE
@given(st.data())
def test_reconsolidate_equals_full_consolidation(data):
    units = data.draw(tree())
    codes = [u.code for u in units]
    per_unit = {u.code: data.draw(unit_data(u.code, codes, 0)) for u in units}
    rule_set = data.draw(st.sampled_from(["132/21", "124/25", "366/43"]))
    before_input = build(units, per_unit, rule_set, ())
    before_input = dataclasses.replace(before_input, overrides=tuple(draw_overrides(data.draw, before_input)))
    before = consolidate(before_input)

    changed = set(data.draw(st.lists(st.sampled_from(codes), unique=True, max_size=3)))
    after_units = per_unit | {code: data.draw(unit_data(code, codes, 100)) for code in changed}
    after_input = build(units, after_units, rule_set, ())
    after_input = dataclasses.replace(after_input, overrides=tuple(draw_overrides(data.draw, after_input)))

    expected = consolidate(after_input)
    assert reconsolidate(after_input, before, changed) == expected
    stored = {code: s.to_dict() for code, s in before.items()}
    assert reconsolidate(after_input, stored, changed) == expected
    assert all(UnitSummary.from_dict(s.to_dict()) == s for s in expected.values())


@PROFILE
@given(campaign(), st.randoms(use_true_random=False))
def test_shuffled_input_gives_the_same_snapshot_hash(inp, rnd: random.Random):
    def shuffled(items):
        items = list(items)
        rnd.shuffle(items)
        return tuple(items)

    reordered = dataclasses.replace(
        inp,
        units=shuffled(inp.units),
        members=shuffled(inp.members),
        member_results=shuffled(inp.member_results),
        org_results=shuffled(inp.org_results),
    )
    assert snapshot_hash(consolidate(reordered)) == snapshot_hash(consolidate(inp))


# --------------------------------------------------------------------------- from member lines


def lines_input(inp, members, member_results, org_results, units=None, line_units=None, overrides=None):
    """A LinesInput over ``inp``: a line for each member of ``line_units`` (default: all units)."""
    rs = get_rule_set(inp.rule_set)
    final = {r.member_id: r.final_level for r in inp.member_results}
    wanted = None if line_units is None else set(line_units)
    lines = {}
    for m in inp.members:
        if wanted is None or m.unit_code in wanted:
            line = (m.member_id, m.full_name, final.get(m.member_id), rs.member_not_evaluated_reason(m, inp.evaluation_date))
            lines.setdefault(m.unit_code, []).append(line)
    return LinesInput(
        tuple(inp.units if units is None else units), {code: tally_lines(code, found) for code, found in lines.items()}, tuple(members), tuple(member_results), tuple(org_results),
        inp.rule_set, inp.evaluation_date, tuple(inp.overrides if overrides is None else overrides),
    )


def examined(draw, inp, expected, among=None):
    """Members a member rule reported in ``expected`` (all the store must read in full), plus a
    random few more; and their results."""
    reported = {f.member_id for s in expected.values() for f in s.findings if f.member_id}
    pool = [m for m in inp.members if among is None or m.unit_code in among]
    extra = set(draw(st.lists(st.sampled_from([m.member_id for m in pool]), max_size=4))) if pool else set()
    chosen = [m for m in pool if m.member_id in reported | extra]
    ids = {m.member_id for m in chosen}
    return chosen, [r for r in inp.member_results if r.member_id in ids]


@PROFILE
@given(st.data())
def test_consolidate_lines_equals_full_consolidation(data):
    inp = data.draw(campaign())
    inp = dataclasses.replace(inp, overrides=tuple(draw_overrides(data.draw, inp)))
    expected = consolidate(inp)
    members, results = examined(data.draw, inp, expected)
    assert consolidate_lines(lines_input(inp, members, results, inp.org_results)) == expected
    # Every member examined: the same again.
    assert consolidate_lines(lines_input(inp, inp.members, inp.member_results, inp.org_results)) == expected


@PROFILE
@given(campaign())
def test_canonical_json_is_the_hashed_text(inp):
    for summary in consolidate(inp).values():
        assert unit_hash(summary) == unit_hash(summary.to_dict())
        assert json.loads(summary.canonical_json()) == json.loads(json.dumps(summary.to_dict()))


def _in_tree(org, codes):
    """Committees are units of the tree in the store (a foreign key): no outside committee."""
    return dataclasses.replace(org, decided_by=org.decided_by if org.decided_by in codes else None)


@PROFILE
@given(st.data())
def test_reconsolidate_lines_equals_full_consolidation(data):
    units = data.draw(tree())
    codes = [u.code for u in units]
    parent = {u.code: u.parent_code for u in units}

    def with_committees_in_tree(per_unit):
        return {c: (ms, rs, None if o is None else _in_tree(o, codes)) for c, (ms, rs, o) in per_unit.items()}

    per_unit = with_committees_in_tree({u.code: data.draw(unit_data(u.code, codes, 0)) for u in units})
    rule_set = data.draw(st.sampled_from(["132/21", "124/25", "366/43"]))
    before_input = build(units, per_unit, rule_set, ())
    before_input = dataclasses.replace(before_input, overrides=tuple(draw_overrides(data.draw, before_input)))
    before = consolidate(before_input)

    changed = set(data.draw(st.lists(st.sampled_from(codes), unique=True, max_size=3)))
    after_units = per_unit | with_committees_in_tree({code: data.draw(unit_data(code, codes, 100)) for code in changed})
    after_input = build(units, after_units, rule_set, ())
    after_input = dataclasses.replace(after_input, overrides=tuple(draw_overrides(data.draw, after_input)))
    expected = consolidate(after_input)

    # What the store seeds: changed units, the committees of their results (before and after),
    # the units of overridden findings; then every ancestor.
    seeds = set(changed)
    for code in changed:
        for summary in (before[code], expected[code]):
            if summary.own_result is not None and summary.own_result.decided_by:
                seeds.add(summary.own_result.decided_by)
    seeds |= {unit_of_key(o.finding_key) for o in (*before_input.overrides, *after_input.overrides)}
    affected = affected_units(units, seeds)

    decided = {o.unit_code for o in after_input.org_results if o.decided_by in affected}
    partial_units = [u for u in units if u.code in affected or parent[u.code] in affected or u.code in decided]
    orgs = [o for o in after_input.org_results if o.unit_code in affected or o.decided_by in affected]
    members, results = examined(data.draw, after_input, expected, among=affected)
    partial = lines_input(after_input, members, results, orgs, units=partial_units, line_units=affected)
    stored = {code: before[code].to_dict() for code in affected}  # as the store keeps them

    assert reconsolidate_lines(partial, stored, affected) == {code: expected[code] for code in affected}
    assert {code: s for code, s in before.items() if code not in affected} == {
        code: s for code, s in expected.items() if code not in affected
    }


def test_reconsolidate_lines_refuses_summaries_of_another_tree():
    units = [UnitNode("R", "Gốc", "dang_bo_co_so", None), UnitNode("B", "Chi bộ", "chi_bo_truc_thuoc", "R")]
    inp = ConsolidationInput(tuple(units), (), (), (), "124/25", EVAL)
    before = consolidate(inp)
    moved = [units[0], UnitNode("B", "Chi bộ", "chi_bo_truc_thuoc", None)]
    partial = lines_input(dataclasses.replace(inp, units=tuple(moved)), (), (), (), units=moved)
    with pytest.raises(NeedsFullRun):
        reconsolidate_lines(partial, before, {"R", "B"})
    with pytest.raises(NeedsFullRun):
        reconsolidate_lines(lines_input(inp, (), (), ()), {"B": before["B"]}, {"R", "B"})
