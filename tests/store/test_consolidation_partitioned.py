"""A full run in parts (``consolidate_campaign(part_members=...)``) equals the run in one piece.

The ``khoi`` preset, imported twice into one store (SQLite and PostgreSQL): campaign ``whole``
is consolidated in one piece, campaign ``parts`` in parts forced small (a few dozen members, so
that base organizations are cut, their branches in parts and the base organization above them).
Every unit's version, content hash and payload must be the same, and so the snapshot hash and the
findings, including the 20% cap of committees that decide across parts (routed above the parts)
and the member cap of a base organization cut into parts. Then a late branch: the incremental
run on the partitioned campaign equals a full recompute, and a full rerun in parts makes nothing new.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from kiemdiem.consolidation import OrgResult, consolidate, snapshot_hash, unit_hash
from kiemdiem.store import snapshots as snapshots_module
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.results import record_results
from kiemdiem.store.snapshots import consolidate_campaign, latest_snapshots, load_consolidation_input
from kiemdiem.synth import generate
from kiemdiem.synth_results import generate_results, results_of_units
from tests.support import command_shell, ict

START = ict(2023, 12, 1, 9)
RESULTS_AT = ict(2023, 12, 8, 9)
FIRST_RUN = ict(2023, 12, 10, 9)
PART_MEMBERS = 60


@pytest.fixture(scope="module")
def khoi_files(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("khoi") / "org"
    generate("khoi", 3, out)
    return out


def _setup(store, plan, campaign_id: str, files: Path, late: set[str]):
    with store.uow() as uow:
        create_campaign(uow, plan, campaign_id, START)
        import_organization(uow, campaign_id, files / "units.csv", files / "members.csv", START)
        uow.commit()
    with store.uow() as uow:
        base = load_consolidation_input(uow, plan, campaign_id, START)
    generated = generate_results(base.units, base.members, seed=5, evaluation_date=plan.evaluation_date, rule_set=plan.rule_set)
    orgs = _with_crossing_committee(base, list(generated.org_results))
    held = {id(r) for r in results_of_units(generated.member_results, base.members, late)}
    with store.uow() as uow:
        record_results(uow, plan, campaign_id, RESULTS_AT, [r for r in generated.member_results if id(r) not in held], orgs)
        uow.commit()
    return base, generated


def _with_crossing_committee(base, orgs: list[OrgResult]) -> list[OrgResult]:
    """One branch decides (as a committee) on branches in other base organizations, beyond its
    20% cap: its quota counts organizations in several parts."""
    branches = sorted(u.code for u in base.units if u.kind == "chi_bo_truc_thuoc")
    committee = branches[0]
    others = [c for c in branches if c.split("-")[:-1] != committee.split("-")[:-1]][:6]
    decided = {code: level for code, level in zip(others, ["HTXSNV", "HTXSNV", "HTTNV", "HTTNV", "HTTNV", "HTNV"])}
    out = []
    for r in orgs:
        if r.unit_code in decided:
            r = dataclasses.replace(r, level=decided[r.unit_code], decided_by=committee, disciplined=False)
        out.append(r)
    return out


def _late_branch(base) -> str:
    sizes: dict[str, int] = {}
    for m in base.members:
        sizes[m.unit_code] = sizes.get(m.unit_code, 0) + 1
    return sorted(u.code for u in base.units if u.kind == "chi_bo_truc_thuoc" and sizes.get(u.code, 0) >= 5)[7]


def _stored(store, campaign_id: str) -> dict[str, dict]:
    with store.uow() as uow:
        return latest_snapshots(uow, campaign_id)


def test_a_full_run_in_parts_equals_the_run_in_one_piece(store, plan_187, khoi_files):
    base, generated = _setup(store, plan_187, "whole", khoi_files, set())
    late = _late_branch(base)
    base_p, _ = _setup(store, plan_187, "parts", khoi_files, {late})
    # "whole" has every result; "parts" lacks the late branch's until later.
    whole = consolidate_campaign(store, plan_187, "whole", FIRST_RUN, reason="r", part_members=0)
    assert whole.parts == 0
    parted = consolidate_campaign(store, plan_187, "parts", FIRST_RUN, reason="r", part_members=PART_MEMBERS)
    assert parted.mode == "full" and parted.parts > 10
    one_piece = consolidate_campaign(store, plan_187, "parts", FIRST_RUN, reason="r", part_members=0)
    assert not one_piece.units_updated, "the run in one piece disagrees with the run in parts"

    # In parts == in one piece, unit by unit: payload, hash, version (a third campaign would do the
    # same; here the stored parts are checked against the pure consolidation of the same input).
    with store.uow() as uow:
        inp = load_consolidation_input(uow, plan_187, "parts", FIRST_RUN)
    expected = consolidate(inp)
    stored = _stored(store, "parts")
    assert set(stored) == set(expected)
    for code, summary in expected.items():
        assert stored[code]["version"] == 1
        assert stored[code]["content_hash"] == unit_hash(summary), code
        assert json.dumps(stored[code]["payload"], sort_keys=True) == json.dumps(summary.to_dict(), sort_keys=True), code
    assert snapshot_hash({c: s["payload"] for c, s in stored.items()}) == snapshot_hash(expected)
    assert parted.units_updated == snapshots_module._depth_order(expected, {c: s.unit.parent_code for c, s in expected.items()})

    # The committee deciding across parts: its cap is reported, at the committee.
    committee = sorted(u.code for u in base.units if u.kind == "chi_bo_truc_thuoc")[0]
    caps = [f for f in stored[committee]["payload"]["findings"] if f["rule"] == "cap_organizations"]
    assert [f["data"]["committee"] for f in caps] == [committee]
    assert stored[committee]["payload"]["organizations"]["quota"]["scope"] == "committee"
    # Base organizations cut into parts still count their member cap over the whole base.
    assert any(s["payload"]["members"]["quota"]["scope"] == "base_organization" for s in stored.values())

    # "whole" (everything recorded at once) in one piece equals "parts" once the late branch is in.
    branch_results = results_of_units(generated.member_results, base.members, {late})
    at = FIRST_RUN + dt.timedelta(days=1)
    with store.uow() as uow:
        changed = record_results(uow, plan_187, "parts", at, branch_results, ())
        uow.commit()
    incremental = consolidate_campaign(store, plan_187, "parts", at, changed_units=changed, reason="late")
    assert incremental.mode == "incremental"
    assert late in incremental.units_updated
    after = _stored(store, "parts")
    with store.uow() as uow:
        full = consolidate(load_consolidation_input(uow, plan_187, "parts", at))
    assert {c: s["content_hash"] for c, s in after.items()} == {c: unit_hash(s) for c, s in full.items()}
    whole_stored = _stored(store, "whole")
    assert {c: s["content_hash"] for c, s in after.items()} == {c: s["content_hash"] for c, s in whole_stored.items()}
    # A full rerun in parts finds nothing new; one in one piece neither.
    again = consolidate_campaign(store, plan_187, "parts", at, changed_units=None, part_members=PART_MEMBERS)
    assert again.mode == "full" and not again.units_updated
    assert not consolidate_campaign(store, plan_187, "parts", at, changed_units=None, part_members=0).units_updated


def test_a_rerun_in_parts_after_a_change_gives_the_versions_and_diff_of_a_run_in_one_piece(store, plan_187, khoi_files):
    base, generated = _setup(store, plan_187, "a", khoi_files, set())
    _setup(store, plan_187, "b", khoi_files, set())
    consolidate_campaign(store, plan_187, "a", FIRST_RUN, part_members=0)
    consolidate_campaign(store, plan_187, "b", FIRST_RUN, part_members=PART_MEMBERS)
    # A committee's decision changes and a branch's members are re-classified.
    branch = _late_branch(base)
    changed_members = [
        dataclasses.replace(r, final_level="HTXSNV", proposed_level="HTXSNV")
        for r in results_of_units(generated.member_results, base.members, {branch})
    ]
    org = next(r for r in generated.org_results if r.unit_code == branch)
    at = FIRST_RUN + dt.timedelta(days=2)
    runs = {}
    for campaign_id, part_members in (("a", 0), ("b", PART_MEMBERS)):
        with store.uow() as uow:
            record_results(uow, plan_187, campaign_id, at, changed_members, [dataclasses.replace(org, level="HTXSNV")])
            uow.commit()
        runs[campaign_id] = consolidate_campaign(store, plan_187, campaign_id, at, changed_units=None, reason="lại",
                                                 part_members=part_members)
    a, b = runs["a"], runs["b"]
    assert b.parts > 1
    assert a.units_updated == b.units_updated and a.versions == b.versions and a.units_updated
    assert a.diff == b.diff and a.diff_text == b.diff_text
    assert len(a.outbox_ids) == len(b.outbox_ids) > 0
    sa, sb = _stored(store, "a"), _stored(store, "b")
    assert {c: (s["version"], s["content_hash"]) for c, s in sa.items()} == {c: (s["version"], s["content_hash"]) for c, s in sb.items()}


def test_split_routes_committees_that_decide_across_parts_above_them():
    U = snapshots_module._UnitRow
    units = [U(1, "R", "R", "cap_tren_co_so", None), U(2, "A", "A", "dang_bo_co_so", "R"), U(3, "B", "B", "dang_bo_co_so", "R"),
             U(4, "A1", "A1", "chi_bo_truc_thuoc", "A"), U(5, "A2", "A2", "chi_bo_truc_thuoc", "A"),
             U(6, "B1", "B1", "chi_bo_truc_thuoc", "B")]
    paths = {"R": "/R/", "A": "/R/A/", "B": "/R/B/", "A1": "/R/A/A1/", "A2": "/R/A/A2/", "B1": "/R/B/B1/"}
    members = {4: 5, 5: 5, 6: 5}
    split = snapshots_module._split_parts(units, members, paths, {"A": {"A1", "A2"}, "R": {"A", "B"}}, 10)
    assert split.parts == [["A"], ["B"]] and split.upper == ["R"]
    # A1 decides on B1 (another part): A1 goes above the parts, with A; A2 stays a part.
    split = snapshots_module._split_parts(units, members, paths, {"A1": {"B1"}, "R": {"A", "B"}}, 10)
    assert split.upper == ["R", "A", "A1"] and split.forced == {"A1"}
    assert split.parts == [["A2", "B"]]


def test_cli_prints_the_root_of_a_campaign_consolidated_in_parts(store, plan_187, khoi_files):
    from typer.testing import CliRunner

    from kiemdiem.cli.consolidate_cmd import register
    from kiemdiem.store.snapshots import root_units

    base, _ = _setup(store, plan_187, "cli", khoi_files, set())
    consolidate_campaign(store, plan_187, "cli", FIRST_RUN, part_members=PART_MEMBERS)
    with store.uow() as uow:
        roots = root_units(uow, "cli")
        assert set(latest_snapshots(uow, "cli", roots)) == set(roots)
    done = CliRunner().invoke(command_shell(register), ["consolidate", "--campaign", "cli", "--at", "10/12/2023 10:00", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["run"]["mode"] == "unchanged"
    assert [u["code"] for u in data["units"]] == roots
    assert data["units"][0]["summary"]["members"]["total"] == len(base.members)
