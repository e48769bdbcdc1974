"""Text that came from outside, made safe to show on one line: in mail, in a terminal, in a prompt.

Branch names, authors, model ids, reasons and comments come from uploads and people. Put
raw into a line-oriented mail (SNS message) a newline forges a line ("accuracy 0.990",
"Approve: https://..."); printed raw to a terminal an escape sequence (ESC, CSI, OSC)
recolours, retitles or rewrites what the operator sees. :func:`one_line` keeps every
printable character and shows every other one as a visible escape, so nothing is silently
dropped and nothing acts: C0/C1 controls (newline, carriage return, ESC, DEL, U+0080-U+009F),
format characters (Unicode category Cf: bidi overrides such as U+202E, zero-width joiners)
and the line and paragraph separators U+2028 / U+2029 (categories Zl, Zp), after Unicode's
general categories ("Unicode Character Database", https://www.unicode.org/reports/tr44/#General_Category_Values;
ECMA-48 "Control Functions for Coded Character Sets" for what C0/C1 and ESC sequences do).
"""

from __future__ import annotations

import unicodedata
from typing import Any

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
ELLIPSIS = "…"


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return ch


def one_line(value: Any, limit: int | None = None) -> str:
    """``value`` as one line with no control or format characters (each shown escaped,
    e.g. ``\\n``, ``\\x1b``, ``\\u202e``; a backslash as ``\\\\``, so an escape can't be faked),
    cut to ``limit`` characters with an ellipsis. ``None`` is the empty string."""
    text = "" if value is None else str(value)
    safe = "".join(_escape(ch) for ch in text)
    if limit is not None and len(safe) > limit:
        safe = safe[: max(0, limit - 1)] + ELLIPSIS
    return safe


def is_one_line(text: str) -> bool:
    """Whether ``text`` is already safe (what :func:`one_line` would leave unchanged, bar backslashes)."""
    return all(ch == "\\" or _escape(ch) == ch for ch in text)
