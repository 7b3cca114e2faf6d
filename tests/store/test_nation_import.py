"""The streaming organization import on PostgreSQL (``kiemdiem.store.bulk_import``).

A nation's member file is streamed a chunk at a time, COPYed into a TEMP stage, checked in SQL
and merged set-based. These tests run it on a generated Đảng bộ Khối (~5,000 members) with
small chunks, so that bad rows fall at the start, in the middle and at the end of a file of
many chunks, and compare what it stores with the in-memory path (``streaming=False``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from kiemdiem.errors import InvalidInput
from kiemdiem.store.bulk_import import import_organization_streaming
from kiemdiem.store.organization import import_organization
from kiemdiem.synth import MEMBER_COLUMNS, UNIT_COLUMNS, generate
from kiemdiem.tabular import NOT_UTF8
from tests.store.test_org_import import NOW, campaign  # noqa: F401  (fixture)
from tests.support import table_counts

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

CHUNK = 500  # rows per chunk: a khoi member file is ~10 chunks


@pytest.fixture(scope="module")
def khoi(tmp_path_factory) -> tuple[list[list[str]], list[list[str]]]:
    """The khoi preset's rows (header excluded): units and members, as lists of cells."""
    files = generate("khoi", 11, tmp_path_factory.mktemp("khoi"))
    return read_csv(files.units), read_csv(files.members)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))[1:]


def write_org(directory: Path, units: list[list[str]], members: list[list[str]]) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "units.csv", directory / "members.csv"
    for path, header, rows in ((paths[0], UNIT_COLUMNS, units), (paths[1], MEMBER_COLUMNS, members)):
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    return paths


def stream(store, units: Path, members: Path | None, **options):
    with store.uow() as uow:
        report = import_organization_streaming(uow, "c187", units, members, NOW, chunk_rows=options.pop("chunk_rows", CHUNK), **options)
        uow.commit()
    return report


def in_memory(store, units: Path, members: Path | None):
    with store.uow() as uow:
        report = import_organization(uow, "c187", units, members, NOW, streaming=False)
        uow.commit()
    return report


def contents(store) -> tuple[list, list]:
    """Every stored unit and member, ids included, JSON compared as values."""
    with store.engine.connect() as conn:
        units = conn.execute(
            text("SELECT id, campaign_id, code, name, kind, parent_id, path, depth, emails::jsonb FROM units ORDER BY id")
        ).all()
        members = conn.execute(
            text(
                "SELECT id, campaign_id, member_code, full_name, unit_id, email, joined_on, status, temporary_unit_id,"
                " positions::jsonb FROM members ORDER BY id"
            )
        ).all()
    return units, members


def forget_org(store) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("TRUNCATE members, units RESTART IDENTITY CASCADE"))
        conn.execute(text("DELETE FROM event_log WHERE action = 'org.imported'"))


def changed_org(units: list[list[str]], members: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """A second version of the files: a base organization moved (its branches left out of the
    file, so they are kept and re-pathed), a unit renamed with new emails, a new branch; members
    moved, renamed, re-statused, with new positions, some left out, some new."""
    units = [list(u) for u in units]
    members = [list(m) for m in members]
    code, _name, kind, parent, _emails = range(5)
    children: dict[str, list[str]] = {}
    for u in units:
        children.setdefault(u[parent], []).append(u[code])
    movable = next(u for u in units if u[kind] == "dang_bo_co_so" and len(children.get(u[code], [])) >= 2)
    target = next(u for u in units if u[kind] == "dang_bo_co_so" and u[code] != movable[code] and u[parent] == movable[parent])
    movable[parent] = target[code]
    left_out = set(children[movable[code]])
    units = [u for u in units if u[code] not in left_out]
    renamed = next(u for u in units if u[kind] == "chi_bo_truc_thuoc")
    renamed[1] = renamed[1] + " (đổi tên)"
    renamed[4] = "moi@khoi.example.vn;bithu.moi@khoi.example.vn"
    units.append(["NEW-CB", "Chi bộ mới", "chi_bo_truc_thuoc", target[code], ""])
    branches = [u[code] for u in units if u[kind] in ("chi_bo_co_so", "chi_bo_truc_thuoc")]
    for index in range(0, len(members), 97):
        members[index][2] = branches[index % len(branches)]  # moved
        members[index][6] = ""
    for index in range(5, len(members), 131):
        members[index][1] = members[index][1] + " Mới"
        members[index][5] = "exempt"
        members[index][7] = "chi_uy_vien;pho_bi_thu"
    members = [m for i, m in enumerate(members) if i % 251 != 7]  # left out: kept
    members += [[f"DVN{i:04d}", f"Người Mới {i}", "NEW-CB", "", "01/02/2020", "probationary", "", ""] for i in range(20)]
    return units, members


def test_streaming_stores_what_the_in_memory_path_stores(store, campaign, khoi, tmp_path):
    units, members = write_org(tmp_path / "v1", *khoi)
    reference = in_memory(store, units, members)
    expected = contents(store)
    forget_org(store)
    report = stream(store, units, members)
    assert report == reference and report.members_added == len(khoi[1]) > 4000
    assert contents(store) == expected


def test_streaming_reimport_of_changed_files_matches_the_in_memory_path(store, campaign, khoi, tmp_path):
    units, members = write_org(tmp_path / "v1", *khoi)
    units2, members2 = write_org(tmp_path / "v2", *changed_org(*khoi))
    in_memory(store, units, members)
    reference = in_memory(store, units2, members2)
    expected = contents(store)
    forget_org(store)
    stream(store, units, members)
    report = stream(store, units2, members2)
    assert report == reference
    assert (report.units_added, report.members_added) == (1, 20) and report.units_updated >= 2 and report.members_updated > 50
    assert contents(store) == expected
    stored_units, stored_members = expected
    assert len(stored_units) == len(khoi[0]) + 1 and len(stored_members) == len(khoi[1]) + 20  # nothing absent was dropped
    assert not stream(store, units2, members2).changed


def test_cells_copy_would_misread_are_stored_as_written(store, campaign, khoi, tmp_path):
    members = [list(m) for m in khoi[1][:50]]
    odd = ["Tab\there", "Back\\slash", "New\nline", "\\N", "Ngô\\Thị\tHà"]
    for member, name in zip(members, odd):
        member[1] = name
    units, members_path = write_org(tmp_path, khoi[0], members)
    reference = in_memory(store, units, members_path)
    expected = contents(store)
    assert {m[3] for m in expected[1]} >= set(odd)
    forget_org(store)
    assert stream(store, units, members_path) == reference
    assert contents(store) == expected


def test_reimport_of_the_same_files_changes_nothing(store, campaign, khoi, tmp_path):
    units, members = write_org(tmp_path, *khoi)
    stream(store, units, members)
    before, counts = contents(store), table_counts(store)
    report = stream(store, units, members)
    assert not report.changed
    assert contents(store) == before and table_counts(store) == counts


BAD_CELLS = [  # (column index, bad text, field, reason)
    (4, "31/02/2001", "joined_on", "ngày không hợp lệ '31/02/2001'"),
    (5, "nghi_huu", "status", "trạng thái không hợp lệ 'nghi_huu'"),
    (1, "", "full_name", "thiếu họ và tên"),
    (3, "a@@b", "email", "email không hợp lệ 'a@@b'"),
    (7, "tong_bi_thu", "positions", "chức vụ không hợp lệ 'tong_bi_thu'"),
    (0, "bad id", "member_id", "mã đảng viên không hợp lệ 'bad id'"),
]


@pytest.mark.parametrize("where", ["start", "middle", "end"])
@pytest.mark.parametrize("column, bad, field, reason", BAD_CELLS, ids=[b[2] for b in BAD_CELLS])
def test_a_malformed_member_row_is_named_and_nothing_changes(store, campaign, khoi, tmp_path, where, column, bad, field, reason):
    units, members = write_org(tmp_path / "good", *khoi)
    stream(store, units, members)
    before, counts = contents(store), table_counts(store)
    units2, members2 = changed_org(*khoi)  # valid changes everywhere else: none may be stored
    index = {"start": 0, "middle": len(members2) // 2, "end": len(members2) - 1}[where]
    members2[index][column] = bad
    units2, members2 = write_org(tmp_path / "bad", units2, members2)
    with pytest.raises(InvalidInput) as info:
        stream(store, units2, members2)
    assert [(p.source, p.row, p.field) for p in info.value.problems] == [(str(members2), index + 2, field)]
    assert reason in info.value.problems[0].reason
    assert contents(store) == before and table_counts(store) == counts


def test_bad_rows_at_start_middle_and_end_are_all_reported_in_file_order(store, campaign, khoi, tmp_path):
    units, members = list(khoi[0]), [list(m) for m in khoi[1]]
    last = len(members) - 1
    members[0][4] = "99/99/1999"
    members[last // 2][5] = "?"
    members[last // 2][1] = ""
    members[last][7] = "vua"
    units, members = write_org(tmp_path, units, members)
    with pytest.raises(InvalidInput) as info:
        stream(store, units, members)
    assert [(p.row, p.field) for p in info.value.problems] == [
        (2, "joined_on"), (last // 2 + 2, "full_name"), (last // 2 + 2, "status"), (last + 2, "positions"),
    ]
    assert table_counts(store)["members"] == table_counts(store)["units"] == 0


def test_duplicates_and_unknown_units_are_reported_with_their_rows(store, campaign, khoi, tmp_path):
    units, members = list(khoi[0]), [list(m) for m in khoi[1]]
    kinds = {u[0]: u[2] for u in units}
    base = next(code for code, kind in kinds.items() if kind == "dang_bo_co_so")
    n = len(members)
    middle = n // 2
    first = list(members[3])
    members[middle][2] = "KHONG-CO"  # unknown branch
    members[middle + 1][2] = base  # not a branch
    members[middle + 2][6] = "KHONG-CO"  # unknown temporary branch
    members[middle + 3][6] = members[middle + 3][2]  # temporary = own branch
    members[middle + 4][6] = base  # temporary on a non-branch
    members.append(first)  # the id of row 5, again at the end (another chunk)
    members.append(first)
    units_path, members_path = write_org(tmp_path, units, members)
    with pytest.raises(InvalidInput) as info:
        stream(store, units_path, members_path)
    problems = info.value.problems
    assert [(p.source, p.row, p.field) for p in problems] == [
        (str(members_path), middle + 2, "unit"),
        (str(members_path), middle + 3, "unit"),
        (str(members_path), middle + 4, "temporary_unit"),
        (str(members_path), middle + 5, "temporary_unit"),
        (str(members_path), middle + 6, "temporary_unit"),
        (str(members_path), n + 2, "member_id"),
        (str(members_path), n + 3, "member_id"),
    ]
    assert problems[0].reason == "chi bộ 'KHONG-CO' không tồn tại"
    assert "không phải chi bộ" in problems[1].reason
    assert problems[2].reason == "chi bộ sinh hoạt tạm thời 'KHONG-CO' không tồn tại"
    assert problems[3].reason == "chi bộ sinh hoạt tạm thời trùng chi bộ chính thức"
    assert problems[4].reason == f"'{base}' không phải chi bộ"
    assert problems[5].reason == problems[6].reason == f"đảng viên '{first[0]}' bị lặp (đã có ở dòng 5)"
    assert table_counts(store)["members"] == 0


def test_unit_problems_and_member_problems_together(store, campaign, khoi, tmp_path):
    units, members = [list(u) for u in khoi[0]], [list(m) for m in khoi[1]]
    parents = {u[3] for u in units}
    index = next(i for i, u in enumerate(units) if u[2] == "chi_bo_truc_thuoc" and u[0] not in parents)
    refused = units[index][0]
    units[index][2] = "chi_bo_la"  # that unit is refused, so its members' branch does not exist
    twice = units[1 if index != 1 else 2][0]
    units.append([twice, "Trùng mã", "chi_bo_truc_thuoc", units[0][0], ""])
    on_refused = [i for i, m in enumerate(members) if m[2] == refused]
    temporarily = [i for i, m in enumerate(members) if m[6] == refused]
    units_path, members_path = write_org(tmp_path, units, members)
    with pytest.raises(InvalidInput) as info:
        stream(store, units_path, members_path)
    found = [(Path(p.source).name, p.row, p.field) for p in info.value.problems]
    assert found == [("units.csv", index + 2, "kind"), ("units.csv", len(units) + 1, "code")] + sorted(
        [("members.csv", i + 2, "unit") for i in on_refused] + [("members.csv", i + 2, "temporary_unit") for i in temporarily],
        key=lambda f: f[1],
    )
    assert on_refused and table_counts(store)["units"] == 0


def test_file_level_problems_of_the_member_file(store, campaign, khoi, tmp_path):
    units, members = write_org(tmp_path / "ok", *khoi)
    stream(store, units, members)
    before = contents(store)
    missing = tmp_path / "missing.csv"
    missing.write_text("member_id,full_name\nDV1,A\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        stream(store, units, missing)
    assert [(p.row, p.field) for p in info.value.problems] == [(1, "unit")]
    latin = tmp_path / "latin.csv"
    data = members.read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 1
    latin.write_bytes(data[:cut] + "DV9,Ngô,CB\n".encode("cp1258") + data[cut:])
    with pytest.raises(InvalidInput) as info:
        stream(store, units, latin)
    assert [p.reason for p in info.value.problems] == [NOT_UTF8]
    assert info.value.problems[0].row > 2
    assert contents(store) == before


def test_the_problem_list_is_bounded(store, campaign, khoi, tmp_path):
    units, members = list(khoi[0]), [list(m) for m in khoi[1]]
    for index in range(0, len(members), 10):
        members[index][5] = "?"
    units, members = write_org(tmp_path, units, members)
    with pytest.raises(InvalidInput) as info:
        stream(store, units, members, max_problems=25)
    problems = info.value.problems
    assert [p.row for p in problems[:25]] == list(range(2, 252, 10))
    assert len(problems) == 26 and problems[-1].row is None and "chỉ liệt kê 25 lỗi đầu tiên" in problems[-1].reason


def test_xlsx_and_in_memory_bytes_stream_too(store, campaign, tmp_path):
    import openpyxl  # noqa: PLC0415

    book = openpyxl.Workbook()
    book.active.append(["Mã đơn vị", "Tên đơn vị", "Loại", "Đơn vị cấp trên", "Email"])
    book.active.append(["SCT", "Đảng bộ Sở Công Thương", "Đảng bộ cơ sở", None, "vp@sct.example.vn"])
    book.active.append(["VP1", "Chi bộ Văn phòng 1", "Chi bộ trực thuộc", "SCT", None])
    units = tmp_path / "don_vi.xlsx"
    book.save(units)
    members = io.BytesIO("member_id,full_name,unit,joined_on\nDV1,Nguyễn Văn A,VP1,12/05/1995\n".encode("utf-8-sig"))
    with store.uow() as uow:
        report = import_organization_streaming(uow, "c187", units, Path("dang_vien.csv"), NOW, members_data=members.getvalue())
        uow.commit()
    assert (report.units_added, report.members_added) == (2, 1)


def test_cli_import_on_postgres_streams_and_refuses_a_bad_last_row(store_env, store, khoi, tmp_path):
    from deployments.cli import app  # noqa: PLC0415
    from tests.support import PLANS  # noqa: PLC0415

    runner = CliRunner()
    assert runner.invoke(app, ["campaign", "create", str(PLANS / "187-KH-DU-2023.yaml"), "--id", "c187"]).exit_code == 0
    members = [list(m) for m in khoi[1]]
    members[-1][4] = "30/02/2020"
    units_path, members_path = write_org(tmp_path, khoi[0], members)
    before = table_counts(store)
    result = runner.invoke(app, ["org", "import", "--campaign", "c187", "--units", str(units_path), "--members", str(members_path)])
    assert result.exit_code == 2
    output = "".join(result.output.split())  # the console wraps long lines, even inside the file's path
    expected = f"members.csv, dòng {len(members) + 1}, cột 'joined_on': ngày không hợp lệ '30/02/2020'"
    assert "".join(expected.split()) in output
    assert table_counts(store) == before
    units_path, members_path = write_org(tmp_path / "ok", *khoi)
    result = runner.invoke(app, ["org", "import", "--campaign", "c187", "--units", str(units_path), "--members", str(members_path)])
    assert result.exit_code == 0 and f"thêm {len(khoi[1])}" in result.output
