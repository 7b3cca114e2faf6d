"""The watched drop folder: ``<inbox>/<unit code>/<doc type>/[<member id>/]file``.

Files in one folder taken in one pass form one submission. A file is moved out of
the inbox only after its submission is committed; a refused file is moved to
``.refused/`` beside a ``.reason.txt`` saying why. Nothing is ever deleted.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from kiemdiem.errors import KiemdiemError
from kiemdiem.plan import Plan
from kiemdiem.store.db import Store
from kiemdiem.store.submissions import IncomingFile, SubmissionOutcome, record_submission

IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")
SETTLE_SECONDS = 2.0  # a file modified more recently may still be being copied in


@dataclass
class IntakeReport:
    accepted: list[SubmissionOutcome] = field(default_factory=list)
    unchanged: list[SubmissionOutcome] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (relative folder, reason)


def _groups(inbox: Path) -> dict[Path, list[Path]]:
    groups: dict[Path, list[Path]] = {}
    cutoff = time.time() - SETTLE_SECONDS
    for directory, dirnames, filenames in os.walk(inbox):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
                continue
            path = Path(directory) / name
            if path.stat().st_mtime > cutoff:
                continue
            groups.setdefault(Path(directory), []).append(path)
    return groups


def collect_drop_folder(store: Store, plan: Plan, campaign_id: str, inbox: Path, now: dt.datetime) -> IntakeReport:
    report = IntakeReport()
    if not inbox.is_dir():
        return report
    stamp = now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for directory, files in sorted(_groups(inbox).items()):
        relative = directory.relative_to(inbox)
        parts = relative.parts
        try:
            if len(parts) not in (2, 3):
                raise KiemdiemError(
                    "sai vị trí thư mục: phải là <mã đơn vị>/<loại văn bản>/[<mã đảng viên>/]tệp"
                )
            unit_code, doc_type = parts[0], parts[1]
            member_code = parts[2] if len(parts) == 3 else None
            with store.uow() as uow:
                outcome = record_submission(
                    uow, store.blobs, plan, campaign_id, unit_code, doc_type,
                    [IncomingFile(p.name, path=p) for p in files], now, "drop",
                    member_code=member_code, actor=f"drop:{relative}",
                )
                uow.commit()
        except KiemdiemError as exc:
            report.refused.append((str(relative), str(exc)))
            _move(files, inbox / ".refused" / stamp / relative, reason=str(exc))
            continue
        (report.accepted if outcome.created else report.unchanged).append(outcome)
        _move(files, inbox / ".processed" / stamp / relative)
    return report


def _move(files: list[Path], target: Path, reason: str | None = None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        destination = target / path.name
        n = 1
        while destination.exists():
            destination = target / f"{path.stem}.{n}{path.suffix}"
            n += 1
        shutil.move(str(path), destination)
    if reason:
        (target / ".reason.txt").write_text(reason + "\n", encoding="utf-8")
