"""HTTP tests (starlette TestClient) on SQLite and PostgreSQL: who may see what, CSRF, sessions,
sign-in links, pages, exports, the calendar feed, and the tree's fixed number of queries."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re

import pytest
import typer
from openpyxl import load_workbook
from sqlalchemy import event, func, select, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from kiemdiem.cli.web_cmd import register
from kiemdiem.store.models import EventLog, Member, Notice, Outbox, RevokedSession, SignInToken, Snapshot, Unit, User
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.results import ingest_results
from kiemdiem.web.app import create_app
from kiemdiem.web import auth
from kiemdiem.web.auth import SESSION_COOKIE, hash_password, verify_password
from kiemdiem.web.queries import LABEL_ASCENT, LABEL_DESCENT, StatusCache, build_view, label_width, timeline
from tests.support import ict, table_counts, write_small_org
from tests.web.conftest import (
    CAMPAIGN, PASSWORD, PDF, ROLE_AT_QL, WEB_MEMBERS, WEB_UNITS, Client, plan_187, session_for, submit, timeline_plan,
)

# ----------------------------------------------------------------------------- the access matrix

# One entry per route of the app that names a unit or a file; {code} is the target unit, {file} a stored file of it.
ROUTES = {
    "unit page": ("GET", "/c/c187/u/{code}"),
    "unit fragment": ("GET", "/c/c187/u/{code}/live"),
    "consolidation": ("GET", "/c/c187/u/{code}/consolidation"),
    "upload form": ("GET", "/c/c187/u/{code}/upload"),
    "upload": ("POST", "/c/c187/u/{code}/upload"),
    "file download": ("GET", "/c/c187/files/{file}"),
    "export": ("GET", "/c/c187/u/{code}/export/progress.xlsx"),
    "calendar": ("GET", "/c/c187/u/{code}/calendar.ics"),
    "tree": ("GET", "/c/c187/tree?root={code}"),
    "tree status": ("GET", "/c/c187/tree/status.json?root={code}"),
    "overview": ("GET", "/c/c187?root={code}"),
    "overview fragment": ("GET", "/c/c187/live/overview?root={code}"),
    "invite": ("POST", "/c/c187/users/invite"),
    "cancel a result": ("POST", "/c/c187/u/{code}/results/cancel"),
    "approve a finding": ("POST", "/c/c187/u/{code}/findings/override"),
}
STAFF_ONLY = {"invite", "cancel a result", "approve a finding"}
# Past the access check, the two decisions are refused for want of something to decide on (QL1 has
# no result, and no consolidation): 422 with the reason, where a person without access gets 404.
OK_STATUS = {"invite": 303, "cancel a result": 422, "approve a finding": 422}
MEMBER_OF = {"QL1": "DV008", "VP1": "DV001"}
EXPORTS = ["progress.csv", "progress.xlsx", "consolidation.csv", "consolidation.xlsx"]


def request_route(client, route: str, code: str, file_id: int):
    method, template = ROUTES[route]
    url = template.format(code=code, file=file_id)
    if route == "upload":
        return client.post(url, data={"csrf_token": client.csrf, "item": "chi_bo_kiem_diem|bien_ban_hoi_nghi|u"},
                           files=[("files", ("bien_ban.pdf", PDF + b"matrix", "application/pdf"))])
    if route == "cancel a result":
        return client.post(url, data={"csrf_token": client.csrf, "member": MEMBER_OF[code], "by": "Đảng ủy", "reason": "thử quyền"})
    if route == "approve a finding":
        return client.post(url, data={"csrf_token": client.csrf, "key": f"cap_members:{code}:", "by": "Đảng ủy", "reason": "thử quyền"})
    if route == "invite":
        return client.post(url, data={"csrf_token": client.csrf, "unit": code, "email": f"moi.{code.lower()}@sct.example.vn",
                                      "full_name": "Người được mời", "role": "unit"})
    return client.get(url)


@pytest.mark.parametrize("inside", [True, False], ids=["own-subtree", "other-subtree"])
@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("role", ["admin", "office", "unit"])
def test_access_matrix(client_as, campaign, role, route, inside):
    """People bound to QL: QL1 is in their subtree, VP1 is not; outside (or not for their role) is 404."""
    client = client_as(ROLE_AT_QL[role])
    code = "QL1" if inside else "VP1"
    response = request_route(client, route, code, campaign.files[code])
    allowed = inside and (route not in STAFF_ONLY or role in ("admin", "office"))
    expected = OK_STATUS.get(route, 200) if allowed else 404
    assert response.status_code == expected, response.text[:500]
    if not allowed:
        assert "Lê Xuân Tiến" not in response.text and "Chi bộ Văn phòng 1" not in response.text


@pytest.mark.parametrize("inside", [True, False], ids=["own-subtree", "other-subtree"])
def test_every_export_is_scoped(client_as, inside):
    client = client_as("vp1@sct.example.vn")
    code = "VP1" if inside else "VP2"
    for name in EXPORTS:
        assert client.get(f"/c/c187/u/{code}/export/{name}").status_code == (200 if inside else 404), name


@pytest.mark.parametrize("email, allowed", [
    ("admin@sct.example.vn", {"/c/c187/users", "/c/c187/audit"}),
    ("office@sct.example.vn", {"/c/c187/users"}),
    ("vp1@sct.example.vn", set()),
    ("admin.ql@sct.example.vn", {"/c/c187/users"}),  # the audit log is campaign-wide: root administrators only
    ("office.ql@sct.example.vn", {"/c/c187/users"}),
    ("unit.ql@sct.example.vn", set()),
], ids=["admin-root", "office-root", "unit-vp1", "admin-ql", "office-ql", "unit-ql"])
def test_people_and_audit_pages_by_role(client_as, email, allowed):
    client = client_as(email)
    for url in ("/c/c187/users", "/c/c187/audit"):
        assert client.get(url).status_code == (200 if url in allowed else 404), url



def test_audit_log_names_actions_in_vietnamese_and_shows_details_as_text(client_as, store, clock):
    from kiemdiem.errors import Problem
    from kiemdiem.store.results import REFUSED_ACTION, RefusedFile

    problem = Problem("VP2/tong_hop_xep_loai_dang_vien/bo_sung.csv", "không có trong danh sách đảng viên của đơn vị", 2, "member_id")
    refused = RefusedFile(41, "VP2", "tong_hop_xep_loai_dang_vien", (problem,))
    with store.uow() as uow:  # as the results intake logs a refused list
        uow.session.add(EventLog(campaign_id=CAMPAIGN, at=clock.now, actor="tick", action=REFUSED_ACTION, subject="submission:41",
                                 detail={**refused.as_dict(), "item_key": "x", "problems_text": [str(problem)]}))
        uow.commit()
    client = client_as("admin@sct.example.vn")
    page = client.get("/c/c187/audit").text
    options = dict(re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', page[page.index('id="action"'):]))
    assert options["results.refused"].startswith("Từ chối danh sách kết quả xếp loại")
    assert options["web.user_created"].startswith("Tạo người dùng")
    table = page[page.index('id="events"'):]
    row = re.search(r"<tr>(?:(?!</tr>).)*results\.refused(?:(?!</tr>).)*</tr>", table, re.S).group(0)
    assert "Từ chối danh sách kết quả xếp loại" in row and "<code>results.refused</code>" in row  # the code kept for IT staff
    shown = str(problem).replace("'", "&#39;")  # as the page escapes it
    assert f"<li>{shown}</li>" in row and "source" not in row and "problems:" not in row and "problems_text" not in row
    assert "đơn vị: VP2<br>" in row and "lần nộp số: 41" in row and "loại văn bản: Tổng hợp kết quả đánh giá" in row
    created = re.search(r"<tr>(?:(?!</tr>).)*web\.user_created(?:(?!</tr>).)*</tr>", table, re.S).group(0)
    assert "Tạo người dùng" in created and "có mật khẩu: có" in created and "with_password" not in created
    # Newest written first, whatever moment an entry is about; instants in the details on the local clock.
    with store.uow() as uow:
        uow.session.add(EventLog(campaign_id=CAMPAIGN, at=clock.now - dt.timedelta(days=30), actor="cli", action="submission.received",
                                 subject="VP1:x", detail={"effective_at": "2023-12-05T09:00:00+00:00", "source": "cli"}))
        uow.commit()
    newest = client.get("/c/c187/audit").text
    first = re.search(r'id="events">.*?<tr>.*?</tr>\s*<tr>(.*?)</tr>', newest, re.S).group(1)
    assert "VP1:x" in first and "hiệu lực từ: 05/12/2023 16:00" in first and "nguồn: dòng lệnh" in first
    with store.uow() as uow:  # the source named as the unit page names it
        uow.session.add(EventLog(campaign_id=CAMPAIGN, at=clock.now, actor="vp1@sct.example.vn", action="submission.received",
                                 subject="VP1:y", detail={"source": "web"}))
        uow.commit()
    web = re.search(r'id="events">.*?<tr>.*?</tr>\s*<tr>(.*?)</tr>', client.get("/c/c187/audit").text, re.S).group(1)
    assert "VP1:y" in web and "nguồn: cổng web" in web
    filtered = client.get("/c/c187/audit?action=results.refused").text
    assert filtered.count("<code>results.refused</code>") == 1 and "<code>web.user_created</code>" not in filtered


def test_users_page_lists_only_the_subtree(client_as):
    text = client_as("office.ql@sct.example.vn").get("/c/c187/users").text
    assert "unit.ql@sct.example.vn" in text and "vp1@sct.example.vn" not in text and "admin@sct.example.vn" not in text


def test_tree_of_a_unit_user_shows_only_their_subtree(client_as):
    text = client_as("unit.ql@sct.example.vn").get("/c/c187/tree").text
    assert "Chi bộ Đội Quản lý thị trường số 1" in text and "Chi bộ Đội Quản lý thị trường số 2" in text
    assert "Chi bộ Văn phòng" not in text and 'data-c="SCT"' not in text


def test_other_campaign_is_404(client_as, store, tmp_path):
    units, members = write_small_org(tmp_path / "other")
    with store.uow() as uow:
        create_campaign(uow, plan_187(), "c2", ict(2023, 11, 20))
        import_organization(uow, "c2", units, members, ict(2023, 11, 20))
        uow.commit()
    client = client_as("admin@sct.example.vn")
    for url in ("/c/c2", "/c/c2/tree", "/c/c2/u/VP1", "/c/c2/u/VP1/export/progress.csv"):
        assert client.get(url).status_code == 404, url
    assert 'href="/c/c2"' not in client.get("/campaigns").text


def test_anonymous_is_sent_to_login(client_as):
    client = client_as()
    response = client.get("/c/c187/u/VP1")
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/c/c187/u/VP1")
    assert client.get("/c/c187/tree/status.json").status_code == 401
    assert client.get("/c/c187/files/1").status_code == 303


def test_unknown_pages_and_bad_ids_are_404(client_as):
    client = client_as("office@sct.example.vn")
    for url in ("/nope", "/c/c187/files/abc", "/c/c187/files/999999", "/c/c187/u/NOPE", "/c/c187/u/VP1/export/secret.csv",
                "/c/c187/tree?root=NOPE", "/ics/forged.ics"):
        assert client.get(url).status_code == 404, url



@pytest.mark.parametrize("file_id", [2**31, 2**63, 99999999999999999999])
def test_out_of_range_file_ids_are_the_vietnamese_404_page(client_as, file_id):
    """Ids past the database's integer range (SQLite refuses to bind them) are just ids that do not exist."""
    response = client_as("vp1@sct.example.vn").get(f"/c/c187/files/{file_id}")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "Không tìm thấy" in response.text and '<html lang="vi">' in response.text


def test_an_unexpected_error_is_a_vietnamese_500_page_with_the_usual_headers_and_logged(app, store, caplog):
    def broken():
        raise RuntimeError("hỏng giữa chừng")

    app.add_api_route("/c/c187/broken", broken)
    app.add_api_route("/c/c187/broken/live", broken)
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level("ERROR", logger="kiemdiem.web.app"):
        response = client.get("/c/c187/broken")
        script = client.get("/c/c187/broken/live")
    assert response.status_code == 500 and response.headers["content-type"].startswith("text/html")
    assert '<html lang="vi">' in response.text and "Đã có lỗi xảy ra" in response.text
    assert "Internal Server Error" not in response.text and "hỏng giữa chừng" not in response.text  # no internals shown
    assert response.headers["x-frame-options"] == "DENY" and "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff" and response.headers["cache-control"] == "no-store"
    records = [r for r in caplog.records if r.name == "kiemdiem.web.app"]
    assert [r.getMessage() for r in records] == ["unhandled error in GET /c/c187/broken", "unhandled error in GET /c/c187/broken/live"]
    assert all(r.exc_info and str(r.exc_info[1]) == "hỏng giữa chừng" for r in records)  # with the traceback
    assert script.status_code == 500 and "lỗi" in script.json()["error"]


# ----------------------------------------------------------------------------- log-in, sessions, CSRF


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, email: str, password: str):
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text)})


def events(store, action: str) -> list[EventLog]:
    with store.uow() as uow:
        rows = list(uow.session.scalars(select(EventLog).where(EventLog.action == action).order_by(EventLog.id)))
        uow.session.expunge_all()
        return rows


def test_login_logout_and_audit(client_as, store):
    client = client_as()
    response = login(client, "VP1@sct.example.vn ", PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == "/c/c187/u/VP1"  # a branch lands on its page
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Secure" not in cookie
    assert client.get("/c/c187/u/VP1").status_code == 200
    [logged_in] = events(store, "web.login")
    assert logged_in.actor == "vp1@sct.example.vn" and logged_in.campaign_id == CAMPAIGN
    page = client.get("/c/c187/u/VP1")
    response = client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303
    assert client.get("/c/c187/u/VP1").status_code == 303  # the new cookie is anonymous
    assert len(events(store, "web.logout")) == 1


def test_a_cookie_given_up_at_logout_is_refused_everywhere(app, client_as, store, campaign, clock, web_settings_for_tests):
    office = client_as("office@sct.example.vn")
    stolen = office.cookies.get(SESSION_COOKIE)
    other_worker = Client(create_app(store, web_settings_for_tests, clock=clock), follow_redirects=False)
    other_worker.cookies.set(SESSION_COOKIE, stolen)
    assert office.get("/c/c187").status_code == 200 and other_worker.get("/c/c187").status_code == 200  # both cached it
    assert office.post("/logout", data={"csrf_token": office.csrf}).status_code == 303
    copy = client_as()
    copy.cookies.set(SESSION_COOKIE, stolen)  # the same cookie, kept in another tab
    assert copy.get("/c/c187").status_code == 303
    other_worker.app.state.web.viewers.clear()  # its few seconds of cache have run out
    assert other_worker.get("/c/c187").status_code == 303
    other_worker.close()
    fresh, _ = session_for(app, store, "office@sct.example.vn")  # logging in again works
    copy.cookies.set(SESSION_COOKIE, fresh)
    assert copy.get("/c/c187").status_code == 200


def test_revocations_are_kept_only_while_their_cookies_could_live(client_as, store, clock):
    for _ in range(2):
        client = client_as("office@sct.example.vn")
        assert client.post("/logout", data={"csrf_token": client.csrf}).status_code == 303
    with store.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(RevokedSession)) == 2
    clock.now = clock.now + dt.timedelta(seconds=auth.SESSION_MAX_AGE + 1)
    client = client_as("office@sct.example.vn")
    assert client.post("/logout", data={"csrf_token": client.csrf}).status_code == 303
    with store.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(RevokedSession)) == 1  # only the newest


def test_failed_logins_are_audited_with_one_message(client_as, store):
    client = client_as()
    wrong = login(client, "vp1@sct.example.vn", "sai-mat-khau-roi")
    unknown = login(client, "ai.do@example.vn", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "Email hoặc mật khẩu không đúng" in wrong.text and "Email hoặc mật khẩu không đúng" in unknown.text
    failed = events(store, "web.login_failed")
    assert [(e.subject, e.detail["reason"]) for e in failed] == [("vp1@sct.example.vn", "wrong_password"), ("ai.do@example.vn", "unknown_email")]
    assert failed[0].campaign_id == CAMPAIGN and failed[1].campaign_id is None


def test_repeated_failures_are_throttled(client_as):
    client = client_as()
    for _ in range(8):
        assert login(client, "vp2@sct.example.vn", "doan-mo-mat-khau").status_code == 401
    assert login(client, "vp2@sct.example.vn", PASSWORD).status_code == 429
    # The admin sees the lockout in the campaign's log, not only the wrong passwords before it.
    log = client_as("admin@sct.example.vn").get("/c/c187/audit?action=web.login_failed").text
    assert "lý do: sai quá nhiều lần, tạm khóa" in log and "lý do: sai mật khẩu" in log


def test_secure_cookie_when_configured(store, campaign, clock, web_settings_for_tests, client_as):
    app = create_app(store, web_settings_for_tests.model_copy(update={"secure_cookies": True}), clock=clock)
    with TestClient(app, base_url="https://testserver") as client:
        assert "Secure" in client.get("/login").headers["set-cookie"]


def test_passwords_are_salted_scrypt_hashes(store, campaign):
    with store.uow() as uow:
        hashes = list(uow.session.scalars(select(User.password_hash).where(User.role == "unit")))
    assert len(set(hashes)) == len(hashes) and all(h.startswith("scrypt$") for h in hashes)
    assert all(PASSWORD not in h for h in hashes)
    assert verify_password(PASSWORD, hashes[0]) and not verify_password(PASSWORD + "x", hashes[0])
    assert hash_password("mot-mat-khau-dai") != hash_password("mot-mat-khau-dai")


def test_tampered_or_foreign_session_cookie_is_anonymous(client_as, app):
    client = client_as("office@sct.example.vn")
    value = client.cookies.get(SESSION_COOKIE)
    client.cookies.set(SESSION_COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/c/c187").status_code == 303


def flatten(routes):
    """Routes with their paths (recent FastAPI wraps included routers; ours have no prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flatten(inner.routes)
        else:
            yield route


def post_routes(app) -> list[str]:
    return sorted({route.path for route in flatten(app.routes) if "POST" in (getattr(route, "methods", None) or set())})


def test_every_post_route_is_known_to_the_csrf_test(app):
    assert post_routes(app) == [
        "/c/{campaign_id}/u/{code}/findings/override", "/c/{campaign_id}/u/{code}/results/cancel", "/c/{campaign_id}/u/{code}/upload",
        "/c/{campaign_id}/users/invite", "/login", "/login/link", "/logout", "/signin/{token}",
    ]


CSRF_POSTS = {
    "/login": dict(data={"email": "vp1@sct.example.vn", "password": PASSWORD}),
    "/login/link": dict(data={"email": "vp1@sct.example.vn"}),
    "/logout": dict(data={}),
    "/signin/{token}": dict(data={"password": ""}),
    "/c/{campaign_id}/users/invite": dict(data={"unit": "QL1", "email": "x@sct.example.vn", "full_name": "X", "role": "unit"}),
    "/c/{campaign_id}/u/{code}/upload": dict(data={"item": "chi_bo_kiem_diem|bien_ban_hoi_nghi|u"},
                                             files=[("files", ("bb.pdf", PDF + b"csrf", "application/pdf"))]),
    "/c/{campaign_id}/u/{code}/results/cancel": dict(data={"member": "DV001", "by": "Đảng ủy Sở", "reason": "thử"}),
    "/c/{campaign_id}/u/{code}/findings/override": dict(data={"key": "cap_members:VP1:", "by": "Đảng ủy Sở", "reason": "thử"}),
}


@pytest.mark.parametrize("path", sorted(CSRF_POSTS))
def test_post_without_the_session_csrf_token_is_refused(client_as, store, path):
    client = client_as("office@sct.example.vn")
    other = client_as("vp1@sct.example.vn")
    url = path.replace("{campaign_id}", CAMPAIGN).replace("{code}", "VP1").replace("{token}", invite_token(client, store))
    before = table_counts(store)
    for token in (None, other.csrf, "0" * 64):  # missing, another session's, made up
        kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in CSRF_POSTS[path].items()}
        if token is not None:
            kwargs["data"]["csrf_token"] = token
        response = client.post(url, **kwargs)
        assert response.status_code == 403, token
        assert "Trang này đã cũ" in response.text and "CSRF" not in response.text
    assert table_counts(store) == before


def invite_token(client, store) -> str:
    """Invite someone through the page and read the token from the queued e-mail."""
    response = client.post("/c/c187/users/invite", data={"csrf_token": client.csrf, "unit": "QL2", "email": "bithu.ql2@sct.example.vn",
                                                       "full_name": "Vũ Thị Mai", "role": "unit"})
    assert response.status_code == 303, response.text[:300]
    with store.uow() as uow:
        body = uow.session.scalars(select(Outbox.body_text).where(Outbox.kind == "invite").order_by(Outbox.id.desc())).first()
    return re.search(r"/signin/([A-Za-z0-9_\-]+)", body).group(1)


def test_csrf_token_in_header_is_accepted_for_scripts(client_as, store):
    client = client_as("vp1@sct.example.vn")
    response = client.post("/c/c187/u/VP1/upload", headers={"X-CSRF-Token": client.csrf, "Accept": "application/json"},
                           data={"item": "chuan_bi_chi_bo|du_thao_bao_cao_kiem_diem|u"},
                           files=[("files", ("du_thao.pdf", PDF + b"header", "application/pdf"))])
    assert response.status_code == 200 and response.json()["ok"]


# ----------------------------------------------------------------------------- invitations


def test_invite_stores_only_the_hash_queues_an_email_and_works_once(client_as, store, clock):
    office = client_as("office@sct.example.vn")
    token = invite_token(office, store)
    with store.uow() as uow:
        user = uow.session.scalar(select(User).where(User.email == "bithu.ql2@sct.example.vn"))
        row = uow.session.scalar(select(SignInToken).where(SignInToken.user_id == user.id))
        outbox = uow.session.scalar(select(Outbox).where(Outbox.kind == "invite"))
        uow.session.expunge_all()
    assert user.role == "unit" and user.password_hash is None
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and row.used_at is None
    assert row.expires_at == clock.now + dt.timedelta(hours=72)
    assert outbox.recipient == "bithu.ql2@sct.example.vn" and outbox.status == "queued" and "Chi bộ Đội Quản lý thị trường số 2" in outbox.body_text
    assert outbox.body_text.count(f"http://127.0.0.1:8080/signin/{token}") == 1
    with store.engine.connect() as conn:  # the raw token is in the e-mail only, never in a table
        for table in ("sign_in_tokens", "users", "event_log"):
            assert token not in str(conn.exec_driver_sql(f"SELECT * FROM {table}").all())
    [invited] = events(store, "web.invite")
    assert invited.actor == "office@sct.example.vn" and invited.subject == "bithu.ql2@sct.example.vn"
    assert "chưa đăng nhập<br><span class=\"muted\">thư mời đang chờ gửi</span>" in user_row(office, "bithu.ql2@sct.example.vn")

    guest = client_as()
    page = guest.get(f"/signin/{token}")
    assert page.status_code == 200 and "Vũ Thị Mai" in page.text
    short = guest.post(f"/signin/{token}", data={"csrf_token": csrf_of(page.text), "password": "ngan", "password2": "ngan"})
    assert short.status_code == 422 and "10 ký tự" in short.text
    done = guest.post(f"/signin/{token}", data={"csrf_token": csrf_of(page.text), "password": "mat-khau-moi-dai", "password2": "mat-khau-moi-dai"})
    assert done.status_code == 303
    assert guest.get("/c/c187/u/QL2").status_code == 200
    assert guest.get("/c/c187/u/QL1").status_code == 404
    assert client_as().get(f"/signin/{token}").status_code == 404  # used once
    assert login(client_as(), "bithu.ql2@sct.example.vn", "mat-khau-moi-dai").status_code == 303
    assert "đăng nhập lần cuối 28/11/2023 09:00" in user_row(office, "bithu.ql2@sct.example.vn")


def user_row(client, email: str) -> str:
    """The people page's row of ``email``."""
    page = client.get("/c/c187/users").text
    return next(row for row in page[page.index('id="users"'):].split("<tr>") if f"<td>{email}</td>" in row)


def test_invite_link_expires(client_as, store, clock):
    token = invite_token(client_as("office@sct.example.vn"), store)
    clock.now = clock.now + dt.timedelta(hours=72, seconds=1)
    expired = client_as().get(f"/signin/{token}")
    assert expired.status_code == 404 and "đề nghị văn phòng gửi lại thư mời" in expired.text  # where to go from here
    with store.uow() as uow:  # the invitation went out; its link lapsed unused: the office is told to invite again
        uow.session.execute(update(Outbox).where(Outbox.kind == "invite").values(status="sent", sent_at=clock.now))
        uow.commit()
    row = user_row(client_as("office@sct.example.vn"), "bithu.ql2@sct.example.vn")
    assert "chưa đăng nhập" in row and "đường dẫn mời đã hết hạn 01/12/2023 09:00: hãy mời lại" in row
    with store.uow() as uow:  # or its e-mail could not be delivered
        uow.session.execute(update(Outbox).where(Outbox.kind == "invite").values(status="failed", last_error="550 5.1.1 mailbox unavailable"))
        uow.commit()
    row = user_row(client_as("office@sct.example.vn"), "bithu.ql2@sct.example.vn")
    assert "Thư mời gửi lỗi: Máy chủ thư không nhận địa chỉ người nhận" in row and "hãy kiểm tra lại địa chỉ email. Sau đó hãy mời lại." in row
    assert "Chi tiết kỹ thuật: 550 5.1.1 mailbox unavailable" in row


def test_invite_takes_a_unit_code_typed_in_lower_case(client_as, store):
    office = client_as("office@sct.example.vn")
    response = office.post("/c/c187/users/invite", data={"csrf_token": office.csrf, "unit": "vp2", "email": "bithu.moi@sct.example.vn",
                                                        "full_name": "Nguyễn Thị Bé", "role": "unit"})
    assert response.status_code == 303
    with store.uow() as uow:
        unit_id = uow.session.scalar(select(User.unit_id).where(User.email == "bithu.moi@sct.example.vn"))
        assert uow.session.scalar(select(Unit.code).where(Unit.id == unit_id)) == "VP2"


def test_office_cannot_invite_an_administrator_but_admin_can(client_as, store):
    office = client_as("office@sct.example.vn")
    data = {"unit": "VP2", "email": "new.admin@sct.example.vn", "full_name": "Quản trị mới", "role": "admin"}
    assert office.post("/c/c187/users/invite", data={**data, "csrf_token": office.csrf}).status_code == 404
    admin = client_as("admin@sct.example.vn")
    assert admin.post("/c/c187/users/invite", data={**data, "csrf_token": admin.csrf}).status_code == 303


def test_invite_with_bad_input_explains_and_stores_nothing(client_as, store):
    office = client_as("office@sct.example.vn")
    before = table_counts(store)
    response = office.post("/c/c187/users/invite", data={"csrf_token": office.csrf, "unit": "VP2", "email": "khong-phai-email",
                                                        "full_name": "A", "role": "unit"})
    assert response.status_code == 422 and "email không hợp lệ" in response.text
    taken = office.post("/c/c187/users/invite", data={"csrf_token": office.csrf, "unit": "VP2", "email": "vp1@sct.example.vn",
                                                     "full_name": "A", "role": "unit"})
    assert taken.status_code == 422 and "đơn vị khác" in taken.text
    assert table_counts(store) == before



def test_invite_with_a_mistyped_unit_shows_the_form_again_with_what_was_typed(client_as, store):
    office = client_as("office.ql@sct.example.vn")
    before = table_counts(store)
    typed = {"unit": "KHONGCO", "email": "bithu.moi@sct.example.vn", "full_name": "Nguyễn Thị Bé", "role": "unit"}
    response = office.post("/c/c187/users/invite", data={**typed, "csrf_token": office.csrf})
    # 404 as for any unit outside the viewer's subtree, but with the form and the typed values kept.
    assert response.status_code == 404 and 'id="invite-form"' in response.text
    form = response.text[response.text.index('id="invite-form"'):]
    assert 'value="KHONGCO"' in form and 'value="bithu.moi@sct.example.vn"' in form and 'value="Nguyễn Thị Bé"' in form
    error = re.search(r'<[^>]+id="inv-unit-error"[^>]*>([^<]*)<', form).group(1)
    assert "Không có đơn vị mã KHONGCO" in error
    assert re.search(r'<input id="inv-unit"[^>]*aria-invalid="true"', form)
    # A unit outside the subtree answers the same way: nothing confirms it exists.
    outside = office.post("/c/c187/users/invite", data={**typed, "unit": "VP1", "csrf_token": office.csrf})
    assert outside.status_code == 404 and outside.text.replace("VP1", "KHONGCO") == response.text
    assert table_counts(store) == before


# ----------------------------------------------------------------------------- pages


def test_overview_counts_overdue_late_and_sent_notices(client_as, store, campaign, clock):
    # VP1 sends its draft late (after 30/11), QL1 on time; reminders and an escalation were sent.
    submit(store, campaign.plan, "QL1", "du_thao_bao_cao_kiem_diem", PDF + b"ql1", ict(2023, 11, 29, 9))
    submit(store, campaign.plan, "VP1", "du_thao_bao_cao_kiem_diem", PDF + b"vp1", ict(2023, 12, 1, 9))
    add_notices(store)
    clock.now = ict(2023, 12, 1, 12)
    client = client_as("office@sct.example.vn")
    text = client.get("/c/c187").text
    overdue = re.search(r'id="overdue-count">.*?class="big[^"]*">(\d+)<', text, re.S).group(1)
    late = re.search(r'id="late-count">.*?class="big[^"]*">(\d+)<', text, re.S).group(1)
    reminders = re.search(r'id="reminders-sent">.*?class="big">(\d+)<', text, re.S).group(1)
    escalations = re.search(r'id="escalations-sent">.*?class="big">(\d+)<', text, re.S).group(1)
    assert (overdue, late, reminders, escalations) == ("3", "1", "2", "1")  # VP2, KC, QL2 overdue; VP1 late
    table = text[text.index('id="overdue"'):]
    for name in ("Chi bộ Văn phòng 2", "Chi bộ Khuyến công", "Chi bộ Đội Quản lý thị trường số 2"):
        assert name in table
    # Whom to call: each overdue unit's addresses, and whether it was chased (sent escalations only).
    rows = {re.search(r"<small>([^<]+)</small>", row).group(1): row for row in table.split("</table>")[0].split("<tr>")[2:]}
    assert 'href="mailto:vp2@sct.example.vn"' in rows["VP2"]
    assert "lần 1, 27/11/2023 08:00" in rows["VP2"]
    assert 'href="mailto:kc@sct.example.vn"' in rows["KC"] and "lần 1" not in rows["KC"] and ">chưa<" in rows["KC"]
    assert "Hôm nay 01/12/2023" in text and "30/11/2023 23:59" in text
    # a person bound to QL sees only what concerns QL's subtree
    ql = client_as("office.ql@sct.example.vn").get("/c/c187").text
    assert re.search(r'id="overdue-count">.*?class="big[^"]*">(\d+)<', ql, re.S).group(1) == "1"
    assert re.search(r'id="reminders-sent">.*?class="big">(\d+)<', ql, re.S).group(1) == "1"
    assert "Chi bộ Văn phòng 2" not in ql
    # A branch's secretary: the committee's own phases keep their place in the plan's numbering, without counts.
    phases = client_as("vp1@sct.example.vn").get("/c/c187").text
    phases = phases[phases.index('id="phases"'):phases.index("</table>", phases.index('id="phases"'))]
    rows = {re.search(r'data-phase="([^"]+)"', row).group(1): row for row in phases.split("<tr ")[1:]}
    assert list(rows) == ["chuan_bi_chi_bo", "chi_bo_kiem_diem", "chuan_bi_dang_uy", "dang_uy_bao_cao_khoi",
                          "chi_bo_khac_phuc", "dang_uy_khac_phuc", "dang_vien_khac_phuc"]
    for phase_id, row in rows.items():
        committee_only = phase_id in ("chuan_bi_dang_uy", "dang_uy_bao_cao_khoi", "dang_uy_khac_phuc")
        assert ("Không có đơn vị nào trong phạm vi này phải thực hiện giai đoạn này" in row) == committee_only, phase_id
        assert ("<progress" in row) != committee_only, phase_id


def add_notices(store) -> None:
    """Two reminders (to VP2 and QL2) and one escalation about VP2, all sent, plus one still queued."""
    with store.uow() as uow:
        ids = dict(uow.session.execute(select(Unit.code, Unit.id).where(Unit.campaign_id == CAMPAIGN)).all())
        at = ict(2023, 11, 27, 8)
        for n, (kind, unit, status) in enumerate([("reminder", "VP2", "sent"), ("reminder", "QL2", "sent"),
                                                   ("escalation", "VP2", "sent"), ("reminder", "KC", "queued")]):
            row = Outbox(campaign_id=CAMPAIGN, idempotency_key=f"k{n}", key_material=f"k{n}", kind=kind, recipient=f"{unit.lower()}@sct.example.vn",
                         recipient_name=unit, subject=f"{'Nhắc' if kind == 'reminder' else 'Chuyển cấp'}: hồ sơ của {unit}", body_text="-",
                         body_html="-", attachments=[], message_id=f"<m{n}@x>", reason="", status=status, attempts=1 if status == "sent" else 0,
                         not_before=at, next_attempt_at=at, sent_at=at if status == "sent" else None, created_at=at)
            uow.session.add(row)
            uow.session.flush()
            uow.session.add(Notice(campaign_id=CAMPAIGN, recipient=row.recipient, recipient_name=unit, kind=kind, step=3 if kind == "reminder" else 1,
                                   item_key=f"{unit}:chuan_bi_chi_bo:du_thao_bao_cao_kiem_diem:-", unit_id=ids[unit], phase_id="chuan_bi_chi_bo",
                                   doc_type="du_thao_bao_cao_kiem_diem", planned_at=at, outbox_id=row.id))
        uow.commit()


def test_a_result_replaced_by_a_later_one_is_not_called_cancelled(client_as, campaign):
    """DV002's first result (HTTNV, 06/12) was replaced by the one received on 07/12: no decision
    cancelled it, so the page must not say "đã hủy"."""
    text = client_as("vp1@sct.example.vn").get("/c/c187/u/VP1").text
    rows = [r for r in text[text.index('id="member-results"'):].split("<tr") if "DV002" in r]
    assert len(rows) == 2
    current, replaced = sorted(rows, key=lambda r: "hiện hành" not in r)
    assert "<strong>HTXSNV</strong>" in current and "hiện hành" in current
    assert "<strong>HTTNV</strong>" in replaced and "đã được thay bằng kết quả nhận sau" in replaced and "đã hủy" not in replaced


def test_a_branch_sees_its_committees_decision_on_its_members(client_as, store, campaign):
    """Result rows belong to the list that sent them: the committee's decision on VP2's members is
    the current result on VP2's page, said to come from the committee (it was not shown there)."""
    submit(store, campaign.plan, "SCT", "quyet_dinh_xep_loai", "Mã đảng viên,Quyết định xếp loại\nDV004,HTTNV\n".encode(),
           ict(2023, 12, 9, 9), name="quyet_dinh.csv")
    ingest_results(store, campaign.plan, CAMPAIGN, ict(2023, 12, 9, 10))
    text = client_as("vp2@sct.example.vn").get("/c/c187/u/VP2").text
    rows = [r for r in text[text.index('id="member-results"'):].split("<tr") if "DV004" in r]
    current = [r for r in rows if "hiện hành" in r]
    assert len(current) == 1 and "<strong>HTTNV</strong>" in current[0] and "Đảng bộ Sở Công Thương" in current[0]
    assert any("đã được thay bằng kết quả nhận sau" in r and "chi bộ" in r for r in rows)


def test_unit_page_shows_checklist_files_notices_and_results(client_as, store, campaign, clock):
    add_notices(store)
    submit(store, campaign.plan, "VP2", "bien_ban_hoi_nghi", PDF + b"v2", ict(2023, 11, 27, 15), name="bien_ban_moi.pdf")
    text = client_as("vp2@sct.example.vn").get("/c/c187/u/VP2").text
    assert 'data-phase="chi_bo_kiem_diem"' in text and "Bản kiểm điểm cá nhân" in text and "Phạm Minh Đức" in text
    assert "bien_ban_moi.pdf" in text and "bien_ban_VP2.pdf" in text and "đã thay thế" in text
    notices = text[text.index('id="notices"'):]
    assert "Nhắc: hồ sơ của VP2" in notices and "Chuyển cấp: hồ sơ của VP2" in notices and "đã gửi 27/11/2023 08:00" in notices
    assert "hồ sơ của KC" not in notices
    results = text[text.index('id="member-results"'):]  # the results the consolidation snapshots were made from
    assert "Lê Xuân Tiến" in results and "<strong>HTNV</strong>" in results and "hiện hành" in results
    assert "HTNV: Hoàn thành nhiệm vụ;" in results  # the abbreviations are spelt out under the table
    assert "Đôn đốc" in notices and "đôn đốc lần 2" in notices  # step 1 of the ladder, counted as the emails count it
    assert "Chưa có kết quả xếp loại" not in text
    assert "05/12/2023 23:59" in text and "lang=\"vi\"" in text
    # The unit's own items' state, not the whole subtree's (which "Tiến độ cả cây" gives).
    assert "Hồ sơ của chính đơn vị" in text and "Trạng thái chung" not in text
    # The plan's own words for an item appear under the catalogue's name (plan 187 on mẫu 3đ).
    assert '<small class="muted note">Phiếu phân tích chất lượng và đánh giá xếp loại tổ chức cơ sở đảng (mẫu 3đ)</small>' in text
    upload = client_as("vp2@sct.example.vn").get("/c/c187/u/VP2/upload").text
    assert 'data-note="Tổng hợp kết quả đề nghị đánh giá, xếp loại chất lượng đảng viên"' in upload


def test_unit_page_names_the_member_a_notice_is_about_and_why_one_was_dropped(client_as, store, campaign, clock):
    """A member's notice showed "(đảng viên #5)", the database id; a reminder dropped because its
    deadline passed said "đã hủy (đơn vị đã nộp)"."""
    with store.uow() as uow:
        unit_id = uow.session.scalar(select(Unit.id).where(Unit.campaign_id == CAMPAIGN, Unit.code == "VP2"))
        member = uow.session.scalar(select(Member).where(Member.campaign_id == CAMPAIGN, Member.unit_id == unit_id, Member.full_name == "Phạm Minh Đức"))
        for n, (doc_type, cancelled) in enumerate([("ban_kiem_diem_ca_nhan", ict(2023, 12, 6, 8)), ("nhan_xet_noi_cu_tru", ict(2023, 12, 1, 8))]):
            uow.session.add(Notice(campaign_id=CAMPAIGN, recipient="vp2@sct.example.vn", recipient_name="VP2", kind="reminder", step=1,
                                   item_key=f"VP2:chi_bo_kiem_diem:{doc_type}:{member.member_code}", unit_id=unit_id, phase_id="chi_bo_kiem_diem",
                                   doc_type=doc_type, member_id=member.id, planned_at=ict(2023, 11, 30, 8), cancelled_at=cancelled))
        uow.commit()
    text = client_as("vp2@sct.example.vn").get("/c/c187/u/VP2").text
    notices = text[text.index('id="notices"'):]
    assert f"(Phạm Minh Đức – {member.member_code})" in notices and "#" + str(member.id) + ")" not in notices
    assert notices.count("đã hủy (đã quá hạn, chuyển sang đôn đốc)") == 1  # cancelled 06/12, after the 05/12 deadline
    assert notices.count("đã hủy (đơn vị đã nộp)") == 1


def test_a_list_the_ingest_refused_shows_as_owed_with_its_problems(client_as, store, campaign, clock, tmp_path):
    """Read at submission, VP2's list was refused by the ingest after DV004 moved to VP1 (a
    re-import): its unit page says it must be sent again, with the file, row and column, and the
    cached status stops counting it as delivered."""
    data = "Mã đảng viên,Chi bộ đề xuất\nDV004,HTTNV\nDV005,HTTNV\n".encode()
    submit(store, campaign.plan, "VP2", "tong_hop_xep_loai_dang_vien", data, ict(2023, 12, 1, 9), name="tong_hop.csv")
    clock.now = ict(2023, 12, 1, 9, 10)
    client = client_as("vp2@sct.example.vn")

    def list_row(text: str) -> str:
        checklist = text[text.index('data-phase="chi_bo_kiem_diem"'):]
        return checklist[checklist.index("Tổng hợp kết quả"):].split("</tr>", 1)[0]

    assert "✓ Đã nộp" in list_row(client.get("/c/c187/u/VP2").text)
    present = client.get("/c/c187/tree/status.json?phase=chi_bo_kiem_diem").json()["units"]["VP2"][1]
    units, members = write_small_org(tmp_path / "moved", WEB_UNITS, WEB_MEMBERS.replace("DV004,Lê Xuân Tiến,VP2", "DV004,Lê Xuân Tiến,VP1"))
    with store.uow() as uow:
        import_organization(uow, CAMPAIGN, units, members, ict(2023, 12, 1, 9, 20))
        uow.commit()
    assert len(ingest_results(store, campaign.plan, CAMPAIGN, ict(2023, 12, 1, 9, 30)).refused) == 1

    clock.now = ict(2023, 12, 1, 9, 40)
    text = client.get("/c/c187/u/VP2").text
    assert "không đọc được, cần nộp lại" in list_row(text) and "Đã nộp" not in list_row(text)
    history = text[text.index('id="files"'):]
    assert "tong_hop.csv, dòng 2, cột &#39;Mã đảng viên&#39;: mã đảng viên DV004 không có trong danh sách" in history
    assert "hiện hành" not in history.split("tong_hop.csv", 1)[1].split("</tr>", 1)[0]
    after = client.get("/c/c187/tree/status.json?phase=chi_bo_kiem_diem").json()["units"]["VP2"][1]
    assert after < present  # the cached status was rebuilt without it


def test_tree_filters_on_the_server(client_as, clock):
    clock.now = ict(2023, 12, 1, 12)
    client = client_as("office@sct.example.vn")
    overdue = client.get("/c/c187/tree?state=overdue&phase=chuan_bi_chi_bo").text
    codes = re.findall(r'data-c="([^"]+)"', overdue)
    assert codes == ["SCT", "KC", "QL", "QL1", "QL2", "VP1", "VP2"]  # path order; SCT and QL owe nothing in that phase
    assert re.search(r'<li data-d=1 data-s=overdue data-k=chi_bo_truc_thuoc data-c="VP2">', overdue)
    assert re.search(r'<li data-d=1 data-s=none data-k=dang_bo_bo_phan data-c="QL" class=ctx>', overdue)
    found = re.findall(r'data-c="([^"]+)"', client.get("/c/c187/tree?q=quan ly thi truong so 2").text)
    assert found == ["SCT", "QL", "QL2"]  # the match and its ancestors; diacritics ignored
    kinds = re.findall(r'data-c="([^"]+)"', client.get("/c/c187/tree?kind=dang_bo_bo_phan").text)
    assert kinds == ["SCT", "QL"]


def test_tree_status_json_and_fragments_answer_304_when_unchanged(client_as, store, campaign):
    client = client_as("office@sct.example.vn")
    first = client.get("/c/c187/tree/status.json?phase=chuan_bi_chi_bo")
    data = first.json()
    assert data["units"]["VP1"][0] == "due_soon" and data["labels"]["done"] == "Hoàn thành"
    again = client.get("/c/c187/tree/status.json?phase=chuan_bi_chi_bo", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    submit(store, campaign.plan, "VP1", "du_thao_bao_cao_kiem_diem", PDF + b"new", ict(2023, 11, 28, 8))
    changed = client.get("/c/c187/tree/status.json?phase=chuan_bi_chi_bo", headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and changed.json()["units"]["VP1"] == ["done", 100.0]
    fragment = client.get("/c/c187/live/overview")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert client.get("/c/c187/live/overview", headers={"If-None-Match": fragment.headers["etag"]}).status_code == 304


def count_queries(store):
    statements = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", before)
    return statements, lambda: event.remove(store.engine, "before_cursor_execute", before)


def test_tree_page_runs_the_same_queries_whatever_the_size(store, campaign, clock, web_settings_for_tests, tmp_path):
    """No per-unit queries: 7 units or 307, the tree page issues the same statements."""

    def tree_queries() -> tuple[int, int]:
        app = create_app(store, web_settings_for_tests, clock=clock)
        cookie, _ = session_for(app, store, "office@sct.example.vn")
        with TestClient(app) as client:
            client.cookies.set(SESSION_COOKIE, cookie)
            statements, stop = count_queries(store)
            try:
                response = client.get("/c/c187/tree")
            finally:
                stop()
        return len(statements), response.text.count("<li ")

    small_queries, small_rows = tree_queries()
    lines = ["code,name,kind,parent,emails"] + [f"X{i:03d},Chi bộ thử {i},chi_bo_truc_thuoc,QL," for i in range(300)]
    path = tmp_path / "more.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with store.uow() as uow:
        import_organization(uow, CAMPAIGN, path, None, ict(2023, 11, 21))
        uow.commit()
    big_queries, big_rows = tree_queries()
    assert (small_rows, big_rows) == (7, 307)
    assert big_queries == small_queries <= 10


def test_a_branchs_consolidation_page_shows_its_own_classification(client_as):
    text = client_as("vp1@sct.example.vn").get("/c/c187/u/VP1/consolidation").text
    own = text[text.index('id="own-result"'):]
    assert own.startswith('id="own-result">Xếp loại của tổ chức: <strong>HTTNV</strong> (Hoàn thành tốt nhiệm vụ), do Đảng bộ Sở Công Thương quyết định')


def test_consolidation_without_snapshots_says_so(client_as, store):
    text = client_as("unit.ql@sct.example.vn").get("/c/c187/u/QL1/consolidation").text
    assert "chưa có tổng hợp" in text


def test_consolidation_shows_levels_quota_and_the_latest_changes(client_as):
    text = client_as("office@sct.example.vn").get("/c/c187/u/SCT/consolidation").text
    assert "Phiên bản <strong>2</strong>" in text and "<svg class=\"chart\"" in text
    quota = text[text.index('id="quota"'):]
    assert "vượt hạn mức" in quota  # 1 HTXSNV for 2 HTTNV: at most floor(0.4) = 0
    diff = text[text.index('id="diff"'):]
    assert "Trần Thị Hoa" in diff and "HTXSNV" in diff and "So sánh tính từ nội dung hai phiên bản" in diff
    assert "Phạm Minh Đức" in diff  # a result that arrived late


def test_consolidation_diff_between_any_two_versions(client_as, store):
    """Version 3 cancels the results of version 2 everywhere (results found wrong are re-decided)."""
    from kiemdiem.store.results import cancel_result, record_results
    from tests.web.conftest import FIRST_LEVELS, member_results, plan_187

    at = ict(2023, 12, 8, 9)
    with store.uow() as uow:  # the results of version 1 again, DV005's (new in version 2) cancelled
        record_results(uow, plan_187(), CAMPAIGN, at, member_results(FIRST_LEVELS), [], actor="test")
        cancel_result(uow, CAMPAIGN, member_code="DV005", by="Văn phòng", reason="kết quả sai", now=at)
        uow.commit()
    with store.uow() as uow:
        for unit_id in uow.session.scalars(select(Unit.id).where(Unit.code.in_(["SCT", "VP1", "VP2"]))):
            first = uow.session.scalar(select(Snapshot).where(Snapshot.unit_id == unit_id, Snapshot.version == 1))
            uow.session.add(Snapshot(campaign_id=CAMPAIGN, unit_id=unit_id, version=3, content_hash=first.content_hash, payload=first.payload,
                                     diff=None, created_at=ict(2023, 12, 8, 9), reason="hủy kết quả sai"))
        uow.commit()
    client = client_as("office@sct.example.vn")
    same = client.get("/c/c187/u/SCT/consolidation?a=1&b=3").text
    assert "Không có thay đổi giữa hai phiên bản" in same
    back = client.get("/c/c187/u/SCT/consolidation?a=3&b=2").text  # either order
    diff = back[back.index('id="diff"'):]
    assert "từ phiên bản 2" in diff and "đến phiên bản 3" in diff
    assert "Trần Thị Hoa" in diff and "Phạm Minh Đức" in diff and "So sánh tính từ nội dung hai phiên bản" in diff
    assert "Đảng viên HTXSNV: số" in diff  # the totals of SCT, with their Vietnamese labels



def test_consolidation_shows_quota_scope_and_changed_values_in_vietnamese(client_as):
    text = client_as("office@sct.example.vn").get("/c/c187/u/SCT/consolidation?a=1&b=2").text
    quota = text[text.index('id="quota"'):text.index("</table>", text.index('id="quota"'))]
    assert "trong tổ chức cơ sở đảng" in quota  # SCT is a đảng bộ cơ sở: its member cap is its own
    assert "base_organization" not in quota and "subtree" not in quota and "committee" not in quota
    diff = text[text.index('id="diff"'):]
    status = re.search(r"<tr><td>Đảng viên: tình trạng hạn mức 20%</td><td[^>]*>([^<]*)</td><td[^>]*><strong>([^<]*)<", diff)
    assert status.groups() == ("đạt", "vượt")  # 1 HTXSNV for 2 HTTNV in version 2
    assert not re.search(r">(ok|breach|overridden|n/a)<", diff)


# ----------------------------------------------------------------------------- files, exports, calendar


def test_download_returns_the_file_and_is_audited(client_as, store, campaign):
    response = client_as("vp1@sct.example.vn").get(f"/c/c187/files/{campaign.files['VP1']}")
    assert response.status_code == 200 and response.content == PDF + b"VP1"
    assert 'attachment; filename="bien_ban_VP1.pdf"' in response.headers["content-disposition"]
    assert response.headers["x-content-type-options"] == "nosniff"
    [downloaded] = events(store, "web.download")
    assert downloaded.actor == "vp1@sct.example.vn" and downloaded.detail["unit"] == "VP1"


def test_progress_exports_cover_the_subtree_only(client_as, store):
    client = client_as("unit.ql@sct.example.vn")
    text = client.get("/c/c187/u/QL/export/progress.csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["Mã đơn vị", "Tên đơn vị", "Loại"]
    assert {r[0] for r in rows[1:]} == {"QL1", "QL2"}  # QL itself owes nothing in plan 187
    assert ["QL1", "chuan_bi_chi_bo", "30/11/2023 23:59", "Sắp đến hạn"] in [[r[0], r[5], r[7], r[8]] for r in rows[1:]]
    book = load_workbook(io.BytesIO(client.get("/c/c187/u/QL/export/progress.xlsx").content))
    sheet = book.active
    assert sheet.cell(1, 1).value == "Mã đơn vị" and sheet.max_row == len(rows)
    # A deadline is a date cell on the local clock (sortable, filterable), shown dd/mm/yyyy hh:mm.
    header = [c.value for c in sheet[1]]
    deadline = next(r[header.index("Hạn chót")] for r in sheet.iter_rows(min_row=2) if r[header.index("Mã giai đoạn")].value == "chuan_bi_chi_bo")
    assert deadline.value == dt.datetime(2023, 11, 30, 23, 59, 59) and deadline.number_format == "dd/mm/yyyy hh:mm"
    assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, len(header)).column_letter}{sheet.max_row}"
    assert sheet.column_dimensions["G"].width > 20  # the phase's name is readable without widening it by hand
    assert [e.subject for e in events(store, "web.export")] == ["progress.csv", "progress.xlsx"]


def test_consolidation_export_lists_latest_versions(client_as):
    client = client_as("office@sct.example.vn")
    rows = list(csv.reader(io.StringIO(client.get("/c/c187/u/SCT/export/consolidation.csv").content.decode("utf-8-sig"))))
    assert [r[0] for r in rows[1:]] == ["SCT", "VP1", "VP2"] and {r[3] for r in rows[1:]} == {"2"}
    header = rows[0]
    sct = dict(zip(header, rows[1]))
    assert sct["HTXSNV (số)"] == "1" and sct["HTTNV (số)"] == "2" and sct["Hạn mức 20% đảng viên"] == "vượt"
    # The reasons for not evaluating, named as on the consolidation page (no codes such as "exempt").
    reasons = ["Không đánh giá: được miễn công tác và sinh hoạt đảng", "Không đánh giá: bị đình chỉ sinh hoạt đảng",
               "Không đánh giá: mới kết nạp chưa đủ 6 tháng"]
    assert [h for h in header if h.startswith("Không đánh giá")] == reasons
    book = load_workbook(io.BytesIO(client.get("/c/c187/u/SCT/export/consolidation.xlsx").content))
    assert book.active.max_row == 4
    assert [c.value for c in book.active[1]] == header
    page = client.get("/c/c187/u/SCT/consolidation").text
    assert all(f"<th>{name}</th>" in page for name in reasons)


def test_calendar_feed_per_unit(client_as, store):
    client = client_as("vp1@sct.example.vn")
    body = client.get("/c/c187/u/VP1/calendar.ics")
    assert body.headers["content-type"].startswith("text/calendar")
    text = body.content.decode()
    assert text.count("BEGIN:VEVENT") == 4  # the four phases of a chi bộ trực thuộc in plan 187
    assert "DTEND:20231205T165959Z" in text and "X-WR-CALNAME:Hạn kiểm điểm – Chi bộ Văn phòng 1" in text
    # Reminded on the morning of Monday 04/12 (07:30 ICT), the working day before Tuesday's deadline.
    assert "TRIGGER;VALUE=DATE-TIME:20231204T003000Z" in text
    unfolded = text.replace("\r\n ", "")
    assert "Dự thảo báo cáo kiểm điểm của chi ủy (của chi bộ\\, nơi không có chi ủy)" in unfolded  # the plan's note
    page = client.get("/c/c187/u/VP1").text
    subscribe = re.search(r'href="(/ics/[^"]+\.ics)"', page).group(1)
    feed = client_as().get(subscribe)  # a calendar client has no session
    assert feed.status_code == 200 and feed.content == body.content
    assert client_as().get(subscribe.replace(".ics", "x.ics")).status_code == 404


def test_security_headers(client_as):
    response = client_as("office@sct.example.vn").get("/c/c187")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"
    assert '<html lang="vi">' in response.text


# ----------------------------------------------------------------------------- the command line for people


def test_cli_adds_and_invites_people(store, campaign):
    cli = typer.Typer()
    register(cli)
    runner = CliRunner()
    added = runner.invoke(cli, ["user", "add", "--campaign", CAMPAIGN, "--email", "Van.Phong@sct.example.vn", "--name", "Văn phòng QL",
                                "--role", "office", "--unit", "QL", "--password", "mat-khau-du-dai"])
    assert added.exit_code == 0, added.output
    invited = runner.invoke(cli, ["user", "invite", "--campaign", CAMPAIGN, "--email", "bithu.ql1@sct.example.vn", "--name", "Đỗ Văn Hùng",
                                  "--unit", "QL1", "--show-link"])
    assert invited.exit_code == 0, invited.output
    assert "http://127.0.0.1:8080/signin/" in invited.output
    refused = runner.invoke(cli, ["user", "add", "--campaign", CAMPAIGN, "--email", "x@sct.example.vn", "--name", "X", "--role", "boss",
                                  "--unit", "NOPE", "--password", "ngan"])
    assert refused.exit_code == 2 and "vai trò không hợp lệ" in refused.output and "đơn vị không tồn tại" in refused.output
    with store.uow() as uow:
        office = uow.session.scalar(select(User).where(User.email == "van.phong@sct.example.vn"))
        assert office.role == "office" and verify_password("mat-khau-du-dai", office.password_hash)
        secretary = uow.session.scalar(select(User).where(User.email == "bithu.ql1@sct.example.vn"))
        assert secretary.role == "unit" and secretary.password_hash is None
        assert uow.session.scalar(select(Outbox.recipient).where(Outbox.kind == "invite")) == "bithu.ql1@sct.example.vn"


def test_status_after_new_submissions_equals_a_full_rebuild(store, campaign, clock):
    """New submissions update only their units (and the ancestors' subtree counts), to the same result as a rebuild."""
    clock.now = ict(2023, 12, 6, 10)
    cache = StatusCache(check_seconds=0)
    with store.uow() as uow:
        cache.get(uow, CAMPAIGN, clock.now)
    plan = campaign.plan
    submit(store, plan, "VP1", "du_thao_bao_cao_kiem_diem", PDF + b"a", ict(2023, 11, 29, 9))  # on time
    submit(store, plan, "QL2", "du_thao_bao_cao_kiem_diem", PDF + b"b", ict(2023, 12, 2, 9))  # late
    submit(store, plan, "VP2", "ban_kiem_diem_ca_nhan", PDF + b"c", ict(2023, 12, 4, 9), member="DV004")
    submit(store, plan, "QL1", "bien_ban_hoi_nghi", PDF + b"d", ict(2023, 12, 5, 9))  # a new version of a delivered item
    submit(store, plan, "KC", "du_thao_bao_cao_kiem_diem", PDF + b"e", ict(2023, 12, 7, 9))  # after "now": not yet
    with store.uow() as uow:
        updated = cache.get(uow, CAMPAIGN, clock.now)
        full = build_view(uow, updated.plan, CAMPAIGN, clock.now, updated.key, 3)
    assert (cache.builds, cache.updates) == (1, 1)
    assert updated.cells == full.cells
    assert updated.subtree == full.subtree
    assert updated.state("QL2", "chuan_bi_chi_bo") == "done_late" and updated.state("KC", "chuan_bi_chi_bo") == "overdue"


def test_large_pages_are_gzipped_and_office_files_are_not(client_as):
    client = client_as("office@sct.example.vn")
    plain = client.get("/c/c187/tree", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.content) > 4096
    zipped = client.get("/c/c187/tree", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content) // 3  # httpx has decoded .content already
    assert zipped.text == plain.text
    book = client.get("/c/c187/u/QL/export/progress.xlsx", headers={"Accept-Encoding": "gzip"})
    assert book.status_code == 200 and "content-encoding" not in book.headers


def test_only_pages_that_refresh_themselves_say_so(client_as):
    client = client_as("vp1@sct.example.vn")
    assert "trang tự cập nhật mỗi" in client.get("/c/c187/u/VP1").text
    assert "trang tự cập nhật mỗi" not in client.get("/c/c187/u/VP1/upload").text


def test_the_overview_says_when_mail_could_not_be_sent(client_as, store):
    with store.uow() as uow:
        at = ict(2023, 11, 27, 8)
        uow.session.add(Outbox(
            campaign_id=CAMPAIGN, idempotency_key="f1", key_material="f1", kind="reminder", recipient="vp2@sct.example.vn",
            recipient_name="VP2", subject="Nhắc", body_text="-", body_html="-", attachments=[], message_id="<f1@x>", reason="",
            status="failed", attempts=0, not_before=at, next_attempt_at=at, created_at=at,
            last_error={"status": "temporary", "code": 535, "message": "5.7.8 Authentication credentials invalid"},
        ))
        uow.commit()
    page = client_as("office@sct.example.vn").get("/c/c187").text
    assert "1 thư chưa gửi được" in page and "5.7.8 Authentication credentials invalid" in page


def test_a_replay_sets_the_dashboards_clock_and_it_runs_on(store, campaign, web_settings_for_tests):
    """KIEMDIEM_WEB_CLOCK_START (kiemdiem web --at): the pages of a replayed campaign carry its dates."""
    import time  # noqa: PLC0415

    from kiemdiem.errors import KiemdiemError  # noqa: PLC0415
    from kiemdiem.web.app import create_app  # noqa: PLC0415

    settings = web_settings_for_tests.model_copy(update={"clock_start": "01/12/2023 11:00"})
    app = create_app(store, settings, refresh_seconds=1, status_check_seconds=0)
    first = app.state.web.clock()
    assert abs((first - ict(2023, 12, 1, 11)).total_seconds()) < 5
    time.sleep(0.05)
    assert app.state.web.clock() > first  # it runs on
    bad = web_settings_for_tests.model_copy(update={"clock_start": "31/02/2023"})
    with pytest.raises(KiemdiemError, match="KIEMDIEM_WEB_CLOCK_START không đọc được"):
        create_app(store, bad)


# ----------------------------------------------------------------------------- the overview's cards and the tree agree


def tree_matches(html: str) -> list[str]:
    """Codes of the rows a tree page shows as matching its filter (ancestors shown for context excluded)."""
    rows = [dict(re.findall(r'([\w-]+)=("[^"]*"|\S+)', attrs)) for attrs in re.findall(r"<li ([^>]*)>", html)]
    return [row["data-c"].strip('"') for row in rows if row.get("class") != "ctx"]


def card(html: str, card_id: str) -> tuple[int, str, str]:
    """(the number, the link to the tree, the card's words) of an overview card."""
    text = html[html.index(f'id="{card_id}"'):]
    text = text[:text.index('<div class="card"', 1)] if '<div class="card"' in text[1:] else text
    number = int(re.search(r'<div class="big[^"]*">([\d.]+)</div>', text).group(1).replace(".", ""))
    link = re.search(r'<a href="([^"]+)"', text)
    return number, link and link.group(1).replace("&amp;", "&"), re.sub(r"<[^>]+>", " ", text)


def test_the_overview_cards_count_what_their_tree_links_show(client_as, store, campaign, clock):
    """One definition of a unit's state over all its phases, for the cards and the tree's filter: a unit
    late in one phase, on time in another and overdue in a third counts as late (and as overdue), and
    the card's link shows exactly the units it counts."""
    clock.now = ict(2023, 12, 8, 10)
    plan = campaign.plan
    submit(store, plan, "VP1", "du_thao_bao_cao_kiem_diem", PDF + b"a", ict(2023, 12, 2, 9))  # 30/11: late
    submit(store, plan, "VP1", "ke_hoach_khac_phuc", PDF + b"b", ict(2023, 12, 7, 9))  # 28/12: on time; 05/12: overdue
    submit(store, plan, "KC", "du_thao_bao_cao_kiem_diem", PDF + b"c", ict(2023, 11, 29, 9))  # 30/11: on time
    submit(store, plan, "QL2", "du_thao_bao_cao_kiem_diem", PDF + b"d", ict(2023, 12, 1, 9))  # 30/11: late

    client = client_as("office@sct.example.vn")
    page = client.get("/c/c187").text
    late, late_link, late_words = card(page, "late-count")
    tree = client.get("/c/c187/tree?root=SCT&state=done_late").text
    assert len(tree_matches(tree)) == late == 2
    assert sorted(tree_matches(tree)) == ["QL2", "VP1"]
    assert "ít nhất một giai đoạn" in late_words  # says what it counts
    assert late_link == "/c/c187/tree?root=SCT&state=done_late"  # ... and links to them
    assert re.search(r'<li data-d=1 data-s=overdue [^>]*data-c="VP1">', tree)  # its badge: the worst of its phases
    assert "Có giai đoạn hoàn thành trễ hạn" in tree  # the filter's words say it is "any phase"
    assert re.search(r'id="tree-count">2 đơn vị khớp bộ lọc; 2 đơn vị cấp trên hiện mờ', tree)  # SCT and QL place them

    overdue, overdue_link, _ = card(page, "overdue-count")
    assert overdue_link == "/c/c187/tree?root=SCT&state=overdue"
    assert len(tree_matches(client.get(overdue_link).text)) == overdue == 6  # every branch missed 05/12, SCT 06/12

    # The status the tree's script refreshes its rows from carries each unit's phase states
    units = client.get("/c/c187/tree/status.json").json()["units"]
    assert units["VP1"][0] == "overdue" and sorted(units["VP1"][2]) == ["done", "done_late", "overdue", "pending"]

    # Within a phase the tree shows that phase's state, as the phase table's links say
    phase_tree = client.get("/c/c187/tree?phase=chuan_bi_chi_bo&state=done_late").text
    assert sorted(tree_matches(phase_tree)) == ["QL2", "VP1"]

    # A subtree's office: the card and its link are scoped alike
    ql = client_as("office.ql@sct.example.vn")
    late_ql, link_ql, _ = card(ql.get("/c/c187").text, "late-count")
    assert late_ql == 1 and tree_matches(ql.get(link_ql).text) == ["QL2"]


def test_timeline_gives_close_deadlines_labels_rows_of_their_own(clock):
    """Deadlines a day apart, five in a row, in a campaign of two months: each deadline's labels (as wide
    as DejaVu Sans draws them at the largest size the page uses) clear every other's, above and below
    the axis, and stay inside the drawing (the browser test measures the same in Chromium)."""
    days = ["02/11/2023", "20/11/2023", "21/11/2023", "22/11/2023", "22/11/2023", "23/11/2023", "24/11/2023", "31/12/2023"]
    line = timeline(timeline_plan("tl", days), clock.now)
    boxes = []
    for m in line.marks:
        half = max(label_width("00/00/0000"), label_width(m.phases_label)) / 2
        top, bottom = min(m.date_y, m.phases_y) - LABEL_ASCENT, max(m.date_y, m.phases_y) + LABEL_DESCENT
        boxes.append((m.deadline.day, m.label_x - half, top, m.label_x + half, bottom))
        assert line.left <= m.label_x - half and m.label_x + half <= line.right and 0 <= top and bottom <= line.height
        assert bottom < line.axis_y - 7 or top > line.axis_y + 7  # clear of the circles
    clashes = [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
               if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]
    assert clashes == []
    assert [m.phases_label for m in line.marks][3] == "GĐ 4, 5" and len({m.row for m in line.marks}) >= 4
    assert max(b[4] for b in boxes) < line.today_y - LABEL_ASCENT  # today's label below them all
    # A plan whose deadlines are far apart keeps one row above the axis
    assert {m.row for m in timeline(timeline_plan("far", ["01/11/2023", "20/11/2023", "10/12/2023"]), clock.now).marks} == {0}


# ----------------------------------------------------------------------------- the tree names the phases a unit is late in


def tree_row(html: str, code: str) -> str:
    return re.search(rf'<li [^>]*data-c="{code}"[^>]*>.*?</li>', html).group(0)


def late_labels(row: str) -> list[str]:
    return re.findall(r'<span class="lp lp-[a-z_]+" title="[^"]*">([^<]+)</span>', row)


def test_a_late_row_of_the_tree_names_its_late_phases_with_their_deadlines(client_as, store, campaign, clock):
    """A row shown overdue or late says in which phases (short: the phase's number, as the phase filter and the
    timeline number them, and its deadline dd/mm/yyyy; the full name on hover), the overdue ones first; the
    filters, their counts and the rows' attributes the page script reads are as before."""
    clock.now = ict(2023, 12, 8, 10)
    plan = campaign.plan
    submit(store, plan, "VP1", "du_thao_bao_cao_kiem_diem", PDF + b"a", ict(2023, 12, 2, 9))  # phase 1 (30/11): late
    submit(store, plan, "QL2", "du_thao_bao_cao_kiem_diem", PDF + b"d", ict(2023, 12, 1, 9))  # phase 1 (30/11): late
    client = client_as("office@sct.example.vn")

    tree = client.get("/c/c187/tree").text
    vp1 = tree_row(tree, "VP1")
    assert late_labels(vp1) == ["GĐ 2 (hạn 05/12/2023)", "GĐ 1 nộp trễ (hạn 30/11/2023)"]  # overdue in 2, delivered 1 late
    assert 'title="2. Chi bộ trực thuộc kiểm điểm, đánh giá, xếp loại và gửi hồ sơ điểm 4.1 về Thường trực Đảng ủy Sở: quá hạn' in vp1
    assert "(hạn 05/12/2023 23:59)" in vp1
    assert vp1.index('class=late') < vp1.index('<b class="b s-overdue">Quá hạn</b>')  # before the badge, on the row's line
    assert late_labels(tree_row(tree, "KC")) == ["GĐ 1 (hạn 30/11/2023)", "GĐ 2 (hạn 05/12/2023)"]
    assert late_labels(tree_row(tree, "SCT")) == ["GĐ 3 (hạn 06/12/2023)"]
    assert "class=late" not in tree_row(tree, "QL")  # no phase of its own: nothing late
    assert re.search(r'<li data-d=1 data-s=overdue data-k=chi_bo_truc_thuoc data-ss="done_late overdue pending" data-c="VP1">', tree)

    # Within one phase, that phase only
    phase_tree = client.get("/c/c187/tree?phase=chuan_bi_chi_bo").text
    assert late_labels(tree_row(phase_tree, "VP1")) == ["GĐ 1 nộp trễ (hạn 30/11/2023)"]
    assert late_labels(tree_row(phase_tree, "VP2")) == ["GĐ 1 (hạn 30/11/2023)"]

    # Before any deadline has passed, no row says anything
    clock.now = ict(2023, 11, 28, 9)
    assert "class=late" not in client.get("/c/c187/tree").text.split('<ul class="tree"', 1)[1]
    clock.now = ict(2023, 12, 8, 10)

    # The filters and their counts are the cards' (StatusView.states), unchanged
    late = client.get("/c/c187/tree?root=SCT&state=done_late").text
    assert sorted(tree_matches(late)) == ["QL2", "VP1"]
    assert late_labels(tree_row(late, "QL2")) == ["GĐ 2 (hạn 05/12/2023)", "GĐ 1 nộp trễ (hạn 30/11/2023)"]
    assert len(tree_matches(client.get("/c/c187/tree?root=SCT&state=overdue").text)) == 6

    # The status the page refreshes its rows from carries the same labels
    status = client.get("/c/c187/tree/status.json").json()
    assert [label for _state, label, _title in status["late"]["VP1"]] == ["GĐ 2 (hạn 05/12/2023)", "GĐ 1 nộp trễ (hạn 30/11/2023)"]
    assert [state for state, _label, _title in status["late"]["VP1"]] == ["overdue", "done_late"]
    assert "QL" not in status["late"] and status["units"]["VP1"][0] == "overdue"
    assert client.get("/c/c187/tree/status.json?phase=chuan_bi_chi_bo").json()["units"]["VP1"] == ["done_late", 100.0]
