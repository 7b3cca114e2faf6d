"""Dossiers on SQLite and PostgreSQL: a correction after the deadline, the documents' date and
signer, and the 366/43 score."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import openpyxl
import pytest

from kiemdiem import documents
from kiemdiem.documents import docx_text
from kiemdiem.store.dossiers import assemble_dossier, latest_summaries
from kiemdiem.store.models import Member, MemberResult, Unit
from kiemdiem.store.queries import campaign_status
from kiemdiem.store.results import ingest_results
from kiemdiem.store.snapshots import consolidate_campaign
from tests.store.test_dossiers import BRANCH_PHASE, assemble, campaign, submit  # noqa: F401  (fixture)
from tests.store.test_results_intake import KC_LIST, SCT_MEMBERS, SCT_ORGS, VP1_LIST, VP2_LIST
from tests.support import ict

REPORT_PHASE = "dang_uy_bao_cao_khoi"


def _checklist_item(result, doc_type: str, member: str | None = None) -> dict:
    return next(i for i in result.checklist["items"] if i["doc_type"] == doc_type and i["member_id"] == member)


def _xlsx_rows(data: bytes, first_row: int, sheet: str | None = None) -> list[dict]:
    book = openpyxl.load_workbook(io.BytesIO(data))
    ws = book[sheet] if sheet else book.active
    header = [ws.cell(first_row - 1, c).value for c in range(1, ws.max_column + 1)]
    return [dict(zip(header, [ws.cell(r, c).value for c in range(1, len(header) + 1)])) for r in range(first_row, ws.max_row + 1)]


def test_a_correction_after_the_deadline_is_not_called_on_time(store, plan_187, campaign, tmp_path):
    """Minutes sent on 04/12 (deadline 05/12) and sent again on 11/12: the item counts as delivered
    on time, as the status does, but the checklist, the index and the manifest all say that the
    file archived (received 11/12) came after the deadline."""
    submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", [("bien_ban.pdf", b"minutes v1")], ict(2023, 12, 4, 10))
    submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", [("bien_ban.pdf", b"minutes v2")], ict(2023, 12, 11, 9))
    now = ict(2023, 12, 12, 9)
    out = tmp_path / "out"
    result = assemble(store, plan_187, out, now=now)

    item = _checklist_item(result, "bien_ban_hoi_nghi")
    assert item["status"] == "present" and item["first_on_time"] is True
    assert item["on_time"] is False and item["received_local"] == "11/12/2023 09:00"
    assert item["timeliness"] == "Đúng hạn (lần đầu 04/12/2023), nộp lại sau hạn 11/12/2023"
    with store.uow() as uow:
        status = next(r for r in campaign_status(uow, plan_187, "c187", now).for_unit("VP1") if r.phase_id == BRANCH_PHASE)
    assert result.summary["late"] == status.late == 0  # delivered on time once: on time, as status counts it

    with zipfile.ZipFile(result.archive) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        index = docx_text(archive.read("muc_luc_ho_so.docx"))
    [entry] = [e for e in manifest["files"] if e["doc_type"] == "bien_ban_hoi_nghi"]
    assert (entry["on_time"], entry["first_on_time"]) == (item["on_time"], item["first_on_time"]) == (False, True)
    assert "Đã nộp đúng hạn (lần đầu 04/12/2023), nộp lại sau hạn 11/12/2023" in index

    [row] = [r for r in _xlsx_rows((out / "checklist.xlsx").read_bytes(), 6) if r["Mã loại văn bản"] == "bien_ban_hoi_nghi"]
    assert row["Đúng hạn / trễ hạn"] == "Đúng hạn (lần đầu 04/12/2023), nộp lại sau hạn 11/12/2023"
    assert row["Văn bản"] == "Biên bản hội nghị kiểm điểm, đánh giá, xếp loại"


def _deliver_results(store, plan):
    """The branches' lists on 04/12, the committee's decision on 08/12 09:00 (as in test_results_intake)."""
    for unit, text in (("VP1", VP1_LIST), ("VP2", VP2_LIST), ("KC", KC_LIST)):
        submit(store, plan, unit, "tong_hop_xep_loai_dang_vien", [("tong_hop.csv", text.encode())], ict(2023, 12, 4, 10))
    submit(store, plan, "SCT", "quyet_dinh_xep_loai", [("qd_dang_vien.csv", SCT_MEMBERS.encode()), ("qd_to_chuc.csv", SCT_ORGS.encode())], ict(2023, 12, 8, 9))


def _consolidate(store, plan, at):
    ingest_results(store, plan, "c187", at)
    return consolidate_campaign(store, plan, "c187", at)


def _sct_dossier(store, plan, out, now):
    with store.uow() as uow:
        summaries = latest_summaries(uow, "c187", "SCT", now)
    return assemble_dossier(store, plan, "c187", "SCT", REPORT_PHASE, out, now, summaries["SCT"], subtree=summaries)


def _date_line(data: bytes) -> str:
    return next(line for line in docx_text(data).splitlines() if ", ngày " in line)


def test_documents_are_dated_by_the_consolidation_version_they_are_made_from(store, plan_187, campaign, tmp_path):
    _deliver_results(store, plan_187)
    _consolidate(store, plan_187, ict(2023, 12, 8, 12))  # v1, on 08/12
    # A branch's late file (10/12) is no reason to re-date the Đảng ủy's report.
    submit(store, plan_187, "VP2", "bao_cao_kiem_diem_tap_the", [("bao_cao.pdf", b"%PDF late")], ict(2023, 12, 10, 15))
    out = tmp_path / "sct"
    first = _sct_dossier(store, plan_187, out, ict(2023, 12, 11, 9))
    for name in ("bao_cao_tong_hop.docx", "danh_sach_xep_loai.docx", "muc_luc_ho_so.docx"):
        assert _date_line((out / name).read_bytes()).endswith("ngày 08 tháng 12 năm 2023"), name
    with zipfile.ZipFile(first.archive) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["consolidation_version"] == {"version": 1, "created_at": "2023-12-08T12:00:00+07:00"}
    assert manifest["consolidation_issued_on"] == "2023-12-08"

    # Later, nothing new: the same bytes, nothing written.
    again = _sct_dossier(store, plan_187, out, ict(2023, 12, 13, 9))
    assert not again.changed and again.sha256 == first.sha256

    # A new version (a supplement decided on 12/12) re-dates the documents made from it.
    supplement = "Mã đảng viên,Quyết định xếp loại\nDV007,HTTNV\n".encode()
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", [("qd_bo_sung.csv", supplement)], ict(2023, 12, 12, 9))
    _consolidate(store, plan_187, ict(2023, 12, 12, 10))
    later = _sct_dossier(store, plan_187, out, ict(2023, 12, 13, 9))
    assert later.changed
    assert _date_line((out / "bao_cao_tong_hop.docx").read_bytes()).endswith("ngày 12 tháng 12 năm 2023")
    with zipfile.ZipFile(later.archive) as archive:
        assert json.loads(archive.read("manifest.json"))["consolidation_version"]["version"] == 2


def test_a_dossier_without_consolidation_is_not_dated_by_a_childs_receipt(store, plan_187, campaign, tmp_path):
    submit(store, plan_187, "SCT", "bien_ban_hoi_nghi", [("bien_ban.pdf", b"%PDF SCT")], ict(2023, 12, 7, 10))
    submit(store, plan_187, "VP1", "bao_cao_kiem_diem_tap_the", [("bao_cao.pdf", b"%PDF VP1")], ict(2023, 12, 9, 10))
    result = assemble(store, plan_187, tmp_path / "sct", unit="SCT", phase=REPORT_PHASE, now=ict(2023, 12, 11, 9))
    with zipfile.ZipFile(result.archive) as archive:
        assert _date_line(archive.read("muc_luc_ho_so.docx")).endswith("ngày 07 tháng 12 năm 2023")  # its own last receipt


def test_the_root_without_a_plan_signer_is_signed_by_the_secretary_the_plan_names(store, plan_187, campaign, tmp_path):
    """Members sit in branches and a position has no unit, so the member list cannot say who is the
    Đảng ủy's secretary (DV001 is a branch secretary and a committee member). The plan can: its
    assignments call Nguyễn Sỹ Chín "Bí thư Đảng ủy Sở". A đảng bộ nobody names keeps the blank block."""
    plan = dataclasses.replace(plan_187, signer=None)
    result = assemble(store, plan, tmp_path / "sct", unit="SCT", phase=REPORT_PHASE, now=ict(2023, 12, 11, 9))
    with zipfile.ZipFile(result.archive) as archive:
        lines = docx_text(archive.read("muc_luc_ho_so.docx")).splitlines()
    signature = lines[lines.index("T/M ĐẢNG ỦY"):]
    assert signature[1] == "BÍ THƯ" and "Nguyễn Sỹ Chín" in signature

    # Without an assignment naming the secretary, nobody is guessed: the block stays, the name is blank.
    unnamed = dataclasses.replace(plan, assignments=tuple(a for a in plan.assignments if "Bí thư Đảng ủy" not in (a.title or "")))
    result = assemble(store, unnamed, tmp_path / "sct2", unit="SCT", phase=REPORT_PHASE, now=ict(2023, 12, 11, 9))
    with zipfile.ZipFile(result.archive) as archive:
        lines = docx_text(archive.read("muc_luc_ho_so.docx")).splitlines()
    signature = [line for line in lines[lines.index("T/M ĐẢNG ỦY"):] if line]
    assert signature == ["T/M ĐẢNG ỦY", "BÍ THƯ"]


@pytest.mark.parametrize("rule_set, scored", [("366/43", True), ("124/25", False)])
def test_the_score_is_in_the_documents_when_the_rule_set_scores(store, plan_187, campaign, tmp_path, rule_set, scored):
    plan = dataclasses.replace(plan_187, rule_set=rule_set)
    with store.uow() as uow:
        dv001 = uow.session.query(Member).filter_by(campaign_id="c187", member_code="DV001").one()
        vp1 = uow.session.query(Unit).filter_by(campaign_id="c187", code="VP1").one()
        uow.session.add(MemberResult(
            campaign_id="c187", member_id=dv001.id, unit_id=vp1.id, self_level="HTTNV", proposed_level="HTTNV",
            final_level="HTTNV", score=85.5, note="", received_at=ict(2023, 12, 4, 12), current=True,
        ))
        uow.commit()
    _consolidate(store, plan, ict(2023, 12, 8, 12))
    out = tmp_path / "sct"
    _sct_dossier(store, plan, out, ict(2023, 12, 11, 9))
    listing = docx_text((out / "danh_sach_xep_loai.docx").read_bytes()).splitlines()
    rows = _xlsx_rows((out / "thong_ke_xep_loai.xlsx").read_bytes(), documents.LIST_FIRST_ROW, documents.LIST_SHEET)
    [chin] = [r for r in rows if r["Mã đảng viên"] == "DV001"]
    if scored:
        assert "Điểm" in listing and "85,5" in listing
        assert chin["Điểm"] == 85.5
    else:
        assert "Điểm" not in listing and "85,5" not in listing
        assert "Điểm" not in chin
    assert chin["Quyết định"] == "HTTNV"
