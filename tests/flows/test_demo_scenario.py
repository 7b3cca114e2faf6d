"""The demo's scenario (``deployments/demo.py``), without Prefect: every file it submits is
received, and every classification list it submits reads (a list that does not is refused at
submission, which would stop the demo)."""

from __future__ import annotations

import datetime as dt

from deployments.demo import CAMPAIGN, END, prepare
from kiemdiem.simulation import build_scenario, with_results
from kiemdiem.store.queries import load_members, load_units
from kiemdiem.store.results import STRUCTURED_DOC_TYPES, ingest_results
from kiemdiem.store.submissions import IncomingFile, record_submission

SEED = 2023


def test_every_file_of_the_demo_is_received_and_every_list_is_read(tmp_path, monkeypatch):
    # prepare() points the environment at its home; monkeypatch puts it back afterwards.
    monkeypatch.setenv("KIEMDIEM_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("KIEMDIEM_DATABASE_URL", raising=False)
    store, plan = prepare(tmp_path / "home", SEED)
    try:
        with store.uow() as uow:
            units, members = load_units(uow, CAMPAIGN), load_members(uow, CAMPAIGN)
        events, supplement = with_results(plan, build_scenario(plan, units, members, SEED), units, members, SEED)
        kinds = {e.doc_type for e in events}
        assert supplement is not None and {"tong_hop_xep_loai_dang_vien", "ket_qua_xep_loai_chi_bo"} <= kinds
        for event in events:
            with store.uow() as uow:
                record_submission(
                    uow, store.blobs, plan, CAMPAIGN, event.unit_code, event.doc_type,
                    [IncomingFile(event.filename, data=event.content)], event.at, "web",
                    member_code=event.member_code, phase_id=event.phase_id, actor="test",
                )
                uow.commit()
        report = ingest_results(store, plan, CAMPAIGN, plan.calendar.at(END, dt.time(23, 0)))
        assert report.refused == []
        assert report.member_rows > 0 and report.org_rows > 0
        lists = [e for e in events if e.doc_type in STRUCTURED_DOC_TYPES]
        assert len(report.ingested) <= len(lists) and report.ingested
    finally:
        store.dispose()
