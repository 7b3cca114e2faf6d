"""``members.code_key`` is ``member_key(member_code)`` however a member row is stored.

The in-memory import (SQLite, and PostgreSQL with ``streaming=False``), the streamed PostgreSQL
import (COPY into a stage, then ``INSERT … SELECT``), a re-import that adds and updates members,
and ORM / Core inserts (the model's column default).
"""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from kiemdiem.member_key import member_key
from kiemdiem.store.models import Member, Unit
from kiemdiem.store.organization import create_campaign, import_organization
from tests.support import SMALL_MEMBERS, ict, write_small_org

NOW = ict(2023, 11, 20, 9)
CAMPAIGN = "c187"

# Enough members for several of SQLite's multi-row INSERTs (99 rows each) and a short last one,
# with codes of every allowed character class.
EXTRA = [f"X{n:04d}" if n % 3 else f"a.b-{n}_z" for n in range(250)]
MEMBERS = SMALL_MEMBERS + "".join(f"{code},Người {n},VP{1 + n % 2},,,active,,\n" for n, code in enumerate(EXTRA))


@pytest.fixture
def campaign(store, plan_187):
    with store.uow() as uow:
        create_campaign(uow, plan_187, CAMPAIGN, NOW)
        uow.commit()
    return CAMPAIGN


@pytest.fixture(params=["in_memory", "streaming"])
def streaming(request, backend) -> bool:
    if request.param == "streaming" and backend != "postgres":
        pytest.skip("the streamed import is PostgreSQL's")
    return request.param == "streaming"


def stored_keys(store) -> dict[str, int]:
    with store.uow() as uow:
        return dict(uow.session.execute(select(Member.member_code, Member.code_key).where(Member.campaign_id == CAMPAIGN)).all())


def do_import(store, units, members, streaming: bool):
    with store.uow() as uow:
        report = import_organization(uow, CAMPAIGN, units, members, NOW, streaming=streaming)
        uow.commit()
    return report


def test_an_import_stores_each_members_key(store, campaign, tmp_path, streaming):
    report = do_import(store, *write_small_org(tmp_path, members=MEMBERS), streaming)
    assert report.members_added == 7 + len(EXTRA)
    keys = stored_keys(store)
    assert len(keys) == 7 + len(EXTRA)
    assert keys == {code: member_key(code) for code in keys}
    assert all(0 <= key < 2**40 for key in keys.values())


def test_a_reimport_keys_new_members_and_keeps_the_others(store, campaign, tmp_path, streaming):
    do_import(store, *write_small_org(tmp_path), streaming)
    before = stored_keys(store)
    changed = MEMBERS.replace("Trần Thị Hoa,VP1", "Trần Thị Hoa,VP2")  # DV002 moves: an update
    report = do_import(store, *write_small_org(tmp_path / "v2", members=changed), streaming)
    assert (report.members_added, report.members_updated) == (len(EXTRA), 1)
    keys = stored_keys(store)
    assert len(keys) == 7 + len(EXTRA)
    assert keys == {code: member_key(code) for code in keys}
    assert {code: keys[code] for code in before} == before


def test_orm_and_core_inserts_fill_the_key(store, campaign, tmp_path):
    do_import(store, *write_small_org(tmp_path), streaming=False)
    with store.uow() as uow:
        unit_id = uow.session.scalar(select(Unit.id).where(Unit.code == "VP1"))
        uow.session.add(Member(campaign_id=CAMPAIGN, member_code="ORM-1", full_name="Một", unit_id=unit_id, status="active"))
        uow.session.add_all([
            Member(campaign_id=CAMPAIGN, member_code=f"ORM-{n}", full_name="Nhiều", unit_id=unit_id, status="active") for n in range(2, 5)
        ])
        uow.session.flush()
        uow.session.execute(insert(Member), [
            {"campaign_id": CAMPAIGN, "member_code": f"CORE-{n}", "full_name": "Core", "unit_id": unit_id, "status": "active"}
            for n in range(3)
        ])
        uow.session.add(Member(campaign_id=CAMPAIGN, member_code="GIVEN", full_name="Given", unit_id=unit_id, status="active",
                               code_key=member_key("GIVEN")))
        uow.commit()
    keys = stored_keys(store)
    assert {"ORM-1", "ORM-4", "CORE-0", "CORE-2", "GIVEN"} <= keys.keys()
    assert keys == {code: member_key(code) for code in keys}
