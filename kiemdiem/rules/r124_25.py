"""Quy định 124-QĐ/TW + Hướng dẫn 25-HD/BTCTW (campaigns 2023–2024).

Only the shared rules: the design guide scopes the sick-leave ceiling to 132/21, so a
long sick leave is not a finding here.
"""

from __future__ import annotations

from kiemdiem.rules.base import RuleSet, register

RULE_SET = register(
    RuleSet(
        code="124/25",
        name="Quy định 124-QĐ/TW và Hướng dẫn 25-HD/BTCTW",
        regulation="Quy định 124-QĐ/TW; Hướng dẫn 25-HD/BTCTW",
    )
)
