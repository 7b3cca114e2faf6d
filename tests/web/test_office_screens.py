"""The office's overview and consolidation pages in Chromium at 1366x768, with what the QA tester met:
overdue units in several phases, escalations made while the mail server was down, a branch whose
proposals await the committee. Screenshots go to test-artifacts/office-*.png."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from kiemdiem.web.auth import SESSION_COOKIE
from tests.support import ict
from tests.web.conftest import CAMPAIGN, session_for
from tests.web.test_office_consolidation import add_kc_with_a_proposal
from tests.web.test_office_overview import SMTP_DOWN, add_escalation

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def sign_in(page: Page, server, email: str) -> None:
    """A session cookie for ``email`` (the log-in form is tested elsewhere)."""
    cookie, _csrf = session_for(server.app, server.store, email)
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": server.url}])


def test_office_overview_and_consolidation_at_1366(page: Page, live_server, artifacts):
    live_server.clock.now = ict(2023, 12, 8, 10)
    add_escalation(live_server.store, "VP2", "chuan_bi_chi_bo", "sent", 1, at=ict(2023, 12, 1, 7, 30))
    add_escalation(live_server.store, "KC", "chuan_bi_chi_bo", "failed", 2, error=SMTP_DOWN)
    add_escalation(live_server.store, "QL2", "chuan_bi_chi_bo", "queued", 3)
    add_kc_with_a_proposal(live_server.store)
    page.set_viewport_size({"width": 1366, "height": 768})
    sign_in(page, live_server, "office@sct.example.vn")

    page.goto(f"{live_server.url}/c/{CAMPAIGN}")
    expect(page.locator("#overdue-title")).to_contain_text("Hồ sơ quá hạn theo đơn vị và giai đoạn (")
    expect(page.locator("#mail-failures")).to_contain_text("Không kết nối được máy chủ thư (SMTP)")
    expect(page.locator("#mail-failures details code")).to_be_hidden()  # the server's words until asked for
    expect(page.locator("#overdue")).to_contain_text("đã tạo 1 thư, gửi lỗi")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.screenshot(path=str(artifacts / "office-overview.png"), full_page=True)
    page.click("#mail-failures summary")
    expect(page.locator("#mail-failures details code")).to_contain_text("Error connecting to 127.0.0.1")

    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/KC/consolidation")
    expect(page.locator("#awaiting-decision")).to_contain_text("1 đảng viên đã có đề xuất của chi bộ, chờ cấp có thẩm quyền quyết định")
    expect(page.locator("#dossiers")).to_contain_text("Tải hồ sơ (ZIP)")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    page.screenshot(path=str(artifacts / "office-consolidation-kc.png"), full_page=True)

    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/SCT/consolidation")
    page.click("#dossiers summary")
    with page.expect_download() as download:
        page.click('#dossiers tr[data-phase="dang_uy_bao_cao_khoi"] a')
    assert download.value.suggested_filename.startswith("Hồ sơ Đảng bộ Sở Công Thương - ")
    page.screenshot(path=str(artifacts / "office-consolidation-sct.png"), full_page=True)

    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/QL1/consolidation")
    expect(page.locator("#no-consolidation")).to_contain_text("Kết quả sẽ được tổng hợp ở lượt xử lý tới")
    page.screenshot(path=str(artifacts / "office-consolidation-empty.png"), full_page=True)
