"""The tick as a Prefect flow run: it runs every open phase, sends mail and publishes artifacts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import text
from typer.testing import CliRunner

import kiemdiem.store.notices as store_notices
import tasks.progress
from deployments.cli import app
from flows.phases import PHASE_FLOWS
from flows.tick import tick
from kiemdiem import steps
from kiemdiem.notify.sink import MailSink
from kiemdiem.plan import parse_plan
from tests.flows.support import ONE_PHASE_PLAN, one_phase_campaign
from tests.support import ict

ROOT = Path(__file__).resolve().parents[2]

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
    one_phase_campaign(store, tmp_path)
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
    _two_phase_campaign(store, tmp_path)

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


def _notices_by_phase(store, campaign_id: str) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT phase_id, count(*) FROM notices WHERE campaign_id = :c GROUP BY phase_id"), {"c": campaign_id})
        return dict(rows.all())


def _two_phase_campaign(store, tmp_path, campaign_id: str = "two"):
    return one_phase_campaign(store, tmp_path, campaign_id, plan=parse_plan(TWO_PHASES, source="two-phases.yaml"))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_phases_planned_at_once_each_count_their_own_notices(store, tmp_path, monkeypatch):
    """The tick plans its phases together. On SQLite a phase counted, as its own, the notices
    another phase committed while it planned: the tick said 41 reminders for a phase that had 4."""
    plan = _two_phase_campaign(store, tmp_path)
    now = ict(2023, 12, 4, 8)  # a reminder day of both phases
    counts: dict[str, int] = {}
    other = threading.Thread(target=lambda: counts.__setitem__("chuan_bi", steps.plan_reminders(store, plan, "two", now, ["chuan_bi"])))
    insert = store_notices._insert_ignoring

    def insert_while_the_other_phase_plans(session, rows):
        if other.ident is None:  # the first phase, between its two counts: the other plans now
            other.start()
            other.join(timeout=3)  # it either finishes, or waits for this phase's write lock
        insert(session, rows)

    monkeypatch.setattr(store_notices, "_insert_ignoring", insert_while_the_other_phase_plans)
    counts["hop_chi_bo"] = steps.plan_reminders(store, plan, "two", now, ["hop_chi_bo"])
    other.join()
    # Two items (minutes, the secretary's self-review) to cb1, cb2, cb2b, cb3; the draft report to root@.
    assert counts == {"hop_chi_bo": 8, "chuan_bi": 1} == _notices_by_phase(store, "two")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_tick_command_says_what_this_tick_did(prefect_harness, store_env, store, tmp_path, monkeypatch):
    """The counts are this tick's own, per phase, labelled so; the campaign's totals come under their own title."""
    import kiemdiem.cli as cli  # noqa: PLC0415

    _two_phase_campaign(store, tmp_path)
    monkeypatch.setattr(cli.console, "width", 250)  # one line per row
    runner = CliRunner()
    with MailSink(tmp_path / "mail") as sink:
        monkeypatch.setenv("KIEMDIEM_SMTP_PORT", str(sink.port))
        first = runner.invoke(app, ["tick", "--campaign", "two", "--at", "04/12/2023 08:00", "--json"], catch_exceptions=False)
        assert first.exit_code == 0, first.output
        data = json.loads(first.output)
        assert len(sink.received) == 5  # cb1, cb2, cb2b, cb3 and root@: one digest each
        assert data["notices"] == {
            "hop_chi_bo": {"reminders": 8, "escalations": 0, "queued": 8, "sent": 8, "phase_name": "Chi bộ họp kiểm điểm"},
            "chuan_bi": {"reminders": 1, "escalations": 0, "queued": 1, "sent": 1, "phase_name": "Chuẩn bị báo cáo"},
        }
        assert data["phases"]["chuan_bi"]["phase_name"] == "Chuẩn bị báo cáo"  # codes kept as keys, names beside them
        assert {p: r["reminders"] for p, r in data["phases"].items()} == _notices_by_phase(store, "two") == {"hop_chi_bo": 8, "chuan_bi": 1}
        later = runner.invoke(app, ["tick", "--campaign", "two", "--at", "05/12/2023 08:00"], catch_exceptions=False)
        again = runner.invoke(app, ["tick", "--campaign", "two", "--at", "05/12/2023 08:00"], catch_exceptions=False)
    text = " ".join(later.output.split())
    assert later.exit_code == 0, later.output
    assert "Thông báo của riêng lượt này" in text
    # 05/12: hop_chi_bo's last reminder (offset 0), 8 more; chuan_bi is overdue: step 0 to root@'s own office.
    assert "│ Chi bộ họp kiểm điểm │ 8 │ 0 │ 8 │ 8 │" in text
    assert "│ Chuẩn bị báo cáo │ 0 │ 1 │ 1 │ 1 │" in text
    assert "Lũy kế từ đầu đợt đến nay (cộng mọi lượt xử lý, không phải của riêng lượt này)" in text
    assert "│ Chi bộ họp kiểm điểm │ 16 │ 0 │ 16 │" in text
    # The same moment again: nothing new, and it says so; the totals do not move.
    repeat = " ".join(again.output.split())
    assert "lượt này không lập, không gửi thông báo nhắc hạn hay chuyển cấp nào" in repeat
    assert "│ Chi bộ họp kiểm điểm │ 16 │ 0 │ 16 │" in repeat
    assert "Traceback" not in later.output + again.output


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_tick_command_ends_once_prefect_has_recorded_its_task_runs(prefect_harness, store_env, store, tmp_path, monkeypatch):
    """Prefect's temporary server records task runs from events, a little late; stopped with a
    recording under way, it printed a traceback after a tick that went well."""
    import deployments.cli as cli  # noqa: PLC0415

    one_phase_campaign(store, tmp_path)
    monkeypatch.setattr(cli, "temporary_server_running", lambda: True)  # the harness's server stands in for it
    asyncio.run(cli.run_tick("test", ict(2023, 11, 30, 8)))

    async def task_runs():
        async with get_client() as client:
            run = (await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1))[0]
            return await client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id])))

    runs = asyncio.run(task_runs())
    assert any(r.name.startswith("finish-tick") for r in runs)
    assert all(r.state is not None and r.state.is_final() for r in runs)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_first_tick_on_a_fresh_checkout_starts_prefect_in_a_home_not_yet_made(store_env, store, tmp_path):
    """`make demo` on a fresh clone: PREFECT_HOME is .kiemdiem/prefect and .kiemdiem does not exist
    yet. Prefect makes its home without parents; the tick's own temporary server must start anyway."""
    _two_phase_campaign(store, tmp_path)
    home = tmp_path / "fresh" / ".kiemdiem" / "prefect"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(store_env, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with MailSink(tmp_path / "mail") as sink:
        env["KIEMDIEM_SMTP_PORT"] = str(sink.port)
        done = subprocess.run(
            [sys.executable, "-c", "from deployments.cli import main; main()", "tick", "--campaign", "two", "--at", "04/12/2023 08:00"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(sink.received) == 5
    assert (home / "prefect.db").exists()
    assert "Traceback" not in done.stdout + done.stderr
