"""Organization import on SQLite and PostgreSQL: all or nothing, every bad row named, re-import a no-op."""

from __future__ import annotations

import datetime as dt
import unicodedata

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


def test_decomposed_vietnamese_is_stored_precomposed_and_reimports_as_no_change(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path / "nfd", unicodedata.normalize("NFD", SMALL_UNITS), unicodedata.normalize("NFD", SMALL_MEMBERS))
    assert do_import(store, units, members).members_added == 7
    with store.uow() as uow:
        assert uow.session.scalar(select(Unit.name).where(Unit.code == "SCT")) == "Đảng bộ Sở Công Thương"
        assert uow.session.scalar(select(Member.full_name).where(Member.member_code == "DV004")) == "Lê Xuân Tiến"
    before = table_counts(store)
    units, members = write_small_org(tmp_path / "nfc")
    assert not do_import(store, units, members).changed
    assert table_counts(store) == before


def test_reimport_updates_changed_rows_and_keeps_absent_ones(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path)
    do_import(store, units, members)
    changed_members = SMALL_MEMBERS.replace("Trần Thị Hoa,VP1", "Trần Thị Hoa,VP2").replace(
        "DV007,Hoàng Thị Lan,KC,,2012-11-20,active,VP2,\n", ""
    )
    units2, members2 = write_small_org(tmp_path / "v2", members=changed_members)
    report = do_import(store, units2, members2)
    assert (report.members_added, report.members_updated) == (0, 1)
    assert report.members_not_in_file == 1  # DV007 is kept, and the import says so (both import paths)
    with store.uow() as uow:
        assert uow.session.scalar(select(Member).where(Member.member_code == "DV007")) is not None
    assert do_import(store, units, members).members_not_in_file == 0


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
    ("bad date", "DV100,Ngô Văn A,VP1,,31/02/2001,active,,\n", "joined_on", "ngày này không có thật"),
    ("duplicate member", "DV001,Nguyễn Sỹ Chín,VP1,,,active,,\n", "member_id", "bị lặp"),
    ("bad status", "DV100,Ngô Văn A,VP1,,,nghi_huu,,\n", "status", "trạng thái không hợp lệ"),
    ("bad email", "DV100,Ngô Văn A,VP1,a@@b,,active,,\n", "email", "email không hợp lệ"),
    ("bad position", "DV100,Ngô Văn A,VP1,,,active,,tong_bi_thu\n", "positions", "chức vụ không hợp lệ"),
    ("a job title as a position", "DV100,Ngô Văn A,VP1,,,active,,\"Bí thư Chi bộ, Trưởng phòng\"\n", "positions",
     "chức vụ không hợp lệ 'Trưởng phòng': cột này chỉ nhận các chức vụ trong Đảng sau"),
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
    # Not one "chi bộ … không tồn tại" per member: the members are fine, the units file is not read.
    assert not any("không tồn tại" in p.reason for p in info.value.problems)
    assert any("chưa kiểm tra chi bộ của từng đảng viên vì tệp đơn vị chưa đọc được" in p.reason for p in info.value.problems)
    assert len(info.value.problems) == 2
    assert table_counts(store)["members"] == 0


def test_problems_name_each_files_columns_as_it_spells_them(store, campaign, tmp_path):
    """An English header is named in English, a Vietnamese one in Vietnamese; a coded cell's
    message lists the Vietnamese names it accepts."""
    units = "Mã đơn vị,Tên đơn vị,Loại,Đơn vị cấp trên\nSCT,Đảng bộ Sở,Đảng bộ cơ sở,\nCB1,Chi bộ 1,chi bo,SCT\n"
    members = "member_id,full_name,unit,joined_on\nDV1,Tên,CB1,31/02/2020\nDV2,Tên,CB9,\n"
    units_path, members_path = write_small_org(tmp_path, units=units, members=members)
    before = table_counts(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units_path, members_path)
    shown = sorted(str(p).replace(f"{tmp_path}/", "") for p in info.value.problems)
    assert shown[0].startswith("members.csv, dòng 2, cột 'joined_on': ")
    assert shown[1].startswith("members.csv, dòng 2, cột 'unit': chi bộ 'CB1' không tồn tại")  # its row in units.csv is refused
    assert shown[2].startswith("members.csv, dòng 3, cột 'unit': chi bộ 'CB9' không tồn tại")
    assert shown[3].startswith("units.csv, dòng 3, cột 'Loại': loại tổ chức không hợp lệ 'chi bo' (chỉ nhận Đảng bộ cấp trên cơ sở (cap_tren_co_so); ")
    assert "Chi bộ trực thuộc (chi_bo_truc_thuoc)" in shown[3]
    assert table_counts(store) == before


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


# The bulk path reads a well-formed CSV column by column and checks a whole column at once;
# anything unusual (blank or ragged lines, a bad cell) goes row by row. Both must agree.

MEMBER_FIELDS = ("full_name", "unit", "email", "joined_on", "status", "temporary_unit", "positions")


def stored_members(store) -> dict[str, tuple]:
    with store.uow() as uow:
        code_of = dict(uow.session.execute(select(Unit.id, Unit.code)).all())
        return {
            m.member_code: (
                m.full_name, code_of[m.unit_id], m.email, m.joined_on, m.status,
                code_of.get(m.temporary_unit_id), tuple(m.positions),
            )
            for m in uow.session.scalars(select(Member))
        }


MEMBER_VARIANTS = {
    "columns reordered": """unit,member_id,positions,full_name,status,email,temporary_unit,joined_on
VP1,DV001,dang_uy_vien;bi_thu,Nguyễn Sỹ Chín,active,chin@sct.example.vn,,12/05/1995
VP1,DV002,,Trần Thị Hoa,active,,,03/02/2010
VP1,DV003,,Lê Văn Nam,exempt,,,2001-07-19
VP2,DV004,pho_bi_thu,Lê Xuân Tiến,active,tien@sct.example.vn,,1998-09-02
VP2,DV005,,Phạm Minh Đức,probationary,,,2023-09-01
KC,DV006,bi_thu,Nguyễn Trọng Thức,active,thuc@sct.example.vn,,2005-01-10
KC,DV007,,Hoàng Thị Lan,active,,VP2,2012-11-20
""",
    "vietnamese headers and values, padded cells": """Mã đảng viên,Họ và tên,Chi bộ,Email,Ngày vào Đảng,Trạng thái,Sinh hoạt tạm thời,Chức vụ
 DV001 , Nguyễn Sỹ Chín ,VP1, chin@sct.example.vn ,1995-05-12,Chính thức,,"Đảng ủy viên, Bí thư"
DV002,Trần Thị Hoa,VP1,,03.02.2010,,,
DV003,Lê Văn Nam,VP1,,19-07-2001,Miễn sinh hoạt,,
DV004,Lê Xuân Tiến,VP2,tien@sct.example.vn,02/09/1998,Đang sinh hoạt,,Phó Bí thư
DV005,Phạm Minh Đức,VP2,,2023-9-1,Dự bị,,
DV006,Nguyễn Trọng Thức, KC ,thuc@sct.example.vn,10/01/2005,active,,bi_thu
DV007,Hoàng Thị Lan,KC,,20/11/2012,active, VP2 ,
""",
    "blank and ragged lines, a date as Excel's day number": """member_id,full_name,unit,email,joined_on,status,temporary_unit,positions
DV001,Nguyễn Sỹ Chín,VP1,chin@sct.example.vn,12/05/1995,active,,dang_uy_vien;bi_thu

DV002,Trần Thị Hoa,VP1,,40212
,,,,,,,
DV003,Lê Văn Nam,VP1,,2001-07-19,exempt,,
DV004,Lê Xuân Tiến,VP2,tien@sct.example.vn,1998-09-02,active,,pho_bi_thu,
DV005,Phạm Minh Đức,VP2,,2023-09-01,probationary,,
DV006,Nguyễn Trọng Thức,KC,thuc@sct.example.vn,2005-01-10,active,,bi_thu
DV007,Hoàng Thị Lan,KC,,2012-11-20,active,VP2,
""",
    "semicolon delimited, a blank row": """member_id;full_name;unit;email;joined_on;status;temporary_unit;positions
DV001;Nguyễn Sỹ Chín;VP1;chin@sct.example.vn;12/05/1995;active;;"dang_uy_vien,bi_thu"
DV002;Trần Thị Hoa;VP1;;03/02/2010;active;;
DV003;Lê Văn Nam;VP1;;2001-07-19;exempt;;
;;;;;;;
DV004;Lê Xuân Tiến;VP2;tien@sct.example.vn;1998-09-02;active;;pho_bi_thu
DV005;Phạm Minh Đức;VP2;;2023-09-01;probationary;;
DV006;Nguyễn Trọng Thức;KC;thuc@sct.example.vn;2005-01-10;active;;bi_thu
DV007;Hoàng Thị Lan;KC;;2012-11-20;active;VP2;
""",
    "a form's title block, an STT column and a row numbering the columns": """ĐẢNG BỘ SỞ CÔNG THƯƠNG,,,,ĐẢNG CỘNG SẢN VIỆT NAM,,,,
DANH SÁCH ĐẢNG VIÊN NĂM 2023,,,,,,,,
,,,,,,,,
STT,Mã đảng viên,Họ và tên,Chi bộ,Email,Ngày vào Đảng,Trạng thái,Sinh hoạt tạm thời,Chức vụ
(1),(2),(3),(4),(5),(6),(7),(8),(9)
1,DV001,Nguyễn Sỹ Chín,VP1,chin@sct.example.vn,12/05/1995,Đảng viên chính thức,,dang_uy_vien;bi_thu
2,DV002,Trần Thị Hoa,VP1,,03/02/2010,active,,
3,DV003,Lê Văn Nam,VP1,,2001-07-19,exempt,,
4,DV004,Lê Xuân Tiến,VP2,tien@sct.example.vn,1998-09-02,active,,pho_bi_thu
5,DV005,Phạm Minh Đức,VP2,,2023-09-01,Đảng viên dự bị,,
6,DV006,Nguyễn Trọng Thức,KC,thuc@sct.example.vn,2005-01-10,active,,bi_thu
7,DV007,Hoàng Thị Lan,KC,,2012-11-20,active,VP2,
""",
    "positions as member lists write them": """Mã đảng viên,Họ và tên,Chi bộ,Email,Ngày vào Đảng,Trạng thái,Sinh hoạt tạm thời,Chức vụ
DV001,Nguyễn Sỹ Chín,VP1,chin@sct.example.vn,12/05/1995,active,,"Đảng ủy viên, Bí thư Chi bộ Văn phòng 1"
DV002,Trần Thị Hoa,VP1,,03/02/2010,active,,
DV003,Lê Văn Nam,VP1,,2001-07-19,exempt,,
DV004,Lê Xuân Tiến,VP2,tien@sct.example.vn,1998-09-02,active,,Phó Bí thư chi bộ
DV005,Phạm Minh Đức,VP2,,2023-09-01,probationary,,
DV006,Nguyễn Trọng Thức,KC,thuc@sct.example.vn,2005-01-10,active,,BÍ THƯ CHI BỘ
DV007,Hoàng Thị Lan,KC,,2012-11-20,active,VP2,
""",
    "a total and the signatures under the table": """STT,Mã đảng viên,Họ và tên,Chi bộ,Email,Ngày vào Đảng,Trạng thái,Sinh hoạt tạm thời,Chức vụ
1,DV001,Nguyễn Sỹ Chín,VP1,chin@sct.example.vn,12/05/1995,active,,dang_uy_vien;bi_thu
2,DV002,Trần Thị Hoa,VP1,,03/02/2010,active,,
3,DV003,Lê Văn Nam,VP1,,2001-07-19,exempt,,
4,DV004,Lê Xuân Tiến,VP2,tien@sct.example.vn,1998-09-02,active,,pho_bi_thu
5,DV005,Phạm Minh Đức,VP2,,2023-09-01,probationary,,
6,DV006,Nguyễn Trọng Thức,KC,thuc@sct.example.vn,2005-01-10,active,,bi_thu
7,DV007,Hoàng Thị Lan,KC,,2012-11-20,active,VP2,
Cộng: 7 đảng viên,,,,,,,,
,,,,,,,,
,,,,,"Hà Nội, ngày 20 tháng 11 năm 2023",,,
,Người lập biểu,,,,T/M ĐẢNG ỦY,,,
,,,,,BÍ THƯ,,,
,Trần Thị Hoa,,,,Nguyễn Sỹ Chín,,,
""",
    # Written with \u escapes: what the office's file holds and nobody sees. Zero-width space and
    # joiner, a byte order mark and a soft hyphen inside cells, no-break spaces, full-width codes,
    # a name typed as combining marks, datetime cells saved with their midnight, and the profile
    # columns of the forms (passed over).
    "the forms' headers, profile columns, invisible and full-width characters": (
        "STT,Mã số đảng viên,Họ và tên đảng viên,Giới tính,Quê quán,Chi bộ sinh hoạt,E-mail,Ngày vào Đảng,Trạng thái,"
        "Sinh hoạt tạm thời,Chức vụ trong Đảng,Số điện thoại,Chữ ký\n"
        "1,DV001\u200b,Nguyễn Sỹ Chín,Nam,Hà Tĩnh,VP1,chin@sct.example.vn\u00a0,12/05/1995 00:00:00,active,,dang_uy_vien;bi_thu,,\n"
        "2,\ufeffDV002,Trần\u00a0Thị Hoa,Nữ,,VP1\u200d,,03/02/2010 00:00:00,active,,,0912 345 678,\n"
        "3,ＤＶ００３,Lê Văn Nam,Nam,,ＶＰ１,,2001-07-19 00:00:00,exempt,,,,\n"
        f"4,DV004,{unicodedata.normalize('NFD', 'Lê Xuân Tiến')},Nam,,VP2,tien@sct.example.vn,1998-09-02,act\u00adive,,pho_bi_thu,,\n"
        "5,DV005,Phạm Minh Đức,Nam,,VP2,,2023-09-01,probationary,,,,\n"
        "6,DV006,Nguyễn Trọng Thức,Nam,,KC,thuc@sct.example.vn,2005-01-10,active,,bi_thu,,\n"
        "7,DV007,Hoàng Thị Lan,Nữ,,KC,,2012-11-20,active,VP2\u200b,,,\n"
    ),
}


@pytest.mark.parametrize("variant", list(MEMBER_VARIANTS))
def test_member_file_variants_store_the_same_members(store, campaign, tmp_path, variant):
    units, members = write_small_org(tmp_path / "canonical")
    do_import(store, units, members)
    expected = stored_members(store)
    assert len(expected) == 7
    with store.engine.begin() as conn:
        conn.execute(Member.__table__.delete())
    units, members = write_small_org(tmp_path / "variant", members=MEMBER_VARIANTS[variant])
    report = do_import(store, units, members)
    assert report.members_added == 7
    assert stored_members(store) == expected
    assert not do_import(store, units, members).changed


def test_a_units_file_with_the_forms_headers_and_invisible_characters_stores_the_same_tree(store, campaign, tmp_path):
    def tree():
        with store.uow() as uow:
            return sorted((u.code, u.name, u.kind, u.path, tuple(u.emails)) for u in uow.session.scalars(select(Unit)))

    units, members = write_small_org(tmp_path / "canonical")
    do_import(store, units, members)
    expected = tree()
    units, members = write_small_org(tmp_path / "form", units=(
        "STT,Mã tổ chức đảng,Tên đơn vị,Loại,Trực thuộc,E-mail,Địa chỉ,Số điện thoại\n"
        "1,SCT,Đảng bộ Sở Công Thương,dang_bo_co_so,,vanphong@sct.example.vn,Hà Tĩnh,\n"
        "2,VP1\u200b,Chi bộ Văn phòng 1,chi_bo_truc_thuoc,SCT\u200b,vp1@sct.example.vn,,\n"
        "3,VP2,Chi bộ Văn phòng 2,chi_bo_truc_thuoc,ＳＣＴ,vp2@sct.example.vn; bithu.vp2@sct.example.vn\u00a0,,\n"
        "4,KC\u00ad,Chi bộ\u00a0Khuyến công,chi_bo_truc_thuoc,\ufeffSCT,kc@sct.example.vn,,\n"
    ))
    assert not do_import(store, units, members).changed
    assert tree() == expected


def test_bad_row_after_blank_line_keeps_its_file_row_number(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path, members=SMALL_MEMBERS + "\n" + "DV100,Ngô Văn A,VP1,,31/02/2001,active,,\n")
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    assert [(p.row, p.field) for p in info.value.problems] == [(10, "joined_on")]
    assert str(info.value.problems[0]) == f"{members}, dòng 10, cột 'joined_on': ngày không hợp lệ '31/02/2001': ngày này không có thật (tháng 2 năm 2001 chỉ có 28 ngày)"


def test_a_repeated_member_id_is_reported_even_when_one_of_its_rows_has_a_bad_cell(store, campaign, tmp_path):
    extra = "DV100,Ngô Văn A,VP1,,31/02/2001,active,,\nDV100,Ngô Văn A,VP1,,01/02/2001,active,,\nDV001,Nguyễn Sỹ Chín,VP1,,bad,active,,\n"
    units, members = write_small_org(tmp_path, members=SMALL_MEMBERS + extra)
    before = table_counts(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    assert [(p.row, p.field) for p in info.value.problems] == [(9, "joined_on"), (10, "member_id"), (11, "joined_on"), (11, "member_id")]
    assert "'DV100' bị lặp (đã có ở dòng 9)" in str(info.value.problems[1])
    assert "'DV001' bị lặp (đã có ở dòng 2)" in str(info.value.problems[3])
    assert table_counts(store) == before


def test_every_bad_cell_of_a_member_file_is_reported_in_file_order(store, campaign, tmp_path):
    extra = (
        "bad id,,VP1,x@,99/99/2001,nghi_huu,,tong_bi_thu\n"
        "DV101,Ngô Văn B,VP1,,2001-02-30,active,,\n"
        "DV001,Nguyễn Sỹ Chín,SCT,,,active,VP1,\n"
    )
    units, members = write_small_org(tmp_path, members=SMALL_MEMBERS + extra)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    assert [(p.row, p.field) for p in info.value.problems] == [
        (9, "member_id"), (9, "full_name"), (9, "email"), (9, "joined_on"), (9, "status"), (9, "positions"),
        (10, "joined_on"),
        (11, "member_id"), (11, "unit"),
    ]
    reasons = [p.reason for p in info.value.problems]
    assert reasons[0] == "mã đảng viên không hợp lệ 'bad id'"
    assert reasons[2] == "email không hợp lệ 'x@'"
    assert reasons[7] == "đảng viên 'DV001' bị lặp (đã có ở dòng 2)"
    assert reasons[8] == "'SCT' là Đảng bộ cơ sở, không phải chi bộ: đảng viên chỉ sinh hoạt ở chi bộ"


@pytest.mark.parametrize("cell, codes", [
    ("Bí thư Chi bộ", ("bi_thu",)),
    ("Bí thư chi ủy", ("bi_thu",)),
    ("Bí thư", ("bi_thu",)),
    # The secretary of a body above the branch does not head it (the head rule, the branch's signer).
    ("Tỉnh ủy viên, Bí thư Đảng ủy Sở", ("cap_uy_vien_cap_tren", "bi_thu_dang_uy")),
    ("Huyện ủy viên", ("cap_uy_vien_cap_tren",)),
    ("Bí thư Đảng bộ bộ phận", ("bi_thu_dang_uy",)),
    ("bi_thu_dang_uy", ("bi_thu_dang_uy",)),
    ("Phó Bí thư Đảng ủy xã", ("pho_bi_thu",)),
    ("Ủy viên BTV Đảng ủy; Thủ trưởng cơ quan, đơn vị", ("uy_vien_ban_thuong_vu", "thu_truong")),
    ("UV BTV", ("uy_vien_ban_thuong_vu",)),
    ("chi_uy_vien, Phó thủ trưởng cơ quan, đơn vị", ("chi_uy_vien", "pho_thu_truong")),
    ("Trưởng phòng", (None,)),
    ("Bí thư Văn phòng", (None,)),
    ("Ủy viên Chi ủy", ("chi_uy_vien",)),
    ("Ủy viên Ban Chấp hành Đảng bộ", ("dang_uy_vien",)),
])
def test_a_position_cell_is_read_as_member_lists_write_it(cell, codes):
    from kiemdiem.org import position_items, position_of  # noqa: PLC0415

    assert tuple(map(position_of, position_items(cell))) == codes


def test_a_row_with_a_bad_cell_has_its_branch_checked_too(store, campaign, tmp_path):
    """Every problem of a row at once: a bad date does not hide a mistyped branch until the date is fixed."""
    extra = ("DV100,Ngô Văn A,VP9,,31/02/2001,active,,\n"            # a bad date, an unknown branch
             "DV101,Ngô Văn B,Chi bộ Khuyến công,x@,,active,SCT,\n"  # a bad email, a branch by its name, a temporary non-branch
             "DV102,Ngô Văn C,VP1,,,active,,\n")
    units, members = write_small_org(tmp_path, members=SMALL_MEMBERS + extra)
    before = table_counts(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    assert [(p.row, p.field) for p in info.value.problems] == [
        (9, "joined_on"), (9, "unit"), (10, "email"), (10, "unit"), (10, "temporary_unit"),
    ]
    reasons = [p.reason for p in info.value.problems]
    assert reasons[1] == "chi bộ 'VP9' không tồn tại"
    assert reasons[3] == "chi bộ 'Chi bộ Khuyến công' không tồn tại: đây là tên của đơn vị có mã 'KC', cột này cần mã đơn vị"
    assert table_counts(store) == before


def test_read_members_agrees_on_the_column_and_row_by_row_paths(tmp_path):
    from kiemdiem.org import MemberRow, read_members  # noqa: PLC0415

    _, members = write_small_org(tmp_path / "good")
    clean = read_members(members)  # no bad cell: checked a column at a time
    assert all(type(m) is MemberRow for m in clean)
    assert clean[0] == MemberRow(2, "DV001", "Nguyễn Sỹ Chín", "VP1", "chin@sct.example.vn", dt.date(1995, 5, 12), "active", None, ("dang_uy_vien", "bi_thu"))
    assert clean[6].temporary_unit == "VP2" and clean[6].email is None and clean[4].status == "probationary"
    _, members = write_small_org(tmp_path / "bad", members=SMALL_MEMBERS + "DV100,Ngô Văn A,VP1,,31/02/2001,active,,\n")
    problems = []
    checked = read_members(members, problems=problems)  # one bad row: checked row by row
    assert checked == clean and [p.row for p in problems] == [9]


def test_reimport_updates_each_changed_field(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path)
    do_import(store, units, members)
    changed = (
        SMALL_MEMBERS.replace("DV002,Trần Thị Hoa,VP1,,03/02/2010,active,,", "DV002,Trần Thị Hoa,VP1,,04/02/2010,active,,")
        .replace("DV003,Lê Văn Nam,VP1,,2001-07-19,exempt,,", "DV003,Lê Văn Nam,VP1,nam@sct.example.vn,2001-07-19,exempt,,")
        .replace("pho_bi_thu", "pho_bi_thu;dang_uy_vien")
        .replace("probationary", "active")
        .replace("active,VP2,", "active,VP1,")
        + "DV008,Đỗ Văn Mới,KC,,,,,\n"
    )
    units2, members2 = write_small_org(tmp_path / "v2", members=changed)
    report = do_import(store, units2, members2)
    assert (report.members_added, report.members_updated) == (1, 5)
    after = stored_members(store)
    assert after["DV002"][3] == dt.date(2010, 2, 4) and after["DV003"][2] == "nam@sct.example.vn"
    assert after["DV004"][6] == ("pho_bi_thu", "dang_uy_vien") and after["DV005"][4] == "active"
    assert after["DV007"][5] == "VP1" and after["DV008"] == ("Đỗ Văn Mới", "KC", None, None, "active", None, ())
    assert not do_import(store, units2, members2).changed


TABLES = {
    "quoted newline and padding": 'a,b,c\n" x ","two\nlines", z \n',
    "blank lines": "a,b,c\n\n1,2,3\n,,\n  ,\t, \n4,5,6\n",
    "ragged": "a,b,c\n1,2\n3,4,5,6\n7,8,9\n",
    "reordered": "c,a,b\n3,1,2\n6,4,5\n",
    "missing column": "b,a\n2,1\n,4\n",
    "header only": "a,b,c\n",
    "columns numbered under the header": "a,b,c\n(1),(2),(3)\n1,2,3\n4,5,6\n",
    "a title block": "DANH SÁCH,,\n,,\na,b,c\n1,x,3\n",
    "a signature block": "a,b,c\n1,x,3\n,,\n,T/M CHI ỦY,\n,BÍ THƯ,\n,Nguyễn Văn A,\n",
    "a signer in the first column": "a,b,c\n1,x,3\nBÍ THƯ,,\nNguyễn Văn A,,\n",
    "a total row with its count in a filled column": "a,b,c\n1,x,3\nTổng cộng,2,\n,T/M CHI ỦY,\n",
}


@pytest.mark.parametrize("name", list(TABLES))
def test_read_columns_is_read_table_transposed(tmp_path, name):
    from kiemdiem.tabular import open_rows, read_columns, read_table  # noqa: PLC0415

    path = tmp_path / "t.csv"
    path.write_text(TABLES[name], encoding="utf-8")
    columns = {"a": [], "b": [], "c": []}
    rows = read_table(path, columns, required={"a"})
    numbers, cells = read_columns(path, columns, required={"a"})
    assert list(numbers) == [r.number for r in rows]
    with open_rows(path, columns, required={"a"}) as streamed:  # the streaming reader agrees
        assert list(streamed) == [(r.number, tuple(r.values.values())) for r in rows]
    assert [list(c) for c in cells] == [[r.values[name] for r in rows] for name in columns]
    if name == "columns numbered under the header":
        assert list(numbers) == [3, 4] and list(cells[0]) == ["1", "4"]
    if name == "a title block":
        assert list(numbers) == [4] and list(cells[2]) == ["3"]
    if name == "a signature block":
        assert list(numbers) == [2] and list(cells[1]) == ["x"]
    if name == "a signer in the first column":  # it fills the required column, not a code column: kept as rows
        assert list(numbers) == [2, 3, 4]
    if name == "a total row with its count in a filled column":  # a total is never a row
        assert list(numbers) == [2]


@pytest.mark.parametrize("name", ["read_table", "read_columns", "open_rows"])
def test_a_signer_in_a_code_column_is_a_footer_but_a_code_after_it_makes_it_rows(tmp_path, name):
    """A code never has a space: "Nguyễn Văn A" under "BÍ THƯ" in the member-id column is the
    footer's; a member id below them makes them rows of the table (reported, never dropped)."""
    from kiemdiem.tabular import open_rows, read_columns, read_table  # noqa: PLC0415

    def numbers(text: str) -> list[int]:
        path = tmp_path / "t.csv"
        path.write_text(text, encoding="utf-8")
        columns, required = {"member_id": [], "b": [], "c": []}, {"member_id"}
        if name == "read_table":
            return [r.number for r in read_table(path, columns, required)]
        if name == "read_columns":
            return list(read_columns(path, columns, required)[0])
        with open_rows(path, columns, required) as rows:
            return [number for number, _ in rows]

    assert numbers("member_id,b,c\nDV1,x,3\nDV2,y,4\nBÍ THƯ,,\nNguyễn Văn A,,\n") == [2, 3]
    assert numbers("member_id,b,c\nDV1,x,3\nBÍ THƯ,,\nNguyễn Văn A,,\nDV2,y,4\n") == [2, 3, 4, 5]
    # A note that starts like a total, in a row of the table, is the row's (its first cell is a code).
    assert numbers("member_id,b,c\nDV1,x,Cộng 5 điểm\nDV2,y,Tổng số 3\n") == [2, 3]


def test_read_table_cells():
    from pathlib import Path  # noqa: PLC0415

    from kiemdiem.tabular import read_table  # noqa: PLC0415

    data = TABLES["quoted newline and padding"].encode() + TABLES["blank lines"].split("\n", 1)[1].encode()
    rows = read_table(Path("t.csv"), {"a": [], "b": [], "c": []}, required={"a"}, data=data)
    assert [(r.number, tuple(r.values.values())) for r in rows] == [
        (2, ("x", "two\nlines", "z")), (4, ("1", "2", "3")), (7, ("4", "5", "6")),
    ]


def _office_form(path, header, rows):
    """An XLSX as offices keep their lists: the two-column document header, the title, a blank
    row, then the table with an STT column; dates as Excel date cells."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["ĐẢNG BỘ SỞ CÔNG THƯƠNG", None, None, "ĐẢNG CỘNG SẢN VIỆT NAM"])
    sheet.append(["CHI BỘ VĂN PHÒNG", None, None, "Hà Nội, ngày 20 tháng 11 năm 2023"])
    sheet.append(["DANH SÁCH"])
    sheet.append([])
    sheet.append(["STT", *header])
    sheet.append(list(range(1, len(header) + 2)))  # the row numbering the columns: 1 2 3 …
    for number, row in enumerate(rows, start=1):
        sheet.append([number, *row])
    book.save(path)
    return path


def test_an_office_form_with_a_title_block_imports_and_names_its_sheet_rows(store, campaign, tmp_path):
    units = _office_form(tmp_path / "don_vi.xlsx", ["Mã đơn vị", "Tên đơn vị", "Loại", "Đơn vị cấp trên"], [
        ["SCT", "Đảng bộ Sở Công Thương", "Đảng bộ cơ sở", None],
        ["VP1", "Chi bộ Văn phòng 1", "Chi bộ trực thuộc", "SCT"],
    ])
    header = ["Mã đảng viên", "Họ và tên", "Chi bộ", "Ngày vào Đảng"]
    bad = _office_form(tmp_path / "sai.xlsx", header, [
        ["DV001", "Nguyễn Sỹ Chín", "VP1", dt.datetime(1995, 5, 12)],
        ["DV002", "Trần Thị Hoa", "VP9", dt.datetime(2010, 2, 3)],
    ])
    before = table_counts(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, bad)
    # The table's header is sheet row 5, its columns numbered on row 6: its second member is on row 8.
    assert [(p.row, p.column, p.field) for p in info.value.problems] == [(8, "Chi bộ", "unit")]
    assert table_counts(store) == before
    good = _office_form(tmp_path / "dang_vien.xlsx", header, [
        ["DV001", "Nguyễn Sỹ Chín", "VP1", dt.datetime(1995, 5, 12)],
        ["DV002", "Trần Thị Hoa", "VP1", 40212],  # a date cell formatted as a number: Excel's day 40212
    ])
    report = do_import(store, units, good)
    assert (report.units_added, report.members_added) == (2, 2)
    assert stored_members(store)["DV002"][:4] == ("Trần Thị Hoa", "VP1", None, dt.date(2010, 2, 3))


def test_a_header_not_found_under_a_title_is_reported_on_the_row_most_like_a_header(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path)
    misnamed = tmp_path / "dang_vien.csv"
    misnamed.write_text(",,,\nDANH SÁCH ĐẢNG VIÊN,,,\nMa so,Ten,Chi bo,Ngay\nDV001,A,VP1,\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, misnamed)
    assert {p.row for p in info.value.problems} == {3}  # not the title on row 2
    assert info.value.problems[0].reason.startswith("không nhận ra dòng tiêu đề trong 15 dòng đầu; dòng 3 giống nhất")
    assert any("thiếu cột bắt buộc" in p.reason for p in info.value.problems)
    assert table_counts(store)["members"] == 0


def test_excel_unicode_text_is_read_and_a_code_page_csv_is_refused_with_how_to_save_it(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path)
    tabbed = tmp_path / "dang_vien.txt"  # Excel: Save As "Unicode Text"
    tabbed.write_bytes(SMALL_MEMBERS.replace(",", "\t").encode("utf-16"))
    assert do_import(store, units, tabbed).members_added == 7
    assert stored_members(store)["DV001"][0] == "Nguyễn Sỹ Chín"
    before = table_counts(store)
    code_page = tmp_path / "dang_vien_ansi.csv"  # Excel: "CSV (Comma delimited)" on a Vietnamese Windows
    code_page.write_bytes(SMALL_MEMBERS.replace("DV007,Hoàng", "DV008,Hoàng").encode("cp1258", errors="replace"))
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, code_page)
    assert [p.reason for p in info.value.problems] == [
        'tệp CSV phải mã hóa UTF-8: trong Excel chọn Lưu thành (Save As) → "CSV UTF-8 (Comma delimited)", hoặc gửi tệp .xlsx'
    ]
    assert table_counts(store) == before


def test_excels_semicolon_csv_with_a_quoted_semicolon_and_a_hidden_first_sheet(store, campaign, tmp_path):
    """Excel quotes a cell holding the separator and ends lines with CRLF (the sniffer gives up on
    such a sample); a hidden sheet is not the one the user sees."""
    units, members = write_small_org(tmp_path)
    semicolon = tmp_path / "don_vi.csv"
    semicolon.write_bytes("\ufeff".encode() + SMALL_UNITS.replace(",", ";").replace(
        "vp2@sct.example.vn;bithu.vp2@sct.example.vn", '"vp2@sct.example.vn;bithu.vp2@sct.example.vn"'
    ).replace("\n", "\r\n").encode())
    book = openpyxl.Workbook()
    book.active.title = "tham chiếu"
    book.active.append(["tham chiếu", "giá trị"])
    book.active.sheet_state = "hidden"
    visible = book.create_sheet("Đảng viên")
    for line in SMALL_MEMBERS.splitlines():
        visible.append(line.split(","))
    workbook = tmp_path / "dang_vien.xlsx"
    book.save(workbook)
    report = do_import(store, semicolon, workbook)
    assert (report.units_added, report.members_added) == (4, 7)
    with store.uow() as uow:
        assert uow.session.scalar(select(Unit.emails).where(Unit.code == "VP2")) == ["vp2@sct.example.vn", "bithu.vp2@sct.example.vn"]


def test_a_branch_given_by_its_name_is_told_its_code(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path, members=SMALL_MEMBERS.replace("DV002,Trần Thị Hoa,VP1,", "DV002,Trần Thị Hoa,Chi bộ Văn phòng 1,"))
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    [problem] = info.value.problems
    assert (problem.row, problem.field) == (3, "unit")
    assert problem.reason == "chi bộ 'Chi bộ Văn phòng 1' không tồn tại: đây là tên của đơn vị có mã 'VP1', cột này cần mã đơn vị"
    assert table_counts(store)["members"] == 0


# A units file may change a stored unit's kind; a branch that still has members cannot stop being one.

def test_a_units_only_reimport_cannot_turn_a_branch_with_members_into_a_non_branch(store, campaign, tmp_path):
    more = SMALL_MEMBERS + "DV008,Đỗ Văn Tám,VP1,,,active,,\nDV009,Đỗ Văn Chín,VP1,,,active,,\n"
    units, members = write_small_org(tmp_path, members=more)
    do_import(store, units, members)
    demoted = SMALL_UNITS.replace("VP1,Chi bộ Văn phòng 1,chi_bo_truc_thuoc", "VP1,Đảng bộ bộ phận Văn phòng 1,dang_bo_bo_phan").replace(
        "VP2,Chi bộ Văn phòng 2,chi_bo_truc_thuoc", "VP2,Đảng bộ bộ phận Văn phòng 2,dang_bo_bo_phan"
    )
    units2, _ = write_small_org(tmp_path / "v2", units=demoted)
    before, kept = table_counts(store), stored_members(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units2, None)
    assert [(p.source, p.row, p.field) for p in info.value.problems] == [(str(units2), 3, "kind"), (str(units2), 4, "kind")]
    assert str(info.value.problems[0]) == (
        f"{units2}, dòng 3, cột 'kind': đơn vị 'VP1' còn 5 đảng viên (DV001, DV002, DV003, …) nên không đổi thành Đảng bộ bộ phận được:"
        " đảng viên chỉ sinh hoạt ở chi bộ; trước hết chuyển họ sang một chi bộ bằng cách nhập tệp đảng viên"
        " (ghi chi bộ mới của họ) cùng với tệp đơn vị"
    )
    assert "'VP2' còn 2 đảng viên (DV004, DV005) và 1 đảng viên sinh hoạt tạm thời (DV007) nên không đổi" in info.value.problems[1].reason
    assert table_counts(store) == before and stored_members(store) == kept
    with store.uow() as uow:
        assert uow.session.scalar(select(Unit.kind).where(Unit.code == "VP1")) == "chi_bo_truc_thuoc"
    # A branch without members may change its kind.
    emptied = SMALL_UNITS + "CB9,Chi bộ 9,chi_bo_truc_thuoc,SCT,\n"
    do_import(store, write_small_org(tmp_path / "v3", units=emptied)[0], None)
    units4, _ = write_small_org(tmp_path / "v4", units=emptied.replace("CB9,Chi bộ 9,chi_bo_truc_thuoc", "CB9,Tổ 9,to_dang"))
    assert do_import(store, units4, None).units_updated == 1


def test_a_branch_may_stop_being_one_when_the_members_file_moves_all_its_members_out(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path)
    do_import(store, units, members)
    demoted = SMALL_UNITS.replace("VP1,Chi bộ Văn phòng 1,chi_bo_truc_thuoc", "VP1,Đảng bộ bộ phận Văn phòng 1,dang_bo_bo_phan")
    # DV001 and DV002 move to KC, DV003 is not in the file: it would be left in VP1.
    partial = "".join(line + "\n" for line in SMALL_MEMBERS.splitlines() if not line.startswith("DV003")).replace(",VP1,", ",KC,")
    units2, members2 = write_small_org(tmp_path / "v2", units=demoted, members=partial)
    before = table_counts(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units2, members2)
    [problem] = info.value.problems
    assert (problem.source, problem.row, problem.field) == (str(units2), 3, "kind")
    assert problem.reason.startswith("đơn vị 'VP1' còn 1 đảng viên (DV003) nên không đổi thành Đảng bộ bộ phận được")
    # A member listed with a bad cell is in the file: it is not one left behind.
    bad_date = SMALL_MEMBERS.replace(",VP1,", ",KC,").replace("2001-07-19", "31/02/2001")
    units3, members3 = write_small_org(tmp_path / "v3", units=demoted, members=bad_date)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units3, members3)
    assert [(p.source, p.row, p.field) for p in info.value.problems] == [(str(members3), 4, "joined_on")]
    # A members file that cannot be read moves no one that is known: its own problem alone.
    units5, members5 = write_small_org(tmp_path / "v5", units=demoted, members="member_id,full_name\nDV001,Nguyễn Sỹ Chín\n")
    with pytest.raises(InvalidInput) as info:
        do_import(store, units5, members5)
    assert [(p.source, p.field) for p in info.value.problems] == [(str(members5), "unit")]
    assert table_counts(store) == before
    units4, members4 = write_small_org(tmp_path / "v4", units=demoted, members=SMALL_MEMBERS.replace(",VP1,", ",KC,"))
    report = do_import(store, units4, members4)
    assert (report.units_updated, report.members_updated) == (1, 3)
    assert {code for code, m in stored_members(store).items() if m[1] == "KC"} == {"DV001", "DV002", "DV003", "DV006", "DV007"}
    assert not do_import(store, units4, members4).changed


def test_a_parent_given_by_its_name_is_told_its_code(store, campaign, tmp_path):
    units, members = write_small_org(tmp_path, units=SMALL_UNITS + "XX,Chi bộ X,chi_bo_truc_thuoc,Đảng bộ Sở Công Thương,\n")
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, members)
    [problem] = info.value.problems
    assert (problem.row, problem.field) == (6, "parent")
    assert problem.reason == "đơn vị cấp trên 'Đảng bộ Sở Công Thương' không tồn tại: đây là tên của đơn vị có mã 'SCT', cột này cần mã đơn vị"
    # A stored unit's name too, in a units-only re-import.
    do_import(store, *write_small_org(tmp_path / "ok"))
    units2, _ = write_small_org(tmp_path / "v2", units=SMALL_UNITS.replace("KC,Chi bộ Khuyến công,chi_bo_truc_thuoc,SCT", "KC,Chi bộ Khuyến công,chi_bo_truc_thuoc,Chi bộ Văn phòng 1").replace("VP1,Chi bộ Văn phòng 1,chi_bo_truc_thuoc,SCT,vp1@sct.example.vn\n", ""))
    with pytest.raises(InvalidInput) as info:
        do_import(store, units2, None)
    assert [p.reason for p in info.value.problems] == [
        "đơn vị cấp trên 'Chi bộ Văn phòng 1' không tồn tại: đây là tên của đơn vị có mã 'VP1', cột này cần mã đơn vị"
    ]


def test_unit_problems_are_listed_in_row_order(store, campaign, tmp_path):
    extra = "XX,Chi bộ X,chi_bo_truc_thuoc,NOPE,\nYY,Chi bộ Y,chi_bo_la,SCT,\nVP1,Chi bộ trùng,chi_bo_truc_thuoc,SCT,\nZZ,,chi_bo_truc_thuoc,SCT,\n"
    units, members = write_small_org(tmp_path, units=SMALL_UNITS + extra)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, None)
    assert [(p.row, p.field) for p in info.value.problems] == [(6, "parent"), (7, "kind"), (8, "code"), (9, "name")]


@pytest.mark.parametrize("text, reason", [
    ("31/02/2023", "ngày không hợp lệ '31/02/2023': ngày này không có thật (tháng 2 năm 2023 chỉ có 28 ngày)"),
    ("30/02/2024", "ngày không hợp lệ '30/02/2024': ngày này không có thật (tháng 2 năm 2024 chỉ có 29 ngày)"),
    ("2001-04-31", "ngày không hợp lệ '2001-04-31': ngày này không có thật (tháng 4 năm 2001 chỉ có 30 ngày)"),
    ("12/13/2023", "ngày không hợp lệ '12/13/2023': không có tháng 13, có vẻ tháng được ghi trước ngày; "
                   "dùng dd/mm/yyyy (ngày trước, tháng sau), ví dụ 13/12/2023"),
    ("00/01/2023", "ngày không hợp lệ '00/01/2023': ngày này không có thật (không có ngày 0)"),
    ("99/99/2001", "ngày không hợp lệ '99/99/2001': ngày này không có thật (không có tháng 99)"),
    ("01/01/0000", "ngày không hợp lệ '01/01/0000': ngày này không có thật (không có năm 0)"),
    ("bad", "ngày không hợp lệ 'bad' (dùng dd/mm/yyyy)"),
    ("2023/02/01", "ngày không hợp lệ '2023/02/01' (dùng dd/mm/yyyy)"),
], ids=lambda value: value if "/" in value and len(value) <= 10 or value in ("bad", "2001-04-31") else "")
def test_an_impossible_date_is_told_apart_from_one_in_another_form(text, reason):
    from kiemdiem.tabular import parse_date  # noqa: PLC0415

    with pytest.raises(ValueError) as info:
        parse_date(text)
    assert str(info.value) == reason


def test_an_unrecognised_header_under_a_title_block_is_reported_at_its_own_row(store, campaign, tmp_path):
    """The office's header names no column the import knows: the errors are about that row (7), said
    to be the likeliest header, not about the title on row 1."""
    units = tmp_path / "u.csv"
    units.write_text(
        "ĐẢNG BỘ TỈNH HÀ TĨNH,,\n,,\nDANH SÁCH TỔ CHỨC ĐẢNG,,\n,,\n(kèm theo công văn số 12),,\n,,\n"
        "Mã ĐVỊ,Tên tổ chức,Trực thuộc\nKHOI,Đảng bộ Khối,\n",
        encoding="utf-8",
    )
    before = table_counts(store)
    with pytest.raises(InvalidInput) as info:
        do_import(store, units, None)
    problems = info.value.problems
    assert {p.row for p in problems} == {7}
    assert problems[0].reason.startswith("không nhận ra dòng tiêu đề trong 15 dòng đầu; dòng 7 giống nhất")
    assert any("Tên tổ chức" in str(p) for p in problems[1:])
    assert table_counts(store) == before
