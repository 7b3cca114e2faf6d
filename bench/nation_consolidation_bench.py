"""Consolidation of the whole nation on PostgreSQL (~292,700 units, 5,558,271 members, a result each).

On a copy of ``kiemdiem_nation_template`` (``bench.nation_import_bench.nation_database``), in one run:

- late branches: before anything is consolidated, the results of a few branches (15-40 members,
  spread over the tree) are taken out of ``member_results`` and kept aside; they arrive later;
- ``sql_rollup``: hand-written SQL counting the final levels of every unit's subtree (GROUP BY
  over the tree), in this process. Two spellings: ``prefix``, each unit's counts added to every
  ancestor named in its materialised path (``unnest`` of the path), and ``range``, the province
  benchmark's (descendants by a ``[a.path, a.path || '~')`` range on the ``(campaign_id, path)``
  index; at this size the planner must be kept from parallel plans, which drive the range from
  the wrong side, so it runs with ``max_parallel_workers_per_gather = 0``). The faster one is
  the baseline; its counts are checked against the stored snapshots of the upper units;
- ``full``: the first ``consolidate_campaign`` (no snapshot yet), in a child process (its own peak
  RSS: ``VmHWM``, reported by the child): above ``PARTITION_MEMBERS`` members it goes in parts
  (``_full_in_parts``): each part's members read by path range, consolidated, hashed and written,
  then the upper units rolled up from the parts' root summaries;
- ``incremental``: each late branch delivers (``record_results``, in a child process of its own:
  at this size it loads the campaign's whole member list, its peak is reported apart), then
  ``consolidate_campaign(changed_units=...)`` in another child process: the branch and its
  ancestors get new versions, the offices their diff emails. The median counts (target under 1 s);
  then the tick's next step, ``steps.assemble_dossiers`` of those units, in a child of its own
  (the branch's and its base organization's dossiers; the units above have no phase with
  documents in this plan): time and peak RSS;
- ``full_recompute`` (``--verify``): ``consolidate_campaign(changed_units=None)`` after the late
  runs, in a child process: a full run in parts on the final data; it must make no new version
  (the incremental runs equal a full recompute);
- ``cli``: ``kiemdiem consolidate --campaign nation --json`` in a child process (prints the root's
  consolidation without loading the tree's snapshots).

Ratios: full / sql_rollup (target within 2x); incremental median (target < 1 s); peak RSS of
each consolidating process (target < 1 GiB). Results go to ``bench/results/nation_consolidation.json``.

    python -m bench.nation_consolidation_bench [--late 3] [--verify] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import PG_ADMIN_URL, peak_rss_mib, save

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = "nation"
BENCH_DB = "kiemdiem_bench_nation_consolidation"
ICT = dt.timezone(dt.timedelta(hours=7))
FIRST_RUN_AT = dt.datetime(2023, 12, 10, 9, tzinfo=ICT)
HELD = "bench_held_back_results"

OWN = """
    SELECT m.unit_id AS unit_id, r.final_level AS level, COUNT(*) AS n
    FROM member_results r JOIN members m ON m.id = r.member_id
    WHERE r.campaign_id = %(c)s AND r.current = TRUE AND r.final_level IS NOT NULL
    GROUP BY m.unit_id, r.final_level
"""
ROLLUP_SQL = {
    "prefix": f"""
WITH own AS ({OWN})
SELECT up.code, own.level, SUM(own.n)
FROM own JOIN units d ON d.id = own.unit_id
CROSS JOIN LATERAL unnest(string_to_array(trim(both '/' from d.path), '/')) AS up(code)
WHERE d.campaign_id = %(c)s
GROUP BY up.code, own.level
""",
    "range": f"""
WITH own AS ({OWN})
SELECT a.code, own.level, SUM(own.n)
FROM units a CROSS JOIN units d CROSS JOIN own
WHERE a.campaign_id = %(c)s AND d.campaign_id = a.campaign_id AND d.path >= a.path AND d.path < a.path || '~'
  AND own.unit_id = d.id
GROUP BY a.code, own.level
""",
}


def url_of(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


# --------------------------------------------------------------------------- children (own process, own peak RSS)


def _store(db: str):
    from kiemdiem.settings import StoreSettings  # noqa: PLC0415
    from kiemdiem.store.db import open_store  # noqa: PLC0415

    return open_store(StoreSettings(home=Path(tempfile.gettempdir()) / "kiemdiem-nation-consolidation", database_url=url_of(db)))


def _plan(store):
    from kiemdiem.store.organization import campaign_plan  # noqa: PLC0415

    with store.uow() as uow:
        return campaign_plan(uow, CAMPAIGN)


def child_full(db: str, at: str, changed: str) -> dict:
    from kiemdiem.store.snapshots import consolidate_campaign  # noqa: PLC0415

    store = _store(db)
    plan = _plan(store)
    started = time.perf_counter()
    run = consolidate_campaign(store, plan, CAMPAIGN, dt.datetime.fromisoformat(at), changed_units=None, reason="bench: nation")
    seconds = time.perf_counter() - started
    store.dispose()
    return {"seconds": round(seconds, 3), "mode": run.mode, "parts": run.parts, "units_recomputed": run.recomputed,
            "snapshots_written": len(run.units_updated), "steps": run.timings}


def child_deliver(db: str, at: str, branch: str) -> dict:
    """The late branch delivers: its held-back results, recorded as ``record_results`` records them
    (a process of its own: at national scale ``record_results`` loads the campaign's whole member
    list, which is not consolidation's memory)."""
    from kiemdiem.consolidation import MemberResult  # noqa: PLC0415
    from kiemdiem.store.results import record_results  # noqa: PLC0415

    store = _store(db)
    plan = _plan(store)
    with psycopg.connect(url_of(db)) as conn:
        rows = conn.execute(
            f"SELECT m.member_code, u.code, h.self_level, h.proposed_level, h.final_level, h.disciplined, h.sick_leave_months,"
            f" h.absent, h.score, h.note, h.has_self_review FROM {HELD} h JOIN members m ON m.id = h.member_id"
            f" JOIN units u ON u.id = h.unit_id WHERE u.code = %s ORDER BY m.member_code", (branch,),
        ).fetchall()
    results = [MemberResult(code, unit, s, p, f, d, float(sick), a, score, note, review)
               for code, unit, s, p, f, d, sick, a, score, note, review in rows]
    started = time.perf_counter()
    with store.uow() as uow:
        changed = record_results(uow, plan, CAMPAIGN, dt.datetime.fromisoformat(at), results, (), actor="bench")
        uow.commit()
    seconds = time.perf_counter() - started
    store.dispose()
    return {"branch": branch, "members": len(results), "seconds": round(seconds, 3), "changed_units": sorted(changed)}


def child_incremental(db: str, at: str, changed: str) -> dict:
    """One ``consolidate_campaign`` after a delivery (``changed``: the units it changed, comma-separated)."""
    from kiemdiem.store.snapshots import consolidate_campaign  # noqa: PLC0415

    store = _store(db)
    plan = _plan(store)
    units = set(changed.split(","))
    started = time.perf_counter()
    run = consolidate_campaign(store, plan, CAMPAIGN, dt.datetime.fromisoformat(at), changed_units=units, reason=f"bench: late {changed}")
    seconds = time.perf_counter() - started
    store.dispose()
    return {"seconds": round(seconds, 4), "mode": run.mode, "steps": run.timings,
            "seconds_without_emails": round(seconds - run.timings.get("notify", 0.0), 4),
            "units_updated": len(run.units_updated), "units_read": run.units_read, "versions": run.versions,
            "emails_queued": len(run.outbox_ids)}


def child_dossiers(db: str, at: str, units: str) -> dict:
    """The tick's next step after a late result: ``steps.assemble_dossiers`` of the units given new
    versions (``units``, comma-separated); those with phases that have documents get their dossiers."""
    from kiemdiem import steps  # noqa: PLC0415

    store = _store(db)
    plan = _plan(store)
    started = time.perf_counter()
    built = steps.assemble_dossiers(store, plan, CAMPAIGN, dt.datetime.fromisoformat(at), units.split(","))
    seconds = time.perf_counter() - started
    store.dispose()
    return {"seconds": round(seconds, 3), "dossiers": [f"{d['unit']}/{d['phase']}" for d in built],
            "changed": sum(1 for d in built if d["changed"])}


def child_cli(db: str, at: str, _unused: str) -> dict:
    """``kiemdiem consolidate --campaign nation --json`` as the console script runs it."""
    os.environ["KIEMDIEM_DATABASE_URL"] = url_of(db)
    os.environ.setdefault("KIEMDIEM_HOME", str(Path(tempfile.gettempdir()) / "kiemdiem-nation-consolidation"))
    from deployments.cli import main  # noqa: PLC0415

    sys.argv = ["kiemdiem", "consolidate", "--campaign", CAMPAIGN, "--at", at, "--json"]
    started = time.perf_counter()
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    saved = os.dup(1)
    with out.open("w") as handle:
        os.dup2(handle.fileno(), 1)
        try:
            main()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
    seconds = time.perf_counter() - started
    printed = json.loads(out.read_text())
    out.unlink()
    units = printed["units"]
    return {"seconds": round(seconds, 3), "mode": printed["run"]["mode"], "printed_units": [u["code"] for u in units],
            "root_members_total": units[0]["summary"]["members"]["total"] if units else None}


CHILDREN = {"full": child_full, "deliver": child_deliver, "incremental": child_incremental, "dossiers": child_dossiers, "cli": child_cli}


def own_peak_rss_mib() -> float:
    """This process's peak RSS since it started its program (``VmHWM``). Its rusage would also count
    what the parent held when it forked this process: Linux keeps that across ``exec``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return peak_rss_mib()


def run_child(kind: str, *args: str) -> dict:
    """``kind`` in a child process: its result, wall time and peak RSS (its own rusage)."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "bench.nation_consolidation_bench", "--child", kind, *args, str(out)], cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{kind} child failed with exit code {code}")
    result = json.loads(out.read_text())
    out.unlink()
    result["process_wall_seconds"] = round(time.perf_counter() - started, 3)
    result["rusage_maxrss_mib"] = round(usage.ru_maxrss / 1024, 1)  # includes the parent's RSS at fork (see own_peak_rss_mib)
    return result


# --------------------------------------------------------------------------- this process


def sql_rollup(conn, form: str) -> tuple[float, dict[str, dict[str, int]]]:
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")
        if form == "range":
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        started = time.perf_counter()
        rows = conn.execute(ROLLUP_SQL[form], {"c": CAMPAIGN}).fetchall()
        seconds = time.perf_counter() - started
    out: dict[str, dict[str, int]] = {}
    for code, level, n in rows:
        out.setdefault(code, {})[level] = int(n)
    return seconds, out


def hold_back(conn, count: int) -> list[str]:
    """Deterministic late branches (15-40 members, spread over the tree); their results moved aside."""
    candidates = [row[0] for row in conn.execute(
        "SELECT u.code FROM units u JOIN members m ON m.unit_id = u.id WHERE u.campaign_id = %s AND u.kind = 'chi_bo_truc_thuoc'"
        " GROUP BY u.code HAVING COUNT(*) BETWEEN 15 AND 40 ORDER BY u.code", (CAMPAIGN,),
    )]
    step = max(1, len(candidates) // (count + 1))
    late = [candidates[step * (i + 1) % len(candidates)] for i in range(count)]
    conn.execute(f"DROP TABLE IF EXISTS {HELD}")
    conn.execute(
        f"CREATE TABLE {HELD} AS SELECT r.* FROM member_results r JOIN members m ON m.id = r.member_id JOIN units u ON u.id = m.unit_id"
        " WHERE u.campaign_id = %s AND u.code = ANY(%s)", (CAMPAIGN, late),
    )
    conn.execute(f"DELETE FROM member_results r USING {HELD} h WHERE r.id = h.id")
    return late


def check_rollup(db: str, counts: dict[str, dict[str, int]]) -> int:
    """The baseline's level counts equal the stored snapshots' for the units above the base organizations."""
    from kiemdiem.rules.base import LEVELS  # noqa: PLC0415
    from kiemdiem.store.snapshots import latest_snapshots  # noqa: PLC0415

    with psycopg.connect(url_of(db)) as conn:
        codes = [row[0] for row in conn.execute("SELECT code FROM units WHERE campaign_id = %s AND depth <= 2", (CAMPAIGN,))]
    store = _store(db)
    with store.uow() as uow:
        stored = latest_snapshots(uow, CAMPAIGN, codes)
    store.dispose()
    for code in codes:
        levels = stored[code]["payload"]["members"]["levels"]
        got = {lv: levels[lv]["count"] for lv in LEVELS if levels[lv]["count"]}
        assert got == counts.get(code, {}), f"{code}: SQL {counts.get(code)} != snapshot {got}"
    return len(codes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--late", type=int, default=3, help="late branches (incremental runs); the median counts")
    parser.add_argument("--verify", action="store_true", help="a full recompute after the late runs must make no new version")
    parser.add_argument("--no-range", action="store_true", help="skip the (slow) range spelling of the SQL rollup")
    parser.add_argument("--keep", action="store_true", help="leave the benchmark database behind")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "DB", "AT", "ARG"), help=argparse.SUPPRESS)
    parser.add_argument("out", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, db, at, extra = args.child
        result = CHILDREN[kind](db, at, extra)
        result["peak_rss_mib"] = own_peak_rss_mib()
        Path(args.out).write_text(json.dumps(result))
        return 0

    from bench.nation_import_bench import nation_database  # noqa: PLC0415

    report: dict = {
        "benchmark": "nation_consolidation",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU (shared)",
        "targets": {"ratio_full_to_sql": "<= 2", "incremental_median_seconds": "< 1", "peak_rss_mib": "< 1024 (each consolidating process)"},
    }
    started = time.perf_counter()
    nation_database(BENCH_DB)
    report["setup_clone_seconds"] = round(time.perf_counter() - started, 1)
    try:
        with psycopg.connect(url_of(BENCH_DB), autocommit=True) as conn:
            # The template's import is logged at the wall-clock time it ran; a run before that
            # would see it as a change still to come (and never trust the tree): consolidate after it.
            logged = conn.execute("SELECT MAX(at) FROM event_log WHERE campaign_id = %s", (CAMPAIGN,)).fetchone()[0]
            first_at = max(FIRST_RUN_AT, (logged + dt.timedelta(days=1)).astimezone(ICT).replace(hour=9, minute=0, second=0, microsecond=0))
            report["first_run_at"] = first_at.isoformat()
            late = hold_back(conn, args.late)
            conn.execute("ANALYZE")
            stats = conn.execute(
                "SELECT (SELECT COUNT(*) FROM units WHERE campaign_id = %(c)s), (SELECT COUNT(*) FROM members WHERE campaign_id = %(c)s),"
                " (SELECT COUNT(*) FROM member_results WHERE campaign_id = %(c)s), (SELECT COUNT(*) FROM org_results WHERE campaign_id = %(c)s),"
                " (SELECT COUNT(*) FROM units WHERE campaign_id = %(c)s AND kind IN ('chi_bo_co_so', 'chi_bo_truc_thuoc'))",
                {"c": CAMPAIGN},
            ).fetchone()
            report.update(dict(zip(("units", "members", "member_results_at_first_run", "org_results", "branches"), stats)))
            report["late_branches"] = late
            rollups: dict[str, list[float]] = {"prefix": [], "range": []}
            seconds, counts = sql_rollup(conn, "prefix")
            rollups["prefix"].append(seconds)
            if not args.no_range:
                seconds, range_counts = sql_rollup(conn, "range")
                rollups["range"].append(seconds)
                assert range_counts == counts, "the two spellings of the rollup disagree"
                del range_counts
            full = run_child("full", BENCH_DB, first_at.isoformat(), "-")
            assert full["mode"] == "full" and full["snapshots_written"] == report["units"], full
            seconds, counts = sql_rollup(conn, "prefix")
            rollups["prefix"].append(seconds)
        report["sql_rollup_seconds"] = {form: round(min(times), 3) for form, times in rollups.items() if times}
        report["sql_rollup_runs_seconds"] = {form: [round(t, 3) for t in times] for form, times in rollups.items() if times}
        baseline_form = min(report["sql_rollup_seconds"], key=report["sql_rollup_seconds"].get)
        baseline = report["sql_rollup_seconds"][baseline_form]
        report["sql_rollup_baseline"] = baseline_form
        report["rollup_checked_units"] = check_rollup(BENCH_DB, counts)
        del counts
        report["full"] = full
        report["full_seconds"] = full["seconds"]
        report["full_peak_rss_mib"] = full["peak_rss_mib"]
        report["ratio_full_to_sql"] = round(full["seconds"] / baseline, 2)
        report["ratio_full_to_sql_by_form"] = {form: round(full["seconds"] / s, 2) for form, s in report["sql_rollup_seconds"].items()}

        incremental = []
        for i, branch in enumerate(late, start=1):
            at = first_at + dt.timedelta(days=i)
            delivered = run_child("deliver", BENCH_DB, at.isoformat(), branch)
            run = run_child("incremental", BENCH_DB, at.isoformat(), ",".join(delivered["changed_units"]))
            assert run["mode"] == "incremental", run
            run.update({"branch": branch, "members": delivered["members"], "record_results_seconds": delivered["seconds"],
                        "record_results_peak_rss_mib": delivered["peak_rss_mib"]})
            dossiers = run_child("dossiers", BENCH_DB, at.isoformat(), ",".join(run["versions"]))
            assert dossiers["dossiers"], dossiers  # the branch's and its base organization's, at least
            run["dossiers"] = dossiers
            incremental.append(run)
        report["incremental"] = incremental
        report["incremental_median_seconds"] = round(statistics.median(r["seconds"] for r in incremental), 4)
        report["incremental_without_emails_median_seconds"] = round(statistics.median(r["seconds_without_emails"] for r in incremental), 4)
        report["incremental_peak_rss_mib"] = max(r["peak_rss_mib"] for r in incremental)
        report["dossiers_median_seconds"] = round(statistics.median(r["dossiers"]["seconds"] for r in incremental), 3)
        report["dossiers_peak_rss_mib"] = max(r["dossiers"]["peak_rss_mib"] for r in incremental)
        last = first_at + dt.timedelta(days=len(late))
        if args.verify:
            again = run_child("full", BENCH_DB, last.isoformat(), "-")
            assert again["snapshots_written"] == 0, "a full recompute disagrees with the incremental runs"
            report["full_recompute"] = again
        report["cli"] = run_child("cli", BENCH_DB, last.isoformat(), "-")
        assert report["cli"]["printed_units"] == ["VN"] and report["cli"]["root_members_total"] == report["members"], report["cli"]
        report["peak_rss_mib"] = max(report["full_peak_rss_mib"], report["incremental_peak_rss_mib"], report["cli"]["peak_rss_mib"],
                                     report["dossiers_peak_rss_mib"],
                                     report.get("full_recompute", {}).get("peak_rss_mib", 0))
        report["bench_process_peak_rss_mib"] = peak_rss_mib()
        report["met"] = {
            "ratio_full_to_sql": report["ratio_full_to_sql"] <= 2,
            "incremental_median_seconds": report["incremental_median_seconds"] < 1,
            "peak_rss_mib": report["peak_rss_mib"] < 1024,
        }
    finally:
        if not args.keep:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    save("nation_consolidation", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
