"""The tick as a Prefect flow run: it runs every open phase, sends mail and publishes artifacts."""

from __future__ import annotations

import asyncio
import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.testing.utilities import prefect_test_harness

import tasks.progress
from flows.phases import PHASE_FLOWS
from flows.tick import tick
from kiemdiem.notify.sink import MailSink
from kiemdiem.plan import parse_plan
from kiemdiem.store.organization import create_campaign, import_organization
from tests.flows.support import ONE_PHASE_PLAN, one_phase_plan, write_tree
from tests.support import ict

pytestmark = [pytest.mark.prefect, pytest.mark.xdist_group("prefect")]


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=60):
            yield


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_tick_flow_runs_phases_sends_and_publishes(prefect_harness, store, tmp_path, monkeypatch):
    plan = one_phase_plan()
    units, members = write_tree(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan, "test", ict(2023, 11, 20))
        import_organization(uow, "test", units, members, ict(2023, 11, 20))
        uow.commit()
    with MailSink(tmp_path / "mail") as sink:
        monkeypatch.setenv("KIEMDIEM_SMTP_PORT", str(sink.port))
        first = asyncio.run(tick("test", ict(2023, 11, 30, 8).isoformat()))
        assert list(first["phases"]) == ["hop_chi_bo"]
        # Two items (minutes, the branch secretary's self-review) to each of cb1, cb2, cb2b, cb3.
        assert first["phases"]["hop_chi_bo"]["reminders"] == 8
        assert first["sent"]["sent"] == 4 and len(sink.received) == 4
        again = asyncio.run(tick("test", ict(2023, 11, 30, 8).isoformat()))
        assert again["sent"]["sent"] == 0 and len(sink.received) == 4
        late = asyncio.run(tick("test", ict(2023, 12, 6, 8).isoformat()))
        # Nobody delivered: CB1 and CB2 go to bp@ (one digest), CB2 also to its assigned member, CB3 to root@.
        assert late["phases"]["hop_chi_bo"]["escalations"] > 0 and late["sent"]["sent"] == 3

    async def read():
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=100, sort=FlowRunSort.START_TIME_DESC)
            arts = await client.read_artifacts(limit=100, sort=ArtifactSort.CREATED_DESC)
        return runs, arts

    runs, arts = asyncio.run(read())
    assert sum(1 for r in runs if r.state and r.state.is_completed()) >= 3
    keys = {a.key for a in arts}
    assert "test-hop-chi-bo-progress" in keys and "test-overdue-units" in keys
    overdue = [a for a in arts if a.key == "test-overdue-units"]
    assert any("CB2" in str(a.data) for a in overdue)


def test_every_phase_kind_of_the_seeds_has_a_flow():
    assert {"prepare_reports", "branch_meeting", "committee_review", "report_upward", "remediation"} <= set(PHASE_FLOWS)


TWO_PHASES = "\n".join([
    ONE_PHASE_PLAN.rstrip(),
    "  - id: chuan_bi",
    "    name: Chuẩn bị báo cáo",
    "    kind: prepare_reports",
    "    applies_to: [dang_bo_co_so]",
    '    deadline: {date: "04/12/2023", text: "trước ngày 04/12/2023"}',
    "    documents:",
    "      - {type: bao_cao_kiem_diem_tap_the}",
    "",
])


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_ticks_overdue_table_covers_every_open_phase(prefect_harness, store, tmp_path, monkeypatch):
    """Each phase used to publish its own table under the tick's key: the last to finish hid the others."""
    plan = parse_plan(TWO_PHASES, source="two-phases.yaml")
    units, members = write_tree(tmp_path / "org")
    with store.uow() as uow:
        create_campaign(uow, plan, "two", ict(2023, 11, 20))
        import_organization(uow, "two", units, members, ict(2023, 11, 20))
        uow.commit()

    async def latest_overdue() -> list[dict]:
        async with get_client() as client:
            arts = await client.read_artifacts(limit=200, sort=ArtifactSort.CREATED_DESC)
        return next(a for a in arts if a.key == "two-overdue-units").data

    with MailSink(tmp_path / "mail") as sink:
        monkeypatch.setenv("KIEMDIEM_SMTP_PORT", str(sink.port))
        ran = asyncio.run(tick("two", ict(2023, 12, 6, 8).isoformat()))
        assert set(ran["phases"]) == {"hop_chi_bo", "chuan_bi"}
        table = asyncio.run(latest_overdue())
        rows = table if isinstance(table, list) else json.loads(table)
        assert {(r["giai_doan"], r["don_vi"]) for r in rows} == {
            ("hop_chi_bo", "CB1"), ("hop_chi_bo", "CB2"), ("hop_chi_bo", "CB3"), ("chuan_bi", "ROOT"),
        }
        # A national morning's table is cut, with a last row that counts the rest.
        monkeypatch.setattr(tasks.progress, "MAX_OVERDUE_ROWS", 2)
        asyncio.run(tick("two", ict(2023, 12, 6, 9).isoformat()))
        table = asyncio.run(latest_overdue())
        rows = table if isinstance(table, list) else json.loads(table)
        assert len(rows) == 3 and rows[-1]["ten"].startswith("… và 2 lượt đơn vị quá hạn khác")
