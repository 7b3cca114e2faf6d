"""What the office reads on the consolidation page, and the dossier it downloads from there:
proposals waiting for the committee's decision are not "missing", the page before the first
consolidation says when it comes, no content hash in plain sight, plain-language links; one ZIP
per unit and phase (checked against its manifest), for staff who may see that unit only."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import zipfile
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from kiemdiem.consolidation import ConsolidationInput, MemberRecord, MemberResult, UnitNode, consolidate, snapshot_hash
from kiemdiem.store.models import EventLog, Snapshot, Unit
from kiemdiem.store.results import record_results
from tests.support import ict
from tests.web.conftest import CAMPAIGN, PDF, ROLE_AT_QL, plan_187, submit

KC_PEOPLE = [("DV006", "Nguyễn Trọng Thức", "KC"), ("DV007", "Hoàng Thị Lan", "KC")]


def proposal(member: str, level: str) -> MemberResult:
    """The branch's list: self-assessment and the branch's proposal, no decision yet."""
    return MemberResult(member, "KC", level, level, None, False, 0.0, False, None, "", True)


def add_kc_with_a_proposal(store) -> None:
    """KC sent its list: DV006 proposed HTTNV, awaiting the committee; DV007 is not on it.
    KC's consolidation (version 1) counts both as without a result (it counts decided levels)."""
    results = [proposal("DV006", "HTTNV")]
    summaries = consolidate(ConsolidationInput(
        (UnitNode("SCT", "Đảng bộ Sở Công Thương", "dang_bo_co_so", None), UnitNode("KC", "Chi bộ Khuyến công", "chi_bo_truc_thuoc", "SCT")),
        tuple(MemberRecord(mid, name, unit, "active", dt.date(2005, 1, 1), ()) for mid, name, unit in KC_PEOPLE),
        tuple(results), (), "124/25", dt.date(2023, 12, 5),
    ))
    payload = summaries["KC"].to_dict()
    assert payload["members"]["missing"] == 2  # what the office saw: "Chưa có kết quả 2" and both listed as missing
    with store.uow() as uow:
        record_results(uow, plan_187(), CAMPAIGN, ict(2023, 12, 6, 7), results, [], actor="test")
        kc = uow.session.scalar(select(Unit.id).where(Unit.campaign_id == CAMPAIGN, Unit.code == "KC"))
        uow.session.add(Snapshot(campaign_id=CAMPAIGN, unit_id=kc, version=1, content_hash=snapshot_hash({"KC": payload}), payload=payload,
                                 diff=None, created_at=ict(2023, 12, 6, 8), reason="tổng hợp lần đầu"))
        uow.commit()


def test_proposals_awaiting_a_decision_are_not_listed_as_missing(client_as, store, campaign):
    add_kc_with_a_proposal(store)
    client = client_as("office@sct.example.vn")
    page = client.get("/c/c187/u/KC/consolidation").text
    assert "1 đảng viên đã có đề xuất của chi bộ, chờ cấp có thẩm quyền quyết định" in page
    assert re.search(r'id="awaiting-row"><th>trong đó: đã có đề xuất, chờ quyết định</th><td class="n">1<', page)
    awaiting = page[page.index('id="awaiting-list"'):].split("</p>")[0]
    assert "Nguyễn Trọng Thức" in awaiting and "đề xuất HTTNV" in awaiting
    missing = page[page.index('id="missing-members"'):].split("</p>")[0]
    assert "Hoàng Thị Lan" in missing and "Nguyễn Trọng Thức" not in missing
    assert "chi bộ chưa gửi đề xuất (1)" in missing
    # The committee's page shows it per branch as well.
    sct = client.get("/c/c187/u/SCT/consolidation").text
    row = next(r for r in sct[sct.index('id="children-consolidation"'):].split("</table>")[0].split("<tr>") if "Chi bộ Khuyến công" in r)
    assert re.findall(r'<td class="n">([^<]*)</td>', row)[-3:-1] == ["2", "1"]  # without a result 2, of which awaiting 1


def test_before_the_first_consolidation_the_page_says_when_it_comes(client_as, clock):
    page = client_as("office@sct.example.vn").get("/c/c187/u/KC/consolidation").text
    empty = re.search(r'<p class="empty" id="no-consolidation">([^<]+)</p>', page).group(1)
    assert "Kết quả sẽ được tổng hợp ở lượt xử lý tới sau hạn chót 05/12/2023 23:59, sau khi có danh sách kết quả xếp loại." in empty
    clock.now = ict(2023, 12, 7, 9)
    page = client_as("office@sct.example.vn").get("/c/c187/u/KC/consolidation").text
    assert "Kết quả sẽ được tổng hợp ở lượt xử lý tới, sau khi có danh sách kết quả" in page


def test_the_content_hash_is_tucked_away_and_links_are_plain(client_as, store):
    page = client_as("office@sct.example.vn").get("/c/c187/u/VP1/consolidation").text
    with store.uow() as uow:
        digest = uow.session.scalar(select(Snapshot.content_hash).where(Snapshot.version == 2).limit(1))
    versions = page[page.index('id="versions"'):].split("</table>")[0]
    assert "Mã nội dung" not in versions and "<code>" not in versions
    tech = page[page.index('id="versions-tech"'):].split("</details>")[0]
    assert "Thông tin kỹ thuật" in tech and "<code>" in tech
    assert digest is not None
    assert ">Tải Excel (XLSX)</a>" in page and ">CSV</a>" in page and ">XLSX</a>" not in page
    crumbs = re.search(r'<p class="crumbs">(.*?)</p>', page).group(1)
    assert crumbs.endswith("Chi bộ Văn phòng 1")  # the unit's name, not its code


def dossier_url(code: str, phase: str = "chi_bo_kiem_diem") -> str:
    return f"/c/c187/u/{code}/dossier/{phase}.zip"


def test_the_office_downloads_a_branchs_whole_dossier(client_as, store, campaign, clock):
    """Three documents sent as the same file name each keep their own place in the archive, and every
    file's checksum is the manifest's."""
    clock.now = ict(2023, 12, 6, 9)
    for doc, body in (("bao_cao_kiem_diem_tap_the", b"bc"), ("phieu_phan_tich_chat_luong", b"pt"), ("bien_ban_hoi_nghi", b"bb")):
        submit(store, campaign.plan, "VP1", doc, PDF + body, ict(2023, 12, 4, 9), name="bien_ban_scan.pdf")
    client = client_as("office@sct.example.vn")
    page = client.get("/c/c187/u/VP1/consolidation").text
    links = re.findall(r'href="(/c/c187/u/VP1/dossier/[^"]+\.zip)"[^>]*>Tải hồ sơ \(ZIP\)<', page)
    assert dossier_url("VP1") in links and len(links) == len([p for p in campaign.plan.phases_for_kind("chi_bo_truc_thuoc") if p.documents])

    response = client.get(dossier_url("VP1"))
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "application/zip"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="VP1_chi_bo_kiem_diem.zip"')
    name = unquote(disposition.split("filename*=UTF-8''", 1)[1])
    assert name == "Hồ sơ Chi bộ Văn phòng 1 - Chi bộ họp kiểm điểm, đánh giá, xếp loại.zip" or (
        name.startswith("Hồ sơ Chi bộ Văn phòng 1 - ") and name.endswith(".zip")), name
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["unit"]["code"] == "VP1" and manifest["phase"]["id"] == "chi_bo_kiem_diem" and manifest["campaign"] == CAMPAIGN
    entries = manifest["files"] + manifest["generated"]
    assert entries
    for entry in entries:
        data = archive.read(entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"], entry["path"]
    scans = [e["path"] for e in manifest["files"] if e["filename"] == "bien_ban_scan.pdf"]
    assert len(scans) == 3 and len(set(scans)) == 3
    assert {"checklist.json", "checklist.xlsx", "muc_luc_ho_so.docx"} <= set(archive.namelist())
    # The download reuses the folder the tick keeps (nothing rebuilt when nothing changed), and is logged.
    again = client.get(dossier_url("VP1"))
    assert hashlib.sha256(again.content).digest() == hashlib.sha256(response.content).digest()
    assert (store.settings.output_dir / CAMPAIGN / "dossiers" / "VP1" / "chi_bo_kiem_diem" / "VP1_chi_bo_kiem_diem.zip").is_file()
    with store.uow() as uow:
        logged = [(e.subject, e.actor, e.detail) for e in
                  uow.session.scalars(select(EventLog).where(EventLog.action == "web.dossier").order_by(EventLog.id))]
    assert [e[0] for e in logged] == ["VP1:chi_bo_kiem_diem"] * 2 and logged[0][1] == "office@sct.example.vn"
    assert logged[1][2]["rebuilt"] is False


def test_a_committees_dossier_carries_its_consolidation(client_as, store, clock):
    clock.now = ict(2023, 12, 8, 9)  # after its consolidations (the dossier is as of the dashboard's moment)
    response = client_as("office@sct.example.vn").get(dossier_url("SCT", "dang_uy_bao_cao_khoi"))
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert "bao_cao_tong_hop.docx" in archive.namelist()


@pytest.mark.parametrize("email, code, phase, allowed", [
    ("office@sct.example.vn", "QL1", "chi_bo_kiem_diem", True),
    (ROLE_AT_QL["office"], "QL1", "chi_bo_kiem_diem", True),
    (ROLE_AT_QL["admin"], "QL1", "chuan_bi_chi_bo", True),
    (ROLE_AT_QL["office"], "VP1", "chi_bo_kiem_diem", False),  # outside the subtree
    (ROLE_AT_QL["admin"], "VP1", "chi_bo_kiem_diem", False),
    (ROLE_AT_QL["unit"], "QL1", "chi_bo_kiem_diem", False),  # not staff
    ("vp1@sct.example.vn", "VP1", "chi_bo_kiem_diem", False),
    ("office@sct.example.vn", "QL1", "dang_uy_bao_cao_khoi", False),  # a phase the unit has no part in
    ("office@sct.example.vn", "QL1", "khong_co", False),
    ("office@sct.example.vn", "KHONG", "chi_bo_kiem_diem", False),
], ids=["root-office", "ql-office", "ql-admin", "ql-office-outside", "ql-admin-outside", "ql-unit", "branch-secretary",
        "other-phase", "no-phase", "no-unit"])
def test_dossier_access(client_as, store, email, code, phase, allowed):
    client = client_as(email)
    response = client.get(dossier_url(code, phase))
    assert response.status_code == (200 if allowed else 404), response.text[:300]
    if not allowed:
        assert "Chi bộ Văn phòng 1" not in response.text and not response.content.startswith(b"PK")
        if phase == "chi_bo_kiem_diem":  # the person may not have it: no link either
            assert "Tải hồ sơ (ZIP)" not in client.get(f"/c/c187/u/{code}/consolidation").text
