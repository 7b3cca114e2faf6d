"""Status and one tick's planning of reminders at national scale, on PostgreSQL.

The campaign is the ``nation`` preset imported into PostgreSQL: a copy of the template database
``kiemdiem_nation_template`` (campaign ``nation``) when it exists, else a scaled nation
(``generate("nation", seed, dir, _scale=...)``) imported the normal way (``--source``).
The instant is a reminder morning: 08:00 on the day of the plan's first deadline (Hà Tĩnh
plan: 28/11/2022), nothing delivered yet.

Measured, each kiemdiem side in its own process (so its peak RSS is its own):

- ``status``: ``campaign_status`` of the whole campaign (chosen by size: by partitions at this
  scale) with the root's completion and the state counts; then every unit's rows (missing items
  included) read in order. Baseline: one hand-written SQL statement, GROUP BY per unit and
  phase, of the items owed (per-unit documents, and per-member documents by member scope) and
  of the items delivered, every row fetched.
- ``planning``: one tick's planning, ``steps.plan_reminders`` then ``steps.escalate_overdue``
  on the open phases (what ``tick_once`` runs): notices planned and saved, time, peak RSS.
  Baseline: one hand-written ``INSERT ... SELECT`` that plans the same reminder notices
  set-based (items owed and not delivered, times their unit's office emails) into a copy of the
  notices table. Both notice sets are compared row for row in SQL.

Results go to ``bench/results/nation_tick.json``.

    python -m bench.nation_tick_bench [--source auto|template|scaled] [--scale 0.1] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import PG_ADMIN_URL, RESULTS, fresh_pg_database, peak_rss_mib, pg_available, save

TEMPLATE = "kiemdiem_nation_template"
DATABASE = "kiemdiem_nation_tick_bench"
CAMPAIGN = "nation"
PLAN_FILE = "KH-DUK-HT-2022.yaml"


def _url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def template_exists() -> bool:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,)).fetchone() is not None


def from_template() -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}" TEMPLATE "{TEMPLATE}"')
    return _url(DATABASE)


def scaled_nation_or_province(work: Path, source: str, scale: float, seed: int) -> tuple[str, dict]:
    """A fresh database with the nation preset at ``scale`` (or the province preset), imported with
    ``import_organization``."""
    from kiemdiem.plan import load_plan  # noqa: PLC0415
    from kiemdiem.settings import StoreSettings, plans_dir  # noqa: PLC0415
    from kiemdiem.store.db import open_store  # noqa: PLC0415
    from kiemdiem.store.organization import create_campaign, import_organization  # noqa: PLC0415
    from kiemdiem.synth import generate  # noqa: PLC0415

    url = fresh_pg_database(DATABASE)
    plan = load_plan(plans_dir() / PLAN_FILE)
    started = time.perf_counter()
    if source == "province":
        files = generate("province", seed, work / "org", campaign_year=plan.year)
    else:
        files = generate("nation", seed, work / "org", campaign_year=plan.year, _scale=scale)
    generated = time.perf_counter() - started
    store = open_store(StoreSettings(home=work / "home", database_url=url))
    started = time.perf_counter()
    at = dt.datetime(plan.year, 11, 1, tzinfo=dt.timezone.utc)
    with store.uow() as uow:
        create_campaign(uow, plan, CAMPAIGN, at)
        import_organization(uow, CAMPAIGN, files.units, files.members, at)
        uow.commit()
    store.dispose()
    return url, {"generate_s": round(generated, 2), "import_s": round(time.perf_counter() - started, 2)}


# ----------------------------------------------------------------------------- the kiemdiem side (child processes)


def own_peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). ``ru_maxrss`` survives fork and exec on Linux, so a
    child would report at least its parent's peak; VmHWM belongs to the child's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return peak_rss_mib()


def _open(url: str, home: str):
    from kiemdiem.settings import StoreSettings  # noqa: PLC0415
    from kiemdiem.store.db import open_store  # noqa: PLC0415
    from kiemdiem.store.organization import campaign_plan  # noqa: PLC0415

    store = open_store(StoreSettings(home=Path(home), database_url=url))
    with store.uow() as uow:
        plan = campaign_plan(uow, CAMPAIGN)
    return store, plan


def child_status(url: str, home: str, now: dt.datetime) -> dict:
    from kiemdiem.settings import reminder_settings  # noqa: PLC0415
    from kiemdiem.store.queries import PartitionedStatus, campaign_status  # noqa: PLC0415

    store, plan = _open(url, home)
    started = time.perf_counter()
    with store.uow() as uow:
        status = campaign_status(uow, plan, CAMPAIGN, now, due_soon_working_days=reminder_settings().due_soon_working_days)
    built = time.perf_counter() - started
    root = next(iter(status.units))
    required, present = status.subtree[root]["*"]
    counts = status.count_states()
    started = time.perf_counter()
    rows = missing = 0
    for code in status.units:
        for row in status.for_unit(code):
            rows += 1
            missing += len(row.missing)
    read = time.perf_counter() - started
    return {
        "partitioned": isinstance(status, PartitionedStatus),
        "partitions": getattr(status, "partitions", 1),
        "units": len(status.units),
        "root": root,
        "root_required": required,
        "root_present": present,
        "root_percent": status.subtree_percent(root),
        "states": counts,
        "rows": rows,
        "missing_items": missing,
        "status_s": round(built, 2),
        "rows_s": round(read, 2),
        "peak_rss_mib": own_peak_rss_mib(),
    }


def child_planning(url: str, home: str, now: dt.datetime) -> dict:
    from kiemdiem import steps  # noqa: PLC0415

    store, plan = _open(url, home)
    open_ids = steps.open_phase_ids(plan, now)
    started = time.perf_counter()
    reminders = steps.plan_reminders(store, plan, CAMPAIGN, now, open_ids)
    escalations = steps.escalate_overdue(store, plan, CAMPAIGN, now, open_ids)
    seconds = time.perf_counter() - started
    return {
        "partitioned": steps.tree_is_large(store, CAMPAIGN),
        "open_phases": open_ids,
        "reminders": reminders,
        "escalations": escalations,
        "notices_planned": reminders + escalations,
        "planning_s": round(seconds, 2),
        "peak_rss_mib": own_peak_rss_mib(),
    }


def run_child(kind: str, url: str, home: Path, now: dt.datetime) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.nation_tick_bench", "--child", kind, "--url", url, "--home", str(home), "--now", now.isoformat()],
        check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the baselines (hand-written SQL)


def _requirements(plan) -> list[tuple]:
    rows = []
    for phase in plan.phases:
        for kind in phase.applies_to:
            for req in phase.documents:
                if req.required:
                    rows.append((kind, phase.id, req.doc_type, req.per_member, req.member_scope))
    return rows


def _values(rows: list[tuple]) -> tuple[str, list]:
    """A VALUES list with its parameters."""
    sql = ", ".join("(" + ", ".join(["%s"] * len(rows[0])) + ")" for _ in rows)
    return sql, [v for r in rows for v in r]


def _scope_sql() -> str:
    from kiemdiem.catalogue import LEADER_POSITIONS, REVIEWED_STATUSES  # noqa: PLC0415

    reviewed = ", ".join(f"'{s}'" for s in sorted(REVIEWED_STATUSES))
    leaders = ", ".join(f"'{p}'" for p in sorted(LEADER_POSITIONS))
    return (
        f"(r.scope = 'all' OR (m.status IN ({reviewed}) AND (r.scope = 'reviewed'"
        f" OR (r.scope = 'temporary' AND m.temporary_unit_id IS NOT NULL)"
        f" OR (r.scope = 'leaders' AND m.positions::jsonb ?| ARRAY[{leaders}]))))"
    )


def baseline_status(url: str, plan, now: dt.datetime) -> dict:
    """Per unit and phase: items owed (GROUP BY over units and members) and items delivered by ``now``."""
    values, params = _values(_requirements(plan))
    # Owed: per-unit documents (one item each) and per-member documents (one per member in
    # scope), added per unit and phase; a phase may have only the one or the other.
    sql = f"""
        WITH r(kind, phase_id, doc_type, per_member, scope) AS (VALUES {values}),
        owed AS (
            SELECT unit_id, phase_id, sum(n) AS n FROM (
                SELECT u.id AS unit_id, r.phase_id, count(*) AS n
                FROM units u JOIN r ON r.kind = u.kind AND NOT r.per_member
                WHERE u.campaign_id = %s GROUP BY u.id, r.phase_id
                UNION ALL
                SELECT m.unit_id, r.phase_id, count(*) AS n
                FROM members m JOIN units u ON u.id = m.unit_id JOIN r ON r.kind = u.kind AND r.per_member
                WHERE m.campaign_id = %s AND {_scope_sql()}
                GROUP BY m.unit_id, r.phase_id
            ) AS x GROUP BY unit_id, phase_id
        ),
        delivered AS (
            SELECT unit_id, phase_id, count(DISTINCT item_key) AS n FROM submissions
            WHERE campaign_id = %s AND received_at <= %s GROUP BY unit_id, phase_id
        )
        SELECT o.unit_id, o.phase_id, o.n, coalesce(d.n, 0)
        FROM owed o LEFT JOIN delivered d ON d.unit_id = o.unit_id AND d.phase_id = o.phase_id
    """
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        rows = conn.execute(sql, [*params, CAMPAIGN, CAMPAIGN, CAMPAIGN, now]).fetchall()
        seconds = time.perf_counter() - started
    return {
        "rows": len(rows),
        "required": int(sum(r[2] for r in rows)),
        "delivered": int(sum(r[3] for r in rows)),
        "seconds": round(seconds, 2),
    }


def baseline_planning(url: str, plan, now: dt.datetime) -> dict:
    """The reminder notices due at ``now``, planned by one INSERT ... SELECT into a copy of the notices table."""
    from kiemdiem.reminders import current_reminder_offset  # noqa: PLC0415

    due = [(p, current_reminder_offset(plan, p, now)) for p in plan.phases]
    rows = [
        (kind, phase.id, req.doc_type, req.per_member, req.member_scope, offset)
        for phase, offset in due if offset is not None
        for kind in phase.applies_to for req in phase.documents if req.required
    ]
    if not rows:
        return {"notices": 0, "seconds": 0.0}
    values = ", ".join("(" + ", ".join(f"%(p{i}_{j})s" for j in range(len(row))) + ")" for i, row in enumerate(rows))
    named = {f"p{i}_{j}": v for i, row in enumerate(rows) for j, v in enumerate(row)}
    sql = f"""
        INSERT INTO bench_notices (campaign_id, recipient, recipient_name, kind, step, item_key, unit_id, phase_id, doc_type, member_id, planned_at)
        WITH r(kind, phase_id, doc_type, per_member, scope, step) AS (VALUES {values}),
        items AS (
            SELECT u.id AS unit_id, r.phase_id, r.doc_type, NULL::integer AS member_id, r.step,
                   u.code || ':' || r.phase_id || ':' || r.doc_type || ':-' AS item_key
            FROM units u JOIN r ON r.kind = u.kind AND NOT r.per_member
            WHERE u.campaign_id = %(c)s
            UNION ALL
            SELECT u.id, r.phase_id, r.doc_type, m.id, r.step,
                   u.code || ':' || r.phase_id || ':' || r.doc_type || ':' || m.member_code
            FROM members m JOIN units u ON u.id = m.unit_id JOIN r ON r.kind = u.kind AND r.per_member
            WHERE m.campaign_id = %(c)s AND {_scope_sql()}
        )
        SELECT %(c)s, e.email, u.name, 'reminder', i.step, i.item_key, i.unit_id, i.phase_id, i.doc_type, i.member_id, %(now)s
        FROM items i JOIN units u ON u.id = i.unit_id
        CROSS JOIN LATERAL json_array_elements_text(u.emails::json) AS e(email)
        WHERE NOT EXISTS (
            SELECT 1 FROM submissions s WHERE s.campaign_id = %(c)s AND s.item_key = i.item_key AND s.received_at <= %(now)s
        )
        ON CONFLICT DO NOTHING
    """
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_notices")
        conn.execute("CREATE TABLE bench_notices (LIKE notices INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)")
        # The same foreign keys as the notices table: each inserted row is checked alike.
        for (definition,) in conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'notices'::regclass AND contype = 'f'"
        ).fetchall():
            conn.execute(f"ALTER TABLE bench_notices ADD {definition}")
        conn.commit()
        started = time.perf_counter()
        inserted = conn.execute(sql, {**named, "c": CAMPAIGN, "now": now}).rowcount
        conn.commit()
        seconds = time.perf_counter() - started
    return {"notices": inserted, "seconds": round(seconds, 2)}


def compare_notices(url: str) -> dict:
    """Rows of ours not in the baseline's and the reverse (reminders only, as the baseline plans)."""
    cols = "recipient, recipient_name, kind, step, item_key, unit_id, phase_id, doc_type, member_id"
    with psycopg.connect(url) as conn:
        ours_only = conn.execute(
            f"SELECT count(*) FROM (SELECT {cols} FROM notices WHERE campaign_id = %s AND kind = 'reminder' EXCEPT SELECT {cols} FROM bench_notices) x",
            (CAMPAIGN,),
        ).fetchone()[0]
        theirs_only = conn.execute(
            f"SELECT count(*) FROM (SELECT {cols} FROM bench_notices EXCEPT SELECT {cols} FROM notices WHERE campaign_id = %s AND kind = 'reminder') x",
            (CAMPAIGN,),
        ).fetchone()[0]
        conn.execute("DROP TABLE IF EXISTS bench_notices")
        conn.commit()
    return {"ours_not_in_baseline": ours_only, "baseline_not_in_ours": theirs_only}


def reminder_morning(plan) -> dt.datetime:
    """08:00 local on the day of the plan's first deadline: the reminders of offset 0 (and others) are due."""
    first = min(p.deadline for p in plan.phases)
    local = plan.calendar.local(first)
    return local.replace(hour=8, minute=0, second=0, microsecond=0)


def counts(url: str) -> dict:
    with psycopg.connect(url) as conn:
        units = conn.execute("SELECT count(*) FROM units WHERE campaign_id = %s", (CAMPAIGN,)).fetchone()[0]
        members = conn.execute("SELECT count(*) FROM members WHERE campaign_id = %s", (CAMPAIGN,)).fetchone()[0]
        submissions = conn.execute("SELECT count(*) FROM submissions WHERE campaign_id = %s", (CAMPAIGN,)).fetchone()[0]
        notices = conn.execute("SELECT count(*) FROM notices WHERE campaign_id = %s", (CAMPAIGN,)).fetchone()[0]
    return {"units": units, "members": members, "submissions": submissions, "notices_before": notices}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", choices=["auto", "template", "scaled", "province", "existing"], default="auto")
    parser.add_argument("--label", default="", help="with --source existing: what the database holds")
    parser.add_argument("--parts", default="status,planning", help="status, planning or both; a part alone replaces its section")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", choices=["status", "planning"])
    parser.add_argument("--url")
    parser.add_argument("--home")
    parser.add_argument("--now")
    args = parser.parse_args()
    if args.child:
        now = dt.datetime.fromisoformat(args.now)
        result = child_status(args.url, args.home, now) if args.child == "status" else child_planning(args.url, args.home, now)
        print(json.dumps(result))
        return
    if not pg_available():
        sys.exit(f"PostgreSQL does not answer at {PG_ADMIN_URL}")
    work = Path(tempfile.mkdtemp(prefix="kiemdiem-bench-nation-tick-"))
    setup: dict = {}
    if args.source in ("auto", "template") and template_exists():
        source = "template"
        started = time.perf_counter()
        url = from_template()
        setup["copy_template_s"] = round(time.perf_counter() - started, 2)
    elif args.source == "template":
        sys.exit(f"no template database {TEMPLATE}")
    elif args.source == "existing":
        # The database a previous run left (its notices cleared): no new copy or import.
        source = args.label or "existing database"
        url = _url(DATABASE)
        if "planning" in args.parts:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DELETE FROM notices WHERE campaign_id = %s", (CAMPAIGN,))
    else:
        source = f"nation preset scaled x{args.scale}" if args.source != "province" else "province preset"
        if args.source == "province":
            args.scale = 1.0
        url, setup = scaled_nation_or_province(work, args.source, args.scale, args.seed)
    # Fresh tables have no planner statistics (a bulk import leaves autovacuum behind): without
    # them the baseline's GROUP BY picks nested loops and takes minutes. Both sides get them.
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    setup["vacuum_analyze_s"] = round(time.perf_counter() - started, 2)
    store, plan = _open(url, str(work / "home"))
    store.dispose()
    now = reminder_morning(plan)
    data = counts(url)
    print(f"{source}: {data} at {now.isoformat()}", file=sys.stderr)

    def ratio(ours: float, base: float) -> float | None:
        return round(ours / base, 2) if base else None

    parts = set(args.parts.split(","))
    previous = {}
    if parts != {"status", "planning"}:
        # A partial run (``--parts``) on the same database replaces its section of the last results.
        path = RESULTS / "nation_tick.json"
        previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    result = {
        "source": source,
        "backend": "postgresql",
        "plan": plan.id,
        "now": now.isoformat(),
        **data,
        "setup": {**previous.get("setup", {}), **setup},
    }
    if "status" in parts:
        status_base = baseline_status(url, plan, now)
        print(f"status baseline: {status_base}", file=sys.stderr)
        status = run_child("status", url, work / "home", now)
        print(f"status: {status}", file=sys.stderr)
        result["status"] = {
            **status,
            "baseline_sql_group_by_s": status_base["seconds"],
            "baseline_rows": status_base["rows"],
            "baseline_required": status_base["required"],
            "baseline_delivered": status_base["delivered"],
            "same_required_as_baseline": status_base["required"] == status["root_required"],
            "ratio_status_to_baseline": ratio(status["status_s"], status_base["seconds"]),
            "ratio_status_and_rows_to_baseline": ratio(status["status_s"] + status["rows_s"], status_base["seconds"]),
        }
    elif "status" in previous:
        result["status"] = previous["status"]
    if "planning" in parts:
        plan_base = baseline_planning(url, plan, now)
        print(f"planning baseline: {plan_base}", file=sys.stderr)
        planning = run_child("planning", url, work / "home", now)
        print(f"planning: {planning}", file=sys.stderr)
        same = compare_notices(url)
        result["planning"] = {
            **planning,
            "baseline_insert_select_s": plan_base["seconds"],
            "baseline_notices": plan_base["notices"],
            "ratio_to_baseline": ratio(planning["planning_s"], plan_base["seconds"]),
            **same,
        }
    elif "planning" in previous:
        result["planning"] = previous["planning"]
        result["notices_before"] = previous.get("notices_before", result["notices_before"])
    peaks = [result[k]["peak_rss_mib"] for k in ("status", "planning") if k in result]
    result.update(
        {
            "peak_rss_target_mib": 1024,
            "peak_rss_met": bool(peaks) and max(peaks) < 1024,
            "bench_process_peak_rss_mib": peak_rss_mib(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other work",
        }
    )
    save("nation_tick", result)


if __name__ == "__main__":
    main()
