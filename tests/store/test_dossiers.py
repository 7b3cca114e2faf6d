"""Dossier assembly from the store, on SQLite and PostgreSQL: checklist, manifest, archive, idempotency."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import zipfile

import openpyxl
import pytest
import typer
from typer.testing import CliRunner

from kiemdiem import steps
from kiemdiem.cli.dossier_cmd import register
from kiemdiem.documents import CHECKLIST_FIRST_ROW, MEMBER_SHEET, ORG_SHEET, PARTY, STATISTICS_FIRST_ROW, SAMPLE_SUMMARY, docx_text
from kiemdiem.errors import NotFound, Refused
from kiemdiem.store.dossiers import archive_inputs_hash, assemble_dossier, dossier_inputs_hash, load_dossier_input
from kiemdiem.store.results import ingest_results
from kiemdiem.store.models import Member, MemberResult, Unit
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.store.snapshots import consolidate_campaign, latest_snapshots
from tests.support import SMALL_UNITS, command_shell, ict, write_small_org

SETUP_AT = ict(2023, 11, 20, 8)
BRANCH_PHASE = "chi_bo_kiem_diem"
NOW = ict(2023, 12, 7, 12)


@pytest.fixture
def campaign(store, plan_187, tmp_path):
    units, members = write_small_org(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", SETUP_AT)
        import_organization(uow, "c187", units, members, SETUP_AT)
        uow.commit()
    return "c187"


def submit(store, plan, unit, doc, files, at, member=None):
    with store.uow() as uow:
        outcome = record_submission(
            uow, store.blobs, plan, "c187", unit, doc, [IncomingFile(name, data=data) for name, data in files], at, "cli",
            member_code=member, actor="test",
        )
        uow.commit()
    return outcome


@pytest.fixture
def vp1_partly_delivered(store, campaign, plan_187):
    """VP1 (members DV001, DV002; DV003 exempt): some items on time, one late, one corrected, one after NOW."""
    submit(store, plan_187, "VP1", "bao_cao_kiem_diem_tap_the", [("Báo cáo kiểm điểm.pdf", b"%PDF report")], ict(2023, 12, 4, 10))
    submit(store, plan_187, "VP1", "ban_kiem_diem_ca_nhan", [("kiem diem.pdf", b"%PDF DV001")], ict(2023, 12, 4, 11), member="DV001")
    submit(store, plan_187, "VP1", "ban_kiem_diem_ca_nhan", [("kiem diem.pdf", b"%PDF DV002")], ict(2023, 12, 6, 9), member="DV002")
    submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", [("bien_ban.pdf", b"minutes v1")], ict(2023, 12, 1, 9))
    submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", [("bien_ban.pdf", b"minutes v2")], ict(2023, 12, 2, 9))
    submit(store, plan_187, "VP1", "phieu_phan_tich_chat_luong", [("phieu.pdf", b"form p1"), ("phieu.pdf", b"form p2")], ict(2023, 12, 5, 8))
    submit(store, plan_187, "VP1", "ket_qua_xep_loai_chi_bo", [("ket_qua.csv", "Mã đơn vị,Tự xếp loại,Ghi chú\nVP1,HTTNV,result later\n".encode())], ict(2023, 12, 9, 8))
    return "VP1"


def assemble(store, plan, out, unit="VP1", phase=BRANCH_PHASE, now=NOW, **kwargs):
    return assemble_dossier(store, plan, "c187", unit, phase, out, now, **kwargs)


def test_checklist_marks_present_missing_and_late(store, plan_187, vp1_partly_delivered, tmp_path):
    result = assemble(store, plan_187, tmp_path / "out")
    checklist = json.loads((tmp_path / "out" / "checklist.json").read_text(encoding="utf-8"))
    status = {(i["doc_type"], i["member_id"]): i["status"] for i in checklist["items"]}
    assert status[("bao_cao_kiem_diem_tap_the", None)] == "present"
    assert status[("ban_kiem_diem_ca_nhan", "DV001")] == "present"
    assert status[("ban_kiem_diem_ca_nhan", "DV002")] == "late"
    assert status[("bien_ban_hoi_nghi", None)] == "present"
    assert status[("phieu_phan_tich_chat_luong", None)] == "present"
    assert status[("ket_qua_xep_loai_chi_bo", None)] == "missing"  # arrives after NOW
    assert status[("nhan_xet_noi_cu_tru", "DV001")] == "missing"
    assert status[("van_ban_khac", None)] == "not_provided"  # optional
    assert ("ban_kiem_diem_ca_nhan", "DV003") not in status  # exempt: owes nothing
    overdue = next(i for i in checklist["items"] if i["doc_type"] == "tong_hop_xep_loai_dang_vien")
    assert overdue["status_name"] == "Chưa nộp (quá hạn)"
    summary = checklist["summary"]
    assert summary["state"] == "overdue" and summary["late"] == 1
    assert summary["present"] == 5 and summary["missing"] == summary["required"] - 5
    assert result.summary == summary
    minutes = next(i for i in checklist["items"] if i["doc_type"] == "bien_ban_hoi_nghi")
    assert minutes["versions"] == 2 and minutes["received_local"] == "02/12/2023 09:00"
    # The plan's own words for each item travel with it (plan 187 asks for mẫu 3đ), in the JSON and the sheet.
    form = next(i for i in checklist["items"] if i["doc_type"] == "phieu_phan_tich_chat_luong")
    assert form["note"] == "Phiếu phân tích chất lượng và đánh giá xếp loại tổ chức cơ sở đảng (mẫu 3đ)"
    sheet = openpyxl.load_workbook(tmp_path / "out" / "checklist.xlsx").active
    header = [c.value for c in sheet[CHECKLIST_FIRST_ROW - 1]]
    row = next(r for r in sheet.iter_rows(min_row=CHECKLIST_FIRST_ROW, values_only=True) if r[header.index("Mã loại văn bản")] == "phieu_phan_tich_chat_luong")
    assert row[header.index("Kế hoạch ghi")] == form["note"]
    # Before the deadline a missing item is only missing, and the dossier is incomplete.
    early = assemble(store, plan_187, tmp_path / "early", now=ict(2023, 12, 4, 12))
    assert early.summary["state"] == "incomplete" and early.summary["present"] == 3


def test_manifest_lists_every_file_and_checksums_match(store, plan_187, vp1_partly_delivered, tmp_path):
    out = tmp_path / "out"
    result = assemble(store, plan_187, out)
    assert result.archive == out / "VP1_chi_bo_kiem_diem.zip"
    assert result.sha256 == hashlib.sha256(result.archive.read_bytes()).hexdigest()
    with zipfile.ZipFile(result.archive) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        manifest = json.loads(archive.read("manifest.json"))
        # Every entry dated the dossier's day (a file manager shows it), the same on every rebuild.
        day = dt.date.fromisoformat(manifest["issued_on"])
        assert {info.date_time for info in archive.infolist()} == {(day.year, day.month, day.day, 0, 0, 0)} != {(1980, 1, 1, 0, 0, 0)}
        files = manifest["files"]
        for entry in files:
            assert hashlib.sha256(archive.read(entry["path"])).hexdigest() == entry["sha256"]
            assert {"doc_type", "member_id", "sha256", "received_at", "on_time", "size"} <= entry.keys()
        for entry in manifest["generated"]:
            assert hashlib.sha256(archive.read(entry["path"])).hexdigest() == entry["sha256"]
        assert archive.read("checklist.json") == (out / "checklist.json").read_bytes()
        assert archive.read("checklist.xlsx") == (out / "checklist.xlsx").read_bytes()
        stored = {archive.read(e["path"]) for e in files}
        index = docx_text(archive.read("muc_luc_ho_so.docx"))
    by_path = {e["path"]: e for e in files}
    late = by_path["files/ban_kiem_diem_ca_nhan/DV002/kiem diem.pdf"]
    assert late["member_id"] == "DV002" and late["member_name"] == "Trần Thị Hoa" and late["on_time"] is False
    assert late["received_at"] == "2023-12-06T09:00:00+07:00"
    assert by_path["files/ban_kiem_diem_ca_nhan/DV001/kiem diem.pdf"]["on_time"] is True
    # Two files of one name in one submission both survive.
    assert {"files/phieu_phan_tich_chat_luong/phieu.pdf", "files/phieu_phan_tich_chat_luong/phieu (2).pdf"} <= by_path.keys()
    # Only the current version is archived; the superseded one is listed apart.
    assert b"minutes v2" in stored and b"minutes v1" not in stored and b"result later" not in stored
    [old] = manifest["superseded"]
    assert old["doc_type"] == "bien_ban_hoi_nghi" and old["files"][0]["sha256"] == hashlib.sha256(b"minutes v1").hexdigest()
    assert manifest["inputs_hash"] == result.inputs_hash
    # The index is a document in the administrative format, addressed to the parent.
    assert "MỤC LỤC HỒ SƠ" in index and "CHI BỘ VĂN PHÒNG 1" in index and PARTY in index
    assert "ngày 06 tháng 12 năm 2023" in index  # dated by its newest receipt (06/12), not by the clock
    assert "Nguyễn Sỹ Chín" in index and "T/M CHI BỘ" in index
    assert "- Đảng ủy Sở Công Thương (B/c)," in index  # sent to the parent's committee, not to the Đảng bộ


def test_reassembling_unchanged_writes_nothing_and_a_new_submission_changes_it(store, plan_187, vp1_partly_delivered, tmp_path):
    out = tmp_path / "out"
    first = assemble(store, plan_187, out)
    assert first.changed and "VP1_chi_bo_kiem_diem.zip" in first.written
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    again = assemble(store, plan_187, out, now=ict(2023, 12, 8, 12))  # later, but nothing new arrived
    assert not again.changed and again.written == ()
    assert again.sha256 == first.sha256 and again.inputs_hash == first.inputs_hash
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert dossier_inputs_hash(store, plan_187, "c187", "VP1", BRANCH_PHASE, NOW) == first.inputs_hash
    assert archive_inputs_hash(out, "VP1", BRANCH_PHASE) == first.inputs_hash

    fresh = assemble(store, plan_187, tmp_path / "elsewhere")  # rebuilt from nothing: the same bytes
    assert fresh.sha256 == first.sha256

    submit(store, plan_187, "VP1", "nhan_xet_noi_cu_tru", [("nhan_xet.pdf", b"comment")], ict(2023, 12, 8, 14), member="DV001")
    later = ict(2023, 12, 8, 15)
    assert dossier_inputs_hash(store, plan_187, "c187", "VP1", BRANCH_PHASE, later) != first.inputs_hash
    changed = assemble(store, plan_187, out, now=later)
    assert changed.changed and changed.sha256 != first.sha256
    assert {"checklist.json", "VP1_chi_bo_kiem_diem.zip"} <= set(changed.written)
    with zipfile.ZipFile(changed.archive) as archive:
        assert archive.read("files/nhan_xet_noi_cu_tru/DV001/nhan_xet.pdf") == b"comment"


def test_damaged_output_is_rewritten(store, plan_187, vp1_partly_delivered, tmp_path):
    out = tmp_path / "out"
    first = assemble(store, plan_187, out)
    (out / "checklist.xlsx").unlink()
    again = assemble(store, plan_187, out)
    assert again.written == ("checklist.xlsx",) and again.sha256 == first.sha256


def _summary(code: str, name: str, kind: str, parent: str | None, htxsnv: int, httnv: int, children=()) -> dict:
    summary = json.loads(json.dumps(SAMPLE_SUMMARY))
    summary["unit"] = {"code": code, "name": name, "kind": kind, "parent": parent}
    summary["members"]["levels"]["HTXSNV"]["count"] = htxsnv
    summary["members"]["levels"]["HTTNV"]["count"] = httnv
    summary["children"] = list(children)
    return summary


def test_upper_unit_dossier_includes_sub_unit_summaries(store, plan_187, vp1_partly_delivered, tmp_path):
    out = tmp_path / "sct"
    result = assemble(store, plan_187, out, unit="SCT", phase="dang_uy_bao_cao_khoi", now=ict(2023, 12, 11, 9))
    with zipfile.ZipFile(result.archive) as archive:
        subs = {n: json.loads(archive.read(n)) for n in archive.namelist() if n.startswith("sub_units/")}
    assert set(subs) == {"sub_units/VP1.json", "sub_units/VP2.json", "sub_units/KC.json"}
    vp1 = subs["sub_units/VP1.json"]
    [part] = vp1["phases"]
    assert part["phase"]["id"] == BRANCH_PHASE
    own = assemble(store, plan_187, tmp_path / "vp1", now=ict(2023, 12, 11, 9)).summary
    assert {k: part["summary"][k] for k in ("required", "present", "late", "missing", "state")} == {
        k: own[k] for k in ("required", "present", "late", "missing", "state")
    }
    assert any(m["doc_type"] == "nhan_xet_noi_cu_tru" for m in part["missing"])
    assert subs["sub_units/VP2.json"]["phases"][0]["summary"]["present"] == 0
    assert vp1["consolidation"] is None
    assert "thong_ke_xep_loai.xlsx" not in result.outputs


def test_upper_unit_with_consolidation_generates_documents(store, plan_187, vp1_partly_delivered, tmp_path):
    with store.uow() as uow:
        dv001 = uow.session.query(Member).filter_by(campaign_id="c187", member_code="DV001").one()
        vp1 = uow.session.query(Unit).filter_by(campaign_id="c187", code="VP1").one()
        uow.session.add(MemberResult(
            campaign_id="c187", member_id=dv001.id, unit_id=vp1.id, self_level="HTXSNV", proposed_level="HTTNV",
            final_level="HTTNV", note="", received_at=ict(2023, 12, 4, 12), current=True,
        ))
        uow.commit()
    subtree = {
        "SCT": _summary("SCT", "Đảng bộ Sở Công Thương", "dang_bo_co_so", None, 5, 30, ["KC", "VP1", "VP2"]),
        "VP1": _summary("VP1", "Chi bộ Văn phòng 1", "chi_bo_truc_thuoc", "SCT", 1, 9),
        "VP2": _summary("VP2", "Chi bộ Văn phòng 2", "chi_bo_truc_thuoc", "SCT", 2, 11),
    }
    out = tmp_path / "sct"
    now = ict(2023, 12, 11, 9)
    result = assemble(store, plan_187, out, unit="SCT", phase="dang_uy_bao_cao_khoi", now=now, consolidation=subtree["SCT"], subtree=subtree)
    for name in ("thong_ke_xep_loai.xlsx", "bao_cao_tong_hop.docx", "danh_sach_xep_loai.docx", "checklist.xlsx", "muc_luc_ho_so.docx"):
        assert (out / name).is_file()
    with zipfile.ZipFile(result.archive) as archive:
        assert json.loads(archive.read("sub_units/VP1.json"))["consolidation"]["unit"]["code"] == "VP1"
        assert json.loads(archive.read("sub_units/KC.json"))["consolidation"] is None
        assert archive.read("bao_cao_tong_hop.docx") == (out / "bao_cao_tong_hop.docx").read_bytes()
    book = openpyxl.load_workbook(io.BytesIO((out / "thong_ke_xep_loai.xlsx").read_bytes()))
    codes = [book[MEMBER_SHEET].cell(r, 1).value for r in range(STATISTICS_FIRST_ROW, book[MEMBER_SHEET].max_row + 1)]
    assert codes == ["SCT", "VP1", "VP2"]  # tree order
    assert ORG_SHEET in book.sheetnames
    report = docx_text((out / "bao_cao_tong_hop.docx").read_bytes())
    assert "ĐẢNG ỦY SỞ CÔNG THƯƠNG" in report and "Lê Xuân Tiến" in report and "PHÓ BÍ THƯ" in report
    listing = docx_text((out / "danh_sach_xep_loai.docx").read_bytes())
    assert "Nguyễn Sỹ Chín" in listing and "HTXSNV" in listing and "Miễn công tác và sinh hoạt đảng" in listing
    assert "Chưa có kết quả" in listing  # DV002 has none
    assert "Mới kết nạp dưới 6 tháng, không đánh giá, xếp loại" in listing  # DV005, admitted 01/09/2023
    # Same consolidation again: nothing to do; without it, its documents go away.
    again = assemble(store, plan_187, out, unit="SCT", phase="dang_uy_bao_cao_khoi", now=now, consolidation=subtree["SCT"], subtree=subtree)
    assert not again.changed and again.sha256 == result.sha256
    bare = assemble(store, plan_187, out, unit="SCT", phase="dang_uy_bao_cao_khoi", now=now)
    assert bare.changed and not (out / "bao_cao_tong_hop.docx").exists()


def test_the_ticks_dossiers_read_only_their_own_subtrees_snapshots(store, plan_187, tmp_path, monkeypatch):
    """A tick re-assembles the dossiers of the units a late result changed. Each one's subtree is
    read on its own: at national scale the campaign's snapshots do not fit in memory."""
    units, members = write_small_org(
        tmp_path / "org",
        units=SMALL_UNITS + "HUYEN,Huyện ủy Đức Thọ,cap_tren_co_so,,vanphong@ductho.example.vn\n"
        "SXD,Đảng bộ Sở Xây dựng,dang_bo_co_so,HUYEN,vanphong@sxd.example.vn\n"
        "XD1,Chi bộ Xây dựng 1,chi_bo_truc_thuoc,SXD,xd1@sxd.example.vn\n",
    )
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", SETUP_AT)
        import_organization(uow, "c187", units, members, SETUP_AT)
        dv001 = uow.session.query(Member).filter_by(campaign_id="c187", member_code="DV001").one()
        uow.session.add(MemberResult(
            campaign_id="c187", member_id=dv001.id, unit_id=dv001.unit_id, self_level="HTXSNV", proposed_level="HTTNV",
            final_level="HTTNV", note="", received_at=ict(2023, 12, 4, 12), current=True,
        ))
        uow.commit()
    now = ict(2023, 12, 11, 9)
    assert len(consolidate_campaign(store, plan_187, "c187", now).units_updated) == 7
    asked: list[list[str] | None] = []
    subtrees: list[str | None] = []
    read, load = steps.latest_snapshots, steps.load_units

    def latest_snapshots(uow, campaign_id, unit_codes=None):
        asked.append(None if unit_codes is None else sorted(unit_codes))
        return read(uow, campaign_id, unit_codes)

    def load_units(uow, campaign_id, subtree_of=None):
        subtrees.append(subtree_of)
        return load(uow, campaign_id, subtree_of)

    monkeypatch.setattr(steps, "latest_snapshots", latest_snapshots)
    monkeypatch.setattr(steps, "load_units", load_units)
    built = steps.assemble_dossiers(store, plan_187, "c187", now, ["VP1", "SCT", "HUYEN"])
    assert {(d["unit"], d["phase"]) for d in built} >= {("SCT", "dang_uy_bao_cao_khoi"), ("VP1", BRANCH_PHASE)}
    assert not any(d["unit"] == "HUYEN" for d in built)  # no phase of this plan has documents for it
    # SCT's subtree only: VP1 has no consolidating phase, HUYEN no phase at all (its subtree is not even listed)
    assert subtrees == ["SCT"] and asked == [["KC", "SCT", "VP1", "VP2"]]
    [sct] = [d for d in built if d["unit"] == "SCT" and d["phase"] == "dang_uy_bao_cao_khoi"]
    with zipfile.ZipFile(sct["archive"]) as archive:
        vp1 = json.loads(archive.read("sub_units/VP1.json"))["consolidation"]
        assert vp1["unit"]["code"] == "VP1" and vp1["members"]["levels"]["HTTNV"]["count"] == 1
        assert "sub_units/XD1.json" not in archive.namelist()


BAD_REQUESTS = [
    ("unknown unit", dict(unit="NOPE"), NotFound, "đơn vị không tồn tại: 'NOPE'"),
    ("unknown phase", dict(phase="giai_doan_x"), NotFound, "giai đoạn không tồn tại: 'giai_doan_x'"),
    ("phase of another kind", dict(unit="SCT", phase=BRANCH_PHASE), Refused, "không áp dụng cho Đảng bộ cơ sở 'SCT'"),
]


@pytest.mark.parametrize("label, args, error, reason", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_unit_or_phase_is_a_clear_error(store, plan_187, campaign, tmp_path, label, args, error, reason):
    with pytest.raises(error) as info:
        assemble(store, plan_187, tmp_path / "out", **args)
    assert reason in str(info.value)
    assert not (tmp_path / "out").exists()


def test_unknown_campaign_is_not_found(store, plan_187, tmp_path):
    with pytest.raises(NotFound, match="không có đợt kiểm điểm"):
        assemble_dossier(store, plan_187, "nope", "VP1", BRANCH_PHASE, tmp_path / "out", NOW)


def _cli() -> typer.Typer:
    return command_shell(register)


def test_cli_assembles_and_refuses_unknown_unit(store, plan_187, vp1_partly_delivered, tmp_path):
    out = tmp_path / "cli"
    runner = CliRunner()
    args = ["dossier", "--campaign", "c187", "--unit", "VP1", "--phase", BRANCH_PHASE, "--out", str(out), "--at", "07/12/2023 12:00"]
    done = runner.invoke(_cli(), args)
    assert done.exit_code == 0, done.output
    assert "Quá hạn" in done.output and (out / "VP1_chi_bo_kiem_diem" / "VP1_chi_bo_kiem_diem.zip").is_file()
    assert "Không thay đổi" in runner.invoke(_cli(), args).output
    bad = runner.invoke(_cli(), ["dossier", "--campaign", "c187", "--unit", "NOPE", "--phase", BRANCH_PHASE, "--out", str(tmp_path / "x")])
    assert bad.exit_code == NotFound.exit_code
    assert "đơn vị không tồn tại" in bad.output
    shutil.rmtree(out)


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _mtimes(folder) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_cli_dossiers_of_two_units_in_one_out_folder_keep_their_own_files(store, plan_187, vp1_partly_delivered, tmp_path):
    """Office staff give every dossier the same --out (the README says `--out hoso/`): each one goes
    into its own <unit>_<phase>/ folder, so a second unit or phase never replaces the first one's files."""
    out = tmp_path / "hoso"
    runner = CliRunner()

    def run(unit, phase, at="08/12/2023 11:00"):
        done = runner.invoke(_cli(), ["dossier", "--campaign", "c187", "--unit", unit, "--phase", phase, "--out", str(out), "--at", at])
        assert done.exit_code == 0, done.output
        return done.output

    first = run("VP1", BRANCH_PHASE)
    assert "VP1_chi_bo_kiem_diem" in first
    run("SCT", "dang_uy_bao_cao_khoi")
    assert sorted(p.name for p in out.iterdir()) == ["SCT_dang_uy_bao_cao_khoi", "VP1_chi_bo_kiem_diem"]
    for unit, phase in (("VP1", BRANCH_PHASE), ("SCT", "dang_uy_bao_cao_khoi")):
        folder = out / f"{unit}_{phase}"
        checklist = json.loads((folder / "checklist.json").read_text(encoding="utf-8"))
        assert (checklist["unit"]["code"], checklist["phase"]["id"]) == (unit, phase)
        with zipfile.ZipFile(folder / f"{unit}_{phase}.zip") as archive:
            for name in ("checklist.json", "checklist.xlsx", "muc_luc_ho_so.docx"):
                assert archive.read(name) == (folder / name).read_bytes()

    # The same unit and phase again: nothing new, nothing touched.
    vp1 = out / "VP1_chi_bo_kiem_diem"
    before = _mtimes(out)
    assert "Không thay đổi" in run("VP1", BRANCH_PHASE)
    assert _mtimes(out) == before
    # Something new arrived: that dossier is brought up to date in its folder, the other is left alone.
    sct = _files(out / "SCT_dang_uy_bao_cao_khoi")
    submit(store, plan_187, "VP1", "nhan_xet_noi_cu_tru", [("nhan_xet.pdf", b"comment")], ict(2023, 12, 8, 14), member="DV001")
    assert "Đã ghi" in run("VP1", BRANCH_PHASE, at="08/12/2023 15:00")
    checklist = json.loads((vp1 / "checklist.json").read_text(encoding="utf-8"))
    assert next(i for i in checklist["items"] if i["doc_type"] == "nhan_xet_noi_cu_tru" and i["member_id"] == "DV001")["status"] == "late"  # after 07/12
    assert _files(out / "SCT_dang_uy_bao_cao_khoi") == sct


def test_a_folder_holding_another_dossier_is_refused_and_left_as_it_was(store, plan_187, vp1_partly_delivered, tmp_path):
    """Whoever calls it, assembling into a folder that holds another unit's, phase's or campaign's
    dossier would replace its checklist and documents: refused, with nothing written."""
    out = tmp_path / "out"
    assemble(store, plan_187, out)
    kept = _files(out)
    with pytest.raises(Refused, match="VP1 · chi_bo_kiem_diem"):
        assemble(store, plan_187, out, unit="SCT", phase="dang_uy_bao_cao_khoi", now=ict(2023, 12, 11, 9))
    assert _files(out) == kept

    units, members = write_small_org(tmp_path / "org2")
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c2", SETUP_AT)
        import_organization(uow, "c2", units, members, SETUP_AT)
        uow.commit()
    with pytest.raises(Refused, match="c187"):
        assemble_dossier(store, plan_187, "c2", "VP1", BRANCH_PHASE, out, NOW)
    assert _files(out) == kept


# ------------------------------------------------------------- `kiemdiem consolidate` output


def _consolidate_cli() -> typer.Typer:
    from kiemdiem.cli.consolidate_cmd import register as register_consolidate

    return command_shell(register_consolidate)


def test_consolidate_lists_levels_best_first_for_a_stored_version_as_for_a_look_back(store, plan_187, campaign):
    """A stored snapshot's payload comes back with its keys sorted (HTNV, HTTNV, HTXSNV, KHTNV); the
    command prints it, in text and JSON, in the usual order, as it prints a look-back. The quota's
    scope is not put in brackets inside brackets."""
    from tests.store.test_results_intake import KC_LIST, SCT_MEMBERS, SCT_ORGS, VP1_LIST, VP2_LIST

    for unit, text in (("VP1", VP1_LIST), ("VP2", VP2_LIST), ("KC", KC_LIST)):
        submit(store, plan_187, unit, "tong_hop_xep_loai_dang_vien", [("tong_hop.csv", text.encode())], ict(2023, 12, 4, 10))
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", [("qd.csv", SCT_MEMBERS.encode()), ("qd_tc.csv", SCT_ORGS.encode())], ict(2023, 12, 8, 9))
    runner = CliRunner()

    def run(*args):
        done = runner.invoke(_consolidate_cli(), ["consolidate", "--campaign", "c187", *args])
        assert done.exit_code == 0, done.output
        return done.output

    def order(output: str) -> list[str]:
        text = " ".join(output.split())
        return sorted(("HTXSNV", "HTTNV", "HTNV", "KHTNV"), key=lambda lv: text.index(f"{lv} – "))

    stored = run("--at", "08/12/2023 12:00")
    assert "phiên bản 1" in stored
    assert order(stored) == ["HTXSNV", "HTTNV", "HTNV", "KHTNV"]
    again = run("--at", "08/12/2023 13:00")  # nothing new: the stored version, read back from the database
    assert "phiên bản 1" in again and order(again) == ["HTXSNV", "HTTNV", "HTNV", "KHTNV"]
    look_back = run("--at", "08/12/2023 10:00")
    assert "xem lại tại" in look_back and order(look_back) == ["HTXSNV", "HTTNV", "HTNV", "KHTNV"]

    data = json.loads(run("--at", "08/12/2023 13:00", "--json"))
    summary = data["units"][0]["summary"]
    assert data["units"][0]["version"] == 1
    for part in ("members", "organizations"):
        assert list(summary[part]["levels"]) == ["HTXSNV", "HTTNV", "HTNV", "KHTNV"]
    assert list(summary["members"]["not_evaluated"]) == ["exempt", "suspended", "new_member"]

    branch = " ".join(run("--at", "08/12/2023 13:00", "--unit", "VP1").split())
    assert "Hạn mức 20% tính toàn cây (chỉ để tham khảo):" in branch
    assert "(toàn cây (chỉ để tham khảo))" not in branch


def test_a_supplement_list_keeps_the_first_list_in_the_archive(store, plan_187, campaign, tmp_path):
    """A classification list covers only the members it names: the supplement for an absent
    member sits beside the first list, which stays in the archive (under lan_1/), and the
    checklist says a list was added, not resent."""
    header = b"Ma dang vien,Tu xep loai,Chi bo de xuat\n"
    submit(store, plan_187, "VP1", "tong_hop_xep_loai_dang_vien", [("tong_hop.csv", header + b"DV001,HTTNV,HTTNV\n")], ict(2023, 12, 4, 10))
    submit(store, plan_187, "VP1", "tong_hop_xep_loai_dang_vien", [("bo_sung.csv", header + b"DV002,HTTNV,HTTNV\n")], ict(2023, 12, 11, 9))
    result = assemble(store, plan_187, tmp_path / "out", now=ict(2023, 12, 12, 9))
    with zipfile.ZipFile(result.archive) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        by_path = {e["path"]: e for e in manifest["files"]}
        assert archive.read("files/tong_hop_xep_loai_dang_vien/lan_1/tong_hop.csv").endswith(b"DV001,HTTNV,HTTNV\n")
        assert archive.read("files/tong_hop_xep_loai_dang_vien/bo_sung.csv").endswith(b"DV002,HTTNV,HTTNV\n")
    assert by_path["files/tong_hop_xep_loai_dang_vien/lan_1/tong_hop.csv"]["version"] == 1
    assert by_path["files/tong_hop_xep_loai_dang_vien/bo_sung.csv"]["version"] == 2
    assert not manifest["superseded"]
    item = next(i for i in result.checklist["items"] if i["doc_type"] == "tong_hop_xep_loai_dang_vien")
    assert item["timeliness"] == "Đúng hạn (lần đầu 04/12/2023), nộp thêm danh sách sau hạn 11/12/2023"


def test_an_absent_members_result_is_marked_as_a_supplement(store, plan_187, campaign):
    """Rule 4: absent at the meeting, evaluated at the next one and reported as a supplement. The
    classification list says both: while the result is awaited, and once it came."""
    header = b"Ma dang vien,Tu xep loai,Chi bo de xuat,Vang mat,Ghi chu\n"
    submit(store, plan_187, "VP1", "tong_hop_xep_loai_dang_vien",
           [("tong_hop.csv", header + b"DV001,HTTNV,HTTNV,,\nDV002,,,x,Di hoc\n")], ict(2023, 12, 4, 10))
    ingest_results(store, plan_187, "c187", ict(2023, 12, 4, 11))

    def notes(at):
        consolidate_campaign(store, plan_187, "c187", at)  # the list goes with a consolidation
        with store.uow() as uow:
            payload = latest_snapshots(uow, "c187", ["VP1"])["VP1"]["payload"]
            rows = load_dossier_input(uow, plan_187, "c187", "VP1", "chi_bo_kiem_diem", at, payload).classification_rows
        return {r["member_id"]: r["note"] for r in rows}

    assert notes(ict(2023, 12, 5, 9))["DV002"] == "Vắng mặt tại hội nghị, đánh giá bổ sung sau; Di hoc"
    submit(store, plan_187, "VP1", "tong_hop_xep_loai_dang_vien", [("bo_sung.csv", header + b"DV002,HTTNV,HTTNV,,\n")], ict(2023, 12, 11, 9))
    ingest_results(store, plan_187, "c187", ict(2023, 12, 11, 10))
    later = notes(ict(2023, 12, 12, 9))
    assert later["DV002"] == "Đánh giá bổ sung (vắng mặt tại hội nghị)" and later["DV001"] == ""
