"""The nation's results writer (``kiemdiem.synth_nation_results``) writes what ``record_results`` writes."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from kiemdiem.consolidation import MemberRecord, UnitNode
from kiemdiem.store.models import Member, Unit
from kiemdiem.store.organization import create_campaign, import_organization
from kiemdiem.store.results import record_results
from kiemdiem.synth import generate
from kiemdiem.synth_nation_results import RESULTS_AT, stream_results, write_nation_results
from kiemdiem.synth_results import generate_results
from tests.support import ict

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

SEED = 5


@pytest.fixture
def khoi_campaign(store, plan_187, tmp_path):
    files = generate("khoi", 4, tmp_path / "org", campaign_year=plan_187.year)
    with store.uow() as uow:
        create_campaign(uow, plan_187, "c187", ict(2023, 11, 20))
        import_organization(uow, "c187", files.units, files.members, ict(2023, 11, 20))
        uow.commit()
    return "c187"


def organization(store) -> tuple[list[UnitNode], list[MemberRecord]]:
    with store.uow() as uow:
        rows = uow.session.execute(select(Unit.id, Unit.code, Unit.name, Unit.kind, Unit.parent_id)).all()
        code = {uid: c for uid, c, _, _, _ in rows}
        units = [UnitNode(c, name, kind, code.get(parent)) for _, c, name, kind, parent in rows]
        members = [
            MemberRecord(m.member_code, m.full_name, code[m.unit_id], m.status, m.joined_on, tuple(m.positions))
            for m in uow.session.scalars(select(Member))
        ]
    return units, members


def written(store) -> dict:
    with store.engine.connect() as conn:
        return {
            "member_results": conn.execute(text("SELECT * FROM member_results ORDER BY id")).all(),
            "org_results": conn.execute(text("SELECT * FROM org_results ORDER BY id")).all(),
            "events": conn.execute(
                text("SELECT campaign_id, at, actor, action, subject, detail::jsonb FROM event_log WHERE action = 'results.recorded'")
            ).all(),
            "leases": conn.execute(text("SELECT * FROM leases")).all(),
        }


def test_streamed_results_are_generate_results(store, khoi_campaign, plan_187):
    units, members = organization(store)
    expected = generate_results(units, members, SEED, plan_187.evaluation_date, rule_set=plan_187.rule_set)
    by_base: dict[str, list[MemberRecord]] = {}
    from kiemdiem.synth_nation_results import base_of_units  # noqa: PLC0415

    base_of = base_of_units(units)
    for member in sorted(members, key=lambda m: m.member_id):
        by_base.setdefault(base_of[member.unit_code], []).append(member)
    orgs, streamed = stream_results(units, sorted(by_base.items()), SEED, plan_187.evaluation_date, rule_set=plan_187.rule_set)
    assert tuple(orgs) == expected.org_results
    assert tuple(sorted(streamed, key=lambda r: r.member_id)) == expected.member_results


def test_bulk_results_are_the_rows_record_results_writes(store, khoi_campaign, plan_187):
    units, members = organization(store)
    generated = generate_results(units, members, SEED, plan_187.evaluation_date, rule_set=plan_187.rule_set)
    with store.uow() as uow:
        record_results(uow, plan_187, khoi_campaign, RESULTS_AT, generated.member_results, generated.org_results, actor="bench")
        uow.commit()
    expected = written(store)
    assert len(expected["member_results"]) == len(members) and expected["org_results"] and expected["events"]
    with store.engine.begin() as conn:
        conn.execute(text("TRUNCATE member_results, org_results RESTART IDENTITY"))
        conn.execute(text("DELETE FROM event_log WHERE action = 'results.recorded'"))
        conn.execute(text("DELETE FROM leases"))
    counts = write_nation_results(store.engine.url.render_as_string(hide_password=False), khoi_campaign, SEED, fetch_rows=500)
    assert counts == {"member_results": len(members), "org_results": len(generated.org_results)}
    assert written(store) == expected
    with pytest.raises(ValueError, match="already has member_results"):
        write_nation_results(store.engine.url.render_as_string(hide_password=False), khoi_campaign, SEED)
