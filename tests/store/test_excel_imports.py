"""Import files as offices and programs make them, end to end on SQLite (files read whole) and
PostgreSQL (files streamed): a CSV with a double quote never closed, a workbook whose used-range
tag stops early, a branch code Excel stripped of its leading zeros."""

from __future__ import annotations


import pytest

from kiemdiem.errors import InvalidInput
from kiemdiem.store.organization import create_campaign, import_organization
from tests.core.test_excel_files import members_workbook, with_dimension, xlsx_bytes
from tests.store.test_cli import campaign, run  # noqa: F401  (campaign: a fixture)
from tests.support import ict, table_counts, write_small_org


def members_with_unclosed_quote(tmp_path, rows: int = 3000):
    """A members file whose name cell on line 5 opens a double quote it never closes: the rest of
    the file (over 131,072 characters) runs into that one cell."""
    lines = ["member_id,full_name,unit,email,joined_on,status,temporary_unit,positions"]
    for n in range(1, rows + 1):
        name = f'"Nguyễn Văn {n}' if n == 4 else f"Nguyễn Văn Một Hai Ba Bốn Năm {n}"
        lines.append(f"DV{n:05d},{name},VP1,dv{n}@sct.example.vn,12/05/1995,active,,")
    path = tmp_path / "dang_vien.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.stat().st_size > 140_000
    return path


def test_a_csv_quote_never_closed_is_refused_by_the_cli_with_its_line(campaign, store, tmp_path, monkeypatch):
    import kiemdiem.cli as cli  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415

    monkeypatch.setattr(cli, "err_console", Console(stderr=True, width=1000))  # a long temporary path is not folded mid-name
    units, _ = write_small_org(tmp_path / "org2")
    members = members_with_unclosed_quote(tmp_path)
    before = table_counts(store)
    result = run("org", "import", "--campaign", "c187", "--units", str(units), "--members", str(members))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    output = " ".join(result.output.split())  # the console wraps long lines
    assert 'dấu ngoặc kép (") mở mà không đóng' in output
    assert "dang_vien.csv, dòng 5:" in output
    assert table_counts(store) == before


def test_a_results_csv_quote_never_closed_names_the_line(tmp_path):
    from kiemdiem.results import parse_member_results  # noqa: PLC0415

    path = tmp_path / "ds.csv"
    path.write_text("Mã đảng viên,Họ và tên,Xếp loại\nDV1,An,HTTNV\nDV2,\"Bình,HTTNV\n" + "DV3,Chi,HTTNV\n" * 20000, encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        parse_member_results(path, "CB1")
    [problem] = info.value.problems
    assert problem.row == 3 and 'dấu ngoặc kép (") mở mà không đóng' in problem.reason


def _dimension_members(tmp_path):
    path = tmp_path / "dang_vien.xlsx"
    path.write_bytes(with_dimension(xlsx_bytes(members_workbook("Chi bộ", "VP1")), "A1:H50"))
    return path


def test_every_member_of_a_workbook_with_a_wrong_used_range_is_imported(store, plan_187, tmp_path):
    units, _ = write_small_org(tmp_path / "org")
    members = _dimension_members(tmp_path)
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", ict(2023, 11, 20, 8))
        report = import_organization(uow, "c187", units, members, ict(2023, 11, 20, 8))
        uow.commit()
    assert report.members_added == 148


def test_a_branch_code_that_lost_its_zero_is_told_the_code(store, plan_187, tmp_path):
    units, members = write_small_org(
        tmp_path / "org",
        units="code,name,kind,parent,emails\nSCT,Đảng bộ Sở,dang_bo_co_so,,\n01,Chi bộ 1,chi_bo_truc_thuoc,SCT,\n",
        members="member_id,full_name,unit\nDV1,Nguyễn Văn A,1\n",
    )
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", ict(2023, 11, 20, 8))
        with pytest.raises(InvalidInput) as info:
            import_organization(uow, "c187", units, members, ict(2023, 11, 20, 8))
    [problem] = info.value.problems
    assert problem.reason == "chi bộ '1' không tồn tại (có phải 01? Excel có thể đã bỏ các số 0 đầu)"


def test_a_short_csv_whose_quote_never_closes_is_refused_not_folded_into_one_cell(tmp_path):
    """Under the parser's field limit the rest of the file went, without a word, into one cell:
    the rows after the quote were lost."""
    from kiemdiem.results import parse_member_results  # noqa: PLC0415

    path = tmp_path / "ds.csv"
    path.write_text("Mã đảng viên,Họ và tên,Chi bộ đề xuất\nDV1,An,HTTNV\nDV2,\"Bình,HTTNV\nDV3,Chi,HTTNV\nDV4,Dũng,HTXSNV\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        parse_member_results(path, "CB1")
    [problem] = info.value.problems
    assert problem.row == 3 and 'dấu ngoặc kép (") mở mà không đóng' in problem.reason
