"""Unified Social Credit Code (统一社会信用代码), GB 32100-2015.

18 characters from a 31-character alphabet (no I, O, S, V, Z); the last one is a
check character computed from the first 17 with fixed weights, modulo 31.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Final

ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUE: Final = {ch: i for i, ch in enumerate(ALPHABET)}

#: Namespace of provider aggregate ids: ``uuid5(PROVIDER_NAMESPACE, uscc)``.
PROVIDER_NAMESPACE: Final = uuid.UUID("6f1c2a52-3c1e-5b7e-9a57-2b1d3f0c8e41")


def check_character(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters."""
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


@lru_cache(maxsize=65_536)
def uscc_error(code: str) -> str | None:
    """Why ``code`` is not a valid USCC, or ``None`` when it is."""
    if len(code) != 18:
        return f"must be 18 characters, got {len(code)}"
    bad = sorted({ch for ch in code if ch not in _VALUE})
    if bad:
        return f"characters not allowed by GB 32100-2015: {''.join(bad)}"
    expected = check_character(code[:17])
    if code[17] != expected:
        return f"check character is {code[17]}, GB 32100-2015 gives {expected}"
    return None


def is_valid_uscc(code: str) -> bool:
    return uscc_error(code) is None


@lru_cache(maxsize=65_536)
def provider_id(uscc: str) -> uuid.UUID:
    """The aggregate id of the legal entity: one stream across every tenure."""
    return uuid.uuid5(PROVIDER_NAMESPACE, uscc)
