"""Both import paths keep the tree's materialised paths right when a subtree moves; SQLite keeps the in-memory path."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kiemdiem.store.models import Unit
from kiemdiem.store.organization import import_organization
from tests.store.test_nation_import import changed_org, read_csv, write_org
from tests.store.test_org_import import NOW, campaign  # noqa: F401  (fixture)

def test_paths_follow_a_moved_subtree(store, campaign, tmp_path, backend):
    from kiemdiem.synth import generate  # noqa: PLC0415

    files = generate("khoi", 2, tmp_path / "gen")  # a seed whose moved base organization has grandchildren (tổ đảng)
    khoi = read_csv(files.units), read_csv(files.members)
    changed = changed_org(*khoi)
    for version, (units, members) in enumerate([khoi, changed]):
        units_path, members_path = write_org(tmp_path / f"v{version}", units, members)
        with store.uow() as uow:
            import_organization(uow, "c187", units_path, members_path, NOW)  # PostgreSQL streams, SQLite does not
            uow.commit()
    before = {u[0]: u[3] for u in khoi[0]}
    (moved, target), = [(u[0], u[3]) for u in changed[0] if u[0] in before and before[u[0]] != u[3]]
    with store.uow() as uow:
        rows = uow.session.execute(select(Unit.id, Unit.code, Unit.parent_id, Unit.path, Unit.depth)).all()
    by_id = {uid: (code, path) for uid, code, _, path, _ in rows}
    for _, code, parent_id, path, depth in rows:
        expected = (by_id[parent_id][1] if parent_id else "/") + code + "/"
        assert (path, depth) == (expected, expected.count("/") - 2), code
    under = [path for _, _, _, path, _ in rows if f"/{target}/{moved}/" in path]
    assert any(path.split(f"/{moved}/")[1].count("/") >= 2 for path in under)  # grandchildren moved too
    assert len(rows) == len(khoi[0]) + 1


def test_streaming_needs_postgresql(store, campaign, tmp_path, backend):
    from tests.support import write_small_org  # noqa: PLC0415

    if backend != "sqlite":
        pytest.skip("SQLite only")
    units, members = write_small_org(tmp_path)
    with store.uow() as uow:
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            import_organization(uow, "c187", units, members, NOW, streaming=True)
        report = import_organization(uow, "c187", units, members, NOW)  # the in-memory path
        uow.commit()
    assert (report.units_added, report.members_added) == (4, 7)
