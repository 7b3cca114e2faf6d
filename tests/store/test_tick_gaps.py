"""Ticks more than a day apart: an escalation step that came due while no tick ran is still sent.
A phase is worked on until a working day after its last escalation step; the first tick after that
window, when the one before it was inside, works on the phase once more (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from kiemdiem import steps
from kiemdiem.reminders import overdue_working_days, phase_is_open
from kiemdiem.store.models import Notice
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.ticks import finish_tick
from tests.support import ict, write_small_org

PHASE = "chi_bo_kiem_diem"  # deadline 05/12/2023; escalation after 2 and 5 working days


def _campaign(store, plan, tmp_path):
    with store.uow() as uow:
        create_campaign(uow, plan, "c187", ict(2023, 11, 20, 8))
        import_organization(uow, "c187", *write_small_org(tmp_path / "org"), ict(2023, 11, 20, 8))
        uow.commit()


def _first_closed_morning(plan) -> dt.datetime:
    day = ict(2023, 12, 6, 8)
    while phase_is_open(plan, plan.phase(PHASE), day):
        day += dt.timedelta(days=1)
    return day


def test_the_last_step_is_sent_by_the_first_tick_after_a_gap(store, plan_187, tmp_path):
    _campaign(store, plan_187, tmp_path)
    before = ict(2023, 12, 7, 8)  # 2 working days late: steps 0 and 1 due
    assert PHASE in steps.phases_to_tick(store, plan_187, "c187", before)
    steps.escalate_overdue(store, plan_187, "c187", before, [PHASE])
    finish_tick(store, "c187", before, {})
    after = _first_closed_morning(plan_187)  # no tick in between: the server was down
    assert overdue_working_days(plan_187, plan_187.phase(PHASE), after) > 5
    assert PHASE not in steps.open_phase_ids(plan_187, after)
    assert PHASE in steps.phases_to_tick(store, plan_187, "c187", after)  # once more, for the step it missed
    steps.escalate_overdue(store, plan_187, "c187", after, steps.phases_to_tick(store, plan_187, "c187", after))
    with store.uow() as uow:
        stepped = set(uow.session.scalars(select(Notice.step).where(Notice.phase_id == PHASE, Notice.kind == "escalation")))
    # Step 1 (to the root) adds nothing for branches directly under the root: step 0 told that office.
    assert stepped == {0, 2}
    finish_tick(store, "c187", after, {})
    later = after + dt.timedelta(days=1)
    assert PHASE not in steps.phases_to_tick(store, plan_187, "c187", later)  # only once


def test_a_first_tick_long_after_a_phase_does_not_wake_it(store, plan_187, tmp_path):
    _campaign(store, plan_187, tmp_path)
    assert PHASE not in steps.phases_to_tick(store, plan_187, "c187", _first_closed_morning(plan_187))
