"""Rendering reminder digests: the outbox's MIME bytes, written directly vs the email package.

4,000 synthetic digests shaped like the province preset's reminder morning (Hà Tĩnh plan,
28/11/2022 08:00: two phases a digest, one to a few branches, ~60 items, most of them members'
personal reviews; Vietnamese names; some unit names with HTML special characters). For each:

- ``render``: what ``enqueue`` now does, ``messages.render_mime`` → bytes;
- ``baseline``: a plain ``email.message.EmailMessage`` build of the same content
  (``messages.build_mime``) and ``as_bytes(policy=email.policy.SMTP)``, as before.

Both run in the same process on the same ``ComposedMessage`` values, in alternating rounds
(the machine is shared). The figures: messages per second of each, the ratio, and the same
for a whole digest (``compose_reminder``: templates and ICS, then the MIME). Before timing,
every digest's bytes are checked against the email package's with the same boundaries.

    python -m bench.compose_bench [N]
"""

from __future__ import annotations

import email.policy
import random
import sys
import time

from bench.common import peak_rss_mib, save
from kiemdiem import synth
from kiemdiem.catalogue import DOCUMENTS
from kiemdiem.notify import messages
from kiemdiem.notify.messages import (
    ComposedMessage,
    OutstandingItem,
    PhaseDue,
    build_mime,
    compose_reminder,
    legacy_mime_bytes,
    make_message_id,
    render_mime,
)
from kiemdiem.plan import load_plan
from kiemdiem.settings import plans_dir
from tests.support import ict

NOW = ict(2022, 11, 28, 8)
SENDER = "Văn phòng Đảng ủy Khối <vanphong@kiemdiem.local>"
SUBMIT_URL = "http://127.0.0.1:8080"
ROUNDS = 3


def person(rng: random.Random) -> str:
    family = rng.choices(synth._FAMILY_NAMES, cum_weights=synth._FAMILY_CUM)[0]
    if rng.random() < 0.5:
        return f"{family} {rng.choice(synth._MALE_MIDDLE)} {rng.choice(synth._MALE_GIVEN)}"
    return f"{family} Thị {rng.choice(synth._FEMALE_MIDDLE)} {rng.choice(synth._FEMALE_GIVEN)}"


def digests(n: int, seed: int = 1) -> list[tuple[str, str, list[PhaseDue]]]:
    """(recipient email, recipient name, dues) for ``n`` branch offices."""
    plan = load_plan(plans_dir() / "KH-DUK-HT-2022.yaml")
    draft, review = plan.phase("chuan_bi_chi_bo"), plan.phase("chi_bo_kiem_diem")
    rng = random.Random(seed)
    member = 0
    out = []
    for i in range(n):
        units = []
        for j in range(1 if rng.random() < 0.85 else rng.randint(2, 4)):
            code = f"TINH-CS{i // 12:03d}-CB{i % 12:02d}{'' if j == 0 else f'-{j}'}"
            name = f"Chi bộ {rng.choice(synth._PLACE_FIRST)} {i % 97}"
            if rng.random() < 0.05:
                name += ' & "Tổ <Kỹ thuật>"'  # HTML special characters in a unit name
            units.append((code, name))
        first = []
        second = []
        for code, name in units:
            first.append(OutstandingItem(code, name, "du_thao_bao_cao_kiem_diem",
                                         DOCUMENTS["du_thao_bao_cao_kiem_diem"].name))
            for doc in ("bao_cao_kiem_diem_tap_the", "phieu_phan_tich_chat_luong", "bien_ban_hoi_nghi",
                        "tong_hop_xep_loai_dang_vien", "ket_qua_xep_loai_chi_bo"):
                if rng.random() < 0.9:
                    second.append(OutstandingItem(code, name, doc, DOCUMENTS[doc].name))
            for _ in range(max(3, int(rng.gauss(30, 12)))):
                member += 1
                mid, who = f"DV{member:07d}", person(rng)
                for doc in ("ban_kiem_diem_ca_nhan", "nhan_xet_noi_cu_tru"):
                    if rng.random() < 0.6:
                        second.append(OutstandingItem(code, name, doc, DOCUMENTS[doc].name, mid, who))
        dues = [
            PhaseDue(plan.number, plan.issuer, draft.id, draft.name, draft.deadline, draft.reading, tuple(first)),
            PhaseDue(plan.number, plan.issuer, review.id, review.name, review.deadline, review.reading, tuple(second)),
        ]
        out.append((f"chibo{i}@tinh.example.vn", f"Đồng chí Bí thư {units[0][1]}", dues))
    return out


def _old_bytes(msg: ComposedMessage, recipient: str, message_id: str) -> bytes:
    return build_mime(msg, sender=SENDER, recipient=recipient, message_id=message_id,
                      date=NOW).as_bytes(policy=email.policy.SMTP)


def _new_bytes(msg: ComposedMessage, recipient: str, message_id: str) -> bytes:
    return render_mime(msg, sender=SENDER, recipient=recipient, message_id=message_id, date=NOW)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    cases = digests(n)
    ids = [make_message_id(f"bench|{r}") for r, _, _ in cases]

    def compose_all() -> list[ComposedMessage]:
        return [compose_reminder(name, dues, submit_url=SUBMIT_URL, now=NOW)
                for _, name, dues in cases]

    composed = compose_all()  # also loads and compiles the templates

    # Equivalence first (not timed): the same bytes as the email package's, boundaries aside.
    for (recipient, _, _), msg, mid in zip(cases, composed, ids):
        legacy = legacy_mime_bytes(msg, sender=SENDER, recipient=recipient, message_id=mid, date=NOW)
        assert _new_bytes(msg, recipient, mid) == legacy, recipient

    timings: dict[str, list[float]] = {"render": [], "baseline": [], "compose": []}
    sizes = 0
    for _ in range(ROUNDS):
        messages._deadline_attachment.cache_clear()  # a tick starts cold: its `now` is new
        started = time.perf_counter()
        compose_all()
        timings["compose"].append(time.perf_counter() - started)
        for label, fn in (("baseline", _old_bytes), ("render", _new_bytes)):
            started = time.perf_counter()
            total = 0
            for (recipient, _, _), msg, mid in zip(cases, composed, ids):
                total += len(fn(msg, recipient, mid))
            timings[label].append(time.perf_counter() - started)
            sizes = total
    render_s, baseline_s, compose_s = min(timings["render"]), min(timings["baseline"]), min(timings["compose"])
    items = sum(len(d.items) for _, _, dues in cases for d in dues)
    save(
        "compose",
        {
            "digests": n,
            "items": items,
            "mean_message_bytes": round(sizes / n),
            "mime_render_s": round(render_s, 3),
            "mime_baseline_s": round(baseline_s, 3),
            "mime_render_msgs_per_s": round(n / render_s),
            "mime_baseline_msgs_per_s": round(n / baseline_s),
            "mime_ratio": round(baseline_s / render_s, 1),
            "templates_and_ics_s": round(compose_s, 3),
            "digest_render_msgs_per_s": round(n / (compose_s + render_s)),
            "digest_baseline_msgs_per_s": round(n / (compose_s + baseline_s)),
            "digest_ratio": round((compose_s + baseline_s) / (compose_s + render_s), 1),
            "rounds": ROUNDS,
            "note": "best of alternating rounds; baseline = EmailMessage build + as_bytes(policy=SMTP) "
            "of the same composed messages; digest = compose_reminder (templates, ICS) + MIME; "
            "all bytes checked equal to the email package's (same boundaries) before timing",
            "peak_rss_mib": peak_rss_mib(),
        },
    )


if __name__ == "__main__":
    main()
