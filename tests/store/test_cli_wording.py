"""The command line speaks to office staff: Vietnamese names before codes, Vietnamese help and
usage errors, a parent that is named, and a clear message when Prefect cannot start."""

from __future__ import annotations

import json

import pytest
import typer.main
from prefect.settings import (
    PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings,
)
from typer.testing import CliRunner

from deployments.cli import app
from kiemdiem.catalogue import DOCUMENTS
from tests.support import PLANS, write_small_org

runner = CliRunner()
PLAN_187 = PLANS / "187-KH-DU-2023.yaml"


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture
def campaign(store_env, store, tmp_path):
    units, members = write_small_org(tmp_path / "org")
    assert run("campaign", "create", str(PLAN_187), "--id", "c187").exit_code == 0
    assert run("org", "import", "--campaign", "c187", "--units", str(units), "--members", str(members)).exit_code == 0
    return "c187"


# --- status: the parent of a subtree's root --------------------------------------------------


def test_status_of_a_unit_names_its_parent(campaign):
    one = json.loads(run("status", "--campaign", "c187", "--unit", "VP2", "--at", "07/12/2023 09:00", "--json").output)
    assert [(u["code"], u["parent"], u["parent_name"]) for u in one["units"]] == [("VP2", "SCT", "Đảng bộ Sở Công Thương")]
    whole = json.loads(run("status", "--campaign", "c187", "--at", "07/12/2023 09:00", "--json").output)
    parents = {u["code"]: (u["parent"], u["parent_name"]) for u in whole["units"]}
    assert parents["SCT"] == (None, None)
    assert parents["VP2"] == parents["VP1"] == parents["KC"] == ("SCT", "Đảng bộ Sở Công Thương")
    table = flat(run("status", "--campaign", "c187", "--unit", "VP2", "--at", "07/12/2023 09:00").output)
    assert "cấp trên: Đảng bộ Sở Công Thương (SCT)" in table
    root = flat(run("status", "--campaign", "c187", "--unit", "SCT", "--at", "07/12/2023 09:00").output)
    assert "không có cấp trên" in root


# --- status: names, not codes ----------------------------------------------------------------


def test_status_shows_phase_and_document_names(campaign, monkeypatch):
    import kiemdiem.cli as cli  # noqa: PLC0415

    monkeypatch.setattr(cli.console, "width", 250)  # a wide terminal: each cell on one line
    result = run("status", "--campaign", "c187", "--unit", "VP2", "--at", "07/12/2023 09:00")
    text = flat(result.output)
    assert result.exit_code == 0
    assert "Chi bộ trực thuộc kiểm điểm, đánh giá, xếp loại" in text
    assert "Bản kiểm điểm cá nhân: Lê Xuân Tiến, Phạm Minh Đức" in text
    for code in ("chi_bo_kiem_diem", "chuan_bi_chi_bo", "ban_kiem_diem_ca_nhan", "bao_cao_kiem_diem_tap_the"):
        assert code not in result.output
    data = json.loads(run("status", "--campaign", "c187", "--unit", "VP2", "--at", "07/12/2023 09:00", "--json").output)
    meeting = next(p for p in data["units"][0]["phases"] if p["phase"] == "chi_bo_kiem_diem")  # codes kept for IT
    assert meeting["phase_name"].startswith("Chi bộ trực thuộc kiểm điểm") and meeting["state_name"] == "Quá hạn"
    assert data["units"][0]["kind_name"] == "Chi bộ trực thuộc"
    assert all(m["doc_name"] == DOCUMENTS[m["doc_type"]].name for m in meeting["missing"])


# --- plan check ------------------------------------------------------------------------------


def test_plan_check_speaks_vietnamese():
    result = run("plan", "check", str(PLANS / "KH-DUK-HT-2022.yaml"))
    text = flat(result.output)
    assert result.exit_code == 0
    for english in ("(prepare_reports)", "(branch_meeting)", "→ root", "(reviewed)", "Áp dụng cho: chi_bo", "bộ quy tắc 124/25"):
        assert english not in text
    assert "loại: Chuẩn bị báo cáo kiểm điểm" in text
    assert "Áp dụng cho: Chi bộ cơ sở, Chi bộ trực thuộc" in text
    assert "→ cấp ủy cao nhất của cây tổ chức đã nhập (đơn vị gốc)" in text
    assert "→ các địa chỉ thư: buixuandung@hatinh.dcs.vn" in text
    assert "Bản kiểm điểm cá nhân (mã ban_kiem_diem_ca_nhan) — từng đảng viên (đảng viên thuộc diện kiểm điểm)" in text
    assert "Kế hoạch ghi: Phiếu tự đánh giá, xếp loại chất lượng tổ chức đảng theo Mẫu 01 (Mục B.2.1, Bước 1)" in text  # the plan's note


# --- help and usage errors -------------------------------------------------------------------


ENGLISH_BOILERPLATE = ("Usage:", "Show this message and exit.", "Options", "Commands", "Arguments", "--install-completion", "[required]")


@pytest.mark.parametrize("command", [[], ["status"], ["tick"], ["plan", "check"], ["user", "add"], ["dossier"], ["consolidate"]])
def test_help_is_vietnamese(command):
    for flag in ("--help", "-h"):
        result = run(*command, flag)
        assert result.exit_code == 0
        for english in ENGLISH_BOILERPLATE:
            assert english not in result.output, (command, english)
        assert "Cách dùng:" in result.output and "In hướng dẫn này rồi thoát." in result.output


def test_every_command_and_option_has_a_vietnamese_help_text():
    """--at had none; --email, --seed, --out, --year, --json neither."""
    missing = []

    def walk(command, path):
        if getattr(command, "commands", None):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
            return
        if not command.help:
            missing.append(" ".join(path))
        missing.extend(f"{' '.join(path)} {param.opts}" for param in command.params if not param.help)

    walk(typer.main.get_command(app), ["kiemdiem"])
    assert missing == []
    at = flat(run("status", "-h").output)
    assert "dd/mm/yyyy HH:MM" in at and "2023-12-10T09:00" in at


def test_usage_errors_are_vietnamese():
    missing = run("status")
    assert missing.exit_code == 2 and "Thiếu tùy chọn '--campaign'" in missing.output
    unknown = run("status", "--campaign", "c", "--unti", "VP1")
    assert unknown.exit_code == 2 and "Không có tùy chọn --unti" in unknown.output and "--unit" in unknown.output
    bare = run("status", "--campaign")
    assert bare.exit_code == 2 and "Tùy chọn '--campaign' cần một giá trị." in bare.output
    extra = run("plan", "check", str(PLAN_187), "thua")
    assert extra.exit_code == 2 and "Thừa tham số: thua." in extra.output
    for text in (missing.output, unknown.output, bare.output, extra.output):
        assert "Usage:" not in text and "Missing" not in text and "No such" not in text


def test_errors_about_options_and_campaigns_read_as_such(store_env, store):
    """An option is not a "cột/trường" (a column of an import file); no campaign is not "đã có: chưa có"."""
    none = run("status", "--campaign", "c1")
    assert none.exit_code != 0
    assert "không có đợt kiểm điểm 'c1' (chưa có đợt nào; tạo bằng 'kiemdiem campaign create')" in flat(none.output)
    bad = run("status", "--campaign", "c1", "--at", "32/12/2023")
    assert bad.exit_code == 2 and "dòng lệnh, tùy chọn --at:" in flat(bad.output) and "cột/trường" not in bad.output


# --- Prefect's temporary server --------------------------------------------------------------


class FailingStart:
    """Prefect's temporary server as on a machine too slow to start it in time."""

    def __init__(self):
        self.timeouts = []

    def __call__(self, timeout=None):  # an attribute of the class, not a method: no ``self`` of the server
        self.timeouts.append(timeout)
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")


@pytest.fixture
def failing_start(monkeypatch):
    from prefect.server.api.server import SubprocessASGIServer  # noqa: PLC0415

    start = FailingStart()
    monkeypatch.setattr(SubprocessASGIServer, "start", start)
    return start


def test_a_temporary_server_that_does_not_start_is_told_in_vietnamese(campaign, failing_start):
    with temporary_settings(restore_defaults={PREFECT_API_URL}, updates={PREFECT_SERVER_EPHEMERAL_ENABLED: True}):
        result = runner.invoke(app, ["tick", "--campaign", "c187", "--at", "07/12/2023 09:00"])
    text = flat(result.output)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # not Prefect's RuntimeError
    assert "không khởi động được máy chủ Prefect tạm thời" in text
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in text and "PREFECT_API_URL" in text and "Chạy lại lệnh" in text
    assert "Traceback" not in result.output
    # Prefect's 20 s are too short for a first start on a slow machine: it is given longer.
    assert failing_start.timeouts and failing_start.timeouts[0] >= 120


def test_a_start_up_timeout_the_user_set_is_kept(campaign, failing_start):
    updates = {PREFECT_SERVER_EPHEMERAL_ENABLED: True, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 45}
    with temporary_settings(restore_defaults={PREFECT_API_URL}, updates=updates):
        result = runner.invoke(app, ["tick", "--campaign", "c187"])
    assert result.exit_code == 1 and failing_start.timeouts == [45]
    assert "đã chờ tối đa 45 giây" in flat(result.output)


def test_a_database_that_cannot_be_reached_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    """A wrong URL, a database not created, a server down: the command says so in one line, with
    the address (password hidden) and what to check, and exits 5."""
    monkeypatch.setenv("KIEMDIEM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KIEMDIEM_DATABASE_URL", "postgresql://kd:secret@127.0.0.1:1/kiemdiem")  # nothing listens on port 1
    result = run("status", "--campaign", "c187")
    assert result.exit_code == 5
    text = flat(result.output)
    assert "Lỗi: không kết nối được cơ sở dữ liệu postgresql+psycopg://kd:***@127.0.0.1:1/kiemdiem" in text
    assert "kiểm tra KIEMDIEM_DATABASE_URL" in text and "secret" not in text and "Traceback" not in text


def test_without_automatic_migrations_an_outdated_schema_is_refused_until_db_upgrade(tmp_path, monkeypatch):
    """Production (scripts/production.sh) migrates only in its upgrade, after a backup: any other
    command refuses a schema it does not expect instead of migrating it."""
    monkeypatch.setenv("KIEMDIEM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KIEMDIEM_DATABASE_URL", raising=False)
    monkeypatch.setenv("KIEMDIEM_AUTO_MIGRATE", "false")
    refused = run("status", "--campaign", "c187")
    assert refused.exit_code == 5
    assert "lược đồ cơ sở dữ liệu đang ở phiên bản trống, bản cài đặt này cần" in flat(refused.output)
    upgraded = run("db", "upgrade")
    assert upgraded.exit_code == 0 and "Lược đồ: trống →" in upgraded.output
    after = run("status", "--campaign", "c187")
    assert after.exit_code == 3 and "không có đợt kiểm điểm 'c187'" in flat(after.output)  # the schema is fine now


def test_a_file_store_that_cannot_be_written_is_one_line_and_nothing_is_stored(campaign, store, tmp_path):
    import hashlib

    document = tmp_path / "bien_ban.pdf"
    document.write_bytes(b"%PDF minutes of VP1")
    shard = store.blobs.path(hashlib.sha256(document.read_bytes()).hexdigest()).parent
    shard.parent.mkdir(parents=True, exist_ok=True)
    shard.write_bytes(b"")  # a file where the store's folder must go: as a full or read-only disk, the write fails
    result = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "bien_ban_hoi_nghi", str(document), "--at", "01/12/2023 09:00")
    assert result.exit_code == 5
    text = flat(result.output)
    assert text.startswith("Lỗi: không lưu được tệp vào kho tệp (") and "không có gì được lưu" in text and "Traceback" not in text
    from sqlalchemy import func, select

    from kiemdiem.store.models import Submission

    with store.uow() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Submission)) == 0


def test_a_tick_for_a_moment_before_the_last_one_is_refused_unless_asked(campaign, store):
    """Replaying a past moment really sends that moment's reminders: refused (before Prefect
    starts) with what to use instead, unless --replay says it is meant."""
    from kiemdiem.store.models import Notice, Unit
    from sqlalchemy import select
    from tests.support import ict

    with store.uow() as uow:
        unit_id = uow.session.scalar(select(Unit.id).where(Unit.code == "VP1"))
        uow.session.add(Notice(campaign_id="c187", recipient="vp1@sct.example.vn", recipient_name="VP1", kind="reminder", step=1,
                               item_key="VP1:chuan_bi_chi_bo:du_thao_bao_cao_kiem_diem:-", unit_id=unit_id, phase_id="chuan_bi_chi_bo",
                               doc_type="du_thao_bao_cao_kiem_diem", planned_at=ict(2023, 12, 5, 8)))
        uow.commit()
    result = runner.invoke(app, ["tick", "--campaign", "c187", "--at", "29/11/2023 08:00"])
    assert result.exit_code == 4
    text = flat(result.output)
    assert "thời điểm 29/11/2023 08:00 sớm hơn lượt xử lý đã chạy (05/12/2023 08:00)" in text and "--replay" in text


def test_the_tick_counts_the_consolidations_emails_and_names_a_look_back(capsys):
    """The diff emails a late result's consolidation queued are counted with the digests (the send
    count covers both), and a tick at a moment before the newest consolidation says why it stored
    nothing, in words, not by the internal mode's name."""
    from deployments.cli import print_tick  # noqa: PLC0415
    from kiemdiem.plan import load_plan  # noqa: PLC0415

    plan = load_plan(PLAN_187)
    result = {
        "now": "2023-12-12T10:00:00+07:00",
        "collected": {"accepted": 0, "unchanged": 0, "refused": []},
        "results": {"ingested": [1], "refused": []},
        "consolidated": {"mode": "incremental", "units_updated": ["KC", "SCT"], "outbox_ids": [41, 42]},
        "phases": {"dang_uy_bao_cao_khoi": {"consolidation": {"mode": "incremental", "units_updated": ["SCT"], "outbox_ids": [42]}}},
        "notices": {},
        "composed": {"digests": 7, "notices": 12},
        "sent": {"sent": 9},
    }
    print_tick(plan, "c187", result, {})
    out = flat(capsys.readouterr().out)
    # Results after the first consolidation are not all late: the deadline may not have passed.
    assert "Tổng hợp kết quả: tính lại phần có thay đổi do có kết quả mới sau lần tổng hợp trước (2 đơn vị cập nhật)." in out
    assert "soạn 7 thư nhắc hạn, chuyển cấp mới (gồm 12 thông báo) và 2 thư báo thay đổi kết quả tổng hợp" in out
    assert "gửi đi 9 thư" in out

    result["consolidated"] = {"mode": "as_of", "units_updated": [], "outbox_ids": []}
    result["phases"] = {}
    print_tick(plan, "c187", result, {})
    out = flat(capsys.readouterr().out)
    assert "Tổng hợp kết quả: không lưu phiên bản mới vì lượt này ở thời điểm trước lần tổng hợp gần nhất." in out
    assert "as_of" not in out and "thư báo thay đổi" not in out
