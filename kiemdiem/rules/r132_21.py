"""Quy định 132-QĐ/TW + Hướng dẫn 21-HD/BTCTW (campaigns 2019–2022).

The shared rules plus: sick leave of 3 months or more in the year ⇒ at most HTNV.
"""

from __future__ import annotations

from kiemdiem.rules.base import (
    COMMON_MEMBER_RULES,
    LEVEL_RANK,
    RuleSet,
    decided_level,
    level_phrase,
    register,
    who,
)

SICK_LEAVE_MONTHS = 3
SICK_LEAVE_CEILING = "HTNV"


def sick_leave_ceiling(rs, ctx, member, result, reason):
    if reason is not None or result is None or result.sick_leave_months < SICK_LEAVE_MONTHS:
        return None
    level, severity = decided_level(result)
    if level is None or LEVEL_RANK[level] <= LEVEL_RANK[SICK_LEAVE_CEILING]:
        return None
    months = result.sick_leave_months
    return rs.finding(
        "sick_leave_ceiling", severity, member.unit_code, member.member_id,
        f"{who(member)} nghỉ ốm {months:g} tháng trong năm (từ {SICK_LEAVE_MONTHS} tháng trở lên) nhưng "
        f"{level_phrase(level, severity)}; chỉ được xếp loại tối đa {SICK_LEAVE_CEILING}.",
        {"sick_leave_months": months, "level": level, "max_level": SICK_LEAVE_CEILING},
    )


RULE_SET = register(
    RuleSet(
        code="132/21",
        name="Quy định 132-QĐ/TW và Hướng dẫn 21-HD/BTCTW",
        regulation="Quy định 132-QĐ/TW; Hướng dẫn 21-HD/BTCTW",
        member_rules=(*COMMON_MEMBER_RULES, sick_leave_ceiling),
    )
)
