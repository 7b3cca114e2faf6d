"""Import of the nation preset (~293,000 units, ~5.56 million members) on PostgreSQL, in bounded memory.

In one run, on one fresh database:

- the nation preset is generated, streaming, into a temporary directory (in this process);
- baseline: a plain COPY of the same rows into the same tables (``units`` with ids and paths
  computed while reading, then ``members``), no checks at all, in a child process;
  the tables are then emptied (TRUNCATE … RESTART IDENTITY);
- ours: ``kiemdiem org import`` (the console script's own ``main``), in a child process:
  every row checked, staged with COPY, checked set-based, merged; then the same command
  again on the same files (a re-import that must change nothing).

Each child's peak RSS is read with ``os.wait4`` (its own rusage): the generator's memory, in
this process, is not mixed in. Target: peak < 1 GiB for kiemdiem's process.

The imported database is then VACUUM ANALYZEd and left behind as the PostgreSQL TEMPLATE
database ``kiemdiem_nation_template`` (campaign ``nation``, plan ``plans/187-KH-DU-2023.yaml``),
so other benchmarks get the nation without importing it again::

    from bench.nation_import_bench import nation_database
    url = nation_database("kiemdiem_bench_x")   # CREATE DATABASE … TEMPLATE kiemdiem_nation_template

With ``--results`` (also on its own: ``--results-only``, on the existing template) every member
gets a current classification result (``kiemdiem.synth_nation_results``), written as
``kiemdiem.store.results``' writer would write it.

    python -m bench.nation_import_bench [--seed 1] [--org-dir DIR] [--no-reimport] [--no-template] [--results]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import PG_ADMIN_URL, fresh_pg_database, peak_rss_mib, save
from kiemdiem.member_key import member_key

REPO = Path(__file__).resolve().parent.parent
TEMPLATE_DB = "kiemdiem_nation_template"
BUILD_DB = "kiemdiem_nation_build"
CAMPAIGN = "nation"
PLAN = "187-KH-DU-2023.yaml"
ICT = dt.timezone(dt.timedelta(hours=7))
CREATED_AT = dt.datetime(2023, 11, 20, 8, tzinfo=ICT)
MEMORY_TARGET_MIB = 1024


def database_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def nation_database(name: str) -> str:
    """A fresh database ``name`` holding the nation (a copy of ``kiemdiem_nation_template``); its URL.

    Copying takes about a minute; the template must not be open elsewhere meanwhile."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE_DB,)).fetchone() is None:
            raise RuntimeError(f"no {TEMPLATE_DB}: run `python -m bench.nation_import_bench` first")
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE_DB}')
    return database_url(name)


# --------------------------------------------------------------------------- children


def child_baseline(url: str, org_dir: Path, out: Path) -> None:
    """A plain COPY of the files' rows into ``units`` and ``members``: no checks, one transaction."""
    started = time.perf_counter()
    ids: dict[str, int] = {}
    paths: dict[str, str] = {}
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with open(org_dir / "units.csv", encoding="utf-8", newline="") as handle, cursor.copy(
            "COPY units (id, campaign_id, code, name, kind, parent_id, path, depth, emails) FROM STDIN"
        ) as copy:
            reader = csv.reader(handle)
            next(reader)
            for number, (code, name, kind, parent, emails) in enumerate(reader, start=1):
                ids[code] = number
                path = paths[code] = (paths[parent] if parent else "/") + code + "/"
                copy.write_row((number, CAMPAIGN, code, name, kind, ids.get(parent), path, path.count("/") - 2,
                                json.dumps([e for e in emails.split(";") if e])))
        paths.clear()
        cursor.execute("SELECT setval(pg_get_serial_sequence('units', 'id'), %s)", (len(ids),))
        members = 0
        encoded: dict[str, str] = {}
        with open(org_dir / "members.csv", encoding="utf-8", newline="") as handle, cursor.copy(
            "COPY members (campaign_id, member_code, full_name, unit_id, email, joined_on, status, temporary_unit_id, positions, code_key)"
            " FROM STDIN"
        ) as copy:
            reader = csv.reader(handle)
            next(reader)
            for member_id, full_name, unit, email, joined, status, temporary, positions in reader:
                if positions not in encoded:
                    encoded[positions] = json.dumps([p for p in positions.split(";") if p])
                copy.write_row((CAMPAIGN, member_id, full_name, ids[unit], email or None, joined or None, status,
                                ids[temporary] if temporary else None, encoded[positions], member_key(member_id)))
                members += 1
        conn.commit()
    out.write_text(json.dumps({"seconds": round(time.perf_counter() - started, 3), "units": len(ids), "members": members,
                               "peak_rss_mib": peak_rss_mib()}))


class _PhaseLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def child_import(url: str, org_dir: Path, home: Path, out: Path) -> None:
    """``kiemdiem org import`` as users run it (the console script's ``main``), timed."""
    os.environ["KIEMDIEM_DATABASE_URL"] = url
    os.environ["KIEMDIEM_HOME"] = str(home)
    phases = _PhaseLog()
    logger = logging.getLogger("kiemdiem.store.bulk_import")
    logger.setLevel(logging.INFO)
    logger.addHandler(phases)
    from deployments.cli import main  # noqa: PLC0415 - what the console script runs

    sys.argv = ["kiemdiem", "org", "import", "--campaign", CAMPAIGN,
                "--units", str(org_dir / "units.csv"), "--members", str(org_dir / "members.csv")]
    started = time.perf_counter()
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out.write_text(json.dumps({"seconds": round(time.perf_counter() - started, 3), "exit_code": code,
                               "phases": phases.lines, "peak_rss_mib": peak_rss_mib()}))


def run_child(kind: str, *args: str) -> dict:
    """Run ``kind`` in a child process; its result, wall time and peak RSS (from its own rusage)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "bench.nation_import_bench", "--child", kind, *args, str(out)], cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{kind} child failed with exit code {process.returncode}")
    result = json.loads(out.read_text())
    out.unlink()
    result["process_wall_s"] = round(wall, 3)
    result["process_peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    return result


# --------------------------------------------------------------------------- the run


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("units", "members", "member_results")}


def make_template(url: str, template: str = TEMPLATE_DB) -> None:
    """VACUUM ANALYZE the built database and make it the template ``template`` (replacing it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone():
            conn.execute(f"ALTER DATABASE {template} WITH IS_TEMPLATE false")
            conn.execute(f"DROP DATABASE {template} WITH (FORCE)")
        conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{BUILD_DB}'")
        conn.execute(f"ALTER DATABASE {BUILD_DB} RENAME TO {template}")
        conn.execute(f"ALTER DATABASE {template} WITH IS_TEMPLATE true")


def reopen_template(template: str = TEMPLATE_DB) -> str:
    """The template back as ``kiemdiem_nation_build`` (writable), to add to it."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BUILD_DB} WITH (FORCE)")
        conn.execute(f"ALTER DATABASE {template} WITH IS_TEMPLATE false")
        conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{template}'")
        conn.execute(f"ALTER DATABASE {template} RENAME TO {BUILD_DB}")
    return database_url(BUILD_DB)


def add_results(url: str, seed: int) -> dict:
    from kiemdiem.synth_nation_results import write_nation_results  # noqa: PLC0415

    started = time.perf_counter()
    written = write_nation_results(url, CAMPAIGN, seed)
    return {**written, "seconds": round(time.perf_counter() - started, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--org-dir", type=Path, help="use these units.csv/members.csv instead of generating")
    parser.add_argument("--no-reimport", action="store_true")
    parser.add_argument("--no-template", action="store_true", help="drop the database instead of keeping it as the template")
    parser.add_argument("--results", action="store_true", help="add every member's classification result to the template")
    parser.add_argument("--results-only", action="store_true", help="only add the results to the existing template")
    parser.add_argument("--template", default=TEMPLATE_DB, help="name of the template database to leave behind")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "baseline":
            child_baseline(rest[0], Path(rest[1]), Path(rest[2]))
        else:
            child_import(rest[0], Path(rest[1]), Path(rest[2]), Path(rest[3]))
        return 0
    if args.results_only:
        url = reopen_template(args.template)
        result = add_results(url, args.seed)
        make_template(url, args.template)
        print(json.dumps({"results": result, "counts": counts(database_url(args.template))}, indent=2))
        return 0

    from kiemdiem.plan import load_plan  # noqa: PLC0415
    from kiemdiem.settings import StoreSettings, plans_dir  # noqa: PLC0415
    from kiemdiem.store.db import open_store  # noqa: PLC0415
    from kiemdiem.store.organization import create_campaign  # noqa: PLC0415
    from kiemdiem.synth import generate  # noqa: PLC0415

    plan = load_plan(plans_dir() / PLAN)
    report: dict = {
        "benchmark": "nation_import",
        "preset": "nation",
        "seed": args.seed,
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU",
        "target": f"peak RSS of the importing process < {MEMORY_TARGET_MIB} MiB",
    }
    with tempfile.TemporaryDirectory(prefix="kiemdiem-bench-nation-") as tmp:
        work = Path(tmp)
        org_dir = args.org_dir
        if org_dir is None:
            org_dir = work / "org"
            started = time.perf_counter()
            files = generate("nation", args.seed, org_dir, campaign_year=plan.year)
            report["generated"] = {"units": files.unit_count, "branches": files.branch_count, "members": files.member_count,
                                   "seconds": round(time.perf_counter() - started, 3), "peak_rss_mib": peak_rss_mib()}
        report["files_mib"] = {name: round((org_dir / f"{name}.csv").stat().st_size / 2**20, 1) for name in ("units", "members")}
        url = fresh_pg_database(BUILD_DB)
        store = open_store(StoreSettings(home=work / "home", database_url=url))
        with store.uow() as uow:
            create_campaign(uow, plan, CAMPAIGN, CREATED_AT, actor="bench")
            uow.commit()
        store.dispose()

        baseline = run_child("baseline", url, str(org_dir))
        print(f"baseline COPY: {baseline['seconds']} s", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE members, units RESTART IDENTITY CASCADE")
            conn.execute("CHECKPOINT")
        ours = run_child("import", url, str(org_dir), str(work / "home"))
        print(f"import: {ours['seconds']} s", flush=True)
        stored = counts(url)
        assert ours["exit_code"] == 0 and stored["units"] == baseline["units"] and stored["members"] == baseline["members"], (ours, stored)
        report["rows"] = {"units": stored["units"], "members": stored["members"]}
        report["baseline_copy"] = baseline
        report["import"] = ours
        report["baseline_copy_s"] = baseline["seconds"]
        report["import_s"] = ours["seconds"]
        report["ratio_to_baseline"] = round(ours["seconds"] / baseline["seconds"], 2)
        if not args.no_reimport:
            again = run_child("import", url, str(org_dir), str(work / "home"))
            assert again["exit_code"] == 0 and counts(url) == stored
            assert any("members merged" in line and "'added': 0, 'updated': 0" in line for line in again["phases"]), again
            report["reimport"] = again
            report["reimport_unchanged_s"] = again["seconds"]
        peaks = [ours["process_peak_rss_mib"]] + ([report["reimport"]["process_peak_rss_mib"]] if "reimport" in report else [])
        report["peak_rss_mib"] = max(peaks)
        report["target_met"] = report["peak_rss_mib"] < MEMORY_TARGET_MIB
        if args.results:
            report["results"] = add_results(url, args.seed)
        if args.no_template:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE {BUILD_DB} WITH (FORCE)")
        else:
            make_template(url, args.template)
            report["template"] = {"database": args.template, "campaign": CAMPAIGN, "plan": f"plans/{PLAN}",
                                  "counts": counts(database_url(args.template))}
    report["bench_process_peak_rss_mib"] = peak_rss_mib()
    save("nation_import" if args.org_dir is None else "nation_import_dry_run", report)
    return 0


def readme_section(data: dict) -> list[str]:
    """The bench/README.md section for ``bench.report`` (nation import, issue 6)."""
    rows = data["rows"]
    lines = [
        "## Nation import (issue 6)",
        "",
        f"Preset `nation` on PostgreSQL: {rows['units']} units, {rows['members']} members "
        f"({data['files_mib']['members']} MiB member file). Ours: `kiemdiem org import` in its own process: every row "
        "checked, the member file streamed a chunk at a time into a TEMP table with COPY, duplicates and branches checked "
        "in SQL, merged with INSERT … SELECT / UPDATE … FROM, one transaction. Baseline: a plain COPY of the same rows "
        "into the same tables, no checks, in the same run. Target: peak RSS of the importing process < 1 GiB.",
        "",
        "| baseline COPY | import | ratio | re-import (no change) | peak RSS: import / re-import | target |",
        "|---|---|---|---|---|---|",
        f"| {data['baseline_copy_s']} s | {data['import_s']} s | {data['ratio_to_baseline']}× | "
        f"{data.get('reimport_unchanged_s', '–')} s | {data['import']['process_peak_rss_mib']} / "
        f"{data.get('reimport', {}).get('process_peak_rss_mib', '–')} MiB | {'met' if data['target_met'] else '**missed**'} |",
        "",
    ]
    if "template" in data:
        lines += [f"The imported database is kept as the template `{data['template']['database']}` (campaign "
                  f"`{data['template']['campaign']}`, {data['template']['plan']}); "
                  "`bench.nation_import_bench.nation_database(name)` copies it.", ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
