"""The distributed tick gives exactly the embedded tick's results, even when a worker dies mid-tick.

The campaign is the ``province`` preset (a whole province: ~3,800 units, ~1,000 base
organizations, ~86,000 members) under the Hà Tĩnh plan (KH-DUK-HT-2022). Base
organizations' results came in on 01/12/2022 for two thirds of them; every eighth branch
delivered its report and minutes on 30/11, which last evening's tick (30/11 17:00, recorded
in the template) took in; a few branches sent their minutes on 01/12, after that tick, so this
tick re-assembles their dossiers (in the parts). The tick runs on Fri 02/12/2022 08:00, the first
morning the committees can consolidate: the first, full consolidation of the tree; reminders
(the đảng bộ bộ phận's and đảng bộ cơ sở's phases, 1, 3 and 5 working days ahead);
escalations of the branches' phases (the branch meeting 1 working day late: every member's
missing review, to the office above each branch; the draft report 4 days late) and of the
đảng bộ bộ phận's draft report (2 days late), at step 0 to offices in every subtree and at
step 1 to the province's office above every batch: ~250,000 notices, ~1,700 digests, ~90 MB
of mail. Later mornings only add volume (on 06/12 the branch meeting's ~200,000 member
items climb to step 1 as well: 620,000 notices) and no other code path; the ladder's last
step, the plan's mailbox, is an address outside the tree like the province's office, and is
covered by ``test_planning_by_subtrees_gives_the_campaigns_notices`` below. The preparation
and the three ticks take about three minutes on a 2-core machine.

The same database content and data directory are cloned three times (PostgreSQL
``CREATE DATABASE ... TEMPLATE``):

1. the embedded tick, ``kiemdiem.steps.tick_once``, in this process;
2. the distributed tick: a Prefect server on PostgreSQL, a process work pool with two workers,
   ``prefect deploy --all``, then the tick deployment with ``fan_out=2``: two ``tick-part``
   runs plan the base organizations' subtrees on whichever worker takes them;
3. the same, with the worker running a tick-part killed (SIGKILL, with the part's process)
   half-way through the tick: the tick sees the worker's heartbeats stop, marks the part
   crashed and plans its batch itself.

Each sends to its own MailSink. Compared: the sent emails as (recipient, subject, the items
each carries), their Message-IDs (each received exactly once), and every unit's snapshot
content hash (the root's included), one version each.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import func, select

from flows.tick import tick
from kiemdiem import steps
from kiemdiem.notify.sink import MailSink
from kiemdiem.plan import load_plan
from kiemdiem.settings import SmtpSettings, StoreSettings
from kiemdiem.store.db import open_store
from kiemdiem.store.models import Notice, Outbox, Snapshot
from kiemdiem.store.organization import campaign_plan, create_campaign, import_organization
from kiemdiem.store.results import record_results
from kiemdiem.store.snapshots import latest_hashes, load_consolidation_input
from kiemdiem.store.submissions import IncomingFile, record_submission
from kiemdiem.store.ticks import finish_tick
from kiemdiem.synth import generate
from kiemdiem.synth_results import generate_results, results_of_units
from scripts.deploy_check import PrefectStack
from tests.conftest import PG_ADMIN_URL, require_postgres
from tests.flows.support import one_phase_plan, write_tree
from tests.support import PLANS, ict

# The tests that start a Prefect server share it (and the campaign set up for it): they are in
# the xdist group of test_deploy_worker.py, so CI runs them on one worker, one server at a time.

# KIEMDIEM_DISTRIBUTED_PRESET=khoi runs the same test on the khoi preset (≈370 units, ~5,000
# members): the same code path at a twentieth of the size, for a quick run.
PRESET = os.environ.get("KIEMDIEM_DISTRIBUTED_PRESET", "province")
ROOT = {"khoi": "DBK", "province": "TINH"}[PRESET]
CAMPAIGN = f"{PRESET}-2022"
PLAN = PLANS / "KH-DUK-HT-2022.yaml"
SETUP_AT = ict(2022, 11, 20)
RESULTS_AT = ict(2022, 12, 1, 15)
LAST_TICK = ict(2022, 11, 30, 17)
NOW = ict(2022, 12, 2, 8)
PARTS = 2
TICK_TIMEOUT = 180 if PRESET == "khoi" else 420
PART_TIMEOUT = 150 if PRESET == "khoi" else 300


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def _url(name: str) -> str:
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


class Databases:
    """Databases made by this module, dropped at its end."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.names: list[str] = []

    def create(self, suffix: str, template: str | None = None) -> str:
        name = f"{self.prefix}_{suffix}"
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        # Throwaway databases: a commit need not wait for the disk (a tick commits thousands of times).
        _admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        for name in reversed(self.names):
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _prepare(store, tmp: Path) -> None:
    """The campaign before the tick of 02/12/2022: results of two thirds of the base organizations,
    part of some dossiers, taken in by the tick of 30/11 evening, and a few minutes sent since."""
    plan = load_plan(PLAN)
    files = generate(PRESET, 1, tmp / "org", campaign_year=plan.year)
    with store.uow() as uow:
        create_campaign(uow, plan, CAMPAIGN, SETUP_AT)
        import_organization(uow, CAMPAIGN, files.units, files.members, SETUP_AT)
        uow.commit()
    with store.uow() as uow:
        base = load_consolidation_input(uow, plan, CAMPAIGN, RESULTS_AT)
    generated = generate_results(base.units, base.members, seed=1, evaluation_date=plan.evaluation_date, rule_set=plan.rule_set)
    bases = sorted(u.code for u in base.units if u.kind in ("dang_bo_co_so", "chi_bo_co_so"))
    late = {code for i, code in enumerate(bases) if i % 3 == 2}
    late_units = {u.code for u in base.units if any(u.code == b or u.code.startswith(f"{b}-") for b in late)}
    held_back = set(results_of_units(generated.member_results, base.members, late_units))
    with store.uow() as uow:
        record_results(
            uow, plan, CAMPAIGN, RESULTS_AT, [r for r in generated.member_results if r not in held_back],
            [r for r in generated.org_results if r.unit_code not in late_units], actor="test",
        )
        uow.commit()
    # Every eighth branch sent its report and minutes for the branch meeting, on time.
    branches = sorted(u.code for u in base.units if u.kind in ("chi_bo_co_so", "chi_bo_truc_thuoc"))
    with store.uow() as uow:
        for code in branches[::8]:
            for doc in ("bao_cao_kiem_diem_tap_the", "bien_ban_hoi_nghi"):
                record_submission(
                    uow, store.blobs, plan, CAMPAIGN, code, doc, [IncomingFile(f"{doc}.pdf", data=f"%PDF {code} {doc}".encode())],
                    ict(2022, 11, 30, 10), "web", phase_id="chi_bo_kiem_diem",
                )
        uow.commit()
    # Last evening's tick took those in (a tick re-assembles the dossiers of units with new
    # submissions: ~400 of them would take minutes, and be compared by nothing here).
    finish_tick(store, CAMPAIGN, LAST_TICK, {"sent": 0})
    # Since then a few branches sent their minutes: their dossiers are this tick's.
    with store.uow() as uow:
        for code in branches[5::400]:
            record_submission(
                uow, store.blobs, plan, CAMPAIGN, code, "bien_ban_hoi_nghi", [IncomingFile("bien_ban_hoi_nghi.pdf", data=f"%PDF {code} late".encode())],
                ict(2022, 12, 1, 16), "web", phase_id="chi_bo_kiem_diem",
            )
        uow.commit()


def outcome(store, campaign: str = CAMPAIGN) -> dict:
    """What a tick leaves behind that must not depend on how it ran."""
    with store.uow() as uow:
        session = uow.session
        items: dict[int, list[str]] = defaultdict(list)
        for outbox_id, key, step in session.execute(
            select(Notice.outbox_id, Notice.item_key, Notice.step).where(Notice.campaign_id == campaign, Notice.outbox_id.is_not(None))
        ):
            items[outbox_id].append(f"{key}@{step}")
        rows = session.execute(
            select(Outbox.id, Outbox.recipient, Outbox.subject, Outbox.status, Outbox.message_id).where(Outbox.campaign_id == campaign)
        ).all()
        notices = Counter(
            "linked" if linked else "cancelled" if cancelled else "pending"
            for linked, cancelled in session.execute(
                select(Notice.outbox_id.is_not(None), Notice.cancelled_at.is_not(None)).where(Notice.campaign_id == campaign)
            )
        )
        versions = dict(session.execute(select(Snapshot.unit_id, func.count()).where(Snapshot.campaign_id == campaign).group_by(Snapshot.unit_id)).all())
        hashes = latest_hashes(uow, campaign)
    return {
        "mails": Counter((r.recipient, r.subject, tuple(sorted(items[r.id]))) for r in rows),
        "message_ids": sorted(r.message_id for r in rows),
        "status": Counter(r.status for r in rows),
        "notices": notices,
        "versions": Counter(versions.values()),
        "hashes": hashes,
    }


def received(sink) -> Counter:
    return Counter(m.message_id for m in sink.received)  # the headers only: ~90 MB of mail


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A template database and data directory, what the embedded tick makes of a copy, and a
    Prefect server on PostgreSQL with the project's deployments (started meanwhile)."""
    require_postgres()
    tmp = tmp_path_factory.mktemp("distributed")
    dbs = Databases(f"kiemdiem_dist_{int(time.time() * 1000) % 10**9}")
    prefect_url = _url(dbs.create("prefect")).replace("postgresql://", "postgresql+asyncpg://")
    stack = PrefectStack(tmp / "prefect-logs", prefect_url, campaign=CAMPAIGN)
    server = ThreadPoolExecutor(1)
    starting = server.submit(stack.__enter__)
    try:
        template = dbs.create("template")
        template_home = tmp / "template-home"
        store = open_store(StoreSettings(home=template_home, database_url=_url(template)))
        try:
            _prepare(store, tmp)
        finally:
            store.dispose()

        def clone(label: str) -> tuple[str, Path]:
            home = tmp / f"{label}-home"
            shutil.copytree(template_home, home)
            return _url(dbs.create(label, template)), home

        url, home = clone("embedded")
        store = open_store(StoreSettings(home=home, database_url=url))
        started = time.perf_counter()
        try:
            with store.uow() as uow:
                plan = campaign_plan(uow, CAMPAIGN)
            with MailSink(tmp / "mail-embedded") as sink:
                report = asyncio.run(steps.tick_once(store, plan, CAMPAIGN, NOW, SmtpSettings(host="127.0.0.1", port=sink.port)))
                embedded = {**outcome(store), "received": received(sink), "seconds": time.perf_counter() - started, "report": report}
        finally:
            store.dispose()
        starting.result()
        yield {"clone": clone, "embedded": embedded, "tmp": tmp, "prefect": stack}
    finally:
        try:
            starting.result()
        except BaseException:
            pass
        stack.__exit__(None, None, None)
        server.shutdown()
        dbs.drop_all()


@pytest.fixture(scope="module")
def prefect(setup) -> PrefectStack:
    return setup["prefect"]


def run_distributed(setup, prefect: PrefectStack, label: str, *, kill: bool) -> tuple[dict, dict]:
    url, home = setup["clone"](label)
    with MailSink(setup["tmp"] / f"mail-{label}") as sink:
        env = {"KIEMDIEM_DATABASE_URL": url, "KIEMDIEM_HOME": str(home), "KIEMDIEM_SMTP_PORT": str(sink.port)}
        # Heartbeats every 2 s: a dead worker is noticed within seconds, not minutes.
        workers = prefect.start_workers(2, env, prefix=label, heartbeat_seconds=2)
        try:
            result = prefect.run_tick(
                CAMPAIGN, NOW.isoformat(), parameters={"fan_out": PARTS, "part_timeout": PART_TIMEOUT}, timeout=TICK_TIMEOUT,
                kill_part_worker=workers if kill else None,
            )
        finally:
            workers.stop()
        store = open_store(StoreSettings(home=home, database_url=url))
        try:
            found = {**outcome(store), "received": received(sink)}
        finally:
            store.dispose()
    return result, found


def assert_same_as_embedded(found: dict, embedded: dict) -> None:
    assert embedded["mails"] and embedded["status"] == Counter({"sent": sum(embedded["mails"].values())})
    assert found["mails"] == embedded["mails"]
    assert found["message_ids"] == embedded["message_ids"]
    assert found["status"] == embedded["status"]
    assert found["notices"] == embedded["notices"]
    # Every email reached the server exactly once, the very ones the embedded tick sent.
    assert set(found["received"].values()) == {1}
    assert found["received"] == embedded["received"]
    # One consolidation version per unit, with the same content.
    assert found["versions"] == embedded["versions"] == Counter({1: len(embedded["hashes"])})
    assert found["hashes"] == embedded["hashes"]


@pytest.mark.slow
@pytest.mark.xdist_group("prefect-server")
def test_embedded_tick_has_work_to_share(setup):
    embedded = setup["embedded"]
    report = embedded["report"]
    assert report["reminders"] > 0 and report["escalations"] > 0
    assert report["consolidated"]["mode"] == "full"
    assert report["sent"].sent == sum(embedded["mails"].values()) == len(embedded["received"])
    assert ROOT in embedded["hashes"]


@pytest.mark.slow
@pytest.mark.xdist_group("prefect-server")
def test_distributed_tick_gives_the_embedded_results(setup, prefect):
    result, found = run_distributed(setup, prefect, "dist", kill=False)
    assert result["state"] == "COMPLETED", result
    assert len(result["parts"]) == PARTS and {p["state"] for p in result["parts"]} == {"COMPLETED"}, result
    assert_same_as_embedded(found, setup["embedded"])


@pytest.mark.slow
@pytest.mark.xdist_group("prefect-server")
def test_a_worker_killed_mid_tick_changes_nothing(setup, prefect):
    result, found = run_distributed(setup, prefect, "kill", kill=True)
    assert result["killed"] is not None, result
    assert result["state"] == "COMPLETED", result
    killed = next(p for p in result["parts"] if p["name"] == result["killed"]["part"])
    # The tick saw the worker stop, marked its part crashed and planned that batch itself.
    assert killed["state"] == "CRASHED" and "heartbeat" in (killed["message"] or ""), result
    assert_same_as_embedded(found, setup["embedded"])


# --------------------------------------------------------------------------- planning by subtree, without Prefect


def _small_campaigns(store, tmp_path, *ids: str):
    plan = one_phase_plan()
    units, members = write_tree(tmp_path / "org")
    with store.uow() as uow:
        for campaign in ids:
            create_campaign(uow, plan, campaign, ict(2023, 11, 20))
            import_organization(uow, campaign, units, members, ict(2023, 11, 20))
        uow.commit()
    return plan


def _notices(store, campaign: str) -> set:
    with store.uow() as uow:
        return set(
            uow.session.execute(
                select(Notice.recipient, Notice.recipient_name, Notice.kind, Notice.step, Notice.item_key, Notice.phase_id, Notice.doc_type)
                .where(Notice.campaign_id == campaign)
            ).all()
        )


def test_split_tree_covers_every_unit_once(store, tmp_path):
    _small_campaigns(store, tmp_path, "c")
    one = steps.split_tree(store, "c", 1)
    assert one["batches"] == [["ROOT"]] and one["rest"] == []
    # One base organization for two parts: its children become the roots, it stays with the tick.
    two = steps.split_tree(store, "c", 2)
    assert sorted(map(sorted, two["batches"])) == [["BP"], ["CB3"]] and two["rest"] == ["ROOT"]
    assert two["owner"] == {"ROOT": -1, "BP": two["owner"]["CB1"], "CB1": two["owner"]["CB2"], "CB2": two["owner"]["BP"], "CB3": two["owner"]["CB3"]}
    assert {two["owner"]["BP"], two["owner"]["CB3"]} == {0, 1}
    # More parts than branches: down to the leaves, one batch each; the same tree, the same split.
    many = steps.split_tree(store, "c", 9)
    assert sorted(map(tuple, many["batches"])) == [("CB1",), ("CB2",), ("CB3",)] and many["rest"] == ["ROOT", "BP"]
    assert many == steps.split_tree(store, "c", 9)


@pytest.mark.parametrize("now", [ict(2023, 11, 30, 8), ict(2023, 12, 7, 8), ict(2023, 12, 11, 8)], ids=["reminders", "step1", "step2"])
def test_planning_by_subtrees_gives_the_campaigns_notices(store, tmp_path, now):
    """Escalations reach ancestors outside a batch (the grandparent, the ladder's mailbox): same notices."""
    plan = _small_campaigns(store, tmp_path, "whole", "split")
    open_ids = steps.open_phase_ids(plan, now)
    created = steps.plan_reminders(store, plan, "whole", now, open_ids) + steps.escalate_overdue(store, plan, "whole", now, open_ids)
    split = steps.split_tree(store, "split", 2)
    planned = sum(steps.plan_units(store, plan, "split", now, open_ids, roots=batch) for batch in split["batches"])
    planned += steps.plan_units(store, plan, "split", now, open_ids, units=split["rest"])
    assert created > 0 and planned == created
    assert _notices(store, "split") == _notices(store, "whole")
    # Idempotent, like the steps it stands for.
    assert sum(steps.plan_units(store, plan, "split", now, open_ids, roots=batch) for batch in split["batches"]) == 0


@pytest.mark.slow
@pytest.mark.xdist_group("prefect-server")
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_fan_out_on_the_task_runner(prefect, store, tmp_path, monkeypatch):
    """Without the part deployment (or with fan_out_on="tasks") the batches run on the tick's own task runner."""
    plan = _small_campaigns(store, tmp_path, "embedded", "tasks")
    now = ict(2023, 12, 7, 8)
    with MailSink(tmp_path / "mail") as sink:
        monkeypatch.setenv("KIEMDIEM_SMTP_PORT", str(sink.port))
        asyncio.run(steps.tick_once(store, plan, "embedded", now, SmtpSettings(host="127.0.0.1", port=sink.port)))
        with temporary_settings(updates={PREFECT_API_URL: prefect.api}):
            try:
                report = asyncio.run(tick("tasks", now.isoformat(), fan_out=2, fan_out_on="tasks"))
            finally:
                # Flush this process's log and event workers while their server is up: left
                # behind, they would hold up the next test harness that drains every worker.
                APILogWorker.drain_all(timeout=30)
                EventsWorker.drain_all(timeout=30)
        assert [p["where"] for p in report["parts"]] == ["task-runner", "task-runner"]
        assert report["rest"]["units"] == 1 and report["sent"]["sent"] > 0
        assert set(received(sink).values()) == {1}
    embedded, fanned = outcome(store, "embedded"), outcome(store, "tasks")
    assert fanned["mails"] == embedded["mails"] and fanned["status"] == embedded["status"] == Counter({"sent": report["sent"]["sent"]})
    assert fanned["notices"] == embedded["notices"]
