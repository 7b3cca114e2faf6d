"""Results intake on SQLite and PostgreSQL: lists submitted as documents become result rows.

Covers the member list, a branch's own result, a committee's decision (on members and on
organizations), supplements, refused files (kept, logged with rows and reasons, previous
results untouched), cancellation with history, overrides, and a second pass that changes nothing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kiemdiem.consolidation import MemberResult as MemberResultValue
from kiemdiem.consolidation import OrgResult as OrgResultValue
from kiemdiem.errors import InvalidInput, NotFound, Refused
from kiemdiem.store.models import EventLog, FindingOverride, Member, MemberResult, OrgResult, Submission, Unit
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.results import cancel_result, ingest_results, override_finding, record_results
from kiemdiem.store.snapshots import consolidate_campaign, latest_snapshots
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.store.snapshots import load_consolidation_input
from kiemdiem.synth_results import generate_results, write_member_list, write_org_list, write_unit_list
from tests.support import SMALL_MEMBERS, ict, table_counts, write_small_org

SETUP_AT = ict(2023, 11, 20, 8)
BRANCH_AT = ict(2023, 12, 4, 10)
DECISION_AT = ict(2023, 12, 8, 9)
NOW = ict(2023, 12, 8, 12)

HEADER = "STT,Mã đảng viên,Họ và tên,Tự xếp loại,Chi bộ đề xuất,Kỷ luật,Vắng mặt,Ghi chú\n"
VP1_LIST = HEADER + "1,DV001,Nguyễn Sỹ Chín,HTXSNV,HTTNV,,,\n2,DV002,Trần Thị Hoa,HTTNV,HTTNV,,,\n3,DV003,Lê Văn Nam,,,,,Miễn sinh hoạt\n"
VP2_LIST = HEADER + "1,DV004,Lê Xuân Tiến,HTTNV,HTTNV,,,\n2,DV005,Phạm Minh Đức,,,,,Mới kết nạp\n"
KC_LIST = HEADER + "1,DV006,Nguyễn Trọng Thức,HTTNV,HTTNV,,,\n2,DV007,Hoàng Thị Lan,,,,x,Đi học\n"
SCT_MEMBERS = "Mã đảng viên,Quyết định xếp loại\nDV001,HTTNV\nDV002,HTXSNV\nDV004,HTTNV\nDV006,HTTNV\n"
SCT_ORGS = "Mã đơn vị,Tên đơn vị,Xếp loại\nVP1,Chi bộ Văn phòng 1,HTTNV\nVP2,Chi bộ Văn phòng 2,HTXSNV\nKC,Chi bộ Khuyến công,HTTNV\n"


@pytest.fixture
def campaign(store, plan_187, tmp_path):
    units, members = write_small_org(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", SETUP_AT)
        import_organization(uow, "c187", units, members, SETUP_AT)
        uow.commit()
    return "c187"


def submit(store, plan, unit, doc, files: dict[str, bytes | str], at):
    incoming = [IncomingFile(name, data=data.encode() if isinstance(data, str) else data) for name, data in files.items()]
    with store.uow() as uow:
        outcome = record_submission(uow, store.blobs, plan, "c187", unit, doc, incoming, at, "cli", actor="test")
        uow.commit()
    return outcome


@pytest.fixture
def branch_lists_delivered(store, plan_187, campaign):
    submit(store, plan_187, "VP1", "tong_hop_xep_loai_dang_vien", {"tong_hop.csv": VP1_LIST}, BRANCH_AT)
    submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien", {"tong_hop.csv": VP2_LIST}, BRANCH_AT)
    submit(store, plan_187, "KC", "tong_hop_xep_loai_dang_vien", {"tong_hop.csv": KC_LIST, "bien_ban.pdf": b"%PDF-1.4"}, BRANCH_AT)
    submit(store, plan_187, "VP1", "ket_qua_xep_loai_chi_bo", {"ket_qua.csv": "Mã đơn vị,Tự xếp loại\nVP1,HTXSNV\n"}, BRANCH_AT)


@pytest.fixture
def committee_decided(store, plan_187, branch_lists_delivered):
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {"qd_dang_vien.csv": SCT_MEMBERS, "qd_to_chuc.csv": SCT_ORGS}, DECISION_AT)


def current_members(store) -> dict[str, MemberResult]:
    with store.uow() as uow:
        rows = uow.session.execute(
            select(Member.member_code, MemberResult).join(Member, Member.id == MemberResult.member_id).where(MemberResult.current.is_(True))
        ).all()
        uow.session.expunge_all()  # keep the loaded values after the unit of work rolls back
    return {code: row for code, row in rows}


def member_history(store, code: str) -> list[MemberResult]:
    with store.uow() as uow:
        rows = list(
            uow.session.scalars(
                select(MemberResult).join(Member, Member.id == MemberResult.member_id).where(Member.member_code == code).order_by(MemberResult.id)
            )
        )
        uow.session.expunge_all()
    return rows


def current_orgs(store) -> dict[str, tuple]:
    with store.uow() as uow:
        decider = Unit.__table__.alias("decider")
        rows = uow.session.execute(
            select(Unit.code, OrgResult.level, OrgResult.self_level, decider.c.code)
            .join(Unit, Unit.id == OrgResult.unit_id)
            .outerjoin(decider, decider.c.id == OrgResult.decided_by_id)
            .where(OrgResult.current.is_(True))
        ).all()
    return {code: (level, self_level, decided_by) for code, level, self_level, decided_by in rows}


def events(store, action: str) -> list[EventLog]:
    with store.uow() as uow:
        rows = list(uow.session.scalars(select(EventLog).where(EventLog.action == action).order_by(EventLog.id)))
        uow.session.expunge_all()
    return rows


def test_branch_lists_and_committee_decision_become_current_results(store, plan_187, committee_decided):
    report = ingest_results(store, plan_187, "c187", NOW)
    assert len(report.ingested) == 5 and not report.refused
    assert report.changed_units == {"VP1", "VP2", "KC"}
    current = current_members(store)
    assert set(current) == {f"DV00{i}" for i in range(1, 8)}
    # The decision supersedes the proposal and keeps what only the branch's list said.
    dv001 = current["DV001"]
    assert (dv001.self_level, dv001.proposed_level, dv001.final_level) == ("HTXSNV", "HTTNV", "HTTNV")
    history = member_history(store, "DV001")
    assert [r.current for r in history] == [False, True]
    assert history[0].final_level is None and history[0].cancelled_at is None
    # Absent, not in the decision: the branch's row stands, with the absence and the note.
    assert current["DV007"].absent and current["DV007"].final_level is None and current["DV007"].note == "Đi học"
    # Not evaluated members are listed without a level.
    assert current["DV003"].final_level is None and current["DV003"].proposed_level is None
    assert current_orgs(store) == {
        "VP1": ("HTTNV", "HTXSNV", "SCT"),  # self-assessment kept, decision added
        "VP2": ("HTXSNV", None, "SCT"),
        "KC": ("HTTNV", None, "SCT"),
    }
    with store.uow() as uow:
        submitters = dict(
            uow.session.execute(select(MemberResult.id, Unit.code).join(Unit, Unit.id == MemberResult.unit_id)).all()
        )
    assert submitters[dv001.id] == "SCT" and submitters[history[0].id] == "VP1"
    ingested = events(store, "results.ingested")
    assert len(ingested) == 5 and all("changed_units" in e.detail for e in ingested)


def test_second_pass_changes_nothing(store, plan_187, committee_decided):
    ingest_results(store, plan_187, "c187", NOW)
    before = table_counts(store)
    again = ingest_results(store, plan_187, "c187", NOW)
    assert again.ingested == [] and again.changed_units == set()
    assert table_counts(store) == before


def test_every_list_received_by_now_is_read_in_order(store, plan_187, campaign):
    """A list and the supplement after it, both sent before a tick, give what they give with a
    tick between them: the newer wins a member both name, a member only the first names keeps
    its result from it (a supplement does not erase the first list)."""
    first = submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien", {"a.csv": HEADER + "1,DV004,,HTNV,HTNV,,,\n2,DV005,,HTTNV,HTTNV,,,\n"}, ict(2023, 12, 1, 9))
    newest = submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien", {"b.csv": HEADER + "1,DV004,,HTTNV,HTTNV,,,\n"}, ict(2023, 12, 2, 9))
    future = submit(store, plan_187, "KC", "tong_hop_xep_loai_dang_vien", {"c.csv": KC_LIST}, ict(2023, 12, 20, 9))
    report = ingest_results(store, plan_187, "c187", ict(2023, 12, 3, 9))
    assert report.ingested == [first.submission_id, newest.submission_id]
    assert current_members(store)["DV004"].proposed_level == "HTTNV"
    assert current_members(store)["DV005"].proposed_level == "HTTNV"  # named in the first list only
    assert [r.proposed_level for r in member_history(store, "DV004")] == ["HTNV", "HTTNV"]
    later = ingest_results(store, plan_187, "c187", ict(2023, 12, 21, 9))
    assert later.ingested == [future.submission_id]


def blob_files(store) -> list:
    return sorted(p for p in store.blobs.root.rglob("*") if p.is_file())


def test_bad_list_is_refused_at_submission_with_rows_and_nothing_is_stored(store, plan_187, branch_lists_delivered):
    ingest_results(store, plan_187, "c187", NOW)
    before, blobs = table_counts(store), blob_files(store)
    bad = HEADER + "1,DV004,Lê Xuân Tiến,HTTNV,Hoàn thành tốt lắm,,,\n2,DV001,Nguyễn Sỹ Chín,HTTNV,HTTNV,,,\n3,DV005,,HTNV,HTNV,có lẽ,,\n"
    with pytest.raises(InvalidInput) as info:
        submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien", {"sai.csv": bad}, ict(2023, 12, 9, 9))
    problems = info.value.problems
    assert {(p.row, p.field) for p in problems} == {(2, "proposed_level"), (3, "member_id"), (4, "disciplined")}
    texts = [str(p) for p in problems]
    assert any(t.startswith("sai.csv, dòng 3") and "DV001" in t for t in texts)
    assert any("Hoàn thành tốt lắm" in t for t in texts)
    # Refused at the door: no submission, no file, and the unit's readable list stays its current one.
    assert table_counts(store) == before and blob_files(store) == blobs


def test_a_list_the_tree_no_longer_fits_is_refused_by_the_ingest_and_logged_once(store, plan_187, branch_lists_delivered, tmp_path):
    """Read at submission and again by the ingest, against the tree of its time: here DV004 moved to
    VP1 between the two (a re-import), so VP2's list names a member it no longer has."""
    ingest_results(store, plan_187, "c187", NOW)
    before = current_members(store)
    outcome = submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien",
                     {"bo_sung.csv": HEADER + "1,DV004,Lê Xuân Tiến,HTTNV,HTXSNV,,,\n"}, ict(2023, 12, 9, 9))
    units, members = write_small_org(tmp_path / "moved", members=SMALL_MEMBERS.replace("DV004,Lê Xuân Tiến,VP2", "DV004,Lê Xuân Tiến,VP1"))
    with store.uow() as uow:
        import_organization(uow, "c187", units, members, ict(2023, 12, 9, 9, 30))
        uow.commit()
    counts = table_counts(store)
    report = ingest_results(store, plan_187, "c187", ict(2023, 12, 9, 10))
    assert report.ingested == [] and report.changed_units == set()
    (refused,) = report.refused
    assert refused.submission_id == outcome.submission_id and refused.unit_code == "VP2"
    (problem,) = refused.problems
    assert (problem.row, problem.field) == (2, "member_id") and "DV004" in str(problem)
    assert str(problem).startswith("VP2/tong_hop_xep_loai_dang_vien/bo_sung.csv, dòng 2")
    # Nothing written but the log line; the file stays stored as the current submission.
    after = table_counts(store)
    assert after["member_results"] == counts["member_results"] and after["event_log"] == counts["event_log"] + 1
    assert all(current_members(store)[k].id == before[k].id for k in before)
    (logged,) = events(store, "results.refused")
    assert [p["row"] for p in logged.detail["problems"]] == [2]
    with store.uow() as uow:
        assert uow.session.get(Submission, outcome.submission_id) is not None
    assert ingest_results(store, plan_187, "c187", ict(2023, 12, 9, 11)).refused == []  # reported once
    assert len(events(store, "results.refused")) == 1


BAD_FILES = [
    ("member of another branch", "VP1", "tong_hop_xep_loai_dang_vien", {"x.csv": HEADER + "1,DV004,,HTTNV,HTTNV,,,\n"},
     (2, "member_id"), "không có trong danh sách đảng viên của đơn vị"),
    ("unknown column", "VP1", "tong_hop_xep_loai_dang_vien", {"x.csv": "Mã đảng viên,Khen thưởng\nDV001,x\n"},
     (1, "Khen thưởng"), "cột không được hỗ trợ"),
    # One known column: the header is found by the fallback, and the rows the search read under it
    # are the list's (they were dropped, and an empty list was taken without a word).
    ("list with the code column only", "VP1", "tong_hop_xep_loai_dang_vien", {"x.csv": "Mã đảng viên\nDV001\n"},
     (2, "final_level"), "chưa có mức xếp loại"),
    ("code column and a signature column", "VP1", "tong_hop_xep_loai_dang_vien", {"x.csv": "Mã đảng viên,Chữ ký\nDV001,\n"},
     (2, "final_level"), "chưa có mức xếp loại"),
    ("no table", "VP1", "tong_hop_xep_loai_dang_vien", {"scan.pdf": b"%PDF-1.4"}, (None, None), "không có tệp CSV hoặc XLSX"),
    ("not a spreadsheet", "VP1", "tong_hop_xep_loai_dang_vien", {"x.xlsx": b"not a zip"}, (None, None), "không mở được tệp Excel"),
    ("organization outside the subtree", "VP1", "ket_qua_xep_loai_chi_bo", {"x.csv": "Mã đơn vị,Xếp loại\nVP2,HTTNV\n"},
     (2, "unit"), "không thuộc Chi bộ Văn phòng 1"),
    ("unknown organization", "VP1", "ket_qua_xep_loai_chi_bo", {"x.csv": "Mã đơn vị,Xếp loại\nZZ9,HTTNV\n"},
     (2, "unit"), "không có trong cây tổ chức"),
    ("committee deciding itself", "SCT", "quyet_dinh_xep_loai", {"x.csv": "Mã đơn vị,Xếp loại\nSCT,HTTNV\n"},
     (2, "unit"), "không tự quyết định"),
    ("decision of neither kind", "SCT", "quyet_dinh_xep_loai", {"x.csv": "Ghi chú\nabc\n"}, (1, None), "không nhận ra danh sách"),
    ("member twice across files", "SCT", "quyet_dinh_xep_loai",
     {"a.csv": "Mã đảng viên,Quyết định xếp loại\nDV001,HTTNV\n", "b.csv": "Mã đảng viên,Quyết định xếp loại\nDV001,HTNV\n"},
     (None, "member_id"), "đã có trong tệp a.csv"),
]


@pytest.mark.parametrize("label, unit, doc, files, where, reason", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_every_bad_list_is_refused_at_submission_with_where_and_why(store, plan_187, campaign, label, unit, doc, files, where, reason):
    before, blobs = table_counts(store), blob_files(store)
    with pytest.raises(InvalidInput) as info:
        submit(store, plan_187, unit, doc, files, BRANCH_AT)
    assert any(reason in p.reason and (p.row, p.field) == where for p in info.value.problems), info.value.problems
    assert table_counts(store) == before and blob_files(store) == blobs


def test_supplement_touches_only_the_members_it_lists(store, plan_187, committee_decided):
    ingest_results(store, plan_187, "c187", NOW)
    before = current_members(store)
    submit(store, plan_187, "KC", "tong_hop_xep_loai_dang_vien", {"bo_sung.csv": HEADER + "1,DV007,Hoàng Thị Lan,HTTNV,HTTNV,,,\n"}, ict(2023, 12, 12, 9))
    report = ingest_results(store, plan_187, "c187", ict(2023, 12, 12, 10))
    assert report.changed_units == {"KC"} and report.member_rows == 1
    after = current_members(store)
    assert {k for k in after if after[k].id != before[k].id} == {"DV007"}
    assert after["DV007"].proposed_level == "HTTNV" and not after["DV007"].absent
    # The committee's supplementary decision adds the final level and keeps the branch's data.
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {"qd_bo_sung.csv": "Mã đảng viên,Quyết định xếp loại\nDV007,HTTNV\n"}, ict(2023, 12, 13, 9))
    ingest_results(store, plan_187, "c187", ict(2023, 12, 13, 10))
    dv007 = current_members(store)["DV007"]
    assert (dv007.self_level, dv007.proposed_level, dv007.final_level) == ("HTTNV", "HTTNV", "HTTNV")
    assert current_members(store)["DV001"].id == after["DV001"].id


def test_resubmitted_list_adds_rows_only_for_what_changed(store, plan_187, branch_lists_delivered):
    ingest_results(store, plan_187, "c187", NOW)
    corrected = VP1_LIST.replace("2,DV002,Trần Thị Hoa,HTTNV,HTTNV", "2,DV002,Trần Thị Hoa,HTTNV,HTXSNV")
    submit(store, plan_187, "VP1", "tong_hop_xep_loai_dang_vien", {"tong_hop_v2.csv": corrected}, ict(2023, 12, 5, 9))
    report = ingest_results(store, plan_187, "c187", ict(2023, 12, 5, 10))
    assert report.member_rows == 1 and report.changed_units == {"VP1"}
    assert current_members(store)["DV002"].proposed_level == "HTXSNV"
    assert len(member_history(store, "DV001")) == 1


def test_xlsx_list_is_read(store, plan_187, campaign, tmp_path):
    results = [
        MemberResultValue("DV004", "VP2", "HTTNV", "HTTNV", None, False, 0.0, False, None, "", True),
        MemberResultValue("DV005", "VP2", None, None, None, False, 0.0, False, None, "Mới kết nạp", True),
    ]
    path = write_member_list(tmp_path / "tong_hop.xlsx", results, {"DV004": "Lê Xuân Tiến", "DV005": "Phạm Minh Đức"}, decided=False)
    submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien", {"tong_hop.xlsx": path.read_bytes()}, BRANCH_AT)
    report = ingest_results(store, plan_187, "c187", NOW)
    assert not report.refused and report.member_rows == 2
    assert current_members(store)["DV004"].proposed_level == "HTTNV"


def test_a_list_as_an_office_makes_it_is_read_as_meant(store, plan_187, campaign):
    """The forms' headers and profile columns, the short level wordings, and what copying leaves in
    cells (a zero-width space behind a code, a full-width code, a no-break space)."""
    text = (
        "STT,Mã đảng viên,Họ và tên đảng viên,Quê quán,Ngày vào Đảng,Đảng viên tự xếp loại,Chi bộ đề nghị xếp loại,Kỷ luật,Chữ ký\n"
        "1,DV004\u200b,Lê Xuân Tiến,Hà Tĩnh,02/09/1998,Hoàn thành tốt,HTXS NV,,\n"
        "2,ＤＶ００５,Phạm Minh Đức,Nghệ An,01/09/2023,Hoàn thành NV,Hoàn thành\u00a0tốt NV,ｘ,\n"
    )
    submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien", {"tong_hop.csv": text}, BRANCH_AT)
    report = ingest_results(store, plan_187, "c187", NOW)
    assert not report.refused and report.member_rows == 2
    current = current_members(store)
    assert (current["DV004"].self_level, current["DV004"].proposed_level, current["DV004"].disciplined) == ("HTTNV", "HTXSNV", False)
    assert (current["DV005"].self_level, current["DV005"].proposed_level, current["DV005"].disciplined) == ("HTNV", "HTTNV", True)


def test_cancel_keeps_history_and_needs_who_and_why(store, plan_187, committee_decided):
    ingest_results(store, plan_187, "c187", NOW)
    cancelled_at = ict(2023, 12, 15, 9)
    with store.uow() as uow:
        outcome = cancel_result(uow, "c187", member_code="DV002", by="Đảng ủy Sở", reason="Xếp loại sai, ban hành lại", now=cancelled_at)
        uow.commit()
    assert outcome.changed_unit == "VP1"
    assert "DV002" not in current_members(store)
    rows = member_history(store, "DV002")
    assert len(rows) == 2 and not any(r.current for r in rows)
    last = rows[-1]
    assert (last.cancelled_by, last.cancel_reason, last.cancelled_at) == ("Đảng ủy Sở", "Xếp loại sai, ban hành lại", cancelled_at)
    assert last.final_level == "HTXSNV"  # the cancelled decision is kept as it was
    (logged,) = events(store, "result.cancelled")
    assert logged.detail["changed_units"] == ["VP1"] and logged.actor == "Đảng ủy Sở"
    with store.uow() as uow:
        unit = cancel_result(uow, "c187", unit_code="VP2", by="Đảng ủy Sở", reason="Ban hành lại", now=cancelled_at)
        uow.commit()
    assert unit.changed_unit == "VP2" and "VP2" not in current_orgs(store)

    before = table_counts(store)
    for kwargs, error, text in [
        (dict(member_code="DV002"), NotFound, "không có kết quả xếp loại hiện hành"),
        (dict(member_code="DV999"), NotFound, "đảng viên không tồn tại"),
        (dict(unit_code="NOPE"), NotFound, "đơn vị không tồn tại"),
        (dict(member_code="DV001", unit_code="VP1"), InvalidInput, "chọn đúng một"),
        (dict(), InvalidInput, "chọn đúng một"),
    ]:
        with store.uow() as uow, pytest.raises(error, match=text):
            cancel_result(uow, "c187", by="x", reason="y", now=cancelled_at, **kwargs)
    with store.uow() as uow, pytest.raises(InvalidInput) as info:
        cancel_result(uow, "c187", member_code="DV001", by=" ", reason="", now=cancelled_at)
    assert {p.field for p in info.value.problems} == {"by", "reason"}
    assert table_counts(store) == before


def test_a_decision_issued_again_after_a_cancellation_keeps_the_branchs_facts(store, plan_187, campaign):
    """Rule 8: the committee cancels a result and decides again. Its new list has only the member
    and the level: what the branch's list said of the member (disciplined, self-assessment,
    proposal, absent) still holds, so a disciplined member rated HTTNV is still a breach."""
    submit(store, plan_187, "VP1", "tong_hop_xep_loai_dang_vien",
           {"tong_hop.csv": HEADER + "1,DV002,Trần Thị Hoa,HTTNV,HTTNV,x,,\n"}, BRANCH_AT)
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {"qd.csv": "Mã đảng viên,Quyết định xếp loại\nDV002,HTNV\n"}, DECISION_AT)
    ingest_results(store, plan_187, "c187", NOW)
    with store.uow() as uow:
        cancel_result(uow, "c187", member_code="DV002", by="Đảng ủy Sở", reason="Xếp loại lại", now=ict(2023, 12, 15, 9))
        uow.commit()
    again = ict(2023, 12, 16, 9)
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {"qd_lai.csv": "Mã đảng viên,Quyết định xếp loại\nDV002,HTTNV\n"}, again)
    ingest_results(store, plan_187, "c187", again)
    now = current_members(store)["DV002"]
    assert (now.final_level, now.disciplined, now.self_level, now.proposed_level, now.has_self_review) == ("HTTNV", True, "HTTNV", "HTTNV", True)
    assert now.note == ""  # a note explained the cancelled decision, not this one
    report = consolidate_campaign(store, plan_187, "c187", again)
    assert report.units_updated
    with store.uow() as uow:
        findings = latest_snapshots(uow, "c187", ["VP1"])["VP1"]["payload"]["findings"]
    assert [f["rule"] for f in findings if f.get("member_id") == "DV002"] == ["disciplined_member"]


def test_override_is_recorded_once_with_who_and_why(store, plan_187, committee_decided):
    ingest_results(store, plan_187, "c187", NOW)
    consolidate_campaign(store, plan_187, "c187", NOW)
    key = "cap_organizations:SCT:"  # one HTXSNV branch over two HTTNV: cap 0
    at = ict(2023, 12, 9, 9)
    with store.uow() as uow:
        override_finding(uow, "c187", key, "Đồng chí Bí thư", "Thành tích đột xuất được Khối ghi nhận", at)
        uow.commit()
    with store.uow() as uow:
        row = uow.session.scalar(select(FindingOverride))
        assert (row.finding_key, row.by, row.reason, row.at) == (key, "Đồng chí Bí thư", "Thành tích đột xuất được Khối ghi nhận", at)
    (logged,) = events(store, "finding.overridden")
    assert logged.detail["changed_units"] == ["SCT"] and "HTXSNV" in logged.detail["message"]
    before = table_counts(store)
    with store.uow() as uow:
        override_finding(uow, "c187", key, "Đồng chí Bí thư", "Thành tích đột xuất được Khối ghi nhận", at)  # same: no-op
        uow.commit()
    assert table_counts(store) == before
    for args, error, text in [
        ((key, "Người khác", "Lý do khác"), Refused, "đã được Đồng chí Bí thư chấp thuận"),
        (("cap_members:VP1:", "A", "B"), NotFound, "không có vi phạm"),
        (("linh-tinh", "A", "B"), InvalidInput, "mã vi phạm không hợp lệ"),
        ((key, "", "B"), InvalidInput, "người quyết định"),
    ]:
        with store.uow() as uow, pytest.raises(error, match=text):
            override_finding(uow, "c187", *args, at)
    assert table_counts(store) == before


def test_record_results_directly_and_refuse_unknown_codes(store, plan_187, campaign):
    member = MemberResultValue("DV001", "VP1", "HTTNV", "HTTNV", "HTTNV", False, 0.0, False, None, "", True)
    org = OrgResultValue("VP1", "HTTNV", "SCT", False, "HTTNV")
    with store.uow() as uow:
        changed = record_results(uow, plan_187, "c187", NOW, [member], [org])
        uow.commit()
    assert changed == {"VP1"}
    assert current_members(store)["DV001"].final_level == "HTTNV"
    assert current_orgs(store)["VP1"] == ("HTTNV", "HTTNV", "SCT")
    before = table_counts(store)
    with store.uow() as uow:
        assert record_results(uow, plan_187, "c187", NOW, [member], [org]) == set()  # same again: nothing
        uow.commit()
    assert table_counts(store) == before
    with store.uow() as uow, pytest.raises(InvalidInput) as info:
        unknown = MemberResultValue("DV999", "VP9", None, None, "HTNV", False, 0.0, False, None, "", True)
        record_results(uow, plan_187, "c187", NOW, [unknown], [OrgResultValue("VP1", "HTNV", "XX", False)])
    assert {(p.field, p.row) for p in info.value.problems} == {("member_id", 1), ("unit_code", 1), ("decided_by", 1)}
    assert table_counts(store) == before


def test_generated_lists_round_trip_through_intake(store, plan_187, campaign, tmp_path):
    with store.uow() as uow:
        org = load_consolidation_input(uow, plan_187, "c187", NOW)
    generated = generate_results(org.units, org.members, seed=7, evaluation_date=plan_187.evaluation_date)
    assert generated == generate_results(org.units, org.members, seed=7, evaluation_date=plan_187.evaluation_date)
    assert {r.member_id for r in generated.member_results} == {m.member_id for m in org.members}
    assert {r.unit_code for r in generated.org_results} == {"VP1", "VP2", "KC"} and {r.decided_by for r in generated.org_results} == {"SCT"}
    for unit, suffix in (("VP1", ".csv"), ("VP2", ".xlsx"), ("KC", ".csv")):
        path = write_unit_list(tmp_path / f"{unit}{suffix}", unit, org.units, org.members, generated.member_results, decided=False)
        submit(store, plan_187, unit, "tong_hop_xep_loai_dang_vien", {path.name: path.read_bytes()}, BRANCH_AT)
    decision = write_unit_list(tmp_path / "qd.xlsx", "SCT", org.units, org.members, generated.member_results, subtree=True)
    orgs = write_org_list(tmp_path / "qd_to_chuc.csv", generated.org_results, {u.code: u.name for u in org.units})
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {decision.name: decision.read_bytes(), orgs.name: orgs.read_bytes()}, DECISION_AT)
    report = ingest_results(store, plan_187, "c187", NOW)
    assert not report.refused and len(report.ingested) == 4
    current = current_members(store)
    for r in generated.member_results:
        row = current[r.member_id]
        assert (row.self_level, row.proposed_level, row.final_level, row.disciplined) == (r.self_level, r.proposed_level, r.final_level, r.disciplined)
    assert current_orgs(store) == {r.unit_code: (r.level, r.self_level, "SCT") for r in generated.org_results}


def test_a_branch_list_sent_after_the_committee_decided_does_not_undo_the_decision(store, plan_187, committee_decided):
    """The committee decides DV001 HTTNV (VP1 proposed HTTNV, self HTXSNV); VP1 later sends a list
    proposing HTXSNV for DV001 (and for DV002 what it proposed before). The decision stands; the
    list is kept with its submission and the ingest says whose result it did not change."""
    ingest_results(store, plan_187, "c187", NOW)
    before = {code: (r.final_level, r.note) for code, r in current_members(store).items()}
    later = ict(2023, 12, 10, 9)
    resent = HEADER + "1,DV001,Nguyễn Sỹ Chín,HTXSNV,HTXSNV,,,\n2,DV002,Trần Thị Hoa,HTTNV,HTTNV,,,\n"
    submit(store, plan_187, "VP1", "tong_hop_xep_loai_dang_vien", {"tong_hop_lai.csv": resent}, later)
    report = ingest_results(store, plan_187, "c187", ict(2023, 12, 10, 10))
    assert report.changed_units == set()
    assert {code: (r.final_level, r.note) for code, r in current_members(store).items()} == before
    assert report.kept_decisions == [{"submission_id": report.ingested[0], "unit_code": "VP1", "subject": "DV001", "decided_by": "SCT"}]
    assert events(store, "results.ingested")[-1].detail["kept_decisions"] == [{"subject": "DV001", "decided_by": "SCT"}]
    # The committee deciding again is applied, and its note is not carried onto another level.
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {"qd_lai.csv": "Mã đảng viên,Quyết định xếp loại,Ghi chú\nDV002,HTTNV,Quyết định số 15-QĐ/ĐU\n"}, ict(2023, 12, 11, 9))
    ingest_results(store, plan_187, "c187", ict(2023, 12, 11, 10))
    assert (current_members(store)["DV002"].final_level, current_members(store)["DV002"].note) == ("HTTNV", "Quyết định số 15-QĐ/ĐU")
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {"qd_lai_2.csv": "Mã đảng viên,Quyết định xếp loại\nDV002,HTXSNV\n"}, ict(2023, 12, 12, 9))
    ingest_results(store, plan_187, "c187", ict(2023, 12, 12, 10))
    assert (current_members(store)["DV002"].final_level, current_members(store)["DV002"].note) == ("HTXSNV", "")


def test_a_decision_on_organizations_under_a_title_block_is_read_as_one(store, plan_187, campaign):
    """The title "QUYẾT ĐỊNH XẾP LOẠI" names a column by chance; the table under it is the header,
    and a table without a member id column is a decision on organizations."""
    import io

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in (["ĐẢNG ỦY SỞ CÔNG THƯƠNG", None, "ĐẢNG CỘNG SẢN VIỆT NAM"], ["QUYẾT ĐỊNH XẾP LOẠI"], [],
                ["STT", "Mã đơn vị", "Tên tổ chức đảng", "Xếp loại"], [1, "VP1", "Chi bộ Văn phòng 1", "HTTNV"],
                [2, "VP2", "Chi bộ Văn phòng 2", "HTXSNV"]):
        sheet.append(row)
    data = io.BytesIO()
    book.save(data)
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {"quyet_dinh.xlsx": data.getvalue()}, DECISION_AT)
    report = ingest_results(store, plan_187, "c187", NOW)
    assert not report.refused and report.changed_units == {"VP1", "VP2"}
    assert {code: current_orgs(store)[code][0] for code in ("VP1", "VP2")} == {"VP1": "HTTNV", "VP2": "HTXSNV"}


def test_a_form_with_two_header_rows_and_level_marks_is_read_as_meant(store, plan_187, campaign):
    """The form as offices draw it: "Kết quả xếp loại" merged over "Tự xếp loại" and "Chi bộ đề
    xuất", each merged over one column per level with an "x" in one. A second mark is refused at
    submission with its row and columns, and nothing is stored."""
    import io

    import openpyxl

    levels = ["HTXSNV", "HTTNV", "HTNV", "KHTNV"]
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["STT", "Mã đảng viên", "Họ và tên", "Tự xếp loại", None, None, None, "Chi bộ đề xuất", None, None, None])
    sheet.append([None, None, None, *levels, *levels])
    sheet.merge_cells("D1:G1")
    sheet.merge_cells("H1:K1")
    for column in "ABC":
        sheet.merge_cells(f"{column}1:{column}2")
    sheet.append([1, "DV004", "Lê Xuân Tiến", None, "x", None, None, "x", None, None, None])
    sheet.append([2, "DV005", "Phạm Minh Đức", None, None, "x", None, None, "x", None, None])

    def saved() -> bytes:
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()

    good = saved()
    sheet["J4"] = "x"
    before, blobs = table_counts(store), blob_files(store)
    with pytest.raises(InvalidInput) as info:
        submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien", {"mau.xlsx": saved()}, BRANCH_AT)
    (problem,) = info.value.problems
    assert (problem.row, problem.field) == (4, "proposed_level")
    assert "'HTTNV' và 'HTNV'" in problem.reason
    assert table_counts(store) == before and blob_files(store) == blobs
    submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien", {"mau.xlsx": good}, BRANCH_AT)
    report = ingest_results(store, plan_187, "c187", NOW)
    assert not report.refused and report.member_rows == 2
    current = current_members(store)
    assert (current["DV004"].self_level, current["DV004"].proposed_level) == ("HTTNV", "HTXSNV")
    assert (current["DV005"].self_level, current["DV005"].proposed_level) == ("HTNV", "HTTNV")
