"""Import of the province preset (~3,800 units, ~86,500 members) on SQLite and PostgreSQL.

Ours: `import_organization` from the CSV files (read, validate every row, check the tree,
write). Baseline: a plain DB-API `executemany` of the same rows, already parsed, into the
same tables, in the same run. Target: ours within 3x of the baseline.

Both are run ``--repeat`` times, alternating on the same database (emptied in between), and
the medians are compared: the benchmark machine is shared, and one sample of either side is
at the mercy of whatever else runs at that moment.

    python -m bench.import_bench [--preset province] [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.common import fresh_pg_database, peak_rss_mib, pg_available, save
from kiemdiem.member_key import member_key
from kiemdiem.plan import load_plan
from kiemdiem.settings import StoreSettings, plans_dir
from kiemdiem.store.db import open_store
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.synth import generate

NOW = dt.datetime(2022, 11, 20, tzinfo=dt.timezone.utc)


def baseline_rows(units_csv: Path, members_csv: Path):
    """The same rows as tuples, ids assigned in file order (parents come first)."""
    units, ids, paths = [], {}, {}
    with open(units_csv, encoding="utf-8") as handle:
        for n, row in enumerate(csv.DictReader(handle), start=1):
            ids[row["code"]] = n
            path = (paths[row["parent"]] if row["parent"] else "/") + row["code"] + "/"
            paths[row["code"]] = path
            emails = json.dumps([e for e in row["emails"].split(";") if e])
            units.append((n, "bench", row["code"], row["name"], row["kind"], ids.get(row["parent"]), path, path.count("/") - 2, emails))
    members = []
    with open(members_csv, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            positions = json.dumps([p for p in row["positions"].split(";") if p])
            members.append(
                ("bench", row["member_id"], row["full_name"], ids[row["unit"]], row["email"] or None, row["joined_on"] or None,
                 row["status"], ids.get(row["temporary_unit"]) if row["temporary_unit"] else None, positions,
                 member_key(row["member_id"]))
            )
    return units, members


def run_baseline(store, units, members) -> float:
    marker = "?" if store.dialect == "sqlite" else "%s"
    unit_sql = f"INSERT INTO units (id, campaign_id, code, name, kind, parent_id, path, depth, emails) VALUES ({', '.join([marker] * 9)})"
    member_sql = (
        "INSERT INTO members (campaign_id, member_code, full_name, unit_id, email, joined_on, status, temporary_unit_id, positions, code_key) "
        f"VALUES ({', '.join([marker] * 10)})"
    )
    raw = store.engine.raw_connection()
    try:
        started = time.perf_counter()
        cursor = raw.cursor()
        cursor.executemany(unit_sql, units)
        cursor.executemany(member_sql, members)
        raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


def clear(store) -> None:
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            # DELETE leaves 90,000 dead rows that every deleted unit's foreign-key check
            # (members.temporary_unit_id has no index) scans: 10-20 s. The bench database holds
            # nothing else, so empty the tables outright; both sides then start from fresh ones.
            conn.execute(text("TRUNCATE members, units CASCADE"))
        else:
            conn.execute(text("DELETE FROM members"))
            conn.execute(text("DELETE FROM units"))


def run_ours(store, units_csv: Path, members_csv: Path) -> float:
    started = time.perf_counter()
    with store.uow() as uow:
        report = import_organization(uow, "bench", units_csv, members_csv, NOW, actor="bench")
        uow.commit()
    elapsed = time.perf_counter() - started
    assert report.members_added > 0
    return elapsed


def bench_backend(name: str, settings: StoreSettings, files, repeat: int = 3) -> dict:
    store = open_store(settings)
    plan = load_plan(plans_dir() / "KH-DUK-HT-2022.yaml")
    with store.uow() as uow:
        create_campaign(uow, plan, "bench", NOW)
        uow.commit()
    units, members = baseline_rows(files.units, files.members)
    baselines: list[float] = []
    imports: list[float] = []
    for round_ in range(repeat):
        baselines.append(run_baseline(store, units, members))
        clear(store)
        imports.append(run_ours(store, files.units, files.members))
        if round_ < repeat - 1:
            clear(store)
    baseline = statistics.median(baselines)
    ours = statistics.median(imports)
    started = time.perf_counter()
    with store.uow() as uow:
        again = import_organization(uow, "bench", files.units, files.members, NOW, actor="bench")
        uow.commit()
    reimport = time.perf_counter() - started
    assert not again.changed
    store.dispose()
    return {
        "backend": name,
        "units": len(units),
        "members": len(members),
        "baseline_executemany_s": round(baseline, 3),
        "import_s": round(ours, 3),
        "ratio_to_baseline": round(ours / baseline, 2),
        "reimport_unchanged_s": round(reimport, 3),
        "runs": {"baseline_executemany_s": [round(t, 3) for t in baselines], "import_s": [round(t, 3) for t in imports]},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="province")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; the medians are compared")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiemdiem-bench-import-"))
    files = generate(args.preset, args.seed, work / "org")
    results = [bench_backend("sqlite", StoreSettings(home=work / "sqlite"), files, args.repeat)]
    if pg_available():
        url = fresh_pg_database("kiemdiem_bench_import")
        results.append(bench_backend("postgresql", StoreSettings(home=work / "pg", database_url=url), files, args.repeat))
    save("import", {"preset": args.preset, "target": "ratio <= 3", "repeat": args.repeat, "results": results, "peak_rss_mib": peak_rss_mib()})


if __name__ == "__main__":
    main()
