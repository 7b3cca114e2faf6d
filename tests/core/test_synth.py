"""Synthetic organizations: determinism, the sct preset of plan 187-KH/ĐU, structure and sizes."""

from __future__ import annotations

import csv
import datetime as dt
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from kiemdiem import synth
from kiemdiem.synth import BRANCH_KINDS, MEMBER_COLUMNS, POSITIONS, UNIT_COLUMNS, generate

KINDS = {"cap_tren_co_so", "dang_bo_co_so", "chi_bo_co_so", "dang_bo_bo_phan", "chi_bo_truc_thuoc"}
STATUSES = {"active", "probationary", "exempt", "suspended"}
SCT_BRANCHES = {"Chi bộ Văn phòng 1", "Chi bộ Văn phòng 2", "Chi bộ Khuyến công"}
SCT_PEOPLE = {"Nguyễn Sỹ Chín", "Lê Xuân Tiến", "Nguyễn Trọng Thức", "Trần Minh Cường"}


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def check_structure(files: synth.GeneratedFiles, campaign_year: int = 2023) -> tuple[list, list]:
    """Assert every invariant the importer relies on; return (units, members)."""
    units, members = read(files.units), read(files.members)
    assert list(units[0]) == list(UNIT_COLUMNS) and list(members[0]) == list(MEMBER_COLUMNS)
    kinds: dict[str, str] = {}
    for row in units:
        code = row["code"]
        assert code.isascii() and code not in kinds, code
        assert row["kind"] in KINDS, row
        assert (row["parent"] == "") == (not kinds), "only the first unit is a root"
        if row["parent"]:
            assert row["parent"] in kinds, f"{code}: parent {row['parent']} must come first"
            assert kinds[row["parent"]] not in BRANCH_KINDS
        assert row["emails"] and all("@" in e for e in row["emails"].split(";"))
        kinds[code] = row["kind"]
    branches = {c for c, k in kinds.items() if k in BRANCH_KINDS}
    reference = dt.date(campaign_year, 12, 1)
    secretaries: Counter[str] = Counter()
    ids = set()
    for row in members:
        assert row["member_id"] not in ids and row["member_id"].startswith("DV")
        ids.add(row["member_id"])
        assert row["unit"] in branches, row
        assert row["temporary_unit"] in branches | {""} and row["temporary_unit"] != row["unit"]
        assert row["status"] in STATUSES
        joined = dt.date.fromisoformat(row["joined_on"])
        assert dt.date(1975, 1, 1) <= joined < reference
        positions = row["positions"].split(";") if row["positions"] else []
        assert set(positions) <= set(POSITIONS) and len(set(positions)) == len(positions)
        if positions:
            assert row["status"] == "active" and row["email"]
        secretaries[row["unit"]] += positions.count("bi_thu")
    assert set(secretaries) == branches and set(secretaries.values()) == {1}, "one bí thư per branch"
    assert (files.unit_count, files.member_count, files.branch_count) == (
        len(units), len(members), len(branches))
    return units, members


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    first = generate("sct", 11, tmp_path / "a")
    again = generate("sct", 11, tmp_path / "b")
    other = generate("sct", 12, tmp_path / "c")
    for name in ("units", "members"):
        assert getattr(first, name).read_bytes() == getattr(again, name).read_bytes()
    assert first.members.read_bytes() != other.members.read_bytes()
    khoi = [generate("khoi", 3, tmp_path / d).members.read_bytes() for d in ("k1", "k2")]
    assert khoi[0] == khoi[1]


def test_sct_is_the_party_committee_of_plan_187(tmp_path):
    units, members = check_structure(generate("sct", 1, tmp_path))
    root = units[0]
    assert (root["code"], root["name"], root["kind"]) == ("SCT", "Đảng bộ Sở Công Thương", "dang_bo_co_so")
    branches = [u for u in units if u["kind"] == "chi_bo_truc_thuoc"]
    assert len(branches) == 10 and all(u["parent"] == "SCT" for u in branches)
    by_name = {u["name"]: u["code"] for u in units}
    assert SCT_BRANCHES <= set(by_name)
    assert "cb-vp1@sct.kiemdiem.local" in units[1]["emails"]
    sizes = Counter(m["unit"] for m in members)
    assert all(8 <= n <= 25 for n in sizes.values()) and 140 <= len(members) <= 160
    people = {m["full_name"]: m for m in members if m["full_name"] in SCT_PEOPLE}
    assert set(people) == SCT_PEOPLE, "each committee member appears exactly once by name"
    assert Counter(m["full_name"] for m in members)["Nguyễn Sỹ Chín"] == 1
    chin = people["Nguyễn Sỹ Chín"]
    assert chin["unit"] == by_name["Chi bộ Văn phòng 1"] and chin["email"]
    assert {"dang_uy_vien", "thu_truong"} <= set(chin["positions"].split(";"))
    assert people["Lê Xuân Tiến"]["unit"] == by_name["Chi bộ Văn phòng 2"]
    assert people["Nguyễn Trọng Thức"]["unit"] == by_name["Chi bộ Khuyến công"]
    assert all(p["email"] and "dang_uy_vien" in p["positions"] for p in people.values())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_khoi_sizes_fall_in_the_design_ranges(tmp_path, seed):
    files = generate("khoi", seed, tmp_path)
    units, members = check_structure(files)
    kinds = Counter(u["kind"] for u in units)
    assert units[0]["kind"] == "cap_tren_co_so" and kinds["cap_tren_co_so"] == 1
    assert 90 <= kinds["dang_bo_co_so"] + kinds["chi_bo_co_so"] <= 130
    assert 270 <= files.branch_count <= 400
    assert 4_000 <= files.member_count <= 7_000
    assert kinds["dang_bo_bo_phan"] >= 1 and kinds["chi_bo_co_so"] >= 1
    per_base = Counter(u["parent"] for u in units if u["kind"] == "chi_bo_truc_thuoc")
    assert min(per_base.values()) >= 1


def test_member_mix_is_realistic(tmp_path):
    _, members = check_structure(generate("khoi", 5, tmp_path))
    total = len(members)
    status = Counter(m["status"] for m in members)
    assert 0.90 < status["active"] / total < 0.96
    assert 0.02 < status["probationary"] / total < 0.06
    assert 0.01 < status["exempt"] / total < 0.035
    assert 0 < status["suspended"] / total < 0.015
    reference = dt.date(2023, 12, 1)
    ages = [(reference - dt.date.fromisoformat(m["joined_on"])).days
            for m in members if m["status"] == "probationary"]
    assert max(ages) < 366 and any(a < 183 for a in ages) and any(a >= 183 for a in ages)
    assert all((reference - dt.date.fromisoformat(m["joined_on"])).days >= 366
               for m in members if m["status"] == "active")
    assert 0.05 < sum(1 for m in members if not m["email"]) / total < 0.3
    assert 0.005 < sum(1 for m in members if m["temporary_unit"]) / total < 0.04
    families = Counter(m["full_name"].split()[0] for m in members)
    assert families.most_common(1)[0][0] == "Nguyễn"
    assert {"Trần", "Lê", "Phạm", "Đỗ", "Ngô"} <= set(families)


def test_campaign_year_moves_the_dates(tmp_path):
    _, members = check_structure(generate("sct", 4, tmp_path, campaign_year=2025), campaign_year=2025)
    assert any(m["joined_on"].startswith("2025") for m in members if m["status"] == "probationary")


def test_scaled_nation_streams_with_flat_memory(tmp_path):
    peaks = []
    for scale in (0.0005, 0.002):
        tracemalloc.start()
        files = generate("nation", 9, tmp_path / str(scale), _scale=scale)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    units, members = check_structure(files)
    provinces = [u for u in units if u["parent"] == "VN"]
    assert len(provinces) == 63 and all(u["kind"] == "cap_tren_co_so" for u in provinces)
    assert 0.5 * 250_000 * 0.002 < files.branch_count < 2 * 250_000 * 0.002
    assert 0.9 * 5_600_000 * 0.002 < files.member_count < 1.1 * 5_600_000 * 0.002
    assert peaks[1] < 1.5 * peaks[0] + 512 * 1024, f"memory grows with size: {peaks}"


def test_files_are_replaced_atomically(tmp_path, monkeypatch):
    files = generate("sct", 1, tmp_path)
    before = files.members.read_bytes()

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth._Synth, "branch_members", explode)
    with pytest.raises(RuntimeError):
        generate("sct", 2, tmp_path)
    assert files.members.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["members.csv", "units.csv"]


def test_importer_sniffs_a_comma_despite_semicolon_lists(tmp_path):
    files = generate("khoi", 1, tmp_path)
    for path in (files.units, files.members):
        sample = path.read_text(encoding="utf-8")[:4096]
        assert csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter == ","


def test_unknown_preset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sct, khoi, province, nation"):
        generate("planet", 1, tmp_path)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_khoi_is_named_after_the_province_of_its_seed_plan(tmp_path, seed):
    """KH-DUK-HT-2022 is the Hà Tĩnh Khối's plan; its generated tree must not name another province."""
    files = generate("khoi", seed, tmp_path)
    rows = list(csv.DictReader(files.units.open(encoding="utf-8")))
    root = next(row for row in rows if not row["parent"])
    assert root["name"] == "Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh Hà Tĩnh"
    provinces = {label for label, _ in synth._PROVINCES} - {"tỉnh Hà Tĩnh"}
    assert not [row["name"] for row in rows if any(p in row["name"] for p in provinces)]
