"""What a person types or pastes into the number field, made dialable.

``+33 (0)1 23-45.67 89`` becomes ``+33123456789``, ``0033 1 23 45 67 89`` becomes
``+33123456789`` (the international prefix 00 written as +), ``tel:+33...`` and
``sip:0123@host;user=phone`` lose their scheme and host; ``*`` and ``#`` stay (services and
feature codes). A SIP address with a name (``sip:alice@example.com``) is kept as it is. Anything
else raises :class:`NumberError` with the text.
"""

from __future__ import annotations

import re

from softphone.policy.numbers import NumberError, clean

_FEATURE = re.compile(r"[0-9]*[*#][0-9*#]*")  # *21#, #31#: feature codes as typed
_SIP_NAME = re.compile(r"^sips?:[A-Za-z][A-Za-z0-9._-]*@[A-Za-z0-9.\-\[\]:]+$")

__all__ = ["NumberError", "dialable"]


def dialable(text: str) -> str:
    """The number (digits, a leading +, * and #) or a ``sip:`` name to dial."""
    s = text.strip()
    if not s:
        raise NumberError("nothing to dial")
    if _SIP_NAME.match(s):
        return s
    if _FEATURE.fullmatch(s):
        return s
    digits = clean(s)
    if digits.startswith("00") and len(digits) > 4:
        digits = "+" + digits[2:]
    return digits
