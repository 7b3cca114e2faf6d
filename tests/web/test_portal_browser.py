"""The portal on a phone (375 x 740) and a desktop in Chromium: the upload form's checks before sending, the
result in view, the unit page's summary, tables that scroll inside themselves. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support import ict
from tests.web.conftest import CAMPAIGN, PASSWORD, PDF

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

PHONE = {"width": 375, "height": 740}
SELF_REVIEW = "chi_bo_kiem_diem|ban_kiem_diem_ca_nhan|m"
MINUTES = "chi_bo_kiem_diem|bien_ban_hoi_nghi|u"


def sign_in(page: Page, server, email: str) -> None:
    page.goto(f"{server.url}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"/c/{CAMPAIGN}(/u/[A-Z0-9]+)?$"))


def test_a_branch_secretary_on_a_phone_lands_on_the_unit_page(page: Page, live_server, artifacts):
    page.set_viewport_size(PHONE)
    sign_in(page, live_server, "vp1@sct.example.vn")
    expect(page).to_have_url(re.compile(rf"/c/{CAMPAIGN}/u/VP1$"))
    owed = page.locator("#owed")
    expect(owed).to_contain_text(re.compile(r"Còn thiếu \d+ mục — hạn gần nhất 30/11/2023 23:59"))
    assert owed.bounding_box()["y"] < 300  # on the first screen
    expect(page.locator("#notices-box")).not_to_have_attribute("open", "")
    expect(page.locator("#notices")).to_be_hidden()
    page.screenshot(path=str(artifacts / "portal-phone-unit.png"), full_page=False)
    page.screenshot(path=str(artifacts / "portal-phone-unit-full.png"), full_page=True)
    page.locator('a.do[href*="ban_kiem_diem_ca_nhan"][href*="DV002"]').first.click()
    expect(page.locator("#item")).to_have_value(SELF_REVIEW)
    expect(page.locator("#member")).to_have_value("DV002")


PAGES = ["", "/tree", "/u/VP1", "/u/SCT", "/u/VP1/upload", "/u/SCT/consolidation", "/users", "/audit"]


def test_no_table_is_wider_than_a_phone_screen(page: Page, live_server):
    page.set_viewport_size(PHONE)
    sign_in(page, live_server, "admin@sct.example.vn")
    for path in PAGES:
        page.goto(f"{live_server.url}/c/{CAMPAIGN}{path}")
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (path, width)
        wide = page.evaluate("""[...document.querySelectorAll('table')].filter(t => {
            const box = t.closest('.scroll') || t;  // the table's scroll container
            return box.getBoundingClientRect().right > window.innerWidth + 1 || getComputedStyle(box).overflowX !== 'auto';
        }).map(t => t.id || t.className || 'table')""")
        assert wide == [], (path, wide)


def test_a_file_known_too_big_is_not_sent(page: Page, live_server, artifacts):
    page.set_viewport_size(PHONE)
    sign_in(page, live_server, "vp1@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP1/upload")
    page.select_option("#item", "chuan_bi_chi_bo|du_thao_bao_cao_kiem_diem|u")
    big = PDF + b"x" * (25 * 1024 * 1024)
    page.set_input_files("#files", [
        {"name": "trang_1.pdf", "mimeType": "application/pdf", "buffer": PDF + b"1"},
        {"name": "anh_chup_25MB.pdf", "mimeType": "application/pdf", "buffer": big},
    ])
    expect(page.locator("#file-list li.bad")).to_contain_text("Tệp quá lớn (25,0 MB; tối đa 1,0 MB)")
    expect(page.locator("#submit")).to_be_disabled()
    expect(page.locator("#send-blocked")).to_contain_text("hãy bỏ tệp anh_chup_25MB.pdf")
    page.screenshot(path=str(artifacts / "portal-phone-upload-too-big.png"), full_page=True)
    page.locator("#file-list li.bad button.remove").click()
    expect(page.locator("#file-list li")).to_have_count(1)
    expect(page.locator("#submit")).to_be_enabled()
    expect(page.locator("#send-blocked")).to_be_hidden()


def test_a_second_photo_to_the_same_item_is_warned_and_the_form_starts_clean(page: Page, live_server, artifacts):
    page.set_viewport_size(PHONE)
    sign_in(page, live_server, "vp1@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP1/upload")
    expect(page.locator(f'#item option[value="{MINUTES}"]')).to_contain_text("đã nộp: bien_ban_VP1.pdf, 27/11/2023 10:00")
    page.select_option("#item", MINUTES)
    expect(page.locator("#replace-warning")).to_have_text(
        "Mục này đã có tệp bien_ban_VP1.pdf, 27/11/2023 10:00; nộp tiếp sẽ thay thế tệp đó (tệp cũ vẫn được lưu trong lịch sử). "
        "Nếu tài liệu có nhiều trang, hãy chọn tất cả các trang cùng một lần.")
    page.set_input_files("#files", [{"name": "trang_2.pdf", "mimeType": "application/pdf", "buffer": PDF + b"page 2"}])
    page.screenshot(path=str(artifacts / "portal-phone-upload-replace-warning.png"), full_page=True)
    page.click("#submit")
    message = page.locator("#result-message")
    expect(message).to_contain_text("thay thế tệp đã nộp trước cho mục này: bien_ban_VP1.pdf, 27/11/2023 10:00")
    expect(message).to_have_class(re.compile(r"\bnotice\b"))
    expect(message).to_be_in_viewport()
    expect(page.locator("#item")).to_have_value("")
    expect(page.locator("#replace-warning")).to_be_hidden()
    expect(page.locator(f'#item option[value="{MINUTES}"]')).to_contain_text("đã nộp: trang_2.pdf, 28/11/2023 09:00")
    page.screenshot(path=str(artifacts / "portal-phone-upload-replaced.png"), full_page=True)

    # The next member's self-review: the member is chosen again, and the same file is flagged to check.
    page.select_option("#item", SELF_REVIEW)
    page.select_option("#member", "DV001")
    page.set_input_files("#files", [{"name": "kiem_diem.pdf", "mimeType": "application/pdf", "buffer": PDF + b"DV001"}])
    page.click("#submit")
    expect(message).to_have_class(re.compile(r"\bok\b"))
    expect(page.locator("#member")).to_have_value("")
    page.select_option("#item", SELF_REVIEW)
    expect(page.locator('#member option[value="DV001"]')).to_contain_text("✓ Nguyễn Sỹ Chín (DV001) — đã nộp: kiem_diem.pdf")
    assert page.locator("#member option").nth(1).get_attribute("value") == "DV002"  # the missing member first
    page.select_option("#member", "DV002")
    expect(page.locator("#replace-warning")).to_be_hidden()
    page.set_input_files("#files", [{"name": "kiem_diem.pdf", "mimeType": "application/pdf", "buffer": PDF + b"DV001"}])
    page.click("#submit")
    warning = page.locator("#result .result-warning")
    expect(warning).to_contain_text("⚠ Cần kiểm tra: tệp này giống hệt tệp đã nộp cho Bản kiểm điểm cá nhân của đảng viên Nguyễn Sỹ Chín (DV001)")
    assert warning.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 244, 224)"
    page.screenshot(path=str(artifacts / "portal-phone-upload-same-file.png"), full_page=True)


def test_a_refusal_leaves_no_ready_marks(page: Page, live_server):
    page.set_viewport_size(PHONE)
    sign_in(page, live_server, "vp1@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP1/upload")
    page.select_option("#item", "chuan_bi_chi_bo|du_thao_bao_cao_kiem_diem|u")
    page.set_input_files("#files", [{"name": "du_thao.pdf", "mimeType": "application/pdf", "buffer": PDF + b"fine"},
                                    {"name": "bao_cao.pdf", "mimeType": "application/pdf", "buffer": b"<html>not a pdf</html>"}])
    expect(page.locator("#file-list li.ready")).to_have_count(2)
    page.click("#submit")
    expect(page.locator("#result-message")).to_contain_text("1/2 tệp bị từ chối")
    expect(page.locator("#result-message")).to_be_in_viewport()
    expect(page.locator("#file-list li.ready")).to_have_count(0)
    expect(page.locator("#file-list li.not_stored").first).to_contain_text("Chưa lưu")


def test_a_list_with_errors_is_shown_one_error_a_line(page: Page, live_server, artifacts):
    sign_in(page, live_server, "vp1@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP1/upload")
    page.select_option("#item", "chi_bo_kiem_diem|tong_hop_xep_loai_dang_vien|u")
    bad = "Mã đảng viên,Chi bộ đề xuất\nDV001,Giỏi\nDV004,HTTNV\n".encode()
    page.set_input_files("#files", [{"name": "tong_hop.csv", "mimeType": "text/csv", "buffer": bad}])
    page.click("#submit")
    expect(page.locator("#result-message")).to_have_text("Danh sách có 2 lỗi cần sửa, chưa được nhận:")
    lines = page.locator("#result li.refused ul.problems li")
    expect(lines).to_have_count(2)
    expect(lines.nth(0)).to_contain_text("dòng 2, cột 'Chi bộ đề xuất': mức xếp loại không hợp lệ 'Giỏi'")
    page.screenshot(path=str(artifacts / "portal-upload-list-errors.png"), full_page=True)


def test_the_session_ended_during_an_upload_offers_to_sign_in_again(page: Page, live_server):
    sign_in(page, live_server, "vp1@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP1/upload")
    page.context.clear_cookies()
    page.select_option("#item", "chuan_bi_chi_bo|du_thao_bao_cao_kiem_diem|u")
    page.set_input_files("#files", [{"name": "du_thao.pdf", "mimeType": "application/pdf", "buffer": PDF + b"late"}])
    page.click("#submit")
    expect(page.locator("#result-message")).to_contain_text("Phiên đăng nhập đã hết")
    link = page.locator("#login-again")
    expect(link).to_have_text("Đăng nhập lại")
    link.click()
    page.fill("#email", "vp1@sct.example.vn")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/c/{CAMPAIGN}/u/VP1/upload$"))


def test_the_login_and_recovery_pages_on_a_phone(page: Page, live_server, artifacts):
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/login")
    page.screenshot(path=str(artifacts / "portal-phone-login.png"), full_page=True)
    page.click("#forgot")
    expect(page).to_have_url(re.compile(r"/login/link$"))
    page.screenshot(path=str(artifacts / "portal-phone-recovery.png"), full_page=True)
    page.fill("#email", "vp2@sct.example.vn")
    page.click("button[type=submit]")
    expect(page.locator("#link-sent")).to_contain_text("Nếu địa chỉ này có trong hệ thống, đường dẫn đăng nhập mới sẽ được gửi tới trong ít phút")
    page.screenshot(path=str(artifacts / "portal-phone-recovery-sent.png"), full_page=True)


def test_a_used_link_opened_again_shows_a_notice_at_home(page: Page, live_server):
    sign_in(page, live_server, "vp1@sct.example.vn")
    page.goto(f"{live_server.url}/signin/already-used-token")
    expect(page).to_have_url(re.compile(rf"/c/{CAMPAIGN}/u/VP1$"))
    expect(page.locator("#page-notice")).to_contain_text("đường dẫn đăng nhập trong thư đã được dùng")


def test_the_drag_hint_is_hidden_on_a_touch_screen(browser, live_server):
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    page = context.new_page()
    sign_in(page, live_server, "vp1@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/u/VP1/upload")
    expect(page.locator(".drag-hint")).to_be_hidden()
    expect(page.locator(".touch-hint")).to_be_visible()
    page.screenshot(path=str(live_server_artifacts() / "portal-phone-upload-touch.png"))  # full_page re-emulates a mouse
    context.close()


def live_server_artifacts():
    from tests.web.conftest import ARTIFACTS  # noqa: PLC0415

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ----------------------------------------------------------------------------- the deadlines on a phone

SMALL_PHONE = {"width": 360, "height": 740}

DEADLINES = """() => {
  const svg = document.querySelector('svg.timeline'), list = document.querySelector('#deadlines');
  const items = [...list.querySelectorAll('li')].map(li => {
    const r = li.getBoundingClientRect(), date = li.querySelector('time') || li;
    return {text: li.textContent.replace(/\\s+/g, ' ').trim(), top: r.top, bottom: r.bottom, left: r.left, right: r.right,
            font: parseFloat(getComputedStyle(date).fontSize), cls: li.className};
  });
  return {svg: getComputedStyle(svg).display, svgWidth: svg.getBoundingClientRect().width, list: getComputedStyle(list).display,
          items, page: [document.documentElement.scrollWidth, window.innerWidth]};
}"""


def test_the_deadlines_are_a_readable_list_on_a_phone(page: Page, live_server, artifacts):
    """At 360 px the timeline's drawing (its labels a few pixels high once scaled to the screen) gives way to a
    list of the deadlines, one under another, at the page's text size, with today among them; on a desktop the
    drawing is shown as before and the list is not."""
    live_server.clock.now = ict(2023, 12, 1, 9)
    page.set_viewport_size(SMALL_PHONE)
    sign_in(page, live_server, "vp1@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}")
    drawn = page.evaluate(DEADLINES)
    assert drawn["svg"] == "none" and drawn["list"] == "block"
    items = drawn["items"]
    assert [i["text"][:10] for i in items] == ["30/11/2023", "Hôm nay 01", "05/12/2023", "06/12/2023", "10/12/2023", "28/12/2023",
                                                "31/12/2023"]  # in date order, today in its place
    assert [i["text"] for i in items if "today" in i["cls"]] == ["Hôm nay 01/12/2023"]
    assert "GĐ 1 Chi bộ gửi dự thảo báo cáo kiểm điểm tới người dự hội nghị" in items[0]["text"]
    assert "có đơn vị quá hạn" in items[0]["text"] and "late" in items[0]["cls"]
    assert "GĐ 6 Đảng ủy Sở xây dựng" in items[-1]["text"] and "GĐ 7 Đảng viên xây dựng" in items[-1]["text"]  # one deadline, two phases
    assert "GĐ 3 Đảng ủy Sở gửi dự thảo báo cáo kiểm điểm của Ban Chấp hành tới người dự hội nghị (không đơn vị nào trong phạm vi này" in items[3]["text"]
    assert min(i["font"] for i in items) >= 14, items  # the page's own text size, not a drawing scaled down
    assert all(b["top"] >= a["bottom"] - 1 for a, b in zip(items, items[1:])), items  # one under another
    assert all(i["left"] >= 0 and i["right"] <= SMALL_PHONE["width"] for i in items), items
    assert drawn["page"][0] <= drawn["page"][1]
    page.locator("#deadlines").screenshot(path=str(artifacts / "portal-phone-deadlines.png"))

    page.set_viewport_size({"width": 1280, "height": 900})
    desktop = page.evaluate(DEADLINES)
    assert desktop["svg"] != "none" and desktop["list"] == "none" and desktop["svgWidth"] > 1000
