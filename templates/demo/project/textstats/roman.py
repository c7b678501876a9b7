"""Roman numerals."""

from __future__ import annotations

# Largest first; the subtractive pairs (CM, XC, IV...) sit between the
# plain numerals so that a greedy walk down the table is enough.
_NUMERALS = (
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
)


def to_roman(number: int) -> str:
    """Write ``number`` (1 to 3999) in Roman numerals: 1994 -> ``"MCMXCIV"``."""
    if not 0 < number < 4000:
        raise ValueError(f"to_roman() takes 1 to 3999, not {number}")
    parts = []
    for value, numeral in _NUMERALS:
        count, number = divmod(number, value)
        parts.append(numeral * count)
    return "".join(parts)
