"""An escalation step adds nothing for an address that an earlier step of the ladder already
reached about the same unit and phase: that address is not told again (pure planning).

The Hà Tĩnh ladder (KH-DUK-HT-2022): step 0 to the parent, step 1 (2 working days) to the root,
step 2 (5 working days) to the Ban Tổ chức's mailbox. For a chi bộ cơ sở directly under the Khối
the parent is the root: step 1 would repeat step 0 to the same office, with the same list. For a
chi bộ trực thuộc two levels down, step 1 is the first time the root hears of it.
"""

from __future__ import annotations

import datetime as dt

import pytest

from kiemdiem.plan import load_plan, parse_plan
from kiemdiem.reminders import RecipientDirectory, overdue_working_days, plan_notices
from kiemdiem.status import CampaignStatus, Item, UnitInfo, UnitPhaseStatus
from kiemdiem.tabular import fold
from tests.support import PLANS, ict

ROOT = "btc@khoi.example.vn"
MAILBOX = "buixuandung@hatinh.dcs.vn"
ESCALATION = frozenset({"escalation"})

HATINH_UNITS = {
    "KHOI": UnitInfo(1, "KHOI", "Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh", "cap_tren_co_so", None, (ROOT,)),
    "CS1": UnitInfo(2, "CS1", "Chi bộ Sở Tư pháp", "chi_bo_co_so", "KHOI", ("cs1@example.vn",)),
    "DB1": UnitInfo(3, "DB1", "Đảng bộ Sở Y tế", "dang_bo_co_so", "KHOI", ("db1@example.vn",)),
    "CB1": UnitInfo(4, "CB1", "Chi bộ Văn phòng Sở Y tế", "chi_bo_truc_thuoc", "DB1", ("cb1@example.vn",)),
}


@pytest.fixture(scope="module")
def hatinh():
    return load_plan(PLANS / "KH-DUK-HT-2022.yaml")


def _late(plan, phase_id: str, codes: list[str], units: dict[str, UnitInfo], now: dt.datetime) -> CampaignStatus:
    phase = plan.phase(phase_id)
    rows = {
        code: [UnitPhaseStatus(code, phase.id, phase.deadline, "overdue", 1, 0, 0,
                               missing=[Item(code, phase.id, "bien_ban_hoi_nghi", None, None, True)])]
        for code in codes
    }
    return CampaignStatus(now=now, units=units, by_unit=rows)


def _planned(plan, units, codes, now, phase_id="chi_bo_kiem_diem", member_emails=None) -> set[tuple[str, str, int]]:
    directory = RecipientDirectory(plan, units, member_emails or {})
    notices = plan_notices(plan, _late(plan, phase_id, codes, units, now), directory, now, kinds=ESCALATION)
    return {(n.recipient.email, n.item.unit_code, n.step) for n in notices}


def test_a_unit_under_the_root_is_not_escalated_twice_to_the_roots_office(hatinh):
    now = ict(2022, 12, 8, 8)  # Thu: 5 working days after Thu 01/12/2022, every step due
    assert overdue_working_days(hatinh, hatinh.phase("chi_bo_kiem_diem"), now) == 5
    assert _planned(hatinh, HATINH_UNITS, ["CS1", "CB1"], now) == {
        (ROOT, "CS1", 0),  # the parent is the root: step 1 (to: root) would say it again
        ("db1@example.vn", "CB1", 0),
        (ROOT, "CB1", 1),  # two levels down: the root hears of it first at step 1
        (MAILBOX, "CS1", 2),
        (MAILBOX, "CB1", 2),
    }


def test_what_a_tick_plans_is_never_taken_back_by_a_later_one(hatinh):
    """Every tick plans again every step due so far (the store drops those already planned): a
    later tick must plan a superset of an earlier one's, or a notice planned before a crash would
    have no twin after it, and the dedup would depend on which tick ran."""
    days = [ict(2022, 12, d, 8) for d in (2, 5, 6, 7, 8, 9)]
    planned = [_planned(hatinh, HATINH_UNITS, ["CS1", "CB1"], now) for now in days]
    for earlier, later in zip(planned, planned[1:]):
        assert earlier <= later
    assert planned[0] == {(ROOT, "CS1", 0), ("db1@example.vn", "CB1", 0)}
    assert planned[1] == planned[0] | {(ROOT, "CB1", 1)}


def test_a_step_to_the_same_office_and_new_addresses_goes_to_the_new_ones_only(hatinh):
    """The mailbox step names the root's address too: only the address not yet told gets step 2."""
    text = (PLANS / "KH-DUK-HT-2022.yaml").read_text(encoding="utf-8")
    assert f"emails: [{MAILBOX}]" in text
    plan = parse_plan(text.replace(f"emails: [{MAILBOX}]", f"emails: [{ROOT}, {MAILBOX}]"), source="ht with the root's address")
    assert _planned(plan, HATINH_UNITS, ["CS1", "CB1"], ict(2022, 12, 8, 8)) == {
        (ROOT, "CS1", 0), ("db1@example.vn", "CB1", 0), (ROOT, "CB1", 1),
        (MAILBOX, "CS1", 2), (MAILBOX, "CB1", 2),
    }


def test_two_addresses_of_one_office_are_each_told_once():
    """The root's office has two addresses, one of which is also the parent's: each is told once."""
    plan = load_plan(PLANS / "KH-DUK-HT-2022.yaml")
    units = dict(HATINH_UNITS)
    units["KHOI"] = UnitInfo(1, "KHOI", units["KHOI"].name, "cap_tren_co_so", None, (ROOT, "vp@khoi.example.vn"))
    units["DB1"] = UnitInfo(3, "DB1", "Đảng bộ Sở Y tế", "dang_bo_co_so", "KHOI", ("db1@example.vn", ROOT))
    got = _planned(plan, units, ["CB1"], ict(2022, 12, 8, 8))
    assert got == {
        ("db1@example.vn", "CB1", 0), (ROOT, "CB1", 0),  # the parent's office: ROOT reads its mail too
        ("vp@khoi.example.vn", "CB1", 1),  # step 1 adds the root's other address, not ROOT again
        (MAILBOX, "CB1", 2),
    }


def test_the_root_is_not_told_twice_of_its_own_lateness(hatinh):
    phase = hatinh.phase("khoi_xep_loai_co_so")
    now = ict(2023, 1, 3, 8)
    while overdue_working_days(hatinh, phase, now) < 5:
        now += dt.timedelta(days=1)
    assert _planned(hatinh, HATINH_UNITS, ["KHOI"], now, phase_id=phase.id) == {(ROOT, "KHOI", 0), (MAILBOX, "KHOI", 2)}


def test_a_plan_that_names_the_same_destination_again_repeats_it_on_purpose(plan_187):
    """187-KH/ĐU sends steps 1 and 2 both to the root: its note calls step 2 "Nhắc lần cuối Thường
    trực Đảng ủy Sở". For a branch directly under the Đảng ủy Sở, step 1 repeats step 0 (the parent
    is the root) and is dropped; step 2 is the plan's own second call, and stays."""
    units = {
        "SCT": UnitInfo(1, "SCT", "Đảng bộ Sở Công Thương", "dang_bo_co_so", None, ("vanphong@sct.example.vn",)),
        "VP2": UnitInfo(2, "VP2", "Chi bộ Văn phòng 2", "chi_bo_truc_thuoc", "SCT", ("vp2@sct.example.vn",)),
    }
    now = ict(2023, 12, 12, 8)  # 5 working days after Tue 05/12/2023
    assert overdue_working_days(plan_187, plan_187.phase("chi_bo_kiem_diem"), now) == 5
    got = _planned(plan_187, units, ["VP2"], now, member_emails={fold("Lê Xuân Tiến"): "tien@sct.example.vn"})
    assert got == {("vanphong@sct.example.vn", "VP2", 0), ("tien@sct.example.vn", "VP2", 0), ("vanphong@sct.example.vn", "VP2", 2)}
