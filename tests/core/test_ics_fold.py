"""``ics.fold_line`` cuts at octet offsets: the same output as folding character by character."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kiemdiem.notify import ics


def fold_by_characters(line: str) -> bytes:
    """The first implementation: add characters while the chunk stays within 75 octets."""
    whole = line.encode("utf-8")
    if len(whole) <= 75:
        return whole
    out: list[bytes] = []
    current = bytearray()
    for char in line:
        encoded = char.encode("utf-8")
        if len(current) + len(encoded) > 75:
            out.append(bytes(current))
            current = bytearray(b" ")
        current += encoded
    out.append(bytes(current))
    return b"\r\n".join(out)


ALPHABET = st.sampled_from("aAz ,;:\\ăâđêôơưĐÁÀẢÃẠỆộ€𝄞🙂") | st.characters(blacklist_categories=("Cs",))


@settings(max_examples=400, deadline=None)
@given(st.text(ALPHABET, max_size=400))
def test_fold_line_equals_folding_by_characters(line):
    assert ics.fold_line(line) == fold_by_characters(line)


def test_fold_line_at_every_length_and_offset():
    for filler in ("a", "ệ", "🙂", "aệ", "aa🙂"):
        for length in range(0, 200):
            line = (filler * length)[:length]
            for prefix in ("", "x", "xy"):
                assert ics.fold_line(prefix + line) == fold_by_characters(prefix + line)
