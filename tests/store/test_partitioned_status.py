"""Status and notice planning by partitions give exactly what the whole-tree computation gives.

The campaign is the ``khoi`` preset (~370 units, ~5,000 members) under the Hà Tĩnh plan, with
some deliveries in (on time and late, per unit and per member). Partitions are made small
(a few hundred members) so that the tree is cut into many of them, and a cut falls inside a
base organization's subtree, between a unit and its parent. Compared: every unit's rows
(state, counts, missing items in order, subtree counts), the subtree roll-up, the state
counts; the notices planned (every column but ids); and the per-phase progress.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import pytest
from sqlalchemy import select

from kiemdiem import steps
from kiemdiem.plan import load_plan
from kiemdiem.settings import reminder_settings
from kiemdiem.status import STATE_NAMES
from kiemdiem.store.models import Notice
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.queries import (
    PartitionedStatus,
    campaign_status,
    load_members,
    load_units,
    member_counts,
    partition_units,
)
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.synth import generate
from tests.support import PLANS, ict

PLAN = PLANS / "KH-DUK-HT-2022.yaml"
SETUP_AT = ict(2022, 11, 20)
SMALL = 300  # members per partition: the khoi is cut into a few dozen partitions
INSTANTS = {
    "reminder-morning": ict(2022, 11, 28, 8),
    "reminders-and-escalations": ict(2022, 12, 6, 8),
    "ladder": ict(2022, 12, 12, 9),
}


def _khoi(store, tmp_path, *campaigns: str):
    """The khoi org in each campaign, with the same deliveries: per-unit and per-member items,
    on time (30/11) and late (03/12), and a second version of some."""
    plan = load_plan(PLAN)
    files = generate("khoi", 1, tmp_path / "org", campaign_year=plan.year)
    with store.uow() as uow:
        for campaign in campaigns:
            create_campaign(uow, plan, campaign, SETUP_AT)
            import_organization(uow, campaign, files.units, files.members, SETUP_AT)
        uow.commit()
    with store.uow() as uow:
        units = load_units(uow, campaigns[0])
        members = load_members(uow, campaigns[0])
    branches = [u.code for u in units if u.kind in ("chi_bo_co_so", "chi_bo_truc_thuoc")]
    by_unit: dict[str, list[str]] = {}
    for m in members:
        if m.status in ("active", "probationary"):
            by_unit.setdefault(m.unit_code, []).append(m.code)
    deliveries = []
    for i, code in enumerate(branches):
        if i % 4 == 0:
            deliveries += [(code, "bao_cao_kiem_diem_tap_the", None, ict(2022, 11, 30, 10)), (code, "bien_ban_hoi_nghi", None, ict(2022, 12, 3, 9))]
        if i % 5 == 1:
            deliveries += [(code, "ban_kiem_diem_ca_nhan", m, ict(2022, 11, 28, 9) + dt.timedelta(days=j % 5)) for j, m in enumerate(by_unit.get(code, [])[::2])]
        if i % 7 == 3:
            deliveries.append((code, "du_thao_bao_cao_kiem_diem", None, ict(2022, 11, 25, 14)))
            deliveries.append((code, "du_thao_bao_cao_kiem_diem", None, ict(2022, 11, 27, 14)))  # a second version
    with store.uow() as uow:
        for campaign in campaigns:
            for code, doc, member, at in deliveries:
                record_submission(
                    uow, store.blobs, plan, campaign, code, doc,
                    [IncomingFile(f"{doc}.pdf", data=f"%PDF {code} {doc} {member} {at}".encode())], at, "web", member_code=member,
                    phase_id="chuan_bi_chi_bo" if doc == "du_thao_bao_cao_kiem_diem" else "chi_bo_kiem_diem",
                )
        uow.commit()
    return plan


def _notices(store, campaign: str) -> list[tuple]:
    with store.uow() as uow:
        return sorted(
            uow.session.execute(
                select(Notice.recipient, Notice.recipient_name, Notice.kind, Notice.step, Notice.item_key, Notice.unit_id.is_(None),
                       Notice.phase_id, Notice.doc_type, Notice.member_id.is_(None))
                .where(Notice.campaign_id == campaign)
            ).all()
        )


def test_partitions_cut_inside_subtrees(store, tmp_path):
    _khoi(store, tmp_path, "k")
    with store.uow() as uow:
        units = load_units(uow, "k")
        counts = member_counts(uow, "k")
    parts = partition_units(units, counts, SMALL)
    assert len(parts) > 10 and [u for p in parts for u in p] == units
    assert all(sum(1 + counts.get(u.id, 0) for u in p) <= SMALL or len(p) == 1 for p in parts)
    # Some partition starts below its first unit's parent: a cut inside a subtree.
    starts = {p[0].code for p in parts}
    assert any(u.parent_code is not None and u.code in starts for u in units)


@pytest.mark.parametrize("now", list(INSTANTS.values()), ids=list(INSTANTS))
def test_partitioned_status_is_the_whole_status(store, tmp_path, now):
    plan = _khoi(store, tmp_path, "k")
    for subtree_of in (None, "DBK-CS001"):
        with store.uow() as uow:
            whole = campaign_status(uow, plan, "k", now, subtree_of=subtree_of, partitioned=False)
            parted = campaign_status(uow, plan, "k", now, subtree_of=subtree_of, partitioned=True, max_members=SMALL)
        assert isinstance(parted, PartitionedStatus) and not isinstance(whole, PartitionedStatus)
        if subtree_of is None:
            assert parted.partitions > 10
        assert list(parted.units) == list(whole.units) and parted.units == whole.units
        assert parted.count_states() == whole.count_states()
        assert sum(len(r.missing) for rows in whole.by_unit.values() for r in rows) > 0
        # Every unit's rows, missing items and subtree counts included; then random access.
        assert list(parted.by_unit) == list(whole.by_unit)
        for code, rows in parted.by_unit.items():
            assert rows == whole.by_unit[code], code
        for code in reversed(list(whole.units)[::37]):
            assert parted.for_unit(code) == whole.for_unit(code)
        assert dict(parted.subtree) == whole.subtree
        for code in whole.units:
            for phase_id in [p.id for p in plan.phases] + ["*"]:
                assert parted.subtree_percent(code, phase_id) == whole.subtree_percent(code, phase_id), (code, phase_id)
        root = next(iter(whole.units))
        assert whole.subtree[root]["*"][0] > 0


def test_large_tree_is_computed_by_partitions(store, tmp_path, monkeypatch):
    """Choosing by size: above the threshold, ``campaign_status`` goes by partitions."""
    plan = _khoi(store, tmp_path, "k")
    monkeypatch.setattr("kiemdiem.store.queries.WHOLE_TREE_MAX_MEMBERS", 1000)
    monkeypatch.setattr("kiemdiem.steps.WHOLE_TREE_MAX_MEMBERS", 1000)
    with store.uow() as uow:
        assert isinstance(campaign_status(uow, plan, "k", INSTANTS["ladder"]), PartitionedStatus)
        # A subtree under the threshold is computed whole.
        assert not isinstance(campaign_status(uow, plan, "k", INSTANTS["ladder"], subtree_of="DBK-CS001"), PartitionedStatus)
    assert steps.tree_is_large(store, "k")


@pytest.mark.parametrize("now", [INSTANTS["reminder-morning"], INSTANTS["reminders-and-escalations"]], ids=["reminders", "escalations"])
def test_partitioned_planning_gives_the_whole_trees_notices(store, tmp_path, now):
    plan = _khoi(store, tmp_path, "whole", "parted", "fanned")
    open_ids = steps.open_phase_ids(plan, now)
    settings = reminder_settings()
    whole = steps.plan_reminders(store, plan, "whole", now, open_ids, partitioned=False)
    whole += steps.escalate_overdue(store, plan, "whole", now, open_ids, partitioned=False)
    parted = sum(
        steps.plan_partitioned(store, plan, "parted", now, set(open_ids), kinds, settings, max_members=SMALL)
        for kinds in (steps.REMINDER, steps.ESCALATION)
    )
    assert whole > 1000 and parted == whole
    assert _notices(store, "parted") == _notices(store, "whole")
    # Again: nothing new (idempotent), by partitions or whole.
    assert steps.plan_reminders(store, plan, "parted", now, open_ids, partitioned=True) == 0
    assert steps.escalate_overdue(store, plan, "parted", now, open_ids, partitioned=False) == 0
    # The fan-out's batches (plan_units) give them too.
    split = steps.split_tree(store, "fanned", 3)
    fanned = sum(steps.plan_units(store, plan, "fanned", now, open_ids, roots=batch) for batch in split["batches"])
    fanned += steps.plan_units(store, plan, "fanned", now, open_ids, units=split["rest"])
    assert fanned == whole and _notices(store, "fanned") == _notices(store, "whole")


def _progress_from_whole(plan, status, phase_ids):
    """``steps.progress`` as it was computed from the whole status."""
    out = []
    for phase in plan.phases:
        if phase.id not in phase_ids:
            continue
        states = {s: 0 for s in STATE_NAMES}
        required = present = 0
        overdue = []
        for code, rows in status.by_unit.items():
            for row in rows:
                if row.phase_id != phase.id:
                    continue
                states[row.state] += 1
                required += row.required
                present += row.present
                if row.state == "overdue":
                    overdue.append({"unit": code, "name": status.units[code].name, "missing": len(row.missing), "present": row.present, "required": row.required})
        if sum(states.values()):
            percent = 100.0 if required == 0 else round(100.0 * present / required, 1)
            out.append(asdict(steps.PhaseProgress(phase.id, phase.name, phase.deadline.isoformat(), sum(states.values()), states, percent, overdue)))
    return out


def test_progress_from_set_based_counts(store, tmp_path):
    """``steps.progress`` counts items in SQL: the same figures and overdue units as from the whole status."""
    plan = _khoi(store, tmp_path, "k")
    now = INSTANTS["ladder"]
    open_ids = steps.open_phase_ids(plan, now)
    with store.uow() as uow:
        whole = campaign_status(uow, plan, "k", now, partitioned=False)
    expected = _progress_from_whole(plan, whole, set(open_ids))
    assert any(row["overdue"] for row in expected)
    assert steps.progress(store, plan, "k", now, open_ids) == expected
    for at in INSTANTS.values():
        with store.uow() as uow:
            whole = campaign_status(uow, plan, "k", at, partitioned=False)
        assert steps.progress(store, plan, "k", at) == _progress_from_whole(plan, whole, {p.id for p in plan.phases})


def test_partitioned_status_is_lazy_one_partition_at_a_time(store, tmp_path):
    plan = _khoi(store, tmp_path, "k")
    with store.uow() as uow:
        parted = campaign_status(uow, plan, "k", INSTANTS["ladder"], partitioned=True, max_members=SMALL)
    # Read after the unit of work is closed: partitions are recomputed in their own sessions.
    seen = set()
    for code in parted.units:
        parted.for_unit(code)
        seen.add(parted._cached[0])
    assert seen == set(range(parted.partitions))
    assert isinstance(parted.now, dt.datetime)
