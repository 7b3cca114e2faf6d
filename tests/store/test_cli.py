"""The command line end to end, in-process, on SQLite and PostgreSQL: exit codes, messages, stored data."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deployments.cli import app
from kiemdiem.store.db import open_store
from tests.support import PLANS, table_counts, write_small_org

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def campaign(store_env, store, tmp_path):
    units, members = write_small_org(tmp_path / "org")
    assert run("campaign", "create", str(PLANS / "187-KH-DU-2023.yaml"), "--id", "c187").exit_code == 0
    result = run("org", "import", "--campaign", "c187", "--units", str(units), "--members", str(members))
    assert result.exit_code == 0, result.output
    assert "thêm 4" in result.output and "thêm 7" in result.output
    return "c187"


def test_plan_check_prints_exact_deadlines():
    result = run("plan", "check", str(PLANS / "187-KH-DU-2023.yaml"))
    assert result.exit_code == 0
    for day in ("05/12/2023 23:59:59", "10/12/2023 23:59:59", "28/12/2023 23:59:59", "31/12/2023 23:59:59"):
        assert day in result.output
    assert "được hiểu là" in result.output


def test_plan_check_json_and_bad_plan(tmp_path):
    ok = run("plan", "check", str(PLANS / "897-CV-DUK-2021.yaml"), "--json")
    data = json.loads(ok.output)
    assert data["ok"] and any(p["deadline"] == "2021-11-25T23:59:59+07:00" for p in data["plan"]["phases"])
    bad = tmp_path / "bad.yaml"
    bad.write_text((PLANS / "897-CV-DUK-2021.yaml").read_text(encoding="utf-8").replace("rule_set:", "rule_sets:"), encoding="utf-8")
    refused = run("plan", "check", str(bad), "--json")
    assert refused.exit_code == 2
    errors = json.loads(refused.output)["errors"]
    assert {"rule_sets", "rule_set"} <= {e["field"] for e in errors}


def test_campaign_create_with_bad_plan_changes_nothing(store_env, store, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((PLANS / "187-KH-DU-2023.yaml").read_text(encoding="utf-8").replace('date: "05/12/2023"', 'date: "31/11/2023"'), encoding="utf-8")
    before = table_counts(store)
    result = run("campaign", "create", str(bad))
    assert result.exit_code == 2
    assert "31/11/2023" in result.output and "deadline" in result.output
    assert table_counts(store) == before


def test_import_error_exit_code_and_message(campaign, store, tmp_path):
    units, members = write_small_org(tmp_path / "bad", members="member_id,full_name,unit\nDV900,Ngô Văn A,SCT\n")
    before = table_counts(store)
    result = run("org", "import", "--campaign", "c187", "--units", str(units), "--members", str(members))
    assert result.exit_code == 2
    assert "dòng 2" in result.output and "'unit'" in result.output and "không phải chi bộ" in result.output
    assert table_counts(store) == before


def test_a_file_with_thousands_of_bad_rows_prints_the_first_and_writes_them_all_to_a_csv(campaign, store, tmp_path, monkeypatch):
    """A members file whose unit column is shifted printed one line per bad row (6,001 lines for
    3,000 rows); the first 50 are printed, and every one is in a CSV the office opens in Excel."""
    import csv

    rows = "".join(f"DV{i:04d},Ngô Văn {i},KHONG-CO\n" for i in range(1, 3001))
    units, members = write_small_org(tmp_path / "bad", members="member_id,full_name,unit\n" + rows)
    before = table_counts(store)
    monkeypatch.chdir(tmp_path)
    result = run("org", "import", "--campaign", "c187", "--units", str(units), "--members", str(members))
    assert result.exit_code == 2 and table_counts(store) == before
    assert "3000 vấn đề, không có gì được lưu" in result.output
    assert result.output.count("  • ") == 50 and "dòng 51," in result.output and "dòng 52," not in result.output
    assert "… và 2950 vấn đề khác; đủ 3000 vấn đề ở tệp" in result.output
    [written] = tmp_path.glob("kiemdiem-loi-*.csv")
    assert str(written.resolve()) in result.output.replace("\n", "")
    with written.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["Tệp", "Dòng", "Cột", "Lý do"] and len(table) == 3001
    assert [row[1] for row in table[1:]] == [str(n) for n in range(2, 3002)]
    assert all(row[0] == str(members) and row[2] == "unit" and "KHONG-CO" in row[3] for row in table[1:])


def test_a_short_list_of_problems_is_printed_whole_and_writes_no_file(campaign, store, tmp_path, monkeypatch):
    units, members = write_small_org(tmp_path / "bad", members="member_id,full_name,unit\nDV900,Ngô Văn A,KHONG-CO\n")
    monkeypatch.chdir(tmp_path)
    result = run("org", "import", "--campaign", "c187", "--units", str(units), "--members", str(members))
    assert result.exit_code == 2 and "1 vấn đề" in result.output and "vấn đề khác" not in result.output
    assert not list(tmp_path.glob("kiemdiem-loi-*.csv"))


def test_import_unknown_campaign(store_env, store, tmp_path):
    units, members = write_small_org(tmp_path / "org")
    result = run("org", "import", "--campaign", "nope", "--units", str(units), "--members", str(members))
    assert result.exit_code == 3 and "không có đợt kiểm điểm 'nope'" in result.output


def test_submit_status_and_json(campaign, tmp_path):
    pdf = tmp_path / "bien_ban.pdf"
    pdf.write_bytes(b"%PDF-1.4 minutes")
    result = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "bien_ban_hoi_nghi", str(pdf), "--at", "04/12/2023 10:00")
    assert result.exit_code == 0 and "đúng hạn" in result.output
    again = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "bien_ban_hoi_nghi", str(pdf), "--at", "2023-12-04T11:00")
    assert again.exit_code == 0 and "Không thay đổi" in again.output
    late = run("submit", "--campaign", "c187", "--unit", "VP2", "--doc", "bien_ban_hoi_nghi", str(pdf), "--at", "06/12/2023 08:00")
    assert "trễ hạn" in late.output
    status = run("status", "--campaign", "c187", "--unit", "VP2", "--at", "07/12/2023 09:00", "--json")
    data = json.loads(status.output)
    assert [u["code"] for u in data["units"]] == ["VP2"]
    meeting = next(p for p in data["units"][0]["phases"] if p["phase"] == "chi_bo_kiem_diem")
    assert meeting["state"] == "overdue" and meeting["late"] == 1
    assert {"Lê Xuân Tiến", "Phạm Minh Đức"} <= {m["member_name"] for m in meeting["missing"]}
    table = run("status", "--campaign", "c187", "--at", "07/12/2023 09:00")
    assert table.exit_code == 0 and "Quá hạn" in table.output


def test_status_of_the_whole_tree_is_written_in_blocks(campaign, monkeypatch):
    import kiemdiem.cli as cli  # noqa: PLC0415

    whole = json.loads(run("status", "--campaign", "c187", "--at", "07/12/2023 09:00", "--json").output)
    codes = [u["code"] for u in whole["units"]]
    assert len(codes) > 3 and sum(whole["counts"].values()) == sum(len(u["phases"]) for u in whole["units"])
    monkeypatch.setattr(cli, "STATUS_TABLE_UNITS", 2)
    table = run("status", "--campaign", "c187", "--at", "07/12/2023 09:00")
    assert table.exit_code == 0
    assert table.output.count("Giai đoạn") == -(-len(codes) // 2)  # one header per block of two units
    assert [code for code in codes if code in table.output] == codes



@pytest.mark.parametrize("width", [80, 140])
def test_status_prints_every_unit_code_whole_at_any_terminal_width(store_env, store, tmp_path, monkeypatch, width):
    """Staff search the table for a code and type it back: an 80-column terminal cut "SCT-CB01"
    to "SCT-C…"."""
    import kiemdiem.cli as cli  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415
    from tests.support import SMALL_MEMBERS, SMALL_UNITS  # noqa: PLC0415

    long_codes = {"VP1": "SCT-VANPHONG-CB01", "VP2": "SCT-VANPHONG-CB02", "KC": "SCT-KHUYENCONG-CB03"}
    units, members = SMALL_UNITS, SMALL_MEMBERS
    for short, long in long_codes.items():
        units = units.replace(f"\n{short},", f"\n{long},")
        members = members.replace(f",{short},", f",{long},").replace(f",{short},\n", f",{long},\n")
    units_path, members_path = write_small_org(tmp_path / "org", units, members)
    assert run("campaign", "create", str(PLANS / "187-KH-DU-2023.yaml"), "--id", "c").exit_code == 0
    assert run("org", "import", "--campaign", "c", "--units", str(units_path), "--members", str(members_path)).exit_code == 0
    monkeypatch.setattr(cli, "console", Console(width=width))
    table = run("status", "--campaign", "c", "--at", "07/12/2023 09:00")
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert max(len(line) for line in lines) <= width
    for code in long_codes.values():
        assert any(code in line for line in lines), code
    assert "…" not in table.output.replace("… và", "")

BAD_SUBMITS = [
    (["--unit", "NOPE", "--doc", "bien_ban_hoi_nghi"], 3, "đơn vị không tồn tại"),
    (["--unit", "VP1", "--doc", "bien_ban_la"], 4, "không có trong danh mục"),
    (["--unit", "VP1", "--doc", "ban_kiem_diem_ca_nhan", "--member", "DV999"], 3, "đảng viên 'DV999' không sinh hoạt ở 'VP1'"),
    (["--unit", "VP1", "--doc", "bien_ban_hoi_nghi", "--phase", "khong_co"], 4, "giai đoạn không tồn tại"),
    (["--unit", "VP1", "--doc", "bien_ban_hoi_nghi", "--at", "32/12/2023"], 2, "--at"),
]


@pytest.mark.parametrize("args, code, reason", BAD_SUBMITS)
def test_bad_submit_exit_codes(campaign, store, tmp_path, args, code, reason):
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"%PDF x")
    before = table_counts(store)
    result = run("submit", "--campaign", "c187", *args, str(pdf))
    assert result.exit_code == code and reason in result.output
    assert table_counts(store) == before


SUBMITTED_LISTS = [
    ("bad level", "sai.csv", "Mã đảng viên,Chi bộ đề xuất\nDV001,Giỏi\n".encode(),
     "sai.csv, dòng 2, cột 'Chi bộ đề xuất': mức xếp loại không hợp lệ 'Giỏi'"),
    ("not a table", "danh_sach.pdf", b"%PDF-1.4", "không có tệp CSV hoặc XLSX"),
    ("old Excel", "danh_sach.xls", b"\xd0\xcf\x11\xe0", "lưu lại dạng .xlsx"),
]


@pytest.mark.parametrize("label, name, data, reason", SUBMITTED_LISTS, ids=[s[0] for s in SUBMITTED_LISTS])
def test_a_list_that_does_not_read_is_refused_by_submit(campaign, store, tmp_path, label, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    before = table_counts(store)
    result = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "tong_hop_xep_loai_dang_vien", str(path), "--at", "04/12/2023 10:00")
    assert result.exit_code == 2 and reason in " ".join(result.output.split())
    assert table_counts(store) == before


def test_submit_with_an_earlier_time_says_it_goes_into_the_history(campaign, store, tmp_path):
    first, second = tmp_path / "bb2.pdf", tmp_path / "bb1.pdf"
    first.write_bytes(b"%PDF v2")
    second.write_bytes(b"%PDF v1")
    assert run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "bien_ban_hoi_nghi", str(first), "--at", "06/12/2023 09:00").exit_code == 0
    backdated = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "bien_ban_hoi_nghi", str(second), "--at", "05/12/2023 16:00")
    text = " ".join(backdated.output.split())
    assert backdated.exit_code == 0 and "ghi vào lịch sử theo thời điểm nhận, lần nộp hiện hành vẫn là #1" in text and "thay thế" not in text
    again = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "bien_ban_hoi_nghi", str(second), "--at", "05/12/2023 16:00")
    assert again.exit_code == 0 and "Không thay đổi" in again.output


def test_an_empty_file_is_refused(campaign, store, tmp_path):
    empty = tmp_path / "bao_cao.pdf"
    empty.write_bytes(b"")
    before = table_counts(store)
    result = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "bien_ban_hoi_nghi", str(empty))
    assert result.exit_code == 4 and "rỗng (0 byte)" in result.output
    assert table_counts(store) == before


def test_submit_missing_file(campaign, store, tmp_path):
    before = table_counts(store)
    result = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "bien_ban_hoi_nghi", str(tmp_path / "missing.pdf"))
    assert result.exit_code == 2 and "không tìm thấy tệp" in result.output
    assert table_counts(store) == before


def test_gen_is_deterministic(tmp_path):
    a = run("gen", "--preset", "khoi", "--seed", "7", "--out", str(tmp_path / "a"))
    b = run("gen", "--preset", "khoi", "--seed", "7", "--out", str(tmp_path / "b"))
    assert a.exit_code == b.exit_code == 0
    assert (tmp_path / "a" / "members.csv").read_bytes() == (tmp_path / "b" / "members.csv").read_bytes()
    assert run("gen", "--preset", "lang", "--out", str(tmp_path / "c")).exit_code == 2


def test_generated_khoi_imports(store_env, store, tmp_path):
    run("gen", "--preset", "khoi", "--seed", "3", "--out", str(tmp_path / "g"))
    run("campaign", "create", str(PLANS / "KH-DUK-HT-2022.yaml"), "--id", "ht")
    result = run("org", "import", "--campaign", "ht", "--units", str(tmp_path / "g" / "units.csv"), "--members", str(tmp_path / "g" / "members.csv"))
    assert result.exit_code == 0, result.output
    counts = table_counts(open_store())
    assert counts["members"] >= 4000 and counts["units"] >= 300


def test_user_invite_says_the_email_waits_for_the_next_tick(campaign, store):
    from sqlalchemy import select  # noqa: PLC0415

    from kiemdiem.store.models import Outbox  # noqa: PLC0415

    result = run("user", "invite", "--campaign", "c187", "--unit", "VP1", "--email", "bithu.vp1@sct.example.vn", "--name", "Nguyễn Văn A")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "đã tạo người dùng mới" in text and "Thư đã vào hàng đợi; lượt xử lý kế tiếp" in text
    with store.uow() as uow:
        assert uow.session.scalars(select(Outbox.status).where(Outbox.kind == "invite")).all() == ["queued"]


def test_python_dash_m_kiemdiem_is_the_command():
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    done = subprocess.run([sys.executable, "-m", "kiemdiem", "plan", "check", str(PLANS / "187-KH-DU-2023.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Kế hoạch hợp lệ." in done.stdout


def test_serve_refuses_a_campaign_that_does_not_exist_or_has_another_plan(campaign):
    """Before starting anything: the hourly flows would otherwise fail at every run."""
    missing = run("serve", "--plan", str(PLANS / "187-KH-DU-2023.yaml"), "--campaign", "nope", "--no-web")
    assert missing.exit_code != 0 and "không có đợt kiểm điểm 'nope'" in " ".join(missing.output.split())
    other = run("serve", "--plan", str(PLANS / "KH-DUK-HT-2022.yaml"), "--campaign", "c187", "--no-web")
    assert other.exit_code != 0
    assert "đợt 'c187' được tạo từ kế hoạch '187-KH-DU-2023', không phải 'KH-DUK-HT-2022'" in " ".join(other.output.split())


def test_user_invite_at_a_replayed_moment_is_queued_then(campaign, store):
    from sqlalchemy import select  # noqa: PLC0415

    from kiemdiem.store.models import Outbox  # noqa: PLC0415
    from tests.support import ict  # noqa: PLC0415

    result = run("user", "invite", "--campaign", "c187", "--unit", "VP1", "--email", "bithu.vp1@sct.example.vn", "--name", "Nguyễn Văn A",
                 "--at", "21/11/2023 09:00")
    assert result.exit_code == 0, result.output
    assert "hết hạn lúc 24/11/2023 09:00" in " ".join(result.output.split())
    with store.uow() as uow:
        (not_before,) = uow.session.scalars(select(Outbox.not_before).where(Outbox.kind == "invite")).all()
    assert not_before == ict(2023, 11, 21, 9)


def test_submit_warns_when_the_file_was_already_filed_under_another_item(campaign, tmp_path):
    pdf = tmp_path / "tu_kiem_diem.pdf"
    pdf.write_bytes(b"%PDF-1.4 tu kiem diem")
    first = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "ban_kiem_diem_ca_nhan", "--member", "DV001", str(pdf),
                "--at", "01/12/2023 09:00")
    assert first.exit_code == 0 and "Lưu ý" not in first.output
    again = run("submit", "--campaign", "c187", "--unit", "VP1", "--doc", "ban_kiem_diem_ca_nhan", "--member", "DV002", str(pdf),
                "--at", "01/12/2023 09:05")
    text = " ".join(again.output.split())
    assert again.exit_code == 0 and "Lưu ý: tệp giống hệt tệp đã nộp cho Bản kiểm điểm cá nhân (đảng viên DV001, đơn vị VP1" in text


def test_an_invitation_made_out_of_office_hours_lasts_from_when_it_can_be_sent(campaign):
    """Mail leaves in office hours: made on Friday 18:00, sent Monday 07:30; its 72 h run from then."""
    result = run("user", "invite", "--campaign", "c187", "--unit", "VP1", "--email", "bithu.vp1@sct.example.vn", "--name", "Nguyễn Văn A",
                 "--at", "24/11/2023 18:00")
    assert result.exit_code == 0, result.output
    assert "hết hạn lúc 30/11/2023 07:30" in " ".join(result.output.split())
