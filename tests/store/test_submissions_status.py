"""Submissions (CLI path, drop folder) and status at any moment, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import func, select

from kiemdiem.errors import KiemdiemError, NotFound, Refused
from kiemdiem.store.intake import collect_drop_folder
from kiemdiem.store.models import Submission, SubmissionFile
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.queries import campaign_status
from kiemdiem.store.results import STRUCTURED_DOC_TYPES
from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.support import ict, readable_list, table_counts, write_small_org

SETUP_AT = ict(2023, 11, 20, 8)


@pytest.fixture
def campaign(store, plan_187, tmp_path):
    units, members = write_small_org(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", SETUP_AT)
        import_organization(uow, "c187", units, members, SETUP_AT)
        uow.commit()
    return "c187"


def submit(store, plan, unit, doc, data=b"noi dung", at=None, member=None, phase=None, name="bao_cao.pdf"):
    with store.uow() as uow:
        outcome = record_submission(
            uow, store.blobs, plan, "c187", unit, doc, [IncomingFile(name, data=data)], at or ict(2023, 12, 1, 10), "cli",
            member_code=member, phase_id=phase, actor="test",
        )
        uow.commit()
    return outcome


def test_submission_is_stored_with_checksum_and_timeliness(store, campaign, plan_187):
    outcome = submit(store, plan_187, "VP1", "bao_cao_kiem_diem_tap_the", b"%PDF-1.4 report", at=ict(2023, 12, 5, 23, 59, 59))
    assert outcome.created and outcome.on_time and outcome.phase_id == "chi_bo_kiem_diem"
    late = submit(store, plan_187, "VP2", "bao_cao_kiem_diem_tap_the", b"%PDF-1.4 other", at=ict(2023, 12, 6, 0, 0, 0))
    assert late.created and not late.on_time
    with store.uow() as uow:
        f = uow.session.scalar(select(SubmissionFile).where(SubmissionFile.submission_id == outcome.submission_id))
        assert f.size == len(b"%PDF-1.4 report")
        assert store.blobs.read(f.sha256) == b"%PDF-1.4 report"
        sub = uow.session.get(Submission, outcome.submission_id)
        assert sub.source == "cli" and sub.received_at == ict(2023, 12, 5, 23, 59, 59)


def test_resubmission_supersedes_and_keeps_history(store, campaign, plan_187):
    first = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"v1", at=ict(2023, 12, 1, 9))
    second = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"v2", at=ict(2023, 12, 2, 9))
    assert second.created and second.supersedes_id == first.submission_id
    with store.uow() as uow:
        subs = uow.session.scalars(select(Submission).where(Submission.item_key == first.item_key)).all()
        assert len(subs) == 2
    assert store.blobs.read(__import__("hashlib").sha256(b"v1").hexdigest()) == b"v1"


def test_identical_resubmission_is_noop(store, campaign, plan_187):
    first = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"same")
    before = table_counts(store)
    again = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"same", at=ict(2023, 12, 3, 9))
    assert not again.created and again.submission_id == first.submission_id
    assert table_counts(store) == before


BAD_SUBMISSIONS = [
    ("unknown unit", dict(unit="NOPE", doc="bien_ban_hoi_nghi"), NotFound, "đơn vị không tồn tại"),
    ("unknown document", dict(unit="VP1", doc="ban_tuyen_truyen"), Refused, "không có trong danh mục"),
    # The same answer for a member of another branch as for no member at all (nothing learnt about other units).
    ("unknown member", dict(unit="VP1", doc="ban_kiem_diem_ca_nhan", member="DV999"), NotFound, "đảng viên 'DV999' không sinh hoạt ở 'VP1'"),
    ("member of another branch", dict(unit="VP1", doc="ban_kiem_diem_ca_nhan", member="DV004"), NotFound, "đảng viên 'DV004' không sinh hoạt ở 'VP1'"),
    ("unknown phase", dict(unit="VP1", doc="bien_ban_hoi_nghi", phase="giai_doan_x"), Refused, "giai đoạn không tồn tại"),
    ("document the unit does not owe", dict(unit="SCT", doc="ket_qua_xep_loai_chi_bo"), Refused, "không phải nộp"),
    ("per-member document without member", dict(unit="VP1", doc="ban_kiem_diem_ca_nhan"), Refused, "--member"),
    ("per-unit document with member", dict(unit="VP1", doc="bien_ban_hoi_nghi", member="DV001"), Refused, "không phải nộp"),
    ("document outside the named phase", dict(unit="VP1", doc="bien_ban_hoi_nghi", phase="chi_bo_khac_phuc"), Refused, "không phải nộp"),
]


@pytest.mark.parametrize("label, args, error, reason", BAD_SUBMISSIONS, ids=[b[0] for b in BAD_SUBMISSIONS])
def test_bad_submission_is_refused_and_nothing_stored(store, campaign, plan_187, label, args, error, reason):
    before = table_counts(store)
    with pytest.raises(error) as info:
        submit(store, plan_187, **args)
    assert reason in str(info.value)
    assert table_counts(store) == before


def test_a_submission_recorded_with_an_earlier_time_goes_into_the_history(store, campaign, plan_187):
    later = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"%PDF minutes v2", at=ict(2023, 12, 6, 9))
    earlier = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"%PDF minutes v1", at=ict(2023, 12, 5, 16))
    assert earlier.created and not earlier.is_current and earlier.current_id == later.submission_id
    assert earlier.supersedes_id is None and earlier.on_time  # nothing came before it; on time at its own moment
    assert later.is_current
    before = table_counts(store)
    again = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"%PDF minutes v1", at=ict(2023, 12, 5, 16))
    assert not again.created and again.submission_id == earlier.submission_id
    assert table_counts(store) == before
    with store.uow() as uow:
        newest = uow.session.scalars(
            select(Submission).where(Submission.item_key == later.item_key).order_by(Submission.received_at.desc(), Submission.id.desc())
        ).first()
        assert newest.id == later.submission_id  # the later one stays current
    # Sent later again, the first content replaces the current one as usual.
    last = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"%PDF minutes v1", at=ict(2023, 12, 6, 10))
    assert last.created and last.is_current and last.supersedes_id == later.submission_id


def test_the_same_file_recorded_at_an_earlier_moment_is_filed_then(store, campaign, plan_187):
    """Uploaded late (or on a dashboard at the real clock during a replay), then recorded with the
    moment it really arrived: it was delivered then. Before, it was taken for a re-send and dropped."""
    late = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"%PDF minutes", at=ict(2023, 12, 8, 9))
    assert not late.on_time
    earlier = submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"%PDF minutes", at=ict(2023, 12, 5, 16))
    assert earlier.created and earlier.on_time and earlier.current_id == late.submission_id
    with store.uow() as uow:
        status = campaign_status(uow, plan_187, "c187", ict(2023, 12, 5, 17))
    (row,) = [r for r in status.for_unit("VP1") if r.phase_id == "chi_bo_kiem_diem"]
    assert not any(item.doc_type == "bien_ban_hoi_nghi" for item in row.missing)
    before = table_counts(store)
    assert not submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"%PDF minutes", at=ict(2023, 12, 5, 16)).created
    assert not submit(store, plan_187, "VP1", "bien_ban_hoi_nghi", b"%PDF minutes", at=ict(2023, 12, 9, 9)).created  # a re-send
    assert table_counts(store) == before


def test_a_file_already_filed_under_another_item_of_the_unit_is_kept_and_named(store, campaign, plan_187):
    """The wrong member's self-review chosen, the minutes filed as the report: kept (a scan may
    hold two documents), and the outcome names the other item so the sender can check."""
    first = submit(store, plan_187, "VP1", "ban_kiem_diem_ca_nhan", b"%PDF tu kiem diem DV001", member="DV001")
    assert first.same_files_as == ()
    wrong = submit(store, plan_187, "VP1", "ban_kiem_diem_ca_nhan", b"%PDF tu kiem diem DV001", member="DV002")
    assert wrong.created and wrong.same_files_as == (first.item_key,)
    other_unit = submit(store, plan_187, "VP2", "bien_ban_hoi_nghi", b"%PDF tu kiem diem DV001")
    assert other_unit.same_files_as == ()  # another unit's file is its own business


def owe_everything(store, plan, unit, members, at):
    """Submit every required item of the branch meeting phase for a unit."""
    phase = plan.phase("chi_bo_kiem_diem")
    for req in phase.documents:
        if not req.required:
            continue
        if req.per_member:
            for m in members:
                submit(store, plan, unit, req.doc_type, f"{unit}{req.doc_type}{m}".encode(), at=at, member=m)
        elif req.doc_type in STRUCTURED_DOC_TYPES:  # a list must read as one
            name, data = readable_list(req.doc_type, unit, members)
            submit(store, plan, unit, req.doc_type, data, at=at, name=name)
        else:
            submit(store, plan, unit, req.doc_type, f"{unit}{req.doc_type}".encode(), at=at)


def test_status_states_over_time(store, campaign, plan_187):
    # VP1 reviews DV001, DV002 (DV003 is exempt); KC reviews DV006, DV007.
    owe_everything(store, plan_187, "VP1", ["DV001", "DV002"], ict(2023, 12, 4, 10))
    owe_everything(store, plan_187, "KC", ["DV006", "DV007"], ict(2023, 12, 7, 10))

    def state(at, unit):
        with store.uow() as uow:
            result = campaign_status(uow, plan_187, "c187", at)
        return {r.phase_id: r for r in result.for_unit(unit)}["chi_bo_kiem_diem"], result

    row, _ = state(ict(2023, 11, 21, 9), "VP2")
    assert row.state == "pending"
    row, _ = state(ict(2023, 12, 1, 9), "VP2")  # 2 working days before 05/12
    assert row.state == "due_soon"
    row, _ = state(ict(2023, 12, 4, 12), "VP1")
    assert row.state == "done" and row.present == row.required
    row, _ = state(ict(2023, 12, 6, 0), "VP2")
    assert row.state == "overdue"
    names = {m.member_name for m in row.missing if m.member_code}
    assert names == {"Lê Xuân Tiến", "Phạm Minh Đức"}
    row, _ = state(ict(2023, 12, 6, 0), "KC")
    assert row.state == "overdue"  # KC's files arrive on 07/12: not yet at this moment
    row, result = state(ict(2023, 12, 8, 0), "KC")
    assert row.state == "done_late"
    # Subtree of the root: VP1 and KC done, VP2 has nothing in this phase.
    root_row = {r.phase_id: r for r in result.for_unit("SCT")}
    assert "chi_bo_kiem_diem" not in root_row  # the root is not a branch
    required, present = result.subtree["SCT"]["chi_bo_kiem_diem"]
    vp2 = {r.phase_id: r for r in result.for_unit("VP2")}["chi_bo_kiem_diem"]
    assert present == required - vp2.required


def test_exempt_member_owes_nothing_and_temporary_member_owes_comment(store, campaign, plan_187):
    with store.uow() as uow:
        result = campaign_status(uow, plan_187, "c187", ict(2023, 11, 21, 9))
    vp1 = {r.phase_id: r for r in result.for_unit("VP1")}["chi_bo_kiem_diem"]
    assert "DV003" not in {m.member_code for m in vp1.missing}
    kc_missing = {(m.doc_type, m.member_code) for r in result.for_unit("KC") for m in r.missing + r.optional_missing}
    temp_docs = {d for d, m in kc_missing if m == "DV007"} - {d for d, m in kc_missing if m == "DV006"}
    assert temp_docs == {"nhan_xet_noi_sinh_hoat_tam_thoi"}


def test_drop_folder_records_and_moves_files(store, campaign, plan_187, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "VP1" / "bien_ban_hoi_nghi").mkdir(parents=True)
    (inbox / "VP1" / "bien_ban_hoi_nghi" / "bien ban (1).pdf").write_bytes(b"%PDF minutes")
    (inbox / "VP1" / "ban_kiem_diem_ca_nhan" / "DV002").mkdir(parents=True)
    (inbox / "VP1" / "ban_kiem_diem_ca_nhan" / "DV002" / "tu_kiem_diem.docx").write_bytes(b"PK docx")
    (inbox / "NOPE" / "bien_ban_hoi_nghi").mkdir(parents=True)
    (inbox / "NOPE" / "bien_ban_hoi_nghi" / "x.pdf").write_bytes(b"%PDF x")
    (inbox / "VP1" / "bien_ban_hoi_nghi" / "copying.pdf.part").write_bytes(b"partial")
    old = time.time() - 60
    for path in inbox.rglob("*"):
        os.utime(path, (old, old))
    report = collect_drop_folder(store, plan_187, "c187", inbox, ict(2023, 12, 2, 10))
    # The minutes' folder still has a file being copied in: the folder waits as a whole.
    assert [o.item_key for o in report.accepted] == ["VP1:chi_bo_kiem_diem:ban_kiem_diem_ca_nhan:DV002"]
    assert len(report.refused) == 1 and "NOPE" in report.refused[0][0]
    assert (inbox / "VP1" / "bien_ban_hoi_nghi" / "bien ban (1).pdf").exists()
    (inbox / "VP1" / "bien_ban_hoi_nghi" / "copying.pdf.part").rename(inbox / "VP1" / "bien_ban_hoi_nghi" / "copying.pdf")
    os.utime(inbox / "VP1" / "bien_ban_hoi_nghi" / "copying.pdf", (old, old))
    both = collect_drop_folder(store, plan_187, "c187", inbox, ict(2023, 12, 2, 10, 30))
    assert [o.item_key for o in both.accepted] == ["VP1:chi_bo_kiem_diem:bien_ban_hoi_nghi:-"]
    with store.uow() as uow:
        names = set(uow.session.scalars(select(SubmissionFile.filename).join(Submission).where(Submission.id == both.accepted[0].submission_id)))
    assert names == {"bien ban (1).pdf", "copying.pdf"}  # one submission of both files
    assert not (inbox / "VP1" / "bien_ban_hoi_nghi" / "bien ban (1).pdf").exists()
    processed = list((inbox / ".processed").rglob("bien ban (1).pdf"))
    refused = list((inbox / ".refused").rglob("x.pdf"))
    assert processed and refused
    assert "không tồn tại" in (refused[0].parent / ".reason.txt").read_text(encoding="utf-8")
    with store.uow() as uow:
        sources = set(uow.session.scalars(select(Submission.source)))
    assert sources == {"drop"}
    # A second pass finds nothing new.
    again = collect_drop_folder(store, plan_187, "c187", inbox, ict(2023, 12, 2, 11))
    assert not again.accepted and not again.refused


def test_drop_file_is_kept_when_storing_fails(store, campaign, plan_187, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    folder = inbox / "VP1" / "bien_ban_hoi_nghi"
    folder.mkdir(parents=True)
    target = folder / "minutes.pdf"
    target.write_bytes(b"%PDF minutes")
    old = time.time() - 60
    os.utime(target, (old, old))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store.blobs, "put_file", broken)
    report = collect_drop_folder(store, plan_187, "c187", inbox, ict(2023, 12, 2, 10))
    assert report.failed == [("VP1/bien_ban_hoi_nghi", "không lưu được vào kho tệp: disk full")]
    assert target.exists()
    with store.uow() as uow:
        assert uow.session.scalar(select(Submission)) is None


def test_errors_are_user_errors():
    assert issubclass(Refused, KiemdiemError) and issubclass(NotFound, KiemdiemError)


def _settled(*paths):
    old = time.time() - 60
    for path in paths:
        os.utime(path, (old, old), follow_symlinks=False)


def test_files_a_crash_left_in_the_inbox_are_not_a_new_submission(store, campaign, plan_187, tmp_path):
    """A crash between the commit and the moves leaves some of a submission's files behind: the
    next pass recognises them as part of it (nothing replaced), and moves them out."""
    inbox = tmp_path / "inbox"
    folder = inbox / "VP1" / "bien_ban_hoi_nghi"
    folder.mkdir(parents=True)
    (folder / "phan1.pdf").write_bytes(b"%PDF part 1")
    (folder / "phan2.pdf").write_bytes(b"%PDF part 2")
    _settled(folder / "phan1.pdf", folder / "phan2.pdf")
    first = collect_drop_folder(store, plan_187, "c187", inbox, ict(2023, 12, 2, 10))
    # As if the process died after moving phan1 only: phan2 is back in the inbox.
    moved = next((inbox / ".processed").rglob("phan2.pdf"))
    moved.rename(folder / "phan2.pdf")
    _settled(folder / "phan2.pdf")
    again = collect_drop_folder(store, plan_187, "c187", inbox, ict(2023, 12, 2, 11))
    assert not again.accepted and [o.submission_id for o in again.unchanged] == [first.accepted[0].submission_id]
    assert not (folder / "phan2.pdf").exists()
    with store.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Submission)) == 1


def test_an_unreadable_entry_refuses_its_folder_only(store, campaign, plan_187, tmp_path):
    inbox = tmp_path / "inbox"
    broken, good = inbox / "VP1" / "bien_ban_hoi_nghi", inbox / "VP2" / "bien_ban_hoi_nghi"
    broken.mkdir(parents=True)
    good.mkdir(parents=True)
    (broken / "phieu.pdf").symlink_to(tmp_path / "gone.pdf")  # dangling
    (good / "bien_ban.pdf").write_bytes(b"%PDF minutes")
    _settled(broken / "phieu.pdf", good / "bien_ban.pdf")
    report = collect_drop_folder(store, plan_187, "c187", inbox, ict(2023, 12, 2, 10))
    assert [o.unit_code for o in report.accepted] == ["VP2"]
    assert [(f, r.split(":")[0]) for f, r in report.refused] == [("VP1/bien_ban_hoi_nghi", "không đọc được tệp 'phieu.pdf'")]


def test_one_process_collects_an_inbox_at_a_time(store, campaign, plan_187, tmp_path):
    import fcntl

    inbox = tmp_path / "inbox"
    folder = inbox / "VP1" / "bien_ban_hoi_nghi"
    folder.mkdir(parents=True)
    (folder / "bien_ban.pdf").write_bytes(b"%PDF minutes")
    _settled(folder / "bien_ban.pdf")
    with open(inbox / ".collect.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another tick is collecting
        report = collect_drop_folder(store, plan_187, "c187", inbox, ict(2023, 12, 2, 10))
        assert report.busy and not report.accepted and (folder / "bien_ban.pdf").exists()
    assert [o.unit_code for o in collect_drop_folder(store, plan_187, "c187", inbox, ict(2023, 12, 2, 10)).accepted] == ["VP1"]
