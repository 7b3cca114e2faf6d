"""A small tree and a one-phase plan whose reminder and escalation days can be worked out by hand."""

from __future__ import annotations

from pathlib import Path

from kiemdiem.plan import parse_plan

# Deadline Tue 05/12/2023. Reminder offsets 3, 1, 0 fall on Thu 30/11, Mon 04/12, Tue 05/12.
# Escalation: step 0 on the first day overdue (Wed 06/12: parent + assigned member), step 1
# after 2 working days (Thu 07/12: grandparent), step 2 after 4 (Mon 11/12: the Khối's mailbox).
ONE_PHASE_PLAN = """
id: test-plan
number: 99-KH/TEST
title: Kế hoạch thử
issuer: Đảng ủy Thử nghiệm
year: 2023
rule_set: "124/25"
reminders:
  offsets_working_days: [3, 1, 0]
escalation:
  - after_working_days: 2
    to: grandparent
  - after_working_days: 4
    to: emails
    emails: [btc@khoi.example.vn]
assignments:
  - person: Trần Văn Giám Sát
    title: Đảng ủy viên
    unit: Chi bộ Hai
    email: giamsat@example.vn
phases:
  - id: hop_chi_bo
    name: Chi bộ họp kiểm điểm
    kind: branch_meeting
    applies_to: [chi_bo_truc_thuoc]
    deadline: {date: "05/12/2023", text: "trước ngày 05/12/2023"}
    documents:
      - {type: bien_ban_hoi_nghi}
      - {type: ban_kiem_diem_ca_nhan, per: member}
"""

UNITS = """code,name,kind,parent,emails
ROOT,Đảng bộ Thử nghiệm,dang_bo_co_so,,root@example.vn
BP,Đảng bộ bộ phận Một,dang_bo_bo_phan,ROOT,bp@example.vn
CB1,Chi bộ Một,chi_bo_truc_thuoc,BP,cb1@example.vn
CB2,Chi bộ Hai,chi_bo_truc_thuoc,BP,cb2@example.vn;cb2b@example.vn
CB3,Chi bộ Ba,chi_bo_truc_thuoc,ROOT,cb3@example.vn
"""

MEMBERS = """member_id,full_name,unit,email,joined_on,status,temporary_unit,positions
M1,Nguyễn Văn Một,CB1,,01/01/2000,active,,bi_thu
M2,Lê Thị Hai,CB2,,01/01/2001,active,,bi_thu
M3,Phạm Văn Ba,CB2,,01/01/2002,exempt,,
M4,Hoàng Văn Bốn,CB3,,01/01/2003,active,,bi_thu
"""


def one_phase_plan():
    return parse_plan(ONE_PHASE_PLAN, source="test-plan.yaml")


def write_tree(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "units.csv").write_text(UNITS, encoding="utf-8")
    (directory / "members.csv").write_text(MEMBERS, encoding="utf-8")
    return directory / "units.csv", directory / "members.csv"


def one_phase_campaign(store, tmp_path: Path, campaign_id: str = "test", plan=None):
    """Campaign ``campaign_id`` on ``plan`` (default ``one_phase_plan``) and the tree of
    ``write_tree``; returns the plan."""
    from kiemdiem.store.organization import create_campaign, import_organization  # noqa: PLC0415
    from tests.support import ict  # noqa: PLC0415

    plan = plan or one_phase_plan()
    units, members = write_tree(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan, campaign_id, ict(2023, 11, 20))
        import_organization(uow, campaign_id, units, members, ict(2023, 11, 20))
        uow.commit()
    return plan
