"""Fixtures for the web tests: a campaign with a deeper tree, people of every role, a clock
the test moves, clients logged in as someone, and (for browser tests) a real uvicorn server
with Debian's Chromium.

The tree (plan 187-KH/ĐU):  SCT ─┬─ VP1, VP2, KC          (chi bộ trực thuộc)
                                 └─ QL (đảng bộ bộ phận) ─┬─ QL1
                                                          └─ QL2
People bound to QL see QL, QL1 and QL2 only; VP1 is outside their subtree.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Integer, select
from starlette.testclient import TestClient

from kiemdiem.consolidation import (
    ConsolidationInput,
    MemberRecord,
    MemberResult,
    OrgResult,
    UnitNode,
    consolidate,
    diff,
    member_changes,
    snapshot_hash,
)
from kiemdiem.plan import load_plan, parse_plan
from kiemdiem.settings import StoreSettings, WebSettings
from kiemdiem.store.db import Store, open_store
from kiemdiem.store.models import Base, Snapshot, SubmissionFile, Unit
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.results import record_results
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.web import auth
from kiemdiem.web.app import create_app
from kiemdiem.web.auth import SESSION_COOKIE, create_user, find_user, new_session, password_fingerprint
from tests.support import PLANS, ict, write_small_org

CHROMIUM = os.environ.get("KIEMDIEM_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("KIEMDIEM_REQUIRE_BROWSER") == "1"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

CAMPAIGN = "c187"
PASSWORD = "mat-khau-thu-nghiem"
SETUP_AT = ict(2023, 11, 20, 8)

WEB_UNITS = """code,name,kind,parent,emails
SCT,Đảng bộ Sở Công Thương,dang_bo_co_so,,vanphong@sct.example.vn
VP1,Chi bộ Văn phòng 1,chi_bo_truc_thuoc,SCT,vp1@sct.example.vn
VP2,Chi bộ Văn phòng 2,chi_bo_truc_thuoc,SCT,vp2@sct.example.vn
KC,Chi bộ Khuyến công,chi_bo_truc_thuoc,SCT,kc@sct.example.vn
QL,Đảng bộ bộ phận Quản lý thị trường,dang_bo_bo_phan,SCT,ql@sct.example.vn
QL1,Chi bộ Đội Quản lý thị trường số 1,chi_bo_truc_thuoc,QL,ql1@sct.example.vn
QL2,Chi bộ Đội Quản lý thị trường số 2,chi_bo_truc_thuoc,QL,ql2@sct.example.vn
"""

WEB_MEMBERS = """member_id,full_name,unit,email,joined_on,status,temporary_unit,positions
DV001,Nguyễn Sỹ Chín,VP1,chin@sct.example.vn,12/05/1995,active,,dang_uy_vien;bi_thu
DV002,Trần Thị Hoa,VP1,,03/02/2010,active,,
DV003,Lê Văn Nam,VP1,,2001-07-19,exempt,,
DV004,Lê Xuân Tiến,VP2,tien@sct.example.vn,1998-09-02,active,,pho_bi_thu
DV005,Phạm Minh Đức,VP2,,2015-09-01,active,,
DV006,Nguyễn Trọng Thức,KC,thuc@sct.example.vn,2005-01-10,active,,bi_thu
DV007,Hoàng Thị Lan,KC,,2012-11-20,active,,
DV008,Đỗ Văn Hùng,QL1,hung@sct.example.vn,2008-03-03,active,,bi_thu
DV009,Vũ Thị Mai,QL2,mai@sct.example.vn,2011-06-06,active,,bi_thu
"""

# (email, role, unit)
PEOPLE = [
    ("admin@sct.example.vn", "admin", "SCT"),
    ("office@sct.example.vn", "office", "SCT"),
    ("vp1@sct.example.vn", "unit", "VP1"),
    ("vp2@sct.example.vn", "unit", "VP2"),
    ("admin.ql@sct.example.vn", "admin", "QL"),
    ("office.ql@sct.example.vn", "office", "QL"),
    ("unit.ql@sct.example.vn", "unit", "QL"),
]
ROLE_AT_QL = {"admin": "admin.ql@sct.example.vn", "office": "office.ql@sct.example.vn", "unit": "unit.ql@sct.example.vn"}

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def docx_bytes(text: str = "Báo cáo") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", f"<w:document>{text}</w:document>")
    return out.getvalue()


def xlsx_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    return out.getvalue()


class FakeClock:
    """The app's "now"; tests move it to walk through a campaign."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class WebCampaign:
    store: Store
    plan: object
    campaign_id: str = CAMPAIGN
    files: dict[str, int] = field(default_factory=dict)  # unit code -> id of a stored file there


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """scrypt at full cost takes ~80 ms per hash; the stored hash keeps its own cost, so lower it."""
    monkeypatch.setattr(auth, "SCRYPT_N", 2**8)


@lru_cache(maxsize=1)
def plan_187():
    return load_plan(PLANS / "187-KH-DU-2023.yaml")


def timeline_plan(plan_id: str, deadlines: list[str]):
    """A plan with one phase per deadline (dd/mm/yyyy; the same day twice: two phases on one deadline)."""
    phases = "".join(f"""
  - id: gd{i}
    name: Giai đoạn thử số {i}
    kind: prepare_reports
    applies_to: [chi_bo_truc_thuoc]
    deadline: {{date: "{day}", text: trước ngày {day}}}
    documents:
      - type: du_thao_bao_cao_kiem_diem
""" for i, day in enumerate(deadlines, 1))
    return parse_plan(f"""id: {plan_id}
number: 01-KH/TN
title: Kế hoạch thử các mốc hạn gần nhau
issuer: Đảng ủy thử nghiệm
year: 2023
rule_set: "124/25"
phases:{phases}""")


def setup_campaign(store: Store, directory: Path, with_snapshots: bool = True) -> WebCampaign:
    """The campaign, its tree and members, the people, one stored file in VP1, QL1 and VP2, and snapshots (one commit)."""
    plan = plan_187()
    units, members = write_small_org(directory, WEB_UNITS, WEB_MEMBERS)
    campaign = WebCampaign(store, plan)
    with store.uow() as uow:
        create_campaign(uow, plan, CAMPAIGN, SETUP_AT)
        import_organization(uow, CAMPAIGN, units, members, SETUP_AT)
        for email, role, unit in PEOPLE:
            create_user(uow, campaign_id=CAMPAIGN, unit_code=unit, email=email, full_name=f"Người dùng {email.split('@')[0]}",
                        role=role, now=SETUP_AT, password=PASSWORD, actor="test")
        submissions = {}
        for code in ("VP1", "QL1", "VP2"):
            outcome = record_submission(uow, store.blobs, plan, CAMPAIGN, code, "bien_ban_hoi_nghi",
                                        [IncomingFile(f"bien_ban_{code}.pdf", data=PDF + code.encode(), content_type="application/pdf")],
                                        ict(2023, 11, 27, 10), "cli", actor="test")
            submissions[outcome.submission_id] = code
        for file_id, submission_id in uow.session.execute(
            select(SubmissionFile.id, SubmissionFile.submission_id).where(SubmissionFile.submission_id.in_(list(submissions)))
        ):
            campaign.files[submissions[submission_id]] = file_id
        if with_snapshots:
            add_snapshots(uow)
        uow.commit()
    return campaign


def submit(store: Store, plan, unit: str, doc: str, data: bytes, at: dt.datetime, *, member: str | None = None,
           name: str = "van_ban.pdf", source: str = "cli"):
    with store.uow() as uow:
        outcome = record_submission(uow, store.blobs, plan, CAMPAIGN, unit, doc, [IncomingFile(name, data=data, content_type="application/pdf")],
                                    at, source, member_code=member, actor="test")
        uow.commit()
    return outcome


# ----------------------------------------------------------------------------- consolidation snapshots


def _consolidation(levels: dict[str, str]) -> dict[str, dict]:
    units = [
        UnitNode("SCT", "Đảng bộ Sở Công Thương", "dang_bo_co_so", None),
        UnitNode("VP1", "Chi bộ Văn phòng 1", "chi_bo_truc_thuoc", "SCT"),
        UnitNode("VP2", "Chi bộ Văn phòng 2", "chi_bo_truc_thuoc", "SCT"),
    ]
    members = [MemberRecord(mid, name, unit, "active", dt.date(2005, 1, 1), ()) for mid, name, unit in SNAPSHOT_PEOPLE]
    summaries = consolidate(ConsolidationInput(
        tuple(units), tuple(members), tuple(member_results(levels)), tuple(SNAPSHOT_ORGS), "124/25", dt.date(2023, 12, 5)
    ))
    return {code: s.to_dict() for code, s in summaries.items()}


SNAPSHOT_PEOPLE = [("DV001", "Nguyễn Sỹ Chín", "VP1"), ("DV002", "Trần Thị Hoa", "VP1"), ("DV004", "Lê Xuân Tiến", "VP2"),
                   ("DV005", "Phạm Minh Đức", "VP2")]
SNAPSHOT_ORGS = [OrgResult("VP1", "HTTNV", "SCT", False), OrgResult("VP2", "HTTNV", "SCT", False)]


def member_results(levels: dict[str, str]) -> list[MemberResult]:
    return [
        MemberResult(mid, unit, levels[mid], levels[mid], levels[mid], False, 0.0, False, None, "", True)
        for mid, _name, unit in SNAPSHOT_PEOPLE if mid in levels
    ]


FIRST_LEVELS = {"DV001": "HTTNV", "DV002": "HTTNV", "DV004": "HTNV"}
SECOND_LEVELS = {"DV001": "HTTNV", "DV002": "HTXSNV", "DV004": "HTNV", "DV005": "HTTNV"}


def add_snapshots(uow) -> None:
    """Two versions per unit, as the consolidation step stores them: payload per unit, diff against the
    previous; and the results they were made from, received at each version's time (whose result
    changed between two versions is read from them)."""
    record_results(uow, plan_187(), CAMPAIGN, ict(2023, 12, 6, 8), member_results(FIRST_LEVELS), SNAPSHOT_ORGS, actor="test")
    record_results(uow, plan_187(), CAMPAIGN, ict(2023, 12, 7, 15), member_results(SECOND_LEVELS), [], actor="test")
    first, second = _consolidation(FIRST_LEVELS), _consolidation(SECOND_LEVELS)
    lines = {levels: {code: [(mid, name, dict(levels).get(mid), None) for mid, name, unit in SNAPSHOT_PEOPLE if unit == code]
                      for code in ("VP1", "VP2")} for levels in (tuple(FIRST_LEVELS.items()), tuple(SECOND_LEVELS.items()))}
    changes = diff(first, second, members=member_changes(*lines.values()))
    ids = dict(uow.session.execute(select(Unit.code, Unit.id).where(Unit.campaign_id == CAMPAIGN)).all())
    for code in ("SCT", "VP1", "VP2"):
        uow.session.add(Snapshot(campaign_id=CAMPAIGN, unit_id=ids[code], version=1, content_hash=snapshot_hash({code: first[code]}),
                                 payload=first[code], diff=None, created_at=ict(2023, 12, 6, 8), reason="tổng hợp lần đầu"))
        uow.session.add(Snapshot(campaign_id=CAMPAIGN, unit_id=ids[code], version=2, content_hash=snapshot_hash({code: second[code]}),
                                 payload=second[code], diff=changes, created_at=ict(2023, 12, 7, 15),
                                 reason="kết quả nộp muộn của Chi bộ Văn phòng 2"))


# ----------------------------------------------------------------------------- HTTP fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(ict(2023, 11, 28, 9))


@pytest.fixture
def web_settings_for_tests() -> WebSettings:
    return WebSettings(secret_key="test-secret-key", max_upload_mb=1, secure_cookies=False, invite_hours=72)


@dataclass
class Template:
    """A prepared campaign as rows and blobs: built once per process, copied into each test's store."""

    rows: dict[str, list[dict]]
    blobs: dict[str, bytes]
    files: dict[str, int]


_template: list[Template] = []


def capture(store: Store, campaign: WebCampaign) -> Template:
    with store.engine.connect() as conn:
        rows = {t.name: [dict(r._mapping) for r in conn.execute(t.select())] for t in Base.metadata.sorted_tables}
    blobs = {p.name: p.read_bytes() for p in store.blobs.root.rglob("*") if p.is_file()}
    return Template(rows, blobs, dict(campaign.files))


def restore(store: Store, template: Template) -> WebCampaign:
    """Insert the template's rows in dependency order (ids kept); PostgreSQL sequences moved past them."""
    with store.engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            if template.rows[table.name]:
                conn.execute(table.insert(), template.rows[table.name])
        if store.dialect == "postgresql":
            for table in Base.metadata.sorted_tables:
                if "id" in table.c and isinstance(table.c.id.type, Integer) and template.rows[table.name]:
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), (SELECT max(id) FROM \"{table.name}\"))"
                    )
    for sha, data in template.blobs.items():
        path = store.blobs.path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return WebCampaign(store, plan_187(), files=dict(template.files))


@pytest.fixture
def campaign(store, tmp_path) -> WebCampaign:
    """The prepared campaign in this test's store (built through the real import path once, then copied)."""
    if not _template:
        built = setup_campaign(store, tmp_path / "org")
        _template.append(capture(store, built))
        return built
    return restore(store, _template[0])


@pytest.fixture
def app(store, campaign, clock, web_settings_for_tests):
    app = create_app(store, web_settings_for_tests, clock=clock, refresh_seconds=1, status_check_seconds=0)
    app.state.web.status.add_plan(CAMPAIGN, campaign.plan)
    return app


def session_for(app, store: Store, email: str) -> tuple[str, str]:
    """(cookie value, CSRF token) of a fresh session for ``email``, without the log-in form."""
    with store.uow() as uow:
        user = find_user(uow, email)
        session = new_session(user.id, password_fingerprint(user.password_hash))
    codec = app.state.web.codec
    return codec.dumps(session), codec.csrf_token(session)


class Client(TestClient):
    csrf: str = ""


@pytest.fixture
def client_as(app, store):
    """``client_as(email)``: a TestClient with that person's session; ``.csrf`` holds the form token."""
    clients = []

    def make(email: str | None = None) -> Client:
        client = Client(app, follow_redirects=False)
        if email is not None:
            cookie, csrf = session_for(app, store, email)
            client.cookies.set(SESSION_COOKIE, cookie)
            client.csrf = csrf
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# ----------------------------------------------------------------------------- browser fixtures

# pytest-playwright keeps Playwright (and the browser) for the whole session, and Playwright's sync
# API leaves its event loop as the thread's running loop while it lives: on the worker that ran the
# browser tests, every later asyncio.run() failed ("cannot be called from a running event loop").
# Per module instead: stopped as the worker leaves each browser module (a start costs ~0.5 s).


@pytest.fixture(scope="module")
def playwright(_pw_api_request_contexts):
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    pw = sync_playwright().start()
    if _pw_api_request_contexts:
        _pw_api_request_contexts.instrument(pw)
    yield pw
    pw.stop()


@pytest.fixture(scope="module")
def browser_type(playwright, browser_name):
    return getattr(playwright, browser_name)


@pytest.fixture(scope="module")
def launch_browser(browser_type_launch_args, browser_type, connect_options):
    def launch(**kwargs):
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="module")
def browser_context_args(playwright, device, base_url):
    return {**(playwright.devices[device] if device else {}), **({"base_url": base_url} if base_url else {})}


@pytest.fixture(scope="module")
def browser(launch_browser):
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: browser tests skipped (apt-get install chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(message + " — KIEMDIEM_REQUIRE_BROWSER=1 requires it")
        pytest.skip(message)
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    store: Store
    campaign: WebCampaign
    clock: FakeClock
    app: object


@pytest.fixture
def live_server(tmp_path, monkeypatch):
    """The app under a real uvicorn server on a free loopback port, on a SQLite store."""
    monkeypatch.setenv("KIEMDIEM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KIEMDIEM_DATABASE_URL", raising=False)
    store = open_store(StoreSettings(home=tmp_path / "home", database_url=None))
    campaign = setup_campaign(store, tmp_path / "org")
    clock = FakeClock(ict(2023, 11, 28, 9))
    app = create_app(store, WebSettings(secret_key="browser-secret", max_upload_mb=1), clock=clock, refresh_seconds=1)
    app.state.web.status.add_plan(CAMPAIGN, campaign.plan)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield LiveServer(f"http://127.0.0.1:{port}", store, campaign, clock, app)
    server.should_exit = True
    thread.join(timeout=10)
    store.dispose()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
