"""Unified social credit code (统一社会信用代码), GB 32100-2015.

18 characters from a 31-symbol alphabet (no I, O, S, V, Z): registration authority,
organisation type, 6-digit administrative division, 9-character organisation code and a
check character computed modulo 31 over the first 17 with weights 3^i mod 31.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


def check_char(first17: str) -> str:
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """None when valid, otherwise why not (for a 422 naming the field)."""
    if len(code) != 18:
        return f"must be 18 characters, got {len(code)}"
    bad = sorted({ch for ch in code if ch not in _VALUE})
    if bad:
        return f"contains characters outside GB 32100-2015's alphabet: {''.join(bad)}"
    if not code[2:8].isdigit():
        return "characters 3-8 must be the administrative division code (digits)"
    expected = check_char(code[:17])
    if code[17] != expected:
        return f"check character is '{code[17]}', expected '{expected}'"
    return None


def make_credit_code(authority_type: str, division: str, org: str) -> str:
    """Build a valid code (for seed and test data): e.g. ("11", "420100", "MB0000001")."""
    first17 = f"{authority_type}{division}{org}"
    if len(first17) != 17:
        raise ValueError("authority/type (2) + division (6) + organisation (9) must be 17 characters")
    return first17 + check_char(first17)
