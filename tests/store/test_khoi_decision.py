"""The Hà Tĩnh Khối classifies its base organizations itself (KH-DUK-HT-2022, Mục B.2.1, Bước 3:
"Ban Thường vụ Đảng ủy Khối xem xét, bỏ phiếu kín quyết định xếp loại chất lượng"), under the 20%
cap on the organizations it classifies. Its decision is a submission like any other (SQLite and
PostgreSQL)."""

from __future__ import annotations

import pytest

from kiemdiem.errors import InvalidInput
from kiemdiem.store.results import ingest_results
from kiemdiem.store.snapshots import consolidate_campaign, latest_snapshots
from kiemdiem.store.submissions import IncomingFile, record_submission
from tests.support import hatinh_campaign, ict

BASES = [f"CS{i:02d}" for i in range(1, 14)]
UNITS = "code,name,kind,parent,emails\nKHOI,Đảng bộ Khối các cơ quan và doanh nghiệp tỉnh,cap_tren_co_so,,btc@khoi.example.vn\n" + "".join(
    f"{code},Chi bộ cơ sở {code},chi_bo_co_so,KHOI,{code.lower()}@khoi.example.vn\n" for code in BASES
)
MEMBERS = "member_id,full_name,unit\n" + "".join(f"DV{i:02d},Đảng viên {i},{code}\n" for i, code in enumerate(BASES, 1))


@pytest.fixture
def khoi(store, tmp_path):
    return hatinh_campaign(store, tmp_path / "org", UNITS, MEMBERS)


def decide(store, plan, levels: dict[str, str], at):
    rows = "".join(f"{code},{level}\n" for code, level in levels.items())
    with store.uow() as uow:
        outcome = record_submission(
            uow, store.blobs, plan, "ht", "KHOI", "quyet_dinh_xep_loai",
            [IncomingFile("quyet_dinh.csv", data=f"Mã đơn vị,Xếp loại\n{rows}".encode())], at, "web",
        )
        uow.commit()
    ingest_results(store, plan, "ht", at)
    consolidate_campaign(store, plan, "ht", at)
    with store.uow() as uow:
        return outcome, latest_snapshots(uow, "ht", ["KHOI"])["KHOI"]["payload"]


def test_the_khoi_decides_its_base_organizations_under_the_20_percent_cap(store, khoi):
    # 10 HTTNV allow 2 HTXSNV.
    levels = {code: "HTTNV" for code in BASES[:10]} | {BASES[10]: "HTXSNV", BASES[11]: "HTXSNV", BASES[12]: "HTNV"}
    outcome, payload = decide(store, khoi, levels, ict(2022, 12, 20, 9))
    assert outcome.phase_id == "khoi_xep_loai_co_so" and outcome.on_time
    quota = payload["organizations"]["quota"]
    assert (quota["htxsnv"], quota["httnv"], quota["max_allowed"], quota["status"]) == (2, 10, 2, "ok")
    assert payload["organizations"]["levels"]["HTXSNV"]["count"] == 2

    # A third is a breach, reported against the Khối.
    levels[BASES[12]] = "HTXSNV"
    _, payload = decide(store, khoi, levels, ict(2022, 12, 21, 9))
    quota = payload["organizations"]["quota"]
    assert (quota["htxsnv"], quota["httnv"], quota["max_allowed"], quota["status"]) == (3, 10, 2, "breach")
    (cap,) = [f for f in payload["findings"] if f["rule"] == "cap_organizations"]
    assert cap["severity"] == "error" and cap["unit_code"] == "KHOI" and "vượt 1" in cap["message"]


def test_a_base_organization_cannot_decide_for_another(store, khoi):
    with store.uow() as uow, pytest.raises(InvalidInput, match="tổ chức đảng CS02 không thuộc"):
        record_submission(
            uow, store.blobs, khoi, "ht", "CS01", "quyet_dinh_xep_loai",
            [IncomingFile("quyet_dinh.csv", data="Mã đơn vị,Xếp loại\nCS02,HTTNV\n".encode())], ict(2022, 12, 20, 9), "web",
        )
