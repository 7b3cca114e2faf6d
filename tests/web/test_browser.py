"""The dashboard in a real browser (Debian's Chromium via Playwright) against a real uvicorn server.

Screenshots of the overview, the tree, a unit and the consolidation go to test-artifacts/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.support import ict, table_counts
from tests.web.conftest import CAMPAIGN, PASSWORD, PDF, docx_bytes

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

HTML_AS_PDF = b"<!DOCTYPE html><html><body>not a pdf</body></html>"


def log_in(page: Page, server, email: str) -> None:
    page.goto(f"{server.url}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/c/{CAMPAIGN}$"))


def test_unit_user_sees_only_their_subtree_and_two_files_complete_a_phase(page: Page, live_server, artifacts):
    log_in(page, live_server, "vp1@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/tree")
    rows = page.locator("#tree > li")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-c", "VP1")
    assert "Chi bộ Văn phòng 2" not in page.content()

    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP1")
    phase = page.locator('section[data-phase="chuan_bi_chi_bo"]')
    expect(phase.locator("h3 .b")).to_have_text("Sắp đến hạn")

    page.click("text=Nộp hồ sơ")
    page.select_option("#item", "chuan_bi_chi_bo|du_thao_bao_cao_kiem_diem|u")
    expect(page.locator("#member-row")).to_be_hidden()
    expect(page.locator("#item-note")).to_have_text("Kế hoạch ghi: Dự thảo báo cáo kiểm điểm của chi ủy (của chi bộ, nơi không có chi ủy)")
    page.set_input_files("#files", [
        {"name": "du_thao_bao_cao.pdf", "mimeType": "application/pdf", "buffer": PDF + b"draft"},
        {"name": "phu_luc.docx", "mimeType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "buffer": docx_bytes()},
    ])
    expect(page.locator("#file-list li.ready")).to_have_count(2)
    page.click("#submit")
    expect(page.locator("#result-message")).to_contain_text("Đã nhận 2 tệp (đúng hạn")
    expect(page.locator("#result li.accepted")).to_have_count(2)
    expect(page.locator("#result li.accepted").first).to_contain_text("đúng hạn (hạn 30/11/2023 23:59)")

    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP1")
    expect(phase.locator("h3 .b")).to_have_text("Hoàn thành")
    expect(page.locator("#files")).to_contain_text("du_thao_bao_cao.pdf")
    expect(page.locator("#files")).to_contain_text("phu_luc.docx")
    page.screenshot(path=str(artifacts / "unit.png"), full_page=True)

    page.goto(f"{live_server.url}/c/{CAMPAIGN}/tree?phase=chuan_bi_chi_bo")
    expect(page.locator('#tree li[data-c="VP1"] .b')).to_have_text("Hoàn thành")


def test_refused_upload_shows_the_reason_and_stores_nothing(page: Page, live_server, artifacts):
    log_in(page, live_server, "vp1@sct.example.vn")
    before = table_counts(live_server.store)
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP1/upload")
    page.select_option("#item", "chuan_bi_chi_bo|du_thao_bao_cao_kiem_diem|u")
    page.set_input_files("#files", [
        {"name": "du_thao.pdf", "mimeType": "application/pdf", "buffer": PDF + b"fine"},
        {"name": "bao_cao.pdf", "mimeType": "application/pdf", "buffer": HTML_AS_PDF},
        {"name": "chuong_trinh.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00"},
    ])
    expect(page.locator("#file-list li.bad")).to_contain_text("Loại tệp không được nhận (.exe)")  # checked before sending
    page.click("#submit")
    expect(page.locator("#result-message")).to_contain_text("2/3 tệp bị từ chối; không có tệp nào được lưu")
    refused = page.locator("#result li.refused")
    expect(refused).to_have_count(2)
    expect(refused.nth(0)).to_contain_text("Nội dung tệp không phải PDF")
    expect(refused.nth(0)).to_contain_text("HTML")
    expect(page.locator("#result li.not_stored")).to_contain_text("du_thao.pdf")
    page.screenshot(path=str(artifacts / "upload-refused.png"), full_page=True)
    assert table_counts(live_server.store) == before


def test_office_sees_overdue_units_the_tree_and_the_consolidation_diff(page: Page, live_server, artifacts):
    live_server.clock.now = ict(2023, 12, 6, 10)
    store, plan = live_server.store, live_server.campaign.plan
    with store.uow() as uow:  # VP1 sent everything for the first phase in time, KC late
        for code, at in (("VP1", ict(2023, 11, 29, 9)), ("KC", ict(2023, 12, 2, 9))):
            record_submission(uow, store.blobs, plan, CAMPAIGN, code, "du_thao_bao_cao_kiem_diem",
                              [IncomingFile("du_thao.pdf", data=PDF + code.encode())], at, "cli", actor="test")
        uow.commit()
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, live_server, "office@sct.example.vn")
    overdue = page.locator("#overdue")
    expect(overdue).to_contain_text("Chi bộ Văn phòng 2")
    expect(overdue).to_contain_text("Chi bộ Đội Quản lý thị trường số 1")
    expect(page.locator("#late-count .big")).to_have_text("1")
    expect(page.locator("svg.timeline .today text")).to_contain_text("Hôm nay 06/12/2023")
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    page.goto(f"{live_server.url}/c/{CAMPAIGN}/tree")
    expect(page.locator("#tree > li:visible")).to_have_count(5)  # SCT and its children; QL's branches folded
    page.click('#tree li[data-c="QL"] button.t')
    expect(page.locator("#tree > li:visible")).to_have_count(7)
    page.fill("#q", "khuyen cong")
    expect(page.locator("#tree > li:visible")).to_have_count(2)
    page.fill("#q", "")
    page.select_option("#state", "overdue")
    expect(page.locator('#tree li[data-c="VP2"]')).to_be_visible()
    expect(page.locator('#tree li[data-c="KC"]')).to_be_visible()
    page.select_option("#state", "")
    page.screenshot(path=str(artifacts / "tree.png"), full_page=True)

    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/SCT/consolidation")
    diff = page.locator("#diff")
    expect(diff).to_contain_text("Thay đổi từ phiên bản 1")
    expect(diff).to_contain_text("Trần Thị Hoa")
    expect(diff).to_contain_text("HTXSNV")
    expect(page.locator("#quota")).to_contain_text("vượt hạn mức")
    page.screenshot(path=str(artifacts / "consolidation.png"), full_page=True)


def test_pages_refresh_by_themselves(page: Page, live_server):
    log_in(page, live_server, "office@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/tree?phase=chuan_bi_chi_bo")
    badge = page.locator('#tree li[data-c="VP2"] .b')
    expect(badge).to_have_text("Sắp đến hạn")
    page.evaluate("window.__same_document = true")
    store, plan = live_server.store, live_server.campaign.plan
    with store.uow() as uow:
        record_submission(uow, store.blobs, plan, CAMPAIGN, "VP2", "du_thao_bao_cao_kiem_diem",
                          [IncomingFile("du_thao.pdf", data=PDF + b"live")], ict(2023, 11, 28, 8), "cli", actor="test")
        uow.commit()
    expect(badge).to_have_text("Hoàn thành", timeout=8000)
    assert page.evaluate("window.__same_document") is True  # updated in place, no reload

    page.goto(f"{live_server.url}/c/{CAMPAIGN}")
    expect(page.locator("#overdue-count .big")).to_have_text("0")
    page.evaluate("window.__same_document = true")
    live_server.clock.now = ict(2023, 12, 1, 9)
    expect(page.locator("#overdue-count .big")).to_have_text("4", timeout=8000)  # VP1, KC, QL1, QL2 missed 30/11
    assert page.evaluate("window.__same_document") is True


def test_a_unit_user_gets_404_for_another_unit(page: Page, live_server):
    log_in(page, live_server, "vp1@sct.example.vn")
    other_file = live_server.campaign.files["VP2"]
    for path in ("/u/VP2", f"/files/{other_file}", "/u/VP2/export/progress.xlsx", "/u/VP2/export/consolidation.csv",
                 "/u/VP2/consolidation", "/u/VP2/calendar.ics", "/tree?root=SCT"):
        response = page.request.get(f"{live_server.url}/c/{CAMPAIGN}{path}")
        assert response.status == 404, path
    response = page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP2")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Không tìm thấy")
    own = page.request.get(f"{live_server.url}/c/{CAMPAIGN}/files/{live_server.campaign.files['VP1']}")
    assert own.status == 200 and own.body() == PDF + b"VP1"


PHONE_PAGES = ["", "/tree", "/u/VP1", "/u/SCT/consolidation", "/users", "/audit"]


def test_pages_fit_a_phone_screen(page: Page, live_server, artifacts):
    """At 375 px the page itself never scrolls sideways: wide tables scroll inside their own box, cards hold
    their tables, and the tree shows whole unit names (wrapped, not cut to "C…")."""
    page.set_viewport_size({"width": 375, "height": 800})
    log_in(page, live_server, "admin@sct.example.vn")
    for path in PHONE_PAGES:
        page.goto(f"{live_server.url}/c/{CAMPAIGN}{path}")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (path, width)
        spilling = page.evaluate("""[...document.querySelectorAll('.card, section')]
            .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className + ' ' + e.scrollWidth)""")
        assert spilling == [], (path, spilling)
        page.screenshot(path=str(artifacts / f"phone{path.replace('/', '-') or '-overview'}.png"), full_page=True)
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/tree")
    page.click("#expand-all")
    cut = page.evaluate("""[...document.querySelectorAll('#tree li a')]
        .filter(a => a.offsetParent && a.scrollWidth > a.clientWidth + 1).map(a => a.textContent)""")
    assert cut == []
    expect(page.locator('#tree li[data-c="QL1"] a')).to_be_visible()


def test_the_overview_phase_table_fits_a_desktop_screen(page: Page, live_server):
    """At 1366 px every state's column, "Quá hạn" last, is on screen without scrolling the table."""
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, live_server, "office@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}")
    scroll, client = page.evaluate("(b => [b.scrollWidth, b.clientWidth])(document.querySelector('#phases').parentElement)")
    assert scroll <= client, (scroll, client)


def test_office_approves_a_finding_and_cancels_a_result_from_the_pages(page: Page, live_server, artifacts):
    live_server.clock.now = ict(2023, 12, 8, 9)
    page.set_viewport_size({"width": 1366, "height": 900})
    log_in(page, live_server, "office@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/SCT/consolidation")
    row = page.locator("#findings tr", has_text="20%")
    row.locator("summary", has_text="Chấp thuận").click()
    row.locator("input[name=by]").fill("Ban Thường vụ Đảng ủy Khối (CV số 12-CV/ĐUK)")
    row.locator("input[name=reason]").fill("đơn vị có thành tích nổi bật")
    page.screenshot(path=str(artifacts / "approve-finding.png"), full_page=True)
    row.locator("button[type=submit]").click()
    expect(page.locator("#decision-done")).to_contain_text("Đã ghi nhận việc chấp thuận")
    expect(page.locator("#findings")).to_contain_text("Đã được Ban Thường vụ Đảng ủy Khối (CV số 12-CV/ĐUK) chấp thuận")
    expect(page.locator("#quota")).to_contain_text("vượt (đã được chấp thuận)")

    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP2")
    member = page.locator("#member-results tr", has_text="DV004")
    member.locator("summary", has_text="Hủy kết quả").click()
    member.locator("button[type=submit]").click()  # nothing typed: the browser asks for it, nothing is sent
    expect(page.locator("#decision-done")).to_have_count(0)
    member.locator("input[name=by]").fill("Đảng ủy Sở (QĐ số 20-QĐ/ĐU)")
    member.locator("input[name=reason]").fill("xếp loại lại")
    member.locator("button[type=submit]").click()
    expect(page.locator("#decision-done")).to_contain_text("Đã hủy kết quả hiện hành của DV004")
    expect(page.locator("#member-results tr", has_text="DV004")).to_contain_text("đã hủy 08/12/2023 09:00: xếp loại lại")
    page.screenshot(path=str(artifacts / "cancel-result.png"), full_page=True)
