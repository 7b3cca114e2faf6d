"""Quy định 366-QĐ/TW + Hướng dẫn 43-HD/BTCTW (from 2025): members are scored out of 100.

Bands: ≥90 HTXSNV, 70–<90 HTTNV, 50–<70 HTNV, <50 KHTNV. Two deliberate exceptions to
"level must match the band": a disciplined member must be KHTNV whatever the score (the
discipline rule reports it), and a member scoring ≥90 may be HTTNV because the 20% cap
limits how many get HTXSNV.
"""

from __future__ import annotations

from kiemdiem.rules.base import COMMON_MEMBER_RULES, LEVEL_NAMES, RuleSet, decided_level, level_phrase, register, who
from kiemdiem.tabular import format_decimal

SCORE_BANDS = ((90.0, "HTXSNV"), (70.0, "HTTNV"), (50.0, "HTNV"), (0.0, "KHTNV"))


def score_missing(rs, ctx, member, result, reason):
    if reason is not None or result is None or result.score is not None:
        return None
    level, severity = decided_level(result)
    if level is None:
        return None
    return rs.finding(
        "score_missing", severity, member.unit_code, member.member_id,
        f"{who(member)} {level_phrase(level, severity)} nhưng chưa có điểm đánh giá (thang 100 điểm).",
        {"level": level},
    )


def score_band_mismatch(rs, ctx, member, result, reason):
    if reason is not None or result is None or result.score is None or result.disciplined:
        return None
    level, severity = decided_level(result)
    band = rs.score_band(result.score)
    if level is None or band is None or level == band:
        return None
    if band == "HTXSNV" and level == "HTTNV":
        return None  # ≥90 but outside the 20% quota: HTTNV is the expected outcome
    return rs.finding(
        "score_band", severity, member.unit_code, member.member_id,
        f"{who(member)} đạt {format_decimal(result.score)} điểm, tương ứng mức {band} ({LEVEL_NAMES[band]}), "
        f"nhưng {level_phrase(level, severity)}.",
        {"score": result.score, "band": band, "level": level},
    )


RULE_SET = register(
    RuleSet(
        code="366/43",
        name="Quy định 366-QĐ/TW và Hướng dẫn 43-HD/BTCTW",
        regulation="Quy định 366-QĐ/TW; Hướng dẫn 43-HD/BTCTW",
        member_rules=(*COMMON_MEMBER_RULES, score_missing, score_band_mismatch),
        score_bands=SCORE_BANDS,
    )
)
