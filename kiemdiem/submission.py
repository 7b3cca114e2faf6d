"""What a submission is for: resolving the item a unit delivers, and whether it is on time. Pure."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from kiemdiem.catalogue import DOCUMENTS, UNIT_KINDS
from kiemdiem.errors import Refused
from kiemdiem.plan import DocumentRequirement, Phase, Plan

SOURCES = ("cli", "drop", "web")


@dataclass(frozen=True)
class Target:
    phase: Phase
    requirement: DocumentRequirement


class SeveralPhases(Refused):
    """The document is owed in more than one phase and none was named: each channel says how to
    name one (``--phase``, the form's choice, the drop folder's phase level)."""

    def __init__(self, doc_type: str, phase_ids: list[str]):
        self.doc_type = doc_type
        self.phase_ids = phase_ids
        super().__init__(f"'{doc_type}' thuộc nhiều giai đoạn ({', '.join(phase_ids)}): hãy nêu --phase")


def resolve_target(plan: Plan, unit_kind: str, doc_type: str, per_member: bool, phase_id: str | None = None) -> Target:
    """Find the phase in which a unit of this kind owes this document; refuse with a reason otherwise."""
    if doc_type not in DOCUMENTS:
        raise Refused(f"loại văn bản không có trong danh mục: '{doc_type}'")
    if phase_id is not None:
        try:
            phase = plan.phase(phase_id)
        except KeyError:
            raise Refused(f"giai đoạn không tồn tại: '{phase_id}' (có: {', '.join(p.id for p in plan.phases)})") from None
        candidates = [phase]
    else:
        candidates = list(plan.phases)
    owed_kind = [p for p in candidates if unit_kind in p.applies_to]
    matches = [(p, p.requirement(doc_type, per_member)) for p in owed_kind]
    matches = [(p, r) for p, r in matches if r is not None]
    who = "từng đảng viên" if per_member else "đơn vị"
    if not matches:
        kind_name = UNIT_KINDS.get(unit_kind, unit_kind)
        other = [p for p in owed_kind if p.requirement(doc_type, not per_member)]
        if other:
            hint = " (văn bản này nộp theo từng đảng viên: hãy nêu --member)" if not per_member else " (văn bản này nộp theo đơn vị: bỏ --member)"
        else:
            hint = ""
        where = f" trong giai đoạn '{phase_id}'" if phase_id else ""
        raise Refused(f"{kind_name} không phải nộp '{DOCUMENTS[doc_type].name}' ({who}){where}{hint}")
    if len(matches) > 1:
        raise SeveralPhases(doc_type, [p.id for p, _ in matches])
    phase, requirement = matches[0]
    return Target(phase, requirement)


def item_key(unit_code: str, phase_id: str, doc_type: str, member_code: str | None) -> str:
    return f"{unit_code}:{phase_id}:{doc_type}:{member_code or '-'}"


def content_key(sha256s: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(sha256s)).encode()).hexdigest()


def is_on_time(received_at: dt.datetime, deadline: dt.datetime) -> bool:
    # Deadlines are whole seconds (23:59:59); a fraction of a second more is still that second.
    return received_at.replace(microsecond=0) <= deadline


_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()\-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def display_filename(name: str) -> str:
    """The name a user gave a file, as it is kept and shown (Vietnamese letters and all): no
    directories, no control characters, no leading dots, precomposed. ``safe_filename`` makes a
    path of it where one is needed (the dossier's archive)."""
    base = name.replace("\\", "/").split("/")[-1]
    base = unicodedata.normalize("NFC", _CONTROL.sub("", base)).strip(" .")
    return base[:200] or "tep"


def safe_filename(name: str) -> str:
    """``display_filename`` made a safe path: Vietnamese letters folded, only [A-Za-z0-9._ ()-]."""
    base = unicodedata.normalize("NFKD", display_filename(name)).replace("đ", "d").replace("Đ", "D")
    base = "".join(ch for ch in base if not unicodedata.combining(ch))
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or "tep"


# The drop folder's convention: emails state it, the intake reads it.
DROP_FOLDER_PATTERN = "<mã đơn vị>/[<mã giai đoạn>/]<loại văn bản>/[<mã đảng viên>/]"


def drop_folder(unit_code: str, phase_id: str, doc_type: str, member_id: str | None = None) -> str:
    """The drop-folder path for a document: ``<unit code>/<phase id>/<doc type>/[<member id>/]``.
    With its phase, always: a document owed in two phases has no other folder (``store.intake``)."""
    parts = [unit_code, phase_id, doc_type] + ([member_id] if member_id else [])
    return "/".join(parts) + "/"


def item_words(plan: Plan, key: str) -> str:
    """An item (``item_key``) in words: the document, whose, which phase."""
    unit_code, phase_id, doc_type, member_code = key.split(":", 3)
    document = DOCUMENTS[doc_type].name if doc_type in DOCUMENTS else doc_type
    whose = f"đảng viên {member_code}, đơn vị {unit_code}" if member_code != "-" else f"đơn vị {unit_code}"
    phase = next((p.name for p in plan.phases if p.id == phase_id), phase_id)
    return f"{document} ({whose}; giai đoạn: {phase})"


def same_files_note(plan: Plan, keys: Sequence[str]) -> str:
    """What a sender is told when its files were already filed under other items of the unit
    (``SubmissionOutcome.same_files_as``): kept, but likely the wrong document or member chosen."""
    others = "; ".join(item_words(plan, key) for key in keys)
    return f"Lưu ý: tệp giống hệt tệp đã nộp cho {others}: kiểm tra lại đã chọn đúng văn bản, đúng đảng viên chưa."
