"""A tree consolidated in parts: each subtree on its own (``consolidate_lines(..., part=True)``),
then the units above them rolled up from the parts' root summaries (``rollup_lines``). For random
trees, results and cuts, the parts and the top equal the consolidation of the whole tree."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiemdiem.consolidation import NeedsFullRun, consolidate, consolidate_lines, rollup_lines, unit_hash
from tests.core.test_consolidation_properties import PROFILE, campaign, lines_input


def _cut(inp, upper_seed: set[str]):
    """(upper units, part roots, unit -> its part root or None when upper). The upper units are
    the root and the ancestors of ``upper_seed``; a part is the subtree of a child of an upper unit."""
    parent = {u.code: u.parent_code for u in inp.units}
    upper = set()
    for code in upper_seed | {u.code for u in inp.units if u.parent_code is None}:
        while code is not None and code not in upper:
            upper.add(code)
            code = parent[code]
    part_of = {}
    for u in inp.units:
        code, chain = u.code, []
        while code is not None and code not in upper:
            chain.append(code)
            code = parent[code]
        part_of[u.code] = chain[-1] if chain else None
    roots = sorted({p for p in part_of.values() if p is not None})
    return upper, roots, part_of


def _committees_in_their_part(inp, part_of):
    """A committee is a unit of the tree; one below the top decides only inside its own part."""
    codes = {u.code for u in inp.units}
    orgs = []
    for o in inp.org_results:
        by = o.decided_by
        if by is not None and (by not in codes or (part_of[by] is not None and part_of[by] != part_of[o.unit_code])):
            by = None
        orgs.append(dataclasses.replace(o, decided_by=by))
    return dataclasses.replace(inp, org_results=tuple(orgs))


def _by_part(inp, part_of, part):
    """The input of one part (``part``: its root), or of the top (``part`` None)."""
    units = {u.code for u in inp.units if part_of[u.code] == part}
    members = [m for m in inp.members if m.unit_code in units]
    ids = {m.member_id for m in members}
    results = [r for r in inp.member_results if r.member_id in ids]
    if part is not None:
        orgs = [o for o in inp.org_results if o.unit_code in units]
        return lines_input(inp, members, results, orgs, units=[u for u in inp.units if u.code in units], line_units=units)
    # The top: its units, their children, and the units its committees decided.
    nodes = set(units) | {u.code for u in inp.units if u.parent_code in units}
    orgs = [o for o in inp.org_results if o.unit_code in nodes or o.decided_by in units]
    nodes |= {o.unit_code for o in orgs}
    return lines_input(inp, members, results, orgs, units=[u for u in inp.units if u.code in nodes], line_units=units)


@PROFILE
@given(data=st.data())
def test_parts_rolled_up_equal_the_whole(data):
    inp = data.draw(campaign())
    known = {m.member_id for m in inp.members}
    inp = dataclasses.replace(inp, member_results=tuple(r for r in inp.member_results if r.member_id in known))
    codes = [u.code for u in inp.units]
    upper, roots, part_of = _cut(inp, set(data.draw(st.lists(st.sampled_from(codes), max_size=3))))
    inp = _committees_in_their_part(inp, part_of)
    whole = consolidate(inp)

    parts = {}
    for root in roots:
        parts.update(consolidate_lines(_by_part(inp, part_of, root), part=True))
    top = rollup_lines(_by_part(inp, part_of, None), {r: parts[r] for r in roots}, upper)

    assert set(parts) | set(top) == set(whole)
    for code, summary in {**parts, **top}.items():
        assert summary == whole[code], code
        assert unit_hash(summary) == unit_hash(whole[code])


def test_rollup_without_a_part_summary_needs_a_full_run():
    from tests.core.test_consolidation import scenario  # a small hand-built tree

    inp = scenario("132/21")
    whole = consolidate(inp)
    roots = [u.code for u in inp.units if u.parent_code is None]
    kids = [u.code for u in inp.units if u.parent_code in roots]
    assert kids, "the scenario has units below its root"
    top = lines_input(inp, (), (), inp.org_results, units=[u for u in inp.units if u.code in set(roots) | set(kids)], line_units=roots)
    with pytest.raises(NeedsFullRun):
        rollup_lines(top, {c: whole[c] for c in kids[1:]}, roots)
