"""Helpers shared by tests (not fixtures)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import text

from kiemdiem.store.db import Store
from kiemdiem.store.models import Base

REPO = Path(__file__).resolve().parent.parent
PLANS = REPO / "plans"
ICT = dt.timezone(dt.timedelta(hours=7))


def ict(year, month, day, hour=0, minute=0, second=0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=ICT)


def table_counts(store: Store) -> dict[str, int]:
    """Row counts of every table: the 'nothing changed' check for refused input."""
    with store.engine.connect() as conn:
        return {t.name: conn.execute(text(f'SELECT count(*) FROM "{t.name}"')).scalar_one() for t in Base.metadata.sorted_tables}


SMALL_UNITS = """code,name,kind,parent,emails
SCT,Đảng bộ Sở Công Thương,dang_bo_co_so,,vanphong@sct.example.vn
VP1,Chi bộ Văn phòng 1,chi_bo_truc_thuoc,SCT,vp1@sct.example.vn
VP2,Chi bộ Văn phòng 2,chi_bo_truc_thuoc,SCT,vp2@sct.example.vn;bithu.vp2@sct.example.vn
KC,Chi bộ Khuyến công,chi_bo_truc_thuoc,SCT,kc@sct.example.vn
"""

SMALL_MEMBERS = """member_id,full_name,unit,email,joined_on,status,temporary_unit,positions
DV001,Nguyễn Sỹ Chín,VP1,chin@sct.example.vn,12/05/1995,active,,dang_uy_vien;bi_thu
DV002,Trần Thị Hoa,VP1,,03/02/2010,active,,
DV003,Lê Văn Nam,VP1,,2001-07-19,exempt,,
DV004,Lê Xuân Tiến,VP2,tien@sct.example.vn,1998-09-02,active,,pho_bi_thu
DV005,Phạm Minh Đức,VP2,,2023-09-01,probationary,,
DV006,Nguyễn Trọng Thức,KC,thuc@sct.example.vn,2005-01-10,active,,bi_thu
DV007,Hoàng Thị Lan,KC,,2012-11-20,active,VP2,
"""


def write_small_org(directory: Path, units: str = SMALL_UNITS, members: str = SMALL_MEMBERS) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    units_path = directory / "units.csv"
    members_path = directory / "members.csv"
    units_path.write_text(units, encoding="utf-8")
    members_path.write_text(members, encoding="utf-8")
    return units_path, members_path


def hatinh_campaign(store: Store, directory: Path, units: str, members: str, campaign_id: str = "ht"):
    """A campaign of the Hà Tĩnh Khối's plan (KH-DUK-HT-2022) on the given tree, set up on 20/11/2022."""
    from kiemdiem.plan import load_plan  # noqa: PLC0415
    from kiemdiem.store.organization import create_campaign, import_organization  # noqa: PLC0415

    plan = load_plan(PLANS / "KH-DUK-HT-2022.yaml")
    with store.uow() as uow:
        create_campaign(uow, plan, campaign_id, ict(2022, 11, 20, 8))
        import_organization(uow, campaign_id, *write_small_org(directory, units, members), ict(2022, 11, 20, 8))
        uow.commit()
    return plan


def readable_list(doc_type: str, unit_code: str, member_codes: list[str]) -> tuple[str, bytes]:
    """(file name, content) of a classification list that reads, as every list must to be received:
    the unit's own result for ``ket_qua_xep_loai_chi_bo``, otherwise the members named (HTTNV)."""
    if doc_type == "ket_qua_xep_loai_chi_bo":
        return "ket_qua.csv", f"Mã đơn vị,Tự xếp loại\n{unit_code},HTTNV\n".encode()
    rows = "".join(f"{code},HTTNV,HTTNV\n" for code in member_codes)
    return "danh_sach.csv", f"Mã đảng viên,Tự xếp loại,Chi bộ đề xuất\n{rows}".encode()


def command_shell(register):
    """A typer app holding one command module's commands (its ``register``), for CliRunner."""
    import typer  # noqa: PLC0415

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """kiemdiem (test shell)."""

    register(app)
    return app
