"""A member's key: a 40-bit number derived from the member code, stored with the member.

A unit's consolidation does not list its members; it carries the sum, over its own members,
of each member's key times a small weight for their final level and not-evaluated reason
(``consolidation.line_weight``). The database adds these up in SQL (``members.code_key``) and
the domain core from the codes (this function): equal inputs give equal sums, and a change of
any member's level (two members swapping levels included) changes the sum, so the snapshot's
content hash changes with it. 40 bits leave room: a unit's sum stays below 2**63 for up to
2**18 members at the largest weight.
"""

from __future__ import annotations

import hashlib

KEY_BITS = 40


def member_key(member_code: str) -> int:
    """The key of ``member_code`` (blake2b, so the same in every process and on every machine)."""
    return int.from_bytes(hashlib.blake2b(member_code.encode("utf-8"), digest_size=KEY_BITS // 8).digest(), "big")
