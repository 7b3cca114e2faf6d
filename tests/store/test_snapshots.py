"""Consolidation snapshots on SQLite and PostgreSQL: versions, reruns, diffs to the offices.

The main scenario is the one the issue describes: results submitted, consolidation v1; a late
result arrives after the committee's consolidation; the next ingest + consolidate stores v2
only for the changed unit and its ancestors and queues the offices' emails; the same inputs
make no new version; a cancelled result makes a new version and keeps the history.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import hashlib
import io
import json
import threading

import pytest
import typer
from sqlalchemy import String, cast, func, select
from typer.testing import CliRunner

from kiemdiem.cli.consolidate_cmd import register
from kiemdiem.consolidation import consolidate, unit_hash
from kiemdiem.errors import NotFound, Refused
from kiemdiem.store import snapshots as snapshots_module
from kiemdiem.store.models import EventLog, Outbox, Snapshot
from kiemdiem.store.organization import import_organization
from kiemdiem.store.results import cancel_result, ingest_results, override_finding
from kiemdiem.store.snapshots import (
    consolidate_campaign,
    diff_versions,
    has_snapshots,
    latest_hashes,
    latest_snapshots,
    load_consolidation_input,
    snapshot_history,
)
from tests.store.test_results_intake import DECISION_AT, NOW, campaign, submit  # noqa: F401  (fixture)
from tests.store.test_results_intake import branch_lists_delivered, committee_decided  # noqa: F401  (fixtures)
from tests.support import SMALL_MEMBERS, SMALL_UNITS, command_shell, ict, table_counts, write_small_org

LATE_AT = ict(2023, 12, 12, 9)
LATE_NOW = ict(2023, 12, 12, 10)


def tick(store, plan, now, changed_override=None):
    """What the periodic tick does: ingest, then consolidate what the ingest changed."""
    intake = ingest_results(store, plan, "c187", now)
    changed = intake.changed_units if changed_override is None else changed_override
    return intake, consolidate_campaign(store, plan, "c187", now, changed_units=changed)


def versions(store) -> dict[str, int]:
    with store.uow() as uow:
        return {code: s["version"] for code, s in latest_snapshots(uow, "c187").items()}


def outbox_rows(store) -> list[Outbox]:
    with store.uow() as uow:
        rows = list(uow.session.scalars(select(Outbox).where(Outbox.kind == "consolidation_diff").order_by(Outbox.id)))
        uow.session.expunge_all()
    return rows


def full_recompute_hashes(store, plan, now) -> dict[str, str]:
    with store.uow() as uow:
        return {code: unit_hash(s) for code, s in consolidate(load_consolidation_input(uow, plan, "c187", now)).items()}


def stored_hashes(store) -> dict[str, str]:
    with store.uow() as uow:
        return latest_hashes(uow, "c187")


@pytest.fixture
def consolidated_v1(store, plan_187, committee_decided):  # noqa: F811
    intake, run = tick(store, plan_187, NOW)
    assert run.mode == "full" and sorted(run.units_updated) == ["KC", "SCT", "VP1", "VP2"]
    return run


def submit_late_result(store, plan):
    """DV007 was absent; KC evaluates her at its next meeting, the committee decides after."""
    submit(store, plan, "KC", "tong_hop_xep_loai_dang_vien",
           {"bo_sung.csv": "Mã đảng viên,Họ và tên,Tự xếp loại,Chi bộ đề xuất\nDV007,Hoàng Thị Lan,HTTNV,HTTNV\n"}, LATE_AT)
    submit(store, plan, "SCT", "quyet_dinh_xep_loai",
           {"qd_bo_sung.csv": "Mã đảng viên,Quyết định xếp loại\nDV007,HTTNV\n"}, LATE_AT)


def test_first_consolidation_is_version_one_of_every_unit(store, plan_187, consolidated_v1):
    assert consolidated_v1.versions == {"KC": 1, "SCT": 1, "VP1": 1, "VP2": 1}
    assert consolidated_v1.units_updated[-1] == "SCT"  # deepest first
    assert consolidated_v1.outbox_ids == []  # nothing to compare with yet
    with store.uow() as uow:
        sct = latest_snapshots(uow, "c187", ["SCT"])["SCT"]
    members = sct["payload"]["members"]
    assert (members["total"], members["evaluated"], members["classified"], members["missing"]) == (7, 5, 4, 1)
    assert members["levels"]["HTTNV"]["count"] == 3 and members["levels"]["HTXSNV"]["count"] == 1
    assert members["not_evaluated"] == {"exempt": 1, "suspended": 0, "new_member": 1}
    assert sct["payload"]["missing_results"]["members"] == [{"member_id": "DV007", "full_name": "Hoàng Thị Lan", "unit_code": "KC"}]
    assert members["quota"] == {"scope": "base_organization", "htxsnv": 1, "httnv": 3, "max_allowed": 0, "status": "breach"}
    assert stored_hashes(store) == full_recompute_hashes(store, plan_187, NOW)


def test_has_snapshots_tells_whether_a_campaign_was_consolidated(store, plan_187, committee_decided):  # noqa: F811
    with store.uow() as uow:
        assert not has_snapshots(uow, "c187")
    tick(store, plan_187, NOW)
    with store.uow() as uow:
        assert has_snapshots(uow, "c187")
        assert not has_snapshots(uow, "another")


def test_late_result_makes_v2_for_the_unit_and_its_ancestors_and_tells_their_offices(store, plan_187, consolidated_v1):
    submit_late_result(store, plan_187)
    intake, run = tick(store, plan_187, LATE_NOW)
    assert intake.changed_units == {"KC"}
    assert run.mode == "incremental"
    assert run.units_updated == ["KC", "SCT"] and run.versions == {"KC": 2, "SCT": 2}
    assert versions(store) == {"KC": 2, "SCT": 2, "VP1": 1, "VP2": 1}
    assert stored_hashes(store) == full_recompute_hashes(store, plan_187, LATE_NOW)

    # The stored difference of each new version, against the one before.
    with store.uow() as uow:
        (sct_v1, sct_v2) = snapshot_history(uow, "c187", "SCT")
    assert sct_v1["diff"] is None and sct_v2["version"] == 2
    changes = {c["field"]: (c["old"], c["new"]) for t in sct_v2["diff"]["totals"] for c in t["changes"]}
    assert changes["members.levels.HTTNV.count"] == (3, 4)
    assert changes["members.missing"] == (1, 0)
    assert changes["members.htxsnv_over_httnv_percent"] == (33.3, 25.0)
    assert run.diff["members"] == [{
        "member_id": "DV007", "full_name": "Hoàng Thị Lan", "unit_code": "KC", "unit_name": "Chi bộ Khuyến công",
        "old_level": None, "new_level": "HTTNV",
    }]
    assert [t["unit_code"] for t in run.diff["totals"]] == ["KC", "SCT"]  # from the changed unit up to the root

    # One email per affected office: the changed branch's and the committee's.
    rows = outbox_rows(store)
    assert sorted(r.id for r in rows) == sorted(run.outbox_ids)
    by_recipient = {r.recipient: r for r in rows}
    assert set(by_recipient) == {"kc@sct.example.vn", "vanphong@sct.example.vn"}
    sct_mail = by_recipient["vanphong@sct.example.vn"]
    assert sct_mail.key_material == "consolidation_diff:c187:SCT:2:vanphong@sct.example.vn"
    assert "(phiên bản 2)" in sct_mail.subject and "Đảng bộ Sở Công Thương" in sct_mail.subject
    body = sct_mail.body_text
    assert "Hoàng Thị Lan (DV007), Chi bộ Khuyến công: chưa có kết quả → HTTNV (Hoàn thành tốt nhiệm vụ)" in body
    assert "* Chi bộ Khuyến công (KC):" in body and "* Đảng bộ Sở Công Thương (SCT):" in body
    assert body.index("(KC):") < body.index("(SCT):")
    assert "Đảng viên HTTNV: số: 3 → 4" in body and "Đảng viên HTTNV: số: 1 → 2" in body
    assert "Đảng viên: chưa có kết quả: 1 → 0" in body
    assert "tỷ lệ HTXSNV/HTTNV (%): 33,3 → 25,0" in body
    assert "Vi phạm, lưu ý không còn (1)" in body and "vắng mặt tại hội nghị" in body
    kc_mail = by_recipient["kc@sct.example.vn"]
    assert "(SCT):" not in kc_mail.body_text and "Đảng viên HTTNV: số: 1 → 2" in kc_mail.body_text
    assert kc_mail.attachments[0]["filename"] == "thay-doi-phien-ban-2.csv"
    # The attachment is the same changes as a table for Excel, in Vietnamese.
    (part,) = [p for p in email.message_from_bytes(sct_mail.mime, policy=email.policy.SMTP).iter_attachments()]
    table = list(csv.reader(io.StringIO(part.get_payload(decode=True).decode("utf-8-sig"))))
    assert table[0] == ["Thay đổi", "Mã đơn vị", "Đơn vị", "Nội dung", "Trước", "Sau"]
    assert ["Kết quả đảng viên", "KC", "Chi bộ Khuyến công", "Hoàng Thị Lan (DV007)", "chưa có kết quả",
            "HTTNV (Hoàn thành tốt nhiệm vụ)"] in table
    assert ["Số liệu tổng hợp", "SCT", "Đảng bộ Sở Công Thương", "Đảng viên: tỷ lệ HTXSNV/HTTNV (%)", "33,3", "25,0"] in table


def test_same_inputs_make_no_new_version(store, plan_187, consolidated_v1):
    before = table_counts(store)
    for changed in (None, set(), {"VP1", "KC"}):
        run = consolidate_campaign(store, plan_187, "c187", NOW, changed_units=changed)
        assert run.units_updated == [] and run.outbox_ids == []
    _, run = tick(store, plan_187, NOW)
    assert run.mode == "unchanged" and run.recomputed == 0
    assert table_counts(store) == before


def cancel_and_rerun(store, plan, member_code: str, at: dt.datetime):
    """The committee cancels a member's current result; the next run consolidates that change."""
    with store.uow() as uow:
        outcome = cancel_result(uow, "c187", member_code=member_code, by="Đảng ủy Sở", reason="Hủy bỏ kết quả, xếp loại lại", now=at)
        uow.commit()
    return consolidate_campaign(store, plan, "c187", at, changed_units={outcome.changed_unit}, reason=f"Hủy kết quả {member_code}")


def test_cancel_makes_a_new_version_and_keeps_the_history(store, plan_187, consolidated_v1):
    run = cancel_and_rerun(store, plan_187, "DV002", ict(2023, 12, 14, 9))
    assert run.versions == {"VP1": 2, "SCT": 2}
    # The history is kept: v1 still says HTXSNV, v2 says no result.
    with store.uow() as uow:
        history = snapshot_history(uow, "c187", "VP1")
        assert [h["version"] for h in history] == [1, 2] and history[1]["reason"] == "Hủy kết quả DV002"
        changes = diff_versions(uow, "c187", "VP1", 1, 2)
        assert changes["members"][0]["member_id"] == "DV002"
        assert (changes["members"][0]["old_level"], changes["members"][0]["new_level"]) == ("HTXSNV", None)
        # Before the cancellation the result still counts (time travel).
        inp = load_consolidation_input(uow, plan_187, "c187", ict(2023, 12, 14, 8))
        assert "DV002" in {r.member_id for r in inp.member_results}
    # The cap breach went away with the cancelled HTXSNV.
    assert any(f["key"] == "cap_members:SCT:" for f in run.diff["findings_gone"])
    # The re-decision comes as a new list: v3.
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {"qd_lai.csv": "Mã đảng viên,Quyết định xếp loại\nDV002,HTTNV\n"}, ict(2023, 12, 15, 9))
    _, again = tick(store, plan_187, ict(2023, 12, 15, 10))
    assert again.versions == {"VP1": 3, "SCT": 3}
    assert stored_hashes(store) == full_recompute_hashes(store, plan_187, ict(2023, 12, 15, 10))


def test_an_office_with_two_addresses_gets_the_same_message_at_each(store, plan_187, consolidated_v1, monkeypatch):
    composed = []
    real = snapshots_module.compose_consolidation_diff
    monkeypatch.setattr(snapshots_module, "compose_consolidation_diff", lambda *a, **k: composed.append(a[0]) or real(*a, **k))
    run = cancel_and_rerun(store, plan_187, "DV004", ict(2023, 12, 14, 9))
    assert run.versions == {"VP2": 2, "SCT": 2}
    rows = {r.recipient: r for r in outbox_rows(store)}
    assert set(rows) == {"vp2@sct.example.vn", "bithu.vp2@sct.example.vn", "vanphong@sct.example.vn"}
    first, second = rows["vp2@sct.example.vn"], rows["bithu.vp2@sct.example.vn"]
    assert (first.subject, first.body_text, first.body_html, first.attachments) == (
        second.subject, second.body_text, second.body_html, second.attachments)
    assert "Lê Xuân Tiến (DV004)" in first.body_text and "(SCT):" not in first.body_text
    assert first.message_id != second.message_id and b"bithu.vp2@sct.example.vn" in second.mime
    assert sorted(composed) == ["Chi bộ Văn phòng 2", "Đảng bộ Sở Công Thương"]  # once per office, not per address


def test_changes_lost_by_a_crashed_tick_are_picked_up_from_the_log(store, plan_187, consolidated_v1):
    submit_late_result(store, plan_187)
    ingest_results(store, plan_187, "c187", LATE_NOW)  # the tick dies here, its change set with it
    run = consolidate_campaign(store, plan_187, "c187", LATE_NOW, changed_units=set())
    assert run.mode == "incremental" and run.versions == {"KC": 2, "SCT": 2}
    assert stored_hashes(store) == full_recompute_hashes(store, plan_187, LATE_NOW)
    before = table_counts(store)
    assert consolidate_campaign(store, plan_187, "c187", LATE_NOW, changed_units=set()).mode == "unchanged"
    assert table_counts(store) == before


def test_override_makes_a_new_version_with_the_finding_marked(store, plan_187, consolidated_v1):
    at = ict(2023, 12, 9, 9)
    with store.uow() as uow:
        override_finding(uow, "c187", "cap_members:SCT:", "Đồng chí Bí thư", "Chấp thuận theo ý kiến Đảng ủy Khối", at)
        uow.commit()
    run = consolidate_campaign(store, plan_187, "c187", at, changed_units=set())
    assert run.versions == {"SCT": 2}
    with store.uow() as uow:
        sct = latest_snapshots(uow, "c187", ["SCT"])["SCT"]["payload"]
    assert sct["members"]["quota"]["status"] == "overridden"
    (finding,) = [f for f in sct["findings"] if f["key"] == "cap_members:SCT:"]
    assert finding["overridden"]["by"] == "Đồng chí Bí thư"
    assert run.diff["findings_changed"][0]["key"] == "cap_members:SCT:"
    assert "đã được Đồng chí Bí thư chấp thuận" in outbox_rows(store)[0].body_text


def test_an_override_lapses_when_the_numbers_go_past_it_and_can_be_granted_again(store, plan_187, consolidated_v1):
    """SCT's cap is approved at 1 HTXSNV over the limit; a late HTXSNV makes it 2 over: a breach
    again, said so in the report and the email, until approved for the new numbers."""
    at = ict(2023, 12, 9, 9)
    with store.uow() as uow:
        override_finding(uow, "c187", "cap_members:SCT:", "Đồng chí Bí thư", "Cho phép vượt 1 trường hợp", at)
        uow.commit()
    consolidate_campaign(store, plan_187, "c187", at, changed_units=set())
    submit(store, plan_187, "KC", "tong_hop_xep_loai_dang_vien",
           {"bo_sung.csv": "Mã đảng viên,Tự xếp loại,Chi bộ đề xuất\nDV007,HTXSNV,HTXSNV\n"}, LATE_AT)
    submit(store, plan_187, "SCT", "quyet_dinh_xep_loai", {"qd_bo_sung.csv": "Mã đảng viên,Quyết định xếp loại\nDV007,HTXSNV\n"}, LATE_AT)
    tick(store, plan_187, LATE_NOW)
    with store.uow() as uow:
        sct = latest_snapshots(uow, "c187", ["SCT"])["SCT"]["payload"]
    assert sct["members"]["quota"]["status"] == "breach"
    (finding,) = [f for f in sct["findings"] if f["key"] == "cap_members:SCT:"]
    assert finding["overridden"] is None and "vượt 2" in finding["message"]
    assert "Chấp thuận của Đồng chí Bí thư lúc 09/12/2023 09:00 (Cho phép vượt 1 trường hợp) chỉ áp dụng cho số liệu khi đó" in finding["message"]
    assert "chỉ áp dụng cho số liệu khi đó" in outbox_rows(store)[-1].body_text
    assert stored_hashes(store) == full_recompute_hashes(store, plan_187, LATE_NOW)
    granted_again = ict(2023, 12, 12, 11)
    with store.uow() as uow:
        override_finding(uow, "c187", "cap_members:SCT:", "Ban Thường vụ", "Tờ trình số 20", granted_again)
        uow.commit()
    consolidate_campaign(store, plan_187, "c187", granted_again, changed_units=set())
    with store.uow() as uow:
        sct = latest_snapshots(uow, "c187", ["SCT"])["SCT"]["payload"]
        with pytest.raises(Refused, match="đã được Ban Thường vụ chấp thuận lúc 12/12/2023 11:00"):
            override_finding(uow, "c187", "cap_members:SCT:", "Người khác", "Lý do khác", ict(2023, 12, 12, 12))
    assert sct["members"]["quota"]["status"] == "overridden"
    (finding,) = [f for f in sct["findings"] if f["key"] == "cap_members:SCT:"]
    assert finding["overridden"]["by"] == "Ban Thường vụ"


def test_reimported_organization_forces_a_full_run(store, plan_187, consolidated_v1, tmp_path):
    moved = SMALL_MEMBERS.replace("DV002,Trần Thị Hoa,VP1,", "DV002,Trần Thị Hoa,VP2,")
    units, members = write_small_org(tmp_path / "org2", SMALL_UNITS, moved)
    with store.uow() as uow:
        import_organization(uow, "c187", units, members, ict(2023, 12, 9, 8))
        uow.commit()
    run = consolidate_campaign(store, plan_187, "c187", ict(2023, 12, 9, 9), changed_units=set())
    assert run.mode == "full" and sorted(run.units_updated) == ["VP1", "VP2"]  # SCT's totals did not move
    assert stored_hashes(store) == full_recompute_hashes(store, plan_187, ict(2023, 12, 9, 9))


def test_a_run_at_a_moment_before_the_last_one_looks_back_and_stores_nothing(store, plan_187, consolidated_v1):
    submit_late_result(store, plan_187)
    tick(store, plan_187, LATE_NOW)  # v2 of KC and SCT, with DV007's late result
    with store.uow() as uow:
        v1 = {h["version"]: h for h in snapshot_history(uow, "c187", "SCT")}[1]
    before, mails = table_counts(store), len(outbox_rows(store))
    between = ict(2023, 12, 10, 9)  # after v1, before the late result arrived
    for changed in ({"KC"}, None):  # incremental or full: either way the state of that moment
        run = consolidate_campaign(store, plan_187, "c187", between, changed_units=changed)
        assert run.mode == "as_of" and run.units_updated == [] and run.outbox_ids == []
        assert run.last_run_at == LATE_NOW
        assert run.as_of["SCT"]["members"]["missing"] == 1  # DV007 had no result yet
        assert unit_hash(run.as_of["SCT"]) == v1["content_hash"]
    assert table_counts(store) == before and len(outbox_rows(store)) == mails
    assert versions(store) == {"KC": 2, "SCT": 2, "VP1": 1, "VP2": 1}

    shown = CliRunner().invoke(_cli(), ["consolidate", "--campaign", "c187", "--at", "10/12/2023 09:00"])
    assert shown.exit_code == 0, shown.output
    text = flat(shown.output)
    assert "Xem lại tại 10/12/2023 09:00, trước lần tổng hợp gần nhất (12/12/2023 10:00)" in text and "không lưu phiên bản mới" in text
    assert table_counts(store) == before


def test_a_run_that_stores_nothing_does_not_turn_earlier_ticks_into_look_backs(store, plan_187, consolidated_v1):
    """An office's `consolidate` without --at during a replay runs at the real clock; it stores no
    version, so the campaign's next tick (at its own, earlier time) still consolidates and stores."""
    with store.uow() as uow:  # a change that leaves every total as it was (a list sent again, say)
        uow.session.add(EventLog(campaign_id="c187", at=NOW, actor="test", action="results.recorded", subject="VP1",
                                 detail={"changed_units": ["VP1"]}))
        uow.commit()
    idle = consolidate_campaign(store, plan_187, "c187", dt.datetime(2026, 11, 22, 9, tzinfo=dt.timezone.utc), changed_units=set())
    assert idle.mode == "incremental" and idle.units_updated == []
    submit_late_result(store, plan_187)
    _, run = tick(store, plan_187, LATE_NOW)
    assert run.mode == "incremental" and sorted(run.units_updated) == ["KC", "SCT"]
    assert versions(store) == {"KC": 2, "SCT": 2, "VP1": 1, "VP2": 1}
    # A look-back is still one for a moment before the last run that stored versions.
    back = consolidate_campaign(store, plan_187, "c187", ict(2023, 12, 10, 9), changed_units=None)
    assert back.mode == "as_of" and back.last_run_at == LATE_NOW


def test_results_count_from_when_they_were_received(store, plan_187, consolidated_v1):
    submit_late_result(store, plan_187)
    ingest_results(store, plan_187, "c187", LATE_NOW)
    with store.uow() as uow:
        before = load_consolidation_input(uow, plan_187, "c187", NOW)
        after = load_consolidation_input(uow, plan_187, "c187", LATE_NOW)
    level = {r.member_id: r.final_level for r in before.member_results}
    assert level["DV007"] is None and {r.member_id: r.final_level for r in after.member_results}["DV007"] == "HTTNV"
    assert {u.code for u in before.units} == {"SCT", "VP1", "VP2", "KC"} and len(before.members) == 7
    # Counted set-based: at LATE_NOW by the rows flagged current; at NOW, before DV007's result
    # came in, the flags are not trusted and each member's newest row by then counts.
    from kiemdiem.store import snapshots

    with store.uow() as uow:
        code_of = {u.id: u.code for u in snapshots._units(uow, "c187")}
        assert snapshots._current_flags_hold(uow, "c187", LATE_NOW) and not snapshots._current_flags_hold(uow, "c187", NOW)
        earlier = snapshots._own_tallies(uow, plan_187, "c187", NOW, code_of)[0]["KC"]
        later = snapshots._own_tallies(uow, plan_187, "c187", LATE_NOW, code_of)[0]["KC"]
    assert [m.member_id for m in earlier.missing] == ["DV007"] and later.missing == ()
    assert later.members.counts[1] == earlier.members.counts[1] + 1 and later.members.key != earlier.members.key


def test_two_concurrent_runs_never_make_the_same_version_twice(store, plan_187, consolidated_v1):
    submit_late_result(store, plan_187)
    intake = ingest_results(store, plan_187, "c187", LATE_NOW)
    outcomes, errors = [], []

    def run():
        try:
            outcomes.append(consolidate_campaign(store, plan_187, "c187", LATE_NOW, changed_units=intake.changed_units))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(o.units_updated) for o in outcomes) == [0, 0, 2]
    with store.uow() as uow:
        counts = dict(uow.session.execute(select(Snapshot.version, func.count()).group_by(Snapshot.version)).all())
    assert counts == {1: 4, 2: 2}
    assert len(outbox_rows(store)) == 2


def test_history_api_errors(store, plan_187, consolidated_v1):
    with store.uow() as uow:
        with pytest.raises(NotFound, match="không có phiên bản tổng hợp 3"):
            diff_versions(uow, "c187", "SCT", 1, 3)
        with pytest.raises(NotFound, match="đơn vị không tồn tại"):
            snapshot_history(uow, "c187", "NOPE")
        assert set(latest_snapshots(uow, "c187", ["VP1", "NOPE"])) == {"VP1"}
    with pytest.raises(NotFound, match="không có đợt kiểm điểm"):
        consolidate_campaign(store, plan_187, "nope", NOW)


def test_consolidation_completed_is_logged_with_its_watermark(store, plan_187, consolidated_v1):
    with store.uow() as uow:
        (done,) = uow.session.scalars(select(EventLog).where(EventLog.action == "consolidation.completed")).all()
        assert done.detail["mode"] == "full" and done.detail["units_updated"] == 4 and done.detail["event_id"] > 0


# --------------------------------------------------------------------------- the command line


def flat(output: str) -> str:
    """The console wraps long lines; compare text with single spaces."""
    return " ".join(output.split())


def _cli() -> typer.Typer:
    return command_shell(register)


def test_cli_consolidate_prints_the_summary_and_json(store, plan_187, committee_decided):  # noqa: F811
    runner = CliRunner()
    done = runner.invoke(_cli(), ["consolidate", "--campaign", "c187", "--at", "08/12/2023 12:00"])
    assert done.exit_code == 0, done.output
    out = flat(done.output)
    assert "Đảng bộ Sở Công Thương (SCT)" in out and "phiên bản 1" in out
    assert "HTTNV – Hoàn thành tốt nhiệm vụ" in out and "60" in out
    assert "Tỷ lệ HTXSNV/HTTNV: 33,3%" in out
    assert "tối đa được 0 HTXSNV — VƯỢT" in out
    assert "Hoàng Thị Lan (DV007), KC" in out
    assert "kiemdiem finding override --campaign … --key 'cap_members:SCT:' --by … --reason …" in out and "vượt 1" in out
    # DV007 was absent (a note, not a breach): shown, with nothing to approve.
    kc = flat(runner.invoke(_cli(), ["consolidate", "--campaign", "c187", "--unit", "KC", "--at", "08/12/2023 12:00"]).output)
    assert "vắng mặt tại hội nghị" in kc and "finding override" not in kc
    as_json = runner.invoke(_cli(), ["consolidate", "--campaign", "c187", "--unit", "KC", "--at", "08/12/2023 12:00", "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["run"]["mode"] == "unchanged" and data["units"][0]["code"] == "KC" and data["units"][0]["version"] == 1
    assert data["units"][0]["summary"]["members"]["missing"] == 1
    missing = runner.invoke(_cli(), ["consolidate", "--campaign", "c187", "--unit", "NOPE"])
    assert missing.exit_code == NotFound.exit_code and "NOPE" in missing.output


def test_cli_refused_file_exits_non_zero_and_names_the_row(store, plan_187, committee_decided, tmp_path):  # noqa: F811
    # Read at submission, VP2's list is refused by the ingest only because DV004 moved to VP1 since.
    submit(store, plan_187, "VP2", "tong_hop_xep_loai_dang_vien", {"bo_sung.csv": "Mã đảng viên,Chi bộ đề xuất\nDV004,HTTNV\n"}, DECISION_AT)
    units, members = write_small_org(tmp_path / "moved", members=SMALL_MEMBERS.replace("DV004,Lê Xuân Tiến,VP2", "DV004,Lê Xuân Tiến,VP1"))
    with store.uow() as uow:
        import_organization(uow, "c187", units, members, DECISION_AT)
        uow.commit()
    runner = CliRunner()
    done = runner.invoke(_cli(), ["consolidate", "--campaign", "c187", "--at", "08/12/2023 12:00"])
    assert done.exit_code == 2
    assert "VP2/tong_hop_xep_loai_dang_vien/bo_sung.csv, dòng 2, cột 'Mã đảng viên'" in flat(done.output)
    assert "DV004" in done.output
    with store.uow() as uow:
        assert "VP2" in latest_snapshots(uow, "c187")  # the valid lists were consolidated


def test_cli_cancel_and_override(store, plan_187, consolidated_v1):
    runner = CliRunner()
    args = ["finding", "override", "--campaign", "c187", "--key", "cap_members:SCT:", "--by", "Bí thư", "--reason", "Đã báo cáo Khối", "--at", "09/12/2023 09:00"]
    done = runner.invoke(_cli(), args)
    assert done.exit_code == 0, done.output
    assert "Đã ghi nhận" in done.output and "SCT v2" in flat(done.output)
    bad = runner.invoke(_cli(), ["finding", "override", "--campaign", "c187", "--key", "cap_members:KC:", "--by", "A", "--reason", "B"])
    assert bad.exit_code == NotFound.exit_code and "không có vi phạm" in flat(bad.output)
    cancel = ["result", "cancel", "--campaign", "c187", "--member", "DV001", "--by", "Đảng ủy Sở", "--reason", "Xếp loại lại", "--at", "10/12/2023 09:00"]
    done = runner.invoke(_cli(), cancel)
    assert done.exit_code == 0, done.output
    assert "lịch sử được giữ" in flat(done.output) and "VP1 v2" in done.output and "SCT v3" in done.output
    # Each office is told why its totals moved, in words fit for whoever gets it.
    override_mail, cancel_mail = outbox_rows(store)[0].body_text, outbox_rows(store)[-1].body_text
    assert "đã được tính lại do chấp thuận vi phạm hạn mức 20% đảng viên HTXSNV của Đảng bộ Sở Công Thương (SCT) (Bí thư: Đã báo cáo Khối)." in override_mail
    assert "đã được tính lại do hủy kết quả của DV001 (Đảng ủy Sở: Xếp loại lại)." in cancel_mail
    assert "nộp muộn" not in cancel_mail and "Đề nghị kiểm tra lại kết quả tổng hợp trên hệ thống." in cancel_mail
    again = runner.invoke(_cli(), cancel)
    assert again.exit_code == NotFound.exit_code and "không có kết quả xếp loại hiện hành" in flat(again.output)
    neither = runner.invoke(_cli(), ["result", "cancel", "--campaign", "c187", "--by", "A", "--reason", "B"])
    assert neither.exit_code == 2 and "chọn đúng một" in flat(neither.output)


def test_stored_payload_is_the_canonical_text_its_hash_covers(store, plan_187, consolidated_v1):
    with store.uow() as uow:
        rows = uow.session.execute(select(Snapshot.content_hash, cast(Snapshot.payload, String))).all()
        summaries = consolidate(load_consolidation_input(uow, plan_187, "c187", NOW))
    assert len(rows) == 4
    for content_hash, text in rows:
        assert hashlib.sha256(text.encode()).hexdigest() == content_hash
        payload = json.loads(text)
        assert payload == summaries[payload["unit"]["code"]].to_dict()


def test_full_run_from_full_records_makes_the_same_snapshots(store, plan_187, consolidated_v1, monkeypatch):
    """A rule set whose member rules the store cannot pre-select: every member record is read."""
    import kiemdiem.store.snapshots as snapshots

    monkeypatch.setattr(snapshots, "_own_tallies", lambda *args, **kwargs: None)
    before = table_counts(store)
    run = consolidate_campaign(store, plan_187, "c187", NOW, changed_units=None)
    assert run.mode == "full" and run.recomputed == 4 and run.units_updated == []
    assert table_counts(store) == before
    # A late result: the incremental run reads the few affected members in full anyway.
    submit_late_result(store, plan_187)
    _, late = tick(store, plan_187, LATE_NOW)
    assert late.mode == "incremental" and late.versions == {"KC": 2, "SCT": 2}
    assert stored_hashes(store) == full_recompute_hashes(store, plan_187, LATE_NOW)


def test_incremental_run_rebuilds_only_the_changed_branch_and_its_ancestors(store, plan_187, consolidated_v1, monkeypatch):
    import kiemdiem.store.snapshots as snapshots

    read: list[list[str]] = []
    members = snapshots._members

    def spy(uow, campaign_id, code_of, unit_ids, member_pks=None):
        assert unit_ids is not None, "an incremental run read every member"
        read.append(sorted(code_of[u] for u in unit_ids))
        return members(uow, campaign_id, code_of, unit_ids, member_pks)

    def every_member(*args, **kwargs):
        raise AssertionError("an incremental run read every member's line")

    monkeypatch.setattr(snapshots, "_members", spy)
    monkeypatch.setattr(snapshots, "_own_tallies", every_member)
    submit_late_result(store, plan_187)
    _, run = tick(store, plan_187, LATE_NOW)
    assert run.mode == "incremental" and run.recomputed == 2  # KC and SCT; VP1 and VP2 untouched
    assert read == [["KC", "SCT"]]  # only their own members were read (whose result changed included)


def test_an_older_result_arriving_after_a_cancellation_stays_history(store, plan_187, consolidated_v1):
    """DV007's result is received, then cancelled; a list received before it comes in later. The
    newest row received is the cancelled one, so DV007 has no result: the row flagged current and
    each member's newest row must agree (consolidation counts by the flags)."""
    from kiemdiem.consolidation import MemberResult
    from kiemdiem.store import snapshots
    from kiemdiem.store.results import record_results

    def result(level: str) -> MemberResult:
        return MemberResult("DV007", "KC", level, level, level, False, 0.0, False, None, "", True)

    received, cancelled, older = LATE_NOW, LATE_NOW + dt.timedelta(hours=1), LATE_NOW - dt.timedelta(hours=1)
    with store.uow() as uow:
        record_results(uow, plan_187, "c187", received, [result("HTTNV")], [])
        uow.commit()
    with store.uow() as uow:
        cancel_result(uow, "c187", member_code="DV007", by="Văn phòng", reason="nhầm danh sách", now=cancelled)
        uow.commit()
    with store.uow() as uow:
        record_results(uow, plan_187, "c187", older, [result("HTXSNV")], [])
        uow.commit()
    later = cancelled + dt.timedelta(hours=1)
    with store.uow() as uow:
        code_of = {u.id: u.code for u in snapshots._units(uow, "c187")}
        assert snapshots._current_flags_hold(uow, "c187", later)
        by_flags = snapshots._own_tallies(uow, plan_187, "c187", later, code_of, by_flags=True)[0]
        by_rows = snapshots._own_tallies(uow, plan_187, "c187", later, code_of, by_flags=False)[0]
        inp = load_consolidation_input(uow, plan_187, "c187", later)
    assert by_flags == by_rows and [m.member_id for m in by_flags["KC"].missing] == ["DV007"]
    assert "DV007" not in {r.member_id for r in inp.member_results}


def test_summaries_stored_before_members_were_counted_are_rebuilt_whole(store, plan_187, consolidated_v1, monkeypatch):
    """Snapshots from before ``own_members`` (they listed each member): the next run rebuilds every
    unit in full, gives each a version in the new shape, and does not read every member again just
    to name whose result changed in that one-off difference."""
    import kiemdiem.store.snapshots as snapshots

    with store.uow() as uow:
        for snap in uow.session.scalars(select(Snapshot).where(Snapshot.campaign_id == "c187")):
            legacy = {k: v for k, v in snap.payload.items() if k != "own_members"} | {"member_results": []}
            snap.payload, snap.content_hash = legacy, hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()
        uow.commit()
    reads = []
    monkeypatch.setattr(snapshots, "_member_changes", lambda *args, **kwargs: reads.append(args) or {})
    submit_late_result(store, plan_187)
    _, run = tick(store, plan_187, LATE_NOW)
    assert run.mode == "full" and reads == []
    assert versions(store) == {"KC": 2, "SCT": 2, "VP1": 2, "VP2": 2}
    assert stored_hashes(store) == full_recompute_hashes(store, plan_187, LATE_NOW)
    with store.uow() as uow:
        assert all("own_members" in s["payload"] for s in latest_snapshots(uow, "c187").values())


def test_a_result_stored_after_a_version_but_dated_before_it_is_listed_as_a_change(store, plan_187, consolidated_v1):
    """DV007 had no result in version 1 (made at NOW). A list received an hour before NOW is only
    stored later: the next version lists DV007 as changed, in the run's diff, in the stored
    difference and between the two versions, though the result is dated before version 1."""
    from kiemdiem.consolidation import MemberResult
    from kiemdiem.store.results import record_results

    result = MemberResult("DV007", "KC", "HTTNV", "HTTNV", "HTTNV", False, 0.0, False, None, "", True)
    with store.uow() as uow:
        changed = record_results(uow, plan_187, "c187", NOW - dt.timedelta(hours=1), [result], [], now=LATE_NOW)
        uow.commit()
    run = consolidate_campaign(store, plan_187, "c187", LATE_NOW, changed_units=changed)
    assert run.mode == "incremental" and run.versions == {"KC": 2, "SCT": 2}
    listed = [(m["member_id"], m["old_level"], m["new_level"]) for m in run.diff["members"]]
    assert listed == [("DV007", None, "HTTNV")]
    with store.uow() as uow:
        assert [m["member_id"] for m in diff_versions(uow, "c187", "KC", 1, 2)["members"]] == ["DV007"]
        assert [m["member_id"] for m in snapshot_history(uow, "c187", "KC")[1]["diff"]["members"]] == ["DV007"]


def test_a_change_between_two_values_that_are_not_levels_is_listed(store, plan_187, consolidated_v1):
    """DV007 goes from no result to "HTT" (not a level): counts and key do not move (both count as
    no level), but a finding about her appears, so whose result changed is read and she is listed."""
    from kiemdiem.consolidation import MemberResult
    from kiemdiem.store.results import record_results

    result = MemberResult("DV007", "KC", "HTTNV", "HTTNV", "HTT", False, 0.0, False, None, "", True)
    with store.uow() as uow:
        changed = record_results(uow, plan_187, "c187", LATE_NOW, [result], [])
        uow.commit()
    run = consolidate_campaign(store, plan_187, "c187", LATE_NOW, changed_units=changed)
    assert "KC" in run.versions
    assert [(m["member_id"], m["old_level"], m["new_level"]) for m in run.diff["members"]] == [("DV007", None, "HTT")]


def test_cli_consolidate_names_the_organizations_without_a_result(store, plan_187, consolidated_v1):
    """Missing members were named, missing organizations listed by code only ("Tổ chức: VP1")."""
    runner = CliRunner()
    cancel = ["result", "cancel", "--campaign", "c187", "--unit", "VP1", "--by", "Đảng ủy Sở", "--reason", "Xếp loại lại", "--at", "10/12/2023 09:00"]
    assert runner.invoke(_cli(), cancel).exit_code == 0
    done = runner.invoke(_cli(), ["consolidate", "--campaign", "c187", "--at", "10/12/2023 10:00"])
    assert done.exit_code == 0, done.output
    assert "• Tổ chức: Chi bộ Văn phòng 1 (VP1)" in flat(done.output)
