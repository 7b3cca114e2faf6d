"""Organization import on SQLite and PostgreSQL: all or nothing, every bad row named, re-import a no-op."""

from __future__ import annotations

import openpyxl
import pytest
from sqlalchemy import select

from kiemdiem.errors import InvalidInput
from kiemdiem.store.models import Member, Unit
from kiemdiem.store.organization import create_campaign, import_organization
from tests.support import SMALL_MEMBERS, SMALL_UNITS, ict, table_counts, write_small_org

NOW = ict(2023, 11, 20, 9)


@pytest.fixture
def campaign(store, plan_187):
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", NOW)
        uow.commit()
    return "c187"


def do_import(store, units, members):
    with store.uow() as uow:
        report = import_organization(uow, "c187", units, members, NOW)
        uow.commit()
    return report


def test_import_builds_tree_and_members(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path)
    report = do_import(store, units, members)
    assert (report.units_added, report.members_added) == (4, 7)
    with store.uow() as uow:
        rows = {u.code: u for u in uow.session.scalars(select(Unit))}
        assert rows["VP1"].path == "/SCT/VP1/" and rows["VP1"].depth == 1
        assert rows["VP1"].parent_id == rows["SCT"].id
        assert rows["VP2"].emails == ["vp2@sct.example.vn", "bithu.vp2@sct.example.vn"]
        lan = uow.session.scalar(select(Member).where(Member.member_code == "DV007"))
        assert lan.temporary_unit_id == rows["VP2"].id
        chin = uow.session.scalar(select(Member).where(Member.member_code == "DV001"))
        assert chin.positions == ["dang_uy_vien", "bi_thu"]
        assert chin.joined_on.isoformat() == "1995-05-12"
        assert uow.session.scalar(select(Member.status).where(Member.member_code == "DV005")) == "probationary"


def test_reimport_same_files_changes_nothing(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path)
    do_import(store, units, members)
    before = table_counts(store)
    report = do_import(store, units, members)
    assert not report.changed
    after = table_counts(store)
    assert before == after


def test_reimport_updates_changed_rows_and_keeps_absent_ones(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path)
    do_import(store, units, members)
    changed_members = SMALL_MEMBERS.replace("Trần Thị Hoa,VP1", "Trần Thị Hoa,VP2").replace(
        "DV007,Hoàng Thị Lan,KC,,2012-11-20,active,VP2,\n", ""
    )
    units2, members2 = write_small_org(tmp_path / "v2", members=changed_members)
    report = do_import(store, units2, members2)
    assert (report.members_added, report.members_updated) == (0, 1)
    with store.uow() as uow:
        assert uow.session.scalar(select(Member).where(Member.member_code == "DV007")) is not None


def test_vietnamese_headers_and_xlsx(store, campaign, tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mã đơn vị", "Tên đơn vị", "Loại", "Đơn vị cấp trên", "Email"])
    sheet.append(["SCT", "Đảng bộ Sở Công Thương", "Đảng bộ cơ sở", None, "vp@sct.example.vn"])
    sheet.append(["VP1", "Chi bộ Văn phòng 1", "Chi bộ trực thuộc", "SCT", None])
    units = tmp_path / "don_vi.xlsx"
    book.save(units)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mã đảng viên", "Họ và tên", "Chi bộ", "Email", "Ngày vào Đảng", "Trạng thái", "Sinh hoạt tạm thời", "Chức vụ"])
    sheet.append(["DV001", "Nguyễn Sỹ Chín", "VP1", None, "12/05/1995", "Chính thức", None, "Bí thư"])
    sheet.append(["DV002", "Trần Thị Hoa", "VP1", None, None, "Miễn công tác và sinh hoạt đảng", None, None])
    members = tmp_path / "dang_vien.xlsx"
    book.save(members)
    report = do_import(store, units, members)
    assert (report.units_added, report.members_added) == (2, 2)
    with store.uow() as uow:
        assert uow.session.scalar(select(Member.status).where(Member.member_code == "DV002")) == "exempt"
        assert uow.session.scalar(select(Member.positions).where(Member.member_code == "DV001")) == ["bi_thu"]


BAD_UNITS = [
    ("unknown parent", "XX,Chi bộ X,chi_bo_truc_thuoc,NOPE,\n", 6, "parent", "không tồn tại"),
    ("unknown kind", "XX,Chi bộ X,chi_bo_la,SCT,\n", 6, "kind", "loại tổ chức không hợp lệ"),
    ("invalid email", "XX,Chi bộ X,chi_bo_truc_thuoc,SCT,not-an-email\n", 6, "emails", "email không hợp lệ"),
    ("duplicate code", "VP1,Chi bộ trùng,chi_bo_truc_thuoc,SCT,\n", 6, "code", "bị lặp"),
    ("bad code", "X Y/Z,Chi bộ X,chi_bo_truc_thuoc,SCT,\n", 6, "code", "mã đơn vị không hợp lệ"),
    ("empty name", "XX,,chi_bo_truc_thuoc,SCT,\n", 6, "name", "thiếu tên"),
    ("self parent", "XX,Chi bộ X,chi_bo_truc_thuoc,XX,\n", 6, "parent", "chính nó"),
]


@pytest.mark.parametrize("label, extra, row, field, reason", BAD_UNITS, ids=[b[0] for b in BAD_UNITS])
def test_bad_unit_row_is_refused_and_nothing_stored(store, campaign, tmp_path, label, extra, row, field, reason):
    units, members = write_small_org(tmp_path, units=SMALL_UNITS + extra)
    before = table_counts(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    problem = next(p for p in info.value.problems if p.field == field)
    assert problem.row == row and reason in problem.reason and problem.source == str(units)
    assert table_counts(store) == before


def test_cycle_is_reported(store, campaign, tmp_path):
    cyclic = SMALL_UNITS + "A1,Đảng bộ bộ phận A,dang_bo_bo_phan,B1,\nB1,Đảng bộ bộ phận B,dang_bo_bo_phan,A1,\n"
    units, members = write_small_org(tmp_path, units=cyclic)
    before = table_counts(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    cycle = [p for p in info.value.problems if "vòng lặp" in p.reason]
    assert cycle and cycle[0].field == "parent" and cycle[0].row in (6, 7)
    assert "A1" in cycle[0].reason and "B1" in cycle[0].reason
    assert table_counts(store) == before


BAD_MEMBERS = [
    ("member on non-branch", "DV100,Ngô Văn A,SCT,,,active,,\n", "unit", "không phải chi bộ"),
    ("unknown unit", "DV100,Ngô Văn A,NOPE,,,active,,\n", "unit", "không tồn tại"),
    ("bad date", "DV100,Ngô Văn A,VP1,,31/02/2001,active,,\n", "joined_on", "ngày không hợp lệ"),
    ("duplicate member", "DV001,Nguyễn Sỹ Chín,VP1,,,active,,\n", "member_id", "bị lặp"),
    ("bad status", "DV100,Ngô Văn A,VP1,,,nghi_huu,,\n", "status", "trạng thái không hợp lệ"),
    ("bad email", "DV100,Ngô Văn A,VP1,a@@b,,active,,\n", "email", "email không hợp lệ"),
    ("bad position", "DV100,Ngô Văn A,VP1,,,active,,tong_bi_thu\n", "positions", "chức vụ không hợp lệ"),
    ("unknown temporary unit", "DV100,Ngô Văn A,VP1,,,active,NOPE,\n", "temporary_unit", "không tồn tại"),
    ("temporary same as unit", "DV100,Ngô Văn A,VP1,,,active,VP1,\n", "temporary_unit", "trùng"),
    ("missing name", "DV100,,VP1,,,active,,\n", "full_name", "thiếu họ và tên"),
]


@pytest.mark.parametrize("label, extra, field, reason", BAD_MEMBERS, ids=[b[0] for b in BAD_MEMBERS])
def test_bad_member_row_is_refused_and_nothing_stored(store, campaign, tmp_path, label, extra, field, reason):
    units, members = write_small_org(tmp_path, members=SMALL_MEMBERS + extra)
    before = table_counts(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    problem = next(p for p in info.value.problems if p.field == field)
    assert problem.row == 9 and reason in problem.reason and problem.source == str(members)
    assert table_counts(store) == before


def test_every_bad_row_is_reported_at_once(store, campaign, tmp_path):
    units, members = write_small_org(
        tmp_path,
        units=SMALL_UNITS + "XX,Chi bộ X,chi_bo_la,SCT,\n",
        members=SMALL_MEMBERS + "DV100,Ngô Văn A,SCT,,,active,,\nDV101,Ngô Văn B,VP1,,99/99/2001,active,,\n",
    )
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    fields = sorted((p.source.endswith("units.csv"), p.row, p.field) for p in info.value.problems)
    assert fields == [(False, 9, "unit"), (False, 10, "joined_on"), (True, 6, "kind")]


def test_missing_required_column(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path, units="code,name,parent\nSCT,Đảng bộ,\n")
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    assert any(p.field == "kind" and p.row == 1 and "thiếu cột" in p.reason for p in info.value.problems)


def test_unknown_column(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path, units=SMALL_UNITS.replace("emails", "ghi_chu_la"))
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    assert any(p.field == "ghi_chu_la" and "không được hỗ trợ" in p.reason for p in info.value.problems)


def test_unsupported_file_type(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path)
    odd = tmp_path / "units.ods"
    odd.write_bytes(units.read_bytes())
    with pytest.raises(InvalidInput) as info:
        do_import(store, odd, members)
    assert "không được hỗ trợ" in str(info.value)
