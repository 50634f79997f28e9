"""Personal data (the contact's name and phone): who may see it, and how it is masked.

Never logged anywhere. Readers see it masked (张*, 138****0000); auditors and admins see it
in clear. The roles are ordered ``reader`` < ``auditor`` < ``admin``.
"""

from __future__ import annotations

from typing import Any, Final

READER: Final = "reader"
#: The least role that sees personal data in clear (and the audit history).
AUDITOR: Final = "auditor"
ADMIN: Final = "admin"


def mask_name(name: str) -> str:
    """Keep the first character, mask the rest: 张三 → 张*, 欧阳娜娜 → 欧***."""
    if not name:
        return name
    if len(name) == 1:
        return "*"
    return name[0] + "*" * (len(name) - 1)


def mask_phone(phone: str) -> str:
    """Keep the first 3 and the last 4 digits: 13800000000 → 138****0000."""
    if len(phone) >= 8:
        return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
    return "*" * len(phone)


def mask_contact(contact: Any) -> Any:
    """A contact ``{name, phone}`` with both masked (other keys pass; non-dicts are kept)."""
    if not isinstance(contact, dict):
        return contact
    masked = dict(contact)
    if isinstance(masked.get("name"), str):
        masked["name"] = mask_name(masked["name"])
    if isinstance(masked.get("phone"), str):
        masked["phone"] = mask_phone(masked["phone"])
    return masked
