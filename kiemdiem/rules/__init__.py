"""Classification rule sets, one per regulation; pick one with ``get_rule_set(code)``."""

from kiemdiem.rules import r124_25, r132_21, r366_43  # noqa: F401  (importing registers them)
from kiemdiem.rules.base import (
    LEVEL_NAMES,
    LEVEL_RANK,
    LEVELS,
    Finding,
    RuleContext,
    RuleSet,
    build_context,
    cap_max_allowed,
    get_rule_set,
)

__all__ = [
    "LEVELS",
    "LEVEL_NAMES",
    "LEVEL_RANK",
    "Finding",
    "RuleContext",
    "RuleSet",
    "build_context",
    "cap_max_allowed",
    "get_rule_set",
]
