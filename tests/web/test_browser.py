"""The dashboard in a real browser (Debian's Chromium via Playwright) against a real uvicorn server.

Screenshots of the overview, the tree, a unit and the consolidation go to test-artifacts/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.support import ict, table_counts
from tests.web.conftest import CAMPAIGN, PASSWORD, PDF, docx_bytes, timeline_plan

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

HTML_AS_PDF = b"<!DOCTYPE html><html><body>not a pdf</body></html>"


def log_in(page: Page, server, email: str) -> None:
    page.goto(f"{server.url}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/c/{CAMPAIGN}(/u/[A-Z0-9]+)?$"))  # a branch lands on its unit page


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
    expect(page.locator("#submit")).to_be_disabled()  # not sent while a file is known bad
    page.locator("#file-list li.bad button.remove").click()
    page.click("#submit")
    expect(page.locator("#result-message")).to_contain_text("1/2 tệp bị từ chối; không có tệp nào được lưu")
    refused = page.locator("#result li.refused")
    expect(refused).to_have_count(1)
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


def test_the_late_card_and_its_tree_link_show_the_same_units(page: Page, live_server, artifacts):
    """The tree's script filters again in the browser (and after each refresh): the card's link shows as
    many matching rows as the card counts, a unit late in one phase and overdue in another among them."""
    live_server.clock.now = ict(2023, 12, 8, 10)
    store, plan = live_server.store, live_server.campaign.plan
    with store.uow() as uow:
        for code, doc, at in (("VP1", "du_thao_bao_cao_kiem_diem", ict(2023, 12, 2, 9)),  # late; then overdue on 05/12
                              ("VP1", "ke_hoach_khac_phuc", ict(2023, 12, 7, 9)),  # on time (28/12)
                              ("QL2", "du_thao_bao_cao_kiem_diem", ict(2023, 12, 1, 9))):  # late
            record_submission(uow, store.blobs, plan, CAMPAIGN, code, doc, [IncomingFile("f.pdf", data=PDF + code.encode() + doc.encode())],
                              at, "cli", actor="test")
        uow.commit()
    log_in(page, live_server, "office@sct.example.vn")
    expect(page.locator("#late-count .big")).to_have_text("2")
    page.locator("#late-count a").click()
    expect(page).to_have_url(re.compile(r"/tree\?root=SCT&state=done_late$"))
    matching = page.locator("#tree > li:not(.ctx):visible")
    expect(matching).to_have_count(2)
    expect(page.locator("#tree-count")).to_have_text("2 đơn vị khớp bộ lọc; 2 đơn vị cấp trên hiện mờ để thấy vị trí trong cây.")
    expect(page.locator('#tree li[data-c="VP1"]')).to_be_visible()
    page.wait_for_timeout(2500)  # the rows refresh themselves every second: the filter holds
    expect(matching).to_have_count(2)
    page.screenshot(path=str(artifacts / "tree-late.png"), full_page=True)
    page.select_option("#state", "overdue")  # asked of the server again (the page holds only the matches)
    expect(matching).to_have_count(6)
    expect(page.locator("#tree-count")).to_contain_text("6 đơn vị khớp bộ lọc")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}")
    expect(page.locator("#overdue-count .big")).to_have_text("6")


# ----------------------------------------------------------------------------- the deadlines' timeline

TWO_MONTHS = ["02/11/2023", "20/11/2023", "21/11/2023", "31/12/2023"]  # two deadlines a day apart
CROWDED = ["02/11/2023", "18/11/2023", "20/11/2023", "21/11/2023", "21/11/2023", "22/11/2023", "31/12/2023"]  # ... and more around them


def timeline_campaign(server, tmp_path, campaign_id: str, deadlines: list[str]) -> str:
    """A campaign of the test tree under a plan with these deadlines, and its office's email."""
    from kiemdiem.store.organization import create_campaign, import_organization  # noqa: PLC0415
    from kiemdiem.web.auth import create_user  # noqa: PLC0415
    from tests.support import write_small_org  # noqa: PLC0415
    from tests.web.conftest import WEB_MEMBERS, WEB_UNITS  # noqa: PLC0415

    units, members = write_small_org(tmp_path / campaign_id, WEB_UNITS, WEB_MEMBERS)
    email = f"office@{campaign_id}.example.vn"
    with server.store.uow() as uow:
        create_campaign(uow, timeline_plan(campaign_id, deadlines), campaign_id, ict(2023, 10, 20))
        import_organization(uow, campaign_id, units, members, ict(2023, 10, 20))
        create_user(uow, campaign_id=campaign_id, unit_code="SCT", email=email, full_name="Văn phòng", role="office",
                    now=ict(2023, 10, 20), password=PASSWORD, actor="test")
        uow.commit()
    return email


LABEL_BOXES = """() => {
  const svg = document.querySelector('svg.timeline').getBoundingClientRect();
  return {svg: [svg.left, svg.top, svg.right, svg.bottom],
          labels: [...document.querySelectorAll('svg.timeline text')].map(t => {
            const r = t.getBoundingClientRect();
            return {text: t.textContent.trim(), box: [r.left, r.top, r.right, r.bottom]};
          })};
}"""


def overlapping(labels: list[dict]) -> list[tuple[str, str]]:
    found = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            (al, at, ar, ab), (bl, bt, br, bb) = a["box"], b["box"]
            if al < br and bl < ar and at < bb and bt < ab:
                found.append((a["text"], b["text"]))
    return found


@pytest.mark.parametrize("name, deadlines", [("two-close", TWO_MONTHS), ("crowded", CROWDED)])
def test_timeline_labels_of_close_deadlines_do_not_overlap(page: Page, live_server, artifacts, tmp_path, name, deadlines):
    """Deadlines a day apart in a campaign of two months: at 1920, 1280 and 800 px no two labels of the
    overview's timeline (dates, phase numbers, today) intersect, each stays inside the drawing, and the
    dates are drawn at least 11 px high."""
    campaign_id = f"tl-{name}"
    email = timeline_campaign(live_server, tmp_path, campaign_id, deadlines)
    live_server.clock.now = ict(2023, 11, 20, 9)
    page.route("**/live/overview*", lambda route: route.abort())  # the drawing is not replaced by a refresh while measured
    page.goto(f"{live_server.url}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/c/{campaign_id}$"))
    for width in (1920, 1280, 800):
        page.set_viewport_size({"width": width, "height": 900})
        drawn = page.evaluate(LABEL_BOXES)
        labels = drawn["labels"]
        dates = [lb for lb in labels if re.fullmatch(r"\d\d/\d\d/\d{4}", lb["text"])]
        assert sorted(lb["text"] for lb in dates) == sorted({f"{d}" for d in deadlines}), width
        assert [lb["text"] for lb in labels if lb["text"].startswith("GĐ")], width
        assert overlapping(labels) == [], (width, overlapping(labels))
        left, top, right, bottom = drawn["svg"]
        outside = [lb["text"] for lb in labels if lb["box"][0] < left or lb["box"][2] > right or lb["box"][1] < top or lb["box"][3] > bottom]
        assert outside == [], (width, outside)
        assert min(lb["box"][3] - lb["box"][1] for lb in dates) >= 11, (width, dates)
        page.locator("svg.timeline").screenshot(path=str(artifacts / f"timeline-{name}-{width}.png"))
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(artifacts / f"overview-timeline-{name}.png"), full_page=True)


# ----------------------------------------------------------------------------- the tree's late rows at 1280 px

ROW_BOXES = """() => Object.fromEntries([...document.querySelectorAll('#tree > li')].filter(li => li.offsetParent).map(li => {
  const a = li.querySelector('a'), late = li.querySelector('.late');
  return [li.dataset.c, {height: li.getBoundingClientRect().height, nameCut: a.scrollWidth > a.clientWidth + 1,
                         late: late ? late.textContent : '', lateCut: late ? late.scrollWidth > late.clientWidth + 1 : false,
                         lateTop: late ? late.getBoundingClientRect().top - li.getBoundingClientRect().top : null}];
}))"""


def test_a_late_row_names_its_phases_on_one_line_at_1280(page: Page, live_server, artifacts):
    """At 1280 px a row overdue in two phases and late in none, or overdue in one and late in another, names them
    with their deadlines on the row's own line: rows are as tall as a row that names nothing, the units' names
    whole; the names follow the live refresh (a phase delivered late becomes "nộp trễ")."""
    live_server.clock.now = ict(2023, 12, 8, 10)
    store, plan = live_server.store, live_server.campaign.plan
    with store.uow() as uow:  # VP1: phase 1 delivered late, phase 2 overdue
        record_submission(uow, store.blobs, plan, CAMPAIGN, "VP1", "du_thao_bao_cao_kiem_diem",
                          [IncomingFile("du_thao.pdf", data=PDF + b"VP1")], ict(2023, 12, 2, 9), "cli", actor="test")
        uow.commit()
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, live_server, "office@sct.example.vn")
    page.goto(f"{live_server.url}/c/{CAMPAIGN}/tree")
    page.click("#expand-all")
    rows = page.evaluate(ROW_BOXES)
    assert rows["VP1"]["late"] == "GĐ 2 (hạn 05/12/2023)GĐ 1 nộp trễ (hạn 30/11/2023)"
    assert rows["KC"]["late"] == "GĐ 1 (hạn 30/11/2023)GĐ 2 (hạn 05/12/2023)"
    assert rows["QL"]["late"] == ""  # no phase of its own
    plain = rows["QL"]["height"]
    assert all(abs(r["height"] - plain) <= 2 for r in rows.values()), rows  # not taller: one line each
    assert [c for c, r in rows.items() if r["nameCut"] or r["lateCut"]] == []  # whole names, whole phases at 1280
    expect(page.locator('#tree li[data-c="VP1"] .lp-overdue')).to_have_attribute("title", re.compile(r"^2\. Chi bộ trực thuộc kiểm điểm"))
    page.screenshot(path=str(artifacts / "tree-late-phases-1280.png"), full_page=True)

    with store.uow() as uow:  # KC sends phase 1 late: its row says so at the next refresh
        record_submission(uow, store.blobs, plan, CAMPAIGN, "KC", "du_thao_bao_cao_kiem_diem",
                          [IncomingFile("du_thao.pdf", data=PDF + b"KC")], ict(2023, 12, 8, 9), "cli", actor="test")
        uow.commit()
    expect(page.locator('#tree li[data-c="KC"] .late')).to_have_text("GĐ 2 (hạn 05/12/2023)GĐ 1 nộp trễ (hạn 30/11/2023)")
    expect(page.locator('#tree li[data-c="KC"] .lp-done_late')).to_have_attribute("title", re.compile("đã nộp đủ sau hạn chót"))
