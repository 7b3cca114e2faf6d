"""The portal as a branch secretary meets it (HTTP, SQLite and PostgreSQL): the people page with an invitation
that could not be delivered, uploads that replace a file, same-file warnings, sign-in recovery, landing pages."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from sqlalchemy import select, update

from kiemdiem.notify.transport import RefusedRecipient, SendOutcome, SendStatus
from kiemdiem.store.models import EventLog, Outbox, SignInToken, User
from tests.support import table_counts
from kiemdiem.web.auth import SESSION_COOKIE
from tests.web.conftest import PASSWORD, PDF, session_for
from tests.web.test_http import csrf_of, invite_token, user_row
from tests.web.test_uploads import DRAFT, upload

# ----------------------------------------------------------------------------- 1. an invitation that failed


def fail_invitations(store, outcome: SendOutcome) -> None:
    """The sender's own record of a refused message, as ``store.outbox`` writes it (``last_error`` a JSON dict)."""
    with store.uow() as uow:
        uow.session.execute(update(Outbox).where(Outbox.kind == "invite").values(status="failed", attempts=1,
                                                                                  last_error=outcome.as_dict()))
        uow.commit()


def test_the_people_page_says_in_words_why_an_invitation_failed(client_as, store):
    office = client_as("office@sct.example.vn")
    invite_token(office, store)
    fail_invitations(store, SendOutcome(SendStatus.PERMANENT, 550, "5.1.1 <bithu.ql2@sct.example.vn>: mailbox unavailable",
                                        "SMTPRecipientsRefused",
                                        (RefusedRecipient("bithu.ql2@sct.example.vn", 550, "5.1.1 mailbox unavailable"),)))
    response = office.get("/c/c187/users")
    assert response.status_code == 200, response.text[:300]
    row = user_row(office, "bithu.ql2@sct.example.vn")
    assert ("Thư mời gửi lỗi: Máy chủ thư không nhận địa chỉ người nhận (địa chỉ có thể bị gõ sai hoặc không còn dùng) — "
            "hãy kiểm tra lại địa chỉ email. Sau đó hãy mời lại.") in row
    assert "Chi tiết kỹ thuật: SMTPRecipientsRefused 550 5.1.1" in row and "mailbox unavailable" in row  # secondary, after the sentence
    assert "{" not in row and "'code'" not in row


def test_an_invitation_that_could_not_reach_the_mail_server_is_said_so(client_as, store):
    office = client_as("office@sct.example.vn")
    invite_token(office, store)
    fail_invitations(store, SendOutcome(SendStatus.TEMPORARY, None, "Connection refused", "ConnectionRefusedError"))
    row = user_row(office, "bithu.ql2@sct.example.vn")
    assert "Thư mời gửi lỗi: Không kết nối được máy chủ thư (SMTP)" in row and "báo bộ phận CNTT kiểm tra cấu hình gửi thư" in row
    assert "Chi tiết kỹ thuật: ConnectionRefusedError Connection refused" in row


# ----------------------------------------------------------------------------- 2, 3, 6. uploading the same item twice


MINUTES = "chi_bo_kiem_diem|bien_ban_hoi_nghi|u"  # VP1 sent bien_ban_VP1.pdf on 27/11/2023 10:00 (the campaign's fixture)
SELF_REVIEW = "chi_bo_kiem_diem|ban_kiem_diem_ca_nhan|m"


def option_text(page: str, value: str) -> str:
    return re.search(rf'<option value="{re.escape(value)}"[^>]*>([^<]*)</option>', page).group(1)


def test_the_form_marks_what_was_sent_and_lists_the_missing_items_first(client_as):
    client = client_as("vp1@sct.example.vn")
    page = client.get("/c/c187/u/VP1/upload").text
    assert option_text(page, MINUTES) == "✓ Biên bản hội nghị kiểm điểm, đánh giá, xếp loại — đã nộp: bien_ban_VP1.pdf, 27/11/2023 10:00"
    assert 'data-done="bien_ban_VP1.pdf, 27/11/2023 10:00"' in page
    assert option_text(page, DRAFT).startswith("Dự thảo báo cáo kiểm điểm") and "đã nộp" not in option_text(page, DRAFT)
    phase = page[page.index('<optgroup label="Chi bộ trực thuộc kiểm điểm'):]
    phase = phase[:phase.index("</optgroup>")]
    values = re.findall(r'<option value="([^"]+)"', phase)
    assert values[0] == "chi_bo_kiem_diem|bao_cao_kiem_diem_tap_the|u"  # owed, not sent: first
    assert values[-1] == MINUTES  # sent: last in its phase, after the optional ones
    assert values.index("chi_bo_kiem_diem|tong_hop_xep_loai_dang_vien|u") < values.index("chi_bo_kiem_diem|van_ban_khac|u")
    assert option_text(page, SELF_REVIEW).endswith("— đã nộp 0/2 đảng viên")  # DV003 is exempt


def test_a_second_upload_to_the_same_item_says_which_file_it_replaces(client_as):
    client = client_as("vp1@sct.example.vn")
    result = upload(client, "VP1", MINUTES, [("trang_2.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 40, "image/jpeg")]).json()
    assert result["ok"] and result["level"] == "notice"
    assert ("Tệp mới thay thế tệp đã nộp trước cho mục này: bien_ban_VP1.pdf, 27/11/2023 10:00; tệp cũ vẫn được lưu trong lịch sử."
            in result["message"])
    assert "#" not in result["message"]
    assert result["done"] == {"item": MINUTES, "member": "", "label": "trang_2.jpg, 28/11/2023 09:00"}
    first = upload(client, "VP1", DRAFT, [("du_thao.pdf", PDF + b"new", "application/pdf")]).json()
    assert first["ok"] and first["level"] == "ok" and "thay thế" not in first["message"]


def test_after_a_success_the_page_without_script_forgets_the_item_and_member(client_as):
    client = client_as("vp1@sct.example.vn")
    response = upload(client, "VP1", SELF_REVIEW, [("kiem_diem.pdf", PDF + b"DV001", "application/pdf")], member="DV001", json=False)
    assert response.status_code == 200
    page = response.text
    assert 'class="msg ok" id="result-message"' in page
    assert not re.search(r'<option value="[^"]*"[^>]*selected', page)  # nothing left chosen
    assert option_text(page, SELF_REVIEW).endswith("— đã nộp 1/2 đảng viên")


def test_the_form_opens_with_the_item_and_member_of_a_link_and_warns_before_replacing(client_as):
    client = client_as("vp1@sct.example.vn")
    upload(client, "VP1", SELF_REVIEW, [("kiem_diem_chin.pdf", PDF + b"DV001", "application/pdf")], member="DV001")
    page = client.get("/c/c187/u/VP1/upload", params={"item": SELF_REVIEW, "member": "DV001"}).text
    assert re.search(rf'<option value="{re.escape(SELF_REVIEW)}"[^>]*selected', page)
    assert re.search(r'<option value="DV001"[^>]*selected>✓ Nguyễn Sỹ Chín \(DV001\) — đã nộp: kiem_diem_chin.pdf, 28/11/2023 09:00', page)
    warning = re.search(r'<p id="replace-warning"[^>]*>([^<]*)</p>', page).group(1)
    assert warning == ("Mục này đã có tệp kiem_diem_chin.pdf, 28/11/2023 09:00; nộp tiếp sẽ thay thế tệp đó (tệp cũ vẫn được lưu "
                       "trong lịch sử). Nếu tài liệu có nhiều trang, hãy chọn tất cả các trang cùng một lần.")
    other = client.get("/c/c187/u/VP1/upload", params={"item": SELF_REVIEW, "member": "DV002"}).text
    assert re.search(r'<p id="replace-warning"[^>]*hidden', other)
    unknown = client.get("/c/c187/u/VP1/upload", params={"item": "nope|x|u", "member": "DV009"}).text
    assert not re.search(r'<option value="[^"]*"[^>]*selected', unknown)


def test_the_unit_page_links_each_missing_item_to_the_form(client_as):
    page = client_as("vp1@sct.example.vn").get("/c/c187/u/VP1").text
    assert ('<a class="do" href="/c/c187/u/VP1/upload?item=chi_bo_kiem_diem%7Cban_kiem_diem_ca_nhan%7Cm&amp;member=DV001">Nộp</a>'
            in page)
    assert '<a class="do" href="/c/c187/u/VP1/upload?item=chuan_bi_chi_bo%7Cdu_thao_bao_cao_kiem_diem%7Cu">Nộp</a>' in page
    assert "bien_ban_hoi_nghi%7Cu" not in page  # sent: no link


def test_the_same_file_under_another_member_is_a_warning_naming_the_member(client_as):
    client = client_as("vp1@sct.example.vn")
    upload(client, "VP1", SELF_REVIEW, [("kiem_diem.pdf", PDF + b"DV001", "application/pdf")], member="DV001")
    second = upload(client, "VP1", SELF_REVIEW, [("kiem_diem.pdf", PDF + b"DV001", "application/pdf")], member="DV002").json()
    assert second["ok"] and "giống hệt" not in second["message"]
    [warning] = second["warnings"]
    assert warning.startswith("tệp này giống hệt tệp đã nộp cho Bản kiểm điểm cá nhân của đảng viên Nguyễn Sỹ Chín (DV001)")
    assert "DV001," not in warning
    upload(client, "VP1", SELF_REVIEW, [("kiem_diem_hoa.pdf", PDF + b"DV002", "application/pdf")], member="DV002")
    page = upload(client, "VP1", SELF_REVIEW, [("kiem_diem.pdf", PDF + b"DV001", "application/pdf")], member="DV002", json=False).text
    result = page.split('id="result"')[1]
    assert '<div class="msg warn result-warning" role="alert"><strong>⚠ Cần kiểm tra:</strong> tệp này giống hệt' in result
    assert "Nguyễn Sỹ Chín (DV001)" in result


# ----------------------------------------------------------------------------- 8. a classification list with errors


def test_a_list_with_errors_shows_one_line_per_error(client_as):
    client = client_as("vp1@sct.example.vn")
    bad = "Mã đảng viên,Chi bộ đề xuất\nDV001,Giỏi\nDV004,HTTNV\n".encode()
    response = upload(client, "VP1", "chi_bo_kiem_diem|tong_hop_xep_loai_dang_vien|u", [("tong_hop.csv", bad, "text/csv")], json=False)
    assert response.status_code == 422
    page = response.text
    assert "Danh sách có 2 lỗi cần sửa, chưa được nhận:" in page and "không đọc được" not in page.split('id="result"')[1]
    items = re.findall(r"<li>([^<]*)</li>", page.split('<li class="refused"><strong>tong_hop.csv</strong>')[1].split("</ul>")[0])
    assert len(items) == 2
    assert items[0].startswith("dòng 2, cột &#39;Chi bộ đề xuất&#39;: mức xếp loại không hợp lệ &#39;Giỏi&#39;")
    assert items[1].startswith("dòng 3, cột &#39;Mã đảng viên&#39;")


# ----------------------------------------------------------------------------- 4. signing in again


def ask_for_link(client, email: str):
    page = client.get("/login/link")
    assert page.status_code == 200
    return client.post("/login/link", data={"email": email, "csrf_token": csrf_of(page.text)})


def invites_to(store, email: str) -> list[Outbox]:
    with store.uow() as uow:
        rows = list(uow.session.scalars(select(Outbox).where(Outbox.kind == "invite", Outbox.recipient == email).order_by(Outbox.id)))
        uow.session.expunge_all()
        return rows


def test_the_login_page_offers_a_new_link_and_queues_one_for_a_known_address_only(client_as, store, clock):
    guest = client_as()
    login_page = guest.get("/login").text
    assert '<a href="/login/link" id="forgot">Chưa đặt mật khẩu hoặc quên mật khẩu?</a>' in login_page
    before = table_counts(store)["outbox"]
    answers = []
    for email in ("vp2@sct.example.vn", "khong.co@sct.example.vn"):
        response = ask_for_link(guest, email)
        assert response.status_code == 303 and response.headers["location"] == "/login/link?sent=1"
        answers.append(guest.get(response.headers["location"]).text)
    assert answers[0] == answers[1]  # the same answer for an address the portal does not know
    assert "Nếu địa chỉ này có trong hệ thống, đường dẫn đăng nhập mới sẽ được gửi tới trong ít phút" in answers[0]
    [mail] = invites_to(store, "vp2@sct.example.vn")
    assert table_counts(store)["outbox"] == before + 1 and mail.status == "queued"  # sent at the next tick, as invitations are
    token = re.search(r"/signin/([A-Za-z0-9_\-]+)", mail.body_text).group(1)
    with store.uow() as uow:
        row = uow.session.scalar(select(SignInToken).where(SignInToken.token_hash == hashlib.sha256(token.encode()).hexdigest()))
        assert row.expires_at == clock.now + dt.timedelta(hours=72) and row.used_at is None
    page = guest.get(f"/signin/{token}")
    assert page.status_code == 200 and "vp2@sct.example.vn" in page.text


def test_a_new_link_at_most_once_in_ten_minutes(client_as, store, clock):
    guest = client_as()
    ask_for_link(guest, "vp2@sct.example.vn")
    clock.now += dt.timedelta(minutes=9)
    assert ask_for_link(guest, "VP2@sct.example.vn ").status_code == 303
    assert len(invites_to(store, "vp2@sct.example.vn")) == 1
    clock.now += dt.timedelta(minutes=2)
    ask_for_link(guest, "vp2@sct.example.vn")
    assert len(invites_to(store, "vp2@sct.example.vn")) == 2
    with store.uow() as uow:
        reasons = [e.detail["reason"] for e in uow.session.scalars(select(EventLog).where(EventLog.action == "web.link_requested").order_by(EventLog.id))]
    assert reasons == ["sent", "too_soon", "sent"]


def test_a_locked_account_gets_no_link(client_as, store):
    with store.uow() as uow:
        uow.session.execute(update(User).where(User.email == "vp2@sct.example.vn").values(active=False))
        uow.commit()
    ask_for_link(client_as(), "vp2@sct.example.vn")
    assert invites_to(store, "vp2@sct.example.vn") == []


def test_asking_for_a_link_needs_the_form_token(client_as, store):
    before = table_counts(store)
    response = client_as().post("/login/link", data={"email": "vp2@sct.example.vn", "csrf_token": "0" * 64})
    assert response.status_code == 403 and table_counts(store) == before


def test_a_used_link_opened_again_while_signed_in_goes_home(client_as, store):
    office = client_as("office@sct.example.vn")
    token = invite_token(office, store)
    guest = client_as()
    page = guest.get(f"/signin/{token}")
    done = guest.post(f"/signin/{token}", data={"csrf_token": csrf_of(page.text), "password": ""})
    assert done.status_code == 303 and done.headers["location"] == "/c/c187/u/QL2"  # a branch's secretary: its page
    again = guest.get(f"/signin/{token}")
    assert again.status_code == 303 and again.headers["location"] == "/c/c187/u/QL2?notice=link-used"
    stranger = client_as().get(f"/signin/{token}")
    assert stranger.status_code == 404 and "Chưa đặt mật khẩu hoặc quên mật khẩu?" in stranger.text


def test_a_stale_form_is_refused_in_plain_words(client_as):
    client = client_as("vp1@sct.example.vn")
    page = client.post("/logout", data={"csrf_token": "0" * 64})
    assert page.status_code == 403
    assert "Trang này đã cũ (có thể do bạn đã đăng nhập lại). Hãy tải lại trang rồi làm lại." in page.text
    assert "CSRF" not in page.text
    script = client.post("/c/c187/u/VP1/upload", headers={"Accept": "application/json", "X-CSRF-Token": "0" * 64},
                         data={"item": DRAFT}, files=[("files", ("a.pdf", PDF, "application/pdf"))])
    assert script.status_code == 403 and "CSRF" not in script.json()["message"]


STALE_LOGIN = "Trang này đã cũ (phiên làm việc đã hết hạn hoặc đã đăng nhập, đăng xuất ở cửa sổ khác). Hãy đăng nhập lại."


def test_a_stale_login_form_shows_the_login_form_again_asking_to_sign_in_again(client_as, store):
    """The log-in form left open until its session was gone: not the error page, but the form again with the
    stale-form words (as the other forms say it), the email kept, a fresh token that works, nothing tried."""
    client = client_as()
    old = csrf_of(client.get("/login?next=/c/c187/u/VP1/upload").text)
    client.cookies.clear()  # the session the form was made for has gone (expired, or the browser dropped it)
    before = table_counts(store)
    page = client.post("/login", data={"email": "VP1@sct.example.vn", "password": PASSWORD, "csrf_token": old,
                                       "next": "/c/c187/u/VP1/upload"})
    assert page.status_code == 403
    assert "Yêu cầu bị từ chối" not in page.text and "CSRF" not in page.text
    assert f'<p class="msg err" role="alert">{STALE_LOGIN}</p>' in page.text
    assert '<form method="post" action="/login">' in page.text and 'id="password"' in page.text
    assert 'value="vp1@sct.example.vn"' in page.text and 'name="next" value="/c/c187/u/VP1/upload"' in page.text
    assert "set-cookie" in page.headers  # a new session for the form shown
    assert table_counts(store) == before  # no password tried, nothing audited
    again = client.post("/login", data={"email": "vp1@sct.example.vn", "password": PASSWORD, "csrf_token": csrf_of(page.text),
                                        "next": "/c/c187/u/VP1/upload"})
    assert again.status_code == 303 and again.headers["location"] == "/c/c187/u/VP1/upload"


def test_a_login_form_from_before_signing_in_elsewhere_is_shown_again(app, client_as, store):
    """Signed in (or out) in another tab since the form was shown: its token is another session's."""
    client = client_as()
    old = csrf_of(client.get("/login").text)
    cookie, csrf = session_for(app, store, "vp1@sct.example.vn")  # what the other tab's sign-in left in the browser
    client.cookies.set(SESSION_COOKIE, cookie)
    page = client.post("/login", data={"email": "vp1@sct.example.vn", "password": PASSWORD, "csrf_token": old})
    assert page.status_code == 403 and STALE_LOGIN in page.text and 'id="password"' in page.text
    assert csrf_of(page.text) == csrf  # the form is the present session's
    assert client.post("/login", data={"email": "vp1@sct.example.vn", "password": PASSWORD,
                                       "csrf_token": csrf_of(page.text)}).status_code == 303


def test_a_stale_request_for_a_sign_in_link_shows_its_form_again(client_as, store):
    client = client_as()
    old = csrf_of(client.get("/login/link").text)
    client.cookies.clear()
    before = table_counts(store)
    page = client.post("/login/link", data={"email": "vp2@sct.example.vn", "csrf_token": old})
    assert page.status_code == 403 and "Yêu cầu bị từ chối" not in page.text
    assert "Trang này đã cũ" in page.text and "Hãy bấm “Gửi đường dẫn đăng nhập” lại." in page.text
    assert '<form method="post" action="/login/link">' in page.text and 'value="vp2@sct.example.vn"' in page.text
    assert table_counts(store) == before
    sent = client.post("/login/link", data={"email": "vp2@sct.example.vn", "csrf_token": csrf_of(page.text)})
    assert sent.status_code == 303 and sent.headers["location"] == "/login/link?sent=1"


def test_an_upload_after_the_session_ended_says_to_sign_in_again_here(client_as):
    client = client_as()
    response = client.post("/c/c187/u/VP1/upload", headers={"Accept": "application/json", "Referer": "http://testserver/c/c187/u/VP1/upload?item=x"},
                           data={"item": DRAFT}, files=[("files", ("a.pdf", PDF, "application/pdf"))])
    assert response.status_code == 401
    body = response.json()
    assert "thẻ khác" not in body["error"] and "Hãy đăng nhập lại" in body["error"]
    assert body["login"] == "/login?next=/c/c187/u/VP1/upload"


# ----------------------------------------------------------------------------- 5. where people land


def login_as(client, email: str):
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_of(page.text)})


def test_a_branch_lands_on_its_unit_page_and_an_office_on_the_overview(client_as):
    assert login_as(client_as(), "vp1@sct.example.vn").headers["location"] == "/c/c187/u/VP1"
    assert login_as(client_as(), "unit.ql@sct.example.vn").headers["location"] == "/c/c187/u/QL"
    assert login_as(client_as(), "office@sct.example.vn").headers["location"] == "/c/c187"
    assert login_as(client_as(), "admin.ql@sct.example.vn").headers["location"] == "/c/c187"
    assert client_as("vp1@sct.example.vn").get("/").headers["location"] == "/c/c187/u/VP1"
    assert client_as("office@sct.example.vn").get("/").headers["location"] == "/c/c187"


def test_the_unit_page_says_what_is_still_owed_on_top(client_as, clock):
    client = client_as("vp1@sct.example.vn")
    page = client.get("/c/c187/u/VP1").text
    owed = page[page.index('<div id="owed"'):]
    owed = owed[:owed.index("</div>")]
    text = re.sub(r"<[^>]+>", "", owed)
    assert re.search(r"Còn thiếu \d+ mục — hạn gần nhất 30/11/2023 23:59 \(giai đoạn Chi bộ gửi dự thảo báo cáo kiểm điểm", text)
    assert '<a class="button" href="/c/c187/u/VP1/upload">Nộp hồ sơ</a>' in owed
    assert page.index('id="owed"') < page.index('id="unit-main"')
    clock.now = dt.datetime(2023, 12, 1, 2, tzinfo=dt.timezone.utc)  # 09:00 ICT, the first deadline passed
    later = re.sub(r"<[^>]+>", "", client.get("/c/c187/u/VP1").text)
    assert re.search(r"hạn gần nhất 05/12/2023 23:59 \(giai đoạn Chi bộ trực thuộc kiểm điểm[^;]*\); 1 mục đã quá hạn \(từ 30/11/2023 23:59", later)
    fragment = client.get("/c/c187/u/VP1/live").text
    assert 'id="owed"' in fragment and 'id="unit-main"' in fragment  # the refresh brings both parts


def test_the_notices_are_folded_with_their_count(client_as):
    page = client_as("vp1@sct.example.vn").get("/c/c187/u/VP1").text
    assert re.search(r'<details class="box" id="notices-box"><summary>Thư nhắc việc và đôn đốc về đơn vị \(\d+\)</summary>', page)


def test_only_a_unit_with_sub_units_offers_its_tree(client_as):
    """A branch with no sub-units had "Cây đơn vị trực thuộc" and "Tổng quan cây này" leading to itself alone."""
    office = client_as("office@sct.example.vn")
    branch, committee = office.get("/c/c187/u/VP1").text, office.get("/c/c187/u/SCT").text
    for label in ("Cây đơn vị trực thuộc", "Tổng quan cây này"):
        assert label not in branch and label in committee
    assert ">Tải Excel (XLSX)</a>" in branch and ">XLSX</a>" not in branch
