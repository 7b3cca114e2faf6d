"""A committee's decisions from the dashboard (SQLite and PostgreSQL): cancelling a result and approving
a finding, by whom, with what refused, and the consolidation that follows."""

from __future__ import annotations

import re

from sqlalchemy import select

from kiemdiem.store.models import EventLog, FindingOverride, MemberResult, OrgResult, Snapshot, Unit
from tests.support import ict, table_counts
from tests.web.conftest import CAMPAIGN

CAP_KEY = "cap_members:SCT:"  # version 2 of SCT: 1 HTXSNV for 2 HTTNV, over the 20% cap
DECIDED_AT = ict(2023, 12, 8, 9)


def events(store, action: str) -> list[tuple]:
    """(actor, subject, detail) of each event logged for ``action``."""
    with store.uow() as uow:
        return uow.session.execute(
            select(EventLog.actor, EventLog.subject, EventLog.detail).where(EventLog.action == action).order_by(EventLog.id)
        ).all()


def newest_version(store, code: str) -> tuple[int, dict]:
    with store.uow() as uow:
        snap = uow.session.scalars(
            select(Snapshot).join(Unit, Unit.id == Snapshot.unit_id).where(Unit.code == code).order_by(Snapshot.version.desc()).limit(1)
        ).one()
        return snap.version, snap.payload


def finding_row(page: str, key_text: str) -> str:
    table = page[page.index('id="findings"'):page.index("</table>", page.index('id="findings"'))]
    return next(row for row in table.split("<tr>") if key_text in row)


def test_an_office_approves_a_cap_breach_and_the_consolidation_shows_it(client_as, store, clock):
    clock.now = DECIDED_AT
    office = client_as("office@sct.example.vn")  # bound to SCT, the campaign's root
    page = office.get("/c/c187/u/SCT/consolidation").text
    row = finding_row(page, "20%")
    assert f'name="key" value="{CAP_KEY}"' in row and ">Chấp thuận…</summary>" in row
    # Nobody else sees the form: a branch's secretary, or an office whose subtree does not hold SCT.
    assert 'action="/c/c187/u/SCT/findings/override"' not in client_as("vp1@sct.example.vn").get("/c/c187/u/VP1/consolidation").text

    # Refused: no reason. Nothing is stored, the form comes back open with what was typed and why.
    before = table_counts(store)
    refused = office.post("/c/c187/u/SCT/findings/override",
                          data={"csrf_token": office.csrf, "key": CAP_KEY, "by": "Ban Thường vụ Đảng ủy Khối", "reason": "  "})
    assert refused.status_code == 422
    row = finding_row(refused.text, "20%")
    assert "<details class=\"decide\" open>" in row and "Chưa ghi nhận: phải ghi rõ lý do" in row
    assert 'value="Ban Thường vụ Đảng ủy Khối"' in row
    assert table_counts(store) == before

    done = office.post("/c/c187/u/SCT/findings/override", data={
        "csrf_token": office.csrf, "key": CAP_KEY, "by": "Ban Thường vụ Đảng ủy Khối (CV số 12-CV/ĐUK)",
        "reason": "đơn vị có thành tích nổi bật",
    })
    assert done.status_code == 303 and done.headers["location"].startswith("/c/c187/u/SCT/consolidation?decided=override")
    with store.uow() as uow:
        stored = uow.session.execute(select(FindingOverride.finding_key, FindingOverride.by, FindingOverride.reason)).all()
    assert stored == [(CAP_KEY, "Ban Thường vụ Đảng ủy Khối (CV số 12-CV/ĐUK)", "đơn vị có thành tích nổi bật")]
    version, payload = newest_version(store, "SCT")
    assert version == 3 and payload["members"]["quota"]["status"] == "overridden"
    [logged] = events(store, "web.finding_override")
    assert (logged.actor, logged.subject, logged.detail["unit"]) == ("office@sct.example.vn", CAP_KEY, "SCT")
    after = office.get(done.headers["location"]).text
    assert "Đã ghi nhận việc chấp thuận: Có 1 đảng viên HTXSNV trên 2 HTTNV" in after and "Tổng hợp đã được tính lại." in after
    assert "Phiên bản <strong>3</strong>" in after
    row = finding_row(after, "20%")
    assert "Đã được Ban Thường vụ Đảng ủy Khối (CV số 12-CV/ĐUK) chấp thuận: đơn vị có thành tích nổi bật" in row
    assert "Chấp thuận…" not in row  # approved: no form any more

    # Another approval of the same numbers (a second tab, a colleague): refused, said above the table.
    again = office.post("/c/c187/u/SCT/findings/override",
                        data={"csrf_token": office.csrf, "key": CAP_KEY, "by": "Thường trực Đảng ủy Khối", "reason": "khác"})
    assert again.status_code == 422
    error = re.search(r'id="decision-error">([^<]*)<', again.text).group(1)
    assert error.startswith(f"Chưa ghi nhận: vi phạm &#39;{CAP_KEY}&#39; đã được Ban Thường vụ Đảng ủy Khối (CV số 12-CV/ĐUK) chấp thuận lúc")


def test_approving_is_for_the_units_below_ones_own(client_as, store, clock):
    """An office bound to QL may not approve SCT's finding (not in its subtree); nor may a unit's secretary."""
    clock.now = DECIDED_AT
    before = table_counts(store)
    for email in ("office.ql@sct.example.vn", "vp1@sct.example.vn"):
        client = client_as(email)
        response = client.post("/c/c187/u/SCT/findings/override",
                               data={"csrf_token": client.csrf, "key": CAP_KEY, "by": "X", "reason": "Y"})
        assert response.status_code == 404, email
    assert table_counts(store) == before


def test_an_office_cancels_a_members_result_and_the_branch_is_consolidated_again(client_as, store, clock):
    clock.now = DECIDED_AT
    office = client_as("office@sct.example.vn")
    page = office.get("/c/c187/u/VP2").text
    results = page[page.index('id="member-results"'):]
    row = next(r for r in results.split("<tr") if "DV004" in r)
    assert 'name="member" value="DV004"' in row and ">Hủy kết quả…</summary>" in row
    before_version, _ = newest_version(store, "VP2")

    done = office.post("/c/c187/u/VP2/results/cancel", data={
        "csrf_token": office.csrf, "member": "DV004", "by": "Đảng ủy Sở (QĐ số 20-QĐ/ĐU)", "reason": "xếp loại lại theo kết luận kiểm tra",
    })
    assert done.status_code == 303 and done.headers["location"].startswith("/c/c187/u/VP2?decided=cancel")
    with store.uow() as uow:
        rows = uow.session.execute(select(MemberResult.current, MemberResult.cancelled_by, MemberResult.cancel_reason)).all()
    cancelled = [r for r in rows if r.cancelled_by]
    assert [(r.current, r.cancelled_by, r.cancel_reason) for r in cancelled] == [
        (False, "Đảng ủy Sở (QĐ số 20-QĐ/ĐU)", "xếp loại lại theo kết luận kiểm tra")
    ]
    version, payload = newest_version(store, "VP2")
    assert version == before_version + 1 and payload["members"]["missing"] == 1  # DV004 has no result now
    [logged] = events(store, "web.result_cancel")
    assert logged.actor == "office@sct.example.vn" and logged.subject == "DV004"
    after = office.get(done.headers["location"]).text
    assert "Đã hủy kết quả hiện hành của DV004; lịch sử được giữ. Tổng hợp đã được tính lại." in after
    row = next(r for r in after[after.index('id="member-results"'):].split("<tr") if "DV004" in r)
    assert "đã hủy 08/12/2023 09:00: xếp loại lại theo kết luận kiểm tra" in row and "Hủy kết quả…" not in row

    # Again: nothing current to cancel, said on the page; nothing changes.
    before = table_counts(store)
    again = office.post("/c/c187/u/VP2/results/cancel",
                        data={"csrf_token": office.csrf, "member": "DV005", "by": "Đảng ủy Sở", "reason": "x"})
    assert again.status_code == 303  # DV005 has a result: cancelled as well
    twice = office.post("/c/c187/u/VP2/results/cancel",
                        data={"csrf_token": office.csrf, "member": "DV005", "by": "Đảng ủy Sở", "reason": "x"})
    assert twice.status_code == 422 and "Chưa ghi nhận: đảng viên DV005 không có kết quả xếp loại hiện hành để hủy" in twice.text
    assert table_counts(store)["member_results"] == before["member_results"]


def test_an_office_cancels_a_branchs_own_result_but_not_its_own(client_as, store, clock):
    clock.now = DECIDED_AT
    office = client_as("office@sct.example.vn")
    done = office.post("/c/c187/u/VP1/results/cancel", data={"csrf_token": office.csrf, "by": "Đảng ủy Sở", "reason": "quyết định lại"})
    assert done.status_code == 303
    with store.uow() as uow:
        vp1 = uow.session.scalar(select(Unit.id).where(Unit.code == "VP1"))
        assert uow.session.scalars(select(OrgResult.current).where(OrgResult.unit_id == vp1)).all() == [False]
    # A unit's secretary cannot; an office at QL cannot reach VP1; a member of another branch is not offered here.
    before = table_counts(store)
    for email, url, member in (("vp2@sct.example.vn", "/c/c187/u/VP2/results/cancel", "DV004"),
                               ("office.ql@sct.example.vn", "/c/c187/u/VP1/results/cancel", "DV001"),
                               ("office@sct.example.vn", "/c/c187/u/VP1/results/cancel", "DV004")):
        client = client_as(email)
        response = client.post(url, data={"csrf_token": client.csrf, "member": member, "by": "X", "reason": "Y"})
        assert response.status_code == 404, (email, url)
    assert table_counts(store) == before


def test_an_approval_is_named_in_words_on_the_page_and_in_the_versions_reason(client_as, store, clock):
    """Not by its key ("cap_organizations:SCT:"), and the message's own full stop is not doubled."""
    clock.now = DECIDED_AT
    office = client_as("office@sct.example.vn")
    done = office.post("/c/c187/u/SCT/findings/override",
                       data={"csrf_token": office.csrf, "key": CAP_KEY, "by": "Ban Thường vụ Đảng ủy Sở", "reason": "Thành tích nổi bật"})
    assert done.status_code == 303, done.text
    page = office.get(done.headers["location"]).text
    assert ".. " not in page and CAP_KEY not in page.split('id="decision-done"', 1)[1].split("</p>", 1)[0]
    _, payload = newest_version(store, "SCT")
    with store.uow() as uow:
        from kiemdiem.store.models import Snapshot  # noqa: PLC0415

        reason = uow.session.scalars(select(Snapshot.reason).order_by(Snapshot.id.desc())).first()
    assert reason.startswith("chấp thuận vi phạm hạn mức 20% đảng viên HTXSNV của Đảng bộ Sở Công Thương (SCT) (Ban Thường vụ Đảng ủy Sở")
