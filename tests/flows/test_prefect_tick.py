"""The tick as a Prefect flow run: it runs every open phase, sends mail and publishes artifacts."""

from __future__ import annotations

import asyncio

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.testing.utilities import prefect_test_harness

from flows.phases import PHASE_FLOWS
from flows.tick import tick
from kiemdiem.notify.sink import MailSink
from kiemdiem.store.organization import create_campaign, import_organization
from tests.flows.support import one_phase_plan, write_tree
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
