"""Classification results for a whole nation, streaming: ``kiemdiem.synth_results`` at 5.6 million members.

``generate_results`` holds every member and every result: at national scale that is gigabytes.
Here the members are read from the database base organization by base organization (sorted
as ``generate_results`` walks them), each base's results are drawn and written at once, and
only the tree stays in memory. The draws are ``generate_results``' own, in the same order from
the same ``random.Random(seed)``: for the same organization and seed the results are the same.

``write_nation_results`` writes them on PostgreSQL with COPY, as the rows
``kiemdiem.store.results.record_results`` would write for a campaign with no result yet
(member results submitted by the member's branch, organization results decided by the parent
committee, no submission, current), with its ``results.recorded`` event and consolidation lease.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterable, Iterator, Sequence

import psycopg

from kiemdiem.consolidation import MemberRecord, MemberResult, OrgResult, UnitNode
from kiemdiem.plan import parse_plan
from kiemdiem.rules.base import BASE_KINDS, get_rule_set
from kiemdiem.store.results import CHANGE_ACTIONS, lease_name
from kiemdiem.synth_results import base_member_results, org_results  # the draws are synth_results' own

ICT = dt.timezone(dt.timedelta(hours=7))
RESULTS_AT = dt.datetime(2023, 12, 8, 9, tzinfo=ICT)
RECORDED = "results.recorded"  # as record_results logs it
assert RECORDED in CHANGE_ACTIONS


def base_of_units(units: Sequence[UnitNode]) -> dict[str, str]:
    """Each unit's base organization (itself, or its nearest ancestor of a base kind; else itself)."""
    by_code = {u.code: u for u in units}
    out: dict[str, str] = {}
    for unit in units:
        current: str | None = unit.code
        while current is not None and current in by_code and by_code[current].kind not in BASE_KINDS:
            current = by_code[current].parent_code
        out[unit.code] = current if current is not None and current in by_code else unit.code
    return out


def stream_results(
    units: Sequence[UnitNode],
    bases: Iterable[tuple[str, Sequence[MemberRecord]]],
    seed: int,
    evaluation_date: dt.date,
    *,
    rule_set: str = "124/25",
    breach_share: float = 0.05,
) -> tuple[list[OrgResult], Iterator[MemberResult]]:
    """``generate_results`` a base at a time: the organizations' results, and an iterator of the
    members' results. ``bases`` gives each base organization's members sorted by member id, the
    bases in code order (as ``generate_results`` groups them). Take the iterator once, in order."""
    rng = random.Random(seed)
    rules = get_rule_set(rule_set)
    orgs = org_results(units, rng, breach_share)
    org_level = {r.unit_code: r.level for r in orgs}

    def members() -> Iterator[MemberResult]:
        for _base, group in bases:
            yield from base_member_results(group, rng, rules, evaluation_date, org_level, breach_share)[0]

    return orgs, members()


# --------------------------------------------------------------------------- writing on PostgreSQL


def _pg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def write_nation_results(url: str, campaign_id: str, seed: int = 1, received_at: dt.datetime = RESULTS_AT,
                         *, breach_share: float = 0.05, fetch_rows: int = 20_000) -> dict:
    """Give every member of ``campaign_id`` (which has no result yet) a current result, and every
    classifiable organization its committee's decision, as ``record_results`` would record them.

    Members are read a base organization at a time with a server-side cursor, results COPYed
    into a TEMP table, then inserted in member-code order (as ``record_results`` inserts the
    sorted list of ``generate_results``). One transaction. Returns the row counts."""
    url = _pg_url(url)
    with psycopg.connect(url) as writer, psycopg.connect(url) as reader:
        cursor = writer.cursor()
        plan_text = cursor.execute("SELECT plan_text FROM campaigns WHERE id = %s", (campaign_id,)).fetchone()
        if plan_text is None:
            raise ValueError(f"no campaign '{campaign_id}'")
        plan = parse_plan(plan_text[0], source=f"campaign {campaign_id}")
        cursor.execute("INSERT INTO leases (name, holder, expires_at) VALUES (%s, NULL, NULL) ON CONFLICT (name) DO NOTHING",
                       (lease_name(campaign_id),))
        cursor.execute("SELECT name FROM leases WHERE name = %s FOR UPDATE", (lease_name(campaign_id),))
        for table in ("member_results", "org_results"):
            if cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE campaign_id = %s)", (campaign_id,)).fetchone()[0]:
                raise ValueError(f"campaign '{campaign_id}' already has {table}: this writer only records a first result")
        rows = cursor.execute(
            "SELECT u.id, u.code, u.name, u.kind, p.code FROM units u LEFT JOIN units p ON p.id = u.parent_id WHERE u.campaign_id = %s",
            (campaign_id,),
        ).fetchall()
        unit_id = {code: uid for uid, code, _, _, _ in rows}
        units = [UnitNode(code, name, kind, parent) for _, code, name, kind, parent in rows]
        del rows
        base_of = base_of_units(units)

        cursor.execute(
            "CREATE TEMP TABLE kd_member_results (member_code text, unit_id integer, self_level text, proposed_level text,"
            " final_level text, disciplined boolean, sick_leave_months double precision, absent boolean, score double precision,"
            " note text, has_self_review boolean) ON COMMIT DROP"
        )
        # Members are read on a second connection (a server-side cursor, while the first COPYs
        # the results); the base organization of each unit goes to a TEMP table there.
        reader_cursor = reader.cursor()
        reader_cursor.execute("CREATE TEMP TABLE kd_unit_base (unit_id integer PRIMARY KEY, base text) ON COMMIT DROP")
        with reader_cursor.copy("COPY kd_unit_base (unit_id, base) FROM STDIN") as copy:
            for code, uid in unit_id.items():
                copy.write_row((uid, base_of[code]))
        reader_cursor.execute("ANALYZE kd_unit_base")
        del base_of
        code_of = {uid: code for code, uid in unit_id.items()}

        def bases() -> Iterator[tuple[str, list[MemberRecord]]]:
            with reader.cursor(name="kd_members_by_base") as members:
                members.itersize = fetch_rows
                members.execute(
                    "SELECT b.base, m.member_code, m.unit_id, m.status, m.joined_on, m.positions FROM members m"
                    " JOIN kd_unit_base b ON b.unit_id = m.unit_id WHERE m.campaign_id = %s"
                    ' ORDER BY b.base COLLATE "C", m.member_code COLLATE "C"',
                    (campaign_id,),
                )
                current, group = None, []
                for base, code, uid, status, joined_on, positions in members:
                    if base != current:
                        if group:
                            yield current, group
                        current, group = base, []
                    group.append(MemberRecord(code, "", code_of[uid], status, joined_on, tuple(positions or ())))
                if group:
                    yield current, group

        orgs, member_results = stream_results(units, bases(), seed, plan.evaluation_date, rule_set=plan.rule_set, breach_share=breach_share)
        del units
        changed: set[str] = set()
        count = 0
        with cursor.copy(
            "COPY kd_member_results (member_code, unit_id, self_level, proposed_level, final_level, disciplined,"
            " sick_leave_months, absent, score, note, has_self_review) FROM STDIN"
        ) as copy:
            for r in member_results:
                copy.write_row((r.member_id, unit_id[r.unit_code], r.self_level, r.proposed_level, r.final_level, r.disciplined,
                                r.sick_leave_months, r.absent, r.score, r.note, r.has_self_review))
                changed.add(r.unit_code)
                count += 1
        reader.rollback()
        cursor.execute("ANALYZE kd_member_results")
        cursor.execute(
            "INSERT INTO member_results (campaign_id, member_id, unit_id, submission_id, self_level, proposed_level, final_level,"
            " disciplined, sick_leave_months, absent, score, note, has_self_review, received_at, current)"
            " SELECT %(c)s, m.id, r.unit_id, NULL, r.self_level, r.proposed_level, r.final_level, r.disciplined,"
            " r.sick_leave_months, r.absent, r.score, r.note, r.has_self_review, %(at)s, TRUE"
            ' FROM kd_member_results r JOIN members m ON m.campaign_id = %(c)s AND m.member_code = r.member_code'
            ' ORDER BY r.member_code COLLATE "C"',
            {"c": campaign_id, "at": received_at},
        )
        member_rows = cursor.rowcount
        with cursor.copy(
            "COPY org_results (campaign_id, unit_id, decided_by_id, submission_id, self_level, level, disciplined, note, received_at, current)"
            " FROM STDIN"
        ) as copy:
            for r in orgs:
                copy.write_row((campaign_id, unit_id[r.unit_code], unit_id[r.decided_by] if r.decided_by else None, None,
                                r.self_level, r.level, r.disciplined, "", received_at, True))
                changed.add(r.unit_code)
        org_rows = len(orgs)
        assert member_rows == count, (member_rows, count)
        detail = {"changed_units": sorted(changed), "effective_at": received_at.isoformat(), "member_rows": member_rows, "org_rows": org_rows}
        cursor.execute(
            "INSERT INTO event_log (campaign_id, at, actor, action, subject, detail) VALUES (%s, %s, %s, %s, %s, %s)",
            (campaign_id, received_at, "bench", RECORDED, "results", json.dumps(detail)),
        )
        writer.commit()
    return {"member_results": member_rows, "org_results": org_rows}
