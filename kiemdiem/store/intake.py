"""The watched drop folder: ``<inbox>/<unit code>/[<phase id>/]<doc type>/[<member id>/]file``.

The phase level is needed only for a document the unit owes in several phases; a path is read
with it when its second component is one of the plan's phase ids (the plan refuses a phase id
that is also a document type, so the two cannot be confused).

Files in one folder taken in one pass form one submission: a folder waits while any of its
files is still being copied in. A file is moved out of the inbox only after its submission is
committed; files a crash left behind while they were being moved, all part of the item's
current submission, are recognised as such, not taken as a new submission of fewer files. A
refused folder is moved to ``.refused/`` beside a ``.reason.txt`` saying why; one the file store
could not take stays for the next pass. One process collects an inbox at a time (a lock file).
Nothing is ever deleted.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kiemdiem.errors import KiemdiemError
from kiemdiem.plan import Plan
from kiemdiem.store.db import Store
from kiemdiem.store.submissions import IncomingFile, SubmissionOutcome, record_submission
from kiemdiem.submission import DROP_FOLDER_PATTERN, SeveralPhases, drop_folder

IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")
LAYOUT = f"{DROP_FOLDER_PATTERN}tệp"
SETTLE_SECONDS = 2.0  # a file modified more recently may still be being copied in


@dataclass
class IntakeReport:
    accepted: list[SubmissionOutcome] = field(default_factory=list)
    unchanged: list[SubmissionOutcome] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (relative folder, reason)
    # Folders left in the inbox because storing them failed on our side (the file store full or
    # unwritable): not the unit's fault, taken again by the next pass. (relative folder, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)
    busy: bool = False  # another process was collecting this inbox: nothing taken this pass


def _groups(inbox: Path, report: IntakeReport, stamp: str) -> dict[Path, list[Path]]:
    """The inbox's folders of settled files. A folder with a file still being copied in (written
    in the last ``SETTLE_SECONDS``, or a download's partial file) waits as a whole: files in one
    folder form one submission. A folder whose entries cannot be read is refused on its own."""
    groups: dict[Path, list[Path]] = {}
    cutoff = time.time() - SETTLE_SECONDS
    for directory, dirnames, filenames in os.walk(inbox):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files, unsettled, unreadable = [], False, None
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(directory) / name
            if name.endswith(IGNORED_SUFFIXES):
                unsettled = True
                continue
            try:
                if path.stat().st_mtime > cutoff:
                    unsettled = True
            except OSError as exc:  # a dangling link, a file removed meanwhile, no permission
                unreadable = f"không đọc được tệp '{name}': {exc.strerror or exc}"
            files.append(path)
        if unreadable is not None:
            relative = Path(directory).relative_to(inbox)
            report.refused.append((str(relative), unreadable))
            try:
                _move(files, inbox / ".refused" / stamp / relative, reason=unreadable)
            except OSError:
                pass  # left where it is, reported again next pass
        elif files and not unsettled:
            groups[Path(directory)] = files
    return groups


@contextmanager
def _collecting(inbox: Path):
    """Yields False when another process holds the inbox: two ticks taking the same files would
    store one folder twice and race to move it."""
    with open(inbox / ".collect.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def collect_drop_folder(store: Store, plan: Plan, campaign_id: str, inbox: Path, now: dt.datetime) -> IntakeReport:
    report = IntakeReport()
    if not inbox.is_dir():
        return report
    with _collecting(inbox) as mine:
        if not mine:
            report.busy = True
            return report
        _collect(store, plan, campaign_id, inbox, now, report)
    return report


def _collect(store: Store, plan: Plan, campaign_id: str, inbox: Path, now: dt.datetime, report: IntakeReport) -> None:
    stamp = now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for directory, files in sorted(_groups(inbox, report, stamp).items()):
        relative = directory.relative_to(inbox)
        try:
            unit_code, phase_id, doc_type, member_code = _place(plan, relative.parts)
            with store.uow() as uow:
                outcome = record_submission(
                    uow, store.blobs, plan, campaign_id, unit_code, doc_type,
                    [IncomingFile(p.name, path=p) for p in files], now, "drop",
                    member_code=member_code, phase_id=phase_id, actor=f"drop:{relative}", part_of_current=True,
                )
                uow.commit()
        except SeveralPhases as exc:  # "--phase" means nothing here: name the folders to use instead
            folders = [drop_folder(unit_code, p, exc.doc_type, member_code) for p in exc.phase_ids]
            reason = (f"'{exc.doc_type}' thuộc nhiều giai đoạn ({', '.join(exc.phase_ids)}): "
                      f"đặt tệp vào thư mục của giai đoạn, một trong: {', '.join(folders)}")
            report.refused.append((str(relative), reason))
            _move(files, inbox / ".refused" / stamp / relative, reason=reason)
            continue
        except KiemdiemError as exc:
            report.refused.append((str(relative), str(exc)))
            _move(files, inbox / ".refused" / stamp / relative, reason=str(exc))
            continue
        except OSError as exc:  # the file store: full, unwritable; the files stay for the next pass
            report.failed.append((str(relative), f"không lưu được vào kho tệp: {exc.strerror or exc}"))
            continue
        (report.accepted if outcome.created else report.unchanged).append(outcome)
        _move(files, inbox / ".processed" / stamp / relative)


def _place(plan: Plan, parts: tuple[str, ...]) -> tuple[str, str | None, str, str | None]:
    """(unit code, phase id or None, doc type, member code or None) of a folder of the inbox."""
    phase_ids = {p.id for p in plan.phases}
    if len(parts) >= 2 and parts[1] in phase_ids:
        if len(parts) in (3, 4):
            return parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None
    elif len(parts) in (2, 3):
        return parts[0], None, parts[1], parts[2] if len(parts) == 3 else None
    raise KiemdiemError(f"sai vị trí thư mục: phải là {LAYOUT}")


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
