"""The drop folder's optional phase level, ``<unit>/<phase>/<doc type>/[<member>/]file``: a
document a unit owes in two phases (KH-DUK-HT-2022: a chi bộ cơ sở's minutes, in its meeting and
in the leaders' dossier) can arrive by drop folder too. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kiemdiem.catalogue import DOCUMENTS
from kiemdiem.plan import load_plan
from kiemdiem.store.intake import collect_drop_folder
from tests.support import PLANS, hatinh_campaign, ict

UNITS = """code,name,kind,parent,emails
KHOI,Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh,cap_tren_co_so,,btc@khoi.example.vn
CS01,Chi bộ cơ sở CS01,chi_bo_co_so,KHOI,cs01@khoi.example.vn
"""
MEMBERS = """member_id,full_name,unit,email,joined_on,status,temporary_unit,positions
DV01,Nguyễn Văn Một,CS01,,12/05/1995,active,,bi_thu
DV02,Trần Thị Hai,CS01,,03/02/2010,active,,
"""
AT = ict(2022, 11, 25, 10)


@pytest.fixture
def hatinh(store, tmp_path):
    return hatinh_campaign(store, tmp_path / "org", UNITS, MEMBERS)


def drop(inbox: Path, relative: str, data: bytes = b"%PDF noi dung") -> Path:
    path = inbox / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - 60  # settled: not being copied in any more
    os.utime(path, (old, old))
    return path


def test_a_phase_folder_delivers_a_document_owed_in_two_phases(store, hatinh, tmp_path):
    inbox = tmp_path / "inbox"
    drop(inbox, "CS01/ho_so_can_bo/bien_ban_hoi_nghi/bien_ban_can_bo.pdf", b"%PDF leaders")
    drop(inbox, "CS01/chi_bo_kiem_diem/bien_ban_hoi_nghi/bien_ban_chi_bo.pdf", b"%PDF branch")
    drop(inbox, "CS01/ho_so_can_bo/ban_kiem_diem_ca_nhan/DV01/tu_kiem_diem.docx", b"PK leader")
    report = collect_drop_folder(store, hatinh, "ht", inbox, AT)
    assert not report.refused and not report.failed
    assert sorted(o.item_key for o in report.accepted) == [
        "CS01:chi_bo_kiem_diem:bien_ban_hoi_nghi:-",
        "CS01:ho_so_can_bo:ban_kiem_diem_ca_nhan:DV01",
        "CS01:ho_so_can_bo:bien_ban_hoi_nghi:-",
    ]
    assert list((inbox / ".processed").rglob("ho_so_can_bo/bien_ban_hoi_nghi/bien_ban_can_bo.pdf"))
    assert not list(inbox.glob("CS01/**/*.pdf"))


def test_the_old_layout_still_works_for_a_document_of_one_phase(store, hatinh, tmp_path):
    inbox = tmp_path / "inbox"
    drop(inbox, "CS01/phieu_phan_tich_chat_luong/phieu.pdf")
    drop(inbox, "CS01/chi_bo_kiem_diem/phieu_phan_tich_chat_luong/phieu.pdf")  # the same, named by its phase
    report = collect_drop_folder(store, hatinh, "ht", inbox, AT)
    assert not report.refused
    # Both folders are the same item with the same content: one submission, the other a no-op.
    assert [o.item_key for o in report.accepted + report.unchanged] == ["CS01:chi_bo_kiem_diem:phieu_phan_tich_chat_luong:-"] * 2


def test_a_document_of_two_phases_in_the_old_layout_is_refused_naming_the_folders_to_use(store, hatinh, tmp_path):
    inbox = tmp_path / "inbox"
    drop(inbox, "CS01/bien_ban_hoi_nghi/bien_ban.pdf")
    drop(inbox, "CS01/ban_kiem_diem_ca_nhan/DV02/tu_kiem_diem.docx", b"PK member")
    report = collect_drop_folder(store, hatinh, "ht", inbox, AT)
    assert not report.accepted
    reasons = dict(report.refused)
    minutes = reasons["CS01/bien_ban_hoi_nghi"]
    assert "CS01/chi_bo_kiem_diem/bien_ban_hoi_nghi/" in minutes and "CS01/ho_so_can_bo/bien_ban_hoi_nghi/" in minutes
    assert "--phase" not in minutes  # no command line here: the folder is what the user can change
    member = reasons["CS01/ban_kiem_diem_ca_nhan/DV02"]
    assert "CS01/chi_bo_kiem_diem/ban_kiem_diem_ca_nhan/DV02/" in member and "CS01/ho_so_can_bo/ban_kiem_diem_ca_nhan/DV02/" in member
    # Nothing dropped is lost: the file is kept with the reason beside it.
    (kept,) = (inbox / ".refused").rglob("bien_ban.pdf")
    assert (kept.parent / ".reason.txt").read_text(encoding="utf-8").strip() == minutes

    # Put where the reason says, it is taken.
    kept.parent.joinpath("bien_ban.pdf").rename(drop(inbox, "CS01/chi_bo_kiem_diem/bien_ban_hoi_nghi/bien_ban.pdf"))
    again = collect_drop_folder(store, hatinh, "ht", inbox, ict(2022, 11, 25, 11))
    assert [o.item_key for o in again.accepted] == ["CS01:chi_bo_kiem_diem:bien_ban_hoi_nghi:-"]


def test_a_phase_folder_that_does_not_owe_the_document_is_refused_saying_so(store, hatinh, tmp_path):
    inbox = tmp_path / "inbox"
    drop(inbox, "CS01/co_so_kiem_diem/bien_ban_hoi_nghi/bien_ban.pdf")  # a đảng bộ cơ sở's phase
    report = collect_drop_folder(store, hatinh, "ht", inbox, AT)
    assert not report.accepted
    ((folder, reason),) = report.refused
    assert folder == "CS01/co_so_kiem_diem/bien_ban_hoi_nghi" and "trong giai đoạn 'co_so_kiem_diem'" in reason
    assert list((inbox / ".refused").rglob("bien_ban.pdf"))


@pytest.mark.parametrize("relative", ["CS01/bien_ban.pdf", "CS01/ho_so_can_bo/bien_ban.pdf", "CS01/ho_so_can_bo/ban_kiem_diem_ca_nhan/DV01/x/bien_ban.pdf"])
def test_a_misplaced_file_is_refused_with_the_layout_including_the_phase_level(store, hatinh, tmp_path, relative):
    inbox = tmp_path / "inbox"
    drop(inbox, relative)
    report = collect_drop_folder(store, hatinh, "ht", inbox, AT)
    ((folder, reason),) = report.refused
    assert "<mã đơn vị>/[<mã giai đoạn>/]<loại văn bản>/[<mã đảng viên>/]tệp" in reason
    assert list((inbox / ".refused").rglob("bien_ban.pdf"))


# --- a phase id may not be a document type code: the drop folder could not tell them apart ---------
# (the plan's refusal is tested with the other malformed plans, tests/core/test_plan.py)


@pytest.mark.parametrize("path", sorted(PLANS.glob("*.yaml")), ids=lambda p: p.name)
def test_no_seed_plan_has_a_phase_id_that_is_a_document_type(path):
    assert not {p.id for p in load_plan(path).phases} & set(DOCUMENTS)
